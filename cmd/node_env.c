/* node_env: what a node takes from its machine rather than from the
 * cluster: the leader environment for sm_prepare (the random source, the
 * device checks, RDMA hardware) and the bootstrap --cluster list kept in
 * the data dir. node.c only wires these in. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "node_int.h"
#include "nv_file.h"

/* ------------------------------------------------------------------ */
/* the leader environment */

static void env_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t got = getrandom(p, len, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            abort(); /* no entropy source: nothing safe to do */
        }
        p += got;
        len -= (size_t)got;
    }
}

/* Device checks look under --device-root when set (tests and the
 * emulated demo), else at the real path. */
static enum sm_dev_kind env_device_stat(void *ctx, const char *path)
{
    struct node *n = ctx;
    char full[PATH_MAX];
    const char *root = n->cfg.device_root;
    snprintf(full, sizeof full, "%s%s", root ? root : "", path);
    struct stat st;
    if (stat(full, &st) == 0) {
        return S_ISBLK(st.st_mode)   ? SM_DEV_BLOCK
               : S_ISREG(st.st_mode) ? SM_DEV_FILE
               : S_ISDIR(st.st_mode) ? SM_DEV_DIR
                                     : SM_DEV_OTHER;
    }
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", full);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
    }
    return stat(parent, &st) == 0 && S_ISDIR(st.st_mode) ? SM_DEV_MISSING : SM_DEV_NOPARENT;
}

static bool rdma_capable(void)
{
    DIR *d = opendir("/sys/class/infiniband");
    if (d == NULL) {
        return false;
    }
    bool any = false;
    struct dirent *e;
    while (!any && (e = readdir(d)) != NULL) {
        any = e->d_name[0] != '.';
    }
    closedir(d);
    return any;
}

void node_env_init(struct node *n)
{
    n->env = (struct sm_env){.random = env_random,
                             .device_stat = env_device_stat,
                             .ha = false,
                             .rdma_capable = rdma_capable(),
                             .ctx = n,
                             .cmd_version = (int)n->cfg.log_format};
}

/* ------------------------------------------------------------------ */
/* the bootstrap list */

static int cmp_peer(const void *a, const void *b)
{
    const struct cons_peer *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* The bootstrap list in a canonical form ("1=a:p,2=b:q"), kept in the data
 * dir: a restart with another list, or a data dir of another cluster, is
 * refused instead of silently forming a different cluster. */
int node_check_cluster_list(struct node *n, bool write, char *msg, size_t msglen)
{
    if (n->n_peers == 0) {
        return 0;
    }
    qsort(n->peers, n->n_peers, sizeof *n->peers, cmp_peer);
    size_t o = 0;
    for (size_t i = 0; i < n->n_peers && o < sizeof n->cluster_list; i++) {
        o +=
            (size_t)snprintf(n->cluster_list + o, sizeof n->cluster_list - o, "%s%llu=%s",
                             i ? "," : "", (unsigned long long)n->peers[i].id, n->peers[i].address);
    }
    char path[4200], have[sizeof n->cluster_list] = "";
    snprintf(path, sizeof path, "%s/cluster-list", n->cfg.data_dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(have, sizeof have, f) == NULL) {
            have[0] = '\0';
        }
        fclose(f);
        have[strcspn(have, "\n")] = '\0';
    }
    /* An empty file is a write that a power loss cut short (releases
     * before this one did not sync it): as good as none. */
    if (have[0] != '\0') {
        if (strcmp(have, n->cluster_list) != 0) {
            snprintf(msg, msglen,
                     "data dir %s belongs to the cluster %s, not %s: start with the same "
                     "--cluster list (or an empty data dir)",
                     n->cfg.data_dir, have, n->cluster_list);
            return -EEXIST;
        }
        return 0;
    }
    if (write) {
        char text[sizeof n->cluster_list + 1];
        int len = snprintf(text, sizeof text, "%s\n", n->cluster_list);
        nv_write_durably(path, text, (size_t)len, 0644);
    }
    return 0;
}
