/* config.save / config.restore: the whole replicated configuration as one
 * document, to back it up and to fill a new cluster with it.
 *
 *   {"format": "nvmet-ha-config", "version": 1,
 *    "global": {...} | null, "failover": {...} | null,
 *    "subsys": [rows], "host": [...], "port": [...], "namespace": [...],
 *    "host_subsys": [...], "port_subsys": [...]}
 *
 * Rows are the stored rows (ids and references as they are). Restore
 * fills an EMPTY cluster only (no row in any table) and keeps every id, so
 * links and clients' ids stay valid. It replays one create per row, in
 * id order, through the same validation as the API (so a document edited
 * by hand cannot store what a create would refuse), on a copy of the
 * state; the copy replaces the configuration only when every row went in
 * and reads back as the document says. One command in the log: a v2
 * command carries the configuration the creates made on the leader (every
 * id, index and generated value), which every node installs as it is into
 * its empty cluster (sm_v2.c); a v1 command made every node replay the
 * creates with the leader's recorded environment. The node registry and
 * the client sessions stay as they were. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "nv_err.h"
#include "sm_int.h"

#define FORMAT "nvmet-ha-config"
#define VERSION 1

/* Creation order: a row after the rows it refers to. */
static const struct {
    enum sm_table t;
    const char *key;
} tables[] = {{SM_SUBSYS, "subsys"},
              {SM_HOST, "host"},
              {SM_PORT, "port"},
              {SM_NAMESPACE, "namespace"},
              {SM_HOST_SUBSYS, "host_subsys"},
              {SM_PORT_SUBSYS, "port_subsys"}};
#define N_TABLES (sizeof tables / sizeof tables[0])

static struct nv *clean_row(const struct nv *row)
{
    struct nv *c = nv_copy(row);
    if (c != NULL) {
        nv_del(c, "_v");
    }
    return c;
}

struct nv *sm_config_save(const struct sm_state *s)
{
    struct nv *d = nv_map();
    nv_set_str(d, "format", FORMAT);
    nv_set_int(d, "version", VERSION);
    nv_set(d, "global", s->global != NULL ? clean_row(s->global) : nv_nil());
    struct nv *fo = sm_failover_config(s);
    nv_set(d, "failover", fo != NULL ? fo : nv_nil());
    for (size_t k = 0; k < N_TABLES; k++) {
        const struct sm_rows_tab *tb = &s->t[tables[k].t];
        struct nv *a = nv_arr();
        for (size_t i = 0; i < tb->n; i++) {
            nv_push(a, clean_row(tb->row[i]));
        }
        nv_set(d, tables[k].key, a);
    }
    return d;
}

/* ---- restore ---- */

/* Run one API write on x's state with its own error; on failure its
 * items go to x->err under where (e.g. "config_restore.subsys[3]"). */
static int sub_exec(struct sm_ex *x, const char *where, const char *method, struct nv *params)
{
    struct nv_err *outer = x->err;
    struct nv_err e;
    nv_err_init(&e);
    x->err = &e;
    int rv = sm__exec(x, method, params);
    x->err = outer;
    nv_free(x->result);
    x->result = NULL;
    nv_free(params);
    if (rv == 0 && !nv_err_isset(&e)) {
        nv_err_clear(&e);
        return 0;
    }
    for (size_t i = 0; i < e.n; i++) {
        const char *a = e.items[i].attr;
        nv_err_add(outer, where, e.items[i].errnum, "%s%s%s", a != NULL && a[0] ? a : "",
                   a != NULL && a[0] ? ": " : "", e.items[i].msg);
    }
    if (e.n == 0) {
        char *r = nv_err_reason(&e);
        nv_err_add(outer, where, e.errnum ? e.errnum : EINVAL, "%s", r ? r : "refused");
        free(r);
    }
    nv_err_clear(&e);
    return -1;
}

static struct nv *one(struct nv *v)
{
    struct nv *p = nv_arr();
    nv_push(p, v);
    return p;
}

/* The create input of a stored row: its columns but the id (kept through
 * next_id) and what a create derives itself (a port's index, a
 * namespace's dataset and relative path); same_as_doc checks those. */
