/* nvmetctl's pieces shared between its files: the options and endpoints
 * of one run, errors as the CLI prints them, which failures to retry. */
#ifndef CTL_H
#define CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "rpc.h"

#define MAX_ENDPOINTS 32

enum { EXIT_OK = 0, EXIT_REMOTE = 1, EXIT_LOCAL = 2 };

struct ctl {
    const char *url, *sock, *key_file, *output;
    struct rpc_tls_opts tls;
    long timeout_s;
    char *eps[MAX_ENDPOINTS];
    size_t n_eps;
    char *urls; /* eps point into it (TCP) */
    char unix_ep[4200];
    char *key;
    char client_id[40];
    /* msgids used so far in this run: with the client id they are the
     * cluster's session keys, so a later batch must not reuse them */
    int64_t msgids_used;
};

long ctl_now_ms(void);
/* All of f as a NUL-terminated string (owned), NULL when out of memory. */
char *ctl_slurp(FILE *f);
/* "[ERRNAME] attribute: message" lines on standard error. */
void ctl_print_error(const struct nv_err *e);
/* A failure after which another node (or the same, a moment later) may
 * succeed; NOT_LEADER-like answers only with several endpoints. */
bool ctl_retryable(int rv, const struct nv_err *e, size_t n_eps);

/* nvmetctl batch (ctl_batch.c): argv[0] is "batch". */
int ctl_batch(struct ctl *c, int argc, char **argv);
/* The batch engine on calls made in memory: method and params taken (the
 * array itself stays the caller's); messages name "call N" (1-based)
 * and what ("hosts"). Returns an EXIT_* code. */
struct ctl_call {
    char *method;
    struct nv *params;
};
int ctl_run_calls(struct ctl *c, struct ctl_call *calls, size_t n, const char *what);
/* One call, retried over the endpoints: 0 and *result (owned), or the
 * exit code with the error printed. params taken. */
int ctl_call1(struct ctl *c, const char *method, struct nv *params, struct nv **result);
/* nvmetctl import-nvmetcli (ctl_import.c): argv[0] is the command. */
int ctl_import(struct ctl *c, int argc, char **argv);
/* nvmetctl subscribe (ctl_subscribe.c): argv[0] is "subscribe". */
int ctl_subscribe(struct ctl *c, int argc, char **argv);

#endif
