/* target/: ANA mode against the emulated kernel. Each data node renders
 * into its own emulated kernel: the per-node ANA ports on the node's own
 * addresses, its ANA group on every port (optimized on the active node,
 * inaccessible elsewhere), namespace groups and enables, links, referrals
 * to the same port on the other data nodes, per-subsystem overrides,
 * controller-id ranges, and turning ANA off again. After every pass the
 * desired tree equals the live tree. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nv.h"
#include "test_tgt_util.h"

#define SUB1 "nqn.2024-01.com.example:nvme:ana1"
#define SUB2 "nqn.2024-01.com.example:nvme:plain2"
#define S1 "subsystems/" SUB1
#define S2 "subsystems/" SUB2
#define NS1 S1 "/namespaces/1"
#define NS2 S2 "/namespaces/1"
#define VIP1 "198.51.100.10"
#define VIP2 "198.51.100.20"

/* Node ids differ from slots on purpose: groups follow the slot
 * (node_slot + 1), addresses and referral names follow the node id. */
#define NODE_A 11
#define NODE_B 12
#define NODE_C 13

struct ctx {
    struct fx a, b; /* node A's and node B's kernels */
    struct rowset rs;
    int64_t sub1, port1;
};

/* Data node id (slot = id - 10) of a cluster of n data nodes. */
static struct tgt_view view(uint64_t id, unsigned n, bool active)
{
    struct tgt_view v = {.active = active,
                         .ha = true,
                         .node_id = id,
                         .node_slot = (unsigned)(id - 10),
                         .n_slots = n};
    for (unsigned i = 0; i < n; i++) {
        v.slot_ids[i] = 11 + i;
    }
    return v;
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    fx_setup(&c->a, NULL);
    fx_setup(&c->b, NULL);
    rs_init(&c->rs, true);
    nv_set_bool(c->rs.global, "ana", true);
    fx_device(&c->a, "/dev/zvol/tank/ana1");
    fx_device(&c->b, "/dev/zvol/tank/ana1");
    fx_device(&c->a, "/dev/zvol/tank/plain2");
    fx_device(&c->b, "/dev/zvol/tank/plain2");
    c->sub1 = rs_subsys(&c->rs, SUB1, "ANA0001");
    rs_ns(&c->rs, c->sub1, 1, "ZVOL", "zvol/tank/ana1", true);
    c->port1 = rs_port(&c->rs, 1, "TCP", VIP1, 4420, "IPV4");
    rs_port_subsys(&c->rs, c->port1, c->sub1);
    rs_vip(&c->rs, VIP1, "11", "10.0.0.11", "12", "10.0.0.12", "13", "10.0.0.13", NULL);
    rs_vip(&c->rs, VIP2, "11", "10.0.1.11", "12", "10.0.1.12", "13", "10.0.1.13", NULL);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    rs_free(&c->rs);
    fx_teardown(&c->a);
    fx_teardown(&c->b);
    free(c);
    return 0;
}

/* A second subsystem with ana given (true/false), its namespace, and port 2
 * on VIP2 linked to it. Returns the subsystem id. */
static int64_t add_sub2(struct ctx *c, bool ana)
{
    int64_t s = rs_subsys(&c->rs, SUB2, "PLAIN0002");
    nv_set_bool(rs_get(&c->rs, SM_SUBSYS, s), "ana", ana);
    rs_ns(&c->rs, s, 1, "ZVOL", "zvol/tank/plain2", true);
    int64_t p = rs_port(&c->rs, 2, "TCP", VIP2, 4420, "IPV4");
    rs_port_subsys(&c->rs, p, s);
    return s;
}

/* One incremental pass; then the desired tree must equal the live tree.
 * Returns the pass's error count. */
static int pass(struct fx *f, struct rowset *rs, const struct tgt_view *v, struct tgt_report *rep)
{
    int errors = fx_pass(f, rs, v, false, rep);
    struct nv *want = tgt__desired_nv(f->t, rs_rows(rs), v);
    struct nv *live = tgt_live_tree(f->t);
    if (!nv_equal(want, live)) {
        char *w = nv_dump(want), *l = nv_dump(live);
        fprintf(stderr, "desired: %s\nlive:    %s\n", w, l);
        free(w);
        free(l);
    }
    assert_true(nv_equal(want, live));
    nv_free(want);
    nv_free(live);
    return errors;
}

