/* Integration tests of storage faults with real nvmetd processes: a damaged
 * Raft segment on a single node (refused, then accepted with
 * --accept-data-loss) and on a cluster member (it catches up), a data dir
 * too small for the preallocated segments, and a disk that fills up while
 * the node runs (writes and linearizable reads answer ENOSPC, not "no
 * quorum"). The small file systems are tmpfs mounts in a private mount
 * namespace (root), gone with the test process. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"

#define MAXN 3

struct lab {
    char base[256];
    char mnt[300];     /* the first tmpfs, "" if none */
    char mnts[3][300]; /* every one, for the teardown */
    int n_mnts;
    struct h_node n[MAXN];
    int count;
    char list[512];
};

/* the lab of the running test, taken down by the teardown also when an
 * assertion failed halfway */
static struct lab *current;

static long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000L + tv.tv_usec / 1000;
}

static void lab_init(struct lab *l, int count)
{
    memset(l, 0, sizeof *l);
    current = l;
    h_tmpdir(l->base, sizeof l->base);
    l->count = count;
    size_t o = 0;
    for (int i = 0; i < count; i++) {
        h_node_init(&l->n[i], l->base, i + 1);
        o += (size_t)snprintf(l->list + o, sizeof l->list - o, "%s%d=127.0.0.1:%d", i ? "," : "",
                              i + 1, l->n[i].raft_port);
    }
}

static int teardown(void **state)
{
    (void)state;
    struct lab *l = current;
    if (l == NULL) {
        return 0;
    }
    for (int i = 0; i < MAXN; i++) {
        if (l->n[i].pid > 0) {
            h_node_kill(&l->n[i], SIGKILL);
            h_node_wait(&l->n[i]);
        }
    }
    for (int i = 0; i < l->n_mnts; i++) {
        umount2(l->mnts[i], MNT_DETACH);
    }
    h_rmrf(l->base);
    current = NULL;
    return 0;
}

/* A tmpfs of size bytes under the lab, its path in out; false (test
 * skipped) when it cannot be mounted here. */
static bool lab_tmpfs_at(struct lab *l, size_t size, char *out, size_t len)
{
    assert_true(l->n_mnts < 3);
    char m[sizeof l->mnts[0]];
    snprintf(m, sizeof m, "%s/small%d", l->base, l->n_mnts);
    assert_int_equal(mkdir(m, 0700), 0);
    char opt[64];
    snprintf(opt, sizeof opt, "size=%zu,mode=0700", size);
    if (mount("tmpfs", m, "tmpfs", 0, opt) < 0) {
        print_message("cannot mount a tmpfs (%s): skipped\n", strerror(errno));
        return false;
    }
    memcpy(l->mnts[l->n_mnts++], m, sizeof m);
    snprintf(out, len, "%s", m);
    return true;
}

static bool lab_tmpfs(struct lab *l, size_t size)
{
    return lab_tmpfs_at(l, size, l->mnt, sizeof l->mnt);
}

static void stop(struct h_node *n)
{
    h_node_kill(n, SIGTERM);
    assert_int_equal(h_node_wait(n), 0);
}

/* Start with --cluster for a multi-node lab, plus more (NULL-terminated). */
static int start(struct lab *l, int i, const char *a1, const char *a2)
{
    const char *args[8] = {0};
    size_t k = 0;
    if (l->count > 1) {
        args[k++] = "--cluster";
        args[k++] = l->list;
    }
    if (a1 != NULL) {
        args[k++] = a1;
    }
    if (a2 != NULL) {
        args[k++] = a2;
    }
    return h_node_start(&l->n[i], k > 0 ? args : NULL);
}

static struct nv *status_of(const struct h_node *n)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, "cluster.status", "[{\"local\": true}]", &e);
    nv_err_clear(&e);
    return r;
}

static bool is_ready(const struct h_node *n)
{
    struct nv *s = status_of(n);
    bool ready = nv_get_bool(nv_get(s, "node"), "leader_ready", false);
    nv_free(s);
    return ready;
}

