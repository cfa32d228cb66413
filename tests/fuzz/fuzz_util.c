/* Shared pieces of the harnesses: see fuzz.h. */
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cons_int.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "sm.h"

void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: property violated: %s\n", file, line, what);
    abort();
}

static uint64_t rnd_state;

void fuzz_env_reset(void)
{
    rnd_state = 88172645463325252ULL;
}

static void env_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    unsigned char *b = buf;
    if (rnd_state == 0) {
        fuzz_env_reset();
    }
    for (size_t i = 0; i < len; i++) {
        rnd_state ^= rnd_state << 13;
        rnd_state ^= rnd_state >> 7;
        rnd_state ^= rnd_state << 17;
        b[i] = (unsigned char)rnd_state;
    }
}

/* zvols are block devices, other paths under /srv are files (so both kinds
 * of namespace are recorded in commands) */
static enum sm_dev_kind env_stat(void *ctx, const char *path)
{
    (void)ctx;
    if (strncmp(path, "/dev/", 5) == 0) {
        return SM_DEV_BLOCK;
    }
    if (strcmp(path, "/srv") == 0) {
        return SM_DEV_DIR;
    }
    return strncmp(path, "/srv/", 5) == 0 ? SM_DEV_FILE : SM_DEV_MISSING;
}

const struct sm_env fuzz_env = {
    .random = env_random, .device_stat = env_stat, .ha = true, .rdma_capable = true};

#define SUB1 "nqn.2024-01.com.example:nvme:tank"
#define HOST1 "nqn.2014-08.org.nvmexpress:uuid:6a1f3c2e-52b0-4a8e-9d51-0e2f6c1b7a10"
#define KEY1 "DHHC-1:01:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAl7OaH:"
#define KEY2                                                                         \
    "DHHC-1:03:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIz" \
    "NDU2Nzg5Ojs8PT4/QJn7gCg=:"

/* Every write method with realistic arguments; later calls update and
 * delete what earlier ones created. */
