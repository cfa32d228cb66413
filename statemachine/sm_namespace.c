/* statemachine: nvmet.namespace create/update/delete (TrueNAS's rules,
 * plus the "device" shorthand and BLOCK devices). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

/* ---- namespace ---- */

static const char *const device_types[] = {"ZVOL", "ZVOL", "FILE", "FILE", "BLOCK", "BLOCK", NULL};

static const struct sm_field ns_fields[] = {
    {"subsys_id", SF_INT, 0, 0, 0, NULL},
    {"subsys", SF_INT, 0, 0, 0, NULL},
    {"device_type", SF_ENUM, 0, 0, 0, device_types},
    {"device_path", SF_PATH, 0, 0, 0, NULL},
    {"device", SF_NESTR, 0, 0, 0, NULL},
    {"nsid", SF_INT, SF_NULL | SF_MIN | SF_MAXX, 1, 0xFFFFFFFFLL, NULL},
    {"filesize", SF_INT, SF_NULL | SF_MIN, 0, 0, NULL},
    {"enabled", SF_BOOL, 0, 0, 0, NULL},
    {"device_uuid", SF_STR, SF_NULL, 0, 0, NULL},
    {"device_nguid", SF_STR, SF_NULL, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL}};

/* The "device" shorthand -> device_type + device_path ("zvol/..." ZVOL,
 * "/dev/..." BLOCK, another absolute path FILE). */
static bool ns_device(struct sm_ex *x, struct nv *d, const char *pfx, bool create)
{
    char attr[160];
    struct nv *dev = nv_take(d, "device");
    if (dev == NULL) {
        if (create) {
            if (nv_get(d, "device_type") == NULL) {
                snprintf(attr, sizeof attr, "%s.device_type", pfx);
                nv_err_add(x->err, attr, EINVAL, "Field required");
            }
            if (nv_get(d, "device_path") == NULL) {
                snprintf(attr, sizeof attr, "%s.device_path", pfx);
                nv_err_add(x->err, attr, EINVAL, "Field required");
            }
        }
        return !sm__failed(x);
    }
    snprintf(attr, sizeof attr, "%s.device", pfx);
    const char *s = dev->u.s.p;
    const char *type = strncmp(s, "zvol/", 5) == 0   ? "ZVOL"
                       : strncmp(s, "/dev/", 5) == 0 ? "BLOCK"
                       : s[0] == '/'                 ? "FILE"
                                                     : NULL;
    if (nv_get(d, "device_type") != NULL || nv_get(d, "device_path") != NULL) {
        nv_err_add(x->err, attr, EINVAL,
                   "Give either device or device_type and device_path, not both");
    } else if (type == NULL) {
        nv_err_add(x->err, attr, EINVAL,
                   "Value error, device must be zvol/<pool>/<volume> or an absolute path: %s", s);
    } else {
        char *p = sm__normpath(s);
        nv_set_str(d, "device_type", type);
        nv_set_str(d, "device_path", p);
        free(p);
    }
    nv_free(dev);
    return !sm__failed(x);
}

/* TrueNAS's device_path checks (ZVOL: "zvol/" and a block device under
 * /dev/zvol; FILE: in an existing directory, not a directory), plus BLOCK.
 * Returns the device kind seen. */
