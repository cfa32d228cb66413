/* node internals shared by node.c (wiring, render loop) and node_status.c
 * (config parsing, status reports, the leader environment). */
#ifndef NODE_INT_H
#define NODE_INT_H

#include <uv.h>

#include "cons.h"
#include "node.h"
#include "rpc.h"
#include "sm.h"
#include "tgt.h"

/* A write waiting until this node rendered the generation it produced. */
struct render_waiter {
    uint64_t generation;
    void (*cb)(void *arg, int status, void *result);
    void *arg;
    struct render_waiter *next;
};

struct node {
    uv_loop_t *loop;
    struct node_config cfg;
    int log_level;

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
     * loop iteration; the sweep timer repairs drift periodically. */
    uv_timer_t render_timer;
    uv_timer_t sweep_timer;
    bool render_sweep;       /* next render reads the whole live tree */
    bool caught_up;          /* applied what the cluster had committed */
    uint64_t rendered_gen;   /* sm_generation of the last finished render */
    uint64_t render_passes;
    uint64_t drift_total;
    unsigned last_errors;
    struct nv *last_problems; /* owned: problems of the last render */
    struct render_waiter *waiters, **waiters_tail;

    char cluster_key[256];
    bool init_proposed;
    bool stopping;
    uv_signal_t sig_int, sig_term;
    void (*stop_done)(void *arg);
    void *stop_arg;
    int closing; /* handles still closing */
};

/* node_status.c */
void node_env_init(struct node *n);
struct nv *node_cluster_status(void *ctx, struct nv_err *err);
struct nv *node_address_choices(void *ctx, const char *trtype, bool force_ana,
                                struct nv_err *err);
int node_parse_cluster(const char *text, struct cons_peer **out, size_t *n, char *msg,
                       size_t msglen);

#endif
