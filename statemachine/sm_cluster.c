/* statemachine: the replicated cluster facts next to the nvmet model —
 * the member registry (id, kind, Raft and RPC addresses), the failover
 * settings (failover.config), and the active node (a replicated fact,
 * with the Raft term in which it was chosen). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

struct nv *sm__cluster_default(void)
{
    struct nv *c = nv_map();
    nv_set(c, "nodes", nv_arr());
    nv_set_nil(c, "active");
    struct nv *f = nv_map();
    /* extra wait on a takeover, on top of the delay failover/ derives from
     * its lease (0 with the default timers): the lease alone keeps two
     * nodes from being active at once */
    nv_set_int(f, "takeover_delay_ms", 0);
    nv_set_nil(f, "fence_command");
    nv_set_int(f, "announce_count", 3);
    nv_set_int(f, "announce_interval_ms", 200);
    nv_set(f, "vips", nv_arr());
    nv_set(c, "failover", f);
    return c;
}

static struct nv *cluster(struct sm_state *s)
{
    if (s->cluster == NULL) {
        s->cluster = sm__cluster_default();
    }
    return s->cluster;
}

void sm__cluster_put_node(struct sm_ex *x, const struct nv *d)
{
    struct nv *ns = nv_get(cluster(x->s), "nodes");
    struct nv *out = nv_arr();
    bool placed = false;
    int64_t id = nv_get_int(d, "id", 0);
    for (size_t i = 0; i < nv_len(ns); i++) {
        const struct nv *n = nv_at(ns, i);
        int64_t nid = nv_get_int(n, "id", 0);
        if (!placed && nid >= id) {
            nv_push(out, nv_copy(d));
            placed = true;
        }
        if (nid != id) {
            nv_push(out, nv_copy(n));
        }
    }
    if (!placed) {
        nv_push(out, nv_copy(d));
    }
    nv_set(cluster(x->s), "nodes", out);
    x->changed = true;
    x->result = nv_copy(d);
}

const struct nv *sm_cluster(const struct sm_state *s)
{
    static struct nv *defaults; /* shared, immutable, made once */
    if (s->cluster != NULL) {
        return s->cluster;
    }
    if (defaults == NULL) {
        defaults = sm__cluster_default();
    }
    return defaults;
}

const struct nv *sm_cluster_node(const struct sm_state *s, uint64_t id)
{
    const struct nv *nodes = nv_get(sm_cluster(s), "nodes");
    for (size_t i = 0; i < nv_len(nodes); i++) {
        if (nv_get_int(nv_at(nodes, i), "id", 0) == (int64_t)id) {
            return nv_at(nodes, i);
        }
    }
    return NULL;
}

uint64_t sm_active_node(const struct sm_state *s, uint64_t *term)
{
    const struct nv *a = nv_get(sm_cluster(s), "active");
    if (term != NULL) {
        *term = (uint64_t)nv_get_int(a, "term", 0);
    }
    return (uint64_t)nv_get_int(a, "node", 0);
}

struct nv *sm_failover_config(const struct sm_state *s)
{
    return nv_copy(nv_get(sm_cluster(s), "failover"));
}

static const char *const kinds[] = {"data", "data", "witness", "witness", NULL};

static const struct sm_field reg_fields[] = {{"id", SF_INT, SF_REQ | SF_MIN, 1, 0, NULL},
                                             {"kind", SF_ENUM, SF_REQ, 0, 0, kinds},
                                             {"raft", SF_NESTR, SF_REQ, 0, 0, NULL},
                                             {"rpc", SF_STR, SF_NULL, 0, 0, NULL},
                                             {"members", SF_STR, SF_NULL, 0, 0, NULL},
                                             {NULL, 0, 0, 0, 0, NULL}};

/* cluster.node.register {id, kind, raft, rpc}: insert or replace. */
static int node_register(struct sm_ex *x, const struct nv *params)
{
    if (nv_len(params) != 1) {
        nv_err_add(x->err, "", EINVAL, "Expected one argument, found %zu", nv_len(params));
        return -1;
    }
    struct nv *d = sm__model("cluster_node_register", reg_fields, nv_at(params, 0), x->err);
    if (d == NULL) {
        return -1;
    }
    if (nv_get(d, "rpc") == NULL) {
        nv_set_nil(d, "rpc");
    }
    if (nv_get(d, "members") == NULL) {
        nv_set_nil(d, "members");
    }
    /* another member with the same Raft address is a mistake */
    const struct nv *nodes = nv_get(sm_cluster(x->s), "nodes");
    for (size_t i = 0; i < nv_len(nodes); i++) {
        const struct nv *n = nv_at(nodes, i);
        if (nv_get_int(n, "id", 0) != nv_get_int(d, "id", 0) &&
            strcmp(nv_get_str(n, "raft"), nv_get_str(d, "raft")) == 0) {
            nv_err_add(x->err, "cluster_node_register.raft", EINVAL,
                       "Raft address %s already belongs to node %" PRId64, nv_get_str(d, "raft"),
                       nv_get_int(n, "id", 0));
            nv_free(d);
            return -1;
        }
    }
    if (x->mutate) {
        sm__cluster_put_node(x, d);
    }
    struct nv *op = nv_map();
    nv_set(op, "node", d);
    sm__capture(x, op);
    return 0;
}