/* The objects (dirs and links, not attributes) of the live tree, one a
 * line in path order; links as "path -> target". */
static char *objects(struct fx *f)
{
    struct nv *live = tgt_live_tree(f->t);
    assert_non_null(live);
    size_t cap = 65536, n = 0;
    char *out = calloc(1, cap);
    for (size_t i = 0; i < live->u.m.n; i++) {
        const char *k = live->u.m.kv[i].k;
        const struct nv *v = live->u.m.kv[i].v;
        if (nv_is(v, NV_BOOL)) {
            n += (size_t)snprintf(out + n, cap - n, "%s\n", k);
        } else if (nv_is(v, NV_STR) && strncmp(v->u.s.p, "-> ", 3) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%s %s\n", k, v->u.s.p);
        }
        assert_true(n < cap);
    }
    nv_free(live);
    return out;
}

static void expect_objects(struct fx *f, const char *want)
{
    char *got = objects(f);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "objects:\n%s\nexpected:\n%s\n", got, want);
    }
    assert_string_equal(got, want);
    free(got);
}

static const char *problem(const struct tgt_report *r, size_t i, const char *key)
{
    return nv_get_str(nv_at(r->problems, i), key);
}

/* Global ana on, two data nodes: each node has ports/5001 on its own
 * address with its own group (2 optimized on the active A, 3 inaccessible
 * on the standby B), the subsystem linked there on both nodes, no plain
 * port 1, namespaces in the node's group and enabled on both, a referral
 * to the same port on the peer, and the controller-id split. */
static void test_two_nodes(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    const struct tgt_view a = view(NODE_A, 2, true), b = view(NODE_B, 2, false);
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 0);
    assert_int_equal(pass(&c->b, &c->rs, &b, &rep), 0);
    expect_objects(&c->a,
                   "ports/5001\n"
                   "ports/5001/ana_groups/2\n"
                   "ports/5001/referrals/5001-12\n"
                   "ports/5001/subsystems/" SUB1 " -> " SUB1 "\n" S1 "\n" NS1 "\n");
    expect_objects(&c->b,
                   "ports/5001\n"
                   "ports/5001/ana_groups/3\n"
                   "ports/5001/referrals/5001-11\n"
                   "ports/5001/subsystems/" SUB1 " -> " SUB1 "\n" S1 "\n" NS1 "\n");
    fx_expect(&c->a, "ports/5001/addr_traddr", "10.0.0.11");
    fx_expect(&c->b, "ports/5001/addr_traddr", "10.0.0.12");
    fx_expect(&c->a, "ports/5001/addr_trsvcid", "4420");
    fx_expect(&c->a, "ports/5001/addr_trtype", "tcp");
    fx_expect(&c->a, "ports/5001/ana_groups/2/ana_state", "optimized");
    fx_expect(&c->b, "ports/5001/ana_groups/3/ana_state", "inaccessible");
    fx_expect(&c->a, "ports/5001/ana_groups/1/ana_state", "optimized"); /* untouched */
    fx_expect(&c->b, "ports/5001/ana_groups/1/ana_state", "optimized");
    fx_expect(&c->a, "ports/5001/referrals/5001-12/addr_traddr", "10.0.0.12");
    fx_expect(&c->a, "ports/5001/referrals/5001-12/addr_trsvcid", "4420");
    fx_expect(&c->a, "ports/5001/referrals/5001-12/enable", "1");
    fx_expect(&c->b, "ports/5001/referrals/5001-11/addr_traddr", "10.0.0.11");
    fx_expect(&c->a, NS1 "/ana_grpid", "2");
    fx_expect(&c->b, NS1 "/ana_grpid", "3");
    fx_expect(&c->a, NS1 "/enable", "1");
    fx_expect(&c->b, NS1 "/enable", "1");
    fx_expect(&c->a, S1 "/attr_cntlid_min", "1");
    fx_expect(&c->a, S1 "/attr_cntlid_max", "31999");
    fx_expect(&c->b, S1 "/attr_cntlid_min", "32000");
    fx_expect(&c->b, S1 "/attr_cntlid_max", "65519");
    /* a sweep finds nothing to repair */
    assert_int_equal(fx_pass(&c->b, &c->rs, &b, true, &rep), 0);
    assert_int_equal(rep.writes + rep.mkdirs + rep.links + rep.drift, 0);
    tgt_report_clear(&rep);
}

