/* nvmetctl batch: bulk provisioning. Reads one call a line (JSON lines)
 * and pipelines them over one connection:
 *
 *   ["nvmet.subsys.create", {"name": "nqn.2024-01.com.example:s1"}]
 *   {"method": "nvmet.namespace.create", "params": [{"subsys": 1, ...}]}
 *
 * Calls of consecutive lines with the same method are in flight together
 * (up to --window); a line with another method waits until every earlier
 * line is answered. The leader validates a write against what is applied
 * when it arrives, so a namespace create must not overtake the create of
 * its subsystem; a file that creates all subsystems, then all namespaces,
 * runs as two pipelined phases.
 *
 * Every call carries this run's client id and a msgid made of its line:
 * after a lost connection the unanswered calls are sent again (to the
 * next endpoint) and the cluster's session table answers a write that
 * already committed with its first result instead of applying it twice.
 * The run gives up when nothing is answered for --timeout seconds.
 *
 * A progress bar goes to standard error when it is a terminal; at the end
 * a summary, the first failures (line, method, error) and exit status 0
 * when every line succeeded, 1 when some failed, 2 when the run gave up. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "ctl.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"

#define DEFAULT_WINDOW 64
#define MAX_WINDOW 1024
#define SHOWN_FAILURES 20
#define LINE_MAX_BYTES (1u << 20)
/* msgid of line N: above the client's own automatic ids (login, options) */
#define MSGID_BASE (INT64_C(1) << 32)

enum job_state { J_WAIT, J_SENT, J_DONE };

struct job {
    size_t line;
    char *method;
    struct nv *params;
    enum job_state state;
    bool failed;
};

struct batch {
    struct ctl *c;
    uv_loop_t loop;
    uv_timer_t tick;
    struct rpc_client *cl;
    uint64_t gen; /* connection generation: answers of older ones are ignored */
    size_t at;    /* endpoint in use */
    struct job *jobs;
    size_t n, next; /* next job to send */
    size_t inflight, ok, failed;
    unsigned window;
    long last_progress; /* ms: an answer arrived */
    long started;
    bool gave_up, reconnect_due, tty;
    char why[300]; /* why it gave up */
    char **fails;  /* the first failures, as printed */
    size_t n_fails;
};

struct sent {
    struct batch *b;
    size_t idx;
    uint64_t gen;
};

/* ---- input ---- */

static int parse_line(const char *text, size_t line, struct job *j)
{
    struct nv *v = nv_from_json(text);
    const char *method = NULL;
    struct nv *params = NULL;
    if (v != NULL && v->t == NV_ARR && nv_len(v) >= 1 && nv_is(nv_at(v, 0), NV_STR)) {
        method = nv_at(v, 0)->u.s.p;
        params = nv_arr();
        for (size_t i = 1; i < nv_len(v); i++) {
            nv_push(params, nv_copy(nv_at(v, i)));
        }
    } else if (v != NULL && v->t == NV_MAP && nv_get_str(v, "method") != NULL) {
        method = nv_get_str(v, "method");
        const struct nv *p = nv_get(v, "params");
        if (p != NULL && !nv_is(p, NV_ARR)) {
            fprintf(stderr, "nvmetctl: line %zu: \"params\" must be an array\n", line);
            nv_free(v);
            return -EINVAL;
        }
        params = p != NULL ? nv_copy(p) : nv_arr();
    } else {
        fprintf(stderr,
                "nvmetctl: line %zu: expected [\"METHOD\", ARG...] or {\"method\": ..., "
                "\"params\": [...]}\n",
                line);
        nv_free(v);
        return -EINVAL;
    }
    j->line = line;
    j->method = strdup(method);
    j->params = params;
    nv_free(v);
    return j->method != NULL && params != NULL ? 0 : -ENOMEM;
}

/* Every line of f (blank lines and '#' comments skipped). */
static int read_jobs(FILE *f, struct batch *b)
{
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    size_t no = 0;
    int rv = 0;
    while (rv == 0 && (got = getline(&line, &lcap, f)) >= 0) {
        no++;
        if ((size_t)got > LINE_MAX_BYTES) {
            fprintf(stderr, "nvmetctl: line %zu: longer than %u bytes\n", no, LINE_MAX_BYTES);
            rv = -EINVAL;
            break;
        }
        char *p = line + strspn(line, " \t\r\n");
        if (*p == '\0' || *p == '#') {
            continue;
        }
        if (b->n == cap) {
            cap = cap ? cap * 2 : 1024;
            struct job *nj = realloc(b->jobs, cap * sizeof *nj);
            if (nj == NULL) {
                rv = -ENOMEM;
                break;
            }
            b->jobs = nj;
        }
        memset(&b->jobs[b->n], 0, sizeof b->jobs[b->n]);
        rv = parse_line(p, no, &b->jobs[b->n]);
        if (rv == 0) {
            b->n++;
        }
    }
    free(line);
    return rv;
}

/* ---- progress ---- */

