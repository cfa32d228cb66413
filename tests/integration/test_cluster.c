/* Integration tests of a cluster of real nvmetd processes on loopback:
 * forwarding and linearizable reads on followers, nvmetctl's multi-URL
 * retry, leader loss, NO_QUORUM, the witness, membership (--join, remove),
 * catch-up by snapshot install, mismatched --cluster lists. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

#define MAXN 4

struct tc {
    int *done, *failed;
    int i;
    int *retry; /* indexes to send again */
    int *n_retry;
};

void tc_count(void *arg, int status, const struct nv *r, const struct nv_err *e);

struct cl {
    char base[256];
    struct h_node n[MAXN];
    int count;
    char list[512]; /* --cluster */
    char urls[512]; /* nvmetctl --url of the first count nodes */
};

/* the cluster of the running test, stopped by the teardown also when an
 * assertion failed halfway */
static struct cl *current;

static int teardown(void **state);

static int start_node(struct cl *c, int i, const char *const *more)
{
    const char *args[16] = {0};
    size_t k = 0;
    args[k++] = "--cluster";
    args[k++] = c->list;
    for (size_t j = 0; more != NULL && more[j] != NULL && k < 14; j++) {
        args[k++] = more[j];
    }
    args[k] = NULL;
    return h_node_start(&c->n[i], args);
}

/* count nodes; node witness_idx (or -1) is a witness. */
static void cluster_up(struct cl *c, int count, int witness_idx, const char *const *more)
{
    current = c;
    h_tmpdir(c->base, sizeof c->base);
    c->count = count;
    size_t o = 0, u = 0;
    for (int i = 0; i < count; i++) {
        h_node_init(&c->n[i], c->base, i + 1);
        o += (size_t)snprintf(c->list + o, sizeof c->list - o, "%s%d=127.0.0.1:%d", i ? "," : "",
                              i + 1, c->n[i].raft_port);
        u += (size_t)snprintf(c->urls + u, sizeof c->urls - u, "%s127.0.0.1:%d", i ? "," : "",
                              c->n[i].rpc_port);
    }
    for (int i = 0; i < count; i++) {
        const char *args[16] = {0};
        size_t k = 0;
        if (i == witness_idx) {
            args[k++] = "--witness";
        }
        for (size_t j = 0; more != NULL && more[j] != NULL && k < 14; j++) {
            args[k++] = more[j];
        }
        args[k] = NULL;
        assert_int_equal(start_node(c, i, args), 0);
    }
}

static void cluster_down(struct cl *c)
{
    h_nodes_down(c->n, MAXN);
    if (c->base[0] != '\0') {
        h_rmrf(c->base);
    }
    current = NULL;
}

static int teardown(void **state)
{
    (void)state;
    if (current != NULL) {
        cluster_down(current);
    }
    return 0;
}

/* nvmetctl --url URLS --api-key-file K --cacert CA call METHOD [a1 [a2]]
 * with n's key and the cluster's RPC CA; *out stdout. */
static int ctl_url(const char *urls, const struct h_node *n, char **out, char **err,
                   const char *method, const char *a1, const char *a2)
{
    char cmd[4096];
    char f1[] = "/tmp/nvmet-ctl-out-XXXXXX", f2[] = "/tmp/nvmet-ctl-err-XXXXXX";
    int fd1 = mkstemp(f1), fd2 = mkstemp(f2);
    close(fd1);
    close(fd2);
    snprintf(cmd, sizeof cmd,
             "%s --url %s --api-key-file %s --cacert %s --timeout 20 call %s %s%s%s %s%s%s > %s "
             "2> %s",
             NVMETCTL_BIN, urls, n->keyfile, n->cacert, method, a1 ? "'" : "", a1 ? a1 : "", a1 ? "'" : "",
             a2 ? "'" : "", a2 ? a2 : "", a2 ? "'" : "", f1, f2);
    int st = system(cmd);
    *out = h_read(f1);
    if (err != NULL) {
        *err = h_read(f2);
    }
    unlink(f1);
    unlink(f2);
    if (*out == NULL) {
        *out = strdup("");
    }
    if (err != NULL && *err == NULL) {
        *err = strdup("");
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static struct nv *ok_url(const struct cl *c, const char *urls, const char *method, const char *a1,
                         const char *a2)
{
    char *out, *err;
    int rc = ctl_url(urls, &c->n[0], &out, &err, method, a1, a2);
    if (rc != 0) {
        fprintf(stderr, "call %s on %s failed (%d): %s\n", method, urls, rc, err);
    }
    assert_int_equal(rc, 0);
    struct nv *v = nv_from_json(out);
    if (v == NULL) {
        v = nv_str(out);
    }
    free(out);
    free(err);
    return v;
}

static char *url_of(const struct h_node *n)
{
    char *u = NULL;
    assert_true(asprintf(&u, "127.0.0.1:%d", n->rpc_port) > 0);
    return u;
}

/* Local cluster.status of one node (NULL if it does not answer). */
static struct nv *local_status(const struct h_node *n)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, "cluster.status", "[{\"local\": true}]", &e);
    nv_err_clear(&e);
    return r;
}

