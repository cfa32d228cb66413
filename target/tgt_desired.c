/* The desired tree = f(state rows, view): the builder walks the rows in
 * the stage order of enum tgt_kind and renders every object's
 * attributes from the tables of tgt_attrs.c.
 *
 * Two port modes live side by side. IP takeover: ports/<index> listens on
 * the configured address (a VIP that moves to the active node), only the
 * active node links subsystems to it. ANA (failover licensed, effective
 * ANA on a subsystem): ports/<index + 5000> listens on each data node's
 * own address of that VIP, every data node links it, each node reports
 * its own ANA group (node_slot + 1) on every port as optimized (active) or
 * inaccessible, and each ANA port refers hosts to the same port on the
 * other data nodes. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt_int.h"

/* ---- the builder ------------------------------------------------------------- */

#define PU_PLAIN 0x1u /* rendered as ports/<index> (IP takeover) */
#define PU_ANA 0x2u   /* rendered as ports/<index + 5000> (ANA) */

struct builder {
    struct tgt_build b;
    struct ttree *tr;
    int err;            /* -ENOMEM */
    unsigned group;     /* this node's ANA group on every port, 0 = none */
    unsigned char *use; /* per port row (index in rows): PU_PLAIN | PU_ANA */
    bool partial;       /* tgt__build_rows: the ports are in the last tree */
};

/* The row an object was built from: an incremental pass finds it by that. */
static struct tobj *stamp(struct tobj *o, int64_t id)
{
    if (o != NULL) {
        o->src_id = id;
    }
    return o;
}

/* A name that can be one configfs directory (the kernel would also refuse
 * the others, but with a confusing ENOENT from the wrong parent). */
static bool dir_name_ok(const char *n)
{
    return n != NULL && *n != '\0' && strchr(n, '/') == NULL && strcmp(n, ".") != 0 &&
           strcmp(n, "..") != 0 && strlen(n) <= 255;
}

static void add_problem(struct builder *bd, const char *object, const char *msg)
{
    tgt__problem(&bd->tr->problems, object, "%s", msg);
}

/* An object with the attributes of its kind's table rendered from row. */
static struct tobj *make_obj(struct builder *bd, enum tgt_kind kind, const char *path,
                             const char *target, const struct nv *row, const struct nv *aux)
{
    struct tobj *o = tgt__obj_new(kind, path, target);
    if (o == NULL) {
        bd->err = -ENOMEM;
        return NULL;
    }
    for (const struct tgt_attr *d = tgt__attrs(kind); d->name != NULL; d++) {
        char val[1024];
        int rv = tgt__render_attr(&bd->b, d, row, aux, val, sizeof val);
        if (rv < 0) {
            char label[600], msg[1800];
            tgt__obj_label(kind, path, label, sizeof label);
            snprintf(msg, sizeof msg, "render %s: %s: %s", label, d->name, val);
            add_problem(bd, path, msg);
            tgt__obj_free(o);
            return NULL;
        }
        if (rv > 0 && tgt__obj_attr(o, d, val) < 0) {
            bd->err = -ENOMEM;
            tgt__obj_free(o);
            return NULL;
        }
    }
    return o;
}

static void add_obj(struct builder *bd, struct tobj *o)
{
    if (o == NULL) {
        return;
    }
    int rv = tgt__tree_add(bd->tr, o);
    if (rv == -ENOMEM) {
        bd->err = rv;
    }
    /* -EEXIST: a duplicate row (two equal links): one object is enough */
}

static void subsys_row(struct builder *bd, const struct nv *row)
{
    const char *nqn = nv_get_str(row, "subnqn");
    char path[512];
    snprintf(path, sizeof path, "subsystems/%s", nqn ? nqn : "");
    if (!dir_name_ok(nqn)) {
        char msg[600];
        snprintf(msg, sizeof msg, "render subsys %s: the NQN cannot be a configfs directory",
                 nqn ? nqn : "(null)");
        add_problem(bd, path, msg);
        return;
    }
    add_obj(bd, stamp(make_obj(bd, TK_SUBSYS, path, NULL, row, NULL), nv_get_int(row, "id", 0)));
}

