/* The product's method table: nvmet.*, cluster.*, failover.* over the
 * statemachine and the node interface (struct rpc_node, wired by nvmetd).
 *
 * Writes:  rpc_write (write.c: sm_prepare, precise validation errors on
 *          the leader -> sm_command_encode with the connection's (client
 *          id, msgid) as the session key -> node->propose -> the apply
 *          result -> wait until this node rendered it) -> reply: the
 *          result, or an error that says the change is committed but this
 *          node's kernel refused it (reply_render_refused).
 * Reads:   argument check -> node->barrier (linearizable; skipped with
 *          options.extra.consistency = "local") -> sm_entries -> rpc_query.
 * Others:  choices, generate_key, sessions, cluster/failover status.
 *
 * Without a leader: a follower forwards writes, linearizable reads and
 * membership calls to the leader (forward.c); a node that knows no ready
 * leader holds them until it does (hold.c), and a call whose proposal or
 * barrier failed because leadership moved is held and run again when that
 * is safe (methods_retry_safe): "not leader" means it did not run, "leadership
 * lost" means it may have, which only a session key makes safe to retry. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "methods_int.h"
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "sm.h"

/* ------------------------------------------------------------------ */
/* errors */

void methods_reply_errno(struct rpc_methods *m, struct rpc_call *call, int status)
{
    struct nv_err e;
    nv_err_init(&e);
    uint64_t leader_id = m->node->leader_id != NULL ? m->node->leader_id(m->node->ctx) : 0;
    switch (-status) {
        case NV_ENOTLEADER:
        case NV_ENOQUORUM: {
            const char *leader = m->node->leader_rpc ? m->node->leader_rpc(m->node->ctx) : NULL;
            if (-status == NV_ENOTLEADER && leader != NULL) {
                nv_err_set(&e, NV_E_NOT_LEADER, NV_ENOTLEADER, "Not the leader; the leader is %s",
                           leader);
                e.leader = strdup(leader);
            } else if (leader == NULL && leader_id != 0) {
                /* a leader exists: this node just cannot reach its API */
                nv_err_set(&e, NV_E_NOT_LEADER, NV_ENOTLEADER,
                           "Not the leader; the leader is node %" PRIu64
                           ", which has no RPC address to forward to (started without --rpc, "
                           "or not registered yet): call it directly",
                           leader_id);
            } else {
                nv_err_set(&e, NV_E_NO_QUORUM, NV_ENOQUORUM, "%s", NO_LEADER_REASON);
            }
            break;
        }
        case NV_ELEADERSHIPLOST:
            /* Raft could not tell whether the entry commits: the client retries
             * with the same client id and sequence, which deduplicates. */
            nv_err_set(&e, NV_E_NOT_LEADER, NV_ELEADERSHIPLOST,
                       "Leadership lost before the change was confirmed; retry with the same "
                       "client id and sequence");
            break;
        case ESHUTDOWN:
            nv_err_set(&e, NV_E_NOT_LEADER, ESHUTDOWN, "The node is shutting down");
            break;
        case ENOSPC:
            /* from consensus: the leader's Raft log cannot grow; reads need
             * it too (their barrier is a log entry) */
            nv_err_call(&e, ENOSPC,
                        "No space left on device for the Raft log: writes and linearizable "
                        "reads fail until space is freed (cluster.status: node.storage); reads "
                        "with {\"extra\": {\"consistency\": \"local\"}} still answer");
            break;
        default:
            nv_err_call(&e, -status, "%s", strerror(-status));
            break;
    }
    rpc_reply_error(call, &e);
    nv_err_clear(&e);
}

static void reply_verr(struct rpc_call *call, const char *attr, int errnum, const char *msg)
{
    struct nv_err e;
    nv_err_init(&e);
    nv_err_add(&e, attr, errnum, "%s", msg);
    rpc_reply_error(call, &e);
    nv_err_clear(&e);
}

/* "Too many arguments (expected N, found M)" as TrueNAS answers it (attribute ""). */
static bool check_nargs(struct rpc_call *call, const struct nv *params, size_t max)
{
    if (nv_len(params) <= max) {
        return true;
    }
    struct nv_err e;
    nv_err_init(&e);
    nv_err_add(&e, "", EINVAL, "Too many arguments (expected %zu, found %zu)", max, nv_len(params));
    rpc_reply_error(call, &e);
    nv_err_clear(&e);
    return false;
}

