/* statemachine internals shared by sm*.c (not part of the public contract). */
#ifndef SM_INT_H
#define SM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nv.h"
#include "nv_err.h"
#include "sm.h"

#define SM_CMD_VERSION SM_CMD_VERSION_NEWEST /* sm_apply reads 1 and 2 */
#define SM_SNAP_VERSION 1
#define SM_SESSIONS 4096        /* remembered (client id, seq) results */
#define SM_SESSION_BUCKETS 8192 /* power of two */
#define SM_STR_MAX 1024         /* every string argument (TrueNAS's limit) */
/* Row ids and row versions count writes, so they stay far below this; a
 * snapshot that claims more is refused (then id + 1 cannot overflow). */
#define SM_ID_MAX ((int64_t)1 << 62)

struct sm_rows_tab {
    struct nv **row; /* ascending id */
    size_t n, cap;
};

struct sm_sess {
    char *client;
    int64_t seq;
    struct nv *res; /* {"ok": value} or {"err": error map} */
    int next;       /* hash chain, -1 = end */
    bool used;
};

/* Hash index of one unique text column (name, subnqn, hostnqn, ...): the
 * uniqueness checks cost O(1) instead of a scan of the table. */
struct sm_hnode {
    struct sm_hnode *next;
    int64_t id;
    char key[];
};
struct sm_hidx {
    struct sm_hnode **b;
    size_t nb, n;
};
#define SM_NIDX 7

struct sm_state {
    struct nv *global; /* NULL until nvmet.global.init (or the first write) */
    struct nv *cluster; /* {"nodes", "active", "failover"}; NULL = defaults */
    struct sm_rows_tab t[SM_TABLE_COUNT];
    int64_t next_id[SM_TABLE_COUNT]; /* ids are never reused: an old id never names a new row */
    struct sm_hidx idx[SM_NIDX];
    size_t ana_subsys; /* subsystems with "ana": true (kept by index_row) */
    bool restoring;
    uint64_t generation;
    struct sm_change *changes; /* since sm_changes_clear (sm.h) */
    size_t nchanges, capchanges;
    bool changes_full;
    struct sm_sess *sess; /* ring of SM_SESSIONS */
    size_t sess_head;     /* next slot to (re)use: the oldest when full */
    int bucket[SM_SESSION_BUCKETS];
    /* FILE backing files to remove (sm_removals): array of {"path",
     * "namespace_id"}, oldest first; NULL = none */
    struct nv *removals;
};

/* One execution of a write: run by sm_prepare on the leader (mutate false,
 * recording what the environment said; capture: the v2 op it makes) and,
 * for a v1 command, by sm_apply on every node (mutate true, replaying the
 * recording), so a v1 command that became invalid between prepare and
 * commit fails on apply with the same message it would have had. A v2
 * command is applied by sm_v2.c instead (sm.h: the log format). */
struct sm_ex {
    struct sm_state *s;
    bool mutate;
    const struct sm_env *env; /* prepare only */
    bool replay;
    struct nv *rnd;  /* array of hex strings (recorded or replayed) */
    size_t rnd_pos;
    struct nv *dev;  /* map path -> kind (recorded or replayed) */
    struct nv_err *err;
    struct nv *result; /* owned; set by a successful mutation */
    bool changed;
    /* v2 prepare: the write puts its normalized op payload here (sm.h) */
    bool capture;
    struct nv *op;
};

/* sm_prepare for one given command version (sm.h's sm_prepare writes the
 * newest); the tests make the entries of older formats with it. */
int sm__prepare_version(const struct sm_state *s, const char *method, const struct nv *params,
                        const struct sm_env *env, int version, struct nv **cmd,
                        struct nv_err *err);