const struct fuzz_call fuzz_script[] = {
    {"nvmet.global.init", "[]"},
    {"nvmet.global.update", "[{\"basenqn\": \"nqn.2011-06.com.truenas\", \"ana\": true}]"},
    {"nvmet.subsys.create", "[{\"name\": \"" SUB1 "\", \"serial\": \"TRUENAS001\"}]"},
    {"nvmet.subsys.create",
     "[{\"name\": \"backup\", \"allow_any_host\": true, "
     "\"pi_enable\": true, \"qid_max\": 8, \"ieee_oui\": \"00a098\", "
     "\"ana\": true}]"},
    {"nvmet.subsys.create", "[{\"name\": \"scratch\"}]"},
    {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"zvol/tank/nvme/ns1\"}]"},
    {"nvmet.namespace.create",
     "[{\"subsys_id\": 2, \"device_type\": \"FILE\", "
     "\"device_path\": \"/srv/backup.img\", \"filesize\": 1073741824, "
     "\"nsid\": 7, \"enabled\": false}]"},
    {"nvmet.namespace.create",
     "[{\"subsys\": 3, \"device\": \"zvol/tank/scratch\", "
     "\"device_uuid\": \"{12345678-1234-5678-1234-567812345678}\", "
     "\"device_nguid\": \"0123456789abcdef0123456789abcdef\"}]"},
    {"nvmet.port.create",
     "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"0.0.0.0\", "
     "\"addr_trsvcid\": \"4420\", \"addr_adrfam\": \"IPV4\"}]"},
    {"nvmet.port.create",
     "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"2001:db8::1\", "
     "\"addr_trsvcid\": 4421, \"inline_data_size\": 16384, "
     "\"max_queue_size\": 128}]"},
    {"nvmet.port.create", "[{\"addr_trtype\": \"RDMA\", \"addr_traddr\": \"198.51.100.7\"}]"},
    {"nvmet.port.create", "[{\"addr_trtype\": \"LOOP\", \"addr_traddr\": \"loop\"}]"},
    {"nvmet.host.create", "[{\"hostnqn\": \"" HOST1 "\", \"description\": \"esx-1\"}]"},
    {"nvmet.host.create",
     "[{\"hostnqn\": \"nqn.2024-01.com.example:host:db\", \"dhchap_key\": \"" KEY1 "\", "
     "\"dhchap_ctrl_key\": \"" KEY2 "\", \"dhchap_dhgroup\": \"4096-BIT\", "
     "\"dhchap_hash\": \"SHA-512\"}]"},
    {"nvmet.host_subsys.create", "[{\"host\": 1, \"subsys\": 1}]"},
    {"nvmet.host_subsys.create", "[{\"host_id\": 2, \"subsys_id\": 1}]"},
    {"nvmet.port_subsys.create", "[{\"port\": 1, \"subsys\": 1}]"},
    {"nvmet.port_subsys.create", "[{\"port_id\": 2, \"subsys_id\": 2}]"},
    {"nvmet.port_subsys.create", "[{\"port\": 3, \"subsys\": 1}]"},
    {"nvmet.subsys.update", "[3, {\"serial\": \"SCRATCH9\", \"pi_enable\": false}]"},
    {"nvmet.namespace.update", "[3, {\"nsid\": 9, \"enabled\": false}]"},
    {"nvmet.port.update", "[4, {\"enabled\": false}]"},
    {"nvmet.host.update", "[1, {\"description\": \"esx-1 (rack 4)\"}]"},
    {"nvmet.port.delete", "[4]"},
    {"nvmet.namespace.delete", "[3, {\"remove\": false}]"},
    {"nvmet.subsys.delete", "[3, {\"force\": true}]"},
    {"cluster.node.register",
     "[{\"id\": 1, \"kind\": \"data\", \"raft\": \"198.51.100.1:7001\", "
     "\"rpc\": \"198.51.100.1:7101\"}]"},
    {"cluster.node.register",
     "[{\"id\": 2, \"kind\": \"data\", \"raft\": \"198.51.100.2:7001\", "
     "\"rpc\": \"198.51.100.2:7101\"}]"},
    {"cluster.node.register",
     "[{\"id\": 3, \"kind\": \"witness\", \"raft\": \"198.51.100.3:7001\"}]"},
    {"failover.update",
     "[{\"takeover_delay_ms\": 500, \"announce_count\": 3, \"announce_interval_ms\": 200, "
     "\"vips\": [{\"address\": \"198.51.100.100\", \"prefix\": 24, \"interface\": \"eth0\", "
     "\"node_addresses\": {\"1\": \"198.51.100.1\", \"2\": \"198.51.100.2\"}}, "
     "{\"address\": \"2001:db8::100\", \"prefix\": 64, \"interface\": \"eth0\"}]}]"},
    {"failover.activate", "[{\"node\": 1, \"term\": 3}]"},
    {"cluster.node.unregister", "[3]"},
    {"nvmet.global.update", "[{\"enabled\": true}]"},
};
const size_t fuzz_script_len = sizeof fuzz_script / sizeof fuzz_script[0];

char *fuzz_prepare(const struct sm_state *s, const char *method, const char *params,
                   const char *client, int64_t seq, size_t *len, char **why)
{
    struct nv *p = nv_from_json(params);
    struct nv_err e;
    nv_err_init(&e);
    struct nv *cmd = NULL;
    char *buf = NULL;
    if (p == NULL) {
        nv_err_call(&e, EINVAL, "bad JSON: %s", params);
    } else if (sm_prepare(s, method, p, &fuzz_env, &cmd, &e) == 0 &&
               sm_command_encode(cmd, client, seq, &buf, len) < 0) {
        buf = NULL;
        nv_err_call(&e, ENOMEM, "out of memory");
    }
    if (why != NULL) {
        *why = buf == NULL ? nv_err_reason(&e) : NULL;
    }
    nv_free(cmd);
    nv_free(p);
    nv_err_clear(&e);
    return buf;
}

