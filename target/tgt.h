/* target: renders the committed configuration into the kernel's nvmet
 * configfs tree (drivers/nvme/target/configfs.c), the way TrueNAS
 * middleware renders its nvmet configuration.
 *
 * Desired tree = f(state rows, this node's view). Reconcile, never rebuild:
 * create top-down, delete bottom-up, write only what differs, follow the
 * kernel's ordering rules. The renderer owns <root>/nvmet completely.
 *
 * Two backends behind one interface, chosen by statfs on <root>:
 *   real configfs (CONFIGFS_MAGIC): plain syscalls, the kernel enforces;
 *   emulated (any other directory): the same operations on a plain tree,
 *   where the backend creates the attribute files a real mkdir would create
 *   and refuses what the kernel refuses (EACCES, EBUSY, EINVAL, ENOTEMPTY,
 *   EPERM, EEXIST for the same wrong steps). */
#ifndef TGT_H
#define TGT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nv;
struct nv_err;
struct sm_changes;
struct sm_state;
struct tgt;

struct tgt_config {
    const char *root;        /* directory that holds nvmet/ ("/sys/kernel/config") */
    const char *device_root; /* prefix for device/file lookups and FILE
                              * creation (emulation and tests); NULL = "/" */
    const char *model;       /* attr_model; NULL = "nvmet-ha" */
    const char *firmware;    /* attr_firmware; NULL = the project version */
    bool emulate;               /* root is a plain directory on purpose:
                                 * emulate the kernel there (tests, demos).
                                 * Without it a root that is not configfs
                                 * fails with -EMEDIUMTYPE, and with it a
                                 * real configfs fails too */
    const char *emulate_kernel; /* emulated backend's kernel profile:
                                 * "6.12" (default), "6.13" (with
                                 * resv_enable) or "6.1" (no
                                 * attr_ieee_oui/attr_firmware, no dhchap_*,
                                 * no loop, no resv_enable) */
};

/* How this node renders: what failover/ decided for it (the one role enum
 * lives there; target/ sees only what each role means for the tree).
 *   empty     an empty nvmet/ (a witness never runs the target);
 *   active    this node owns the data path: it links the ports that are
 *             not per-node ANA ports (IP takeover: the VIP ports), enables
 *             the namespaces and reports its ANA group optimized; a
 *             standby keeps the configuration with those unlinked, the
 *             namespaces of subsystems without ANA enable=0 (with ANA
 *             they stay enabled: the inaccessible group refuses I/O) and
 *             its ANA group inaccessible;
 *   ha        failover is licensed (at least two data nodes);
 *   node_id   this node's id (its entry in a VIP's node_addresses);
 *   node_slot ANA mode: this node's 1-based rank among the data nodes
 *             (ANA group node_slot + 1, its controller-id range), 0 = no
 *             split; slot_ids[0..n_slots-1] are the data nodes by rank
 *             (each ANA port refers hosts to the same port on the
 *             others, at their node_addresses). */
#define TGT_MAX_SLOTS 8
struct tgt_view {
    bool empty;
    bool active;
    bool ha;
    uint64_t node_id;
    unsigned node_slot;
    unsigned n_slots;
    uint64_t slot_ids[TGT_MAX_SLOTS];
};

/* Open the backend (cfg and its strings are copied). Real configfs:
 * creates nothing until the first reconcile (which loads nvmet when the
 * desired tree is not empty). Emulated: creates <root>/nvmet/{subsystems,
 * ports,hosts} if missing, like loading the module. The emulated kernel
 * keeps the facts that are not in the tree under <root>/.nvmet-emu/: a file
 * <root>/.nvmet-emu/identified/<subnqn> means a host has identified that
 * controller, so its identity attributes (attr_serial, attr_model,
 * attr_firmware, attr_ieee_oui, attr_version) return EINVAL like the
 * kernel's. A file <root>/.nvmet-emu/refuse/<attribute> holding an errno
 * name ("EINVAL", "ENOSPC", "EBUSY", ...) or number makes every write of
 * that attribute fail with it, as the kernel refuses a value it cannot
 * take (tests of how a refusal is reported; remove the file to let the
 * next pass repair). Returns 0 or -errno with err filled. */
int tgt_open(const struct tgt_config *cfg, struct tgt **out, struct nv_err *err);
void tgt_close(struct tgt *t);
bool tgt_is_emulated(const struct tgt *t);

