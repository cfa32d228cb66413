/* The desired tree = f(state rows, view): the builder walks the rows in
 * the stage order of truenas-nvmet.md §6.1 and renders every object's
 * attributes from the tables of tgt_attrs.c.
 *
 * ANA (global ana / subsys ana, per-node ports index+5000, ANA group
 * states 2/3, ANA referrals) is not rendered yet: every namespace gets
 * ana_grpid 1 and every port is a plain (IP-takeover) port. The inputs
 * for it are here already (view->node_slot, view->ha, the rows); it slots
 * in as TK_ANAGRP objects, a second port key per port and fn_ana_grpid. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt_int.h"

/* ---- the builder ------------------------------------------------------------- */

struct builder {
    struct tgt_build b;
    struct ttree *tr;
    int err;       /* -ENOMEM */
    bool share;    /* reuse unchanged objects of the last tree */
    uint64_t view; /* digest of the view and the global row's version */
};

/* ---- reuse of unchanged objects ------------------------------------------------ */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static int64_t ver(const struct nv *row)
{
    return row != NULL ? nv_get_int(row, "_v", -1) : -1;
}

/* The inputs of an object besides its own row: related rows and the view. */
static uint64_t digest(const struct builder *bd, const struct nv *a, const struct nv *b)
{
    return mix(mix(bd->view, (uint64_t)ver(a)), (uint64_t)ver(b));
}

/* Put the last tree's object built from row id into the desired tree if it
 * was built from the same inputs. The rows come in ascending id order and
 * so does t->ridx[kind]: *cur walks along (no path lookups). */
static bool reuse(struct builder *bd, size_t *cur, enum tgt_kind kind, int64_t id, int64_t v1,
                  uint64_t v2)
{
    if (!bd->share || v1 < 0 || bd->b.t->last == NULL) {
        return false;
    }
    struct tgt *t = (struct tgt *)bd->b.t;
    size_t n = t->ridx[kind].n;
    struct tobj **objs = t->ridx[kind].o;
    while (*cur < n && objs[*cur]->src_id < id) {
        (*cur)++;
    }
    for (size_t j = *cur; j < n && objs[j]->src_id == id; j++) {
        struct tobj *lo = objs[j];
        if (lo->v1 != v1 || lo->v2 != v2 ||
            (lo->flags & (TO_DIRTY | TO_GHOST | TO_FAILED | TO_SHARED))) {
            continue;
        }
        lo->flags |= TO_SHARED;
        int rv = tgt__tree_add(bd->tr, lo);
        if (rv < 0) {
            lo->flags &= ~TO_SHARED;
            if (rv == -ENOMEM) {
                bd->err = rv;
            }
        }
        return true;
    }
    return false;
}

void tgt__reuse_index(struct tgt *t)
{
    for (int k = 0; k < TK__END; k++) {
        t->ridx[k].n = 0;
    }
    for (size_t i = 0; t->last != NULL && i < t->last->n; i++) {
        struct tobj *o = t->last->o[i];
        if (o->v1 < 0 || o->kind <= 0 || o->kind >= TK__END) {
            continue;
        }
        size_t *n = &t->ridx[o->kind].n, *cap = &t->ridx[o->kind].cap;
        if (*n > 0 && t->ridx[o->kind].o[*n - 1]->src_id > o->src_id) {
            continue; /* out of order (a ghost): not reusable */
        }
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            struct tobj **v = realloc(t->ridx[o->kind].o, nc * sizeof *v);
            if (v == NULL) {
                continue;
            }
            t->ridx[o->kind].o = v;
            *cap = nc;
        }
        t->ridx[o->kind].o[(*n)++] = o;
    }
}

static struct tobj *stamp(struct tobj *o, int64_t id, int64_t v1, uint64_t v2)
{
    if (o != NULL) {
        o->src_id = id;
        o->v1 = v1;
        o->v2 = v2;
    }
    return o;
}

/* A name that can be one configfs directory (the kernel would also refuse
 * the others, but with a confusing ENOENT from the wrong parent). */
static bool dir_name_ok(const char *n)
{
    return n != NULL && *n != '\0' && strchr(n, '/') == NULL && strcmp(n, ".") != 0 &&
           strcmp(n, "..") != 0 && strlen(n) <= 255;
}

