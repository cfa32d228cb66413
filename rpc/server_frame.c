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
/* one complete message -> request */

static const char *request_fields(const msgpack_object *a, struct srv_request *rq)
{
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 != 0) {
        return "message type is not 0 (request)";
    }
    if (a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[1].via.u64 <= INT64_MAX) {
        rq->msgid = (int64_t)a[1].via.u64;
    } else if (a[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        rq->msgid = a[1].via.i64;
    } else {
        return "msgid is not an integer";
    }
    if (a[2].type != MSGPACK_OBJECT_STR || a[2].via.str.size == 0 ||
        a[2].via.str.size >= sizeof rq->method ||
        memchr(a[2].via.str.ptr, '\0', a[2].via.str.size) != NULL) {
        return "method is not a name";
    }
    memcpy(rq->method, a[2].via.str.ptr, a[2].via.str.size);
    rq->method[a[2].via.str.size] = '\0';
    return NULL;
}

int srv__decode_request(const char *p, size_t n, struct srv_request *rq, const char **why)
{
    memset(rq, 0, sizeof *rq);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    const char *bad = NULL;
    if (msgpack_unpack_next(&u, p, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n) {
        bad = "undecodable msgpack";
    } else if (u.data.type != MSGPACK_OBJECT_ARRAY || u.data.via.array.size != 4) {
        bad = "not a request [0, msgid, method, params]";
    } else {
        bad = request_fields(u.data.via.array.ptr, rq);
    }
    if (bad == NULL && u.data.via.array.ptr[3].type == MSGPACK_OBJECT_ARRAY) {
        rq->params = nv_from_msgpack(&u.data.via.array.ptr[3]);
    }
    msgpack_unpacked_destroy(&u);
    if (bad != NULL) {
        *why = bad;
        return -EBADMSG;
    }
    return 0;
}
