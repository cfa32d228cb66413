/* The emulated kernel's attribute files: per object type the files a real
 * mkdir creates, their default contents on the profile's kernel, and the
 * store() rules of drivers/nvme/target/configfs.c: what value is
 * accepted, how it reads back, and when the write is refused. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tgt_int.h"

/* ---- deterministic "random" defaults --------------------------------------- */

/* The kernel fills serial and device_uuid from get_random_bytes(); the
 * emulator derives them from the object's path, so runs are repeatable. */
static uint64_t mix(const char *s, uint64_t salt)
{
    uint64_t h = 1469598103934665603ull ^ salt;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static void init_serial(const struct emu_ctx *c, char *out, size_t len)
{
    snprintf(out, len, "%016llx%04llx", (unsigned long long)mix(c->dir, 1),
             (unsigned long long)(mix(c->dir, 2) & 0xffff));
}

static void init_uuid(const struct emu_ctx *c, char *out, size_t len)
{
    uint64_t a = mix(c->dir, 3), b = mix(c->dir, 4);
    /* version 4, variant 1 like uuid_gen() */
    snprintf(out, len, "%08llx-%04llx-4%03llx-%04llx-%012llx",
             (unsigned long long)(a >> 32), (unsigned long long)((a >> 16) & 0xffff),
             (unsigned long long)(a & 0xfff), (unsigned long long)(0x8000 | ((b >> 48) & 0x3fff)),
             (unsigned long long)(b & 0xffffffffffffull));
}

static void init_firmware(const struct emu_ctx *c, char *out, size_t len)
{
    (void)c;
    snprintf(out, len, "6.12.117"); /* UTS_RELEASE cut to 8 characters */
}

/* ---- value parsers --------------------------------------------------------- */

static int st_bool(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    /* kstrtobool */
    bool v;
    switch (in[0]) {
    case 'y':
    case 'Y':
    case '1':
        v = true;
        break;
    case 'n':
    case 'N':
    case '0':
        v = false;
        break;
    case 'o':
    case 'O':
        if (in[1] == 'n' || in[1] == 'N') {
            v = true;
        } else if (in[1] == 'f' || in[1] == 'F') {
            v = false;
        } else {
            return -EINVAL;
        }
        break;
    default:
        return -EINVAL;
    }
    snprintf(out, len, "%d", v ? 1 : 0);
    return 0;
}

static bool printable(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e) {
            return false;
        }
    }
    return true;
}

static int st_serial(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    if (!printable(in, 1, 20)) {
        return -EINVAL;
    }
    snprintf(out, len, "%-20s", in); /* stored and shown space padded */
    return 0;
}

static int st_model(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    if (!printable(in, 1, 40)) {
        return -EINVAL;
    }
    snprintf(out, len, "%s", in);
    return 0;
}

static int st_firmware(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    if (!printable(in, 1, 8)) {
        return -EINVAL;
    }
    snprintf(out, len, "%s", in);
    return 0;
}

static int st_version(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    int a, b, d = 0;
    char extra;
    int n = sscanf(in, "%d.%d.%d%c", &a, &b, &d, &extra);
    if (n != 2 && n != 3) {
        return -EINVAL;
    }
    if (d != 0) {
        snprintf(out, len, "%d.%d.%d", a, b, d);
    } else {
        snprintf(out, len, "%d.%d", a, b);
    }
    return 0;
}

static int parse_num(const char *in, unsigned long long max, unsigned long long *v)
{
    int rv = tgt__emu_kstrtoull(in, max, v);
    return rv < 0 ? -EINVAL : 0;
}

/* 6.1 needs min < max; later kernels accept min == max. */
static int st_cntlid(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    unsigned long long v;
    if (parse_num(in, 0xffff, &v) < 0 || v == 0) {
        return -EINVAL;
    }
    bool is_min = strcmp(c->name, "attr_cntlid_min") == 0;
    char other[16];
    if (tgt__emu_get(c->t, c->dir, is_min ? "attr_cntlid_max" : "attr_cntlid_min", other,
                     sizeof other) == 0) {
        unsigned long long o = strtoull(other, NULL, 10);
        bool strict = (c->t->profile & TGT_P61) != 0;
        unsigned long long lo = is_min ? v : o, hi = is_min ? o : v;
        if (strict ? lo >= hi : lo > hi) {
            return -EINVAL;
        }
    }
    snprintf(out, len, "%llu", v);
    return 0;
}

static int st_qid_max(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    unsigned long long v;
    if (parse_num(in, 0xffff, &v) < 0 || v < 1 || v > 128) {
        return -EINVAL;
    }
    snprintf(out, len, "%llu", v);
    return 0;
}

