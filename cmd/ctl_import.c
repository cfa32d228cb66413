/* nvmetctl import-nvmetcli [--dry-run] FILE: a linux-nvme/nvmetcli
 * saveconfig.json (what "nvmetcli save" writes, or nvmetctl call
 * nvmet.global.export_nvmetcli) into the cluster through the API.
 *
 * Objects are matched by name: a host or subsystem whose NQN exists, a
 * port with the same transport, address and service id, a namespace with
 * the same nsid in its subsystem, a link that exists, are left alone; the
 * rest is created in three pipelined phases (hosts and subsystems; then
 * namespaces and ports, which refer to them by the ids the cluster gave;
 * then the links). --dry-run prints what would be created and changes
 * nothing. nvmetcli's values are strings as configfs reads them; they map
 * to the API's fields (hmac(sha256) -> SHA-256, ffdhe2048 -> 2048-BIT,
 * /dev/zvol/P -> the zvol P, tcp -> TCP, ...). Attributes the API does not
 * manage (model, version, cntlid_*, referrals, ANA groups) are ignored. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"

struct plan {
    struct ctl_call *calls;
    size_t n, cap;
    size_t skipped;
    bool dry;
};

static void add(struct plan *p, const char *what, const char *method, struct nv *arg)
{
    if (p->dry) {
        char *j = nv_to_json(arg);
        printf("create %s: %s %s\n", what, method, j ? j : "?");
        free(j);
        nv_free(arg);
        return;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->calls = realloc(p->calls, p->cap * sizeof *p->calls);
    }
    struct nv *params = nv_arr();
    nv_push(params, arg);
    p->calls[p->n++] = (struct ctl_call){strdup(method), params};
}

/* A reference by id; in a dry run an object still to be created has no
 * id yet: its name stands there instead. */
static void set_ref(struct nv *a, const char *k, int64_t id, const char *name, const struct plan *p)
{
    if (id == 0 && p->dry) {
        nv_set_str(a, k, name != NULL ? name : "?");
    } else {
        nv_set_int(a, k, id != 0 ? id : -1);
    }
}

static void skip(struct plan *p, const char *what)
{
    p->skipped++;
    if (p->dry) {
        printf("exists %s\n", what);
    }
}

static int run(struct ctl *c, struct plan *p, const char *what)
{
    int code = p->dry || p->n == 0 ? EXIT_OK : ctl_run_calls(c, p->calls, p->n, what);
    free(p->calls);
    p->calls = NULL;
    p->n = p->cap = 0;
    return code;
}

/* id of the row of query result rows whose col equals text; 0 if none */
static int64_t find(const struct nv *rows, const char *col, const char *text)
{
    for (size_t i = 0; i < nv_len(rows); i++) {
        const char *v = nv_get_str(nv_at(rows, i), col);
        if (v != NULL && text != NULL && strcmp(v, text) == 0) {
            return nv_get_int(nv_at(rows, i), "id", 0);
        }
    }
    return 0;
}

static struct nv *query(struct ctl *c, const char *table)
{
    char method[64];
    snprintf(method, sizeof method, "nvmet.%s.query", table);
    struct nv *r = NULL;
    return ctl_call1(c, method, nv_arr(), &r) == 0 ? r : NULL;
}

static const char *str(const struct nv *m, const char *k)
{
    const char *s = nv_get_str(m, k);
    return s != NULL && s[0] != '\0' ? s : NULL;
}

static void put_bool(struct nv *m, const char *k, const char *v)
{
    if (v != NULL) {
        nv_set_bool(m, k, strcmp(v, "1") == 0 || strcmp(v, "Y") == 0 || strcmp(v, "y") == 0);
    }
}

static void put_int(struct nv *m, const char *k, const char *v)
{
    char *end;
    long long x = v != NULL ? strtoll(v, &end, 10) : 0;
    if (v != NULL && *end == '\0') {
        nv_set_int(m, k, x);
    }
}

static const char *hash_name(const char *h)
{
    return h == NULL                        ? NULL
           : strcmp(h, "hmac(sha256)") == 0 ? "SHA-256"
           : strcmp(h, "hmac(sha384)") == 0 ? "SHA-384"
           : strcmp(h, "hmac(sha512)") == 0 ? "SHA-512"
                                            : h;
}

