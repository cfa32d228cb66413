/* kill -9 of nvmetd while 500 pipelined creates are in flight, then a
 * restart: every acknowledged create is present exactly once, nothing is
 * partial, unacknowledged ones appear at most once, and the emulated
 * configfs tree equals the committed state. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"

#define N_CREATES 500
#define KILL_AFTER 150

struct run {
    struct h_node *node;
    struct rpc_client *c;
    int acked[N_CREATES];
    int64_t ids[N_CREATES];
    int answered;
    int n_acked;
    int n_failed;
    bool killed;
};

struct one {
    struct run *r;
    int i;
};

static void created(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    struct one *o = arg;
    struct run *r = o->r;
    r->answered++;
    if (status == 0 && err == NULL && nv_is(result, NV_MAP)) {
        r->acked[o->i] = 1;
        r->ids[o->i] = nv_get_int(result, "id", -1);
        r->n_acked++;
    } else {
        r->n_failed++;
    }
    if (r->n_acked == KILL_AFTER && !r->killed) {
        r->killed = true;
        h_node_kill(r->node, SIGKILL);
    }
    free(o);
}

static void guard_fired(uv_timer_t *t)
{
    struct run *r = t->data;
    fprintf(stderr, "guard: no progress for 60 s (%d answered)\n", r->answered);
    rpc_client_close(r->c);
    r->c = NULL;
}

static void set_id_done(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)result;
    (void)err;
    assert_int_equal(status, 0);
    (void)arg;
}

/* Pipelined creates survive a kill -9 as promised. */
static void test_kill9_during_pipelined_creates(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node node;
    h_node_init(&node, base, 1);
    assert_int_equal(h_node_start(&node, NULL), 0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct run *r = calloc(1, sizeof *r);
    r->node = &node;
    char ep[320];
    snprintf(ep, sizeof ep, "unix:%s", node.sock);
    assert_int_equal(rpc_client_open(&loop, ep, NULL, &r->c), 0);
    struct nv *p = nv_arr();
    struct nv *o = nv_map();
    nv_set_str(o, "client_id", "crash-test-client");
    nv_push(p, o);
    rpc_client_call(r->c, "core.set_options", p, -1, set_id_done, NULL);
    for (int i = 0; i < N_CREATES; i++) {
        struct nv *params = nv_arr();
        struct nv *arg = nv_map();
        nv_set(arg, "name", nv_strf("crash-%03d", i));
        nv_push(params, arg);
        struct one *one = malloc(sizeof *one);
        one->r = r;
        one->i = i;
        assert_int_equal(rpc_client_call(r->c, "nvmet.subsys.create", params, 1000 + i, created,
                                         one),
                         0);
    }
    /* bounded: the daemon dies after KILL_AFTER acks and the rest fail;
     * the guard closes the client if nothing happens for 60 s */
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    guard.data = r;
    uv_timer_start(&guard, guard_fired, 60000, 0);
    while (r->answered < N_CREATES && uv_is_active((uv_handle_t *)&guard)) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    if (r->c != NULL) {
        rpc_client_close(r->c);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r->answered, N_CREATES);
    assert_true(r->killed);
    assert_int_equal(h_node_wait(&node), 128 + SIGKILL);
    printf("# creates: %d sent, %d acknowledged, %d failed at the kill\n", N_CREATES, r->n_acked,
           r->n_failed);

    assert_int_equal(h_node_start(&node, NULL), 0);
    struct nv_err e;
    nv_err_init(&e);
    struct nv *subs = h_call(&node, "nvmet.subsys.query", NULL, &e);
    assert_non_null(subs);
    int seen[N_CREATES] = {0};
    for (size_t i = 0; i < nv_len(subs); i++) {
        const struct nv *s = nv_at(subs, i);
        const char *name = nv_get_str(s, "name");
        int k = -1;
        assert_int_equal(sscanf(name, "crash-%d", &k), 1);
        assert_true(k >= 0 && k < N_CREATES);
        seen[k]++;
        /* no partial entry: every field of a created subsystem is there */
        assert_non_null(nv_get_str(s, "subnqn"));
        assert_int_equal(strlen(nv_get_str(s, "serial")), 20);
        assert_non_null(nv_get(s, "allow_any_host"));
    }
    int unacked_present = 0;
    for (int i = 0; i < N_CREATES; i++) {
        if (r->acked[i]) {
            assert_int_equal(seen[i], 1); /* acknowledged: exactly once */
        } else {
            assert_true(seen[i] <= 1); /* unacknowledged: at most once */
            unacked_present += seen[i];
        }
    }
    printf("# after restart: %zu present (%d acknowledged, %d committed without an ack)\n",
           nv_len(subs), r->n_acked, unacked_present);

    /* a retry of an acknowledged create with the same client id and
     * sequence returns the first result instead of a duplicate */
    struct rpc_sync_opts opts = {.client_id = "crash-test-client", .msgid = 1000, .timeout_ms = 10000};
    struct nv *again = NULL;
    char ep2[320];
    snprintf(ep2, sizeof ep2, "unix:%s", node.sock);
    int first = -1;
    for (int i = 0; i < N_CREATES && first < 0; i++) {
        first = r->acked[i] ? i : -1;
    }
    assert_true(first >= 0);
    opts.msgid = 1000 + first;
    struct nv *params = nv_arr();
    struct nv *arg = nv_map();
    nv_set(arg, "name", nv_strf("crash-%03d", first));
    nv_push(params, arg);
    nv_err_clear(&e);
    assert_int_equal(rpc_call_sync(ep2, "nvmet.subsys.create", params, &opts, &again, &e), 0);
    assert_int_equal(nv_get_int(again, "id", -2), r->ids[first]);
    nv_free(again);
    struct nv *count = h_call(&node, "nvmet.subsys.query", "[[], {\"count\": true}]", &e);
    assert_non_null(count);
    assert_int_equal(count->u.i, (int64_t)nv_len(subs));
    nv_free(count);

    /* the tree equals the state: one dir per subsystem, same serials */
    assert_int_equal(h_wait_rendered(&node, 10000), 0);
    nv_free(h_call(&node, "nvmet.global.update", "[{\"enabled\": true}]", &e));
    assert_int_equal(h_wait_rendered(&node, 10000), 0);
    for (size_t i = 0; i < nv_len(subs); i++) {
        const struct nv *s = nv_at(subs, i);
        char path[1200];
        snprintf(path, sizeof path, "%s/nvmet/subsystems/%s/attr_serial", node.configfs,
                 nv_get_str(s, "subnqn"));
        char *serial = h_read(path);
        assert_non_null(serial);
        assert_string_equal(serial, nv_get_str(s, "serial"));
        free(serial);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s/nvmet/subsystems' | wc -l", node.configfs);
    FILE *fp = popen(cmd, "r");
    size_t dirs = 0;
    assert_int_equal(fscanf(fp, "%zu", &dirs), 1);
    pclose(fp);
    assert_int_equal(dirs, nv_len(subs));
    nv_free(subs);
    nv_err_clear(&e);

    h_node_kill(&node, SIGTERM);
    assert_int_equal(h_node_wait(&node), 0);
    h_rmrf(base);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_during_pipelined_creates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
