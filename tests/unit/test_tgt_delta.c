/* Incremental passes (tgt_reconcile_changes with the statemachine's change
 * list) against full ones: after random, bounded sequences of writes
 * through the real statemachine, the tree an instance rendered
 * incrementally must be the tree a full build desires, a sweep must find
 * nothing to repair, and a fresh instance rendering the same state from
 * scratch must leave byte for byte the same configfs tree. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fo_int.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "sm.h"
#include "test_tgt_util.h"

#define NDEV 12     /* zvols the namespaces can use */
#define MAXIDS 256  /* ids remembered per table */
#define STEPS 40    /* render batches per sequence */
#define PER_BATCH 4 /* at most this many writes between two passes */

static const struct tgt_view active = {.active = true};
static const struct tgt_view standby = {.active = false};
/* failover licensed, this node the first of two data nodes (ANA group 2) */
static const struct tgt_view ha = {
    .active = true, .ha = true, .node_id = 1, .node_slot = 1, .n_slots = 2, .slot_ids = {1, 2}};

struct ctx {
    struct fx f;
    struct sm_state *s;
    uint64_t counter;
    uint64_t rng;
    int64_t ids[SM_TABLE_COUNT][MAXIDS];
    size_t nids[SM_TABLE_COUNT];
    unsigned serial; /* makes names unique */
    size_t ports;    /* links go to the first ports only (ANA: the wildcard one) */
};

/* The leader's random bytes (serials, uuids): distinct for as many rows
 * as a test makes, and the same on every run. */
static void counter_random(void *ctx, void *buf, size_t len)
{
    uint64_t *c = ctx;
    unsigned char *b = buf;
    for (size_t i = 0; i < len; i++) {
        *c = *c * 6364136223846793005ull + 1442695040888963407ull;
        b[i] = (unsigned char)(*c >> 56);
    }
}

static unsigned rnd(struct ctx *c, unsigned n)
{
    /* xorshift64*: the same sequence for the same seed on every machine */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return (unsigned)((c->rng * 2685821657736338717ull) >> 33) % n;
}

/* One write through prepare and apply; the result (owned), or NULL when
 * the statemachine refused it (random writes may be invalid). */
static struct nv *try_call(struct ctx *c, const char *method, const char *params)
{
    struct sm_env env = {.random = counter_random, .ctx = &c->counter, .ha = true};
    struct nv *p = nv_from_json(params);
    assert_non_null(p);
    struct nv *cmd = NULL, *v = NULL;
    struct nv_err e;
    nv_err_init(&e);
    if (sm_prepare(c->s, method, p, &env, &cmd, &e) == 0) {
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(sm_command_encode(cmd, NULL, -1, &buf, &len), 0);
        struct sm_result *res = sm_apply(c->s, buf, len);
        assert_non_null(res);
        if (res->err == NULL) {
            v = res->value;
            res->value = NULL;
        }
        sm_result_free(res);
        free(buf);
    }
    nv_free(cmd);
    nv_free(p);
    nv_err_clear(&e);
    return v;
}

static void remember(struct ctx *c, enum sm_table t, struct nv *res)
{
    int64_t id = nv_get_int(res, "id", 0);
    if (res != NULL && id > 0 && c->nids[t] < MAXIDS) {
        c->ids[t][c->nids[t]++] = id;
    }
    nv_free(res);
}

/* A remembered id of t (maybe deleted since: the write may fail), or 0. */
static int64_t pick(struct ctx *c, enum sm_table t)
{
    return c->nids[t] > 0 ? c->ids[t][rnd(c, (unsigned)c->nids[t])] : 0;
}

/* One random write of the tables incremental passes render, and now and
 * then of a port (a full pass). */