/* Index of the node that is the ready leader, waiting up to ms. */
static int wait_leader(const struct cl *c, int ms)
{
    return h_wait_leader(c->n, c->count, ms);
}

/* failover.status of every running node: counts of MASTER. */
static int count_masters(const struct cl *c, int *backups)
{
    int m = 0, b = 0;
    for (int i = 0; i < c->count; i++) {
        if (c->n[i].pid <= 0) {
            continue;
        }
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(&c->n[i], "failover.status", NULL, &e);
        nv_err_clear(&e);
        if (nv_is(r, NV_STR)) {
            m += strcmp(r->u.s.p, "MASTER") == 0;
            b += strcmp(r->u.s.p, "BACKUP") == 0;
        }
        nv_free(r);
    }
    if (backups != NULL) {
        *backups = b;
    }
    return m;
}

static int wait_one_master(const struct cl *c, int ms)
{
    long deadline = h_now_ms() + ms;
    while (h_now_ms() < deadline) {
        if (count_masters(c, NULL) == 1) {
            return 0;
        }
        usleep(50000);
    }
    return -1;
}

/* The tree of a node without what the role decides (port links, ANA). */
static char *tree_digest(const struct h_node *n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && find nvmet -path 'nvmet/ports/*/subsystems/*' -prune -o -path "
             "'nvmet/ports/*/ana_groups' -prune -o -path '*/namespaces/*/enable' -prune -o -name 'param_inline_data_size' -prune -o -name 'param_max_queue_size' -prune -o "
             "-print | sort | while read f; do if [ -f \"$f\" ]; then printf '%%s=' \"$f\"; "
             "cat \"$f\"; else echo \"$f\"; fi; done | md5sum",
             n->configfs);
    FILE *p = popen(cmd, "r");
    char buf[128] = "";
    if (fgets(buf, sizeof buf, p) == NULL) {
        buf[0] = '\0';
    }
    pclose(p);
    return strdup(buf);
}

static int wait_same_trees(const struct cl *c, int a, int b, int ms)
{
    long deadline = h_now_ms() + ms;
    while (h_now_ms() < deadline) {
        char *x = tree_digest(&c->n[a]), *y = tree_digest(&c->n[b]);
        bool same = strcmp(x, y) == 0;
        free(x);
        free(y);
        if (same) {
            return 0;
        }
        usleep(100000);
    }
    return -1;
}

static void setup_config(const struct cl *c, const char *urls)
{
    nv_free(ok_url(c, urls, "nvmet.subsys.create", "{\"name\": \"nqn.2024-01.com.example:s1\"}",
                   NULL));
    nv_free(ok_url(c, urls, "nvmet.namespace.create",
                   "{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\"}", NULL));
    nv_free(ok_url(c, urls, "nvmet.port.create",
                   "{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.10\"}", NULL));
    nv_free(ok_url(c, urls, "nvmet.port_subsys.create", "{\"port\": 1, \"subsys\": 1}", NULL));
    nv_free(ok_url(c, urls, "nvmet.global.update", "{\"enabled\": true}", NULL));
}

/* Any node answers: followers forward writes and serve linearizable reads;
 * cluster.status shows every member; one MASTER. */
