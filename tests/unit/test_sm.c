/* statemachine unit tests: prepare/apply of every write, TrueNAS's
 * messages, determinism across replicas, client sessions, snapshots. */
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
#include "sm_int.h"
#include "test_sm_util.h"

static uint64_t rnd_state = 88172645463325252ULL;

static struct sm_env env = {
    .random = sm_test_random, .device_stat = sm_test_stat, .ctx = &rnd_state};

/* Prepare + apply on s (and on the replica r if given); returns the result
 * value (owned) or NULL with *msg = the first error line. */
static struct nv *run(struct sm_state *s, struct sm_state *r, const char *method, const char *json,
                      char *msg, size_t msglen)
{
    struct nv *cmd = NULL;
    struct nv *out = NULL;
    char *reason = NULL;
    if (sm_test_prepare(s, &env, method, json, &cmd, &reason) < 0) {
        snprintf(msg, msglen, "%s", reason);
        free(reason);
    } else {
        char *buf;
        size_t len;
        assert_int_equal(sm_command_encode(cmd, NULL, -1, &buf, &len), 0);
        struct sm_result *res = sm_apply(s, buf, len);
        if (r != NULL) {
            sm_result_free(sm_apply(r, buf, len));
        }
        free(buf);
        if (res->err != NULL) {
            reason = nv_err_reason(res->err);
            snprintf(msg, msglen, "%s", reason);
            free(reason);
        } else {
            out = res->value;
            res->value = NULL;
        }
        sm_result_free(res);
    }
    nv_free(cmd);
    char *nl = strchr(msg, '\n');
    if (nl != NULL) {
        *nl = '\0';
    }
    return out;
}

static struct nv *ok(struct sm_state *s, struct sm_state *r, const char *method, const char *json)
{
    char msg[1024] = "";
    struct nv *v = run(s, r, method, json, msg, sizeof msg);
    if (v == NULL) {
        fprintf(stderr, "%s %s: %s\n", method, json, msg);
    }
    assert_non_null(v);
    return v;
}

static void err(struct sm_state *s, const char *method, const char *json, const char *expect)
{
    char msg[1024] = "";
    struct nv *v = run(s, NULL, method, json, msg, sizeof msg);
    if (v != NULL || strcmp(msg, expect) != 0) {
        fprintf(stderr, "%s %s\n  expected: %s\n  got:      %s\n", method, json, expect, msg);
    }
    assert_null(v);
    assert_string_equal(msg, expect);
}

#define SUB "nqn.2024-01.com.example:nvme:subsys1"
#define HOST "nqn.2024-01.com.example:host:server1"

static void setup_tree(struct sm_state *s, struct sm_state *r)
{
    nv_free(
        ok(s, r, "nvmet.subsys.create", "[{\"name\": \"" SUB "\", \"serial\": \"TRUENAS001\"}]"));
    nv_free(ok(s, r, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\", \"device_nguid\": null, "
               "\"device_uuid\": null, \"enabled\": true}]"));
    nv_free(ok(s, r, "nvmet.port.create",
               "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"0.0.0.0\", \"addr_trsvcid\": "
               "\"4420\", \"addr_adrfam\": \"IPV4\"}]"));
    nv_free(ok(s, r, "nvmet.port_subsys.create", "[{\"port\": 1, \"subsys\": 1}]"));
    nv_free(ok(s, r, "nvmet.host.create", "[{\"hostnqn\": \"" HOST "\"}]"));
    nv_free(ok(s, r, "nvmet.host_subsys.create", "[{\"host\": 1, \"subsys\": 1}]"));
    nv_free(ok(s, r, "nvmet.global.update", "[{\"enabled\": true}]"));
}

static void test_complete_setup_entries(void **state)
{
    (void)state;
    struct sm_state *s = sm_new(), *r = sm_new();
    setup_tree(s, r);
    struct nv *sub = sm_entry(s, SM_SUBSYS, 1, NULL);
    assert_string_equal(nv_get_str(sub, "subnqn"), SUB);
    assert_string_equal(nv_get_str(sub, "serial"), "TRUENAS001");
    assert_null(nv_get(sub, "hosts"));
    nv_free(sub);
    struct nv *ns = sm_entry(s, SM_NAMESPACE, 1, NULL);
    assert_int_equal(nv_get_int(ns, "nsid", 0), 1);
    assert_string_equal(nv_get_str(ns, "device_type"), "ZVOL");
    assert_string_equal(nv_get_str(nv_get(ns, "subsys"), "name"), SUB);
    assert_int_equal(strlen(nv_get_str(ns, "device_uuid")), 36);
    assert_false(nv_get_bool(ns, "locked", true));
    nv_free(ns);
    struct nv *p = sm_entry(s, SM_PORT, 1, NULL);
    assert_int_equal(nv_get_int(p, "addr_trsvcid", 0), 4420);
    assert_string_equal(nv_get_str(p, "addr_adrfam"), "IPV4");
    assert_int_equal(nv_get_int(p, "index", 0), 1);
    nv_free(p);
    struct nv *extra = nv_from_json("{\"verbose\": true}");
    struct nv *all = sm_entries(s, SM_SUBSYS, extra);
    assert_int_equal(nv_len(nv_get(nv_at(all, 0), "hosts")), 1);
    assert_int_equal(nv_len(nv_get(nv_at(all, 0), "ports")), 1);
    nv_free(all);
    nv_free(extra);
    struct nv *g = sm_global_entry(s);
    assert_true(nv_get_bool(g, "enabled", false));
    assert_int_equal(strncmp(nv_get_str(g, "basenqn"), "nqn.2011-06.com.truenas:uuid:", 29), 0);
    nv_free(g);
    /* the replica applied the same bytes: identical snapshots */
    char *a;
    size_t la;
    assert_int_equal(sm_snapshot(s, &a, &la), 0);
    sm_test_snapshot_is(r, a, la);
    /* restore into a fresh state gives the same snapshot again */
    struct sm_state *c = sm_new();
    struct nv_err e;
    nv_err_init(&e);
    assert_int_equal(sm_restore(c, a, la, &e), 0);
    sm_test_snapshot_is(c, a, la);
    /* garbage is refused and changes nothing */
    assert_true(sm_restore(c, "garbage", 7, &e) < 0);
    nv_err_clear(&e);
    assert_int_equal(sm_rows(c, SM_SUBSYS), 1);
    free(a);
    sm_free(c);
    sm_free(s);
    sm_free(r);
}

