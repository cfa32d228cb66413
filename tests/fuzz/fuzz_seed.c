/* Writes the seed corpus of every harness from the code itself: requests
 * framed the way clients send them, commands prepared and encoded by the
 * statemachine and framed into entries the way consensus proposes them, a
 * snapshot of a populated state, real filters and options, and valid and
 * invalid strings for each parser.
 *
 * Usage: fuzz_seed DIR (writes DIR/<harness>/seed-*; existing files with
 * the same names are replaced). Then minimize with libFuzzer's -merge=1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "nv.h"
#include "nv_json.h"
#include "sm.h"

static const char *out_dir;

static void put(const char *harness, const char *name, const void *prefix, size_t plen,
                const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, harness);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/seed-%s", out_dir, harness, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(prefix, 1, plen, f) != plen || fwrite(data, 1, len, f) != len ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static char *json_msgpack(const char *json, size_t *len)
{
    struct nv *v = nv_from_json(json);
    char *buf = NULL;
    if (v == NULL || nv_encode(v, &buf, len) < 0) {
        fprintf(stderr, "fuzz_seed: bad JSON %s\n", json);
        exit(1);
    }
    nv_free(v);
    return buf;
}

/* ---- fuzz_rpc_frame: [cut][limit][stream] ---- */

static const char *const requests[] = {
    "[0, 1, \"core.ping\", []]",
    "[0, 2, \"auth.login\", [\"client-key\"]]",
    "[0, 3, \"core.set_options\", [{\"client_id\": \"nvmetctl-1\"}]]",
    "[0, 4, \"nvmet.subsys.query\", [[[\"name\", \"=\", \"tank\"]], {\"get\": true}]]",
    ("[0, 5, \"nvmet.host.create\", [{\"hostnqn\": \"nqn.2024-01.com.example:h\", "
     "\"dhchap_key\": null}]]"),
    "[0, -6, \"nvmet.port.update\", [1, {\"addr_trsvcid\": 4420, \"inline_data_size\": null}]]",
    "[0, 7, \"failover.status\", [1.5, true, false, null, -9223372036854775808]]",
};

static void seeds_rpc_frame(void)
{
    char *stream = NULL;
    size_t slen = 0;
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        size_t len;
        char *m = json_msgpack(requests[i], &len);
        char name[32];
        snprintf(name, sizeof name, "request-%zu", i);
        put("fuzz_rpc_frame", name, "\x01\x00", 2, m, len);
        stream = realloc(stream, slen + len);
        memcpy(stream + slen, m, len);
        slen += len;
        free(m);
    }
    /* all of them pipelined on one connection, cut in reads of 1..136 bytes */
    put("fuzz_rpc_frame", "pipelined", "\x07\x00", 2, stream, slen);
    /* the same under a 1 KiB frame limit */
    put("fuzz_rpc_frame", "pipelined-limit", "\x07\x7e", 2, stream, slen);
    /* a header announcing a 4 GiB string, then a truncated message */
    static const char big[] = "\x94\x00\x01\xa4ping\x91\xdb\xff\xff\xff\xff";
    put("fuzz_rpc_frame", "str32-4g", "\x03\x00", 2, big, sizeof big - 1);
    put("fuzz_rpc_frame", "truncated", "\x02\x00", 2, stream, slen - 3);
    free(stream);
}

/* ---- fuzz_command: an entry ---- */