static void random_write(struct ctx *c)
{
    char p[512];
    unsigned k = ++c->serial;
    switch (rnd(c, 16)) {
        case 0:
        case 1:
            snprintf(p, sizeof p,
                     "[{\"name\": \"nqn.2024-01.com.example:s%u\", \"allow_any_host\": %s, "
                     "\"ana\": %s}]",
                     k, rnd(c, 3) == 0 ? "true" : "false", rnd(c, 3) == 0 ? "true" : "null");
            remember(c, SM_SUBSYS, try_call(c, "nvmet.subsys.create", p));
            break;
        case 2:
            snprintf(p, sizeof p, "[%" PRId64 ", {\"allow_any_host\": %s}]", pick(c, SM_SUBSYS),
                     rnd(c, 2) ? "true" : "false");
            nv_free(try_call(c, "nvmet.subsys.update", p));
            break;
        case 3: /* a new NQN: the namespaces and links move with it */
            snprintf(p, sizeof p, "[%" PRId64 ", {\"subnqn\": \"nqn.2024-01.com.example:r%u\"}]",
                     pick(c, SM_SUBSYS), k);
            nv_free(try_call(c, "nvmet.subsys.update", p));
            break;
        case 4:
            snprintf(p, sizeof p, "[%" PRId64 ", {\"force\": true}]", pick(c, SM_SUBSYS));
            nv_free(try_call(c, "nvmet.subsys.delete", p));
            break;
        case 5:
            snprintf(p, sizeof p, "[{\"hostnqn\": \"nqn.2024-01.com.example:h%u\"}]", k);
            remember(c, SM_HOST, try_call(c, "nvmet.host.create", p));
            break;
        case 6:
            snprintf(p, sizeof p, "[%" PRId64 ", {\"hostnqn\": \"nqn.2024-01.com.example:g%u\"}]",
                     pick(c, SM_HOST), k);
            nv_free(try_call(c, "nvmet.host.update", p));
            break;
        case 7:
            snprintf(p, sizeof p, "[%" PRId64 "]", pick(c, SM_HOST));
            nv_free(try_call(c, "nvmet.host.delete", p));
            break;
        case 8:
        case 9:
            snprintf(p, sizeof p, "[{\"host\": %" PRId64 ", \"subsys\": %" PRId64 "}]",
                     pick(c, SM_HOST), pick(c, SM_SUBSYS));
            remember(c, SM_HOST_SUBSYS, try_call(c, "nvmet.host_subsys.create", p));
            break;
        case 10:
            snprintf(p, sizeof p, "[{\"port\": %" PRId64 ", \"subsys\": %" PRId64 "}]",
                     c->ids[SM_PORT][rnd(c, (unsigned)c->ports)], pick(c, SM_SUBSYS));
            remember(c, SM_PORT_SUBSYS, try_call(c, "nvmet.port_subsys.create", p));
            break;
        case 11:
            snprintf(p, sizeof p, "[%" PRId64 "]",
                     pick(c, rnd(c, 2) ? SM_PORT_SUBSYS : SM_HOST_SUBSYS));
            nv_free(try_call(c, rnd(c, 2) ? "nvmet.port_subsys.delete" : "nvmet.host_subsys.delete",
                             p));
            break;
        case 12:
        case 13:
            snprintf(p, sizeof p,
                     "[{\"subsys\": %" PRId64
                     ", \"device\": \"zvol/tank/nvme/ns%u\", "
                     "\"enabled\": %s}]",
                     pick(c, SM_SUBSYS), rnd(c, NDEV), rnd(c, 4) ? "true" : "false");
            remember(c, SM_NAMESPACE, try_call(c, "nvmet.namespace.create", p));
            break;
        case 14:
            snprintf(p, sizeof p, "[%" PRId64 ", {\"enabled\": %s}]", pick(c, SM_NAMESPACE),
                     rnd(c, 2) ? "true" : "false");
            nv_free(try_call(c, "nvmet.namespace.update", p));
            break;
        default:
            if (rnd(c, 2)) {
                snprintf(p, sizeof p, "[%" PRId64 "]", pick(c, SM_NAMESPACE));
                nv_free(try_call(c, "nvmet.namespace.delete", p));
            } else {
                snprintf(p, sizeof p, "[%" PRId64 ", {\"enabled\": %s}]", pick(c, SM_PORT),
                         rnd(c, 2) ? "true" : "false");
                nv_free(try_call(c, "nvmet.port.update", p));
            }
            break;
    }
}

/* ---- the configfs tree as text ------------------------------------------------ */

struct lines {
    char **l;
    size_t n, cap;
};

