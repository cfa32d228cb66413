/* consensus: Raft addresses, libraft's connection handshake and the
 * inbound frame checker (cons_tr.h). No I/O here.
 *
 * libraft 0.15's wire format, little-endian u64 unless noted:
 *   handshake: protocol (1), node id, address length L (a multiple of 8),
 *              L bytes of NUL-terminated, zero-padded address;
 *   message:   preamble type, header length H; H bytes of header; then a
 *              payload whose length the header determines.
 * Header of each type as libraft's encoder writes it (its decoder reads
 * these offsets without checking them against H):
 *   1 AppendEntries        term, prev index, prev term, commit, n, then n
 *                          entry headers (term u64, type u8, 3 unused,
 *                          length u32), and 8 unused bytes: H = 48 + 16 n;
 *                          payload = the n entries, each a multiple of 8
 *   2 AppendEntriesResult  H = 24
 *   3 RequestVote          term, candidate id, last index, last term
 *                          [, flags]: H = 32 or 40
 *   4 RequestVoteResult    H = 16 or 24
 *   5 InstallSnapshot      term, last index, last term, conf index, conf
 *                          length C, C bytes of configuration, data length
 *                          D, 8 unused bytes: H = 56 + C; payload D bytes
 *   6 TimeoutNow           H = 24 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cons_tr.h"

/* ------------------------------------------------------------------ */
/* addresses */

static int parse_port(const char *text, int *port)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || errno != 0 || *end != '\0' || v == 0 || v > 65535) {
        return -EINVAL;
    }
    *port = (int)v;
    return 0;
}

int cons_parse_addr(const char *address, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[64];
    const char *port_text;
    if (address == NULL || strlen(address) >= sizeof host) {
        return -EINVAL;
    }
    memset(sa, 0, sizeof *sa);
    int port = 0;
    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (close == NULL || close[1] != ':') {
            return -EINVAL;
        }
        size_t hl = (size_t)(close - address - 1);
        memcpy(host, address + 1, hl);
        host[hl] = '\0';
        port_text = close + 2;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        if (hl == 0 || parse_port(port_text, &port) < 0 || strchr(host, ':') == NULL ||
            uv_ip6_addr(host, port, s6) != 0) {
            return -EINVAL;
        }
        *len = sizeof *s6;
        return 0;
    }
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address) {
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - address);
    memcpy(host, address, hl);
    host[hl] = '\0';
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    if (parse_port(colon + 1, &port) < 0 || inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
        return -EINVAL;
    }
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return 0;
}

/* ------------------------------------------------------------------ */
/* little-endian helpers */

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* ------------------------------------------------------------------ */
/* handshake */

size_t cons_wire_handshake_encode(uint64_t id, const char *address, uint8_t *buf, size_t cap)
{
    size_t alen = (strlen(address) + 1 + 7) & ~(size_t)7;
    size_t total = CONS_WIRE_HANDSHAKE_FIXED + alen;
    if (alen > CONS_WIRE_MAX_ADDRESS || total > cap) {
        return 0;
    }
    memset(buf, 0, total);
    put64(buf, CONS_WIRE_PROTOCOL);
    put64(buf + 8, id);
    put64(buf + 16, alen);
    memcpy(buf + CONS_WIRE_HANDSHAKE_FIXED, address, strlen(address));
    return total;
}

void cons_wire_hs_init(struct cons_wire_hs *h)
{
    memset(h, 0, sizeof *h);
    h->need = CONS_WIRE_HANDSHAKE_FIXED;
}

static int hs_fixed(struct cons_wire_hs *h, const char **why)
{
    uint64_t proto = get64(h->buf), id = get64(h->buf + 8), alen = get64(h->buf + 16);
    if (proto != CONS_WIRE_PROTOCOL) {
        *why = "handshake: unknown protocol version";
        return -EPROTO;
    }
    if (id == 0) {
        *why = "handshake: node id 0";
        return -EPROTO;
    }
    if (alen == 0 || alen > CONS_WIRE_MAX_ADDRESS || alen % 8 != 0) {
        *why = "handshake: bad address length";
        return -EPROTO;
    }
    h->id = id;
    h->need = CONS_WIRE_HANDSHAKE_FIXED + (size_t)alen;
    return 0;
}

