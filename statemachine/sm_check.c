/* statemachine: argument validation shaped like TrueNAS middleware's pydantic
 * models (strict types, extra keys forbidden, exact messages), the NQN
 * rules, addresses, uuids, paths and DH-CHAP key formats. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_int.h"

size_t sm__strchars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

/* "Input should be 'A', 'B' or 'C'" over the canonical values. */
static void enum_message(const char *const *ch, char *out, size_t len)
{
    const char *canon[16];
    size_t n = 0;
    for (size_t i = 0; ch[i] != NULL && n < 16; i += 2) {
        bool seen = false;
        for (size_t j = 0; j < n; j++) {
            seen = seen || strcmp(canon[j], ch[i + 1]) == 0;
        }
        if (!seen) {
            canon[n++] = ch[i + 1];
        }
    }
    size_t o = (size_t)snprintf(out, len, "Input should be ");
    for (size_t i = 0; i < n && o < len; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == n ? " or " : ", ");
        o += (size_t)snprintf(out + o, len - o, "%s'%s'", sep, canon[i]);
    }
}

/* No model has more than a few dozen fields: a larger map is refused as a
 * whole, before its keys are copied or checked one by one (a client could
 * send 300,000 of them in one frame). */
#define MODEL_MAX_KEYS 1000

bool sm__is_model(const char *attr, const struct nv *in, struct nv_err *err)
{
    if (in == NULL || !nv_is(in, NV_MAP)) {
        nv_err_add(err, attr, EINVAL, "Input should be a valid dictionary");
        return false;
    }
    if (nv_len(in) > MODEL_MAX_KEYS) {
        nv_err_add(err, attr, EINVAL, "Input should have at most %d fields, not %zu",
                   MODEL_MAX_KEYS, nv_len(in));
        return false;
    }
    return true;
}

bool sm__arg_int(const char *attr, const struct nv *v, int64_t *out, struct nv_err *err)
{
    if (v == NULL) {
        nv_err_add(err, attr, EINVAL, "Field required");
        return false;
    }
    if (!nv_is(v, NV_INT)) {
        nv_err_add(err, attr, EINVAL, "Input should be a valid integer");
        return false;
    }
    *out = v->u.i;
    return true;
}

/* Check one value; returns the normalized value (owned) or NULL with an
 * item added. */