static void hosts_and_subsystems(const struct nv *doc, const struct nv *hosts,
                                 const struct nv *subs, struct plan *p)
{
    const struct nv *hs = nv_get(doc, "hosts");
    for (size_t i = 0; i < nv_len(hs); i++) {
        const struct nv *h = nv_at(hs, i);
        const char *nqn = str(h, "nqn");
        char what[300];
        snprintf(what, sizeof what, "host %s", nqn ? nqn : "?");
        if (nqn != NULL && find(hosts, "hostnqn", nqn) != 0) {
            skip(p, what);
            continue;
        }
        struct nv *a = nv_map();
        nv_set_str(a, "hostnqn", nqn ? nqn : "");
        const struct nv *d = nv_get(h, "dhchap");
        if (str(d, "key") != NULL) {
            nv_set_str(a, "dhchap_key", str(d, "key"));
        }
        if (str(d, "ctrl_key") != NULL) {
            nv_set_str(a, "dhchap_ctrl_key", str(d, "ctrl_key"));
        }
        if (str(d, "hash") != NULL) {
            nv_set_str(a, "dhchap_hash", hash_name(str(d, "hash")));
        }
        const char *g = str(d, "dhgroup");
        if (g != NULL && strcmp(g, "null") != 0 && strncmp(g, "ffdhe", 5) == 0) {
            char grp[32];
            snprintf(grp, sizeof grp, "%s-BIT", g + 5);
            nv_set_str(a, "dhchap_dhgroup", grp);
        }
        add(p, what, "nvmet.host.create", a);
    }
    const struct nv *ss = nv_get(doc, "subsystems");
    for (size_t i = 0; i < nv_len(ss); i++) {
        const struct nv *s = nv_at(ss, i);
        const char *nqn = str(s, "nqn");
        char what[300];
        snprintf(what, sizeof what, "subsystem %s", nqn ? nqn : "?");
        if (nqn != NULL && find(subs, "subnqn", nqn) != 0) {
            skip(p, what);
            continue;
        }
        const struct nv *at = nv_get(s, "attr");
        struct nv *a = nv_map();
        nv_set_str(a, "name", nqn ? nqn : "");
        if (str(at, "serial") != NULL) {
            nv_set_str(a, "serial", str(at, "serial"));
        }
        put_bool(a, "allow_any_host", str(at, "allow_any_host"));
        put_int(a, "qid_max", str(at, "qid_max"));
        put_bool(a, "pi_enable", str(at, "pi_enable"));
        if (str(at, "ieee_oui") != NULL) {
            nv_set_str(a, "ieee_oui", str(at, "ieee_oui"));
        }
        add(p, what, "nvmet.subsys.create", a);
    }
}

/* a port's key: "tcp 10.0.0.1:4420" (upper-case transport from the API) */
static void port_key(const char *trtype, const char *traddr, const char *svc, char *out, size_t len)
{
    char t[16] = "";
    for (size_t i = 0; trtype != NULL && trtype[i] != '\0' && i + 1 < sizeof t; i++) {
        t[i] = (char)(trtype[i] >= 'a' && trtype[i] <= 'z' ? trtype[i] - 32 : trtype[i]);
        t[i + 1] = '\0';
    }
    snprintf(out, len, "%s %s:%s", t, traddr ? traddr : "", svc ? svc : "");
}

static int64_t find_port(const struct nv *ports, const char *key)
{
    for (size_t i = 0; i < nv_len(ports); i++) {
        const struct nv *r = nv_at(ports, i);
        char svc[24] = "", k[200];
        if (nv_is(nv_get(r, "addr_trsvcid"), NV_INT)) {
            snprintf(svc, sizeof svc, "%" PRId64, nv_get_int(r, "addr_trsvcid", 0));
        }
        port_key(nv_get_str(r, "addr_trtype"), nv_get_str(r, "addr_traddr"), svc, k, sizeof k);
        if (strcmp(k, key) == 0) {
            return nv_get_int(r, "id", 0);
        }
    }
    return 0;
}

