/* Unit tests of consensus/'s Raft transport (cons_tr.h): real libraft
 * nodes with data dirs on disk, real sockets on loopback (127.0.0.1 and
 * ::1), TLS with a PSK or with certificates made by the openssl CLI.
 *
 * Attacks run in a helper thread with blocking sockets while the main
 * thread runs the nodes' loop: the D1 packet (an AppendEntries whose batch
 * header announces more entries than its header holds) and a message
 * preamble announcing 2^63 bytes, in every mode; forged RequestVotes from
 * strangers; wrong PSK, wrong CA, a certificate for another node. After
 * each one the node must still lead in the same term and the transport's
 * counters must show where the connection was stopped. Every wait is
 * bounded. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "cons.h"
#include "cons_int.h" /* white-box: the transport's counters */
#include "cons_tr.h"

/* ------------------------------------------------------------------ */
/* files: secrets and certificates */

static char g_root[64]; /* per process: secrets, certificates */

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_root, name);
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fail_msg("command failed: %s", cmd);
    }
}

/* A CA (name) and a certificate for node id signed by it, as the README
 * shows: CN and DNS SAN nvmet-node-<id>, server and client use. */
static void make_ca(const char *name)
{
    run("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout %s.key -out %s.crt -days 2 -subj /CN=%s >/dev/null 2>&1 && chmod 600 %s.key",
        g_root, name, name, name, name);
}

