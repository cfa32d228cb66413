/* Unit tests of the query engine (rpc_query): TrueNAS middleware's query
 * filters and options, table-driven. Each case states
 * its behaviour in its first column. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"

static const char *ITEMS =
    "[{\"id\": 1, \"name\": \"alpha\", \"n\": 10, \"f\": 1.5, \"flag\": true, \"opt\": null,"
    "  \"tags\": [\"a\", \"b\"], \"sub\": {\"id\": 7, \"name\": \"Seven\"}, \"dot.key\": 1,"
    "  \"list\": [{\"k\": 1}, {\"k\": 2}]},"
    " {\"id\": 2, \"name\": \"Beta\", \"n\": 20, \"f\": 2.5, \"flag\": false, \"opt\": 5,"
    "  \"tags\": [\"c\"], \"sub\": {\"id\": 8, \"name\": \"eight\"},"
    "  \"list\": [{\"k\": 3}]},"
    " {\"id\": 3, \"name\": \"gamma\", \"n\": 1, \"f\": 3.0, \"flag\": true, \"opt\": 3,"
    "  \"tags\": [], \"sub\": {\"id\": 9, \"name\": \"nine\"}, \"list\": []},"
    " {\"id\": 4, \"name\": \"delta\", \"n\": 10,"
    "  \"tags\": [\"a\"], \"sub\": {\"id\": 7, \"name\": \"seven\"}, \"list\": [{\"k\": 1}]}]";

enum expect_kind { IDS, JSON, VERR, CERR };

struct qcase {
    const char *what; /* the behaviour this case shows */
    const char *filters;
    const char *options;
    enum expect_kind kind;
    const char *expect; /* IDS: "[1,2]"; JSON: exact output; VERR/CERR: message */
};

