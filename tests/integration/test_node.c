/* Integration tests of one nvmetd (a one-member Raft cluster on loopback,
 * emulated configfs) driven by the real nvmetctl and rpc client: the
 * complete setup (README "A complete setup") checked file by file, the
 * example calls, deletes, restart persistence, kill -9 during pipelined
 * creates. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"

#define SUBNQN "nqn.2024-01.com.example:nvme:subsys1"
#define HOSTNQN "nqn.2024-01.com.example:host:server1"

struct fx {
    char base[256];
    struct h_node n;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    h_tmpdir(f->base, sizeof f->base);
    h_node_init(&f->n, f->base, 1);
    if (h_node_start(&f->n, NULL) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    h_node_kill(&f->n, SIGTERM);
    int rc = h_node_wait(&f->n);
    if (rc != 0) {
        fprintf(stderr, "nvmetd exited with %d\n", rc);
        h_node_print_log(&f->n);
    }
    h_rmrf(f->base);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* nvmetctl call that must succeed; returns stdout parsed as JSON, or as a
 * string when it is not JSON (nvmetctl prints strings bare). */
/* The host has an RDMA device (an entry in /sys/class/infiniband). */
static bool host_has_rdma(void)
{
    DIR *d = opendir("/sys/class/infiniband");
    bool any = false;
    struct dirent *e;
    while (d != NULL && !any && (e = readdir(d)) != NULL) {
        any = e->d_name[0] != '.';
    }
    if (d != NULL) {
        closedir(d);
    }
    return any;
}

static struct nv *ok_call(const struct h_node *n, const char *method, const char *a1,
                          const char *a2)
{
    struct h_out o;
    h_ctl(n, &o, method, a1, a2, (char *)NULL);
    if (o.code != 0) {
        fprintf(stderr, "nvmetctl call %s %s %s failed (%d): %s%s\n", method, a1 ? a1 : "",
                a2 ? a2 : "", o.code, o.out, o.err);
    }
    assert_int_equal(o.code, 0);
    size_t l = strlen(o.out);
    while (l > 0 && o.out[l - 1] == '\n') {
        o.out[--l] = '\0';
    }
    struct nv *v = nv_from_json(o.out);
    if (v == NULL) {
        v = nv_str(o.out);
    }
    h_out_free(&o);
    return v;
}

/* nvmetctl call that must fail with exactly this first stderr line. */
static void err_call(const struct h_node *n, const char *expect, const char *method,
                     const char *a1, const char *a2)
{
    struct h_out o;
    h_ctl(n, &o, method, a1, a2, (char *)NULL);
    char *nl = strchr(o.err, '\n');
    if (nl != NULL) {
        *nl = '\0';
    }
    if (o.code != 1 || strcmp(o.err, expect) != 0) {
        fprintf(stderr, "call %s %s %s\n  expected: %s\n  got (%d): %s\n", method, a1 ? a1 : "",
                a2 ? a2 : "", expect, o.code, o.err);
    }
    assert_int_equal(o.code, 1);
    assert_string_equal(o.err, expect);
    h_out_free(&o);
}

static void expect_file(const char *root, const char *rel, const char *value)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/nvmet/%s", root, rel);
    char *v = h_read(p);
    if (v == NULL) {
        fprintf(stderr, "missing %s\n", p);
    }
    assert_non_null(v);
    /* attr_serial reads back space padded: compare trimmed */
    size_t l = strlen(v);
    while (l > 0 && v[l - 1] == ' ') {
        v[--l] = '\0';
    }
    if (strcmp(v, value) != 0) {
        fprintf(stderr, "%s: expected '%s', got '%s'\n", p, value, v);
    }
    assert_string_equal(v, value);
    free(v);
}

static void expect_link(const char *root, const char *rel, const char *target_rel)
{
    char p[1024], t[1024], want[1024];
    snprintf(p, sizeof p, "%s/nvmet/%s", root, rel);
    ssize_t l = readlink(p, t, sizeof t - 1);
    if (l < 0) {
        fprintf(stderr, "missing link %s\n", p);
    }
    assert_true(l > 0);
    t[l] = '\0';
    snprintf(want, sizeof want, "%s/nvmet/%s", root, target_rel);
    assert_string_equal(t, want);
}

static int count_entries(const char *root, const char *rel)
{
    char p[1024], cmd[1100];
    snprintf(p, sizeof p, "%s/nvmet/%s", root, rel);
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", p);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (fscanf(f, "%d", &n) != 1) {
        n = -1;
    }
    pclose(f);
    return n;
}