static void make_cert(const char *ca, uint64_t id, const char *name)
{
    run("cd %s && printf 'subjectAltName=DNS:nvmet-node-%llu\\nextendedKeyUsage=serverAuth,"
        "clientAuth\\n' > %s.ext && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
        "-nodes -keyout %s.key -out %s.csr -subj /CN=nvmet-node-%llu >/dev/null 2>&1 && "
        "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -out %s.crt "
        "-days 2 -extfile %s.ext >/dev/null 2>&1 && chmod 600 %s.key",
        g_root, (unsigned long long)id, name, name, name, (unsigned long long)id, name, ca, ca,
        name, name, name);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/test_cons_tr.XXXXXX");
    if (mkdtemp(g_root) == NULL) {
        return -1;
    }
    char p[128];
    path_of(p, sizeof p, "psk");
    write_file(p, "8f4e2b7c9d1a3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b\n", 0600);
    path_of(p, sizeof p, "psk.wrong");
    write_file(p, "0000000000000000000000000000000000000000000000000000000000000001\n", 0600);
    make_ca("ca");
    make_ca("evilca");
    for (uint64_t id = 1; id <= 3; id++) {
        char name[16];
        snprintf(name, sizeof name, "n%llu", (unsigned long long)id);
        make_cert("ca", id, name);
    }
    make_cert("evilca", 2, "evil2");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nftw(g_root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ------------------------------------------------------------------ */
/* nodes on one loop */

struct tnode {
    struct cons_node *cons;
    uint64_t id;
    char addr[64];
    char dir[128];
    size_t applied;
    bool closed;
};

struct tctx {
    uv_loop_t loop;
    uv_timer_t tick;
    char root[64];
    struct tnode n[4];
};

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static struct tctx *ctx_new(void)
{
    struct tctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(uv_loop_init(&c->loop), 0);
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_start(&c->tick, tick_cb, 5, 5); /* the loop never blocks long */
    snprintf(c->root, sizeof c->root, "%s/run.XXXXXX", g_root);
    assert_non_null(mkdtemp(c->root));
    return c;
}

static void closed_cb(void *arg)
{
    ((struct tnode *)arg)->closed = true;
}

static void ctx_free(struct tctx *c)
{
    for (int i = 0; i < 4; i++) {
        if (c->n[i].cons != NULL) {
            cons_close(c->n[i].cons, closed_cb, &c->n[i]);
        }
    }
    uv_close((uv_handle_t *)&c->tick, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    nftw(c->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
}

static uint64_t now_ms(struct tctx *c)
{
    uv_update_time(&c->loop);
    return uv_now(&c->loop);
}

static int pick_port(int family)
{
    int fd = socket(family, SOCK_STREAM, 0);
    struct sockaddr_storage sa = {0};
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *s4;
    }
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                    : ((struct sockaddr_in *)&sa)->sin_port);
}

static void *t_apply(void *data, const void *buf, size_t len)
{
    (void)buf, (void)len;
    ((struct tnode *)data)->applied++;
    return NULL;
}
static void t_free(void *data, void *result)
{
    (void)data, (void)result;
}
static int t_snapshot(void *data, void **buf, size_t *len)
{
    (void)data;
    *buf = calloc(1, 8);
    *len = 8;
    return 0;
}
static int t_restore(void *data, const void *buf, size_t len)
{
    (void)data, (void)buf, (void)len;
    return 0;
}

enum sec { SEC_PSK, SEC_CERT, SEC_INSECURE };

static void sec_apply(struct cons_config *cc, enum sec sec, uint64_t id, char *buf, size_t len)
{
    /* buf holds 4 paths of len/4 bytes each */
    size_t q = len / 4;
    char *psk = buf, *ca = buf + q, *cert = buf + 2 * q, *key = buf + 3 * q;
    switch (sec) {
        case SEC_PSK:
            path_of(psk, q, "psk");
            cc->psk_file = psk;
            break;
        case SEC_CERT:
            path_of(ca, q, "ca.crt");
            snprintf(cert, q, "%s/n%llu.crt", g_root, (unsigned long long)id);
            snprintf(key, q, "%s/n%llu.key", g_root, (unsigned long long)id);
            cc->ca_file = ca;
            cc->cert_file = cert;
            cc->key_file = key;
            break;
        case SEC_INSECURE:
            cc->insecure = true;
            break;
    }
}

/* Start node i (id i+1) with the members peers[0..n). 0 or -errno. */
static int node_start(struct tctx *c, int i, const struct cons_peer *peers, size_t n, enum sec sec,
                      bool join, char *msg, size_t msglen)
{
    struct tnode *t = &c->n[i];
    t->id = (uint64_t)i + 1;
    snprintf(t->dir, sizeof t->dir, "%s/n%d", c->root, i + 1);
    char paths[4 * 128];
    struct cons_config cc = {.id = t->id,
                             .address = t->addr,
                             .data_dir = t->dir,
                             .peers = peers,
                             .n_peers = n,
                             .join = join,
                             .election_timeout_ms = 300,
                             .heartbeat_ms = 30,
                             .pre_vote = true};
    sec_apply(&cc, sec, t->id, paths, sizeof paths);
    struct cons_fsm f = {.apply = t_apply,
                         .free_result = t_free,
                         .snapshot = t_snapshot,
                         .restore = t_restore,
                         .data = t};
    return cons_start(&c->loop, &cc, &f, &t->cons, msg, msglen);
}

static int leader_of(struct tctx *c, int count)
{
    for (int i = 0; i < count; i++) {
        struct cons_status st;
        cons_get_status(c->n[i].cons, &st);
        if (st.state == CONS_LEADER && st.ready) {
            return i;
        }
    }
    return -1;
}

static int wait_leader(struct tctx *c, int count, unsigned ms)
{
    uint64_t end = now_ms(c) + ms;
    int l;
    while ((l = leader_of(c, count)) < 0 && now_ms(c) < end) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    return l;
}

static void run_for(struct tctx *c, unsigned ms)
{
    uint64_t end = now_ms(c) + ms;
    while (now_ms(c) < end) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
}

static void count_cb(void *arg, int status, void *result)
{
    (void)result;
    int *n = arg;
    if (status == 0) {
        (*n)++;
    }
}

/* Propose k commands through node l and wait until nodes [0, count)
 * applied at least want commands each. */
static void replicate(struct tctx *c, int l, int count, int k, size_t want)
{
    int done = 0;
    for (int i = 0; i < k; i++) {
        char cmd[16];
        snprintf(cmd, sizeof cmd, "cmd-%d", i);
        assert_int_equal(cons_propose(c->n[l].cons, cmd, strlen(cmd), count_cb, &done), 0);
    }
    uint64_t end = now_ms(c) + 8000;
    bool all = false;
    while (!all && now_ms(c) < end) {
        uv_run(&c->loop, UV_RUN_ONCE);
        all = done == k;
        for (int i = 0; i < count; i++) {
            all = all && c->n[i].applied >= want;
        }
    }
    for (int i = 0; i < count; i++) {
        if (c->n[i].applied < want) {
            fail_msg("node %d applied %zu of %zu", i + 1, c->n[i].applied, want);
        }
    }
    assert_int_equal(done, k);
}

/* An n-node cluster (ids 1..n, all voters) on 127.0.0.1 or ::1. */
static void cluster(struct tctx *c, int n, enum sec sec, int family)
{
    struct cons_peer peers[4];
    for (int i = 0; i < n; i++) {
        int port = pick_port(family);
        snprintf(c->n[i].addr, sizeof c->n[i].addr,
                 family == AF_INET6 ? "[::1]:%d" : "127.0.0.1:%d", port);
        peers[i] = (struct cons_peer){.id = (uint64_t)i + 1, .role = CONS_ROLE_VOTER};
        snprintf(peers[i].address, sizeof peers[i].address, "%s", c->n[i].addr);
    }
    for (int i = 0; i < n; i++) {
        char msg[256];
        int rv = node_start(c, i, peers, (size_t)n, sec, false, msg, sizeof msg);
        if (rv != 0) {
            fail_msg("start node %d: %d %s", i + 1, rv, msg);
        }
    }
}

/* One voter (node 1, the leader) with node 2 a spare member that is not
 * running: id 2 is a member, 3 and 99 are strangers. */
static void lone_leader(struct tctx *c, enum sec sec)
{
    snprintf(c->n[0].addr, sizeof c->n[0].addr, "127.0.0.1:%d", pick_port(AF_INET));
    struct cons_peer peers[2] = {{.id = 1, .role = CONS_ROLE_VOTER},
                                 {.id = 2, .role = CONS_ROLE_SPARE}};
    snprintf(peers[0].address, sizeof peers[0].address, "%s", c->n[0].addr);
    snprintf(peers[1].address, sizeof peers[1].address, "127.0.0.1:%d", pick_port(AF_INET));
    char msg[256];
    int rv = node_start(c, 0, peers, 2, sec, false, msg, sizeof msg);
    if (rv != 0) {
        fail_msg("start: %d %s", rv, msg);
    }
    assert_int_equal(wait_leader(c, 1, 5000), 0);
}

static struct cons_tr_stats stats_of(struct tctx *c, int i)
{
    struct cons_tr_stats st;
    cons_tr_get_stats(&c->n[i].cons->transport, &st);
    return st;
}

static uint64_t term_of(struct tctx *c, int i)
{
    struct cons_status st;
    cons_get_status(c->n[i].cons, &st);
    return st.term;
}

static int port_of(const struct tnode *t)
{
    return atoi(strrchr(t->addr, ':') + 1);
}

/* ------------------------------------------------------------------ */
/* wire bytes */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

struct bytes {
    uint8_t b[4096];
    size_t n;
};

static void add64(struct bytes *b, uint64_t v)
{
    put64(b->b + b->n, v);
    b->n += 8;
}

static void add_handshake(struct bytes *b, uint64_t id)
{
    b->n += cons_wire_handshake_encode(id, "127.0.0.1:19999", b->b + b->n, sizeof b->b - b->n);
}

/* D1: AppendEntries, header 48 bytes, announcing n entries. */
static void add_d1(struct bytes *b, uint64_t n)
{
    add64(b, 1);
    add64(b, 48);
    add64(b, 0x7e3ec); /* term */
    add64(b, 1);       /* prev index */
    add64(b, 0);       /* prev term */
    add64(b, 1ull << 32);
    add64(b, n);
    for (int i = 0; i < 8; i++) {
        add64(b, 0);
    }
}

/* A preamble announcing 2^63 header bytes, then random bytes. */
static void add_huge(struct bytes *b)
{
    add64(b, 1);
    add64(b, 1ull << 63);
    for (int i = 0; i < 256; i++) {
        b->b[b->n++] = (uint8_t)rand();
    }
}

/* RequestVote: term, candidate, last index, last term, flags (disrupt). */
static void add_vote(struct bytes *b, uint64_t term, uint64_t candidate)
{
    add64(b, 3);
    add64(b, 40);
    add64(b, term);
    add64(b, candidate);
    add64(b, 0);
    add64(b, 0);
    add64(b, 1);
}

/* ------------------------------------------------------------------ */
/* the attacker: a thread with blocking sockets */

struct atk {
    int family;
    int port;
    struct cons_tls *tls; /* NULL: plaintext */
    uint64_t target;
    bool no_verify; /* do not check the node's certificate */
    struct bytes send;
    int wait_ms; /* how long to wait for the node to close */
    /* results */
    bool connected;
    bool tls_done; /* our side of the TLS handshake completed */
    bool closed;   /* the node closed the connection within wait_ms */
    atomic_int done;
};

static int atk_connect(struct atk *a)
{
    int fd = socket(a->family, SOCK_STREAM, 0);
    struct sockaddr_storage sa = {0};
    socklen_t len;
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons((uint16_t)a->port);
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons((uint16_t)a->port);
        len = sizeof *s4;
    }
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    struct timeval tv = {.tv_sec = a->wait_ms / 1000, .tv_usec = (a->wait_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p = (const uint8_t *)p + w;
        n -= (size_t)w;
    }
    return true;
}

/* Whatever TLS has for the network, onto fd. */
static bool tls_flush(SSL *ssl, int fd)
{
    uint8_t buf[16384];
    int n;
    while ((n = BIO_read(SSL_get_wbio(ssl), buf, sizeof buf)) > 0) {
        if (!send_all(fd, buf, (size_t)n)) {
            return false;
        }
    }
    return true;
}

/* Read until the node closes (true) or wait_ms pass quietly (false). */
static bool wait_closed(int fd, SSL *ssl)
{
    uint8_t buf[16384];
    for (int i = 0; i < 1000; i++) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            return true;
        }
        if (r < 0 && errno != EINTR) {
            return false; /* timeout: still open */
        }
        if (r > 0 && ssl != NULL) {
            BIO_write(SSL_get_rbio(ssl), buf, (int)r);
            int n = SSL_read(ssl, buf, sizeof buf);
            if (n <= 0) {
                int e = SSL_get_error(ssl, n);
                if (e != SSL_ERROR_WANT_READ) {
                    return true; /* alert or close_notify */
                }
            }
        }
    }
    return false;
}

