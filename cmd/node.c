/* node: wiring of one nvmetd (see node.h). The data flow:
 * rpc_write (sm_prepare -> encode -> cons_propose) -> (commit) -> sm_apply
 * on every node -> render target/ (and the committed FILE removals) ->
 * reply on the node that answered, with how its kernel took the write. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "metrics.h"
#include "node_int.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_log.h"

void node_log(const struct node *n, int level, const char *fmt, ...)
{
    (void)n; /* the process's one node: nv_log's ident names it */
    int prio = level == NODE_LOG_ERROR ? NV_LOG_ERR
               : level == NODE_LOG_INFO ? NV_LOG_INFO
                                        : NV_LOG_DEBUG;
    if (!nv_log_enabled(prio)) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    nv_logf(prio, "%s", line);
}

/* ------------------------------------------------------------------ */
/* rendering */

/* Whether a problem of the last pass is one of the waiting write's own:
 * a refusal of an object made from one of its rows (any refusal when the
 * write changed more than rows), or of the whole tree. */
static bool problem_is_theirs(const struct nv *p, const struct render_waiter *w)
{
    const char *obj = nv_get_str(p, "object");
    if (obj != NULL && strcmp(obj, "nvmet") == 0) {
        return true;
    }
    if (nv_get(p, "errno") == NULL) {
        return false;
    }
    if (w->all_rows) {
        return true;
    }
    const char *table = nv_get_str(p, "table");
    int t = table != NULL ? sm_table_of(table) : -1;
    int64_t id = nv_get_int(p, "id", -1);
    for (size_t i = 0; t >= 0 && i < w->n_rows; i++) {
        if ((int)w->rows[i].table == t && w->rows[i].id == id) {
            return true;
        }
    }
    return false;
}

/* How this node's kernel took the waiter's rows in the last pass. */
static struct rpc_render render_outcome(const struct node *n, const struct render_waiter *w)
{
    struct rpc_render out = {0};
    for (size_t i = 0; i < nv_len(n->last_problems); i++) {
        const struct nv *p = nv_at(n->last_problems, i);
        if (problem_is_theirs(p, w)) {
            int64_t e = nv_get_int(p, "errno", EIO);
            out.error = e > 0 && e < 4096 ? -(int)e : -EIO;
            out.object = nv_get_str(p, "object");
            out.message = nv_get_str(p, "error");
            break;
        }
    }
    return out;
}

/* Answer the waiters this node has rendered for (all: every one, the node
 * stops: no outcome). */
static void resolve_waiters(struct node *n, bool all)
{
    struct render_waiter **pp = &n->waiters;
    while (*pp != NULL) {
        struct render_waiter *w = *pp;
        if (all || w->generation <= n->rendered_gen) {
            *pp = w->next;
            struct rpc_render out = render_outcome(n, w);
            w->cb(w->arg, all ? NULL : &out);
            free(w->rows);
            free(w);
        } else {
            pp = &w->next;
        }
    }
    n->waiters_tail = &n->waiters;
    for (struct render_waiter *w = n->waiters; w != NULL; w = w->next) {
        n->waiters_tail = &w->next;
    }
}

/* ---- FILE backing files of deleted namespaces (sm_removals) ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The listed paths a namespace uses (again): sorted into paths[], those
 * in use set to NULL. One walk over the namespaces for the whole list. */
static void drop_used_paths(const struct sm_state *s, const char **paths, size_t n)
{
    qsort(paths, n, sizeof *paths, cmp_str);
    for (size_t i = 0; i < sm_rows(s, SM_NAMESPACE); i++) {
        const char *p = nv_get_str(sm_row(s, SM_NAMESPACE, i), "device_path");
        const char **hit = p != NULL ? bsearch(&p, paths, n, sizeof *paths, cmp_str) : NULL;
        if (hit != NULL) {
            *hit = "";
        }
    }
}

/* Whether configfs still holds the deleted namespace id (its removal
 * failed in this pass): the kernel may still have the file open. */
