/* rpc client: one msgpack-rpc connection on a caller's libuv loop
 * (rpc.h "client"). Calls made before the connection is up are queued and
 * sent, in order, once it is. Replies are matched to calls by msgid.
 *
 * Every call's callback runs exactly once:
 *   - with the reply (status 0; err set for a server error, else result);
 *   - with -ECONNREFUSED / -ECONNRESET when the connection fails or is lost
 *     (delivered from a zero timer, never inside rpc_client_call).
 *     -ECONNREFUSED means the call never left (the connection never came
 *     up, or was already lost when the call was made): the server did not
 *     run it. -ECONNRESET means it may have. -EPROTO: TLS failed before
 *     anything was answered (a certificate refused by either side): the
 *     server did not run it either;
 *   - with -ECANCELED inside rpc_client_close.
 * Callbacks may call rpc_client_close (also more than once) and
 * rpc_client_call; the client's memory is released only after its handles
 * have closed on the loop. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <msgpack.h>
#include <uv.h>

#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "stream.h"

#define READ_RESERVE (64u << 10)
#define MAX_MESSAGE (256u << 20) /* a reply larger than this is a broken peer */

struct pend {
    int64_t msgid;
    rpc_client_cb cb;
    void *arg;
    int never_sent; /* made on a dead connection: fails -ECONNREFUSED */
    struct pend *next;
};

struct qbuf {
    struct qbuf *next;
    char *data;
    size_t len;
};

enum cstate { CS_CONNECTING, CS_OPEN, CS_DEAD };

struct rpc_client {
    uv_loop_t *loop;
    char *endpoint;
    bool is_tcp, tls;
    struct rpc_stream st;
    uv_getaddrinfo_t gai;
    uv_timer_t defer;
    bool h_open, t_open, gai_active, closing;
    bool got_bytes; /* anything read on the connection yet */
    enum cstate state;
    int dead_status;
    char *dead_reason;
    struct pend *pending, **ptail; /* sent or queued, waiting for a reply */
    struct pend *failed, **ftail;  /* to be told dead_status */
    struct qbuf *queue, **qtail;   /* encoded before the connection was up */
    msgpack_unpacker up;
    int64_t next_id;
    void (*on_notify)(void *arg, const char *method, const struct nv *params);
    void *notify_arg;
    char host[256];
    char port[8];
};

