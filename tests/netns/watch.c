/* VIP / ANA watcher: the recording child and the parent's side (watch.h).
 * The analysis of a timeline is in watch_report.c. */
#include "watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000 /* linux/if.h: carrier (not in glibc's net/if.h) */
#endif

/* At 5 ms with 7 nodes, 2 VIPs and ANA sampling that is ~7000 records a
 * second: 2^21 records (64 MiB) last about 5 minutes, longer than any
 * test's timeout. The child then records one WATCH_ERROR (-ENOSPC) and
 * keeps answering its parent. */
#define WATCH_MAX_EVENTS (1u << 21)
#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 5000
#define DUMP_BUF 65536
/* bounds of the loops over kernel answers and directories */
#define MAX_DUMP_CHUNKS 256
#define MAX_DRAIN 256
#define MAX_ANA_FILES 1024

int64_t watch_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- configuration ---- */

void watch_cfg_init(struct watch_cfg *cfg, const struct lab *lab)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->nodes = lab->nodes;
    for (int i = 0; i <= lab->nodes; i++) {
        snprintf(cfg->ns[i], sizeof cfg->ns[i], "%s", lab->ns[i]);
        memcpy(cfg->mac[i], lab->mac[i], 6);
    }
    snprintf(cfg->ifname, sizeof cfg->ifname, "eth0");
    inet_pton(AF_INET, LAB_CLIENT_IP4, cfg->client_ip4);
    inet_pton(AF_INET6, LAB_CLIENT_IP6, cfg->client_ip6);
    cfg->interval_us = WATCH_INTERVAL_US;
    cfg->rt_priority = WATCH_RT_PRIORITY;
}

int watch_cfg_vip(struct watch_cfg *cfg, const char *addr)
{
    if (cfg->nvips >= WATCH_MAX_VIPS) {
        return -ENOSPC;
    }
    struct watch_vip *v = &cfg->vip[cfg->nvips];
    memset(v, 0, sizeof *v);
    if (inet_pton(AF_INET, addr, v->addr) == 1) {
        v->family = AF_INET;
    } else if (inet_pton(AF_INET6, addr, v->addr) == 1) {
        v->family = AF_INET6;
    } else {
        return -EINVAL;
    }
    snprintf(v->text, sizeof v->text, "%s", addr);
    return cfg->nvips++;
}

/* ---- the child ---- */

struct child {
    const struct watch_cfg *cfg;
    FILE *out;
    size_t written;
    bool full;
    int64_t interval_ns;
    int ev_fd[WATCH_MAX_NODES + 1];             /* [i]: node i's event socket */
    struct mnl_socket *nl[WATCH_MAX_NODES + 1]; /* [i]: node i's request socket */
    unsigned nl_seq;
    int ifindex; /* the client's data interface */
    int arp_fd, nd_fd;
    uint32_t round;
    /* the last error of each step, recorded again only when it changes:
     * [i] node i's sample, [WATCH_MAX_NODES + 1 + v] VIP v's probe, [0]
     * the loop */
    int last_err[WATCH_MAX_NODES + 1 + WATCH_MAX_VIPS];
    char *buf; /* DUMP_BUF bytes */
};

static void emit(struct child *c, const struct watch_ev *ev)
{
    if (c->full) {
        return;
    }
    if (c->written + 1 >= WATCH_MAX_EVENTS) {
        struct watch_ev e = {.t = watch_now(), .kind = WATCH_ERROR, .seq = ENOSPC};
        fwrite(&e, sizeof e, 1, c->out);
        c->full = true;
        return;
    }
    fwrite(ev, sizeof *ev, 1, c->out);
    c->written++;
}

/* rv < 0: record a WATCH_ERROR of step (see last_err) in namespace who
 * about vip, unless it is the step's last error already (a step failing
 * every round is recorded once); rv 0 re-arms the step. */
static void note_err(struct child *c, int step, int who, int vip, int rv)
{
    if (rv >= 0) {
        c->last_err[step] = 0;
        return;
    }
    if (c->last_err[step] != rv) {
        c->last_err[step] = rv;
        struct watch_ev e = {.t = watch_now(),
                             .kind = WATCH_ERROR,
                             .node = (int8_t)who,
                             .vip = (uint8_t)vip,
                             .seq = (uint32_t)-rv};
        emit(c, &e);
    }
}

