/* statemachine: apply of the v2 log format (the format: the top of sm.h).
 *
 * A v2 entry carries every value the leader resolved: defaults, generated
 * serials and uuids, normalized spellings and paths, the environment's
 * answers. Apply re-checks ONLY what can change between prepare and
 * commit (the race invariants), with the attributes and messages of
 * prepare's validation:
 *   - uniqueness of unique columns (subsys name/subnqn/serial, namespace
 *     device_path/device_uuid/device_nguid and nsid in its subsystem,
 *     port transport+address, hostnqn, link pairs),
 *   - the row exists, and the rows it refers to,
 *   - the "disable first" rules (they depend on the running state),
 *   - a delete without force that has dependants,
 *   - the cross-column rules of rows two updates merge into (a host's
 *     ctrl key needs its key; a FILE namespace never shrinks),
 *   - cluster: a Raft address of one node, no older failover term, an
 *     empty cluster for config.restore.
 * It never re-runs field validation, never draws randomness and never
 * consults the environment, so a release that changes a default, a rule
 * or the order of random draws applies old entries exactly as before.
 * Values apply allocates (fixed rules, part of the format): a new row's
 * id is the table's next id (ids are never reused); an "auto" nsid is the
 * lowest nsid in 1..65534 unused in the subsystem; an "auto" port index
 * the lowest in 1..31999 unused by any port. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

static int malformed(struct sm_ex *x, const char *method)
{
    nv_err_call(x->err, EBADMSG, "malformed v2 command %s", method);
    return -1;
}

static bool is_auto(const struct nv *v)
{
    return nv_is(v, NV_STR) && strcmp(v->u.s.p, SM_AUTO) == 0;
}

/* "nvmet_subsys_create" / "nvmet_host_subsys_update" ... */
static void prefix(char *out, size_t len, enum sm_table t, bool create)
{
    snprintf(out, len, "nvmet_%s_%s", sm_table_service(t) + 6, create ? "create" : "update");
}

static void attr_err(struct sm_ex *x, const char *pfx, const char *col, const char *msg)
{
    char attr[160];
    if (col != NULL) {
        snprintf(attr, sizeof attr, "%s.%s", pfx, col);
    } else {
        snprintf(attr, sizeof attr, "%s", pfx);
    }
    nv_err_add(x->err, attr, EINVAL, "%s", msg);
}

static const char *subsys_name(const struct sm_state *s, int64_t id)
{
    const struct nv *r = sm__find(s, SM_SUBSYS, id);
    return r != NULL ? nv_get_str(r, "name") : "?";
}

/* ---- per table race invariants on the new row n (id self; old = NULL
 * for a create; set = the client's keys of an update) ---- */

static void subsys_checks(struct sm_ex *x, const char *pfx, const struct nv *n, int64_t self,
                          const struct nv *old, const struct nv *set)
{
    static const char *const uniq[] = {"name", "subnqn", "serial"};
    for (size_t i = 0; i < 3; i++) {
        if (sm__unique(x->s, SM_SUBSYS, uniq[i], nv_get_str(n, uniq[i]), self) != NULL) {
            char msg[64];
            snprintf(msg, sizeof msg, "Object with this %s already exists", uniq[i]);
            attr_err(x, pfx, uniq[i], msg);
        }
    }
    if (old == NULL || !sm__running(x->s)) {
        return;
    }
    bool exposed = false;
    for (size_t i = 0; i < x->s->t[SM_PORT_SUBSYS].n && !exposed; i++) {
        const struct nv *l = x->s->t[SM_PORT_SUBSYS].row[i];
        if (nv_get_int(l, "subsys_id", -1) == self) {
            const struct nv *p = sm__find(x->s, SM_PORT, nv_get_int(l, "port_id", -1));
            exposed = p != NULL && nv_get_bool(p, "enabled", false);
        }
    }
    static const char *const ident[] = {"subnqn", "serial", "ieee_oui"};
    for (size_t i = 0; exposed && i < 3; i++) {
        if (nv_get(set, ident[i]) != NULL &&
            !sm__same(nv_get(old, ident[i]), nv_get(n, ident[i]))) {
            char attr[160];
            snprintf(attr, sizeof attr, "%s.%s", pfx, ident[i]);
            nv_err_add(x->err, attr, EINVAL, SM_ACTIVE_MSG, ident[i], "subsystem");
        }
    }
}