static void wait_ready(const struct h_node *n, int ms)
{
    long deadline = now_ms() + ms;
    while (!is_ready(n) && now_ms() < deadline) {
        usleep(20000);
    }
    assert_true(is_ready(n));
}

static int wait_leader(const struct lab *l, int ms)
{
    long deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        for (int i = 0; i < l->count; i++) {
            if (l->n[i].pid > 0 && is_ready(&l->n[i])) {
                return i;
            }
        }
        usleep(50000);
    }
    return -1;
}

/* nvmetctl on the node's socket: exit status 0 or the test fails. */
static void ok(const struct h_node *n, const char *method, const char *a1, const char *a2)
{
    struct h_out o;
    h_ctl(n, &o, method, a1, a2, (const char *)NULL);
    if (o.code != 0) {
        fprintf(stderr, "%s %s: %s\n", method, a1 ? a1 : "", o.err);
    }
    assert_int_equal(o.code, 0);
    h_out_free(&o);
}

static void create_subsys(const struct h_node *n, const char *name)
{
    char arg[256];
    snprintf(arg, sizeof arg, "{\"name\": \"%s\"}", name);
    ok(n, "nvmet.subsys.create", arg, NULL);
}

/* Names of the subsystems this node has applied (a local read). */
static char *local_names(const struct h_node *n)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, "nvmet.subsys.query",
                          "[[], {\"select\": [\"id\", \"name\"], \"order_by\": [\"id\"], "
                          "\"extra\": {\"consistency\": "
                          "\"local\"}}]",
                          &e);
    if (r == NULL) {
        print_message("local query on node %d: %s\n", n->id, e.reason ? e.reason : "?");
    }
    nv_err_clear(&e);
    char buf[1024] = "";
    size_t o = 0;
    for (size_t i = 0; i < nv_len(r) && o < sizeof buf; i++) {
        const char *name = nv_get_str(nv_at(r, i), "name");
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? "," : "", name ? name : "?");
    }
    nv_free(r);
    return strdup(buf);
}

/* The newest closed Raft segment of a data dir. */
static void newest_segment(const char *dir, char *out, size_t len)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    unsigned long long best = 0;
    out[0] = '\0';
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long a, b;
        if (strlen(e->d_name) == 33 && sscanf(e->d_name, "%llu-%llu", &a, &b) == 2 && a >= best) {
            best = a;
            snprintf(out, len, "%s", e->d_name);
        }
    }
    closedir(d);
    assert_true(out[0] != '\0');
}

static void truncate_segment(const struct h_node *n, char *seg, size_t len)
{
    newest_segment(n->data, seg, len);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", n->data, seg);
    assert_int_equal(truncate(path, 0), 0);
    print_message("node %d: %s cut to 0 bytes\n", n->id, seg);
}

static bool log_has(const struct h_node *n, const char *text)
{
    char *log = h_read(n->log);
    bool has = log != NULL && strstr(log, text) != NULL;
    free(log);
    return has;
}

static const struct nv *first_fault(const struct nv *status)
{
    return nv_at(nv_get(nv_get(nv_get(status, "node"), "storage"), "log_faults"), 0);
}

/* D6 on a single node: the newest closed segment (holding an acknowledged
 * write) cut to 0 bytes. nvmetd refuses to start and says which segment and
 * what to do; with --accept-data-loss it starts without that write and
 * reports the fault in cluster.status; the next start needs no flag. */
