/* rpc_stream over TLS (stream.h): OpenSSL on memory BIOs. Ciphertext
 * read from the socket goes into the read BIO, what OpenSSL writes to
 * the write BIO goes to the socket through stream.c; plaintext goes to
 * and from the owner as on a plaintext stream.
 *
 * TLS 1.3 only: every client is ours (nvmetctl, the nodes, the library)
 * or a current TLS stack, and 1.3 has no renegotiation, no weak suites to
 * configure away, forward secrecy always and one round trip less. No
 * session tickets or cache: connections are few and long-lived.
 *
 * A server proves itself with its certificate; with client certificates
 * required, a client without one signed by the configured CA fails the
 * handshake. A client verifies the server's chain (the given CA, else the
 * system store) and that the certificate names the host it dialled: an
 * IP address must be an IP subjectAltName, a name a DNS one. Private key
 * files readable or writable by group or others are refused, like ssh. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "stream.h"

struct rpc_tls {
    SSL_CTX *ctx;
    bool server;
};

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown error";
}

static int fail(char *msg, size_t len, int rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *msg, size_t len, int rv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return rv;
}

/* ------------------------------------------------------------------ */
/* configurations */

/* A private key file: regular, private to its owner (this user or root). */
static int check_key_file(const char *path, char *msg, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(msg, len, -errno, "TLS key %s: %s", path, strerror(errno));
    }
    struct stat sb;
    int rv = fstat(fd, &sb) < 0 ? -errno : 0;
    close(fd);
    if (rv < 0) {
        return fail(msg, len, rv, "TLS key %s: %s", path, strerror(-rv));
    }
    if (!S_ISREG(sb.st_mode)) {
        return fail(msg, len, -EINVAL, "TLS key %s: not a regular file", path);
    }
    if ((sb.st_mode & 077) != 0) {
        return fail(msg, len, -EPERM,
                    "TLS key %s: permissions %04o are too open (group or others may access "
                    "it): chmod 600 it",
                    path, (unsigned)(sb.st_mode & 07777));
    }
    if (sb.st_uid != geteuid() && sb.st_uid != 0) {
        return fail(msg, len, -EPERM, "TLS key %s: owned by uid %u, not by this user or root", path,
                    (unsigned)sb.st_uid);
    }
    return 0;
}

static int tls_alloc(bool server, struct rpc_tls **out, char *msg, size_t len)
{
    struct rpc_tls *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return fail(msg, len, -ENOMEM, "out of memory");
    }
    t->server = server;
    t->ctx = SSL_CTX_new(TLS_method());
    if (t->ctx == NULL || !SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION)) {
        rpc_tls_free(t);
        return fail(msg, len, -ENOMEM, "TLS context: %s", ssl_reason());
    }
    SSL_CTX_set_num_tickets(t->ctx, 0);
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    *out = t;
    return 0;
}

/* This side's certificate (chain) and its private key. */
static int use_cert(SSL_CTX *ctx, const char *cert, const char *key, char *msg, size_t len)
{
    int rv = check_key_file(key, msg, len);
    if (rv < 0) {
        return rv;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        return fail(msg, len, -EINVAL, "TLS certificate %s: %s", cert, ssl_reason());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        return fail(msg, len, -EINVAL, "TLS key %s: %s (does it belong to %s?)", key, ssl_reason(),
                    cert);
    }
    return 0;
}