static const struct qcase cases[] = {
    {"no filters returns everything in order", "[]", "{}", IDS, "[1,2,3,4]"},
    {"= on an int", "[[\"n\", \"=\", 10]]", NULL, IDS, "[1,4]"},
    {"= int matches an equal float (1 == 1.0)", "[[\"f\", \"=\", 3]]", NULL, IDS, "[3]"},
    {"= True matches 1 like Python", "[[\"id\", \"=\", true]]", NULL, IDS, "[1]"},
    {"!= excludes and a missing key is false", "[[\"opt\", \"!=\", 5]]", NULL, IDS, "[1,3]"},
    {"= null matches only explicit nulls", "[[\"opt\", \"=\", null]]", NULL, IDS, "[1]"},
    {"> on ints", "[[\"n\", \">\", 5]]", NULL, IDS, "[1,2,4]"},
    {">= on ints", "[[\"n\", \">=\", 10]]", NULL, IDS, "[1,2,4]"},
    {"< on floats", "[[\"f\", \"<\", 2.5]]", NULL, IDS, "[1]"},
    {"<= on floats", "[[\"f\", \"<=\", 2.5]]", NULL, IDS, "[1,2]"},
    {"> on strings compares code points", "[[\"name\", \">\", \"b\"]]", NULL, IDS, "[3,4]"},
    {"ordering None with int is a TypeError", "[[\"opt\", \">\", 1]]", NULL, CERR,
     "'>' not supported between instances of 'NoneType' and 'int'"},
    {"ordering str with int is a TypeError", "[[\"name\", \"<\", 1]]", NULL, CERR,
     "'<' not supported between instances of 'str' and 'int'"},
    {"~ is anchored at the start", "[[\"name\", \"~\", \"a\"]]", NULL, IDS, "[1]"},
    {"~ is not a full match", "[[\"name\", \"~\", \"al\"]]", NULL, IDS, "[1]"},
    {"~ with a pattern", "[[\"name\", \"~\", \"(g|d).*a$\"]]", NULL, IDS, "[3,4]"},
    {"~ treats null as the empty string", "[[\"id\", \"<\", 2], [\"opt\", \"~\", \"x*\"]]",
     NULL, IDS, "[1]"},
    {"~ on an int is a TypeError", "[[\"n\", \"~\", \"1\"]]", NULL, CERR,
     "expected string or bytes-like object, got 'int'"},
    {"in a list", "[[\"id\", \"in\", [1, 3]]]", NULL, IDS, "[1,3]"},
    {"in accepts null values", "[[\"opt\", \"in\", [null, 3]]]", NULL, IDS, "[1,3]"},
    {"nin is false on null", "[[\"opt\", \"nin\", [3]]]", NULL, IDS, "[2]"},
    {"nin excludes", "[[\"id\", \"nin\", [1, 2]]]", NULL, IDS, "[3,4]"},
    {"rin tests list membership", "[[\"tags\", \"rin\", \"a\"]]", NULL, IDS, "[1,4]"},
    {"rin tests substrings", "[[\"name\", \"rin\", \"lt\"]]", NULL, IDS, "[4]"},
    {"rin is false on null", "[[\"id\", \"<\", 2], [\"opt\", \"rin\", \"x\"]]", NULL, IDS,
     "[]"},
    {"rin on an int is a TypeError", "[[\"n\", \"rin\", 1]]", NULL, CERR,
     "argument of type 'int' is not iterable"},
    {"rnin", "[[\"tags\", \"rnin\", \"a\"]]", NULL, IDS, "[2,3]"},
    {"rnin is false on null", "[[\"id\", \"<\", 2], [\"opt\", \"rnin\", 1]]", NULL, IDS,
     "[]"},
    {"^ starts with", "[[\"name\", \"^\", \"ga\"]]", NULL, IDS, "[3]"},
    {"!^ does not start with", "[[\"name\", \"!^\", \"ga\"]]", NULL, IDS, "[1,2,4]"},
    {"!^ is false on null", "[[\"opt\", \"!^\", \"x\"]]", NULL, IDS, "[]"},
    {"$ ends with", "[[\"name\", \"$\", \"ta\"]]", NULL, IDS, "[2,4]"},
    {"!$ does not end with", "[[\"name\", \"!$\", \"ta\"]]", NULL, IDS, "[1,3]"},
    {"C= casefolds", "[[\"name\", \"C=\", \"BETA\"]]", NULL, IDS, "[2]"},
    {"C!= casefolds", "[[\"name\", \"C!=\", \"BETA\"]]", NULL, IDS, "[1,3,4]"},
    {"C~ casefolds", "[[\"name\", \"C~\", \"B\"]]", NULL, IDS, "[2]"},
    {"Cin casefolds lists of strings", "[[\"name\", \"Cin\", [\"ALPHA\", \"GAMMA\"]]]", NULL, IDS,
     "[1,3]"},
    {"Cnin casefolds", "[[\"name\", \"Cnin\", [\"ALPHA\"]]]", NULL, IDS, "[2,3,4]"},
    {"Crin casefolds", "[[\"name\", \"Crin\", \"ET\"]]", NULL, IDS, "[2]"},
    {"Crnin casefolds", "[[\"name\", \"Crnin\", \"ET\"]]", NULL, IDS, "[1,3,4]"},
    {"C^ casefolds", "[[\"name\", \"C^\", \"be\"]]", NULL, IDS, "[2]"},
    {"C!^ casefolds", "[[\"name\", \"C!^\", \"be\"]]", NULL, IDS, "[1,3,4]"},
    {"C$ casefolds", "[[\"sub.name\", \"C$\", \"EN\"]]", NULL, IDS, "[1,4]"},
    {"C!$ casefolds", "[[\"sub.name\", \"C!$\", \"EN\"]]", NULL, IDS, "[2,3]"},
    {"= is case sensitive", "[[\"sub.name\", \"=\", \"seven\"]]", NULL, IDS, "[4]"},
    {"dotted paths walk maps", "[[\"sub.id\", \"=\", 7]]", NULL, IDS, "[1,4]"},
    {"an escaped dot is a literal key", "[[\"dot\\\\.key\", \"=\", 1]]", NULL, IDS, "[1]"},
    {"a missing nested key is false even for !=", "[[\"sub.nothing\", \"!=\", 1]]", NULL, IDS,
     "[]"},
    {"a numeric component indexes a list", "[[\"tags.0\", \"=\", \"a\"]]", NULL, IDS, "[1,4]"},
    {"an index out of range is None", "[[\"tags.1\", \"=\", null]]", NULL, IDS, "[2,3,4]"},
    {"* matches any list element", "[[\"list.*.k\", \"=\", 1]]", NULL, IDS, "[1,4]"},
    {"* on an empty list matches nothing", "[[\"list.*.k\", \">\", 0]]", NULL, IDS, "[1,2,4]"},
    {"conditions are ANDed", "[[\"n\", \"=\", 10], [\"name\", \"^\", \"d\"]]", NULL, IDS, "[4]"},
    {"OR of leaves", "[[\"OR\", [[\"id\", \"=\", 1], [\"id\", \"=\", 3]]]]", NULL, IDS, "[1,3]"},
    {"OR with an AND group",
     "[[\"OR\", [[[\"n\", \"=\", 10], [\"name\", \"^\", \"d\"]], [\"id\", \"=\", 2]]]]", NULL, IDS,
     "[2,4]"},
    {"nested OR", "[[\"OR\", [[\"OR\", [[\"id\", \"=\", 1]]], [\"id\", \"=\", 4]]]]", NULL, IDS,
     "[1,4]"},
    {"OR and a sibling condition", "[[\"OR\", [[\"id\", \"=\", 1], [\"id\", \"=\", 2]]], "
                                   "[\"flag\", \"=\", false]]",
     NULL, IDS, "[2]"},
    {"an empty OR matches nothing", "[[\"OR\", []]]", NULL, IDS, "[]"},
    {"a filter of length 1 is refused", "[[\"id\"]]", NULL, VERR,
     "Value error, filter_list: invalid filter length 1"},
    {"a filter of length 4 is refused", "[[\"id\", \"=\", 1, 2]]", NULL, VERR,
     "Value error, filter_list: invalid filter length 4"},
    {"a 2-filter must start with OR", "[[\"AND\", []]]", NULL, VERR,
     "Value error, filter_list: len-2 filter must start with \"OR\""},
    {"an unknown operator is refused", "[[\"id\", \"==\", 1]]", NULL, VERR,
     "Value error, filter_list: unknown operator '=='"},
    {"C alone is not an operator", "[[\"id\", \"C\", 1]]", NULL, VERR,
     "Value error, filter_list: unknown operator 'C'"},
    {"filters must be a list", "{}", NULL, VERR, "Input should be a valid list"},
    {"count counts matches", "[[\"n\", \"=\", 10]]", "{\"count\": true}", JSON, "2"},
    {"count ignores limit and offset", "[]", "{\"count\": true, \"limit\": 1, \"offset\": 1}",
     JSON, "4"},
    {"get returns the first match", "[[\"n\", \"=\", 10]]", "{\"get\": true, \"select\": [\"id\"]}",
     JSON, "{\"id\":1}"},
    {"get with no match is MatchNotFound", "[[\"id\", \"=\", 99]]", "{\"get\": true}", CERR,
     "MatchNotFound()"},
    {"get with offset is refused", "[]", "{\"get\": true, \"offset\": 1}", CERR,
     "get=True is incompatible with offset"},
    {"get with limit > 1 is refused", "[]", "{\"get\": true, \"limit\": 2}", CERR,
     "get=True is incompatible with limit > 1"},
    {"get after order_by takes the first in order", "[]",
     "{\"get\": true, \"order_by\": [\"-n\"], \"select\": [\"id\", \"n\"]}", JSON,
     "{\"id\":2,\"n\":20}"},
    {"order_by runs after select: an unselected key is None for every item", "[]",
     "{\"order_by\": [\"n\"], \"select\": [\"id\"]}", CERR,
     "'<' not supported between instances of 'NoneType' and 'NoneType'"},
    {"limit", "[]", "{\"limit\": 2}", IDS, "[1,2]"},
    {"offset", "[]", "{\"offset\": 3}", IDS, "[4]"},
    {"offset past the end is empty", "[]", "{\"offset\": 9}", IDS, "[]"},
    {"offset and limit", "[]", "{\"offset\": 1, \"limit\": 2}", IDS, "[2,3]"},
    {"order_by ascending is stable", "[]", "{\"order_by\": [\"n\"]}", IDS, "[3,1,4,2]"},
    {"order_by descending is stable", "[]", "{\"order_by\": [\"-n\"]}", IDS, "[2,1,4,3]"},
    {"order_by two keys, first primary", "[]", "{\"order_by\": [\"n\", \"-id\"]}", IDS,
     "[3,4,1,2]"},
    {"order_by a nested path", "[]", "{\"order_by\": [\"-sub.id\", \"id\"]}", IDS, "[3,2,1,4]"},
    {"order_by on None without a nulls prefix is a TypeError", "[[\"id\", \"<\", 4]]",
     "{\"order_by\": [\"opt\"]}", CERR,
     "'<' not supported between instances of 'int' and 'NoneType'"},
    {"nulls_first puts nulls and missing first", "[]", "{\"order_by\": [\"nulls_first:opt\"]}",
     IDS, "[1,4,3,2]"},
    {"nulls_last puts nulls last", "[]", "{\"order_by\": [\"nulls_last:-opt\"]}", IDS,
     "[2,3,1,4]"},
    {"select keeps listed fields", "[[\"id\", \"=\", 2]]", "{\"select\": [\"name\", \"id\"]}",
     JSON, "[{\"name\":\"Beta\",\"id\":2}]"},
    {"select rebuilds nested maps", "[[\"id\", \"=\", 2]]", "{\"select\": [\"sub.id\"]}", JSON,
     "[{\"sub\":{\"id\":8}}]"},
    {"select renames to a flat key", "[[\"id\", \"=\", 2]]",
     "{\"select\": [[\"sub.name\", \"sn\"], \"id\"]}", JSON, "[{\"sn\":\"eight\",\"id\":2}]"},
    {"select omits missing paths", "[[\"id\", \"=\", 4]]", "{\"select\": [\"id\", \"opt\"]}", JSON,
     "[{\"id\":4}]"},
    {"select through a list is refused", "[[\"id\", \"=\", 1]]", "{\"select\": [\"list.k\"]}",
     CERR, "filter_list: selecting by list index is not supported"},
    {"select then order by an unselected field sees None", "[]",
     "{\"select\": [\"id\"], \"order_by\": [\"nulls_last:n\"]}", JSON,
     "[{\"id\":1},{\"id\":2},{\"id\":3},{\"id\":4}]"},
    {"select list with three items is refused", "[]", "{\"select\": [[\"a\", \"b\", \"c\"]]}",
     VERR, "Value error, filter_list: select as list may only contain two parameters"},
    {"unknown option is refused", "[]", "{\"bogus\": 1}", VERR, "Extra inputs are not permitted"},
    {"limit must be an int", "[]", "{\"limit\": \"2\"}", VERR, "Input should be a valid integer"},
    {"limit at most 10000", "[]", "{\"limit\": 10001}", VERR,
     "Input should be less than or equal to 10000"},
    {"offset not negative", "[]", "{\"offset\": -1}", VERR,
     "Input should be greater than or equal to 0"},
    {"get must be a bool", "[]", "{\"get\": 1}", VERR, "Input should be a valid boolean"},
    {"order_by must be a list", "[]", "{\"order_by\": \"id\"}", VERR, "Input should be a valid list"},
    {"extra is passed through", "[[\"id\", \"=\", 3]]", "{\"extra\": {\"verbose\": true}}", IDS,
     "[3]"},
    {"extra must be a dict", "[]", "{\"extra\": []}", VERR, "Input should be a valid dictionary"},
    {"force_sql_filters is accepted", "[[\"id\", \"=\", 3]]", "{\"force_sql_filters\": true}", IDS,
     "[3]"},
    {"a bad regex is refused", "[[\"name\", \"~\", \"(\"]]", NULL, VERR,
     "Value error, filter_list: invalid regular expression: ("},
    {"bounded repetitions are allowed", "[[\"name\", \"~\", \"[a-z]{1,5}(ph){0,1}a$\"]]", NULL, IDS,
     "[1,3,4]"},
    {"nested bounds that expand to 970,299 copies are refused",
     "[[\"name\", \"~\", \"(((a{1,99}){1,99}){1,99})\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: (((a{1,99}){1,99}){1,99})"},
    {"{m,} counts too", "[[\"name\", \"~\", \"((x{100,}){101})\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: ((x{100,}){101})"},
    {"a bound over a star is refused", "[[\"name\", \"~\", \"a*{10000}\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: a*{10000}"},
    {"a bound over a group holding a loop is refused", "[[\"name\", \"~\", \"((a*)*){20}\"]]",
     NULL, VERR, "Value error, filter_list: regular expression too complex: ((a*)*){20}"},
    {"a ')' that closes the anchoring group counts", "[[\"name\", \"~\", \"$(a*)*){20}Q\"]]",
     NULL, VERR, "Value error, filter_list: regular expression too complex: $(a*)*){20}Q"},
    {"{m,} is a loop too", "[[\"name\", \"~\", \"((a?{1,9}){1,}){1,}\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: ((a?{1,9}){1,}){1,}"},
    {"a bound over an empty group is refused (35 s in regcomp)",
     "[[\"name\", \"~\", \"((){2,99}){1,}\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: ((){2,99}){1,}"},
    {"a bound over what may match nothing is refused (over 15 s)",
     "[[\"name\", \"~\", \"((a?){2,99}){1,}\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: ((a?){2,99}){1,}"},
    {"stacked repetitions are refused", "[[\"name\", \"~\", \"z+OO****+++\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: z+OO****+++"},
    {"nested + doubles the size", "[[\"name\", \"~\", \"((((((((((a+)+)+)+)+)+)+)+)+)+)\"]]",
     NULL, VERR,
     "Value error, filter_list: regular expression too complex: ((((((((((a+)+)+)+)+)+)+)+)+)+)"},
    {"back-references are refused", "[[\"name\", \"~\", \"(a*)*\\\\1c\"]]", NULL, VERR,
     "Value error, filter_list: regular expression too complex: (a*)*\\1c"},
    {"bounds inside bounds are fine while small",
     "[[\"name\", \"~\", \"([a-z]{1,3}[.]?){1,3}ta$\"]]", NULL, IDS, "[4]"},
    {"braces in a bracket expression are not bounds",
     "[[\"name\", \"~\", \"[{]{0}[[:alpha:]{]{1,2}l\"]]", NULL, IDS, "[1,4]"},
};

