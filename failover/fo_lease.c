/* The active's lease (fo.h "Why no two nodes are ever active").
 *
 * While this node leads a cluster of more than one voter it commits a
 * Raft barrier every renew_ms. A barrier proposed at t0 and committed
 * proves that a majority received an AppendEntries sent after t0; each of
 * them restarted its election timer then and refuses votes while it knows
 * a leader, for at least one election timeout (libraft's randomized
 * timeout lies in [ET, 2 ET) and is only checked at ticks: both only
 * lengthen it). So no other leader can exist before t0 + ET, and the
 * lease ends at t0 + lease_ms, margin_ms earlier: time for the old active
 * (or its guardian) to have dropped everything.
 *
 * t0 is uv_now() when the barrier is asked for: the loop's cached time,
 * never later than the real time the entry reaches libraft, so the lease
 * errs short. The followers' side errs the same way: libraft stamps an
 * AppendEntries with the loop time of the iteration that read it, at most
 * one loop iteration early; the margin covers that too. */
#include <inttypes.h>
#include <stdlib.h>

#include "fo_int.h"

#define MIN_MARGIN_MS 40u
#define MAX_RENEWALS_IN_FLIGHT 4u

struct fo_timing fo__timing(unsigned election_ms, unsigned heartbeat_ms)
{
    struct fo_timing t = {.election_ms = election_ms ? election_ms : 1000};
    unsigned hb = heartbeat_ms ? heartbeat_ms : t.election_ms / 10;
    /* A quarter of the election timeout, at least two ticks and 40 ms:
     * the follower-side stamp error (one loop iteration) plus the time to
     * drop the addresses and unlink the ports (a few ms) with room for a
     * loaded machine. */
    t.margin_ms = t.election_ms / 4;
    if (t.margin_ms < 2 * hb) {
        t.margin_ms = 2 * hb;
    }
    if (t.margin_ms < MIN_MARGIN_MS) {
        t.margin_ms = MIN_MARGIN_MS;
    }
    if (t.margin_ms >= t.election_ms) {
        t.margin_ms = t.election_ms / 2;
    }
    t.lease_ms = t.election_ms - t.margin_ms;
    /* three renewals per lease: one slow commit does not end it */
    t.renew_ms = t.lease_ms / 3 ? t.lease_ms / 3 : 1;
    unsigned need = t.lease_ms + t.margin_ms;
    t.delay_ms = need > t.election_ms ? need - t.election_ms : 0;
    return t;
}

struct renewal {
    struct fo *f;
    uint64_t t0;
    uint64_t term;
};

static void expiry_cb(uv_timer_t *t)
{
    struct fo *f = t->data;
    if (f->serving && !fo__lease_valid(f)) {
        f->lease_expiries++;
        fo__log(f, FO_LOG_ERROR,
                "lease expired: no quorum acknowledged this node for %u ms; releasing",
                f->tm.lease_ms);
    }
    fo__evaluate(f);
}

static void renewed(void *arg, int status)
{
    struct renewal *r = arg;
    struct fo *f = r->f;
    f->renewals_in_flight--;
    f->pending--;
    if (status == 0 && !f->closing) {
        fo__lease_grant(f, r->t0, r->term);
    }
    free(r);
    if (!f->closing) {
        fo__evaluate(f);
    }
    fo__maybe_free(f);
}

static void renew_cb(uv_timer_t *t)
{
    struct fo *f = t->data;
    if (f->closing || f->renewals_in_flight >= MAX_RENEWALS_IN_FLIGHT || f->ops.barrier == NULL) {
        return;
    }
    struct renewal *r = malloc(sizeof *r);
    if (r == NULL) {
        return;
    }
    *r = (struct renewal){.f = f, .t0 = fo__now(f), .term = f->facts.term};
    if (f->ops.barrier(f->ops.ctx, renewed, r) < 0) {
        free(r);
        return;
    }
    f->renewals_in_flight++;
    f->pending++;
}

void fo__lease_init(struct fo *f)
{
    uv_timer_init(f->loop, &f->renew_timer);
    f->renew_timer.data = f;
    uv_timer_init(f->loop, &f->expiry_timer);
    f->expiry_timer.data = f;
}

void fo__lease_run(struct fo *f, bool on)
{
    bool active = uv_is_active((uv_handle_t *)&f->renew_timer);
    if (on && !active) {
        uv_timer_start(&f->renew_timer, renew_cb, 0, f->tm.renew_ms);
    } else if (!on && active) {
        uv_timer_stop(&f->renew_timer);
    }
}

void fo__lease_grant(struct fo *f, uint64_t t0, uint64_t term)
{
    /* Only a commit of the current leadership counts: a barrier of an
     * earlier term proves nothing about the voters of this one. */
    if (!f->facts.leader || term != f->facts.term) {
        return;
    }
    if (f->lease_term != term) {
        f->lease_until = 0;
        f->lease_term = term;
    }
    uint64_t until = t0 + f->tm.lease_ms;
    if (until <= f->lease_until) {
        return;
    }
    f->lease_until = until;
    uint64_t now = fo__now(f);
    uv_timer_start(&f->expiry_timer, expiry_cb, until > now ? until - now : 0, 0);
    if (f->serving && f->guard != NULL) {
        fo_guard_arm(f->guard, f->lease_until);
    }
}

bool fo__lease_valid(const struct fo *f)
{
    return f->lease_until != 0 && f->lease_term == f->facts.term && f->facts.leader &&
           fo__now(f) < f->lease_until;
}

void fo__lease_drop(struct fo *f)
{
    f->lease_until = 0;
    f->lease_term = 0;
    uv_timer_stop(&f->expiry_timer);
}
