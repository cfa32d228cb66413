/* target/: DH-HMAC-CHAP secrets: known answers (the example key of
 * nvme-cli's gen-dhchap-key documentation; keys of the secret 00 01 02 ...
 * computed with Python's zlib and base64), a cross-check of the transform
 * against libnvme's nvme_gen_dhchap_key(), generation and validation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#ifdef HAVE_LIBNVME
#include <nvme/linux.h>
#endif

#include "nv_err.h"
#include "tgt.h"

#define SPEC_KEY "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"
#define SPEC_NQN "nqn.2014-08.org.nvmexpress:uuid:0f01fb42-9f7f-4856-b0b3-51e60b8de349"

static void unhex(const char *hex, unsigned char *out)
{
    for (size_t i = 0; hex[2 * i] != '\0'; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
}

/* base64 body of a DHHC-1 string -> bytes; returns the decoded length. */
static int decode(const char *key, unsigned char *out)
{
    const char *b = key + 10;
    size_t bl = strlen(b) - 1; /* the final ':' */
    size_t pad = (b[bl - 1] == '=') + (b[bl - 2] == '=');
    int n = EVP_DecodeBlock(out, (const unsigned char *)b, (int)bl);
    assert_true(n > 0);
    return n - (int)pad;
}

/* The spec's example key decodes to the documented secret and CRC, passes
 * the check, and formats back to itself. */
static void test_spec_example(void **state)
{
    (void)state;
    unsigned char dec[80], secret[32];
    char msg[200], out[128];
    assert_int_equal(tgt_dhchap_check(SPEC_KEY, msg, sizeof msg), 0);
    assert_int_equal(decode(SPEC_KEY, dec), 36);
    unhex("89aeb31a874eaf84841b46736b0dfdf2ba58d30aa2a545a3e235a3521e07594c", secret);
    assert_memory_equal(dec, secret, 32);
    const unsigned char crc[4] = {0xfa, 0x69, 0x0d, 0xa7}; /* 0xa70d69fa little endian */
    assert_memory_equal(dec + 32, crc, 4);
    assert_int_equal(tgt_dhchap_format(0, secret, 32, NULL, out, sizeof out),
                     (int)strlen(SPEC_KEY));
    assert_string_equal(out, SPEC_KEY);
}

/* The three computed vectors (secret bytes 0x00.., XX = 01/02/03) come
 * out exactly with the transform off (nqn NULL). */
static void test_computed_vectors(void **state)
{
    (void)state;
    static const char *const want[] = {
        "DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:",
        "DHHC-1:02:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vcSEgBQ==:",
        "DHHC-1:03:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4"
        "OTo7PD0+P4zODhA=:",
    };
    unsigned char secret[64];
    for (int i = 0; i < 64; i++) {
        secret[i] = (unsigned char)i;
    }
    for (int h = 1; h <= 3; h++) {
        char out[128], msg[200];
        size_t len = 16 + 16 * (size_t)h;
        assert_int_equal(tgt_dhchap_format(h, secret, len, NULL, out, sizeof out),
                         (int)strlen(want[h - 1]));
        assert_string_equal(out, want[h - 1]);
        assert_int_equal(tgt_dhchap_check(out, msg, sizeof msg), 0);
    }
}

/* The transform is HMAC-SHA-256(spec secret, NQN || "NVMe-over-Fabrics")
 * with the documented result. */
static void test_transform_vector(void **state)
{
    (void)state;
    unsigned char secret[32], want[32], dec[80];
    char out[128];
    unhex("89aeb31a874eaf84841b46736b0dfdf2ba58d30aa2a545a3e235a3521e07594c", secret);
    unhex("a29fa1b4412fa08697776c487b80d62ca204297ca180ed70d9994e5dac3252a9", want);
    assert_true(tgt_dhchap_format(1, secret, 32, SPEC_NQN, out, sizeof out) > 0);
    assert_int_equal(strncmp(out, "DHHC-1:01:", 10), 0);
    assert_int_equal(decode(out, dec), 36);
    assert_memory_equal(dec, want, 32);
}

/* libnvme's nvme_gen_dhchap_key() computes the same transformed key for
 * the three hashes. */
