/* rpc server: listeners (unix socket, TCP), framing, limits,
 * authentication, per-connection client id, dispatch (rpc.h "server").
 *
 * One libuv loop thread. Each connection reads into its own buffer; a
 * resumable msgpack scanner (nv_scan) finds where one message ends
 * WITHOUT allocating anything for the sizes it announces, so a 5-byte
 * header claiming a 4 GiB string or array is refused at once instead of
 * being buffered (msgpack_unpacker would reserve or allocate first). Only
 * a complete message is decoded, with msgpack_unpack_next.
 *
 * Limits against clients that cannot log in (anyone who reaches the TCP
 * port): they can call auth.* only, in frames of at most 64 KiB; they
 * share a small budget of connections (with a per-address share) that
 * cannot crowd out logged-in clients or the unix socket, and each must
 * log in within the login timeout. Failed logins are answered after an
 * exponential delay, during which nothing else on the connection is
 * handled; after a few the connection is closed, and an address that
 * failed too often is refused for a while. Every log line an outsider can
 * cause is rate-limited.
 *
 * Lifetimes: a connection is referenced by itself while its handles are
 * open and by every call in flight. A reply to a closed connection is
 * dropped; the call and (last) the connection are freed then. The server
 * object lives until every listener and connection handle is closed. */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <msgpack.h>
#include <uv.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_log.h"
#include "rpc.h"

#include "server_int.h"

/* ------------------------------------------------------------------ */
/* small helpers */

static void ignore_sigpipe(void)
{
    /* A peer that goes away makes write() raise SIGPIPE, which kills the
     * process by default; libuv leaves that to the application. Only a
     * default disposition is changed: a handler someone installed stays. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

void srv__log(const struct conn *c, const char *what, const char *detail)
{
    nv_logf(NV_LOG_INFO, "rpc: %s: %s%s%s", c->peer, what, detail ? ": " : "",
            detail ? detail : "");
}

void srv__log_limited(struct rpc_server *s, struct ratelog *rl, const char *fmt, ...)
{
    uint64_t now = uv_now(s->loop);
    if (rl->last != 0 && now - rl->last < LOG_EVERY_MS) {
        rl->suppressed++;
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (rl->suppressed > 0) {
        nv_logf(NV_LOG_WARNING, "rpc: %s (%u similar lines suppressed)", line, rl->suppressed);
    } else {
        nv_logf(NV_LOG_WARNING, "rpc: %s", line);
    }
    rl->last = now != 0 ? now : 1;
    rl->suppressed = 0;
}

/* Split "host:port" or "[v6]:port" (host may be empty = any). */
static int split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *p;
    size_t hl;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (e == NULL || e[1] != ':') {
            return -EINVAL;
        }
        hl = (size_t)(e - s - 1);
        p = e + 2;
        s = s + 1;
    } else {
        const char *e = strrchr(s, ':');
        if (e == NULL || memchr(s, ':', (size_t)(e - s)) != NULL) {
            return -EINVAL;
        }
        hl = (size_t)(e - s);
        p = e + 1;
    }
    if (hl >= hostlen) {
        return -EINVAL;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    char *end;
    long v = strtol(p, &end, 10);
    if (*p == '\0' || *end != '\0' || v < 0 || v > 65535) {
        return -EINVAL;
    }
    *port = (int)v;
    return 0;
}

static int resolve(uv_loop_t *loop, const char *host, int port, struct sockaddr_storage *ss)
{
    if (host[0] == '\0') {
        host = "0.0.0.0";
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) {
        return 0;
    }
    /* a name: resolved once, synchronously, at start */
    uv_getaddrinfo_t req;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rv = uv_getaddrinfo(loop, &req, NULL, host, NULL, &hints);
    if (rv < 0) {
        return rv;
    }
    memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    } else {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    }
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

/* ------------------------------------------------------------------ */
/* server lifetime */

static void srv_unref(struct rpc_server *s)
{
    if (--s->refs > 0) {
        return;
    }
    for (size_t i = 0; i < s->n_methods; i++) {
        free(s->methods[i].name);
    }
    free(s->methods);
    for (size_t i = 0; i < s->n_addrs; i++) {
        free(s->addrs[i]);
    }
    free(s->addrs);
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s->unix_path);
    free(s->tcp_addr);
    free(s->key_file);
    for (size_t i = 0; i < s->n_collections; i++) {
        free(s->collections[i]);
    }
    free(s->collections);
    rpc_tls_free(s->tls);
    free(s);
    if (done != NULL) {
        done(arg);
    }
}

static void listener_closed(uv_handle_t *h)
{
    srv_unref(h->data);
}

/* ------------------------------------------------------------------ */
/* source addresses */

/* The key of a peer address: IPv4 (also when mapped into IPv6) as
 * ::ffff:a.b.c.d, IPv6 by its /64 (one host usually has a whole /64). */
static void addr_key(const struct sockaddr_storage *ss, uint8_t key[16], char *name, size_t len)
{
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
        const uint8_t *b = a6->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, v4mapped, 12) == 0) {
            memcpy(key, b, 16);
            snprintf(name, len, "%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
            return;
        }
        memcpy(key, b, 8);
        struct sockaddr_in6 p = *a6;
        memset(p.sin6_addr.s6_addr + 8, 0, 8);
        char ip[INET6_ADDRSTRLEN] = "?";
        uv_ip6_name(&p, ip, sizeof ip);
        snprintf(name, len, "%s/64", ip);
        return;
    }
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)ss;
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &a4->sin_addr, 4);
    char ip[INET_ADDRSTRLEN] = "?";
    uv_ip4_name(a4, ip, sizeof ip);
    snprintf(name, len, "%s", ip);
}

/* Failed logins still counted now (one forgotten per decay period). */
static unsigned addr_fails(struct rpc_server *s, struct addr_rec *a)
{
    uint64_t now = uv_now(s->loop);
    uint64_t k = (now - a->fail_at) / ADDR_FAIL_DECAY_MS;
    if (k >= a->fails) {
        a->fails = 0;
        a->fail_at = now;
    } else {
        a->fails -= (unsigned)k;
        a->fail_at += k * ADDR_FAIL_DECAY_MS;
    }
    return a->fails;
}

static void addr_remove(struct rpc_server *s, size_t i)
{
    free(s->addrs[i]);
    s->addrs[i] = s->addrs[--s->n_addrs];
}

/* Make room in a full table: forget the addresses with nothing left to
 * remember, else the unreferenced one with the fewest failures. */
static void addr_prune(struct rpc_server *s)
{
    for (size_t i = 0; i < s->n_addrs;) {
        if (s->addrs[i]->refs == 0 && addr_fails(s, s->addrs[i]) == 0) {
            addr_remove(s, i);
        } else {
            i++;
        }
    }
    size_t best = SIZE_MAX;
    for (size_t i = 0; s->n_addrs >= ADDR_TABLE_MAX && i < s->n_addrs; i++) {
        if (s->addrs[i]->refs == 0 &&
            (best == SIZE_MAX || s->addrs[i]->fails < s->addrs[best]->fails)) {
            best = i;
        }
    }
    if (best != SIZE_MAX && s->n_addrs >= ADDR_TABLE_MAX) {
        addr_remove(s, best);
    }
}

