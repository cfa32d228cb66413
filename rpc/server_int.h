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
#include "stream.h"

#define DEFAULT_MAX_FRAME (4u << 20)
/* Pipelining clients (nvmetctl's crash test: 500 creates on one
 * connection) must not hit TOO_MANY; only authenticated peers can hold
 * calls in flight (auth.* answers at once). */
#define DEFAULT_MAX_INFLIGHT 1024u
/* Connection budgets. Each class has its own, so that no one can fill
 * another's: TCP clients that have not logged in (anyone who can reach
 * the port) get a small one, with a per-address share, and must log in
 * within the login timeout (never extended by calls); logged-in TCP
 * clients (they hold the key) a large one; the root-only unix socket its
 * own. */
#define DEFAULT_MAX_CONNS 1024u /* logged-in TCP */
#define DEFAULT_MAX_UNIX_CONNS 1024u
#define DEFAULT_MAX_UNAUTH 64u
#define DEFAULT_MAX_UNAUTH_PER_ADDR 16u
#define DEFAULT_LOGIN_TIMEOUT_MS 10000u
/* A new connection over the unauthenticated budget evicts the oldest one
 * that has had this long to log in (a client logs in within a round trip
 * or two); when every one is younger, the new connection is closed. */
#define EVICT_AFTER_MS 1000u
/* Before login only auth.* can be called: a frame larger than a login
 * needs is refused before it is buffered or decoded. */
#define UNAUTH_MAX_FRAME (64u << 10)
/* Failed logins: the reply waits DEFAULT_LOGIN_BACKOFF_MS, doubling with
 * each failure on the connection, which is closed after the Nth. */
#define DEFAULT_LOGIN_BACKOFF_MS 100u
#define DEFAULT_MAX_LOGIN_FAILURES 5u
/* Per source address (IPv6: its /64): ADDR_FAIL_MAX failures, one of
 * them forgotten every ADDR_FAIL_DECAY_MS (20 a minute sustained). Over
 * the budget, logins from the address are refused unchecked and its new
 * connections closed until the count decays. */
#define ADDR_FAIL_MAX 20u
#define ADDR_FAIL_DECAY_MS 3000u
#define ADDR_TABLE_MAX 1024u
#define LOG_EVERY_MS 1000u /* rate-limited log lines: one a second */
#define READ_CHUNK (16u << 10) /* free space offered to each read */
#define KEEP_BUF (256u << 10)  /* an idle connection keeps at most this */
#define WQ_HIGH (16u << 20)    /* stop reading while this much output waits */
#define WQ_LOW (1u << 20)      /* ...and resume below this */
#define CLIENT_ID_MAX 256
#define MAX_SUBS 64
#define DEFAULT_MAX_SUB_QUEUE (8u << 20)
#define KEY_MAX 4096

/* ------------------------------------------------------------------ */
/* types */

struct method {
    char *name;
    rpc_method_fn fn;
    void *ctx;
    unsigned flags;
    struct rpc_method_stats st; /* the calls it answered */
};

/* One line per LOG_EVERY_MS; the lines dropped in between are counted
 * and reported with the next one. */
struct ratelog {
    uint64_t last;
    unsigned suppressed;
};

/* A TCP source address (IPv4, or the /64 of an IPv6 address): its
 * unauthenticated connections, recent failed logins and log budget. */
struct addr_rec {
    uint8_t key[16];
    char name[56];
    unsigned refs;   /* unauthenticated connections holding it */
    unsigned fails;  /* failed logins, decayed */
    uint64_t fail_at;
    struct ratelog log;
};

enum conn_kind { CK_UNIX, CK_UNAUTH, CK_AUTH };