static void host_row(struct builder *bd, const struct nv *row)
{
    const char *nqn = nv_get_str(row, "hostnqn");
    char path[512];
    snprintf(path, sizeof path, "hosts/%s", nqn ? nqn : "");
    if (!dir_name_ok(nqn)) {
        char msg[600];
        snprintf(msg, sizeof msg, "render host %s: the NQN cannot be a configfs directory",
                 nqn ? nqn : "(null)");
        add_problem(bd, path, msg);
        return;
    }
    add_obj(bd, stamp(make_obj(bd, TK_HOST, path, NULL, row, NULL), nv_get_int(row, "id", 0)));
}

/* RDMA ports exist in the state but are rendered only while global rdma
 * is on, as in TrueNAS. */
static bool port_rendered(const struct builder *bd, const struct nv *port)
{
    const char *tr = nv_get_str(port, "addr_trtype");
    if (tr != NULL && strcmp(tr, "RDMA") == 0) {
        return nv_get_bool(bd->b.rows->global, "rdma", false);
    }
    return port != NULL;
}

/* ---- ANA ------------------------------------------------------------------- */

bool tgt__subsys_ana(const struct tgt_build *b, const struct nv *subsys)
{
    if (!b->view->ha || subsys == NULL) {
        return false;
    }
    const struct nv *a = nv_get(subsys, "ana");
    if (nv_is(a, NV_BOOL)) {
        return a->u.b;
    }
    return nv_get_bool(b->rows->global, "ana", false);
}

unsigned tgt__ana_group(const struct tgt_view *v)
{
    unsigned g = v->node_slot + 1;
    return v->node_slot == 0 || v->node_slot > TGT_MAX_SLOTS || g > TGT_ANA_MAX_GRPID ? 0 : g;
}