/* Features of the running kernel (probed, or the emulated profile):
 * {"kernel": "6.12"|"real", "ieee_oui": bool, "firmware": bool,
 *  "dhchap": bool, "loop": bool, "resv_enable": bool, "missing": [str]}
 * "missing" explains what is absent in words (for logs / cluster.status). */
struct nv *tgt_features(struct tgt *t);

struct tgt_report {
    unsigned mkdirs, rmdirs, writes, links, unlinks;
    unsigned drift;      /* objects/attributes repaired that we had not changed */
    unsigned errors;
    /* owned array of {"object": path, "error": text}, or NULL; a refusal
     * of the kernel adds "errno" and "errname", and an object made from
     * a row adds "table" (service name) and "id": the row the kernel
     * refused (what a write's reply and cluster.status report) */
    struct nv *problems;
    unsigned reads;      /* attribute reads, readdirs and readlinks of the pass */
    unsigned recreated;  /* subsystems rmdir'ed and made again (identity locked) */
    struct nv *notes;    /* owned array of {"object", "note"} for things done
                          * that an operator should know (recreations), or NULL */
    bool swept;          /* the pass read the whole live tree */
};
/* Calls the renderer made into configfs since tgt_open, by kind (each one
 * is one syscall on a real configfs; stat counts the checks that nvmet/
 * exists), and the passes: the cost of rendering, readable at run time. */
struct tgt_stats {
    uint64_t mkdir, rmdir, read, write, symlink, unlink, readdir, readlink, stat;
    uint64_t passes, full_passes; /* full: built the whole desired tree */
};
void tgt_stats(const struct tgt *t, struct tgt_stats *out);

/* Frees problems and notes and zeroes the counters. */
void tgt_report_clear(struct tgt_report *r);

/* Bring <root>/nvmet to the desired tree for (state, view).
 * sweep=false: builds the whole desired tree, compares it with the last
 *   rendered tree and touches only what changed (after applies,
 *   tgt_reconcile_changes below is cheaper: it builds only what changed);
 * sweep=true: reads the whole live tree and repairs every difference
 *   (after a restart, periodically, and to repair drift).
 * global.enabled=false (or view->empty) desires an empty nvmet/ tree.
 * Errors on one object do not stop the others: they are listed in
 * rep->problems (messages like "render port 1: write addr_traddr:
 * Permission denied") and the function returns the number of errors
 * (0 = the live tree equals the desired tree). */
int tgt_reconcile(struct tgt *t, const struct sm_state *s, const struct tgt_view *v, bool sweep,
                  struct tgt_report *rep);
/* The same after writes: ch lists the rows the applies changed since the
 * last pass (sm_changes). Renders only those rows and what depends on
 * them when it can stand for a full pass (the same configfs result), else
 * a full, non-sweeping pass (ch NULL or ch->full, a change of ports or of
 * the global row, another view, the failures of an earlier pass to
 * retry): see tgt_delta.c. The caller clears the list afterwards. */
int tgt_reconcile_changes(struct tgt *t, const struct sm_state *s, const struct tgt_view *v,
                          const struct sm_changes *ch, struct tgt_report *rep);
/* The periodic check in slices (tgt_verify.c): re-applies up to max
 * objects of the last rendered tree against the live one, from where the
 * previous slice stopped, repairing changed attributes and links (drift in
 * rep). *round_done is set when the slice reached the end of the tree.
 * Returns the errors of the slice (>= 0); -ESTALE when it found something
 * only a sweep repairs (a vanished directory, an object made by hand): run
 * tgt_reconcile(sweep=true) then; -EAGAIN when there is no clean last tree
 * to check against (no pass yet, failures a full pass retries). */
int tgt_verify_slice(struct tgt *t, size_t max, struct tgt_report *rep, bool *round_done);
/* The failover guardian released this node's hold on configfs behind the
 * renderer's back (it unlinks the subsystems of ports below 5000 and sets
 * this node's ANA groups inaccessible, knowing nothing else): the port
 * links and ANA groups of the last tree are marked unrendered, so the
 * next pass (a full one, not a sweep) puts exactly those back. */