static void test_libnvme_cross_check(void **state)
{
    (void)state;
#ifdef HAVE_LIBNVME
    for (int h = 1; h <= 3; h++) {
        unsigned len = 16 + 16 * (unsigned)h;
        unsigned char secret[64], theirs[64], dec[80];
        for (unsigned i = 0; i < len; i++) {
            secret[i] = (unsigned char)(i * 7 + 3 * (unsigned)h);
        }
        char nqn[] = "nqn.2024-01.com.example:host:server1";
        assert_int_equal(nvme_gen_dhchap_key(nqn, (enum nvme_hmac_alg)h, len, secret, theirs), 0);
        char out[128];
        assert_true(tgt_dhchap_format(h, secret, len, nqn, out, sizeof out) > 0);
        assert_int_equal(decode(out, dec), (int)len + 4);
        assert_memory_equal(dec, theirs, len);
    }
#else
    skip();
#endif
}

static void counter_random(void *ctx, void *buf, size_t len)
{
    unsigned char *c = ctx, *b = buf;
    for (size_t i = 0; i < len; i++) {
        b[i] = (*c)++;
    }
}

/* generate_key: random secret of the hash's length, transformed with the
 * NQN, 59/83/103 characters, valid; unknown hashes are refused. */
static void test_generate(void **state)
{
    (void)state;
    static const char *const hashes[] = {"SHA-256", "SHA-384", "sha512"};
    static const size_t lens[] = {59, 83, 103};
    for (int h = 0; h < 3; h++) {
        unsigned char ctr = 0;
        char out[128], again[128], msg[200];
        struct nv_err err;
        nv_err_init(&err);
        assert_int_equal(tgt_dhchap_generate(hashes[h], SPEC_NQN, counter_random, &ctr, out,
                                             sizeof out, &err),
                         0);
        assert_int_equal(strlen(out), lens[h]);
        assert_int_equal(out[8], '1' + h);
        assert_int_equal(tgt_dhchap_check(out, msg, sizeof msg), 0);
        unsigned char secret[64];
        for (int i = 0; i < 64; i++) {
            secret[i] = (unsigned char)i;
        }
        assert_true(tgt_dhchap_format(h + 1, secret, 32 + 16 * (size_t)h, SPEC_NQN, again,
                                      sizeof again) > 0);
        assert_string_equal(out, again);
        nv_err_clear(&err);
    }
    char out[128];
    struct nv_err err;
    nv_err_init(&err);
    assert_int_equal(tgt_dhchap_generate(NULL, NULL, NULL, NULL, out, sizeof out, &err), 0);
    assert_int_equal(strlen(out), 59);
    assert_int_equal(tgt_dhchap_generate("MD5", NULL, NULL, NULL, out, sizeof out, &err), -EINVAL);
    assert_true(nv_err_isset(&err));
    nv_err_clear(&err);
}

/* The check rejects bad format, hash id, base64, length and CRC. */
static void test_check_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "DHHC-2:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:",
        "DHHC-1:04:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:",
        "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n*:",
        "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2:",
        "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2o:", /* CRC */
        "DHHC-1:00:AAAA:",
        "DHHC-1:00:ia6z=GodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char msg[200] = "";
        assert_int_equal(tgt_dhchap_check(bad[i], msg, sizeof msg), -EINVAL);
        assert_true(msg[0] != '\0');
    }
    char msg[200];
    assert_int_equal(tgt_dhchap_check(SPEC_KEY "\n", msg, sizeof msg), 0);
    /* the final ':' is tolerated missing, as the kernel does */
    assert_int_equal(
        tgt_dhchap_check("DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n", msg,
                         sizeof msg),
        0);
    unsigned char s[32] = {0};
    char out[128];
    assert_int_equal(tgt_dhchap_format(1, s, 31, NULL, out, sizeof out), -EINVAL);
    assert_int_equal(tgt_dhchap_format(4, s, 32, NULL, out, sizeof out), -EINVAL);
    assert_int_equal(tgt_dhchap_format(1, s, 32, NULL, out, 20), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example),   cmocka_unit_test(test_computed_vectors),
        cmocka_unit_test(test_transform_vector), cmocka_unit_test(test_libnvme_cross_check),
        cmocka_unit_test(test_generate),       cmocka_unit_test(test_check_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
