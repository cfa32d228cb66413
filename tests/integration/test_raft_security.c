/* Integration tests of the Raft port of real nvmetd processes: no start
 * without a security mode or with a secret others may read; the D1 packet
 * (an AppendEntries whose batch header announces more entries than its
 * header holds) and a 2^63-byte preamble sent raw to a node in PSK,
 * certificate and plaintext mode leave it alive and leading in the same
 * term; forged RequestVotes (D2: term 1,000,000, disrupt-leader set) sent
 * to every node of a three-node PSK cluster change no term and no leader;
 * a three-node cluster on ::1 elects a leader and replicates. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run a shell command, 0 if it exited 0. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd) == 0 ? 0 : -1;
}

/* Local term and whether the node is the ready leader. */
static int local_state(const struct h_node *n, uint64_t *term, bool *leader)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, "cluster.status", "[{\"local\": true}]", &e);
    nv_err_clear(&e);
    if (r == NULL) {
        return -1;
    }
    const struct nv *node = nv_get(r, "node");
    *term = (uint64_t)nv_get_int(node, "term", 0);
    *leader = nv_get_bool(node, "leader_ready", false);
    nv_free(r);
    return 0;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

enum attack_kind {
    A_D1,   /* AppendEntries announcing more entries than its header holds */
    A_HUGE, /* a preamble of 2^63 header bytes, then random bytes */
    A_VOTE, /* D2: RequestVote, term 1,000,000, candidate = id, disrupt */
};

/* libraft's plain handshake as node id, then the attack. Returns true if
 * the node closed the connection within 3 s. */
static bool send_raw(int port, int family, uint64_t id, enum attack_kind kind)
{
    uint8_t b[512];
    size_t n = 0;
    const char addr[] = "127.0.0.1:19999";
    put64(b, 1), put64(b + 8, id), put64(b + 16, 16);
    memset(b + 24, 0, 16);
    memcpy(b + 24, addr, sizeof addr);
    n = 40;
    if (kind == A_VOTE) {
        uint64_t vote[] = {3, 40, 1000000, id, 0, 0, 1};
        for (size_t i = 0; i < sizeof vote / sizeof vote[0]; i++, n += 8) {
            put64(b + n, vote[i]);
        }
    } else if (kind == A_HUGE) {
        put64(b + n, 1), put64(b + n + 8, 1ull << 63);
        n += 16;
        for (int i = 0; i < 200; i++) {
            b[n++] = (uint8_t)rand();
        }
    } else {
        uint64_t body[] = {1, 48, 0x7e3ec, 1, 0, 1ull << 32, 3, 0, 0, 0, 0, 0, 0, 0, 0};
        for (size_t i = 0; i < sizeof body / sizeof body[0]; i++, n += 8) {
            put64(b + n, body[i]);
        }
    }
    int fd = socket(family, SOCK_STREAM, 0);
    struct sockaddr_storage sa = {0};
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons((uint16_t)port);
        len = sizeof *s4;
    }
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, len), 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(send(fd, b, n, MSG_NOSIGNAL), (ssize_t)n);
    bool closed = false;
    for (int i = 0; i < 100; i++) {
        uint8_t r[4096];
        ssize_t got = recv(fd, r, sizeof r, 0);
        if (got == 0 || (got < 0 && errno == ECONNRESET)) {
            closed = true;
            break;
        }
        if (got < 0) {
            break;
        }
    }
    close(fd);
    return closed;
}

/* D1 twice and the huge preamble twice (ids: a member's and a stranger's):
 * the node closes every connection and leads on in the same term. */
static void attack_node(struct h_node *n, int family, uint64_t member)
{
    uint64_t term = 0, term2 = 0;
    bool leader = false;
    assert_int_equal(local_state(n, &term, &leader), 0);
    assert_true(leader);
    assert_true(send_raw(n->raft_port, family, member, A_D1));
    assert_true(send_raw(n->raft_port, family, 99, A_D1));
    assert_true(send_raw(n->raft_port, family, member, A_HUGE));
    assert_true(send_raw(n->raft_port, family, 99, A_HUGE));
    usleep(300000);
    assert_int_equal(local_state(n, &term2, &leader), 0);
    assert_true(leader);
    assert_int_equal(term2, term);
    char *log = h_read(n->log);
    assert_non_null(log);
    if (strstr(log, "raft transport: from") == NULL) {
        h_node_print_log(n);
        fail_msg("no refusal logged");
    }
    free(log);
}