static int vip_index(const struct watch_cfg *cfg, int family, const void *addr)
{
    size_t len = family == AF_INET ? 4 : 16;
    for (int v = 0; v < cfg->nvips; v++) {
        if (cfg->vip[v].family == family && memcmp(cfg->vip[v].addr, addr, len) == 0) {
            return v;
        }
    }
    return -1;
}

static int node_of_mac(const struct watch_cfg *cfg, const unsigned char *mac)
{
    for (int i = 1; i <= cfg->nodes; i++) {
        if (memcmp(cfg->mac[i], mac, 6) == 0) {
            return i;
        }
    }
    return WATCH_UNKNOWN;
}

/* -- netlink samples -- */

struct addr_acc {
    const struct watch_cfg *cfg;
    uint32_t held, tentative;
};

static int addr_attr(const struct nlattr *a, void *data)
{
    const struct nlattr **tb = data;
    int type = mnl_attr_get_type(a);
    if (type == IFA_ADDRESS || type == IFA_LOCAL || type == IFA_FLAGS) {
        tb[type] = a;
    }
    return MNL_CB_OK;
}

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
    struct addr_acc *acc = data;
    if (nlh->nlmsg_type != RTM_NEWADDR) {
        return MNL_CB_OK;
    }
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *tb[IFA_MAX + 1] = {0};
    mnl_attr_parse(nlh, sizeof *ifa, addr_attr, tb);
    /* IPv4: IFA_LOCAL is the address itself (IFA_ADDRESS the peer of a
     * point-to-point link); IPv6 has IFA_ADDRESS only */
    const struct nlattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
    size_t len = ifa->ifa_family == AF_INET ? 4 : ifa->ifa_family == AF_INET6 ? 16 : 0;
    if (a == NULL || len == 0 || mnl_attr_get_payload_len(a) < len) {
        return MNL_CB_OK;
    }
    int v = vip_index(acc->cfg, ifa->ifa_family, mnl_attr_get_payload(a));
    if (v < 0) {
        return MNL_CB_OK;
    }
    uint32_t flags = tb[IFA_FLAGS] ? mnl_attr_get_u32(tb[IFA_FLAGS]) : ifa->ifa_flags;
    acc->held |= 1u << v;
    if (flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) {
        acc->tentative |= 1u << v;
    }
    return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
    bool *up = data;
    if (nlh->nlmsg_type == RTM_NEWLINK) {
        const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
        *up = (ifi->ifi_flags & IFF_UP) && (ifi->ifi_flags & IFF_LOWER_UP);
    }
    return MNL_CB_OK;
}

/* Send the request in c->buf and run cb over the answers until the dump's
 * end (dump) or the one answer. */
static int nl_request(struct child *c, int i, bool dump, mnl_cb_t cb, void *data)
{
    struct mnl_socket *nl = c->nl[i];
    const struct nlmsghdr *req = (const struct nlmsghdr *)c->buf;
    unsigned seq = req->nlmsg_seq;
    if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0) {
        return -errno;
    }
    unsigned portid = mnl_socket_get_portid(nl);
    for (int chunk = 0; chunk < MAX_DUMP_CHUNKS; chunk++) {
        ssize_t n = mnl_socket_recvfrom(nl, c->buf, DUMP_BUF);
        if (n < 0) {
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        int r = mnl_cb_run(c->buf, (size_t)n, seq, portid, cb, data);
        if (r < 0) {
            return -errno;
        }
        if (r == MNL_CB_STOP || !dump) {
            return 0;
        }
    }
    return -E2BIG;
}

/* One WATCH_SAMPLE of node i: every address of the namespace, then the
 * data interface's flags. Stamped when the dump was requested (the kernel
 * builds the first part of a dump inside that send). */
