/* failover/ fo_guard.h: the guardian releases the VIPs and the port links
 * when the daemon stops renewing or goes away, and keeps the VIPs away
 * after a missed deadline. Each test runs in a network namespace of its
 * own (unshare(CLONE_NEWNET), a veth pair); the configfs part on a plain
 * directory tree under a mkdtemp root. Needs root; skipped otherwise.
 *
 * Every wait is bounded; the processes started here (guardians, "daemon"
 * children) are killed by pid if they overstay and always reaped: this
 * process is a child subreaper, so a guardian orphaned by its daemon comes
 * back to it. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fo_guard.h"
#include "fo_net.h"
#include "test_fo_util.h"

#define IFA FO_TEST_IFA
#define IFB FO_TEST_IFB

struct env {
    bool ok;
    char why[160];
    struct fo_nl *nl;
    struct fo_vip v4, v6;
    char root[PATH_MAX]; /* a temporary configfs tree, removed by teardown */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static struct fo_vip vip(const char *addr, unsigned prefix)
{
    struct fo_vip v;
    char msg[128];
    assert_int_equal(fo_vip_parse(addr, prefix, IFA, &v, msg, sizeof(msg)), 0);
    return v;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    *state = e;
    if (fo_test_netns(e->why, sizeof(e->why)) != 0) {
        return 0;
    }
    assert_int_equal(fo_nl_open(&e->nl), 0);
    e->v4 = vip("198.51.100.100", 24);
    e->v6 = vip("2001:db8::100", 64);
    e->ok = true;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->root[0] != '\0') {
        nftw(e->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    fo_nl_close(e->nl);
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

static bool present(struct env *e, const struct fo_vip *v)
{
    bool p = false;
    assert_int_equal(fo_addr_present(e->nl, v, &p), 0);
    return p;
}

static void add(struct env *e, const struct fo_vip *v)
{
    char msg[256];
    int rv = fo_addr_add(e->nl, v, msg, sizeof(msg));
    if (rv != 0) {
        fail_msg("%s", msg);
    }
}

/* Poll every 5 ms, at most limit_ms: the time at which v was first seen
 * absent, or 0 if it stayed. Fails if it vanished while a query that ended
 * before not_before (a deadline) saw it gone. */
static uint64_t wait_gone(struct env *e, const struct fo_vip *v, uint64_t not_before,
                          unsigned limit_ms)
{
    uint64_t end = now_ms() + limit_ms;
    for (int i = 0; i < 10000 && now_ms() < end; i++) {
        bool p = present(e, v);
        uint64_t t = now_ms();
        if (!p) {
            if (t < not_before) {
                fail_msg("%s removed %llu ms before the deadline", v->text,
                         (unsigned long long)(not_before - t));
            }
            return t;
        }
        sleep_ms(5);
    }
    return 0;
}

static struct fo_guard *start(const char *configfs)
{
    struct fo_guard_config cfg = {.node_id = 7, .configfs = configfs};
    struct fo_guard *g = NULL;
    char msg[256] = "";
    int rv = fo_guard_start(&cfg, &g, msg, sizeof(msg));
    if (rv != 0) {
        fail_msg("fo_guard_start: %s", msg);
    }
    assert_true(fo_guard_alive(g));
    return g;
}

/* Reap pid (a child of this process), waiting at most limit_ms; kill it if
 * it is still there. Returns whether it had exited by itself. */
static bool reap(pid_t pid, unsigned limit_ms)
{
    for (unsigned waited = 0; waited <= limit_ms; waited += 5) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid) {
            return true;
        }
        sleep_ms(5);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return false;
}

/* Unrenewed deadline: VIP kept until it, removed after, kept away until re-armed. */
static void test_deadline_expiry(void **state)
{
    struct env *e = need_netns(state);
    struct fo_guard *g = start(NULL);
    struct fo_vip both[2] = {e->v4, e->v6};
    assert_int_equal(fo_guard_set_vips(g, both, 2), 0);
    add(e, &e->v4);
    add(e, &e->v6);
    uint64_t deadline = now_ms() + 200;
    assert_int_equal(fo_guard_arm(g, deadline), 0);
    uint64_t gone = wait_gone(e, &e->v4, deadline, 2000);
    assert_true(gone != 0);
    print_message("v4 removed %llu ms after the deadline\n", (unsigned long long)(gone - deadline));
    assert_true(gone <= deadline + 500);
    assert_true(wait_gone(e, &e->v6, deadline, 500) != 0);

    /* a stale daemon (or anyone) adds it back: removed again */
    for (int i = 0; i < 2; i++) {
        const struct fo_vip *v = i == 0 ? &e->v4 : &e->v6;
        char msg[256];
        uint64_t t0 = now_ms();
        /* the guardian may win the race against the add's read back */
        int rv = fo_addr_add(e->nl, v, msg, sizeof(msg));
        assert_true(rv == 0 || rv == -EIO);
        uint64_t t = wait_gone(e, v, 0, 2000);
        assert_true(t != 0);
        print_message("%s re-added, removed after %llu ms\n", v->text,
                      (unsigned long long)(t - t0));
        assert_true(t - t0 <= 500);
    }

    /* armed again: the guardian leaves it alone */
    assert_int_equal(fo_guard_arm(g, now_ms() + 60000), 0);
    sleep_ms(50); /* the arm is read before the add's event */
    add(e, &e->v4);
    assert_int_equal(wait_gone(e, &e->v4, 0, 300), 0);
    fo_guard_stop(g);
    assert_true(present(e, &e->v4));
}

/* Renewals keep the VIP; disarm + stop leave it in place. */
static void test_renew_disarm(void **state)
{
    struct env *e = need_netns(state);
    struct fo_guard *g = start(NULL);
    assert_int_equal(fo_guard_set_vips(g, &e->v4, 1), 0);
    add(e, &e->v4);
    /* deadlines 400 ms ahead, renewed every 30 ms: a loaded CI machine
     * may stall this loop for a while without a release */
    uint64_t end = now_ms() + 1000;
    while (now_ms() < end) {
        assert_int_equal(fo_guard_arm(g, now_ms() + 400), 0);
        sleep_ms(30);
        assert_true(present(e, &e->v4));
    }
    assert_int_equal(fo_guard_disarm(g), 0);
    sleep_ms(500); /* past the last deadline */
    assert_true(present(e, &e->v4));
    fo_guard_stop(g);
    sleep_ms(50);
    assert_true(present(e, &e->v4));
}

/* The report of a "daemon" child: its guardian and the result of its
 * setup. */
struct report {
    pid_t guard;
    int rv;
};

/* Fork a daemon: it starts a guardian, lists both VIPs, arms for arm_ms
 * and adds the VIPs, reports on fd, then renews every 30 ms for renew_ms
 * (0: none) and _exit()s. */
static pid_t daemon_child(struct env *e, unsigned arm_ms, unsigned renew_ms, struct report *rep)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        struct report r = {0};
        struct fo_guard_config cfg = {.node_id = 9};
        struct fo_guard *g = NULL;
        char msg[256];
        struct fo_vip both[2] = {e->v4, e->v6};
        struct fo_nl *nl = NULL;
        r.rv = fo_guard_start(&cfg, &g, msg, sizeof(msg));
        if (r.rv == 0) {
            r.rv = fo_nl_open(&nl);
        }
        if (r.rv == 0) {
            r.guard = fo_guard_pid(g);
            r.rv = fo_guard_set_vips(g, both, 2);
        }
        if (r.rv == 0) {
            r.rv = fo_guard_arm(g, now_ms() + arm_ms);
        }
        for (int i = 0; i < 2 && r.rv == 0; i++) {
            r.rv = fo_addr_add(nl, &both[i], msg, sizeof(msg));
        }
        ssize_t w = write(p[1], &r, sizeof(r));
        (void)w;
        for (uint64_t end = now_ms() + renew_ms; r.rv == 0 && now_ms() < end;) {
            sleep_ms(30);
            fo_guard_arm(g, now_ms() + arm_ms);
        }
        _exit(0); /* no cleanup: the guardian sees the end of file */
    }
    close(p[1]);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    assert_int_equal(read(p[0], rep, sizeof(*rep)), sizeof(*rep));
    close(p[0]);
    if (rep->rv != 0) {
        reap(pid, 0);
        fail_msg("daemon child setup: %s", strerror(-rep->rv));
    }
    return pid;
}

