/* The API port under attack, on one real nvmetd: the worst frames a
 * client can send (up to the 4 MiB frame limit) must not stall the event
 * loop, and the unauthenticated TCP port must not lock anyone out.
 *
 * The loop stall is measured from outside: a second client on the unix
 * socket pings every 10 ms while a worst frame is sent on another
 * connection; the longest ping round trip is the longest time the loop
 * was not serving. The test asserts a generous bound (1 s: a loaded
 * 2-core box must not fail it) and prints the measured values. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"

#define STALL_BOUND_MS 1000 /* asserted; the target is 50 ms */
#define FRAME_MAX (4u << 20)

struct fx {
    char base[256];
    struct h_node n;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    h_tmpdir(f->base, sizeof f->base);
    h_node_init(&f->n, f->base, 1);
    /* plaintext TCP: these tests speak msgpack on raw sockets (the TLS
     * layer under the same limits is test_rpc_tls's) */
    f->n.rpc_plaintext = true;
    if (h_node_start(&f->n, NULL) < 0) {
        h_rmrf(f->base);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    h_node_kill(&f->n, SIGTERM);
    int rc = h_node_wait(&f->n);
    if (rc != 0) {
        fprintf(stderr, "nvmetd exited with %d\n", rc);
        h_node_print_log(&f->n);
    }
    h_rmrf(f->base);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* raw sockets */

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send all of buf (bounded by timeout_ms); false if the peer closed. */
static bool send_all(int fd, const char *buf, size_t len, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    while (len > 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        long left = deadline - now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            return false;
        }
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

struct reader {
    char *buf;
    size_t len, cap;
};

/* The next whole message (owned) within timeout_ms, or NULL (*eof set
 * when the peer closed). */
static struct nv *read_msg(int fd, struct reader *r, int timeout_ms, bool *eof)
{
    long deadline = now_ms() + timeout_ms;
    *eof = false;
    for (;;) {
        if (r->len > 0) {
            size_t used = 0;
            struct nv *v = nv_decode(r->buf, r->len, &used);
            if (v != NULL) {
                memmove(r->buf, r->buf + used, r->len - used);
                r->len -= used;
                return v;
            }
        }
        long left = deadline - now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            return NULL;
        }
        if (r->cap - r->len < 65536) {
            r->cap = r->cap ? r->cap * 2 : 1 << 17;
            r->buf = realloc(r->buf, r->cap);
        }
        ssize_t n = recv(fd, r->buf + r->len, r->cap - r->len, 0);
        if (n <= 0) {
            *eof = true;
            return NULL;
        }
        r->len += (size_t)n;
    }
}

/* ------------------------------------------------------------------ */
/* the pinger: core.ping every 10 ms on the unix socket, in a thread */

struct pinger {
    pthread_t th;
    const char *sock;
    atomic_bool stop;
    long max_rtt_ms; /* the longest the loop left a ping unanswered */
    long pings, lost;
};

static void *pinger_main(void *arg)
{
    struct pinger *p = arg;
    int fd = connect_unix(p->sock);
    struct reader rd = {0};
    msgpack_sbuffer sb;
    for (int64_t id = 1; !atomic_load(&p->stop); id++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 4);
        msgpack_pack_int(&pk, 0);
        msgpack_pack_int64(&pk, id);
        msgpack_pack_str_with_body(&pk, "core.ping", 9);
        msgpack_pack_array(&pk, 0);
        long t0 = now_ms();
        bool eof = false;
        struct nv *m =
            send_all(fd, sb.data, sb.size, 60000) ? read_msg(fd, &rd, 120000, &eof) : NULL;
        msgpack_sbuffer_destroy(&sb);
        long rtt = now_ms() - t0;
        if (m == NULL) {
            p->lost++;
            break;
        }
        nv_free(m);
        p->pings++;
        if (rtt > p->max_rtt_ms) {
            p->max_rtt_ms = rtt;
        }
        usleep(10000);
    }
    free(rd.buf);
    close(fd);
    return NULL;
}

static void pinger_start(struct pinger *p, const char *sock)
{
    memset(p, 0, sizeof *p);
    p->sock = sock;
    atomic_init(&p->stop, false);
    assert_int_equal(pthread_create(&p->th, NULL, pinger_main, p), 0);
    usleep(50000); /* a few pings before the frame */
}

static void pinger_stop(struct pinger *p)
{
    usleep(50000); /* and a few after */
    atomic_store(&p->stop, true);
    pthread_join(p->th, NULL);
}

/* ------------------------------------------------------------------ */
/* worst frames, packed by hand (a 120k-key nv map would itself take
 * quadratic time to build on the client side) */

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pk_head(msgpack_packer *pk, const char *method, uint32_t nparams)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 0);
    msgpack_pack_int(pk, 7);
    pk_str(pk, method);
    msgpack_pack_array(pk, nparams);
}

