/* Applying one object of a pass (see tgt_reconcile.c): make or remove
 * the dir or link, and write the attributes that differ in the order the
 * kernel's locks need (drivers/nvme/target/configfs.c):
 *   - a port's addr_* and param_* only while nothing is linked (EACCES):
 *     unlink, write, and the port-link stage links again;
 *   - a namespace's device_path/uuid/nguid (EBUSY) and buffered_io/
 *     resv_enable (EINVAL) only while enable=0, so enable is written last;
 *     a referral's address likewise;
 *   - allow_any_host=1 only once allowed_hosts/ is empty;
 *   - cntlid bounds in the order that keeps min < max;
 *   - identity attributes (serial, model, firmware, ieee_oui) are locked
 *     once a host has identified the controller: recreate the subsystem.
 * Every failure is reported with its context and marks the object, so the
 * next pass retries it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nv.h"
#include "tgt_int.h"

#define VAL_MAX 4096

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s != NULL ? s + 1 : p;
}

/* A failure of an object that did not fail last time may come from live
 * state the last tree does not know (a hand-made link, a vanished dir):
 * the next pass sweeps. Objects that keep failing (a missing device) are
 * retried by incremental passes without sweeping again. */
static void count_failure(struct tgt_pass *p, const char *path)
{
    const struct tobj *lo = tgt__tree_find(p->last, path);
    if (lo == NULL || !(lo->flags & TO_DIRTY)) {
        p->fresh_errors++;
    }
}

static void fail(struct tgt_pass *p, struct tobj *o, const char *verb, const char *what, int rv)
{
    char label[600];
    tgt__obj_label(o->kind, o->path, label, sizeof label);
    tgt__problem_row(&p->rep->problems, o->path, o->kind, o->src_id, -rv,
                     "render %s: %s%s%s: %s", label, verb,
                 what != NULL ? " " : "", what != NULL ? what : "", strerror(-rv));
    p->rep->errors++;
    o->flags |= TO_FAILED;
    count_failure(p, o->path);
}

/* What the last pass left behind for o, when we can trust it (no
 * expectation without a last tree, for failed objects, or for objects
 * this pass removed itself). */
static const struct tobj *expected(const struct tgt_pass *p, const struct tobj *o)
{
    if (!p->expect || (o->flags & TO_FORCED)) {
        return NULL;
    }
    const struct tobj *lo = tgt__tree_find(p->last, o->path);
    return lo == NULL || (lo->flags & (TO_DIRTY | TO_GHOST)) ? NULL : lo;
}

static void force(struct tgt_pass *p, const char *path)
{
    struct tobj *o = tgt__tree_find(p->want, path);
    if (o == NULL && p->delta) {
        /* an incremental pass holds only the changed objects: a removed
         * object that stays desired comes from the last tree */
        const struct tobj *lo = tgt__tree_find(p->last, path);
        if (lo != NULL && !(lo->flags & (TO_GONE | TO_GHOST))) {
            o = tgt__obj_copy(lo);
            if (o == NULL || tgt__tree_add(p->want, o) < 0) {
                p->fresh_errors++; /* out of memory: the next pass sweeps */
                return;
            }
        }
    }
    if (o != NULL) {
        o->flags |= TO_TODO | TO_FORCED;
    }
}

/* Unlink (or rmdir) every entry of a group dir; removed entries that are
 * desired get re-made later in this pass. */
static int clear_group(struct tgt_pass *p, struct tobj *o, const char *group, bool links,
                       const char *keep)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", o->path, group);
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    int rv = tgt__readdir(p->t, dir, &d, &n);
    if (rv < 0) {
        return rv == -ENOENT ? 0 : rv;
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (keep != NULL && strcmp(d[i].name, keep) == 0) {
            continue;
        }
        char rel[8192];
        if (snprintf(rel, sizeof rel, "%s/%s", dir, d[i].name) >= (int)sizeof rel) {
            continue;
        }
        rv = links ? tgt__unlink(p->t, rel) : tgt__rmdir(p->t, rel);
        if (rv == -ENOENT) {
            rv = 0;
        }
        if (rv == 0) {
            force(p, rel);
        } else {
            fail(p, o, links ? "unlink" : "rmdir", rel, rv);
        }
    }
    tgt__dirents_free(d, n);
    return rv;
}

/* A host has identified the controller, so the kernel refuses identity
 * changes (subsys_discovered). The only way to a new serial/model is a new
 * subsystem object: take it off every port and access list, drop its
 * namespaces, rmdir, mkdir; the rest of this pass puts everything back. */
