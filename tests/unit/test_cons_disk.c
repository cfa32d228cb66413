/* Unit tests of consensus/cons_disk.c: storage faults with real libraft
 * raft_uv nodes on 127.0.0.1, data dirs under mkdtemp, and (as root) small
 * tmpfs mounts for a full disk. All nodes of a test share one uv loop;
 * every wait is bounded by a deadline on the loop clock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "cons.h"
#include "nv_err.h"

/* ------------------------------------------------------------------ */
/* a recording fsm: command i is "cmd <i>" padded with 'x' to its length */

struct tfsm {
    char **cmds;
    size_t n, cap;
};

static void *t_apply(void *data, const void *buf, size_t len)
{
    struct tfsm *f = data;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 256;
        f->cmds = realloc(f->cmds, f->cap * sizeof *f->cmds);
        assert_non_null(f->cmds);
    }
    char *c = malloc(len + 1);
    assert_non_null(c);
    memcpy(c, buf, len);
    c[len] = '\0';
    f->cmds[f->n++] = c;
    return NULL;
}

static void tfsm_clear(struct tfsm *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->cmds[i]);
    }
    f->n = 0;
}

static void tfsm_free(struct tfsm *f)
{
    tfsm_clear(f);
    free(f->cmds);
    memset(f, 0, sizeof *f);
}

/* NUL-separated commands */
static int t_snapshot(void *data, void **buf, size_t *len)
{
    struct tfsm *f = data;
    size_t size = 0;
    for (size_t i = 0; i < f->n; i++) {
        size += strlen(f->cmds[i]) + 1;
    }
    char *p = malloc(size + 1);
    if (p == NULL) {
        return -ENOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < f->n; i++) {
        size_t l = strlen(f->cmds[i]) + 1;
        memcpy(p + off, f->cmds[i], l);
        off += l;
    }
    *buf = p;
    *len = size;
    return 0;
}

static int t_restore(void *data, const void *buf, size_t len)
{
    struct tfsm *f = data;
    tfsm_clear(f);
    const char *p = buf;
    for (size_t off = 0; off < len;) {
        size_t l = strnlen(p + off, len - off);
        t_apply(f, p + off, l);
        off += l + 1;
    }
    return 0;
}

static size_t gen(size_t i, size_t len, char *out)
{
    int k = snprintf(out, len + 1, "cmd %zu ", i);
    memset(out + k, 'x', len - (size_t)k);
    return len;
}

/* The fsm holds exactly commands 0..count-1 (of length len). */
static void check_seq(const struct tfsm *f, size_t count, size_t len)
{
    char b[2048];
    assert_int_equal(f->n, count);
    for (size_t i = 0; i < count; i++) {
        gen(i, len, b);
        b[len] = '\0';
        assert_string_equal(f->cmds[i], b);
    }
}

/* ------------------------------------------------------------------ */
/* loop, nodes */

struct tctx {
    uv_loop_t loop;
    uv_timer_t tick;
    char root[64];
    char mnt[128];     /* the first tmpfs mounted by the test, "" if none */
    char mnts[3][128]; /* every one, for the cleanup */
    int n_mnts;
};

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* The context of the running test: a failed assertion leaves the test
 * without its ctx_free, so the teardown unmounts and removes what is left. */
static struct tctx *g_ctx;

