/* TLS credentials and reproducible randomness for the Raft transport
 * harness (fuzz_tls.h). */
#define OPENSSL_SUPPRESS_DEPRECATED /* RAND_set_rand_method: the one hook \
                                       that reaches every OpenSSL draw */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fuzz.h"
#include "fuzz_tls.h"

/* ------------------------------------------------------------------ */
/* randomness: splitmix64 streams */

static uint64_t rand_state[FUZZ_TLS_STREAMS];
static uint64_t *rand_cur = &rand_state[FUZZ_TLS_SETUP];

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int rand_bytes(unsigned char *buf, int num)
{
    for (int i = 0; i < num; i++) {
        buf[i] = (unsigned char)splitmix(rand_cur);
    }
    return 1;
}

static int rand_seed(const void *buf, int num)
{
    (void)buf, (void)num;
    return 1;
}

static int rand_add(const void *buf, int num, double entropy)
{
    (void)buf, (void)num, (void)entropy;
    return 1;
}

static int rand_status(void)
{
    return 1;
}

static const RAND_METHOD fixed_rand = {
    .seed = rand_seed,
    .bytes = rand_bytes,
    .add = rand_add,
    .pseudorand = rand_bytes,
    .status = rand_status,
};

void fuzz_tls_rand_reset(enum fuzz_tls_stream s)
{
    rand_state[s] = 0x6e766d6574000000ULL + (uint64_t)s;
    rand_cur = &rand_state[s];
}

void fuzz_tls_rand_use(enum fuzz_tls_stream s)
{
    rand_cur = &rand_state[s];
}

/* ------------------------------------------------------------------ */
/* credentials */

static struct cons_tls *nodes[2][FUZZ_TLS_NODES + 1]; /* [mode is cert][id] */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_tls: %s\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

/* A private file (0600, created here), as cons_tls requires for keys. */
static FILE *create(const char *dir, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        die(path);
    }
    return f;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e == NULL || !X509_add_ext(x, e, -1)) {
        die("certificate extension");
    }
    X509_EXTENSION_free(e);
}

/* A certificate of key for name, signed by issuer (self-signed when
 * issuer is NULL: the CA); fixed serial and dates, so the same bytes in
 * every run. */
static X509 *certify(EVP_PKEY *key, const char *name, X509 *issuer, EVP_PKEY *ikey, long serial)
{
    X509 *x = X509_new();
    if (x == NULL || !X509_set_version(x, 2) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(x), serial) ||
        !ASN1_TIME_set_string_X509(X509_getm_notBefore(x), "20200101000000Z") ||
        !ASN1_TIME_set_string_X509(X509_getm_notAfter(x), "20991231235959Z") ||
        !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                    (const unsigned char *)name, -1, -1, 0) ||
        !X509_set_pubkey(x, key)) {
        die("certificate");
    }
    if (issuer == NULL) {
        X509_set_issuer_name(x, X509_get_subject_name(x));
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        char san[64];
        snprintf(san, sizeof san, "DNS:%s", name);
        X509_set_issuer_name(x, X509_get_subject_name(issuer));
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_subject_alt_name, san);
    }
    if (X509_sign(x, ikey != NULL ? ikey : key, NULL) <= 0) {
        die("signing a certificate");
    }
    return x;
}

static EVP_PKEY *ed25519(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL) {
        die("key generation");
    }
    return k;
}

static void write_cert(const char *dir, const char *name, X509 *x)
{
    char path[256];
    FILE *f = create(dir, name, path, sizeof path);
    if (!PEM_write_X509(f, x) || fclose(f) != 0) {
        die(path);
    }
}

static void write_key(const char *dir, const char *name, EVP_PKEY *k)
{
    char path[256];
    FILE *f = create(dir, name, path, sizeof path);
    if (!PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) || fclose(f) != 0) {
        die(path);
    }
}

static void load(const char *dir, enum cons_tr_mode mode, uint64_t id)
{
    char psk[256], ca[256], cert[256], key[256], err[512];
    snprintf(psk, sizeof psk, "%s/psk", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(cert, sizeof cert, "%s/node%llu.crt", dir, (unsigned long long)id);
    snprintf(key, sizeof key, "%s/node%llu.key", dir, (unsigned long long)id);
    struct cons_tr_config cfg = {
        .id = id,
        .mode = mode,
        .psk_file = psk,
        .ca_file = ca,
        .cert_file = cert,
        .key_file = key,
    };
    if (cons_tls_new(&cfg, &nodes[mode == CONS_TR_CERT][id], err, sizeof err) < 0) {
        die(err);
    }
}

static void remove_dir(const char *dir)
{
    static const char *const fixed[] = {"psk", "ca.crt"};
    char path[256];
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, fixed[i]);
        unlink(path);
    }
    for (int id = 1; id <= FUZZ_TLS_NODES; id++) {
        snprintf(path, sizeof path, "%s/node%d.crt", dir, id);
        unlink(path);
        snprintf(path, sizeof path, "%s/node%d.key", dir, id);
        unlink(path);
    }
    if (rmdir(dir) < 0) {
        die("cannot remove the credentials directory");
    }
}

