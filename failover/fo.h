/* failover: who is the active controller (DESIGN.md "Failover").
 *
 * The decision is a pure function of what this node knows now (its Raft
 * role, the replicated active node, the clock) plus a little memory of its
 * own (struct fo_state); the node carries out the actions it asks for
 * (commit "active := me", run the fence command, hand leadership to a data
 * node) and renders configfs for the role.
 *
 *   - a witness is never active; as leader it hands leadership over;
 *   - with fewer than two data voters there is no failover: SINGLE;
 *   - only the ready leader can be active, and only once "active := me" is
 *     committed; when it takes over from another node it first waits the
 *     takeover delay (long enough for a deposed leader to have stepped
 *     down) and runs the fence command if one is configured;
 *   - losing leadership (or a planned switchover) releases at once. */
#ifndef FO_H
#define FO_H

#include <stdbool.h>
#include <stdint.h>

enum fo_role { FO_SINGLE, FO_ACTIVE, FO_STANDBY, FO_WITNESS };

#define FO_ACT_ACTIVATE 0x1u /* propose failover.activate {node: self, term} */
#define FO_ACT_FENCE 0x2u    /* run the fence command (then fo_fenced) */
#define FO_ACT_HANDOFF 0x4u  /* transfer leadership to a data node */

struct fo_input {
    uint64_t self;
    bool witness;
    unsigned data_voters;    /* voters that are not witnesses, this node included */
    bool ready_leader;       /* leader with its post-election barrier applied */
    uint64_t term;           /* current Raft term */
    uint64_t active;         /* the replicated active node (0 = none) */
    bool passive_requested;  /* failover.become_passive in progress */
    bool activate_in_flight; /* an activate proposal is pending */
    bool fence_configured;
    uint64_t takeover_delay_ms;
    uint64_t now_ms;
};

/* What the decision remembers between calls (zero-initialise). */
struct fo_state {
    uint64_t prev_active;   /* the active node when this node asked to activate */
    uint64_t acquire_at_ms; /* ACTIVE from then on (when planned) */
    bool planned;
    bool fenced;
};

struct fo_decision {
    enum fo_role role;
    unsigned actions; /* FO_ACT_* */
};

struct fo_decision fo_decide(struct fo_state *st, const struct fo_input *in);
/* The fence command succeeded (the next fo_decide may go ACTIVE). */
void fo_fenced(struct fo_state *st);
/* "MASTER", "BACKUP" or "SINGLE" (TrueNAS failover.status) for a role. */
const char *fo_status_name(enum fo_role role);
const char *fo_role_name(enum fo_role role);

#endif
