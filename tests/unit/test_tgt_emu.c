/* target/: the emulated kernel called directly, the way a careless
 * renderer would: it must materialise what a real mkdir creates and
 * refuse the wrong orders and values with the kernel's errno. */
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
#include "nv_err.h"
#include "test_tgt_util.h"

#define S "subsystems/nqn.2024-01.com.example:s"
#define H "hosts/nqn.2024-01.com.example:h"

static int setup612(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    fx_setup(f, "6.12");
    *state = f;
    return 0;
}

static int setup61(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    fx_setup(f, "6.1");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_teardown(*state);
    free(*state);
    return 0;
}

/* A linked TCP port on 127.0.0.1:4420 with one namespace enabled. */
static void build_linked(struct fx *f)
{
    struct tgt *t = f->t;
    fx_device(f, "/dev/nvme0n1");
    assert_int_equal(tgt__mkdir(t, S), 0);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/1"), 0);
    assert_int_equal(tgt__write(t, S "/namespaces/1/device_path", "/dev/nvme0n1"), 0);
    assert_int_equal(tgt__write(t, S "/namespaces/1/enable", "1"), 0);
    assert_int_equal(tgt__mkdir(t, "ports/1"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_trtype", "tcp"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_adrfam", "ipv4"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_traddr", "127.0.0.1"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_trsvcid", "4420"), 0);
    assert_int_equal(tgt__symlink(t, S, "ports/1/subsystems/nqn.2024-01.com.example:s"), 0);
}

/* tgt_open makes the default groups; mkdir materialises the kernel's
 * attribute files with their defaults (6.12 profile). */
