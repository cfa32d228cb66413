/* Integration tests of core.subscribe with real nvmetd processes on
 * loopback: on a 3-node cluster a client of a FOLLOWER sees ADDED /
 * CHANGED / REMOVED events, in commit order and with the entries' fields,
 * for writes made through the leader; a readonly API key sees the
 * DH-CHAP keys masked while the admin sees them; "*" gets every
 * collection (nvmet.global included); core.unsubscribe stops them; an
 * unknown collection is refused with the list of valid ones; the real
 * `nvmetctl subscribe --count` prints the events as JSON lines. With two
 * data nodes and a witness, the surviving data node's subscribers see
 * failover.status turn MASTER when the active node is killed. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "harness.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

#define MAXN 3

struct rig {
    char base[256];
    struct h_node n[MAXN];
    int count;
    char admin_key[128], ro_key[128];
    char admin_line[256], ro_line[256];
};

static struct rig *current;

static void rig_down(struct rig *r)
{
    h_nodes_down(r->n, MAXN);
    if (r->base[0] != '\0') {
        h_rmrf(r->base);
    }
    current = NULL;
}

static int teardown(void **state)
{
    (void)state;
    if (current != NULL) {
        rig_down(current);
    }
    return 0;
}

/* `nvmetctl key generate`: its two lines, the key and the file line. */
static void generate(const char *name, const char *role, char *key, size_t klen, char *line,
                     size_t llen)
{
    assert_int_equal(h_key_generate(name, role, key, klen, line, llen), 0);
}

static void write_keys(const struct rig *r, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n%s\n", r->admin_line, r->ro_line);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
}

/* count nodes, node witness_idx (or -1) a witness. */
static void rig_up(struct rig *r, int count, int witness_idx)
{
    memset(r, 0, sizeof *r);
    current = r;
    h_tmpdir(r->base, sizeof r->base);
    r->count = count;
    generate("ops", "admin", r->admin_key, sizeof r->admin_key, r->admin_line,
             sizeof r->admin_line);
    generate("monitor", "readonly", r->ro_key, sizeof r->ro_key, r->ro_line, sizeof r->ro_line);
    char list[512];
    size_t o = 0;
    for (int i = 0; i < count; i++) {
        h_node_init(&r->n[i], r->base, i + 1);
        write_keys(r, r->n[i].keyfile);
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%d=127.0.0.1:%d", i ? "," : "", i + 1,
                              r->n[i].raft_port);
    }
    for (int i = 0; i < count; i++) {
        const char *args[] = {"--cluster", list, i == witness_idx ? "--witness" : NULL, NULL};
        assert_int_equal(h_node_start(&r->n[i], args), 0);
    }
}

/* Index of the ready leader, waiting up to ms; -1 if none. */
static int wait_leader(const struct rig *r, int ms)
{
    return h_wait_leader(r->n, r->count, ms);
}

static struct nv *must(const struct h_node *n, const char *method, const char *params)
{
    struct nv *v = h_call_ok(n, method, params);
    assert_non_null(v);
    return v;
}

/* ---- a subscriber: an rpc client on the test's loop ---- */

struct sub {
    uv_loop_t *loop;
    struct rpc_client *c;
    struct nv *events; /* the collection_update events, in arrival order */
    int answers, errors;
    char last_error[512];
};

static void sub_notify(void *arg, const char *method, const struct nv *params)
{
    struct sub *s = arg;
    if (strcmp(method, RPC_EVENT_METHOD) == 0 && nv_len(params) == 1) {
        nv_push(s->events, nv_copy(nv_at(params, 0)));
    }
}

static void sub_answer(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)result;
    struct sub *s = arg;
    s->answers++;
    if (status < 0 || (err != NULL && nv_err_isset(err))) {
        s->errors++;
        char *why = err != NULL ? nv_err_reason(err) : NULL;
        snprintf(s->last_error, sizeof s->last_error, "%s", why ? why : "?");
        free(why);
    }
}

