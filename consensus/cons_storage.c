/* consensus: the data dir while the node runs (cons.h "Storage faults"):
 * free space sampled every second, failed log writes reported as what they
 * are, the commit watermark kept up, a leader low on space handing over and
 * one whose write failed stopping, the storage status, and a guard around
 * libraft's io close callback. Start-up checks are in cons_disk.c.
 *
 * Everything runs on the loop thread. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cons_int.h"
#include "nv_err.h"

#define WATERMARK_EVERY_MS 1000
#define SPACE_EVERY_MS 1000
#define READY_RETRY_MS 1000
#define HANDOVER_EVERY_MS 30000
#define CLOSE_QUIET_TICKS 5 /* 1 ms ticks without a close call from libraft */

/* ------------------------------------------------------------------ */
/* the commit watermark */

/* Record a higher committed index (never a lower one: a restarted member
 * learns the commit index late). */
static void wm_update(struct cons_node *n, bool force)
{
    struct cons_disk *d = &n->disk;
    bool self;
    unsigned voters = cons_disk_voters(n, &self);
    uint64_t c = cons_disk_durable_commit(n);
    if (!(c > d->wm_committed || (voters != d->wm_voters && voters > 0 && c > 0))) {
        return;
    }
    if (!force && uv_now(n->loop) < d->wm_next_ms) {
        return;
    }
    d->wm_next_ms = uv_now(n->loop) + WATERMARK_EVERY_MS;
    int rv = cons_disk_wm_write(n, c > d->wm_committed ? c : d->wm_committed, voters);
    if (rv < 0 && !d->wm_failing) {
        cons_log(n, "storage: write the commit watermark in %s: %s (tried again every second)",
                 d->dir, strerror(-rv));
    }
    d->wm_failing = rv < 0;
}

/* ------------------------------------------------------------------ */
/* running */

static void check_recovered(struct cons_node *n)
{
    struct cons_disk *d = &n->disk;
    for (size_t i = 0; i < d->n_faults; i++) {
        struct cons_log_fault *f = &d->faults[i];
        uint64_t upto = f->last_lost > f->first_lost ? f->last_lost : f->first_lost;
        if (f->recovered || f->accepted || upto == 0 || cons_disk_durable_commit(n) < upto) {
            continue;
        }
        f->recovered = true;
        cons_log(n, "storage: caught up: entries %" PRIu64 "..%" PRIu64 " (%s%s%s) are held again",
                 f->first_lost, upto, f->kind, f->file[0] ? " " : "", f->file);
    }
}

static void handover_cb(struct raft_transfer *req)
{
    struct cons_node *n = req->data;
    n->disk.handing_over = false;
    if (!n->closing && raft_state(&n->raft) != RAFT_LEADER) {
        cons_log(n, "storage: leadership handed over (data dir %s is low on space)", n->disk.dir);
    }
}

/* Low on space while leading others: let a voter with room lead before a
 * write of ours fails (cons.h). */
static void maybe_hand_over(struct cons_node *n)
{
    struct cons_disk *d = &n->disk;
    bool self;
    uint64_t now = uv_now(n->loop);
    if (!d->low || d->stop || d->handing_over || now < d->handover_next_ms ||
        raft_state(&n->raft) != RAFT_LEADER || cons_disk_voters(n, &self) < 2) {
        return;
    }
    d->handover_next_ms = now + HANDOVER_EVERY_MS;
    d->handover.data = n;
    int rv = raft_transfer(&n->raft, &d->handover, 0, handover_cb);
    char a[32], b[32];
    cons_log(n, "storage: data dir %s has %s free, less than one segment (%s): %s", d->dir,
             cons_disk_mib(d->free_bytes, a, sizeof a), cons_disk_mib(d->segment, b, sizeof b),
             rv == 0 ? "handing leadership to another member" : raft_strerror(rv));
    d->handing_over = rv == 0;
}

void cons_disk_poll(struct cons_node *n)
{
    struct cons_disk *d = &n->disk;
    uint64_t now = uv_now(n->loop);
    if (now >= d->space_next_ms) {
        d->space_next_ms = now + SPACE_EVERY_MS;
        cons_disk_sample_space(n);
    }
    maybe_hand_over(n);
    wm_update(n, false);
    check_recovered(n);
}

static bool storage_status(int raft_status)
{
    return raft_status == RAFT_NOSPACE || raft_status == RAFT_IOERR;
}

