/* target/: the instance (backend choice by statfs), kernel features, the
 * counted syscall wrappers every other file goes through, modprobe, and
 * FILE backing-file removal. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nv.h"
#include "nv_err.h"
#include "tgt_int.h"

#define CONFIGFS_MAGIC_NR 0x62656570
#define MODPROBE_TIMEOUT_MS 10000

static char *dup_or_null(const char *s, bool *fail)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = strdup(s);
    if (d == NULL) {
        *fail = true;
    }
    return d;
}

int tgt_open(const struct tgt_config *cfg, struct tgt **out, struct nv_err *err)
{
    *out = NULL;
    if (cfg == NULL || cfg->root == NULL || cfg->root[0] == '\0') {
        nv_err_call(err, EINVAL, "configfs root not given");
        return -EINVAL;
    }
    struct statfs sf;
    if (statfs(cfg->root, &sf) < 0) {
        int e = errno;
        nv_err_call(err, e, "configfs root %s: %s", cfg->root, strerror(e));
        return -e;
    }
    /* A typo in the path must not run a fake target in production, and
     * the emulator must never write into the kernel's tree. */
    bool is_configfs = sf.f_type == CONFIGFS_MAGIC_NR;
    if (!is_configfs && !cfg->emulate) {
        nv_err_call(err, EMEDIUMTYPE, "%s is not a configfs mount (filesystem type 0x%lx)",
                    cfg->root, (unsigned long)sf.f_type);
        return -EMEDIUMTYPE;
    }
    if (is_configfs && cfg->emulate) {
        nv_err_call(err, EMEDIUMTYPE,
                    "%s is the kernel's configfs: the emulator would write into it", cfg->root);
        return -EMEDIUMTYPE;
    }
    struct tgt *t = calloc(1, sizeof *t);
    if (t == NULL) {
        nv_err_call(err, ENOMEM, "out of memory");
        return -ENOMEM;
    }
    bool fail = false;
    t->root = dup_or_null(cfg->root, &fail);
    t->device_root = dup_or_null(cfg->device_root, &fail);
    t->model = dup_or_null(cfg->model, &fail);
    t->firmware = dup_or_null(cfg->firmware, &fail);
    t->modprobe_timeout_ms = MODPROBE_TIMEOUT_MS;
    if (fail) {
        tgt_close(t);
        nv_err_call(err, ENOMEM, "out of memory");
        return -ENOMEM;
    }
    t->emulated = !is_configfs;
    t->ops = t->emulated ? &tgt__emu_ops : &tgt__real_ops;
    if (t->emulated) {
        int rv = tgt__emu_profile(cfg->emulate_kernel, &t->profile);
        if (rv < 0) {
            nv_err_call(err, EINVAL, "unknown emulated kernel \"%s\" (use \"6.12\" or \"6.1\")",
                        cfg->emulate_kernel);
            tgt_close(t);
            return rv;
        }
        rv = tgt__emu_load(t);
        if (rv < 0) {
            nv_err_call(err, -rv, "configfs root %s: create nvmet/: %s", cfg->root,
                        strerror(-rv));
            tgt_close(t);
            return rv;
        }
    }
    *out = t;
    return 0;
}

void tgt_close(struct tgt *t)
{
    if (t == NULL) {
        return;
    }
    tgt__tree_free(t->last);
    free(t->src.o);
    nv_free(t->features);
    free(t->root);
    free(t->device_root);
    free(t->model);
    free(t->firmware);
    free(t);
}

bool tgt_is_emulated(const struct tgt *t) { return t->emulated; }

void tgt_report_clear(struct tgt_report *r)
{
    if (r == NULL) {
        return;
    }
    nv_free(r->problems);
    nv_free(r->notes);
    memset(r, 0, sizeof *r);
}

static void problem_v(struct nv **problems, const char *object, enum tgt_kind kind,
                      int64_t src_id, int errnum, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));
