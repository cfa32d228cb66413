/* node_events: core.subscribe's events, TrueNAS's collection_update.
 *
 * Every committed write is applied on every node, so any node (a
 * follower as well as the leader) tells its own subscribers what changed,
 * in apply order, right after each apply: the statemachine's change list
 * says which rows the apply touched (the list position before and after
 * it), the state says what they are now. The renderer clears that list
 * later, so it is read here and not at render time.
 *
 * Events ({"msg", "collection", "id", "fields"}):
 *   - a row added or changed: ADDED / CHANGED with the entry in query
 *     shape; removed: REMOVED with fields {"id": id};
 *   - the global row changed: nvmet.global CHANGED, id 1, the global entry;
 *   - anything else that is not one row (a config.restore, a snapshot
 *     installed from the leader, a change list that overflowed): one
 *     CHANGED per row collection with "id": null, "fields": {} and
 *     "reload": true: re-read the collection with its query;
 *   - this node's failover status changed (role, active node, leader,
 *     disabled reasons, VIPs held, fence state): failover.status CHANGED,
 *     "id" this node's id, fields as failover.status_details.
 * Readonly connections get secrets masked (sm_field_secret).
 *
 * Cost: nothing is built unless a connection subscribed to the
 * collection (rpc_server_wants is O(1) without subscribers). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "nv.h"
#include "nv_err.h"

#define FO_COLLECTION "failover.status"
#define GLOBAL_COLLECTION "nvmet.global"

static const char *const collections[] = {
    "nvmet.subsys",      "nvmet.namespace", "nvmet.port",  "nvmet.host", "nvmet.host_subsys",
    "nvmet.port_subsys", GLOBAL_COLLECTION, FO_COLLECTION, NULL};

int node_events_init(struct node *n)
{
    return rpc_server_set_collections(n->rpc, collections);
}

void node_events_free(struct node *n)
{
    nv_free(n->ev_fo_last);
    n->ev_fo_last = NULL;
}

/* ---- masking for readonly subscribers ---- */

static struct nv *mask_event(const struct nv *event)
{
    struct nv *m = nv_copy(event);
    rpc_mask_secrets(m);
    return m;
}

/* ---- building and publishing ---- */

static struct nv *event_new(const char *msg, const char *collection, struct nv *id,
                            struct nv *fields)
{
    struct nv *e = nv_map();
    nv_set_str(e, "msg", msg);
    nv_set_str(e, "collection", collection);
    nv_set(e, "id", id);
    nv_set(e, "fields", fields);
    return e;
}

static bool wanted(const struct node *n, const char *collection)
{
    return n->rpc != NULL && rpc_server_wants(n->rpc, collection);
}

/* Some nvmet collection (rows or global) has a subscriber. */
static bool nvmet_wanted(const struct node *n)
{
    for (size_t i = 0; collections[i] != NULL; i++) {
        if (strcmp(collections[i], FO_COLLECTION) != 0 && wanted(n, collections[i])) {
            return true;
        }
    }
    return false;
}

static void publish_row(struct node *n, const struct sm_change *c)
{
    const char *coll = sm_table_service(c->table);
    if (!wanted(n, coll)) {
        return;
    }
    struct nv *fields = NULL;
    const char *msg = "REMOVED";
    if (c->op != SM_REMOVED) {
        /* a row added and removed by the same apply is gone by now: its
         * REMOVED follows in the list, the ADDED says nothing */
        fields = sm_entry(n->sm, c->table, c->id, NULL);
        if (fields == NULL) {
            return;
        }
        msg = c->op == SM_ADDED ? "ADDED" : "CHANGED";
    } else {
        fields = nv_map();
        nv_set_int(fields, "id", c->id);
    }
    rpc_server_publish(n->rpc, coll, event_new(msg, coll, nv_int(c->id), fields), mask_event);
}

static void publish_global(struct node *n)
{
    if (wanted(n, GLOBAL_COLLECTION)) {
        rpc_server_publish(
            n->rpc, GLOBAL_COLLECTION,
            event_new("CHANGED", GLOBAL_COLLECTION, nv_int(1), sm_global_entry(n->sm)), mask_event);
    }
}

