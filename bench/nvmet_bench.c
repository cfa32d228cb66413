/* nvmet-bench: measures, in one run on one disk,
 *   (a) the fdatasync floor of the data dir's file system;
 *   (b) libraft alone: the size of one nvmet.subsys.create command through
 *       consensus/ with a no-op state machine (1, 3, 5 nodes; 1 and 64
 *       proposers);
 *   (c) the full path of nvmet.subsys.create (client -> RPC -> validate ->
 *       Raft -> apply -> configfs render -> reply) on 1, 3 and 5 nvmetd
 *       processes with 1 and 64 concurrent clients: throughput and
 *       p50/p99/p999, plus request-to-rendered-on-every-node for a sample
 *       of the creates (an upper bound of commit-to-rendered);
 *   (d) the cold start of a node holding 4096 namespaces in 128 subsystems
 *       (restart -> replay -> tree rendered) and its RSS;
 *   (e) the RPC port over TCP, plaintext next to TLS: a new connection
 *       (connect, TLS handshake, login, one call, as one nvmetctl call
 *       makes) and one call on an established, logged-in connection.
 *
 *   (f) one sequential nvmet.subsys.create against the size of the
 *       configuration (0, 2000, 20000 subsystems), with rendering on and
 *       with global enabled=false, and the configfs calls per create.
 *
 *   nvmet-bench [--dir DIR] [--n1 N] [--n64 N] [--quick] [--transport | --rpc | --scale]
 *
 * DIR holds the Raft data (the disk under test); the emulated configfs
 * trees live on tmpfs (/dev/shm) like the real configfs lives in memory.
 * It starts its own nvmetd processes and kills only those. Numbers from a
 * shared machine are indicative: compare the ratios of one run. */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "sm.h"

double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_pct(const double *v, size_t n, double p)
{
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

void bench_report(const char *name, double *lat, size_t n, double secs)
{
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("%-44s %6zu ops %8.0f ops/s  p50 %8.3f ms  p99 %8.3f ms  p999 %8.3f ms\n", name, n,
           secs > 0 ? (double)n / secs : 0, bench_pct(lat, n, 0.50) / 1000,
           bench_pct(lat, n, 0.99) / 1000, bench_pct(lat, n, 0.999) / 1000);
    fflush(stdout);
}

int bench_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* (a) 4 KiB write + fdatasync on the data dir's file system. */
static double fdatasync_floor(const char *dir, int n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/fdatasync-probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        return 0;
    }
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    double *lat = calloc((size_t)n, sizeof *lat);
    double t0 = bench_now_us();
    for (int i = 0; i < n; i++) {
        double s = bench_now_us();
        if (pwrite(fd, buf, sizeof buf, (off_t)(i % 256) * 4096) < 0 || fdatasync(fd) < 0) {
            perror("fdatasync probe");
            break;
        }
        lat[i] = bench_now_us() - s;
    }
    bench_report("(a) fdatasync floor (4 KiB)", lat, (size_t)n, (bench_now_us() - t0) / 1e6);
    double p50 = bench_pct(lat, (size_t)n, 0.5);
    free(lat);
    close(fd);
    unlink(path);
    return p50;
}

/* One loopback round trip of an RPC (core.ping), for the latency target. */
static double rpc_rtt(const char *sock)
{
    char ep[600];
    snprintf(ep, sizeof ep, "unix:%s", sock);
    double best = 1e9;
    for (int i = 0; i < 200; i++) {
        struct nv *r = NULL;
        struct nv_err e;
        nv_err_init(&e);
        struct rpc_sync_opts o = {.msgid = -1, .timeout_ms = 1000};
        double s = bench_now_us();
        if (rpc_call_sync(ep, "core.ping", nv_arr(), &o, &r, &e) == 0) {
            double d = bench_now_us() - s;
            best = d < best ? d : best;
        }
        nv_free(r);
        nv_err_clear(&e);
    }
    return best;
}

/* ---- nvmetd processes ---- */

struct node {
    pid_t pid;
    char dir[512], sock[600], cfs[600], data[600], log[600], dev[600];
    int raft_port;
};

struct cluster {
    struct node n[5];
    int count;
    char list[512];
    int leader;
};

static void mkdirs(const char *p)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", p);
    for (char *s = buf + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(buf, 0755);
            *s = '/';
        }
    }
    mkdir(buf, 0755);
}

static void node_paths(struct node *n, const char *dir, const char *tag, int id)
{
    snprintf(n->dir, sizeof n->dir, "%s/%s-node%d", dir, tag, id);
    snprintf(n->sock, sizeof n->sock, "%s/nvmetd.sock", n->dir);
    snprintf(n->data, sizeof n->data, "%s/data", n->dir);
    snprintf(n->log, sizeof n->log, "%s/nvmetd.log", n->dir);
    snprintf(n->dev, sizeof n->dev, "%s/root", n->dir);
    snprintf(n->cfs, sizeof n->cfs, "/dev/shm/nvmet-bench-%d-%s-node%d", (int)getpid(), tag, id);
    mkdirs(n->dir);
    mkdirs(n->cfs);
    n->raft_port = bench_free_port();
}

static char g_psk[600]; /* the Raft secret every full-path node uses */

