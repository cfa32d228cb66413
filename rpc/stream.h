/* rpc_stream: the byte stream of one rpc connection (internal to rpc/),
 * shared by the server (server.c) and the client (client.c).
 *
 * One uv stream (TCP or unix socket), one read path that delivers
 * plaintext bytes into a buffer the owner provides, one write path that
 * takes whole messages, shutdown after the queued writes, close. Under
 * TLS (stream_tls.c) the same calls encrypt and decrypt through OpenSSL
 * memory BIOs; the owner never sees a record or a handshake.
 *
 * Rules:
 *   - reads arrive only between rpc_stream_read_start and _read_stop;
 *     bytes already decrypted when reading stops are kept and delivered,
 *     in order, after the next read_start (from a zero timer, never
 *     inside read_start);
 *   - the end of the stream is one read with n < 0: UV_EOF (the peer
 *     closed), UV_EPROTO (TLS failed; rpc_stream_why says why) or another
 *     uv error; nothing is read after it;
 *   - writes before the stream is ready (TLS handshake done) fail with
 *     UV_ENOTCONN: a client waits for the connect callback, a server
 *     writes only replies to what it read;
 *   - callbacks may call any function here, rpc_stream_close included;
 *     the owner's memory (holding the stream) must live until the close
 *     callback. */
#ifndef RPC_STREAM_H
#define RPC_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "rpc.h"

struct ssl_st;
struct rpc_tls;
struct rpc_stream;

struct rpc_stream_ops {
    /* Room for the next bytes; a buffer of length 0 ends the stream with
     * UV_ENOBUFS. */
    void (*alloc)(struct rpc_stream *s, uv_buf_t *buf);
    /* n > 0 bytes landed in the last buffer; n < 0: the end (see above). */
    void (*read)(struct rpc_stream *s, ssize_t n);
    /* One write request finished (0 or a uv error, UV_ECANCELED at
     * close); NULL = not wanted. */
    void (*written)(struct rpc_stream *s, int status);
};

typedef void (*rpc_stream_cb)(struct rpc_stream *s, int status);

struct rpc_stream {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t kick; /* delivers what was kept while reading was stopped */
    uv_connect_t creq;
    uv_shutdown_t shut;
    const struct rpc_stream_ops *ops;
    void *data;         /* the owner's */
    struct ssl_st *ssl; /* NULL: plaintext */
    rpc_stream_cb connect_cb, shutdown_cb;
    void (*close_cb)(struct rpc_stream *s);
    char *cbuf;     /* TLS: ciphertext read buffer */
    unsigned nopen; /* handles not yet closed */
    int end;        /* the end status seen (0: none yet) */
    bool is_tcp, want_read, uv_reading, ready, ended, closing, connecting;
    bool kick_on, got_bytes;   /* got_bytes: after the first read */
    unsigned char first_byte; /* TLS: of the peer's first record */
    char why[256];
};

/* A TLS configuration (an SSL_CTX) for servers or for clients. */
struct rpc_tls_server_opts {
    const char *cert_file, *key_file, *ca_file;
    bool client_certs; /* require a client certificate signed by ca_file */
};
int rpc_tls_server_new(const struct rpc_tls_server_opts *o, struct rpc_tls **out, char *msg,
                       size_t len);
int rpc_tls_client_new(const struct rpc_tls_opts *o, struct rpc_tls **out, char *msg, size_t len);
void rpc_tls_free(struct rpc_tls *t);

/* Set up s (a TCP handle when tcp, else a pipe) on loop. */
int rpc_stream_init(uv_loop_t *loop, struct rpc_stream *s, bool tcp,
                    const struct rpc_stream_ops *ops, void *data);
/* Before accept/connect: speak TLS on s. A client names the host it
 * dials (an IP address or a DNS name the certificate must carry). */
int rpc_stream_use_tls(struct rpc_stream *s, struct rpc_tls *tls, const char *host);
/* Accept from a listener; a TLS stream handshakes while it is read. */
int rpc_stream_accept(uv_stream_t *listener, struct rpc_stream *s);
/* Connect; cb(s, 0) once ready (TLS: handshake done and the server's
 * certificate verified), else cb(s, uv error) (UV_EPROTO: TLS, see
 * rpc_stream_why). */
int rpc_stream_connect(struct rpc_stream *s, const struct sockaddr *addr, rpc_stream_cb cb);
int rpc_stream_connect_pipe(struct rpc_stream *s, const char *path, rpc_stream_cb cb);

int rpc_stream_read_start(struct rpc_stream *s);
void rpc_stream_read_stop(struct rpc_stream *s);
/* Queue data (taken). 0 or a uv error (data freed). */
int rpc_stream_write(struct rpc_stream *s, char *data, size_t len);
/* Bytes queued for the network, not yet written. */
size_t rpc_stream_queued(const struct rpc_stream *s);
/* End the stream once the queued writes are out (TLS: close_notify
 * first); cb(s, status) then. */
int rpc_stream_shutdown(struct rpc_stream *s, rpc_stream_cb cb);
/* Close every handle; cb(s) once they are closed (NULL = none). */
void rpc_stream_close(struct rpc_stream *s, void (*cb)(struct rpc_stream *s));
/* Why the stream ended or failed to connect ("" when nothing to say). */
const char *rpc_stream_why(const struct rpc_stream *s);

/* stream_tls.c, for stream.c */
void stream__tls_input(struct rpc_stream *s, const char *p, size_t n);
void stream__tls_deliver(struct rpc_stream *s);
int stream__tls_write(struct rpc_stream *s, char *data, size_t len);
void stream__tls_shutdown(struct rpc_stream *s);
void stream__tls_free(struct rpc_stream *s);
/* stream.c, for stream_tls.c */
int stream__raw_write(struct rpc_stream *s, char *data, size_t len);
void stream__update_reading(struct rpc_stream *s);
void stream__end(struct rpc_stream *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
