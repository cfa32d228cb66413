/* failover/ fo_net.h: virtual IPs through rtnetlink, the monitor and the
 * announcements, on a veth pair inside a network namespace of this test
 * process's own (unshare(CLONE_NEWNET) before each test: the host's
 * interfaces are never touched, nothing needs cleaning up). Needs root;
 * skipped with a message otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_packet.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/ip6.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fo_net.h"
#include "test_fo_util.h"

#define IFA FO_TEST_IFA
#define IFB FO_TEST_IFB

struct env {
    bool ok;
    char why[160];
    struct fo_nl *nl;
    struct fo_ann *ann;
    unsigned ia, ib;
    unsigned char maca[6];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A fresh namespace with IFA <-> IFB, both up (veth has carrier only when
 * both ends are up). */
static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    *state = e;
    if (fo_test_netns(e->why, sizeof(e->why)) != 0) {
        return 0;
    }
    assert_int_equal(fo_nl_open(&e->nl), 0);
    assert_int_equal(fo_ann_open(&e->ann), 0);
    bool up = false;
    for (int i = 0; i < 400 && !up; i++) {
        assert_int_equal(fo_nl_link(e->nl, IFA, &e->ia, &up, e->maca), 0);
        if (!up) {
            sleep_ms(5);
        }
    }
    assert_true(up);
    assert_int_equal(fo_nl_link(e->nl, IFB, &e->ib, NULL, NULL), 0);
    e->ok = true;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    fo_nl_close(e->nl);
    fo_ann_close(e->ann);
    free(e);
    return 0;
}

static struct env *need_netns(void **state)
{
    struct env *e = *state;
    if (!e->ok) {
        print_message("SKIPPED: needs root in a private network namespace (%s)\n", e->why);
        skip();
    }
    return e;
}

static struct fo_vip vip(const char *addr, unsigned prefix, const char *ifname)
{
    struct fo_vip v;
    char msg[128];
    assert_int_equal(fo_vip_parse(addr, prefix, ifname, &v, msg, sizeof(msg)), 0);
    return v;
}

static bool present(struct env *e, const struct fo_vip *v)
{
    bool p = false;
    assert_int_equal(fo_addr_present(e->nl, v, &p), 0);
    return p;
}

/* The flags (IFA_FLAGS, else ifa_flags) of address a on ifindex, from a
 * dump of our own; -1 when it is not there. */
struct flags_q {
    unsigned ifindex;
    const unsigned char *a;
    long flags;
};

static int flags_cb(const struct nlmsghdr *nlh, void *arg)
{
    struct flags_q *q = arg;
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    if (nlh->nlmsg_type != RTM_NEWADDR || ifa->ifa_index != q->ifindex ||
        ifa->ifa_family != AF_INET6) {
        return MNL_CB_OK;
    }
    const struct nlattr *at;
    bool match = false;
    long flags = ifa->ifa_flags;
    mnl_attr_for_each(at, nlh, sizeof(*ifa))
    {
        if (mnl_attr_get_type(at) == IFA_ADDRESS && mnl_attr_get_payload_len(at) == 16 &&
            memcmp(mnl_attr_get_payload(at), q->a, 16) == 0) {
            match = true;
        }
        if (mnl_attr_get_type(at) == IFA_FLAGS) {
            flags = mnl_attr_get_u32(at);
        }
    }
    if (match) {
        q->flags = flags;
    }
    return MNL_CB_OK;
}

static long addr6_flags(unsigned ifindex, const unsigned char *a)
{
    struct mnl_socket *s = mnl_socket_open(NETLINK_ROUTE);
    assert_non_null(s);
    assert_int_equal(mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID), 0);
    char buf[32768] __attribute__((aligned(8)));
    struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
    h->nlmsg_type = RTM_GETADDR;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    h->nlmsg_seq = 1;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof(*ifa));
    ifa->ifa_family = AF_INET6;
    assert_true(mnl_socket_sendto(s, h, h->nlmsg_len) > 0);
    struct flags_q q = {.ifindex = ifindex, .a = a, .flags = -1};
    int rv;
    do {
        ssize_t n = mnl_socket_recvfrom(s, buf, sizeof(buf));
        assert_true(n > 0);
        rv = mnl_cb_run(buf, (size_t)n, 1, mnl_socket_get_portid(s), flags_cb, &q);
    } while (rv > 0);
    assert_int_equal(rv, 0);
    mnl_socket_close(s);
    return q.flags;
}

