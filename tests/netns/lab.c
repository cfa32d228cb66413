/* Network-namespace test lab: see lab.h. */
#include "lab.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* An ip command normally takes a few ms; one that hangs this long is
 * killed and counted as failed. */
#define IP_TIMEOUT_MS 10000
#define SW_NS_BIT 8

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* waitpid for at most timeout_ms (polling with a growing step: an ip
 * command is usually done in a few ms). 1 with *st, 0 on timeout, -errno. */
static int wait_bounded(pid_t pid, int *st, int timeout_ms)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    long step = 100;
    for (;;) {
        pid_t r = waitpid(pid, st, WNOHANG);
        if (r == pid) {
            return 1;
        }
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
        if (now_us() >= deadline) {
            return 0;
        }
        sleep_us(step);
        if (step < 2000) {
            step *= 2;
        }
    }
}

static int status_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255;
}

/* ---- running ip ---- */

static int find_ip(char *out, size_t len)
{
    /* PATH first, then where Debian and others install iproute2 (root's
     * PATH under ctest may lack the sbin directories). */
    char dirs[1024];
    const char *path = getenv("PATH");
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        if (*d == '\0') {
            continue;
        }
        int n = snprintf(out, len, "%s/ip", d);
        if (n > 0 && (size_t)n < len && access(out, X_OK) == 0) {
            return 0;
        }
    }
    return -ENOENT;
}

static void print_argv(const char *what, char *const argv[])
{
    fprintf(stderr, "lab: %s:", what);
    for (size_t i = 0; argv[i] != NULL; i++) {
        fprintf(stderr, " %s", argv[i]);
    }
    fputc('\n', stderr);
}

/* Run argv (argv[0] a path) with stdin/stdout on /dev/null and stderr on
 * ours, bounded by IP_TIMEOUT_MS. 0, or -EIO with the command printed. */
static int run_argv(char *const argv[])
{
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0) {
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(nul);
        return -e;
    }
    if (pid == 0) {
        dup2(nul, 0);
        dup2(nul, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(nul);
    int st = 0;
    int r = wait_bounded(pid, &st, IP_TIMEOUT_MS);
    if (r == 0) {
        kill(pid, SIGKILL);
        wait_bounded(pid, &st, IP_TIMEOUT_MS);
        print_argv("timed out", argv);
        return -EIO;
    }
    if (r < 0) {
        return r;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "lab: exit status %d of", status_code(st));
        print_argv("", argv);
        return -EIO;
    }
    return 0;
}

/* Run "ip <args>", args given as one printf format whose expansion is
 * split on spaces (no argument of the lab contains one). */
static int ipf(const struct lab *lab, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ipf(const struct lab *lab, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        return -ENAMETOOLONG;
    }
    char *argv[48];
    size_t argc = 0;
    argv[argc++] = (char *)lab->ip;
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
        if (argc + 1 >= sizeof argv / sizeof argv[0]) {
            return -E2BIG;
        }
        argv[argc++] = t;
    }
    argv[argc] = NULL;
    return run_argv(argv);
}

int lab_ip(const struct lab *lab, int who, ...)
{
    const char *ns = lab_ns(lab, who);
    if (ns == NULL) {
        return -EINVAL;
    }
    char *argv[40];
    size_t argc = 0;
    argv[argc++] = (char *)lab->ip;
    argv[argc++] = "-n";
    argv[argc++] = (char *)ns;
    va_list ap;
    va_start(ap, who);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        if (argc + 1 >= sizeof argv / sizeof argv[0]) {
            va_end(ap);
            return -E2BIG;
        }
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    return run_argv(argv);
}

/* Write value to /proc/sys/<key> inside namespace ns (a forked child
 * enters it: /proc/sys/net shows the opener's namespace). */
