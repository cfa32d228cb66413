/* consensus: the Raft transport (cons_tr.h) on the libuv loop, no threads,
 * no blocking calls: TLS runs over memory BIOs that this file pumps.
 *
 * A connection, inbound:  TCP accepted -> TLS handshake -> libraft's
 * connection handshake read and authorized -> socketpair; libraft gets
 * one end (accept_cb), the checked stream goes into the other.
 * Outbound: TCP connected -> TLS handshake -> our connection handshake
 * written -> socketpair; libraft gets one end (connect cb) and writes its
 * messages into it; this file encrypts them onto the TCP connection.
 *
 * libraft's connections are one-way: it only writes to the ones it opened
 * and only reads the ones it accepted. Closing works through the pair: a
 * dropped connection closes our end (libraft reads EOF, or its next write
 * fails and it reconnects); libraft closing its end gives us EOF and we
 * close the TCP connection. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "cons_tr.h"
#include "nv_log.h"

/* An inbound connection must be authenticated within this time. */
#define HANDSHAKE_MS 5000
/* Unauthenticated inbound connections at once; more are closed at once
 * (a stranger cannot exhaust the descriptors of a node). */
#define MAX_PENDING_IN 64
/* Stop reading a side while this much waits to be written to the other. */
#define HIGH_WATER ((size_t)4 << 20)
#define LOW_WATER ((size_t)1 << 20)
/* Rate limit of the refusal log: this many lines per window. */
#define LOG_BURST 10
#define LOG_WINDOW_MS 10000

enum conn_state { C_CONNECTING, C_TLS, C_HANDSHAKE, C_OPEN, C_CLOSING };

struct tr;

struct conn {
    struct tr *tr;
    struct conn *prev, *next;
    bool outbound;
    enum conn_state state;
    uint64_t peer_id; /* dialed (outbound) or authenticated (inbound) */
    char peer[72];    /* "ip:port" for the log */
    uv_tcp_t tcp;
    uv_pipe_t inner; /* our end of the pair */
    uv_timer_t timer;
    uv_connect_t connect;
    int handles;
    bool inner_open;
    bool tcp_paused, inner_paused;
    SSL *ssl;
    struct raft_uv_connect *req; /* outbound, until handed to libraft */
    uint64_t started;            /* uv_hrtime() at the start */
    struct cons_wire_hs hs;
    struct cons_wire wire;
    uint8_t *out; /* checked bytes for libraft, collected per read */
    size_t out_len, out_cap;
    bool out_failed;
};

struct tr {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    struct cons_tr_config cfg;
    struct cons_tls *tls;
    uint64_t id;
    const char *address;
    uv_tcp_t listener;
    bool listener_open;
    raft_uv_accept_cb accept_cb;
    struct conn *conns;
    unsigned pending_in;
    bool closing;
    raft_uv_transport_close_cb close_cb;
    struct cons_tr_stats stats;
    uint64_t log_window;
    unsigned log_lines, log_suppressed;
    uint8_t rbuf[64 * 1024]; /* network reads */
    uint8_t pbuf[16 * 1024]; /* TLS plaintext */
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    bool to_tcp;
    uv_buf_t buf;
};

static void conn_close(struct conn *c);
static void inner_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf);
static void inner_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void tcp_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf);
static void tcp_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* ------------------------------------------------------------------ */
/* log */

static void tr_log(struct tr *tr, const struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tr_log(struct tr *tr, const struct conn *c, const char *fmt, ...)
{
    uint64_t now = uv_now(tr->loop);
    if (now - tr->log_window >= LOG_WINDOW_MS || tr->log_window == 0) {
        if (tr->log_suppressed > 0) {
            nv_logf(NV_LOG_WARNING, "consensus[%" PRIu64 "]: raft transport: %u more refusals not logged",
                    tr->id, tr->log_suppressed);
        }
        tr->log_window = now ? now : 1;
        tr->log_lines = 0;
        tr->log_suppressed = 0;
    }
    if (tr->log_lines >= LOG_BURST) {
        tr->log_suppressed++;
        return;
    }
    tr->log_lines++;
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char who[40] = "";
    if (c->peer_id != 0) {
        snprintf(who, sizeof who, " (node %" PRIu64 ")", c->peer_id);
    }
    nv_logf(NV_LOG_WARNING, "consensus[%" PRIu64 "]: raft transport: %s %s%s: %s", tr->id,
            c->outbound ? "to" : "from", c->peer, who, line);
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "connection closed during the handshake";
}

/* ------------------------------------------------------------------ */
/* connection lifetime */

static struct conn *conn_new(struct tr *tr, bool outbound)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->tr = tr;
    c->outbound = outbound;
    c->started = uv_hrtime();
    c->tcp.data = c;
    c->inner.data = c;
    c->timer.data = c;
    cons_wire_hs_init(&c->hs);
    c->next = tr->conns;
    if (tr->conns != NULL) {
        tr->conns->prev = c;
    }
    tr->conns = c;
    return c;
}

