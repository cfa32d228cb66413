/* Integration tests of TLS on the RPC port with real nvmetd processes on
 * loopback: a three-node cluster that requires client certificates, where
 * a follower forwards a write to the leader and asks its peers for
 * cluster.status over TLS with its own certificate; nvmetctl with and
 * without --cacert, without a client certificate, in plaintext; a
 * plaintext node; nvmetd's start-time refusals. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "test_certs.h"

#define N 3

static char base[256];
static struct h_node nodes[N];

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Run a shell command line; its exit status, *out its stdout and stderr. */
static int sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(char **out, const char *fmt, ...)
{
    char cmd[4096], outp[300];
    snprintf(outp, sizeof outp, "%s/sh.out", base);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " > %s 2>&1", outp);
    int st = system(cmd);
    *out = h_read(outp);
    if (*out == NULL) {
        *out = strdup("");
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void stop_all(void)
{
    for (int i = 0; i < N; i++) {
        if (nodes[i].pid > 0) {
            h_node_kill(&nodes[i], SIGTERM);
            h_node_wait(&nodes[i]);
        }
    }
}

static int teardown(void **state)
{
    (void)state;
    stop_all();
    if (base[0] != '\0') {
        h_rmrf(base);
        base[0] = '\0';
    }
    return 0;
}

/* The leader's index (bounded wait), from the nodes' own status. */
static int find_leader(void)
{
    long deadline = now_ms() + 15000;
    while (now_ms() < deadline) {
        for (int i = 0; i < N; i++) {
            struct nv_err e;
            nv_err_init(&e);
            struct nv *r = h_call(&nodes[i], "cluster.status", "[{\"local\": true}]", &e);
            nv_err_clear(&e);
            bool leader = nv_get_bool(nv_get(r, "node"), "leader_ready", false); /* ready leader */
            nv_free(r);
            if (leader) {
                return i;
            }
        }
        usleep(50000);
    }
    return -1;
}

/* A 3-node cluster with TLS on the RPC ports, client certificates
 * required. A follower forwards a write to the leader (TLS, the follower's
 * certificate as the client certificate, the leader's checked against
 * its address) and gathers cluster.status from its peers. nvmetctl needs
 * --cacert (and here a client certificate); without them it fails at
 * once with [EPROTO] and a clear reason. */
static void test_tls_cluster(void **state)
{
    (void)state;
    h_tmpdir(base, sizeof base);
    char list[256] = "";
    size_t o = 0;
    for (int i = 0; i < N; i++) {
        h_node_init(&nodes[i], base, i + 1);
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
                              nodes[i].raft_port);
    }
    assert_int_equal(tc_make_cert(base, "rpc-ca", "cli", "DNS:cli.test"), 0);
    for (int i = 0; i < N; i++) {
        const char *extra[] = {"--cluster", list, "--rpc-client-certs", NULL};
        assert_int_equal(h_node_start(&nodes[i], extra), 0);
    }
    int l = find_leader();
    assert_true(l >= 0);
    int f = (l + 1) % N;
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", nodes[f].rpc_port);
    const char *ca = nodes[0].cacert;
    char cert[300], key[300];
    snprintf(cert, sizeof cert, "%s/cli.pem", base);
    snprintf(key, sizeof key, "%s/cli.key", base);

    /* a write through the follower, forwarded to the leader */
    char *out;
    int rc = sh(&out,
                "%s --url %s --api-key-file %s --cacert %s --cert %s --key %s --timeout 20 call "
                "nvmet.subsys.create '{\"name\": \"nqn.2024-01.com.example:tls\"}'",
                NVMETCTL_BIN, url, nodes[f].keyfile, ca, cert, key);
    if (rc != 0) {
        fprintf(stderr, "%s\n", out);
        h_node_print_log(&nodes[f]);
    }
    assert_int_equal(rc, 0);
    free(out);
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(&nodes[l], "nvmet.subsys.query",
                          "[[[\"subnqn\", \"=\", \"nqn.2024-01.com.example:tls\"]], "
                          "{\"count\": true}]",
                          &e);
    assert_non_null(r);
    assert_int_equal(r->u.i, 1);
    nv_free(r);

    /* cluster.status on the follower: its peers answered over TLS */
    bool all = false;
    long deadline = now_ms() + 10000;
    while (!all && now_ms() < deadline) {
        r = h_call(&nodes[f], "cluster.status", NULL, &e);
        nv_err_clear(&e);
        const struct nv *members = nv_get(r, "members");
        int ok = 0;
        for (size_t i = 0; i < nv_len(members); i++) {
            const struct nv *st = nv_get(nv_at(members, i), "status");
            ok += st != NULL && nv_get_bool(st, "reachable", true) && nv_get(st, "error") == NULL;
        }
        all = ok == N;
        if (!all) {
            char *dump = nv_dump(r);
            printf("# cluster.status: %s\n", dump);
            free(dump);
            usleep(200000);
        }
        nv_free(r);
    }
    assert_true(all);

    /* nvmetctl without --cacert: the system store does not know the CA */
    long t0 = now_ms();
    rc = sh(&out, "%s --url %s --api-key-file %s --timeout 20 call core.ping", NVMETCTL_BIN, url,
            nodes[f].keyfile);
    printf("# without --cacert (%ld ms, exit %d): %s\n", now_ms() - t0, rc, out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "[EPROTO] ALL:"));
    assert_non_null(strstr(out, "certificate verify failed"));
    assert_true(now_ms() - t0 < 10000); /* final, not retried until --timeout */
    free(out);
    /* with --cacert but no client certificate: the node refuses us */
    rc = sh(&out, "%s --url %s --api-key-file %s --cacert %s --timeout 20 call core.ping",
            NVMETCTL_BIN, url, nodes[f].keyfile, ca);
    printf("# without a client certificate (exit %d): %s\n", rc, out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "[EPROTO] ALL:"));
    assert_non_null(strstr(out, "certificate required"));
    free(out);
    /* plaintext towards TLS */
    rc = sh(&out, "%s --url %s --api-key-file %s --plaintext --timeout 2 call core.ping",
            NVMETCTL_BIN, url, nodes[f].keyfile);
    printf("# --plaintext (exit %d): %s\n", rc, out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "require TLS"));
    free(out);
    /* a name the certificate carries (DNS localhost) also verifies */
    char url2[64];
    snprintf(url2, sizeof url2, "localhost:%d", nodes[f].rpc_port);
    rc = sh(&out,
            "%s --url %s --api-key-file %s --cacert %s --cert %s --key %s --timeout 20 call "
            "core.ping",
            NVMETCTL_BIN, url2, nodes[f].keyfile, ca, cert, key);
    if (rc != 0) {
        fprintf(stderr, "%s\n", out);
    }
    assert_int_equal(rc, 0);
    free(out);
    teardown(NULL);
}