static void namespaces_and_ports(const struct nv *doc, const struct nv *subs, const struct nv *nss,
                                 const struct nv *ports, struct plan *p)
{
    const struct nv *ss = nv_get(doc, "subsystems");
    for (size_t i = 0; i < nv_len(ss); i++) {
        const struct nv *s = nv_at(ss, i);
        const char *nqn = str(s, "nqn");
        int64_t sid = find(subs, "subnqn", nqn);
        const struct nv *ns = nv_get(s, "namespaces");
        for (size_t k = 0; k < nv_len(ns); k++) {
            const struct nv *n = nv_at(ns, k);
            int64_t nsid = nv_get_int(n, "nsid", 0);
            char what[300];
            snprintf(what, sizeof what, "namespace %" PRId64 " of %s", nsid, nqn ? nqn : "?");
            bool exists = false;
            for (size_t j = 0; j < nv_len(nss); j++) {
                const struct nv *r = nv_at(nss, j);
                exists = exists || (nv_get_int(nv_get(r, "subsys"), "id", -1) == sid &&
                                    nv_get_int(r, "nsid", 0) == nsid);
            }
            if (sid != 0 && exists) {
                skip(p, what);
                continue;
            }
            const struct nv *d = nv_get(n, "device");
            const char *path = str(d, "path");
            struct nv *a = nv_map();
            set_ref(a, "subsys", sid, nqn, p);
            nv_set_int(a, "nsid", nsid);
            /* the API's device shorthand: "zvol/P" for /dev/zvol/P */
            nv_set_str(a, "device",
                       path != NULL && strncmp(path, "/dev/zvol/", 10) == 0 ? path + 5
                       : path != NULL                                       ? path
                                                                            : "");
            if (str(d, "uuid") != NULL) {
                nv_set_str(a, "device_uuid", str(d, "uuid"));
            }
            if (str(d, "nguid") != NULL) {
                nv_set_str(a, "device_nguid", str(d, "nguid"));
            }
            nv_set_bool(a, "enabled", nv_get_int(n, "enable", 1) != 0);
            add(p, what, "nvmet.namespace.create", a);
        }
    }
    const struct nv *ps = nv_get(doc, "ports");
    for (size_t i = 0; i < nv_len(ps); i++) {
        const struct nv *pt = nv_at(ps, i);
        const struct nv *ad = nv_get(pt, "addr"), *pa = nv_get(pt, "param");
        char key[200], what[260];
        port_key(str(ad, "trtype"), str(ad, "traddr"), str(ad, "trsvcid"), key, sizeof key);
        snprintf(what, sizeof what, "port %s", key);
        if (find_port(ports, key) != 0) {
            skip(p, what);
            continue;
        }
        struct nv *a = nv_map();
        char t[16];
        port_key(str(ad, "trtype"), "", "", t, sizeof t);
        t[strcspn(t, " ")] = '\0';
        nv_set_str(a, "addr_trtype", t);
        nv_set_str(a, "addr_traddr", str(ad, "traddr") ? str(ad, "traddr") : "");
        if (str(ad, "trsvcid") != NULL) {
            nv_set_str(a, "addr_trsvcid", str(ad, "trsvcid"));
        }
        put_int(a, "inline_data_size", str(pa, "inline_data_size"));
        put_int(a, "max_queue_size", str(pa, "max_queue_size"));
        put_bool(a, "pi_enable", str(pa, "pi_enable"));
        add(p, what, "nvmet.port.create", a);
    }
}

static bool linked(const struct nv *links, const char *col, int64_t id, int64_t sid)
{
    for (size_t i = 0; i < nv_len(links); i++) {
        const struct nv *l = nv_at(links, i);
        const struct nv *o = nv_get(l, col), *s = nv_get(l, "subsys");
        int64_t oid = nv_is(o, NV_MAP) ? nv_get_int(o, "id", 0) : nv_get_int(l, col, 0);
        int64_t ssid = nv_is(s, NV_MAP) ? nv_get_int(s, "id", 0) : nv_get_int(l, "subsys_id", 0);
        if (oid == id && ssid == sid) {
            return true;
        }
    }
    return false;
}