static void tr_maybe_closed(struct tr *tr)
{
    if (tr->closing && tr->conns == NULL && !tr->listener_open && tr->close_cb != NULL) {
        raft_uv_transport_close_cb cb = tr->close_cb;
        tr->close_cb = NULL;
        cb(tr->t);
    }
}

static void conn_free(struct conn *c)
{
    struct tr *tr = c->tr;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        tr->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    SSL_free(c->ssl);
    cons_wire_free(&c->wire);
    free(c->out);
    struct raft_uv_connect *req = c->req;
    free(c);
    if (req != NULL) {
        /* libraft retries after its connect delay (or gives up at close) */
        req->cb(req, NULL, tr->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
    }
    tr_maybe_closed(tr);
}

static void handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles == 0) {
        conn_free(c);
    }
}

static void conn_close(struct conn *c)
{
    if (c->state == C_CLOSING) {
        return;
    }
    if (!c->outbound && c->state != C_OPEN) {
        c->tr->pending_in--;
    }
    c->state = C_CLOSING;
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
    if (c->inner_open) {
        uv_close((uv_handle_t *)&c->inner, handle_closed);
    }
}

/* Drop a connection for a reason worth a log line. */
static void conn_refuse(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_refuse(struct conn *c, const char *fmt, ...)
{
    if (c->state == C_CLOSING) {
        return;
    }
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!c->outbound && c->state != C_OPEN) {
        c->tr->stats.refused++;
    }
    if (!c->tr->closing) {
        tr_log(c->tr, c, "%s; connection dropped", why);
    }
    conn_close(c);
}

static void timeout_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    conn_refuse(c, "not authenticated within %d ms", HANDSHAKE_MS);
}

static void peer_name(struct conn *c)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
            uv_ip6_name(s6, ip, sizeof ip);
            port = ntohs(s6->sin6_port);
            snprintf(c->peer, sizeof c->peer, "[%s]:%d", ip, port);
            return;
        }
        struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
        uv_ip4_name(s4, ip, sizeof ip);
        port = ntohs(s4->sin_port);
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
}

/* ------------------------------------------------------------------ */
/* writes */

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    bool to_tcp = w->to_tcp;
    free(w);
    if (c->state == C_CLOSING) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* Resume the side we stopped reading once the backlog drained. */
    if (to_tcp && c->inner_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < LOW_WATER) {
        c->inner_paused = false;
        uv_read_start((uv_stream_t *)&c->inner, inner_alloc, inner_read_cb);
    }
}

static void inner_write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    free(w);
    if (c->state == C_CLOSING) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->tcp_paused && uv_stream_get_write_queue_size((uv_stream_t *)&c->inner) < LOW_WATER) {
        c->tcp_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read_cb);
    }
}

static struct wreq *wreq_new(struct conn *c, size_t len)
{
    struct wreq *w = malloc(sizeof *w + len);
    if (w != NULL) {
        w->c = c;
        w->buf = uv_buf_init((char *)(w + 1), (unsigned)len);
    }
    return w;
}

static int stream_write(struct conn *c, uv_stream_t *s, struct wreq *w, uv_write_cb cb)
{
    int rv = uv_write(&w->req, s, &w->buf, 1, cb);
    if (rv < 0) {
        free(w);
        conn_close(c);
    }
    return rv;
}