/* ------------------------------------------------------------------ */
/* writes */

struct write_req {
    struct rpc_methods *m;
    struct rpc_call *call;
    struct req r;            /* to run the call again (hold.c) */
    const struct nv *params; /* borrowed from the call, likewise */
};

/* A proposal that failed with status: held to run again when it did not
 * run (not leader) or it may have and the session key deduplicates it
 * (leadership lost). True if held. */
static bool write_hold(struct rpc_methods *m, const struct req *r, const struct nv *params,
                       int status)
{
    if (status != -NV_ENOTLEADER && !(status == -NV_ELEADERSHIPLOST && methods_retry_safe(m, r))) {
        return false;
    }
    return hold_park(m, r, params, status, NULL, NULL);
}

/* The write is committed and applied, but this node's kernel refused
 * (part of) it: the caller must not believe the change is live here, nor
 * retry it (it is in the configuration; a later render pass, the drift
 * sweep or a fix of the cause repairs it; cluster.status lists it). */
static void reply_render_refused(struct rpc_call *call, const struct rpc_render *render)
{
    struct nv_err e;
    nv_err_init(&e);
    int errnum = -render->error;
    nv_err_call(&e, errnum,
                "The change is committed, but this node's kernel refused it: %s: %s (configfs "
                "is repaired by a later render pass; cluster.status shows the render error)",
                render->object != NULL ? render->object : "nvmet", strerror(errnum));
    e.committed = true;
    rpc_reply_error(call, &e);
    nv_err_clear(&e);
}

static void write_reply(struct rpc_call *call, struct sm_result *res,
                        const struct rpc_render *render)
{
    if (res->err != NULL) {
        rpc_reply_error(call, res->err);
    } else if (render != NULL && render->error < 0) {
        reply_render_refused(call, render);
    } else {
        rpc_reply(call, res->value);
        res->value = NULL;
    }
}

static void write_done(void *arg, int status, struct sm_result *res,
                       const struct rpc_render *render)
{
    struct write_req *w = arg;
    if (status < 0) {
        if (!write_hold(w->m, &w->r, w->params, status)) {
            methods_reply_errno(w->m, w->call, status);
        }
    } else {
        write_reply(w->call, res, render);
    }
    free(w);
}

static void m_write(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    const struct rpc_node *node = m->node;
    if (fwd_wanted(m, r)) {
        fwd_call(m, r, params);
        return;
    }
    if (node->is_leader != NULL && !node->is_leader(node->ctx)) {
        /* no leader known (an election): wait for one; a known leader that
         * is not forwarded to is named in the NOT_LEADER answer */
        if (!hold_no_leader(m) || !hold_park(m, r, params, -NV_ENOTLEADER, NULL, NULL)) {
            methods_reply_errno(m, call, -NV_ENOTLEADER);
        }
        return;
    }
    /* a retry of a write that was already applied: its first answer */
    struct sm_result *prev = sm_session_result(node->state(node->ctx), r->client_id, r->seq);
    if (prev != NULL) {
        write_reply(call, prev, NULL);
        sm_result_free(prev);
        return;
    }
    struct write_req *w = calloc(1, sizeof *w);
    if (w == NULL) {
        methods_reply_errno(m, call, -ENOMEM);
        return;
    }
    w->m = m;
    w->call = call;
    w->r = *r;
    w->params = params;
    struct nv_err e;
    nv_err_init(&e);
    int rv = rpc_write(node, r->method, params, r->client_id, r->seq, RPC_WRITE_RENDERED,
                       write_done, w, &e);
    if (rv < 0) {
        free(w);
        if (nv_err_isset(&e)) {
            rpc_reply_error(call, &e);
        } else if (!write_hold(m, r, params, rv)) {
            methods_reply_errno(m, call, rv);
        }
    }
    nv_err_clear(&e);
}

/* ------------------------------------------------------------------ */
/* reads */

enum read_kind { READ_QUERY, READ_GET_INSTANCE, READ_CONFIG, READ_SESSIONS, READ_SAVE };

struct read_req {
    struct rpc_methods *m;
    struct rpc_call *call;
    enum read_kind kind;
    int table;
    struct nv *params;            /* owned copy: the call's params outlive no barrier */
    struct req rq;                /* to run the call again (hold.c) */
    const struct nv *call_params; /* borrowed from the call, likewise */
};

