/* Integration tests of what a write's answer promises, with real nvmetd
 * processes on emulated configfs:
 *   - a write this node's kernel refused answers an error that says the
 *     change is committed (errname from the kernel's errno, "committed":
 *     true), cluster.status lists the refusal until a pass repairs it, and
 *     writes of other rows still answer success meanwhile;
 *   - namespace.delete {"remove": true} of a FILE namespace removes the
 *     backing file on every data node as part of the committed change,
 *     also when the leader that answered is killed right after, and on a
 *     node that was down at the time (when it comes back). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"

#define NODES 3
#define SUB "nqn.2024-01.com.example:honest"

static char base[256];
static struct h_node nodes[NODES];

static int teardown(void **state)
{
    (void)state;
    h_nodes_down(nodes, NODES);
    if (base[0] != '\0') {
        h_rmrf(base);
    }
    memset(nodes, 0, sizeof nodes);
    base[0] = '\0';
    return 0;
}

static struct nv *ok(const struct h_node *n, const char *method, const char *params)
{
    struct nv *r = h_call_ok(n, method, params);
    assert_non_null(r);
    return r;
}

static void put(const char *path, const char *text)
{
    assert_int_equal(h_write(path, text), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The render part of a node's local cluster.status (owned). */
static struct nv *render_status(const struct h_node *n)
{
    struct nv *s = ok(n, "cluster.status", "[{\"local\": true}]");
    struct nv *r = nv_copy(nv_get(nv_get(s, "node"), "render"));
    nv_free(s);
    return r;
}

/* The kernel refuses a namespace attribute: the create answers an error
 * that says it is committed, with the kernel's errno; status shows it;
 * another write answers success; removing the cause lets a pass repair. */
static void test_refused_write(void **state)
{
    (void)state;
    h_tmpdir(base, sizeof base);
    struct h_node *n = &nodes[0];
    h_node_init(n, base, 1);
    const char *args[] = {"--sweep-interval", "300", NULL};
    assert_int_equal(h_node_start(n, args), 0);
    nv_free(ok(n, "nvmet.subsys.create", "[{\"name\": \"" SUB "\"}]"));
    nv_free(ok(n, "nvmet.global.update", "[{\"enabled\": true}]"));
    assert_int_equal(h_wait_rendered(n, 10000), 0);

    /* this node's (emulated) kernel refuses device_uuid with ENOSPC */
    char dir[600], file[700];
    snprintf(dir, sizeof dir, "%s/.nvmet-emu/refuse", n->configfs);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(file, sizeof file, "%s/device_uuid", dir);
    put(file, "ENOSPC\n");

    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, "nvmet.namespace.create",
                          "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\"}]", &e);
    assert_null(r);
    char *why = nv_err_reason(&e);
    printf("# refused write answered: %s\n", why);
    assert_int_equal(e.code, NV_E_CALL);
    assert_int_equal(e.errnum, ENOSPC);
    assert_true(e.committed);
    assert_non_null(strstr(why, "[ENOSPC]"));
    assert_non_null(strstr(why, "committed"));
    assert_non_null(strstr(why, "namespaces/1"));
    free(why);
    nv_err_clear(&e);

    /* committed: the namespace is in the configuration */
    struct nv *q = ok(n, "nvmet.namespace.query", "[[], {\"count\": true}]");
    assert_int_equal(q->u.i, 1);
    nv_free(q);

    /* cluster.status shows the refusal: errno, row, object */
    struct nv *rs = render_status(n);
    assert_string_equal(nv_get_str(rs, "state"), "error");
    const struct nv *errs = nv_get(rs, "errors");
    assert_true(nv_len(errs) >= 1);
    const struct nv *p0 = nv_at(errs, 0);
    assert_string_equal(nv_get_str(p0, "errname"), "ENOSPC");
    assert_int_equal(nv_get_int(p0, "errno", 0), ENOSPC);
    assert_string_equal(nv_get_str(p0, "table"), "nvmet.namespace");
    assert_int_equal(nv_get_int(p0, "id", 0), 1);
    assert_non_null(strstr(nv_get_str(p0, "object"), "namespaces/1"));
    nv_free(rs);

    /* a write of other rows renders fine and answers success */
    nv_free(ok(n, "nvmet.host.create", "[{\"hostnqn\": \"nqn.2024-01.com.example:h1\"}]"));

    /* an update of the refused row is refused again (the failed object
     * is written again), with the errno of now */
    put(file, "EBUSY\n");
    nv_err_init(&e);
    r = h_call(n, "nvmet.namespace.update", "[1, {\"enabled\": false}]", &e);
    assert_null(r);
    why = nv_err_reason(&e);
    printf("# update of the refused row: %s\n", why);
    free(why);
    assert_int_equal(e.errnum, EBUSY);
    assert_true(e.committed);
    nv_err_clear(&e);
    q = ok(n, "nvmet.namespace.get_instance", "[1]");
    assert_false(nv_get_bool(q, "enabled", true)); /* committed */
    nv_free(q);

    /* the cause goes: a later pass (the sweep) repairs, status clears */
    unlink(file);
    assert_int_equal(h_wait_rendered(n, 10000), 0);
    rs = render_status(n);
    assert_string_equal(nv_get_str(rs, "state"), "ok");
    assert_int_equal(nv_len(nv_get(rs, "errors")), 0);
    nv_free(rs);
    /* and writes answer plainly again */
    nv_free(ok(n, "nvmet.namespace.update", "[1, {\"enabled\": true}]"));
    teardown(NULL);
}

/* Single node: delete with remove takes the FILE along before it answers;
 * without remove the file stays. */
