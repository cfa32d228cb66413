/* Fault test: writer processes (nvmetctl with every URL, which retries with
 * the same client id and sequence) create hosts for a bounded time while a
 * nemesis kills (-9) the leader, kills a follower, pauses a node
 * (SIGSTOP/SIGCONT) and restarts nodes. Afterwards: every acknowledged
 * write is present exactly once, no retry was refused as a duplicate, all
 * nodes hold the same state and the same tree, and no node died on its own.
 * NVMET_NEMESIS_SECONDS sets the duration (default 40). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"

#define NODES 3
#define WRITERS 4

static long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000L + tv.tv_usec / 1000;
}

struct world {
    char base[256];
    struct h_node n[NODES];
    char list[512], urls[512];
    bool down[NODES];
    bool paused[NODES];
    int crashes;
};

static struct world *current;

/* stop every node of the test, also after a failed assertion */
static int teardown(void **state)
{
    (void)state;
    if (current != NULL) {
        for (int i = 0; i < NODES; i++) {
            if (current->n[i].pid > 0) {
                kill(current->n[i].pid, SIGCONT);
                h_node_kill(&current->n[i], SIGKILL);
                h_node_wait(&current->n[i]);
            }
        }
        h_rmrf(current->base);
        current = NULL;
    }
    return 0;
}

static int start(struct world *w, int i)
{
    const char *args[] = {"--cluster", w->list, "--election-timeout", "500", NULL};
    int rv = h_node_start(&w->n[i], args);
    w->down[i] = rv != 0;
    return rv;
}

/* A node that exited without the nemesis killing it is a crash. */
static void reap_unexpected(struct world *w)
{
    for (int i = 0; i < NODES; i++) {
        if (w->down[i] || w->n[i].pid <= 0) {
            continue;
        }
        int st;
        if (waitpid(w->n[i].pid, &st, WNOHANG) == w->n[i].pid) {
            fprintf(stderr, "node %d died on its own (status 0x%x)\n", i + 1, st);
            h_node_print_log(&w->n[i]);
            w->n[i].pid = 0;
            w->down[i] = true;
            w->crashes++;
        }
    }
}

static int leader_of(struct world *w)
{
    for (int i = 0; i < NODES; i++) {
        if (w->down[i] || w->paused[i]) {
            continue;
        }
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(&w->n[i], "cluster.status", "[{\"local\": true}]", &e);
        nv_err_clear(&e);
        bool lead = nv_get_bool(nv_get(r, "node"), "leader_ready", false);
        nv_free(r);
        if (lead) {
            return i;
        }
    }
    return -1;
}

static void writer(const struct world *w, int id, long until, const char *outpath)
{
    FILE *out = fopen(outpath, "w");
    char errf[300];
    snprintf(errf, sizeof errf, "%s.err", outpath);
    for (int i = 0; now_ms() < until; i++) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "%s --url %s --api-key-file %s --cacert %s --timeout 15 call nvmet.host.create "
                 "'{\"hostnqn\": \"nqn.2024-01.com.example:w%d-%05d\"}' > /dev/null 2> %s",
                 NVMETCTL_BIN, w->urls, w->n[0].keyfile, w->n[0].cacert, id, i, errf);
        int st = system(cmd);
        char *err = h_read(errf);
        bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        fprintf(out, "%c nqn.2024-01.com.example:w%d-%05d %s\n",
                ok ? 'A' : (err != NULL && strstr(err, "already exists") ? 'D' : 'F'), id, i,
                ok ? "" : (err ? strtok(err, "\n") : ""));
        fflush(out);
        free(err);
    }
    fclose(out);
}