static int ns_sysctl(const char *ns, const char *key, const char *value)
{
    char path[96];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (pid == 0) {
        char sys[160];
        snprintf(sys, sizeof sys, "/proc/sys/%s", key);
        if (setns(fd, CLONE_NEWNET) < 0) {
            _exit(1);
        }
        int s = open(sys, O_WRONLY);
        size_t len = strlen(value);
        _exit(s >= 0 && write(s, value, len) == (ssize_t)len ? 0 : 2);
    }
    close(fd);
    int st = 0;
    int r = wait_bounded(pid, &st, IP_TIMEOUT_MS);
    if (r == 0) {
        kill(pid, SIGKILL);
        wait_bounded(pid, &st, IP_TIMEOUT_MS);
    }
    if (r <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "lab: sysctl %s=%s in %s failed\n", key, value, ns);
        return -EIO;
    }
    return 0;
}

/* ---- create / destroy ---- */

int lab_check(char *why, size_t whylen)
{
    char ip[64];
    if (geteuid() != 0) {
        snprintf(why, whylen, "not root: network namespaces need CAP_SYS_ADMIN");
        return -EPERM;
    }
    if (find_ip(ip, sizeof ip) < 0) {
        snprintf(why, whylen, "no iproute2 'ip' binary in PATH or /usr/sbin, /sbin");
        return -ENOENT;
    }
    /* the real thing: create and delete a named namespace */
    char name[LAB_NS_LEN];
    snprintf(name, sizeof name, "nvha%ld-probe", (long)getpid());
    char *add[] = {ip, "netns", "add", name, NULL};
    char *del[] = {ip, "netns", "del", name, NULL};
    if (run_argv(add) < 0) {
        snprintf(why, whylen, "cannot create a network namespace (%s netns add failed)", ip);
        return -EOPNOTSUPP;
    }
    run_argv(del);
    return 0;
}

/* Delete namespaces "nvha<pid>-*" whose pid no longer exists (an earlier
 * run that crashed before its teardown). */
static void remove_stale(const struct lab *lab)
{
    DIR *d = opendir("/run/netns");
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    /* bounded: a directory listing of namespaces; at most 1024 looked at */
    for (int n = 0; n < 1024 && (e = readdir(d)) != NULL; n++) {
        const char *s = e->d_name;
        if (strncmp(s, "nvha", 4) != 0) {
            continue;
        }
        char *end = NULL;
        long pid = strtol(s + 4, &end, 10);
        if (end == s + 4 || *end != '-' || pid <= 0 || pid == (long)getpid()) {
            continue;
        }
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            fprintf(stderr, "lab: removing stale namespace %s\n", s);
            ipf(lab, "netns del %s", s);
        }
    }
    closedir(d);
}

static int add_ns(struct lab *lab, const char *name, unsigned bit)
{
    char path[96];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "lab: namespace %s exists (a lab of this process?)\n", name);
        return -EEXIST;
    }
    int rv = ipf(lab, "netns add %s", name);
    if (rv == 0) {
        lab->created |= 1u << bit;
    }
    return rv;
}

/* mac of who on net (the node side), or the switch side when sw. */
static void make_mac(int who, enum lab_net net, bool sw, unsigned char mac[6])
{
    mac[0] = 0x02;
    mac[1] = mac[2] = mac[3] = 0;
    mac[4] = (unsigned char)((sw ? 0x10 : 0) | (net == LAB_CLUSTER ? 1 : 0));
    mac[5] = who == LAB_CLIENT ? 0xfe : (unsigned char)who;
}

