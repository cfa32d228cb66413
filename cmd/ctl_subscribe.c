/* nvmetctl subscribe: core.subscribe's events as JSON lines.
 *
 *   nvmetctl [options] subscribe [--count N] [--timeout SECONDS] [COLLECTION ...]
 *
 * Subscribes to each COLLECTION ("*" when none is given) on one
 * endpoint and prints every collection_update event as one JSON object a
 * line on standard output, flushed at once, until interrupted (SIGINT,
 * SIGTERM: exit 0), --count events were printed or --timeout seconds
 * passed.
 *
 * Staying connected. The node is pinged every second; a lost connection,
 * or a ping unanswered for PING_DEAD_MS, moves on to the next endpoint
 * (--url lists several; the same one again otherwise) after a pause of
 * 200 ms doubling up to 2 s, and subscribes again there. Events committed
 * meanwhile are not replayed: once subscribed again it prints
 * {"msg": "RECONNECTED", "endpoint": EP} so that a consumer knows to
 * re-read what it follows. Status lines ("subscribed to ... at EP", a
 * lost connection) go to standard error.
 *
 * Exit status: 0 (interrupted, --count reached, --timeout passed), 1 the
 * node refused the subscription (an unknown collection, a refused key),
 * 2 a usage error. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ctl.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

#define TICK_MS 250
#define PING_EVERY_MS 1000L
#define PING_DEAD_MS 3000L
#define RETRY_FIRST_MS 200L
#define RETRY_MAX_MS 2000L
#define MAX_COLLECTIONS 64

enum sub_state { SUB_DOWN, SUB_CONNECTING, SUB_UP };

struct sub_run {
    struct ctl *c;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sig_int, sig_term;
    const char *colls[MAX_COLLECTIONS];
    size_t n_colls;
    long max_count, count;
    long deadline; /* 0 = none */
    struct rpc_client *cl;
    unsigned gen; /* of cl: answers of an older connection are ignored */
    enum sub_state state;
    size_t at;        /* the endpoint in use */
    size_t subs_left; /* core.subscribe answers still to come */
    bool ever_up;     /* subscribed once: the next time is a reconnect */
    long ping_sent;   /* 0 = no ping outstanding */
    long last_ping;
    long retry_at, retry_pause;
    bool stopping;
    int code;
};

/* One answer's context: which connection it belongs to. */
struct sub_token {
    struct sub_run *r;
    unsigned gen;
};

static void stop(struct sub_run *r, int code)
{
    if (r->stopping) {
        return;
    }
    r->stopping = true;
    r->code = code;
    if (r->cl != NULL) {
        rpc_client_close(r->cl);
        r->cl = NULL;
    }
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->sig_int, NULL);
    uv_close((uv_handle_t *)&r->sig_term, NULL);
}

/* The connection is gone or does not answer: try the next endpoint
 * after a pause. */
static void drop(struct sub_run *r, const char *why)
{
    r->gen++; /* first: closing cl answers its calls, as of an old connection */
    if (r->cl != NULL) {
        rpc_client_close(r->cl);
        r->cl = NULL;
    }
    if (r->state == SUB_UP || r->retry_pause == RETRY_FIRST_MS) {
        fprintf(stderr, "nvmetctl: subscribe: %s: %s; retrying\n", r->c->eps[r->at], why);
    }
    r->state = SUB_DOWN;
    r->at = (r->at + 1) % r->c->n_eps;
    r->retry_at = ctl_now_ms() + r->retry_pause;
    r->retry_pause = r->retry_pause * 2 < RETRY_MAX_MS ? r->retry_pause * 2 : RETRY_MAX_MS;
}

static void print_line(const struct nv *v)
{
    char *json = nv_to_json(v);
    if (json != NULL) {
        fputs(json, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(json);
    }
}

static void on_event(void *arg, const char *method, const struct nv *params)
{
    struct sub_run *r = arg;
    const struct nv *ev = nv_at(params, 0);
    if (r->stopping || strcmp(method, RPC_EVENT_METHOD) != 0 || !nv_is(ev, NV_MAP)) {
        return;
    }
    print_line(ev);
    r->count++;
    if (r->max_count > 0 && r->count >= r->max_count) {
        stop(r, EXIT_OK);
    }
}

static struct sub_token *token(struct sub_run *r)
{
    struct sub_token *t = malloc(sizeof *t);
    if (t != NULL) {
        *t = (struct sub_token){.r = r, .gen = r->gen};
    }
    return t;
}

/* The token's run, or NULL when the answer is of an older connection. */
static struct sub_run *claim(void *arg)
{
    struct sub_token *t = arg;
    struct sub_run *r = t->r;
    bool current = t->gen == r->gen && !r->stopping;
    free(t);
    return current ? r : NULL;
}

static void subscribed(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)result;
    struct sub_run *r = claim(arg);
    if (r == NULL) {
        return;
    }
    if (status < 0) {
        char *why = err != NULL ? nv_err_reason(err) : NULL;
        drop(r, why != NULL ? why : strerror(-status));
        free(why);
        return;
    }
    if (err != NULL && nv_err_isset(err)) {
        /* the node answered no: asking again will not help */
        ctl_print_error(err);
        stop(r, EXIT_REMOTE);
        return;
    }
    if (--r->subs_left > 0) {
        return;
    }
    r->state = SUB_UP;
    r->retry_pause = RETRY_FIRST_MS;
    r->last_ping = ctl_now_ms();
    fprintf(stderr, "nvmetctl: subscribed to");
    for (size_t i = 0; i < r->n_colls; i++) {
        fprintf(stderr, " %s", r->colls[i]);
    }
    fprintf(stderr, " at %s\n", r->c->eps[r->at]);
    if (r->ever_up) {
        struct nv *line = nv_map();
        nv_set_str(line, "msg", "RECONNECTED");
        nv_set_str(line, "endpoint", r->c->eps[r->at]);
        print_line(line);
        nv_free(line);
    }
    r->ever_up = true;
}

