/* target/: rendering the state into the emulated kernel's configfs:
 * the complete setup, the kernel's ordering rules, deletes, drift repair
 * and the cost of incremental passes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nv.h"
#include "test_tgt_util.h"

#define SUBNQN "nqn.2024-01.com.example:nvme:subsys1"
#define HOSTNQN "nqn.2024-01.com.example:host:server1"
#define SUB "subsystems/" SUBNQN
#define NS1 SUB "/namespaces/1"

static const struct tgt_view single = {.active = true};

struct ctx {
    struct fx f;
    struct rowset rs;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    fx_setup(&c->f, "6.13"); /* the newest profile: every attribute */
    rs_init(&c->rs, true);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    rs_free(&c->rs);
    fx_teardown(&c->f);
    free(c);
    return 0;
}

/* README "A complete setup": subsystem, zvol namespace, TCP port
 * 0.0.0.0:4420, port link, host and its allowed_hosts link, global
 * enabled. */
static void complete_setup(struct ctx *c)
{
    fx_device(&c->f, "/dev/zvol/tank/nvme/ns1");
    int64_t s = rs_subsys(&c->rs, SUBNQN, "TRUENAS001");
    rs_ns(&c->rs, s, 1, "ZVOL", "zvol/tank/nvme/ns1", true);
    int64_t p = rs_port(&c->rs, 1, "TCP", "0.0.0.0", 4420, "IPV4");
    rs_port_subsys(&c->rs, p, s);
    int64_t h = rs_host(&c->rs, HOSTNQN);
    rs_host_subsys(&c->rs, h, s);
}

static void render_ok(struct ctx *c, const struct tgt_view *v, bool sweep, struct tgt_report *r)
{
    assert_int_equal(fx_pass(&c->f, &c->rs, v, sweep, r), 0);
}

/* The complete setup renders exactly the expected files, values and links. */
static void test_complete_setup_tree(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    render_ok(c, &single, false, &rep);
    assert_true(rep.swept); /* the first pass of an instance sweeps */
    assert_int_equal(fx_count(&c->f, "subsystems"), 1);
    assert_int_equal(fx_count(&c->f, "ports"), 1);
    assert_int_equal(fx_count(&c->f, "hosts"), 1);
    fx_expect(&c->f, SUB "/attr_serial", "TRUENAS001");
    fx_expect(&c->f, SUB "/attr_allow_any_host", "0");
    fx_expect(&c->f, SUB "/attr_pi_enable", "0");
    fx_expect(&c->f, SUB "/attr_model", "nvmet-ha");
    fx_expect(&c->f, SUB "/attr_firmware", NVMET_HA_VERSION);
    fx_expect(&c->f, SUB "/attr_qid_max", "128");         /* not set: kernel default */
    fx_expect(&c->f, SUB "/attr_ieee_oui", "0x000000");   /* not set: kernel default */
    fx_expect(&c->f, SUB "/attr_cntlid_min", "1");        /* no node slot: no split */
    fx_expect(&c->f, SUB "/attr_cntlid_max", "65519");
    fx_expect(&c->f, NS1 "/device_path", "/dev/zvol/tank/nvme/ns1");
    fx_expect(&c->f, NS1 "/device_uuid", "6ba7b810-9dad-41d1-80b4-000000000001");
    fx_expect(&c->f, NS1 "/device_nguid", "1b4e28ba-2fa1-41d2-883f-000000000001");
    fx_expect(&c->f, NS1 "/buffered_io", "0");
    fx_expect(&c->f, NS1 "/resv_enable", "1");
    fx_expect(&c->f, NS1 "/ana_grpid", "1");
    fx_expect(&c->f, NS1 "/enable", "1");
    assert_int_equal(fx_count(&c->f, SUB "/namespaces"), 1);
    fx_expect_link(&c->f, SUB "/allowed_hosts/" HOSTNQN, "hosts/" HOSTNQN);
    assert_int_equal(fx_count(&c->f, SUB "/allowed_hosts"), 1);
    fx_expect(&c->f, "ports/1/addr_trtype", "tcp");
    fx_expect(&c->f, "ports/1/addr_trsvcid", "4420");
    fx_expect(&c->f, "ports/1/addr_traddr", "0.0.0.0");
    fx_expect(&c->f, "ports/1/addr_adrfam", "ipv4");
    fx_expect(&c->f, "ports/1/param_pi_enable", "0");
    /* the kernel fills the transport default in when the port is enabled */
    fx_expect(&c->f, "ports/1/param_inline_data_size", "16384");
    fx_expect(&c->f, "ports/1/ana_groups/1/ana_state", "optimized");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    assert_int_equal(fx_count(&c->f, "ports/1/subsystems"), 1);
    assert_int_equal(fx_count(&c->f, "ports/1/referrals"), 0);
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_key", "");
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_ctrl_key", "");
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_hash", "hmac(sha256)");
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_dhgroup", "null");
    assert_int_equal(rep.mkdirs, 4);
    assert_int_equal(rep.links, 2);
    /* the desired and the live map agree after a clean pass */
    struct nv *want = tgt__desired_nv(c->f.t, rs_rows(&c->rs), &single);
    struct nv *live = tgt_live_tree(c->f.t);
    if (!nv_equal(want, live)) {
        char *a = nv_dump(want), *b = nv_dump(live);
        fprintf(stderr, "desired %s\nlive    %s\n", a, b);
        free(a);
        free(b);
    }
    assert_true(nv_equal(want, live));
    assert_true(nv_is(nv_get(want, SUB "/allowed_hosts/" HOSTNQN), NV_STR));
    assert_string_equal(nv_get_str(want, "ports/1/subsystems/" SUBNQN), "-> " SUBNQN);
    nv_free(want);
    nv_free(live);
    tgt_report_clear(&rep);
    /* a second pass over the same state changes nothing, swept or not */
    render_ok(c, &single, false, &rep);
    assert_int_equal(rep.writes + rep.mkdirs + rep.links + rep.unlinks + rep.rmdirs, 0);
    render_ok(c, &single, true, &rep);
    assert_int_equal(rep.writes + rep.mkdirs + rep.links + rep.unlinks + rep.rmdirs, 0);
    assert_int_equal(rep.drift, 0);
    tgt_report_clear(&rep);
}