static void test_any_node_answers(void **state)
{
    (void)state;
    struct cl c = {0};
    cluster_up(&c, 3, -1, NULL);
    int l = wait_leader(&c, 10000);
    assert_true(l >= 0);
    int f = (l + 1) % 3;
    char *fu = url_of(&c.n[f]);
    /* registration of every member happens within a few ticks */
    usleep(1500000);
    setup_config(&c, fu);
    /* read-your-write on another follower, linearizable by default */
    int g = (l + 2) % 3;
    char *gu = url_of(&c.n[g]);
    struct nv *q = ok_url(&c, gu, "nvmet.subsys.query", "[]", "{\"count\": true}");
    assert_int_equal(q->u.i, 1);
    nv_free(q);
    q = ok_url(&c, gu, "nvmet.subsys.query", "[]",
               "{\"count\": true, \"extra\": {\"consistency\": \"local\"}}");
    assert_true(nv_is(q, NV_INT));
    nv_free(q);
    /* the status of every member, through any node */
    struct nv *st = ok_url(&c, fu, "cluster.status", NULL, NULL);
    const struct nv *members = nv_get(st, "members");
    assert_int_equal(nv_len(members), 3);
    for (size_t i = 0; i < 3; i++) {
        const struct nv *ms = nv_get(nv_at(members, i), "status");
        assert_true(nv_get_bool(ms, "reachable", false));
        assert_non_null(nv_get_str(ms, "role"));
        assert_true(nv_is(nv_get(ms, "commit_index"), NV_INT));
    }
    nv_free(st);
    assert_int_equal(wait_one_master(&c, 10000), 0);
    int backups = 0;
    assert_int_equal(count_masters(&c, &backups), 1);
    assert_int_equal(backups, 2);
    /* every data node has the same tree (role-decided parts aside) */
    assert_int_equal(wait_same_trees(&c, 0, 1, 5000), 0);
    assert_int_equal(wait_same_trees(&c, 0, 2, 5000), 0);
    free(fu);
    free(gu);
    cluster_down(&c);
}

/* kill -9 of the leader: nvmetctl with every URL carries on, a new single
 * MASTER, nothing acknowledged is lost, the old leader comes back in line. */
static void test_leader_killed(void **state)
{
    (void)state;
    struct cl c = {0};
    cluster_up(&c, 3, -1, NULL);
    int l = wait_leader(&c, 10000);
    assert_true(l >= 0);
    usleep(1500000);
    setup_config(&c, c.urls);
    h_node_kill(&c.n[l], SIGKILL);
    h_node_wait(&c.n[l]);
    long t0 = h_now_ms();
    struct nv *s = ok_url(&c, c.urls, "nvmet.subsys.create",
                          "{\"name\": \"nqn.2024-01.com.example:after\"}", NULL);
    printf("# write accepted %ld ms after the leader was killed\n", h_now_ms() - t0);
    assert_int_equal(nv_get_int(s, "id", 0), 2);
    nv_free(s);
    assert_int_equal(wait_one_master(&c, 10000), 0);
    printf("# one MASTER again %ld ms after the kill\n", h_now_ms() - t0);
    assert_int_equal(start_node(&c, l, NULL), 0);
    struct nv *q = ok_url(&c, c.urls, "nvmet.subsys.query", "[]", "{\"count\": true}");
    assert_int_equal(q->u.i, 2);
    nv_free(q);
    assert_int_equal(wait_same_trees(&c, l, (l + 1) % 3, 10000), 0);
    assert_int_equal(count_masters(&c, NULL), 1);
    cluster_down(&c);
}

/* Lost quorum: a bounded NO_QUORUM, never a hang. */
static void test_no_quorum(void **state)
{
    (void)state;
    struct cl c = {0};
    cluster_up(&c, 3, -1, NULL);
    int l = wait_leader(&c, 10000);
    assert_true(l >= 0);
    int a = (l + 1) % 3, b = (l + 2) % 3;
    h_node_kill(&c.n[a], SIGKILL);
    h_node_kill(&c.n[b], SIGKILL);
    h_node_wait(&c.n[a]);
    h_node_wait(&c.n[b]);
    long t0 = h_now_ms();
    struct h_out o;
    h_ctl(&c.n[l], &o, "nvmet.subsys.create", "{\"name\": \"nqn.2024-01.com.example:nq\"}",
          (char *)NULL);
    long took = h_now_ms() - t0;
    printf("# answered in %ld ms: %s", took, o.err);
    assert_int_equal(o.code, 1);
    assert_true(strstr(o.err, "ENOQUORUM") != NULL || strstr(o.err, "ELEADERSHIPLOST") != NULL);
    assert_true(took < 10000);
    h_out_free(&o);
    cluster_down(&c);
}

/* Two data nodes and a witness: the witness renders nothing and does not
 * stay leader; losing the active data node moves the role to the other. */