/* README "A complete setup", in its order, through nvmetctl. */
static void complete_setup(const struct h_node *n)
{
    nv_free(ok_call(n, "nvmet.subsys.create",
                    "{\"name\": \"" SUBNQN "\", \"serial\": \"TRUENAS001\"}", NULL));
    nv_free(ok_call(n, "nvmet.namespace.create",
                    "{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\", \"device_nguid\": null, "
                    "\"device_uuid\": null, \"enabled\": true}",
                    NULL));
    nv_free(ok_call(n, "nvmet.port.create",
                    "{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"0.0.0.0\", \"addr_trsvcid\": "
                    "\"4420\", \"addr_adrfam\": \"IPV4\"}",
                    NULL));
    nv_free(ok_call(n, "nvmet.port_subsys.create", "{\"port\": 1, \"subsys\": 1}", NULL));
    nv_free(ok_call(n, "nvmet.host.create", "{\"hostnqn\": \"" HOSTNQN "\"}", NULL));
    nv_free(ok_call(n, "nvmet.host_subsys.create", "{\"host\": 1, \"subsys\": 1}", NULL));
    struct nv *g = ok_call(n, "nvmet.global.update", "{\"enabled\": true}", NULL);
    assert_true(nv_get_bool(g, "enabled", false));
    nv_free(g);
}

/* The complete setup leaves exactly the expected configfs tree, file by file. */
static void test_complete_setup_tree(void **state)
{
    struct fx *f = *state;
    const char *root = f->n.configfs;
    complete_setup(&f->n);
    /* the reply comes after this node rendered: no wait needed */
    struct nv *ns = ok_call(&f->n, "nvmet.namespace.get_instance", "1", NULL);
    const char *uuid = nv_get_str(ns, "device_uuid");
    const char *nguid = nv_get_str(ns, "device_nguid");
    assert_non_null(uuid);
    assert_non_null(nguid);

    assert_int_equal(count_entries(root, "subsystems"), 1);
    assert_int_equal(count_entries(root, "ports"), 1);
    assert_int_equal(count_entries(root, "hosts"), 1);
    expect_file(root, "subsystems/" SUBNQN "/attr_serial", "TRUENAS001");
    expect_file(root, "subsystems/" SUBNQN "/attr_allow_any_host", "0");
    expect_file(root, "subsystems/" SUBNQN "/attr_pi_enable", "0");
    expect_file(root, "subsystems/" SUBNQN "/attr_model", "nvmet-ha");
    expect_file(root, "subsystems/" SUBNQN "/attr_firmware", NVMET_HA_VERSION);
    expect_file(root, "subsystems/" SUBNQN "/namespaces/1/device_path", "/dev/zvol/tank/nvme/ns1");
    expect_file(root, "subsystems/" SUBNQN "/namespaces/1/device_uuid", uuid);
    expect_file(root, "subsystems/" SUBNQN "/namespaces/1/device_nguid", nguid);
    expect_file(root, "subsystems/" SUBNQN "/namespaces/1/buffered_io", "0");
    expect_file(root, "subsystems/" SUBNQN "/namespaces/1/ana_grpid", "1");
    expect_file(root, "subsystems/" SUBNQN "/namespaces/1/enable", "1");
    assert_int_equal(count_entries(root, "subsystems/" SUBNQN "/namespaces"), 1);
    expect_link(root, "subsystems/" SUBNQN "/allowed_hosts/" HOSTNQN, "hosts/" HOSTNQN);
    assert_int_equal(count_entries(root, "subsystems/" SUBNQN "/allowed_hosts"), 1);
    expect_file(root, "ports/1/addr_trtype", "tcp");
    expect_file(root, "ports/1/addr_trsvcid", "4420");
    expect_file(root, "ports/1/addr_traddr", "0.0.0.0");
    expect_file(root, "ports/1/addr_adrfam", "ipv4");
    expect_file(root, "ports/1/param_pi_enable", "0");
    expect_file(root, "ports/1/ana_groups/1/ana_state", "optimized");
    expect_link(root, "ports/1/subsystems/" SUBNQN, "subsystems/" SUBNQN);
    assert_int_equal(count_entries(root, "ports/1/subsystems"), 1);
    assert_int_equal(count_entries(root, "ports/1/referrals"), 0);
    expect_file(root, "hosts/" HOSTNQN "/dhchap_hash", "hmac(sha256)");
    expect_file(root, "hosts/" HOSTNQN "/dhchap_dhgroup", "null");
    expect_file(root, "hosts/" HOSTNQN "/dhchap_key", "");
    nv_free(ns);

    /* global.enabled=false removes our tree, true renders it again */
    nv_free(ok_call(&f->n, "nvmet.global.update", "{\"enabled\": false}", NULL));
    assert_int_equal(count_entries(root, "subsystems"), 0);
    assert_int_equal(count_entries(root, "ports"), 0);
    assert_int_equal(count_entries(root, "hosts"), 0);
    nv_free(ok_call(&f->n, "nvmet.global.update", "{\"enabled\": true}", NULL));
    expect_file(root, "subsystems/" SUBNQN "/namespaces/1/enable", "1");
    expect_link(root, "ports/1/subsystems/" SUBNQN, "subsystems/" SUBNQN);
}