/* Restore the snapshot written as JSON; 0 or the error. */
static int restore_json(struct sm_state *s, const char *json)
{
    struct nv *d = nv_from_json(json);
    assert_non_null(d);
    char *buf;
    size_t len;
    assert_int_equal(nv_encode(d, &buf, &len), 0);
    struct nv_err e;
    nv_err_init(&e);
    int rv = sm_restore(s, buf, len, &e);
    nv_err_clear(&e);
    free(buf);
    nv_free(d);
    return rv;
}

#define SNAP_HEAD                                                                      \
    "{\"v\": 1, \"global\": null, \"sessions\": [], \"namespace\": [], \"port\": [], " \
    "\"host\": [], \"host_subsys\": [], \"port_subsys\": [], "

/* Ids and row versions in a snapshot are counts of writes: one claiming
 * 2^63-1 (the next create computed id + 1: a signed overflow) is
 * refused; 2^62 is accepted and the next create gets the next id. */
static void test_restore_id_limits(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    assert_true(restore_json(s, SNAP_HEAD "\"subsys\": [{\"id\": 9223372036854775807, \"name\": "
                                          "\"x\"}]}") < 0);
    assert_true(restore_json(s, SNAP_HEAD "\"subsys\": [], \"next_id\": [1, 9223372036854775807, "
                                          "1, 1, 1, 1]}") < 0);
    assert_true(restore_json(s, SNAP_HEAD "\"subsys\": [], \"row_ver\": 9223372036854775807}") < 0);
    assert_true(restore_json(s, SNAP_HEAD "\"subsys\": [{\"id\": 0, \"name\": \"x\"}]}") < 0);
    assert_int_equal(
        restore_json(s, SNAP_HEAD "\"subsys\": [{\"id\": 4611686018427387904, \"name\": \"x\", "
                                  "\"subnqn\": \"nqn.2024-01.com.example:x\", \"serial\": \"S\", "
                                  "\"allow_any_host\": false, \"pi_enable\": null, "
                                  "\"qid_max\": null, \"ieee_oui\": null, \"ana\": null}], "
                                  "\"row_ver\": 4611686018427387904}"),
        0);
    struct nv *v = ok(s, NULL, "nvmet.subsys.create", "[{\"name\": \"y\"}]");
    assert_int_equal(nv_get_int(v, "id", 0), 4611686018427387905LL);
    nv_free(v);
    sm_free(s);
}

/* A snapshot's rows must have the columns apply wrote, with their types:
 * a port row without addr_trtype was accepted and the next port create
 * passed NULL to strcmp (fuzz_snapshot, UBSan). */