static void progress(struct batch *b, bool last)
{
    if (!b->tty) {
        return;
    }
    size_t done = b->ok + b->failed;
    double secs = (double)(ctl_now_ms() - b->started) / 1000.0;
    int fill = b->n > 0 ? (int)(30 * done / b->n) : 30;
    fprintf(stderr, "\r[%-30.*s] %zu/%zu  ok %zu  failed %zu  %.0f/s ", fill,
            "##############################", done, b->n, b->ok, b->failed,
            secs > 0 ? (double)done / secs : 0.0);
    if (last) {
        fputc('\n', stderr);
    }
}

/* ---- the connection ---- */

static void pump(struct batch *b);

static void note_failure(struct batch *b, const struct job *j, const struct nv_err *e)
{
    if (b->n_fails >= SHOWN_FAILURES) {
        return;
    }
    char *reason = nv_err_reason(e);
    char text[600];
    if (e->n > 0) {
        snprintf(text, sizeof text, "line %zu: %s: [%s] %s: %s", j->line, j->method,
                 nv_errname(e->items[0].errnum),
                 e->items[0].attr && e->items[0].attr[0] ? e->items[0].attr : "ALL",
                 e->items[0].msg);
    } else {
        snprintf(text, sizeof text, "line %zu: %s: [%s] %s", j->line, j->method,
                 nv_errname(e->errnum), reason ? reason : "error");
    }
    free(reason);
    b->fails[b->n_fails++] = strdup(text);
}

/* The connection is gone (or says another node leads): every call sent
 * on it and not answered goes back to the queue; reconnect at the next
 * tick, to the next endpoint. */
static void drop_connection(struct batch *b)
{
    if (b->cl == NULL) {
        return;
    }
    b->gen++;
    struct rpc_client *cl = b->cl;
    b->cl = NULL;
    for (size_t i = 0; i < b->next; i++) {
        if (b->jobs[i].state == J_SENT) {
            b->jobs[i].state = J_WAIT;
        }
    }
    /* resend from the first unanswered line */
    size_t first = b->next;
    for (size_t i = 0; i < b->next; i++) {
        if (b->jobs[i].state == J_WAIT) {
            first = i;
            break;
        }
    }
    b->next = first;
    b->inflight = 0;
    b->at = (b->at + 1) % b->c->n_eps;
    b->reconnect_due = true;
    rpc_client_close(cl); /* its calls fail with -ECANCELED: an old generation */
}

static void answered(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)result;
    struct sent *s = arg;
    struct batch *b = s->b;
    size_t idx = s->idx;
    bool current = s->gen == b->gen;
    free(s);
    if (!current || b->jobs[idx].state != J_SENT) {
        return;
    }
    struct job *j = &b->jobs[idx];
    int rv = status < 0 ? status : err != NULL && nv_err_isset(err) ? -EREMOTEIO : 0;
    if (rv != 0 && ctl_retryable(rv, err, b->c->n_eps) && rv != -ECANCELED) {
        drop_connection(b);
        return;
    }
    b->inflight--;
    j->state = J_DONE;
    b->last_progress = ctl_now_ms();
    if (rv == 0) {
        b->ok++;
    } else {
        b->failed++;
        j->failed = true;
        note_failure(b, j, err);
    }
    pump(b);
}

static bool send_job(struct batch *b, size_t idx)
{
    struct sent *s = malloc(sizeof *s);
    if (s == NULL) {
        return false;
    }
    *s = (struct sent){b, idx, b->gen};
    struct job *j = &b->jobs[idx];
    j->state = J_SENT;
    b->inflight++;
    /* the line number gives the msgid: with the client id, a resent write
     * is recognised by the cluster */
    if (rpc_client_call(b->cl, j->method, nv_copy(j->params),
                        MSGID_BASE + b->c->msgids_used + (int64_t)j->line, answered, s) < 0) {
        free(s);
        j->state = J_WAIT;
        b->inflight--;
        return false;
    }
    return true;
}

static void pump(struct batch *b)
{
    while (b->cl != NULL && b->next < b->n && b->inflight < b->window) {
        struct job *j = &b->jobs[b->next];
        if (j->state == J_DONE) {
            b->next++;
            continue;
        }
        /* a new method waits for every earlier line (see the top) */
        if (b->inflight > 0 && b->next > 0 && strcmp(j->method, b->jobs[b->next - 1].method) != 0) {
            break;
        }
        if (!send_job(b, b->next)) {
            drop_connection(b);
            return;
        }
        b->next++;
    }
    if (b->ok + b->failed == b->n) {
        uv_stop(&b->loop);
    }
}

static void ignore(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)arg;
    (void)status;
    (void)result;
    (void)err;
}

static void connect_next(struct batch *b)
{
    b->reconnect_due = false;
    if (rpc_client_open(&b->loop, b->c->eps[b->at], &b->c->tls, &b->cl) < 0) {
        b->cl = NULL;
        b->at = (b->at + 1) % b->c->n_eps;
        b->reconnect_due = true;
        return;
    }
    if (b->c->key != NULL) {
        rpc_client_login(b->cl, b->c->key);
    }
    struct nv *opt = nv_map();
    nv_set_str(opt, "client_id", b->c->client_id);
    struct nv *p = nv_arr();
    nv_push(p, opt);
    rpc_client_call(b->cl, "core.set_options", p, -1, ignore, NULL);
    pump(b);
}

