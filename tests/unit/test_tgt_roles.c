/* target/: roles (standby, witness), kernel profiles, locked identity,
 * FILE backing files, error reporting and retries, sessions. */
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
#define KEY "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"

static const struct tgt_view single = {.active = true};

struct ctx {
    struct fx f;
    struct rowset rs;
};

static int setup_profile(void **state, const char *profile)
{
    struct ctx *c = calloc(1, sizeof *c);
    fx_setup(&c->f, profile);
    rs_init(&c->rs, true);
    fx_device(&c->f, "/dev/zvol/tank/nvme/ns1");
    int64_t s = rs_subsys(&c->rs, SUBNQN, "TRUENAS001");
    rs_ns(&c->rs, s, 1, "ZVOL", "zvol/tank/nvme/ns1", true);
    int64_t p = rs_port(&c->rs, 1, "TCP", "0.0.0.0", 4420, "IPV4");
    rs_port_subsys(&c->rs, p, s);
    int64_t h = rs_host(&c->rs, HOSTNQN);
    rs_host_subsys(&c->rs, h, s);
    *state = c;
    return 0;
}

static int setup(void **state) { return setup_profile(state, NULL); }
static int setup61(void **state) { return setup_profile(state, "6.1"); }

static int teardown(void **state)
{
    struct ctx *c = *state;
    rs_free(&c->rs);
    fx_teardown(&c->f);
    free(c);
    return 0;
}

static const char *problem(const struct tgt_report *r, size_t i)
{
    return nv_get_str(nv_at(r->problems, i), "error");
}

/* The standby keeps the configuration but unlinks every port and disables
 * every namespace; becoming active links and enables again. */
static void test_standby_role(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    const struct tgt_view standby = {.active = false, .ha = true};
    const struct tgt_view active = {.active = true, .ha = true};
    assert_int_equal(fx_pass(&c->f, &c->rs, &active, false, &rep), 0);
    fx_expect(&c->f, NS1 "/enable", "1");
    assert_int_equal(fx_pass(&c->f, &c->rs, &standby, false, &rep), 0);
    assert_int_equal(fx_count(&c->f, "ports/1/subsystems"), 0);
    fx_expect(&c->f, NS1 "/enable", "0");
    fx_expect(&c->f, "ports/1/addr_trsvcid", "4420"); /* the port itself stays */
    fx_expect_link(&c->f, SUB "/allowed_hosts/" HOSTNQN, "hosts/" HOSTNQN);
    assert_int_equal(rep.unlinks, 1);
    assert_int_equal(rep.writes, 1);
    assert_int_equal(fx_pass(&c->f, &c->rs, &active, false, &rep), 0);
    fx_expect(&c->f, NS1 "/enable", "1");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    tgt_report_clear(&rep);
}

/* The witness renders nothing, and removes what is there. */
static void test_witness_renders_nothing(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    const struct tgt_view witness = {.empty = true};
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    assert_int_equal(fx_pass(&c->f, &c->rs, &witness, false, &rep), 0);
    assert_int_equal(fx_count(&c->f, "subsystems"), 0);
    assert_int_equal(fx_count(&c->f, "ports"), 0);
    assert_int_equal(fx_count(&c->f, "hosts"), 0);
    struct nv *want = tgt__desired_nv(c->f.t, rs_rows(&c->rs), &witness);
    assert_int_equal(nv_len(want), 0);
    nv_free(want);
    tgt_report_clear(&rep);
}

/* Node slots split the controller ids (A <= 31999, B >= 32000), and a node
 * changing slot widens the range first so the kernel accepts every step. */