static void test_restore_row_shapes(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    setup_tree(s, NULL);
    char *good;
    size_t len;
    assert_int_equal(sm_snapshot(s, &good, &len), 0);
    struct nv *d = nv_decode(good, len, NULL);
    assert_non_null(d);
    static const char *const drop[][2] = {{"port", "addr_trtype"},
                                          {"subsys", "serial"},
                                          {"host", "dhchap_hash"},
                                          {"namespace", "nsid"},
                                          {"port_subsys", "subsys_id"}};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        struct nv *c = nv_copy(d);
        nv_del(nv_at(nv_get(c, drop[i][0]), 0), drop[i][1]);
        char *buf;
        size_t blen;
        assert_int_equal(nv_encode(c, &buf, &blen), 0);
        struct nv_err e;
        nv_err_init(&e);
        assert_true(sm_restore(s, buf, blen, &e) < 0);
        nv_err_clear(&e);
        free(buf);
        nv_free(c);
    }
    /* a wrong type, in the cluster facts too */
    struct nv *c = nv_copy(d);
    nv_set_int(nv_at(nv_get(c, "host"), 0), "hostnqn", 5);
    char *buf;
    size_t blen;
    assert_int_equal(nv_encode(c, &buf, &blen), 0);
    struct nv_err e;
    nv_err_init(&e);
    assert_true(sm_restore(s, buf, blen, &e) < 0);
    free(buf);
    nv_free(c);
    nv_err_clear(&e);
    /* a member without its raft address; with it, the same facts restore */
    static const char *const cl[] = {
        "{\"nodes\": [{\"id\": 1, \"kind\": \"data\", \"rpc\": null}], \"active\": null, "
        "\"failover\": {\"takeover_delay_ms\": 0, \"fence_command\": null, \"announce_count\": "
        "3, \"announce_interval_ms\": 200, \"vips\": []}}",
        "{\"nodes\": [{\"id\": 1, \"kind\": \"data\", \"raft\": \"127.0.0.1:7001\", \"rpc\": "
        "null}], \"active\": null, \"failover\": {\"takeover_delay_ms\": 0, \"fence_command\": "
        "null, \"announce_count\": 3, \"announce_interval_ms\": 200, \"vips\": []}}"};
    for (int i = 0; i < 2; i++) {
        c = nv_copy(d);
        nv_set(c, "cluster", nv_from_json(cl[i]));
        assert_int_equal(nv_encode(c, &buf, &blen), 0);
        assert_int_equal(sm_restore(s, buf, blen, &e) < 0, i == 0);
        nv_err_clear(&e);
        free(buf);
        nv_free(c);
    }
    /* its own snapshot restores */
    assert_int_equal(sm_restore(s, good, len, &e), 0);
    assert_int_equal(sm_rows(s, SM_PORT), 1);
    nv_err_clear(&e);
    free(good);
    nv_free(d);
    sm_free(s);
}