static void sample_node(struct child *c, int i)
{
    struct watch_ev ev = {.kind = WATCH_SAMPLE, .node = (int8_t)i};
    struct addr_acc acc = {.cfg = c->cfg};
    bool up = false;

    struct nlmsghdr *nlh = mnl_nlmsg_put_header(c->buf);
    nlh->nlmsg_type = RTM_GETADDR;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = ++c->nl_seq;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
    ifa->ifa_family = AF_UNSPEC;
    ev.t = watch_now();
    int rv = nl_request(c, i, true, addr_cb, &acc);

    if (rv == 0) {
        nlh = mnl_nlmsg_put_header(c->buf);
        nlh->nlmsg_type = RTM_GETLINK;
        nlh->nlmsg_flags = NLM_F_REQUEST;
        nlh->nlmsg_seq = ++c->nl_seq;
        struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
        ifi->ifi_family = AF_UNSPEC;
        mnl_attr_put_strz(nlh, IFLA_IFNAME, c->cfg->ifname);
        mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        rv = nl_request(c, i, false, link_cb, &up);
        if (rv == -ENODEV) {
            rv = 0; /* no data interface: down */
        }
    }
    note_err(c, i, i, 0, rv);
    if (rv < 0) {
        return;
    }
    ev.held = acc.held;
    ev.tentative = acc.tentative;
    ev.flags = up ? WATCH_F_UP : 0;
    emit(c, &ev);
}

/* Read everything pending on node i's event socket; the contents do not
 * matter (an overflow neither): any event means "sample now". */
static void drain_events(struct child *c, int i)
{
    for (int k = 0; k < MAX_DRAIN; k++) {
        ssize_t n = recv(c->ev_fd[i], c->buf, DUMP_BUF, MSG_DONTWAIT);
        if (n < 0 && errno != ENOBUFS && errno != EINTR) {
            break;
        }
    }
}

/* -- ANA -- */

static int ana_optimized_groups(const char *configfs)
{
    char path[512];
    snprintf(path, sizeof path, "%s/nvmet/ports", configfs);
    DIR *ports = opendir(path);
    if (ports == NULL) {
        return 0;
    }
    int count = 0, files = 0;
    struct dirent *p;
    while (files < MAX_ANA_FILES && (p = readdir(ports)) != NULL) {
        if (p->d_name[0] == '.') {
            continue;
        }
        char gpath[768];
        snprintf(gpath, sizeof gpath, "%s/%s/ana_groups", path, p->d_name);
        DIR *groups = opendir(gpath);
        if (groups == NULL) {
            continue;
        }
        struct dirent *g;
        while (files < MAX_ANA_FILES && (g = readdir(groups)) != NULL) {
            /* group 1 is the kernel's default group of every port, always
             * optimized; the nodes' own groups are 2 and up */
            if (g->d_name[0] == '.' || strcmp(g->d_name, "1") == 0) {
                continue;
            }
            char f[1024];
            snprintf(f, sizeof f, "%s/%s/ana_state", gpath, g->d_name);
            files++;
            int fd = open(f, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                continue;
            }
            char state[32];
            ssize_t n = read(fd, state, sizeof state - 1);
            close(fd);
            if (n >= 9 && memcmp(state, "optimized", 9) == 0) {
                count++;
            }
        }
        closedir(groups);
    }
    closedir(ports);
    return count;
}

static void sample_ana(struct child *c, int i)
{
    struct watch_ev ev = {.t = watch_now(), .kind = WATCH_ANA, .node = (int8_t)i};
    int n = ana_optimized_groups(c->cfg->configfs[i]);
    ev.held = (uint32_t)n;
    ev.flags = n > 0 ? WATCH_F_OPTIMIZED : 0;
    emit(c, &ev);
}

/* -- probes -- */

static uint16_t csum_add(uint32_t sum, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i + 1 < len; i += 2) {
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    }
    if (len & 1) {
        sum += (uint32_t)p[len - 1] << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return (uint16_t)sum;
}

static int send_frame(struct child *c, int fd, const void *frame, size_t len)
{
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = c->ifindex};
    return sendto(fd, frame, len, 0, (struct sockaddr *)&sll, sizeof sll) < 0 ? -errno : 0;
}

