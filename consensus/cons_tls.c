/* consensus: TLS 1.3 for the Raft transport (cons_tr.h).
 *
 * PSK mode: the cluster secret (a file of >= 32 random bytes, or their hex
 * form) is every node's credential. TLS 1.3 external PSK, identity
 * "nvmet-node-<id>" of the connecting node, key HMAC-SHA256(secret,
 * "nvmet-ha raft psk v1"), with an (EC)DHE exchange for forward secrecy. A
 * peer knowing the secret is a cluster node; which id it speaks for is
 * what it says (the identity), and the connection handshake must agree.
 *
 * Certificate mode: a cluster CA signs one certificate per node, naming
 * the node "nvmet-node-<id>" in a DNS subjectAltName (or, without DNS
 * names, in the subject CN). Both sides verify the chain against the
 * cluster CA only (not the system store); the connecting side requires
 * the name of the node it dials, the accepting side the name of the node
 * the connection handshake claims.
 *
 * Key files (secret and private key) must not be readable or writable by
 * group or others, like ssh's: a secret others could read is no secret. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cons_tr.h"

#define PSK_LABEL "nvmet-ha raft psk v1"
#define MIN_SECRET 32
#define MAX_SECRET_FILE 4096

struct cons_tls {
    enum cons_tr_mode mode;
    uint64_t id;
    SSL_CTX *ctx;
    unsigned char psk[32];
    char identity[40]; /* "nvmet-node-<id>" */
};

/* ex_data slot of an SSL: the id its PSK identity named (server side). */
static int psk_id_index = -1;

static int fail(char *errmsg, size_t errlen, int rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *errmsg, size_t errlen, int rv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
    return rv;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown error";
}

uint64_t cons_tls_parse_name(const char *text, size_t len)
{
    size_t pl = strlen(CONS_TLS_NAME_PREFIX);
    if (len <= pl || len > pl + 20 || memcmp(text, CONS_TLS_NAME_PREFIX, pl) != 0 ||
        text[pl] == '0') {
        return 0;
    }
    uint64_t id = 0;
    for (size_t i = pl; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return 0;
        }
        /* exact: every id up to UINT64_MAX has a name that parses */
        uint64_t digit = (uint64_t)(text[i] - '0');
        if (id > (UINT64_MAX - digit) / 10) {
            return 0;
        }
        id = id * 10 + digit;
    }
    return id;
}

/* ------------------------------------------------------------------ */
/* files */

/* A key file: regular, private to its owner (this user or root). */
static int check_private(const char *what, const char *path, int fd, char *errmsg, size_t errlen)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        return fail(errmsg, errlen, -errno, "%s %s: %s", what, path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        return fail(errmsg, errlen, -EINVAL, "%s %s: not a regular file", what, path);
    }
    if ((sb.st_mode & 077) != 0) {
        return fail(errmsg, errlen, -EPERM,
                    "%s %s: permissions %04o are too open (group or others may access it): "
                    "chmod 600 it",
                    what, path, (unsigned)(sb.st_mode & 07777));
    }
    if (sb.st_uid != geteuid() && sb.st_uid != 0) {
        return fail(errmsg, errlen, -EPERM, "%s %s: owned by uid %u, not by this user or root",
                    what, path, (unsigned)sb.st_uid);
    }
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* The secret: the file's hex text (whitespace at the end ignored), or its
 * raw bytes when it is not hex. */