static struct tctx *ctx_new(void)
{
    struct tctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(uv_loop_init(&c->loop), 0);
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_start(&c->tick, tick_cb, 10, 10);
    snprintf(c->root, sizeof c->root, "/tmp/test_cons_disk.XXXXXX");
    assert_non_null(mkdtemp(c->root));
    g_ctx = c;
    return c;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void ctx_free(struct tctx *c)
{
    uv_close((uv_handle_t *)&c->tick, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    for (int i = 0; i < c->n_mnts; i++) {
        umount2(c->mnts[i], MNT_DETACH);
    }
    nftw(c->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
    g_ctx = NULL;
}

static int teardown(void **state)
{
    (void)state;
    if (g_ctx != NULL) {
        for (int i = 0; i < g_ctx->n_mnts; i++) {
            umount2(g_ctx->mnts[i], MNT_DETACH);
        }
        nftw(g_ctx->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        g_ctx = NULL; /* its loop and nodes are abandoned with the failed test */
    }
    return 0;
}

/* A tmpfs of size bytes at root/small<k> (root only), its path in out;
 * false if it cannot be mounted here. Unmounted by ctx_free. */
static bool mount_tmpfs_at(struct tctx *c, size_t size, char *out, size_t len)
{
    assert_true(c->n_mnts < 3);
    char *m = c->mnts[c->n_mnts];
    snprintf(m, sizeof c->mnts[0], "%s/small%d", c->root, c->n_mnts);
    assert_int_equal(mkdir(m, 0700), 0);
    char opt[64];
    snprintf(opt, sizeof opt, "size=%zu,mode=0700", size);
    if (mount("tmpfs", m, "tmpfs", 0, opt) < 0) {
        print_message("cannot mount a tmpfs (%s): skipped\n", strerror(errno));
        return false;
    }
    c->n_mnts++;
    snprintf(out, len, "%s", m);
    return true;
}

static bool mount_tmpfs(struct tctx *c, size_t size)
{
    return mount_tmpfs_at(c, size, c->mnt, sizeof c->mnt);
}

static uint64_t deadline(struct tctx *c, unsigned ms)
{
    uv_update_time(&c->loop);
    return uv_now(&c->loop) + ms;
}

static bool step(struct tctx *c, uint64_t dl)
{
    uv_run(&c->loop, UV_RUN_ONCE);
    uv_update_time(&c->loop);
    return uv_now(&c->loop) < dl;
}

static void run_ms(struct tctx *c, unsigned ms)
{
    uint64_t dl = deadline(c, ms);
    while (step(c, dl)) {
    }
}

static int pick_port(void)
{
    for (;;) {
        int port = 20000 + rand() % 40000;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rv = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        close(fd);
        if (rv == 0) {
            return port;
        }
    }
}

struct tnode {
    struct tctx *c;
    struct cons_node *cons;
    struct tfsm fsm;
    uint64_t id;
    char addr[64];
    char dir[160];
    bool closed;
};

static void tnode_init(struct tctx *c, struct tnode *t, uint64_t id, const char *parent)
{
    memset(t, 0, sizeof *t);
    t->c = c;
    t->id = id;
    snprintf(t->addr, sizeof t->addr, "127.0.0.1:%d", pick_port());
    snprintf(t->dir, sizeof t->dir, "%s/n%llu", parent ? parent : c->root, (unsigned long long)id);
}

static struct cons_config base_config(void)
{
    struct cons_config cc = {.election_timeout_ms = 300,
                             .heartbeat_ms = 30,
                             .snapshot_threshold = 100000,
                             .pre_vote = true,
                             /* storage is under test, not the transport:
                              * plain TCP (frames are still checked) */
                             .insecure = true};
    return cc;
}

static int tnode_start(struct tnode *t, const struct cons_config *base,
                       const struct cons_peer *peers, size_t n_peers, char *msg, size_t msglen)
{
    struct cons_config cc = *base;
    cc.id = t->id;
    cc.address = t->addr;
    cc.data_dir = t->dir;
    cc.peers = peers;
    cc.n_peers = n_peers;
    struct cons_fsm f = {
        .apply = t_apply, .snapshot = t_snapshot, .restore = t_restore, .data = &t->fsm};
    t->closed = false;
    tfsm_clear(&t->fsm);
    msg[0] = '\0';
    return cons_start(&t->c->loop, &cc, &f, &t->cons, msg, msglen);
}

static void closed_cb(void *arg)
{
    struct tnode *t = arg;
    t->closed = true;
    t->cons = NULL;
}

static void tnode_close(struct tnode *t)
{
    if (t->cons == NULL) {
        return;
    }
    cons_close(t->cons, closed_cb, t);
    uint64_t dl = deadline(t->c, 5000);
    while (!t->closed && step(t->c, dl)) {
    }
    assert_true(t->closed);
}

static bool is_ready(struct tnode *t)
{
    if (t->cons == NULL) {
        return false;
    }
    struct cons_status st;
    cons_get_status(t->cons, &st);
    return st.state == CONS_LEADER && st.ready;
}

static void wait_ready(struct tnode *t, unsigned ms)
{
    uint64_t dl = deadline(t->c, ms);
    while (!is_ready(t) && step(t->c, dl)) {
    }
    assert_true(is_ready(t));
}

static void wait_fsm(struct tnode *t, size_t count, unsigned ms)
{
    uint64_t dl = deadline(t->c, ms);
    while (t->fsm.n < count && step(t->c, dl)) {
    }
    assert_int_equal(t->fsm.n, count);
}

struct res {
    int calls;
    int status;
};

static void res_cb(void *arg, int status, void *result)
{
    (void)result;
    struct res *r = arg;
    r->calls++;
    r->status = status;
}

/* Propose commands [from, to) one entry each, waiting for every commit. */
static void write_range(struct tnode *t, size_t from, size_t to, size_t len)
{
    char b[2048];
    for (size_t i = from; i < to; i++) {
        struct res r = {0};
        assert_int_equal(cons_propose(t->cons, b, gen(i, len, b), res_cb, &r), 0);
        uint64_t dl = deadline(t->c, 5000);
        while (r.calls == 0 && step(t->c, dl)) {
        }
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.status, 0);
    }
}

/* Closed segments of dir ("%016llu-%016llu"), the newest in last. */
static int closed_segments(const char *dir, char *last, size_t len)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    unsigned long long best = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long a, b;
        char tail;
        if (strlen(e->d_name) == 33 && sscanf(e->d_name, "%llu-%llu%c", &a, &b, &tail) == 2) {
            n++;
            if (a >= best) {
                best = a;
                snprintf(last, len, "%s", e->d_name);
            }
        }
    }
    closedir(d);
    return n;
}

static bool has_file_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        found = found || strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    }
    closedir(d);
    return found;
}

