/* nvmet-bench (b): libraft alone, through consensus/ with a no-op state
 * machine: the same entry size as a full-path create, N nodes in this
 * process on one loop, closed-loop proposers, over the Raft transport in
 * one of its modes (plaintext, PSK, certificates). */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "bench.h"
#include "cons.h"
#include "cons_int.h" /* the transport's handshake counters */
#include "cons_tr.h"

struct rnode {
    struct cons_node *cons;
    char dir[512];
    char addr[64];
};

struct rrun {
    uv_loop_t loop;
    struct rnode n[7];
    int count;
    int total, issued, done, failed;
    double *lat;
    size_t size;
    int closing;
};

struct prop {
    struct rrun *r;
    double started;
};

static void *noop_apply(void *data, const void *buf, size_t len)
{
    (void)data, (void)buf, (void)len;
    return NULL;
}
static void noop_free(void *data, void *result) { (void)data, (void)result; }
static int noop_snapshot(void *data, void **buf, size_t *len)
{
    (void)data;
    *buf = calloc(1, 8);
    *len = 8;
    return *buf != NULL ? 0 : -1;
}
static int noop_restore(void *data, const void *buf, size_t len)
{
    (void)data, (void)buf, (void)len;
    return 0;
}

static struct rnode *leader(struct rrun *r)
{
    for (int i = 0; i < r->count; i++) {
        struct cons_status st;
        cons_get_status(r->n[i].cons, &st);
        if (st.state == CONS_LEADER && st.ready) {
            return &r->n[i];
        }
    }
    return NULL;
}

static void propose_one(struct rrun *r, struct prop *p);

static void proposed(void *arg, int status, void *result)
{
    (void)result;
    struct prop *p = arg;
    struct rrun *r = p->r;
    if (status < 0) {
        r->failed++;
    }
    r->lat[r->done++] = bench_now_us() - p->started;
    propose_one(r, p);
}

static void propose_one(struct rrun *r, struct prop *p)
{
    if (r->issued >= r->total) {
        free(p);
        return;
    }
    struct rnode *l = leader(r);
    if (l == NULL) {
        r->failed++;
        r->done++;
        r->issued++;
        free(p);
        return;
    }
    char *buf = malloc(r->size);
    memset(buf, 'c', r->size);
    r->issued++;
    p->started = bench_now_us();
    if (cons_propose(l->cons, buf, r->size, proposed, p) < 0) {
        r->failed++;
        r->done++;
        free(p);
    }
    free(buf);
}

static void closed(void *arg)
{
    struct rrun *r = arg;
    r->closing--;
}

const char *bench_sec_name(enum bench_sec sec)
{
    return sec == BENCH_PLAIN ? "plaintext" : sec == BENCH_PSK ? "TLS PSK" : "TLS cert";
}

/* A secret and a CA with certificates for nodes 1..7 under dir, made with
 * the openssl CLI the way the README shows. 0 or -1. */
int bench_sec_files(const char *dir)
{
    char cmd[4096];
    int o = snprintf(cmd, sizeof cmd,
                     "(cd '%s' && umask 077 && openssl rand -hex 32 > raft.psk && "
                     "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                     "-keyout ca.key -out ca.crt -days 2 -subj /CN=nvmet-bench-ca",
                     dir);
    for (int i = 1; i <= 7; i++) {
        o += snprintf(cmd + o, sizeof cmd - (size_t)o,
                      " && printf 'subjectAltName=DNS:nvmet-node-%d\nextendedKeyUsage=serverAuth,"
                      "clientAuth\n' > n%d.ext && openssl req -newkey ec -pkeyopt "
                      "ec_paramgen_curve:prime256v1 -nodes -keyout n%d.key -out n%d.csr -subj "
                      "/CN=nvmet-node-%d && openssl x509 -req -in n%d.csr -CA ca.crt -CAkey ca.key "
                      "-CAcreateserial -out n%d.crt -days 2 -extfile n%d.ext",
                      i, i, i, i, i, i, i, i);
    }
    /* the RPC port's certificate (bench_rpc_tls): 127.0.0.1, signed by the CA */
    o += snprintf(cmd + o, sizeof cmd - (size_t)o,
                  " && printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,"
                  "clientAuth\n' > rpc.ext && openssl req -newkey ec -pkeyopt "
                  "ec_paramgen_curve:prime256v1 -nodes -keyout rpc.key -out rpc.csr -subj "
                  "/CN=nvmet-bench-rpc && openssl x509 -req -in rpc.csr -CA ca.crt -CAkey ca.key "
                  "-CAcreateserial -out rpc.crt -days 2 -extfile rpc.ext && "
                  "echo bench-api-key > api.key");
    snprintf(cmd + o, sizeof cmd - (size_t)o, ") >/dev/null 2>&1");
    if (system(cmd) != 0) {
        fprintf(stderr, "nvmet-bench: could not make the Raft secret and certificates in %s "
                        "(openssl CLI)\n", dir);
        return -1;
    }
    return 0;
}

