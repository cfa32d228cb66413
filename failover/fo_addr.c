/* failover: virtual IP parsing, the rtnetlink commands and the address/link
 * monitor (see fo_net.h).
 *
 * One NETLINK_ROUTE socket per struct fo_nl, used synchronously: every
 * request carries a fresh sequence number and is read up to its
 * acknowledgement (NLMSG_ERROR) or the end of its dump (NLMSG_DONE), so no
 * reply is ever left in the socket for the next request. Replies with
 * another sequence number (left by an earlier request that failed halfway)
 * are skipped. The receive buffer is allocated once by fo_nl_open. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "fo_net.h"

/* A dump datagram holds up to 32 KiB: the kernel sizes dump skbs by the
 * reader's largest recvmsg (netlink_recvmsg: max_recvmsg_len), and a
 * smaller buffer would truncate them. */
#define NL_RXBUF 32768
/* An unanswered request must not hang the caller (the guardian runs its
 * release through here); the kernel answers rtnetlink at once. */
#define NL_TIMEOUT_S 5
#define DUMP_TRIES 4

struct fo_nl {
    struct mnl_socket *sock;
    unsigned portid;
    unsigned seq;
    char ext[128]; /* the kernel's extended ack message of the last error */
    char req[1024] __attribute__((aligned(8)));
    char rx[NL_RXBUF] __attribute__((aligned(8)));
};

/* The one message formatter of failover's I/O units (fo_net.h). */
void fo__say(char *msg, size_t msglen, const char *fmt, ...)
{
    if (msg == NULL || msglen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

static size_t alen(int family)
{
    return family == AF_INET ? 4 : 16;
}

/* Linux dev_valid_name(): what the kernel would accept as a name. */
static bool ifname_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len >= IFNAMSIZ || strcmp(n, ".") == 0 || strcmp(n, "..") == 0) {
        return false;
    }
    for (const char *p = n; *p != '\0'; p++) {
        if (*p == '/' || *p == ':' || isspace((unsigned char)*p)) {
            return false;
        }
    }
    return true;
}

int fo_vip_parse(const char *address, unsigned prefix, const char *ifname, struct fo_vip *v,
                 char *msg, size_t msglen)
{
    memset(v, 0, sizeof(*v));
    if (address == NULL || ifname == NULL) {
        fo__say(msg, msglen, "virtual IP: address and interface are required");
        return -EINVAL;
    }
    const char *bad = NULL;
    if (strchr(address, ':') != NULL) {
        v->family = AF_INET6;
        if (inet_pton(AF_INET6, address, v->addr) != 1) {
            bad = "not an IPv6 address";
        } else if (prefix > 128) {
            bad = "prefix above 128";
        } else {
            static const unsigned char any[16], loop[16] = {[15] = 1};
            if (memcmp(v->addr, any, 16) == 0 || memcmp(v->addr, loop, 16) == 0 ||
                v->addr[0] == 0xff) {
                bad = "unspecified, loopback or multicast";
            }
        }
    } else {
        v->family = AF_INET;
        if (inet_pton(AF_INET, address, v->addr) != 1) {
            bad = "not an IPv4 address";
        } else if (prefix > 32) {
            bad = "prefix above 32";
        } else if (v->addr[0] == 0 || v->addr[0] == 127 || v->addr[0] >= 224) {
            bad = "unspecified, loopback, multicast or reserved";
        }
    }
    if (bad == NULL && !ifname_ok(ifname)) {
        bad = "bad interface name";
    }
    if (bad != NULL) {
        fo__say(msg, msglen, "virtual IP %s/%u on %s: %s", address, prefix, ifname, bad);
        memset(v, 0, sizeof(*v));
        return -EINVAL;
    }
    v->prefix = prefix;
    snprintf(v->ifname, sizeof(v->ifname), "%s", ifname);
    char canon[INET6_ADDRSTRLEN];
    inet_ntop(v->family, v->addr, canon, sizeof(canon));
    /* at most 39 + 4 + 4 + 15 characters: always fits */
    snprintf(v->text, sizeof(v->text), "%s/%u on %s", canon, prefix, ifname);
    return 0;
}