static void *atk_main(void *arg)
{
    struct atk *a = arg;
    int fd = atk_connect(a);
    SSL *ssl = NULL;
    if (fd < 0) {
        goto out;
    }
    a->connected = true;
    if (a->tls == NULL) {
        send_all(fd, a->send.b, a->send.n);
        a->closed = wait_closed(fd, NULL);
        goto out;
    }
    ssl = cons_tls_conn(a->tls, a->target);
    if (ssl != NULL && a->no_verify) {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    }
    for (int i = 0; i < 100 && ssl != NULL; i++) {
        int r = SSL_do_handshake(ssl);
        if (!tls_flush(ssl, fd)) {
            break;
        }
        if (r == 1) {
            a->tls_done = true;
            break;
        }
        if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) {
            break;
        }
        uint8_t buf[16384];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            break;
        }
        BIO_write(SSL_get_rbio(ssl), buf, (int)n);
    }
    if (!a->tls_done) {
        a->closed = true; /* refused during the handshake */
        goto out;
    }
    SSL_write(ssl, a->send.b, (int)a->send.n);
    tls_flush(ssl, fd);
    a->closed = wait_closed(fd, ssl);
out:
    SSL_free(ssl);
    if (fd >= 0) {
        close(fd);
    }
    atomic_store(&a->done, 1);
    return NULL;
}