static int st_ieee_oui(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    unsigned long long v;
    if (parse_num(in, 0xffffffffull, &v) < 0 || v >= 0x1000000ull) {
        return -EINVAL;
    }
    snprintf(out, len, "0x%06llx", v);
    return 0;
}

static int st_allow_any_host(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    int rv = st_bool(c, in, out, len);
    if (rv < 0 || strcmp(out, "1") != 0) {
        return rv;
    }
    /* the access list must be empty before any host may connect */
    char rel[4096], p[4096];
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    snprintf(rel, sizeof rel, "%s/allowed_hosts", c->dir);
    if (tgt__path(c->t, rel, p, sizeof p) == 0 && tgt__plain_readdir(p, &d, &n) == 0) {
        tgt__dirents_free(d, n);
        if (n > 0) {
            return -EINVAL;
        }
    }
    return 0;
}

static int st_path(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    if (in[0] == '\0') {
        return -EINVAL;
    }
    snprintf(out, len, "%s", in);
    return 0;
}

static int hexval(char ch) { return isdigit((unsigned char)ch) ? ch - '0' : tolower(ch) - 'a' + 10; }

/* uuid_parse(): exactly xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx */
static int st_uuid(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    if (strlen(in) != 36) {
        return -EINVAL;
    }
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? in[i] != '-' : !isxdigit((unsigned char)in[i])) {
            return -EINVAL;
        }
    }
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < len; i++) {
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[i] = '\0';
    return 0;
}