static void ignore_sigpipe(void)
{
    /* see server.c: writes to a vanished peer must not kill the process */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

static void maybe_free(struct rpc_client *c)
{
    if (!c->closing || c->h_open || c->t_open || c->gai_active) {
        return;
    }
    msgpack_unpacker_destroy(&c->up);
    free(c->dead_reason);
    free(c->endpoint);
    free(c);
}

static void timer_closed(uv_handle_t *h)
{
    struct rpc_client *c = h->data;
    c->t_open = false;
    maybe_free(c);
}

static void stream_closed(struct rpc_stream *st)
{
    struct rpc_client *c = st->data;
    c->h_open = false;
    maybe_free(c);
}

static void fail_list(struct pend *p, int status, const char *reason)
{
    struct nv_err e;
    nv_err_init(&e);
    nv_err_set(&e, NV_E_CALL, -status, "%s", reason);
    while (p != NULL) {
        struct pend *next = p->next;
        if (p->never_sent && status != -ECANCELED && status != -EPROTO) {
            struct nv_err ns;
            nv_err_init(&ns);
            nv_err_set(&ns, NV_E_CALL, ECONNREFUSED, "not sent: %s", reason);
            p->cb(p->arg, -ECONNREFUSED, NULL, &ns);
            nv_err_clear(&ns);
        } else {
            p->cb(p->arg, status, NULL, &e);
        }
        free(p);
        p = next;
    }
    nv_err_clear(&e);
}

static void free_queue(struct rpc_client *c)
{
    for (struct qbuf *q = c->queue; q != NULL;) {
        struct qbuf *next = q->next;
        free(q->data);
        free(q);
        q = next;
    }
    c->queue = NULL;
    c->qtail = &c->queue;
}

static void defer_fired(uv_timer_t *t)
{
    struct rpc_client *c = t->data;
    struct pend *p = c->failed;
    c->failed = NULL;
    c->ftail = &c->failed;
    fail_list(p, c->dead_status, c->dead_reason ? c->dead_reason : "connection lost");
}

/* The connection is gone (or never came): every waiting call will hear
 * status from the defer timer; later calls too. */
static void go_dead(struct rpc_client *c, int status, const char *what, const char *detail)
{
    if (c->state == CS_DEAD || c->closing) {
        return;
    }
    c->state = CS_DEAD;
    c->dead_status = status;
    char *r = NULL;
    if (asprintf(&r, "%s %s: %s", what, c->endpoint, detail) < 0) {
        r = NULL;
    }
    c->dead_reason = r;
    *c->ftail = c->pending;
    if (c->pending != NULL) {
        c->ftail = c->ptail;
    }
    c->pending = NULL;
    c->ptail = &c->pending;
    free_queue(c);
    if (c->h_open) {
        rpc_stream_close(&c->st, stream_closed);
    }
    if (c->failed != NULL) {
        uv_timer_start(&c->defer, defer_fired, 0, 0);
    }
}

static void on_written(struct rpc_stream *st, int status)
{
    struct rpc_client *c = st->data;
    /* (a failed TLS handshake is told by the connect callback; a server
     * that refuses our certificate after the handshake sends an alert
     * and closes: the read side says so, more clearly than EPIPE) */
    if (status < 0 && status != UV_ECANCELED && c->state == CS_OPEN &&
        !(c->tls && !c->got_bytes)) {
        go_dead(c, -ECONNRESET, "lost the connection to", uv_strerror(status));
    }
}

static int send_buf(struct rpc_client *c, char *data, size_t len)
{
    return rpc_stream_write(&c->st, data, len);
}

static struct pend *take_pending(struct rpc_client *c, int64_t msgid)
{
    struct pend **pp = &c->pending;
    for (struct pend *p = c->pending; p != NULL; pp = &p->next, p = p->next) {
        if (p->msgid == msgid) {
            *pp = p->next;
            if (c->ptail == &p->next) {
                c->ptail = pp;
            }
            return p;
        }
    }
    return NULL;
}

static bool obj_int(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    return false;
}

/* One message from the server; false = protocol violation. */
static bool handle_object(struct rpc_client *c, const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3) {
        return false;
    }
    const msgpack_object *a = o->via.array.ptr;
    int64_t type;
    if (!obj_int(&a[0], &type)) {
        return false;
    }
    if (type == 2 && o->via.array.size == 3 && a[1].type == MSGPACK_OBJECT_STR) {
        if (c->on_notify == NULL) {
            return true;
        }
        char *method = strndup(a[1].via.str.ptr, a[1].via.str.size);
        struct nv *params = nv_from_msgpack(&a[2]);
        if (method != NULL && params != NULL) {
            c->on_notify(c->notify_arg, method, params);
        }
        free(method);
        nv_free(params);
        return true;
    }
    int64_t msgid;
    if (type != 1 || o->via.array.size != 4 || !obj_int(&a[1], &msgid)) {
        return false;
    }
    struct pend *p = take_pending(c, msgid);
    if (p == NULL) {
        return true; /* a reply nobody waits for (duplicate msgid): ignored */
    }
    if (a[2].type != MSGPACK_OBJECT_NIL) {
        struct nv *ev = nv_from_msgpack(&a[2]);
        struct nv_err e;
        nv_err_init(&e);
        if (ev == NULL || nv_err_from_nv(&e, ev) < 0) {
            nv_err_set(&e, NV_E_CALL, EPROTO, "malformed error from %s", c->endpoint);
        }
        nv_free(ev);
        p->cb(p->arg, 0, NULL, &e);
        nv_err_clear(&e);
    } else {
        struct nv *result = nv_from_msgpack(&a[3]);
        if (result == NULL) {
            struct nv_err e;
            nv_err_init(&e);
            nv_err_set(&e, NV_E_CALL, ENOMEM, "cannot decode the result");
            p->cb(p->arg, 0, NULL, &e);
            nv_err_clear(&e);
        } else {
            p->cb(p->arg, 0, result, NULL);
        }
        nv_free(result);
    }
    free(p);
    return true;
}

