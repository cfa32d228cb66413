/* Integration tests of API keys and roles with real nvmetd processes:
 * a hashed key file (made with the real `nvmetctl key generate`) with an
 * admin and a readonly key; every method the node registers refused to the
 * readonly key unless it is on this file's list of reads; DH-CHAP secrets
 * masked for readonly (query, get_instance, nested entries, filters);
 * revoking a key in the file without a restart; bad lines refused with
 * their line number; the old one-key format; and a 3-node cluster whose
 * nodes log in to each other with --cluster-key-file, where a readonly
 * client of a follower can neither write nor read secrets through
 * forwarding; without any node-to-node key, no forwarding. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

#define MAXN 3

struct rig {
    char base[256];
    struct h_node n[MAXN];
    int count;
    char admin_key[128], ro_key[128];
    char admin_line[256], ro_line[256];
    char cluster_key_file[300];
};

static struct rig *current;

static int teardown(void **state)
{
    (void)state;
    struct rig *r = current;
    if (r == NULL) {
        return 0;
    }
    h_nodes_down(r->n, MAXN);
    if (r->base[0] != '\0') {
        h_rmrf(r->base);
    }
    current = NULL;
    return 0;
}

/* `nvmetctl key generate`: its two lines, the key and the file line. */
static void generate(const char *name, const char *role, char *key, size_t klen, char *line,
                     size_t llen)
{
    assert_int_equal(h_key_generate(name, role, key, klen, line, llen), 0);
    assert_int_equal(strlen(key), 64);
    char want[64];
    snprintf(want, sizeof want, "%s %s pbkdf2-sha256$", name, role);
    assert_memory_equal(line, want, strlen(want));
}

/* Replace path with text, mode 0600, atomically (a login never reads a
 * half-written file). */
static void write_private(const char *path, const char *text)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(tmp, 0600), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void write_keys(const struct rig *r, const char *path, bool with_ro)
{
    char text[1024];
    snprintf(text, sizeof text, "# nvmet-ha API keys\n\n%s\n%s%s\n", r->admin_line,
             with_ro ? "" : "# revoked: ", r->ro_line);
    write_private(path, text);
}

static void rig_init(struct rig *r, int count)
{
    memset(r, 0, sizeof *r);
    current = r;
    h_tmpdir(r->base, sizeof r->base);
    r->count = count;
    generate("ops", "admin", r->admin_key, sizeof r->admin_key, r->admin_line,
             sizeof r->admin_line);
    generate("monitor", "readonly", r->ro_key, sizeof r->ro_key, r->ro_line, sizeof r->ro_line);
    snprintf(r->cluster_key_file, sizeof r->cluster_key_file, "%s/cluster.key", r->base);
    write_private(r->cluster_key_file, "0123456789abcdef0123456789abcdef\n");
    for (int i = 0; i < count; i++) {
        h_node_init(&r->n[i], r->base, i + 1);
        write_keys(r, r->n[i].keyfile, true);
    }
}

static void endpoint(const struct h_node *n, char *out, size_t len)
{
    snprintf(out, len, "127.0.0.1:%d", n->rpc_port);
}

/* One call over TCP after logging in with key. Result owned, or NULL and
 * err set. */
static struct nv *tcp_call(const struct h_node *n, const char *key, const char *method,
                           const char *params_json, struct nv_err *err)
{
    char ep[64];
    endpoint(n, ep, sizeof ep);
    struct nv *params = params_json != NULL ? nv_from_json(params_json) : nv_arr();
    assert_non_null(params);
    struct rpc_tls_opts tls = {.plaintext = n->rpc_plaintext, .ca_file = n->cacert};
    struct rpc_sync_opts o = {.tls = &tls, .api_key = key, .msgid = -1, .timeout_ms = 20000};
    struct nv *res = NULL;
    nv_err_clear(err);
    if (rpc_call_sync(ep, method, params, &o, &res, err) < 0) {
        return NULL;
    }
    return res;
}