/* ARP request, broadcast: who-has vip tell <client ip4> (client MAC). */
static int send_arp(struct child *c, const struct watch_vip *v)
{
    unsigned char f[60] = {0};
    const unsigned char *mac = c->cfg->mac[LAB_CLIENT];
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x08, f[13] = 0x06;                 /* ETH_P_ARP */
    f[14] = 0, f[15] = 1;                       /* Ethernet */
    f[16] = 0x08, f[17] = 0x00;                 /* IPv4 */
    f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1; /* request */
    memcpy(f + 22, mac, 6);
    memcpy(f + 28, c->cfg->client_ip4, 4);
    memcpy(f + 38, v->addr, 4);
    return send_frame(c, c->arp_fd, f, sizeof f);
}

/* Neighbour solicitation for vip to its solicited-node group
 * ff02::1:ffXX:XXXX, from the client's address with its link-layer
 * address option (so the answer comes back unicast, with the target's). */
static int send_ns(struct child *c, const struct watch_vip *v)
{
    unsigned char f[14 + 40 + 32] = {0};
    const unsigned char *mac = c->cfg->mac[LAB_CLIENT];
    unsigned char *ip = f + 14, *icmp = f + 54;
    f[0] = 0x33, f[1] = 0x33, f[2] = 0xff;
    memcpy(f + 3, v->addr + 13, 3);
    memcpy(f + 6, mac, 6);
    f[12] = 0x86, f[13] = 0xdd;
    ip[0] = 0x60;
    ip[4] = 0, ip[5] = 32; /* payload: NS 24 + option 8 */
    ip[6] = 58;            /* ICMPv6 */
    ip[7] = 255;           /* hop limit: neighbour discovery requires 255 */
    memcpy(ip + 8, c->cfg->client_ip6, 16);
    static const unsigned char snm[13] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff};
    memcpy(ip + 24, snm, 13);
    memcpy(ip + 37, v->addr + 13, 3);
    icmp[0] = 135;
    memcpy(icmp + 8, v->addr, 16);
    icmp[24] = 1, icmp[25] = 1; /* source link-layer address, 8 bytes */
    memcpy(icmp + 26, mac, 6);
    /* checksum over the pseudo header (source, destination, length 32,
     * next header 58) and the message */
    unsigned char pseudo[40] = {0};
    memcpy(pseudo, ip + 8, 32);
    pseudo[35] = 32;
    pseudo[39] = 58;
    uint32_t sum = csum_add(0, pseudo, sizeof pseudo);
    uint16_t ck = (uint16_t)~csum_add(sum, icmp, 32);
    icmp[2] = (unsigned char)(ck >> 8), icmp[3] = (unsigned char)ck;
    return send_frame(c, c->nd_fd, f, sizeof f);
}

static void probe_round(struct child *c)
{
    c->round++;
    for (int v = 0; v < c->cfg->nvips; v++) {
        const struct watch_vip *vip = &c->cfg->vip[v];
        struct watch_ev ev = {
            .t = watch_now(), .kind = WATCH_PROBE, .vip = (uint8_t)v, .seq = c->round};
        int rv = vip->family == AF_INET ? send_arp(c, vip) : send_ns(c, vip);
        note_err(c, WATCH_MAX_NODES + 1 + v, LAB_CLIENT, v, rv);
        if (rv == 0) {
            emit(c, &ev);
        }
    }
}

static void record_answer(struct child *c, int v, bool reply, const unsigned char *mac)
{
    struct watch_ev ev = {.t = watch_now(),
                          .kind = reply ? WATCH_REPLY : WATCH_ANNOUNCE,
                          .vip = (uint8_t)v,
                          .seq = c->round};
    ev.node = (int8_t)node_of_mac(c->cfg, mac);
    memcpy(ev.mac, mac, 6);
    emit(c, &ev);
}

/* ARP frames: a reply for a VIP to the client's address is an answer; one
 * whose sender and target address are both the VIP is an announcement. */