/* Active <-> standby changes only the ANA state, the plain port's links
 * and the enables of namespaces without ANA: nothing is made or removed. */
static void test_flip_only_states(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    add_sub2(c, false); /* port 2: plain (sub2) and ANA (global) */
    const struct tgt_view act = view(NODE_A, 2, true), stb = view(NODE_A, 2, false);
    assert_int_equal(pass(&c->a, &c->rs, &act, &rep), 0);
    expect_objects(&c->a,
                   "ports/2\n"
                   "ports/2/ana_groups/2\n"
                   "ports/2/subsystems/" SUB2 " -> " SUB2
                   "\n"
                   "ports/5001\n"
                   "ports/5001/ana_groups/2\n"
                   "ports/5001/referrals/5001-12\n"
                   "ports/5001/referrals/5002\n"
                   "ports/5001/subsystems/" SUB1 " -> " SUB1
                   "\n"
                   "ports/5002\n"
                   "ports/5002/ana_groups/2\n"
                   "ports/5002/referrals/5001\n"
                   "ports/5002/referrals/5002-12\n" S1 "\n" NS1 "\n" S2 "\n" NS2 "\n");
    fx_expect(&c->a, "ports/2/addr_traddr", VIP2);
    fx_expect(&c->a, "ports/5002/addr_traddr", "10.0.1.11");
    fx_expect(&c->a, "ports/5001/referrals/5002/addr_traddr", "10.0.1.11");
    fx_expect(&c->a, NS2 "/ana_grpid", "1");
    fx_expect(&c->a, NS2 "/enable", "1");
    assert_int_equal(pass(&c->a, &c->rs, &stb, &rep), 0);
    assert_int_equal(rep.mkdirs + rep.rmdirs + rep.links, 0);
    assert_int_equal(rep.writes, 4); /* three ana_state, one enable */
    assert_int_equal(rep.unlinks, 1);
    fx_expect(&c->a, "ports/2/ana_groups/2/ana_state", "inaccessible");
    fx_expect(&c->a, "ports/5001/ana_groups/2/ana_state", "inaccessible");
    fx_expect(&c->a, "ports/5002/ana_groups/2/ana_state", "inaccessible");
    fx_expect(&c->a, NS2 "/enable", "0");
    fx_expect(&c->a, NS1 "/enable", "1");
    assert_int_equal(fx_count(&c->a, "ports/2/subsystems"), 0);
    fx_expect_link(&c->a, "ports/5001/subsystems/" SUB1, S1);
    assert_int_equal(pass(&c->a, &c->rs, &act, &rep), 0);
    assert_int_equal(rep.mkdirs + rep.rmdirs + rep.unlinks, 0);
    assert_int_equal(rep.writes, 4);
    assert_int_equal(rep.links, 1);
    fx_expect(&c->a, "ports/5001/ana_groups/2/ana_state", "optimized");
    fx_expect_link(&c->a, "ports/2/subsystems/" SUB2, S2);
    tgt_report_clear(&rep);
}

/* Global ana off with a subsystem ana=true: its port is plain and ANA,
 * the subsystem links to the ANA form, the other subsystem stays plain in
 * group 1, and every port carries this node's group. */