/* ---- the v2 log format (sm_v2.c; the format itself: sm.h) ---- */
#define SM_AUTO "auto" /* a value apply allocates: row id, nsid, port index */
#define SM_ZERO_BASENQN "nqn.2011-06.com.truenas:uuid:00000000-0000-4000-8000-000000000000"
/* v2 prepare: the op of a successful create or update of table t; d the
 * validated input (its keys are "set", other changed columns "derived"),
 * n the new row. No-op unless x->capture on the leader. */
void sm__capture_write(struct sm_ex *x, enum sm_table t, bool create, int64_t id,
                       const struct nv *d, const struct nv *n);
/* v2 prepare: the op of a successful write that is not a row write. */
void sm__capture(struct sm_ex *x, struct nv *op); /* takes op */
/* Apply one v2 op (x->mutate, no environment). 0, or -1 with x->err. */
int sm__apply_v2(struct sm_ex *x, const char *method, const struct nv *op);
/* The column types of a stored row (sm.h), as sm_restore checks them. */
bool sm__row_shape_ok(enum sm_table t, const struct nv *row);
bool sm__global_shape_ok(const struct nv *g);
bool sm__cluster_node_shape_ok(const struct nv *node);
bool sm__failover_shape_ok(const struct nv *f);
/* The basenqn of a new cluster, drawn from env (malloc'd). */
char *sm__draw_basenqn(const struct sm_env *env);
/* A fresh global row (sm.h's defaults) with basenqn. */
struct nv *sm__global_new(const char *basenqn);

/* ---- rows and tables (sm.c) ---- */
const struct nv *sm__find(const struct sm_state *s, enum sm_table t, int64_t id);
size_t sm__index(const struct sm_state *s, enum sm_table t, int64_t id); /* n if absent */
int64_t sm__next_id(const struct sm_state *s, enum sm_table t);
void sm__insert(struct sm_state *s, enum sm_table t, struct nv *row); /* takes row */
void sm__replace(struct sm_state *s, enum sm_table t, struct nv *row); /* same id */
void sm__remove(struct sm_state *s, enum sm_table t, int64_t id);
/* The removal list (sm.h sm_removals): record a path (once, bounded) /
 * drop it because a namespace claims it again. */
void sm__removal_add(struct sm_state *s, const char *path, int64_t ns_id);
void sm__removal_drop(struct sm_state *s, const char *path);
/* Note a change that is not one row: the next render redoes everything. */
void sm__change_all(struct sm_state *s);
void sm__global_default(struct sm_state *s, const char *basenqn);
/* The row of table t whose unique column col equals val, other than id
 * self; NULL if none. Indexed columns are O(1), others a scan. */
const struct nv *sm__unique(const struct sm_state *s, enum sm_table t, const char *col,
                            const char *val, int64_t self);

/* ---- environment through the recording (sm_ops.c) ---- */
void sm__random(struct sm_ex *x, unsigned char *buf, size_t len);
/* -1 = not checked (no device_stat on the leader). */
int sm__devstat(struct sm_ex *x, const char *path);

/* ---- validation helpers (sm_check.c) ---- */
enum sm_ftype {
    SF_STR,    /* str <= 1024 */
    SF_NESTR,  /* non-empty str <= 1024 */
    SF_INT,
    SF_BOOL,
    SF_NQN,
    SF_ENUM,   /* choices: pairs {accepted spelling, canonical}, NULL-terminated */
    SF_TRSVCID, /* int or decimal string, 1024..65535 */
    SF_IP,      /* IPv4/IPv6 string ('' -> "addr_traddr is required") */
    SF_PATH,    /* NormalPath */
};
#define SF_REQ 0x1
#define SF_NULL 0x2
#define SF_MIN 0x4  /* >= min */
#define SF_MAXX 0x8 /* < max */
#define SF_MAXS 0x10 /* max string length = max */

struct sm_field {
    const char *name;
    enum sm_ftype type;
    unsigned flags;
    int64_t min, max;
    const char *const *choices;
};

/* Validate a model argument like pydantic (strict, extra forbidden): field
 * errors in field order, then unknown keys. Appends items to err with
 * attributes "<prefix>.<field>". Returns a map of the supplied keys with
 * normalized values (owned) or NULL when there were errors. */