static void truncate_file(const char *dir, const char *name, off_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(truncate(path, size), 0);
}

/* Three runs of 10 commands each, closed in between: the log holds three
 * closed segments, the newest with the entries of commands 20..29. */
static void three_segments(struct tnode *t, const struct cons_config *cc, char *last, size_t len)
{
    char msg[512];
    for (int run = 0; run < 3; run++) {
        assert_int_equal(tnode_start(t, cc, NULL, 0, msg, sizeof msg), 0);
        wait_ready(t, 5000);
        wait_fsm(t, (size_t)run * 10, 5000);
        write_range(t, (size_t)run * 10, (size_t)run * 10 + 10, 40);
        tnode_close(t);
    }
    assert_true(closed_segments(t->dir, last, len) >= 3);
}

/* ------------------------------------------------------------------ */
/* tests */

/* A single voter whose newest closed segment was cut to 0 bytes refuses to
 * start and says which segment and which entries; with accept_data_loss it
 * starts on the older entries, reports the fault, and goes on from there. */
static void test_single_damaged_segment(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1, NULL);
    struct cons_config cc = base_config();
    char last[64], msg[1024];
    three_segments(&t, &cc, last, sizeof last);
    truncate_file(t.dir, last, 0);

    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), -EBADMSG);
    print_message("refused: %s\n", msg);
    assert_non_null(strstr(msg, last));
    assert_non_null(strstr(msg, "file is empty"));
    assert_non_null(strstr(msg, "accept-data-loss"));
    assert_non_null(strstr(msg, "single-voter"));
    assert_null(t.cons);
    run_ms(c, 100);                                   /* asynchronous teardown */
    assert_false(has_file_prefix(t.dir, "corrupt-")); /* nothing renamed */

    cc.accept_data_loss = true;
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), 0);
    wait_ready(&t, 5000);
    wait_fsm(&t, 20, 5000);
    run_ms(c, 50);
    check_seq(&t.fsm, 20, 40); /* commands 20..29 are gone */
    struct cons_storage s;
    cons_get_storage(t.cons, &s);
    assert_int_equal(s.n_faults, 1);
    assert_string_equal(s.faults[0].kind, "damaged segment");
    assert_string_equal(s.faults[0].file, last);
    assert_non_null(strstr(s.faults[0].set_aside, last));
    assert_int_equal(strncmp(s.faults[0].set_aside, "corrupt-", 8), 0);
    assert_non_null(strstr(s.faults[0].reason, "file is empty"));
    assert_true(s.faults[0].accepted);
    assert_false(s.faults[0].recovered);
    unsigned long long first = strtoull(last, NULL, 10);
    assert_int_equal(s.faults[0].first_lost, first);
    assert_true(s.faults[0].last_lost >= first + 9);
    assert_true(has_file_prefix(t.dir, "corrupt-"));

    /* the next write takes the next index and stays */
    write_range(&t, 20, 25, 40);
    tnode_close(&t);
    cc.accept_data_loss = false;
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), 0);
    wait_ready(&t, 5000);
    wait_fsm(&t, 25, 5000);
    check_seq(&t.fsm, 25, 40);
    cons_get_storage(t.cons, &s);
    assert_int_equal(s.n_faults, 0);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* A segment cut short inside an entry batch is a damaged segment too (libraft
 * says "short read", an I/O error): refused the same way. */
