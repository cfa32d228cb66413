/* node_status: nvmetd's configuration keys, cluster.status and the
 * address choices (the leader environment is node_env.c). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "node_int.h"
#include "nv_log.h"
#include "nv.h"
#include "nv_err.h"

/* ------------------------------------------------------------------ */
/* configuration */

void node_config_defaults(struct node_config *c)
{
    memset(c, 0, sizeof *c);
    c->socket = strdup("/run/nvmet-ha/nvmetd.sock");
    c->configfs = strdup("/sys/kernel/config");
    /* with pre-vote a leader's death is noticed and replaced in 1.0-2.0
     * election timeouts: 400 ms keeps a failover under a second and stays
     * stable on a loaded two-core machine (README "Failover") */
    c->election_timeout_ms = 400;
    c->snapshot_threshold = 8192;
    c->sweep_interval_ms = 30000;
    c->rpc_hold_timeout_ms = 5000;
}

void node_config_free(struct node_config *c)
{
    char **strs[] = {&c->data_dir,     &c->raft,        &c->rpc,
                     &c->socket,       &c->configfs,    &c->cluster,
                     &c->api_key_file, &c->device_root, &c->emulate_kernel,
                     &c->debugfs,      &c->log_level,   &c->join,
                     &c->raft_psk_file, &c->raft_cacert, &c->raft_cert,
                     &c->raft_key,     &c->metrics,     &c->cluster_key_file,
                     &c->rpc_cert,     &c->rpc_key,     &c->rpc_cacert};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

enum key_type { K_STR, K_UINT, K_U64, K_BOOL };

struct key_def {
    const char *name;
    enum key_type type;
    size_t offset;
    unsigned long long max;
};

#define KS(n, f) {n, K_STR, offsetof(struct node_config, f), 0}
#define KU(n, f, m) {n, K_UINT, offsetof(struct node_config, f), m}

/* Every key is both a flag (--name) and a config file key. */
static const struct key_def keys[] = {
    {"id", K_U64, offsetof(struct node_config, id), 0},
    KS("data-dir", data_dir),
    KS("raft", raft),
    KS("rpc", rpc),
    KS("socket", socket),
    KS("configfs", configfs),
    KS("cluster", cluster),
    KS("join", join),
    {"witness", K_BOOL, offsetof(struct node_config, witness), 0},
    {"emulate", K_BOOL, offsetof(struct node_config, emulate), 0},
    {"accept-data-loss", K_BOOL, offsetof(struct node_config, accept_data_loss), 0},
    KS("api-key-file", api_key_file),
    KS("cluster-key-file", cluster_key_file),
    KS("rpc-cert", rpc_cert),
    KS("rpc-key", rpc_key),
    KS("rpc-cacert", rpc_cacert),
    {"rpc-client-certs", K_BOOL, offsetof(struct node_config, rpc_client_certs), 0},
    {"rpc-plaintext", K_BOOL, offsetof(struct node_config, rpc_plaintext), 0},
    KS("device-root", device_root),
    KS("emulate-kernel", emulate_kernel),
    KS("debugfs", debugfs),
    KS("log-level", log_level),
    KS("raft-psk-file", raft_psk_file),
    KS("raft-cacert", raft_cacert),
    KS("raft-cert", raft_cert),
    KS("raft-key", raft_key),
    KS("metrics", metrics),
    {"raft-insecure", K_BOOL, offsetof(struct node_config, raft_insecure), 0},
    KU("election-timeout", election_timeout_ms, 60000),
    KU("snapshot-threshold", snapshot_threshold, 10000000),
    KU("sweep-interval", sweep_interval_ms, 86400000),
    KU("log-format", log_format, 2),
    KU("rpc-hold-timeout", rpc_hold_timeout_ms, 600000),
    KU("segment-kb", segment_kb, 1048576),
};

/* Keys node_reload applies while running; every other change waits for a
 * restart (addresses, data dir, security modes: what the running modules
 * were built with). */
static const char *const live_keys[] = {"log-level", "rpc-hold-timeout", "sweep-interval",
                                        "log-format", NULL};

static bool is_live(const char *key)
{
    for (size_t i = 0; live_keys[i] != NULL; i++) {
        if (strcmp(live_keys[i], key) == 0) {
            return true;
        }
    }
    return false;
}

/* The key's value as text (for the log), "-" when unset. */
static void key_text(const struct node_config *c, const struct key_def *k, char *out, size_t len)
{
    const void *field = (const char *)c + k->offset;
    switch (k->type) {
    case K_STR: {
        const char *s = *(char *const *)field;
        snprintf(out, len, "%s", s != NULL ? s : "-");
        break;
    }
    case K_UINT:
        snprintf(out, len, "%u", *(const unsigned *)field);
        break;
    case K_U64:
        snprintf(out, len, "%" PRIu64, *(const uint64_t *)field);
        break;
    case K_BOOL:
        snprintf(out, len, "%s", *(const bool *)field ? "true" : "false");
        break;
    }
}

void node_reload(struct node *n)
{
    if (n->cfg.reload == NULL) {
        node_log(n, NODE_LOG_INFO, "SIGHUP: no configuration to re-read; key files are read "
                                   "again when they change");
        return;
    }
    struct node_config c;
    char msg[512] = "";
    if (n->cfg.reload(n->cfg.reload_arg, &c, msg, sizeof msg) < 0) {
        node_log(n, NODE_LOG_ERROR, "SIGHUP: configuration not reloaded, nothing changed: %s",
                 msg);
        node_config_free(&c);
        return;
    }
    unsigned changed = 0, later = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char was[256], now[256];
        key_text(&n->cfg, &keys[i], was, sizeof was);
        key_text(&c, &keys[i], now, sizeof now);
        if (strcmp(was, now) == 0) {
            continue;
        }
        if (!is_live(keys[i].name)) {
            node_log(n, NODE_LOG_INFO, "SIGHUP: %s changed (%s -> %s): takes effect at the next "
                                       "restart", keys[i].name, was, now);
            later++;
            continue;
        }
        node_log(n, NODE_LOG_INFO, "SIGHUP: %s: %s -> %s", keys[i].name, was, now);
        changed++;
        if (strcmp(keys[i].name, "log-level") == 0) {
            free(n->cfg.log_level);
            n->cfg.log_level = c.log_level;
            c.log_level = NULL;
            nv_log_set_level(n->cfg.log_level != NULL ? nv_log_level_of(n->cfg.log_level)
                                                      : NV_LOG_INFO);
        } else if (strcmp(keys[i].name, "rpc-hold-timeout") == 0) {
            n->cfg.rpc_hold_timeout_ms = c.rpc_hold_timeout_ms;
            n->rnode.hold_timeout_ms = c.rpc_hold_timeout_ms;
        } else if (strcmp(keys[i].name, "sweep-interval") == 0) {
            n->cfg.sweep_interval_ms = c.sweep_interval_ms;
            node_sweep_restart(n);
        } else if (strcmp(keys[i].name, "log-format") == 0) {
            n->cfg.log_format = c.log_format;
            n->env.cmd_version = (int)c.log_format;
        }
    }
    node_log(n, NODE_LOG_INFO, "SIGHUP: configuration re-read: %u change(s) applied, %u at the "
                               "next restart; key files are read again when they change",
             changed, later);
    node_config_free(&c);
}

