/* rpc_stream: uv handles, reads, writes, shutdown and close of one rpc
 * connection, plaintext or TLS (stream.h). The TLS half is in
 * stream_tls.c; everything that touches libuv is here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "stream.h"

#define CIPHER_CHUNK (64u << 10) /* ciphertext read at once (TLS) */

struct swreq {
    uv_write_t req;
    uv_buf_t buf;
};

static void kick_fired(uv_timer_t *t);

int rpc_stream_init(uv_loop_t *loop, struct rpc_stream *s, bool tcp,
                    const struct rpc_stream_ops *ops, void *data)
{
    memset(s, 0, sizeof *s);
    int rv = tcp ? uv_tcp_init(loop, &s->h.tcp) : uv_pipe_init(loop, &s->h.pipe, 0);
    if (rv < 0) {
        return rv;
    }
    uv_timer_init(loop, &s->kick);
    s->h.handle.data = s;
    s->kick.data = s;
    s->nopen = 2;
    s->is_tcp = tcp;
    s->ops = ops;
    s->data = data;
    return 0;
}

const char *rpc_stream_why(const struct rpc_stream *s)
{
    return s->why;
}

/* ------------------------------------------------------------------ */
/* the end of the stream */

/* Tell the owner the stream ended, once, when it reads. */
static void deliver_end(struct rpc_stream *s)
{
    if (s->end == 0 || s->ended || !s->want_read || s->closing) {
        return;
    }
    s->ended = true;
    s->ops->read(s, s->end);
}

void stream__end(struct rpc_stream *s, int status, const char *fmt, ...)
{
    if (s->end != 0 || s->closing) {
        return;
    }
    s->end = status;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->why, sizeof s->why, fmt, ap);
        va_end(ap);
    }
    stream__update_reading(s);
    if (s->connecting) {
        s->connecting = false;
        s->connect_cb(s, status);
        return;
    }
    if (s->ssl == NULL) {
        deliver_end(s);
    }
    /* TLS: after the bytes decrypted before it (stream__tls_deliver) */
}

/* ------------------------------------------------------------------ */
/* reads */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct rpc_stream *s = h->data;
    if (s->ssl == NULL) {
        s->ops->alloc(s, buf);
        return;
    }
    if (s->cbuf == NULL) {
        s->cbuf = malloc(CIPHER_CHUNK);
    }
    *buf = uv_buf_init(s->cbuf, s->cbuf != NULL ? CIPHER_CHUNK : 0);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct rpc_stream *s = st->data;
    if (s->closing || n == 0) {
        return;
    }
    if (n < 0 && s->ssl != NULL && !s->ready) {
        /* the peer went away (a node stopping, a reset): a transport
         * failure like a refused connection, not a TLS verdict */
        stream__end(s, (int)n, "the connection %s during the TLS handshake",
                    n == UV_EOF ? "was closed" : uv_strerror((int)n));
        stream__tls_deliver(s);
        return;
    }
    if (n < 0) {
        stream__end(s, (int)n, "%s", n == UV_EOF ? "" : uv_strerror((int)n));
        if (s->ssl != NULL) {
            stream__tls_deliver(s);
        }
        return;
    }
    if (s->ssl != NULL) {
        stream__tls_input(s, buf->base, (size_t)n);
        return;
    }
    s->ops->read(s, n);
    s->got_bytes = true;
}

/* The socket is read while the owner reads, or while a TLS handshake
 * needs the peer's answer, until the end. */
void stream__update_reading(struct rpc_stream *s)
{
    bool handshake = s->ssl != NULL && !s->ready;
    bool want = !s->closing && s->end == 0 && (s->want_read || handshake);
    if (want && !s->uv_reading) {
        int rv = uv_read_start(&s->h.stream, on_alloc, on_read);
        s->uv_reading = rv == 0;
    } else if (!want && s->uv_reading) {
        uv_read_stop(&s->h.stream);
        s->uv_reading = false;
    }
}

static void kick_fired(uv_timer_t *t)
{
    struct rpc_stream *s = t->data;
    s->kick_on = false;
    if (s->closing || !s->want_read) {
        return;
    }
    if (s->ssl != NULL) {
        stream__tls_deliver(s);
    } else {
        deliver_end(s);
    }
}

int rpc_stream_read_start(struct rpc_stream *s)
{
    if (s->closing) {
        return UV_EINVAL;
    }
    if (s->want_read) {
        return 0;
    }
    s->want_read = true;
    stream__update_reading(s);
    /* what arrived before reading stopped is delivered from the loop */
    if ((s->ssl != NULL || s->end != 0) && !s->kick_on) {
        s->kick_on = true;
        uv_timer_start(&s->kick, kick_fired, 0, 0);
    }
    return 0;
}

