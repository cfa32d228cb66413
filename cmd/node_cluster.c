/* node_cluster: what makes several nvmetd one controller —
 *   - the member registry: every node registers {id, kind, raft, rpc} through
 *     Raft (the leader proposes its own entry, followers send theirs to the
 *     leader), so any node knows the leader's RPC address for forwarding;
 *   - failover/'s capabilities (propose, barrier, transfer, render, log)
 *     and the facts it is fed on every consensus change and tick: failover/
 *     decides who is active and acts (VIPs, ports, ANA, fencing). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "nv.h"
#include "nv_err.h"

#define TICK_MS 200
#define REG_RETRY_MS 1000

static uint64_t now_ms(const struct node *n)
{
    return uv_now(n->loop);
}

const char *node_leader_rpc(struct node *n)
{
    if (n->cons == NULL) {
        return NULL;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    if (st.leader_id == 0 || st.leader_id == n->cfg.id) {
        return NULL;
    }
    const char *rpc = nv_get_str(sm_cluster_node(n->sm, st.leader_id), "rpc");
    if (rpc == NULL || rpc[0] == '\0') {
        return NULL;
    }
    snprintf(n->leader_rpc_buf, sizeof n->leader_rpc_buf, "%s", rpc);
    return n->leader_rpc_buf;
}

/* ---- proposing a statemachine command from the node itself ---- */

struct own_prop {
    struct node *n;
    void (*done)(struct node *n, int status, struct sm_result *r, void *arg);
    void *arg;
};

static void own_done(void *arg, int status, struct sm_result *res, const struct rpc_render *render)
{
    (void)render;
    struct own_prop *p = arg;
    p->done(p->n, status, res, p->arg);
    free(p);
}

/* The node's own writes take the RPC calls' one path (rpc_write), without
 * a session key and without waiting for the render. */
int node_propose_own(struct node *n, const char *method, struct nv *params,
                     void (*done)(struct node *n, int status, struct sm_result *r, void *arg),
                     void *arg)
{
    struct own_prop *p = calloc(1, sizeof *p);
    if (p == NULL) {
        nv_free(params);
        return -ENOMEM;
    }
    p->n = n;
    p->done = done;
    p->arg = arg;
    struct nv_err e;
    nv_err_init(&e);
    int rv = rpc_write(&n->rnode, method, params, NULL, -1, 0, own_done, p, &e);
    nv_free(params);
    if (rv < 0) {
        free(p);
        if (nv_err_isset(&e)) {
            char *r = nv_err_reason(&e);
            node_log(n, NODE_LOG_ERROR, "%s: %s", method, r ? r : "refused");
            free(r);
        }
    }
    nv_err_clear(&e);
    return rv;
}

/* ---- registry ---- */

static struct nv *my_entry(const struct node *n)
{
    struct nv *e = nv_map();
    nv_set_int(e, "id", (int64_t)n->cfg.id);
    nv_set_str(e, "kind", n->cfg.witness ? "witness" : "data");
    nv_set_str(e, "raft", n->cfg.raft);
    if (n->cfg.rpc != NULL) {
        nv_set_str(e, "rpc", n->cfg.rpc);
    } else {
        nv_set_nil(e, "rpc");
    }
    if (n->cluster_list[0] != '\0') {
        nv_set_str(e, "members", n->cluster_list);
    } else {
        nv_set_nil(e, "members");
    }
    return e;
}

static void reg_done(struct node *n, int status, struct sm_result *r, void *arg)
{
    (void)arg;
    n->reg_busy = false;
    if (status == 0 && r != NULL && r->err == NULL) {
        node_log(n, NODE_LOG_INFO, "registered in the cluster as %s",
                 n->cfg.witness ? "witness" : "data node");
    }
}

static void reg_remote_done(void *arg, int status, const struct nv *result,
                            const struct nv_err *err)
{
    (void)result;
    struct node *n = arg;
    n->reg_busy = false;
    if (status < 0 || (err != NULL && nv_err_isset(err))) {
        char *r = err != NULL ? nv_err_reason(err) : NULL;
        node_log(n, NODE_LOG_DEBUG, "registration through the leader: %s",
                 r ? r : strerror(-status));
        free(r);
    }
    if (n->reg_client != NULL) {
        rpc_client_close(n->reg_client);
        n->reg_client = NULL;
    }
}