static struct nv *must(const struct h_node *n, const char *key, const char *method,
                       const char *params_json)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *v = tcp_call(n, key, method, params_json, &e);
    if (v == NULL) {
        char *why = nv_err_reason(&e);
        fail_msg("%s %s: %s", method, params_json ? params_json : "[]", why ? why : "?");
    }
    nv_err_clear(&e);
    return v;
}

/* The call is refused for its role: EPERM naming the method and role. */
static void assert_eperm(const struct h_node *n, const char *key, const char *method,
                         const char *params_json)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *v = tcp_call(n, key, method, params_json, &e);
    if (v != NULL) {
        fail_msg("%s answered for a readonly key", method);
    }
    if (e.errnum != EPERM) {
        char *why = nv_err_reason(&e);
        fail_msg("%s: expected EPERM, got %s: %s", method, nv_errname(e.errnum), why ? why : "");
    }
    assert_string_equal(nv_errname(e.errnum), "EPERM");
    assert_non_null(strstr(e.reason, method));
    assert_non_null(strstr(e.reason, "readonly"));
    nv_err_clear(&e);
}

static void assert_me(const struct h_node *n, const char *key, const char *name, const char *role)
{
    struct nv *me = must(n, key, "auth.me", NULL);
    assert_string_equal(nv_get_str(me, "name"), name);
    assert_string_equal(nv_get_str(me, "role"), role);
    nv_free(me);
}

static void assert_login_refused(const struct h_node *n, const char *key)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *v = tcp_call(n, key, "core.ping", NULL, &e);
    assert_null(v);
    assert_int_equal(e.code, NV_E_NOT_AUTHENTICATED);
    nv_err_clear(&e);
}

/* What this test (not the server) says readonly may call. */
static bool readonly_allowed(const char *m)
{
    static const char *const exact[] = {"nvmet.global.config",
                                        "nvmet.global.sessions",
                                        "nvmet.port.transport_address_choices",
                                        "nvmet.host.dhchap_dhgroup_choices",
                                        "nvmet.host.dhchap_hash_choices",
                                        "cluster.status",
                                        "failover.status",
                                        "failover.status_details",
                                        "failover.disabled_reasons",
                                        "failover.disabled.reasons",
                                        "failover.node",
                                        "failover.config",
                                        "core.ping",
                                        "core.set_options",
                                        "core.subscribe",
                                        "core.unsubscribe",
                                        "core.get_methods",
                                        "auth.login_with_api_key",
                                        "auth.me",
                                        NULL};
    for (size_t i = 0; exact[i] != NULL; i++) {
        if (strcmp(m, exact[i]) == 0) {
            return true;
        }
    }
    size_t l = strlen(m);
    bool query = l > 6 && strcmp(m + l - 6, ".query") == 0;
    bool get = l > 13 && strcmp(m + l - 13, ".get_instance") == 0;
    return strncmp(m, "nvmet.", 6) == 0 && (query || get);
}

static const char *str_of(const struct nv *v)
{
    return nv_is(v, NV_STR) ? v->u.s.p : NULL;
}

/* Admin creates a host with both DH-CHAP keys (from generate_key) and
 * links it to a subsystem; returns the host key (owned). */
static char *make_host(const struct h_node *n, const char *key)
{
    struct nv *k1 = must(n, key, "nvmet.host.generate_key", "[\"SHA-256\"]");
    struct nv *k2 = must(n, key, "nvmet.host.generate_key", "[\"SHA-256\"]");
    char *hk = strdup(str_of(k1));
    char params[1024];
    snprintf(params, sizeof params,
             "[{\"hostnqn\": \"nqn.2014-08.org.example:host1\", \"dhchap_key\": \"%s\", "
             "\"dhchap_ctrl_key\": \"%s\"}]",
             str_of(k1), str_of(k2));
    nv_free(must(n, key, "nvmet.host.create", params));
    nv_free(must(n, key, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:s1\"}]"));
    nv_free(must(n, key, "nvmet.host_subsys.create", "[{\"host_id\": 1, \"subsys_id\": 1}]"));
    nv_free(k1);
    nv_free(k2);
    return hk;
}

