/* statemachine: the tables, the client-session table, command encoding,
 * apply, snapshot and restore. Deterministic: nothing here reads a clock,
 * a random source or the file system. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "sm_int.h"

static const char *const services[SM_TABLE_COUNT] = {
    "nvmet.subsys", "nvmet.namespace", "nvmet.port", "nvmet.host", "nvmet.host_subsys",
    "nvmet.port_subsys"};
static const char *const verbose_names[SM_TABLE_COUNT] = {
    "NVMetSubsys", "NVMetNamespace", "NVMetPort", "NVMetHost", "NVMetHostSubsys",
    "NVMetPortSubsys"};
static const char *const snap_keys[SM_TABLE_COUNT] = {"subsys",      "namespace",  "port",
                                                      "host",        "host_subsys", "port_subsys"};

const char *sm_table_service(enum sm_table t)
{
    return (unsigned)t < SM_TABLE_COUNT ? services[t] : NULL;
}

const char *sm_table_verbose(enum sm_table t)
{
    return (unsigned)t < SM_TABLE_COUNT ? verbose_names[t] : NULL;
}

int sm_table_of(const char *service)
{
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        if (strcmp(service, services[t]) == 0) {
            return t;
        }
    }
    return -1;
}

struct sm_state *sm_new(void)
{
    struct sm_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->sess = calloc(SM_SESSIONS, sizeof *s->sess);
    if (s->sess == NULL) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < SM_SESSION_BUCKETS; i++) {
        s->bucket[i] = -1;
    }
    return s;
}

static void hidx_free(struct sm_hidx *ix);

static void clear_contents(struct sm_state *s)
{
    nv_free(s->global);
    s->global = NULL;
    nv_free(s->cluster);
    s->cluster = NULL;
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        for (size_t i = 0; i < s->t[t].n; i++) {
            nv_free(s->t[t].row[i]);
        }
        free(s->t[t].row);
        s->t[t] = (struct sm_rows_tab){0};
        s->next_id[t] = 0;
    }
    s->ana_subsys = 0;
    for (size_t i = 0; i < SM_NIDX; i++) {
        hidx_free(&s->idx[i]);
    }
    /* an unused slot holds nothing (sess_put fills every field) */
    for (size_t i = 0; i < SM_SESSIONS; i++) {
        if (s->sess[i].used) {
            free(s->sess[i].client);
            nv_free(s->sess[i].res);
            s->sess[i] = (struct sm_sess){.next = -1};
        }
    }
    for (size_t i = 0; i < SM_SESSION_BUCKETS; i++) {
        s->bucket[i] = -1;
    }
    s->sess_head = 0;
    nv_free(s->removals);
    s->removals = NULL;
}

void sm_free(struct sm_state *s)
{
    if (s == NULL) {
        return;
    }
    clear_contents(s);
    free(s->changes);
    free(s->sess);
    free(s);
}

bool sm_initialized(const struct sm_state *s) { return s->global != NULL; }

uint64_t sm_generation(const struct sm_state *s) { return s->generation; }

size_t sm_ana_subsystems(const struct sm_state *s) { return s->ana_subsys; }

/* ---- unique-column indexes ---- */

static const struct {
    enum sm_table t;
    const char *col;
} idx_cols[SM_NIDX] = {{SM_SUBSYS, "name"},           {SM_SUBSYS, "subnqn"},
                       {SM_SUBSYS, "serial"},         {SM_NAMESPACE, "device_path"},
                       {SM_NAMESPACE, "device_uuid"}, {SM_NAMESPACE, "device_nguid"},
                       {SM_HOST, "hostnqn"}};

static size_t str_hash(const char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)k; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 31));
}

static void hidx_add(struct sm_hidx *ix, const char *key, int64_t id)
{
    if (ix->n + 1 > ix->nb * 2) {
        size_t nb = ix->nb ? ix->nb * 4 : 64;
        struct sm_hnode **b = calloc(nb, sizeof *b);
        if (b == NULL) {
            abort();
        }
        for (size_t i = 0; i < ix->nb; i++) {
            for (struct sm_hnode *e = ix->b[i], *nx; e != NULL; e = nx) {
                nx = e->next;
                size_t h = str_hash(e->key) & (nb - 1);
                e->next = b[h];
                b[h] = e;
            }
        }
        free(ix->b);
        ix->b = b;
        ix->nb = nb;
    }
    size_t l = strlen(key);
    struct sm_hnode *e = malloc(sizeof *e + l + 1);
    if (e == NULL) {
        abort();
    }
    memcpy(e->key, key, l + 1);
    e->id = id;
    size_t h = str_hash(key) & (ix->nb - 1);
    e->next = ix->b[h];
    ix->b[h] = e;
    ix->n++;
}