/* cluster.node.unregister id */
static int node_unregister(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    if (!sm__arg_int("id", nv_at(params, 0), &id, x->err)) {
        return -1;
    }
    if (x->mutate) {
        struct nv *ns = nv_get(cluster(x->s), "nodes");
        struct nv *out = nv_arr();
        for (size_t i = 0; i < nv_len(ns); i++) {
            if (nv_get_int(nv_at(ns, i), "id", 0) != id) {
                nv_push(out, nv_copy(nv_at(ns, i)));
            }
        }
        nv_set(cluster(x->s), "nodes", out);
        if (sm_active_node(x->s, NULL) == (uint64_t)id) {
            nv_set_nil(cluster(x->s), "active");
        }
        x->changed = true;
        x->result = nv_bool(true);
    }
    struct nv *op = nv_map();
    nv_set_int(op, "id", id);
    sm__capture(x, op);
    return 0;
}

/* failover.activate {node, term}: the active controller is node since term.
 * A later term always wins; an older one is refused (a deposed leader's
 * late proposal must not take the role back). node 0 = release. */
static int activate(struct sm_ex *x, const struct nv *params)
{
    static const struct sm_field f[] = {{"node", SF_INT, SF_REQ | SF_MIN, 0, 0, NULL},
                                        {"term", SF_INT, SF_REQ | SF_MIN, 0, 0, NULL},
                                        {NULL, 0, 0, 0, 0, NULL}};
    struct nv *d = sm__model("failover_activate", f, nv_at(params, 0), x->err);
    if (d == NULL) {
        return -1;
    }
    uint64_t cur_term;
    sm_active_node(x->s, &cur_term);
    if ((uint64_t)nv_get_int(d, "term", 0) < cur_term) {
        nv_err_call(x->err, EINVAL, "term %" PRId64 " is older than the active node's term %" PRIu64,
                    nv_get_int(d, "term", 0), cur_term);
        nv_free(d);
        return -1;
    }
    if (x->mutate) {
        nv_set(cluster(x->s), "active", nv_get_int(d, "node", 0) > 0 ? nv_copy(d) : nv_nil());
        x->changed = true;
        x->result = nv_copy(d);
    }
    sm__capture(x, d);
    return 0;
}