static struct nv *check_value(const char *attr, const struct sm_field *f, const struct nv *v,
                              struct nv_err *err)
{
    if (nv_is(v, NV_NIL) && (f->flags & SF_NULL)) {
        return nv_nil();
    }
    char msg[512];
    switch (f->type) {
    case SF_BOOL:
        if (!nv_is(v, NV_BOOL)) {
            nv_err_add(err, attr, EINVAL, "Input should be a valid boolean");
            return NULL;
        }
        return nv_bool(v->u.b);
    case SF_INT:
        if (!nv_is(v, NV_INT)) {
            nv_err_add(err, attr, EINVAL, "Input should be a valid integer");
            return NULL;
        }
        if ((f->flags & SF_MIN) && v->u.i < f->min) {
            nv_err_add(err, attr, EINVAL, "Input should be greater than or equal to %" PRId64,
                       f->min);
            return NULL;
        }
        if ((f->flags & SF_MAXX) && v->u.i >= f->max) {
            nv_err_add(err, attr, EINVAL, "Input should be less than %" PRId64, f->max);
            return NULL;
        }
        return nv_int(v->u.i);
    case SF_TRSVCID: {
        int64_t x;
        if (nv_is(v, NV_INT)) {
            x = v->u.i;
        } else if (nv_is(v, NV_STR)) {
            const char *p = v->u.s.p;
            char *end;
            errno = 0;
            long long y = strtoll(p, &end, 10);
            if (v->u.s.len == 0 || v->u.s.len > 18 || !isdigit((unsigned char)p[0]) ||
                *end != '\0' || errno != 0) {
                nv_err_add(err, attr, EINVAL,
                           "Input should be a valid integer, unable to parse string as an "
                           "integer");
                return NULL;
            }
            x = y;
        } else {
            nv_err_add(err, attr, EINVAL, "Input should be a valid integer");
            return NULL;
        }
        if (x < 1024) {
            nv_err_add(err, attr, EINVAL, "Input should be greater than or equal to 1024");
            return NULL;
        }
        if (x > 65535) {
            nv_err_add(err, attr, EINVAL, "Input should be less than or equal to 65535");
            return NULL;
        }
        return nv_int(x);
    }
    default:
        break;
    }
    /* string types */
    if (!nv_is(v, NV_STR)) {
        nv_err_add(err, attr, EINVAL, "Input should be a valid string");
        return NULL;
    }
    const char *s = v->u.s.p;
    if (strlen(s) != v->u.s.len) {
        nv_err_add(err, attr, EINVAL, "String should not contain NUL characters");
        return NULL;
    }
    size_t chars = sm__strchars(s);
    size_t maxlen = (f->flags & SF_MAXS) ? (size_t)f->max : SM_STR_MAX;
    if (f->type == SF_NQN) {
        maxlen = 223;
    }
    if ((f->type == SF_NESTR || f->type == SF_PATH) && chars == 0) {
        nv_err_add(err, attr, EINVAL, "String should have at least 1 character");
        return NULL;
    }
    if (f->type == SF_NQN && chars < 11) {
        nv_err_add(err, attr, EINVAL, "String should have at least 11 characters");
        return NULL;
    }
    if (chars > maxlen) {
        nv_err_add(err, attr, EINVAL, "String should have at most %zu characters", maxlen);
        return NULL;
    }
    switch (f->type) {
    case SF_NQN:
        if (sm__nqn_check(s, msg, sizeof msg) != 0) {
            nv_err_add(err, attr, EINVAL, "%s", msg);
            return NULL;
        }
        return nv_str(s);
    case SF_ENUM:
        for (size_t i = 0; f->choices[i] != NULL; i += 2) {
            if (strcmp(s, f->choices[i]) == 0) {
                return nv_str(f->choices[i + 1]);
            }
        }
        enum_message(f->choices, msg, sizeof msg);
        nv_err_add(err, attr, EINVAL, "%s", msg);
        return NULL;
    case SF_IP:
        if (s[0] == '\0') {
            nv_err_add(err, attr, EINVAL, "Value error, addr_traddr is required");
            return NULL;
        }
        if (sm__ip_family(s) == 0) {
            nv_err_add(err, attr, EINVAL,
                       "Input should be '' or value is not a valid IPv4 or IPv6 address");
            return NULL;
        }
        return nv_str(s);
    case SF_PATH: {
        char *p = sm__normpath(s);
        struct nv *r = nv_str(p);
        free(p);
        return r;
    }
    default:
        return nv_str(s);
    }
}

struct nv *sm__model(const char *prefix, const struct sm_field *f, const struct nv *in,
                     struct nv_err *err)
{
    if (!sm__is_model(prefix, in, err)) {
        return NULL;
    }
    size_t before = nv_err_count(err);
    struct nv *out = nv_map();
    char attr[256];
    for (size_t i = 0; f[i].name != NULL; i++) {
        snprintf(attr, sizeof attr, "%s.%s", prefix, f[i].name);
        const struct nv *v = nv_get(in, f[i].name);
        if (v == NULL) {
            if (f[i].flags & SF_REQ) {
                nv_err_add(err, attr, EINVAL, "Field required");
            }
            continue;
        }
        struct nv *c = check_value(attr, &f[i], v, err);
        if (c != NULL) {
            nv_set(out, f[i].name, c);
        }
    }
    for (size_t k = 0; k < in->u.m.n; k++) {
        const char *key = in->u.m.kv[k].k;
        bool known = false;
        for (size_t i = 0; f[i].name != NULL && !known; i++) {
            known = strcmp(f[i].name, key) == 0;
        }
        if (!known) {
            snprintf(attr, sizeof attr, "%s.%s", prefix, key);
            nv_err_add(err, attr, EINVAL, "Extra inputs are not permitted");
        }
    }
    if (nv_err_count(err) != before) {
        nv_free(out);
        return NULL;
    }
    return out;
}

/* ---- NQN (TrueNAS's NQN type, middleware api/base/types/nvmet.py) ---- */

