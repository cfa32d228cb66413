/* Helpers of target/'s unit tests (see test_tgt_util.h). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

void rs_init(struct rowset *rs, bool enabled)
{
    memset(rs, 0, sizeof *rs);
    rs->global = nv_map();
    nv_set_int(rs->global, "id", 1);
    nv_set_str(rs->global, "basenqn", "nqn.2011-06.com.truenas:uuid:test");
    nv_set_bool(rs->global, "kernel", true);
    nv_set_bool(rs->global, "ana", false);
    nv_set_bool(rs->global, "rdma", false);
    nv_set_bool(rs->global, "xport_referral", true);
    nv_set_bool(rs->global, "enabled", enabled);
    rs->vips = nv_arr();
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        rs->tab[t] = nv_arr();
        rs->next_id[t] = 1;
    }
}

void rs_free(struct rowset *rs)
{
    nv_free(rs->global);
    nv_free(rs->vips);
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        nv_free(rs->tab[t]);
        free(rs->ptrs[t]);
    }
    memset(rs, 0, sizeof *rs);
}

const struct tgt_rows *rs_rows(struct rowset *rs)
{
    rs->r.global = rs->global;
    rs->r.vips = rs->vips;
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        size_t n = nv_len(rs->tab[t]);
        free(rs->ptrs[t]);
        rs->ptrs[t] = calloc(n ? n : 1, sizeof *rs->ptrs[t]);
        for (size_t i = 0; i < n; i++) {
            rs->ptrs[t][i] = nv_at(rs->tab[t], i);
        }
        rs->r.row[t] = rs->ptrs[t];
        rs->r.n[t] = n;
    }
    return &rs->r;
}

struct nv *rs_get(struct rowset *rs, enum sm_table t, int64_t id)
{
    for (size_t i = 0; i < nv_len(rs->tab[t]); i++) {
        struct nv *row = nv_at(rs->tab[t], i);
        if (nv_get_int(row, "id", 0) == id) {
            return row;
        }
    }
    fail_msg("no row %lld in table %d", (long long)id, (int)t);
    return NULL;
}

void rs_del(struct rowset *rs, enum sm_table t, int64_t id)
{
    struct nv *a = rs->tab[t];
    for (size_t i = 0; i < a->u.a.n; i++) {
        if (nv_get_int(a->u.a.v[i], "id", 0) == id) {
            nv_free(a->u.a.v[i]);
            memmove(&a->u.a.v[i], &a->u.a.v[i + 1], (a->u.a.n - i - 1) * sizeof a->u.a.v[0]);
            a->u.a.n--;
            return;
        }
    }
    fail_msg("no row %lld to delete", (long long)id);
}

static int64_t add(struct rowset *rs, enum sm_table t, struct nv *row)
{
    int64_t id = rs->next_id[t]++;
    struct nv *m = nv_map();
    nv_set_int(m, "id", id);
    for (size_t i = 0; i < row->u.m.n; i++) {
        nv_set(m, row->u.m.kv[i].k, nv_copy(row->u.m.kv[i].v));
    }
    nv_free(row);
    nv_push(rs->tab[t], m);
    return id;
}

int64_t rs_subsys(struct rowset *rs, const char *subnqn, const char *serial)
{
    struct nv *r = nv_map();
    nv_set_str(r, "name", subnqn);
    nv_set_str(r, "subnqn", subnqn);
    nv_set_str(r, "serial", serial);
    nv_set_bool(r, "allow_any_host", false);
    nv_set_nil(r, "pi_enable");
    nv_set_nil(r, "qid_max");
    nv_set_nil(r, "ieee_oui");
    nv_set_nil(r, "ana");
    return add(rs, SM_SUBSYS, r);
}

int64_t rs_ns(struct rowset *rs, int64_t subsys_id, int64_t nsid, const char *type,
              const char *path, bool enabled)
{
    struct nv *r = nv_map();
    char uuid[64], nguid[64];
    int64_t n = rs->next_id[SM_NAMESPACE];
    snprintf(uuid, sizeof uuid, "6ba7b810-9dad-41d1-80b4-%012llx", (unsigned long long)n);
    snprintf(nguid, sizeof nguid, "1b4e28ba-2fa1-41d2-883f-%012llx", (unsigned long long)n);
    nv_set_int(r, "nsid", nsid);
    nv_set_int(r, "subsys_id", subsys_id);
    nv_set_str(r, "device_type", type);
    nv_set_str(r, "device_path", path);
    nv_set_nil(r, "dataset");
    nv_set_nil(r, "relative_path");
    nv_set_nil(r, "filesize");
    nv_set_str(r, "device_uuid", uuid);
    nv_set_str(r, "device_nguid", nguid);
    nv_set_bool(r, "enabled", enabled);
    return add(rs, SM_NAMESPACE, r);
}

int64_t rs_port(struct rowset *rs, int64_t index, const char *trtype, const char *traddr,
                int64_t trsvcid, const char *adrfam)
{
    struct nv *r = nv_map();
    nv_set_int(r, "index", index);
    nv_set_str(r, "addr_trtype", trtype);
    if (trsvcid > 0) {
        nv_set_int(r, "addr_trsvcid", trsvcid);
    } else {
        nv_set_nil(r, "addr_trsvcid");
    }
    nv_set_str(r, "addr_traddr", traddr);
    nv_set_str(r, "addr_adrfam", adrfam);
    nv_set_nil(r, "inline_data_size");
    nv_set_nil(r, "max_queue_size");
    nv_set_nil(r, "pi_enable");
    nv_set_bool(r, "enabled", true);
    return add(rs, SM_PORT, r);
}

int64_t rs_host(struct rowset *rs, const char *hostnqn)
{
    struct nv *r = nv_map();
    nv_set_str(r, "hostnqn", hostnqn);
    nv_set_str(r, "description", "");
    nv_set_nil(r, "dhchap_key");
    nv_set_nil(r, "dhchap_ctrl_key");
    nv_set_nil(r, "dhchap_dhgroup");
    nv_set_str(r, "dhchap_hash", "SHA-256");
    return add(rs, SM_HOST, r);
}

int64_t rs_host_subsys(struct rowset *rs, int64_t host_id, int64_t subsys_id)
{
    struct nv *r = nv_map();
    nv_set_int(r, "host_id", host_id);
    nv_set_int(r, "subsys_id", subsys_id);
    return add(rs, SM_HOST_SUBSYS, r);
}

int64_t rs_port_subsys(struct rowset *rs, int64_t port_id, int64_t subsys_id)
{
    struct nv *r = nv_map();
    nv_set_int(r, "port_id", port_id);
    nv_set_int(r, "subsys_id", subsys_id);
    return add(rs, SM_PORT_SUBSYS, r);
}

void rs_vip(struct rowset *rs, const char *address, ...)
{
    struct nv *v = nv_map();
    struct nv *na = nv_map();
    nv_set_str(v, "address", address);
    nv_set_int(v, "prefix", strchr(address, ':') != NULL ? 64 : 24);
    nv_set_str(v, "interface", "eth0");
    va_list ap;
    va_start(ap, address);
    for (const char *id = va_arg(ap, const char *); id != NULL; id = va_arg(ap, const char *)) {
        nv_set_str(na, id, va_arg(ap, const char *));
    }
    va_end(ap);
    nv_set(v, "node_addresses", na);
    nv_push(rs->vips, v);
}

/* ---- temp trees ------------------------------------------------------------ */

