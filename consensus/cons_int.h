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

    /* Shutdown. */
    bool closing;
    bool raft_down;
    int handles_open;
    void (*close_done)(void* arg);
    void* close_arg;
};

struct sockaddr_in;

/* cons.c */
int cons_err(int raft_rv);
/* IPv4 "a.b.c.d:port", what libraft 0.15's transport parses. 0 or -EINVAL. */
int cons_parse_ipv4(const char* address, struct sockaddr_in* sa);
bool cons_is_ready(const struct cons_node* n);
void cons_check_change(struct cons_node* n);
void cons_log(const struct cons_node* n, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

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