bool node_config_is_flag(const char *key)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(keys[i].name, key) == 0) {
            return keys[i].type == K_BOOL;
        }
    }
    return false;
}

int node_config_set(struct node_config *c, const char *key, const char *value, char *msg,
                    size_t msglen)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const struct key_def *k = &keys[i];
        if (strcmp(k->name, key) != 0) {
            continue;
        }
        void *field = (char *)c + k->offset;
        char *end = NULL;
        unsigned long long u;
        switch (k->type) {
        case K_STR:
            free(*(char **)field);
            *(char **)field = (value != NULL && *value != '\0') ? strdup(value) : NULL;
            return 0;
        case K_BOOL:
            if (value == NULL || strcmp(value, "true") == 0 || strcmp(value, "1") == 0 ||
                strcmp(value, "yes") == 0) {
                *(bool *)field = true;
            } else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
                       strcmp(value, "no") == 0) {
                *(bool *)field = false;
            } else {
                snprintf(msg, msglen, "%s: expected true or false, got '%s'", key, value);
                return -EINVAL;
            }
            return 0;
        case K_UINT:
        case K_U64:
            errno = 0;
            u = value ? strtoull(value, &end, 10) : 0;
            if (value == NULL || *value == '\0' || *end != '\0' || errno != 0 || value[0] == '-' ||
                (k->max != 0 && u > k->max)) {
                snprintf(msg, msglen, "%s: expected a number%s, got '%s'", key,
                         k->max ? " in range" : "", value ? value : "");
                return -EINVAL;
            }
            if (k->type == K_UINT) {
                *(unsigned *)field = (unsigned)u;
            } else {
                *(uint64_t *)field = u;
            }
            return 0;
        }
    }
    snprintf(msg, msglen, "unknown option '%s'", key);
    return -EINVAL;
}

