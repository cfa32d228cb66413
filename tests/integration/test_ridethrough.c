/* Integration tests of riding through a failover: three real nvmetd on
 * loopback (--election-timeout 300, the harness's), a write issued at the
 * moment the leader is killed, through nvmetctl --url (client retries until
 * its deadline) and through one survivor's unix socket (the node holds the
 * call until a new leader is known); the bounded NO_QUORUM when no leader
 * can come; a write whose outcome was unknown (leadership lost while it was
 * proposed) re-run inside the cluster and applied once; nvmetctl retrying
 * an unreachable endpoint until --timeout. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

#define NODES 3
#define HOLD_MS 5000 /* the nodes' default hold timeout (rpc.h hold_timeout_ms) */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

struct cl {
    char base[256];
    struct h_node n[NODES];
    char list[512]; /* --cluster */
    char urls[512]; /* nvmetctl --url */
};

/* the cluster of the running test, stopped by the teardown also when an
 * assertion failed halfway */
static struct cl *current;

static void cluster_up(struct cl *c)
{
    memset(c, 0, sizeof *c);
    current = c;
    h_tmpdir(c->base, sizeof c->base);
    size_t o = 0, u = 0;
    for (int i = 0; i < NODES; i++) {
        h_node_init(&c->n[i], c->base, i + 1);
        o += (size_t)snprintf(c->list + o, sizeof c->list - o, "%s%d=127.0.0.1:%d", i ? "," : "",
                              i + 1, c->n[i].raft_port);
        u += (size_t)snprintf(c->urls + u, sizeof c->urls - u, "%s127.0.0.1:%d", i ? "," : "",
                              c->n[i].rpc_port);
    }
    for (int i = 0; i < NODES; i++) {
        const char *args[] = {"--cluster", c->list, NULL};
        assert_int_equal(h_node_start(&c->n[i], args), 0);
    }
}

/* Stop every running node: SIGKILL, or (clean) SIGTERM, after which each
 * must exit 0 - under the sanitizers that also says no leak and no error,
 * with whatever calls were still held. */
static void cluster_stop(struct cl *c, bool clean)
{
    int bad = 0;
    for (int i = 0; i < NODES; i++) {
        if (c->n[i].pid > 0) {
            kill(c->n[i].pid, SIGCONT); /* a stopped node must see the signal */
            h_node_kill(&c->n[i], clean ? SIGTERM : SIGKILL);
            int code = h_node_wait(&c->n[i]);
            if (clean && code != 0) {
                fprintf(stderr, "node %d exited %d after SIGTERM\n", c->n[i].id, code);
                h_node_print_log(&c->n[i]);
                bad++;
            }
        }
    }
    if (c->base[0] != '\0') {
        h_rmrf(c->base);
    }
    current = NULL;
    assert_int_equal(bad, 0);
}

static void cluster_down(struct cl *c)
{
    cluster_stop(c, true);
}

static int teardown(void **state)
{
    (void)state;
    if (current != NULL) {
        cluster_stop(current, false);
    }
    return 0;
}

static struct nv *local_status(const struct h_node *n)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, "cluster.status", "[{\"local\": true}]", &e);
    nv_err_clear(&e);
    return r;
}

static bool is_ready_leader(const struct h_node *n)
{
    struct nv *s = local_status(n);
    bool ready = nv_get_bool(nv_get(s, "node"), "leader_ready", false);
    nv_free(s);
    return ready;
}

/* Index of the ready leader, waiting up to ms (-1 if none). */
static int wait_leader(const struct cl *c, int ms)
{
    long deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        for (int i = 0; i < NODES; i++) {
            if (c->n[i].pid > 0 && is_ready_leader(&c->n[i])) {
                return i;
            }
        }
        usleep(50000);
    }
    return -1;
}

/* Up with a leader, and every member registered (its RPC address known to
 * the others, which forwarding needs). */
static int cluster_ready(struct cl *c)
{
    cluster_up(c);
    int l = wait_leader(c, 10000);
    assert_true(l >= 0);
    usleep(1500000);
    return l;
}

/* ---- nvmetctl in the background ---- */

struct ctl {
    pid_t pid;
    long t0;
    char out[64], err[64];
    int code;
    long took;
    char *stdout_text, *stderr_text;
};

