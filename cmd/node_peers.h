/* nvmetd's --cluster member list (node_peers.c, with node_raft_address_ok
 * of node.h): a library of its own, so the fuzz harness of the parsers
 * links the same code the daemon runs. */
#ifndef NODE_PEERS_H
#define NODE_PEERS_H

#include <stddef.h>

struct cons_peer;

/* "1=127.0.0.1:7001,2=[2001:db8::2]:7002" -> *out (owned, *n voters, at
 * least one). 0, or -EINVAL / -ENOMEM with msg naming the bad member. */
int node_parse_cluster(const char *text, struct cons_peer **out, size_t *n, char *msg,
                       size_t msglen);

#endif
