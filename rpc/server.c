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
 * Lifetimes: a connection is referenced by itself while its handles are
 * open and by every call in flight. A reply to a closed connection is
 * dropped; the call and (last) the connection are freed then. The server
 * object lives until every listener and connection handle is closed. */
#include <errno.h>
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
    fprintf(stderr, "rpc: %s: %s%s%s\n", c->peer, what, detail ? ": " : "", detail ? detail : "");
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
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s->unix_path);
    free(s->tcp_addr);
    free(s->key_file);
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

static void conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
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
    if (c->counted) {
        s->st.conns--;
    }
    s->st.calls_inflight -= c->inflight;
    c->srv = NULL;
    conn_unref(c);
    srv_unref(s);
}

/* why NULL = a normal close (EOF, shutdown), not logged. */
static void conn_close(struct conn *c, const char *why)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (why != NULL) {
        srv__log(c, "closing", why);
    }
    c->nclose = 1;
    if (c->is_tcp) {
        c->nclose++;
        uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
    }
    uv_close(&c->h.handle, conn_handle_closed);
}

static void bad_frame(struct conn *c, const char *why)
{
    c->srv->st.bad_frames++;
    conn_close(c, why);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    free(w->buf.base);
    free(w);
    if (status < 0 && status != UV_ECANCELED) {
        /* EPIPE / ECONNRESET: the peer went away; not worth a log line */
        conn_close(c, status == UV_EPIPE || status == UV_ECONNRESET ? NULL : uv_strerror(status));
    } else if (c->read_paused && !c->closing &&
               uv_stream_get_write_queue_size(&c->h.stream) < WQ_LOW) {
        c->read_paused = false;
        uv_read_start(&c->h.stream, on_alloc, on_read);
    }
    conn_unref(c);
}

