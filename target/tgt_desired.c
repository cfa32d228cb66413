/* The desired tree = f(state rows, view): the attribute descriptor tables
 * (name, how formatted, when written, which kernel feature, how compared,
 * which kernel lock applies) and the builder that walks the rows in the
 * stage order of truenas-nvmet.md §6.1.
 *
 * ANA (global ana / subsys ana, per-node ports index+5000, ANA group
 * states 2/3, ANA referrals) is not rendered yet: every namespace gets
 * ana_grpid 1 and every port is a plain (IP-takeover) port. The inputs
 * for it are here already (view->node_slot, view->ha, the rows); it slots
 * in as TK_ANAGRP objects, a second port key per port and fn_ana_grpid. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt_int.h"

#ifndef NVMET_HA_VERSION
#define NVMET_HA_VERSION "0.0.0"
#endif

/* ---- value maps (truenas-nvmet.md §0, nvmet-configfs.md §2) ----------- */

static const struct tgt_map trtype_map[] = {
    {"TCP", "tcp"}, {"RDMA", "rdma"}, {"FC", "fc"}, {NULL, NULL}};
static const struct tgt_map adrfam_map[] = {
    {"IPV4", "ipv4"}, {"IPV6", "ipv6"}, {"FC", "fc"}, {"IB", "ib"}, {NULL, NULL}};
static const struct tgt_map dhgroup_map[] = {
    {"2048-BIT", "ffdhe2048"}, {"3072-BIT", "ffdhe3072"}, {"4096-BIT", "ffdhe4096"},
    {"6144-BIT", "ffdhe6144"}, {"8192-BIT", "ffdhe8192"}, {NULL, NULL}};
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
static int fn_oui(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                  char *out, size_t len)
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

/* Controller id ranges split per node so one NQN can be multipathed across
 * the two controllers (reference §0: A <= 31999, B >= 32000). Both bounds
 * are rendered so that a node changing its slot ends up with a valid range. */
static int fn_cntlid_min(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                         char *out, size_t len)
{
    (void)row, (void)aux;
    if (b->view->node_slot == 1) {
        snprintf(out, len, "1");
    } else if (b->view->node_slot == 2) {
        snprintf(out, len, "32000");
    } else {
        return 0;
    }
    return 1;
}

static int fn_cntlid_max(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                         char *out, size_t len)
{
    (void)row, (void)aux;
    if (b->view->node_slot == 1) {
        snprintf(out, len, "31999");
    } else if (b->view->node_slot == 2) {
        snprintf(out, len, "65519");
    } else {
        return 0;
    }
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
 * udev name, reference §6.8); FILE and BLOCK paths as given. */
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

static int fn_one(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                  char *out, size_t len)
{
    (void)b, (void)row, (void)aux;
    snprintf(out, len, "1");
    return 1;
}

/* ANA group of a namespace: 1 until ANA mode is rendered (then 2 on node
 * A, 3 on node B for subsystems with effective ANA). */
static int fn_ana_grpid(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                        char *out, size_t len)
{
    (void)b, (void)row, (void)aux;
    snprintf(out, len, "1");
    return 1;
}

/* Namespaces serve I/O only on a node that owns the data path: the single
 * node or the active controller. The standby keeps them configured with
 * enable=0 (reference §6.8). */
static int fn_ns_enable(const struct tgt_build *b, const struct nv *row, const struct nv *aux,
                        char *out, size_t len)
{
    (void)aux;
    bool on = nv_get_bool(row, "enabled", false) &&
              (b->view->role == TGT_SINGLE || b->view->role == TGT_ACTIVE);
    snprintf(out, len, "%s", on ? "1" : "0");
    return 1;
}

/* ---- tables --------------------------------------------------------------- */

#define A_END {NULL, TA_STR, NULL, NULL, NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL, 0, 0}