static void hidx_del(struct sm_hidx *ix, const char *key, int64_t id)
{
    if (ix->nb == 0) {
        return;
    }
    struct sm_hnode **pp = &ix->b[str_hash(key) & (ix->nb - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->id == id && strcmp((*pp)->key, key) == 0) {
            struct sm_hnode *e = *pp;
            *pp = e->next;
            free(e);
            ix->n--;
            return;
        }
    }
}

static void hidx_free(struct sm_hidx *ix)
{
    for (size_t i = 0; i < ix->nb; i++) {
        for (struct sm_hnode *e = ix->b[i], *nx; e != NULL; e = nx) {
            nx = e->next;
            free(e);
        }
    }
    free(ix->b);
    *ix = (struct sm_hidx){0};
}

static void index_row(struct sm_state *s, enum sm_table t, const struct nv *row, bool add)
{
    int64_t id = nv_get_int(row, "id", 0);
    if (t == SM_SUBSYS && nv_get_bool(row, "ana", false)) {
        s->ana_subsys += add ? 1 : -1;
    }
    for (size_t i = 0; i < SM_NIDX; i++) {
        if (idx_cols[i].t != t) {
            continue;
        }
        const char *v = nv_get_str(row, idx_cols[i].col);
        if (v == NULL) {
            continue;
        }
        if (add) {
            hidx_add(&s->idx[i], v, id);
        } else {
            hidx_del(&s->idx[i], v, id);
        }
    }
}

/* ---- rows ---- */

static int64_t row_id(const struct nv *r) { return nv_get_int(r, "id", 0); }

