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
 *   query    - TrueNAS's query filters/options engine (rpc_query). */
#ifndef RPC_H
#define RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nv_hist.h"

struct nv;
struct nv_err;
struct uv_loop_s;

/* ================= server ================= */

struct rpc_server;
struct rpc_call;

struct rpc_server_config {
    const char *unix_path;    /* NULL = no unix socket; created mode 0600 */
    const char *tcp_addr;     /* "host:port" (IPv4 or [IPv6]), NULL = no TCP */
    const char *api_key_file; /* the API keys for TCP logins (see "API
                               * keys and roles"; mode 0600 or stricter:
                               * checked at start and at every login);
                               * NULL = only the cluster key logs in */
    /* The node-to-node key, asked for at each login: a login with it is
     * admin, named RPC_CLUSTER_KEY_NAME. NULL function or result = none. */
    const char *(*cluster_key)(void *ctx);
    void *cluster_key_ctx;
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
    /* A subscribed connection that has more than this many output bytes
     * queued (replies and notifications the peer has not read) when an
     * event is published to it is closed: a subscriber that stops reading
     * must not grow the server's memory without bound. 0 = 8 MiB. */
    size_t max_sub_queue;
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

/* A plaintext key file (a client's --api-key-file, the nodes'
 * --cluster-key-file): its first line, trailing blanks removed. Refused
 * (with a message naming the path and why) when the file cannot be read,
 * is not a regular file, holds no key, or can be read or written by
 * group or others (like ssh with a private key). 0 and *key (owned), or
 * a negative errno. */
int rpc_key_file_read(const char *path, char **key, char *msg, size_t msglen);

/* ================= API keys and roles =================
 *
 * --api-key-file holds one key a line, "NAME ROLE HASH" (blank lines and
 * '#' comments allowed), HASH = rpc_key_hash(); or, the old format, one
 * bare key as its only line, an admin key named RPC_LEGACY_KEY_NAME. The
 * server reads it at each login: keys are added and revoked without a
 * restart. Every method needs the admin role unless registered with
 * RPC_M_READONLY; the unix socket (root) is admin. */
enum rpc_role { RPC_ROLE_NONE = 0, RPC_ROLE_READONLY = 1, RPC_ROLE_ADMIN = 2 };

#define RPC_KEY_ITERATIONS 10000u     /* PBKDF2 rounds of new hashes */
#define RPC_KEY_HASH_MAX 128          /* a hash string fits in this */
#define RPC_LEGACY_KEY_NAME "legacy"  /* the old format's one key */
#define RPC_CLUSTER_KEY_NAME "cluster" /* nodes logged in to each other */
#define RPC_UNIX_KEY_NAME "root"      /* the unix socket's peers */

const char *rpc_role_name(enum rpc_role r); /* "admin", "readonly", "none" */
int rpc_role_parse(const char *s, enum rpc_role *out); /* -EINVAL if neither */
/* Names: 1 to 64 of [A-Za-z0-9._-@]. */
bool rpc_key_name_valid(const char *name);
/* A new random key (64 hex digits) into out (>= 65 bytes). */
int rpc_key_generate(char *out, size_t outlen);
/* The HASH field for key: "pbkdf2-sha256$ITER$SALT$DK" (hex salt and
 * derived key, fresh random salt); iterations 0 = RPC_KEY_ITERATIONS. */
int rpc_key_hash(const char *key, size_t len, unsigned iterations, char *out, size_t outlen);

struct rpc_key_match {
    char name[65];
    enum rpc_role role;
    bool legacy; /* the file is in the old one-key format */
};
/* Read and parse the key file (refused when group/other may access it, or
 * with a bad line: msg names the file and the line) and look key up:
 * 1 and *m filled when it matches, 0 when not, <0 on a bad file. Costs
 * one PBKDF2 per line tried: call it off the event loop. */
int rpc_keys_check(const char *path, const char *key, size_t len, struct rpc_key_match *m,
                   char *msg, size_t msglen);
/* Parse only (at start): the number of keys, and whether the file is in
 * the old format. 0 or <0 with msg. */
int rpc_keys_validate(const char *path, size_t *n_keys, bool *legacy, char *msg, size_t msglen);
/* The old format's bare key (owned) in *key, NULL for a file of hashed
 * keys; <0 when the file cannot be read or parsed. */
int rpc_keys_legacy(const char *path, char **key);
/* Constant-time comparison of a given key with a plaintext secret (false
 * for a NULL or empty secret). */
bool rpc_key_equal(const char *secret, const char *given, size_t glen);

/* Handler of one method. params: borrowed positional array (never NULL),
 * valid until the handler replies. The handler must call rpc_reply or
 * rpc_reply_error exactly once, now or later (async). */
typedef void (*rpc_method_fn)(struct rpc_call *call, const struct nv *params, void *ctx);

/* Callable before a TCP login. Only auth.* names may have it
 * (rpc_server_register refuses it on others): before login nothing else,
 * core.ping included, is answered but NOT_AUTHENTICATED. */
#define RPC_M_NOAUTH 0x1
/* Callable with the readonly role (queries, status); without it a method
 * needs admin, so that a new method is refused to readonly callers until
 * someone decides it changes nothing. */
#define RPC_M_READONLY 0x2

int rpc_server_start(struct uv_loop_s *loop, const struct rpc_server_config *cfg,
                     struct rpc_server **out, char *errmsg, size_t errlen);
/* name is copied. Registering a name twice replaces the handler. */
int rpc_server_register(struct rpc_server *s, const char *name, rpc_method_fn fn, void *ctx,
                        unsigned flags);
/* Notifications from clients ([2, method, params], authenticated
 * connections only) run the method like a request whose reply is dropped;
 * an unknown method is ignored (and logged, rate-limited).
 *
 * Subscriptions. core.subscribe(name) adds name to the connection's
 * subscriptions; rpc_server_notify sends [2, collection, params] (params
 * taken) to every authenticated connection subscribed to collection or
 * "*" (the raw form, kept for tests). */
void rpc_server_notify(struct rpc_server *s, const char *collection, struct nv *params);
/* The arguments of a method in a compact notation (rpc/method_args.c),
 * or NULL if it has no description. */
const char *rpc_method_args(const char *method);
/* The names core.subscribe accepts besides "*" (a NULL-terminated list,
 * copied); another name is refused with a message listing them. Without
 * a list any name is accepted. 0 or -ENOMEM. */
int rpc_server_set_collections(struct rpc_server *s, const char *const *names);
/* Some authenticated connection is subscribed to collection (or "*"):
 * O(1) when nobody subscribed to anything, so that the producer of
 * events can skip building them. */
bool rpc_server_wants(const struct rpc_server *s, const char *collection);
#define RPC_EVENT_METHOD "collection_update"
/* Replace every string value of a secret field (sm_field_secret), at any
 * depth of v's maps and arrays, by SM_SECRET_MASK: what a readonly caller
 * sees of a reply or an event. NULL is left alone. */
void rpc_mask_secrets(struct nv *v);
/* Publish one event of collection (taken): [2, "collection_update",
 * [event]] to every authenticated connection subscribed to collection or
 * "*". An admin connection gets event as is; a readonly one gets
 * mask(event) (owned; NULL mask = as is), built once per publish and
 * only when such a subscriber exists. A connection over max_sub_queue is
 * closed instead (logged, rate-limited). */
void rpc_server_publish(struct rpc_server *s, const char *collection, struct nv *event,
                        struct nv *(*mask)(const struct nv *event));
/* Stop listening, close connections; pending calls are answered by their
 * handlers into the void. done(arg) when every handle is closed. */
void rpc_server_close(struct rpc_server *s, void (*done)(void *arg), void *arg);

struct rpc_server_stats {
    unsigned conns, calls_inflight;
    unsigned unauth_conns, unix_conns; /* of conns */
    uint64_t calls_total, bad_frames, rejected_conns;
    uint64_t evicted_conns, login_failures, notifications;
    uint64_t events_published; /* rpc_server_publish calls that had a subscriber */
    uint64_t events_sent;      /* notifications queued on connections */
    uint64_t slow_subscribers; /* connections closed over max_sub_queue */
};
void rpc_server_get_stats(const struct rpc_server *s, struct rpc_server_stats *st);

/* Per registered method: the calls answered (an error answer counts in
 * errors too) and the time from dispatch to answer. Calls refused before
 * dispatch (not logged in, no such method, too many in flight) are not
 * counted here: their names come from anyone. cb runs for each method
 * that answered at least one call (loop thread). */
struct rpc_method_stats {
    uint64_t calls, errors;
    struct nv_hist latency;
};
void rpc_server_each_method(const struct rpc_server *s,
                            void (*cb)(void *arg, const char *method,
                                       const struct rpc_method_stats *st),
                            void *arg);

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
/* The connection's role and key name (RPC_UNIX_KEY_NAME on the unix
 * socket), RPC_ROLE_NONE / "" before a login. */
enum rpc_role rpc_call_role(const struct rpc_call *call);
const char *rpc_call_key_name(const struct rpc_call *call);
/* The call's connection closed (the client went away, or the server is
 * closing): a reply would be dropped, waiting on its behalf is pointless. */
bool rpc_call_gone(const struct rpc_call *call);

/* ================= methods ================= */

struct sm_state;
struct sm_env;
struct sm_change;
struct sm_result;

/* One committed write as this node applied it (the propose callback's
 * result): the statemachine's result and the rows the apply changed, so
 * that the answer can say how this node's kernel took exactly those. */
struct rpc_applied {
    struct sm_result *res;  /* owned */
    uint64_t generation;    /* sm_generation right after the apply */
    struct sm_change *rows; /* owned: the rows the apply changed */
    size_t n_rows;
    bool all_rows; /* more than rows changed (the global row, cluster
                    * facts, a change list past its bound): every row */
};
void rpc_applied_free(struct rpc_applied *a);

/* How this node's kernel took a write's rows after it rendered them:
 * error 0, or the -errno of the first object of those rows the kernel
 * refused, with its configfs path (under nvmet/) and the renderer's
 * message. Borrowed for the callback. */
struct rpc_render {
    int error;
    const char *object;
    const char *message;
};

/* What the method table needs from the node (wired by nvmetd's main). */
struct rpc_node {
    void *ctx;
    /* The local replicated state (borrowed; valid on the loop thread). */
    const struct sm_state *(*state)(void *ctx);
    /* Leader environment for sm_prepare. */
    const struct sm_env *(*env)(void *ctx);
    /* Propose encoded command bytes. cb gets status 0 and a struct
     * rpc_applied* (ownership passes to cb: rpc_applied_free) once
     * applied here, or a negative errno (see consensus/cons.h). Return <0
     * = not proposed, no cb. Writes go through rpc_write (below). */
    int (*propose)(void *ctx, const void *buf, size_t len,
                   void (*cb)(void *arg, int status, void *result), void *arg);
    /* Linearizable read point; same conventions (result unused). */
    int (*barrier)(void *ctx, void (*cb)(void *arg, int status, void *result), void *arg);
    /* Wait until this node has rendered the write a (borrowed; its rows
     * and generation are copied), then cb(arg, outcome) with how this
     * node's kernel took a's rows (NULL outcome: the node stops). 0: cb
     * later; <0: no wait (a witness renders nothing). NULL = no wait. */
    int (*wait_rendered)(void *ctx, const struct rpc_applied *a,
                         void (*cb)(void *arg, const struct rpc_render *outcome), void *arg);
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
    /* The id of another node this one knows to be the leader, 0 if none
     * (no leader, or this node itself): a call that cannot be forwarded
     * to a known leader says so instead of "no quorum". NULL = unknown. */
    uint64_t (*leader_id)(void *ctx);
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
    /* This node's configfs tree in nvmetcli's saveconfig.json form (owned):
     * as it renders the committed configuration (live false) or as read
     * back from configfs (live true). NULL with err set (a witness renders
     * nothing). */
    struct nv *(*export_nvmetcli)(void *ctx, bool live, struct nv_err *err);
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

/* The one way to write (RPC calls and the node's own proposals alike):
 * sm_prepare against node->state with node->env -> sm_command_encode with
 * the session key (client_id NULL or seq < 0: none) -> node->propose.
 * RPC_WRITE_RENDERED: after a successful apply, wait until this node
 * rendered the write (node->wait_rendered).
 * Returns 0: cb(arg, status, res, render) exactly once later, status 0
 * with the apply's result (borrowed for the callback; its value may be
 * taken) and render NULL unless waited for, or status < 0 (not applied
 * here: leadership lost or moved, shutdown) with res NULL. Returns < 0:
 * nothing happens; err is set when the statemachine refused the call
 * (validation), else the errno says why it could not be proposed. */
#define RPC_WRITE_RENDERED 0x1u
typedef void (*rpc_write_cb)(void *arg, int status, struct sm_result *res,
                             const struct rpc_render *render);
int rpc_write(const struct rpc_node *node, const char *method, const struct nv *params,
              const char *client_id, int64_t seq, unsigned flags, rpc_write_cb cb, void *arg,
              struct nv_err *err);

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

/* Apply query filters and options (TrueNAS middleware's semantics) to items
 * (borrowed array of entries). filters NULL = [], options NULL = {}.
 * On success *out is owned: an array, one entry (get), or an int (count).
 * Bad filters/options give INVALID_PARAMS items on attribute "filters" /
 * "options" (TrueNAS's messages); run-time failures (type mismatch
 * in ordering, get with no match -> "MatchNotFound()", get with offset)
 * give CALL errors. */
int rpc_query(const struct nv *items, const struct nv *filters, const struct nv *options,
              struct nv **out, struct nv_err *err);
/* Validate filters/options alone (same messages), e.g. before a barrier. */
int rpc_query_check(const struct nv *filters, const struct nv *options, struct nv_err *err);

#endif
