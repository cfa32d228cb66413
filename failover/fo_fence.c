/* The fence command: run before taking over from another node, so an
 * operator's own means (a PDU, a BMC, a switch port) can make sure the
 * old active is really gone. The command runs under /bin/sh -c with
 *   NVMET_FENCE_NODE       the id of the node to fence
 *   NVMET_FENCE_RAFT/_RPC  its Raft and RPC addresses (from the registry)
 *   NVMET_NODE             this node's id
 * Exit status 0 lets the takeover go on; anything else (or no exit within
 * FENCE_TIMEOUT_MS, then it is killed) blocks it and shows as
 * FENCE_FAILED in failover.disabled_reasons, retried with a growing pause
 * (1 s doubling to 30 s) while this node still is the one to take over. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* environ */

#include "fo_int.h"
#include "nv.h"
#include "sm.h"

#define FENCE_TIMEOUT_MS 30000
#define FENCE_RETRY_MIN_MS 1000
#define FENCE_RETRY_MAX_MS 30000

static void fence_closed(uv_handle_t *h)
{
    struct fo *f = h->data;
    f->fence_proc_open = false;
    if (f->closing) {
        fo__closed(h);
    }
}

static void fence_exit(uv_process_t *p, int64_t status, int sig)
{
    struct fo *f = p->data;
    uv_timer_stop(&f->fence_timer);
    uv_close((uv_handle_t *)p, fence_closed);
    if (status == 0 && sig == 0) {
        f->fence = FO_FENCE_OK;
        f->fence_ok++;
        f->fence_failures = 0;
        f->fence_error[0] = '\0';
        fo__log(f, FO_LOG_INFO, "fence command succeeded");
    } else {
        f->fence = FO_FENCE_FAILED;
        f->fence_failed++;
        unsigned pause = FENCE_RETRY_MIN_MS << (f->fence_failures < 5 ? f->fence_failures : 5);
        f->fence_failures++;
        f->fence_next_ms = fo__now(f) + (pause < FENCE_RETRY_MAX_MS ? pause : FENCE_RETRY_MAX_MS);
        if (sig != 0) {
            snprintf(f->fence_error, sizeof f->fence_error, "killed by signal %d", sig);
        } else {
            snprintf(f->fence_error, sizeof f->fence_error, "exit status %" PRId64, status);
        }
        fo__log(f, FO_LOG_ERROR, "fence command failed (%s): takeover blocked", f->fence_error);
    }
    if (!f->closing) {
        fo__evaluate(f);
    }
}

static void fence_timeout(uv_timer_t *t)
{
    struct fo *f = t->data;
    if (f->fence == FO_FENCE_RUNNING) {
        fo__log(f, FO_LOG_ERROR, "fence command still running after %d ms: killing it",
                FENCE_TIMEOUT_MS);
        uv_process_kill(&f->fence_proc, SIGKILL);
    }
}

void fo__fence_start(struct fo *f, const char *cmd, uint64_t node)
{
    if (f->fence == FO_FENCE_RUNNING || fo__now(f) < f->fence_next_ms) {
        return;
    }
    const struct nv *reg = sm_cluster_node(f->cfg.sm, node);
    const char *raft = nv_get_str(reg, "raft"), *rpc = nv_get_str(reg, "rpc");
    char e_node[64], e_raft[160], e_rpc[160], e_self[64];
    snprintf(e_node, sizeof e_node, "NVMET_FENCE_NODE=%" PRIu64, node);
    snprintf(e_raft, sizeof e_raft, "NVMET_FENCE_RAFT=%s", raft ? raft : "");
    snprintf(e_rpc, sizeof e_rpc, "NVMET_FENCE_RPC=%s", rpc ? rpc : "");
    snprintf(e_self, sizeof e_self, "NVMET_NODE=%" PRIu64, f->cfg.id);
    size_t n_env = 0;
    while (environ[n_env] != NULL) {
        n_env++;
    }
    char **env = calloc(n_env + 5, sizeof *env);
    if (env == NULL) {
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        if (strncmp(environ[i], "NVMET_FENCE_", 12) != 0 &&
            strncmp(environ[i], "NVMET_NODE=", 11)) {
            env[k++] = environ[i];
        }
    }
    env[k++] = e_node;
    env[k++] = e_raft;
    env[k++] = e_rpc;
    env[k++] = e_self;
    char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    uv_process_options_t o = {.file = "/bin/sh", .args = args, .env = env, .exit_cb = fence_exit};
    f->fence_proc.data = f;
    int rv = uv_spawn(f->loop, &f->fence_proc, &o);
    free(env);
    f->fence_proc_open = true;
    if (rv < 0) {
        uv_close((uv_handle_t *)&f->fence_proc, fence_closed);
        f->fence = FO_FENCE_FAILED;
        f->fence_failures++;
        f->fence_next_ms = fo__now(f) + FENCE_RETRY_MIN_MS;
        snprintf(f->fence_error, sizeof f->fence_error, "cannot run /bin/sh: %s", uv_strerror(rv));
        fo__log(f, FO_LOG_ERROR, "fence command: %s", f->fence_error);
        return;
    }
    f->fence = FO_FENCE_RUNNING;
    uv_timer_start(&f->fence_timer, fence_timeout, FENCE_TIMEOUT_MS, 0);
    /* not the command itself: it often carries a BMC password */
    fo__log(f, FO_LOG_INFO, "fencing node %" PRIu64 " (running the fence command)", node);
}

void fo__fence_close(struct fo *f)
{
    f->closing_handles++;
    uv_close((uv_handle_t *)&f->fence_timer, fo__closed);
    if (f->fence_proc_open) {
        /* fence_exit closes the process handle once the kill is reaped */
        f->closing_handles++;
        if (f->fence == FO_FENCE_RUNNING) {
            uv_process_kill(&f->fence_proc, SIGKILL);
        }
    }
}