static bool ns_still_rendered(const struct nv *problems, int64_t id)
{
    for (size_t i = 0; i < nv_len(problems); i++) {
        const struct nv *p = nv_at(problems, i);
        const char *t = nv_get_str(p, "table");
        if (t != NULL && sm_table_of(t) == SM_NAMESPACE && nv_get_int(p, "id", -1) == id) {
            return true;
        }
    }
    return false;
}

static void removal_problem(struct tgt_report *rep, const char *path, int64_t id, int err)
{
    if (rep->problems == NULL) {
        rep->problems = nv_arr();
    }
    struct nv *p = nv_map();
    nv_set_str(p, "object", path);
    nv_set(p, "error", nv_strf("remove the backing file %s of deleted namespace %lld: %s", path,
                               (long long)id, strerror(-err)));
    nv_set_int(p, "errno", -err);
    nv_set_str(p, "errname", nv_errname(-err));
    nv_set_str(p, "table", sm_table_service(SM_NAMESPACE));
    nv_set_int(p, "id", id);
    nv_push(rep->problems, p);
    rep->errors++;
}

/* A namespace deleted with {"remove": true} took its FILE with it: the
 * path is in the committed list, and every data node removes it as part
 * of rendering, once no namespace uses it and configfs let the namespace
 * go. Done when the list may have changed, by every sweep, and by every
 * pass while one failed; a path already gone is a no-op. Returns the
 * number of problems it added to rep (of the namespace's row). */
static int render_removals(struct node *n, bool sweep, struct tgt_report *rep)
{
    const struct nv *list = sm_removals(n->sm);
    uint64_t gen = sm_generation(n->sm);
    size_t cnt = nv_len(list);
    if (cnt == 0 || (gen == n->removals_gen && !n->removals_failed && !sweep)) {
        return 0;
    }
    const char **paths = calloc(cnt, sizeof *paths);
    if (paths == NULL) {
        return 0; /* the next pass tries again */
    }
    for (size_t i = 0; i < cnt; i++) {
        paths[i] = nv_get_str(nv_at(list, i), "path");
    }
    drop_used_paths(n->sm, paths, cnt);
    int failed = 0, added = 0;
    for (size_t i = 0; i < cnt; i++) {
        const struct nv *e = nv_at(list, i);
        const char *path = nv_get_str(e, "path");
        int64_t id = nv_get_int(e, "namespace_id", -1);
        if (path == NULL || bsearch(&path, paths, cnt, sizeof *paths, cmp_str) == NULL) {
            continue; /* in use again */
        }
        if (ns_still_rendered(rep->problems, id)) {
            failed++; /* its configfs removal failed and is reported */
            continue;
        }
        int rv = tgt_remove_backing_file(n->tgt, path);
        if (rv < 0 && rv != -ENOENT) {
            removal_problem(rep, path, id, rv);
            failed++;
            added++;
        } else if (rv == 0) {
            node_log(n, NODE_LOG_DEBUG, "removed %s (namespace %lld was deleted with it)", path,
                     (long long)id);
        }
    }
    free(paths);
    n->removals_gen = gen;
    n->removals_failed = failed > 0;
    return added;
}

