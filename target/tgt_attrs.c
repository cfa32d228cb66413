/* The attribute descriptor tables: per object kind, each configfs
 * attribute the renderer manages with how its value is formatted from the
 * row, when it is written, which kernel feature it needs, how a live value
 * compares, and which kernel lock applies (the TrueNAS renderer's order
 * and formats, the kernel's configfs rules). Adding an attribute is adding
 * a row here. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nv.h"
#include "tgt_int.h"

#ifndef NVMET_HA_VERSION
#define NVMET_HA_VERSION "0.0.0"
#endif

/* ---- value maps: API enum value -> the string configfs accepts ------- */

static const struct tgt_map trtype_map[] = {
    {"TCP", "tcp"}, {"RDMA", "rdma"}, {"FC", "fc"}, {"LOOP", "loop"}, {NULL, NULL}};
static const struct tgt_map adrfam_map[] = {{"IPV4", "ipv4"}, {"IPV6", "ipv6"}, {"FC", "fc"},
                                            {"IB", "ib"},     {"LOOP", "loop"}, {NULL, NULL}};
static const struct tgt_map dhgroup_map[] = {{"2048-BIT", "ffdhe2048"}, {"3072-BIT", "ffdhe3072"},
                                             {"4096-BIT", "ffdhe4096"}, {"6144-BIT", "ffdhe6144"},
                                             {"8192-BIT", "ffdhe8192"}, {NULL, NULL}};
static const struct tgt_map hash_map[] = {{"SHA-256", "hmac(sha256)"},
                                          {"SHA-384", "hmac(sha384)"},
                                          {"SHA-512", "hmac(sha512)"},
                                          {NULL, NULL}};

static const char *map_value(const struct tgt_map *m, const char *from)
{
    for (; m->from != NULL; m++) {
        if (strcasecmp(m->from, from) == 0) {
            return m->to;
        }
    }
    return NULL;
}

/* ---- formatters --------------------------------------------------------- */

static int fn_model(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                    char *out, size_t len)
{
    (void)row, (void)aux;
    snprintf(out, len, "%s", b->t->model != NULL ? b->t->model : "nvmet-ha");
    return 1;
}

static int fn_firmware(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                       char *out, size_t len)
{
    (void)row, (void)aux;
    snprintf(out, len, "%s", b->t->firmware != NULL ? b->t->firmware : NVMET_HA_VERSION);
    return 1;
}

/* The OUI is stored as text ("0x0a1b2c" or "0a1b2c"): always hex. The
 * kernel parses with base 0 (a bare "012345" would be octal) and shows
 * "0x%06x", so write that form. */
static int fn_oui(const struct tgt_build *b, const struct nv *row, const struct nv *aux, char *out,
                  size_t len)
{
    (void)b, (void)aux;
    const struct nv *v = nv_get(row, "ieee_oui");
    unsigned long long x;
    if (nv_is(v, NV_INT)) {
        x = (unsigned long long)v->u.i;
    } else if (nv_is(v, NV_STR) && v->u.s.len > 0) {
        const char *p = v->u.s.p;
        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
            p += 2;
        }
        char *end;
        errno = 0;
        x = strtoull(p, &end, 16);
        if (errno != 0 || *end != '\0' || end == p) {
            snprintf(out, len, "ieee_oui %s is not a hex number", v->u.s.p);
            return -EINVAL;
        }
    } else {
        return 0;
    }
    snprintf(out, len, "0x%06llx", x);
    return 1;
}

/* Controller ids are split per node slot so that one subsystem NQN can be
 * multipathed across the data nodes without two controllers of the
 * subsystem sharing an id (a host keys its paths by cntlid). The kernel
 * allows 1..65519 (NVME_CNTLID_MAX). Two slots keep the fixed split
 * (slot 1: 1..31999, slot 2: 32000..65519); n_slots > 2 split 1..65519
 * evenly: size = 65519 / n_slots, slot k gets (k-1)*size+1 .. k*size and
 * the last slot also takes the remainder up to 65519. No slot (0), or a
 * slot beyond n_slots: nothing is rendered. Both bounds are rendered so
 * that a node changing its slot ends up with a valid range. */
