/* The methods every server has: auth.login_with_api_key (the cluster key,
 * then the key file's hashed keys, checked off the loop), auth.me,
 * core.ping, core.set_options (client id), core.subscribe,
 * core.get_methods. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <openssl/crypto.h>
#include "nv.h"
#include "nv_err.h"
#include "nv_log.h"
#include "rpc.h"
#include "server_int.h"

/* ------------------------------------------------------------------ */
/* built-in methods */

static void reply_invalid(struct rpc_call *call, const char *attr, const char *msg)
{
    struct nv_err e;
    nv_err_init(&e);
    nv_err_add(&e, attr, EINVAL, "%s", msg);
    rpc_reply_error(call, &e);
    nv_err_clear(&e);
}

void srv__m_ping(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)params;
    (void)ctx;
    rpc_reply(call, nv_str("pong"));
}

/* ---- logins ----
 * A login is compared with the cluster key at once (constant time, cheap),
 * else checked against the key file in the thread pool: the file is read
 * and parsed there too, and each hashed line tried costs a PBKDF2. The
 * connection is held meanwhile (the calls pipelined behind the login run
 * after it, logged in or not). One check runs at a time for the whole
 * server: the pool also serves the Raft log's file operations, and
 * clients that cannot log in must not be able to fill it. */

struct login_job {
    uv_work_t req;
    struct rpc_server *s;
    struct rpc_call *call;
    char *path;
    char *key;
    size_t len;
    int rv; /* rpc_keys_check's */
    struct rpc_key_match m;
    char msg[512];
    struct login_job *next; /* waiting for the pool */
};

static void login_work(uv_work_t *req)
{
    struct login_job *j = req->data;
    j->rv = rpc_keys_check(j->path, j->key, j->len, &j->m, j->msg, sizeof j->msg);
}

static void login_job_free(struct login_job *j)
{
    if (j->key != NULL) {
        OPENSSL_cleanse(j->key, j->len);
    }
    free(j->key);
    free(j->path);
    free(j);
}

static void login_start(struct login_job *j);

static void login_done(uv_work_t *req, int status)
{
    (void)status;
    struct login_job *j = req->data;
    struct rpc_server *s = j->s;
    s->login_jobs--;
    struct login_job *next = s->login_wait;
    if (next != NULL) {
        s->login_wait = next->next;
        login_start(next);
    }
    struct rpc_call *call = j->call;
    struct conn *c = call->c;
    if (j->rv < 0) {
        srv__log_limited(s, &s->log_key, "login refused: %s", j->msg);
    } else if (j->m.legacy && !s->legacy_warned) {
        s->legacy_warned = true;
        nv_logf(NV_LOG_WARNING,
                "rpc: API key file %s holds one bare key (the old format): it is accepted as "
                "the admin key \"%s\". Store it hashed: nvmetctl key hash --name admin --role "
                "admin < %s > %s.new && chmod 600 %s.new && mv %s.new %s (then give the nodes "
                "--cluster-key-file or --raft-psk-file to forward with)",
                j->path, RPC_LEGACY_KEY_NAME, j->path, j->path, j->path, j->path, j->path);
    }
    if (c->srv == NULL || c->closing) {
        /* dropped: the connection is gone (and c with the call, maybe) */
        c->verifying = false;
        rpc_reply(call, NULL);
    } else {
        /* the answer first, then what was pipelined behind the login */
        if (j->rv == 1) {
            srv__login_ok(c, call, j->m.role, j->m.name);
        } else {
            srv__login_failed(c, call);
        }
        srv__resume(c); /* c is open: its own reference keeps it */
    }
    login_job_free(j);
    srv__unref(s);
}

static void login_start(struct login_job *j)
{
    struct rpc_server *s = j->s;
    s->login_jobs++;
    j->req.data = j;
    /* a connection that went away while waiting costs no hashing */
    if (rpc_call_gone(j->call) || uv_queue_work(s->loop, &j->req, login_work, login_done) < 0) {
        j->rv = 0;
        login_done(&j->req, 0);
    }
}

