/* failover: the decision and its actions (fo.h). fo__evaluate is the one
 * place that decides; acquire() and release() are the only places that
 * change what this node holds. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fo_int.h"
#include "nv.h"
#include "nv_err.h"
#include "sm.h"

#define ACTIVATE_RETRY_MS 200
#define GUARD_RESTART_MS 1000
#define PASSIVE_TIMEOUT_MS 5000

/* ---- small things ---- */

void fo__log(const struct fo *f, int level, const char *fmt, ...)
{
    if (f->ops.log == NULL) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    f->ops.log(f->ops.ctx, level, line);
}

uint64_t fo__now(const struct fo *f)
{
    return uv_now(f->loop);
}

const char *fo_status_name(enum fo_role role)
{
    return role == FO_ACTIVE ? "MASTER" : role == FO_SINGLE ? "SINGLE" : "BACKUP";
}

static const char *role_name(enum fo_role role)
{
    static const char *const names[] = {"SINGLE", "ACTIVE", "STANDBY", "WITNESS"};
    return (unsigned)role < 4 ? names[role] : "?";
}

bool fo__is_witness(const struct fo *f, uint64_t id)
{
    if (id == f->cfg.id) {
        return f->cfg.witness;
    }
    const char *k = nv_get_str(sm_cluster_node(f->cfg.sm, id), "kind");
    return k != NULL && strcmp(k, "witness") == 0;
}

unsigned fo__voters(const struct fo *f)
{
    unsigned n = 0;
    for (size_t i = 0; i < f->facts.n_members; i++) {
        n += f->facts.members[i].voter;
    }
    return n;
}

/* The data voters in ascending id order (at most max); returns the count. */
static unsigned data_voter_ids(const struct fo *f, uint64_t *ids, unsigned max)
{
    unsigned n = 0;
    for (size_t i = 0; i < f->facts.n_members; i++) {
        const struct fo_member *m = &f->facts.members[i];
        if (!m->voter || fo__is_witness(f, m->id)) {
            continue;
        }
        unsigned at = n < max ? n : max;
        while (at > 0 && ids[at - 1] > m->id) {
            if (at < max) {
                ids[at] = ids[at - 1];
            }
            at--;
        }
        if (at < max) {
            ids[at] = m->id;
        }
        n++;
    }
    return n;
}

unsigned fo_data_nodes(const struct fo *f, uint64_t *ids, unsigned max)
{
    return data_voter_ids(f, ids, max);
}

unsigned fo__data_voters(const struct fo *f)
{
    uint64_t ids[FO_MAX_MEMBERS];
    return data_voter_ids(f, ids, FO_MAX_MEMBERS);
}

static bool is_member(const struct fo *f)
{
    for (size_t i = 0; i < f->facts.n_members; i++) {
        if (f->facts.members[i].id == f->cfg.id) {
            return true;
        }
    }
    return false;
}

/* ---- acquire / release ---- */

static void render(struct fo *f)
{
    if (f->ops.render != NULL) {
        f->ops.render(f->ops.ctx);
    }
}

static void acquire(struct fo *f, const char *why)
{
    uint64_t t0 = uv_hrtime();
    f->serving = true;
    /* the guardian first: from here on a crash must still release */
    if (f->guard != NULL && f->shared) {
        fo_guard_arm(f->guard, f->lease_until);
    }
    unsigned failed = fo__vips_acquire(f);
    render(f); /* ports linked, namespaces enabled, ANA optimized */
    fo__announce_start(f);
    f->acquires++;
    nv_hist_add(&f->acquire_time, uv_hrtime() - t0);
    f->last_acquire_ms = (uv_hrtime() - t0) / 1000000;
    f->last_change_ms = fo__now(f);
    snprintf(f->last_why, sizeof f->last_why, "%s", why);
    fo__log(f, failed ? FO_LOG_ERROR : FO_LOG_INFO,
            "active: %s; %zu VIP(s)%s, rendered and announced in %" PRIu64 " ms", why,
            f->n_vips - failed, failed ? " (some failed: see failover.status)" : "",
            f->last_acquire_ms);
}