static char *ids_of(const struct nv *v)
{
    struct nv *ids = nv_arr();
    for (size_t i = 0; i < nv_len(v); i++) {
        nv_push(ids, nv_copy(nv_get(nv_at(v, i), "id")));
    }
    char *s = nv_to_json(ids);
    nv_free(ids);
    return s;
}

/* Every case of the table behaves as its first column says. */
static void test_cases(void **state)
{
    (void)state;
    struct nv *items = nv_from_json(ITEMS);
    assert_non_null(items);
    struct nv *orig = nv_copy(items);
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct qcase *c = &cases[i];
        struct nv *f = nv_from_json(c->filters);
        struct nv *o = c->options ? nv_from_json(c->options) : NULL;
        assert_non_null(f);
        struct nv *out = NULL;
        struct nv_err e;
        nv_err_init(&e);
        int rv = rpc_query(items, f, o, &out, &e);
        char *got = NULL;
        bool ok;
        if (c->kind == IDS || c->kind == JSON) {
            got = rv == 0 ? (c->kind == IDS ? ids_of(out) : nv_to_json(out)) : nv_err_reason(&e);
            ok = rv == 0 && strcmp(got, c->expect) == 0;
        } else if (c->kind == VERR) {
            got = rv < 0 && e.n > 0 ? strdup(e.items[0].msg) : nv_err_reason(&e);
            ok = rv < 0 && e.code == NV_E_INVALID_PARAMS && strcmp(got, c->expect) == 0;
            /* rpc_query_check reports the same without data */
            struct nv_err e2;
            nv_err_init(&e2);
            ok = ok && rpc_query_check(f, o, &e2) < 0 && e2.n > 0 &&
                 strcmp(e2.items[0].msg, c->expect) == 0;
            nv_err_clear(&e2);
        } else {
            got = rv < 0 ? nv_err_reason(&e) : strdup("(no error)");
            ok = rv < 0 && e.code == NV_E_CALL && strcmp(got, c->expect) == 0;
        }
        if (!ok) {
            fprintf(stderr, "FAIL: %s\n  expected: %s\n  got:      %s\n", c->what, c->expect,
                    got ? got : "(null)");
            failures++;
        }
        free(got);
        nv_free(out);
        nv_free(f);
        nv_free(o);
        nv_err_clear(&e);
    }
    /* the input is never modified */
    assert_true(nv_equal(items, orig));
    nv_free(items);
    nv_free(orig);
    printf("# %zu query cases\n", sizeof cases / sizeof cases[0]);
    assert_int_equal(failures, 0);
}