/* Daemon _exit while armed for 60 s: its guardian removes the VIPs within 500 ms. */
static void test_daemon_exit(void **state)
{
    struct env *e = need_netns(state);
    struct report rep;
    pid_t d = daemon_child(e, 60000, 0, &rep);
    uint64_t t0 = now_ms();
    uint64_t t = wait_gone(e, &e->v4, 0, 2000);
    uint64_t t6 = wait_gone(e, &e->v6, 0, 2000);
    print_message("daemon gone: VIPs removed after %llu ms\n",
                  (unsigned long long)((t > t6 ? t : t6) - t0));
    assert_true(t != 0 && t6 != 0);
    assert_true(t - t0 <= 500);
    assert_true(t6 - t0 <= 500);
    assert_true(reap(d, 2000));
    assert_true(reap(rep.guard, 2000)); /* the guardian exits on its own */
}

/* SIGSTOPped daemon stops renewing: VIPs removed once its deadline passes. */
static void test_stopped_daemon(void **state)
{
    struct env *e = need_netns(state);
    struct report rep;
    pid_t d = daemon_child(e, 300, 10000, &rep);
    sleep_ms(700); /* past two deadlines, renewed */
    assert_true(present(e, &e->v4));
    assert_true(present(e, &e->v6));
    assert_int_equal(kill(d, SIGSTOP), 0);
    uint64_t t0 = now_ms();
    uint64_t t = wait_gone(e, &e->v4, 0, 2000);
    assert_true(t != 0);
    print_message("daemon stopped: VIP removed after %llu ms (deadline <= 300 ms)\n",
                  (unsigned long long)(t - t0));
    assert_true(t - t0 <= 300 + 500);
    assert_true(wait_gone(e, &e->v6, 0, 500) != 0);
    assert_int_equal(kill(rep.guard, 0), 0); /* the guardian waits for the daemon */
    kill(d, SIGKILL);
    assert_true(reap(d, 2000));
    assert_true(reap(rep.guard, 2000));
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void get_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void mkdirs(const char *root, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    for (char *s = p + strlen(root) + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    }
    assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
}

#define NQN "nqn.2014-08.org.example:guard"

/* Release: port-1 link gone, port-5001 link kept, ANA group 2 inaccessible, 1 not. */
static void test_configfs_release(void **state)
{
    struct env *e = need_netns(state);
    const char *tmp = getenv("TMPDIR");
    char root[PATH_MAX];
    snprintf(root, sizeof(root), "%s/fo-guard-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(root));
    snprintf(e->root, sizeof(e->root), "%s", root);
    char p[PATH_MAX], l1[PATH_MAX], l5001[PATH_MAX], g1[PATH_MAX], g2[PATH_MAX];
    mkdirs(root, "nvmet/subsystems/" NQN);
    mkdirs(root, "nvmet/ports/1/subsystems");
    mkdirs(root, "nvmet/ports/5001/subsystems");
    mkdirs(root, "nvmet/ports/1/ana_groups/1");
    mkdirs(root, "nvmet/ports/1/ana_groups/2");
    snprintf(p, sizeof(p), "%s/nvmet/subsystems/" NQN, root);
    snprintf(l1, sizeof(l1), "%s/nvmet/ports/1/subsystems/" NQN, root);
    snprintf(l5001, sizeof(l5001), "%s/nvmet/ports/5001/subsystems/" NQN, root);
    snprintf(g1, sizeof(g1), "%s/nvmet/ports/1/ana_groups/1/ana_state", root);
    snprintf(g2, sizeof(g2), "%s/nvmet/ports/1/ana_groups/2/ana_state", root);
    assert_int_equal(symlink(p, l1), 0);
    assert_int_equal(symlink(p, l5001), 0);
    put_file(g1, "optimized\n");
    put_file(g2, "optimized\n");

    struct fo_guard *g = start(root);
    assert_int_equal(fo_guard_set_vips(g, &e->v4, 1), 0);
    add(e, &e->v4);
    uint64_t deadline = now_ms() + 100;
    assert_int_equal(fo_guard_arm(g, deadline), 0);
    char buf[64] = "";
    for (int i = 0; i < 400; i++) { /* the last step of the release */
        get_file(g2, buf, sizeof(buf));
        if (strcmp(buf, "inaccessible") == 0) {
            break;
        }
        sleep_ms(5);
    }
    assert_string_equal(buf, "inaccessible");
    assert_true(now_ms() >= deadline);
    struct stat st;
    assert_int_equal(lstat(l1, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(lstat(l5001, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(p, &st), 0); /* the subsystem itself stays */
    get_file(g1, buf, sizeof(buf));
    assert_string_equal(buf, "optimized\n");
    assert_false(present(e, &e->v4));
    fo_guard_stop(g);
}

/* Guardian: named, ignores SIGTERM/INT/HUP, no inherited fds, death visible. */
static void test_guardian_process(void **state)
{
    (void)need_netns(state);
    int p[2];
    assert_int_equal(pipe(p), 0); /* inheritable on purpose */
    struct fo_guard *g = start(NULL);
    pid_t pid = fo_guard_pid(g);
    close(p[1]);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_true(pf.revents & POLLHUP);
    close(p[0]);

    char path[64], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(comm, sizeof(comm), f));
    fclose(f);
    assert_string_equal(comm, "nvmetd-guard\n");

    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(kill(pid, SIGINT), 0);
    assert_int_equal(kill(pid, SIGHUP), 0);
    sleep_ms(100);
    assert_int_equal(fo_guard_alive(g), 1);

    struct fo_vip many[65];
    for (int i = 0; i < 65; i++) {
        many[i] = ((struct env *)*state)->v4;
    }
    assert_int_equal(fo_guard_set_vips(g, many, 65), -EINVAL);
    assert_int_equal(fo_guard_set_vips(g, many, 64), 0);

    assert_int_equal(kill(pid, SIGKILL), 0);
    pf = (struct pollfd){.fd = fo_guard_fd(g), .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    int alive = 1;
    for (int i = 0; i < 400 && alive; i++) {
        alive = fo_guard_alive(g);
        if (alive) {
            sleep_ms(5);
        }
    }
    assert_int_equal(alive, 0);
    assert_true(fo_guard_arm(g, now_ms() + 1000) < 0); /* EPIPE/ECONNRESET */
    fo_guard_stop(g);
}

int main(void)
{
    /* orphaned guardians come back here to be reaped */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deadline_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_disarm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daemon_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_daemon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configfs_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guardian_process, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