static void test_override_on(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    nv_set_bool(c->rs.global, "ana", false);
    nv_set_bool(rs_get(&c->rs, SM_SUBSYS, c->sub1), "ana", true);
    int64_t s2 = add_sub2(c, false);
    nv_set_nil(rs_get(&c->rs, SM_SUBSYS, s2), "ana");
    const struct tgt_view b = view(NODE_B, 2, true);
    assert_int_equal(pass(&c->b, &c->rs, &b, &rep), 0);
    expect_objects(&c->b,
                   "ports/1\n"
                   "ports/1/ana_groups/3\n"
                   "ports/1/referrals/2\n"
                   "ports/2\n"
                   "ports/2/ana_groups/3\n"
                   "ports/2/referrals/1\n"
                   "ports/2/subsystems/" SUB2 " -> " SUB2
                   "\n"
                   "ports/5001\n"
                   "ports/5001/ana_groups/3\n"
                   "ports/5001/referrals/5001-11\n"
                   "ports/5001/subsystems/" SUB1 " -> " SUB1 "\n" S1 "\n" NS1 "\n" S2 "\n" NS2
                   "\n");
    fx_expect(&c->b, "ports/1/addr_traddr", VIP1);
    fx_expect(&c->b, "ports/5001/addr_traddr", "10.0.0.12");
    fx_expect(&c->b, "ports/1/ana_groups/3/ana_state", "optimized");
    fx_expect(&c->b, NS1 "/ana_grpid", "3");
    fx_expect(&c->b, NS2 "/ana_grpid", "1");
    /* not licensed: no ANA anywhere, whatever the rows say */
    const struct tgt_view single = {.active = true};
    assert_int_equal(pass(&c->b, &c->rs, &single, &rep), 0);
    expect_objects(&c->b,
                   "ports/1\n"
                   "ports/1/referrals/2\n"
                   "ports/1/subsystems/" SUB1 " -> " SUB1
                   "\n"
                   "ports/2\n"
                   "ports/2/referrals/1\n"
                   "ports/2/subsystems/" SUB2 " -> " SUB2 "\n" S1 "\n" NS1 "\n" S2 "\n" NS2 "\n");
    fx_expect(&c->b, NS1 "/ana_grpid", "1");
    tgt_report_clear(&rep);
}

/* Global ana on with a subsystem ana=false: its port is both kinds; the
 * standby links only the ANA form and disables only the plain
 * subsystem's namespaces. */
static void test_override_off(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    add_sub2(c, false);
    const struct tgt_view b = view(NODE_B, 2, false);
    assert_int_equal(pass(&c->b, &c->rs, &b, &rep), 0);
    assert_true(fx_exists(&c->b, "ports/2"));
    assert_true(fx_exists(&c->b, "ports/5002"));
    assert_false(fx_exists(&c->b, "ports/1"));
    assert_int_equal(fx_count(&c->b, "ports/2/subsystems"), 0);
    assert_int_equal(fx_count(&c->b, "ports/5002/subsystems"), 0);
    fx_expect_link(&c->b, "ports/5001/subsystems/" SUB1, S1);
    fx_expect(&c->b, "ports/2/ana_groups/3/ana_state", "inaccessible");
    fx_expect(&c->b, NS1 "/enable", "1");
    fx_expect(&c->b, NS2 "/enable", "0");
    fx_expect(&c->b, NS2 "/ana_grpid", "1");
    tgt_report_clear(&rep);
}

/* Three data nodes: each ANA port refers to the same port on both other
 * nodes at their own addresses, and (xport_referral) to the other ANA
 * port at this node's address; controller ids split in three. */