/* Index of the row with this id in its table (rows ascend by id), or -1. */
static ptrdiff_t row_index(const struct tgt_rows *r, enum sm_table t, int64_t id)
{
    size_t lo = 0, hi = r->n[t];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t m = nv_get_int(r->row[t][mid], "id", 0);
        if (m == id) {
            return (ptrdiff_t)mid;
        }
        if (m < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* Which forms each port is rendered in. Not HA: IP takeover only. HA with
 * global ana on: every port is an ANA port, and the ports of subsystems
 * with ana=false are also plain ports; with global ana off: every port is
 * plain, and the ports of subsystems with ana=true are also ANA ports.
 * Both follow from: a port is ANA if global ana is on or a linked
 * subsystem has effective ANA, plain if global ana is off or a linked
 * subsystem has none. */
static int port_usage(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    size_t n = r->n[SM_PORT];
    bd->use = calloc(n ? n : 1, 1);
    if (bd->use == NULL) {
        return -ENOMEM;
    }
    bool ha = bd->b.view->ha, global = ha && nv_get_bool(r->global, "ana", false);
    for (size_t i = 0; i < n; i++) {
        bd->use[i] = global ? PU_ANA : PU_PLAIN;
    }
    for (size_t i = 0; ha && i < r->n[SM_PORT_SUBSYS]; i++) {
        const struct nv *ps = r->row[SM_PORT_SUBSYS][i];
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(ps, "subsys_id", 0));
        ptrdiff_t p = row_index(r, SM_PORT, nv_get_int(ps, "port_id", 0));
        if (s != NULL && p >= 0) {
            bd->use[p] |= tgt__subsys_ana(&bd->b, s) ? PU_ANA : PU_PLAIN;
        }
    }
    return 0;
}

static bool any_subsys_ana(const struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    for (size_t i = 0; i < r->n[SM_SUBSYS]; i++) {
        if (tgt__subsys_ana(&bd->b, r->row[SM_SUBSYS][i])) {
            return true;
        }
    }
    return false;
}

/* 4 or 6 with the address in buf, or 0 when s is not a plain IP address. */
static int parse_ip(const char *s, unsigned char buf[16])
{
    if (s == NULL) {
        return 0;
    }
    if (inet_pton(AF_INET, s, buf) == 1) {
        return 4;
    }
    return inet_pton(AF_INET6, s, buf) == 1 ? 6 : 0;
}

/* 0.0.0.0 or ::, in any spelling: listen on every address of the node. */
static bool is_wildcard(const char *traddr)
{
    unsigned char a[16] = {0};
    int fam = parse_ip(traddr, a);
    if (fam == 0) {
        return false;
    }
    for (int i = 0; i < (fam == 4 ? 4 : 16); i++) {
        if (a[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Equal addresses, also when IPv6 is spelled differently (fd00::1 and
 * fd00:0::1); anything that is not an IP address compares as text. */
static bool same_address(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    if (a == NULL || b == NULL) {
        return false;
    }
    if (strcmp(a, b) == 0) {
        return true;
    }
    int fa = parse_ip(a, x), fb = parse_ip(b, y);
    return fa != 0 && fa == fb && memcmp(x, y, fa == 4 ? 4 : 16) == 0;
}

/* The address node listens on for port's VIP: the entry of node in the
 * node_addresses of the failover VIP whose address is the port's traddr.
 * A wildcard traddr is every node's own wildcard. 0 with *out set, or
 * -ENOENT (no such VIP) / -ENXIO (the VIP has no address for node), with
 * why in msg. */
static int node_address(const struct builder *bd, const struct nv *port, uint64_t node,
                        const char **out, char *msg, size_t len)
{
    const char *traddr = nv_get_str(port, "addr_traddr");
    if (traddr != NULL && is_wildcard(traddr)) {
        *out = traddr;
        return 0;
    }
    const struct nv *vips = bd->b.rows->vips;
    for (size_t i = 0; i < nv_len(vips); i++) {
        const struct nv *vip = nv_at(vips, i);
        if (!same_address(nv_get_str(vip, "address"), traddr)) {
            continue;
        }
        char key[24];
        snprintf(key, sizeof key, "%" PRIu64, node);
        const char *a = nv_get_str(nv_get(vip, "node_addresses"), key);
        if (a != NULL && *a != '\0') {
            *out = a;
            return 0;
        }
        snprintf(msg, len, "failover vips: VIP %s has no node_addresses entry for node %" PRIu64,
                 traddr, node);
        return -ENXIO;
    }
    snprintf(msg, len, "failover vips: no VIP %s", traddr ? traddr : "(none)");
    return -ENOENT;
}

/* The port row as node sees it: the same row with addr_traddr replaced
 * (owned; NULL = out of memory). */
static struct nv *port_as(struct builder *bd, const struct nv *port, const char *traddr)
{
    struct nv *c = nv_copy(port);
    if (c == NULL || nv_set_str(c, "addr_traddr", traddr) < 0) {
        nv_free(c);
        bd->err = -ENOMEM;
        return NULL;
    }
    return c;
}

static void port_path(char *buf, size_t len, const struct nv *port, bool ana)
{
    snprintf(buf, len, "ports/%" PRId64,
             nv_get_int(port, "index", 0) + (ana ? TGT_ANA_PORT_OFFSET : 0));
}

/* ports/<index + 5000> on this node's own address of the port's VIP. A
 * missing address is this port's problem only. */
static struct tobj *make_ana_port(struct builder *bd, const struct nv *row, const char *path)
{
    const char *addr = NULL;
    char why[400];
    if (node_address(bd, row, bd->b.view->node_id, &addr, why, sizeof why) < 0) {
        char msg[800];
        const char *traddr = nv_get_str(row, "addr_traddr");
        snprintf(msg, sizeof msg,
                 "render port %" PRId64 ": ANA needs this node's own address for %s (%s)",
                 nv_get_int(row, "index", 0), traddr ? traddr : "(none)", why);
        add_problem(bd, path, msg);
        return NULL;
    }
    struct nv *as = port_as(bd, row, addr);
    struct tobj *o = as != NULL ? make_obj(bd, TK_PORT, path, NULL, as, NULL) : NULL;
    nv_free(as);
    return o;
}

/* ports/<p>/ana_groups/<node_slot + 1> on a rendered port while ANA is
 * active here. The kernel's default group 1 is never ours. */
static void build_group(struct builder *bd, const struct nv *row, const char *port)
{
    if (bd->group == 0 || tgt__tree_find(bd->tr, port) == NULL) {
        return; /* no ANA here, or the port could not be rendered */
    }
    char path[96];
    snprintf(path, sizeof path, "%s/ana_groups/%u", port, bd->group);
    add_obj(bd, make_obj(bd, TK_ANAGRP, path, NULL, row, NULL));
}

static void build_ports(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    for (size_t i = 0; i < r->n[SM_PORT]; i++) {
        const struct nv *row = r->row[SM_PORT][i];
        if (!port_rendered(bd, row)) {
            continue;
        }
        for (int ana = 0; ana <= 1; ana++) {
            if (!(bd->use[i] & (ana ? PU_ANA : PU_PLAIN))) {
                continue;
            }
            char path[64];
            port_path(path, sizeof path, row, ana);
            add_obj(bd, ana ? make_ana_port(bd, row, path)
                            : make_obj(bd, TK_PORT, path, NULL, row, NULL));
            build_group(bd, row, path);
        }
    }
}

static void add_referral(struct builder *bd, const char *src, const char *name,
                         const struct nv *dst)
{
    char path[160];
    snprintf(path, sizeof path, "%s/referrals/%s", src, name);
    add_obj(bd, make_obj(bd, TK_REFERRAL, path, NULL, dst, NULL));
}

/* Discovery referrals group ports by (trtype, adrfam); -1 = none. */
static int referral_group(const struct nv *port)
{
    static const char *const groups[][2] = {
        {"RDMA", "IPV4"}, {"RDMA", "IPV6"}, {"FC", "FC"}, {"TCP", "IPV4"}, {"TCP", "IPV6"}};
    const char *t = nv_get_str(port, "addr_trtype"), *a = nv_get_str(port, "addr_adrfam");
    for (int g = 0; t != NULL && a != NULL && g < (int)(sizeof groups / sizeof groups[0]); g++) {
        if (strcmp(t, groups[g][0]) == 0 && strcmp(a, groups[g][1]) == 0) {
            return g;
        }
    }
    return -1;
}

/* Referrals of one ANA port (src, rendered as srcpath):
 *   - to the same port on every other data node, at that node's own
 *     address, named "<index + 5000>-<node id>" (unique per peer; the
 *     names of the cross-port referrals below are plain numbers). A
 *     wildcard port has no address to refer a host to: none;
 *   - with xport_referral, to the other ANA ports of its (trtype, adrfam)
 *     group at this node's own addresses, named "<index + 5000>". */
static void build_ana_referrals(struct builder *bd, const struct nv *src, const char *srcpath,
                                bool xport)
{
    const struct tgt_rows *r = bd->b.rows;
    const struct tgt_view *v = bd->b.view;
    const char *traddr = nv_get_str(src, "addr_traddr");
    int64_t sidx = nv_get_int(src, "index", 0) + TGT_ANA_PORT_OFFSET;
    for (unsigned k = 0; !is_wildcard(traddr) && k < v->n_slots && k < TGT_MAX_SLOTS; k++) {
        uint64_t peer = v->slot_ids[k];
        if (peer == 0 || peer == v->node_id) {
            continue;
        }
        char name[64], why[400];
        snprintf(name, sizeof name, "%" PRId64 "-%" PRIu64, sidx, peer);
        const char *addr = NULL;
        if (node_address(bd, src, peer, &addr, why, sizeof why) < 0) {
            char path[160], msg[800];
            snprintf(path, sizeof path, "%s/referrals/%s", srcpath, name);
            snprintf(msg, sizeof msg,
                     "render port %" PRId64 " referral %s: ANA needs node %" PRIu64
                     "'s address for %s (%s)",
                     sidx, name, peer, traddr ? traddr : "(none)", why);
            add_problem(bd, path, msg);
            continue;
        }
        struct nv *as = port_as(bd, src, addr);
        if (as != NULL) {
            add_referral(bd, srcpath, name, as);
        }
        nv_free(as);
    }
    int g = referral_group(src);
    for (size_t j = 0; xport && g >= 0 && j < r->n[SM_PORT]; j++) {
        const struct nv *dst = r->row[SM_PORT][j];
        char dpath[64], why[400];
        port_path(dpath, sizeof dpath, dst, true);
        const char *addr = NULL;
        if (dst == src || !(bd->use[j] & PU_ANA) || !port_rendered(bd, dst) ||
            referral_group(dst) != g || tgt__tree_find(bd->tr, dpath) == NULL ||
            node_address(bd, dst, v->node_id, &addr, why, sizeof why) < 0) {
            continue;
        }
        struct nv *as = port_as(bd, dst, addr);
        if (as != NULL) {
            add_referral(bd, srcpath, dpath + strlen("ports/"), as);
        }
        nv_free(as);
    }
}

/* Cross-port discovery referrals (with xport_referral, as TrueNAS renders them): within
 * each (trtype, adrfam) group, every ordered pair of distinct plain ports,
 * named by the destination's index; and the referrals of the ANA ports. */
static void build_referrals(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    bool xport = nv_get_bool(r->global, "xport_referral", true);
    for (size_t i = 0; i < r->n[SM_PORT]; i++) {
        const struct nv *src = r->row[SM_PORT][i];
        if (!port_rendered(bd, src)) {
            continue;
        }
        char spath[64];
        port_path(spath, sizeof spath, src, true);
        if ((bd->use[i] & PU_ANA) && tgt__tree_find(bd->tr, spath) != NULL) {
            build_ana_referrals(bd, src, spath, xport);
        }
        int g = referral_group(src);
        if (!xport || g < 0 || !(bd->use[i] & PU_PLAIN)) {
            continue;
        }
        port_path(spath, sizeof spath, src, false);
        for (size_t j = 0; j < r->n[SM_PORT]; j++) {
            const struct nv *dst = r->row[SM_PORT][j];
            if (j == i || !(bd->use[j] & PU_PLAIN) || !port_rendered(bd, dst) ||
                referral_group(dst) != g) {
                continue;
            }
            char name[32];
            snprintf(name, sizeof name, "%" PRId64, nv_get_int(dst, "index", 0));
            add_referral(bd, spath, name, dst);
        }
    }
}

/* Access lists matter only while allow_any_host is off; the kernel
 * refuses links while it is on (EINVAL). */
static void host_link_row(struct builder *bd, const struct nv *row)
{
    const struct tgt_rows *r = bd->b.rows;
    const struct nv *h = tgt__row_by_id(r, SM_HOST, nv_get_int(row, "host_id", 0));
    const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
    const char *hn = nv_get_str(h, "hostnqn"), *sn = nv_get_str(s, "subnqn");
    if (!dir_name_ok(hn) || !dir_name_ok(sn) || nv_get_bool(s, "allow_any_host", false)) {
        return;
    }
    char path[1024], target[512];
    snprintf(path, sizeof path, "subsystems/%s/allowed_hosts/%s", sn, hn);
    snprintf(target, sizeof target, "hosts/%s", hn);
    add_obj(bd, stamp(make_obj(bd, TK_HOSTLINK, path, target, row, NULL),
                      nv_get_int(row, "id", 0)));
}

/* The kernel starts a port listening at its first subsystem link: only
 * enabled ports get links. A subsystem with effective ANA is linked to the
 * ANA form of the port on every data node; the others to the plain form,
 * and only on the active node (IP takeover: the VIPs and their ports live
 * there). */
static void port_link_row(struct builder *bd, const struct nv *row)
{
    const struct tgt_rows *r = bd->b.rows;
    const struct nv *p = tgt__row_by_id(r, SM_PORT, nv_get_int(row, "port_id", 0));
    const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
    const char *sn = nv_get_str(s, "subnqn");
    if (p == NULL || !dir_name_ok(sn) || !nv_get_bool(p, "enabled", false) ||
        !port_rendered(bd, p)) {
        return;
    }
    bool ana = tgt__subsys_ana(&bd->b, s);
    char port[64], path[600], target[512];
    port_path(port, sizeof port, p, ana);
    bool have_port = tgt__tree_find(bd->tr, port) != NULL ||
                     (bd->partial && bd->b.t->last != NULL &&
                      tgt__tree_find(bd->b.t->last, port) != NULL);
    if ((!ana && !bd->b.view->active) || (ana && !have_port)) {
        return; /* a standby; or an ANA port without an address (reported) */
    }
    snprintf(path, sizeof path, "%s/subsystems/%s", port, sn);
    snprintf(target, sizeof target, "subsystems/%s", sn);
    add_obj(bd, stamp(make_obj(bd, TK_PORTLINK, path, target, row, NULL),
                      nv_get_int(row, "id", 0)));
}

static void ns_row(struct builder *bd, const struct nv *row)
{
    const struct tgt_rows *r = bd->b.rows;
    const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
    const char *sn = nv_get_str(s, "subnqn");
    int64_t nsid = nv_get_int(row, "nsid", 0);
    if (!dir_name_ok(sn) || nsid <= 0) {
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "subsystems/%s/namespaces/%" PRId64, sn, nsid);
    struct tobj *o = stamp(make_obj(bd, TK_NS, path, NULL, row, s), nv_get_int(row, "id", 0));
    const char *type = nv_get_str(row, "device_type");
    if (o != NULL && type != NULL && strcmp(type, "FILE") == 0) {
        o->backing = strdup(nv_get_str(row, "device_path"));
        o->filesize = nv_get_int(row, "filesize", -1);
        if (o->backing == NULL) {
            bd->err = -ENOMEM;
        }
    }
    add_obj(bd, o);
}

/* One table's objects in row (id) order. */
static void build_table(struct builder *bd, enum sm_table t,
                        void (*one)(struct builder *bd, const struct nv *row))
{
    for (size_t i = 0; i < bd->b.rows->n[t]; i++) {
        one(bd, bd->b.rows->row[t][i]);
    }
}

/* The builder of one row of the tables an incremental pass renders. */
static void (*row_builder(enum sm_table t))(struct builder *, const struct nv *)
{
    switch (t) {
    case SM_SUBSYS:
        return subsys_row;
    case SM_HOST:
        return host_row;
    case SM_HOST_SUBSYS:
        return host_link_row;
    case SM_PORT_SUBSYS:
        return port_link_row;
    case SM_NAMESPACE:
        return ns_row;
    default:
        return NULL;
    }
}

enum tgt_kind tgt__row_kind(enum sm_table t)
{
    static const enum tgt_kind kinds[SM_TABLE_COUNT] = {
        [SM_SUBSYS] = TK_SUBSYS,         [SM_NAMESPACE] = TK_NS,
        [SM_PORT] = 0,                   [SM_HOST] = TK_HOST,
        [SM_HOST_SUBSYS] = TK_HOSTLINK, [SM_PORT_SUBSYS] = TK_PORTLINK};
    return (int)t >= 0 && t < SM_TABLE_COUNT ? kinds[t] : 0;
}

int tgt__row_kind_table(enum tgt_kind k)
{
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        if (tgt__row_kind((enum sm_table)t) == k && k != 0) {
            return t;
        }
    }
    return -1;
}

/* global.enabled=false and the witness desire an empty nvmet/ */
static bool renders_nothing(const struct tgt_rows *r, const struct tgt_view *v)
{
    return r->global == NULL || !nv_get_bool(r->global, "enabled", false) || v->empty;
}

struct ttree *tgt__build(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v)
{
    struct builder bd = {.b = {.t = t, .rows = r, .view = v}, .tr = tgt__tree_new()};
    if (bd.tr == NULL || renders_nothing(r, v)) {
        return bd.tr;
    }
    /* ANA is active on this node while some subsystem has effective ANA:
     * then every port carries this node's group */
    bd.group = any_subsys_ana(&bd) ? tgt__ana_group(v) : 0;
    bd.tr->group = bd.group;
    if (port_usage(&bd) < 0) {
        tgt__tree_free(bd.tr);
        return NULL;
    }
    build_table(&bd, SM_SUBSYS, subsys_row);
    build_table(&bd, SM_HOST, host_row);
    build_ports(&bd);
    build_referrals(&bd);
    build_table(&bd, SM_HOST_SUBSYS, host_link_row);
    build_table(&bd, SM_PORT_SUBSYS, port_link_row);
    build_table(&bd, SM_NAMESPACE, ns_row);
    free(bd.use);
    if (bd.err < 0) {
        tgt__tree_free(bd.tr);
        return NULL;
    }
    return bd.tr;
}

int tgt__build_rows(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                    const struct tgt_ref *refs, size_t n, struct ttree *tr)
{
    struct builder bd = {
        .b = {.t = t, .rows = r, .view = v}, .tr = tr, .group = t->group, .partial = true};
    tr->group = t->group;
    if (renders_nothing(r, v)) {
        return 0;
    }
    for (size_t i = 0; i < n && bd.err == 0; i++) {
        void (*one)(struct builder *, const struct nv *) = row_builder(refs[i].table);
        const struct nv *row = tgt__row_by_id(r, refs[i].table, refs[i].id);
        if (one != NULL && row != NULL) {
            one(&bd, row);
        }
    }
    return bd.err;
}

bool tgt__ha_added_ok(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                      enum sm_table table, int64_t id)
{
    const struct tgt_build b = {.t = t, .rows = r, .view = v};
    if (table == SM_SUBSYS) {
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, id);
        return s != NULL && (!tgt__subsys_ana(&b, s) || t->group != 0);
    }
    if (table != SM_PORT_SUBSYS || t->last == NULL) {
        return false;
    }
    const struct nv *link = tgt__row_by_id(r, SM_PORT_SUBSYS, id);
    const struct nv *p = tgt__row_by_id(r, SM_PORT, nv_get_int(link, "port_id", 0));
    const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(link, "subsys_id", 0));
    if (link == NULL || p == NULL || s == NULL) {
        return false;
    }
    char path[64];
    port_path(path, sizeof path, p, tgt__subsys_ana(&b, s));
    return tgt__tree_find(t->last, path) != NULL;
}

/* ---- rows ------------------------------------------------------------------- */

const struct nv *tgt__row_by_id(const struct tgt_rows *r, enum sm_table t, int64_t id)
{
    if (r->by_id != NULL) {
        return r->by_id(r->src, t, id);
    }
    ptrdiff_t i = row_index(r, t, id);
    return i < 0 ? NULL : r->row[t][i];
}

ssize_t tgt__rows_with(const struct tgt_rows *r, enum sm_table t, const char *col, int64_t id,
                       int64_t **ids)
{
    if (r->with != NULL) {
        return r->with(r->src, t, col, id, ids);
    }
    *ids = malloc((r->n[t] ? r->n[t] : 1) * sizeof **ids);
    if (*ids == NULL) {
        return -ENOMEM;
    }
    ssize_t n = 0;
    for (size_t i = 0; i < r->n[t]; i++) {
        if (nv_get_int(r->row[t][i], col, -1) == id) {
            (*ids)[n++] = nv_get_int(r->row[t][i], "id", 0);
        }
    }
    return n;
}