struct nv *sm__model(const char *prefix, const struct sm_field *f, const struct nv *in,
                     struct nv_err *err);
/* Like sm__model for a value that must be a map at all (prefix message). */
bool sm__is_model(const char *attr, const struct nv *in, struct nv_err *err);
/* Strict int positional argument. */
bool sm__arg_int(const char *attr, const struct nv *v, int64_t *out, struct nv_err *err);

/* The syntax rules of TrueNAS's NQN type (the discovery NQN, the uuid form
 * or "nqn.YYYY-MM.<reverse domain>"; the caller checks the length 11..223):
 * 0 if valid, else -1 with the message, "Value error, " prefix included, in
 * msg (len bytes). */
int sm__nqn_check(const char *nqn, char *msg, size_t len);
bool sm__valid_nqn(const char *nqn);
/* 4 = IPv4, 6 = IPv6, 0 = neither. */
int sm__ip_family(const char *s);
/* Canonical lower-case 8-4-4-4-12 uuid into out[37]; false if not a UUID. */
bool sm__uuid_norm(const char *in, char out[37]);
void sm__uuid_format(const unsigned char b[16], char out[37]);
/* posix normpath (Python os.path.normpath) into a malloc'd string. */
char *sm__normpath(const char *p);
/* DH-CHAP key format check as TrueNAS does it ("DHHC-1:00:...:", or
 * 01/02/03 with a 32/48/64-byte secret); NULL or the message. */
const char *sm__dhchap_key_error(const char *key);
size_t sm__strchars(const char *s); /* code points of UTF-8 text */

/* ---- writes (sm_ops.c: shared steps and the dispatch; sm_subsys.c,
 * sm_namespace.c, sm_port.c, sm_host.c: one service each) ---- */
#define SM_ACTIVE_MSG "Cannot change %s on an active %s.  Disable first to allow change."
extern const char sm__hexd[];
extern const struct sm_field sm__force_fields[]; /* delete options {force} */
extern const struct sm_field sm__remove_fields[]; /* namespace.delete {remove} */

/* Run one write. Returns 0, or -1 with x->err set. */
int sm__exec(struct sm_ex *x, const char *method, const struct nv *params);

bool sm__failed(struct sm_ex *x);          /* x->err holds an error */
bool sm__running(const struct sm_state *s); /* global.enabled: "disable first" rules apply */
const char *sm__basenqn(const struct sm_state *s);
bool sm__same(const struct nv *a, const struct nv *b); /* nil == absent */
bool sm__env_flag(struct sm_ex *x, const char *key);   /* "#ha", "#rdma": recorded */
/* The same for a check added after entries were already logged: an entry
 * that recorded nothing under key was accepted by the leader of its time,
 * which did not check, so its replay must accept it too (true). */
bool sm__env_flag_since(struct sm_ex *x, const char *key);
/* "Too many arguments (expected max, found n)" */
bool sm__argc_ok(struct sm_ex *x, const struct nv *params, size_t max);
/* The row, or InstanceNotFound "<Verbose> <id> does not exist". */
const struct nv *sm__existing(struct sm_ex *x, enum sm_table t, int64_t id);
struct nv *sm__merged(const struct nv *old, const struct nv *data); /* owned */
/* {"subsys": 1} == {"subsys_id": 1}: alt moves to canon (d mutated). */
bool sm__alias(struct sm_ex *x, struct nv *d, const char *prefix, const char *canon,
               const char *alt, bool required);
void sm__finish(struct sm_ex *x, enum sm_table t, int64_t id); /* result: entry or true */
/* The new row of a create (base: the defaults, taken) or an update (the
 * stored row, *old) with d over it; NULL if the row to update is absent. */
struct nv *sm__new_row(struct sm_ex *x, enum sm_table t, bool create, int64_t id, struct nv *base,
                       const struct nv *d, const struct nv **old);
