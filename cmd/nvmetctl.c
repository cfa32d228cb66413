/* nvmetctl: call one method of an nvmet-ha node, like TrueNAS's midclt.
 *
 *   nvmetctl [--url HOST:PORT[,HOST:PORT...] | --socket PATH]
 *            [--api-key-file F] [--cacert F] [--cert F --key F] [--plaintext]
 *            [--timeout SECONDS] call METHOD [ARG ...]
 *   nvmetctl key generate|hash --name NAME --role admin|readonly
 *
 * TCP endpoints speak TLS unless --plaintext: the node's certificate must
 * chain to --cacert (else the system's CA store) and name the host given
 * in --url. A certificate that does not verify is final ([EPROTO]), not
 * retried: another attempt would meet the same certificate.
 *
 * The call is retried until --timeout runs out (not for a fixed number of
 * rounds), so that it rides through a leader election:
 *   - an unreachable node, a lost connection or an attempt that timed out
 *     is retried (on the next listed node, or the same one a moment later);
 *   - with several URLs, NOT_LEADER / NO_QUORUM / leadership lost go to the
 *     next node, or straight to the leader a NOT_LEADER answer names when it
 *     is listed. With one endpoint those answers are final: the node has
 *     already held the call for its hold timeout waiting for a leader (and
 *     re-run a write whose outcome was unknown), so asking it again would
 *     only repeat that wait.
 * After each round over the endpoints it pauses 50 ms, doubling up to
 * 500 ms, never past the deadline. Every attempt carries the SAME client id
 * and msgid: the cluster's session table answers a write that already
 * committed with its first result instead of applying it twice. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ctl.h"
#include "ctl_out.h"
#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

#define DEFAULT_SOCKET "/run/nvmet-ha/nvmetd.sock" /* nvmetd's default --socket */
#define DEFAULT_TIMEOUT_S 30
#define BACKOFF_FIRST_MS 50L /* pause after the first round over the endpoints */
#define BACKOFF_MAX_MS 500L  /* the pause doubles up to this */
#define CONNECT_TIMEOUT_MS 1000u


