/* Latency histograms (nv_hist.h). */
#include "nv_hist.h"

const double nv_hist_bounds[NV_HIST_BOUNDS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

void nv_hist_add(struct nv_hist *h, uint64_t ns)
{
    unsigned i = 0;
    while (i < NV_HIST_BOUNDS && (double)ns > nv_hist_bounds[i] * 1e9) {
        i++;
    }
    h->bucket[i]++;
    h->count++;
    h->sum_ns += ns;
}

uint64_t nv_hist_cumulative(const struct nv_hist *h, unsigned i)
{
    uint64_t n = 0;
    for (unsigned k = 0; k <= i && k <= NV_HIST_BOUNDS; k++) {
        n += h->bucket[k];
    }
    return n;
}
