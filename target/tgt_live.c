/* Reading the live tree: the list of objects (dirs and links) under
 * nvmet/{subsystems,ports,hosts} for a sweep, and the live nv map of
 * tgt_live_tree(). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt_int.h"

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s != NULL ? s + 1 : p;
}

static int add(struct ttree *tr, enum tgt_kind kind, const char *path, const char *target)
{
    int rv = tgt__tree_add(tr, tgt__obj_new(kind, path, target));
    return rv == -EEXIST ? 0 : rv;
}

/* Links of one group dir: their target is named by the link's basename
 * (readlink differs between kernels: compare by basename). */
static int list_links(struct tgt *t, struct ttree *tr, const char *dir, enum tgt_kind kind,
                      const char *tgroup)
{
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    int rv = tgt__readdir(t, dir, &d, &n);
    if (rv < 0) {
        return rv == -ENOENT || rv == -ENOTDIR ? 0 : rv;
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (d[i].type != DT_LNK) {
            continue;
        }
        char rel[4096], tgt[4096], target[4096];
        snprintf(rel, sizeof rel, "%s/%s", dir, d[i].name);
        ssize_t l = tgt__readlink(t, rel, tgt, sizeof tgt);
        if (l < 0) {
            continue;
        }
        if (snprintf(target, sizeof target, "%s/%s", tgroup, base_name(tgt)) >=
            (int)sizeof target) {
            continue;
        }
        rv = add(tr, kind, rel, target);
    }
    tgt__dirents_free(d, n);
    return rv;
}

/* Sub-directories of dir as objects of kind (skip: a default group name). */
static int list_dirs(struct tgt *t, struct ttree *tr, const char *dir, enum tgt_kind kind,
                     const char *skip, char ***names, size_t *nnames)
{
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    int rv = tgt__readdir(t, dir, &d, &n);
    if (names != NULL) {
        *names = NULL;
        *nnames = 0;
    }
    if (rv < 0) {
        return rv == -ENOENT || rv == -ENOTDIR ? 0 : rv;
    }
    if (names != NULL) {
        *names = calloc(n ? n : 1, sizeof **names);
        if (*names == NULL) {
            tgt__dirents_free(d, n);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (d[i].type != DT_DIR || (skip != NULL && strcmp(d[i].name, skip) == 0)) {
            continue;
        }
        char rel[4096];
        snprintf(rel, sizeof rel, "%s%s%s", dir, dir[0] ? "/" : "", d[i].name);
        rv = add(tr, kind, rel, NULL);
        if (rv == 0 && names != NULL) {
            (*names)[(*nnames)++] = d[i].name;
            d[i].name = NULL;
        }
    }
    tgt__dirents_free(d, n);
    return rv;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

int tgt__list_live(struct tgt *t, struct ttree **out)
{
    struct ttree *tr = tgt__tree_new();
    char **names = NULL;
    size_t n = 0;
    if (tr == NULL) {
        return -ENOMEM;
    }
    int rv = list_dirs(t, tr, "subsystems", TK_SUBSYS, NULL, &names, &n);
    for (size_t i = 0; i < n && rv == 0; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "subsystems/%s/namespaces", names[i]);
        rv = list_dirs(t, tr, dir, TK_NS, NULL, NULL, NULL);
        if (rv == 0) {
            snprintf(dir, sizeof dir, "subsystems/%s/allowed_hosts", names[i]);
            rv = list_links(t, tr, dir, TK_HOSTLINK, "hosts");
        }
    }
    free_names(names, n);
    if (rv == 0) {
        rv = list_dirs(t, tr, "ports", TK_PORT, NULL, &names, &n);
        for (size_t i = 0; i < n && rv == 0; i++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "ports/%s/subsystems", names[i]);
            rv = list_links(t, tr, dir, TK_PORTLINK, "subsystems");
            if (rv == 0) {
                snprintf(dir, sizeof dir, "ports/%s/referrals", names[i]);
                rv = list_dirs(t, tr, dir, TK_REFERRAL, NULL, NULL, NULL);
            }
            if (rv == 0) {
                /* group 1 is the kernel's default group: never ours to remove */
                snprintf(dir, sizeof dir, "ports/%s/ana_groups", names[i]);
                rv = list_dirs(t, tr, dir, TK_ANAGRP, "1", NULL, NULL);
            }
        }
        free_names(names, n);
    }
    if (rv == 0) {
        rv = list_dirs(t, tr, "hosts", TK_HOST, NULL, NULL, NULL);
    }
    if (rv < 0) {
        tgt__tree_free(tr);
        return rv;
    }
    *out = tr;
    return 0;
}