static void usage(FILE *f)
{
    fprintf(f,
            "usage: nvmetctl [options] call METHOD [ARG ...]\n"
            "       nvmetctl [options] batch [--window N] [FILE|-]  one call a line\n"
            "       nvmetctl [options] import-nvmetcli [--dry-run] FILE  an nvmetcli config\n"
            "       nvmetctl [options] status          the cluster at a glance\n"
            "       nvmetctl [options] methods [GLOB]  the methods and the role each needs\n"
            "       nvmetctl [options] subscribe [--count N] [--timeout SECONDS] [COLLECTION ...]\n"
            "       nvmetctl key generate|hash --name NAME --role admin|readonly (see\n"
            "       nvmetctl key --help)\n"
            "       nvmetctl --version\n"
            "\n"
            "call: calls METHOD on an nvmet-ha node over msgpack-rpc and prints the result.\n"
            "status: every member's role, term, applied index, render and failover state,\n"
            "  VIPs held, storage and problems, after a line 'cluster: healthy' or\n"
            "  'cluster: DEGRADED: why'; exit status 0 healthy, 1 degraded, 2 no answer.\n"
            "subscribe: prints the collection_update events of each COLLECTION (nvmet.subsys,\n"
            "  ..., nvmet.global, failover.status; default *, everything) as one JSON object\n"
            "  a line until interrupted, --count N events or --timeout SECONDS; moves to the\n"
            "  next --url endpoint when its node goes away and prints\n"
            "  {\"msg\": \"RECONNECTED\", \"endpoint\": EP} once subscribed there again.\n"
            "\n"
            "options:\n"
            "  --socket PATH          the local nvmetd's unix socket (default: $NVMETCTL_SOCKET,\n"
            "                         else $NVMET_SOCKET, else " DEFAULT_SOCKET
            ")\n"
            "  --url HOST:PORT[,...]  TCP endpoints of cluster nodes ([V6]:PORT for IPv6;\n"
            "                         default $NVMETCTL_URL); tried in turn while a node is\n"
            "                         unreachable or not the leader (a listed leader named\n"
            "                         by NOT_LEADER next); one that did not answer last\n"
            "                         time is tried last\n"
            "  --api-key-file FILE    the API key for TCP logins (first line of FILE;\n"
            "                         default $NVMETCTL_API_KEY_FILE)\n"
            "  -o, --output FORMAT    json (default) or table: a list of objects as columns\n"
            "  --cacert FILE          CA certificates (PEM) that verify the nodes' TLS\n"
            "                         certificates (default: the system's CA store); a\n"
            "                         certificate must also name the host given in --url\n"
            "  --cert FILE, --key FILE  a client certificate and its key (mode 0600), for\n"
            "                         nodes that require one\n"
            "  --plaintext            TCP without TLS (nodes started with --rpc-plaintext)\n"
            "  --timeout SECONDS      give up after this long (default %d); until then the\n"
            "                         call is retried, pausing 50 ms to 500 ms between\n"
            "                         rounds, with the same client id and msgid so that a\n"
            "                         write applies once. Retried: an unreachable node, a\n"
            "                         lost connection, no answer in time; with several URLs\n"
            "                         also NOT_LEADER, NO_QUORUM and leadership lost (one\n"
            "                         node answers those only after waiting for a leader\n"
            "                         itself)\n"
            "  -h, --help             this text\n"
            "\n"
            "arguments: each ARG is JSON; a bare word that is not valid JSON is a string;\n"
            "  '-' reads one JSON document from standard input.\n"
            "output: ints, strings and booleans print bare (strings without quotes), null as\n"
            "  null, anything else as JSON (indented when standard output is a terminal).\n"
            "errors: one line per error on standard error, '[ERRNAME] attribute: message'\n"
            "  (attribute ALL when the error has none).\n"
            "exit status: 0 success; 1 the node answered with an error; 2 usage error, or no\n"
            "  node could be reached or answered in time (e.g. [ECONNREFUSED] ALL: ...).\n"
            "\n"
            "examples:\n"
            "  nvmetctl call nvmet.subsys.create '{\"name\": \"nqn.2024-01.com.example:s1\"}'\n"
            "  nvmetctl call nvmet.subsys.query '[[\"id\", \"=\", 1]]' '{\"get\": true}'\n"
            "  nvmetctl --url 10.0.0.1:7100,10.0.0.2:7100 --api-key-file key --cacert ca.pem "
            "call cluster.status\n",
            DEFAULT_TIMEOUT_S);
}

long ctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

char *ctl_slurp(FILE *f)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf != NULL) {
        buf[len] = '\0';
    }
    return buf;
}

/* One JSON document. json-c cannot finish a bare number or literal at the
 * very end of its input, so a second try adds a space to end it. */
static struct nv *json_value(const char *text)
{
    struct nv *v = nv_from_json(text);
    if (v == NULL) {
        char *t = NULL;
        if (asprintf(&t, "%s ", text) >= 0) {
            v = nv_from_json(t);
            free(t);
        }
    }
    return v;
}

/* A command-line ARG: JSON, or else the word itself as a string. */
static struct nv *parse_arg(const char *a, bool *stdin_used)
{
    if (strcmp(a, "-") == 0) {
        if (*stdin_used) {
            fprintf(stderr, "nvmetctl: '-' (standard input) can be used once\n");
            return NULL;
        }
        *stdin_used = true;
        char *text = ctl_slurp(stdin);
        struct nv *v = text != NULL ? json_value(text) : NULL;
        if (v == NULL) {
            fprintf(stderr, "nvmetctl: standard input is not one JSON document\n");
        }
        free(text);
        return v;
    }
    struct nv *v = json_value(a);
    return v != NULL ? v : nv_str(a);
}

static char *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "nvmetctl: --api-key-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *k = ctl_slurp(f);
    fclose(f);
    if (k == NULL) {
        return NULL;
    }
    k[strcspn(k, "\n")] = '\0';
    size_t n = strlen(k);
    while (n > 0 && (k[n - 1] == '\r' || k[n - 1] == ' ' || k[n - 1] == '\t')) {
        k[--n] = '\0';
    }
    if (n == 0) {
        fprintf(stderr, "nvmetctl: --api-key-file %s is empty\n", path);
        free(k);
        return NULL;
    }
    return k;
}