void rpc_stream_read_stop(struct rpc_stream *s)
{
    s->want_read = false;
    stream__update_reading(s);
}

/* ------------------------------------------------------------------ */
/* writes */

static void write_done(uv_write_t *req, int status)
{
    struct swreq *w = (struct swreq *)req;
    struct rpc_stream *s = req->handle->data;
    free(w->buf.base);
    free(w);
    if (s->ops->written != NULL) {
        s->ops->written(s, status);
    }
}

int stream__raw_write(struct rpc_stream *s, char *data, size_t len)
{
    struct swreq *w = s->closing ? NULL : malloc(sizeof *w);
    if (w == NULL) {
        free(data);
        return s->closing ? UV_ECANCELED : UV_ENOMEM;
    }
    w->buf = uv_buf_init(data, (unsigned)len);
    int rv = uv_write(&w->req, &s->h.stream, &w->buf, 1, write_done);
    if (rv < 0) {
        free(data);
        free(w);
    }
    return rv;
}

int rpc_stream_write(struct rpc_stream *s, char *data, size_t len)
{
    if (s->ssl == NULL) {
        return stream__raw_write(s, data, len);
    }
    if (!s->ready || s->closing) {
        free(data);
        return UV_ENOTCONN;
    }
    return stream__tls_write(s, data, len);
}

size_t rpc_stream_queued(const struct rpc_stream *s)
{
    return uv_stream_get_write_queue_size(&s->h.stream);
}

/* ------------------------------------------------------------------ */
/* connect, accept, shutdown, close */

static void on_connect(uv_connect_t *req, int status)
{
    struct rpc_stream *s = req->data;
    if (s->closing || !s->connecting) {
        return;
    }
    if (status < 0) {
        s->connecting = false;
        snprintf(s->why, sizeof s->why, "%s", uv_strerror(status));
        s->connect_cb(s, status);
        return;
    }
    if (s->ssl == NULL) {
        s->connecting = false;
        s->ready = true;
        s->connect_cb(s, 0);
        return;
    }
    /* the ClientHello goes out; connect_cb once the handshake is done */
    stream__tls_input(s, NULL, 0);
    stream__update_reading(s);
}

int rpc_stream_connect(struct rpc_stream *s, const struct sockaddr *addr, rpc_stream_cb cb)
{
    s->connect_cb = cb;
    s->creq.data = s;
    int rv = uv_tcp_connect(&s->creq, &s->h.tcp, addr, on_connect);
    s->connecting = rv == 0;
    if (rv == 0) {
        uv_tcp_nodelay(&s->h.tcp, 1);
    }
    return rv;
}

int rpc_stream_connect_pipe(struct rpc_stream *s, const char *path, rpc_stream_cb cb)
{
    s->connect_cb = cb;
    s->creq.data = s;
    s->connecting = true;
    uv_pipe_connect(&s->creq, &s->h.pipe, path, on_connect);
    return 0;
}

int rpc_stream_accept(uv_stream_t *listener, struct rpc_stream *s)
{
    int rv = uv_accept(listener, &s->h.stream);
    if (rv == 0 && s->ssl == NULL) {
        s->ready = true;
    }
    return rv;
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
    struct rpc_stream *s = req->data;
    if (s->shutdown_cb != NULL) {
        s->shutdown_cb(s, status);
    }
}

int rpc_stream_shutdown(struct rpc_stream *s, rpc_stream_cb cb)
{
    if (s->closing) {
        return UV_ECANCELED;
    }
    if (s->ssl != NULL && s->ready) {
        stream__tls_shutdown(s); /* close_notify, queued before the FIN */
    }
    s->shutdown_cb = cb;
    s->shut.data = s;
    return uv_shutdown(&s->shut, &s->h.stream, shutdown_done);
}

static void handle_closed(uv_handle_t *h)
{
    struct rpc_stream *s = h->data;
    if (--s->nopen > 0) {
        return;
    }
    stream__tls_free(s);
    free(s->cbuf);
    s->cbuf = NULL;
    if (s->close_cb != NULL) {
        s->close_cb(s);
    }
}

void rpc_stream_close(struct rpc_stream *s, void (*cb)(struct rpc_stream *s))
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    s->connecting = false;
    s->close_cb = cb;
    uv_timer_stop(&s->kick);
    uv_close(&s->h.handle, handle_closed);
    uv_close((uv_handle_t *)&s->kick, handle_closed);
}