static void release(struct fo *f, const char *why)
{
    /* the addresses first: new packets stop at once; then the ports */
    fo__vips_release(f);
    f->serving = false;
    render(f);
    if (f->guard != NULL) {
        fo_guard_disarm(f->guard);
    }
    f->releases++;
    f->last_change_ms = fo__now(f);
    snprintf(f->last_why, sizeof f->last_why, "%s", why);
    fo__log(f, FO_LOG_INFO, "released the active role: %s", why);
}

/* ---- becoming active ---- */

static void activate_done(void *arg, int status)
{
    struct fo *f = arg;
    f->activate_busy = false;
    if (status < 0) {
        f->activate_retry_at = fo__now(f) + ACTIVATE_RETRY_MS;
        fo__log(f, FO_LOG_DEBUG, "failover.activate: %s", strerror(-status));
    }
    fo__evaluate(f);
}

struct activation {
    struct fo *f;
    uint64_t t0, term;
    void (*then)(void *arg, int status);
    void *arg;
};

/* The commit of failover.activate is also a lease grant (proposed at t0,
 * committed by a majority). */
static void activation_done(void *arg, int status)
{
    struct activation *a = arg;
    struct fo *f = a->f;
    f->pending--;
    if (!f->closing) {
        if (status == 0) {
            fo__lease_grant(f, a->t0, a->term);
        }
        a->then(a->arg, status);
    }
    free(a);
    fo__maybe_free(f);
}

static int propose_active(struct fo *f, uint64_t node, void (*then)(void *arg, int status),
                          void *arg)
{
    if (f->ops.propose == NULL) {
        return -ENOTSUP;
    }
    struct activation *a = malloc(sizeof *a);
    if (a == NULL) {
        return -ENOMEM;
    }
    *a = (struct activation){
        .f = f, .t0 = fo__now(f), .term = f->facts.term, .then = then, .arg = arg};
    struct nv *p = nv_arr();
    struct nv *m = nv_map();
    nv_set_int(m, "node", (int64_t)node);
    nv_set_int(m, "term", (int64_t)f->facts.term);
    nv_push(p, m);
    int rv = f->ops.propose(f->ops.ctx, "failover.activate", p, activation_done, a);
    if (rv < 0) {
        free(a);
        return rv;
    }
    f->pending++;
    return 0;
}

static void wait_cb(uv_timer_t *t)
{
    fo__evaluate(t->data);
}

static uint64_t takeover_delay(const struct fo *f)
{
    const struct nv *fo = nv_get(sm_cluster(f->cfg.sm), "failover");
    int64_t extra = nv_get_int(fo, "takeover_delay_ms", 0);
    return f->tm.delay_ms + (uint64_t)(extra > 0 ? extra : 0);
}

/* HA data node, ready leader: the steps to serving. Returns whether this
 * node may serve now. */
static bool ha_leader_may_serve(struct fo *f, uint64_t now)
{
    uint64_t active_term = 0;
    uint64_t active = sm_active_node(f->cfg.sm, &active_term);
    if (active != f->cfg.id || active_term != f->facts.term) {
        f->planned = false;
        if (!f->activate_busy && now >= f->activate_retry_at) {
            f->prev_active = active;
            if (propose_active(f, f->cfg.id, activate_done, f) == 0) {
                f->activate_busy = true;
            } else {
                f->activate_retry_at = now + ACTIVATE_RETRY_MS;
            }
        }
        return false;
    }
    /* "active := me" is committed in this term */
    bool takeover = f->prev_active != 0 && f->prev_active != f->cfg.id;
    if (!f->planned) {
        f->planned = true;
        f->acquire_at = now + (takeover ? takeover_delay(f) : 0);
        f->fence = FO_FENCE_IDLE;
        f->fence_failures = 0;
        f->fence_next_ms = 0;
    }
    if (now < f->acquire_at) {
        uv_timer_start(&f->wait_timer, wait_cb, f->acquire_at - now, 0);
        return false;
    }
    const char *fence = nv_get_str(nv_get(sm_cluster(f->cfg.sm), "failover"), "fence_command");
    if (fence == NULL && f->fence == FO_FENCE_FAILED) {
        /* the operator removed the fence command after it failed: the
         * takeover goes ahead, and so must disabled_reasons */
        f->fence = FO_FENCE_IDLE;
        f->fence_error[0] = '\0';
    }
    if (takeover && fence != NULL && f->fence != FO_FENCE_OK) {
        if (f->fence != FO_FENCE_RUNNING) {
            if (now < f->fence_next_ms) {
                uv_timer_start(&f->wait_timer, wait_cb, f->fence_next_ms - now, 0);
            } else {
                fo__fence_start(f, fence, f->prev_active);
            }
        }
        return false;
    }
    return true;
}

