/* target/ driven through the real statemachine (sm_prepare ->
 * sm_command_encode -> sm_apply -> tgt_reconcile), the way nvmetd does:
 * README "A complete setup" renders the expected tree, updates and
 * deletes follow. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "sm.h"
#include "test_tgt_util.h"

#define SUBNQN "nqn.2024-01.com.example:nvme:subsys1"
#define HOSTNQN "nqn.2024-01.com.example:host:server1"
#define SUB "subsystems/" SUBNQN
#define NS1 SUB "/namespaces/1"

static const struct tgt_view single = {.active = true};

struct ctx {
    struct fx f;
    struct sm_state *s;
    unsigned char counter;
    bool ha; /* the leader's env: HA features allowed */
};

static void counter_random(void *ctx, void *buf, size_t len)
{
    unsigned char *c = ctx, *b = buf;
    for (size_t i = 0; i < len; i++) {
        b[i] = (unsigned char)((*c)++ * 37u + 11u);
    }
}

/* One write through the leader path and apply; the result (owned). */
static struct nv *call(struct ctx *c, const char *method, const char *params)
{
    struct sm_env env = {.random = counter_random, .ctx = &c->counter, .ha = c->ha};
    struct nv *p = nv_from_json(params != NULL ? params : "[]");
    assert_non_null(p);
    struct nv *cmd = NULL;
    struct nv_err e;
    nv_err_init(&e);
    int rv = sm_prepare(c->s, method, p, &env, &cmd, &e);
    if (rv < 0) {
        char *r = nv_err_reason(&e);
        fail_msg("%s %s: %s", method, params, r);
    }
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(sm_command_encode(cmd, NULL, -1, &buf, &len), 0);
    struct sm_result *res = sm_apply(c->s, buf, len);
    assert_non_null(res);
    if (res->err != NULL) {
        char *r = nv_err_reason(res->err);
        fail_msg("apply %s: %s", method, r);
    }
    struct nv *v = res->value;
    res->value = NULL;
    sm_result_free(res);
    free(buf);
    nv_free(cmd);
    nv_free(p);
    nv_err_clear(&e);
    return v;
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    fx_setup(&c->f, "6.13"); /* the newest profile: every attribute */
    c->s = sm_new();
    assert_non_null(c->s);
    fx_device(&c->f, "/dev/zvol/tank/nvme/ns1");
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    sm_free(c->s);
    fx_teardown(&c->f);
    free(c);
    return 0;
}

static int render(struct ctx *c, const struct tgt_view *v, bool sweep, struct tgt_report *rep)
{
    int errors = tgt_reconcile(c->f.t, c->s, v, sweep, rep);
    if (errors > 0) {
        char *d = nv_dump(rep->problems);
        fprintf(stderr, "problems: %s\n", d);
        free(d);
    }
    return errors;
}

/* README "A complete setup", in its order. */
static void complete_setup(struct ctx *c)
{
    nv_free(
        call(c, "nvmet.subsys.create", "[{\"name\": \"" SUBNQN "\", \"serial\": \"TRUENAS001\"}]"));
    nv_free(call(c, "nvmet.namespace.create",
                 "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\", \"device_nguid\": null, "
                 "\"device_uuid\": null, \"enabled\": true}]"));
    nv_free(call(c, "nvmet.port.create",
                 "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"0.0.0.0\", "
                 "\"addr_trsvcid\": \"4420\", \"addr_adrfam\": \"IPV4\"}]"));
    nv_free(call(c, "nvmet.port_subsys.create", "[{\"port\": 1, \"subsys\": 1}]"));
    nv_free(call(c, "nvmet.host.create", "[{\"hostnqn\": \"" HOSTNQN "\"}]"));
    nv_free(call(c, "nvmet.host_subsys.create", "[{\"host\": 1, \"subsys\": 1}]"));
    nv_free(call(c, "nvmet.global.update", "[{\"enabled\": true}]"));
}

/* Before global.enabled nothing is rendered; after the complete setup the
 * tree has exactly the expected files, and desired equals live. */
