/* The msgpack frame scanner: the size of the next message from its
 * headers alone, so an oversized or malformed frame is refused before it
 * is buffered (rpc server); and the decoding of one complete message into
 * a request. */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "server_int.h"

/* ------------------------------------------------------------------ */
/* framing: where does one msgpack object end? */

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* The item starting at p: header bytes, then either body bytes (str, bin,
 * ext payload) or child items (array, map). 0 = need more bytes. */
static int item_head(const uint8_t *p, size_t avail, size_t *hdr, uint64_t *body, uint64_t *items)
{
    uint8_t b = p[0];
    size_t lenbytes = 0, extra = 0;
    enum { FIXED, BODY, ARRAY, MAP } kind = FIXED;
    *body = 0;
    *items = 0;
    *hdr = 1;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        return 1;
    }
    if (b <= 0x8f) {
        *items = 2u * (b & 0x0fu);
        return 1;
    }
    if (b <= 0x9f) {
        *items = b & 0x0fu;
        return 1;
    }
    if (b <= 0xbf) {
        *body = b & 0x1fu;
        return 1;
    }
    switch (b) {
        case 0xc4:
        case 0xd9:
            kind = BODY;
            lenbytes = 1;
            break;
        case 0xc5:
        case 0xda:
            kind = BODY;
            lenbytes = 2;
            break;
        case 0xc6:
        case 0xdb:
            kind = BODY;
            lenbytes = 4;
            break;
        case 0xc7:
            kind = BODY;
            lenbytes = 1;
            extra = 1;
            break;
        case 0xc8:
            kind = BODY;
            lenbytes = 2;
            extra = 1;
            break;
        case 0xc9:
            kind = BODY;
            lenbytes = 4;
            extra = 1;
            break;
        case 0xcc:
        case 0xd0:
            *hdr = 2;
            return 1;
        case 0xcd:
        case 0xd1:
            *hdr = 3;
            return 1;
        case 0xca:
        case 0xce:
        case 0xd2:
            *hdr = 5;
            return 1;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            *hdr = 9;
            return 1;
        case 0xd4:
            *hdr = 3;
            return 1;
        case 0xd5:
            *hdr = 4;
            return 1;
        case 0xd6:
            *hdr = 6;
            return 1;
        case 0xd7:
            *hdr = 10;
            return 1;
        case 0xd8:
            *hdr = 18;
            return 1;
        case 0xdc:
            kind = ARRAY;
            lenbytes = 2;
            break;
        case 0xdd:
            kind = ARRAY;
            lenbytes = 4;
            break;
        case 0xde:
            kind = MAP;
            lenbytes = 2;
            break;
        case 0xdf:
            kind = MAP;
            lenbytes = 4;
            break;
        default: /* 0xc1: never used */
            return -1;
    }
    if (avail < 1 + lenbytes) {
        return 0;
    }
    uint64_t n = be(p + 1, lenbytes);
    *hdr = 1 + lenbytes + extra;
    if (kind == BODY) {
        *body = n;
    } else if (kind == ARRAY) {
        *items = n;
    } else {
        *items = 2 * n;
    }
    (void)FIXED;
    return 1;
}

/* Advance over buf[0, len) (the current message so far). A message must be
 * an array; every announced size is checked against max before waiting
 * for its bytes (each child item takes at least one byte). */
int srv__frame_scan(struct frame_scan *s, const uint8_t *buf, size_t len, size_t max,
                    const char **why)
{
    if (s->pos == 0 && len > 0 && !(buf[0] >= 0x90 && buf[0] <= 0x9f) && buf[0] != 0xdc &&
        buf[0] != 0xdd) {
        *why = "message is not an array";
        return SCAN_BAD;
    }
    for (;;) {
        if (s->pos >= len) {
            return SCAN_MORE;
        }
        size_t hdr;
        uint64_t body, items;
        int r = item_head(buf + s->pos, len - s->pos, &hdr, &body, &items);
        if (r < 0) {
            *why = "invalid msgpack type byte";
            return SCAN_BAD;
        }
        if (r == 0) {
            return SCAN_MORE;
        }
        if ((uint64_t)s->pos + hdr + body > max || (uint64_t)s->pos + hdr + items > max) {
            *why = "message larger than the frame limit";
            return SCAN_BIG;
        }
        if (s->pos + hdr + body > len) {
            return SCAN_MORE;
        }
        s->pos += hdr + (size_t)body;
        if (items > 0) {
            if (s->depth == MAX_DEPTH) {
                *why = "message nested too deeply";
                return SCAN_BAD;
            }
            s->left[s->depth++] = items;
            continue;
        }
        /* an item completed: so may its containers */
        while (s->depth > 0 && --s->left[s->depth - 1] == 0) {
            s->depth--;
        }
        if (s->depth == 0) {
            return SCAN_DONE;
        }
    }
}

/* ------------------------------------------------------------------ */
/* one complete message -> request */

static const char *request_fields(const msgpack_object *a, struct srv_request *rq)
{
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 != 0) {
        return "message type is not 0 (request)";
    }
    if (a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[1].via.u64 <= INT64_MAX) {
        rq->msgid = (int64_t)a[1].via.u64;
    } else if (a[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        rq->msgid = a[1].via.i64;
    } else {
        return "msgid is not an integer";
    }
    if (a[2].type != MSGPACK_OBJECT_STR || a[2].via.str.size == 0 ||
        a[2].via.str.size >= sizeof rq->method ||
        memchr(a[2].via.str.ptr, '\0', a[2].via.str.size) != NULL) {
        return "method is not a name";
    }
    memcpy(rq->method, a[2].via.str.ptr, a[2].via.str.size);
    rq->method[a[2].via.str.size] = '\0';
    return NULL;
}

int srv__decode_request(const char *p, size_t n, struct srv_request *rq, const char **why)
{
    memset(rq, 0, sizeof *rq);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    const char *bad = NULL;
    if (msgpack_unpack_next(&u, p, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n) {
        bad = "undecodable msgpack";
    } else if (u.data.type != MSGPACK_OBJECT_ARRAY || u.data.via.array.size != 4) {
        bad = "not a request [0, msgid, method, params]";
    } else {
        bad = request_fields(u.data.via.array.ptr, rq);
    }
    if (bad == NULL && u.data.via.array.ptr[3].type == MSGPACK_OBJECT_ARRAY) {
        rq->params = nv_from_msgpack(&u.data.via.array.ptr[3]);
    }
    msgpack_unpacked_destroy(&u);
    if (bad != NULL) {
        *why = bad;
        return -EBADMSG;
    }
    return 0;
}
