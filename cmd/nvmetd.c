/* nvmetd: the nvmet-ha node daemon.
 *
 *   nvmetd --id N --data-dir DIR --raft IP:PORT
 *          --raft-psk-file F | --raft-cacert F --raft-cert F --raft-key F |
 *          --raft-insecure [--rpc HOST:PORT --api-key-file F
 *          --rpc-cert F --rpc-key F [--rpc-cacert F] | --rpc-plaintext]
 *          [--socket PATH] [--configfs DIR]
 *          [--cluster ID=IP:PORT,...] [--witness] [--config FILE] ...
 *
 * A config file holds the same keys ("key = value"); flags win. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "node.h"
#include "nv_log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nvmetd --id N --data-dir DIR --raft IP:PORT RAFT-SECURITY [options]\n"
            "  --id N                 this node's id (> 0)\n"
            "  --data-dir DIR         Raft log and snapshots (created if missing)\n"
            "  --raft IP:PORT         this node's Raft address: a.b.c.d:port or [v6]:port\n"
            "  --cluster ID=IP:PORT,..  initial members (same list on every node;\n"
            "                         omit for a single-node cluster)\n"
            "RAFT-SECURITY, one of (README \"Raft transport security\"):\n"
            "  --raft-psk-file FILE   cluster secret (>= 32 random bytes or 64 hex digits,\n"
            "                         mode 0600, the same file on every node): TLS 1.3 PSK\n"
            "  --raft-cacert FILE --raft-cert FILE --raft-key FILE\n"
            "                         TLS 1.3 with certificates of the cluster CA; a node's\n"
            "                         certificate names it nvmet-node-<id> (DNS SAN or CN)\n"
            "  --raft-insecure        plaintext Raft (still only members, frames checked)\n"
            "  --join HOST:PORT       join an existing cluster through the RPC\n"
            "                         address of one of its members (needs the API key)\n"
            "  --socket PATH          unix socket for local clients, root only\n"
            "                         (default /run/nvmet-ha/nvmetd.sock)\n"
            "  --rpc HOST:PORT        TCP listener; clients log in with the API key\n"
            "  --api-key-file FILE    the API keys of TCP clients: NAME ROLE HASH lines\n"
            "                         (role admin or readonly; nvmetctl key generate),\n"
            "                         or one bare admin key; mode 0600 or stricter\n"
            "  --cluster-key-file FILE  the key nodes log in to each other with (same on\n"
            "                         every node, mode 0600); default: derived from\n"
            "                         --raft-psk-file, else the bare key of --api-key-file\n"
            "RPC-SECURITY with --rpc, one of (README \"TLS on the RPC port\"):\n"
            "  --rpc-cert FILE --rpc-key FILE\n"
            "                         TLS 1.3 with this certificate (naming the --rpc\n"
            "                         host) and key (mode 0600); also this node's client\n"
            "                         certificate when it calls other nodes\n"
            "  --rpc-plaintext        TCP without TLS (isolated networks only)\n"
            "  --rpc-cacert FILE      CA verifying other nodes' RPC certificates (else the\n"
            "                         system store) and client certificates\n"
            "  --rpc-client-certs     TCP clients need a certificate signed by --rpc-cacert\n"
            "  --configfs DIR         directory holding nvmet/ (default /sys/kernel/config)\n"
            "  --emulate              --configfs is a plain directory: emulate the kernel's\n"
            "                         nvmet there (tests, demos; refused on real configfs)\n"
            "  --emulate-kernel VER   emulated kernel profile: 6.12 (default), 6.13 or 6.1\n"
            "                         (implies --emulate)\n"
            "  --device-root DIR      look devices and FILE backing files up under DIR\n"
            "  --debugfs DIR          debugfs for nvmet.global.sessions\n"
            "  --witness              vote in Raft, never render configfs\n"
            "  --election-timeout MS  Raft election timeout (default 400); failover takes\n"
            "                         about 1.7 of it (150: the fast profile, see README)\n"
            "  --snapshot-threshold N entries between snapshots (default 8192)\n"
            "  --segment-kb N         Raft log segment size in KiB (default 4096); 3 segments\n"
            "                         are preallocated in the data dir\n"
            "  --accept-data-loss     start a single-node cluster whose log lost entries\n"
            "                         (a damaged or missing segment): once, after reading\n"
            "                         why it refused to start\n"
            "  --log-format N         Raft log commands this node writes as leader: 2 (the\n"
            "                         default) or 1 while a rolling upgrade from a release\n"
            "                         that applies only 1 is under way (SIGHUP re-reads it)\n"
            "  --sweep-interval MS    one round of the rolling configfs drift check (default\n"
            "                         30000: a slice of the tree every 100 ms)\n"
            "  --rpc-hold-timeout MS  how long a call that needs the leader waits for one\n"
            "                         during an election (default 5000)\n"
            "  --metrics HOST:PORT    serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "                         (no authentication: a monitoring network only)\n"
            "  --log-level LEVEL      error, warning, info (default) or debug; ISO 8601\n"
            "                         times, or <N> priorities when stderr is journald\n"
            "  --config FILE          read the same keys from FILE (key = value)\n");
}

/* mkdir -p of the socket's directory (/run/nvmet-ha by default). */
static void make_parent(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL) {
        return;
    }
    char *dir = dirname(copy);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
    free(copy);
}