struct sm_state *fuzz_populated_state(void)
{
    struct sm_state *s = sm_new();
    FUZZ_CHECK(s != NULL);
    fuzz_env_reset();
    for (size_t i = 0; i < fuzz_script_len; i++) {
        const struct fuzz_call *c = &fuzz_script[i];
        size_t len;
        char *why = NULL;
        char *cmd = fuzz_prepare(s, c->method, c->params, NULL, -1, &len, &why);
        struct sm_result *r = cmd != NULL ? sm_apply(s, cmd, len) : NULL;
        if (r != NULL && r->err != NULL) {
            why = nv_err_reason(r->err);
        }
        if (r == NULL || r->err != NULL) {
            fprintf(stderr, "fuzz_populated_state: %s %s: %s\n", c->method, c->params,
                    why ? why : "out of memory");
            abort();
        }
        sm_result_free(r);
        free(cmd);
    }
    return s;
}

void fuzz_exercise_state(const struct sm_state *s)
{
    struct nv *verbose = nv_map();
    nv_set_bool(verbose, "verbose", true);
    nv_set_bool(verbose, "retrieve_locked_info", false);
    nv_free(sm_entries(s, SM_SUBSYS, NULL));
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        nv_free(sm_entries(s, (enum sm_table)t, verbose));
        const struct nv *row = sm_row(s, (enum sm_table)t, 0);
        if (row != NULL) {
            nv_free(sm_entry(s, (enum sm_table)t, nv_get_int(row, "id", 0), verbose));
        }
    }
    nv_free(verbose);
    nv_free(sm_global_entry(s));
    nv_free(sm_failover_config(s));
    uint64_t term;
    sm_active_node(s, &term);
    free(nv_dump(sm_cluster(s)));

    static struct sm_state *copy;
    if (copy == NULL) {
        copy = sm_new();
        FUZZ_CHECK(copy != NULL);
    }
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    FUZZ_CHECK(sm_snapshot(s, &a, &al) == 0);
    struct nv_err e;
    nv_err_init(&e);
    FUZZ_CHECK(sm_restore(copy, a, al, &e) == 0);
    nv_err_clear(&e);
    FUZZ_CHECK(sm_snapshot(copy, &b, &bl) == 0);
    FUZZ_CHECK(al == bl && memcmp(a, b, al) == 0);
    free(a);
    free(b);
    fuzz_state_reset(copy);
}

void fuzz_state_reset(struct sm_state *s)
{
    static char *empty;
    static size_t empty_len;
    if (empty == NULL) {
        struct sm_state *e = sm_new();
        FUZZ_CHECK(e != NULL && sm_snapshot(e, &empty, &empty_len) == 0);
        sm_free(e);
    }
    struct nv_err e;
    nv_err_init(&e);
    FUZZ_CHECK(sm_restore(s, empty, empty_len, &e) == 0);
    nv_err_clear(&e);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

unsigned char *fuzz_entry(const char *const *cmds, const size_t *lens, size_t n, size_t *len)
{
    size_t size = CONS_ENTRY_HDR;
    for (size_t i = 0; i < n; i++) {
        size += (4 + lens[i] + 7) & ~(size_t)7;
    }
    unsigned char *buf = calloc(1, size);
    if (buf == NULL) {
        return NULL;
    }
    put32(buf, CONS_ENTRY_MAGIC);
    put32(buf + 4, (uint32_t)n);
    size_t off = CONS_ENTRY_HDR;
    for (size_t i = 0; i < n; i++) {
        put32(buf + off, (uint32_t)lens[i]);
        memcpy(buf + off + 4, cmds[i], lens[i]);
        off += (4 + lens[i] + 7) & ~(size_t)7;
    }
    *len = size;
    return buf;
}

uint8_t fuzz_u8(struct fuzz_in *in)
{
    if (in->n == 0) {
        return 0;
    }
    in->n--;
    return *in->p++;
}

char *fuzz_rest_str(struct fuzz_in *in)
{
    char *s = malloc(in->n + 1);
    if (s == NULL) {
        abort();
    }
    memcpy(s, in->p, in->n);
    s[in->n] = '\0';
    in->p += in->n;
    in->n = 0;
    return s;
}
