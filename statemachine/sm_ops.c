/* statemachine: every write of the API (reference §1.2, §2-5 and the
 * product decisions of API.md), run identically by sm_prepare (checking,
 * recording the environment) and sm_apply (re-checking, mutating). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

#define ACTIVE_MSG "Cannot change %s on an active %s.  Disable first to allow change."

/* ---- the environment, recorded on the leader and replayed on apply ---- */

static const char hexd[] = "0123456789abcdef";

void sm__random(struct sm_ex *x, unsigned char *buf, size_t len)
{
    if (x->replay) {
        const struct nv *h = nv_at(x->rnd, x->rnd_pos++);
        memset(buf, 0, len);
        if (nv_is(h, NV_STR) && h->u.s.len == len * 2) {
            for (size_t i = 0; i < len; i++) {
                const char *a = strchr(hexd, h->u.s.p[2 * i]);
                const char *b = strchr(hexd, h->u.s.p[2 * i + 1]);
                if (a != NULL && b != NULL) {
                    buf[i] = (unsigned char)(((a - hexd) << 4) | (b - hexd));
                }
            }
        }
        return;
    }
    if (x->env != NULL && x->env->random != NULL) {
        x->env->random(x->env->ctx, buf, len);
    } else {
        memset(buf, 0, len);
    }
    char *h = malloc(len * 2 + 1);
    for (size_t i = 0; i < len; i++) {
        h[2 * i] = hexd[buf[i] >> 4];
        h[2 * i + 1] = hexd[buf[i] & 15];
    }
    h[len * 2] = '\0';
    nv_push(x->rnd, nv_str(h));
    free(h);
}

int sm__devstat(struct sm_ex *x, const char *path)
{
    if (x->replay) {
        const struct nv *k = nv_get(x->dev, path);
        return nv_is(k, NV_INT) ? (int)k->u.i : (int)SM_DEV_OTHER;
    }
    int kind = -1;
    if (x->env != NULL && x->env->device_stat != NULL) {
        kind = (int)x->env->device_stat(x->env->ctx, path);
    }
    nv_set_int(x->dev, path, kind);
    return kind;
}

static bool env_flag(struct sm_ex *x, const char *key)
{
    if (x->replay) {
        return nv_get_bool(x->dev, key, false);
    }
    bool v = x->env != NULL && (strcmp(key, "#ha") == 0 ? x->env->ha : x->env->rdma_capable);
    nv_set_bool(x->dev, key, v);
    return v;
}

/* ---- small helpers ---- */

static bool failed(struct sm_ex *x) { return nv_err_isset(x->err); }

static bool running(const struct sm_state *s)
{
    return s->global != NULL && nv_get_bool(s->global, "enabled", false);
}

static const char *basenqn(const struct sm_state *s)
{
    const char *b = s->global != NULL ? nv_get_str(s->global, "basenqn") : NULL;
    return b != NULL ? b : "nqn.2011-06.com.truenas:uuid:00000000-0000-0000-0000-000000000000";
}

static bool nv_same(const struct nv *a, const struct nv *b)
{
    if (a == NULL || b == NULL) {
        return (a == NULL || nv_is(a, NV_NIL)) && (b == NULL || nv_is(b, NV_NIL));
    }
    return nv_equal(a, b);
}

/* Positional argument count: too many -> "Too many arguments (expected N, found M)". */
static bool argc_ok(struct sm_ex *x, const struct nv *params, size_t max)
{
    if (nv_len(params) > max) {
        nv_err_add(x->err, "", EINVAL, "Too many arguments (expected %zu, found %zu)", max,
                   nv_len(params));
        return false;
    }
    return true;
}

static const struct nv *find_existing(struct sm_ex *x, enum sm_table t, int64_t id)
{
    const struct nv *r = sm__find(x->s, t, id);
    if (r == NULL) {
        nv_err_add(x->err, NULL, ENOENT, "%s %" PRId64 " does not exist", sm_table_verbose(t), id);
    }
    return r;
}

/* Merge: old row copy with the validated keys of data replacing. */
static struct nv *merged(const struct nv *old, const struct nv *data)
{
    struct nv *m = nv_copy(old);
    for (size_t i = 0; i < data->u.m.n; i++) {
        nv_set(m, data->u.m.kv[i].k, nv_copy(data->u.m.kv[i].v));
    }
    return m;
}

/* Two spellings of one reference: {"subsys": 1} == {"subsys_id": 1}. */
static bool alias(struct sm_ex *x, struct nv *d, const char *prefix, const char *canon,
                  const char *alt, bool required)
{
    struct nv *a = nv_take(d, alt);
    if (a == NULL) {
        if (required && nv_get(d, canon) == NULL) {
            char attr[160];
            snprintf(attr, sizeof attr, "%s.%s", prefix, canon);
            nv_err_add(x->err, attr, EINVAL, "Field required");
            return false;
        }
        return true;
    }
    const struct nv *c = nv_get(d, canon);
    if (c != NULL && !nv_equal(c, a)) {
        char attr[160];
        snprintf(attr, sizeof attr, "%s.%s", prefix, alt);
        nv_err_add(x->err, attr, EINVAL, "%s and %s name different objects", alt, canon);
        nv_free(a);
        return false;
    }
    nv_set(d, canon, a);
    return true;
}

static void finish_write(struct sm_ex *x, enum sm_table t, int64_t id)
{
    x->changed = true;
    x->result = id > 0 ? sm_entry(x->s, t, id, NULL) : nv_bool(true);
}

/* The end of every create/update: d (the validated input) goes; n (the
 * new row) is stored under a new or the old id, or dropped on failure or
 * in a dry run. */
static int commit_row(struct sm_ex *x, enum sm_table t, struct nv *d, struct nv *n, bool create,
                      int64_t id)
{
    nv_free(d);
    if (failed(x)) {
        nv_free(n);
        return -1;
    }
    if (!x->mutate) {
        nv_free(n);
        return 0;
    }
    if (create) {
        id = sm__next_id(x->s, t);
        nv_set_int(n, "id", id);
    }
    sm__replace(x->s, t, n);
    finish_write(x, t, id);
    return 0;
}

/* [data] for create, [id, data] for update; data must be present. */
static bool write_args(struct sm_ex *x, const struct nv *params, bool create, const char *pfx,
                       int64_t *id, const struct nv **in)
{
    *id = 0;
    if (!argc_ok(x, params, create ? 1 : 2)) {
        return false;
    }
    if (!create && !sm__arg_int("id", nv_at(params, 0), id, x->err)) {
        return false;
    }
    *in = nv_at(params, create ? 0 : 1);
    if (*in == NULL) {
        nv_err_add(x->err, pfx, EINVAL, "Field required");
        return false;
    }
    return true;
}

/* "a,b,c,..." of up to 3 names/numbers. */
static void first3(char *out, size_t len, const char *const *items, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && i < 3 && o < len; i++) {
        o += (size_t)snprintf(out + o, len - o, "%s%s", i ? "," : "", items[i]);
    }
    if (n > 3 && o < len) {
        snprintf(out + o, len - o, ",...");
    }
}

/* Rows of table t whose column equals id (borrowed). */
static size_t rows_with(const struct sm_state *s, enum sm_table t, const char *col, int64_t id,
                        const struct nv **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < s->t[t].n; i++) {
        if (nv_get_int(s->t[t].row[i], col, -1) == id) {
            if (out != NULL && n < max) {
                out[n] = s->t[t].row[i];
            }
            n++;
        }
    }
    return n;
}

