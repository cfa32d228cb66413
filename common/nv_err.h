/* nv_err: the one error shape of the product (the README's "Errors"): a
 * kind (RPC code), an errno with its name, a reason, and validation items
 * [attribute, message, errno].
 *
 * A report holds at most NV_ERR_MAX_ITEMS items: the ones past it are only
 * counted, and rendered as one last "... and K more errors" item. A client
 * that sends a map of 100,000 unknown keys gets a short answer, built in
 * linear time, instead of a multi-megabyte one that blocks the server.
 *
 * Internally functions return 0 or a negative errno and fill a caller's
 * struct nv_err for anything a client should read. */
#ifndef NV_ERR_H
#define NV_ERR_H

#include <stdbool.h>
#include <stddef.h>

struct nv;

/* RPC error kinds: TrueNAS middleware's JSON-RPC codes plus product codes. */
#define NV_ERR_KINDS(X)                                                        \
    X(NV_E_NONE, 0, "OK")                                                      \
    X(NV_E_PARSE, -32700, "Parse error")                                       \
    X(NV_E_BAD_REQUEST, -32600, "Invalid request")                             \
    X(NV_E_NO_METHOD, -32601, "Method does not exist")                         \
    X(NV_E_INVALID_PARAMS, -32602, "Invalid params")                           \
    X(NV_E_TOO_MANY, -32000, "Too many concurrent calls")                      \
    X(NV_E_CALL, -32001, "Method call error")                                  \
    X(NV_E_NOT_LEADER, -32010, "Not leader")                                   \
    X(NV_E_NO_QUORUM, -32011, "No quorum")                                     \
    X(NV_E_NOT_AUTHENTICATED, -32012, "Not authenticated")

enum nv_err_kind {
#define NV_X(name, code, text) name = code,
    NV_ERR_KINDS(NV_X)
#undef NV_X
};
const char *nv_err_kind_text(int code); /* "Invalid params", ... */

/* Product errnos beyond the system ones (TrueNAS numbering, 211+ ours). */
#define NV_ENOMETHOD 201
#define NV_ESERVICESTARTFAILURE 202
#define NV_ENOTAUTHENTICATED 207
#define NV_EHAUNAVAILABLE 210
#define NV_ENOTLEADER 211
#define NV_ENOQUORUM 212
#define NV_ELEADERSHIPLOST 213 /* outcome unknown: may still commit */

/* "EINVAL", "ENOENT", "ENOTAUTHENTICATED", ...; "EUNKNOWN" for others. */
const char *nv_errname(int errnum);

struct nv_err_item {
    char *attr; /* NULL = none (printed as ALL) */
    char *msg;
    int errnum;
};

#define NV_ERR_MAX_ITEMS 20

struct nv_err {
    int code;     /* enum nv_err_kind; NV_E_NONE when no error */
    int errnum;   /* e.g. EINVAL */
    char *reason; /* owned */
    struct nv_err_item *items;
    size_t n, cap;
    size_t more;  /* items added past NV_ERR_MAX_ITEMS (counted, not kept) */
    char *leader; /* NOT_LEADER: the leader's RPC address, or NULL */
    /* The write this error answers IS committed (and applied): only its
     * rendering on the answering node failed; retrying changes nothing.
     * On the wire "committed": true (absent otherwise). */
    bool committed;
};

void nv_err_init(struct nv_err *e);
void nv_err_clear(struct nv_err *e); /* frees contents, back to "no error" */
bool nv_err_isset(const struct nv_err *e);

/* Append a validation item (kind INVALID_PARAMS, errnum EINVAL for the
 * response, as TrueNAS does). attr may be NULL. errnum is the item's
 * own errno (EINVAL, or ENOENT for "X N does not exist"). The reason is
 * rebuilt as "[ERRNAME] attr: msg" lines when the error is rendered. */
void nv_err_add(struct nv_err *e, const char *attr, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A CallError: kind CALL, reason "[ERRNAME] msg". */
void nv_err_call(struct nv_err *e, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Any kind with a literal reason (no "[ERRNAME]" prefix added). */
void nv_err_set(struct nv_err *e, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefix an existing reason with context: "ctx: reason". */
void nv_err_wrap(struct nv_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Items added so far, kept or not (n + more): "did this step add any?" */
size_t nv_err_count(const struct nv_err *e);
/* Append src's items (and its count of dropped ones) to dst. */
void nv_err_merge(struct nv_err *dst, const struct nv_err *src);
void nv_err_move(struct nv_err *dst, struct nv_err *src); /* dst cleared first; src reset */
void nv_err_copy(struct nv_err *dst, const struct nv_err *src);

/* Wire shape {"code","error","errname","reason","extra"[, "leader"][, "committed"]}.
 * nv_err_from_nv accepts that shape back (client side); returns 0 or -EINVAL. */
struct nv *nv_err_to_nv(const struct nv_err *e);
int nv_err_from_nv(struct nv_err *e, const struct nv *v);

/* The reason text as TrueNAS renders it (validation: one
 * "[ERRNAME] attr: msg" line per item, then "... and K more errors" when
 * items were dropped). Caller frees. */
char *nv_err_reason(const struct nv_err *e);

#endif