static void test_single_truncated_segment(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1, NULL);
    struct cons_config cc = base_config();
    char last[64], msg[1024];
    three_segments(&t, &cc, last, sizeof last);
    /* cut inside the first batch: libraft 0.15 leaks the entries of the
     * batches it loaded before a short read, which the leak checker of the
     * sanitizer build would report */
    truncate_file(t.dir, last, 20);
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), -EBADMSG);
    print_message("refused: %s\n", msg);
    assert_non_null(strstr(msg, last));
    assert_non_null(strstr(msg, "short read"));
    run_ms(c, 100);
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* A log that silently ends early (the newest closed segment deleted: libraft
 * loads the rest without a word) is caught by the commit watermark. */
static void test_single_shorter_log(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    struct tnode t;
    tnode_init(c, &t, 1, NULL);
    struct cons_config cc = base_config();
    char last[64], msg[1024], path[512];
    three_segments(&t, &cc, last, sizeof last);
    snprintf(path, sizeof path, "%s/%s", t.dir, last);
    assert_int_equal(unlink(path), 0);

    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), -EBADMSG);
    print_message("refused: %s\n", msg);
    assert_non_null(strstr(msg, "were committed"));
    assert_non_null(strstr(msg, "log-watermark"));
    run_ms(c, 100);

    cc.accept_data_loss = true;
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), 0);
    wait_ready(&t, 5000);
    wait_fsm(&t, 20, 5000);
    struct cons_storage s;
    cons_get_storage(t.cons, &s);
    assert_int_equal(s.n_faults, 1);
    assert_string_equal(s.faults[0].kind, "shorter log");
    assert_string_equal(s.faults[0].file, "");
    assert_true(s.faults[0].accepted);
    assert_true(s.faults[0].last_lost >= s.faults[0].first_lost);
    assert_int_equal(s.faults[0].first_lost, strtoull(last, NULL, 10));
    tnode_close(&t);

    /* accepted once: the watermark now follows the shorter log */
    cc.accept_data_loss = false;
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), 0);
    wait_ready(&t, 5000);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* A member of a three-node cluster whose newest closed segment was cut to 0
 * bytes starts anyway (no flag), reports the fault, and gets every entry
 * back from the leader, including those written while it was down. */
