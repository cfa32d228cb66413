/* The query engine (filters and options) against a small populated state,
 * the way nvmet.<table>.query runs: the argument checks of the method,
 * rpc_query_check, the table's entries (options.extra applies) and
 * rpc_query.
 *
 * Input: [table selector][one msgpack value: the call's params, normally
 * [filters, options]].
 * Properties: the check and the query agree on whether the arguments are
 * valid; a failure always carries an error; a result has the shape the
 * options ask for. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "nv.h"
#include "nv_err.h"
#include "rpc.h"
#include "sm.h"

static struct sm_state *state;

static void check_shape(const struct nv *out, const struct nv *options, size_t n_items)
{
    if (nv_get_bool(options, "count", false)) {
        FUZZ_CHECK(nv_is(out, NV_INT) && out->u.i >= 0 && (size_t)out->u.i <= n_items);
    } else if (nv_get_bool(options, "get", false)) {
        FUZZ_CHECK(out != NULL);
    } else {
        FUZZ_CHECK(nv_is(out, NV_ARR) && nv_len(out) <= n_items);
        int64_t limit = nv_get_int(options, "limit", 0);
        FUZZ_CHECK(limit <= 0 || nv_len(out) <= (size_t)limit);
    }
}

static void query(int table, const struct nv *params)
{
    /* the method's own checks (methods.c check_query_args) */
    if (!nv_is(params, NV_ARR) || nv_len(params) > 2) {
        return;
    }
    const struct nv *filters = nv_at(params, 0), *options = nv_at(params, 1);
    if ((filters != NULL && !nv_is(filters, NV_ARR)) ||
        (options != NULL && !nv_is(options, NV_MAP))) {
        return;
    }
    struct nv_err e;
    nv_err_init(&e);
    int checked = rpc_query_check(filters, options, &e);
    FUZZ_CHECK((checked < 0) == nv_err_isset(&e));
    free(nv_err_reason(&e));
    nv_err_clear(&e);
    if (checked < 0) {
        return;
    }
    struct nv *items = sm_entries(state, (enum sm_table)table, nv_get(options, "extra"));
    FUZZ_CHECK(nv_is(items, NV_ARR));
    struct nv *out = NULL;
    nv_err_init(&e);
    if (rpc_query(items, filters, options, &out, &e) < 0) {
        FUZZ_CHECK(nv_err_isset(&e) && out == NULL);
        free(nv_err_reason(&e));
    } else {
        FUZZ_CHECK(!nv_err_isset(&e));
        check_shape(out, options, nv_len(items));
        free(nv_dump(out));
        nv_free(out);
    }
    nv_err_clear(&e);
    nv_free(items);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (state == NULL) {
        state = fuzz_populated_state();
    }
    struct fuzz_in in = {data, size};
    int table = fuzz_u8(&in) % SM_TABLE_COUNT;
    size_t used = 0;
    struct nv *params = nv_decode(in.p, in.n, &used);
    if (params != NULL) {
        query(table, params);
        nv_free(params);
    }
    return 0;
}