static bool domain_ok(const char *d, size_t len)
{
    /* d is "com.example" (reverse order): labels reversed must match
     * ^((?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)+[A-Za-z]{2,}$ */
    const char *lab[128];
    size_t ll[128], n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || d[i] == '.') {
            if (n == 128) {
                return false;
            }
            lab[n] = d + start;
            ll[n++] = i - start;
            start = i + 1;
        }
    }
    if (n < 2) {
        return false;
    }
    /* reversed: lab[n-1] first ... lab[0] last (the TLD-like label) */
    if (ll[0] < 2) {
        return false;
    }
    for (size_t j = 0; j < ll[0]; j++) {
        if (!isalpha((unsigned char)lab[0][j])) {
            return false;
        }
    }
    for (size_t i = 1; i < n; i++) {
        if (ll[i] < 1 || ll[i] > 63 || lab[i][0] == '-' || lab[i][ll[i] - 1] == '-') {
            return false;
        }
        for (size_t j = 0; j < ll[i]; j++) {
            char c = lab[i][j];
            if (!isalnum((unsigned char)c) && c != '-') {
                return false;
            }
        }
    }
    return true;
}

int sm__nqn_check(const char *nqn, char *msg, size_t len)
{
    static const char disc[] = "nqn.2014-08.org.nvmexpress.discovery";
    static const char upfx[] = "nqn.2014-08.org.nvmexpress:uuid:";
    size_t n = strlen(nqn);
    if (strcmp(nqn, disc) == 0) {
        return 0;
    }
    if (strncmp(nqn, upfx, sizeof upfx - 1) == 0) {
        if (n != 68) {
            snprintf(msg, len, "Value error, %s: uuid is incorrect length", nqn);
            return -1;
        }
        char u[37];
        if (!sm__uuid_norm(nqn + 32, u)) {
            snprintf(msg, len, "Value error, badly formed hexadecimal UUID string");
            return -1;
        }
        return 0;
    }
    if (strncmp(nqn, "nqn.", 4) == 0) {
        /* ^nqn.\d{4}-\d{2}\..* */
        bool ok = n >= 12;
        for (size_t i = 4; ok && i < 8; i++) {
            ok = isdigit((unsigned char)nqn[i]) != 0;
        }
        ok = ok && nqn[8] == '-' && isdigit((unsigned char)nqn[9]) &&
             isdigit((unsigned char)nqn[10]) && nqn[11] == '.';
        if (!ok) {
            snprintf(msg, len, "Value error, %s: must start with \"nqn.YYYY-MM.<reverse.domain>\"",
                     nqn);
            return -1;
        }
        const char *rest = nqn + 12;
        if (rest[0] == '\0' || strchr(rest, '.') == NULL) {
            snprintf(msg, len,
                     "Value error, %s: must start with \"nqn.YYYY-MM.<reverse.domain>\" - domain "
                     "missing",
                     nqn);
            return -1;
        }
        const char *colon = strchr(rest, ':');
        size_t dl = colon != NULL ? (size_t)(colon - rest) : strlen(rest);
        if (!domain_ok(rest, dl)) {
            snprintf(msg, len, "Value error, %s: domain does not appear to be valid", nqn);
            return -1;
        }
        return 0;
    }
    snprintf(msg, len, "Value error, %s: must start with \"nqn\"", nqn);
    return -1;
}

bool sm__valid_nqn(const char *nqn)
{
    char m[512];
    size_t c = sm__strchars(nqn);
    return c >= 11 && c <= 223 && sm__nqn_check(nqn, m, sizeof m) == 0;
}

