/* API keys and roles: the key file format (hashes, the old one-key
 * format, bad lines named by number), and a real rpc server on loopback:
 * logins with hashed admin and readonly keys and with the cluster key,
 * the role check at dispatch (requests and notifications), auth.me, and
 * how long the event loop stalls while logins are checked. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <msgpack.h>
#include <uv.h>

#include "nv.h"
#include "nv_err.h"
#include "rpc.h"

/* These tests speak plaintext TCP; TLS is covered by test_rpc_tls. */
static const struct rpc_tls_opts PLAIN = {.plaintext = true};

/* PBKDF2-HMAC-SHA256("abc", salt, 10000), computed with Python's hashlib:
 * the format is checked against another implementation. */
#define KAT_LINE                                                         \
    "kat readonly pbkdf2-sha256$10000$dd183d9b3062584a16a1f8fffb4f176d$" \
    "1054e16812e8af7f7fc5d7a2fedb1c92da30aacf544a0d0c81916430e0f53a68"

static char dir[64];

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static char *keyfile(void)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/keys", dir);
    return p;
}

static int setup_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/rpckeys-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    unlink(keyfile());
    rmdir(dir);
    return 0;
}

/* A file line for key (name, role) at the lowest cost. */
static void line_for(const char *name, const char *role, const char *key, char *out, size_t len)
{
    char h[RPC_KEY_HASH_MAX];
    assert_int_equal(rpc_key_hash(key, strlen(key), 1000, h, sizeof h), 0);
    snprintf(out, len, "%s %s %s\n", name, role, h);
}

static void test_known_answer(void **state)
{
    (void)state;
    write_file(keyfile(), "# one key\n" KAT_LINE "\n", 0600);
    struct rpc_key_match m;
    char msg[256];
    assert_int_equal(rpc_keys_check(keyfile(), "abc", 3, &m, msg, sizeof msg), 1);
    assert_string_equal(m.name, "kat");
    assert_int_equal(m.role, RPC_ROLE_READONLY);
    assert_false(m.legacy);
    assert_int_equal(rpc_keys_check(keyfile(), "abd", 3, &m, msg, sizeof msg), 0);
    assert_int_equal(rpc_keys_check(keyfile(), "ab", 2, &m, msg, sizeof msg), 0);
    assert_int_equal(rpc_keys_check(keyfile(), "", 0, &m, msg, sizeof msg), 0);
}

static void test_hash_roundtrip(void **state)
{
    (void)state;
    char key[80], h1[RPC_KEY_HASH_MAX], h2[RPC_KEY_HASH_MAX];
    assert_int_equal(rpc_key_generate(key, sizeof key), 0);
    assert_int_equal(strlen(key), 64);
    assert_int_equal(rpc_key_hash(key, strlen(key), 0, h1, sizeof h1), 0);
    assert_int_equal(rpc_key_hash(key, strlen(key), 0, h2, sizeof h2), 0);
    assert_string_not_equal(h1, h2); /* a fresh salt each time */
    assert_non_null(strstr(h1, "pbkdf2-sha256$10000$"));
    assert_null(strstr(h1, key));
    assert_int_equal(rpc_key_hash(key, strlen(key), 999, h1, sizeof h1), -EINVAL);
    assert_int_equal(rpc_key_hash(key, 0, 0, h1, sizeof h1), -EINVAL);
    assert_int_equal(rpc_key_hash(key, strlen(key), 0, h1, 20), -ENOSPC);

    char text[1024], l1[300], l2[300];
    line_for("ops", "admin", "k-admin", l1, sizeof l1);
    line_for("mon", "readonly", "k-ro", l2, sizeof l2);
    snprintf(text, sizeof text, "\n# comment\n   # indented comment\n%s\t\n%s", l1, l2);
    write_file(keyfile(), text, 0600);
    struct rpc_key_match m;
    char msg[256];
    assert_int_equal(rpc_keys_check(keyfile(), "k-ro", 4, &m, msg, sizeof msg), 1);
    assert_string_equal(m.name, "mon");
    assert_int_equal(m.role, RPC_ROLE_READONLY);
    assert_int_equal(rpc_keys_check(keyfile(), "k-admin", 7, &m, msg, sizeof msg), 1);
    assert_string_equal(m.name, "ops");
    assert_int_equal(m.role, RPC_ROLE_ADMIN);
    size_t n;
    bool legacy;
    assert_int_equal(rpc_keys_validate(keyfile(), &n, &legacy, msg, sizeof msg), 0);
    assert_int_equal(n, 2);
    assert_false(legacy);
    char *bare = (char *)1;
    assert_int_equal(rpc_keys_legacy(keyfile(), &bare), 0);
    assert_null(bare);
}