/* The record of key (created; NULL when out of memory or the table is
 * full of referenced ones, which the budgets make impossible). */
static struct addr_rec *addr_get(struct rpc_server *s, const uint8_t key[16], const char *name)
{
    for (size_t i = 0; i < s->n_addrs; i++) {
        if (memcmp(s->addrs[i]->key, key, 16) == 0) {
            return s->addrs[i];
        }
    }
    if (s->n_addrs >= ADDR_TABLE_MAX) {
        addr_prune(s);
    }
    if (s->n_addrs >= ADDR_TABLE_MAX) {
        return NULL;
    }
    if (s->addrs == NULL) {
        s->addrs = calloc(ADDR_TABLE_MAX, sizeof *s->addrs);
    }
    struct addr_rec *a = s->addrs != NULL ? calloc(1, sizeof *a) : NULL;
    if (a == NULL) {
        return NULL;
    }
    memcpy(a->key, key, 16);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->fail_at = uv_now(s->loop);
    s->addrs[s->n_addrs++] = a;
    return a;
}

/* ------------------------------------------------------------------ */
/* connections */

static void conn_ref(struct conn *c)
{
    c->refs++;
}

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0) {
        return;
    }
    free(c->client_id);
    for (unsigned i = 0; i < c->n_subs; i++) {
        free(c->subs[i]);
    }
    free(c->buf);
    free(c);
}


/* The connection leaves its class's budget (at close or at login). */
static void conn_uncount(struct conn *c)
{
    struct rpc_server *s = c->srv;
    if (!c->counted) {
        return;
    }
    c->counted = false;
    s->st.conns--;
    if (c->kind == CK_UNIX) {
        s->n_unix--;
    } else if (c->kind == CK_AUTH) {
        s->n_auth--;
    } else {
        s->n_unauth--;
        if (c->uprev != NULL) {
            c->uprev->unext = c->unext;
        } else {
            s->unauth_head = c->unext;
        }
        if (c->unext != NULL) {
            c->unext->uprev = c->uprev;
        } else {
            s->unauth_tail = c->uprev;
        }
        c->uprev = c->unext = NULL;
        if (c->addr != NULL) {
            c->addr->refs--;
            c->addr = NULL;
        }
    }
}

static void conn_one_closed(struct conn *c)
{
    if (--c->nclose > 0) {
        return;
    }
    struct rpc_server *s = c->srv;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    s->st.calls_inflight -= c->inflight;
    c->srv = NULL;
    conn_unref(c);
    srv_unref(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn_one_closed(h->data);
}

static void conn_stream_closed(struct rpc_stream *st)
{
    conn_one_closed(st->data);
}

static void call_free(struct rpc_call *call);
static void decode_cancel(struct conn *c);

/* Read while nothing holds the connection: not closing, no failed
 * login's reply waiting, not too much output queued. */
static void conn_set_reading(struct conn *c)
{
    bool want = !c->closing && !c->shutting && !c->held && !c->decoding && !c->verifying &&
                !c->wq_full;
    if (want && !c->reading) {
        c->reading = rpc_stream_read_start(&c->st) == 0;
    } else if (!want && c->reading) {
        rpc_stream_read_stop(&c->st);
        c->reading = false;
    }
}

/* why NULL = a normal close (EOF, shutdown) or one logged by the caller. */
static void conn_close(struct conn *c, const char *why)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (why != NULL) {
        srv__log(c, "closing", why);
    }
    /* a closing connection gets no more events: its subscriptions leave
     * the server's count now (core.subscribe adds none once closing) */
    c->srv->n_subs -= c->n_subs;
    for (unsigned i = 0; i < c->n_subs; i++) {
        free(c->subs[i]);
    }
    c->n_subs = 0;
    conn_uncount(c);
    decode_cancel(c);
    if (c->held_call != NULL) {
        /* its reply goes nowhere now */
        struct rpc_call *call = c->held_call;
        c->held_call = NULL;
        c->held = false;
        call_free(call);
    }
    c->nclose = 1;
    if (c->is_tcp) {
        c->nclose += 2;
        uv_close((uv_handle_t *)&c->login_timer, conn_handle_closed);
        uv_close((uv_handle_t *)&c->hold_timer, conn_handle_closed);
    }
    rpc_stream_close(&c->st, conn_stream_closed);
}

static void shutdown_done(struct rpc_stream *st, int status)
{
    (void)status;
    struct conn *c = st->data;
    conn_close(c, NULL);
    conn_unref(c);
}

/* Close once the replies queued so far are written (the last one says
 * why the connection ends). Nothing more is read or handled. */
static void conn_close_after_write(struct conn *c)
{
    if (c->closing || c->shutting) {
        return;
    }
    c->shutting = true;
    conn_set_reading(c);
    conn_ref(c);
    if (rpc_stream_shutdown(&c->st, shutdown_done) < 0) {
        conn_unref(c);
        conn_close(c, NULL);
    }
}

/* A close an outsider can cause (bad frame, timeout): logged at most once
 * a second per source address. */
static void conn_close_limited(struct conn *c, const char *why)
{
    if (c->closing) {
        return;
    }
    if (c->kind == CK_UNAUTH && c->addr != NULL) {
        srv__log_limited(c->srv, &c->addr->log, "%s: closing: %s", c->peer, why);
        conn_close(c, NULL);
    } else {
        conn_close(c, why);
    }
}

static void bad_frame(struct conn *c, const char *why)
{
    c->srv->st.bad_frames++;
    conn_close_limited(c, why);
}

static void write_done(struct rpc_stream *st, int status)
{
    struct conn *c = st->data;
    if (status < 0 && status != UV_ECANCELED) {
        /* EPIPE / ECONNRESET: the peer went away; not worth a log line */
        conn_close(c, status == UV_EPIPE || status == UV_ECONNRESET ? NULL : uv_strerror(status));
    } else if (c->wq_full && !c->closing && rpc_stream_queued(&c->st) < WQ_LOW) {
        c->wq_full = false;
        conn_set_reading(c);
    }
}

/* Queue data (taken) on the connection. */
static void conn_write(struct conn *c, char *data, size_t len)
{
    if (c->closing) {
        free(data);
        return;
    }
    int rv = rpc_stream_write(&c->st, data, len);
    if (rv < 0) {
        conn_close(c, rv == UV_EPIPE || rv == UV_ECONNRESET ? NULL : uv_strerror(rv));
        return;
    }
    /* Back-pressure: a peer that sends calls but does not read replies
     * stops being read until it catches up. */
    if (!c->wq_full && rpc_stream_queued(&c->st) > WQ_HIGH) {
        c->wq_full = true;
        conn_set_reading(c);
    }
}