static void check_registration(struct node *n, const struct cons_status *st)
{
    if (n->reg_busy || now_ms(n) < n->reg_next_ms) {
        return;
    }
    struct nv *want = my_entry(n);
    const struct nv *have = sm_cluster_node(n->sm, n->cfg.id);
    if (have != NULL && nv_equal(have, want)) {
        nv_free(want);
        return;
    }
    if (st->state == CONS_LEADER && st->ready) {
        struct nv *p = nv_arr();
        nv_push(p, want);
        n->reg_next_ms = now_ms(n) + REG_RETRY_MS;
        if (node_propose_own(n, "cluster.node.register", p, reg_done, NULL) == 0) {
            n->reg_busy = true;
        }
        return;
    }
    const char *leader = node_leader_rpc(n);
    const char *key = n->rnode.cluster_key ? n->rnode.cluster_key(n) : NULL;
    if (leader == NULL || key == NULL || n->reg_client != NULL) {
        nv_free(want);
        return;
    }
    n->reg_next_ms = now_ms(n) + REG_RETRY_MS;
    if (rpc_client_open(n->loop, leader, &n->rnode.peer_tls, &n->reg_client) < 0) {
        n->reg_client = NULL;
        nv_free(want);
        return;
    }
    n->reg_busy = true;
    rpc_client_login(n->reg_client, key);
    struct nv *p = nv_arr();
    nv_push(p, want);
    rpc_client_call(n->reg_client, "cluster.node.register", p, -1, reg_remote_done, n);
}

/* ---- failover (failover/ decides and acts; these are its capabilities) ---- */

struct fo_call {
    void (*done)(void *arg, int status);
    void *arg;
};

static void fo_propose_done(struct node *n, int status, struct sm_result *r, void *arg)
{
    (void)n;
    struct fo_call *c = arg;
    if (status == 0 && (r == NULL || r->err != NULL)) {
        status = -EINVAL; /* refused by the statemachine */
    }
    c->done(c->arg, status);
    free(c);
}

static struct fo_call *fo_call_new(void (*done)(void *arg, int status), void *arg)
{
    struct fo_call *c = malloc(sizeof *c);
    if (c != NULL) {
        *c = (struct fo_call){.done = done, .arg = arg};
    }
    return c;
}

static int fo_propose(void *ctx, const char *method, struct nv *params,
                      void (*done)(void *arg, int status), void *arg)
{
    struct fo_call *c = fo_call_new(done, arg);
    if (c == NULL) {
        nv_free(params);
        return -ENOMEM;
    }
    int rv = node_propose_own(ctx, method, params, fo_propose_done, c);
    if (rv < 0) {
        free(c);
    }
    return rv;
}

static void fo_cons_done(void *arg, int status, void *result)
{
    (void)result; /* barriers and transfers have none */
    struct fo_call *c = arg;
    c->done(c->arg, status);
    free(c);
}

/* A barrier, or a leadership transfer to id, through consensus. */
static int fo_cons(struct node *n, bool transfer, uint64_t id, void (*done)(void *arg, int status),
                   void *arg)
{
    struct fo_call *c = fo_call_new(done, arg);
    if (c == NULL) {
        return -ENOMEM;
    }
    int rv = n->cons == NULL ? -ESHUTDOWN
             : transfer      ? cons_transfer(n->cons, id, fo_cons_done, c)
                             : cons_barrier(n->cons, fo_cons_done, c);
    if (rv < 0) {
        free(c);
    }
    return rv;
}

static int fo_barrier(void *ctx, void (*done)(void *arg, int status), void *arg)
{
    return fo_cons(ctx, false, 0, done, arg);
}

static int fo_transfer(void *ctx, uint64_t id, void (*done)(void *arg, int status), void *arg)
{
    return fo_cons(ctx, true, id, done, arg);
}

static void fo_render(void *ctx)
{
    node_render_pass(ctx);
}

/* The guardian took back the port links and ANA states (and nothing
 * else it could know of): those are put back by a full pass, not a sweep
 * of every object (a second at 10,000 namespaces: another missed
 * renewal, another release). */
static void fo_repair(void *ctx)
{
    struct node *n = ctx;
    if (n->tgt != NULL) {
        tgt_mark_released(n->tgt);
    } else {
        n->render_sweep = true;
    }
    node_render_pass(n);
}

static void fo_log(void *ctx, int level, const char *msg)
{
    node_log(ctx,
             level == 0   ? NODE_LOG_ERROR
             : level == 1 ? NODE_LOG_INFO
                          : NODE_LOG_DEBUG,
             "failover: %s", msg);
}

/* The role changed between two updates (a lease ended, a switchover):
 * subscribers hear it now rather than at the next tick. */
static void fo_changed(void *ctx)
{
    node_events_failover(ctx);
}

