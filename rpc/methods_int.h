/* Internals of the method table shared by methods.c (local handlers),
 * forward.c (followers forwarding calls to the leader) and hold.c (calls
 * waiting for a leader). */
#ifndef RPC_METHODS_INT_H
#define RPC_METHODS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

struct nv;

/* One call as the handlers see it: where to reply, and the method and
 * session key, which come from the connection for a direct call and from
 * the forwarding node for a call forwarded by a follower. */
struct req {
    struct rpc_call *call;
    const char *method;
    const char *client_id;
    int64_t seq;
    bool forwarded; /* arrived through cluster.forward: never forwarded again
                     * and never held (the forwarding node holds it) */
    /* The caller's role: the connection's for a direct call; for a
     * forwarded one the lesser of the original caller's (sent along) and
     * the forwarding connection's. Below admin, secrets are masked. */
    enum rpc_role role;
    /* hold.c's bookkeeping, zero when the call arrives: the loop time (ms)
     * after which the call is answered instead of held again, and how
     * many times it has waited. */
    uint64_t hold_until;
    unsigned holds;
};

struct rpc_methods;
typedef void (*method_fn)(struct rpc_methods *m, const struct req *r, const struct nv *params);

/* role: the least role that may call the method (RPC_ROLE_READONLY for
 * what changes nothing and reveals no secret unmasked). */
struct method_def {
    const char *name;
    method_fn fn;
    enum rpc_role role;
};

struct bound {
    struct rpc_methods *m;
    const char *name; /* borrowed from the method tables or owned (names) */
    method_fn fn;
    enum rpc_role role;
};

/* The connection to the leader that forwarded calls travel on. */
struct fwd {
    char addr[160];
    struct rpc_client *c;
};

/* Calls parked while this node knows no ready leader (hold.c). */
struct hold_entry;
struct uv_timer_s;
struct hold {
    struct uv_timer_s *timer; /* owned; created at the first park, polls
                               * while anything is parked, closed (and
                               * freed on the loop) by hold_close */
    struct hold_entry *head, *tail;
    size_t n;
};

/* Every method binding lives here: fixed ones + 5 verbs x 6 tables. */
#define MAX_BINDINGS 96

struct rpc_methods {
    const struct rpc_node *node;
    struct bound bindings[MAX_BINDINGS];
    char names[MAX_BINDINGS][64];
    size_t n_bindings;
    struct fwd fwd;
    struct hold hold;
    bool closing; /* rpc_methods_free has begun: nothing is held any more */
};

/* forward.c */
/* True if this call must go to the leader: this node is not the leader,
 * the call did not come forwarded, forwarding is configured and a leader
 * address is known. */
bool fwd_wanted(struct rpc_methods *m, const struct req *r);
/* Forward the call to the leader and relay its answer. */
void fwd_call(struct rpc_methods *m, const struct req *r, const struct nv *params);
/* The leader's side of "cluster.forward" [{"method", "params", "client_id", "seq"}]. */
void m_forwarded(struct rpc_methods *m, const struct req *r, const struct nv *params);
void fwd_close(struct rpc_methods *m);

/* methods_cluster.c */
void m_cluster_status(struct rpc_methods *m, const struct req *r, const struct nv *params);
void m_failover_status(struct rpc_methods *m, const struct req *r, const struct nv *params);
void m_failover_config(struct rpc_methods *m, const struct req *r, const struct nv *params);
void m_membership(struct rpc_methods *m, const struct req *r, const struct nv *params);

/* hold.c
 *
 * A call that needs the leader (write, linearizable read, membership,
 * forwarding) waits on the node that received it while that node knows no
 * ready leader, like Consul's rpc_hold_timeout: it is parked and run again
 * (methods_run, with the same req: same session key) once a leader is
 * known, polled every HOLD_POLL_MS. It is answered at the latest when the
 * hold timeout (struct rpc_node.hold_timeout_ms) has passed since it first
 * waited, when its client is gone, or by hold_close. */
#define HOLD_DEFAULT_MS 5000u
#define HOLD_POLL_MS 15u
/* Calls parked at once on this node; more are answered TOO_MANY (-32000).
 * Each connection is also bounded by the server's max_inflight. */
#define HOLD_MAX_CALLS 4096u
/* The reason of the NO_QUORUM answer "this node knows no leader": a
 * follower that forwarded a call recognises it in the leader's answer (the
 * call did not run there) and holds the call instead of relaying it. */
#define NO_LEADER_REASON "No leader: the cluster has no quorum"

/* True if this node is not the ready leader and knows no leader either. */
bool hold_no_leader(struct rpc_methods *m);
/* Park r's call (params borrowed from the call, like r's strings) until a
 * leader is known. When it times out it is answered err (copied) if set,
 * else methods_reply_errno(status). failed_addr (copied; NULL = none): the
 * leader address that could not take the call; it is not tried again
 * before a short backoff unless the leader changes.
 * Returns true if the call was taken (parked, or answered TOO_MANY), false
 * if it may not wait (forwarded call, hold timeout over, client gone,
 * closing): the caller answers it as it would have without holding. */
bool hold_park(struct rpc_methods *m, const struct req *r, const struct nv *params, int status,
               const struct nv_err *err, const char *failed_addr);
/* Answer every parked call with its error and close the timer. */
void hold_close(struct rpc_methods *m);

/* methods.c */
method_fn methods_lookup(struct rpc_methods *m, const char *name);
/* The binding of name, NULL if none. */
const struct bound *methods_find(struct rpc_methods *m, const char *name);
/* Replace the secret fields (sm_field_secret) anywhere in v by
 * SM_SECRET_MASK when role is below admin. */
void methods_mask(struct nv *v, enum rpc_role role);
/* rpc_reply(call, v) with v masked for r's role. */
void methods_reply(const struct req *r, struct nv *v);
void methods_reply_errno(struct rpc_methods *m, struct rpc_call *call, int status);
/* Run a call's handler as dispatch does (a membership call without a
 * leader is held first); used again for a held call. */
void methods_run(struct rpc_methods *m, method_fn fn, const struct req *r, const struct nv *params);
/* Whether r may run again after an unknown outcome (connection to the
 * leader lost mid-call, leadership lost during its proposal): reads
 * always; writes only with a session key (client id and seq >= 0), which
 * the statemachine deduplicates; membership calls and anything else
 * never. */
bool methods_retry_safe(struct rpc_methods *m, const struct req *r);

#endif