static int recreate_subsys(struct tgt_pass *p, struct tobj *o, const char *attr)
{
    const char *nqn = base_name(o->path);
    struct tgt_dirent *d = NULL;
    size_t n = 0;
    int rv = tgt__readdir(p->t, "ports", &d, &n);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        char rel[4096];
        snprintf(rel, sizeof rel, "ports/%s/subsystems/%s", d[i].name, nqn);
        int r = tgt__unlink(p->t, rel);
        if (r == 0) {
            force(p, rel);
        } else if (r != -ENOENT) {
            fail(p, o, "unlink", rel, r);
            rv = r;
        }
    }
    tgt__dirents_free(d, n);
    if (rv == 0) {
        rv = clear_group(p, o, "allowed_hosts", true, NULL);
    }
    if (rv == 0) {
        rv = clear_group(p, o, "namespaces", false, NULL);
    }
    if (rv == 0) {
        rv = tgt__rmdir(p->t, o->path);
        if (rv < 0) {
            fail(p, o, "rmdir", NULL, rv);
        }
    }
    if (rv == 0) {
        rv = tgt__mkdir(p->t, o->path);
        if (rv < 0) {
            fail(p, o, "mkdir", NULL, rv);
        }
    }
    if (rv == 0) {
        char note[1024];
        snprintf(note, sizeof note,
                 "subsys %s: %s is locked once a host has identified the controller: "
                 "recreated the subsystem",
                 nqn, attr);
        struct nv *e = nv_map();
        nv_set_str(e, "object", o->path);
        nv_set_str(e, "note", note);
        if (p->rep->notes == NULL) {
            p->rep->notes = nv_arr();
        }
        nv_push(p->rep->notes, e);
        p->rep->recreated++;
    }
    return rv;
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *c = buf + 1; *c != '\0'; c++) {
        if (*c == '/') {
            *c = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
                return -errno;
            }
            *c = '/';
        }
    }
    return 0;
}

/* FILE namespaces: every node makes its own backing file (the
 * statemachine never touches disks): sparse, of the configured size, and
 * grown (never shrunk) when the size grows. */
static int ensure_backing(struct tgt_pass *p, struct tobj *o, bool *grew)
{
    char path[4096];
    *grew = false;
    int rv = tgt__device_path(p->t, o->backing, path, sizeof path);
    struct stat st;
    if (rv == 0 && stat(path, &st) < 0) {
        rv = -errno;
        if (rv == -ENOENT && o->filesize > 0) {
            rv = mkdir_p(path);
            int fd = rv < 0 ? -1 : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (rv == 0 && fd < 0) {
                rv = -errno;
            }
            if (fd >= 0) {
                rv = ftruncate(fd, (off_t)o->filesize) < 0 ? -errno : 0;
                close(fd);
            }
        } else if (rv == -ENOENT) {
            rv = 0; /* no size to make it with: enable reports the missing file */
        }
    } else if (rv == 0 && S_ISREG(st.st_mode) && o->filesize > st.st_size) {
        rv = truncate(path, (off_t)o->filesize) < 0 ? -errno : 0;
        *grew = rv == 0;
    }
    if (rv < 0) {
        fail(p, o, "create backing file", path, rv);
    }
    return rv;
}

/* mkdir unless the object is known to exist: 1 = made now, 0 = was
 * there, < 0 = failed (reported). */
static int ensure_dir(struct tgt_pass *p, struct tobj *o)
{
    bool known;
    if (o->flags & TO_FORCED) {
        known = false;
    } else if (p->sweep) {
        known = tgt__tree_find(p->live, o->path) != NULL;
    } else {
        const struct tobj *lo = tgt__tree_find(p->last, o->path);
        known = lo != NULL && !(lo->flags & (TO_DIRTY | TO_GHOST));
    }
    if (known) {
        return 0;
    }
    int rv = tgt__mkdir(p->t, o->path);
    if (rv == -EEXIST) {
        return 0;
    }
    if (rv < 0) {
        fail(p, o, "mkdir", NULL, rv);
        return rv;
    }
    if (expected(p, o) != NULL) {
        p->rep->drift++; /* it was there after the last pass */
    }
    return 1;
}

struct astate {
    char live[VAL_MAX];
    bool absent, diff;
};

static bool is_set(const struct tgt_attr *d, const char *v)
{
    return d->when == TA_IF_SET || d->nil == NULL || strcmp(d->nil, v) != 0;
}

/* Attributes the kernel lacks: one problem per feature, naming the
 * settings that were not applied. */