/* Trim what the kernel appends or pads: the newline and attr_serial's
 * spaces. */
static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
}

struct kv_list {
    char **k;
    struct nv **v;
    size_t n, cap;
    int err;
};

static void kv_add(struct kv_list *l, const char *k, struct nv *v)
{
    if (l->err) {
        nv_free(v);
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **nk = realloc(l->k, cap * sizeof *nk);
        struct nv **nvv = nk ? realloc(l->v, cap * sizeof *nvv) : NULL;
        if (nk != NULL) {
            l->k = nk;
        }
        if (nk == NULL || nvv == NULL) {
            l->err = -ENOMEM;
            nv_free(v);
            return;
        }
        l->v = nvv;
        l->cap = cap;
    }
    l->k[l->n] = strdup(k);
    l->v[l->n] = v;
    l->n++;
}

static void kv_obj(struct kv_list *l, const struct tobj *o)
{
    if (o->target != NULL) {
        const char *b = base_name(o->target);
        struct nv *v = nv_strf("-> %s", b);
        kv_add(l, o->path, v);
    } else {
        kv_add(l, o->path, nv_bool(true));
    }
}

static struct nv *kv_finish(struct kv_list *l)
{
    if (l->err) {
        for (size_t i = 0; i < l->n; i++) {
            free(l->k[i]);
            nv_free(l->v[i]);
        }
        free(l->k);
        free(l->v);
        return NULL;
    }
    struct nv *m = tgt__sorted_map(l->k, l->v, l->n);
    free(l->k);
    free(l->v);
    return m;
}

struct nv *tgt_live_tree(struct tgt *t)
{
    struct ttree *live = NULL;
    struct tgt_report *saved = t->rep;
    t->rep = NULL;
    int rv = tgt__list_live(t, &live);
    struct kv_list l = {0};
    for (size_t i = 0; rv == 0 && i < live->n; i++) {
        const struct tobj *o = live->o[i];
        kv_obj(&l, o);
        const struct tobj *known = tgt__tree_find(t->last, o->path);
        if (known != NULL && (known->flags & TO_GHOST)) {
            known = NULL;
        }
        /* the attributes the last pass rendered, or all the managed ones */
        size_t na = known != NULL ? known->nattr : 0;
        const struct tgt_attr *table = tgt__attrs(o->kind);
        for (size_t a = 0; known != NULL ? a < na : table[a].name != NULL; a++) {
            const char *name = known != NULL ? known->attrs[a].d->name : table[a].name;
            char rel[4096], val[4096];
            snprintf(rel, sizeof rel, "%s/%s", o->path, name);
            if (tgt__read(t, rel, val, sizeof val) < 0) {
                continue;
            }
            trim(val);
            kv_add(&l, rel, nv_str(val));
        }
    }
    tgt__tree_free(live);
    t->rep = saved;
    if (rv < 0) {
        kv_finish(&l);
        return NULL;
    }
    return kv_finish(&l);
}

struct nv *tgt__desired_nv(struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v)
{
    struct ttree *want = tgt__build(t, r, v);
    if (want == NULL) {
        return NULL;
    }
    struct kv_list l = {0};
    for (size_t i = 0; i < want->n; i++) {
        const struct tobj *o = want->o[i];
        kv_obj(&l, o);
        for (size_t a = 0; a < o->nattr; a++) {
            const struct tgt_attr *d = o->attrs[a].d;
            if (d->need != TA_NEED_FILE && !tgt__has_feature(t, d->feature)) {
                continue; /* this kernel has no such file */
            }
            char rel[4096];
            snprintf(rel, sizeof rel, "%s/%s", o->path, d->name);
            kv_add(&l, rel, nv_str(o->attrs[a].v));
        }
    }
    tgt__tree_free(want);
    return kv_finish(&l);
}