/* The lowest nsid in 1..65534 unused in subsystem sid (but by self); -1
 * if none. One pass and a sort: a subsystem may hold thousands. */
static int64_t free_nsid(const struct sm_state *s, int64_t sid, int64_t self)
{
    size_t cnt = sm__rows_with(s, SM_NAMESPACE, "subsys_id", sid, NULL, 0), k = 0;
    int64_t *used = calloc(cnt + 1, sizeof *used);
    if (used == NULL) {
        abort(); /* a replica that cannot apply must not diverge */
    }
    for (size_t i = 0; i < s->t[SM_NAMESPACE].n; i++) {
        const struct nv *r = s->t[SM_NAMESPACE].row[i];
        if (nv_get_int(r, "subsys_id", -1) == sid && nv_get_int(r, "id", 0) != self) {
            used[k++] = nv_get_int(r, "nsid", 0);
        }
    }
    qsort(used, k, sizeof *used, sm__cmp_i64);
    int64_t want = 1;
    for (size_t i = 0; i < k && used[i] <= want; i++) {
        if (used[i] == want) {
            want++;
        }
    }
    free(used);
    return want <= 65534 ? want : -1;
}

static void ns_checks(struct sm_ex *x, const char *pfx, struct nv *n, int64_t self,
                      const struct nv *old, const struct nv *set)
{
    char attr[160];
    int64_t sid = nv_get_int(n, "subsys_id", 0);
    if (old == NULL && sm__find(x->s, SM_SUBSYS, sid) == NULL) {
        snprintf(attr, sizeof attr, "%s.subsys_id", pfx);
        nv_err_add(x->err, attr, EINVAL, "No subsystem with ID %" PRId64, sid);
    }
    sm__nsid_unique_check(x, pfx, n, self);
    static const char *const uniq[] = {"device_path", "device_uuid", "device_nguid"};
    for (size_t i = 0; i < 3; i++) {
        const struct nv *hit =
            sm__unique(x->s, SM_NAMESPACE, uniq[i], nv_get_str(n, uniq[i]), self);
        if (hit != NULL) {
            snprintf(attr, sizeof attr, "%s.%s", pfx, uniq[i]);
            nv_err_add(x->err, attr, EINVAL, "This %s already used by subsystem: %s", uniq[i],
                       subsys_name(x->s, nv_get_int(hit, "subsys_id", 0)));
        }
    }
    if (old == NULL) {
        return;
    }
    if (nv_get_bool(old, "enabled", false) && sm__running(x->s)) {
        static const char *const keys[] = {"nsid", "device_type", "device_path", "device_uuid",
                                           "device_nguid"};
        for (size_t i = 0; i < 5; i++) {
            if (nv_get(set, keys[i]) != NULL &&
                !sm__same(nv_get(old, keys[i]), nv_get(n, keys[i]))) {
                nv_err_add(x->err, pfx, EINVAL, SM_ACTIVE_MSG, keys[i], "namespace");
            }
        }
    }
    const struct nv *fs = nv_get(n, "filesize"), *ofs = nv_get(old, "filesize");
    if (strcmp(nv_get_str(n, "device_type"), "FILE") == 0 && nv_is(fs, NV_INT) &&
        nv_is(ofs, NV_INT) && fs->u.i < ofs->u.i) {
        snprintf(attr, sizeof attr, "%s.filesize", pfx);
        nv_err_add(x->err, attr, EINVAL,
                   "Shrinking an namespace file is not allowed. This can lead to data loss.");
    }
}

static bool is_ip_trtype(const char *t)
{
    return strcmp(t, "TCP") == 0 || strcmp(t, "RDMA") == 0;
}

