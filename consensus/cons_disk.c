/* consensus: storage faults of the data dir, said out loud (cons.h
 * "Storage faults").
 *
 * What libraft 0.15 does on its own, and why each needs a voice here:
 *   - Auto-recovery (its default): a damaged last closed segment, and every
 *     open segment after it, is renamed corrupt-<ns>-<name> while loading,
 *     and the load is tried once more on what is left. The node starts on a
 *     shorter log without a log line, and a single voter hands out the lost
 *     indexes again: acknowledged writes vanish. We switch it off, find the
 *     damaged segment in the load error, and decide (cons_disk_start).
 *   - A load that ends early without an error (a segment file deleted at the
 *     end, an open segment whose tail does not decode, which libraft takes
 *     for a torn write and truncates) cannot be told from a short log by
 *     looking at the files: the commit watermark (log-watermark) remembers
 *     which index was committed, so a log ending before it is a loss.
 *   - Open segments are preallocated with posix_fallocate: CONS_OPEN_SEGMENTS
 *     of them. A dir too small for them starts, elects itself, and every
 *     append fails; the post-election barrier fails too, so without a word
 *     here the node looks like a leader that is never ready and clients hear
 *     "no quorum". We check the space at start and report failed writes as
 *     what they are (ENOSPC, EIO).
 *
 * This file holds the start-up side (space check, damaged segments, the
 * watermark and the log length); cons_storage.c the running side.
 * Everything runs on the loop thread. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cons_int.h"
#include "nv_err.h"

#define WATERMARK_FILE "log-watermark"
#define WATERMARK_SLOT 512 /* two slots, each in its own sector */
#define MAX_SET_ASIDE_ROUNDS 8

/* ------------------------------------------------------------------ */
/* libraft 0.15 internals read here (renamed or hidden in 0.16-0.18) */

static uint64_t stored_of(const struct cons_node *n)
{
    return n->raft.last_stored;
}

static uint64_t commit_of(const struct cons_node *n)
{
    return n->raft.commit_index;
}

/* Voters in the current configuration, and whether this node is one. */
unsigned cons_disk_voters(const struct cons_node *n, bool *self)
{
    const struct raft_configuration *c = &n->raft.configuration;
    unsigned v = 0;
    *self = false;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role == RAFT_VOTER) {
            v++;
            *self = *self || c->servers[i].id == n->id;
        }
    }
    return v;
}

/* The highest index this node both stores and knows committed: what the
 * watermark may promise. */
uint64_t cons_disk_durable_commit(const struct cons_node *n)
{
    uint64_t c = commit_of(n), s = stored_of(n);
    return c < s ? c : s;
}

/* ------------------------------------------------------------------ */
/* helpers */

static int fail(char *errmsg, size_t errlen, int rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *errmsg, size_t errlen, int rv, const char *fmt, ...)
{
    if (errmsg != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, errlen, fmt, ap);
        va_end(ap);
    }
    return rv;
}

/* "1.9 MiB" */
const char *cons_disk_mib(uint64_t bytes, char *buf, size_t len)
{
    snprintf(buf, len, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* libraft prefixes its load errors with "io: ". */
const char *cons_disk_words(const struct cons_node *n)
{
    const char *m = raft_errmsg((struct raft *)&n->raft);
    if (m == NULL) {
        return "";
    }
    return strncmp(m, "io: ", 4) == 0 ? m + 4 : m;
}

/* ------------------------------------------------------------------ */
/* free space */

static bool is_open_segment_name(const char *name)
{
    if (strncmp(name, "open-", 5) != 0 || name[5] == '\0') {
        return false;
    }
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

/* Space libraft can use in dir: what is free plus what the open segments of
 * an earlier run hold (loading finalizes them: truncated to their entries,
 * the rest comes back). 0 or -errno. */
static int usable_space(const char *dir, uint64_t *free_bytes, uint64_t *reusable)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) < 0) {
        return -errno;
    }
    /* root (nvmetd) may also fill the blocks a file system keeps for root */
    fsblkcnt_t blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
    *free_bytes = (uint64_t)blocks * vfs.f_frsize;
    *reusable = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (is_open_segment_name(e->d_name) && fstatat(dirfd(d), e->d_name, &st, 0) == 0) {
            *reusable += (uint64_t)st.st_blocks * 512;
        }
    }
    closedir(d);
    return 0;
}