void node_render_pass(struct node *n)
{
    if (n->tgt == NULL || !n->caught_up) {
        /* no renderer, or the first pass after catching up is a sweep:
         * the changes so far say nothing it needs */
        sm_changes_clear(n->sm);
        n->render_full = false;
        return;
    }
    uint64_t t0 = uv_hrtime();
    struct tgt_view v = node_view(n);
    struct tgt_report rep = {0};
    uint64_t gen = sm_generation(n->sm);
    bool sweep = n->render_sweep;
    /* the rows the applies changed since the last pass: target/ renders
     * those (and what depends on them) instead of every row */
    struct sm_changes ch;
    sm_changes(n->sm, &ch);
    if (n->render_full) {
        ch = (struct sm_changes){.full = true}; /* see node_events_before_apply */
    }
    int errors = sweep ? tgt_reconcile(n->tgt, n->sm, &v, true, &rep)
                       : tgt_reconcile_changes(n->tgt, n->sm, &v, &ch, &rep);
    sm_changes_clear(n->sm);
    errors += render_removals(n, sweep, &rep);
    n->render_full = false;
    n->render_sweep = false;
    if (sweep) {
        n->last_sweep_ms = uv_now(n->loop);
    }
    n->render_passes++;
    nv_hist_add(&n->render_time, uv_hrtime() - t0);
    n->drift_total += rep.drift;
    if (rep.drift > 0) {
        node_log(n, NODE_LOG_INFO, "render: repaired %u drifted object(s)", rep.drift);
    }
    if (errors > 0 && (unsigned)errors != n->last_errors) {
        char *p = nv_dump(rep.problems);
        node_log(n, NODE_LOG_ERROR, "render: %d problem(s): %s", errors, p ? p : "");
        free(p);
    } else if (errors == 0 && n->last_errors > 0) {
        node_log(n, NODE_LOG_INFO, "render: configfs matches the committed state again");
    }
    n->last_errors = errors > 0 ? (unsigned)errors : 0;
    nv_free(n->last_problems);
    n->last_problems = rep.problems;
    rep.problems = NULL;
    tgt_report_clear(&rep);
    n->rendered_gen = gen;
    node_log(n, NODE_LOG_DEBUG, "render pass %llu: %.3f ms, %s",
             (unsigned long long)n->render_passes, (double)(uv_hrtime() - t0) / 1e6,
             sweep ? "sweep" : "incremental");
    resolve_waiters(n, false);
}

static void render_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    node_failover_update(n); /* failover sees what the applies changed first */
    node_render_pass(n);
}

static void schedule_render(struct node *n)
{
    if (!uv_is_active((uv_handle_t *)&n->render_timer) && !n->stopping) {
        uv_timer_start(&n->render_timer, render_timer_cb, 0, 0);
    }
}

void node_render_soon(struct node *n)
{
    schedule_render(n);
}

/* The periodic check: a slice of the rendered tree per tick, sized so
 * that a round takes about --sweep-interval, and no tick holds the loop
 * for long however big the configuration (a sweep of 10,000 namespaces
 * takes about a second: Raft heartbeats and the failover lease would
 * starve). A full sweep only when a slice finds what only a sweep
 * repairs, or, with no clean rendered tree to check against (failures a
 * full pass keeps retrying), once per interval. */
#define SWEEP_TICK_MS 100u

static unsigned sweep_tick_ms(const struct node *n)
{
    return n->cfg.sweep_interval_ms < SWEEP_TICK_MS ? n->cfg.sweep_interval_ms : SWEEP_TICK_MS;
}

static void sweep_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->tgt == NULL || !n->caught_up || n->render_sweep ||
        uv_is_active((uv_handle_t *)&n->render_timer)) {
        return; /* a pass is due anyway */
    }
    uint64_t ticks = n->cfg.sweep_interval_ms / sweep_tick_ms(n);
    size_t max = tgt_rendered_objects(n->tgt) / (size_t)(ticks ? ticks : 1) + 16;
    struct tgt_report rep = {0};
    bool round = false;
    int rv = tgt_verify_slice(n->tgt, max, &rep, &round);
    n->verify_rounds += round;
    n->drift_total += rep.drift;
    if (rep.drift > 0) {
        node_log(n, NODE_LOG_INFO, "render: repaired %u drifted object(s)", rep.drift);
    }
    tgt_report_clear(&rep);
    if (rv == -ESTALE || (rv == -EAGAIN && uv_now(n->loop) - n->last_sweep_ms >=
                                               (uint64_t)n->cfg.sweep_interval_ms)) {
        n->render_sweep = true;
        schedule_render(n);
    } else if (rv > 0) {
        schedule_render(n); /* a full pass retries and reports what failed */
    }
}

static int wait_rendered(void *ctx, const struct rpc_applied *a,
                         void (*cb)(void *arg, const struct rpc_render *outcome), void *arg)
{
    struct node *n = ctx;
    if (n->tgt == NULL || n->stopping) {
        return -ENOTSUP; /* witness: nothing to wait for */
    }
    struct render_waiter *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return -ENOMEM;
    }
    if (a->n_rows > 0) {
        w->rows = malloc(a->n_rows * sizeof *w->rows);
        if (w->rows == NULL) {
            free(w);
            return -ENOMEM;
        }
        memcpy(w->rows, a->rows, a->n_rows * sizeof *w->rows);
    }
    w->n_rows = a->n_rows;
    w->all_rows = a->all_rows;
    w->generation = a->generation;
    w->cb = cb;
    w->arg = arg;
    *n->waiters_tail = w;
    n->waiters_tail = &w->next;
    schedule_render(n);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the replicated state machine as consensus sees it */