/* Queue data (taken) on the connection. */
static void conn_write(struct conn *c, char *data, size_t len)
{
    if (c->closing) {
        free(data);
        return;
    }
    struct wreq *w = malloc(sizeof *w);
    if (w == NULL) {
        free(data);
        conn_close(c, "out of memory");
        return;
    }
    w->buf = uv_buf_init(data, (unsigned)len);
    w->c = c;
    conn_ref(c);
    int rv = uv_write(&w->req, &c->h.stream, &w->buf, 1, write_done);
    if (rv < 0) {
        free(data);
        free(w);
        conn_unref(c);
        conn_close(c, rv == UV_EPIPE || rv == UV_ECONNRESET ? NULL : uv_strerror(rv));
        return;
    }
    /* Back-pressure: a peer that sends calls but does not read replies
     * stops being read until it catches up. */
    if (!c->read_paused && uv_stream_get_write_queue_size(&c->h.stream) > WQ_HIGH) {
        c->read_paused = true;
        uv_read_stop(&c->h.stream);
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

static void dispatch(struct conn *c, int64_t msgid, const char *method, struct nv *params)
{
    struct rpc_server *s = c->srv;
    s->st.calls_total++;
    const struct method *m = find_method(s, method);
    if (!c->authed && (m == NULL || !(m->flags & RPC_M_NOAUTH))) {
        nv_free(params);
        send_error_set(c, msgid, NV_E_NOT_AUTHENTICATED, NV_ENOTAUTHENTICATED, "Not authenticated");
        return;
    }
    if (m == NULL) {
        nv_free(params);
        struct nv_err e;
        nv_err_init(&e);
        nv_err_set(&e, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist: \"%s\"", method);
        send_error(c, msgid, &e);
        nv_err_clear(&e);
        return;
    }
    if (c->inflight >= s->max_inflight) {
        nv_free(params);
        char msg[128];
        snprintf(msg, sizeof msg, "Maximum number of concurrent calls (%u) has exceeded",
                 s->max_inflight);
        send_error_set(c, msgid, NV_E_TOO_MANY, EAGAIN, msg);
        return;
    }
    struct rpc_call *call = calloc(1, sizeof *call);
    if (call == NULL || (call->method = strdup(method)) == NULL ||
        (c->client_id != NULL && (call->client_id = strdup(c->client_id)) == NULL)) {
        if (call != NULL) {
            free(call->method);
        }
        free(call);
        nv_free(params);
        send_error_set(c, msgid, NV_E_CALL, ENOMEM, "[ENOMEM] out of memory");
        return;
    }
    call->c = c;
    call->msgid = msgid;
    call->params = params;
    conn_ref(c);
    c->inflight++;
    s->st.calls_inflight++;
    m->fn(call, call->params, m->ctx);
}

/* One complete message: [0, msgid, method, params]. */
static void handle_message(struct conn *c, const char *p, size_t n)
{
    struct srv_request rq;
    const char *why = NULL;
    if (srv__decode_request(p, n, &rq, &why) < 0) {
        bad_frame(c, why);
        return;
    }
    if (c->is_tcp && !c->authed) {
        uv_timer_again(&c->idle);
    }
    if (rq.params == NULL) {
        c->srv->st.calls_total++;
        send_error_set(c, rq.msgid, NV_E_BAD_REQUEST, EINVAL,
                       "params must be an array of positional arguments (with string map keys)");
        return;
    }
    dispatch(c, rq.msgid, rq.method, rq.params);
}

static void process(struct conn *c)
{
    size_t max = c->srv->max_frame;
    while (!c->closing && c->off < c->len) {
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = h->data;
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

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = st->data;
    if (n < 0) {
        conn_close(c, n == UV_EOF || n == UV_ECONNRESET ? NULL : uv_strerror((int)n));
        return;
    }
    if (n == 0 || c->closing) {
        return;
    }
    c->len += (size_t)n;
    conn_ref(c);
    process(c);
    conn_unref(c);
}

static void idle_fired(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!c->authed) {
        conn_close(c, "not authenticated within the idle timeout");
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct rpc_server *s = listener->data;
    bool is_tcp = listener == (uv_stream_t *)&s->tcp;
    if (status < 0) {
        fprintf(stderr, "rpc: accept: %s\n", uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    int rv = is_tcp ? uv_tcp_init(s->loop, &c->h.tcp) : uv_pipe_init(s->loop, &c->h.pipe, 0);
    if (rv < 0) {
        free(c);
        return;
    }
    c->h.handle.data = c;
    c->srv = s;
    c->refs = 1;
    c->is_tcp = is_tcp;
    snprintf(c->peer, sizeof c->peer, "%s", is_tcp ? "tcp" : "unix");
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->refs++;
    if (is_tcp) {
        uv_timer_init(s->loop, &c->idle);
        c->idle.data = c;
    }
    rv = uv_accept(listener, &c->h.stream);
    if (rv < 0) {
        conn_close(c, uv_strerror(rv));
        return;
    }
    if (is_tcp) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        char ip[INET6_ADDRSTRLEN] = "?";
        if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_INET6) {
                uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
                snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip,
                         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
            } else {
                uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
                snprintf(c->peer, sizeof c->peer, "%s:%u", ip,
                         ntohs(((struct sockaddr_in *)&ss)->sin_port));
            }
        }
    }
    if (s->st.conns >= s->max_conns) {
        s->st.rejected_conns++;
        conn_close(c, "too many connections");
        return;
    }
    c->counted = true;
    s->st.conns++;
    if (is_tcp) {
        uv_tcp_nodelay(&c->h.tcp, 1);
        uv_tcp_keepalive(&c->h.tcp, 1, 60);
        uv_timer_start(&c->idle, idle_fired, s->idle_ms, s->idle_ms);
    } else {
        c->authed = true; /* the socket is mode 0600: its peers are root */
    }
    uv_read_start(&c->h.stream, on_alloc, on_read);
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
    nv_free(call->params);
    free(call->method);
    free(call->client_id);
    free(call);
    conn_unref(c);
}

void rpc_reply(struct rpc_call *call, struct nv *result)
{
    if (call->c->srv != NULL) {
        send_reply(call->c, call->msgid, NULL, result);
    }
    nv_free(result);
    call_free(call);
}

void rpc_reply_error(struct rpc_call *call, const struct nv_err *err)
{
    if (call->c->srv != NULL) {
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

/* ------------------------------------------------------------------ */
/* public */

int rpc_server_register(struct rpc_server *s, const char *name, rpc_method_fn fn, void *ctx,
                        unsigned flags)
{
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
    s->methods[s->n_methods++] = (struct method){copy, fn, ctx, flags};
    return 0;
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
    s->max_conns = cfg->max_conns ? cfg->max_conns : DEFAULT_MAX_CONNS;
    s->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEFAULT_IDLE_MS;
    s->unix_path = cfg->unix_path ? strdup(cfg->unix_path) : NULL;
    s->tcp_addr = cfg->tcp_addr ? strdup(cfg->tcp_addr) : NULL;
    s->key_file = cfg->api_key_file ? strdup(cfg->api_key_file) : NULL;
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
    rv = rv == 0 ? rpc_server_register(s, "core.ping", srv__m_ping, s, RPC_M_NOAUTH) : rv;
    rv = rv == 0 ? rpc_server_register(s, "core.set_options", srv__m_set_options, s, 0) : rv;
    rv = rv == 0 ? rpc_server_register(s, "core.subscribe", srv__m_subscribe, s, 0) : rv;
    rv = rv == 0 ? rpc_server_register(s, "core.unsubscribe", srv__m_unsubscribe, s, 0) : rv;
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

void rpc_server_notify(struct rpc_server *s, const char *collection, struct nv *params)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t cl = strlen(collection);
    int rv = msgpack_pack_array(&pk, 3);
    rv = rv == 0 ? msgpack_pack_int(&pk, 2) : rv;
    rv = rv == 0 ? msgpack_pack_str(&pk, cl) : rv;
    rv = rv == 0 ? msgpack_pack_str_body(&pk, collection, cl) : rv;
    rv = rv == 0 ? nv_pack(&pk, params) : rv;
    nv_free(params);
    for (struct conn *c = s->conns; rv == 0 && c != NULL; c = c->next) {
        if (c->closing || !c->authed) {
            continue;
        }
        for (unsigned i = 0; i < c->n_subs; i++) {
            if (strcmp(c->subs[i], collection) == 0 || strcmp(c->subs[i], "*") == 0) {
                char *copy = malloc(sb.size);
                if (copy != NULL) {
                    memcpy(copy, sb.data, sb.size);
                    conn_write(c, copy, sb.size);
                }
                break;
            }
        }
    }
    msgpack_sbuffer_destroy(&sb);
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
}