void cons_disk_sample_space(struct cons_node *n)
{
    struct cons_disk *d = &n->disk;
    uint64_t free_bytes = 0, reusable = 0;
    if (usable_space(d->dir, &free_bytes, &reusable) < 0) {
        return;
    }
    d->free_bytes = free_bytes;
    bool low = free_bytes < d->segment;
    if (low != d->low) {
        char a[32], b[32];
        if (low) {
            cons_log(n,
                     "storage: data dir %s has %s free, less than one Raft segment (%s): the "
                     "log stops growing (writes fail with ENOSPC) once the preallocated "
                     "segments are full",
                     d->dir, cons_disk_mib(free_bytes, a, sizeof a),
                     cons_disk_mib(d->segment, b, sizeof b));
        } else {
            cons_log(n, "storage: data dir %s has %s free again", d->dir,
                     cons_disk_mib(free_bytes, a, sizeof a));
        }
    }
    d->low = low;
}

/* ------------------------------------------------------------------ */
/* the commit watermark: "seq=S committed=C voters=V sum=X" in one of two
 * 512-byte slots (the newer valid one wins, so a torn write of one slot
 * leaves the other) */

static uint32_t fnv1a(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    }
    return h;
}

static int wm_path(const struct cons_disk *d, char *out, size_t len)
{
    return (size_t)snprintf(out, len, "%s/%s", d->dir, WATERMARK_FILE) >= len ? -ENAMETOOLONG : 0;
}

static bool wm_parse(const char *slot, uint64_t *seq, uint64_t *committed, unsigned *voters)
{
    char line[WATERMARK_SLOT + 1];
    memcpy(line, slot, WATERMARK_SLOT);
    line[WATERMARK_SLOT] = '\0';
    char *sum = strstr(line, " sum=");
    unsigned long long s, c;
    unsigned v, x;
    if (sum == NULL || sscanf(line, "seq=%llu committed=%llu voters=%u", &s, &c, &v) != 3 ||
        sscanf(sum, " sum=%x", &x) != 1 || fnv1a(line, (size_t)(sum - line)) != x) {
        return false;
    }
    *seq = s;
    *committed = c;
    *voters = v;
    return true;
}

