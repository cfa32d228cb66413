/* Snapshot decode + restore: the document a node restores when libraft
 * installs a snapshot (what consensus hands sm_restore after its header).
 *
 * Input: [call selector][snapshot bytes...]. The snapshot is restored over
 * a populated state (every 4th input) or an empty one; then the state is
 * read, round-tripped through a snapshot, and one call of the population
 * script (picked by the selector) is prepared and applied on it, as a
 * leader would after the install.
 * Properties: a refused snapshot leaves the state exactly as it was; an
 * accepted one reads, snapshots to bytes that restore to the same bytes,
 * and takes writes. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "nv.h"
#include "nv_err.h"
#include "sm.h"

static char *base;
static size_t base_len;

/* The populated state, restored into s (replaces its contents). */
static void populate(struct sm_state *s)
{
    if (base == NULL) {
        struct sm_state *p = fuzz_populated_state();
        FUZZ_CHECK(sm_snapshot(p, &base, &base_len) == 0);
        sm_free(p);
    }
    struct nv_err e;
    nv_err_init(&e);
    FUZZ_CHECK(sm_restore(s, base, base_len, &e) == 0);
    nv_err_clear(&e);
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
    static struct sm_state *s;
    if (s == NULL) {
        s = sm_new();
        FUZZ_CHECK(s != NULL);
    }
    struct fuzz_in in = {data, size};
    uint8_t selector = fuzz_u8(&in);
    /* over the populated state for every 4th input (by size, so an input
     * always gets the same treatment), else over an empty one: restoring
     * the populated state costs more than most inputs */
    bool over_populated = size % 4 == 0;
    if (over_populated) {
        populate(s);
    }
    struct nv_err e;
    nv_err_init(&e);
    int rv = sm_restore(s, in.p, in.n, &e);
    if (rv < 0) {
        FUZZ_CHECK(nv_err_isset(&e));
        char *after = NULL;
        size_t after_len = 0;
        if (over_populated) {
            FUZZ_CHECK(sm_snapshot(s, &after, &after_len) == 0);
            FUZZ_CHECK(after_len == base_len && memcmp(after, base, base_len) == 0);
        } else {
            FUZZ_CHECK(!sm_initialized(s) && sm_rows(s, SM_SUBSYS) == 0);
        }
        free(after);
    } else {
        one_write(s, selector);
        fuzz_exercise_state(s);
    }
    nv_err_clear(&e);
    fuzz_state_reset(s);
    return 0;
}
