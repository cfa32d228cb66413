/* statemachine: the replicated nvmet configuration (TrueNAS's nvmet.*
 * model with the additions of README "The API"). Deterministic core: no
 * I/O, no clock, no randomness. Time and random values come in through
 * struct sm_env on the leader (sm_prepare) and travel inside the command,
 * so every node applies identical bytes and reaches the same state.
 *
 * Flow of one write:
 *   leader:   sm_prepare(state, method, params, env) -> command (nv map)
 *             sm_command_encode(command, client_id, seq) -> bytes -> Raft
 *   all nodes: sm_apply(state, bytes) -> result (entry or error), same on
 *             every node; a retried (client_id, seq) returns the first result.
 *
 * Reads: sm_entries() builds the query-shaped entries of one table; the
 * query filters/options engine lives in rpc/.
 *
 * DESIGN: the log format. A Raft log entry holds commands, each one
 * msgpack map (sm_command_encode). Every node applies the log from its
 * last snapshot, with whatever release it runs, so a command must mean
 * the same to every release: the format is versioned by "v" and a
 * version, once released, is frozen.
 *
 *   common keys:  v (int), m (method), c/s (client id, seq: the session
 *                 key; absent = no session)
 *   v1  p: the client's raw params, r: the leader's random draws (array of
 *       hex strings, in draw order), d: map of device path -> sm_dev_kind
 *       and the leader's flags ("#ha", "#rdma", "#basenqn").
 *       Apply RE-RUNS the whole validation of the method, replaying r and
 *       d. Written by releases before v2; still applied (sm_ops.c and the
 *       per-table files: that code is the v1 format now, so a change to a
 *       default, a rule, a message or the order of draws there changes
 *       how old logs replay; tests/unit/fixtures/sm_v1_*.bin catch it).
 *   v2  o: the op payload, every value resolved by sm_prepare (defaults,
 *       generated serial/uuid/nguid, normalized enum spellings and paths,
 *       derived subnqn/adrfam/trsvcid, the environment's answers);
 *       g: the basenqn the leader drew when the cluster had no global row
 *       yet (the first write of a cluster).
 *         <table>.create  {row: the stored row (sm.h's columns) with
 *                          id "auto"; a namespace's nsid and a port's
 *                          index may be "auto"}
 *         <table>.update  {id, set: the columns the client gave (normalized),
 *                          derived: other columns prepare changed (a
 *                          regenerated serial, a port's adrfam)} merged onto
 *                          the CURRENT row: concurrent updates of different
 *                          columns both survive
 *         <table>.delete  {id, force: bool} ({id, remove} for a namespace,
 *                          {id} for host_subsys/port_subsys)
 *         nvmet.global.init    {}
 *         nvmet.global.update  {set: normalized columns}
 *         cluster.node.register    {node: {id, kind, raft, rpc, members}}
 *         cluster.node.unregister  {id}
 *         failover.activate        {node, term}
 *         failover.update          {set: normalized settings, vips whole}
 *         config.restore  {config: config.save of what the creates made on
 *                          the leader (ids, indexes, generated values)}
 *       Apply (sm_v2.c) allocates with fixed rules that are part of v2: a
 *       new row's id is the table's next id (never reused; after a
 *       config.restore, after the restored table's last row); an "auto"
 *       nsid is the lowest unused in 1..65534 of the subsystem; an "auto"
 *       index the lowest unused in 1..31999; a cluster without a global
 *       row gets one with g (or SM_ZERO_BASENQN). It re-checks only the
 *       invariants that can race between prepare and commit (uniqueness,
 *       existence of the row and of referenced rows, "disable first",
 *       dependants of a delete without force, a host's ctrl key without a
 *       key, a FILE namespace shrinking, a node's Raft address, an older
 *       failover term, config.restore into a non-empty cluster) with
 *       prepare's attributes and messages. It never re-runs field
 *       validation, never draws randomness, never consults an environment.
 *       Its golden log: tests/unit/fixtures/sm_v2_*.bin (frozen from the
 *       first release that writes v2; test_sm_golden replays both).
 *
 * Upgrade rule: any change of what an entry means (a new key apply reads,
 * a new allocation rule, a different payload) is a new version, v3, with
 * its own apply path; sm_prepare writes the newest, sm_apply keeps
 * applying every older version forever (a log may start with entries of
 * the first release), and a fixture of each frozen version keeps its
 * replay honest. New defaults and validation rules need no new version:
 * v2 entries carry their values, so only the leader's prepare changes. A
 * snapshot (sm_snapshot, own "v") carries the state, never commands: it
 * is unaffected by the command format. A leader writes a new version only
 * once every node applies it (struct sm_env's cmd_version holds an older
 * one during a rolling upgrade).
 *
 * Stored rows (what sm_row() returns; the renderer in target/ reads these).
 * Keys are always present; "null" means an NV_NIL value.
 *   global:      id(1) basenqn(str) kernel(bool) ana(bool) rdma(bool)
 *                xport_referral(bool) enabled(bool)
 *   subsys:      id name subnqn serial allow_any_host(bool) pi_enable(bool|null)
 *                qid_max(int|null) ieee_oui(str|null) ana(bool|null)
 *   namespace:   id nsid subsys_id device_type("ZVOL"|"FILE"|"BLOCK")
 *                device_path(str: "zvol/pool/vol" for ZVOL, absolute path
 *                otherwise) dataset(null) relative_path(null)
 *                filesize(int|null) device_uuid(str) device_nguid(str) enabled(bool)
 *   port:        id index addr_trtype("TCP"|"RDMA"|"FC"|"LOOP") addr_trsvcid(int|null)
 *                addr_traddr(str) addr_adrfam("IPV4"|"IPV6"|"FC"|"LOOP")
 *                inline_data_size(int|null) max_queue_size(int|null)
 *                pi_enable(bool|null) enabled(bool)
 *   host:        id hostnqn description(str) dhchap_key(str|null)
 *                dhchap_ctrl_key(str|null) dhchap_dhgroup(null|"2048-BIT"..)
 *                dhchap_hash("SHA-256"|"SHA-384"|"SHA-512")
 *   host_subsys: id host_id subsys_id
 *   port_subsys: id port_id subsys_id
 * Rows of a table are kept in ascending id order. */