static void test_witness(void **state)
{
    (void)state;
    struct cl c = {0};
    cluster_up(&c, 3, 2, NULL);
    assert_true(wait_leader(&c, 10000) >= 0);
    usleep(1500000);
    setup_config(&c, c.urls);
    assert_int_equal(wait_one_master(&c, 10000), 0);
    /* the witness never holds leadership for long */
    long deadline = h_now_ms() + 10000;
    int l;
    while ((l = wait_leader(&c, 5000)) == 2 && h_now_ms() < deadline) {
        usleep(100000);
    }
    assert_true(l == 0 || l == 1);
    struct h_out o;
    h_ctl(&c.n[2], &o, "failover.status", (char *)NULL);
    assert_string_equal(o.out, "BACKUP\n");
    h_out_free(&o);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -z \"$(find %s -mindepth 1 2>/dev/null)\"", c.n[2].configfs);
    assert_int_equal(system(cmd), 0);
    /* the active data node dies: the other data node becomes MASTER */
    h_node_kill(&c.n[l], SIGKILL);
    h_node_wait(&c.n[l]);
    long t0 = h_now_ms();
    int one = wait_one_master(&c, 15000);
    for (int i = 0; one != 0 && i < c.count; i++) {
        h_node_print_log(&c.n[i]);
    }
    assert_int_equal(one, 0);
    printf("# the other data node is MASTER %ld ms after the kill\n", h_now_ms() - t0);
    h_ctl(&c.n[1 - l], &o, "failover.status", (char *)NULL);
    assert_string_equal(o.out, "MASTER\n");
    h_out_free(&o);
    cluster_down(&c);
}

/* --join through a member's RPC address, then remove; a node that was
 * away for 20,000 entries catches up by snapshot install. */
static void test_membership_and_catch_up(void **state)
{
    (void)state;
    struct cl c = {0};
    const char *more[] = {"--snapshot-threshold", "64", "--election-timeout", "1000", NULL};
    cluster_up(&c, 3, -1, more);
    assert_true(wait_leader(&c, 10000) >= 0);
    usleep(1500000);
    /* a fourth node joins */
    h_node_init(&c.n[3], c.base, 4);
    char join[64];
    snprintf(join, sizeof join, "127.0.0.1:%d", c.n[0].rpc_port);
    const char *jargs[] = {"--join", join, "--snapshot-threshold", "64",
                           "--election-timeout", "1000", NULL};
    assert_int_equal(h_node_start(&c.n[3], jargs), 0);
    long deadline = h_now_ms() + 20000;
    size_t members = 0;
    while (h_now_ms() < deadline && members != 4) {
        struct nv *s = local_status(&c.n[0]);
        members = 0;
        const struct nv *m = nv_get(s, "members");
        for (size_t i = 0; i < nv_len(m); i++) {
            const char *role = nv_get_str(nv_at(m, i), "raft_role");
            members += role != NULL && strcmp(role, "voter") == 0;
        }
        nv_free(s);
        usleep(100000);
    }
    assert_int_equal(members, 4);
    c.count = 4;
    /* node 3 goes away while 20,000 entries are written */
    h_node_kill(&c.n[2], SIGKILL);
    h_node_wait(&c.n[2]);
    int l = wait_leader(&c, 10000);
    assert_true(l >= 0 && l != 2);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char ep[400];
    snprintf(ep, sizeof ep, "unix:%s", c.n[l].sock);
    struct rpc_client *cli;
    assert_int_equal(rpc_client_open(&loop, ep, NULL, &cli), 0);
    int done = 0, failed = 0, n_retry = 0;
    const int total = 20000, window = 64; /* several Raft entries per window */
    int *retry = calloc(total, sizeof *retry);
    int sent = 0, inflight_base = 0;
    long t0 = h_now_ms();
    while (done < total && h_now_ms() - t0 < 120000) {
        while ((sent < total || n_retry > 0) && sent + inflight_base - done - failed < window) {
            int i;
            if (n_retry > 0) {
                i = retry[--n_retry];
                inflight_base++;
            } else {
                i = sent++;
            }
            struct nv *p = nv_arr();
            struct nv *a = nv_map();
            nv_set(a, "hostnqn", nv_strf("nqn.2024-01.com.example:h%05d", i));
            nv_push(p, a);
            struct tc *t = malloc(sizeof *t);
            *t = (struct tc){&done, &failed, i, retry, &n_retry};
            rpc_client_call(cli, "nvmet.host.create", p, -1, tc_count, t);
        }
        if (failed > 0 && n_retry > 0) {
            usleep(100000); /* a leader change: give the election a moment */
            /* the connection goes to whichever node this was; keep it */
        }
        uv_run(&loop, UV_RUN_ONCE);
    }
    printf("# %d creates were retried after leadership changes\n", failed);
    free(retry);
    rpc_client_close(cli);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    printf("# 20000 host creates in %ld ms\n", h_now_ms() - t0);
    assert_int_equal(done, total);
    /* node 3 returns and catches up (snapshot install: the log was compacted) */
    assert_int_equal(start_node(&c, 2, more), 0);
    deadline = h_now_ms() + 60000;
    int64_t have = -1;
    while (h_now_ms() < deadline && have != total) {
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(&c.n[2], "nvmet.host.query",
                              "[[], {\"count\": true, \"extra\": {\"consistency\": \"local\"}}]", &e);
        nv_err_clear(&e);
        have = nv_is(r, NV_INT) ? r->u.i : -1;
        nv_free(r);
        usleep(200000);
    }
    assert_int_equal(have, total);
    struct nv *s = local_status(&c.n[2]);
    printf("# node 3 caught up: snapshot index %lld\n",
           (long long)nv_get_int(nv_get(s, "node"), "snapshot_index", 0));
    assert_true(nv_get_int(nv_get(s, "node"), "snapshot_index", 0) > 0);
    nv_free(s);
    /* remove node 4: the cluster goes on with three */
    char *u = url_of(&c.n[0]);
    struct nv *r = ok_url(&c, u, "cluster.node.remove", "4", NULL);
    nv_free(r);
    free(u);
    s = local_status(&c.n[0]);
    assert_int_equal(nv_len(nv_get(s, "members")), 3);
    nv_free(s);
    /* the removed node still runs: its writes are refused */
    struct h_out o;
    h_ctl(&c.n[3], &o, "nvmet.subsys.create", "{\"name\": \"nqn.2024-01.com.example:late\"}",
          (char *)NULL);
    printf("# a write to the removed node: %s", o.err);
    assert_int_equal(o.code, 1);
    assert_non_null(strstr(o.err, "not a member"));
    h_out_free(&o);
    cluster_down(&c);
}

