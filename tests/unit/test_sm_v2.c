/* The v2 log format (statemachine/sm.h, DESIGN): every method's command
 * round trip, the races apply re-checks (and only those), and apply not
 * re-running field validation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "sm.h"
#include "test_sm_util.h"

static uint64_t rnd_state = 0x2545f4914f6cdd1dULL;

static struct sm_env env = {.random = sm_test_random,
                            .device_stat = sm_test_stat,
                            .ha = true,
                            .rdma_capable = true,
                            .ctx = &rnd_state};

/* A v2 command of a call that must pass prepare (owned). */
static struct nv *prep(struct sm_state *s, const char *method, const char *json)
{
    struct nv *cmd;
    char *why;
    if (sm_test_prepare(s, &env, method, json, &cmd, &why) < 0) {
        fprintf(stderr, "%s %s: %s\n", method, json, why);
        free(why);
    }
    assert_non_null(cmd);
    assert_int_equal(nv_get_int(cmd, "v", 0), 2);
    assert_true(nv_is(nv_get(cmd, "o"), NV_MAP));
    assert_null(nv_get(cmd, "p"));
    assert_null(nv_get(cmd, "r"));
    assert_null(nv_get(cmd, "d"));
    return cmd;
}

/* Prepare's error (owned reason text), or NULL if prepare accepted it. */
static char *prep_err(struct sm_state *s, const char *method, const char *json)
{
    struct nv *cmd;
    char *why;
    sm_test_prepare(s, &env, method, json, &cmd, &why);
    nv_free(cmd);
    return why;
}

/* Apply cmd to s; it must succeed; the value (owned). */
static struct nv *apply_ok(struct sm_state *s, const struct nv *cmd)
{
    struct sm_result *r = sm_test_apply(s, cmd);
    if (r->err != NULL) {
        char *why = nv_err_reason(r->err);
        fprintf(stderr, "apply %s: %s\n", nv_get_str(cmd, "m"), why);
        free(why);
    }
    assert_null(r->err);
    struct nv *v = r->value;
    r->value = NULL;
    sm_result_free(r);
    return v;
}

/* Apply cmd to s; it must fail with a reason containing want. */
static void apply_fails(struct sm_state *s, const struct nv *cmd, const char *want)
{
    char *before;
    size_t lb;
    assert_int_equal(sm_snapshot(s, &before, &lb), 0);
    struct sm_result *r = sm_test_apply(s, cmd);
    assert_non_null(r->err);
    char *why = nv_err_reason(r->err);
    if (strstr(why, want) == NULL) {
        fprintf(stderr, "expected: %s\n     got: %s\n", want, why);
    }
    assert_non_null(strstr(why, want));
    free(why);
    sm_result_free(r);
    /* a failed apply changes nothing */
    sm_test_snapshot_is(s, before, lb);
    free(before);
}

static void run(struct sm_state *s, const char *method, const char *json)
{
    struct nv *cmd = prep(s, method, json);
    nv_free(apply_ok(s, cmd));
    nv_free(cmd);
}

static void same_state(const struct sm_state *a, const struct sm_state *b)
{
    char *x;
    size_t xl;
    assert_int_equal(sm_snapshot(a, &x, &xl), 0);
    sm_test_snapshot_is(b, x, xl);
    free(x);
}

#define HOSTNQN "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"

/* Every write method: prepared as v2 on the leader, encoded with a
 * session key, decoded back as the same command, applied identically by
 * the leader and a replica that has no environment at all. */