static void test_member_catches_up(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    struct tnode t[3];
    struct cons_config cc = base_config();
    struct cons_peer peers[3];
    char msg[1024];
    for (int attempt = 0;; attempt++) {
        for (int i = 0; i < 3; i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s/a%d", c->root, attempt);
            mkdir(sub, 0700);
            tnode_init(c, &t[i], (uint64_t)i + 1, sub);
            peers[i].id = t[i].id;
            snprintf(peers[i].address, sizeof peers[i].address, "%s", t[i].addr);
            peers[i].role = CONS_ROLE_VOTER;
        }
        int i, rv = 0;
        for (i = 0; i < 3 && rv == 0; i++) {
            rv = tnode_start(&t[i], &cc, peers, 3, msg, sizeof msg);
        }
        if (rv == 0) {
            break;
        }
        for (int j = 0; j < i - 1; j++) {
            tnode_close(&t[j]);
        }
        assert_true(rv == -EADDRINUSE && attempt < 5);
    }
    int L = -1;
    uint64_t dl = deadline(c, 8000);
    while (L < 0 && step(c, dl)) {
        for (int i = 0; i < 3; i++) {
            L = is_ready(&t[i]) ? i : L;
        }
    }
    assert_true(L >= 0);
    write_range(&t[L], 0, 30, 40);
    int F = (L + 1) % 3;
    wait_fsm(&t[F], 30, 5000);
    tnode_close(&t[F]);
    char last[64];
    assert_true(closed_segments(t[F].dir, last, sizeof last) >= 1);
    truncate_file(t[F].dir, last, 0);
    write_range(&t[L], 30, 40, 40); /* acknowledged by the two others */

    assert_int_equal(tnode_start(&t[F], &cc, peers, 3, msg, sizeof msg), 0);
    struct cons_storage s;
    cons_get_storage(t[F].cons, &s);
    assert_int_equal(s.n_faults, 1);
    assert_string_equal(s.faults[0].file, last);
    assert_false(s.faults[0].accepted);
    assert_false(s.faults[0].recovered);
    assert_true(has_file_prefix(t[F].dir, "corrupt-"));
    wait_fsm(&t[F], 40, 10000);
    check_seq(&t[F].fsm, 40, 40);
    dl = deadline(c, 5000);
    do {
        cons_get_storage(t[F].cons, &s);
    } while (!s.faults[0].recovered && step(c, dl));
    assert_true(s.faults[0].recovered);
    for (int i = 0; i < 3; i++) {
        tnode_close(&t[i]);
        tfsm_free(&t[i].fsm);
    }
    ctx_free(c);
}

/* A data dir without room for the preallocated open segments: cons_start
 * says ENOSPC with the dir, the space needed and the space available. */
static void test_enospc_at_start(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    if (!mount_tmpfs(c, 2 << 20)) {
        ctx_free(c);
        skip();
    }
    struct tnode t;
    tnode_init(c, &t, 1, c->mnt);
    struct cons_config cc = base_config(); /* 4 MiB segments: 12 MiB */
    char msg[1024];
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), -ENOSPC);
    print_message("refused: %s\n", msg);
    assert_non_null(strstr(msg, t.dir));
    assert_non_null(strstr(msg, "needs 12.0 MiB"));
    assert_non_null(strstr(msg, "MiB available"));
    assert_non_null(strstr(msg, "No space left on device"));
    assert_null(t.cons);

    cc.segment_size = 128 << 10; /* 384 KiB fits */
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), 0);
    wait_ready(&t, 5000);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* Fill the file system holding dir: a file that takes every free byte. */
