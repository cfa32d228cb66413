/* Integration tests of nvmetctl's operator commands against a real
 * cluster of two data nodes and a witness: `status` prints a healthy
 * summary and one row per member (exactly one MASTER, the leader starred)
 * and exits 0, then DEGRADED naming a dead node with exit 1; `-o json
 * status` is the raw document; `methods GLOB` lists methods with their
 * roles; `-o table` prints list results as columns; NVMETCTL_URL and
 * NVMETCTL_API_KEY_FILE stand in for the flags; an endpoint that did not
 * answer is remembered and tried last next time; `--version`. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

static struct h_node g_n[3];
static char g_base[256];
static char g_list[256]; /* the --cluster list */

/* Run a shell command; its stdout (owned) and exit status. */
static char *run(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *run(int *status, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    for (int k = 0; k < 100000; k++) {
        if (len + 4096 >= cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        size_t got = fread(out + len, 1, cap - len - 1, p);
        if (got == 0) {
            break;
        }
        len += got;
    }
    out[len] = '\0';
    int rc = pclose(p);
    *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return out;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

static int setup(void **state)
{
    (void)state;
    h_tmpdir(g_base, sizeof g_base);
    char *list = g_list;
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        h_node_init(&g_n[i], g_base, i + 1);
        o += (size_t)snprintf(list + o, sizeof g_list - o, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
                              g_n[i].raft_port);
    }
    for (int i = 0; i < 3; i++) {
        const char *extra[] = {"--cluster", list, i == 2 ? "--witness" : NULL, NULL};
        if (h_node_start(&g_n[i], extra) != 0) {
            return -1;
        }
    }
    /* bounded wait until a status says healthy */
    for (int k = 0; k < 150; k++) {
        int st;
        char *out = run(&st, "%s --socket %s status 2>&1", NVMETCTL_BIN, g_n[0].sock);
        free(out);
        if (st == 0) {
            return 0;
        }
        usleep(100000);
    }
    return -1;
}

/* The single node a test starts besides the cluster: stopped after the
 * test even when an assertion ended it early. */
static struct h_node g_solo;

static int solo_stop(void **state)
{
    (void)state;
    if (g_solo.pid > 0) {
        h_node_kill(&g_solo, SIGTERM);
        h_node_wait(&g_solo);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        if (g_n[i].pid > 0) {
            h_node_kill(&g_n[i], SIGTERM);
            h_node_wait(&g_n[i]);
        }
    }
    h_rmrf(g_base);
    return 0;
}

static void test_status_healthy(void **state)
{
    (void)state;
    int st;
    char *out = run(&st, "%s --socket %s status", NVMETCTL_BIN, g_n[0].sock);
    if (st != 0 || strncmp(out, "cluster: healthy;", 17) != 0) {
        fail_msg("exit %d:\n%s", st, out);
    }
    assert_non_null(strstr(out, "\nID  KIND"));
    assert_int_equal(count(out, " MASTER "), 1);
    assert_int_equal(count(out, " WITNESS "), 1);
    assert_int_equal(count(out, " BACKUP "), 1);
    assert_int_equal(count(out, "* "), 1);
    free(out);

    out = run(&st, "%s --socket %s -o json status", NVMETCTL_BIN, g_n[1].sock);
    assert_int_equal(st, 0);
    struct nv *doc = nv_from_json(out);
    assert_non_null(doc);
    assert_int_equal(nv_len(nv_get(doc, "members")), 3);
    nv_free(doc);
    free(out);
}

static void test_methods_table_env(void **state)
{
    (void)state;
    int st;
    char *out = run(&st, "%s --socket %s methods 'nvmet.host.*'", NVMETCTL_BIN, g_n[0].sock);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "nvmet.host.create"));
    assert_non_null(strstr(out, "nvmet.host.query"));
    assert_null(strstr(out, "nvmet.subsys"));
    /* each method with its arguments */
    assert_non_null(strstr(out, "nvmet.host.create                          admin\n"
                                "    [{hostnqn!: nqn, description: str,"));
    assert_non_null(strstr(out, "    [id: int, options?: {force: bool}]"));
    assert_true(count(out, " admin") >= 4);
    free(out);

    out = run(&st,
              "%s --socket %s call nvmet.subsys.create '{\"name\": \"nqn.2024-01.com.example:t\"}'",
              NVMETCTL_BIN, g_n[0].sock);
    assert_int_equal(st, 0);
    free(out);
    out = run(&st, "%s --socket %s -o table call nvmet.subsys.query", NVMETCTL_BIN, g_n[0].sock);
    assert_int_equal(st, 0);
    if (strncmp(out, "id  name", 8) != 0 || strstr(out, "nqn.2024-01.com.example:t") == NULL) {
        fail_msg("table:\n%s", out);
    }
    free(out);

    /* the environment stands in for --url and --api-key-file */
    out =
        run(&st, "NVMETCTL_URL=127.0.0.1:%d NVMETCTL_API_KEY_FILE=%s %s --cacert %s call core.ping",
            g_n[0].rpc_port, g_n[0].keyfile, NVMETCTL_BIN, g_n[0].cacert);
    assert_int_equal(st, 0);
    assert_string_equal(out, "pong\n");
    free(out);

    out = run(&st, "%s --version", NVMETCTL_BIN);
    assert_int_equal(st, 0);
    assert_string_equal(out, "nvmetctl " NVMET_HA_VERSION "\n");
    free(out);
}