static void test_round_trip_every_method(void **state)
{
    (void)state;
    static const char *const calls[][2] = {
        {"nvmet.global.init", "[]"},
        {"cluster.node.register",
         "[{\"id\": 1, \"kind\": \"data\", \"raft\": \"198.51.100.1:7000\"}]"},
        {"cluster.node.register",
         "[{\"id\": 2, \"kind\": \"witness\", \"raft\": \"198.51.100.2:7000\"}]"},
        {"cluster.node.unregister", "[2]"},
        {"failover.activate", "[{\"node\": 1, \"term\": 3}]"},
        {"failover.update",
         "[{\"takeover_delay_ms\": 5, \"vips\": [{\"address\": \"198.51.100.50\", \"prefix\": "
         "24, \"interface\": \"eth0\"}]}]"},
        {"nvmet.global.update", "[{\"ana\": true, \"xport_referral\": false}]"},
        {"nvmet.subsys.create", "[{\"name\": \"s1\", \"ana\": true}]"},
        {"nvmet.subsys.update", "[1, {\"serial\": null, \"qid_max\": 4}]"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"zvol/tank/a\"}]"},
        {"nvmet.namespace.update", "[1, {\"device_uuid\": null, \"enabled\": false}]"},
        {"nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.9\"}]"},
        {"nvmet.port.update", "[1, {\"addr_traddr\": \"2001:db8::9\"}]"},
        {"nvmet.host.create",
         "[{\"hostnqn\": \"" HOSTNQN "\", \"dhchap_hash\": \"SHA512\", \"dhchap_dhgroup\": "
         "\"NULL\"}]"},
        {"nvmet.host.update", "[1, {\"description\": \"d\"}]"},
        {"nvmet.host_subsys.create", "[{\"host\": 1, \"subsys\": 1}]"},
        {"nvmet.host_subsys.update", "[1, {\"subsys_id\": 1}]"},
        {"nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]"},
        {"nvmet.port_subsys.update", "[1, {\"port\": 1}]"},
        {"nvmet.port_subsys.delete", "[1]"},
        {"nvmet.host_subsys.delete", "[1]"},
        {"nvmet.namespace.delete", "[1, {\"remove\": true}]"},
        {"nvmet.port.delete", "[1, {\"force\": true}]"},
        {"nvmet.host.delete", "[1]"},
        {"nvmet.subsys.delete", "[1, {\"force\": false}]"},
    };
    struct sm_state *s = sm_new(), *r = sm_new();
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        struct nv *cmd = prep(s, calls[i][0], calls[i][1]);
        assert_string_equal(nv_get_str(cmd, "m"), calls[i][0]);
        char *buf;
        size_t len;
        assert_int_equal(sm_command_encode(cmd, "rt", (int64_t)i, &buf, &len), 0);
        struct nv *back = nv_decode(buf, len, NULL);
        assert_string_equal(nv_get_str(back, "c"), "rt");
        assert_int_equal(nv_get_int(back, "s", -1), (int64_t)i);
        nv_del(back, "c");
        nv_del(back, "s");
        assert_true(nv_equal(back, cmd));
        struct sm_result *a = sm_apply(s, buf, len), *b = sm_apply(r, buf, len);
        if (a->err != NULL) {
            char *why = nv_err_reason(a->err);
            fprintf(stderr, "%s: %s\n", calls[i][0], why);
            free(why);
        }
        assert_null(a->err);
        assert_true(nv_equal(a->value, b->value));
        same_state(s, r);
        sm_result_free(a);
        sm_result_free(b);
        free(buf);
        nv_free(back);
        nv_free(cmd);
    }
    /* config.restore: the saved configuration into an empty cluster */
    run(s, "nvmet.subsys.create", "[{\"name\": \"keep\", \"serial\": \"K1\"}]");
    run(s, "nvmet.namespace.create",
        "[{\"subsys_id\": 2, \"device\": \"/srv/x.img\", "
        "\"filesize\": 4096}]");
    run(s, "nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.7\"}]");
    run(s, "nvmet.port_subsys.create", "[{\"port_id\": 2, \"subsys_id\": 2}]");
    run(s, "nvmet.port.create",
        "[{\"addr_trtype\": \"FC\", \"addr_traddr\": "
        "\"nn-0x1000000000000001:pn-0x2000000000000001\"}]");
    run(s, "nvmet.port.create", "[{\"addr_trtype\": \"LOOP\", \"addr_traddr\": \"1\"}]");
    struct nv *doc = sm_config_save(s);
    struct nv *p = nv_arr();
    nv_push(p, doc);
    char *json = nv_to_json(p);
    struct sm_state *fresh = sm_new(), *fresh2 = sm_new();
    struct nv *cmd = prep(fresh, "config.restore", json);
    /* the op holds the configuration the creates made, ids and all */
    const struct nv *conf = nv_get(nv_get(cmd, "o"), "config");
    assert_int_equal(nv_len(nv_get(conf, "namespace")), 1);
    assert_string_equal(nv_get_str(nv_at(nv_get(conf, "namespace"), 0), "device_uuid"),
                        nv_get_str(sm_row(s, SM_NAMESPACE, 0), "device_uuid"));
    nv_free(apply_ok(fresh, cmd));
    nv_free(apply_ok(fresh2, cmd));
    same_state(fresh, fresh2);
    struct nv *doc2 = sm_config_save(fresh);
    struct nv *doc1 = sm_config_save(s);
    nv_del(doc1, "global");
    nv_del(doc2, "global"); /* fresh's global row is its own */
    assert_true(nv_equal(doc1, doc2));
    /* the next create continues the saved id space */
    struct nv *sub = prep(fresh, "nvmet.subsys.create", "[{\"name\": \"next\"}]");
    struct nv *v = apply_ok(fresh, sub);
    assert_int_equal(nv_get_int(v, "id", 0), 3);
    nv_free(v);
    nv_free(sub);
    nv_free(doc1);
    nv_free(doc2);
    nv_free(cmd);
    free(json);
    nv_free(p);
    sm_free(fresh);
    sm_free(fresh2);
    sm_free(r);
    sm_free(s);
}