/* Filtering and ordering 4096 entries is a single linear pass plus a sort. */
static void test_large(void **state)
{
    (void)state;
    struct nv *items = nv_arr();
    for (int i = 0; i < 4096; i++) {
        struct nv *m = nv_map();
        nv_set_int(m, "id", i + 1);
        nv_set(m, "name", nv_strf("ns-%05d", (i * 7919) % 4096));
        struct nv *sub = nv_map();
        nv_set_int(sub, "id", i % 128);
        nv_set(m, "subsys", sub);
        nv_push(items, m);
    }
    struct nv *f = nv_from_json("[[\"subsys.id\", \"in\", [1, 2, 3]], [\"name\", \"~\", \"ns-0\"]]");
    struct nv *o = nv_from_json("{\"order_by\": [\"-name\"], \"limit\": 50}");
    struct nv *out = NULL;
    struct nv_err e;
    nv_err_init(&e);
    assert_int_equal(rpc_query(items, f, o, &out, &e), 0);
    assert_true(nv_len(out) > 0 && nv_len(out) <= 50);
    for (size_t i = 1; i < nv_len(out); i++) {
        assert_true(strcmp(nv_get_str(nv_at(out, i - 1), "name"),
                           nv_get_str(nv_at(out, i), "name")) >= 0);
    }
    nv_free(out);
    nv_free(f);
    nv_free(o);
    nv_free(items);
}

