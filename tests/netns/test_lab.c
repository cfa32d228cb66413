/* The instruments of the failover tests: the analysis of watcher
 * timelines on synthetic ones, then the lab and the watcher for real (3
 * nodes and a client in network namespaces, VIPs moved by hand with ip):
 * takeover times, double ownership, neighbour answers and sampling gaps
 * must come out as scripted. The live tests need root; without it (or
 * without network namespaces) they skip with the reason. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lab.h"
#include "watch.h"

#define MS 1000000LL
#define VIP4 "198.51.100.200"
#define VIP6 "2001:db8::100"
/* The scripted pause between release and takeover, and the overlap
 * length. TOLERANCE_MS: how much later than scripted the new holder may
 * answer, as the test drives ip commands (fork, exec, netlink: a few ms,
 * tens on a loaded machine) and a probe round comes every 5 ms. What the
 * watcher itself adds is bounded tighter: an answer comes at most
 * ANSWER_MS after the address was seen (one probe period and the jitter),
 * and no two samples are more than MAX_GAP_MS apart: less than the scripted
 * pause and overlap, so neither can fall between two samples (a 12 ms gap
 * was seen on a loaded 2-core machine running four qemu guests). */
#define PAUSE_MS 50
#define OVERLAP_MS 100
#define TOLERANCE_MS 40
#define MAX_GAP_MS 25
#define ANSWER_MS MAX_GAP_MS

/* ---- synthetic timelines ---- */

/* times in ms from T0 (0 means "unknown" in a timeline) */
#define T0 (1000 * MS)

static struct watch_ev sample(int ms, int node, uint32_t held, bool up)
{
    return (struct watch_ev){.t = T0 + ms * MS,
                             .kind = WATCH_SAMPLE,
                             .node = (int8_t)node,
                             .held = held,
                             .flags = up ? WATCH_F_UP : 0};
}

static struct watch_ev ana(int ms, int node, bool optimized)
{
    return (struct watch_ev){.t = T0 + ms * MS,
                             .kind = WATCH_ANA,
                             .node = (int8_t)node,
                             .flags = optimized ? WATCH_F_OPTIMIZED : 0};
}

static struct watch_ev probe(int ms, int vip, uint32_t round)
{
    return (struct watch_ev){
        .t = T0 + ms * MS, .kind = WATCH_PROBE, .vip = (uint8_t)vip, .seq = round};
}

/* an answer at ms + us microseconds from node's MAC */
static struct watch_ev reply(int ms, int us, int vip, int node, uint32_t round)
{
    struct watch_ev e = {.t = T0 + ms * MS + us * 1000,
                         .kind = WATCH_REPLY,
                         .vip = (uint8_t)vip,
                         .node = (int8_t)node,
                         .seq = round};
    unsigned char mac[6] = {2, 0, 0, 0, 0, (unsigned char)node};
    memcpy(e.mac, mac, 6);
    return e;
}