/* Every example call (TrueNAS's and the short spellings) works verbatim and
 * answers in TrueNAS's shapes. */
static void test_brief_examples(void **state)
{
    struct fx *f = *state;
    const struct h_node *n = &f->n;
    struct nv *g = ok_call(n, "nvmet.global.config", NULL, NULL);
    assert_int_equal(nv_get_int(g, "id", 0), 1);
    assert_non_null(nv_get_str(g, "basenqn"));
    assert_false(nv_get_bool(g, "enabled", true));
    nv_free(g);
    nv_free(ok_call(n, "nvmet.global.update", "{\"enabled\": true}", NULL));
    struct nv *q = ok_call(n, "nvmet.subsys.query", NULL, NULL);
    assert_int_equal(nv_len(q), 0);
    nv_free(q);
    struct nv *s = ok_call(n, "nvmet.subsys.create",
                           "{\"name\": \"" SUBNQN "\", \"serial\": \"TRUENAS001\"}", NULL);
    assert_int_equal(nv_get_int(s, "id", 0), 1);
    assert_string_equal(nv_get_str(s, "subnqn"), SUBNQN);
    assert_string_equal(nv_get_str(s, "serial"), "TRUENAS001");
    nv_free(s);
    s = ok_call(n, "nvmet.subsys.update", "1", "{\"serial\": \"TRUENAS002\"}");
    assert_string_equal(nv_get_str(s, "serial"), "TRUENAS002");
    nv_free(s);
    expect_file(f->n.configfs, "subsystems/" SUBNQN "/attr_serial", "TRUENAS002");
    struct nv *ns = ok_call(n, "nvmet.namespace.create",
                            "{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\", \"device_nguid\": "
                            "null, \"device_uuid\": null, \"enabled\": true}",
                            NULL);
    assert_int_equal(nv_get_int(ns, "nsid", 0), 1);
    assert_string_equal(nv_get_str(ns, "device_type"), "ZVOL");
    assert_string_equal(nv_get_str(ns, "device_path"), "zvol/tank/nvme/ns1");
    assert_string_equal(nv_get_str(nv_get(ns, "subsys"), "subnqn"), SUBNQN);
    nv_free(ns);
    ns = ok_call(n, "nvmet.namespace.update", "1", "{\"enabled\": false}");
    assert_false(nv_get_bool(ns, "enabled", true));
    nv_free(ns);
    expect_file(f->n.configfs, "subsystems/" SUBNQN "/namespaces/1/enable", "0");
    struct nv *p = ok_call(n, "nvmet.port.create",
                           "{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"192.168.1.10\", "
                           "\"addr_trsvcid\": \"4420\", \"addr_adrfam\": \"IPV4\"}",
                           NULL);
    assert_int_equal(nv_get_int(p, "addr_trsvcid", 0), 4420);
    assert_int_equal(nv_get_int(p, "index", 0), 1);
    nv_free(p);
    /* an RDMA port only where the host has an RDMA device (TrueNAS's rule;
     * nvmetd looks in /sys/class/infiniband) */
    const char *rdma = "{\"addr_trtype\": \"RDMA\", \"addr_traddr\": \"192.168.1.10\", "
                       "\"addr_trsvcid\": \"4420\", \"addr_adrfam\": \"IPV4\"}";
    if (host_has_rdma()) {
        p = ok_call(n, "nvmet.port.create", rdma, NULL);
        assert_string_equal(nv_get_str(p, "addr_trtype"), "RDMA");
        nv_free(p);
    } else {
        err_call(n,
                 "[EINVAL] nvmet_port_create.addr_trtype: This platform cannot support "
                 "NVMe-oF(RDMA) or is missing an RDMA capable NIC.",
                 "nvmet.port.create", rdma, NULL);
        err_call(n,
                 "[EINVAL] nvmet_port_update.addr_trtype: This platform cannot support "
                 "NVMe-oF(RDMA) or is missing an RDMA capable NIC.",
                 "nvmet.port.update", "1", "{\"addr_trtype\": \"RDMA\"}");
        /* port 2, as the RDMA one would have been */
        nv_free(ok_call(n, "nvmet.port.create",
                        "{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"192.168.1.11\"}", NULL));
    }
    p = ok_call(n, "nvmet.port.update", "1", "{\"addr_trsvcid\": \"4421\"}");
    assert_int_equal(nv_get_int(p, "addr_trsvcid", 0), 4421);
    nv_free(p);
    expect_file(f->n.configfs, "ports/1/addr_trsvcid", "4421");
    struct nv *c = ok_call(n, "nvmet.port.transport_address_choices", NULL, NULL);
    assert_true(nv_is(c, NV_MAP) || nv_is(c, NV_NIL));
    nv_free(c);
    c = ok_call(n, "nvmet.port.transport_address_choices", "TCP", NULL);
    assert_true(nv_is(c, NV_MAP));
    nv_free(c);
    nv_free(ok_call(n, "nvmet.port_subsys.create", "{\"port\": 1, \"subsys\": 1}", NULL));
    nv_free(ok_call(n, "nvmet.host.create", "{\"hostnqn\": \"" HOSTNQN "\"}", NULL));
    struct nv *key = ok_call(n, "nvmet.host.generate_key", NULL, NULL);
    assert_true(nv_is(key, NV_STR));
    assert_int_equal(strncmp(key->u.s.p, "DHHC-1:01:", 10), 0);
    assert_int_equal(nv_len(key), 59);
    char arg[512];
    snprintf(arg, sizeof arg,
             "{\"hostnqn\": \"nqn.2024-01.com.example:host:server2\", \"dhchap_key\": \"%s\", "
             "\"dhchap_dhgroup\": \"NULL\", \"dhchap_hash\": \"SHA256\"}",
             key->u.s.p);
    struct nv *h = ok_call(n, "nvmet.host.create", arg, NULL);
    assert_true(nv_get_is_nil(h, "dhchap_dhgroup"));
    assert_string_equal(nv_get_str(h, "dhchap_hash"), "SHA-256");
    assert_string_equal(nv_get_str(h, "dhchap_key"), key->u.s.p);
    nv_free(h);
    nv_free(key);
    key = ok_call(n, "nvmet.host.generate_key", "SHA-512", "nqn.2024-01.com.example:host:server2");
    assert_int_equal(strncmp(key->u.s.p, "DHHC-1:03:", 10), 0);
    assert_int_equal(nv_len(key), 103);
    snprintf(arg, sizeof arg, "{\"dhchap_key\": \"%s\"}", key->u.s.p);
    h = ok_call(n, "nvmet.host.update", "2", arg);
    assert_string_equal(nv_get_str(h, "dhchap_key"), key->u.s.p);
    nv_free(h);
    nv_free(key);
    expect_file(f->n.configfs, "hosts/nqn.2024-01.com.example:host:server2/dhchap_hash",
                "hmac(sha256)");
    c = ok_call(n, "nvmet.host.dhchap_dhgroup_choices", NULL, NULL);
    char *js = nv_to_json(c);
    assert_string_equal(js, "[\"2048-BIT\",\"3072-BIT\",\"4096-BIT\",\"6144-BIT\",\"8192-BIT\"]");
    free(js);
    nv_free(c);
    c = ok_call(n, "nvmet.host.dhchap_hash_choices", NULL, NULL);
    js = nv_to_json(c);
    assert_string_equal(js, "[\"SHA-256\",\"SHA-384\",\"SHA-512\"]");
    free(js);
    nv_free(c);
    nv_free(ok_call(n, "nvmet.host_subsys.create", "{\"host\": 1, \"subsys\": 1}", NULL));

    /* queries and get_instance of every service, with filters and options */
    const char *svc[] = {"subsys", "namespace", "port", "port_subsys", "host", "host_subsys"};
    for (size_t i = 0; i < 6; i++) {
        char m[64];
        snprintf(m, sizeof m, "nvmet.%s.query", svc[i]);
        struct nv *all = ok_call(n, m, NULL, NULL);
        assert_true(nv_len(all) >= 1);
        nv_free(all);
        struct nv *cnt = ok_call(n, m, "[[\"id\", \"=\", 1]]", "{\"count\": true}");
        assert_int_equal(cnt->u.i, 1);
        nv_free(cnt);
        snprintf(m, sizeof m, "nvmet.%s.get_instance", svc[i]);
        struct nv *one = ok_call(n, m, "1", NULL);
        assert_int_equal(nv_get_int(one, "id", 0), 1);
        nv_free(one);
    }
    struct nv *sel = ok_call(n, "nvmet.namespace.query", "[[\"subsys.name\", \"^\", \"nqn.\"]]",
                             "{\"select\": [\"id\", [\"subsys.id\", \"sid\"]], \"get\": true}");
    js = nv_to_json(sel);
    assert_string_equal(js, "{\"id\":1,\"sid\":1}");
    free(js);
    nv_free(sel);
    struct nv *v = ok_call(n, "nvmet.subsys.query", "[]", "{\"extra\": {\"verbose\": true}}");
    js = nv_to_json(nv_get(nv_at(v, 0), "hosts"));
    assert_string_equal(js, "[1]");
    free(js);
    nv_free(v);
    struct nv *sess = ok_call(n, "nvmet.global.sessions", NULL, NULL);
    assert_int_equal(nv_len(sess), 0);
    nv_free(sess);

    /* deletes of every service */
    struct nv *t = ok_call(n, "nvmet.host_subsys.delete", "1", NULL);
    assert_true(nv_is(t, NV_BOOL) && t->u.b);
    nv_free(t);
    t = ok_call(n, "nvmet.port_subsys.delete", "1", NULL);
    assert_true(nv_is(t, NV_BOOL) && t->u.b);
    nv_free(t);
    nv_free(ok_call(n, "nvmet.namespace.delete", "1", NULL));
    nv_free(ok_call(n, "nvmet.subsys.delete", "1", NULL));
    nv_free(ok_call(n, "nvmet.port.delete", "1", NULL));
    nv_free(ok_call(n, "nvmet.port.delete", "2", NULL));
    nv_free(ok_call(n, "nvmet.host.delete", "1", NULL));
    nv_free(ok_call(n, "nvmet.host.delete", "2", NULL));
    assert_int_equal(count_entries(f->n.configfs, "subsystems"), 0);
    assert_int_equal(count_entries(f->n.configfs, "ports"), 0);
    assert_int_equal(count_entries(f->n.configfs, "hosts"), 0);
}