struct conn {
    struct rpc_server *srv; /* NULL once every handle is closed */
    struct rpc_stream st;   /* plaintext, or TLS on a TLS listener */
    uv_timer_t login_timer; /* TCP only: the login deadline (it also
                             * bounds a TLS handshake) */
    uv_timer_t hold_timer;  /* TCP only: a failed login's delayed reply */
    bool is_tcp, authed, closing, counted, wq_full, reading, shutting;
    bool decoding; /* a large message is being decoded off the loop */
    struct decode_job *queued_job; /* ...or waits for a pool slot */
    enum conn_kind kind;
    /* A failed login's reply waits (held_call); no frame of the
     * connection is handled meanwhile, so pipelined logins wait too. */
    bool held, close_after_reply;
    struct rpc_call *held_call;
    unsigned login_failures;
    uint64_t accepted; /* loop time */
    struct addr_rec *addr;      /* while unauthenticated */
    struct conn *uprev, *unext; /* the unauthenticated ones, oldest first */
    unsigned nclose; /* handles still closing */
    unsigned refs;   /* self (while open) + calls + writes */
    unsigned inflight;
    char *client_id;
    enum rpc_role role;   /* of the key it logged in with (unix: admin) */
    char key_name[65];
    bool verifying;       /* a login is checked in the thread pool: nothing
                           * behind it on the connection is handled */
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
    bool noreply; /* a notification [2, method, params]: nothing is sent */
    bool big;     /* params from a large frame: freed off the loop */
    int64_t msgid;
    char *method;
    char *client_id; /* the connection's id when the call arrived */
    struct nv *params;
    size_t mi;   /* its method: s->methods[mi] */
    uint64_t t0; /* uv_hrtime() at dispatch */
};

struct login_job;

struct rpc_server {
    uv_loop_t *loop;
    char *unix_path, *tcp_addr, *key_file;
    size_t max_frame;
    unsigned max_inflight, max_conns, max_unix, max_unauth, max_unauth_per_addr;
    unsigned login_timeout_ms, login_backoff_ms, max_login_failures;
    unsigned n_auth, n_unix, n_unauth;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
    bool has_pipe, has_tcp, unix_bound, closing;
    unsigned refs; /* 1 while open + listeners + connections */
    struct method *methods;
    size_t n_methods, cap_methods;
    struct conn *conns;
    struct conn *unauth_head, *unauth_tail; /* oldest first */
    struct addr_rec **addrs;
    size_t n_addrs;
    struct ratelog log_refused, log_notify, log_key, log_role, log_slow;
    size_t max_sub_queue;
    unsigned n_subs;    /* subscriptions of open connections, all together */
    char **collections; /* what core.subscribe accepts; NULL = anything */
    size_t n_collections;
    const char *(*cluster_key)(void *ctx);
    void *cluster_key_ctx;
    bool legacy_warned;               /* the old key file format, said once */
    unsigned login_jobs;              /* key checks in the thread pool */
    struct login_job *login_wait;     /* and waiting for it, oldest first */
    struct rpc_tls *tls; /* the TCP listener's TLS, NULL = plaintext */
    unsigned big_jobs;               /* large frames being decoded */
    struct decode_job *decode_wait;  /* and waiting for the pool */
    struct rpc_server_stats st;
    void (*done)(void *arg);
    void *done_arg;
};

struct decode_job;

/* server_frame.c: nv_scan of the current message, which must be an array
 * (NV_SCAN_BAD "message is not an array" otherwise). */
int srv__frame_scan(struct nv_scan *s, const uint8_t *buf, size_t len, size_t max,
                    const char **why);
/* One complete message decoded: a request [0, msgid, method, params] or
 * a notification [2, method, params] (notify, msgid -1). */
struct srv_request {
    bool notify;
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
void srv__m_me(struct rpc_call *call, const struct nv *params, void *ctx);
void srv__m_get_methods(struct rpc_call *call, const struct nv *params, void *ctx);
/* The role a method needs (its registration flags). */
enum rpc_role srv__method_role(unsigned flags);
/* server.c */
void srv__log(const struct conn *c, const char *what, const char *detail);
/* printf-like, at most one line a second per ratelog. */
void srv__log_limited(struct rpc_server *s, struct ratelog *rl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Login outcomes (server_builtin.c -> server.c). srv__login_ok answers
 * the call itself (true, or TOO_MANY when the logged-in budget is full)
 * and gives the connection role and name; srv__login_failed answers false
 * after the backoff. */
void srv__login_ok(struct conn *c, struct rpc_call *call, enum rpc_role role, const char *name);
/* The connection was held while its login was checked off the loop:
 * handle what arrived behind it. */
void srv__resume(struct conn *c);
/* The server outlives a login check running in the thread pool. */
void srv__ref(struct rpc_server *s);
void srv__unref(struct rpc_server *s);
void srv__login_failed(struct conn *c, struct rpc_call *call);
/* The source address has spent its failed-login budget. */
bool srv__login_blocked(struct conn *c);

#endif
