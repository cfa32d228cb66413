/* The Raft transport's inbound side as a stranger sees it (cons_tr.h).
 *
 * Input: [mode][cuts][stream]. mode % 4 selects how the stream arrives:
 *   0, 3  plaintext (the insecure mode)
 *   1     TLS records to a server in PSK mode (node 1's context)
 *   2     TLS records to a server in certificate mode
 * and bit 0x10 lowers the frame checker's caps (header 256, payload 4096
 * bytes) so the cap checks are reachable with short inputs. The stream is
 * fed in pieces of 1..cuts bytes (a fixed sequence per value; 0: whole).
 *
 * The accepting side runs what cons_tr.c runs: the libraft handshake
 * decoder (cons_wire_hs_feed), the authorization (cons_tls_peer_id when
 * TLS, not our own id, a member of {1, 2, 3}) and the frame checker
 * (cons_wire_feed) on the rest. OpenSSL's randomness is fixed (fuzz_tls.h),
 * so a recorded client flight completes the handshake and its application
 * data reaches the decoders.
 *
 * Properties:
 *   - the cuts change nothing: the plaintext fed whole gives the same
 *     verdict, the same handshake fields and the same bytes passed on;
 *   - every message passed on is one libraft could have encoded: a known
 *     type, a header length for that type within the cap, the payload its
 *     header announces (recomputed here) within the cap and passed whole
 *     before the next header, a RequestVote naming the peer as candidate;
 *   - an accepted handshake names a nonzero member id other than ours with
 *     a printable address;
 *   - TLS completes only with a credential: the PSK (a resumed PSK
 *     session) or a verified client certificate. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cons_tr.h"
#include "fuzz.h"
#include "fuzz_tls.h"

#define SELF_ID 1u
#define SMALL_HEADER 256u
#define SMALL_PAYLOAD 4096u

enum verdict { V_PENDING, V_HANDSHAKE, V_AUTHORIZE, V_FRAME };

/* One inbound connection past TCP/TLS: what cons_tr.c keeps per conn. */
struct inbound {
    SSL *ssl; /* NULL in plaintext */
    bool small;
    enum verdict verdict;
    bool open; /* handshake accepted, frames go to the checker */
    struct cons_wire_hs hs;
    struct cons_wire wire;
    char why[128];
    /* what the checker passed on */
    uint8_t *out;
    size_t out_len, out_cap;
    uint64_t payload_left; /* recomputed from the headers passed */
};

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

static void in_init(struct inbound *in, SSL *ssl, bool small)
{
    memset(in, 0, sizeof *in);
    in->ssl = ssl;
    in->small = small;
    cons_wire_hs_init(&in->hs);
}

static void in_free(struct inbound *in)
{
    if (in->open) {
        cons_wire_free(&in->wire);
    }
    free(in->out);
}

/* The payload a header announces, recomputed from libraft's format. */
static uint64_t announced(const uint8_t *hdr, uint64_t type, uint64_t h, uint64_t peer)
{
    const uint8_t *b = hdr + 16;
    uint64_t total = 0;
    switch (type) {
        case 1: /* AppendEntries */
            FUZZ_CHECK(h >= 48 && (h - 48) % 16 == 0 && get64(b + 32) == (h - 48) / 16);
            for (uint64_t i = 0; i < (h - 48) / 16; i++) {
                const uint8_t *e = b + 40 + 16 * i;
                FUZZ_CHECK(e[8] >= 1 && e[8] <= 3 && get32(e + 12) % 8 == 0);
                total += get32(e + 12);
            }
            return total;
        case 2:
        case 6:
            FUZZ_CHECK(h == 24);
            return 0;
        case 3:
            FUZZ_CHECK((h == 32 || h == 40) && get64(b + 8) == peer);
            return 0;
        case 4:
            FUZZ_CHECK(h == 16 || h == 24);
            return 0;
        case 5: /* InstallSnapshot: configuration, then the data length */
            FUZZ_CHECK(h >= 65 && get64(b + 32) == h - 56 && b[40] == 1 && get64(b + 41) > 0);
            total = get64(b + 40 + (h - 56));
            FUZZ_CHECK(total > 0);
            return total;
        default:
            FUZZ_CHECK(!"a message of unknown type was passed on");
            return 0;
    }
}