static void test_delete_remove_single(void **state)
{
    (void)state;
    h_tmpdir(base, sizeof base);
    struct h_node *n = &nodes[0];
    h_node_init(n, base, 1);
    assert_int_equal(h_node_start(n, NULL), 0);
    char dir[600], a[700], b[700];
    snprintf(dir, sizeof dir, "%s/files", n->devroot);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(a, sizeof a, "%s/a.img", dir);
    snprintf(b, sizeof b, "%s/b.img", dir);
    nv_free(ok(n, "nvmet.subsys.create", "[{\"name\": \"" SUB "\"}]"));
    nv_free(ok(n, "nvmet.global.update", "[{\"enabled\": true}]"));
    nv_free(ok(n, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device_type\": \"FILE\", \"device_path\": \"/files/a.img\", "
               "\"filesize\": 1048576}]"));
    nv_free(ok(n, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device_type\": \"FILE\", \"device_path\": \"/files/b.img\", "
               "\"filesize\": 1048576}]"));
    assert_true(exists(a));
    assert_true(exists(b));
    struct nv *t = ok(n, "nvmet.namespace.delete", "[1, {\"remove\": true}]");
    assert_true(nv_is(t, NV_BOOL) && t->u.b);
    nv_free(t);
    assert_false(exists(a)); /* removed before the answer */
    nv_free(ok(n, "nvmet.namespace.delete", "[2, {\"remove\": false}]"));
    assert_true(exists(b));
    /* a new namespace on the removed path: created again, and kept */
    nv_free(ok(n, "nvmet.namespace.create",
               "[{\"subsys\": 1, \"device_type\": \"FILE\", \"device_path\": \"/files/a.img\", "
               "\"filesize\": 1048576}]"));
    assert_true(exists(a));
    /* a restart (log replay, then the first sweep) keeps it too */
    h_node_kill(n, SIGTERM);
    h_node_wait(n);
    assert_int_equal(h_node_start(n, NULL), 0);
    assert_int_equal(h_wait_rendered(n, 10000), 0);
    assert_true(exists(a));
    teardown(NULL);
}

static int wait_leader(int ms)
{
    return h_wait_leader(nodes, NODES, ms);
}

static int wait_file(const char *path, bool present, int ms)
{
    long deadline = h_now_ms() + ms;
    while (h_now_ms() < deadline) {
        if (exists(path) == present) {
            return 0;
        }
        usleep(20000);
    }
    return -1;
}

/* Three nodes: one is down, the delete with remove commits on the other
 * two and the leader is killed right after its answer. The surviving node
 * and the one that was down remove their copies once they apply the
 * delete; the killed leader, back, keeps it removed. */
static void test_delete_remove_leader_killed(void **state)
{
    (void)state;
    h_tmpdir(base, sizeof base);
    char list[512];
    size_t o = 0;
    for (int i = 0; i < NODES; i++) {
        h_node_init(&nodes[i], base, i + 1);
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
                              nodes[i].raft_port);
    }
    const char *args[] = {"--cluster", list, NULL};
    char files[NODES][700];
    for (int i = 0; i < NODES; i++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/files", nodes[i].devroot);
        assert_int_equal(mkdir(dir, 0755), 0);
        snprintf(files[i], sizeof files[i], "%s/a.img", dir);
        assert_int_equal(h_node_start(&nodes[i], args), 0);
    }
    int l = wait_leader(10000);
    assert_true(l >= 0);
    usleep(1500000); /* registration of every member */
    const struct h_node *ln = &nodes[l];
    nv_free(ok(ln, "nvmet.subsys.create", "[{\"name\": \"" SUB "\"}]"));
    nv_free(ok(ln, "nvmet.global.update", "[{\"enabled\": true}]"));
    struct nv *ns = ok(ln, "nvmet.namespace.create",
                       "[{\"subsys\": 1, \"device_type\": \"FILE\", \"device_path\": "
                       "\"/files/a.img\", \"filesize\": 1048576}]");
    int64_t id = nv_get_int(ns, "id", 0);
    nv_free(ns);
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(wait_file(files[i], true, 10000), 0);
    }
    int down = (l + 1) % NODES, survivor = (l + 2) % NODES;
    h_node_kill(&nodes[down], SIGKILL);
    h_node_wait(&nodes[down]);
    char params[64];
    snprintf(params, sizeof params, "[%lld, {\"remove\": true}]", (long long)id);
    nv_free(ok(ln, "nvmet.namespace.delete", params));
    h_node_kill(&nodes[l], SIGKILL); /* right after the commit */
    h_node_wait(&nodes[l]);
    assert_false(exists(files[l])); /* the leader rendered it before answering */
    /* the node that was down comes back: with the survivor a quorum, the
     * delete is committed there too and both remove their files */
    assert_int_equal(h_node_start(&nodes[down], args), 0);
    assert_int_equal(wait_file(files[survivor], false, 20000), 0);
    assert_int_equal(wait_file(files[down], false, 20000), 0);
    /* the old leader, back, has nothing to recreate */
    assert_int_equal(h_node_start(&nodes[l], args), 0);
    assert_int_equal(h_wait_rendered(&nodes[l], 20000), 0);
    assert_false(exists(files[l]));
    struct nv *q = ok(&nodes[survivor], "nvmet.namespace.query", "[[], {\"count\": true}]");
    assert_int_equal(q->u.i, 0);
    nv_free(q);
    teardown(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_refused_write, teardown),
        cmocka_unit_test_teardown(test_delete_remove_single, teardown),
        cmocka_unit_test_teardown(test_delete_remove_leader_killed, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
