/* One raft log entry as libraft hands it to the fsm: the consensus framing
 * (magic, command count, length-prefixed padded commands) read with the
 * walk fsm_apply uses, and each command applied in order to a fresh state
 * machine with sm_apply (every command version, session keys, replayed
 * random draws and device checks come from the bytes).
 *
 * Properties: every command gets a result that is either a value or an
 * error; a second replica applying the same entry ends in the same state
 * (the same snapshot bytes; checked for every 4th input); the final state
 * reads and round-trips through a snapshot (every 2nd input). */
#include <stdlib.h>
#include <string.h>

#include "cons_int.h"
#include "fuzz.h"
#include "nv.h"
#include "nv_err.h"
#include "sm.h"

/* Apply the entry to s; the number of commands applied. */
static size_t apply_entry(struct sm_state *s, const uint8_t *data, size_t size)
{
    struct cons_entry_iter it;
    const char *why = NULL;
    if (cons_entry_open(&it, data, size, &why) < 0) {
        FUZZ_CHECK(why != NULL);
        return 0;
    }
    const void *cmd;
    size_t len, n = 0;
    int rv;
    while ((rv = cons_entry_next(&it, &cmd, &len, &why)) > 0) {
        FUZZ_CHECK((const uint8_t *)cmd + len <= data + size);
        struct sm_result *r = sm_apply(s, cmd, len);
        FUZZ_CHECK(r != NULL);
        FUZZ_CHECK((r->value == NULL) != (r->err == NULL));
        if (r->err != NULL) {
            free(nv_err_reason(r->err));
        }
        sm_result_free(r);
        n++;
    }
    FUZZ_CHECK(rv == 0 || why != NULL);
    return n;
}

static void same_state(const struct sm_state *a, const struct sm_state *b)
{
    char *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    FUZZ_CHECK(sm_snapshot(a, &x, &xl) == 0 && sm_snapshot(b, &y, &yl) == 0);
    FUZZ_CHECK(xl == yl && memcmp(x, y, xl) == 0);
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sm_state *s, *replica;
    if (s == NULL) {
        s = sm_new();
        replica = sm_new();
        FUZZ_CHECK(s != NULL && replica != NULL);
    }
    /* fresh state machines: emptied after each input, not reallocated
     * (and nothing allocated outlives the input: libFuzzer's leak check
     * would run every input twice) */
    if (apply_entry(s, data, size) > 0) {
        /* the replica costs a second apply: every 4th input (by size, so
         * a given input always gets the same checks) */
        if (size % 4 == 0) {
            apply_entry(replica, data, size);
            same_state(s, replica);
            fuzz_state_reset(replica);
        }
        /* likewise the reads and the snapshot round trip: every 2nd */
        if (size % 2 == 1) {
            fuzz_exercise_state(s);
        }
    }
    fuzz_state_reset(s);
    return 0;
}
