/* Writes the seed corpus of every harness from the code itself: requests
 * framed the way clients send them, commands prepared and encoded by the
 * statemachine and framed into entries the way consensus proposes them, a
 * snapshot of a populated state, real filters and options, and valid and
 * invalid strings for each parser, libraft connection handshakes and
 * messages, alone and as the application data of real TLS handshakes
 * (PSK and certificates) recorded from cons_tls contexts.
 *
 * Usage: fuzz_seed DIR (writes DIR/<harness>/seed-*; existing files with
 * the same names are replaced). Then minimize with libFuzzer's -merge=1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cons_tr.h"
#include "fuzz.h"
#include "fuzz_tls.h"
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
    {10, "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"},
    {10, "1=[2001:db8::1]:7001,22=[fe80::1%eth0]:7002"},
    {10, "1=198.51.100.1:7001,1=198.51.100.2:7001"},
    {10, "0=127.0.0.1:1,,-1=127.0.0.1:2"},
    {10, "18446744073709551615=[::1]:65535"},
    {11, "nvmet-node-1"},
    {11, "nvmet-node-18446744073709551615"},
    {11, "nvmet-node-007"},
};

static void seeds_parsers(void)
{
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "%u-%02zu", strings[i].parser, i);
        put("fuzz_parsers", name, &strings[i].parser, 1, strings[i].text, strlen(strings[i].text));
    }
}

/* ---- fuzz_raft_handshake: [mode][cuts][stream] ---- */

struct wbuf {
    uint8_t b[8192];
    size_t n;
};

static void add64(struct wbuf *w, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        w->b[w->n++] = (uint8_t)(v >> (8 * i));
    }
}

static void add_zeros(struct wbuf *w, size_t n)
{
    memset(w->b + w->n, 0, n);
    w->n += n;
}

/* libraft 0.15's messages, laid out as its encoder writes them. */
static void add_append(struct wbuf *w, const uint32_t *lens, size_t n)
{
    add64(w, 1);
    add64(w, 48 + 16 * n);
    add64(w, 3); /* term */
    add64(w, 7); /* prev index */
    add64(w, 2); /* prev term */
    add64(w, 7); /* commit */
    add64(w, n);
    for (size_t i = 0; i < n; i++) {
        add64(w, 3);                                    /* term */
        add64(w, (uint64_t)(i % 3 + 1) | (uint64_t)lens[i] << 32); /* type, len */
    }
    add64(w, 0);
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < lens[i]; k++) {
            w->b[w->n++] = (uint8_t)(0x40 + k);
        }
    }
}

static void add_fixed(struct wbuf *w, uint64_t type, const uint64_t *v, size_t n)
{
    add64(w, type);
    add64(w, 8 * n);
    for (size_t i = 0; i < n; i++) {
        add64(w, v[i]);
    }
}

/* InstallSnapshot with a configuration of three voters and data bytes. */
static void add_install(struct wbuf *w, size_t data)
{
    static const char *const addrs[] = {"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"};
    uint8_t conf[128];
    size_t c = 0;
    conf[c++] = 1;
    for (int i = 0; i < 8; i++) {
        conf[c++] = i == 0 ? 3 : 0;
    }
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 8; i++) {
            conf[c++] = i == 0 ? (uint8_t)(s + 1) : 0;
        }
        memcpy(conf + c, addrs[s], strlen(addrs[s]) + 1);
        c += strlen(addrs[s]) + 1;
        conf[c++] = 1; /* voter */
    }
    while (c % 8 != 0) {
        conf[c++] = 0;
    }
    add64(w, 5);
    add64(w, 56 + c);
    add64(w, 3);  /* term */
    add64(w, 40); /* last index */
    add64(w, 3);  /* last term */
    add64(w, 1);  /* conf index */
    add64(w, c);
    memcpy(w->b + w->n, conf, c);
    w->n += c;
    add64(w, data);
    add64(w, 0);
    for (size_t i = 0; i < data; i++) {
        w->b[w->n++] = (uint8_t)i;
    }
}

/* A connection of node id: its handshake, then one message of each type. */
static void session(struct wbuf *w, uint64_t id, const char *address)
{
    w->n = 0;
    w->n += cons_wire_handshake_encode(id, address, w->b, sizeof w->b);
    const uint64_t vote[] = {4, id, 40, 3, 0};
    add_fixed(w, 3, vote, 5);
    add_append(w, NULL, 0); /* heartbeat */
    const uint32_t lens[] = {24, 8, 40};
    add_append(w, lens, 3);
    const uint64_t result[] = {3, 0, 41};
    add_fixed(w, 2, result, 3);
    const uint64_t vote_result[] = {4, 1, 0};
    add_fixed(w, 4, vote_result, 3);
    add_install(w, 48);
    const uint64_t timeout_now[] = {4, 40, 3};
    add_fixed(w, 6, timeout_now, 3);
}

static void put_stream(const char *name, uint8_t mode, uint8_t cuts, const uint8_t *p, size_t n)
{
    uint8_t prefix[2] = {mode, cuts};
    put("fuzz_raft_handshake", name, prefix, 2, p, n);
}

static void put_tls(const char *name, enum cons_tr_mode mode, uint64_t client, uint8_t cuts,
                    const struct wbuf *app)
{
    size_t len = 0;
    uint8_t *flight = fuzz_tls_client_flight(mode, client, app->b, app->n, &len);
    if (flight == NULL) {
        fprintf(stderr, "fuzz_seed: the TLS handshake of %s did not complete\n", name);
        exit(1);
    }
    put_stream(name, mode == CONS_TR_PSK ? 1 : 2, cuts, flight, len);
    free(flight);
}

static void seeds_raft_handshake(void)
{
    struct wbuf w;
    session(&w, 2, "127.0.0.1:9002");
    put_stream("plain", 0, 0, w.b, w.n);
    put_stream("plain-cut7", 0, 7, w.b, w.n);
    put_stream("plain-small", 0x10, 1, w.b, w.n);
    put_tls("psk", CONS_TR_PSK, 2, 0, &w);
    put_tls("psk-cut13", CONS_TR_PSK, 2, 13, &w);
    put_tls("cert", CONS_TR_CERT, 2, 0, &w);
    put_tls("cert-cut31", CONS_TR_CERT, 2, 31, &w);
    session(&w, 3, "[2001:db8::3]:9003");
    put_stream("plain-ipv6", 3, 5, w.b, w.n);
    /* node 2's credentials claiming node 3 */
    put_tls("psk-claims-3", CONS_TR_PSK, 2, 0, &w);
    put_tls("cert-claims-3", CONS_TR_CERT, 2, 0, &w);
    /* our own id, a stranger */
    session(&w, 1, "127.0.0.1:9001");
    put_stream("plain-self", 0, 0, w.b, w.n);
    put_tls("psk-self", CONS_TR_PSK, 1, 0, &w);
    session(&w, 9, "198.51.100.9:9009");
    put_stream("plain-stranger", 0, 0, w.b, w.n);
    /* a message above the small caps, and a huge header length */
    w.n = cons_wire_handshake_encode(2, "127.0.0.1:9002", w.b, sizeof w.b);
    const uint32_t big[] = {4096, 8};
    add_append(&w, big, 2);
    put_stream("plain-small-append", 0x10, 0, w.b, w.n);
    w.n = cons_wire_handshake_encode(2, "127.0.0.1:9002", w.b, sizeof w.b);
    add64(&w, 1);
    add64(&w, (uint64_t)1 << 63);
    add_zeros(&w, 64);
    put_stream("plain-huge-header", 0, 3, w.b, w.n);
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
    seeds_raft_handshake();
    return 0;
}