static int read_secret(const char *path, unsigned char *secret, size_t *len, char *errmsg,
                       size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return fail(errmsg, errlen, -errno, "raft PSK file %s: %s", path, strerror(errno));
    }
    int rv = check_private("raft PSK file", path, fd, errmsg, errlen);
    ssize_t got = 0;
    if (rv == 0) {
        got = read(fd, secret, MAX_SECRET_FILE);
        if (got < 0) {
            rv = fail(errmsg, errlen, -errno, "raft PSK file %s: %s", path, strerror(errno));
        }
    }
    close(fd);
    if (rv < 0) {
        return rv;
    }
    size_t n = (size_t)got;
    size_t text = n;
    while (text > 0 && (secret[text - 1] == '\n' || secret[text - 1] == '\r' ||
                        secret[text - 1] == ' ' || secret[text - 1] == '\t')) {
        text--;
    }
    bool hex = text > 0 && text % 2 == 0;
    for (size_t i = 0; hex && i < text; i++) {
        hex = hexval(secret[i]) >= 0;
    }
    if (hex) {
        for (size_t i = 0; i < text / 2; i++) {
            secret[i] = (unsigned char)(hexval(secret[2 * i]) << 4 | hexval(secret[2 * i + 1]));
        }
        n = text / 2;
    }
    if (n < MIN_SECRET) {
        OPENSSL_cleanse(secret, MAX_SECRET_FILE);
        return fail(errmsg, errlen, -EINVAL,
                    "raft PSK file %s: %zu bytes of secret, need at least %d random bytes (or "
                    "%d hex digits; e.g. openssl rand -hex 32)",
                    path, n, MIN_SECRET, 2 * MIN_SECRET);
    }
    *len = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* PSK callbacks */

static SSL_SESSION *psk_session(SSL *ssl, const unsigned char *key, size_t len)
{
    static const unsigned char aes128gcm_sha256[] = {0x13, 0x01};
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
    SSL_SESSION *s = cipher != NULL ? SSL_SESSION_new() : NULL;
    if (s == NULL) {
        return NULL;
    }
    if (!SSL_SESSION_set1_master_key(s, key, len) || !SSL_SESSION_set_cipher(s, cipher) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
        SSL_SESSION_free(s);
        return NULL;
    }
    return s;
}

/* Client: offer the PSK under our identity. */
static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                      SSL_SESSION **sess)
{
    struct cons_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    *sess = NULL;
    if (md != NULL && EVP_MD_get_type(md) != NID_sha256) {
        return 1; /* a retry asked for another hash: no PSK for it */
    }
    *sess = psk_session(ssl, tls->psk, sizeof tls->psk);
    if (*sess == NULL) {
        return 0;
    }
    *id = (const unsigned char *)tls->identity;
    *idlen = strlen(tls->identity);
    return 1;
}

/* Server: any node identity gets the cluster key; a wrong key fails the
 * binder check and the handshake. */
static int psk_find_cb(SSL *ssl, const unsigned char *identity, size_t len, SSL_SESSION **sess)
{
    struct cons_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    *sess = NULL;
    uint64_t id = cons_tls_parse_name((const char *)identity, len);
    if (id == 0) {
        return 1; /* unknown identity: no PSK, the handshake fails */
    }
    *sess = psk_session(ssl, tls->psk, sizeof tls->psk);
    if (*sess == NULL) {
        return 0;
    }
    uint64_t *slot = malloc(sizeof *slot);
    if (slot == NULL) {
        SSL_SESSION_free(*sess);
        *sess = NULL;
        return 0;
    }
    *slot = id;
    free(SSL_get_ex_data(ssl, psk_id_index));
    SSL_set_ex_data(ssl, psk_id_index, slot);
    return 1;
}

static void psk_slot_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

/* ------------------------------------------------------------------ */
/* setup */

int cons_psk_derive(const char *psk_file, const char *label, unsigned char out[32], char *errmsg,
                    size_t errlen)
{
    unsigned char *secret = malloc(MAX_SECRET_FILE);
    if (secret == NULL) {
        return fail(errmsg, errlen, -ENOMEM, "out of memory");
    }
    size_t len = 0;
    int rv = read_secret(psk_file, secret, &len, errmsg, errlen);
    unsigned int n = 32;
    if (rv == 0 && HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)label,
                        strlen(label), out, &n) == NULL) {
        rv = fail(errmsg, errlen, -EIO, "raft PSK: HMAC failed");
    }
    OPENSSL_cleanse(secret, MAX_SECRET_FILE);
    free(secret);
    return rv;
}

