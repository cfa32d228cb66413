/* Unit tests of consensus/: real libraft raft_uv nodes on 127.0.0.1 and
 * mkdtemp data dirs, all nodes of a test on one uv loop. Every wait is
 * bounded (deadline on the loop clock). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "cons.h"
#include "cons_int.h" /* white-box: feed the raft fsm adapter garbage */
#include "nv_err.h"

/* ------------------------------------------------------------------ */
/* a recording fsm */

struct tcmd {
    size_t len;
    unsigned char* b;
};

struct tres {
    size_t seq;
    size_t len;
    unsigned char b[];
};

struct tfsm {
    struct tcmd* cmds;
    size_t n, cap;
    unsigned restores, snapshots, frees;
};

static void* t_apply(void* data, const void* buf, size_t len)
{
    struct tfsm* f = data;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 256;
        f->cmds = realloc(f->cmds, f->cap * sizeof *f->cmds);
        assert_non_null(f->cmds);
    }
    struct tcmd* c = &f->cmds[f->n];
    c->len = len;
    c->b = malloc(len + 1);
    assert_non_null(c->b);
    memcpy(c->b, buf, len);
    struct tres* r = malloc(sizeof *r + len);
    assert_non_null(r);
    r->seq = f->n++;
    r->len = len;
    memcpy(r->b, buf, len);
    return r;
}

static void t_free_result(void* data, void* result)
{
    struct tfsm* f = data;
    f->frees++;
    free(result);
}

static void tfsm_clear(struct tfsm* f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->cmds[i].b);
    }
    f->n = 0;
}

static void tfsm_free(struct tfsm* f)
{
    tfsm_clear(f);
    free(f->cmds);
    memset(f, 0, sizeof *f);
}

/* [u64 n] then n x ([u32 len][bytes]) */
static int t_snapshot(void* data, void** buf, size_t* len)
{
    struct tfsm* f = data;
    size_t size = 8;
    for (size_t i = 0; i < f->n; i++) {
        size += 4 + f->cmds[i].len;
    }
    unsigned char* p = malloc(size);
    if (p == NULL) {
        return -ENOMEM;
    }
    uint64_t n = f->n;
    memcpy(p, &n, 8);
    size_t off = 8;
    for (size_t i = 0; i < f->n; i++) {
        uint32_t l = (uint32_t)f->cmds[i].len;
        memcpy(p + off, &l, 4);
        memcpy(p + off + 4, f->cmds[i].b, l);
        off += 4 + l;
    }
    f->snapshots++;
    *buf = p;
    *len = size;
    return 0;
}

static int t_restore(void* data, const void* buf, size_t len)
{
    struct tfsm* f = data;
    const unsigned char* p = buf;
    if (len < 8) {
        return -EINVAL;
    }
    uint64_t n;
    memcpy(&n, p, 8);
    tfsm_clear(f);
    size_t off = 8;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t l;
        if (len - off < 4) {
            return -EINVAL;
        }
        memcpy(&l, p + off, 4);
        if (len - off - 4 < l) {
            return -EINVAL;
        }
        free(t_apply(f, p + off + 4, l));
        off += 4 + l;
    }
    if (off != len) {
        return -EINVAL; /* consensus must hand back the exact bytes */
    }
    f->restores++;
    return 0;
}

/* Command i: odd sizes 1..100, bytes derived from i. */
static size_t gen(size_t i, unsigned char* out)
{
    size_t len = 1 + (i * 37 + i / 7) % 100;
    for (size_t j = 0; j < len; j++) {
        out[j] = (unsigned char)(i * 131 + j * 17 + (i >> 8));
    }
    return len;
}

static void check_seq(const struct tfsm* f, size_t count)
{
    unsigned char b[128];
    assert_int_equal(f->n, count);
    for (size_t i = 0; i < count; i++) {
        size_t len = gen(i, b);
        assert_int_equal(f->cmds[i].len, len);
        assert_memory_equal(f->cmds[i].b, b, len);
    }
}

/* ------------------------------------------------------------------ */
/* loop, nodes, ports */

struct tctx {
    uv_loop_t loop;
    uv_timer_t tick;
    char root[64];
    char psk[96]; /* root/raft.psk: every node of the test uses it */
};

static void tick_cb(uv_timer_t* t)
{
    (void)t;
}

static struct tctx* ctx_new(void)
{
    struct tctx* c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(uv_loop_init(&c->loop), 0);
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_start(&c->tick, tick_cb, 10, 10); /* the loop never blocks long */
    snprintf(c->root, sizeof c->root, "/tmp/test_cons.XXXXXX");
    assert_non_null(mkdtemp(c->root));
    snprintf(c->psk, sizeof c->psk, "%s/raft.psk", c->root);
    int fd = open(c->psk, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 65),
                     65);
    close(fd);
    return c;
}

