/* Shared helpers of the statemachine's unit tests (test_sm, test_sm_v2,
 * test_sm_golden): a deterministic leader environment and the
 * prepare / encode / apply steps of one write. */
#ifndef TEST_SM_UTIL_H
#define TEST_SM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "sm.h"

struct nv;

/* sm_env.random: xorshift over the uint64_t that ctx points to, so a test
 * reproduces the leader's draws by resetting its own seed. */
void sm_test_random(void *ctx, void *buf, size_t len);

/* sm_env.device_stat: /dev/zvol/tank/... and /dev/loop* are block devices,
 * /srv a directory holding only /srv/exists.img; anything else has no
 * parent directory. */
enum sm_dev_kind sm_test_stat(void *ctx, const char *path);

/* Prepare method(json) on s with env (json must parse). Returns 0 and
 * *cmd (owned), or the negative errno with *why = prepare's reason
 * (owned) and *cmd NULL. */
int sm_test_prepare(const struct sm_state *s, const struct sm_env *env, const char *method,
                    const char *json, struct nv **cmd, char **why);

/* Encode cmd without a session key and apply it to s (the result is
 * never NULL; owned). */
struct sm_result *sm_test_apply(struct sm_state *s, const struct nv *cmd);

/* Assert that sm_snapshot of s is want (len bytes), byte for byte. */
void sm_test_snapshot_is(const struct sm_state *s, const char *want, size_t len);

#endif
