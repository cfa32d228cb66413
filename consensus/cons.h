/* consensus: libraft 0.15 + libuv glue. Moves opaque command bytes; knows
 * nothing about nvmet. Everything runs on the caller's uv loop thread.
 *
 * What it adds on top of libraft (see the libraft traps in the team notes):
 *   - commands are framed and padded to 8 bytes (trap 1);
 *   - group commit: proposals made during one loop iteration travel in one
 *     Raft entry; the fsm still sees one apply per command, and every
 *     proposer gets its own command's result;
 *   - a barrier right after winning an election (trap 4): the node reports
 *     itself "ready" only once that barrier is applied;
 *   - role changes are polled (no state callback in 0.15) and reported;
 *   - libraft errors are translated once, to negative errnos: not leader
 *     -NV_ENOTLEADER, leadership lost (outcome unknown) -NV_ELEADERSHIPLOST,
 *     shutting down -ESHUTDOWN, no memory -ENOMEM, too big -EMSGSIZE, I/O
 *     -EIO, disk full -ENOSPC, membership change in progress -EBUSY,
 *     unknown id -ENOENT, duplicate id/address -EEXIST, no connection
 *     -ENOTCONN, corrupt data dir -EBADMSG, anything else -EPROTO.
 *     Also: bad role/parameter -EINVAL, name too long -ENAMETOOLONG; a
 *     leadership transfer that did not happen within an election timeout
 *     -ETIMEDOUT.
 *
 * Process-wide: cons_start sets SIGPIPE to SIG_IGN if it is still SIG_DFL
 * (libraft writes to peers that may have gone away). The fsm callbacks run
 * inside libraft: they must not call cons_close. */
#ifndef CONS_H
#define CONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uv_loop_s;
struct cons_node;

enum cons_role { CONS_ROLE_VOTER = 1, CONS_ROLE_STANDBY = 0, CONS_ROLE_SPARE = 2 };
enum cons_state { CONS_UNAVAILABLE, CONS_FOLLOWER, CONS_CANDIDATE, CONS_LEADER };

struct cons_peer {
    uint64_t id;
    char address[64]; /* "a.b.c.d:port" or "[v6]:port" */
    int role;         /* enum cons_role */
};

/* The replicated state machine as consensus sees it. */
struct cons_fsm {
    /* Apply one committed command (the bytes given to cons_propose, no
     * framing or padding). Called on every node, in log order, also during
     * replay after a restart. Must be deterministic and must not fail.
     * Returns a result handed to the proposer's callback on this node; a
     * result nobody waits for is released with free_result. */
    void *(*apply)(void *data, const void *buf, size_t len);
    void (*free_result)(void *data, void *result);
    /* Serialize the whole state; *buf is malloc'd and freed by consensus. */
    int (*snapshot)(void *data, void **buf, size_t *len);
    /* Replace the whole state from a snapshot (buf borrowed). 0 or -errno. */
    int (*restore)(void *data, const void *buf, size_t len);
    void *data;
};

struct cons_config {
    uint64_t id;           /* > 0 */
    const char *address;   /* this node's Raft address, "a.b.c.d:port" or "[v6]:port" */
    const char *data_dir;  /* created if missing; private to this node */
    /* Initial configuration, used only to bootstrap an empty data dir.
     * NULL/0 = a one-member cluster of this node. */
    const struct cons_peer *peers;
    size_t n_peers;
    /* Join an existing cluster: never bootstrap; wait for the leader's
     * cons_add/cons_assign (the same as peers that leave this node out). */
    bool join;
    unsigned election_timeout_ms; /* 0 = 1000 */
    unsigned heartbeat_ms;        /* 0 = election_timeout / 10 */
    unsigned snapshot_threshold;  /* 0 = 8192 entries */
    unsigned snapshot_trailing;   /* 0 = threshold / 2 */
    bool pre_vote;                /* recommended: true */
    unsigned max_batch;           /* commands per entry; 0 = 256 */
    /* Take part in Raft (vote, time out, accept entries) only this long
     * after cons_start. A restarted node has forgotten which leader it
     * acknowledged last and would grant its vote at once; a leader's lease
     * (failover/) counts on the nodes that acknowledged it not voting for
     * another node within an election timeout. 0 = at once. A raft_start
     * failure after the delay is reported through the change callback
     * (cons_status.start_error) instead of cons_start's return value. */
    unsigned start_delay_ms;
    size_t segment_size;          /* 0 = 4 MiB */
    /* Raft transport security, exactly one of (README "Raft transport
     * security"): psk_file, a cluster secret (>= 32 random bytes or their
     * hex; mode 0600); ca_file + cert_file + key_file, a cluster CA and
     * this node's certificate naming "nvmet-node-<id>"; insecure, plain
     * TCP. Without any, cons_start fails. Every mode admits only members
     * of the configuration and checks every frame before libraft. */
    const char *psk_file;
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    bool insecure;
    /* Start on a shorter log when the data dir lost entries that this node
     * is the only holder of (a single voter): a damaged segment is set
     * aside, a log shorter than the recorded commit watermark is taken as
     * it is (see "Storage faults" below). Without it such a start is
     * refused with -EBADMSG. A member of a multi-node cluster starts
     * either way and fetches the lost entries from the others. */
    bool accept_data_loss;
};

