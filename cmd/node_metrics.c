/* node: what nvmetd's Prometheus endpoint reports (metrics.h), read from
 * each module's own counters on the loop thread. Names follow
 * Prometheus' conventions: nvmet_ha_ prefix, seconds, _total counters. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "node_int.h"

static void gauge(struct mx *o, const char *name, const char *help, double v)
{
    mx_family(o, name, "gauge", help);
    mx_value(o, name, NULL, v);
}

static void counter(struct mx *o, const char *name, const char *help, double v)
{
    mx_family(o, name, "counter", help);
    mx_value(o, name, NULL, v);
}

static void raft_metrics(struct node *n, struct mx *o)
{
    struct cons_status st;
    memset(&st, 0, sizeof st);
    if (n->cons != NULL) {
        cons_get_status(n->cons, &st);
    }
    gauge(o, "nvmet_ha_raft_term", "Current Raft term of this node.", (double)st.term);
    gauge(o, "nvmet_ha_raft_commit_index", "Highest log index known committed.",
          (double)st.commit_index);
    gauge(o, "nvmet_ha_raft_applied_index", "Highest log index applied to the state machine.",
          (double)st.last_applied);
    gauge(o, "nvmet_ha_raft_last_index", "Highest index in this node's log.",
          (double)st.last_index);
    gauge(o, "nvmet_ha_raft_snapshot_index", "Index of the last snapshot taken or installed.",
          (double)st.snapshot_index);
    static const char *const states[] = {"unavailable", "follower", "candidate", "leader"};
    mx_family(o, "nvmet_ha_raft_state", "gauge", "1 for the Raft state this node is in.");
    for (int i = 0; i < 4; i++) {
        char l[64];
        snprintf(l, sizeof l, "state=\"%s\"", states[i]);
        mx_value(o, "nvmet_ha_raft_state", l, st.state == i ? 1 : 0);
    }
    gauge(o, "nvmet_ha_raft_leader_ready",
          "1 on the leader once its post-election barrier is applied (it serves writes).",
          st.ready ? 1 : 0);
    gauge(o, "nvmet_ha_raft_leader_id", "Id of the node this one knows as leader, 0 if none.",
          (double)st.leader_id);
    gauge(o, "nvmet_ha_raft_members", "Members of the Raft configuration.", (double)st.n_members);
    gauge(o, "nvmet_ha_raft_last_contact_seconds",
          "Time since the leader was last heard (0 on the leader).",
          (double)st.last_contact_ms / 1000.0);
    gauge(o, "nvmet_ha_raft_storage_error", "1 while this node's Raft log cannot be written.",
          st.storage_error != 0 ? 1 : 0);
}

static void render_metrics(struct node *n, struct mx *o)
{
    mx_family(o, "nvmet_ha_apply_seconds", "histogram",
              "Time to apply one committed entry to the state machine.");
    mx_hist(o, "nvmet_ha_apply_seconds", NULL, &n->apply_time);
    mx_family(o, "nvmet_ha_render_seconds", "histogram",
              "Time of one render pass (committed state to configfs).");
    mx_hist(o, "nvmet_ha_render_seconds", NULL, &n->render_time);
    counter(o, "nvmet_ha_render_passes_total", "Render passes.", (double)n->render_passes);
    gauge(o, "nvmet_ha_render_problems",
          "Objects the last render pass could not make match (0 = configfs matches).",
          (double)n->last_errors);
    counter(o, "nvmet_ha_render_drift_repairs_total",
            "Objects found changed behind nvmetd's back and put back.", (double)n->drift_total);
}

static void failover_metrics(struct node *n, struct mx *o)
{
    if (n->fo == NULL) {
        return;
    }
    struct fo_stats st;
    fo_get_stats(n->fo, &st);
    static const char *const roles[] = {"single", "active", "standby", "witness"};
    mx_family(o, "nvmet_ha_failover_role", "gauge", "1 for this node's failover role.");
    for (int i = 0; i < 4; i++) {
        char l[64];
        snprintf(l, sizeof l, "role=\"%s\"", roles[i]);
        mx_value(o, "nvmet_ha_failover_role", l, (int)st.role == i ? 1 : 0);
    }
    gauge(o, "nvmet_ha_failover_serving",
          "1 while this node holds the active role (VIPs, linked ports, optimized ANA).",
          st.serving ? 1 : 0);
    mx_family(o, "nvmet_ha_failover_transitions_total", "counter",
              "Times this node took (acquire) or gave up (release) the active role.");
    mx_value(o, "nvmet_ha_failover_transitions_total", "direction=\"acquire\"",
             (double)st.acquires);
    mx_value(o, "nvmet_ha_failover_transitions_total", "direction=\"release\"",
             (double)st.releases);
    mx_family(o, "nvmet_ha_failover_acquire_seconds", "histogram",
              "Time to take the active role: VIPs added, configfs rendered, announcements sent.");
    mx_hist(o, "nvmet_ha_failover_acquire_seconds", NULL, &st.acquire_time);
    mx_family(o, "nvmet_ha_failover_fence_runs_total", "counter",
              "Runs of the fence command before a takeover, by result.");
    mx_value(o, "nvmet_ha_failover_fence_runs_total", "result=\"ok\"", (double)st.fence_ok);
    mx_value(o, "nvmet_ha_failover_fence_runs_total", "result=\"failed\"", (double)st.fence_failed);
}

enum per_method { PM_CALLS, PM_ERRORS, PM_LATENCY };
struct pm_arg {
    struct mx *o;
    enum per_method what;
};

static void per_method(void *arg, const char *method, const struct rpc_method_stats *st)
{
    struct pm_arg *a = arg;
    char esc[160], l[200];
    mx_escape(esc, sizeof esc, method);
    snprintf(l, sizeof l, "method=\"%s\"", esc);
    switch (a->what) {
        case PM_CALLS:
            mx_value(a->o, "nvmet_ha_rpc_calls_total", l, (double)st->calls);
            break;
        case PM_ERRORS:
            mx_value(a->o, "nvmet_ha_rpc_errors_total", l, (double)st->errors);
            break;
        case PM_LATENCY:
            mx_hist(a->o, "nvmet_ha_rpc_call_seconds", l, &st->latency);
            break;
    }
}

static void rpc_metrics(struct node *n, struct mx *o)
{
    if (n->rpc == NULL) {
        return;
    }
    struct rpc_server_stats st;
    rpc_server_get_stats(n->rpc, &st);
    mx_family(o, "nvmet_ha_rpc_connections", "gauge", "Open API connections by class.");
    mx_value(o, "nvmet_ha_rpc_connections", "class=\"tcp\"",
             (double)(st.conns - st.unauth_conns - st.unix_conns));
    mx_value(o, "nvmet_ha_rpc_connections", "class=\"tcp_unauthenticated\"",
             (double)st.unauth_conns);
    mx_value(o, "nvmet_ha_rpc_connections", "class=\"unix\"", (double)st.unix_conns);
    gauge(o, "nvmet_ha_rpc_calls_in_flight", "Calls received and not answered yet.",
          (double)st.calls_inflight);
    counter(o, "nvmet_ha_rpc_connections_rejected_total",
            "Connections closed at once because their class was over its budget.",
            (double)st.rejected_conns);
    counter(o, "nvmet_ha_rpc_connections_evicted_total",
            "Unauthenticated connections closed to make room for a new one.",
            (double)st.evicted_conns);
    counter(o, "nvmet_ha_rpc_login_failures_total", "Failed API key logins.",
            (double)st.login_failures);
    counter(o, "nvmet_ha_rpc_bad_frames_total", "Malformed or oversized messages.",
            (double)st.bad_frames);
    counter(o, "nvmet_ha_rpc_notifications_total", "msgpack-rpc notifications received.",
            (double)st.notifications);
    struct pm_arg a = {o, PM_CALLS};
    mx_family(o, "nvmet_ha_rpc_calls_total", "counter", "Calls answered, by method.");
    rpc_server_each_method(n->rpc, per_method, &a);
    a.what = PM_ERRORS;
    mx_family(o, "nvmet_ha_rpc_errors_total", "counter",
              "Calls answered with an error, by method.");
    rpc_server_each_method(n->rpc, per_method, &a);
    a.what = PM_LATENCY;
    mx_family(o, "nvmet_ha_rpc_call_seconds", "histogram",
              "Time from receiving a call to answering it, by method.");
    rpc_server_each_method(n->rpc, per_method, &a);
}

void node_metrics_fill(void *ctx, struct mx *o)
{
    struct node *n = ctx;
    char l[96];
    snprintf(l, sizeof l, "version=\"%s\",node=\"%" PRIu64 "\"", NVMET_HA_VERSION,
             (uint64_t)n->cfg.id);
    mx_family(o, "nvmet_ha_build_info", "gauge", "Always 1; the labels say which nvmetd.");
    mx_value(o, "nvmet_ha_build_info", l, 1);
    raft_metrics(n, o);
    render_metrics(n, o);
    failover_metrics(n, o);
    rpc_metrics(n, o);
}