/* The result of one apply for its proposer (struct rpc_applied): the
 * statemachine's result and the rows this apply added to the change list,
 * which say which render problems are the write's own. */
static struct rpc_applied *applied_new(struct node *n, struct sm_result *r, size_t from)
{
    struct rpc_applied *a = calloc(1, sizeof *a);
    if (a == NULL) {
        sm_result_free(r);
        return NULL;
    }
    a->res = r;
    a->generation = sm_generation(n->sm);
    struct sm_changes ch;
    sm_changes(n->sm, &ch);
    a->all_rows = ch.full; /* a change the list cannot name: every row */
    if (!ch.full && ch.n > from) {
        a->rows = malloc((ch.n - from) * sizeof *a->rows);
        if (a->rows == NULL) {
            a->all_rows = true;
        } else {
            memcpy(a->rows, ch.c + from, (ch.n - from) * sizeof *a->rows);
            a->n_rows = ch.n - from;
        }
    }
    return a;
}

static void *fsm_apply(void *data, const void *buf, size_t len)
{
    struct node *n = data;
    uint64_t before = sm_generation(n->sm);
    struct node_ev_mark ev;
    node_events_before_apply(n, &ev); /* may start an empty change list */
    struct sm_changes ch;
    sm_changes(n->sm, &ch); /* this apply's rows are listed from ch.n on */
    uint64_t t0 = uv_hrtime();
    struct sm_result *r = sm_apply(n->sm, buf, len);
    nv_hist_add(&n->apply_time, uv_hrtime() - t0);
    node_events_after_apply(n, &ev); /* this apply's own changes, in order */
    if (sm_generation(n->sm) != before) {
        schedule_render(n);
    }
    return r != NULL ? applied_new(n, r, ch.n) : NULL;
}

static void fsm_free_result(void *data, void *result)
{
    (void)data;
    rpc_applied_free(result);
}

static int fsm_snapshot(void *data, void **buf, size_t *len)
{
    struct node *n = data;
    char *b = NULL;
    int rv = sm_snapshot(n->sm, &b, len);
    *buf = b;
    return rv;
}

static int fsm_restore(void *data, const void *buf, size_t len)
{
    struct node *n = data;
    struct nv_err e;
    nv_err_init(&e);
    int rv = sm_restore(n->sm, buf, len, &e);
    if (rv < 0) {
        char *r = nv_err_reason(&e);
        node_log(n, NODE_LOG_ERROR, "restore snapshot: %s", r ? r : "failed");
        free(r);
    } else {
        n->render_sweep = true;
        schedule_render(n);
        node_events_restored(n);
    }
    nv_err_clear(&e);
    return rv;
}

/* ------------------------------------------------------------------ */
/* consensus notifications */

static void init_done(struct node *n, int status, struct sm_result *r, void *arg)
{
    (void)r;
    (void)arg;
    if (status < 0) {
        n->init_proposed = false; /* try again at the next leadership */
    }
}

/* The default basenqn is random and must be the same on every node: the
 * first leader proposes it (sm "nvmet.global.init"). */
static void propose_init(struct node *n)
{
    if (n->init_proposed || sm_initialized(n->sm)) {
        return;
    }
    if (node_propose_own(n, "nvmet.global.init", NULL, init_done, NULL) == 0) {
        n->init_proposed = true;
    }
}

