/* consensus: entry framing, group commit, callback dispatch and the raft fsm
 * adapters (apply / snapshot / restore).
 *
 * Flow of a proposal: cons_propose copies the bytes into a queued cons_cmd
 * and wakes the idle handle; the idle callback frames up to max_batch
 * queued commands into ONE entry and calls raft_apply once per loop
 * iteration. When libraft applies that entry, the fsm adapter decodes it,
 * calls fsm->apply once per command and, on the proposing leader, stores
 * each result in its cons_cmd (found through the in-flight batch with the
 * entry's index; libraft's request lookup is by index too). The raft_apply
 * callback then moves the commands to the "done" queue, and the idle
 * handle runs the user callbacks outside libraft: a user callback may call
 * back into consensus (propose, close) without re-entering libraft. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cons_int.h"
#include "nv_err.h"

static void put32(unsigned char* p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char* p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(unsigned char* p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get64(const unsigned char* p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static size_t pad8(size_t len)
{
    return (len + 7) & ~(size_t)7;
}

/* Bytes one command takes inside an entry. */
static size_t framed_len(size_t len)
{
    return pad8(4 + len);
}

/* ------------------------------------------------------------------ */
/* lists */

void cons_list_init(struct cons_list* l)
{
    l->head = NULL;
    l->tail = &l->head;
    l->n = 0;
}

void cons_list_push(struct cons_list* l, struct cons_cmd* c)
{
    c->next = NULL;
    *l->tail = c;
    l->tail = &c->next;
    l->n++;
}

struct cons_cmd* cons_list_pop(struct cons_list* l)
{
    struct cons_cmd* c = l->head;
    if (c != NULL) {
        l->head = c->next;
        if (l->head == NULL) {
            l->tail = &l->head;
        }
        l->n--;
        c->next = NULL;
    }
    return c;
}

void cons_list_append(struct cons_list* dst, struct cons_list* src)
{
    if (src->head == NULL) {
        return;
    }
    *dst->tail = src->head;
    dst->tail = src->tail;
    dst->n += src->n;
    cons_list_init(src);
}

/* ------------------------------------------------------------------ */
/* completion and dispatch */

void cons_kick(struct cons_node* n)
{
    if (n->handles_open == 0 && !uv_is_active((uv_handle_t*)&n->work) &&
        !uv_is_closing((uv_handle_t*)&n->work)) {
        uv_idle_start(&n->work, cons_work_cb);
    }
}

void cons_complete(struct cons_node* n, struct cons_cmd* c, int status, void* result)
{
    free(c->data);
    c->data = NULL;
    c->status = status;
    c->result = status == 0 ? result : NULL;
    if (status != 0 && result != NULL && n->fsm.free_result != NULL) {
        n->fsm.free_result(n->fsm.data, result);
    }
    cons_list_push(&n->done, c);
    cons_kick(n);
}

void cons_complete_all(struct cons_node* n, struct cons_list* l, int status)
{
    struct cons_cmd* c;
    while ((c = cons_list_pop(l)) != NULL) {
        cons_complete(n, c, status, NULL);
    }
}

/* Run the user callbacks of everything finished. A callback may propose
 * (queued) or close the node (n stays valid until our handles are closed,
 * which completes in a later loop iteration). */
void cons_dispatch(struct cons_node* n)
{
    if (n->dispatching) {
        return;
    }
    n->dispatching = true;
    struct cons_cmd* c;
    while ((c = cons_list_pop(&n->done)) != NULL) {
        if (c->cb != NULL) {
            c->cb(c->arg, c->status, c->result);
        } else if (c->result != NULL && n->fsm.free_result != NULL) {
            n->fsm.free_result(n->fsm.data, c->result);
        }
        free(c);
    }
    n->dispatching = false;
}

/* ------------------------------------------------------------------ */
/* flushing queued proposals and barriers */

/* Why a node that is not a ready leader refuses: a leader whose log cannot
 * be written says so (ENOSPC, EIO), anyone else is not the leader. */
static int not_ready_error(const struct cons_node* n)
{
    int blocked = cons_disk_blocked(n);
    return blocked != 0 ? blocked : -NV_ENOTLEADER;
}

static void inflight_unlink(struct cons_node* n, struct cons_batch* b)
{
    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else if (n->inflight_head == b) {
        n->inflight_head = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    } else if (n->inflight_tail == b) {
        n->inflight_tail = b->prev;
    }
    b->prev = b->next = NULL;
}

