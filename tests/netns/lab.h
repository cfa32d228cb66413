/* Network-namespace test lab: a switch, N nodes and a client, each in a
 * network namespace of its own, built with iproute2 (test code only; the
 * product never runs ip).
 *
 *   switch namespace  <tag>-sw   two bridges: "brdata" (the data network:
 *                                VIPs, client) and "brclus" (the cluster
 *                                network: Raft and RPC between nodes)
 *   node i (1..N)     <tag>-n<i> eth0 on data    198.51.100.(130+i)/25,
 *                                                2001:db8::(10+i)/64
 *                                eth1 on cluster 198.51.100.(10+i)/25
 *   client            <tag>-cl   eth0 on data    198.51.100.250/25,
 *                                                2001:db8::250/64
 *
 * The IPv6 host parts are the decimal digits of the IPv4 ones written in
 * hex notation (node 1: 2001:db8::11). Every interface carries a fixed MAC
 * (node i eth0 02:00:00:00:00:0i, eth1 02:00:00:00:01:0i, client
 * 02:00:00:00:00:fe), so a neighbour answer names its node. IPv6
 * addresses are added nodad; the VIPs (e.g. 198.51.100.200/25,
 * 2001:db8::100/64) are the product's to add and remove. Only the
 * documentation ranges 198.51.100.0/24 and 2001:db8::/64 are used and
 * nothing is created in the caller's own namespace.
 *
 * The tag is "nvha<pid>": creating a lab first deletes the namespaces of
 * earlier runs whose tag's pid is dead, so one process holds at most one
 * lab at a time (-EEXIST otherwise). Every ip command is checked (exit
 * status) and bounded in time (a hung ip is killed).
 *
 * Who: LAB_CLIENT (0) is the client, 1..nodes the nodes.
 *
 * Errors: 0 or a negative errno; failures also print the command and the
 * reason on stderr. Not thread-safe: one thread drives a lab. */
#ifndef NETNS_LAB_H
#define NETNS_LAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LAB_MAX_NODES 7
#define LAB_CLIENT 0
#define LAB_MAX_SPAWN 64
#define LAB_NS_LEN 32

/* Fixed addresses (see above); the VIPs the tests use are in the data
 * network's /25 and /64. */
#define LAB_CLIENT_IP4 "198.51.100.250"
#define LAB_CLIENT_IP6 "2001:db8::250"
#define LAB_DATA_PREFIX4 25
#define LAB_DATA_PREFIX6 64

enum lab_net { LAB_DATA, LAB_CLUSTER };

struct lab {
    char tag[16];                            /* "nvha<pid>" */
    char ip[64];                             /* the ip binary used */
    int nodes;                               /* 1..LAB_MAX_NODES */
    char sw[LAB_NS_LEN];                     /* switch namespace */
    char ns[LAB_MAX_NODES + 1][LAB_NS_LEN];  /* [0] client, [i] node i */
    unsigned char mac[LAB_MAX_NODES + 1][6]; /* data (eth0) MACs, same index */
    unsigned created;                        /* bit per namespace made: 0..7 ns[], 8 sw */
    pid_t spawned[LAB_MAX_SPAWN];            /* lab_spawn children not yet reaped */
};

/* Whether a lab can be built here: root, namespaces can be created, an ip
 * binary exists. 0, or a negative errno with the reason in why (the test
 * then skips: this is not a failure of the code under test). */
int lab_check(char *why, size_t whylen);

/* Build the lab with nodes (1..LAB_MAX_NODES) nodes. On failure nothing of
 * it is left behind. lab is the caller's memory (overwritten). */
int lab_create(struct lab *lab, int nodes);
/* Kill (SIGKILL) and reap every process lab_spawn started that is still
 * unreaped, then delete the namespaces (their interfaces go with them).
 * Kills nothing else. Safe on a zeroed, a failed or a destroyed lab. */
void lab_destroy(struct lab *lab);

/* Namespace name of who (LAB_CLIENT or a node), NULL if out of range. */
const char *lab_ns(const struct lab *lab, int who);
/* Address of who on net as text, without prefix ("198.51.100.131",
 * "2001:db8::11"); family AF_INET or AF_INET6 (IPv6: data network only).
 * -EINVAL for a combination the lab does not have. */
int lab_addr(const struct lab *lab, int who, enum lab_net net, int family, char *buf, size_t len);

/* Set the SWITCH-side veth of who's interface on net down or up: the
 * interface in who's namespace loses (regains) carrier and keeps its
 * addresses, as with a pulled cable or a partition. */
int lab_set_link(struct lab *lab, int who, enum lab_net net, bool up);

/* Whether from reaches to on net: a TCP connection from from's namespace
 * to a listener on to's address (family AF_INET or AF_INET6), made by a
 * forked child (the caller's namespace is untouched) within timeout_ms.
 * 0, -ETIMEDOUT (no answer: a cut link drops everything) or another
 * negative errno. */
int lab_reach(const struct lab *lab, int from, int to, enum lab_net net, int family,
              int timeout_ms);

/* Run `ip -n <ns of who> ARGS...` (NULL-terminated), checked and bounded:
 * 0 or -EIO (ip failed; its stderr is on ours). */
int lab_ip(const struct lab *lab, int who, ...) __attribute__((sentinel));

/* Fork a process in who's namespace (setns(CLONE_NEWNET) of
 * /run/netns/<ns>) executing argv[0] (a path, or searched in PATH) with
 * stdin /dev/null and stdout+stderr appended to log_path. Returns its pid
 * once exec succeeded, or a negative errno (setns, log or exec failure).
 * The lab owns the child: reap it with lab_stop or lab_exited (a waitpid
 * of the caller's is harmless: destroy then finds nothing to kill). The
 * child gets SIGKILL when the calling thread ends (PR_SET_PDEATHSIG), so a
 * test that crashes leaves no process running in a namespace. */
pid_t lab_spawn(struct lab *lab, int who, char *const argv[], const char *log_path);
/* Send sig to a child of lab_spawn, wait up to timeout_ms for it to exit
 * (then SIGKILL and wait), reap it. Returns its exit status, 128+signal
 * when a signal ended it, or -ESRCH if pid is not an unreaped lab child. */
int lab_stop(struct lab *lab, pid_t pid, int sig, int timeout_ms);
/* Reap pid if it has exited: 1 with *status (as lab_stop's result), 0 if
 * it still runs, -ESRCH if pid is not an unreaped lab child. */
int lab_exited(struct lab *lab, pid_t pid, int *status);

#endif
