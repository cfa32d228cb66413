/* target/ internals: the instance, the backend interface (real configfs or
 * the emulated kernel), the object tree the renderer reconciles, and the
 * attribute descriptor tables. Not for other modules; unit tests of
 * target/ use it to reach the emulator directly and to drive the renderer
 * from plain rows. */
#ifndef TGT_INT_H
#define TGT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sm.h"
#include "tgt.h"

struct nv;

/* ---- backend interface ------------------------------------------------ */

/* Paths are relative to <root>/nvmet ("" is nvmet/ itself). Every
 * operation returns 0 (or a length) or a negative errno, exactly what the
 * kernel's configfs would return for the same syscall. */
struct tgt_dirent {
    char *name;
    unsigned char type; /* DT_DIR, DT_LNK, DT_REG (DT_UNKNOWN resolved) */
};

struct tgt_ops {
    const char *name;
    int (*mkdir)(struct tgt *t, const char *rel);
    int (*rmdir)(struct tgt *t, const char *rel);
    /* Reads at most len-1 bytes and NUL-terminates; returns the length. */
    ssize_t (*read)(struct tgt *t, const char *rel, char *buf, size_t len);
    /* One write(2) of buf[0..len): the store handler runs once. */
    int (*write)(struct tgt *t, const char *rel, const char *buf, size_t len);
    /* target is an absolute path, as for symlink(2). */
    int (*symlink)(struct tgt *t, const char *target, const char *rel);
    int (*unlink)(struct tgt *t, const char *rel);
    /* *out: malloc'd array of n entries (names malloc'd), without "." and
     * ".."; free with tgt__dirents_free. */
    int (*readdir)(struct tgt *t, const char *rel, struct tgt_dirent **out, size_t *n);
    ssize_t (*readlink)(struct tgt *t, const char *rel, char *buf, size_t len);
    /* Make nvmet/ (module "nvmet") or a transport module available. */
    int (*load)(struct tgt *t, const char *module);
};

extern const struct tgt_ops tgt__real_ops;
extern const struct tgt_ops tgt__emu_ops;

/* Emulated kernel profiles. 6.1 (Debian 12): no attr_ieee_oui or
 * attr_firmware, no DH-CHAP (CONFIG_NVME_TARGET_AUTH unset), no nvme-loop,
 * cntlid_min < cntlid_max strictly. 6.12 (Debian backports): all of them,
 * and min <= max. 6.13: adds resv_enable. */
#define TGT_P61 0x1u
#define TGT_P613 0x4u              /* 6.13 and later: reservations (resv_enable) */
#define TGT_P612 (0x2u | TGT_P613) /* as masks: 6.12 "and later" */
#define TGT_PALL (TGT_P61 | TGT_P612)
/* the profile values (one bit each) */
#define TGT_PROFILE_61 TGT_P61
#define TGT_PROFILE_612 0x2u
#define TGT_PROFILE_613 TGT_P613

/* ---- object tree ---------------------------------------------------- */

/* Object kinds in the order of the create stages (TrueNAS's renderer,
 * middleware utils/nvmet/kernel.py, plus ANA groups after ports):
 * creates run in this order, deletes in the reverse order. */
enum tgt_kind {
    TK_SUBSYS = 1,
    TK_HOST,
    TK_PORT,
    TK_ANAGRP, /* ports/<p>/ana_groups/<g>, g = node_slot + 1 >= 2 (ANA mode) */
    TK_REFERRAL,
    TK_HOSTLINK, /* subsystems/<s>/allowed_hosts/<h> -> hosts/<h> */
    TK_PORTLINK, /* ports/<p>/subsystems/<s> -> subsystems/<s> */
    TK_NS,
    TK__END
};

struct tgt_attr;

struct tval {
    const struct tgt_attr *d;
    char *v; /* value without the trailing newline */
};

struct tobj {
    char *path;   /* relative to nvmet/ */
    char *target; /* links: the target, relative to nvmet/ */
    enum tgt_kind kind;
    unsigned flags;
    size_t nattr;
    struct tval *attrs; /* in write order */
    char *backing;      /* FILE namespaces: backing file (without device_root) */
    int64_t filesize;   /* FILE namespaces: -1 when not set */
    /* the row it was built from (the table follows from the kind), -1 =
     * none: a change of that row finds the object (struct tgt src) */
    int64_t src_id;
    size_t hash; /* of path, computed once */
};

