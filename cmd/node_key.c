/* The node-to-node credential: the key a node logs in to its peers with
 * (forwarding calls to the leader, cluster.status, register, join), and
 * that every node accepts as an admin login. The API key file cannot give
 * it any more: it holds hashes. In order:
 *
 *   --cluster-key-file FILE  a plaintext secret (mode 0600, the same on
 *                            every node), re-read when the file changes;
 *   --raft-psk-file FILE     HMAC-SHA256(PSK, CLUSTER_KEY_LABEL) in hex: every
 *                            member has the PSK already;
 *   the API key file         when it is in the old one-key format, that
 *                            key (re-read when the file changes);
 *   none                     no forwarding: followers answer NOT_LEADER
 *                            with the leader's address. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "node_int.h"

#define CLUSTER_KEY_LABEL "nvmet-ha rpc cluster key v1"
#define CLUSTER_KEY_MIN 16 /* characters of a --cluster-key-file secret */

/* The file at path changed since it was last read (or was never read). */
static bool file_changed(struct node *n, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        bool was = n->ck_stat.valid;
        memset(&n->ck_stat, 0, sizeof n->ck_stat);
        return was; /* gone: read once more, which fails and says why */
    }
    struct node_key_stat now = {
        .ino = (uint64_t)st.st_ino,
        .size = (uint64_t)st.st_size,
        .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
        .mode = (unsigned)st.st_mode,
        .valid = true};
    const struct node_key_stat *was = &n->ck_stat;
    bool changed = !was->valid || now.ino != was->ino || now.size != was->size ||
                   now.mtime_ns != was->mtime_ns || now.mode != was->mode;
    n->ck_stat = now;
    return changed;
}

static void set_key(struct node *n, const char *key)
{
    OPENSSL_cleanse(n->cluster_key, sizeof n->cluster_key);
    if (key != NULL) {
        snprintf(n->cluster_key, sizeof n->cluster_key, "%s", key);
    }
}

/* --cluster-key-file: 0 and the key set, or <0 with msg. */
static int read_cluster_file(struct node *n, char *msg, size_t msglen)
{
    char *key = NULL;
    int rv = rpc_key_file_read(n->cfg.cluster_key_file, &key, msg, msglen);
    if (rv == 0 && strlen(key) < CLUSTER_KEY_MIN) {
        snprintf(msg, msglen,
                 "cluster key file %s: the key must have at least %d characters (e.g. openssl "
                 "rand -hex 32)",
                 n->cfg.cluster_key_file, CLUSTER_KEY_MIN);
        rv = -EINVAL;
    }
    set_key(n, rv == 0 ? key : NULL);
    if (key != NULL) {
        OPENSSL_cleanse(key, strlen(key));
    }
    free(key);
    return rv;
}

/* The API key file's old-format key, or none. */
static void read_legacy(struct node *n)
{
    char *key = NULL;
    set_key(n, rpc_keys_legacy(n->cfg.api_key_file, &key) == 0 ? key : NULL);
    if (key != NULL) {
        OPENSSL_cleanse(key, strlen(key));
    }
    free(key);
}

int node_cluster_key_init(struct node *n, char *msg, size_t msglen)
{
    if (n->cfg.cluster_key_file != NULL) {
        n->ck_source = NODE_CK_FILE;
        file_changed(n, n->cfg.cluster_key_file);
        return read_cluster_file(n, msg, msglen);
    }
    if (n->cfg.raft_psk_file != NULL) {
        unsigned char k[32];
        int rv = cons_psk_derive(n->cfg.raft_psk_file, CLUSTER_KEY_LABEL, k, msg, msglen);
        if (rv < 0) {
            return rv;
        }
        static const char digits[] = "0123456789abcdef";
        char hex[65];
        for (size_t i = 0; i < sizeof k; i++) {
            hex[2 * i] = digits[k[i] >> 4];
            hex[2 * i + 1] = digits[k[i] & 15];
        }
        hex[64] = '\0';
        set_key(n, hex);
        OPENSSL_cleanse(k, sizeof k);
        OPENSSL_cleanse(hex, sizeof hex);
        n->ck_source = NODE_CK_PSK;
        return 0;
    }
    if (n->cfg.api_key_file != NULL) {
        n->ck_source = NODE_CK_LEGACY;
        file_changed(n, n->cfg.api_key_file);
        read_legacy(n);
        return 0;
    }
    n->ck_source = NODE_CK_NONE;
    return 0;
}

const char *node_cluster_key(struct node *n)
{
    char msg[512];
    switch (n->ck_source) {
        case NODE_CK_FILE:
            /* a rotated key is used from the next connection on */
            if (file_changed(n, n->cfg.cluster_key_file) &&
                read_cluster_file(n, msg, sizeof msg) < 0) {
                node_log(n, NODE_LOG_ERROR, "cluster key: %s (no forwarding until it is fixed)",
                         msg);
            }
            break;
        case NODE_CK_LEGACY:
            if (file_changed(n, n->cfg.api_key_file)) {
                read_legacy(n);
            }
            break;
        default:
            break;
    }
    return n->cluster_key[0] != '\0' ? n->cluster_key : NULL;
}

const char *node_cluster_key_accepted(void *ctx)
{
    struct node *n = ctx;
    /* the old format's key logs in through the key file already, as the
     * admin key named "legacy" */
    return n->ck_source == NODE_CK_LEGACY ? NULL : node_cluster_key(n);
}

const char *node_cluster_key_source(const struct node *n)
{
    static const char *const names[] = {"none", "--cluster-key-file", "--raft-psk-file",
                                        "the API key file (old format)"};
    if (n->cluster_key[0] == '\0' && n->ck_source != NODE_CK_FILE) {
        return "none: no forwarding to the leader (followers answer NOT_LEADER); give "
               "--cluster-key-file or --raft-psk-file";
    }
    return names[n->ck_source];
}
