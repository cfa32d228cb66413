/* Snapshot decode + restore: the document a node restores when libraft
 * installs a snapshot (what consensus hands sm_restore after its header).
 *
 * Input: [call selector][snapshot bytes...]. The snapshot is restored over
 * a populated state; then the state is read, round-tripped through a
 * snapshot, and one call of the population script (picked by the selector)
 * is prepared and applied on it, as a leader would after the install.
 * Properties: a refused snapshot leaves the state exactly as it was; an
 * accepted one reads, snapshots to bytes that restore to the same bytes,
 * and takes writes. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "nv.h"
#include "nv_err.h"
#include "sm.h"

static char *base;
static size_t base_len;

static struct sm_state *populated(void)
{
    if (base == NULL) {
        struct sm_state *s = fuzz_populated_state();
        FUZZ_CHECK(sm_snapshot(s, &base, &base_len) == 0);
        sm_free(s);
    }
    struct sm_state *s = sm_new();
    struct nv_err e;
    nv_err_init(&e);
    FUZZ_CHECK(s != NULL && sm_restore(s, base, base_len, &e) == 0);
    nv_err_clear(&e);
    return s;
}

static void one_write(struct sm_state *s, uint8_t selector)
{
    const struct fuzz_call *c = &fuzz_script[selector % fuzz_script_len];
    size_t len;
    fuzz_env_reset();
    char *cmd = fuzz_prepare(s, c->method, c->params, "fuzz", selector, &len, NULL);
    if (cmd != NULL) {
        sm_result_free(sm_apply(s, cmd, len));
        free(cmd);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t selector = fuzz_u8(&in);
    struct sm_state *s = populated();
    struct nv_err e;
    nv_err_init(&e);
    int rv = sm_restore(s, in.p, in.n, &e);
    if (rv < 0) {
        FUZZ_CHECK(nv_err_isset(&e));
        char *after = NULL;
        size_t after_len = 0;
        FUZZ_CHECK(sm_snapshot(s, &after, &after_len) == 0);
        FUZZ_CHECK(after_len == base_len && memcmp(after, base, base_len) == 0);
        free(after);
    } else {
        fuzz_exercise_state(s);
        one_write(s, selector);
        fuzz_exercise_state(s);
    }
    nv_err_clear(&e);
    sm_free(s);
    return 0;
}