static void on_change(void *arg, const struct cons_status *st)
{
    struct node *n = arg;
    if (st->start_error < 0) {
        node_log(n, NODE_LOG_ERROR, "raft: %s", st->start_msg);
        if (n->cfg.exit_status != NULL) {
            *n->cfg.exit_status = 1;
        }
        node_stop(n, NULL, NULL);
        return;
    }
    if (st->storage_stop) {
        /* libraft 0.15 cannot step down: stopping is how another member
         * takes over (a supervisor restarts us; the start-up space check
         * says when the disk is still full) */
        node_log(n, NODE_LOG_ERROR,
                 "raft: this leader cannot write its log in %s (%s): stopping so that another "
                 "member leads (cluster.status node.storage on the others)",
                 n->cfg.data_dir, strerror(-st->storage_error));
        if (n->cfg.exit_status != NULL) {
            *n->cfg.exit_status = 1;
        }
        node_stop(n, NULL, NULL);
        return;
    }
    bool caught = (st->state == CONS_LEADER && st->ready) ||
                  (st->state == CONS_FOLLOWER && st->leader_id != 0 &&
                   st->last_applied >= st->commit_index && st->commit_index > 0);
    if (caught && !n->caught_up) {
        n->caught_up = true;
        n->render_sweep = true; /* the first render after a start repairs everything */
        node_log(n, NODE_LOG_INFO, "caught up at index %llu (term %llu, %s)",
                 (unsigned long long)st->last_applied, (unsigned long long)st->term,
                 cons_state_name(st->state));
        schedule_render(n);
    }
    if (st->state == CONS_LEADER && st->ready) {
        propose_init(n);
    }
    node_cluster_tick(n);
}

/* ------------------------------------------------------------------ */
/* struct rpc_node */

static const struct sm_state *rn_state(void *ctx)
{
    return ((struct node *)ctx)->sm;
}
static const struct sm_env *rn_env(void *ctx)
{
    return &((struct node *)ctx)->env;
}

/* After node_stop the consensus node is gone (n->cons == NULL) while the
 * rpc server still drains: every entry point checks. */
static int rn_propose(void *ctx, const void *buf, size_t len,
                      void (*cb)(void *arg, int status, void *result), void *arg)
{
    struct node *n = ctx;
    return n->cons == NULL || n->stopping ? -ESHUTDOWN : cons_propose(n->cons, buf, len, cb, arg);
}

static int rn_barrier(void *ctx, void (*cb)(void *arg, int status, void *result), void *arg)
{
    struct node *n = ctx;
    return n->cons == NULL || n->stopping ? -ESHUTDOWN : cons_barrier(n->cons, cb, arg);
}

