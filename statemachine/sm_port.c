/* statemachine: nvmet.port create/update/delete (TrueNAS's rules: the
 * TCP/RDMA vs FC union; LOOP for the kernel tests). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

/* ---- port ---- */

static const char *const trtype_ip[] = {"TCP", "TCP", "RDMA", "RDMA", NULL};
static const char *const trtype_fc[] = {"FC", "FC", NULL};
static const char *const trtype_loop[] = {"LOOP", "LOOP", NULL};
static const char *const adrfam_ip[] = {"IPV4", "IPV4", "IPV6", "IPV6", NULL};
static const char *const adrfam_fc[] = {"FC", "FC", NULL};
static const char *const adrfam_loop[] = {"LOOP", "LOOP", NULL};

#define PORT_COMMON                                                                       \
    {"inline_data_size", SF_INT, SF_NULL, 0, 0, NULL},                                    \
        {"max_queue_size", SF_INT, SF_NULL, 0, 0, NULL},                                  \
        {"pi_enable", SF_BOOL, SF_NULL, 0, 0, NULL}, {"enabled", SF_BOOL, 0, 0, 0, NULL}, \
    {                                                                                     \
        NULL, 0, 0, 0, 0, NULL                                                            \
    }

static const struct sm_field port_ip[] = {{"addr_trtype", SF_ENUM, SF_REQ, 0, 0, trtype_ip},
                                          {"addr_traddr", SF_IP, SF_REQ, 0, 0, NULL},
                                          {"addr_trsvcid", SF_TRSVCID, 0, 0, 0, NULL},
                                          {"addr_adrfam", SF_ENUM, 0, 0, 0, adrfam_ip},
                                          PORT_COMMON};
static const struct sm_field port_fc[] = {{"addr_trtype", SF_ENUM, SF_REQ, 0, 0, trtype_fc},
                                          {"addr_traddr", SF_NESTR, SF_REQ, 0, 0, NULL},
                                          {"addr_adrfam", SF_ENUM, 0, 0, 0, adrfam_fc},
                                          PORT_COMMON};
static const struct sm_field port_loop[] = {{"addr_trtype", SF_ENUM, SF_REQ, 0, 0, trtype_loop},
                                            {"addr_traddr", SF_NESTR, SF_REQ, 0, 0, NULL},
                                            {"addr_adrfam", SF_ENUM, 0, 0, 0, adrfam_loop},
                                            PORT_COMMON};

static const struct {
    const char *tag, *member;
    const struct sm_field *f;
} port_variants[] = {{"TCP", "NVMetPortUpdateRDMATCP", port_ip},
                     {"RDMA", "NVMetPortUpdateRDMATCP", port_ip},
                     {"FC", "NVMetPortUpdateFC", port_fc},
                     {"LOOP", "NVMetPortUpdateLOOP", port_loop}};

static bool is_ip_trtype(const char *t)
{
    return strcmp(t, "TCP") == 0 || strcmp(t, "RDMA") == 0;
}

/* Derive addr_adrfam / addr_trsvcid of the merged row n and check a given
 * addr_adrfam agrees. */
static void port_normalize(struct sm_ex *x, struct nv *n, const struct nv *d, const char *pfx)
{
    char attr[160];
    const char *tr = nv_get_str(n, "addr_trtype");
    const char *addr = nv_get_str(n, "addr_traddr");
    const char *fam;
    if (is_ip_trtype(tr)) {
        int f = sm__ip_family(addr);
        if (f == 0) {
            snprintf(attr, sizeof attr, "%s.addr_traddr", pfx);
            nv_err_add(x->err, attr, EINVAL,
                       "Input should be '' or value is not a valid IPv4 or IPv6 address");
            return;
        }
        fam = f == 4 ? "IPV4" : "IPV6";
        if (!nv_is(nv_get(n, "addr_trsvcid"), NV_INT)) {
            nv_set_int(n, "addr_trsvcid", 4420);
        }
    } else {
        fam = strcmp(tr, "FC") == 0 ? "FC" : "LOOP";
        nv_set_nil(n, "addr_trsvcid");
    }
    const char *given = nv_get_str(d, "addr_adrfam");
    if (given != NULL && strcmp(given, fam) != 0) {
        snprintf(attr, sizeof attr, "%s.addr_adrfam", pfx);
        nv_err_add(x->err, attr, EINVAL, "addr_adrfam %s does not match addr_traddr %s (%s)", given,
                   addr, fam);
    }
    nv_set_str(n, "addr_adrfam", fam);
}

/* TrueNAS refuses an RDMA port on a platform without an RDMA-capable NIC,
 * on create and on every update of an RDMA port, whatever the global rdma
 * switch (RDMA ports may exist while it is off; they are just not
 * rendered). The leader's capability is recorded in the command. */
