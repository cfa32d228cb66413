/* Incremental passes: render exactly the rows a change list names.
 *
 * The statemachine lists the rows every apply added, modified or removed
 * (sm_changes). A pass after a few writes builds only the objects of
 * those rows and of the rows that depend on them, compares them with the
 * last rendered tree, applies what differs and removes what those rows no
 * longer make; the last tree is then patched in place. Nothing else is
 * built, read or compared, so a write costs the same with ten objects or
 * with a hundred thousand.
 *
 * What depends on what (the objects a row's change can alter):
 *   subsystem  its dir; when its NQN or allow_any_host changes, also its
 *              namespaces, allowed_hosts links and port links (paths and
 *              the access list name it). Removing a subsystem removes
 *              those rows too, and the list names them;
 *   host       its dir; when its NQN changes, its allowed_hosts links;
 *   namespace, allowed_hosts link, port link: their own object.
 * Everything else is a full pass (the whole desired tree, compared with
 * the last one): changes of ports (their referrals and ANA forms look at
 * every port), of the global row or the cluster facts, with failover
 * licensed changes of subsystems and port links (effective ANA decides
 * the port forms and the ANA group) other than additions that change
 * neither (tgt__ha_added_ok), a different view (role, ANA slot),
 * and any pass after one that left failures, ghosts or builder problems
 * (those are retried and reported by every pass until they are gone).
 * The periodic sweep stays the only walk of the live tree. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt_int.h"

static bool same_view(const struct tgt_view *a, const struct tgt_view *b)
{
    if (a->empty != b->empty || a->active != b->active || a->ha != b->ha ||
        a->node_id != b->node_id || a->node_slot != b->node_slot || a->n_slots != b->n_slots) {
        return false;
    }
    for (unsigned i = 0; i < a->n_slots && i < TGT_MAX_SLOTS; i++) {
        if (a->slot_ids[i] != b->slot_ids[i]) {
            return false;
        }
    }
    return true;
}

/* A change an incremental pass can render on its own. */
static bool row_change_ok(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                          const struct sm_change *c)
{
    switch (c->table) {
        case SM_HOST:
        case SM_NAMESPACE:
        case SM_HOST_SUBSYS:
            return true;
        case SM_SUBSYS:
        case SM_PORT_SUBSYS:
            return !v->ha || (c->op == SM_ADDED && tgt__ha_added_ok(t, r, v, c->table, c->id));
        default:
            return false;
    }
}

struct refs {
    struct tgt_ref *r;
    size_t n, cap;
};

static int refs_add(struct refs *rs, enum sm_table t, int64_t id)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 16;
        struct tgt_ref *r = realloc(rs->r, cap * sizeof *r);
        if (r == NULL) {
            return -ENOMEM;
        }
        rs->r = r;
        rs->cap = cap;
    }
    rs->r[rs->n++] = (struct tgt_ref){.table = t, .id = id};
    return 0;
}