/* "nvmetctl-" + 16 random hex digits: one per invocation, so that retries
 * of this call (and only they) share the session key. */
static void make_client_id(char *out, size_t len)
{
    unsigned char r[8] = {0};
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        memcpy(r, &x, sizeof r);
    }
    snprintf(out, len, "nvmetctl-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

static void print_result(const struct nv *v)
{
    switch (v != NULL ? v->t : NV_NIL) {
        case NV_NIL:
            puts("null");
            return;
        case NV_BOOL:
            puts(v->u.b ? "true" : "false");
            return;
        case NV_INT:
            printf("%" PRId64 "\n", v->u.i);
            return;
        case NV_STR:
            fwrite(v->u.s.p, 1, v->u.s.len, stdout);
            putchar('\n');
            return;
        default:
            break;
    }
    char *json = nv_to_json(v);
    if (json == NULL) {
        fprintf(stderr, "nvmetctl: out of memory\n");
        return;
    }
    struct json_object *o = isatty(STDOUT_FILENO) ? json_tokener_parse(json) : NULL;
    if (o != NULL) {
        puts(json_object_to_json_string_ext(
            o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        puts(json);
    }
    free(json);
}

/* "[ERRNAME] attribute: message" per validation item; otherwise the
 * reason as one such line (its own "[ERRNAME] " prefix, if any, kept). */
void ctl_print_error(const struct nv_err *e)
{
    for (size_t i = 0; i < e->n; i++) {
        const char *attr = e->items[i].attr;
        fprintf(stderr, "[%s] %s: %s\n", nv_errname(e->items[i].errnum),
                attr != NULL && attr[0] != '\0' ? attr : "ALL", e->items[i].msg);
    }
    if (e->n > 0) {
        return;
    }
    char *reason = nv_err_reason(e);
    const char *name = nv_errname(e->errnum);
    const char *msg = reason != NULL ? reason : "unknown error";
    size_t nl = strlen(name);
    if (msg[0] == '[' && strncmp(msg + 1, name, nl) == 0 && msg[nl + 1] == ']' &&
        msg[nl + 2] == ' ') {
        msg += nl + 3;
    }
    fprintf(stderr, "[%s] ALL: %s\n", name, msg);
    free(reason);
}

/* Errors after which another node (or the same, a moment later) may
 * succeed: the call did not run, or it may have and the session key makes
 * the retry safe. A node's own "no leader" answers (NOT_LEADER, NO_QUORUM,
 * leadership lost) come after it held the call for its hold timeout: they
 * are worth another node only (several endpoints). */
bool ctl_retryable(int rv, const struct nv_err *e, size_t n_eps)
{
    if (rv == -ECONNREFUSED || rv == -ECONNRESET || rv == -ECANCELED || rv == -ETIMEDOUT) {
        return true;
    }
    if (rv != -EREMOTEIO || n_eps < 2) {
        return false;
    }
    return e->code == NV_E_NOT_LEADER || e->code == NV_E_NO_QUORUM || e->errnum == NV_ENOTLEADER ||
           e->errnum == NV_ENOQUORUM || e->errnum == NV_ELEADERSHIPLOST;
}

static void sleep_ms(long ms)
{
    if (ms > 0) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- nvmetctl key generate | hash: local, no server ---- */

static void key_usage(FILE *f)
{
    fprintf(f,
            "usage: nvmetctl key generate --name NAME --role admin|readonly [--iterations N]\n"
            "       nvmetctl key hash --name NAME --role admin|readonly [--iterations N] < KEY\n"
            "\n"
            "generate: prints a new random API key (line 1: give it to the client, e.g. in a\n"
            "  0600 file for --api-key-file; it is not stored anywhere) and the line to\n"
            "  append to the server's --api-key-file (line 2: NAME ROLE HASH).\n"
            "hash: reads a key (the first line of standard input) and prints its line.\n"
            "  --iterations: PBKDF2 rounds (default %u, 1000 to 10000000).\n",
            RPC_KEY_ITERATIONS);
}

static int key_command(int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : "";
    const char *name = NULL, *role_text = NULL, *iter_text = NULL;
    for (int i = 2; i < argc; i++) {
        const char **dst = strcmp(argv[i], "--name") == 0         ? &name
                           : strcmp(argv[i], "--role") == 0       ? &role_text
                           : strcmp(argv[i], "--iterations") == 0 ? &iter_text
                                                                  : NULL;
        if (dst == NULL || i + 1 >= argc) {
            fprintf(stderr, "nvmetctl key: %s '%s'\n", dst == NULL ? "unknown option" : "no value for",
                    argv[i]);
            key_usage(stderr);
            return EXIT_LOCAL;
        }
        *dst = argv[++i];
    }
    bool gen = strcmp(verb, "generate") == 0;
    if (!gen && strcmp(verb, "hash") != 0) {
        key_usage(strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 ? stdout : stderr);
        return strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 ? EXIT_OK : EXIT_LOCAL;
    }
    enum rpc_role role;
    if (name == NULL || !rpc_key_name_valid(name)) {
        fprintf(stderr, "nvmetctl key: --name must be 1 to 64 letters, digits or . _ - @\n");
        return EXIT_LOCAL;
    }
    if (role_text == NULL || rpc_role_parse(role_text, &role) < 0) {
        fprintf(stderr, "nvmetctl key: --role must be admin or readonly\n");
        return EXIT_LOCAL;
    }
    unsigned long iter = 0;
    if (iter_text != NULL) {
        char *end;
        iter = strtoul(iter_text, &end, 10);
        if (*iter_text == '\0' || *end != '\0' || iter < 1000 || iter > 10000000) {
            fprintf(stderr, "nvmetctl key: --iterations must be 1000 to 10000000\n");
            return EXIT_LOCAL;
        }
    }
    char key[128];
    if (gen) {
        if (rpc_key_generate(key, sizeof key) < 0) {
            fprintf(stderr, "nvmetctl key: no random bytes\n");
            return EXIT_LOCAL;
        }
    } else {
        if (fgets(key, sizeof key, stdin) == NULL) {
            fprintf(stderr, "nvmetctl key hash: no key on standard input\n");
            return EXIT_LOCAL;
        }
        key[strcspn(key, "\r\n")] = '\0';
        size_t n = strlen(key);
        while (n > 0 && (key[n - 1] == ' ' || key[n - 1] == '\t')) {
            key[--n] = '\0';
        }
        if (n == 0 || strchr(key, ' ') != NULL || strchr(key, '\t') != NULL) {
            fprintf(stderr, "nvmetctl key hash: the first line of standard input must be one "
                            "key (1 to 126 characters, no blanks)\n");
            return EXIT_LOCAL;
        }
    }
    char hash[RPC_KEY_HASH_MAX];
    if (rpc_key_hash(key, strlen(key), (unsigned)iter, hash, sizeof hash) < 0) {
        fprintf(stderr, "nvmetctl key: hashing failed\n");
        return EXIT_LOCAL;
    }
    if (gen) {
        printf("%s\n", key);
        fprintf(stderr, "nvmetctl: line 1 is the new key (shown once), line 2 goes into the "
                        "server's --api-key-file\n");
    }
    printf("%s %s %s\n", name, rpc_role_name(role), hash);
    memset(key, 0, sizeof key);
    return EXIT_OK;
}

/* ---- the calls: options, endpoints, retries ---- */


/* Where the endpoints that did not answer last time are remembered (one
 * a line), so that the next run tries the others first: a dead node must
 * not cost every command its connect timeout. */
static void bad_path(char *out, size_t len)
{
    const char *dir = getenv("XDG_RUNTIME_DIR");
    snprintf(out, len, "%s/nvmetctl-%u.unreachable", dir != NULL && dir[0] ? dir : "/tmp",
             (unsigned)getuid());
}

static bool was_bad(const char *ep)
{
    char path[512], line[300];
    bad_path(path, sizeof path);
    FILE *f = fopen(path, "r");
    bool bad = false;
    while (f != NULL && !bad && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        bad = strcmp(line, ep) == 0;
    }
    if (f != NULL) {
        fclose(f);
    }
    return bad;
}

static void remember_bad(const struct ctl *c, const bool *bad)
{
    if (c->urls == NULL) {
        return;
    }
    char path[512], tmp[530];
    bad_path(path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n_eps; i++) {
        if (bad[i]) {
            fprintf(f, "%s\n", c->eps[i]);
        }
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
    }
}

/* Parse options up to the subcommand; *next = its index. */
static int parse_opts(int argc, char **argv, struct ctl *c, int *next)
{
    c->timeout_s = DEFAULT_TIMEOUT_S;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(EXIT_OK);
        }
        if (a[0] != '-') {
            break;
        }
        if (strcmp(a, "--plaintext") == 0) {
            c->tls.plaintext = true;
            continue;
        }
        enum { N_OPTS = 9 };
        const char *names[N_OPTS] = {"--url",  "--socket", "--api-key-file", "--cacert", "--cert",
                                     "--key",  "--output", "-o",             "--timeout"};
        const char **dst[N_OPTS] = {&c->url,           &c->sock,         &c->key_file,
                                    &c->tls.ca_file,   &c->tls.cert_file, &c->tls.key_file,
                                    &c->output,        &c->output,        NULL};
        const char *val = NULL;
        int k = 0;
        for (; k < N_OPTS; k++) {
            size_t nl = strlen(names[k]);
            if (strcmp(a, names[k]) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "nvmetctl: %s needs a value\n", a);
                    return EXIT_LOCAL;
                }
                val = argv[++i];
                break;
            }
            if (strncmp(a, names[k], nl) == 0 && a[nl] == '=') {
                val = a + nl + 1;
                break;
            }
        }
        if (k == N_OPTS) {
            fprintf(stderr, "nvmetctl: unknown option '%s'\n", a);
            usage(stderr);
            return EXIT_LOCAL;
        }
        if (dst[k] != NULL) {
            *dst[k] = val;
        } else {
            char *end;
            c->timeout_s = strtol(val, &end, 10);
            if (*val == '\0' || *end != '\0' || c->timeout_s <= 0 || c->timeout_s > 86400) {
                fprintf(stderr, "nvmetctl: --timeout wants seconds (1..86400), not '%s'\n", val);
                return EXIT_LOCAL;
            }
        }
    }
    *next = i;
    if (c->output != NULL && strcmp(c->output, "json") != 0 && strcmp(c->output, "table") != 0) {
        fprintf(stderr, "nvmetctl: --output is json or table, not '%s'\n", c->output);
        return EXIT_LOCAL;
    }
    /* the environment fills what the command line left open */
    if (c->url == NULL && c->sock == NULL) {
        const char *e = getenv("NVMETCTL_URL");
        c->url = e != NULL && e[0] != '\0' ? e : NULL;
    }
    if (c->key_file == NULL) {
        const char *e = getenv("NVMETCTL_API_KEY_FILE");
        c->key_file = e != NULL && e[0] != '\0' ? e : NULL;
    }
    if (c->url != NULL && c->sock != NULL) {
        fprintf(stderr, "nvmetctl: give --url or --socket, not both\n");
        return EXIT_LOCAL;
    }
    if (c->tls.plaintext &&
        (c->tls.ca_file != NULL || c->tls.cert_file != NULL || c->tls.key_file != NULL)) {
        fprintf(stderr, "nvmetctl: --plaintext and --cacert/--cert/--key contradict\n");
        return EXIT_LOCAL;
    }
    return 0;
}