static void seeds_command(void)
{
    struct sm_state *s = sm_new();
    const char **cmds = calloc(fuzz_script_len, sizeof *cmds);
    size_t *lens = calloc(fuzz_script_len, sizeof *lens);
    fuzz_env_reset();
    for (size_t i = 0; i < fuzz_script_len; i++) {
        const struct fuzz_call *c = &fuzz_script[i];
        char *why = NULL;
        /* every other command carries a client session */
        char *cmd = fuzz_prepare(s, c->method, c->params, i % 2 ? "nvmetctl-7" : NULL, (int64_t)i,
                                 &lens[i], &why);
        if (cmd == NULL) {
            fprintf(stderr, "fuzz_seed: %s: %s\n", c->method, why);
            exit(1);
        }
        sm_result_free(sm_apply(s, cmd, lens[i]));
        cmds[i] = cmd;
        size_t elen;
        unsigned char *e = fuzz_entry(&cmds[i], &lens[i], 1, &elen);
        char name[64];
        snprintf(name, sizeof name, "%02zu-%s", i, c->method);
        put("fuzz_command", name, "", 0, e, elen);
        free(e);
    }
    /* the whole script as one batch: the later commands find their rows */
    size_t elen;
    unsigned char *e = fuzz_entry(cmds, lens, fuzz_script_len, &elen);
    put("fuzz_command", "script", "", 0, e, elen);
    free(e);
    /* a retried (client, seq) answered from the session table */
    const char *again[] = {cmds[3], cmds[3]};
    size_t again_len[] = {lens[3], lens[3]};
    e = fuzz_entry(again, again_len, 2, &elen);
    put("fuzz_command", "retry", "", 0, e, elen);
    free(e);
    /* the same command as an unknown future version and with none */
    for (int v = 0; v < 2; v++) {
        struct nv *c = nv_decode(cmds[2], lens[2], NULL);
        if (v == 0) {
            nv_set_int(c, "v", 2);
        } else {
            nv_del(c, "v");
        }
        char *buf;
        size_t blen;
        if (c == NULL || nv_encode(c, &buf, &blen) < 0) {
            exit(1);
        }
        const char *one[] = {buf};
        e = fuzz_entry(one, &blen, 1, &elen);
        put("fuzz_command", v == 0 ? "version-2" : "version-none", "", 0, e, elen);
        free(e);
        free(buf);
        nv_free(c);
    }
    for (size_t i = 0; i < fuzz_script_len; i++) {
        free((char *)cmds[i]);
    }
    free(cmds);
    free(lens);
    sm_free(s);
}

/* ---- fuzz_snapshot: [selector][snapshot] ---- */

static void seeds_snapshot(void)
{
    struct sm_state *s = sm_new();
    char *buf;
    size_t len;
    if (sm_snapshot(s, &buf, &len) < 0) {
        exit(1);
    }
    put("fuzz_snapshot", "empty", "\x02", 1, buf, len);
    free(buf);
    sm_free(s);
    s = fuzz_populated_state();
    /* sessions too: one remembered result */
    size_t clen;
    char *cmd = fuzz_prepare(s, "nvmet.host.update", "[2, {\"description\": \"db\"}]", "ui-3", 41,
                             &clen, NULL);
    if (cmd == NULL) {
        exit(1);
    }
    sm_result_free(sm_apply(s, cmd, clen));
    free(cmd);
    if (sm_snapshot(s, &buf, &len) < 0) {
        exit(1);
    }
    put("fuzz_snapshot", "populated", "\x05", 1, buf, len);
    free(buf);
    sm_free(s);
}

/* ---- fuzz_query: [table][params] ---- */