/* global.enabled=false empties our tree (the default groups stay) and true
 * renders it again. */
static void test_disabled_empties_tree(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    render_ok(c, &single, false, &rep);
    nv_set_bool(c->rs.global, "enabled", false);
    render_ok(c, &single, false, &rep);
    assert_false(rep.swept);
    assert_int_equal(fx_count(&c->f, "subsystems"), 0);
    assert_int_equal(fx_count(&c->f, "ports"), 0);
    assert_int_equal(fx_count(&c->f, "hosts"), 0);
    assert_int_equal(rep.rmdirs, 4); /* ns, port, host, subsystem */
    assert_int_equal(rep.unlinks, 2);
    struct nv *want = tgt__desired_nv(c->f.t, rs_rows(&c->rs), &single);
    assert_int_equal(nv_len(want), 0);
    nv_free(want);
    nv_set_bool(c->rs.global, "enabled", true);
    render_ok(c, &single, false, &rep);
    fx_expect(&c->f, NS1 "/enable", "1");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    tgt_report_clear(&rep);
}

/* A port's trsvcid changes while a subsystem is linked: the renderer
 * unlinks, writes and links again (the kernel refuses EACCES otherwise). */
static void test_port_change_while_linked(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    render_ok(c, &single, false, &rep);
    nv_set_int(rs_get(&c->rs, SM_PORT, 1), "addr_trsvcid", 4421);
    render_ok(c, &single, false, &rep);
    fx_expect(&c->f, "ports/1/addr_trsvcid", "4421");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    assert_int_equal(rep.unlinks, 1);
    assert_int_equal(rep.links, 1);
    assert_int_equal(rep.writes, 1);
    tgt_report_clear(&rep);
}

/* A namespace's device changes while enabled: enable=0, the device
 * attributes, enable=1 last. */
static void test_ns_device_change_while_enabled(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    fx_device(&c->f, "/dev/zvol/tank/nvme/ns2");
    render_ok(c, &single, false, &rep);
    struct nv *ns = rs_get(&c->rs, SM_NAMESPACE, 1);
    nv_set_str(ns, "device_path", "zvol/tank/nvme/ns2");
    nv_set_str(ns, "device_uuid", "6BA7B810-9DAD-41D1-80B4-0000000000FF"); /* case differs */
    render_ok(c, &single, false, &rep);
    fx_expect(&c->f, NS1 "/device_path", "/dev/zvol/tank/nvme/ns2");
    fx_expect(&c->f, NS1 "/device_uuid", "6ba7b810-9dad-41d1-80b4-0000000000ff");
    fx_expect(&c->f, NS1 "/enable", "1");
    assert_int_equal(rep.writes, 4); /* enable=0, uuid, path, enable=1 */
    /* disabling touches only enable */
    nv_set_bool(ns, "enabled", false);
    render_ok(c, &single, false, &rep);
    fx_expect(&c->f, NS1 "/enable", "0");
    assert_int_equal(rep.writes, 1);
    tgt_report_clear(&rep);
}

