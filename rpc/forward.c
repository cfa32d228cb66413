/* Forwarding: a follower sends writes and linearizable reads to the leader
 * over one authenticated node-to-node connection, as
 *   cluster.forward [{"method", "params", "client_id", "seq"}]
 * so the leader applies them with the ORIGINAL client's session key (a
 * client retrying through another node is still deduplicated). The
 * leader's answer (result or error) is relayed unchanged. A forwarded call
 * is never forwarded again: a node that lost leadership in between answers
 * NOT_LEADER and the client retries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods_int.h"
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"

bool fwd_wanted(struct rpc_methods *m, const struct req *r)
{
    const struct rpc_node *node = m->node;
    if (r->forwarded || node->loop == NULL || node->cluster_key == NULL ||
        node->leader_rpc == NULL || node->cluster_key(node->ctx) == NULL) {
        return false;
    }
    if (node->is_leader != NULL && node->is_leader(node->ctx)) {
        return false;
    }
    return node->leader_rpc(node->ctx) != NULL;
}

struct fwd_req {
    struct rpc_methods *m;
    struct rpc_call *call;
};

static void fwd_done(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    struct fwd_req *f = arg;
    if (status < 0) {
        /* the leader went away mid-call: drop the connection; the outcome
         * of a write is unknown, the client retries with its session key */
        if (f->m->fwd.c != NULL) {
            rpc_client_close(f->m->fwd.c);
            f->m->fwd.c = NULL;
        }
        methods_reply_errno(f->m, f->call, -NV_ELEADERSHIPLOST);
    } else if (err != NULL && nv_err_isset(err)) {
        rpc_reply_error(f->call, err);
    } else {
        rpc_reply(f->call, nv_copy(result));
    }
    free(f);
}

static int fwd_connect(struct rpc_methods *m, const char *addr)
{
    struct fwd *fw = &m->fwd;
    if (fw->c != NULL && strcmp(fw->addr, addr) == 0) {
        return 0;
    }
    if (fw->c != NULL) {
        rpc_client_close(fw->c);
        fw->c = NULL;
    }
    const struct rpc_node *node = m->node;
    int rv = rpc_client_open(node->loop, addr, &fw->c);
    if (rv < 0) {
        fw->c = NULL;
        return rv;
    }
    snprintf(fw->addr, sizeof fw->addr, "%s", addr);
    /* A refused login shows as NOT_AUTHENTICATED on the forwarded calls,
     * which are relayed to the client as they are. */
    rv = rpc_client_login(fw->c, node->cluster_key(node->ctx));
    if (rv < 0) {
        rpc_client_close(fw->c);
        fw->c = NULL;
    }
    return rv;
}

void fwd_call(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    const char *addr = m->node->leader_rpc(m->node->ctx);
    if (addr == NULL || fwd_connect(m, addr) < 0) {
        methods_reply_errno(m, r->call, -NV_ENOQUORUM);
        return;
    }
    struct nv *arg = nv_map();
    nv_set_str(arg, "method", r->method);
    nv_set(arg, "params", nv_copy(params));
    nv_set(arg, "client_id", r->client_id ? nv_str(r->client_id) : nv_nil());
    nv_set_int(arg, "seq", r->seq);
    if (m->node->id != 0) {
        nv_set_int(arg, "node", (int64_t)m->node->id); /* the leader checks membership */
    }
    struct nv *p = nv_arr();
    nv_push(p, arg);
    struct fwd_req *f = calloc(1, sizeof *f);
    if (f == NULL) {
        nv_free(p);
        methods_reply_errno(m, r->call, -ENOMEM);
        return;
    }
    f->m = m;
    f->call = r->call;
    if (rpc_client_call(m->fwd.c, "cluster.forward", p, -1, fwd_done, f) < 0) {
        free(f);
        methods_reply_errno(m, r->call, -NV_ENOQUORUM);
    }
}

void m_forwarded(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct nv_err e;
    nv_err_init(&e);
    const struct nv *a = nv_at(params, 0);
    const char *method = nv_get_str(a, "method");
    const struct nv *inner = nv_get(a, "params");
    const struct nv *seq = nv_get(a, "seq");
    if (!rpc_call_trusted(r->call)) {
        nv_err_set(&e, NV_E_NOT_AUTHENTICATED, NV_ENOTAUTHENTICATED, "Not authenticated");
    } else if (nv_len(params) != 1 || method == NULL || !nv_is(inner, NV_ARR) ||
               !nv_is(seq, NV_INT)) {
        nv_err_set(&e, NV_E_BAD_REQUEST, EINVAL,
                   "cluster.forward expects [{\"method\", \"params\", \"client_id\", \"seq\"}]");
    }
    const struct nv *from = nv_get(a, "node");
    if (!nv_err_isset(&e) && nv_is(from, NV_INT) && m->node->is_member != NULL &&
        !m->node->is_member(m->node->ctx, (uint64_t)from->u.i)) {
        /* a removed node may still believe it is a follower */
        nv_err_set(&e, NV_E_NO_QUORUM, NV_ENOQUORUM,
                   "Node %lld is not a member of the cluster (removed): its calls are refused",
                   (long long)from->u.i);
    }
    method_fn fn = nv_err_isset(&e) ? NULL : methods_lookup(m, method);
    if (!nv_err_isset(&e) && (fn == NULL || strcmp(method, "cluster.forward") == 0)) {
        nv_err_set(&e, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist");
    }
    if (nv_err_isset(&e)) {
        rpc_reply_error(r->call, &e);
        nv_err_clear(&e);
        return;
    }
    struct req fr = {.call = r->call,
                     .method = method,
                     .client_id = nv_get_str(a, "client_id"),
                     .seq = seq->u.i,
                     .forwarded = true};
    fn(m, &fr, inner);
}

void fwd_close(struct rpc_methods *m)
{
    if (m->fwd.c != NULL) {
        rpc_client_close(m->fwd.c);
        m->fwd.c = NULL;
    }
}