/* ---- witness hand-off ---- */

static void transfer_done(void *arg, int status)
{
    struct fo *f = arg;
    f->pending--;
    f->transfer_busy = false;
    if (status < 0 && !f->closing) {
        fo__log(f, FO_LOG_DEBUG, "leadership transfer: %s", strerror(-status));
    }
    fo__maybe_free(f);
}

/* A data voter that answered this leadership (it acknowledged everything
 * committed, the readiness barrier included), the next one after the last
 * tried; when none has answered yet, the next one anyway, so that a dead
 * candidate never blocks the hand-off. */
static uint64_t next_data_voter(const struct fo *f, uint64_t after, bool need_caught_up)
{
    uint64_t ids[FO_MAX_MEMBERS];
    unsigned n = data_voter_ids(f, ids, FO_MAX_MEMBERS);
    uint64_t first = 0;
    for (unsigned i = 0; i < n; i++) {
        bool ok = ids[i] != f->cfg.id;
        for (size_t k = 0; ok && need_caught_up && k < f->facts.n_members; k++) {
            if (f->facts.members[k].id == ids[i]) {
                ok = f->facts.members[k].caught_up;
            }
        }
        if (!ok) {
            continue;
        }
        if (ids[i] > after) {
            return ids[i];
        }
        if (first == 0) {
            first = ids[i];
        }
    }
    return first;
}

static void hand_off(struct fo *f)
{
    if (f->transfer_busy || f->ops.transfer == NULL) {
        return;
    }
    uint64_t to = next_data_voter(f, f->transfer_last, true);
    if (to == 0) {
        to = next_data_voter(f, f->transfer_last, false);
    }
    if (to == 0) {
        return;
    }
    f->transfer_last = to;
    if (f->ops.transfer(f->ops.ctx, to, transfer_done, f) == 0) {
        f->pending++;
        f->transfer_busy = true;
        fo__log(f, FO_LOG_INFO, "witness leader: handing leadership to node %" PRIu64, to);
    }
}

/* ---- planned switchover ---- */

static void passive_finish(struct fo *f, int status, const char *what)
{
    if (f->passive_done == NULL) {
        return;
    }
    void (*done)(void *, int, const char *) = f->passive_done;
    f->passive_done = NULL;
    done(f->passive_arg, status, what);
}

static void passive_transferred(void *arg, int status)
{
    struct fo *f = arg;
    f->pending--;
    if (f->closing) {
        fo__maybe_free(f);
        return;
    }
    if (status < 0) {
        f->passive = false; /* still the leader: may become active again */
        passive_finish(f, status, "leadership transfer");
        fo__evaluate(f);
        return;
    }
    fo__log(f, FO_LOG_INFO, "planned switchover: node %" PRIu64 " leads now", f->passive_target);
    passive_finish(f, 0, NULL);
}

static void passive_released(void *arg, int status)
{
    struct fo *f = arg;
    if (status == 0) {
        status = f->ops.transfer != NULL
                     ? f->ops.transfer(f->ops.ctx, f->passive_target, passive_transferred, f)
                     : -ENOTSUP;
        if (status == 0) {
            f->pending++;
            return;
        }
    }
    f->passive = false;
    passive_finish(f, status, "planned switchover");
    fo__evaluate(f);
}

