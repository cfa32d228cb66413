/* nv: the dynamic value tree shared by every module (msgpack-shaped: nil,
 * bool, int, float, str, array, map with ordered string keys), plus msgpack
 * encode/decode.
 *
 * Ownership: every constructor returns a new value owned by the caller
 * (NULL only when out of memory). nv_push/nv_set TAKE ownership of the value
 * they are given, also when they fail (it is freed then). Getters return
 * BORROWED pointers that stay valid until the container is modified or freed.
 * Strings are copied on construction and always NUL-terminated (a NUL inside
 * is kept; use len for binary-safe access). */
#ifndef NV_H
#define NV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msgpack_object;
struct msgpack_packer;

enum nv_type { NV_NIL, NV_BOOL, NV_INT, NV_FLOAT, NV_STR, NV_ARR, NV_MAP };

struct nv;
struct nv_kv {
    char *k;
    struct nv *v;
};

struct nv {
    enum nv_type t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            char *p;
            size_t len;
        } s;
        struct {
            struct nv **v;
            size_t n, cap;
        } a;
        struct {
            struct nv_kv *kv;
            size_t n, cap;
        } m;
    } u;
};

/* constructors */
struct nv *nv_nil(void);
struct nv *nv_bool(bool b);
struct nv *nv_int(int64_t i);
struct nv *nv_float(double f);
struct nv *nv_str(const char *s);            /* s copied; NULL gives nil */
struct nv *nv_strn(const char *s, size_t n); /* n bytes copied */
struct nv *nv_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct nv *nv_arr(void);
struct nv *nv_map(void);
struct nv *nv_copy(const struct nv *v); /* deep copy; NULL gives NULL */
void nv_free(struct nv *v);             /* NULL is fine */

/* containers: take ownership of v (freed on failure). 0 or -ENOMEM. */
int nv_push(struct nv *arr, struct nv *v);
int nv_set(struct nv *map, const char *key, struct nv *v); /* replaces, keeps position */
/* Convenience setters for maps (return 0 or -ENOMEM). */
int nv_set_str(struct nv *map, const char *key, const char *s); /* NULL s sets nil */
int nv_set_int(struct nv *map, const char *key, int64_t i);
int nv_set_bool(struct nv *map, const char *key, bool b);
int nv_set_nil(struct nv *map, const char *key);

/* lookups (borrowed). nv_get returns NULL if map is not a map or key missing. */
struct nv *nv_get(const struct nv *map, const char *key);
struct nv *nv_at(const struct nv *arr, size_t i); /* NULL if out of range */
size_t nv_len(const struct nv *v); /* items of arr/map, bytes of str, else 0 */
bool nv_del(struct nv *map, const char *key);
struct nv *nv_take(struct nv *map, const char *key); /* remove, caller owns */

/* typed reads with defaults (no coercion between types) */
bool nv_is(const struct nv *v, enum nv_type t);
const char *nv_get_str(const struct nv *map, const char *key); /* NULL unless str */
int64_t nv_get_int(const struct nv *map, const char *key, int64_t dflt);
bool nv_get_bool(const struct nv *map, const char *key, bool dflt);
bool nv_get_is_nil(const struct nv *map, const char *key); /* present and nil */

/* Deep structural equality. Ints and floats compare numerically; bools
 * are NOT equal to ints here (the query engine implements Python's rules). */
bool nv_equal(const struct nv *a, const struct nv *b);

/* msgpack. nv_pack writes v to an open packer (0 or -ENOMEM).
 * nv_encode allocates *buf with malloc (caller frees).
 * nv_from_msgpack converts a decoded object (bin/ext become str; uint above
 * INT64_MAX becomes float). nv_decode decodes exactly one object from buf
 * and sets *used to the bytes consumed (trailing bytes are allowed: raft
 * entries are zero-padded); NULL on malformed or truncated input, or sizes
 * that the bytes cannot hold (checked before anything is allocated). */
int nv_pack(struct msgpack_packer *pk, const struct nv *v);
int nv_encode(const struct nv *v, char **buf, size_t *len);
struct nv *nv_from_msgpack(const struct msgpack_object *o);
struct nv *nv_decode(const void *buf, size_t len, size_t *used);

/* msgpack framing without decoding or allocating: where one object starts
 * at buf[0] ends, from its headers alone. Resumable: s starts zeroed and
 * keeps its place, call again with more bytes (buf is the same object, now
 * longer). Every announced size is checked against max before waiting for
 * its bytes, and every child item takes at least one byte, so a header
 * announcing 2^32 items or a 4 GiB string fails at once.
 * NV_SCAN_MORE: incomplete; NV_SCAN_DONE: s->pos bytes make the object;
 * NV_SCAN_BAD (*why): malformed or nested deeper than NV_SCAN_DEPTH;
 * NV_SCAN_BIG (*why): a size above max. */
#define NV_SCAN_DEPTH 30 /* nesting; msgpack-c's own limit is 32 */
struct nv_scan {
    size_t pos;
    unsigned depth;
    uint64_t left[NV_SCAN_DEPTH]; /* items still to come at each depth */
};
enum { NV_SCAN_MORE, NV_SCAN_DONE, NV_SCAN_BAD, NV_SCAN_BIG };
int nv_scan(struct nv_scan *s, const uint8_t *buf, size_t len, size_t max, const char **why);

/* A compact JSON-like rendering for logs and test failure messages (not a
 * JSON encoder for clients; nvmetctl uses json-c). Caller frees. */
char *nv_dump(const struct nv *v);

#endif