/* Whether options.extra asks for a local (possibly stale) read. */
static bool wants_local(const struct nv *options)
{
    const char *c = nv_get_str(nv_get(options, "extra"), "consistency");
    return c != NULL && strcmp(c, "local") == 0;
}

static void read_run(struct read_req *r)
{
    const struct rpc_node *node = r->m->node;
    const struct sm_state *s = node->state(node->ctx);
    struct nv_err e;
    nv_err_init(&e);
    struct nv *items = NULL, *out = NULL;
    const struct nv *filters = NULL, *options = NULL;

    switch (r->kind) {
        case READ_CONFIG:
            methods_reply(&r->rq, sm_global_entry(s));
            goto done;
        case READ_SAVE:
            /* admin only (the method table): it holds the DH-CHAP keys */
            methods_reply(&r->rq, sm_config_save(s));
            goto done;
        case READ_QUERY:
            filters = nv_at(r->params, 0);
            options = nv_at(r->params, 1);
            items = sm_entries(s, (enum sm_table)r->table, nv_get(options, "extra"));
            /* before the query: filters and ordering see only what the
             * caller may see */
            methods_mask(items, r->rq.role);
            break;
        case READ_SESSIONS:
            filters = nv_at(r->params, 0);
            options = nv_at(r->params, 1);
            items = node->sessions ? node->sessions(node->ctx, &e) : nv_arr();
            if (items == NULL) {
                rpc_reply_error(r->call, &e);
                goto done;
            }
            methods_mask(items, r->rq.role);
            break;
        case READ_GET_INSTANCE: {
            const struct nv *id = nv_at(r->params, 0);
            options = nv_at(r->params, 1);
            struct nv *entry =
                sm_entry(s, (enum sm_table)r->table, id->u.i, nv_get(options, "extra"));
            if (entry == NULL) {
                nv_err_add(&e, NULL, ENOENT, "%s %lld does not exist",
                           sm_table_verbose((enum sm_table)r->table), (long long)id->u.i);
                rpc_reply_error(r->call, &e);
                goto done;
            }
            items = nv_arr();
            nv_push(items, entry);
            methods_mask(items, r->rq.role);
            /* get_instance(id, options) = query([["id", "=", id]], options + get) */
            struct nv *opts = options != NULL ? nv_copy(options) : nv_map();
            nv_set_bool(opts, "get", true);
            if (rpc_query(items, NULL, opts, &out, &e) < 0) {
                rpc_reply_error(r->call, &e);
            } else {
                methods_reply(&r->rq, out);
            }
            nv_free(opts);
            goto done;
        }
    }
    if (rpc_query(items, filters, options, &out, &e) < 0) {
        rpc_reply_error(r->call, &e);
    } else {
        methods_reply(&r->rq, out);
    }
done:
    nv_free(items);
    nv_err_clear(&e);
    nv_free(r->params);
    free(r);
}

static void read_barrier_done(void *arg, int status, void *result)
{
    (void)result;
    struct read_req *r = arg;
    if (status < 0) {
        /* a read that found no leader runs again once there is one */
        bool moved = status == -NV_ENOTLEADER || status == -NV_ELEADERSHIPLOST;
        if (!moved || !hold_park(r->m, &r->rq, r->call_params, status, NULL, NULL)) {
            methods_reply_errno(r->m, r->call, status);
        }
        nv_free(r->params);
        free(r);
        return;
    }
    read_run(r);
}

static void start_read(struct rpc_methods *m, const struct req *rq, const struct nv *params,
                       enum read_kind kind, int table, bool local)
{
    struct rpc_call *call = rq->call;
    if (!local && fwd_wanted(m, rq)) {
        fwd_call(m, rq, params);
        return;
    }
    struct read_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        methods_reply_errno(m, call, -ENOMEM);
        return;
    }
    r->m = m;
    r->call = call;
    r->kind = kind;
    r->table = table;
    r->params = nv_copy(params);
    r->rq = *rq;
    r->call_params = params;
    const struct rpc_node *node = m->node;
    if (local || node->barrier == NULL) {
        read_run(r);
        return;
    }
    if (node->is_leader != NULL && !node->is_leader(node->ctx)) {
        nv_free(r->params);
        free(r);
        if (!hold_no_leader(m) || !hold_park(m, rq, params, -NV_ENOTLEADER, NULL, NULL)) {
            methods_reply_errno(m, call, -NV_ENOTLEADER);
        }
        return;
    }
    int rv = node->barrier(node->ctx, read_barrier_done, r);
    if (rv < 0) {
        nv_free(r->params);
        free(r);
        if (rv != -NV_ENOTLEADER || !hold_park(m, rq, params, rv, NULL, NULL)) {
            methods_reply_errno(m, call, rv);
        }
    }
}