static void pinged(void *arg, int status, const struct nv *result, const struct nv_err *err)
{
    (void)result;
    (void)err;
    struct sub_run *r = claim(arg);
    if (r == NULL) {
        return;
    }
    r->ping_sent = 0;
    if (status < 0) {
        drop(r, "connection lost");
    }
}

static int call(struct sub_run *r, const char *method, struct nv *params, rpc_client_cb cb)
{
    struct sub_token *t = token(r);
    if (t == NULL) {
        nv_free(params);
        return -ENOMEM;
    }
    int rv = rpc_client_call(r->cl, method, params, -1, cb, t);
    if (rv < 0) {
        free(t);
    }
    return rv;
}

static void connect_next(struct sub_run *r)
{
    r->gen++;
    r->ping_sent = 0;
    const char *ep = r->c->eps[r->at];
    if (rpc_client_open(&r->loop, ep, &r->c->tls, &r->cl) < 0) {
        r->cl = NULL;
        drop(r, "cannot open a connection");
        return;
    }
    rpc_client_on_notify(r->cl, on_event, r);
    if (r->c->key != NULL) {
        rpc_client_login(r->cl, r->c->key);
    }
    r->state = SUB_CONNECTING;
    r->last_ping = ctl_now_ms();
    r->subs_left = r->n_colls;
    for (size_t i = 0; i < r->n_colls; i++) {
        struct nv *p = nv_arr();
        nv_push(p, nv_str(r->colls[i]));
        if (call(r, "core.subscribe", p, subscribed) < 0) {
            drop(r, "cannot send core.subscribe");
            return;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct sub_run *r = t->data;
    long now = ctl_now_ms();
    if (r->deadline > 0 && now >= r->deadline) {
        stop(r, EXIT_OK);
        return;
    }
    if (r->state == SUB_DOWN && now >= r->retry_at) {
        connect_next(r);
    } else if (r->state != SUB_DOWN && r->ping_sent > 0 && now - r->ping_sent > PING_DEAD_MS) {
        drop(r, "no answer to core.ping");
    } else if (r->state == SUB_CONNECTING && now - r->last_ping > PING_DEAD_MS * 2) {
        drop(r, "no answer to core.subscribe");
    } else if (r->state == SUB_UP && r->ping_sent == 0 && now - r->last_ping >= PING_EVERY_MS) {
        r->ping_sent = r->last_ping = now;
        if (call(r, "core.ping", nv_arr(), pinged) < 0) {
            drop(r, "cannot send core.ping");
        }
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    stop(s->data, EXIT_OK);
}

static void subscribe_usage(FILE *f)
{
    fprintf(f,
            "usage: nvmetctl [options] subscribe [--count N] [--timeout SECONDS] "
            "[COLLECTION ...]\n"
            "  COLLECTION: nvmet.subsys, nvmet.namespace, nvmet.port, nvmet.host,\n"
            "  nvmet.host_subsys, nvmet.port_subsys, nvmet.global, failover.status or *\n"
            "  (the default). Prints one JSON event a line until interrupted.\n");
}

static bool parse_long(const char *s, long min, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min) {
        return false;
    }
    *out = v;
    return true;
}

static int parse_args(struct sub_run *r, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            subscribe_usage(stdout);
            return -1;
        }
        if (strcmp(a, "--count") == 0 || strcmp(a, "--timeout") == 0) {
            if (i + 1 >= argc || !parse_long(argv[i + 1], 1, &v)) {
                fprintf(stderr, "nvmetctl: subscribe %s takes a positive integer\n", a);
                return EXIT_LOCAL;
            }
            i++;
            if (a[2] == 'c') {
                r->max_count = v;
            } else {
                r->deadline = ctl_now_ms() + v * 1000L;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "nvmetctl: subscribe: unknown option %s\n", a);
            subscribe_usage(stderr);
            return EXIT_LOCAL;
        } else if (r->n_colls == MAX_COLLECTIONS) {
            fprintf(stderr, "nvmetctl: subscribe: at most %d collections\n", MAX_COLLECTIONS);
            return EXIT_LOCAL;
        } else {
            r->colls[r->n_colls++] = a;
        }
    }
    if (r->n_colls == 0) {
        r->colls[r->n_colls++] = "*";
    }
    return 0;
}

int ctl_subscribe(struct ctl *c, int argc, char **argv)
{
    struct sub_run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        fprintf(stderr, "nvmetctl: out of memory\n");
        return EXIT_LOCAL;
    }
    r->c = c;
    r->retry_pause = RETRY_FIRST_MS;
    int rv = parse_args(r, argc, argv);
    if (rv != 0) {
        free(r);
        return rv < 0 ? EXIT_OK : rv;
    }
    uv_loop_init(&r->loop);
    uv_timer_init(&r->loop, &r->tick);
    r->tick.data = r;
    uv_signal_init(&r->loop, &r->sig_int);
    uv_signal_init(&r->loop, &r->sig_term);
    r->sig_int.data = r->sig_term.data = r;
    uv_signal_start(&r->sig_int, on_signal, SIGINT);
    uv_signal_start(&r->sig_term, on_signal, SIGTERM);
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    connect_next(r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    int code = r->code;
    free(r);
    return code;
}