static bool cntlid_range(const struct tgt_view *v, unsigned *lo, unsigned *hi)
{
    const unsigned max = 65519;
    unsigned k = v->node_slot, n = v->n_slots;
    if (k == 0) {
        return false;
    }
    if (n <= 2) {
        if (k > 2) {
            return false;
        }
        *lo = k == 1 ? 1 : 32000;
        *hi = k == 1 ? 31999 : max;
        return true;
    }
    if (k > n) {
        return false;
    }
    unsigned size = max / n;
    *lo = (k - 1) * size + 1;
    *hi = k == n ? max : k * size;
    return true;
}

static int fn_cntlid_min(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                         char *out, size_t len)
{
    (void)row, (void)aux;
    unsigned lo, hi;
    if (!cntlid_range(b->view, &lo, &hi)) {
        return 0;
    }
    snprintf(out, len, "%u", lo);
    return 1;
}

static int fn_cntlid_max(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                         char *out, size_t len)
{
    (void)row, (void)aux;
    unsigned lo, hi;
    if (!cntlid_range(b->view, &lo, &hi)) {
        return 0;
    }
    snprintf(out, len, "%u", hi);
    return 1;
}

static int fn_trsvcid(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                      char *out, size_t len)
{
    (void)b, (void)aux;
    const struct nv *v = nv_get(row, "addr_trsvcid");
    if (nv_is(v, NV_INT)) {
        snprintf(out, len, "%" PRId64, v->u.i);
    } else if (nv_is(v, NV_STR)) {
        snprintf(out, len, "%s", v->u.s.p);
    } else {
        snprintf(out, len, "none"); /* FC has no service id */
    }
    return 1;
}

static void lower_copy(char *out, size_t len, const char *in)
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < len; i++) {
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[i] = '\0';
}