static int rm_cb(const char* path, const struct stat* sb, int flag, struct FTW* ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void ctx_free(struct tctx* c)
{
    uv_close((uv_handle_t*)&c->tick, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT); /* everything else must already be closing */
    assert_int_equal(uv_loop_close(&c->loop), 0);
    nftw(c->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
}

static uint64_t deadline(struct tctx* c, unsigned ms)
{
    uv_update_time(&c->loop);
    return uv_now(&c->loop) + ms;
}

/* One loop iteration; false once the deadline has passed. */
static bool step(struct tctx* c, uint64_t dl)
{
    uv_run(&c->loop, UV_RUN_ONCE);
    uv_update_time(&c->loop);
    return uv_now(&c->loop) < dl;
}

static void run_ms(struct tctx* c, unsigned ms)
{
    uint64_t dl = deadline(c, ms);
    while (step(c, dl)) {
    }
}

static int port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rv = bind(fd, (struct sockaddr*)&sa, sizeof sa);
    close(fd);
    return rv == 0;
}

static int pick_port(void)
{
    for (;;) {
        int port = 20000 + rand() % 40000;
        if (port_free(port)) {
            return port;
        }
    }
}

struct tnode {
    struct tctx* c;
    struct cons_node* cons;
    struct tfsm fsm;
    uint64_t id;
    char addr[64];
    char dir[128];
    unsigned changes;
    struct cons_status last;
    bool closed;
};

static void on_change(void* arg, const struct cons_status* st)
{
    struct tnode* t = arg;
    t->changes++;
    t->last = *st;
}

static void tnode_init(struct tctx* c, struct tnode* t, uint64_t id)
{
    memset(t, 0, sizeof *t);
    t->c = c;
    t->id = id;
    snprintf(t->addr, sizeof t->addr, "127.0.0.1:%d", pick_port());
    snprintf(t->dir, sizeof t->dir, "%s/n%llu", c->root, (unsigned long long)id);
}

static struct cons_config base_config(void)
{
    struct cons_config cc = {.election_timeout_ms = 300,
                             .heartbeat_ms = 30,
                             .snapshot_threshold = 100000,
                             .pre_vote = true};
    return cc;
}

static int tnode_start(struct tnode* t,
                       const struct cons_config* base,
                       const struct cons_peer* peers,
                       size_t n_peers,
                       char* msg,
                       size_t msglen)
{
    struct cons_config cc = *base;
    cc.id = t->id;
    cc.address = t->addr;
    cc.data_dir = t->dir;
    cc.peers = peers;
    cc.n_peers = n_peers;
    if (!cc.insecure && cc.psk_file == NULL && cc.ca_file == NULL) {
        cc.psk_file = t->c->psk; /* the real transport: TLS with the test's secret */
    }
    struct cons_fsm f = {.apply = t_apply,
                         .free_result = t_free_result,
                         .snapshot = t_snapshot,
                         .restore = t_restore,
                         .data = &t->fsm};
    t->closed = false;
    int rv = cons_start(&t->c->loop, &cc, &f, &t->cons, msg, msglen);
    if (rv == 0) {
        cons_on_change(t->cons, on_change, t);
    }
    return rv;
}

/* Single node: retry on another port while the chosen one is busy. */
static void tnode_start_single(struct tnode* t, const struct cons_config* base)
{
    char msg[256];
    int rv;
    for (int i = 0; i < 10; i++) {
        rv = tnode_start(t, base, NULL, 0, msg, sizeof msg);
        if (rv != -EADDRINUSE) {
            break;
        }
        snprintf(t->addr, sizeof t->addr, "127.0.0.1:%d", pick_port());
    }
    if (rv != 0) {
        fail_msg("cons_start: %d %s", rv, msg);
    }
}

static void closed_cb(void* arg)
{
    struct tnode* t = arg;
    t->closed = true;
    t->cons = NULL;
}

static void tnode_close(struct tnode* t)
{
    if (t->cons == NULL) {
        return;
    }
    cons_close(t->cons, closed_cb, t);
    uint64_t dl = deadline(t->c, 5000);
    while (!t->closed && step(t->c, dl)) {
    }
    assert_true(t->closed);
}

static bool is_ready(struct tnode* t)
{
    if (t->cons == NULL) {
        return false;
    }
    struct cons_status st;
    cons_get_status(t->cons, &st);
    return st.state == CONS_LEADER && st.ready;
}

static void wait_ready(struct tnode* t, unsigned ms)
{
    uint64_t dl = deadline(t->c, ms);
    while (!is_ready(t) && step(t->c, dl)) {
    }
    assert_true(is_ready(t));
}

/* Index of the single ready leader among nodes, or -1. */
static int ready_leader(struct tnode* t, int n)
{
    int found = -1;
    for (int i = 0; i < n; i++) {
        if (is_ready(&t[i])) {
            if (found >= 0) {
                return -2;
            }
            found = i;
        }
    }
    return found;
}

/* Three (or n) voters bootstrapped with the same configuration; all ports
 * re-picked if one turns out busy. */
static void cluster_start(struct tctx* c, struct tnode* t, int n, const struct cons_config* base)
{
    struct cons_peer peers[8];
    char msg[256];
    for (int attempt = 0; attempt < 5; attempt++) {
        for (int i = 0; i < n; i++) {
            tnode_init(c, &t[i], (uint64_t)i + 1);
            peers[i].id = t[i].id;
            snprintf(peers[i].address, sizeof peers[i].address, "%s", t[i].addr);
            peers[i].role = CONS_ROLE_VOTER;
        }
        int i, rv = 0;
        for (i = 0; i < n; i++) {
            rv = tnode_start(&t[i], base, peers, (size_t)n, msg, sizeof msg);
            if (rv != 0) {
                break;
            }
        }
        if (rv == 0) {
            return;
        }
        for (int j = 0; j < i; j++) {
            tnode_close(&t[j]);
            tfsm_free(&t[j].fsm);
        }
        if (rv != -EADDRINUSE) {
            fail_msg("cons_start node %d: %d %s", i + 1, rv, msg);
        }
        /* fresh dirs for the retry */
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf %s/n*", c->root);
        assert_int_equal(system(cmd), 0);
    }
    fail_msg("no free ports");
}

/* ------------------------------------------------------------------ */
/* proposal bookkeeping */

struct pcb {
    struct tnode* t;
    size_t idx; /* command number (gen) */
    int calls;
    int status;
    bool result_ok;
};

static void prop_cb(void* arg, int status, void* result)
{
    struct pcb* p = arg;
    p->calls++;
    p->status = status;
    if (status == 0) {
        unsigned char b[128];
        size_t len = gen(p->idx, b);
        struct tres* r = result;
        p->result_ok = r != NULL && r->len == len && memcmp(r->b, b, len) == 0;
        free(r);
    } else {
        p->result_ok = result == NULL;
    }
}

/* Propose commands [from, to) on t in one loop iteration. */
static void propose_range(struct tnode* t, struct pcb* pcbs, size_t from, size_t to)
{
    unsigned char b[128];
    for (size_t i = from; i < to; i++) {
        size_t len = gen(i, b);
        pcbs[i] = (struct pcb){.t = t, .idx = i};
        assert_int_equal(cons_propose(t->cons, b, len, prop_cb, &pcbs[i]), 0);
        assert_int_equal(pcbs[i].calls, 0); /* never synchronous */
    }
}

static bool all_called(struct pcb* pcbs, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        if (pcbs[i].calls == 0) {
            return false;
        }
    }
    return true;
}