int fo_nl_open(struct fo_nl **out)
{
    *out = NULL;
    struct fo_nl *nl = calloc(1, sizeof(*nl));
    if (nl == NULL) {
        return -ENOMEM;
    }
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (nl->sock == NULL) {
        int e = errno;
        free(nl);
        return -e;
    }
    if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;
        mnl_socket_close(nl->sock);
        free(nl);
        return -e;
    }
    int one = 1;
    /* Best effort (older kernels lack them): the kernel's reason in error
     * acks, errors without the echoed request, and dumps filtered by the
     * request's header (RTM_GETADDR by ifa_index). Replies are filtered here
     * anyway. */
    mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof(one));
    mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &one, sizeof(one));
    mnl_socket_setsockopt(nl->sock, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
    struct timeval tv = {.tv_sec = NL_TIMEOUT_S};
    setsockopt(mnl_socket_get_fd(nl->sock), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = (unsigned)time(NULL);
    *out = nl;
    return 0;
}

void fo_nl_close(struct fo_nl *nl)
{
    if (nl != NULL) {
        mnl_socket_close(nl->sock);
        free(nl);
    }
}

static int ext_attr(const struct nlattr *a, void *data)
{
    struct fo_nl *nl = data;
    if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
        mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0) {
        snprintf(nl->ext, sizeof(nl->ext), "%s", mnl_attr_get_str(a));
    }
    return MNL_CB_OK;
}

/* The extended ack TLVs follow the nlmsgerr and, unless capped, the whole
 * echoed request. */
static void ext_ack(struct fo_nl *nl, const struct nlmsghdr *nlh)
{
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) {
        return;
    }
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
    size_t off = sizeof(*e);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
        off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
    }
    if (mnl_nlmsg_get_payload_len(nlh) > off) {
        mnl_attr_parse(nlh, (unsigned)off, ext_attr, nl);
    }
}

typedef int (*reply_cb)(const struct nlmsghdr *nlh, void *arg);

/* Send the request in nl->req and read its replies to the end: 0, the
 * kernel's error, the first error cb returned (the rest is still read), or
 * -EINTR when a dump was interrupted by a concurrent change. */
static int talk(struct fo_nl *nl, reply_cb cb, void *arg)
{
    struct nlmsghdr *req = (struct nlmsghdr *)nl->req;
    req->nlmsg_seq = ++nl->seq;
    nl->ext[0] = '\0';
    if (mnl_socket_sendto(nl->sock, req, req->nlmsg_len) < 0) {
        return -errno;
    }
    int rv = 0;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl->sock, nl->rx, sizeof(nl->rx));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        int left = (int)n;
        for (const struct nlmsghdr *h = (const void *)nl->rx; mnl_nlmsg_ok(h, left);
             h = mnl_nlmsg_next(h, &left)) {
            if (h->nlmsg_seq != req->nlmsg_seq || h->nlmsg_pid != nl->portid) {
                continue; /* a stale reply */
            }
            if (h->nlmsg_flags & NLM_F_DUMP_INTR) {
                rv = rv != 0 ? rv : -EINTR;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                if (mnl_nlmsg_get_payload_len(h) < sizeof(struct nlmsgerr)) {
                    return -EBADMSG;
                }
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
                if (e->error != 0) {
                    ext_ack(nl, h);
                    return e->error;
                }
                return rv;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                if (mnl_nlmsg_get_payload_len(h) >= sizeof(int)) {
                    int e = *(const int *)mnl_nlmsg_get_payload(h);
                    if (e < 0) {
                        return e;
                    }
                }
                return rv;
            }
            if (h->nlmsg_type >= NLMSG_MIN_TYPE && cb != NULL && rv == 0) {
                rv = cb(h, arg);
            }
        }
    }
}

static void link_attrs(const struct nlmsghdr *nlh, unsigned char *mac, bool *has_mac)
{
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct ifinfomsg))
    {
        if (mnl_attr_get_type(a) == IFLA_ADDRESS && mnl_attr_get_payload_len(a) == 6) {
            memcpy(mac, mnl_attr_get_payload(a), 6);
            *has_mac = true;
        }
    }
}