/* reference §6.2: identity attributes before anything links the subsystem */
static const struct tgt_attr subsys_attrs[] = {
    {"attr_serial", TA_STR, "serial", NULL, NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_PADDED, TA_LOCK_IDENTITY},
    {"attr_allow_any_host", TA_BOOL, "allow_any_host", "0", NULL, NULL, TA_ALWAYS, TA_NEED_FILE,
     NULL, TA_CMP_TEXT, TA_LOCK_NONE},
    {"attr_pi_enable", TA_BOOL, "pi_enable", "0", NULL, NULL, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_NONE},
    {"attr_qid_max", TA_INT, "qid_max", NULL, NULL, NULL, TA_IF_SET, TA_NEED_FILE, NULL,
     TA_CMP_NUM, TA_LOCK_NONE},
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

/* reference §6.3: "" (written as "\n") when there is no key */
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

/* reference §6.4; addr_trtype first: writing it resets the port's tsas */
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

/* reference §6.5: the destination port's address, then enable */
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

/* reference §6.8; path/uuid/nguid/buffered_io/resv_enable only while
 * enable=0, so enable is written last */
static const struct tgt_attr ns_attrs[] = {
    {"device_uuid", TA_FN, "device_uuid", NULL, NULL, fn_device_uuid, TA_ALWAYS, TA_NEED_FILE,
     NULL, TA_CMP_UUID, TA_LOCK_ENABLED},
    {"device_nguid", TA_FN, "device_nguid", NULL, NULL, fn_device_nguid, TA_ALWAYS, TA_NEED_FILE,
     NULL, TA_CMP_UUID, TA_LOCK_ENABLED},
    {"device_path", TA_FN, "device_path", NULL, NULL, fn_device_path, TA_ALWAYS, TA_NEED_FILE,
     NULL, TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"buffered_io", TA_FN, "device_type", NULL, NULL, fn_buffered_io, TA_ALWAYS, TA_NEED_FILE,
     NULL, TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"resv_enable", TA_FN, NULL, NULL, NULL, fn_one, TA_ALWAYS, TA_OPTIONAL, "resv_enable",
     TA_CMP_TEXT, TA_LOCK_ENABLED},
    {"ana_grpid", TA_FN, NULL, NULL, NULL, fn_ana_grpid, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_NUM, TA_LOCK_NONE},
    {"enable", TA_FN, "enabled", NULL, NULL, fn_ns_enable, TA_ALWAYS, TA_NEED_FILE, NULL,
     TA_CMP_TEXT, TA_LOCK_ENABLE},
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
        if (*a == '\0' || *b == '\0' || isspace((unsigned char)*a) ||
            isspace((unsigned char)*b)) {
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

/* ---- the builder ------------------------------------------------------------- */

struct builder {
    struct tgt_build b;
    struct ttree *tr;
    int err; /* -ENOMEM */
};

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

/* Render one attribute of a row: 1 = rendered into out, 0 = not
 * rendered, < 0 = problem (text in out). */
static int render_attr(const struct builder *bd, const struct tgt_attr *d, const struct nv *row,
                       const struct nv *aux, char *out, size_t len)
{
    const struct nv *v = d->key != NULL ? nv_get(row, d->key) : NULL;
    bool nil = v == NULL || nv_is(v, NV_NIL);
    if (d->fmt == TA_FN) {
        return d->fn(&bd->b, row, aux, out, len);
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
        int rv = render_attr(bd, d, row, aux, val, sizeof val);
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

static void build_subsystems(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    for (size_t i = 0; i < r->n[SM_SUBSYS]; i++) {
        const struct nv *row = r->row[SM_SUBSYS][i];
        const char *nqn = nv_get_str(row, "subnqn");
        char path[512];
        snprintf(path, sizeof path, "subsystems/%s", nqn ? nqn : "");
        if (!dir_name_ok(nqn)) {
            char msg[600];
            snprintf(msg, sizeof msg, "render subsys %s: the NQN cannot be a configfs directory",
                     nqn ? nqn : "(null)");
            add_problem(bd, path, msg);
            continue;
        }
        add_obj(bd, make_obj(bd, TK_SUBSYS, path, NULL, row, NULL));
    }
}

static void build_hosts(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    for (size_t i = 0; i < r->n[SM_HOST]; i++) {
        const struct nv *row = r->row[SM_HOST][i];
        const char *nqn = nv_get_str(row, "hostnqn");
        char path[512];
        snprintf(path, sizeof path, "hosts/%s", nqn ? nqn : "");
        if (!dir_name_ok(nqn)) {
            char msg[600];
            snprintf(msg, sizeof msg, "render host %s: the NQN cannot be a configfs directory",
                     nqn ? nqn : "(null)");
            add_problem(bd, path, msg);
            continue;
        }
        add_obj(bd, make_obj(bd, TK_HOST, path, NULL, row, NULL));
    }
}

/* RDMA ports exist in the state but are rendered only while global rdma
 * is on (reference §10.11). */
static bool port_rendered(const struct builder *bd, const struct nv *port)
{
    const char *tr = nv_get_str(port, "addr_trtype");
    if (tr != NULL && strcmp(tr, "RDMA") == 0) {
        return nv_get_bool(bd->b.rows->global, "rdma", false);
    }
    return port != NULL;
}

static void build_ports(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    for (size_t i = 0; i < r->n[SM_PORT]; i++) {
        const struct nv *row = r->row[SM_PORT][i];
        if (!port_rendered(bd, row)) {
            continue;
        }
        char path[64];
        snprintf(path, sizeof path, "ports/%" PRId64, nv_get_int(row, "index", 0));
        add_obj(bd, make_obj(bd, TK_PORT, path, NULL, row, NULL));
    }
}

/* Cross-port discovery referrals (reference §4.5 step 3 and §6.5): within
 * each (trtype, adrfam) group, every ordered pair of distinct ports. */
static void build_referrals(struct builder *bd)
{
    static const char *const groups[][2] = {
        {"RDMA", "IPV4"}, {"RDMA", "IPV6"}, {"FC", "FC"}, {"TCP", "IPV4"}, {"TCP", "IPV6"}};
    const struct tgt_rows *r = bd->b.rows;
    if (!nv_get_bool(r->global, "xport_referral", true)) {
        return;
    }
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        for (size_t i = 0; i < r->n[SM_PORT]; i++) {
            const struct nv *src = r->row[SM_PORT][i];
            const char *st = nv_get_str(src, "addr_trtype"), *sa = nv_get_str(src, "addr_adrfam");
            if (!port_rendered(bd, src) || st == NULL || sa == NULL ||
                strcmp(st, groups[g][0]) != 0 || strcmp(sa, groups[g][1]) != 0) {
                continue;
            }
            for (size_t j = 0; j < r->n[SM_PORT]; j++) {
                const struct nv *dst = r->row[SM_PORT][j];
                const char *dt = nv_get_str(dst, "addr_trtype");
                const char *da = nv_get_str(dst, "addr_adrfam");
                if (j == i || !port_rendered(bd, dst) || dt == NULL || da == NULL ||
                    strcmp(dt, st) != 0 || strcmp(da, sa) != 0) {
                    continue;
                }
                char path[96];
                snprintf(path, sizeof path, "ports/%" PRId64 "/referrals/%" PRId64,
                         nv_get_int(src, "index", 0), nv_get_int(dst, "index", 0));
                add_obj(bd, make_obj(bd, TK_REFERRAL, path, NULL, dst, src));
            }
        }
    }
}

/* Access lists matter only while allow_any_host is off (reference §6.6);
 * the kernel refuses links while it is on. */
static void build_host_links(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    for (size_t i = 0; i < r->n[SM_HOST_SUBSYS]; i++) {
        const struct nv *row = r->row[SM_HOST_SUBSYS][i];
        const struct nv *h = tgt__row_by_id(r, SM_HOST, nv_get_int(row, "host_id", 0));
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
        const char *hn = nv_get_str(h, "hostnqn"), *sn = nv_get_str(s, "subnqn");
        if (!dir_name_ok(hn) || !dir_name_ok(sn) || nv_get_bool(s, "allow_any_host", false)) {
            continue;
        }
        char path[1024], target[512];
        snprintf(path, sizeof path, "subsystems/%s/allowed_hosts/%s", sn, hn);
        snprintf(target, sizeof target, "hosts/%s", hn);
        add_obj(bd, make_obj(bd, TK_HOSTLINK, path, target, row, NULL));
    }
}

/* A port listens once a subsystem is linked (reference §6.7): only enabled
 * ports, and none on the standby (IP takeover: the VIPs and their ports
 * live on the active node). */
static void build_port_links(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    if (bd->b.view->role == TGT_STANDBY) {
        return;
    }
    for (size_t i = 0; i < r->n[SM_PORT_SUBSYS]; i++) {
        const struct nv *row = r->row[SM_PORT_SUBSYS][i];
        const struct nv *p = tgt__row_by_id(r, SM_PORT, nv_get_int(row, "port_id", 0));
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
        const char *sn = nv_get_str(s, "subnqn");
        if (p == NULL || !dir_name_ok(sn) || !nv_get_bool(p, "enabled", false) ||
            !port_rendered(bd, p)) {
            continue;
        }
        char path[600], target[512];
        snprintf(path, sizeof path, "ports/%" PRId64 "/subsystems/%s", nv_get_int(p, "index", 0),
                 sn);
        snprintf(target, sizeof target, "subsystems/%s", sn);
        add_obj(bd, make_obj(bd, TK_PORTLINK, path, target, row, NULL));
    }
}

static void build_namespaces(struct builder *bd)
{
    const struct tgt_rows *r = bd->b.rows;
    for (size_t i = 0; i < r->n[SM_NAMESPACE]; i++) {
        const struct nv *row = r->row[SM_NAMESPACE][i];
        const struct nv *s = tgt__row_by_id(r, SM_SUBSYS, nv_get_int(row, "subsys_id", 0));
        const char *sn = nv_get_str(s, "subnqn");
        int64_t nsid = nv_get_int(row, "nsid", 0);
        if (!dir_name_ok(sn) || nsid <= 0) {
            continue;
        }
        char path[600];
        snprintf(path, sizeof path, "subsystems/%s/namespaces/%" PRId64, sn, nsid);
        struct tobj *o = make_obj(bd, TK_NS, path, NULL, row, s);
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
}

struct ttree *tgt__build(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v)
{
    struct builder bd = {.b = {.t = t, .rows = r, .view = v}, .tr = tgt__tree_new()};
    if (bd.tr == NULL) {
        return NULL;
    }
    /* global.enabled=false and the witness desire an empty nvmet/ */
    if (r->global == NULL || !nv_get_bool(r->global, "enabled", false) ||
        v->role == TGT_WITNESS) {
        return bd.tr;
    }
    build_subsystems(&bd);
    build_hosts(&bd);
    build_ports(&bd);
    build_referrals(&bd);
    build_host_links(&bd);
    build_port_links(&bd);
    build_namespaces(&bd);
    if (bd.err < 0) {
        tgt__tree_free(bd.tr);
        return NULL;
    }
    return bd.tr;
}

/* ---- rows ------------------------------------------------------------------- */

const struct nv *tgt__row_by_id(const struct tgt_rows *r, enum sm_table t, int64_t id)
{
    /* rows are kept in ascending id order (sm.h) */
    size_t lo = 0, hi = r->n[t];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t m = nv_get_int(r->row[t][mid], "id", 0);
        if (m == id) {
            return r->row[t][mid];
        }
        if (m < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}
