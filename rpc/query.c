/* The TrueNAS query engine (query-filters and query-options): filters and
 * options over a list of entries, with Python's comparison semantics.
 *
 * Pipeline: filter (stops at the first match with get and no order_by) ->
 * select -> count -> order_by -> offset -> limit -> get.
 *
 * Regular expressions: `~` is Python's re.match (anchored at the start, not
 * a full match). We use POSIX extended regexes wrapped as "^(...)": the
 * common syntax is the same; Python-only syntax ((?i), \d, lookarounds)
 * is not supported and is reported as an invalid regular expression. */
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nv.h"
#include "nv_err.h"
#include "query_int.h"
#include "rpc.h"

#define MAX_DEPTH 64
#define MAX_LIMIT 10000
/* Work bounds: every condition (and every value of an "in" list) is
 * evaluated against every entry, a pattern is compiled, on the server's
 * only event loop (a 4 MiB pattern took seconds). Real queries use a
 * handful of short ones. */
#define MAX_CONDS 2000 /* conditions plus the values of their lists */
#define MAX_RE_LEN 1024
#define MAX_FIELDS 1000 /* of order_by and select */

enum op {
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GE,
    OP_LT,
    OP_LE,
    OP_RE,
    OP_IN,
    OP_NIN,
    OP_RIN,
    OP_RNIN,
    OP_SW,
    OP_NSW,
    OP_EW,
    OP_NEW
};

static const struct {
    const char *name;
    enum op op;
} op_names[] = {
    {"=", OP_EQ},      {"!=", OP_NE}, {">", OP_GT},   {">=", OP_GE},   {"<", OP_LT},
    {"<=", OP_LE},     {"~", OP_RE},  {"in", OP_IN},  {"nin", OP_NIN}, {"rin", OP_RIN},
    {"rnin", OP_RNIN}, {"^", OP_SW},  {"!^", OP_NSW}, {"$", OP_EW},    {"!$", OP_NEW},
};