/* extra: more arguments (NULL-terminated, may be NULL). */
static void node_exec(struct node *n, int id, const char *list, const char *const *extra)
{
    char sid[16], raft[64];
    snprintf(sid, sizeof sid, "%d", id);
    snprintf(raft, sizeof raft, "127.0.0.1:%d", n->raft_port);
    n->pid = fork();
    if (n->pid == 0) {
        int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        const char *argv[32] = {NVMETD_BIN, "--id", sid, "--data-dir", n->data, "--raft", raft,
                                "--socket", n->sock, "--configfs", n->cfs, "--device-root",
                                n->dev, "--log-level", "error", "--raft-psk-file", g_psk,
                                "--emulate"};
        size_t k = 18;
        if (list != NULL) {
            argv[k++] = "--cluster";
            argv[k++] = list;
        }
        for (size_t i = 0; extra != NULL && extra[i] != NULL && k < 31; i++) {
            argv[k++] = extra[i];
        }
        argv[k] = NULL;
        execv(NVMETD_BIN, (char *const *)argv);
        _exit(127);
    }
}

static struct nv *call(const struct node *n, const char *method, struct nv *params,
                       struct nv_err *e)
{
    char ep[700];
    snprintf(ep, sizeof ep, "unix:%s", n->sock);
    struct nv *r = NULL;
    struct rpc_sync_opts o = {.msgid = -1, .timeout_ms = 5000};
    nv_err_init(e);
    if (rpc_call_sync(ep, method, params != NULL ? params : nv_arr(), &o, &r, e) < 0) {
        return NULL;
    }
    return r;
}

/* The node's own cluster.status row (owned), NULL if it does not answer. */
static struct nv *local_status(const struct node *n)
{
    struct nv_err e;
    struct nv *p = nv_arr(), *o = nv_map();
    nv_set_bool(o, "local", true);
    nv_push(p, o);
    struct nv *r = call(n, "cluster.status", p, &e);
    nv_err_clear(&e);
    return r;
}

static bool node_ready(const struct node *n, bool *leader)
{
    struct nv *r = local_status(n);
    if (r == NULL) {
        return false;
    }
    *leader = nv_get_bool(nv_get(r, "node"), "leader_ready", false);
    nv_free(r);
    return true;
}

/* The node that is the ready leader now (waiting up to timeout_us), or -1. */
static int leader_index(const struct cluster *c, double timeout_us)
{
    double t0 = bench_now_us();
    for (;;) {
        for (int i = 0; i < c->count; i++) {
            bool lead = false;
            if (node_ready(&c->n[i], &lead) && lead) {
                return i;
            }
        }
        if (bench_now_us() - t0 >= timeout_us) {
            return -1;
        }
        usleep(20000);
    }
}

static int cluster_start(struct cluster *c, const char *dir, const char *tag, int count,
                         const char *const *extra)
{
    memset(c, 0, sizeof *c);
    c->count = count;
    size_t o = 0;
    for (int i = 0; i < count; i++) {
        node_paths(&c->n[i], dir, tag, i + 1);
        o += (size_t)snprintf(c->list + o, sizeof c->list - o, "%s%d=127.0.0.1:%d", i ? "," : "",
                              i + 1, c->n[i].raft_port);
    }
    for (int i = 0; i < count; i++) {
        node_exec(&c->n[i], i + 1, count > 1 ? c->list : NULL, extra);
    }
    c->leader = leader_index(c, 30e6);
    if (c->leader < 0) {
        fprintf(stderr, "nvmet-bench: no leader (see %s)\n", c->n[0].log);
        return -1;
    }
    struct nv_err e;
    struct nv *p = nv_arr(), *m = nv_map();
    nv_set_bool(m, "enabled", true);
    nv_push(p, m);
    nv_free(call(&c->n[c->leader], "nvmet.global.update", p, &e));
    nv_err_clear(&e);
    return 0;
}

static void cluster_stop(struct cluster *c)
{
    for (int i = 0; i < c->count; i++) {
        if (c->n[i].pid > 0) {
            kill(c->n[i].pid, SIGTERM);
            int st;
            waitpid(c->n[i].pid, &st, 0);
            c->n[i].pid = 0;
        }
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->n[i].cfs);
        if (system(cmd) != 0) {
            fprintf(stderr, "nvmet-bench: could not remove %s\n", c->n[i].cfs);
        }
    }
}

/* ---- (c) closed-loop clients ---- */

struct sample {
    double sent, acked;
    char name[96];
    bool done;
};

struct load {
    uv_loop_t *loop;
    const struct cluster *c;
    int total, issued, done, failed;
    double *lat;
    const char *prefix;
    struct sample *samples;
    size_t nsamples, sample_every;
    double *render_lat;
    size_t nrender;
    uv_timer_t poll;
};

struct client {
    struct load *l;
    struct rpc_client *c;
    double started;
    int index;
};

static void issue(struct client *c);

static void created(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)result;
    struct client *c = arg;
    struct load *l = c->l;
    if (status < 0 || err != NULL) {
        l->failed++;
        if (l->failed <= 3 && err != NULL) {
            char *r = nv_err_reason(err);
            fprintf(stderr, "create failed: %s\n", r ? r : "?");
            free(r);
        }
    }
    double now = bench_now_us();
    l->lat[l->done++] = now - c->started;
    if (l->sample_every > 0 && c->index % (int)l->sample_every == 0) {
        struct sample *s = &l->samples[c->index / (int)l->sample_every];
        s->acked = now;
    }
    issue(c);
}