static void batch_cb(struct raft_apply* req, int status, void* result)
{
    (void)result; /* the results travel in the batch's commands */
    struct cons_batch* b = req->data;
    struct cons_node* n = b->node;
    inflight_unlink(n, b);
    cons_disk_write_done(n, status);
    struct cons_cmd* c;
    if (b->applied) {
        /* Applied here: each command carries its own outcome (0 + result,
         * or -EBADMSG if the entry did not decode into that many). */
        while ((c = cons_list_pop(&b->cmds)) != NULL) {
            cons_complete(n, c, c->status, c->result);
        }
    } else {
        cons_complete_all(n, &b->cmds, status == 0 ? -EBADMSG : cons_disk_status(n, status));
    }
    free(b);
}

/* Fail every batch still in flight (only after raft_close, should libraft
 * have forgotten one). */
void cons_fail_inflight(struct cons_node* n, int status)
{
    while (n->inflight_head != NULL) {
        struct cons_batch* b = n->inflight_head;
        inflight_unlink(n, b);
        cons_complete_all(n, &b->cmds, status);
        free(b);
    }
}

static void flush_proposals(struct cons_node* n)
{
    if (n->proposals.n == 0) {
        return;
    }
    if (!cons_is_ready(n)) {
        /* Accepted while we led, lost leadership (or the disk) before
         * reaching raft: nothing happened. */
        cons_complete_all(n, &n->proposals, not_ready_error(n));
        return;
    }
    struct cons_batch* b = calloc(1, sizeof *b);
    if (b == NULL) {
        return; /* try again next iteration */
    }
    cons_list_init(&b->cmds);
    b->node = n;
    b->req.data = b;

    size_t size = CONS_ENTRY_HDR;
    while (n->proposals.n > 0 && b->cmds.n < n->max_batch) {
        size_t add = framed_len(n->proposals.head->len);
        if (b->cmds.n > 0 && size + add > n->max_entry_bytes) {
            break;
        }
        size += add;
        cons_list_push(&b->cmds, cons_list_pop(&n->proposals));
    }

    unsigned char* buf = raft_malloc(size);
    if (buf == NULL) {
        cons_complete_all(n, &b->cmds, -ENOMEM);
        free(b);
        return;
    }
    put32(buf, CONS_ENTRY_MAGIC);
    put32(buf + 4, (uint32_t)b->cmds.n);
    size_t off = CONS_ENTRY_HDR;
    for (struct cons_cmd* c = b->cmds.head; c != NULL; c = c->next) {
        size_t fl = framed_len(c->len);
        put32(buf + off, (uint32_t)c->len);
        if (c->len > 0) {
            memcpy(buf + off + 4, c->data, c->len);
        }
        memset(buf + off + 4 + c->len, 0, fl - 4 - c->len);
        off += fl;
        free(c->data);
        c->data = NULL;
        c->status = -EBADMSG; /* until the adapter sets this command's result */
        c->result = NULL;
    }

    /* Linked before raft_apply so that the adapter finds it whatever the
     * backend does synchronously. */
    b->prev = n->inflight_tail;
    if (n->inflight_tail != NULL) {
        n->inflight_tail->next = b;
    } else {
        n->inflight_head = b;
    }
    n->inflight_tail = b;

    struct raft_buffer rb = {.base = buf, .len = size};
    int rv = raft_apply(&n->raft, &b->req, &rb, 1, batch_cb);
    if (rv != 0) {
        inflight_unlink(n, b);
        /* NOTLEADER: the buffer is still ours. Other failures (no memory
         * while appending, or the append itself failing) are ambiguous in
         * 0.15 - the latter frees it - so we leave it rather than risk a
         * double free. */
        if (rv == RAFT_NOTLEADER) {
            raft_free(buf);
        }
        cons_disk_write_done(n, rv);
        cons_complete_all(n, &b->cmds, cons_disk_status(n, rv));
        free(b);
    }
}

static void bar_cb(struct raft_barrier* req, int status)
{
    struct cons_bar* b = req->data;
    cons_disk_write_done(b->node, status);
    cons_complete_all(b->node, &b->waiters, cons_disk_status(b->node, status));
    free(b);
}

