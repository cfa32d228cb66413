/* failover: the announcements that move the neighbours' caches to this node
 * after it has taken a virtual IP over (see fo_net.h). One packet per call;
 * the caller repeats them (failover "announce_count" and
 * "announce_interval_ms") since a single frame can be lost.
 *
 * IPv4, gratuitous ARP: an ARP *request* whose sender and target protocol
 * addresses are both the VIP (RFC 5227 section 3, "ARP Announcement"),
 * broadcast. Linux takes a request with sip == tip as gratuitous whatever
 * its target hardware address (net/ipv4/arp.c arp_is_garp(); a reply
 * counts only with tha == sha) and then overrides an existing entry even
 * within its locktime; other stacks and switches commonly learn only from
 * requests. The target hardware address is zero, as RFC 5227 asks.
 *
 * IPv6, unsolicited neighbour advertisement (RFC 4861 section 7.2.6): to
 * all-nodes ff02::1, Solicited clear (it answers no solicitation), Override
 * set so that receivers replace the link-layer address they cached
 * (ndisc_recv_na() -> neigh_update(NEIGH_UPDATE_F_OVERRIDE)), Router clear
 * (a storage node is not a router, and a flip of that flag drops it from
 * the receivers' default routers), with the target link-layer address
 * option. Hop limit 255: receivers drop neighbour discovery with any other
 * value (ndisc_rcv(), "invalid hop-limit"), the proof it came from the
 * link. The source is the VIP itself (as keepalived does): it is on the
 * interface, usable at once thanks to IFA_F_NODAD, while the link-local
 * address may still be tentative right after the link came up. */
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fo_net.h"

struct fo_ann {
    int pkt;   /* AF_PACKET, SOCK_DGRAM: gratuitous ARP on any interface */
    int icmp6; /* raw ICMPv6: neighbour advertisements */
};

/* The interface's index and Ethernet address through socket s (any
 * family: these ioctls fall through to dev_ioctl()). */
static int ether_of(int s, const char *ifname, int *ifindex, unsigned char mac[6], char *msg,
                    size_t msglen, const char *text)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
        int e = errno;
        fo__say(msg, msglen, "announce %s: %s", text, strerror(e));
        return -e;
    }
    *ifindex = ifr.ifr_ifindex;
    if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
        int e = errno;
        fo__say(msg, msglen, "announce %s: hardware address: %s", text, strerror(e));
        return -e;
    }
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
        fo__say(msg, msglen, "announce %s: not an Ethernet interface (type %u)", text,
                (unsigned)ifr.ifr_hwaddr.sa_family);
        return -EOPNOTSUPP;
    }
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

static int garp(struct fo_ann *a, const struct fo_vip *v, char *msg, size_t msglen)
{
    int s = a->pkt;
    int ifindex;
    unsigned char mac[6];
    int rv = ether_of(s, v->ifname, &ifindex, mac, msg, msglen, v->text);
    if (rv < 0) {
        return rv;
    }
    struct __attribute__((packed)) {
        struct arphdr h;
        unsigned char sha[6], spa[4], tha[6], tpa[4];
    } p;
    memset(&p, 0, sizeof(p));
    p.h.ar_hrd = htons(ARPHRD_ETHER);
    p.h.ar_pro = htons(ETH_P_IP);
    p.h.ar_hln = 6;
    p.h.ar_pln = 4;
    p.h.ar_op = htons(ARPOP_REQUEST);
    memcpy(p.sha, mac, 6);
    memcpy(p.spa, v->addr, 4);
    memcpy(p.tpa, v->addr, 4);
    struct sockaddr_ll to = {.sll_family = AF_PACKET,
                             .sll_protocol = htons(ETH_P_ARP),
                             .sll_ifindex = ifindex,
                             .sll_halen = 6};
    memset(to.sll_addr, 0xff, 6);
    ssize_t n = sendto(s, &p, sizeof(p), 0, (struct sockaddr *)&to, sizeof(to));
    rv = n < 0 ? -errno : (size_t)n == sizeof(p) ? 0 : -EIO;
    if (rv < 0) {
        fo__say(msg, msglen, "announce %s: gratuitous ARP: %s", v->text, strerror(-rv));
    }
    return rv;
}