int fo_become_passive(struct fo *f, uint64_t target,
                      void (*done)(void *arg, int status, const char *what), void *arg,
                      struct nv_err *err)
{
    if (f->role != FO_ACTIVE || f->passive) {
        nv_err_call(err, EINVAL, "%s",
                    f->passive ? "A planned switchover is already in progress"
                               : "This node is not the active controller");
        return -EINVAL;
    }
    uint64_t to = 0;
    if (target != 0) {
        uint64_t ids[FO_MAX_MEMBERS];
        unsigned n = data_voter_ids(f, ids, FO_MAX_MEMBERS);
        for (unsigned i = 0; i < n; i++) {
            if (ids[i] == target && target != f->cfg.id) {
                to = target;
            }
        }
    } else {
        to = next_data_voter(f, f->cfg.id, true);
        if (to == 0) {
            to = next_data_voter(f, f->cfg.id, false);
        }
    }
    if (to == 0) {
        if (target != 0) {
            nv_err_add(err, "failover_become_passive.node", EINVAL,
                       "Node %" PRIu64 " is not another data node that votes", target);
        } else {
            nv_err_call(err, EINVAL, "There is no other data node to become active");
        }
        return -EINVAL;
    }
    f->passive = true;
    f->passive_target = to;
    f->passive_since = fo__now(f);
    f->passive_done = done;
    f->passive_arg = arg;
    /* release first, so the new active needs no delay: unlinked, VIPs
     * gone, ANA inaccessible before anyone else may acquire */
    char why[96];
    snprintf(why, sizeof why, "planned switchover to node %" PRIu64, to);
    release(f, why);
    f->role = FO_STANDBY;
    if (f->ops.changed != NULL) {
        f->ops.changed(f->ops.ctx);
    }
    int rv = propose_active(f, 0, passive_released, f);
    if (rv < 0) {
        f->passive = false;
        f->passive_done = NULL;
        fo__evaluate(f);
        nv_err_call(err, -rv, "release the active role: %s", strerror(-rv));
        return rv;
    }
    return 0;
}

/* ---- the decision ---- */

/* Keep serving while the lease is valid; start only on a lease with at
 * least half of it left. A node whose barriers commit just inside the
 * lease (a stalled disk or CPU) would otherwise take the role, lose it a
 * moment later and take it again: each flap moves the VIP and costs the
 * hosts a reconnect. */
static bool lease_ok(const struct fo *f)
{
    if (f->serving) {
        return fo__lease_valid(f);
    }
    return fo__lease_valid(f) && f->lease_until - fo__now(f) >= f->tm.lease_ms / 2;
}