static void test_three_nodes(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    add_sub2(c, true);
    const struct tgt_view b = view(NODE_B, 3, false);
    assert_int_equal(pass(&c->b, &c->rs, &b, &rep), 0);
    expect_objects(&c->b,
                   "ports/5001\n"
                   "ports/5001/ana_groups/3\n"
                   "ports/5001/referrals/5001-11\n"
                   "ports/5001/referrals/5001-13\n"
                   "ports/5001/referrals/5002\n"
                   "ports/5001/subsystems/" SUB1 " -> " SUB1
                   "\n"
                   "ports/5002\n"
                   "ports/5002/ana_groups/3\n"
                   "ports/5002/referrals/5001\n"
                   "ports/5002/referrals/5002-11\n"
                   "ports/5002/referrals/5002-13\n"
                   "ports/5002/subsystems/" SUB2 " -> " SUB2 "\n" S1 "\n" NS1 "\n" S2 "\n" NS2
                   "\n");
    fx_expect(&c->b, "ports/5001/referrals/5001-11/addr_traddr", "10.0.0.11");
    fx_expect(&c->b, "ports/5001/referrals/5001-13/addr_traddr", "10.0.0.13");
    fx_expect(&c->b, "ports/5001/referrals/5002/addr_traddr", "10.0.1.12");
    fx_expect(&c->b, "ports/5002/referrals/5002-13/addr_traddr", "10.0.1.13");
    fx_expect(&c->b, S1 "/attr_cntlid_min", "21840");
    fx_expect(&c->b, S1 "/attr_cntlid_max", "43678");
    /* without xport_referral only the referrals to the other nodes stay */
    nv_set_bool(c->rs.global, "xport_referral", false);
    assert_int_equal(pass(&c->b, &c->rs, &b, &rep), 0);
    assert_false(fx_exists(&c->b, "ports/5001/referrals/5002"));
    assert_int_equal(fx_count(&c->b, "ports/5001/referrals"), 2);
    /* the last of three slots takes the ids up to the kernel's maximum */
    const struct tgt_view cc = view(NODE_C, 3, false);
    assert_int_equal(pass(&c->a, &c->rs, &cc, &rep), 0);
    fx_expect(&c->a, S1 "/attr_cntlid_min", "43679");
    fx_expect(&c->a, S1 "/attr_cntlid_max", "65519");
    fx_expect(&c->a, NS1 "/ana_grpid", "4");
    tgt_report_clear(&rep);
}

/* A VIP without this node's address: a problem naming the port, the
 * port and its links are left out, everything else renders; a peer
 * without an address is a problem of that referral only. */
static void test_missing_address(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    add_sub2(c, true);
    nv_set_str(rs_get(&c->rs, SM_PORT, c->port1), "addr_traddr", "198.51.100.200");
    rs_vip(&c->rs, "198.51.100.200", "12", "10.0.2.12", NULL);
    const struct tgt_view a = view(NODE_A, 2, true), b = view(NODE_B, 2, false);
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 1);
    assert_string_equal(problem(&rep, 0, "object"), "ports/5001");
    assert_non_null(strstr(problem(&rep, 0, "error"),
                           "render port 1: ANA needs this node's own address for "
                           "198.51.100.200"));
    assert_false(fx_exists(&c->a, "ports/5001"));
    fx_expect_link(&c->a, "ports/5002/subsystems/" SUB2, S2);
    fx_expect(&c->a, NS1 "/ana_grpid", "2");
    fx_expect(&c->a, NS2 "/ana_grpid", "2");
    /* the problem stays listed by every pass until the address exists */
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 1);
    /* node B has its address, but not node A's for the referral */
    assert_int_equal(pass(&c->b, &c->rs, &b, &rep), 1);
    assert_string_equal(problem(&rep, 0, "object"), "ports/5001/referrals/5001-11");
    assert_non_null(
        strstr(problem(&rep, 0, "error"), "ANA needs node 11's address for 198.51.100.200"));
    fx_expect(&c->b, "ports/5001/addr_traddr", "10.0.2.12");
    fx_expect_link(&c->b, "ports/5001/subsystems/" SUB1, S1);
    /* the address arrives: the port renders */
    nv_set_str(nv_get(nv_at(c->rs.vips, 2), "node_addresses"), "11", "10.0.2.11");
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 0);
    fx_expect(&c->a, "ports/5001/addr_traddr", "10.0.2.11");
    fx_expect_link(&c->a, "ports/5001/subsystems/" SUB1, S1);
    fx_expect(&c->a, "ports/5001/ana_groups/2/ana_state", "optimized");
    tgt_report_clear(&rep);
}

/* A wildcard port is every node's wildcard: no VIP needed, no referral to
 * the other nodes (a host cannot be sent to 0.0.0.0). */
