/* statemachine: every write of the API (TrueNAS's nvmet.* writes with the
 * additions of README "The API"), run identically by sm_prepare (checking,
 * recording the environment) and sm_apply (re-checking, mutating). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

/* ---- the environment, recorded on the leader and replayed on apply ---- */

const char sm__hexd[] = "0123456789abcdef";

void sm__random(struct sm_ex *x, unsigned char *buf, size_t len)
{
    if (x->replay) {
        const struct nv *h = nv_at(x->rnd, x->rnd_pos++);
        memset(buf, 0, len);
        if (nv_is(h, NV_STR) && h->u.s.len == len * 2) {
            for (size_t i = 0; i < len; i++) {
                const char *a = strchr(sm__hexd, h->u.s.p[2 * i]);
                const char *b = strchr(sm__hexd, h->u.s.p[2 * i + 1]);
                if (a != NULL && b != NULL) {
                    buf[i] = (unsigned char)(((a - sm__hexd) << 4) | (b - sm__hexd));
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
        h[2 * i] = sm__hexd[buf[i] >> 4];
        h[2 * i + 1] = sm__hexd[buf[i] & 15];
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

bool sm__env_flag(struct sm_ex *x, const char *key)
{
    if (x->replay) {
        return nv_get_bool(x->dev, key, false);
    }
    bool v = x->env != NULL && (strcmp(key, "#ha") == 0 ? x->env->ha : x->env->rdma_capable);
    nv_set_bool(x->dev, key, v);
    return v;
}

bool sm__env_flag_since(struct sm_ex *x, const char *key)
{
    if (x->replay && nv_get(x->dev, key) == NULL) {
        return true;
    }
    return sm__env_flag(x, key);
}

/* ---- small helpers ---- */

bool sm__failed(struct sm_ex *x)
{
    return nv_err_isset(x->err);
}

bool sm__running(const struct sm_state *s)
{
    return s->global != NULL && nv_get_bool(s->global, "enabled", false);
}

const char *sm__basenqn(const struct sm_state *s)
{
    const char *b = s->global != NULL ? nv_get_str(s->global, "basenqn") : NULL;
    return b != NULL ? b : "nqn.2011-06.com.truenas:uuid:00000000-0000-0000-0000-000000000000";
}

bool sm__same(const struct nv *a, const struct nv *b)
{
    if (a == NULL || b == NULL) {
        return (a == NULL || nv_is(a, NV_NIL)) && (b == NULL || nv_is(b, NV_NIL));
    }
    return nv_equal(a, b);
}

/* Positional argument count: too many -> "Too many arguments (expected N, found M)". */
bool sm__argc_ok(struct sm_ex *x, const struct nv *params, size_t max)
{
    if (nv_len(params) > max) {
        nv_err_add(x->err, "", EINVAL, "Too many arguments (expected %zu, found %zu)", max,
                   nv_len(params));
        return false;
    }
    return true;
}

const struct nv *sm__existing(struct sm_ex *x, enum sm_table t, int64_t id)
{
    const struct nv *r = sm__find(x->s, t, id);
    if (r == NULL) {
        nv_err_add(x->err, NULL, ENOENT, "%s %" PRId64 " does not exist", sm_table_verbose(t), id);
    }
    return r;
}

/* Merge: old row copy with the validated keys of data replacing. */
struct nv *sm__merged(const struct nv *old, const struct nv *data)
{
    struct nv *m = nv_copy(old);
    for (size_t i = 0; i < data->u.m.n; i++) {
        nv_set(m, data->u.m.kv[i].k, nv_copy(data->u.m.kv[i].v));
    }
    return m;
}

/* Two spellings of one foreign key: {"subsys": 1} == {"subsys_id": 1}. */
bool sm__alias(struct sm_ex *x, struct nv *d, const char *prefix, const char *canon,
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

void sm__finish(struct sm_ex *x, enum sm_table t, int64_t id)
{
    x->changed = true;
    x->result = id > 0 ? sm_entry(x->s, t, id, NULL) : nv_bool(true);
}

/* The end of every create/update: d (the validated input) goes; n (the
 * new row) is stored under a new or the old id, or dropped on failure or
 * in a dry run. */
int sm__commit_row(struct sm_ex *x, enum sm_table t, struct nv *d, struct nv *n, bool create,
                   int64_t id)
{
    sm__capture_write(x, t, create, id, d, n);
    nv_free(d);
    if (sm__failed(x)) {
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
    sm__finish(x, t, id);
    return 0;
}

/* The row a create/update writes: base (the service's defaults, taken;
 * create) or the stored row (update), with the validated keys of d over
 * it. NULL if the row to update does not exist (the error is set). */
struct nv *sm__new_row(struct sm_ex *x, enum sm_table t, bool create, int64_t id, struct nv *base,
                       const struct nv *d, const struct nv **old)
{
    *old = NULL;
    if (!create && (*old = sm__existing(x, t, id)) == NULL) {
        nv_free(base);
        return NULL;
    }
    struct nv *n = sm__merged(create ? base : *old, d);
    nv_free(base);
    return n;
}

/* [data] for create, [id, data] for update; data must be present. */
bool sm__write_args(struct sm_ex *x, const struct nv *params, bool create, const char *pfx,
                    int64_t *id, const struct nv **in)
{
    *id = 0;
    if (!sm__argc_ok(x, params, create ? 1 : 2)) {
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
void sm__first3(char *out, size_t len, const char *const *items, size_t n)
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
size_t sm__rows_with(const struct sm_state *s, enum sm_table t, const char *col, int64_t id,
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

void sm__remove_with(struct sm_state *s, enum sm_table t, const char *col, int64_t id)
{
    for (size_t i = s->t[t].n; i-- > 0;) {
        if (nv_get_int(s->t[t].row[i], col, -1) == id) {
            sm__remove(s, t, nv_get_int(s->t[t].row[i], "id", 0));
        }
    }
}

/* ---- v2 capture (prepare on the leader) ---- */

void sm__capture(struct sm_ex *x, struct nv *op)
{
    if (!x->capture || x->mutate) {
        nv_free(op);
        return;
    }
    nv_free(x->op);
    x->op = op;
}

void sm__capture_write(struct sm_ex *x, enum sm_table t, bool create, int64_t id,
                       const struct nv *d, const struct nv *n)
{
    if (!x->capture || x->mutate || sm__failed(x)) {
        return;
    }
    struct nv *op = nv_map();
    if (create) {
        struct nv *row = nv_copy(n);
        nv_set_str(row, "id", SM_AUTO); /* keeps the column's place */
        nv_set(op, "row", row);
    } else {
        const struct nv *old = sm__find(x->s, t, id);
        struct nv *set = nv_map(), *derived = nv_map();
        for (size_t i = 0; i < n->u.m.n; i++) {
            const char *k = n->u.m.kv[i].k;
            const struct nv *v = n->u.m.kv[i].v;
            if (strcmp(k, "id") == 0) {
                continue;
            }
            if (d != NULL && nv_get(d, k) != NULL) {
                nv_set(set, k, nv_copy(v));
            } else if (!sm__same(nv_get(old, k), v)) {
                nv_set(derived, k, nv_copy(v));
            }
        }
        nv_set_int(op, "id", id);
        nv_set(op, "set", set);
        nv_set(op, "derived", derived);
    }
    sm__capture(x, op);
}

/* ---- global ---- */

char *sm__draw_basenqn(const struct sm_env *env)
{
    unsigned char b[16] = {0};
    if (env != NULL && env->random != NULL) {
        env->random(env->ctx, b, sizeof b);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char u[37], *nqn = NULL;
    sm__uuid_format(b, u);
    if (asprintf(&nqn, "nqn.2011-06.com.truenas:uuid:%s", u) < 0) {
        abort();
    }
    return nqn;
}

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

static const struct sm_field global_fields[] = {{"basenqn", SF_NQN, 0, 0, 0, NULL},
                                                {"kernel", SF_BOOL, 0, 0, 0, NULL},
                                                {"ana", SF_BOOL, 0, 0, 0, NULL},
                                                {"rdma", SF_BOOL, 0, 0, 0, NULL},
                                                {"xport_referral", SF_BOOL, 0, 0, 0, NULL},
                                                {"enabled", SF_BOOL, 0, 0, 0, NULL},
                                                {NULL, 0, 0, 0, 0, NULL}};

static int global_update(struct sm_ex *x, const struct nv *params)
{
    if (!sm__argc_ok(x, params, 1)) {
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
    if (nv_get_bool(d, "ana", false) && !old_ana && !sm__env_flag(x, "#ha")) {
        nv_err_add(x->err, "nvmet_global_update.ana", EINVAL,
                   "This platform does not support Asymmetric Namespace Access(ANA).");
    }
    if (nv_get_bool(d, "rdma", false) && !old_rdma && !sm__env_flag(x, "#rdma")) {
        nv_err_add(x->err, "nvmet_global_update.rdma", EINVAL,
                   "This platform cannot support NVMe-oF(RDMA) or is missing a RDMA capable "
                   "NIC.");
    }
    if (sm__failed(x)) {
        nv_free(d);
        return -1;
    }
    if (x->mutate) {
        struct nv *m = sm__merged(x->s->global, d);
        nv_free(x->s->global);
        x->s->global = m;
        x->changed = true;
        x->result = sm_global_entry(x->s);
    }
    struct nv *op = nv_map();
    nv_set(op, "set", d);
    sm__capture(x, op);
    return 0;
}

const struct sm_field sm__force_fields[] = {{"force", SF_BOOL, 0, 0, 0, NULL},
                                            {NULL, 0, 0, 0, 0, NULL}};
const struct sm_field sm__remove_fields[] = {{"remove", SF_BOOL, 0, 0, 0, NULL},
                                             {NULL, 0, 0, 0, 0, NULL}};

/* [id, options]: returns the options flag (force/remove), -1 on error. */
int sm__delete_args(struct sm_ex *x, const struct nv *params, const struct sm_field *opt,
                    int64_t *id)
{
    if (!sm__argc_ok(x, params, opt != NULL ? 2 : 1) ||
        !sm__arg_int("id", nv_at(params, 0), id, x->err)) {
        return -1;
    }
    const struct nv *o = nv_at(params, 1);
    if (opt == NULL || o == NULL) {
        struct nv *op = nv_map();
        nv_set_int(op, "id", *id);
        if (opt != NULL) {
            nv_set_bool(op, opt[0].name, false);
        }
        sm__capture(x, op);
        return 0;
    }
    struct nv *d = sm__model("options", opt, o, x->err);
    if (d == NULL) {
        return -1;
    }
    int flag = nv_get_bool(d, opt[0].name, false) ? 1 : 0;
    nv_free(d);
    struct nv *op = nv_map();
    nv_set_int(op, "id", *id);
    nv_set_bool(op, opt[0].name, flag);
    sm__capture(x, op);
    return flag;
}

int sm__cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* "{what} used by 1 subsystem: a" / "... used by n subsystems: a,b,c,..." */
void sm__used_by(struct sm_ex *x, const char *attr, const char *what, enum sm_table link,
                 const char *col, int64_t id)
{
    size_t n = sm__rows_with(x->s, link, col, id, NULL, 0);
    const char *names[4] = {NULL, NULL, NULL, NULL};
    size_t k = 0;
    for (size_t i = 0; i < x->s->t[link].n && k < 4; i++) {
        const struct nv *l = x->s->t[link].row[i];
        if (nv_get_int(l, col, -1) == id) {
            const struct nv *s = sm__find(x->s, SM_SUBSYS, nv_get_int(l, "subsys_id", 0));
            names[k++] = s != NULL ? nv_get_str(s, "name") : "?";
        }
    }
    char buf[4096];
    sm__first3(buf, sizeof buf, names, n);
    if (n == 1) {
        nv_err_add(x->err, attr, EINVAL, "%s used by 1 subsystem: %s", what, buf);
    } else {
        nv_err_add(x->err, attr, EINVAL, "%s used by %zu subsystems: %s", what, n, buf);
    }
}

/* ---- dispatch ---- */

int sm__exec(struct sm_ex *x, const char *method, const struct nv *params)
{
    if (!nv_is(params, NV_ARR)) {
        nv_err_set(x->err, NV_E_BAD_REQUEST, EINVAL, "params must be an array");
        return -1;
    }
    ensure_init(x);
    if (strcmp(method, "config.restore") == 0) {
        return sm__config_restore(x, params);
    }
    int crv = sm__cluster_exec(x, method, params);
    if (crv <= 0) {
        return crv;
    }
    if (strcmp(method, "nvmet.global.init") == 0) {
        if (x->mutate) {
            x->result = sm_global_entry(x->s);
        }
        sm__capture(x, nv_map());
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
            return del ? sm__subsys_delete(x, params) : sm__subsys_write(x, params, create);
        case SM_NAMESPACE:
            return del ? sm__ns_delete(x, params) : sm__ns_write(x, params, create);
        case SM_PORT:
            return del      ? sm__port_delete(x, params)
                   : create ? sm__port_create(x, params)
                            : sm__port_update(x, params);
        case SM_HOST:
            return del ? sm__host_delete(x, params) : sm__host_write(x, params, create);
        case SM_HOST_SUBSYS:
        case SM_PORT_SUBSYS:
            return del ? sm__link_delete(x, params, (enum sm_table)t)
                       : sm__link_write(x, params, (enum sm_table)t, create);
        default:
            break;
    }
    return -1;
}
