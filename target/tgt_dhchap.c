/* DH-HMAC-CHAP secrets in the DHHC-1 representation (NVMe Base spec; the
 * form nvme-cli's gen-dhchap-key writes and the kernel reads):
 * "DHHC-1:XX:" + base64(key || crc32_le(key)) + ":".
 * OpenSSL does the HMAC and base64, zlib the CRC-32 (the IEEE one the
 * kernel checks in nvme_auth_extract_key). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zlib.h>

#include "nv_err.h"
#include "tgt.h"

/* NVMe hash ids: 1 = SHA-256, 2 = SHA-384, 3 = SHA-512 (digest = secret
 * length the kernel expects for XX = id on 6.1). */
static const struct {
    int id;
    const char *api, *api_short, *md;
    size_t len;
} hashes[] = {
    {1, "SHA-256", "SHA256", "SHA256", 32},
    {2, "SHA-384", "SHA384", "SHA384", 48},
    {3, "SHA-512", "SHA512", "SHA512", 64},
};

#define NHASH (sizeof hashes / sizeof hashes[0])
#define TRANSFORM_SEED "NVMe-over-Fabrics"

/* K' = HMAC_H(secret, nqn || "NVMe-over-Fabrics") (the kernel's
 * nvme_auth_transform_key, libnvme's nvme_gen_dhchap_key). */
static int transform(int id, const unsigned char *secret, size_t len, const char *nqn,
                     unsigned char *out, size_t *outlen)
{
    const EVP_MD *md = EVP_get_digestbyname(hashes[id - 1].md);
    size_t nl = strlen(nqn), sl = strlen(TRANSFORM_SEED);
    unsigned char *msg = malloc(nl + sl);
    if (md == NULL || msg == NULL) {
        free(msg);
        return -EIO;
    }
    memcpy(msg, nqn, nl);
    memcpy(msg + nl, TRANSFORM_SEED, sl);
    unsigned int ol = 0;
    unsigned char *r = HMAC(md, secret, (int)len, msg, nl + sl, out, &ol);
    free(msg);
    if (r == NULL) {
        return -EIO;
    }
    *outlen = ol;
    return 0;
}

int tgt_dhchap_format(int hmac_id, const unsigned char *secret, size_t len, const char *nqn,
                      char *out, size_t outlen)
{
    if (hmac_id < 0 || hmac_id > 3 || secret == NULL || (len != 32 && len != 48 && len != 64)) {
        return -EINVAL;
    }
    unsigned char key[64 + 4];
    size_t klen = len;
    if (nqn != NULL && hmac_id > 0) {
        int rv = transform(hmac_id, secret, len, nqn, key, &klen);
        if (rv < 0) {
            return rv;
        }
    } else {
        memcpy(key, secret, len);
    }
    uLong crc = crc32(0L, key, (uInt)klen);
    key[klen] = (unsigned char)(crc & 0xff);
    key[klen + 1] = (unsigned char)((crc >> 8) & 0xff);
    key[klen + 2] = (unsigned char)((crc >> 16) & 0xff);
    key[klen + 3] = (unsigned char)((crc >> 24) & 0xff);
    unsigned char b64[128];
    int bl = EVP_EncodeBlock(b64, key, (int)(klen + 4));
    OPENSSL_cleanse(key, sizeof key);
    if (bl < 0) {
        return -EIO;
    }
    int n = snprintf(out, outlen, "DHHC-1:%02d:%s:", hmac_id, (const char *)b64);
    OPENSSL_cleanse(b64, sizeof b64);
    if (n < 0 || (size_t)n >= outlen) {
        return -ENOSPC;
    }
    return n;
}

static void fill_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n <= 0) {
            continue; /* EINTR; getrandom does not fail once seeded */
        }
        p += n;
        len -= (size_t)n;
    }
}

static int local_hostnqn(char *buf, size_t len)
{
    FILE *f = fopen("/etc/nvme/hostnqn", "r");
    if (f == NULL) {
        return -errno;
    }
    char *l = fgets(buf, (int)len, f);
    fclose(f);
    if (l == NULL) {
        return -ENOENT;
    }
    size_t n = strlen(buf);
    while (n > 0 && isspace((unsigned char)buf[n - 1])) {
        buf[--n] = '\0';
    }
    return n > 0 ? 0 : -ENOENT;
}