/* A map of n unknown keys "k0".."kN-1" (after the given known pairs). */
static void pk_unknown_keys(msgpack_packer *pk, uint32_t n, const char *known_key,
                            const char *known_val)
{
    msgpack_pack_map(pk, n + (known_key != NULL));
    if (known_key != NULL) {
        pk_str(pk, known_key);
        pk_str(pk, known_val);
    }
    char k[24];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(k, sizeof k, "k%u", i);
        pk_str(pk, k);
        msgpack_pack_int(pk, (int)i);
    }
}

enum frame_kind {
    F_QUERY_OPTIONS_KEYS,
    F_CREATE_KEYS,
    F_UPDATE_KEYS,
    F_QUERY_FILTER_KEYS,
    F_QUERY_MANY_FILTERS,
    F_QUERY_BAD_FILTERS,
    F_PING_1M_ARRAY,
    F_DEEP_CHAINS,
    F_CREATE_4M_STRING,
    F_QUERY_4M_STRING_FILTER,
    F_QUERY_IN_LIST,
    F_QUERY_SELECT_MANY,
    F_NKINDS
};

static const char *const frame_names[F_NKINDS] = {
    "query: options map, unknown keys", "subsys.create: unknown keys",
    "host.update: unknown keys",        "query: filter value map, unknown keys",
    "query: many valid filters",        "query: 1M invalid filters (ints)",
    "core.ping: 1M-element array",      "nesting at the depth limit, 4 MiB of chains",
    "subsys.create: 4 MiB name",        "query: 4 MiB string in a filter",
    "query: \"in\" a list of 1M ints",  "query: select of 300k fields",
};