/* Bytes onto the TCP connection. */
static void tcp_send(struct conn *c, const void *p, size_t len)
{
    struct wreq *w = wreq_new(c, len);
    if (w == NULL) {
        conn_close(c);
        return;
    }
    memcpy(w->buf.base, p, len);
    w->to_tcp = true;
    if (stream_write(c, (uv_stream_t *)&c->tcp, w, write_cb) < 0) {
        return;
    }
    if (c->inner_open && !c->inner_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > HIGH_WATER) {
        c->inner_paused = true;
        uv_read_stop((uv_stream_t *)&c->inner);
    }
}

/* Whatever TLS produced, onto the TCP connection. */
static void net_flush(struct conn *c)
{
    BIO *wb = SSL_get_wbio(c->ssl);
    size_t pending;
    while (c->state != C_CLOSING && (pending = BIO_ctrl_pending(wb)) > 0) {
        struct wreq *w = wreq_new(c, pending);
        if (w == NULL) {
            conn_close(c);
            return;
        }
        int got = BIO_read(wb, w->buf.base, (int)pending);
        if (got <= 0) {
            free(w);
            return;
        }
        w->buf.len = (size_t)got;
        w->to_tcp = true;
        if (stream_write(c, (uv_stream_t *)&c->tcp, w, write_cb) < 0) {
            return;
        }
    }
    if (c->inner_open && !c->inner_paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > HIGH_WATER) {
        c->inner_paused = true;
        uv_read_stop((uv_stream_t *)&c->inner);
    }
}

/* Application bytes to the peer: encrypted, or as they are. */
static void app_send(struct conn *c, const void *p, size_t len)
{
    if (c->ssl == NULL) {
        tcp_send(c, p, len);
        return;
    }
    while (len > 0 && c->state != C_CLOSING) {
        int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
        int n = SSL_write(c->ssl, p, chunk);
        if (n <= 0) {
            conn_refuse(c, "TLS write: %s", ssl_reason());
            return;
        }
        p = (const uint8_t *)p + n;
        len -= (size_t)n;
    }
    net_flush(c);
}