static void wait_called(struct tctx* c, struct pcb* pcbs, size_t from, size_t to, unsigned ms)
{
    uint64_t dl = deadline(c, ms);
    while (!all_called(pcbs, from, to) && step(c, dl)) {
    }
    for (size_t i = from; i < to; i++) {
        assert_int_equal(pcbs[i].calls, 1);
        assert_int_equal(pcbs[i].status, 0);
        assert_true(pcbs[i].result_ok);
    }
}

static void wait_fsm(struct tnode* t, size_t count, unsigned ms)
{
    uint64_t dl = deadline(t->c, ms);
    while (t->fsm.n < count && step(t->c, dl)) {
    }
    check_seq(&t->fsm, count);
}

struct simple {
    int calls;
    int status;
};

static void simple_cb(void* arg, int status, void* result)
{
    struct simple* s = arg;
    assert_null(result);
    s->calls++;
    s->status = status;
}

static void wait_simple(struct tctx* c, struct simple* s, unsigned ms)
{
    uint64_t dl = deadline(c, ms);
    while (s->calls == 0 && step(c, dl)) {
    }
    assert_int_equal(s->calls, 1);
}

/* ------------------------------------------------------------------ */
/* tests */

#define N_CMDS 1000

/* One node: bootstrap, ready, 1000 odd-sized commands through group
 * commit, each callback with its own result; restart replays the same
 * sequence. */