static void on_alloc(struct rpc_stream *st, uv_buf_t *buf)
{
    struct rpc_client *c = st->data;
    if (!msgpack_unpacker_reserve_buffer(&c->up, READ_RESERVE)) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(msgpack_unpacker_buffer(&c->up),
                       (unsigned)msgpack_unpacker_buffer_capacity(&c->up));
}

/* The connection ended: how the calls waiting on it hear it. */
static void on_end(struct rpc_client *c, ssize_t n)
{
    if (n == UV_EPROTO && !c->got_bytes) {
        /* TLS refused before any answer: nothing ran, no retry helps */
        go_dead(c, -EPROTO, "connection to", rpc_stream_why(&c->st));
    } else if (n == UV_EPROTO) {
        go_dead(c, -ECONNRESET, "lost the connection to", rpc_stream_why(&c->st));
    } else if (n == UV_EOF && c->is_tcp && !c->tls && !c->got_bytes) {
        go_dead(c, -ECONNRESET, "lost the connection to",
                "closed by the server before any answer (does it require TLS?)");
    } else {
        go_dead(c, -ECONNRESET, "lost the connection to",
                n == UV_EOF ? "closed by the server" : uv_strerror((int)n));
    }
}

static void on_read(struct rpc_stream *st, ssize_t n)
{
    struct rpc_client *c = st->data;
    if (n < 0) {
        on_end(c, n);
        return;
    }
    if (n == 0 || c->closing || c->state != CS_OPEN) {
        return;
    }
    c->got_bytes = true;
    msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(&c->up, &u);
        if (r == MSGPACK_UNPACK_CONTINUE) {
            if (msgpack_unpacker_message_size(&c->up) > MAX_MESSAGE) {
                go_dead(c, -ECONNRESET, "lost the connection to", "reply too large");
            }
            break;
        }
        if (r != MSGPACK_UNPACK_SUCCESS) {
            go_dead(c, -ECONNRESET, "lost the connection to", "malformed msgpack");
            break;
        }
        if (!handle_object(c, &u.data)) {
            go_dead(c, -ECONNRESET, "lost the connection to", "not a msgpack-rpc message");
            break;
        }
        if (c->closing || c->state != CS_OPEN) {
            break; /* a callback closed the client */
        }
    }
    msgpack_unpacked_destroy(&u);
}

static const struct rpc_stream_ops client_ops = {
    .alloc = on_alloc, .read = on_read, .written = on_written};

