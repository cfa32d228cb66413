/* failover/: the decision and its actions, driven through fo_update with a
 * fake node (capabilities answered on a real uv loop, a real statemachine
 * for the replicated facts). No VIPs are configured here (the netns tests
 * move real addresses) and the guardian is off (test_fo_guard tests it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "fo.h"
#include "fo_int.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "sm.h"

#define ET 1000 /* generous: the lease checks below must not race a loaded machine */

struct req {
    uv_timer_t timer;
    struct fake *fk;
    void (*done)(void *arg, int status);
    void *arg;
    char method[64];
    struct nv *params;
    struct req *next;
};

struct fake {
    uv_loop_t loop;
    struct sm_state *sm;
    struct fo *fo;
    struct fo_facts facts;
    char dir[64];
    bool barriers_hang; /* barriers never commit (quorum lost) */
    unsigned delay_ms;  /* commit latency */
    unsigned proposals, barriers, transfers, transfers_done, renders;
    uint64_t transfer_to;
    int transfer_status;
    struct req *pending; /* hanging barriers, answered at close */
    bool closed;
};

static void req_closed(uv_handle_t *h)
{
    struct req *r = h->data;
    nv_free(r->params);
    free(r);
}

static void fake_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    memset(buf, 0x5a, len);
}
static struct sm_env env = {.random = fake_random};

/* Apply a write the way the node does (prepare, encode, apply). */
static int apply_write(struct sm_state *s, const char *method, const struct nv *params)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *cmd = NULL;
    int rv = sm_prepare(s, method, params, &env, &cmd, &e);
    nv_err_clear(&e);
    if (rv < 0) {
        return rv;
    }
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(sm_command_encode(cmd, NULL, -1, &buf, &len), 0);
    struct sm_result *res = sm_apply(s, buf, len);
    rv = res->err != NULL ? -EINVAL : 0;
    sm_result_free(res);
    free(buf);
    nv_free(cmd);
    return rv;
}

static void write_json(struct fake *fk, const char *method, const char *json)
{
    struct nv *p = nv_from_json(json);
    assert_non_null(p);
    assert_int_equal(apply_write(fk->sm, method, p), 0);
    nv_free(p);
}

static void req_fire(uv_timer_t *t)
{
    struct req *r = t->data;
    int status = 0;
    if (r->method[0] != '\0') {
        status = apply_write(r->fk->sm, r->method, r->params);
    }
    r->done(r->arg, status);
    uv_close((uv_handle_t *)&r->timer, req_closed);
}

static struct req *req_new(struct fake *fk, void (*done)(void *, int), void *arg)
{
    struct req *r = calloc(1, sizeof *r);
    r->fk = fk;
    r->done = done;
    r->arg = arg;
    uv_timer_init(&fk->loop, &r->timer);
    r->timer.data = r;
    return r;
}

static int f_propose(void *ctx, const char *method, struct nv *params,
                     void (*done)(void *arg, int status), void *arg)
{
    struct fake *fk = ctx;
    struct req *r = req_new(fk, done, arg);
    snprintf(r->method, sizeof r->method, "%s", method);
    r->params = params;
    fk->proposals++;
    uv_timer_start(&r->timer, req_fire, fk->delay_ms, 0);
    return 0;
}

static int f_barrier(void *ctx, void (*done)(void *arg, int status), void *arg)
{
    struct fake *fk = ctx;
    struct req *r = req_new(fk, done, arg);
    fk->barriers++;
    if (fk->barriers_hang) {
        r->next = fk->pending;
        fk->pending = r;
        return 0;
    }
    uv_timer_start(&r->timer, req_fire, fk->delay_ms, 0);
    return 0;
}

static void transfer_fire(uv_timer_t *t)
{
    struct req *r = t->data;
    r->fk->transfers_done++;
    r->done(r->arg, r->fk->transfer_status);
    uv_close((uv_handle_t *)&r->timer, req_closed);
}

static int f_transfer(void *ctx, uint64_t id, void (*done)(void *arg, int status), void *arg)
{
    struct fake *fk = ctx;
    struct req *r = req_new(fk, done, arg);
    fk->transfers++;
    fk->transfer_to = id;
    uv_timer_start(&r->timer, transfer_fire, 1, 0);
    return 0;
}

static void f_render(void *ctx)
{
    ((struct fake *)ctx)->renders++;
}

static void f_log(void *ctx, int level, const char *msg)
{
    (void)ctx, (void)level, (void)msg;
}