static void port_checks(struct sm_ex *x, const char *pfx, const struct nv *n, int64_t self,
                        const struct nv *old, const struct nv *set)
{
    const char *tr = nv_get_str(n, "addr_trtype"), *addr = nv_get_str(n, "addr_traddr");
    for (size_t i = 0; i < x->s->t[SM_PORT].n; i++) {
        const struct nv *p = x->s->t[SM_PORT].row[i];
        if (nv_get_int(p, "id", 0) == self || strcmp(nv_get_str(p, "addr_trtype"), tr) != 0 ||
            strcmp(nv_get_str(p, "addr_traddr"), addr) != 0 ||
            (is_ip_trtype(tr) &&
             nv_get_int(p, "addr_trsvcid", 0) != nv_get_int(n, "addr_trsvcid", 0))) {
            continue;
        }
        attr_err(x, pfx, "addr_traddr",
                 "There already is a port using the same transport and address");
        break;
    }
    if (old == NULL || sm__failed(x) ||
        sm__rows_with(x->s, SM_PORT_SUBSYS, "port_id", self, NULL, 0) == 0 ||
        !nv_get_bool(old, "enabled", false) || !sm__running(x->s)) {
        return;
    }
    static const char *const keys[] = {"addr_trtype",      "addr_trsvcid",   "addr_traddr",
                                       "inline_data_size", "max_queue_size", "pi_enable"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (nv_get(set, keys[i]) != NULL && !sm__same(nv_get(old, keys[i]), nv_get(n, keys[i]))) {
            char attr[160];
            snprintf(attr, sizeof attr, "%s.%s", pfx, keys[i]);
            nv_err_add(x->err, attr, EINVAL, SM_ACTIVE_MSG, keys[i], "port");
        }
    }
}

static void host_checks(struct sm_ex *x, const char *pfx, const struct nv *n, int64_t self)
{
    if (nv_get_str(n, "dhchap_ctrl_key") != NULL && nv_get_str(n, "dhchap_key") == NULL) {
        attr_err(x, pfx, NULL,
                 "Value error, Cannot configure bi-directional authentication without setting "
                 "dhchap_key");
        return;
    }
    if (sm__unique(x->s, SM_HOST, "hostnqn", nv_get_str(n, "hostnqn"), self) != NULL) {
        attr_err(x, pfx, "hostnqn", "Object with this hostnqn already exists");
    }
}

static void row_checks(struct sm_ex *x, enum sm_table t, const char *pfx, struct nv *n,
                       int64_t self, const struct nv *old, const struct nv *set)
{
    switch (t) {
        case SM_SUBSYS:
            subsys_checks(x, pfx, n, self, old, set);
            break;
        case SM_NAMESPACE:
            ns_checks(x, pfx, n, self, old, set);
            break;
        case SM_PORT:
            port_checks(x, pfx, n, self, old, set);
            break;
        case SM_HOST:
            host_checks(x, pfx, n, self);
            break;
        default:
            sm__link_checks(x, t, pfx, n, self);
            break;
    }
}

/* An "auto" value of the new row n: allocated now (fixed rules, above). */
static int allocate(struct sm_ex *x, enum sm_table t, struct nv *n, int64_t self)
{
    if (t == SM_NAMESPACE && is_auto(nv_get(n, "nsid"))) {
        int64_t nsid = free_nsid(x->s, nv_get_int(n, "subsys_id", 0), self);
        if (nsid < 0) {
            nv_err_call(x->err, EINVAL, "Unable to determine namespace ID (NSID)");
            return -1;
        }
        nv_set_int(n, "nsid", nsid);
    }
    if (t == SM_PORT && is_auto(nv_get(n, "index"))) {
        int64_t index = sm__free_port_index(x->s);
        if (index < 0) {
            nv_err_call(x->err, EINVAL, "Unable to determine port index");
            return -1;
        }
        nv_set_int(n, "index", index);
    }
    return 0;
}

/* op {"row": the new row, "id": "auto"} */
static int row_create(struct sm_ex *x, const char *method, enum sm_table t, const struct nv *op)
{
    char pfx[64];
    prefix(pfx, sizeof pfx, t, true);
    const struct nv *row = nv_get(op, "row");
    if (!nv_is(row, NV_MAP) || !is_auto(nv_get(row, "id"))) {
        return malformed(x, method);
    }
    struct nv *n = nv_copy(row);
    nv_set_int(n, "id", 0);
    /* nsid / index "auto" pass the shape check as the ints they become */
    bool auto_nsid = t == SM_NAMESPACE && is_auto(nv_get(n, "nsid"));
    bool auto_index = t == SM_PORT && is_auto(nv_get(n, "index"));
    if (auto_nsid) {
        nv_set_int(n, "nsid", 0);
    }
    if (auto_index) {
        nv_set_int(n, "index", 0);
    }
    if (!sm__row_shape_ok(t, n) || (t == SM_PORT && !auto_index)) {
        nv_free(n);
        return malformed(x, method);
    }
    if (auto_nsid) {
        nv_set_str(n, "nsid", SM_AUTO);
    }
    if (auto_index) {
        nv_set_str(n, "index", SM_AUTO);
    }
    row_checks(x, t, pfx, n, 0, NULL, NULL);
    if (sm__failed(x) || allocate(x, t, n, 0) < 0) {
        nv_free(n);
        return -1;
    }
    int64_t id = sm__next_id(x->s, t);
    nv_set_int(n, "id", id);
    if (t == SM_NAMESPACE) {
        sm__removal_drop(x->s, nv_get_str(n, "device_path")); /* in use again */
    }
    sm__insert(x->s, t, n);
    sm__finish(x, t, id);
    return 0;
}

