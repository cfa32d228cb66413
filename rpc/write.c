/* rpc_write: the one path from a write to the replicated log (rpc.h).
 *
 * RPC calls (methods.c) and the node's own proposals (its registration,
 * failover's activations, the first leader's nvmet.global.init) all run:
 *   sm_prepare (leader side validation, the leader's environment)
 *   -> sm_command_encode (with the caller's session key, if any)
 *   -> node->propose -> applied here -> [wait until rendered here] -> cb.
 * One path means one place where a write's outcome is decided: what was
 * refused before the log, what the log said, and how this node's kernel
 * took the rows the write changed. */
#include <errno.h>
#include <stdlib.h>

#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "sm.h"

struct write_op {
    const struct rpc_node *node;
    unsigned flags;
    rpc_write_cb cb;
    void *arg;
    struct rpc_applied *applied;
};

void rpc_applied_free(struct rpc_applied *a)
{
    if (a != NULL) {
        sm_result_free(a->res);
        free(a->rows);
        free(a);
    }
}

static void write_finish(struct write_op *w, const struct rpc_render *render)
{
    w->cb(w->arg, 0, w->applied->res, render);
    rpc_applied_free(w->applied);
    free(w);
}

static void write_rendered(void *arg, const struct rpc_render *outcome)
{
    write_finish(arg, outcome);
}

static void write_applied(void *arg, int status, void *result)
{
    struct write_op *w = arg;
    if (status < 0 || result == NULL) {
        rpc_applied_free(result);
        w->cb(w->arg, status < 0 ? status : -ENOMEM, NULL, NULL);
        free(w);
        return;
    }
    w->applied = result;
    const struct rpc_node *node = w->node;
    /* only a change that was made can be rendered: a refused or a
     * deduplicated write answers at once */
    if ((w->flags & RPC_WRITE_RENDERED) && w->applied->res != NULL &&
        w->applied->res->err == NULL && !w->applied->res->duplicate &&
        node->wait_rendered != NULL &&
        node->wait_rendered(node->ctx, w->applied, write_rendered, w) == 0) {
        return;
    }
    write_finish(w, NULL);
}

int rpc_write(const struct rpc_node *node, const char *method, const struct nv *params,
              const char *client_id, int64_t seq, unsigned flags, rpc_write_cb cb, void *arg,
              struct nv_err *err)
{
    struct nv *cmd = NULL;
    int rv = sm_prepare(node->state(node->ctx), method, params, node->env(node->ctx), &cmd, err);
    if (rv < 0) {
        return rv;
    }
    char *buf = NULL;
    size_t len = 0;
    rv = sm_command_encode(cmd, client_id, seq, &buf, &len);
    nv_free(cmd);
    if (rv < 0) {
        return rv;
    }
    struct write_op *w = calloc(1, sizeof *w);
    if (w == NULL) {
        free(buf);
        return -ENOMEM;
    }
    w->node = node;
    w->flags = flags;
    w->cb = cb;
    w->arg = arg;
    rv = node->propose(node->ctx, buf, len, write_applied, w);
    free(buf);
    if (rv < 0) {
        free(w);
    }
    return rv;
}