static void test_validation_messages(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    setup_tree(s, NULL);
    static const struct {
        const char *m, *j, *e;
    } cases[] = {
        {"nvmet.subsys.create", "[{\"name\": \"" SUB "\"}]",
         "[EINVAL] nvmet_subsys_create.name: Object with this name already exists"},
        {"nvmet.subsys.create", "[{}]", "[EINVAL] nvmet_subsys_create.name: Field required"},
        {"nvmet.subsys.create", "[]", "[EINVAL] nvmet_subsys_create: Field required"},
        {"nvmet.subsys.create", "[{\"name\": \"x\"}, 2]",
         "[EINVAL] : Too many arguments (expected 1, found 2)"},
        {"nvmet.subsys.create", "[{\"name\": \"x\", \"serial\": \"TRUENAS001\"}]",
         "[EINVAL] nvmet_subsys_create.serial: Object with this serial already exists"},
        {"nvmet.subsys.create", "[{\"name\": \"x\", \"serial\": \"123456789012345678901\"}]",
         "[EINVAL] nvmet_subsys_create.serial: String should have at most 20 characters"},
        {"nvmet.subsys.create", "[{\"name\": \"x\", \"subnqn\": \"" SUB "\"}]",
         "[EINVAL] nvmet_subsys_create.subnqn: Object with this subnqn already exists"},
        {"nvmet.subsys.create", "[{\"name\": \"x\", \"subnqn\": \"nqn.2024-01.1com.example:x\"}]",
         "[EINVAL] nvmet_subsys_create.subnqn: Value error, nqn.2024-01.1com.example:x: domain "
         "does not "
         "appear to be valid"},
        {"nvmet.subsys.create",
         "[{\"name\": \"x\", \"subnqn\": \"nqn.2014-08.org.nvmexpress:uuid:zzzzzzzz-1111-2222-3333-"
         "444444444444\"}]",
         "[EINVAL] nvmet_subsys_create.subnqn: Value error, badly formed hexadecimal UUID string"},
        {"nvmet.subsys.update", "[\"1\", {}]", "[EINVAL] id: Input should be a valid integer"},
        {"nvmet.subsys.update", "[1, {\"serial\": \"NEW\"}]",
         "[EINVAL] nvmet_subsys_update.serial: Cannot change serial on an active subsystem.  "
         "Disable first to allow change."},
        {"nvmet.subsys.delete", "[1, {\"force\": 1}]",
         "[EINVAL] options.force: Input should be a valid boolean"},
        {"nvmet.namespace.create", "[{\"subsys\": 1}]",
         "[EINVAL] nvmet_namespace_create.device_type: Field required"},
        {"nvmet.namespace.create", "[{\"device\": \"zvol/tank/a\"}]",
         "[EINVAL] nvmet_namespace_create.subsys_id: Field required"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"tank/a\"}]",
         "[EINVAL] nvmet_namespace_create.device: Value error, device must be "
         "zvol/<pool>/<volume> or an absolute path: tank/a"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"/dev/sdz\"}]",
         "[EINVAL] nvmet_namespace_create.device_path: BLOCK device_path must be a block device: "
         "/dev/sdz"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"/srv\"}]",
         "[EINVAL] nvmet_namespace_create.device_path: FILE device_path must not be a directory: "
         "/srv"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"/nope/x.img\"}]",
         "[EINVAL] nvmet_namespace_create.device_path: FILE device_path must reside in an "
         "existing directory on a dataset: /nope/x.img"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"/srv/new.img\"}]",
         "[EINVAL] nvmet_namespace_create.filesize: Must supply filesize if device_path FILE does "
         "not exist."},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"zvol/tank/b\", \"nsid\": 0}]",
         "[EINVAL] nvmet_namespace_create.nsid: Input should be greater than or equal to 1"},
        {"nvmet.namespace.create",
         "[{\"subsys\": 1, \"device\": \"zvol/tank/b\", \"device_uuid\": \"xyz\"}]",
         "[EINVAL] nvmet_namespace_create.device_uuid: Value error, badly formed hexadecimal UUID "
         "string"},
        {"nvmet.namespace.update", "[1, {\"nsid\": 5}]",
         "[EINVAL] nvmet_namespace_update: Cannot change nsid on an active namespace.  Disable "
         "first to allow change."},
        {"nvmet.port.create", "[{\"addr_trtype\": \"XX\", \"addr_traddr\": \"1.2.3.4\"}]",
         "[EINVAL] nvmet_port_create: Input tag 'XX' found using 'addr_trtype' does not match any "
         "of the expected tags: 'TCP', 'RDMA', 'FC', 'LOOP'"},
        {"nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"\"}]",
         "[EINVAL] nvmet_port_create.TCP.addr_traddr: Value error, addr_traddr is required"},
        {"nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"1.2.3\"}]",
         "[EINVAL] nvmet_port_create.TCP.addr_traddr: Input should be '' or value is not a valid "
         "IPv4 or IPv6 address"},
        {"nvmet.port.create",
         "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"1.2.3.4\", \"addr_trsvcid\": 80}]",
         "[EINVAL] nvmet_port_create.TCP.addr_trsvcid: Input should be greater than or equal to "
         "1024"},
        {"nvmet.port.create",
         "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"1.2.3.4\", \"addr_trsvcid\": \"44x\"}]",
         "[EINVAL] nvmet_port_create.TCP.addr_trsvcid: Input should be a valid integer, unable to "
         "parse string as an integer"},
        {"nvmet.port.create",
         "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"1.2.3.4\", \"addr_adrfam\": \"IPV6\"}]",
         "[EINVAL] nvmet_port_create.addr_adrfam: addr_adrfam IPV6 does not match addr_traddr "
         "1.2.3.4 (IPV4)"},
        {"nvmet.port.create",
         "[{\"addr_trtype\": \"FC\", \"addr_traddr\": \"x\", "
         "\"addr_trsvcid\": 1}]",
         "[EINVAL] nvmet_port_create.FC.addr_trsvcid: Extra inputs are not permitted"},
        {"nvmet.port.update", "[1, {\"bogus\": 1}]",
         "[EINVAL] nvmet_port_update.NVMetPortUpdateRDMATCP.bogus: Extra inputs are not "
         "permitted"},
        {"nvmet.port.delete", "[1]",
         "[EINVAL] nvmet_port_delete.id: Port #1 used by 1 subsystem: " SUB},
        {"nvmet.host.create",
         "[{\"hostnqn\": \"nqn.2024-01.com.example:h2\", "
         "\"dhchap_ctrl_key\": \"DHHC-1:00:abc:\"}]",
         "[EINVAL] nvmet_host_create: Value error, Cannot configure bi-directional "
         "authentication without setting dhchap_key"},
        {"nvmet.host.create",
         "[{\"hostnqn\": \"nqn.2024-01.com.example:h2\", "
         "\"dhchap_hash\": \"MD5\"}]",
         "[EINVAL] nvmet_host_create.dhchap_hash: Input should be 'SHA-256', 'SHA-384' or "
         "'SHA-512'"},
        {"nvmet.host.create",
         "[{\"hostnqn\": \"nqn.2024-01.com.example:h2\", "
         "\"dhchap_dhgroup\": \"1024-BIT\"}]",
         "[EINVAL] nvmet_host_create.dhchap_dhgroup: Input should be '2048-BIT', '3072-BIT', "
         "'4096-BIT', '6144-BIT' or '8192-BIT'"},
        {"nvmet.host.delete", "[1]",
         "[EINVAL] nvmet_host_delete.id: Host " HOST " used by 1 subsystem: " SUB},
        {"nvmet.host_subsys.delete", "[5]", "[ENOENT] None: NVMetHostSubsys 5 does not exist"},
        {"nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]",
         "[EINVAL] nvmet_port_subsys_create.port_id: This record already exists (Host ID: "
         "1/Subsystem ID: 1)"},
        {"nvmet.global.update", "[{\"kernel\": false}]",
         "[EINVAL] nvmet_global_update.kernel: SPDK is limited to enterprise licensed systems "
         "only."},
        {"nvmet.global.update", "[{\"rdma\": true}]",
         "[EINVAL] nvmet_global_update.rdma: This platform cannot support NVMe-oF(RDMA) or is "
         "missing a RDMA capable NIC."},
        {"nvmet.port.create", "[{\"addr_trtype\": \"RDMA\", \"addr_traddr\": \"198.51.100.9\"}]",
         "[EINVAL] nvmet_port_create.addr_trtype: This platform cannot support NVMe-oF(RDMA) or "
         "is missing an RDMA capable NIC."},
    };
    char *before;
    size_t lb;
    assert_int_equal(sm_snapshot(s, &before, &lb), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err(s, cases[i].m, cases[i].j, cases[i].e);
    }
    sm_test_snapshot_is(s, before, lb);
    free(before);
    sm_free(s);
}