void bench_raft(const char *dir, int nodes, int proposers, int total, size_t size,
                enum bench_sec sec)
{
    struct rrun *r = calloc(1, sizeof *r);
    uv_loop_init(&r->loop);
    r->count = nodes;
    r->total = total;
    r->size = size;
    r->lat = calloc((size_t)total, sizeof *r->lat);
    struct cons_peer peers[7];
    for (int i = 0; i < nodes; i++) {
        snprintf(r->n[i].dir, sizeof r->n[i].dir, "%s/raft-%d-%d-%d-%d", dir, nodes, proposers,
                 (int)sec, i + 1);
        snprintf(r->n[i].addr, sizeof r->n[i].addr, "127.0.0.1:%d", bench_free_port());
        peers[i] = (struct cons_peer){.id = (uint64_t)i + 1, .role = CONS_ROLE_VOTER};
        snprintf(peers[i].address, sizeof peers[i].address, "%s", r->n[i].addr);
    }
    struct cons_fsm fsm = {.apply = noop_apply, .free_result = noop_free,
                           .snapshot = noop_snapshot, .restore = noop_restore};
    for (int i = 0; i < nodes; i++) {
        char psk[600], ca[600], cert[600], key[600];
        snprintf(psk, sizeof psk, "%s/raft.psk", dir);
        snprintf(ca, sizeof ca, "%s/ca.crt", dir);
        snprintf(cert, sizeof cert, "%s/n%d.crt", dir, i + 1);
        snprintf(key, sizeof key, "%s/n%d.key", dir, i + 1);
        struct cons_config cc = {.id = (uint64_t)i + 1, .address = r->n[i].addr,
                                 .data_dir = r->n[i].dir, .peers = peers,
                                 .n_peers = (size_t)nodes, .pre_vote = true,
                                 .election_timeout_ms = 1000,
                                 .insecure = sec == BENCH_PLAIN,
                                 .psk_file = sec == BENCH_PSK ? psk : NULL,
                                 .ca_file = sec == BENCH_CERT ? ca : NULL,
                                 .cert_file = sec == BENCH_CERT ? cert : NULL,
                                 .key_file = sec == BENCH_CERT ? key : NULL};
        char msg[256];
        if (cons_start(&r->loop, &cc, &fsm, &r->n[i].cons, msg, sizeof msg) < 0) {
            fprintf(stderr, "bench raft: %s\n", msg);
            exit(1);
        }
    }
    double t0 = bench_now_us();
    while (leader(r) == NULL && bench_now_us() - t0 < 20e6) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    t0 = bench_now_us();
    for (int i = 0; i < proposers; i++) {
        struct prop *p = calloc(1, sizeof *p);
        p->r = r;
        propose_one(r, p);
    }
    while (r->done < r->total && bench_now_us() - t0 < 300e6) {
        uv_run(&r->loop, UV_RUN_ONCE);
    }
    double secs = (bench_now_us() - t0) / 1e6;
    char label[96];
    snprintf(label, sizeof label, "libraft alone, %d node%s, %d proposer%s, %s", nodes,
             nodes > 1 ? "s" : "", proposers, proposers > 1 ? "s" : "", bench_sec_name(sec));
    bench_report(label, r->lat, (size_t)r->done, secs);
    if (r->failed > 0) {
        printf("  (%d failed)\n", r->failed);
    }
    /* connect + TLS + connection handshake, per outbound connection */
    uint64_t conns = 0, us = 0;
    for (int i = 0; i < nodes; i++) {
        struct cons_tr_stats st;
        cons_tr_get_stats(&r->n[i].cons->transport, &st);
        conns += st.connected;
        us += st.handshake_us;
    }
    if (conns > 0) {
        printf("    %" PRIu64 " connections, handshake (connect to ready) mean %.2f ms\n", conns,
               (double)us / (double)conns / 1000);
    }
    r->closing = nodes;
    for (int i = 0; i < nodes; i++) {
        cons_close(r->n[i].cons, closed, r);
    }
    while (r->closing > 0) {
        uv_run(&r->loop, UV_RUN_ONCE);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    free(r->lat);
    free(r);
}