static void report_missing(struct tgt_pass *p, struct tobj *o, const struct astate *st)
{
    for (size_t i = 0; i < o->nattr; i++) {
        const struct tgt_attr *d = o->attrs[i].d;
        if (!st[i].absent || d->need != TA_REPORT || !is_set(d, o->attrs[i].v)) {
            continue;
        }
        bool first = true;
        for (size_t j = 0; j < i; j++) {
            const struct tgt_attr *e = o->attrs[j].d;
            if (st[j].absent && e->need == TA_REPORT && is_set(e, o->attrs[j].v) &&
                strcmp(e->feature, d->feature) == 0) {
                first = false;
            }
        }
        if (!first) {
            continue;
        }
        char keys[512] = "";
        for (size_t j = i; j < o->nattr; j++) {
            const struct tgt_attr *e = o->attrs[j].d;
            if (st[j].absent && e->need == TA_REPORT && is_set(e, o->attrs[j].v) &&
                strcmp(e->feature, d->feature) == 0) {
                size_t l = strlen(keys);
                snprintf(keys + l, sizeof keys - l, "%s%s", l ? ", " : "", e->key);
            }
        }
        char label[600];
        tgt__obj_label(o->kind, o->path, label, sizeof label);
        tgt__problem_row(&p->rep->problems, o->path, o->kind, o->src_id, EOPNOTSUPP,
                         "%s: kernel has no %s: %s not applied", label,
                         tgt__feature_text(d->feature), keys);
        p->rep->errors++;
        o->flags |= TO_FAILED;
        count_failure(p, o->path);
    }
}

static int find_lock(const struct tobj *o, enum ta_lock lock)
{
    for (size_t i = 0; i < o->nattr; i++) {
        if (o->attrs[i].d->lock == lock) {
            return (int)i;
        }
    }
    return -1;
}