static void mac_text(const unsigned char m[6], char out[18])
{
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* The veth pair of who on net: switch side "<d|c><i>" ("dcl" for the
 * client) in the switch, eth0/eth1 in who's namespace, both up, the
 * switch side on its bridge; then who's addresses on it. */
static int add_port(struct lab *lab, int who, enum lab_net net)
{
    char swif[8], sw_mac[18], mac[18];
    unsigned char m[6];
    const char *ns = lab->ns[who];
    const char *ifname = net == LAB_DATA ? "eth0" : "eth1";
    if (who == LAB_CLIENT) {
        snprintf(swif, sizeof swif, "dcl");
    } else {
        snprintf(swif, sizeof swif, "%c%d", net == LAB_DATA ? 'd' : 'c', who);
    }
    make_mac(who, net, true, m);
    mac_text(m, sw_mac);
    make_mac(who, net, false, m);
    mac_text(m, mac);
    int rv = ipf(lab, "-n %s link add %s address %s type veth peer name %s address %s netns %s",
                 lab->sw, swif, sw_mac, ifname, mac, ns);
    if (rv == 0) {
        rv = ipf(lab, "-n %s link set %s master %s up", lab->sw, swif,
                 net == LAB_DATA ? "brdata" : "brclus");
    }
    if (rv == 0) {
        rv = ipf(lab, "-n %s link set %s up", ns, ifname);
    }
    char a[64];
    if (rv == 0 && lab_addr(lab, who, net, AF_INET, a, sizeof a) == 0) {
        rv = ipf(lab, "-n %s addr add %s/%d dev %s", ns, a, LAB_DATA_PREFIX4, ifname);
    }
    /* nodad: the address answers at once, not after duplicate detection */
    if (rv == 0 && lab_addr(lab, who, net, AF_INET6, a, sizeof a) == 0) {
        rv = ipf(lab, "-n %s addr add %s/%d dev %s nodad", ns, a, LAB_DATA_PREFIX6, ifname);
    }
    return rv;
}

int lab_create(struct lab *lab, int nodes)
{
    memset(lab, 0, sizeof *lab);
    if (nodes < 1 || nodes > LAB_MAX_NODES) {
        return -EINVAL;
    }
    int rv = find_ip(lab->ip, sizeof lab->ip);
    if (rv < 0) {
        return rv;
    }
    lab->nodes = nodes;
    snprintf(lab->tag, sizeof lab->tag, "nvha%ld", (long)getpid());
    snprintf(lab->sw, sizeof lab->sw, "%s-sw", lab->tag);
    snprintf(lab->ns[LAB_CLIENT], LAB_NS_LEN, "%s-cl", lab->tag);
    make_mac(LAB_CLIENT, LAB_DATA, false, lab->mac[LAB_CLIENT]);
    for (int i = 1; i <= nodes; i++) {
        snprintf(lab->ns[i], LAB_NS_LEN, "%s-n%d", lab->tag, i);
        make_mac(i, LAB_DATA, false, lab->mac[i]);
    }
    remove_stale(lab);

    rv = add_ns(lab, lab->sw, SW_NS_BIT);
    for (int i = 0; rv == 0 && i <= nodes; i++) {
        rv = add_ns(lab, lab->ns[i], (unsigned)i);
    }
    /* the switch forwards frames only: no IPv6 of its own (no router
     * solicitations or MLD reports on the networks under test) */
    if (rv == 0) {
        rv = ns_sysctl(lab->sw, "net/ipv6/conf/default/disable_ipv6", "1");
    }
    if (rv == 0) {
        rv = ns_sysctl(lab->sw, "net/ipv6/conf/all/disable_ipv6", "1");
    }
    /* STP off and no forward delay: a port forwards as soon as it has
     * carrier; no multicast snooping: a neighbour solicitation reaches
     * every node whether or not it reported its solicited-node group */
    static const char *const bridges[] = {"brdata", "brclus"};
    for (int b = 0; rv == 0 && b < 2; b++) {
        rv = ipf(lab,
                 "-n %s link add %s address 02:00:00:00:20:0%d type bridge stp_state 0 "
                 "forward_delay 0 mcast_snooping 0",
                 lab->sw, bridges[b], b + 1);
        if (rv == 0) {
            rv = ipf(lab, "-n %s link set %s up", lab->sw, bridges[b]);
        }
    }
    for (int i = 0; rv == 0 && i <= nodes; i++) {
        rv = ipf(lab, "-n %s link set lo up", lab->ns[i]);
        if (rv == 0) {
            rv = add_port(lab, i, LAB_DATA);
        }
        if (rv == 0 && i != LAB_CLIENT) {
            rv = add_port(lab, i, LAB_CLUSTER);
        }
    }
    if (rv == 0) {
        rv = ipf(lab, "-n %s link set lo up", lab->sw);
    }
    if (rv < 0) {
        lab_destroy(lab);
    }
    return rv;
}

void lab_destroy(struct lab *lab)
{
    for (int i = 0; i < LAB_MAX_SPAWN; i++) {
        pid_t pid = lab->spawned[i];
        if (pid <= 0) {
            continue;
        }
        int st;
        /* 0: still our unreaped child, so the pid cannot have been reused */
        if (waitpid(pid, &st, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            if (wait_bounded(pid, &st, IP_TIMEOUT_MS) == 0) {
                fprintf(stderr, "lab: pid %ld survives SIGKILL\n", (long)pid);
            }
        }
        lab->spawned[i] = 0;
    }
    /* the switch first: deleting it destroys every veth pair at once */
    if (lab->created & (1u << SW_NS_BIT)) {
        ipf(lab, "netns del %s", lab->sw);
    }
    for (int i = 0; i <= LAB_MAX_NODES; i++) {
        if (lab->created & (1u << i)) {
            ipf(lab, "netns del %s", lab->ns[i]);
        }
    }
    lab->created = 0;
}

const char *lab_ns(const struct lab *lab, int who)
{
    if (who < 0 || who > lab->nodes || lab->ns[who][0] == '\0') {
        return NULL;
    }
    return lab->ns[who];
}

int lab_addr(const struct lab *lab, int who, enum lab_net net, int family, char *buf, size_t len)
{
    if (lab_ns(lab, who) == NULL) {
        return -EINVAL;
    }
    int n;
    if (who == LAB_CLIENT) {
        if (net != LAB_DATA) {
            return -EINVAL;
        }
        n = snprintf(buf, len, "%s", family == AF_INET ? LAB_CLIENT_IP4 : LAB_CLIENT_IP6);
    } else if (family == AF_INET) {
        n = snprintf(buf, len, "198.51.100.%d", (net == LAB_DATA ? 130 : 10) + who);
    } else if (family == AF_INET6 && net == LAB_DATA) {
        n = snprintf(buf, len, "2001:db8::%d", 10 + who);
    } else {
        return -EINVAL;
    }
    return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

int lab_set_link(struct lab *lab, int who, enum lab_net net, bool up)
{
    if (lab_ns(lab, who) == NULL || (who == LAB_CLIENT && net != LAB_DATA)) {
        return -EINVAL;
    }
    char swif[8];
    if (who == LAB_CLIENT) {
        snprintf(swif, sizeof swif, "dcl");
    } else {
        snprintf(swif, sizeof swif, "%c%d", net == LAB_DATA ? 'd' : 'c', who);
    }
    return ipf(lab, "-n %s link set %s %s", lab->sw, swif, up ? "up" : "down");
}

/* ---- reachability ---- */

static int open_ns(const char *ns)
{
    char path[96];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* The child of lab_reach: listen in to_fd's namespace, connect from
 * from_fd's (a socket stays in the namespace it was created in), accept.
 * Returns the errno of the first failure, 0 on success. */
static int reach_child(int from_fd, int to_fd, int family, const char *addr, int timeout_ms)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &a->sin_addr);
        sl = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &a->sin6_addr);
        sl = sizeof *a;
    }
    if (setns(to_fd, CLONE_NEWNET) < 0) {
        return errno;
    }
    int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&ss, sl) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&ss, &sl) < 0) {
        return errno;
    }
    if (setns(from_fd, CLONE_NEWNET) < 0) {
        return errno;
    }
    int c = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c < 0) {
        return errno;
    }
    if (connect(c, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        return errno;
    }
    struct pollfd p = {.fd = c, .events = POLLOUT};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0) {
        return r == 0 ? ETIMEDOUT : errno;
    }
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
        return errno;
    }
    return err;
}