static void send_reply(struct conn *c, int64_t msgid, const struct nv *error,
                       const struct nv *result)
{
    if (c->closing) {
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rv = msgpack_pack_array(&pk, 4);
    rv = rv == 0 ? msgpack_pack_int(&pk, 1) : rv;
    rv = rv == 0 ? msgpack_pack_int64(&pk, msgid) : rv;
    rv = rv == 0 ? nv_pack(&pk, error) : rv;
    rv = rv == 0 ? nv_pack(&pk, result) : rv;
    if (rv != 0) {
        msgpack_sbuffer_destroy(&sb);
        conn_close(c, "out of memory encoding a reply");
        return;
    }
    size_t len = sb.size;
    conn_write(c, msgpack_sbuffer_release(&sb), len);
}

static void send_error(struct conn *c, int64_t msgid, const struct nv_err *e)
{
    struct nv *ev = nv_err_to_nv(e);
    send_reply(c, msgid, ev, NULL);
    nv_free(ev);
}

static void send_error_set(struct conn *c, int64_t msgid, int code, int errnum, const char *msg)
{
    struct nv_err e;
    nv_err_init(&e);
    nv_err_set(&e, code, errnum, "%s", msg);
    send_error(c, msgid, &e);
    nv_err_clear(&e);
}

static struct method *find_method(const struct rpc_server *s, const char *name)
{
    for (size_t i = 0; i < s->n_methods; i++) {
        if (strcmp(s->methods[i].name, name) == 0) {
            return &s->methods[i];
        }
    }
    return NULL;
}

/* A notification that is not run: no one to answer, so a log line (at
 * most one a second for the whole server: any client can send them). */
static void notification_dropped(struct conn *c, const char *method, const char *why)
{
    srv__log_limited(c->srv, &c->srv->log_notify, "%s: notification %.64s ignored: %s", c->peer,
                     method, why);
}

static void free_off_loop(uv_loop_t *loop, struct nv *v);

static void release_params(struct rpc_server *s, struct nv *params, bool big)
{
    if (big) {
        free_off_loop(s->loop, params);
    } else {
        nv_free(params);
    }
}

/* The connection's role is below what method m needs: EPERM, naming the
 * method, the key and the roles (a notification is only logged). */
static void role_refused(struct conn *c, bool notify, int64_t msgid, const struct method *m)
{
    const char *need = rpc_role_name(srv__method_role(m->flags));
    if (notify) {
        srv__log_limited(c->srv, &c->srv->log_role,
                         "%s: notification %.64s ignored: key \"%s\" has the role %s, it needs %s",
                         c->peer, m->name, c->key_name, rpc_role_name(c->role), need);
        return;
    }
    struct nv_err e;
    nv_err_init(&e);
    nv_err_call(&e, EPERM,
                "Permission denied: %s needs the %s role; this connection's key \"%s\" has the "
                "role %s",
                m->name, need, c->key_name, rpc_role_name(c->role));
    send_error(c, msgid, &e);
    nv_err_clear(&e);
}

/* Run method for a request (msgid) or a notification (notify: nothing is
 * sent back, errors included). params taken. */
static void dispatch(struct conn *c, bool notify, int64_t msgid, const char *method,
                     struct nv *params, bool big)
{
    struct rpc_server *s = c->srv;
    s->st.calls_total++;
    s->st.notifications += notify;
    const struct method *m = find_method(s, method);
    if (!c->authed && (m == NULL || !(m->flags & RPC_M_NOAUTH))) {
        release_params(s, params, big);
        if (notify) {
            notification_dropped(c, method, "not authenticated");
            return;
        }
        send_error_set(c, msgid, NV_E_NOT_AUTHENTICATED, NV_ENOTAUTHENTICATED, "Not authenticated");
        return;
    }
    if (notify && !c->authed) {
        /* a login needs its answer */
        release_params(s, params, big);
        notification_dropped(c, method, "not authenticated");
        return;
    }
    if (m == NULL) {
        release_params(s, params, big);
        if (notify) {
            notification_dropped(c, method, "no such method");
            return;
        }
        struct nv_err e;
        nv_err_init(&e);
        nv_err_set(&e, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist: \"%s\"", method);
        send_error(c, msgid, &e);
        nv_err_clear(&e);
        return;
    }
    if (c->authed && c->role < srv__method_role(m->flags)) {
        release_params(s, params, big);
        role_refused(c, notify, msgid, m);
        return;
    }
    if (c->inflight >= s->max_inflight) {
        release_params(s, params, big);
        if (notify) {
            notification_dropped(c, method, "too many calls in flight");
            return;
        }
        char msg[128];
        snprintf(msg, sizeof msg, "Maximum number of concurrent calls (%u) has exceeded",
                 s->max_inflight);
        send_error_set(c, msgid, NV_E_TOO_MANY, EAGAIN, msg);
        return;
    }
    struct rpc_call *call = calloc(1, sizeof *call);
    /* a notification has no msgid, so no write session key either */
    if (call == NULL || (call->method = strdup(method)) == NULL ||
        (!notify && c->client_id != NULL && (call->client_id = strdup(c->client_id)) == NULL)) {
        if (call != NULL) {
            free(call->method);
        }
        free(call);
        release_params(s, params, big);
        if (!notify) {
            send_error_set(c, msgid, NV_E_CALL, ENOMEM, "[ENOMEM] out of memory");
        }
        return;
    }
    call->c = c;
    call->big = big;
    call->noreply = notify;
    call->msgid = notify ? -1 : msgid;
    call->params = params;
    call->mi = (size_t)(m - s->methods);
    call->t0 = uv_hrtime();
    conn_ref(c);
    c->inflight++;
    s->st.calls_inflight++;
    m->fn(call, call->params, m->ctx);
}

/* One complete message decoded: a request [0, msgid, method, params] or
 * a notification [2, method, params]. Touches no connection or server
 * state, so that a large message can be decoded off the loop. */
struct parsed {
    const char *why; /* not NULL: a malformed message (static text) */
    bool notify;
    int64_t msgid;
    char method[256];
    struct nv *params; /* NULL: params is not an array (a bad request) */
};

static void parse_message(const char *p, size_t n, struct parsed *out)
{
    struct srv_request rq;
    memset(out, 0, sizeof *out);
    out->msgid = -1;
    if (srv__decode_request(p, n, &rq, &out->why) < 0) {
        return;
    }
    out->notify = rq.notify;
    out->msgid = rq.msgid;
    memcpy(out->method, rq.method, sizeof out->method);
    out->params = rq.params;
}

/* Act on a decoded message (params taken). big: it came from a large
 * frame, its params are freed off the loop. */
static void deliver(struct conn *c, struct parsed *m, bool big)
{
    if (m->why != NULL) {
        nv_free(m->params);
        bad_frame(c, m->why);
        return;
    }
    if (m->params == NULL) {
        c->srv->st.calls_total++;
        if (m->notify) {
            notification_dropped(c, m->method, "params is not an array");
            return;
        }
        send_error_set(c, m->msgid, NV_E_BAD_REQUEST, EINVAL,
                       "params must be an array of positional arguments (with string map keys)");
        return;
    }
    dispatch(c, m->notify, m->msgid, m->method, m->params, big);
}

/* ---- large frames, decoded and freed off the loop ----
 * Decoding a message of millions of small objects (4 MiB of nested
 * one-element arrays is 4M of them), and freeing them, takes hundreds of
 * milliseconds; on the loop that would stall every client of the node.
 * A frame of BIG_FRAME bytes or more is copied and decoded in the thread
 * pool while its connection is held (nothing behind it is handled; the
 * order of calls is kept), at most BIG_JOBS at a time (the pool also
 * serves the Raft log's file operations); its params are freed there
 * too. */
#define BIG_FRAME (64u << 10)
#define BIG_JOBS 2u

struct decode_job {
    uv_work_t req;
    struct conn *c;
    char *bytes;
    size_t n;
    struct parsed m;
    struct decode_job *next; /* waiting for a pool slot */
};

static void process(struct conn *c);

static void decode_work(uv_work_t *req)
{
    struct decode_job *j = req->data;
    parse_message(j->bytes, j->n, &j->m);
    free(j->bytes);
    j->bytes = NULL;
}

static void free_work(uv_work_t *req)
{
    nv_free(req->data);
}

static void free_done(uv_work_t *req, int status)
{
    (void)status;
    free(req);
}

/* Free a large value in the thread pool (inline without a loop or memory). */
static void free_off_loop(uv_loop_t *loop, struct nv *v)
{
    uv_work_t *req = loop != NULL && v != NULL ? malloc(sizeof *req) : NULL;
    if (req != NULL) {
        req->data = v;
        if (uv_queue_work(loop, req, free_work, free_done) == 0) {
            return;
        }
        free(req);
    }
    nv_free(v);
}

static void decode_done(uv_work_t *req, int status);

static void decode_start(struct rpc_server *s, struct decode_job *j)
{
    j->c->queued_job = NULL;
    s->big_jobs++;
    j->req.data = j;
    if (uv_queue_work(s->loop, &j->req, decode_work, decode_done) < 0) {
        /* cannot happen with a valid loop; finish as undecodable */
        j->m.why = "undecodable msgpack";
        free(j->bytes);
        j->bytes = NULL;
        decode_done(&j->req, 0);
    }
}

static void decode_done(uv_work_t *req, int status)
{
    (void)status;
    struct decode_job *j = req->data;
    struct conn *c = j->c;
    struct rpc_server *s = c->srv;
    if (s != NULL) {
        s->big_jobs--;
        struct decode_job *next = s->decode_wait;
        if (next != NULL) {
            s->decode_wait = next->next;
            decode_start(s, next);
        }
    }
    c->decoding = false;
    if (s == NULL || c->closing) {
        free_off_loop(s != NULL ? s->loop : NULL, j->m.params);
    } else {
        deliver(c, &j->m, true);
        conn_set_reading(c);
        process(c);
    }
    free(j);
    conn_unref(c);
}

/* Hand the message at msg (n >= BIG_FRAME bytes) to the thread pool. */
static void decode_off_loop(struct conn *c, const char *msg, size_t n)
{
    struct rpc_server *s = c->srv;
    struct decode_job *j = calloc(1, sizeof *j);
    char *bytes = j != NULL ? malloc(n) : NULL;
    if (bytes == NULL) {
        free(j);
        conn_close(c, "out of memory");
        return;
    }
    memcpy(bytes, msg, n);
    j->c = c;
    j->bytes = bytes;
    j->n = n;
    conn_ref(c);
    c->decoding = true;
    conn_set_reading(c);
    if (s->big_jobs >= BIG_JOBS) {
        struct decode_job **tail = &s->decode_wait;
        while (*tail != NULL) {
            tail = &(*tail)->next;
        }
        *tail = j;
        c->queued_job = j;
        return;
    }
    decode_start(s, j);
}

/* A closing connection's frame still waiting for the pool is dropped
 * (a running one finishes and is dropped in decode_done). */
static void decode_cancel(struct conn *c)
{
    struct decode_job *j = c->queued_job;
    if (j == NULL) {
        return;
    }
    for (struct decode_job **p = &c->srv->decode_wait; *p != NULL; p = &(*p)->next) {
        if (*p == j) {
            *p = j->next;
            break;
        }
    }
    c->queued_job = NULL;
    c->decoding = false;
    free(j->bytes);
    free(j);
    conn_unref(c);
}

static void handle_message(struct conn *c, const char *p, size_t n)
{
    /* (before login frames are smaller: only logins are accepted) */
    if (n >= BIG_FRAME && c->authed) {
        decode_off_loop(c, p, n);
        return;
    }
    struct parsed m;
    parse_message(p, n, &m);
    deliver(c, &m, false);
}

/* Handle the complete messages buffered, in order, until the connection
 * is held (a failed login's reply waits) or closes. */
static void process(struct conn *c)
{
    /* before a TCP login nothing larger than a login is accepted */
    size_t max = c->kind == CK_UNAUTH && c->srv->max_frame > UNAUTH_MAX_FRAME ? UNAUTH_MAX_FRAME
                                                                             : c->srv->max_frame;
    while (!c->closing && !c->shutting && !c->held && !c->decoding && !c->verifying &&
           c->off < c->len) {
        const char *why = NULL;
        int r =
            srv__frame_scan(&c->sc, (const uint8_t *)c->buf + c->off, c->len - c->off, max, &why);
        if (r == NV_SCAN_MORE) {
            break;
        }
        if (r != NV_SCAN_DONE) {
            bad_frame(c, why);
            return;
        }
        const char *msg = c->buf + c->off;
        size_t n = c->sc.pos;
        c->off += n;
        memset(&c->sc, 0, sizeof c->sc);
        /* the buffer is not touched until the next read: msg stays valid */
        handle_message(c, msg, n);
        /* a login may have changed the limit (for the next message) */
        max = c->kind == CK_UNAUTH && c->srv->max_frame > UNAUTH_MAX_FRAME ? UNAUTH_MAX_FRAME
                                                                          : c->srv->max_frame;
    }
    if (c->off == c->len) {
        c->off = c->len = 0;
        if (c->cap > KEEP_BUF) {
            free(c->buf);
            c->buf = NULL;
            c->cap = 0;
        }
    }
}

static void on_alloc(struct rpc_stream *st, uv_buf_t *buf)
{
    struct conn *c = st->data;
    if (c->cap - c->len < READ_CHUNK && c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->cap - c->len < READ_CHUNK) {
        size_t cap = c->cap ? c->cap * 2 : READ_CHUNK;
        while (cap - c->len < READ_CHUNK) {
            cap *= 2;
        }
        char *nb = realloc(c->buf, cap);
        if (nb == NULL) {
            *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
            return;
        }
        c->buf = nb;
        c->cap = cap;
    }
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* A TLS ClientHello on the plaintext TCP port (0x16 cannot start a
 * msgpack-rpc message): answered in plaintext, which the client's TLS
 * stack reports as a server that does not speak TLS, then closed. */
static bool tls_on_plain_port(struct conn *c, ssize_t n)
{
    if (!c->is_tcp || c->st.ssl != NULL || c->st.got_bytes || n < 1 ||
        (unsigned char)c->buf[c->len] != 0x16) {
        return false;
    }
    c->srv->st.bad_frames++;
    if (c->addr != NULL) {
        srv__log_limited(c->srv, &c->addr->log, "%s: closing: a TLS client on the plaintext port",
                         c->peer);
    }
    send_error_set(c, 0, NV_E_BAD_REQUEST, EPROTO,
                   "this port serves plaintext msgpack-rpc, not TLS");
    conn_close_after_write(c);
    return true;
}

static void on_read(struct rpc_stream *st, ssize_t n)
{
    struct conn *c = st->data;
    if (n == UV_EPROTO) {
        /* a failed TLS handshake: anyone can cause one, so rate-limited */
        conn_close_limited(c, rpc_stream_why(st));
        return;
    }
    if (n < 0) {
        conn_close(c, n == UV_EOF || n == UV_ECONNRESET ? NULL : uv_strerror((int)n));
        return;
    }
    if (n == 0 || c->closing || tls_on_plain_port(c, n)) {
        return;
    }
    c->len += (size_t)n;
    conn_ref(c);
    process(c);
    conn_unref(c);
}

/* ------------------------------------------------------------------ */
/* logins */

static void login_deadline(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!c->authed) {
        conn_close_limited(c, "not logged in within the login timeout");
    }
}

void srv__login_ok(struct conn *c, struct rpc_call *call, enum rpc_role role, const char *name)
{
    struct rpc_server *s = c->srv;
    if (c->is_tcp && !c->authed && s->n_auth >= s->max_conns) {
        struct nv_err e;
        nv_err_init(&e);
        nv_err_set(&e, NV_E_TOO_MANY, EAGAIN,
                   "Maximum number of logged-in connections (%u) reached", s->max_conns);
        srv__log_limited(s, &s->log_refused, "%s: logged-in connection budget (%u) full",
                         c->peer, s->max_conns);
        rpc_reply_error(call, &e);
        nv_err_clear(&e);
        conn_close_after_write(c);
        return;
    }
    if (!c->authed) {
        conn_uncount(c);
        c->authed = true;
        c->kind = CK_AUTH;
        c->counted = true;
        s->n_auth++;
        s->st.conns++;
        uv_timer_stop(&c->login_timer);
    }
    c->role = role;
    snprintf(c->key_name, sizeof c->key_name, "%s", name);
    rpc_reply(call, nv_bool(true));
}

bool srv__login_blocked(struct conn *c)
{
    return c->addr != NULL && addr_fails(c->srv, c->addr) >= ADDR_FAIL_MAX;
}

static void hold_fired(uv_timer_t *t)
{
    struct conn *c = t->data;
    struct rpc_call *call = c->held_call;
    c->held_call = NULL;
    c->held = false;
    if (call == NULL || c->closing) {
        return;
    }
    conn_ref(c);
    rpc_reply(call, nv_bool(false));
    if (c->close_after_reply) {
        conn_close_after_write(c);
    } else {
        /* the frames that arrived behind the login, in order */
        conn_set_reading(c);
        process(c);
    }
    conn_unref(c);
}

void srv__login_failed(struct conn *c, struct rpc_call *call)
{
    struct rpc_server *s = c->srv;
    s->st.login_failures++;
    c->login_failures++;
    if (!c->is_tcp || c->addr == NULL) {
        rpc_reply(call, nv_bool(false));
        return;
    }
    struct addr_rec *a = c->addr;
    bool blocked = addr_fails(s, a) >= ADDR_FAIL_MAX;
    /* trying on while blocked keeps the address blocked (for at most
     * ADDR_FAIL_MAX decay periods after the last try) */
    if (a->fails < 2 * ADDR_FAIL_MAX) {
        a->fails++;
    }
    c->close_after_reply = blocked || c->login_failures >= s->max_login_failures;
    unsigned shift = c->login_failures - 1 < 16 ? c->login_failures - 1 : 16;
    uint64_t delay = (uint64_t)s->login_backoff_ms << shift;
    if (blocked || delay > 30000) {
        delay = (uint64_t)s->login_backoff_ms << (s->max_login_failures - 1 < 16
                                                      ? s->max_login_failures - 1
                                                      : 16);
        delay = delay > 30000 ? 30000 : delay;
    }
    srv__log_limited(s, &a->log, "%s: %s (failure %u on this connection, %u recently from %s)%s",
                     c->peer,
                     blocked ? "login refused: too many failed logins from this address"
                             : "login with a wrong API key",
                     c->login_failures, a->fails, a->name,
                     c->close_after_reply ? "; closing" : "");
    /* the reply, and everything behind it on this connection, waits */
    c->held = true;
    c->held_call = call;
    conn_set_reading(c);
    uv_timer_start(&c->hold_timer, hold_fired, delay, 0);
}

/* ------------------------------------------------------------------ */
/* accepting */

/* Refuse a new connection (its budget is full): closed before anything is
 * read, one log line a second at most. */
static void refuse(struct conn *c, struct ratelog *rl, const char *why)
{
    c->srv->st.rejected_conns++;
    srv__log_limited(c->srv, rl, "%s: connection refused: %s", c->peer, why);
    conn_close(c, NULL);
}

/* Admit an unauthenticated TCP connection into its budgets; false when it
 * was refused (and closed). */
static bool admit_unauth(struct conn *c, const struct sockaddr_storage *ss)
{
    struct rpc_server *s = c->srv;
    uint8_t key[16];
    char name[56];
    addr_key(ss, key, name, sizeof name);
    struct addr_rec *a = addr_get(s, key, name);
    if (a == NULL) {
        refuse(c, &s->log_refused, "out of memory");
        return false;
    }
    if (addr_fails(s, a) >= ADDR_FAIL_MAX) {
        refuse(c, &a->log, "too many failed logins from this address");
        return false;
    }
    if (a->refs >= s->max_unauth_per_addr) {
        refuse(c, &a->log, "too many connections not logged in from this address");
        return false;
    }
    if (s->n_unauth >= s->max_unauth) {
        struct conn *old = s->unauth_head;
        uint64_t now = uv_now(s->loop);
        if (old == NULL || now - old->accepted < EVICT_AFTER_MS) {
            refuse(c, &s->log_refused, "the budget of connections not logged in is full");
            return false;
        }
        s->st.evicted_conns++;
        srv__log_limited(s, &s->log_refused,
                         "%s: closing: evicted by a new connection (the budget of %u "
                         "connections not logged in is full)",
                         old->peer, s->max_unauth);
        conn_close(old, NULL);
    }
    c->kind = CK_UNAUTH;
    c->counted = true;
    c->addr = a;
    a->refs++;
    s->n_unauth++;
    s->st.conns++;
    c->accepted = uv_now(s->loop);
    c->uprev = s->unauth_tail;
    if (s->unauth_tail != NULL) {
        s->unauth_tail->unext = c;
    } else {
        s->unauth_head = c;
    }
    s->unauth_tail = c;
    return true;
}

static const struct rpc_stream_ops conn_ops = {
    .alloc = on_alloc, .read = on_read, .written = write_done};

static void on_connection(uv_stream_t *listener, int status)
{
    struct rpc_server *s = listener->data;
    bool is_tcp = listener == (uv_stream_t *)&s->tcp;
    if (status < 0) {
        srv__log_limited(s, &s->log_refused, "accept: %s", uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    int rv = rpc_stream_init(s->loop, &c->st, is_tcp, &conn_ops, c);
    if (rv < 0) {
        free(c);
        return;
    }
    c->srv = s;
    c->refs = 1;
    c->is_tcp = is_tcp;
    c->kind = is_tcp ? CK_UNAUTH : CK_UNIX;
    snprintf(c->peer, sizeof c->peer, "%s", is_tcp ? "tcp" : "unix");
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->refs++;
    if (is_tcp) {
        uv_timer_init(s->loop, &c->login_timer);
        c->login_timer.data = c;
        uv_timer_init(s->loop, &c->hold_timer);
        c->hold_timer.data = c;
    }
    if (is_tcp && s->tls != NULL && rpc_stream_use_tls(&c->st, s->tls, NULL) < 0) {
        conn_close(c, "out of memory");
        return;
    }
    rv = rpc_stream_accept(listener, &c->st);
    if (rv < 0) {
        conn_close(c, uv_strerror(rv));
        return;
    }
    if (!is_tcp) {
        if (s->n_unix >= s->max_unix) {
            refuse(c, &s->log_refused, "too many unix socket connections");
            return;
        }
        c->counted = true;
        s->n_unix++;
        s->st.conns++;
        c->authed = true; /* the socket is mode 0600: its peers are root */
        c->role = RPC_ROLE_ADMIN;
        snprintf(c->key_name, sizeof c->key_name, "%s", RPC_UNIX_KEY_NAME);
        conn_set_reading(c);
        return;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (uv_tcp_getpeername(&c->st.h.tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip,
                     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            snprintf(c->peer, sizeof c->peer, "%s:%u", ip,
                     ntohs(((struct sockaddr_in *)&ss)->sin_port));
        }
    } else {
        conn_close(c, NULL); /* gone already */
        return;
    }
    if (!admit_unauth(c, &ss)) {
        return;
    }
    uv_tcp_nodelay(&c->st.h.tcp, 1);
    uv_tcp_keepalive(&c->st.h.tcp, 1, 60);
    /* a deadline, not an idle timer: calls before login do not extend it */
    uv_timer_start(&c->login_timer, login_deadline, s->login_timeout_ms, 0);
    conn_set_reading(c);
}

/* ------------------------------------------------------------------ */
/* replies */

static void call_free(struct rpc_call *call)
{
    struct conn *c = call->c;
    c->inflight--;
    if (c->srv != NULL) {
        c->srv->st.calls_inflight--;
    }
    if (call->big) {
        free_off_loop(c->srv != NULL ? c->srv->loop : NULL, call->params);
    } else {
        nv_free(call->params);
    }
    free(call->method);
    free(call->client_id);
    free(call);
    conn_unref(c);
}

static void account(const struct rpc_call *call, bool error)
{
    struct rpc_server *s = call->c->srv;
    if (s == NULL || call->mi >= s->n_methods) {
        return;
    }
    struct rpc_method_stats *st = &s->methods[call->mi].st;
    st->calls++;
    st->errors += error;
    nv_hist_add(&st->latency, uv_hrtime() - call->t0);
}

void rpc_reply(struct rpc_call *call, struct nv *result)
{
    account(call, false);
    if (call->c->srv != NULL && !call->noreply) {
        send_reply(call->c, call->msgid, NULL, result);
    }
    nv_free(result);
    call_free(call);
}

void rpc_reply_error(struct rpc_call *call, const struct nv_err *err)
{
    account(call, true);
    if (call->c->srv != NULL && !call->noreply) {
        send_error(call->c, call->msgid, err);
    }
    call_free(call);
}

const char *rpc_call_method(const struct rpc_call *call)
{
    return call->method;
}
int64_t rpc_call_msgid(const struct rpc_call *call)
{
    return call->msgid;
}
const char *rpc_call_client_id(const struct rpc_call *call)
{
    return call->client_id;
}
bool rpc_call_gone(const struct rpc_call *call)
{
    return call->c->srv == NULL || call->c->closing;
}
bool rpc_call_trusted(const struct rpc_call *call)
{
    return call->c->authed;
}
enum rpc_role rpc_call_role(const struct rpc_call *call)
{
    return call->c->authed ? call->c->role : RPC_ROLE_NONE;
}
const char *rpc_call_key_name(const struct rpc_call *call)
{
    return call->c->authed ? call->c->key_name : "";
}

void srv__ref(struct rpc_server *s)
{
    s->refs++;
}
void srv__unref(struct rpc_server *s)
{
    srv_unref(s);
}

void srv__resume(struct conn *c)
{
    c->verifying = false;
    if (c->srv == NULL || c->closing) {
        return;
    }
    conn_ref(c);
    conn_set_reading(c);
    process(c);
    conn_unref(c);
}

/* ------------------------------------------------------------------ */
/* public */

int rpc_server_register(struct rpc_server *s, const char *name, rpc_method_fn fn, void *ctx,
                        unsigned flags)
{
    if ((flags & RPC_M_NOAUTH) && strncmp(name, "auth.", 5) != 0) {
        return -EINVAL; /* before login only auth.* is answered */
    }
    struct method *m = find_method(s, name);
    if (m != NULL) {
        m->fn = fn;
        m->ctx = ctx;
        m->flags = flags;
        return 0;
    }
    if (s->n_methods == s->cap_methods) {
        size_t cap = s->cap_methods ? s->cap_methods * 2 : 64;
        struct method *nm = realloc(s->methods, cap * sizeof *nm);
        if (nm == NULL) {
            return -ENOMEM;
        }
        s->methods = nm;
        s->cap_methods = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        return -ENOMEM;
    }
    s->methods[s->n_methods++] = (struct method){copy, fn, ctx, flags, {0}};
    return 0;
}

void rpc_server_each_method(const struct rpc_server *s,
                            void (*cb)(void *arg, const char *method,
                                       const struct rpc_method_stats *st),
                            void *arg)
{
    for (size_t i = 0; i < s->n_methods; i++) {
        if (s->methods[i].st.calls > 0) {
            cb(arg, s->methods[i].name, &s->methods[i].st);
        }
    }
}

static int listen_unix(struct rpc_server *s, char *errmsg, size_t errlen)
{
    const char *path = s->unix_path;
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(errmsg, errlen, "rpc: socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(errmsg, errlen, "rpc: %s exists and is not a socket", path);
            return -EEXIST;
        }
        /* A socket someone still answers on is not stale. */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, path, strlen(path) + 1);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
            close(fd);
            snprintf(errmsg, errlen, "rpc: %s: another server is listening there", path);
            return -EADDRINUSE;
        }
        if (fd >= 0) {
            close(fd);
        }
        unlink(path);
    }
    uv_pipe_init(s->loop, &s->pipe, 0);
    s->pipe.data = s;
    s->has_pipe = true;
    s->refs++;
    int rv = uv_pipe_bind(&s->pipe, path);
    if (rv == 0) {
        s->unix_bound = true;
        /* before listen(): nobody can connect in between */
        rv = chmod(path, 0600) == 0 ? 0 : -errno;
    }
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->pipe, 128, on_connection);
    }
    if (rv < 0) {
        snprintf(errmsg, errlen, "rpc: listen on %s: %s", path, uv_strerror(rv));
    }
    return rv;
}