static void read_arp(struct child *c)
{
    unsigned char f[128];
    for (int k = 0; k < MAX_DRAIN; k++) {
        struct sockaddr_ll from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(c->arp_fd, f, sizeof f, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            break;
        }
        if (n < 42 || from.sll_pkttype == PACKET_OUTGOING || f[12] != 0x08 || f[13] != 0x06 ||
            f[16] != 0x08 || f[17] != 0x00 || f[18] != 6 || f[19] != 4) {
            continue;
        }
        int op = f[20] << 8 | f[21];
        const unsigned char *sha = f + 22, *spa = f + 28, *tpa = f + 38;
        int v = vip_index(c->cfg, AF_INET, spa);
        if (v < 0) {
            continue;
        }
        if (op == 2 && memcmp(tpa, c->cfg->client_ip4, 4) == 0) {
            record_answer(c, v, true, sha);
        } else if (memcmp(tpa, spa, 4) == 0) {
            record_answer(c, v, false, sha);
        }
    }
}

/* Neighbour advertisements (the socket's filter passes ICMPv6 136 only):
 * solicited ones to the client are answers, unsolicited ones
 * announcements. The MAC is the target link-layer address option's, else
 * the frame's source. */
static void read_nd(struct child *c)
{
    unsigned char f[256];
    for (int k = 0; k < MAX_DRAIN; k++) {
        struct sockaddr_ll from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(c->nd_fd, f, sizeof f, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            break;
        }
        const unsigned char *ip = f + 14, *icmp = f + 54;
        if (n < 54 + 24 || from.sll_pkttype == PACKET_OUTGOING || ip[6] != 58 || icmp[0] != 136) {
            continue;
        }
        int v = vip_index(c->cfg, AF_INET6, icmp + 8);
        if (v < 0) {
            continue;
        }
        const unsigned char *mac = f + 6;
        for (ssize_t o = 54 + 24; o + 8 <= n && f[o + 1] != 0; o += f[o + 1] * 8) {
            if (f[o] == 2 && f[o + 1] == 1) {
                mac = f + o + 2;
                break;
            }
        }
        bool solicited = (icmp[4] & 0x40) != 0;
        if (solicited && memcmp(ip + 24, c->cfg->client_ip6, 16) == 0) {
            record_answer(c, v, true, mac);
        } else if (!solicited) {
            record_answer(c, v, false, mac);
        }
    }
}

/* -- setup and loop -- */

static int enter_ns(const char *name)
{
    char path[96];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rv = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
    close(fd);
    return rv;
}

static int open_node(struct child *c, int i)
{
    int rv = enter_ns(c->cfg->ns[i]);
    if (rv < 0) {
        return rv;
    }
    c->ev_fd[i] = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (c->ev_fd[i] < 0) {
        return -errno;
    }
    int rcvbuf = 1 << 20;
    setsockopt(c->ev_fd[i], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
                             .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
    if (bind(c->ev_fd[i], (struct sockaddr *)&sa, sizeof sa) < 0) {
        return -errno;
    }
    c->nl[i] = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (c->nl[i] == NULL || mnl_socket_bind(c->nl[i], 0, MNL_SOCKET_AUTOPID) < 0) {
        return -errno;
    }
    /* a request is answered at once; this only bounds a kernel that never
     * answers */
    struct timeval tv = {.tv_usec = 200000};
    setsockopt(mnl_socket_get_fd(c->nl[i]), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return 0;
}

static int open_packet(struct child *c, int proto, int *out)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(proto));
    if (fd < 0) {
        return -errno;
    }
    *out = fd;
    if (proto == ETH_P_IPV6) {
        /* pass ICMPv6 neighbour advertisements only (next header 58 at
         * byte 20, ICMPv6 type 136 at byte 54; no extension headers in ND) */
        static struct sock_filter code[] = {
            BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 58, 0, 3),
            BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 54), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 136, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, 0xffff),      BPF_STMT(BPF_RET | BPF_K, 0),
        };
        struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
        if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
            return -errno;
        }
    }
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = c->ifindex};
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        return -errno;
    }
    /* our own probes need not come back (older kernels: filtered by
     * sll_pkttype instead) */
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    return 0;
}

static int open_client(struct child *c)
{
    int rv = enter_ns(c->cfg->ns[LAB_CLIENT]);
    if (rv < 0) {
        return rv;
    }
    c->ifindex = (int)if_nametoindex(c->cfg->ifname);
    if (c->ifindex == 0) {
        return -errno;
    }
    rv = open_packet(c, ETH_P_ARP, &c->arp_fd);
    if (rv == 0) {
        rv = open_packet(c, ETH_P_IPV6, &c->nd_fd);
    }
    return rv;
}