static struct watch_timeline synthetic(struct watch_ev *ev, size_t n, int end_ms)
{
    struct watch_timeline tl = {.nodes = 3,
                                .nvips = 2,
                                .interval_ns = 5 * MS,
                                .t_start = T0,
                                .t_end = T0 + end_ms * MS,
                                .ev = ev,
                                .n = n};
    snprintf(tl.vip[0].text, sizeof tl.vip[0].text, VIP4);
    snprintf(tl.vip[1].text, sizeof tl.vip[1].text, VIP6);
    return tl;
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The holders at t are the nodes whose latest sample holds the VIP; before
 * any sample nobody holds it. */
static void test_holders(void **state)
{
    (void)state;
    struct watch_ev ev[] = {
        sample(0, 1, 1, true),   sample(0, 2, 0, true),  sample(0, 3, 0, true),
        sample(5, 1, 1, true),   sample(10, 1, 0, true), sample(60, 2, 1, true),
        sample(65, 3, 2, false),
    };
    struct watch_timeline tl = synthetic(ev, N_OF(ev), 100);
    assert_int_equal(watch_holders(&tl, 0, T0 - 1), 0);
    assert_int_equal(watch_holders(&tl, 0, T0 + 7 * MS), 1u << 1);
    assert_int_equal(watch_holders(&tl, 0, T0 + 30 * MS), 0);
    assert_int_equal(watch_holders(&tl, 0, T0 + 60 * MS), 1u << 2);
    assert_int_equal(watch_holders(&tl, 1, T0 + 70 * MS), 1u << 3);
    assert_true(watch_link_up(&tl, 1, T0 + 7 * MS));
    assert_false(watch_link_up(&tl, 3, T0 + 70 * MS));
    assert_int_equal(watch_first_sample(&tl, 0, 2, true, T0), T0 + 60 * MS);
    assert_int_equal(watch_first_sample(&tl, 0, 1, false, T0), T0 + 10 * MS);
    assert_int_equal(watch_first_sample(&tl, 0, 3, true, T0), -1);
}

/* Double ownership counts the time ≥ 2 nodes hold the VIP with their link
 * up: an overlap with a node cut off is none, three holders are one
 * interval, and one still open at the end runs to the end. */
static void test_double_owner(void **state)
{
    (void)state;
    struct watch_ev ev[] = {
        sample(0, 2, 1, true),    sample(0, 3, 0, true),    sample(0, 1, 0, true),
        sample(100, 3, 1, true),  sample(200, 3, 0, true),  /* 100 ms */
        sample(300, 3, 1, false), sample(400, 3, 0, false), /* cut off: none */
        sample(450, 3, 1, true),  sample(460, 1, 1, true),  sample(500, 3, 0, true),
        sample(520, 1, 0, true), /* 450..520: 70 ms */
        sample(900, 3, 1, true), /* open until the end (1000): 100 ms */
    };
    struct watch_timeline tl = synthetic(ev, N_OF(ev), 1000);
    struct watch_span s;
    assert_int_equal(watch_double_owner(&tl, 0, &s), 3);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.total_ns, 270 * MS);
    assert_int_equal(s.longest_ns, 100 * MS);
    assert_int_equal(s.first_ns, T0 + 100 * MS);
    assert_int_equal(watch_double_owner(&tl, 1, &s), 0);
    assert_int_equal(s.total_ns, 0);
    assert_int_equal(s.first_ns, -1);
}

/* A probe round answered by two MACs is a conflict; the same MAC twice is
 * not; answers for another VIP do not mix in. The first answer from a node
 * after t is found. */
static void test_arp_conflicts(void **state)
{
    (void)state;
    struct watch_ev ev[] = {
        probe(0, 0, 1),         probe(0, 1, 1),         reply(0, 30, 0, 1, 1),
        reply(0, 40, 1, 3, 1),  probe(5, 0, 2),         probe(5, 1, 2),
        reply(5, 20, 0, 1, 2),  reply(5, 30, 1, 3, 2),  reply(5, 45, 0, 2, 2), /* conflict */
        probe(10, 0, 3),        probe(10, 1, 3),        reply(10, 20, 0, 1, 3),
        reply(10, 25, 0, 1, 3), /* same MAC twice */
        probe(15, 0, 4),        probe(15, 1, 4),        reply(15, 10, 0, 2, 4),
        reply(15, 20, 0, 3, 4), reply(15, 30, 0, 1, 4), /* conflict */
        probe(20, 0, 5),        probe(20, 1, 5),        reply(20, 10, 0, 2, 5),
    };
    struct watch_timeline tl = synthetic(ev, N_OF(ev), 25);
    int64_t first = 0;
    assert_int_equal(watch_arp_conflicts(&tl, 0, &first), 2);
    assert_int_equal(first, T0 + 5 * MS + 45000);
    assert_int_equal(watch_arp_conflicts(&tl, 1, &first), 0);
    assert_int_equal(first, -1);
    assert_int_equal(watch_first_reply(&tl, 0, 2, T0 + 6 * MS), T0 + 15 * MS + 10000);
    assert_int_equal(watch_first_reply(&tl, 0, WATCH_ANY, T0 + 21 * MS), -1);
    assert_int_equal(watch_first_reply(&tl, 1, 3, T0), T0 + 40000);
    assert_int_equal(watch_count(&tl, WATCH_REPLY, 0, 1, T0, T0 + 25 * MS), 5);
    assert_int_equal(watch_count(&tl, WATCH_PROBE, -1, WATCH_ANY, T0, T0 + 10 * MS), 4);
}