/* Checked bytes collected for libraft (cons_wire_feed's out). */
static void out_append(void *arg, const uint8_t *p, size_t n)
{
    struct conn *c = arg;
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
        while (cap < c->out_len + n) {
            cap *= 2;
        }
        uint8_t *b = realloc(c->out, cap);
        if (b == NULL) {
            c->out_failed = true;
            return;
        }
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void out_flush(struct conn *c)
{
    if (c->out_len == 0 || c->state == C_CLOSING) {
        return;
    }
    struct wreq *w = wreq_new(c, c->out_len);
    if (w == NULL) {
        conn_close(c);
        return;
    }
    memcpy(w->buf.base, c->out, c->out_len);
    c->out_len = 0;
    if (c->out_cap > 1024 * 1024) { /* after a big message, give it back */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    w->to_tcp = false;
    if (stream_write(c, (uv_stream_t *)&c->inner, w, inner_write_cb) < 0) {
        return;
    }
    if (!c->tcp_paused && uv_stream_get_write_queue_size((uv_stream_t *)&c->inner) > HIGH_WATER) {
        c->tcp_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* ------------------------------------------------------------------ */
/* hand-over to libraft */

/* A socketpair: *raft_end (allocated with raft_malloc: libraft frees it
 * after closing) and our end in c->inner. */
static int make_pair(struct conn *c, uv_stream_t **raft_end)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
        return -errno;
    }
    uv_pipe_t *p = raft_malloc(sizeof *p);
    if (p == NULL) {
        close(fds[0]);
        close(fds[1]);
        return -ENOMEM;
    }
    uv_pipe_init(c->tr->loop, p, 0);
    int rv = uv_pipe_open(p, fds[0]);
    if (rv < 0) {
        close(fds[0]);
        close(fds[1]);
        uv_close((uv_handle_t *)p, (uv_close_cb)raft_free);
        return rv;
    }
    uv_pipe_init(c->tr->loop, &c->inner, 0);
    c->handles++;
    c->inner_open = true;
    rv = uv_pipe_open(&c->inner, fds[1]);
    if (rv < 0) {
        close(fds[1]);
        uv_close((uv_handle_t *)p, (uv_close_cb)raft_free);
        return rv;
    }
    uv_read_start((uv_stream_t *)&c->inner, inner_alloc, inner_read_cb);
    *raft_end = (uv_stream_t *)p;
    return 0;
}

/* Outbound: the peer is who we dialed (as far as the mode can tell); say
 * who we are, then libraft may write. */
static void outbound_ready(struct conn *c)
{
    struct tr *tr = c->tr;
    uint8_t hs[CONS_WIRE_HANDSHAKE_FIXED + CONS_WIRE_MAX_ADDRESS];
    size_t len = cons_wire_handshake_encode(tr->id, tr->address, hs, sizeof hs);
    uv_stream_t *stream = NULL;
    int rv = len > 0 ? make_pair(c, &stream) : -EINVAL;
    if (rv < 0) {
        conn_refuse(c, "cannot set up the connection: %s", uv_strerror(rv));
        return;
    }
    app_send(c, hs, len);
    if (c->state == C_CLOSING) {
        uv_close((uv_handle_t *)stream, (uv_close_cb)raft_free);
        return;
    }
    uv_timer_stop(&c->timer);
    c->state = C_OPEN;
    tr->stats.connected++;
    tr->stats.handshake_us += (uv_hrtime() - c->started) / 1000;
    struct raft_uv_connect *req = c->req;
    c->req = NULL;
    req->cb(req, stream, 0);
}

/* Inbound: who the handshake names must be who authenticated, and a
 * member. Returns false (connection dropped) otherwise. */
static bool inbound_authorize(struct conn *c, char *address, size_t len)
{
    struct tr *tr = c->tr;
    uint64_t id = c->hs.id;
    const char *why = NULL;
    if (c->ssl != NULL && cons_tls_peer_id(c->ssl, id, &why) == 0) {
        c->peer_id = id;
        conn_refuse(c, "handshake as node %" PRIu64 " refused: %s", id, why);
        return false;
    }
    c->peer_id = id;
    if (id == tr->id) {
        conn_refuse(c, "the peer claims this node's own id %" PRIu64, id);
        return false;
    }
    address[0] = '\0';
    if (!tr->cfg.allowed(tr->cfg.arg, id, address, len)) {
        conn_refuse(c, "node %" PRIu64 " is not a member of the cluster configuration", id);
        return false;
    }
    if (address[0] == '\0') { /* joining: the leader is not known here yet */
        snprintf(address, len, "%s", c->hs.address);
    }
    return true;
}

static void wire_in(struct conn *c, const uint8_t *p, size_t len)
{
    int rv = cons_wire_feed(&c->wire, p, len, out_append, c);
    if (rv < 0 || c->out_failed) {
        c->tr->stats.dropped++;
        c->out_len = 0;
        conn_refuse(c, "frame check: %s", rv == -EPROTO ? c->wire.why : "out of memory");
        return;
    }
    out_flush(c);
}

static void inbound_handshake(struct conn *c, const uint8_t *p, size_t len)
{
    struct tr *tr = c->tr;
    size_t used = 0;
    const char *why = NULL;
    int rv = cons_wire_hs_feed(&c->hs, p, len, &used, &why);
    if (rv < 0) {
        conn_refuse(c, "%s", why);
        return;
    }
    if (rv == 0) {
        return;
    }
    char address[CONS_WIRE_MAX_ADDRESS];
    if (!inbound_authorize(c, address, sizeof address)) {
        return;
    }
    uv_stream_t *stream = NULL;
    rv = make_pair(c, &stream);
    if (rv < 0) {
        conn_refuse(c, "cannot set up the connection: %s", uv_strerror(rv));
        return;
    }
    uv_timer_stop(&c->timer);
    c->state = C_OPEN;
    tr->pending_in--;
    tr->stats.accepted++;
    cons_wire_init(&c->wire, c->peer_id);
    tr->accept_cb(tr->t, c->peer_id, address, stream);
    if (used < len) {
        wire_in(c, p + used, len - used);
    }
}

/* Plaintext from the peer. */
static void app_in(struct conn *c, const uint8_t *p, size_t len)
{
    if (c->outbound) {
        conn_refuse(c, "the node we connected to sent data");
    } else if (c->state == C_OPEN) {
        wire_in(c, p, len);
    } else {
        inbound_handshake(c, p, len);
    }
}

/* ------------------------------------------------------------------ */
/* TLS pump */

static void tls_established(struct conn *c)
{
    if (c->outbound) {
        outbound_ready(c);
    } else {
        c->state = C_HANDSHAKE;
    }
}

static void tls_drive(struct conn *c)
{
    if (c->state == C_TLS) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        net_flush(c);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                const char *v = NULL;
                long vr = SSL_get_verify_result(c->ssl);
                if (vr != X509_V_OK) {
                    v = X509_verify_cert_error_string(vr);
                }
                conn_refuse(c, "TLS handshake failed: %s%s%s", ssl_reason(), v ? ": " : "",
                            v ? v : "");
            }
            return;
        }
        tls_established(c);
    }
    while (c->state != C_CLOSING) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, c->tr->pbuf, sizeof c->tr->pbuf);
        if (r > 0) {
            app_in(c, c->tr->pbuf, (size_t)r);
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            conn_close(c); /* close_notify */
        } else {
            conn_refuse(c, "TLS: %s", ssl_reason());
        }
        return;
    }
    if (c->state != C_CLOSING) {
        net_flush(c);
    }
}