static void login_queue(struct rpc_server *s, struct conn *c, struct rpc_call *call,
                        const struct nv *k)
{
    struct login_job *j = calloc(1, sizeof *j);
    if (j != NULL) {
        j->path = strdup(s->key_file);
        j->key = malloc(k->u.s.len + 1);
    }
    if (j == NULL || j->path == NULL || j->key == NULL) {
        if (j != NULL) {
            free(j->path);
            free(j->key);
            free(j);
        }
        srv__login_failed(c, call);
        return;
    }
    memcpy(j->key, k->u.s.p, k->u.s.len);
    j->key[k->u.s.len] = '\0';
    j->len = k->u.s.len;
    j->s = s;
    j->call = call;
    srv__ref(s);
    c->verifying = true;
    if (s->login_jobs > 0) {
        struct login_job **tail = &s->login_wait;
        while (*tail != NULL) {
            tail = &(*tail)->next;
        }
        *tail = j;
        return;
    }
    login_start(j);
}

void srv__m_login(struct rpc_call *call, const struct nv *params, void *ctx)
{
    struct rpc_server *s = ctx;
    const struct nv *k = nv_at(params, 0);
    if (nv_len(params) != 1 || !nv_is(k, NV_STR)) {
        reply_invalid(call, "auth_login_with_api_key.api_key", "Input should be a valid string");
        return;
    }
    struct conn *c = call->c;
    if (!c->is_tcp) {
        rpc_reply(call, nv_bool(true)); /* root on the unix socket: admin already */
        return;
    }
    /* an address over its failure budget is not even compared */
    if (srv__login_blocked(c)) {
        srv__login_failed(c, call);
        return;
    }
    const char *ck = s->cluster_key != NULL ? s->cluster_key(s->cluster_key_ctx) : NULL;
    if (rpc_key_equal(ck, k->u.s.p, k->u.s.len)) {
        srv__login_ok(c, call, RPC_ROLE_ADMIN, RPC_CLUSTER_KEY_NAME);
        return;
    }
    if (s->key_file == NULL || k->u.s.len == 0 || k->u.s.len > KEY_MAX) {
        srv__login_failed(c, call);
        return;
    }
    login_queue(s, c, call, k);
}

enum rpc_role srv__method_role(unsigned flags)
{
    return flags & (RPC_M_NOAUTH | RPC_M_READONLY) ? RPC_ROLE_READONLY : RPC_ROLE_ADMIN;
}

void srv__m_me(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)ctx;
    if (nv_len(params) != 0) {
        reply_invalid(call, "", "auth.me takes no arguments");
        return;
    }
    struct nv *me = nv_map();
    nv_set_str(me, "name", rpc_call_key_name(call));
    nv_set_str(me, "role", rpc_role_name(rpc_call_role(call)));
    nv_set_str(me, "transport", call->c->is_tcp ? "tcp" : "unix");
    rpc_reply(call, me);
}

void srv__m_get_methods(struct rpc_call *call, const struct nv *params, void *ctx)
{
    struct rpc_server *s = ctx;
    if (nv_len(params) != 0) {
        reply_invalid(call, "", "core.get_methods takes no arguments");
        return;
    }
    struct nv *out = nv_map();
    for (size_t i = 0; i < s->n_methods; i++) {
        struct nv *d = nv_map();
        nv_set_str(d, "role", rpc_role_name(srv__method_role(s->methods[i].flags)));
        nv_set_bool(d, "before_login", (s->methods[i].flags & RPC_M_NOAUTH) != 0);
        const char *args = rpc_method_args(s->methods[i].name);
        nv_set_str(d, "args", args); /* NULL sets nil */
        nv_set(out, s->methods[i].name, d);
    }
    rpc_reply(call, out);
}

