/* Latency histograms with fixed buckets, for metrics (Prometheus
 * histograms: cumulative "le" buckets in seconds, a sum and a count).
 * Not thread-safe: each histogram belongs to one loop thread. */
#ifndef NV_HIST_H
#define NV_HIST_H

#include <stdint.h>

/* Upper bounds in seconds, ascending; one more bucket is +Inf. From
 * 100 us (a local RPC) to 10 s (a failover that waited for a fence). */
#define NV_HIST_BOUNDS 15
extern const double nv_hist_bounds[NV_HIST_BOUNDS];

struct nv_hist {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t bucket[NV_HIST_BOUNDS + 1]; /* per bucket, not cumulative */
};

/* Record one observation of ns nanoseconds. */
void nv_hist_add(struct nv_hist *h, uint64_t ns);

/* The number of observations <= nv_hist_bounds[i] (i == NV_HIST_BOUNDS:
 * all of them). */
uint64_t nv_hist_cumulative(const struct nv_hist *h, unsigned i);

#endif
