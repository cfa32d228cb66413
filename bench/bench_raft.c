/* nvmet-bench (b): libraft alone, through consensus/ with a no-op state
 * machine: the same entry size as a full-path create, N nodes in this
 * process on one loop, closed-loop proposers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "bench.h"
#include "cons.h"

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

void bench_raft(const char *dir, int nodes, int proposers, int total, size_t size)
{
    struct rrun *r = calloc(1, sizeof *r);
    uv_loop_init(&r->loop);
    r->count = nodes;
    r->total = total;
    r->size = size;
    r->lat = calloc((size_t)total, sizeof *r->lat);
    struct cons_peer peers[7];
    for (int i = 0; i < nodes; i++) {
        snprintf(r->n[i].dir, sizeof r->n[i].dir, "%s/raft-%d-%d-%d", dir, nodes, proposers, i + 1);
        snprintf(r->n[i].addr, sizeof r->n[i].addr, "127.0.0.1:%d", bench_free_port());
        peers[i] = (struct cons_peer){.id = (uint64_t)i + 1, .role = CONS_ROLE_VOTER};
        snprintf(peers[i].address, sizeof peers[i].address, "%s", r->n[i].addr);
    }
    struct cons_fsm fsm = {.apply = noop_apply, .free_result = noop_free,
                           .snapshot = noop_snapshot, .restore = noop_restore};
    for (int i = 0; i < nodes; i++) {
        struct cons_config cc = {.id = (uint64_t)i + 1, .address = r->n[i].addr,
                                 .data_dir = r->n[i].dir, .peers = peers,
                                 .n_peers = (size_t)nodes, .pre_vote = true,
                                 .election_timeout_ms = 1000};
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
    snprintf(label, sizeof label, "libraft alone, %d node%s, %d proposer%s", nodes,
             nodes > 1 ? "s" : "", proposers, proposers > 1 ? "s" : "");
    bench_report(label, r->lat, (size_t)r->done, secs);
    if (r->failed > 0) {
        printf("  (%d failed)\n", r->failed);
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