static int unsolicited_na(struct fo_ann *a, const struct fo_vip *v, char *msg, size_t msglen)
{
    int s = a->icmp6;
    int ifindex;
    unsigned char mac[6];
    int rv = ether_of(s, v->ifname, &ifindex, mac, msg, msglen, v->text);
    if (rv < 0) {
        return rv;
    }
    if (setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) < 0) {
        rv = -errno;
        fo__say(msg, msglen, "announce %s: ICMPv6 socket options: %s", v->text, strerror(-rv));
        return rv;
    }
    struct __attribute__((packed)) {
        struct nd_neighbor_advert na;
        struct nd_opt_hdr opt;
        unsigned char lladdr[6];
    } p;
    memset(&p, 0, sizeof(p));
    p.na.nd_na_type = ND_NEIGHBOR_ADVERT;
    p.na.nd_na_code = 0;
    /* the checksum is the kernel's: raw ICMPv6 sockets always compute it
     * (RFC 3542 section 3.1) */
    p.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
    memcpy(&p.na.nd_na_target, v->addr, 16);
    p.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
    p.opt.nd_opt_len = 1; /* units of 8 bytes: type, length and 6 bytes */
    memcpy(p.lladdr, mac, 6);

    struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_scope_id = (uint32_t)ifindex};
    to.sin6_addr.s6_addr[0] = 0xff;
    to.sin6_addr.s6_addr[1] = 0x02;
    to.sin6_addr.s6_addr[15] = 0x01;
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } c;
    memset(&c, 0, sizeof(c));
    struct iovec iov = {.iov_base = &p, .iov_len = sizeof(p)};
    struct msghdr mh = {.msg_name = &to,
                        .msg_namelen = sizeof(to),
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = c.buf,
                        .msg_controllen = sizeof(c.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = IPPROTO_IPV6;
    cm->cmsg_type = IPV6_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
    struct in6_pktinfo pi;
    memset(&pi, 0, sizeof(pi));
    memcpy(&pi.ipi6_addr, v->addr, 16);
    pi.ipi6_ifindex = (unsigned)ifindex;
    memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
    ssize_t n = sendmsg(s, &mh, 0);
    rv = n < 0 ? -errno : (size_t)n == sizeof(p) ? 0 : -EIO;
    if (rv < 0) {
        fo__say(msg, msglen, "announce %s: neighbour advertisement: %s", v->text, strerror(-rv));
    }
    return rv;
}

/* The sockets stay open for the announcer's life: closing an AF_PACKET
 * socket waits for an RCU grace period in the kernel (packet_release ->
 * synchronize_net), 5-20 ms measured, which a socket per announcement
 * would add to every takeover and stall the daemon's loop with. */
int fo_ann_open(struct fo_ann **out)
{
    struct fo_ann *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return -ENOMEM;
    }
    /* SOCK_DGRAM: the kernel writes the Ethernet header from sll_addr and
     * the interface's own address. Protocol 0: this socket receives
     * nothing. */
    a->pkt = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    a->icmp6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    int rv = a->pkt < 0 || a->icmp6 < 0 ? -errno : 0;
    if (rv == 0) {
        /* a send-only socket: queue no received ICMPv6 */
        struct icmp6_filter filter;
        ICMP6_FILTER_SETBLOCKALL(&filter);
        int hops = 255, loop = 0;
        if (setsockopt(a->icmp6, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof(filter)) < 0 ||
            setsockopt(a->icmp6, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
            setsockopt(a->icmp6, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof(loop)) < 0) {
            rv = -errno;
        }
    }
    if (rv < 0) {
        fo_ann_close(a);
        return rv;
    }
    *out = a;
    return 0;
}

void fo_ann_close(struct fo_ann *a)
{
    if (a == NULL) {
        return;
    }
    if (a->pkt >= 0) {
        close(a->pkt);
    }
    if (a->icmp6 >= 0) {
        close(a->icmp6);
    }
    free(a);
}

int fo_announce(struct fo_ann *a, const struct fo_vip *v, char *msg, size_t msglen)
{
    if (v->family == AF_INET) {
        return garp(a, v, msg, msglen);
    }
    if (v->family == AF_INET6) {
        return unsolicited_na(a, v, msg, msglen);
    }
    fo__say(msg, msglen, "announce: address family %d", v->family);
    return -EAFNOSUPPORT;
}