static void test_single_propose_restart(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1);
    struct cons_config cc = base_config();
    tnode_start_single(&t, &cc);

    /* not ready before the post-election barrier is applied */
    unsigned char b[128];
    size_t len = gen(0, b);
    assert_int_equal(cons_propose(t.cons, b, len, prop_cb, NULL), -NV_ENOTLEADER);
    assert_int_equal(cons_barrier(t.cons, simple_cb, NULL), -NV_ENOTLEADER);
    wait_ready(&t, 5000);
    assert_true(t.changes > 0);
    run_ms(c, 20); /* on_change runs from the idle handle */
    assert_true(t.last.ready);

    struct cons_status st;
    cons_get_status(t.cons, &st);
    assert_int_equal(st.id, 1);
    assert_int_equal(st.state, CONS_LEADER);
    assert_true(st.term >= 1);
    assert_int_equal(st.leader_id, 1);
    assert_string_equal(st.leader_address, t.addr);
    assert_int_equal(st.n_members, 1);
    assert_int_equal(st.members[0].id, 1);
    assert_string_equal(st.members[0].address, t.addr);
    assert_int_equal(st.members[0].role, CONS_ROLE_VOTER);
    assert_int_equal(st.last_contact_ms, 0);
    uint64_t idx0 = st.last_index;

    struct pcb* pcbs = calloc(N_CMDS, sizeof *pcbs);
    propose_range(&t, pcbs, 0, N_CMDS); /* one loop iteration: 4 entries of <= 256 */
    wait_called(c, pcbs, 0, N_CMDS, 10000);
    check_seq(&t.fsm, N_CMDS);
    assert_int_equal(t.fsm.frees, 0);
    cons_get_status(t.cons, &st);
    assert_true(st.last_index - idx0 <= 8); /* group commit */
    assert_int_equal(st.commit_index, st.last_index);
    assert_int_equal(st.last_applied, st.last_index);

    /* barrier */
    struct simple s = {0};
    assert_int_equal(cons_barrier(t.cons, simple_cb, &s), 0);
    assert_int_equal(s.calls, 0);
    wait_simple(c, &s, 5000);
    assert_int_equal(s.status, 0);

    /* empty command */
    struct simple e = {0};
    assert_int_equal(cons_propose(t.cons, NULL, 0, NULL, NULL), 0);
    assert_int_equal(cons_barrier(t.cons, simple_cb, &e), 0);
    wait_simple(c, &e, 5000);
    assert_int_equal(t.fsm.n, N_CMDS + 1);
    assert_int_equal(t.fsm.cmds[N_CMDS].len, 0);
    assert_int_equal(t.fsm.frees, 1); /* no callback: consensus released it */

    tnode_close(&t);
    assert_int_equal(cons_propose(NULL, b, len, NULL, NULL), -ESHUTDOWN);
    tfsm_free(&t.fsm);

    /* restart: the whole sequence replays (no snapshot at this threshold) */
    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);
    uint64_t dl = deadline(c, 5000);
    while (t.fsm.n < N_CMDS + 1 && step(c, dl)) {
    }
    assert_int_equal(t.fsm.n, N_CMDS + 1);
    t.fsm.n--; /* the empty command last */
    check_seq(&t.fsm, N_CMDS);
    t.fsm.n++;
    assert_int_equal(t.fsm.cmds[N_CMDS].len, 0);
    assert_int_equal(t.fsm.restores, 0);
    assert_int_equal(t.fsm.frees, N_CMDS + 1);

    /* and it keeps going */
    struct pcb more[10];
    unsigned char mb[128];
    for (int i = 0; i < 10; i++) {
        size_t l = gen(N_CMDS + 1 + (size_t)i, mb);
        more[i] = (struct pcb){.t = &t, .idx = N_CMDS + 1 + (size_t)i};
        assert_int_equal(cons_propose(t.cons, mb, l, prop_cb, &more[i]), 0);
    }
    dl = deadline(c, 5000);
    while (!all_called(more, 0, 10) && step(c, dl)) {
    }
    for (int i = 0; i < 10; i++) {
        assert_int_equal(more[i].status, 0);
        assert_true(more[i].result_ok);
    }
    tnode_close(&t);
    tfsm_free(&t.fsm);
    free(pcbs);
    ctx_free(c);
}

/* Threshold 64: snapshots are taken; a restart restores the latest one and
 * replays the log tail, giving the same sequence. */