/* Nodes 1..n registered (kinds: 'd' data, 'w' witness), all voters. */
static void members(struct fake *fk, const char *kinds)
{
    fk->facts.n_members = 0;
    for (size_t i = 0; kinds[i]; i++) {
        char json[200];
        snprintf(json, sizeof json,
                 "[{\"id\": %zu, \"kind\": \"%s\", \"raft\": \"127.0.0.1:%zu\", \"rpc\": null}]",
                 i + 1, kinds[i] == 'w' ? "witness" : "data", 9000 + i);
        write_json(fk, "cluster.node.register", json);
        fk->facts.members[fk->facts.n_members++] = (struct fo_member){.id = i + 1, .voter = true};
    }
}

static void open_fo(struct fake *fk, uint64_t id, bool witness)
{
    struct fo_config cfg = {.id = id,
                            .witness = witness,
                            .data_dir = fk->dir,
                            .election_timeout_ms = ET,
                            .heartbeat_ms = ET / 40,
                            .sm = fk->sm,
                            .no_guardian = true};
    struct fo_ops ops = {.ctx = fk,
                         .propose = f_propose,
                         .barrier = f_barrier,
                         .transfer = f_transfer,
                         .render = f_render,
                         .log = f_log};
    char msg[200] = "";
    int rv = fo_open(&fk->loop, &cfg, &ops, &fk->fo, msg, sizeof msg);
    if (rv < 0) {
        fail_msg("fo_open: %s", msg);
    }
}

static int setup(void **state)
{
    struct fake *fk = calloc(1, sizeof *fk);
    uv_loop_init(&fk->loop);
    fk->sm = sm_new();
    snprintf(fk->dir, sizeof fk->dir, "/tmp/test_failover.XXXXXX");
    assert_non_null(mkdtemp(fk->dir));
    fk->delay_ms = 2;
    fk->transfer_status = 0;
    *state = fk;
    return 0;
}

static void closed(void *arg)
{
    ((struct fake *)arg)->closed = true;
}

static int teardown(void **state)
{
    struct fake *fk = *state;
    if (fk->fo != NULL) {
        fo_close(fk->fo, closed, fk);
        /* the node's consensus answers what hangs when it closes */
        while (fk->pending != NULL) {
            struct req *r = fk->pending;
            fk->pending = r->next;
            r->done(r->arg, -ESHUTDOWN);
            uv_close((uv_handle_t *)&r->timer, req_closed);
        }
        for (int i = 0; i < 2000 && !fk->closed; i++) {
            uv_run(&fk->loop, UV_RUN_ONCE);
        }
        assert_true(fk->closed);
    }
    uv_run(&fk->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fk->loop), 0);
    sm_free(fk->sm);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fk->dir);
    assert_int_equal(system(cmd), 0);
    free(fk);
    return 0;
}