/* The kernel prints both in the lowercase UUID layout (%pUb). */
static int fn_uuid(const struct tgt_build *b, const struct nv *row, const char *key, char *out,
                   size_t len)
{
    (void)b;
    const char *v = nv_get_str(row, key);
    if (v == NULL || *v == '\0') {
        snprintf(out, len, "namespace has no %s", key);
        return -EINVAL;
    }
    char hex[33];
    size_t n = 0;
    for (const char *p = v; *p != '\0'; p++) {
        if (isxdigit((unsigned char)*p) && n < 32) {
            hex[n++] = (char)tolower((unsigned char)*p);
        } else if (*p != '-' && *p != ':') {
            n = 99;
            break;
        }
    }
    if (n != 32) {
        lower_copy(out, len, v); /* not a UUID: the kernel will say so */
        return 1;
    }
    hex[32] = '\0';
    snprintf(out, len, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return 1;
}

static int fn_device_uuid(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                          char *out, size_t len)
{
    (void)aux;
    return fn_uuid(b, row, "device_uuid", out, len);
}

static int fn_device_nguid(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                           char *out, size_t len)
{
    (void)aux;
    return fn_uuid(b, row, "device_nguid", out, len);
}

/* ZVOL "zvol/pool/vol" -> "/dev/zvol/pool/vol" with spaces as '+' (the
 * udev name, as TrueNAS renders it); FILE and BLOCK paths as given. */
static int fn_device_path(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                          char *out, size_t len)
{
    (void)b, (void)aux;
    const char *type = nv_get_str(row, "device_type");
    const char *p = nv_get_str(row, "device_path");
    if (type == NULL || p == NULL || *p == '\0') {
        snprintf(out, len, "namespace has no device_path");
        return -EINVAL;
    }
    if (strcmp(type, "ZVOL") == 0) {
        if (strncmp(p, "zvol/", 5) != 0) {
            snprintf(out, len, "ZVOL device_path must start with \"zvol/\": %s", p);
            return -EINVAL;
        }
        int n = snprintf(out, len, "/dev/%s", p);
        if (n < 0 || (size_t)n >= len) {
            snprintf(out, len, "device_path too long");
            return -EINVAL;
        }
        for (char *c = out; *c != '\0'; c++) {
            if (*c == ' ') {
                *c = '+';
            }
        }
        return 1;
    }
    snprintf(out, len, "%s", p);
    return 1;
}

static int fn_buffered_io(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                          char *out, size_t len)
{
    (void)b, (void)aux;
    const char *type = nv_get_str(row, "device_type");
    snprintf(out, len, "%s", type != NULL && strcmp(type, "FILE") == 0 ? "1" : "0");
    return 1;
}

static int fn_one(const struct tgt_build *b, const struct nv *row, const struct nv *aux, char *out,
                  size_t len)
{
    (void)b, (void)row, (void)aux;
    snprintf(out, len, "1");
    return 1;
}

/* ANA group of a namespace (aux: its subsystem row): this node's group
 * for subsystems with effective ANA, else the kernel's default group 1.
 * The kernel takes any id 1..128 here without checking that a port has
 * that group; a namespace whose group no port has is reported
 * inaccessible on every port. So the group is made first (ports and
 * their groups come before namespaces in the stage order) and the
 * namespace is back in group 1 before the group goes (updates run before
 * removals). */
static int fn_ana_grpid(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                        char *out, size_t len)
{
    (void)row;
    unsigned g = tgt__ana_group(b->view);
    snprintf(out, len, "%u", g != 0 && tgt__subsys_ana(b, aux) ? g : 1u);
    return 1;
}

/* Namespaces serve I/O on a node that owns the data path: the single node
 * or the active controller. A standby keeps them configured with enable=0
 * (as TrueNAS's BACKUP does), except in subsystems with effective ANA (aux: the
 * subsystem row): there the standby's ANA group is inaccessible, which
 * already refuses I/O, and an enabled namespace keeps the path present on
 * the host, so a Linux host fails over on the ANA change event alone,
 * without rescanning namespaces. */
static int fn_ns_enable(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                        char *out, size_t len)
{
    bool serving = b->view->active || tgt__subsys_ana(b, aux);
    bool on = nv_get_bool(row, "enabled", false) && serving;
    snprintf(out, len, "%s", on ? "1" : "0");
    return 1;
}

/* This node's ANA group on every port: optimized on the active node,
 * inaccessible on the others (hosts keep the path and wait for the
 * change). */
static int fn_ana_state(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                        char *out, size_t len)
{
    (void)row, (void)aux;
    snprintf(out, len, "%s", b->view->active ? "optimized" : "inaccessible");
    return 1;
}

/* ---- tables --------------------------------------------------------------- */

#define A_END                                                                     \
    {                                                                             \
        NULL, TA_STR, NULL, NULL, NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL, 0, 0 \
    }

/* TrueNAS's write order; identity attributes before any port link */
static const struct tgt_attr subsys_attrs[] = {
    {"attr_serial", TA_STR, "serial", NULL, NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_PADDED, TA_LOCK_IDENTITY},
    {"attr_allow_any_host", TA_BOOL, "allow_any_host", "0", NULL, NULL, TA_ALWAYS, TA_NEED_FILE,
     NULL, TA_CMP_TEXT, TA_LOCK_NONE},
    {"attr_pi_enable", TA_BOOL, "pi_enable", "0", NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_NONE},
    {"attr_qid_max", TA_INT, "qid_max", NULL, NULL, NULL, TA_IF_SET, TA_NEED_FILE, NULL, TA_CMP_NUM,
     TA_LOCK_NONE},
    {"attr_ieee_oui", TA_FN, "ieee_oui", NULL, NULL, fn_oui, TA_IF_SET, TA_REPORT, "ieee_oui",
     TA_CMP_NUM, TA_LOCK_IDENTITY},
    {"attr_cntlid_min", TA_FN, NULL, NULL, NULL, fn_cntlid_min, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_NUM, TA_LOCK_NONE},
    {"attr_cntlid_max", TA_FN, NULL, NULL, NULL, fn_cntlid_max, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_NUM, TA_LOCK_NONE},
    {"attr_model", TA_FN, NULL, NULL, NULL, fn_model, TA_ALWAYS, TA_OPTIONAL, NULL, TA_CMP_TEXT,
     TA_LOCK_IDENTITY},
    {"attr_firmware", TA_FN, NULL, NULL, NULL, fn_firmware, TA_ALWAYS, TA_OPTIONAL, "firmware",
     TA_CMP_TEXT, TA_LOCK_IDENTITY},
    A_END,
};

/* a key is "" (written as "\n") when the host has none */
static const struct tgt_attr host_attrs[] = {
    {"dhchap_key", TA_STR, "dhchap_key", "", NULL, NULL, TA_ALWAYS, TA_REPORT, "dhchap",
     TA_CMP_TEXT, TA_LOCK_NONE},
    {"dhchap_ctrl_key", TA_STR, "dhchap_ctrl_key", "", NULL, NULL, TA_ALWAYS, TA_REPORT, "dhchap",
     TA_CMP_TEXT, TA_LOCK_NONE},
    {"dhchap_dhgroup", TA_MAP, "dhchap_dhgroup", "null", dhgroup_map, NULL, TA_ALWAYS, TA_REPORT,
     "dhchap", TA_CMP_TEXT, TA_LOCK_NONE},
    {"dhchap_hash", TA_MAP, "dhchap_hash", "hmac(sha256)", hash_map, NULL, TA_ALWAYS, TA_REPORT,
     "dhchap", TA_CMP_TEXT, TA_LOCK_NONE},
    A_END,
};

/* TrueNAS's write order; addr_trtype first: writing it resets the tsas */
static const struct tgt_attr port_attrs[] = {
    {"addr_trtype", TA_MAP, "addr_trtype", NULL, trtype_map, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_LINKED},
    {"addr_trsvcid", TA_FN, "addr_trsvcid", NULL, NULL, fn_trsvcid, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_LINKED},
    {"addr_traddr", TA_STR, "addr_traddr", "", NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_LINKED},
    {"addr_adrfam", TA_MAP, "addr_adrfam", NULL, adrfam_map, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_LINKED},
    {"param_inline_data_size", TA_INT, "inline_data_size", NULL, NULL, NULL, TA_IF_SET,
     TA_NEED_FILE, NULL, TA_CMP_NUM, TA_LOCK_LINKED},
    {"param_max_queue_size", TA_INT, "max_queue_size", NULL, NULL, NULL, TA_IF_SET, TA_REPORT,
     "max_queue_size", TA_CMP_NUM, TA_LOCK_LINKED},
    {"param_pi_enable", TA_BOOL, "pi_enable", "0", NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_LINKED},
    A_END,
};

/* the destination port's address, then enable (addr_* is EACCES while
 * the referral is enabled) */
static const struct tgt_attr referral_attrs[] = {
    {"addr_trtype", TA_MAP, "addr_trtype", NULL, trtype_map, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"addr_adrfam", TA_MAP, "addr_adrfam", NULL, adrfam_map, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"addr_traddr", TA_STR, "addr_traddr", "", NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"addr_trsvcid", TA_FN, "addr_trsvcid", NULL, NULL, fn_trsvcid, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"enable", TA_FN, NULL, NULL, NULL, fn_one, TA_ALWAYS, TA_NEED_FILE, NULL, TA_CMP_TEXT,
     TA_LOCK_ENABLE},
    A_END,
};

/* device_path/uuid/nguid (EBUSY) and buffered_io/resv_enable (EINVAL)
 * only while enable=0, so enable is written last */
static const struct tgt_attr ns_attrs[] = {
    {"device_uuid", TA_FN, "device_uuid", NULL, NULL, fn_device_uuid, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_UUID, TA_LOCK_ENABLED},
    {"device_nguid", TA_FN, "device_nguid", NULL, NULL, fn_device_nguid, TA_ALWAYS, TA_NEED_FILE,
     NULL, TA_CMP_UUID, TA_LOCK_ENABLED},
    {"device_path", TA_FN, "device_path", NULL, NULL, fn_device_path, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"buffered_io", TA_FN, "device_type", NULL, NULL, fn_buffered_io, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"resv_enable", TA_FN, NULL, NULL, NULL, fn_one, TA_ALWAYS, TA_OPTIONAL, "resv_enable",
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"ana_grpid", TA_FN, NULL, NULL, NULL, fn_ana_grpid, TA_ALWAYS, TA_NEED_FILE, NULL, TA_CMP_NUM,
     TA_LOCK_NONE},
    {"enable", TA_FN, "enabled", NULL, NULL, fn_ns_enable, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLE},
    A_END,
};

/* ports/<p>/ana_groups/<g> */
static const struct tgt_attr anagrp_attrs[] = {
    {"ana_state", TA_FN, NULL, NULL, NULL, fn_ana_state, TA_ALWAYS, TA_NEED_FILE, NULL, TA_CMP_TEXT,
     TA_LOCK_NONE},
    A_END,
};

static const struct tgt_attr no_attrs[] = {A_END};

const struct tgt_attr *tgt__attrs(enum tgt_kind kind)
{
    switch (kind) {
        case TK_SUBSYS:
            return subsys_attrs;
        case TK_HOST:
            return host_attrs;
        case TK_PORT:
            return port_attrs;
        case TK_ANAGRP:
            return anagrp_attrs;
        case TK_REFERRAL:
            return referral_attrs;
        case TK_NS:
            return ns_attrs;
        default:
            return no_attrs;
    }
}

/* ---- comparison ------------------------------------------------------------ */

static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    return n;
}