size_t sm__index(const struct sm_state *s, enum sm_table t, int64_t id)
{
    const struct sm_rows_tab *tb = &s->t[t];
    size_t lo = 0, hi = tb->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t m = row_id(tb->row[mid]);
        if (m == id) {
            return mid;
        }
        if (m < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return tb->n;
}

const struct nv *sm__find(const struct sm_state *s, enum sm_table t, int64_t id)
{
    size_t i = sm__index(s, t, id);
    return i < s->t[t].n ? s->t[t].row[i] : NULL;
}

int64_t sm__next_id(const struct sm_state *s, enum sm_table t)
{
    const struct sm_rows_tab *tb = &s->t[t];
    int64_t after_last = tb->n == 0 ? 1 : row_id(tb->row[tb->n - 1]) + 1;
    int64_t next = s->next_id[t] > 0 ? s->next_id[t] : 1;
    return next > after_last ? next : after_last;
}

/* ---- change list ---- */

void sm__change_all(struct sm_state *s)
{
    s->changes_full = true;
    s->nchanges = 0; /* a full list says nothing more */
}

/* Rows restored from a snapshot are not changes of their own: the restore
 * marks everything changed. A list that grows past SM_CHANGES_MAX (a
 * renderer that has not caught up) becomes "everything" too: bounded. */
static void note_change(struct sm_state *s, enum sm_table t, int64_t id, enum sm_change_op op)
{
    if (s->restoring || s->changes_full) {
        return;
    }
    if (s->nchanges == s->capchanges) {
        size_t cap = s->capchanges ? s->capchanges * 2 : 64;
        struct sm_change *c = cap <= SM_CHANGES_MAX ? realloc(s->changes, cap * sizeof *c) : NULL;
        if (c == NULL) {
            sm__change_all(s);
            return;
        }
        s->changes = c;
        s->capchanges = cap;
    }
    s->changes[s->nchanges++] = (struct sm_change){.table = t, .id = id, .op = op};
}

void sm_changes(const struct sm_state *s, struct sm_changes *out)
{
    out->c = s->changes;
    out->n = s->changes_full ? 0 : s->nchanges;
    out->full = s->changes_full;
}

void sm_changes_clear(struct sm_state *s)
{
    s->nchanges = 0;
    s->changes_full = false;
}

void sm__insert(struct sm_state *s, enum sm_table t, struct nv *row)
{
    struct sm_rows_tab *tb = &s->t[t];
    if (tb->n == tb->cap) {
        size_t nc = tb->cap ? tb->cap * 2 : 16;
        struct nv **r = realloc(tb->row, nc * sizeof *r);
        if (r == NULL) {
            abort(); /* a replica that cannot apply must not diverge */
        }
        tb->row = r;
        tb->cap = nc;
    }
    int64_t id = row_id(row);
    if (id >= s->next_id[t]) {
        s->next_id[t] = id + 1;
    }
    size_t i = tb->n;
    while (i > 0 && row_id(tb->row[i - 1]) > id) {
        i--;
    }
    memmove(tb->row + i + 1, tb->row + i, (tb->n - i) * sizeof *tb->row);
    tb->row[i] = row;
    tb->n++;
    index_row(s, t, row, true);
    note_change(s, t, id, SM_ADDED);
}

void sm__replace(struct sm_state *s, enum sm_table t, struct nv *row)
{
    size_t i = sm__index(s, t, row_id(row));
    if (i == s->t[t].n) {
        sm__insert(s, t, row);
        return;
    }
    index_row(s, t, s->t[t].row[i], false);
    nv_free(s->t[t].row[i]);
    s->t[t].row[i] = row;
    index_row(s, t, row, true);
    note_change(s, t, row_id(row), SM_MODIFIED);
}

void sm__remove(struct sm_state *s, enum sm_table t, int64_t id)
{
    struct sm_rows_tab *tb = &s->t[t];
    size_t i = sm__index(s, t, id);
    if (i == tb->n) {
        return;
    }
    index_row(s, t, tb->row[i], false);
    nv_free(tb->row[i]);
    memmove(tb->row + i, tb->row + i + 1, (tb->n - i - 1) * sizeof *tb->row);
    tb->n--;
    note_change(s, t, id, SM_REMOVED);
}

struct nv *sm__global_new(const char *basenqn)
{
    struct nv *g = nv_map();
    nv_set_int(g, "id", 1);
    nv_set_str(g, "basenqn", basenqn);
    nv_set_bool(g, "kernel", true);
    nv_set_bool(g, "ana", false);
    nv_set_bool(g, "rdma", false);
    nv_set_bool(g, "xport_referral", true);
    nv_set_bool(g, "enabled", false);
    return g;
}

void sm__global_default(struct sm_state *s, const char *basenqn)
{
    nv_free(s->global);
    s->global = sm__global_new(basenqn);
    sm__change_all(s);
}

const struct nv *sm__unique(const struct sm_state *s, enum sm_table t, const char *col,
                            const char *val, int64_t self)
{
    for (size_t i = 0; i < SM_NIDX; i++) {
        if (idx_cols[i].t != t || strcmp(idx_cols[i].col, col) != 0) {
            continue;
        }
        const struct sm_hidx *ix = &s->idx[i];
        if (ix->nb == 0) {
            return NULL;
        }
        for (const struct sm_hnode *e = ix->b[str_hash(val) & (ix->nb - 1)]; e != NULL;
             e = e->next) {
            if (e->id != self && strcmp(e->key, val) == 0) {
                return sm__find(s, t, e->id);
            }
        }
        return NULL;
    }
    for (size_t i = 0; i < s->t[t].n; i++) {
        const struct nv *r = s->t[t].row[i];
        const char *v = nv_get_str(r, col);
        if (v != NULL && strcmp(v, val) == 0 && nv_get_int(r, "id", 0) != self) {
            return r;
        }
    }
    return NULL;
}

const struct nv *sm_global_row(const struct sm_state *s) { return s->global; }

size_t sm_rows(const struct sm_state *s, enum sm_table t) { return s->t[t].n; }

const struct nv *sm_row(const struct sm_state *s, enum sm_table t, size_t i)
{
    return i < s->t[t].n ? s->t[t].row[i] : NULL;
}

const struct nv *sm_row_by_id(const struct sm_state *s, enum sm_table t, int64_t id)
{
    return sm__find(s, t, id);
}

/* ---- client sessions ---- */

static unsigned sess_hash(const char *client, int64_t seq)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)client; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }
    h = (h ^ (uint64_t)seq) * 1099511628211ULL;
    return (unsigned)(h ^ (h >> 29)) & (SM_SESSION_BUCKETS - 1);
}

static const struct nv *sess_find(const struct sm_state *s, const char *client, int64_t seq)
{
    for (int i = s->bucket[sess_hash(client, seq)]; i >= 0; i = s->sess[i].next) {
        if (s->sess[i].seq == seq && strcmp(s->sess[i].client, client) == 0) {
            return s->sess[i].res;
        }
    }
    return NULL;
}

static void sess_unlink(struct sm_state *s, int slot)
{
    struct sm_sess *e = &s->sess[slot];
    int *pp = &s->bucket[sess_hash(e->client, e->seq)];
    while (*pp >= 0 && *pp != slot) {
        pp = &s->sess[*pp].next;
    }
    if (*pp == slot) {
        *pp = e->next;
    }
    free(e->client);
    nv_free(e->res);
    *e = (struct sm_sess){.next = -1};
}