#define TO_DIRTY 0x1u  /* last tree: the last pass did not finish this object */
#define TO_GHOST 0x2u  /* last tree: not desired, but its removal failed */
#define TO_TODO 0x4u   /* pass: to be applied */
#define TO_FORCED 0x8u /* pass: removed by this pass on purpose (no drift) */
#define TO_FAILED 0x10u
#define TO_GONE 0x20u /* incremental pass: a last-tree object being removed */

struct ttree {
    struct tobj **o;
    size_t n, cap;
    size_t *slot; /* open addressing: path -> index + 1 */
    size_t nslot;
    struct nv *problems; /* builder problems (owned array) or NULL */
    unsigned group;      /* builder: this node's ANA group on every port */
};

struct ttree *tgt__tree_new(void);
void tgt__tree_free(struct ttree *tr);
/* Takes o (freed on failure). -EEXIST if the path is already there. */
int tgt__tree_add(struct ttree *tr, struct tobj *o);
struct tobj *tgt__tree_find(const struct ttree *tr, const char *path);
/* Take o (an object of tr) out of tr; the caller owns it then. */
void tgt__tree_del(struct ttree *tr, struct tobj *o);
/* Put o where old is (same path); the caller owns old then. */
void tgt__tree_swap(struct ttree *tr, struct tobj *old, struct tobj *o);
/* A deep copy (flags cleared), or NULL. */
struct tobj *tgt__obj_copy(const struct tobj *o);
struct tobj *tgt__obj_new(enum tgt_kind kind, const char *path, const char *target);
void tgt__obj_free(struct tobj *o);
int tgt__obj_attr(struct tobj *o, const struct tgt_attr *d, const char *v);
const char *tgt__obj_get(const struct tobj *o, const char *name);
/* Same kind, target, attributes and backing file. */
bool tgt__obj_equal(const struct tobj *a, const struct tobj *b);
/* "port 1", "namespace <nqn>/1", ... for messages. */
void tgt__obj_label(enum tgt_kind kind, const char *path, char *buf, size_t len);
/* A sorted nv map {path: true | "-> basename" | value} of a list of
 * (path, value) pairs; takes the values. */
struct nv *tgt__sorted_map(char **keys, struct nv **vals, size_t n);

/* ---- attribute descriptors --------------------------------------------- */

enum ta_fmt { TA_STR, TA_BOOL, TA_INT, TA_MAP, TA_FN };
enum ta_when { TA_ALWAYS, TA_IF_SET };
enum ta_need {
    TA_NEED_FILE, /* every kernel has it: a missing file is an error */
    TA_OPTIONAL,  /* silently left out where the kernel lacks the file */
    TA_REPORT     /* a reported problem where the kernel lacks the file */
};
enum ta_cmp { TA_CMP_TEXT, TA_CMP_PADDED, TA_CMP_UUID, TA_CMP_NUM };
enum ta_lock {
    TA_LOCK_NONE,
    TA_LOCK_LINKED,   /* port addr_*, param_*: EACCES while a subsystem is linked */
    TA_LOCK_ENABLED,  /* namespace/referral: only while enable=0 */
    TA_LOCK_IDENTITY, /* EINVAL once a host identified the controller */
    TA_LOCK_ENABLE    /* the enable attribute itself: written last */
};

struct tgt_map {
    const char *from, *to;
};

struct tgt_build;

struct tgt_attr {
    const char *name;
    enum ta_fmt fmt;
    const char *key;           /* the row field */
    const char *nil;           /* value when the field is null (TA_ALWAYS) */
    const struct tgt_map *map; /* TA_MAP */
    /* TA_FN: writes the value; 1 = rendered, 0 = not rendered here,
     * negative = the row cannot be rendered (message in out). */
    int (*fn)(const struct tgt_build *b, const struct nv *row, const struct nv *aux, char *out,
              size_t len);
    enum ta_when when;
    enum ta_need need;
    const char *feature; /* tgt_features() key, or NULL */
    enum ta_cmp cmp;
    enum ta_lock lock;
};

/* Per kind: the attribute table (NULL-name terminated). */
const struct tgt_attr *tgt__attrs(enum tgt_kind kind);
/* Render one attribute of a row: 1 = rendered into out, 0 = not rendered
 * for this row, < 0 = the row cannot be rendered (message in out). */