static void issue(struct client *c)
{
    struct load *l = c->l;
    if (l->issued >= l->total) {
        rpc_client_close(c->c);
        return;
    }
    struct nv *p = nv_arr(), *m = nv_map();
    char name[96];
    snprintf(name, sizeof name, "nqn.2024-01.com.example:%s-%d", l->prefix, l->issued);
    nv_set_str(m, "name", name);
    nv_push(p, m);
    c->index = l->issued++;
    c->started = bench_now_us();
    if (l->sample_every > 0 && c->index % (int)l->sample_every == 0) {
        struct sample *s = &l->samples[c->index / (int)l->sample_every];
        s->sent = c->started;
        snprintf(s->name, sizeof s->name, "%s", name);
        l->nsamples = (size_t)(c->index / (int)l->sample_every) + 1;
    }
    rpc_client_call(c->c, "nvmet.subsys.create", p, -1, created, c);
}

/* The sampled creates: rendered on every node yet? */
static void poll_rendered(uv_timer_t *t)
{
    struct load *l = t->data;
    for (size_t i = 0; i < l->nsamples; i++) {
        struct sample *s = &l->samples[i];
        if (s->done || s->sent == 0) {
            continue;
        }
        bool all = true;
        for (int k = 0; k < l->c->count && all; k++) {
            char p[900];
            struct stat st;
            snprintf(p, sizeof p, "%s/nvmet/subsystems/%s", l->c->n[k].cfs, s->name);
            all = stat(p, &st) == 0;
        }
        if (all) {
            s->done = true;
            l->render_lat[l->nrender++] = bench_now_us() - s->sent;
        }
    }
    if (l->done >= l->total) {
        bool pending = false;
        for (size_t i = 0; i < l->nsamples; i++) {
            pending = pending || !l->samples[i].done;
        }
        if (!pending || bench_now_us() - l->samples[0].sent > 120e6) {
            uv_close((uv_handle_t *)t, NULL);
        }
    }
}

static double g_last_p50, g_last_p99; /* of the last run_load, in us */

static double run_load(const struct cluster *cl, const char *name, const char *prefix,
                       int clients, int total, bool render_samples)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct load l = {.loop = &loop, .c = cl, .total = total, .prefix = prefix};
    l.lat = calloc((size_t)total, sizeof *l.lat);
    if (render_samples) {
        l.sample_every = total >= 400 ? (size_t)total / 200 : 1;
        l.samples = calloc((size_t)total / l.sample_every + 2, sizeof *l.samples);
        l.render_lat = calloc((size_t)total / l.sample_every + 2, sizeof *l.render_lat);
        uv_timer_init(&loop, &l.poll);
        l.poll.data = &l;
        uv_timer_start(&l.poll, poll_rendered, 1, 1);
    }
    struct client *cs = calloc((size_t)clients, sizeof *cs);
    /* the leader may have changed since the cluster started: the nodes
     * have no RPC port, so a follower cannot forward */
    int leader = leader_index(cl, 10e6);
    char ep[700];
    snprintf(ep, sizeof ep, "unix:%s", cl->n[leader >= 0 ? leader : cl->leader].sock);
    double t0 = bench_now_us();
    for (int i = 0; i < clients; i++) {
        cs[i].l = &l;
        if (rpc_client_open(&loop, ep, NULL, &cs[i].c) < 0) {
            fprintf(stderr, "nvmet-bench: cannot connect\n");
            exit(1);
        }
        issue(&cs[i]);
    }
    while (l.done < total) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    double secs = (bench_now_us() - t0) / 1e6;
    bench_report(name, l.lat, (size_t)l.done, secs);
    g_last_p50 = bench_pct(l.lat, (size_t)l.done, 0.50);
    g_last_p99 = bench_pct(l.lat, (size_t)l.done, 0.99);
    double ops = secs > 0 ? l.done / secs : 0;
    if (l.failed > 0) {
        printf("  (%d failed)\n", l.failed);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* the render poll finishes */
    if (render_samples) {
        qsort(l.render_lat, l.nrender, sizeof *l.render_lat, cmp_double);
        printf("%-44s %6zu smp                 p50 %8.3f ms  p99 %8.3f ms  (request -> on every "
               "node)\n",
               "    rendered on every node", l.nrender, bench_pct(l.render_lat, l.nrender, 0.5) / 1000,
               bench_pct(l.render_lat, l.nrender, 0.99) / 1000);
    }
    uv_loop_close(&loop);
    free(cs);
    free(l.lat);
    free(l.samples);
    free(l.render_lat);
    return ops;
}

/* ---- (d) cold start ---- */

void bench_count(void *arg, int status, const struct nv *r, const struct nv_err *e);

static long rss_kib(pid_t pid, const char *key)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    long v = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, strlen(key)) == 0) {
            v = atol(line + strlen(key) + 1);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return v;
}

static bool rendered(const struct node *n)
{
    struct nv *r = local_status(n);
    const struct nv *render = nv_get(nv_get(r, "node"), "render");
    bool ok = nv_get_bool(render, "matches", false) &&
              nv_get_int(render, "rendered_generation", -1) == nv_get_int(render, "generation", -2) &&
              nv_get_bool(nv_get(r, "node"), "leader_ready", false);
    nv_free(r);
    return ok;
}