static void test_updates_and_deletes(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    setup_tree(s, NULL);
    /* disable, change, enable: the "disable first" path works */
    nv_free(ok(s, NULL, "nvmet.port.update", "[1, {\"enabled\": false}]"));
    struct nv *p = ok(s, NULL, "nvmet.port.update", "[1, {\"addr_trsvcid\": \"4421\"}]");
    assert_int_equal(nv_get_int(p, "addr_trsvcid", 0), 4421);
    nv_free(p);
    nv_free(ok(s, NULL, "nvmet.namespace.update", "[1, {\"enabled\": false}]"));
    nv_free(ok(s, NULL, "nvmet.namespace.update", "[1, {\"device_path\": \"zvol/tank/other\"}]"));
    /* FILE namespaces, nsid holes filled */
    struct nv *n = ok(s, NULL, "nvmet.namespace.create",
                      "[{\"subsys\": 1, \"device\": \"/srv/new.img\", \"filesize\": 1048576}]");
    assert_int_equal(nv_get_int(n, "nsid", 0), 2);
    assert_string_equal(nv_get_str(n, "device_type"), "FILE");
    nv_free(n);
    err(s, "nvmet.namespace.update", "[2, {\"filesize\": 1024}]",
        "[EINVAL] nvmet_namespace_update.filesize: Shrinking an namespace file is not allowed. "
        "This can lead to data loss.");
    n = ok(s, NULL, "nvmet.namespace.update", "[2, {\"filesize\": 2097152}]");
    assert_int_equal(nv_get_int(n, "filesize", 0), 2097152);
    nv_free(n);
    nv_free(ok(s, NULL, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device\": \"zvol/tank/c\", \"nsid\": 7}]"));
    nv_free(
        ok(s, NULL, "nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"zvol/tank/d\"}]"));
    err(s, "nvmet.subsys.delete", "[1]",
        "[EINVAL] nvmet_subsys_delete.id: Subsystem " SUB " contains 4 namespaces: 1,2,3,...");
    /* LOOP ports */
    p = ok(s, NULL, "nvmet.port.create", "[{\"addr_trtype\": \"LOOP\", \"addr_traddr\": \"1\"}]");
    assert_string_equal(nv_get_str(p, "addr_adrfam"), "LOOP");
    assert_true(nv_get_is_nil(p, "addr_trsvcid"));
    assert_int_equal(nv_get_int(p, "index", 0), 2);
    nv_free(p);
    /* host spellings */
    struct nv *h =
        ok(s, NULL, "nvmet.host.create",
           "[{\"hostnqn\": \"nqn.2024-01.com.example:h2\", \"dhchap_dhgroup\": \"NULL\", "
           "\"dhchap_hash\": \"SHA512\"}]");
    assert_true(nv_get_is_nil(h, "dhchap_dhgroup"));
    assert_string_equal(nv_get_str(h, "dhchap_hash"), "SHA-512");
    nv_free(h);
    /* force cascades; host links always go */
    nv_free(ok(s, NULL, "nvmet.subsys.delete", "[1, {\"force\": true}]"));
    assert_int_equal(sm_rows(s, SM_NAMESPACE), 0);
    assert_int_equal(sm_rows(s, SM_PORT_SUBSYS), 0);
    assert_int_equal(sm_rows(s, SM_HOST_SUBSYS), 0);
    nv_free(ok(s, NULL, "nvmet.host.delete", "[1]"));
    err(s, "nvmet.host.delete", "[1]", "[ENOENT] None: NVMetHost 1 does not exist");
    /* ids are never reused, not even the last one */
    struct nv *sub = ok(s, NULL, "nvmet.subsys.create", "[{\"name\": \"again\"}]");
    assert_int_equal(nv_get_int(sub, "id", 0), 2);
    nv_free(sub);
    sm_free(s);
}

/* namespace.delete {"remove": true} of a FILE namespace commits the
 * removal of its file (sm_removals) on every replica; a namespace that
 * claims the path again drops it; snapshots carry the list and a
 * snapshot without it restores with none. */
