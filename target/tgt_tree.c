/* The renderer's object tree: configfs objects (dirs and links) with their
 * attributes in write order, indexed by path so that a pass can compare
 * the new desired tree with the last rendered one in O(objects). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt_int.h"

static size_t hash_path(const char *s)
{
    /* FNV-1a: paths are short, collisions are resolved by probing */
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return (size_t)h;
}

struct ttree *tgt__tree_new(void) { return calloc(1, sizeof(struct ttree)); }

struct tobj *tgt__obj_new(enum tgt_kind kind, const char *path, const char *target)
{
    struct tobj *o = calloc(1, sizeof *o);
    if (o == NULL) {
        return NULL;
    }
    o->kind = kind;
    o->filesize = -1;
    o->src_id = -1;
    o->hash = hash_path(path);
    o->path = strdup(path);
    o->target = target != NULL ? strdup(target) : NULL;
    if (o->path == NULL || (target != NULL && o->target == NULL)) {
        tgt__obj_free(o);
        return NULL;
    }
    return o;
}

void tgt__obj_free(struct tobj *o)
{
    if (o == NULL) {
        return;
    }
    for (size_t i = 0; i < o->nattr; i++) {
        free(o->attrs[i].v);
    }
    free(o->attrs);
    free(o->path);
    free(o->target);
    free(o->backing);
    free(o);
}

int tgt__obj_attr(struct tobj *o, const struct tgt_attr *d, const char *v)
{
    struct tval *a = realloc(o->attrs, (o->nattr + 1) * sizeof *a);
    if (a == NULL) {
        return -ENOMEM;
    }
    o->attrs = a;
    a[o->nattr].d = d;
    a[o->nattr].v = strdup(v);
    if (a[o->nattr].v == NULL) {
        return -ENOMEM;
    }
    o->nattr++;
    return 0;
}

const char *tgt__obj_get(const struct tobj *o, const char *name)
{
    for (size_t i = 0; i < o->nattr; i++) {
        if (strcmp(o->attrs[i].d->name, name) == 0) {
            return o->attrs[i].v;
        }
    }
    return NULL;
}

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

bool tgt__obj_equal(const struct tobj *a, const struct tobj *b)
{
    if (a->kind != b->kind || !str_eq(a->target, b->target) || a->nattr != b->nattr ||
        !str_eq(a->backing, b->backing) || a->filesize != b->filesize) {
        return false;
    }
    for (size_t i = 0; i < a->nattr; i++) {
        if (a->attrs[i].d != b->attrs[i].d || strcmp(a->attrs[i].v, b->attrs[i].v) != 0) {
            return false;
        }
    }
    return true;
}

void tgt__tree_free(struct ttree *tr)
{
    if (tr == NULL) {
        return;
    }
    for (size_t i = 0; i < tr->n; i++) {
        tgt__obj_free(tr->o[i]);
    }
    free(tr->o);
    free(tr->slot);
    nv_free(tr->problems);
    free(tr);
}

static int rehash(struct ttree *tr, size_t nslot)
{
    size_t *slot = calloc(nslot, sizeof *slot);
    if (slot == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < tr->n; i++) {
        size_t h = tr->o[i]->hash & (nslot - 1);
        while (slot[h] != 0) {
            h = (h + 1) & (nslot - 1);
        }
        slot[h] = i + 1;
    }
    free(tr->slot);
    tr->slot = slot;
    tr->nslot = nslot;
    return 0;
}

struct tobj *tgt__tree_find(const struct ttree *tr, const char *path)
{
    if (tr == NULL || tr->nslot == 0) {
        return NULL;
    }
    size_t full = hash_path(path);
    size_t h = full & (tr->nslot - 1);
    while (tr->slot[h] != 0) {
        struct tobj *o = tr->o[tr->slot[h] - 1];
        if (o->hash == full && strcmp(o->path, path) == 0) {
            return o;
        }
        h = (h + 1) & (tr->nslot - 1);
    }
    return NULL;
}

int tgt__tree_add(struct ttree *tr, struct tobj *o)
{
    if (o == NULL) {
        return -ENOMEM;
    }
    if (tr->nslot > 0) {
        for (size_t h = o->hash & (tr->nslot - 1); tr->slot[h] != 0; h = (h + 1) & (tr->nslot - 1)) {
            const struct tobj *x = tr->o[tr->slot[h] - 1];
            if (x->hash == o->hash && strcmp(x->path, o->path) == 0) {
                tgt__obj_free(o);
                return -EEXIST;
            }
        }
    }
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 64;
        struct tobj **v = realloc(tr->o, cap * sizeof *v);
        if (v == NULL) {
            tgt__obj_free(o);
            return -ENOMEM;
        }
        tr->o = v;
        tr->cap = cap;
    }
    /* keep the load factor under 1/2 */
    if ((tr->n + 1) * 2 > tr->nslot) {
        int rv = rehash(tr, tr->nslot ? tr->nslot * 2 : 128);
        if (rv < 0) {
            tgt__obj_free(o);
            return rv;
        }
    }
    tr->o[tr->n] = o;
    size_t h = o->hash & (tr->nslot - 1);
    while (tr->slot[h] != 0) {
        h = (h + 1) & (tr->nslot - 1);
    }
    tr->slot[h] = tr->n + 1;
    tr->n++;
    return 0;
}

