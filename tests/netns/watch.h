/* VIP / ANA watcher for the network-namespace lab: a forked child that
 * records a timeline (CLOCK_MONOTONIC ns) of who holds each VIP, whose
 * data link is up, who answers ARP / neighbour solicitations for it, and
 * which node reports an ANA group optimized; then pure functions that
 * answer questions about a timeline.
 *
 * The child is one single-threaded ppoll loop, every WATCH_INTERVAL_US
 * (default 5 ms) by an absolute schedule:
 *  - per node namespace: a NETLINK_ROUTE address dump (IPv4 and IPv6, every
 *    interface) and the data interface's link state (IFF_UP and carrier)
 *    -> one WATCH_SAMPLE. A second socket per namespace subscribed to
 *    address and link events triggers an extra sample at once, so a change
 *    is seen within microseconds and a missed event (overflow) cannot hide
 *    a holder for longer than one period;
 *  - per node with a configfs dir: <dir>/nvmet/ports/N/ana_groups/G/ana_state
 *    read -> one WATCH_ANA (optimized = any group but the default group 1
 *    "optimized");
 *  - in the client namespace, per VIP one probe round: an ARP request
 *    "who-has VIP tell <client>" (IPv4) or a neighbour solicitation to the
 *    VIP's solicited-node group (IPv6), both from the client's address and
 *    MAC -> WATCH_PROBE. Answers (ARP replies to the client, solicited
 *    NAs) -> WATCH_REPLY with the answering MAC (the NA's target link-layer
 *    option) mapped to its node; gratuitous ARP / unsolicited NA for a VIP
 *    -> WATCH_ANNOUNCE.
 * Sockets are opened inside each namespace (setns in the child) and stay
 * bound to it. Samples are written to a memory file; the parent reads the
 * whole timeline back when it stops the watcher. Marks (watch_mark) are
 * kept by the parent and merged then.
 *
 * Sampling gaps are measurable: watch_max_gap() gives the largest distance
 * between two samples of a namespace (or two probe rounds), so a test can
 * assert that nothing could have hidden between them.
 *
 * Use, in a failover scenario:
 *
 *   struct lab lab;                 lab_create(&lab, 3);
 *   pid[i] = lab_spawn(&lab, i, nvmetd_argv_i, log_i);  (--configfs dir_i)
 *   struct watch_cfg cfg;           watch_cfg_init(&cfg, &lab);
 *   watch_cfg_vip(&cfg, "198.51.100.200");   (index 0)
 *   snprintf(cfg.configfs[i], sizeof cfg.configfs[i], "%s", dir_i);
 *   struct watch *w;                watch_start(&cfg, &w);
 *   int64_t t = watch_mark(w, "kill");  lab_stop(&lab, pid[1], SIGKILL, 1000);
 *   ... let it fail over ...
 *   struct watch_timeline tl;       watch_stop(w, &tl);
 *   watch_first_reply(&tl, 0, 2, t) - t       the takeover time (ns)
 *   watch_double_owner(&tl, 0, &span) == 0, watch_arp_conflicts(&tl, 0, NULL) == 0,
 *   watch_ana_double(&tl, &span) == 0, watch_errors(&tl) == 0,
 *   watch_max_gap(&tl, WATCH_SAMPLE, i) <= 10 ms (and WATCH_ANA, WATCH_PROBE)
 *   watch_print(&tl, stdout, 200);  watch_timeline_free(&tl);  lab_destroy(&lab);
 *
 * Errors: 0 or a negative errno. */
#ifndef NETNS_WATCH_H
#define NETNS_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lab.h"

#define WATCH_MAX_NODES LAB_MAX_NODES
#define WATCH_MAX_VIPS 8
#define WATCH_INTERVAL_US 5000
/* The watcher asks for this SCHED_FIFO priority (silently keeping normal
 * scheduling where it is refused): on a loaded machine a normal process
 * waits for CPU time slices of several ms, which would open sampling gaps
 * the test must not have. Its work is a few hundred microseconds per
 * period, every wait is a ppoll, and the kernel's RT throttling bounds it
 * anyway. WATCH_START's flags say whether it got it. */