/* Run the attack against node i while its loop runs. */
static void attack(struct tctx *c, int i, struct atk *a)
{
    if (a->family == 0) {
        a->family = AF_INET;
    }
    if (a->wait_ms == 0) {
        a->wait_ms = 2000;
    }
    a->port = port_of(&c->n[i]);
    atomic_store(&a->done, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, atk_main, a), 0);
    uint64_t end = now_ms(c) + 10000;
    while (!atomic_load(&a->done) && now_ms(c) < end) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    pthread_join(th, NULL);
    run_for(c, 50); /* let the node finish closing */
    assert_true(a->connected);
}

/* A client TLS context as node id, with the given secret or certificate. */
static struct cons_tls *client_tls(uint64_t id, const char *psk, const char *ca, const char *cert)
{
    char p1[128], p2[128], p3[128], p4[128];
    struct cons_tr_config cfg = {.id = id, .mode = psk ? CONS_TR_PSK : CONS_TR_CERT};
    if (psk != NULL) {
        path_of(p1, sizeof p1, psk);
        cfg.psk_file = p1;
    } else {
        snprintf(p2, sizeof p2, "%s/%s.crt", g_root, ca);
        snprintf(p3, sizeof p3, "%s/%s.crt", g_root, cert);
        snprintf(p4, sizeof p4, "%s/%s.key", g_root, cert);
        cfg.ca_file = p2;
        cfg.cert_file = p3;
        cfg.key_file = p4;
    }
    struct cons_tls *tls = NULL;
    char msg[256];
    if (cons_tls_new(&cfg, &tls, msg, sizeof msg) != 0) {
        fail_msg("client tls: %s", msg);
    }
    return tls;
}

/* The node still leads in the same term. */
static void still_leading(struct tctx *c, uint64_t term)
{
    run_for(c, 100);
    struct cons_status st;
    cons_get_status(c->n[0].cons, &st);
    assert_int_equal(st.state, CONS_LEADER);
    assert_true(st.ready);
    assert_int_equal(st.term, term);
}

/* ------------------------------------------------------------------ */
/* the frame checker alone */

struct sink {
    uint8_t b[8192];
    size_t n;
};

static void sink_out(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;
    assert_true(s->n + n <= sizeof s->b);
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static int feed(struct cons_wire *w, const struct bytes *b, struct sink *s, bool bytewise)
{
    if (!bytewise) {
        return cons_wire_feed(w, b->b, b->n, sink_out, s);
    }
    for (size_t i = 0; i < b->n; i++) {
        int rv = cons_wire_feed(w, b->b + i, 1, sink_out, s);
        if (rv < 0) {
            return rv;
        }
    }
    return 0;
}

/* A well-formed AppendEntries with two entries passes whole, fed at once
 * or byte by byte; then a RequestVote of the peer itself. */
static void test_wire_valid(void **state)
{
    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct bytes b = {0};
        add64(&b, 1);
        add64(&b, 48 + 32);
        add64(&b, 5), add64(&b, 9), add64(&b, 4), add64(&b, 9), add64(&b, 2);
        add64(&b, 5), add64(&b, 1ull | 16ull << 32); /* term 5, COMMAND, 16 bytes */
        add64(&b, 5), add64(&b, 2ull | 8ull << 32);  /* term 5, BARRIER, 8 bytes */
        add64(&b, 0);
        for (int i = 0; i < 24; i++) {
            b.b[b.n++] = (uint8_t)i;
        }
        add_vote(&b, 6, 7);
        struct cons_wire w;
        cons_wire_init(&w, 7);
        struct sink s = {.n = 0};
        assert_int_equal(feed(&w, &b, &s, bytewise), 0);
        assert_int_equal(s.n, b.n);
        assert_memory_equal(s.b, b.b, b.n);
        assert_int_equal(w.messages, 2);
        cons_wire_free(&w);
    }
}

/* The header buffer grows with the bytes received, not with the header
 * length a preamble announces: an InstallSnapshot preamble claiming the
 * largest header allowed, then 100 bytes of it, costs a few hundred
 * bytes; the whole message still passes once it has all arrived. */
static void test_wire_announced(void **state)
{
    (void)state;
    struct bytes b = {0};
    add64(&b, 5);
    add64(&b, CONS_WIRE_MAX_HEADER);
    memset(b.b + b.n, 0, 100);
    b.n += 100;
    struct cons_wire w;
    cons_wire_init(&w, 7);
    struct sink s = {.n = 0};
    assert_int_equal(feed(&w, &b, &s, false), 0);
    assert_int_equal(s.n, 0);
    assert_true(w.hdr_cap <= 256);
    cons_wire_free(&w);

    /* a RequestVote fed in two pieces grows as it arrives */
    struct bytes v = {0};
    add_vote(&v, 6, 7);
    cons_wire_init(&w, 7);
    assert_int_equal(cons_wire_feed(&w, v.b, 20, sink_out, &s), 0);
    assert_int_equal(cons_wire_feed(&w, v.b + 20, v.n - 20, sink_out, &s), 0);
    assert_int_equal(s.n, v.n);
    assert_memory_equal(s.b, v.b, v.n);
    assert_int_equal(w.messages, 1);
    cons_wire_free(&w);
}