static void on_tick(uv_timer_t *t)
{
    struct batch *b = t->data;
    progress(b, false);
    if (ctl_now_ms() - b->last_progress > b->c->timeout_s * 1000L) {
        snprintf(b->why, sizeof b->why, "no answer for %ld s (%zu of %zu lines answered)",
                 b->c->timeout_s, b->ok + b->failed, b->n);
        b->gave_up = true;
        uv_stop(&b->loop);
        return;
    }
    if (b->reconnect_due) {
        connect_next(b);
    }
}

static void closed_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Run b's jobs (read in, or given); frees them. */
static int run_jobs(struct batch *b, const char *what)
{
    b->fails = calloc(SHOWN_FAILURES, sizeof *b->fails);
    int code = EXIT_LOCAL;
    if (b->fails != NULL && b->n > 0) {
        uv_loop_init(&b->loop);
        uv_timer_init(&b->loop, &b->tick);
        b->tick.data = b;
        uv_timer_start(&b->tick, on_tick, 200, 200);
        b->started = b->last_progress = ctl_now_ms();
        connect_next(b);
        uv_run(&b->loop, UV_RUN_DEFAULT);
        progress(b, true);
        if (b->cl != NULL) {
            b->gen++; /* the answers still to come are not counted */
            rpc_client_close(b->cl);
        }
        uv_walk(&b->loop, closed_walk, NULL);
        uv_run(&b->loop, UV_RUN_DEFAULT);
        uv_loop_close(&b->loop);
        double secs = (double)(ctl_now_ms() - b->started) / 1000.0;
        fprintf(stderr, "%zu %s: %zu ok, %zu failed%s in %.1f s\n", b->n, what, b->ok, b->failed,
                b->gave_up ? ", the rest not answered" : "", secs);
        for (size_t i = 0; i < b->n_fails; i++) {
            fprintf(stderr, "  %s\n", b->fails[i]);
        }
        if (b->failed > b->n_fails) {
            fprintf(stderr, "  ... and %zu more failures\n", b->failed - b->n_fails);
        }
        if (b->gave_up) {
            fprintf(stderr, "[ETIMEDOUT] ALL: %s\n", b->why);
        }
        code = b->gave_up ? EXIT_LOCAL : b->failed > 0 ? EXIT_REMOTE : EXIT_OK;
    } else if (b->fails != NULL) {
        code = EXIT_OK;
    }
    int64_t top = 0;
    for (size_t i = 0; i < b->n; i++) {
        top = (int64_t)b->jobs[i].line > top ? (int64_t)b->jobs[i].line : top;
        free(b->jobs[i].method);
        nv_free(b->jobs[i].params);
    }
    b->c->msgids_used += top;
    free(b->jobs);
    for (size_t i = 0; b->fails != NULL && i < b->n_fails; i++) {
        free(b->fails[i]);
    }
    free(b->fails);
    return code;
}

int ctl_run_calls(struct ctl *c, struct ctl_call *calls, size_t n, const char *what)
{
    struct batch b = {.c = c, .window = DEFAULT_WINDOW, .tty = isatty(STDERR_FILENO)};
    b.jobs = calloc(n + 1, sizeof *b.jobs);
    if (b.jobs == NULL) {
        return EXIT_LOCAL;
    }
    for (size_t i = 0; i < n; i++) {
        b.jobs[i] =
            (struct job){.line = i + 1, .method = calls[i].method, .params = calls[i].params};
    }
    b.n = n;
    return run_jobs(&b, what);
}

int ctl_batch(struct ctl *c, int argc, char **argv)
{
    struct batch b = {.c = c, .window = DEFAULT_WINDOW, .tty = isatty(STDERR_FILENO)};
    const char *path = "-";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            char *end;
            long w = strtol(argv[++i], &end, 10);
            if (*end != '\0' || w < 1 || w > MAX_WINDOW) {
                fprintf(stderr, "nvmetctl: --window wants 1..%d\n", MAX_WINDOW);
                return EXIT_LOCAL;
            }
            b.window = (unsigned)w;
        } else if (argv[i][0] != '-' || strcmp(argv[i], "-") == 0) {
            path = argv[i];
        } else {
            fprintf(stderr, "nvmetctl: batch [--window N] [FILE|-]: unknown '%s'\n", argv[i]);
            return EXIT_LOCAL;
        }
    }
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "[%s] ALL: %s: %s\n", nv_errname(errno), path, strerror(errno));
        return EXIT_LOCAL;
    }
    int rv = read_jobs(f, &b);
    if (f != stdin) {
        fclose(f);
    }
    if (rv < 0) {
        for (size_t i = 0; i < b.n; i++) {
            free(b.jobs[i].method);
            nv_free(b.jobs[i].params);
        }
        free(b.jobs);
        return EXIT_LOCAL;
    }
    if (b.n == 0) {
        free(b.jobs);
        fprintf(stderr, "0 lines\n");
        return EXIT_OK;
    }
    return run_jobs(&b, "lines");
}
