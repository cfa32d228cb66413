/* Framing of the rpc server: the size of the next message from its
 * headers alone (nv_scan), so an oversized or malformed frame is refused
 * before it is buffered; and the decoding of one complete message into a
 * request. */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "server_int.h"

/* ------------------------------------------------------------------ */
/* framing: a message is one msgpack array */

int srv__frame_scan(struct nv_scan *s, const uint8_t *buf, size_t len, size_t max,
                    const char **why)
{
    if (s->pos == 0 && len > 0 && !(buf[0] >= 0x90 && buf[0] <= 0x9f) && buf[0] != 0xdc &&
        buf[0] != 0xdd) {
        *why = "message is not an array";
        return NV_SCAN_BAD;
    }
    return nv_scan(s, buf, len, max, why);
}

/* ------------------------------------------------------------------ */
/* The msgid of a request: an integer in int64 range. */
static const char *request_msgid(const msgpack_object *o, struct srv_request *rq)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        rq->msgid = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        rq->msgid = o->via.i64;
    } else {
        return "msgid is not an integer";
    }
    return NULL;
}

/* The method: a non-empty name without NUL that fits rq->method. */
static const char *request_method(const msgpack_object *o, struct srv_request *rq)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
        o->via.str.size >= sizeof rq->method ||
        memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL) {
        return "method is not a name";
    }
    memcpy(rq->method, o->via.str.ptr, o->via.str.size);
    rq->method[o->via.str.size] = '\0';
    return NULL;
}


int srv__decode_request(const char *p, size_t n, struct srv_request *rq, const char **why)
{
    memset(rq, 0, sizeof *rq);
    rq->msgid = -1;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    const char *bad = NULL;
    bool notify = false;
    if (msgpack_unpack_next(&u, p, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n) {
        bad = "undecodable msgpack";
    } else if (u.data.type != MSGPACK_OBJECT_ARRAY || u.data.via.array.size < 1) {
        bad = "not a request [0, msgid, method, params]";
    } else {
        const msgpack_object *t = &u.data.via.array.ptr[0];
        notify = t->type == MSGPACK_OBJECT_POSITIVE_INTEGER && t->via.u64 == 2;
        if (!(t->type == MSGPACK_OBJECT_POSITIVE_INTEGER && (t->via.u64 == 0 || notify))) {
            bad = "message type is not 0 (request) or 2 (notification)";
        } else if (u.data.via.array.size != (notify ? 3u : 4u)) {
            bad = notify ? "not a notification [2, method, params]"
                         : "not a request [0, msgid, method, params]";
        }
    }
    /* a notification is a request without the msgid: a[1] is the method */
    const msgpack_object *a = bad == NULL ? u.data.via.array.ptr - notify : NULL;
    if (bad == NULL && !notify) {
        bad = request_msgid(&a[1], rq);
    }
    if (bad == NULL) {
        bad = request_method(&a[2], rq);
    }
    if (bad == NULL) {
        rq->notify = notify;
        rq->params = a[3].type == MSGPACK_OBJECT_ARRAY ? nv_from_msgpack(&a[3]) : NULL;
    }
    msgpack_unpacked_destroy(&u);
    if (bad != NULL) {
        *why = bad;
        return -EBADMSG;
    }
    return 0;
}
