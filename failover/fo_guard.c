/* failover: the guardian process (see fo_guard.h for why it exists).
 *
 * Parent side: a SOCK_SEQPACKET socketpair, one fixed-layout message per
 * call (both ends are the same binary). The child answers "ready" with its
 * setup result, and afterwards "released" each time a passed deadline made
 * it release: the daemon may have renewed meanwhile (the renewal was in
 * the channel, too late), and must then put back what the guardian took
 * away, the port links too, which no monitor of the daemon sees. The
 * daemon's end also turns readable through the guardian's exit.
 *
 * Child side: a poll(2) loop over the channel and an rtnetlink monitor,
 * its timeout computed from CLOCK_MONOTONIC on every turn so that no
 * amount of traffic postpones the deadline. The daemon's uv_now() may read
 * CLOCK_MONOTONIC_COARSE (libuv's UV_CLOCK_FAST), which trails
 * CLOCK_MONOTONIC by at most a tick: a deadline taken from it can only
 * make the guardian release early, never late.
 *
 * The deadline is checked before the channel is read: a renewal that
 * arrives after its predecessor's deadline comes too late, the release
 * has started (the daemon renews well ahead of the deadline; a late
 * renewal is what a stalled daemon sends). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fo_guard.h"
#include "fo_int.h"
#include "fo_net.h"
#include "nv_log.h"

#define MAX_VIPS 64
#define READY_WAIT_MS 5000
#define STOP_WAIT_MS 2000

enum { MSG_READY = 1, MSG_VIPS, MSG_ARM, MSG_DISARM, MSG_RELEASED };

struct ghdr {
    uint32_t type;
    int32_t err;          /* MSG_READY: 0 or -errno */
    uint64_t deadline_ms; /* MSG_ARM; MSG_RELEASED: the deadline that passed */
    uint32_t n;           /* MSG_VIPS: entries that follow */
    uint32_t pad;
};
struct gmsg {
    struct ghdr h;
    struct fo_vip vips[MAX_VIPS];
};
#define GMSG_HDR sizeof(struct ghdr)

