/* nvmetctl's readable output: tables of list results and the cluster
 * status at a glance. */
#ifndef CTL_OUT_H
#define CTL_OUT_H

#include <stdio.h>

struct nv;

/* A list of maps as a table: one column per key of the entries (in the
 * order first seen), scalars printed bare, nested values as JSON. Other
 * values are printed as JSON. */
void ctl_print_table(FILE *f, const struct nv *v);

/* cluster.status (borrowed) as a summary line and one row per member,
 * like crm_mon -1 / etcdctl endpoint status -w table. Returns 0 when the
 * cluster is healthy, 1 when degraded (the summary line says why). */
int ctl_print_status(FILE *f, const struct nv *status);

#endif