static void test_nemesis(void **state)
{
    (void)state;
    const char *env = getenv("NVMET_NEMESIS_SECONDS");
    int seconds = env != NULL ? atoi(env) : 40;
    static struct world w;
    memset(&w, 0, sizeof w);
    h_tmpdir(w.base, sizeof w.base);
    current = &w;
    size_t o = 0, u = 0;
    for (int i = 0; i < NODES; i++) {
        h_node_init(&w.n[i], w.base, i + 1);
        o += (size_t)snprintf(w.list + o, sizeof w.list - o, "%s%d=127.0.0.1:%d", i ? "," : "",
                              i + 1, w.n[i].raft_port);
        u += (size_t)snprintf(w.urls + u, sizeof w.urls - u, "%s127.0.0.1:%d", i ? "," : "",
                              w.n[i].rpc_port);
    }
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(start(&w, i), 0);
    }
    long t0 = now_ms();
    while (leader_of(&w) < 0 && now_ms() - t0 < 10000) {
        usleep(50000);
    }
    usleep(1500000); /* registration of every member */
    /* enabled target, so the trees have content to compare */
    struct nv_err e;
    nv_err_init(&e);
    int l0 = leader_of(&w);
    nv_free(h_call(&w.n[l0], "nvmet.global.update", "[{\"enabled\": true}]", &e));
    nv_err_clear(&e);
    /* a port linked to a subsystem: only the active node may hold the link */
    static const char *const setup[][2] = {
        {"nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:nemesis\"}]"},
        {"nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.10\"}]"},
        {"nvmet.port_subsys.create", "[{\"port\": 1, \"subsys\": 1}]"}};
    for (size_t i = 0; i < 3; i++) {
        nv_err_init(&e);
        struct nv *r = h_call(&w.n[l0], setup[i][0], setup[i][1], &e);
        assert_non_null(r);
        nv_free(r);
        nv_err_clear(&e);
    }

    long until = now_ms() + seconds * 1000L;
    /* the owner monitor: every 20 ms, how many nodes link the port */
    char monf[300];
    snprintf(monf, sizeof monf, "%s/owners.txt", w.base);
    pid_t mon = fork();
    if (mon == 0) {
        FILE *out = fopen(monf, "w");
        long samples = 0, two = 0, none = 0;
        while (now_ms() < until + 2000) {
            int owners = 0;
            for (int i = 0; i < NODES; i++) {
                char p[600];
                snprintf(p, sizeof p, "%s/nvmet/ports/1/subsystems/nqn.2024-01.com.example:nemesis",
                         w.n[i].configfs);
                struct stat st;
                owners += lstat(p, &st) == 0;
            }
            samples++;
            two += owners > 1;
            none += owners == 0;
            usleep(20000);
        }
        fprintf(out, "%ld %ld %ld\n", samples, two, none);
        fclose(out);
        _exit(0);
    }
    pid_t wp[WRITERS];
    char outs[WRITERS][300];
    for (int k = 0; k < WRITERS; k++) {
        snprintf(outs[k], sizeof outs[k], "%s/writer%d.txt", w.base, k);
        wp[k] = fork();
        if (wp[k] == 0) {
            writer(&w, k, until, outs[k]);
            _exit(0);
        }
    }
    /* the nemesis */
    int faults[4] = {0};
    const char *names[4] = {"leader killed", "follower killed", "node paused", "node restarted"};
    unsigned seed = (unsigned)t0;
    for (int step = 0; now_ms() < until - 3000 && step < 200; step++) {
        usleep(1500000);
        reap_unexpected(&w);
        int kind = (int)(rand_r(&seed) % 4);
        int l = leader_of(&w);
        int victim = kind == 0 ? l : (l + 1 + (int)(rand_r(&seed) % 2)) % NODES;
        if (victim < 0 || w.down[victim]) {
            continue;
        }
        faults[kind]++;
        switch (kind) {
            case 0:
            case 1:
                h_node_kill(&w.n[victim], SIGKILL);
                h_node_wait(&w.n[victim]);
                w.down[victim] = true;
                usleep(1000000);
                start(&w, victim);
                break;
            case 2:
                kill(w.n[victim].pid, SIGSTOP);
                w.paused[victim] = true;
                usleep(1500000);
                kill(w.n[victim].pid, SIGCONT);
                w.paused[victim] = false;
                break;
            default:
                h_node_kill(&w.n[victim], SIGTERM);
                w.down[victim] = true;
                int rc = h_node_wait(&w.n[victim]);
                if (rc != 0) {
                    fprintf(stderr, "node %d: SIGTERM exit was not clean (status %d)\n", victim + 1,
                            rc);
                    h_node_print_log(&w.n[victim]);
                    w.crashes++;
                }
                start(&w, victim);
                break;
        }
    }
    for (int k = 0; k < WRITERS; k++) {
        int st;
        waitpid(wp[k], &st, 0);
    }
    int mst;
    waitpid(mon, &mst, 0);
    long samples = 0, two_owners = 0, no_owner = 0;
    FILE *mf = fopen(monf, "r");
    if (mf != NULL) {
        if (fscanf(mf, "%ld %ld %ld", &samples, &two_owners, &no_owner) != 3) {
            samples = 0;
        }
        fclose(mf);
    }
    reap_unexpected(&w);
    for (int i = 0; i < NODES; i++) {
        if (w.down[i]) {
            assert_int_equal(start(&w, i), 0);
        }
    }
    /* settle: one leader, everyone applied the same index */
    int l = -1;
    long deadline = now_ms() + 20000;
    while ((l = leader_of(&w)) < 0 && now_ms() < deadline) {
        usleep(100000);
    }
    assert_true(l >= 0);
    struct nv *all = NULL;
    nv_err_init(&e);
    all = h_call(&w.n[l], "nvmet.host.query", NULL, &e); /* linearizable */
    nv_err_clear(&e);
    assert_non_null(all);
    size_t total_rows = nv_len(all);
    /* the writers' records */
    int acked = 0, failed = 0, dups = 0, missing = 0, ops = 0;
    for (int k = 0; k < WRITERS; k++) {
        FILE *f = fopen(outs[k], "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            char tag;
            char name[256];
            if (sscanf(line, "%c %255s", &tag, name) != 2) {
                continue;
            }
            ops++;
            int seen = 0;
            for (size_t i = 0; i < nv_len(all); i++) {
                seen += strcmp(nv_get_str(nv_at(all, i), "hostnqn"), name) == 0;
            }
            if (tag == 'A') {
                acked++;
                if (seen != 1) {
                    fprintf(stderr, "acknowledged %s seen %d times\n", name, seen);
                    missing++;
                }
            } else {
                failed++;
                dups += tag == 'D';
                if (tag == 'D') {
                    fprintf(stderr, "retry refused as a duplicate: %s", line);
                }
            }
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    /* every node: same rows (local reads once caught up) and same tree */
    deadline = now_ms() + 30000;
    bool same = false;
    while (!same && now_ms() < deadline) {
        same = true;
        for (int i = 0; i < NODES && same; i++) {
            nv_err_init(&e);
            struct nv *r = h_call(&w.n[i], "nvmet.host.query",
                                  "[[], {\"extra\": {\"consistency\": \"local\"}}]", &e);
            nv_err_clear(&e);
            same = r != NULL && nv_equal(r, all);
            nv_free(r);
        }
        if (!same) {
            usleep(200000);
        }
    }
    assert_true(same);
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(h_wait_rendered(&w.n[i], 20000), 0);
    }
    char cmd[2048];
    /* every node's tree without the role-decided parts, as "path=value"
     * lines in <base>/treeN.txt; equal once all rendered the same state
     * (a restarted node may still be on its first sweep: bounded wait) */
    snprintf(cmd, sizeof cmd,
             "for i in 1 2 3; do (cd %s/node$i/configfs && find nvmet -path "
             "'nvmet/ports/*/subsystems/*' -prune -o -path 'nvmet/ports/*/ana_groups' -prune -o "
             "-path '*/namespaces/*/enable' -prune -o -name 'param_*_size' -prune -o -print | "
             "sort | while read f; do if [ -f \"$f\" ]; then printf '%%s=' \"$f\"; cat \"$f\"; "
             "else echo \"$f\"; fi; done > ../../tree$i.txt); done; cd %s && cmp -s tree1.txt "
             "tree2.txt && cmp -s tree1.txt tree3.txt",
             w.base, w.base);
    int trees_same = 0;
    for (long until_same = now_ms() + 15000; !trees_same && now_ms() < until_same;) {
        trees_same = system(cmd) == 0;
        if (!trees_same) {
            usleep(200000);
        }
    }
    if (!trees_same) {
        snprintf(cmd, sizeof cmd,
                 "cd %s && diff tree1.txt tree2.txt >&2; diff tree1.txt tree3.txt >&2", w.base);
        if (system(cmd) != 0) {
            fprintf(stderr, "(the trees above differ)\n");
        }
    }
    printf(
        "# nemesis %d s: %d operations, %d acknowledged, %d failed (%d refused as duplicates), "
        "%zu rows; faults: %d %s, %d %s, %d %s, %d %s; %d crashes\n",
        seconds, ops, acked, failed, dups, total_rows, faults[0], names[0], faults[1], names[1],
        faults[2], names[2], faults[3], names[3], w.crashes);
    printf("# port owners sampled %ld times: %ld with two owners, %ld with none (failovers)\n",
           samples, two_owners, no_owner);
    nv_free(all);
    assert_true(samples > 0);
    assert_int_equal(two_owners, 0);
    assert_int_equal(missing, 0);
    assert_int_equal(dups, 0);
    assert_int_equal(w.crashes, 0);
    assert_true(trees_same);
    assert_true(acked > 0);
    for (int i = 0; i < NODES; i++) {
        h_node_kill(&w.n[i], SIGTERM);
        h_node_wait(&w.n[i]);
    }
    h_rmrf(w.base);
    current = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test_teardown(test_nemesis, teardown)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
