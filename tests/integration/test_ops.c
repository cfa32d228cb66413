/* Integration tests of day-2 operations on a real nvmetd: SIGHUP re-reads
 * the config file, applies the log level and logs what waits for a
 * restart, survives a broken file; a --configfs that is not configfs is
 * refused unless --emulate says so. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"

/* Wait (5 s at most) until the node's log holds text. */
static bool log_has(const struct h_node *n, const char *text)
{
    long end = h_now_ms() + 5000;
    while (h_now_ms() < end) {
        char *log = h_read(n->log);
        bool found = log != NULL && strstr(log, text) != NULL;
        free(log);
        if (found) {
            return true;
        }
        usleep(20000);
    }
    h_node_print_log(n);
    return false;
}

static void write_file(const char *path, const char *text)
{
    assert_int_equal(h_write(path, text), 0);
}

static bool alive(const struct h_node *n)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, "core.ping", NULL, &e);
    nv_err_clear(&e);
    nv_free(r);
    return r != NULL;
}

/* cluster.status: the command version this node writes as leader. */
static int64_t log_format(const struct h_node *n)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *st = h_call(n, "cluster.status", "[{\"local\": true}]", &e);
    int64_t v = nv_get_int(nv_get(st, "node"), "log_format", -1);
    nv_free(st);
    nv_err_clear(&e);
    return v;
}

/* SIGHUP: log-level and sweep-interval from the edited config file apply
 * at once (a debug line appears), snapshot-threshold is logged as waiting
 * for a restart; a file that no longer parses changes nothing; the node
 * answers throughout. */
static void test_sighup_reload(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    char conf[400];
    snprintf(conf, sizeof conf, "%s/nvmetd.conf", n.dir);
    write_file(conf, "# test\nlog-level = info\nsweep-interval = 30000\nlog-format = 1\n");
    const char *extra[] = {"--config", conf, NULL};
    assert_int_equal(h_node_start(&n, extra), 0);
    assert_int_equal(log_format(&n), 1); /* a rolling upgrade under way */
    struct nv_err e;
    nv_err_init(&e);
    nv_free(h_call(&n, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:v1\"}]", &e));
    assert_false(nv_err_isset(&e));

    write_file(conf, "log-level = debug\nsweep-interval = 500\nsnapshot-threshold = 9000\n");
    h_node_kill(&n, SIGHUP);
    assert_true(log_has(&n, "SIGHUP: log-level: info -> debug"));
    assert_true(log_has(&n, "SIGHUP: sweep-interval: 30000 -> 500"));
    assert_true(log_has(&n,
                        "SIGHUP: snapshot-threshold changed (8192 -> 9000): takes effect at "
                        "the next restart"));
    assert_true(log_has(&n, "SIGHUP: log-format: 1 -> 0"));
    assert_true(log_has(&n, "3 change(s) applied, 1 at the next restart"));
    assert_int_equal(log_format(&n), 2);
    nv_free(h_call(&n, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:v2\"}]", &e));
    assert_false(nv_err_isset(&e));
    assert_true(alive(&n));

    write_file(conf, "log-level = debug\nno-such-key = 1\n");
    h_node_kill(&n, SIGHUP);
    assert_true(log_has(&n, "SIGHUP: configuration not reloaded, nothing changed"));
    assert_true(alive(&n));

    /* both formats replay after a restart */
    h_node_kill(&n, SIGTERM);
    assert_int_equal(h_node_wait(&n), 0);
    write_file(conf, "log-level = info\n");
    assert_int_equal(h_node_start(&n, extra), 0);
    struct nv *all = h_call(&n, "nvmet.subsys.query", "[]", &e);
    assert_int_equal(nv_len(all), 2);
    nv_free(all);
    h_node_kill(&n, SIGTERM);
    assert_int_equal(h_node_wait(&n), 0);
    h_rmrf(base);
}

/* A --configfs that is not a configfs mount stops the start (a typo must
 * not run a fake target) and says how to mount it or emulate on purpose. */
static void test_configfs_must_be_mounted(void **state)
{
    (void)state;
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node n;
    h_node_init(&n, base, 1);
    char cmd[2048], out[300];
    snprintf(out, sizeof out, "%s/start.err", n.dir);
    snprintf(cmd, sizeof cmd,
             "timeout 20 %s --id 1 --data-dir %s --raft 127.0.0.1:%d --raft-psk-file %s "
             "--socket %s --configfs %s 2>%s",
             NVMETD_BIN, n.data, n.raft_port, n.psk, n.sock, n.configfs, out);
    assert_int_not_equal(system(cmd), 0);
    char *err = h_read(out);
    assert_non_null(err);
    if (strstr(err, "is not a configfs mount") == NULL || strstr(err, "--emulate") == NULL) {
        fail_msg("stderr: %s", err);
    }
    free(err);
    char nvmet[400];
    snprintf(nvmet, sizeof nvmet, "%s/nvmet", n.configfs);
    struct stat st;
    assert_int_not_equal(stat(nvmet, &st), 0); /* nothing was written */
    h_rmrf(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sighup_reload),
        cmocka_unit_test(test_configfs_must_be_mounted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