/* Validation errors print as "[ERRNAME] attribute: message" with the
 * TrueNAS's exact attributes and messages, and change nothing. */
static void test_validation_errors(void **state)
{
    struct fx *f = *state;
    const struct h_node *n = &f->n;
    complete_setup(n);
    char dir[600], arg[900];
    snprintf(dir, sizeof dir, "%s/files", n->devroot);
    mkdir(dir, 0755);

    static const struct {
        const char *method, *a1, *a2, *expect;
    } cases[] = {
        {"nvmet.subsys.create", "{\"name\": \"" SUBNQN "\"}", NULL,
         "[EINVAL] nvmet_subsys_create.name: Object with this name already exists"},
        {"nvmet.subsys.create", "{}", NULL, "[EINVAL] nvmet_subsys_create.name: Field required"},
        {"nvmet.subsys.create", "{\"name\": \"\"}", NULL,
         "[EINVAL] nvmet_subsys_create.name: String should have at least 1 character"},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"bogus\": 1}", NULL,
         "[EINVAL] nvmet_subsys_create.bogus: Extra inputs are not permitted"},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"allow_any_host\": 1}", NULL,
         "[EINVAL] nvmet_subsys_create.allow_any_host: Input should be a valid boolean"},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"qid_max\": \"5\"}", NULL,
         "[EINVAL] nvmet_subsys_create.qid_max: Input should be a valid integer"},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"subnqn\": \"foobarbazqux\"}", NULL,
         "[EINVAL] nvmet_subsys_create.subnqn: Value error, foobarbazqux: must start with "
         "\"nqn\""},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"subnqn\": \"nqn.2024-01\"}", NULL,
         "[EINVAL] nvmet_subsys_create.subnqn: Value error, nqn.2024-01: must start with "
         "\"nqn.YYYY-MM.<reverse.domain>\""},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"subnqn\": \"nqn.2024-01.\"}", NULL,
         "[EINVAL] nvmet_subsys_create.subnqn: Value error, nqn.2024-01.: must start with "
         "\"nqn.YYYY-MM.<reverse.domain>\" - domain missing"},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"subnqn\": \"nqn.2024-01.-bad.com:x\"}", NULL,
         "[EINVAL] nvmet_subsys_create.subnqn: Value error, nqn.2024-01.-bad.com:x: domain does "
         "not appear to be valid"},
        {"nvmet.subsys.create",
         "{\"name\": \"x\", \"subnqn\": \"nqn.2014-08.org.nvmexpress:uuid:1234\"}", NULL,
         "[EINVAL] nvmet_subsys_create.subnqn: Value error, "
         "nqn.2014-08.org.nvmexpress:uuid:1234: uuid is incorrect length"},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"subnqn\": \"nqn.short\"}", NULL,
         "[EINVAL] nvmet_subsys_create.subnqn: String should have at least 11 characters"},
        {"nvmet.subsys.create", "{\"name\": \"x\", \"ana\": true}", NULL,
         "[EINVAL] nvmet_subsys_create.ana: This platform does not support Asymmetric Namespace "
         "Access(ANA)."},
        {"nvmet.subsys.update", "99", "{}", "[ENOENT] ALL: NVMetSubsys 99 does not exist"},
        {"nvmet.subsys.get_instance", "99", NULL, "[ENOENT] ALL: NVMetSubsys 99 does not exist"},
        {"nvmet.subsys.delete", "1", NULL,
         "[EINVAL] nvmet_subsys_delete.id: Subsystem " SUBNQN " contains 1 namespace: 1"},
        {"nvmet.namespace.create",
         "{\"subsys_id\": 99, \"device_type\": \"ZVOL\", \"device_path\": \"zvol/tank/nvme/ns2\"}",
         NULL, "[EINVAL] nvmet_namespace_create.subsys_id: No subsystem with ID 99"},
        {"nvmet.namespace.create",
         "{\"subsys_id\": 1, \"device_type\": \"ZVOL\", \"device_path\": \"tank/x\"}", NULL,
         "[EINVAL] nvmet_namespace_create.device_path: ZVOL device_path must start with "
         "\"zvol/\": tank/x"},
        {"nvmet.namespace.create",
         "{\"subsys_id\": 1, \"device_type\": \"ZVOL\", \"device_path\": \"zvol/tank/missing\"}",
         NULL,
         "[EINVAL] nvmet_namespace_create.device_path: ZVOL device_path must be a block device: "
         "zvol/tank/missing"},
        {"nvmet.namespace.create",
         "{\"subsys_id\": 1, \"device_type\": \"ZVOL\", \"device_path\": \"zvol/tank/nvme/ns1\"}",
         NULL,
         "[EINVAL] nvmet_namespace_create.device_path: This device_path already used by "
         "subsystem: " SUBNQN},
        {"nvmet.namespace.create",
         "{\"subsys_id\": 1, \"nsid\": 1, \"device_type\": \"ZVOL\", \"device_path\": "
         "\"zvol/tank/nvme/ns2\"}",
         NULL,
         "[EINVAL] nvmet_namespace_create.nsid: This record already exists (Subsystem ID: "
         "1/NSID: 1)"},
        {"nvmet.namespace.create",
         "{\"subsys_id\": 1, \"device_type\": \"ZVOL\", \"device_path\": \"zvol/tank/nvme/ns2\", "
         "\"enabled\": \"yes\"}",
         NULL, "[EINVAL] nvmet_namespace_create.enabled: Input should be a valid boolean"},
        {"nvmet.namespace.update", "1", "{\"device_path\": \"zvol/tank/nvme/ns2\"}",
         "[EINVAL] nvmet_namespace_update: Cannot change device_path on an active namespace.  "
         "Disable first to allow change."},
        {"nvmet.namespace.update", "99", "{\"enabled\": false}",
         "[ENOENT] ALL: NVMetNamespace 99 does not exist"},
        {"nvmet.port.create",
         "{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"0.0.0.0\", \"addr_trsvcid\": 4420}", NULL,
         "[EINVAL] nvmet_port_create.addr_traddr: There already is a port using the same "
         "transport and address"},
        {"nvmet.port.create", "{\"addr_traddr\": \"0.0.0.0\"}", NULL,
         "[EINVAL] nvmet_port_create.addr_trtype: Field required"},
        {"nvmet.port.update", "1", "{\"addr_trsvcid\": 4421}",
         "[EINVAL] nvmet_port_update.addr_trsvcid: Cannot change addr_trsvcid on an active port. "
         " Disable first to allow change."},
        {"nvmet.port.delete", "1", NULL,
         "[EINVAL] nvmet_port_delete.id: Port #1 used by 1 subsystem: " SUBNQN},
        {"nvmet.port.get_instance", "7", NULL, "[ENOENT] ALL: NVMetPort 7 does not exist"},
        {"nvmet.host.create", "{\"hostnqn\": \"" HOSTNQN "\"}", NULL,
         "[EINVAL] nvmet_host_create.hostnqn: Object with this hostnqn already exists"},
        {"nvmet.host.create",
         "{\"hostnqn\": \"nqn.2024-01.com.example:h2\", \"dhchap_key\": \"DHHC-1:01:AAAA:\"}",
         NULL, "[EINVAL] nvmet_host_create.dhchap_key: Expected key length of 32"},
        {"nvmet.host.create",
         "{\"hostnqn\": \"nqn.2024-01.com.example:h2\", \"dhchap_key\": \"foo\"}", NULL,
         "[EINVAL] nvmet_host_create.dhchap_key: Unexpected key format. Use \"nvme "
         "gen-dhchap-key\" to generate."},
        {"nvmet.host.create",
         "{\"hostnqn\": \"nqn.2024-01.com.example:h2\", \"dhchap_key\": \"DHHC-1:00:abc\"}", NULL,
         "[EINVAL] nvmet_host_create.dhchap_key: Unexpected key termination. Use \"nvme "
         "gen-dhchap-key\" to generate."},
        {"nvmet.host.delete", "1", NULL,
         "[EINVAL] nvmet_host_delete.id: Host " HOSTNQN " used by 1 subsystem: " SUBNQN},
        {"nvmet.host_subsys.create", "{\"host_id\": 1, \"subsys_id\": 1}", NULL,
         "[EINVAL] nvmet_host_subsys_create.host_id: This record already exists (Host ID: "
         "1/Subsystem ID: 1)"},
        {"nvmet.host_subsys.create", "{\"host_id\": 99, \"subsys_id\": 1}", NULL,
         "[EINVAL] nvmet_host_subsys_create.host_id: No host with ID 99"},
        {"nvmet.port_subsys.create", "{\"port_id\": 1, \"subsys_id\": 1}", NULL,
         "[EINVAL] nvmet_port_subsys_create.port_id: This record already exists (Host ID: "
         "1/Subsystem ID: 1)"},
        {"nvmet.port_subsys.create", "{\"port_id\": 99, \"subsys_id\": 1}", NULL,
         "[EINVAL] nvmet_port_subsys_create.port_id: No port with ID 99"},
        {"nvmet.port_subsys.create", "{\"port_id\": 1, \"subsys_id\": 42}", NULL,
         "[EINVAL] nvmet_port_subsys_create.subsys_id: No subsystem with ID 42"},
        {"nvmet.global.update", "{\"ana\": true}", NULL,
         "[EINVAL] nvmet_global_update.ana: This platform does not support Asymmetric Namespace "
         "Access(ANA)."},
        {"nvmet.global.update", "{\"basenqn\": \"bad\"}", NULL,
         "[EINVAL] nvmet_update.basenqn: String should have at least 11 characters"},
        {"nvmet.global.update", "{\"enabled\": \"true\"}", NULL,
         "[EINVAL] nvmet_update.enabled: Input should be a valid boolean"},
    };
    struct nv *before = ok_call(n, "nvmet.subsys.query", NULL, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err_call(n, cases[i].expect, cases[i].method, cases[i].a1, cases[i].a2);
    }
    /* FILE checks need real paths under the device root */
    snprintf(arg, sizeof arg,
             "{\"subsys_id\": 1, \"device_type\": \"FILE\", \"device_path\": \"/files\"}");
    err_call(n,
             "[EINVAL] nvmet_namespace_create.device_path: FILE device_path must not be a "
             "directory: /files",
             "nvmet.namespace.create", arg, NULL);
    snprintf(arg, sizeof arg,
             "{\"subsys_id\": 1, \"device_type\": \"FILE\", \"device_path\": \"/files/a.img\"}");
    err_call(n,
             "[EINVAL] nvmet_namespace_create.filesize: Must supply filesize if device_path FILE "
             "does not exist.",
             "nvmet.namespace.create", arg, NULL);
    struct nv *after = ok_call(n, "nvmet.subsys.query", NULL, NULL);
    assert_true(nv_equal(before, after));
    nv_free(before);
    nv_free(after);

    /* unknown method and bad usage are reported, not crashes */
    struct h_out o;
    h_ctl(n, &o, "nvmet.nothing.here", (char *)NULL);
    assert_int_equal(o.code, 1);
    assert_non_null(strstr(o.err, "Method does not exist"));
    h_out_free(&o);
}

