/* consensus internals shared by cons.c (lifecycle, status, membership) and
 * cons_log.c (framing, group commit, callbacks, fsm adapters). */
#ifndef CONS_INT_H
#define CONS_INT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cons.h"

/* Entry framing: [u32 magic][u32 count] then per command [u32 len][bytes]
 * zero-padded so that each command takes a multiple of 8 bytes; the whole
 * entry is then a multiple of 8 (libraft trap 1). Little-endian. */
#define CONS_ENTRY_MAGIC 0x31534e43u /* "CNS1" */
#define CONS_ENTRY_HDR 8u
/* Snapshot framing: [u32 magic][u32 0][u64 true length][bytes][pad to 8]. */
#define CONS_SNAP_MAGIC 0x53534e43u /* "CNSS" */
#define CONS_SNAP_HDR 16u

#define CONS_MAX_COMMAND ((size_t)16 << 20)

/* A user callback waiting to happen: a proposal (data until it is framed
 * into an entry), a barrier waiter or a membership request. */
struct cons_cmd {
    struct cons_cmd* next;
    cons_cb cb;
    void* arg;
    int status;
    void* result;
    size_t len;
    void* data;
};

struct cons_list {
    struct cons_cmd* head;
    struct cons_cmd** tail;
    size_t n;
};

/* One raft_apply carrying several commands. */
struct cons_batch {
    struct raft_apply req;
    struct cons_node* node;
    struct cons_batch *prev, *next; /* in flight, ascending index */
    struct cons_list cmds;
    bool applied; /* the fsm adapter saw this entry and filled the results */
};

/* One raft_barrier serving every cons_barrier made in a loop iteration. */
struct cons_bar {
    struct raft_barrier req;
    struct cons_node* node;
    struct cons_list waiters;
};

/* A membership change or a leadership transfer. */
struct cons_chg {
    union {
        struct raft_change change;
        struct raft_transfer transfer;
    } u;
    struct cons_node* node;
    struct cons_cmd* waiter;
    uint64_t target;
};

/* Storage health of the data dir (cons_disk.c). */
struct cons_disk {
    char dir[4096];
    size_t segment;
    bool accept_loss;
    bool multi_hint; /* the configuration given names other voters, or a join */
    /* commit watermark: two fixed-size slots written in turn */
    int wm_fd;
    uint64_t wm_seq;
    uint64_t wm_committed;
    unsigned wm_voters;
    bool wm_found;
    bool wm_failing; /* the last write failed (logged once) */
    uint64_t wm_next_ms;
    /* free space, sampled */
    uint64_t free_bytes;
    uint64_t space_next_ms;
    bool low;
    /* the last log write that failed; cleared by one that succeeds */
    int error;
    char error_msg[200];
    uint64_t error_at;
    uint64_t ready_retry_at; /* post-election barrier failed on the disk: not before */
    bool stop;               /* a multi-node leader's write failed (cons.h) */
    bool stop_reported;
    struct raft_transfer handover; /* low on space: leadership to another voter */
    bool handing_over;
    uint64_t handover_next_ms;
    size_t n_faults;
    struct cons_log_fault faults[CONS_MAX_FAULTS];
    /* the io close callback, fired once and only when libraft is quiet */
    void (*io_close)(struct raft_io* io, raft_io_close_cb cb);
    raft_io_close_cb io_close_cb;
    uv_timer_t close_timer;
    bool close_armed;
    bool close_fired;
    unsigned close_quiet;
};

struct cons_node {
    uv_loop_t* loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm rfsm;
    struct cons_fsm fsm;
    uint64_t id;
    char address[64];
    unsigned max_batch;
    size_t max_entry_bytes;

    uv_timer_t poll;
    uv_idle_t work;
    uv_timer_t start_timer; /* cons_config.start_delay_ms */
    bool started;           /* raft_start was called and succeeded */
    int start_error;        /* raft_start failed after a start delay */
    char start_msg[200];

    struct cons_list proposals; /* accepted, not yet handed to raft */
    struct cons_list barriers;  /* accepted barrier waiters */
    struct cons_list done;      /* finished, user callback not yet run */
    struct cons_batch *inflight_head, *inflight_tail;
    bool dispatching;

    /* Readiness: a barrier after every election win (trap 4). */
    struct raft_barrier ready_req;
    bool ready_pending;
    uint64_t ready_pending_term;
    bool ready;
    uint64_t ready_term;