/* The service part of "nvmet.subsys.query" -> table. */
static int table_of_method(const char *method)
{
    const char *dot = strrchr(method, '.');
    if (dot == NULL) {
        return -1;
    }
    char service[64];
    size_t n = (size_t)(dot - method);
    if (n >= sizeof service) {
        return -1;
    }
    memcpy(service, method, n);
    service[n] = '\0';
    return sm_table_of(service);
}

/* filters must be a list and options a map; deeper checks in rpc_query. */
static bool check_query_args(struct rpc_call *call, const struct nv *params)
{
    if (!check_nargs(call, params, 2)) {
        return false;
    }
    const struct nv *f = nv_at(params, 0), *o = nv_at(params, 1);
    if (f != NULL && !nv_is(f, NV_ARR)) {
        reply_verr(call, "filters", EINVAL, "Input should be a valid list");
        return false;
    }
    if (o != NULL && !nv_is(o, NV_MAP)) {
        reply_verr(call, "options", EINVAL, "Input should be a valid dictionary");
        return false;
    }
    struct nv_err e;
    nv_err_init(&e);
    if (rpc_query_check(f, o, &e) < 0) {
        rpc_reply_error(call, &e);
        nv_err_clear(&e);
        return false;
    }
    return true;
}

static void m_query(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    if (!check_query_args(call, params)) {
        return;
    }
    start_read(m, r, params, READ_QUERY, table_of_method(r->method), wants_local(nv_at(params, 1)));
}

static void m_get_instance(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    if (!check_nargs(call, params, 2)) {
        return;
    }
    const struct nv *id = nv_at(params, 0), *o = nv_at(params, 1);
    if (id == NULL) {
        reply_verr(call, "id", EINVAL, "Field required");
        return;
    }
    if (!nv_is(id, NV_INT)) {
        reply_verr(call, "id", EINVAL, "Input should be a valid integer");
        return;
    }
    if (o != NULL && !nv_is(o, NV_MAP)) {
        reply_verr(call, "options", EINVAL, "Input should be a valid dictionary");
        return;
    }
    struct nv_err e;
    nv_err_init(&e);
    if (rpc_query_check(NULL, o, &e) < 0) {
        rpc_reply_error(call, &e);
        nv_err_clear(&e);
        return;
    }
    start_read(m, r, params, READ_GET_INSTANCE, table_of_method(r->method), wants_local(o));
}

static void m_global_config(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    if (!check_nargs(call, params, 0)) {
        return;
    }
    start_read(m, r, params, READ_CONFIG, -1, false);
}

/* nvmet.global.export_nvmetcli [{"source": "desired" | "live"}]: this
 * node's tree in nvmetcli's format (admin: it holds the DH-CHAP keys). */
static void m_export_nvmetcli(struct rpc_methods *m, const struct req *r,
                              const struct nv *params)
{
    struct rpc_call *call = r->call;
    if (!check_nargs(call, params, 1)) {
        return;
    }
    const struct nv *o = nv_at(params, 0);
    const struct nv *src = nv_get(o, "source");
    struct nv_err e;
    nv_err_init(&e);
    bool live = nv_is(src, NV_STR) && strcmp(src->u.s.p, "live") == 0;
    if ((o != NULL && !nv_is(o, NV_MAP) && !nv_is(o, NV_NIL)) ||
        (src != NULL && !live && !(nv_is(src, NV_STR) && strcmp(src->u.s.p, "desired") == 0))) {
        nv_err_add(&e, "export_nvmetcli.source", EINVAL, "Input should be 'desired' or 'live'");
        rpc_reply_error(call, &e);
    } else if (m->node->export_nvmetcli == NULL) {
        nv_err_call(&e, ENOTSUP, "this node has no configfs");
        rpc_reply_error(call, &e);
    } else {
        struct nv *doc = m->node->export_nvmetcli(m->node->ctx, live, &e);
        if (doc == NULL) {
            rpc_reply_error(call, &e);
        } else {
            rpc_reply(call, doc);
        }
    }
    nv_err_clear(&e);
}