/* keys: the number of unknown keys for the *_KEYS frames. */
static void build_frame(enum frame_kind k, uint32_t keys, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    switch (k) {
        case F_QUERY_OPTIONS_KEYS:
            pk_head(&pk, "nvmet.subsys.query", 2);
            msgpack_pack_array(&pk, 0);
            pk_unknown_keys(&pk, keys, NULL, NULL);
            break;
        case F_CREATE_KEYS:
            pk_head(&pk, "nvmet.subsys.create", 1);
            pk_unknown_keys(&pk, keys, "name", "nqn.2024-01.com.example:stall");
            break;
        case F_UPDATE_KEYS:
            pk_head(&pk, "nvmet.host.update", 2);
            msgpack_pack_int(&pk, 1);
            pk_unknown_keys(&pk, keys, NULL, NULL);
            break;
        case F_QUERY_FILTER_KEYS:
            pk_head(&pk, "nvmet.subsys.query", 2);
            msgpack_pack_array(&pk, 1);
            msgpack_pack_array(&pk, 3);
            pk_str(&pk, "name");
            pk_str(&pk, "=");
            pk_unknown_keys(&pk, keys, NULL, NULL);
            msgpack_pack_map(&pk, 0);
            break;
        case F_QUERY_MANY_FILTERS: {
            /* ["serial", "!=", "x"] is 14 bytes */
            uint32_t n = (FRAME_MAX - 64) / 14;
            pk_head(&pk, "nvmet.subsys.query", 2);
            msgpack_pack_array(&pk, n);
            for (uint32_t i = 0; i < n; i++) {
                msgpack_pack_array(&pk, 3);
                pk_str(&pk, "serial");
                pk_str(&pk, "!=");
                pk_str(&pk, "x");
            }
            msgpack_pack_map(&pk, 0);
            break;
        }
        case F_QUERY_BAD_FILTERS:
            pk_head(&pk, "nvmet.subsys.query", 2);
            msgpack_pack_array(&pk, 1000000);
            for (int i = 0; i < 1000000; i++) {
                msgpack_pack_int(&pk, 0);
            }
            msgpack_pack_map(&pk, 0);
            break;
        case F_PING_1M_ARRAY:
            pk_head(&pk, "core.ping", 1);
            msgpack_pack_array(&pk, 1000000);
            for (int i = 0; i < 1000000; i++) {
                msgpack_pack_nil(&pk);
            }
            break;
        case F_DEEP_CHAINS: {
            /* [[c, c, ...]] where c is 27 nested one-element arrays around a
             * nil: with the message array, params and the list that is depth
             * 30, the limit. Each byte is one object: about 4M of them. */
            uint32_t n = (FRAME_MAX - 64) / 28;
            pk_head(&pk, "core.ping", 1);
            msgpack_pack_array(&pk, n);
            for (uint32_t i = 0; i < n; i++) {
                for (int d = 0; d < 27; d++) {
                    msgpack_pack_array(&pk, 1);
                }
                msgpack_pack_nil(&pk);
            }
            break;
        }
        case F_CREATE_4M_STRING:
        case F_QUERY_4M_STRING_FILTER: {
            size_t n = FRAME_MAX - 128;
            char *s = malloc(n);
            memset(s, 'a', n);
            if (k == F_CREATE_4M_STRING) {
                pk_head(&pk, "nvmet.subsys.create", 1);
                msgpack_pack_map(&pk, 1);
                pk_str(&pk, "name");
                msgpack_pack_str_with_body(&pk, s, n);
            } else {
                pk_head(&pk, "nvmet.subsys.query", 2);
                msgpack_pack_array(&pk, 1);
                msgpack_pack_array(&pk, 3);
                pk_str(&pk, "name");
                pk_str(&pk, "~");
                msgpack_pack_str_with_body(&pk, s, n);
                msgpack_pack_map(&pk, 0);
            }
            free(s);
            break;
        }
        case F_QUERY_IN_LIST:
            pk_head(&pk, "nvmet.host.query", 2);
            msgpack_pack_array(&pk, 1);
            msgpack_pack_array(&pk, 3);
            pk_str(&pk, "id");
            pk_str(&pk, "in");
            msgpack_pack_array(&pk, 1000000);
            for (int i = 0; i < 1000000; i++) {
                msgpack_pack_int(&pk, 2 + i % 100);
            }
            msgpack_pack_map(&pk, 0);
            break;
        case F_QUERY_SELECT_MANY:
            pk_head(&pk, "nvmet.host.query", 2);
            msgpack_pack_array(&pk, 0);
            msgpack_pack_map(&pk, 1);
            pk_str(&pk, "select");
            msgpack_pack_array(&pk, 300000);
            for (int i = 0; i < 300000; i++) {
                pk_str(&pk, "hostnqn");
            }
            break;
        case F_NKINDS:
            break;
    }
}

struct stall {
    size_t bytes;
    long reply_ms; /* send finished -> reply (or close) */
    long stall_ms; /* the pinger's longest round trip */
    bool replied;  /* a reply came (else the server closed) */
    int64_t code;  /* the reply's error code, 0 = a result */
    size_t reason_len;
    size_t extra_len;
};