/* Endpoints (those that did not answer last time at the end), the key,
 * the client id. */
static int prepare(struct ctl *c)
{
    if (c->url != NULL) {
        /* a bad CA or key file is reported once, before any attempt */
        char msg[400];
        int trv = rpc_tls_opts_check(&c->tls, msg, sizeof msg);
        if (trv < 0) {
            fprintf(stderr, "[%s] ALL: %s\n", nv_errname(-trv), msg);
            return EXIT_LOCAL;
        }
        c->urls = strdup(c->url);
        char *save = NULL, *good[MAX_ENDPOINTS], *bad[MAX_ENDPOINTS];
        size_t ng = 0, nb = 0;
        for (char *t = c->urls ? strtok_r(c->urls, ",", &save) : NULL; t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ') {
                t++;
            }
            if (*t != '\0' && ng + nb < MAX_ENDPOINTS) {
                if (was_bad(t)) {
                    bad[nb++] = t;
                } else {
                    good[ng++] = t;
                }
            }
        }
        for (size_t k = 0; k < ng; k++) {
            c->eps[c->n_eps++] = good[k];
        }
        for (size_t k = 0; k < nb; k++) {
            c->eps[c->n_eps++] = bad[k];
        }
        if (c->n_eps == 0) {
            fprintf(stderr, "nvmetctl: --url lists no endpoint\n");
            return EXIT_LOCAL;
        }
    } else {
        const char *sock = c->sock;
        if (sock == NULL) {
            sock = getenv("NVMETCTL_SOCKET");
        }
        if (sock == NULL || sock[0] == '\0') {
            sock = getenv("NVMET_SOCKET");
        }
        if (sock == NULL || sock[0] == '\0') {
            sock = DEFAULT_SOCKET;
        }
        snprintf(c->unix_ep, sizeof c->unix_ep, "unix:%s", sock);
        c->eps[c->n_eps++] = c->unix_ep;
    }
    if (c->key_file != NULL && (c->key = read_key(c->key_file)) == NULL) {
        return EXIT_LOCAL;
    }
    make_client_id(c->client_id, sizeof c->client_id);
    return 0;
}