static void remove_with(struct sm_state *s, enum sm_table t, const char *col, int64_t id)
{
    for (size_t i = s->t[t].n; i-- > 0;) {
        if (nv_get_int(s->t[t].row[i], col, -1) == id) {
            sm__remove(s, t, nv_get_int(s->t[t].row[i], "id", 0));
        }
    }
}

static const struct nv *unique_hit(const struct sm_state *s, enum sm_table t, const char *col,
                                   const char *val, int64_t self)
{
    return sm__unique(s, t, col, val, self);
}

/* ---- global ---- */

/* The global row appears with the first write (or nvmet.global.init, which
 * the first leader proposes). Its basenqn is drawn on the leader and
 * recorded apart from the other random draws, so a command prepared before
 * and applied after the init still replays its own draws. */
static void ensure_init(struct sm_ex *x)
{
    if (x->s->global != NULL) {
        return;
    }
    char nqn[128];
    const char *rec = x->replay ? nv_get_str(x->dev, "#basenqn") : NULL;
    if (rec != NULL) {
        snprintf(nqn, sizeof nqn, "%s", rec);
    } else {
        unsigned char b[16] = {0};
        if (!x->replay && x->env != NULL && x->env->random != NULL) {
            x->env->random(x->env->ctx, b, sizeof b);
        }
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        char u[37];
        sm__uuid_format(b, u);
        snprintf(nqn, sizeof nqn, "nqn.2011-06.com.truenas:uuid:%s", u);
        if (!x->replay) {
            nv_set_str(x->dev, "#basenqn", nqn);
        }
    }
    if (x->mutate) {
        sm__global_default(x->s, nqn);
        x->changed = true;
    }
}

static const struct sm_field global_fields[] = {
    {"basenqn", SF_NQN, 0, 0, 0, NULL},         {"kernel", SF_BOOL, 0, 0, 0, NULL},
    {"ana", SF_BOOL, 0, 0, 0, NULL},            {"rdma", SF_BOOL, 0, 0, 0, NULL},
    {"xport_referral", SF_BOOL, 0, 0, 0, NULL}, {"enabled", SF_BOOL, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL}};

static int global_update(struct sm_ex *x, const struct nv *params)
{
    if (!argc_ok(x, params, 1)) {
        return -1;
    }
    const struct nv *in = nv_at(params, 0);
    if (in == NULL) {
        nv_err_add(x->err, "nvmet_update", EINVAL, "Field required");
        return -1;
    }
    struct nv *d = sm__model("nvmet_update", global_fields, in, x->err);
    if (d == NULL) {
        return -1;
    }
    const struct nv *g = x->s->global;
    bool old_kernel = g == NULL || nv_get_bool(g, "kernel", true);
    bool old_ana = g != NULL && nv_get_bool(g, "ana", false);
    bool old_rdma = g != NULL && nv_get_bool(g, "rdma", false);
    if (nv_get(d, "kernel") != NULL && !nv_get_bool(d, "kernel", true) && old_kernel) {
        nv_err_add(x->err, "nvmet_global_update.kernel", EINVAL,
                   "SPDK is limited to enterprise licensed systems only.");
    }
    if (nv_get_bool(d, "ana", false) && !old_ana && !env_flag(x, "#ha")) {
        nv_err_add(x->err, "nvmet_global_update.ana", EINVAL,
                   "This platform does not support Asymmetric Namespace Access(ANA).");
    }
    if (nv_get_bool(d, "rdma", false) && !old_rdma && !env_flag(x, "#rdma")) {
        nv_err_add(x->err, "nvmet_global_update.rdma", EINVAL,
                   "This platform cannot support NVMe-oF(RDMA) or is missing a RDMA capable "
                   "NIC.");
    }
    if (failed(x)) {
        nv_free(d);
        return -1;
    }
    if (x->mutate) {
        struct nv *m = merged(x->s->global, d);
        sm__stamp(x->s, m);
        nv_free(x->s->global);
        x->s->global = m;
        x->changed = true;
        x->result = sm_global_entry(x->s);
    }
    nv_free(d);
    return 0;
}

/* ---- subsys ---- */

static const struct sm_field subsys_fields[] = {
    {"name", SF_NESTR, SF_REQ, 0, 0, NULL},
    {"subnqn", SF_NQN, SF_NULL, 0, 0, NULL},
    {"serial", SF_NESTR, SF_NULL | SF_MAXS, 0, 20, NULL},
    {"allow_any_host", SF_BOOL, 0, 0, 0, NULL},
    {"pi_enable", SF_BOOL, SF_NULL, 0, 0, NULL},
    {"qid_max", SF_INT, SF_NULL, 0, 0, NULL},
    {"ieee_oui", SF_STR, SF_NULL, 0, 0, NULL},
    {"ana", SF_BOOL, SF_NULL, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL}};

static char *derive_subnqn(const struct sm_state *s, const char *name)
{
    if (sm__valid_nqn(name)) {
        return strdup(name);
    }
    char *out = NULL;
    if (asprintf(&out, "%s:%s", basenqn(s), name) < 0) {
        return NULL;
    }
    /* truncate to 223 characters (code points) */
    size_t chars = 0, i = 0;
    for (; out[i] != '\0'; i++) {
        if (((unsigned char)out[i] & 0xc0) != 0x80 && ++chars > 223) {
            break;
        }
    }
    out[i] = '\0';
    return out;
}

static bool serial_printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e) {
            return false;
        }
    }
    return true;
}

/* Linked to an enabled port: its identity is visible to hosts. */
static bool subsys_exposed(const struct sm_state *s, int64_t id)
{
    for (size_t i = 0; i < s->t[SM_PORT_SUBSYS].n; i++) {
        const struct nv *l = s->t[SM_PORT_SUBSYS].row[i];
        if (nv_get_int(l, "subsys_id", -1) == id) {
            const struct nv *p = sm__find(s, SM_PORT, nv_get_int(l, "port_id", -1));
            if (p != NULL && nv_get_bool(p, "enabled", false)) {
                return true;
            }
        }
    }
    return false;
}

