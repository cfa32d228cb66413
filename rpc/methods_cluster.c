/* The product's cluster methods (beyond the TrueNAS API):
 *   cluster.status [{"local": bool}]  this node, and (unless local) every
 *       registered member asked over RPC in parallel, merged per member;
 *   cluster.node.add / remove / promote, failover.become_passive  through the
 *       node's membership hook on the leader (followers forward);
 *   failover.status / failover.config / failover.disabled_reasons. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "methods_int.h"
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "sm.h"

#define PEER_TIMEOUT_MS 1500

static void reply_err_text(struct rpc_call *call, int errnum, const char *msg)
{
    struct nv_err e;
    nv_err_init(&e);
    nv_err_call(&e, errnum, "%s", msg);
    rpc_reply_error(call, &e);
    nv_err_clear(&e);
}

/* ---- cluster.status ---- */

struct agg;

struct peer_q {
    struct agg *a;
    int64_t id;
    struct rpc_client *c;
    bool done;
};

struct agg {
    struct rpc_call *call;
    enum rpc_role role; /* the caller's: what it may see */
    struct nv *local; /* this node's answer */
    struct nv *peers; /* map "id" -> status or {"error": ...} */
    struct peer_q *q;
    size_t n, pending;
    uv_timer_t timer;
    bool replied;
    int handles;
};

static void agg_free_cb(uv_handle_t *h)
{
    struct agg *a = h->data;
    free(a->q);
    free(a);
}

static void agg_finish(struct agg *a)
{
    if (a->replied) {
        return;
    }
    a->replied = true;
    uv_timer_stop(&a->timer);
    /* merge: every member of the Raft configuration gets what its node said */
    struct nv *members = nv_get(a->local, "members");
    for (size_t i = 0; i < nv_len(members); i++) {
        struct nv *m = nv_at(members, i);
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)nv_get_int(m, "id", 0));
        const struct nv *st = nv_get(a->peers, key);
        if (st != NULL) {
            nv_set(m, "status", nv_copy(st));
        } else if (nv_get_int(m, "id", 0) == nv_get_int(a->local, "id", -1)) {
            struct nv *self = nv_copy(nv_get(a->local, "node"));
            nv_set_bool(self, "reachable", true);
            nv_set(m, "status", self);
        }
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->q[i].c != NULL) {
            rpc_client_close(a->q[i].c);
            a->q[i].c = NULL;
        }
    }
    methods_mask(a->local, a->role);
    rpc_reply(a->call, a->local);
    a->local = NULL;
    nv_free(a->peers);
    a->peers = NULL;
    uv_close((uv_handle_t *)&a->timer, agg_free_cb);
}

static void peer_answer(struct peer_q *q, struct nv *v)
{
    if (q->done) {
        nv_free(v);
        return;
    }
    q->done = true;
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)q->id);
    nv_set(q->a->peers, key, v);
    if (--q->a->pending == 0) {
        agg_finish(q->a);
    }
}

static struct nv *err_entry(int status, const struct nv_err *err)
{
    struct nv *v = nv_map();
    char *r = err != NULL ? nv_err_reason(err) : NULL;
    nv_set_bool(v, "reachable", false);
    nv_set(v, "error", r != NULL ? nv_str(r) : nv_str(strerror(status < 0 ? -status : EIO)));
    free(r);
    return v;
}

static void peer_status_done(void *arg, int status, const struct nv *result,
                             const struct nv_err *err)
{
    struct peer_q *q = arg;
    if (q->a->replied) {
        return;
    }
    if (status < 0 || (err != NULL && nv_err_isset(err))) {
        peer_answer(q, err_entry(status, err));
        return;
    }
    struct nv *node = nv_copy(nv_get(result, "node"));
    if (node == NULL) {
        node = nv_map();
    }
    nv_set_bool(node, "reachable", true);
    peer_answer(q, node);
}

static void peer_login_done(void *arg, int status, const struct nv *result,
                            const struct nv_err *err)
{
    struct peer_q *q = arg;
    if (q->a->replied) {
        return;
    }
    if (status < 0 || (err != NULL && nv_err_isset(err)) || !nv_is(result, NV_BOOL) ||
        !result->u.b) {
        struct nv_err e;
        nv_err_init(&e);
        if (err == NULL || !nv_err_isset(err)) {
            nv_err_set(&e, NV_E_NOT_AUTHENTICATED, NV_ENOTAUTHENTICATED,
                       "the cluster API key was refused");
            err = &e;
        }
        peer_answer(q, err_entry(status, err));
        nv_err_clear(&e);
    }
}

static void agg_timeout(uv_timer_t *t)
{
    struct agg *a = t->data;
    for (size_t i = 0; i < a->n; i++) {
        if (!a->q[i].done) {
            struct nv *v = nv_map();
            nv_set_bool(v, "reachable", false);
            nv_set_str(v, "error", "no answer within 1.5 s");
            a->q[i].done = true;
            char key[32];
            snprintf(key, sizeof key, "%lld", (long long)a->q[i].id);
            nv_set(a->peers, key, v);
        }
    }
    a->pending = 0;
    agg_finish(a);
}