/* Start nvmetctl ARGS... (NULL-terminated) with stdout/stderr to files. */
static void ctl_start(struct ctl *c, ...)
{
    const char *argv[32] = {NVMETCTL_BIN};
    size_t argc = 1;
    va_list ap;
    va_start(ap, c);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31) {
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    snprintf(c->out, sizeof c->out, "/tmp/nvmet-ride-out-XXXXXX");
    snprintf(c->err, sizeof c->err, "/tmp/nvmet-ride-err-XXXXXX");
    int ofd = mkstemp(c->out), efd = mkstemp(c->err);
    assert_true(ofd >= 0 && efd >= 0);
    c->t0 = now_ms();
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(ofd);
    close(efd);
}

/* True while it runs (reaps it when it ended). */
static bool ctl_running(struct ctl *c)
{
    int st;
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == 0) {
        return true;
    }
    c->took = now_ms() - c->t0;
    c->code =
        r == c->pid && WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    c->pid = 0;
    return false;
}

/* Wait for it (bounded: killed after limit_ms, code 128+9), read its output. */
static void ctl_finish(struct ctl *c, long limit_ms)
{
    while (c->pid > 0 && ctl_running(c)) {
        if (now_ms() - c->t0 > limit_ms) {
            kill(c->pid, SIGKILL);
            int st;
            waitpid(c->pid, &st, 0);
            c->took = now_ms() - c->t0;
            c->code = 128 + SIGKILL;
            c->pid = 0;
            break;
        }
        usleep(5000);
    }
    c->stdout_text = h_read(c->out);
    c->stderr_text = h_read(c->err);
    if (c->stdout_text == NULL) {
        c->stdout_text = strdup("");
    }
    if (c->stderr_text == NULL) {
        c->stderr_text = strdup("");
    }
    unlink(c->out);
    unlink(c->err);
}

static void ctl_free(struct ctl *c)
{
    free(c->stdout_text);
    free(c->stderr_text);
}

/* How many subsystems are named name, asked (linearizably) on node n. */
static int64_t count_named(const struct h_node *n, const char *name)
{
    char q[512];
    snprintf(q, sizeof q, "[[[\"name\", \"=\", \"%s\"]], {\"count\": true}]", name);
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = NULL;
    long deadline = now_ms() + 10000;
    while (r == NULL && now_ms() < deadline) {
        nv_err_clear(&e);
        r = h_call(n, "nvmet.subsys.query", q, &e);
        if (r == NULL) {
            usleep(100000);
        }
    }
    if (r == NULL) {
        char *why = nv_err_reason(&e);
        fprintf(stderr, "query on node %d failed: %s\n", n->id, why ? why : "?");
        free(why);
    }
    nv_err_clear(&e);
    int64_t v = nv_is(r, NV_INT) ? r->u.i : -1;
    nv_free(r);
    return v;
}

/* ---- tests ---- */

/* A write through nvmetctl --url A,B,C issued as the leader is killed -9
 * succeeds, and the subsystem exists exactly once. */
static void test_url_write_at_kill(void **state)
{
    (void)state;
    static struct cl c;
    int l = cluster_ready(&c);
    const char *name = "nqn.2024-01.com.example:ride-url";
    char arg[256];
    snprintf(arg, sizeof arg, "{\"name\": \"%s\"}", name);
    h_node_kill(&c.n[l], SIGKILL);
    struct ctl x = {0};
    ctl_start(&x, "--url", c.urls, "--api-key-file", c.n[0].keyfile, "--cacert", c.n[0].cacert,
              "call", "nvmet.subsys.create", arg, (char *)NULL);
    h_node_wait(&c.n[l]);
    ctl_finish(&x, 40000);
    printf("# --url write issued at the kill of the leader took %ld ms (exit %d)\n", x.took,
           x.code);
    if (x.code != 0) {
        fprintf(stderr, "nvmetctl: %s\n", x.stderr_text);
    }
    assert_int_equal(x.code, 0);
    assert_non_null(strstr(x.stdout_text, name));
    assert_int_equal(count_named(&c.n[(l + 1) % NODES], name), 1);
    ctl_free(&x);
    cluster_down(&c);
}

/* Kill -9 the leader and at once write through survivor s's unix socket;
 * with pause_ms > 0 the other survivor is stopped that long, so that no
 * leader can be elected meanwhile. Asserts success and one subsystem. */