static void add_problem(struct builder *bd, const char *object, const char *msg)
{
    tgt__problem(&bd->tr->problems, object, "%s", msg);
}

/* An object with the attributes of its kind's table rendered from row. */
static struct tobj *make_obj(struct builder *bd, enum tgt_kind kind, const char *path,
                             const char *target, const struct nv *row, const struct nv *aux)
{
    struct tobj *o = tgt__obj_new(kind, path, target);
    if (o == NULL) {
        bd->err = -ENOMEM;
        return NULL;
    }
    for (const struct tgt_attr *d = tgt__attrs(kind); d->name != NULL; d++) {
        char val[1024];
        int rv = tgt__render_attr(&bd->b, d, row, aux, val, sizeof val);
        if (rv < 0) {
            char label[600], msg[1800];
            tgt__obj_label(kind, path, label, sizeof label);
            snprintf(msg, sizeof msg, "render %s: %s: %s", label, d->name, val);
            add_problem(bd, path, msg);
            tgt__obj_free(o);
            return NULL;
        }
        if (rv > 0 && tgt__obj_attr(o, d, val) < 0) {
            bd->err = -ENOMEM;
            tgt__obj_free(o);
            return NULL;
        }
    }
    return o;
}

static void add_obj(struct builder *bd, struct tobj *o)
{
    if (o == NULL) {
        return;
    }
    int rv = tgt__tree_add(bd->tr, o);
    if (rv == -ENOMEM) {
        bd->err = rv;
    }
    /* -EEXIST: a duplicate row (two equal links): one object is enough */
}

static void build_subsystems(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    size_t cur = 0;
    const uint64_t v2 = digest(bd, NULL, NULL); /* the same for every row */
    for (size_t i = 0; i < r->n[SM_SUBSYS]; i++) {
        const struct nv *row = r->row[SM_SUBSYS][i];
        int64_t v1 = ver(row), id = nv_get_int(row, "id", 0);
        if (reuse(bd, &cur, TK_SUBSYS, id, v1, v2)) {
            continue; /* unchanged since the last pass */
        }
        const char *nqn = nv_get_str(row, "subnqn");
        char path[512];
        snprintf(path, sizeof path, "subsystems/%s", nqn ? nqn : "");
        if (!dir_name_ok(nqn)) {
            char msg[600];
            snprintf(msg, sizeof msg, "render subsys %s: the NQN cannot be a configfs directory",
                     nqn ? nqn : "(null)");
            add_problem(bd, path, msg);
            continue;
        }
        add_obj(bd, stamp(make_obj(bd, TK_SUBSYS, path, NULL, row, NULL), id, v1, v2));
    }
}

static void build_hosts(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    size_t cur = 0;
    const uint64_t v2 = digest(bd, NULL, NULL); /* the same for every row */
    for (size_t i = 0; i < r->n[SM_HOST]; i++) {
        const struct nv *row = r->row[SM_HOST][i];
        int64_t v1 = ver(row), id = nv_get_int(row, "id", 0);
        if (reuse(bd, &cur, TK_HOST, id, v1, v2)) {
            continue;
        }
        const char *nqn = nv_get_str(row, "hostnqn");
        char path[512];
        snprintf(path, sizeof path, "hosts/%s", nqn ? nqn : "");
        if (!dir_name_ok(nqn)) {
            char msg[600];
            snprintf(msg, sizeof msg, "render host %s: the NQN cannot be a configfs directory",
                     nqn ? nqn : "(null)");
            add_problem(bd, path, msg);
            continue;
        }
        add_obj(bd, stamp(make_obj(bd, TK_HOST, path, NULL, row, NULL), id, v1, v2));
    }
}

/* RDMA ports exist in the state but are rendered only while global rdma
 * is on (reference §10.11). */
static bool port_rendered(const struct builder *bd, const struct nv *port)
{
    const char *tr = nv_get_str(port, "addr_trtype");
    if (tr != NULL && strcmp(tr, "RDMA") == 0) {
        return nv_get_bool(bd->b.rows->global, "rdma", false);
    }
    return port != NULL;
}

