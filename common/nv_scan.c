/* nv_scan: where one msgpack object ends, from its headers alone (see
 * nv.h). The rpc server frames client messages with it; nv_decode checks
 * every announced size with it before msgpack-c allocates for them. */
#include <stddef.h>
#include <stdint.h>

#include "nv.h"

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

int nv_scan(struct nv_scan *s, const uint8_t *buf, size_t len, size_t max, const char **why)
{
    for (;;) {
        if (s->pos >= len) {
            return NV_SCAN_MORE;
        }
        size_t hdr;
        uint64_t body, items;
        int r = item_head(buf + s->pos, len - s->pos, &hdr, &body, &items);
        if (r < 0) {
            *why = "invalid msgpack type byte";
            return NV_SCAN_BAD;
        }
        if (r == 0) {
            return NV_SCAN_MORE;
        }
        if ((uint64_t)s->pos + hdr + body > max || (uint64_t)s->pos + hdr + items > max) {
            *why = "message larger than the frame limit";
            return NV_SCAN_BIG;
        }
        if (s->pos + hdr + body > len) {
            return NV_SCAN_MORE;
        }
        s->pos += hdr + (size_t)body;
        if (items > 0) {
            if (s->depth == NV_SCAN_DEPTH) {
                *why = "message nested too deeply";
                return NV_SCAN_BAD;
            }
            s->left[s->depth++] = items;
            continue;
        }
        /* an item completed: so may its containers */
        while (s->depth > 0 && --s->left[s->depth - 1] == 0) {
            s->depth--;
        }
        if (s->depth == 0) {
            return NV_SCAN_DONE;
        }
    }
}