static void test_file_removals(void **state)
{
    (void)state;
    struct sm_state *s = sm_new(), *r = sm_new();
    setup_tree(s, r);
    nv_free(ok(s, r, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device\": \"/srv/a.img\", \"filesize\": 1048576}]"));
    nv_free(ok(s, r, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device\": \"/srv/b.img\", \"filesize\": 1048576}]"));
    assert_null(sm_removals(s));
    /* without remove, and a ZVOL with remove: nothing to remove */
    nv_free(ok(s, r, "nvmet.namespace.delete", "[3, {\"remove\": false}]"));
    nv_free(ok(s, r, "nvmet.namespace.update", "[1, {\"enabled\": false}]"));
    nv_free(ok(s, r, "nvmet.namespace.delete", "[1, {\"remove\": true}]"));
    assert_int_equal(nv_len(sm_removals(s)), 0);
    nv_free(ok(s, r, "nvmet.namespace.delete", "[2, {\"remove\": true}]"));
    for (int k = 0; k < 2; k++) {
        const struct nv *l = sm_removals(k == 0 ? s : r);
        assert_int_equal(nv_len(l), 1);
        assert_string_equal(nv_get_str(nv_at(l, 0), "path"), "/srv/a.img");
        assert_int_equal(nv_get_int(nv_at(l, 0), "namespace_id", 0), 2);
    }
    /* the snapshot keeps it */
    char *buf;
    size_t len;
    assert_int_equal(sm_snapshot(s, &buf, &len), 0);
    struct sm_state *c = sm_new();
    struct nv_err e;
    nv_err_init(&e);
    assert_int_equal(sm_restore(c, buf, len, &e), 0);
    free(buf);
    assert_int_equal(nv_len(sm_removals(c)), 1);
    /* a namespace on the path again: not to be removed any more */
    nv_free(ok(c, NULL, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device\": \"/srv/a.img\", \"filesize\": 1048576}]"));
    assert_int_equal(nv_len(sm_removals(c)), 0);
    /* an older snapshot (no "removals") restores with none */
    struct nv *d = NULL;
    assert_int_equal(sm_snapshot(s, &buf, &len), 0);
    size_t used = 0;
    d = nv_decode(buf, len, &used);
    free(buf);
    assert_non_null(d);
    nv_free(nv_take(d, "removals"));
    assert_int_equal(nv_encode(d, &buf, &len), 0);
    nv_free(d);
    assert_int_equal(sm_restore(c, buf, len, &e), 0);
    free(buf);
    assert_null(sm_removals(c));
    assert_int_equal(sm_rows(c, SM_SUBSYS), 1);
    assert_int_equal(sm_rows(c, SM_NAMESPACE), 0);
    nv_err_clear(&e);
    sm_free(c);
    sm_free(s);
    sm_free(r);
}

/* Two creates of one name prepared against the same state: the second
 * fails on apply with the message prepare would have given. */
static void test_race_rechecked_on_apply(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    struct nv *params = nv_from_json("[{\"name\": \"dup\"}]");
    struct nv_err e;
    nv_err_init(&e);
    struct nv *c1, *c2;
    assert_int_equal(sm_prepare(s, "nvmet.subsys.create", params, &env, &c1, &e), 0);
    assert_int_equal(sm_prepare(s, "nvmet.subsys.create", params, &env, &c2, &e), 0);
    char *b1, *b2;
    size_t l1, l2;
    sm_command_encode(c1, "client-a", 1, &b1, &l1);
    sm_command_encode(c2, "client-b", 1, &b2, &l2);
    struct sm_result *r1 = sm_apply(s, b1, l1), *r2 = sm_apply(s, b2, l2);
    assert_null(r1->err);
    assert_non_null(r2->err);
    char *reason = nv_err_reason(r2->err);
    assert_non_null(strstr(reason, "Object with this name already exists"));
    free(reason);
    /* the retry of client-a's write answers its first result, once */
    uint64_t gen = sm_generation(s);
    struct sm_result *r3 = sm_apply(s, b1, l1);
    assert_true(r3->duplicate);
    assert_true(nv_equal(r3->value, r1->value));
    assert_int_equal(sm_generation(s), gen);
    assert_int_equal(sm_rows(s, SM_SUBSYS), 1);
    /* ... also after a snapshot round trip */
    char *snap;
    size_t ls;
    sm_snapshot(s, &snap, &ls);
    struct sm_state *t = sm_new();
    assert_int_equal(sm_restore(t, snap, ls, &e), 0);
    struct sm_result *r4 = sm_apply(t, b1, l1);
    assert_true(r4->duplicate);
    assert_int_equal(sm_rows(t, SM_SUBSYS), 1);
    /* undecodable bytes: an error result, nothing changes */
    struct sm_result *r5 = sm_apply(t, "\xc1\x00junk", 6);
    assert_non_null(r5->err);
    assert_int_equal(sm_rows(t, SM_SUBSYS), 1);
    sm_result_free(r1);
    sm_result_free(r2);
    sm_result_free(r3);
    sm_result_free(r4);
    sm_result_free(r5);
    free(snap);
    free(b1);
    free(b2);
    nv_free(c1);
    nv_free(c2);
    nv_free(params);
    nv_err_clear(&e);
    sm_free(t);
    sm_free(s);
}

/* The session table is bounded: the oldest results are forgotten. */
/* config.save of a complete setup (with id gaps, a host key and two
 * ports) restores into an empty state and a replica as the same document;
 * a non-empty state refuses it; a document a create would refuse leaves
 * the state empty, naming the row. */