static int listen_tcp(struct rpc_server *s, char *errmsg, size_t errlen)
{
    char host[256];
    int port;
    struct sockaddr_storage ss;
    if (split_hostport(s->tcp_addr, host, sizeof host, &port) < 0) {
        snprintf(errmsg, errlen, "rpc: bad TCP address '%s' (want HOST:PORT or [V6]:PORT)",
                 s->tcp_addr);
        return -EINVAL;
    }
    int rv = resolve(s->loop, host, port, &ss);
    if (rv < 0) {
        snprintf(errmsg, errlen, "rpc: resolve %s: %s", host, uv_strerror(rv));
        return rv;
    }
    uv_tcp_init(s->loop, &s->tcp);
    s->tcp.data = s;
    s->has_tcp = true;
    s->refs++;
    rv = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->tcp, 128, on_connection);
    }
    if (rv < 0) {
        snprintf(errmsg, errlen, "rpc: listen on %s: %s", s->tcp_addr, uv_strerror(rv));
    }
    return rv;
}

/* A TCP listener speaks TLS, or plaintext when told so explicitly: an
 * API key crossing a network in the clear must be a choice, not an
 * oversight. */
static int setup_tls(struct rpc_server *s, const struct rpc_server_config *cfg, char *errmsg,
                     size_t errlen)
{
    bool tls = cfg->tls_cert_file != NULL || cfg->tls_key_file != NULL;
    if (!tls && !cfg->tcp_plaintext) {
        snprintf(errmsg, errlen,
                 "rpc: the TCP listener %s needs TLS (a certificate and its key) or an "
                 "explicit plaintext switch",
                 s->tcp_addr);
        return -EINVAL;
    }
    if (tls && cfg->tcp_plaintext) {
        snprintf(errmsg, errlen,
                 "rpc: the TCP listener %s: TLS and plaintext both configured; choose one",
                 s->tcp_addr);
        return -EINVAL;
    }
    if (!tls) {
        if (cfg->tls_client_certs || cfg->tls_ca_file != NULL) {
            snprintf(errmsg, errlen, "rpc: client certificates need TLS (a certificate and key)");
            return -EINVAL;
        }
        return 0;
    }
    struct rpc_tls_server_opts o = {.cert_file = cfg->tls_cert_file,
                                    .key_file = cfg->tls_key_file,
                                    .ca_file = cfg->tls_ca_file,
                                    .client_certs = cfg->tls_client_certs};
    char msg[300];
    int rv = rpc_tls_server_new(&o, &s->tls, msg, sizeof msg);
    if (rv < 0) {
        snprintf(errmsg, errlen, "rpc: %s", msg);
    }
    return rv;
}

