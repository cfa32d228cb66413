/* Unit tests of common/: the nv value tree, msgpack round trips, errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <msgpack.h>
#include <time.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"

/* A map keeps insertion order and nv_set replaces in place. */
static void test_map_order_and_replace(void **state)
{
    (void)state;
    struct nv *m = nv_map();
    nv_set_int(m, "b", 1);
    nv_set_str(m, "a", "x");
    nv_set_int(m, "b", 2);
    assert_int_equal(nv_len(m), 2);
    assert_string_equal(m->u.m.kv[0].k, "b");
    assert_int_equal(nv_get_int(m, "b", 0), 2);
    assert_string_equal(nv_get_str(m, "a"), "x");
    assert_null(nv_get(m, "zz"));
    assert_true(nv_del(m, "b"));
    assert_false(nv_del(m, "b"));
    assert_int_equal(nv_len(m), 1);
    nv_free(m);
}

/* msgpack encode/decode round-trips every type, and decode tolerates the
 * zero padding consensus adds after one object. */
static void test_msgpack_roundtrip(void **state)
{
    (void)state;
    struct nv *v = nv_from_json("{\"i\":-5,\"f\":1.5,\"s\":\"h\\u00e9\",\"n\":null,"
                                "\"b\":true,\"a\":[1,[2],{}]}");
    assert_non_null(v);
    char *buf;
    size_t len, used;
    assert_int_equal(nv_encode(v, &buf, &len), 0);
    char *padded = calloc(1, len + 7);
    memcpy(padded, buf, len);
    struct nv *w = nv_decode(padded, len + 7, &used);
    assert_non_null(w);
    assert_int_equal(used, len);
    assert_true(nv_equal(v, w));
    /* truncated input fails */
    assert_null(nv_decode(buf, len - 1, NULL));
    free(buf);
    free(padded);
    nv_free(v);
    nv_free(w);
}

/* An empty map key decodes as "" (msgpack-c gives it a NULL pointer: the
 * fuzzer's UBSan report on strndup(NULL, 0)); empty str/bin/ext values too. */
static void test_msgpack_empty_key(void **state)
{
    (void)state;
    /* {"": 1, "k": ""}; {"b": bin8 of 0 bytes, "e": ext8 of 0 bytes} */
    static const unsigned char a[] = {0x82, 0xa0, 0x01, 0xa1, 'k', 0xa0};
    static const unsigned char b[] = {0x82, 0xa1, 'b', 0xc4, 0x00, 0xa1, 'e', 0xc7, 0x00, 0x05};
    size_t used;
    struct nv *v = nv_decode(a, sizeof a, &used);
    assert_non_null(v);
    assert_int_equal(used, sizeof a);
    assert_int_equal(nv_get_int(v, "", 0), 1);
    assert_string_equal(nv_get_str(v, "k"), "");
    nv_free(v);
    v = nv_decode(b, sizeof b, &used);
    assert_non_null(v);
    assert_int_equal(nv_len(nv_get(v, "b")), 0);
    assert_int_equal(nv_len(nv_get(v, "e")), 0);
    nv_free(v);
}

/* Sizes announced by headers are checked against the bytes before
 * anything is allocated: msgpack-c alone allocated 2^32 array slots for
 * the 5 bytes of an array32 header (fuzz_query, fuzz_command: ASan out of
 * memory); a raft entry or snapshot could carry such a header. */