void srv__m_set_options(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)ctx;
    const struct nv *o = nv_at(params, 0);
    if (nv_len(params) != 1 || !nv_is(o, NV_MAP)) {
        reply_invalid(call, "core_set_options.options", "Input should be a valid dictionary");
        return;
    }
    const struct nv *id = nv_get(o, "client_id");
    if (id != NULL && !nv_is(id, NV_NIL) &&
        (!nv_is(id, NV_STR) || id->u.s.len == 0 || id->u.s.len > CLIENT_ID_MAX ||
         strlen(id->u.s.p) != id->u.s.len)) {
        reply_invalid(call, "core_set_options.options.client_id",
                      "client_id must be a string of 1 to 256 characters");
        return;
    }
    if (id != NULL) {
        struct conn *c = call->c;
        free(c->client_id);
        c->client_id = nv_is(id, NV_STR) ? strdup(id->u.s.p) : NULL;
    }
    rpc_reply(call, NULL);
}

/* A name core.subscribe accepts: "*", or one of the server's
 * collections (any name when it has no list). */
static bool collection_known(const struct rpc_server *s, const char *name)
{
    if (s->collections == NULL || strcmp(name, "*") == 0) {
        return true;
    }
    for (size_t i = 0; i < s->n_collections; i++) {
        if (strcmp(s->collections[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static void reply_unknown_collection(struct rpc_call *call, const struct rpc_server *s,
                                     const struct nv *name)
{
    char list[1024] = "";
    size_t at = 0;
    for (size_t i = 0; i < s->n_collections && at < sizeof list; i++) {
        at += (size_t)snprintf(list + at, sizeof list - at, "%s, ", s->collections[i]);
    }
    struct nv_err e;
    nv_err_init(&e);
    nv_err_add(&e, "core_subscribe.name", EINVAL, "Unknown collection '%.64s': valid names are %s*",
               name->u.s.p, list);
    rpc_reply_error(call, &e);
    nv_err_clear(&e);
}

void srv__m_subscribe(struct rpc_call *call, const struct nv *params, void *ctx)
{
    struct rpc_server *s = ctx;
    const struct nv *name = nv_at(params, 0);
    if (nv_len(params) != 1 || !nv_is(name, NV_STR) || name->u.s.len == 0 ||
        strlen(name->u.s.p) != name->u.s.len) {
        reply_invalid(call, "core_subscribe.name", "Input should be a valid string");
        return;
    }
    if (!collection_known(s, name->u.s.p)) {
        reply_unknown_collection(call, s, name);
        return;
    }
    struct conn *c = call->c;
    for (unsigned i = 0; i < c->n_subs; i++) {
        if (strcmp(c->subs[i], name->u.s.p) == 0) {
            rpc_reply(call, nv_bool(true));
            return;
        }
    }
    if (c->n_subs == MAX_SUBS) {
        reply_invalid(call, "core_subscribe.name", "Too many subscriptions on this connection");
        return;
    }
    /* a closing connection keeps none: conn_close counted them out */
    if (!c->closing && (c->subs[c->n_subs] = strdup(name->u.s.p)) != NULL) {
        c->n_subs++;
        s->n_subs++;
    }
    rpc_reply(call, nv_bool(true));
}

void srv__m_unsubscribe(struct rpc_call *call, const struct nv *params, void *ctx)
{
    struct rpc_server *s = ctx;
    const struct nv *name = nv_at(params, 0);
    if (nv_len(params) != 1 || !nv_is(name, NV_STR)) {
        reply_invalid(call, "core_unsubscribe.name", "Input should be a valid string");
        return;
    }
    struct conn *c = call->c;
    for (unsigned i = 0; i < c->n_subs; i++) {
        if (strcmp(c->subs[i], name->u.s.p) == 0) {
            free(c->subs[i]);
            c->subs[i] = c->subs[--c->n_subs];
            s->n_subs--;
            break;
        }
    }
    rpc_reply(call, nv_bool(true));
}