/* Tell every row collection's subscribers to re-read it. */
static void publish_reload(struct node *n)
{
    for (size_t i = 0; collections[i] != NULL; i++) {
        const char *coll = collections[i];
        /* the global row has its own CHANGED with the entry */
        if (strcmp(coll, FO_COLLECTION) == 0 || strcmp(coll, GLOBAL_COLLECTION) == 0 ||
            !wanted(n, coll)) {
            continue;
        }
        struct nv *e = event_new("CHANGED", coll, nv_nil(), nv_map());
        nv_set_bool(e, "reload", true);
        rpc_server_publish(n->rpc, coll, e, mask_event);
    }
}

/* ---- the apply path ---- */

void node_events_before_apply(struct node *n, struct node_ev_mark *m)
{
    *m = (struct node_ev_mark){0};
    if (!nvmet_wanted(n)) {
        return;
    }
    m->wanted = true;
    struct sm_changes ch;
    sm_changes(n->sm, &ch);
    /* A full list records nothing more, and a long one could fill up
     * during this apply: hand it to the renderer as "full" (what it
     * would have been anyway) and start an empty one, so that this
     * apply's own rows are listed. */
    if (ch.full || ch.n > SM_CHANGES_MAX / 2) {
        n->render_full = true;
        sm_changes_clear(n->sm);
        ch.n = 0;
    }
    m->pos = ch.n;
    m->global = nv_copy(sm_global_row(n->sm));
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        m->rows[t] = sm_rows(n->sm, (enum sm_table)t);
    }
}

void node_events_after_apply(struct node *n, struct node_ev_mark *m)
{
    if (!m->wanted) {
        return;
    }
    struct sm_changes ch;
    sm_changes(n->sm, &ch);
    if (!ch.full) {
        for (size_t i = m->pos; i < ch.n; i++) {
            publish_row(n, &ch.c[i]);
        }
    } else {
        /* not one row: the global row, the cluster facts (no nvmet
         * event), or rows wholesale (a restore): then re-read */
        bool rows = false;
        for (int t = 0; t < SM_TABLE_COUNT; t++) {
            rows = rows || m->rows[t] != sm_rows(n->sm, (enum sm_table)t);
        }
        if (!nv_equal(m->global, sm_global_row(n->sm))) {
            publish_global(n);
        }
        if (rows) {
            publish_reload(n);
        }
    }
    nv_free(m->global);
    m->global = NULL;
}

void node_events_restored(struct node *n)
{
    if (nvmet_wanted(n)) {
        publish_global(n);
        publish_reload(n);
    }
}

/* ---- failover.status ---- */

/* What makes a status change worth an event: not the clocks (lease
 * left, last change ago), which move all the time. */
static struct nv *fo_key(const struct nv *st)
{
    static const char *const keys[] = {
        "status",           "role", "active_node", "active_term", "leader", "data_voters",
        "disabled_reasons", "vips", "vip_error",   "fence",       NULL};
    struct nv *k = nv_map();
    for (size_t i = 0; keys[i] != NULL; i++) {
        const struct nv *v = nv_get(st, keys[i]);
        if (v != NULL) {
            nv_set(k, keys[i], nv_copy(v));
        }
    }
    return k;
}

void node_events_failover(struct node *n)
{
    if (n->fo == NULL || n->stopping || !wanted(n, FO_COLLECTION)) {
        /* the next subscriber starts from the status of its time */
        nv_free(n->ev_fo_last);
        n->ev_fo_last = NULL;
        return;
    }
    struct nv *st = fo_status(n->fo);
    struct nv *key = fo_key(st);
    bool same = n->ev_fo_last == NULL || nv_equal(n->ev_fo_last, key);
    bool first = n->ev_fo_last == NULL;
    nv_free(n->ev_fo_last);
    n->ev_fo_last = key;
    if (first || same) {
        nv_free(st);
        return;
    }
    rpc_server_publish(n->rpc, FO_COLLECTION,
                       event_new("CHANGED", FO_COLLECTION, nv_int((int64_t)n->cfg.id), st),
                       mask_event);
}