static void cold_start(const char *dir, int subsystems, int per_subsys)
{
    struct cluster c;
    if (cluster_start(&c, dir, "cold", 1, NULL) < 0) {
        return;
    }
    struct node *n = &c.n[0];
    char zdir[700];
    snprintf(zdir, sizeof zdir, "%s/dev/zvol/tank", n->dev);
    mkdirs(zdir);
    int total = subsystems * per_subsys;
    for (int i = 0; i < total; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s/v%d", zdir, i);
        mknod(p, S_IFBLK | 0600, makedev(7, (unsigned)(i % 250)));
    }
    /* the configuration, pipelined over one connection */
    uv_loop_t loop;
    uv_loop_init(&loop);
    char ep[700];
    snprintf(ep, sizeof ep, "unix:%s", n->sock);
    struct rpc_client *cl;
    rpc_client_open(&loop, ep, NULL, &cl);
    int done = 0;
    double t0 = bench_now_us();
    for (int s = 0; s < subsystems; s++) {
        struct nv *p = nv_arr(), *m = nv_map();
        nv_set(m, "name", nv_strf("nqn.2024-01.com.example:cold-%d", s));
        nv_push(p, m);
        rpc_client_call(cl, "nvmet.subsys.create", p, -1, bench_count, &done);
    }
    while (done < subsystems) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    int sent = 0;
    while (done < subsystems + total) {
        while (sent < total && sent + subsystems - done < 256) {
            struct nv *p = nv_arr(), *m = nv_map();
            nv_set_int(m, "subsys", sent / per_subsys + 1);
            nv_set(m, "device", nv_strf("zvol/tank/v%d", sent));
            nv_push(p, m);
            rpc_client_call(cl, "nvmet.namespace.create", p, -1, bench_count, &done);
            sent++;
        }
        uv_run(&loop, UV_RUN_ONCE);
    }
    rpc_client_close(cl);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    printf("(d) configured %d namespaces in %d subsystems in %.1f s\n", total, subsystems,
           (bench_now_us() - t0) / 1e6);
    /* restart: replay and render */
    kill(n->pid, SIGTERM);
    int st;
    waitpid(n->pid, &st, 0);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/nvmet '%s'/.nvmet-emu", n->cfs, n->cfs);
    if (system(cmd) != 0) {
        fprintf(stderr, "nvmet-bench: could not empty %s\n", n->cfs);
    }
    t0 = bench_now_us();
    node_exec(n, 1, NULL, NULL);
    while (!rendered(n) && bench_now_us() - t0 < 120e6) {
        usleep(5000);
    }
    double secs = (bench_now_us() - t0) / 1e6;
    printf("(d) cold start with %d namespaces: %.2f s to the rendered tree, RSS %ld KiB (peak "
           "%ld KiB)\n",
           total, secs, rss_kib(n->pid, "VmRSS:"), rss_kib(n->pid, "VmHWM:"));
    fflush(stdout);
    cluster_stop(&c);
}

void bench_count(void *arg, int status, const struct nv *r, const struct nv_err *e)
{
    (void)r;
    int *done = arg;
    (*done)++;
    if ((status < 0 || e != NULL) && *done < 5) {
        char *reason = e != NULL ? nv_err_reason(e) : NULL;
        fprintf(stderr, "nvmet-bench: call failed: %s\n", reason ? reason : "transport");
        free(reason);
    }
}

/* The size of one encoded subsys.create, for (b). */
static size_t create_size(void)
{
    struct sm_state *s = sm_new();
    struct nv *p = nv_arr(), *m = nv_map(), *cmd = NULL;
    nv_set_str(m, "name", "nqn.2024-01.com.example:many-12345");
    nv_push(p, m);
    struct nv_err e;
    nv_err_init(&e);
    size_t len = 256;
    if (sm_prepare(s, "nvmet.subsys.create", p, NULL, &cmd, &e) == 0) {
        char *buf;
        if (sm_command_encode(cmd, "0123456789abcdef", 12345, &buf, &len) == 0) {
            free(buf);
        }
    }
    nv_free(cmd);
    nv_free(p);
    nv_err_clear(&e);
    sm_free(s);
    return len;
}

/* ---- (e) the RPC port: plaintext vs TLS ---- */

struct one_call {
    bool done;
    int status;
};

static void one_call_done(void *arg, int status, const struct nv *r, const struct nv_err *e)
{
    struct one_call *w = arg;
    w->done = true;
    w->status = status < 0 ? status : (e != NULL && nv_err_isset(e)) ? -EREMOTEIO : 0;
    (void)r;
}

/* n calls of core.ping, one at a time, on one logged-in connection. */
static int established_calls(const char *ep, const struct rpc_tls_opts *tls, double *lat, int n)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rpc_client *cl;
    int ok = 0;
    if (rpc_client_open(&loop, ep, tls, &cl) == 0) {
        rpc_client_login(cl, "bench-api-key");
        for (int i = -1; i < n; i++) { /* the first call waits for the login */
            struct one_call w = {0};
            double s = bench_now_us();
            rpc_client_call(cl, "core.ping", NULL, -1, one_call_done, &w);
            while (!w.done) {
                uv_run(&loop, UV_RUN_ONCE);
            }
            if (w.status < 0) {
                fprintf(stderr, "nvmet-bench: core.ping on %s: %d\n", ep, w.status);
                break;
            }
            if (i >= 0) {
                lat[ok++] = bench_now_us() - s;
            }
        }
        rpc_client_close(cl);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return ok;
}