static void test_config_round_trip(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    setup_tree(s, NULL);
    nv_free(ok(s, NULL, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:gap\"}]"));
    nv_free(ok(s, NULL, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:keep\"}]"));
    nv_free(ok(s, NULL, "nvmet.subsys.delete", "[2]"));
    nv_free(ok(s, NULL, "nvmet.port.create",
               "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.20\"}]"));
    struct nv *doc = sm_config_save(s);
    assert_int_equal(nv_len(nv_get(doc, "subsys")), 2);
    assert_int_equal(nv_get_int(nv_at(nv_get(doc, "subsys"), 1), "id", 0), 3);

    char *json = nv_to_json(doc);
    char *params = malloc(strlen(json) + 3);
    sprintf(params, "[%s]", json);
    struct sm_state *r = sm_new(), *replica = sm_new();
    struct nv *sum = ok(r, replica, "config.restore", params);
    assert_int_equal(nv_get_int(sum, "subsys", 0), 2);
    assert_int_equal(nv_get_int(sum, "port_subsys", 0), 1);
    nv_free(sum);
    struct nv *back = sm_config_save(r), *back2 = sm_config_save(replica);
    if (!nv_equal(doc, back)) {
        char *a = nv_dump(doc), *b = nv_dump(back);
        fail_msg("saved:    %s\nrestored: %s", a, b);
    }
    assert_true(nv_equal(back, back2));
    /* the next create continues after the restored ids */
    struct nv *n =
        ok(r, NULL, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:new\"}]");
    assert_int_equal(nv_get_int(n, "id", 0), 4);
    nv_free(n);

    err(r, "config.restore", params,
        "[EEXIST] config_restore: the cluster holds 9 objects already: config.restore fills an "
        "empty cluster only (delete them first, or restore into a new cluster)");

    /* a host whose NQN no create accepts: nothing is restored */
    struct nv *bad = nv_copy(doc);
    struct nv *host = (struct nv *)nv_at(nv_get(bad, "host"), 0);
    nv_set_str(host, "hostnqn", "not an nqn");
    char *bj = nv_to_json(bad);
    char *bp = malloc(strlen(bj) + 3);
    sprintf(bp, "[%s]", bj);
    struct sm_state *e = sm_new();
    char msg[1024] = "";
    assert_null(run(e, NULL, "config.restore", bp, msg, sizeof msg));
    if (strstr(msg, "config_restore.host[0]") == NULL) {
        fail_msg("message: %s", msg);
    }
    assert_int_equal(sm_rows(e, SM_SUBSYS), 0);

    free(bp);
    free(bj);
    nv_free(bad);
    nv_free(back);
    nv_free(back2);
    free(params);
    free(json);
    nv_free(doc);
    sm_free(e);
    sm_free(replica);
    sm_free(r);
    sm_free(s);
}

/* An RDMA port needs an RDMA-capable leader, on create and on update; the
 * leader's answer travels in the command, so every replica agrees; a v1
 * entry logged before the check (nothing recorded) still replays; a v2
 * entry holds the checked row and applies without asking anyone. */
static void test_rdma_port(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    nv_free(ok(s, NULL, "nvmet.port.create",
               "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.8\"}]"));
    err(s, "nvmet.port.update", "[1, {\"addr_trtype\": \"RDMA\"}]",
        "[EINVAL] nvmet_port_update.addr_trtype: This platform cannot support NVMe-oF(RDMA) or "
        "is missing an RDMA capable NIC.");

    env.rdma_capable = true;
    struct sm_state *r = sm_new();
    struct nv *params =
        nv_from_json("[{\"addr_trtype\": \"RDMA\", \"addr_traddr\": \"198.51.100.9\"}]");
    struct nv *cmd = NULL;
    struct nv_err e;
    nv_err_init(&e);
    struct nv *cmd2 = NULL;
    assert_int_equal(sm_prepare(r, "nvmet.port.create", params, &env, &cmd2, &e), 0);
    assert_int_equal(nv_get_int(cmd2, "v", 0), 2);
    assert_int_equal(sm__prepare_version(r, "nvmet.port.create", params, &env, 1, &cmd, &e), 0);
    env.rdma_capable = false;
    struct sm_state *r4 = sm_new();
    struct sm_result *res2 = sm_test_apply(r4, cmd2);
    assert_null(res2->err);
    assert_string_equal(nv_get_str(res2->value, "addr_trtype"), "RDMA");
    sm_result_free(res2);
    sm_free(r4);
    nv_free(cmd2);
    struct nv *d = (struct nv *)nv_get(cmd, "d");
    assert_true(nv_get_bool(d, "#rdma", false));

    /* recorded capable: applies on a replica that is not capable itself */
    struct sm_state *r2 = sm_new();
    struct sm_result *res = sm_test_apply(r2, cmd);
    assert_null(res->err);
    sm_result_free(res);

    /* logged before the check (nothing recorded): replays */
    nv_del(d, "#rdma");
    res = sm_test_apply(r, cmd);
    assert_null(res->err);
    assert_string_equal(nv_get_str(res->value, "addr_trtype"), "RDMA");
    sm_result_free(res);

    /* recorded not capable: refused on apply as on the leader */
    struct sm_state *r3 = sm_new();
    nv_set_bool(d, "#rdma", false);
    res = sm_test_apply(r3, cmd);
    assert_non_null(res->err);
    assert_int_equal(sm_rows(r3, SM_PORT), 0);
    sm_result_free(res);

    nv_free(cmd);
    nv_free(params);
    nv_err_clear(&e);
    sm_free(r3);
    sm_free(r2);
    sm_free(r);
    sm_free(s);
}

