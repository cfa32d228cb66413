/* Failover of real nvmetd processes in network namespaces (label netns):
 * every fault once on two data nodes + a witness, on three data nodes and
 * in ANA mode, watched at 5 ms from every namespace and from a client.
 * Invariants in every scenario: no moment with two nodes holding a VIP on
 * live links, no probe answered by two nodes, no two nodes ANA optimized,
 * the write started at the fault succeeds and is there exactly once, and
 * the old active never takes anything back while it returns.
 * The times asserted here are loose bounds (a loaded CI machine); the
 * figures come from bench/failover-bench. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fo_rig.h"

#define ANSWER_BOUND_MS 5000.0
/* The watcher samples every 5 ms and at once on every address or link
 * event of a namespace; a loaded machine (the sanitizer build beside other
 * tests) delays a round now and then: the largest gap must stay well
 * below the failover times measured (hundreds of ms). */
#define GAP_BOUND_MS 25.0

static struct rig rig;

static void check(const struct rig_result *res, enum rig_fault f)
{
    print_message(
        "%-18s node %d -> %d: answers v4 %.0f ms v6 %.0f ms (server %.0f ms), "
        "write %.0f ms (exit %d), double %.1f ms, conflicts %d, max gap %.1f ms\n",
        rig_fault_name(f), res->old_master, res->new_master, res->answer_ms[0], res->answer_ms[1],
        res->server_ms, res->write_ms, res->write_status, res->double_ms, res->arp_conflicts,
        res->max_gap_ms);
    assert_true(res->ok);
    assert_true(res->new_master != res->old_master);
    assert_int_equal(res->double_count, 0);
    assert_int_equal(res->arp_conflicts, 0);
    assert_true(res->ana_double_ms == 0.0);
    assert_int_equal(res->write_status, 0);
    assert_int_equal(res->writes_lost, 0);
    for (int k = 0; k < 2; k++) {
        assert_true(res->answer_ms[k] >= 0 && res->answer_ms[k] < ANSWER_BOUND_MS);
    }
    assert_true(res->max_gap_ms <= GAP_BOUND_MS);
}

static void run(enum rig_fault f)
{
    struct rig_result res;
    int rv = rig_fault(&rig, f, &res, false);
    check(&res, f);
    assert_int_equal(rv, 0); /* back to one master after the old one returned */
}

static int up(void **state, int witness, bool ana)
{
    (void)state;
    char why[200];
    if (lab_check(why, sizeof why) < 0) {
        print_message("SKIPPED: %s\n", why);
        return 0;
    }
    struct rig_opts o = {.nodes = 3, .witness = witness, .ana = ana};
    if (rig_up(&rig, &o) < 0) {
        return -1;
    }
    return 0;
}

static int up_witness(void **state)
{
    return up(state, 3, false);
}
static int up_three(void **state)
{
    return up(state, 0, false);
}
static int up_ana(void **state)
{
    return up(state, 3, true);
}

static int down(void **state)
{
    (void)state;
    rig_down(&rig);
    return 0;
}

static void need_rig(void)
{
    if (rig.nodes == 0) {
        skip();
    }
}

/* Two data nodes and a witness: every fault moves both VIPs to the other
 * data node and never leaves two owners. */
static void test_witness_setup(void **state)
{
    (void)state;
    need_rig();
    const enum rig_fault faults[] = {RIG_DEATH, RIG_CRASH, RIG_PAUSE, RIG_PARTITION,
                                     RIG_SWITCHOVER};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        run(faults[i]);
    }
}

/* Whether node i holds addr on eth0 right now (ip -n ... addr show). */
static bool holds(int i, const char *addr)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ip -n %s -o addr show dev eth0 | grep -q ' %s/'",
             lab_ns(&rig.lab, i), addr);
    return system(cmd) == 0;
}

/* The monitor keeps the rule both ways: a VIP removed behind the active's
 * back comes back (and is announced), one added by hand on a standby goes
 * away; the TrueNAS names answer as ours. */
static void test_vip_monitor(void **state)
{
    (void)state;
    need_rig();
    int m = rig_master(&rig);
    assert_true(m > 0);
    int standby = m == 1 ? 2 : 1;
    assert_int_equal(lab_ip(&rig.lab, m, "addr", "del", RIG_VIP4 "/25", "dev", "eth0", NULL), 0);
    bool back = false;
    for (int k = 0; k < 200 && !back; k++) {
        usleep(5000);
        back = holds(m, RIG_VIP4);
    }
    assert_true(back);
    assert_int_equal(
        lab_ip(&rig.lab, standby, "addr", "add", RIG_VIP6 "/64", "dev", "eth0", "nodad", NULL), 0);
    bool gone = false;
    for (int k = 0; k < 200 && !gone; k++) {
        usleep(5000);
        gone = !holds(standby, "2001:db8::100");
    }
    assert_true(gone);
    char *st = rig_call(&rig, m, "failover.status_details", NULL);
    assert_non_null(st);
    assert_non_null(strstr(st, "\"vips_restored\": 1"));
    free(st);
    char *node = rig_call(&rig, m, "failover.node", NULL);
    assert_non_null(node);
    assert_true(strcmp(node, "\"A\"") == 0 || strcmp(node, "\"B\"") == 0);
    free(node);
    char *reasons = rig_call(&rig, m, "failover.disabled.reasons", NULL);
    assert_non_null(reasons);
    assert_string_equal(reasons, "[]");
    free(reasons);
    assert_int_equal(rig_stable(&rig, 5000), 0);
}

/* Three data nodes: the same faults, with two candidates to take over. */
static void test_three_data_nodes(void **state)
{
    (void)state;
    need_rig();
    const enum rig_fault faults[] = {RIG_DEATH, RIG_PAUSE, RIG_PARTITION, RIG_SWITCHOVER};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        run(faults[i]);
    }
}

/* ANA mode: the optimized group moves with the active node, never two. */
static void test_ana_states(void **state)
{
    (void)state;
    need_rig();
    run(RIG_DEATH);
    run(RIG_SWITCHOVER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_witness_setup, up_witness, down),
        cmocka_unit_test_setup_teardown(test_vip_monitor, up_witness, down),
        cmocka_unit_test_setup_teardown(test_three_data_nodes, up_three, down),
        cmocka_unit_test_setup_teardown(test_ana_states, up_ana, down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