static bool rn_is_leader(void *ctx)
{
    struct node *n = ctx;
    if (n->cons == NULL) {
        return false;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    /* a leader whose log cannot be written is still the one to ask: its
     * answer is the disk's error (ENOSPC), not "no quorum" */
    return st.state == CONS_LEADER && (st.ready || (st.storage_error < 0 && !st.storage_stop));
}

static const char *rn_leader_rpc(void *ctx)
{
    return node_leader_rpc(ctx);
}

static uint64_t rn_leader_id(void *ctx)
{
    struct node *n = ctx;
    if (n->cons == NULL) {
        return 0;
    }
    struct cons_status st;
    cons_get_status(n->cons, &st);
    return st.leader_id != n->cfg.id ? st.leader_id : 0;
}

/* The key nodes use to log in to each other (node_key.c). */
static const char *rn_cluster_key(void *ctx)
{
    return node_cluster_key(ctx);
}

static struct nv *rn_sessions(void *ctx, struct nv_err *err)
{
    (void)err;
    struct node *n = ctx;
    return tgt_sessions(n->cfg.debugfs, n->sm);
}

static int rn_generate_key(void *ctx, const char *hash, const char *nqn, char *out, size_t outlen,
                           struct nv_err *err)
{
    (void)ctx;
    return tgt_dhchap_generate(hash, nqn, NULL, NULL, out, outlen, err);
}

/* ------------------------------------------------------------------ */
/* lifecycle */

static void on_signal(uv_signal_t *s, int signum)
{
    struct node *n = s->data;
    node_log(n, NODE_LOG_INFO, "signal %d: stopping", signum);
    node_stop(n, NULL, NULL);
}

/* SIGHUP re-reads the configuration; it never stops the node (its
 * default action would kill it without a word). */
static void on_hup(uv_signal_t *s, int signum)
{
    (void)signum;
    sd_notify(0, "RELOADING=1");
    node_reload(s->data);
    sd_notify(0, "READY=1");
}

void node_sweep_restart(struct node *n)
{
    uv_timer_stop(&n->sweep_timer);
    if (n->cfg.sweep_interval_ms > 0) {
        uv_timer_start(&n->sweep_timer, sweep_timer_cb, sweep_tick_ms(n), sweep_tick_ms(n));
    }
}

static int start_target(struct node *n, char *msg, size_t msglen)
{
    if (n->cfg.witness) {
        return 0; /* a witness never renders configfs */
    }
    struct tgt_config tc = {.root = n->cfg.configfs,
                            .device_root = n->cfg.device_root,
                            .emulate = n->cfg.emulate || n->cfg.emulate_kernel != NULL,
                            .emulate_kernel = n->cfg.emulate_kernel};
    struct nv_err e;
    nv_err_init(&e);
    int rv = tgt_open(&tc, &n->tgt, &e);
    if (rv < 0) {
        char *r = nv_err_reason(&e);
        const char *hint = rv != -EMEDIUMTYPE ? ""
                           : tc.emulate       ? "; drop --emulate"
                                              : "; mount it (modprobe nvmet; mount -t configfs none "
                                                "/sys/kernel/config) or pass --emulate to run an "
                                                "emulated target (tests, demos)";
        snprintf(msg, msglen, "configfs %s: %s%s", n->cfg.configfs, r ? r : strerror(-rv), hint);
        free(r);
        nv_err_clear(&e);
        return rv;
    }
    nv_err_clear(&e);
    struct nv *f = tgt_features(n->tgt);
    char *fs = nv_dump(f);
    node_log(n, NODE_LOG_INFO, "configfs %s (%s): %s", n->cfg.configfs,
             tgt_is_emulated(n->tgt) ? "emulated" : "kernel", fs ? fs : "");
    free(fs);
    nv_free(f);
    return 0;
}

unsigned node_heartbeat_ms(unsigned election_ms)
{
    unsigned e = election_ms ? election_ms : 1000;
    unsigned h = e / 40;
    return h < 10 ? 10 : h;
}

static int start_consensus(struct node *n, char *msg, size_t msglen)
{
    if (n->cfg.cluster != NULL) {
        int rv = node_parse_cluster(n->cfg.cluster, &n->peers, &n->n_peers, msg, msglen);
        if (rv == 0) {
            rv = node_check_cluster_list(n, false, msg, msglen);
        }
        if (rv < 0) {
            return rv;
        }
    }
    struct cons_config cc = {.id = n->cfg.id,
                             .address = n->cfg.raft,
                             .data_dir = n->cfg.data_dir,
                             .peers = n->peers,
                             .n_peers = n->n_peers,
                             .election_timeout_ms = n->cfg.election_timeout_ms,
                             /* followers learn the commit index with the next
                              * append or heartbeat: a short heartbeat bounds
                              * commit-to-rendered on every node when the
                              * leader goes idle */
                             .heartbeat_ms = node_heartbeat_ms(n->cfg.election_timeout_ms),
                             .snapshot_threshold = n->cfg.snapshot_threshold,
                             .psk_file = n->cfg.raft_psk_file,
                             .ca_file = n->cfg.raft_cacert,
                             .cert_file = n->cfg.raft_cert,
                             .key_file = n->cfg.raft_key,
                             .insecure = n->cfg.raft_insecure,
                             .segment_size = (size_t)n->cfg.segment_kb << 10,
                             .accept_data_loss = n->cfg.accept_data_loss,
                             .pre_vote = true,
                             .join = n->cfg.join != NULL,
                             /* a restarted member must not vote while a lease
                              * it acknowledged before may still run (fo.h) */
                             .start_delay_ms = n->n_peers > 1 || n->cfg.join != NULL
                                                   ? (n->cfg.election_timeout_ms
                                                          ? n->cfg.election_timeout_ms
                                                          : 1000)
                                                   : 0};
    struct cons_fsm fsm = {.apply = fsm_apply,
                           .free_result = fsm_free_result,
                           .snapshot = fsm_snapshot,
                           .restore = fsm_restore,
                           .data = n};
    int rv = cons_start(n->loop, &cc, &fsm, &n->cons, msg, msglen);
    if (rv < 0) {
        return rv;
    }
    node_check_cluster_list(n, true, msg, msglen);
    cons_on_change(n->cons, on_change, n);
    return 0;
}

static int start_rpc(struct node *n, char *msg, size_t msglen)
{
    n->rnode = (struct rpc_node){.ctx = n,
                                 .loop = n->loop,
                                 .cluster_key = rn_cluster_key,
                                 .state = rn_state,
                                 .env = rn_env,
                                 .propose = rn_propose,
                                 .barrier = rn_barrier,
                                 .wait_rendered = wait_rendered,
                                 .is_leader = rn_is_leader,
                                 .leader_rpc = rn_leader_rpc,
                                 .leader_id = rn_leader_id,
                                 .cluster_status = node_cluster_status,
                                 .sessions = rn_sessions,
                                 .address_choices = node_address_choices,
                                 .generate_key = rn_generate_key,
                                 .failover_status = node_failover_status,
                                 .export_nvmetcli = node_export_nvmetcli,
                                 .refuse = node_refuse,
                                 .id = n->cfg.id,
                                 .is_member = node_is_member,
                                 .membership = node_membership,
                                 .hold_timeout_ms = n->cfg.rpc_hold_timeout_ms};
    /* calls to other nodes: TLS, presenting this node's certificate,
     * whenever this node serves TLS */
    n->rnode.peer_tls = (struct rpc_tls_opts){.plaintext = n->cfg.rpc_plaintext,
                                              .ca_file = n->cfg.rpc_cacert,
                                              .cert_file = n->cfg.rpc_cert,
                                              .key_file = n->cfg.rpc_key};
    int rv = rpc_tls_opts_check(&n->rnode.peer_tls, msg, msglen);
    if (rv < 0) {
        return rv;
    }
    struct rpc_server_config rc = {.unix_path = n->cfg.socket,
                                   .tcp_addr = n->cfg.rpc,
                                   .api_key_file = n->cfg.api_key_file,
                                   .tls_cert_file = n->cfg.rpc_cert,
                                   .tls_key_file = n->cfg.rpc_key,
                                   .tls_ca_file = n->cfg.rpc_client_certs ? n->cfg.rpc_cacert : NULL,
                                   .tls_client_certs = n->cfg.rpc_client_certs,
                                   .tcp_plaintext = n->cfg.rpc_plaintext,
                                   .cluster_key = node_cluster_key_accepted,
                                   .cluster_key_ctx = n};
    rv = node_cluster_key_init(n, msg, msglen);
    if (rv < 0) {
        return rv;
    }
    node_log(n, NODE_LOG_INFO, "node-to-node key: %s", node_cluster_key_source(n));
    rv = rpc_server_start(n->loop, &rc, &n->rpc, msg, msglen);
    rv = rv == 0 ? node_events_init(n) : rv;
    if (rv < 0) {
        return rv;
    }
    return rpc_methods_register(n->rpc, &n->rnode, &n->methods);
}

int node_start(uv_loop_t *loop, const struct node_config *cfg, struct node **out, char *msg,
               size_t msglen)
{
    struct node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        return -ENOMEM;
    }
    n->loop = loop;
    n->cfg = *cfg; /* takes the strings: cfg must not be freed by the caller */
    n->waiters_tail = &n->waiters;
    n->sm = sm_new();
    if (n->sm == NULL) {
        free(n);
        return -ENOMEM;
    }
    node_env_init(n);
    uv_timer_init(loop, &n->render_timer);
    n->render_timer.data = n;
    uv_timer_init(loop, &n->sweep_timer);
    n->sweep_timer.data = n;
    uv_timer_init(loop, &n->cluster_timer);
    n->cluster_timer.data = n;
    uv_timer_init(loop, &n->join_timer);
    n->join_timer.data = n;
    uv_signal_init(loop, &n->sig_int);
    n->sig_int.data = n;
    uv_signal_init(loop, &n->sig_term);
    n->sig_term.data = n;
    uv_signal_init(loop, &n->sig_hup);
    n->sig_hup.data = n;

    int rv = start_target(n, msg, msglen);
    if (rv == 0) {
        /* failover forks its guardian: before any socket or thread */
        rv = node_failover_open(n, msg, msglen);
    }
    if (rv == 0) {
        rv = start_consensus(n, msg, msglen);
    }
    if (rv == 0) {
        rv = start_rpc(n, msg, msglen);
    }
    if (rv == 0 && cfg->metrics != NULL) {
        rv = metrics_start(loop, cfg->metrics, node_metrics_fill, n, &n->metrics, msg, msglen);
    }
    if (rv < 0) {
        /* Partial start: stop what started; the caller exits. */
        *out = n;
        return rv;
    }
    node_sweep_restart(n);
    node_cluster_start(n);
    node_join_start(n);
    uv_signal_start(&n->sig_int, on_signal, SIGINT);
    uv_signal_start(&n->sig_term, on_signal, SIGTERM);
    uv_signal_start(&n->sig_hup, on_hup, SIGHUP);
    node_log(n, NODE_LOG_INFO, "started: raft %s, rpc %s, socket %s, data %s", cfg->raft,
             cfg->rpc ? cfg->rpc : "-", cfg->socket ? cfg->socket : "-", cfg->data_dir);
    /* systemd (Type=notify): the sockets listen and Raft runs; without
     * $NOTIFY_SOCKET this does nothing */
    sd_notifyf(0, "READY=1\nSTATUS=node %llu: raft %s, rpc %s", (unsigned long long)cfg->id,
               cfg->raft, cfg->rpc ? cfg->rpc : "unix socket only");
    *out = n;
    return 0;
}