/* Remember a result; the oldest entry goes when the ring is full. */
static void sess_put(struct sm_state *s, const char *client, int64_t seq, struct nv *res)
{
    int slot = (int)s->sess_head;
    if (s->sess[slot].used) {
        sess_unlink(s, slot);
    }
    struct sm_sess *e = &s->sess[slot];
    e->client = strdup(client);
    e->seq = seq;
    e->res = res;
    e->used = true;
    unsigned b = sess_hash(client, seq);
    e->next = s->bucket[b];
    s->bucket[b] = slot;
    s->sess_head = (s->sess_head + 1) % SM_SESSIONS;
}

/* ---- commands ---- */

bool sm_is_write(const char *method)
{
    if (strcmp(method, "nvmet.global.update") == 0 || strcmp(method, "nvmet.global.init") == 0 ||
        strcmp(method, "config.restore") == 0 || sm__cluster_is_write(method)) {
        return true;
    }
    const char *dot = strrchr(method, '.');
    if (dot == NULL) {
        return false;
    }
    char svc[64];
    size_t l = (size_t)(dot - method);
    if (l >= sizeof svc) {
        return false;
    }
    memcpy(svc, method, l);
    svc[l] = '\0';
    return sm_table_of(svc) >= 0 &&
           (strcmp(dot, ".create") == 0 || strcmp(dot, ".update") == 0 ||
            strcmp(dot, ".delete") == 0);
}

int sm_prepare(const struct sm_state *s, const char *method, const struct nv *params,
               const struct sm_env *env, struct nv **cmd, struct nv_err *err)
{
    int version = env != NULL && env->cmd_version != 0 ? env->cmd_version : SM_CMD_VERSION;
    return sm__prepare_version(s, method, params, env, version, cmd, err);
}

