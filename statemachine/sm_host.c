/* statemachine: nvmet.host and the host_subsys/port_subsys links. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

/* ---- host ---- */

static const char *const dhgroups[] = {"2048-BIT", "2048-BIT", "3072-BIT", "3072-BIT",
                                       "4096-BIT", "4096-BIT", "6144-BIT", "6144-BIT",
                                       "8192-BIT", "8192-BIT", NULL};
static const char *const hashes[] = {"SHA-256", "SHA-256", "SHA-384", "SHA-384", "SHA-512",
                                     "SHA-512", "SHA256",  "SHA-256", "SHA384",  "SHA-384",
                                     "SHA512",  "SHA-512", NULL};

static const struct sm_field host_fields[] = {{"hostnqn", SF_NQN, SF_REQ, 0, 0, NULL},
                                              {"description", SF_STR, 0, 0, 0, NULL},
                                              {"dhchap_key", SF_NESTR, SF_NULL, 0, 0, NULL},
                                              {"dhchap_ctrl_key", SF_NESTR, SF_NULL, 0, 0, NULL},
                                              {"dhchap_dhgroup", SF_ENUM, SF_NULL, 0, 0, dhgroups},
                                              {"dhchap_hash", SF_ENUM, 0, 0, 0, hashes},
                                              {NULL, 0, 0, 0, 0, NULL}};

/* A new host's stored row before the client's keys (TrueNAS's defaults). */
static struct nv *host_defaults(void)
{
    struct nv *n = nv_map();
    nv_set_int(n, "id", 0);
    nv_set_str(n, "hostnqn", "");
    nv_set_str(n, "description", "");
    nv_set_nil(n, "dhchap_key");
    nv_set_nil(n, "dhchap_ctrl_key");
    nv_set_nil(n, "dhchap_dhgroup");
    nv_set_str(n, "dhchap_hash", "SHA-256");
    return n;
}

int sm__host_write(struct sm_ex *x, const struct nv *params, bool create)
{
    const char *pfx = create ? "nvmet_host_create" : "nvmet_host_update";
    char attr[160];
    int64_t id;
    const struct nv *in;
    if (!sm__write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    if (!sm__is_model(pfx, in, x->err)) {
        return -1;
    }
    /* "NULL" is accepted as a spelling of the null dhgroup */
    struct nv *inc = nv_copy(in);
    const char *g = nv_get_str(inc, "dhchap_dhgroup");
    if (g != NULL && strcmp(g, "NULL") == 0) {
        nv_set_nil(inc, "dhchap_dhgroup");
    }
    struct sm_field f[sizeof host_fields / sizeof host_fields[0]];
    memcpy(f, host_fields, sizeof f);
    if (!create) {
        f[0].flags &= ~(unsigned)SF_REQ;
    }
    struct nv *d = sm__model(pfx, f, inc, x->err);
    nv_free(inc);
    if (d == NULL) {
        return -1;
    }
    const struct nv *old;
    struct nv *n = sm__new_row(x, SM_HOST, create, id, create ? host_defaults() : NULL, d, &old);
    if (n == NULL) {
        nv_free(d);
        return -1;
    }
    /* bi-directional authentication needs the host key (TrueNAS's model
     * means to check this but never does; enforced here) */
    if (nv_get_str(n, "dhchap_ctrl_key") != NULL && nv_get_str(n, "dhchap_key") == NULL) {
        nv_err_add(x->err, pfx, EINVAL,
                   "Value error, Cannot configure bi-directional authentication without setting "
                   "dhchap_key");
        nv_free(d);
        nv_free(n);
        return -1;
    }
    if (sm__unique(x->s, SM_HOST, "hostnqn", nv_get_str(n, "hostnqn"), id) != NULL) {
        snprintf(attr, sizeof attr, "%s.hostnqn", pfx);
        nv_err_add(x->err, attr, EINVAL, "Object with this hostnqn already exists");
    }
    static const char *const keys[] = {"dhchap_key", "dhchap_ctrl_key"};
    for (size_t i = 0; i < 2; i++) {
        const char *k = nv_get_str(d, keys[i]);
        const char *m = k != NULL ? sm__dhchap_key_error(k) : NULL;
        if (m != NULL) {
            snprintf(attr, sizeof attr, "%s.%s", pfx, keys[i]);
            nv_err_add(x->err, attr, EINVAL, "%s", m);
        }
    }
    return sm__commit_row(x, SM_HOST, d, n, create, id);
}

int sm__host_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int force = sm__delete_args(x, params, sm__force_fields, &id);
    const struct nv *row = force < 0 ? NULL : sm__existing(x, SM_HOST, id);
    if (row == NULL) {
        return -1;
    }
    if (!force && sm__rows_with(x->s, SM_HOST_SUBSYS, "host_id", id, NULL, 0) > 0) {
        char what[300];
        snprintf(what, sizeof what, "Host %s", nv_get_str(row, "hostnqn"));
        sm__used_by(x, "nvmet_host_delete.id", what, SM_HOST_SUBSYS, "host_id", id);
        return -1;
    }
    if (x->mutate) {
        sm__remove_with(x->s, SM_HOST_SUBSYS, "host_id", id);
        sm__remove(x->s, SM_HOST, id);
        sm__finish(x, SM_HOST, 0);
    }
    return 0;
}