/* config.save: the whole replicated configuration, linearizable (after a
 * barrier, like the queries); config.restore [doc] is a write. */
static void m_config_save(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    if (!check_nargs(r->call, params, 0)) {
        return;
    }
    start_read(m, r, params, READ_SAVE, -1, false);
}

static void m_sessions(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    if (!check_query_args(call, params)) {
        return;
    }
    /* sessions come from this node's kernel: no barrier needed */
    start_read(m, r, params, READ_SESSIONS, -1, true);
}

/* ------------------------------------------------------------------ */
/* choices, keys, status */

static struct nv *str_list(const char *const *items)
{
    struct nv *a = nv_arr();
    for (size_t i = 0; items[i] != NULL; i++) {
        nv_push(a, nv_str(items[i]));
    }
    return a;
}

static void m_dhgroup_choices(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    (void)m;
    static const char *const groups[] = {"2048-BIT", "3072-BIT", "4096-BIT",
                                         "6144-BIT", "8192-BIT", NULL};
    if (check_nargs(call, params, 0)) {
        rpc_reply(call, str_list(groups));
    }
}

static const char *const hashes[] = {"SHA-256", "SHA-384", "SHA-512", NULL};

static void m_hash_choices(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    (void)m;
    if (check_nargs(call, params, 0)) {
        rpc_reply(call, str_list(hashes));
    }
}

/* Accepts TrueNAS's "SHA-256" and the short "SHA256" (any case). */
static const char *canonical_hash(const char *h)
{
    for (size_t i = 0; hashes[i] != NULL; i++) {
        char nodash[8] = "SHA";
        strcat(nodash, hashes[i] + 4);
        if (strcasecmp(h, hashes[i]) == 0 || strcasecmp(h, nodash) == 0) {
            return hashes[i];
        }
    }
    return NULL;
}

static void m_generate_key(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    if (!check_nargs(call, params, 2)) {
        return;
    }
    const struct nv *h = nv_at(params, 0), *nqn = nv_at(params, 1);
    const char *hash = "SHA-256";
    if (h != NULL) {
        if (!nv_is(h, NV_STR)) {
            reply_verr(call, "dhchap_hash", EINVAL, "Input should be a valid string");
            return;
        }
        hash = canonical_hash(h->u.s.p);
        if (hash == NULL) {
            reply_verr(call, "dhchap_hash", EINVAL,
                       "Input should be 'SHA-256', 'SHA-384' or 'SHA-512'");
            return;
        }
    }
    if (nqn != NULL && !nv_is(nqn, NV_NIL) && !nv_is(nqn, NV_STR)) {
        reply_verr(call, "nqn", EINVAL, "Input should be a valid string");
        return;
    }
    if (m->node->generate_key == NULL) {
        methods_reply_errno(m, call, -ENOTSUP);
        return;
    }
    char key[160];
    struct nv_err e;
    nv_err_init(&e);
    if (m->node->generate_key(m->node->ctx, hash, nv_is(nqn, NV_STR) ? nqn->u.s.p : NULL, key,
                              sizeof key, &e) < 0) {
        rpc_reply_error(call, &e);
        nv_err_clear(&e);
        return;
    }
    rpc_reply(call, nv_str(key));
}