static void mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

void fx_setup(struct fx *f, const char *profile)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tgt-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof f->root, "%s/configfs", f->dir);
    snprintf(f->devroot, sizeof f->devroot, "%s/root", f->dir);
    mkdirs(f->root);
    mkdirs(f->devroot);
    struct tgt_config cfg = {
        .root = f->root, .device_root = f->devroot, .emulate = true, .emulate_kernel = profile};
    struct nv_err e;
    nv_err_init(&e);
    int rv = tgt_open(&cfg, &f->t, &e);
    if (rv < 0) {
        char *r = nv_err_reason(&e);
        fail_msg("tgt_open: %s", r);
    }
    nv_err_clear(&e);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

void fx_teardown(struct fx *f)
{
    tgt_close(f->t);
    f->t = NULL;
    nftw(f->dir, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

void fx_device(struct fx *f, const char *path)
{
    char p[4096];
    snprintf(p, sizeof p, "%s%s", f->devroot, path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", p);
    *strrchr(dir, '/') = '\0';
    mkdirs(dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static void abs_path(struct fx *f, const char *rel, char *buf, size_t len)
{
    snprintf(buf, len, "%s/nvmet/%s", f->root, rel);
}

char *fx_read(struct fx *f, const char *rel)
{
    char p[4096];
    abs_path(f, rel, p, sizeof p);
    FILE *fp = fopen(p, "r");
    if (fp == NULL) {
        return NULL;
    }
    char *buf = calloc(1, 8192);
    size_t n = fread(buf, 1, 8191, fp);
    fclose(fp);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        buf[--n] = '\0';
    }
    return buf;
}

void fx_expect(struct fx *f, const char *rel, const char *value)
{
    char *v = fx_read(f, rel);
    if (v == NULL) {
        fail_msg("missing %s", rel);
    }
    if (strcmp(v, value) != 0) {
        fprintf(stderr, "%s: expected '%s', got '%s'\n", rel, value, v);
    }
    assert_string_equal(v, value);
    free(v);
}

void fx_expect_link(struct fx *f, const char *rel, const char *target_rel)
{
    char p[4096], t[4096], want[4096];
    abs_path(f, rel, p, sizeof p);
    ssize_t l = readlink(p, t, sizeof t - 1);
    if (l < 0) {
        fail_msg("missing link %s", rel);
    }
    t[l] = '\0';
    abs_path(f, target_rel, want, sizeof want);
    assert_string_equal(t, want);
}

bool fx_exists(struct fx *f, const char *rel)
{
    char p[4096];
    struct stat st;
    abs_path(f, rel, p, sizeof p);
    return lstat(p, &st) == 0;
}

int fx_count(struct fx *f, const char *rel)
{
    char p[4096];
    abs_path(f, rel, p, sizeof p);
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    if (tgt__plain_readdir(p, &d, &n) < 0) {
        return -1;
    }
    tgt__dirents_free(d, n);
    return (int)n;
}

void fx_write(struct fx *f, const char *rel, const char *value)
{
    char p[4096];
    abs_path(f, rel, p, sizeof p);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", value);
    fclose(fp);
}

int fx_pass(struct fx *f, struct rowset *rs, const struct tgt_view *v, bool sweep,
            struct tgt_report *rep)
{
    int errors = tgt__reconcile_rows(f->t, rs_rows(rs), v, sweep, rep);
    if (errors > 0 && rep != NULL) {
        char *d = nv_dump(rep->problems);
        fprintf(stderr, "pass problems: %s\n", d ? d : "");
        free(d);
    }
    return errors;
}
