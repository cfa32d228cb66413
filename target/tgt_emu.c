/* The emulated kernel: the nvmet configfs rules (drivers/nvme/target/
 * configfs.c, fs/configfs/dir.c), with the kernel's errno for each wrong
 * step, on a plain directory tree, so that ordering bugs fail in unit
 * tests the way they fail on a real kernel.
 *
 * The schema (which directory is what) is one table: default groups are
 * made with their owner, items are made by mkdir in a group that allows
 * it, links only in groups that allow them and only to one object type.
 * Attribute files and their store() rules live in tgt_emu_attr.c.
 * Anything created in the tree by other means (a test's mkdir or echo)
 * is not checked: that is drift, for the renderer to repair. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nv_err.h"
#include "tgt_int.h"

struct en_def {
    enum emu_type parent; /* default group: its owner; item: the group it is made in */
    const char *dname;    /* default group name; NULL for items made by mkdir */
    enum emu_type item;   /* mkdir here makes this type (EN_NONE: EPERM) */
    enum emu_type link;   /* symlinks here must point to this type (EN_NONE: EPERM) */
    unsigned profiles;
};

static const struct en_def types[EN__COUNT] = {
    [EN_ROOT] = {EN_NONE, NULL, EN_NONE, EN_NONE, TGT_PALL},
    [EN_SUBSYS_GRP] = {EN_ROOT, "subsystems", EN_SUBSYS, EN_NONE, TGT_PALL},
    [EN_SUBSYS] = {EN_SUBSYS_GRP, NULL, EN_NONE, EN_NONE, TGT_PALL},
    [EN_NS_GRP] = {EN_SUBSYS, "namespaces", EN_NS, EN_NONE, TGT_PALL},
    [EN_NS] = {EN_NS_GRP, NULL, EN_NONE, EN_NONE, TGT_PALL},
    [EN_AH_GRP] = {EN_SUBSYS, "allowed_hosts", EN_NONE, EN_HOST, TGT_PALL},
    [EN_PASSTHRU] = {EN_SUBSYS, "passthru", EN_NONE, EN_NONE, TGT_P612},
    [EN_PORT_GRP] = {EN_ROOT, "ports", EN_PORT, EN_NONE, TGT_PALL},
    [EN_PORT] = {EN_PORT_GRP, NULL, EN_NONE, EN_NONE, TGT_PALL},
    [EN_PS_GRP] = {EN_PORT, "subsystems", EN_NONE, EN_SUBSYS, TGT_PALL},
    [EN_REF_GRP] = {EN_PORT, "referrals", EN_REF, EN_NONE, TGT_PALL},
    [EN_REF] = {EN_REF_GRP, NULL, EN_NONE, EN_NONE, TGT_PALL},
    [EN_ANA_GRP] = {EN_PORT, "ana_groups", EN_ANA, EN_NONE, TGT_PALL},
    [EN_ANA] = {EN_ANA_GRP, NULL, EN_NONE, EN_NONE, TGT_PALL},
    [EN_ANA1] = {EN_ANA_GRP, "1", EN_NONE, EN_NONE, TGT_PALL},
    [EN_HOST_GRP] = {EN_ROOT, "hosts", EN_HOST, EN_NONE, TGT_PALL},
    [EN_HOST] = {EN_HOST_GRP, NULL, EN_NONE, EN_NONE, TGT_PALL},
};

#define DISCOVERY_NQN "nqn.2014-08.org.nvmexpress.discovery"

int tgt__emu_profile(const char *name, unsigned *profile)
{
    if (name == NULL || name[0] == '\0' || strcmp(name, "6.12") == 0) {
        *profile = TGT_PROFILE_612;
    } else if (strcmp(name, "6.13") == 0) {
        *profile = TGT_PROFILE_613;
    } else if (strcmp(name, "6.1") == 0) {
        *profile = TGT_PROFILE_61;
    } else {
        return -EINVAL;
    }
    return 0;
}

static enum emu_type default_child(enum emu_type cur, const char *name, unsigned prof)
{
    for (int i = 0; i < EN__COUNT; i++) {
        if (types[i].dname != NULL && types[i].parent == cur && (types[i].profiles & prof) &&
            strcmp(types[i].dname, name) == 0) {
            return (enum emu_type)i;
        }
    }
    return EN_NONE;
}

