/* Forwarding: a follower sends writes and linearizable reads to the leader
 * over one authenticated node-to-node connection, as
 *   cluster.forward [{"method", "params", "client_id", "seq"}]
 * so the leader applies them with the ORIGINAL client's session key (a
 * client retrying through another node is still deduplicated). The
 * leader's answer (result or error) is relayed unchanged. A forwarded call
 * is never forwarded again, nor held: a node that lost leadership in
 * between answers NOT_LEADER and the forwarding node decides.
 *
 * The forwarding node holds the call (hold.c) and forwards it again once a
 * leader is known, within the hold timeout, when
 *   - the leader could not be reached (connect failed): it did not run;
 *   - the leader answered NOT_LEADER, or NO_QUORUM "no leader": it did not
 *     run there;
 *   - the connection broke mid-call, or the leader answered leadership lost
 *     / shutting down: it may have run, so only if methods_retry_safe (a
 *     read, or a write with a session key that the statemachine
 *     deduplicates); otherwise that error is the answer, as before.
 * After the hold timeout the call gets the error it would have got. */
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
    struct req r;            /* the call (owned until answered or held) */
    const struct nv *params; /* borrowed from r.call */
    struct rpc_client *c;    /* the connection it went on */
    char addr[160];          /* the leader it went to */
};

/* The leader did not get the call: hold it (any call may run again), else
 * NO_QUORUM as before. */
static void not_sent(struct rpc_methods *m, const struct req *r, const struct nv *params,
                     const char *addr)
{
    if (!hold_park(m, r, params, -NV_ENOQUORUM, NULL, addr)) {
        methods_reply_errno(m, r->call, -NV_ENOQUORUM);
    }
}

/* The leader's answer says the call did not run there because it is not
 * (or no longer) the ready leader. */
static bool not_run_there(const struct nv_err *err)
{
    return err->errnum == NV_ENOTLEADER ||
           (err->code == NV_E_NO_QUORUM && err->errnum == NV_ENOQUORUM && err->reason != NULL &&
            strcmp(err->reason, NO_LEADER_REASON) == 0);
}

/* The leader's answer says the outcome is unknown (leadership lost while
 * proposing, or the leader stopped with the proposal pending). */
static bool unknown_there(const struct nv_err *err)
{
    return err->code == NV_E_NOT_LEADER &&
           (err->errnum == NV_ELEADERSHIPLOST || err->errnum == ESHUTDOWN);
}

static void fwd_done(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    struct fwd_req *f = arg;
    struct rpc_methods *m = f->m;
    struct rpc_call *call = f->r.call;
    if (status < 0) {
        /* the leader went away: drop the connection (once: the other calls
         * on it come here too) */
        if (m->fwd.c == f->c) {
            m->fwd.c = NULL;
            rpc_client_close(f->c);
        }
        if (status == -ECONNREFUSED) {
            not_sent(m, &f->r, f->params, f->addr); /* it never left */
        } else if (!methods_retry_safe(m, &f->r) ||
                   !hold_park(m, &f->r, f->params, -NV_ELEADERSHIPLOST, NULL, f->addr)) {
            /* mid-call: the outcome of a write is unknown; the client
             * retries with its session key */
            methods_reply_errno(m, call, -NV_ELEADERSHIPLOST);
        }
    } else if (err != NULL && nv_err_isset(err)) {
        bool again = not_run_there(err) || (unknown_there(err) && methods_retry_safe(m, &f->r));
        if (!again || !hold_park(m, &f->r, f->params, 0, err, f->addr)) {
            rpc_reply_error(call, err);
        }
    } else {
        /* the leader masked for the role sent along; again here, so that a
         * leader that does not know roles cannot show a secret */
        methods_reply(&f->r, nv_copy(result));
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
        /* another leader now: the calls still on the old connection are
         * cancelled (fwd_done) */
        struct rpc_client *old = fw->c;
        fw->c = NULL;
        rpc_client_close(old);
    }
    const struct rpc_node *node = m->node;
    int rv = rpc_client_open(node->loop, addr, &node->peer_tls, &fw->c);
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
    const char *leader = m->node->leader_rpc(m->node->ctx);
    char addr[sizeof m->fwd.addr] = "";
    if (leader != NULL) {
        snprintf(addr, sizeof addr, "%s", leader);
    }
    if (leader == NULL || fwd_connect(m, addr) < 0) {
        not_sent(m, r, params, leader != NULL ? addr : NULL);
        return;
    }
    struct nv *arg = nv_map();
    nv_set_str(arg, "method", r->method);
    nv_set(arg, "params", nv_copy(params));
    nv_set(arg, "client_id", r->client_id ? nv_str(r->client_id) : nv_nil());
    nv_set_int(arg, "seq", r->seq);
    nv_set_str(arg, "role", rpc_role_name(r->role));
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
    f->r = *r;
    f->params = params;
    f->c = m->fwd.c;
    snprintf(f->addr, sizeof f->addr, "%s", addr);
    if (rpc_client_call(m->fwd.c, "cluster.forward", p, -1, fwd_done, f) < 0) {
        free(f);
        not_sent(m, r, params, addr);
    }
}

/* A forwarded call runs with the lesser of the role the forwarding node
 * sent for its caller and the forwarding connection's own: a readonly
 * client of a follower stays readonly on the leader. A node that sends no
 * role (it predates roles) forwards only for callers who could do
 * everything then: the connection's role. */
static enum rpc_role forwarded_role(const struct req *r, const struct nv *a, struct nv_err *e)
{
    const struct nv *given = nv_get(a, "role");
    enum rpc_role role = r->role;
    if (given == NULL) {
        return role;
    }
    enum rpc_role sent;
    if (!nv_is(given, NV_STR) || rpc_role_parse(given->u.s.p, &sent) < 0) {
        nv_err_set(&e[0], NV_E_BAD_REQUEST, EINVAL,
                   "cluster.forward: \"role\" must be \"admin\" or \"readonly\"");
        return RPC_ROLE_NONE;
    }
    return sent < role ? sent : role;
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
    const struct bound *b = nv_err_isset(&e) ? NULL : methods_find(m, method);
    if (!nv_err_isset(&e) && (b == NULL || strcmp(method, "cluster.forward") == 0)) {
        nv_err_set(&e, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist");
    }
    enum rpc_role role = nv_err_isset(&e) ? RPC_ROLE_NONE : forwarded_role(r, a, &e);
    if (!nv_err_isset(&e) && role < b->role) {
        nv_err_call(&e, EPERM,
                    "Permission denied: %s needs the %s role; the caller's key (forwarded by "
                    "another node) has the role %s",
                    method, rpc_role_name(b->role), rpc_role_name(role));
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
                     .forwarded = true,
                     .role = role};
    b->fn(m, &fr, inner);
}

void fwd_close(struct rpc_methods *m)
{
    struct rpc_client *c = m->fwd.c;
    m->fwd.c = NULL;
    rpc_client_close(c); /* the calls on it: fwd_done with -ECANCELED */
}