void fo__evaluate(struct fo *f)
{
    if (f->closing || !f->have_facts) {
        return;
    }
    uint64_t now = fo__now(f);
    bool leader = f->facts.leader && f->facts.ready;
    unsigned voters = fo__voters(f);
    unsigned dv = fo__data_voters(f);
    bool member = is_member(f);
    if (!leader) {
        fo__lease_drop(f);
        f->planned = false;
    }
    /* No renewals during a planned switchover: the node has released, and
     * libraft hands over only once the target holds the leader's last
     * entry, which a barrier every lease/3 can keep out of reach on a slow
     * follower (seen in 1 of 5 switchovers on emulated guests). */
    fo__lease_run(f, leader && voters > 1 && !f->cfg.witness && !f->passive);
    fo__vips_refresh(f);
    if (f->passive && (!leader || now > f->passive_since + PASSIVE_TIMEOUT_MS)) {
        if (leader) {
            passive_finish(f, -ETIMEDOUT, "planned switchover");
        }
        f->passive = false;
    }

    enum fo_role role;
    bool serve = false;
    const char *why = "";
    if (f->cfg.witness) {
        role = FO_WITNESS;
        if (leader && dv > 0) {
            hand_off(f);
        }
    } else if (f->facts.n_members == 0) {
        role = FO_STANDBY; /* Raft has not started (or this node not joined) yet */
    } else if (dv < 2) {
        role = FO_SINGLE;
        /* nobody could take over; with other voters (a witness) the lease
         * still decides, a lone voter always leads */
        bool guarded = f->guard != NULL || f->cfg.no_guardian;
        serve = member && (voters == 1 || (leader && lease_ok(f) && guarded));
        why = "the only data node";
    } else {
        role = FO_STANDBY;
        if (leader && !f->passive && ha_leader_may_serve(f, now)) {
            serve = lease_ok(f) && (f->guard != NULL || f->cfg.no_guardian);
            why = f->prev_active != 0 && f->prev_active != f->cfg.id ? "took over" : "elected";
        }
    }
    if (serve && !f->serving) {
        char text[96];
        if (f->prev_active != 0 && f->prev_active != f->cfg.id && role != FO_SINGLE) {
            snprintf(text, sizeof text, "took over from node %" PRIu64 " in term %" PRIu64,
                     f->prev_active, f->facts.term);
        } else {
            snprintf(text, sizeof text, "%s (term %" PRIu64 ")", why, f->facts.term);
        }
        acquire(f, text);
    } else if (!serve && f->serving) {
        release(f, !leader               ? "no longer the leader"
                   : !fo__lease_valid(f) ? "lease expired"
                   : f->passive          ? "planned switchover"
                   : f->guard == NULL    ? "no guardian"
                                         : "not the active node");
    }
    fo__vips_retry(f);
    if (role == FO_STANDBY && f->serving) {
        role = FO_ACTIVE;
    }
    if (role != f->role) {
        fo__log(f, FO_LOG_INFO, "role: %s", role_name(role));
        f->role = role;
        render(f);
        if (f->ops.changed != NULL) {
            f->ops.changed(f->ops.ctx);
        }
    }
}

void fo_get_stats(const struct fo *f, struct fo_stats *st)
{
    *st = (struct fo_stats){.role = f->role,
                            .serving = f->serving,
                            .acquires = f->acquires,
                            .releases = f->releases,
                            .acquire_time = f->acquire_time,
                            .fence_ok = f->fence_ok,
                            .fence_failed = f->fence_failed};
}

/* Whether ANA is on anywhere (global or a subsystem): a scan of the
 * subsystems, once per change of the configuration (fo_update), not per
 * render. */
static bool ana_anywhere(const struct sm_state *s)
{
    if (nv_get_bool(sm_global_row(s), "ana", false)) {
        return true;
    }
    return sm_ana_subsystems(s) > 0;
}

void fo_update(struct fo *f, const struct fo_facts *facts)
{
    if (f->closing) {
        return;
    }
    f->facts = *facts;
    if (f->facts.n_members > FO_MAX_MEMBERS) {
        f->facts.n_members = FO_MAX_MEMBERS;
    }
    f->have_facts = true;
    uint64_t gen = sm_generation(f->cfg.sm) + 1;
    if (gen != f->ana_gen) {
        f->ana_any = ana_anywhere(f->cfg.sm);
        f->ana_gen = gen;
    }
    fo__evaluate(f);
}

/* ---- the guardian ---- */

static void guard_restart_cb(uv_timer_t *t);

/* The guardian released at a deadline that passed while this node's
 * renewal was on its way (a stall longer than the margin). If the node
 * serves under that newer lease, the release took away what it holds:
 * the VIPs (which the monitor would also notice) and the port links or
 * ANA states (which nothing else would until the next sweep). */
static void guardian_released(struct fo *f)
{
    if (!f->serving) {
        return;
    }
    fo__log(f, FO_LOG_ERROR, "the guardian released at a deadline the renewal missed; "
                             "this node holds a newer lease: restoring");
    fo__vips_acquire(f);
    if (f->ops.repair != NULL) {
        f->ops.repair(f->ops.ctx);
    } else {
        render(f);
    }
}

