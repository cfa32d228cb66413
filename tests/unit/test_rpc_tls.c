/* rpc over TLS: the server's TLS listener and the clients (async,
 * rpc_call_sync), with certificates made by the openssl command at test
 * start, over real TCP on loopback. The server runs on its own loop in a
 * thread; the test thread talks to it through sockets only: the rpc
 * clients, and a hand-driven OpenSSL client (memory BIOs over a blocking
 * socket) that controls how records and segments are cut. Every wait is
 * bounded. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <msgpack.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "test_certs.h"

#define KEY "tls-test-key"

static char dir[64]; /* certificates and the API key */
static char keyfile[128];

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static const char *path(const char *name)
{
    static char buf[8][160];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
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

/* ------------------------------------------------------------------ */
/* the server thread */

struct srv {
    char tcp[64];
    char sock[100];
    int port;
    struct rpc_server_config cfg;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    struct rpc_server *s;
    int start_rv;
    char errmsg[512];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
};

static void m_echo(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)ctx;
    rpc_reply(call, nv_copy(params));
}

/* test.big [n]: a string of n bytes */
static void m_big(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)ctx;
    size_t n = (size_t)nv_at(params, 0)->u.i;
    char *s = malloc(n + 1);
    memset(s, 'b', n);
    s[n] = '\0';
    rpc_reply(call, nv_str(s));
    free(s);
}

static void m_stats(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)params;
    struct srv *sv = ctx;
    struct rpc_server_stats st;
    rpc_server_get_stats(sv->s, &st);
    struct nv *m = nv_map();
    nv_set_int(m, "conns", st.conns);
    nv_set_int(m, "calls_total", (int64_t)st.calls_total);
    nv_set_int(m, "unauth_conns", st.unauth_conns);
    rpc_reply(call, m);
}

static void server_closed(void *arg)
{
    struct srv *sv = arg;
    sv->s = NULL;
}

static void stop_cb(uv_async_t *a)
{
    struct srv *sv = a->data;
    rpc_server_close(sv->s, server_closed, sv);
    uv_close((uv_handle_t *)a, NULL);
}

static void *server_main(void *arg)
{
    struct srv *sv = arg;
    uv_loop_init(&sv->loop);
    uv_async_init(&sv->loop, &sv->stop, stop_cb);
    sv->stop.data = sv;
    int rv = rpc_server_start(&sv->loop, &sv->cfg, &sv->s, sv->errmsg, sizeof sv->errmsg);
    if (rv == 0) {
        rpc_server_register(sv->s, "test.echo", m_echo, sv, 0);
        rpc_server_register(sv->s, "test.big", m_big, sv, 0);
        rpc_server_register(sv->s, "test.stats", m_stats, sv, 0);
    }
    pthread_mutex_lock(&sv->mu);
    sv->start_rv = rv;
    sv->ready = true;
    pthread_cond_signal(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    if (rv < 0) {
        uv_close((uv_handle_t *)&sv->stop, NULL);
    }
    uv_run(&sv->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&sv->loop) != 0) {
        fprintf(stderr, "server loop closed with handles open\n");
        abort();
    }
    return NULL;
}

/* A TLS server with the certificate cert (from "ca"); client_certs:
 * clients need one signed by "ca". */
static struct srv *srv_start_cert(const char *cert, bool client_certs, unsigned login_timeout_ms)
{
    struct srv *sv = calloc(1, sizeof *sv);
    sv->port = free_port();
    snprintf(sv->tcp, sizeof sv->tcp, "127.0.0.1:%d", sv->port);
    snprintf(sv->sock, sizeof sv->sock, "%s/s.sock", dir);
    char key[64];
    snprintf(key, sizeof key, "%s.key", cert);
    char pem[64];
    snprintf(pem, sizeof pem, "%s.pem", cert);
    sv->cfg.unix_path = sv->sock;
    sv->cfg.tcp_addr = sv->tcp;
    sv->cfg.api_key_file = keyfile;
    sv->cfg.tls_cert_file = path(pem);
    sv->cfg.tls_key_file = path(key);
    sv->cfg.tls_ca_file = client_certs ? path("ca.pem") : NULL;
    sv->cfg.tls_client_certs = client_certs;
    sv->cfg.login_timeout_ms = login_timeout_ms;
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    pthread_create(&sv->thread, NULL, server_main, sv);
    pthread_mutex_lock(&sv->mu);
    while (!sv->ready) {
        pthread_cond_wait(&sv->cv, &sv->mu);
    }
    pthread_mutex_unlock(&sv->mu);
    if (sv->start_rv != 0) {
        fprintf(stderr, "server start: %s\n", sv->errmsg);
    }
    assert_int_equal(sv->start_rv, 0);
    return sv;
}

