/* node_member: membership changes on the leader (cluster.node.add /
 * remove / promote), the planned switchover (failover.become_passive,
 * carried out by failover/) and --join (a new node asks an existing member to add it). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "nv.h"
#include "nv_err.h"

typedef void (*mop_cb)(void *arg, struct nv *result, const struct nv_err *err);

struct mop {
    struct node *n;
    int kind; /* 0 add, 1 remove, 2 promote, 3 passive */
    uint64_t id;
    struct nv *entry; /* add: the registry entry */
    bool voter;
    mop_cb cb;
    void *arg;
};

static void mop_free(struct mop *m)
{
    nv_free(m->entry);
    free(m);
}

static void mop_fail(struct mop *m, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void mop_fail(struct mop *m, int status, const char *fmt, ...)
{
    struct nv_err e;
    nv_err_init(&e);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (status == -NV_ENOTLEADER || status == -NV_ELEADERSHIPLOST) {
        nv_err_set(&e, NV_E_NOT_LEADER, -status, "%s: %s", msg,
                   status == -NV_ENOTLEADER ? "not the leader" : "leadership lost");
    } else {
        nv_err_call(&e, status < 0 ? -status : EINVAL, "%s%s%s", msg, status < 0 ? ": " : "",
                    status < 0 ? strerror(-status) : "");
    }
    m->cb(m->arg, NULL, &e);
    nv_err_clear(&e);
    mop_free(m);
}

static void mop_ok(struct mop *m, struct nv *result)
{
    m->cb(m->arg, result, NULL);
    mop_free(m);
}

/* ---- add ---- */

static void add_assigned(void *arg, int status, void *result)
{
    (void)result;
    struct mop *m = arg;
    if (status < 0) {
        mop_fail(m, status, "node %" PRIu64 " was added as a spare but not made a voter", m->id);
        return;
    }
    node_log(m->n, NODE_LOG_INFO, "node %" PRIu64 " is a voter", m->id);
    mop_ok(m, nv_copy(m->entry));
}

static void add_registered(struct node *n, int status, struct sm_result *r, void *arg)
{
    struct mop *m = arg;
    if (status < 0 || r == NULL || r->err != NULL) {
        mop_fail(m, status < 0 ? status : -EINVAL, "node %" PRIu64 " added but not registered",
                 m->id);
        return;
    }
    if (!m->voter) {
        mop_ok(m, nv_copy(m->entry));
        return;
    }
    int rv = cons_assign(n->cons, m->id, CONS_ROLE_VOTER, add_assigned, m);
    if (rv < 0) {
        mop_fail(m, rv, "promote node %" PRIu64, m->id);
    }
}

static void add_added(void *arg, int status, void *result)
{
    (void)result;
    struct mop *m = arg;
    if (status < 0 && status != -EEXIST) {
        mop_fail(m, status, "add node %" PRIu64, m->id);
        return;
    }
    node_log(m->n, NODE_LOG_INFO, "node %" PRIu64 " (%s) added as a spare", m->id,
             nv_get_str(m->entry, "raft"));
    struct nv *p = nv_arr();
    nv_push(p, nv_copy(m->entry));
    int rv = node_propose_own(m->n, "cluster.node.register", p, add_registered, m);
    if (rv < 0) {
        mop_fail(m, rv, "register node %" PRIu64, m->id);
    }
}

static int start_add(struct mop *m, const struct nv *params, struct nv_err *err)
{
    const struct nv *a = nv_at(params, 0);
    if (!nv_is(a, NV_MAP)) {
        nv_err_add(err, "cluster_node_add", EINVAL, "Input should be a valid dictionary");
        return -EINVAL;
    }
    const struct nv *id = nv_get(a, "id"), *raft = nv_get(a, "raft"), *rpc = nv_get(a, "rpc");
    const struct nv *kind = nv_get(a, "kind"), *voter = nv_get(a, "voter");
    for (size_t i = 0; i < a->u.m.n; i++) {
        const char *k = a->u.m.kv[i].k;
        if (strcmp(k, "id") && strcmp(k, "raft") && strcmp(k, "rpc") && strcmp(k, "kind") &&
            strcmp(k, "voter")) {
            char attr[128];
            snprintf(attr, sizeof attr, "cluster_node_add.%s", k);
            nv_err_add(err, attr, EINVAL, "Extra inputs are not permitted");
        }
    }
    if (!nv_is(id, NV_INT) || id->u.i < 1) {
        nv_err_add(err, "cluster_node_add.id", EINVAL, "Input should be an integer >= 1");
    }
    if (!nv_is(raft, NV_STR) || !node_raft_address_ok(raft->u.s.p)) {
        nv_err_add(err, "cluster_node_add.raft", EINVAL,
                   "Input should be an address and port (a.b.c.d:port or [IPv6]:port)");
    }
    if (rpc != NULL && !nv_is(rpc, NV_NIL) && !nv_is(rpc, NV_STR)) {
        nv_err_add(err, "cluster_node_add.rpc", EINVAL, "Input should be a valid string");
    }
    if (kind != NULL && !(nv_is(kind, NV_STR) && (strcmp(kind->u.s.p, "data") == 0 ||
                                                  strcmp(kind->u.s.p, "witness") == 0))) {
        nv_err_add(err, "cluster_node_add.kind", EINVAL, "Input should be 'data' or 'witness'");
    }
    if (voter != NULL && !nv_is(voter, NV_BOOL)) {
        nv_err_add(err, "cluster_node_add.voter", EINVAL, "Input should be a valid boolean");
    }
    if (nv_err_isset(err)) {
        return -EINVAL;
    }
    m->id = (uint64_t)id->u.i;
    m->voter = voter == NULL || voter->u.b;
    m->entry = nv_map();
    nv_set_int(m->entry, "id", id->u.i);
    nv_set_str(m->entry, "kind", kind != NULL ? kind->u.s.p : "data");
    nv_set_str(m->entry, "raft", raft->u.s.p);
    nv_set(m->entry, "rpc", nv_is(rpc, NV_STR) ? nv_str(rpc->u.s.p) : nv_nil());
    return cons_add(m->n->cons, m->id, raft->u.s.p, add_added, m);
}

/* ---- remove / promote ---- */

static void removed_unregistered(struct node *n, int status, struct sm_result *r, void *arg)
{
    (void)n, (void)r;
    struct mop *m = arg;
    if (status < 0) {
        mop_fail(m, status, "node %" PRIu64 " removed, registry not updated", m->id);
        return;
    }
    mop_ok(m, nv_bool(true));
}

static void removed(void *arg, int status, void *result)
{
    (void)result;
    struct mop *m = arg;
    if (status < 0) {
        mop_fail(m, status, "remove node %" PRIu64, m->id);
        return;
    }
    node_log(m->n, NODE_LOG_INFO, "node %" PRIu64 " removed from the cluster", m->id);
    struct cons_status st;
    cons_get_status(m->n->cons, &st);
    if (st.state != CONS_LEADER) {
        mop_ok(m, nv_bool(true)); /* we removed ourselves: the next leader cleans up */
        return;
    }
    struct nv *p = nv_arr();
    nv_push(p, nv_int((int64_t)m->id));
    int rv = node_propose_own(m->n, "cluster.node.unregister", p, removed_unregistered, m);
    if (rv < 0) {
        mop_ok(m, nv_bool(true));
    }
}

static void promoted(void *arg, int status, void *result)
{
    (void)result;
    struct mop *m = arg;
    if (status < 0) {
        mop_fail(m, status, "promote node %" PRIu64, m->id);
        return;
    }
    mop_ok(m, nv_bool(true));
}

/* ---- planned switchover (failover/ does it) ---- */

static void passive_done(void *arg, int status, const char *what)
{
    struct mop *m = arg;
    if (status == 0) {
        mop_ok(m, nv_bool(true));
    } else {
        mop_fail(m, status, "%s", what);
    }
}

/* failover.become_passive [node]: the optional argument names the data
 * node to hand the active role to (an id, or {"node": id}). */
static int start_passive(struct mop *m, const struct nv *params, struct nv_err *err)
{
    const struct nv *a = nv_at(params, 0);
    if (nv_is(a, NV_MAP)) {
        a = nv_get(a, "node");
    }
    if (nv_len(params) > 1 || (a != NULL && !nv_is(a, NV_NIL) && !nv_is(a, NV_INT))) {
        nv_err_add(err, "failover_become_passive.node", EINVAL,
                   "Input should be a node id (an integer) or nothing");
        return -EINVAL;
    }
    uint64_t target = nv_is(a, NV_INT) && a->u.i > 0 ? (uint64_t)a->u.i : 0;
    if (m->n->fo == NULL) {
        nv_err_call(err, EINVAL, "This node is not the active controller");
        return -EINVAL;
    }
    return fo_become_passive(m->n->fo, target, passive_done, m, err);
}

int node_membership(void *ctx, const char *op, const struct nv *params, mop_cb cb, void *arg,
                    struct nv_err *err)
{
    struct node *n = ctx;
    if (n->cons == NULL || n->stopping) {
        return -ESHUTDOWN;
    }
    struct mop *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return -ENOMEM;
    }
    m->n = n;
    m->cb = cb;
    m->arg = arg;
    int rv;
    if (strcmp(op, "cluster.node.add") == 0) {
        rv = start_add(m, params, err);
    } else if (strcmp(op, "cluster.node.remove") == 0 || strcmp(op, "cluster.node.promote") == 0) {
        const struct nv *id = nv_at(params, 0);
        if (!nv_is(id, NV_INT) || id->u.i < 1) {
            nv_err_add(err, "id", EINVAL, "Input should be a valid integer");
            free(m);
            return -EINVAL;
        }
        m->id = (uint64_t)id->u.i;
        rv = op[13] == 'r' ? cons_remove(n->cons, m->id, removed, m)
                           : cons_assign(n->cons, m->id, CONS_ROLE_VOTER, promoted, m);
        if (rv == -ENOENT) {
            nv_err_add(err, "id", ENOENT, "Node %" PRIu64 " is not a member", m->id);
        }
    } else if (strcmp(op, "failover.become_passive") == 0) {
        rv = start_passive(m, params, err);
    } else {
        rv = -ENOTSUP;
    }
    if (rv < 0) {
        mop_free(m);
    }
    return rv;
}