/* Send one worst frame on a fresh unix connection while the pinger runs. */
static struct stall measure(const struct h_node *n, enum frame_kind k, uint32_t keys)
{
    struct stall r = {0};
    msgpack_sbuffer sb;
    build_frame(k, keys, &sb);
    r.bytes = sb.size;
    assert_true(sb.size <= FRAME_MAX);
    struct pinger p;
    pinger_start(&p, n->sock);
    int fd = connect_unix(n->sock);
    assert_true(send_all(fd, sb.data, sb.size, 120000));
    long t0 = now_ms();
    struct reader rd = {0};
    bool eof;
    struct nv *m = read_msg(fd, &rd, 120000, &eof);
    r.reply_ms = now_ms() - t0;
    r.replied = m != NULL;
    if (m != NULL) {
        const struct nv *e = nv_at(m, 2);
        r.code = nv_is(e, NV_MAP) ? nv_get_int(e, "code", 0) : 0;
        const char *reason = nv_is(e, NV_MAP) ? nv_get_str(e, "reason") : NULL;
        r.reason_len = reason != NULL ? strlen(reason) : 0;
        r.extra_len = nv_is(e, NV_MAP) ? nv_len(nv_get(e, "extra")) : 0;
    }
    nv_free(m);
    free(rd.buf);
    close(fd);
    pinger_stop(&p);
    r.stall_ms = p.max_rtt_ms;
    assert_int_equal(p.lost, 0);
    msgpack_sbuffer_destroy(&sb);
    printf(
        "# %-45s %8zu bytes: %s after %5ld ms (code %ld, reason %zu chars, %zu extra), "
        "longest loop stall %ld ms\n",
        frame_names[k], r.bytes, r.replied ? "reply" : "closed", r.reply_ms, (long)r.code,
        r.reason_len, r.extra_len, r.stall_ms);
    return r;
}

/* ------------------------------------------------------------------ */
/* tests */

/* D4: a query whose options hold 120,000 unknown keys (a 1.2 MB frame)
 * is answered with a capped validation error in milliseconds, and no
 * other worst frame stalls the loop past the bound either. */
static void test_worst_frames_do_not_stall(void **state)
{
    struct fx *f = *state;
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(&f->n, "nvmet.host.create",
                          "[{\"hostnqn\": \"nqn.2024-01.com.example:host:stall\"}]", &e);
    assert_non_null(r);
    nv_free(r);
    /* NVMET_STALL_ONLY=K measures one frame kind, NVMET_STALL_KEYS=N sizes
     * the unknown-key maps, NVMET_STALL_REPORT=1 only prints (to measure
     * a build that does not meet the bound). */
    const char *only = getenv("NVMET_STALL_ONLY");
    bool report = getenv("NVMET_STALL_REPORT") != NULL;
    const char *keys_env = getenv("NVMET_STALL_KEYS");
    uint32_t keys = keys_env != NULL ? (uint32_t)strtoul(keys_env, NULL, 10) : 120000;
    long worst = 0;
    const char *worst_name = "";
    for (int k = 0; k < F_NKINDS; k++) {
        if (only != NULL && atoi(only) != k) {
            continue;
        }
        struct stall s = measure(&f->n, (enum frame_kind)k, keys);
        if (s.stall_ms > worst) {
            worst = s.stall_ms;
            worst_name = frame_names[k];
        }
        if (report) {
            continue;
        }
        if (k == F_QUERY_OPTIONS_KEYS && keys >= 120000) {
            /* the D4 frame: a validation error, capped */
            assert_true(s.replied);
            assert_int_equal(s.code, NV_E_INVALID_PARAMS);
            assert_true(s.reason_len < 4096);
            assert_true(s.extra_len <= 21);
            assert_true(s.reply_ms < STALL_BOUND_MS);
        }
        assert_true(s.stall_ms < STALL_BOUND_MS);
    }
    printf("# worst loop stall: %ld ms (%s)\n", worst, worst_name);
    /* the node still serves */
    r = h_call(&f->n, "core.ping", NULL, &e);
    assert_non_null(r);
    nv_free(r);
    nv_err_clear(&e);
}