static int find_attr(const struct tobj *o, const char *name)
{
    for (size_t i = 0; i < o->nattr; i++) {
        if (strcmp(o->attrs[i].d->name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int write_attr(struct tgt_pass *p, struct tobj *o, size_t i, struct astate *st)
{
    char rel[4096];
    snprintf(rel, sizeof rel, "%s/%s", o->path, o->attrs[i].d->name);
    int rv = tgt__write(p->t, rel, o->attrs[i].v);
    if (rv == 0) {
        snprintf(st[i].live, sizeof st[i].live, "%s", o->attrs[i].v);
        st[i].diff = false;
    }
    return rv;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
}

/* Read every desired attribute; 0, or < 0 when the object is unusable.
 * fresh: the object was made by this pass (its defaults are no drift).
 * A pass that is neither a sweep nor a check trusts the last tree: an
 * attribute it left at the value desired now is not read again (a role
 * change rewrites one attribute of every namespace, not all of them);
 * drift there is the rolling check's and the sweep's to find. */
static int read_attrs(struct tgt_pass *p, struct tobj *o, struct astate *st, bool fresh)
{
    const struct tobj *lo = fresh ? NULL : expected(p, o);
    bool trust = lo != NULL && !p->sweep && !p->verify;
    int bad = 0;
    for (size_t i = 0; i < o->nattr; i++) {
        const struct tgt_attr *d = o->attrs[i].d;
        const char *was = !trust                                        ? NULL
                          : i < lo->nattr && lo->attrs[i].d == d ? lo->attrs[i].v
                                                                 : tgt__obj_get(lo, d->name);
        if (was != NULL && strcmp(was, o->attrs[i].v) == 0) {
            snprintf(st[i].live, sizeof st[i].live, "%s", was);
            continue;
        }
        char rel[4096];
        snprintf(rel, sizeof rel, "%s/%s", o->path, d->name);
        ssize_t rv = tgt__read(p->t, rel, st[i].live, sizeof st[i].live);
        st[i].absent = rv < 0;
        if (rv == -ENOENT && d->need != TA_NEED_FILE) {
            continue; /* this kernel lacks the file (report_missing) */
        }
        if (rv < 0) {
            fail(p, o, "read", d->name, (int)rv);
            bad = (int)rv;
            continue;
        }
        trim(st[i].live);
        st[i].diff = !tgt__attr_same(d, st[i].live, o->attrs[i].v);
        const char *lv = lo != NULL ? tgt__obj_get(lo, d->name) : NULL;
        if (st[i].diff && lv != NULL && strcmp(lv, o->attrs[i].v) == 0) {
            p->rep->drift++; /* we had left it at this value */
        }
    }
    return bad;
}

static bool any_diff(const struct tobj *o, const struct astate *st, enum ta_lock lock)
{
    for (size_t i = 0; i < o->nattr; i++) {
        if (st[i].diff && o->attrs[i].d->lock == lock) {
            return true;
        }
    }
    return false;
}

/* Values the kernel accepts for the identity attributes: an EINVAL for
 * one of these means the attribute is locked, not that the value is bad. */
static bool identity_value_ok(const char *name, const char *v)
{
    size_t max = strcmp(name, "attr_serial") == 0     ? 20
                 : strcmp(name, "attr_model") == 0    ? 40
                 : strcmp(name, "attr_firmware") == 0 ? 8
                                                       : 0;
    if (max == 0) {
        char *end;
        unsigned long long x = strtoull(v, &end, 0);
        return *v != '\0' && *end == '\0' && x < 0x1000000ull; /* attr_ieee_oui */
    }
    size_t n = strlen(v);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0x20 || v[i] > 0x7e) {
            return false;
        }
    }
    return n >= 1 && n <= max;
}

/* Attributes of one dir object, in the order the kernel's locks need. */
static void apply_attrs(struct tgt_pass *p, struct tobj *o, bool fresh)
{
    struct astate *st = calloc(o->nattr ? o->nattr : 1, sizeof *st);
    bool recreated = false;
    if (st == NULL) {
        fail(p, o, "render", NULL, -ENOMEM);
        return;
    }
again:
    memset(st, 0, (o->nattr ? o->nattr : 1) * sizeof *st);
    if (read_attrs(p, o, st, fresh) < 0) {
        free(st);
        return;
    }
    report_missing(p, o, st);
    int en = find_lock(o, TA_LOCK_ENABLE);
    /* device/address attributes only while disabled (EBUSY/EINVAL/EACCES) */
    if (en >= 0 && !st[en].absent && any_diff(o, st, TA_LOCK_ENABLED) &&
        strcmp(st[en].live, "1") == 0) {
        char rel[4096];
        snprintf(rel, sizeof rel, "%s/enable", o->path);
        int rv = tgt__write(p->t, rel, "0");
        if (rv < 0) {
            fail(p, o, "write", "enable", rv);
            free(st);
            return;
        }
        snprintf(st[en].live, sizeof st[en].live, "0");
        st[en].diff = !tgt__attr_same(o->attrs[en].d, "0", o->attrs[en].v);
    }
    /* a port's addr_* and param_* only while no subsystem is linked (EACCES):
     * unlink, write, and the port-link stage links again */
    if (o->kind == TK_PORT && any_diff(o, st, TA_LOCK_LINKED) &&
        clear_group(p, o, "subsystems", true, NULL) < 0) {
        free(st);
        return;
    }
    /* allow_any_host=1 is refused while allowed_hosts/ has links */
    int any = find_attr(o, "attr_allow_any_host");
    if (any >= 0 && st[any].diff && strcmp(o->attrs[any].v, "1") == 0 &&
        clear_group(p, o, "allowed_hosts", true, NULL) < 0) {
        free(st);
        return;
    }
    bool wfail = false;
    for (size_t i = 0; i < o->nattr; i++) {
        const struct tgt_attr *d = o->attrs[i].d;
        if (!st[i].diff || st[i].absent || d->lock == TA_LOCK_ENABLE) {
            continue;
        }
        /* cntlid: write the bound that widens the range first, the
         * kernel refuses min >= max at every step */
        int mx = find_attr(o, "attr_cntlid_max");
        if (strcmp(d->name, "attr_cntlid_min") == 0 && mx >= 0 && st[mx].diff &&
            strtol(o->attrs[mx].v, NULL, 10) > strtol(st[mx].live, NULL, 10)) {
            int rv = write_attr(p, o, (size_t)mx, st);
            if (rv < 0) {
                fail(p, o, "write", o->attrs[mx].d->name, rv);
                wfail = true;
            }
        }
        int rv = write_attr(p, o, i, st);
        if (rv == -EINVAL && d->lock == TA_LOCK_IDENTITY && o->kind == TK_SUBSYS && !recreated &&
            identity_value_ok(d->name, o->attrs[i].v)) {
            recreated = true;
            if (recreate_subsys(p, o, d->name) == 0) {
                fresh = true;
                goto again;
            }
            free(st);
            return;
        }
        if (rv < 0) {
            fail(p, o, "write", d->name, rv);
            wfail = true;
        }
    }
    bool grew = false;
    if (o->kind == TK_NS && o->backing != NULL && ensure_backing(p, o, &grew) < 0) {
        wfail = true;
    }
    if (en >= 0 && st[en].diff && !st[en].absent) {
        /* never enable what could not be set up completely */
        if (!(wfail && strcmp(o->attrs[en].v, "1") == 0)) {
            int rv = write_attr(p, o, (size_t)en, st);
            if (rv < 0) {
                fail(p, o, "write", "enable", rv);
            }
        }
    } else if (grew && !p->t->emulated && en >= 0 && strcmp(st[en].live, "1") == 0) {
        /* the kernel re-reads the size of an enabled namespace on request */
        char rel[4096];
        snprintf(rel, sizeof rel, "%s/revalidate_size", o->path);
        int rv = tgt__write(p->t, rel, "1");
        if (rv < 0) {
            fail(p, o, "write", "revalidate_size", rv);
        }
    }
    free(st);
}

static void apply_link(struct tgt_pass *p, struct tobj *o)
{
    const char *want = base_name(o->target);
    bool present = false;
    char cur[4096] = "";
    const struct tobj *lv = p->sweep && !(o->flags & TO_FORCED)
                                ? tgt__tree_find(p->live, o->path)
                                : NULL;
    if (p->sweep && !(o->flags & TO_FORCED)) {
        present = lv != NULL;
        if (lv != NULL && lv->target != NULL) {
            snprintf(cur, sizeof cur, "%s", base_name(lv->target));
        }
    } else {
        ssize_t rv = tgt__readlink(p->t, o->path, cur, sizeof cur);
        if (rv < 0 && rv != -ENOENT) {
            fail(p, o, "readlink", NULL, (int)rv);
            return;
        }
        present = rv >= 0;
        if (present) {
            memmove(cur, base_name(cur), strlen(base_name(cur)) + 1);
        }
    }
    if (present && strcmp(cur, want) == 0) {
        return;
    }
    if (present) {
        int rv = tgt__unlink(p->t, o->path);
        if (rv < 0 && rv != -ENOENT) {
            fail(p, o, "unlink", NULL, rv);
            return;
        }
    }
    if (expected(p, o) != NULL) {
        p->rep->drift++; /* removed or re-pointed behind our back */
    }
    int rv = tgt__symlink(p->t, o->target, o->path);
    if (rv < 0) {
        fail(p, o, "link to", o->target, rv);
    }
}

void tgt__apply_obj(struct tgt_pass *p, struct tobj *o)
{
    if (o->target != NULL) {
        apply_link(p, o);
        return;
    }
    int rv = ensure_dir(p, o);
    if (rv >= 0) {
        apply_attrs(p, o, rv == 1);
    }
}

/* ---- removal ------------------------------------------------------------------ */

void tgt__remove_obj(struct tgt_pass *p, const struct tobj *r)
{
    struct tobj tmp = *r; /* for messages; flags are not kept */
    tmp.flags = 0;
    if (p->sweep && p->expect && tgt__tree_find(p->last, r->path) == NULL) {
        p->rep->drift++; /* made behind our back */
    }
    int rv = 0;
    switch (r->kind) {
    case TK_HOSTLINK:
    case TK_PORTLINK:
        rv = tgt__unlink(p->t, r->path);
        break;
    case TK_PORT:
        /* nvmetcli's teardown: links, referrals, extra ANA groups, port */
        rv = clear_group(p, &tmp, "subsystems", true, NULL);
        if (rv == 0) {
            rv = clear_group(p, &tmp, "referrals", false, NULL);
        }
        if (rv == 0) {
            rv = clear_group(p, &tmp, "ana_groups", false, "1");
        }
        if (rv == 0) {
            rv = tgt__rmdir(p->t, r->path);
        }
        break;
    case TK_SUBSYS:
        rv = clear_group(p, &tmp, "allowed_hosts", true, NULL);
        if (rv == 0) {
            rv = clear_group(p, &tmp, "namespaces", false, NULL);
        }
        if (rv == 0) {
            rv = tgt__rmdir(p->t, r->path);
        }
        break;
    default:
        rv = tgt__rmdir(p->t, r->path);
        break;
    }
    if (rv == -ENOENT) {
        rv = 0;
    }
    if (rv < 0) {
        if (!(tmp.flags & TO_FAILED)) {
            char label[600];
            tgt__obj_label(r->kind, r->path, label, sizeof label);
            tgt__problem_row(&p->rep->problems, r->path, r->kind, r->src_id, -rv,
                             "remove %s: %s: %s", label, r->target != NULL ? "unlink" : "rmdir",
                             strerror(-rv));
            p->rep->errors++;
            count_failure(p, r->path);
        }
        struct tobj *g = tgt__obj_new(r->kind, r->path, r->target);
        if (g != NULL) {
            g->flags = TO_GHOST | TO_DIRTY;
        }
        tgt__tree_add(p->ghosts, g);
    }
}