/* Two nodes reporting ANA optimized at once, both with their data link
 * up, is an interval of its own; a node without carrier reports nothing
 * to a host and does not count. */
static void test_ana_double(void **state)
{
    (void)state;
    struct watch_ev ev[] = {
        sample(0, 1, 0, true), sample(0, 2, 0, true), sample(0, 3, 0, true),
        ana(0, 1, true),       ana(0, 2, false),      ana(0, 3, false),
        ana(80, 2, true),      ana(100, 1, false),    ana(150, 3, true),
        ana(155, 3, false),    ana(200, 2, false),    sample(210, 3, 0, false),
        ana(220, 3, true),     ana(230, 2, true),     ana(240, 2, false),
    };
    struct watch_timeline tl = synthetic(ev, N_OF(ev), 300);
    struct watch_span s;
    assert_int_equal(watch_ana_double(&tl, &s), 2);
    assert_int_equal(s.total_ns, 25 * MS);
    assert_int_equal(s.longest_ns, 20 * MS);
    assert_int_equal(s.first_ns, T0 + 80 * MS);
}

/* The largest gap covers the start and the end of the recording; probe
 * rounds count once whatever the number of VIPs; a node never sampled has
 * the whole recording as its gap, and with no bounds none at all. */
static void test_max_gap(void **state)
{
    (void)state;
    struct watch_ev ev[] = {
        sample(2, 1, 0, true),  probe(2, 0, 1),         probe(2, 1, 1),
        sample(7, 1, 0, true),  probe(7, 0, 2),         probe(7, 1, 2),
        sample(12, 1, 0, true), probe(18, 0, 3),        probe(18, 1, 3),
        sample(24, 1, 0, true), sample(29, 1, 0, true),
    };
    struct watch_timeline tl = synthetic(ev, N_OF(ev), 33);
    assert_int_equal(watch_max_gap(&tl, WATCH_SAMPLE, 1), 12 * MS);
    assert_int_equal(watch_max_gap(&tl, WATCH_PROBE, 0), 15 * MS); /* 18 -> end 33 */
    assert_int_equal(watch_max_gap(&tl, WATCH_SAMPLE, 2), 33 * MS);
    tl.t_start = tl.t_end = 0;
    assert_int_equal(watch_max_gap(&tl, WATCH_SAMPLE, 2), INT64_MAX);
    assert_int_equal(watch_max_gap(&tl, WATCH_PROBE, 0), 11 * MS);
    struct watch_mark marks[] = {{.t = T0 + 3 * MS, .label = "kill"}};
    tl.marks = marks;
    tl.nmarks = 1;
    assert_int_equal(watch_mark_time(&tl, "kill"), T0 + 3 * MS);
    assert_int_equal(watch_mark_time(&tl, "none"), -1);
}

/* ---- live: the lab and the watcher ---- */

