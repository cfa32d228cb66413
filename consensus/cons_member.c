/* consensus: membership changes and leadership transfer (leader only, one
 * change at a time; callbacks run from the idle handle, never inside
 * cons_add & co). */
#include <errno.h>
#include <stdlib.h>

#include "cons_int.h"
#include "nv_err.h"

/* ------------------------------------------------------------------ */
/* membership */

static struct cons_chg* chg_new(struct cons_node* n, cons_cb cb, void* arg)
{
    struct cons_chg* c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->waiter = calloc(1, sizeof *c->waiter);
    if (c->waiter == NULL) {
        free(c);
        return NULL;
    }
    c->node = n;
    c->waiter->cb = cb;
    c->waiter->arg = arg;
    return c;
}

static void chg_free(struct cons_chg* c)
{
    free(c->waiter);
    free(c);
}

static void chg_cb(struct raft_change* req, int status)
{
    struct cons_chg* c = req->data;
    cons_complete(c->node, c->waiter, cons_err(status), NULL);
    free(c);
}

static int chg_check(struct cons_node* n)
{
    if (n == NULL || n->closing) {
        return -ESHUTDOWN;
    }
    return cons_is_ready(n) ? 0 : -NV_ENOTLEADER;
}

int cons_add(struct cons_node* n, uint64_t id, const char* address, cons_cb cb, void* arg)
{
    int rv = chg_check(n);
    if (rv < 0) {
        return rv;
    }
    if (id == 0 || !cons_address_ok(address)) {
        return -EINVAL;
    }
    struct cons_chg* c = chg_new(n, cb, arg);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->u.change.data = c;
    rv = raft_add(&n->raft, &c->u.change, id, address, chg_cb);
    if (rv != 0) {
        chg_free(c);
        return cons_err(rv);
    }
    return 0;
}

int cons_assign(struct cons_node* n, uint64_t id, int role, cons_cb cb, void* arg)
{
    int rv = chg_check(n);
    if (rv < 0) {
        return rv;
    }
    if (role != CONS_ROLE_VOTER && role != CONS_ROLE_STANDBY && role != CONS_ROLE_SPARE) {
        return -EINVAL;
    }
    struct cons_chg* c = chg_new(n, cb, arg);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->u.change.data = c;
    rv = raft_assign(&n->raft, &c->u.change, id, role, chg_cb);
    if (rv != 0) {
        chg_free(c);
        return cons_err(rv);
    }
    return 0;
}

int cons_remove(struct cons_node* n, uint64_t id, cons_cb cb, void* arg)
{
    int rv = chg_check(n);
    if (rv < 0) {
        return rv;
    }
    struct cons_chg* c = chg_new(n, cb, arg);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->u.change.data = c;
    rv = raft_remove(&n->raft, &c->u.change, id, chg_cb);
    if (rv != 0) {
        chg_free(c);
        return cons_err(rv);
    }
    return 0;
}

/* libraft's transfer callback has no status: it fires when we learn of the
 * new leader, after an election timeout, or at close. */
static void transfer_cb(struct raft_transfer* req)
{
    struct cons_chg* c = req->data;
    struct cons_node* n = c->node;
    int status;
    if (n->closing) {
        status = -ESHUTDOWN;
    } else if (raft_state(&n->raft) != RAFT_LEADER) {
        status = 0;
    } else {
        status = -ETIMEDOUT;
    }
    cons_complete(n, c->waiter, status, NULL);
    free(c);
}

int cons_transfer(struct cons_node* n, uint64_t id, cons_cb cb, void* arg)
{
    int rv = chg_check(n);
    if (rv < 0) {
        return rv;
    }
    struct cons_chg* c = chg_new(n, cb, arg);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->u.transfer.data = c;
    c->target = id;
    rv = raft_transfer(&n->raft, &c->u.transfer, id, transfer_cb);
    if (rv != 0) {
        chg_free(c);
        return cons_err(rv);
    }
    return 0;
}