static void port_rdma(struct sm_ex *x, const struct nv *n, const char *pfx)
{
    if (strcmp(nv_get_str(n, "addr_trtype"), "RDMA") != 0 || sm__env_flag_since(x, "#rdma")) {
        return;
    }
    char attr[160];
    snprintf(attr, sizeof attr, "%s.addr_trtype", pfx);
    nv_err_add(x->err, attr, EINVAL,
               "This platform cannot support NVMe-oF(RDMA) or is missing an RDMA capable NIC.");
}

static void port_duplicate(struct sm_ex *x, const struct nv *n, const char *pfx, int64_t self)
{
    const char *tr = nv_get_str(n, "addr_trtype"), *addr = nv_get_str(n, "addr_traddr");
    for (size_t i = 0; i < x->s->t[SM_PORT].n; i++) {
        const struct nv *p = x->s->t[SM_PORT].row[i];
        if (nv_get_int(p, "id", 0) == self || strcmp(nv_get_str(p, "addr_trtype"), tr) != 0 ||
            strcmp(nv_get_str(p, "addr_traddr"), addr) != 0) {
            continue;
        }
        if (is_ip_trtype(tr) &&
            nv_get_int(p, "addr_trsvcid", 0) != nv_get_int(n, "addr_trsvcid", 0)) {
            continue;
        }
        char attr[160];
        snprintf(attr, sizeof attr, "%s.addr_traddr", pfx);
        nv_err_add(x->err, attr, EINVAL,
                   "There already is a port using the same transport and address");
        return;
    }
}

int64_t sm__free_port_index(const struct sm_state *s)
{
    for (int64_t index = 1; index < 32000; index++) {
        bool used = false;
        for (size_t i = 0; i < s->t[SM_PORT].n && !used; i++) {
            used = nv_get_int(s->t[SM_PORT].row[i], "index", 0) == index;
        }
        if (!used) {
            return index;
        }
    }
    return -1;
}

int sm__port_create(struct sm_ex *x, const struct nv *params)
{
    const char *pfx = "nvmet_port_create";
    if (!sm__argc_ok(x, params, 1)) {
        return -1;
    }
    const struct nv *in = nv_at(params, 0);
    if (in == NULL) {
        nv_err_add(x->err, pfx, EINVAL, "Field required");
        return -1;
    }
    if (!sm__is_model(pfx, in, x->err)) {
        return -1;
    }
    const struct nv *tag = nv_get(in, "addr_trtype");
    if (tag == NULL) {
        nv_err_add(x->err, "nvmet_port_create.addr_trtype", EINVAL, "Field required");
        return -1;
    }
    const struct sm_field *f = NULL;
    for (size_t i = 0; i < sizeof port_variants / sizeof port_variants[0] && f == NULL; i++) {
        if (nv_is(tag, NV_STR) && strcmp(tag->u.s.p, port_variants[i].tag) == 0) {
            f = port_variants[i].f;
        }
    }
    if (f == NULL) {
        char *t = nv_is(tag, NV_STR) ? strdup(tag->u.s.p) : nv_dump(tag);
        nv_err_add(x->err, pfx, EINVAL,
                   "Input tag '%s' found using 'addr_trtype' does not match any of the expected "
                   "tags: 'TCP', 'RDMA', 'FC', 'LOOP'",
                   t);
        free(t);
        return -1;
    }
    char vp[160];
    snprintf(vp, sizeof vp, "%s.%s", pfx, tag->u.s.p);
    struct nv *d = sm__model(vp, f, in, x->err);
    if (d == NULL) {
        return -1;
    }
    struct nv *base = nv_map();
    nv_set_int(base, "id", 0);
    nv_set_int(base, "index", 0);
    nv_set_nil(base, "addr_trtype");
    nv_set_nil(base, "addr_trsvcid");
    nv_set_nil(base, "addr_traddr");
    nv_set_nil(base, "addr_adrfam");
    nv_set_nil(base, "inline_data_size");
    nv_set_nil(base, "max_queue_size");
    nv_set_nil(base, "pi_enable");
    nv_set_bool(base, "enabled", true);
    struct nv *n = sm__merged(base, d);
    nv_free(base);
    port_normalize(x, n, d, pfx);
    if (!sm__failed(x)) {
        port_duplicate(x, n, pfx, 0);
        port_rdma(x, n, pfx);
    }
    nv_free(d);
    int64_t index = 0;
    if (!sm__failed(x)) {
        /* lowest unused index in 1..31999 */
        index = sm__free_port_index(x->s);
        if (index < 0) {
            nv_err_call(x->err, EINVAL, "Unable to determine port index");
        }
    }
    if (sm__failed(x)) {
        nv_free(n);
        return -1;
    }
    if (x->capture && !x->mutate) {
        /* v2: the id and the index are apply's (lowest free index) */
        struct nv *op = nv_map(), *row = nv_copy(n);
        nv_set_str(row, "id", SM_AUTO);
        nv_set_str(row, "index", SM_AUTO);
        nv_set(op, "row", row);
        sm__capture(x, op);
    }
    if (x->mutate) {
        int64_t id = sm__next_id(x->s, SM_PORT);
        nv_set_int(n, "id", id);
        nv_set_int(n, "index", index);
        sm__insert(x->s, SM_PORT, n);
        sm__finish(x, SM_PORT, id);
    } else {
        nv_free(n);
    }
    return 0;
}