int rpc_server_start(struct uv_loop_s *loop, const struct rpc_server_config *cfg,
                     struct rpc_server **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    if (errlen > 0) {
        errmsg[0] = '\0';
    }
    ignore_sigpipe();
    struct rpc_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->loop = loop;
    s->refs = 1;
    s->max_frame = cfg->max_frame ? cfg->max_frame : DEFAULT_MAX_FRAME;
    s->max_inflight = cfg->max_inflight ? cfg->max_inflight : DEFAULT_MAX_INFLIGHT;
#define OR_DEFAULT(v, d) ((v) ? (v) : (d))
    s->max_conns = OR_DEFAULT(cfg->max_conns, DEFAULT_MAX_CONNS);
    s->max_unix = OR_DEFAULT(cfg->max_unix_conns, DEFAULT_MAX_UNIX_CONNS);
    s->max_unauth = OR_DEFAULT(cfg->max_unauth_conns, DEFAULT_MAX_UNAUTH);
    s->max_unauth_per_addr = OR_DEFAULT(cfg->max_unauth_per_addr, DEFAULT_MAX_UNAUTH_PER_ADDR);
    s->login_timeout_ms = OR_DEFAULT(cfg->login_timeout_ms, DEFAULT_LOGIN_TIMEOUT_MS);
    s->login_backoff_ms = OR_DEFAULT(cfg->login_backoff_ms, DEFAULT_LOGIN_BACKOFF_MS);
    s->max_login_failures = OR_DEFAULT(cfg->max_login_failures, DEFAULT_MAX_LOGIN_FAILURES);
    s->max_sub_queue = OR_DEFAULT(cfg->max_sub_queue, DEFAULT_MAX_SUB_QUEUE);
#undef OR_DEFAULT
    s->unix_path = cfg->unix_path ? strdup(cfg->unix_path) : NULL;
    s->tcp_addr = cfg->tcp_addr ? strdup(cfg->tcp_addr) : NULL;
    s->key_file = cfg->api_key_file ? strdup(cfg->api_key_file) : NULL;
    s->cluster_key = cfg->cluster_key;
    s->cluster_key_ctx = cfg->cluster_key_ctx;
    int rv = 0;
    if ((cfg->unix_path && !s->unix_path) || (cfg->tcp_addr && !s->tcp_addr) ||
        (cfg->api_key_file && !s->key_file)) {
        rv = -ENOMEM;
    }
    if (rv == 0 && s->unix_path == NULL && s->tcp_addr == NULL) {
        snprintf(errmsg, errlen, "rpc: no listener configured");
        rv = -EINVAL;
    }
    rv = rv == 0 ? rpc_server_register(s, "auth.login_with_api_key", srv__m_login, s, RPC_M_NOAUTH)
                 : rv;
    rv = rv == 0 ? rpc_server_register(s, "core.ping", srv__m_ping, s, RPC_M_READONLY) : rv;
    if (rv == 0 && s->tcp_addr != NULL && s->key_file != NULL) {
        /* a key file others can read, or with a bad line, is refused now,
         * not at the first login */
        size_t n_keys;
        bool legacy;
        rv = rpc_keys_validate(s->key_file, &n_keys, &legacy, errmsg, errlen);
    }
    rv = rv == 0 && s->tcp_addr != NULL ? setup_tls(s, cfg, errmsg, errlen) : rv;
    rv = rv == 0 ? rpc_server_register(s, "core.set_options", srv__m_set_options, s,
                                       RPC_M_READONLY)
                 : rv;
    rv = rv == 0 ? rpc_server_register(s, "core.subscribe", srv__m_subscribe, s, RPC_M_READONLY)
                 : rv;
    rv = rv == 0
             ? rpc_server_register(s, "core.unsubscribe", srv__m_unsubscribe, s, RPC_M_READONLY)
             : rv;
    rv = rv == 0 ? rpc_server_register(s, "auth.me", srv__m_me, s, RPC_M_READONLY) : rv;
    rv = rv == 0
             ? rpc_server_register(s, "core.get_methods", srv__m_get_methods, s, RPC_M_READONLY)
             : rv;
    if (rv == 0 && s->unix_path != NULL) {
        rv = listen_unix(s, errmsg, errlen);
    }
    if (rv == 0 && s->tcp_addr != NULL) {
        rv = listen_tcp(s, errmsg, errlen);
    }
    if (rv < 0) {
        if (errlen > 0 && errmsg[0] == '\0') {
            snprintf(errmsg, errlen, "rpc: %s", strerror(-rv));
        }
        /* the handles opened so far close on the loop; s frees itself */
        rpc_server_close(s, NULL, NULL);
        return rv;
    }
    *out = s;
    return 0;
}