/* The schema type of a directory path relative to nvmet/. */
static enum emu_type classify(const struct tgt *t, const char *rel)
{
    enum emu_type cur = EN_ROOT;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", rel);
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
        enum emu_type d = default_child(cur, c, t->profile);
        cur = d != EN_NONE ? d : types[cur].item;
        if (cur == EN_NONE) {
            return EN_NONE;
        }
    }
    return cur;
}

/* dir and base of "a/b/c" -> "a/b", "c" ("" for a top-level name). */
static void split_rel(const char *rel, char *dir, size_t dlen, const char **base)
{
    const char *slash = strrchr(rel, '/');
    if (slash == NULL) {
        snprintf(dir, dlen, "%s", "");
        *base = rel;
    } else {
        snprintf(dir, dlen, "%.*s", (int)(slash - rel), rel);
        *base = slash + 1;
    }
}

static int lstat_rel(const struct tgt *t, const char *rel, struct stat *st)
{
    char p[4096];
    int rv = tgt__path(t, rel, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    return lstat(p, st) < 0 ? -errno : 0;
}

static int dir_exists(const struct tgt *t, const char *rel)
{
    struct stat st;
    int rv = lstat_rel(t, rel, &st);
    if (rv < 0) {
        return rv;
    }
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* kstrto*(s, 0): "0x.." hex, "0.." octal, else decimal. */
static int kstrtoull0(const char *s, unsigned long long max, unsigned long long *out)
{
    if (*s == '+') {
        s++;
    }
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    } else if (s[0] == '0' && s[1] != '\0') {
        base = 8;
    }
    if (*s == '\0') {
        return -EINVAL;
    }
    unsigned long long v = 0;
    for (; *s != '\0'; s++) {
        int d;
        if (*s >= '0' && *s <= '9') {
            d = *s - '0';
        } else if (*s >= 'a' && *s <= 'f') {
            d = *s - 'a' + 10;
        } else if (*s >= 'A' && *s <= 'F') {
            d = *s - 'A' + 10;
        } else {
            return -EINVAL;
        }
        if (d >= base) {
            return -EINVAL;
        }
        if (v > (max - (unsigned)d) / (unsigned)base) {
            return -ERANGE;
        }
        v = v * (unsigned)base + (unsigned)d;
    }
    *out = v;
    return 0;
}

int tgt__emu_kstrtoull(const char *s, unsigned long long max, unsigned long long *out)
{
    return kstrtoull0(s, max, out);
}

/* Name rules of the make_group handlers in drivers/nvme/target/configfs.c
 * (EINVAL): no subsystem named the discovery NQN, an nsid is a u32 other
 * than 0 and 0xffffffff, a port id a u16, an ANA group id 1..128. */
static int check_item_name(enum emu_type type, const char *name)
{
    unsigned long long v;
    int rv;
    switch (type) {
        case EN_SUBSYS:
            return strcmp(name, DISCOVERY_NQN) == 0 ? -EINVAL : 0;
        case EN_NS:
            rv = kstrtoull0(name, 0xffffffffull, &v);
            if (rv < 0) {
                return rv;
            }
            return v == 0 || v == 0xffffffffull ? -EINVAL : 0;
        case EN_PORT:
            return kstrtoull0(name, 0xffff, &v) < 0 ? -EINVAL : 0;
        case EN_ANA:
            rv = kstrtoull0(name, 0xffffffffull, &v);
            return rv < 0 || v == 0 || v > 128 ? -EINVAL : 0;
        default:
            return 0;
    }
}

/* ---- object creation ---------------------------------------------------- */

static int write_plain(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return -errno;
    }
    ssize_t n = write(fd, data, len);
    int e = errno;
    close(fd);
    return n < 0 ? -e : 0;
}

/* What a real mkdir materialises: the attribute files with the kernel's
 * defaults and the default groups, recursively. */
static int remove_tree(const char *path);

/* Create the attribute files and default groups of a new object of this
 * type in the directory abs (the object's place is rel: what the init
 * functions see). */