static void flush_barriers(struct cons_node* n)
{
    if (n->barriers.n == 0) {
        return;
    }
    if (!cons_is_ready(n)) {
        cons_complete_all(n, &n->barriers, not_ready_error(n));
        return;
    }
    struct cons_bar* b = calloc(1, sizeof *b);
    if (b == NULL) {
        return;
    }
    b->node = n;
    b->req.data = b;
    cons_list_init(&b->waiters);
    cons_list_append(&b->waiters, &n->barriers);
    int rv = raft_barrier(&n->raft, &b->req, bar_cb);
    if (rv != 0) {
        cons_complete_all(n, &b->waiters, cons_err(rv));
        free(b);
    }
}

void cons_work_cb(uv_idle_t* h)
{
    struct cons_node* n = h->data;
    cons_dispatch(n);
    if (n->closing) {
        cons_complete_all(n, &n->proposals, -ESHUTDOWN);
        cons_complete_all(n, &n->barriers, -ESHUTDOWN);
    } else {
        flush_proposals(n);
        flush_barriers(n);
    }
    cons_dispatch(n); /* failures found while flushing */
    if (n->check_change && !n->closing) {
        n->check_change = false;
        cons_check_change(n);
    }
    if (n->proposals.n == 0 && n->barriers.n == 0 && n->done.n == 0) {
        uv_idle_stop(h);
    }
}

/* ------------------------------------------------------------------ */
/* public: propose / barrier */

int cons_propose(struct cons_node* n, const void* buf, size_t len, cons_cb cb, void* arg)
{
    if (n == NULL || n->closing) {
        return -ESHUTDOWN;
    }
    if (len > CONS_MAX_COMMAND || len > UINT32_MAX) {
        return -EMSGSIZE;
    }
    if (buf == NULL && len > 0) {
        return -EINVAL;
    }
    if (!cons_is_ready(n)) {
        return not_ready_error(n);
    }
    struct cons_cmd* c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->data = malloc(len > 0 ? len : 1);
    if (c->data == NULL) {
        free(c);
        return -ENOMEM;
    }
    if (len > 0) {
        memcpy(c->data, buf, len);
    }
    c->len = len;
    c->cb = cb;
    c->arg = arg;
    cons_list_push(&n->proposals, c);
    cons_kick(n);
    return 0;
}

int cons_barrier(struct cons_node* n, cons_cb cb, void* arg)
{
    if (n == NULL || n->closing) {
        return -ESHUTDOWN;
    }
    if (!cons_is_ready(n)) {
        return not_ready_error(n);
    }
    struct cons_cmd* c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->cb = cb;
    c->arg = arg;
    cons_list_push(&n->barriers, c);
    cons_kick(n);
    return 0;
}

/* ------------------------------------------------------------------ */
/* raft fsm adapters (version 1: libraft frees snapshot buffers) */

int cons_entry_open(struct cons_entry_iter* it, const void* buf, size_t size, const char** why)
{
    memset(it, 0, sizeof *it);
    const unsigned char* p = buf;
    if (p == NULL || size < CONS_ENTRY_HDR || get32(p) != CONS_ENTRY_MAGIC) {
        *why = "not a consensus entry";
        return -EBADMSG;
    }
    uint32_t count = get32(p + 4);
    /* each command takes at least 8 bytes (length word, padding) */
    if ((size_t)count > (size - CONS_ENTRY_HDR) / 8) {
        *why = "more commands than can fit in the entry";
        return -EBADMSG;
    }
    it->p = p;
    it->size = size;
    it->off = CONS_ENTRY_HDR;
    it->count = count;
    return 0;
}

int cons_entry_next(struct cons_entry_iter* it, const void** cmd, size_t* len, const char** why)
{
    if (it->i == it->count) {
        return 0;
    }
    if (it->size - it->off < 4) {
        *why = "truncated before a command";
        it->count = it->i;
        return -EBADMSG;
    }
    size_t l = get32(it->p + it->off);
    if (l > it->size - it->off - 4) {
        *why = "a command length overruns the entry";
        it->count = it->i;
        return -EBADMSG;
    }
    *cmd = it->p + it->off + 4;
    *len = l;
    /* the last command's padding may be missing: tolerated */
    it->off += framed_len(l) <= it->size - it->off ? framed_len(l) : it->size - it->off;
    it->i++;
    return 1;
}