static struct nv *create_input(enum sm_table t, const struct nv *row)
{
    struct nv *in = clean_row(row);
    nv_del(in, "id");
    if (t == SM_PORT) {
        nv_del(in, "index");
        /* FC and LOOP ports store a null trsvcid their create refuses */
        if (nv_get_is_nil(in, "addr_trsvcid")) {
            nv_del(in, "addr_trsvcid");
        }
    } else if (t == SM_NAMESPACE) {
        nv_del(in, "dataset");
        nv_del(in, "relative_path");
    }
    return in;
}

/* The restored row must read back as the document has it. */
static int same_as_doc(struct sm_ex *x, const char *where, enum sm_table t, const struct nv *doc)
{
    int64_t id = nv_get_int(doc, "id", 0);
    struct nv *row = (struct nv *)sm__find(x->s, t, id);
    if (row == NULL) {
        nv_err_add(x->err, where, EINVAL, "was created under another id");
        return -1;
    }
    if (t == SM_PORT && nv_is(nv_get(doc, "index"), NV_INT)) {
        /* a create takes the lowest free index: put the document's back */
        int64_t index = nv_get_int(doc, "index", 0);
        for (size_t i = 0; i < x->s->t[SM_PORT].n; i++) {
            const struct nv *p = x->s->t[SM_PORT].row[i];
            if (nv_get_int(p, "id", 0) != id && nv_get_int(p, "index", 0) == index) {
                nv_err_add(x->err, where, EINVAL, "index: %" PRId64 " is used twice", index);
                return -1;
            }
        }
        if (index < 1 || index >= 32000) {
            nv_err_add(x->err, where, EINVAL, "index: %" PRId64 " is not in 1..31999", index);
            return -1;
        }
        nv_set_int(row, "index", index);
    }
    for (size_t i = 0; i < doc->u.m.n; i++) {
        const char *k = doc->u.m.kv[i].k;
        if (strcmp(k, "_v") == 0) {
            continue;
        }
        const struct nv *got = nv_get(row, k);
        if (got == NULL || !nv_equal(got, doc->u.m.kv[i].v)) {
            char *want = nv_dump(doc->u.m.kv[i].v), *have = got ? nv_dump(got) : NULL;
            nv_err_add(x->err, where, EINVAL, "%s: the document says %s, a create makes %s", k,
                       want ? want : "?", have ? have : "nothing");
            free(want);
            free(have);
            return -1;
        }
    }
    return 0;
}

static int restore_table(struct sm_ex *x, size_t k, const struct nv *rows)
{
    enum sm_table t = tables[k].t;
    char method[64], where[96];
    snprintf(method, sizeof method, "%s.create", sm_table_service(t));
    int64_t last = 0;
    for (size_t i = 0; i < nv_len(rows); i++) {
        const struct nv *row = nv_at(rows, i);
        int64_t id = nv_get_int(row, "id", 0);
        snprintf(where, sizeof where, "config_restore.%s[%zu]", tables[k].key, i);
        if (!nv_is(row, NV_MAP) || !nv_is(nv_get(row, "id"), NV_INT) || id <= last) {
            nv_err_add(x->err, where, EINVAL,
                       "each row is an object with an integer id, ids ascending and above 0");
            return -1;
        }
        last = id;
        /* the create takes the next id: make it this row's */
        x->s->next_id[t] = id;
        if (sub_exec(x, where, method, one(create_input(t, row))) < 0 ||
            same_as_doc(x, where, t, row) < 0) {
            return -1;
        }
    }
    return 0;
}

