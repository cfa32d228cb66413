/* failover/: the active-controller decision, step by step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fo.h"

static struct fo_input base(void)
{
    return (struct fo_input){.self = 1,
                             .data_voters = 2,
                             .ready_leader = true,
                             .term = 5,
                             .takeover_delay_ms = 1500,
                             .now_ms = 10000};
}

static void test_single_and_witness(void **state)
{
    (void)state;
    struct fo_state st = {0};
    struct fo_input in = base();
    in.data_voters = 1;
    struct fo_decision d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_SINGLE);
    assert_int_equal(d.actions, 0);
    in = base();
    in.witness = true;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_WITNESS);
    assert_int_equal(d.actions, FO_ACT_HANDOFF); /* a leading witness hands over */
    in.ready_leader = false;
    d = fo_decide(&st, &in);
    assert_int_equal(d.actions, 0);
    assert_string_equal(fo_status_name(FO_WITNESS), "BACKUP");
}

/* First activation of a fresh cluster: no delay, no fence. */
static void test_fresh_activation(void **state)
{
    (void)state;
    struct fo_state st = {0};
    struct fo_input in = base();
    in.fence_configured = true;
    struct fo_decision d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_STANDBY);
    assert_int_equal(d.actions, FO_ACT_ACTIVATE);
    in.activate_in_flight = true;
    d = fo_decide(&st, &in);
    assert_int_equal(d.actions, 0); /* not twice */
    in.activate_in_flight = false;
    in.active = 1; /* committed */
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_ACTIVE);
    assert_string_equal(fo_status_name(d.role), "MASTER");
}

/* Taking over from node 2: the takeover delay, then the fence, then ACTIVE. */
static void test_takeover_waits_and_fences(void **state)
{
    (void)state;
    struct fo_state st = {0};
    struct fo_input in = base();
    in.active = 2;
    in.fence_configured = true;
    struct fo_decision d = fo_decide(&st, &in);
    assert_int_equal(d.actions, FO_ACT_ACTIVATE);
    in.active = 1;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_STANDBY);
    in.now_ms += 1499;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_STANDBY);
    assert_int_equal(d.actions, 0);
    in.now_ms += 10;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_STANDBY);
    assert_int_equal(d.actions, FO_ACT_FENCE);
    fo_fenced(&st);
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_ACTIVE);
}

/* Losing leadership (or a planned switchover) releases at once, and a
 * later leadership waits again. */
static void test_release_is_immediate(void **state)
{
    (void)state;
    struct fo_state st = {0};
    struct fo_input in = base();
    in.active = 2;
    fo_decide(&st, &in);
    in.active = 1;
    in.now_ms += 2000;
    fo_decide(&st, &in);
    in.now_ms += 2000;
    struct fo_decision d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_ACTIVE);
    in.ready_leader = false;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_STANDBY);
    in.ready_leader = true;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_STANDBY); /* the delay again */
    in.now_ms += 1600;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_ACTIVE);
    in.passive_requested = true;
    d = fo_decide(&st, &in);
    assert_int_equal(d.role, FO_STANDBY);
    assert_int_equal(d.actions, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_and_witness),
        cmocka_unit_test(test_fresh_activation),
        cmocka_unit_test(test_takeover_waits_and_fences),
        cmocka_unit_test(test_release_is_immediate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