/* Start a node: init raft_uv in data_dir, bootstrap if the dir is empty,
 * load snapshot + log, start ticking. Returns 0 or -errno with errmsg set
 * (e.g. "data dir /x belongs to node 2, not 1" -EEXIST: the id is kept in
 * data_dir/node-id; raft address busy -EADDRINUSE).
 * peers that do not include cfg->id: the node joins an existing cluster -
 * it does not bootstrap and waits for the leader's cons_add/cons_assign.
 * A lone voter elects itself and applies its log tail inside cons_start
 * (fsm->apply may run before *out is set). On a failure after libraft was
 * initialised the node tears down asynchronously: keep running the loop. */
int cons_start(struct uv_loop_s *loop, const struct cons_config *cfg, const struct cons_fsm *fsm,
               struct cons_node **out, char *errmsg, size_t errlen);

/* Completion of a proposal or barrier. status 0: committed and applied on
 * this node, result = what fsm->apply returned for that command (the
 * callback owns it and must release it). status < 0: see the header
 * comment; result NULL. Called exactly once, never synchronously from
 * cons_propose/cons_barrier. */
typedef void (*cons_cb)(void *arg, int status, void *result);

/* Propose a command (buf copied). 0: cb will be called. <0: nothing
 * happened and cb will not be called (-NV_ENOTLEADER unless this node is a
 * ready leader, -ENOSPC/-EIO from a leader that cannot write its log,
 * -EMSGSIZE above 16 MiB, -ESHUTDOWN after close). */
int cons_propose(struct cons_node *n, const void *buf, size_t len, cons_cb cb, void *arg);

/* Linearizable-read barrier: cb(arg, 0, NULL) once everything committed
 * before the call is applied here. Same return rules as cons_propose. */
int cons_barrier(struct cons_node *n, cons_cb cb, void *arg);

struct cons_member {
    uint64_t id;
    char address[64];
    int role;             /* enum cons_role */
    uint64_t match_index; /* on the leader: the highest entry it has acknowledged */
};

struct cons_status {
    uint64_t id;
    int state;     /* enum cons_state */
    bool ready;    /* leader whose post-election barrier is applied */
    uint64_t term;
    uint64_t commit_index;
    uint64_t last_applied;
    uint64_t last_index;
    uint64_t snapshot_index;
    uint64_t leader_id; /* 0 if unknown */
    char leader_address[64];
    uint64_t last_contact_ms; /* ms since the leader was last heard (follower), 0 on the leader */
    size_t n_members;
    struct cons_member members[16];
    /* The delayed start failed (cons_config.start_delay_ms): -errno and
     * the message; the node does nothing more and should be closed. */
    int start_error;
    char start_msg[200];
    /* -ENOSPC / -EIO while this node's Raft log cannot be written (the
     * last log write failed), 0 otherwise; details in cons_get_storage. */
    int storage_error;
    /* This node led a multi-node cluster when its log write failed: it
     * takes nothing more and should be closed so another member leads
     * (see "Storage faults"). Reported once through the change callback. */
    bool storage_stop;
};
void cons_get_status(const struct cons_node *n, struct cons_status *st);