/* tmpl with every "%s" replaced by h. */
static void subst(const char *tmpl, const char *h, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = tmpl; *p != '\0' && o + 1 < len; p++) {
        if (p[0] == '%' && p[1] == 's') {
            o += (size_t)snprintf(out + o, len - o, "%s", h);
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o < len ? o : len - 1] = '\0';
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const char hash[] =
        "pbkdf2-sha256$1000$000102030405060708090a0b0c0d0e0f$"
        "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f";
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"", "holds no key"},
        {"# only a comment\n\n", "holds no key"},
        {"a admin %s\nb readonly\n", "line 2: expected NAME ROLE HASH"},
        {"a admin %s x\n", "line 1: expected NAME ROLE HASH"},
        {"bare-key\nb admin %s\n", "line 1: expected NAME ROLE HASH"},
        {"a admin %s\n\n\nb root %s\n", "line 4: the role must be admin or readonly (\"root\")"},
        {"a/b admin %s\n", "line 1: the name must be 1 to 64 letters"},
        {"a admin %s\n# x\na readonly %s\n", "line 3: the name is already used on line 1 (\"a\")"},
        {"a admin md5$abc\n", "line 1: the hash must start with \"pbkdf2-sha256$\""},
        {"a admin pbkdf2-sha256$12$0011$00\n", "line 1: the iteration count must be between"},
        {"a admin pbkdf2-sha256$x$0011$00\n", "line 1: the iteration count after"},
        {"a admin pbkdf2-sha256$1000$0011$00\n", "line 1: the salt must be 32 hex digits"},
        {"a admin pbkdf2-sha256$1000$000102030405060708090a0b0c0d0e0f$00\n",
         "line 1: the derived key must be 64 hex digits"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        subst(cases[i].text, hash, text, sizeof text);
        write_file(keyfile(), text, 0600);
        size_t n;
        bool legacy;
        char msg[512] = "";
        int rv = rpc_keys_validate(keyfile(), &n, &legacy, msg, sizeof msg);
        if (rv != -EINVAL || strstr(msg, cases[i].want) == NULL || strstr(msg, keyfile()) == NULL) {
            fail_msg("case %zu: rv %d, message \"%s\", want \"%s\"", i, rv, msg, cases[i].want);
        }
        struct rpc_key_match m;
        assert_int_equal(rpc_keys_check(keyfile(), "x", 1, &m, msg, sizeof msg), -EINVAL);
    }
    /* access by group or others: refused, like ssh's private keys */
    char l1[300];
    line_for("ops", "admin", "k", l1, sizeof l1);
    write_file(keyfile(), l1, 0640);
    size_t n;
    bool legacy;
    char msg[512];
    assert_int_equal(rpc_keys_validate(keyfile(), &n, &legacy, msg, sizeof msg), -EPERM);
    assert_non_null(strstr(msg, "chmod 600"));
    assert_int_equal(rpc_keys_validate("/nonexistent/keys", &n, &legacy, msg, sizeof msg), -ENOENT);
}

static void test_legacy(void **state)
{
    (void)state;
    write_file(keyfile(), "  the-old-key \r\n\n# trailing comment\n", 0600);
    size_t n;
    bool legacy;
    char msg[256];
    assert_int_equal(rpc_keys_validate(keyfile(), &n, &legacy, msg, sizeof msg), 0);
    assert_true(legacy);
    assert_int_equal(n, 1);
    char *bare = NULL;
    assert_int_equal(rpc_keys_legacy(keyfile(), &bare), 0);
    assert_string_equal(bare, "the-old-key");
    free(bare);
    struct rpc_key_match m;
    assert_int_equal(rpc_keys_check(keyfile(), "the-old-key", 11, &m, msg, sizeof msg), 1);
    assert_string_equal(m.name, RPC_LEGACY_KEY_NAME);
    assert_int_equal(m.role, RPC_ROLE_ADMIN);
    assert_true(m.legacy);
    assert_int_equal(rpc_keys_check(keyfile(), "the-old-ke", 10, &m, msg, sizeof msg), 0);
    assert_int_equal(rpc_keys_check(keyfile(), "the-old-keyy", 12, &m, msg, sizeof msg), 0);
}

/* ------------------------------------------------------------------ */
/* a server on loopback */

#define CLUSTER_KEY "cluster-secret-0123456789"