static void passed(void *arg, const uint8_t *p, size_t n)
{
    struct inbound *in = arg;
    FUZZ_CHECK(n > 0);
    if (in->payload_left > 0) {
        FUZZ_CHECK(n <= in->payload_left);
        in->payload_left -= n;
    } else {
        /* a message's preamble and header, whole */
        FUZZ_CHECK(n >= 16);
        uint64_t type = get64(p), h = get64(p + 8);
        FUZZ_CHECK(h > 0 && h <= in->wire.max_header && n == 16 + h);
        in->payload_left = announced(p, type, h, in->wire.peer_id);
        FUZZ_CHECK(in->payload_left == in->wire.payload_left);
        FUZZ_CHECK(in->payload_left <= in->wire.max_payload);
    }
    if (in->out_len + n > in->out_cap) {
        size_t cap = in->out_cap ? in->out_cap : 256;
        while (cap < in->out_len + n) {
            cap *= 2;
        }
        in->out = realloc(in->out, cap);
        FUZZ_CHECK(in->out != NULL);
        in->out_cap = cap;
    }
    memcpy(in->out + in->out_len, p, n);
    in->out_len += n;
}

static bool member(uint64_t id)
{
    return id == 1 || id == 2 || id == 3;
}

/* cons_tr.c's inbound_authorize: the authenticated identity must be the
 * one the handshake claims, not ours, a member. */
static bool authorize(struct inbound *in)
{
    const char *why = NULL;
    uint64_t id = in->hs.id;
    FUZZ_CHECK(id != 0);
    if (in->ssl != NULL) {
        uint64_t peer = cons_tls_peer_id(in->ssl, id, &why);
        FUZZ_CHECK(peer == 0 || peer == id);
        if (peer == 0) {
            FUZZ_CHECK(why != NULL && *why != '\0');
            snprintf(in->why, sizeof in->why, "%s", why);
            return false;
        }
    }
    if (id == SELF_ID || !member(id)) {
        snprintf(in->why, sizeof in->why, "not a peer");
        return false;
    }
    return true;
}

static void check_address(const struct inbound *in)
{
    size_t alen = in->hs.need - CONS_WIRE_HANDSHAKE_FIXED;
    size_t len = strnlen(in->hs.address, sizeof in->hs.address);
    FUZZ_CHECK(len > 0 && len < alen && alen <= CONS_WIRE_MAX_ADDRESS && alen % 8 == 0);
    for (size_t i = 0; i < len; i++) {
        FUZZ_CHECK(in->hs.address[i] >= 0x21 && in->hs.address[i] <= 0x7e);
    }
}

static void wire_in(struct inbound *in, const uint8_t *p, size_t len)
{
    int rv = cons_wire_feed(&in->wire, p, len, passed, in);
    FUZZ_CHECK(rv == 0 || rv == -EPROTO);
    if (rv < 0) {
        FUZZ_CHECK(in->wire.why[0] != '\0');
        snprintf(in->why, sizeof in->why, "%s", in->wire.why);
        in->verdict = V_FRAME;
    }
}

/* Plaintext from the peer, in the pieces it arrived in. */
static void in_feed(struct inbound *in, const uint8_t *p, size_t len)
{
    if (in->verdict != V_PENDING || len == 0) {
        return;
    }
    if (in->open) {
        wire_in(in, p, len);
        return;
    }
    size_t used = 0;
    const char *why = NULL;
    int rv = cons_wire_hs_feed(&in->hs, p, len, &used, &why);
    FUZZ_CHECK(used <= len && rv >= -EPROTO && rv <= 1);
    if (rv < 0) {
        FUZZ_CHECK(rv == -EPROTO && why != NULL);
        snprintf(in->why, sizeof in->why, "%s", why);
        in->verdict = V_HANDSHAKE;
        return;
    }
    if (rv == 0) {
        FUZZ_CHECK(used == len);
        return;
    }
    check_address(in);
    if (!authorize(in)) {
        in->verdict = V_AUTHORIZE;
        return;
    }
    FUZZ_CHECK(member(in->hs.id) && in->hs.id != SELF_ID);
    in->open = true;
    cons_wire_init(&in->wire, in->hs.id);
    if (in->small) {
        in->wire.max_header = SMALL_HEADER;
        in->wire.max_payload = SMALL_PAYLOAD;
    }
    if (used < len) {
        wire_in(in, p + used, len - used);
    }
}

static void same(const struct inbound *a, const struct inbound *b)
{
    FUZZ_CHECK(a->verdict == b->verdict && a->open == b->open);
    FUZZ_CHECK(strcmp(a->why, b->why) == 0);
    FUZZ_CHECK(a->hs.have == b->hs.have && a->hs.id == b->hs.id);
    FUZZ_CHECK(!a->open || strcmp(a->hs.address, b->hs.address) == 0);
    FUZZ_CHECK(a->out_len == b->out_len);
    FUZZ_CHECK(a->out_len == 0 || memcmp(a->out, b->out, a->out_len) == 0);
    FUZZ_CHECK(!a->open || a->wire.messages == b->wire.messages);
    FUZZ_CHECK(a->payload_left == b->payload_left);
}