static const struct {
    int table;
    const char *params;
} queries[] = {
    {SM_SUBSYS, "[]"},
    {SM_SUBSYS, "[[[\"name\", \"=\", \"backup\"]], {\"get\": true}]"},
    {SM_SUBSYS,
     "[[[\"subnqn\", \"^\", \"nqn.2011-06\"], [\"serial\", \"!=\", null]], "
     "{\"order_by\": [\"-id\"], \"select\": [\"id\", [\"name\", \"n\"]]}]"},
    {SM_SUBSYS, "[[[\"hosts\", \"rin\", 1]], {\"extra\": {\"verbose\": true}}]"},
    {SM_SUBSYS,
     "[[[\"OR\", [[\"name\", \"~\", \"ta(n|c)k$\"], [\"pi_enable\", \"=\", true]]]], "
     "{\"count\": true}]"},
    {SM_NAMESPACE,
     "[[[\"subsys.name\", \"C$\", \"TANK\"]], {\"order_by\": [\"nulls_last:filesize\"]}]"},
    {SM_NAMESPACE, "[[[\"nsid\", \"in\", [1, 7, 9]]], {\"limit\": 1, \"offset\": 1}]"},
    {SM_NAMESPACE,
     "[[], {\"extra\": {\"retrieve_locked_info\": false}, \"select\": [\"locked\"]}]"},
    {SM_PORT, "[[[\"addr_trsvcid\", \">=\", 4420], [\"addr_adrfam\", \"nin\", [\"FC\"]]]]"},
    {SM_PORT,
     "[[[\"OR\", [[[\"id\", \"<\", 2], [\"enabled\", \"=\", true]], [\"id\", \">\", 2]]]]]"},
    {SM_HOST, "[[[\"hostnqn\", \"!^\", \"nqn.2014-08\"]], {\"order_by\": [\"hostnqn\", \"-id\"]}]"},
    {SM_HOST, "[[[\"dhchap_key\", \"!=\", null], [\"description\", \"C~\", \"^E.*\"]]]"},
    {SM_HOST_SUBSYS, "[[[\"host.hostnqn\", \"!$\", \":db\"]], {\"select\": [\"host.id\"]}]"},
    {SM_PORT_SUBSYS, "[[[\"port.addr_traddr\", \"rnin\", \".\"]], {\"count\": true}]"},
    {SM_PORT_SUBSYS, "[[[\"subsys.hosts.0\", \"=\", 1]], {\"force_sql_filters\": true}]"},
};

static void seeds_query(void)
{
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        size_t len;
        char *m = json_msgpack(queries[i].params, &len);
        unsigned char t = (unsigned char)queries[i].table;
        char name[32];
        snprintf(name, sizeof name, "query-%02zu", i);
        put("fuzz_query", name, &t, 1, m, len);
        free(m);
    }
}

/* ---- fuzz_parsers: [parser][string] ---- */

static const struct {
    unsigned char parser; /* enum parser of fuzz_parsers.c */
    const char *text;
} strings[] = {
    {0, "nqn.2024-01.com.example:nvme:tank"},
    {0, "nqn.2014-08.org.nvmexpress:uuid:6a1f3c2e-52b0-4a8e-9d51-0e2f6c1b7a10"},
    {0, "nqn.2014-08.org.nvmexpress.discovery"},
    {0, "nqn.24-01.com.x"},
    {1, "{12345678-1234-5678-1234-567812345678}"},
    {1, "urn:uuid:0123456789abcdef0123456789ABCDEF"},
    {2, "DHHC-1:01:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAl7OaH:"},
    {2, "DHHC-1:02:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wyg3Bcw==:"},
    {2, "DHHC-1:00:c2VjcmV0:"},
    {3, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAl7OaH"},
    {3, "YQ=="},
    {4, "198.51.100.7"},
    {4, "fe80::1%eth0"},
    {5, "/srv/./a/../b//c/"},
    {5, "//x/../../y"},
    {6, "subsys.hosts.*"},
    {6, "a\\.b.0"},
    {7,
     "\x18"
     "198.51.100.100\neth0"},
    {7,
     "\x40"
     "2001:db8::100\nbond0.12"},
    {8, "198.51.100.1:7001"},
    {9, "{\"a\": [1, 2.5, \"x\", null, true], \"b\": {\"c\": -9223372036854775808}}"},
};

static void seeds_parsers(void)
{
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "%u-%02zu", strings[i].parser, i);
        put("fuzz_parsers", name, &strings[i].parser, 1, strings[i].text, strlen(strings[i].text));
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    seeds_rpc_frame();
    seeds_command();
    seeds_snapshot();
    seeds_query();
    seeds_parsers();
    return 0;
}