static void stop(struct h_node *n)
{
    h_node_kill(n, SIGTERM);
    int rc = h_node_wait(n);
    if (rc != 0) {
        h_node_print_log(n);
    }
    assert_int_equal(rc, 0);
}

/* Without a mode, with two, with an open or short secret: refused with a
 * message that says what to do. */
static void test_refused_configs(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    const char *common = "--id 1 --raft 127.0.0.1:1 --socket /nonexistent/x.sock";
    assert_int_equal(sh("%s %s --data-dir %s 2>&1 | grep -q 'Raft port needs protection'",
                        NVMETD_BIN, common, n.data),
                     0);
    assert_int_equal(sh("%s %s --data-dir %s --raft-insecure --raft-psk-file %s 2>&1 | grep -q "
                        "'choose one'",
                        NVMETD_BIN, common, n.data, n.psk),
                     0);
    assert_int_equal(sh("%s %s --data-dir %s --raft-cacert x 2>&1 | grep -q 'needs all of'",
                        NVMETD_BIN, common, n.data),
                     0);
    assert_int_equal(chmod(n.psk, 0644), 0);
    assert_int_equal(sh("%s %s --data-dir %s --configfs %s --emulate --raft-psk-file %s 2>&1 | grep -q "
                        "'too open'",
                        NVMETD_BIN, common, n.data, n.configfs, n.psk),
                     0);
    assert_int_equal(sh("%s --id 1 --raft '[::1]' --data-dir %s --raft-insecure 2>&1 | grep -q "
                        "'expected IPv4:PORT or \\[IPv6\\]:PORT'",
                        NVMETD_BIN, n.data),
                     0);
    h_rmrf(base);
}

static void test_d1_psk(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    assert_int_equal(h_node_start(&n, NULL), 0);
    attack_node(&n, AF_INET, 1);
    stop(&n);
    h_rmrf(base);
}

static void test_d1_cert(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    assert_int_equal(
        sh("cd %s && (openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
           "-keyout ca.key -out ca.crt -days 2 -subj /CN=it-ca && printf "
           "'subjectAltName=DNS:nvmet-node-1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > n1.ext "
           "&& openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout n1.key "
           "-out n1.csr -subj /CN=nvmet-node-1 && openssl x509 -req -in n1.csr -CA ca.crt -CAkey "
           "ca.key -CAcreateserial -out n1.crt -days 2 -extfile n1.ext && chmod 600 n1.key) "
           ">/dev/null 2>&1",
           base),
        0);
    char ca[300], crt[300], key[300];
    snprintf(ca, sizeof ca, "%s/ca.crt", base);
    snprintf(crt, sizeof crt, "%s/n1.crt", base);
    snprintf(key, sizeof key, "%s/n1.key", base);
    struct h_node n;
    h_node_init(&n, base, 1);
    const char *extra[] = {"--raft-cacert", ca, "--raft-cert", crt, "--raft-key", key, NULL};
    assert_int_equal(h_node_start(&n, extra), 0);
    long end = now_ms() + 10000;
    uint64_t term = 0;
    bool leader = false;
    while (now_ms() < end && !(local_state(&n, &term, &leader) == 0 && leader)) {
        usleep(20000);
    }
    assert_true(leader);
    attack_node(&n, AF_INET, 1);
    stop(&n);
    h_rmrf(base);
}

/* Plaintext on ::1: the frames are still checked (a single node has no
 * other member: every id is a stranger or itself). */
static void test_d1_insecure_ipv6(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    char raft[64];
    snprintf(raft, sizeof raft, "[::1]:%d", n.raft_port);
    const char *extra[] = {"--raft-insecure", "--raft", raft, NULL};
    assert_int_equal(h_node_start(&n, extra), 0);
    long end = now_ms() + 10000;
    uint64_t term = 0;
    bool leader = false;
    while (now_ms() < end && !(local_state(&n, &term, &leader) == 0 && leader)) {
        usleep(20000);
    }
    assert_true(leader);
    attack_node(&n, AF_INET6, 1);
    stop(&n);
    h_rmrf(base);
}

/* The index of the node that is the ready leader within 15 s, or -1. */
static int wait_leader(struct h_node *n, int count)
{
    long end = now_ms() + 15000;
    while (now_ms() < end) {
        for (int i = 0; i < count; i++) {
            uint64_t term;
            bool l = false;
            if (local_state(&n[i], &term, &l) == 0 && l) {
                return i;
            }
        }
        usleep(20000);
    }
    return -1;
}

