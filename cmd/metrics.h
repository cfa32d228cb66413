/* metrics: a Prometheus endpoint (GET /metrics, text exposition format
 * 0.0.4) served by libmicrohttpd on a thread of its own. Each scrape asks
 * the node's loop thread to write the text (everything it reads belongs
 * to that thread), waits for it at most METRICS_WAIT_MS and answers 503
 * when the loop did not answer in time. No authentication: bind it to an
 * address only the monitoring network reaches. Nothing secret is in it. */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>

#include "nv_hist.h"

#define METRICS_WAIT_MS 2000

struct uv_loop_s;
struct metrics;
struct mx; /* the text being written (loop thread) */

/* Called on the loop thread for each scrape. */
typedef void (*metrics_fill_fn)(void *ctx, struct mx *out);

/* Listen on addr ("a.b.c.d:port" or "[v6]:port"). 0, or -errno with msg.
 * Start it after fork()s (it runs a thread). */
int metrics_start(struct uv_loop_s *loop, const char *addr, metrics_fill_fn fill, void *ctx,
                  struct metrics **out, char *msg, size_t msglen);
/* Stop the thread (a scrape in progress is answered 503), then close the
 * loop handle; done(arg) once it is closed and m is freed. */
void metrics_stop(struct metrics *m, void (*done)(void *arg), void *arg);

/* Writing the text. name must be a valid metric name; labels NULL or
 * `key="value",...` with the values escaped by mx_escape. */
void mx_family(struct mx *o, const char *name, const char *type, const char *help);
void mx_value(struct mx *o, const char *name, const char *labels, double v);
/* A histogram family's samples: name_bucket{le=...}, name_sum (seconds),
 * name_count. */
void mx_hist(struct mx *o, const char *name, const char *labels, const struct nv_hist *h);
/* value escaped for a label (\, " and newline), cut to fit outlen. */
void mx_escape(char *out, size_t outlen, const char *value);

#endif