static void wm_read(struct cons_node *n)
{
    struct cons_disk *d = &n->disk;
    char path[PATH_MAX], buf[2 * WATERMARK_SLOT];
    d->wm_found = false;
    if (wm_path(d, path, sizeof path) < 0) {
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    ssize_t got = pread(fd, buf, sizeof buf, 0);
    close(fd);
    for (int i = 0; i < 2 && got >= (ssize_t)((i + 1) * WATERMARK_SLOT); i++) {
        uint64_t seq, committed;
        unsigned voters;
        if (wm_parse(buf + i * WATERMARK_SLOT, &seq, &committed, &voters) &&
            (!d->wm_found || seq > d->wm_seq)) {
            d->wm_found = true;
            d->wm_seq = seq;
            d->wm_committed = committed;
            d->wm_voters = voters;
        }
    }
    if (!d->wm_found) {
        cons_log(n, "storage: %s holds no valid record; the log length is not checked", path);
    }
}

/* Write the next slot and fdatasync. A new file gets its full size and a
 * synced dir first, so a later fdatasync has no metadata to carry. */
int cons_disk_wm_write(struct cons_node *n, uint64_t committed, unsigned voters)
{
    struct cons_disk *d = &n->disk;
    char path[PATH_MAX];
    if (wm_path(d, path, sizeof path) < 0) {
        return -ENAMETOOLONG;
    }
    bool created = access(path, F_OK) < 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -errno;
    }
    int rv = 0;
    if (created && (ftruncate(fd, 2 * WATERMARK_SLOT) < 0 || fsync(fd) < 0)) {
        rv = -errno;
    }
    char slot[WATERMARK_SLOT];
    memset(slot, ' ', sizeof slot);
    uint64_t seq = d->wm_seq + 1;
    int len = snprintf(slot, sizeof slot, "seq=%" PRIu64 " committed=%" PRIu64 " voters=%u", seq,
                       committed, voters);
    len += snprintf(slot + len, sizeof slot - (size_t)len, " sum=%08x\n", fnv1a(slot, (size_t)len));
    slot[len] = ' ';
    slot[sizeof slot - 1] = '\n';
    if (rv == 0 &&
        (pwrite(fd, slot, sizeof slot, (off_t)(seq % 2) * WATERMARK_SLOT) != sizeof slot ||
         fdatasync(fd) < 0)) {
        rv = errno ? -errno : -EIO;
    }
    close(fd);
    if (created) {
        sync_dir(d->dir);
    }
    if (rv == 0) {
        d->wm_found = true;
        d->wm_seq = seq;
        d->wm_committed = committed;
        d->wm_voters = voters;
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* segments */

struct seg {
    char name[64];
    bool open;
    uint64_t first, end; /* closed */
    uint64_t counter;    /* open */
};

static bool all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return len > 0;
}

/* libraft's names: closed "%016llu-%016llu", open "open-%llu". */
static bool seg_parse(const char *name, size_t len, struct seg *s)
{
    if (len == 0 || len >= sizeof s->name) {
        return false;
    }
    memset(s, 0, sizeof *s);
    memcpy(s->name, name, len);
    if (len == 33 && name[16] == '-' && all_digits(name, 16) && all_digits(name + 17, 16)) {
        s->first = strtoull(name, NULL, 10);
        s->end = strtoull(name + 17, NULL, 10);
        return s->first > 0 && s->first <= s->end;
    }
    if (len > 5 && strncmp(name, "open-", 5) == 0 && all_digits(name + 5, len - 5)) {
        s->open = true;
        s->counter = strtoull(name + 5, NULL, 10);
        return true;
    }
    return false;
}

/* libraft loads closed segments by first index, then open ones by counter. */
static int seg_cmp(const void *a, const void *b)
{
    const struct seg *x = a, *y = b;
    if (x->open != y->open) {
        return x->open ? 1 : -1;
    }
    uint64_t kx = x->open ? x->counter : x->first, ky = y->open ? y->counter : y->first;
    return (kx > ky) - (kx < ky);
}

static int seg_list(const char *dir, struct seg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -errno;
    }
    size_t cap = 0;
    struct dirent *e;
    int rv = 0;
    while ((e = readdir(d)) != NULL) {
        struct seg s;
        if (!seg_parse(e->d_name, strlen(e->d_name), &s)) {
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct seg *p = realloc(*out, cap * sizeof *p);
            if (p == NULL) {
                rv = -ENOMEM;
                break;
            }
            *out = p;
        }
        (*out)[(*n)++] = s;
    }
    closedir(d);
    if (rv < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rv;
    }
    if (*n > 0) {
        qsort(*out, *n, sizeof **out, seg_cmp);
    }
    return 0;
}

/* A load error that says a segment's content is bad (not that the disk
 * could not be read): libraft's RAFT_CORRUPT, and the "short read" /
 * "file has only N bytes" of a segment cut short, which it reports as an
 * I/O error. */
static bool content_error(int rv, const char *words)
{
    return rv == RAFT_CORRUPT || (rv == RAFT_IOERR && (strstr(words, "short read") != NULL ||
                                                       strstr(words, "file has only") != NULL));
}

/* The first segment the load error names ("load closed segment X: ...",
 * "unexpected closed segment X: ...", "closed segment X is past ..."),
 * found in dir. */
