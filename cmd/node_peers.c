/* nvmetd's Raft addresses and --cluster member list (node.h,
 * node_peers.h), in a library of their own so the fuzz harness of the
 * parsers links the code the daemon runs. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cons.h"
#include "node.h"
#include "node_peers.h"

/* "a.b.c.d:port" or "[v6]:port" (a v6 scope "%if" allowed), as
 * consensus/ parses Raft addresses. */
bool node_raft_address_ok(const char *s)
{
    char host[64];
    const char *port;
    if (s == NULL) {
        return false;
    }
    bool v6 = s[0] == '[';
    if (v6) {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host) {
            return false;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
        char *pct = strchr(host, '%');
        if (pct != NULL) {
            if (pct[1] == '\0') {
                return false;
            }
            *pct = '\0';
        }
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host) {
            return false;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    unsigned char buf[16];
    char *end = NULL;
    long p = strtol(port, &end, 10);
    return port[0] >= '0' && port[0] <= '9' && *end == '\0' && p > 0 && p < 65536 &&
           inet_pton(v6 ? AF_INET6 : AF_INET, host, buf) == 1;
}

/* "ID=ADDRESS" with a positive decimal id and a Raft address that fits a
 * cons_peer. Fills *id and *address. */
static bool parse_member(char *tok, unsigned long long *id, const char **address)
{
    char *eq = strchr(tok, '=');
    if (eq == NULL || tok[0] < '0' || tok[0] > '9') {
        return false;
    }
    char *end = NULL;
    errno = 0;
    *id = strtoull(tok, &end, 10);
    if (errno != 0 || end != eq || *id == 0) {
        return false;
    }
    *address = eq + 1;
    return strlen(*address) < sizeof((struct cons_peer *)NULL)->address &&
           node_raft_address_ok(*address);
}

int node_parse_cluster(const char *text, struct cons_peer **out, size_t *n, char *msg,
                       size_t msglen)
{
    char *copy = strdup(text), *save = NULL;
    if (copy == NULL) {
        snprintf(msg, msglen, "--cluster: out of memory");
        return -ENOMEM;
    }
    struct cons_peer *peers = NULL;
    size_t count = 0;
    int rv = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rv == 0;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned long long id = 0;
        const char *address = NULL;
        if (!parse_member(tok, &id, &address)) {
            snprintf(msg, msglen,
                     "--cluster: bad member '%s' (expected ID=IPv4:PORT or ID=[IPv6]:PORT)", tok);
            rv = -EINVAL;
            break;
        }
        for (size_t i = 0; i < count && rv == 0; i++) {
            if (peers[i].id == id) {
                snprintf(msg, msglen, "--cluster: node id %llu listed twice", id);
                rv = -EINVAL;
            }
        }
        struct cons_peer *p = rv == 0 ? realloc(peers, (count + 1) * sizeof *p) : NULL;
        if (rv == 0 && p == NULL) {
            snprintf(msg, msglen, "--cluster: out of memory");
            rv = -ENOMEM;
        }
        if (rv < 0) {
            break;
        }
        peers = p;
        memset(&peers[count], 0, sizeof peers[count]);
        peers[count].id = id;
        snprintf(peers[count].address, sizeof peers[count].address, "%s", address);
        peers[count].role = CONS_ROLE_VOTER;
        count++;
    }
    free(copy);
    if (rv == 0 && count == 0) {
        snprintf(msg, msglen, "--cluster: no members");
        rv = -EINVAL;
    }
    if (rv < 0) {
        free(peers);
        return rv;
    }
    *out = peers;
    *n = count;
    return 0;
}