struct link_q {
    unsigned ifindex;
    bool up, found, has_mac;
    unsigned char mac[6];
};

static int link_cb(const struct nlmsghdr *nlh, void *arg)
{
    struct link_q *q = arg;
    if (nlh->nlmsg_type != RTM_NEWLINK ||
        mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg)) {
        return 0;
    }
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    q->found = true;
    q->ifindex = (unsigned)ifi->ifi_index;
    /* dev_get_flags() reports IFF_LOWER_UP only while the device runs and
     * has carrier (netif_carrier_ok), which is what "up" means here. */
    q->up = (ifi->ifi_flags & IFF_UP) && (ifi->ifi_flags & IFF_LOWER_UP);
    link_attrs(nlh, q->mac, &q->has_mac);
    return 0;
}

int fo_nl_link(struct fo_nl *nl, const char *ifname, unsigned *ifindex, bool *up,
               unsigned char mac[6])
{
    if (!ifname_ok(ifname)) {
        return -ENODEV;
    }
    struct nlmsghdr *h = mnl_nlmsg_put_header(nl->req);
    h->nlmsg_type = RTM_GETLINK;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(h, IFLA_IFNAME, ifname);
    /* skip the per-VF and statistics blocks: a smaller reply */
    mnl_attr_put_u32(h, IFLA_EXT_MASK, 0);
    struct link_q q = {0};
    int rv = talk(nl, link_cb, &q);
    if (rv == 0 && !q.found) {
        rv = -ENODEV;
    }
    if (rv < 0) {
        return rv;
    }
    if (ifindex != NULL) {
        *ifindex = q.ifindex;
    }
    if (up != NULL) {
        *up = q.up;
    }
    if (mac != NULL) {
        /* no 6-byte hardware address (not Ethernet): zeros */
        memset(mac, 0, 6);
        if (q.has_mac) {
            memcpy(mac, q.mac, 6);
        }
    }
    return 0;
}

/* The interface address of an RTM_NEWADDR/RTM_DELADDR: IFA_LOCAL when
 * present (on point-to-point links IFA_ADDRESS is the peer), else
 * IFA_ADDRESS (IPv6 sends only that one on a broadcast link). */
static bool ifa_addr(const struct nlmsghdr *nlh, int family, unsigned char out[16])
{
    const struct nlattr *a, *local = NULL, *address = NULL;
    mnl_attr_for_each(a, nlh, sizeof(struct ifaddrmsg))
    {
        if (mnl_attr_get_payload_len(a) != alen(family)) {
            continue;
        }
        if (mnl_attr_get_type(a) == IFA_LOCAL) {
            local = a;
        } else if (mnl_attr_get_type(a) == IFA_ADDRESS) {
            address = a;
        }
    }
    a = local != NULL ? local : address;
    if (a == NULL) {
        return false;
    }
    memset(out, 0, 16);
    memcpy(out, mnl_attr_get_payload(a), alen(family));
    return true;
}

struct addr_q {
    const struct fo_vip *v;
    unsigned ifindex;
    bool found;
};

static int addr_cb(const struct nlmsghdr *nlh, void *arg)
{
    struct addr_q *q = arg;
    if (nlh->nlmsg_type != RTM_NEWADDR ||
        mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifaddrmsg)) {
        return 0;
    }
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    unsigned char a[16];
    if (ifa->ifa_family == q->v->family && ifa->ifa_index == q->ifindex &&
        ifa->ifa_prefixlen == q->v->prefix && ifa_addr(nlh, ifa->ifa_family, a) &&
        memcmp(a, q->v->addr, alen(q->v->family)) == 0) {
        q->found = true;
    }
    return 0;
}

static int present_on(struct fo_nl *nl, const struct fo_vip *v, unsigned ifindex, bool *present)
{
    int rv = -EINTR;
    for (int i = 0; i < DUMP_TRIES && rv == -EINTR; i++) {
        struct nlmsghdr *h = mnl_nlmsg_put_header(nl->req);
        h->nlmsg_type = RTM_GETADDR;
        h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof(*ifa));
        ifa->ifa_family = (unsigned char)v->family;
        ifa->ifa_index = ifindex;
        struct addr_q q = {.v = v, .ifindex = ifindex};
        rv = talk(nl, addr_cb, &q);
        *present = q.found;
    }
    return rv;
}