static bool named_segment(const char *dir, const char *words, struct seg *s)
{
    for (const char *p = strstr(words, "segment "); p != NULL; p = strstr(p + 1, "segment ")) {
        const char *name = p + 8;
        size_t len = strcspn(name, ": ");
        char path[PATH_MAX];
        struct stat st;
        if (seg_parse(name, len, s) &&
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, s->name) < sizeof path &&
            stat(path, &st) == 0) {
            return true;
        }
    }
    return false;
}

static struct cons_log_fault *fault_add(struct cons_disk *d)
{
    struct cons_log_fault *f =
        &d->faults[d->n_faults < CONS_MAX_FAULTS ? d->n_faults++ : CONS_MAX_FAULTS - 1];
    memset(f, 0, sizeof *f);
    return f;
}

/* Whether this node may be the only holder of what it loses: a single
 * voter. Before the log is loaded, the watermark's record of the
 * configuration says it, else the configuration given at start. */
static bool sole_holder_before_load(const struct cons_disk *d)
{
    if (d->wm_found && d->wm_voters > 0) {
        return d->wm_voters == 1;
    }
    return !d->multi_hint;
}

/* Rename the damaged segment and every segment after it (what follows a
 * gap cannot be loaded either) to corrupt-<ns>-<name>. Returns how many
 * were set aside, the new name of the first in aside, the highest closed
 * index among them in *end. */
static int set_aside(const struct cons_disk *d, const struct seg *bad, char *aside, size_t asidelen,
                     uint64_t *end)
{
    struct seg *segs = NULL;
    size_t n = 0;
    int rv = seg_list(d->dir, &segs, &n);
    if (rv < 0) {
        return rv;
    }
    size_t from = n;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(segs[i].name, bad->name) == 0) {
            from = i;
            break;
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    int moved = 0;
    *end = 0;
    for (size_t i = from; i < n && rv == 0; i++) {
        char src[PATH_MAX], name[160], dst[PATH_MAX];
        snprintf(name, sizeof name, "corrupt-%" PRId64 "-%s", ns, segs[i].name);
        if ((size_t)snprintf(src, sizeof src, "%s/%s", d->dir, segs[i].name) >= sizeof src ||
            (size_t)snprintf(dst, sizeof dst, "%s/%s", d->dir, name) >= sizeof dst) {
            rv = -ENAMETOOLONG;
        } else if (rename(src, dst) < 0) {
            rv = -errno;
        } else {
            if (moved++ == 0) {
                snprintf(aside, asidelen, "%s", name);
            }
            if (!segs[i].open && segs[i].end > *end) {
                *end = segs[i].end;
            }
        }
    }
    free(segs);
    sync_dir(d->dir);
    return rv < 0 ? rv : moved;
}

/* ------------------------------------------------------------------ */
/* start */

int cons_disk_open(struct cons_node *n, const struct cons_config *cfg, size_t segment, char *errmsg,
                   size_t errlen)
{
    struct cons_disk *d = &n->disk;
    if ((size_t)snprintf(d->dir, sizeof d->dir, "%s", cfg->data_dir) >= sizeof d->dir) {
        return fail(errmsg, errlen, -ENAMETOOLONG, "data dir %s: name too long", cfg->data_dir);
    }
    d->segment = segment;
    d->accept_loss = cfg->accept_data_loss;
    bool self = false, others = false;
    for (size_t i = 0; i < cfg->n_peers && cfg->peers != NULL; i++) {
        if (cfg->peers[i].role == CONS_ROLE_VOTER) {
            self = self || cfg->peers[i].id == cfg->id;
            others = others || cfg->peers[i].id != cfg->id;
        }
    }
    d->multi_hint = others || cfg->join || (cfg->n_peers > 0 && !self);
    wm_read(n);

    uint64_t free_bytes = 0, reusable = 0;
    int rv = usable_space(d->dir, &free_bytes, &reusable);
    if (rv < 0) {
        return fail(errmsg, errlen, rv, "data dir %s: statvfs: %s", d->dir, strerror(-rv));
    }
    d->free_bytes = free_bytes;
    uint64_t needed = (uint64_t)CONS_OPEN_SEGMENTS * segment;
    if (free_bytes + reusable < needed) {
        char a[32], b[32], c[32];
        return fail(errmsg, errlen, -ENOSPC,
                    "data dir %s: %s available, the Raft log needs %s (%d open segments of %s "
                    "are preallocated): No space left on device",
                    d->dir, cons_disk_mib(free_bytes + reusable, a, sizeof a),
                    cons_disk_mib(needed, b, sizeof b), CONS_OPEN_SEGMENTS,
                    cons_disk_mib(segment, c, sizeof c));
    }
    d->low = free_bytes < segment;
    return 0;
}

