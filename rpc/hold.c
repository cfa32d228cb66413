/* Calls waiting for a leader (methods_int.h "hold.c").
 *
 * A parked call keeps its struct rpc_call (so it stays in flight on its
 * connection and counts against the server's per-connection limit), its
 * req (method, session key: strings owned by the call) and its params
 * (borrowed from the call: valid until it is answered). While anything is
 * parked a timer polls the node every HOLD_POLL_MS; at each tick a call is
 *   - answered (the reply is dropped) if its client is gone, or
 *     rpc_methods_free began (hold_close);
 *   - answered its error once its hold timeout has passed;
 *   - run again through methods_run once the node is the ready leader or
 *     knows the leader's address (not before its backoff if forwarding to
 *     that same address just failed).
 * Running it again may park it again: the deadline set at its first park
 * stays, so every call is answered within the hold timeout plus one
 * attempt. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "methods_int.h"
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"

struct hold_entry {
    struct hold_entry *next;
    struct req r;            /* r.call owned until answered or run again */
    const struct nv *params; /* borrowed from r.call */
    int status;              /* answered with this at the deadline... */
    struct nv_err err;       /* ...or this error when set (owned) */
    char failed_addr[160];   /* "" = none */
    uint64_t not_before;     /* loop time before which failed_addr is not retried */
};

/* Empty the parking list; the caller owns the entries. */
static struct hold_entry *take_all(struct rpc_methods *m)
{
    struct hold_entry *list = m->hold.head;
    m->hold.head = m->hold.tail = NULL;
    m->hold.n = 0;
    return list;
}

/* The first retry of a leader that could not take the call waits 20 ms,
 * doubling to 160 ms: a believed leader that was just killed refuses
 * connections until the followers notice, and is not hammered meanwhile. */
static uint64_t backoff_ms(unsigned holds)
{
    unsigned shift = holds > 0 ? holds - 1 : 0;
    return 20u << (shift < 3 ? shift : 3);
}

static unsigned hold_ms(const struct rpc_methods *m)
{
    return m->node->hold_timeout_ms != 0 ? m->node->hold_timeout_ms : HOLD_DEFAULT_MS;
}

bool hold_no_leader(struct rpc_methods *m)
{
    const struct rpc_node *node = m->node;
    if (node->is_leader == NULL || node->is_leader(node->ctx)) {
        return false;
    }
    return node->leader_rpc == NULL || node->leader_rpc(node->ctx) == NULL;
}

static void answer(struct rpc_methods *m, struct hold_entry *e)
{
    if (nv_err_isset(&e->err)) {
        rpc_reply_error(e->r.call, &e->err);
    } else {
        methods_reply_errno(m, e->r.call, e->status);
    }
    nv_err_clear(&e->err);
    free(e);
}

static void append(struct hold *h, struct hold_entry *e)
{
    e->next = NULL;
    if (h->tail != NULL) {
        h->tail->next = e;
    } else {
        h->head = e;
    }
    h->tail = e;
    h->n++;
}

static void tick(uv_timer_t *t)
{
    struct rpc_methods *m = t->data;
    const struct rpc_node *node = m->node;
    uint64_t now = uv_now(node->loop);
    bool leader = node->is_leader == NULL || node->is_leader(node->ctx);
    const char *addr = leader || node->leader_rpc == NULL ? NULL : node->leader_rpc(node->ctx);
    char cur[160] = "";
    if (addr != NULL) {
        snprintf(cur, sizeof cur, "%s", addr);
    }
    bool known = leader || cur[0] != '\0';
    /* Calls run below may park again: they join the emptied list, and are
     * looked at from the next tick on. */
    struct hold_entry *list = take_all(m);
    while (list != NULL) {
        struct hold_entry *e = list;
        list = e->next;
        if (rpc_call_gone(e->r.call) || now >= e->r.hold_until) {
            answer(m, e);
            continue;
        }
        bool same = e->failed_addr[0] != '\0' && !leader && strcmp(e->failed_addr, cur) == 0;
        if (!known || (same && now < e->not_before)) {
            append(&m->hold, e);
            continue;
        }
        struct req r = e->r;
        const struct nv *params = e->params;
        method_fn fn = methods_lookup(m, r.method);
        nv_err_clear(&e->err);
        free(e);
        if (fn == NULL) {
            methods_reply_errno(m, r.call, -ENOSYS); /* cannot happen: it was bound */
            continue;
        }
        methods_run(m, fn, &r, params);
    }
    if (m->hold.n == 0) {
        uv_timer_stop(t);
    }
}

bool hold_park(struct rpc_methods *m, const struct req *r, const struct nv *params, int status,
               const struct nv_err *err, const char *failed_addr)
{
    const struct rpc_node *node = m->node;
    if (r->forwarded || m->closing || node->loop == NULL || rpc_call_gone(r->call)) {
        return false;
    }
    uint64_t now = uv_now(node->loop);
    uint64_t until = r->hold_until != 0 ? r->hold_until : now + hold_ms(m);
    if (now >= until) {
        return false;
    }
    if (m->hold.n >= HOLD_MAX_CALLS) {
        struct nv_err e;
        nv_err_init(&e);
        nv_err_set(&e, NV_E_TOO_MANY, EAGAIN,
                   "Too many calls waiting for a leader (%u); try again later", HOLD_MAX_CALLS);
        rpc_reply_error(r->call, &e);
        nv_err_clear(&e);
        return true;
    }
    if (m->hold.timer == NULL) {
        uv_timer_t *t = malloc(sizeof *t);
        if (t == NULL || uv_timer_init(node->loop, t) < 0) {
            free(t);
            return false;
        }
        t->data = m;
        m->hold.timer = t;
    }
    struct hold_entry *e = calloc(1, sizeof *e);
    if (e == NULL) {
        return false;
    }
    e->r = *r;
    e->r.hold_until = until;
    e->r.holds++;
    e->params = params;
    e->status = status;
    nv_err_init(&e->err);
    if (err != NULL && nv_err_isset(err)) {
        nv_err_copy(&e->err, err);
    }
    if (failed_addr != NULL) {
        snprintf(e->failed_addr, sizeof e->failed_addr, "%s", failed_addr);
        e->not_before = now + backoff_ms(e->r.holds);
    }
    append(&m->hold, e);
    if (!uv_is_active((uv_handle_t *)m->hold.timer)) {
        uv_timer_start(m->hold.timer, tick, HOLD_POLL_MS, HOLD_POLL_MS);
    }
    return true;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

void hold_close(struct rpc_methods *m)
{
    m->closing = true;
    if (m->hold.timer != NULL) {
        uv_close((uv_handle_t *)m->hold.timer, timer_closed);
        m->hold.timer = NULL;
    }
    struct hold_entry *list = take_all(m);
    while (list != NULL) {
        struct hold_entry *e = list;
        list = e->next;
        answer(m, e);
    }
}