static void problem_v(struct nv **problems, const char *object, enum tgt_kind kind,
                      int64_t src_id, int errnum, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (*problems == NULL) {
        *problems = nv_arr();
        if (*problems == NULL) {
            return;
        }
    }
    struct nv *p = nv_map();
    if (p == NULL) {
        return;
    }
    nv_set_str(p, "object", object);
    nv_set_str(p, "error", msg);
    if (errnum > 0) {
        nv_set_int(p, "errno", errnum);
        nv_set_str(p, "errname", nv_errname(errnum));
    }
    int table = src_id >= 0 ? tgt__row_kind_table(kind) : -1;
    if (table >= 0) {
        nv_set_str(p, "table", sm_table_service((enum sm_table)table));
        nv_set_int(p, "id", src_id);
    }
    nv_push(*problems, p);
}

void tgt__problem(struct nv **problems, const char *object, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_v(problems, object, 0, -1, 0, fmt, ap);
    va_end(ap);
}

void tgt__problem_row(struct nv **problems, const char *object, enum tgt_kind kind,
                      int64_t src_id, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_v(problems, object, kind, src_id, errnum, fmt, ap);
    va_end(ap);
}

/* ---- paths and counted operations ---------------------------------------- */

int tgt__path(const struct tgt *t, const char *rel, char *buf, size_t len)
{
    int n = (rel == NULL || rel[0] == '\0') ? snprintf(buf, len, "%s/nvmet", t->root)
                                             : snprintf(buf, len, "%s/nvmet/%s", t->root, rel);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int tgt__device_path(const struct tgt *t, const char *path, char *buf, size_t len)
{
    const char *dr = t->device_root != NULL ? t->device_root : "";
    size_t l = strlen(dr);
    while (l > 0 && dr[l - 1] == '/') {
        l--; /* "/" and "/tmp/x/" both join cleanly */
    }
    int n = snprintf(buf, len, "%.*s%s%s", (int)l, dr, path[0] == '/' ? "" : "/", path);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

#define COUNT(field)         \
    do {                     \
        if (t->rep != NULL) { \
            t->rep->field++; \
        }                    \
    } while (0)

void tgt_stats(const struct tgt *t, struct tgt_stats *out)
{
    *out = t->stats;
}

int tgt__mkdir(struct tgt *t, const char *rel)
{
    t->stats.mkdir++;
    int rv = t->ops->mkdir(t, rel);
    if (rv == 0) {
        COUNT(mkdirs);
    }
    return rv;
}

int tgt__rmdir(struct tgt *t, const char *rel)
{
    t->stats.rmdir++;
    int rv = t->ops->rmdir(t, rel);
    if (rv == 0) {
        COUNT(rmdirs);
    }
    return rv;
}

ssize_t tgt__read(struct tgt *t, const char *rel, char *buf, size_t len)
{
    t->stats.read++;
    COUNT(reads);
    return t->ops->read(t, rel, buf, len);
}

int tgt__write(struct tgt *t, const char *rel, const char *value)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s\n", value);
    if (n < 0 || (size_t)n >= sizeof buf) {
        return -E2BIG;
    }
    t->stats.write++;
    int rv = t->ops->write(t, rel, buf, (size_t)n);
    if (rv == 0) {
        COUNT(writes);
    }
    return rv;
}

int tgt__symlink(struct tgt *t, const char *target_rel, const char *rel)
{
    char target[4096];
    int rv = tgt__path(t, target_rel, target, sizeof target);
    if (rv == 0) {
        t->stats.symlink++;
        rv = t->ops->symlink(t, target, rel);
    }
    if (rv == 0) {
        COUNT(links);
    }
    return rv;
}

int tgt__unlink(struct tgt *t, const char *rel)
{
    t->stats.unlink++;
    int rv = t->ops->unlink(t, rel);
    if (rv == 0) {
        COUNT(unlinks);
    }
    return rv;
}

int tgt__readdir(struct tgt *t, const char *rel, struct tgt_dirent **out, size_t *n)
{
    t->stats.readdir++;
    COUNT(reads);
    return t->ops->readdir(t, rel, out, n);
}

ssize_t tgt__readlink(struct tgt *t, const char *rel, char *buf, size_t len)
{
    t->stats.readlink++;
    COUNT(reads);
    return t->ops->readlink(t, rel, buf, len);
}

void tgt__dirents_free(struct tgt_dirent *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].name);
    }
    free(d);
}