int tgt__render_attr(const struct tgt_build *b, const struct tgt_attr *d, const struct nv *row,
                     const struct nv *aux, char *out, size_t len);

/* Live value equals the desired one under the descriptor's comparison. */
bool tgt__attr_same(const struct tgt_attr *d, const char *live, const char *want);

/* ---- rows (what the renderer reads from the statemachine) --------------- */

/* Borrowed rows of every table in ascending id order (sm.h row shapes),
 * and the failover VIPs of sm_cluster() ("failover" -> "vips": [{address,
 * prefix, interface, node_addresses: {"<node id>": address}}], NULL = none):
 * ANA ports listen on each node's own address of the port's VIP. */
struct tgt_rows {
    const struct nv *global;
    const struct nv **row[SM_TABLE_COUNT];
    size_t n[SM_TABLE_COUNT];
    const struct nv *vips;
    /* Rows by lookup instead of arrays (incremental passes, which must
     * not touch every row): by_id(src, table, id) is one row or NULL;
     * row[] and n[] stay empty then. */
    const void *src;
    const struct nv *(*by_id)(const void *src, enum sm_table t, int64_t id);
    /* ids of the rows of t whose column col equals id: *ids malloc'd,
     * returns the count or -ENOMEM (a scan: only for rare changes). */
    ssize_t (*with)(const void *src, enum sm_table t, const char *col, int64_t id, int64_t **ids);
};

int tgt__rows_from_sm(const struct sm_state *s, struct tgt_rows *r);
void tgt__rows_free(struct tgt_rows *r);
const struct nv *tgt__row_by_id(const struct tgt_rows *r, enum sm_table t, int64_t id);
ssize_t tgt__rows_with(const struct tgt_rows *r, enum sm_table t, const char *col, int64_t id,
                       int64_t **ids);

struct tgt_build {
    const struct tgt *t;
    const struct tgt_rows *rows;
    const struct tgt_view *view;
};

/* ANA mode. A port with ANA is rendered a second time as ports/<index +
 * TGT_ANA_PORT_OFFSET>, listening on this node's own address; the kernel
 * caps port ids at 65535 and ANA group ids at 128 (NVMET_MAX_ANAGRPS). */
#define TGT_ANA_PORT_OFFSET 5000
#define TGT_ANA_MAX_GRPID 128
/* Effective ANA of a subsystem row: its "ana" when not null, else the
 * global "ana"; false unless failover is licensed (view->ha). */
bool tgt__subsys_ana(const struct tgt_build *b, const struct nv *subsys);
/* This node's ANA group, node_slot + 1, or 0 when the view has no slot
 * (no ANA groups, namespaces stay in the kernel's default group 1). */
unsigned tgt__ana_group(const struct tgt_view *v);

/* The desired tree for (rows, view). Never NULL except out of memory. */
struct ttree *tgt__build(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v);
/* One row of the desired tree's source: which table, which id. */
struct tgt_ref {
    enum sm_table table;
    int64_t id;
};
/* The objects built from the rows refs[0..n) alone, added to tr: a part
 * of the desired tree, the same objects tgt__build makes for those rows.
 * Only for tables whose objects depend on no other row of their table
 * (not ports: referrals and ANA forms look at every port); ANA group as
 * in t's last full build. 0 or -ENOMEM. */
int tgt__build_rows(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                    const struct tgt_ref *refs, size_t n, struct ttree *tr);
/* With failover licensed (view ha), may an incremental pass render the
 * added row of a subsystem or a port link on its own? Effective ANA
 * decides the ANA group of every port and which forms a port is rendered
 * in, so only when it changes neither: a new subsystem without effective
 * ANA, or with it while the group is already out; a new link whose port
 * form is already rendered. Anything else (ANA may have flipped) needs a
 * full pass. */
bool tgt__ha_added_ok(const struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                      enum sm_table table, int64_t id);
/* Kind of the objects built from one row of table t (0 = ports: several),
 * and back: the table of a kind of one object per row, or -1. */
enum tgt_kind tgt__row_kind(enum sm_table t);
int tgt__row_kind_table(enum tgt_kind k);
int tgt__reconcile_rows(struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                        bool sweep, struct tgt_report *rep);
/* An incremental pass over the rows the changes name and their
 * dependants (tgt_delta.c). -EAGAIN, with nothing done, when it cannot
 * stand for a full pass (no clean last tree, another view, a change of
 * ports or, with failover licensed, of subsystems or port links, no
 * nvmet/); else the number of errors like tgt__reconcile_rows. */