/* op {"id", "set": the client's keys, "derived": other changed columns},
 * both merged onto the CURRENT row: concurrent updates of different
 * columns both survive. */
static int row_update(struct sm_ex *x, const char *method, enum sm_table t, const struct nv *op)
{
    char pfx[64];
    prefix(pfx, sizeof pfx, t, false);
    const struct nv *idv = nv_get(op, "id"), *set = nv_get(op, "set");
    const struct nv *derived = nv_get(op, "derived");
    if (!nv_is(idv, NV_INT) || !nv_is(set, NV_MAP) ||
        (derived != NULL && !nv_is(derived, NV_MAP)) || nv_get(set, "id") != NULL ||
        nv_get(derived, "id") != NULL) {
        return malformed(x, method);
    }
    int64_t id = idv->u.i;
    const struct nv *old = sm__existing(x, t, id);
    if (old == NULL) {
        return -1;
    }
    struct nv *n = sm__merged(old, set);
    if (derived != NULL) {
        struct nv *m = sm__merged(n, derived);
        nv_free(n);
        n = m;
    }
    if (t == SM_NAMESPACE) {
        /* the subsystem of a namespace never changes */
        nv_set_int(n, "subsys_id", nv_get_int(old, "subsys_id", 0));
    }
    bool auto_nsid = t == SM_NAMESPACE && is_auto(nv_get(n, "nsid"));
    if (auto_nsid) {
        nv_set_int(n, "nsid", 0);
    }
    if (!sm__row_shape_ok(t, n) ||
        (t == SM_PORT && nv_get_int(n, "index", 0) != nv_get_int(old, "index", 0))) {
        nv_free(n);
        return malformed(x, method);
    }
    if (auto_nsid) {
        nv_set_str(n, "nsid", SM_AUTO);
        if (allocate(x, t, n, id) < 0) {
            nv_free(n);
            return -1;
        }
    }
    row_checks(x, t, pfx, n, id, old, set);
    if (sm__failed(x)) {
        nv_free(n);
        return -1;
    }
    if (t == SM_NAMESPACE) {
        sm__removal_drop(x->s, nv_get_str(n, "device_path")); /* in use again */
    }
    sm__replace(x->s, t, n);
    sm__finish(x, t, id);
    return 0;
}

/* op {"id", "force"|"remove": bool}: the delete's own checks, which are
 * race invariants only (the row exists; dependants without force). */
static int row_delete(struct sm_ex *x, const char *method, enum sm_table t, const struct nv *op)
{
    const struct nv *id = nv_get(op, "id");
    const char *optname = t == SM_NAMESPACE ? "remove" : "force";
    const struct nv *flag = nv_get(op, optname);
    bool links = t == SM_HOST_SUBSYS || t == SM_PORT_SUBSYS;
    if (!nv_is(id, NV_INT) || (!links && !nv_is(flag, NV_BOOL))) {
        return malformed(x, method);
    }
    struct nv *params = nv_arr();
    nv_push(params, nv_copy(id));
    if (!links) {
        struct nv *o = nv_map();
        nv_set_bool(o, optname, flag->u.b);
        nv_push(params, o);
    }
    int rv;
    switch (t) {
        case SM_SUBSYS:
            rv = sm__subsys_delete(x, params);
            break;
        case SM_NAMESPACE:
            rv = sm__ns_delete(x, params);
            break;
        case SM_PORT:
            rv = sm__port_delete(x, params);
            break;
        case SM_HOST:
            rv = sm__host_delete(x, params);
            break;
        default:
            rv = sm__link_delete(x, params, t);
            break;
    }
    nv_free(params);
    return rv;
}

/* ---- global, cluster facts, config.restore ---- */