static bool uuid_same(const char *a, const char *b)
{
    for (;;) {
        while (*a == '-' || *a == ':') {
            a++;
        }
        while (*b == '-' || *b == ':') {
            b++;
        }
        if (*a == '\0' || *b == '\0' || isspace((unsigned char)*a) || isspace((unsigned char)*b)) {
            return (*a == '\0' || isspace((unsigned char)*a)) &&
                   (*b == '\0' || isspace((unsigned char)*b));
        }
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) {
            return false;
        }
        a++, b++;
    }
}

static bool num_parse(const char *s, long long *out)
{
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 0);
    while (isspace((unsigned char)*end)) {
        end++;
    }
    return errno == 0 && end != s && *end == '\0';
}

bool tgt__attr_same(const struct tgt_attr *d, const char *live, const char *want)
{
    size_t ll = trimmed_len(live), wl = trimmed_len(want);
    switch (d->cmp) {
        case TA_CMP_UUID:
            return uuid_same(live, want);
        case TA_CMP_NUM: {
            long long a, b;
            if (num_parse(live, &a) && num_parse(want, &b)) {
                return a == b;
            }
            break;
        }
        case TA_CMP_PADDED: /* attr_serial reads back space padded to 20 */
        case TA_CMP_TEXT:
            break;
    }
    return ll == wl && memcmp(live, want, ll) == 0;
}

