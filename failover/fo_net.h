/* failover internals: virtual IP addresses on this network namespace
 * through rtnetlink (libmnl), the address/link monitor, and the
 * announcements that move a neighbour's cache (gratuitous ARP for IPv4,
 * unsolicited neighbour advertisement for IPv6). No subprocesses (no ip,
 * no arping). Everything acts on the network namespace of the calling
 * thread, so tests run the real code in a namespace of their own.
 *
 * Errors: 0 or a negative errno; functions that can fail for a reason an
 * operator must read fill msg ("add 198.51.100.100/24 on eth0: No such
 * device"). Nothing here allocates after open. */
#ifndef FO_NET_H
#define FO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fill msg (NULL or 0 length: nothing) from a printf format. */
void fo__say(char *msg, size_t msglen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One virtual IP as configured (failover.update "vips"). */
struct fo_vip {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network byte order; 4 bytes used for AF_INET */
    unsigned prefix;        /* 0..32 / 0..128 */
    char ifname[16];        /* IFNAMSIZ */
    char text[64];          /* "198.51.100.100/24 on eth0", for messages */
};

/* Fill v from the configured strings. -EINVAL with msg on a bad address,
 * prefix or interface name (the interface need not exist yet). */
int fo_vip_parse(const char *address, unsigned prefix, const char *ifname, struct fo_vip *v,
                 char *msg, size_t msglen);

/* ---- commands: a NETLINK_ROUTE socket with acknowledged requests ---- */

struct fo_nl;
int fo_nl_open(struct fo_nl **out);
void fo_nl_close(struct fo_nl *nl);

/* The interface's index, whether it is up (IFF_UP and carrier), and its
 * hardware address (mac may be NULL). -ENODEV if there is none. */
int fo_nl_link(struct fo_nl *nl, const char *ifname, unsigned *ifindex, bool *up,
               unsigned char mac[6]);

/* Add v on its interface (IPv6 with IFA_F_NODAD, so the address answers at
 * once instead of after duplicate address detection). Already present is
 * success. Then reads the address back: -EIO with msg if it is not there. */
int fo_addr_add(struct fo_nl *nl, const struct fo_vip *v, char *msg, size_t msglen);
/* Remove v from its interface; absent (or no such interface) is success.
 * Then reads back: -EIO with msg if it is still there. */
int fo_addr_del(struct fo_nl *nl, const struct fo_vip *v, char *msg, size_t msglen);
/* Whether v (address and prefix) is on its interface now. 0 or -errno. */
int fo_addr_present(struct fo_nl *nl, const struct fo_vip *v, bool *present);

/* ---- the monitor: address and link events of this namespace ---- */

enum fo_mon_kind { FO_MON_ADDR_ADD, FO_MON_ADDR_DEL, FO_MON_LINK };
struct fo_mon_event {
    enum fo_mon_kind kind;
    unsigned ifindex;
    int family;             /* addresses: AF_INET / AF_INET6 */
    unsigned char addr[16]; /* addresses */
    unsigned prefix;        /* addresses */
    bool up;                /* links: IFF_UP and carrier */
};
/* A non-blocking socket subscribed to IPv4/IPv6 address and link events;
 * the caller polls *fd (uv_poll, poll(2)). */
int fo_mon_open(int *fd);
/* Read every pending message and call cb once per event. Returns 0 (also
 * when nothing was pending), or -ENOBUFS when the kernel dropped events
 * (the caller must then re-read the state it cares about), or -errno. */
int fo_mon_read(int fd, void (*cb)(void *arg, const struct fo_mon_event *ev), void *arg);
/* Whether an address event is about v (same family, address and prefix;
 * ifindex 0 matches any interface). */
bool fo_mon_is(const struct fo_mon_event *ev, const struct fo_vip *v, unsigned ifindex);

/* ---- announcements ---- */

/* The announcer's sockets (opened once: see fo_announce.c for why). */
struct fo_ann;
int fo_ann_open(struct fo_ann **out);
void fo_ann_close(struct fo_ann *a);

/* Send one announcement for v on its interface: IPv4 a gratuitous ARP
 * request (sender = target = the VIP, the interface's hardware address,
 * to the broadcast address) through an AF_PACKET socket; IPv6 an
 * unsolicited neighbour advertisement (ICMPv6 136, Override set, target =
 * the VIP with its target link-layer address option) to ff02::1, hop
 * limit 255. 0 or -errno with msg. */
int fo_announce(struct fo_ann *a, const struct fo_vip *v, char *msg, size_t msglen);

#endif