int sm__port_update(struct sm_ex *x, const struct nv *params)
{
    const char *pfx = "nvmet_port_update";
    int64_t id;
    if (!sm__argc_ok(x, params, 2) || !sm__arg_int("id", nv_at(params, 0), &id, x->err)) {
        return -1;
    }
    const struct nv *in = nv_at(params, 1);
    if (in == NULL) {
        nv_err_add(x->err, pfx, EINVAL, "Field required");
        return -1;
    }
    if (!sm__is_model(pfx, in, x->err)) {
        return -1;
    }
    /* a (non-discriminated) union of the update models: the first member
     * that accepts the input wins; otherwise every member's errors */
    static const struct {
        const char *member;
        const struct sm_field *f;
    } members[] = {{"NVMetPortUpdateRDMATCP", port_ip},
                   {"NVMetPortUpdateFC", port_fc},
                   {"NVMetPortUpdateLOOP", port_loop}};
    struct nv *d = NULL;
    struct nv_err all;
    nv_err_init(&all);
    for (size_t i = 0; i < 3 && d == NULL; i++) {
        struct sm_field f[12];
        size_t k = 0;
        for (; members[i].f[k].name != NULL; k++) {
            f[k] = members[i].f[k];
            f[k].flags &= ~(unsigned)SF_REQ;
        }
        f[k] = members[i].f[k];
        char mp[160];
        snprintf(mp, sizeof mp, "%s.%s", pfx, members[i].member);
        struct nv_err e;
        nv_err_init(&e);
        d = sm__model(mp, f, in, &e);
        if (d == NULL) {
            nv_err_merge(&all, &e);
        }
        nv_err_clear(&e);
    }
    if (d == NULL) {
        nv_err_merge(x->err, &all);
        nv_err_clear(&all);
        return -1;
    }
    nv_err_clear(&all);
    const struct nv *old = sm__existing(x, SM_PORT, id);
    if (old == NULL) {
        nv_free(d);
        return -1;
    }
    struct nv *n = sm__merged(old, d);
    port_normalize(x, n, d, pfx);
    bool normal = !sm__failed(x);
    if (normal) {
        port_duplicate(x, n, pfx, id);
    }
    if (!sm__failed(x) && sm__rows_with(x->s, SM_PORT_SUBSYS, "port_id", id, NULL, 0) > 0 &&
        nv_get_bool(old, "enabled", false) && sm__running(x->s)) {
        static const char *const keys[] = {
            "addr_trtype",    "addr_trsvcid", "addr_traddr", "inline_data_size",
            "max_queue_size", "pi_enable",    NULL};
        for (size_t i = 0; keys[i] != NULL; i++) {
            if (nv_get(d, keys[i]) != NULL && !sm__same(nv_get(old, keys[i]), nv_get(n, keys[i]))) {
                char attr[160];
                snprintf(attr, sizeof attr, "%s.%s", pfx, keys[i]);
                nv_err_add(x->err, attr, EINVAL, SM_ACTIVE_MSG, keys[i], "port");
            }
        }
    }
    if (normal) {
        port_rdma(x, n, pfx);
    }
    sm__capture_write(x, SM_PORT, false, id, d, n);
    nv_free(d);
    if (sm__failed(x)) {
        nv_free(n);
        return -1;
    }
    if (x->mutate) {
        sm__replace(x->s, SM_PORT, n);
        sm__finish(x, SM_PORT, id);
    } else {
        nv_free(n);
    }
    return 0;
}

int sm__port_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int force = sm__delete_args(x, params, sm__force_fields, &id);
    const struct nv *row = force < 0 ? NULL : sm__existing(x, SM_PORT, id);
    if (row == NULL) {
        return -1;
    }
    if (!force && sm__rows_with(x->s, SM_PORT_SUBSYS, "port_id", id, NULL, 0) > 0) {
        char what[64];
        snprintf(what, sizeof what, "Port #%" PRId64, nv_get_int(row, "index", 0));
        sm__used_by(x, "nvmet_port_delete.id", what, SM_PORT_SUBSYS, "port_id", id);
        return -1;
    }
    if (x->mutate) {
        sm__remove_with(x->s, SM_PORT_SUBSYS, "port_id", id);
        sm__remove(x->s, SM_PORT, id);
        sm__finish(x, SM_PORT, 0);
    }
    return 0;
}