/* One nvmetd serving TCP in plaintext, then one serving TLS (the
 * certificate of bench_sec_files): per mode, n_conn new connections each
 * making one call after its login (rpc_call_sync, as nvmetctl: the TLS
 * context is made per connection), then n_calls on an established one. */
static void bench_rpc_tls(const char *dir, int n_conn, int n_calls)
{
    char key[600], crt[600], pkey[600], ca[600];
    snprintf(key, sizeof key, "%s/api.key", dir);
    snprintf(crt, sizeof crt, "%s/rpc.crt", dir);
    snprintf(pkey, sizeof pkey, "%s/rpc.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    chmod(key, 0600);
    double *lat = calloc((size_t)(n_conn > n_calls ? n_conn : n_calls), sizeof *lat);
    for (int tls = 0; tls <= 1; tls++) {
        char rpc[64];
        snprintf(rpc, sizeof rpc, "127.0.0.1:%d", bench_free_port());
        const char *plain_args[] = {"--rpc", rpc, "--api-key-file", key, "--rpc-plaintext", NULL};
        const char *tls_args[] = {"--rpc",      rpc,  "--api-key-file", key,          "--rpc-cert",
                                  crt,          "--rpc-key", pkey,      "--rpc-cacert", ca,
                                  NULL};
        struct cluster c;
        const char *mode = tls ? "TLS 1.3" : "plaintext";
        if (cluster_start(&c, dir, tls ? "rpc-tls" : "rpc-plain", 1, tls ? tls_args : plain_args) <
            0) {
            cluster_stop(&c);
            continue;
        }
        struct rpc_tls_opts o = tls ? (struct rpc_tls_opts){.ca_file = ca}
                                    : (struct rpc_tls_opts){.plaintext = true};
        struct rpc_sync_opts so = {.api_key = "bench-api-key", .msgid = -1, .timeout_ms = 5000,
                                   .tls = &o};
        int ok = 0;
        double t0 = bench_now_us();
        for (int i = 0; i < n_conn; i++) {
            struct nv *r = NULL;
            struct nv_err e;
            nv_err_init(&e);
            double s = bench_now_us();
            int rv = rpc_call_sync(rpc, "core.ping", nv_arr(), &so, &r, &e);
            if (rv == 0) {
                lat[ok++] = bench_now_us() - s;
            } else if (i == 0) {
                char *why = nv_err_reason(&e);
                fprintf(stderr, "nvmet-bench: %s: %s\n", rpc, why ? why : "?");
                free(why);
            }
            nv_err_clear(&e);
            nv_free(r);
        }
        char label[96];
        snprintf(label, sizeof label, "(e) RPC %s: connect+login+call", mode);
        bench_report(label, lat, (size_t)ok, (bench_now_us() - t0) / 1e6);
        t0 = bench_now_us();
        ok = established_calls(rpc, &o, lat, n_calls);
        snprintf(label, sizeof label, "(e) RPC %s: call, established", mode);
        bench_report(label, lat, (size_t)ok, (bench_now_us() - t0) / 1e6);
        cluster_stop(&c);
    }
    free(lat);
}

static void remove_tmp(const char *dir, const char *tmp)
{
    if (dir == tmp) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) {
            fprintf(stderr, "nvmet-bench: could not remove %s\n", tmp);
        }
    }
}

/* ---- (f) one write's cost against the size of the configuration ---- */

/* cluster.status of the node (local): render.syscalls.total, or -1. */
static int64_t render_syscalls(const struct node *n)
{
    struct nv *r = local_status(n);
    int64_t v = nv_get_int(nv_get(nv_get(nv_get(r, "node"), "render"), "syscalls"), "total", -1);
    nv_free(r);
    return v;
}

static bool global_enable(const struct node *n, bool on)
{
    struct nv_err e;
    struct nv *p = nv_arr(), *m = nv_map();
    nv_set_bool(m, "enabled", on);
    nv_push(p, m);
    struct nv *r = call(n, "nvmet.global.update", p, &e);
    bool ok = r != NULL;
    nv_free(r);
    nv_err_clear(&e);
    return ok;
}

/* Bounded wait (60 s) for the node's render to catch up; ms taken or -1. */
static double wait_rendered_ms(const struct node *n)
{
    double t0 = bench_now_us();
    while (bench_now_us() - t0 < 60e6) {
        if (rendered(n)) {
            return (bench_now_us() - t0) / 1000;
        }
        usleep(2000);
    }
    return -1;
}

struct scale_row {
    int size;
    double p50[2], p99[2], calls[2]; /* [0] rendering on, [1] global enabled=false */
    /* fill_s: the pipelined creates up to size; reenable_ms: enabled=true
     * again, rendering every subsystem at once */
    double fill_s, reenable_ms;
};