/* One call, retried over the endpoints until the deadline. 0 and *result
 * (owned), or the exit code with the error printed. params taken. */
int ctl_call1(struct ctl *c, const char *method, struct nv *params, struct nv **result)
{
    long deadline = ctl_now_ms() + c->timeout_s * 1000L;
    struct nv_err err;
    nv_err_init(&err);
    int rv = -ETIMEDOUT;
    bool done = false, bad[MAX_ENDPOINTS] = {false};
    size_t at = 0;
    long pause = BACKOFF_FIRST_MS;
    /* Bounded by the deadline: every round over the endpoints ends with a
     * pause of at least BACKOFF_FIRST_MS. */
    for (size_t attempt = 0; !done; attempt++) {
        long left = deadline - ctl_now_ms();
        if (left <= 0) {
            break;
        }
        /* With several nodes one that hangs (paused, partitioned) must not
         * eat the whole deadline: each attempt gets a share of it. */
        long per = left;
        if (c->n_eps > 1) {
            per = left / (long)c->n_eps;
            per = per < 1000 ? (left < 1000 ? left : 1000) : per;
        }
        struct rpc_sync_opts opts = {
            .api_key = c->key,
            .client_id = c->client_id,
            .msgid = 1,
            .timeout_ms = (unsigned)per,
            /* a node that does not answer its login in a second is down:
             * try the next one rather than wait for its TCP timeout */
            .connect_timeout_ms = c->n_eps > 1 ? CONNECT_TIMEOUT_MS : 0,
            .tls = &c->tls};
        rv = rpc_call_sync(c->eps[at], method, nv_copy(params), &opts, result, &err);
        if (rv == 0) {
            bad[at] = false;
            done = true;
            break;
        }
        bad[at] = rv == -ECONNREFUSED || rv == -ETIMEDOUT || rv == -ECONNRESET;
        if (!ctl_retryable(rv, &err, c->n_eps)) {
            break;
        }
        size_t next = (at + 1) % c->n_eps;
        /* NOT_LEADER names the leader: go there next if it is listed */
        for (size_t k = 0; err.leader != NULL && k < c->n_eps; k++) {
            if (k != at && strcmp(c->eps[k], err.leader) == 0) {
                next = k;
            }
        }
        at = next;
        if ((attempt + 1) % c->n_eps == 0) {
            left = deadline - ctl_now_ms();
            sleep_ms(pause < left ? pause : left);
            pause = pause * 2 < BACKOFF_MAX_MS ? pause * 2 : BACKOFF_MAX_MS;
        }
    }
    remember_bad(c, bad);
    nv_free(params);
    int code = EXIT_OK;
    if (!done) {
        if (!nv_err_isset(&err)) {
            nv_err_set(&err, NV_E_CALL, ETIMEDOUT, "%s: no answer within %ld s", method,
                       c->timeout_s);
            rv = -ETIMEDOUT;
        }
        ctl_print_error(&err);
        code = rv == -EREMOTEIO ? EXIT_REMOTE : EXIT_LOCAL;
    }
    nv_err_clear(&err);
    return code;
}