static void m_address_choices(struct rpc_methods *m, const struct req *r, const struct nv *params)
{
    struct rpc_call *call = r->call;
    if (!check_nargs(call, params, 2)) {
        return;
    }
    const struct nv *t = nv_at(params, 0), *f = nv_at(params, 1);
    /* called without an argument: TCP, the common transport */
    struct nv tcp = {.t = NV_STR, .u.s = {.p = (char *)"TCP", .len = 3}};
    if (t == NULL || nv_is(t, NV_NIL)) {
        t = &tcp;
    }
    if (!nv_is(t, NV_STR) || (strcmp(t->u.s.p, "TCP") != 0 && strcmp(t->u.s.p, "RDMA") != 0 &&
                              strcmp(t->u.s.p, "FC") != 0 && strcmp(t->u.s.p, "LOOP") != 0)) {
        reply_verr(call, "addr_trtype", EINVAL, "Input should be 'TCP', 'RDMA', 'FC' or 'LOOP'");
        return;
    }
    if (f != NULL && !nv_is(f, NV_BOOL)) {
        reply_verr(call, "force_ana", EINVAL, "Input should be a valid boolean");
        return;
    }
    if (m->node->address_choices == NULL) {
        rpc_reply(call, nv_map());
        return;
    }
    struct nv_err e;
    nv_err_init(&e);
    struct nv *out = m->node->address_choices(m->node->ctx, t->u.s.p, f != NULL && f->u.b, &e);
    if (out == NULL) {
        rpc_reply_error(call, &e);
    } else {
        rpc_reply(call, out);
    }
    nv_err_clear(&e);
}

/* ------------------------------------------------------------------ */
/* registration */

static void dispatch(struct rpc_call *call, const struct nv *params, void *ctx);

/* The role column is the whole access policy: RO (readonly and admin)
 * for what changes nothing; everything else needs admin, including
 * generate_key (it hands out secret material) and cluster.forward (only
 * nodes, logged in with the cluster key, forward). */
#define RO RPC_ROLE_READONLY
#define ADMIN RPC_ROLE_ADMIN
static const struct method_def fixed_methods[] = {
    {"nvmet.global.config", m_global_config, RO},
    {"nvmet.global.update", m_write, ADMIN},
    {"config.save", m_config_save, ADMIN},
    {"nvmet.global.export_nvmetcli", m_export_nvmetcli, ADMIN},
    {"config.restore", m_write, ADMIN},
    {"nvmet.global.sessions", m_sessions, RO},
    {"nvmet.port.transport_address_choices", m_address_choices, RO},
    {"nvmet.host.generate_key", m_generate_key, ADMIN},
    {"nvmet.host.dhchap_dhgroup_choices", m_dhgroup_choices, RO},
    {"nvmet.host.dhchap_hash_choices", m_hash_choices, RO},
    {"cluster.status", m_cluster_status, RO},
    {"cluster.forward", m_forwarded, ADMIN},
    {"cluster.node.register", m_write, ADMIN},
    {"cluster.node.add", m_membership, ADMIN},
    {"cluster.node.remove", m_membership, ADMIN},
    {"cluster.node.promote", m_membership, ADMIN},
    {"failover.become_passive", m_membership, ADMIN},
    {"failover.status", m_failover_status, RO},
    {"failover.status_details", m_failover_status, RO},
    {"failover.disabled_reasons", m_failover_status, RO},
    /* TrueNAS HA names, answered the same */
    {"failover.disabled.reasons", m_failover_status, RO},
    {"failover.node", m_failover_status, RO},
    {"failover.config", m_failover_config, RO},
    {"failover.update", m_write, ADMIN},
};

/* Per CRUD service: these verbs. */
static const struct method_def crud_verbs[] = {
    {"query", m_query, RO},      {"get_instance", m_get_instance, RO}, {"create", m_write, ADMIN},
    {"update", m_write, ADMIN}, {"delete", m_write, ADMIN},
};
#undef RO
#undef ADMIN

static void dispatch(struct rpc_call *call, const struct nv *params, void *ctx)
{
    struct bound *b = ctx;
    struct req r = {.call = call,
                    .method = rpc_call_method(call),
                    .client_id = rpc_call_client_id(call),
                    .seq = rpc_call_msgid(call),
                    .role = rpc_call_role(call)};
    /* a node outside the cluster (removed, or not yet joined) serves only
     * its own status: it must not forward or answer for the cluster */
    const struct rpc_node *node = b->m->node;
    const char *why = node->refuse != NULL ? node->refuse(node->ctx) : NULL;
    if (why != NULL && strcmp(r.method, "cluster.status") != 0 &&
        strcmp(r.method, "failover.status") != 0 &&
        strcmp(r.method, "failover.status_details") != 0) {
        struct nv_err e;
        nv_err_init(&e);
        nv_err_set(&e, NV_E_NO_QUORUM, NV_ENOQUORUM, "%s", why);
        rpc_reply_error(call, &e);
        nv_err_clear(&e);
        return;
    }
    methods_run(b->m, b->fn, &r, params);
}