#define WATCH_RT_PRIORITY 10
/* node of a reply whose MAC is none of the lab's; "any node" in queries */
#define WATCH_UNKNOWN (-1)
#define WATCH_ANY (-2)

struct watch_vip {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network byte order; 4 bytes for AF_INET */
    char text[48];          /* as given */
};

/* What to watch. watch_cfg_init fills it from a lab; then add VIPs (and
 * configfs dirs). Plain data, copied by watch_start. */
struct watch_cfg {
    int nodes;                                   /* 1..WATCH_MAX_NODES */
    char ns[WATCH_MAX_NODES + 1][LAB_NS_LEN];    /* [0] client, [i] node i */
    unsigned char mac[WATCH_MAX_NODES + 1][6];   /* data MACs, same index */
    char ifname[16];                             /* data interface: "eth0" */
    unsigned char client_ip4[4], client_ip6[16]; /* probe source addresses */
    int nvips;
    struct watch_vip vip[WATCH_MAX_VIPS];
    char configfs[WATCH_MAX_NODES + 1][256]; /* [i]: node i's dir holding nvmet/, "" = none */
    int interval_us;                         /* sampling and probing period */
    int rt_priority; /* SCHED_FIFO priority of the watcher, 0 = normal scheduling */
};

/* All namespaces, MACs and client addresses of lab, interface "eth0", no
 * VIP, no configfs, WATCH_INTERVAL_US, WATCH_RT_PRIORITY. */
void watch_cfg_init(struct watch_cfg *cfg, const struct lab *lab);
/* Add a VIP ("198.51.100.200", "2001:db8::100"; no prefix). Its index, or
 * -EINVAL / -ENOSPC. */
int watch_cfg_vip(struct watch_cfg *cfg, const char *addr);

/* ---- the timeline ---- */

enum watch_kind {
    WATCH_START,    /* the first round began */
    WATCH_SAMPLE,   /* node's addresses and link: held, tentative, WATCH_F_UP */
    WATCH_ANA,      /* node's ANA states: WATCH_F_OPTIMIZED, held = optimized groups */
    WATCH_PROBE,    /* the client sent probe round seq for vip */
    WATCH_REPLY,    /* an answer to the client for vip: mac, node, seq = latest round sent */
    WATCH_ANNOUNCE, /* a gratuitous ARP / unsolicited NA for vip: mac, node */
    WATCH_ERROR,    /* a watcher step failed: node (namespace), seq = errno */
    WATCH_END,      /* the watcher stopped */
};

#define WATCH_F_UP 0x01        /* SAMPLE: data interface IFF_UP and carrier */
#define WATCH_F_OPTIMIZED 0x02 /* ANA: some group's ana_state is "optimized" */
#define WATCH_F_REALTIME 0x04  /* START: the watcher runs with rt_priority */

/* One record. node: 0 client, 1..nodes, WATCH_UNKNOWN. */
struct watch_ev {
    int64_t t; /* CLOCK_MONOTONIC ns */
    uint8_t kind;
    int8_t node;
    uint8_t vip;
    uint8_t flags;
    uint32_t seq;
    uint32_t held;      /* SAMPLE: bit v = VIP v is on some interface of the namespace */
    uint32_t tentative; /* SAMPLE: bit v = ... but tentative or DAD-failed (answers no NS) */
    unsigned char mac[6];
    uint8_t pad[2];
};

struct watch_mark {
    int64_t t;
    char label[32];
};

/* A recorded timeline: events sorted by t. Analysis only reads it, so a
 * test can also build one by hand (ev/marks pointing at its own arrays,
 * t_end set; watch_timeline_free is then not called). */