static int64_t count_of(const char *table)
{
    int st;
    char *out = run(&st, "%s --socket %s call nvmet.%s.query '[]' '{\"count\": true}'",
                    NVMETCTL_BIN, g_n[2].sock, table);
    int64_t n = st == 0 ? strtoll(out, NULL, 10) : -1;
    free(out);
    return n;
}

/* batch: two pipelined phases (subsystems, then hosts) and one bad line:
 * everything else applied, the bad line reported with its number, exit
 * 1. Then a batch during which the leader is killed: every line applied
 * exactly once (resent lines are answered from the session table). */
static void test_batch(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/batch.jsonl", g_base);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# subsystems, then hosts\n");
    for (int i = 0; i < 100; i++) {
        fprintf(f, "[\"nvmet.subsys.create\", {\"name\": \"nqn.2024-01.com.example:b%d\"}]\n", i);
    }
    fprintf(
        f,
        "{\"method\": \"nvmet.subsys.create\", \"params\": [{\"name\": \"x\", \"bogus\": 1}]}\n");
    for (int i = 0; i < 100; i++) {
        fprintf(f,
                "{\"method\": \"nvmet.host.create\", \"params\": [{\"hostnqn\": "
                "\"nqn.2024-01.com.example:h%d\"}]}\n",
                i);
    }
    fclose(f);
    int64_t subs = count_of("subsys"), hosts = count_of("host");
    int st;
    char *out =
        run(&st, "%s --socket %s batch --window 16 %s 2>&1", NVMETCTL_BIN, g_n[0].sock, path);
    if (st != 1 || strstr(out, "201 lines: 200 ok, 1 failed") == NULL ||
        strstr(out, "line 102: nvmet.subsys.create: [EINVAL]") == NULL) {
        fail_msg("exit %d:\n%s", st, out);
    }
    free(out);
    assert_int_equal(count_of("subsys"), subs + 100);
    assert_int_equal(count_of("host"), hosts + 100);

    /* the leader dies mid-batch */
    f = fopen(path, "w");
    for (int i = 0; i < 3000; i++) {
        fprintf(f, "[\"nvmet.subsys.create\", {\"name\": \"nqn.2024-01.com.example:k%d\"}]\n", i);
    }
    fclose(f);
    subs = count_of("subsys");
    out = run(&st, "%s --socket %s -o json status", NVMETCTL_BIN, g_n[0].sock);
    struct nv *doc = nv_from_json(out);
    int leader = (int)nv_get_int(doc, "leader", 0) - 1;
    nv_free(doc);
    free(out);
    assert_true(leader == 0 || leader == 1);
    char log[400];
    snprintf(log, sizeof log, "%s/batch.log", g_base);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s --url 127.0.0.1:%d,127.0.0.1:%d --cacert %s --api-key-file %s --timeout 20 batch "
             "%s > %s 2>&1",
             NVMETCTL_BIN, g_n[0].rpc_port, g_n[1].rpc_port, g_n[0].cacert, g_n[0].keyfile, path,
             log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* some lines in (bounded wait), then the leader dies */
    for (int k = 0; k < 100 && count_of("subsys") < subs + 300; k++) {
        usleep(20000);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still running */
    h_node_kill(&g_n[leader], SIGKILL);
    h_node_wait(&g_n[leader]);
    waitpid(pid, &status, 0);
    char *text = h_read(log);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("batch exit %d:\n%s", WEXITSTATUS(status), text ? text : "");
    }
    free(text);
    assert_int_equal(count_of("subsys"), subs + 3000);
    /* the dead node comes back for the next test */
    const char *extra[] = {"--cluster", g_list, NULL};
    assert_int_equal(h_node_start(&g_n[leader], extra), 0);
}

/* config.save of the cluster restores into a new single-node cluster as
 * the same document (ids, links, keys), its tree is rendered, and a
 * second restore is refused (not empty). */