static void test_snapshot_restart(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1);
    struct cons_config cc = base_config();
    cc.snapshot_threshold = 64;
    cc.snapshot_trailing = 16;
    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);

    struct pcb* pcbs = calloc(N_CMDS, sizeof *pcbs);
    /* 7 commands per entry: ~143 entries, so at least two snapshots */
    for (size_t i = 0; i < N_CMDS; i += 7) {
        size_t to = i + 7 < N_CMDS ? i + 7 : N_CMDS;
        propose_range(&t, pcbs, i, to);
        wait_called(c, pcbs, i, to, 5000);
    }
    check_seq(&t.fsm, N_CMDS);
    assert_true(t.fsm.snapshots >= 2);
    struct cons_status st;
    cons_get_status(t.cons, &st);
    assert_true(st.snapshot_index >= 64); /* the newest may still be being written */
    tnode_close(&t);
    tfsm_free(&t.fsm);

    tnode_start_single(&t, &cc);
    assert_int_equal(t.fsm.restores, 1); /* at start */
    /* A lone voter elects itself inside raft_start and applies the log
     * tail at once: the tail's results nobody waits for are freed. */
    wait_ready(&t, 5000);
    wait_fsm(&t, N_CMDS, 5000);
    assert_true(t.fsm.frees > 0 && t.fsm.frees < N_CMDS / 2);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    free(pcbs);
    ctx_free(c);
}

/* A data dir remembers its node id. */
static void test_wrong_node_id(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1);
    struct cons_config cc = base_config();
    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);
    tnode_close(&t);
    tfsm_free(&t.fsm);

    t.id = 2;
    char msg[256] = "";
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), -EEXIST);
    assert_null(t.cons);
    char want[256];
    snprintf(want, sizeof want, "data dir %s belongs to node 1, not 2", t.dir);
    assert_string_equal(msg, want);

    /* bad arguments */
    struct tnode u;
    tnode_init(c, &u, 3);
    snprintf(u.addr, sizeof u.addr, "localhost:7000");
    assert_int_equal(tnode_start(&u, &cc, NULL, 0, msg, sizeof msg), -EINVAL);
    tnode_init(c, &u, 0);
    assert_int_equal(tnode_start(&u, &cc, NULL, 0, msg, sizeof msg), -EINVAL);
    tnode_init(c, &u, 4);
    struct cons_config bad = cc;
    bad.heartbeat_ms = 300;
    assert_int_equal(tnode_start(&u, &bad, NULL, 0, msg, sizeof msg), -EINVAL);
    ctx_free(c);
}

/* A failure after raft_init (unreadable log) is reported and the node
 * tears itself down on the caller's loop. */
static void test_corrupt_dir(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1);
    struct cons_config cc = base_config();
    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);
    struct pcb pcbs[20];
    propose_range(&t, pcbs, 0, 20);
    wait_called(c, pcbs, 0, 20, 5000);
    tnode_close(&t);
    tfsm_free(&t.fsm);

    /* scribble over every closed segment */
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cd %s && for f in 0*-0*; do [ -f \"$f\" ] && dd if=/dev/urandom of=\"$f\" bs=64 "
             "seek=1 count=4 conv=notrunc status=none; done; ls >/dev/null",
             t.dir);
    assert_int_equal(system(cmd), 0);
    char msg[256] = "";
    int rv = tnode_start(&t, &cc, NULL, 0, msg, sizeof msg);
    if (rv == 0) {
        /* no closed segment existed (all in open segments): accept */
        tnode_close(&t);
    } else {
        assert_true(rv < 0);
        assert_null(t.cons);
        print_message("corrupt dir refused: %d %s\n", rv, msg);
        assert_true(strlen(msg) > 0);
        run_ms(c, 200); /* asynchronous teardown */
    }
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* Close with proposals queued and in flight: every callback fires once,
 * before done. */
static int g_done_calls;
static struct pcb* g_pcbs;
static size_t g_n;

static void close_done(void* arg)
{
    struct tnode* t = arg;
    t->closed = true;
    t->cons = NULL;
    g_done_calls++;
    for (size_t i = 0; i < g_n; i++) {
        assert_int_equal(g_pcbs[i].calls, 1);
    }
}