static int global_update(struct sm_ex *x, const char *method, const struct nv *op)
{
    const struct nv *set = nv_get(op, "set");
    if (!nv_is(set, NV_MAP) || nv_get(set, "id") != NULL) {
        return malformed(x, method);
    }
    struct nv *m = sm__merged(x->s->global, set);
    if (!sm__global_shape_ok(m)) {
        nv_free(m);
        return malformed(x, method);
    }
    nv_free(x->s->global);
    x->s->global = m;
    x->changed = true;
    x->result = sm_global_entry(x->s);
    return 0;
}

static struct nv *cluster_of(struct sm_state *s)
{
    if (s->cluster == NULL) {
        s->cluster = sm__cluster_default();
    }
    return s->cluster;
}

/* op {"node": {id, kind, raft, rpc, members}}: insert or replace. */
static int node_register(struct sm_ex *x, const char *method, const struct nv *op)
{
    const struct nv *d = nv_get(op, "node");
    if (!sm__cluster_node_shape_ok(d)) {
        return malformed(x, method);
    }
    int64_t id = nv_get_int(d, "id", 0);
    const struct nv *nodes = nv_get(sm_cluster(x->s), "nodes");
    for (size_t i = 0; i < nv_len(nodes); i++) {
        const struct nv *n = nv_at(nodes, i);
        if (nv_get_int(n, "id", 0) != id &&
            strcmp(nv_get_str(n, "raft"), nv_get_str(d, "raft")) == 0) {
            nv_err_add(x->err, "cluster_node_register.raft", EINVAL,
                       "Raft address %s already belongs to node %" PRId64, nv_get_str(d, "raft"),
                       nv_get_int(n, "id", 0));
            return -1;
        }
    }
    sm__cluster_put_node(x, d);
    return 0;
}

static int node_unregister(struct sm_ex *x, const char *method, const struct nv *op)
{
    const struct nv *idv = nv_get(op, "id");
    if (!nv_is(idv, NV_INT)) {
        return malformed(x, method);
    }
    struct nv *ns = nv_get(cluster_of(x->s), "nodes"), *out = nv_arr();
    for (size_t i = 0; i < nv_len(ns); i++) {
        if (nv_get_int(nv_at(ns, i), "id", 0) != idv->u.i) {
            nv_push(out, nv_copy(nv_at(ns, i)));
        }
    }
    nv_set(cluster_of(x->s), "nodes", out);
    if (sm_active_node(x->s, NULL) == (uint64_t)idv->u.i) {
        nv_set_nil(cluster_of(x->s), "active");
    }
    x->changed = true;
    x->result = nv_bool(true);
    return 0;
}

/* op {node, term}: an older term than the active node's is refused. */
static int activate(struct sm_ex *x, const char *method, const struct nv *op)
{
    const struct nv *node = nv_get(op, "node"), *term = nv_get(op, "term");
    if (!nv_is(node, NV_INT) || !nv_is(term, NV_INT) || node->u.i < 0 || term->u.i < 0) {
        return malformed(x, method);
    }
    uint64_t cur;
    sm_active_node(x->s, &cur);
    if ((uint64_t)term->u.i < cur) {
        nv_err_call(x->err, EINVAL,
                    "term %" PRId64 " is older than the active node's term %" PRIu64, term->u.i,
                    cur);
        return -1;
    }
    struct nv *d = nv_map();
    nv_set_int(d, "node", node->u.i);
    nv_set_int(d, "term", term->u.i);
    nv_set(cluster_of(x->s), "active", node->u.i > 0 ? nv_copy(d) : nv_nil());
    x->changed = true;
    x->result = d;
    return 0;
}

static int failover_update(struct sm_ex *x, const char *method, const struct nv *op)
{
    const struct nv *set = nv_get(op, "set");
    if (!nv_is(set, NV_MAP)) {
        return malformed(x, method);
    }
    struct nv *fo = sm__merged(nv_get(sm_cluster(x->s), "failover"), set);
    if (!sm__failover_shape_ok(fo)) {
        nv_free(fo);
        return malformed(x, method);
    }
    nv_set(cluster_of(x->s), "failover", fo);
    x->changed = true;
    x->result = nv_copy(fo);
    return 0;
}

/* Creation order of config.save's tables: a row after the rows it
 * refers to. */
static const struct {
    enum sm_table t;
    const char *key;
} conf_tables[] = {{SM_SUBSYS, "subsys"},
                   {SM_HOST, "host"},
                   {SM_PORT, "port"},
                   {SM_NAMESPACE, "namespace"},
                   {SM_HOST_SUBSYS, "host_subsys"},
                   {SM_PORT_SUBSYS, "port_subsys"}};