static void expect_refused(struct bytes *b, uint64_t peer, const char *why_part)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct cons_wire w;
        cons_wire_init(&w, peer);
        w.max_payload = 1 << 20;
        struct sink s = {.n = 0};
        assert_int_equal(feed(&w, b, &s, bytewise), -EPROTO);
        if (strstr(w.why, why_part) == NULL) {
            fail_msg("refused for '%s', expected '%s'", w.why, why_part);
        }
        assert_int_equal(w.messages, 0);
        cons_wire_free(&w);
    }
}

/* Nothing of a bad message reaches libraft: the D1 header, a 2^63
 * preamble, unknown types, bad sizes, a vote for somebody else, a payload
 * above the cap, entries not a multiple of 8, a malformed configuration. */
static void test_wire_refused(void **state)
{
    (void)state;
    struct bytes b = {0};
    add_d1(&b, 3);
    expect_refused(&b, 2, "batch of 3 entries");
    b.n = 0;
    add_d1(&b, 0x3fd42359);
    expect_refused(&b, 2, "batch of");
    b.n = 0;
    add_huge(&b);
    expect_refused(&b, 2, "header of 9223372036854775808 bytes");
    b.n = 0;
    add64(&b, 7), add64(&b, 24);
    expect_refused(&b, 2, "unknown message type 7");
    b.n = 0;
    add64(&b, 2), add64(&b, 40); /* AppendEntriesResult is 24 bytes */
    expect_refused(&b, 2, "header of 40 bytes");
    b.n = 0;
    add_vote(&b, 1000000, 3);
    expect_refused(&b, 2, "RequestVote for candidate 3 from node 2");
    b.n = 0;
    add64(&b, 1), add64(&b, 64);
    add64(&b, 5), add64(&b, 9), add64(&b, 4), add64(&b, 9), add64(&b, 1);
    add64(&b, 5), add64(&b, 1ull | (0xfffffff8ull << 32));
    add64(&b, 0);
    expect_refused(&b, 2, "payload above");
    b.n = 0;
    add64(&b, 1), add64(&b, 64);
    add64(&b, 5), add64(&b, 9), add64(&b, 4), add64(&b, 9), add64(&b, 1);
    add64(&b, 5), add64(&b, 1ull | 12ull << 32);
    add64(&b, 0);
    expect_refused(&b, 2, "not a multiple of 8");
    b.n = 0;
    add64(&b, 1), add64(&b, 64);
    add64(&b, 5), add64(&b, 9), add64(&b, 4), add64(&b, 9), add64(&b, 1);
    add64(&b, 5), add64(&b, 9ull | 8ull << 32);
    add64(&b, 0);
    expect_refused(&b, 2, "unknown type 9");
    /* InstallSnapshot whose configuration claims 1000 servers in 16 bytes */
    b.n = 0;
    add64(&b, 5), add64(&b, 56 + 16);
    add64(&b, 5), add64(&b, 9), add64(&b, 4), add64(&b, 9), add64(&b, 16);
    b.b[b.n++] = 1;
    put64(b.b + b.n, 1000);
    b.n += 8;
    memset(b.b + b.n, 'a', 7);
    b.n += 7;
    add64(&b, 8), add64(&b, 0);
    expect_refused(&b, 2, "configuration of 1000 servers");
}

/* The connection handshake: ours parses back; bad ones are refused. */
static void test_wire_handshake(void **state)
{
    (void)state;
    uint8_t buf[300];
    size_t n = cons_wire_handshake_encode(42, "[::1]:7001", buf, sizeof buf);
    assert_int_equal(n, 24 + 16);
    struct cons_wire_hs h;
    cons_wire_hs_init(&h);
    size_t used = 0;
    const char *why = NULL;
    assert_int_equal(cons_wire_hs_feed(&h, buf, 10, &used, &why), 0);
    assert_int_equal(used, 10);
    assert_int_equal(cons_wire_hs_feed(&h, buf + 10, n - 10 + 5, &used, &why), 1);
    assert_int_equal(used, n - 10);
    assert_int_equal(h.id, 42);
    assert_string_equal(h.address, "[::1]:7001");
    /* protocol 2, then an address length of 2^40 */
    put64(buf, 2);
    cons_wire_hs_init(&h);
    assert_int_equal(cons_wire_hs_feed(&h, buf, n, &used, &why), -EPROTO);
    put64(buf, 1);
    put64(buf + 16, 1ull << 40);
    cons_wire_hs_init(&h);
    assert_int_equal(cons_wire_hs_feed(&h, buf, n, &used, &why), -EPROTO);
    /* an address without its NUL */
    put64(buf + 16, 8);
    memcpy(buf + 24, "12345678", 8);
    cons_wire_hs_init(&h);
    assert_int_equal(cons_wire_hs_feed(&h, buf, 32, &used, &why), -EPROTO);
    /* addresses */
    struct sockaddr_storage sa;
    socklen_t len;
    assert_int_equal(cons_parse_addr("127.0.0.1:7001", &sa, &len), 0);
    assert_int_equal(sa.ss_family, AF_INET);
    assert_int_equal(cons_parse_addr("[::1]:7001", &sa, &len), 0);
    assert_int_equal(sa.ss_family, AF_INET6);
    assert_int_equal(cons_parse_addr("[2001:db8::5]:1", &sa, &len), 0);
    assert_int_equal(cons_parse_addr("::1:7001", &sa, &len), -EINVAL);
    assert_int_equal(cons_parse_addr("[::1]7001", &sa, &len), -EINVAL);
    assert_int_equal(cons_parse_addr("[::1]:0", &sa, &len), -EINVAL);
    assert_int_equal(cons_parse_addr("[1.2.3.4]:5", &sa, &len), -EINVAL);
    assert_int_equal(cons_parse_addr("host:7001", &sa, &len), -EINVAL);
    assert_int_equal(cons_parse_addr("1.2.3.4:65536", &sa, &len), -EINVAL);
    assert_int_equal(cons_tls_parse_name("nvmet-node-12", 13), 12);
    assert_int_equal(cons_tls_parse_name("nvmet-node-012", 14), 0);
    assert_int_equal(cons_tls_parse_name("nvmet-node-1x", 13), 0);
    assert_int_equal(cons_tls_parse_name("nvmet-node-", 11), 0);
    /* every id has a name: up to UINT64_MAX, not one more */
    assert_true(cons_tls_parse_name("nvmet-node-18446744073709551615", 31) == UINT64_MAX);
    assert_true(cons_tls_parse_name("nvmet-node-18446744073709551610", 31) ==
                UINT64_MAX - 5);
    assert_int_equal(cons_tls_parse_name("nvmet-node-18446744073709551616", 31), 0);
    assert_int_equal(cons_tls_parse_name("nvmet-node-99999999999999999999", 31), 0);
}

