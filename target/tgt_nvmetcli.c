/* A configfs tree map (tgt_desired_tree / tgt_live_tree) in nvmetcli's
 * saveconfig.json form, the format of linux-nvme/nvmetcli's "save" and
 * "restore" (nvmet/nvme.py): attribute groups as objects of strings
 * ({"attr": {"serial": "..."}}), names of directories and links as
 * strings, and nsid, portid, enable, ana_grpid and grpid as integers. */
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt.h"

/* The entry of array arr whose key field equals name (text, or an int
 * when as_int), created when missing. */
static struct nv *entry(struct nv *arr, const char *key, const char *name, bool as_int)
{
    for (size_t i = 0; i < nv_len(arr); i++) {
        struct nv *e = (struct nv *)nv_at(arr, i);
        const struct nv *k = nv_get(e, key);
        if ((as_int && nv_is(k, NV_INT) && k->u.i == strtoll(name, NULL, 10)) ||
            (!as_int && nv_is(k, NV_STR) && strcmp(k->u.s.p, name) == 0)) {
            return e;
        }
    }
    struct nv *e = nv_map();
    nv_set(e, key, as_int ? nv_int(strtoll(name, NULL, 10)) : nv_str(name));
    nv_push(arr, e);
    return (struct nv *)nv_at(arr, nv_len(arr) - 1);
}

/* The map or array member of m named key, created when missing. */
static struct nv *member(struct nv *m, const char *key, bool array)
{
    struct nv *v = (struct nv *)nv_get(m, key);
    if (v == NULL) {
        nv_set(m, key, array ? nv_arr() : nv_map());
        v = (struct nv *)nv_get(m, key);
    }
    return v;
}

/* "attr_serial" in group attr: "serial"; else NULL. */
static const char *in_group(const char *file, const char *group)
{
    size_t n = strlen(group);
    return strncmp(file, group, n) == 0 && file[n] == '_' ? file + n + 1 : NULL;
}

static void set_str(struct nv *m, const char *k, const struct nv *v)
{
    nv_set(m, k, nv_is(v, NV_STR) ? nv_copy(v) : nv_str(""));
}

static void set_int(struct nv *m, const char *k, const struct nv *v)
{
    nv_set(m, k, nv_int(nv_is(v, NV_STR) ? strtoll(v->u.s.p, NULL, 10) : 0));
}

static void host_part(struct nv *hosts, char **p, int n, const struct nv *v)
{
    struct nv *h = entry(hosts, "nqn", p[1], false);
    if (n == 3 && strncmp(p[2], "dhchap_", 7) == 0) {
        const char *k = p[2] + 7; /* key, ctrl_key, hash, dhgroup */
        set_str(member(h, "dhchap", false), k, v);
    }
}

static void ns_part(struct nv *s, char **p, int n, const struct nv *v)
{
    struct nv *ns = entry(member(s, "namespaces", true), "nsid", p[3], true);
    if (n != 5) {
        return;
    }
    const char *f = p[4], *d = in_group(f, "device");
    if (d != NULL) {
        set_str(member(ns, "device", false), d, v);
    } else if (strcmp(f, "enable") == 0 || strcmp(f, "ana_grpid") == 0) {
        set_int(ns, f, v);
    } else if (strcmp(f, "resv_enable") == 0) {
        set_str(member(ns, "resv", false), "enable", v);
    }
}

static void subsys_part(struct nv *subs, char **p, int n, const struct nv *v)
{
    struct nv *s = entry(subs, "nqn", p[1], false);
    member(s, "attr", false);
    member(s, "allowed_hosts", true);
    member(s, "namespaces", true);
    if (n == 3 && in_group(p[2], "attr") != NULL) {
        set_str(member(s, "attr", false), in_group(p[2], "attr"), v);
    } else if (n == 4 && strcmp(p[2], "allowed_hosts") == 0) {
        nv_push(member(s, "allowed_hosts", true), nv_str(p[3]));
    } else if (n >= 4 && strcmp(p[2], "namespaces") == 0) {
        ns_part(s, p, n, v);
    }
}

static void port_part(struct nv *ports, char **p, int n, const struct nv *v)
{
    struct nv *pt = entry(ports, "portid", p[1], true);
    member(pt, "addr", false);
    member(pt, "param", false);
    member(pt, "subsystems", true);
    struct nv *groups = member(pt, "ana_groups", true);
    member(pt, "referrals", true);
    if (n == 3 && in_group(p[2], "addr") != NULL) {
        set_str(member(pt, "addr", false), in_group(p[2], "addr"), v);
    } else if (n == 3 && in_group(p[2], "param") != NULL) {
        set_str(member(pt, "param", false), in_group(p[2], "param"), v);
    } else if (n == 4 && strcmp(p[2], "subsystems") == 0) {
        nv_push(member(pt, "subsystems", true), nv_str(p[3]));
    } else if (n >= 4 && strcmp(p[2], "ana_groups") == 0) {
        struct nv *g = entry(groups, "grpid", p[3], true);
        member(g, "ana", false);
        if (n == 5 && in_group(p[4], "ana") != NULL) {
            set_str(member(g, "ana", false), in_group(p[4], "ana"), v);
        }
    } else if (n >= 4 && strcmp(p[2], "referrals") == 0) {
        struct nv *r = entry(member(pt, "referrals", true), "name", p[3], false);
        member(r, "addr", false);
        if (n == 5 && in_group(p[4], "addr") != NULL) {
            set_str(member(r, "addr", false), in_group(p[4], "addr"), v);
        } else if (n == 5 && strcmp(p[4], "enable") == 0) {
            set_int(r, "enable", v);
        }
    }
}

struct nv *tgt_nvmetcli(const struct nv *tree)
{
    struct nv *out = nv_map();
    nv_set(out, "hosts", nv_arr());
    nv_set(out, "ports", nv_arr());
    nv_set(out, "subsystems", nv_arr());
    struct nv *hosts = (struct nv *)nv_get(out, "hosts");
    struct nv *ports = (struct nv *)nv_get(out, "ports");
    struct nv *subs = (struct nv *)nv_get(out, "subsystems");
    for (size_t i = 0; nv_is(tree, NV_MAP) && i < tree->u.m.n; i++) {
        char *path = strdup(tree->u.m.kv[i].k);
        const struct nv *v = tree->u.m.kv[i].v;
        char *p[8];
        int n = 0;
        for (char *save = NULL, *t = strtok_r(path, "/", &save); t != NULL && n < 8;
             t = strtok_r(NULL, "/", &save)) {
            p[n++] = t;
        }
        if (n >= 2 && strcmp(p[0], "hosts") == 0) {
            host_part(hosts, p, n, v);
        } else if (n >= 2 && strcmp(p[0], "subsystems") == 0) {
            subsys_part(subs, p, n, v);
        } else if (n >= 2 && strcmp(p[0], "ports") == 0) {
            port_part(ports, p, n, v);
        }
        free(path);
    }
    /* the kernel's default ANA group, which the trees leave out */
    for (size_t i = 0; i < nv_len(ports); i++) {
        struct nv *g =
            entry(member((struct nv *)nv_at(ports, i), "ana_groups", true), "grpid", "1", true);
        struct nv *ana = member(g, "ana", false);
        if (nv_get(ana, "state") == NULL) {
            nv_set_str(ana, "state", "optimized");
        }
    }
    return out;
}
