/* nvmet-bench internals shared by its parts. */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>

double bench_now_us(void);
int bench_free_port(void);
/* Sorts lat (µs) and prints one line: ops, ops/s, p50/p99/p999. */
void bench_report(const char *name, double *lat, size_t n, double secs);
/* p-th percentile (0..1) of sorted values. */
double bench_pct(const double *sorted, size_t n, double p);

/* (b) libraft alone through consensus/ (bench_raft.c), over the Raft
 * transport in one mode; the secret and certificates come from
 * bench_sec_files(dir). */
enum bench_sec { BENCH_PLAIN, BENCH_PSK, BENCH_CERT };
const char *bench_sec_name(enum bench_sec sec);
int bench_sec_files(const char *dir);
void bench_raft(const char *dir, int nodes, int proposers, int total, size_t size,
                enum bench_sec sec);

#endif