static void test_close_pending(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1);
    struct cons_config cc = base_config();
    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);

    struct pcb pcbs[40];
    g_pcbs = pcbs;
    g_n = 40;
    g_done_calls = 0;
    propose_range(&t, pcbs, 0, 20);
    /* let the first 20 reach raft (in the log, maybe not yet on disk) */
    struct cons_status st;
    cons_get_status(t.cons, &st);
    uint64_t li = st.last_index;
    uint64_t dl = deadline(c, 2000);
    do {
        step(c, dl);
        cons_get_status(t.cons, &st);
    } while (st.last_index == li && uv_now(&c->loop) < dl);
    propose_range(&t, pcbs, 20, 40); /* queued only */
    cons_close(t.cons, close_done, &t);
    assert_int_equal(cons_propose(t.cons, "x", 1, prop_cb, NULL), -ESHUTDOWN);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(pcbs[i].calls, 0); /* not synchronously from close */
    }
    dl = deadline(c, 5000);
    while (!t.closed && step(c, dl)) {
    }
    assert_int_equal(g_done_calls, 1);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(pcbs[i].calls, 1);
        if (i >= 20) {
            assert_int_equal(pcbs[i].status, -ESHUTDOWN);
        } else {
            assert_true(pcbs[i].status == 0 || pcbs[i].status == -NV_ELEADERSHIPLOST ||
                        pcbs[i].status == -ESHUTDOWN);
        }
        assert_true(pcbs[i].result_ok);
    }
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* A command bigger than a segment, and the size limit. */
static void test_big_command(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1);
    struct cons_config cc = base_config();
    cc.segment_size = 1 << 20;
    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);
    size_t big = (3u << 20) + 5;
    unsigned char* p = malloc((16u << 20) + 1);
    for (size_t i = 0; i < big; i++) {
        p[i] = (unsigned char)(i * 7 + 3);
    }
    assert_int_equal(cons_propose(t.cons, p, (16u << 20) + 1, NULL, NULL), -EMSGSIZE);
    struct simple s = {0};
    assert_int_equal(cons_propose(t.cons, p, big, NULL, NULL), 0);
    assert_int_equal(cons_propose(t.cons, "tail", 4, NULL, NULL), 0);
    assert_int_equal(cons_barrier(t.cons, simple_cb, &s), 0);
    wait_simple(c, &s, 10000);
    assert_int_equal(s.status, 0);
    assert_int_equal(t.fsm.n, 2);
    tnode_close(&t);
    tfsm_free(&t.fsm);

    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);
    uint64_t dl = deadline(c, 5000);
    while (t.fsm.n < 2 && step(c, dl)) {
    }
    assert_int_equal(t.fsm.n, 2);
    assert_int_equal(t.fsm.cmds[0].len, big);
    assert_memory_equal(t.fsm.cmds[0].b, p, big);
    assert_int_equal(t.fsm.cmds[1].len, 4);
    assert_memory_equal(t.fsm.cmds[1].b, "tail", 4);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    free(p);
    ctx_free(c);
}

/* Three nodes on one loop: one leader, replication, followers refuse,
 * failover, add + assign a 4th node, barrier, transfer. */