int lab_reach(const struct lab *lab, int from, int to, enum lab_net net, int family, int timeout_ms)
{
    char addr[64];
    if (lab_ns(lab, from) == NULL || lab_addr(lab, to, net, family, addr, sizeof addr) < 0) {
        return -EINVAL;
    }
    int from_fd = open_ns(lab->ns[from]);
    if (from_fd < 0) {
        return from_fd;
    }
    int to_fd = open_ns(lab->ns[to]);
    if (to_fd < 0) {
        close(from_fd);
        return to_fd;
    }
    pid_t pid = fork();
    if (pid == 0) {
        _exit(reach_child(from_fd, to_fd, family, addr, timeout_ms) & 0xff);
    }
    int e = errno;
    close(from_fd);
    close(to_fd);
    if (pid < 0) {
        return -e;
    }
    int st = 0;
    if (wait_bounded(pid, &st, timeout_ms + IP_TIMEOUT_MS) <= 0) {
        kill(pid, SIGKILL);
        wait_bounded(pid, &st, IP_TIMEOUT_MS);
        return -ETIMEDOUT;
    }
    return WIFEXITED(st) ? -WEXITSTATUS(st) : -EIO;
}

/* ---- processes ---- */

pid_t lab_spawn(struct lab *lab, int who, char *const argv[], const char *log_path)
{
    const char *ns = lab_ns(lab, who);
    if (ns == NULL || argv == NULL || argv[0] == NULL || log_path == NULL) {
        return -EINVAL;
    }
    int slot = -1;
    for (int i = 0; i < LAB_MAX_SPAWN && slot < 0; i++) {
        if (lab->spawned[i] <= 0) {
            slot = i;
        }
    }
    if (slot < 0) {
        return -ENOSPC;
    }
    char path[96];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
        return -errno;
    }
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int p[2] = {-1, -1};
    int rv = 0;
    if (logfd < 0 || nul < 0 || pipe2(p, O_CLOEXEC) < 0) {
        rv = -errno;
    }
    pid_t parent = getpid();
    pid_t pid = rv == 0 ? fork() : -1;
    if (rv == 0 && pid < 0) {
        rv = -errno;
    }
    if (pid == 0) {
        /* the child: only async-signal-safe calls until exec; the errno of
         * a failed step goes back through the close-on-exec pipe */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int err = 0;
        /* dies with the thread that drives the lab (checked after: the
         * parent may be gone already) */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent) {
            _exit(127);
        }
        if (setns(nsfd, CLONE_NEWNET) < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 ||
            dup2(logfd, 2) < 0) {
            err = errno;
        } else {
            execvp(argv[0], argv);
            err = errno;
        }
        ssize_t w = write(p[1], &err, sizeof err);
        (void)w;
        _exit(127);
    }
    close(nsfd);
    if (logfd >= 0) {
        close(logfd);
    }
    if (nul >= 0) {
        close(nul);
    }
    if (p[1] >= 0) {
        close(p[1]);
    }
    if (rv < 0) {
        if (p[0] >= 0) {
            close(p[0]);
        }
        return rv;
    }
    /* EOF: exec happened (the pipe closed on exec); an int: it failed */
    int err = 0;
    ssize_t n;
    do {
        n = read(p[0], &err, sizeof err);
    } while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == (ssize_t)sizeof err) {
        int st;
        wait_bounded(pid, &st, IP_TIMEOUT_MS);
        fprintf(stderr, "lab: spawn %s in %s: %s\n", argv[0], ns, strerror(err));
        return -err;
    }
    lab->spawned[slot] = pid;
    return pid;
}