static int subsys_write(struct sm_ex *x, const struct nv *params, bool create)
{
    const char *pfx = create ? "nvmet_subsys_create" : "nvmet_subsys_update";
    int64_t id;
    const struct nv *in;
    if (!write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    struct sm_field f[sizeof subsys_fields / sizeof subsys_fields[0]];
    memcpy(f, subsys_fields, sizeof f);
    if (!create) {
        f[0].flags &= ~(unsigned)SF_REQ;
    }
    struct nv *d = sm__model(pfx, f, in, x->err);
    if (d == NULL) {
        return -1;
    }
    const struct nv *old = NULL;
    if (!create && (old = find_existing(x, SM_SUBSYS, id)) == NULL) {
        nv_free(d);
        return -1;
    }
    struct nv *n;
    if (create) {
        n = nv_map();
        nv_set_int(n, "id", 0);
        nv_set_str(n, "name", "");
        nv_set_nil(n, "subnqn");
        nv_set_nil(n, "serial");
        nv_set_bool(n, "allow_any_host", false);
        nv_set_nil(n, "pi_enable");
        nv_set_nil(n, "qid_max");
        nv_set_nil(n, "ieee_oui");
        nv_set_nil(n, "ana");
        struct nv *m = merged(n, d);
        nv_free(n);
        n = m;
    } else {
        n = merged(old, d);
    }
    char attr[160];
    const char *name = nv_get_str(n, "name");
    if (unique_hit(x->s, SM_SUBSYS, "name", name, id) != NULL) {
        snprintf(attr, sizeof attr, "%s.name", pfx);
        nv_err_add(x->err, attr, EINVAL, "Object with this name already exists");
    }
    const char *sub = nv_get_str(n, "subnqn");
    if (sub == NULL || sub[0] == '\0') {
        char *dn = derive_subnqn(x->s, name);
        nv_set_str(n, "subnqn", dn);
        free(dn);
    }
    sub = nv_get_str(n, "subnqn");
    if (sub != NULL && unique_hit(x->s, SM_SUBSYS, "subnqn", sub, id) != NULL) {
        snprintf(attr, sizeof attr, "%s.subnqn", pfx);
        nv_err_add(x->err, attr, EINVAL, "Object with this subnqn already exists");
    }
    const char *ser = nv_get_str(n, "serial");
    if (ser != NULL) {
        snprintf(attr, sizeof attr, "%s.serial", pfx);
        if (!serial_printable(ser)) {
            nv_err_add(x->err, attr, EINVAL, "Serial must be printable ASCII");
        } else if (unique_hit(x->s, SM_SUBSYS, "serial", ser, id) != NULL) {
            nv_err_add(x->err, attr, EINVAL, "Object with this serial already exists");
        }
    }
    if (!nv_get_is_nil(n, "ana") && !env_flag(x, "#ha")) {
        snprintf(attr, sizeof attr, "%s.ana", pfx);
        nv_err_add(x->err, attr, EINVAL,
                   "This platform does not support Asymmetric Namespace Access(ANA).");
    }
    if (!create && running(x->s) && subsys_exposed(x->s, id)) {
        static const char *const ident[] = {"subnqn", "serial", "ieee_oui", NULL};
        for (size_t i = 0; ident[i] != NULL; i++) {
            if (nv_get(d, ident[i]) != NULL && !nv_same(nv_get(old, ident[i]), nv_get(n, ident[i]))) {
                snprintf(attr, sizeof attr, "%s.%s", pfx, ident[i]);
                nv_err_add(x->err, attr, EINVAL, ACTIVE_MSG, ident[i], "subsystem");
            }
        }
    }
    if (!failed(x) && nv_get_str(n, "serial") == NULL) {
        /* 20 hex characters, retried to avoid existing serials */
        int tries = 0;
        char hex[21];
        for (; tries < 10; tries++) {
            unsigned char b[10];
            sm__random(x, b, sizeof b);
            for (size_t i = 0; i < 10; i++) {
                hex[2 * i] = hexd[b[i] >> 4];
                hex[2 * i + 1] = hexd[b[i] & 15];
            }
            hex[20] = '\0';
            if (unique_hit(x->s, SM_SUBSYS, "serial", hex, id) == NULL) {
                break;
            }
        }
        if (tries == 10) {
            nv_err_call(x->err, EFAULT, "Failed to generate a random serial for subsystem");
        } else {
            nv_set_str(n, "serial", hex);
        }
    }
    return commit_row(x, SM_SUBSYS, d, n, create, id);
}

static const struct sm_field force_fields[] = {{"force", SF_BOOL, 0, 0, 0, NULL},
                                               {NULL, 0, 0, 0, 0, NULL}};
static const struct sm_field remove_fields[] = {{"remove", SF_BOOL, 0, 0, 0, NULL},
                                                {NULL, 0, 0, 0, 0, NULL}};

/* [id, options]: returns the options flag (force/remove), -1 on error. */
static int delete_args(struct sm_ex *x, const struct nv *params, const struct sm_field *opt,
                       int64_t *id)
{
    if (!argc_ok(x, params, opt != NULL ? 2 : 1) ||
        !sm__arg_int("id", nv_at(params, 0), id, x->err)) {
        return -1;
    }
    const struct nv *o = nv_at(params, 1);
    if (opt == NULL || o == NULL) {
        return 0;
    }
    struct nv *d = sm__model("options", opt, o, x->err);
    if (d == NULL) {
        return -1;
    }
    int flag = nv_get_bool(d, opt[0].name, false) ? 1 : 0;
    nv_free(d);
    return flag;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int subsys_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int force = delete_args(x, params, force_fields, &id);
    const struct nv *row = force < 0 ? NULL : find_existing(x, SM_SUBSYS, id);
    if (row == NULL) {
        return -1;
    }
    const char *name = nv_get_str(row, "name");
    size_t nns = rows_with(x->s, SM_NAMESPACE, "subsys_id", id, NULL, 0);
    size_t nport = rows_with(x->s, SM_PORT_SUBSYS, "subsys_id", id, NULL, 0);
    if (!force && nns > 0) {
        int64_t *ids = calloc(nns, sizeof *ids);
        size_t k = 0;
        for (size_t i = 0; i < x->s->t[SM_NAMESPACE].n; i++) {
            const struct nv *r = x->s->t[SM_NAMESPACE].row[i];
            if (nv_get_int(r, "subsys_id", -1) == id) {
                ids[k++] = nv_get_int(r, "nsid", 0);
            }
        }
        qsort(ids, k, sizeof *ids, cmp_i64);
        char buf[96] = "";
        size_t o = 0;
        for (size_t i = 0; i < k && i < 3; i++) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%" PRId64, i ? "," : "", ids[i]);
        }
        if (k > 3) {
            snprintf(buf + o, sizeof buf - o, ",...");
        }
        free(ids);
        if (nns == 1) {
            nv_err_add(x->err, "nvmet_subsys_delete.id", EINVAL,
                       "Subsystem %s contains 1 namespace: %s", name, buf);
        } else {
            nv_err_add(x->err, "nvmet_subsys_delete.id", EINVAL,
                       "Subsystem %s contains %zu namespaces: %s", name, nns, buf);
        }
    }
    if (!force && nport > 0) {
        nv_err_add(x->err, "nvmet_subsys_delete.id", EINVAL, "Subsystem %s visible on %zu port%s",
                   name, nport, nport == 1 ? "" : "s");
    }
    if (failed(x)) {
        return -1;
    }
    if (x->mutate) {
        remove_with(x->s, SM_NAMESPACE, "subsys_id", id);
        remove_with(x->s, SM_PORT_SUBSYS, "subsys_id", id);
        remove_with(x->s, SM_HOST_SUBSYS, "subsys_id", id);
        sm__remove(x->s, SM_SUBSYS, id);
        finish_write(x, SM_SUBSYS, 0);
    }
    return 0;
}

/* ---- namespace ---- */

static const char *const device_types[] = {"ZVOL", "ZVOL", "FILE", "FILE", "BLOCK", "BLOCK",
                                           NULL};

static const struct sm_field ns_fields[] = {
    {"subsys_id", SF_INT, 0, 0, 0, NULL},
    {"subsys", SF_INT, 0, 0, 0, NULL},
    {"device_type", SF_ENUM, 0, 0, 0, device_types},
    {"device_path", SF_PATH, 0, 0, 0, NULL},
    {"device", SF_NESTR, 0, 0, 0, NULL},
    {"nsid", SF_INT, SF_NULL | SF_MIN | SF_MAXX, 1, 0xFFFFFFFFLL, NULL},
    {"filesize", SF_INT, SF_NULL | SF_MIN, 0, 0, NULL},
    {"enabled", SF_BOOL, 0, 0, 0, NULL},
    {"device_uuid", SF_STR, SF_NULL, 0, 0, NULL},
    {"device_nguid", SF_STR, SF_NULL, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL}};

