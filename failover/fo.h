/* failover: which node is the active controller, and being it.
 *
 * Roles. A witness votes and never runs the target. A data node with no
 * other data voter is SINGLE: nobody could take over from it. With two or
 * more data voters exactly one node may be ACTIVE, the others STANDBY.
 *
 * Becoming active. Only the ready Raft leader (its post-election barrier
 * applied) may be active. It commits "active := me" (the replicated
 * fact, with its term), then acquires: wait the takeover delay, run the
 * fence command when it takes over from another node (told which one; a
 * failure blocks the takeover and shows in the disabled reasons), add the
 * VIPs through rtnetlink, render the active tree (ports linked, namespaces
 * enabled, ANA optimized) and announce the VIPs (gratuitous ARP /
 * unsolicited NA, failover.config's count and interval). A witness leader
 * hands leadership to a data node.
 *
 * Why no two nodes are ever active: the lease. The active serves only
 * while a quorum has acknowledged it recently: every lease_ms/3 it commits
 * a Raft barrier, and a barrier proposed at time t and committed extends
 * the lease to t + lease_ms. Committing needs a majority to have received
 * an AppendEntries sent after t; each of them reset its election timer
 * then and refuses every vote (libraft: while it knows a leader) for at
 * least one election timeout. Any new leader needs one of their votes, so
 * it cannot exist before t + election_timeout. The lease ends earlier, at
 * t + lease_ms with lease_ms = election_timeout - margin, and the old
 * active drops everything when it ends (the daemon, or the guardian
 * process if the daemon is dead or stopped). The takeover delay is what
 * is left to wait: max(0, lease_ms + margin - election_timeout), 0 with
 * the defaults, plus the operator's takeover_delay_ms. A restarted node
 * stays out of Raft for one election timeout (it forgot the leader it
 * acknowledged), see consensus' start_delay_ms.
 *
 * Losing leadership, the lease or the guardian releases at once, in
 * reverse: VIPs removed, the standby tree rendered (ports unlinked,
 * namespaces disabled, ANA inaccessible). A planned switchover
 * (fo_become_passive) releases first, commits "active := none" and then
 * transfers leadership; the new active needs no delay and no fencing.
 *
 * Everything runs on the node's uv loop. failover/ never calls into the
 * node: what it needs comes through struct fo_ops. */
#ifndef FO_H
#define FO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nv_hist.h"

#include "tgt.h"

struct uv_loop_s;
struct nv;
struct nv_err;
struct sm_state;
struct fo;

/* The one role enum of the project. */
enum fo_role { FO_SINGLE, FO_ACTIVE, FO_STANDBY, FO_WITNESS };

/* Capabilities the node hands to failover (all on the loop thread). */
struct fo_ops {
    void *ctx;
    /* Propose a statemachine write of the node's own (params taken):
     * 0 = done(arg, status) later (0: applied without error), <0 = nothing
     * happened. */
    int (*propose)(void *ctx, const char *method, struct nv *params,
                   void (*done)(void *arg, int status), void *arg);
    /* A Raft barrier: done(arg, 0) once committed and applied here. */
    int (*barrier)(void *ctx, void (*done)(void *arg, int status), void *arg);
    /* Transfer leadership to node id: done(arg, status) when it happened
     * or failed. */
    int (*transfer)(void *ctx, uint64_t id, void (*done)(void *arg, int status), void *arg);
    /* Render configfs now for fo_view() (synchronously); NULL = none. */
    void (*render)(void *ctx);
    /* Render with a full walk of configfs, because something outside the
     * daemon changed it (the guardian released); NULL = render. */
    void (*repair)(void *ctx);
    /* The role or the status changed (for subscribers); may be NULL. */
    void (*changed)(void *ctx);
    /* One log line (level: 0 error, 1 info, 2 debug). */
    void (*log)(void *ctx, int level, const char *msg);
};

struct fo_config {
    uint64_t id;
    bool witness;
    const char *configfs; /* directory holding nvmet/; NULL on a witness */
    const char *data_dir; /* the VIPs to drop at the next start are kept here */
    unsigned election_timeout_ms;
    unsigned heartbeat_ms;
    const struct sm_state *sm; /* borrowed for fo's lifetime, read only */
    bool no_guardian;          /* tests of the decision alone */
};

/* What the node knows of Raft now. */
#define FO_MAX_MEMBERS 16
struct fo_member {
    uint64_t id;
    bool voter;
    /* On the leader: it has acknowledged everything committed (so it
     * answered since this leadership began); a hand-off goes to such a
     * node rather than to one that may be dead. */
    bool caught_up;
};
struct fo_facts {
    bool leader; /* this node leads */
    bool ready;  /* ... with its post-election barrier applied */
    uint64_t term;
    uint64_t leader_id; /* 0 = unknown */
    size_t n_members;
    struct fo_member members[FO_MAX_MEMBERS];
};

/* Start: before anything else remove the VIPs and port links this node
 * may still hold from an earlier run (it owns nothing now), then fork the
 * guardian. Call before the node opens sockets or starts threads. cfg and
 * its strings are copied; ops copied. 0 or -errno with msg. */
int fo_open(struct uv_loop_s *loop, const struct fo_config *cfg, const struct fo_ops *ops,
            struct fo **out, char *msg, size_t msglen);
/* Release whatever is held, stop the guardian, close the handles; then
 * done(arg) and f is freed. */
void fo_close(struct fo *f, void (*done)(void *arg), void *arg);

/* New facts, or the replicated state changed: decide and act. Cheap when
 * nothing changed; call after every consensus change and apply. */
void fo_update(struct fo *f, const struct fo_facts *facts);

enum fo_role fo_role(const struct fo *f);
/* How target/ renders this node now. */
struct tgt_view fo_view(const struct fo *f);
/* failover.status_details: {"status": "MASTER"|"BACKUP"|"SINGLE", "node":
 * "A".., "role", "active_node", "active_term", "leader", "data_voters",
 * "disabled_reasons": [...], "lease_ms", "takeover_delay_ms", "vips": [...],
 * ...} (owned). */
struct nv *fo_status(const struct fo *f);

/* Planned switchover on the active node: release, commit "active :=
 * none", hand leadership to target (0 = the next data voter). 0 =
 * done(arg, status, what) later: status 0 done, else a negative errno and
 * the step that failed ("leadership transfer", ...); <0 = refused with err
 * filled. */
int fo_become_passive(struct fo *f, uint64_t target,
                      void (*done)(void *arg, int status, const char *what), void *arg,
                      struct nv_err *err);

/* The data nodes that vote, in ascending id order (node A, B, ...): fills
 * at most max ids (ids may be NULL with max 0), returns how many there are. */
unsigned fo_data_nodes(const struct fo *f, uint64_t *ids, unsigned max);

/* Counters for metrics (loop thread). */
struct fo_stats {
    enum fo_role role;
    bool serving;                /* holds the active role now */
    uint64_t acquires, releases; /* times it took / gave up the role */
    struct nv_hist acquire_time; /* from the decision to VIPs up, ports
                                  * rendered and announcements sent */
    uint64_t fence_ok, fence_failed;
};
void fo_get_stats(const struct fo *f, struct fo_stats *st);

/* "MASTER", "BACKUP" or "SINGLE" (TrueNAS failover.status) of a role. */
const char *fo_status_name(enum fo_role role);

#endif