#ifndef SM_H
#define SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nv;
struct nv_err;

enum sm_table {
    SM_SUBSYS,
    SM_NAMESPACE,
    SM_PORT,
    SM_HOST,
    SM_HOST_SUBSYS,
    SM_PORT_SUBSYS,
    SM_TABLE_COUNT
};

/* "nvmet.subsys", "nvmet.namespace", ... and TrueNAS's verbose
 * names "NVMetSubsys", ... (for "NVMetSubsys 7 does not exist"). */
const char *sm_table_service(enum sm_table t);
const char *sm_table_verbose(enum sm_table t);
/* Table of a service name ("nvmet.port" -> SM_PORT); -1 if none. */
int sm_table_of(const char *service);

struct sm_state;

struct sm_state *sm_new(void);
void sm_free(struct sm_state *s);

/* ---- leader side ---------------------------------------------------- */

/* What a device path is on the node that checks it (the leader). */
enum sm_dev_kind {
    SM_DEV_BLOCK,     /* a block device */
    SM_DEV_FILE,      /* a regular file */
    SM_DEV_DIR,       /* a directory */
    SM_DEV_MISSING,   /* does not exist, its parent directory does */
    SM_DEV_NOPARENT,  /* neither it nor its parent directory exists */
    SM_DEV_OTHER      /* exists but is something else */
};

/* The leader's environment. Only sm_prepare uses it; apply never does. */
struct sm_env {
    /* Fill buf with len random bytes (serials, uuids, nguids). */
    void (*random)(void *ctx, void *buf, size_t len);
    /* Classify an OS path ("/dev/zvol/tank/v", "/srv/f.img"). The
     * statemachine maps "zvol/x" to "/dev/zvol/x" (spaces become '+')
     * before asking. NULL = no device checks (everything is usable). */
    enum sm_dev_kind (*device_stat)(void *ctx, const char *path);
    /* HA features (ANA, subsys.ana) are allowed: the cluster has >= 2 data
     * nodes. Single node: "This platform does not support ..." errors. */
    bool ha;
    /* An RDMA-capable NIC exists (gates global.update {"rdma": true}). */
    bool rdma_capable;
    void *ctx;
    /* The command version sm_prepare writes (DESIGN above); 0 = the
     * newest. A rolling upgrade from a release that applies only v1 keeps
     * writing 1 until every node runs a release that applies v2: a node
     * refuses a version it does not know, and would fall behind. */
    int cmd_version;
};
/* The newest command version sm_prepare writes (cmd_version 0). */
#define SM_CMD_VERSION_NEWEST 2