/* D2 on a three-node PSK cluster: forged RequestVotes over plain TCP, each
 * claiming a member's id (the candidate itself) or a stranger's, sent to
 * every node, are all closed before libraft sees them; for two seconds
 * after, every node stays in the term it had and the leader keeps
 * leading. Before the transport checked peers, one such vote deposed the
 * leader for 4.6 s and moved every term past 1,000,000. */
static void test_d2_cluster_psk(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n[3];
    char list[256] = "";
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        h_node_init(&n[i], base, i + 1);
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
                              n[i].raft_port);
    }
    for (int i = 0; i < 3; i++) {
        /* a long election timeout: a loaded CI host must not hold an
         * election of its own during the two seconds watched */
        const char *extra[] = {"--cluster", list, "--election-timeout", "3000", NULL};
        assert_int_equal(h_node_start(&n[i], extra), 0);
    }
    int leader = wait_leader(n, 3);
    assert_true(leader >= 0);
    uint64_t term[3];
    for (int i = 0; i < 3; i++) {
        bool l;
        assert_int_equal(local_state(&n[i], &term[i], &l), 0);
    }
    for (int i = 0; i < 3; i++) {
        uint64_t member = (uint64_t)((i + 1) % 3 + 1);
        assert_true(send_raw(n[i].raft_port, AF_INET, member, A_VOTE));
        assert_true(send_raw(n[i].raft_port, AF_INET, 99, A_VOTE));
    }
    long end = now_ms() + 2000;
    while (now_ms() < end) {
        for (int i = 0; i < 3; i++) {
            uint64_t t = 0;
            bool l = false;
            assert_int_equal(local_state(&n[i], &t, &l), 0);
            if (t != term[i] || (i == leader && !l)) {
                h_node_print_log(&n[i]);
                fail_msg("node %d: term %" PRIu64 " -> %" PRIu64 ", leader %d", i + 1, term[i], t,
                         l);
            }
        }
        usleep(50000);
    }
    for (int i = 0; i < 3; i++) {
        stop(&n[i]);
    }
    h_rmrf(base);
}

/* Three nodes on ::1 with the PSK: a leader, a replicated write seen on
 * every node. */
static void test_cluster_ipv6(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n[3];
    char list[256] = "", raft[3][64];
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        h_node_init(&n[i], base, i + 1);
        snprintf(raft[i], sizeof raft[i], "[::1]:%d", n[i].raft_port);
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%d=%s", i ? "," : "", i + 1, raft[i]);
    }
    for (int i = 0; i < 3; i++) {
        const char *extra[] = {"--raft", raft[i], "--cluster", list, NULL};
        assert_int_equal(h_node_start(&n[i], extra), 0);
    }
    int leader = -1;
    long end = now_ms() + 15000;
    while (leader < 0 && now_ms() < end) {
        for (int i = 0; i < 3 && leader < 0; i++) {
            uint64_t term;
            bool l = false;
            if (local_state(&n[i], &term, &l) == 0 && l) {
                leader = i;
            }
        }
        usleep(20000);
    }
    assert_true(leader >= 0);
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(&n[leader], "nvmet.subsys.create",
                          "[{\"name\": \"nqn.2024-01.com.example:v6\"}]", &e);
    assert_non_null(r);
    nv_free(r);
    nv_err_clear(&e);
    /* every node applies it (bounded wait on each node's own state) */
    for (int i = 0; i < 3; i++) {
        size_t found = 0;
        end = now_ms() + 10000;
        while (found != 1 && now_ms() < end) {
            nv_err_init(&e);
            r = h_call(&n[i], "nvmet.subsys.query",
                       "[[], {\"extra\": {\"consistency\": \"local\"}}]", &e);
            found = r != NULL && r->t == NV_ARR ? r->u.a.n : 0;
            nv_free(r);
            nv_err_clear(&e);
            if (found != 1) {
                usleep(20000);
            }
        }
        if (found != 1) {
            h_node_print_log(&n[i]);
            fail_msg("node %d has %zu subsystems", i + 1, found);
        }
    }
    for (int i = 0; i < 3; i++) {
        stop(&n[i]);
    }
    h_rmrf(base);
}

int main(void)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_configs), cmocka_unit_test(test_d1_psk),
        cmocka_unit_test(test_d1_cert),         cmocka_unit_test(test_d1_insecure_ipv6),
        cmocka_unit_test(test_cluster_ipv6),    cmocka_unit_test(test_d2_cluster_psk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
