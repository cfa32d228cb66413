/* The methods every server has: auth.login_with_api_key (constant-time
 * key compare; the key file must be private), core.ping, core.set_options
 * (client id), core.subscribe. */
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
#include "nv.h"
#include "nv_err.h"
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

int rpc_key_file_read(const char *path, char **key, char *msg, size_t msglen)
{
    *key = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        snprintf(msg, msglen, "API key file %s: %s", path, strerror(err));
        return -err;
    }
    /* checked on the open file: what is read is what was checked */
    struct stat st;
    int rv = 0;
    if (fstat(fd, &st) < 0) {
        rv = -errno;
        snprintf(msg, msglen, "API key file %s: %s", path, strerror(-rv));
    } else if (!S_ISREG(st.st_mode)) {
        rv = -EINVAL;
        snprintf(msg, msglen, "API key file %s is not a regular file", path);
    } else if ((st.st_mode & 077) != 0) {
        rv = -EPERM;
        snprintf(msg, msglen,
                 "API key file %s has mode %04o: it must not be accessible by group or others "
                 "(chmod 600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
    }
    char *buf = rv == 0 ? calloc(1, KEY_MAX + 1) : NULL;
    if (rv == 0 && buf == NULL) {
        rv = -ENOMEM;
        snprintf(msg, msglen, "API key file %s: out of memory", path);
    }
    ssize_t n = rv == 0 ? read(fd, buf, KEY_MAX) : 0;
    close(fd);
    if (rv == 0 && n < 0) {
        rv = -errno;
        snprintf(msg, msglen, "API key file %s: %s", path, strerror(-rv));
    }
    if (rv < 0) {
        free(buf);
        return rv;
    }
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl != NULL) {
        *nl = '\0';
    }
    size_t l = strlen(buf);
    while (l > 0 && (buf[l - 1] == '\r' || buf[l - 1] == ' ' || buf[l - 1] == '\t')) {
        buf[--l] = '\0';
    }
    if (l == 0) {
        free(buf);
        snprintf(msg, msglen, "API key file %s holds no key (its first line is empty)", path);
        return -EINVAL;
    }
    *key = buf;
    return 0;
}

/* The key at each login (a rotated key takes effect without a restart),
 * or NULL: a file that became unusable refuses every login, logged (at
 * most once a second). */
static char *read_key(struct rpc_server *s)
{
    if (s->key_file == NULL) {
        return NULL;
    }
    char *key = NULL;
    char msg[512];
    if (rpc_key_file_read(s->key_file, &key, msg, sizeof msg) < 0) {
        srv__log_limited(s, &s->log_key, "login refused: %s", msg);
        return NULL;
    }
    return key;
}

/* Constant time in the secret: the loop runs over the GIVEN key's length
 * and touches the secret at every step whatever matched so far. */
static bool key_equal(const char *secret, size_t slen, const char *given, size_t glen)
{
    volatile unsigned char diff = (unsigned char)(slen != glen);
    for (size_t i = 0; i < glen; i++) {
        diff |= (unsigned char)(secret[i % slen] ^ given[i]);
    }
    return diff == 0;
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
    if (c->authed) {
        rpc_reply(call, nv_bool(true));
        return;
    }
    /* an address over its failure budget is not even compared */
    if (srv__login_blocked(c)) {
        srv__login_failed(c, call);
        return;
    }
    char *secret = read_key(s);
    bool ok = secret != NULL && key_equal(secret, strlen(secret), k->u.s.p, k->u.s.len);
    free(secret);
    if (ok) {
        srv__login_ok(c, call);
    } else {
        srv__login_failed(c, call);
    }
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

void srv__m_subscribe(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)ctx;
    const struct nv *name = nv_at(params, 0);
    if (nv_len(params) != 1 || !nv_is(name, NV_STR) || name->u.s.len == 0) {
        reply_invalid(call, "core_subscribe.name", "Input should be a valid string");
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
    c->subs[c->n_subs] = strdup(name->u.s.p);
    if (c->subs[c->n_subs] != NULL) {
        c->n_subs++;
    }
    rpc_reply(call, nv_bool(true));
}

void srv__m_unsubscribe(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)ctx;
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
            break;
        }
    }
    rpc_reply(call, nv_bool(true));
}
