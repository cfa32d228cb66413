/* failover internals: the guardian, a small child process forked when
 * failover starts, before the daemon opens any socket or starts a thread.
 *
 * Why: the active node holds the VIPs and the port links only while its
 * lease is valid. A daemon that crashes, is killed or is paused (SIGSTOP,
 * a long stall) cannot drop them itself, and the kernel's address
 * lifetimes count whole seconds. The guardian can: it holds the emergency
 * release and carries it out
 *   - at once when the daemon is gone (end of file on the channel) while
 *     it holds anything;
 *   - when the deadline of the last arm/renew passes without a renewal;
 * and after a deadline has passed it keeps the VIPs away (an address event
 * for a listed VIP is answered by removing it) until the daemon arms again
 * or disarms. It never adds anything.
 *
 * The release: remove every listed VIP; unlink every port->subsystem link
 * of the ports below index 5000 under <configfs>/nvmet/ports (the IP
 * takeover ports: a standby links none); write "inaccessible" into every
 * <configfs>/nvmet/ports/<p>/ana_groups/<g>/ana_state with g != 1 (ANA
 * ports stay linked on a standby, their groups inaccessible).
 *
 * Channel: a SOCK_SEQPACKET socketpair, one message per call. Deadlines
 * are CLOCK_MONOTONIC milliseconds, the clock of uv_now()/uv_hrtime().
 * The guardian ignores SIGINT, SIGTERM, SIGHUP and SIGPIPE (a Ctrl-C to
 * the process group must not take it down before the daemon), closes
 * every inherited descriptor but its channel and stderr, and logs its
 * actions to stderr as "guardian[<id>]: ...". */
#ifndef FO_GUARD_H
#define FO_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fo_vip;
struct fo_guard;

struct fo_guard_config {
    uint64_t node_id;     /* for its log lines */
    const char *configfs; /* directory holding nvmet/ (copied); NULL = none */
};

/* Fork the guardian. 0 or -errno with msg. */
int fo_guard_start(const struct fo_guard_config *cfg, struct fo_guard **out, char *msg,
                   size_t msglen);
/* Replace the list of VIPs it releases (copied; at most 64). */
int fo_guard_set_vips(struct fo_guard *g, const struct fo_vip *vips, size_t n);
/* This node holds the data path until deadline_ms (arm, or renew). */
int fo_guard_arm(struct fo_guard *g, uint64_t deadline_ms);
/* The daemon released everything itself: nothing is held. */
int fo_guard_disarm(struct fo_guard *g);
/* The daemon's end of the channel (poll it: readable means a report,
 * fo_guard_released, or that the guardian died, fo_guard_alive), and the
 * guardian's pid. */
int fo_guard_fd(const struct fo_guard *g);
pid_t fo_guard_pid(const struct fo_guard *g);
/* Reaps the guardian if it has exited; 1 alive, 0 gone. */
int fo_guard_alive(struct fo_guard *g);
/* Reads the guardian's reports: how many releases at a passed deadline it
 * reported since the last call (0 if none), -EPIPE once it is gone. */
int fo_guard_released(struct fo_guard *g);
/* Disarm, close the channel and reap the guardian (waits at most 2 s,
 * then kills it). g is freed. */
void fo_guard_stop(struct fo_guard *g);

#endif