/* ---- host_subsys / port_subsys ---- */

void sm__link_checks(struct sm_ex *x, enum sm_table t, const char *pfx, const struct nv *n,
                     int64_t self)
{
    bool host = t == SM_HOST_SUBSYS;
    const char *other = host ? "host" : "port", *ocol = host ? "host_id" : "port_id";
    char attr[160];
    int64_t oid = nv_get_int(n, ocol, 0), sid = nv_get_int(n, "subsys_id", 0);
    if (sm__find(x->s, host ? SM_HOST : SM_PORT, oid) == NULL) {
        snprintf(attr, sizeof attr, "%s.%s", pfx, ocol);
        nv_err_add(x->err, attr, EINVAL, "No %s with ID %" PRId64, other, oid);
    }
    if (sm__find(x->s, SM_SUBSYS, sid) == NULL) {
        snprintf(attr, sizeof attr, "%s.subsys_id", pfx);
        nv_err_add(x->err, attr, EINVAL, "No subsystem with ID %" PRId64, sid);
    }
    for (size_t i = 0; i < x->s->t[t].n; i++) {
        const struct nv *r = x->s->t[t].row[i];
        if (nv_get_int(r, ocol, -1) == oid && nv_get_int(r, "subsys_id", -1) == sid &&
            nv_get_int(r, "id", 0) != self) {
            snprintf(attr, sizeof attr, "%s.%s", pfx, ocol);
            /* TrueNAS says "Host ID" for ports too; its message is kept */
            nv_err_add(x->err, attr, EINVAL,
                       "This record already exists (Host ID: %" PRId64 "/Subsystem ID: %" PRId64
                       ")",
                       oid, sid);
            break;
        }
    }
}

int sm__link_write(struct sm_ex *x, const struct nv *params, enum sm_table t, bool create)
{
    bool host = t == SM_HOST_SUBSYS;
    const char *other = host ? "host" : "port";
    const char *ocol = host ? "host_id" : "port_id";
    char pfx[64];
    snprintf(pfx, sizeof pfx, "nvmet_%s_subsys_%s", other, create ? "create" : "update");
    int64_t id;
    const struct nv *in;
    if (!sm__write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    const struct sm_field f[] = {{ocol, SF_INT, 0, 0, 0, NULL},
                                 {other, SF_INT, 0, 0, 0, NULL},
                                 {"subsys_id", SF_INT, 0, 0, 0, NULL},
                                 {"subsys", SF_INT, 0, 0, 0, NULL},
                                 {NULL, 0, 0, 0, 0, NULL}};
    struct nv *d = sm__model(pfx, f, in, x->err);
    if (d == NULL) {
        return -1;
    }
    bool ok = sm__alias(x, d, pfx, ocol, other, create);
    ok = sm__alias(x, d, pfx, "subsys_id", "subsys", create) && ok;
    if (!ok) {
        nv_free(d);
        return -1;
    }
    struct nv *base = NULL;
    if (create) {
        base = nv_map();
        nv_set_int(base, "id", 0);
        nv_set_int(base, ocol, 0);
        nv_set_int(base, "subsys_id", 0);
    }
    const struct nv *old;
    struct nv *n = sm__new_row(x, t, create, id, base, d, &old);
    if (n == NULL) {
        nv_free(d);
        return -1;
    }
    sm__link_checks(x, t, pfx, n, id);
    return sm__commit_row(x, t, d, n, create, id);
}

int sm__link_delete(struct sm_ex *x, const struct nv *params, enum sm_table t)
{
    int64_t id;
    if (sm__delete_args(x, params, NULL, &id) < 0 || sm__existing(x, t, id) == NULL) {
        return -1;
    }
    if (x->mutate) {
        sm__remove(x->s, t, id);
        sm__finish(x, t, 0);
    }
    return 0;
}