/* The slot that holds o's index, or nslot. */
static size_t slot_of(const struct ttree *tr, const struct tobj *o)
{
    size_t mask = tr->nslot - 1;
    for (size_t h = o->hash & mask; tr->nslot > 0 && tr->slot[h] != 0; h = (h + 1) & mask) {
        if (tr->o[tr->slot[h] - 1] == o) {
            return h;
        }
    }
    return tr->nslot;
}

/* Linear probing without tombstones: after emptying slot i, move back
 * every later entry of the run whose home is not in (i, j]. */
static void slot_clear(struct ttree *tr, size_t i)
{
    size_t mask = tr->nslot - 1;
    for (size_t j = (i + 1) & mask; tr->slot[j] != 0; j = (j + 1) & mask) {
        size_t home = tr->o[tr->slot[j] - 1]->hash & mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            tr->slot[i] = tr->slot[j];
            i = j;
        }
    }
    tr->slot[i] = 0;
}

void tgt__tree_del(struct ttree *tr, struct tobj *o)
{
    size_t h = slot_of(tr, o);
    if (h == tr->nslot) {
        return;
    }
    size_t idx = tr->slot[h] - 1;
    slot_clear(tr, h);
    /* the last object fills the hole in o[] */
    size_t last = tr->n - 1;
    if (idx != last) {
        struct tobj *moved = tr->o[last];
        size_t mh = slot_of(tr, moved);
        tr->o[idx] = moved;
        tr->slot[mh] = idx + 1;
    }
    tr->n--;
}

void tgt__tree_swap(struct ttree *tr, struct tobj *old, struct tobj *o)
{
    size_t h = slot_of(tr, old);
    if (h < tr->nslot) {
        tr->o[tr->slot[h] - 1] = o;
    }
}

struct tobj *tgt__obj_copy(const struct tobj *o)
{
    struct tobj *c = tgt__obj_new(o->kind, o->path, o->target);
    if (c == NULL) {
        return NULL;
    }
    c->src_id = o->src_id;
    c->filesize = o->filesize;
    c->backing = o->backing != NULL ? strdup(o->backing) : NULL;
    bool fail = o->backing != NULL && c->backing == NULL;
    for (size_t i = 0; !fail && i < o->nattr; i++) {
        fail = tgt__obj_attr(c, o->attrs[i].d, o->attrs[i].v) < 0;
    }
    if (fail) {
        tgt__obj_free(c);
        return NULL;
    }
    return c;
}

/* ---- source index ------------------------------------------------------------ */

static bool src_indexed(const struct tobj *o)
{
    return o->src_id >= 0 && tgt__row_kind_table(o->kind) >= 0;
}

static size_t src_home(const struct tgt *t, enum tgt_kind kind, int64_t id)
{
    uint64_t k = ((uint64_t)id * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)kind << 59);
    return (size_t)(k ^ (k >> 29)) & (t->src.nslot - 1);
}

struct tobj *tgt__src_find(const struct tgt *t, enum tgt_kind kind, int64_t id)
{
    if (t->src.nslot == 0) {
        return NULL;
    }
    size_t mask = t->src.nslot - 1;
    for (size_t h = src_home(t, kind, id); t->src.o[h] != NULL; h = (h + 1) & mask) {
        struct tobj *o = t->src.o[h];
        if (o->kind == kind && o->src_id == id) {
            return o;
        }
    }
    return NULL;
}

static int src_grow(struct tgt *t)
{
    size_t nslot = t->src.nslot ? t->src.nslot * 2 : 256;
    struct tobj **slots = calloc(nslot, sizeof *slots);
    if (slots == NULL) {
        return -ENOMEM;
    }
    struct tobj **old = t->src.o;
    size_t nold = t->src.nslot;
    t->src.o = slots;
    t->src.nslot = nslot;
    for (size_t i = 0; i < nold; i++) {
        if (old[i] != NULL) {
            size_t h = src_home(t, old[i]->kind, old[i]->src_id);
            while (slots[h] != NULL) {
                h = (h + 1) & (nslot - 1);
            }
            slots[h] = old[i];
        }
    }
    free(old);
    return 0;
}

/* One object per (kind, row): a second object of the same row (a
 * duplicate that the tree refused) replaces nothing. */