static void test_three_nodes(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t[4];
    struct cons_config cc = base_config();
    cluster_start(c, t, 3, &cc);

    uint64_t dl = deadline(c, 8000);
    while (ready_leader(t, 3) < 0 && step(c, dl)) {
    }
    int L = ready_leader(t, 3);
    assert_true(L >= 0);
    run_ms(c, 100);
    assert_int_equal(ready_leader(t, 3), L);
    for (int i = 0; i < 3; i++) {
        assert_true(t[i].changes > 0);
        if (i != L) {
            struct cons_status st;
            cons_get_status(t[i].cons, &st);
            assert_int_equal(st.state, CONS_FOLLOWER);
            assert_false(st.ready);
            assert_int_equal(st.leader_id, t[L].id);
            assert_string_equal(st.leader_address, t[L].addr);
            assert_true(st.last_contact_ms < 1000);
            assert_int_equal(st.n_members, 3);
            unsigned char b[8] = {1};
            assert_int_equal(cons_propose(t[i].cons, b, 1, prop_cb, NULL), -NV_ENOTLEADER);
            assert_int_equal(cons_barrier(t[i].cons, simple_cb, NULL), -NV_ENOTLEADER);
            assert_int_equal(cons_add(t[i].cons, 9, "127.0.0.1:1", simple_cb, NULL),
                             -NV_ENOTLEADER);
        }
    }

    enum { TOTAL = 600 };
    struct pcb* pcbs = calloc(TOTAL, sizeof *pcbs);
    for (size_t i = 0; i < 300; i += 100) {
        propose_range(&t[L], pcbs, i, i + 100);
        run_ms(c, 1);
    }
    wait_called(c, pcbs, 0, 300, 10000);
    for (int i = 0; i < 3; i++) {
        wait_fsm(&t[i], 300, 5000);
    }
    struct simple s = {0};
    assert_int_equal(cons_barrier(t[L].cons, simple_cb, &s), 0);
    wait_simple(c, &s, 5000);
    assert_int_equal(s.status, 0);

    /* failover */
    tnode_close(&t[L]);
    uv_update_time(&c->loop);
    uint64_t t0 = uv_now(&c->loop);
    dl = deadline(c, 5000);
    int L2;
    while ((L2 = ready_leader(t, 3)) < 0 && step(c, dl)) {
    }
    assert_true(L2 >= 0 && L2 != L);
    uv_update_time(&c->loop);
    print_message("failover: node %llu ready after %llu ms\n", (unsigned long long)t[L2].id,
                  (unsigned long long)(uv_now(&c->loop) - t0));
    propose_range(&t[L2], pcbs, 300, 400);
    wait_called(c, pcbs, 300, 400, 5000);
    for (int i = 0; i < 3; i++) {
        if (i != L) {
            wait_fsm(&t[i], 400, 5000);
        }
    }

    /* a 4th node joins: started empty (not among the peers), added as a
     * spare, then made a voter (catches up during the assign) */
    struct cons_peer peers[3];
    for (int i = 0; i < 3; i++) {
        peers[i].id = t[i].id;
        snprintf(peers[i].address, sizeof peers[i].address, "%s", t[i].addr);
        peers[i].role = CONS_ROLE_VOTER;
    }
    char msg[256];
    int rv = -EADDRINUSE;
    for (int tries = 0; tries < 10 && rv == -EADDRINUSE; tries++) {
        tnode_init(c, &t[3], 4);
        rv = tnode_start(&t[3], &cc, peers, 3, msg, sizeof msg);
    }
    assert_int_equal(rv, 0);
    struct cons_status st;
    cons_get_status(t[3].cons, &st);
    assert_int_equal(st.n_members, 0);
    assert_int_equal(cons_assign(t[L2].cons, 4, 7, simple_cb, NULL), -EINVAL);
    assert_int_equal(cons_add(t[L2].cons, 4, "not-an-address", simple_cb, NULL), -EINVAL);
    s = (struct simple){0};
    assert_int_equal(cons_add(t[L2].cons, 4, t[3].addr, simple_cb, &s), 0);
    assert_int_equal(s.calls, 0);
    wait_simple(c, &s, 5000);
    assert_int_equal(s.status, 0);
    assert_int_equal(cons_add(t[L2].cons, 4, t[3].addr, simple_cb, NULL), -EEXIST);
    s = (struct simple){0};
    assert_int_equal(cons_assign(t[L2].cons, 4, CONS_ROLE_VOTER, simple_cb, &s), 0);
    wait_simple(c, &s, 10000);
    assert_int_equal(s.status, 0);
    wait_fsm(&t[3], 400, 5000);
    cons_get_status(t[L2].cons, &st);
    assert_int_equal(st.n_members, 4);
    bool found = false;
    for (size_t i = 0; i < st.n_members; i++) {
        if (st.members[i].id == 4) {
            found = true;
            assert_int_equal(st.members[i].role, CONS_ROLE_VOTER);
            assert_string_equal(st.members[i].address, t[3].addr);
        }
    }
    assert_true(found);

    propose_range(&t[L2], pcbs, 400, 500);
    wait_called(c, pcbs, 400, 500, 5000);
    for (int i = 0; i < 4; i++) {
        if (i != L) {
            wait_fsm(&t[i], 500, 5000);
        }
    }

    /* leadership transfer to the new node */
    assert_int_equal(cons_transfer(t[L2].cons, 99, simple_cb, NULL), -ENOENT);
    s = (struct simple){0};
    assert_int_equal(cons_transfer(t[L2].cons, 4, simple_cb, &s), 0);
    wait_simple(c, &s, 5000);
    assert_int_equal(s.status, 0);
    dl = deadline(c, 5000);
    while (!is_ready(&t[3]) && step(c, dl)) {
    }
    assert_true(is_ready(&t[3]));
    propose_range(&t[3], pcbs, 500, TOTAL);
    wait_called(c, pcbs, 500, TOTAL, 5000);
    for (int i = 0; i < 4; i++) {
        if (i != L) {
            wait_fsm(&t[i], TOTAL, 5000);
        }
    }

    /* remove the closed node */
    s = (struct simple){0};
    assert_int_equal(cons_remove(t[3].cons, t[L].id, simple_cb, &s), 0);
    wait_simple(c, &s, 5000);
    assert_int_equal(s.status, 0);
    cons_get_status(t[3].cons, &st);
    assert_int_equal(st.n_members, 3);

    for (int i = 0; i < 4; i++) {
        tnode_close(&t[i]);
        tfsm_free(&t[i].fsm);
    }
    free(pcbs);
    ctx_free(c);
}