struct srv {
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t tick;
    struct rpc_server *s;
    struct rpc_server_config cfg;
    char sock[128], tcp[64];
    int port;
    int start_rv;
    bool ready;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t last_tick, max_gap_ns; /* the loop's longest stall */
    int writes;                     /* t.write calls that ran */
};

static void m_read(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)params, (void)ctx;
    rpc_reply(call, nv_str("read"));
}

static void m_write(struct rpc_call *call, const struct nv *params, void *ctx)
{
    (void)params;
    struct srv *sv = ctx;
    __atomic_add_fetch(&sv->writes, 1, __ATOMIC_SEQ_CST);
    rpc_reply(call, nv_str("written"));
}

static const char *cluster_key(void *ctx)
{
    (void)ctx;
    return CLUSTER_KEY;
}

static void tick(uv_timer_t *t)
{
    struct srv *sv = t->data;
    uint64_t now = uv_hrtime();
    uint64_t gap = now - sv->last_tick;
    uint64_t max = __atomic_load_n(&sv->max_gap_ns, __ATOMIC_SEQ_CST);
    if (sv->last_tick != 0 && gap > max) {
        __atomic_store_n(&sv->max_gap_ns, gap, __ATOMIC_SEQ_CST);
    }
    sv->last_tick = now;
}

static void closed(void *arg)
{
    struct srv *sv = arg;
    sv->s = NULL;
}

static void stop_cb(uv_async_t *a)
{
    struct srv *sv = a->data;
    rpc_server_close(sv->s, closed, sv);
    uv_close((uv_handle_t *)&sv->tick, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *server_main(void *arg)
{
    struct srv *sv = arg;
    uv_loop_init(&sv->loop);
    uv_async_init(&sv->loop, &sv->stop, stop_cb);
    sv->stop.data = sv;
    uv_timer_init(&sv->loop, &sv->tick);
    sv->tick.data = sv;
    uv_timer_start(&sv->tick, tick, 1, 1);
    char msg[512];
    int rv = rpc_server_start(&sv->loop, &sv->cfg, &sv->s, msg, sizeof msg);
    if (rv == 0) {
        rpc_server_register(sv->s, "t.read", m_read, sv, RPC_M_READONLY);
        rpc_server_register(sv->s, "t.write", m_write, sv, 0);
    } else {
        fprintf(stderr, "server: %s\n", msg);
    }
    pthread_mutex_lock(&sv->mu);
    sv->start_rv = rv;
    sv->ready = true;
    pthread_cond_signal(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    if (rv < 0) {
        uv_close((uv_handle_t *)&sv->stop, NULL);
        uv_close((uv_handle_t *)&sv->tick, NULL);
    }
    uv_run(&sv->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&sv->loop), 0);
    return NULL;
}

static int free_port(void)
{
    uv_loop_t l;
    uv_loop_init(&l);
    uv_tcp_t t;
    uv_tcp_init(&l, &t);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&l, UV_RUN_DEFAULT);
    uv_loop_close(&l);
    return port;
}

static struct srv *srv_start(void)
{
    struct srv *sv = calloc(1, sizeof *sv);
    snprintf(sv->sock, sizeof sv->sock, "%s/s.sock", dir);
    sv->port = free_port();
    snprintf(sv->tcp, sizeof sv->tcp, "127.0.0.1:%d", sv->port);
    sv->cfg = (struct rpc_server_config){.unix_path = sv->sock,
                                         .tcp_addr = sv->tcp,
                                         .api_key_file = keyfile(),
                                         .cluster_key = cluster_key,
                                         .login_backoff_ms = 1,
                                         .tcp_plaintext = true};
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    pthread_create(&sv->thread, NULL, server_main, sv);
    pthread_mutex_lock(&sv->mu);
    while (!sv->ready) {
        pthread_cond_wait(&sv->cv, &sv->mu);
    }
    pthread_mutex_unlock(&sv->mu);
    assert_int_equal(sv->start_rv, 0);
    return sv;
}

static void srv_stop(struct srv *sv)
{
    uv_async_send(&sv->stop);
    pthread_join(sv->thread, NULL);
    assert_null(sv->s);
    free(sv);
}

static struct nv *call(struct srv *sv, const char *key, const char *method, struct nv_err *e)
{
    struct rpc_sync_opts o = {.tls = &PLAIN, .api_key = key, .msgid = -1, .timeout_ms = 20000};
    struct nv *res = NULL;
    nv_err_clear(e);
    return rpc_call_sync(sv->tcp, method, nv_arr(), &o, &res, e) == 0 ? res : NULL;
}

static void expect(struct srv *sv, const char *key, const char *method, const char *want)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *v = call(sv, key, method, &e);
    if (v == NULL || !nv_is(v, NV_STR) || strcmp(v->u.s.p, want) != 0) {
        fail_msg("%s: %s", method, e.reason ? e.reason : "unexpected answer");
    }
    nv_free(v);
}

