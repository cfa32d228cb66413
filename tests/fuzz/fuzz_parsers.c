/* The string parsers and validators that see client or peer text, one per
 * value of the first input byte; the rest of the input is the string
 * (NUL-terminated in a buffer of exactly its size, so a read past it is an
 * ASan report).
 *
 * Properties: canonical forms are fixed points (a normalized UUID or path
 * normalizes to itself, a --cluster list written back parses to the same
 * members); what one parser accepts, its consumer accepts (an accepted VIP
 * has a canonical text; JSON written back parses; a Raft address nvmetd
 * accepts, in --raft or --cluster, the transport parses); a node's TLS
 * name has one spelling. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cons_int.h"
#include "cons_tr.h"
#include "fo_net.h"
#include "cons.h"
#include "fuzz.h"
#include "node.h"
#include "node_peers.h"
#include "nv.h"
#include "nv_json.h"
#include "query_int.h"
#include "sm_int.h"
#include "tgt.h"

static void nqn(const char *s)
{
    char msg[512];
    int rv = sm__nqn_check(s, msg, sizeof msg);
    bool valid = sm__valid_nqn(s);
    /* valid = the rules hold and the length (in characters) is in range */
    FUZZ_CHECK(!valid || rv == 0);
    FUZZ_CHECK(rv == 0 || memchr(msg, '\0', sizeof msg) != NULL);
}

static void uuid(const char *s)
{
    char out[37], again[37];
    if (sm__uuid_norm(s, out)) {
        FUZZ_CHECK(strlen(out) == 36);
        FUZZ_CHECK(sm__uuid_norm(out, again) && strcmp(out, again) == 0);
    }
}

static void dhchap(const char *s)
{
    const char *why = sm__dhchap_key_error(s);
    char msg[256];
    int rv = tgt_dhchap_check(s, msg, sizeof msg);
    FUZZ_CHECK(why == NULL || strlen(why) > 0);
    FUZZ_CHECK(rv == 0 || strlen(msg) > 0);
}

static void base64(const uint8_t *p, size_t n)
{
    /* out must hold len*3/4+3 bytes (sm.h); exactly that, for ASan */
    unsigned char *out = malloc(n * 3 / 4 + 3);
    FUZZ_CHECK(out != NULL);
    long got = sm_base64_decode((const char *)p, n, out);
    FUZZ_CHECK(got == -1 || (got >= 0 && (size_t)got <= n * 3 / 4));
    free(out);
}

static void normpath(const char *s)
{
    char *a = sm__normpath(s);
    FUZZ_CHECK(a != NULL);
    char *b = sm__normpath(a);
    FUZZ_CHECK(b != NULL && strcmp(a, b) == 0);
    free(a);
    free(b);
}

static void field_path(const char *s)
{
    struct path p;
    if (q__path_parse(s, &p) == 0) {
        FUZZ_CHECK(p.n >= 1);
        q__path_free(&p);
    }
}

/* "address\nifname" with the prefix from the next byte */
static void vip(struct fuzz_in *in)
{
    unsigned prefix = fuzz_u8(in);
    char *s = fuzz_rest_str(in);
    char *nl = strchr(s, '\n');
    const char *ifname = "eth0";
    if (nl != NULL) {
        *nl = '\0';
        ifname = nl + 1;
    }
    struct fo_vip v;
    char msg[256];
    if (fo_vip_parse(s, prefix, ifname, &v, msg, sizeof msg) == 0) {
        FUZZ_CHECK(v.family == AF_INET || v.family == AF_INET6);
        FUZZ_CHECK(strlen(v.text) > 0 && strlen(v.ifname) < sizeof v.ifname);
    }
    free(s);
}

static void raft_address(const char *s)
{
    struct sockaddr_storage sa;
    socklen_t len = 0;
    int rv = cons_parse_addr(s, &sa, &len);
    if (rv == 0) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&sa;
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&sa;
        FUZZ_CHECK((sa.ss_family == AF_INET && len == sizeof *v4 && v4->sin_port != 0) ||
                   (sa.ss_family == AF_INET6 && len == sizeof *v6 && v6->sin6_port != 0));
    }
    /* nvmetd's check (--raft, --cluster, cluster.add) lets through only
     * what the transport parses (addresses that fit a cons_peer) */
    if (node_raft_address_ok(s) && strlen(s) < sizeof ((struct cons_peer *)NULL)->address) {
        FUZZ_CHECK(rv == 0);
    }
}

/* A PSK identity or certificate name (binary: a ClientHello carries
 * lengths, not strings): what names an id is its canonical spelling, so
 * one node has exactly one name; and every id's name parses back. */