/* ------------------------------------------------------------------ */
/* configuration errors */

static void expect_start_error(enum sec sec, void (*edit)(struct cons_config *), int err,
                               const char *text)
{
    struct tctx *c = ctx_new();
    snprintf(c->n[0].addr, sizeof c->n[0].addr, "127.0.0.1:%d", pick_port(AF_INET));
    char paths[4 * 128];
    struct cons_config cc = {.id = 1, .address = c->n[0].addr, .data_dir = c->root};
    sec_apply(&cc, sec, 1, paths, sizeof paths);
    if (edit != NULL) {
        edit(&cc);
    }
    struct cons_fsm f = {.apply = t_apply,
                         .snapshot = t_snapshot,
                         .restore = t_restore,
                         .free_result = t_free,
                         .data = &c->n[0]};
    char msg[512];
    int rv = cons_start(&c->loop, &cc, &f, &c->n[0].cons, msg, sizeof msg);
    if (rv != err || strstr(msg, text) == NULL) {
        fail_msg("cons_start: %d '%s', expected %d '%s'", rv, msg, err, text);
    }
    ctx_free(c);
}

static void no_security(struct cons_config *cc)
{
    cc->insecure = false;
}
static void psk_and_insecure(struct cons_config *cc)
{
    cc->insecure = true;
}
static void no_key(struct cons_config *cc)
{
    cc->key_file = NULL;
}
static void open_psk(struct cons_config *cc)
{
    static char p[128];
    path_of(p, sizeof p, "psk.open");
    write_file(p, "8f4e2b7c9d1a3e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b\n", 0640);
    cc->psk_file = p;
}
static void short_psk(struct cons_config *cc)
{
    static char p[128];
    path_of(p, sizeof p, "psk.short");
    write_file(p, "0123456789abcdef\n", 0600);
    cc->psk_file = p;
}
static void cert_of_2(struct cons_config *cc)
{
    static char p[2][128];
    path_of(p[0], sizeof p[0], "n2.crt");
    path_of(p[1], sizeof p[1], "n2.key");
    cc->cert_file = p[0];
    cc->key_file = p[1];
}
static void evil_ca(struct cons_config *cc)
{
    static char p[128];
    path_of(p, sizeof p, "evilca.crt");
    cc->ca_file = p;
}

/* No mode, two modes, an open or short secret, a partial or foreign
 * certificate setup: cons_start refuses with a clear message. */
static void test_config_errors(void **state)
{
    (void)state;
    expect_start_error(SEC_INSECURE, no_security, -EINVAL, "needs a cluster secret");
    expect_start_error(SEC_PSK, psk_and_insecure, -EINVAL, "takes one of");
    expect_start_error(SEC_CERT, no_key, -EINVAL, "needs the CA");
    expect_start_error(SEC_PSK, open_psk, -EPERM, "too open");
    expect_start_error(SEC_PSK, short_psk, -EINVAL, "at least 32");
    expect_start_error(SEC_CERT, cert_of_2, -EINVAL, "does not name this node");
    expect_start_error(SEC_CERT, evil_ca, -EINVAL, "not valid under CA");
}

/* ------------------------------------------------------------------ */
/* attacks */

/* D1 and the 2^63 preamble sent raw (a plaintext handshake first) to a
 * node in PSK and in certificate mode: TLS stops them; the node leads on
 * in the same term. */
static void d1_raw(enum sec sec)
{
    struct tctx *c = ctx_new();
    lone_leader(c, sec);
    uint64_t term = term_of(c, 0);
    struct atk a = {0};
    add_handshake(&a.send, 2);
    add_d1(&a.send, 3);
    attack(c, 0, &a);
    assert_true(a.closed);
    struct atk h = {0};
    add_handshake(&h.send, 2);
    add_huge(&h.send);
    attack(c, 0, &h);
    assert_true(h.closed);
    struct cons_tr_stats st = stats_of(c, 0);
    assert_int_equal(st.accepted, 0);
    assert_true(st.refused >= 2);
    still_leading(c, term);
    ctx_free(c);
}