static void test_session_bound(void **state)
{
    (void)state;
    struct sm_state *s = sm_new();
    struct nv_err e;
    nv_err_init(&e);
    for (int i = 0; i < 5000; i++) {
        char js[64];
        snprintf(js, sizeof js, "[{\"name\": \"s%d\"}]", i);
        struct nv *params = nv_from_json(js), *c;
        assert_int_equal(sm_prepare(s, "nvmet.subsys.create", params, &env, &c, &e), 0);
        char *b;
        size_t l;
        sm_command_encode(c, "bulk", i, &b, &l);
        sm_result_free(sm_apply(s, b, l));
        if (i == 0 || i == 4999) {
            struct sm_result *again = sm_apply(s, b, l);
            assert_true(again->duplicate);
            sm_result_free(again);
        }
        free(b);
        nv_free(c);
        nv_free(params);
    }
    assert_int_equal(sm_rows(s, SM_SUBSYS), 5000);
    nv_err_clear(&e);
    sm_free(s);
}

/* Cluster facts: registry, active node with terms, failover settings. */
static void test_cluster_facts(void **state)
{
    (void)state;
    struct sm_state *s = sm_new(), *r = sm_new();
    nv_free(ok(s, r, "cluster.node.register",
               "[{\"id\": 2, \"kind\": \"data\", \"raft\": \"127.0.0.1:7002\", \"rpc\": "
               "\"127.0.0.1:8002\"}]"));
    nv_free(ok(s, r, "cluster.node.register",
               "[{\"id\": 1, \"kind\": \"witness\", \"raft\": \"127.0.0.1:7001\"}]"));
    err(s, "cluster.node.register",
        "[{\"id\": 3, \"kind\": \"data\", \"raft\": \"127.0.0.1:7001\"}]",
        "[EINVAL] cluster_node_register.raft: Raft address 127.0.0.1:7001 already belongs to node "
        "1");
    const struct nv *nodes = nv_get(sm_cluster(s), "nodes");
    assert_int_equal(nv_len(nodes), 2);
    assert_int_equal(nv_get_int(nv_at(nodes, 0), "id", 0), 1);
    assert_string_equal(nv_get_str(sm_cluster_node(s, 2), "rpc"), "127.0.0.1:8002");
    nv_free(ok(s, r, "failover.activate", "[{\"node\": 2, \"term\": 5}]"));
    err(s, "failover.activate", "[{\"node\": 1, \"term\": 4}]",
        "[EINVAL] term 4 is older than the active node's term 5");
    uint64_t term;
    assert_int_equal(sm_active_node(s, &term), 2);
    assert_int_equal(term, 5);
    struct nv *f = ok(s, r, "failover.update",
                      "[{\"takeover_delay_ms\": 500, \"vips\": [{\"address\": \"198.51.100.100\", "
                      "\"prefix\": 24, \"interface\": \"eth0\", \"node_addresses\": {\"1\": "
                      "\"198.51.100.1\", \"2\": \"198.51.100.2\"}}]}]");
    assert_int_equal(nv_get_int(f, "takeover_delay_ms", 0), 500);
    assert_int_equal(nv_get_int(f, "announce_count", 0), 3);
    nv_free(f);
    err(s, "failover.update",
        "[{\"vips\": [{\"address\": \"198.51.100.100\", \"prefix\": 33, "
        "\"interface\": \"eth0\"}]}]",
        "[EINVAL] failover_update.vips.0.prefix: Input should be less than or equal to 32");
    char *a;
    size_t la;
    assert_int_equal(sm_snapshot(s, &a, &la), 0);
    sm_test_snapshot_is(r, a, la);
    struct sm_state *c = sm_new();
    struct nv_err e;
    nv_err_init(&e);
    assert_int_equal(sm_restore(c, a, la, &e), 0);
    assert_int_equal(sm_active_node(c, NULL), 2);
    free(a);
    sm_free(c);
    sm_free(s);
    sm_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_setup_entries),
        cmocka_unit_test(test_validation_messages),
        cmocka_unit_test(test_restore_id_limits),
        cmocka_unit_test(test_restore_row_shapes),
        cmocka_unit_test(test_updates_and_deletes),
        cmocka_unit_test(test_race_rechecked_on_apply),
        cmocka_unit_test(test_session_bound),
        cmocka_unit_test(test_rdma_port),
        cmocka_unit_test(test_config_round_trip),
        cmocka_unit_test(test_cluster_facts),
        cmocka_unit_test(test_file_removals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