static int ns_path_check(struct sm_ex *x, const char *pfx, const char *type, const char *path)
{
    char attr[160], os[4200];
    snprintf(attr, sizeof attr, "%s.device_path", pfx);
    if (strcmp(type, "ZVOL") == 0) {
        if (strncmp(path, "zvol/", 5) != 0) {
            nv_err_add(x->err, attr, EINVAL, "ZVOL device_path must start with \"zvol/\": %s",
                       path);
            return -1;
        }
        size_t o = (size_t)snprintf(os, sizeof os, "/dev/zvol/");
        for (const char *p = path + 5; *p != '\0' && o + 1 < sizeof os; p++) {
            os[o++] = *p == ' ' ? '+' : *p;
        }
        os[o] = '\0';
        int k = sm__devstat(x, os);
        if (k != -1 && k != SM_DEV_BLOCK) {
            nv_err_add(x->err, attr, EINVAL, "ZVOL device_path must be a block device: %s", path);
        }
        return k;
    }
    if (strcmp(type, "BLOCK") == 0) {
        int k = path[0] == '/' ? sm__devstat(x, path) : SM_DEV_OTHER;
        if (k != -1 && k != SM_DEV_BLOCK) {
            nv_err_add(x->err, attr, EINVAL, "BLOCK device_path must be a block device: %s", path);
        }
        return k;
    }
    int k = path[0] == '/' ? sm__devstat(x, path) : SM_DEV_NOPARENT;
    if (k == SM_DEV_NOPARENT) {
        nv_err_add(x->err, attr, EINVAL,
                   "FILE device_path must reside in an existing directory on a dataset: %s", path);
    } else if (k == SM_DEV_DIR) {
        nv_err_add(x->err, attr, EINVAL, "FILE device_path must not be a directory: %s", path);
    } else if (k == SM_DEV_OTHER) {
        nv_err_add(x->err, attr, EINVAL, "FILE device_path must be a regular file: %s", path);
    }
    return k;
}

static bool ns_uuid(struct sm_ex *x, struct nv *n, const char *pfx, const char *key, int64_t self)
{
    char attr[160], u[37];
    snprintf(attr, sizeof attr, "%s.%s", pfx, key);
    const char *v = nv_get_str(n, key);
    if (v != NULL && v[0] != '\0') {
        if (!sm__uuid_norm(v, u)) {
            nv_err_add(x->err, attr, EINVAL, "Value error, badly formed hexadecimal UUID string");
            return false;
        }
        const struct nv *hit = sm__unique(x->s, SM_NAMESPACE, key, u, self);
        if (hit != NULL) {
            const struct nv *s = sm__find(x->s, SM_SUBSYS, nv_get_int(hit, "subsys_id", 0));
            nv_err_add(x->err, attr, EINVAL, "This %s already used by subsystem: %s", key,
                       s != NULL ? nv_get_str(s, "name") : "?");
            return false;
        }
        nv_set_str(n, key, u);
        return true;
    }
    return true;
}

static void ns_uuid_generate(struct sm_ex *x, struct nv *n, const char *key, int64_t self)
{
    const char *v = nv_get_str(n, key);
    if (v != NULL && v[0] != '\0') {
        return;
    }
    for (int tries = 0; tries < 10; tries++) {
        unsigned char b[16];
        char u[37];
        sm__random(x, b, sizeof b);
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        sm__uuid_format(b, u);
        if (sm__unique(x->s, SM_NAMESPACE, key, u, self) == NULL) {
            nv_set_str(n, key, u);
            return;
        }
    }
    nv_err_call(x->err, EFAULT, "Failed to generate a %s for subsystem", key);
}

/* A new namespace's stored row before the client's keys (TrueNAS's defaults). */
static struct nv *defaults(void)
{
    struct nv *n = nv_map();
    nv_set_int(n, "id", 0);
    nv_set_nil(n, "nsid");
    nv_set_int(n, "subsys_id", 0);
    nv_set_str(n, "device_type", "ZVOL");
    nv_set_str(n, "device_path", "");
    nv_set_nil(n, "dataset");
    nv_set_nil(n, "relative_path");
    nv_set_nil(n, "filesize");
    nv_set_nil(n, "device_uuid");
    nv_set_nil(n, "device_nguid");
    nv_set_bool(n, "enabled", true);
    return n;
}

void sm__nsid_unique_check(struct sm_ex *x, const char *pfx, const struct nv *n, int64_t self)
{
    const struct nv *nsid = nv_get(n, "nsid");
    if (!nv_is(nsid, NV_INT)) {
        return;
    }
    int64_t sid = nv_get_int(n, "subsys_id", 0);
    for (size_t i = 0; i < x->s->t[SM_NAMESPACE].n; i++) {
        const struct nv *r = x->s->t[SM_NAMESPACE].row[i];
        if (nv_get_int(r, "subsys_id", -1) == sid && nv_get_int(r, "nsid", -1) == nsid->u.i &&
            nv_get_int(r, "id", 0) != self) {
            char attr[160];
            snprintf(attr, sizeof attr, "%s.nsid", pfx);
            nv_err_add(x->err, attr, EINVAL,
                       "This record already exists (Subsystem ID: %" PRId64 "/NSID: %" PRId64 ")",
                       sid, nsid->u.i);
            break;
        }
    }
}