static int parse_args(int argc, char **argv, struct node_config *cfg, char *msg, size_t msglen)
{
    /* The config file first, so that flags override it. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (strncmp(a, "--config=", 9) == 0) {
            val = a + 9;
        } else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            val = argv[i + 1];
        }
        if (val != NULL) {
            int rv = node_config_load(cfg, val, msg, msglen);
            if (rv < 0) {
                return rv;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(msg, msglen, "unexpected argument '%s'", a);
            return -EINVAL;
        }
        char key[64];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (klen >= sizeof key) {
            snprintf(msg, msglen, "unknown option '%s'", a);
            return -EINVAL;
        }
        memcpy(key, a + 2, klen);
        key[klen] = '\0';
        if (eq != NULL) {
            val = eq + 1;
        } else if (!node_config_is_flag(key)) {
            if (i + 1 >= argc) {
                snprintf(msg, msglen, "option --%s needs a value", key);
                return -EINVAL;
            }
            val = argv[++i];
        }
        if (strcmp(key, "config") == 0) {
            continue;
        }
        int rv = node_config_set(cfg, key, val, msg, msglen);
        if (rv < 0) {
            return rv;
        }
    }
    return node_config_check(cfg, msg, msglen);
}

static void stopped(void *arg) { (void)arg; }

/* SIGHUP: the same arguments, read again (the config file may have changed). */
struct args {
    int argc;
    char **argv;
};

static int reload(void *arg, struct node_config *out, char *msg, size_t msglen)
{
    const struct args *a = arg;
    node_config_defaults(out);
    return parse_args(a->argc, a->argv, out, msg, msglen);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("nvmetd %s\n", NVMET_HA_VERSION);
            return 0;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);

    struct node_config cfg;
    node_config_defaults(&cfg);
    char msg[512] = "";
    if (parse_args(argc, argv, &cfg, msg, sizeof msg) < 0) {
        fprintf(stderr, "nvmetd: %s\n", msg);
        usage(stderr);
        node_config_free(&cfg);
        return 2;
    }
    if (cfg.socket != NULL) {
        make_parent(cfg.socket);
    }
    char ident[40];
    snprintf(ident, sizeof ident, "nvmetd[%llu]", (unsigned long long)cfg.id);
    nv_log_init(ident, cfg.log_level != NULL ? nv_log_level_of(cfg.log_level) : NV_LOG_INFO);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct node *n = NULL;
    int code = 0;
    cfg.exit_status = &code;
    struct args args = {argc, argv};
    cfg.reload = reload;
    cfg.reload_arg = &args;
    int rv = node_start(&loop, &cfg, &n, msg, sizeof msg); /* n takes cfg's strings */
    if (rv < 0) {
        fprintf(stderr, "nvmetd: %s\n", msg[0] ? msg : strerror(-rv));
        code = 1;
        if (n != NULL) {
            node_stop(n, stopped, NULL);
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        /* A handle still open at exit is a bug; say so rather than hang. */
        fprintf(stderr, "nvmetd: event loop closed with handles still open\n");
    }
    return code;
}
