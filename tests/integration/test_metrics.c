/* Integration tests of nvmetd's Prometheus endpoint (--metrics): a real
 * node scraped over HTTP on loopback. The text is well-formed exposition
 * format, the Raft and per-method counters agree with what was done to the
 * node, histograms are cumulative, other paths and methods are refused, a
 * bad or busy address stops the start with a message, and a client that
 * never finishes its request does not hold up the node's stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One HTTP/1.0 request; the whole response (owned), NULL on timeout. */
static char *http(int port, const char *method, const char *path)
{
    int fd = connect_to(port);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < 10000; i++) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got <= 0) {
            break;
        }
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

static int status_of(const char *resp)
{
    int code = 0;
    return sscanf(resp, "HTTP/1.%*d %d", &code) == 1 ? code : -1;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b != NULL ? b + 4 : "";
}

/* The value of the sample whose name and labels are exactly key, or -1. */
static double sample(const char *body, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = body; l != NULL && *l != '\0';) {
        if (strncmp(l, key, kl) == 0 && l[kl] == ' ') {
            return strtod(l + kl + 1, NULL);
        }
        l = strchr(l, '\n');
        l = l != NULL ? l + 1 : NULL;
    }
    return -1;
}

/* Every line is a comment (# HELP / # TYPE) or `name[{labels}] value`,
 * and every sample's family was declared by a # TYPE line before it. */
static void check_format(const char *body)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|"
                             "\\\\.)*\",?)*\\})? -?[0-9.e+-]+$",
                             REG_EXTENDED),
                     0);
    char *copy = strdup(body);
    char *save = NULL;
    char types[64][96];
    int nt = 0, samples = 0;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_true(nt < 64);
            sscanf(line + 7, "%95s", types[nt++]);
            continue;
        }
        if (strncmp(line, "# HELP ", 7) == 0) {
            continue;
        }
        regmatch_t m[2];
        if (regexec(&re, line, 2, m, 0) != 0) {
            fail_msg("not exposition format: %s", line);
        }
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line);
        bool declared = false;
        for (int i = 0; i < nt && !declared; i++) {
            size_t tl = strlen(types[i]);
            declared = strncmp(name, types[i], tl) == 0 &&
                       (name[tl] == '\0' || strcmp(name + tl, "_bucket") == 0 ||
                        strcmp(name + tl, "_sum") == 0 || strcmp(name + tl, "_count") == 0);
        }
        if (!declared) {
            fail_msg("sample without a # TYPE before it: %s", line);
        }
        samples++;
    }
    assert_true(samples > 30);
    free(copy);
    regfree(&re);
}

/* Buckets of name{labels} never decrease and +Inf equals _count. */
static void check_hist(const char *body, const char *name, const char *labels)
{
    static const char *const le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                     "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                     "1",      "2.5",     "10",     "+Inf"};
    double prev = 0;
    char key[256];
    const char *sep = labels[0] != '\0' ? "," : "";
    for (size_t i = 0; i < sizeof le / sizeof le[0]; i++) {
        snprintf(key, sizeof key, "%s_bucket{%s%sle=\"%s\"}", name, labels, sep, le[i]);
        double v = sample(body, key);
        if (v < prev) {
            fail_msg("%s: %g after %g", key, v, prev);
        }
        prev = v;
    }
    if (labels[0] != '\0') {
        snprintf(key, sizeof key, "%s_count{%s}", name, labels);
    } else {
        snprintf(key, sizeof key, "%s_count", name);
    }
    assert_true(prev >= 1);
    assert_true(sample(body, key) == prev);
}

static void call_ok(struct h_node *n, const char *method, const char *json)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, method, json, &e);
    assert_non_null(r);
    nv_free(r);
    nv_err_clear(&e);
}

/* A single node after 3 creates and 1 refused create: counters, states,
 * histograms as done; /other is 404, POST is 405. */