/* ------------------------------------------------------------------ */
/* subscriptions */

static bool conn_subscribed(const struct conn *c, const char *collection)
{
    if (c->closing || c->shutting || !c->authed || c->role < RPC_ROLE_READONLY) {
        return false;
    }
    for (unsigned i = 0; i < c->n_subs; i++) {
        if (strcmp(c->subs[i], collection) == 0 || strcmp(c->subs[i], "*") == 0) {
            return true;
        }
    }
    return false;
}

bool rpc_server_wants(const struct rpc_server *s, const char *collection)
{
    if (s == NULL || s->n_subs == 0 || s->closing) {
        return false;
    }
    for (const struct conn *c = s->conns; c != NULL; c = c->next) {
        if (conn_subscribed(c, collection)) {
            return true;
        }
    }
    return false;
}

int rpc_server_set_collections(struct rpc_server *s, const char *const *names)
{
    size_t n = 0;
    while (names[n] != NULL) {
        n++;
    }
    char **v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; v != NULL && i < n; i++) {
        if ((v[i] = strdup(names[i])) == NULL) {
            for (size_t j = 0; j < i; j++) {
                free(v[j]);
            }
            free(v);
            v = NULL;
        }
    }
    if (v == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n_collections; i++) {
        free(s->collections[i]);
    }
    free(s->collections);
    s->collections = v;
    s->n_collections = n;
    return 0;
}