static int populate(struct tgt *t, enum emu_type type, const char *rel, const char *abs)
{
    const struct emu_file *f = tgt__emu_files(type);
    for (; f != NULL && f->name != NULL; f++) {
        if (!(f->profiles & t->profile)) {
            continue;
        }
        char p[4096], val[512];
        int rv = 0;
        if ((size_t)snprintf(p, sizeof p, "%s/%s", abs, f->name) >= sizeof p) {
            return -ENAMETOOLONG;
        }
        if (f->flags & EF_WO) {
            rv = write_plain(p, "", 0, 0200);
        } else {
            struct emu_ctx c = {.t = t, .dir = rel, .name = f->name};
            if (f->dflt != NULL) {
                snprintf(val, sizeof val, "%s\n", f->dflt);
            } else {
                char v[480];
                f->init(&c, v, sizeof v);
                snprintf(val, sizeof val, "%s\n", v);
            }
            rv = write_plain(p, val, strlen(val), 0644);
        }
        if (rv < 0) {
            return rv;
        }
    }
    for (int i = 0; i < EN__COUNT; i++) {
        if (types[i].dname == NULL || types[i].parent != type ||
            !(types[i].profiles & t->profile)) {
            continue;
        }
        char crel[4096], p[4096];
        snprintf(crel, sizeof crel, "%s/%s", rel, types[i].dname);
        if ((size_t)snprintf(p, sizeof p, "%s/%s", abs, types[i].dname) >= sizeof p) {
            return -ENAMETOOLONG;
        }
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            return -errno;
        }
        int rv = populate(t, (enum emu_type)i, crel, p);
        if (rv < 0) {
            return rv;
        }
    }
    return 0;
}