static void test_d1_psk(void **state)
{
    (void)state;
    d1_raw(SEC_PSK);
}

static void test_d1_cert(void **state)
{
    (void)state;
    d1_raw(SEC_CERT);
}

/* --raft-insecure: the same bytes from a member id pass the handshake and
 * stop at the frame checker; a stranger id stops at the membership check;
 * a forged vote for another candidate stops at the checker. */
static void test_insecure_member(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    lone_leader(c, SEC_INSECURE);
    uint64_t term = term_of(c, 0);
    struct atk a = {0};
    add_handshake(&a.send, 2);
    add_d1(&a.send, 3);
    attack(c, 0, &a);
    assert_true(a.closed);
    struct cons_tr_stats st = stats_of(c, 0);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.dropped, 1);

    for (int i = 0; i < 3; i++) { /* random tails after the 2^63 preamble */
        struct atk h = {0};
        add_handshake(&h.send, 2);
        add_huge(&h.send);
        attack(c, 0, &h);
        assert_true(h.closed);
    }
    st = stats_of(c, 0);
    assert_int_equal(st.dropped, 4);

    struct atk v = {0};
    add_handshake(&v.send, 99);
    add_vote(&v.send, 1000000, 99);
    attack(c, 0, &v);
    assert_true(v.closed);
    struct atk v2 = {0};
    add_handshake(&v2.send, 2);
    add_vote(&v2.send, 1000000, 3);
    attack(c, 0, &v2);
    assert_true(v2.closed);
    st = stats_of(c, 0);
    assert_int_equal(st.accepted, 5);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.dropped, 5);
    still_leading(c, term);
    ctx_free(c);
}

/* PSK mode: a forged RequestVote (term 1,000,000) from strangers: the
 * wrong secret, the right secret with a non-member id, the right secret
 * with an identity that differs from the handshake's id. Then the right
 * secret as member 2 is accepted (the attack could have worked). */
static void test_vote_stranger_psk(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    lone_leader(c, SEC_PSK);
    uint64_t term = term_of(c, 0);

    struct atk a = {.tls = client_tls(2, "psk.wrong", NULL, NULL), .target = 1};
    add_handshake(&a.send, 2);
    add_vote(&a.send, 1000000, 2);
    attack(c, 0, &a);
    assert_false(a.tls_done);
    assert_true(a.closed);
    cons_tls_free(a.tls);

    struct atk s = {.tls = client_tls(99, "psk", NULL, NULL), .target = 1};
    add_handshake(&s.send, 99);
    add_vote(&s.send, 1000000, 99);
    attack(c, 0, &s);
    assert_true(s.tls_done);
    assert_true(s.closed);
    cons_tls_free(s.tls);

    struct atk m = {.tls = client_tls(3, "psk", NULL, NULL), .target = 1};
    add_handshake(&m.send, 2); /* identity nvmet-node-3, handshake says 2 */
    add_vote(&m.send, 1000000, 2);
    attack(c, 0, &m);
    assert_true(m.closed);
    cons_tls_free(m.tls);

    struct cons_tr_stats st = stats_of(c, 0);
    assert_int_equal(st.accepted, 0);
    assert_int_equal(st.refused, 3);
    still_leading(c, term);

    struct atk ok = {.tls = client_tls(2, "psk", NULL, NULL), .target = 1, .wait_ms = 500};
    add_handshake(&ok.send, 2);
    attack(c, 0, &ok);
    assert_true(ok.tls_done);
    assert_false(ok.closed);
    cons_tls_free(ok.tls);
    st = stats_of(c, 0);
    assert_int_equal(st.accepted, 1);
    still_leading(c, term);
    ctx_free(c);
}

/* Certificate mode: a certificate of another CA, and node 2's certificate
 * presented by a peer claiming id 3, are refused; node 2's certificate as
 * node 2 is accepted. */
static void test_cert_identity(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    lone_leader(c, SEC_CERT);
    uint64_t term = term_of(c, 0);

    /* evilca's certificate for node 2; this client does not check the
     * node's certificate, so only the node's check can stop it */
    struct atk e = {.tls = client_tls(2, NULL, "evilca", "evil2"), .target = 1, .no_verify = true};
    add_handshake(&e.send, 2);
    add_vote(&e.send, 1000000, 2);
    attack(c, 0, &e);
    assert_true(e.closed);
    cons_tls_free(e.tls);

    struct atk x = {.tls = client_tls(2, NULL, "ca", "n2"), .target = 1};
    add_handshake(&x.send, 3);
    add_vote(&x.send, 1000000, 3);
    attack(c, 0, &x);
    assert_true(x.tls_done);
    assert_true(x.closed);
    cons_tls_free(x.tls);

    struct cons_tr_stats st = stats_of(c, 0);
    assert_int_equal(st.accepted, 0);
    assert_int_equal(st.refused, 2);
    still_leading(c, term);

    struct atk ok = {.tls = client_tls(2, NULL, "ca", "n2"), .target = 1, .wait_ms = 500};
    add_handshake(&ok.send, 2);
    attack(c, 0, &ok);
    assert_true(ok.tls_done);
    assert_false(ok.closed);
    cons_tls_free(ok.tls);
    st = stats_of(c, 0);
    assert_int_equal(st.accepted, 1);
    still_leading(c, term);
    ctx_free(c);
}

