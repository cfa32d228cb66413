/* The query engine's value semantics (as TrueNAS filters them in Python): field paths
 * ("a.b.0.*", "\." escapes a dot) and Python-like equality, ordering,
 * membership and prefix tests. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nv.h"
#include "query_int.h"

/* ------------------------------------------------------------------ */
/* field paths: "a.b.0.*", "\." escapes a dot */

void q__path_free(struct path *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->comp[i]);
    }
    free(p->comp);
    p->comp = NULL;
    p->n = 0;
}

int q__path_parse(const char *s, struct path *p)
{
    p->comp = NULL;
    p->n = 0;
    size_t len = strlen(s);
    char *cur = malloc(len + 1);
    if (cur == NULL) {
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] == '\\' && s[i + 1] == '.') {
            cur[k++] = '.';
            i++;
            continue;
        }
        if (i == len || s[i] == '.') {
            cur[k] = '\0';
            char **c = realloc(p->comp, (p->n + 1) * sizeof *c);
            if (c == NULL) {
                free(cur);
                q__path_free(p);
                return -ENOMEM;
            }
            p->comp = c;
            p->comp[p->n++] = strdup(cur);
            k = 0;
            continue;
        }
        cur[k++] = s[i];
    }
    free(cur);
    return 0;
}

bool q__is_index(const char *c, size_t *idx)
{
    if (*c == '\0') {
        return false;
    }
    size_t v = 0;
    for (const char *p = c; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
        v = v * 10 + (size_t)(*p - '0');
    }
    *idx = v;
    return true;
}

/* ------------------------------------------------------------------ */
/* Python-like comparisons */

const char *q__py_type(const struct nv *v)
{
    if (v == NULL) {
        return "NoneType";
    }
    switch (v->t) {
        case NV_NIL:
            return "NoneType";
        case NV_BOOL:
            return "bool";
        case NV_INT:
            return "int";
        case NV_FLOAT:
            return "float";
        case NV_STR:
            return "str";
        case NV_ARR:
            return "list";
        case NV_MAP:
            return "dict";
    }
    return "object";
}

bool q__is_num(const struct nv *v)
{
    return v != NULL && (v->t == NV_INT || v->t == NV_FLOAT || v->t == NV_BOOL);
}

double q__num(const struct nv *v)
{
    return v->t == NV_INT ? (double)v->u.i : v->t == NV_FLOAT ? v->u.f : (v->u.b ? 1.0 : 0.0);
}

int q__casecmp_n(const char *a, size_t al, const char *b, size_t bl, bool ci)
{
    size_t n = al < bl ? al : bl;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (ci) {
            x = (unsigned char)((x >= 'A' && x <= 'Z') ? x + 32 : x);
            y = (unsigned char)((y >= 'A' && y <= 'Z') ? y + 32 : y);
        }
        if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    return al < bl ? -1 : al > bl;
}

/* Python ==, with casefolding of strings when ci. */
bool q__py_eq(const struct nv *a, const struct nv *b, bool ci)
{
    bool an = a == NULL || a->t == NV_NIL, bn = b == NULL || b->t == NV_NIL;
    if (an || bn) {
        return an && bn;
    }
    if (q__is_num(a) && q__is_num(b)) {
        if (a->t == NV_INT && b->t == NV_INT) {
            return a->u.i == b->u.i;
        }
        return q__num(a) == q__num(b);
    }
    if (a->t != b->t) {
        return false;
    }
    switch (a->t) {
        case NV_STR:
            return q__casecmp_n(a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len, ci) == 0;
        case NV_ARR:
            if (a->u.a.n != b->u.a.n) {
                return false;
            }
            for (size_t i = 0; i < a->u.a.n; i++) {
                if (!q__py_eq(a->u.a.v[i], b->u.a.v[i], ci)) {
                    return false;
                }
            }
            return true;
        case NV_MAP:
            if (a->u.m.n != b->u.m.n) {
                return false;
            }
            for (size_t i = 0; i < a->u.m.n; i++) {
                if (!q__py_eq(a->u.m.kv[i].v, nv_get(b, a->u.m.kv[i].k), ci)) {
                    return false;
                }
            }
            return true;
        default:
            return false;
    }
}

/* Python ordering: -1/0/1, or a TypeError in e. */
int q__py_cmp(const struct nv *a, const struct nv *b, const char *opname, bool ci, struct qerr *e)
{
    if (q__is_num(a) && q__is_num(b)) {
        if (a->t == NV_INT && b->t == NV_INT) {
            return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        }
        double x = q__num(a), y = q__num(b);
        return x < y ? -1 : x > y;
    }
    if (a != NULL && b != NULL && a->t == NV_STR && b->t == NV_STR) {
        return q__casecmp_n(a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len, ci);
    }
    if (a != NULL && b != NULL && a->t == NV_ARR && b->t == NV_ARR) {
        size_t n = a->u.a.n < b->u.a.n ? a->u.a.n : b->u.a.n;
        for (size_t i = 0; i < n; i++) {
            if (q__py_eq(a->u.a.v[i], b->u.a.v[i], ci)) {
                continue;
            }
            return q__py_cmp(a->u.a.v[i], b->u.a.v[i], opname, ci, e);
        }
        return a->u.a.n < b->u.a.n ? -1 : a->u.a.n > b->u.a.n;
    }
    if (!e->set) {
        e->set = true;
        snprintf(e->msg, sizeof e->msg, "'%s' not supported between instances of '%s' and '%s'",
                 opname, q__py_type(a), q__py_type(b));
    }
    return 0;
}

/* `needle in hay` (list membership or substring). */
bool q__py_in(const struct nv *needle, const struct nv *hay, bool ci, struct qerr *e)
{
    if (hay != NULL && hay->t == NV_ARR) {
        for (size_t i = 0; i < hay->u.a.n; i++) {
            if (q__py_eq(needle, hay->u.a.v[i], ci)) {
                return true;
            }
        }
        return false;
    }
    if (hay != NULL && hay->t == NV_STR) {
        if (needle == NULL || needle->t != NV_STR) {
            if (!e->set) {
                e->set = true;
                snprintf(e->msg, sizeof e->msg,
                         "'in <string>' requires string as left operand, not %s",
                         q__py_type(needle));
            }
            return false;
        }
        if (needle->u.s.len > hay->u.s.len) {
            return false;
        }
        for (size_t i = 0; i + needle->u.s.len <= hay->u.s.len; i++) {
            if (q__casecmp_n(hay->u.s.p + i, needle->u.s.len, needle->u.s.p, needle->u.s.len, ci) ==
                0) {
                return true;
            }
        }
        return false;
    }
    if (hay != NULL && hay->t == NV_MAP) {
        return needle != NULL && needle->t == NV_STR && nv_get(hay, needle->u.s.p) != NULL;
    }
    if (!e->set) {
        e->set = true;
        snprintf(e->msg, sizeof e->msg, "argument of type '%s' is not iterable", q__py_type(hay));
    }
    return false;
}

bool q__py_starts(const struct nv *x, const struct nv *y, bool ci, bool ends)
{
    if (x == NULL || x->t != NV_STR || y == NULL || y->t != NV_STR || y->u.s.len > x->u.s.len) {
        return false;
    }
    const char *p = ends ? x->u.s.p + x->u.s.len - y->u.s.len : x->u.s.p;
    return q__casecmp_n(p, y->u.s.len, y->u.s.p, y->u.s.len, ci) == 0;
}