/* Turn a client call into a normalized command, validating everything the
 * TrueNAS validates (argument count and types, strict typing, unknown
 * keys, defaults, NQN rules, uniqueness, existence, the "disable first"
 * rules, device checks) with its exact attributes and messages.
 *
 * method: "nvmet.global.update" or "nvmet.<table>.{create,update,delete}".
 * params: the positional argument array (borrowed; NULL means []).
 * On success returns 0 and *cmd (owned by the caller). On failure returns a
 * negative errno and fills err (INVALID_PARAMS for validation, CALL for the
 * TrueNAS's CallErrors); -ENOENT with NV_E_NO_METHOD if method is not a
 * statemachine write. */
int sm_prepare(const struct sm_state *s, const char *method, const struct nv *params,
               const struct sm_env *env, struct nv **cmd, struct nv_err *err);

/* True if method is a statemachine write (sm_prepare handles it). */
bool sm_is_write(const char *method);

/* Versioned msgpack encoding of one command (v2, see DESIGN above) plus
 * its client session key.
 * client_id NULL (or seq < 0) = no session: a retry is not deduplicated.
 * *buf is malloc'd (caller frees). Not padded: consensus pads. */
int sm_command_encode(const struct nv *cmd, const char *client_id, int64_t seq, char **buf,
                      size_t *len);

/* ---- every node --------------------------------------------------- */

struct sm_result {
    struct nv *value; /* the call's result on success (owned), else NULL */
    struct nv_err *err; /* owned; NULL on success */
    bool duplicate;   /* answered from the client-session table */
};
void sm_result_free(struct sm_result *r); /* frees r and its contents */

/* Apply one committed command (v1 or v2, see DESIGN above). Never fails
 * halfway: it re-checks against the current state (v2: the race
 * invariants only; v1: the whole validation, replayed), then mutates, then records the result (which is also
 * remembered under (client_id, seq) in the bounded session table).
 * Returns the result (owned by the caller; never NULL except when out of
 * memory). Undecodable bytes give an error result and change nothing. */
struct sm_result *sm_apply(struct sm_state *s, const void *buf, size_t len);

/* The global row exists (nvmet.global.init or any write was applied). */
bool sm_initialized(const struct sm_state *s);

/* The remembered result of an applied (client_id, seq) write, or NULL.
 * The leader answers a retry from here before validating it again (the
 * retry of a create would otherwise fail as a duplicate). Owned. */
struct sm_result *sm_session_result(const struct sm_state *s, const char *client_id, int64_t seq);

/* Incremented by every apply that changed the configuration. */
uint64_t sm_generation(const struct sm_state *s);
/* Subsystems whose "ana" is true (O(1): failover asks after every apply). */
size_t sm_ana_subsystems(const struct sm_state *s);

/* ---- change list ------------------------------------------------------ */

/* What the applies changed since the last sm_changes_clear, row by row:
 * the renderer redoes exactly these rows and what depends on them instead
 * of every row. A change that is not one row (the global row, the cluster
 * facts, a snapshot restore) or a list longer than SM_CHANGES_MAX sets
 * full: everything may have changed. A row changed twice is listed twice
 * (in order); the list says which rows, the state says what they are now. */
enum sm_change_op { SM_ADDED, SM_MODIFIED, SM_REMOVED };
struct sm_change {
    enum sm_table table;
    int64_t id;
    enum sm_change_op op;
};
struct sm_changes {
    const struct sm_change *c; /* borrowed: valid until the next apply/clear */
    size_t n;
    bool full;
};
#define SM_CHANGES_MAX 65536
void sm_changes(const struct sm_state *s, struct sm_changes *out);
void sm_changes_clear(struct sm_state *s);

/* ---- FILE backing files to remove ------------------------------------ */