/* Deep nesting is bounded instead of recursing without limit. */
static void test_depth_limit(void **state)
{
    (void)state;
    char buf[8192] = "";
    strcat(buf, "[");
    for (int i = 0; i < 70; i++) {
        strcat(buf, "[\"OR\", [");
    }
    strcat(buf, "[\"id\", \"=\", 1]");
    for (int i = 0; i < 70; i++) {
        strcat(buf, "]]");
    }
    strcat(buf, "]");
    struct nv *f = nv_from_json(buf);
    assert_non_null(f);
    struct nv_err e;
    nv_err_init(&e);
    assert_true(rpc_query_check(f, NULL, &e) < 0);
    assert_non_null(strstr(e.items[0].msg, "nesting depth"));
    nv_err_clear(&e);
    nv_free(f);
}

/* Work bounds: 2000 conditions and list values, patterns of 1024
 * characters, 1000 fields in select/order_by; at the bound it passes. */
static void test_work_limits(void **state)
{
    (void)state;
    struct nv_err e;
    nv_err_init(&e);
    struct nv *f = nv_arr();
    for (int i = 0; i < 2000; i++) {
        struct nv *c = nv_arr();
        nv_push(c, nv_str("id"));
        nv_push(c, nv_str("!="));
        nv_push(c, nv_int(i));
        nv_push(f, c);
    }
    assert_int_equal(rpc_query_check(f, NULL, &e), 0);
    struct nv *c = nv_arr();
    nv_push(c, nv_str("id"));
    nv_push(c, nv_str("="));
    nv_push(c, nv_int(0));
    nv_push(f, c);
    assert_true(rpc_query_check(f, NULL, &e) < 0);
    assert_non_null(strstr(e.items[0].msg, "more than 2000 conditions"));
    nv_err_clear(&e);
    nv_free(f);
    /* an "in" list counts its values */
    struct nv *list = nv_arr();
    for (int i = 0; i < 2000; i++) {
        nv_push(list, nv_int(i));
    }
    f = nv_arr();
    c = nv_arr();
    nv_push(c, nv_str("id"));
    nv_push(c, nv_str("in"));
    nv_push(c, list);
    nv_push(f, c);
    assert_true(rpc_query_check(f, NULL, &e) < 0);
    nv_err_clear(&e);
    nv_free(f);
    /* patterns */
    char *pat = malloc(1026);
    memset(pat, 'a', 1025);
    pat[1025] = '\0';
    f = nv_arr();
    c = nv_arr();
    nv_push(c, nv_str("name"));
    nv_push(c, nv_str("~"));
    nv_push(c, nv_str(pat));
    nv_push(f, c);
    assert_true(rpc_query_check(f, NULL, &e) < 0);
    assert_non_null(strstr(e.items[0].msg, "longer than 1024"));
    nv_err_clear(&e);
    nv_free(f);
    /* 1024 characters that regcomp may take (256 bounded atoms) */
    for (int i = 0; i < 1024; i += 4) {
        memcpy(pat + i, "a{2}", 4);
    }
    pat[1024] = '\0';
    f = nv_arr();
    c = nv_arr();
    nv_push(c, nv_str("name"));
    nv_push(c, nv_str("~"));
    nv_push(c, nv_str(pat));
    nv_push(f, c);
    assert_int_equal(rpc_query_check(f, NULL, &e), 0);
    nv_free(f);
    free(pat);
    /* select */
    struct nv *o = nv_map();
    struct nv *sel = nv_arr();
    for (int i = 0; i < 1001; i++) {
        nv_push(sel, nv_str("id"));
    }
    nv_set(o, "select", sel);
    assert_true(rpc_query_check(NULL, o, &e) < 0);
    assert_string_equal(e.items[0].attr, "options.select");
    nv_err_clear(&e);
    nv_free(o);
}

