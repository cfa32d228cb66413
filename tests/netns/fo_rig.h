/* Failover rig: a network-namespace lab (lab.h) running one real nvmetd per
 * node, configured through the API (a VIP port, a namespace, IPv4 and IPv6
 * VIPs; optionally ANA), and the failover scenarios the suite and the
 * benchmark run on it, each measured by the watcher (watch.h).
 *
 * Nodes talk Raft on the cluster network (198.51.100.1x) and serve RPC on
 * their data address (198.51.100.13x:7100), so a client in the client
 * namespace reaches every node with `nvmetctl --url`; the test itself
 * calls a node through its unix socket (the file system is shared).
 *
 * A scenario result says what a user asks first: how long until the VIPs
 * answered from the new active (as the client sees it: ARP / neighbour
 * solicitation answers from the new node's MAC), whether two nodes ever
 * held a VIP with live links (or answered the same probe, or were both
 * ANA optimized), and how a write started at the moment of the fault
 * fared. Errors: 0 or a negative errno with a message on stderr. */
#ifndef NETNS_FO_RIG_H
#define NETNS_FO_RIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lab.h"
#include "watch.h"

#define RIG_VIP4 "198.51.100.200"
#define RIG_VIP6 "2001:db8::100"

struct rig_node {
    int id;
    bool witness;
    char dir[256];      /* everything of the node */
    char sock[300];     /* its unix socket */
    char configfs[300]; /* emulated configfs root (holds nvmet/) */
    char log[300];
    pid_t pid; /* 0 = not running */
    bool paused;
};

struct rig {
    struct lab lab;
    int nodes;
    bool ana;
    unsigned election_ms;
    char base[128]; /* temp dir */
    char key[300];  /* API key file */
    char psk[300];  /* the Raft secret of the rig's nodes (--raft-psk-file) */
    char cluster[512];
    char urls[256]; /* every node's RPC address, for nvmetctl --url */
    struct rig_node node[LAB_MAX_NODES + 1];
    int writes;   /* names used by the writes of faults */
    pid_t writer; /* the write of the running fault, 0 when it ended */
    int64_t writer_end;
    int writer_status;
};

struct rig_opts {
    int nodes;            /* 3 */
    int witness;          /* node id of the witness, 0 = none */
    bool ana;             /* global ANA mode with per-node addresses */
    unsigned election_ms; /* 0 = nvmetd's default */
};

/* Build the lab, start every node, configure the cluster and wait until
 * one node is MASTER holding both VIPs. 0 or -errno (everything is torn
 * down again on failure). */
int rig_up(struct rig *r, const struct rig_opts *o);
void rig_down(struct rig *r);

/* The node that says MASTER (0 = none) and whether it holds both VIPs. */
int rig_master(struct rig *r);
/* Wait (bounded) until every running node answers, exactly one data node
 * is MASTER and holds both VIPs and no other node holds any. */
int rig_stable(struct rig *r, int timeout_ms);

/* Start node i again (same data dir). */
int rig_start(struct rig *r, int i);
/* A call through node i's unix socket; params JSON or NULL. Returns the
 * result as JSON text (malloc'd) or NULL. */
char *rig_call(struct rig *r, int i, const char *method, const char *params_json);

enum rig_fault {
    RIG_DEATH,      /* kill -9 daemon and guardian, both links down: a node dies */
    RIG_CRASH,      /* kill -9 the daemon alone; links stay up */
    RIG_PAUSE,      /* SIGSTOP the daemon past the election timeout, then SIGCONT */
    RIG_PARTITION,  /* cut the active's cluster link (its data link stays up), heal */
    RIG_SWITCHOVER, /* failover.become_passive on the active */
};
const char *rig_fault_name(enum rig_fault f);

struct rig_result {
    int old_master, new_master;
    double answer_ms[2]; /* fault -> first answer from the new master, per VIP (4, 6) */
    double server_ms;    /* fault -> the new master holds both VIPs (its namespace) */
    double release_ms;   /* fault -> the old master no longer holds them (pause/partition) */
    double write_ms;     /* the write started at the fault: how long it took */
    int write_status;    /* its exit status */
    int writes_lost;     /* acknowledged writes missing afterwards (or present twice) */
    double double_ms;    /* time two nodes held a VIP with live links (both VIPs) */
    int double_count;
    int arp_conflicts;    /* probe rounds answered by two MACs */
    double ana_double_ms; /* time two nodes were ANA optimized */
    double ana_ms;        /* fault -> the new master reports its ANA group optimized (ANA) */
    double max_gap_ms;    /* largest sampling gap of any namespace */
    bool ok;              /* the scenario completed (a new master answered) */
};

/* Run one fault on the current master, wait for the new one, bring the
 * cluster back to stable (restarting or resuming the old master) and fill
 * res. verbose: print the timeline on stderr. 0, or -errno when the rig
 * could not run it (res->ok says whether failover happened). */
int rig_fault(struct rig *r, enum rig_fault f, struct rig_result *res, bool verbose);

#endif