int sm__prepare_version(const struct sm_state *s, const char *method, const struct nv *params,
                        const struct sm_env *env, int version, struct nv **cmd,
                        struct nv_err *err)
{
    *cmd = NULL;
    if (version != 1 && version != 2) {
        nv_err_call(err, EINVAL, "command version %d is not one this node writes", version);
        return -EINVAL;
    }
    if (!sm_is_write(method)) {
        nv_err_set(err, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist");
        return -ENOENT;
    }
    struct nv *empty = NULL;
    if (params == NULL) {
        params = empty = nv_arr();
    }
    struct sm_state *st = (struct sm_state *)s;
    struct sm_ex x = {.s = st, .env = env, .rnd = nv_arr(), .dev = nv_map(), .err = err,
                      .capture = version == 2};
    /* v2, first write of a new cluster: the basenqn is drawn here and the
     * write is checked against the global row it will find on apply (a
     * subnqn derives from it). The row is lent to s for the check only:
     * the leader's state is the same after sm_prepare as before. */
    char *basenqn = NULL;
    if (version == 2 && st->global == NULL) {
        basenqn = sm__draw_basenqn(env);
        st->global = sm__global_new(basenqn);
    }
    int rv = sm__exec(&x, method, params);
    if (basenqn != NULL) {
        nv_free(st->global);
        st->global = NULL;
    }
    nv_free(x.result);
    if (rv == 0 && version == 2 && x.op == NULL) {
        nv_err_call(err, EFAULT, "%s made no v2 command", method); /* a bug: never logged */
        rv = -1;
    }
    if (rv < 0) {
        nv_free(x.rnd);
        nv_free(x.dev);
        nv_free(x.op);
        nv_free(empty);
        free(basenqn);
        return -EINVAL;
    }
    struct nv *c = nv_map();
    nv_set_int(c, "v", version);
    nv_set_str(c, "m", method);
    if (version == 1) {
        nv_set(c, "p", nv_copy(params));
        nv_set(c, "r", x.rnd);
        nv_set(c, "d", x.dev);
    } else {
        nv_set(c, "o", x.op);
        if (basenqn != NULL) {
            nv_set_str(c, "g", basenqn);
        }
        nv_free(x.rnd);
        nv_free(x.dev);
    }
    free(basenqn);
    nv_free(empty);
    *cmd = c;
    return 0;
}

int sm_command_encode(const struct nv *cmd, const char *client_id, int64_t seq, char **buf,
                      size_t *len)
{
    struct nv *c = nv_copy(cmd);
    if (c == NULL) {
        return -ENOMEM;
    }
    if (client_id != NULL && seq >= 0) {
        nv_set_str(c, "c", client_id);
        nv_set_int(c, "s", seq);
    }
    int rv = nv_encode(c, buf, len);
    nv_free(c);
    return rv < 0 ? rv : 0;
}

void sm_result_free(struct sm_result *r)
{
    if (r == NULL) {
        return;
    }
    nv_free(r->value);
    if (r->err != NULL) {
        nv_err_clear(r->err);
        free(r->err);
    }
    free(r);
}

static struct sm_result *result_from_stored(const struct nv *stored, bool dup)
{
    struct sm_result *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->duplicate = dup;
    const struct nv *e = nv_get(stored, "err");
    if (e != NULL) {
        r->err = calloc(1, sizeof *r->err);
        nv_err_init(r->err);
        if (nv_err_from_nv(r->err, e) < 0) {
            nv_err_call(r->err, EINVAL, "stored result is unreadable");
        }
    } else {
        r->value = nv_copy(nv_get(stored, "ok"));
        if (r->value == NULL) {
            r->value = nv_nil();
        }
    }
    return r;
}

/* A write of one table's rows ("nvmet.subsys.create", ...): its changes
 * are listed row by row; every other write changes global facts. */
static bool row_method(const char *method)
{
    return sm_is_write(method) && strncmp(method, "nvmet.global.", 13) != 0 &&
           !sm__cluster_is_write(method);
}

struct sm_result *sm_apply(struct sm_state *s, const void *buf, size_t len)
{
    struct nv_err err;
    nv_err_init(&err);
    size_t used = 0;
    struct nv *c = nv_decode(buf, len, &used);
    const char *method = nv_get_str(c, "m");
    const struct nv *params = nv_get(c, "p");
    const struct nv *rnd = nv_get(c, "r"), *dev = nv_get(c, "d");
    const struct nv *op = nv_get(c, "o"), *g = nv_get(c, "g");
    int64_t version = nv_get_int(c, "v", 0);
    if (c == NULL || used != len || !nv_is(c, NV_MAP) || method == NULL) {
        nv_err_call(&err, EBADMSG, "undecodable command (%zu bytes)", len);
    } else if (version != 1 && version != 2) {
        nv_err_call(&err, EPROTO, "unsupported command version %" PRId64, version);
    } else if (version == 1 &&
               (!nv_is(params, NV_ARR) || !nv_is(rnd, NV_ARR) || !nv_is(dev, NV_MAP))) {
        nv_err_call(&err, EBADMSG, "undecodable command (%zu bytes)", len);
    } else if (version == 2 && (!nv_is(op, NV_MAP) || (g != NULL && !nv_is(g, NV_STR)))) {
        nv_err_call(&err, EBADMSG, "undecodable command (%zu bytes)", len);
    }
    const char *client = nv_get_str(c, "c");
    int64_t seq = nv_get_int(c, "s", -1);
    bool session = !nv_err_isset(&err) && client != NULL && seq >= 0;
    if (session) {
        const struct nv *prev = sess_find(s, client, seq);
        if (prev != NULL) {
            nv_free(c);
            return result_from_stored(prev, true);
        }
    }
    struct nv *stored = nv_map();
    if (!nv_err_isset(&err)) {
        struct sm_ex x = {.s = s, .mutate = true, .replay = true, .rnd = (struct nv *)rnd,
                          .dev = (struct nv *)dev, .err = &err};
        int rv;
        if (version == 1) {
            rv = sm__exec(&x, method, params); /* v1: frozen, see the top of sm.h */
        } else {
            bool init = s->global == NULL;
            if (init) {
                /* the first write of a cluster: the leader's draw, or a
                 * fixed basenqn (never a draw of this node's) */
                sm__global_default(s, g != NULL ? g->u.s.p : SM_ZERO_BASENQN);
                x.changed = true;
            }
            rv = sm__apply_v2(&x, method, op);
            if (rv != 0 && init) {
                nv_free(s->global); /* a failed v2 apply changes nothing */
                s->global = NULL;
            }
        }
        if (rv == 0) {
            nv_set(stored, "ok", x.result != NULL ? x.result : nv_nil());
            if (x.changed) {
                s->generation++;
                if (!row_method(method)) {
                    sm__change_all(s); /* global row, cluster facts */
                }
            }
        } else {
            nv_free(x.result);
        }
    }
    if (nv_err_isset(&err)) {
        nv_set(stored, "err", nv_err_to_nv(&err));
    }
    nv_err_clear(&err);
    struct sm_result *r = result_from_stored(stored, false);
    if (session) {
        sess_put(s, client, seq, stored);
    } else {
        nv_free(stored);
    }
    nv_free(c);
    return r;
}

struct sm_result *sm_session_result(const struct sm_state *s, const char *client_id, int64_t seq)
{
    if (client_id == NULL || seq < 0) {
        return NULL;
    }
    const struct nv *prev = sess_find(s, client_id, seq);
    return prev != NULL ? result_from_stored(prev, true) : NULL;
}

/* ---- FILE removals ---- */

const struct nv *sm_removals(const struct sm_state *s) { return s->removals; }

static void removal_del(struct nv *a, size_t i)
{
    nv_free(a->u.a.v[i]);
    memmove(&a->u.a.v[i], &a->u.a.v[i + 1], (a->u.a.n - i - 1) * sizeof *a->u.a.v);
    a->u.a.n--;
}

static ssize_t removal_find(const struct sm_state *s, const char *path)
{
    for (size_t i = 0; i < nv_len(s->removals); i++) {
        const char *p = nv_get_str(nv_at(s->removals, i), "path");
        if (p != NULL && strcmp(p, path) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

void sm__removal_add(struct sm_state *s, const char *path, int64_t ns_id)
{
    if (removal_find(s, path) >= 0) {
        return;
    }
    if (s->removals == NULL) {
        s->removals = nv_arr();
    }
    while (nv_len(s->removals) >= SM_REMOVALS_MAX) {
        removal_del(s->removals, 0);
    }
    struct nv *e = nv_map();
    nv_set_str(e, "path", path);
    nv_set_int(e, "namespace_id", ns_id);
    nv_push(s->removals, e);
}

void sm__removal_drop(struct sm_state *s, const char *path)
{
    ssize_t i = path != NULL ? removal_find(s, path) : -1;
    if (i >= 0) {
        removal_del(s->removals, (size_t)i);
    }
}

static bool removals_ok(const struct nv *r)
{
    if (r == NULL || nv_is(r, NV_NIL)) {
        return true; /* snapshots of older releases have none */
    }
    if (!nv_is(r, NV_ARR)) {
        return false;
    }
    for (size_t i = 0; i < nv_len(r); i++) {
        const struct nv *e = nv_at(r, i);
        if (!nv_is(e, NV_MAP) || !nv_is(nv_get(e, "path"), NV_STR) ||
            !nv_is(nv_get(e, "namespace_id"), NV_INT)) {
            return false;
        }
    }
    return true;
}

/* ---- snapshot ---- */

int sm_snapshot(const struct sm_state *s, char **buf, size_t *len)
{
    struct nv *d = nv_map();
    nv_set_int(d, "v", SM_SNAP_VERSION);
    nv_set(d, "global", s->global != NULL ? nv_copy(s->global) : nv_nil());
    nv_set(d, "cluster", s->cluster != NULL ? nv_copy(s->cluster) : nv_nil());
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        struct nv *a = nv_arr();
        for (size_t i = 0; i < s->t[t].n; i++) {
            nv_push(a, nv_copy(s->t[t].row[i]));
        }
        nv_set(d, snap_keys[t], a);
    }
    struct nv *ids = nv_arr();
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        nv_push(ids, nv_int(sm__next_id(s, (enum sm_table)t)));
    }
    nv_set(d, "next_id", ids);
    /* sessions oldest first, so eviction order survives a restore */
    struct nv *ss = nv_arr();
    for (size_t k = 0; k < SM_SESSIONS; k++) {
        const struct sm_sess *e = &s->sess[(s->sess_head + k) % SM_SESSIONS];
        if (!e->used) {
            continue;
        }
        struct nv *it = nv_arr();
        nv_push(it, nv_str(e->client));
        nv_push(it, nv_int(e->seq));
        nv_push(it, nv_copy(e->res));
        nv_push(ss, it);
    }
    nv_set(d, "sessions", ss);
    if (nv_len(s->removals) > 0) {
        nv_set(d, "removals", nv_copy(s->removals));
    }
    int rv = nv_encode(d, buf, len);
    nv_free(d);
    return rv < 0 ? rv : 0;
}

/* What sm_restore accepts is what apply can have written: the stored rows
 * and cluster facts of sm.h, every column below present with one of its
 * types. Apply, the reads and the renderer use these columns without
 * checking them again (a port row without addr_trtype reached strcmp
 * with NULL in the next port create). Other keys are left alone. */
enum { C_INT = 1, C_STR = 2, C_BOOL = 4, C_NIL = 8, C_ARR = 16, C_MAP = 32 };
struct col {
    const char *name;
    unsigned types;
};
static const struct col global_cols[] = {
    {"basenqn", C_STR | C_NIL}, {"kernel", C_BOOL},  {"ana", C_BOOL}, {"rdma", C_BOOL},
    {"xport_referral", C_BOOL}, {"enabled", C_BOOL}, {NULL, 0}};
static const struct col subsys_cols[] = {{"name", C_STR},
                                         {"subnqn", C_STR},
                                         {"serial", C_STR},
                                         {"allow_any_host", C_BOOL},
                                         {"pi_enable", C_BOOL | C_NIL},
                                         {"qid_max", C_INT | C_NIL},
                                         {"ieee_oui", C_STR | C_NIL},
                                         {"ana", C_BOOL | C_NIL},
                                         {NULL, 0}};
static const struct col ns_cols[] = {
    {"nsid", C_INT},         {"subsys_id", C_INT},        {"device_type", C_STR},
    {"device_path", C_STR},  {"filesize", C_INT | C_NIL}, {"device_uuid", C_STR},
    {"device_nguid", C_STR}, {"enabled", C_BOOL},         {NULL, 0}};
static const struct col port_cols[] = {{"index", C_INT},
                                       {"addr_trtype", C_STR},
                                       {"addr_trsvcid", C_INT | C_NIL},
                                       {"addr_traddr", C_STR},
                                       {"addr_adrfam", C_STR},
                                       {"inline_data_size", C_INT | C_NIL},
                                       {"max_queue_size", C_INT | C_NIL},
                                       {"pi_enable", C_BOOL | C_NIL},
                                       {"enabled", C_BOOL},
                                       {NULL, 0}};
static const struct col host_cols[] = {{"hostnqn", C_STR},
                                       {"description", C_STR},
                                       {"dhchap_key", C_STR | C_NIL},
                                       {"dhchap_ctrl_key", C_STR | C_NIL},
                                       {"dhchap_dhgroup", C_STR | C_NIL},
                                       {"dhchap_hash", C_STR},
                                       {NULL, 0}};
static const struct col host_subsys_cols[] = {{"host_id", C_INT}, {"subsys_id", C_INT}, {NULL, 0}};
static const struct col port_subsys_cols[] = {{"port_id", C_INT}, {"subsys_id", C_INT}, {NULL, 0}};
static const struct col *const table_cols[SM_TABLE_COUNT] = {
    subsys_cols, ns_cols, port_cols, host_cols, host_subsys_cols, port_subsys_cols};
static const struct col cluster_cols[] = {
    {"nodes", C_ARR}, {"active", C_NIL | C_MAP}, {"failover", C_MAP}, {NULL, 0}};
static const struct col node_cols[] = {
    {"id", C_INT}, {"kind", C_STR}, {"raft", C_STR}, {"rpc", C_STR | C_NIL}, {NULL, 0}};
static const struct col active_cols[] = {{"node", C_INT}, {"term", C_INT}, {NULL, 0}};
static const struct col failover_cols[] = {{"takeover_delay_ms", C_INT},
                                           {"fence_command", C_STR | C_NIL},
                                           {"announce_count", C_INT},
                                           {"announce_interval_ms", C_INT},
                                           {"vips", C_ARR},
                                           {NULL, 0}};
static const struct col vip_cols[] = {{"address", C_STR},
                                      {"prefix", C_INT},
                                      {"interface", C_STR},
                                      {"node_addresses", C_MAP},
                                      {NULL, 0}};

static unsigned type_bit(const struct nv *v)
{
    static const unsigned bits[] = {
        [NV_NIL] = C_NIL, [NV_BOOL] = C_BOOL, [NV_INT] = C_INT, [NV_FLOAT] = 0,
        [NV_STR] = C_STR, [NV_ARR] = C_ARR,   [NV_MAP] = C_MAP};
    return v != NULL ? bits[v->t] : 0;
}

static bool shape_ok(const struct nv *m, const struct col *cols)
{
    if (!nv_is(m, NV_MAP)) {
        return false;
    }
    for (; cols->name != NULL; cols++) {
        if (!(type_bit(nv_get(m, cols->name)) & cols->types)) {
            return false;
        }
    }
    return true;
}

bool sm__row_shape_ok(enum sm_table t, const struct nv *row)
{
    return (unsigned)t < SM_TABLE_COUNT && shape_ok(row, table_cols[t]) &&
           nv_is(nv_get(row, "id"), NV_INT);
}

bool sm__global_shape_ok(const struct nv *g)
{
    return shape_ok(g, global_cols);
}

bool sm__cluster_node_shape_ok(const struct nv *node)
{
    return shape_ok(node, node_cols);
}

static bool all_ok(const struct nv *a, const struct col *cols);

bool sm__failover_shape_ok(const struct nv *f)
{
    return shape_ok(f, failover_cols) && all_ok(nv_get(f, "vips"), vip_cols);
}

/* Every element of the array a has the shape cols. */
static bool all_ok(const struct nv *a, const struct col *cols)
{
    for (size_t i = 0; i < nv_len(a); i++) {
        if (!shape_ok(nv_at(a, i), cols)) {
            return false;
        }
    }
    return true;
}

static bool cluster_ok(const struct nv *cl)
{
    if (cl == NULL || nv_is(cl, NV_NIL)) {
        return true; /* the defaults */
    }
    const struct nv *active = nv_get(cl, "active"), *f = nv_get(cl, "failover");
    return shape_ok(cl, cluster_cols) && all_ok(nv_get(cl, "nodes"), node_cols) &&
           (nv_is(active, NV_NIL) || shape_ok(active, active_cols)) && shape_ok(f, failover_cols) &&
           all_ok(nv_get(f, "vips"), vip_cols);
}

/* An int in [lo, SM_ID_MAX]. */
static bool count_ok(const struct nv *v, int64_t lo)
{
    return nv_is(v, NV_INT) && v->u.i >= lo && v->u.i <= SM_ID_MAX;
}

int sm_restore(struct sm_state *s, const void *buf, size_t len, struct nv_err *err)
{
    size_t used = 0;
    struct nv *d = nv_decode(buf, len, &used);
    if (d == NULL || used != len || !nv_is(d, NV_MAP) ||
        nv_get_int(d, "v", 0) != SM_SNAP_VERSION) {
        nv_free(d);
        nv_err_call(err, EBADMSG, "snapshot is not a statemachine snapshot (version %d)",
                    SM_SNAP_VERSION);
        return -EBADMSG;
    }
    const struct nv *g = nv_get(d, "global");
    const struct nv *cl = nv_get(d, "cluster");
    const struct nv *ss = nv_get(d, "sessions");
    /* row_ver: the row version counter of older releases, checked and unused */
    const struct nv *ids = nv_get(d, "next_id"), *rv = nv_get(d, "row_ver");
    bool ok = (nv_is(g, NV_NIL) || shape_ok(g, global_cols)) && nv_is(ss, NV_ARR) &&
              (rv == NULL || count_ok(rv, 0)) && (ids == NULL || nv_is(ids, NV_ARR)) &&
              cluster_ok(cl) && removals_ok(nv_get(d, "removals"));
    for (int t = 0; t < SM_TABLE_COUNT && ok; t++) {
        const struct nv *a = nv_get(d, snap_keys[t]);
        ok = nv_is(a, NV_ARR);
        for (size_t i = 0; ok && i < nv_len(a); i++) {
            ok = shape_ok(nv_at(a, i), table_cols[t]) && count_ok(nv_get(nv_at(a, i), "id"), 1);
        }
    }
    for (size_t i = 0; ok && i < nv_len(ids); i++) {
        ok = count_ok(nv_at(ids, i), 0);
    }
    for (size_t i = 0; ok && i < nv_len(ss); i++) {
        const struct nv *it = nv_at(ss, i);
        ok = nv_is(it, NV_ARR) && nv_len(it) == 3 && nv_is(nv_at(it, 0), NV_STR) &&
             nv_is(nv_at(it, 1), NV_INT) && nv_is(nv_at(it, 2), NV_MAP);
    }
    if (!ok) {
        nv_free(d);
        nv_err_call(err, EBADMSG, "snapshot is malformed");
        return -EBADMSG;
    }
    uint64_t gen = s->generation + 1; /* a local counter: never backwards */
    clear_contents(s);
    s->generation = gen;
    s->global = nv_is(g, NV_MAP) ? nv_copy(g) : NULL;
    s->cluster = nv_is(cl, NV_MAP) ? nv_copy(cl) : NULL;
    s->restoring = true;
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        const struct nv *a = nv_get(d, snap_keys[t]);
        for (size_t i = 0; i < nv_len(a); i++) {
            struct nv *row = nv_copy(nv_at(a, i));
            nv_del(row, "_v"); /* row versions of older releases: unused */
            sm__insert(s, (enum sm_table)t, row);
        }
    }
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        const struct nv *v = nv_at(ids, (size_t)t);
        if (nv_is(v, NV_INT) && v->u.i > s->next_id[t]) {
            s->next_id[t] = v->u.i;
        }
    }
    s->restoring = false;
    sm__change_all(s);
    for (size_t i = 0; i < nv_len(ss) && i < SM_SESSIONS; i++) {
        const struct nv *it = nv_at(ss, i);
        sess_put(s, nv_at(it, 0)->u.s.p, nv_at(it, 1)->u.i, nv_copy(nv_at(it, 2)));
    }
    const struct nv *rm = nv_get(d, "removals");
    for (size_t i = 0; i < nv_len(rm) && nv_is(rm, NV_ARR); i++) {
        const struct nv *e = nv_at(rm, i);
        sm__removal_add(s, nv_get_str(e, "path"), nv_get_int(e, "namespace_id", 0));
    }
    nv_free(d);
    return 0;
}