/* The first write of a cluster carries the leader's basenqn ("g"); the
 * state the leader prepared on is left as it was. */
static void test_first_write_basenqn(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    struct nv *cmd = prep(s, "nvmet.subsys.create", "[{\"name\": \"first\"}]");
    assert_false(sm_initialized(s));
    const char *g = nv_get_str(cmd, "g");
    assert_non_null(g);
    assert_int_equal(strncmp(g, "nqn.2011-06.com.truenas:uuid:", 29), 0);
    struct nv *v = apply_ok(s, cmd);
    assert_string_equal(nv_get_str(sm_global_row(s), "basenqn"), g);
    char want[256];
    snprintf(want, sizeof want, "%s:first", g);
    assert_string_equal(nv_get_str(v, "subnqn"), want);
    nv_free(v);
    nv_free(cmd);
    /* a failed first write leaves the cluster uninitialized */
    struct sm_state *t = sm_new();
    struct nv *bad = prep(t, "nvmet.subsys.create", "[{\"name\": \"b\"}]");
    assert_non_null(nv_get(bad, "g"));
    nv_set_int(nv_get(nv_get(bad, "o"), "row"), "name", 7);
    apply_fails(t, bad, "malformed v2 command");
    assert_false(sm_initialized(t));
    nv_free(bad);
    sm_free(t);
    /* an initialized cluster: no "g" */
    cmd = prep(s, "nvmet.subsys.create", "[{\"name\": \"second\"}]");
    assert_null(nv_get(cmd, "g"));
    nv_free(cmd);
    sm_free(s);
}