/* The brief's "device" shorthand -> device_type + device_path. */
static bool ns_device(struct sm_ex *x, struct nv *d, const char *pfx, bool create)
{
    char attr[160];
    struct nv *dev = nv_take(d, "device");
    if (dev == NULL) {
        if (create) {
            if (nv_get(d, "device_type") == NULL) {
                snprintf(attr, sizeof attr, "%s.device_type", pfx);
                nv_err_add(x->err, attr, EINVAL, "Field required");
            }
            if (nv_get(d, "device_path") == NULL) {
                snprintf(attr, sizeof attr, "%s.device_path", pfx);
                nv_err_add(x->err, attr, EINVAL, "Field required");
            }
        }
        return !failed(x);
    }
    snprintf(attr, sizeof attr, "%s.device", pfx);
    const char *s = dev->u.s.p;
    const char *type = strncmp(s, "zvol/", 5) == 0 ? "ZVOL"
                       : strncmp(s, "/dev/", 5) == 0 ? "BLOCK"
                       : s[0] == '/'               ? "FILE"
                                                   : NULL;
    if (nv_get(d, "device_type") != NULL || nv_get(d, "device_path") != NULL) {
        nv_err_add(x->err, attr, EINVAL,
                   "Give either device or device_type and device_path, not both");
    } else if (type == NULL) {
        nv_err_add(x->err, attr, EINVAL,
                   "Value error, device must be zvol/<pool>/<volume> or an absolute path: %s", s);
    } else {
        char *p = sm__normpath(s);
        nv_set_str(d, "device_type", type);
        nv_set_str(d, "device_path", p);
        free(p);
    }
    nv_free(dev);
    return !failed(x);
}

/* Reference §3.1 step 3 (plus BLOCK). Returns the device kind seen. */
static int ns_path_check(struct sm_ex *x, const char *pfx, const char *type, const char *path)
{
    char attr[160], os[4200];
    snprintf(attr, sizeof attr, "%s.device_path", pfx);
    if (strcmp(type, "ZVOL") == 0) {
        if (strncmp(path, "zvol/", 5) != 0) {
            nv_err_add(x->err, attr, EINVAL, "ZVOL device_path must start with \"zvol/\": %s",
                       path);
            return -1;
        }
        size_t o = (size_t)snprintf(os, sizeof os, "/dev/zvol/");
        for (const char *p = path + 5; *p != '\0' && o + 1 < sizeof os; p++) {
            os[o++] = *p == ' ' ? '+' : *p;
        }
        os[o] = '\0';
        int k = sm__devstat(x, os);
        if (k != -1 && k != SM_DEV_BLOCK) {
            nv_err_add(x->err, attr, EINVAL, "ZVOL device_path must be a block device: %s", path);
        }
        return k;
    }
    if (strcmp(type, "BLOCK") == 0) {
        int k = path[0] == '/' ? sm__devstat(x, path) : SM_DEV_OTHER;
        if (k != -1 && k != SM_DEV_BLOCK) {
            nv_err_add(x->err, attr, EINVAL, "BLOCK device_path must be a block device: %s",
                       path);
        }
        return k;
    }
    int k = path[0] == '/' ? sm__devstat(x, path) : SM_DEV_NOPARENT;
    if (k == SM_DEV_NOPARENT) {
        nv_err_add(x->err, attr, EINVAL,
                   "FILE device_path must reside in an existing directory on a dataset: %s",
                   path);
    } else if (k == SM_DEV_DIR) {
        nv_err_add(x->err, attr, EINVAL, "FILE device_path must not be a directory: %s", path);
    } else if (k == SM_DEV_OTHER) {
        nv_err_add(x->err, attr, EINVAL, "FILE device_path must be a regular file: %s", path);
    }
    return k;
}

static bool ns_uuid(struct sm_ex *x, struct nv *n, const char *pfx, const char *key, int64_t self)
{
    char attr[160], u[37];
    snprintf(attr, sizeof attr, "%s.%s", pfx, key);
    const char *v = nv_get_str(n, key);
    if (v != NULL && v[0] != '\0') {
        if (!sm__uuid_norm(v, u)) {
            nv_err_add(x->err, attr, EINVAL, "Value error, badly formed hexadecimal UUID string");
            return false;
        }
        const struct nv *hit = unique_hit(x->s, SM_NAMESPACE, key, u, self);
        if (hit != NULL) {
            const struct nv *s = sm__find(x->s, SM_SUBSYS, nv_get_int(hit, "subsys_id", 0));
            nv_err_add(x->err, attr, EINVAL, "This %s already used by subsystem: %s", key,
                       s != NULL ? nv_get_str(s, "name") : "?");
            return false;
        }
        nv_set_str(n, key, u);
        return true;
    }
    return true;
}

static void ns_uuid_generate(struct sm_ex *x, struct nv *n, const char *key, int64_t self)
{
    const char *v = nv_get_str(n, key);
    if (v != NULL && v[0] != '\0') {
        return;
    }
    for (int tries = 0; tries < 10; tries++) {
        unsigned char b[16];
        char u[37];
        sm__random(x, b, sizeof b);
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        sm__uuid_format(b, u);
        if (unique_hit(x->s, SM_NAMESPACE, key, u, self) == NULL) {
            nv_set_str(n, key, u);
            return;
        }
    }
    nv_err_call(x->err, EFAULT, "Failed to generate a %s for subsystem", key);
}