int node_config_load(struct node_config *c, const char *path, char *msg, size_t msglen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(msg, msglen, "config %s: %s", path, strerror(errno));
        return -errno;
    }
    char line[4096];
    int lineno = 0, rv = 0;
    while (rv == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        char *p = line + strspn(line, " \t");
        p[strcspn(p, "#\r\n")] = '\0';
        if (*p == '\0') {
            continue;
        }
        char *eq = strchr(p, '=');
        char *key = p, *val = NULL;
        if (eq != NULL) {
            *eq = '\0';
            val = eq + 1;
            val += strspn(val, " \t");
            for (char *e = val + strlen(val); e > val && (e[-1] == ' ' || e[-1] == '\t');) {
                *--e = '\0';
            }
        }
        for (char *e = key + strlen(key); e > key && (e[-1] == ' ' || e[-1] == '\t');) {
            *--e = '\0';
        }
        char sub[256];
        rv = node_config_set(c, key, val, sub, sizeof sub);
        if (rv < 0) {
            snprintf(msg, msglen, "config %s:%d: %s", path, lineno, sub);
        }
    }
    fclose(f);
    return rv;
}

/* The RPC port's protection: TLS (certificate and key) or explicitly
 * plaintext, never by default: API keys cross the network on it. */
static int node_config_check_rpc_tls(const struct node_config *c, char *msg, size_t msglen)
{
    bool tls = c->rpc_cert != NULL || c->rpc_key != NULL;
    if (tls && (c->rpc_cert == NULL || c->rpc_key == NULL)) {
        snprintf(msg, msglen, "RPC TLS needs both --rpc-cert and --rpc-key");
        return -EINVAL;
    }
    if (tls && c->rpc_plaintext) {
        snprintf(msg, msglen, "choose one of --rpc-cert/--rpc-key (TLS) and --rpc-plaintext");
        return -EINVAL;
    }
    if (c->rpc_client_certs && (!tls || c->rpc_cacert == NULL)) {
        snprintf(msg, msglen, "--rpc-client-certs needs --rpc-cert, --rpc-key and --rpc-cacert "
                              "(the CA that signs the client certificates)");
        return -EINVAL;
    }
    if (c->rpc != NULL && !tls && !c->rpc_plaintext) {
        snprintf(msg, msglen, "the RPC port needs protection: give --rpc-cert FILE and "
                              "--rpc-key FILE (TLS; --rpc-cacert FILE to verify other nodes), "
                              "or on a private network explicitly --rpc-plaintext");
        return -EINVAL;
    }
    return 0;
}