/* Deletes refuse while something uses the object and cascade with force. */
static void test_delete_force(void **state)
{
    struct fx *f = *state;
    const struct h_node *n = &f->n;
    complete_setup(n);
    nv_free(ok_call(n, "nvmet.namespace.create",
                    "{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns2\"}", NULL));
    err_call(n,
             "[EINVAL] nvmet_subsys_delete.id: Subsystem " SUBNQN " contains 2 namespaces: 1,2",
             "nvmet.subsys.delete", "1", NULL);
    struct h_out o;
    h_ctl(n, &o, "nvmet.subsys.delete", "1", (char *)NULL);
    assert_non_null(strstr(o.err, "visible on 1 port"));
    h_out_free(&o);
    err_call(n, "[EINVAL] nvmet_port_delete.id: Port #1 used by 1 subsystem: " SUBNQN,
             "nvmet.port.delete", "1", NULL);
    struct nv *t = ok_call(n, "nvmet.port.delete", "1", "{\"force\": true}");
    assert_true(t->u.b);
    nv_free(t);
    assert_int_equal(count_entries(n->configfs, "ports"), 0);
    t = ok_call(n, "nvmet.port_subsys.query", NULL, NULL);
    assert_int_equal(nv_len(t), 0);
    nv_free(t);
    t = ok_call(n, "nvmet.subsys.delete", "1", "{\"force\": true}");
    assert_true(t->u.b);
    nv_free(t);
    t = ok_call(n, "nvmet.namespace.query", NULL, NULL);
    assert_int_equal(nv_len(t), 0);
    nv_free(t);
    t = ok_call(n, "nvmet.host_subsys.query", NULL, NULL);
    assert_int_equal(nv_len(t), 0);
    nv_free(t);
    /* the host is now unused and goes without force */
    nv_free(ok_call(n, "nvmet.host.delete", "1", NULL));
    assert_int_equal(count_entries(n->configfs, "subsystems"), 0);
    assert_int_equal(count_entries(n->configfs, "hosts"), 0);
}

