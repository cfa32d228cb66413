/* nvmet-bench: measures, in one run on one disk,
 *   (a) the fdatasync floor of the data dir's file system,
 *   (b) the full path of nvmet.subsys.create (client -> RPC -> validate ->
 *       Raft -> apply -> configfs render -> reply) with 1 and with 64
 *       concurrent clients: throughput and p50/p99/p999 latency.
 *
 *   nvmet-bench [--dir DIR] [--n1 N] [--n64 N] [--clients C]
 *
 * It starts its own nvmetd (emulated configfs under DIR) and kills only
 * that process. Numbers are indicative on a shared machine: compare the
 * ratios of one run. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "nv.h"
#include "nv_err.h"
#include "rpc.h"

static double now_us(void)
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

static double pct(double *v, size_t n, double p)
{
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void report(const char *name, double *lat, size_t n, double secs)
{
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("%-34s %7zu ops %9.0f ops/s   p50 %8.3f ms   p99 %8.3f ms   p999 %8.3f ms\n", name, n,
           secs > 0 ? (double)n / secs : 0, pct(lat, n, 0.50) / 1000, pct(lat, n, 0.99) / 1000,
           pct(lat, n, 0.999) / 1000);
}

/* (a) the floor: 4 KiB write + fdatasync on the data dir's file system. */
static void fdatasync_floor(const char *dir, int n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/fdatasync-probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        return;
    }
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    double *lat = calloc((size_t)n, sizeof *lat);
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        double s = now_us();
        if (pwrite(fd, buf, sizeof buf, (off_t)(i % 256) * 4096) < 0 || fdatasync(fd) < 0) {
            perror("fdatasync probe");
            break;
        }
        lat[i] = now_us() - s;
    }
    report("fdatasync floor (4 KiB)", lat, (size_t)n, (now_us() - t0) / 1e6);
    free(lat);
    close(fd);
    unlink(path);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

struct daemon {
    pid_t pid;
    char sock[512];
};

static int start_daemon(const char *dir, struct daemon *d)
{
    char data[512], cfs[512], log[512], raft[64];
    snprintf(data, sizeof data, "%s/data", dir);
    /* configfs is memory: the emulated tree lives on tmpfs when there is
     * one, so the bench measures us and the data dir, not ext4's inode
     * allocator (the Raft log stays in DIR, on the disk under test) */
    struct stat shm;
    if (stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode)) {
        snprintf(cfs, sizeof cfs, "/dev/shm/nvmet-bench-cfs-%d", (int)getpid());
    } else {
        snprintf(cfs, sizeof cfs, "%s/configfs", dir);
    }
    snprintf(log, sizeof log, "%s/nvmetd.log", dir);
    snprintf(d->sock, sizeof d->sock, "%s/nvmetd.sock", dir);
    snprintf(raft, sizeof raft, "127.0.0.1:%d", free_port());
    mkdir(cfs, 0755);
    d->pid = fork();
    if (d->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execl(NVMETD_BIN, NVMETD_BIN, "--id", "1", "--data-dir", data, "--raft", raft,
              "--socket", d->sock, "--configfs", cfs, "--log-level", "error", (char *)NULL);
        _exit(127);
    }
    char ep[600];
    snprintf(ep, sizeof ep, "unix:%s", d->sock);
    for (int i = 0; i < 500; i++) {
        struct nv *r = NULL;
        struct nv_err e;
        nv_err_init(&e);
        struct rpc_sync_opts o = {.msgid = -1, .timeout_ms = 1000};
        if (rpc_call_sync(ep, "cluster.status", nv_arr(), &o, &r, &e) == 0) {
            bool ready = nv_get_bool(nv_get(r, "node"), "ready", false);
            nv_free(r);
            if (ready) {
                /* render what follows: enable the target */
                struct nv *p = nv_arr(), *m = nv_map();
                nv_set_bool(m, "enabled", true);
                nv_push(p, m);
                rpc_call_sync(ep, "nvmet.global.update", p, &o, &r, &e);
                nv_free(r);
                nv_err_clear(&e);
                return 0;
            }
        }
        nv_err_clear(&e);
        usleep(20000);
    }
    fprintf(stderr, "nvmet-bench: nvmetd did not start (see %s)\n", log);
    return -1;
}

/* (b) closed-loop clients: each connection keeps one create in flight. */
struct load {
    uv_loop_t *loop;
    int total, issued, done, failed;
    double *lat;
    const char *prefix;
};

struct client {
    struct load *l;
    struct rpc_client *c;
    double started;
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
    l->lat[l->done++] = now_us() - c->started;
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
    nv_set(m, "name", nv_strf("%s-%d", l->prefix, l->issued));
    nv_push(p, m);
    l->issued++;
    c->started = now_us();
    rpc_client_call(c->c, "nvmet.subsys.create", p, -1, created, c);
}

static void run_load(const char *sock, const char *name, const char *prefix, int clients,
                     int total)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct load l = {.loop = &loop, .total = total, .prefix = prefix};
    l.lat = calloc((size_t)total, sizeof *l.lat);
    struct client *cs = calloc((size_t)clients, sizeof *cs);
    char ep[600];
    snprintf(ep, sizeof ep, "unix:%s", sock);
    double t0 = now_us();
    for (int i = 0; i < clients; i++) {
        cs[i].l = &l;
        if (rpc_client_open(&loop, ep, &cs[i].c) < 0) {
            fprintf(stderr, "nvmet-bench: cannot connect\n");
            exit(1);
        }
        issue(&cs[i]);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    double secs = (now_us() - t0) / 1e6;
    report(name, l.lat, (size_t)l.done, secs);
    if (l.failed > 0) {
        printf("  (%d failed)\n", l.failed);
    }
    uv_loop_close(&loop);
    free(cs);
    free(l.lat);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int n1 = 2000, n64 = 20000, clients = 64;
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"n1", required_argument, NULL, '1'},
                                         {"n64", required_argument, NULL, '6'},
                                         {"clients", required_argument, NULL, 'c'},
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
        case 'c':
            clients = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: nvmet-bench [--dir DIR] [--n1 N] [--n64 N] [--clients C]\n");
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
    printf("nvmet-bench: data dir %s\n", dir);
    fdatasync_floor(dir, 500);
    struct daemon d;
    if (start_daemon(dir, &d) < 0) {
        return 1;
    }
    run_load(d.sock, "subsys.create, 1 client", "one", 1, n1);
    char label[64];
    snprintf(label, sizeof label, "subsys.create, %d clients", clients);
    run_load(d.sock, label, "many", clients, n64);
    kill(d.pid, SIGTERM);
    int st;
    waitpid(d.pid, &st, 0);
    if (dir == tmp) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) {
            fprintf(stderr, "nvmet-bench: could not remove %s\n", tmp);
        }
    }
    return 0;
}