static void test_wildcard(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    nv_set_str(rs_get(&c->rs, SM_PORT, c->port1), "addr_traddr", "0.0.0.0");
    int64_t p6 = rs_port(&c->rs, 3, "TCP", "::", 4420, "IPV6");
    rs_port_subsys(&c->rs, p6, c->sub1);
    nv_free(c->rs.vips);
    c->rs.vips = nv_arr();
    const struct tgt_view a = view(NODE_A, 2, true);
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 0);
    fx_expect(&c->a, "ports/5001/addr_traddr", "0.0.0.0");
    fx_expect(&c->a, "ports/5003/addr_traddr", "::");
    fx_expect(&c->a, "ports/5003/addr_adrfam", "ipv6");
    assert_int_equal(fx_count(&c->a, "ports/5001/referrals"), 0);
    assert_int_equal(fx_count(&c->a, "ports/5003/referrals"), 0);
    fx_expect_link(&c->a, "ports/5003/subsystems/" SUB1, S1);
    tgt_report_clear(&rep);
}

/* ---- operation order ------------------------------------------------------- */

/* The emulated backend with every successful mkdir, rmdir and write
 * appended to <root>/ops.log, to check the order of a pass. */
static void oplog(struct tgt *t, const char *op, const char *rel, const char *val)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/ops.log", t->root);
    FILE *f = fopen(p, "a");
    assert_non_null(f);
    fprintf(f, "%s %s%s%s\n", op, rel, val != NULL ? " " : "", val != NULL ? val : "");
    fclose(f);
}

static int rec_mkdir(struct tgt *t, const char *rel)
{
    int rv = tgt__emu_ops.mkdir(t, rel);
    if (rv == 0) {
        oplog(t, "mkdir", rel, NULL);
    }
    return rv;
}

static int rec_rmdir(struct tgt *t, const char *rel)
{
    int rv = tgt__emu_ops.rmdir(t, rel);
    if (rv == 0) {
        oplog(t, "rmdir", rel, NULL);
    }
    return rv;
}

static int rec_write(struct tgt *t, const char *rel, const char *buf, size_t len)
{
    int rv = tgt__emu_ops.write(t, rel, buf, len);
    if (rv == 0) {
        char v[512];
        snprintf(v, sizeof v, "%.*s", (int)(len > 0 && buf[len - 1] == '\n' ? len - 1 : len), buf);
        oplog(t, "write", rel, v);
    }
    return rv;
}

static ssize_t rec_read(struct tgt *t, const char *rel, char *buf, size_t len)
{
    return tgt__emu_ops.read(t, rel, buf, len);
}

static int rec_symlink(struct tgt *t, const char *target, const char *rel)
{
    return tgt__emu_ops.symlink(t, target, rel);
}

static int rec_unlink(struct tgt *t, const char *rel)
{
    return tgt__emu_ops.unlink(t, rel);
}

static int rec_readdir(struct tgt *t, const char *rel, struct tgt_dirent **out, size_t *n)
{
    return tgt__emu_ops.readdir(t, rel, out, n);
}

static ssize_t rec_readlink(struct tgt *t, const char *rel, char *buf, size_t len)
{
    return tgt__emu_ops.readlink(t, rel, buf, len);
}

static int rec_load(struct tgt *t, const char *module)
{
    return tgt__emu_ops.load(t, module);
}

static const struct tgt_ops rec_ops = {
    .name = "emulated+log",
    .mkdir = rec_mkdir,
    .rmdir = rec_rmdir,
    .read = rec_read,
    .write = rec_write,
    .symlink = rec_symlink,
    .unlink = rec_unlink,
    .readdir = rec_readdir,
    .readlink = rec_readlink,
    .load = rec_load,
};

/* Line number (0-based) of the first log line equal to line; fails if
 * there is none. Truncates the log when reset. */