struct watch_timeline {
    int nodes, nvips;
    struct watch_vip vip[WATCH_MAX_VIPS];
    unsigned char mac[WATCH_MAX_NODES + 1][6];
    int64_t interval_ns;
    int64_t t_start, t_end; /* first round, stop; 0 = unknown (first/last event) */
    int64_t cpu_ns;         /* CPU time the watcher used (user + system) */
    struct watch_ev *ev;    /* owned (from watch_stop) */
    size_t n;
    struct watch_mark *marks; /* owned (from watch_stop) */
    size_t nmarks;
};
void watch_timeline_free(struct watch_timeline *tl);

/* ---- running a watcher ---- */

struct watch;

/* CLOCK_MONOTONIC in ns (the timeline's clock). */
int64_t watch_now(void);

/* Fork the watcher; returns once every socket is open in its namespace and
 * the first round is recorded (bounded: 5 s), or with the child's setup
 * error. *out is owned by the caller until watch_stop. */
int watch_start(const struct watch_cfg *cfg, struct watch **out);
/* Record "label" (≤ 31 chars kept) at now; returns that time (ns) or
 * -ENOMEM. */
int64_t watch_mark(struct watch *w, const char *label);
/* Stop the watcher (bounded: 5 s, then SIGKILL), read its timeline into
 * *tl (NULL: discard) and free w. -EIO if the child died without finishing
 * its timeline (what was flushed is still returned). */
int watch_stop(struct watch *w, struct watch_timeline *tl);

/* ---- analysis (pure; ev sorted by t) ---- */

/* A set of intervals. */
struct watch_span {
    int count;        /* intervals longer than 0 */
    int64_t total_ns; /* summed duration */
    int64_t longest_ns;
    int64_t first_ns; /* start of the first, -1 if none */
};

/* Nodes whose last SAMPLE at or before t holds vip: bit i = node i. */
uint32_t watch_holders(const struct watch_timeline *tl, int vip, int64_t t);
/* Whether node's last SAMPLE at or before t has its data link up. */
bool watch_link_up(const struct watch_timeline *tl, int node, int64_t t);
/* Double ownership of vip: the intervals where ≥ 2 nodes held it with
 * their data link up (a holder without carrier answers nobody). Fills
 * *out and returns its count. */
int watch_double_owner(const struct watch_timeline *tl, int vip, struct watch_span *out);
/* The intervals where ≥ 2 nodes reported an ANA group optimized while
 * their data link was up. */
int watch_ana_double(const struct watch_timeline *tl, struct watch_span *out);
/* Probe rounds of vip answered by ≥ 2 different MACs; *first (may be NULL)
 * = the time of the first such second answer, -1 if none. */
int watch_arp_conflicts(const struct watch_timeline *tl, int vip, int64_t *first);
/* Time of the first REPLY for vip from node (WATCH_ANY: anyone) at or
 * after t, -1 if none. */
int64_t watch_first_reply(const struct watch_timeline *tl, int vip, int node, int64_t t);
/* Time of the first SAMPLE of node at or after t that holds vip (or, with
 * holds false, that does not), -1 if none. */
int64_t watch_first_sample(const struct watch_timeline *tl, int vip, int node, bool holds,
                           int64_t t);
/* Events of kind for vip (< 0: any) from node (WATCH_ANY: any) with t in
 * [t0, t1). */
size_t watch_count(const struct watch_timeline *tl, enum watch_kind kind, int vip, int node,
                   int64_t t0, int64_t t1);
/* Largest distance between consecutive samples: kind WATCH_SAMPLE or
 * WATCH_ANA of node, or WATCH_PROBE (rounds; node ignored), over
 * [t_start, samples..., t_end]. INT64_MAX if that sequence has fewer than
 * two points. */
int64_t watch_max_gap(const struct watch_timeline *tl, enum watch_kind kind, int node);
/* Time of the first mark labelled label, -1 if none. */
int64_t watch_mark_time(const struct watch_timeline *tl, const char *label);
/* Number of WATCH_ERROR events. */
size_t watch_errors(const struct watch_timeline *tl);
/* The timeline as text, changes only (marks, holder and link changes, ANA
 * changes, a new answering node, announcements, errors), times in ms from
 * t_start; at most max_lines lines. */
void watch_print(const struct watch_timeline *tl, FILE *out, int max_lines);

#endif