/* n sequential creates by one client: p50/p99 and configfs calls per create. */
static void scale_measure(const struct cluster *c, const char *tag, int size, int n, double *p50,
                          double *p99, double *calls)
{
    const struct node *ld = &c->n[c->leader];
    char label[96], prefix[48];
    snprintf(label, sizeof label, "(f) %d subsystems, %s, 1 client", size, tag);
    snprintf(prefix, sizeof prefix, "seq-%s-%d", tag, size);
    wait_rendered_ms(ld);
    int64_t before = render_syscalls(ld);
    run_load(c, label, prefix, 1, n, false);
    *p50 = g_last_p50 / 1000;
    *p99 = g_last_p99 / 1000;
    wait_rendered_ms(ld);
    int64_t after = render_syscalls(ld);
    *calls = before >= 0 && after >= before ? (double)(after - before) / n : -1;
}

/* n creates and their deletes before the first row: the first row is
 * not the one that pays for a cold process (allocator, page cache). */
static void scale_warm_up(const struct cluster *c, int n)
{
    const struct node *ld = &c->n[c->leader];
    run_load(c, "(f) warm-up (deleted after)", "warm", 1, n, false);
    struct nv_err e;
    struct nv *all = call(ld, "nvmet.subsys.query", NULL, &e);
    nv_err_clear(&e);
    for (size_t i = 0; i < nv_len(all); i++) {
        struct nv *p = nv_arr();
        nv_push(p, nv_int(nv_get_int(nv_at(all, i), "id", 0)));
        nv_free(call(ld, "nvmet.subsys.delete", p, &e));
        nv_err_clear(&e);
    }
    nv_free(all);
    wait_rendered_ms(ld);
}

/* One node, rendering on: fill up to each size with 64 pipelined clients,
 * then n sequential creates with rendering on and again with global
 * enabled=false (the renderer desires an empty tree then). */
static void scale_bench(const char *dir, const int *sizes, size_t nsizes, int n)
{
    struct cluster c;
    /* the rolling drift check reads a share of the tree every 100 ms (a
     * background cost that grows with the tree, not with the writes): off,
     * so that the configfs calls counted are the creates' own */
    static const char *const no_check[] = {"--sweep-interval", "0", NULL};
    if (cluster_start(&c, dir, "scale", 1, no_check) < 0) {
        cluster_stop(&c);
        return;
    }
    const struct node *ld = &c.n[c.leader];
    struct scale_row rows[8];
    int have = 0;
    scale_warm_up(&c, n);
    for (size_t i = 0; i < nsizes && i < 8; i++) {
        struct scale_row *r = &rows[i];
        memset(r, 0, sizeof *r);
        if (sizes[i] > have) {
            char label[96], prefix[32];
            snprintf(label, sizeof label, "(f) fill to %d, 64 clients", sizes[i]);
            snprintf(prefix, sizeof prefix, "fill%zu", i);
            double t0 = bench_now_us();
            run_load(&c, label, prefix, 64, sizes[i] - have, false);
            wait_rendered_ms(ld);
            r->fill_s = (bench_now_us() - t0) / 1e6;
            have = sizes[i];
        }
        r->size = have;
        scale_measure(&c, "render on", have, n, &r->p50[0], &r->p99[0], &r->calls[0]);
        have += n;
        global_enable(ld, false);
        wait_rendered_ms(ld);
        scale_measure(&c, "enabled=false", have, n, &r->p50[1], &r->p99[1], &r->calls[1]);
        have += n;
        double t0 = bench_now_us();
        global_enable(ld, true); /* replies once rendered */
        wait_rendered_ms(ld);
        r->reenable_ms = (bench_now_us() - t0) / 1000;
    }
    printf("\n(f) sequential nvmet.subsys.create, 1 node, %d creates per row\n", n);
    printf("%10s | %9s %9s %12s | %9s %9s %12s | %9s %8s\n", "subsystems", "on p50", "on p99",
           "calls/create", "off p50", "off p99", "calls/create", "re-enable", "fill");
    for (size_t i = 0; i < nsizes && i < 8; i++) {
        const struct scale_row *r = &rows[i];
        printf("%10d | %6.3f ms %6.3f ms %12.1f | %6.3f ms %6.3f ms %12.1f | %6.0f ms %6.1f s\n",
               r->size, r->p50[0], r->p99[0], r->calls[0], r->p50[1], r->p99[1], r->calls[1],
               r->reenable_ms, r->fill_s);
    }
    fflush(stdout);
    cluster_stop(&c);
}

/* (c) alone on 3 nodes: 1 and 64 clients with rendering on, then the same
 * with nvmet.global.update {"enabled": false} (every node still applies
 * and runs its render pass, which desires an empty tree). */