static void on_connect(struct rpc_stream *st, int status)
{
    struct rpc_client *c = st->data;
    if (c->closing || c->state != CS_CONNECTING) {
        return;
    }
    if (status == UV_EPROTO) {
        /* the server's certificate was refused, or it refused ours */
        go_dead(c, -EPROTO, "connect to", rpc_stream_why(st));
        return;
    }
    if (status < 0) {
        const char *why = rpc_stream_why(st);
        go_dead(c, -ECONNREFUSED, "connect to", why[0] != '\0' ? why : uv_strerror(status));
        return;
    }
    c->state = CS_OPEN;
    rpc_stream_read_start(&c->st);
    struct qbuf *q = c->queue;
    c->queue = NULL;
    c->qtail = &c->queue;
    while (q != NULL) {
        struct qbuf *next = q->next;
        int rv = c->state == CS_OPEN ? send_buf(c, q->data, q->len) : (free(q->data), 0);
        free(q);
        if (rv < 0) {
            go_dead(c, -ECONNRESET, "lost the connection to", uv_strerror(rv));
        }
        q = next;
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rpc_client *c = req->data;
    c->gai_active = false;
    if (c->closing) {
        uv_freeaddrinfo(res);
        maybe_free(c);
        return;
    }
    int rv = status;
    if (rv == 0) {
        rv = rpc_stream_connect(&c->st, res->ai_addr, on_connect);
    }
    uv_freeaddrinfo(res);
    if (rv < 0) {
        go_dead(c, -ECONNREFUSED, "connect to", uv_strerror(rv));
    }
}

/* "unix:/path", "/path" or "host:port" / "[v6]:port". */
static int parse_endpoint(struct rpc_client *c, const char *ep)
{
    if (strncmp(ep, "unix:", 5) == 0 || ep[0] == '/' || ep[0] == '.') {
        return 0;
    }
    if (strncmp(ep, "tcp:", 4) == 0) {
        ep += 4;
    }
    const char *host = ep, *colon;
    size_t hl;
    if (ep[0] == '[') {
        const char *e = strchr(ep, ']');
        if (e == NULL || e[1] != ':') {
            return -EINVAL;
        }
        host = ep + 1;
        hl = (size_t)(e - host);
        colon = e + 1;
    } else {
        colon = strrchr(ep, ':');
        if (colon == NULL || memchr(ep, ':', (size_t)(colon - ep)) != NULL) {
            return -EINVAL;
        }
        hl = (size_t)(colon - ep);
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (hl == 0 || hl >= sizeof c->host || colon[1] == '\0' || *end != '\0' || port <= 0 ||
        port > 65535) {
        return -EINVAL;
    }
    memcpy(c->host, host, hl);
    c->host[hl] = '\0';
    snprintf(c->port, sizeof c->port, "%ld", port);
    c->is_tcp = true;
    return 0;
}

/* TLS on the TCP connection unless plaintext was asked for. */
static int setup_tls(struct rpc_client *c, const struct rpc_tls_opts *tls)
{
    static const struct rpc_tls_opts dflt = {0};
    if (!c->is_tcp || (tls != NULL && tls->plaintext)) {
        return 0;
    }
    char msg[300];
    struct rpc_tls *t = NULL;
    int rv = rpc_tls_client_new(tls != NULL ? tls : &dflt, &t, msg, sizeof msg);
    if (rv == 0) {
        /* the connection keeps what it needs of the context */
        rv = rpc_stream_use_tls(&c->st, t, c->host) < 0 ? -ENOMEM : 0;
        rpc_tls_free(t);
        snprintf(msg, sizeof msg, "out of memory");
    }
    c->tls = rv == 0;
    if (rv < 0) {
        go_dead(c, -EPROTO, "TLS setup for", msg);
    }
    return rv;
}

int rpc_client_open(struct uv_loop_s *loop, const char *endpoint, const struct rpc_tls_opts *tls,
                    struct rpc_client **out)
{
    *out = NULL;
    ignore_sigpipe();
    struct rpc_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->loop = loop;
    c->ptail = &c->pending;
    c->ftail = &c->failed;
    c->qtail = &c->queue;
    c->next_id = 1;
    c->state = CS_CONNECTING;
    c->endpoint = strdup(endpoint);
    if (c->endpoint == NULL || parse_endpoint(c, endpoint) < 0) {
        int rv = c->endpoint == NULL ? -ENOMEM : -EINVAL;
        free(c->endpoint);
        free(c);
        return rv;
    }
    const char *path = strncmp(endpoint, "unix:", 5) == 0 ? endpoint + 5 : endpoint;
    if (!c->is_tcp && strlen(path) >= sizeof((struct sockaddr_un *)0)->sun_path) {
        free(c->endpoint);
        free(c);
        return -ENAMETOOLONG;
    }
    if (!msgpack_unpacker_init(&c->up, READ_RESERVE)) {
        free(c->endpoint);
        free(c);
        return -ENOMEM;
    }
    uv_timer_init(loop, &c->defer);
    c->defer.data = c;
    c->t_open = true;
    rpc_stream_init(loop, &c->st, c->is_tcp, &client_ops, c);
    c->h_open = true;
    *out = c;
    if (!c->is_tcp) {
        rpc_stream_connect_pipe(&c->st, path, on_connect);
        return 0;
    }
    if (setup_tls(c, tls) < 0) {
        return 0; /* the calls hear why (-EPROTO) */
    }
    struct sockaddr_storage ss;
    int port = atoi(c->port);
    if (uv_ip4_addr(c->host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(c->host, port, (struct sockaddr_in6 *)&ss) == 0) {
        int rv = rpc_stream_connect(&c->st, (struct sockaddr *)&ss, on_connect);
        if (rv < 0) {
            go_dead(c, -ECONNREFUSED, "connect to", uv_strerror(rv));
        }
        return 0;
    }
    /* a host name: resolved without blocking the loop */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    int rv = uv_getaddrinfo(loop, &c->gai, on_resolved, c->host, c->port, &hints);
    if (rv < 0) {
        go_dead(c, -ECONNREFUSED, "resolve", uv_strerror(rv));
    } else {
        c->gai_active = true;
    }
    return 0;
}

int rpc_client_call(struct rpc_client *c, const char *method, struct nv *params, int64_t msgid,
                    rpc_client_cb cb, void *arg)
{
    if (c->closing) {
        nv_free(params);
        return -ECANCELED;
    }
    if (msgid < 0) {
        msgid = c->next_id++;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t ml = strlen(method);
    int rv = msgpack_pack_array(&pk, 4);
    rv = rv == 0 ? msgpack_pack_int(&pk, 0) : rv;
    rv = rv == 0 ? msgpack_pack_int64(&pk, msgid) : rv;
    rv = rv == 0 ? msgpack_pack_str(&pk, ml) : rv;
    rv = rv == 0 ? msgpack_pack_str_body(&pk, method, ml) : rv;
    if (rv == 0 && params == NULL) {
        rv = msgpack_pack_array(&pk, 0);
    } else if (rv == 0) {
        rv = nv_pack(&pk, params);
    }
    nv_free(params);
    struct pend *p = rv == 0 ? calloc(1, sizeof *p) : NULL;
    if (p == NULL) {
        msgpack_sbuffer_destroy(&sb);
        return -ENOMEM;
    }
    p->msgid = msgid;
    p->cb = cb;
    p->arg = arg;
    size_t len = sb.size;
    char *data = msgpack_sbuffer_release(&sb);
    if (c->state == CS_DEAD) {
        free(data);
        p->never_sent = 1;
        *c->ftail = p;
        c->ftail = &p->next;
        uv_timer_start(&c->defer, defer_fired, 0, 0);
        return 0;
    }
    *c->ptail = p;
    c->ptail = &p->next;
    if (c->state == CS_CONNECTING) {
        struct qbuf *q = malloc(sizeof *q);
        if (q == NULL) {
            free(data);
            free(take_pending(c, msgid));
            return -ENOMEM;
        }
        q->next = NULL;
        q->data = data;
        q->len = len;
        *c->qtail = q;
        c->qtail = &q->next;
        return 0;
    }
    rv = send_buf(c, data, len);
    if (rv < 0) {
        /* the call is in the pending list: it hears about the loss */
        go_dead(c, -ECONNRESET, "lost the connection to", uv_strerror(rv));
    }
    return 0;
}

static void login_ignored(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)arg, (void)status, (void)result, (void)err; /* seen on the next calls */
}

int rpc_client_login(struct rpc_client *c, const char *api_key)
{
    struct nv *p = nv_arr();
    nv_push(p, nv_str(api_key));
    return rpc_client_call(c, "auth.login_with_api_key", p, -1, login_ignored, NULL);
}

void rpc_client_on_notify(struct rpc_client *c,
                          void (*cb)(void *arg, const char *method, const struct nv *params),
                          void *arg)
{
    c->on_notify = cb;
    c->notify_arg = arg;
}

void rpc_client_close(struct rpc_client *c)
{
    if (c == NULL || c->closing) {
        return;
    }
    c->closing = true;
    free_queue(c);
    if (c->gai_active) {
        uv_cancel((uv_req_t *)&c->gai);
    }
    if (c->h_open) {
        rpc_stream_close(&c->st, stream_closed);
    }
    uv_close((uv_handle_t *)&c->defer, timer_closed);
    /* Callbacks may run rpc_client_close again: harmless, closing is set
     * and the memory lives until the close callbacks. */
    struct pend *failed = c->failed, *pending = c->pending;
    c->failed = c->pending = NULL;
    c->ftail = &c->failed;
    c->ptail = &c->pending;
    fail_list(failed, c->dead_status, c->dead_reason ? c->dead_reason : "connection lost");
    fail_list(pending, -ECANCELED, "call cancelled: the client was closed");
}
