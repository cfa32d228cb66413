/* API keys: the key file (--api-key-file), its hashes and the roles.
 *
 * The file holds one key a line, "NAME ROLE HASH"; blank lines and lines
 * starting with '#' are ignored:
 *
 *     # name    role      hash
 *     ops       admin     pbkdf2-sha256$10000$<salt: 32 hex>$<key: 64 hex>
 *     monitor   readonly  pbkdf2-sha256$10000$...
 *
 * HASH is PBKDF2-HMAC-SHA256 of the key with a random 16-byte salt and its
 * iteration count in the string, so that the file does not give the keys
 * away and the cost can be raised per line. The keys nvmetctl generates
 * are 32 random bytes: the hash only has to keep a stolen file from being
 * used as it is, which a modest cost does; the server computes it in the
 * thread pool, never on its event loop (server_builtin.c).
 *
 * A file whose only line is one bare token is the old format: that token
 * is the admin key, compared as it is (and used by the nodes to log in to
 * each other when nothing else gives them a cluster key). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "rpc.h"

#define HASH_SCHEME "pbkdf2-sha256"
#define SALT_LEN 16
#define DK_LEN 32
#define ITER_MIN 1000u
#define ITER_MAX 10000000u
/* A key file of a few thousand keys; a longer one is refused, not cut. */
#define KEYS_FILE_MAX (256u << 10)
#define NAME_MAX_LEN 64

const char *rpc_role_name(enum rpc_role r)
{
    switch (r) {
        case RPC_ROLE_ADMIN:
            return "admin";
        case RPC_ROLE_READONLY:
            return "readonly";
        default:
            return "none";
    }
}

int rpc_role_parse(const char *s, enum rpc_role *out)
{
    if (strcmp(s, "admin") == 0) {
        *out = RPC_ROLE_ADMIN;
    } else if (strcmp(s, "readonly") == 0) {
        *out = RPC_ROLE_READONLY;
    } else {
        return -EINVAL;
    }
    return 0;
}