/* 16 hex byte pairs, each optionally followed by '-' or ':' */
static int st_nguid(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    unsigned char b[16];
    const char *p = in;
    for (int i = 0; i < 16; i++) {
        if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1])) {
            return -EINVAL;
        }
        b[i] = (unsigned char)(hexval(p[0]) << 4 | hexval(p[1]));
        p += 2;
        if (*p == '-' || *p == ':') {
            p++;
        }
    }
    snprintf(out, len,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

static int st_ana_grpid(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    unsigned long long v;
    if (parse_num(in, 0xffffffffull, &v) < 0 || v < 1 || v > 128) {
        return -EINVAL;
    }
    snprintf(out, len, "%llu", v);
    return 0;
}

/* nvmet_ns_enable(): the device must open (the emulator checks that the
 * path exists under device_root). */
static int st_ns_enable(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    int rv = st_bool(c, in, out, len);
    if (rv < 0 || strcmp(out, "1") != 0) {
        return rv;
    }
    char path[4096];
    if (tgt__emu_get(c->t, c->dir, "device_path", path, sizeof path) < 0 ||
        strcmp(path, "(null)") == 0 || path[0] == '\0') {
        return -EINVAL;
    }
    if (c->t->device_root != NULL) {
        char p[4096];
        struct stat st;
        if (tgt__device_path(c->t, path, p, sizeof p) < 0) {
            return -ENAMETOOLONG;
        }
        if (stat(p, &st) < 0) {
            return -errno;
        }
        if (S_ISDIR(st.st_mode)) {
            return -EISDIR;
        }
    }
    return 0;
}

static int st_revalidate(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    char en[16];
    int rv = st_bool(c, in, out, len);
    if (rv < 0 || strcmp(out, "1") != 0 || tgt__emu_get(c->t, c->dir, "enable", en, sizeof en) < 0 ||
        strcmp(en, "1") != 0) {
        return -EINVAL;
    }
    out[0] = '\0';
    return 0;
}

static int st_one_of(const char *in, const char *const *allowed, char *out, size_t len)
{
    for (; *allowed != NULL; allowed++) {
        if (strcmp(in, *allowed) == 0) {
            snprintf(out, len, "%s", in);
            return 0;
        }
    }
    return -EINVAL;
}

static int st_trtype(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    static const char *const v[] = {"rdma", "fc", "tcp", "loop", NULL};
    int rv = st_one_of(in, v, out, len);
    if (rv == 0 && (c->t->profile & TGT_P612)) {
        /* writing the transport resets its security settings (tsas) */
        char rel[4096], p[4096];
        const char *tsas = strcmp(in, "tcp") == 0 ? "none\n" : strcmp(in, "rdma") == 0 ? "connected\n" : "\n";
        snprintf(rel, sizeof rel, "%s/addr_tsas", c->dir);
        if (tgt__path(c->t, rel, p, sizeof p) == 0) {
            FILE *f = fopen(p, "w");
            if (f != NULL) {
                fputs(tsas, f);
                fclose(f);
            }
        }
    }
    return rv;
}

static int st_adrfam(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    static const char *const v[] = {"ipv4", "ipv6", "ib", "fc", "loop", NULL};
    return st_one_of(in, v, out, len);
}

static int st_treq(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    static const char *const v[] = {"not specified", "required", "not required", NULL};
    return st_one_of(in, v, out, len);
}

static int st_tsas(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    static const char *const v[] = {"none", "connected", NULL};
    return st_one_of(in, v, out, len);
}

static int st_ana_state(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    static const char *const v[] = {"optimized", "non-optimized", "inaccessible",
                                    "persistent-loss", "change", NULL};
    return st_one_of(in, v, out, len);
}

/* sscanf("%s"): one token of at most max bytes */
static int st_token(const char *in, size_t max, char *out, size_t len)
{
    if (strlen(in) + 1 > max || sscanf(in, "%4095s", out) != 1 || len < 2) {
        return -EINVAL;
    }
    return 0;
}

static int st_traddr(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    return st_token(in, 256, out, len);
}

static int st_trsvcid(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    return st_token(in, 32, out, len);
}

static int st_int(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    char *end;
    errno = 0;
    long v = strtol(in, &end, 0);
    if (errno != 0 || end == in || *end != '\0' || v < -2147483648L || v > 2147483647L) {
        return -EINVAL;
    }
    snprintf(out, len, "%ld", v);
    return 0;
}

static int st_u16(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    unsigned long long v;
    if (parse_num(in, 0xffff, &v) < 0) {
        return -EINVAL;
    }
    snprintf(out, len, "%llu", v);
    return 0;
}

/* nvmet_auth_set_key(): "DHHC-1:%hhd:%*s" with a hash id up to 3; the
 * length and CRC are only checked when a host connects. An empty value
 * clears the key. */
static int st_dhchap_key(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", in);
    size_t n = strlen(buf);
    while (n > 0 && isspace((unsigned char)buf[n - 1])) {
        buf[--n] = '\0';
    }
    const char *s = buf;
    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (*s != '\0') {
        signed char id;
        char rest[8];
        if (sscanf(s, "DHHC-1:%hhd:%7s", &id, rest) != 2 || id > 3) {
            return -EINVAL;
        }
    }
    snprintf(out, len, "%s", s);
    return 0;
}

static int st_prefix_of(const char *in, const char *const *names, char *out, size_t len)
{
    for (; *names != NULL; names++) {
        if (strncmp(in, *names, strlen(*names)) == 0) {
            snprintf(out, len, "%s", *names);
            return 0;
        }
    }
    return -EINVAL;
}

static int st_dhchap_hash(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    static const char *const v[] = {"hmac(sha256)", "hmac(sha384)", "hmac(sha512)", NULL};
    return st_prefix_of(in, v, out, len);
}

static int st_dhchap_dhgroup(const struct emu_ctx *c, const char *in, char *out, size_t len)
{
    (void)c;
    static const char *const v[] = {"null",      "ffdhe2048", "ffdhe3072",
                                    "ffdhe4096", "ffdhe6144", "ffdhe8192", NULL};
    return st_prefix_of(in, v, out, len);
}

/* ---- the tables ------------------------------------------------------------- */

#define F_END {NULL, 0, NULL, NULL, NULL, 0}

static const struct emu_file subsys_files[] = {
    {"attr_allow_any_host", TGT_PALL, "0", NULL, st_allow_any_host, 0},
    {"attr_version", TGT_PALL, "1.3", NULL, st_version, EF_IDENTITY},
    {"attr_serial", TGT_PALL, NULL, init_serial, st_serial, EF_IDENTITY},
    {"attr_cntlid_min", TGT_PALL, "1", NULL, st_cntlid, 0},
    {"attr_cntlid_max", TGT_PALL, "65519", NULL, st_cntlid, 0},
    {"attr_model", TGT_PALL, "Linux", NULL, st_model, EF_IDENTITY},
    {"attr_qid_max", TGT_PALL, "128", NULL, st_qid_max, 0},
    {"attr_pi_enable", TGT_PALL, "0", NULL, st_bool, 0},
    {"attr_ieee_oui", TGT_P612, "0x000000", NULL, st_ieee_oui, EF_IDENTITY},
    {"attr_firmware", TGT_P612, NULL, init_firmware, st_firmware, EF_IDENTITY},
    F_END,
};

static const struct emu_file ns_files[] = {
    {"device_path", TGT_PALL, "(null)", NULL, st_path, EF_NS_BUSY},
    {"device_uuid", TGT_PALL, NULL, init_uuid, st_uuid, EF_NS_BUSY},
    {"device_nguid", TGT_PALL, "00000000-0000-0000-0000-000000000000", NULL, st_nguid,
     EF_NS_BUSY},
    {"ana_grpid", TGT_PALL, "1", NULL, st_ana_grpid, 0},
    {"enable", TGT_PALL, "0", NULL, st_ns_enable, 0},
    {"buffered_io", TGT_PALL, "0", NULL, st_bool, EF_NS_INVAL},
    {"revalidate_size", TGT_PALL, NULL, NULL, st_revalidate, EF_WO},
    {"resv_enable", TGT_P613, "0", NULL, st_bool, EF_NS_INVAL},
    F_END,
};

static const struct emu_file passthru_files[] = {
    {"device_path", TGT_P612, "(null)", NULL, st_path, 0},
    {"enable", TGT_P612, "0", NULL, st_bool, 0},
    {"admin_timeout", TGT_P612, "0", NULL, st_int, 0},
    {"io_timeout", TGT_P612, "0", NULL, st_int, 0},
    {"clear_ids", TGT_P612, "0", NULL, st_bool, 0},
    F_END,
};

static const struct emu_file port_files[] = {
    {"addr_adrfam", TGT_PALL, "", NULL, st_adrfam, EF_PORT},
    {"addr_treq", TGT_PALL, "not specified", NULL, st_treq, EF_PORT},
    {"addr_traddr", TGT_PALL, "", NULL, st_traddr, EF_PORT},
    {"addr_trsvcid", TGT_PALL, "", NULL, st_trsvcid, EF_PORT},
    {"addr_trtype", TGT_PALL, "", NULL, st_trtype, EF_PORT},
    {"addr_tsas", TGT_P612, "", NULL, st_tsas, EF_PORT},
    {"param_inline_data_size", TGT_PALL, "-1", NULL, st_int, EF_PORT},
    {"param_max_queue_size", TGT_P612, "-1", NULL, st_int, EF_PORT},
    {"param_pi_enable", TGT_PALL, "0", NULL, st_bool, EF_PORT},
    F_END,
};

static const struct emu_file referral_files[] = {
    {"addr_adrfam", TGT_PALL, "", NULL, st_adrfam, EF_REF},
    {"addr_portid", TGT_PALL, "0", NULL, st_u16, EF_REF},
    {"addr_treq", TGT_PALL, "not specified", NULL, st_treq, EF_REF},
    {"addr_traddr", TGT_PALL, "", NULL, st_traddr, EF_REF},
    {"addr_trsvcid", TGT_PALL, "", NULL, st_trsvcid, EF_REF},
    {"addr_trtype", TGT_PALL, "", NULL, st_trtype, EF_REF},
    {"enable", TGT_PALL, "0", NULL, st_bool, 0},
    F_END,
};

/* new groups start inaccessible; the default group 1 is optimized */
static const struct emu_file ana_files[] = {
    {"ana_state", TGT_PALL, "inaccessible", NULL, st_ana_state, 0},
    F_END,
};

static const struct emu_file ana1_files[] = {
    {"ana_state", TGT_PALL, "optimized", NULL, st_ana_state, 0},
    F_END,
};

/* CONFIG_NVME_TARGET_AUTH is off on Debian 6.1: hosts are empty dirs */
static const struct emu_file host_files[] = {
    {"dhchap_key", TGT_P612, "", NULL, st_dhchap_key, 0},
    {"dhchap_ctrl_key", TGT_P612, "", NULL, st_dhchap_key, 0},
    {"dhchap_hash", TGT_P612, "hmac(sha256)", NULL, st_dhchap_hash, 0},
    {"dhchap_dhgroup", TGT_P612, "null", NULL, st_dhchap_dhgroup, 0},
    F_END,
};

/* nvmet/ itself (the discovery NQN became configurable in 6.x) */
static const struct emu_file root_files[] = {
    {"discovery_nqn", TGT_P612, "nqn.2014-08.org.nvmexpress.discovery", NULL, st_path, 0},
    F_END,
};

const struct emu_file *tgt__emu_files(enum emu_type type)
{
    switch (type) {
    case EN_ROOT:
        return root_files;
    case EN_SUBSYS:
        return subsys_files;
    case EN_NS:
        return ns_files;
    case EN_PASSTHRU:
        return passthru_files;
    case EN_PORT:
        return port_files;
    case EN_REF:
        return referral_files;
    case EN_ANA:
        return ana_files;
    case EN_ANA1:
        return ana1_files;
    case EN_HOST:
        return host_files;
    default:
        return NULL;
    }
}
