/* failover internals shared by fo.c (decide and act), fo_lease.c (lease
 * timing and renewal), fo_vips.c (the VIP settings, acquiring and
 * releasing addresses, announcing, the monitor), fo_fence.c and
 * fo_release.c. */
#ifndef FO_INT_H
#define FO_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "fo.h"
#include "nv_hist.h"
#include "fo_guard.h"
#include "fo_net.h"

#define FO_MAX_VIPS 64

enum { FO_LOG_ERROR, FO_LOG_INFO, FO_LOG_DEBUG };

/* Why this node cannot be (or stay) the active controller now; the names
 * are failover.disabled_reasons' (TrueNAS style). */
#define FO_REASONS(X)                                                            \
    X(NO_QUORUM, "no Raft leader is known (no quorum, or an election is on)")    \
    X(NO_DATA_PEER, "fewer than two data nodes vote: there is no failover")      \
    X(WITNESS, "this node is a witness: it never runs the target")               \
    X(NO_GUARDIAN, "the guardian process is not running: this node cannot hold") \
    X(FENCE_FAILED, "the fence command failed: the takeover is blocked")         \
    X(VIP_FAILED, "a virtual IP could not be added on this node")
#define FO_REASON_ENUM(name, text) FO_R_##name,
enum fo_reason { FO_REASONS(FO_REASON_ENUM) FO_R__COUNT };

enum fo_fence_state { FO_FENCE_IDLE, FO_FENCE_RUNNING, FO_FENCE_OK, FO_FENCE_FAILED };

/* Lease timing derived from Raft's timers (fo.h "Why no two nodes are
 * ever active"). */
struct fo_timing {
    unsigned election_ms;
    unsigned margin_ms; /* what the old active needs to have released */
    unsigned lease_ms;  /* election_ms - margin_ms */
    unsigned renew_ms;  /* a barrier this often while leading */
    unsigned delay_ms;  /* derived takeover delay: max(0, lease + margin - election) */
};
struct fo_timing fo__timing(unsigned election_ms, unsigned heartbeat_ms);

struct fo {
    uv_loop_t *loop;
    struct fo_config cfg; /* strings owned */
    struct fo_ops ops;
    struct fo_timing tm;
    struct fo_facts facts;
    bool have_facts;
    bool closing;

    enum fo_role role;
    bool serving; /* holds the data path: VIPs added, active tree rendered */
    uint64_t last_change_ms;
    char last_why[96];

    /* lease (fo_lease.c) */
    uv_timer_t renew_timer;
    uv_timer_t expiry_timer;
    uint64_t lease_until; /* uv_now ms; 0 = none */
    uint64_t lease_term;  /* the term the lease belongs to */
    unsigned renewals_in_flight;
    uint64_t lease_expiries;

    /* becoming active */
    bool activate_busy;
    uint64_t activate_retry_at;
    uint64_t prev_active; /* the active node when this node asked */
    bool planned;         /* acquire_at is set for the current activation */
    uint64_t acquire_at;
    uv_timer_t wait_timer;

    /* fencing (fo_fence.c) */
    enum fo_fence_state fence;
    uint64_t fence_next_ms;
    unsigned fence_failures;
    uv_process_t fence_proc;
    bool fence_proc_open;   /* the process handle is not closed yet */
    uv_timer_t fence_timer; /* kills a fence command that hangs */
    char fence_error[160];

    /* planned switchover */
    bool passive;
    uint64_t passive_target;
    uint64_t passive_since;
    void (*passive_done)(void *arg, int status, const char *what);
    void *passive_arg;

    /* witness hand-off */
    bool transfer_busy;
    uint64_t transfer_last;

    /* VIPs (fo_vips.c) */
    struct fo_nl *nl;
    struct fo_ann *ann;
    struct fo_vip vips[FO_MAX_VIPS];
    bool held[FO_MAX_VIPS];
    size_t n_vips;
    uint64_t vips_gen; /* sm_generation the list was read at (+1; 0 = never) */
    bool shared;       /* more than one voter: serving needs the lease */
    bool ana_any;      /* ANA on anywhere (global or a subsystem) */
    uint64_t ana_gen;  /* sm_generation ana_any was read at (+1; 0 = never) */
    char vip_error[200];
    uint64_t vip_retry_at;
    int mon_fd;
    uv_poll_t mon_poll;
    unsigned announce_left;
    unsigned announce_interval_ms;
    uv_timer_t announce_timer;
    uint64_t restored; /* VIPs put back after someone removed them */

    /* guardian */
    struct fo_guard *guard;
    uv_poll_t guard_poll;
    bool guard_polling;
    uv_timer_t guard_timer; /* restarts a dead guardian */

    uint64_t acquires, releases;
    struct nv_hist acquire_time; /* VIPs added, rendered, announced */
    uint64_t fence_ok, fence_failed;
    uint64_t last_acquire_ms; /* how long the last acquire took */

    unsigned pending; /* capability calls whose callback has not come */
    int closing_handles;
    void (*close_done)(void *arg);
    void *close_arg;
};

void fo__log(const struct fo *f, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t fo__now(const struct fo *f);
/* Decide and act now (fo_update without new facts). */
void fo__evaluate(struct fo *f);
/* Members that vote and are not witnesses (the registry says which are). */
unsigned fo__data_voters(const struct fo *f);
unsigned fo__voters(const struct fo *f);
bool fo__is_witness(const struct fo *f, uint64_t id);

/* fo_lease.c: the lease of the current leadership. */
void fo__lease_init(struct fo *f);
/* Start or stop the renewals (leading with more than one voter). */
void fo__lease_run(struct fo *f, bool on);
/* A commit proposed at t0 (uv_now) in term: extend the lease. */
void fo__lease_grant(struct fo *f, uint64_t t0, uint64_t term);
bool fo__lease_valid(const struct fo *f);
void fo__lease_drop(struct fo *f);

/* fo_vips.c */
int fo__vips_open(struct fo *f, char *msg, size_t msglen);
/* Re-read the VIP settings if the replicated state changed; adds and
 * removes addresses as needed while serving. */
void fo__vips_refresh(struct fo *f);
/* Add every VIP (serving) / remove every VIP. Count of failures. */
unsigned fo__vips_acquire(struct fo *f);
void fo__vips_release(struct fo *f);
void fo__vips_retry(struct fo *f);
void fo__announce_start(struct fo *f);
void fo__vips_close(struct fo *f, uv_close_cb cb);
/* Remove the VIPs listed in the data dir by an earlier run (start-up). */
void fo__vips_startup(struct fo *f);
/* Remember the VIPs (and whether they were held under a lease) in the
 * data dir, for fo__vips_startup of the next run. */
void fo__vips_persist(struct fo *f);

/* fo_fence.c: run the fence command against node id; evaluate on exit. */
void fo__fence_start(struct fo *f, const char *cmd, uint64_t node);
/* Kill a running fence command; its handles count in closing_handles. */
void fo__fence_close(struct fo *f);
/* Close callback of every handle of a closing fo (h->data == f). */
void fo__closed(uv_handle_t *h);
void fo__maybe_free(struct fo *f);

/* fo_release.c: the configfs part of an emergency release (also the
 * guardian's): unlink the port->subsystem links of the ports below 5000
 * and write "inaccessible" to every ANA group but 1. One log line per
 * action or failure (log may be NULL); returns the number of objects
 * changed. */
int fo__release_configfs(const char *configfs, const char *why,
                         void (*log)(void *arg, const char *line), void *arg);

#endif