/* The load failed on a segment's content: set it aside (and what follows),
 * or refuse. 0: try the load again. */
static int on_damaged_segment(struct cons_node *n, const struct seg *bad, char *errmsg,
                              size_t errlen)
{
    struct cons_disk *d = &n->disk;
    char words[RAFT_ERRMSG_BUF_SIZE];
    snprintf(words, sizeof words, "%s", cons_disk_words(n));
    uint64_t from = bad->open ? 0 : bad->first;
    const char *gap = strstr(words, "should have been ");
    if (gap != NULL) {
        from = strtoull(gap + 17, NULL, 10); /* a segment before it is missing */
    }
    uint64_t upto = d->wm_committed > bad->end ? d->wm_committed : bad->end;
    if (sole_holder_before_load(d) && !d->accept_loss) {
        char range[96] = "the entries it holds and any after it";
        if (from > 0 && upto >= from) {
            snprintf(range, sizeof range, "entries %" PRIu64 "..%" PRIu64 " (at least)", from,
                     upto);
        }
        cons_log(n, "storage: data dir %s: Raft log segment %s is damaged (%s)", d->dir, bad->name,
                 words);
        return fail(errmsg, errlen, -EBADMSG,
                    "data dir %s: Raft log segment %s is damaged (%s); setting it aside would "
                    "drop %s, and this single-voter cluster holds the only copy. Refusing to "
                    "start on a shorter log: restore the segment, or start once with "
                    "accept_data_loss (nvmetd --accept-data-loss) to set it aside and go on "
                    "without those entries",
                    d->dir, bad->name, words, range);
    }
    char aside[160] = "";
    uint64_t end = 0;
    int moved = set_aside(d, bad, aside, sizeof aside, &end);
    if (moved <= 0) {
        return fail(errmsg, errlen, moved < 0 ? moved : -EBADMSG,
                    "data dir %s: Raft log segment %s is damaged (%s) and could not be set "
                    "aside: %s",
                    d->dir, bad->name, words, moved < 0 ? strerror(-moved) : "not found");
    }
    struct cons_log_fault *f = fault_add(d);
    snprintf(f->kind, sizeof f->kind, "damaged segment");
    snprintf(f->file, sizeof f->file, "%s", bad->name);
    snprintf(f->set_aside, sizeof f->set_aside, "%s", aside);
    snprintf(f->reason, sizeof f->reason, "%s", words);
    f->first_lost = from;
    f->last_lost = end > upto ? end : upto;
    f->accepted = sole_holder_before_load(d);
    cons_log(n, "storage: data dir %s: Raft log segment %s is damaged (%s): set aside as %s%s; %s",
             d->dir, bad->name, words, aside, moved > 1 ? " with the segments after it" : "",
             f->accepted ? "starting without its entries as asked (accept_data_loss)"
                         : "the entries it held are fetched again from the other members");
    return 0;
}

/* After a successful load: does the log reach what was committed? A single
 * voter refuses a shorter log unless the loss is accepted; a member logs it
 * and catches up. */