static void test_cntlid_split(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    const struct tgt_view a = {.active = true, .node_slot = 1, .n_slots = 2, .ha = true};
    const struct tgt_view b = {.active = true, .node_slot = 2, .n_slots = 2, .ha = true};
    assert_int_equal(fx_pass(&c->f, &c->rs, &a, false, &rep), 0);
    fx_expect(&c->f, SUB "/attr_cntlid_min", "1");
    fx_expect(&c->f, SUB "/attr_cntlid_max", "31999");
    assert_int_equal(fx_pass(&c->f, &c->rs, &b, false, &rep), 0);
    fx_expect(&c->f, SUB "/attr_cntlid_min", "32000");
    fx_expect(&c->f, SUB "/attr_cntlid_max", "65519");
    assert_int_equal(fx_pass(&c->f, &c->rs, &a, false, &rep), 0);
    fx_expect(&c->f, SUB "/attr_cntlid_max", "31999");
    tgt_report_clear(&rep);
}

/* On the Debian 6.1 profile the settings the kernel cannot take are
 * reported in words (ieee_oui, DH-CHAP keys); our own defaults that it
 * lacks (attr_firmware, resv_enable) are left out silently. */
static void test_profile_61_reports(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    nv_set_str(rs_get(&c->rs, SM_SUBSYS, 1), "ieee_oui", "0x001b21");
    nv_set_str(rs_get(&c->rs, SM_HOST, 1), "dhchap_key", KEY);
    assert_int_equal(tgt__reconcile_rows(c->f.t, rs_rows(&c->rs), &single, false, &rep), 2);
    assert_int_equal(rep.errors, 2);
    assert_int_equal(nv_len(rep.problems), 2);
    assert_string_equal(problem(&rep, 0),
                        "subsys " SUBNQN ": kernel has no attr_ieee_oui (Linux 6.2 or later): "
                        "ieee_oui not applied");
    assert_string_equal(nv_get_str(nv_at(rep.problems, 0), "object"), SUB);
    assert_string_equal(problem(&rep, 1),
                        "host " HOSTNQN ": kernel has no DH-CHAP support "
                        "(CONFIG_NVME_TARGET_AUTH): dhchap_key not applied");
    /* everything else is rendered */
    fx_expect(&c->f, SUB "/attr_serial", "TRUENAS001");
    fx_expect(&c->f, SUB "/attr_model", "nvmet-ha");
    fx_expect(&c->f, NS1 "/enable", "1");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    assert_false(fx_exists(&c->f, SUB "/attr_firmware"));
    /* the problems stay reported on every pass until the state changes */
    assert_int_equal(tgt__reconcile_rows(c->f.t, rs_rows(&c->rs), &single, false, &rep), 2);
    nv_set_nil(rs_get(&c->rs, SM_SUBSYS, 1), "ieee_oui");
    nv_set_nil(rs_get(&c->rs, SM_HOST, 1), "dhchap_key");
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    /* the desired map leaves out what the kernel lacks */
    struct nv *want = tgt__desired_nv(c->f.t, rs_rows(&c->rs), &single);
    struct nv *live = tgt_live_tree(c->f.t);
    assert_null(nv_get(want, SUB "/attr_firmware"));
    assert_true(nv_equal(want, live));
    nv_free(want);
    nv_free(live);
    tgt_report_clear(&rep);
}

/* Host keys and parameters reach the 6.12 files (hash and group names
 * mapped to the kernel's). */
static void test_host_dhchap(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    struct nv *h = rs_get(&c->rs, SM_HOST, 1);
    nv_set_str(h, "dhchap_key", KEY);
    nv_set_str(h, "dhchap_ctrl_key", KEY);
    nv_set_str(h, "dhchap_dhgroup", "3072-BIT");
    nv_set_str(h, "dhchap_hash", "SHA-512");
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_key", KEY);
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_ctrl_key", KEY);
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_dhgroup", "ffdhe3072");
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_hash", "hmac(sha512)");
    nv_set_nil(h, "dhchap_ctrl_key");
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    fx_expect(&c->f, "hosts/" HOSTNQN "/dhchap_ctrl_key", "");
    assert_int_equal(rep.writes, 1);
    tgt_report_clear(&rep);
}

/* A serial change after a host identified the controller: the kernel
 * refuses, the renderer recreates the subsystem (namespace and links put
 * back) and says so. */