int tgt_dhchap_generate(const char *hash, const char *nqn,
                        void (*random)(void *ctx, void *buf, size_t len), void *rctx,
                        char *out, size_t outlen, struct nv_err *err)
{
    if (hash == NULL) {
        hash = "SHA-256";
    }
    size_t h = 0;
    while (h < NHASH && strcasecmp(hash, hashes[h].api) != 0 &&
           strcasecmp(hash, hashes[h].api_short) != 0) {
        h++;
    }
    if (h == NHASH) {
        nv_err_call(err, EINVAL, "Unknown dhchap_hash %s (use SHA-256, SHA-384 or SHA-512)", hash);
        return -EINVAL;
    }
    if (random == NULL) {
        random = fill_random;
    }
    char nqnbuf[256];
    if (nqn == NULL) {
        if (local_hostnqn(nqnbuf, sizeof nqnbuf) < 0) {
            /* no /etc/nvme/hostnqn: a UUID NQN like nvme gen-hostnqn */
            unsigned char u[16];
            random(rctx, u, sizeof u);
            u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
            u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
            snprintf(nqnbuf, sizeof nqnbuf,
                     "nqn.2014-08.org.nvmexpress:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-"
                     "%02x%02x-%02x%02x%02x%02x%02x%02x",
                     u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
                     u[12], u[13], u[14], u[15]);
        }
        nqn = nqnbuf;
    }
    unsigned char secret[64];
    random(rctx, secret, hashes[h].len);
    int rv = tgt_dhchap_format(hashes[h].id, secret, hashes[h].len, nqn, out, outlen);
    OPENSSL_cleanse(secret, sizeof secret);
    if (rv < 0) {
        nv_err_call(err, -rv, "Failed to generate a DH-CHAP key: %s", strerror(-rv));
        return rv;
    }
    return 0;
}

static bool b64_char(char c)
{
    return isalnum((unsigned char)c) || c == '+' || c == '/';
}

int tgt_dhchap_check(const char *key, char *msg, size_t msglen)
{
#define BAD(...)                              \
    do {                                      \
        snprintf(msg, msglen, __VA_ARGS__);   \
        return -EINVAL;                       \
    } while (0)
    if (key == NULL) {
        BAD("no key");
    }
    char buf[256];
    size_t n = strlen(key);
    if (n >= sizeof buf) {
        BAD("key too long (%zu characters)", n);
    }
    memcpy(buf, key, n + 1);
    while (n > 0 && isspace((unsigned char)buf[n - 1])) {
        buf[--n] = '\0';
    }
    if (strncmp(buf, "DHHC-1:", 7) != 0) {
        BAD("key does not start with \"DHHC-1:\"");
    }
    if (n < 10 || buf[7] != '0' || buf[8] < '0' || buf[8] > '3' || buf[9] != ':') {
        BAD("key hash id must be 00, 01, 02 or 03");
    }
    /* base64 up to the final ':' (required by the format; tolerated
     * missing, as the kernel does) */
    const char *b = buf + 10;
    size_t bl = n - 10;
    if (bl > 0 && b[bl - 1] == ':') {
        bl--;
    }
    size_t pad = 0;
    for (size_t i = 0; i < bl; i++) {
        if (b[i] == '=') {
            pad++;
        } else if (pad > 0 || !b64_char(b[i])) {
            BAD("key is not valid base64");
        }
    }
    if (bl == 0 || bl % 4 != 0 || pad > 2) {
        BAD("key is not valid base64");
    }
    unsigned char dec[192];
    int dl = EVP_DecodeBlock(dec, (const unsigned char *)b, (int)bl);
    if (dl < 0) {
        BAD("key is not valid base64");
    }
    dl -= (int)pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    if (dl != 36 && dl != 52 && dl != 68) {
        OPENSSL_cleanse(dec, sizeof dec);
        BAD("decoded key length %d is not 36, 52 or 68 (a 32, 48 or 64 byte secret and its CRC)",
            dl);
    }
    size_t kl = (size_t)dl - 4;
    uLong crc = crc32(0L, dec, (uInt)kl);
    uLong stored = (uLong)dec[kl] | (uLong)dec[kl + 1] << 8 | (uLong)dec[kl + 2] << 16 |
                   (uLong)dec[kl + 3] << 24;
    OPENSSL_cleanse(dec, sizeof dec);
    if (crc != stored) {
        BAD("key CRC mismatch (stored 0x%08lx, computed 0x%08lx)", stored, crc);
    }
    if (msglen > 0) {
        msg[0] = '\0';
    }
    return 0;
#undef BAD
}