static void guard_event(uv_poll_t *p, int status, int events)
{
    (void)status, (void)events;
    struct fo *f = p->data;
    if (f->guard == NULL) {
        return;
    }
    if (fo_guard_released(f->guard) > 0) {
        guardian_released(f);
    }
    if (fo_guard_alive(f->guard)) {
        return;
    }
    fo__log(f, FO_LOG_ERROR, "the guardian process (pid %d) died", (int)fo_guard_pid(f->guard));
    uv_poll_stop(p);
    uv_close((uv_handle_t *)p, NULL);
    f->guard_polling = false;
    fo_guard_stop(f->guard);
    f->guard = NULL;
    fo__evaluate(f); /* no guardian: an HA node must not hold */
    uv_timer_start(&f->guard_timer, guard_restart_cb, GUARD_RESTART_MS, 0);
}

static int guard_start(struct fo *f, char *msg, size_t msglen)
{
    struct fo_guard_config gc = {.node_id = f->cfg.id, .configfs = f->cfg.configfs};
    int rv = fo_guard_start(&gc, &f->guard, msg, msglen);
    if (rv < 0) {
        f->guard = NULL;
        return rv;
    }
    fo_guard_set_vips(f->guard, f->vips, f->n_vips);
    uv_poll_init(f->loop, &f->guard_poll, fo_guard_fd(f->guard));
    f->guard_poll.data = f;
    uv_poll_start(&f->guard_poll, UV_READABLE | UV_DISCONNECT, guard_event);
    f->guard_polling = true;
    return 0;
}

static void guard_restart_cb(uv_timer_t *t)
{
    struct fo *f = t->data;
    if (f->closing || f->guard != NULL) {
        return;
    }
    char msg[200];
    if (guard_start(f, msg, sizeof msg) < 0) {
        fo__log(f, FO_LOG_ERROR, "restart the guardian: %s", msg);
        uv_timer_start(&f->guard_timer, guard_restart_cb, GUARD_RESTART_MS, 0);
        return;
    }
    fo__log(f, FO_LOG_INFO, "guardian restarted (pid %d)", (int)fo_guard_pid(f->guard));
    fo__evaluate(f);
}

/* ---- status ---- */

static const char *const reason_names[] = {
#define FO_REASON_NAME(name, text) #name,
    FO_REASONS(FO_REASON_NAME)};
static const char *const reason_texts[] = {
#define FO_REASON_TEXT(name, text) text,
    FO_REASONS(FO_REASON_TEXT)};

static void add_reason(struct nv *names, struct nv *details, enum fo_reason r)
{
    nv_push(names, nv_str(reason_names[r]));
    nv_set_str(details, reason_names[r], reason_texts[r]);
}

