/* statemachine: nvmet.subsys create/update/delete (TrueNAS's rules, plus
 * a name that is an NQN becoming the subnqn and a serial that may be given
 * and updated). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

/* ---- subsys ---- */

static const struct sm_field subsys_fields[] = {
    {"name", SF_NESTR, SF_REQ, 0, 0, NULL},
    {"subnqn", SF_NQN, SF_NULL, 0, 0, NULL},
    {"serial", SF_NESTR, SF_NULL | SF_MAXS, 0, 20, NULL},
    {"allow_any_host", SF_BOOL, 0, 0, 0, NULL},
    {"pi_enable", SF_BOOL, SF_NULL, 0, 0, NULL},
    {"qid_max", SF_INT, SF_NULL, 0, 0, NULL},
    {"ieee_oui", SF_STR, SF_NULL, 0, 0, NULL},
    {"ana", SF_BOOL, SF_NULL, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL}};

static char *derive_subnqn(const struct sm_state *s, const char *name)
{
    if (sm__valid_nqn(name)) {
        return strdup(name);
    }
    char *out = NULL;
    if (asprintf(&out, "%s:%s", sm__basenqn(s), name) < 0) {
        return NULL;
    }
    /* truncate to 223 characters (code points) */
    size_t chars = 0, i = 0;
    for (; out[i] != '\0'; i++) {
        if (((unsigned char)out[i] & 0xc0) != 0x80 && ++chars > 223) {
            break;
        }
    }
    out[i] = '\0';
    return out;
}

static bool serial_printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e) {
            return false;
        }
    }
    return true;
}

/* Linked to an enabled port: its identity is visible to hosts. */
static bool subsys_exposed(const struct sm_state *s, int64_t id)
{
    for (size_t i = 0; i < s->t[SM_PORT_SUBSYS].n; i++) {
        const struct nv *l = s->t[SM_PORT_SUBSYS].row[i];
        if (nv_get_int(l, "subsys_id", -1) == id) {
            const struct nv *p = sm__find(s, SM_PORT, nv_get_int(l, "port_id", -1));
            if (p != NULL && nv_get_bool(p, "enabled", false)) {
                return true;
            }
        }
    }
    return false;
}

/* A new subsystem's stored row before the client's keys (TrueNAS's defaults). */
static struct nv *defaults(void)
{
    struct nv *n = nv_map();
    nv_set_int(n, "id", 0);
    nv_set_str(n, "name", "");
    nv_set_nil(n, "subnqn");
    nv_set_nil(n, "serial");
    nv_set_bool(n, "allow_any_host", false);
    nv_set_nil(n, "pi_enable");
    nv_set_nil(n, "qid_max");
    nv_set_nil(n, "ieee_oui");
    nv_set_nil(n, "ana");
    return n;
}