    /* Change reporting (no state callback in 0.15: polled). */
    cons_change_cb change_cb;
    void* change_arg;
    bool reported;
    int last_state;
    bool last_ready;
    uint64_t last_leader;
    bool last_caught;
    bool check_change;
    uint64_t contact_at; /* uv_now() when a leader was last heard */

    /* The ids of the last committed configuration seen (the transport
     * admits these and the current configuration's). */
    uint64_t* committed_ids;
    size_t n_committed;
    struct cons_disk disk;

    /* Shutdown. */
    bool closing;
    bool raft_down;
    int handles_open;
    void (*close_done)(void* arg);
    void* close_arg;
};

/* cons.c */
int cons_err(int raft_rv);
/* A Raft address: "a.b.c.d:port" or "[v6]:port". */
bool cons_address_ok(const char* address);
bool cons_is_ready(const struct cons_node* n);
void cons_check_change(struct cons_node* n);
void cons_log(const struct cons_node* n, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* cons_disk.c (start) and cons_storage.c (running) */
/* Before raft_init: remember the dir, read the watermark, check the free
 * space. 0 or -errno with errmsg. */
int cons_disk_open(struct cons_node* n,
                   const struct cons_config* cfg,
                   size_t segment,
                   char* errmsg,
                   size_t errlen);
/* raft_start with the damaged-segment and watermark checks. 0 or -errno
 * with errmsg (libraft may be started: the caller tears it down). */
int cons_disk_start(struct cons_node* n, char* errmsg, size_t errlen);
/* From the poll timer: free space, watermark, recovery of lost ranges. */
void cons_disk_poll(struct cons_node* n);
/* A log write (entry, barrier) finished with the libraft status. */
void cons_disk_write_done(struct cons_node* n, int raft_status);
/* The error a leader that cannot commit answers with, or 0. */
int cons_disk_blocked(const struct cons_node* n);
/* The error a failed log write completes its requests with. */
int cons_disk_status(const struct cons_node* n, int raft_status);
/* Whether the post-election barrier may be tried now. */
bool cons_disk_may_retry_ready(const struct cons_node* n);
/* Shared by cons_disk.c and cons_storage.c. */
unsigned cons_disk_voters(const struct cons_node* n, bool* self);
uint64_t cons_disk_durable_commit(const struct cons_node* n);
const char* cons_disk_mib(uint64_t bytes, char* buf, size_t len);
const char* cons_disk_words(const struct cons_node* n);
void cons_disk_sample_space(struct cons_node* n);
int cons_disk_wm_write(struct cons_node* n, uint64_t committed, unsigned voters);
/* At close: the watermark once more. */
void cons_disk_close(struct cons_node* n);
/* After raft_uv_init: make libraft's io close callback fire once, after
 * its segment writers have closed (see cons_disk.c). */
void cons_disk_guard_close(struct cons_node* n);

/* cons_log.c */
void cons_list_init(struct cons_list* l);
void cons_list_push(struct cons_list* l, struct cons_cmd* c);
struct cons_cmd* cons_list_pop(struct cons_list* l);
void cons_list_append(struct cons_list* dst, struct cons_list* src);
/* Queue a finished callback (status already translated) and wake the loop. */
void cons_complete(struct cons_node* n, struct cons_cmd* c, int status, void* result);
void cons_complete_all(struct cons_node* n, struct cons_list* l, int status);
void cons_kick(struct cons_node* n);
void cons_work_cb(uv_idle_t* h);
void cons_dispatch(struct cons_node* n);
void cons_fail_inflight(struct cons_node* n, int status);
void cons_fsm_setup(struct cons_node* n);

/* Reading one entry (a pure function of its bytes, so every node skips
 * exactly the same malformed parts): cons_entry_open checks the header,
 * cons_entry_next yields the commands in order. */
struct cons_entry_iter {
    const unsigned char* p; /* borrowed: the entry */
    size_t size, off;
    uint32_t count, i;
};
/* 0, or -EBADMSG with *why: not a consensus entry, or a count that cannot
 * fit in size bytes. */
int cons_entry_open(struct cons_entry_iter* it, const void* buf, size_t size, const char** why);
/* 1 and the next command (*cmd borrowed from the entry), 0 at the end, or
 * -EBADMSG with *why when command it->i is truncated (then 0: nothing
 * more is read). */
int cons_entry_next(struct cons_entry_iter* it, const void** cmd, size_t* len, const char** why);

#endif