/* Piece lengths: 1..cuts from a fixed sequence (cuts 0: one piece). */
struct cutter {
    unsigned cuts;
    uint32_t x;
};

static size_t next_piece(struct cutter *c, size_t left)
{
    if (c->cuts == 0) {
        return left;
    }
    c->x ^= c->x << 13;
    c->x ^= c->x >> 17;
    c->x ^= c->x << 5;
    size_t n = 1 + c->x % c->cuts;
    return n < left ? n : left;
}

/* Plaintext mode: cut vs whole. */
static void plain(const uint8_t *p, size_t n, unsigned cuts, bool small)
{
    struct inbound cut, whole;
    in_init(&cut, NULL, small);
    in_init(&whole, NULL, small);
    struct cutter c = {cuts, 0x9e3779b9u + cuts};
    for (size_t off = 0; off < n && cut.verdict == V_PENDING;) {
        size_t k = next_piece(&c, n - off);
        in_feed(&cut, p + off, k);
        off += k;
    }
    in_feed(&whole, p, n);
    same(&cut, &whole);
    in_free(&cut);
    in_free(&whole);
}

/* The application data of an established connection, as it arrives. */
static void tls_read(SSL *ssl, struct inbound *in, uint8_t **plain, size_t *plen, bool *closed)
{
    uint8_t buf[4096];
    while (!*closed) {
        int r = SSL_read(ssl, buf, sizeof buf);
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);
            *closed = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
            return;
        }
        in_feed(in, buf, (size_t)r);
        uint8_t *np = realloc(*plain, *plen + (size_t)r);
        FUZZ_CHECK(np != NULL);
        memcpy(np + *plen, buf, (size_t)r);
        *plain = np;
        *plen += (size_t)r;
    }
}

/* TLS mode: records in pieces into a server connection (memory BIOs),
 * what it writes back discarded; then the plaintext fed whole again. */
static void tls(enum cons_tr_mode mode, const uint8_t *p, size_t n, unsigned cuts, bool small)
{
    fuzz_tls_init(); /* first, or its draws would follow the reset */
    fuzz_tls_rand_reset(FUZZ_TLS_SERVER);
    SSL *ssl = cons_tls_conn(fuzz_tls_node(mode, SELF_ID), 0);
    FUZZ_CHECK(ssl != NULL);
    struct inbound in;
    in_init(&in, ssl, small);
    struct cutter c = {cuts, 0x9e3779b9u + cuts};
    bool established = false, closed = false;
    uint8_t *text = NULL;
    size_t tlen = 0;
    for (size_t off = 0; off < n && !closed && in.verdict == V_PENDING;) {
        size_t k = next_piece(&c, n - off);
        FUZZ_CHECK(BIO_write(SSL_get_rbio(ssl), p + off, (int)k) == (int)k);
        off += k;
        ERR_clear_error();
        if (!established) {
            int r = SSL_do_handshake(ssl);
            if (r != 1) {
                int e = SSL_get_error(ssl, r);
                closed = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
            }
            established = r == 1;
        }
        if (established) {
            tls_read(ssl, &in, &text, &tlen, &closed);
        }
        BIO_reset(SSL_get_wbio(ssl)); /* what the server sends: nobody reads it */
    }
    if (established) {
        FUZZ_CHECK(SSL_version(ssl) == TLS1_3_VERSION);
        if (mode == CONS_TR_PSK) {
            FUZZ_CHECK(SSL_session_reused(ssl));
        } else {
            FUZZ_CHECK(SSL_get0_peer_certificate(ssl) != NULL &&
                       SSL_get_verify_result(ssl) == X509_V_OK);
        }
        struct inbound whole;
        in_init(&whole, ssl, small);
        in_feed(&whole, text, tlen);
        same(&in, &whole);
        in_free(&whole);
    } else {
        FUZZ_CHECK(tlen == 0 && !in.open);
    }
    ERR_clear_error();
    free(text);
    in_free(&in);
    SSL_free(ssl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t sel = fuzz_u8(&in);
    unsigned cuts = fuzz_u8(&in);
    bool small = (sel & 0x10) != 0;
    switch (sel % 4) {
        case 1:
            tls(CONS_TR_PSK, in.p, in.n, cuts, small);
            break;
        case 2:
            tls(CONS_TR_CERT, in.p, in.n, cuts, small);
            break;
        default:
            plain(in.p, in.n, cuts, small);
            break;
    }
    return 0;
}
