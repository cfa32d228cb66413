/* TLS credentials and reproducible randomness for fuzz_raft_handshake and
 * the seed generator (fuzz_tls.c).
 *
 * A recorded client flight only replays against a server that makes the
 * same random choices (ServerHello random, key share) and holds the same
 * certificates. So every OpenSSL random byte of this process comes from a
 * fixed generator, the keys are Ed25519 (deterministic signatures) and
 * the certificates have fixed dates and serials: the credentials are the
 * same bytes in every run, and a server connection started after
 * fuzz_tls_rand_reset(FUZZ_TLS_SERVER) makes the same choices. Test code
 * only: nothing here is random. */
#ifndef FUZZ_TLS_H
#define FUZZ_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "cons_tr.h"

/* Nodes with credentials: 1 (the server) .. FUZZ_TLS_NODES. */
#define FUZZ_TLS_NODES 3

/* Independent random streams, so the client's draws in the seed
 * generator do not shift the server's. */
enum fuzz_tls_stream { FUZZ_TLS_SERVER, FUZZ_TLS_CLIENT, FUZZ_TLS_SETUP, FUZZ_TLS_STREAMS };

/* Once per process: installs the generator, writes the cluster secret, a
 * CA and one certificate per node into a private temporary directory,
 * loads them into cons_tls contexts (PSK and certificate mode for each
 * node) and removes the directory (the contexts keep what they read, so
 * nothing is left behind even if the process dies). Aborts on failure. */
void fuzz_tls_init(void);
/* Node id's context in mode CONS_TR_PSK or CONS_TR_CERT. */
struct cons_tls *fuzz_tls_node(enum cons_tr_mode mode, uint64_t id);

/* Restart stream s from its fixed seed and draw from it from now on. */
void fuzz_tls_rand_reset(enum fuzz_tls_stream s);
/* Draw from stream s (without restarting it). */
void fuzz_tls_rand_use(enum fuzz_tls_stream s);

/* The bytes node client_id sends when it connects to node 1 in mode: the
 * whole TLS handshake with a server context of node 1, then app (len
 * bytes) written as application data. Owned buffer, *len bytes; NULL if
 * the handshake did not complete. */
uint8_t *fuzz_tls_client_flight(enum cons_tr_mode mode, uint64_t client_id, const uint8_t *app,
                                size_t app_len, size_t *len);

#endif
