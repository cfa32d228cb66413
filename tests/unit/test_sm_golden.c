/* The golden logs: for each frozen command version, a fixture of encoded
 * commands (v1: as the releases before v2 logged them) replayed through
 * sm_apply, whose state and per-entry results must come out byte for byte
 * as they did when the fixture was made. It catches any drift of a frozen
 * apply path (a changed default, rule, message or order of random draws
 * would make old logs replay differently from the nodes that applied them).
 *
 * Files (tests/unit/fixtures/, N the version):
 *   sm_vN_log.bin     "NVSMLOG1", then one record per entry in apply order
 *   sm_vN_expect.bin  "NVSMEXP1", then one record per entry: the msgpack of
 *                     {"ok": value} | {"err": error}, "dup", "gen"; then one
 *                     last record: sm_snapshot of the final state
 * A record is a 4-byte big-endian length and that many bytes. Both are
 * made by one scripted sequence (steps[] below) prepared with that
 * version's prepare path (sm__prepare_version) on a deterministic leader.
 *
 * Regenerating (test_sm_golden --generate N tests/unit/fixtures):
 *   v1: NEVER. v1 is frozen; its fixture was made once, by the code of
 *       the last v1 release, before v2 existed.
 *   v2: only while v2 is not yet in a release; from its first release on
 *       it is frozen like v1.
 * The test never rewrites a fixture. If a replay fails, the apply path
 * changed: fix the code, not the fixture. A new log format (v3, ...) gets
 * its fixture from this generator, once, when it is first released. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "sm.h"
#include "sm_int.h"
#include "test_sm_util.h"

#ifndef SM_FIXTURE_DIR
#define SM_FIXTURE_DIR "."
#endif
#define LOG_MAGIC "NVSMLOG1"
#define EXP_MAGIC "NVSMEXP1"
#define MAX_RECORDS 4096
#define MAX_RECORD (16u << 20)

/* ---- the leader's environment, deterministic ---- */

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static struct sm_env env = {
    .random = sm_test_random, .device_stat = sm_test_stat, .ctx = &rnd_state};

/* ---- the scripted sequence ---- */

enum step_op {
    RUN,     /* prepare and apply at once (slot RUN_SLOT) */
    PREP,    /* prepare into slot (applied later: a pipelined write) */
    APPLY,   /* apply slot */
    AGAIN,   /* apply slot's bytes once more (a client's retry) */
    ENV,     /* json: "ha", "rdma", "both", "none" */
    SAVE,    /* keep config.save of the current state for RESTORE */
    RESTORE, /* prepare config.restore [saved] into slot */
};

#define RUN_SLOT 3

struct step {
    enum step_op op;
    const char *method;
    const char *json;
    int slot;
    const char *client;
    int64_t seq;
};

#define HOST1 "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
#define KEY1 "DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"

/* short rows: the fields left out are zero */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
/* Every write of every table, aliases, defaults, generated values, automatic
 * nsid/port index, failures on apply (pipelined duplicates, "disable first",
 * dependants, stale terms), session duplicates, the cluster facts and a
 * config.restore. The order is part of the fixture: never edit it. */