/* A TCP connection to the node's RPC port from a loopback source address. */
static int connect_tcp_from(const struct h_node *n, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in b = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &b.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof b), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n->rpc_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* nvmetctl --url (TCP, logs in with the key) or --socket; exit status. */
static int ctl_status(const struct h_node *n, bool tcp, long *took)
{
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1:%d", n->rpc_port);
    long t0 = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 1);
        if (tcp) {
            if (n->rpc_plaintext) {
                execl(NVMETCTL_BIN, NVMETCTL_BIN, "--url", url, "--api-key-file", n->keyfile,
                      "--plaintext", "--timeout", "10", "call", "nvmet.global.config",
                      (char *)NULL);
            }
            execl(NVMETCTL_BIN, NVMETCTL_BIN, "--url", url, "--api-key-file", n->keyfile,
                  "--cacert", n->cacert, "--timeout", "10", "call", "nvmet.global.config",
                  (char *)NULL);
        } else {
            execl(NVMETCTL_BIN, NVMETCTL_BIN, "--socket", n->sock, "call", "nvmet.global.config",
                  (char *)NULL);
        }
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    *took = now_ms() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* D3 on the real daemon: 64 connections that never log in, from 4
 * addresses, kept busy with calls (every one answered NOT_AUTHENTICATED,
 * none extends the login deadline). nvmetctl over TCP (it logs in before
 * its call) and over the unix socket are still served. */
static void test_unauthenticated_flood(void **state)
{
    struct fx *f = *state;
    enum { N = 64 };
    int fd[N];
    struct reader rd[N];
    memset(rd, 0, sizeof rd);
    char src[32];
    for (int i = 0; i < N; i++) {
        snprintf(src, sizeof src, "127.0.0.%d", 2 + i / 16);
        fd[i] = connect_tcp_from(&f->n, src);
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pk_head(&pk, "core.ping", 0);
    long until = now_ms() + 1500;
    int rounds = 0;
    while (now_ms() < until) {
        for (int i = 0; i < N; i++) {
            bool eof;
            assert_true(send_all(fd[i], sb.data, sb.size, 3000));
            struct nv *m = read_msg(fd[i], &rd[i], 3000, &eof);
            assert_non_null(m);
            assert_int_equal(nv_get_int(nv_at(m, 2), "code", 0), NV_E_NOT_AUTHENTICATED);
            nv_free(m);
        }
        rounds++;
        usleep(100000);
    }
    long took;
    assert_int_equal(ctl_status(&f->n, true, &took), 0);
    printf(
        "# %d connections not logged in, busy (%d rounds of calls): nvmetctl --url served "
        "in %ld ms",
        N, rounds, took);
    assert_int_equal(ctl_status(&f->n, false, &took), 0);
    printf(", nvmetctl --socket in %ld ms\n", took);
    msgpack_sbuffer_destroy(&sb);
    for (int i = 0; i < N; i++) {
        close(fd[i]);
        free(rd[i].buf);
    }
}

/* D9: nvmetd refuses to start with a key file others can read (exit 1,
 * the path and mode in its message), starts once it is 0600, and refuses
 * TCP logins while the mode is loosened again. */
static void test_key_file_mode(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    assert_int_equal(chmod(n.keyfile, 0644), 0);
    fprintf(stderr, "(a start failure is expected here)\n");
    assert_int_equal(h_node_start(&n, NULL), -1);
    char *log = h_read(n.log);
    assert_non_null(log);
    assert_non_null(strstr(log, n.keyfile));
    assert_non_null(strstr(log, "has mode 0644"));
    free(log);
    assert_int_equal(chmod(n.keyfile, 0600), 0);
    assert_int_equal(h_node_start(&n, NULL), 0);
    long took;
    assert_int_equal(ctl_status(&n, true, &took), 0);
    assert_int_equal(chmod(n.keyfile, 0604), 0);
    assert_true(ctl_status(&n, true, &took) != 0);
    assert_int_equal(ctl_status(&n, false, &took), 0); /* the unix socket needs no key */
    assert_int_equal(chmod(n.keyfile, 0400), 0);
    assert_int_equal(ctl_status(&n, true, &took), 0);
    h_node_kill(&n, SIGTERM);
    assert_int_equal(h_node_wait(&n), 0);
    log = h_read(n.log);
    assert_non_null(strstr(log, "login refused: API key file"));
    assert_non_null(strstr(log, "has mode 0604"));
    free(log);
    h_rmrf(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_worst_frames_do_not_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unauthenticated_flood, setup, teardown),
        cmocka_unit_test(test_key_file_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