static void test_scrape(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    int port = h_free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *extra[] = {"--metrics", addr, NULL};
    assert_int_equal(h_node_start(&n, extra), 0);
    for (int i = 0; i < 3; i++) {
        char json[128];
        snprintf(json, sizeof json, "[{\"name\": \"nqn.2024-01.com.example:m%d\"}]", i);
        call_ok(&n, "nvmet.subsys.create", json);
    }
    struct nv_err e;
    nv_err_init(&e);
    assert_null(
        h_call(&n, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:m0\"}]", &e));
    nv_err_clear(&e);
    assert_int_equal(h_wait_rendered(&n, 10000), 0);

    char *resp = http(port, "GET", "/metrics");
    assert_int_equal(status_of(resp), 200);
    assert_non_null(strstr(resp, "text/plain; version=0.0.4"));
    const char *b = body_of(resp);
    check_format(b);
    assert_true(sample(b, "nvmet_ha_build_info{version=\"" NVMET_HA_VERSION "\",node=\"1\"}") == 1);
    assert_true(sample(b, "nvmet_ha_raft_state{state=\"leader\"}") == 1);
    assert_true(sample(b, "nvmet_ha_raft_state{state=\"follower\"}") == 0);
    assert_true(sample(b, "nvmet_ha_raft_leader_ready") == 1);
    assert_true(sample(b, "nvmet_ha_raft_term") >= 1);
    double commit = sample(b, "nvmet_ha_raft_commit_index");
    assert_true(commit >= 4); /* init + registration + 3 creates (+ the refused one) */
    assert_true(sample(b, "nvmet_ha_raft_applied_index") == commit);
    assert_true(sample(b, "nvmet_ha_rpc_calls_total{method=\"nvmet.subsys.create\"}") == 4);
    assert_true(sample(b, "nvmet_ha_rpc_errors_total{method=\"nvmet.subsys.create\"}") == 1);
    check_hist(b, "nvmet_ha_rpc_call_seconds", "method=\"nvmet.subsys.create\"");
    check_hist(b, "nvmet_ha_apply_seconds", "");
    check_hist(b, "nvmet_ha_render_seconds", "");
    assert_true(sample(b, "nvmet_ha_apply_seconds_count") >= 4);
    assert_true(sample(b, "nvmet_ha_render_problems") == 0);
    assert_true(sample(b, "nvmet_ha_failover_role{role=\"single\"}") == 1);
    assert_true(sample(b, "nvmet_ha_failover_serving") == 1);
    assert_true(sample(b, "nvmet_ha_failover_transitions_total{direction=\"acquire\"}") == 1);
    free(resp);

    resp = http(port, "GET", "/other");
    assert_int_equal(status_of(resp), 404);
    free(resp);
    resp = http(port, "POST", "/metrics");
    assert_int_equal(status_of(resp), 405);
    free(resp);

    h_node_kill(&n, SIGTERM);
    assert_int_equal(h_node_wait(&n), 0);
    h_rmrf(base);
}

/* Run nvmetd with args and return its exit status and stderr (owned). */
static int run_nvmetd(const struct h_node *n, const char *metrics, char **err)
{
    char cmd[2048], out[300];
    snprintf(out, sizeof out, "%s/start.err", n->dir);
    snprintf(cmd, sizeof cmd,
             "timeout 20 %s --id 1 --data-dir %s --raft 127.0.0.1:%d --raft-psk-file %s "
             "--socket %s --configfs %s --emulate --metrics '%s' 2>%s",
             NVMETD_BIN, n->data, n->raft_port, n->psk, n->sock, n->configfs, metrics, out);
    int rc = system(cmd);
    *err = h_read(out);
    return rc;
}

/* A malformed address and an address in use stop the start, saying so. */
static void test_refused(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    char *err = NULL;
    assert_int_not_equal(run_nvmetd(&n, "localhost", &err), 0);
    assert_non_null(err);
    if (strstr(err, "expected IPv4:PORT or [IPv6]:PORT") == NULL) {
        fail_msg("stderr: %s", err);
    }
    free(err);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_not_equal(run_nvmetd(&n, addr, &err), 0);
    assert_non_null(err);
    if (strstr(err, "metrics: cannot listen on") == NULL) {
        fail_msg("stderr: %s", err);
    }
    free(err);
    close(fd);
    h_rmrf(base);
}

/* A client that sent half a request and waits: SIGTERM still stops the
 * node within 5 s, exit status 0. */
static void test_stop_with_idle_client(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    int port = h_free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *extra[] = {"--metrics", addr, NULL};
    assert_int_equal(h_node_start(&n, extra), 0);
    int fd = connect_to(port);
    assert_int_equal(send(fd, "GET /metr", 9, MSG_NOSIGNAL), 9);
    usleep(100000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    h_node_kill(&n, SIGTERM);
    assert_int_equal(h_node_wait(&n), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 5);
    close(fd);
    h_rmrf(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrape),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_stop_with_idle_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