/* The emulator refuses an attribute named in .nvmet-emu/refuse/ with the
 * errno written there; the problem names the errno and the row; once the
 * cause is gone the next pass repairs. */
static void test_refusal_names_errno_and_row(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    char dir[600], file[700];
    snprintf(dir, sizeof dir, "%s/.nvmet-emu/refuse", c->f.root);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(file, sizeof file, "%s/device_nguid", dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fputs("ENOSPC\n", fp);
    fclose(fp);
    int errors = fx_pass(&c->f, &c->rs, &single, false, &rep);
    assert_int_equal(errors, 1);
    const struct nv *p = nv_at(rep.problems, 0);
    assert_string_equal(nv_get_str(p, "object"), NS1);
    assert_int_equal(nv_get_int(p, "errno", 0), ENOSPC);
    assert_string_equal(nv_get_str(p, "errname"), "ENOSPC");
    assert_string_equal(nv_get_str(p, "table"), "nvmet.namespace");
    assert_int_equal(nv_get_int(p, "id", 0), 1);
    /* a number works too; the next pass retries and reports again */
    fp = fopen(file, "w");
    fputs("16", fp);
    fclose(fp);
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 1);
    assert_int_equal(nv_get_int(nv_at(rep.problems, 0), "errno", 0), EBUSY);
    unlink(file);
    render_ok(c, &single, false, &rep);
    fx_expect(&c->f, NS1 "/enable", "1");
    tgt_report_clear(&rep);
}

/* allow_any_host flips on with hosts linked: links go first; flipping it
 * off again restores the access list. */
static void test_allow_any_host_flip(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    render_ok(c, &single, false, &rep);
    nv_set_bool(rs_get(&c->rs, SM_SUBSYS, 1), "allow_any_host", true);
    render_ok(c, &single, false, &rep);
    fx_expect(&c->f, SUB "/attr_allow_any_host", "1");
    assert_int_equal(fx_count(&c->f, SUB "/allowed_hosts"), 0);
    nv_set_bool(rs_get(&c->rs, SM_SUBSYS, 1), "allow_any_host", false);
    render_ok(c, &single, false, &rep);
    fx_expect(&c->f, SUB "/attr_allow_any_host", "0");
    fx_expect_link(&c->f, SUB "/allowed_hosts/" HOSTNQN, "hosts/" HOSTNQN);
    tgt_report_clear(&rep);
}

/* Deleting everything in one pass works bottom-up (namespaces, links,
 * ports, hosts, subsystems) without a single refusal. */
static void test_deletes_bottom_up(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    int64_t s2 = rs_subsys(&c->rs, "nqn.2024-01.com.example:two", "S2");
    fx_device(&c->f, "/dev/zvol/tank/nvme/ns3");
    rs_ns(&c->rs, s2, 7, "ZVOL", "zvol/tank/nvme/ns3", true);
    rs_port_subsys(&c->rs, 1, s2);
    rs_host_subsys(&c->rs, 1, s2);
    render_ok(c, &single, false, &rep);
    assert_int_equal(fx_count(&c->f, "ports/1/subsystems"), 2);
    for (int64_t id = 1; id <= 2; id++) {
        rs_del(&c->rs, SM_NAMESPACE, id);
        rs_del(&c->rs, SM_PORT_SUBSYS, id);
        rs_del(&c->rs, SM_HOST_SUBSYS, id);
        rs_del(&c->rs, SM_SUBSYS, id);
    }
    rs_del(&c->rs, SM_PORT, 1);
    rs_del(&c->rs, SM_HOST, 1);
    render_ok(c, &single, false, &rep);
    assert_int_equal(fx_count(&c->f, "subsystems"), 0);
    assert_int_equal(fx_count(&c->f, "ports"), 0);
    assert_int_equal(fx_count(&c->f, "hosts"), 0);
    assert_int_equal(rep.rmdirs, 6);
    assert_int_equal(rep.unlinks, 4);
    tgt_report_clear(&rep);
}

/* A sweep repairs changes made behind our back and counts them as drift:
 * a hand-made subsystem, a changed attribute, a removed link. */