void tgt_mark_released(struct tgt *t);
/* Objects of the last rendered tree (a slice size is a share of it). */
size_t tgt_rendered_objects(const struct tgt *t);
/* Details of the contract:
 * - rep is cleared first (tgt_report_clear) and then filled;
 * - the first pass of an instance is always a sweep, and so is the pass
 *   after an incremental pass in which an object failed that had not
 *   failed before; an object whose rendering failed is retried by every
 *   later pass (incremental ones included) until it succeeds, so the
 *   problems of every pass list all the current problems;
 * - drift counts differences the previous pass of this instance did not
 *   leave behind (a sweep right after tgt_open has no expectation and
 *   counts none);
 * - attributes the kernel lacks are left out silently where they are our
 *   own defaults (attr_model, attr_firmware, resv_enable) and reported as
 *   problems where the configuration asks for them (attr_ieee_oui,
 *   dhchap_* keys, param_max_queue_size). */

/* The desired tree as a sorted nv map {relative path: value} (directories
 * map to true, symlinks to "-> target basename", attributes to their
 * value without the trailing newline), and the same for the live tree, so
 * tests and cluster.status can compare. Owned by the caller.
 * The desired map leaves out attributes the running kernel lacks. The
 * live map lists every object dir and link under nvmet/{subsystems,ports,
 * hosts} (not the default ana group 1) and, per object, the attributes the
 * last pass rendered for it (all the attributes the renderer manages for
 * objects it does not know), trimmed as compared. After a pass without
 * errors the two maps are equal. */
struct nv *tgt_desired_tree(struct tgt *t, const struct sm_state *s, const struct tgt_view *v);
struct nv *tgt_live_tree(struct tgt *t);
/* A tree map of the two above as nvmetcli's saveconfig.json document
 * (owned): {"hosts": [{"nqn", "dhchap"}], "subsystems": [{"nqn", "attr",
 * "allowed_hosts", "namespaces": [{"nsid", "device", "enable",
 * "ana_grpid"}]}], "ports": [{"portid", "addr", "param", "subsystems",
 * "ana_groups", "referrals"}]}, values as nvmetcli writes them. */
struct nv *tgt_nvmetcli(const struct nv *tree);

/* nvmet.global.sessions source: controllers from debugfs
 * (<debugfs>/nvmet/<subnqn>/ctrl<N>/{hostnqn,host_traddr,port}); [] when
 * debugfs has no nvmet dir. Items {host_traddr, hostnqn, subsys_id,
 * port_id, ctrl}. debugfs NULL = "/sys/kernel/debug". */
struct nv *tgt_sessions(const char *debugfs, const struct sm_state *s);

/* ---- DH-CHAP secrets (DHHC-1, NVMe Base spec) ----------------------- */

/* nvmet.host.generate_key(dhchap_hash, nqn): random secret of the hash's
 * length (32/48/64), transformed HMAC_H(secret, nqn || "NVMe-over-Fabrics")
 * (the step libnvme's nvme_gen_dhchap_key does), then
 * "DHHC-1:0h:" + base64(key || crc32_le(key)) + ":". hash: "SHA-256",
 * "SHA-384", "SHA-512". nqn NULL: the local host NQN (/etc/nvme/hostnqn),
 * else a generated one. random: NULL = getrandom(2). Returns 0 or -errno
 * with err filled. out must hold 128 bytes. */
int tgt_dhchap_generate(const char *hash, const char *nqn,
                        void (*random)(void *ctx, void *buf, size_t len), void *rctx,
                        char *out, size_t outlen, struct nv_err *err);
/* Same from a given secret (known-answer tests). hmac_id 0..3 is the XX
 * of "DHHC-1:XX:"; len must be 32, 48 or 64. With nqn non-NULL and
 * hmac_id > 0 the secret is transformed first (HMAC with the hash of
 * hmac_id, the output has that hash's length); with nqn NULL the secret is
 * stored as given (the nvme-cli 3.x form). Returns the
 * string length or -EINVAL / -ENOSPC / -EIO. */
int tgt_dhchap_format(int hmac_id, const unsigned char *secret, size_t len, const char *nqn,
                      char *out, size_t outlen);
/* Full check of a DHHC-1 string (format, base64, length, CRC). 0 or
 * -EINVAL with a message in msg. */
int tgt_dhchap_check(const char *key, char *msg, size_t msglen);

/* ---- FILE namespaces ---------------------------------------------- */

/* Remove a FILE namespace's backing file <device_root><path> (after
 * namespace.delete {"remove": true}). path must be absolute; a missing
 * file is not an error; anything but a regular file is -EINVAL.
 * Returns 0 or -errno. */
int tgt_remove_backing_file(struct tgt *t, const char *path);

#endif