static void socket_write_at_kill(const char *name, long pause_ms)
{
    static struct cl c;
    int l = cluster_ready(&c);
    int s = (l + 1) % NODES, o = (l + 2) % NODES;
    char arg[256];
    snprintf(arg, sizeof arg, "{\"name\": \"%s\"}", name);
    if (pause_ms > 0) {
        kill(c.n[o].pid, SIGSTOP);
    }
    h_node_kill(&c.n[l], SIGKILL);
    struct ctl x = {0};
    ctl_start(&x, "--socket", c.n[s].sock, "call", "nvmet.subsys.create", arg, (char *)NULL);
    h_node_wait(&c.n[l]);
    if (pause_ms > 0) {
        usleep((useconds_t)pause_ms * 1000);
        bool waiting = ctl_running(&x);
        kill(c.n[o].pid, SIGCONT);
        printf("# client still waiting after %ld ms without a possible leader: %s\n", pause_ms,
               waiting ? "yes" : "no");
        assert_true(waiting);
    }
    ctl_finish(&x, 40000);
    printf(
        "# --socket write on a survivor issued at the kill of the leader took %ld ms "
        "(exit %d)\n",
        x.took, x.code);
    if (x.code != 0) {
        fprintf(stderr, "nvmetctl: %s\n", x.stderr_text);
    }
    assert_int_equal(x.code, 0);
    assert_int_equal(count_named(&c.n[o], name), 1);
    ctl_free(&x);
    cluster_down(&c);
}

/* A write through a survivor's unix socket issued as the leader is killed
 * -9 is held by that node until a new leader is known, then succeeds. */
static void test_socket_write_at_kill(void **state)
{
    (void)state;
    socket_write_at_kill("nqn.2024-01.com.example:ride-sock", 0);
}

/* The same while the other survivor is stopped for 1.5 s (no election can
 * finish): the survivor holds the write for that long, then it succeeds. */
static void test_socket_write_slow_election(void **state)
{
    (void)state;
    socket_write_at_kill("nqn.2024-01.com.example:ride-slow", 1500);
}

/* Two of three nodes killed: a write on the survivor is answered NO_QUORUM
 * once the hold timeout has passed, never later than a few seconds after. */
static void test_no_quorum_after_hold(void **state)
{
    (void)state;
    static struct cl c;
    int l = cluster_ready(&c);
    int s = (l + 1) % NODES, o = (l + 2) % NODES;
    h_node_kill(&c.n[l], SIGKILL);
    h_node_kill(&c.n[o], SIGKILL);
    h_node_wait(&c.n[l]);
    h_node_wait(&c.n[o]);
    struct ctl x = {0};
    ctl_start(&x, "--socket", c.n[s].sock, "call", "nvmet.subsys.create",
              "{\"name\": \"nqn.2024-01.com.example:ride-nq\"}", (char *)NULL);
    ctl_finish(&x, 40000);
    printf("# no quorum: answered after %ld ms (exit %d): %s\n", x.took, x.code, x.stderr_text);
    assert_int_equal(x.code, 1);
    assert_non_null(strstr(x.stderr_text, "ENOQUORUM"));
    assert_true(x.took >= HOLD_MS - 1000);
    assert_true(x.took <= HOLD_MS + 3000);
    /* a call without a client id (no session) is bounded the same way */
    struct nv_err e;
    nv_err_init(&e);
    long t0 = now_ms();
    struct nv *r = h_call(&c.n[s], "nvmet.subsys.create",
                          "[{\"name\": \"nqn.2024-01.com.example:ride-nq2\"}]", &e);
    long took = now_ms() - t0;
    printf("# no quorum, no session key: answered after %ld ms\n", took);
    assert_null(r);
    assert_int_equal(e.errnum, NV_ENOQUORUM);
    assert_true(took >= HOLD_MS - 1000 && took <= HOLD_MS + 3000);
    nv_err_clear(&e);
    ctl_free(&x);
    cluster_down(&c);
}

/* A call held on node n (no leader) in a child process: exits 0 on
 * success, 5 when the connection was closed on it, 4 on another error. */
static pid_t held_call(const struct h_node *n, const char *name)
{
    pid_t pid = fork();
    if (pid == 0) {
        char p[256];
        snprintf(p, sizeof p, "[{\"name\": \"%s\"}]", name);
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(n, "nvmet.subsys.create", p, &e);
        int code = r != NULL ? 0 : e.errnum == ECONNRESET ? 5 : 4;
        nv_free(r);
        nv_err_clear(&e);
        _exit(code);
    }
    return pid;
}

