/* nv value tree: see nv.h for the ownership contract. */
#include "nv.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static struct nv *alloc(enum nv_type t)
{
    struct nv *v = calloc(1, sizeof *v);
    if (v != NULL) {
        v->t = t;
    }
    return v;
}

struct nv *nv_nil(void) { return alloc(NV_NIL); }

struct nv *nv_bool(bool b)
{
    struct nv *v = alloc(NV_BOOL);
    if (v != NULL) {
        v->u.b = b;
    }
    return v;
}

struct nv *nv_int(int64_t i)
{
    struct nv *v = alloc(NV_INT);
    if (v != NULL) {
        v->u.i = i;
    }
    return v;
}

struct nv *nv_float(double f)
{
    struct nv *v = alloc(NV_FLOAT);
    if (v != NULL) {
        v->u.f = f;
    }
    return v;
}

struct nv *nv_strn(const char *s, size_t n)
{
    struct nv *v = alloc(NV_STR);
    if (v == NULL) {
        return NULL;
    }
    v->u.s.p = malloc(n + 1);
    if (v->u.s.p == NULL) {
        free(v);
        return NULL;
    }
    if (n > 0) {
        memcpy(v->u.s.p, s, n);
    }
    v->u.s.p[n] = '\0';
    v->u.s.len = n;
    return v;
}

struct nv *nv_str(const char *s)
{
    return s == NULL ? nv_nil() : nv_strn(s, strlen(s));
}

struct nv *nv_strf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    struct nv *v = alloc(NV_STR);
    if (v == NULL) {
        free(p);
        return NULL;
    }
    v->u.s.p = p;
    v->u.s.len = (size_t)n;
    return v;
}

struct nv *nv_arr(void) { return alloc(NV_ARR); }
struct nv *nv_map(void) { return alloc(NV_MAP); }

void nv_free(struct nv *v)
{
    if (v == NULL) {
        return;
    }
    switch (v->t) {
    case NV_STR:
        free(v->u.s.p);
        break;
    case NV_ARR:
        for (size_t i = 0; i < v->u.a.n; i++) {
            nv_free(v->u.a.v[i]);
        }
        free(v->u.a.v);
        break;
    case NV_MAP:
        for (size_t i = 0; i < v->u.m.n; i++) {
            free(v->u.m.kv[i].k);
            nv_free(v->u.m.kv[i].v);
        }
        free(v->u.m.kv);
        break;
    default:
        break;
    }
    free(v);
}

struct nv *nv_copy(const struct nv *v)
{
    if (v == NULL) {
        return NULL;
    }
    struct nv *c;
    switch (v->t) {
    case NV_NIL:
        return nv_nil();
    case NV_BOOL:
        return nv_bool(v->u.b);
    case NV_INT:
        return nv_int(v->u.i);
    case NV_FLOAT:
        return nv_float(v->u.f);
    case NV_STR:
        return nv_strn(v->u.s.p, v->u.s.len);
    case NV_ARR:
        c = nv_arr();
        if (c == NULL) {
            return NULL;
        }
        for (size_t i = 0; i < v->u.a.n; i++) {
            struct nv *e = nv_copy(v->u.a.v[i]);
            if (e == NULL || nv_push(c, e) != 0) {
                nv_free(c);
                return NULL;
            }
        }
        return c;
    case NV_MAP:
        /* the keys are unique already: appended without a lookup each */
        c = nv_map();
        if (c == NULL || v->u.m.n == 0) {
            return c;
        }
        c->u.m.kv = malloc(v->u.m.n * sizeof *c->u.m.kv);
        if (c->u.m.kv == NULL) {
            nv_free(c);
            return NULL;
        }
        c->u.m.cap = v->u.m.n;
        for (size_t i = 0; i < v->u.m.n; i++) {
            char *k = strdup(v->u.m.kv[i].k);
            struct nv *e = k != NULL ? nv_copy(v->u.m.kv[i].v) : NULL;
            if (e == NULL) {
                free(k);
                nv_free(c);
                return NULL;
            }
            c->u.m.kv[i].k = k;
            c->u.m.kv[i].v = e;
            c->u.m.n++;
        }
        return c;
    }
    return NULL;
}