/* ------------------------------------------------------------------ */
/* reads */

static void tcp_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)size;
    *buf = uv_buf_init((char *)c->tr->rbuf, sizeof c->tr->rbuf);
}

static void tcp_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (c->state == C_CLOSING || n == 0) {
        return;
    }
    if (n < 0) {
        if (c->state != C_OPEN && n != UV_EOF) {
            conn_refuse(c, "%s", uv_strerror((int)n));
        } else if (c->state != C_OPEN && !c->outbound) {
            conn_refuse(c, "closed before the handshake completed");
        } else {
            conn_close(c);
        }
        return;
    }
    if (c->ssl == NULL) {
        app_in(c, (const uint8_t *)buf->base, (size_t)n);
        return;
    }
    if (BIO_write(SSL_get_rbio(c->ssl), buf->base, (int)n) != (int)n) {
        conn_close(c);
        return;
    }
    tls_drive(c);
}

static void inner_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)size;
    *buf = uv_buf_init((char *)c->tr->rbuf, sizeof c->tr->rbuf);
}

/* libraft wrote (outbound) or closed its end (either way). */
static void inner_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (c->state == C_CLOSING || n == 0) {
        return;
    }
    if (n < 0) {
        if (c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
            SSL_shutdown(c->ssl);
            net_flush(c);
        }
        conn_close(c);
        return;
    }
    if (!c->outbound) {
        return; /* libraft never writes on connections it accepted */
    }
    app_send(c, buf->base, (size_t)n);
}

/* ------------------------------------------------------------------ */
/* accept and connect */

static void start_tls_or_plain(struct conn *c)
{
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 15);
    peer_name(c);
    uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read_cb);
    if (c->tr->tls == NULL) {
        if (c->outbound) {
            outbound_ready(c);
        } else {
            c->state = C_HANDSHAKE;
        }
        return;
    }
    c->ssl = cons_tls_conn(c->tr->tls, c->outbound ? c->peer_id : 0);
    if (c->ssl == NULL) {
        conn_refuse(c, "TLS: %s", ssl_reason());
        return;
    }
    c->state = C_TLS;
    if (c->outbound) {
        tls_drive(c); /* ClientHello */
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct tr *tr = server->data;
    if (tr->closing || status < 0) {
        return;
    }
    struct conn *c = conn_new(tr, false);
    if (c == NULL) {
        return;
    }
    uv_tcp_init(tr->loop, &c->tcp);
    uv_timer_init(tr->loop, &c->timer);
    c->handles = 2;
    c->state = C_HANDSHAKE;
    tr->pending_in++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    if (tr->pending_in > MAX_PENDING_IN) {
        peer_name(c);
        conn_refuse(c, "more than %d connections waiting for authentication", MAX_PENDING_IN);
        return;
    }
    uv_timer_start(&c->timer, timeout_cb, HANDSHAKE_MS, 0);
    start_tls_or_plain(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == C_CLOSING) {
        return;
    }
    if (status < 0) {
        conn_close(c); /* peer down: libraft retries, no log line */
        return;
    }
    start_tls_or_plain(c);
}