static void expect_me(struct srv *sv, const char *key, const char *name, const char *role)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *v = call(sv, key, "auth.me", &e);
    assert_non_null(v);
    assert_string_equal(nv_get_str(v, "name"), name);
    assert_string_equal(nv_get_str(v, "role"), role);
    nv_free(v);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* On a raw TCP connection: log in with key, send the notification
 * [2, "t.write", []], then the request t.read; wait for the answers of
 * the login and of t.read (the notification ran in between, if at all). */
static void notify_write_as(struct srv *sv, const char *key)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)sv->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "auth.login_with_api_key");
    msgpack_pack_array(&pk, 1);
    pack_str(&pk, key);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 2);
    pack_str(&pk, "t.write");
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 2);
    pack_str(&pk, "t.read");
    msgpack_pack_array(&pk, 0);
    assert_int_equal(send(fd, sb.data, sb.size, MSG_NOSIGNAL), (ssize_t)sb.size);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacker up;
    msgpack_unpacker_init(&up, 4096);
    msgpack_unpacked r;
    msgpack_unpacked_init(&r);
    int answers = 0;
    for (int rounds = 0; answers < 2 && rounds < 200; rounds++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 5000), 1);
        msgpack_unpacker_reserve_buffer(&up, 4096);
        ssize_t n = recv(fd, msgpack_unpacker_buffer(&up), 4096, 0);
        assert_true(n > 0);
        msgpack_unpacker_buffer_consumed(&up, (size_t)n);
        while (msgpack_unpacker_next(&up, &r) == MSGPACK_UNPACK_SUCCESS) {
            msgpack_object *o = &r.data;
            assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
            assert_int_equal(o->via.array.ptr[2].type, MSGPACK_OBJECT_NIL); /* no error */
            answers++;
        }
    }
    assert_int_equal(answers, 2);
    msgpack_unpacked_destroy(&r);
    msgpack_unpacker_destroy(&up);
    close(fd);
}

struct me_answer {
    bool done;
    char role[16];
};

static void me_cb(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)err;
    struct me_answer *a = arg;
    a->done = true;
    snprintf(a->role, sizeof a->role, "%s",
             status == 0 && nv_get_str(result, "role") ? nv_get_str(result, "role") : "?");
}

/* Log in with k1, then k2, on one connection: the role of the last
 * valid login. */
static void relogin_role(struct srv *sv, const char *k1, const char *k2, char *role, size_t len)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rpc_client *c = NULL;
    assert_int_equal(rpc_client_open(&loop, sv->tcp, &PLAIN, &c), 0);
    rpc_client_login(c, k1);
    rpc_client_login(c, k2);
    struct me_answer a = {0};
    assert_int_equal(rpc_client_call(c, "auth.me", NULL, -1, me_cb, &a), 0);
    for (int i = 0; i < 10000 && !a.done; i++) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    rpc_client_close(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(a.done);
    snprintf(role, len, "%s", a.role);
}

/* Send a login and hang up at once, while the server checks it. */
static void login_and_hang_up(struct srv *sv, const char *key)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)sv->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "auth.login_with_api_key");
    msgpack_pack_array(&pk, 1);
    pack_str(&pk, key);
    assert_int_equal(send(fd, sb.data, sb.size, MSG_NOSIGNAL), (ssize_t)sb.size);
    msgpack_sbuffer_destroy(&sb);
    close(fd);
}

