/* nvmetctl's readable output (ctl_out.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_out.h"
#include "nv.h"
#include "nv_json.h"

#define MAX_COLS 32
#define CELL_MAX 48 /* longer cells are cut with "..." */

/* One cell's text (owned). */
static char *cell(const struct nv *v)
{
    char buf[64];
    switch (v != NULL ? v->t : NV_NIL) {
        case NV_NIL:
            return strdup("-");
        case NV_BOOL:
            return strdup(v->u.b ? "true" : "false");
        case NV_INT:
            snprintf(buf, sizeof buf, "%" PRId64, v->u.i);
            return strdup(buf);
        case NV_STR:
            return strndup(v->u.s.p, v->u.s.len);
        default: {
            char *j = nv_to_json(v);
            return j != NULL ? j : strdup("?");
        }
    }
}

static void cut(char *s)
{
    if (strlen(s) > CELL_MAX) {
        strcpy(s + CELL_MAX - 3, "...");
    }
}

struct table {
    size_t cols, rows;
    const char *head[MAX_COLS];
    size_t width[MAX_COLS];
    char **cells; /* rows x cols */
};

static void table_print(FILE *f, const struct table *t)
{
    for (size_t c = 0; c < t->cols; c++) {
        if (c + 1 < t->cols) {
            fprintf(f, "%-*s  ", (int)t->width[c], t->head[c]);
        } else {
            fprintf(f, "%s\n", t->head[c]);
        }
    }
    for (size_t r = 0; r < t->rows; r++) {
        for (size_t c = 0; c < t->cols; c++) {
            const char *s = t->cells[r * t->cols + c];
            if (c + 1 < t->cols) {
                fprintf(f, "%-*s  ", (int)t->width[c], s);
            } else {
                fprintf(f, "%s\n", s);
            }
        }
    }
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->rows * t->cols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
}

void ctl_print_table(FILE *f, const struct nv *v)
{
    if (v == NULL || v->t != NV_ARR || v->u.a.n == 0 || v->u.a.v[0]->t != NV_MAP) {
        char *j = nv_to_json(v);
        fprintf(f, "%s\n", j != NULL ? j : "null");
        free(j);
        return;
    }
    struct table t = {0};
    for (size_t r = 0; r < v->u.a.n; r++) {
        const struct nv *m = v->u.a.v[r];
        for (size_t k = 0; m->t == NV_MAP && k < m->u.m.n && t.cols < MAX_COLS; k++) {
            const char *key = m->u.m.kv[k].k;
            size_t c = 0;
            while (c < t.cols && strcmp(t.head[c], key) != 0) {
                c++;
            }
            if (c == t.cols) {
                t.head[t.cols] = key;
                t.width[t.cols] = strlen(key);
                t.cols++;
            }
        }
    }
    t.rows = v->u.a.n;
    t.cells = calloc(t.rows * t.cols, sizeof *t.cells);
    if (t.cells == NULL) {
        return;
    }
    for (size_t r = 0; r < t.rows; r++) {
        const struct nv *m = v->u.a.v[r];
        for (size_t c = 0; c < t.cols; c++) {
            char *s = cell(m->t == NV_MAP ? nv_get(m, t.head[c]) : NULL);
            if (s == NULL) {
                s = strdup("?");
            }
            if (s != NULL) {
                cut(s);
            }
            t.cells[r * t.cols + c] = s;
            size_t w = s != NULL ? strlen(s) : 1;
            t.width[c] = w > t.width[c] ? w : t.width[c];
        }
    }
    table_print(f, &t);
    table_free(&t);
}

/* ---- cluster status ---- */

struct health {
    char why[512];
    size_t len;
};