static void full_bench(const char *dir, int n1, int n64)
{
    struct cluster c;
    if (cluster_start(&c, dir, "full3", 3, NULL) < 0) {
        cluster_stop(&c);
        return;
    }
    const struct node *ld = &c.n[c.leader];
    double ops[2][2], p50[2][2], p99[2][2];
    for (int off = 0; off <= 1; off++) {
        if (off) {
            int li = leader_index(&c, 10e6);
            ld = &c.n[li >= 0 ? li : c.leader];
            global_enable(ld, false);
            wait_rendered_ms(ld);
        }
        for (int k = 0; k < 2; k++) {
            int clients = k == 0 ? 1 : 64;
            char label[96], prefix[32];
            snprintf(label, sizeof label, "(c) 3 nodes, %d client%s, rendering %s", clients,
                     clients > 1 ? "s" : "", off ? "off" : "on");
            snprintf(prefix, sizeof prefix, "f%d-%d", off, clients);
            ops[off][k] = run_load(&c, label, prefix, clients, k == 0 ? n1 : n64, !off);
            p50[off][k] = g_last_p50 / 1000;
            p99[off][k] = g_last_p99 / 1000;
        }
    }
    printf("\n(c) nvmet.subsys.create, 3 nodes\n%-14s | %10s %9s %9s | %10s %9s %9s\n", "rendering",
           "1 client/s", "p50", "p99", "64 clients", "p50", "p99");
    for (int off = 0; off <= 1; off++) {
        printf("%-14s | %10.0f %6.3f ms %6.3f ms | %10.0f %6.3f ms %6.3f ms\n", off ? "off" : "on",
               ops[off][0], p50[off][0], p99[off][0], ops[off][1], p50[off][1], p99[off][1]);
    }
    fflush(stdout);
    cluster_stop(&c);
}

/* (g) bulk provisioning through nvmetctl batch on 3 nodes: subsystems,
 * then FILE namespaces (per_subsys each, 1 MiB sparse files every data
 * node creates), rendering on; wall time of the batch, time until every
 * node rendered it, each node's peak RSS, full render passes and role
 * changes during the run. */
static int64_t status_int(const struct node *n, const char *a, const char *b, const char *c)
{
    struct nv *r = local_status(n);
    const struct nv *v = nv_get(nv_get(r, "node"), a);
    v = b != NULL ? nv_get(v, b) : v;
    int64_t x = nv_get_int(v, c, -1);
    nv_free(r);
    return x;
}