static void test_identity_locked_recreates(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    char p[1024];
    snprintf(p, sizeof p, "%s/" TGT_EMU_STATE_DIR "/identified/" SUBNQN, c->f.root);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    nv_set_str(rs_get(&c->rs, SM_SUBSYS, 1), "serial", "TRUENAS002");
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    assert_int_equal(rep.recreated, 1);
    assert_int_equal(nv_len(rep.notes), 1);
    assert_non_null(strstr(nv_get_str(nv_at(rep.notes, 0), "note"), "attr_serial is locked"));
    assert_int_equal(rep.drift, 0);
    fx_expect(&c->f, SUB "/attr_serial", "TRUENAS002");
    fx_expect(&c->f, NS1 "/enable", "1");
    fx_expect(&c->f, NS1 "/device_path", "/dev/zvol/tank/nvme/ns1");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    fx_expect_link(&c->f, SUB "/allowed_hosts/" HOSTNQN, "hosts/" HOSTNQN);
    assert_false(fx_exists(&c->f, "../" TGT_EMU_STATE_DIR "/identified/" SUBNQN));
    struct nv *want = tgt__desired_nv(c->f.t, rs_rows(&c->rs), &single);
    struct nv *live = tgt_live_tree(c->f.t);
    assert_true(nv_equal(want, live));
    nv_free(want);
    nv_free(live);
    tgt_report_clear(&rep);
}

/* A namespace whose device is missing is reported with context, the
 * other objects are rendered anyway, and a later pass retries it. */
static void test_errors_reported_and_retried(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    int64_t s2 = rs_subsys(&c->rs, "nqn.2024-01.com.example:two", "S2");
    rs_ns(&c->rs, s2, 3, "BLOCK", "/dev/sdz", true);
    assert_int_equal(tgt__reconcile_rows(c->f.t, rs_rows(&c->rs), &single, false, &rep), 1);
    assert_string_equal(problem(&rep, 0), "render namespace nqn.2024-01.com.example:two/3: "
                                          "write enable: No such file or directory");
    fx_expect(&c->f, "subsystems/nqn.2024-01.com.example:two/namespaces/3/enable", "0");
    fx_expect(&c->f, NS1 "/enable", "1");
    /* the failed object is retried (and reported) by every later pass,
     * cheaply: no sweep for a failure that is already known */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tgt__reconcile_rows(c->f.t, rs_rows(&c->rs), &single, false, &rep), 1);
        assert_false(rep.swept);
        assert_true(rep.reads < 10);
        assert_int_equal(nv_len(rep.problems), 1);
    }
    fx_device(&c->f, "/dev/sdz");
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    fx_expect(&c->f, "subsystems/nqn.2024-01.com.example:two/namespaces/3/enable", "1");
    assert_null(rep.problems);
    tgt_report_clear(&rep);
}

/* FILE namespaces get a sparse backing file of filesize under
 * device_root, grown when filesize grows; tgt_remove_backing_file removes it. */
static void test_file_backing(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    int64_t id = rs_ns(&c->rs, 1, 2, "FILE", "/mnt/tank/files/ns2.img", true);
    nv_set_int(rs_get(&c->rs, SM_NAMESPACE, id), "filesize", 1 << 20);
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    char p[1024];
    snprintf(p, sizeof p, "%s/mnt/tank/files/ns2.img", c->f.devroot);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 1 << 20);
    assert_true(st.st_blocks * 512 < (1 << 20)); /* sparse */
    fx_expect(&c->f, SUB "/namespaces/2/device_path", "/mnt/tank/files/ns2.img");
    fx_expect(&c->f, SUB "/namespaces/2/buffered_io", "1");
    fx_expect(&c->f, SUB "/namespaces/2/enable", "1");
    nv_set_int(rs_get(&c->rs, SM_NAMESPACE, id), "filesize", 4 << 20);
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 4 << 20);
    assert_int_equal(rep.writes, 0); /* emulated: no revalidate_size */
    assert_int_equal(tgt_remove_backing_file(c->f.t, "/mnt/tank/files/ns2.img"), 0);
    assert_int_equal(stat(p, &st), -1);
    assert_int_equal(tgt_remove_backing_file(c->f.t, "/mnt/tank/files/ns2.img"), 0);
    assert_int_equal(tgt_remove_backing_file(c->f.t, "/mnt/tank/files"), -EINVAL);
    assert_int_equal(tgt_remove_backing_file(c->f.t, "relative.img"), -EINVAL);
    tgt_report_clear(&rep);
}

