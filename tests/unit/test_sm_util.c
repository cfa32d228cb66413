/* Shared helpers of the statemachine's unit tests (see test_sm_util.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "test_sm_util.h"

void sm_test_random(void *ctx, void *buf, size_t len)
{
    uint64_t *state = ctx;
    unsigned char *b = buf;
    for (size_t i = 0; i < len; i++) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        b[i] = (unsigned char)*state;
    }
}

enum sm_dev_kind sm_test_stat(void *ctx, const char *path)
{
    (void)ctx;
    if (strncmp(path, "/dev/zvol/tank/", 15) == 0 || strncmp(path, "/dev/loop", 9) == 0) {
        return SM_DEV_BLOCK;
    }
    if (strcmp(path, "/srv") == 0) {
        return SM_DEV_DIR;
    }
    if (strcmp(path, "/srv/exists.img") == 0) {
        return SM_DEV_FILE;
    }
    if (strncmp(path, "/srv/", 5) == 0) {
        return SM_DEV_MISSING;
    }
    return SM_DEV_NOPARENT;
}

int sm_test_prepare(const struct sm_state *s, const struct sm_env *env, const char *method,
                    const char *json, struct nv **cmd, char **why)
{
    struct nv *params = nv_from_json(json);
    assert_non_null(params);
    struct nv_err e;
    nv_err_init(&e);
    *cmd = NULL;
    *why = NULL;
    int rv = sm_prepare(s, method, params, env, cmd, &e);
    if (rv < 0) {
        *why = nv_err_reason(&e);
        nv_free(*cmd);
        *cmd = NULL;
    }
    nv_free(params);
    nv_err_clear(&e);
    return rv;
}

struct sm_result *sm_test_apply(struct sm_state *s, const struct nv *cmd)
{
    char *buf;
    size_t len;
    assert_int_equal(sm_command_encode(cmd, NULL, -1, &buf, &len), 0);
    struct sm_result *r = sm_apply(s, buf, len);
    free(buf);
    assert_non_null(r);
    return r;
}

void sm_test_snapshot_is(const struct sm_state *s, const char *want, size_t len)
{
    char *got;
    size_t gl;
    assert_int_equal(sm_snapshot(s, &got, &gl), 0);
    assert_int_equal(gl, len);
    assert_memory_equal(got, want, len);
    free(got);
}