/* Every string under a secret key in v is the mask (masked) or not
 * (!masked); returns how many were seen. */
static int check_secrets(const struct nv *v, bool masked)
{
    int seen = 0;
    if (nv_is(v, NV_ARR)) {
        for (size_t i = 0; i < v->u.a.n; i++) {
            seen += check_secrets(v->u.a.v[i], masked);
        }
    } else if (nv_is(v, NV_MAP)) {
        for (size_t i = 0; i < v->u.m.n; i++) {
            const struct nv_kv *kv = &v->u.m.kv[i];
            bool secret = strcmp(kv->k, "dhchap_key") == 0 || strcmp(kv->k, "dhchap_ctrl_key") == 0;
            if (secret && nv_is(kv->v, NV_STR)) {
                seen++;
                if (masked) {
                    assert_string_equal(kv->v->u.s.p, "********");
                } else {
                    assert_memory_equal(kv->v->u.s.p, "DHHC-1:", 7);
                }
            } else {
                seen += check_secrets(kv->v, masked);
            }
        }
    }
    return seen;
}

static void check_masking(const struct h_node *n, const struct rig *r, const char *hk)
{
    struct nv *q = must(n, r->ro_key, "nvmet.host.query", NULL);
    assert_int_equal(check_secrets(q, true), 2);
    nv_free(q);
    q = must(n, r->admin_key, "nvmet.host.query", NULL);
    assert_int_equal(check_secrets(q, false), 2);
    nv_free(q);
    q = must(n, r->ro_key, "nvmet.host.get_instance", "[1]");
    assert_int_equal(check_secrets(q, true), 2);
    nv_free(q);
    /* the host nested in its link */
    q = must(n, r->ro_key, "nvmet.host_subsys.query", NULL);
    assert_int_equal(check_secrets(q, true), 2);
    nv_free(q);
    q = must(n, r->admin_key, "nvmet.host_subsys.query", NULL);
    assert_int_equal(check_secrets(q, false), 2);
    nv_free(q);
    /* filters see the masked value: no guessing the key by prefix */
    char f[512];
    snprintf(f, sizeof f, "[[[\"dhchap_key\", \"=\", \"%s\"]], {\"count\": true}]", hk);
    q = must(n, r->ro_key, "nvmet.host.query", f);
    assert_int_equal(q->u.i, 0);
    nv_free(q);
    q = must(n, r->admin_key, "nvmet.host.query", f);
    assert_int_equal(q->u.i, 1);
    nv_free(q);
    q = must(n, r->ro_key, "nvmet.host.query",
             "[[[\"dhchap_key\", \"^\", \"DHHC\"]], {\"count\": true}]");
    assert_int_equal(q->u.i, 0);
    nv_free(q);
}

/* Every registered method: readonly gets EPERM unless the test's list
 * says it reads; admin never does. */
static void check_every_method(const struct h_node *n, const struct rig *r)
{
    struct nv *methods = must(n, r->ro_key, "core.get_methods", NULL);
    assert_true(nv_is(methods, NV_MAP));
    size_t refused = 0, allowed = 0;
    for (size_t i = 0; i < methods->u.m.n; i++) {
        const char *m = methods->u.m.kv[i].k;
        const char *declared = nv_get_str(methods->u.m.kv[i].v, "role");
        if (!readonly_allowed(m)) {
            assert_string_equal(declared, "admin");
            assert_eperm(n, r->ro_key, m, NULL);
            refused++;
            continue;
        }
        assert_string_equal(declared, "readonly");
        allowed++;
        struct nv_err e;
        nv_err_init(&e);
        /* may fail for its arguments, never for its role */
        nv_free(tcp_call(n, r->ro_key, m, NULL, &e));
        assert_int_not_equal(e.errnum, EPERM);
        nv_err_clear(&e);
    }
    /* 6 services x 3 writes + the fixed writes; the reads */
    assert_true(refused >= 25);
    assert_true(allowed >= 30);
    /* admin is refused nothing for its role: a sample of writes */
    struct nv_err e;
    nv_err_init(&e);
    nv_free(tcp_call(n, r->admin_key, "nvmet.port.delete", "[999]", &e));
    assert_int_not_equal(e.errnum, EPERM);
    nv_err_clear(&e);
    nv_free(methods);
}