/* The certificate "server" names 127.0.0.1 and localhost. */
static struct srv *srv_start(bool client_certs, unsigned login_timeout_ms)
{
    return srv_start_cert("server", client_certs, login_timeout_ms);
}

static void srv_stop(struct srv *sv)
{
    uv_async_send(&sv->stop);
    pthread_join(sv->thread, NULL);
    assert_null(sv->s);
    free(sv);
}

/* ------------------------------------------------------------------ */
/* helpers */

static struct rpc_tls_opts trust; /* the test CA (set up in setup) */

/* a counter of successful replies */
static void count_ok(void *arg, int status, const struct nv *r, const struct nv_err *er)
{
    (void)r;
    assert_int_equal(status, 0);
    assert_null(er);
    (*(int *)arg)++;
}

struct res_wait {
    bool done;
    int status;
    char why[300];
};

static void on_res(void *arg, int status, const struct nv *r, const struct nv_err *er)
{
    (void)r;
    struct res_wait *w = arg;
    w->done = true;
    w->status = status;
    char *why = er != NULL ? nv_err_reason(er) : NULL;
    snprintf(w->why, sizeof w->why, "%s", why != NULL ? why : "");
    free(why);
}

/* rpc_call_sync over TCP with a login: the status, *res or err filled. */
static int call_tls(const struct srv *sv, const struct rpc_tls_opts *tls, const char *method,
                    struct nv *params, struct nv **res, struct nv_err *e)
{
    struct rpc_sync_opts o = {.api_key = KEY, .msgid = -1, .timeout_ms = 5000, .tls = tls};
    nv_err_init(e);
    *res = NULL;
    return rpc_call_sync(sv->tcp, method, params, &o, res, e);
}

static struct nv *args1(struct nv *a)
{
    struct nv *p = nv_arr();
    nv_push(p, a);
    return p;
}

static char *reason(const struct nv_err *e)
{
    char *r = nv_err_reason(e);
    return r != NULL ? r : strdup("");
}

/* The call fails with status, and its reason mentions want. */
static void expect_fail(const struct srv *sv, const struct rpc_tls_opts *tls, int status,
                        const char *want)
{
    struct nv *res;
    struct nv_err e;
    long t0 = now_ms();
    int rv = call_tls(sv, tls, "test.echo", args1(nv_int(1)), &res, &e);
    char *r = reason(&e);
    printf("# %d in %ld ms: %s\n", rv, now_ms() - t0, r);
    assert_int_equal(rv, status);
    assert_null(res);
    if (want != NULL) {
        assert_non_null(strstr(r, want));
    }
    free(r);
    nv_err_clear(&e);
    /* refused at once, not after the call's timeout */
    assert_true(now_ms() - t0 < 3000);
}

static int stat_int(const struct srv *sv, const char *name)
{
    struct nv *res = NULL;
    struct nv_err e;
    nv_err_init(&e);
    char ep[140];
    snprintf(ep, sizeof ep, "unix:%s", sv->sock);
    struct rpc_sync_opts o = {.msgid = -1, .timeout_ms = 5000};
    assert_int_equal(rpc_call_sync(ep, "test.stats", nv_arr(), &o, &res, &e), 0);
    int v = (int)nv_get_int(res, name, -1);
    nv_free(res);
    return v;
}

/* ------------------------------------------------------------------ */
/* a hand-driven TLS client: memory BIOs over a blocking socket */