int nv_push(struct nv *arr, struct nv *v)
{
    if (arr == NULL || arr->t != NV_ARR || v == NULL) {
        nv_free(v);
        return -EINVAL;
    }
    if (arr->u.a.n == arr->u.a.cap) {
        size_t cap = arr->u.a.cap ? arr->u.a.cap * 2 : 4;
        struct nv **nvv = realloc(arr->u.a.v, cap * sizeof *nvv);
        if (nvv == NULL) {
            nv_free(v);
            return -ENOMEM;
        }
        arr->u.a.v = nvv;
        arr->u.a.cap = cap;
    }
    arr->u.a.v[arr->u.a.n++] = v;
    return 0;
}

static ssize_t find_key(const struct nv *map, const char *key)
{
    if (map == NULL || map->t != NV_MAP || key == NULL) {
        return -1;
    }
    for (size_t i = 0; i < map->u.m.n; i++) {
        if (strcmp(map->u.m.kv[i].k, key) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

int nv_set(struct nv *map, const char *key, struct nv *v)
{
    if (map == NULL || map->t != NV_MAP || v == NULL || key == NULL) {
        nv_free(v);
        return -EINVAL;
    }
    ssize_t at = find_key(map, key);
    if (at >= 0) {
        nv_free(map->u.m.kv[at].v);
        map->u.m.kv[at].v = v;
        return 0;
    }
    if (map->u.m.n == map->u.m.cap) {
        size_t cap = map->u.m.cap ? map->u.m.cap * 2 : 8;
        struct nv_kv *kv = realloc(map->u.m.kv, cap * sizeof *kv);
        if (kv == NULL) {
            nv_free(v);
            return -ENOMEM;
        }
        map->u.m.kv = kv;
        map->u.m.cap = cap;
    }
    char *k = strdup(key);
    if (k == NULL) {
        nv_free(v);
        return -ENOMEM;
    }
    map->u.m.kv[map->u.m.n].k = k;
    map->u.m.kv[map->u.m.n].v = v;
    map->u.m.n++;
    return 0;
}

int nv_set_str(struct nv *map, const char *key, const char *s) { return nv_set(map, key, nv_str(s)); }
int nv_set_int(struct nv *map, const char *key, int64_t i) { return nv_set(map, key, nv_int(i)); }
int nv_set_bool(struct nv *map, const char *key, bool b) { return nv_set(map, key, nv_bool(b)); }
int nv_set_nil(struct nv *map, const char *key) { return nv_set(map, key, nv_nil()); }

struct nv *nv_get(const struct nv *map, const char *key)
{
    ssize_t at = find_key(map, key);
    return at < 0 ? NULL : map->u.m.kv[at].v;
}

struct nv *nv_at(const struct nv *arr, size_t i)
{
    if (arr == NULL || arr->t != NV_ARR || i >= arr->u.a.n) {
        return NULL;
    }
    return arr->u.a.v[i];
}

size_t nv_len(const struct nv *v)
{
    if (v == NULL) {
        return 0;
    }
    switch (v->t) {
    case NV_STR:
        return v->u.s.len;
    case NV_ARR:
        return v->u.a.n;
    case NV_MAP:
        return v->u.m.n;
    default:
        return 0;
    }
}

struct nv *nv_take(struct nv *map, const char *key)
{
    ssize_t at = find_key(map, key);
    if (at < 0) {
        return NULL;
    }
    struct nv *v = map->u.m.kv[at].v;
    free(map->u.m.kv[at].k);
    memmove(&map->u.m.kv[at], &map->u.m.kv[at + 1],
            (map->u.m.n - (size_t)at - 1) * sizeof map->u.m.kv[0]);
    map->u.m.n--;
    return v;
}

bool nv_del(struct nv *map, const char *key)
{
    ssize_t at = find_key(map, key);
    if (at < 0) {
        return false;
    }
    nv_free(nv_take(map, key));
    return true;
}

bool nv_is(const struct nv *v, enum nv_type t) { return v != NULL && v->t == t; }

const char *nv_get_str(const struct nv *map, const char *key)
{
    struct nv *v = nv_get(map, key);
    return nv_is(v, NV_STR) ? v->u.s.p : NULL;
}

int64_t nv_get_int(const struct nv *map, const char *key, int64_t dflt)
{
    struct nv *v = nv_get(map, key);
    return nv_is(v, NV_INT) ? v->u.i : dflt;
}

bool nv_get_bool(const struct nv *map, const char *key, bool dflt)
{
    struct nv *v = nv_get(map, key);
    return nv_is(v, NV_BOOL) ? v->u.b : dflt;
}

bool nv_get_is_nil(const struct nv *map, const char *key) { return nv_is(nv_get(map, key), NV_NIL); }

bool nv_equal(const struct nv *a, const struct nv *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    if ((a->t == NV_INT || a->t == NV_FLOAT) && (b->t == NV_INT || b->t == NV_FLOAT)) {
        if (a->t == NV_INT && b->t == NV_INT) {
            return a->u.i == b->u.i;
        }
        double x = a->t == NV_INT ? (double)a->u.i : a->u.f;
        double y = b->t == NV_INT ? (double)b->u.i : b->u.f;
        return x == y;
    }
    if (a->t != b->t) {
        return false;
    }
    switch (a->t) {
    case NV_NIL:
        return true;
    case NV_BOOL:
        return a->u.b == b->u.b;
    case NV_STR:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case NV_ARR:
        if (a->u.a.n != b->u.a.n) {
            return false;
        }
        for (size_t i = 0; i < a->u.a.n; i++) {
            if (!nv_equal(a->u.a.v[i], b->u.a.v[i])) {
                return false;
            }
        }
        return true;
    case NV_MAP:
        if (a->u.m.n != b->u.m.n) {
            return false;
        }
        for (size_t i = 0; i < a->u.m.n; i++) {
            if (!nv_equal(a->u.m.kv[i].v, nv_get(b, a->u.m.kv[i].k))) {
                return false;
            }
        }
        return true;
    default:
        return false;
    }
}

int nv_pack(struct msgpack_packer *pk, const struct nv *v)
{
    int rv = 0;
    if (v == NULL) {
        return msgpack_pack_nil(pk) == 0 ? 0 : -ENOMEM;
    }
    switch (v->t) {
    case NV_NIL:
        rv = msgpack_pack_nil(pk);
        break;
    case NV_BOOL:
        rv = v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        break;
    case NV_INT:
        rv = msgpack_pack_int64(pk, v->u.i);
        break;
    case NV_FLOAT:
        rv = msgpack_pack_double(pk, v->u.f);
        break;
    case NV_STR:
        rv = msgpack_pack_str(pk, v->u.s.len);
        if (rv == 0) {
            rv = msgpack_pack_str_body(pk, v->u.s.p, v->u.s.len);
        }
        break;
    case NV_ARR:
        rv = msgpack_pack_array(pk, v->u.a.n);
        for (size_t i = 0; rv == 0 && i < v->u.a.n; i++) {
            rv = nv_pack(pk, v->u.a.v[i]);
        }
        break;
    case NV_MAP:
        rv = msgpack_pack_map(pk, v->u.m.n);
        for (size_t i = 0; rv == 0 && i < v->u.m.n; i++) {
            size_t kl = strlen(v->u.m.kv[i].k);
            rv = msgpack_pack_str(pk, kl);
            if (rv == 0) {
                rv = msgpack_pack_str_body(pk, v->u.m.kv[i].k, kl);
            }
            if (rv == 0) {
                rv = nv_pack(pk, v->u.m.kv[i].v);
            }
        }
        break;
    }
    return rv == 0 ? 0 : -ENOMEM;
}

int nv_encode(const struct nv *v, char **buf, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rv = nv_pack(&pk, v);
    if (rv != 0) {
        msgpack_sbuffer_destroy(&sb);
        return rv;
    }
    *len = sb.size;
    *buf = msgpack_sbuffer_release(&sb);
    if (*buf == NULL) {
        *buf = malloc(1); /* empty sbuffer releases NULL */
        if (*buf == NULL) {
            return -ENOMEM;
        }
    }
    return 0;
}

static struct nv *map_from_msgpack(const msgpack_object *o);

struct nv *nv_from_msgpack(const struct msgpack_object *o)
{
    struct nv *c;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return nv_nil();
    case MSGPACK_OBJECT_BOOLEAN:
        return nv_bool(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            return nv_float((double)o->via.u64);
        }
        return nv_int((int64_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return nv_int(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return nv_float(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return nv_strn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return nv_strn(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT:
        return nv_strn(o->via.ext.ptr, o->via.ext.size);
    case MSGPACK_OBJECT_ARRAY:
        c = nv_arr();
        for (uint32_t i = 0; c != NULL && i < o->via.array.size; i++) {
            struct nv *e = nv_from_msgpack(&o->via.array.ptr[i]);
            if (e == NULL || nv_push(c, e) != 0) {
                nv_free(c);
                c = NULL;
            }
        }
        return c;
    case MSGPACK_OBJECT_MAP:
        return map_from_msgpack(o);
    }
    return NULL;
}

/* A key of a msgpack map as a string (ints print in decimal), NULL when
 * it cannot be represented (or out of memory). */
static char *map_key(const msgpack_object *k)
{
    char kbuf[64];
    if (k->type == MSGPACK_OBJECT_STR) {
        /* msgpack-c gives an empty string a NULL ptr */
        return k->via.str.size > 0 ? strndup(k->via.str.ptr, k->via.str.size) : strdup("");
    }
    if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        snprintf(kbuf, sizeof kbuf, "%" PRIu64, k->via.u64);
        return strdup(kbuf);
    }
    if (k->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        snprintf(kbuf, sizeof kbuf, "%" PRId64, k->via.i64);
        return strdup(kbuf);
    }
    return NULL;
}

static int kv_cmp(const void *a, const void *b)
{
    const struct nv_kv *x = *(const struct nv_kv *const *)a, *y = *(const struct nv_kv *const *)b;
    int c = strcmp(x->k, y->k);
    /* equal keys: by position, so the first one leads its run */
    return c != 0 ? c : (x < y ? -1 : x > y);
}

/* Duplicate keys in a decoded map: the first position keeps the last
 * value, as nv_set does. Found by sorting pointers (n log n): a map of
 * 100,000+ keys from a client must not cost n^2 key compares. */
static int map_dedup(struct nv *m)
{
    size_t n = m->u.m.n;
    struct nv_kv **ix = malloc(n * sizeof *ix);
    if (ix == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ix[i] = &m->u.m.kv[i];
    }
    qsort(ix, n, sizeof *ix, kv_cmp);
    bool dups = false;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(ix[j]->k, ix[i]->k) == 0) {
            /* the later duplicate's value moves to the first position */
            nv_free(ix[i]->v);
            ix[i]->v = ix[j]->v;
            ix[j]->v = NULL;
            free(ix[j]->k);
            ix[j]->k = NULL;
            dups = true;
            j++;
        }
        i = j;
    }
    free(ix);
    if (dups) {
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (m->u.m.kv[i].k != NULL) {
                m->u.m.kv[w++] = m->u.m.kv[i];
            }
        }
        m->u.m.n = w;
    }
    return 0;
}

static struct nv *map_from_msgpack(const msgpack_object *o)
{
    uint32_t n = o->via.map.size;
    struct nv *c = nv_map();
    if (c == NULL || n == 0) {
        return c;
    }
    c->u.m.kv = malloc(n * sizeof *c->u.m.kv);
    if (c->u.m.kv == NULL) {
        nv_free(c);
        return NULL;
    }
    c->u.m.cap = n;
    for (uint32_t i = 0; i < n; i++) {
        char *key = map_key(&o->via.map.ptr[i].key);
        struct nv *e = key == NULL ? NULL : nv_from_msgpack(&o->via.map.ptr[i].val);
        if (e == NULL) {
            /* keys of other types cannot be represented: reject */
            free(key);
            nv_free(c);
            return NULL;
        }
        c->u.m.kv[i].k = key;
        c->u.m.kv[i].v = e;
        c->u.m.n++;
    }
    if (map_dedup(c) < 0) {
        nv_free(c);
        return NULL;
    }
    return c;
}

struct nv *nv_decode(const void *buf, size_t len, size_t *used)
{
    /* msgpack-c allocates what a header announces before it looks for the
     * bytes (an array32 header of 2^32 items: ~100 GB): scan first */
    struct nv_scan sc = {0};
    const char *why;
    if (nv_scan(&sc, buf, len, len, &why) != NV_SCAN_DONE) {
        if (used != NULL) {
            *used = 0;
        }
        return NULL;
    }
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    struct nv *v = NULL;
    if (msgpack_unpack_next(&u, buf, sc.pos, &off) == MSGPACK_UNPACK_SUCCESS) {
        v = nv_from_msgpack(&u.data);
    }
    msgpack_unpacked_destroy(&u);
    if (used != NULL) {
        *used = off;
    }
    return v;
}

struct dump {
    char *p;
    size_t n, cap;
};

static void dput(struct dump *d, const char *s, size_t n)
{
    if (d->n + n + 1 > d->cap) {
        size_t cap = (d->cap + n + 1) * 2;
        char *p = realloc(d->p, cap);
        if (p == NULL) {
            return;
        }
        d->p = p;
        d->cap = cap;
    }
    memcpy(d->p + d->n, s, n);
    d->n += n;
    d->p[d->n] = '\0';
}

static void dputs(struct dump *d, const char *s) { dput(d, s, strlen(s)); }

static void dquote(struct dump *d, const char *s, size_t n)
{
    dputs(d, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            dput(d, tmp, 2);
        } else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            dputs(d, tmp);
        } else {
            dput(d, (const char *)&c, 1);
        }
    }
    dputs(d, "\"");
}

static void dump_rec(struct dump *d, const struct nv *v)
{
    char tmp[64];
    if (v == NULL) {
        dputs(d, "null");
        return;
    }
    switch (v->t) {
    case NV_NIL:
        dputs(d, "null");
        break;
    case NV_BOOL:
        dputs(d, v->u.b ? "true" : "false");
        break;
    case NV_INT:
        snprintf(tmp, sizeof tmp, "%" PRId64, v->u.i);
        dputs(d, tmp);
        break;
    case NV_FLOAT:
        snprintf(tmp, sizeof tmp, "%.17g", v->u.f);
        dputs(d, tmp);
        break;
    case NV_STR:
        dquote(d, v->u.s.p, v->u.s.len);
        break;
    case NV_ARR:
        dputs(d, "[");
        for (size_t i = 0; i < v->u.a.n; i++) {
            if (i > 0) {
                dputs(d, ", ");
            }
            dump_rec(d, v->u.a.v[i]);
        }
        dputs(d, "]");
        break;
    case NV_MAP:
        dputs(d, "{");
        for (size_t i = 0; i < v->u.m.n; i++) {
            if (i > 0) {
                dputs(d, ", ");
            }
            dquote(d, v->u.m.kv[i].k, strlen(v->u.m.kv[i].k));
            dputs(d, ": ");
            dump_rec(d, v->u.m.kv[i].v);
        }
        dputs(d, "}");
        break;
    }
}

char *nv_dump(const struct nv *v)
{
    struct dump d = {0};
    dputs(&d, "");
    dump_rec(&d, v);
    return d.p;
}