/* op {"config": config.save of the configuration the leader's creates
 * made}: installed as it is (ids kept) into an empty cluster. */
static int config_restore(struct sm_ex *x, const char *method, const struct nv *op)
{
    const struct nv *doc = nv_get(op, "config");
    const struct nv *g = nv_get(doc, "global"), *fo = nv_get(doc, "failover");
    bool ok = nv_is(doc, NV_MAP) && (nv_is(g, NV_NIL) || sm__global_shape_ok(g)) &&
              (nv_is(fo, NV_NIL) || sm__failover_shape_ok(fo));
    for (size_t k = 0; ok && k < sizeof conf_tables / sizeof conf_tables[0]; k++) {
        const struct nv *rows = nv_get(doc, conf_tables[k].key);
        ok = nv_is(rows, NV_ARR);
        int64_t last = 0;
        for (size_t i = 0; ok && i < nv_len(rows); i++) {
            const struct nv *r = nv_at(rows, i);
            ok = sm__row_shape_ok(conf_tables[k].t, r) && nv_get_int(r, "id", 0) > last &&
                 nv_get_int(r, "id", 0) < SM_ID_MAX;
            last = nv_get_int(r, "id", 0);
        }
    }
    if (!ok) {
        return malformed(x, method);
    }
    if (sm__restore_target_empty(x) < 0) {
        return -1;
    }
    if (nv_is(g, NV_MAP)) {
        nv_free(x->s->global);
        x->s->global = nv_copy(g);
    }
    if (nv_is(fo, NV_MAP)) {
        nv_set(cluster_of(x->s), "failover", nv_copy(fo));
    }
    struct nv *sum = nv_map();
    for (size_t k = 0; k < sizeof conf_tables / sizeof conf_tables[0]; k++) {
        const struct nv *a = nv_get(doc, conf_tables[k].key);
        for (size_t i = 0; i < nv_len(a); i++) {
            sm__insert(x->s, conf_tables[k].t, nv_copy(nv_at(a, i)));
        }
        if (nv_len(a) > 0) {
            /* the restored table continues the saved id space: its next id
             * is after its last row (as v1's replayed creates left it) */
            x->s->next_id[conf_tables[k].t] = nv_get_int(nv_at(a, nv_len(a) - 1), "id", 0) + 1;
        }
        nv_set_int(sum, conf_tables[k].key, (int64_t)nv_len(a));
    }
    sm__change_all(x->s);
    x->changed = true;
    x->result = sum;
    return 0;
}

int sm__apply_v2(struct sm_ex *x, const char *method, const struct nv *op)
{
    if (strcmp(method, "nvmet.global.init") == 0) {
        x->result = sm_global_entry(x->s);
        return 0;
    }
    if (strcmp(method, "nvmet.global.update") == 0) {
        return global_update(x, method, op);
    }
    if (strcmp(method, "config.restore") == 0) {
        return config_restore(x, method, op);
    }
    if (strcmp(method, "cluster.node.register") == 0) {
        return node_register(x, method, op);
    }
    if (strcmp(method, "cluster.node.unregister") == 0) {
        return node_unregister(x, method, op);
    }
    if (strcmp(method, "failover.activate") == 0) {
        return activate(x, method, op);
    }
    if (strcmp(method, "failover.update") == 0) {
        return failover_update(x, method, op);
    }
    const char *dot = strrchr(method, '.');
    char svc[64];
    size_t l = dot != NULL ? (size_t)(dot - method) : 0;
    int t = -1;
    if (dot != NULL && l < sizeof svc) {
        memcpy(svc, method, l);
        svc[l] = '\0';
        t = sm_table_of(svc);
    }
    if (t < 0) {
        nv_err_set(x->err, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist");
        return -1;
    }
    if (strcmp(dot, ".create") == 0) {
        return row_create(x, method, (enum sm_table)t, op);
    }
    if (strcmp(dot, ".update") == 0) {
        return row_update(x, method, (enum sm_table)t, op);
    }
    if (strcmp(dot, ".delete") == 0) {
        return row_delete(x, method, (enum sm_table)t, op);
    }
    nv_err_set(x->err, NV_E_NO_METHOD, NV_ENOMETHOD, "Method does not exist");
    return -1;
}