/* The in-flight batch whose entry sits at index, if we proposed it. */
static struct cons_batch* inflight_find(struct cons_node* n, raft_index index)
{
    for (struct cons_batch* b = n->inflight_head; b != NULL; b = b->next) {
        if (b->req.index == index) {
            return b;
        }
        if (b->req.index > index) {
            break;
        }
    }
    return NULL;
}

static void drop_result(struct cons_node* n, void* res)
{
    if (res != NULL && n->fsm.free_result != NULL) {
        n->fsm.free_result(n->fsm.data, res);
    }
}

static int fsm_apply(struct raft_fsm* f, const struct raft_buffer* rbuf, void** result)
{
    struct cons_node* n = f->data;
    /* libraft applies index last_applied + 1 and only then moves
     * last_applied on (replicationApply, 0.15). */
    raft_index index = n->raft.last_applied + 1;
    struct cons_batch* b = raft_state(&n->raft) == RAFT_LEADER ? inflight_find(n, index) : NULL;
    struct cons_cmd* c = b != NULL ? b->cmds.head : NULL;
    *result = NULL;
    if (b != NULL) {
        b->applied = true;
    }

    struct cons_entry_iter it;
    const char* why = NULL;
    if (cons_entry_open(&it, rbuf->base, rbuf->len, &why) < 0) {
        cons_log(n, "entry %llu: %s (%zu bytes), skipped", index, why, rbuf->len);
        return 0; /* never fail: followers would diverge, the leader would stall */
    }
    const void* cmd;
    size_t len;
    int rv;
    while ((rv = cons_entry_next(&it, &cmd, &len, &why)) > 0) {
        void* res = n->fsm.apply(n->fsm.data, cmd, len);
        if (c != NULL) {
            c->status = 0;
            c->result = res;
            c = c->next;
        } else {
            drop_result(n, res);
        }
    }
    if (rv < 0) {
        cons_log(n, "entry %llu: command %u: %s, rest skipped", index, it.i, why);
    }
    if (b != NULL) {
        *result = b;
    }
    return 0;
}

static int fsm_snapshot(struct raft_fsm* f, struct raft_buffer* bufs[], unsigned* n_bufs)
{
    struct cons_node* n = f->data;
    void* data = NULL;
    size_t len = 0;
    int rv = n->fsm.snapshot(n->fsm.data, &data, &len);
    if (rv < 0) {
        free(data);
        cons_log(n, "fsm snapshot failed: %s", strerror(-rv));
        return rv == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    struct raft_buffer* b = raft_malloc(sizeof *b);
    size_t total = CONS_SNAP_HDR + pad8(len);
    unsigned char* base = b != NULL ? raft_malloc(total) : NULL;
    if (base == NULL) {
        raft_free(b);
        free(data);
        return RAFT_NOMEM;
    }
    put32(base, CONS_SNAP_MAGIC);
    put32(base + 4, 0);
    put64(base + 8, len);
    if (len > 0) {
        memcpy(base + CONS_SNAP_HDR, data, len);
    }
    memset(base + CONS_SNAP_HDR + len, 0, total - CONS_SNAP_HDR - len);
    free(data);
    b->base = base;
    b->len = total;
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm* f, struct raft_buffer* buf)
{
    struct cons_node* n = f->data;
    const unsigned char* p = buf->base;
    if (p == NULL || buf->len < CONS_SNAP_HDR || get32(p) != CONS_SNAP_MAGIC ||
        get64(p + 8) > buf->len - CONS_SNAP_HDR) {
        cons_log(n, "snapshot: bad header (%zu bytes)", buf->len);
        return RAFT_MALFORMED; /* libraft keeps (and frees) the buffer */
    }
    int rv = n->fsm.restore(n->fsm.data, p + CONS_SNAP_HDR, (size_t)get64(p + 8));
    if (rv < 0) {
        cons_log(n, "fsm restore failed: %s", strerror(-rv));
        return rv == -ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
    }
    /* On success the fsm owns the buffer (libraft 0.15 snapshotRestore). */
    raft_free(buf->base);
    return 0;
}

void cons_fsm_setup(struct cons_node* n)
{
    memset(&n->rfsm, 0, sizeof n->rfsm);
    n->rfsm.version = 1;
    n->rfsm.data = n;
    n->rfsm.apply = fsm_apply;
    n->rfsm.snapshot = fsm_snapshot;
    n->rfsm.restore = fsm_restore;
}