int node_config_check(const struct node_config *c, char *msg, size_t msglen)
{
    if (c->log_level != NULL && nv_log_level_of(c->log_level) < 0) {
        snprintf(msg, msglen, "log-level %s: expected error, warning, info or debug", c->log_level);
        return -EINVAL;
    }
    if (c->id == 0) {
        snprintf(msg, msglen, "--id is required (a positive node id)");
        return -EINVAL;
    }
    if (c->data_dir == NULL) {
        snprintf(msg, msglen, "--data-dir is required");
        return -EINVAL;
    }
    if (c->raft == NULL) {
        snprintf(msg, msglen, "--raft is required (this node's Raft address a.b.c.d:port or "
                              "[IPv6]:port)");
        return -EINVAL;
    }
    if (!node_raft_address_ok(c->raft)) {
        snprintf(msg, msglen, "--raft %s: expected IPv4:PORT or [IPv6]:PORT", c->raft);
        return -EINVAL;
    }
    int modes = (c->raft_psk_file != NULL) +
                (c->raft_cacert != NULL || c->raft_cert != NULL || c->raft_key != NULL) +
                c->raft_insecure;
    if (modes == 0) {
        snprintf(msg, msglen, "the Raft port needs protection: give --raft-psk-file FILE (a "
                              "cluster secret, e.g. openssl rand -hex 32), or --raft-cacert, "
                              "--raft-cert and --raft-key, or explicitly --raft-insecure");
        return -EINVAL;
    }
    if (modes > 1) {
        snprintf(msg, msglen, "choose one of --raft-psk-file, --raft-cacert/--raft-cert/"
                              "--raft-key and --raft-insecure");
        return -EINVAL;
    }
    if ((c->raft_cacert != NULL || c->raft_cert != NULL || c->raft_key != NULL) &&
        (c->raft_cacert == NULL || c->raft_cert == NULL || c->raft_key == NULL)) {
        snprintf(msg, msglen, "certificate mode needs all of --raft-cacert, --raft-cert and "
                              "--raft-key");
        return -EINVAL;
    }
    if (c->socket == NULL && c->rpc == NULL) {
        snprintf(msg, msglen, "no RPC endpoint: give --socket and/or --rpc");
        return -EINVAL;
    }
    if (c->segment_kb != 0 && c->segment_kb < 64) {
        snprintf(msg, msglen, "--segment-kb %u: at least 64 (KiB)", c->segment_kb);
        return -EINVAL;
    }
    if (c->rpc != NULL && c->api_key_file == NULL) {
        snprintf(msg, msglen, "--rpc needs --api-key-file (TCP clients must log in)");
        return -EINVAL;
    }
    return node_config_check_rpc_tls(c, msg, msglen);
}

/* ------------------------------------------------------------------ */
/* cluster.status */

static struct nv *render_fault(const struct cons_log_fault *f)
{
    struct nv *m = nv_map();
    nv_set_str(m, "what", f->kind);
    nv_set(m, "file", f->file[0] ? nv_str(f->file) : nv_nil());
    nv_set(m, "set_aside_as", f->set_aside[0] ? nv_str(f->set_aside) : nv_nil());
    nv_set_str(m, "reason", f->reason);
    nv_set(m, "lost_first", f->first_lost ? nv_int((int64_t)f->first_lost) : nv_nil());
    nv_set(m, "lost_last", f->last_lost ? nv_int((int64_t)f->last_lost) : nv_nil());
    nv_set_str(m, "action", f->accepted    ? "started without the lost entries (accept-data-loss)"
                            : f->recovered ? "caught up from the other members"
                                           : "catching up from the other members");
    return m;
}

/* The data dir as Raft sees it: free space, a failing log write and what
 * it stops, the faults found at start. */
static struct nv *render_storage(const struct node *n)
{
    struct cons_storage s;
    cons_get_storage(n->cons, &s);
    struct nv *m = nv_map();
    const char *state = s.error != 0 ? "error" : s.low ? "low" : "ok";
    nv_set_str(m, "state", state);
    nv_set_str(m, "data_dir", n->cfg.data_dir);
    nv_set_int(m, "free_bytes", (int64_t)s.free_bytes);
    nv_set_int(m, "segment_bytes", (int64_t)s.segment_bytes);
    nv_set_int(m, "preallocated_bytes", (int64_t)s.needed_bytes);
    if (s.error != 0) {
        nv_set(m, "error", nv_strf("[%s] %s", nv_errname(-s.error), s.error_msg));
        nv_set_int(m, "error_age_ms", (int64_t)s.error_age_ms);
        /* writes append entries, linearizable reads a barrier entry: both
         * need the log to grow */
        nv_set(m, "reason",
               nv_strf("the Raft log in %s cannot be written (%s): writes and linearizable "
                       "reads (each commits a log entry) fail with %s until %s; reads with "
                       "{\"extra\": {\"consistency\": \"local\"}} still answer%s",
                       n->cfg.data_dir, strerror(-s.error), nv_errname(-s.error),
                       s.error == -ENOSPC ? "space is freed in its file system"
                                          : "the disk works again",
                       s.blocked ? "; this leader has not committed its first entry of the "
                                   "term (it retries every second)"
                                 : ""));
    } else if (s.low) {
        nv_set(m, "error", nv_nil());
        nv_set(m, "reason",
               nv_strf("less than one segment free in %s: writes fail with ENOSPC once the "
                       "preallocated segments are full",
                       n->cfg.data_dir));
    } else {
        nv_set(m, "error", nv_nil());
        nv_set(m, "reason", nv_nil());
    }
    nv_set_int(m, "committed_watermark", (int64_t)s.watermark);
    struct nv *faults = nv_arr();
    for (size_t i = 0; i < s.n_faults && i < CONS_MAX_FAULTS; i++) {
        nv_push(faults, render_fault(&s.faults[i]));
    }
    nv_set(m, "log_faults", faults);
    return m;
}