static int vips_check(struct sm_ex *x, const struct nv *v, struct nv **out)
{
    const char *pfx = "failover_update.vips";
    char attr[200];
    if (!nv_is(v, NV_ARR)) {
        nv_err_add(x->err, pfx, EINVAL, "Input should be a valid list");
        return -1;
    }
    static const struct sm_field f[] = {{"address", SF_IP, SF_REQ, 0, 0, NULL},
                                        {"prefix", SF_INT, SF_REQ | SF_MIN | SF_MAXX, 0, 129, NULL},
                                        {"interface", SF_NESTR, SF_REQ | SF_MAXS, 0, 15, NULL},
                                        {"node_addresses", SF_STR, 0, 0, 0, NULL},
                                        {NULL, 0, 0, 0, 0, NULL}};
    struct nv *arr = nv_arr();
    for (size_t i = 0; i < nv_len(v); i++) {
        snprintf(attr, sizeof attr, "%s.%zu", pfx, i);
        const struct nv *item = nv_at(v, i);
        if (!sm__is_model(attr, item, x->err)) {
            continue;
        }
        /* node_addresses is a map: checked apart from the scalar fields */
        struct nv *copy = nv_copy(item);
        struct nv *na = nv_take(copy, "node_addresses");
        struct nv *d = sm__model(attr, f, copy, x->err);
        nv_free(copy);
        if (d == NULL) {
            nv_free(na);
            continue;
        }
        int fam = sm__ip_family(nv_get_str(d, "address"));
        if (fam == 4 && nv_get_int(d, "prefix", 0) > 32) {
            char a2[240];
            snprintf(a2, sizeof a2, "%s.prefix", attr);
            nv_err_add(x->err, a2, EINVAL, "Input should be less than or equal to 32");
        }
        struct nv *nam = nv_map();
        if (na != NULL && !nv_is(na, NV_MAP)) {
            char a2[240];
            snprintf(a2, sizeof a2, "%s.node_addresses", attr);
            nv_err_add(x->err, a2, EINVAL, "Input should be a valid dictionary");
        }
        for (size_t k = 0; na != NULL && nv_is(na, NV_MAP) && k < na->u.m.n; k++) {
            const char *key = na->u.m.kv[k].k;
            const struct nv *val = na->u.m.kv[k].v;
            char *end;
            long nid = strtol(key, &end, 10);
            char a2[240];
            snprintf(a2, sizeof a2, "%s.node_addresses.%s", attr, key);
            if (*key == '\0' || *end != '\0' || nid < 1) {
                nv_err_add(x->err, a2, EINVAL, "Keys are node ids");
            } else if (!nv_is(val, NV_STR) || sm__ip_family(val->u.s.p) != fam) {
                nv_err_add(x->err, a2, EINVAL, "Input should be an address of the VIP's family");
            } else {
                nv_set_str(nam, key, val->u.s.p);
            }
        }
        nv_free(na);
        nv_set(d, "node_addresses", nam);
        for (size_t j = 0; j < nv_len(arr); j++) {
            if (strcmp(nv_get_str(nv_at(arr, j), "address"), nv_get_str(d, "address")) == 0) {
                nv_err_add(x->err, attr, EINVAL, "VIP %s is listed twice",
                           nv_get_str(d, "address"));
            }
        }
        nv_push(arr, d);
    }
    *out = arr;
    return 0;
}

/* failover.update {takeover_delay_ms, fence_command, announce_count,
 * announce_interval_ms, vips}: PATCH semantics like every update. */
static int failover_update(struct sm_ex *x, const struct nv *params)
{
    static const struct sm_field f[] = {
        {"takeover_delay_ms", SF_INT, SF_MIN | SF_MAXX, 0, 600001, NULL},
        {"fence_command", SF_NESTR, SF_NULL, 0, 0, NULL},
        {"announce_count", SF_INT, SF_MIN | SF_MAXX, 0, 101, NULL},
        {"announce_interval_ms", SF_INT, SF_MIN | SF_MAXX, 1, 60001, NULL},
        {"vips", SF_STR, 0, 0, 0, NULL},
        {NULL, 0, 0, 0, 0, NULL}};
    if (nv_len(params) > 1) {
        nv_err_add(x->err, "", EINVAL, "Too many arguments (expected 1, found %zu)",
                   nv_len(params));
        return -1;
    }
    const struct nv *in = nv_at(params, 0);
    if (!sm__is_model("failover_update", in, x->err)) {
        return -1;
    }
    struct nv *copy = nv_copy(in);
    struct nv *vips = nv_take(copy, "vips");
    struct nv *d = sm__model("failover_update", f, copy, x->err);
    nv_free(copy);
    struct nv *vv = NULL;
    if (vips != NULL) {
        vips_check(x, vips, &vv);
    }
    nv_free(vips);
    if (d == NULL || nv_err_isset(x->err)) {
        nv_free(d);
        nv_free(vv);
        return -1;
    }
    if (vv != NULL) {
        nv_set(d, "vips", vv);
    }
    if (x->mutate) {
        struct nv *fo = nv_get(cluster(x->s), "failover");
        for (size_t i = 0; i < d->u.m.n; i++) {
            nv_set(fo, d->u.m.kv[i].k, nv_copy(d->u.m.kv[i].v));
        }
        x->changed = true;
        x->result = nv_copy(fo);
    }
    struct nv *op = nv_map();
    nv_set(op, "set", d);
    sm__capture(x, op);
    return 0;
}

int sm__cluster_exec(struct sm_ex *x, const char *method, const struct nv *params)
{
    if (strcmp(method, "cluster.node.register") == 0) {
        return node_register(x, params);
    }
    if (strcmp(method, "cluster.node.unregister") == 0) {
        return node_unregister(x, params);
    }
    if (strcmp(method, "failover.activate") == 0) {
        return activate(x, params);
    }
    if (strcmp(method, "failover.update") == 0) {
        return failover_update(x, params);
    }
    return 1; /* not a cluster write */
}

bool sm__cluster_is_write(const char *method)
{
    return strcmp(method, "cluster.node.register") == 0 ||
           strcmp(method, "cluster.node.unregister") == 0 ||
           strcmp(method, "failover.activate") == 0 || strcmp(method, "failover.update") == 0;
}