struct nv *fo_status(const struct fo *f)
{
    struct nv *o = nv_map();
    nv_set_str(o, "status", fo_status_name(f->role));
    uint64_t ids[FO_MAX_MEMBERS];
    unsigned dv = data_voter_ids(f, ids, FO_MAX_MEMBERS);
    const char *letter = "MANUAL";
    static const char *const letters[] = {"A", "B", "C", "D", "E", "F", "G", "H"};
    for (unsigned i = 0; dv >= 2 && i < dv && i < 8; i++) {
        if (ids[i] == f->cfg.id) {
            letter = letters[i];
        }
    }
    nv_set_str(o, "node", letter);
    nv_set_str(o, "role", role_name(f->role));
    uint64_t term = 0, active = sm_active_node(f->cfg.sm, &term);
    nv_set(o, "active_node", active ? nv_int((int64_t)active) : nv_nil());
    nv_set_int(o, "active_term", (int64_t)term);
    nv_set(o, "leader", f->facts.leader_id ? nv_int((int64_t)f->facts.leader_id) : nv_nil());
    nv_set_int(o, "data_voters", dv);
    struct nv *reasons = nv_arr(), *details = nv_map();
    if (f->facts.leader_id == 0) {
        add_reason(reasons, details, FO_R_NO_QUORUM);
    }
    if (dv < 2) {
        add_reason(reasons, details, FO_R_NO_DATA_PEER);
    }
    if (f->cfg.witness) {
        add_reason(reasons, details, FO_R_WITNESS);
    } else if (f->guard == NULL && !f->cfg.no_guardian) {
        add_reason(reasons, details, FO_R_NO_GUARDIAN);
    }
    if (f->fence == FO_FENCE_FAILED) {
        add_reason(reasons, details, FO_R_FENCE_FAILED);
    }
    if (f->vip_error[0] != '\0') {
        add_reason(reasons, details, FO_R_VIP_FAILED);
    }
    nv_set(o, "disabled_reasons", reasons);
    nv_set(o, "disabled_details", details);
    struct nv *lease = nv_map();
    nv_set_int(lease, "election_timeout_ms", f->tm.election_ms);
    nv_set_int(lease, "lease_ms", f->tm.lease_ms);
    nv_set_int(lease, "margin_ms", f->tm.margin_ms);
    nv_set_int(lease, "renew_ms", f->tm.renew_ms);
    nv_set_int(lease, "takeover_delay_ms", (int64_t)takeover_delay(f));
    uint64_t now = fo__now(f);
    nv_set_int(lease, "left_ms", fo__lease_valid(f) ? (int64_t)(f->lease_until - now) : (int64_t)0);
    nv_set_int(lease, "expiries", (int64_t)f->lease_expiries);
    nv_set(o, "lease", lease);
    struct nv *vips = nv_arr();
    for (size_t i = 0; i < f->n_vips; i++) {
        struct nv *v = nv_map();
        nv_set_str(v, "vip", f->vips[i].text);
        nv_set_bool(v, "held", f->held[i]);
        nv_push(vips, v);
    }
    nv_set(o, "vips", vips);
    if (f->vip_error[0] != '\0') {
        nv_set_str(o, "vip_error", f->vip_error);
    }
    static const char *const fence_names[] = {"idle", "running", "ok", "failed"};
    struct nv *fence = nv_map();
    nv_set_str(fence, "state", fence_names[f->fence]);
    nv_set(fence, "error", f->fence_error[0] ? nv_str(f->fence_error) : nv_nil());
    nv_set(o, "fence", fence);
    nv_set(o, "guardian_pid",
           f->guard != NULL ? nv_int((int64_t)fo_guard_pid(f->guard)) : nv_nil());
    struct nv *last = nv_map();
    nv_set_str(last, "why", f->last_why);
    nv_set_int(last, "ms_ago", f->last_change_ms ? (int64_t)(now - f->last_change_ms) : -1);
    nv_set_int(last, "acquire_ms", (int64_t)f->last_acquire_ms);
    nv_set(o, "last_change", last);
    nv_set_int(o, "acquires", (int64_t)f->acquires);
    nv_set_int(o, "releases", (int64_t)f->releases);
    nv_set_int(o, "vips_restored", (int64_t)f->restored);
    return o;
}

/* ---- the view ---- */

enum fo_role fo_role(const struct fo *f)
{
    return f->role;
}

struct tgt_view fo_view(const struct fo *f)
{
    struct tgt_view v = {.empty = f->cfg.witness, .active = f->serving, .node_id = f->cfg.id};
    if (v.active && f->shared) {
        /* a render that runs before the lease timer (after a stop, a sweep
         * due long ago comes first) must not link what the guardian
         * unlinked: the lease on a fresh clock decides */
        uv_update_time(f->loop);
        v.active = fo__lease_valid(f);
    }
    uint64_t ids[FO_MAX_MEMBERS];
    unsigned dv = data_voter_ids(f, ids, FO_MAX_MEMBERS);
    v.ha = dv >= 2;
    /* ANA splits groups and controller ids per data node; in IP takeover
     * the data nodes' trees stay identical */
    if (v.ha && !f->cfg.witness && f->ana_any) {
        for (unsigned i = 0; i < dv && i < TGT_MAX_SLOTS; i++) {
            v.slot_ids[i] = ids[i];
            if (ids[i] == f->cfg.id) {
                v.node_slot = i + 1;
            }
        }
        v.n_slots = dv < TGT_MAX_SLOTS ? dv : TGT_MAX_SLOTS;
    }
    return v;
}

