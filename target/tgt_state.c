/* The statemachine side of target/: the public calls that take a
 * struct sm_state turn it into borrowed rows (sm.h row shapes) and run the
 * row-based internals. The only file of target/ that calls sm_*. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "sm.h"
#include "tgt_int.h"

int tgt__rows_from_sm(const struct sm_state *s, struct tgt_rows *r)
{
    memset(r, 0, sizeof *r);
    r->global = sm_global_row(s);
    r->vips = nv_get(nv_get(sm_cluster(s), "failover"), "vips");
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        size_t n = sm_rows(s, (enum sm_table)t);
        r->row[t] = calloc(n ? n : 1, sizeof *r->row[t]);
        if (r->row[t] == NULL) {
            tgt__rows_free(r);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            r->row[t][i] = sm_row(s, (enum sm_table)t, i);
        }
        r->n[t] = n;
    }
    return 0;
}

void tgt__rows_free(struct tgt_rows *r)
{
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        free(r->row[t]);
        r->row[t] = NULL;
        r->n[t] = 0;
    }
}

int tgt_reconcile(struct tgt *t, const struct sm_state *s, const struct tgt_view *v, bool sweep,
                  struct tgt_report *rep)
{
    struct tgt_rows r;
    if (tgt__rows_from_sm(s, &r) < 0) {
        if (rep != NULL) {
            tgt_report_clear(rep);
            rep->errors = 1;
        }
        return 1;
    }
    int rv = tgt__reconcile_rows(t, &r, v, sweep, rep);
    tgt__rows_free(&r);
    return rv;
}

static const struct nv *sm_by_id(const void *src, enum sm_table t, int64_t id)
{
    return sm_row_by_id(src, t, id);
}

static ssize_t sm_with(const void *src, enum sm_table t, const char *col, int64_t id,
                       int64_t **ids)
{
    size_t n = sm_rows(src, t), k = 0;
    *ids = malloc((n ? n : 1) * sizeof **ids);
    if (*ids == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct nv *row = sm_row(src, t, i);
        if (nv_get_int(row, col, -1) == id) {
            (*ids)[k++] = nv_get_int(row, "id", 0);
        }
    }
    return (ssize_t)k;
}

int tgt_reconcile_changes(struct tgt *t, const struct sm_state *s, const struct tgt_view *v,
                          const struct sm_changes *ch, struct tgt_report *rep)
{
    if (ch != NULL && !ch->full) {
        /* rows by lookup: an incremental pass never walks every row */
        struct tgt_rows r = {.global = sm_global_row(s),
                             .vips = nv_get(nv_get(sm_cluster(s), "failover"), "vips"),
                             .src = s,
                             .by_id = sm_by_id,
                             .with = sm_with};
        int rv = tgt__reconcile_delta(t, &r, v, ch->c, ch->n, rep);
        if (rv != -EAGAIN) {
            return rv;
        }
    }
    return tgt_reconcile(t, s, v, false, rep);
}

struct nv *tgt_desired_tree(struct tgt *t, const struct sm_state *s, const struct tgt_view *v)
{
    struct tgt_rows r;
    if (tgt__rows_from_sm(s, &r) < 0) {
        return NULL;
    }
    struct nv *m = tgt__desired_nv(t, &r, v);
    tgt__rows_free(&r);
    return m;
}

struct nv *tgt_sessions(const char *debugfs, const struct sm_state *s)
{
    struct tgt_rows r;
    if (tgt__rows_from_sm(s, &r) < 0) {
        return NULL;
    }
    struct nv *m = tgt__sessions_rows(debugfs, &r);
    tgt__rows_free(&r);
    return m;
}