static void test_single_damaged_segment(void **state)
{
    (void)state;
    struct lab l;
    lab_init(&l, 1);
    struct h_node *n = &l.n[0];
    assert_int_equal(start(&l, 0, NULL, NULL), 0);
    create_subsys(n, "a1");
    create_subsys(n, "a2");
    stop(n);
    assert_int_equal(start(&l, 0, NULL, NULL), 0);
    create_subsys(n, "after"); /* acknowledged, in the newest segment */
    stop(n);
    char seg[64];
    truncate_segment(n, seg, sizeof seg);

    assert_int_equal(start(&l, 0, NULL, NULL), -1); /* exits: the log is printed */
    assert_true(log_has(n, seg));
    assert_true(log_has(n, "file is empty"));
    assert_true(log_has(n, "single-voter cluster holds the only copy"));
    assert_true(log_has(n, "--accept-data-loss"));

    assert_int_equal(start(&l, 0, "--accept-data-loss", NULL), 0);
    wait_ready(n, 10000);
    struct nv *st = status_of(n);
    const struct nv *f = first_fault(st);
    char *dump = nv_dump(nv_get(nv_get(st, "node"), "storage"));
    print_message("storage: %s\n", dump);
    free(dump);
    assert_string_equal(nv_get_str(f, "what"), "damaged segment");
    assert_string_equal(nv_get_str(f, "file"), seg);
    assert_int_equal(strncmp(nv_get_str(f, "set_aside_as"), "corrupt-", 8), 0);
    assert_int_equal(nv_get_int(f, "lost_first", 0), (int64_t)strtoull(seg, NULL, 10));
    assert_true(nv_get_int(f, "lost_last", 0) >= nv_get_int(f, "lost_first", 0));
    assert_non_null(strstr(nv_get_str(f, "action"), "accept-data-loss"));
    nv_free(st);
    char *names = local_names(n);
    assert_string_equal(names, "a1,a2"); /* "after" is gone, as accepted */
    free(names);
    create_subsys(n, "next");
    stop(n);

    assert_int_equal(start(&l, 0, NULL, NULL), 0); /* accepted once: no flag now */
    st = status_of(n);
    assert_null(first_fault(st));
    nv_free(st);
    names = local_names(n);
    assert_string_equal(names, "a1,a2,next");
    free(names);
    teardown(NULL);
}

/* D6 on a member of a three-node cluster: it starts without a flag, says
 * what it lost, and gets every acknowledged write back from the others,
 * also the one written while it was down. */
static void test_member_catches_up(void **state)
{
    (void)state;
    struct lab l;
    lab_init(&l, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(start(&l, i, NULL, NULL), 0);
    }
    int L = wait_leader(&l, 10000);
    assert_true(L >= 0);
    struct h_node *leader = &l.n[L], *f = &l.n[(L + 1) % 3];
    create_subsys(leader, "s1");
    create_subsys(leader, "s2");
    long deadline = now_ms() + 5000;
    char *names = NULL;
    do {
        free(names);
        names = local_names(f);
    } while (strcmp(names, "s1,s2") != 0 && now_ms() < deadline && usleep(20000) == 0);
    assert_string_equal(names, "s1,s2");
    free(names);
    stop(f);
    char seg[64];
    truncate_segment(f, seg, sizeof seg);
    create_subsys(leader, "s3"); /* acknowledged by the two others */

    assert_int_equal(start(&l, (L + 1) % 3, NULL, NULL), 0);
    deadline = now_ms() + 15000;
    const char *action = NULL;
    struct nv *st = NULL;
    names = NULL;
    for (;;) {
        nv_free(st);
        free(names);
        st = status_of(f);
        names = local_names(f);
        action = nv_get_str(first_fault(st), "action");
        if ((action != NULL && strstr(action, "caught up") != NULL &&
             strcmp(names, "s1,s2,s3") == 0) ||
            now_ms() > deadline) {
            break;
        }
        usleep(50000);
    }
    char *dump = nv_dump(nv_get(nv_get(st, "node"), "storage"));
    print_message("member storage: %s\n", dump);
    free(dump);
    assert_non_null(action);
    assert_non_null(strstr(action, "caught up"));
    assert_string_equal(nv_get_str(first_fault(st), "file"), seg);
    assert_string_equal(names, "s1,s2,s3");
    nv_free(st);
    free(names);
    assert_true(log_has(f, "fetched again from the other members"));
    /* and a linearizable read through it sees the same */
    struct h_out o;
    h_ctl(f, &o, "nvmet.subsys.query", "[]", "{\"count\": true}", (const char *)NULL);
    assert_int_equal(o.code, 0);
    assert_int_equal(atoi(o.out), 3);
    h_out_free(&o);
    teardown(NULL);
}