static void fill(const char *dir, char *path, size_t len)
{
    snprintf(path, len, "%s/../filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[64 << 10];
    memset(block, 0xab, sizeof block);
    for (int i = 0; i < 4096; i++) { /* at most 256 MiB: the tmpfs is far smaller */
        if (write(fd, block, sizeof block) < 0) {
            break;
        }
    }
    for (int i = 0; i < 64; i++) {
        if (write(fd, block, 4096) < 0) {
            break;
        }
    }
    close(fd);
}

/* The disk fills while a single voter runs: the write that needs a new
 * segment fails with -ENOSPC, and so does a barrier (a linearizable read);
 * the storage status says why; once space is back, writes work again. */
static void test_enospc_while_running(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    if (!mount_tmpfs(c, 2 << 20)) {
        ctx_free(c);
        skip();
    }
    struct tnode t;
    tnode_init(c, &t, 1, c->mnt);
    struct cons_config cc = base_config();
    cc.segment_size = 64 << 10;
    char msg[1024], filler[512];
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), 0);
    wait_ready(&t, 5000);
    write_range(&t, 0, 5, 1000);
    fill(t.dir, filler, sizeof filler);

    /* at most 3 segments of 64 KiB are left to write into */
    char b[2048];
    struct res r = {0};
    size_t i;
    for (i = 5; i < 1000; i++) {
        r = (struct res){0};
        assert_int_equal(cons_propose(t.cons, b, gen(i, 1000, b), res_cb, &r), 0);
        uint64_t dl = deadline(c, 5000);
        while (r.calls == 0 && step(c, dl)) {
        }
        assert_int_equal(r.calls, 1);
        if (r.status != 0) {
            break;
        }
    }
    print_message("write %zu failed: %d\n", i, r.status);
    assert_int_equal(r.status, -ENOSPC);
    struct cons_status st;
    cons_get_status(t.cons, &st);
    assert_int_equal(st.storage_error, -ENOSPC);
    struct cons_storage s;
    cons_get_storage(t.cons, &s);
    assert_int_equal(s.error, -ENOSPC);
    assert_true(strlen(s.error_msg) > 0);
    print_message("storage error: %s\n", s.error_msg);
    run_ms(c, 1100); /* the next free-space sample */
    cons_get_storage(t.cons, &s);
    assert_true(s.low);
    assert_true(s.free_bytes < s.segment_bytes);

    struct res br = {0};
    int rv = cons_barrier(t.cons, res_cb, &br);
    if (rv == 0) {
        uint64_t dl = deadline(c, 5000);
        while (br.calls == 0 && step(c, dl)) {
        }
        rv = br.status;
    }
    assert_int_equal(rv, -ENOSPC);

    assert_int_equal(unlink(filler), 0);
    size_t ok_from = i;
    write_range(&t, ok_from, ok_from + 3, 1000);
    cons_get_status(t.cons, &st);
    assert_int_equal(st.storage_error, 0);
    run_ms(c, 1100);
    cons_get_storage(t.cons, &s);
    assert_false(s.low);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* The disk is full before the post-election barrier could be written: the
 * leader says ENOSPC (not "not the leader") to proposals and barriers, and
 * becomes ready by itself once space is back. */
static void test_enospc_before_ready(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    if (!mount_tmpfs(c, 1 << 20)) {
        ctx_free(c);
        skip();
    }
    struct tnode t;
    tnode_init(c, &t, 1, c->mnt);
    struct cons_config cc = base_config();
    cc.segment_size = 64 << 10;
    char msg[1024], filler[512];
    assert_int_equal(tnode_start(&t, &cc, NULL, 0, msg, sizeof msg), 0);
    fill(t.dir, filler, sizeof filler); /* before the loop runs the barrier */
    uint64_t dl = deadline(c, 5000);
    struct cons_status st;
    do {
        cons_get_status(t.cons, &st);
    } while (st.storage_error == 0 && step(c, dl));
    assert_int_equal(st.storage_error, -ENOSPC);
    assert_int_equal(st.state, CONS_LEADER);
    assert_false(st.ready);
    char b[64];
    assert_int_equal(cons_propose(t.cons, b, gen(0, 40, b), res_cb, NULL), -ENOSPC);
    assert_int_equal(cons_barrier(t.cons, res_cb, NULL), -ENOSPC);
    struct cons_storage s;
    cons_get_storage(t.cons, &s);
    assert_true(s.blocked);
    assert_int_equal(s.error, -ENOSPC);

    assert_int_equal(unlink(filler), 0);
    wait_ready(&t, 5000);
    write_range(&t, 0, 3, 40);
    cons_get_storage(t.cons, &s);
    assert_false(s.blocked);
    assert_int_equal(s.error, 0);
    tnode_close(&t);
    tfsm_free(&t.fsm);
    ctx_free(c);
}