/* The filter [["name", "~", "(((...a...)))"]] with depth groups. */
static int check_nested_regex(size_t depth, struct nv_err *e)
{
    char *pat = malloc(2 * depth + 2);
    assert_non_null(pat);
    memset(pat, '(', depth);
    pat[depth] = 'a';
    memset(pat + depth + 1, ')', depth);
    pat[2 * depth + 1] = '\0';
    struct nv *f = nv_arr(), *leaf = nv_arr();
    nv_push(leaf, nv_str("name"));
    nv_push(leaf, nv_str("~"));
    nv_push(leaf, nv_str(pat));
    nv_push(f, leaf);
    int rv = rpc_query_check(f, NULL, e);
    nv_free(f);
    free(pat);
    return rv;
}

/* Deeply nested groups are refused before regcomp: 200,000 of them
 * overflowed its stack (a crash of the daemon from one query; the
 * 1024-character bound stops that many now, 40 still get here). */
static void test_regex_nesting(void **state)
{
    (void)state;
    struct nv_err e;
    nv_err_init(&e);
    assert_true(check_nested_regex(200000, &e) < 0);
    nv_err_clear(&e);
    nv_err_init(&e);
    assert_true(check_nested_regex(40, &e) < 0);
    assert_non_null(strstr(e.items[0].msg, "regular expression too complex"));
    nv_err_clear(&e);
    nv_err_init(&e);
    assert_int_equal(check_nested_regex(31, &e), 0);
    nv_err_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_work_limits),
        cmocka_unit_test(test_regex_nesting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