/* ---- --join ---- */

static void join_tick(uv_timer_t *t);

static void join_done(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)result;
    struct node *n = arg;
    char *r = err != NULL && nv_err_isset(err) ? nv_err_reason(err) : NULL;
    if (status == 0 && r == NULL) {
        node_log(n, NODE_LOG_INFO, "joined the cluster through %s", n->cfg.join);
        n->joined = true;
        uv_timer_stop(&n->join_timer);
    } else {
        node_log(n, NODE_LOG_INFO, "join through %s: %s (retrying)", n->cfg.join,
                 r ? r : strerror(-status));
    }
    free(r);
    if (n->join_client != NULL) {
        rpc_client_close(n->join_client);
        n->join_client = NULL;
    }
}

static void join_tick(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->joined || n->join_client != NULL || n->stopping) {
        return;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    for (size_t i = 0; i < st.n_members; i++) {
        if (st.members[i].id == n->cfg.id && st.members[i].role == CONS_ROLE_VOTER) {
            n->joined = true; /* a restart of a node that already joined */
            uv_timer_stop(&n->join_timer);
            return;
        }
    }
    const char *key = n->rnode.cluster_key ? n->rnode.cluster_key(n) : NULL;
    if (rpc_client_open(n->loop, n->cfg.join, &n->rnode.peer_tls, &n->join_client) < 0) {
        n->join_client = NULL;
        return;
    }
    if (key != NULL) {
        rpc_client_login(n->join_client, key);
    }
    struct nv *e = nv_map();
    nv_set_int(e, "id", (int64_t)n->cfg.id);
    nv_set_str(e, "raft", n->cfg.raft);
    nv_set(e, "rpc", n->cfg.rpc ? nv_str(n->cfg.rpc) : nv_nil());
    nv_set_str(e, "kind", n->cfg.witness ? "witness" : "data");
    struct nv *p = nv_arr();
    nv_push(p, e);
    rpc_client_call(n->join_client, "cluster.node.add", p, -1, join_done, n);
}

void node_join_start(struct node *n)
{
    if (n->cfg.join != NULL) {
        uv_timer_start(&n->join_timer, join_tick, 100, 1000);
    }
}