static void test_backup_restore(void **state)
{
    (void)state;
    char saved[400];
    snprintf(saved, sizeof saved, "%s/backup.json", g_base);
    int st;
    char *out =
        run(&st, "%s --socket %s call config.save > %s; echo $?", NVMETCTL_BIN, g_n[0].sock, saved);
    assert_string_equal(out, "0\n");
    free(out);
    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node *n = &g_solo;
    h_node_init(n, base, 1);
    assert_int_equal(h_node_start(n, NULL), 0);
    out = run(&st, "%s --socket %s call config.restore - < %s", NVMETCTL_BIN, n->sock, saved);
    if (st != 0) {
        fail_msg("restore exit %d: %s", st, out);
    }
    free(out);
    char *a = h_read(saved);
    out = run(&st, "%s --socket %s call config.save", NVMETCTL_BIN, n->sock);
    assert_int_equal(st, 0);
    struct nv *x = nv_from_json(a), *y = nv_from_json(out);
    assert_non_null(x);
    assert_non_null(y);
    assert_true(nv_len(nv_get(x, "subsys")) > 100);
    if (!nv_equal(x, y)) {
        fail_msg("restored configuration differs");
    }
    nv_free(x);
    nv_free(y);
    free(out);
    assert_int_equal(h_wait_rendered(n, 20000), 0);
    out = run(&st, "%s --socket %s call config.restore - < %s 2>&1", NVMETCTL_BIN, n->sock, saved);
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "[EEXIST] config_restore: the cluster holds"));
    free(out);
    free(a);
    h_node_kill(n, SIGTERM);
    assert_int_equal(h_node_wait(n), 0);
    h_rmrf(base);
}

/* Where a and b first differ, as a path ("subsystems[3].attr.serial"). */
static bool first_diff(const struct nv *a, const struct nv *b, char *path, size_t len)
{
    if (a == NULL || b == NULL || a->t != b->t) {
        return true;
    }
    size_t o = strlen(path);
    if (a->t == NV_MAP) {
        for (size_t i = 0; i < a->u.m.n; i++) {
            snprintf(path + o, len - o, ".%s", a->u.m.kv[i].k);
            if (first_diff(a->u.m.kv[i].v, nv_get(b, a->u.m.kv[i].k), path, len)) {
                return true;
            }
        }
        path[o] = '\0';
        return a->u.m.n != b->u.m.n;
    }
    if (a->t == NV_ARR) {
        for (size_t i = 0; i < a->u.a.n; i++) {
            snprintf(path + o, len - o, "[%zu]", i);
            if (first_diff(a->u.a.v[i], nv_at(b, i), path, len)) {
                return true;
            }
        }
        path[o] = '\0';
        return a->u.a.n != b->u.a.n;
    }
    return !nv_equal(a, b);
}

/* nvmetcli's format: the active node's export (a port, a namespace, host
 * and port links) imports into a new node (dry run first: it lists and
 * changes nothing), whose own export is then the same document; a second
 * import leaves everything alone. */