/* Storage faults (cons_disk.c).
 *
 * At start: the data dir must hold the open segments libraft preallocates
 * (CONS_OPEN_SEGMENTS x segment_size), else cons_start fails with -ENOSPC
 * naming the dir, the space needed and the space available. libraft's own
 * auto-recovery (which renames a damaged last segment and starts on a
 * shorter log without a word) is off: a damaged segment is found here,
 * logged, and set aside as corrupt-<ns>-<name> with every later segment,
 * and the log restarts from the entries before it. A commit watermark
 * (data_dir/log-watermark, fsynced at most once a second and at close)
 * also catches a log that silently ends before entries known committed.
 * A single voter refuses both unless accept_data_loss; a member of a
 * multi-node cluster goes on and the leader sends the entries again (the
 * other members hold every committed entry). Until it has them, its vote
 * rests on the shorter log: stop no other member meanwhile.
 *
 * While running: the free space of the data dir is sampled every second,
 * and a failed log write (fallocate of the next segment: -ENOSPC; other
 * I/O: -EIO) is reported as it is, to the proposer and in the storage
 * status. A single voter whose post-election barrier failed on the disk
 * answers cons_propose/cons_barrier with that error (not -NV_ENOTLEADER)
 * and tries the barrier again every second.
 *
 * A leader of a multi-node cluster with less than one segment free hands
 * its leadership to another voter (raft_transfer, at most every 30 s):
 * the segments it preallocated let it go on until the hand-over is done,
 * and a full disk never fails one of its writes.
 *
 * A leader of a multi-node cluster must not append again once a write of
 * its own failed: the entry it dropped may sit on the followers, and a new
 * entry at the same index and term would commit on the leader while they
 * apply the old one (libraft 0.15 neither steps down on a failed write nor
 * can hand leadership over from a log shorter than its followers'). So it
 * stops taking proposals (-NV_ENOTLEADER: nothing happened), completes what
 * was in flight with -NV_ELEADERSHIPLOST (the followers may still commit
 * it), and sets cons_status.storage_stop: the owner closes the node, the
 * other members elect a leader, and a restart (with space) catches up. */
#define CONS_OPEN_SEGMENTS 3 /* libraft 0.15: one being written + a pool of 2 */
#define CONS_MAX_FAULTS 4

struct cons_log_fault {
    char kind[24];      /* "damaged segment" or "shorter log" */
    char file[64];      /* the segment file, "" for a shorter log */
    char set_aside[96]; /* its name after being set aside, "" if none */
    char reason[200];   /* libraft's words, or what the watermark says */
    uint64_t first_lost; /* entries this node lost: first..last */
    uint64_t last_lost;  /* 0: not known (only open segments were set aside) */
    bool accepted;       /* a single voter started anyway (accept_data_loss) */
    bool recovered;      /* this node holds committed entries past the range again */
};

struct cons_storage {
    uint64_t free_bytes;    /* available in the data dir's file system (last sample) */
    uint64_t needed_bytes;  /* what the open segments take: CONS_OPEN_SEGMENTS x segment */
    uint64_t segment_bytes;
    bool low;               /* less than one segment free: the log stops growing once
                             * the preallocated segments are full */
    int error;              /* -errno of the last failed log write; 0 after a success */
    char error_msg[200];    /* libraft's words for it */
    uint64_t error_age_ms;  /* since it happened */
    bool blocked;           /* leader that cannot commit: writes and linearizable
                             * reads answer `error` */
    uint64_t watermark;     /* committed index recorded in log-watermark */
    size_t n_faults;        /* found at this start */
    struct cons_log_fault faults[CONS_MAX_FAULTS];
};
void cons_get_storage(const struct cons_node *n, struct cons_storage *out);

/* Called after every change of state/ready/leader (polled every few ms),
 * and when the node becomes caught up (last_applied reaches commit_index).
 * Never from inside libraft. */
typedef void (*cons_change_cb)(void *arg, const struct cons_status *st);
void cons_on_change(struct cons_node *n, cons_change_cb cb, void *arg);

/* Membership (one change at a time, leader only; same return rules). */
int cons_add(struct cons_node *n, uint64_t id, const char *address, cons_cb cb, void *arg);
int cons_assign(struct cons_node *n, uint64_t id, int role, cons_cb cb, void *arg);
int cons_remove(struct cons_node *n, uint64_t id, cons_cb cb, void *arg);
int cons_transfer(struct cons_node *n, uint64_t id, cons_cb cb, void *arg);

/* Stop: pending callbacks fire with -ESHUTDOWN or -NV_ELEADERSHIPLOST,
 * then done(arg) once every handle is closed; only then may the loop end
 * and n is freed. */
void cons_close(struct cons_node *n, void (*done)(void *arg), void *arg);

/* A 32-byte key for another use, derived from the Raft PSK file (read and
 * checked as the transport reads it): HMAC-SHA256(secret, label). A label
 * per use keeps the keys apart: none of them gives the PSK or another. */
int cons_psk_derive(const char *psk_file, const char *label, unsigned char out[32], char *errmsg,
                    size_t errlen);

/* Human text for a status/role/state. */
const char *cons_state_name(int state);
const char *cons_role_name(int role);

#endif