/* RDMA ports are rendered only while global rdma is on. */
static void test_rdma_gated(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    int64_t p = rs_port(&c->rs, 2, "RDMA", "192.0.2.10", 4420, "IPV4");
    rs_port_subsys(&c->rs, p, 1);
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    assert_false(fx_exists(&c->f, "ports/2"));
    nv_set_bool(c->rs.global, "rdma", true);
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    fx_expect(&c->f, "ports/2/addr_trtype", "rdma");
    fx_expect_link(&c->f, "ports/2/subsystems/" SUBNQN, SUB);
    /* a disabled port keeps its dir but links nothing */
    nv_set_bool(rs_get(&c->rs, SM_PORT, p), "enabled", false);
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    assert_int_equal(fx_count(&c->f, "ports/2/subsystems"), 0);
    assert_true(fx_exists(&c->f, "ports/2"));
    tgt_report_clear(&rep);
}

/* The emulated nvmet/ vanishing (module unloaded) is loaded again and the
 * whole tree rendered by a sweep. */
static void test_root_reloaded(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/nvmet'", c->f.root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(fx_pass(&c->f, &c->rs, &single, false, &rep), 0);
    assert_true(rep.swept);
    fx_expect(&c->f, NS1 "/enable", "1");
    fx_expect_link(&c->f, "ports/1/subsystems/" SUBNQN, SUB);
    tgt_report_clear(&rep);
}

static void put(const char *dir, const char *name, const char *value)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", value);
    fclose(f);
}

/* Sessions come from debugfs; ANA port numbers (index + 5000) map back to
 * the port; unknown subsystems are ignored; no debugfs gives []. */
static void test_sessions(void **state)
{
    struct ctx *c = *state;
    char d[1024], cmd[4096];
    snprintf(d, sizeof d, "%s/debug/nvmet/" SUBNQN "/ctrl12", c->f.dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/debug/nvmet/" SUBNQN "/ctrl3' "
             "'%s/debug/nvmet/nqn.2024-01.com.example:unknown/ctrl1'", d, c->f.dir, c->f.dir);
    assert_int_equal(system(cmd), 0);
    put(d, "hostnqn", HOSTNQN);
    put(d, "host_traddr", "127.0.0.1");
    put(d, "port", "5001");
    snprintf(d, sizeof d, "%s/debug/nvmet/" SUBNQN "/ctrl3", c->f.dir);
    put(d, "hostnqn", "nqn.2024-01.com.example:host:other");
    put(d, "host_traddr", "127.0.0.2");
    put(d, "port", "1");
    char dbg[1024];
    snprintf(dbg, sizeof dbg, "%s/debug", c->f.dir);
    struct nv *s = tgt__sessions_rows(dbg, rs_rows(&c->rs));
    assert_int_equal(nv_len(s), 2);
    const struct nv *a = nv_at(s, 0), *b = nv_at(s, 1);
    assert_int_equal(nv_get_int(a, "ctrl", 0), 3);
    assert_string_equal(nv_get_str(a, "host_traddr"), "127.0.0.2");
    assert_int_equal(nv_get_int(a, "port_id", 0), 1);
    assert_int_equal(nv_get_int(b, "ctrl", 0), 12);
    assert_string_equal(nv_get_str(b, "hostnqn"), HOSTNQN);
    assert_int_equal(nv_get_int(b, "subsys_id", 0), 1);
    assert_int_equal(nv_get_int(b, "port_id", 0), 1);
    nv_free(s);
    snprintf(dbg, sizeof dbg, "%s/nodebug", c->f.dir);
    s = tgt__sessions_rows(dbg, rs_rows(&c->rs));
    assert_true(nv_is(s, NV_ARR));
    assert_int_equal(nv_len(s), 0);
    nv_free(s);
}