static void add_line(struct lines *ls, const char *fmt, ...)
{
    if (ls->n == ls->cap) {
        ls->cap = ls->cap ? ls->cap * 2 : 256;
        ls->l = realloc(ls->l, ls->cap * sizeof *ls->l);
        assert_non_null(ls->l);
    }
    va_list ap;
    va_start(ap, fmt);
    assert_true(vasprintf(&ls->l[ls->n++], fmt, ap) >= 0);
    va_end(ap);
}

/* Every entry under <root>/nvmet as "path/ " (dir), "path -> target"
 * (link, the root left out) or "path = contents". */
static void walk(struct lines *ls, const char *root, const char *rel, int depth)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/nvmet%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char r[PATH_MAX], full[PATH_MAX + 64];
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        struct stat st;
        assert_int_equal(lstat(full, &st), 0);
        if (S_ISLNK(st.st_mode)) {
            char t[PATH_MAX] = {0};
            assert_true(readlink(full, t, sizeof t - 1) > 0);
            size_t rl = strlen(root);
            add_line(ls, "%s -> %s", r, strncmp(t, root, rl) == 0 ? t + rl : t);
        } else if (S_ISDIR(st.st_mode)) {
            add_line(ls, "%s/", r);
            assert_true(depth < 16);
            walk(ls, root, r, depth + 1);
        } else if (strncmp(e->d_name, "param_", 6) == 0) {
            /* the rows here set no port parameters, so these are the
             * kernel's: a port's transport fills them in when the port
             * first listens and they stay, so they tell the history */
            continue;
        } else {
            char buf[4096] = {0};
            FILE *f = fopen(full, "r");
            assert_non_null(f);
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            add_line(ls, "%s = %s", r, buf);
        }
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lines_free(struct lines *ls)
{
    for (size_t i = 0; i < ls->n; i++) {
        free(ls->l[i]);
    }
    free(ls->l);
}

/* The two configfs trees are the same, entry by entry. */
static void expect_same_tree(const char *root_a, const char *root_b)
{
    struct lines a = {0}, b = {0};
    walk(&a, root_a, "", 0);
    walk(&b, root_b, "", 0);
    qsort(a.l, a.n, sizeof *a.l, cmp_str);
    qsort(b.l, b.n, sizeof *b.l, cmp_str);
    for (size_t i = 0; i < a.n && i < b.n; i++) {
        if (strcmp(a.l[i], b.l[i]) != 0) {
            fail_msg("incremental: %s\nfrom scratch: %s", a.l[i], b.l[i]);
        }
    }
    assert_int_equal(a.n, b.n);
    lines_free(&a);
    lines_free(&b);
}

/* ---- the test ------------------------------------------------------------------ */

static void setup_ctx(struct ctx *c, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    fx_setup(&c->f, "6.13");
    c->s = sm_new();
    assert_non_null(c->s);
    for (unsigned i = 0; i < NDEV; i++) {
        char dev[64];
        snprintf(dev, sizeof dev, "/dev/zvol/tank/nvme/ns%u", i);
        fx_device(&c->f, dev);
    }
    remember(c, SM_PORT,
             try_call(c, "nvmet.port.create",
                      "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"0.0.0.0\", "
                      "\"addr_trsvcid\": \"4420\", \"addr_adrfam\": \"IPV4\"}]"));
    remember(c, SM_PORT,
             try_call(c, "nvmet.port.create",
                      "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"127.0.0.1\", "
                      "\"addr_trsvcid\": \"4421\", \"addr_adrfam\": \"IPV4\"}]"));
    assert_int_equal(c->nids[SM_PORT], 2);
    c->ports = 2;
    nv_free(try_call(c, "nvmet.global.update", "[{\"enabled\": true}]"));
}

static int pass(struct ctx *c, const struct tgt_view *v)
{
    struct sm_changes ch;
    sm_changes(c->s, &ch);
    struct tgt_report rep = {0};
    int errors = tgt_reconcile_changes(c->f.t, c->s, v, &ch, &rep);
    sm_changes_clear(c->s);
    if (errors > 0) {
        char *d = nv_dump(rep.problems);
        fprintf(stderr, "problems: %s\n", d);
        free(d);
    }
    tgt_report_clear(&rep);
    return errors;
}