void methods_run(struct rpc_methods *m, method_fn fn, const struct req *r, const struct nv *params)
{
    /* Membership calls (methods_cluster.c) need the leader as writes do:
     * without one known they wait here for it. */
    if (fn == m_membership && m->node->membership != NULL && hold_no_leader(m) &&
        hold_park(m, r, params, -NV_ENOTLEADER, NULL, NULL)) {
        return;
    }
    fn(m, r, params);
}

bool methods_retry_safe(struct rpc_methods *m, const struct req *r)
{
    method_fn fn = methods_lookup(m, r->method);
    if (fn == m_query || fn == m_get_instance || fn == m_global_config) {
        return true;
    }
    return fn == m_write && r->client_id != NULL && r->seq >= 0;
}

const struct bound *methods_find(struct rpc_methods *m, const char *name)
{
    for (size_t i = 0; i < m->n_bindings; i++) {
        if (strcmp(m->names[i], name) == 0) {
            return &m->bindings[i];
        }
    }
    return NULL;
}

method_fn methods_lookup(struct rpc_methods *m, const char *name)
{
    const struct bound *b = methods_find(m, name);
    return b != NULL ? b->fn : NULL;
}

void rpc_mask_secrets(struct nv *v)
{
    if (v == NULL) {
        return;
    }
    if (v->t == NV_ARR) {
        for (size_t i = 0; i < v->u.a.n; i++) {
            rpc_mask_secrets(v->u.a.v[i]);
        }
    } else if (v->t == NV_MAP) {
        for (size_t i = 0; i < v->u.m.n; i++) {
            struct nv_kv *kv = &v->u.m.kv[i];
            if (kv->v != NULL && kv->v->t == NV_STR && sm_field_secret(kv->k)) {
                nv_free(kv->v);
                kv->v = nv_str(SM_SECRET_MASK);
            } else {
                rpc_mask_secrets(kv->v);
            }
        }
    }
}

void methods_mask(struct nv *v, enum rpc_role role)
{
    if (role < RPC_ROLE_ADMIN) {
        rpc_mask_secrets(v);
    }
}

void methods_reply(const struct req *r, struct nv *v)
{
    methods_mask(v, r->role);
    rpc_reply(r->call, v);
}

static int add(struct rpc_server *s, struct rpc_methods *m, const char *name, method_fn fn,
               enum rpc_role role)
{
    if (m->n_bindings == MAX_BINDINGS || strlen(name) >= sizeof m->names[0]) {
        return -ENOSPC;
    }
    snprintf(m->names[m->n_bindings], sizeof m->names[0], "%s", name);
    struct bound *b = &m->bindings[m->n_bindings];
    b->name = m->names[m->n_bindings];
    m->n_bindings++;
    b->m = m;
    b->fn = fn;
    b->role = role;
    return rpc_server_register(s, name, dispatch, b,
                               role == RPC_ROLE_READONLY ? RPC_M_READONLY : 0);
}

int rpc_methods_register(struct rpc_server *s, const struct rpc_node *node,
                         struct rpc_methods **out)
{
    struct rpc_methods *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return -ENOMEM;
    }
    m->node = node;
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < sizeof fixed_methods / sizeof fixed_methods[0]; i++) {
        rv = add(s, m, fixed_methods[i].name, fixed_methods[i].fn, fixed_methods[i].role);
    }
    for (int t = 0; rv == 0 && t < SM_TABLE_COUNT; t++) {
        for (size_t v = 0; rv == 0 && v < sizeof crud_verbs / sizeof crud_verbs[0]; v++) {
            char name[96];
            snprintf(name, sizeof name, "%s.%s", sm_table_service((enum sm_table)t),
                     crud_verbs[v].name);
            rv = add(s, m, name, crud_verbs[v].fn, crud_verbs[v].role);
        }
    }
    if (rv < 0) {
        free(m);
        return rv;
    }
    *out = m;
    return 0;
}

void rpc_methods_free(struct rpc_methods *m)
{
    if (m != NULL) {
        /* closing first: the forwarded calls cancelled by fwd_close are
         * answered, not held */
        m->closing = true;
        fwd_close(m);
        hold_close(m);
    }
    free(m);
}