int fo_addr_present(struct fo_nl *nl, const struct fo_vip *v, bool *present)
{
    *present = false;
    unsigned ifindex;
    int rv = fo_nl_link(nl, v->ifname, &ifindex, NULL, NULL);
    if (rv == -ENODEV) {
        return 0;
    }
    return rv < 0 ? rv : present_on(nl, v, ifindex, present);
}

static void put_addr(struct fo_nl *nl, int type, unsigned flags, const struct fo_vip *v,
                     unsigned ifindex)
{
    struct nlmsghdr *h = mnl_nlmsg_put_header(nl->req);
    h->nlmsg_type = (uint16_t)type;
    h->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof(*ifa));
    ifa->ifa_family = (unsigned char)v->family;
    ifa->ifa_prefixlen = (unsigned char)v->prefix;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = ifindex;
    /* Both attributes, as iproute2 sends them: IPv4 keys an address by
     * IFA_LOCAL and checks IFA_ADDRESS against it (the same on a broadcast
     * link); IPv6 takes either. */
    mnl_attr_put(h, IFA_LOCAL, alen(v->family), v->addr);
    mnl_attr_put(h, IFA_ADDRESS, alen(v->family), v->addr);
    if (type == RTM_NEWADDR && v->family == AF_INET6) {
        /* Without NODAD an IPv6 address stays tentative for the whole
         * duplicate address detection (dad_transmits x retrans_time, 1 s by
         * default): it neither answers neighbour solicitations nor serves as
         * a source, and a DAD probe that crosses the old owner's last packets
         * would mark it dadfailed for good. The guardian of the previous
         * owner, not DAD, is what keeps the address unique. */
        ifa->ifa_flags = IFA_F_NODAD;
        mnl_attr_put_u32(h, IFA_FLAGS, IFA_F_NODAD);
    }
}

static int fail(struct fo_nl *nl, const char *what, const struct fo_vip *v, int rv, char *msg,
                size_t msglen)
{
    if (nl->ext[0] != '\0') {
        fo__say(msg, msglen, "%s %s: %s (%s)", what, v->text, strerror(-rv), nl->ext);
    } else {
        fo__say(msg, msglen, "%s %s: %s", what, v->text, strerror(-rv));
    }
    return rv;
}

int fo_addr_add(struct fo_nl *nl, const struct fo_vip *v, char *msg, size_t msglen)
{
    unsigned ifindex;
    int rv = fo_nl_link(nl, v->ifname, &ifindex, NULL, NULL);
    if (rv < 0) {
        return fail(nl, "add", v, rv, msg, msglen);
    }
    /* REPLACE: an address that is already there (a restart, a retried
     * activation) is updated in place instead of failing with EEXIST
     * (inet_rtm_newaddr / inet6_rtm_newaddr), and takes the lifetimes and
     * flags given here. */
    put_addr(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, v, ifindex);
    rv = talk(nl, NULL, NULL);
    if (rv < 0) {
        return fail(nl, "add", v, rv, msg, msglen);
    }
    bool present;
    rv = present_on(nl, v, ifindex, &present);
    if (rv < 0) {
        return fail(nl, "add (read back)", v, rv, msg, msglen);
    }
    if (!present) {
        fo__say(msg, msglen, "add %s: not on the interface after the kernel accepted it", v->text);
        return -EIO;
    }
    return 0;
}