static int op_at(struct fx *f, const char *line)
{
    char p[4096], buf[4096];
    snprintf(p, sizeof p, "%s/ops.log", f->root);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    int n = 0, at = -1;
    while (at < 0 && fgets(buf, sizeof buf, fp) != NULL) {
        buf[strcspn(buf, "\n")] = '\0';
        if (strcmp(buf, line) == 0) {
            at = n;
        }
        n++;
    }
    fclose(fp);
    if (at < 0) {
        fail_msg("no operation \"%s\"", line);
    }
    return at;
}

static void op_reset(struct fx *f)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/ops.log", f->root);
    unlink(p);
}

/* The kernel takes any ana_grpid 1..128 and removes a group whether or
 * not namespaces name it; a namespace whose group no port has is
 * inaccessible on every port. So the group is made before a namespace
 * joins it, and the namespace is back in group 1 before the group goes:
 * turning ANA off leaves only the default group and the plain ports. */
static void test_ana_off_order(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    c->a.t->ops = &rec_ops;
    const struct tgt_view a = view(NODE_A, 2, true);
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 0);
    assert_true(op_at(&c->a, "mkdir ports/5001/ana_groups/2") <
                op_at(&c->a, "write " NS1 "/ana_grpid 2"));
    op_reset(&c->a);
    nv_set_bool(c->rs.global, "ana", false);
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 0);
    int grp1 = op_at(&c->a, "write " NS1 "/ana_grpid 1");
    assert_true(grp1 < op_at(&c->a, "rmdir ports/5001/ana_groups/2"));
    assert_true(grp1 < op_at(&c->a, "rmdir ports/5001"));
    expect_objects(&c->a,
                   "ports/1\n"
                   "ports/1/subsystems/" SUB1 " -> " SUB1 "\n" S1 "\n" NS1 "\n");
    assert_int_equal(fx_count(&c->a, "ports/1/ana_groups"), 1);
    fx_expect(&c->a, NS1 "/ana_grpid", "1");
    /* ANA back on after the slot moved: group 3 only */
    nv_set_bool(c->rs.global, "ana", true);
    const struct tgt_view moved = view(NODE_B, 2, true);
    assert_int_equal(pass(&c->a, &c->rs, &moved, &rep), 0);
    assert_int_equal(fx_count(&c->a, "ports/5001/ana_groups"), 2);
    fx_expect(&c->a, "ports/5001/ana_groups/3/ana_state", "optimized");
    fx_expect(&c->a, NS1 "/ana_grpid", "3");
    tgt_report_clear(&rep);
}

/* A node whose slot moves (1 -> 2) with ANA on: group 3 is made before
 * the namespace joins it, group 2 goes after the namespace left it. */
static void test_slot_moves(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    c->a.t->ops = &rec_ops;
    struct tgt_view v = view(NODE_A, 2, true);
    assert_int_equal(pass(&c->a, &c->rs, &v, &rep), 0);
    op_reset(&c->a);
    v.node_slot = 2;
    assert_int_equal(pass(&c->a, &c->rs, &v, &rep), 0);
    int join = op_at(&c->a, "write " NS1 "/ana_grpid 3");
    assert_true(op_at(&c->a, "mkdir ports/5001/ana_groups/3") < join);
    assert_true(join < op_at(&c->a, "rmdir ports/5001/ana_groups/2"));
    assert_int_equal(fx_count(&c->a, "ports/5001/ana_groups"), 2);
    fx_expect(&c->a, S1 "/attr_cntlid_min", "32000");
    tgt_report_clear(&rep);
}

/* Without a node slot there is no group to report: ANA ports and links
 * render, namespaces stay in group 1, no controller-id split. */
static void test_no_slot(void **state)
{
    struct ctx *c = *state;
    struct tgt_report rep = {0};
    struct tgt_view a = view(NODE_A, 2, true);
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 0);
    a.node_slot = 0;
    assert_int_equal(pass(&c->a, &c->rs, &a, &rep), 0);
    assert_int_equal(fx_count(&c->a, "ports/5001/ana_groups"), 1);
    fx_expect(&c->a, NS1 "/ana_grpid", "1");
    fx_expect_link(&c->a, "ports/5001/subsystems/" SUB1, S1);
    tgt_report_clear(&rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_only_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ana_off_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_slot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