int cons_wire_hs_feed(struct cons_wire_hs *h, const uint8_t *p, size_t len, size_t *used,
                      const char **why)
{
    *used = 0;
    while (h->have < h->need) {
        if (*used == len) {
            return 0;
        }
        size_t take = h->need - h->have;
        if (take > len - *used) {
            take = len - *used;
        }
        memcpy(h->buf + h->have, p + *used, take);
        h->have += take;
        *used += take;
        if (h->have == CONS_WIRE_HANDSHAKE_FIXED && h->need == CONS_WIRE_HANDSHAKE_FIXED &&
            hs_fixed(h, why) < 0) {
            return -EPROTO;
        }
    }
    size_t alen = h->need - CONS_WIRE_HANDSHAKE_FIXED;
    const uint8_t *a = h->buf + CONS_WIRE_HANDSHAKE_FIXED;
    const uint8_t *nul = memchr(a, '\0', alen);
    if (nul == NULL || nul == a) {
        *why = "handshake: address not terminated";
        return -EPROTO;
    }
    memcpy(h->address, a, (size_t)(nul - a) + 1);
    for (const uint8_t *c = a; c < nul; c++) {
        if (*c < 0x21 || *c > 0x7e) {
            *why = "handshake: address is not printable";
            return -EPROTO;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* messages */

enum {
    T_APPEND = 1,
    T_APPEND_RESULT,
    T_VOTE,
    T_VOTE_RESULT,
    T_SNAPSHOT,
    T_TIMEOUT_NOW,
};
#define PREAMBLE 16u

void cons_wire_init(struct cons_wire *w, uint64_t peer_id)
{
    memset(w, 0, sizeof *w);
    w->peer_id = peer_id;
    w->max_header = CONS_WIRE_MAX_HEADER;
    w->max_payload = CONS_WIRE_MAX_PAYLOAD;
    w->need = PREAMBLE;
}

void cons_wire_free(struct cons_wire *w)
{
    free(w->hdr);
    w->hdr = NULL;
    w->hdr_cap = 0;
}

static int refuse(struct cons_wire *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct cons_wire *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof w->why, fmt, ap);
    va_end(ap);
    return -EPROTO;
}

/* The preamble: a known type and a header size that type can have. */
static int check_preamble(struct cons_wire *w, uint64_t type, uint64_t h)
{
    if (type < T_APPEND || type > T_TIMEOUT_NOW) {
        return refuse(w, "unknown message type %" PRIu64 " (header %" PRIu64 " bytes)", type, h);
    }
    if (h == 0 || h > w->max_header) {
        return refuse(w, "message type %" PRIu64 ": header of %" PRIu64 " bytes", type, h);
    }
    bool ok;
    switch (type) {
        case T_APPEND:
            ok = h >= 48 && (h - 48) % 16 == 0;
            break;
        case T_APPEND_RESULT:
        case T_TIMEOUT_NOW:
            ok = h == 24;
            break;
        case T_VOTE:
            ok = h == 32 || h == 40;
            break;
        case T_VOTE_RESULT:
            ok = h == 16 || h == 24;
            break;
        default: /* T_SNAPSHOT */
            ok = h >= 56 + 9;
            break;
    }
    return ok ? 0 : refuse(w, "message type %" PRIu64 ": header of %" PRIu64 " bytes", type, h);
}

static int check_append(struct cons_wire *w, const uint8_t *h, uint64_t len)
{
    uint64_t n = get64(h + 32);
    if (n != (len - 48) / 16) {
        return refuse(w, "AppendEntries: batch of %" PRIu64 " entries in a header for %" PRIu64 "",
                      n, (len - 48) / 16);
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = h + 40 + 16 * i;
        uint8_t type = e[8];
        uint32_t elen = get32(e + 12);
        if (type < 1 || type > 3) {
            return refuse(w, "AppendEntries: entry %" PRIu64 " of unknown type %u", i,
                          (unsigned)type);
        }
        if (elen % 8 != 0) {
            return refuse(
                w, "AppendEntries: entry %" PRIu64 " of %" PRIu64 " bytes (not a multiple of 8)", i,
                (uint64_t)elen);
        }
        total += elen;
        if (total > w->max_payload) {
            return refuse(w, "AppendEntries: payload above %" PRIu64 " bytes (%" PRIu64 " entries)",
                          w->max_payload, n);
        }
    }
    w->payload_left = total;
    return 0;
}

/* libraft's configuration encoding: format 1, u64 count, per server u64 id,
 * NUL-terminated address, u8 role; zero-padded to 8. */
static int check_conf(struct cons_wire *w, const uint8_t *c, uint64_t len)
{
    if (len < 9 || c[0] != 1) {
        return refuse(w,
                      "InstallSnapshot: bad configuration (%" PRIu64 " bytes, format %" PRIu64 ")",
                      len, (uint64_t)(len ? c[0] : 0));
    }
    uint64_t n = get64(c + 1), off = 9;
    if (n == 0 || n > len / 10) {
        return refuse(w,
                      "InstallSnapshot: configuration of %" PRIu64 " servers in %" PRIu64 " bytes",
                      n, len);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (len - off < 8 + 2) {
            return refuse(
                w, "InstallSnapshot: configuration server %" PRIu64 " of %" PRIu64 " cut off", i,
                n);
        }
        off += 8;
        const uint8_t *nul = memchr(c + off, '\0', (size_t)(len - off));
        if (nul == NULL || (uint64_t)(nul - c) + 1 >= len) {
            return refuse(
                w, "InstallSnapshot: configuration server %" PRIu64 " of %" PRIu64 " cut off", i,
                n);
        }
        off = (uint64_t)(nul - c) + 2; /* NUL and role */
    }
    if (len - off >= 8) {
        return refuse(w, "InstallSnapshot: configuration has %" PRIu64 " trailing bytes",
                      len - off);
    }
    return 0;
}

static int check_snapshot(struct cons_wire *w, const uint8_t *h, uint64_t len)
{
    uint64_t clen = get64(h + 32);
    if (clen != len - 56) {
        return refuse(
            w, "InstallSnapshot: configuration of %" PRIu64 " bytes in a header of %" PRIu64 "",
            clen, len);
    }
    int rv = check_conf(w, h + 40, clen);
    if (rv < 0) {
        return rv;
    }
    uint64_t data = get64(h + 40 + clen);
    if (data == 0 || data > w->max_payload) {
        return refuse(w, "InstallSnapshot: snapshot of %" PRIu64 " bytes (limit %" PRIu64 ")", data,
                      w->max_payload);
    }
    w->payload_left = data;
    return 0;
}

/* The whole header is in w->hdr (after the preamble). */
static int check_header(struct cons_wire *w)
{
    uint64_t type = get64(w->hdr), len = get64(w->hdr + 8);
    const uint8_t *h = w->hdr + PREAMBLE;
    w->payload_left = 0;
    switch (type) {
        case T_APPEND:
            return check_append(w, h, len);
        case T_SNAPSHOT:
            return check_snapshot(w, h, len);
        case T_VOTE:
            /* A node asks for votes for itself only. */
            if (get64(h + 8) != w->peer_id) {
                return refuse(w, "RequestVote for candidate %" PRIu64 " from node %" PRIu64 "",
                              get64(h + 8), w->peer_id);
            }
            return 0;
        default:
            return 0;
    }
}

static int grow(struct cons_wire *w, size_t size)
{
    if (w->hdr_cap >= size) {
        return 0;
    }
    size_t cap = w->hdr_cap ? w->hdr_cap : 256;
    while (cap < size) {
        cap *= 2;
    }
    uint8_t *p = realloc(w->hdr, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    w->hdr = p;
    w->hdr_cap = cap;
    return 0;
}

int cons_wire_feed(struct cons_wire *w, const uint8_t *p, size_t len,
                   void (*out)(void *arg, const uint8_t *bytes, size_t n), void *arg)
{
    size_t off = 0;
    while (off < len) {
        if (w->payload_left > 0) {
            size_t take = len - off;
            if (take > w->payload_left) {
                take = (size_t)w->payload_left;
            }
            out(arg, p + off, take);
            off += take;
            w->payload_left -= take;
            continue;
        }
        size_t take = w->need - w->have;
        if (take > len - off) {
            take = len - off;
        }
        /* grow with what arrived, not with what the preamble announces:
         * 16 bytes claiming a 16 MiB header must not cost 16 MiB */
        int rv = grow(w, w->have + take);
        if (rv < 0) {
            return rv;
        }
        memcpy(w->hdr + w->have, p + off, take);
        w->have += take;
        off += take;
        if (w->have < w->need) {
            break;
        }
        if (w->need == PREAMBLE) {
            uint64_t type = get64(w->hdr), h = get64(w->hdr + 8);
            rv = check_preamble(w, type, h);
            if (rv < 0) {
                return rv;
            }
            w->need = PREAMBLE + (size_t)h;
            continue;
        }
        rv = check_header(w);
        if (rv < 0) {
            return rv;
        }
        out(arg, w->hdr, w->have);
        w->messages++;
        w->have = 0;
        w->need = PREAMBLE;
        if (w->hdr_cap > 64 * 1024) { /* one big batch header: do not keep it */
            cons_wire_free(w);
        }
    }
    return 0;
}
