/* Shared helpers of target/'s unit tests: a temp configfs root and device
 * root (mkdtemp), file checks, and plain rows in the shapes of sm.h for
 * driving the renderer before (and besides) the statemachine. */
#ifndef TEST_TGT_UTIL_H
#define TEST_TGT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sm.h"
#include "tgt.h"
#include "tgt_int.h"

struct nv;

/* Rows of every table as nv maps (owned), ids ascending, and the failover
 * VIPs (sm_cluster's "failover" -> "vips"). */
struct rowset {
    struct nv *global;
    struct nv *vips;
    struct nv *tab[SM_TABLE_COUNT];
    int64_t next_id[SM_TABLE_COUNT];
    const struct nv **ptrs[SM_TABLE_COUNT];
    struct tgt_rows r;
};

void rs_init(struct rowset *rs, bool enabled);
void rs_free(struct rowset *rs);
/* The rows to hand to tgt__reconcile_rows (valid until the next rs_ call). */
const struct tgt_rows *rs_rows(struct rowset *rs);
struct nv *rs_get(struct rowset *rs, enum sm_table t, int64_t id); /* mutable row */
void rs_del(struct rowset *rs, enum sm_table t, int64_t id);
int64_t rs_subsys(struct rowset *rs, const char *subnqn, const char *serial);
int64_t rs_ns(struct rowset *rs, int64_t subsys_id, int64_t nsid, const char *type,
              const char *path, bool enabled);
int64_t rs_port(struct rowset *rs, int64_t index, const char *trtype, const char *traddr,
                int64_t trsvcid, const char *adrfam);
int64_t rs_host(struct rowset *rs, const char *hostnqn);
int64_t rs_host_subsys(struct rowset *rs, int64_t host_id, int64_t subsys_id);
int64_t rs_port_subsys(struct rowset *rs, int64_t port_id, int64_t subsys_id);
/* A failover VIP: address, then pairs of (node id, that node's own
 * address) as strings, NULL-terminated:
 * rs_vip(rs, "198.51.100.10", "1", "10.0.0.1", "2", "10.0.0.2", NULL). */
void rs_vip(struct rowset *rs, const char *address, ...);

/* A temp dir with configfs/ (the emulated root) and root/ (device_root). */
struct fx {
    char dir[256];
    char root[300];
    char devroot[300];
    struct tgt *t;
};
void fx_setup(struct fx *f, const char *profile);
void fx_teardown(struct fx *f);
/* Create <devroot>/<path> as an empty regular file (parents made). */
void fx_device(struct fx *f, const char *path);

/* <root>/nvmet/<rel> contents without trailing newline/spaces; NULL if
 * missing. Caller frees. */
char *fx_read(struct fx *f, const char *rel);
void fx_expect(struct fx *f, const char *rel, const char *value);
void fx_expect_link(struct fx *f, const char *rel, const char *target_rel);
bool fx_exists(struct fx *f, const char *rel);
int fx_count(struct fx *f, const char *rel); /* entries of a dir, -1 if missing */
void fx_write(struct fx *f, const char *rel, const char *value); /* plain write (drift) */

/* One pass; fails the test on any error unless allow_errors. */
int fx_pass(struct fx *f, struct rowset *rs, const struct tgt_view *v, bool sweep,
            struct tgt_report *rep);

#endif