int node_failover_open(struct node *n, char *msg, size_t msglen)
{
    struct fo_config fc = {.id = n->cfg.id,
                           .witness = n->cfg.witness,
                           .configfs = n->cfg.witness ? NULL : n->cfg.configfs,
                           .data_dir = n->cfg.data_dir,
                           .election_timeout_ms = n->cfg.election_timeout_ms,
                           .heartbeat_ms = node_heartbeat_ms(n->cfg.election_timeout_ms),
                           .sm = n->sm};
    struct fo_ops ops = {.ctx = n,
                         .propose = fo_propose,
                         .barrier = fo_barrier,
                         .transfer = fo_transfer,
                         .render = fo_render,
                         .repair = fo_repair,
                         .changed = fo_changed,
                         .log = fo_log};
    return fo_open(n->loop, &fc, &ops, &n->fo, msg, msglen);
}

/* Tell failover what Raft knows now. */
static void failover_update(struct node *n, const struct cons_status *st)
{
    struct fo_facts facts = {.leader = st->state == CONS_LEADER,
                             .ready = st->ready,
                             .term = st->term,
                             .leader_id = st->leader_id};
    for (size_t i = 0; i < st->n_members && i < FO_MAX_MEMBERS; i++) {
        facts.members[facts.n_members++] =
            (struct fo_member){.id = st->members[i].id,
                               .voter = st->members[i].role == CONS_ROLE_VOTER,
                               .caught_up = st->state == CONS_LEADER &&
                                            st->members[i].match_index >= st->commit_index};
    }
    fo_update(n->fo, &facts);
    n->env.ha = fo_data_nodes(n->fo, NULL, 0) >= 2;
    node_events_failover(n);
}

void node_failover_update(struct node *n)
{
    if (n->cons == NULL || n->stopping || n->fo == NULL) {
        return;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    failover_update(n, &st);
}

void node_cluster_tick(struct node *n)
{
    if (n->cons == NULL || n->stopping) {
        return;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    check_registration(n, &st);
    /* every member must have been started with the same --cluster list */
    const char *lead_list = nv_get_str(sm_cluster_node(n->sm, st.leader_id), "members");
    bool mismatch =
        lead_list != NULL && n->cluster_list[0] != '\0' && strcmp(lead_list, n->cluster_list) != 0;
    if (mismatch && !n->list_mismatch) {
        node_log(n, NODE_LOG_ERROR,
                 "--cluster differs from the leader's: this node has %s, node %" PRIu64 " has %s",
                 n->cluster_list, st.leader_id, lead_list);
    }
    n->list_mismatch = mismatch;
    if (n->fo != NULL) {
        failover_update(n, &st);
    }
}

static void tick_cb(uv_timer_t *t)
{
    node_cluster_tick(t->data);
}

void node_cluster_start(struct node *n)
{
    uv_timer_start(&n->cluster_timer, tick_cb, TICK_MS, TICK_MS);
}

void node_cluster_stop(struct node *n, uv_close_cb closed)
{
    uv_close((uv_handle_t *)&n->cluster_timer, closed);
    if (n->reg_client != NULL) {
        rpc_client_close(n->reg_client);
        n->reg_client = NULL;
    }
    if (n->join_client != NULL) {
        rpc_client_close(n->join_client);
        n->join_client = NULL;
    }
}

bool node_is_member(void *ctx, uint64_t id)
{
    struct node *n = ctx;
    if (n->cons == NULL) {
        return true;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    for (size_t i = 0; i < st.n_members; i++) {
        if (st.members[i].id == id) {
            return true;
        }
    }
    return st.n_members == 0;
}

const char *node_refuse(void *ctx)
{
    struct node *n = ctx;
    if (n->cons == NULL) {
        return NULL;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    if (st.n_members == 0) {
        return n->cfg.join != NULL && !n->joined
                   ? "This node has not joined the cluster yet (--join in progress)"
                   : NULL;
    }
    for (size_t i = 0; i < st.n_members; i++) {
        if (st.members[i].id == n->cfg.id) {
            return NULL;
        }
    }
    snprintf(n->refuse_buf, sizeof n->refuse_buf,
             "Node %llu is not a member of the cluster (removed, or not joined yet)",
             (unsigned long long)n->cfg.id);
    return n->refuse_buf;
}

struct tgt_view node_view(const struct node *n)
{
    if (n->fo == NULL) {
        return (struct tgt_view){.empty = n->cfg.witness, .node_id = n->cfg.id};
    }
    return fo_view(n->fo);
}

struct nv *node_failover_status(void *ctx, struct nv_err *err)
{
    (void)err;
    struct node *n = ctx;
    return n->fo != NULL ? fo_status(n->fo) : NULL;
}