static void test_drift_repair(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    render_ok(c, &single, false, &rep);
    char p[1024];
    snprintf(p, sizeof p, "%s/nvmet/subsystems/nqn.2024-01.com.example:handmade", c->f.root);
    assert_int_equal(mkdir(p, 0755), 0);
    fx_write(&c->f, SUB "/attr_serial", "HACKED");
    snprintf(p, sizeof p, "%s/nvmet/ports/1/subsystems/" SUBNQN, c->f.root);
    assert_int_equal(unlink(p), 0);
    /* an incremental pass trusts its last tree: nothing to do */
    render_ok(c, &single, false, &rep);
    assert_int_equal(rep.writes + rep.links + rep.rmdirs, 0);
    render_ok(c, &single, true, &rep);
    assert_true(rep.swept);
    assert_int_equal(rep.drift, 3);
    assert_int_equal(fx_count(&c->f, "subsystems"), 1);
    fx_expect(&c->f, SUB "/attr_serial", "TRUENAS001");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    render_ok(c, &single, true, &rep);
    assert_int_equal(rep.drift, 0);
    tgt_report_clear(&rep);
}

/* Hand-made links, referrals and extra ANA groups are removed too: the
 * renderer owns nvmet/ completely. */
static void test_owns_everything(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    render_ok(c, &single, false, &rep);
    int64_t p2 = rs_port(&c->rs, 2, "TCP", "127.0.0.1", 4430, "IPV4");
    (void)p2;
    render_ok(c, &single, false, &rep);
    /* the two TCP/IPv4 ports refer to each other */
    fx_expect(&c->f, "ports/1/referrals/2/addr_traddr", "127.0.0.1");
    fx_expect(&c->f, "ports/1/referrals/2/addr_trsvcid", "4430");
    fx_expect(&c->f, "ports/1/referrals/2/enable", "1");
    fx_expect(&c->f, "ports/2/referrals/1/addr_traddr", "0.0.0.0");
    char p[1024];
    snprintf(p, sizeof p, "%s/nvmet/ports/1/ana_groups/5", c->f.root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/nvmet/ports/2/referrals/9", c->f.root);
    assert_int_equal(mkdir(p, 0755), 0);
    char t[1024];
    snprintf(p, sizeof p, "%s/nvmet/ports/2/subsystems/" SUBNQN, c->f.root);
    snprintf(t, sizeof t, "%s/nvmet/" SUB, c->f.root);
    assert_int_equal(symlink(t, p), 0);
    render_ok(c, &single, true, &rep);
    assert_int_equal(rep.drift, 3);
    assert_false(fx_exists(&c->f, "ports/1/ana_groups/5"));
    assert_true(fx_exists(&c->f, "ports/1/ana_groups/1"));
    assert_false(fx_exists(&c->f, "ports/2/referrals/9"));
    assert_false(fx_exists(&c->f, "ports/2/subsystems/" SUBNQN));
    /* no cross-port referrals when xport_referral is off */
    nv_set_bool(c->rs.global, "xport_referral", false);
    render_ok(c, &single, false, &rep);
    assert_int_equal(fx_count(&c->f, "ports/1/referrals"), 0);
    assert_int_equal(fx_count(&c->f, "ports/2/referrals"), 0);
    tgt_report_clear(&rep);
}

/* An incremental pass after one change touches only that change: one
 * write for one namespace among 4096, and a bounded number of reads. */
static void test_incremental_cost(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    fx_device(&c->f, "/dev/zvol/tank/big");
    for (int s = 0; s < 32; s++) {
        char nqn[128];
        snprintf(nqn, sizeof nqn, "nqn.2024-01.com.example:big%02d", s);
        int64_t sid = rs_subsys(&c->rs, nqn, nqn + 24);
        for (int n = 1; n <= 128; n++) {
            rs_ns(&c->rs, sid, n, "ZVOL", "zvol/tank/big", false);
        }
    }
    render_ok(c, &single, false, &rep);
    assert_int_equal(fx_count(&c->f, "subsystems/nqn.2024-01.com.example:big31/namespaces"),
                     128);
    nv_set_bool(rs_get(&c->rs, SM_NAMESPACE, 1000), "enabled", true);
    render_ok(c, &single, false, &rep);
    assert_false(rep.swept);
    assert_int_equal(rep.writes, 1);
    assert_int_equal(rep.mkdirs + rep.rmdirs + rep.links + rep.unlinks, 0);
    assert_true(rep.reads <= 16);
    fx_expect(&c->f, "subsystems/nqn.2024-01.com.example:big07/namespaces/104/enable", "1");
    /* nothing changed: nothing read */
    render_ok(c, &single, false, &rep);
    assert_int_equal(rep.reads + rep.writes, 0);
    tgt_report_clear(&rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_complete_setup_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_empties_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_change_while_linked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ns_device_change_while_enabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_names_errno_and_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allow_any_host_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deletes_bottom_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drift_repair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owns_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_cost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