static void test_nvmetcli(void **state)
{
    (void)state;
    int st;
    const char *sock = g_n[2].sock; /* the witness forwards to the leader */
    char *out = run(&st,
                    "%s --socket %s call nvmet.port.create '{\"addr_trtype\": \"TCP\", "
                    "\"addr_traddr\": \"198.51.100.30\"}' && %s --socket %s call "
                    "nvmet.port_subsys.create '{\"port\": 1, \"subsys\": 1}' && %s --socket %s "
                    "call nvmet.host_subsys.create '{\"host\": 1, \"subsys\": 1}' && %s --socket "
                    "%s call nvmet.namespace.create '{\"subsys\": 1, \"device\": "
                    "\"zvol/tank/nvme/ns1\"}' && %s --socket %s call nvmet.global.update "
                    "'{\"enabled\": true}'",
                    NVMETCTL_BIN, sock, NVMETCTL_BIN, sock, NVMETCTL_BIN, sock, NVMETCTL_BIN, sock,
                    NVMETCTL_BIN, sock);
    if (st != 0) {
        fail_msg("setup: %s", out);
    }
    free(out);
    /* the active node's export (it links the port); a moment after the
     * earlier tests' restarts the role may still be settling */
    int active = -1;
    for (int k = 0; k < 150 && active < 0; k++) {
        out = run(&st, "%s --socket %s -o json status", NVMETCTL_BIN, g_n[2].sock);
        struct nv *doc = nv_from_json(out);
        const struct nv *mem = nv_get(doc, "members");
        for (size_t i = 0; i < nv_len(mem); i++) {
            const struct nv *fo = nv_get(nv_get(nv_at(mem, i), "status"), "failover");
            const char *fs = nv_get_str(fo, "status");
            if (fs != NULL && strcmp(fs, "MASTER") == 0) {
                active = (int)nv_get_int(nv_at(mem, i), "id", 0) - 1;
            }
        }
        nv_free(doc);
        free(out);
        if (active < 0) {
            usleep(100000);
        }
    }
    assert_true(active == 0 || active == 1);
    assert_int_equal(h_wait_rendered(&g_n[active], 20000), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/saveconfig.json", g_base);
    out = run(&st, "%s --socket %s call nvmet.global.export_nvmetcli > %s; echo $?", NVMETCTL_BIN,
              g_n[active].sock, path);
    assert_string_equal(out, "0\n");
    free(out);

    char base[256];
    h_tmpdir(base, sizeof base);
    struct h_node *n = &g_solo;
    h_node_init(n, base, 1);
    assert_int_equal(h_node_start(n, NULL), 0);
    out = run(&st, "%s --socket %s call nvmet.global.update '{\"enabled\": true}'", NVMETCTL_BIN,
              n->sock);
    free(out);
    out = run(&st, "%s --socket %s import-nvmetcli --dry-run %s 2>&1", NVMETCTL_BIN, n->sock, path);
    if (st != 0 || strstr(out, "create port TCP 198.51.100.30:4420") == NULL ||
        strstr(out, "create namespace 1 of") == NULL) {
        char *f = h_read(path);
        fail_msg("dry run exit %d:\n%s\nfile: %.600s", st, out, f ? f : "");
    }
    free(out);
    out = run(&st, "%s --socket %s call nvmet.subsys.query '[]' '{\"count\": true}'", NVMETCTL_BIN,
              n->sock);
    assert_string_equal(out, "0\n");
    free(out);
    out = run(&st, "%s --socket %s import-nvmetcli %s 2>&1", NVMETCTL_BIN, n->sock, path);
    if (st != 0) {
        fail_msg("import exit %d:\n%s", st, out);
    }
    free(out);
    assert_int_equal(h_wait_rendered(n, 20000), 0);
    out = run(&st, "%s --socket %s call nvmet.global.export_nvmetcli", NVMETCTL_BIN, n->sock);
    char *orig = h_read(path);
    struct nv *x = nv_from_json(orig), *y = nv_from_json(out);
    assert_non_null(x);
    assert_non_null(y);
    char where[512] = "";
    if (!nv_equal(x, y)) {
        first_diff(x, y, where, sizeof where);
        char *l = nv_dump(nv_get(x, "ports")), *r = nv_dump(nv_get(y, "ports"));
        fail_msg("the re-export differs at %s (ports %s / %s)", where, l ? l : "", r ? r : "");
    }
    nv_free(x);
    nv_free(y);
    free(orig);
    free(out);
    out = run(&st, "%s --socket %s import-nvmetcli %s 2>&1", NVMETCTL_BIN, n->sock, path);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "already present, left alone"));
    free(out);
    h_node_kill(n, SIGTERM);
    assert_int_equal(h_node_wait(n), 0);
    h_rmrf(base);
}

/* Runs last: it stops a data node. */
static void test_dead_node(void **state)
{
    (void)state;
    int st;
    /* the data node that is not the leader */
    int victim = -1;
    char *out = run(&st, "%s --socket %s -o json status", NVMETCTL_BIN, g_n[0].sock);
    struct nv *doc = nv_from_json(out);
    int64_t leader = nv_get_int(doc, "leader", 0);
    victim = leader == 1 ? 1 : 0;
    nv_free(doc);
    free(out);
    h_node_kill(&g_n[victim], SIGKILL);
    h_node_wait(&g_n[victim]);
    g_n[victim].pid = 0;
    int alive = victim == 0 ? 1 : 0;

    out = run(&st, "%s --socket %s status", NVMETCTL_BIN, g_n[alive].sock);
    char want[64];
    snprintf(want, sizeof want, "node %d does not answer", victim + 1);
    if (st != 1 || strncmp(out, "cluster: DEGRADED:", 18) != 0 || strstr(out, want) == NULL) {
        fail_msg("exit %d:\n%s", st, out);
    }
    assert_non_null(strstr(out, "unreachable"));
    free(out);

    /* the dead endpoint is remembered, and tried last next time */
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", g_n[victim].rpc_port);
    char url[160];
    snprintf(url, sizeof url, "%s,127.0.0.1:%d", dead, g_n[alive].rpc_port);
    out = run(&st, "XDG_RUNTIME_DIR=%s %s --url %s --api-key-file %s --cacert %s call core.ping",
              g_base, NVMETCTL_BIN, url, g_n[alive].keyfile, g_n[alive].cacert);
    assert_int_equal(st, 0);
    free(out);
    char path[400];
    snprintf(path, sizeof path, "%s/nvmetctl-%u.unreachable", g_base, (unsigned)getuid());
    char *remembered = h_read(path);
    assert_non_null(remembered);
    assert_string_equal(remembered, dead);
    free(remembered);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_healthy), cmocka_unit_test(test_methods_table_env),
        cmocka_unit_test(test_batch),          cmocka_unit_test_teardown(test_backup_restore, solo_stop),
        cmocka_unit_test_teardown(test_nvmetcli, solo_stop),       cmocka_unit_test(test_dead_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