static void test_mkdir_materialises_612(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    assert_true(tgt_is_emulated(t));
    /* subsystems, ports, hosts and the discovery_nqn attribute */
    assert_int_equal(fx_count(f, ""), 4);
    fx_expect(f, "discovery_nqn", "nqn.2014-08.org.nvmexpress.discovery");
    assert_int_equal(tgt__mkdir(t, S), 0);
    fx_expect(f, S "/attr_allow_any_host", "0");
    fx_expect(f, S "/attr_version", "1.3");
    fx_expect(f, S "/attr_model", "Linux");
    fx_expect(f, S "/attr_cntlid_min", "1");
    fx_expect(f, S "/attr_cntlid_max", "65519");
    fx_expect(f, S "/attr_qid_max", "128");
    fx_expect(f, S "/attr_ieee_oui", "0x000000");
    fx_expect(f, S "/attr_firmware", "6.12.117");
    char *serial = fx_read(f, S "/attr_serial");
    assert_int_equal(strlen(serial), 20);
    assert_int_equal(strspn(serial, "0123456789abcdef"), 20);
    free(serial);
    assert_true(fx_exists(f, S "/namespaces"));
    assert_true(fx_exists(f, S "/allowed_hosts"));
    assert_true(fx_exists(f, S "/passthru"));
    assert_int_equal(tgt__mkdir(t, S "/namespaces/5"), 0);
    fx_expect(f, S "/namespaces/5/device_path", "(null)");
    fx_expect(f, S "/namespaces/5/device_nguid", "00000000-0000-0000-0000-000000000000");
    fx_expect(f, S "/namespaces/5/enable", "0");
    fx_expect(f, S "/namespaces/5/buffered_io", "0");
    fx_expect(f, S "/namespaces/5/ana_grpid", "1");
    /* reservations came with 6.13: not in Debian's 6.12 */
    assert_false(fx_exists(f, S "/namespaces/5/resv_enable"));
    char *uuid = fx_read(f, S "/namespaces/5/device_uuid");
    assert_int_equal(strlen(uuid), 36);
    assert_int_equal(uuid[14], '4');
    free(uuid);
    char buf[64];
    assert_int_equal(tgt__read(t, S "/namespaces/5/revalidate_size", buf, sizeof buf), -EACCES);
    assert_int_equal(tgt__mkdir(t, "ports/7"), 0);
    fx_expect(f, "ports/7/addr_trtype", "");
    fx_expect(f, "ports/7/addr_treq", "not specified");
    fx_expect(f, "ports/7/param_inline_data_size", "-1");
    fx_expect(f, "ports/7/param_pi_enable", "0");
    fx_expect(f, "ports/7/ana_groups/1/ana_state", "optimized");
    assert_true(fx_exists(f, "ports/7/subsystems"));
    assert_true(fx_exists(f, "ports/7/referrals"));
    assert_int_equal(tgt__mkdir(t, H), 0);
    fx_expect(f, H "/dhchap_key", "");
    fx_expect(f, H "/dhchap_ctrl_key", "");
    fx_expect(f, H "/dhchap_hash", "hmac(sha256)");
    fx_expect(f, H "/dhchap_dhgroup", "null");
    /* the same name gives the same "random" serial (no clock involved) */
    char *a = fx_read(f, S "/attr_serial");
    assert_int_equal(tgt__rmdir(t, S "/namespaces/5"), 0);
    assert_int_equal(tgt__rmdir(t, S), 0);
    assert_int_equal(tgt__mkdir(t, S), 0);
    char *b = fx_read(f, S "/attr_serial");
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* The 6.1 profile has no attr_ieee_oui/attr_firmware, no resv_enable,
 * no dhchap files and no passthru; writing a missing file is ENOENT. */
static void test_profile_61_files(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    assert_int_equal(tgt__mkdir(t, S), 0);
    assert_false(fx_exists(f, S "/attr_ieee_oui"));
    assert_false(fx_exists(f, S "/attr_firmware"));
    assert_false(fx_exists(f, S "/passthru"));
    assert_int_equal(tgt__write(t, S "/attr_ieee_oui", "0x001122"), -ENOENT);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/1"), 0);
    assert_false(fx_exists(f, S "/namespaces/1/resv_enable"));
    assert_int_equal(tgt__mkdir(t, H), 0);
    assert_int_equal(fx_count(f, H), 0);
    assert_int_equal(tgt__write(t, H "/dhchap_key", "DHHC-1:00:abc:"), -ENOENT);
    /* 6.1: cntlid_min < cntlid_max strictly */
    assert_int_equal(tgt__write(t, S "/attr_cntlid_max", "1"), -EINVAL);
    /* nvme-loop is not built: a loop port cannot be enabled */
    assert_int_equal(tgt__mkdir(t, "ports/1"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_trtype", "loop"), 0);
    assert_int_equal(tgt__symlink(t, S, "ports/1/subsystems/x"), -EINVAL);
    struct nv *feat = tgt_features(t);
    assert_string_equal(nv_get_str(feat, "kernel"), "6.1");
    assert_false(nv_get_bool(feat, "dhchap", true));
    assert_false(nv_get_bool(feat, "ieee_oui", true));
    assert_int_equal(nv_len(nv_get(feat, "missing")), 6);
    nv_free(feat);
}

/* The ordering rules: port attributes while linked (EACCES), namespace
 * device while enabled (EBUSY), buffered_io/resv_enable while enabled
 * (EINVAL); the right order succeeds. */
static void test_refuses_wrong_order(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    build_linked(f);
    assert_int_equal(tgt__write(t, "ports/1/addr_trsvcid", "4421"), -EACCES);
    assert_int_equal(tgt__write(t, "ports/1/param_pi_enable", "0"), -EACCES);
    assert_int_equal(tgt__write(t, S "/namespaces/1/device_path", "/dev/nvme1n1"), -EBUSY);
    assert_int_equal(
        tgt__write(t, S "/namespaces/1/device_uuid", "6ba7b810-9dad-41d1-80b4-00c04fd430c8"),
        -EBUSY);
    assert_int_equal(
        tgt__write(t, S "/namespaces/1/device_nguid", "00112233445566778899aabbccddeeff"), -EBUSY);
    assert_int_equal(tgt__write(t, S "/namespaces/1/buffered_io", "1"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/namespaces/1/ana_grpid", "2"), 0); /* see below */
    /* the right order */
    assert_int_equal(tgt__unlink(t, "ports/1/subsystems/nqn.2024-01.com.example:s"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_trsvcid", "4421"), 0);
    assert_int_equal(tgt__write(t, S "/namespaces/1/enable", "0"), 0);
    assert_int_equal(
        tgt__write(t, S "/namespaces/1/device_nguid", "00112233445566778899aabbccddeeff"), 0);
    fx_expect(f, S "/namespaces/1/device_nguid", "00112233-4455-6677-8899-aabbccddeeff");
    assert_int_equal(tgt__write(t, S "/namespaces/1/buffered_io", "1"), 0);
}

/* ANA groups are not cross-checked, like the kernel's: ana_grpid takes
 * any id 1..128 whether or not a port has that group, and a group is
 * removed while namespaces name it (they are then inaccessible on every
 * port: keeping them consistent is the renderer's order, test_tgt_ana). */
static void test_ana_groups_unchecked(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    build_linked(f);
    assert_int_equal(tgt__write(t, S "/namespaces/1/ana_grpid", "7"), 0);
    fx_expect(f, S "/namespaces/1/ana_grpid", "7");
    assert_int_equal(tgt__write(t, S "/namespaces/1/ana_grpid", "129"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/namespaces/1/ana_grpid", "0"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, "ports/1/ana_groups/2"), 0);
    assert_int_equal(tgt__write(t, S "/namespaces/1/ana_grpid", "2"), 0);
    assert_int_equal(tgt__rmdir(t, "ports/1/ana_groups/2"), 0);
    fx_expect(f, S "/namespaces/1/ana_grpid", "2");
}

/* Access lists: allow_any_host=1 with links is EINVAL, linking while it is
 * 1 is EINVAL, duplicates EEXIST, wrong targets EINVAL/EPERM/ENOENT. */
static void test_refuses_links(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    assert_int_equal(tgt__mkdir(t, S), 0);
    assert_int_equal(tgt__mkdir(t, H), 0);
    const char *l = S "/allowed_hosts/nqn.2024-01.com.example:h";
    assert_int_equal(tgt__symlink(t, H, l), 0);
    assert_int_equal(tgt__symlink(t, H, S "/allowed_hosts/other-name"), -EEXIST);
    assert_int_equal(tgt__write(t, S "/attr_allow_any_host", "1"), -EINVAL);
    assert_int_equal(tgt__unlink(t, l), 0);
    assert_int_equal(tgt__write(t, S "/attr_allow_any_host", "1"), 0);
    assert_int_equal(tgt__symlink(t, H, l), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_allow_any_host", "0"), 0);
    /* a host link must point to a host, a port link to a subsystem */
    assert_int_equal(tgt__symlink(t, S, S "/allowed_hosts/x"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, "ports/2"), 0);
    assert_int_equal(tgt__symlink(t, H, "ports/2/subsystems/x"), -EINVAL);
    assert_int_equal(tgt__symlink(t, "hosts/missing", l), -ENOENT);
    assert_int_equal(f->t->ops->symlink(t, "/tmp", l), -EPERM);
    /* links only where the kernel allows them */
    assert_int_equal(tgt__symlink(t, H, S "/namespaces/x"), -EPERM);
    /* a port cannot be enabled before its transport is set */
    assert_int_equal(tgt__symlink(t, S, "ports/2/subsystems/s"), -EINVAL);
    assert_int_equal(tgt__unlink(t, S "/attr_serial"), -EPERM);
}

/* rmdir: user children ENOTEMPTY, link targets EBUSY, default groups
 * EPERM; teardown in the right order succeeds. */
static void test_refuses_rmdir(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    build_linked(f);
    assert_int_equal(tgt__mkdir(t, H), 0);
    assert_int_equal(tgt__symlink(t, H, S "/allowed_hosts/h"), 0);
    assert_int_equal(tgt__rmdir(t, S), -ENOTEMPTY);
    assert_int_equal(tgt__rmdir(t, "ports/1"), -ENOTEMPTY);
    assert_int_equal(tgt__rmdir(t, H), -EBUSY);
    assert_int_equal(tgt__rmdir(t, "ports/1/ana_groups/1"), -EPERM);
    assert_int_equal(tgt__rmdir(t, "ports/1/subsystems"), -EPERM);
    assert_int_equal(tgt__rmdir(t, "subsystems"), -EPERM);
    assert_int_equal(tgt__rmdir(t, S "/namespaces"), -EPERM);
    assert_int_equal(tgt__rmdir(t, "ports/9"), -ENOENT);
    assert_int_equal(tgt__rmdir(t, S "/namespaces/1"), 0); /* enabled: allowed */
    assert_int_equal(tgt__unlink(t, S "/allowed_hosts/h"), 0);
    assert_int_equal(tgt__rmdir(t, H), 0);
    assert_int_equal(tgt__rmdir(t, S), -EBUSY); /* still linked from the port */
    assert_int_equal(tgt__unlink(t, "ports/1/subsystems/nqn.2024-01.com.example:s"), 0);
    assert_int_equal(tgt__mkdir(t, "ports/1/ana_groups/2"), 0);
    fx_expect(f, "ports/1/ana_groups/2/ana_state", "inaccessible");
    assert_int_equal(tgt__rmdir(t, "ports/1"), -ENOTEMPTY);
    assert_int_equal(tgt__rmdir(t, "ports/1/ana_groups/2"), 0);
    assert_int_equal(tgt__rmdir(t, "ports/1"), 0);
    assert_int_equal(tgt__rmdir(t, S), 0);
    assert_int_equal(fx_count(f, "subsystems") + fx_count(f, "ports") + fx_count(f, "hosts"), 0);
}

/* mkdir names and places: discovery NQN, namespace ids, port ids, ANA
 * group ids, and groups that do not make items. */
static void test_refuses_names(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    assert_int_equal(tgt__mkdir(t, "subsystems/nqn.2014-08.org.nvmexpress.discovery"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, S), 0);
    assert_int_equal(tgt__mkdir(t, S), -EEXIST);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/0"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/abc"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/4294967295"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/99999999999"), -ERANGE);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/0x10"), 0);
    assert_int_equal(tgt__mkdir(t, S "/allowed_hosts/x"), -EPERM);
    assert_int_equal(tgt__mkdir(t, "ports/65536"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, "ports/p1"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, "ports/0"), 0);
    assert_int_equal(tgt__mkdir(t, "ports/0/ana_groups/1"), -EEXIST);
    assert_int_equal(tgt__mkdir(t, "ports/0/ana_groups/129"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, "ports/0/ana_groups/0"), -EINVAL);
    assert_int_equal(tgt__mkdir(t, "ports/0/referrals/anything"), 0);
    assert_int_equal(tgt__mkdir(t, "ports/0/subsystems/x"), -EPERM);
    assert_int_equal(tgt__mkdir(t, "elsewhere"), -EPERM);
    assert_int_equal(tgt__mkdir(t, "nothere/x"), -ENOENT);
}

/* store() validation of the common attributes. */
static void test_refuses_values(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    assert_int_equal(tgt__mkdir(t, S), 0);
    assert_int_equal(tgt__write(t, S "/attr_serial", "123456789012345678901"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_serial", ""), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_serial", "bad\x01"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_serial", "SN1"), 0);
    char buf[64];
    assert_true(tgt__read(t, S "/attr_serial", buf, sizeof buf) > 0);
    assert_string_equal(buf, "SN1                 \n"); /* space padded like the kernel */
    assert_int_equal(tgt__write(t, S "/attr_allow_any_host", "maybe"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_allow_any_host", "on"), 0);
    fx_expect(f, S "/attr_allow_any_host", "1");
    assert_int_equal(tgt__write(t, S "/attr_qid_max", "129"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_ieee_oui", "0x1000000"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_ieee_oui", "0xabc"), 0);
    fx_expect(f, S "/attr_ieee_oui", "0x000abc");
    assert_int_equal(tgt__write(t, S "/attr_firmware", "123456789"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_cntlid_min", "0"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_cntlid_max", "31999"), 0);
    assert_int_equal(tgt__write(t, S "/attr_cntlid_min", "32000"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/no_such_attr", "1"), -ENOENT);
    assert_int_equal(tgt__mkdir(t, "ports/1"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_trtype", "TCP"), -EINVAL);
    assert_int_equal(tgt__write(t, "ports/1/addr_trtype", "tcp"), 0);
    fx_expect(f, "ports/1/addr_tsas", "none");
    assert_int_equal(tgt__write(t, "ports/1/addr_adrfam", "inet"), -EINVAL);
    assert_int_equal(tgt__write(t, "ports/1/addr_adrfam", "ipv6"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_treq", "maybe"), -EINVAL);
    assert_int_equal(tgt__write(t, "ports/1/ana_groups/1/ana_state", "sleepy"), -EINVAL);
    assert_int_equal(tgt__write(t, "ports/1/ana_groups/1/ana_state", "inaccessible"), 0);
    /* enabling the port checks the address (tcp/ipv6 needs an IPv6 literal) */
    assert_int_equal(tgt__write(t, "ports/1/addr_traddr", "127.0.0.1"), 0);
    assert_int_equal(tgt__write(t, "ports/1/addr_trsvcid", "4420"), 0);
    assert_int_equal(tgt__symlink(t, S, "ports/1/subsystems/s"), -EINVAL);
    assert_int_equal(tgt__write(t, "ports/1/addr_traddr", "::1"), 0);
    assert_int_equal(tgt__symlink(t, S, "ports/1/subsystems/s"), 0);
    assert_int_equal(tgt__symlink(t, S, "ports/1/subsystems/again"), -EEXIST);
    assert_int_equal(tgt__mkdir(t, H), 0);
    assert_int_equal(tgt__write(t, H "/dhchap_key", "secret"), -EINVAL);
    assert_int_equal(tgt__write(t, H "/dhchap_key", "DHHC-1:04:AAAA:"), -EINVAL);
    assert_int_equal(tgt__write(t, H "/dhchap_key", "DHHC-1:01:AAAA:"), 0);
    assert_int_equal(tgt__write(t, H "/dhchap_key", ""), 0); /* clears */
    fx_expect(f, H "/dhchap_key", "");
    assert_int_equal(tgt__write(t, H "/dhchap_hash", "hmac(md5)"), -EINVAL);
    assert_int_equal(tgt__write(t, H "/dhchap_dhgroup", "ffdhe1024"), -EINVAL);
    assert_int_equal(tgt__write(t, H "/dhchap_dhgroup", "ffdhe4096"), 0);
}

/* Namespace enable opens the device: a path missing under device_root is
 * ENOENT; revalidate_size needs an enabled namespace. */
static void test_ns_enable_device(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    assert_int_equal(tgt__mkdir(t, S), 0);
    assert_int_equal(tgt__mkdir(t, S "/namespaces/1"), 0);
    assert_int_equal(tgt__write(t, S "/namespaces/1/enable", "1"), -EINVAL); /* no path */
    assert_int_equal(tgt__write(t, S "/namespaces/1/device_path", "/dev/zvol/tank/v"), 0);
    assert_int_equal(tgt__write(t, S "/namespaces/1/revalidate_size", "1"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/namespaces/1/enable", "1"), -ENOENT);
    fx_device(f, "/dev/zvol/tank/v");
    assert_int_equal(tgt__write(t, S "/namespaces/1/enable", "1"), 0);
    assert_int_equal(tgt__write(t, S "/namespaces/1/revalidate_size", "1"), 0);
}

/* After a host identified the controller, identity attributes are locked
 * (EINVAL) until the subsystem is made again. */
static void test_identity_lock(void **state)
{
    struct fx *f = *state;
    struct tgt *t = f->t;
    assert_int_equal(tgt__mkdir(t, S), 0);
    char p[1024];
    snprintf(p, sizeof p, "%s/" TGT_EMU_STATE_DIR "/identified/nqn.2024-01.com.example:s", f->root);
    FILE *fp = fopen(p, "w");
    fclose(fp);
    assert_int_equal(tgt__write(t, S "/attr_serial", "NEW"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_model", "m"), -EINVAL);
    assert_int_equal(tgt__write(t, S "/attr_qid_max", "4"), 0); /* not identity */
    assert_int_equal(tgt__rmdir(t, S), 0);
    assert_int_equal(tgt__mkdir(t, S), 0);
    assert_int_equal(tgt__write(t, S "/attr_serial", "NEW"), 0);
}

/* mkdir builds the object aside and renames it into place: no staging
 * leftovers, and a leftover of a killed process goes at the next open. */
static void test_mkdir_is_atomic(void **state)
{
    struct fx *f = *state;
    char stage[700], left[800];
    snprintf(stage, sizeof stage, "%s/.nvmet-emu/staging", f->root);
    assert_int_equal(tgt__mkdir(f->t, "hosts/nqn.2024-01.com.example:h1"), 0);
    fx_expect(f, "hosts/nqn.2024-01.com.example:h1/dhchap_hash", "hmac(sha256)");
    char cmd[900];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", stage);
    assert_int_equal(system(cmd), 0);
    /* a half-made object of a killed process */
    snprintf(left, sizeof left, "%s/1234-nqn.2024-01.com.example:h2", stage);
    assert_int_equal(mkdir(left, 0755), 0);
    tgt_close(f->t);
    struct tgt_config cfg = {
        .root = f->root, .device_root = f->devroot, .emulate = true, .emulate_kernel = "6.12"};
    struct nv_err e;
    nv_err_init(&e);
    assert_int_equal(tgt_open(&cfg, &f->t, &e), 0);
    nv_err_clear(&e);
    assert_int_equal(system(cmd), 0);
    assert_false(fx_exists(f, "hosts/nqn.2024-01.com.example:h2"));
    fx_expect(f, "hosts/nqn.2024-01.com.example:h1/dhchap_hash", "hmac(sha256)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mkdir_materialises_612, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_is_atomic, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_profile_61_files, setup61, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_wrong_order, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_ana_groups_unchecked, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_links, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_rmdir, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_names, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_values, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_ns_enable_device, setup612, teardown),
        cmocka_unit_test_setup_teardown(test_identity_lock, setup612, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
