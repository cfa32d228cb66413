/* One reconcile pass: bring nvmet/ to the desired tree.
 *
 * Which objects a pass looks at:
 *   sweep:       every desired object (its attributes are read) and every
 *                live object (listed), so every difference is repaired;
 *   full:        the whole desired tree is built and compared with the
 *                last rendered tree; only the objects that differ (or
 *                failed last time) are applied, and the objects of the
 *                last tree that are no longer desired are removed;
 *   incremental: (tgt_delta.c) only the objects of the rows a change list
 *                names are built and compared, so the cost of a write
 *                does not grow with the number of objects.
 * Creates run in the stage order of enum tgt_kind (subsystems,
 * hosts, ports, ANA groups, referrals, allowed_hosts links, port links,
 * namespaces), deletes in the reverse order, and every create or update
 * runs before any delete: a namespace leaves an ANA group before the
 * group goes; tgt_apply.c does one object. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nv.h"
#include "tgt_int.h"

int tgt__pass_gone(struct tgt_pass *p, const struct tobj *o)
{
    if (p->ngone == p->capgone) {
        size_t cap = p->capgone ? p->capgone * 2 : 64;
        const struct tobj **v = realloc(p->gone, cap * sizeof *v);
        if (v == NULL) {
            return -ENOMEM;
        }
        p->gone = v;
        p->capgone = cap;
    }
    p->gone[p->ngone++] = o;
    return 0;
}

/* ---- the pass ------------------------------------------------------------------- */

/* Transport modules a real kernel needs for the desired ports. The first
 * link would also request_module() them; loading early gives a clearer
 * failure. Tried once per instance. */
static void load_transports(struct tgt_pass *p)
{
    static const struct {
        const char *trtype, *module, *sysfs;
    } mods[] = {{"tcp", "nvmet-tcp", "/sys/module/nvmet_tcp"},
                {"rdma", "nvmet-rdma", "/sys/module/nvmet_rdma"},
                {"fc", "nvmet-fc", "/sys/module/nvmet_fc"},
                {"loop", "nvme-loop", "/sys/module/nvme_loop"}};
    if (p->t->emulated) {
        return;
    }
    for (size_t m = 0; m < sizeof mods / sizeof mods[0]; m++) {
        unsigned bit = 2u << m;
        struct stat st;
        if ((p->t->modprobed & bit) || stat(mods[m].sysfs, &st) == 0) {
            continue;
        }
        for (size_t i = 0; i < p->want->n; i++) {
            const struct tobj *o = p->want->o[i];
            const char *tr = o->kind == TK_PORT ? tgt__obj_get(o, "addr_trtype") : NULL;
            if (tr != NULL && strcmp(tr, mods[m].trtype) == 0) {
                p->t->modprobed |= bit;
                p->t->ops->load(p->t, mods[m].module);
                break;
            }
        }
    }
}

/* nvmet/ must exist before anything can be rendered: load the module
 * (emulated: make the default groups). 1 = present, 0 = absent and
 * nothing desired, < 0 = absent (reported). */
int tgt__root_present(struct tgt *t)
{
    char path[4096];
    struct stat st;
    int rv = tgt__path(t, "", path, sizeof path);
    t->stats.stat++;
    if (rv == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char grp[4200];
        snprintf(grp, sizeof grp, "%s/subsystems", path);
        t->stats.stat++;
        if (stat(grp, &st) == 0) {
            return 1;
        }
    }
    return 0;
}

static int ensure_root(struct tgt_pass *p)
{
    char path[4096];
    struct stat st;
    int rv = tgt__path(p->t, "", path, sizeof path);
    if (tgt__root_present(p->t)) {
        return 1;
    }
    if (p->want->n == 0) {
        return 0;
    }
    p->t->ops->load(p->t, "nvmet");
    p->t->modprobed |= 1u;
    p->sweep = true; /* whatever was there is gone */
    if (rv == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        return 1;
    }
    tgt__problem(&p->rep->problems, "nvmet",
                 "configfs has no nvmet/: is the nvmet module available?");
    p->rep->errors++;
    return -ENOENT;
}

static void merge_problems(struct tgt_pass *p, struct nv *list)
{
    for (size_t i = 0; list != NULL && i < nv_len(list); i++) {
        if (p->rep->problems == NULL) {
            p->rep->problems = nv_arr();
        }
        nv_push(p->rep->problems, nv_copy(nv_at(list, i)));
        p->rep->errors++;
    }
}

