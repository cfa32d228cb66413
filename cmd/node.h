/* node: one nvmetd process, wiring the modules together (the data
 * flow): consensus drives the statemachine, every apply schedules a render
 * of target/, rpc/ serves clients through struct rpc_node. */
#ifndef NODE_H
#define NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uv_loop_s;

/* Everything nvmetd is told on its command line or in its config file.
 * Strings are owned by the config (freed by node_config_free). */
struct node_config {
    uint64_t id;
    char *data_dir;
    char *raft;     /* this node's Raft address "a.b.c.d:port" or "[v6]:port" */
    char *rpc;      /* TCP RPC address "host:port" or NULL */
    char *socket;   /* unix socket path */
    char *configfs; /* directory holding nvmet/ */
    char *cluster;  /* "1=ip:port,2=ip:port,..." or NULL (single node) */
    char *join;     /* RPC address of a member to join through, or NULL */
    bool witness;
    char *api_key_file;
    char *cluster_key_file; /* the node-to-node key (plaintext, 0600) */
    /* RPC TCP security: TLS with this certificate and key (also this
     * node's client certificate towards other nodes), other nodes' RPC
     * certificates and client certificates verified by rpc_cacert; or
     * explicitly plaintext. */
    char *rpc_cert;
    char *rpc_key;
    char *rpc_cacert;
    bool rpc_client_certs;
    bool rpc_plaintext;
    char *device_root;    /* prefix for device checks and FILE backing files */
    char *emulate_kernel; /* emulated configfs profile ("6.12", "6.1") */
    char *debugfs;
    char *log_level; /* "error", "warning", "info", "debug" */
    /* Raft transport security (one of): a cluster secret file, the
     * cluster CA with this node's certificate and key, or plaintext. */
    char *raft_psk_file;
    char *raft_cacert;
    char *raft_cert;
    char *raft_key;
    char *metrics; /* "HOST:PORT" of the Prometheus endpoint, NULL = none */
    bool raft_insecure;
    bool emulate; /* --emulate: --configfs is a plain directory on purpose */
    unsigned election_timeout_ms;
    unsigned snapshot_threshold;
    unsigned sweep_interval_ms;
    /* the Raft log command version this node writes as leader; 0 = the
     * newest (statemachine/sm.h "Upgrade rule") */
    unsigned log_format;
    unsigned rpc_hold_timeout_ms; /* how long a call waits for a leader */
    unsigned segment_kb;          /* Raft segment size in KiB, 0 = consensus default */
    bool accept_data_loss;        /* start a single voter on a log that lost entries */
    int *exit_status; /* set to 1 when the node stops on an error (not owned) */
    /* SIGHUP: build the configuration again as at the start (config file,
     * then flags) into *out (defaults first). 0 or -errno with msg. NULL =
     * nothing to re-read. */
    int (*reload)(void *arg, struct node_config *out, char *msg, size_t msglen);
    void *reload_arg;
};

void node_config_defaults(struct node_config *c);
void node_config_free(struct node_config *c);
/* Set one key (flag name without "--") from text. 0 or -EINVAL with msg. */
int node_config_set(struct node_config *c, const char *key, const char *value, char *msg,
                    size_t msglen);
/* Whether a key is a boolean flag (takes no value on the command line). */
bool node_config_is_flag(const char *key);
/* Read "key = value" lines (# comments) of a config file. */
int node_config_load(struct node_config *c, const char *path, char *msg, size_t msglen);
/* A Raft address: "a.b.c.d:port" or "[v6]:port". */
bool node_raft_address_ok(const char *s);
/* SIGHUP: re-read the configuration (cfg.reload), apply what can change
 * while running (log-level, rpc-hold-timeout, sweep-interval), log every
 * other changed key as taking effect at the next restart (key files need
 * no signal: they are read again when they change). A config that does
 * not parse changes nothing (logged). */
struct node;
void node_reload(struct node *n);
/* Final checks (required keys, formats). */
int node_config_check(const struct node_config *c, char *msg, size_t msglen);

struct node;

/* Start every module on loop. 0 or -errno with msg. */
int node_start(struct uv_loop_s *loop, const struct node_config *cfg, struct node **out,
               char *msg, size_t msglen);
/* Graceful stop; done(arg) when every handle is closed and n is freed. */
void node_stop(struct node *n, void (*done)(void *arg), void *arg);

void node_log(const struct node *n, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum { NODE_LOG_ERROR, NODE_LOG_INFO, NODE_LOG_DEBUG };

#endif