static struct nv *all_state(const struct h_node *n)
{
    const char *svc[] = {"subsys", "namespace", "port", "port_subsys", "host", "host_subsys"};
    struct nv *m = nv_map();
    for (size_t i = 0; i < 6; i++) {
        char meth[64];
        snprintf(meth, sizeof meth, "nvmet.%s.query", svc[i]);
        nv_set(m, svc[i], ok_call(n, meth, NULL, NULL));
    }
    nv_set(m, "global", ok_call(n, "nvmet.global.config", NULL, NULL));
    return m;
}

/* Everything survives a clean restart and a kill -9, and the tree is rebuilt. */
static void test_restart_persistence(void **state)
{
    struct fx *f = *state;
    complete_setup(&f->n);
    struct nv *before = all_state(&f->n);
    for (int round = 0; round < 2; round++) {
        h_node_kill(&f->n, round == 0 ? SIGTERM : SIGKILL);
        int rc = h_node_wait(&f->n);
        assert_int_equal(rc, round == 0 ? 0 : 128 + SIGKILL);
        if (round == 1) {
            /* drift while down: a hand-made subsystem and a changed attribute */
            char p[900];
            snprintf(p, sizeof p, "%s/nvmet/subsystems/nqn.2024-01.com.example:handmade",
                     f->n.configfs);
            mkdir(p, 0755);
            snprintf(p, sizeof p, "%s/nvmet/subsystems/" SUBNQN "/attr_allow_any_host",
                     f->n.configfs);
            FILE *fp = fopen(p, "w");
            fputs("1\n", fp);
            fclose(fp);
        }
        assert_int_equal(h_node_start(&f->n, NULL), 0);
        struct nv *after = all_state(&f->n);
        if (!nv_equal(before, after)) {
            char *a = nv_dump(before), *b = nv_dump(after);
            fprintf(stderr, "before: %s\nafter:  %s\n", a, b);
            free(a);
            free(b);
        }
        assert_true(nv_equal(before, after));
        nv_free(after);
        assert_int_equal(h_wait_rendered(&f->n, 10000), 0);
        assert_int_equal(count_entries(f->n.configfs, "subsystems"), 1);
        expect_file(f->n.configfs, "subsystems/" SUBNQN "/attr_allow_any_host", "0");
        expect_file(f->n.configfs, "subsystems/" SUBNQN "/namespaces/1/enable", "1");
        expect_link(f->n.configfs, "ports/1/subsystems/" SUBNQN, "subsystems/" SUBNQN);
    }
    nv_free(before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_complete_setup_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_brief_examples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_force, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_persistence, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