static const struct step steps[] = {
    {ENV, NULL, "both", 0, NULL, 0},
    /* a write prepared before the init was applied: its own basenqn draw */
    {PREP, "nvmet.global.init", "[]", 0, NULL, 0},
    {PREP, "nvmet.subsys.create", "[{\"name\": \"zero\"}]", 1, "cli-a", 1},
    {APPLY, NULL, NULL, 0, NULL, 0},
    {APPLY, NULL, NULL, 1, NULL, 0},
    {AGAIN, NULL, NULL, 1, NULL, 0},
    {RUN, "cluster.node.register",
     "[{\"id\": 1, \"kind\": \"data\", \"raft\": \"198.51.100.1:7000\", \"rpc\": "
     "\"198.51.100.1:7100\"}]"},
    {RUN, "cluster.node.register",
     "[{\"id\": 2, \"kind\": \"data\", \"raft\": \"198.51.100.2:7000\"}]"},
    {RUN, "cluster.node.register",
     "[{\"id\": 3, \"kind\": \"witness\", \"raft\": \"198.51.100.3:7000\", \"members\": \"1,2\"}]"},
    {PREP, "cluster.node.register",
     "[{\"id\": 4, \"kind\": \"data\", \"raft\": \"198.51.100.9:7000\"}]", 0},
    {PREP, "cluster.node.register",
     "[{\"id\": 5, \"kind\": \"data\", \"raft\": \"198.51.100.9:7000\"}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* same raft address: refused on apply */
    {RUN, "cluster.node.unregister", "[4]"},
    {RUN, "failover.activate", "[{\"node\": 1, \"term\": 2}]"},
    {PREP, "failover.activate", "[{\"node\": 2, \"term\": 5}]", 0},
    {PREP, "failover.activate", "[{\"node\": 1, \"term\": 3}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* older term: refused on apply */
    {RUN, "failover.update",
     "[{\"takeover_delay_ms\": 100, \"fence_command\": \"/bin/true\", \"announce_count\": 2, "
     "\"vips\": [{\"address\": \"198.51.100.50\", \"prefix\": 24, \"interface\": \"eth0\", "
     "\"node_addresses\": {\"1\": \"198.51.100.1\", \"2\": \"198.51.100.2\"}}]}]"},
    {RUN, "failover.update", "[{\"announce_interval_ms\": 500}]"},
    {RUN, "nvmet.global.update", "[{\"ana\": true}]"},
    {RUN, "nvmet.global.update", "[{\"rdma\": true, \"xport_referral\": false}]"},
    {RUN, "nvmet.global.update", "[{\"basenqn\": \"nqn.2024-01.com.example\"}]"},
    /* subsystems */
    {RUN, "nvmet.subsys.create", "[{\"name\": \"alpha\"}]", 0, "cli-a", 2},
    {RUN, "nvmet.subsys.create",
     "[{\"name\": \"nqn.2024-01.com.example:beta\", \"serial\": \"SER1\", \"allow_any_host\": "
     "true, \"ana\": true, \"qid_max\": 8, \"ieee_oui\": \"abcdef\", \"pi_enable\": false}]"},
    {RUN, "nvmet.subsys.update", "[2, {\"serial\": null}]"},
    {RUN, "nvmet.subsys.update", "[2, {\"name\": \"alpha2\", \"subnqn\": null}]"},
    {RUN, "nvmet.subsys.update", "[3, {\"ana\": null, \"allow_any_host\": false}]"},
    {PREP, "nvmet.subsys.create", "[{\"name\": \"gamma\"}]", 0},
    {PREP, "nvmet.subsys.create", "[{\"name\": \"gamma\"}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* duplicate name: refused on apply */
    {PREP, "nvmet.subsys.update", "[4, {\"qid_max\": 4}]", 0},
    {PREP, "nvmet.subsys.update", "[4, {\"ieee_oui\": \"123456\"}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1},
    /* namespaces */
    {RUN, "nvmet.namespace.create", "[{\"subsys\": 2, \"device\": \"zvol/tank/v1\"}]"},
    {RUN, "nvmet.namespace.create",
     "[{\"subsys_id\": 2, \"device_type\": \"FILE\", \"device_path\": \"/srv/a/../f1.img\", "
     "\"filesize\": 1048576, \"nsid\": 5, \"device_uuid\": "
     "\"AABBCCDD-0011-2233-4455-66778899AABB\", \"enabled\": false}]"},
    {RUN, "nvmet.namespace.create",
     "[{\"subsys_id\": 2, \"device_type\": \"BLOCK\", \"device_path\": \"/dev/loop0\"}]"},
    {RUN, "nvmet.namespace.create", "[{\"subsys_id\": 3, \"device\": \"/srv/exists.img\"}]"},
    {RUN, "nvmet.namespace.update", "[2, {\"filesize\": 2097152, \"device_nguid\": null}]"},
    {RUN, "nvmet.namespace.update", "[1, {\"enabled\": false, \"subsys\": 2}]"},
    {RUN, "nvmet.namespace.update", "[3, {\"nsid\": null}]"},
    {PREP, "nvmet.namespace.create", "[{\"subsys_id\": 2, \"device\": \"zvol/tank/p1\"}]", 0},
    {PREP, "nvmet.namespace.create", "[{\"subsys_id\": 2, \"device\": \"zvol/tank/p2\"}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* automatic nsid: both get one */
    {PREP, "nvmet.namespace.create", "[{\"subsys_id\": 3, \"device\": \"zvol/tank/p3\"}]", 0},
    {PREP, "nvmet.namespace.create", "[{\"subsys_id\": 2, \"device\": \"zvol/tank/p3\"}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* same device_path: refused on apply */
    {PREP, "nvmet.namespace.update", "[6, {\"enabled\": false}]", 0},
    {PREP, "nvmet.namespace.update", "[6, {\"filesize\": 4096}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1},
    /* ports */
    {RUN, "nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.10\"}]"},
    {RUN, "nvmet.port.create",
     "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"2001:db8::10\", \"addr_trsvcid\": \"4421\", "
     "\"addr_adrfam\": \"IPV6\"}]"},
    {RUN, "nvmet.port.create", "[{\"addr_trtype\": \"RDMA\", \"addr_traddr\": \"198.51.100.11\"}]"},
    {RUN, "nvmet.port.create",
     "[{\"addr_trtype\": \"FC\", \"addr_traddr\": "
     "\"nn-0x1000000000000001:pn-0x2000000000000001\"}]"},
    {RUN, "nvmet.port.create",
     "[{\"addr_trtype\": \"LOOP\", \"addr_traddr\": \"1\", \"enabled\": false}]"},
    {RUN, "nvmet.port.update", "[1, {\"inline_data_size\": 16384, \"max_queue_size\": 128}]"},
    {RUN, "nvmet.port.update", "[2, {\"addr_traddr\": \"198.51.100.12\"}]"},
    {RUN, "nvmet.port.delete", "[5]"},
    {PREP, "nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.13\"}]",
     0},
    {PREP, "nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.14\"}]",
     1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* automatic index: both get one */
    {PREP, "nvmet.port.update", "[6, {\"pi_enable\": true}]", 0},
    {PREP, "nvmet.port.update", "[6, {\"max_queue_size\": 64}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1},
    /* hosts */
    {RUN, "nvmet.host.create",
     "[{\"hostnqn\": \"" HOST1 "\", \"description\": \"h1\", \"dhchap_key\": \"" KEY1
     "\", \"dhchap_hash\": \"SHA384\", \"dhchap_dhgroup\": \"NULL\"}]"},
    {RUN, "nvmet.host.create", "[{\"hostnqn\": \"nqn.2024-01.com.example:host2\"}]"},
    {RUN, "nvmet.host.update", "[2, {\"dhchap_dhgroup\": \"2048-BIT\", \"description\": \"x\"}]"},
    {PREP, "nvmet.host.create", "[{\"hostnqn\": \"nqn.2024-01.com.example:host3\"}]", 0},
    {PREP, "nvmet.host.create", "[{\"hostnqn\": \"nqn.2024-01.com.example:host3\"}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* duplicate hostnqn: refused on apply */
    /* links */
    {RUN, "nvmet.host_subsys.create", "[{\"host\": 1, \"subsys\": 2}]"},
    {RUN, "nvmet.host_subsys.create", "[{\"host_id\": 2, \"subsys_id\": 3}]"},
    {RUN, "nvmet.host_subsys.update", "[2, {\"subsys\": 2}]"},
    {RUN, "nvmet.port_subsys.create", "[{\"port\": 1, \"subsys_id\": 2}]"},
    {RUN, "nvmet.port_subsys.create", "[{\"port_id\": 2, \"subsys\": 3}]"},
    {RUN, "nvmet.port_subsys.update", "[2, {\"port_id\": 3}]"},
    {PREP, "nvmet.port_subsys.create", "[{\"port_id\": 4, \"subsys_id\": 3}]", 0},
    {PREP, "nvmet.port_subsys.create", "[{\"port_id\": 4, \"subsys_id\": 3}]", 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1}, /* duplicate link: refused on apply */
    /* config.restore cannot recreate an FC port (its stored addr_trsvcid is
     * null, which the FC create model refuses): saved without one */
    {RUN, "nvmet.port.delete", "[4, {\"force\": true}]"},
    {SAVE},
    /* "disable first" raced: prepared while disabled, applied while running */
    {PREP, "nvmet.port.update", "[1, {\"addr_trsvcid\": 4430}]", 0},
    {PREP, "nvmet.subsys.update", "[2, {\"serial\": \"NEWSER\"}]", 1},
    {PREP, "nvmet.namespace.update", "[6, {\"device_nguid\": null}]", 2},
    {RUN, "nvmet.global.update", "[{\"enabled\": true}]"},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1},
    {APPLY, NULL, NULL, 2},
    {RUN, "nvmet.port.update", "[1, {\"enabled\": false}]"},
    {RUN, "nvmet.global.update", "[{\"enabled\": false}]"},
    /* dependants raced: delete prepared before a link appeared */
    {PREP, "nvmet.subsys.delete", "[4]", 0},
    {PREP, "nvmet.host.delete", "[3]", 1},
    {RUN, "nvmet.port_subsys.create", "[{\"port_id\": 6, \"subsys_id\": 4}]"},
    {RUN, "nvmet.host_subsys.create", "[{\"host_id\": 3, \"subsys_id\": 4}]"},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1},
    /* an update prepared before its row was deleted */
    {PREP, "nvmet.namespace.update", "[3, {\"enabled\": false}]", 0},
    {RUN, "nvmet.namespace.delete", "[3, {\"remove\": true}]"},
    {APPLY, NULL, NULL, 0},
    /* sessions: a retry, and another command under a used (client, seq) */
    {PREP, "nvmet.host_subsys.delete", "[1]", 0, "cli-b", 7},
    {APPLY, NULL, NULL, 0},
    {AGAIN, NULL, NULL, 0},
    {PREP, "nvmet.port_subsys.delete", "[1]", 1, "cli-b", 7},
    {APPLY, NULL, NULL, 1},
    /* deletes */
    {RUN, "nvmet.port_subsys.delete", "[1]"},
    {RUN, "nvmet.port.delete", "[6, {\"force\": true}]"},
    {RUN, "nvmet.host.delete", "[3, {\"force\": true}]"},
    {RUN, "nvmet.subsys.delete", "[2, {\"force\": true}]"},
    {RUN, "nvmet.namespace.delete", "[4]"},
    {RUN, "nvmet.namespace.delete", "[7, {\"remove\": false}]"},
    {RUN, "nvmet.port_subsys.delete", "[2]"},
    {RUN, "nvmet.subsys.delete", "[3, {\"force\": false}]"},
    {RUN, "nvmet.subsys.delete", "[4, {\"force\": true}]"},
    {RUN, "nvmet.subsys.delete", "[1]"},
    {RUN, "nvmet.host.delete", "[1, {\"force\": true}]"},
    {RUN, "nvmet.host.delete", "[2]"},
    {RUN, "nvmet.port.delete", "[1]"},
    {RUN, "nvmet.port.delete", "[2, {\"force\": true}]"},
    {RUN, "nvmet.port.delete", "[3]"},
    {RUN, "nvmet.port.delete", "[7]"},
    /* single node now: ANA refused by the recorded flag */
    {ENV, NULL, "none", 0},
    {RUN, "nvmet.subsys.create", "[{\"name\": \"tmp\"}]"},
    {RUN, "nvmet.subsys.delete", "[5]"},
    {ENV, NULL, "both", 0},
    /* restore the saved configuration, twice raced: the second is refused */
    {RESTORE, NULL, NULL, 0},
    {RESTORE, NULL, NULL, 1},
    {APPLY, NULL, NULL, 0},
    {APPLY, NULL, NULL, 1},
    {RUN, "nvmet.namespace.create", "[{\"subsys_id\": 2, \"device\": \"zvol/tank/after\"}]"},
    {RUN, "nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.15\"}]"},
};
#pragma GCC diagnostic pop

/* ---- record files ---- */

struct recs {
    char **b;
    size_t *l;
    size_t n;
};

static void recs_push(struct recs *r, const char *b, size_t l)
{
    assert_true(r->n < MAX_RECORDS);
    r->b = realloc(r->b, (r->n + 1) * sizeof *r->b);
    r->l = realloc(r->l, (r->n + 1) * sizeof *r->l);
    assert_non_null(r->b);
    assert_non_null(r->l);
    r->b[r->n] = malloc(l ? l : 1);
    assert_non_null(r->b[r->n]);
    memcpy(r->b[r->n], b, l);
    r->l[r->n++] = l;
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->b[i]);
    }
    free(r->b);
    free(r->l);
    *r = (struct recs){0};
}

static void recs_write(const struct recs *r, const char *path, const char *magic)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(magic, 1, 8, f), 8);
    for (size_t i = 0; i < r->n; i++) {
        unsigned char h[4] = {(unsigned char)(r->l[i] >> 24), (unsigned char)(r->l[i] >> 16),
                              (unsigned char)(r->l[i] >> 8), (unsigned char)r->l[i]};
        assert_int_equal(fwrite(h, 1, 4, f), 4);
        assert_int_equal(fwrite(r->b[i], 1, r->l[i], f), r->l[i]);
    }
    assert_int_equal(fclose(f), 0);
}

static void recs_read(struct recs *r, const char *path, const char *magic)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
    }
    assert_non_null(f);
    char m[8];
    assert_int_equal(fread(m, 1, 8, f), 8);
    assert_memory_equal(m, magic, 8);
    unsigned char h[4];
    while (fread(h, 1, 4, f) == 4) {
        size_t l = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        assert_true(l <= MAX_RECORD);
        char *b = malloc(l ? l : 1);
        assert_non_null(b);
        assert_int_equal(fread(b, 1, l, f), l);
        recs_push(r, b, l);
        free(b);
    }
    assert_true(feof(f));
    fclose(f);
}

/* The record of one apply's result: what a client saw, and whether the
 * configuration changed. */
static void result_record(struct recs *out, const struct sm_state *s, const struct sm_result *r)
{
    struct nv *m = nv_map();
    if (r->err != NULL) {
        nv_set(m, "err", nv_err_to_nv(r->err));
    } else {
        nv_set(m, "ok", nv_copy(r->value));
    }
    nv_set_bool(m, "dup", r->duplicate);
    nv_set_int(m, "gen", (int64_t)sm_generation(s));
    char *b;
    size_t l;
    assert_int_equal(nv_encode(m, &b, &l), 0);
    recs_push(out, b, l);
    free(b);
    nv_free(m);
}

/* ---- the generator (run by hand, once: see the top of this file) ---- */

static void set_env(const char *what)
{
    env.ha = strcmp(what, "ha") == 0 || strcmp(what, "both") == 0;
    env.rdma_capable = strcmp(what, "rdma") == 0 || strcmp(what, "both") == 0;
}

static void prepare_into(struct sm_state *s, int version, const char *method, struct nv *params,
                         const char *client, int64_t seq, char **buf, size_t *len)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *cmd = NULL;
    if (sm__prepare_version(s, method, params, &env, version, &cmd, &e) < 0) {
        char *why = nv_err_reason(&e);
        fprintf(stderr, "generator: %s refused on prepare: %s\n", method, why);
        free(why);
        fail();
    }
    assert_int_equal(sm_command_encode(cmd, client, client != NULL ? seq : -1, buf, len), 0);
    nv_free(cmd);
    nv_err_clear(&e);
}

/* Run the script with commands of the given version: the log and the
 * expected records (results, then the final snapshot). */
static void run_script(int version, struct recs *log, struct recs *exp, bool verbose)
{
    struct sm_state *s = sm_new();
    rnd_state = 0x9e3779b97f4a7c15ULL;
    set_env("both");
    char *slot_b[4] = {0};
    size_t slot_l[4] = {0};
    struct nv *saved = NULL;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const struct step *st = &steps[i];
        int k = st->op == RUN ? RUN_SLOT : st->slot;
        switch (st->op) {
            case ENV:
                set_env(st->json);
                continue;
            case SAVE:
                nv_free(saved);
                saved = sm_config_save(s);
                continue;
            case RESTORE: {
                struct nv *p = nv_arr();
                nv_push(p, nv_copy(saved));
                free(slot_b[k]);
                prepare_into(s, version, "config.restore", p, NULL, -1, &slot_b[k], &slot_l[k]);
                nv_free(p);
                continue;
            }
            case RUN:
            case PREP: {
                struct nv *p = nv_from_json(st->json);
                if (p == NULL) {
                    fprintf(stderr, "generator: bad json in step %zu\n", i);
                }
                assert_non_null(p);
                free(slot_b[k]);
                prepare_into(s, version, st->method, p, st->client, st->seq, &slot_b[k],
                             &slot_l[k]);
                nv_free(p);
                if (st->op == PREP) {
                    continue;
                }
                break;
            }
            case APPLY:
            case AGAIN:
                break;
        }
        assert_non_null(slot_b[k]);
        struct sm_result *r = sm_apply(s, slot_b[k], slot_l[k]);
        assert_non_null(r);
        recs_push(log, slot_b[k], slot_l[k]);
        result_record(exp, s, r);
        char *why = !verbose ? NULL : r->err != NULL ? nv_err_reason(r->err) : nv_to_json(r->value);
        if (verbose)
            printf("%3zu %-26s %s%.150s\n", log->n - 1, st->method ? st->method : "(slot)",
                   r->duplicate ? "dup " : "", why ? why : "?");
        free(why);
        sm_result_free(r);
    }
    char *snap;
    size_t sl;
    assert_int_equal(sm_snapshot(s, &snap, &sl), 0);
    recs_push(exp, snap, sl);
    free(snap);
    for (size_t k = 0; k < 4; k++) {
        free(slot_b[k]);
    }
    nv_free(saved);
    sm_free(s);
}