static void pump(uv_loop_t *loop, int ms)
{
    long deadline = h_now_ms() + ms;
    while (h_now_ms() < deadline) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
}

/* Over TCP with key (TLS with the cluster's CA), or the unix socket
 * when key is NULL (root: admin). */
static void sub_open(struct sub *s, uv_loop_t *loop, const struct h_node *n, const char *key)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->events = nv_arr();
    char ep[400];
    struct rpc_tls_opts tls = {.ca_file = n->cacert};
    if (key != NULL) {
        snprintf(ep, sizeof ep, "127.0.0.1:%d", n->rpc_port);
    } else {
        snprintf(ep, sizeof ep, "unix:%s", n->sock);
    }
    assert_int_equal(rpc_client_open(loop, ep, &tls, &s->c), 0);
    rpc_client_on_notify(s->c, sub_notify, s);
    if (key != NULL) {
        assert_int_equal(rpc_client_login(s->c, key), 0);
    }
}

/* One call on the subscriber's connection, waited for (10 s at most):
 * 0, or -1 with last_error. */
static int sub_call(struct sub *s, const char *method, const char *arg)
{
    struct nv *p = nv_arr();
    nv_push(p, nv_str(arg));
    int before = s->answers, errs = s->errors;
    assert_int_equal(rpc_client_call(s->c, method, p, -1, sub_answer, s), 0);
    long deadline = h_now_ms() + 10000;
    while (s->answers == before && h_now_ms() < deadline) {
        uv_run(s->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    assert_int_not_equal(s->answers, before);
    return s->errors == errs ? 0 : -1;
}

/* Wait (bounded) until s holds at least n events. */
static void sub_wait(struct sub *s, size_t n, int ms)
{
    long deadline = h_now_ms() + ms;
    while (nv_len(s->events) < n && h_now_ms() < deadline) {
        uv_run(s->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    if (nv_len(s->events) < n) {
        char *d = nv_dump(s->events);
        fail_msg("%zu events of %zu within %d ms: %s", nv_len(s->events), n, ms, d ? d : "");
    }
}

static void sub_close(struct sub *s)
{
    rpc_client_close(s->c);
    uv_run(s->loop, UV_RUN_NOWAIT);
    nv_free(s->events);
    s->events = NULL;
}

static const char *ev_str(const struct nv *ev, const char *key)
{
    const char *v = nv_get_str(ev, key);
    return v != NULL ? v : "";
}

static void assert_event(const struct nv *ev, const char *msg, const char *coll, int64_t id)
{
    if (strcmp(ev_str(ev, "msg"), msg) != 0 || strcmp(ev_str(ev, "collection"), coll) != 0 ||
        !nv_is(nv_get(ev, "id"), NV_INT) || nv_get(ev, "id")->u.i != id) {
        char *d = nv_dump(ev);
        fail_msg("expected %s %s %lld, got %s", msg, coll, (long long)id, d ? d : "");
    }
}

/* The first event of collection coll in s from index *at on (advanced
 * past it), NULL if none. */
static const struct nv *next_of(const struct sub *s, const char *coll, size_t *at)
{
    for (; *at < nv_len(s->events); (*at)++) {
        const struct nv *ev = nv_at(s->events, *at);
        if (strcmp(ev_str(ev, "collection"), coll) == 0) {
            (*at)++;
            return ev;
        }
    }
    return NULL;
}

static size_t count_of(const struct sub *s, const char *coll)
{
    size_t n = 0, at = 0;
    while (next_of(s, coll, &at) != NULL) {
        n++;
    }
    return n;
}

/* nvmetctl --socket SOCK subscribe --count N --timeout 30 COLL in the
 * background, its standard output into out. */
static pid_t ctl_subscribe(const struct h_node *n, const char *out, const char *errf, int count,
                           const char *coll)
{
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%d", count);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen(out, "w", stdout) == NULL || freopen(errf, "w", stderr) == NULL) {
            _exit(126);
        }
        execl(NVMETCTL_BIN, NVMETCTL_BIN, "--socket", n->sock, "subscribe", "--count", cnt,
              "--timeout", "30", coll, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Wait (bounded) until file holds text. */
static bool wait_file_has(const char *path, const char *text, int ms)
{
    long deadline = h_now_ms() + ms;
    while (h_now_ms() < deadline) {
        char *s = h_read(path);
        bool ok = s != NULL && strstr(s, text) != NULL;
        free(s);
        if (ok) {
            return true;
        }
        usleep(20000);
    }
    return false;
}

static void test_follower_events(void **state)
{
    (void)state;
    struct rig r;
    rig_up(&r, 3, -1);
    int l = wait_leader(&r, 15000);
    assert_true(l >= 0);
    int f = (l + 1) % 3;
    usleep(1000000); /* the members register */
    uv_loop_t loop;
    uv_loop_init(&loop);

    /* admin on the follower's unix socket: subsystems and hosts */
    struct sub adm, ro, all;
    sub_open(&adm, &loop, &r.n[f], NULL);
    assert_int_equal(sub_call(&adm, "core.subscribe", "nvmet.subsys"), 0);
    assert_int_equal(sub_call(&adm, "core.subscribe", "nvmet.host"), 0);
    /* unknown names are refused with the list of valid ones */
    assert_int_equal(sub_call(&adm, "core.subscribe", "nvmet.nope"), -1);
    assert_non_null(strstr(adm.last_error, "Unknown collection 'nvmet.nope'"));
    assert_non_null(strstr(adm.last_error, "nvmet.port_subsys"));
    assert_non_null(strstr(adm.last_error, "failover.status"));
    /* readonly over TLS on the same follower: hosts */
    sub_open(&ro, &loop, &r.n[f], r.ro_key);
    assert_int_equal(sub_call(&ro, "core.subscribe", "nvmet.host"), 0);
    /* admin key over TCP on the third node: everything */
    sub_open(&all, &loop, &r.n[(l + 2) % 3], r.admin_key);
    assert_int_equal(sub_call(&all, "core.subscribe", "*"), 0);
    /* nvmetctl subscribe on the follower, 3 subsystem events */
    char out[400], errf[400];
    snprintf(out, sizeof out, "%s/ctl-sub.out", r.base);
    snprintf(errf, sizeof errf, "%s/ctl-sub.err", r.base);
    pid_t ctl = ctl_subscribe(&r.n[f], out, errf, 3, "nvmet.subsys");
    assert_true(wait_file_has(errf, "subscribed to nvmet.subsys", 10000));

    /* writes through the leader */
    const struct h_node *ld = &r.n[l];
    struct nv *v = must(ld, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:s1\"}]");
    int64_t sid = nv_get_int(v, "id", -1);
    nv_free(v);
    nv_free(must(ld, "nvmet.subsys.update", "[1, {\"allow_any_host\": true}]"));
    struct nv *k = must(ld, "nvmet.host.generate_key", "[\"SHA-256\"]");
    assert_true(nv_is(k, NV_STR));
    char params[1024];
    snprintf(params, sizeof params,
             "[{\"hostnqn\": \"nqn.2014-08.org.example:host1\", \"dhchap_key\": \"%s\"}]",
             k->u.s.p);
    nv_free(must(ld, "nvmet.host.create", params));
    nv_free(must(ld, "nvmet.host.update", "[1, {\"description\": \"rack 4\"}]"));
    nv_free(must(ld, "nvmet.subsys.delete", "[1]"));
    nv_free(must(ld, "nvmet.global.update", "[{\"enabled\": true}]"));

    /* admin on the follower: subsys ADDED, CHANGED, REMOVED in order,
     * and the hosts with the real key */
    sub_wait(&adm, 5, 10000);
    size_t at = 0;
    const struct nv *ev = next_of(&adm, "nvmet.subsys", &at);
    assert_event(ev, "ADDED", "nvmet.subsys", sid);
    assert_string_equal(nv_get_str(nv_get(ev, "fields"), "name"), "nqn.2024-01.com.example:s1");
    assert_false(nv_get_bool(nv_get(ev, "fields"), "allow_any_host", true));
    ev = next_of(&adm, "nvmet.subsys", &at);
    assert_event(ev, "CHANGED", "nvmet.subsys", sid);
    assert_true(nv_get_bool(nv_get(ev, "fields"), "allow_any_host", false));
    ev = next_of(&adm, "nvmet.subsys", &at);
    assert_event(ev, "REMOVED", "nvmet.subsys", sid);
    assert_int_equal(nv_get_int(nv_get(ev, "fields"), "id", -1), sid);
    at = 0;
    ev = next_of(&adm, "nvmet.host", &at);
    assert_event(ev, "ADDED", "nvmet.host", 1);
    assert_string_equal(nv_get_str(nv_get(ev, "fields"), "dhchap_key"), k->u.s.p);
    ev = next_of(&adm, "nvmet.host", &at);
    assert_event(ev, "CHANGED", "nvmet.host", 1);
    assert_string_equal(nv_get_str(nv_get(ev, "fields"), "description"), "rack 4");
    /* the order across collections is the commit order */
    assert_string_equal(ev_str(nv_at(adm.events, 0), "msg"), "ADDED");
    assert_string_equal(ev_str(nv_at(adm.events, 1), "msg"), "CHANGED");
    assert_string_equal(ev_str(nv_at(adm.events, 2), "collection"), "nvmet.host");
    assert_string_equal(ev_str(nv_at(adm.events, 4), "msg"), "REMOVED");
    /* no nvmet.global for a connection that did not ask */
    pump(&loop, 300);
    assert_int_equal(count_of(&adm, "nvmet.global"), 0);

    /* readonly: the same host events, the key masked */
    sub_wait(&ro, 2, 10000);
    assert_int_equal(count_of(&ro, "nvmet.subsys"), 0);
    ev = nv_at(ro.events, 0);
    assert_event(ev, "ADDED", "nvmet.host", 1);
    assert_string_equal(nv_get_str(nv_get(ev, "fields"), "dhchap_key"), "********");
    assert_string_equal(nv_get_str(nv_get(nv_at(ro.events, 1), "fields"), "dhchap_key"),
                        "********");

    /* "*": every collection, the global row too */
    sub_wait(&all, 6, 10000);
    assert_int_equal(count_of(&all, "nvmet.subsys"), 3);
    assert_int_equal(count_of(&all, "nvmet.host"), 2);
    at = 0;
    ev = next_of(&all, "nvmet.global", &at);
    assert_non_null(ev);
    assert_event(ev, "CHANGED", "nvmet.global", 1);
    assert_true(nv_get_bool(nv_get(ev, "fields"), "enabled", false));

    /* nvmetctl subscribe printed the three subsystem events and exited */
    int st = 0;
    long deadline = h_now_ms() + 10000;
    pid_t w = 0;
    while ((w = waitpid(ctl, &st, WNOHANG)) == 0 && h_now_ms() < deadline) {
        usleep(20000);
    }
    if (w != ctl) {
        kill(ctl, SIGKILL);
        waitpid(ctl, &st, 0);
        fail_msg("nvmetctl subscribe --count 3 did not exit");
    }
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *text = h_read(out);
    assert_non_null(text);
    char *save = NULL;
    const char *want[] = {"ADDED", "CHANGED", "REMOVED"};
    int lines = 0;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        struct nv *e = nv_from_json(line);
        assert_non_null(e);
        assert_true(lines < 3);
        assert_event(e, want[lines], "nvmet.subsys", sid);
        nv_free(e);
        lines++;
    }
    assert_int_equal(lines, 3);
    free(text);

    /* unsubscribe: no more subsystem events, hosts still come */
    assert_int_equal(sub_call(&adm, "core.unsubscribe", "nvmet.subsys"), 0);
    size_t had = nv_len(adm.events);
    nv_free(must(ld, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:s2\"}]"));
    nv_free(must(ld, "nvmet.host.delete", "[1]"));
    sub_wait(&adm, had + 1, 10000);
    ev = nv_at(adm.events, had);
    assert_event(ev, "REMOVED", "nvmet.host", 1);
    pump(&loop, 300);
    assert_int_equal(nv_len(adm.events), had + 1);

    sub_close(&adm);
    sub_close(&ro);
    sub_close(&all);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    nv_free(k);
    rig_down(&r);
}

/* failover.status of node i ("MASTER", ...), NULL if it does not answer. */
static char *fo_status_of(const struct h_node *n)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *v = h_call(n, "failover.status", NULL, &e);
    nv_err_clear(&e);
    char *s = nv_is(v, NV_STR) ? strdup(v->u.s.p) : NULL;
    nv_free(v);
    return s;
}

static int wait_master(const struct rig *r, int ms)
{
    long deadline = h_now_ms() + ms;
    while (h_now_ms() < deadline) {
        for (int i = 0; i < 2; i++) {
            char *s = r->n[i].pid > 0 ? fo_status_of(&r->n[i]) : NULL;
            bool m = s != NULL && strcmp(s, "MASTER") == 0;
            free(s);
            if (m) {
                return i;
            }
        }
        usleep(50000);
    }
    return -1;
}

static void test_failover_events(void **state)
{
    (void)state;
    struct rig r;
    rig_up(&r, 3, 2);
    assert_true(wait_leader(&r, 15000) >= 0);
    usleep(1500000);
    /* failover needs something to serve */
    struct nv_err e;
    nv_err_init(&e);
    int l = wait_leader(&r, 5000);
    assert_true(l >= 0);
    nv_free(must(&r.n[l], "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:s1\"}]"));
    int m = wait_master(&r, 15000);
    assert_true(m >= 0);
    int b = 1 - m;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sub s;
    sub_open(&s, &loop, &r.n[b], NULL);
    assert_int_equal(sub_call(&s, "core.subscribe", "failover.status"), 0);
    /* nvmetctl subscribe on the active node first, the survivor second:
     * it moves over when the active node dies */
    char keyf[400], out[400], errf[400], urls[128], cmd[2048];
    snprintf(keyf, sizeof keyf, "%s/admin.key", r.base);
    snprintf(out, sizeof out, "%s/ctl-fo.out", r.base);
    snprintf(errf, sizeof errf, "%s/ctl-fo.err", r.base);
    FILE *kf = fopen(keyf, "w");
    assert_non_null(kf);
    fprintf(kf, "%s\n", r.admin_key);
    fclose(kf);
    assert_int_equal(chmod(keyf, 0600), 0);
    snprintf(urls, sizeof urls, "127.0.0.1:%d,127.0.0.1:%d", r.n[m].rpc_port, r.n[b].rpc_port);
    pid_t ctl = fork();
    assert_true(ctl >= 0);
    if (ctl == 0) {
        if (freopen(out, "w", stdout) == NULL || freopen(errf, "w", stderr) == NULL) {
            _exit(126);
        }
        execl(NVMETCTL_BIN, NVMETCTL_BIN, "--url", urls, "--api-key-file", keyf, "--cacert",
              r.n[0].cacert, "subscribe", "--timeout", "60", "failover.status", "nvmet.subsys",
              (char *)NULL);
        _exit(127);
    }
    snprintf(cmd, sizeof cmd, "subscribed to failover.status nvmet.subsys at 127.0.0.1:%d",
             r.n[m].rpc_port);
    assert_true(wait_file_has(errf, cmd, 10000));
    pump(&loop, 1000); /* at least one check records where it starts from */
    size_t had = nv_len(s.events);
    h_node_kill(&r.n[m], SIGKILL);
    h_node_wait(&r.n[m]);
    /* the survivor's subscriber hears it become MASTER */
    long deadline = h_now_ms() + 20000;
    bool master = false;
    while (!master && h_now_ms() < deadline) {
        pump(&loop, 50);
        for (size_t i = had; i < nv_len(s.events); i++) {
            const struct nv *ev = nv_at(s.events, i);
            assert_event(ev, "CHANGED", "failover.status", b + 1);
            master = master || strcmp(ev_str(nv_get(ev, "fields"), "status"), "MASTER") == 0;
        }
    }
    if (!master) {
        char *d = nv_dump(s.events);
        fail_msg("no failover.status MASTER event: %s", d ? d : "");
    }
    const struct nv *last = nv_at(s.events, nv_len(s.events) - 1);
    assert_int_equal(nv_get_int(nv_get(last, "fields"), "active_node", -1), b + 1);
    printf("# %zu failover.status event(s) on the survivor\n", nv_len(s.events) - had);
    /* nvmetctl is subscribed on the survivor again, said so, and prints
     * its events */
    assert_true(wait_file_has(out, "\"RECONNECTED\"", 15000));
    nv_free(must(&r.n[b], "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:s2\"}]"));
    assert_true(wait_file_has(out, "nqn.2024-01.com.example:s2", 10000));
    kill(ctl, SIGINT);
    int st = 0;
    assert_int_equal(waitpid(ctl, &st, 0), ctl);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *text = h_read(out);
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        struct nv *obj = nv_from_json(line); /* every line is one JSON object */
        assert_true(nv_is(obj, NV_MAP));
        nv_free(obj);
        lines++;
    }
    free(text);
    printf("# nvmetctl subscribe printed %d line(s)\n", lines);
    sub_close(&s);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    nv_err_clear(&e);
    rig_down(&r);
}

/* config.restore is not row by row: nvmet.global CHANGED with the
 * entry, then one reload event per row collection. */
static void test_restore_reload(void **state)
{
    (void)state;
    struct rig r;
    rig_up(&r, 1, -1);
    nv_free(must(&r.n[0], "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:s1\"}]"));
    struct nv *doc = must(&r.n[0], "config.save", NULL);
    h_node_kill(&r.n[0], SIGKILL);
    h_node_wait(&r.n[0]);
    h_rmrf(r.n[0].data);
    h_rmrf(r.n[0].configfs);
    assert_int_equal(mkdir(r.n[0].data, 0700), 0);
    assert_int_equal(mkdir(r.n[0].configfs, 0700), 0);
    assert_int_equal(h_node_start(&r.n[0], NULL), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sub s;
    sub_open(&s, &loop, &r.n[0], NULL);
    assert_int_equal(sub_call(&s, "core.subscribe", "*"), 0);
    pump(&loop, 300);
    size_t had = nv_len(s.events);
    char *text = nv_to_json(doc);
    char *params = NULL;
    assert_true(asprintf(&params, "[%s]", text) > 0);
    nv_free(must(&r.n[0], "config.restore", params));
    sub_wait(&s, had + 7, 10000);
    const struct nv *ev = nv_at(s.events, had);
    assert_event(ev, "CHANGED", "nvmet.global", 1);
    assert_non_null(nv_get_str(nv_get(ev, "fields"), "basenqn"));
    static const char *const colls[] = {"nvmet.subsys", "nvmet.namespace",   "nvmet.port",
                                        "nvmet.host",   "nvmet.host_subsys", "nvmet.port_subsys"};
    for (size_t i = 0; i < 6; i++) {
        ev = nv_at(s.events, had + 1 + i);
        assert_string_equal(ev_str(ev, "collection"), colls[i]);
        assert_string_equal(ev_str(ev, "msg"), "CHANGED");
        assert_true(nv_is(nv_get(ev, "id"), NV_NIL));
        assert_true(nv_get_bool(ev, "reload", false));
    }
    pump(&loop, 300);
    assert_int_equal(nv_len(s.events), had + 7);
    free(params);
    free(text);
    nv_free(doc);
    sub_close(&s);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    rig_down(&r);
}

/* A subscriber that stops reading is closed (and logged) once 8 MiB of
 * events wait for it; a subscriber that reads gets every event. 10,000
 * host updates with 1,000-character descriptions (11 MB of events) run
 * through nvmetctl batch meanwhile. */
static void test_slow_subscriber(void **state)
{
    (void)state;
    struct rig r;
    rig_up(&r, 1, -1);
    const struct h_node *n = &r.n[0];
    nv_free(must(n, "nvmet.host.create", "[{\"hostnqn\": \"nqn.2014-08.org.example:h1\"}]"));
    /* the stuck one: a raw socket that subscribes and never reads */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", n->sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct nv *req = nv_arr();
    nv_push(req, nv_int(0));
    nv_push(req, nv_int(1));
    nv_push(req, nv_str("core.subscribe"));
    struct nv *args = nv_arr();
    nv_push(args, nv_str("nvmet.host"));
    nv_push(req, args);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(nv_encode(req, &buf, &len), 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    free(buf);
    nv_free(req);
    /* the reading one */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sub s;
    sub_open(&s, &loop, n, NULL);
    assert_int_equal(sub_call(&s, "core.subscribe", "nvmet.host"), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/updates.jsonl", r.base);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    enum { UPDATES = 10000 };
    char desc[1001];
    for (int i = 0; i < UPDATES; i++) {
        memset(desc, 'a' + i % 26, sizeof desc - 1);
        desc[sizeof desc - 1] = '\0';
        fprintf(f, "[\"nvmet.host.update\", 1, {\"description\": \"%d-%s\"}]\n", i,
                desc + 10); /* 990 + the prefix: within the 1024 allowed */
    }
    fclose(f);
    pid_t b = fork();
    assert_true(b >= 0);
    if (b == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL) {
            _exit(126);
        }
        execl(NVMETCTL_BIN, NVMETCTL_BIN, "--socket", n->sock, "--timeout", "120", "batch", path,
              (char *)NULL);
        _exit(127);
    }
    sub_wait(&s, UPDATES, 120000);
    int st = 0;
    assert_int_equal(waitpid(b, &st, 0), b);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(nv_len(s.events), UPDATES);
    const struct nv *last = nv_at(s.events, UPDATES - 1);
    assert_event(last, "CHANGED", "nvmet.host", 1);
    char want[16];
    snprintf(want, sizeof want, "%d-", UPDATES - 1);
    assert_memory_equal(nv_get_str(nv_get(last, "fields"), "description"), want, strlen(want));
    /* the stuck one was closed: its socket ends after what was queued */
    long deadline = h_now_ms() + 10000;
    bool eof = false;
    size_t got = 0;
    char rb[65536];
    while (!eof && h_now_ms() < deadline) {
        ssize_t k = recv(fd, rb, sizeof rb, MSG_DONTWAIT);
        if (k == 0) {
            eof = true;
        } else if (k > 0) {
            got += (size_t)k;
        } else {
            usleep(10000);
        }
    }
    close(fd);
    assert_true(eof);
    printf("# the stuck subscriber got %zu bytes before it was closed\n", got);
    assert_true(got < (size_t)UPDATES * 1000);
    char *log = h_read(n->log);
    assert_non_null(log);
    assert_non_null(strstr(log, "a subscriber that does not read its events"));
    free(log);
    sub_close(&s);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    rig_down(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_follower_events, teardown),
        cmocka_unit_test_teardown(test_failover_events, teardown),
        cmocka_unit_test_teardown(test_restore_reload, teardown),
        cmocka_unit_test_teardown(test_slow_subscriber, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