struct tcli {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    msgpack_unpacker up;
    int replies;
};

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void tcli_open(struct tcli *t, int port)
{
    memset(t, 0, sizeof *t);
    t->fd = tcp_connect(port);
    t->ctx = SSL_CTX_new(TLS_client_method());
    assert_int_equal(SSL_CTX_load_verify_locations(t->ctx, path("ca.pem"), NULL), 1);
    t->ssl = SSL_new(t->ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(t->ssl, rb, wb);
    SSL_set_connect_state(t->ssl);
    SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
    msgpack_unpacker_init(&t->up, 1 << 16);
}

static void tcli_close(struct tcli *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    msgpack_unpacker_destroy(&t->up);
    close(t->fd);
}

/* Send what TLS wrote, in pieces of at most cut bytes (0 = at once). */
static void tcli_flush(struct tcli *t, size_t cut)
{
    BIO *wb = SSL_get_wbio(t->ssl);
    char buf[1 << 16];
    int n;
    while ((n = BIO_read(wb, buf, sizeof buf)) > 0) {
        for (size_t off = 0; off < (size_t)n;) {
            size_t len = cut != 0 && (size_t)n - off > cut ? cut : (size_t)n - off;
            ssize_t w = send(t->fd, buf + off, len, MSG_NOSIGNAL);
            assert_true(w > 0);
            off += (size_t)w;
        }
    }
}

/* Read from the socket into TLS: bytes read, 0 at EOF, -1 after
 * timeout_ms without any. */
static int tcli_recv(struct tcli *t, int timeout_ms)
{
    struct pollfd p = {.fd = t->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0) {
        return -1;
    }
    char buf[1 << 16];
    ssize_t n = recv(t->fd, buf, sizeof buf, 0);
    if (n <= 0) {
        return 0;
    }
    BIO_write(SSL_get_rbio(t->ssl), buf, (int)n);
    return (int)n;
}

/* Handshake, its bytes sent in pieces of cut. */
static void tcli_handshake(struct tcli *t, size_t cut)
{
    long deadline = now_ms() + 5000;
    while (now_ms() < deadline) {
        int r = SSL_do_handshake(t->ssl);
        tcli_flush(t, cut);
        if (r == 1) {
            return;
        }
        assert_int_equal(SSL_get_error(t->ssl, r), SSL_ERROR_WANT_READ);
        assert_true(tcli_recv(t, 2000) > 0);
    }
    fail_msg("handshake did not finish");
}

/* One request [0, msgid, method, params] packed. */
static size_t pack_request(char **out, int64_t msgid, const char *method, struct nv *params)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int64(&pk, msgid);
    msgpack_pack_str(&pk, strlen(method));
    msgpack_pack_str_body(&pk, method, strlen(method));
    nv_pack(&pk, params);
    nv_free(params);
    size_t n = sb.size;
    *out = msgpack_sbuffer_release(&sb);
    return n;
}

/* Encrypt p in records of at most rec bytes (0 = one SSL_write). */
static void tcli_write(struct tcli *t, const char *p, size_t n, size_t rec)
{
    for (size_t off = 0; off < n;) {
        size_t len = rec != 0 && n - off > rec ? rec : n - off;
        assert_int_equal(SSL_write(t->ssl, p + off, (int)len), (int)len);
        off += len;
    }
}

/* Decrypt what was received and count the complete replies; *last gets
 * the last reply's result when it is a string (its length) or an int. */
static void tcli_take(struct tcli *t, int64_t *last)
{
    char buf[1 << 16];
    int n;
    while ((n = SSL_read(t->ssl, buf, sizeof buf)) > 0) {
        msgpack_unpacker_reserve_buffer(&t->up, (size_t)n);
        memcpy(msgpack_unpacker_buffer(&t->up), buf, (size_t)n);
        msgpack_unpacker_buffer_consumed(&t->up, (size_t)n);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        while (msgpack_unpacker_next(&t->up, &u) == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *o = &u.data;
            assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
            assert_int_equal(o->via.array.size, 4);
            assert_int_equal(o->via.array.ptr[2].type, MSGPACK_OBJECT_NIL); /* no error */
            const msgpack_object *r = &o->via.array.ptr[3];
            if (last != NULL) {
                *last = r->type == MSGPACK_OBJECT_STR                ? (int64_t)r->via.str.size
                        : r->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)r->via.u64
                                                                     : -1;
            }
            t->replies++;
        }
        msgpack_unpacked_destroy(&u);
    }
}