static void wake(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop until fo's role is want (or ms pass); returns the ms taken. */
static long run_until(struct fake *fk, enum fo_role want, long ms)
{
    uint64_t t0 = uv_hrtime();
    uv_timer_t guard;
    uv_timer_init(&fk->loop, &guard);
    uv_timer_start(&guard, wake, (uint64_t)ms, 0); /* UV_RUN_ONCE returns by then */
    while (fo_role(fk->fo) != want && (long)((uv_hrtime() - t0) / 1000000) < ms) {
        uv_run(&fk->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&fk->loop, UV_RUN_NOWAIT);
    return fo_role(fk->fo) == want ? (long)((uv_hrtime() - t0) / 1000000) : -1;
}

static void lead(struct fake *fk, uint64_t term)
{
    fk->facts.leader = true;
    fk->facts.ready = true;
    fk->facts.term = term;
    fk->facts.leader_id = 1;
    fo_update(fk->fo, &fk->facts);
}

static const char *status_of(struct fake *fk)
{
    static char buf[32];
    struct nv *st = fo_status(fk->fo);
    snprintf(buf, sizeof buf, "%s", nv_get_str(st, "status"));
    nv_free(st);
    return buf;
}

/* The lease derives from the election timeout: shorter by the margin, and
 * no takeover delay is left to wait with these defaults. */
static void test_timing(void **state)
{
    (void)state;
    struct fo_timing t = fo__timing(400, 10);
    assert_int_equal(t.margin_ms, 100);
    assert_int_equal(t.lease_ms, 300);
    assert_int_equal(t.renew_ms, 100);
    assert_int_equal(t.delay_ms, 0);
    t = fo__timing(150, 10);
    assert_int_equal(t.margin_ms, 40);
    assert_int_equal(t.lease_ms, 110);
    assert_true(t.lease_ms + t.margin_ms <= t.election_ms);
    t = fo__timing(1000, 25);
    assert_int_equal(t.lease_ms, 750);
}

/* One voter: SINGLE and serving at once, without a lease. */
static void test_single_voter_serves(void **state)
{
    struct fake *fk = *state;
    members(fk, "d");
    open_fo(fk, 1, false);
    lead(fk, 2);
    assert_int_equal(fo_role(fk->fo), FO_SINGLE);
    assert_true(fo_view(fk->fo).active);
    assert_false(fo_view(fk->fo).ha);
    assert_string_equal(status_of(fk), "SINGLE");
    assert_int_equal(fk->barriers, 0);
}

/* A ready HA leader commits "active := me", gets its lease from that
 * commit and serves; a follower never does. */
static void test_leader_becomes_active(void **state)
{
    struct fake *fk = *state;
    members(fk, "ddd");
    open_fo(fk, 1, false);
    fk->facts.leader_id = 2;
    fo_update(fk->fo, &fk->facts);
    assert_int_equal(fo_role(fk->fo), FO_STANDBY);
    assert_false(fo_view(fk->fo).active);
    lead(fk, 5);
    assert_true(run_until(fk, FO_ACTIVE, 2000) >= 0);
    assert_true(fo_view(fk->fo).active);
    assert_true(fo_view(fk->fo).ha);
    assert_string_equal(status_of(fk), "MASTER");
    uint64_t term = 0;
    assert_int_equal(sm_active_node(fk->sm, &term), 1);
    assert_int_equal(term, 5);
    assert_true(fk->renders > 0);
}

/* Losing leadership releases at once. */
static void test_leadership_loss_releases(void **state)
{
    struct fake *fk = *state;
    members(fk, "ddd");
    open_fo(fk, 1, false);
    lead(fk, 5);
    assert_true(run_until(fk, FO_ACTIVE, 2000) >= 0);
    fk->facts.leader = false;
    fk->facts.ready = false;
    fk->facts.leader_id = 0;
    fo_update(fk->fo, &fk->facts);
    assert_int_equal(fo_role(fk->fo), FO_STANDBY);
    assert_false(fo_view(fk->fo).active);
    struct nv *st = fo_status(fk->fo);
    const struct nv *r0 = nv_at(nv_get(st, "disabled_reasons"), 0);
    assert_true(nv_is(r0, NV_STR));
    assert_string_equal(r0->u.s.p, "NO_QUORUM");
    nv_free(st);
}

/* When no quorum acknowledges the leader any more, it releases by itself
 * once the lease runs out: never later than the last commit's proposal
 * time + lease + margin (the safety budget), never before the lease. */
static void test_lease_expiry_releases(void **state)
{
    struct fake *fk = *state;
    members(fk, "ddd");
    open_fo(fk, 1, false);
    lead(fk, 5);
    assert_true(run_until(fk, FO_ACTIVE, 2000) >= 0);
    struct fo_timing tm = fo__timing(ET, ET / 40);
    /* renewals keep it active well past one lease */
    assert_int_equal(run_until(fk, FO_STANDBY, (long)tm.lease_ms * 2), -1);
    assert_true(fk->barriers >= 3);
    fk->barriers_hang = true;
    uint64_t cut = uv_hrtime();
    long took = run_until(fk, FO_STANDBY, (long)tm.lease_ms * 3);
    assert_true(took >= 0);
    /* the last commit was proposed at most renew_ms + delay before the cut */
    assert_true(took <= (long)(tm.lease_ms + tm.margin_ms));
    assert_true((long)((uv_hrtime() - cut) / 1000000) >= (long)(tm.lease_ms - tm.renew_ms - 10));
    assert_false(fo_view(fk->fo).active);
}

/* Taking over from another node runs the fence command with that node's
 * id; a failing command blocks the takeover and says so. */
static void test_fence_blocks_takeover(void **state)
{
    struct fake *fk = *state;
    members(fk, "ddd");
    char json[600];
    snprintf(json, sizeof json,
             "[{\"fence_command\": \"echo $NVMET_FENCE_NODE > %s/fenced; exit 3\"}]", fk->dir);
    write_json(fk, "failover.update", json);
    write_json(fk, "failover.activate", "[{\"node\": 2, \"term\": 4}]");
    open_fo(fk, 1, false);
    lead(fk, 5);
    assert_int_equal(run_until(fk, FO_ACTIVE, 1500), -1);
    struct nv *st = fo_status(fk->fo);
    bool blocked = false;
    const struct nv *r = nv_get(st, "disabled_reasons");
    for (size_t i = 0; i < nv_len(r); i++) {
        const struct nv *v = nv_at(r, i);
        blocked |= nv_is(v, NV_STR) && strcmp(v->u.s.p, "FENCE_FAILED") == 0;
    }
    nv_free(st);
    assert_true(blocked);
    char path[128], got[16] = "";
    snprintf(path, sizeof path, "%s/fenced", fk->dir);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    assert_non_null(fgets(got, sizeof got, in));
    fclose(in);
    assert_string_equal(got, "2\n");
    /* fixed: the next try succeeds */
    snprintf(json, sizeof json, "[{\"fence_command\": \"true\"}]");
    write_json(fk, "failover.update", json);
    assert_true(run_until(fk, FO_ACTIVE, 5000) >= 0);
}

/* The operator's takeover_delay_ms is waited on a takeover (not on a
 * first activation). */
static void test_takeover_delay(void **state)
{
    struct fake *fk = *state;
    members(fk, "ddd");
    write_json(fk, "failover.update", "[{\"takeover_delay_ms\": 300}]");
    write_json(fk, "failover.activate", "[{\"node\": 3, \"term\": 4}]");
    open_fo(fk, 1, false);
    lead(fk, 5);
    long took = run_until(fk, FO_ACTIVE, 3000);
    /* libuv's timers run on the loop's millisecond clock: allow a tick */
    if (took < 290) {
        fail_msg("active after %ld ms, before the 300 ms takeover delay", took);
    }
}

/* A witness never serves; as leader it hands leadership to a data voter
 * that answered this leadership, else to the data voters in turn. */
static void test_witness_hands_off(void **state)
{
    struct fake *fk = *state;
    members(fk, "dddw");
    fk->facts.members[1].caught_up = true; /* node 2 answered, node 1 did not */
    open_fo(fk, 4, true);
    lead(fk, 5);
    assert_int_equal(fo_role(fk->fo), FO_WITNESS);
    for (int i = 0; i < 100 && fk->transfers_done == 0; i++) {
        uv_run(&fk->loop, UV_RUN_ONCE);
    }
    assert_int_equal(fk->transfer_to, 2);
    fk->facts.members[1].caught_up = false;
    fo_update(fk->fo, &fk->facts);
    assert_int_equal(fk->transfer_to, 3); /* nobody answered: the next in turn */
}

/* Without answers from anyone the hand-off goes round the data voters. */
static void test_witness_hands_off_in_turn(void **state)
{
    struct fake *fk = *state;
    members(fk, "ddw");
    open_fo(fk, 3, true);
    lead(fk, 5);
    assert_int_equal(fo_role(fk->fo), FO_WITNESS);
    assert_true(fo_view(fk->fo).empty);
    for (int i = 0; i < 100 && fk->transfers == 0; i++) {
        uv_run(&fk->loop, UV_RUN_ONCE);
    }
    assert_int_equal(fk->transfers, 1);
    assert_int_equal(fk->transfer_to, 1);
    for (int i = 0; i < 100 && fk->transfers_done == 0; i++) {
        uv_run(&fk->loop, UV_RUN_ONCE);
    }
    fo_update(fk->fo, &fk->facts);
    assert_int_equal(fk->transfer_to, 2);
}

static bool passive_ok;
static void passive_done(void *arg, int status, const char *what)
{
    (void)arg, (void)what;
    passive_ok = status == 0;
}

/* A planned switchover releases first, commits "active := none" and
 * transfers leadership to the named node. */
static void test_become_passive(void **state)
{
    struct fake *fk = *state;
    members(fk, "ddd");
    open_fo(fk, 1, false);
    lead(fk, 5);
    assert_true(run_until(fk, FO_ACTIVE, 2000) >= 0);
    struct nv_err e;
    nv_err_init(&e);
    passive_ok = false;
    assert_int_equal(fo_become_passive(fk->fo, 3, passive_done, NULL, &e), 0);
    assert_false(fo_view(fk->fo).active); /* released before anything else */
    for (int i = 0; i < 200 && !passive_ok; i++) {
        uv_run(&fk->loop, UV_RUN_ONCE);
    }
    assert_true(passive_ok);
    assert_int_equal(fk->transfer_to, 3);
    assert_int_equal(sm_active_node(fk->sm, NULL), 0);
    /* not active any more: a second request is refused */
    assert_int_equal(fo_become_passive(fk->fo, 0, passive_done, NULL, &e), -EINVAL);
    nv_err_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timing),
        cmocka_unit_test_setup_teardown(test_single_voter_serves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_becomes_active, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leadership_loss_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_expiry_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_blocks_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_hands_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_hands_off_in_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_become_passive, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