static int generate(int version, const char *dir)
{
    struct recs log = {0}, exp = {0};
    run_script(version, &log, &exp, true);
    char path[4096];
    snprintf(path, sizeof path, "%s/sm_v%d_log.bin", dir, version);
    recs_write(&log, path, LOG_MAGIC);
    snprintf(path, sizeof path, "%s/sm_v%d_expect.bin", dir, version);
    recs_write(&exp, path, EXP_MAGIC);
    printf("generated %zu entries into %s\n", log.n, dir);
    recs_free(&log);
    recs_free(&exp);
    return 0;
}

/* ---- the test ---- */

static void dump_mismatch(size_t i, const char *a, size_t al, const char *b, size_t bl)
{
    struct nv *x = nv_decode(a, al, NULL), *y = nv_decode(b, bl, NULL);
    char *xs = nv_to_json(x), *ys = nv_to_json(y);
    fprintf(stderr, "record %zu differs\n  fixture: %.200000s\n  replay:  %.200000s\n", i,
            xs ? xs : "?", ys ? ys : "?");
    free(xs);
    free(ys);
    nv_free(x);
    nv_free(y);
}

static void golden_replay(int version)
{
    struct recs log = {0}, exp = {0}, got = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/sm_v%d_log.bin", SM_FIXTURE_DIR, version);
    recs_read(&log, path, LOG_MAGIC);
    snprintf(path, sizeof path, "%s/sm_v%d_expect.bin", SM_FIXTURE_DIR, version);
    recs_read(&exp, path, EXP_MAGIC);
    assert_true(log.n > 100);
    assert_int_equal(exp.n, log.n + 1);
    struct sm_state *s = sm_new();
    size_t failed = 0, dups = 0;
    for (size_t i = 0; i < log.n; i++) {
        /* every entry of the fixture is a command of that version */
        struct nv *c = nv_decode(log.b[i], log.l[i], NULL);
        assert_int_equal(nv_get_int(c, "v", 0), version);
        nv_free(c);
        struct sm_result *r = sm_apply(s, log.b[i], log.l[i]);
        assert_non_null(r);
        failed += r->err != NULL;
        dups += r->duplicate;
        result_record(&got, s, r);
        sm_result_free(r);
        if (got.l[i] != exp.l[i] || memcmp(got.b[i], exp.b[i], exp.l[i]) != 0) {
            dump_mismatch(i, exp.b[i], exp.l[i], got.b[i], got.l[i]);
            fail();
        }
    }
    /* the fixture exercises failures on apply and session duplicates */
    assert_true(failed >= 10);
    assert_true(dups >= 3);
    char *snap;
    size_t sl;
    assert_int_equal(sm_snapshot(s, &snap, &sl), 0);
    if (sl != exp.l[log.n] || memcmp(snap, exp.b[log.n], sl) != 0) {
        dump_mismatch(log.n, exp.b[log.n], exp.l[log.n], snap, sl);
        fail();
    }
    /* a replica that restores the final snapshot reads back the same bytes */
    struct sm_state *t = sm_new();
    struct nv_err e;
    nv_err_init(&e);
    assert_int_equal(sm_restore(t, snap, sl, &e), 0);
    sm_test_snapshot_is(t, snap, sl);
    free(snap);
    nv_err_clear(&e);
    sm_free(t);
    sm_free(s);
    recs_free(&log);
    recs_free(&exp);
    recs_free(&got);
}