/* A create counts when it was applied (or applied before: "already
 * exists" after a leadership change); others are sent again. */
void tc_count(void *arg, int status, const struct nv *r, const struct nv_err *e)
{
    (void)r;
    struct tc *t = arg;
    char *reason = e != NULL && nv_err_isset(e) ? nv_err_reason(e) : NULL;
    if (status == 0 && (reason == NULL || strstr(reason, "already exists") != NULL)) {
        (*t->done)++;
    } else {
        (*t->failed)++;
        t->retry[(*t->n_retry)++] = t->i;
    }
    free(reason);
    free(t);
}

/* A restart with another --cluster list, and a foreign data dir, are refused. */
static void test_mismatched_lists(void **state)
{
    (void)state;
    struct cl c = {0};
    cluster_up(&c, 3, -1, NULL);
    assert_true(wait_leader(&c, 10000) >= 0);
    h_node_kill(&c.n[2], SIGTERM);
    h_node_wait(&c.n[2]);
    char other[512];
    snprintf(other, sizeof other, "%s,9=127.0.0.1:1", c.list);
    char id[8], raft[32];
    snprintf(id, sizeof id, "3");
    snprintf(raft, sizeof raft, "127.0.0.1:%d", c.n[2].raft_port);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s --id 3 --data-dir %s --raft %s --socket %s/x.sock --configfs %s --emulate --cluster %s "
             "--raft-psk-file %s 2>&1 | grep -q 'belongs to the cluster'",
             NVMETD_BIN, c.n[2].data, raft, c.n[2].dir, c.n[2].configfs, other, c.n[2].psk);
    assert_int_equal(system(cmd), 0);
    /* node 2's data dir under node 3's id */
    snprintf(cmd, sizeof cmd,
             "%s --id 3 --data-dir %s --raft %s --socket %s/x.sock --configfs %s --emulate --cluster %s "
             "--raft-psk-file %s 2>&1 | grep -q 'belongs to node'",
             NVMETD_BIN, c.n[1].data, raft, c.n[2].dir, c.n[2].configfs, c.list, c.n[2].psk);
    h_node_kill(&c.n[1], SIGTERM);
    h_node_wait(&c.n[1]);
    assert_int_equal(system(cmd), 0);
    cluster_down(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_any_node_answers, teardown),
        cmocka_unit_test_teardown(test_leader_killed, teardown),
        cmocka_unit_test_teardown(test_no_quorum, teardown),
        cmocka_unit_test_teardown(test_witness, teardown),
        cmocka_unit_test_teardown(test_membership_and_catch_up, teardown),
        cmocka_unit_test_teardown(test_mismatched_lists, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