static int cmd_call(struct ctl *c, int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "nvmetctl: missing 'call METHOD'\n");
        usage(stderr);
        return EXIT_LOCAL;
    }
    struct nv *params = nv_arr();
    bool stdin_used = false;
    for (int j = 2; j < argc; j++) {
        struct nv *v = parse_arg(argv[j], &stdin_used);
        if (v == NULL) {
            nv_free(params);
            return EXIT_LOCAL;
        }
        nv_push(params, v);
    }
    struct nv *result = NULL;
    int code = ctl_call1(c, argv[1], params, &result);
    if (code == EXIT_OK) {
        if (c->output != NULL && strcmp(c->output, "table") == 0) {
            ctl_print_table(stdout, result);
        } else {
            print_result(result);
        }
        nv_free(result);
    }
    return code;
}

static int cmd_status(struct ctl *c, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "nvmetctl: status takes no arguments\n");
        return EXIT_LOCAL;
    }
    struct nv *result = NULL;
    int code = ctl_call1(c, "cluster.status", nv_arr(), &result);
    if (code != EXIT_OK) {
        return EXIT_LOCAL; /* 2: no status (1 means degraded) */
    }
    if (c->output != NULL && strcmp(c->output, "json") == 0) {
        print_result(result);
        nv_free(result);
        return EXIT_OK;
    }
    code = ctl_print_status(stdout, result);
    nv_free(result);
    return code;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmd_methods(struct ctl *c, int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "nvmetctl: methods takes one GLOB at most\n");
        return EXIT_LOCAL;
    }
    const char *glob = argc == 2 ? argv[1] : "*";
    struct nv *result = NULL;
    int code = ctl_call1(c, "core.get_methods", nv_arr(), &result);
    if (code != EXIT_OK) {
        return code;
    }
    size_t n = result != NULL && result->t == NV_MAP ? result->u.m.n : 0;
    const char **names = calloc(n + 1, sizeof *names);
    size_t k = 0;
    for (size_t i = 0; names != NULL && i < n; i++) {
        if (fnmatch(glob, result->u.m.kv[i].k, 0) == 0) {
            names[k++] = result->u.m.kv[i].k;
        }
    }
    qsort(names, k, sizeof *names, by_name);
    for (size_t i = 0; i < k; i++) {
        const struct nv *d = nv_get(result, names[i]);
        const char *role = nv_get_str(d, "role");
        printf("%-42s %s%s\n", names[i], role != NULL ? role : "?",
               nv_get_bool(d, "before_login", false) ? " (before login)" : "");
        const char *args = nv_get_str(d, "args");
        if (args != NULL) {
            printf("    %s\n", args);
        }
    }
    free(names);
    nv_free(result);
    return k > 0 ? EXIT_OK : EXIT_REMOTE;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "key") == 0) {
        return key_command(argc - 1, argv + 1);
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("nvmetctl %s\n", NVMET_HA_VERSION);
        return EXIT_OK;
    }
    struct ctl c = {0};
    int i = 0;
    int code = parse_opts(argc, argv, &c, &i);
    if (code != 0) {
        return code;
    }
    static const struct {
        const char *name;
        int (*fn)(struct ctl *c, int argc, char **argv);
    } cmds[] = {{"call", cmd_call},
                {"status", cmd_status},
                {"methods", cmd_methods},
                {"batch", ctl_batch},
                {"import-nvmetcli", ctl_import},
                {"subscribe", ctl_subscribe}};
    size_t k = 0;
    while (i < argc && k < sizeof cmds / sizeof cmds[0] && strcmp(argv[i], cmds[k].name) != 0) {
        k++;
    }
    if (i >= argc || k == sizeof cmds / sizeof cmds[0]) {
        fprintf(stderr, "nvmetctl: missing 'call METHOD', 'batch', 'status', 'methods' or "
                        "'subscribe'\n");
        usage(stderr);
        return EXIT_LOCAL;
    }
    code = prepare(&c);
    if (code == 0) {
        code = cmds[k].fn(&c, argc - i, argv + i);
    }
    free(c.key);
    free(c.urls);
    return code;
}