/* ---- modprobe ------------------------------------------------------------ */

/* fork/exec with a deadline instead of system(): no shell, and a hung
 * modprobe (a module init waiting on hardware) cannot stall the node. */
int tgt__modprobe(const char *module, int timeout_ms)
{
    pid_t pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("modprobe", "modprobe", module, (char *)NULL);
        _exit(127);
    }
    int waited = 0;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                return 0;
            }
            return WIFEXITED(st) && WEXITSTATUS(st) == 127 ? -ENOENT : -EIO;
        }
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited += 20;
    }
}

/* ---- features --------------------------------------------------------------- */

/* What each feature is, in words (tgt_features "missing" and problems). */
static const struct {
    const char *key, *text;
    unsigned profiles; /* emulated profiles that have it */
} features[] = {
    {"ieee_oui", "attr_ieee_oui (Linux 6.2 or later)", TGT_P612},
    {"firmware", "attr_firmware (Linux 6.2 or later)", TGT_P612},
    {"dhchap", "DH-CHAP support (CONFIG_NVME_TARGET_AUTH)", TGT_P612},
    {"loop", "nvme-loop (CONFIG_NVME_TARGET_LOOP)", TGT_P612},
    {"resv_enable", "resv_enable (reservations, Linux 6.13 or later)", TGT_P613},
    {"max_queue_size", "param_max_queue_size", TGT_P612},
};

const char *tgt__feature_text(const char *key)
{
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++) {
        if (strcmp(features[i].key, key) == 0) {
            return features[i].text;
        }
    }
    return key;
}

static bool path_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

static bool loop_available(void)
{
    struct utsname u;
    if (path_exists("/sys/module/nvme_loop")) {
        return true;
    }
    if (uname(&u) < 0) {
        return false;
    }
    char p[512];
    snprintf(p, sizeof p, "/lib/modules/%s/modules.dep", u.release);
    if (file_has(p, "/nvme-loop.ko")) {
        return true;
    }
    snprintf(p, sizeof p, "/lib/modules/%s/modules.builtin", u.release);
    return file_has(p, "/nvme-loop.ko");
}

/* An object dir to look into: an existing one of the group, or a probe
 * made for the occasion (removed again by the caller when *made). */
static int probe_dir(struct tgt *t, const char *group, const char *probe, char *rel, size_t len,
                     bool *made)
{
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    *made = false;
    if (t->ops->readdir(t, group, &d, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (d[i].type == DT_DIR) {
                snprintf(rel, len, "%s/%s", group, d[i].name);
                tgt__dirents_free(d, n);
                return 0;
            }
        }
        tgt__dirents_free(d, n);
    }
    snprintf(rel, len, "%s/%s", group, probe);
    int rv = t->ops->mkdir(t, rel);
    *made = rv == 0;
    return rv;
}

static bool rel_exists(const struct tgt *t, const char *dir, const char *name)
{
    char rel[1024], p[4096];
    snprintf(rel, sizeof rel, "%s/%s", dir, name);
    return tgt__path(t, rel, p, sizeof p) == 0 && path_exists(p);
}