/* [2, method, [params]] (the event wrapped in the params array when
 * wrap), NULL when out of memory. */
static char *encode_notification(const char *method, const struct nv *params, bool wrap,
                                 size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t ml = strlen(method);
    int rv = msgpack_pack_array(&pk, 3);
    rv = rv == 0 ? msgpack_pack_int(&pk, 2) : rv;
    rv = rv == 0 ? msgpack_pack_str(&pk, ml) : rv;
    rv = rv == 0 ? msgpack_pack_str_body(&pk, method, ml) : rv;
    rv = rv == 0 && wrap ? msgpack_pack_array(&pk, 1) : rv;
    rv = rv == 0 ? nv_pack(&pk, params) : rv;
    if (rv != 0) {
        msgpack_sbuffer_destroy(&sb);
        return NULL;
    }
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}

/* Queue one encoded notification on c (copied), unless c already has
 * more than the cap queued: then it is a subscriber that does not read,
 * and it is closed rather than left to grow without bound. */
static void send_event(struct conn *c, const char *data, size_t len)
{
    struct rpc_server *s = c->srv;
    size_t queued = rpc_stream_queued(&c->st);
    if (queued > s->max_sub_queue) {
        s->st.slow_subscribers++;
        srv__log_limited(s, &s->log_slow,
                         "%s: closing: a subscriber that does not read its events (%zu bytes "
                         "queued, over the cap of %zu)",
                         c->peer, queued, s->max_sub_queue);
        conn_close(c, NULL);
        return;
    }
    char *copy = malloc(len);
    if (copy == NULL) {
        conn_close(c, "out of memory queueing an event");
        return;
    }
    memcpy(copy, data, len);
    s->st.events_sent++;
    conn_write(c, copy, len);
}