int sm__ip_family(const char *s)
{
    unsigned char b[16];
    if (strchr(s, ':') == NULL) {
        return inet_pton(AF_INET, s, b) == 1 ? 4 : 0;
    }
    char tmp[64];
    const char *pct = strchr(s, '%');
    size_t l = pct != NULL ? (size_t)(pct - s) : strlen(s);
    if (l >= sizeof tmp || (pct != NULL && pct[1] == '\0')) {
        return 0;
    }
    memcpy(tmp, s, l);
    tmp[l] = '\0';
    return inet_pton(AF_INET6, tmp, b) == 1 ? 6 : 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void sm__uuid_format(const unsigned char b[16], char out[37])
{
    static const char hx[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hx[b[i] >> 4];
        out[o++] = hx[b[i] & 15];
    }
    out[o] = '\0';
}

/* Python UUID(str): braces and "urn:uuid:" stripped, dashes removed, 32 hex. */
bool sm__uuid_norm(const char *in, char out[37])
{
    char buf[128];
    size_t l = strlen(in);
    if (l >= sizeof buf) {
        return false;
    }
    memcpy(buf, in, l + 1);
    char *p = buf;
    if (strncmp(p, "urn:uuid:", 9) == 0) {
        p += 9;
    }
    l = strlen(p);
    if (l >= 2 && p[0] == '{' && p[l - 1] == '}') {
        p[l - 1] = '\0';
        p++;
    }
    unsigned char b[16];
    size_t nd = 0;
    for (; *p != '\0'; p++) {
        if (*p == '-') {
            continue;
        }
        int v = hexval((unsigned char)*p);
        if (v < 0 || nd >= 32) {
            return false;
        }
        if (nd % 2 == 0) {
            b[nd / 2] = (unsigned char)(v << 4);
        } else {
            b[nd / 2] |= (unsigned char)v;
        }
        nd++;
    }
    if (nd != 32) {
        return false;
    }
    sm__uuid_format(b, out);
    return true;
}

char *sm__normpath(const char *p)
{
    size_t l = strlen(p);
    if (l == 0) {
        return strdup(".");
    }
    int lead = p[0] == '/' ? 1 : 0;
    if (lead && p[1] == '/' && p[2] != '/') {
        lead = 2; /* POSIX keeps exactly two leading slashes */
    }
    char *copy = strdup(p);
    const char **comp = calloc(l + 1, sizeof *comp);
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(copy, "/", &save); tok != NULL;
         tok = strtok_r(NULL, "/", &save)) {
        if (strcmp(tok, ".") == 0) {
            continue;
        }
        if (strcmp(tok, "..") == 0) {
            if ((lead == 0 && n == 0) || (n > 0 && strcmp(comp[n - 1], "..") == 0)) {
                comp[n++] = tok;
            } else if (n > 0) {
                n--;
            }
            continue;
        }
        comp[n++] = tok;
    }
    char *out = malloc(l + 3);
    size_t o = 0;
    for (int i = 0; i < lead; i++) {
        out[o++] = '/';
    }
    for (size_t i = 0; i < n; i++) {
        size_t cl = strlen(comp[i]);
        if (i > 0) {
            out[o++] = '/';
        }
        memcpy(out + o, comp[i], cl);
        o += cl;
    }
    if (o == 0) {
        out[o++] = '.';
    }
    out[o] = '\0';
    free(comp);
    free(copy);
    return out;
}

const char *sm__dhchap_key_error(const char *key)
{
    static const struct {
        const char *pfx;
        long want;
        const char *msg;
    } kinds[] = {{"DHHC-1:01:", 36, "Expected key length of 32"},
                 {"DHHC-1:02:", 52, "Expected key length of 48"},
                 {"DHHC-1:03:", 68, "Expected key length of 64"}};
    if (strncmp(key, "DHHC-1:00:", 10) == 0) {
        size_t l = strlen(key);
        return key[l - 1] == ':' ? NULL
                                 : "Unexpected key termination. Use \"nvme gen-dhchap-key\" to "
                                   "generate.";
    }
    for (size_t i = 0; i < 3; i++) {
        if (strncmp(key, kinds[i].pfx, 10) == 0) {
            const char *b = key + 10;
            const char *e = strchr(b, ':');
            size_t bl = e != NULL ? (size_t)(e - b) : strlen(b);
            unsigned char *out = malloc(bl * 3 / 4 + 4);
            long got = sm_base64_decode(b, bl, out);
            free(out);
            return got == kinds[i].want ? NULL : kinds[i].msg;
        }
    }
    return "Unexpected key format. Use \"nvme gen-dhchap-key\" to generate.";
}

long sm_base64_decode(const char *in, size_t len, unsigned char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len % 4 != 0) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = in[i + (size_t)j];
            if (c == '=' && i + 4 == len && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad > 0) {
                return -1;
            }
            const char *p = c != '\0' ? strchr(tab, c) : NULL;
            if (p == NULL) {
                return -1;
            }
            v[j] = (int)(p - tab);
        }
        unsigned x = ((unsigned)v[0] << 18) | ((unsigned)v[1] << 12) | ((unsigned)v[2] << 6) |
                     (unsigned)v[3];
        out[o++] = (unsigned char)(x >> 16);
        if (pad < 2) {
            out[o++] = (unsigned char)(x >> 8);
        }
        if (pad < 1) {
            out[o++] = (unsigned char)x;
        }
    }
    return (long)o;
}