static void build_ports(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    size_t cur = 0;
    const uint64_t v2 = digest(bd, NULL, NULL); /* the same for every row */
    for (size_t i = 0; i < r->n[SM_PORT]; i++) {
        const struct nv *row = r->row[SM_PORT][i];
        if (!port_rendered(bd, row)) {
            continue;
        }
        int64_t v1 = ver(row), id = nv_get_int(row, "id", 0);
        if (reuse(bd, &cur, TK_PORT, id, v1, v2)) {
            continue;
        }
        char path[64];
        snprintf(path, sizeof path, "ports/%" PRId64, nv_get_int(row, "index", 0));
        add_obj(bd, stamp(make_obj(bd, TK_PORT, path, NULL, row, NULL), id, v1, v2));
    }
}

/* Cross-port discovery referrals (reference §4.5 step 3 and §6.5): within
 * each (trtype, adrfam) group, every ordered pair of distinct ports. */
static void build_referrals(struct builder *bd)
{
    static const char *const groups[][2] = {
        {"RDMA", "IPV4"}, {"RDMA", "IPV6"}, {"FC", "FC"}, {"TCP", "IPV4"}, {"TCP", "IPV6"}};
    const struct tgt_rows *r = bd->b.rows;
    if (!nv_get_bool(r->global, "xport_referral", true)) {
        return;
    }
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        for (size_t i = 0; i < r->n[SM_PORT]; i++) {
            const struct nv *src = r->row[SM_PORT][i];
            const char *st = nv_get_str(src, "addr_trtype"), *sa = nv_get_str(src, "addr_adrfam");
            if (!port_rendered(bd, src) || st == NULL || sa == NULL ||
                strcmp(st, groups[g][0]) != 0 || strcmp(sa, groups[g][1]) != 0) {
                continue;
            }
            for (size_t j = 0; j < r->n[SM_PORT]; j++) {
                const struct nv *dst = r->row[SM_PORT][j];
                const char *dt = nv_get_str(dst, "addr_trtype");
                const char *da = nv_get_str(dst, "addr_adrfam");
                if (j == i || !port_rendered(bd, dst) || dt == NULL || da == NULL ||
                    strcmp(dt, st) != 0 || strcmp(da, sa) != 0) {
                    continue;
                }
                char path[96];
                snprintf(path, sizeof path, "ports/%" PRId64 "/referrals/%" PRId64,
                         nv_get_int(src, "index", 0), nv_get_int(dst, "index", 0));
                add_obj(bd, make_obj(bd, TK_REFERRAL, path, NULL, dst, src));
            }
        }
    }
}

/* Access lists matter only while allow_any_host is off (reference §6.6);
 * the kernel refuses links while it is on. */
static void build_host_links(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    size_t cur = 0;
    for (size_t i = 0; i < r->n[SM_HOST_SUBSYS]; i++) {
        const struct nv *row = r->row[SM_HOST_SUBSYS][i];
        const struct nv *h = tgt__row_by_id(r, SM_HOST, nv_get_int(row, "host_id", 0));
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
        int64_t v1 = ver(row), id = nv_get_int(row, "id", 0);
        uint64_t v2 = digest(bd, h, s);
        if (h != NULL && s != NULL && reuse(bd, &cur, TK_HOSTLINK, id, v1, v2)) {
            continue;
        }
        const char *hn = nv_get_str(h, "hostnqn"), *sn = nv_get_str(s, "subnqn");
        if (!dir_name_ok(hn) || !dir_name_ok(sn) || nv_get_bool(s, "allow_any_host", false)) {
            continue;
        }
        char path[1024], target[512];
        snprintf(path, sizeof path, "subsystems/%s/allowed_hosts/%s", sn, hn);
        snprintf(target, sizeof target, "hosts/%s", hn);
        add_obj(bd, stamp(make_obj(bd, TK_HOSTLINK, path, target, row, NULL), id, v1, v2));
    }
}

/* A port listens once a subsystem is linked (reference §6.7): only enabled
 * ports, and none on the standby (IP takeover: the VIPs and their ports
 * live on the active node). */