static int ns_write(struct sm_ex *x, const struct nv *params, bool create)
{
    const char *pfx = create ? "nvmet_namespace_create" : "nvmet_namespace_update";
    char attr[160];
    int64_t id;
    const struct nv *in;
    if (!write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    struct nv *d = sm__model(pfx, ns_fields, in, x->err);
    if (d == NULL) {
        return -1;
    }
    if (!alias(x, d, pfx, "subsys_id", "subsys", create) || !ns_device(x, d, pfx, create)) {
        nv_free(d);
        return -1;
    }
    const struct nv *old = NULL;
    if (!create && (old = find_existing(x, SM_NAMESPACE, id)) == NULL) {
        nv_free(d);
        return -1;
    }
    struct nv *n;
    if (create) {
        struct nv *base = nv_map();
        nv_set_int(base, "id", 0);
        nv_set_nil(base, "nsid");
        nv_set_int(base, "subsys_id", 0);
        nv_set_str(base, "device_type", "ZVOL");
        nv_set_str(base, "device_path", "");
        nv_set_nil(base, "dataset");
        nv_set_nil(base, "relative_path");
        nv_set_nil(base, "filesize");
        nv_set_nil(base, "device_uuid");
        nv_set_nil(base, "device_nguid");
        nv_set_bool(base, "enabled", true);
        n = merged(base, d);
        nv_free(base);
    } else {
        n = merged(old, d);
        /* the subsystem of a namespace never changes (reference §3.2) */
        nv_set_int(n, "subsys_id", nv_get_int(old, "subsys_id", 0));
    }
    int64_t sid = nv_get_int(d, "subsys_id", nv_get_int(n, "subsys_id", 0));
    /* 1. subsystem exists */
    if (sm__find(x->s, SM_SUBSYS, sid) == NULL) {
        snprintf(attr, sizeof attr, "%s.subsys_id", pfx);
        nv_err_add(x->err, attr, EINVAL, "No subsystem with ID %" PRId64, sid);
    }
    sid = nv_get_int(n, "subsys_id", 0);
    /* 2. nsid unique in the subsystem */
    const struct nv *nsid = nv_get(n, "nsid");
    if (nv_is(nsid, NV_INT)) {
        for (size_t i = 0; i < x->s->t[SM_NAMESPACE].n; i++) {
            const struct nv *r = x->s->t[SM_NAMESPACE].row[i];
            if (nv_get_int(r, "subsys_id", -1) == sid && nv_get_int(r, "nsid", -1) == nsid->u.i &&
                nv_get_int(r, "id", 0) != id) {
                snprintf(attr, sizeof attr, "%s.nsid", pfx);
                nv_err_add(x->err, attr, EINVAL,
                           "This record already exists (Subsystem ID: %" PRId64 "/NSID: %" PRId64
                           ")",
                           sid, nsid->u.i);
                break;
            }
        }
    }
    /* 3. type and path */
    const char *type = nv_get_str(n, "device_type");
    const char *path = nv_get_str(n, "device_path");
    bool path_given = create || nv_get(d, "device_path") != NULL || nv_get(d, "device_type") != NULL;
    int kind = path_given ? ns_path_check(x, pfx, type, path) : SM_DEV_FILE;
    /* 4. path used by another namespace */
    const struct nv *hit = unique_hit(x->s, SM_NAMESPACE, "device_path", path, id);
    if (hit != NULL) {
        const struct nv *s = sm__find(x->s, SM_SUBSYS, nv_get_int(hit, "subsys_id", 0));
        snprintf(attr, sizeof attr, "%s.device_path", pfx);
        nv_err_add(x->err, attr, EINVAL, "This device_path already used by subsystem: %s",
                   s != NULL ? nv_get_str(s, "name") : "?");
    }
    /* 6. an active namespace changes only enabled and filesize */
    if (!create && nv_get_bool(old, "enabled", false) && running(x->s)) {
        if (nv_get(d, "device_uuid") != NULL && nv_get_is_nil(d, "device_uuid")) {
            nv_set_str(n, "device_uuid", "");
        }
        if (nv_get(d, "device_nguid") != NULL && nv_get_is_nil(d, "device_nguid")) {
            nv_set_str(n, "device_nguid", "");
        }
        static const char *const keys[] = {"nsid", "device_type", "device_path", "device_uuid",
                                           "device_nguid", NULL};
        for (size_t i = 0; keys[i] != NULL; i++) {
            const struct nv *a = nv_get(old, keys[i]), *b = nv_get(n, keys[i]);
            if (nv_get(d, keys[i]) != NULL && !nv_same(a, b)) {
                if (nv_is(b, NV_STR)) {
                    char u[37];
                    if ((strcmp(keys[i], "device_uuid") == 0 ||
                         strcmp(keys[i], "device_nguid") == 0) &&
                        sm__uuid_norm(b->u.s.p, u) && nv_is(a, NV_STR) && strcmp(u, a->u.s.p) == 0) {
                        continue;
                    }
                }
                nv_err_add(x->err, pfx, EINVAL, ACTIVE_MSG, keys[i], "namespace");
            }
        }
    }
    /* 7. uuids: validated and unique when given, generated otherwise */
    if (!failed(x)) {
        ns_uuid(x, n, pfx, "device_uuid", id);
        ns_uuid(x, n, pfx, "device_nguid", id);
    }
    /* FILE size rules */
    if (!failed(x) && strcmp(type, "FILE") == 0) {
        const struct nv *fs = nv_get(n, "filesize");
        snprintf(attr, sizeof attr, "%s.filesize", pfx);
        if (kind == SM_DEV_MISSING && (!nv_is(fs, NV_INT) || fs->u.i == 0)) {
            nv_err_add(x->err, attr, EINVAL,
                       "Must supply filesize if device_path FILE does not exist.");
        } else if (!create && nv_is(fs, NV_INT) && nv_is(nv_get(old, "filesize"), NV_INT) &&
                   fs->u.i < nv_get_int(old, "filesize", 0)) {
            nv_err_add(x->err, attr, EINVAL,
                       "Shrinking an namespace file is not allowed. This can lead to data loss.");
        }
    }
    if (!failed(x)) {
        ns_uuid_generate(x, n, "device_uuid", id);
        ns_uuid_generate(x, n, "device_nguid", id);
    }
    if (!failed(x) && !nv_is(nv_get(n, "nsid"), NV_INT)) {
        /* lowest unused nsid in 1..65534 */
        int64_t want = 0;
        size_t cnt = rows_with(x->s, SM_NAMESPACE, "subsys_id", sid, NULL, 0);
        int64_t *used = calloc(cnt + 1, sizeof *used);
        size_t k = 0;
        for (size_t i = 0; i < x->s->t[SM_NAMESPACE].n; i++) {
            const struct nv *r = x->s->t[SM_NAMESPACE].row[i];
            if (nv_get_int(r, "subsys_id", -1) == sid && nv_get_int(r, "id", 0) != id) {
                used[k++] = nv_get_int(r, "nsid", 0);
            }
        }
        qsort(used, k, sizeof *used, cmp_i64);
        want = 1;
        for (size_t i = 0; i < k; i++) {
            if (used[i] == want) {
                want++;
            } else if (used[i] > want) {
                break;
            }
        }
        free(used);
        if (want > 65534) {
            nv_err_call(x->err, EINVAL, "Unable to determine namespace ID (NSID)");
        } else {
            nv_set_int(n, "nsid", want);
        }
    }
    return commit_row(x, SM_NAMESPACE, d, n, create, id);
}

static int ns_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int rm = delete_args(x, params, remove_fields, &id);
    if (rm < 0 || find_existing(x, SM_NAMESPACE, id) == NULL) {
        return -1;
    }
    if (x->mutate) {
        sm__remove(x->s, SM_NAMESPACE, id);
        finish_write(x, SM_NAMESPACE, 0);
    }
    return 0;
}

/* ---- port ---- */

static const char *const trtype_ip[] = {"TCP", "TCP", "RDMA", "RDMA", NULL};
static const char *const trtype_fc[] = {"FC", "FC", NULL};
static const char *const trtype_loop[] = {"LOOP", "LOOP", NULL};
static const char *const adrfam_ip[] = {"IPV4", "IPV4", "IPV6", "IPV6", NULL};
static const char *const adrfam_fc[] = {"FC", "FC", NULL};
static const char *const adrfam_loop[] = {"LOOP", "LOOP", NULL};

#define PORT_COMMON                                                                            \
    {"inline_data_size", SF_INT, SF_NULL, 0, 0, NULL},                                         \
        {"max_queue_size", SF_INT, SF_NULL, 0, 0, NULL},                                       \
        {"pi_enable", SF_BOOL, SF_NULL, 0, 0, NULL}, {"enabled", SF_BOOL, 0, 0, 0, NULL},      \
    {                                                                                          \
        NULL, 0, 0, 0, 0, NULL                                                                 \
    }

static const struct sm_field port_ip[] = {
    {"addr_trtype", SF_ENUM, SF_REQ, 0, 0, trtype_ip}, {"addr_traddr", SF_IP, SF_REQ, 0, 0, NULL},
    {"addr_trsvcid", SF_TRSVCID, 0, 0, 0, NULL},      {"addr_adrfam", SF_ENUM, 0, 0, 0, adrfam_ip},
    PORT_COMMON};
static const struct sm_field port_fc[] = {
    {"addr_trtype", SF_ENUM, SF_REQ, 0, 0, trtype_fc},
    {"addr_traddr", SF_NESTR, SF_REQ, 0, 0, NULL},
    {"addr_adrfam", SF_ENUM, 0, 0, 0, adrfam_fc},
    PORT_COMMON};