static void degraded(struct health *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void degraded(struct health *h, const char *fmt, ...)
{
    if (h->len + 4 >= sizeof h->why) {
        return;
    }
    if (h->len > 0) {
        h->len += (size_t)snprintf(h->why + h->len, sizeof h->why - h->len, "; ");
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(h->why + h->len, sizeof h->why - h->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        h->len += (size_t)n < sizeof h->why - h->len ? (size_t)n : sizeof h->why - h->len - 1;
    }
}

/* The VIPs a node holds, "a,b" or "-". */
static void held_vips(const struct nv *fo, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    const struct nv *vips = nv_get(fo, "vips");
    for (size_t i = 0; i < nv_len(vips) && o + 1 < len; i++) {
        const struct nv *v = nv_at(vips, i);
        if (nv_get_bool(v, "held", false)) {
            const char *a = nv_get_str(v, "vip");
            o += (size_t)snprintf(out + o, len - o, "%s%s", o ? "," : "", a ? a : "?");
        }
    }
    if (out[0] == '\0') {
        snprintf(out, len, "-");
    }
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return strdup(buf);
}

int ctl_print_status(FILE *f, const struct nv *status)
{
    static const char *const heads[] = {"ID",   "KIND",    "ROLE",    "RAFT",
                                        "TERM", "APPLIED", "RENDER",  "FAILOVER",
                                        "VIPS", "STORAGE", "PROBLEMS"};
    enum { NC = sizeof heads / sizeof heads[0] };
    const struct nv *members = nv_get(status, "members");
    struct table t = {.cols = NC, .rows = nv_len(members)};
    for (size_t c = 0; c < NC; c++) {
        t.head[c] = heads[c];
        t.width[c] = strlen(heads[c]);
    }
    t.cells = calloc(t.rows * NC + 1, sizeof *t.cells);
    if (t.cells == NULL) {
        return 1;
    }
    struct health h = {0};
    int64_t leader = nv_get_int(status, "leader", 0);
    int64_t commit = 0, active = 0;
    unsigned masters = 0, answering = 0, data = 0;
    unsigned data_members = 0;
    for (size_t r = 0; r < t.rows; r++) {
        const struct nv *st = nv_get(nv_at(members, r), "status");
        int64_t c = nv_get_int(st, "commit_index", 0);
        commit = c > commit ? c : commit;
        const char *k = nv_get_str(st, "kind");
        data_members += k != NULL && strcmp(k, "data") == 0;
    }
    /* one data node alone (no failover configured by design): SINGLE is
     * its healthy state, and it has no peer to miss */
    bool single = data_members == 1 && t.rows == 1;
    for (size_t r = 0; r < t.rows; r++) {
        const struct nv *m = nv_at(members, r);
        const struct nv *st = nv_get(m, "status");
        int64_t id = nv_get_int(m, "id", 0);
        char **row = &t.cells[r * NC];
        bool up = st != NULL && nv_get_bool(st, "reachable", true) && nv_get(st, "error") == NULL &&
                  nv_get(st, "role") != NULL;
        row[0] = fmt("%" PRId64 "%s", id, id == leader ? "*" : "");
        if (!up) {
            const char *e = nv_get_str(st, "error");
            row[1] = strdup("?");
            row[2] = strdup("unreachable");
            row[3] = strdup(nv_get_str(m, "raft_address") ? nv_get_str(m, "raft_address") : "?");
            for (size_t c = 4; c < NC - 1; c++) {
                row[c] = strdup("-");
            }
            row[NC - 1] = strdup(e != NULL ? e : "no answer");
            degraded(&h, "node %" PRId64 " does not answer", id);
            continue;
        }
        answering++;
        const char *kind = nv_get_str(st, "kind");
        bool is_data = kind != NULL && strcmp(kind, "data") == 0;
        data += is_data;
        const struct nv *fo = nv_get(st, "failover");
        const char *fst = nv_get_str(fo, "status");
        const char *frole = nv_get_str(fo, "role");
        if (fst != NULL && (strcmp(fst, "MASTER") == 0 || (single && strcmp(fst, "SINGLE") == 0))) {
            masters++;
            active = id;
        }
        const char *render = nv_get_str(nv_get(st, "render"), "state");
        const char *storage = nv_get_str(nv_get(st, "storage"), "state");
        int64_t applied = nv_get_int(st, "applied_index", 0);
        char vips[128];
        held_vips(fo, vips, sizeof vips);
        char problems[256] = "";
        size_t po = 0;
        if (render != NULL && strcmp(render, "ok") != 0 && strcmp(render, "witness") != 0) {
            size_t ne = nv_len(nv_get(nv_get(st, "render"), "errors"));
            po += (size_t)snprintf(problems + po, sizeof problems - po, "%srender %s (%zu)",
                                   po ? ", " : "", render, ne);
            degraded(&h, "node %" PRId64 " render %s", id, render);
        }
        if (storage != NULL && strcmp(storage, "ok") != 0) {
            po += (size_t)snprintf(problems + po, sizeof problems - po, "%sstorage %s",
                                   po ? ", " : "", storage);
            degraded(&h, "node %" PRId64 " storage %s", id, storage);
        }
        const struct nv *reasons = nv_get(fo, "disabled_reasons");
        for (size_t i = 0; is_data && i < nv_len(reasons) && po < sizeof problems; i++) {
            const char *why = nv_is(nv_at(reasons, i), NV_STR) ? nv_at(reasons, i)->u.s.p : "?";
            if (single && strcmp(why, "NO_DATA_PEER") == 0) {
                continue;
            }
            po +=
                (size_t)snprintf(problems + po, sizeof problems - po, "%s%s", po ? ", " : "", why);
            degraded(&h, "node %" PRId64 " failover disabled: %s", id, why);
        }
        if (commit - applied > 1000) {
            po += (size_t)snprintf(problems + po, sizeof problems - po, "%s%" PRId64 " behind",
                                   po ? ", " : "", commit - applied);
            degraded(&h, "node %" PRId64 " is %" PRId64 " entries behind", id, commit - applied);
        }
        if (nv_get_bool(st, "cluster_list_mismatch", false)) {
            po += (size_t)snprintf(problems + po, sizeof problems - po, "%s--cluster differs",
                                   po ? ", " : "");
            degraded(&h, "node %" PRId64 " was started with another --cluster list", id);
        }
        row[1] = strdup(kind != NULL ? kind : "?");
        row[2] = strdup(nv_get_str(st, "role") ? nv_get_str(st, "role") : "?");
        row[3] = strdup(nv_get_str(st, "raft_address") ? nv_get_str(st, "raft_address") : "?");
        row[4] = fmt("%" PRId64, nv_get_int(st, "term", 0));
        row[5] = fmt("%" PRId64, applied);
        row[6] = strdup(render != NULL && strcmp(render, "witness") != 0 ? render : "-");
        row[7] = strdup(fst == NULL                                  ? "-"
                        : frole != NULL && !strcmp(frole, "WITNESS") ? "WITNESS"
                                                                     : fst);
        row[8] = strdup(vips);
        row[9] = strdup(storage != NULL ? storage : "?");
        row[10] = strdup(problems[0] != '\0' ? problems : "-");
    }
    for (size_t i = 0; i < t.rows * NC; i++) {
        if (t.cells[i] == NULL) {
            t.cells[i] = strdup("?");
        }
        if (t.cells[i] != NULL) {
            cut(t.cells[i]);
            size_t c = i % NC, w = strlen(t.cells[i]);
            t.width[c] = w > t.width[c] ? w : t.width[c];
        }
    }
    if (leader == 0) {
        degraded(&h, "no leader");
    }
    if (masters > 1) {
        degraded(&h, "%u nodes claim the active role", masters);
    } else if (masters == 0 && data > 0) {
        degraded(&h, "no active node");
    }
    if (h.len == 0) {
        fprintf(f,
                "cluster: healthy; leader node %" PRId64 ", active node %" PRId64
                ", %u of %zu members answer\n",
                leader, active, answering, t.rows);
    } else {
        fprintf(f, "cluster: DEGRADED: %s\n", h.why);
    }
    table_print(f, &t);
    table_free(&t);
    return h.len == 0 ? 0 : 1;
}
