/* The rolling check of the live tree: the periodic sweep, one slice at a
 * time.
 *
 * A sweep reads every attribute of every object and lists every group
 * dir; with tens of thousands of objects that is seconds of syscalls, and
 * on the node's single event loop those seconds would starve Raft's
 * heartbeats and the failover lease. So the periodic check walks the last
 * rendered tree (what this node believes the kernel holds) a slice at a
 * time, with the loop free in between:
 *   - each object of the slice is re-applied the way a pass applies it:
 *     its attributes are read and a value changed behind our back is
 *     written back (counted as drift), a link is read and re-pointed;
 *   - a directory that vanished, or an entry in a group dir that the last
 *     tree does not hold (a namespace, a link or a referral made by hand),
 *     ends the slice with -ESTALE: the caller runs a full sweep, which
 *     repairs everything (rare: only when someone touched configfs);
 *   - the first slice of a round also lists nvmet/{subsystems,hosts,ports}
 *     for objects made by hand.
 * Objects written by passes between two slices were just rendered, so the
 * cursor may skip or repeat a few of them when the tree changes size; the
 * next round covers them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nv.h"
#include "tgt_int.h"

static bool present(struct tgt *t, const char *rel)
{
    char path[4096];
    struct stat st;
    t->stats.stat++;
    return tgt__path(t, rel, path, sizeof path) == 0 && stat(path, &st) == 0;
}

/* Does the group dir hold an entry the last tree does not? keep: the
 * kernel's default entry (ana_groups/1). A missing dir holds nothing. */
static bool strays_in(struct tgt *t, const char *dir, const char *keep)
{
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    if (tgt__readdir(t, dir, &d, &n) < 0) {
        return false;
    }
    bool stray = false;
    for (size_t i = 0; i < n && !stray; i++) {
        char rel[4096];
        if (keep != NULL && strcmp(d[i].name, keep) == 0) {
            continue;
        }
        if (snprintf(rel, sizeof rel, "%s/%s", dir, d[i].name) >= (int)sizeof rel) {
            stray = true; /* no object of ours has such a name */
            continue;
        }
        stray = tgt__tree_find(t->last, rel) == NULL;
    }
    tgt__dirents_free(d, n);
    return stray;
}

static bool child_strays(struct tgt *t, const struct tobj *o)
{
    static const struct {
        enum tgt_kind kind;
        const char *group, *keep;
    } groups[] = {{TK_SUBSYS, "namespaces", NULL},
                  {TK_SUBSYS, "allowed_hosts", NULL},
                  {TK_PORT, "subsystems", NULL},
                  {TK_PORT, "referrals", NULL},
                  {TK_PORT, "ana_groups", "1"}};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        char dir[4096];
        if (groups[i].kind != o->kind ||
            snprintf(dir, sizeof dir, "%s/%s", o->path, groups[i].group) >= (int)sizeof dir) {
            continue;
        }
        if (strays_in(t, dir, groups[i].keep)) {
            return true;
        }
    }
    return false;
}

/* One object of the last tree is still there, with nothing unknown in it. */
static bool intact(struct tgt *t, const struct tobj *o)
{
    if (o->target == NULL && !present(t, o->path)) {
        return false;
    }
    return !child_strays(t, o);
}

static int slice_start(struct tgt *t)
{
    if (t->verify_next > 0) {
        return 0;
    }
    if (!tgt__root_present(t)) {
        return t->last->n > 0 ? -ESTALE : 0; /* nvmet/ went away */
    }
    return strays_in(t, "subsystems", NULL) || strays_in(t, "hosts", NULL) ||
                   strays_in(t, "ports", NULL)
               ? -ESTALE
               : 0;
}

/* Failures of the slice stay in the last tree like a pass's: the next
 * pass is a full one and retries them. */
static void slice_finish(struct tgt_pass *p)
{
    struct tgt *t = p->t;
    for (size_t i = 0; i < p->want->n; i++) {
        const struct tobj *o = p->want->o[i];
        if (o->flags & TO_FAILED) {
            struct tobj *lo = tgt__tree_find(t->last, o->path);
            if (lo != NULL) {
                lo->flags |= TO_DIRTY;
            }
            t->unclean = true;
        }
    }
    if (p->fresh_errors > 0) {
        t->sweep_next = true;
    }
}

int tgt_verify_slice(struct tgt *t, size_t max, struct tgt_report *rep, bool *round_done)
{
    *round_done = false;
    tgt_report_clear(rep);
    if (t->last == NULL || t->unclean || t->sweep_next || !t->have_view) {
        return -EAGAIN;
    }
    int rv = slice_start(t);
    if (rv < 0) {
        t->sweep_next = true;
        return rv;
    }
    size_t n = t->last->n, from = t->verify_next < n ? t->verify_next : 0;
    size_t end = max < n - from ? from + max : n;
    struct tgt_pass p = {
        .t = t, .rep = rep, .last = t->last, .expect = true, .delta = true, .verify = true};
    p.want = tgt__tree_new();
    p.ghosts = tgt__tree_new();
    if (p.want == NULL || p.ghosts == NULL) {
        rv = -ENOMEM;
        goto out;
    }
    for (size_t i = from; i < end; i++) {
        const struct tobj *lo = t->last->o[i];
        if (!intact(t, lo)) {
            t->sweep_next = true;
            rv = -ESTALE;
            goto out;
        }
        struct tobj *o = tgt__obj_copy(lo);
        if (o == NULL || tgt__tree_add(p.want, o) < 0) {
            rv = -ENOMEM;
            goto out;
        }
        o->flags = TO_TODO;
    }
    t->rep = rep;
    tgt__pass_run(&p);
    t->rep = NULL;
    slice_finish(&p);
    t->verify_next = end < n ? end : 0;
    *round_done = end >= n;
    rv = (int)rep->errors;
out:
    tgt__pass_release(&p);
    return rv;
}

size_t tgt_rendered_objects(const struct tgt *t)
{
    return t->last != NULL ? t->last->n : 0;
}

void tgt_mark_released(struct tgt *t)
{
    for (size_t i = 0; t->last != NULL && i < t->last->n; i++) {
        struct tobj *o = t->last->o[i];
        if (o->kind == TK_PORTLINK || o->kind == TK_ANAGRP) {
            o->flags |= TO_DIRTY;
            t->unclean = true;
        }
    }
}