static void test_single_node(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 1);
    struct h_node *n = &r.n[0];
    assert_int_equal(h_node_start(n, NULL), 0);

    assert_me(n, r.admin_key, "ops", "admin");
    assert_me(n, r.ro_key, "monitor", "readonly");
    struct nv_err e;
    nv_err_init(&e);
    struct nv *me = h_call(n, "auth.me", NULL, &e);
    assert_non_null(me);
    assert_string_equal(nv_get_str(me, "role"), "admin"); /* the unix socket is root */
    nv_free(me);
    assert_login_refused(n, "not-a-key");
    /* the hash itself is no key */
    assert_login_refused(n, strrchr(r.admin_line, ' ') + 1);

    char *hk = make_host(n, r.admin_key);
    check_masking(n, &r, hk);
    /* secrets are never echoed: not by validation, not in the log */
    struct nv *bad = tcp_call(n, r.admin_key, "nvmet.host.create",
                              "[{\"hostnqn\": \"nqn.2014-08.org.example:host2\", \"dhchap_key\": "
                              "\"DHHC-1:01:c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw==:\", "
                              "\"dhchap_ctrl_key\": \"not-a-key-secret-too\"}]",
                              &e);
    assert_null(bad);
    assert_non_null(strstr(e.reason, "Expected key length of 32"));
    assert_null(strstr(e.reason, "c2VjcmV0"));
    assert_null(strstr(e.reason, "not-a-key-secret-too"));
    nv_err_clear(&e);
    char *log = h_read(n->log);
    assert_null(strstr(log, hk + 10)); /* the base64 part of the host key */
    assert_null(strstr(log, "c2VjcmV0"));
    assert_null(strstr(log, r.admin_key));
    assert_null(strstr(log, r.ro_key));
    free(log);
    free(hk);
    check_every_method(n, &r);

    /* revoked in the file: refused at the next login, no restart */
    write_keys(&r, n->keyfile, false);
    assert_login_refused(n, r.ro_key);
    assert_me(n, r.admin_key, "ops", "admin");
    write_keys(&r, n->keyfile, true);
    assert_me(n, r.ro_key, "monitor", "readonly");

    /* a bad line refuses logins and says where */
    write_private(n->keyfile, "# keys\nops admin pbkdf2-sha256$10000$00$00\n");
    assert_login_refused(n, r.admin_key);
    log = h_read(n->log);
    assert_non_null(strstr(log, "line 2: the salt must be 32 hex digits"));
    free(log);
    /* group-readable: refused */
    write_keys(&r, n->keyfile, true);
    assert_int_equal(chmod(n->keyfile, 0640), 0);
    assert_login_refused(n, r.admin_key);
    assert_int_equal(chmod(n->keyfile, 0600), 0);
    assert_me(n, r.admin_key, "ops", "admin");
    teardown(NULL);
}

/* nvmetd refuses to start on a key file with a bad line, naming it. */
static void test_bad_file_at_start(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 1);
    struct h_node *n = &r.n[0];
    char text[1024];
    snprintf(text, sizeof text, "%s\n\nmonitor superuser %s\n", r.admin_line,
             strrchr(r.ro_line, ' ') + 1);
    write_private(n->keyfile, text);
    assert_int_equal(h_node_start(n, NULL), -1);
    char *log = h_read(n->log);
    assert_non_null(strstr(log, "line 3: the role must be admin or readonly (\"superuser\")"));
    assert_non_null(strstr(log, n->keyfile));
    free(log);
    teardown(NULL);
}