/* A leader cut off from its followers steps down: what it had in flight
 * ends with -NV_ELEADERSHIPLOST (outcome unknown), and it stops being
 * ready. */
static void test_leadership_lost(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t[3];
    struct cons_config cc = base_config();
    cluster_start(c, t, 3, &cc);
    uint64_t dl = deadline(c, 8000);
    while (ready_leader(t, 3) < 0 && step(c, dl)) {
    }
    int L = ready_leader(t, 3);
    assert_true(L >= 0);
    for (int i = 0; i < 3; i++) {
        if (i != L) {
            tnode_close(&t[i]);
        }
    }
    struct pcb pcbs[5];
    propose_range(&t[L], pcbs, 0, 5);
    dl = deadline(c, 5000);
    while (!all_called(pcbs, 0, 5) && step(c, dl)) {
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pcbs[i].calls, 1);
        assert_int_equal(pcbs[i].status, -NV_ELEADERSHIPLOST);
        assert_true(pcbs[i].result_ok);
    }
    run_ms(c, 20);
    assert_false(is_ready(&t[L]));
    assert_false(t[L].last.ready);
    assert_true(t[L].last.state != CONS_LEADER);
    unsigned char b[4] = {1, 2, 3, 4};
    assert_int_equal(cons_propose(t[L].cons, b, 4, prop_cb, NULL), -NV_ENOTLEADER);
    for (int i = 0; i < 3; i++) {
        tnode_close(&t[i]);
        tfsm_free(&t[i].fsm);
    }
    ctx_free(c);
}

/* Entries that do not decode are logged and skipped, never fatal; a
 * truncated entry still applies its whole commands. */
static void test_decode_garbage(void** state)
{
    (void)state;
    struct tctx* c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1);
    struct cons_config cc = base_config();
    tnode_start_single(&t, &cc);
    wait_ready(&t, 5000);
    struct raft_fsm* f = &t.cons->rfsm;
    void* result = (void*)1;
    unsigned char buf[64];
    struct raft_buffer rb = {.base = buf, .len = sizeof buf};

    memset(buf, 0xab, sizeof buf); /* bad magic */
    assert_int_equal(f->apply(f, &rb, &result), 0);
    assert_null(result);
    rb.len = 3; /* shorter than the header */
    assert_int_equal(f->apply(f, &rb, &result), 0);
    rb.len = sizeof buf;
    /* magic, count 1000: cannot fit */
    memset(buf, 0, sizeof buf);
    buf[0] = 'C', buf[1] = 'N', buf[2] = 'S', buf[3] = '1';
    buf[4] = 0xe8, buf[5] = 0x03;
    assert_int_equal(f->apply(f, &rb, &result), 0);
    /* count 2: "hi", then a length running past the end */
    buf[4] = 2, buf[5] = 0;
    buf[8] = 2;
    buf[12] = 'h', buf[13] = 'i';
    buf[16] = 200;
    assert_int_equal(f->apply(f, &rb, &result), 0);
    assert_int_equal(t.fsm.n, 1);
    assert_int_equal(t.fsm.cmds[0].len, 2);
    assert_memory_equal(t.fsm.cmds[0].b, "hi", 2);
    assert_int_equal(t.fsm.frees, 1);

    /* snapshot restore refuses a bad header and leaves the buffer alone */
    struct raft_buffer sb = {.base = buf, .len = 8};
    assert_int_not_equal(f->restore(f, &sb), 0);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    ctx_free(c);
}

static void test_names(void** state)
{
    (void)state;
    assert_string_equal(cons_state_name(CONS_LEADER), "leader");
    assert_string_equal(cons_state_name(CONS_FOLLOWER), "follower");
    assert_string_equal(cons_state_name(CONS_CANDIDATE), "candidate");
    assert_string_equal(cons_state_name(CONS_UNAVAILABLE), "unavailable");
    assert_string_equal(cons_role_name(CONS_ROLE_VOTER), "voter");
    assert_string_equal(cons_role_name(CONS_ROLE_STANDBY), "standby");
    assert_string_equal(cons_role_name(CONS_ROLE_SPARE), "spare");
    assert_string_equal(cons_role_name(42), "unknown");
}

int main(void)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_single_propose_restart),
        cmocka_unit_test(test_snapshot_restart),
        cmocka_unit_test(test_wrong_node_id),
        cmocka_unit_test(test_corrupt_dir),
        cmocka_unit_test(test_close_pending),
        cmocka_unit_test(test_big_command),
        cmocka_unit_test(test_three_nodes),
        cmocka_unit_test(test_leadership_lost),
        cmocka_unit_test(test_decode_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