static int ref_cmp(const void *a, const void *b)
{
    const struct tgt_ref *x = a, *y = b;
    if (x->table != y->table) {
        return x->table < y->table ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Sorted, each row once: a row written several times is built once. */
static void refs_unique(struct refs *rs)
{
    if (rs->n == 0) {
        return;
    }
    qsort(rs->r, rs->n, sizeof *rs->r, ref_cmp);
    size_t k = 1;
    for (size_t i = 1; i < rs->n; i++) {
        if (ref_cmp(&rs->r[i], &rs->r[k - 1]) != 0) {
            rs->r[k++] = rs->r[i];
        }
    }
    rs->n = k;
}

static int add_rows_with(struct refs *rs, const struct tgt_rows *r, enum sm_table t,
                         const char *col, int64_t id)
{
    int64_t *ids = NULL;
    ssize_t n = tgt__rows_with(r, t, col, id, &ids);
    for (ssize_t i = 0; i < n; i++) {
        if (refs_add(rs, t, ids[i]) < 0) {
            n = -ENOMEM;
        }
    }
    free(ids);
    return n < 0 ? (int)n : 0;
}

static bool attr_same(const struct tobj *a, const struct tobj *b, const char *name)
{
    const char *x = tgt__obj_get(a, name), *y = tgt__obj_get(b, name);
    return x == y || (x != NULL && y != NULL && strcmp(x, y) == 0);
}

/* Did the subsystem or host of a modified row change in a way its
 * dependants see (see the top of the file)? Old: the last tree's object,
 * now: the one just built (either may be missing). */
static bool identity_changed(enum sm_table t, const struct tobj *old, const struct tobj *now)
{
    if (old == NULL || now == NULL) {
        return old != now;
    }
    if (strcmp(old->path, now->path) != 0) {
        return true;
    }
    return t == SM_SUBSYS && !attr_same(old, now, "attr_allow_any_host");
}

/* The object a row makes in the tree being built (the builder stamps it). */
static struct tobj *built(const struct ttree *tr, enum sm_table t, int64_t id, size_t from)
{
    enum tgt_kind k = tgt__row_kind(t);
    for (size_t i = from; i < tr->n; i++) {
        if (tr->o[i]->kind == k && tr->o[i]->src_id == id) {
            return tr->o[i];
        }
    }
    return NULL;
}

/* Build the changed rows, then the dependants of the subsystems and hosts
 * whose identity changed. */
static int build_changed(struct tgt_pass *p, const struct tgt_rows *r, const struct tgt_view *v,
                         const struct sm_change *ch, size_t n)
{
    struct refs rs = {0}, deps = {0};
    int rv = 0;
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = refs_add(&rs, ch[i].table, ch[i].id);
    }
    refs_unique(&rs);
    for (size_t i = 0; i < rs.n && rv == 0; i++) {
        size_t from = p->want->n;
        rv = tgt__build_rows(p->t, r, v, &rs.r[i], 1, p->want);
        enum sm_table t = rs.r[i].table;
        if (rv < 0 || (t != SM_SUBSYS && t != SM_HOST)) {
            continue;
        }
        const struct tobj *old = tgt__src_find(p->t, tgt__row_kind(t), rs.r[i].id);
        if (!identity_changed(t, old, built(p->want, t, rs.r[i].id, from))) {
            continue;
        }
        if (t == SM_SUBSYS) {
            rv = add_rows_with(&deps, r, SM_NAMESPACE, "subsys_id", rs.r[i].id);
            if (rv == 0) {
                rv = add_rows_with(&deps, r, SM_PORT_SUBSYS, "subsys_id", rs.r[i].id);
            }
            if (rv == 0) {
                rv = add_rows_with(&deps, r, SM_HOST_SUBSYS, "subsys_id", rs.r[i].id);
            }
        } else {
            rv = add_rows_with(&deps, r, SM_HOST_SUBSYS, "host_id", rs.r[i].id);
        }
    }
    /* the dependants not already built as changed rows themselves */
    refs_unique(&deps);
    for (size_t i = 0; i < deps.n && rv == 0; i++) {
        if (bsearch(&deps.r[i], rs.r, rs.n, sizeof *rs.r, ref_cmp) == NULL) {
            rv = tgt__build_rows(p->t, r, v, &deps.r[i], 1, p->want);
        }
    }
    /* the objects these rows made last time and make no more */
    for (size_t k = 0; k < 2 && rv == 0; k++) {
        const struct refs *set = k == 0 ? &rs : &deps;
        for (size_t i = 0; i < set->n && rv == 0; i++) {
            struct tobj *old = tgt__src_find(p->t, tgt__row_kind(set->r[i].table), set->r[i].id);
            if (old != NULL && !(old->flags & TO_GONE) &&
                tgt__tree_find(p->want, old->path) == NULL) {
                old->flags |= TO_GONE;
                rv = tgt__pass_gone(p, old);
            }
        }
    }
    free(rs.r);
    free(deps.r);
    return rv;
}

/* The changed objects go into the last tree (replacing the ones at their
 * paths), the removed ones leave it, failed removals stay as ghosts. */
static void finish_delta(struct tgt_pass *p)
{
    struct tgt *t = p->t;
    bool unclean = p->want->problems != NULL || p->ghosts->n > 0;
    for (size_t i = 0; i < p->ngone; i++) {
        struct tobj *g = (struct tobj *)p->gone[i];
        tgt__src_del(t, g);
        tgt__tree_del(t->last, g);
        tgt__obj_free(g);
    }
    for (size_t i = 0; i < p->want->n; i++) {
        struct tobj *o = p->want->o[i];
        o->flags = (o->flags & TO_FAILED) ? TO_DIRTY : 0;
        unclean = unclean || o->flags != 0;
        struct tobj *old = tgt__tree_find(t->last, o->path);
        if (old != NULL) {
            tgt__src_del(t, old);
            tgt__tree_swap(t->last, old, o);
            tgt__obj_free(old);
        } else if (tgt__tree_add(t->last, o) < 0) {
            unclean = true; /* out of memory: o is gone, a full pass redoes it */
            continue;
        }
        if (tgt__src_put(t, o) < 0) {
            unclean = true;
        }
    }
    p->want->n = 0; /* the last tree owns the objects now */
    for (size_t i = 0; i < p->ghosts->n; i++) {
        struct tobj *g = p->ghosts->o[i];
        p->ghosts->o[i] = NULL;
        struct tobj *old = tgt__tree_find(t->last, g->path);
        if (old != NULL) { /* cannot happen: a gone path is not desired */
            tgt__src_del(t, old);
            tgt__tree_del(t->last, old);
            tgt__obj_free(old);
        }
        tgt__tree_add(t->last, g);
    }
    p->ghosts->n = 0;
    t->unclean = unclean;
}

static void merge_problems(struct tgt_pass *p, const struct nv *list)
{
    for (size_t i = 0; list != NULL && i < nv_len(list); i++) {
        if (p->rep->problems == NULL) {
            p->rep->problems = nv_arr();
        }
        nv_push(p->rep->problems, nv_copy(nv_at(list, i)));
        p->rep->errors++;
    }
}

int tgt__reconcile_delta(struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                         const struct sm_change *ch, size_t n, struct tgt_report *rep)
{
    if (t->last == NULL || t->sweep_next || t->unclean || !t->have_view ||
        !same_view(&t->view, v)) {
        return -EAGAIN;
    }
    for (size_t i = 0; i < n; i++) {
        if (!row_change_ok(t, r, v, &ch[i])) {
            return -EAGAIN;
        }
    }
    /* nvmet/ must be there (a full pass loads the module) before the
     * first object; once something is rendered, a vanished nvmet/ makes
     * the pass's own calls fail (the next pass sweeps) and the rolling
     * check looks for it too, so no pass pays two stats for it */
    if (t->last->n == 0 && n > 0 && !tgt__root_present(t)) {
        return -EAGAIN;
    }
    struct tgt_report local = {0};
    if (rep == NULL) {
        rep = &local;
    }
    tgt_report_clear(rep);
    struct tgt_pass p = {.t = t, .rep = rep, .last = t->last, .expect = true, .delta = true};
    t->rep = rep;
    t->stats.passes++;
    p.want = tgt__tree_new();
    p.ghosts = tgt__tree_new();
    if (p.want == NULL || p.ghosts == NULL || build_changed(&p, r, v, ch, n) < 0) {
        tgt__problem(&rep->problems, "nvmet", "render: out of memory");
        rep->errors++;
        t->unclean = true;
        for (size_t i = 0; i < p.ngone; i++) {
            ((struct tobj *)p.gone[i])->flags &= ~TO_GONE;
        }
        goto out;
    }
    merge_problems(&p, p.want->problems);
    tgt__pass_run(&p);
    t->sweep_next = p.fresh_errors > 0;
    finish_delta(&p);
out:
    tgt__pass_release(&p);
    int errors = (int)rep->errors;
    if (rep == &local) {
        tgt_report_clear(&local);
    }
    return errors;
}