/* One bare key: the admin key, with a warning saying how to hash it. */
static void test_legacy_file(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 1);
    struct h_node *n = &r.n[0];
    write_private(n->keyfile, "legacy-test-key\n");
    assert_int_equal(h_node_start(n, NULL), 0);
    assert_me(n, "legacy-test-key", "legacy", "admin");
    assert_me(n, "legacy-test-key", "legacy", "admin");
    assert_login_refused(n, r.admin_key);
    char *log = h_read(n->log);
    const char *w = strstr(log, "holds one bare key");
    assert_non_null(w);
    assert_null(strstr(w + 1, "holds one bare key")); /* once */
    assert_non_null(strstr(log, "nvmetctl key hash"));
    assert_null(strstr(log, "legacy-test-key")); /* the key is never logged */
    free(log);
    /* without a Raft PSK the bare key is also the node-to-node key: it
     * still logs in as "legacy" */
    h_node_kill(n, SIGTERM);
    h_node_wait(n);
    const char *insecure[] = {"--raft-insecure", NULL};
    assert_int_equal(h_node_start(n, insecure), 0);
    assert_me(n, "legacy-test-key", "legacy", "admin");
    log = h_read(n->log);
    assert_non_null(strstr(log, "node-to-node key: the API key file (old format)"));
    free(log);
    teardown(NULL);
}

static int wait_leader(const struct rig *r, int ms)
{
    return h_wait_leader(r->n, r->count, ms);
}

/* A call through a follower, retried (bounded) while the follower does
 * not know the leader's RPC address yet. */
static struct nv *via(const struct h_node *n, const char *key, const char *method,
                      const char *params, struct nv_err *e)
{
    long deadline = h_now_ms() + 15000;
    for (;;) {
        struct nv *v = tcp_call(n, key, method, params, e);
        bool retry = v == NULL && (e->code == NV_E_NOT_LEADER || e->code == NV_E_NO_QUORUM);
        if (!retry || h_now_ms() > deadline) {
            return v;
        }
        usleep(100000);
    }
}

/* Hashed keys only and no Raft PSK: the nodes forward with
 * --cluster-key-file, and the roles travel along. */