static void script(const char *path, const char *body)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
}

/* modprobe runs by fork/exec with a deadline: success, failure, and a hung
 * modprobe killed at the timeout. */
static void test_modprobe(void **state)
{
    struct ctx *c = *state;
    char bin[600], path[4096], cmd[700];
    snprintf(bin, sizeof bin, "%s/bin", c->f.dir);
    assert_int_equal(mkdir(bin, 0755), 0);
    snprintf(cmd, sizeof cmd, "%s/modprobe", bin);
    const char *old = getenv("PATH");
    char *saved = strdup(old != NULL ? old : "/usr/bin:/bin");
    snprintf(path, sizeof path, "%s:%s", bin, saved);
    setenv("PATH", path, 1);
    script(cmd, "[ \"$1\" = nvmet ] && exit 0; [ \"$1\" = hang ] && exec sleep 30; exit 1");
    assert_int_equal(tgt__modprobe("nvmet", 5000), 0);
    assert_int_equal(tgt__modprobe("nvmet-xyz", 5000), -EIO);
    assert_int_equal(tgt__modprobe("hang", 200), -ETIMEDOUT);
    setenv("PATH", saved, 1);
    free(saved);
}

/* The real-configfs backend: nvmet/ missing and still missing after
 * modprobe is reported in words; with nothing desired nothing is loaded. */
static void test_real_missing_nvmet(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    char bin[600], path[4096], cmd[700], log[700];
    snprintf(bin, sizeof bin, "%s/bin", c->f.dir);
    assert_int_equal(mkdir(bin, 0755), 0);
    snprintf(cmd, sizeof cmd, "%s/modprobe", bin);
    snprintf(log, sizeof log, "%s/modprobe.log", c->f.dir);
    char body[1600];
    snprintf(body, sizeof body, "echo \"$@\" >> '%s'", log);
    script(cmd, body);
    const char *old = getenv("PATH");
    char *saved = strdup(old != NULL ? old : "/usr/bin:/bin");
    snprintf(path, sizeof path, "%s:%s", bin, saved);
    setenv("PATH", path, 1);
    /* the same instance driven through the plain-syscall backend */
    char rm[1200];
    snprintf(rm, sizeof rm, "rm -rf '%s/nvmet'", c->f.root);
    assert_int_equal(system(rm), 0);
    c->f.t->emulated = false;
    c->f.t->ops = &tgt__real_ops;
    nv_set_bool(c->rs.global, "enabled", false);
    assert_int_equal(tgt__reconcile_rows(c->f.t, rs_rows(&c->rs), &single, false, &rep), 0);
    struct stat st;
    assert_int_equal(stat(log, &st), -1); /* nothing desired: no modprobe */
    nv_set_bool(c->rs.global, "enabled", true);
    assert_int_equal(tgt__reconcile_rows(c->f.t, rs_rows(&c->rs), &single, false, &rep), 1);
    assert_string_equal(problem(&rep, 0), "configfs has no nvmet/: is the nvmet module available?");
    FILE *fp = fopen(log, "r");
    assert_non_null(fp);
    char line[64] = "";
    assert_non_null(fgets(line, sizeof line, fp));
    fclose(fp);
    assert_string_equal(line, "nvmet\n");
    setenv("PATH", saved, 1);
    free(saved);
    tgt_report_clear(&rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_standby_role, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_renders_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cntlid_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_61_reports, setup61, teardown),
        cmocka_unit_test_setup_teardown(test_host_dhchap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_locked_recreates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_reported_and_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_backing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rdma_gated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_reloaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modprobe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_missing_nvmet, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