static void test_race_same_name(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    run(s, "nvmet.global.init", "[]");
    struct nv *a = prep(s, "nvmet.subsys.create", "[{\"name\": \"dup\"}]");
    struct nv *b = prep(s, "nvmet.subsys.create", "[{\"name\": \"dup\"}]");
    nv_free(apply_ok(s, a));
    apply_fails(s, b, "[EINVAL] nvmet_subsys_create.name: Object with this name already exists");
    /* prepare gives the same message now */
    char *why = prep_err(s, "nvmet.subsys.create", "[{\"name\": \"dup\"}]");
    assert_non_null(why);
    assert_non_null(strstr(why, "nvmet_subsys_create.name: Object with this name already exists"));
    free(why);
    nv_free(a);
    nv_free(b);
    /* hostnqn, an explicit nsid, a device path, a port address, a link */
    run(s, "nvmet.namespace.create", "[{\"subsys_id\": 1, \"device\": \"zvol/tank/base\"}]");
    static const char *const pairs[][4] = {
        {"nvmet.host.create", "[{\"hostnqn\": \"" HOSTNQN "\"}]",
         "[{\"hostnqn\": \"" HOSTNQN "\"}]",
         "nvmet_host_create.hostnqn: Object with this hostnqn already exists"},
        {"nvmet.namespace.create",
         "[{\"subsys_id\": 1, \"device\": \"zvol/tank/n7\", \"nsid\": 7}]",
         "[{\"subsys_id\": 1, \"device\": \"zvol/tank/m7\", \"nsid\": 7}]",
         "nvmet_namespace_create.nsid: This record already exists (Subsystem ID: 1/NSID: 7)"},
        {"nvmet.namespace.create", "[{\"subsys_id\": 1, \"device\": \"zvol/tank/p\"}]",
         "[{\"subsys_id\": 1, \"device\": \"zvol/tank/p\"}]",
         "nvmet_namespace_create.device_path: This device_path already used by subsystem: dup"},
        {"nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.3\"}]",
         "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.3\"}]",
         "nvmet_port_create.addr_traddr: There already is a port using the same transport and "
         "address"},
        {"nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]",
         "[{\"port_id\": 1, \"subsys_id\": 1}]",
         "nvmet_port_subsys_create.port_id: This record already exists (Host ID: 1/Subsystem ID: "
         "1)"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        struct nv *x = prep(s, pairs[i][0], pairs[i][1]);
        struct nv *y = prep(s, pairs[i][0], pairs[i][2]);
        nv_free(apply_ok(s, x));
        apply_fails(s, y, pairs[i][3]);
        nv_free(x);
        nv_free(y);
    }
    sm_free(s);
}

/* Automatic nsid and port index: allocated on apply, so pipelined creates
 * prepared on the same state all succeed with different values. */
static void test_race_auto_values(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    run(s, "nvmet.subsys.create", "[{\"name\": \"s\"}]");
    run(s, "nvmet.namespace.create",
        "[{\"subsys_id\": 1, \"device\": \"zvol/tank/a\", \"nsid\": 2}]");
    struct nv *a =
        prep(s, "nvmet.namespace.create", "[{\"subsys_id\": 1, \"device\": \"zvol/tank/b\"}]");
    struct nv *b =
        prep(s, "nvmet.namespace.create", "[{\"subsys_id\": 1, \"device\": \"zvol/tank/c\"}]");
    struct nv *c =
        prep(s, "nvmet.namespace.create", "[{\"subsys_id\": 1, \"device\": \"zvol/tank/d\"}]");
    assert_string_equal(nv_get_str(nv_get(nv_get(a, "o"), "row"), "nsid"), "auto");
    struct nv *va = apply_ok(s, a), *vb = apply_ok(s, b), *vc = apply_ok(s, c);
    /* lowest unused nsid of the subsystem, in apply order */
    assert_int_equal(nv_get_int(va, "nsid", 0), 1);
    assert_int_equal(nv_get_int(vb, "nsid", 0), 3);
    assert_int_equal(nv_get_int(vc, "nsid", 0), 4);
    nv_free(va);
    nv_free(vb);
    nv_free(vc);
    nv_free(a);
    nv_free(b);
    nv_free(c);
    struct nv *p1 = prep(s, "nvmet.port.create",
                         "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.1\"}]");
    struct nv *p2 = prep(s, "nvmet.port.create",
                         "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.2\"}]");
    struct nv *v1 = apply_ok(s, p1), *v2 = apply_ok(s, p2);
    assert_int_equal(nv_get_int(v1, "index", 0), 1);
    assert_int_equal(nv_get_int(v2, "index", 0), 2);
    assert_int_equal(nv_get_int(v2, "id", 0), 2);
    nv_free(v1);
    nv_free(v2);
    nv_free(p1);
    nv_free(p2);
    sm_free(s);
}

/* Two updates of different columns of one row, prepared on the same
 * state: both survive (an update carries only what it changes). */
static void test_race_updates_merge(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    run(s, "nvmet.subsys.create", "[{\"name\": \"s\"}]");
    run(s, "nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.1\"}]");
    run(s, "nvmet.host.create", "[{\"hostnqn\": \"" HOSTNQN "\"}]");
    static const char *const ups[][3] = {
        {"nvmet.subsys.update", "[1, {\"qid_max\": 4}]", "[1, {\"ieee_oui\": \"abcdef\"}]"},
        {"nvmet.port.update", "[1, {\"max_queue_size\": 64}]", "[1, {\"pi_enable\": true}]"},
        {"nvmet.host.update", "[1, {\"description\": \"x\"}]",
         "[1, {\"dhchap_hash\": \"SHA384\"}]"},
    };
    for (size_t i = 0; i < 3; i++) {
        struct nv *a = prep(s, ups[i][0], ups[i][1]), *b = prep(s, ups[i][0], ups[i][2]);
        nv_free(apply_ok(s, a));
        nv_free(apply_ok(s, b));
        nv_free(a);
        nv_free(b);
    }
    const struct nv *sub = sm_row(s, SM_SUBSYS, 0);
    assert_int_equal(nv_get_int(sub, "qid_max", 0), 4);
    assert_string_equal(nv_get_str(sub, "ieee_oui"), "abcdef");
    const struct nv *port = sm_row(s, SM_PORT, 0);
    assert_int_equal(nv_get_int(port, "max_queue_size", 0), 64);
    assert_true(nv_get_bool(port, "pi_enable", false));
    const struct nv *host = sm_row(s, SM_HOST, 0);
    assert_string_equal(nv_get_str(host, "description"), "x");
    assert_string_equal(nv_get_str(host, "dhchap_hash"), "SHA-384");
    sm_free(s);
}

/* What changed between prepare and apply: the row went, a referenced row
 * went, the target started running, a link appeared, a newer term. */
static void test_race_state_moved(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    run(s, "nvmet.subsys.create", "[{\"name\": \"s\"}]");
    run(s, "nvmet.subsys.create", "[{\"name\": \"t\"}]");
    run(s, "nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.1\"}]");
    run(s, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]");
    run(s, "nvmet.namespace.create", "[{\"subsys_id\": 1, \"device\": \"zvol/tank/a\"}]");

    struct nv *up = prep(s, "nvmet.port.update", "[1, {\"addr_trsvcid\": 4430}]");
    struct nv *ser = prep(s, "nvmet.subsys.update", "[1, {\"serial\": \"NEW\"}]");
    struct nv *nsu = prep(s, "nvmet.namespace.update", "[1, {\"device_path\": \"zvol/tank/b\"}]");
    run(s, "nvmet.global.update", "[{\"enabled\": true}]");
    apply_fails(s, up,
                "[EINVAL] nvmet_port_update.addr_trsvcid: Cannot change addr_trsvcid on an active "
                "port.  Disable first to allow change.");
    apply_fails(s, ser,
                "[EINVAL] nvmet_subsys_update.serial: Cannot change serial on an active subsystem."
                "  Disable first to allow change.");
    apply_fails(s, nsu,
                "[EINVAL] nvmet_namespace_update: Cannot change device_path on an active "
                "namespace.  Disable first to allow change.");
    run(s, "nvmet.global.update", "[{\"enabled\": false}]");
    nv_free(up);
    nv_free(ser);
    nv_free(nsu);

    struct nv *del = prep(s, "nvmet.subsys.delete", "[2]");
    struct nv *ns =
        prep(s, "nvmet.namespace.create", "[{\"subsys_id\": 2, \"device\": \"zvol/tank/c\"}]");
    struct nv *upd = prep(s, "nvmet.subsys.update", "[2, {\"qid_max\": 2}]");
    struct nv *lnk = prep(s, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 2}]");
    nv_free(apply_ok(s, lnk));
    apply_fails(s, del, "[EINVAL] nvmet_subsys_delete.id: Subsystem t visible on 1 port");
    run(s, "nvmet.subsys.delete", "[2, {\"force\": true}]");
    apply_fails(s, ns, "[EINVAL] nvmet_namespace_create.subsys_id: No subsystem with ID 2");
    apply_fails(s, upd, "[ENOENT] None: NVMetSubsys 2 does not exist");
    nv_free(del);
    nv_free(ns);
    nv_free(upd);
    nv_free(lnk);

    /* a host update that drops the key while another adds a ctrl key */
    run(s, "nvmet.host.create",
        "[{\"hostnqn\": \"" HOSTNQN "\", \"dhchap_key\": \"DHHC-1:00:abc:\"}]");
    struct nv *k1 = prep(s, "nvmet.host.update", "[1, {\"dhchap_ctrl_key\": \"DHHC-1:00:def:\"}]");
    struct nv *k2 = prep(s, "nvmet.host.update", "[1, {\"dhchap_key\": null}]");
    nv_free(apply_ok(s, k1));
    apply_fails(s, k2,
                "[EINVAL] nvmet_host_update: Value error, Cannot configure bi-directional "
                "authentication without setting dhchap_key");
    nv_free(k1);
    nv_free(k2);

    struct nv *t5 = prep(s, "failover.activate", "[{\"node\": 1, \"term\": 5}]");
    struct nv *t4 = prep(s, "failover.activate", "[{\"node\": 2, \"term\": 4}]");
    nv_free(apply_ok(s, t5));
    apply_fails(s, t4, "term 4 is older than the active node's term 5");
    nv_free(t5);
    nv_free(t4);
    sm_free(s);
}