/* Real configfs: look at the attribute files the running kernel creates. */
static void probe_real(struct tgt *t, struct nv *f)
{
    char s[600], ns[700], h[600], p[600];
    bool ms = false, mn = false, mh = false, mp = false;
    if (probe_dir(t, "subsystems", "nqn.2014-08.org.nvmexpress:nvmet-ha-probe", s, sizeof s,
                  &ms) == 0) {
        nv_set_bool(f, "ieee_oui", rel_exists(t, s, "attr_ieee_oui"));
        nv_set_bool(f, "firmware", rel_exists(t, s, "attr_firmware"));
        char nsgrp[700];
        snprintf(nsgrp, sizeof nsgrp, "%s/namespaces", s);
        if (probe_dir(t, nsgrp, "1", ns, sizeof ns, &mn) == 0) {
            nv_set_bool(f, "resv_enable", rel_exists(t, ns, "resv_enable"));
        }
    }
    if (probe_dir(t, "hosts", "nqn.2014-08.org.nvmexpress:nvmet-ha-probe", h, sizeof h, &mh) ==
        0) {
        nv_set_bool(f, "dhchap", rel_exists(t, h, "dhchap_key"));
    }
    if (probe_dir(t, "ports", "65535", p, sizeof p, &mp) == 0) {
        nv_set_bool(f, "max_queue_size", rel_exists(t, p, "param_max_queue_size"));
    }
    if (mn) {
        t->ops->rmdir(t, ns);
    }
    if (ms) {
        t->ops->rmdir(t, s);
    }
    if (mh) {
        t->ops->rmdir(t, h);
    }
    if (mp) {
        t->ops->rmdir(t, p);
    }
}

struct nv *tgt_features(struct tgt *t)
{
    if (t->features != NULL) {
        return nv_copy(t->features);
    }
    struct nv *f = nv_map();
    if (f == NULL) {
        return NULL;
    }
    bool have_nvmet = true;
    if (t->emulated) {
        nv_set_str(f, "kernel", t->profile == TGT_PROFILE_61    ? "6.1"
                                : t->profile == TGT_PROFILE_613 ? "6.13"
                                                                : "6.12");
        for (size_t i = 0; i < sizeof features / sizeof features[0]; i++) {
            nv_set_bool(f, features[i].key, (features[i].profiles & t->profile) != 0);
        }
    } else {
        struct utsname u;
        nv_set_str(f, "kernel", "real");
        if (uname(&u) == 0) {
            nv_set_str(f, "release", u.release);
        }
        for (size_t i = 0; i < sizeof features / sizeof features[0]; i++) {
            nv_set_bool(f, features[i].key, false);
        }
        char p[4096];
        have_nvmet = tgt__path(t, "", p, sizeof p) == 0 && path_exists(p);
        if (have_nvmet) {
            probe_real(t, f);
        }
        nv_set_bool(f, "loop", loop_available());
    }
    struct nv *missing = nv_arr();
    if (!have_nvmet) {
        nv_push(missing, nv_str("nvmet (module not loaded: features not probed yet)"));
    }
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++) {
        if (!nv_get_bool(f, features[i].key, false)) {
            nv_push(missing, nv_str(features[i].text));
        }
    }
    nv_set(f, "missing", missing);
    if (!t->emulated && have_nvmet) {
        t->features = nv_copy(f);
    }
    return f;
}

bool tgt__has_feature(struct tgt *t, const char *key)
{
    if (key == NULL) {
        return true;
    }
    if (t->emulated) {
        for (size_t i = 0; i < sizeof features / sizeof features[0]; i++) {
            if (strcmp(features[i].key, key) == 0) {
                return (features[i].profiles & t->profile) != 0;
            }
        }
        return true;
    }
    if (t->features == NULL) {
        nv_free(tgt_features(t)); /* probes and caches once nvmet/ exists */
    }
    if (t->features == NULL) {
        return false; /* nvmet not loaded: nothing known yet */
    }
    const struct nv *v = nv_get(t->features, key);
    return v == NULL || !nv_is(v, NV_BOOL) || v->u.b;
}

/* ---- FILE namespaces ----------------------------------------------------------- */

int tgt_remove_backing_file(struct tgt *t, const char *path)
{
    if (path == NULL || path[0] != '/' || strstr(path, "/../") != NULL) {
        return -EINVAL;
    }
    char p[4096];
    int rv = tgt__device_path(t, path, p, sizeof p);
    if (rv < 0) {
        return rv;
    }
    struct stat st;
    if (lstat(p, &st) < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISREG(st.st_mode)) {
        return -EINVAL;
    }
    return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
}