/* The last rendered tree is what a full build desires. */
static void expect_desired(struct ctx *c, const struct tgt_view *v, int step)
{
    struct nv *want = tgt_desired_tree(c->f.t, c->s, v);
    struct nv *live = tgt_live_tree(c->f.t);
    if (!nv_equal(want, live)) {
        /* name the paths that differ: the trees are long */
        for (int side = 0; side < 2; side++) {
            const struct nv *a = side ? live : want, *b = side ? want : live;
            for (size_t i = 0; i < a->u.m.n; i++) {
                const struct nv *o = nv_get(b, a->u.m.kv[i].k);
                if (o == NULL || !nv_equal(o, a->u.m.kv[i].v)) {
                    char *d = nv_dump(a->u.m.kv[i].v);
                    fprintf(stderr, "%s %s = %s\n", side ? "rendered" : "desired",
                            a->u.m.kv[i].k, d);
                    free(d);
                }
            }
        }
        fail_msg("step %d: the rendered tree is not the desired one", step);
    }
    nv_free(want);
    nv_free(live);
}

static void run_sequence(uint64_t seed, const struct tgt_view *v)
{
    struct ctx c;
    setup_ctx(&c, seed);
    if (v->ha) {
        c.ports = 1; /* port 2 has no failover VIP for its ANA form */
    }
    assert_int_equal(pass(&c, v), 0); /* the first pass: a full one */
    for (int step = 0; step < STEPS; step++) {
        unsigned n = 1 + rnd(&c, PER_BATCH);
        for (unsigned i = 0; i < n; i++) {
            random_write(&c);
        }
        assert_int_equal(pass(&c, v), 0);
        expect_desired(&c, v, step);
    }
    struct tgt_stats st;
    tgt_stats(c.f.t, &st);
    assert_true(st.passes > st.full_passes); /* the incremental path ran */
    /* a sweep reads the live tree: nothing to repair */
    struct tgt_report rep = {0};
    assert_int_equal(tgt_reconcile(c.f.t, c.s, v, true, &rep), 0);
    assert_int_equal(rep.drift, 0);
    assert_int_equal(rep.mkdirs + rep.rmdirs + rep.writes + rep.links + rep.unlinks, 0);
    tgt_report_clear(&rep);
    /* a fresh instance rendering the same state from scratch */
    struct fx fresh;
    fx_setup(&fresh, "6.13");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp -a '%s/.' '%s/'", c.f.devroot, fresh.devroot);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(tgt_reconcile(fresh.t, c.s, v, true, &rep), 0);
    tgt_report_clear(&rep);
    expect_same_tree(c.f.root, fresh.root);
    fx_teardown(&fresh);
    sm_free(c.s);
    fx_teardown(&c.f);
}

static void test_delta_random_active(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        run_sequence(seed, &active);
    }
}

static void test_delta_random_standby(void **state)
{
    (void)state;
    for (uint64_t seed = 101; seed <= 103; seed++) {
        run_sequence(seed, &standby);
    }
}

/* With failover licensed: namespace, host and access-list changes are
 * incremental, subsystem and port-link changes too when they are
 * additions that leave effective ANA as it was, others full. */
static void test_delta_random_ha(void **state)
{
    (void)state;
    for (uint64_t seed = 201; seed <= 203; seed++) {
        run_sequence(seed, &ha);
    }
}

/* Full passes taken by one pass over the writes made since the last. */
static uint64_t full_passes_of(struct ctx *c, const struct tgt_view *v)
{
    struct tgt_stats a, b;
    tgt_stats(c->f.t, &a);
    assert_int_equal(pass(c, v), 0);
    tgt_stats(c->f.t, &b);
    expect_desired(c, v, -1);
    return b.full_passes - a.full_passes;
}

/* With failover licensed, additions that change neither the ANA group nor
 * a port's forms are incremental (bulk provisioning stays flat); the
 * first subsystem with effective ANA and the first link needing a port's
 * ANA form are full passes. */