static const struct sm_field port_loop[] = {
    {"addr_trtype", SF_ENUM, SF_REQ, 0, 0, trtype_loop},
    {"addr_traddr", SF_NESTR, SF_REQ, 0, 0, NULL},
    {"addr_adrfam", SF_ENUM, 0, 0, 0, adrfam_loop},
    PORT_COMMON};

static const struct {
    const char *tag, *member;
    const struct sm_field *f;
} port_variants[] = {{"TCP", "NVMetPortUpdateRDMATCP", port_ip},
                     {"RDMA", "NVMetPortUpdateRDMATCP", port_ip},
                     {"FC", "NVMetPortUpdateFC", port_fc},
                     {"LOOP", "NVMetPortUpdateLOOP", port_loop}};

static bool is_ip_trtype(const char *t) { return strcmp(t, "TCP") == 0 || strcmp(t, "RDMA") == 0; }

/* Derive addr_adrfam / addr_trsvcid of the merged row n and check a given
 * addr_adrfam agrees. */
static void port_normalize(struct sm_ex *x, struct nv *n, const struct nv *d, const char *pfx)
{
    char attr[160];
    const char *tr = nv_get_str(n, "addr_trtype");
    const char *addr = nv_get_str(n, "addr_traddr");
    const char *fam;
    if (is_ip_trtype(tr)) {
        int f = sm__ip_family(addr);
        if (f == 0) {
            snprintf(attr, sizeof attr, "%s.addr_traddr", pfx);
            nv_err_add(x->err, attr, EINVAL,
                       "Input should be '' or value is not a valid IPv4 or IPv6 address");
            return;
        }
        fam = f == 4 ? "IPV4" : "IPV6";
        if (!nv_is(nv_get(n, "addr_trsvcid"), NV_INT)) {
            nv_set_int(n, "addr_trsvcid", 4420);
        }
    } else {
        fam = strcmp(tr, "FC") == 0 ? "FC" : "LOOP";
        nv_set_nil(n, "addr_trsvcid");
    }
    const char *given = nv_get_str(d, "addr_adrfam");
    if (given != NULL && strcmp(given, fam) != 0) {
        snprintf(attr, sizeof attr, "%s.addr_adrfam", pfx);
        nv_err_add(x->err, attr, EINVAL, "addr_adrfam %s does not match addr_traddr %s (%s)",
                   given, addr, fam);
    }
    nv_set_str(n, "addr_adrfam", fam);
}

static void port_duplicate(struct sm_ex *x, const struct nv *n, const char *pfx, int64_t self)
{
    const char *tr = nv_get_str(n, "addr_trtype"), *addr = nv_get_str(n, "addr_traddr");
    for (size_t i = 0; i < x->s->t[SM_PORT].n; i++) {
        const struct nv *p = x->s->t[SM_PORT].row[i];
        if (nv_get_int(p, "id", 0) == self || strcmp(nv_get_str(p, "addr_trtype"), tr) != 0 ||
            strcmp(nv_get_str(p, "addr_traddr"), addr) != 0) {
            continue;
        }
        if (is_ip_trtype(tr) && nv_get_int(p, "addr_trsvcid", 0) != nv_get_int(n, "addr_trsvcid", 0)) {
            continue;
        }
        char attr[160];
        snprintf(attr, sizeof attr, "%s.addr_traddr", pfx);
        nv_err_add(x->err, attr, EINVAL,
                   "There already is a port using the same transport and address");
        return;
    }
}

static int port_create(struct sm_ex *x, const struct nv *params)
{
    const char *pfx = "nvmet_port_create";
    if (!argc_ok(x, params, 1)) {
        return -1;
    }
    const struct nv *in = nv_at(params, 0);
    if (in == NULL) {
        nv_err_add(x->err, pfx, EINVAL, "Field required");
        return -1;
    }
    if (!sm__is_model(pfx, in, x->err)) {
        return -1;
    }
    const struct nv *tag = nv_get(in, "addr_trtype");
    if (tag == NULL) {
        nv_err_add(x->err, "nvmet_port_create.addr_trtype", EINVAL, "Field required");
        return -1;
    }
    const struct sm_field *f = NULL;
    for (size_t i = 0; i < sizeof port_variants / sizeof port_variants[0] && f == NULL; i++) {
        if (nv_is(tag, NV_STR) && strcmp(tag->u.s.p, port_variants[i].tag) == 0) {
            f = port_variants[i].f;
        }
    }
    if (f == NULL) {
        char *t = nv_is(tag, NV_STR) ? strdup(tag->u.s.p) : nv_dump(tag);
        nv_err_add(x->err, pfx, EINVAL,
                   "Input tag '%s' found using 'addr_trtype' does not match any of the expected "
                   "tags: 'TCP', 'RDMA', 'FC', 'LOOP'",
                   t);
        free(t);
        return -1;
    }
    char vp[160];
    snprintf(vp, sizeof vp, "%s.%s", pfx, tag->u.s.p);
    struct nv *d = sm__model(vp, f, in, x->err);
    if (d == NULL) {
        return -1;
    }
    struct nv *base = nv_map();
    nv_set_int(base, "id", 0);
    nv_set_int(base, "index", 0);
    nv_set_nil(base, "addr_trtype");
    nv_set_nil(base, "addr_trsvcid");
    nv_set_nil(base, "addr_traddr");
    nv_set_nil(base, "addr_adrfam");
    nv_set_nil(base, "inline_data_size");
    nv_set_nil(base, "max_queue_size");
    nv_set_nil(base, "pi_enable");
    nv_set_bool(base, "enabled", true);
    struct nv *n = merged(base, d);
    nv_free(base);
    port_normalize(x, n, d, pfx);
    if (!failed(x)) {
        port_duplicate(x, n, pfx, 0);
    }
    nv_free(d);
    int64_t index = 0;
    if (!failed(x)) {
        /* lowest unused index in 1..31999 */
        for (index = 1; index < 32000; index++) {
            bool used = false;
            for (size_t i = 0; i < x->s->t[SM_PORT].n && !used; i++) {
                used = nv_get_int(x->s->t[SM_PORT].row[i], "index", 0) == index;
            }
            if (!used) {
                break;
            }
        }
        if (index == 32000) {
            nv_err_call(x->err, EINVAL, "Unable to determine port index");
        }
    }
    if (failed(x)) {
        nv_free(n);
        return -1;
    }
    if (x->mutate) {
        int64_t id = sm__next_id(x->s, SM_PORT);
        nv_set_int(n, "id", id);
        nv_set_int(n, "index", index);
        sm__insert(x->s, SM_PORT, n);
        finish_write(x, SM_PORT, id);
    } else {
        nv_free(n);
    }
    return 0;
}