int rpc_tls_server_new(const struct rpc_tls_server_opts *o, struct rpc_tls **out, char *msg,
                       size_t len)
{
    *out = NULL;
    if (o->cert_file == NULL || o->key_file == NULL) {
        return fail(msg, len, -EINVAL, "TLS needs both a certificate and its private key");
    }
    if (o->client_certs && o->ca_file == NULL) {
        return fail(msg, len, -EINVAL,
                    "requiring client certificates needs the CA that signs them");
    }
    ERR_clear_error();
    struct rpc_tls *t;
    int rv = tls_alloc(true, &t, msg, len);
    if (rv < 0) {
        return rv;
    }
    rv = use_cert(t->ctx, o->cert_file, o->key_file, msg, len);
    if (rv == 0 && o->client_certs) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
        if (names == NULL || SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            rv = fail(msg, len, -EINVAL, "TLS CA %s: %s", o->ca_file, ssl_reason());
        } else {
            SSL_CTX_set_client_CA_list(t->ctx, names);
            SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    ERR_clear_error();
    if (rv < 0) {
        rpc_tls_free(t);
        return rv;
    }
    *out = t;
    return 0;
}

int rpc_tls_client_new(const struct rpc_tls_opts *o, struct rpc_tls **out, char *msg, size_t len)
{
    *out = NULL;
    if ((o->cert_file == NULL) != (o->key_file == NULL)) {
        return fail(msg, len, -EINVAL,
                    "a client certificate needs both the certificate and "
                    "its private key");
    }
    ERR_clear_error();
    struct rpc_tls *t;
    int rv = tls_alloc(false, &t, msg, len);
    if (rv < 0) {
        return rv;
    }
    if (o->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
            rv = fail(msg, len, -EINVAL, "TLS CA %s: %s", o->ca_file, ssl_reason());
        }
    } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        rv = fail(msg, len, -EINVAL, "TLS: the system's CA store: %s", ssl_reason());
    }
    if (rv == 0 && o->cert_file != NULL) {
        rv = use_cert(t->ctx, o->cert_file, o->key_file, msg, len);
    }
    ERR_clear_error();
    if (rv < 0) {
        rpc_tls_free(t);
        return rv;
    }
    *out = t;
    return 0;
}

void rpc_tls_free(struct rpc_tls *t)
{
    if (t != NULL) {
        SSL_CTX_free(t->ctx);
        free(t);
    }
}

int rpc_tls_opts_check(const struct rpc_tls_opts *o, char *msg, size_t len)
{
    if (o == NULL || o->plaintext) {
        return 0;
    }
    struct rpc_tls *t;
    int rv = rpc_tls_client_new(o, &t, msg, len);
    rpc_tls_free(t);
    return rv;
}

/* ------------------------------------------------------------------ */
/* one connection */