/* Apply does not validate fields again: an entry holding values today's
 * prepare refuses (a rule that changed since it was logged) applies as it
 * is, and the same on every replica; only the race invariants count. */
static void test_apply_does_not_revalidate(void **state)
{
    (void)state;
    struct sm_state *s = sm_new(), *r = sm_new();
    struct nv *init = prep(s, "nvmet.global.init", "[]");
    nv_free(apply_ok(s, init));
    nv_free(apply_ok(r, init));
    nv_free(init);
    /* a 30-character serial and a name with a newline: prepare refuses */
    char *why = prep_err(s, "nvmet.subsys.create",
                         "[{\"name\": \"x\", \"serial\": \"012345678901234567890123456789\"}]");
    assert_non_null(why);
    free(why);
    struct nv *cmd = prep(s, "nvmet.subsys.create", "[{\"name\": \"x\"}]");
    struct nv *row = nv_get(nv_get(cmd, "o"), "row");
    nv_set_str(row, "serial", "012345678901234567890123456789");
    nv_set_str(row, "ieee_oui", "not an oui");
    nv_set_bool(row, "ana", true); /* this "leader" had no HA either */
    struct nv *a = apply_ok(s, cmd), *b = apply_ok(r, cmd);
    assert_true(nv_equal(a, b));
    assert_string_equal(nv_get_str(a, "serial"), "012345678901234567890123456789");
    assert_string_equal(nv_get_str(a, "ieee_oui"), "not an oui");
    nv_free(a);
    nv_free(b);
    same_state(s, r);
    /* a host key of a format prepare refuses, an update to a bad dhgroup */
    why = prep_err(s, "nvmet.host.create",
                   "[{\"hostnqn\": \"" HOSTNQN "\", \"dhchap_key\": \"plain\"}]");
    assert_non_null(why);
    free(why);
    struct nv *h = prep(s, "nvmet.host.create", "[{\"hostnqn\": \"" HOSTNQN "\"}]");
    nv_set_str(nv_get(nv_get(h, "o"), "row"), "dhchap_key", "plain");
    nv_free(apply_ok(s, h));
    assert_string_equal(nv_get_str(sm_row(s, SM_HOST, 0), "dhchap_key"), "plain");
    nv_free(h);
    struct nv *u = prep(s, "nvmet.host.update", "[1, {\"description\": \"d\"}]");
    nv_set_str(nv_get(nv_get(u, "o"), "set"), "dhchap_dhgroup", "1024-BIT");
    nv_free(apply_ok(s, u));
    assert_string_equal(nv_get_str(sm_row(s, SM_HOST, 0), "dhchap_dhgroup"), "1024-BIT");
    nv_free(u);
    /* ... but a race invariant still holds: the serial is taken */
    struct nv *dup = prep(s, "nvmet.subsys.create", "[{\"name\": \"y\"}]");
    nv_set_str(nv_get(nv_get(dup, "o"), "row"), "serial", "012345678901234567890123456789");
    apply_fails(s, dup, "nvmet_subsys_create.serial: Object with this serial already exists");
    nv_free(dup);
    nv_free(cmd);
    sm_free(r);
    sm_free(s);
}