static int restore_doc(struct sm_ex *x, const struct nv *doc)
{
    const struct nv *g = nv_get(doc, "global");
    if (nv_is(g, NV_MAP)) {
        static const char *const keys[] = {"basenqn", "kernel",         "ana",
                                           "rdma",    "xport_referral", "enabled"};
        struct nv *in = nv_map();
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const struct nv *v = nv_get(g, keys[i]);
            if (v != NULL && !nv_is(v, NV_NIL)) {
                nv_set(in, keys[i], nv_copy(v));
            }
        }
        if (sub_exec(x, "config_restore.global", "nvmet.global.update", one(in)) < 0) {
            return -1;
        }
    }
    const struct nv *fo = nv_get(doc, "failover");
    if (nv_is(fo, NV_MAP) && nv_len(fo) > 0 &&
        sub_exec(x, "config_restore.failover", "failover.update", one(nv_copy(fo))) < 0) {
        return -1;
    }
    for (size_t k = 0; k < N_TABLES; k++) {
        const struct nv *rows = nv_get(doc, tables[k].key);
        if (rows != NULL && !nv_is(rows, NV_ARR)) {
            char where[64];
            snprintf(where, sizeof where, "config_restore.%s", tables[k].key);
            nv_err_add(x->err, where, EINVAL, "must be a list of rows");
            return -1;
        }
        if (restore_table(x, k, rows) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A copy of s (through its snapshot: the one deep copy that exists). */
static struct sm_state *clone(const struct sm_state *s)
{
    char *buf = NULL;
    size_t len = 0;
    struct sm_state *c = sm_new();
    struct nv_err e;
    nv_err_init(&e);
    if (c == NULL || sm_snapshot(s, &buf, &len) < 0 || sm_restore(c, buf, len, &e) < 0) {
        sm_free(c);
        c = NULL;
    }
    nv_err_clear(&e);
    free(buf);
    return c;
}

/* The configuration of b becomes a's; a keeps its node registry, active
 * node and client sessions (b gets a's old configuration, to be freed). */
static void take_config(struct sm_state *a, struct sm_state *b)
{
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        struct sm_rows_tab tt = a->t[t];
        a->t[t] = b->t[t];
        b->t[t] = tt;
        int64_t n = a->next_id[t];
        a->next_id[t] = b->next_id[t];
        b->next_id[t] = n;
    }
    for (int i = 0; i < SM_NIDX; i++) {
        struct sm_hidx h = a->idx[i];
        a->idx[i] = b->idx[i];
        b->idx[i] = h;
    }
    struct nv *g = a->global;
    a->global = b->global;
    b->global = g;
    size_t ana = a->ana_subsys;
    a->ana_subsys = b->ana_subsys;
    b->ana_subsys = ana;
    /* every row is new to the renderer: one full pass */
    sm__change_all(a);
    const struct nv *fo = nv_get(b->cluster, "failover");
    if (fo != NULL) {
        if (a->cluster == NULL) {
            a->cluster = sm__cluster_default();
        }
        nv_set(a->cluster, "failover", nv_copy(fo));
    }
}

int sm__restore_target_empty(struct sm_ex *x)
{
    size_t rows = 0;
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        rows += x->s->t[t].n;
    }
    if (rows > 0) {
        nv_err_add(x->err, "config_restore", EEXIST,
                   "the cluster holds %zu objects already: config.restore fills an empty "
                   "cluster only (delete them first, or restore into a new cluster)",
                   rows);
        return -1;
    }
    return 0;
}

int sm__config_restore(struct sm_ex *x, const struct nv *params)
{
    if (!sm__argc_ok(x, params, 1)) {
        return -1;
    }
    const struct nv *doc = nv_at(params, 0);
    const char *format = nv_get_str(doc, "format");
    if (!nv_is(doc, NV_MAP) || format == NULL || strcmp(format, FORMAT) != 0) {
        nv_err_add(x->err, "config_restore.config", EINVAL,
                   "expected a document of config.save (\"format\": \"" FORMAT "\")");
        return -1;
    }
    if (nv_get_int(doc, "version", 0) != VERSION) {
        nv_err_add(x->err, "config_restore.config.version", EINVAL,
                   "version %" PRId64 " is not one this node reads (%d)",
                   nv_get_int(doc, "version", 0), VERSION);
        return -1;
    }
    if (sm__restore_target_empty(x) < 0) {
        return -1;
    }
    struct sm_state *copy = clone(x->s);
    if (copy == NULL) {
        nv_err_call(x->err, ENOMEM, "out of memory");
        return -1;
    }
    struct sm_state *real = x->s;
    bool mutate = x->mutate;
    x->s = copy;
    x->mutate = true;
    int rv = restore_doc(x, doc);
    x->s = real;
    x->mutate = mutate;
    if (rv == 0 && x->capture && !mutate) {
        /* v2: the configuration the creates made, every value resolved */
        struct nv *op = nv_map();
        nv_set(op, "config", sm_config_save(copy));
        sm__capture(x, op);
    }
    if (rv == 0 && mutate) {
        take_config(real, copy);
        x->changed = true;
        struct nv *sum = nv_map();
        for (size_t k = 0; k < N_TABLES; k++) {
            nv_set_int(sum, tables[k].key, (int64_t)real->t[tables[k].t].n);
        }
        x->result = sum;
    }
    sm_free(copy);
    return rv;
}