/* A node serving plaintext (explicitly): nvmetctl --plaintext works,
 * nvmetctl with TLS says the node does not seem to speak it. */
static void test_plaintext_node(void **state)
{
    (void)state;
    h_tmpdir(base, sizeof base);
    h_node_init(&nodes[0], base, 1);
    nodes[0].rpc_plaintext = true;
    assert_int_equal(h_node_start(&nodes[0], NULL), 0);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", nodes[0].rpc_port);
    char *out;
    int rc = sh(&out, "%s --url %s --api-key-file %s --plaintext call core.ping", NVMETCTL_BIN, url,
                nodes[0].keyfile);
    assert_int_equal(rc, 0);
    free(out);
    rc = sh(&out, "%s --url %s --api-key-file %s --cacert %s --timeout 2 call core.ping",
            NVMETCTL_BIN, url, nodes[0].keyfile, nodes[0].cacert);
    printf("# TLS to a plaintext node (exit %d): %s\n", rc, out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "[EPROTO] ALL:"));
    assert_non_null(strstr(out, "does not speak TLS"));
    free(out);
    teardown(NULL);
}

/* nvmetd refuses an unprotected RPC port, half a TLS configuration, and
 * a private key others can read, each with a message saying what to do;
 * nvmetctl refuses a bad --cacert before trying any node. */
static void test_refusals(void **state)
{
    (void)state;
    h_tmpdir(base, sizeof base);
    h_node_init(&nodes[0], base, 1);
    const struct h_node *n = &nodes[0];
    char common[1500];
    snprintf(common, sizeof common,
             "%s --id 1 --raft 127.0.0.1:%d --raft-insecure --data-dir %s --socket %s "
             "--configfs %s --emulate --rpc 127.0.0.1:%d --api-key-file %s",
             NVMETD_BIN, n->raft_port, n->data, n->sock, n->configfs, n->rpc_port, n->keyfile);
    char *out;
    assert_int_equal(sh(&out, "%s", common), 2);
    assert_non_null(strstr(out, "--rpc-plaintext"));
    free(out);
    assert_int_equal(sh(&out, "%s --rpc-cert %s", common, n->cert), 2);
    assert_non_null(strstr(out, "--rpc-key"));
    free(out);
    assert_int_equal(
        sh(&out, "%s --rpc-cert %s --rpc-key %s --rpc-plaintext", common, n->cert, n->certkey), 2);
    assert_non_null(strstr(out, "choose one"));
    free(out);
    assert_int_equal(sh(&out, "%s --rpc-plaintext --rpc-client-certs", common), 2);
    assert_non_null(strstr(out, "--rpc-cacert"));
    free(out);
    assert_int_equal(chmod(n->certkey, 0644), 0);
    int rc = sh(&out, "%s --rpc-cert %s --rpc-key %s", common, n->cert, n->certkey);
    printf("# key 0644 (exit %d): %s\n", rc, out);
    assert_true(rc != 0);
    assert_non_null(strstr(out, "too open"));
    free(out);
    assert_int_equal(chmod(n->certkey, 0600), 0);
    rc =
        sh(&out, "%s --url 127.0.0.1:1 --cacert %s/missing.pem call core.ping", NVMETCTL_BIN, base);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "missing.pem"));
    free(out);
    teardown(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tls_cluster, teardown),
        cmocka_unit_test_teardown(test_plaintext_node, teardown),
        cmocka_unit_test_teardown(test_refusals, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