/* ---- lifecycle ---- */

int fo_open(uv_loop_t *loop, const struct fo_config *cfg, const struct fo_ops *ops, struct fo **out,
            char *msg, size_t msglen)
{
    struct fo *f = calloc(1, sizeof *f);
    if (f == NULL) {
        snprintf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    f->loop = loop;
    f->cfg = *cfg;
    f->cfg.configfs = cfg->configfs ? strdup(cfg->configfs) : NULL;
    f->cfg.data_dir = cfg->data_dir ? strdup(cfg->data_dir) : NULL;
    f->ops = *ops;
    f->tm = fo__timing(cfg->election_timeout_ms, cfg->heartbeat_ms);
    f->role = cfg->witness ? FO_WITNESS : FO_STANDBY;
    fo__lease_init(f);
    uv_timer_init(loop, &f->wait_timer);
    f->wait_timer.data = f;
    uv_timer_init(loop, &f->fence_timer);
    f->fence_timer.data = f;
    uv_timer_init(loop, &f->guard_timer);
    f->guard_timer.data = f;
    *out = f;
    int rv = fo__vips_open(f, msg, msglen);
    if (rv < 0) {
        return rv;
    }
    if (cfg->witness) {
        return 0;
    }
    /* before anything else: this node holds nothing now */
    fo__vips_startup(f);
    if (!cfg->no_guardian) {
        rv = guard_start(f, msg, msglen);
        if (rv < 0) {
            return rv;
        }
    }
    return 0;
}

static void closed_one(struct fo *f)
{
    f->closing_handles--;
    fo__maybe_free(f);
}

/* Freed once every handle is closed and every callback of a capability
 * (propose, barrier, transfer) came back: the node's consensus answers
 * them while it closes. */
void fo__maybe_free(struct fo *f)
{
    if (!f->closing || f->closing_handles > 0 || f->pending > 0) {
        return;
    }
    if (f->mon_fd >= 0) {
        close(f->mon_fd);
    }
    fo_nl_close(f->nl);
    fo_ann_close(f->ann);
    void (*done)(void *) = f->close_done;
    void *arg = f->close_arg;
    free((char *)f->cfg.configfs);
    free((char *)f->cfg.data_dir);
    free(f);
    if (done != NULL) {
        done(arg);
    }
}

void fo__closed(uv_handle_t *h)
{
    closed_one(h->data);
}

void fo_close(struct fo *f, void (*done)(void *arg), void *arg)
{
    if (f == NULL || f->closing) {
        return;
    }
    /* an HA node that stops lets another take over; a node that cannot
     * be replaced keeps the kernel serving across its restart */
    if (f->serving && f->shared) {
        release(f, "stopping");
    }
    passive_finish(f, -ESHUTDOWN, "planned switchover");
    f->closing = true;
    f->close_done = done;
    f->close_arg = arg;
    if (f->guard_polling) {
        uv_poll_stop(&f->guard_poll); /* before its descriptor closes */
    }
    if (f->guard != NULL) {
        fo_guard_stop(f->guard);
        f->guard = NULL;
    }
    uv_handle_t *hs[] = {(uv_handle_t *)&f->renew_timer, (uv_handle_t *)&f->expiry_timer,
                         (uv_handle_t *)&f->wait_timer, (uv_handle_t *)&f->guard_timer};
    f->closing_handles = 1; /* held until every close below is issued */
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        hs[i]->data = f;
        f->closing_handles++;
        uv_close(hs[i], fo__closed);
    }
    if (f->guard_polling) {
        f->closing_handles++;
        uv_close((uv_handle_t *)&f->guard_poll, fo__closed);
    }
    f->closing_handles += f->mon_fd >= 0 ? 2 : 1;
    fo__vips_close(f, fo__closed);
    fo__fence_close(f); /* counts its own handles */
    closed_one(f);      /* drop the hold */
}