/* Store n (taken) under a new id (create) or id; d taken; -1 if x failed. */
int sm__commit_row(struct sm_ex *x, enum sm_table t, struct nv *d, struct nv *n, bool create,
                   int64_t id);
/* [data] / [id, data] of a create/update; in borrowed from params. */
bool sm__write_args(struct sm_ex *x, const struct nv *params, bool create, const char *pfx,
                    int64_t *id, const struct nv **in);
/* [id, options]: the options flag (force/remove) 0/1, or -1 on error. */
int sm__delete_args(struct sm_ex *x, const struct nv *params, const struct sm_field *opt,
                    int64_t *id);
void sm__first3(char *out, size_t len, const char *const *items, size_t n);
/* Rows of t whose column col == id (up to max of them into out, may be NULL). */
size_t sm__rows_with(const struct sm_state *s, enum sm_table t, const char *col, int64_t id,
                     const struct nv **out, size_t max);
void sm__remove_with(struct sm_state *s, enum sm_table t, const char *col, int64_t id);
int sm__cmp_i64(const void *a, const void *b);
/* "{what} used by 1 subsystem: a" / "... used by n subsystems: a,b,c,..." */
void sm__used_by(struct sm_ex *x, const char *attr, const char *what, enum sm_table link,
                 const char *col, int64_t id);

int sm__subsys_write(struct sm_ex *x, const struct nv *params, bool create);
int sm__subsys_delete(struct sm_ex *x, const struct nv *params);
int sm__ns_write(struct sm_ex *x, const struct nv *params, bool create);
int sm__ns_delete(struct sm_ex *x, const struct nv *params);
int sm__port_create(struct sm_ex *x, const struct nv *params);
int sm__port_update(struct sm_ex *x, const struct nv *params);
int sm__port_delete(struct sm_ex *x, const struct nv *params);
int sm__host_write(struct sm_ex *x, const struct nv *params, bool create);
int sm__host_delete(struct sm_ex *x, const struct nv *params);
int sm__link_write(struct sm_ex *x, const struct nv *params, enum sm_table t, bool create);
/* The checks of a host_subsys / port_subsys row n (v1 and v2 apply: one
 * rule, one message): the host or port and the subsystem exist, and no
 * other row (id != self) links the same pair. Errors go to x->err. */
void sm__link_checks(struct sm_ex *x, enum sm_table t, const char *pfx, const struct nv *n,
                     int64_t self);
int sm__link_delete(struct sm_ex *x, const struct nv *params, enum sm_table t);

/* config.restore (sm_config.c) */
int sm__config_restore(struct sm_ex *x, const struct nv *params);
/* The rules v1 and v2 apply share (one rule, one message each); errors
 * go to x->err, in the order the callers have always added them. */
/* The nsid of namespace row n (if an int) is not used by another row
 * (id != self) of the same subsystem. */
void sm__nsid_unique_check(struct sm_ex *x, const char *pfx, const struct nv *n, int64_t self);
/* The lowest port index in 1..31999 no port uses; -1 if none is free. */
int64_t sm__free_port_index(const struct sm_state *s);
/* Insert or replace cluster node d (a copy) in the nodes list, ascending
 * ids; marks x changed with the node as the result. */
void sm__cluster_put_node(struct sm_ex *x, const struct nv *d);
/* config.restore fills an empty cluster only: 0, or -1 with the error. */
int sm__restore_target_empty(struct sm_ex *x);

/* ---- cluster facts (sm_cluster.c) ---- */
struct nv *sm__cluster_default(void);
bool sm__cluster_is_write(const char *method);
/* 0 / -1 like sm__exec; 1 = not a cluster method. */
int sm__cluster_exec(struct sm_ex *x, const char *method, const struct nv *params);

/* ---- reads (sm_read.c) ---- */
struct nv *sm__subsys_entry(const struct sm_state *s, const struct nv *row, bool verbose);

#endif