/* Held calls end with their client and with the node: a client killed
 * while its call is held leaves nothing behind, and SIGTERM of the node
 * releases the calls it holds at once (not at the hold timeout); the node
 * exits 0 (under the sanitizers: no leak, no error). */
static void test_held_calls_released(void **state)
{
    (void)state;
    static struct cl c;
    int l = cluster_ready(&c);
    int s = (l + 1) % NODES, o = (l + 2) % NODES;
    h_node_kill(&c.n[l], SIGKILL);
    h_node_kill(&c.n[o], SIGKILL);
    h_node_wait(&c.n[l]);
    h_node_wait(&c.n[o]);
    pid_t held = held_call(&c.n[s], "nqn.2024-01.com.example:ride-held");
    assert_true(held > 0);
    struct ctl gone = {0};
    ctl_start(&gone, "--socket", c.n[s].sock, "call", "nvmet.subsys.create",
              "{\"name\": \"nqn.2024-01.com.example:ride-gone\"}", (char *)NULL);
    usleep(500000);
    assert_true(ctl_running(&gone));
    kill(gone.pid, SIGKILL);
    ctl_finish(&gone, 5000);
    usleep(300000);
    int st = 0;
    assert_int_equal(waitpid(held, &st, WNOHANG), 0); /* still held */
    long t0 = now_ms();
    h_node_kill(&c.n[s], SIGTERM);
    pid_t r = 0;
    while ((r = waitpid(held, &st, WNOHANG)) == 0 && now_ms() - t0 < 10000) {
        usleep(5000);
    }
    long took = now_ms() - t0;
    if (r == 0) {
        kill(held, SIGKILL);
        waitpid(held, &st, 0);
    }
    printf("# a held call was released %ld ms after SIGTERM of its node (child exit %d)\n", took,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    assert_int_equal(r, held);
    assert_true(took < HOLD_MS - 2000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    assert_int_equal(h_node_wait(&c.n[s]), 0);
    ctl_free(&gone);
    cluster_down(&c);
}

/* A write without a session key (no client id) on node n, in a child
 * process: exits 0 on success, 3 on leadership lost, 4 on another error. */
static pid_t sessionless_write(const struct h_node *n, const char *name)
{
    pid_t pid = fork();
    if (pid == 0) {
        char p[256];
        snprintf(p, sizeof p, "[{\"name\": \"%s\"}]", name);
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(n, "nvmet.subsys.create", p, &e);
        int code = r != NULL ? 0 : e.errnum == NV_ELEADERSHIPLOST ? 3 : 4;
        nv_free(r);
        nv_err_clear(&e);
        _exit(code);
    }
    return pid;
}

/* A write proposed on a leader that loses leadership before it commits
 * (its followers stopped) has an unknown outcome; the node holds it and,
 * once a leader is back, runs it again with the same session key: the
 * client gets success and the subsystem exists once. The same write
 * without a session key is not run again: it is answered leadership lost
 * (and exists at most once). */
static void test_unknown_outcome_applied_once(void **state)
{
    (void)state;
    static struct cl c;
    int l = cluster_ready(&c);
    int a = (l + 1) % NODES, b = (l + 2) % NODES;
    const char *name = "nqn.2024-01.com.example:ride-lost";
    char arg[256];
    snprintf(arg, sizeof arg, "{\"name\": \"%s\"}", name);
    kill(c.n[a].pid, SIGSTOP);
    kill(c.n[b].pid, SIGSTOP);
    struct ctl x = {0};
    ctl_start(&x, "--socket", c.n[l].sock, "call", "nvmet.subsys.create", arg, (char *)NULL);
    const char *name2 = "nqn.2024-01.com.example:ride-lost-nokey";
    pid_t nokey = sessionless_write(&c.n[l], name2);
    assert_true(nokey > 0);
    /* the leader steps down (no contact with a majority) with the write
     * pending: the client is still waiting */
    long deadline = now_ms() + 3000;
    bool stepped_down = false;
    while (!stepped_down && now_ms() < deadline) {
        usleep(50000);
        stepped_down = !is_ready_leader(&c.n[l]);
    }
    /* longer than a client's few quick retries would last */
    usleep(1500000);
    bool waiting = ctl_running(&x);
    int st = 0;
    pid_t reaped = waitpid(nokey, &st, WNOHANG);
    kill(c.n[a].pid, SIGCONT);
    kill(c.n[b].pid, SIGCONT);
    if (reaped == 0) {
        kill(nokey, SIGKILL);
        waitpid(nokey, &st, 0);
    }
    printf(
        "# old leader stepped down: %s; client still waiting: %s; the write without a "
        "session key: %s\n",
        stepped_down ? "yes" : "no", waiting ? "yes" : "no",
        reaped == 0                             ? "still waiting"
        : WIFEXITED(st) && WEXITSTATUS(st) == 3 ? "leadership lost"
                                                : "other answer");
    assert_true(stepped_down);
    assert_true(waiting);
    assert_int_equal(reaped, nokey);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    ctl_finish(&x, 40000);
    printf("# the write with an unknown outcome was answered after %ld ms (exit %d)\n", x.took,
           x.code);
    if (x.code != 0) {
        fprintf(stderr, "nvmetctl: %s\n", x.stderr_text);
    }
    assert_int_equal(x.code, 0);
    struct nv *res = nv_from_json(x.stdout_text);
    assert_non_null(res);
    int64_t id = nv_get_int(res, "id", -1);
    nv_free(res);
    assert_true(id > 0);
    assert_true(wait_leader(&c, 10000) >= 0);
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(count_named(&c.n[i], name), 1);
        int64_t n2 = count_named(&c.n[i], name2);
        assert_true(n2 == 0 || n2 == 1);
    }
    ctl_free(&x);
    cluster_down(&c);
}

/* nvmetctl keeps retrying an unreachable endpoint until --timeout (not a
 * few rounds), then exits 2 with the connection error. */
static void test_ctl_retries_until_timeout(void **state)
{
    (void)state;
    char port[64];
    snprintf(port, sizeof port, "127.0.0.1:%d", h_free_port());
    struct ctl x = {0};
    ctl_start(&x, "--url", port, "--timeout", "2", "call", "core.ping", (char *)NULL);
    ctl_finish(&x, 20000);
    printf("# unreachable endpoint: gave up after %ld ms (exit %d): %s\n", x.took, x.code,
           x.stderr_text);
    assert_int_equal(x.code, 2);
    assert_non_null(strstr(x.stderr_text, "ECONNREFUSED"));
    assert_true(x.took >= 1900);
    assert_true(x.took <= 4000);
    ctl_free(&x);
}

/* A node that comes up 2.5 s after nvmetctl started still gets the call:
 * nvmetctl was retrying all along. */
static void test_ctl_reaches_late_node(void **state)
{
    (void)state;
    static struct cl c; /* one node used */
    memset(&c, 0, sizeof c);
    current = &c;
    h_tmpdir(c.base, sizeof c.base);
    h_node_init(&c.n[0], c.base, 1);
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", c.n[0].rpc_port);
    struct ctl x = {0};
    ctl_start(&x, "--url", url, "--api-key-file", c.n[0].keyfile, "--cacert", c.n[0].cacert,
              "--timeout", "20", "call", "nvmet.subsys.query", "[]", "{\"count\": true}",
              (char *)NULL);
    usleep(2500000);
    assert_true(ctl_running(&x));
    assert_int_equal(h_node_start(&c.n[0], NULL), 0);
    ctl_finish(&x, 30000);
    printf("# a node started 2.5 s late answered after %ld ms (exit %d)\n", x.took, x.code);
    if (x.code != 0) {
        fprintf(stderr, "nvmetctl: %s\n", x.stderr_text);
    }
    assert_int_equal(x.code, 0);
    assert_string_equal(x.stdout_text, "0");
    assert_true(x.took >= 2500);
    ctl_free(&x);
    cluster_down(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ctl_retries_until_timeout, teardown),
        cmocka_unit_test_teardown(test_ctl_reaches_late_node, teardown),
        cmocka_unit_test_teardown(test_url_write_at_kill, teardown),
        cmocka_unit_test_teardown(test_socket_write_at_kill, teardown),
        cmocka_unit_test_teardown(test_socket_write_slow_election, teardown),
        cmocka_unit_test_teardown(test_no_quorum_after_hold, teardown),
        cmocka_unit_test_teardown(test_held_calls_released, teardown),
        cmocka_unit_test_teardown(test_unknown_outcome_applied_once, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