static int find_child(const struct lab *lab, pid_t pid)
{
    for (int i = 0; pid > 0 && i < LAB_MAX_SPAWN; i++) {
        if (lab->spawned[i] == pid) {
            return i;
        }
    }
    return -1;
}

int lab_exited(struct lab *lab, pid_t pid, int *status)
{
    int i = find_child(lab, pid);
    if (i < 0) {
        return -ESRCH;
    }
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == 0) {
        return 0;
    }
    lab->spawned[i] = 0;
    if (r < 0) {
        return -ESRCH; /* reaped by someone else */
    }
    *status = status_code(st);
    return 1;
}

int lab_stop(struct lab *lab, pid_t pid, int sig, int timeout_ms)
{
    int i = find_child(lab, pid);
    if (i < 0) {
        return -ESRCH;
    }
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == 0) {
        kill(pid, sig);
        int w = wait_bounded(pid, &st, timeout_ms);
        if (w == 0) {
            kill(pid, SIGKILL);
            w = wait_bounded(pid, &st, IP_TIMEOUT_MS);
        }
        if (w == 0) {
            return -ETIMEDOUT; /* still ours: destroy tries again */
        }
        r = w > 0 ? pid : -1;
    }
    lab->spawned[i] = 0;
    return r == pid ? status_code(st) : -ESRCH;
}