/* D8 at start: a 2 MiB data dir cannot hold three 4 MiB segments: nvmetd
 * says ENOSPC with the dir, the space needed and the space available. */
static void test_tiny_data_dir(void **state)
{
    (void)state;
    struct lab l;
    lab_init(&l, 1);
    if (!lab_tmpfs(&l, 2 << 20)) {
        teardown(NULL);
        skip();
    }
    struct h_node *n = &l.n[0];
    snprintf(n->data, sizeof n->data, "%s/data", l.mnt);
    assert_int_equal(start(&l, 0, NULL, NULL), -1);
    assert_true(log_has(n, n->data));
    assert_true(log_has(n, "the Raft log needs 12.0 MiB"));
    assert_true(log_has(n, "MiB available"));
    assert_true(log_has(n, "No space left on device"));
    teardown(NULL);
}

/* A file that takes every free byte of the file system holding dir. */
static void fill(const char *dir, char *path, size_t len)
{
    snprintf(path, len, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[64 << 10];
    memset(block, 0xab, sizeof block);
    for (int i = 0; i < 4096 && write(fd, block, sizeof block) > 0; i++) {
    }
    for (int i = 0; i < 64 && write(fd, block, 4096) > 0; i++) {
    }
    close(fd);
}

/* D8/D12 while running: the disk fills; writes fail with ENOSPC (not
 * ENOQUORUM), so do linearizable reads, local reads still answer,
 * cluster.status says why; with space back, writes work again. */
static void test_disk_fills(void **state)
{
    (void)state;
    struct lab l;
    lab_init(&l, 1);
    if (!lab_tmpfs(&l, 4 << 20)) {
        teardown(NULL);
        skip();
    }
    struct h_node *n = &l.n[0];
    snprintf(n->data, sizeof n->data, "%s/data", l.mnt);
    assert_int_equal(start(&l, 0, "--segment-kb", "64"), 0);
    wait_ready(n, 10000);
    create_subsys(n, "before");
    char filler[400];
    fill(l.mnt, filler, sizeof filler);

    /* at most three 64 KiB segments are left to fill */
    int i, errnum = 0;
    char pad[161];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (i = 0; i < 3000 && errnum == 0; i++) {
        char params[400];
        snprintf(params, sizeof params, "[{\"name\": \"nqn.2024-01.com.example:%s%04d\"}]", pad, i);
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(n, "nvmet.subsys.create", params, &e);
        if (r == NULL) {
            errnum = e.errnum;
            print_message("create %d: %s\n", i, e.reason ? e.reason : nv_errname(e.errnum));
        }
        nv_free(r);
        nv_err_clear(&e);
    }
    assert_int_equal(errnum, ENOSPC);

    struct h_out o;
    h_ctl(n, &o, "nvmet.subsys.create", "{\"name\": \"one-more\"}", (const char *)NULL);
    print_message("write: %s", o.err);
    assert_int_equal(o.code, 1);
    assert_non_null(strstr(o.err, "[ENOSPC]"));
    assert_non_null(strstr(o.err, "Raft log"));
    assert_null(strstr(o.err, "ENOQUORUM"));
    h_out_free(&o);
    h_ctl(n, &o, "nvmet.subsys.query", "[]", "{\"count\": true}", (const char *)NULL);
    print_message("linearizable read: %s", o.err);
    assert_int_equal(o.code, 1);
    assert_non_null(strstr(o.err, "[ENOSPC]"));
    h_out_free(&o);
    h_ctl(n, &o, "nvmet.subsys.query", "[]",
          "{\"count\": true, \"extra\": {\"consistency\": \"local\"}}", (const char *)NULL);
    assert_int_equal(o.code, 0);
    assert_int_equal(atoi(o.out), i); /* "before" and every create that succeeded */
    h_out_free(&o);

    struct nv *st = status_of(n);
    const struct nv *s = nv_get(nv_get(st, "node"), "storage");
    char *dump = nv_dump(s);
    print_message("storage: %s\n", dump);
    free(dump);
    assert_string_equal(nv_get_str(s, "state"), "error");
    assert_non_null(strstr(nv_get_str(s, "error"), "[ENOSPC]"));
    assert_non_null(strstr(nv_get_str(s, "reason"), "linearizable"));
    assert_int_equal(nv_get_int(s, "segment_bytes", 0), 64 << 10);
    nv_free(st);
    assert_true(log_has(n, "Raft log write failed"));

    assert_int_equal(unlink(filler), 0);
    long deadline = now_ms() + 5000;
    int code = 1;
    while (code != 0 && now_ms() < deadline) {
        h_ctl(n, &o, "nvmet.subsys.create", "{\"name\": \"space-back\"}", (const char *)NULL);
        code = o.code;
        h_out_free(&o);
        usleep(code != 0 ? 100000 : 0);
    }
    assert_int_equal(code, 0);
    st = status_of(n);
    assert_string_equal(nv_get_str(nv_get(nv_get(st, "node"), "storage"), "state"), "ok");
    nv_free(st);
    stop(n);
    teardown(NULL);
}

/* In a three-node cluster whose leader's data dir runs low (less than one
 * segment free), leadership moves to another member before any write
 * fails; writes through the old leader keep working (forwarded), and its
 * cluster.status says why its disk is low. */
static void test_leader_low_hands_over(void **state)
{
    (void)state;
    struct lab l;
    lab_init(&l, 3);
    for (int i = 0; i < 3; i++) {
        char m[300];
        if (!lab_tmpfs_at(&l, 2 << 20, m, sizeof m)) {
            teardown(NULL);
            skip();
        }
        snprintf(l.n[i].data, sizeof l.n[i].data, "%s/data", m);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(start(&l, i, "--segment-kb", "64"), 0);
    }
    int L = wait_leader(&l, 10000);
    assert_true(L >= 0);
    struct h_node *old = &l.n[L];
    usleep(1500000); /* every member registers its RPC address (forwarding) */
    create_subsys(old, "s1");
    char filler[400];
    fill(l.mnts[L], filler, sizeof filler);
    long deadline = now_ms() + 10000;
    int L2 = -1;
    while (now_ms() < deadline && (L2 < 0 || L2 == L)) {
        L2 = wait_leader(&l, 500);
    }
    assert_true(L2 >= 0 && L2 != L);
    assert_true(log_has(old, "handing leadership to another member"));
    create_subsys(old, "s2"); /* through the old leader: forwarded */
    create_subsys(&l.n[L2], "s3");
    struct nv *st = status_of(old);
    const struct nv *s = nv_get(nv_get(st, "node"), "storage");
    assert_string_equal(nv_get_str(s, "state"), "low");
    assert_non_null(strstr(nv_get_str(s, "reason"), "less than one segment"));
    nv_free(st);
    char *names = NULL;
    deadline = now_ms() + 5000;
    do {
        free(names);
        names = local_names(&l.n[L2]);
    } while (strcmp(names, "s1,s2,s3") != 0 && now_ms() < deadline && usleep(20000) == 0);
    assert_string_equal(names, "s1,s2,s3");
    free(names);
    teardown(NULL);
}

int main(void)
{
    /* tmpfs mounts in a private mount namespace (nvmetd children inherit
     * it): they vanish with this process, even one that crashes */
    if (unshare(CLONE_NEWNS) == 0) {
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_single_damaged_segment, teardown),
        cmocka_unit_test_teardown(test_member_catches_up, teardown),
        cmocka_unit_test_teardown(test_tiny_data_dir, teardown),
        cmocka_unit_test_teardown(test_disk_fills, teardown),
        cmocka_unit_test_teardown(test_leader_low_hands_over, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