/* fo_vip_parse: canonical text for both families; bad address/prefix/name refused. */
static void test_vip_parse(void **state)
{
    (void)state;
    struct fo_vip v;
    char msg[128];
    assert_int_equal(fo_vip_parse("198.51.100.100", 24, "eth0", &v, msg, sizeof(msg)), 0);
    assert_int_equal(v.family, AF_INET);
    assert_memory_equal(v.addr, ((unsigned char[]){198, 51, 100, 100}), 4);
    assert_string_equal(v.text, "198.51.100.100/24 on eth0");
    assert_int_equal(fo_vip_parse("2001:DB8:0::100", 64, "eth0", &v, msg, sizeof(msg)), 0);
    assert_int_equal(v.family, AF_INET6);
    assert_string_equal(v.text, "2001:db8::100/64 on eth0");
    assert_int_equal(v.addr[15], 0x00);
    assert_int_equal(v.addr[14], 0x01);
    assert_int_equal(fo_vip_parse("198.51.100.300", 24, "eth0", &v, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "198.51.100.300"));
    assert_int_equal(fo_vip_parse("198.51.100.1", 33, "eth0", &v, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(fo_vip_parse("2001:db8::1", 129, "eth0", &v, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(fo_vip_parse("ff02::1", 64, "eth0", &v, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(fo_vip_parse("0.0.0.0", 0, "eth0", &v, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(fo_vip_parse("198.51.100.1", 24, "", &v, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(fo_vip_parse("198.51.100.1", 24, "a/b", &v, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(fo_vip_parse("198.51.100.1", 24, "sixteen-chars-xx", &v, msg, sizeof(msg)),
                     -EINVAL);
    /* the longest canonical text still fits */
    assert_int_equal(fo_vip_parse("2001:db8:1111:2222:3333:4444:5555:6666", 128, "fifteen-chars-x",
                                  &v, msg, sizeof(msg)),
                     0);
    assert_string_equal(v.text, "2001:db8:1111:2222:3333:4444:5555:6666/128 on fifteen-chars-x");
}

/* fo_nl_link: index, MAC, up needs carrier (peer down -> down), missing -> -ENODEV. */
static void test_link(void **state)
{
    struct env *e = need_netns(state);
    assert_int_equal(e->ia, if_nametoindex(IFA));
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), IFA);
    assert_int_equal(ioctl(s, SIOCGIFHWADDR, &ifr), 0);
    close(s);
    assert_memory_equal(e->maca, ifr.ifr_hwaddr.sa_data, 6);
    unsigned idx = 99;
    bool up = true;
    assert_int_equal(fo_nl_link(e->nl, "nosuchif0", &idx, &up, NULL), -ENODEV);
    assert_int_equal(system("ip link set " IFB " down"), 0);
    for (int i = 0; i < 400; i++) { /* the carrier follows the peer */
        assert_int_equal(fo_nl_link(e->nl, IFA, NULL, &up, NULL), 0);
        if (!up) {
            break;
        }
        sleep_ms(5);
    }
    assert_false(up);
}

/* IPv4 add/read back/remove, idempotent both ways; missing interface: add fails. */
static void test_addr_v4(void **state)
{
    struct env *e = need_netns(state);
    struct fo_vip v = vip("198.51.100.100", 24, IFA);
    char msg[256] = "";
    assert_false(present(e, &v));
    assert_int_equal(fo_addr_add(e->nl, &v, msg, sizeof(msg)), 0);
    assert_true(present(e, &v));
    assert_int_equal(fo_addr_add(e->nl, &v, msg, sizeof(msg)), 0);
    assert_true(present(e, &v));
    /* the same address with another prefix is another address */
    struct fo_vip other = vip("198.51.100.100", 25, IFA);
    assert_false(present(e, &other));
    assert_int_equal(fo_addr_del(e->nl, &v, msg, sizeof(msg)), 0);
    assert_false(present(e, &v));
    assert_int_equal(fo_addr_del(e->nl, &v, msg, sizeof(msg)), 0);

    struct fo_vip gone = vip("198.51.100.101", 24, "nosuchif0");
    assert_int_equal(fo_addr_add(e->nl, &gone, msg, sizeof(msg)), -ENODEV);
    assert_string_equal(msg, "add 198.51.100.101/24 on nosuchif0: No such device");
    assert_int_equal(fo_addr_del(e->nl, &gone, msg, sizeof(msg)), 0);
    bool p = true;
    assert_int_equal(fo_addr_present(e->nl, &gone, &p), 0);
    assert_false(p);
}

/* IPv6 add/remove cycle; the address is not tentative right after add (NODAD). */
static void test_addr_v6(void **state)
{
    struct env *e = need_netns(state);
    struct fo_vip v = vip("2001:db8::100", 64, IFA);
    char msg[256] = "";
    assert_false(present(e, &v));
    assert_int_equal(fo_addr_add(e->nl, &v, msg, sizeof(msg)), 0);
    long flags = addr6_flags(e->ia, v.addr);
    assert_true(flags >= 0);
    assert_false(flags & IFA_F_TENTATIVE);
    assert_true(flags & IFA_F_NODAD);
    assert_true(present(e, &v));
    assert_int_equal(fo_addr_add(e->nl, &v, msg, sizeof(msg)), 0);
    assert_true(present(e, &v));
    assert_int_equal(fo_addr_del(e->nl, &v, msg, sizeof(msg)), 0);
    assert_false(present(e, &v));
    assert_int_equal(addr6_flags(e->ia, v.addr), -1);
    assert_int_equal(fo_addr_del(e->nl, &v, msg, sizeof(msg)), 0);
}

struct seen {
    struct fo_mon_event ev[64];
    size_t n;
};

static void collect(void *arg, const struct fo_mon_event *ev)
{
    struct seen *s = arg;
    if (s->n < 64) {
        s->ev[s->n++] = *ev;
    }
}

/* Wait (at most 2 s) for an event that pred accepts. */
static bool wait_event(int fd, bool (*pred)(const struct fo_mon_event *, const void *),
                       const void *arg)
{
    uint64_t end = now_ms() + 2000;
    while (now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) {
            continue;
        }
        struct seen s = {.n = 0};
        assert_int_equal(fo_mon_read(fd, collect, &s), 0);
        for (size_t i = 0; i < s.n; i++) {
            if (pred(&s.ev[i], arg)) {
                return true;
            }
        }
    }
    return false;
}

struct want {
    enum fo_mon_kind kind;
    const struct fo_vip *v;
    unsigned ifindex;
};

static bool addr_event(const struct fo_mon_event *ev, const void *arg)
{
    const struct want *w = arg;
    return ev->kind == w->kind && fo_mon_is(ev, w->v, w->ifindex);
}

static bool link_down(const struct fo_mon_event *ev, const void *arg)
{
    return ev->kind == FO_MON_LINK && ev->ifindex == *(const unsigned *)arg && !ev->up;
}

/* Monitor: add/del events carry address, prefix, ifindex; peer down = link down. */
static void test_monitor(void **state)
{
    struct env *e = need_netns(state);
    int fd = -1;
    assert_int_equal(fo_mon_open(&fd), 0);
    assert_int_equal(fo_mon_read(fd, collect, &(struct seen){.n = 0}), 0); /* nothing pending */
    char msg[256];
    struct fo_vip v4 = vip("198.51.100.100", 24, IFA), v6 = vip("2001:db8::100", 64, IFA);
    struct fo_vip other = vip("198.51.100.101", 24, IFA);
    struct fo_mon_event fake = {
        .kind = FO_MON_ADDR_ADD, .ifindex = e->ia, .family = AF_INET, .prefix = 24};
    memcpy(fake.addr, v4.addr, 4);
    assert_true(fo_mon_is(&fake, &v4, 0));
    assert_true(fo_mon_is(&fake, &v4, e->ia));
    assert_false(fo_mon_is(&fake, &v4, e->ib));
    assert_false(fo_mon_is(&fake, &other, 0));
    fake.prefix = 25;
    assert_false(fo_mon_is(&fake, &v4, 0));

    for (int i = 0; i < 2; i++) {
        const struct fo_vip *v = i == 0 ? &v4 : &v6;
        assert_int_equal(fo_addr_add(e->nl, v, msg, sizeof(msg)), 0);
        assert_true(wait_event(fd, addr_event, &(struct want){FO_MON_ADDR_ADD, v, e->ia}));
        assert_int_equal(fo_addr_del(e->nl, v, msg, sizeof(msg)), 0);
        assert_true(wait_event(fd, addr_event, &(struct want){FO_MON_ADDR_DEL, v, e->ia}));
    }
    assert_int_equal(system("ip link set " IFB " down"), 0);
    assert_true(wait_event(fd, link_down, &e->ia));
    close(fd);
}

/* An AF_PACKET socket on the peer end, receiving ethertype proto. */
static int capture(unsigned ifindex, uint16_t proto)
{
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(proto));
    assert_true(s >= 0);
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = (int)ifindex};
    assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
    return s;
}

/* The next incoming frame on s for which match() holds, at most 2 s. */
static ssize_t next_frame(int s, unsigned char *buf, size_t len,
                          bool (*match)(const unsigned char *, size_t, const void *),
                          const void *arg)
{
    uint64_t end = now_ms() + 2000;
    while (now_ms() < end) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) {
            continue;
        }
        struct sockaddr_ll from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s, buf, len, 0, (struct sockaddr *)&from, &fl);
        if (n > 0 && from.sll_pkttype != PACKET_OUTGOING && match(buf, (size_t)n, arg)) {
            return n;
        }
    }
    return -1;
}

static bool arp_for(const unsigned char *f, size_t n, const void *arg)
{
    /* Ethernet 14 + ARP 28; spa at 14 + 14 */
    return n >= 42 && memcmp(f + 28, arg, 4) == 0;
}

/* GARP seen on the peer: broadcast ARP request, sha = MAC, spa = tpa = VIP. */
static void test_garp(void **state)
{
    struct env *e = need_netns(state);
    int cap = capture(e->ib, ETH_P_ARP);
    struct fo_vip v = vip("198.51.100.100", 24, IFA);
    char msg[256] = "";
    double t0 = now_us();
    assert_int_equal(fo_addr_add(e->nl, &v, msg, sizeof(msg)), 0);
    double t1 = now_us();
    assert_int_equal(fo_announce(e->ann, &v, msg, sizeof(msg)), 0);
    double t2 = now_us();
    print_message("IPv4: add + read back %.0f us, announce %.0f us\n", t1 - t0, t2 - t1);
    unsigned char f[1600];
    ssize_t n = next_frame(cap, f, sizeof(f), arp_for, v.addr);
    assert_true(n >= 42);
    static const unsigned char bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, zero[6] = {0};
    assert_memory_equal(f, bcast, 6);
    assert_memory_equal(f + 6, e->maca, 6);
    assert_int_equal(f[12] << 8 | f[13], ETH_P_ARP);
    const unsigned char *a = f + 14;
    assert_int_equal(a[0] << 8 | a[1], ARPHRD_ETHER);
    assert_int_equal(a[2] << 8 | a[3], ETH_P_IP);
    assert_int_equal(a[4], 6);
    assert_int_equal(a[5], 4);
    assert_int_equal(a[6] << 8 | a[7], ARPOP_REQUEST);
    assert_memory_equal(a + 8, e->maca, 6); /* sha */
    assert_memory_equal(a + 14, v.addr, 4); /* spa */
    assert_memory_equal(a + 18, zero, 6);   /* tha */
    assert_memory_equal(a + 24, v.addr, 4); /* tpa */
    close(cap);

    /* no Ethernet address, no announcement */
    struct fo_vip lo = vip("198.51.100.100", 24, "lo");
    assert_int_equal(fo_announce(e->ann, &lo, msg, sizeof(msg)), -EOPNOTSUPP);
    struct fo_vip none = vip("198.51.100.100", 24, "nosuchif0");
    assert_int_equal(fo_announce(e->ann, &none, msg, sizeof(msg)), -ENODEV);
    assert_non_null(strstr(msg, "198.51.100.100/24 on nosuchif0"));
}

static bool na_for(const unsigned char *f, size_t n, const void *arg)
{
    /* Ethernet 14, IPv6 40, ICMPv6 type at 54, NA target at 62 */
    return n >= 14 + 40 + 32 && f[14 + 6] == IPPROTO_ICMPV6 && f[54] == ND_NEIGHBOR_ADVERT &&
           memcmp(f + 62, arg, 16) == 0;
}

static uint16_t icmp6_sum(const unsigned char *ip6, const unsigned char *icmp, size_t len)
{
    uint32_t sum = 0;
    for (size_t i = 8; i < 40; i += 2) { /* source and destination */
        sum += (uint32_t)(ip6[i] << 8 | ip6[i + 1]);
    }
    sum += (uint32_t)len + IPPROTO_ICMPV6;
    for (size_t i = 0; i < len; i += 2) {
        sum += (uint32_t)(icmp[i] << 8 | (i + 1 < len ? icmp[i + 1] : 0));
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return (uint16_t)sum;
}

/* NA seen on the peer: ff02::1, hops 255, type 136, O set, S clear, TLLA = MAC. */
static void test_unsolicited_na(void **state)
{
    struct env *e = need_netns(state);
    int cap = capture(e->ib, ETH_P_IPV6);
    struct fo_vip v = vip("2001:db8::100", 64, IFA);
    char msg[256] = "";
    double t0 = now_us();
    assert_int_equal(fo_addr_add(e->nl, &v, msg, sizeof(msg)), 0);
    double t1 = now_us();
    assert_int_equal(fo_announce(e->ann, &v, msg, sizeof(msg)), 0);
    double t2 = now_us();
    print_message("IPv6: add + read back %.0f us, announce %.0f us\n", t1 - t0, t2 - t1);
    unsigned char f[1600];
    ssize_t n = next_frame(cap, f, sizeof(f), na_for, v.addr);
    assert_true(n >= 14 + 40 + 32);
    static const unsigned char mc[6] = {0x33, 0x33, 0, 0, 0, 1};
    static const unsigned char all_nodes[16] = {0xff, 0x02, [15] = 1};
    assert_memory_equal(f, mc, 6);
    assert_memory_equal(f + 6, e->maca, 6);
    const unsigned char *ip = f + 14, *icmp = f + 54;
    size_t plen = (size_t)(ip[4] << 8 | ip[5]);
    assert_int_equal(plen, 32);
    assert_int_equal(ip[6], IPPROTO_ICMPV6);
    assert_int_equal(ip[7], 255); /* hop limit */
    assert_memory_equal(ip + 8, v.addr, 16);
    assert_memory_equal(ip + 24, all_nodes, 16);
    assert_int_equal(icmp[0], 136);
    assert_int_equal(icmp[1], 0);
    assert_int_equal(icmp6_sum(ip, icmp, plen), 0xffff);
    assert_true(icmp[4] & 0x20);  /* Override */
    assert_false(icmp[4] & 0x40); /* Solicited */
    assert_false(icmp[4] & 0x80); /* Router */
    assert_memory_equal(icmp + 8, v.addr, 16);
    assert_int_equal(icmp[24], ND_OPT_TARGET_LINKADDR);
    assert_int_equal(icmp[25], 1);
    assert_memory_equal(icmp + 26, e->maca, 6);
    close(cap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vip_parse),
        cmocka_unit_test_setup_teardown(test_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addr_v4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addr_v6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_monitor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsolicited_na, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