static void tick(struct child *c)
{
    for (int i = 1; i <= c->cfg->nodes; i++) {
        sample_node(c, i);
    }
    for (int i = 1; i <= c->cfg->nodes; i++) {
        if (c->cfg->configfs[i][0] != '\0') {
            sample_ana(c, i);
        }
    }
    /* probes last: their answers arrive while the loop goes back to ppoll */
    probe_round(c);
}

/* Close every descriptor but 0-2 and keep[] (ascending): the parent's
 * sockets, pipes and other watchers' control pipes must not be held open
 * by this one. */
static void close_others(const int *keep, int nkeep)
{
    unsigned lo = 3;
    for (int k = 0; k <= nkeep; k++) {
        unsigned hi = k < nkeep ? (unsigned)keep[k] : ~0u;
        if (hi > lo && close_range(lo, hi - 1, 0) < 0) {
            /* no close_range (before Linux 5.9): one by one, bounded */
            for (unsigned fd = lo; fd < hi && fd < 65536; fd++) {
                close((int)fd);
            }
        }
        lo = hi + 1;
    }
}

static int child_setup(struct child *c, int selfns)
{
    for (int i = 1; i <= c->cfg->nodes; i++) {
        int rv = open_node(c, i);
        if (rv < 0) {
            return rv;
        }
    }
    int rv = open_client(c);
    if (rv < 0) {
        return rv;
    }
    /* back home: nothing else depends on it, but files are read from here */
    return setns(selfns, CLONE_NEWNET) < 0 ? -errno : 0;
}

static void child_loop(struct child *c, int ctl)
{
    struct pollfd pfd[WATCH_MAX_NODES + 3];
    int n = 0;
    pfd[n++] = (struct pollfd){.fd = ctl, .events = POLLIN};
    for (int i = 1; i <= c->cfg->nodes; i++) {
        pfd[n++] = (struct pollfd){.fd = c->ev_fd[i], .events = POLLIN};
    }
    int arp = n, nd = n + 1;
    pfd[n++] = (struct pollfd){.fd = c->arp_fd, .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = c->nd_fd, .events = POLLIN};

    /* rounds on an absolute schedule; one that falls behind by a whole
     * period is skipped (the gap then shows in the timeline) */
    int64_t next = watch_now() + c->interval_ns;
    for (;;) {
        int64_t now = watch_now();
        if (now >= next) {
            tick(c);
            next += c->interval_ns;
            now = watch_now();
            if (next <= now) {
                next = now + c->interval_ns;
            }
        }
        int64_t wait = next - now;
        struct timespec ts = {.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
        if (ppoll(pfd, (nfds_t)n, &ts, NULL) < 0) {
            if (errno == EINTR) {
                continue;
            }
            note_err(c, 0, LAB_CLIENT, 0, -errno);
            return; /* cannot wait any more: stop rather than spin */
        }
        if (pfd[0].revents) {
            char b;
            ssize_t r = read(ctl, &b, 1);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
                return; /* the parent closed the pipe (or died) */
            }
        }
        for (int i = 1; i <= c->cfg->nodes; i++) {
            if (pfd[i].revents) {
                drain_events(c, i);
                sample_node(c, i);
            }
        }
        if (pfd[arp].revents) {
            read_arp(c);
        }
        if (pfd[nd].revents) {
            read_nd(c);
        }
    }
}