static int setup_psk(struct cons_tls *tls, const struct cons_tr_config *cfg, char *errmsg,
                     size_t errlen)
{
    unsigned char *secret = malloc(MAX_SECRET_FILE);
    if (secret == NULL) {
        return fail(errmsg, errlen, -ENOMEM, "out of memory");
    }
    size_t len = 0;
    int rv = read_secret(cfg->psk_file, secret, &len, errmsg, errlen);
    if (rv == 0) {
        unsigned int out = sizeof tls->psk;
        if (HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)PSK_LABEL,
                 strlen(PSK_LABEL), tls->psk, &out) == NULL) {
            rv = fail(errmsg, errlen, -EIO, "raft PSK: HMAC failed");
        }
    }
    OPENSSL_cleanse(secret, MAX_SECRET_FILE);
    free(secret);
    if (rv < 0) {
        return rv;
    }
    /* The PSK is bound to SHA-256: offer only suites of that hash, or the
     * server picks a SHA-384 suite and ignores the PSK. */
    if (!SSL_CTX_set_ciphersuites(tls->ctx,
                                  "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256")) {
        return fail(errmsg, errlen, -EINVAL, "TLS suites: %s", ssl_reason());
    }
    SSL_CTX_set_psk_use_session_callback(tls->ctx, psk_use_cb);
    SSL_CTX_set_psk_find_session_callback(tls->ctx, psk_find_cb);
    return 0;
}

/* Our own certificate must name our own id and chain to the cluster CA:
 * a mistake here would otherwise show up as peers refusing us. */
static int check_own_cert(struct cons_tls *tls, const struct cons_tr_config *cfg, char *errmsg,
                          size_t errlen)
{
    X509 *cert = SSL_CTX_get0_certificate(tls->ctx);
    if (X509_check_host(cert, tls->identity, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1) {
        return fail(errmsg, errlen, -EINVAL,
                    "raft certificate %s does not name this node: expected a DNS "
                    "subjectAltName (or CN) %s",
                    cfg->cert_file, tls->identity);
    }
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(tls->ctx, &chain);
    int ok = sc != NULL && X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(tls->ctx), cert, chain);
    if (ok) {
        X509_STORE_CTX_set_purpose(sc, X509_PURPOSE_SSL_CLIENT);
        ok = X509_verify_cert(sc) == 1;
    }
    int err = sc != NULL ? X509_STORE_CTX_get_error(sc) : X509_V_ERR_OUT_OF_MEM;
    X509_STORE_CTX_free(sc);
    if (!ok) {
        return fail(errmsg, errlen, -EINVAL, "raft certificate %s: not valid under CA %s: %s",
                    cfg->cert_file, cfg->ca_file, X509_verify_cert_error_string(err));
    }
    return 0;
}