int tgt__reconcile_delta(struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v,
                         const struct sm_change *ch, size_t n, struct tgt_report *rep);
struct nv *tgt__desired_nv(struct tgt *t, const struct tgt_rows *r, const struct tgt_view *v);
struct nv *tgt__sessions_rows(const char *debugfs, const struct tgt_rows *r);
/* The live objects (dirs and links, no attributes) under nvmet/. */
int tgt__list_live(struct tgt *t, struct ttree **out);

/* ---- one pass ------------------------------------------------------------ */

struct tgt_pass {
    struct tgt *t;
    struct tgt_report *rep;
    struct ttree *want, *last, *live; /* live: sweeps only */
    bool sweep, expect;               /* expect: a last tree to judge drift by */
    bool delta;                       /* want is only the changed part */
    bool verify;                      /* the rolling check: read every attribute */
    const struct tobj **gone;         /* to remove, borrowed from last or live */
    size_t ngone, capgone;
    struct ttree *ghosts;  /* copies of the removals that failed */
    unsigned fresh_errors; /* failures of objects that had not failed before */
};

/* Create/repair one desired object; remove one undesired object. */
void tgt__apply_obj(struct tgt_pass *p, struct tobj *o);
void tgt__remove_obj(struct tgt_pass *p, const struct tobj *r);
/* Add o to the objects the pass removes (0 or -ENOMEM). */
int tgt__pass_gone(struct tgt_pass *p, const struct tobj *o);
/* Apply, in stage order, the objects of want that differ from the last
 * tree (or all with sweep), then remove gone[] in reverse stage order. */
void tgt__pass_run(struct tgt_pass *p);
/* Free what a pass built (want, live, ghosts, gone) and detach its report
 * from the instance: the end of every kind of pass. */
void tgt__pass_release(struct tgt_pass *p);
/* 1 if nvmet/ (with subsystems/) exists, else 0; counted as stats. */
int tgt__root_present(struct tgt *t);

/* ---- the instance ------------------------------------------------------- */

struct tgt {
    char *root;        /* cfg->root */
    char *device_root; /* NULL = "/" */
    char *model;
    char *firmware;
    bool emulated;
    unsigned profile; /* TGT_P61 / TGT_P612 (emulated) */
    const struct tgt_ops *ops;
    struct ttree *last;     /* the last rendered tree (flags: what failed) */
    bool sweep_next;        /* an incremental pass failed: sweep next time */
    struct tgt_report *rep; /* the report of the running pass, or NULL */
    unsigned modprobed;     /* modules already tried (bit per module) */
    int modprobe_timeout_ms;
    struct nv *features; /* cached (real configfs) */
    struct tgt_stats stats;
    /* incremental passes: the last tree's objects by source row (open
     * addressing on (kind, src_id), linear probing), and what the last
     * full pass was made for */
    struct {
        struct tobj **o;
        size_t n, nslot;
    } src;
    struct tgt_view view; /* of the last pass */
    bool have_view;
    unsigned group;       /* ANA group of the last full build */
    bool unclean;         /* the last tree has failures, ghosts or builder
                           * problems: the next pass is a full one */
    size_t verify_next;   /* tgt_verify_slice: the next object to check */
};
/* The source index of t->last: rebuilt after a full pass, kept up to date
 * by incremental ones. Only objects of one row each (not ports, ANA
 * groups, referrals) are indexed. */
void tgt__src_rebuild(struct tgt *t);
struct tobj *tgt__src_find(const struct tgt *t, enum tgt_kind kind, int64_t id);
int tgt__src_put(struct tgt *t, struct tobj *o);
void tgt__src_del(struct tgt *t, const struct tobj *o); /* if indexed as o */

/* Thin wrappers over t->ops that count into t->rep (0 / -errno). */
int tgt__mkdir(struct tgt *t, const char *rel);
int tgt__rmdir(struct tgt *t, const char *rel);
ssize_t tgt__read(struct tgt *t, const char *rel, char *buf, size_t len);
int tgt__write(struct tgt *t, const char *rel, const char *value); /* writes "value\n" */
int tgt__symlink(struct tgt *t, const char *target_rel, const char *rel);
int tgt__unlink(struct tgt *t, const char *rel);
int tgt__readdir(struct tgt *t, const char *rel, struct tgt_dirent **out, size_t *n);
ssize_t tgt__readlink(struct tgt *t, const char *rel, char *buf, size_t len);
void tgt__dirents_free(struct tgt_dirent *d, size_t n);
/* readdir(3) of an absolute directory path into tgt_dirents. */
int tgt__plain_readdir(const char *dirpath, struct tgt_dirent **out, size_t *n);