/* Wait (bounded) until want replies arrived. */
static void tcli_wait_replies(struct tcli *t, int want, int64_t *last)
{
    long deadline = now_ms() + 10000;
    tcli_take(t, last);
    while (t->replies < want && now_ms() < deadline) {
        if (tcli_recv(t, 1000) == 0) {
            break;
        }
        tcli_take(t, last);
    }
    assert_int_equal(t->replies, want);
}

static void tcli_login(struct tcli *t, size_t rec, size_t cut)
{
    char *req;
    size_t n = pack_request(&req, 1, "auth.login_with_api_key", args1(nv_str(KEY)));
    tcli_write(t, req, n, rec);
    tcli_flush(t, cut);
    free(req);
    tcli_wait_replies(t, 1, NULL);
    t->replies = 0;
}

/* ------------------------------------------------------------------ */
/* tests */

/* Logins and calls over TLS, with the async client and rpc_call_sync;
 * the unix socket next to it stays plaintext. */
static void test_tls_calls(void **state)
{
    (void)state;
    struct srv *sv = srv_start(false, 0);
    struct nv *res;
    struct nv_err e;
    assert_int_equal(call_tls(sv, &trust, "test.echo", args1(nv_str("hi")), &res, &e), 0);
    assert_string_equal(nv_at(res, 0)->u.s.p, "hi");
    nv_free(res);
    /* a frame far larger than one TLS record (16 KiB) both ways */
    assert_int_equal(call_tls(sv, &trust, "test.big", args1(nv_int(3 << 20)), &res, &e), 0);
    assert_int_equal(res->u.s.len, 3u << 20);
    nv_free(res);
    char *big = malloc(1 << 20);
    memset(big, 'x', 1 << 20);
    big[(1 << 20) - 1] = '\0';
    assert_int_equal(call_tls(sv, &trust, "test.echo", args1(nv_str(big)), &res, &e), 0);
    assert_string_equal(nv_at(res, 0)->u.s.p, big);
    nv_free(res);
    free(big);

    /* the async client: pipelined calls on one connection */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rpc_client *c;
    assert_int_equal(rpc_client_open(&loop, sv->tcp, &trust, &c), 0);
    rpc_client_login(c, KEY);
    int got = 0;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(rpc_client_call(c, "test.echo", args1(nv_int(i)), -1, count_ok, &got), 0);
    }
    long deadline = now_ms() + 5000;
    while (got < 50 && now_ms() < deadline) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(got, 50);
    rpc_client_close(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* the unix socket: plaintext, no login */
    char ep[140];
    snprintf(ep, sizeof ep, "unix:%s", sv->sock);
    struct rpc_sync_opts o = {.msgid = -1, .timeout_ms = 5000};
    nv_err_init(&e);
    assert_int_equal(rpc_call_sync(ep, "test.echo", args1(nv_int(7)), &o, &res, &e), 0);
    nv_free(res);
    srv_stop(sv);
}

/* Frames cut at every byte into records, a large frame in many small
 * records, and the handshake and ciphertext dribbled over TCP in tiny
 * segments: the server reassembles them all. */
static void test_record_boundaries(void **state)
{
    (void)state;
    struct srv *sv = srv_start(false, 0);
    struct tcli t;
    tcli_open(&t, sv->port);
    tcli_handshake(&t, 7); /* handshake bytes in 7-byte segments */
    tcli_login(&t, 1, 3);  /* the login: one record per byte */
    /* one request cut into two records at every position */
    char *req;
    size_t n = pack_request(&req, 2, "test.echo", args1(nv_str("boundary-check-0123456789")));
    for (size_t cut = 1; cut < n; cut++) {
        tcli_write(&t, req, cut, 0);
        tcli_write(&t, req + cut, n - cut, 0);
        tcli_flush(&t, 0);
    }
    free(req);
    tcli_wait_replies(&t, (int)n - 1, NULL);
    /* 200 KiB in records of 1000 bytes, ciphertext in 1500-byte pieces */
    char *s = malloc(200 << 10);
    memset(s, 'q', 200 << 10);
    s[(200 << 10) - 1] = '\0';
    n = pack_request(&req, 3, "test.echo", args1(nv_str(s)));
    free(s);
    t.replies = 0;
    tcli_write(&t, req, n, 1000);
    tcli_flush(&t, 1500);
    free(req);
    tcli_wait_replies(&t, 1, NULL);
    tcli_close(&t);
    srv_stop(sv);
}