void cons_disk_write_done(struct cons_node *n, int raft_status)
{
    struct cons_disk *d = &n->disk;
    if (raft_status == 0) {
        if (d->error != 0) {
            cons_log(n, "storage: Raft log writes in %s work again", d->dir);
            cons_disk_sample_space(n);
        }
        d->error = 0;
        d->ready_retry_at = 0;
        return;
    }
    if (!storage_status(raft_status)) {
        return; /* leadership moved or shutting down: not the disk */
    }
    int err = cons_err(raft_status);
    char words[sizeof d->error_msg];
    snprintf(words, sizeof words, "%s", cons_disk_words(n));
    if (err != d->error || strcmp(words, d->error_msg) != 0) {
        cons_disk_sample_space(n);
        char a[32];
        cons_log(n, "storage: Raft log write failed in %s: %s (%s; %s free)", d->dir,
                 strerror(-err), words, cons_disk_mib(d->free_bytes, a, sizeof a));
    }
    d->error = err;
    snprintf(d->error_msg, sizeof d->error_msg, "%s", words);
    d->error_at = uv_now(n->loop);
    d->ready_retry_at = d->error_at + READY_RETRY_MS;
    bool self;
    if (!d->stop && raft_state(&n->raft) == RAFT_LEADER && cons_disk_voters(n, &self) > 1) {
        d->stop = true; /* cons.h: never append again; the owner closes us */
        cons_log(n,
                 "storage: this leader cannot write its Raft log (%s) and must not append "
                 "again: it stops so that another member leads",
                 strerror(-err));
        n->check_change = true; /* reported from the idle handle, outside libraft */
        cons_kick(n);
    }
}

int cons_disk_status(const struct cons_node *n, int raft_status)
{
    if (n->disk.stop && storage_status(raft_status)) {
        return -NV_ELEADERSHIPLOST; /* the followers may hold and commit it */
    }
    return cons_err(raft_status);
}

int cons_disk_blocked(const struct cons_node *n)
{
    if (n->disk.error == 0 || n->disk.stop || raft_state((struct raft *)&n->raft) != RAFT_LEADER) {
        return 0;
    }
    return cons_is_ready(n) ? 0 : n->disk.error;
}

bool cons_disk_may_retry_ready(const struct cons_node *n)
{
    return uv_now(n->loop) >= n->disk.ready_retry_at;
}

void cons_disk_close(struct cons_node *n)
{
    if (n->started && !n->raft_down) {
        wm_update(n, true);
    }
}

void cons_get_storage(const struct cons_node *n, struct cons_storage *out)
{
    memset(out, 0, sizeof *out);
    if (n == NULL) {
        return;
    }
    const struct cons_disk *d = &n->disk;
    out->free_bytes = d->free_bytes;
    out->segment_bytes = d->segment;
    out->needed_bytes = (uint64_t)CONS_OPEN_SEGMENTS * d->segment;
    out->low = d->low;
    out->error = d->error;
    if (d->error != 0) {
        snprintf(out->error_msg, sizeof out->error_msg, "%s", d->error_msg);
        uint64_t now = uv_now(n->loop);
        out->error_age_ms = now > d->error_at ? now - d->error_at : 0;
    }
    out->blocked = n->started && !n->raft_down && cons_disk_blocked(n) != 0;
    out->watermark = d->wm_committed;
    out->n_faults = d->n_faults;
    memcpy(out->faults, d->faults, sizeof out->faults);
}

/* ------------------------------------------------------------------ */
/* closing: libraft 0.15 tells "io closed" once per event after the last
 * condition it tracks is met (uvMaybeFireCloseCb), but it does not track a
 * segment writer that is still closing: when the writer's close callback
 * comes after the transport's (on tmpfs, where writes run in the
 * threadpool, it does), the io close callback fires twice. The second call
 * frees libraft's strings again and reads the freed io. So the callback
 * given to io->close is ours: each call restarts a short quiet period, and
 * libraft's own callback runs once, when no call came for
 * CLOSE_QUIET_TICKS loop iterations (a writer closes within two). */

static struct cons_node *node_of_io(struct raft_io *io)
{
    return (struct cons_node *)((char *)io - offsetof(struct cons_node, io));
}

static void quiet_timer_closed(uv_handle_t *h)
{
    struct cons_node *n = h->data;
    n->disk.close_fired = true;
    n->disk.io_close_cb(&n->io); /* libraft's: ends in cons.c's raft_closed_cb */
}

static void quiet_tick(uv_timer_t *t)
{
    struct cons_node *n = t->data;
    if (++n->disk.close_quiet >= CLOSE_QUIET_TICKS) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, quiet_timer_closed);
    }
}

static void io_closed_once(struct raft_io *io)
{
    struct cons_node *n = node_of_io(io);
    struct cons_disk *d = &n->disk;
    if (d->close_fired || uv_is_closing((uv_handle_t *)&d->close_timer)) {
        return;
    }
    d->close_quiet = 0;
    if (!d->close_armed) {
        d->close_armed = true;
        uv_timer_init(n->loop, &d->close_timer);
        d->close_timer.data = n;
        uv_timer_start(&d->close_timer, quiet_tick, 1, 1);
    }
}

static void io_close_guarded(struct raft_io *io, raft_io_close_cb cb)
{
    struct cons_node *n = node_of_io(io);
    n->disk.io_close_cb = cb;
    n->disk.io_close(io, io_closed_once);
}

void cons_disk_guard_close(struct cons_node *n)
{
    n->disk.io_close = n->io.close;
    n->io.close = io_close_guarded;
}