/* Start three voters with data dirs under parents[i]; true once all run. */
static void start_three(struct tctx *c, struct tnode *t, struct cons_peer *peers,
                        const struct cons_config *cc, char parents[3][128])
{
    char msg[1024];
    for (int attempt = 0;; attempt++) {
        for (int i = 0; i < 3; i++) {
            tnode_init(c, &t[i], (uint64_t)i + 1, parents[i]);
            peers[i].id = t[i].id;
            snprintf(peers[i].address, sizeof peers[i].address, "%s", t[i].addr);
            peers[i].role = CONS_ROLE_VOTER;
        }
        int i, rv = 0;
        for (i = 0; i < 3 && rv == 0; i++) {
            rv = tnode_start(&t[i], cc, peers, 3, msg, sizeof msg);
        }
        if (rv == 0) {
            return;
        }
        for (int j = 0; j < i - 1; j++) {
            tnode_close(&t[j]);
        }
        assert_true(rv == -EADDRINUSE && attempt < 5);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s/n* %s/n* %s/n*", parents[0], parents[1], parents[2]);
        assert_int_equal(system(cmd), 0);
    }
}

static void same_fsm(const struct tfsm *a, const struct tfsm *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->cmds[i], b->cmds[i]);
    }
}

/* The leader of three voters runs low on disk (less than one segment
 * free): it hands leadership to another member before any write fails; the
 * cluster goes on writing and every node keeps the same sequence. */
static void test_leader_hands_over_when_low(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    char dirs[3][128];
    for (int i = 0; i < 3; i++) {
        if (!mount_tmpfs_at(c, 2 << 20, dirs[i], sizeof dirs[i])) {
            ctx_free(c);
            skip();
        }
    }
    struct tnode t[3];
    struct cons_peer peers[3];
    struct cons_config cc = base_config();
    cc.segment_size = 64 << 10;
    start_three(c, t, peers, &cc, dirs);
    int L = -1;
    uint64_t dl = deadline(c, 8000);
    while (L < 0 && step(c, dl)) {
        for (int i = 0; i < 3; i++) {
            L = is_ready(&t[i]) ? i : L;
        }
    }
    assert_true(L >= 0);
    write_range(&t[L], 0, 5, 1000);
    char filler[512];
    fill(t[L].dir, filler, sizeof filler);

    int L2 = -1;
    dl = deadline(c, 8000);
    while (L2 < 0 && step(c, dl)) {
        for (int k = 0; k < 3; k++) {
            L2 = k != L && is_ready(&t[k]) ? k : L2;
        }
    }
    assert_true(L2 >= 0);
    struct cons_status st;
    cons_get_status(t[L].cons, &st);
    assert_int_equal(st.state, CONS_FOLLOWER);
    assert_int_equal(st.storage_error, 0); /* no write of its own failed */
    struct cons_storage s;
    cons_get_storage(t[L].cons, &s);
    assert_true(s.low);
    write_range(&t[L2], 5, 10, 40);
    for (int k = 0; k < 3; k++) {
        if (k != L) {
            wait_fsm(&t[k], 10, 5000);
            same_fsm(&t[L2].fsm, &t[k].fsm);
        }
    }
    assert_int_equal(unlink(filler), 0);
    wait_fsm(&t[L], 10, 5000);
    same_fsm(&t[L2].fsm, &t[L].fsm);
    for (int k = 0; k < 3; k++) {
        tnode_close(&t[k]);
        tfsm_free(&t[k].fsm);
    }
    ctx_free(c);
}

int main(void)
{
    srand((unsigned)getpid());
    /* tmpfs mounts go into a private mount namespace: they vanish with the
     * process, even one that crashes (without one, a test unmounts its own) */
    if (unshare(CLONE_NEWNS) == 0) {
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_single_damaged_segment, teardown),
        cmocka_unit_test_teardown(test_single_truncated_segment, teardown),
        cmocka_unit_test_teardown(test_single_shorter_log, teardown),
        cmocka_unit_test_teardown(test_member_catches_up, teardown),
        cmocka_unit_test_teardown(test_enospc_at_start, teardown),
        cmocka_unit_test_teardown(test_enospc_while_running, teardown),
        cmocka_unit_test_teardown(test_enospc_before_ready, teardown),
        cmocka_unit_test_teardown(test_leader_hands_over_when_low, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