/* A client that sends calls with large replies and does not read stops
 * being read (its replies queue up on the server, bounded); once it
 * reads, everything arrives. */
static void test_backpressure(void **state)
{
    (void)state;
    struct srv *sv = srv_start(false, 0);
    struct tcli t;
    tcli_open(&t, sv->port);
    tcli_handshake(&t, 0);
    tcli_login(&t, 0, 0);
    int base = stat_int(sv, "calls_total");
    enum { CALLS = 48, REPLY = 1 << 20 };
    for (int i = 0; i < CALLS; i++) {
        char *req;
        size_t n = pack_request(&req, 100 + i, "test.big", args1(nv_int(REPLY)));
        tcli_write(&t, req, n, 0);
        free(req);
    }
    /* everything goes out: the requests are small */
    tcli_flush(&t, 0);
    /* not reading: the server stops once ~16 MiB of replies wait */
    usleep(1000000);
    int ran = stat_int(sv, "calls_total") - base - 1; /* (not the stats call) */
    printf("# %d of %d calls ran while the client did not read\n", ran, CALLS);
    assert_true(ran < CALLS);
    assert_true(ran >= 4);
    int64_t last = 0;
    tcli_wait_replies(&t, CALLS, &last);
    assert_int_equal(last, REPLY);
    tcli_close(&t);
    srv_stop(sv);
}

/* The server's certificate must chain to the client's CA and name the
 * address dialled; a failure says so and is final (-EPROTO). */
static void test_server_verification(void **state)
{
    (void)state;
    struct srv *sv = srv_start(false, 0);
    struct rpc_tls_opts other = {.ca_file = path("other.pem")};
    expect_fail(sv, &other, -EPROTO, "certificate verify failed");
    /* the system store does not know the test CA either */
    expect_fail(sv, NULL, -EPROTO, "certificate verify failed");
    srv_stop(sv);
    /* a certificate of the right CA for another address */
    sv = srv_start_cert("elsewhere", false, 0);
    expect_fail(sv, &trust, -EPROTO, "IP address mismatch");
    srv_stop(sv);
}

/* Client certificates required: one signed by the CA gets in; none, or
 * one from another CA, fails the handshake. */
static void test_client_certs(void **state)
{
    (void)state;
    struct srv *sv = srv_start(true, 0);
    struct rpc_tls_opts good = {
        .ca_file = path("ca.pem"), .cert_file = path("client.pem"), .key_file = path("client.key")};
    struct nv *res;
    struct nv_err e;
    assert_int_equal(call_tls(sv, &good, "test.echo", args1(nv_int(5)), &res, &e), 0);
    nv_free(res);
    expect_fail(sv, &trust, -EPROTO, "certificate required");
    struct rpc_tls_opts wrong = {.ca_file = path("ca.pem"),
                                 .cert_file = path("intruder.pem"),
                                 .key_file = path("intruder.key")};
    expect_fail(sv, &wrong, -EPROTO, "TLS");
    /* still serving */
    assert_int_equal(call_tls(sv, &good, "test.echo", args1(nv_int(6)), &res, &e), 0);
    nv_free(res);
    srv_stop(sv);
}

/* Plaintext on the TLS port is closed at once (the server keeps
 * serving); TLS on a plaintext port fails with a hint; a client that
 * stalls its handshake is closed at the login deadline. */
