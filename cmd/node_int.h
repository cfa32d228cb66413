/* node internals shared by node.c (wiring, render loop) and node_status.c
 * (config parsing, status reports, the leader environment). */
#ifndef NODE_INT_H
#define NODE_INT_H

#include <uv.h>

#include "cons.h"
#include "fo.h"
#include "node.h"
#include "node_peers.h"
#include "nv_hist.h"
#include "rpc.h"
#include "sm.h"
#include "tgt.h"

/* A write waiting until this node rendered the generation it produced;
 * its rows (a copy of rpc_applied's) say which render problems are its. */
struct render_waiter {
    uint64_t generation;
    void (*cb)(void *arg, const struct rpc_render *outcome);
    void *arg;
    struct sm_change *rows;
    size_t n_rows;
    bool all_rows;
    struct render_waiter *next;
};

struct node {
    uv_loop_t *loop;
    struct node_config cfg;

    struct sm_state *sm;
    struct cons_node *cons;
    struct tgt *tgt;
    struct rpc_server *rpc;
    struct rpc_methods *methods;
    struct sm_env env;
    struct rpc_node rnode;
    struct cons_peer *peers;
    size_t n_peers;

    /* rendering: applies mark the tree dirty; a zero timer renders once per
     * loop iteration; the sweep timer checks a slice of the rendered tree
     * every tick (a round per --sweep-interval) and repairs drift. */
    uv_timer_t render_timer;
    uv_timer_t sweep_timer;
    bool render_sweep;       /* next render reads the whole live tree */
    bool caught_up;          /* applied what the cluster had committed */
    uint64_t rendered_gen;   /* sm_generation of the last finished render */
    uint64_t render_passes;
    uint64_t drift_total;
    uint64_t last_sweep_ms;   /* uv_now of the last full sweep */
    uint64_t verify_rounds;   /* rounds of the sliced check completed */
    unsigned last_errors;
    struct nv *last_problems; /* owned: problems of the last render */
    uint64_t removals_gen;      /* sm generation the removals were last done for */
    bool removals_failed;       /* some failed: the next pass tries again */
    struct nv_hist apply_time;  /* per committed entry */
    struct nv_hist render_time; /* per render pass */
    struct metrics *metrics;    /* the Prometheus endpoint, NULL = none */
    struct render_waiter *waiters, **waiters_tail;
    /* node_events.c took the change list over an apply for its events:
     * the next render treats it as full */
    bool render_full;
    struct nv *ev_fo_last; /* failover status of the last event, owned */

    /* node_key.c: the node-to-node key and where it comes from */
    char cluster_key[256];
    enum { NODE_CK_NONE, NODE_CK_FILE, NODE_CK_PSK, NODE_CK_LEGACY } ck_source;
    struct node_key_stat {
        uint64_t ino, size;
        int64_t mtime_ns;
        unsigned mode;
        bool valid;
    } ck_stat; /* of the file it was last read from */
    char cluster_list[2048]; /* canonical --cluster list, "" without one */
    bool list_mismatch;      /* the leader was started with another list */
    bool init_proposed;

    /* cluster (node_cluster.c, node_member.c) */
    uv_timer_t cluster_timer;
    char leader_rpc_buf[128];
    char refuse_buf[160];
    bool reg_busy;
    uint64_t reg_next_ms;
    struct rpc_client *reg_client;
    struct fo *fo; /* failover/: who is active, and being it */
    uv_timer_t join_timer;
    struct rpc_client *join_client;
    bool joined;
    bool stopping;
    uv_signal_t sig_int, sig_term, sig_hup;
    void (*stop_done)(void *arg);
    void *stop_arg;
    int closing; /* handles still closing */
};

/* node.c */
void node_render_soon(struct node *n);
/* Render configfs for the current view now (failover's render hook). */
void node_render_pass(struct node *n);
unsigned node_heartbeat_ms(unsigned election_ms);

/* node_cluster.c */
void node_cluster_start(struct node *n);
void node_cluster_stop(struct node *n, uv_close_cb closed);
/* (Re)start the drift sweep timer with cfg.sweep_interval_ms (0 = off). */
void node_sweep_restart(struct node *n);

/* metrics (node_metrics.c): the text of one scrape (metrics_fill_fn). */
struct mx;
void node_metrics_fill(void *ctx, struct mx *o);
void node_cluster_tick(struct node *n);
const char *node_leader_rpc(struct node *n);
struct tgt_view node_view(const struct node *n);
const char *node_refuse(void *ctx);
bool node_is_member(void *ctx, uint64_t id);
struct nv *node_failover_status(void *ctx, struct nv_err *err);
struct nv *node_export_nvmetcli(void *ctx, bool live, struct nv_err *err);
int node_failover_open(struct node *n, char *msg, size_t msglen);
/* Feed failover the current Raft facts (and the state the applies changed). */
void node_failover_update(struct node *n);
int node_propose_own(struct node *n, const char *method, struct nv *params,
                     void (*done)(struct node *n, int status, struct sm_result *r, void *arg),
                     void *arg);

/* node_events.c: core.subscribe's collection_update events. The marks
 * go around each sm_apply; restored after a snapshot replaced the state;
 * failover after failover may have changed its status. */
struct node_ev_mark {
    bool wanted;
    size_t pos;         /* the change list's length before the apply */
    struct nv *global;  /* the global row before it (owned) */
    size_t rows[SM_TABLE_COUNT];
};
int node_events_init(struct node *n);
void node_events_free(struct node *n);
void node_events_before_apply(struct node *n, struct node_ev_mark *m);
void node_events_after_apply(struct node *n, struct node_ev_mark *m);
void node_events_restored(struct node *n);
void node_events_failover(struct node *n);

/* node_member.c */
int node_membership(void *ctx, const char *op, const struct nv *params,
                    void (*cb)(void *arg, struct nv *result, const struct nv_err *err), void *arg,
                    struct nv_err *err);
void node_join_start(struct node *n);

/* node_env.c: the leader environment (random source, device checks under
 * --device-root, RDMA hardware) into n->env; the --cluster list checked
 * against (and, write, first recorded in) the data dir: 0 or -EEXIST
 * with msg. */
void node_env_init(struct node *n);
int node_check_cluster_list(struct node *n, bool write, char *msg, size_t msglen);

/* node_status.c */
struct nv *node_cluster_status(void *ctx, struct nv_err *err);
struct nv *node_address_choices(void *ctx, const char *trtype, bool force_ana,
                                struct nv_err *err);

/* node_key.c: read the node-to-node key at start (0, or <0 with msg:
 * a --cluster-key-file that cannot be used stops the start); the key now
 * (NULL: none, no forwarding); where it comes from. */
int node_cluster_key_init(struct node *n, char *msg, size_t msglen);
const char *node_cluster_key(struct node *n);
/* What the RPC server accepts as the node-to-node login (rpc_server_config
 * .cluster_key). */
const char *node_cluster_key_accepted(void *ctx);
const char *node_cluster_key_source(const struct node *n);

#endif