void m_cluster_status(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    const struct rpc_node *node = m->node;
    const struct nv *opt = nv_at(params, 0);
    if (nv_len(params) > 1 || (opt != NULL && !nv_is(opt, NV_MAP))) {
        reply_err_text(call, EINVAL, "cluster.status takes at most one options object");
        return;
    }
    struct nv_err e;
    nv_err_init(&e);
    struct nv *local = node->cluster_status ? node->cluster_status(node->ctx, &e) : NULL;
    if (local == NULL) {
        if (!nv_err_isset(&e)) {
            nv_err_call(&e, ENOTSUP, "cluster status is not available");
        }
        rpc_reply_error(call, &e);
        nv_err_clear(&e);
        return;
    }
    nv_err_clear(&e);
    const char *key = node->cluster_key ? node->cluster_key(node->ctx) : NULL;
    if (nv_get_bool(opt, "local", false)) {
        methods_reply(r, local);
        return;
    }
    if (key == NULL || node->loop == NULL) {
        /* no key to call the others with (a node without an RPC port):
         * this node's own row still has its status */
        struct nv *members = nv_get(local, "members");
        for (size_t i = 0; i < nv_len(members); i++) {
            struct nv *mb = nv_at(members, i);
            struct nv *st;
            if (nv_get_int(mb, "id", 0) == nv_get_int(local, "id", -1)) {
                st = nv_copy(nv_get(local, "node"));
                nv_set_bool(st, "reachable", true);
            } else {
                st = nv_map();
                nv_set_bool(st, "reachable", false);
                nv_set_str(st, "error", "not asked: this node has no cluster key to call others");
            }
            nv_set(mb, "status", st);
        }
        methods_reply(r, local);
        return;
    }
    /* ask every other registered member */
    const struct nv *reg = nv_get(sm_cluster(node->state(node->ctx)), "nodes");
    int64_t self = nv_get_int(local, "id", 0);
    struct agg *a = calloc(1, sizeof *a);
    a->call = call;
    a->role = r->role;
    a->local = local;
    a->peers = nv_map();
    a->q = calloc(nv_len(reg) + 1, sizeof *a->q);
    uv_timer_init(node->loop, &a->timer);
    a->timer.data = a;
    for (size_t i = 0; i < nv_len(reg); i++) {
        const struct nv *p = nv_at(reg, i);
        const char *addr = nv_get_str(p, "rpc");
        int64_t id = nv_get_int(p, "id", 0);
        if (id == self || addr == NULL || addr[0] == '\0') {
            continue;
        }
        struct peer_q *q = &a->q[a->n];
        q->a = a;
        q->id = id;
        if (rpc_client_open(node->loop, addr, &node->peer_tls, &q->c) < 0) {
            q->c = NULL;
            continue;
        }
        a->n++;
        a->pending++;
        struct nv *lp = nv_arr();
        nv_push(lp, nv_str(key));
        rpc_client_call(q->c, "auth.login_with_api_key", lp, -1, peer_login_done, q);
        struct nv *sp = nv_arr();
        struct nv *o = nv_map();
        nv_set_bool(o, "local", true);
        nv_push(sp, o);
        rpc_client_call(q->c, "cluster.status", sp, -1, peer_status_done, q);
    }
    if (a->pending == 0) {
        agg_finish(a);
        return;
    }
    uv_timer_start(&a->timer, agg_timeout, PEER_TIMEOUT_MS, 0);
}

/* ---- failover ---- */

void m_failover_status(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    (void)params;
    struct nv_err e;
    nv_err_init(&e);
    struct nv *st = m->node->failover_status ? m->node->failover_status(m->node->ctx, &e) : NULL;
    if (st == NULL) {
        rpc_reply(r->call, nv_str(strcmp(r->method, "failover.node") == 0 ? "MANUAL" : "SINGLE"));
    } else if (strcmp(r->method, "failover.disabled_reasons") == 0 ||
               strcmp(r->method, "failover.disabled.reasons") == 0) {
        rpc_reply(r->call, nv_copy(nv_get(st, "disabled_reasons")));
        nv_free(st);
    } else if (strcmp(r->method, "failover.node") == 0) {
        const char *node = nv_get_str(st, "node");
        rpc_reply(r->call, nv_str(node != NULL ? node : "MANUAL"));
        nv_free(st);
    } else if (strcmp(r->method, "failover.status_details") == 0) {
        methods_reply(r, st);
    } else {
        rpc_reply(r->call, nv_copy(nv_get(st, "status")));
        nv_free(st);
    }
    nv_err_clear(&e);
}

void m_failover_config(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    (void)params;
    methods_reply(r, sm_failover_config(m->node->state(m->node->ctx)));
}

/* ---- membership ---- */

struct mem_req {
    struct rpc_call *call;
};

static void membership_done(void *arg, struct nv *result, const struct nv_err *err)
{
    struct mem_req *q = arg;
    if (err != NULL && nv_err_isset(err)) {
        rpc_reply_error(q->call, err);
        nv_free(result);
    } else {
        rpc_reply(q->call, result != NULL ? result : nv_bool(true));
    }
    free(q);
}

void m_membership(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    const struct rpc_node *node = m->node;
    if (fwd_wanted(m, r)) {
        fwd_call(m, r, params);
        return;
    }
    if (node->membership == NULL) {
        reply_err_text(r->call, ENOTSUP, "membership changes are not available on this node");
        return;
    }
    if (node->is_leader != NULL && !node->is_leader(node->ctx)) {
        methods_reply_errno(m, r->call, -NV_ENOTLEADER);
        return;
    }
    struct mem_req *q = calloc(1, sizeof *q);
    q->call = r->call;
    struct nv_err e;
    nv_err_init(&e);
    int rv = node->membership(node->ctx, r->method, params, membership_done, q, &e);
    if (rv < 0) {
        if (nv_err_isset(&e)) {
            rpc_reply_error(r->call, &e);
        } else {
            methods_reply_errno(m, r->call, rv);
        }
        free(q);
    }
    nv_err_clear(&e);
}