/* ---- rendering one attribute ------------------------------------------------ */

/* Render one attribute of a row: 1 = rendered into out, 0 = not
 * rendered, < 0 = problem (text in out). */
int tgt__render_attr(const struct tgt_build *b, const struct tgt_attr *d, const struct nv *row,
                     const struct nv *aux, char *out, size_t len)
{
    const struct nv *v = d->key != NULL ? nv_get(row, d->key) : NULL;
    bool nil = v == NULL || nv_is(v, NV_NIL);
    if (d->fmt == TA_FN) {
        return d->fn(b, row, aux, out, len);
    }
    if (nil) {
        if (d->when == TA_IF_SET || d->nil == NULL) {
            if (d->when == TA_IF_SET) {
                return 0;
            }
            snprintf(out, len, "%s is not set", d->key);
            return -EINVAL;
        }
        snprintf(out, len, "%s", d->nil);
        return 1;
    }
    switch (d->fmt) {
        case TA_STR:
            if (!nv_is(v, NV_STR)) {
                break;
            }
            snprintf(out, len, "%s", v->u.s.p);
            return 1;
        case TA_BOOL:
            if (!nv_is(v, NV_BOOL)) {
                break;
            }
            snprintf(out, len, "%s", v->u.b ? "1" : "0");
            return 1;
        case TA_INT:
            if (!nv_is(v, NV_INT)) {
                break;
            }
            snprintf(out, len, "%" PRId64, v->u.i);
            return 1;
        case TA_MAP: {
            const char *m = nv_is(v, NV_STR) ? map_value(d->map, v->u.s.p) : NULL;
            if (m == NULL) {
                break;
            }
            snprintf(out, len, "%s", m);
            return 1;
        }
        case TA_FN:
            break;
    }
    char *dump = nv_dump(v);
    snprintf(out, len, "%s: unexpected value %s", d->key, dump ? dump : "?");
    free(dump);
    return -EINVAL;
}
