/* node_cluster: what makes several nvmetd one controller —
 *   - the member registry: every node registers {id, kind, raft, rpc} through
 *     Raft (the leader proposes its own entry, followers send theirs to the
 *     leader), so any node knows the leader's RPC address for forwarding;
 *   - the active controller (DESIGN.md "Failover"): a ready data leader
 *     commits "active := me"; it renders as ACTIVE only after the takeover
 *     delay (when it took over from another node) and the fence command;
 *     leadership loss releases at once;
 *   - a witness that wins an election hands leadership to a data node;
 *   - membership changes (add as spare, promote to voter, remove) and the
 *     planned switchover (failover.become_passive). */
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

static bool member_is_witness(const struct node *n, uint64_t id)
{
    if (id == n->cfg.id) {
        return n->cfg.witness;
    }
    const char *k = nv_get_str(sm_cluster_node(n->sm, id), "kind");
    return k != NULL && strcmp(k, "witness") == 0;
}

static unsigned data_voters(const struct node *n, const struct cons_status *st)
{
    unsigned c = 0;
    for (size_t i = 0; i < st->n_members; i++) {
        if (st->members[i].role == CONS_ROLE_VOTER && !member_is_witness(n, st->members[i].id)) {
            c++;
        }
    }
    return c;
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

static void own_done(void *arg, int status, void *result)
{
    struct own_prop *p = arg;
    p->done(p->n, status, result, p->arg);
    sm_result_free(result);
    free(p);
}

int node_propose_own(struct node *n, const char *method, struct nv *params,
                     void (*done)(struct node *n, int status, struct sm_result *r, void *arg),
                     void *arg)
{
    struct nv *cmd = NULL;
    struct nv_err e;
    nv_err_init(&e);
    int rv = sm_prepare(n->sm, method, params, &n->env, &cmd, &e);
    nv_free(params);
    if (rv < 0) {
        char *r = nv_err_reason(&e);
        node_log(n, NODE_LOG_ERROR, "%s: %s", method, r ? r : "refused");
        free(r);
        nv_err_clear(&e);
        return rv;
    }
    char *buf = NULL;
    size_t len = 0;
    rv = sm_command_encode(cmd, NULL, -1, &buf, &len);
    nv_free(cmd);
    if (rv < 0) {
        return rv;
    }
    struct own_prop *p = calloc(1, sizeof *p);
    p->n = n;
    p->done = done;
    p->arg = arg;
    rv = cons_propose(n->cons, buf, len, own_done, p);
    free(buf);
    if (rv < 0) {
        free(p);
    }
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
    if (rpc_client_open(n->loop, leader, &n->reg_client) < 0) {
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

/* ---- active controller ---- */

static void activate_done(struct node *n, int status, struct sm_result *r, void *arg)
{
    (void)arg;
    n->activate_busy = false;
    if (status == 0 && r != NULL && r->err == NULL) {
        node_log(n, NODE_LOG_INFO, "active controller: this node (term %" PRIu64 ")",
                 n->activate_term);
    }
    node_cluster_tick(n);
}

static void fence_exit(uv_process_t *p, int64_t status, int sig)
{
    struct node *n = p->data;
    n->fence_running = false;
    if (status == 0 && sig == 0) {
        fo_fenced(&n->fo);
        node_log(n, NODE_LOG_INFO, "fence command succeeded");
    } else {
        node_log(n, NODE_LOG_ERROR, "fence command failed (status %" PRId64 ", signal %d)", status,
                 sig);
        n->fence_next_ms = now_ms(n) + 1000;
    }
    uv_close((uv_handle_t *)p, NULL);
    node_cluster_tick(n);
}

static void run_fence(struct node *n, const char *cmd)
{
    if (n->fence_running || now_ms(n) < n->fence_next_ms) {
        return;
    }
    char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    uv_process_options_t o = {.file = "/bin/sh", .args = args, .exit_cb = fence_exit};
    n->fence_proc.data = n;
    int rv = uv_spawn(n->loop, &n->fence_proc, &o);
    if (rv < 0) {
        node_log(n, NODE_LOG_ERROR, "fence command: %s", uv_strerror(rv));
        n->fence_next_ms = now_ms(n) + 1000;
        return;
    }
    n->fence_running = true;
}

static void transfer_done(void *arg, int status, void *result)
{
    (void)result;
    struct node *n = arg;
    n->transfer_busy = false;
    if (status < 0) {
        node_log(n, NODE_LOG_DEBUG, "leadership transfer: %s", strerror(-status));
    }
}

/* A data voter to hand leadership to (not this node, not a witness); each
 * call takes the next one after the last tried, so a dead candidate does
 * not block the hand-off. */
static uint64_t pick_data_voter(struct node *n, const struct cons_status *st)
{
    uint64_t first = 0, next = 0;
    for (size_t i = 0; i < st->n_members; i++) {
        const struct cons_member *m = &st->members[i];
        if (m->id == n->cfg.id || m->role != CONS_ROLE_VOTER || member_is_witness(n, m->id)) {
            continue;
        }
        if (first == 0 || m->id < first) {
            first = m->id;
        }
        if (m->id > n->transfer_last && (next == 0 || m->id < next)) {
            next = m->id;
        }
    }
    n->transfer_last = next != 0 ? next : first;
    return n->transfer_last;
}

static enum fo_role decide_role(struct node *n, const struct cons_status *st)
{
    const struct nv *fo = nv_get(sm_cluster(n->sm), "failover");
    const char *fence = nv_get_str(fo, "fence_command");
    struct fo_input in = {.self = n->cfg.id,
                          .witness = n->cfg.witness,
                          .data_voters = data_voters(n, st),
                          .ready_leader = st->state == CONS_LEADER && st->ready,
                          .term = st->term,
                          .active = sm_active_node(n->sm, NULL),
                          .passive_requested = n->passive_requested,
                          .activate_in_flight = n->activate_busy,
                          .fence_configured = fence != NULL,
                          .takeover_delay_ms = (uint64_t)nv_get_int(fo, "takeover_delay_ms", 1500),
                          .now_ms = now_ms(n)};
    struct fo_decision d = fo_decide(&n->fo, &in);
    if (d.actions & FO_ACT_ACTIVATE) {
        n->activate_term = st->term;
        struct nv *p = nv_arr();
        struct nv *a = nv_map();
        nv_set_int(a, "node", (int64_t)n->cfg.id);
        nv_set_int(a, "term", (int64_t)st->term);
        nv_push(p, a);
        if (node_propose_own(n, "failover.activate", p, activate_done, NULL) == 0) {
            n->activate_busy = true;
        }
    }
    if (d.actions & FO_ACT_FENCE) {
        run_fence(n, fence);
    }
    if ((d.actions & FO_ACT_HANDOFF) && !n->transfer_busy) {
        uint64_t to = pick_data_voter(n, st);
        if (to != 0 && cons_transfer(n->cons, to, transfer_done, n) == 0) {
            n->transfer_busy = true;
            node_log(n, NODE_LOG_INFO, "witness leader: handing leadership to node %" PRIu64, to);
        }
    }
    return d.role;
}

void node_cluster_tick(struct node *n)
{
    if (n->cons == NULL || n->stopping) {
        return;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    n->env.ha = data_voters(n, &st) >= 2;
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
    bool leader = st.state == CONS_LEADER && st.ready;
    if (n->passive_requested && (!leader || now_ms(n) > n->passive_since_ms + 10000)) {
        n->passive_requested = false;
    }
    enum fo_role role = decide_role(n, &st);
    if (role != n->role || !n->role_known) {
        static const char *const names[] = {"SINGLE", "ACTIVE", "STANDBY", "WITNESS"};
        node_log(n, NODE_LOG_INFO, "role: %s", names[role]);
        n->role = role;
        n->role_known = true;
        node_render_soon(n);
    }
    /* the ANA slot: 1 for the lowest data node id, 2 for the next; only in
     * ANA mode (IP takeover needs no controller-id split, and the trees of
     * the data nodes stay identical) */
    if (n->ana_gen != sm_generation(n->sm) || n->ana_gen == 0) {
        /* a scan of the subsystems, once per change of the configuration */
        bool any = nv_get_bool(sm_global_row(n->sm), "ana", false);
        for (size_t i = 0; i < sm_rows(n->sm, SM_SUBSYS) && !any; i++) {
            any = nv_get_bool(sm_row(n->sm, SM_SUBSYS, i), "ana", false);
        }
        n->ana_any = any;
        n->ana_gen = sm_generation(n->sm);
    }
    bool ana = n->ana_any;
    unsigned slot = 0, rank = 0;
    for (size_t i = 0; i < st.n_members && n->env.ha && ana; i++) {
        if (!member_is_witness(n, st.members[i].id) && st.members[i].role == CONS_ROLE_VOTER) {
            rank++;
            if (st.members[i].id == n->cfg.id) {
                slot = rank <= 2 ? rank : 0;
            }
        }
    }
    if (slot != n->slot) {
        n->slot = slot;
        node_render_soon(n);
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
    if (n->fence_running) {
        uv_process_kill(&n->fence_proc, SIGKILL);
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
    enum fo_role role = n->role_known ? n->role : (n->cfg.witness ? FO_WITNESS : FO_SINGLE);
    struct tgt_view v = {.empty = role == FO_WITNESS,
                         .active = role == FO_ACTIVE || role == FO_SINGLE,
                         .ha = n->env.ha,
                         .node_id = n->cfg.id,
                         .node_slot = n->slot,
                         .n_slots = n->slot ? 2 : 0};
    return v;
}

struct nv *node_failover_status(void *ctx, struct nv_err *err)
{
    (void)err;
    struct node *n = ctx;
    struct cons_status st;
    memset(&st, 0, sizeof st);
    if (n->cons != NULL) {
        cons_get_status(n->cons, &st);
    }
    struct nv *o = nv_map();
    const char *status = n->role == FO_ACTIVE                     ? "MASTER"
                         : n->role == FO_SINGLE || !n->role_known ? "SINGLE"
                                                                   : "BACKUP";
    nv_set_str(o, "status", status);
    uint64_t term = 0, active = sm_active_node(n->sm, &term);
    nv_set(o, "active_node", active ? nv_int((int64_t)active) : nv_nil());
    nv_set_int(o, "active_term", (int64_t)term);
    nv_set(o, "leader", st.leader_id ? nv_int((int64_t)st.leader_id) : nv_nil());
    nv_set_int(o, "data_voters", data_voters(n, &st));
    struct nv *reasons = nv_arr();
    if (st.leader_id == 0) {
        nv_push(reasons, nv_str("NO_QUORUM"));
    }
    if (data_voters(n, &st) < 2) {
        nv_push(reasons, nv_str("NO_DATA_PEER"));
    }
    if (n->cfg.witness) {
        nv_push(reasons, nv_str("WITNESS"));
    }
    nv_set(o, "disabled_reasons", reasons);
    return o;
}