/* What rendering cost since start: configfs calls by kind and their
 * total, and the passes (full ones built the whole desired tree). */
static struct nv *render_syscalls(struct tgt *t)
{
    struct tgt_stats st;
    tgt_stats(t, &st);
    const struct {
        const char *name;
        uint64_t v;
    } f[] = {{"mkdir", st.mkdir},     {"rmdir", st.rmdir},       {"read", st.read},
             {"write", st.write},     {"symlink", st.symlink},   {"unlink", st.unlink},
             {"readdir", st.readdir}, {"readlink", st.readlink}, {"stat", st.stat}};
    struct nv *m = nv_map();
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        nv_set_int(m, f[i].name, (int64_t)f[i].v);
        total += f[i].v;
    }
    nv_set_int(m, "total", (int64_t)total);
    nv_set_int(m, "passes", (int64_t)st.passes);
    nv_set_int(m, "full_passes", (int64_t)st.full_passes);
    return m;
}

static struct nv *render_status(const struct node *n)
{
    struct nv *r = nv_map();
    if (n->tgt == NULL) {
        nv_set_str(r, "state", "witness");
        return r;
    }
    const char *state = !n->caught_up                           ? "catching-up"
                        : n->last_errors > 0                    ? "error"
                        : n->rendered_gen < sm_generation(n->sm) ? "pending"
                                                                 : "ok";
    nv_set_str(r, "state", state);
    nv_set_bool(r, "matches", strcmp(state, "ok") == 0);
    nv_set_int(r, "generation", (int64_t)sm_generation(n->sm));
    nv_set_int(r, "rendered_generation", (int64_t)n->rendered_gen);
    nv_set_int(r, "passes", (int64_t)n->render_passes);
    nv_set_int(r, "drift_repaired", (int64_t)n->drift_total);
    nv_set_int(r, "check_rounds", (int64_t)n->verify_rounds);
    nv_set(r, "errors", n->last_problems ? nv_copy(n->last_problems) : nv_arr());
    nv_set_str(r, "configfs", n->cfg.configfs);
    nv_set_bool(r, "emulated", tgt_is_emulated(n->tgt));
    nv_set(r, "syscalls", render_syscalls(n->tgt));
    return r;
}

struct nv *node_cluster_status(void *ctx, struct nv_err *err)
{
    (void)err;
    struct node *n = ctx;
    struct cons_status st;
    memset(&st, 0, sizeof st);
    if (n->cons != NULL) {
        cons_get_status(n->cons, &st);
    }
    struct nv *me = nv_map();
    nv_set_int(me, "id", (int64_t)n->cfg.id);
    nv_set_str(me, "kind", n->cfg.witness ? "witness" : "data");
    nv_set_str(me, "raft_address", n->cfg.raft);
    nv_set_str(me, "role", cons_state_name(st.state));
    /* "ready" alone read like a fault on every healthy follower: it is
     * the leader's readiness to serve writes (post-election barrier
     * applied), false on followers by definition */
    nv_set_bool(me, "leader_ready", st.ready);
    nv_set_int(me, "log_format",
               n->env.cmd_version > 0 ? n->env.cmd_version : SM_CMD_VERSION_NEWEST);
    nv_set_int(me, "term", (int64_t)st.term);
    nv_set_int(me, "commit_index", (int64_t)st.commit_index);
    nv_set_int(me, "applied_index", (int64_t)st.last_applied);
    nv_set_int(me, "last_index", (int64_t)st.last_index);
    nv_set_int(me, "snapshot_index", (int64_t)st.snapshot_index);
    nv_set_int(me, "last_contact_ms", (int64_t)st.last_contact_ms);
    nv_set(me, "render", render_status(n));
    nv_set(me, "storage", render_storage(n));
    struct nv *fo = node_failover_status(n, NULL);
    nv_set(me, "failover", fo);
    nv_set_bool(me, "cluster_list_mismatch", n->list_mismatch);

