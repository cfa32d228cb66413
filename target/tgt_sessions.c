/* nvmet.global.sessions: the controllers the kernel lists in debugfs,
 * <debugfs>/nvmet/<subnqn>/ctrl<N>/{hostnqn,host_traddr,port}, mapped to
 * the state's subsystem and port ids (the items of TrueNAS's
 * nvmet.global.sessions). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nv.h"
#include "tgt_int.h"

static int read_value(const char *dir, const char *name, char *buf, size_t len)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (f == NULL) {
        return -errno;
    }
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1])) {
        buf[--n] = '\0';
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tgt_dirent *)a)->name, ((const struct tgt_dirent *)b)->name);
}

static long ctrl_number(const char *name)
{
    if (strncmp(name, "ctrl", 4) != 0 || !isdigit((unsigned char)name[4])) {
        return -1;
    }
    char *end;
    long n = strtol(name + 4, &end, 10);
    return *end == '\0' ? n : -1;
}

static int ctrl_cmp(const void *a, const void *b)
{
    long x = ctrl_number(((const struct tgt_dirent *)a)->name);
    long y = ctrl_number(((const struct tgt_dirent *)b)->name);
    return (x > y) - (x < y);
}

static const struct nv *subsys_by_nqn(const struct tgt_rows *r, const char *nqn)
{
    for (size_t i = 0; i < r->n[SM_SUBSYS]; i++) {
        const char *s = nv_get_str(r->row[SM_SUBSYS][i], "subnqn");
        if (s != NULL && strcmp(s, nqn) == 0) {
            return r->row[SM_SUBSYS][i];
        }
    }
    return NULL;
}

static const struct nv *port_by_index(const struct tgt_rows *r, long index)
{
    for (size_t i = 0; i < r->n[SM_PORT]; i++) {
        if (nv_get_int(r->row[SM_PORT][i], "index", -1) == index) {
            return r->row[SM_PORT][i];
        }
    }
    return NULL;
}

static void add_ctrls(struct nv *out, const char *sdir, const struct nv *subsys,
                      const struct tgt_rows *r)
{
    struct tgt_dirent *c = NULL;
    size_t n = 0;
    if (tgt__plain_readdir(sdir, &c, &n) < 0) {
        return;
    }
    if (n > 1) {
        qsort(c, n, sizeof *c, ctrl_cmp);
    }
    for (size_t i = 0; i < n; i++) {
        long num = ctrl_number(c[i].name);
        if (num < 0 || c[i].type != DT_DIR) {
            continue;
        }
        char cdir[4096], hostnqn[512] = "", traddr[512] = "", port[64] = "";
        if (snprintf(cdir, sizeof cdir, "%s/%s", sdir, c[i].name) >= (int)sizeof cdir) {
            continue;
        }
        read_value(cdir, "hostnqn", hostnqn, sizeof hostnqn);
        read_value(cdir, "host_traddr", traddr, sizeof traddr);
        read_value(cdir, "port", port, sizeof port);
        long idx = port[0] != '\0' ? strtol(port, NULL, 10) : -1;
        if (idx >= TGT_ANA_PORT_OFFSET) {
            idx -= TGT_ANA_PORT_OFFSET; /* a controller on the ANA form of the port */
        }
        const struct nv *p = port_by_index(r, idx);
        struct nv *item = nv_map();
        if (item == NULL) {
            continue;
        }
        nv_set_str(item, "host_traddr", traddr);
        nv_set_str(item, "hostnqn", hostnqn);
        nv_set_int(item, "subsys_id", nv_get_int(subsys, "id", 0));
        if (p != NULL) {
            nv_set_int(item, "port_id", nv_get_int(p, "id", 0));
        } else {
            nv_set_nil(item, "port_id");
        }
        nv_set_int(item, "ctrl", num);
        nv_push(out, item);
    }
    tgt__dirents_free(c, n);
}

struct nv *tgt__sessions_rows(const char *debugfs, const struct tgt_rows *r)
{
    struct nv *out = nv_arr();
    if (out == NULL) {
        return NULL;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/nvmet", debugfs != NULL ? debugfs : "/sys/kernel/debug");
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    if (tgt__plain_readdir(dir, &d, &n) < 0) {
        return out; /* no debugfs or nvmet not loaded: no sessions */
    }
    if (n > 1) {
        qsort(d, n, sizeof *d, name_cmp);
    }
    for (size_t i = 0; i < n; i++) {
        const struct nv *s = subsys_by_nqn(r, d[i].name);
        if (s == NULL || d[i].type != DT_DIR) {
            continue; /* not ours (or the discovery subsystem) */
        }
        char sdir[4096];
        if (snprintf(sdir, sizeof sdir, "%s/%s", dir, d[i].name) >= (int)sizeof sdir) {
            continue;
        }
        add_ctrls(out, sdir, s, r);
    }
    tgt__dirents_free(d, n);
    return out;
}