static void test_cluster_key_file(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 3);
    char list[256];
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
                              r.n[i].raft_port);
    }
    for (int i = 0; i < 3; i++) {
        const char *extra[] = {"--cluster",        list, "--raft-insecure", "--cluster-key-file",
                               r.cluster_key_file, NULL};
        assert_int_equal(h_node_start(&r.n[i], extra), 0);
    }
    int l = wait_leader(&r, 15000);
    assert_true(l >= 0);
    const struct h_node *f = &r.n[(l + 1) % 3];
    assert_me(f, "0123456789abcdef0123456789abcdef", "cluster", "admin");

    /* admin writes through the follower: forwarded with the cluster key */
    struct nv_err e;
    nv_err_init(&e);
    struct nv *k = via(f, r.admin_key, "nvmet.host.generate_key", "[\"SHA-256\"]", &e);
    assert_non_null(k);
    char params[512];
    snprintf(params, sizeof params,
             "[{\"hostnqn\": \"nqn.2014-08.org.example:host1\", \"dhchap_key\": \"%s\"}]",
             str_of(k));
    nv_free(k);
    struct nv *v = via(f, r.admin_key, "nvmet.host.create", params, &e);
    if (v == NULL) {
        fail_msg("forwarded write: %s", nv_err_reason(&e));
    }
    nv_free(v);

    /* readonly on the follower: no write, forwarded or not */
    assert_eperm(f, r.ro_key, "nvmet.host.create", params);
    assert_eperm(f, r.ro_key, "nvmet.host.delete", "[1]");
    assert_eperm(f, r.ro_key, "cluster.forward", NULL);
    /* a linearizable read is forwarded to the leader: masked there */
    v = via(f, r.ro_key, "nvmet.host.query", NULL, &e);
    assert_non_null(v);
    assert_int_equal(check_secrets(v, true), 1);
    nv_free(v);
    v = via(f, r.admin_key, "nvmet.host.query", NULL, &e);
    assert_non_null(v);
    assert_int_equal(check_secrets(v, false), 1);
    nv_free(v);
    /* the leader applies the role sent along, whatever the forwarding
     * connection may do (it logged in with the cluster key: admin) */
    const char *ck = "0123456789abcdef0123456789abcdef";
    v = must(&r.n[l], ck, "cluster.forward",
             "[{\"method\": \"nvmet.host.query\", \"params\": [], \"client_id\": null, "
             "\"seq\": 1, \"role\": \"readonly\"}]");
    assert_int_equal(check_secrets(v, true), 1);
    nv_free(v);
    v = tcp_call(&r.n[l], ck, "cluster.forward",
                 "[{\"method\": \"nvmet.host.delete\", \"params\": [1], \"client_id\": null, "
                 "\"seq\": 2, \"role\": \"readonly\"}]",
                 &e);
    assert_null(v);
    assert_int_equal(e.errnum, EPERM);
    v = tcp_call(&r.n[l], ck, "cluster.forward",
                 "[{\"method\": \"nvmet.host.query\", \"params\": [], \"client_id\": null, "
                 "\"seq\": 3, \"role\": \"root\"}]",
                 &e);
    assert_null(v);
    assert_int_equal(e.code, NV_E_BAD_REQUEST);
    /* the leader has the write */
    v = must(&r.n[l], r.admin_key, "nvmet.host.query", "[[], {\"count\": true}]");
    assert_int_equal(v->u.i, 1);
    nv_free(v);
    nv_err_clear(&e);
    teardown(NULL);
}

/* Hashed keys only, no Raft PSK, no --cluster-key-file: no node-to-node
 * key, so no forwarding; a follower names the leader instead. */
static void test_no_cluster_key(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 3);
    char list[256];
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
                              r.n[i].raft_port);
    }
    for (int i = 0; i < 3; i++) {
        const char *extra[] = {"--cluster",          list,  "--raft-insecure",
                               "--rpc-hold-timeout", "300", NULL};
        assert_int_equal(h_node_start(&r.n[i], extra), 0);
    }
    int l = wait_leader(&r, 15000);
    assert_true(l >= 0);
    char leader[64];
    endpoint(&r.n[l], leader, sizeof leader);
    const struct h_node *f = &r.n[(l + 1) % 3];
    struct nv_err e;
    nv_err_init(&e);
    long deadline = h_now_ms() + 15000;
    struct nv *v = NULL;
    do {
        nv_free(v);
        v = tcp_call(f, r.admin_key, "nvmet.subsys.create",
                     "[{\"name\": \"nqn.2024-01.com.example:s1\"}]", &e);
        if (e.code == NV_E_NOT_LEADER && e.leader != NULL) {
            break;
        }
        usleep(100000);
    } while (h_now_ms() < deadline);
    assert_null(v);
    assert_int_equal(e.code, NV_E_NOT_LEADER);
    assert_string_equal(e.leader, leader);
    char *log = h_read(f->log);
    assert_non_null(strstr(log, "node-to-node key: none"));
    free(log);
    /* the leader itself takes the write */
    nv_free(must(&r.n[l], r.admin_key, "nvmet.subsys.create",
                 "[{\"name\": \"nqn.2024-01.com.example:s1\"}]"));
    nv_err_clear(&e);
    teardown(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_single_node, teardown),
        cmocka_unit_test_teardown(test_bad_file_at_start, teardown),
        cmocka_unit_test_teardown(test_legacy_file, teardown),
        cmocka_unit_test_teardown(test_cluster_key_file, teardown),
        cmocka_unit_test_teardown(test_no_cluster_key, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