/* namespace.delete {"remove": true} of a FILE namespace is committed with
 * the removal of its backing file: the delete's apply records the path
 * here, so every data node removes the file as part of rendering (also
 * when the node that answered the delete crashed right after the commit).
 * A namespace created or updated with that device_path drops it again
 * (the path is in use). Bounded: past SM_REMOVALS_MAX entries the oldest
 * is dropped. A listed path that no longer exists is harmless (removing
 * it again is a no-op). Array of {"path": str, "namespace_id": int},
 * oldest first (borrowed, valid until the next apply/restore), or NULL. */
#define SM_REMOVALS_MAX 1024
const struct nv *sm_removals(const struct sm_state *s);

/* ---- snapshot ------------------------------------------------------ */

/* The whole state (tables, id counters, sessions, removals) as one
 * msgpack document (a snapshot without "removals" restores with none).
 * *buf malloc'd. sm_restore replaces s's contents; on error s is unchanged. */
int sm_snapshot(const struct sm_state *s, char **buf, size_t *len);
int sm_restore(struct sm_state *s, const void *buf, size_t len, struct nv_err *err);

/* ---- reads --------------------------------------------------------- */

/* All entries of a table in query shape, ascending id (owned array).
 * extra: the query's options.extra (borrowed, may be NULL): "verbose" adds
 * hosts/namespaces/ports id lists to subsys entries (also nested ones);
 * "retrieve_locked_info": false makes namespace "locked" null. */
struct nv *sm_entries(const struct sm_state *s, enum sm_table t, const struct nv *extra);
/* One entry by id in query shape (owned), NULL if absent. */
struct nv *sm_entry(const struct sm_state *s, enum sm_table t, int64_t id, const struct nv *extra);
/* The fields that hold secrets, wherever they appear in an entry or a
 * configuration (DH-CHAP keys; the fence command, which commonly carries
 * a BMC password): shown masked to callers without the admin role, and
 * never echoed in an error message or a log line. */
bool sm_field_secret(const char *name);
#define SM_SECRET_MASK "********"
/* The global config entry (owned): id basenqn kernel ana rdma xport_referral enabled. */
struct nv *sm_global_entry(const struct sm_state *s);

/* Stored rows (borrowed, valid until the next sm_apply/sm_restore). */
const struct nv *sm_global_row(const struct sm_state *s);
size_t sm_rows(const struct sm_state *s, enum sm_table t);
const struct nv *sm_row(const struct sm_state *s, enum sm_table t, size_t i);
const struct nv *sm_row_by_id(const struct sm_state *s, enum sm_table t, int64_t id);

/* ---- cluster facts ------------------------------------------------ */
/* Writes (through sm_prepare/sm_apply like the nvmet ones):
 *   cluster.node.register [{"id", "kind": "data"|"witness", "raft", "rpc"}]
 *   cluster.node.unregister [id]
 *   failover.activate [{"node", "term"}]   (node 0 = nobody; older terms refused)
 *   failover.update [{takeover_delay_ms, fence_command, announce_count,
 *                     announce_interval_ms, vips: [{address, prefix, interface,
 *                     node_addresses: {"1": addr, ...}}]}]
 * Reads: */
/* {"nodes": [{id, kind, raft, rpc}...] (ascending id), "active": {node, term}|nil,
 *  "failover": {...}} (borrowed). */
const struct nv *sm_cluster(const struct sm_state *s);
const struct nv *sm_cluster_node(const struct sm_state *s, uint64_t id); /* NULL if unknown */
uint64_t sm_active_node(const struct sm_state *s, uint64_t *term);     /* 0 = none */
struct nv *sm_failover_config(const struct sm_state *s);               /* owned copy */

/* ---- DH-CHAP key format (shared by validation and target/) ---------- */

/* Decode standard base64 (RFC 4648, '=' padding). Returns the decoded
 * length, or -1 on invalid input. out must hold len*3/4+3 bytes. */
long sm_base64_decode(const char *in, size_t len, unsigned char *out);

/* config.save: the whole replicated configuration (global row, failover
 * settings, every row of every table, ids kept; not the node registry or
 * sessions) as one document, owned. The write "config.restore" [doc]
 * fills an empty cluster with such a document (sm_config.c). */
struct nv *sm_config_save(const struct sm_state *s);

#endif
