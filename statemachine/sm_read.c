/* statemachine: query-shaped entries (those of TrueNAS's nvmet.*.query): nested
 * subsys/port/host objects, verbose id lists, the computed "locked". */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

static void copy_keys(struct nv *dst, const struct nv *row, const char *const *keys)
{
    for (size_t i = 0; keys[i] != NULL; i++) {
        const struct nv *v = nv_get(row, keys[i]);
        nv_set(dst, keys[i], v != NULL ? nv_copy(v) : nv_nil());
    }
}

static struct nv *ids_where(const struct sm_state *s, enum sm_table t, const char *col, int64_t id,
                            const char *pick)
{
    struct nv *a = nv_arr();
    for (size_t i = 0; i < s->t[t].n; i++) {
        const struct nv *r = s->t[t].row[i];
        if (nv_get_int(r, col, -1) == id) {
            nv_push(a, nv_int(nv_get_int(r, pick, 0)));
        }
    }
    return a;
}

struct nv *sm__subsys_entry(const struct sm_state *s, const struct nv *row, bool verbose)
{
    static const char *const keys[] = {"id",        "name",    "subnqn",   "serial", "allow_any_host",
                                       "pi_enable", "qid_max", "ieee_oui", "ana",    NULL};
    struct nv *e = nv_map();
    copy_keys(e, row, keys);
    if (verbose) {
        int64_t id = nv_get_int(row, "id", 0);
        nv_set(e, "hosts", ids_where(s, SM_HOST_SUBSYS, "subsys_id", id, "host_id"));
        nv_set(e, "namespaces", ids_where(s, SM_NAMESPACE, "subsys_id", id, "id"));
        nv_set(e, "ports", ids_where(s, SM_PORT_SUBSYS, "subsys_id", id, "port_id"));
    }
    return e;
}

static struct nv *port_entry(const struct nv *row)
{
    static const char *const keys[] = {"id",          "index",           "addr_trtype",
                                       "addr_trsvcid", "addr_traddr",    "addr_adrfam",
                                       "inline_data_size", "max_queue_size", "pi_enable",
                                       "enabled",     NULL};
    struct nv *e = nv_map();
    copy_keys(e, row, keys);
    return e;
}

bool sm_field_secret(const char *name)
{
    static const char *const secrets[] = {"dhchap_key", "dhchap_ctrl_key", "fence_command", NULL};
    for (size_t i = 0; secrets[i] != NULL; i++) {
        if (strcmp(name, secrets[i]) == 0) {
            return true;
        }
    }
    return false;
}

static struct nv *host_entry(const struct nv *row)
{
    static const char *const keys[] = {"id",         "hostnqn",         "description",
                                       "dhchap_key", "dhchap_ctrl_key", "dhchap_dhgroup",
                                       "dhchap_hash", NULL};
    struct nv *e = nv_map();
    copy_keys(e, row, keys);
    return e;
}

static struct nv *nested(const struct sm_state *s, enum sm_table t, int64_t id, bool verbose)
{
    const struct nv *r = sm__find(s, t, id);
    if (r == NULL) {
        return nv_nil();
    }
    switch (t) {
    case SM_SUBSYS:
        return sm__subsys_entry(s, r, verbose);
    case SM_PORT:
        return port_entry(r);
    case SM_HOST:
        return host_entry(r);
    default:
        return nv_nil();
    }
}

static struct nv *entry_of(const struct sm_state *s, enum sm_table t, const struct nv *row,
                           bool verbose, bool locked_info)
{
    struct nv *e;
    switch (t) {
    case SM_SUBSYS:
        return sm__subsys_entry(s, row, verbose);
    case SM_NAMESPACE: {
        e = nv_map();
        nv_set(e, "id", nv_copy(nv_get(row, "id")));
        nv_set(e, "nsid", nv_copy(nv_get(row, "nsid")));
        nv_set(e, "subsys", nested(s, SM_SUBSYS, nv_get_int(row, "subsys_id", 0), verbose));
        static const char *const keys[] = {"device_type",  "device_path", "dataset",
                                           "relative_path", "filesize",   "device_uuid",
                                           "device_nguid", "enabled",     NULL};
        copy_keys(e, row, keys);
        /* no encrypted datasets here: never locked */
        nv_set(e, "locked", locked_info ? nv_bool(false) : nv_nil());
        return e;
    }
    case SM_PORT:
        return port_entry(row);
    case SM_HOST:
        return host_entry(row);
    case SM_HOST_SUBSYS:
    case SM_PORT_SUBSYS: {
        bool host = t == SM_HOST_SUBSYS;
        e = nv_map();
        nv_set(e, "id", nv_copy(nv_get(row, "id")));
        nv_set(e, host ? "host" : "port",
               nested(s, host ? SM_HOST : SM_PORT, nv_get_int(row, host ? "host_id" : "port_id", 0),
                      verbose));
        nv_set(e, "subsys", nested(s, SM_SUBSYS, nv_get_int(row, "subsys_id", 0), verbose));
        return e;
    }
    default:
        return nv_nil();
    }
}

static void extra_flags(const struct nv *extra, bool *verbose, bool *locked)
{
    *verbose = false;
    *locked = true;
    const struct nv *v = nv_get(extra, "verbose");
    if (nv_is(v, NV_BOOL)) {
        *verbose = v->u.b;
    }
    const struct nv *l = nv_get(extra, "retrieve_locked_info");
    if (nv_is(l, NV_BOOL)) {
        *locked = l->u.b;
    }
}

struct nv *sm_entries(const struct sm_state *s, enum sm_table t, const struct nv *extra)
{
    bool verbose, locked;
    extra_flags(extra, &verbose, &locked);
    struct nv *a = nv_arr();
    for (size_t i = 0; i < s->t[t].n; i++) {
        nv_push(a, entry_of(s, t, s->t[t].row[i], verbose, locked));
    }
    return a;
}

struct nv *sm_entry(const struct sm_state *s, enum sm_table t, int64_t id, const struct nv *extra)
{
    const struct nv *r = sm__find(s, t, id);
    if (r == NULL) {
        return NULL;
    }
    bool verbose, locked;
    extra_flags(extra, &verbose, &locked);
    return entry_of(s, t, r, verbose, locked);
}

struct nv *sm_global_entry(const struct sm_state *s)
{
    struct nv *e = nv_map();
    nv_set_int(e, "id", 1);
    if (s->global != NULL) {
        static const char *const keys[] = {"basenqn", "kernel",         "ana",
                                           "rdma",    "xport_referral", "enabled", NULL};
        copy_keys(e, s->global, keys);
    } else {
        /* before the first leader initialized the row: the defaults */
        nv_set_nil(e, "basenqn");
        nv_set_bool(e, "kernel", true);
        nv_set_bool(e, "ana", false);
        nv_set_bool(e, "rdma", false);
        nv_set_bool(e, "xport_referral", true);
        nv_set_bool(e, "enabled", false);
    }
    return e;
}