/* Entries that are not v2 commands: an error result, nothing changes. */
static void test_malformed_v2(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    run(s, "nvmet.subsys.create", "[{\"name\": \"s\"}]");
    static const char *const bad[][2] = {
        {"nvmet.subsys.create", "{}"},
        {"nvmet.subsys.create", "{\"row\": {\"id\": 5, \"name\": \"n\"}}"},
        {"nvmet.subsys.create", "{\"row\": {\"id\": \"auto\", \"name\": 3}}"},
        {"nvmet.subsys.update", "{\"id\": 1, \"set\": {\"name\": 7}}"},
        {"nvmet.subsys.update", "{\"id\": 1, \"set\": {\"id\": 2}}"},
        {"nvmet.subsys.update", "{\"id\": \"1\", \"set\": {}}"},
        {"nvmet.subsys.delete", "{\"id\": 1}"},
        {"nvmet.port.create", "{\"row\": {\"id\": \"auto\", \"index\": 3}}"},
        {"nvmet.global.update", "{\"set\": {\"enabled\": \"yes\"}}"},
        {"cluster.node.register", "{\"node\": {\"id\": 1}}"},
        {"failover.activate", "{\"node\": -1, \"term\": 1}"},
        {"failover.update", "{\"set\": {\"vips\": 3}}"},
        {"config.restore", "{\"config\": {\"subsys\": [{\"id\": 1}]}}"},
        {"nvmet.nothing.create", "{}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct nv *cmd = nv_map();
        nv_set_int(cmd, "v", 2);
        nv_set_str(cmd, "m", bad[i][0]);
        struct nv *op = nv_from_json(bad[i][1]);
        assert_non_null(op);
        nv_set(cmd, "o", op);
        apply_fails(
            s, cmd,
            i + 1 < sizeof bad / sizeof bad[0] ? "malformed v2 command" : "Method does not exist");
        nv_free(cmd);
    }
    /* no op at all, an unknown version */
    struct nv *cmd = nv_map();
    nv_set_int(cmd, "v", 2);
    nv_set_str(cmd, "m", "nvmet.subsys.create");
    apply_fails(s, cmd, "undecodable command");
    nv_set_int(cmd, "v", 3);
    nv_set(cmd, "o", nv_map());
    apply_fails(s, cmd, "unsupported command version 3");
    nv_free(cmd);
    sm_free(s);
}

/* A rolling upgrade: env.cmd_version 1 makes sm_prepare write v1; an
 * unknown version is refused on prepare. */
static void test_cmd_version_knob(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    struct nv *params = nv_from_json("[{\"name\": \"old\"}]"), *cmd = NULL;
    struct nv_err e;
    nv_err_init(&e);
    env.cmd_version = 1;
    assert_int_equal(sm_prepare(s, "nvmet.subsys.create", params, &env, &cmd, &e), 0);
    assert_int_equal(nv_get_int(cmd, "v", 0), 1);
    assert_non_null(nv_get(cmd, "p"));
    nv_free(apply_ok(s, cmd));
    nv_free(cmd);
    cmd = NULL;
    env.cmd_version = 9;
    assert_true(sm_prepare(s, "nvmet.subsys.create", params, &env, &cmd, &e) < 0);
    assert_null(cmd);
    env.cmd_version = 0;
    assert_int_equal(sm_rows(s, SM_SUBSYS), 1);
    nv_err_clear(&e);
    nv_free(params);
    sm_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_method),
        cmocka_unit_test(test_first_write_basenqn),
        cmocka_unit_test(test_race_same_name),
        cmocka_unit_test(test_race_auto_values),
        cmocka_unit_test(test_race_updates_merge),
        cmocka_unit_test(test_race_state_moved),
        cmocka_unit_test(test_apply_does_not_revalidate),
        cmocka_unit_test(test_malformed_v2),
        cmocka_unit_test(test_cmd_version_knob),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