/* "<root>/nvmet[/rel]" into buf; -ENAMETOOLONG if it does not fit. */
int tgt__path(const struct tgt *t, const char *rel, char *buf, size_t len);
/* "<device_root>/<path>" into buf. */
int tgt__device_path(const struct tgt *t, const char *path, char *buf, size_t len);
/* Run "modprobe <module>" (fork/exec, bounded by a timeout). */
int tgt__modprobe(const char *module, int timeout_ms);
/* "attr_ieee_oui (Linux 6.2 or later)" for a tgt_features() key. */
const char *tgt__feature_text(const char *key);
/* The running (or emulated) kernel has the feature; NULL key = true. */
bool tgt__has_feature(struct tgt *t, const char *key);
/* Append {"object": object, "error": text} to *problems. */
void tgt__problem(struct nv **problems, const char *object, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for an object the kernel refused: adds "errno" and "errname"
 * (errnum > 0) and, for an object made from a row (src_id >= 0), "table"
 * (service name) and "id": the row whose write the kernel refused
 * (tgt_report.problems). */
void tgt__problem_row(struct nv **problems, const char *object, enum tgt_kind kind,
                      int64_t src_id, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* ---- emulator ------------------------------------------------------------ */

int tgt__emu_profile(const char *name, unsigned *profile);
/* Create nvmet/{subsystems,ports,hosts} like loading the module. */
int tgt__emu_load(struct tgt *t);
/* Where the emulated kernel keeps state that is not in the tree: a file
 * <root>/.nvmet-emu/identified/<subnqn> means a host has identified that
 * subsystem's controller (identity attributes then return EINVAL). */
#define TGT_EMU_STATE_DIR ".nvmet-emu"

/* Emulated attribute files of one object type: used by tgt_emu.c. */
struct emu_file;
struct emu_ctx {
    struct tgt *t;
    const char *dir; /* the object's path relative to nvmet/ */
    const char *name;
};
typedef int (*emu_store_fn)(const struct emu_ctx *c, const char *in, char *out, size_t outlen);

#define EF_WO 0x1u        /* write-only (mode 0200): reads fail EACCES */
#define EF_PORT 0x2u      /* EACCES while the port has a subsystem linked */
#define EF_NS_BUSY 0x4u   /* EBUSY while the namespace is enabled */
#define EF_NS_INVAL 0x8u  /* EINVAL while the namespace is enabled */
#define EF_REF 0x10u      /* EACCES while the referral is enabled */
#define EF_IDENTITY 0x20u /* EINVAL once a host identified the controller */

struct emu_file {
    const char *name;
    unsigned profiles;
    const char *dflt; /* default contents (no newline); NULL: init() */
    void (*init)(const struct emu_ctx *c, char *out, size_t len);
    emu_store_fn store;
    unsigned flags;
};

enum emu_type {
    EN_ROOT,
    EN_SUBSYS_GRP,
    EN_SUBSYS,
    EN_NS_GRP,
    EN_NS,
    EN_AH_GRP,
    EN_PASSTHRU,
    EN_PORT_GRP,
    EN_PORT,
    EN_PS_GRP,
    EN_REF_GRP,
    EN_REF,
    EN_ANA_GRP,
    EN_ANA,
    EN_ANA1,
    EN_HOST_GRP,
    EN_HOST,
    EN__COUNT,
    EN_NONE = -1
};

const struct emu_file *tgt__emu_files(enum emu_type type);
/* Read a sibling attribute of the emulated tree (plain file). */
int tgt__emu_get(struct tgt *t, const char *dir, const char *name, char *buf, size_t len);
/* True if the port at dir has a subsystem linked. */
bool tgt__emu_port_linked(struct tgt *t, const char *dir);
/* A host has identified the subsystem at subsys_rel (identity locked). */
bool tgt__emu_identified(const struct tgt *t, const char *subsys_rel);
/* The kernel's kstrtoull(s, 0): 0, -EINVAL or -ERANGE (above max). */
int tgt__emu_kstrtoull(const char *s, unsigned long long max, unsigned long long *out);

#endif
