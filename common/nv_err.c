/* nv_err: the product's error shape; see nv_err.h. */
#include "nv_err.h"

#include "nv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nv_err_kind_text(int code)
{
    switch (code) {
#define NV_X(name, c, text)                                                                        \
    case c:                                                                                        \
        return text;
        NV_ERR_KINDS(NV_X)
#undef NV_X
    default:
        return "Unknown error";
    }
}

/* errno names the API can produce; the rest print as EUNKNOWN. */
#define NV_ERRNAMES(X)                                                                             \
    X(EPERM) X(ENOENT) X(ESRCH) X(EINTR) X(EIO) X(ENXIO) X(E2BIG) X(EBADF) X(EAGAIN) X(ENOMEM)      \
    X(EACCES) X(EFAULT) X(EBUSY) X(EEXIST) X(ENODEV) X(ENOTDIR) X(EISDIR) X(EINVAL) X(ENFILE)      \
    X(EMFILE) X(ENOTTY) X(EFBIG) X(ENOSPC) X(EROFS) X(EMLINK) X(EPIPE) X(ERANGE) X(ENAMETOOLONG)   \
    X(ENOSYS) X(ENOTEMPTY) X(ENOTSUP) X(ETIMEDOUT) X(ECONNREFUSED) X(ECONNRESET) X(EADDRINUSE)     \
    X(EADDRNOTAVAIL) X(EMSGSIZE) X(ENOTCONN) X(ESHUTDOWN) X(ECANCELED) X(EKEYREJECTED)             \
    X(ENOTBLK) X(EPROTO) X(EBADMSG) X(EMEDIUMTYPE)

const char *nv_errname(int errnum)
{
    switch (errnum) {
#define NV_X(name)                                                                                 \
    case name:                                                                                     \
        return #name;
        NV_ERRNAMES(NV_X)
#undef NV_X
    case NV_ENOMETHOD:
        return "ENOMETHOD";
    case NV_ESERVICESTARTFAILURE:
        return "ESERVICESTARTFAILURE";
    case NV_ENOTAUTHENTICATED:
        return "ENOTAUTHENTICATED";
    case NV_EHAUNAVAILABLE:
        return "EHAUNAVAILABLE";
    case NV_ENOTLEADER:
        return "ENOTLEADER";
    case NV_ENOQUORUM:
        return "ENOQUORUM";
    case NV_ELEADERSHIPLOST:
        return "ELEADERSHIPLOST";
    default:
        return "EUNKNOWN";
    }
}

void nv_err_init(struct nv_err *e) { memset(e, 0, sizeof *e); }

void nv_err_clear(struct nv_err *e)
{
    free(e->reason);
    for (size_t i = 0; i < e->n; i++) {
        free(e->items[i].attr);
        free(e->items[i].msg);
    }
    free(e->items);
    free(e->leader);
    nv_err_init(e);
}

bool nv_err_isset(const struct nv_err *e) { return e->code != NV_E_NONE || e->n > 0; }

static char *vfmt(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vfmt(const char *fmt, va_list ap)
{
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0) {
        return NULL;
    }
    return p;
}

/* Keep the item when there is room (below limit), else only count it
 * (msg taken). Copies of an error, also one received from another node,
 * may hold one item more: a remote's own "... and K more" item. */
#define COPY_LIMIT (NV_ERR_MAX_ITEMS + 1)
static void add_item_max(struct nv_err *e, size_t limit, const char *attr, int errnum, char *msg)
{
    if (e->n >= limit) {
        free(msg);
        e->more++;
        return;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 4;
        struct nv_err_item *it = realloc(e->items, cap * sizeof *it);
        if (it == NULL) {
            free(msg);
            e->more++;
            return;
        }
        e->items = it;
        e->cap = cap;
    }
    e->items[e->n].attr = attr != NULL ? strdup(attr) : NULL;
    e->items[e->n].msg = msg != NULL ? msg : strdup("out of memory");
    e->items[e->n].errnum = errnum;
    e->n++;
}

static void add_item(struct nv_err *e, const char *attr, int errnum, char *msg)
{
    add_item_max(e, NV_ERR_MAX_ITEMS, attr, errnum, msg);
}