/* ------------------------------------------------------------------ */
/* clusters */

static void three_nodes(enum sec sec, int family)
{
    struct tctx *c = ctx_new();
    cluster(c, 3, sec, family);
    int l = wait_leader(c, 3, 8000);
    assert_true(l >= 0);
    replicate(c, l, 3, 50, 50);
    /* the leader dials both followers, each follower answers on its own
     * connection; nothing was dropped */
    for (int i = 0; i < 3; i++) {
        struct cons_tr_stats st = stats_of(c, i);
        assert_true(st.connected >= (i == l ? 2u : 1u));
        assert_true(st.accepted >= (i == l ? 2u : 1u));
        assert_int_equal(st.dropped, 0);
    }
    ctx_free(c);
}

static void test_cluster_psk(void **state)
{
    (void)state;
    three_nodes(SEC_PSK, AF_INET);
}

static void test_cluster_cert(void **state)
{
    (void)state;
    three_nodes(SEC_CERT, AF_INET);
}

static void test_cluster_ipv6(void **state)
{
    (void)state;
    three_nodes(SEC_PSK, AF_INET6);
}

/* The add-member flow under PSK: node 3 starts empty (join), the leader
 * adds it and makes it a voter; it catches up through the leader's
 * connection (it has no configuration yet) and answers on its own. */
static void test_join_psk(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    cluster(c, 2, SEC_PSK, AF_INET);
    int l = wait_leader(c, 2, 8000);
    assert_true(l >= 0);
    replicate(c, l, 2, 10, 10);
    snprintf(c->n[2].addr, sizeof c->n[2].addr, "127.0.0.1:%d", pick_port(AF_INET));
    char msg[256];
    assert_int_equal(node_start(c, 2, NULL, 0, SEC_PSK, true, msg, sizeof msg), 0);
    int done = 0;
    assert_int_equal(cons_add(c->n[l].cons, 3, c->n[2].addr, count_cb, &done), 0);
    uint64_t end = now_ms(c) + 5000;
    while (done < 1 && now_ms(c) < end) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    assert_int_equal(done, 1);
    assert_int_equal(cons_assign(c->n[l].cons, 3, CONS_ROLE_VOTER, count_cb, &done), 0);
    end = now_ms(c) + 8000;
    while (done < 2 && now_ms(c) < end) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    assert_int_equal(done, 2);
    replicate(c, l, 3, 10, 20);
    ctx_free(c);
}

/* A node with the wrong secret cannot take part: the two others elect a
 * leader and replicate; it applies nothing. */
static void test_wrong_psk_node(void **state)
{
    (void)state;
    struct tctx *c = ctx_new();
    struct cons_peer peers[3];
    for (int i = 0; i < 3; i++) {
        snprintf(c->n[i].addr, sizeof c->n[i].addr, "127.0.0.1:%d", pick_port(AF_INET));
        peers[i] = (struct cons_peer){.id = (uint64_t)i + 1, .role = CONS_ROLE_VOTER};
        snprintf(peers[i].address, sizeof peers[i].address, "%s", c->n[i].addr);
    }
    char msg[256];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(node_start(c, i, peers, 3, SEC_PSK, false, msg, sizeof msg), 0);
    }
    /* node 3 with the other secret */
    struct tnode *t = &c->n[2];
    t->id = 3;
    snprintf(t->dir, sizeof t->dir, "%s/n3", c->root);
    char psk[128];
    path_of(psk, sizeof psk, "psk.wrong");
    struct cons_config cc = {.id = 3,
                             .address = t->addr,
                             .data_dir = t->dir,
                             .peers = peers,
                             .n_peers = 3,
                             .election_timeout_ms = 300,
                             .heartbeat_ms = 30,
                             .pre_vote = true,
                             .psk_file = psk};
    struct cons_fsm f = {.apply = t_apply,
                         .free_result = t_free,
                         .snapshot = t_snapshot,
                         .restore = t_restore,
                         .data = t};
    assert_int_equal(cons_start(&c->loop, &cc, &f, &t->cons, msg, sizeof msg), 0);
    int l = wait_leader(c, 3, 8000);
    assert_true(l == 0 || l == 1);
    replicate(c, l, 2, 20, 20);
    run_for(c, 500);
    assert_int_equal(c->n[2].applied, 0);
    assert_int_equal(stats_of(c, 2).accepted, 0);
    assert_int_equal(stats_of(c, 2).connected, 0);
    ctx_free(c);
}

int main(void)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_valid),      cmocka_unit_test(test_wire_refused),
        cmocka_unit_test(test_wire_handshake),  cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_d1_psk),          cmocka_unit_test(test_d1_cert),
        cmocka_unit_test(test_insecure_member), cmocka_unit_test(test_vote_stranger_psk),
        cmocka_unit_test(test_cert_identity),   cmocka_unit_test(test_cluster_psk),
        cmocka_unit_test(test_cluster_cert),    cmocka_unit_test(test_cluster_ipv6),
        cmocka_unit_test(test_join_psk),        cmocka_unit_test(test_wrong_psk_node),
        cmocka_unit_test(test_wire_announced),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
