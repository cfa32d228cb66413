/* rpc: msgpack-rpc over unix sockets and TCP.
 *
 * Wire: request [0, msgid, method, params], response [1, msgid, error,
 * result], notification [2, method, params]. Pipelined; replies may come
 * out of order. params is always an array of positional arguments. error is
 * nil or the map of nv_err_to_nv(): {"code", "error", "errname", "reason",
 * "extra"[, "leader"]}.
 *
 * Three parts:
 *   server   - listeners, framing, limits, authentication, per-connection
 *              client id, dispatch to registered methods (rpc_server_*);
 *   methods  - the product's method table: nvmet.*, core.*, cluster.*,
 *              failover.* over the statemachine and a node interface
 *              (rpc_methods_register);
 *   client   - async and blocking clients (rpc_client_*, rpc_call_sync);
 *   query    - the reference's filters/options engine (rpc_query). */
#ifndef RPC_H
#define RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nv;
struct nv_err;
struct uv_loop_s;

/* ================= server ================= */

struct rpc_server;
struct rpc_call;

struct rpc_server_config {
    const char *unix_path;    /* NULL = no unix socket; created mode 0600 */
    const char *tcp_addr;     /* "host:port" (IPv4 or [IPv6]), NULL = no TCP */
    const char *api_key_file; /* file holding the API key for TCP logins
                               * (mode 0600 or stricter: checked at start
                               * and at every login); NULL = TCP logins
                               * always fail */
    size_t max_frame;         /* bytes of one message; 0 = 4 MiB (64 KiB
                               * before a TCP login) */
    unsigned max_inflight;    /* calls in flight per connection (more get
                               * TOO_MANY); 0 = 1024: clients pipeline
                               * hundreds of writes on one connection */
    /* Connection budgets, one per class (0 = the default in brackets):
     * logged-in TCP [1024], unix socket [1024], TCP not logged in [64]
     * and of those from one source address (IPv6: its /64) [16]. A TCP
     * connection over its budget is closed at once, except that a new
     * unauthenticated one evicts the oldest unauthenticated one when that
     * has had a second to log in. */
    unsigned max_conns;
    unsigned max_unix_conns;
    unsigned max_unauth_conns;
    unsigned max_unauth_per_addr;
    unsigned login_timeout_ms;   /* a TCP connection not logged in this long
                                  * after it connected is closed; calls do
                                  * not extend it; 0 = 10000 */
    unsigned login_backoff_ms;   /* a failed login is answered after this,
                                  * doubled per failure on the connection;
                                  * 0 = 100 */
    unsigned max_login_failures; /* the connection is closed after this many
                                  * failed logins; 0 = 5 */
    /* The TCP listener speaks TLS 1.3 with this certificate (PEM, chain
     * allowed) and private key (mode 0600 or stricter), or plaintext when
     * tcp_plaintext says so explicitly: a TCP listener with neither is
     * refused at start, and so is one with both. The unix socket is
     * always plaintext (root only). */
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_ca_file;  /* CA of the client certificates (PEM) */
    bool tls_client_certs;    /* a TCP client without a certificate signed by
                               * tls_ca_file fails the handshake */
    bool tcp_plaintext;
};

/* How a client reaches a TCP endpoint (unix sockets are plaintext). TLS
 * 1.3 unless plaintext is set: the server's certificate must chain to
 * ca_file (NULL = the system's CA store) and name the host dialled (an
 * address as an IP subjectAltName, a name as a DNS one). cert_file and
 * key_file (both or neither) are the client certificate, for servers that
 * require one. */
struct rpc_tls_opts {
    bool plaintext;
    const char *ca_file;
    const char *cert_file;
    const char *key_file; /* mode 0600 or stricter */
};
/* Load the files of o once (NULL or plaintext: nothing to check), to
 * report a bad file at start rather than at the first connection. 0, or
 * a negative errno with a message naming the file and why. */
int rpc_tls_opts_check(const struct rpc_tls_opts *o, char *msg, size_t len);

/* The API key: the first line of path, trailing blanks removed. Refused
 * (with a message naming the path and why) when the file cannot be read,
 * is not a regular file, holds no key, or can be read or written by
 * group or others (like ssh with a private key). 0 and *key (owned), or
 * a negative errno. */
int rpc_key_file_read(const char *path, char **key, char *msg, size_t msglen);

/* Handler of one method. params: borrowed positional array (never NULL),
 * valid until the handler replies. The handler must call rpc_reply or
 * rpc_reply_error exactly once, now or later (async). */
typedef void (*rpc_method_fn)(struct rpc_call *call, const struct nv *params, void *ctx);

/* Callable before a TCP login. Only auth.* names may have it
 * (rpc_server_register refuses it on others): before login nothing else,
 * core.ping included, is answered but NOT_AUTHENTICATED. */
#define RPC_M_NOAUTH 0x1

int rpc_server_start(struct uv_loop_s *loop, const struct rpc_server_config *cfg,
                     struct rpc_server **out, char *errmsg, size_t errlen);