void nv_err_add(struct nv_err *e, const char *attr, int errnum, const char *fmt, ...)
{
    e->code = NV_E_INVALID_PARAMS;
    e->errnum = EINVAL;
    free(e->reason);
    e->reason = NULL; /* rebuilt from the items by nv_err_reason */
    if (e->n >= NV_ERR_MAX_ITEMS) {
        e->more++; /* not even formatted: it would be dropped */
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = vfmt(fmt, ap);
    va_end(ap);
    add_item(e, attr, errnum, msg);
}

size_t nv_err_count(const struct nv_err *e) { return e->n + e->more; }

void nv_err_merge(struct nv_err *dst, const struct nv_err *src)
{
    for (size_t i = 0; i < src->n; i++) {
        nv_err_add(dst, src->items[i].attr, src->items[i].errnum, "%s", src->items[i].msg);
    }
    if (src->more > 0) {
        if (dst->n == 0) {
            dst->code = NV_E_INVALID_PARAMS;
            dst->errnum = EINVAL;
        }
        dst->more += src->more;
    }
}

void nv_err_call(struct nv_err *e, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vfmt(fmt, ap);
    va_end(ap);
    free(e->reason);
    e->reason = NULL;
    e->code = NV_E_CALL;
    e->errnum = errnum;
    if (msg != NULL && asprintf(&e->reason, "[%s] %s", nv_errname(errnum), msg) < 0) {
        e->reason = NULL;
    }
    free(msg);
}

void nv_err_set(struct nv_err *e, int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(e->reason);
    e->reason = vfmt(fmt, ap);
    va_end(ap);
    e->code = code;
    e->errnum = errnum;
}

void nv_err_wrap(struct nv_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *ctx = vfmt(fmt, ap);
    va_end(ap);
    char *old = e->reason != NULL ? e->reason : nv_err_reason(e);
    char *p = NULL;
    if (ctx != NULL && asprintf(&p, "%s: %s", ctx, old != NULL ? old : "") >= 0) {
        if (old != e->reason) {
            free(old);
        }
        free(e->reason);
        e->reason = p;
    } else if (old != e->reason) {
        free(old);
    }
    free(ctx);
}

void nv_err_move(struct nv_err *dst, struct nv_err *src)
{
    nv_err_clear(dst);
    *dst = *src;
    nv_err_init(src);
}

void nv_err_copy(struct nv_err *dst, const struct nv_err *src)
{
    nv_err_clear(dst);
    dst->code = src->code;
    dst->errnum = src->errnum;
    dst->reason = src->reason ? strdup(src->reason) : NULL;
    dst->leader = src->leader ? strdup(src->leader) : NULL;
    dst->committed = src->committed;
    for (size_t i = 0; i < src->n; i++) {
        add_item_max(dst, COPY_LIMIT, src->items[i].attr, src->items[i].errnum,
                     strdup(src->items[i].msg));
    }
    dst->more += src->more;
}

static void more_text(char *buf, size_t len, size_t more)
{
    snprintf(buf, len, "... and %zu more error%s", more, more == 1 ? "" : "s");
}

/* Linear: one pass to size the text, one to write it (never a copy of
 * the text so far per item). */
char *nv_err_reason(const struct nv_err *e)
{
    if (e->reason != NULL || (e->n == 0 && e->more == 0)) {
        return strdup(e->reason != NULL ? e->reason : nv_err_kind_text(e->code));
    }
    char more[64] = "";
    if (e->more > 0) {
        more_text(more, sizeof more, e->more);
    }
    size_t len = strlen(more) + 2;
    for (size_t i = 0; i < e->n; i++) {
        const char *attr = e->items[i].attr != NULL ? e->items[i].attr : "None";
        len += strlen(nv_errname(e->items[i].errnum)) + strlen(attr) + strlen(e->items[i].msg) + 6;
    }
    char *out = malloc(len);
    if (out == NULL) {
        return NULL;
    }
    size_t at = 0;
    for (size_t i = 0; i < e->n; i++) {
        const char *attr = e->items[i].attr != NULL ? e->items[i].attr : "None";
        int w = snprintf(out + at, len - at, "[%s] %s: %s\n", nv_errname(e->items[i].errnum), attr,
                         e->items[i].msg);
        at += w > 0 ? (size_t)w : 0;
    }
    if (more[0] != '\0') {
        snprintf(out + at, len - at, "%s\n", more);
    } else {
        out[at] = '\0';
    }
    return out;
}

struct nv *nv_err_to_nv(const struct nv_err *e)
{
    struct nv *m = nv_map();
    if (m == NULL) {
        return NULL;
    }
    char *reason = nv_err_reason(e);
    nv_set_int(m, "code", e->code);
    nv_set_int(m, "error", e->errnum);
    nv_set_str(m, "errname", nv_errname(e->errnum));
    nv_set_str(m, "reason", reason);
    free(reason);
    if (e->n == 0 && e->more == 0) {
        nv_set_nil(m, "extra");
    } else {
        struct nv *extra = nv_arr();
        for (size_t i = 0; extra != NULL && i < e->n; i++) {
            struct nv *t = nv_arr();
            nv_push(t, nv_str(e->items[i].attr));
            nv_push(t, nv_str(e->items[i].msg));
            nv_push(t, nv_int(e->items[i].errnum));
            nv_push(extra, t);
        }
        if (extra != NULL && e->more > 0) {
            /* the dropped ones, as one last item with no attribute */
            char more[64];
            more_text(more, sizeof more, e->more);
            struct nv *t = nv_arr();
            nv_push(t, nv_nil());
            nv_push(t, nv_str(more));
            nv_push(t, nv_int(EINVAL));
            nv_push(extra, t);
        }
        nv_set(m, "extra", extra != NULL ? extra : nv_nil());
    }
    if (e->leader != NULL) {
        nv_set_str(m, "leader", e->leader);
    }
    if (e->committed) {
        nv_set_bool(m, "committed", true);
    }
    return m;
}

int nv_err_from_nv(struct nv_err *e, const struct nv *v)
{
    nv_err_clear(e);
    if (!nv_is(v, NV_MAP)) {
        return -EINVAL;
    }
    e->code = (int)nv_get_int(v, "code", NV_E_CALL);
    e->errnum = (int)nv_get_int(v, "error", 0);
    const char *r = nv_get_str(v, "reason");
    const char *l = nv_get_str(v, "leader");
    e->leader = l ? strdup(l) : NULL;
    e->committed = nv_get_bool(v, "committed", false);
    struct nv *extra = nv_get(v, "extra");
    for (size_t i = 0; i < nv_len(extra) && nv_is(extra, NV_ARR); i++) {
        struct nv *t = nv_at(extra, i);
        if (!nv_is(t, NV_ARR) || nv_len(t) < 2) {
            continue;
        }
        struct nv *a = nv_at(t, 0), *msg = nv_at(t, 1), *en = nv_at(t, 2);
        add_item_max(e, COPY_LIMIT, nv_is(a, NV_STR) ? a->u.s.p : NULL, nv_is(en, NV_INT) ? (int)en->u.i : EINVAL,
                 strdup(nv_is(msg, NV_STR) ? msg->u.s.p : ""));
    }
    e->reason = r ? strdup(r) : NULL;
    if (e->code == NV_E_NONE) {
        e->code = NV_E_CALL;
    }
    return 0;
}
