/* nvmet-failover-bench: the failover figures, on real nvmetd processes in
 * network namespaces (the rig of tests/netns), trials per fault:
 *   - fault -> the VIP answers the client from the new active node (ARP
 *     for IPv4, neighbour solicitation for IPv6; the worse of the two per
 *     trial), and when the new node held both VIPs in its namespace;
 *   - a write started at the fault (nvmetctl --url over every node): how
 *     long it took, and that it applied exactly once;
 *   - double owners (two nodes with a VIP and live links, two answers to
 *     one probe, two ANA optimized): must be 0.
 *
 *   nvmet-failover-bench [--trials N] [--election-timeout MS]
 *                        [--faults death,crash,pause,partition,switchover]
 *                        [--three-data] [--ana] [--verbose]
 *
 * Needs root (namespaces). Default: 20 trials of every fault on two data
 * nodes and a witness with nvmetd's default timers. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fo_rig.h"

/* Ctrl-C / SIGTERM: finish the trial at hand, then tear the lab down (its
 * namespaces would otherwise stay until the next run removes them). */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

struct series {
    double *v;
    int n;
};

static void add(struct series *s, double v)
{
    s->v[s->n++] = v;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile. */
static double pct(struct series *s, double p)
{
    if (s->n == 0) {
        return -1;
    }
    qsort(s->v, (size_t)s->n, sizeof s->v[0], cmp_d);
    int k = (int)(p / 100.0 * s->n + 0.999999) - 1;
    k = k < 0 ? 0 : k >= s->n ? s->n - 1 : k;
    return s->v[k];
}

static void row(const char *what, struct series *s)
{
    printf("  %-34s n=%-3d p50 %7.0f ms  p99 %7.0f ms  max %7.0f ms\n", what, s->n, pct(s, 50),
           pct(s, 99), pct(s, 100));
}

int main(int argc, char **argv)
{
    int trials = 20;
    unsigned et = 0;
    bool three = false, ana = false, verbose = false;
    char faults[128] = "death,crash,pause,partition,switchover";
    static const struct option opts[] = {{"trials", required_argument, NULL, 't'},
                                         {"election-timeout", required_argument, NULL, 'e'},
                                         {"faults", required_argument, NULL, 'f'},
                                         {"three-data", no_argument, NULL, '3'},
                                         {"ana", no_argument, NULL, 'a'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
            case 't':
                trials = atoi(optarg);
                break;
            case 'e':
                et = (unsigned)atoi(optarg);
                break;
            case 'f':
                snprintf(faults, sizeof faults, "%s", optarg);
                break;
            case '3':
                three = true;
                break;
            case 'a':
                ana = true;
                break;
            case 'v':
                verbose = true;
                break;
            default:
                fprintf(stderr, "usage: see the header of bench/failover_bench.c\n");
                return 2;
        }
    }
    if (trials < 1 || trials > 1000) {
        fprintf(stderr, "--trials wants 1..1000\n");
        return 2;
    }
    char why[200];
    if (lab_check(why, sizeof why) < 0) {
        fprintf(stderr, "cannot build the lab here: %s\n", why);
        return 2;
    }
    static const struct {
        const char *name;
        enum rig_fault f;
    } all[] = {{"death", RIG_DEATH},
               {"crash", RIG_CRASH},
               {"pause", RIG_PAUSE},
               {"partition", RIG_PARTITION},
               {"switchover", RIG_SWITCHOVER}};
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct rig rig;
    struct rig_opts o = {.nodes = 3, .witness = three ? 0 : 3, .ana = ana, .election_ms = et};
    if (rig_up(&rig, &o) < 0) {
        fprintf(stderr, "the cluster did not come up\n");
        return 1;
    }
    char ets[32] = "nvmetd's default";
    if (et) {
        snprintf(ets, sizeof ets, "%u ms", et);
    }
    printf("nvmet-failover-bench: %s%s, election timeout %s, %d trials per fault\n",
           three ? "three data nodes" : "two data nodes + witness", ana ? ", ANA" : "", ets,
           trials);
    int bad = 0;
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        if (strstr(faults, all[k].name) == NULL || stop) {
            continue;
        }
        struct series ans = {calloc((size_t)trials, sizeof(double)), 0};
        struct series srv = {calloc((size_t)trials, sizeof(double)), 0};
        struct series wr = {calloc((size_t)trials, sizeof(double)), 0};
        struct series an = {calloc((size_t)trials, sizeof(double)), 0};
        int failed = 0, doubles = 0, conflicts = 0, lost = 0, wfail = 0;
        double ana_double = 0, gap = 0;
        for (int t = 0; t < trials && !stop; t++) {
            struct rig_result r;
            int rv = rig_fault(&rig, all[k].f, &r, verbose);
            if (!r.ok) {
                failed++;
            } else {
                add(&ans, r.answer_ms[0] > r.answer_ms[1] ? r.answer_ms[0] : r.answer_ms[1]);
                add(&srv, r.server_ms);
                if (r.ana_ms >= 0) {
                    add(&an, r.ana_ms);
                }
            }
            if (r.write_status == 0) {
                add(&wr, r.write_ms);
            } else {
                wfail++;
            }
            doubles += r.double_count;
            conflicts += r.arp_conflicts;
            lost += r.writes_lost;
            ana_double += r.ana_double_ms;
            gap = r.max_gap_ms > gap ? r.max_gap_ms : gap;
            if (rv < 0 && rig_stable(&rig, 20000) < 0) {
                fprintf(stderr, "the cluster did not recover after trial %d\n", t + 1);
                bad = 1;
                break;
            }
        }
        printf("%s (%s):\n", rig_fault_name(all[k].f), all[k].name);
        row("fault -> VIP answers from new node", &ans);
        row("fault -> new node holds the VIPs", &srv);
        row("write started at the fault", &wr);
        if (ana) {
            row("fault -> new node ANA optimized", &an);
        }
        printf(
            "  failovers missing %d, writes failed %d, writes lost or doubled %d, "
            "double owners %d, probes answered twice %d, ANA double %.1f ms, "
            "max sampling gap %.1f ms\n",
            failed, wfail, lost, doubles, conflicts, ana_double, gap);
        bad |= failed || wfail || lost || doubles || conflicts || ana_double > 0;
        free(ans.v);
        free(srv.v);
        free(wr.v);
        free(an.v);
        fflush(stdout);
    }
    if (stop) {
        printf("interrupted\n");
    }
    rig_down(&rig);
    return bad || stop;
}