static void test_msgpack_announced_sizes(void **state)
{
    (void)state;
    static const unsigned char arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const unsigned char map[] = {0x81, 0xa1, 'k', 0xdf, 0xdd, 0xdd, 0xdd, 0xdd};
    static const unsigned char str[] = {0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    size_t used = 99;
    assert_null(nv_decode(arr, sizeof arr, &used));
    assert_int_equal(used, 0);
    assert_null(nv_decode(map, sizeof map, NULL));
    assert_null(nv_decode(str, sizeof str, NULL));
    /* a container whose items are all present still decodes, padding after it too */
    static const unsigned char ok[] = {0xdd, 0x00, 0x00, 0x00, 0x02, 0x01, 0xc0, 0x00, 0x00};
    struct nv *v = nv_decode(ok, sizeof ok, &used);
    assert_non_null(v);
    assert_int_equal(used, 7);
    assert_int_equal(nv_len(v), 2);
    nv_free(v);
}

/* Validation errors render as TrueNAS's reason lines and wire map. */
static void test_err_shape(void **state)
{
    (void)state;
    struct nv_err e;
    nv_err_init(&e);
    assert_false(nv_err_isset(&e));
    nv_err_add(&e, "nvmet_subsys_create.name", EINVAL, "Object with this name already exists");
    nv_err_add(&e, NULL, ENOENT, "NVMetPort %d does not exist", 9);
    char *r = nv_err_reason(&e);
    assert_string_equal(r, "[EINVAL] nvmet_subsys_create.name: Object with this name already "
                           "exists\n[ENOENT] None: NVMetPort 9 does not exist\n");
    free(r);
    struct nv *w = nv_err_to_nv(&e);
    assert_int_equal(nv_get_int(w, "code", 0), -32602);
    assert_string_equal(nv_get_str(w, "errname"), "EINVAL");
    struct nv_err back;
    nv_err_init(&back);
    assert_int_equal(nv_err_from_nv(&back, w), 0);
    assert_int_equal(back.n, 2);
    assert_null(back.items[1].attr);
    assert_int_equal(back.items[1].errnum, ENOENT);
    assert_null(nv_get(w, "committed"));
    assert_false(back.committed);
    nv_free(w);
    nv_err_clear(&back);
    /* a committed write whose render was refused: the flag travels */
    nv_err_call(&back, ENOSPC, "committed, but refused");
    back.committed = true;
    w = nv_err_to_nv(&back);
    assert_true(nv_get_bool(w, "committed", false));
    struct nv_err again;
    nv_err_init(&again);
    assert_int_equal(nv_err_from_nv(&again, w), 0);
    assert_true(again.committed);
    assert_int_equal(again.errnum, ENOSPC);
    nv_err_copy(&back, &again);
    assert_true(back.committed);
    nv_err_clear(&again);
    nv_free(w);
    nv_err_clear(&back);
    nv_err_clear(&e);
    nv_err_call(&e, EFAULT, "Failed to generate a random serial for subsystem");
    r = nv_err_reason(&e);
    assert_string_equal(r, "[EFAULT] Failed to generate a random serial for subsystem");
    free(r);
    nv_err_clear(&e);
}

/* The reason text of a long report is built in linear time: 100,000
 * items (a query's options can hold that many bad values) in well under a
 * second; the quadratic version timed out in fuzz_query with a thousand. */
static void test_err_reason_linear(void **state)
{
    (void)state;
    struct nv_err e;
    nv_err_init(&e);
    for (int i = 0; i < 100000; i++) {
        nv_err_add(&e, "options.order_by", EINVAL, "Input should be a valid string %d", i);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    char *r = nv_err_reason(&e);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(r);
    assert_true((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < 1000);
    const char *first = "[EINVAL] options.order_by: Input should be a valid string 0\n";
    assert_memory_equal(r, first, strlen(first));
    /* the report is capped: the first items, then a count of the rest */
    const char *last = "... and 99980 more errors\n";
    assert_string_equal(r + strlen(r) - strlen(last), last);
    free(r);
    nv_err_clear(&e);
}

/* JSON conversion keeps ints as ints and rejects trailing garbage. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A decoded map with repeated keys behaves as nv_set does (the first
 * position, the last value); a map of 200,000 keys decodes in linear-ish
 * time (it took minutes when every key was looked up in the keys before
 * it). */
static void test_decode_map_keys(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_int(&pk, 2);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_int(&pk, 3);
    msgpack_pack_int(&pk, 7); /* an int key prints in decimal */
    msgpack_pack_int(&pk, 4);
    struct nv *m = nv_decode(sb.data, sb.size, NULL);
    assert_non_null(m);
    assert_int_equal(nv_len(m), 3);
    assert_string_equal(m->u.m.kv[0].k, "b");
    assert_int_equal(nv_get_int(m, "b", 0), 3);
    assert_string_equal(m->u.m.kv[1].k, "a");
    assert_int_equal(nv_get_int(m, "7", 0), 4);
    nv_free(m);
    msgpack_sbuffer_destroy(&sb);

    enum { N = 200000 };
    msgpack_sbuffer_init(&sb);
    msgpack_pack_map(&pk, N);
    char k[16];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "k%d", i);
        msgpack_pack_str_with_body(&pk, k, strlen(k));
        msgpack_pack_int(&pk, i);
    }
    double t0 = now_s();
    m = nv_decode(sb.data, sb.size, NULL);
    struct nv *c = nv_copy(m);
    double took = now_s() - t0;
    printf("# decode + copy of a %d-key map: %.1f ms\n", N, took * 1e3);
    assert_int_equal(nv_len(c), N);
    assert_int_equal(nv_get_int(c, "k199999", 0), N - 1);
    assert_true(took < 5.0); /* quadratic: minutes */
    nv_free(m);
    nv_free(c);
    msgpack_sbuffer_destroy(&sb);
}

/* A report keeps the first NV_ERR_MAX_ITEMS items and counts the rest;
 * the reason and the extra list end with "... and K more errors"; 200,000
 * items build in linear time; a copy (a forwarded error) keeps the count. */
static void test_err_capped(void **state)
{
    (void)state;
    struct nv_err e, c;
    nv_err_init(&e);
    nv_err_init(&c);
    enum { N = 200000 };
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        nv_err_add(&e, "x.options", EINVAL, "key %d: Extra inputs are not permitted", i);
    }
    assert_int_equal(e.n, NV_ERR_MAX_ITEMS);
    assert_int_equal(nv_err_count(&e), N);
    char *reason = nv_err_reason(&e);
    struct nv *v = nv_err_to_nv(&e);
    double took = now_s() - t0;
    printf("# %d items: %.1f ms, reason %zu chars\n", N, took * 1e3, strlen(reason));
    assert_true(took < 5.0);
    assert_true(strlen(reason) < 2000);
    assert_non_null(strstr(reason, "[EINVAL] x.options: key 19: Extra"));
    assert_null(strstr(reason, "key 20:"));
    assert_non_null(strstr(reason, "... and 199980 more errors\n"));
    free(reason);
    const struct nv *extra = nv_get(v, "extra");
    assert_int_equal(nv_len(extra), NV_ERR_MAX_ITEMS + 1);
    const struct nv *last = nv_at(extra, NV_ERR_MAX_ITEMS);
    assert_true(nv_is(nv_at(last, 0), NV_NIL));
    assert_string_equal(nv_at(last, 1)->u.s.p, "... and 199980 more errors");
    assert_int_equal(nv_get_int(v, "code", 0), NV_E_INVALID_PARAMS);
    /* through the wire and back: the same shape */
    assert_int_equal(nv_err_from_nv(&c, v), 0);
    struct nv *v2 = nv_err_to_nv(&c);
    assert_true(nv_equal(v, v2));
    nv_free(v2);
    nv_free(v);
    /* merge carries the count */
    nv_err_clear(&c);
    nv_err_merge(&c, &e);
    assert_int_equal(nv_err_count(&c), N);
    nv_err_clear(&c);
    nv_err_clear(&e);
    /* one dropped item: singular */
    for (int i = 0; i <= NV_ERR_MAX_ITEMS; i++) {
        nv_err_add(&e, NULL, EINVAL, "m");
    }
    reason = nv_err_reason(&e);
    assert_non_null(strstr(reason, "... and 1 more error\n"));
    free(reason);
    nv_err_clear(&e);
}