    struct nv *members = nv_arr();
    for (size_t i = 0; i < st.n_members && i < sizeof st.members / sizeof st.members[0]; i++) {
        struct nv *m = nv_map();
        nv_set_int(m, "id", (int64_t)st.members[i].id);
        nv_set_str(m, "raft_address", st.members[i].address);
        nv_set_str(m, "raft_role", cons_role_name(st.members[i].role));
        nv_set_bool(m, "leader", st.members[i].id == st.leader_id);
        nv_push(members, m);
    }
    struct nv *out = nv_map();
    nv_set_int(out, "id", (int64_t)n->cfg.id);
    nv_set(out, "leader", st.leader_id ? nv_int((int64_t)st.leader_id) : nv_nil());
    nv_set(out, "node", me);
    nv_set(out, "members", members);
    return out;
}

/* ------------------------------------------------------------------ */
/* transport address choices (TrueNAS's non-HA branch: every configured
 * address of every interface maps to itself) */

struct nv *node_address_choices(void *ctx, const char *trtype, bool force_ana,
                                struct nv_err *err)
{
    struct node *n = ctx;
    struct nv *out = nv_map();
    if (strcmp(trtype, "TCP") != 0) {
        return out; /* RDMA needs global rdma and an RDMA NIC; FC has none */
    }
    /* With failover the addresses a port may use are the VIPs: in ANA mode
     * (or when asked to force it) each maps to the data nodes' own
     * addresses "A/B/..." in node order, else to itself. */
    struct tgt_view v = node_view(n);
    if (v.ha) {
        const struct nv *vips = nv_get(nv_get(sm_cluster(n->sm), "failover"), "vips");
        bool ana = force_ana || nv_get_bool(sm_global_row(n->sm), "ana", false);
        uint64_t ids[FO_MAX_MEMBERS];
        unsigned k = fo_data_nodes(n->fo, ids, FO_MAX_MEMBERS);
        for (size_t i = 0; i < nv_len(vips); i++) {
            const struct nv *vip = nv_at(vips, i);
            const char *addr = nv_get_str(vip, "address");
            if (addr == NULL) {
                continue;
            }
            if (!ana) {
                nv_set_str(out, addr, addr);
                continue;
            }
            const struct nv *na = nv_get(vip, "node_addresses");
            char desc[512] = "";
            size_t o = 0;
            for (unsigned j = 0; j < k && o < sizeof desc; j++) {
                char key[24];
                snprintf(key, sizeof key, "%llu", (unsigned long long)ids[j]);
                const char *a = nv_get_str(na, key);
                o += (size_t)snprintf(desc + o, sizeof desc - o, "%s%s", j ? "/" : "", a ? a : "");
            }
            nv_set_str(out, addr, desc);
        }
        return out;
    }
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) < 0) {
        nv_free(out);
        nv_err_call(err, errno, "getifaddrs: %s", strerror(errno));
        return NULL;
    }
    for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || (i->ifa_flags & IFF_LOOPBACK)) {
            continue;
        }
        char buf[INET6_ADDRSTRLEN];
        if (i->ifa_addr->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, buf, sizeof buf);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            const struct in6_addr *a6 = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
            if (IN6_IS_ADDR_LINKLOCAL(a6)) {
                continue;
            }
            inet_ntop(AF_INET6, a6, buf, sizeof buf);
        } else {
            continue;
        }
        nv_set_str(out, buf, buf);
    }
    freeifaddrs(ifs);
    return out;
}

/* nvmet.global.export_nvmetcli (rpc_node.export_nvmetcli). */
struct nv *node_export_nvmetcli(void *ctx, bool live, struct nv_err *err)
{
    struct node *n = ctx;
    if (n->tgt == NULL) {
        nv_err_call(err, ENOTSUP, "a witness renders no configfs: ask a data node");
        return NULL;
    }
    struct tgt_view v = node_view(n);
    struct nv *tree = live ? tgt_live_tree(n->tgt) : tgt_desired_tree(n->tgt, n->sm, &v);
    struct nv *doc = tree != NULL ? tgt_nvmetcli(tree) : NULL;
    nv_free(tree);
    if (doc == NULL) {
        nv_err_call(err, ENOMEM, "out of memory");
    }
    return doc;
}