static void test_plaintext_mismatch(void **state)
{
    (void)state;
    struct srv *sv = srv_start(false, 400);
    struct rpc_tls_opts plain = {.plaintext = true};
    expect_fail(sv, &plain, -ECONNRESET, "does it require TLS");
    /* a raw plaintext frame: the connection is closed, not answered */
    int fd = tcp_connect(sv->port);
    const unsigned char ping[] = {0x94, 0x00, 0x01, 0xa9, 'c', 'o', 'r',
                                  'e',  '.',  'p',  'i',  'n', 'g', 0x90};
    assert_int_equal(send(fd, ping, sizeof ping, MSG_NOSIGNAL), (ssize_t)sizeof ping);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    char buf[64];
    assert_true(recv(fd, buf, sizeof buf, 0) <= 0);
    close(fd);
    /* a stalled handshake: half a ClientHello, then nothing */
    fd = tcp_connect(sv->port);
    const unsigned char half[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    assert_int_equal(send(fd, half, sizeof half, MSG_NOSIGNAL), (ssize_t)sizeof half);
    long t0 = now_ms();
    p.fd = fd;
    assert_int_equal(poll(&p, 1, 3000), 1);
    assert_true(recv(fd, buf, sizeof buf, 0) <= 0);
    long took = now_ms() - t0;
    printf("# stalled handshake closed after %ld ms\n", took);
    assert_true(took >= 300 && took < 2500);
    close(fd);
    struct nv *res;
    struct nv_err e;
    assert_int_equal(call_tls(sv, &trust, "test.echo", args1(nv_int(1)), &res, &e), 0);
    nv_free(res);
    srv_stop(sv);

    /* TLS towards a plaintext server */
    uv_loop_t loop;
    uv_loop_init(&loop);
    char tcp[64];
    snprintf(tcp, sizeof tcp, "127.0.0.1:%d", free_port());
    struct rpc_server_config cfg = {
        .tcp_addr = tcp, .api_key_file = keyfile, .tcp_plaintext = true};
    struct rpc_server *s = NULL;
    char msg[512];
    assert_int_equal(rpc_server_start(&loop, &cfg, &s, msg, sizeof msg), 0);
    struct rpc_client *c;
    assert_int_equal(rpc_client_open(&loop, tcp, &trust, &c), 0);
    struct res_wait r = {0};
    rpc_client_call(c, "core.ping", NULL, -1, on_res, &r);
    long deadline = now_ms() + 5000;
    while (!r.done && now_ms() < deadline) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    printf("# TLS to a plaintext port: %d %s\n", r.status, r.why);
    assert_int_equal(r.status, -EPROTO);
    assert_non_null(strstr(r.why, "does not speak TLS"));
    rpc_client_close(c);

    /* a peer that goes away during the handshake (a node stopping) is a
     * transport failure: the call never left, another try may succeed */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t ll = sizeof la;
    assert_int_equal(bind(lfd, (struct sockaddr *)&la, sizeof la), 0);
    assert_int_equal(listen(lfd, 4), 0);
    getsockname(lfd, (struct sockaddr *)&la, &ll);
    char gone[64];
    snprintf(gone, sizeof gone, "127.0.0.1:%d", ntohs(la.sin_port));
    assert_int_equal(rpc_client_open(&loop, gone, &trust, &c), 0);
    memset(&r, 0, sizeof r);
    rpc_client_call(c, "core.ping", NULL, -1, on_res, &r);
    struct pollfd lp = {.fd = lfd, .events = POLLIN};
    for (int i = 0; i < 100 && poll(&lp, 1, 0) == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    usleep(50000); /* the ClientHello arrives, unread: the close resets */
    close(afd);
    close(lfd);
    deadline = now_ms() + 5000;
    while (!r.done && now_ms() < deadline) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    printf("# the peer went away during the handshake: %d %s\n", r.status, r.why);
    assert_int_equal(r.status, -ECONNREFUSED);
    assert_non_null(strstr(r.why, "during the TLS handshake"));
    rpc_client_close(c);
    rpc_server_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void drain_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Start-time refusals, each with a message that says what to do: a TCP
 * listener without TLS or the plaintext switch, both, a certificate
 * without its key, client certificates without a CA, and private keys
 * others can read (server and client). */
static void test_config_refused(void **state)
{
    (void)state;
    char tcp[64];
    snprintf(tcp, sizeof tcp, "127.0.0.1:%d", free_port());
    struct {
        struct rpc_server_config cfg;
        const char *want;
    } cases[] = {
        {{.tcp_addr = tcp, .api_key_file = keyfile}, "needs TLS"},
        {{.tcp_addr = tcp,
          .api_key_file = keyfile,
          .tcp_plaintext = true,
          .tls_cert_file = path("server.pem"),
          .tls_key_file = path("server.key")},
         "both"},
        {{.tcp_addr = tcp, .api_key_file = keyfile, .tls_cert_file = path("server.pem")},
         "private key"},
        {{.tcp_addr = tcp,
          .api_key_file = keyfile,
          .tls_cert_file = path("server.pem"),
          .tls_key_file = path("server.key"),
          .tls_client_certs = true},
         "CA"},
        {{.tcp_addr = tcp,
          .api_key_file = keyfile,
          .tls_cert_file = path("server.pem"),
          .tls_key_file = path("client.key")},
         "does it belong"},
    };
    char msg[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct rpc_server *s = NULL;
        int rv = rpc_server_start(&loop, &cases[i].cfg, &s, msg, sizeof msg);
        printf("# %s\n", msg);
        assert_true(rv < 0);
        assert_null(s);
        assert_non_null(strstr(msg, cases[i].want));
        drain_loop(&loop);
    }
    /* key file modes */
    static const mode_t bad[] = {0644, 0640, 0604};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(chmod(path("server.key"), bad[i]), 0);
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct rpc_server_config cfg = {.tcp_addr = tcp,
                                        .api_key_file = keyfile,
                                        .tls_cert_file = path("server.pem"),
                                        .tls_key_file = path("server.key")};
        struct rpc_server *s = NULL;
        assert_int_equal(rpc_server_start(&loop, &cfg, &s, msg, sizeof msg), -EPERM);
        assert_non_null(strstr(msg, "server.key"));
        assert_non_null(strstr(msg, "chmod 600"));
        drain_loop(&loop);
        assert_int_equal(chmod(path("client.key"), bad[i]), 0);
        struct rpc_tls_opts o = {.ca_file = path("ca.pem"),
                                 .cert_file = path("client.pem"),
                                 .key_file = path("client.key")};
        assert_int_equal(rpc_tls_opts_check(&o, msg, sizeof msg), -EPERM);
        assert_non_null(strstr(msg, "client.key"));
    }
    assert_int_equal(chmod(path("server.key"), 0600), 0);
    assert_int_equal(chmod(path("client.key"), 0600), 0);
    /* a missing CA file, a certificate without its key */
    struct rpc_tls_opts o = {.ca_file = path("nope.pem")};
    assert_int_equal(rpc_tls_opts_check(&o, msg, sizeof msg), -EINVAL);
    assert_non_null(strstr(msg, "nope.pem"));
    o = (struct rpc_tls_opts){.cert_file = path("client.pem")};
    assert_int_equal(rpc_tls_opts_check(&o, msg, sizeof msg), -EINVAL);
    /* a client whose key file is too open hears why, without a crash */
    assert_int_equal(chmod(path("client.key"), 0644), 0);
    struct srv *sv = srv_start(false, 0);
    struct rpc_tls_opts loose = {
        .ca_file = path("ca.pem"), .cert_file = path("client.pem"), .key_file = path("client.key")};
    expect_fail(sv, &loose, -EPROTO, "chmod 600");
    srv_stop(sv);
    assert_int_equal(chmod(path("client.key"), 0600), 0);
}

/* ------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/rpctls-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(keyfile, sizeof keyfile, "%s/api.key", dir);
    FILE *f = fopen(keyfile, "w");
    fputs(KEY "\n", f);
    fclose(f);
    chmod(keyfile, 0600);
    if (tc_make_ca(dir, "ca") < 0 || tc_make_ca(dir, "other") < 0 ||
        tc_make_cert(dir, "ca", "server", "IP:127.0.0.1,DNS:localhost") < 0 ||
        tc_make_cert(dir, "ca", "elsewhere", "IP:127.0.0.2") < 0 ||
        tc_make_cert(dir, "ca", "client", "DNS:client.test") < 0 ||
        tc_make_cert(dir, "other", "intruder", "DNS:client.test") < 0) {
        return -1;
    }
    trust.ca_file = strdup(path("ca.pem"));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_calls),      cmocka_unit_test(test_record_boundaries),
        cmocka_unit_test(test_backpressure),   cmocka_unit_test(test_server_verification),
        cmocka_unit_test(test_client_certs),   cmocka_unit_test(test_plaintext_mismatch),
        cmocka_unit_test(test_config_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