void fuzz_tls_init(void)
{
    static bool done;
    if (done) {
        return;
    }
    done = true;
    if (!RAND_set_rand_method(&fixed_rand)) {
        die("RAND_set_rand_method");
    }
    fuzz_tls_rand_reset(FUZZ_TLS_SETUP);
    const char *tmp = getenv("TMPDIR");
    char dir[200];
    snprintf(dir, sizeof dir, "%s/nvmet-fuzz-tls.XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp");
    }
    char path[256];
    FILE *f = create(dir, "psk", path, sizeof path);
    fprintf(f, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    if (fclose(f) != 0) {
        die(path);
    }
    EVP_PKEY *ca_key = ed25519();
    X509 *ca = certify(ca_key, "nvmet-fuzz-ca", NULL, NULL, 1);
    write_cert(dir, "ca.crt", ca);
    for (int id = 1; id <= FUZZ_TLS_NODES; id++) {
        char name[64];
        EVP_PKEY *k = ed25519();
        snprintf(name, sizeof name, CONS_TLS_NAME_PREFIX "%d", id);
        X509 *x = certify(k, name, ca, ca_key, 100 + id);
        snprintf(name, sizeof name, "node%d.crt", id);
        write_cert(dir, name, x);
        snprintf(name, sizeof name, "node%d.key", id);
        write_key(dir, name, k);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    for (uint64_t id = 1; id <= FUZZ_TLS_NODES; id++) {
        load(dir, CONS_TR_PSK, id);
        load(dir, CONS_TR_CERT, id);
    }
    remove_dir(dir);
}

struct cons_tls *fuzz_tls_node(enum cons_tr_mode mode, uint64_t id)
{
    fuzz_tls_init();
    FUZZ_CHECK(id >= 1 && id <= FUZZ_TLS_NODES && mode != CONS_TR_INSECURE);
    return nodes[mode == CONS_TR_CERT][id];
}

/* ------------------------------------------------------------------ */
/* a recorded client */

struct bytes {
    uint8_t *p;
    size_t n;
};

/* Move what from wrote to the peer's read side (and to rec if given). */
static void pump(SSL *from, SSL *to, struct bytes *rec)
{
    uint8_t buf[4096];
    int n;
    while ((n = BIO_read(SSL_get_wbio(from), buf, sizeof buf)) > 0) {
        FUZZ_CHECK(BIO_write(SSL_get_rbio(to), buf, n) == n);
        if (rec != NULL) {
            uint8_t *p = realloc(rec->p, rec->n + (size_t)n);
            FUZZ_CHECK(p != NULL);
            memcpy(p + rec->n, buf, (size_t)n);
            rec->p = p;
            rec->n += (size_t)n;
        }
    }
}

static bool step(SSL *ssl, enum fuzz_tls_stream s)
{
    fuzz_tls_rand_use(s);
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        return true;
    }
    int e = SSL_get_error(ssl, r);
    FUZZ_CHECK(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
    return false;
}

uint8_t *fuzz_tls_client_flight(enum cons_tr_mode mode, uint64_t client_id, const uint8_t *app,
                                size_t app_len, size_t *len)
{
    fuzz_tls_init();
    fuzz_tls_rand_reset(FUZZ_TLS_SERVER);
    SSL *srv = cons_tls_conn(fuzz_tls_node(mode, 1), 0);
    fuzz_tls_rand_reset(FUZZ_TLS_CLIENT);
    SSL *cli = cons_tls_conn(fuzz_tls_node(mode, client_id), 1);
    FUZZ_CHECK(srv != NULL && cli != NULL);
    struct bytes rec = {NULL, 0};
    bool cdone = false, sdone = false;
    for (int round = 0; round < 10 && !(cdone && sdone); round++) {
        cdone = cdone || step(cli, FUZZ_TLS_CLIENT);
        pump(cli, srv, &rec);
        sdone = sdone || step(srv, FUZZ_TLS_SERVER);
        pump(srv, cli, NULL);
    }
    if (cdone && sdone && app_len > 0) {
        fuzz_tls_rand_use(FUZZ_TLS_CLIENT);
        FUZZ_CHECK(SSL_write(cli, app, (int)app_len) == (int)app_len);
        pump(cli, srv, &rec);
    }
    SSL_free(srv);
    SSL_free(cli);
    ERR_clear_error();
    fuzz_tls_rand_use(FUZZ_TLS_SETUP);
    if (!(cdone && sdone)) {
        free(rec.p);
        return NULL;
    }
    *len = rec.n;
    return rec.p;
}