static void connect_timeout_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == C_CONNECTING) {
        conn_close(c);
        return;
    }
    conn_refuse(c, "no TLS handshake within %d ms", HANDSHAKE_MS);
}

static int tr_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    struct tr *tr = t->impl;
    struct sockaddr_storage sa;
    socklen_t salen;
    if (tr->closing) {
        return RAFT_CANCELED;
    }
    if (cons_parse_addr(address, &sa, &salen) < 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad address '%s'", address);
        return RAFT_NOCONNECTION;
    }
    struct conn *c = conn_new(tr, true);
    if (c == NULL) {
        return RAFT_NOMEM;
    }
    req->cb = cb;
    c->peer_id = id;
    snprintf(c->peer, sizeof c->peer, "%s", address);
    uv_tcp_init(tr->loop, &c->tcp);
    uv_timer_init(tr->loop, &c->timer);
    c->handles = 2;
    c->connect.data = c;
    int rv = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&sa, on_connect);
    if (rv < 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "connect %s: %s", address, uv_strerror(rv));
        conn_close(c); /* no callback: the error is returned */
        return RAFT_NOCONNECTION;
    }
    c->req = req;
    uv_timer_start(&c->timer, connect_timeout_cb, HANDSHAKE_MS, 0);
    return 0;
}

/* ------------------------------------------------------------------ */
/* raft_uv_transport methods */

static int tr_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct tr *tr = t->impl;
    tr->id = id;
    tr->address = address;
    return 0;
}

static int tr_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct tr *tr = t->impl;
    struct sockaddr_storage sa;
    socklen_t salen;
    if (cons_parse_addr(tr->address, &sa, &salen) < 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad address '%s'", tr->address);
        return RAFT_INVALID;
    }
    tr->accept_cb = cb;
    uv_tcp_init(tr->loop, &tr->listener);
    tr->listener.data = tr;
    tr->listener_open = true;
    int rv = uv_tcp_bind(&tr->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&tr->listener, 128, on_connection);
    }
    if (rv < 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "listen on %s: %s", tr->address, uv_strerror(rv));
        return RAFT_IOERR;
    }
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    struct tr *tr = h->data;
    tr->listener_open = false;
    tr_maybe_closed(tr);
}

static void tr_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct tr *tr = t->impl;
    tr->closing = true;
    tr->close_cb = cb;
    /* The callback must come from the loop, never from inside this call
     * (libraft finishes its own close after it): with no listener yet, a
     * handle is opened only to be closed. */
    if (!tr->listener_open) {
        uv_tcp_init(tr->loop, &tr->listener);
        tr->listener.data = tr;
        tr->listener_open = true;
    }
    uv_close((uv_handle_t *)&tr->listener, listener_closed);
    for (struct conn *c = tr->conns; c != NULL; c = c->next) {
        conn_close(c);
    }
}

int cons_tr_init(struct raft_uv_transport *t, uv_loop_t *loop, const struct cons_tr_config *cfg,
                 char *errmsg, size_t errlen)
{
    memset(t, 0, sizeof *t);
    struct tr *tr = calloc(1, sizeof *tr);
    if (tr == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -ENOMEM;
    }
    int rv = cons_tls_new(cfg, &tr->tls, errmsg, errlen);
    if (rv < 0) {
        free(tr);
        return rv;
    }
    tr->t = t;
    tr->loop = loop;
    tr->cfg = *cfg;
    tr->cfg.psk_file = tr->cfg.ca_file = tr->cfg.cert_file = tr->cfg.key_file = NULL;
    t->impl = tr;
    t->init = tr_init;
    t->listen = tr_listen;
    t->connect = tr_connect;
    t->close = tr_close;
    return 0;
}

void cons_tr_free(struct raft_uv_transport *t)
{
    struct tr *tr = t->impl;
    if (tr == NULL) {
        return;
    }
    cons_tls_free(tr->tls);
    free(tr);
    t->impl = NULL;
}

void cons_tr_get_stats(const struct raft_uv_transport *t, struct cons_tr_stats *st)
{
    const struct tr *tr = t->impl;
    if (tr == NULL) {
        memset(st, 0, sizeof *st);
        return;
    }
    *st = tr->stats;
}
