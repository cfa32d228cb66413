/* rpc_call_sync: one blocking call on a private loop (rpc.h "client").
 * Steps, each waiting for the previous answer: auth.login_with_api_key
 * (when a key is given), core.set_options {"client_id"} (when given), the
 * call. One deadline covers connecting and all three. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "nv.h"
#include "nv_err.h"
#include "rpc.h"

struct sync_step {
    bool done;
    int status;
    struct nv *result;
    struct nv_err err;
};

struct sync_run {
    uv_loop_t loop;
    uv_timer_t timer;
    struct rpc_client *c;
    bool timed_out;
};

static void step_done(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    struct sync_step *st = arg;
    st->done = true;
    st->status = status;
    if (err != NULL && (status < 0 || nv_err_isset(err))) {
        nv_err_copy(&st->err, err);
        if (status == 0) {
            st->status = -EREMOTEIO;
        }
    } else {
        st->result = nv_copy(result);
        if (st->result == NULL) {
            st->result = nv_nil();
        }
    }
}

static void timer_fired(uv_timer_t *t)
{
    struct sync_run *r = t->data;
    r->timed_out = true;
    rpc_client_close(r->c); /* the waiting call hears -ECANCELED */
    r->c = NULL;
}

/* Make one call and wait; returns the step's status. */
static int step(struct sync_run *r, struct sync_step *st, const char *method, struct nv *params,
                int64_t msgid)
{
    memset(st, 0, sizeof *st);
    nv_err_init(&st->err);
    if (r->c == NULL) {
        nv_free(params);
        st->status = -ETIMEDOUT;
        return st->status;
    }
    int rv = rpc_client_call(r->c, method, params, msgid, step_done, st);
    if (rv < 0) {
        nv_err_set(&st->err, NV_E_CALL, -rv, "%s: %s", method, strerror(-rv));
        st->status = rv;
        return rv;
    }
    while (!st->done) {
        uv_run(&r->loop, UV_RUN_ONCE);
    }
    return st->status;
}

int rpc_call_sync(const char *endpoint, const char *method, struct nv *params,
                  const struct rpc_sync_opts *opts, struct nv **result, struct nv_err *err)
{
    static const struct rpc_sync_opts dflt = {.msgid = -1};
    if (opts == NULL) {
        opts = &dflt;
    }
    *result = NULL;
    nv_err_clear(err);
    unsigned timeout = opts->timeout_ms ? opts->timeout_ms : 30000;
    struct sync_run r = {0};
    int rv = uv_loop_init(&r.loop);
    if (rv < 0) {
        nv_free(params);
        nv_err_set(err, NV_E_CALL, -rv, "uv_loop_init: %s", uv_strerror(rv));
        return rv;
    }
    rv = rpc_client_open(&r.loop, endpoint, opts->tls, &r.c);
    if (rv < 0) {
        nv_free(params);
        uv_loop_close(&r.loop);
        nv_err_set(err, NV_E_CALL, -rv, "bad endpoint '%s': %s", endpoint, strerror(-rv));
        return rv;
    }
    uv_timer_init(&r.loop, &r.timer);
    r.timer.data = &r;
    bool prelims = opts->api_key != NULL || opts->client_id != NULL;
    unsigned first = opts->connect_timeout_ms && prelims && opts->connect_timeout_ms < timeout
                         ? opts->connect_timeout_ms
                         : timeout;
    /* the loop's clock is from before rpc_client_open, which may have
     * spent milliseconds loading a CA store: a short deadline must not be
     * over before the connection had its chance */
    uv_update_time(&r.loop);
    uint64_t t0 = uv_now(&r.loop);
    unsigned limit = first; /* the deadline in force, for the message */
    uv_timer_start(&r.timer, timer_fired, first, 0);

    struct sync_step st = {0};
    rv = 0;
    if (opts->api_key != NULL) {
        struct nv *p = nv_arr();
        nv_push(p, nv_str(opts->api_key));
        rv = step(&r, &st, "auth.login_with_api_key", p, -1);
        if (rv == 0 && !(nv_is(st.result, NV_BOOL) && st.result->u.b)) {
            nv_err_set(&st.err, NV_E_NOT_AUTHENTICATED, NV_ENOTAUTHENTICATED,
                       "Not authenticated: %s refused the API key", endpoint);
            rv = st.status = -EREMOTEIO;
        }
        if (rv < 0) {
            goto out;
        }
        nv_free(st.result);
    }
    if (opts->client_id != NULL) {
        struct nv *p = nv_arr();
        struct nv *o = nv_map();
        nv_set_str(o, "client_id", opts->client_id);
        nv_push(p, o);
        rv = step(&r, &st, "core.set_options", p, -1);
        if (rv < 0) {
            goto out;
        }
        nv_free(st.result);
    }
    if (first != timeout) {
        uv_update_time(&r.loop);
        uint64_t spent = uv_now(&r.loop) - t0;
        uv_timer_start(&r.timer, timer_fired, spent < timeout ? timeout - spent : 1, 0);
        limit = timeout;
    }
    rv = step(&r, &st, method, params, opts->msgid);
    params = NULL;
    if (rv == 0) {
        *result = st.result;
        st.result = NULL;
    }
out:
    nv_free(params);
    if (rv < 0) {
        if (r.timed_out && rv == -ECANCELED) {
            rv = -ETIMEDOUT;
        }
        if (rv == -ETIMEDOUT) {
            nv_err_set(&st.err, NV_E_CALL, ETIMEDOUT, "%s: no answer from %s within %u ms", method,
                       endpoint, limit);
        }
        nv_free(st.result);
        nv_err_move(err, &st.err);
    }
    nv_err_clear(&st.err);
    rpc_client_close(r.c);
    uv_close((uv_handle_t *)&r.timer, NULL);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r.loop) != 0) {
        fprintf(stderr, "rpc: rpc_call_sync: loop closed with handles open\n");
    }
    return rv;
}