static int port_update(struct sm_ex *x, const struct nv *params)
{
    const char *pfx = "nvmet_port_update";
    int64_t id;
    if (!argc_ok(x, params, 2) || !sm__arg_int("id", nv_at(params, 0), &id, x->err)) {
        return -1;
    }
    const struct nv *in = nv_at(params, 1);
    if (in == NULL) {
        nv_err_add(x->err, pfx, EINVAL, "Field required");
        return -1;
    }
    if (!sm__is_model(pfx, in, x->err)) {
        return -1;
    }
    /* a (non-discriminated) union of the update models: the first member
     * that accepts the input wins; otherwise every member's errors */
    static const struct {
        const char *member;
        const struct sm_field *f;
    } members[] = {{"NVMetPortUpdateRDMATCP", port_ip},
                   {"NVMetPortUpdateFC", port_fc},
                   {"NVMetPortUpdateLOOP", port_loop}};
    struct nv *d = NULL;
    struct nv_err all;
    nv_err_init(&all);
    for (size_t i = 0; i < 3 && d == NULL; i++) {
        struct sm_field f[12];
        size_t k = 0;
        for (; members[i].f[k].name != NULL; k++) {
            f[k] = members[i].f[k];
            f[k].flags &= ~(unsigned)SF_REQ;
        }
        f[k] = members[i].f[k];
        char mp[160];
        snprintf(mp, sizeof mp, "%s.%s", pfx, members[i].member);
        struct nv_err e;
        nv_err_init(&e);
        d = sm__model(mp, f, in, &e);
        for (size_t j = 0; d == NULL && j < e.n; j++) {
            nv_err_add(&all, e.items[j].attr, e.items[j].errnum, "%s", e.items[j].msg);
        }
        nv_err_clear(&e);
    }
    if (d == NULL) {
        for (size_t j = 0; j < all.n; j++) {
            nv_err_add(x->err, all.items[j].attr, all.items[j].errnum, "%s", all.items[j].msg);
        }
        nv_err_clear(&all);
        return -1;
    }
    nv_err_clear(&all);
    const struct nv *old = find_existing(x, SM_PORT, id);
    if (old == NULL) {
        nv_free(d);
        return -1;
    }
    struct nv *n = merged(old, d);
    port_normalize(x, n, d, pfx);
    if (!failed(x)) {
        port_duplicate(x, n, pfx, id);
    }
    if (!failed(x) && rows_with(x->s, SM_PORT_SUBSYS, "port_id", id, NULL, 0) > 0 &&
        nv_get_bool(old, "enabled", false) && running(x->s)) {
        static const char *const keys[] = {"addr_trtype",    "addr_trsvcid",   "addr_traddr",
                                           "inline_data_size", "max_queue_size", "pi_enable",
                                           NULL};
        for (size_t i = 0; keys[i] != NULL; i++) {
            if (nv_get(d, keys[i]) != NULL && !nv_same(nv_get(old, keys[i]), nv_get(n, keys[i]))) {
                char attr[160];
                snprintf(attr, sizeof attr, "%s.%s", pfx, keys[i]);
                nv_err_add(x->err, attr, EINVAL, ACTIVE_MSG, keys[i], "port");
            }
        }
    }
    nv_free(d);
    if (failed(x)) {
        nv_free(n);
        return -1;
    }
    if (x->mutate) {
        sm__replace(x->s, SM_PORT, n);
        finish_write(x, SM_PORT, id);
    } else {
        nv_free(n);
    }
    return 0;
}

/* "{what} used by 1 subsystem: a" / "... used by n subsystems: a,b,c,..." */
static void used_by(struct sm_ex *x, const char *attr, const char *what, enum sm_table link,
                    const char *col, int64_t id)
{
    size_t n = rows_with(x->s, link, col, id, NULL, 0);
    const char *names[4];
    size_t k = 0;
    for (size_t i = 0; i < x->s->t[link].n && k < 4; i++) {
        const struct nv *l = x->s->t[link].row[i];
        if (nv_get_int(l, col, -1) == id) {
            const struct nv *s = sm__find(x->s, SM_SUBSYS, nv_get_int(l, "subsys_id", 0));
            names[k++] = s != NULL ? nv_get_str(s, "name") : "?";
        }
    }
    char buf[4096];
    first3(buf, sizeof buf, names, n);
    if (n == 1) {
        nv_err_add(x->err, attr, EINVAL, "%s used by 1 subsystem: %s", what, buf);
    } else {
        nv_err_add(x->err, attr, EINVAL, "%s used by %zu subsystems: %s", what, n, buf);
    }
}

static int port_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int force = delete_args(x, params, force_fields, &id);
    const struct nv *row = force < 0 ? NULL : find_existing(x, SM_PORT, id);
    if (row == NULL) {
        return -1;
    }
    if (!force && rows_with(x->s, SM_PORT_SUBSYS, "port_id", id, NULL, 0) > 0) {
        char what[64];
        snprintf(what, sizeof what, "Port #%" PRId64, nv_get_int(row, "index", 0));
        used_by(x, "nvmet_port_delete.id", what, SM_PORT_SUBSYS, "port_id", id);
        return -1;
    }
    if (x->mutate) {
        remove_with(x->s, SM_PORT_SUBSYS, "port_id", id);
        sm__remove(x->s, SM_PORT, id);
        finish_write(x, SM_PORT, 0);
    }
    return 0;
}

/* ---- host ---- */

static const char *const dhgroups[] = {"2048-BIT", "2048-BIT", "3072-BIT", "3072-BIT",
                                       "4096-BIT", "4096-BIT", "6144-BIT", "6144-BIT",
                                       "8192-BIT", "8192-BIT", NULL};
static const char *const hashes[] = {"SHA-256", "SHA-256", "SHA-384", "SHA-384", "SHA-512",
                                     "SHA-512", "SHA256",  "SHA-256", "SHA384",  "SHA-384",
                                     "SHA512",  "SHA-512", NULL};

static const struct sm_field host_fields[] = {
    {"hostnqn", SF_NQN, SF_REQ, 0, 0, NULL},
    {"description", SF_STR, 0, 0, 0, NULL},
    {"dhchap_key", SF_NESTR, SF_NULL, 0, 0, NULL},
    {"dhchap_ctrl_key", SF_NESTR, SF_NULL, 0, 0, NULL},
    {"dhchap_dhgroup", SF_ENUM, SF_NULL, 0, 0, dhgroups},
    {"dhchap_hash", SF_ENUM, 0, 0, 0, hashes},
    {NULL, 0, 0, 0, 0, NULL}};