/* The desired tree becomes the last tree: objects that failed stay dirty
 * (retried by the next pass) and failed removals stay as ghosts. */
static void finish(struct tgt_pass *p, const struct tgt_view *v)
{
    bool unclean = p->want->problems != NULL || p->ghosts->n > 0;
    for (size_t i = 0; i < p->want->n; i++) {
        struct tobj *o = p->want->o[i];
        o->flags = (o->flags & TO_FAILED) ? TO_DIRTY : 0;
        unclean = unclean || o->flags != 0;
    }
    for (size_t i = 0; i < p->ghosts->n; i++) {
        struct tobj *g = p->ghosts->o[i];
        p->ghosts->o[i] = NULL;
        tgt__tree_add(p->want, g);
    }
    p->ghosts->n = 0;
    tgt__tree_free(p->t->last);
    p->t->last = p->want;
    p->t->group = p->want->group;
    p->want = NULL;
    p->t->view = *v;
    p->t->have_view = true;
    p->t->unclean = unclean;
    tgt__src_rebuild(p->t);
}

void tgt__pass_run(struct tgt_pass *p)
{
    /* what to apply */
    for (size_t i = 0; i < p->want->n; i++) {
        struct tobj *o = p->want->o[i];
        const struct tobj *lo = tgt__tree_find(p->last, o->path);
        if (p->sweep || lo == NULL || (lo->flags & TO_DIRTY) || !tgt__obj_equal(o, lo)) {
            o->flags |= TO_TODO;
        }
    }
    /* creates and updates in stage order; want grows while it runs when
     * an incremental pass pulls in objects to make again (later stages) */
    for (int k = TK_SUBSYS; k < TK__END; k++) {
        for (size_t i = 0; i < p->want->n; i++) {
            struct tobj *o = p->want->o[i];
            if ((int)o->kind == k && (o->flags & TO_TODO)) {
                tgt__apply_obj(p, o);
            }
        }
    }
    for (int k = TK__END - 1; k >= TK_SUBSYS; k--) {
        for (size_t i = 0; i < p->ngone; i++) {
            if ((int)p->gone[i]->kind == k) {
                tgt__remove_obj(p, p->gone[i]);
            }
        }
    }
}

void tgt__pass_release(struct tgt_pass *p)
{
    tgt__tree_free(p->want);
    tgt__tree_free(p->live);
    tgt__tree_free(p->ghosts);
    free(p->gone);
    p->want = p->live = p->ghosts = NULL;
    p->gone = NULL;
    p->t->rep = NULL;
}

int tgt__reconcile_rows(struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                        bool sweep, struct tgt_report *rep)
{
    struct tgt_report local = {0};
    if (rep == NULL) {
        rep = &local;
    }
    tgt_report_clear(rep);
    struct tgt_pass p = {.t = t, .rep = rep, .last = t->last, .expect = t->last != NULL};
    t->rep = rep;
    t->stats.passes++;
    t->stats.full_passes++;
    p.want = tgt__build(t, r, v);
    p.ghosts = tgt__tree_new();
    if (p.want == NULL || p.ghosts == NULL) {
        tgt__problem(&rep->problems, "nvmet", "render: out of memory");
        rep->errors++;
        goto out;
    }
    merge_problems(&p, p.want->problems);
    p.sweep = sweep || t->last == NULL || t->sweep_next;
    int root = ensure_root(&p);
    if (root <= 0) {
        if (root < 0) {
            t->sweep_next = true;
        } else {
            finish(&p, v); /* nothing desired, nothing there */
        }
        goto out;
    }
    load_transports(&p);
    rep->swept = p.sweep;
    if (p.sweep) {
        int rv = tgt__list_live(t, &p.live);
        if (rv < 0) {
            tgt__problem(&rep->problems, "nvmet", "render: list nvmet/: %s", strerror(-rv));
            rep->errors++;
            t->sweep_next = true;
            goto out;
        }
    }
    /* what to remove */
    const struct ttree *src = p.sweep ? p.live : p.last;
    for (size_t i = 0; src != NULL && i < src->n; i++) {
        if (tgt__tree_find(p.want, src->o[i]->path) == NULL && tgt__pass_gone(&p, src->o[i]) < 0) {
            rep->errors++;
        }
    }
    tgt__pass_run(&p);
    t->sweep_next = !p.sweep && p.fresh_errors > 0;
    finish(&p, v);
out:
    tgt__pass_release(&p);
    int errors = (int)rep->errors;
    if (rep == &local) {
        tgt_report_clear(&local);
    }
    return errors;
}