static void build_port_links(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    size_t cur = 0;
    if (!bd->b.view->active) {
        return;
    }
    for (size_t i = 0; i < r->n[SM_PORT_SUBSYS]; i++) {
        const struct nv *row = r->row[SM_PORT_SUBSYS][i];
        const struct nv *p = tgt__row_by_id(r, SM_PORT, nv_get_int(row, "port_id", 0));
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
        int64_t v1 = ver(row), id = nv_get_int(row, "id", 0);
        uint64_t v2 = digest(bd, p, s);
        if (p != NULL && s != NULL && reuse(bd, &cur, TK_PORTLINK, id, v1, v2)) {
            continue;
        }
        const char *sn = nv_get_str(s, "subnqn");
        if (p == NULL || !dir_name_ok(sn) || !nv_get_bool(p, "enabled", false) ||
            !port_rendered(bd, p)) {
            continue;
        }
        char path[600], target[512];
        snprintf(path, sizeof path, "ports/%" PRId64 "/subsystems/%s", nv_get_int(p, "index", 0),
                 sn);
        snprintf(target, sizeof target, "subsystems/%s", sn);
        add_obj(bd, stamp(make_obj(bd, TK_PORTLINK, path, target, row, NULL), id, v1, v2));
    }
}

static void build_namespaces(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    size_t cur = 0;
    for (size_t i = 0; i < r->n[SM_NAMESPACE]; i++) {
        const struct nv *row = r->row[SM_NAMESPACE][i];
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
        int64_t v1 = ver(row), id = nv_get_int(row, "id", 0);
        uint64_t v2 = digest(bd, s, NULL);
        if (s != NULL && reuse(bd, &cur, TK_NS, id, v1, v2)) {
            continue;
        }
        const char *sn = nv_get_str(s, "subnqn");
        int64_t nsid = nv_get_int(row, "nsid", 0);
        if (!dir_name_ok(sn) || nsid <= 0) {
            continue;
        }
        char path[600];
        snprintf(path, sizeof path, "subsystems/%s/namespaces/%" PRId64, sn, nsid);
        struct tobj *o = stamp(make_obj(bd, TK_NS, path, NULL, row, s), id, v1, v2);
        const char *type = nv_get_str(row, "device_type");
        if (o != NULL && type != NULL && strcmp(type, "FILE") == 0) {
            o->backing = strdup(nv_get_str(row, "device_path"));
            o->filesize = nv_get_int(row, "filesize", -1);
            if (o->backing == NULL) {
                bd->err = -ENOMEM;
            }
        }
        add_obj(bd, o);
    }
}

static struct ttree *build(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                           bool share)
{
    struct builder bd = {
        .b = {.t = t, .rows = r, .view = v}, .tr = tgt__tree_new(), .share = share};
    uint64_t vh = mix(mix(mix(v->empty, v->active), v->ha), v->node_id);
    vh = mix(mix(vh, v->node_slot), v->n_slots);
    for (unsigned i = 0; i < v->n_slots && i < TGT_MAX_SLOTS; i++) {
        vh = mix(vh, v->slot_ids[i]);
    }
    bd.view = mix(vh, (uint64_t)ver(r->global));
    if (bd.tr == NULL) {
        return NULL;
    }
    /* global.enabled=false and the witness desire an empty nvmet/ */
    if (r->global == NULL || !nv_get_bool(r->global, "enabled", false) || v->empty) {
        return bd.tr;
    }
    build_subsystems(&bd);
    build_hosts(&bd);
    build_ports(&bd);
    build_referrals(&bd);
    build_host_links(&bd);
    build_port_links(&bd);
    build_namespaces(&bd);
    if (bd.err < 0) {
        tgt__tree_free(bd.tr);
        return NULL;
    }
    return bd.tr;
}

struct ttree *tgt__build(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v)
{
    return build(t, r, v, false);
}

struct ttree *tgt__build_shared(const struct tgt *t, const struct tgt_rows *r,
                                const struct tgt_view *v)
{
    return build(t, r, v, true);
}

/* ---- rows ------------------------------------------------------------------- */

const struct nv *tgt__row_by_id(const struct tgt_rows *r, enum sm_table t, int64_t id)
{
    /* rows are kept in ascending id order (sm.h) */
    size_t lo = 0, hi = r->n[t];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t m = nv_get_int(r->row[t][mid], "id", 0);
        if (m == id) {
            return r->row[t][mid];
        }
        if (m < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}
