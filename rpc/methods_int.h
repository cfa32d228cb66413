/* Internals of the method table shared by methods.c (local handlers) and
 * forward.c (followers forwarding calls to the leader). */
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
    bool forwarded; /* arrived through cluster.forward: never forwarded again */
};

struct rpc_methods;
typedef void (*method_fn)(struct rpc_methods *m, const struct req *r, const struct nv *params);

struct method_def {
    const char *name;
    method_fn fn;
};

struct bound {
    struct rpc_methods *m;
    const char *name; /* borrowed from the method tables or owned (names) */
    method_fn fn;
};

/* The connection to the leader that forwarded calls travel on. */
struct fwd {
    char addr[160];
    struct rpc_client *c;
};

/* Every method binding lives here: fixed ones + 5 verbs x 6 tables. */
#define MAX_BINDINGS 96

struct rpc_methods {
    const struct rpc_node *node;
    struct bound bindings[MAX_BINDINGS];
    char names[MAX_BINDINGS][64];
    size_t n_bindings;
    struct fwd fwd;
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

/* methods.c */
method_fn methods_lookup(struct rpc_methods *m, const char *name);
void methods_reply_errno(struct rpc_methods *m, struct rpc_call *call, int status);

#endif