int sm__subsys_write(struct sm_ex *x, const struct nv *params, bool create)
{
    const char *pfx = create ? "nvmet_subsys_create" : "nvmet_subsys_update";
    int64_t id;
    const struct nv *in;
    if (!sm__write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    struct sm_field f[sizeof subsys_fields / sizeof subsys_fields[0]];
    memcpy(f, subsys_fields, sizeof f);
    if (!create) {
        f[0].flags &= ~(unsigned)SF_REQ;
    }
    struct nv *d = sm__model(pfx, f, in, x->err);
    if (d == NULL) {
        return -1;
    }
    const struct nv *old;
    struct nv *n = sm__new_row(x, SM_SUBSYS, create, id, create ? defaults() : NULL, d, &old);
    if (n == NULL) {
        nv_free(d);
        return -1;
    }
    char attr[160];
    const char *name = nv_get_str(n, "name");
    if (sm__unique(x->s, SM_SUBSYS, "name", name, id) != NULL) {
        snprintf(attr, sizeof attr, "%s.name", pfx);
        nv_err_add(x->err, attr, EINVAL, "Object with this name already exists");
    }
    const char *sub = nv_get_str(n, "subnqn");
    if (sub == NULL || sub[0] == '\0') {
        char *dn = derive_subnqn(x->s, name);
        nv_set_str(n, "subnqn", dn);
        free(dn);
    }
    sub = nv_get_str(n, "subnqn");
    if (sub != NULL && sm__unique(x->s, SM_SUBSYS, "subnqn", sub, id) != NULL) {
        snprintf(attr, sizeof attr, "%s.subnqn", pfx);
        nv_err_add(x->err, attr, EINVAL, "Object with this subnqn already exists");
    }
    const char *ser = nv_get_str(n, "serial");
    if (ser != NULL) {
        snprintf(attr, sizeof attr, "%s.serial", pfx);
        if (!serial_printable(ser)) {
            nv_err_add(x->err, attr, EINVAL, "Serial must be printable ASCII");
        } else if (sm__unique(x->s, SM_SUBSYS, "serial", ser, id) != NULL) {
            nv_err_add(x->err, attr, EINVAL, "Object with this serial already exists");
        }
    }
    if (!nv_get_is_nil(n, "ana") && !sm__env_flag(x, "#ha")) {
        snprintf(attr, sizeof attr, "%s.ana", pfx);
        nv_err_add(x->err, attr, EINVAL,
                   "This platform does not support Asymmetric Namespace Access(ANA).");
    }
    if (!create && sm__running(x->s) && subsys_exposed(x->s, id)) {
        static const char *const ident[] = {"subnqn", "serial", "ieee_oui", NULL};
        for (size_t i = 0; ident[i] != NULL; i++) {
            if (nv_get(d, ident[i]) != NULL &&
                !sm__same(nv_get(old, ident[i]), nv_get(n, ident[i]))) {
                snprintf(attr, sizeof attr, "%s.%s", pfx, ident[i]);
                nv_err_add(x->err, attr, EINVAL, SM_ACTIVE_MSG, ident[i], "subsystem");
            }
        }
    }
    if (!sm__failed(x) && nv_get_str(n, "serial") == NULL) {
        /* 20 hex characters, retried to avoid existing serials */
        int tries = 0;
        char hex[21];
        for (; tries < 10; tries++) {
            unsigned char b[10];
            sm__random(x, b, sizeof b);
            for (size_t i = 0; i < 10; i++) {
                hex[2 * i] = sm__hexd[b[i] >> 4];
                hex[2 * i + 1] = sm__hexd[b[i] & 15];
            }
            hex[20] = '\0';
            if (sm__unique(x->s, SM_SUBSYS, "serial", hex, id) == NULL) {
                break;
            }
        }
        if (tries == 10) {
            nv_err_call(x->err, EFAULT, "Failed to generate a random serial for subsystem");
        } else {
            nv_set_str(n, "serial", hex);
        }
    }
    return sm__commit_row(x, SM_SUBSYS, d, n, create, id);
}

int sm__subsys_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int force = sm__delete_args(x, params, sm__force_fields, &id);
    const struct nv *row = force < 0 ? NULL : sm__existing(x, SM_SUBSYS, id);
    if (row == NULL) {
        return -1;
    }
    const char *name = nv_get_str(row, "name");
    size_t nns = sm__rows_with(x->s, SM_NAMESPACE, "subsys_id", id, NULL, 0);
    size_t nport = sm__rows_with(x->s, SM_PORT_SUBSYS, "subsys_id", id, NULL, 0);
    if (!force && nns > 0) {
        int64_t *ids = calloc(nns, sizeof *ids);
        size_t k = 0;
        for (size_t i = 0; i < x->s->t[SM_NAMESPACE].n; i++) {
            const struct nv *r = x->s->t[SM_NAMESPACE].row[i];
            if (nv_get_int(r, "subsys_id", -1) == id) {
                ids[k++] = nv_get_int(r, "nsid", 0);
            }
        }
        qsort(ids, k, sizeof *ids, sm__cmp_i64);
        char buf[96] = "";
        size_t o = 0;
        for (size_t i = 0; i < k && i < 3; i++) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%" PRId64, i ? "," : "", ids[i]);
        }
        if (k > 3) {
            snprintf(buf + o, sizeof buf - o, ",...");
        }
        free(ids);
        if (nns == 1) {
            nv_err_add(x->err, "nvmet_subsys_delete.id", EINVAL,
                       "Subsystem %s contains 1 namespace: %s", name, buf);
        } else {
            nv_err_add(x->err, "nvmet_subsys_delete.id", EINVAL,
                       "Subsystem %s contains %zu namespaces: %s", name, nns, buf);
        }
    }
    if (!force && nport > 0) {
        nv_err_add(x->err, "nvmet_subsys_delete.id", EINVAL, "Subsystem %s visible on %zu port%s",
                   name, nport, nport == 1 ? "" : "s");
    }
    if (sm__failed(x)) {
        return -1;
    }
    if (x->mutate) {
        sm__remove_with(x->s, SM_NAMESPACE, "subsys_id", id);
        sm__remove_with(x->s, SM_PORT_SUBSYS, "subsys_id", id);
        sm__remove_with(x->s, SM_HOST_SUBSYS, "subsys_id", id);
        sm__remove(x->s, SM_SUBSYS, id);
        sm__finish(x, SM_SUBSYS, 0);
    }
    return 0;
}
