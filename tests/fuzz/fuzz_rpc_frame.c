/* The rpc server's read path on one connection: a byte stream, cut into
 * reads at arbitrary boundaries, goes through the frame scanner the way
 * server.c's process() drives it, and every complete message is decoded
 * into a request (msgid, method, params as nv values).
 *
 * Input: [cut seed][frame limit][stream bytes...]. Each read is handed to
 * the scanner in a buffer of exactly the bytes received so far, so a read
 * past them is an ASan report.
 * Properties: the messages found and the final verdict are the same
 * whatever the cuts; decoded params encode, decode and encode again to
 * the same bytes. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "nv.h"
#include "server_int.h"

struct outcome {
    size_t messages;
    size_t consumed; /* bytes of complete messages */
    int verdict;     /* NV_SCAN_MORE at the end of the stream, NV_SCAN_BAD or NV_SCAN_BIG */
    uint64_t digest; /* of the message lengths */
};

static void check_params(const struct nv *params)
{
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0, used = 0;
    FUZZ_CHECK(nv_encode(params, &a, &al) == 0);
    struct nv *back = nv_decode(a, al, &used);
    FUZZ_CHECK(back != NULL && used == al);
    FUZZ_CHECK(nv_encode(back, &b, &bl) == 0);
    FUZZ_CHECK(al == bl && memcmp(a, b, al) == 0);
    free(nv_dump(back));
    nv_free(back);
    free(a);
    free(b);
}

static void on_message(const char *msg, size_t n)
{
    struct srv_request rq;
    const char *why = NULL;
    if (srv__decode_request(msg, n, &rq, &why) < 0) {
        /* the scanner delimited a whole msgpack object: it must decode */
        FUZZ_CHECK(strcmp(why, "undecodable msgpack") != 0);
        return;
    }
    FUZZ_CHECK(strlen(rq.method) > 0);
    if (rq.params != NULL) {
        check_params(rq.params);
        nv_free(rq.params);
    }
}

/* Feed the stream in reads of the given sizes (0 = all at once) and scan
 * like process(): a message starts where the previous one ended. */
static void run(const uint8_t *s, size_t n, size_t max, uint64_t seed, bool decode,
                struct outcome *o)
{
    memset(o, 0, sizeof *o);
    o->verdict = NV_SCAN_MORE;
    struct nv_scan sc;
    memset(&sc, 0, sizeof sc);
    size_t off = 0, len = 0;
    while (len < n) {
        size_t cut = n - len;
        if (seed != 0) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            cut = 1 + (size_t)(seed % (1u + (seed >> 60) * 9u));
            cut = cut < n - len ? cut : n - len;
        }
        len += cut;
        /* exactly the unconsumed bytes received so far */
        uint8_t *buf = malloc(len - off);
        FUZZ_CHECK(buf != NULL);
        memcpy(buf, s + off, len - off);
        size_t at = 0;
        for (;;) {
            const char *why = NULL;
            int r = srv__frame_scan(&sc, buf + at, len - off - at, max, &why);
            if (r == NV_SCAN_MORE) {
                break;
            }
            if (r != NV_SCAN_DONE) {
                FUZZ_CHECK(why != NULL);
                o->verdict = r;
                free(buf);
                return;
            }
            FUZZ_CHECK(sc.pos > 0 && sc.pos <= len - off - at && sc.pos <= max);
            if (decode) {
                on_message((const char *)buf + at, sc.pos);
            }
            o->messages++;
            o->consumed += sc.pos;
            o->digest = o->digest * 1000003u + sc.pos;
            at += sc.pos;
            memset(&sc, 0, sizeof sc);
            if (at == len - off) {
                break;
            }
        }
        off += at;
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t cut = fuzz_u8(&in), lim = fuzz_u8(&in);
    /* small limits reach the "too big" paths; 0 is the server's default */
    size_t max = lim == 0 ? DEFAULT_MAX_FRAME : 16u + (size_t)lim * 8u;
    struct outcome whole, split;
    run(in.p, in.n, max, 0, true, &whole);
    run(in.p, in.n, max, 0x9e3779b97f4a7c15ULL ^ cut, false, &split);
    FUZZ_CHECK(whole.messages == split.messages && whole.consumed == split.consumed &&
               whole.verdict == split.verdict && whole.digest == split.digest);
    return 0;
}