struct fo_guard {
    int fd;
    pid_t pid;
    bool gone; /* reaped */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the guardian ---- */

struct guard {
    uint64_t id;
    const char *configfs; /* NULL = no configfs */
    int chan, mon;
    struct fo_nl *nl;
    struct fo_vip vips[MAX_VIPS];
    size_t n;
    bool armed;   /* holds the data path until deadline */
    bool expired; /* the deadline passed: keep the VIPs away */
    uint64_t deadline;
    uint64_t readd; /* bit i: vip i was re-added while expired */
};

static void glog(const struct guard *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void glog(const struct guard *g, const char *fmt, ...)
{
    /* one write(2) per line, no stdio: lines from the daemon and the
     * guardian never interleave mid-line and no inherited FILE lock or
     * buffer is touched */
    char line[512];
    size_t p = nv_log_prefix(line, sizeof line, NV_LOG_INFO);
    int k = (int)p + snprintf(line + p, sizeof(line) - p, "guardian[%llu]: ", (unsigned long long)g->id);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof(line) - (size_t)k - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

static void drop_vip(struct guard *g, const struct fo_vip *v, const char *why)
{
    bool present = false;
    char msg[256];
    int rv = fo_addr_present(g->nl, v, &present);
    if (rv < 0) {
        glog(g, "read %s: %s", v->text, strerror(-rv));
        present = true; /* remove it anyway */
    }
    if (!present) {
        return;
    }
    rv = fo_addr_del(g->nl, v, msg, sizeof(msg));
    if (rv < 0) {
        glog(g, "%s (%s)", msg, why);
    } else {
        glog(g, "removed %s (%s)", v->text, why);
    }
}

static void glog_line(void *arg, const char *line)
{
    glog(arg, "%s", line);
}

static void release_configfs(const struct guard *g, const char *why)
{
    if (g->configfs != NULL) {
        fo__release_configfs(g->configfs, why, glog_line, (void *)g);
    }
}

static void release(struct guard *g, const char *why)
{
    for (size_t i = 0; i < g->n; i++) {
        drop_vip(g, &g->vips[i], why);
    }
    release_configfs(g, why);
}

static void on_event(void *arg, const struct fo_mon_event *ev)
{
    struct guard *g = arg;
    if (ev->kind != FO_MON_ADDR_ADD) {
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        /* any interface: fo_addr_del acts on the VIP's own */
        if (fo_mon_is(ev, &g->vips[i], 0)) {
            g->readd |= 1ull << i;
        }
    }
}

static void watch(struct guard *g)
{
    g->readd = 0;
    int rv = fo_mon_read(g->mon, on_event, g);
    if (!g->expired) {
        return; /* the daemon holds (or released) them: not ours to touch */
    }
    if (rv < 0) {
        /* events were lost: look at every listed VIP */
        g->readd = g->n == MAX_VIPS ? ~0ull : (1ull << g->n) - 1;
    }
    for (size_t i = 0; i < g->n; i++) {
        if (g->readd & (1ull << i)) {
            drop_vip(g, &g->vips[i], "re-added after the deadline");
        }
    }
}

static bool valid_vip(struct fo_vip *v)
{
    v->ifname[sizeof(v->ifname) - 1] = '\0';
    v->text[sizeof(v->text) - 1] = '\0';
    return (v->family == AF_INET && v->prefix <= 32) || (v->family == AF_INET6 && v->prefix <= 128);
}

/* Read every queued message. false: the daemon is gone. */
static bool from_daemon(struct guard *g, struct gmsg *m)
{
    for (;;) {
        ssize_t r = recv(g->chan, m, sizeof(*m), MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        if (r <= 0) {
            return false; /* end of file, or a reset: no daemon either way */
        }
        if ((size_t)r < GMSG_HDR) {
            glog(g, "short message (%zd bytes) ignored", r);
            continue;
        }
        if (m->h.type == MSG_ARM) {
            if (!g->armed) {
                glog(g, "armed");
            }
            g->armed = true;
            g->expired = false;
            g->deadline = m->h.deadline_ms;
        } else if (m->h.type == MSG_DISARM) {
            if (g->armed || g->expired) {
                glog(g, "disarmed");
            }
            g->armed = false;
            g->expired = false;
        } else if (m->h.type == MSG_VIPS && m->h.n <= MAX_VIPS &&
                   (size_t)r == GMSG_HDR + m->h.n * sizeof(struct fo_vip)) {
            g->n = 0;
            for (uint32_t i = 0; i < m->h.n; i++) {
                if (valid_vip(&m->vips[i])) {
                    g->vips[g->n++] = m->vips[i];
                }
            }
            if (g->expired) {
                release(g, "listed after the deadline");
            }
        } else {
            glog(g, "bad message (type %u, %zd bytes) ignored", m->h.type, r);
        }
    }
}

static void guard_loop(struct guard *g)
{
    struct gmsg *m = malloc(sizeof(*m));
    if (m == NULL) {
        glog(g, "out of memory");
        return;
    }
    for (;;) {
        int timeout = -1;
        if (g->armed) {
            uint64_t now = mono_ms();
            if (now >= g->deadline) {
                glog(g, "deadline passed %llu ms ago: releasing",
                     (unsigned long long)(now - g->deadline));
                g->armed = false;
                g->expired = true;
                release(g, "deadline passed");
                struct ghdr done = {.type = MSG_RELEASED, .deadline_ms = g->deadline};
                (void)send(g->chan, &done, sizeof done, MSG_NOSIGNAL | MSG_DONTWAIT);
                continue;
            }
            /* poll sleeps at least this long; the loop re-reads the clock */
            uint64_t left = g->deadline - now;
            timeout = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd pfd[2] = {{.fd = g->chan, .events = POLLIN},
                                {.fd = g->mon, .events = POLLIN}};
        int r = poll(pfd, 2, timeout);
        if (r < 0 && errno != EINTR) {
            /* cannot watch any more: do what losing the daemon would do */
            glog(g, "poll: %s", strerror(errno));
            if (g->armed || g->expired) {
                release(g, "guardian failing");
            }
            break;
        }
        if (r <= 0) {
            continue;
        }
        /* The channel first: an arm that arrived while the release ran
         * ends the keep-away before the monitor judges the VIPs the
         * daemon put back under that newer lease. */
        if (pfd[0].revents && !from_daemon(g, m)) {
            if (g->armed || g->expired) {
                glog(g, "daemon gone while %s: releasing", g->armed ? "armed" : "expired");
                release(g, "daemon gone");
            }
            break;
        }
        if (pfd[1].revents) {
            watch(g);
        }
    }
    free(m);
}

/* Keep only the channel (moved to fd 3) and stderr; stdin and stdout
 * become /dev/null, so the guardian holds no pipe, socket or file of the
 * daemon open past the daemon's exit (a supervisor waiting for the end of
 * the daemon's stdout, a listening socket, the other end of a channel). */
static int only_channel(int chan)
{
    if (chan != 3) {
        if (dup2(chan, 3) < 0) {
            return -1;
        }
        if (chan > 3) {
            close(chan);
        }
    }
    if (syscall(SYS_close_range, 4u, ~0u, 0u) < 0) {
        struct rlimit rl;
        int max =
            getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
        for (int fd = 4; fd < max; fd++) {
            close(fd);
        }
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (chan == STDERR_FILENO) {
            dup2(null, STDERR_FILENO); /* the channel sat where stderr belongs */
        }
        if (null > 3) {
            close(null);
        }
    }
    return 3;
}

__attribute__((noreturn)) static void guard_main(int chan, const struct fo_guard_config *cfg,
                                                 const char *configfs)
{
    static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        signal(ignored[i], SIG_IGN);
    }
    /* handlers of the daemon must not run here; ignoring these above and
     * keeping the defaults of the rest needs an open mask */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_NAME, "nvmetd-guard", 0, 0, 0);

    struct guard g = {.id = cfg->node_id, .configfs = configfs, .mon = -1};
    struct ghdr ready = {.type = MSG_READY};
    g.chan = only_channel(chan);
    if (g.chan < 0) {
        _exit(1); /* the daemon sees the end of file instead of ready */
    }
    ready.err = fo_mon_open(&g.mon);
    if (ready.err == 0) {
        ready.err = fo_nl_open(&g.nl);
    }
    if (send(g.chan, &ready, GMSG_HDR, MSG_NOSIGNAL) < 0 || ready.err < 0) {
        _exit(1);
    }
    guard_loop(&g);
    fo_nl_close(g.nl);
    close(g.mon);
    _exit(0);
}

/* ---- the daemon's side ---- */

static int reap(struct fo_guard *g, int flags)
{
    if (g->gone) {
        return 0;
    }
    int st;
    pid_t r;
    do {
        r = waitpid(g->pid, &st, flags);
    } while (r < 0 && errno == EINTR);
    if (r == g->pid || (r < 0 && errno == ECHILD)) {
        g->gone = true;
        return 0;
    }
    return 1;
}

static void stop_child(struct fo_guard *g)
{
    for (int waited = 0; waited < STOP_WAIT_MS && reap(g, WNOHANG) == 1; waited += 10) {
        struct timespec ts = {.tv_nsec = 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (!g->gone) {
        kill(g->pid, SIGKILL);
        reap(g, 0);
    }
}

int fo_guard_start(const struct fo_guard_config *cfg, struct fo_guard **out, char *msg,
                   size_t msglen)
{
    *out = NULL;
    struct fo_guard *g = calloc(1, sizeof(*g));
    char *configfs = cfg->configfs != NULL ? strdup(cfg->configfs) : NULL;
    int sv[2];
    if (g == NULL || (cfg->configfs != NULL && configfs == NULL)) {
        free(g);
        free(configfs);
        fo__say(msg, msglen, "guardian: out of memory");
        return -ENOMEM;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        int e = errno;
        free(g);
        free(configfs);
        fo__say(msg, msglen, "guardian: socketpair: %s", strerror(e));
        return -e;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        guard_main(sv[1], cfg, configfs);
    }
    int e = errno;
    close(sv[1]);
    free(configfs); /* the child has its own copy */
    if (pid < 0) {
        close(sv[0]);
        free(g);
        fo__say(msg, msglen, "guardian: fork: %s", strerror(e));
        return -e;
    }
    g->fd = sv[0];
    g->pid = pid;
    struct pollfd p = {.fd = g->fd, .events = POLLIN};
    struct ghdr ready = {0};
    int r;
    do {
        r = poll(&p, 1, READY_WAIT_MS);
    } while (r < 0 && errno == EINTR);
    ssize_t n = r > 0 ? recv(g->fd, &ready, sizeof(ready), MSG_DONTWAIT) : -1;
    int rv = n == (ssize_t)GMSG_HDR && ready.type == MSG_READY ? ready.err : -ECHILD;
    if (r == 0) {
        rv = -ETIMEDOUT;
    }
    if (rv < 0) {
        fo__say(msg, msglen, "guardian: %s", rv == -ECHILD ? "exited at start" : strerror(-rv));
        close(g->fd);
        stop_child(g);
        free(g);
        return rv;
    }
    *out = g;
    return 0;
}

/* Never blocks: a stopped guardian must not stall the daemon's loop (the
 * queue holds net.unix.max_dgram_qlen messages); -EAGAIN then. */
static int send_msg(struct fo_guard *g, const void *m, size_t len)
{
    ssize_t n;
    do {
        n = send(g->fd, m, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int fo_guard_set_vips(struct fo_guard *g, const struct fo_vip *vips, size_t n)
{
    if (n > MAX_VIPS) {
        return -EINVAL;
    }
    struct gmsg *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return -ENOMEM;
    }
    m->h.type = MSG_VIPS;
    m->h.n = (uint32_t)n;
    if (n > 0) {
        memcpy(m->vips, vips, n * sizeof(*vips));
    }
    int rv = send_msg(g, m, GMSG_HDR + n * sizeof(*vips));
    free(m);
    return rv;
}

int fo_guard_arm(struct fo_guard *g, uint64_t deadline_ms)
{
    struct ghdr m = {.type = MSG_ARM, .deadline_ms = deadline_ms};
    return send_msg(g, &m, GMSG_HDR);
}

int fo_guard_disarm(struct fo_guard *g)
{
    struct ghdr m = {.type = MSG_DISARM};
    return send_msg(g, &m, GMSG_HDR);
}

int fo_guard_fd(const struct fo_guard *g)
{
    return g->fd;
}

pid_t fo_guard_pid(const struct fo_guard *g)
{
    return g->pid;
}

int fo_guard_alive(struct fo_guard *g)
{
    return reap(g, WNOHANG);
}

int fo_guard_released(struct fo_guard *g)
{
    int n = 0;
    for (;;) {
        struct ghdr m;
        ssize_t r = recv(g->fd, &m, sizeof m, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return n;
        }
        if (r <= 0) {
            return n > 0 ? n : -EPIPE; /* the guardian is gone */
        }
        if ((size_t)r == GMSG_HDR && m.type == MSG_RELEASED) {
            n++;
        }
    }
}

void fo_guard_stop(struct fo_guard *g)
{
    if (g == NULL) {
        return;
    }
    /* the disarm travels ahead of the end of file, so the guardian exits
     * without releasing anything; unread reports are drained first, since
     * closing a unix socket with data queued resets the peer, which the
     * guardian would take for a dead daemon (a report sent after the
     * drain follows a release: nothing is left to take away) */
    fo_guard_disarm(g);
    (void)fo_guard_released(g);
    close(g->fd);
    stop_child(g);
    free(g);
}