static int setup_cert(struct cons_tls *tls, const struct cons_tr_config *cfg, char *errmsg,
                      size_t errlen)
{
    int fd = open(cfg->key_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(errmsg, errlen, -errno, "raft key %s: %s", cfg->key_file, strerror(errno));
    }
    int rv = check_private("raft key", cfg->key_file, fd, errmsg, errlen);
    close(fd);
    if (rv < 0) {
        return rv;
    }
    if (SSL_CTX_load_verify_locations(tls->ctx, cfg->ca_file, NULL) != 1) {
        return fail(errmsg, errlen, -EINVAL, "raft CA %s: %s", cfg->ca_file, ssl_reason());
    }
    if (SSL_CTX_use_certificate_chain_file(tls->ctx, cfg->cert_file) != 1) {
        return fail(errmsg, errlen, -EINVAL, "raft certificate %s: %s", cfg->cert_file,
                    ssl_reason());
    }
    if (SSL_CTX_use_PrivateKey_file(tls->ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(tls->ctx) != 1) {
        return fail(errmsg, errlen, -EINVAL, "raft key %s: %s (does it belong to %s?)",
                    cfg->key_file, ssl_reason(), cfg->cert_file);
    }
    return check_own_cert(tls, cfg, errmsg, errlen);
}

int cons_tls_new(const struct cons_tr_config *cfg, struct cons_tls **out, char *errmsg,
                 size_t errlen)
{
    *out = NULL;
    if (cfg->mode == CONS_TR_INSECURE) {
        return 0;
    }
    if (psk_id_index < 0) {
        psk_id_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, psk_slot_free);
    }
    struct cons_tls *tls = calloc(1, sizeof *tls);
    if (tls == NULL) {
        return fail(errmsg, errlen, -ENOMEM, "out of memory");
    }
    tls->mode = cfg->mode;
    tls->id = cfg->id;
    snprintf(tls->identity, sizeof tls->identity, CONS_TLS_NAME_PREFIX "%" PRIu64, cfg->id);
    ERR_clear_error();
    tls->ctx = SSL_CTX_new(TLS_method());
    int rv = 0;
    if (tls->ctx == NULL || !SSL_CTX_set_min_proto_version(tls->ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(tls->ctx, TLS1_3_VERSION)) {
        rv = fail(errmsg, errlen, -ENOMEM, "TLS context: %s", ssl_reason());
    }
    if (rv == 0) {
        SSL_CTX_set_app_data(tls->ctx, tls);
        /* one connection per peer and direction, long-lived: no resumption */
        SSL_CTX_set_num_tickets(tls->ctx, 0);
        SSL_CTX_set_session_cache_mode(tls->ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_mode(tls->ctx, SSL_MODE_RELEASE_BUFFERS);
        rv = cfg->mode == CONS_TR_PSK ? setup_psk(tls, cfg, errmsg, errlen)
                                      : setup_cert(tls, cfg, errmsg, errlen);
    }
    ERR_clear_error();
    if (rv < 0) {
        cons_tls_free(tls);
        return rv;
    }
    *out = tls;
    return 0;
}

void cons_tls_free(struct cons_tls *tls)
{
    if (tls == NULL) {
        return;
    }
    SSL_CTX_free(tls->ctx);
    OPENSSL_cleanse(tls->psk, sizeof tls->psk);
    free(tls);
}

SSL *cons_tls_conn(struct cons_tls *tls, uint64_t target)
{
    SSL *ssl = SSL_new(tls->ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (ssl == NULL || rb == NULL || wb == NULL) {
        SSL_free(ssl);
        BIO_free(rb);
        BIO_free(wb);
        return NULL;
    }
    BIO_set_mem_eof_return(rb, -1); /* empty means "more to come", not EOF */
    SSL_set_bio(ssl, rb, wb);
    if (target == 0) {
        SSL_set_accept_state(ssl);
        if (tls->mode == CONS_TR_CERT) {
            SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
        return ssl;
    }
    SSL_set_connect_state(ssl);
    if (tls->mode == CONS_TR_CERT) {
        char name[40];
        snprintf(name, sizeof name, CONS_TLS_NAME_PREFIX "%" PRIu64, target);
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_WILDCARDS);
        if (!SSL_set1_host(ssl, name)) {
            SSL_free(ssl);
            return NULL;
        }
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    }
    return ssl;
}

uint64_t cons_tls_peer_id(SSL *ssl, uint64_t hs_id, const char **why)
{
    const uint64_t *psk_id = SSL_get_ex_data(ssl, psk_id_index);
    if (psk_id != NULL) {
        if (*psk_id != hs_id) {
            *why = "PSK identity and handshake name different nodes";
            return 0;
        }
        return hs_id;
    }
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK) {
        *why = "no verified certificate";
        return 0;
    }
    char name[40];
    snprintf(name, sizeof name, CONS_TLS_NAME_PREFIX "%" PRIu64, hs_id);
    if (X509_check_host(peer, name, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1) {
        *why = "the certificate does not name the node the handshake claims";
        return 0;
    }
    return hs_id;
}