static void test_server_roles(void **state)
{
    (void)state;
    char text[1024], l1[300], l2[300];
    line_for("ops", "admin", "k-admin", l1, sizeof l1);
    line_for("mon", "readonly", "k-ro", l2, sizeof l2);
    snprintf(text, sizeof text, "%s%s", l1, l2);
    write_file(keyfile(), text, 0600);
    struct srv *sv = srv_start();

    expect(sv, "k-admin", "t.write", "written");
    expect(sv, "k-admin", "t.read", "read");
    expect(sv, "k-ro", "t.read", "read");
    expect(sv, CLUSTER_KEY, "t.write", "written");
    expect_me(sv, "k-admin", "ops", "admin");
    expect_me(sv, "k-ro", "mon", "readonly");
    expect_me(sv, CLUSTER_KEY, RPC_CLUSTER_KEY_NAME, "admin");
    struct nv_err e;
    nv_err_init(&e);
    assert_null(call(sv, "k-ro", "t.write", &e));
    assert_int_equal(e.code, NV_E_CALL);
    assert_int_equal(e.errnum, EPERM);
    assert_non_null(strstr(e.reason, "[EPERM]"));
    assert_non_null(strstr(e.reason, "t.write needs the admin role"));
    assert_non_null(strstr(e.reason, "key \"mon\" has the role readonly"));
    assert_int_equal(__atomic_load_n(&sv->writes, __ATOMIC_SEQ_CST), 2);
    assert_null(call(sv, "wrong", "t.read", &e));
    assert_int_equal(e.code, NV_E_NOT_AUTHENTICATED);
    /* the unix socket is root: admin */
    struct rpc_sync_opts o = {.tls = &PLAIN, .msgid = -1, .timeout_ms = 5000};
    struct nv *v = NULL;
    char ep[160];
    snprintf(ep, sizeof ep, "unix:%s", sv->sock);
    assert_int_equal(rpc_call_sync(ep, "auth.me", nv_arr(), &o, &v, &e), 0);
    assert_string_equal(nv_get_str(v, "name"), RPC_UNIX_KEY_NAME);
    assert_string_equal(nv_get_str(v, "role"), "admin");
    nv_free(v);

    /* a readonly notification of a write is not run either */
    notify_write_as(sv, "k-ro");
    assert_int_equal(__atomic_load_n(&sv->writes, __ATOMIC_SEQ_CST), 2);
    notify_write_as(sv, "k-admin");
    assert_int_equal(__atomic_load_n(&sv->writes, __ATOMIC_SEQ_CST), 3);

    /* logging in again switches to the new key's role; a wrong key on a
     * logged-in connection leaves its login as it was */
    char role[16];
    relogin_role(sv, "k-ro", "k-admin", role, sizeof role);
    assert_string_equal(role, "admin");
    relogin_role(sv, "k-admin", "k-ro", role, sizeof role);
    assert_string_equal(role, "readonly");
    relogin_role(sv, "k-ro", "wrong", role, sizeof role);
    assert_string_equal(role, "readonly");

    /* revoked: the next login fails, no restart */
    write_file(keyfile(), l1, 0600);
    assert_null(call(sv, "k-ro", "t.read", &e));
    assert_int_equal(e.code, NV_E_NOT_AUTHENTICATED);
    expect(sv, "k-admin", "t.read", "read");
    nv_err_clear(&e);
    srv_stop(sv);
}

/* Logins against a file of costly hashes run in the thread pool: the
 * loop keeps ticking every millisecond meanwhile. */
static void test_login_off_loop(void **state)
{
    (void)state;
    char text[8192] = "";
    size_t o = 0;
    for (int i = 0; i < 8; i++) {
        char h[RPC_KEY_HASH_MAX], k[16];
        snprintf(k, sizeof k, "key-%d", i);
        assert_int_equal(rpc_key_hash(k, strlen(k), 100000, h, sizeof h), 0);
        o += (size_t)snprintf(text + o, sizeof text - o, "k%d admin %s\n", i, h);
    }
    write_file(keyfile(), text, 0600);
    struct srv *sv = srv_start();
    /* clients that hang up while their login is checked (or waits to be):
     * nothing is left behind, the server answers the next ones */
    for (int i = 0; i < 4; i++) {
        login_and_hang_up(sv, i % 2 ? "key-3" : "wrong");
    }
    usleep(20000);
    __atomic_store_n(&sv->max_gap_ns, 0, __ATOMIC_SEQ_CST);
    uint64_t t0 = uv_hrtime();
    struct nv_err e;
    nv_err_init(&e);
    /* a wrong key tries all 8 lines; the right one the last line */
    assert_null(call(sv, "wrong", "t.read", &e));
    expect(sv, "key-7", "t.read", "read");
    uint64_t took = uv_hrtime() - t0;
    uint64_t gap = __atomic_load_n(&sv->max_gap_ns, __ATOMIC_SEQ_CST);
    fprintf(stderr,
            "two logins over 8 hashes of 100000 rounds: %.1f ms; longest loop stall %.2f ms\n",
            (double)took / 1e6, (double)gap / 1e6);
    assert_true(took > 20 * 1000000ull); /* the work was done... */
    assert_true(gap < took / 4);         /* ...but not on the loop */
    assert_true(gap < 50 * 1000000ull);
    nv_err_clear(&e);
    srv_stop(sv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer), cmocka_unit_test(test_hash_roundtrip),
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_server_roles), cmocka_unit_test(test_login_off_loop),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