static void test_sm_complete_setup(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    assert_int_equal(render(c, &single, false, &rep), 0);
    assert_int_equal(fx_count(&c->f, "subsystems"), 0);
    complete_setup(c);
    assert_int_equal(render(c, &single, false, &rep), 0);
    struct nv *ns = sm_entry(c->s, SM_NAMESPACE, 1, NULL);
    assert_non_null(ns);
    fx_expect(&c->f, SUB "/attr_serial", "TRUENAS001");
    fx_expect(&c->f, SUB "/attr_allow_any_host", "0");
    fx_expect(&c->f, SUB "/attr_model", "nvmet-ha");
    fx_expect(&c->f, SUB "/attr_firmware", NVMET_HA_VERSION);
    fx_expect(&c->f, NS1 "/device_path", "/dev/zvol/tank/nvme/ns1");
    fx_expect(&c->f, NS1 "/device_uuid", nv_get_str(ns, "device_uuid"));
    fx_expect(&c->f, NS1 "/device_nguid", nv_get_str(ns, "device_nguid"));
    fx_expect(&c->f, NS1 "/buffered_io", "0");
    fx_expect(&c->f, NS1 "/resv_enable", "1");
    fx_expect(&c->f, NS1 "/enable", "1");
    fx_expect(&c->f, "ports/1/addr_trtype", "tcp");
    fx_expect(&c->f, "ports/1/addr_trsvcid", "4420");
    fx_expect(&c->f, "ports/1/addr_traddr", "0.0.0.0");
    fx_expect(&c->f, "ports/1/addr_adrfam", "ipv4");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    fx_expect_link(&c->f, SUB "/allowed_hosts/" HOSTNQN, "hosts/" HOSTNQN);
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_hash", "hmac(sha256)");
    nv_free(ns);
    struct nv *want = tgt_desired_tree(c->f.t, c->s, &single);
    struct nv *live = tgt_live_tree(c->f.t);
    assert_true(nv_equal(want, live));
    nv_free(want);
    nv_free(live);
    tgt_report_clear(&rep);
}

/* The complete setup in nvmetcli's saveconfig.json form: the host, the
 * subsystem with its attributes, allowed host and namespace device, the
 * port with its address, link and default ANA group; the rendered (live)
 * tree says the same as the desired one. */
static void test_sm_nvmetcli(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    assert_int_equal(render(c, &single, false, &rep), 0);
    struct nv *want = tgt_desired_tree(c->f.t, c->s, &single);
    struct nv *live = tgt_live_tree(c->f.t);
    struct nv *a = tgt_nvmetcli(want), *b = tgt_nvmetcli(live);
    if (!nv_equal(a, b)) {
        char *x = nv_dump(a), *y = nv_dump(b);
        fail_msg("desired %s\nlive    %s", x, y);
    }
    const struct nv *h = nv_at(nv_get(a, "hosts"), 0);
    assert_string_equal(nv_get_str(h, "nqn"), HOSTNQN);
    assert_string_equal(nv_get_str(nv_get(h, "dhchap"), "hash"), "hmac(sha256)");
    const struct nv *sub = nv_at(nv_get(a, "subsystems"), 0);
    assert_string_equal(nv_get_str(sub, "nqn"), SUBNQN);
    assert_string_equal(nv_get_str(nv_get(sub, "attr"), "serial"), "TRUENAS001");
    assert_string_equal(nv_get_str(nv_get(sub, "attr"), "allow_any_host"), "0");
    assert_string_equal(nv_at(nv_get(sub, "allowed_hosts"), 0)->u.s.p, HOSTNQN);
    const struct nv *ns = nv_at(nv_get(sub, "namespaces"), 0);
    assert_int_equal(nv_get_int(ns, "nsid", 0), 1);
    assert_int_equal(nv_get_int(ns, "enable", 0), 1);
    assert_string_equal(nv_get_str(nv_get(ns, "device"), "path"), "/dev/zvol/tank/nvme/ns1");
    const struct nv *port = nv_at(nv_get(a, "ports"), 0);
    assert_int_equal(nv_get_int(port, "portid", 0), 1);
    assert_string_equal(nv_get_str(nv_get(port, "addr"), "trtype"), "tcp");
    assert_string_equal(nv_get_str(nv_get(port, "addr"), "traddr"), "0.0.0.0");
    assert_string_equal(nv_at(nv_get(port, "subsystems"), 0)->u.s.p, SUBNQN);
    const struct nv *g = nv_at(nv_get(port, "ana_groups"), 0);
    assert_int_equal(nv_get_int(g, "grpid", 0), 1);
    assert_string_equal(nv_get_str(nv_get(g, "ana"), "state"), "optimized");
    nv_free(a);
    nv_free(b);
    nv_free(want);
    nv_free(live);
    tgt_report_clear(&rep);
}

/* Updates through the API reach configfs: serial, namespace disable, the
 * port's trsvcid (disable, change, enable), and deletes empty the tree. */