int sm__ns_write(struct sm_ex *x, const struct nv *params, bool create)
{
    const char *pfx = create ? "nvmet_namespace_create" : "nvmet_namespace_update";
    char attr[160];
    int64_t id;
    const struct nv *in;
    if (!sm__write_args(x, params, create, pfx, &id, &in)) {
        return -1;
    }
    struct nv *d = sm__model(pfx, ns_fields, in, x->err);
    if (d == NULL) {
        return -1;
    }
    if (!sm__alias(x, d, pfx, "subsys_id", "subsys", create) || !ns_device(x, d, pfx, create)) {
        nv_free(d);
        return -1;
    }
    const struct nv *old;
    struct nv *n = sm__new_row(x, SM_NAMESPACE, create, id, create ? defaults() : NULL, d, &old);
    if (n == NULL) {
        nv_free(d);
        return -1;
    }
    if (!create) {
        /* the subsystem of a namespace never changes (TrueNAS validates
         * subsys_id in an update but keeps the stored one) */
        nv_set_int(n, "subsys_id", nv_get_int(old, "subsys_id", 0));
    }
    int64_t sid = nv_get_int(d, "subsys_id", nv_get_int(n, "subsys_id", 0));
    /* 1. subsystem exists */
    if (sm__find(x->s, SM_SUBSYS, sid) == NULL) {
        snprintf(attr, sizeof attr, "%s.subsys_id", pfx);
        nv_err_add(x->err, attr, EINVAL, "No subsystem with ID %" PRId64, sid);
    }
    sid = nv_get_int(n, "subsys_id", 0);
    /* 2. nsid unique in the subsystem */
    sm__nsid_unique_check(x, pfx, n, id);
    /* 3. type and path */
    const char *type = nv_get_str(n, "device_type");
    const char *path = nv_get_str(n, "device_path");
    bool path_given =
        create || nv_get(d, "device_path") != NULL || nv_get(d, "device_type") != NULL;
    int kind = path_given ? ns_path_check(x, pfx, type, path) : SM_DEV_FILE;
    /* 4. path used by another namespace */
    const struct nv *hit = sm__unique(x->s, SM_NAMESPACE, "device_path", path, id);
    if (hit != NULL) {
        const struct nv *s = sm__find(x->s, SM_SUBSYS, nv_get_int(hit, "subsys_id", 0));
        snprintf(attr, sizeof attr, "%s.device_path", pfx);
        nv_err_add(x->err, attr, EINVAL, "This device_path already used by subsystem: %s",
                   s != NULL ? nv_get_str(s, "name") : "?");
    }
    /* 6. an active namespace changes only enabled and filesize */
    if (!create && nv_get_bool(old, "enabled", false) && sm__running(x->s)) {
        if (nv_get(d, "device_uuid") != NULL && nv_get_is_nil(d, "device_uuid")) {
            nv_set_str(n, "device_uuid", "");
        }
        if (nv_get(d, "device_nguid") != NULL && nv_get_is_nil(d, "device_nguid")) {
            nv_set_str(n, "device_nguid", "");
        }
        static const char *const keys[] = {"nsid",        "device_type",  "device_path",
                                           "device_uuid", "device_nguid", NULL};
        for (size_t i = 0; keys[i] != NULL; i++) {
            const struct nv *a = nv_get(old, keys[i]), *b = nv_get(n, keys[i]);
            if (nv_get(d, keys[i]) != NULL && !sm__same(a, b)) {
                if (nv_is(b, NV_STR)) {
                    char u[37];
                    if ((strcmp(keys[i], "device_uuid") == 0 ||
                         strcmp(keys[i], "device_nguid") == 0) &&
                        sm__uuid_norm(b->u.s.p, u) && nv_is(a, NV_STR) &&
                        strcmp(u, a->u.s.p) == 0) {
                        continue;
                    }
                }
                nv_err_add(x->err, pfx, EINVAL, SM_ACTIVE_MSG, keys[i], "namespace");
            }
        }
    }
    /* 7. uuids: validated and unique when given, generated otherwise */
    if (!sm__failed(x)) {
        ns_uuid(x, n, pfx, "device_uuid", id);
        ns_uuid(x, n, pfx, "device_nguid", id);
    }
    /* FILE size rules */
    if (!sm__failed(x) && strcmp(type, "FILE") == 0) {
        const struct nv *fs = nv_get(n, "filesize");
        snprintf(attr, sizeof attr, "%s.filesize", pfx);
        if (kind == SM_DEV_MISSING && (!nv_is(fs, NV_INT) || fs->u.i == 0)) {
            nv_err_add(x->err, attr, EINVAL,
                       "Must supply filesize if device_path FILE does not exist.");
        } else if (!create && nv_is(fs, NV_INT) && nv_is(nv_get(old, "filesize"), NV_INT) &&
                   fs->u.i < nv_get_int(old, "filesize", 0)) {
            nv_err_add(x->err, attr, EINVAL,
                       "Shrinking an namespace file is not allowed. This can lead to data loss.");
        }
    }
    if (!sm__failed(x)) {
        ns_uuid_generate(x, n, "device_uuid", id);
        ns_uuid_generate(x, n, "device_nguid", id);
    }
    bool auto_nsid = !nv_is(nv_get(n, "nsid"), NV_INT);
    if (!sm__failed(x) && auto_nsid) {
        /* lowest unused nsid in 1..65534 */
        int64_t want = 0;
        size_t cnt = sm__rows_with(x->s, SM_NAMESPACE, "subsys_id", sid, NULL, 0);
        int64_t *used = calloc(cnt + 1, sizeof *used);
        size_t k = 0;
        for (size_t i = 0; i < x->s->t[SM_NAMESPACE].n; i++) {
            const struct nv *r = x->s->t[SM_NAMESPACE].row[i];
            if (nv_get_int(r, "subsys_id", -1) == sid && nv_get_int(r, "id", 0) != id) {
                used[k++] = nv_get_int(r, "nsid", 0);
            }
        }
        qsort(used, k, sizeof *used, sm__cmp_i64);
        want = 1;
        for (size_t i = 0; i < k; i++) {
            if (used[i] == want) {
                want++;
            } else if (used[i] > want) {
                break;
            }
        }
        free(used);
        if (want > 65534) {
            nv_err_call(x->err, EINVAL, "Unable to determine namespace ID (NSID)");
        } else {
            nv_set_int(n, "nsid", want);
        }
    }
    if (x->mutate && !sm__failed(x) && path != NULL) {
        sm__removal_drop(x->s, path); /* in use again: not to be removed */
    }
    int rv = sm__commit_row(x, SM_NAMESPACE, d, n, create, id);
    if (rv == 0 && x->op != NULL) {
        /* v2: the nsid is apply's (lowest free), and the subsystem of a
         * namespace never changes */
        struct nv *row = nv_get(x->op, create ? "row" : "set");
        if (!create) {
            nv_del(row, "subsys_id");
        }
        if (auto_nsid) {
            nv_del(nv_get(x->op, "derived"), "nsid");
            nv_set_str(row, "nsid", SM_AUTO);
        }
    }
    return rv;
}

int sm__ns_delete(struct sm_ex *x, const struct nv *params)
{
    int64_t id;
    int rm = sm__delete_args(x, params, sm__remove_fields, &id);
    if (rm < 0 || sm__existing(x, SM_NAMESPACE, id) == NULL) {
        return -1;
    }
    if (x->mutate) {
        /* {"remove": true}: the FILE's removal is part of the committed
         * change (sm_removals) */
        const struct nv *row = sm__find(x->s, SM_NAMESPACE, id);
        const char *type = nv_get_str(row, "device_type");
        const char *path = nv_get_str(row, "device_path");
        if (rm == 1 && type != NULL && strcmp(type, "FILE") == 0 && path != NULL) {
            sm__removal_add(x->s, path, id);
        }
        sm__remove(x->s, SM_NAMESPACE, id);
        sm__finish(x, SM_NAMESPACE, 0);
    }
    return 0;
}