bool rpc_key_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-' && ch != '@') {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* hashes */

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Exactly 2 * n hex digits in [s, s + len). */
static bool from_hex(const char *s, size_t len, unsigned char *out, size_t n)
{
    if (len != 2 * n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

struct key_hash {
    unsigned iterations;
    unsigned char salt[SALT_LEN];
    unsigned char dk[DK_LEN];
};

static int derive(const char *key, size_t len, const unsigned char *salt, unsigned iterations,
                  unsigned char *dk)
{
    return PKCS5_PBKDF2_HMAC(key, (int)len, salt, SALT_LEN, (int)iterations, EVP_sha256(), DK_LEN,
                             dk) == 1
               ? 0
               : -EIO;
}

int rpc_key_hash(const char *key, size_t len, unsigned iterations, char *out, size_t outlen)
{
    if (iterations == 0) {
        iterations = RPC_KEY_ITERATIONS;
    }
    if (iterations < ITER_MIN || iterations > ITER_MAX || len == 0) {
        return -EINVAL;
    }
    struct key_hash h = {.iterations = iterations};
    if (RAND_bytes(h.salt, SALT_LEN) != 1 || derive(key, len, h.salt, iterations, h.dk) < 0) {
        return -EIO;
    }
    char salt[2 * SALT_LEN + 1], dk[2 * DK_LEN + 1];
    to_hex(h.salt, SALT_LEN, salt);
    to_hex(h.dk, DK_LEN, dk);
    OPENSSL_cleanse(&h, sizeof h);
    int n = snprintf(out, outlen, HASH_SCHEME "$%u$%s$%s", iterations, salt, dk);
    return n > 0 && (size_t)n < outlen ? 0 : -ENOSPC;
}

int rpc_key_generate(char *out, size_t outlen)
{
    unsigned char b[32];
    if (outlen < 2 * sizeof b + 1) {
        return -ENOSPC;
    }
    if (RAND_bytes(b, sizeof b) != 1) {
        return -EIO;
    }
    to_hex(b, sizeof b, out);
    OPENSSL_cleanse(b, sizeof b);
    return 0;
}

/* "pbkdf2-sha256$ITER$SALT$DK" -> h; NULL or why it is not. */
static const char *parse_hash(const char *s, struct key_hash *h)
{
    size_t pl = strlen(HASH_SCHEME);
    if (strncmp(s, HASH_SCHEME "$", pl + 1) != 0) {
        return "the hash must start with \"" HASH_SCHEME "$\" (make it with nvmetctl key hash)";
    }
    const char *it = s + pl + 1;
    char *end;
    errno = 0;
    unsigned long iter = strtoul(it, &end, 10);
    if (end == it || *end != '$' || errno != 0 || !isdigit((unsigned char)*it)) {
        return "the iteration count after \"" HASH_SCHEME "$\" is not a number";
    }
    if (iter < ITER_MIN || iter > ITER_MAX) {
        return "the iteration count must be between 1000 and 10000000";
    }
    const char *salt = end + 1;
    const char *dollar = strchr(salt, '$');
    if (dollar == NULL || !from_hex(salt, (size_t)(dollar - salt), h->salt, SALT_LEN)) {
        return "the salt must be 32 hex digits";
    }
    if (!from_hex(dollar + 1, strlen(dollar + 1), h->dk, DK_LEN)) {
        return "the derived key must be 64 hex digits";
    }
    h->iterations = (unsigned)iter;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* the file */

/* The file's bytes (NUL-terminated, owned), refused when it is not a
 * private regular file: it holds what logs a client in. */
static int read_private(const char *path, char **out, char *msg, size_t msglen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        snprintf(msg, msglen, "API key file %s: %s", path, strerror(err));
        return -err;
    }
    struct stat st;
    int rv = 0;
    if (fstat(fd, &st) < 0) {
        rv = -errno;
        snprintf(msg, msglen, "API key file %s: %s", path, strerror(-rv));
    } else if (!S_ISREG(st.st_mode)) {
        rv = -EINVAL;
        snprintf(msg, msglen, "API key file %s is not a regular file", path);
    } else if ((st.st_mode & 077) != 0) {
        rv = -EPERM;
        snprintf(msg, msglen,
                 "API key file %s has mode %04o: it must not be accessible by group or others "
                 "(chmod 600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
    } else if (st.st_size > (off_t)KEYS_FILE_MAX) {
        rv = -EFBIG;
        snprintf(msg, msglen, "API key file %s is larger than %u bytes", path, KEYS_FILE_MAX);
    }
    char *buf = rv == 0 ? malloc(KEYS_FILE_MAX + 2) : NULL;
    if (rv == 0 && buf == NULL) {
        rv = -ENOMEM;
        snprintf(msg, msglen, "API key file %s: out of memory", path);
    }
    size_t got = 0;
    while (rv == 0 && got <= KEYS_FILE_MAX) {
        ssize_t n = read(fd, buf + got, KEYS_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rv = -errno;
            snprintf(msg, msglen, "API key file %s: %s", path, strerror(-rv));
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (rv == 0 && got > KEYS_FILE_MAX) {
        rv = -EFBIG;
        snprintf(msg, msglen, "API key file %s is larger than %u bytes", path, KEYS_FILE_MAX);
    }
    if (rv < 0) {
        if (buf != NULL) {
            OPENSSL_cleanse(buf, KEYS_FILE_MAX + 2);
        }
        free(buf);
        return rv;
    }
    buf[got] = '\0';
    *out = buf;
    return 0;
}

int rpc_key_file_read(const char *path, char **key, char *msg, size_t msglen)
{
    *key = NULL;
    char *buf = NULL;
    int rv = read_private(path, &buf, msg, msglen);
    if (rv < 0) {
        return rv;
    }
    size_t all = strlen(buf);
    buf[strcspn(buf, "\n")] = '\0';
    size_t l = strlen(buf);
    while (l > 0 && (buf[l - 1] == '\r' || buf[l - 1] == ' ' || buf[l - 1] == '\t')) {
        buf[--l] = '\0';
    }
    if (l == 0) {
        OPENSSL_cleanse(buf, all);
        free(buf);
        snprintf(msg, msglen, "API key file %s holds no key (its first line is empty)", path);
        return -EINVAL;
    }
    if (all > l) {
        OPENSSL_cleanse(buf + l, all - l); /* the other lines are not ours to keep */
    }
    *key = buf;
    return 0;
}

struct key_line {
    char name[NAME_MAX_LEN + 1];
    enum rpc_role role;
    struct key_hash hash;
    unsigned line;
};

struct key_file {
    struct key_line *keys;
    size_t n;
    char *legacy; /* the old format's bare token, or NULL */
};

static void key_file_free(struct key_file *f)
{
    if (f->legacy != NULL) {
        OPENSSL_cleanse(f->legacy, strlen(f->legacy));
    }
    free(f->legacy);
    if (f->keys != NULL) {
        OPENSSL_cleanse(f->keys, f->n * sizeof *f->keys);
    }
    free(f->keys);
    memset(f, 0, sizeof *f);
}

/* Split line (modified) into at most max blank-separated fields; the
 * number of fields found (max + 1 when there are more). */
static size_t split_fields(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *p = line;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (n == max) {
            return max + 1;
        }
        fields[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            p++;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
    }
    return n;
}

static int line_error(const char *path, unsigned line, char *msg, size_t msglen, const char *why,
                      const char *arg)
{
    snprintf(msg, msglen, "API key file %s line %u: %s%s%s%s", path, line, why,
             arg != NULL ? " (\"" : "", arg != NULL ? arg : "", arg != NULL ? "\")" : "");
    return -EINVAL;
}

static int add_key(struct key_file *f, const char *path, unsigned line, char **fld, char *msg,
                   size_t msglen)
{
    struct key_line k = {.line = line};
    if (!rpc_key_name_valid(fld[0])) {
        return line_error(path, line, msg, msglen,
                          "the name must be 1 to 64 letters, digits or . _ - @", NULL);
    }
    if (rpc_role_parse(fld[1], &k.role) < 0) {
        return line_error(path, line, msg, msglen, "the role must be admin or readonly", fld[1]);
    }
    const char *why = parse_hash(fld[2], &k.hash);
    if (why != NULL) {
        /* the hash field is not echoed: it may be a key pasted by mistake */
        return line_error(path, line, msg, msglen, why, NULL);
    }
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->keys[i].name, fld[0]) == 0) {
            char also[64];
            snprintf(also, sizeof also, "the name is already used on line %u", f->keys[i].line);
            return line_error(path, line, msg, msglen, also, fld[0]);
        }
    }
    struct key_line *nk = realloc(f->keys, (f->n + 1) * sizeof *nk);
    if (nk == NULL) {
        snprintf(msg, msglen, "API key file %s: out of memory", path);
        return -ENOMEM;
    }
    f->keys = nk;
    snprintf(k.name, sizeof k.name, "%s", fld[0]);
    f->keys[f->n++] = k;
    return 0;
}

/* Parse buf (modified). A single line holding one token is the old
 * format; anything else must be key lines. */
static int parse_file(const char *path, char *buf, struct key_file *f, char *msg, size_t msglen)
{
    memset(f, 0, sizeof *f);
    unsigned line = 0, lines_used = 0, bare_line = 0;
    char *bare = NULL;
    int rv = 0;
    for (char *p = buf, *next; rv == 0 && p != NULL; p = next) {
        line++;
        next = strchr(p, '\n');
        if (next != NULL) {
            *next++ = '\0';
        }
        size_t l = strlen(p);
        while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t')) {
            p[--l] = '\0';
        }
        char *fld[3];
        size_t n = p[strspn(p, " \t")] == '#' ? 0 : split_fields(p, fld, 3);
        if (n == 0) {
            continue;
        }
        lines_used++;
        if (n == 1 && lines_used == 1) {
            bare = fld[0];
            bare_line = line;
            continue;
        }
        if (bare != NULL || n != 3) {
            unsigned at = bare != NULL ? bare_line : line;
            rv = line_error(path, at, msg, msglen,
                            "expected NAME ROLE HASH (one bare key is accepted only as the "
                            "file's only line)",
                            NULL);
            break;
        }
        rv = add_key(f, path, line, fld, msg, msglen);
    }
    if (rv == 0 && bare != NULL) {
        f->legacy = strdup(bare);
        if (f->legacy == NULL) {
            snprintf(msg, msglen, "API key file %s: out of memory", path);
            rv = -ENOMEM;
        }
    }
    if (rv == 0 && f->legacy == NULL && f->n == 0) {
        snprintf(msg, msglen, "API key file %s holds no key", path);
        rv = -EINVAL;
    }
    if (rv < 0) {
        key_file_free(f);
    }
    return rv;
}

static int load(const char *path, struct key_file *f, char *msg, size_t msglen)
{
    char *buf = NULL;
    int rv = read_private(path, &buf, msg, msglen);
    if (rv == 0) {
        rv = parse_file(path, buf, f, msg, msglen);
        OPENSSL_cleanse(buf, strlen(buf));
    }
    free(buf);
    return rv;
}

int rpc_keys_validate(const char *path, size_t *n_keys, bool *legacy, char *msg, size_t msglen)
{
    struct key_file f;
    int rv = load(path, &f, msg, msglen);
    if (rv == 0) {
        *n_keys = f.legacy != NULL ? 1 : f.n;
        *legacy = f.legacy != NULL;
        key_file_free(&f);
    }
    return rv;
}

int rpc_keys_legacy(const char *path, char **key)
{
    char msg[8];
    struct key_file f;
    *key = NULL;
    int rv = load(path, &f, msg, sizeof msg);
    if (rv < 0) {
        return rv;
    }
    if (f.legacy != NULL) {
        *key = f.legacy;
        f.legacy = NULL;
    }
    key_file_free(&f);
    return 0;
}

/* Constant time in the secret: the loop runs over the GIVEN key's length
 * and touches the secret at every step whatever matched so far. */
static bool plain_equal(const char *secret, const char *given, size_t glen)
{
    size_t slen = strlen(secret);
    volatile unsigned char diff = (unsigned char)(slen != glen);
    for (size_t i = 0; i < glen; i++) {
        diff |= (unsigned char)(secret[i % slen] ^ given[i]);
    }
    return diff == 0;
}

bool rpc_key_equal(const char *secret, const char *given, size_t glen)
{
    return secret != NULL && secret[0] != '\0' && plain_equal(secret, given, glen);
}

int rpc_keys_check(const char *path, const char *key, size_t len, struct rpc_key_match *m,
                   char *msg, size_t msglen)
{
    memset(m, 0, sizeof *m);
    struct key_file f;
    int rv = load(path, &f, msg, msglen);
    if (rv < 0) {
        return rv;
    }
    if (f.legacy != NULL) {
        m->legacy = true;
        if (plain_equal(f.legacy, key, len)) {
            snprintf(m->name, sizeof m->name, "%s", RPC_LEGACY_KEY_NAME);
            m->role = RPC_ROLE_ADMIN;
            rv = 1;
        }
        key_file_free(&f);
        return rv;
    }
    unsigned char dk[DK_LEN];
    for (size_t i = 0; rv == 0 && i < f.n; i++) {
        const struct key_line *k = &f.keys[i];
        if (len == 0 || derive(key, len, k->hash.salt, k->hash.iterations, dk) < 0) {
            continue;
        }
        if (CRYPTO_memcmp(dk, k->hash.dk, DK_LEN) == 0) {
            snprintf(m->name, sizeof m->name, "%s", k->name);
            m->role = k->role;
            rv = 1;
        }
    }
    OPENSSL_cleanse(dk, sizeof dk);
    key_file_free(&f);
    return rv;
}