int fo_addr_del(struct fo_nl *nl, const struct fo_vip *v, char *msg, size_t msglen)
{
    unsigned ifindex;
    int rv = fo_nl_link(nl, v->ifname, &ifindex, NULL, NULL);
    if (rv == -ENODEV) {
        return 0; /* no interface, no address */
    }
    if (rv < 0) {
        return fail(nl, "remove", v, rv, msg, msglen);
    }
    put_addr(nl, RTM_DELADDR, 0, v, ifindex);
    rv = talk(nl, NULL, NULL);
    /* both families answer EADDRNOTAVAIL for an address (with this prefix)
     * that is not there; ENODEV if the interface went meanwhile */
    if (rv < 0 && rv != -EADDRNOTAVAIL && rv != -ENODEV) {
        return fail(nl, "remove", v, rv, msg, msglen);
    }
    bool present;
    rv = present_on(nl, v, ifindex, &present);
    if (rv < 0 && rv != -ENODEV) {
        return fail(nl, "remove (read back)", v, rv, msg, msglen);
    }
    if (rv == 0 && present) {
        fo__say(msg, msglen, "remove %s: still on the interface", v->text);
        return -EIO;
    }
    return 0;
}

/* ---- the monitor ---- */

int fo_mon_open(int *fd)
{
    *fd = -1;
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) {
        return -errno;
    }
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    static const unsigned groups[] = {RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR};
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (setsockopt(s, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &groups[i], sizeof(groups[i])) < 0) {
            int e = errno;
            close(s);
            return -e;
        }
    }
    /* Room for a burst (an interface going down withdraws all its
     * addresses at once): fewer -ENOBUFS and full re-reads. Best effort,
     * capped by net.core.rmem_max. */
    int rcvbuf = 1 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    *fd = s;
    return 0;
}

static void mon_msg(const struct nlmsghdr *h, void (*cb)(void *, const struct fo_mon_event *),
                    void *arg)
{
    struct fo_mon_event ev = {0};
    if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR) {
        if (mnl_nlmsg_get_payload_len(h) < sizeof(struct ifaddrmsg)) {
            return;
        }
        const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(h);
        if ((ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) ||
            !ifa_addr(h, ifa->ifa_family, ev.addr)) {
            return;
        }
        ev.kind = h->nlmsg_type == RTM_NEWADDR ? FO_MON_ADDR_ADD : FO_MON_ADDR_DEL;
        ev.ifindex = ifa->ifa_index;
        ev.family = ifa->ifa_family;
        ev.prefix = ifa->ifa_prefixlen;
    } else if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK) {
        if (mnl_nlmsg_get_payload_len(h) < sizeof(struct ifinfomsg)) {
            return;
        }
        const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(h);
        ev.kind = FO_MON_LINK;
        ev.ifindex = (unsigned)ifi->ifi_index;
        /* a deleted link is down whatever its last flags said */
        ev.up = h->nlmsg_type == RTM_NEWLINK && (ifi->ifi_flags & IFF_UP) &&
                (ifi->ifi_flags & IFF_LOWER_UP);
    } else {
        return;
    }
    cb(arg, &ev);
}

int fo_mon_read(int fd, void (*cb)(void *arg, const struct fo_mon_event *ev), void *arg)
{
    /* on the stack: nothing allocates after open */
    char buf[NL_RXBUF] __attribute__((aligned(8)));
    bool lost = false;
    for (;;) {
        struct sockaddr_nl from;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr mh = {
            .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == ENOBUFS) {
                lost = true; /* the queue overflowed; what is queued still counts */
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        if (mh.msg_flags & MSG_TRUNC) {
            lost = true; /* an event did not fit: as good as dropped */
            continue;
        }
        if (from.nl_pid != 0) {
            continue; /* only the kernel speaks on these groups */
        }
        int left = (int)n;
        for (const struct nlmsghdr *h = (const void *)buf; mnl_nlmsg_ok(h, left);
             h = mnl_nlmsg_next(h, &left)) {
            mon_msg(h, cb, arg);
        }
    }
    return lost ? -ENOBUFS : 0;
}

bool fo_mon_is(const struct fo_mon_event *ev, const struct fo_vip *v, unsigned ifindex)
{
    return (ev->kind == FO_MON_ADDR_ADD || ev->kind == FO_MON_ADDR_DEL) &&
           ev->family == v->family && ev->prefix == v->prefix &&
           memcmp(ev->addr, v->addr, alen(v->family)) == 0 &&
           (ifindex == 0 || ev->ifindex == ifindex);
}