int tgt__emu_load(struct tgt *t)
{
    char p[4096];
    int rv = tgt__path(t, "", p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    if (mkdir(p, 0755) < 0 && errno != EEXIST) {
        return -errno;
    }
    /* the kernel-side facts live next to nvmet/, not in it */
    char st[4096];
    snprintf(st, sizeof st, "%s/" TGT_EMU_STATE_DIR, t->root);
    mkdir(st, 0755);
    snprintf(st, sizeof st, "%s/" TGT_EMU_STATE_DIR "/identified", t->root);
    mkdir(st, 0755);
    /* an object whose mkdir was cut short (killed process) never appeared */
    char stage[4096];
    snprintf(stage, sizeof stage, "%s/" TGT_EMU_STATE_DIR "/staging", t->root);
    remove_tree(stage);
    mkdir(stage, 0755);
    return populate(t, EN_ROOT, "", p);
}

static int emu_mkdir(struct tgt *t, const char *rel)
{
    char dir[4096];
    const char *name;
    split_rel(rel, dir, sizeof dir, &name);
    enum emu_type ptype = classify(t, dir);
    int rv = dir_exists(t, dir);
    if (rv < 0) {
        return rv;
    }
    if (ptype == EN_NONE) {
        return -EPERM;
    }
    if (default_child(ptype, name, t->profile) != EN_NONE) {
        return -EEXIST; /* ana_groups/1 and the other default groups */
    }
    if (types[ptype].item == EN_NONE) {
        return -EPERM;
    }
    enum emu_type type = types[ptype].item;
    rv = check_item_name(type, name);
    if (rv < 0) {
        return rv;
    }
    char p[4096];
    rv = tgt__path(t, rel, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    if (strlen(name) > 255) {
        return -ENAMETOOLONG;
    }
    /* configfs makes the directory with its attribute files at once: build
     * it aside and rename it into place, so a process killed halfway leaves
     * nothing half-made in the tree */
    struct stat st;
    if (lstat(p, &st) == 0) {
        return -EEXIST;
    }
    char stage[4096];
    if ((size_t)snprintf(stage, sizeof stage, "%s/" TGT_EMU_STATE_DIR "/staging/%d-%s", t->root,
                         (int)getpid(), name) >= sizeof stage) {
        return -ENAMETOOLONG;
    }
    remove_tree(stage); /* a leftover of this name */
    if (mkdir(stage, 0755) < 0) {
        return -errno;
    }
    rv = populate(t, type, rel, stage);
    if (rv == 0 && rename(stage, p) < 0) {
        rv = -errno;
    }
    if (rv < 0) {
        remove_tree(stage);
    }
    return rv;
}

/* ---- removal -------------------------------------------------------------- */

/* User-made content (item dirs, links) inside a directory of this type:
 * configfs refuses to rmdir over it. */
static bool has_user_children(struct tgt *t, enum emu_type type, const char *rel)
{
    char p[4096];
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    if (tgt__path(t, rel, p, sizeof p) < 0 || tgt__plain_readdir(p, &d, &n) < 0) {
        return false;
    }
    bool user = false;
    for (size_t i = 0; i < n && !user; i++) {
        if (d[i].type == DT_LNK) {
            user = true;
        } else if (d[i].type == DT_DIR) {
            enum emu_type c = default_child(type, d[i].name, t->profile);
            char crel[4096];
            snprintf(crel, sizeof crel, "%s/%s", rel, d[i].name);
            user = c == EN_NONE || has_user_children(t, c, crel);
        }
    }
    tgt__dirents_free(d, n);
    return user;
}

static bool link_points_to(const char *linkpath, const char *group, const char *name)
{
    char tgt[4096];
    ssize_t l = readlink(linkpath, tgt, sizeof tgt - 1);
    if (l < 0) {
        return false;
    }
    tgt[l] = '\0';
    char want[600];
    snprintf(want, sizeof want, "/%s/%s", group, name);
    size_t wl = strlen(want);
    return (size_t)l >= wl && strcmp(tgt + l - wl, want) == 0;
}

/* Is any link in <group>/<each>/<sub>/ pointing at <tgroup>/<name>? */
static bool linked_from(struct tgt *t, const char *group, const char *sub, const char *tgroup,
                        const char *name)
{
    char p[4096];
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    if (tgt__path(t, group, p, sizeof p) < 0 || tgt__plain_readdir(p, &d, &n) < 0) {
        return false;
    }
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        char lrel[4096], lp[4096];
        struct tgt_dirent *ld = NULL;
        size_t ln = 0;
        snprintf(lrel, sizeof lrel, "%s/%s/%s", group, d[i].name, sub);
        if (tgt__path(t, lrel, lp, sizeof lp) < 0 || tgt__plain_readdir(lp, &ld, &ln) < 0) {
            continue;
        }
        for (size_t j = 0; j < ln && !found; j++) {
            char one[8192];
            snprintf(one, sizeof one, "%s/%s", lp, ld[j].name);
            found = ld[j].type == DT_LNK && link_points_to(one, tgroup, name);
        }
        tgt__dirents_free(ld, ln);
    }
    tgt__dirents_free(d, n);
    return found;
}

/* Remove files and default groups bottom-up: what configfs does when the
 * item goes away. */
static int remove_tree(const char *path)
{
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    int rv = tgt__plain_readdir(path, &d, &n);
    if (rv < 0) {
        return rv;
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        char c[4096];
        snprintf(c, sizeof c, "%s/%s", path, d[i].name);
        if (d[i].type == DT_DIR) {
            rv = remove_tree(c);
        } else if (unlink(c) < 0) {
            rv = -errno;
        }
    }
    tgt__dirents_free(d, n);
    if (rv == 0 && rmdir(path) < 0) {
        rv = -errno;
    }
    return rv;
}

static void identified_path(const struct tgt *t, const char *nqn, char *buf, size_t len)
{
    snprintf(buf, len, "%s/" TGT_EMU_STATE_DIR "/identified/%s", t->root, nqn);
}

bool tgt__emu_identified(const struct tgt *t, const char *subsys_rel)
{
    const char *nqn = strrchr(subsys_rel, '/');
    char p[4096];
    identified_path(t, nqn != NULL ? nqn + 1 : subsys_rel, p, sizeof p);
    struct stat st;
    return stat(p, &st) == 0;
}

static int emu_rmdir(struct tgt *t, const char *rel)
{
    if (rel[0] == '\0') {
        return -EPERM;
    }
    enum emu_type type = classify(t, rel);
    struct stat st;
    int rv = lstat_rel(t, rel, &st);
    if (rv < 0) {
        return rv;
    }
    if (!S_ISDIR(st.st_mode)) {
        return -ENOTDIR;
    }
    char p[4096];
    rv = tgt__path(t, rel, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    if (type == EN_NONE) {
        return rmdir(p) < 0 ? -errno : 0; /* not part of the schema */
    }
    if (types[type].dname != NULL) {
        return -EPERM; /* default groups go only with their owner */
    }
    if (has_user_children(t, type, rel)) {
        return -ENOTEMPTY;
    }
    const char *name = strrchr(rel, '/') + 1;
    if (type == EN_SUBSYS && linked_from(t, "ports", "subsystems", "subsystems", name)) {
        return -EBUSY;
    }
    if (type == EN_HOST && linked_from(t, "subsystems", "allowed_hosts", "hosts", name)) {
        return -EBUSY;
    }
    rv = remove_tree(p);
    if (rv == 0 && type == EN_SUBSYS) {
        /* a new subsystem object has not been identified by anyone */
        char ip[4096];
        identified_path(t, name, ip, sizeof ip);
        unlink(ip);
    }
    return rv;
}

/* ---- attributes ------------------------------------------------------------ */

static const struct emu_file *find_file(const struct tgt *t, enum emu_type type, const char *name)
{
    if (type == EN_NONE) {
        return NULL;
    }
    for (const struct emu_file *f = tgt__emu_files(type); f != NULL && f->name != NULL; f++) {
        if ((f->profiles & t->profile) && strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

int tgt__emu_get(struct tgt *t, const char *dir, const char *name, char *buf, size_t len)
{
    char rel[4096], p[4096];
    snprintf(rel, sizeof rel, "%s/%s", dir, name);
    int rv = tgt__path(t, rel, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    ssize_t n = read(fd, buf, len - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        return -e;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

bool tgt__emu_port_linked(struct tgt *t, const char *dir)
{
    char rel[4096], p[4096];
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    snprintf(rel, sizeof rel, "%s/subsystems", dir);
    if (tgt__path(t, rel, p, sizeof p) < 0 || tgt__plain_readdir(p, &d, &n) < 0) {
        return false;
    }
    tgt__dirents_free(d, n);
    return n > 0;
}

static bool obj_enabled(struct tgt *t, const char *dir)
{
    char v[16];
    return tgt__emu_get(t, dir, "enable", v, sizeof v) == 0 && strcmp(v, "1") == 0;
}

static ssize_t emu_read(struct tgt *t, const char *rel, char *buf, size_t len)
{
    char dir[4096];
    const char *name;
    split_rel(rel, dir, sizeof dir, &name);
    const struct emu_file *f = find_file(t, classify(t, dir), name);
    if (f != NULL && (f->flags & EF_WO)) {
        return -EACCES;
    }
    return tgt__real_ops.read(t, rel, buf, len);
}

/* A refusal the test asked for (tgt.h: <root>/.nvmet-emu/refuse/<attr>
 * holding an errno name or number): that errno, negative, else 0. */
static int injected_refusal(const struct tgt *t, const char *name)
{
    char p[4200], v[32] = "";
    snprintf(p, sizeof p, "%s/" TGT_EMU_STATE_DIR "/refuse/%s", t->root, name);
    FILE *f = fopen(p, "r");
    if (f == NULL) {
        return 0;
    }
    if (fgets(v, sizeof v, f) == NULL) {
        v[0] = '\0';
    }
    fclose(f);
    v[strcspn(v, " \t\r\n")] = '\0';
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (v[0] != '\0' && *end == '\0' && n > 0 && n < 4096) {
        return (int)-n;
    }
    for (int e = 1; e < 200; e++) {
        if (strcmp(nv_errname(e), v) == 0) {
            return -e;
        }
    }
    return -EINVAL; /* an unknown name: still a refusal */
}

static int emu_write(struct tgt *t, const char *rel, const char *buf, size_t len)
{
    char dir[4096];
    const char *name;
    split_rel(rel, dir, sizeof dir, &name);
    enum emu_type type = classify(t, dir);
    int rv = dir_exists(t, dir);
    if (rv < 0) {
        return rv;
    }
    const struct emu_file *f = find_file(t, type, name);
    if (f == NULL) {
        return -ENOENT; /* this kernel has no such attribute */
    }
    rv = injected_refusal(t, name);
    if (rv < 0) {
        return rv;
    }
    if (len > 4096) {
        return -EFBIG;
    }
    /* the lock checks come first in the kernel's store handlers */
    if ((f->flags & EF_PORT) && tgt__emu_port_linked(t, dir)) {
        return -EACCES; /* "Disable port before changing attribute" */
    }
    if ((f->flags & EF_NS_BUSY) && obj_enabled(t, dir)) {
        return -EBUSY;
    }
    if ((f->flags & EF_NS_INVAL) && obj_enabled(t, dir)) {
        return -EINVAL;
    }
    if ((f->flags & EF_REF) && obj_enabled(t, dir)) {
        return -EACCES; /* a referral's address is fixed while enabled */
    }
    if ((f->flags & EF_IDENTITY) && tgt__emu_identified(t, dir)) {
        return -EINVAL; /* subsys_discovered: a host has read the identity */
    }
    char in[4097], out[4097];
    memcpy(in, buf, len);
    in[len] = '\0';
    in[strcspn(in, "\n")] = '\0';
    struct emu_ctx c = {.t = t, .dir = dir, .name = name};
    out[0] = '\0';
    rv = f->store(&c, in, out, sizeof out);
    if (rv < 0) {
        return rv;
    }
    if (f->flags & EF_WO) {
        return 0; /* an action, nothing to show */
    }
    char p[4096];
    rv = tgt__path(t, rel, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    size_t ol = strlen(out);
    out[ol] = '\n';
    return write_plain(p, out, ol + 1, 0644);
}

/* ---- links ------------------------------------------------------------------ */

static bool dir_has_link_to(const char *dirpath, const char *group, const char *name)
{
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    if (tgt__plain_readdir(dirpath, &d, &n) < 0) {
        return false;
    }
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        char one[8192];
        snprintf(one, sizeof one, "%s/%s", dirpath, d[i].name);
        found = d[i].type == DT_LNK && link_points_to(one, group, name);
    }
    tgt__dirents_free(d, n);
    return found;
}

/* The first subsystem link enables the port (nvmet_enable_port): the
 * transport must exist and accept the address. */
static int port_enable_check(struct tgt *t, const char *port)
{
    char tr[64] = "", af[64] = "", addr[300] = "", svc[64] = "", pi[8] = "";
    tgt__emu_get(t, port, "addr_trtype", tr, sizeof tr);
    tgt__emu_get(t, port, "addr_adrfam", af, sizeof af);
    tgt__emu_get(t, port, "addr_traddr", addr, sizeof addr);
    tgt__emu_get(t, port, "addr_trsvcid", svc, sizeof svc);
    tgt__emu_get(t, port, "param_pi_enable", pi, sizeof pi);
    if (tr[0] == '\0') {
        return -EINVAL; /* no transport type yet */
    }
    if (strcmp(tr, "loop") == 0) {
        if (!(t->profile & TGT_P612)) {
            return -EINVAL; /* nvme-loop is not built on Debian 6.1 */
        }
        return 0;
    }
    if (strcmp(pi, "1") == 0 && strcmp(tr, "tcp") == 0) {
        return -EINVAL; /* PI needs a transport that carries metadata */
    }
    if (strcmp(tr, "fc") == 0) {
        return strcmp(af, "fc") == 0 ? 0 : -EINVAL;
    }
    /* tcp / rdma: inet_pton_with_scope(adrfam, traddr, trsvcid) */
    unsigned char a[16];
    unsigned long long port_no;
    if (strcmp(af, "ipv4") == 0) {
        if (inet_pton(AF_INET, addr, a) != 1) {
            return -EINVAL;
        }
    } else if (strcmp(af, "ipv6") == 0) {
        char host[300];
        snprintf(host, sizeof host, "%s", addr);
        host[strcspn(host, "%")] = '\0'; /* fe80::1%eth0 */
        if (inet_pton(AF_INET6, host, a) != 1) {
            return -EINVAL;
        }
    } else {
        return -EINVAL;
    }
    if (kstrtoull0(svc, 0xffff, &port_no) < 0) {
        return -EINVAL;
    }
    return 0;
}

/* What nvmet_enable_port does to a port's parameters when its first
 * subsystem is linked: the transport's inline data default (tcp 4 pages,
 * rdma 1 page, others 0) and the queue size default. */
static void port_enable_defaults(struct tgt *t, const char *port)
{
    char v[64], p[4096], rel[4096];
    if (tgt__emu_get(t, port, "param_inline_data_size", v, sizeof v) == 0 && v[0] == '-') {
        char tr[16] = "";
        tgt__emu_get(t, port, "addr_trtype", tr, sizeof tr);
        const char *d = strcmp(tr, "tcp") == 0    ? "16384\n"
                        : strcmp(tr, "rdma") == 0 ? "4096\n"
                                                  : "0\n";
        snprintf(rel, sizeof rel, "%s/param_inline_data_size", port);
        if (tgt__path(t, rel, p, sizeof p) == 0) {
            write_plain(p, d, strlen(d), 0644);
        }
    }
    if (tgt__emu_get(t, port, "param_max_queue_size", v, sizeof v) == 0 && v[0] == '-') {
        snprintf(rel, sizeof rel, "%s/param_max_queue_size", port);
        if (tgt__path(t, rel, p, sizeof p) == 0) {
            write_plain(p, "1024\n", 5, 0644);
        }
    }
}

static int emu_symlink(struct tgt *t, const char *target, const char *rel)
{
    char dir[4096];
    const char *name;
    split_rel(rel, dir, sizeof dir, &name);
    enum emu_type dtype = classify(t, dir);
    int rv = dir_exists(t, dir);
    if (rv < 0) {
        return rv;
    }
    if (dtype == EN_NONE || types[dtype].link == EN_NONE) {
        return -EPERM; /* no allow_link here */
    }
    char base[4096];
    rv = tgt__path(t, "", base, sizeof base);
    if (rv < 0) {
        return rv;
    }
    size_t bl = strlen(base);
    if (strncmp(target, base, bl) != 0 || target[bl] != '/') {
        return -EPERM; /* outside this configfs */
    }
    struct stat st;
    if (lstat(target, &st) < 0) {
        return -errno;
    }
    const char *trel = target + bl + 1;
    if (!S_ISDIR(st.st_mode) || classify(t, trel) != types[dtype].link) {
        return -EINVAL;
    }
    if (lstat_rel(t, rel, &st) == 0) {
        return -EEXIST;
    }
    const char *tname = strrchr(trel, '/') != NULL ? strrchr(trel, '/') + 1 : trel;
    char dp[4096];
    rv = tgt__path(t, dir, dp, sizeof dp);
    if (rv < 0) {
        return rv;
    }
    const char *group = dtype == EN_PS_GRP ? "subsystems" : "hosts";
    if (dir_has_link_to(dp, group, tname)) {
        return -EEXIST;
    }
    char owner[4096];
    const char *ignored;
    split_rel(dir, owner, sizeof owner, &ignored);
    if (dtype == EN_AH_GRP) {
        char v[16];
        if (tgt__emu_get(t, owner, "attr_allow_any_host", v, sizeof v) == 0 &&
            strcmp(v, "1") == 0) {
            return -EINVAL; /* access lists are off while any host may connect */
        }
    } else if (!tgt__emu_port_linked(t, owner)) {
        rv = port_enable_check(t, owner);
        if (rv < 0) {
            return rv;
        }
        port_enable_defaults(t, owner);
    }
    char p[4096];
    rv = tgt__path(t, rel, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    return symlink(target, p) < 0 ? -errno : 0;
}

static int emu_unlink(struct tgt *t, const char *rel)
{
    char dir[4096];
    const char *name;
    split_rel(rel, dir, sizeof dir, &name);
    struct stat st;
    int rv = lstat_rel(t, rel, &st);
    if (rv < 0) {
        return rv;
    }
    enum emu_type dtype = classify(t, dir);
    if (!S_ISLNK(st.st_mode) || dtype == EN_NONE || types[dtype].link == EN_NONE) {
        return -EPERM; /* configfs unlinks symlinks only */
    }
    char p[4096];
    rv = tgt__path(t, rel, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    return unlink(p) < 0 ? -errno : 0;
}

static int emu_readdir(struct tgt *t, const char *rel, struct tgt_dirent **out, size_t *n)
{
    return tgt__real_ops.readdir(t, rel, out, n);
}

static ssize_t emu_readlink(struct tgt *t, const char *rel, char *buf, size_t len)
{
    return tgt__real_ops.readlink(t, rel, buf, len);
}

static int emu_load(struct tgt *t, const char *module)
{
    if (strcmp(module, "nvmet") == 0) {
        return tgt__emu_load(t);
    }
    if (strcmp(module, "nvme-loop") == 0 && !(t->profile & TGT_P612)) {
        return -ENOENT;
    }
    return 0;
}

const struct tgt_ops tgt__emu_ops = {
    .name = "emulated",
    .mkdir = emu_mkdir,
    .rmdir = emu_rmdir,
    .read = emu_read,
    .write = emu_write,
    .symlink = emu_symlink,
    .unlink = emu_unlink,
    .readdir = emu_readdir,
    .readlink = emu_readlink,
    .load = emu_load,
};