struct live {
    bool have; /* the lab exists; otherwise why says why not */
    char why[200];
    struct lab lab;
    struct watch *w;
    struct watch_timeline tl;
    bool have_tl;
    char dir[64]; /* node i's configfs at dir/n<i> */
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

/* Node i's ANA group 1 of port 1 says state (written aside and renamed,
 * as a reader must never see a half-written file). */
static void set_ana(const struct live *l, int node, const char *state)
{
    char dir[256], tmp[300], path[300];
    snprintf(dir, sizeof dir, "%s/n%d/nvmet/ports/5001/ana_groups/2", l->dir, node);
    snprintf(tmp, sizeof tmp, "%s/.ana_state", dir);
    snprintf(path, sizeof path, "%s/ana_state", dir);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", state);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static int setup_live(void **state)
{
    struct live *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return -1;
    }
    *state = l;
    if (lab_check(l->why, sizeof l->why) < 0) {
        return 0; /* the test skips, saying why */
    }
    if (lab_create(&l->lab, 3) < 0) {
        fprintf(stderr, "lab_create failed\n");
        return -1;
    }
    l->have = true;
    snprintf(l->dir, sizeof l->dir, "/tmp/nvha-lab-XXXXXX");
    if (mkdtemp(l->dir) == NULL) {
        return -1;
    }
    for (int i = 1; i <= 3; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/n%d/nvmet/ports/5001/ana_groups/2", l->dir, i);
        for (char *s = p + strlen(l->dir) + 1; *s; s++) {
            if (*s == '/') {
                *s = '\0';
                mkdir(p, 0755);
                *s = '/';
            }
        }
        if (mkdir(p, 0755) < 0) {
            return -1;
        }
        set_ana(l, i, "inaccessible");
    }
    return 0;
}

/* also after a failed assertion: the watcher, the lab and the files go */
static int teardown_live(void **state)
{
    struct live *l = *state;
    if (l == NULL) {
        return 0;
    }
    if (l->w != NULL) {
        watch_stop(l->w, NULL);
    }
    if (l->have_tl) {
        watch_timeline_free(&l->tl);
    }
    if (l->have) {
        lab_destroy(&l->lab);
    }
    if (l->dir[0] != '\0') {
        nftw(l->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    free(l);
    *state = NULL;
    return 0;
}

static struct live *live_or_skip(void **state)
{
    struct live *l = *state;
    if (!l->have) {
        print_message("SKIPPED (network namespace lab unavailable): %s\n", l->why);
        skip();
    }
    return l;
}

static void vip(struct live *l, int node, bool add, int family)
{
    const char *a = family == AF_INET ? VIP4 "/25" : VIP6 "/64";
    if (add) {
        assert_int_equal(lab_ip(&l->lab, node, "addr", "add", a, "dev", "eth0",
                                family == AF_INET6 ? "nodad" : NULL, NULL),
                         0);
    } else {
        assert_int_equal(lab_ip(&l->lab, node, "addr", "del", a, "dev", "eth0", NULL), 0);
    }
}

/* VIP index 0 is the IPv4 one, 1 the IPv6 one. */
static void start_watch(struct live *l)
{
    struct watch_cfg cfg;
    watch_cfg_init(&cfg, &l->lab);
    assert_int_equal(watch_cfg_vip(&cfg, VIP4), 0);
    assert_int_equal(watch_cfg_vip(&cfg, VIP6), 1);
    for (int i = 1; i <= 3; i++) {
        snprintf(cfg.configfs[i], sizeof cfg.configfs[i], "%s/n%d", l->dir, i);
    }
    assert_int_equal(watch_start(&cfg, &l->w), 0);
}

/* Stop, print the timeline's changes, and check the instrument itself: no
 * watcher error, no sampling gap (any namespace, ANA files, probe rounds)
 * above MAX_GAP_MS. */
static const struct watch_timeline *stop_watch(struct live *l)
{
    int rv = watch_stop(l->w, &l->tl);
    l->w = NULL;
    l->have_tl = true;
    assert_int_equal(rv, 0);
    const struct watch_timeline *tl = &l->tl;
    watch_print(tl, stdout, 80);
    assert_int_equal(watch_errors(tl), 0);
    int64_t worst = watch_max_gap(tl, WATCH_PROBE, 0);
    for (int i = 1; i <= 3; i++) {
        int64_t g = watch_max_gap(tl, WATCH_SAMPLE, i);
        int64_t a = watch_max_gap(tl, WATCH_ANA, i);
        worst = g > worst ? g : worst;
        worst = a > worst ? a : worst;
    }
    print_message("largest sampling gap: %.3f ms (%zu records over %.1f ms, watcher CPU %.1f%%)\n",
                  (double)worst / 1e6, tl->n, (double)(tl->t_end - tl->t_start) / 1e6,
                  100.0 * (double)tl->cpu_ns / (double)(tl->t_end - tl->t_start));
    assert_true(worst <= MAX_GAP_MS * MS);
    return tl;
}

/* Release on n1, pause PAUSE_MS, take over on n2 (and ANA likewise). */
static void move(void **state, int family)
{
    struct live *l = live_or_skip(state);
    int v = family == AF_INET ? 0 : 1;
    vip(l, 1, true, family);
    set_ana(l, 1, "optimized");
    start_watch(l);
    sleep_ms(50);
    vip(l, 1, false, family);
    set_ana(l, 1, "inaccessible");
    int64_t t_del = watch_mark(l->w, "n1 released");
    sleep_ms(PAUSE_MS);
    int64_t t_add = watch_mark(l->w, "n2 takes over");
    set_ana(l, 2, "optimized");
    vip(l, 2, true, family);
    sleep_ms(100);
    const struct watch_timeline *tl = stop_watch(l);

    int64_t before = watch_first_reply(tl, v, 1, tl->t_start);
    assert_true(before > 0 && before < t_del);
    int64_t answer = watch_first_reply(tl, v, 2, t_del);
    int64_t held = watch_first_sample(tl, v, 2, true, t_add);
    assert_true(answer > 0 && held > 0);
    print_message(
        "%s: n2 answers %.3f ms after n1 released it (scripted pause %d ms); its "
        "address seen %.3f ms, its answer %.3f ms after the add began\n",
        family == AF_INET ? "ARP" : "NA", (double)(answer - t_del) / 1e6, PAUSE_MS,
        (double)(held - t_add) / 1e6, (double)(answer - t_add) / 1e6);
    assert_true(answer - t_del >= PAUSE_MS * MS);
    assert_true(answer - t_del <= (PAUSE_MS + TOLERANCE_MS) * MS);
    assert_true(held >= t_add && answer >= held && answer - held <= ANSWER_MS * MS);
    /* silence in between (answers read just after the release may still be
     * n1's: they were sent before it) */
    assert_int_equal(watch_count(tl, WATCH_REPLY, v, WATCH_ANY, t_del + 10 * MS, t_add), 0);
    assert_int_equal(watch_holders(tl, v, t_add - MS), 0);
    assert_int_equal(watch_holders(tl, v, tl->t_end), 1u << 2);
    struct watch_span s;
    assert_int_equal(watch_double_owner(tl, v, &s), 0);
    assert_int_equal(watch_arp_conflicts(tl, v, NULL), 0);
    assert_int_equal(watch_ana_double(tl, &s), 0);
    /* the other VIP was never anywhere */
    assert_int_equal(watch_count(tl, WATCH_REPLY, 1 - v, WATCH_ANY, 0, INT64_MAX), 0);
}

/* n2 holds the VIP; n3 adds it for OVERLAP_MS (its data link cut or not)
 * and reports ANA optimized meanwhile. */
static void overlap(void **state, int family, bool cut)
{
    struct live *l = live_or_skip(state);
    int v = family == AF_INET ? 0 : 1;
    vip(l, 2, true, family);
    set_ana(l, 2, "optimized");
    start_watch(l);
    if (cut) {
        assert_int_equal(lab_set_link(&l->lab, 3, LAB_DATA, false), 0);
        watch_mark(l->w, "n3 data link cut");
    }
    sleep_ms(30);
    int64_t t0 = watch_mark(l->w, "n3 adds it too");
    vip(l, 3, true, family);
    set_ana(l, 3, "optimized");
    sleep_ms(OVERLAP_MS);
    vip(l, 3, false, family);
    set_ana(l, 3, "inaccessible");
    int64_t t1 = watch_mark(l->w, "n3 removed it");
    if (cut) {
        /* the ANA files are sampled every 5 ms: let two rounds see n3
         * inaccessible before its link counts again */
        sleep_ms(15);
        assert_int_equal(lab_set_link(&l->lab, 3, LAB_DATA, true), 0);
        watch_mark(l->w, "n3 data link back");
    }
    sleep_ms(30);
    const struct watch_timeline *tl = stop_watch(l);

    int64_t mid = t0 + OVERLAP_MS / 2 * MS;
    assert_int_equal(watch_holders(tl, v, mid), (1u << 2) | (1u << 3));
    assert_true(watch_link_up(tl, 2, mid));
    assert_int_equal(watch_link_up(tl, 3, mid), !cut);
    struct watch_span s, a;
    int n = watch_double_owner(tl, v, &s);
    int rounds = watch_arp_conflicts(tl, v, NULL);
    watch_ana_double(tl, &a);
    print_message(
        "%s overlap of %.3f ms scripted (n3 link %s): double owner %d x %.3f ms, %d "
        "probe rounds answered twice, ANA double %.3f ms\n",
        family == AF_INET ? "IPv4" : "IPv6", (double)(t1 - t0) / 1e6, cut ? "down" : "up", n,
        (double)s.total_ns / 1e6, rounds, (double)a.total_ns / 1e6);
    if (cut) {
        assert_int_equal(a.count, 0); /* n3's states reach no host */
        assert_int_equal(n, 0);
        assert_int_equal(rounds, 0);
        assert_int_equal(watch_first_reply(tl, v, 3, tl->t_start), -1);
        return;
    }
    assert_int_equal(a.count, 1);
    assert_true(a.total_ns >= (OVERLAP_MS - 10) * MS && a.total_ns <= t1 - t0 + 10 * MS);
    assert_int_equal(n, 1);
    assert_true(s.total_ns >= (OVERLAP_MS - 5) * MS && s.total_ns <= t1 - t0 + 5 * MS);
    assert_true(rounds >= OVERLAP_MS / 5 / 2 && rounds <= (t1 - t0) / (5 * MS) + 2);
    assert_true(watch_first_reply(tl, v, 3, t0) > 0);
}

/* IPv4: n2 answers ARP about the scripted pause after n1 released the VIP,
 * nobody in between, never two holders. */
static void test_live_ipv4_move(void **state)
{
    move(state, AF_INET);
}
/* IPv4: n3 holding the VIP beside n2 is one double-owner interval of the
 * scripted length, seen as probe rounds with two answers. */
static void test_live_ipv4_overlap(void **state)
{
    overlap(state, AF_INET, false);
}
/* IPv4: a holder whose data link is cut (switch side down) answers nobody
 * and is no double owner, though it holds the address. */
static void test_live_ipv4_overlap_cut(void **state)
{
    overlap(state, AF_INET, true);
}
/* IPv6: the same takeover through neighbour solicitation/advertisement. */
static void test_live_ipv6_move(void **state)
{
    move(state, AF_INET6);
}
/* IPv6: the same overlap through neighbour advertisements. */
static void test_live_ipv6_overlap(void **state)
{
    overlap(state, AF_INET6, false);
}

/* Nodes reach each other on the cluster network and the client on the
 * data network (IPv4 and IPv6); a cut switch-side link stops exactly that
 * node's traffic on that network, and restoring it brings it back. */
static void test_live_networks(void **state)
{
    struct live *l = live_or_skip(state);
    assert_int_equal(lab_reach(&l->lab, 1, 2, LAB_CLUSTER, AF_INET, 2000), 0);
    assert_int_equal(lab_reach(&l->lab, 3, 1, LAB_CLUSTER, AF_INET, 2000), 0);
    assert_int_equal(lab_reach(&l->lab, LAB_CLIENT, 3, LAB_DATA, AF_INET, 2000), 0);
    assert_int_equal(lab_reach(&l->lab, LAB_CLIENT, 2, LAB_DATA, AF_INET6, 2000), 0);
    assert_int_equal(lab_reach(&l->lab, 1, LAB_CLIENT, LAB_DATA, AF_INET6, 2000), 0);
    assert_int_equal(lab_set_link(&l->lab, 2, LAB_CLUSTER, false), 0);
    assert_int_equal(lab_reach(&l->lab, 1, 2, LAB_CLUSTER, AF_INET, 300), -ETIMEDOUT);
    assert_int_equal(lab_reach(&l->lab, LAB_CLIENT, 2, LAB_DATA, AF_INET, 2000), 0);
    assert_int_equal(lab_reach(&l->lab, 1, 3, LAB_CLUSTER, AF_INET, 2000), 0);
    assert_int_equal(lab_set_link(&l->lab, 2, LAB_CLUSTER, true), 0);
    assert_int_equal(lab_reach(&l->lab, 1, 2, LAB_CLUSTER, AF_INET, 2000), 0);
    /* a VIP the lab never adds, and addresses outside it */
    char a[64];
    assert_int_equal(lab_addr(&l->lab, 2, LAB_CLUSTER, AF_INET6, a, sizeof a), -EINVAL);
    assert_int_equal(lab_addr(&l->lab, 4, LAB_DATA, AF_INET, a, sizeof a), -EINVAL);
    assert_int_equal(lab_addr(&l->lab, 3, LAB_DATA, AF_INET6, a, sizeof a), 0);
    assert_string_equal(a, "2001:db8::13");
}

/* A process spawned in a node's namespace sees that namespace (its eth0
 * has the node's address) and writes to its log; lab_stop reaps it. */
static void test_live_spawn(void **state)
{
    struct live *l = live_or_skip(state);
    char log[128];
    snprintf(log, sizeof log, "%s/spawn.log", l->dir);
    char ip[64];
    snprintf(ip, sizeof ip, "%s", l->lab.ip);
    char *argv[] = {ip, "-4", "-o", "addr", "show", "dev", "eth0", NULL};
    pid_t pid = lab_spawn(&l->lab, 2, argv, log);
    assert_true(pid > 0);
    int st = -1;
    for (int i = 0; i < 500 && lab_exited(&l->lab, pid, &st) == 0; i++) {
        sleep_ms(10);
    }
    assert_int_equal(st, 0);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char buf[512] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "198.51.100.132/25"));
    char *sleeper[] = {"sleep", "60", NULL};
    pid = lab_spawn(&l->lab, LAB_CLIENT, sleeper, log);
    assert_true(pid > 0);
    assert_int_equal(lab_stop(&l->lab, pid, SIGTERM, 2000), 128 + SIGTERM);
    assert_int_equal(lab_stop(&l->lab, pid, SIGTERM, 2000), -ESRCH);
    char *missing[] = {"/nonexistent/nvha-binary", NULL};
    assert_int_equal(lab_spawn(&l->lab, 1, missing, log), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_holders),
        cmocka_unit_test(test_double_owner),
        cmocka_unit_test(test_arp_conflicts),
        cmocka_unit_test(test_ana_double),
        cmocka_unit_test(test_max_gap),
        cmocka_unit_test_setup_teardown(test_live_networks, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_live_spawn, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_live_ipv4_move, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_live_ipv4_overlap, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_live_ipv4_overlap_cut, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_live_ipv6_move, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_live_ipv6_overlap, setup_live, teardown_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