int tgt__src_put(struct tgt *t, struct tobj *o)
{
    if (!src_indexed(o)) {
        return 0;
    }
    if ((t->src.n + 1) * 2 > t->src.nslot && src_grow(t) < 0) {
        return -ENOMEM;
    }
    size_t mask = t->src.nslot - 1;
    size_t h = src_home(t, o->kind, o->src_id);
    for (; t->src.o[h] != NULL; h = (h + 1) & mask) {
        if (t->src.o[h]->kind == o->kind && t->src.o[h]->src_id == o->src_id) {
            t->src.o[h] = o;
            return 0;
        }
    }
    t->src.o[h] = o;
    t->src.n++;
    return 0;
}

void tgt__src_del(struct tgt *t, const struct tobj *o)
{
    if (t->src.nslot == 0 || !src_indexed(o)) {
        return;
    }
    size_t mask = t->src.nslot - 1;
    size_t i = src_home(t, o->kind, o->src_id);
    while (t->src.o[i] != NULL && t->src.o[i] != o) {
        i = (i + 1) & mask;
    }
    if (t->src.o[i] == NULL) {
        return;
    }
    for (size_t j = (i + 1) & mask; t->src.o[j] != NULL; j = (j + 1) & mask) {
        size_t home = src_home(t, t->src.o[j]->kind, t->src.o[j]->src_id);
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->src.o[i] = t->src.o[j];
            i = j;
        }
    }
    t->src.o[i] = NULL;
    t->src.n--;
}

void tgt__src_rebuild(struct tgt *t)
{
    if (t->src.nslot > 0) {
        memset(t->src.o, 0, t->src.nslot * sizeof *t->src.o);
    }
    t->src.n = 0;
    for (size_t i = 0; t->last != NULL && i < t->last->n; i++) {
        if (tgt__src_put(t, t->last->o[i]) < 0) {
            t->unclean = true; /* no index: the next pass is a full one */
        }
    }
}

/* Path components: "a/b/c" -> pointers into a copy. */
static size_t split(const char *path, char *copy, size_t len, char **parts, size_t max)
{
    snprintf(copy, len, "%s", path);
    size_t n = 0;
    char *save = NULL;
    for (char *p = strtok_r(copy, "/", &save); p != NULL && n < max;
         p = strtok_r(NULL, "/", &save)) {
        parts[n++] = p;
    }
    return n;
}

void tgt__obj_label(enum tgt_kind kind, const char *path, char *buf, size_t len)
{
    char copy[1024];
    char *p[8];
    size_t n = split(path, copy, sizeof copy, p, 8);
    const char *a = n > 1 ? p[1] : "?";
    const char *c = n > 3 ? p[3] : "?";
    switch (kind) {
    case TK_SUBSYS:
        snprintf(buf, len, "subsys %s", a);
        break;
    case TK_HOST:
        snprintf(buf, len, "host %s", a);
        break;
    case TK_PORT:
        snprintf(buf, len, "port %s", a);
        break;
    case TK_ANAGRP:
        snprintf(buf, len, "port %s ana group %s", a, c);
        break;
    case TK_REFERRAL:
        snprintf(buf, len, "port %s referral %s", a, c);
        break;
    case TK_HOSTLINK:
        snprintf(buf, len, "subsys %s allowed host %s", a, c);
        break;
    case TK_PORTLINK:
        snprintf(buf, len, "port %s link to subsys %s", a, c);
        break;
    case TK_NS:
        snprintf(buf, len, "namespace %s/%s", a, c);
        break;
    default:
        snprintf(buf, len, "%s", path);
        break;
    }
}

struct kvp {
    char *k;
    struct nv *v;
};

static int kvp_cmp(const void *a, const void *b)
{
    return strcmp(((const struct kvp *)a)->k, ((const struct kvp *)b)->k);
}

struct nv *tgt__sorted_map(char **keys, struct nv **vals, size_t n)
{
    struct nv *m = nv_map();
    struct kvp *v = n ? calloc(n, sizeof *v) : NULL;
    bool missing = false;
    for (size_t i = 0; i < n; i++) {
        missing = missing || keys[i] == NULL || vals[i] == NULL;
    }
    if (m == NULL || (n > 0 && v == NULL) || missing) {
        for (size_t i = 0; i < n; i++) {
            free(keys[i]);
            nv_free(vals[i]);
        }
        free(v);
        nv_free(m);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        v[i].k = keys[i];
        v[i].v = vals[i];
    }
    if (n > 1) {
        qsort(v, n, sizeof *v, kvp_cmp);
    }
    /* The keys are unique paths: fill the map directly instead of n
     * nv_set calls (each a linear key search). */
    m->u.m.kv = calloc(n ? n : 1, sizeof *m->u.m.kv);
    if (m->u.m.kv == NULL) {
        for (size_t i = 0; i < n; i++) {
            free(v[i].k);
            nv_free(v[i].v);
        }
        free(v);
        nv_free(m);
        return NULL;
    }
    m->u.m.cap = n ? n : 1;
    for (size_t i = 0; i < n; i++) {
        m->u.m.kv[i].k = v[i].k;
        m->u.m.kv[i].v = v[i].v;
    }
    m->u.m.n = n;
    free(v);
    return m;
}