/* JSON of a record with every from replaced by to. */
static char *json_with(const char *b, size_t l, const char *from, const char *to)
{
    struct nv *v = nv_decode(b, l, NULL);
    char *j = nv_to_json(v);
    nv_free(v);
    assert_non_null(j);
    size_t fl = strlen(from), tl = strlen(to);
    char *out = malloc(strlen(j) * (tl / fl + 2) + 1), *o = out;
    assert_non_null(out);
    for (const char *p = j; *p != '\0';) {
        if (strncmp(p, from, fl) == 0) {
            memcpy(o, to, tl);
            o += tl;
            p += fl;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    free(j);
    return out;
}

/* The same script logged as v2 commands: every entry is v2 and applies
 * as its v1 twin did (same results byte for byte, same final state),
 * with one difference of the format: a write prepared before the
 * cluster's first global row was applied derives its subnqn, on the
 * leader, from the basenqn it carries ("g"), where v1 derived it on apply
 * from the basenqn the init had just set. */
static void test_v2_same_as_v1(void **state)
{
    (void)state;
    struct recs log = {0}, got = {0}, exp = {0};
    recs_read(&exp, SM_FIXTURE_DIR "/sm_v1_expect.bin", EXP_MAGIC);
    run_script(2, &log, &got, false);
    assert_int_equal(got.n, exp.n);
    struct nv *e0 = nv_decode(log.b[0], log.l[0], NULL);
    struct nv *e1 = nv_decode(log.b[1], log.l[1], NULL);
    const char *g0 = nv_get_str(e0, "g"), *g1 = nv_get_str(e1, "g");
    assert_non_null(g0);
    assert_non_null(g1);
    assert_string_not_equal(g0, g1);
    size_t differ = 0, known = 0;
    for (size_t i = 0; i <= log.n; i++) {
        if (got.l[i] == exp.l[i] && memcmp(got.b[i], exp.b[i], exp.l[i]) == 0) {
            continue;
        }
        char *a = json_with(got.b[i], got.l[i], g1, g0);
        char *b = json_with(exp.b[i], exp.l[i], g1, g0);
        if (strcmp(a, b) == 0) {
            known++;
        } else {
            dump_mismatch(i, exp.b[i], exp.l[i], got.b[i], got.l[i]);
            differ++;
        }
        free(a);
        free(b);
    }
    nv_free(e0);
    nv_free(e1);
    for (size_t i = 0; i < log.n; i++) {
        struct nv *c = nv_decode(log.b[i], log.l[i], NULL);
        assert_int_equal(nv_get_int(c, "v", 0), 2);
        assert_null(nv_get(c, "p"));
        assert_null(nv_get(c, "r"));
        nv_free(c);
    }
    assert_int_equal(differ, 0);
    assert_int_equal(known, 3); /* "zero", its retry, the final state's session */
    recs_free(&log);
    recs_free(&got);
    recs_free(&exp);
}

static void test_v1_golden_replay(void **state)
{
    (void)state;
    golden_replay(1);
}

static void test_v2_golden_replay(void **state)
{
    (void)state;
    golden_replay(2);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--generate") == 0 &&
        (strcmp(argv[2], "1") == 0 || strcmp(argv[2], "2") == 0)) {
        return generate(atoi(argv[2]), argv[3]);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_golden_replay),
        cmocka_unit_test(test_v2_same_as_v1),
        cmocka_unit_test(test_v2_golden_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
