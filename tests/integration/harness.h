/* Integration test harness: real nvmetd processes on loopback, each with a
 * temp data dir, unix socket and emulated configfs tree, driven through the
 * real nvmetctl binary and the rpc client. */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct nv;
struct nv_err;

struct h_node {
    int id;
    pid_t pid;
    char dir[256];      /* everything of this node lives here */
    char sock[300];     /* unix socket */
    char data[300];     /* Raft data dir */
    char configfs[300]; /* emulated configfs root (holds nvmet/) */
    char devroot[300];  /* --device-root */
    char log[300];      /* nvmetd's stderr */
    char keyfile[300];
    char psk[300]; /* the cluster's Raft secret, shared by the nodes of a base */
    /* RPC TLS: the base's test CA and this node's certificate (IP SAN
     * 127.0.0.1, DNS localhost) and key */
    char cacert[300], cert[300], certkey[300];
    bool rpc_plaintext; /* start with --rpc-plaintext instead of TLS */
    int raft_port, rpc_port;
};

/* Milliseconds of the monotonic clock (for bounded waits). */
long h_now_ms(void);

/* A fresh temp directory under /tmp (removed by h_rmrf). */
void h_tmpdir(char *out, size_t len);
void h_rmrf(const char *path);
int h_free_port(void);

/* Paths and ports for node id under base; creates the dirs and the API key
 * file ("test-key"), a block device node for zvol/tank/nvme/ns1 under
 * the device root, (once per base) base/raft.psk, the Raft secret every
 * node started by h_node_start uses (--raft-psk-file), and base/rpc-ca.pem,
 * the CA of the nodes' RPC certificates (base/node<id>-rpc.pem). */
void h_node_init(struct h_node *n, const char *base, int id);
/* A fresh Raft secret (64 hex digits, mode 0600) at path, unless the file
 * exists. */
void h_write_psk(const char *path);
/* Start nvmetd (extra: more argv entries, NULL-terminated, may be NULL;
 * with --raft-insecure or --raft-cacert in extra the node gets no PSK).
 * The RPC port speaks TLS (--rpc-cert, --rpc-key, --rpc-cacert of
 * h_node_init) unless n->rpc_plaintext (--rpc-plaintext). Then
 * wait until it answers core.ping and is the ready leader (single node) or
 * just answers (cluster). Returns 0 or -1 (the log is printed). */
int h_node_start(struct h_node *n, const char *const *extra);
/* Send sig; h_node_wait reaps it and returns its exit status (or 128+sig). */
void h_node_kill(struct h_node *n, int sig);
int h_node_wait(struct h_node *n);
void h_node_print_log(const struct h_node *n);
/* Kill (SIGKILL) and reap every started node of n[0..count). */
void h_nodes_down(struct h_node *n, int count);

/* Run nvmetctl --socket <sock> call METHOD ARGS... (NULL-terminated). */
struct h_out {
    int code;
    char *out; /* stdout, owned */
    char *err; /* stderr, owned */
};
int h_ctl(const struct h_node *n, struct h_out *o, const char *method, ...);
void h_out_free(struct h_out *o);

/* A call through rpc_call_sync on the unix socket; params JSON text (an
 * array) or NULL. Returns the result (owned) or NULL with err filled. */
struct nv *h_call(const struct h_node *n, const char *method, const char *params_json,
                  struct nv_err *err);

/* h_call that must succeed: the result (owned), or NULL after printing
 * the method, its params and the error to stderr. */
struct nv *h_call_ok(const struct h_node *n, const char *method, const char *params_json);
/* Index in n[0..count) of a started node whose local cluster.status says
 * it is the ready leader, waiting (bounded) up to timeout_ms; -1 if none. */
int h_wait_leader(const struct h_node *n, int count, int timeout_ms);

/* `nvmetctl key generate --name NAME --role ROLE`: its two lines without
 * the newline, the key and the key file's line. Returns 0 or -1. */
int h_key_generate(const char *name, const char *role, char *key, size_t klen, char *line,
                   size_t llen);
/* Replace path with text. Returns 0 or -1. */
int h_write(const char *path, const char *text);

/* Whole file as a string without the trailing newline (owned), NULL if
 * missing. */
char *h_read(const char *path);
/* Wait (bounded) until cluster.status says the render matches. */
int h_wait_rendered(const struct h_node *n, int timeout_ms);

#endif