static void links(const struct nv *doc, const struct nv *hosts, const struct nv *subs,
                  const struct nv *ports, const struct nv *hsl, const struct nv *psl,
                  struct plan *p)
{
    const struct nv *ss = nv_get(doc, "subsystems");
    for (size_t i = 0; i < nv_len(ss); i++) {
        const struct nv *s = nv_at(ss, i);
        const char *nqn = str(s, "nqn");
        int64_t sid = find(subs, "subnqn", nqn);
        const struct nv *ah = nv_get(s, "allowed_hosts");
        for (size_t k = 0; k < nv_len(ah); k++) {
            const char *h = nv_is(nv_at(ah, k), NV_STR) ? nv_at(ah, k)->u.s.p : "";
            int64_t hid = find(hosts, "hostnqn", h);
            char what[600];
            snprintf(what, sizeof what, "link of host %s to %s", h, nqn ? nqn : "?");
            if (hid != 0 && sid != 0 && linked(hsl, "host", hid, sid)) {
                skip(p, what);
                continue;
            }
            struct nv *a = nv_map();
            set_ref(a, "host", hid, h, p);
            set_ref(a, "subsys", sid, nqn, p);
            add(p, what, "nvmet.host_subsys.create", a);
        }
    }
    const struct nv *ps = nv_get(doc, "ports");
    for (size_t i = 0; i < nv_len(ps); i++) {
        const struct nv *pt = nv_at(ps, i), *ad = nv_get(pt, "addr");
        char key[200];
        port_key(str(ad, "trtype"), str(ad, "traddr"), str(ad, "trsvcid"), key, sizeof key);
        int64_t pid = find_port(ports, key);
        const struct nv *sl = nv_get(pt, "subsystems");
        for (size_t k = 0; k < nv_len(sl); k++) {
            const char *nqn = nv_is(nv_at(sl, k), NV_STR) ? nv_at(sl, k)->u.s.p : "";
            int64_t sid = find(subs, "subnqn", nqn);
            char what[600];
            snprintf(what, sizeof what, "link of port %s to %s", key, nqn);
            if (pid != 0 && sid != 0 && linked(psl, "port", pid, sid)) {
                skip(p, what);
                continue;
            }
            struct nv *a = nv_map();
            set_ref(a, "port", pid, key, p);
            set_ref(a, "subsys", sid, nqn, p);
            add(p, what, "nvmet.port_subsys.create", a);
        }
    }
}

static char *slurp_path(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "[%s] ALL: %s: %s\n", nv_errname(errno), path, strerror(errno));
        return NULL;
    }
    char *buf = ctl_slurp(f);
    if (f != stdin) {
        fclose(f);
    }
    return buf;
}

int ctl_import(struct ctl *c, int argc, char **argv)
{
    struct plan p = {0};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            p.dry = true;
        } else if (path == NULL) {
            path = argv[i];
        } else {
            fprintf(stderr, "nvmetctl: import-nvmetcli [--dry-run] FILE\n");
            return EXIT_LOCAL;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "nvmetctl: import-nvmetcli [--dry-run] FILE\n");
        return EXIT_LOCAL;
    }
    char *text = slurp_path(path);
    struct nv *doc = text != NULL ? nv_from_json(text) : NULL;
    free(text);
    if (doc == NULL || !nv_is(doc, NV_MAP)) {
        fprintf(stderr, "[EINVAL] ALL: %s: not an nvmetcli saveconfig.json document\n", path);
        nv_free(doc);
        return EXIT_LOCAL;
    }
    /* phase 1: hosts and subsystems */
    struct nv *hosts = query(c, "host"), *subs = query(c, "subsys");
    int code = hosts != NULL && subs != NULL ? EXIT_OK : EXIT_LOCAL;
    if (code == EXIT_OK) {
        hosts_and_subsystems(doc, hosts, subs, &p);
        code = run(c, &p, "hosts and subsystems");
    }
    /* phase 2: namespaces and ports, by the ids the cluster gave */
    struct nv *nss = NULL, *ports = NULL;
    if (code == EXIT_OK || code == EXIT_REMOTE) {
        if (!p.dry) {
            nv_free(subs);
            subs = query(c, "subsys");
        }
        nss = query(c, "namespace");
        ports = query(c, "port");
        if (subs != NULL && nss != NULL && ports != NULL) {
            namespaces_and_ports(doc, subs, nss, ports, &p);
            int c2 = run(c, &p, "namespaces and ports");
            code = c2 != EXIT_OK ? c2 : code;
        } else {
            code = EXIT_LOCAL;
        }
    }
    /* phase 3: links */
    struct nv *hsl = NULL, *psl = NULL;
    if (code == EXIT_OK || code == EXIT_REMOTE) {
        if (!p.dry) {
            nv_free(hosts);
            nv_free(ports);
            hosts = query(c, "host");
            ports = query(c, "port");
        }
        hsl = query(c, "host_subsys");
        psl = query(c, "port_subsys");
        if (hosts != NULL && ports != NULL && hsl != NULL && psl != NULL) {
            links(doc, hosts, subs, ports, hsl, psl, &p);
            int c3 = run(c, &p, "links");
            code = c3 != EXIT_OK ? c3 : code;
        } else {
            code = EXIT_LOCAL;
        }
    }
    fprintf(stderr, "%s: %zu object(s) already present, left alone%s\n", path, p.skipped,
            p.dry ? " (dry run: nothing changed)" : "");
    nv_free(hsl);
    nv_free(psl);
    nv_free(nss);
    nv_free(ports);
    nv_free(hosts);
    nv_free(subs);
    nv_free(doc);
    return code;
}