static int host_write(struct sm_ex *x, const struct nv *params, bool create)
{
    const char *pfx = create ? "nvmet_host_create" : "nvmet_host_update";
    char attr[160];
    int64_t id;
    const struct nv *in;
    if (!write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    if (!sm__is_model(pfx, in, x->err)) {
        return -1;
    }
    /* the brief's "NULL" dhgroup spelling */
    struct nv *inc = nv_copy(in);
    const char *g = nv_get_str(inc, "dhchap_dhgroup");
    if (g != NULL && strcmp(g, "NULL") == 0) {
        nv_set_nil(inc, "dhchap_dhgroup");
    }
    struct sm_field f[sizeof host_fields / sizeof host_fields[0]];
    memcpy(f, host_fields, sizeof f);
    if (!create) {
        f[0].flags &= ~(unsigned)SF_REQ;
    }
    struct nv *d = sm__model(pfx, f, inc, x->err);
    nv_free(inc);
    if (d == NULL) {
        return -1;
    }
    const struct nv *old = NULL;
    if (!create && (old = find_existing(x, SM_HOST, id)) == NULL) {
        nv_free(d);
        return -1;
    }
    struct nv *n;
    if (create) {
        struct nv *base = nv_map();
        nv_set_int(base, "id", 0);
        nv_set_str(base, "hostnqn", "");
        nv_set_str(base, "description", "");
        nv_set_nil(base, "dhchap_key");
        nv_set_nil(base, "dhchap_ctrl_key");
        nv_set_nil(base, "dhchap_dhgroup");
        nv_set_str(base, "dhchap_hash", "SHA-256");
        n = merged(base, d);
        nv_free(base);
    } else {
        n = merged(old, d);
    }
    /* bi-directional authentication needs the host key (the reference's
     * intended model check, enforced here) */
    if (nv_get_str(n, "dhchap_ctrl_key") != NULL && nv_get_str(n, "dhchap_key") == NULL) {
        nv_err_add(x->err, pfx, EINVAL,
                   "Value error, Cannot configure bi-directional authentication without setting "
                   "dhchap_key");
        nv_free(d);
        nv_free(n);
        return -1;
    }
    if (unique_hit(x->s, SM_HOST, "hostnqn", nv_get_str(n, "hostnqn"), id) != NULL) {
        snprintf(attr, sizeof attr, "%s.hostnqn", pfx);
        nv_err_add(x->err, attr, EINVAL, "Object with this hostnqn already exists");
    }
    static const char *const keys[] = {"dhchap_key", "dhchap_ctrl_key"};
    for (size_t i = 0; i < 2; i++) {
        const char *k = nv_get_str(d, keys[i]);
        const char *m = k != NULL ? sm__dhchap_key_error(k) : NULL;
        if (m != NULL) {
            snprintf(attr, sizeof attr, "%s.%s", pfx, keys[i]);
            nv_err_add(x->err, attr, EINVAL, "%s", m);
        }
    }
    return commit_row(x, SM_HOST, d, n, create, id);
}

static int host_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int force = delete_args(x, params, force_fields, &id);
    const struct nv *row = force < 0 ? NULL : find_existing(x, SM_HOST, id);
    if (row == NULL) {
        return -1;
    }
    if (!force && rows_with(x->s, SM_HOST_SUBSYS, "host_id", id, NULL, 0) > 0) {
        char what[300];
        snprintf(what, sizeof what, "Host %s", nv_get_str(row, "hostnqn"));
        used_by(x, "nvmet_host_delete.id", what, SM_HOST_SUBSYS, "host_id", id);
        return -1;
    }
    if (x->mutate) {
        remove_with(x->s, SM_HOST_SUBSYS, "host_id", id);
        sm__remove(x->s, SM_HOST, id);
        finish_write(x, SM_HOST, 0);
    }
    return 0;
}

/* ---- host_subsys / port_subsys ---- */

static int link_write(struct sm_ex *x, const struct nv *params, enum sm_table t, bool create)
{
    bool host = t == SM_HOST_SUBSYS;
    const char *other = host ? "host" : "port";
    const char *ocol = host ? "host_id" : "port_id";
    enum sm_table ot = host ? SM_HOST : SM_PORT;
    char pfx[64], attr[160];
    snprintf(pfx, sizeof pfx, "nvmet_%s_subsys_%s", other, create ? "create" : "update");
    int64_t id;
    const struct nv *in;
    if (!write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    const struct sm_field f[] = {{ocol, SF_INT, 0, 0, 0, NULL},
                                 {other, SF_INT, 0, 0, 0, NULL},
                                 {"subsys_id", SF_INT, 0, 0, 0, NULL},
                                 {"subsys", SF_INT, 0, 0, 0, NULL},
                                 {NULL, 0, 0, 0, 0, NULL}};
    struct nv *d = sm__model(pfx, f, in, x->err);
    if (d == NULL) {
        return -1;
    }
    bool ok = alias(x, d, pfx, ocol, other, create);
    ok = alias(x, d, pfx, "subsys_id", "subsys", create) && ok;
    if (!ok) {
        nv_free(d);
        return -1;
    }
    const struct nv *old = NULL;
    if (!create && (old = find_existing(x, t, id)) == NULL) {
        nv_free(d);
        return -1;
    }
    struct nv *n;
    if (create) {
        n = nv_map();
        nv_set_int(n, "id", 0);
        nv_set_int(n, ocol, nv_get_int(d, ocol, 0));
        nv_set_int(n, "subsys_id", nv_get_int(d, "subsys_id", 0));
    } else {
        n = merged(old, d);
    }
    nv_free(d);
    int64_t oid = nv_get_int(n, ocol, 0), sid = nv_get_int(n, "subsys_id", 0);
    if (sm__find(x->s, ot, oid) == NULL) {
        snprintf(attr, sizeof attr, "%s.%s", pfx, ocol);
        nv_err_add(x->err, attr, EINVAL, "No %s with ID %" PRId64, other, oid);
    }
    if (sm__find(x->s, SM_SUBSYS, sid) == NULL) {
        snprintf(attr, sizeof attr, "%s.subsys_id", pfx);
        nv_err_add(x->err, attr, EINVAL, "No subsystem with ID %" PRId64, sid);
    }
    for (size_t i = 0; i < x->s->t[t].n; i++) {
        const struct nv *r = x->s->t[t].row[i];
        if (nv_get_int(r, ocol, -1) == oid && nv_get_int(r, "subsys_id", -1) == sid &&
            nv_get_int(r, "id", 0) != id) {
            snprintf(attr, sizeof attr, "%s.%s", pfx, ocol);
            /* the reference says "Host ID" for ports too */
            nv_err_add(x->err, attr, EINVAL,
                       "This record already exists (Host ID: %" PRId64 "/Subsystem ID: %" PRId64
                       ")",
                       oid, sid);
            break;
        }
    }
    return commit_row(x, t, NULL, n, create, id);
}

static int link_delete(struct sm_ex *x, const struct nv *params, enum sm_table t)
{
    int64_t id;
    if (delete_args(x, params, NULL, &id) < 0 || find_existing(x, t, id) == NULL) {
        return -1;
    }
    if (x->mutate) {
        sm__remove(x->s, t, id);
        finish_write(x, t, 0);
    }
    return 0;
}

/* ---- dispatch ---- */

int sm__exec(struct sm_ex *x, const char *method, const struct nv *params)
{
    if (!nv_is(params, NV_ARR)) {
        nv_err_set(x->err, NV_E_BAD_REQUEST, EINVAL, "params must be an array");
        return -1;
    }
    ensure_init(x);
    int crv = sm__cluster_exec(x, method, params);
    if (crv <= 0) {
        return crv;
    }
    if (strcmp(method, "nvmet.global.init") == 0) {
        if (x->mutate) {
            x->result = sm_global_entry(x->s);
        }
        return 0;
    }
    if (strcmp(method, "nvmet.global.update") == 0) {
        return global_update(x, params);
    }
    const char *dot = strrchr(method, '.');
    char svc[64];
    size_t l = dot != NULL ? (size_t)(dot - method) : 0;
    if (dot == NULL || l >= sizeof svc) {
        nv_err_set(x->err, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist");
        return -1;
    }
    memcpy(svc, method, l);
    svc[l] = '\0';
    int t = sm_table_of(svc);
    const char *verb = dot + 1;
    bool create = strcmp(verb, "create") == 0, update = strcmp(verb, "update") == 0;
    bool del = strcmp(verb, "delete") == 0;
    if (t < 0 || !(create || update || del)) {
        nv_err_set(x->err, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist");
        return -1;
    }
    switch ((enum sm_table)t) {
    case SM_SUBSYS:
        return del ? subsys_delete(x, params) : subsys_write(x, params, create);
    case SM_NAMESPACE:
        return del ? ns_delete(x, params) : ns_write(x, params, create);
    case SM_PORT:
        return del ? port_delete(x, params) : create ? port_create(x, params) : port_update(x, params);
    case SM_HOST:
        return del ? host_delete(x, params) : host_write(x, params, create);
    case SM_HOST_SUBSYS:
    case SM_PORT_SUBSYS:
        return del ? link_delete(x, params, (enum sm_table)t)
                   : link_write(x, params, (enum sm_table)t, create);
    default:
        break;
    }
    return -1;
}