static void bulk_bench(const char *dir, int subsystems, int per_subsys)
{
    struct cluster c;
    if (cluster_start(&c, dir, "bulk", 3, NULL) < 0) {
        cluster_stop(&c);
        return;
    }
    char file[700];
    snprintf(file, sizeof file, "%s/bulk.jsonl", dir);
    FILE *f = fopen(file, "w");
    if (f == NULL) {
        perror(file);
        cluster_stop(&c);
        return;
    }
    for (int i = 0; i < subsystems; i++) {
        fprintf(f, "[\"nvmet.subsys.create\", {\"name\": \"nqn.2024-01.com.example:bulk-%d\"}]\n", i);
    }
    for (int i = 0; i < subsystems * per_subsys; i++) {
        fprintf(f,
                "[\"nvmet.namespace.create\", {\"subsys\": %d, \"device\": \"/srv/bulk/ns%d.img\", "
                "\"filesize\": 1048576}]\n",
                i / per_subsys + 1, i);
    }
    fclose(f);
    int64_t full0[3], acq0[3];
    for (int i = 0; i < 3; i++) {
        full0[i] = status_int(&c.n[i], "render", "syscalls", "full_passes");
        acq0[i] = status_int(&c.n[i], "failover", NULL, "acquires");
    }
    for (int i = 0; i < 3; i++) {
        char d[800];
        snprintf(d, sizeof d, "%s/srv/bulk", c.n[i].dev);
        mkdirs(d);
    }
    int leader = leader_index(&c, 10e6);
    double t0 = bench_now_us();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl(NVMETCTL_BIN, NVMETCTL_BIN, "--socket", c.n[leader >= 0 ? leader : 0].sock, "batch",
              file, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    double batch_s = (bench_now_us() - t0) / 1e6;
    /* every node rendered the leader's generation (the same on every node
     * once applied: it counts the applies that changed something) */
    int64_t gen = status_int(&c.n[leader >= 0 ? leader : 0], "render", NULL, "generation");
    for (int i = 0; i < 3; i++) {
        double w0 = bench_now_us();
        while (bench_now_us() - w0 < 120e6 &&
               status_int(&c.n[i], "render", NULL, "rendered_generation") < gen) {
            usleep(20000);
        }
    }
    double all_s = (bench_now_us() - t0) / 1e6;
    printf("\n(g) bulk: %d subsystems + %d FILE namespaces through nvmetctl batch, 3 nodes, "
           "rendering on\n    batch %.1f s (exit %d), rendered on every node after %.1f s\n",
           subsystems, subsystems * per_subsys, batch_s, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           all_s);
    for (int i = 0; i < 3; i++) {
        printf("    node %d: peak RSS %.1f MiB, RSS now %.1f MiB, full render passes %" PRId64
               ", failover acquires %" PRId64 "\n",
               i + 1, rss_kib(c.n[i].pid, "VmHWM") / 1024.0, rss_kib(c.n[i].pid, "VmRSS") / 1024.0,
               status_int(&c.n[i], "render", "syscalls", "full_passes") - full0[i],
               status_int(&c.n[i], "failover", NULL, "acquires") - acq0[i]);
    }
    fflush(stdout);
    cluster_stop(&c);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int n1 = 1000, n64 = 10000;
    bool quick = false, transport = false, rpc_only = false, scale = false, full3 = false, bulk = false, cold = false;
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"transport", no_argument, NULL, 't'},
                                         {"rpc", no_argument, NULL, 'r'},
                                         {"n1", required_argument, NULL, '1'},
                                         {"n64", required_argument, NULL, '6'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"scale", no_argument, NULL, 's'},
                                         {"full", no_argument, NULL, 'f'},
                                         {"bulk", no_argument, NULL, 'b'},
                                         {"cold", no_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            dir = optarg;
            break;
        case '1':
            n1 = atoi(optarg);
            break;
        case '6':
            n64 = atoi(optarg);
            break;
        case 't':
            transport = true;
            break;
        case 'r':
            rpc_only = true;
            break;
        case 's':
            scale = true;
            break;
        case 'f':
            full3 = true;
            break;
        case 'b':
            bulk = true;
            break;
        case 'c':
            cold = true;
            break;
        case 'q':
            quick = true;
            n1 = 200;
            n64 = 2000;
            break;
        default:
            fprintf(stderr,
                    "usage: nvmet-bench [--dir DIR] [--n1 N] [--n64 N] [--quick] [--transport | "
                    "--rpc | --scale | --full | --bulk | --cold]\n"
                    "  --transport  only (b) on 3 nodes: plaintext vs TLS PSK vs TLS cert\n"
                    "  --rpc        only (e): the RPC port, plaintext vs TLS\n"
                    "  --scale      only (f): one create's cost with 0, 2000, 20000\n"
                    "               subsystems present (--quick: 0, 500, 2000)\n"
                    "  --full       only (c) on 3 nodes, rendering on and off\n"
                    "  --bulk       only (g): 1,000 subsystems + 10,000 FILE namespaces through\n"
                    "               nvmetctl batch on 3 nodes (--quick: 100 + 1,000)\n"
                    "  --cold       only (d): restart of a node holding 4,096 namespaces\n");
            return 2;
        }
    }
    char tmp[256];
    if (dir == NULL) {
        snprintf(tmp, sizeof tmp, "/var/tmp/nvmet-bench-XXXXXX");
        if (mkdtemp(tmp) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmp;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* a run cut short keeps what it printed */
    size_t esize = create_size();
    printf("nvmet-bench: data dir %s, one create = %zu bytes in the log\n", dir, esize);
    if (bench_sec_files(dir) < 0) {
        return 1;
    }
    snprintf(g_psk, sizeof g_psk, "%s/raft.psk", dir);
    if (scale) {
        const int full[] = {0, 2000, 20000}, small[] = {0, 500, 2000};
        scale_bench(dir, quick ? small : full, 3, quick ? 200 : 500);
        remove_tmp(dir, tmp);
        return 0;
    }
    if (cold) {
        cold_start(dir, 128, quick ? 8 : 32);
        remove_tmp(dir, tmp);
        return 0;
    }
    if (bulk) {
        bulk_bench(dir, quick ? 100 : 1000, 10);
        remove_tmp(dir, tmp);
        return 0;
    }
    if (full3) {
        full_bench(dir, n1, n64);
        remove_tmp(dir, tmp);
        return 0;
    }
    if (rpc_only) {
        bench_rpc_tls(dir, quick ? 100 : 500, quick ? 1000 : 5000);
        remove_tmp(dir, tmp);
        return 0;
    }
    if (transport) {
        for (int sec = BENCH_PLAIN; sec <= BENCH_CERT; sec++) {
            bench_raft(dir, 3, 1, quick ? 500 : n1, esize, (enum bench_sec)sec);
            bench_raft(dir, 3, 64, quick ? 5000 : n64 * 4, esize, (enum bench_sec)sec);
        }
        remove_tmp(dir, tmp);
        return 0;
    }
    double floor_us = fdatasync_floor(dir, 500);
    const int sizes[] = {1, 3, 5};
    for (size_t i = 0; i < 3; i++) {
        bench_raft(dir, sizes[i], 1, quick ? 500 : n1, esize, BENCH_PSK);
        bench_raft(dir, sizes[i], 64, quick ? 5000 : n64 * 4, esize, BENCH_PSK);
    }
    for (size_t i = 0; i < 3; i++) {
        struct cluster c;
        char tag[16];
        snprintf(tag, sizeof tag, "full%d", sizes[i]);
        if (cluster_start(&c, dir, tag, sizes[i], NULL) < 0) {
            cluster_stop(&c);
            return 1;
        }
        if (i == 0) {
            double rtt = rpc_rtt(c.n[c.leader].sock);
            printf("    loopback RPC round trip (core.ping, best): %.3f ms; latency target 2 x "
                   "(floor + rtt) = %.3f ms\n",
                   rtt / 1000, 2 * (floor_us + rtt) / 1000);
        }
        char label[96];
        snprintf(label, sizeof label, "(c) full path, %d node%s, 1 client", sizes[i],
                 sizes[i] > 1 ? "s" : "");
        char prefix[32];
        snprintf(prefix, sizeof prefix, "one%d", sizes[i]);
        run_load(&c, label, prefix, 1, n1, sizes[i] > 1);
        snprintf(label, sizeof label, "(c) full path, %d node%s, 64 clients", sizes[i],
                 sizes[i] > 1 ? "s" : "");
        snprintf(prefix, sizeof prefix, "many%d", sizes[i]);
        run_load(&c, label, prefix, 64, n64, sizes[i] > 1);
        cluster_stop(&c);
    }
    cold_start(dir, 128, quick ? 8 : 32);
    bench_rpc_tls(dir, quick ? 100 : 500, quick ? 1000 : 5000);
    remove_tmp(dir, tmp);
    return 0;
}
