/* consensus: the Raft transport (private to consensus/).
 *
 * libraft 0.15's stock TCP transport accepts anybody and hands every byte
 * to libraft's decoder, which trusts lengths and counts it reads off the
 * wire. This transport replaces it (struct raft_uv_transport):
 *
 *   TCP (IPv4 or IPv6) -> TLS 1.3 (PSK or certificates; plaintext only when
 *   asked for) -> libraft's connection handshake (protocol, node id,
 *   address), checked against the authenticated identity and the current
 *   configuration -> only then libraft gets a uv_stream_t: one end of a
 *   unix socketpair whose other end this transport pumps to and from TLS.
 *
 * Every inbound byte passes the frame checker (cons_wire_*) before it
 * reaches libraft, in every mode: preamble, header size, message type,
 * batch counts and payload lengths must describe a message libraft's own
 * encoder could have produced, within fixed caps. Anything else drops the
 * connection (with a rate-limited log line naming the peer). */
#ifndef CONS_TR_H
#define CONS_TR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct raft_uv_transport;
struct uv_loop_s;

/* ------------------------------------------------------------------ */
/* addresses */

/* "a.b.c.d:port" or "[v6]:port" (a v6 scope "%eth0" is allowed). 0 and
 * *sa (length in *len), or -EINVAL. */
int cons_parse_addr(const char *address, struct sockaddr_storage *sa, socklen_t *len);

/* ------------------------------------------------------------------ */
/* libraft's wire format (0.15), as far as the checker needs it */

/* Caps of the frame checker. A message above them is dropped with its
 * connection; a legitimate peer never sends one: libraft's biggest
 * messages are an AppendEntries carrying the whole log tail after the
 * last snapshot (header 48 + 16 bytes per entry, payload the entries) and
 * an InstallSnapshot carrying the whole snapshot. Raise them together
 * with the snapshot threshold or the state size. */
#define CONS_WIRE_MAX_HEADER ((uint64_t)16 << 20)
#define CONS_WIRE_MAX_PAYLOAD ((uint64_t)64 << 20)
/* Longest address in a connection handshake (libraft pads it to 8). */
#define CONS_WIRE_MAX_ADDRESS 256u
#define CONS_WIRE_PROTOCOL 1u
#define CONS_WIRE_HANDSHAKE_FIXED 24u

/* Encode the handshake a connecting node sends first: protocol, id,
 * address length (padded to 8) and the address. Returns the length, or 0
 * when buf (cap bytes) is too small. */
size_t cons_wire_handshake_encode(uint64_t id, const char *address, uint8_t *buf, size_t cap);

/* Inbound handshake, fed in pieces. */
struct cons_wire_hs {
    uint8_t buf[CONS_WIRE_HANDSHAKE_FIXED + CONS_WIRE_MAX_ADDRESS];
    size_t have, need;
    uint64_t id;
    char address[CONS_WIRE_MAX_ADDRESS];
};
void cons_wire_hs_init(struct cons_wire_hs *h);
/* Consume up to len bytes; *used says how many. 1: complete (id, address
 * set), 0: needs more, -EPROTO: malformed (*why says what). */
int cons_wire_hs_feed(struct cons_wire_hs *h, const uint8_t *p, size_t len, size_t *used,
                      const char **why);

/* Inbound message checker. */
struct cons_wire {
    uint64_t peer_id;     /* authenticated id: a RequestVote must come from it */
    uint64_t max_header;  /* CONS_WIRE_MAX_HEADER unless a test lowers it */
    uint64_t max_payload; /* CONS_WIRE_MAX_PAYLOAD unless a test lowers it */
    uint8_t *hdr;         /* preamble + header being collected */
    size_t hdr_cap, have, need;
    uint64_t payload_left; /* bytes of the current payload still to pass */
    uint64_t messages;     /* messages passed so far */
    char why[96];          /* the reason of the last refusal */
};
void cons_wire_init(struct cons_wire *w, uint64_t peer_id);
void cons_wire_free(struct cons_wire *w);
/* Pass len bytes through the checker: every byte that belongs to a
 * message checked whole (preamble and header) or to the payload of one is
 * handed to out(arg, bytes, n), in order. 0, -EPROTO (w->why says why; the
 * connection must be dropped: bytes after the bad message were not
 * passed) or -ENOMEM. */
int cons_wire_feed(struct cons_wire *w, const uint8_t *p, size_t len,
                   void (*out)(void *arg, const uint8_t *bytes, size_t n), void *arg);

/* ------------------------------------------------------------------ */
/* TLS (cons_tls.c) */

enum cons_tr_mode { CONS_TR_INSECURE, CONS_TR_PSK, CONS_TR_CERT };

struct cons_tls;
struct ssl_st;

struct cons_tr_config {
    uint64_t id;
    enum cons_tr_mode mode;
    const char *psk_file;
    const char *ca_file, *cert_file, *key_file;
    /* Whether id may use this node's Raft port: a member of the current
     * configuration (or anybody authenticated while this node has no
     * configuration yet: it is joining). address (len bytes) receives the
     * configured address of id, "" if unknown. */
    bool (*allowed)(void *arg, uint64_t id, char *address, size_t len);
    void *arg;
};

/* The name a node's certificate (CN or DNS SAN) and its PSK identity
 * carry: "nvmet-node-<id>". */
#define CONS_TLS_NAME_PREFIX "nvmet-node-"

/* Load the secret or the certificates. 0 or -errno with errmsg. */
int cons_tls_new(const struct cons_tr_config *cfg, struct cons_tls **out, char *errmsg,
                 size_t errlen);
void cons_tls_free(struct cons_tls *tls);
/* A TLS object for one connection with memory BIOs: server side
 * (target 0) or client side connecting to node target. NULL on failure. */
struct ssl_st *cons_tls_conn(struct cons_tls *tls, uint64_t target);
/* After the handshake: the node id the peer authenticated as. PSK: the
 * identity it used; certificates: the id the caller claims (hs_id) if the
 * verified certificate names it. 0 and *why when the peer cannot speak
 * for hs_id. */
uint64_t cons_tls_peer_id(struct ssl_st *ssl, uint64_t hs_id, const char **why);
/* "nvmet-node-<id>" -> id, 0 if the text is anything else. */
uint64_t cons_tls_parse_name(const char *text, size_t len);

/* ------------------------------------------------------------------ */
/* the transport (cons_tr.c) */

/* Fill t with this transport's methods. cfg is copied; the files are read
 * here. 0 or -errno with errmsg. */
int cons_tr_init(struct raft_uv_transport *t, struct uv_loop_s *loop,
                 const struct cons_tr_config *cfg, char *errmsg, size_t errlen);
/* Release the memory, after libraft closed the transport (or when
 * raft_init failed). */
void cons_tr_free(struct raft_uv_transport *t);

struct cons_tr_stats {
    uint64_t accepted;     /* inbound connections handed to libraft */
    uint64_t refused;      /* inbound connections dropped before that */
    uint64_t dropped;      /* connections dropped by the frame checker */
    uint64_t connected;    /* outbound connections handed to libraft */
    uint64_t handshake_us; /* total time of the outbound handshakes */
};
void cons_tr_get_stats(const struct raft_uv_transport *t, struct cons_tr_stats *st);

#endif