static int check_length(struct cons_node *n, char *errmsg, size_t errlen)
{
    struct cons_disk *d = &n->disk;
    uint64_t last = raft_last_index(&n->raft);
    bool self;
    unsigned voters = cons_disk_voters(n, &self);
    /* a log cut before its first configuration entry names no voter: the
     * watermark's record (or the configuration given) then says it */
    bool sole = voters > 0 ? voters == 1 && self : sole_holder_before_load(d);
    for (size_t i = 0; i < d->n_faults; i++) {
        struct cons_log_fault *f = &d->faults[i];
        f->first_lost = last + 1;
        if (f->last_lost != 0 && f->last_lost < f->first_lost) {
            f->first_lost = f->last_lost = 0; /* nothing past the snapshot was lost */
            f->recovered = !sole;
        }
    }
    bool shorter = d->wm_committed > last;
    if (shorter) {
        struct cons_log_fault *f = d->n_faults > 0 ? &d->faults[d->n_faults - 1] : NULL;
        if (f == NULL) {
            f = fault_add(d);
            snprintf(f->kind, sizeof f->kind, "shorter log");
            snprintf(f->reason, sizeof f->reason,
                     "the log ends at entry %" PRIu64 " but entries up to %" PRIu64
                     " were committed (recorded in %s)",
                     last, d->wm_committed, WATERMARK_FILE);
        }
        f->first_lost = last + 1;
        f->last_lost = d->wm_committed;
        if (sole && !d->accept_loss) {
            cons_log(n, "storage: data dir %s: %s", d->dir, f->reason);
            return fail(errmsg, errlen, -EBADMSG,
                        "data dir %s: the Raft log ends at entry %" PRIu64
                        " but entries up to %" PRIu64
                        " were committed (recorded in %s): a segment is missing or was cut "
                        "short, and this single-voter cluster holds the only copy. Refusing to "
                        "start on a shorter log: restore the data dir, or start once with "
                        "accept_data_loss (nvmetd --accept-data-loss) to go on without entries "
                        "%" PRIu64 "..%" PRIu64,
                        d->dir, last, d->wm_committed, WATERMARK_FILE, last + 1, d->wm_committed);
        }
    }
    if (d->n_faults == 0) {
        return 0;
    }
    if (sole && !d->accept_loss) {
        /* set aside on the word of a multi-node configuration, yet the log
         * says this node is the only voter */
        const struct cons_log_fault *f = &d->faults[0];
        return fail(errmsg, errlen, -EBADMSG,
                    "data dir %s: Raft log segment %s was damaged (%s) and is set aside as %s, "
                    "and this single-voter cluster holds the only copy of its entries. Refusing "
                    "to start on a shorter log: put the segment back, or start once with "
                    "accept_data_loss (nvmetd --accept-data-loss)",
                    d->dir, f->file, f->reason, f->set_aside);
    }
    if (sole) {
        for (size_t i = 0; i < d->n_faults; i++) {
            d->faults[i].accepted = true;
        }
        if (shorter) {
            cons_log(n,
                     "storage: data dir %s: entries %" PRIu64 "..%" PRIu64
                     " are lost; starting without them as asked (accept_data_loss)",
                     d->dir, last + 1, d->wm_committed);
        }
        cons_disk_wm_write(n, last,
                           voters); /* the loss is accepted: the shorter log is the truth now */
    } else if (shorter) {
        cons_log(n,
                 "storage: data dir %s: entries %" PRIu64 "..%" PRIu64
                 " are missing from this member's log; the leader sends them again",
                 d->dir, last + 1, d->wm_committed);
    }
    return 0;
}

int cons_disk_start(struct cons_node *n, char *errmsg, size_t errlen)
{
    for (int round = 0;; round++) {
        int rv = raft_start(&n->raft);
        if (rv == 0) {
            break;
        }
        /* A failed load leaves struct raft as it was: raft_start may run
         * again on the dir without the damaged segment. */
        const char *words = cons_disk_words(n);
        struct seg bad;
        if (round >= MAX_SET_ASIDE_ROUNDS || !content_error(rv, words) ||
            !named_segment(n->disk.dir, words, &bad)) {
            return fail(errmsg, errlen, cons_err(rv), "raft start: %s",
                        words[0] ? words : raft_strerror(rv));
        }
        rv = on_damaged_segment(n, &bad, errmsg, errlen);
        if (rv < 0) {
            return rv;
        }
    }
    int rv = check_length(n, errmsg, errlen);
    if (rv == 0) {
        cons_disk_sample_space(n);
    }
    return rv;
}