/* name is copied. Registering a name twice replaces the handler. */
int rpc_server_register(struct rpc_server *s, const char *name, rpc_method_fn fn, void *ctx,
                        unsigned flags);
/* Notifications from clients ([2, method, params], authenticated
 * connections only) run the method like a request whose reply is dropped;
 * an unknown method is ignored (and logged, rate-limited).
 * Send a notification [2, method, params] to every connection that asked
 * for it with core.subscribe(collection) where collection == method, or
 * "*" (params taken). */
void rpc_server_notify(struct rpc_server *s, const char *collection, struct nv *params);
/* Stop listening, close connections; pending calls are answered by their
 * handlers into the void. done(arg) when every handle is closed. */
void rpc_server_close(struct rpc_server *s, void (*done)(void *arg), void *arg);

struct rpc_server_stats {
    unsigned conns, calls_inflight;
    unsigned unauth_conns, unix_conns; /* of conns */
    uint64_t calls_total, bad_frames, rejected_conns;
    uint64_t evicted_conns, login_failures, notifications;
};
void rpc_server_get_stats(const struct rpc_server *s, struct rpc_server_stats *st);

/* Reply (exactly once per call). rpc_reply takes result (NULL = nil).
 * Safe after the connection closed: the reply is dropped and the call freed. */
void rpc_reply(struct rpc_call *call, struct nv *result);
void rpc_reply_error(struct rpc_call *call, const struct nv_err *err);

const char *rpc_call_method(const struct rpc_call *call);
int64_t rpc_call_msgid(const struct rpc_call *call);
/* The connection's client id (set by core.set_options {"client_id": str}),
 * NULL if none: with the msgid it forms the write's session key. */
const char *rpc_call_client_id(const struct rpc_call *call);
/* Trusted = unix socket peer (root) or TCP after login. */
bool rpc_call_trusted(const struct rpc_call *call);
/* The call's connection closed (the client went away, or the server is
 * closing): a reply would be dropped, waiting on its behalf is pointless. */
bool rpc_call_gone(const struct rpc_call *call);

/* ================= methods ================= */

struct sm_state;
struct sm_env;

/* What the method table needs from the node (wired by nvmetd's main). */
struct rpc_node {
    void *ctx;
    /* The local replicated state (borrowed; valid on the loop thread). */
    const struct sm_state *(*state)(void *ctx);
    /* Leader environment for sm_prepare. */
    const struct sm_env *(*env)(void *ctx);
    /* Propose encoded command bytes. cb gets status 0 and the struct
     * sm_result* (ownership passes to cb) once applied here, or a negative
     * errno (see consensus/cons.h). Return <0 = not proposed, no cb. */
    int (*propose)(void *ctx, const void *buf, size_t len,
                   void (*cb)(void *arg, int status, void *result), void *arg);
    /* Linearizable read point; same conventions (result unused). */
    int (*barrier)(void *ctx, void (*cb)(void *arg, int status, void *result), void *arg);
    /* Wait until this node has rendered everything applied so far (or
     * failed to), then cb(arg, 0, NULL). NULL = no wait. */
    int (*wait_rendered)(void *ctx, void (*cb)(void *arg, int status, void *result), void *arg);
    /* The loop the node runs on (for the connection to the leader). */
    struct uv_loop_s *loop;
    /* The API key nodes use to log in to each other when a follower
     * forwards a call to the leader; NULL = no forwarding (clients get
     * NOT_LEADER with the leader's address). */
    const char *(*cluster_key)(void *ctx);
    /* This node is the ready leader (writes and linearizable reads are
     * served here). */
    bool (*is_leader)(void *ctx);
    /* The leader's RPC address for NOT_LEADER answers; NULL if unknown. */
    const char *(*leader_rpc)(void *ctx);
    /* Remove a FILE namespace's backing file after a committed
     * namespace.delete {"remove": true} (0 or -errno). NULL = unsupported. */
    int (*remove_file)(void *ctx, const char *path);
    /* Extra method results provided by other modules. Each returns an owned
     * value or NULL with err set. NULL function = method unavailable. */
    struct nv *(*cluster_status)(void *ctx, struct nv_err *err);
    struct nv *(*sessions)(void *ctx, struct nv_err *err);
    struct nv *(*address_choices)(void *ctx, const char *trtype, bool force_ana, struct nv_err *err);
    int (*generate_key)(void *ctx, const char *hash, const char *nqn, char *out, size_t outlen,
                        struct nv_err *err);
    /* {"status": "MASTER"|"BACKUP"|"SINGLE", "disabled_reasons": [...], ...}
     * (owned) or NULL = a single node. */
    struct nv *(*failover_status)(void *ctx, struct nv_err *err);
    /* Membership on the leader: op is the method name (cluster.node.add,
     * .remove, .promote, failover.become_passive), params its arguments.
     * 0: cb(arg, result or NULL, err or NULL) exactly once, later.
     * <0: nothing happens (err may say why). */
    /* This node's id (sent along with forwarded calls), 0 = none, and the
     * leader's membership test for the calls forwarded to it. */
    uint64_t id;
    bool (*is_member)(void *ctx, uint64_t id);
    /* Non-NULL: why this node serves no cluster calls now (it was removed,
     * or has not joined yet); NULL function or result = serving. */
    const char *(*refuse)(void *ctx);
    int (*membership)(void *ctx, const char *op, const struct nv *params,
                      void (*cb)(void *arg, struct nv *result, const struct nv_err *err),
                      void *arg, struct nv_err *err);
    /* How long a call that needs the leader waits on this node while it
     * knows no ready leader (an election) before it is answered NO_QUORUM /
     * NOT_LEADER; also bounds the re-dispatch of a write whose outcome was
     * unknown (leadership lost, connection to the leader lost). 0 = 5000. */
    unsigned hold_timeout_ms;
    /* How this node reaches other nodes' RPC ports (forwarding, peer
     * status, registration): TLS with this node's certificate as the
     * client certificate, or plaintext. */
    struct rpc_tls_opts peer_tls;
};