void rpc_server_notify(struct rpc_server *s, const char *collection, struct nv *params)
{
    size_t len = 0;
    char *data = s->n_subs > 0 ? encode_notification(collection, params, false, &len) : NULL;
    nv_free(params);
    struct conn *next;
    for (struct conn *c = s->conns; data != NULL && c != NULL; c = next) {
        next = c->next; /* send_event may close c; it stays listed until its handles close */
        if (conn_subscribed(c, collection)) {
            send_event(c, data, len);
        }
    }
    free(data);
}

void rpc_server_publish(struct rpc_server *s, const char *collection, struct nv *event,
                        struct nv *(*mask)(const struct nv *event))
{
    /* each role's encoding is built once, at its first subscriber */
    char *enc[2] = {NULL, NULL}; /* [0] readonly, [1] admin */
    size_t len[2] = {0, 0};
    bool any = false;
    struct conn *next;
    for (struct conn *c = s->conns; c != NULL && s->n_subs > 0; c = next) {
        next = c->next;
        if (!conn_subscribed(c, collection)) {
            continue;
        }
        any = true;
        int k = c->role >= RPC_ROLE_ADMIN ? 1 : 0;
        if (enc[k] == NULL) {
            struct nv *masked = k == 0 && mask != NULL ? mask(event) : NULL;
            enc[k] = encode_notification(RPC_EVENT_METHOD, masked != NULL ? masked : event, true,
                                         &len[k]);
            nv_free(masked);
            if (enc[k] == NULL || (k == 0 && mask != NULL && masked == NULL)) {
                /* never send an unmasked event to a readonly connection */
                free(enc[k]);
                enc[k] = NULL;
                srv__log_limited(s, &s->log_slow, "event of %s not sent: out of memory",
                                 collection);
                continue;
            }
        }
        send_event(c, enc[k], len[k]);
    }
    s->st.events_published += any;
    free(enc[0]);
    free(enc[1]);
    nv_free(event);
}

void rpc_server_close(struct rpc_server *s, void (*done)(void *arg), void *arg)
{
    if (s == NULL || s->closing) {
        return;
    }
    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    if (s->has_pipe) {
        uv_close((uv_handle_t *)&s->pipe, listener_closed);
        if (s->unix_bound) {
            unlink(s->unix_path);
        }
    }
    if (s->has_tcp) {
        uv_close((uv_handle_t *)&s->tcp, listener_closed);
    }
    for (struct conn *c = s->conns; c != NULL; c = c->next) {
        conn_close(c, NULL);
    }
    srv_unref(s); /* the "open" reference */
}

void rpc_server_get_stats(const struct rpc_server *s, struct rpc_server_stats *st)
{
    *st = s->st;
    st->unauth_conns = s->n_unauth;
    st->unix_conns = s->n_unix;
}
