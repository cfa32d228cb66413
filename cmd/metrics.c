/* metrics: the Prometheus endpoint (metrics.h). libmicrohttpd parses
 * HTTP on its own thread; the only thing shared with the loop thread is
 * the last text written, under a mutex. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>
#include <uv.h>

#include "metrics.h"

#define MAX_CONNS 32
#define MAX_CONNS_PER_ADDR 8
#define CONN_TIMEOUT_S 10

struct mx {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory: the scrape is answered 500 */
};

struct metrics {
    uv_loop_t *loop;
    uv_async_t async;
    metrics_fill_fn fill;
    void *ctx;
    struct MHD_Daemon *d;
    void (*done)(void *arg);
    void *done_arg;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* done moved, or closing */
    uint64_t asked, done_n; /* scrapes asked for / answered by the loop */
    bool closing;
    char *text; /* the last text written (NULL: out of memory) */
    size_t text_len;
};

/* ------------------------------------------------------------------ */
/* text */

static void mx_printf(struct mx *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mx_printf(struct mx *o, const char *fmt, ...)
{
    if (o->failed) {
        return;
    }
    for (int tries = 0; tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->cap + (size_t)n + 1) * 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    o->failed = true;
}

void mx_escape(char *out, size_t outlen, const char *value)
{
    size_t o = 0;
    for (const char *s = value; *s != '\0' && o + 3 < outlen; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

void mx_family(struct mx *o, const char *name, const char *type, const char *help)
{
    mx_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void mx_value(struct mx *o, const char *name, const char *labels, double v)
{
    /* counts print whole (exact below 2^53), fractions with 9 digits */
    char num[40];
    if (v == (double)(long long)v && v < 9007199254740992.0 && v > -9007199254740992.0) {
        snprintf(num, sizeof num, "%lld", (long long)v);
    } else {
        snprintf(num, sizeof num, "%.9g", v);
    }
    if (labels != NULL && labels[0] != '\0') {
        mx_printf(o, "%s{%s} %s\n", name, labels, num);
    } else {
        mx_printf(o, "%s %s\n", name, num);
    }
}

void mx_hist(struct mx *o, const char *name, const char *labels, const struct nv_hist *h)
{
    const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";
    const char *l = labels != NULL ? labels : "";
    for (unsigned i = 0; i <= NV_HIST_BOUNDS; i++) {
        uint64_t n = nv_hist_cumulative(h, i);
        if (i < NV_HIST_BOUNDS) {
            mx_printf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, l, sep, nv_hist_bounds[i],
                      (unsigned long long)n);
        } else {
            mx_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, l, sep, (unsigned long long)n);
        }
    }
    char sum[256], count[256];
    snprintf(sum, sizeof sum, "%s_sum", name);
    snprintf(count, sizeof count, "%s_count", name);
    mx_value(o, sum, labels, (double)h->sum_ns / 1e9);
    mx_value(o, count, labels, (double)h->count);
}

/* ------------------------------------------------------------------ */
/* the loop side */

static void on_async(uv_async_t *a)
{
    struct metrics *m = a->data;
    struct mx o = {0};
    m->fill(m->ctx, &o);
    pthread_mutex_lock(&m->mu);
    free(m->text);
    m->text = o.failed ? NULL : o.p;
    m->text_len = o.failed ? 0 : o.len;
    if (o.failed) {
        free(o.p);
    }
    m->done_n = m->asked;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

/* ------------------------------------------------------------------ */
/* the HTTP side (libmicrohttpd's thread) */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
                              const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rv = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rv;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return answer(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void deadline(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += METRICS_WAIT_MS / 1000;
    ts->tv_nsec += (long)(METRICS_WAIT_MS % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static enum MHD_Result scrape(struct metrics *m, struct MHD_Connection *conn)
{
    struct timespec until;
    deadline(&until);
    pthread_mutex_lock(&m->mu);
    uint64_t mine = ++m->asked;
    uv_async_send(&m->async);
    int rv = 0;
    while (!m->closing && m->done_n < mine && rv == 0) {
        rv = pthread_cond_timedwait(&m->cv, &m->mu, &until);
    }
    enum MHD_Result r;
    if (m->done_n < mine) {
        r = plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                  m->closing ? "nvmetd is stopping\n"
                             : "the node's event loop did not answer within 2 s\n");
    } else if (m->text == NULL) {
        r = plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    } else {
        r = answer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", m->text,
                   m->text_len);
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **req_cls)
{
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) { /* the headers: answer once the request is complete */
        *req_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_size != 0) { /* a body: nothing here takes one */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n");
    }
    if (strcmp(url, "/metrics") != 0) {
        return plain(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
    }
    return scrape(cls, conn);
}

/* ------------------------------------------------------------------ */
/* start / stop */

static int parse_addr(const char *addr, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon = NULL;
    const char *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':') {
            return -EINVAL;
        }
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        hl = (size_t)(colon - addr);
    }
    if (hl == 0 || hl >= sizeof host) {
        return -EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || port < 1 || port > 65535) {
        return -EINVAL;
    }
    memset(ss, 0, sizeof *ss);
    if (addr[0] == '[') {
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0 ? 0 : -EINVAL;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0 ? 0 : -EINVAL;
}

static void async_closed(uv_handle_t *h)
{
    struct metrics *m = h->data;
    void (*done)(void *) = m->done;
    void *arg = m->done_arg;
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m->text);
    free(m);
    if (done != NULL) {
        done(arg);
    }
}

int metrics_start(uv_loop_t *loop, const char *addr, metrics_fill_fn fill, void *ctx,
                  struct metrics **out, char *msg, size_t msglen)
{
    struct sockaddr_storage ss;
    if (parse_addr(addr, &ss) < 0) {
        snprintf(msg, msglen, "metrics: %s: expected IPv4:PORT or [IPv6]:PORT", addr);
        return -EINVAL;
    }
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(msg, msglen, "metrics: out of memory");
        return -ENOMEM;
    }
    m->loop = loop;
    m->fill = fill;
    m->ctx = ctx;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rv = uv_async_init(loop, &m->async, on_async);
    if (rv < 0) {
        snprintf(msg, msglen, "metrics: %s", uv_strerror(rv));
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return rv;
    }
    m->async.data = m;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    errno = 0;
    m->d =
        MHD_start_daemon(flags, port, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNS,
                         MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MAX_CONNS_PER_ADDR,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S, MHD_OPTION_END);
    if (m->d == NULL) {
        int e = errno != 0 ? errno : EADDRNOTAVAIL;
        snprintf(msg, msglen, "metrics: cannot listen on %s: %s", addr, strerror(e));
        uv_close((uv_handle_t *)&m->async, async_closed); /* frees m */
        return -e;
    }
    *out = m;
    return 0;
}

void metrics_stop(struct metrics *m, void (*done)(void *arg), void *arg)
{
    pthread_mutex_lock(&m->mu);
    m->closing = true; /* a scrape waiting for this thread gives up */
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    MHD_stop_daemon(m->d);
    m->done = done;
    m->done_arg = arg;
    uv_close((uv_handle_t *)&m->async, async_closed);
}
