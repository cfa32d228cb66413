/* rpc server internals shared by server.c (listeners, connections,
 * dispatch), server_frame.c (the msgpack frame scanner) and
 * server_builtin.c (auth.*, core.*). */
#ifndef SERVER_INT_H
#define SERVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "nv.h"
#include "rpc.h"

#define DEFAULT_MAX_FRAME (4u << 20)
/* Pipelining clients (nvmetctl's crash test: 500 creates on one
 * connection) must not hit TOO_MANY; only authenticated peers can hold
 * calls in flight (NOAUTH methods answer at once). */
#define DEFAULT_MAX_INFLIGHT 1024u
#define DEFAULT_MAX_CONNS 1024u
#define DEFAULT_IDLE_MS 30000u
#define READ_CHUNK (16u << 10) /* free space offered to each read */
#define KEEP_BUF (256u << 10)  /* an idle connection keeps at most this */
#define WQ_HIGH (16u << 20)    /* stop reading while this much output waits */
#define WQ_LOW (1u << 20)      /* ...and resume below this */
#define CLIENT_ID_MAX 256
#define MAX_SUBS 64
#define KEY_MAX 4096

/* ------------------------------------------------------------------ */
/* types */

struct method {
    char *name;
    rpc_method_fn fn;
    void *ctx;
    unsigned flags;
};

struct conn {
    struct rpc_server *srv; /* NULL once every handle is closed */
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t idle; /* TCP only: unauthenticated idle limit */
    bool is_tcp, authed, closing, counted, read_paused;
    unsigned nclose; /* handles still closing */
    unsigned refs;   /* self (while open) + calls + writes */
    unsigned inflight;
    char *client_id;
    char *subs[MAX_SUBS];
    unsigned n_subs;
    char *buf; /* read buffer: [off, len) not yet consumed */
    size_t off, len, cap;
    struct nv_scan sc; /* of the message at off */
    char peer[64];
    struct conn *prev, *next;
};

struct rpc_call {
    struct conn *c;
    int64_t msgid;
    char *method;
    char *client_id; /* the connection's id when the call arrived */
    struct nv *params;
};

struct rpc_server {
    uv_loop_t *loop;
    char *unix_path, *tcp_addr, *key_file;
    size_t max_frame;
    unsigned max_inflight, max_conns, idle_ms;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
    bool has_pipe, has_tcp, unix_bound, closing;
    unsigned refs; /* 1 while open + listeners + connections */
    struct method *methods;
    size_t n_methods, cap_methods;
    struct conn *conns;
    struct rpc_server_stats st;
    void (*done)(void *arg);
    void *done_arg;
};

struct wreq {
    uv_write_t req;
    uv_buf_t buf;
    struct conn *c;
};

/* server_frame.c: nv_scan of the current message, which must be an array
 * (NV_SCAN_BAD "message is not an array" otherwise). */
int srv__frame_scan(struct nv_scan *s, const uint8_t *buf, size_t len, size_t max,
                    const char **why);
/* One complete message decoded: [0, msgid, method, params]. */
struct srv_request {
    int64_t msgid;
    char method[256];
    struct nv *params; /* owned; NULL if not an array of values with string keys */
};
/* server_frame.c: decode the n bytes of one message (what NV_SCAN_DONE
 * delimited). 0 (rq->params may still be NULL: an error reply, the
 * connection stays), or -EBADMSG with *why (the connection is closed). */
int srv__decode_request(const char *p, size_t n, struct srv_request *rq, const char **why);
/* server_builtin.c */
void srv__m_ping(struct rpc_call *call, const struct nv *params, void *ctx);
void srv__m_login(struct rpc_call *call, const struct nv *params, void *ctx);
void srv__m_set_options(struct rpc_call *call, const struct nv *params, void *ctx);
void srv__m_subscribe(struct rpc_call *call, const struct nv *params, void *ctx);
void srv__m_unsubscribe(struct rpc_call *call, const struct nv *params, void *ctx);
/* server.c */
void srv__log(const struct conn *c, const char *what, const char *detail);

#endif