static void tls_name(const uint8_t *p, size_t n)
{
    char name[64];
    uint64_t id = cons_tls_parse_name((const char *)p, n);
    if (id != 0) {
        int len = snprintf(name, sizeof name, CONS_TLS_NAME_PREFIX "%llu", (unsigned long long)id);
        FUZZ_CHECK(len > 0 && (size_t)len == n && memcmp(name, p, n) == 0);
    }
    uint64_t any = 0;
    memcpy(&any, p, n < sizeof any ? n : sizeof any);
    if (any != 0) {
        int len = snprintf(name, sizeof name, CONS_TLS_NAME_PREFIX "%llu", (unsigned long long)any);
        FUZZ_CHECK(cons_tls_parse_name(name, (size_t)len) == any);
    }
}

/* --cluster: accepted members are distinct, nonzero, with addresses the
 * transport parses; the list written back parses to the same members. */
static void cluster_list(const char *s)
{
    struct cons_peer *peers = NULL, *again = NULL;
    size_t n = 0, m = 0;
    char msg[256] = "";
    if (node_parse_cluster(s, &peers, &n, msg, sizeof msg) < 0) {
        FUZZ_CHECK(msg[0] != '\0' && memchr(msg, '\0', sizeof msg) != NULL);
        return;
    }
    FUZZ_CHECK(n >= 1 && peers != NULL);
    size_t cap = n * (20 + 1 + sizeof peers[0].address + 1) + 1, used = 0;
    char *text = malloc(cap);
    FUZZ_CHECK(text != NULL);
    text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage sa;
        socklen_t len = 0;
        FUZZ_CHECK(peers[i].id != 0 && peers[i].role == CONS_ROLE_VOTER);
        FUZZ_CHECK(memchr(peers[i].address, '\0', sizeof peers[i].address) != NULL);
        FUZZ_CHECK(cons_parse_addr(peers[i].address, &sa, &len) == 0);
        for (size_t j = 0; j < i; j++) {
            FUZZ_CHECK(peers[j].id != peers[i].id);
        }
        used += (size_t)snprintf(text + used, cap - used, "%s%llu=%s", i ? "," : "",
                                 (unsigned long long)peers[i].id, peers[i].address);
        FUZZ_CHECK(used < cap);
    }
    FUZZ_CHECK(node_parse_cluster(text, &again, &m, msg, sizeof msg) == 0 && m == n);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(again[i].id == peers[i].id && again[i].role == peers[i].role &&
                   strcmp(again[i].address, peers[i].address) == 0);
    }
    free(text);
    free(again);
    free(peers);
}

static void json(const char *s)
{
    struct nv *v = nv_from_json(s);
    if (v != NULL) {
        char *text = nv_to_json(v);
        FUZZ_CHECK(text != NULL);
        struct nv *back = nv_from_json(text);
        FUZZ_CHECK(back != NULL);
        nv_free(back);
        free(text);
        nv_free(v);
    }
}

enum parser {
    NQN,
    UUID,
    DHCHAP,
    BASE64,
    IP,
    NORMPATH,
    FIELD_PATH,
    VIP,
    RAFT_ADDRESS,
    JSON,
    CLUSTER,
    TLS_NAME,
    N_PARSERS
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    enum parser which = (enum parser)(fuzz_u8(&in) % N_PARSERS);
    if (which == BASE64) {
        /* binary-safe: the decoder takes a length */
        uint8_t *copy = malloc(in.n ? in.n : 1);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, in.p, in.n);
        base64(copy, in.n);
        free(copy);
        return 0;
    }
    if (which == VIP) {
        vip(&in);
        return 0;
    }
    if (which == TLS_NAME) {
        uint8_t *copy = malloc(in.n ? in.n : 1);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, in.p, in.n);
        tls_name(copy, in.n);
        free(copy);
        return 0;
    }
    char *s = fuzz_rest_str(&in);
    switch (which) {
        case NQN:
            nqn(s);
            break;
        case UUID:
            uuid(s);
            break;
        case DHCHAP:
            dhchap(s);
            break;
        case IP:
            sm__ip_family(s);
            sm__strchars(s);
            break;
        case NORMPATH:
            normpath(s);
            break;
        case FIELD_PATH:
            field_path(s);
            break;
        case RAFT_ADDRESS:
            raft_address(s);
            break;
        case JSON:
            json(s);
            break;
        case CLUSTER:
            cluster_list(s);
            break;
        default:
            break;
    }
    free(s);
    return 0;
}