static void test_delta_ha_additions(void **state)
{
    (void)state;
    struct ctx c;
    setup_ctx(&c, 11);
    assert_int_equal(pass(&c, &ha), 0);
    remember(&c, SM_SUBSYS,
             try_call(&c, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:p1\"}]"));
    assert_int_equal(full_passes_of(&c, &ha), 0);
    nv_free(try_call(&c, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]"));
    assert_int_equal(full_passes_of(&c, &ha), 0); /* the plain form is rendered */
    remember(&c, SM_SUBSYS, try_call(&c, "nvmet.subsys.create",
                                     "[{\"name\": \"nqn.2024-01.com.example:a1\", \"ana\": true}]"));
    assert_int_equal(full_passes_of(&c, &ha), 1); /* the ANA group comes out */
    remember(&c, SM_SUBSYS, try_call(&c, "nvmet.subsys.create",
                                     "[{\"name\": \"nqn.2024-01.com.example:a2\", \"ana\": true}]"));
    assert_int_equal(full_passes_of(&c, &ha), 0);
    nv_free(try_call(&c, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 2}]"));
    assert_int_equal(full_passes_of(&c, &ha), 1); /* port 1's ANA form appears */
    nv_free(try_call(&c, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 3}]"));
    assert_int_equal(full_passes_of(&c, &ha), 0);
    nv_free(try_call(&c, "nvmet.namespace.create",
                     "[{\"subsys\": 3, \"device\": \"zvol/tank/nvme/ns1\", \"enabled\": true}]"));
    assert_int_equal(full_passes_of(&c, &ha), 0);
    nv_free(try_call(&c, "nvmet.subsys.update", "[3, {\"ana\": false}]"));
    assert_int_equal(full_passes_of(&c, &ha), 1); /* a modification may flip ANA */
    sm_free(c.s);
    fx_teardown(&c.f);
}

/* Slices of the periodic check until a round ends (bounded): the drift
 * they repaired, or -ESTALE / -EAGAIN as soon as a slice says so. */
static int verify_round(struct ctx *c, size_t max, unsigned *drift)
{
    *drift = 0;
    for (int i = 0; i < 1000; i++) {
        struct tgt_report rep = {0};
        bool done = false;
        int rv = tgt_verify_slice(c->f.t, max, &rep, &done);
        *drift += rep.drift;
        tgt_report_clear(&rep);
        if (rv != 0 || done) {
            return rv;
        }
    }
    fail_msg("no round ended in 1000 slices");
    return -1;
}

/* The periodic check in slices: a changed attribute or a re-pointed link
 * is put back by the slice that reaches it; a vanished directory or an
 * object made by hand (top level or inside a group) asks for a sweep,
 * which repairs it; a clean tree costs no writes. */
static void test_verify_slices(void **state)
{
    (void)state;
    struct ctx c;
    setup_ctx(&c, 13);
    const char *sub = "subsystems/nqn.2024-01.com.example:v1";
    remember(&c, SM_SUBSYS, try_call(&c, "nvmet.subsys.create",
                                     "[{\"name\": \"nqn.2024-01.com.example:v1\", "
                                     "\"allow_any_host\": false}]"));
    remember(&c, SM_HOST,
             try_call(&c, "nvmet.host.create", "[{\"hostnqn\": \"nqn.2024-01.com.example:h\"}]"));
    nv_free(try_call(&c, "nvmet.host_subsys.create", "[{\"host\": 1, \"subsys\": 1}]"));
    nv_free(try_call(&c, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]"));
    nv_free(try_call(&c, "nvmet.namespace.create",
                     "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\", \"enabled\": true}]"));
    assert_int_equal(tgt_verify_slice(c.f.t, 4, &(struct tgt_report){0}, &(bool){false}), -EAGAIN);
    assert_int_equal(pass(&c, &active), 0);
    assert_true(tgt_rendered_objects(c.f.t) > 6);
    unsigned drift;
    struct tgt_stats a, b;
    tgt_stats(c.f.t, &a);
    assert_int_equal(verify_round(&c, 3, &drift), 0);
    tgt_stats(c.f.t, &b);
    assert_int_equal(drift, 0);
    assert_int_equal(b.write + b.mkdir + b.symlink + b.unlink + b.rmdir,
                     a.write + a.mkdir + a.symlink + a.unlink + a.rmdir);
    assert_true(b.read > a.read); /* the attributes were read */

    char rel[600];
    snprintf(rel, sizeof rel, "%s/attr_allow_any_host", sub);
    fx_write(&c.f, rel, "1");
    snprintf(rel, sizeof rel, "%s/namespaces/1/enable", sub);
    fx_write(&c.f, rel, "0");
    assert_int_equal(verify_round(&c, 3, &drift), 0);
    assert_int_equal(drift, 2);
    snprintf(rel, sizeof rel, "%s/attr_allow_any_host", sub);
    fx_expect(&c.f, rel, "0");
    snprintf(rel, sizeof rel, "%s/namespaces/1/enable", sub);
    fx_expect(&c.f, rel, "1");

    /* a namespace made by hand inside a subsystem, then one at the top */
    for (int k = 0; k < 3; k++) {
        char path[900];
        if (k == 0) {
            snprintf(path, sizeof path, "%s/nvmet/%s/namespaces/9", c.f.root, sub);
        } else if (k == 1) {
            snprintf(path, sizeof path, "%s/nvmet/subsystems/nqn.2024-01.com.example:hand",
                     c.f.root);
        } else { /* a rendered namespace vanishes */
            snprintf(path, sizeof path, "%s/nvmet/%s/namespaces/1", c.f.root, sub);
        }
        char cmd[1000];
        snprintf(cmd, sizeof cmd, k < 2 ? "mkdir -p '%s'" : "rm -rf '%s'", path);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(verify_round(&c, 3, &drift), -ESTALE);
        assert_int_equal(verify_round(&c, 3, &drift), -EAGAIN); /* until the sweep */
        struct tgt_report rep = {0};
        assert_int_equal(tgt_reconcile(c.f.t, c.s, &active, true, &rep), 0);
        assert_true(rep.drift > 0);
        tgt_report_clear(&rep);
        expect_desired(&c, &active, k);
        assert_int_equal(verify_round(&c, 3, &drift), 0);
        assert_int_equal(drift, 0);
    }
    sm_free(c.s);
    fx_teardown(&c.f);
}

/* The failover guardian's release (the real one: unlinks the subsystems
 * of ports below 5000, sets this node's ANA groups inaccessible) is put
 * back by the pass after tgt_mark_released, a full pass that is no
 * sweep. */
static void test_released_repair(void **state)
{
    (void)state;
    struct ctx c;
    setup_ctx(&c, 17);
    remember(&c, SM_SUBSYS,
             try_call(&c, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:r1\"}]"));
    remember(&c, SM_SUBSYS, try_call(&c, "nvmet.subsys.create",
                                     "[{\"name\": \"nqn.2024-01.com.example:r2\", \"ana\": true}]"));
    nv_free(try_call(&c, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]"));
    nv_free(try_call(&c, "nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 2}]"));
    assert_int_equal(pass(&c, &ha), 0);
    expect_desired(&c, &ha, 0);
    assert_true(fo__release_configfs(c.f.root, "test", NULL, NULL) >= 2);
    fx_expect(&c.f, "ports/5001/ana_groups/2/ana_state", "inaccessible");
    tgt_mark_released(c.f.t);
    struct tgt_stats a, b;
    tgt_stats(c.f.t, &a);
    struct sm_changes none = {0};
    struct tgt_report rep = {0};
    assert_int_equal(tgt_reconcile_changes(c.f.t, c.s, &ha, &none, &rep), 0);
    assert_false(rep.swept);
    tgt_report_clear(&rep);
    tgt_stats(c.f.t, &b);
    assert_int_equal(b.full_passes, a.full_passes + 1);
    expect_desired(&c, &ha, 1);
    sm_free(c.s);
    fx_teardown(&c.f);
}

/* One create among many: an incremental pass touches that subsystem only
 * (the same configfs calls with 1 or 248 subsystems present). */
static void test_delta_cost_flat(void **state)
{
    (void)state;
    struct ctx c;
    setup_ctx(&c, 7);
    uint64_t calls[2] = {0, 0};
    for (int round = 0; round < 2; round++) {
        size_t have = round == 0 ? 1 : MAXIDS - 8;
        for (int guard = 0; c.nids[SM_SUBSYS] < have && guard < MAXIDS; guard++) {
            char p[128];
            snprintf(p, sizeof p, "[{\"name\": \"nqn.2024-01.com.example:f%u\"}]", ++c.serial);
            remember(&c, SM_SUBSYS, try_call(&c, "nvmet.subsys.create", p));
        }
        assert_int_equal(c.nids[SM_SUBSYS], have);
        assert_int_equal(pass(&c, &active), 0);
        struct tgt_stats a, b;
        tgt_stats(c.f.t, &a);
        char p[128];
        snprintf(p, sizeof p, "[{\"name\": \"nqn.2024-01.com.example:f%u\"}]", ++c.serial);
        remember(&c, SM_SUBSYS, try_call(&c, "nvmet.subsys.create", p));
        assert_int_equal(pass(&c, &active), 0);
        tgt_stats(c.f.t, &b);
        assert_int_equal(b.full_passes, a.full_passes);
        calls[round] = (b.mkdir + b.write + b.read + b.readdir + b.stat + b.symlink) -
                       (a.mkdir + a.write + a.read + a.readdir + a.stat + a.symlink);
    }
    assert_true(calls[0] > 0);
    assert_int_equal(calls[0], calls[1]);
    sm_free(c.s);
    fx_teardown(&c.f);
}

/* A serial change after a host identified the controller, in an
 * incremental pass: the subsystem is recreated, and its namespace and
 * access list, which the change list does not name, are put back too.
 * (Not on a port: the statemachine refuses identity changes of an
 * exposed subsystem while the target runs.) */
static void test_delta_identity_recreates(void **state)
{
    (void)state;
    struct ctx c;
    setup_ctx(&c, 9);
    const char *sub = "subsystems/nqn.2024-01.com.example:id";
    remember(&c, SM_SUBSYS,
             try_call(&c, "nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:id\"}]"));
    remember(&c, SM_HOST,
             try_call(&c, "nvmet.host.create", "[{\"hostnqn\": \"nqn.2024-01.com.example:h\"}]"));
    nv_free(try_call(&c, "nvmet.host_subsys.create", "[{\"host\": 1, \"subsys\": 1}]"));
    nv_free(try_call(&c, "nvmet.namespace.create",
                     "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\", \"enabled\": true}]"));
    assert_int_equal(pass(&c, &active), 0);
    char p[1024];
    snprintf(p, sizeof p, "%s/" TGT_EMU_STATE_DIR "/identified/nqn.2024-01.com.example:id",
             c.f.root);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    struct tgt_stats a, b;
    tgt_stats(c.f.t, &a);
    nv_free(try_call(&c, "nvmet.subsys.update", "[1, {\"serial\": \"NEWSERIAL01\"}]"));
    struct sm_changes ch;
    sm_changes(c.s, &ch);
    assert_int_equal(ch.n, 1);
    struct tgt_report rep = {0};
    assert_int_equal(tgt_reconcile_changes(c.f.t, c.s, &active, &ch, &rep), 0);
    sm_changes_clear(c.s);
    tgt_stats(c.f.t, &b);
    assert_int_equal(b.full_passes, a.full_passes);
    assert_int_equal(rep.recreated, 1);
    tgt_report_clear(&rep);
    char rel[600];
    snprintf(rel, sizeof rel, "%s/attr_serial", sub);
    fx_expect(&c.f, rel, "NEWSERIAL01");
    snprintf(rel, sizeof rel, "%s/namespaces/1/enable", sub);
    fx_expect(&c.f, rel, "1");
    snprintf(rel, sizeof rel, "%s/allowed_hosts/nqn.2024-01.com.example:h", sub);
    fx_expect_link(&c.f, rel, "hosts/nqn.2024-01.com.example:h");
    expect_desired(&c, &active, 0);
    /* and nothing left for a sweep */
    assert_int_equal(tgt_reconcile(c.f.t, c.s, &active, true, &rep), 0);
    assert_int_equal(rep.drift, 0);
    assert_int_equal(rep.mkdirs + rep.rmdirs + rep.writes + rep.links + rep.unlinks, 0);
    tgt_report_clear(&rep);
    sm_free(c.s);
    fx_teardown(&c.f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_random_active),
        cmocka_unit_test(test_delta_random_standby),
        cmocka_unit_test(test_delta_random_ha),
        cmocka_unit_test(test_delta_cost_flat),
        cmocka_unit_test(test_delta_ha_additions),
        cmocka_unit_test(test_verify_slices),
        cmocka_unit_test(test_released_repair),
        cmocka_unit_test(test_delta_identity_recreates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