/* "=" or "C=" etc. Returns 0 and the op, or -1 for an unknown operator. */
static int parse_op(const char *s, enum op *op, bool *ci)
{
    *ci = false;
    if (s[0] == 'C' && s[1] != '\0') {
        *ci = true;
        s++;
    }
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++) {
        if (strcmp(op_names[i].name, s) == 0) {
            *op = op_names[i].op;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* compiled filters */

enum cond_kind { C_LEAF, C_OR, C_AND };

struct cond {
    enum cond_kind kind;
    struct path path;
    enum op op;
    bool ci;
    const struct nv *value; /* borrowed from the filters */
    regex_t re;
    bool has_re;
    struct cond *kids;
    size_t nkids;
};

static void cond_free(struct cond *c)
{
    q__path_free(&c->path);
    if (c->has_re) {
        regfree(&c->re);
    }
    for (size_t i = 0; i < c->nkids; i++) {
        cond_free(&c->kids[i]);
    }
    free(c->kids);
}

static void filter_error(struct nv_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void filter_error(struct nv_err *err, const char *fmt, ...)
{
    char inner[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(inner, sizeof inner, fmt, ap);
    va_end(ap);
    nv_err_add(err, "filters", EINVAL, "Value error, %s", inner);
}

/* ------------------------------------------------------------------ */
/* regular expressions: bounded before regcomp */

/* glibc's regcomp copies what a bounded repetition applies to, {m,n} n
 * times, and recurses once per group; a loop inside a bound makes it
 * exponential. Seen on the event loop, from one query: "(((a{1,99}){1,99})
 * {1,99})" 5 s and 1 GB, "a*{10000}" 1 s and 1.5 GB, "((a*)*){20}" 0.9 s
 * and {40} over 10 s, 200,000 nested groups a stack overflow, and a
 * back-reference "(a*)*\1c" matching a 1 KB name over 10 s. So,
 * before regcomp: at most 32 nested groups, no back-references, no
 * repetition right after another ("a**", "a+{3}"), a bound only over what
 * holds no *, + or {m,} (it may hold bounds), and at most 1000 atoms once
 * the repetitions are expanded (an atom 1, a group the sum of its
 * contents, a bound multiplies what it follows, + doubles it: regcomp
 * copies X+ into X X*, so 20 nested (a+)+ took 1.7 s and 1.6 GB). */
#define RE_MAX_GROUPS 32
#define RE_MAX_SIZE 1000.0

/* The copies a bound {m}, {m,} or {m,n} at *pp makes, *pp moved past it;
 * 0 and *pp unchanged if it is not a bound (regcomp judges it). */
static double re_copies(const char **pp)
{
    const char *p = *pp + 1;
    double m = 0, n;
    while (isdigit((unsigned char)*p)) {
        m = m * 10 + (*p++ - '0');
    }
    n = m;
    if (*p == ',') {
        p++;
        n = isdigit((unsigned char)*p) ? 0 : m + 1; /* {m,}: m copies and a star */
        while (isdigit((unsigned char)*p)) {
            n = n * 10 + (*p++ - '0');
        }
    }
    if (*p != '}' || p == *pp + 1) {
        return 0;
    }
    *pp = p + 1;
    n = n > m ? n : m;
    return n > 1 ? n : 1;
}

/* Past the bracket expression at p ("[^]a[:digit:]]"), or NULL if it does
 * not end (regcomp reports that). */
static const char *re_skip_bracket(const char *p)
{
    p++;
    if (*p == '^') {
        p++;
    }
    if (*p == ']') {
        p++;
    }
    while (*p != '\0' && *p != ']') {
        if (*p == '[' && (p[1] == ':' || p[1] == '=' || p[1] == '.')) {
            char k = p[1];
            const char *e = p + 2;
            while (*e != '\0' && !(e[0] == k && e[1] == ']')) {
                e++;
            }
            if (*e == '\0') {
                return NULL;
            }
            p = e + 2;
        } else {
            p++;
        }
    }
    return *p == ']' ? p + 1 : NULL;
}

static bool re_too_complex(const char *p)
{
    /* per open group: its size so far and whether it holds a * or +; the
     * same of its last atom */
    double sum[RE_MAX_GROUPS + 1] = {0}, last[RE_MAX_GROUPS + 1] = {0};
    bool loops[RE_MAX_GROUPS + 1] = {false}, last_loops[RE_MAX_GROUPS + 1] = {false};
    /* what can match the empty string: the alternative so far (and before
     * its last atom), a finished alternative, the last atom */
    bool seq_null[RE_MAX_GROUPS + 1], seq_before[RE_MAX_GROUPS + 1];
    bool alt_null[RE_MAX_GROUPS + 1] = {false}, last_null[RE_MAX_GROUPS + 1] = {false};
    seq_null[0] = seq_before[0] = true;
    unsigned d = 0;
    bool repeated = false; /* the last thing read was *, +, ? or a bound */
    while (*p != '\0') {
        double atom = 1, k;
        bool atom_loops = false;
        const char *q = p;
        if (*p == '(') {
            repeated = false;
            if (d == RE_MAX_GROUPS) {
                return true;
            }
            d++;
            sum[d] = last[d] = 0;
            loops[d] = last_loops[d] = false;
            seq_null[d] = seq_before[d] = true;
            alt_null[d] = last_null[d] = false;
            p++;
            continue;
        }
        if (*p == '|') {
            last[d] = 0; /* alternatives add up */
            last_loops[d] = repeated = false;
            alt_null[d] = alt_null[d] || seq_null[d];
            seq_null[d] = seq_before[d] = true;
            last_null[d] = false;
            p++;
            continue;
        }
        if (*p == '*' || *p == '+' || *p == '?') {
            if (repeated) {
                return true; /* stacked: "a**", "a+{3}" */
            }
            if (*p == '+') {
                sum[d] += last[d]; /* X+ is X X* */
                last[d] *= 2;
            }
            if (*p != '?') {
                last_loops[d] = loops[d] = true;
            }
            if (*p != '+') { /* X? and X* match the empty string */
                last_null[d] = true;
                seq_null[d] = seq_before[d];
            }
            repeated = true;
            p++;
            if (sum[d] > RE_MAX_SIZE) {
                return true;
            }
            continue;
        }
        if (*p == '\\' && p[1] >= '1' && p[1] <= '9') {
            return true; /* a back-reference */
        }
        if (*p == '{' && (k = re_copies(&q)) > 0) {
            /* copies of what matches the empty string multiply regcomp's
             * epsilon closures: "((){2,99}){1,}" 35 s, "((a?){2,99}){1,}"
             * over 15 s */
            if (last_loops[d] || repeated || (last_null[d] && k > 1)) {
                return true;
            }
            if (p[1] == '0' && (p[2] == ',' || p[2] == '}')) { /* {0,n}: may be empty */
                last_null[d] = true;
                seq_null[d] = seq_before[d];
            }
            sum[d] += last[d] * (k - 1);
            last[d] *= k;
            /* {m,} ends in a loop, like * */
            if (q[-2] == ',') {
                last_loops[d] = loops[d] = true;
            }
            repeated = true;
            p = q;
        } else {
            bool atom_null = false;
            if (*p == ')' && d > 0) {
                /* an empty group still costs regcomp a node */
                atom = sum[d] > 0 ? sum[d] : 1;
                atom_null = alt_null[d] || seq_null[d];
                atom_loops = loops[d--];
                p++;
            } else if (*p == '[') {
                if ((p = re_skip_bracket(p)) == NULL) {
                    return false;
                }
            } else {
                p += *p == '\\' && p[1] != '\0' ? 2 : 1;
            }
            sum[d] += atom;
            last[d] = atom;
            last_loops[d] = atom_loops;
            loops[d] = loops[d] || atom_loops;
            seq_before[d] = seq_null[d];
            seq_null[d] = seq_null[d] && atom_null;
            last_null[d] = atom_null;
            repeated = false;
        }
        if (sum[d] > RE_MAX_SIZE) {
            return true;
        }
    }
    return false;
}

static int compile_cond(const struct nv *f, struct cond *c, int depth, struct nv_err *err);

/* A branch of an OR: a leaf, a nested OR, or an AND-group (a list whose
 * first element is itself a list). */
static int compile_branch(const struct nv *b, struct cond *c, int depth, struct nv_err *err)
{
    if (nv_is(b, NV_ARR) && nv_len(b) > 0 && nv_is(nv_at(b, 0), NV_ARR)) {
        c->kind = C_AND;
        c->nkids = nv_len(b);
        c->kids = calloc(c->nkids, sizeof *c->kids);
        for (size_t i = 0; i < c->nkids; i++) {
            if (compile_cond(nv_at(b, i), &c->kids[i], depth + 1, err) < 0) {
                return -EINVAL;
            }
        }
        return 0;
    }
    return compile_cond(b, c, depth, err);
}

static int compile_cond(const struct nv *f, struct cond *c, int depth, struct nv_err *err)
{
    memset(c, 0, sizeof *c);
    if (depth > MAX_DEPTH) {
        filter_error(err, "filter_list: maximum filter nesting depth (%d) exceeded", MAX_DEPTH);
        return -EINVAL;
    }
    if (!nv_is(f, NV_ARR)) {
        filter_error(err, "filter_list: filter must be a list, not %s", q__py_type(f));
        return -EINVAL;
    }
    size_t n = nv_len(f);
    if (n == 2) {
        const struct nv *h = nv_at(f, 0);
        if (!nv_is(h, NV_STR) || strcmp(h->u.s.p, "OR") != 0) {
            filter_error(err, "filter_list: len-2 filter must start with \"OR\"");
            return -EINVAL;
        }
        const struct nv *branches = nv_at(f, 1);
        if (!nv_is(branches, NV_ARR)) {
            filter_error(err, "filter_list: OR filter requires a list of branches");
            return -EINVAL;
        }
        c->kind = C_OR;
        c->nkids = nv_len(branches);
        c->kids = calloc(c->nkids ? c->nkids : 1, sizeof *c->kids);
        for (size_t i = 0; i < c->nkids; i++) {
            if (compile_branch(nv_at(branches, i), &c->kids[i], depth + 1, err) < 0) {
                return -EINVAL;
            }
        }
        return 0;
    }
    if (n != 3) {
        filter_error(err, "filter_list: invalid filter length %zu", n);
        return -EINVAL;
    }
    const struct nv *field = nv_at(f, 0), *opv = nv_at(f, 1);
    if (!nv_is(field, NV_STR)) {
        filter_error(err, "filter_list: field name must be a string, not %s", q__py_type(field));
        return -EINVAL;
    }
    if (!nv_is(opv, NV_STR) || parse_op(opv->u.s.p, &c->op, &c->ci) < 0) {
        filter_error(err, "filter_list: unknown operator '%s'",
                     nv_is(opv, NV_STR) ? opv->u.s.p : q__py_type(opv));
        return -EINVAL;
    }
    if (strstr(field->u.s.p, ".$date") != NULL) {
        filter_error(err, "filter_list: %s: timestamp filters are not supported", field->u.s.p);
        return -EINVAL;
    }
    c->kind = C_LEAF;
    c->value = nv_at(f, 2);
    if (q__path_parse(field->u.s.p, &c->path) < 0) {
        return -ENOMEM;
    }
    if (c->op == OP_RE) {
        if (!nv_is(c->value, NV_STR)) {
            filter_error(err, "filter_list: regular expression must be a string, not %s",
                         q__py_type(c->value));
            return -EINVAL;
        }
        size_t l = c->value->u.s.len;
        if (l > MAX_RE_LEN) {
            filter_error(err, "filter_list: regular expression longer than %d characters",
                         MAX_RE_LEN);
            return -EINVAL;
        }
        char *pat = malloc(l + 4);
        snprintf(pat, l + 4, "^(%s)", c->value->u.s.p);
        /* what regcomp sees: a ")" in the value closes the wrapping group */
        if (re_too_complex(pat)) {
            free(pat);
            filter_error(err, "filter_list: regular expression too complex: %s", c->value->u.s.p);
            return -EINVAL;
        }
        int rv = regcomp(&c->re, pat, REG_EXTENDED | REG_NOSUB | (c->ci ? REG_ICASE : 0));
        free(pat);
        if (rv != 0) {
            filter_error(err, "filter_list: invalid regular expression: %s", c->value->u.s.p);
            return -EINVAL;
        }
        c->has_re = true;
    }
    return 0;
}

/* Take one condition (and those of its OR branches) from *budget; -1 when
 * it runs out. Shapes are checked later by compile_cond. */
static int count_conds(const struct nv *f, int depth, size_t *budget)
{
    size_t cost = 1 + (nv_is(nv_at(f, 2), NV_ARR) ? nv_len(nv_at(f, 2)) : 0);
    if (*budget < cost) {
        return -1;
    }
    *budget -= cost;
    const struct nv *h = nv_at(f, 0);
    if (depth > MAX_DEPTH || !nv_is(f, NV_ARR) || nv_len(f) != 2 || !nv_is(h, NV_STR) ||
        strcmp(h->u.s.p, "OR") != 0) {
        return 0;
    }
    const struct nv *branches = nv_at(f, 1);
    for (size_t i = 0; i < nv_len(branches) && nv_is(branches, NV_ARR); i++) {
        const struct nv *b = nv_at(branches, i);
        if (nv_is(b, NV_ARR) && nv_is(nv_at(b, 0), NV_ARR)) {
            for (size_t k = 0; k < nv_len(b); k++) {
                if (count_conds(nv_at(b, k), depth + 1, budget) < 0) {
                    return -1;
                }
            }
        } else if (count_conds(b, depth + 1, budget) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A whole filter list: an implicit AND. */
static int compile_filters(const struct nv *filters, struct cond *root, struct nv_err *err)
{
    memset(root, 0, sizeof *root);
    root->kind = C_AND;
    if (filters == NULL) {
        return 0;
    }
    if (!nv_is(filters, NV_ARR)) {
        nv_err_add(err, "filters", EINVAL, "Input should be a valid list");
        return -EINVAL;
    }
    size_t budget = MAX_CONDS;
    for (size_t i = 0; i < nv_len(filters); i++) {
        if (count_conds(nv_at(filters, i), 1, &budget) < 0) {
            filter_error(err, "filter_list: more than %d conditions and list values",
                         MAX_CONDS);
            return -EINVAL;
        }
    }
    root->nkids = nv_len(filters);
    root->kids = calloc(root->nkids ? root->nkids : 1, sizeof *root->kids);
    for (size_t i = 0; i < root->nkids; i++) {
        if (compile_cond(nv_at(filters, i), &root->kids[i], 1, err) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

static bool eval_op(const struct cond *c, const struct nv *x, struct qerr *e)
{
    const struct nv *y = c->value;
    bool xnil = x == NULL || x->t == NV_NIL;
    switch (c->op) {
        case OP_EQ:
            return q__py_eq(x, y, c->ci);
        case OP_NE:
            return !q__py_eq(x, y, c->ci);
        case OP_GT:
            return q__py_cmp(x, y, ">", c->ci, e) > 0;
        case OP_GE:
            return q__py_cmp(x, y, ">=", c->ci, e) >= 0;
        case OP_LT:
            return q__py_cmp(x, y, "<", c->ci, e) < 0;
        case OP_LE:
            return q__py_cmp(x, y, "<=", c->ci, e) <= 0;
        case OP_RE:
            if (!xnil && x->t != NV_STR) {
                if (!e->set) {
                    e->set = true;
                    snprintf(e->msg, sizeof e->msg,
                             "expected string or bytes-like object, got '%s'", q__py_type(x));
                }
                return false;
            }
            return regexec(&c->re, xnil ? "" : x->u.s.p, 0, NULL, 0) == 0;
        case OP_IN:
            return q__py_in(x, y, c->ci, e);
        case OP_NIN:
            return !xnil && !q__py_in(x, y, c->ci, e);
        case OP_RIN:
            return !xnil && q__py_in(y, x, c->ci, e);
        case OP_RNIN:
            return !xnil && !q__py_in(y, x, c->ci, e);
        case OP_SW:
            return q__py_starts(x, y, c->ci, false);
        case OP_NSW:
            return !xnil && x->t == NV_STR && !q__py_starts(x, y, c->ci, false);
        case OP_EW:
            return q__py_starts(x, y, c->ci, true);
        case OP_NEW:
            return !xnil && x->t == NV_STR && !q__py_starts(x, y, c->ci, true);
    }
    return false;
}

/* Walk the path from component i; a missing key makes the condition
 * false; "*" is true if any element matches. */
static bool eval_path(const struct cond *c, const struct nv *v, size_t i, struct qerr *e)
{
    static struct nv nil = {.t = NV_NIL};
    if (i == c->path.n) {
        return eval_op(c, v, e);
    }
    const char *comp = c->path.comp[i];
    if (v == NULL) {
        return false;
    }
    if (v->t == NV_MAP) {
        const struct nv *next = nv_get(v, comp);
        return next != NULL && eval_path(c, next, i + 1, e);
    }
    if (v->t == NV_ARR) {
        size_t idx;
        if (strcmp(comp, "*") == 0) {
            for (size_t k = 0; k < v->u.a.n; k++) {
                if (eval_path(c, v->u.a.v[k], i + 1, e)) {
                    return true;
                }
            }
            return false;
        }
        if (q__is_index(comp, &idx)) {
            return eval_path(c, idx < v->u.a.n ? v->u.a.v[idx] : &nil, i + 1, e);
        }
    }
    return false;
}

static bool eval(const struct cond *c, const struct nv *item, struct qerr *e)
{
    switch (c->kind) {
        case C_LEAF:
            return eval_path(c, item, 0, e);
        case C_OR:
            for (size_t i = 0; i < c->nkids; i++) {
                if (eval(&c->kids[i], item, e)) {
                    return true;
                }
            }
            return false;
        case C_AND:
            for (size_t i = 0; i < c->nkids; i++) {
                if (!eval(&c->kids[i], item, e)) {
                    return false;
                }
            }
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* options */

struct opts {
    bool get, count;
    int64_t limit, offset;
    const struct nv *order_by, *select;
};

static bool opt_type(const struct nv *v, enum nv_type t, const char *key, struct nv_err *err)
{
    static const char *const what[] = {"",
                                       "a valid boolean",
                                       "a valid integer",
                                       "a valid number",
                                       "a valid string",
                                       "a valid list",
                                       "a valid dictionary"};
    if (nv_is(v, t)) {
        return true;
    }
    char attr[64];
    snprintf(attr, sizeof attr, "options.%s", key);
    nv_err_add(err, attr, EINVAL, "Input should be %s", what[t]);
    return false;
}

static int parse_select(const struct nv *sel, struct nv_err *err)
{
    for (size_t i = 0; i < nv_len(sel); i++) {
        const struct nv *s = nv_at(sel, i);
        char attr[64];
        snprintf(attr, sizeof attr, "options.select.%zu", i);
        if (nv_is(s, NV_STR)) {
            continue;
        }
        if (!nv_is(s, NV_ARR)) {
            nv_err_add(err, attr, EINVAL, "Input should be a valid string or list");
            return -EINVAL;
        }
        if (nv_len(s) != 2) {
            nv_err_add(err, attr, EINVAL,
                       "Value error, filter_list: select as list may only contain two "
                       "parameters");
            return -EINVAL;
        }
        if (!nv_is(nv_at(s, 0), NV_STR) || !nv_is(nv_at(s, 1), NV_STR)) {
            nv_err_add(err, attr, EINVAL,
                       "Value error, filter_list: select as list: first item must be a string");
            return -EINVAL;
        }
    }
    return 0;
}

static int parse_options(const struct nv *o, struct opts *out, struct nv_err *err)
{
    memset(out, 0, sizeof *out);
    if (o == NULL) {
        return 0;
    }
    if (!nv_is(o, NV_MAP)) {
        nv_err_add(err, "options", EINVAL, "Input should be a valid dictionary");
        return -EINVAL;
    }
    for (size_t i = 0; i < o->u.m.n; i++) {
        const char *k = o->u.m.kv[i].k;
        const struct nv *v = o->u.m.kv[i].v;
        if (strcmp(k, "get") == 0 || strcmp(k, "count") == 0 ||
            strcmp(k, "force_sql_filters") == 0) {
            if (!opt_type(v, NV_BOOL, k, err)) {
                continue;
            }
            if (k[0] == 'g') {
                out->get = v->u.b;
            } else if (k[0] == 'c') {
                out->count = v->u.b;
            }
        } else if (strcmp(k, "limit") == 0 || strcmp(k, "offset") == 0) {
            if (!opt_type(v, NV_INT, k, err)) {
                continue;
            }
            char attr[32];
            snprintf(attr, sizeof attr, "options.%s", k);
            if (v->u.i < 0) {
                nv_err_add(err, attr, EINVAL, "Input should be greater than or equal to 0");
            } else if (k[0] == 'l' && v->u.i > MAX_LIMIT) {
                nv_err_add(err, attr, EINVAL, "Input should be less than or equal to %d",
                           MAX_LIMIT);
            } else if (k[0] == 'l') {
                out->limit = v->u.i;
            } else {
                out->offset = v->u.i;
            }
        } else if ((strcmp(k, "order_by") == 0 || strcmp(k, "select") == 0) &&
                   nv_len(v) > MAX_FIELDS && nv_is(v, NV_ARR)) {
            char attr[64];
            snprintf(attr, sizeof attr, "options.%s", k);
            nv_err_add(err, attr, EINVAL, "List should have at most %d items, not %zu",
                       MAX_FIELDS, nv_len(v));
        } else if (strcmp(k, "order_by") == 0) {
            if (!opt_type(v, NV_ARR, k, err)) {
                continue;
            }
            for (size_t j = 0; j < nv_len(v); j++) {
                if (!nv_is(nv_at(v, j), NV_STR)) {
                    char attr[64];
                    snprintf(attr, sizeof attr, "options.order_by.%zu", j);
                    nv_err_add(err, attr, EINVAL, "Input should be a valid string");
                }
            }
            out->order_by = v;
        } else if (strcmp(k, "select") == 0) {
            if (opt_type(v, NV_ARR, k, err) && parse_select(v, err) == 0) {
                out->select = v;
            }
        } else if (strcmp(k, "extra") == 0) {
            opt_type(v, NV_MAP, k, err);
        } else {
            char attr[64];
            snprintf(attr, sizeof attr, "options.%s", k);
            nv_err_add(err, attr, EINVAL, "Extra inputs are not permitted");
        }
    }
    return nv_err_isset(err) ? -EINVAL : 0;
}

/* ------------------------------------------------------------------ */
/* select */

/* Copy the value at a dotted path into out (nested), or as alias. */
static int select_one(const struct nv *item, const char *spec, const char *alias, struct nv *out,
                      struct qerr *e)
{
    struct path p;
    if (q__path_parse(spec, &p) < 0) {
        return -ENOMEM;
    }
    const struct nv *v = item;
    for (size_t i = 0; i < p.n && v != NULL; i++) {
        if (v->t == NV_ARR) {
            if (!e->set) {
                e->set = true;
                snprintf(e->msg, sizeof e->msg,
                         "filter_list: selecting by list index is not supported");
            }
            q__path_free(&p);
            return 0;
        }
        v = v->t == NV_MAP ? nv_get(v, p.comp[i]) : NULL;
    }
    if (v != NULL) {
        if (alias != NULL) {
            nv_set(out, alias, nv_copy(v));
        } else {
            struct nv *m = out;
            for (size_t i = 0; i + 1 < p.n; i++) {
                struct nv *next = nv_get(m, p.comp[i]);
                if (!nv_is(next, NV_MAP)) {
                    nv_set(m, p.comp[i], nv_map());
                    next = nv_get(m, p.comp[i]);
                }
                m = next;
            }
            nv_set(m, p.comp[p.n - 1], nv_copy(v));
        }
    }
    q__path_free(&p);
    return 0;
}

static struct nv *select_item(const struct nv *item, const struct nv *sel, struct qerr *e)
{
    if (sel == NULL || nv_len(sel) == 0) {
        return nv_copy(item);
    }
    struct nv *out = nv_map();
    for (size_t i = 0; i < nv_len(sel); i++) {
        const struct nv *s = nv_at(sel, i);
        if (nv_is(s, NV_STR)) {
            select_one(item, s->u.s.p, NULL, out, e);
        } else {
            select_one(item, nv_at(s, 0)->u.s.p, nv_at(s, 1)->u.s.p, out, e);
        }
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* order_by: stable merge sort per key, last key first (Python's way) */

struct sort_key {
    struct path path;
    const char *null_key; /* the whole field, looked up top-level (TrueNAS's quirk) */
    int nulls;            /* 0 none, -1 first, 1 last */
    bool desc;
};

static const struct nv *path_value(const struct nv *v, const struct path *p)
{
    for (size_t i = 0; i < p->n && v != NULL; i++) {
        size_t idx;
        if (v->t == NV_MAP) {
            v = nv_get(v, p->comp[i]);
        } else if (v->t == NV_ARR && q__is_index(p->comp[i], &idx)) {
            v = idx < v->u.a.n ? v->u.a.v[idx] : NULL;
        } else {
            v = NULL;
        }
    }
    return v;
}

static int key_cmp(const struct sort_key *k, const struct nv *a, const struct nv *b, struct qerr *e)
{
    const struct nv *x = path_value(a, &k->path), *y = path_value(b, &k->path);
    /* Python: sorted(key=...) compares with '<' */
    int c = q__py_cmp(x, y, "<", false, e);
    return k->desc ? -c : c;
}

static void merge_sort(struct nv **v, struct nv **tmp, size_t n, const struct sort_key *k,
                       struct qerr *e)
{
    if (n < 2) {
        return;
    }
    size_t h = n / 2;
    merge_sort(v, tmp, h, k, e);
    merge_sort(v + h, tmp, n - h, k, e);
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        tmp[o++] = key_cmp(k, v[j], v[i], e) < 0 ? v[j++] : v[i++];
    }
    while (i < h) {
        tmp[o++] = v[i++];
    }
    while (j < n) {
        tmp[o++] = v[j++];
    }
    memcpy(v, tmp, n * sizeof *v);
}

static bool is_null_for(const struct sort_key *k, const struct nv *item)
{
    const struct nv *v = nv_get(item, k->null_key);
    return v == NULL || v->t == NV_NIL;
}

static void sort_by(struct nv **v, size_t n, const struct sort_key *k, struct qerr *e)
{
    struct nv **tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (k->nulls == 0) {
        merge_sort(v, tmp, n, k, e);
        free(tmp);
        return;
    }
    /* stable partition: nulls first or last, the rest sorted */
    struct nv **rest = malloc((n ? n : 1) * sizeof *rest);
    size_t nn = 0, nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_null_for(k, v[i])) {
            tmp[nn++] = v[i];
        } else {
            rest[nr++] = v[i];
        }
    }
    struct nv **tmp2 = malloc((nr ? nr : 1) * sizeof *tmp2);
    merge_sort(rest, tmp2, nr, k, e);
    free(tmp2);
    if (k->nulls < 0) {
        memmove(v, tmp, nn * sizeof *v);
        memcpy(v + nn, rest, nr * sizeof *v);
    } else {
        memcpy(v, rest, nr * sizeof *v);
        memcpy(v + nr, tmp, nn * sizeof *v);
    }
    free(rest);
    free(tmp);
}

static void order(struct nv **v, size_t n, const struct nv *order_by, struct qerr *e)
{
    for (size_t i = nv_len(order_by); i-- > 0 && !e->set;) {
        const char *s = nv_at(order_by, i)->u.s.p;
        struct sort_key k = {0};
        if (strncmp(s, "nulls_first:", 12) == 0) {
            k.nulls = -1;
            s += 12;
        } else if (strncmp(s, "nulls_last:", 11) == 0) {
            k.nulls = 1;
            s += 11;
        }
        if (*s == '-') {
            k.desc = true;
            s++;
        }
        k.null_key = s;
        if (q__path_parse(s, &k.path) < 0) {
            return;
        }
        sort_by(v, n, &k, e);
        q__path_free(&k.path);
    }
}

/* ------------------------------------------------------------------ */

static void call_error(struct nv_err *err, const char *msg)
{
    nv_err_set(err, NV_E_CALL, EINVAL, "%s", msg);
}

int rpc_query_check(const struct nv *filters, const struct nv *options, struct nv_err *err)
{
    struct cond root;
    int rv = compile_filters(filters, &root, err);
    cond_free(&root);
    struct opts o;
    if (parse_options(options, &o, err) < 0) {
        rv = -EINVAL;
    }
    return rv;
}

int rpc_query(const struct nv *items, const struct nv *filters, const struct nv *options,
              struct nv **out, struct nv_err *err)
{
    struct cond root;
    struct opts o;
    int rv = compile_filters(filters, &root, err);
    if (parse_options(options, &o, err) < 0) {
        rv = -EINVAL;
    }
    if (rv < 0) {
        cond_free(&root);
        return rv;
    }
    if (o.get && o.limit > 1) {
        cond_free(&root);
        call_error(err, "get=True is incompatible with limit > 1");
        return -EINVAL;
    }
    if (o.get && o.offset > 0) {
        cond_free(&root);
        call_error(err, "get=True is incompatible with offset");
        return -EINVAL;
    }
    size_t n = nv_len(items);
    struct nv **sel = malloc((n ? n : 1) * sizeof *sel);
    size_t ns = 0;
    struct qerr e = {0};
    bool stop_at_first = o.get && nv_len(o.order_by) == 0;
    for (size_t i = 0; i < n && !e.set; i++) {
        const struct nv *it = nv_at(items, i);
        if (eval(&root, it, &e) && !e.set) {
            sel[ns++] = select_item(it, o.select, &e);
            if (stop_at_first) {
                break;
            }
        }
    }
    cond_free(&root);
    struct nv *result = NULL;
    if (!e.set && o.count) {
        result = nv_int((int64_t)ns);
    } else if (!e.set) {
        order(sel, ns, o.order_by, &e);
        size_t from = (size_t)o.offset < ns ? (size_t)o.offset : ns;
        size_t to = ns;
        if (o.limit > 0 && from + (size_t)o.limit < to) {
            to = from + (size_t)o.limit;
        }
        if (!e.set && o.get) {
            if (from < to) {
                result = sel[from];
                sel[from] = NULL;
            } else {
                call_error(err, "MatchNotFound()");
            }
        } else if (!e.set) {
            result = nv_arr();
            for (size_t i = from; i < to; i++) {
                nv_push(result, sel[i]);
                sel[i] = NULL;
            }
        }
    }
    for (size_t i = 0; i < ns; i++) {
        nv_free(sel[i]);
    }
    free(sel);
    if (e.set) {
        nv_free(result);
        call_error(err, e.msg);
        return -EINVAL;
    }
    if (result == NULL) {
        return -EINVAL;
    }
    *out = result;
    return 0;
}