static void stop_finish(struct node *n)
{
    if (--n->closing > 0) {
        return;
    }
    resolve_waiters(n, true);
    if (n->methods != NULL) {
        rpc_methods_free(n->methods);
    }
    if (n->tgt != NULL) {
        tgt_close(n->tgt);
    }
    sm_free(n->sm);
    nv_free(n->last_problems);
    node_events_free(n);
    free(n->peers);
    void (*done)(void *) = n->stop_done;
    void *arg = n->stop_arg;
    node_config_free(&n->cfg);
    free(n);
    if (done != NULL) {
        done(arg);
    }
}

static void handle_closed(uv_handle_t *h)
{
    stop_finish(h->data);
}
static void module_closed(void *arg)
{
    stop_finish(arg);
}

static void consensus_closed(void *arg)
{
    struct node *n = arg;
    n->cons = NULL;
    /* Raft is down and every pending proposal was answered (-ESHUTDOWN)
     * through the still-open server; now close the server. */
    if (n->rpc != NULL) {
        rpc_server_close(n->rpc, module_closed, n);
    } else {
        stop_finish(n);
    }
}

void node_stop(struct node *n, void (*done)(void *arg), void *arg)
{
    if (n->stopping) {
        return;
    }
    n->stopping = true;
    sd_notify(0, "STOPPING=1");
    n->stop_done = done;
    n->stop_arg = arg;
    resolve_waiters(n, true);
    /* 7 handles + failover + metrics + (consensus, then rpc) */
    n->closing = 10;
    if (n->metrics != NULL) {
        metrics_stop(n->metrics, module_closed, n);
        n->metrics = NULL;
    } else {
        n->closing--;
    }
    if (n->fo != NULL) {
        /* releases what an HA node holds, then frees itself: nothing of
         * the node may reach it after this (a cluster.status answered
         * while the server drains would read freed memory) */
        fo_close(n->fo, module_closed, n);
        n->fo = NULL;
    } else {
        n->closing--;
    }
    node_cluster_stop(n, handle_closed);
    uv_close((uv_handle_t *)&n->join_timer, handle_closed);
    uv_close((uv_handle_t *)&n->render_timer, handle_closed);
    uv_close((uv_handle_t *)&n->sweep_timer, handle_closed);
    uv_close((uv_handle_t *)&n->sig_int, handle_closed);
    uv_close((uv_handle_t *)&n->sig_term, handle_closed);
    uv_close((uv_handle_t *)&n->sig_hup, handle_closed);
    if (n->cons != NULL) {
        cons_close(n->cons, consensus_closed, n);
    } else {
        consensus_closed(n);
    }
}
