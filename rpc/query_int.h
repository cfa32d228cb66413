/* rpc/query internals: field paths and Python's comparison semantics,
 * shared by the filters and the ordering of query.c. */
#ifndef QUERY_INT_H
#define QUERY_INT_H

#include <stdbool.h>
#include <stddef.h>

struct nv;

struct path {
    char **comp;
    size_t n;
};

struct qerr {
    bool set;
    char msg[256];
};

void q__path_free(struct path *p);
int q__path_parse(const char *s, struct path *p);
bool q__is_index(const char *c, size_t *idx);
const char *q__py_type(const struct nv *v);
bool q__is_num(const struct nv *v);
double q__num(const struct nv *v);
int q__casecmp_n(const char *a, size_t al, const char *b, size_t bl, bool ci);
bool q__py_eq(const struct nv *a, const struct nv *b, bool ci);
int q__py_cmp(const struct nv *a, const struct nv *b, const char *opname, bool ci, struct qerr *e);
bool q__py_in(const struct nv *needle, const struct nv *hay, bool ci, struct qerr *e);
bool q__py_starts(const struct nv *x, const struct nv *y, bool ci, bool ends);

#endif