static void test_sm_updates_and_deletes(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    complete_setup(c);
    assert_int_equal(render(c, &single, false, &rep), 0);
    nv_free(call(c, "nvmet.namespace.update", "[1, {\"enabled\": false}]"));
    assert_int_equal(render(c, &single, false, &rep), 0);
    fx_expect(&c->f, NS1 "/enable", "0");
    assert_int_equal(rep.writes, 1);
    nv_free(call(c, "nvmet.port.update", "[1, {\"enabled\": false}]"));
    assert_int_equal(render(c, &single, false, &rep), 0);
    assert_int_equal(fx_count(&c->f, "ports/1/subsystems"), 0);
    nv_free(call(c, "nvmet.port.update", "[1, {\"addr_trsvcid\": \"4421\"}]"));
    nv_free(call(c, "nvmet.port.update", "[1, {\"enabled\": true}]"));
    assert_int_equal(render(c, &single, false, &rep), 0);
    fx_expect(&c->f, "ports/1/addr_trsvcid", "4421");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    nv_free(call(c, "nvmet.port.delete", "[1, {\"force\": true}]"));
    nv_free(call(c, "nvmet.subsys.delete", "[1, {\"force\": true}]"));
    nv_free(call(c, "nvmet.host.delete", "[1]"));
    assert_int_equal(render(c, &single, false, &rep), 0);
    assert_int_equal(fx_count(&c->f, "subsystems"), 0);
    assert_int_equal(fx_count(&c->f, "ports"), 0);
    assert_int_equal(fx_count(&c->f, "hosts"), 0);
    struct nv *s = tgt_sessions(c->f.dir, c->s);
    assert_int_equal(nv_len(s), 0);
    nv_free(s);
    tgt_report_clear(&rep);
}

/* ANA through the statemachine: the ANA port listens on this node's
 * entry of the VIP's node_addresses, and an incremental pass after
 * failover.update changes it (the failover settings are inputs of the
 * rendered objects, not only the rows: such a change is a full pass). */
static void test_sm_ana_node_address(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    const struct tgt_view a = {
        .active = true, .ha = true, .node_id = 1, .node_slot = 1, .n_slots = 2, .slot_ids = {1, 2}};
    c->ha = true;
    nv_free(
        call(c, "nvmet.subsys.create", "[{\"name\": \"" SUBNQN "\", \"serial\": \"TRUENAS001\"}]"));
    nv_free(call(c, "nvmet.namespace.create",
                 "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\", \"enabled\": true}]"));
    nv_free(call(c, "nvmet.port.create",
                 "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.10\", "
                 "\"addr_trsvcid\": \"4420\", \"addr_adrfam\": \"IPV4\"}]"));
    nv_free(call(c, "nvmet.port_subsys.create", "[{\"port\": 1, \"subsys\": 1}]"));
    nv_free(call(c, "failover.update",
                 "[{\"vips\": [{\"address\": \"198.51.100.10\", \"prefix\": 24, "
                 "\"interface\": \"eth0\", \"node_addresses\": "
                 "{\"1\": \"10.0.0.1\", \"2\": \"10.0.0.2\"}}]}]"));
    nv_free(call(c, "nvmet.global.update", "[{\"ana\": true, \"enabled\": true}]"));
    assert_int_equal(render(c, &a, false, &rep), 0);
    fx_expect(&c->f, "ports/5001/addr_traddr", "10.0.0.1");
    fx_expect(&c->f, "ports/5001/referrals/5001-2/addr_traddr", "10.0.0.2");
    fx_expect(&c->f, "ports/5001/ana_groups/2/ana_state", "optimized");
    fx_expect(&c->f, NS1 "/ana_grpid", "2");
    fx_expect_link(&c->f, "ports/5001/subsystems/" SUBNQN, SUB);
    assert_int_equal(render(c, &a, false, &rep), 0);
    assert_int_equal(rep.writes + rep.mkdirs + rep.reads, 0); /* nothing changed */
    nv_free(call(c, "failover.update",
                 "[{\"vips\": [{\"address\": \"198.51.100.10\", \"prefix\": 24, "
                 "\"interface\": \"eth0\", \"node_addresses\": "
                 "{\"1\": \"10.0.0.101\", \"2\": \"10.0.0.102\"}}]}]"));
    assert_int_equal(render(c, &a, false, &rep), 0);
    assert_false(rep.swept);
    fx_expect(&c->f, "ports/5001/addr_traddr", "10.0.0.101");
    fx_expect(&c->f, "ports/5001/referrals/5001-2/addr_traddr", "10.0.0.102");
    fx_expect_link(&c->f, "ports/5001/subsystems/" SUBNQN, SUB);
    struct nv *want = tgt_desired_tree(c->f.t, c->s, &a);
    struct nv *live = tgt_live_tree(c->f.t);
    assert_true(nv_equal(want, live));
    nv_free(want);
    nv_free(live);
    tgt_report_clear(&rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sm_complete_setup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sm_updates_and_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sm_nvmetcli, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sm_ana_node_address, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