/* Register every product method on s. node is borrowed until
 * rpc_methods_free, which must come after rpc_server_close completed. */
struct rpc_methods;
int rpc_methods_register(struct rpc_server *s, const struct rpc_node *node,
                         struct rpc_methods **out);
void rpc_methods_free(struct rpc_methods *m);

/* ================= client ================= */

struct rpc_client;

/* Result of one call: exactly one of result/err is meaningful.
 * result is borrowed during the callback (copy it to keep it). status < 0:
 * transport failure (connection lost/refused: -ECONNRESET, -ECONNREFUSED,
 * -ETIMEDOUT; -EPROTO: the TLS handshake failed or the server refused it,
 * e.g. a certificate that does not verify: the call did not run, and
 * trying again will not help), err then describes it too. */
typedef void (*rpc_client_cb)(void *arg, int status, const struct nv *result,
                              const struct nv_err *err);

/* endpoint: "unix:/path", "/path" (unix), or "host:port". tls: how to
 * reach a TCP endpoint (NULL = TLS verified by the system's CA store);
 * ignored for unix sockets. Its strings are only used during the call. */
int rpc_client_open(struct uv_loop_s *loop, const char *endpoint, const struct rpc_tls_opts *tls,
                    struct rpc_client **out);
/* Call with an explicit msgid (>= 0) or -1 for the next automatic one.
 * params taken (NULL = []). cb always called once (also on close). */
int rpc_client_call(struct rpc_client *c, const char *method, struct nv *params, int64_t msgid,
                    rpc_client_cb cb, void *arg);
/* Notifications from the server ([2, method, params]). */
void rpc_client_on_notify(struct rpc_client *c,
                          void (*cb)(void *arg, const char *method, const struct nv *params),
                          void *arg);
void rpc_client_close(struct rpc_client *c); /* pending calls fail with -ECANCELED */
/* Queue auth.login_with_api_key [api_key] (copied). A server handles the
 * calls of one connection in order, so the calls queued after it run
 * logged in; a refused key shows as NOT_AUTHENTICATED on them. */
int rpc_client_login(struct rpc_client *c, const char *api_key);

/* Blocking convenience on a private loop: connect, optionally log in with
 * the API key and set the client id, make one call, close.
 * *result owned by the caller on success (0). On failure returns the
 * negative status and fills err (server errors return -EREMOTEIO). */
struct rpc_sync_opts {
    const char *api_key;   /* NULL = no login */
    const char *client_id; /* NULL = none */
    int64_t msgid;         /* -1 = automatic */
    unsigned timeout_ms;   /* 0 = 30000 */
    /* The login and core.set_options steps (answered by the node itself,
     * no leader needed) must complete within this, else -ETIMEDOUT: a
     * node that does not answer them is down or stopped, and a client
     * with other nodes to try should not wait for it. 0 = timeout_ms. */
    unsigned connect_timeout_ms;
    const struct rpc_tls_opts *tls; /* as rpc_client_open's */
};
int rpc_call_sync(const char *endpoint, const char *method, struct nv *params,
                  const struct rpc_sync_opts *opts, struct nv **result, struct nv_err *err);

/* ================= query engine ================= */

/* Apply query filters and options (reference §8.1, §8.2) to items
 * (borrowed array of entries). filters NULL = [], options NULL = {}.
 * On success *out is owned: an array, one entry (get), or an int (count).
 * Bad filters/options give INVALID_PARAMS items on attribute "filters" /
 * "options" (messages as the reference); run-time failures (type mismatch
 * in ordering, get with no match -> "MatchNotFound()", get with offset)
 * give CALL errors. */
int rpc_query(const struct nv *items, const struct nv *filters, const struct nv *options,
              struct nv **out, struct nv_err *err);
/* Validate filters/options alone (same messages), e.g. before a barrier. */
int rpc_query_check(const struct nv *filters, const struct nv *options, struct nv_err *err);

#endif