int rpc_stream_use_tls(struct rpc_stream *s, struct rpc_tls *tls, const char *host)
{
    SSL *ssl = SSL_new(tls->ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (ssl == NULL || rb == NULL || wb == NULL) {
        SSL_free(ssl);
        BIO_free(rb);
        BIO_free(wb);
        return UV_ENOMEM;
    }
    BIO_set_mem_eof_return(rb, -1); /* empty means "more to come", not EOF */
    SSL_set_bio(ssl, rb, wb);
    if (tls->server) {
        SSL_set_accept_state(ssl);
        s->ssl = ssl;
        return 0;
    }
    SSL_set_connect_state(ssl);
    /* The certificate must name what was dialled: an address literal as
     * an IP subjectAltName, a name as a DNS one (no partial wildcards). */
    struct in6_addr a6;
    bool ip =
        host != NULL && (inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1);
    int ok = host != NULL;
    if (ok && ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else if (ok) {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(ssl, host) && SSL_set_tlsext_host_name(ssl, host);
    }
    if (!ok) {
        SSL_free(ssl);
        return UV_EINVAL;
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    s->ssl = ssl;
    return 0;
}

void stream__tls_free(struct rpc_stream *s)
{
    SSL_free(s->ssl);
    s->ssl = NULL;
}

/* Whatever OpenSSL wrote (records, alerts), onto the socket. */
static int flush(struct rpc_stream *s)
{
    BIO *wb = SSL_get_wbio(s->ssl);
    size_t pend;
    while (!s->closing && (pend = BIO_ctrl_pending(wb)) > 0) {
        int n = pend > INT_MAX ? INT_MAX : (int)pend;
        char *p = malloc((size_t)n);
        if (p == NULL) {
            return UV_ENOMEM;
        }
        int got = BIO_read(wb, p, n);
        if (got <= 0) {
            free(p);
            return UV_EIO;
        }
        int rv = stream__raw_write(s, p, (size_t)got);
        if (rv < 0) {
            return rv;
        }
    }
    return 0;
}

/* Why a handshake or a record failed: the certificate check when that
 * was it, else OpenSSL's reason. */
static void tls_failed(struct rpc_stream *s, const char *what)
{
    long vr = SSL_get_verify_result(s->ssl);
    bool tls_peer = s->first_byte == 0x16 || s->first_byte == 0x15; /* handshake, alert */
    if (!SSL_is_server(s->ssl) && s->got_bytes && !tls_peer) {
        stream__end(s, UV_EPROTO, "%s: the server does not speak TLS (a plaintext port?)", what);
    } else if (vr != X509_V_OK) {
        stream__end(s, UV_EPROTO, "%s: certificate verify failed: %s", what,
                    X509_verify_cert_error_string(vr));
    } else {
        stream__end(s, UV_EPROTO, "%s: %s", what, ssl_reason());
    }
    ERR_clear_error();
}

/* Drive the handshake; true once it is done. */
static bool handshake(struct rpc_stream *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    flush(s);
    if (r == 1) {
        s->ready = true;
        stream__update_reading(s);
        if (s->connecting) {
            s->connecting = false;
            s->connect_cb(s, 0);
        }
        return true;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        tls_failed(s, "TLS handshake failed");
    }
    return false;
}

void stream__tls_input(struct rpc_stream *s, const char *p, size_t n)
{
    if (n > 0 && !s->got_bytes && SSL_is_server(s->ssl) && (unsigned char)p[0] != 0x16) {
        /* not a TLS handshake record: someone speaks plaintext here */
        stream__end(s, UV_EPROTO,
                    "TLS handshake failed: the client sent no TLS handshake (plaintext on the "
                    "TLS port?)");
        stream__tls_deliver(s);
        return;
    }
    if (n > 0 && !s->got_bytes) {
        s->first_byte = (unsigned char)p[0];
        s->got_bytes = true;
    }
    if (n > 0 && BIO_write(SSL_get_rbio(s->ssl), p, (int)n) != (int)n) {
        stream__end(s, UV_ENOMEM, "out of memory");
    }
    if (s->end == 0 && !s->ready && !handshake(s)) {
        if (s->end != 0) {
            stream__tls_deliver(s);
        }
        return;
    }
    stream__tls_deliver(s);
}

/* Plaintext to the owner while it reads; then the end, if it came. */
void stream__tls_deliver(struct rpc_stream *s)
{
    while (s->ready && s->want_read && !s->closing && !s->ended) {
        uv_buf_t b = uv_buf_init(NULL, 0);
        s->ops->alloc(s, &b);
        if (b.base == NULL || b.len == 0) {
            stream__end(s, UV_ENOBUFS, "out of memory");
            break;
        }
        ERR_clear_error();
        int r = SSL_read(s->ssl, b.base, b.len > INT_MAX ? INT_MAX : (int)b.len);
        if (r > 0) {
            s->ops->read(s, r);
            continue;
        }
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            flush(s); /* e.g. the answer to a key update */
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            stream__end(s, UV_EOF, "%s", ""); /* close_notify */
        } else if (SSL_is_server(s->ssl)) {
            tls_failed(s, "TLS");
        } else {
            tls_failed(s, "TLS: the server ended the connection");
        }
        break;
    }
    if (s->end != 0 && !s->ended && s->want_read && !s->closing) {
        s->ended = true;
        s->ops->read(s, s->end);
    }
}

int stream__tls_write(struct rpc_stream *s, char *data, size_t len)
{
    const char *p = data;
    size_t left = len;
    ERR_clear_error();
    while (left > 0) {
        int chunk = left > INT_MAX ? INT_MAX : (int)left;
        int n = SSL_write(s->ssl, p, chunk);
        if (n <= 0) {
            free(data);
            snprintf(s->why, sizeof s->why, "TLS write: %s", ssl_reason());
            ERR_clear_error();
            return UV_EPROTO;
        }
        p += n;
        left -= (size_t)n;
    }
    free(data);
    return flush(s);
}

void stream__tls_shutdown(struct rpc_stream *s)
{
    ERR_clear_error();
    SSL_shutdown(s->ssl);
    ERR_clear_error();
    flush(s);
}