static void test_json(void **state)
{
    (void)state;
    struct nv *v = nv_from_json(" [1, 2.5, \"x\", {\"k\": null}] ");
    assert_non_null(v);
    assert_int_equal(nv_at(v, 0)->t, NV_INT);
    assert_int_equal(nv_at(v, 1)->t, NV_FLOAT);
    char *s = nv_to_json(v);
    struct nv *w = nv_from_json(s);
    assert_true(nv_equal(v, w));
    free(s);
    nv_free(v);
    nv_free(w);
    assert_null(nv_from_json("[1] x"));
    /* bare scalars are complete documents (a number ends at the end) */
    struct nv *one = nv_from_json("1");
    assert_true(nv_is(one, NV_INT) && one->u.i == 1);
    nv_free(one);
    one = nv_from_json("-2.5");
    assert_true(nv_is(one, NV_FLOAT));
    nv_free(one);
    assert_null(nv_from_json("12x"));
    assert_null(nv_from_json("tank/x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_order_and_replace),
        cmocka_unit_test(test_msgpack_roundtrip),
        cmocka_unit_test(test_msgpack_empty_key),
        cmocka_unit_test(test_msgpack_announced_sizes),
        cmocka_unit_test(test_err_shape),
        cmocka_unit_test(test_err_reason_linear),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_decode_map_keys),
        cmocka_unit_test(test_err_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