static void child_main(const struct watch_cfg *cfg, int ctl, int ready, int memfd)
{
    /* the parent's handlers (a test framework's longjmp on SIGSEGV) must
     * not run in this copy of it */
    for (int s = 1; s < NSIG; s++) {
        if (s != SIGKILL && s != SIGSTOP) {
            signal(s, SIG_DFL);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int keep[] = {ctl, ready, memfd};
    for (int i = 0; i < 2; i++) { /* ascending */
        for (int j = 0; j < 2 - i; j++) {
            if (keep[j] > keep[j + 1]) {
                int x = keep[j];
                keep[j] = keep[j + 1];
                keep[j + 1] = x;
            }
        }
    }
    close_others(keep, 3);
    /* wake-ups on time: the gaps are part of what is measured */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    struct child c = {
        .cfg = cfg, .interval_ns = (int64_t)cfg->interval_us * 1000, .arp_fd = -1, .nd_fd = -1};
    int rv = 0;
    int selfns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    c.buf = malloc(DUMP_BUF);
    c.out = fdopen(memfd, "w");
    if (selfns < 0 || c.buf == NULL || c.out == NULL) {
        rv = -errno;
    }
    if (rv == 0) {
        setvbuf(c.out, NULL, _IOFBF, 1 << 16);
        rv = child_setup(&c, selfns);
    }
    if (rv == 0) {
        struct watch_ev start = {.t = watch_now(), .kind = WATCH_START};
        struct sched_param sp = {.sched_priority = cfg->rt_priority};
        if (cfg->rt_priority > 0 &&
            sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0) {
            start.flags |= WATCH_F_REALTIME;
        }
        emit(&c, &start);
        tick(&c);
    }
    ssize_t w = write(ready, &rv, sizeof rv);
    (void)w;
    close(ready);
    if (rv < 0) {
        _exit(1);
    }
    child_loop(&c, ctl);
    struct watch_ev end = {.t = watch_now(), .kind = WATCH_END};
    fwrite(&end, sizeof end, 1, c.out);
    _exit(fflush(c.out) == 0 ? 0 : 1);
}

/* ---- the parent ---- */

struct watch {
    pid_t pid;
    int ctl;   /* write end of the control pipe: closing it stops the child */
    int memfd; /* the timeline, written by the child */
    struct watch_cfg cfg;
    struct watch_mark *marks;
    size_t nmarks, cap;
};

/* Reap the watcher within timeout_ms (then SIGKILL); *cpu_ns = the CPU
 * time it used. */
static int wait_child(pid_t pid, int timeout_ms, int *st, int64_t *cpu_ns)
{
    int64_t deadline = watch_now() + (int64_t)timeout_ms * 1000000;
    struct rusage ru;
    int rv = 0;
    for (;;) {
        pid_t r = wait4(pid, st, WNOHANG, &ru);
        if (r == pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
        if (watch_now() > deadline) {
            kill(pid, SIGKILL);
            if (wait4(pid, st, 0, &ru) != pid) {
                return -errno;
            }
            rv = -ETIMEDOUT;
            break;
        }
        struct timespec ts = {.tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
    *cpu_ns = ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
              ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
    return rv;
}

int watch_start(const struct watch_cfg *cfg, struct watch **out)
{
    *out = NULL;
    if (cfg->nodes < 1 || cfg->nodes > WATCH_MAX_NODES || cfg->nvips < 0 ||
        cfg->nvips > WATCH_MAX_VIPS || cfg->interval_us < 1000 || cfg->interval_us > 1000000 ||
        cfg->rt_priority < 0 || cfg->rt_priority > 99) {
        return -EINVAL;
    }
    struct watch *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return -ENOMEM;
    }
    w->cfg = *cfg;
    w->ctl = -1;
    int ctl[2] = {-1, -1}, ready[2] = {-1, -1};
    int rv = 0;
    w->memfd = memfd_create("nvha-watch", MFD_CLOEXEC);
    if (w->memfd < 0 || pipe2(ctl, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) {
        rv = -errno;
    }
    if (rv == 0) {
        w->pid = fork();
        if (w->pid < 0) {
            rv = -errno;
        } else if (w->pid == 0) {
            close(ctl[1]);
            close(ready[0]);
            child_main(&w->cfg, ctl[0], ready[1], w->memfd);
        }
    }
    /* the parent keeps the control write end and the ready read end */
    if (ctl[0] >= 0) {
        close(ctl[0]);
    }
    if (ready[1] >= 0) {
        close(ready[1]);
    }
    w->ctl = ctl[1];
    if (rv == 0) {
        struct pollfd p = {.fd = ready[0], .events = POLLIN};
        int child_rv = -ETIMEDOUT;
        if (poll(&p, 1, START_TIMEOUT_MS) == 1 &&
            read(ready[0], &child_rv, sizeof child_rv) != (ssize_t)sizeof child_rv) {
            child_rv = -EIO; /* died before reporting */
        }
        rv = child_rv;
    }
    if (ready[0] >= 0) {
        close(ready[0]);
    }
    if (rv < 0) {
        watch_stop(w, NULL);
        return rv;
    }
    *out = w;
    return 0;
}

int64_t watch_mark(struct watch *w, const char *label)
{
    int64_t t = watch_now();
    if (w->nmarks == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        struct watch_mark *m = realloc(w->marks, cap * sizeof *m);
        if (m == NULL) {
            return -ENOMEM;
        }
        w->marks = m;
        w->cap = cap;
    }
    struct watch_mark *m = &w->marks[w->nmarks++];
    m->t = t;
    snprintf(m->label, sizeof m->label, "%s", label);
    return t;
}

/* The records in write order are in time order already (one thread
 * stamps and writes them in sequence); insertion sort makes sure at the
 * cost of one pass. */
static void sort_events(struct watch_ev *ev, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct watch_ev x = ev[i];
        size_t j = i;
        while (j > 0 && ev[j - 1].t > x.t) {
            ev[j] = ev[j - 1];
            j--;
        }
        ev[j] = x;
    }
}

static int read_timeline(struct watch *w, struct watch_timeline *tl)
{
    struct stat st;
    if (fstat(w->memfd, &st) < 0) {
        return -errno;
    }
    size_t n = (size_t)st.st_size / sizeof(struct watch_ev);
    tl->ev = malloc((n ? n : 1) * sizeof *tl->ev);
    if (tl->ev == NULL) {
        return -ENOMEM;
    }
    size_t got = 0, want = n * sizeof *tl->ev;
    while (got < want) {
        ssize_t r = pread(w->memfd, (char *)tl->ev + got, want - got, (off_t)got);
        if (r <= 0) {
            return r < 0 ? -errno : -EIO;
        }
        got += (size_t)r;
    }
    tl->n = n;
    sort_events(tl->ev, n);
    int rv = -EIO; /* unless the END record is there */
    for (size_t i = 0; i < n; i++) {
        if (tl->ev[i].kind == WATCH_START && tl->t_start == 0) {
            tl->t_start = tl->ev[i].t;
        } else if (tl->ev[i].kind == WATCH_END) {
            tl->t_end = tl->ev[i].t;
            rv = 0;
        }
    }
    if (rv < 0 && n > 0) {
        tl->t_end = tl->ev[n - 1].t;
    }
    return rv;
}

int watch_stop(struct watch *w, struct watch_timeline *tl)
{
    if (w == NULL) {
        return -EINVAL;
    }
    int rv = 0;
    int64_t cpu_ns = 0;
    if (w->ctl >= 0) {
        close(w->ctl);
    }
    if (w->pid > 0) {
        int st = 0;
        rv = wait_child(w->pid, STOP_TIMEOUT_MS, &st, &cpu_ns);
        if (rv == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            rv = -EIO;
        }
    }
    if (tl != NULL) {
        memset(tl, 0, sizeof *tl);
        tl->nodes = w->cfg.nodes;
        tl->nvips = w->cfg.nvips;
        memcpy(tl->vip, w->cfg.vip, sizeof tl->vip);
        memcpy(tl->mac, w->cfg.mac, sizeof tl->mac);
        tl->interval_ns = (int64_t)w->cfg.interval_us * 1000;
        tl->cpu_ns = cpu_ns;
        int r = w->memfd >= 0 ? read_timeline(w, tl) : -EIO;
        rv = rv < 0 ? rv : r;
        tl->marks = w->marks;
        tl->nmarks = w->nmarks;
        w->marks = NULL;
    }
    if (w->memfd >= 0) {
        close(w->memfd);
    }
    free(w->marks);
    free(w);
    return rv;
}

void watch_timeline_free(struct watch_timeline *tl)
{
    free(tl->ev);
    free(tl->marks);
    tl->ev = NULL;
    tl->marks = NULL;
    tl->n = tl->nmarks = 0;
}
