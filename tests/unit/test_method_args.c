/* The argument descriptions core.get_methods hands out (rpc/method_args.c)
 * against what the statemachine really accepts, both ways: every field a
 * create/update description lists is accepted (no "Extra inputs are not
 * permitted" for it), a made-up field is refused, and every field of an
 * entry that an update accepts is in the description. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"
#include "sm.h"

static void zero_random(void *ctx, void *buf, size_t len)
{
    unsigned *c = ctx;
    unsigned char *b = buf;
    for (size_t i = 0; i < len; i++) {
        b[i] = (unsigned char)(++*c * 37u);
    }
}

static unsigned g_rnd;
static const struct sm_env g_env = {.random = zero_random, .ctx = &g_rnd, .ha = true};

static struct nv *apply(struct sm_state *s, const char *method, const char *json)
{
    struct nv *p = nv_from_json(json), *cmd = NULL;
    assert_non_null(p);
    struct nv_err e;
    nv_err_init(&e);
    if (sm_prepare(s, method, p, &g_env, &cmd, &e) != 0) {
        char *r = nv_err_reason(&e);
        fail_msg("%s %s: %s", method, json, r ? r : "?");
    }
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(sm_command_encode(cmd, NULL, -1, &buf, &len), 0);
    struct sm_result *r = sm_apply(s, buf, len);
    assert_non_null(r);
    assert_null(r->err);
    struct nv *v = r->value;
    r->value = NULL;
    sm_result_free(r);
    free(buf);
    nv_free(cmd);
    nv_free(p);
    nv_err_clear(&e);
    return v;
}

/* One row of every table, id 1 each. */
static struct sm_state *populated(void)
{
    struct sm_state *s = sm_new();
    assert_non_null(s);
    const char *calls[][2] = {
        {"nvmet.subsys.create", "[{\"name\": \"nqn.2024-01.com.example:a\"}]"},
        {"nvmet.host.create", "[{\"hostnqn\": \"nqn.2024-01.com.example:h\"}]"},
        {"nvmet.port.create", "[{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"198.51.100.7\"}]"},
        {"nvmet.namespace.create", "[{\"subsys\": 1, \"device\": \"zvol/tank/a\"}]"},
        {"nvmet.host_subsys.create", "[{\"host_id\": 1, \"subsys_id\": 1}]"},
        {"nvmet.port_subsys.create", "[{\"port_id\": 1, \"subsys_id\": 1}]"},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        nv_free(apply(s, calls[i][0], calls[i][1]));
    }
    return s;
}

/* Did preparing method with {field: v} call field an extra input? */
static bool extra_input(struct sm_state *s, const char *method, bool update, const char *field,
                        const struct nv *v)
{
    struct nv *p = nv_arr(), *d = nv_map();
    if (update) {
        nv_push(p, nv_int(1));
    }
    if (strcmp(method, "nvmet.port.create") == 0) {
        /* the transport decides which fields a port has */
        nv_set_str(d, "addr_trtype", "TCP");
    }
    nv_set(d, field, v != NULL ? nv_copy(v) : nv_nil());
    nv_push(p, d);
    struct nv *cmd = NULL;
    struct nv_err e;
    nv_err_init(&e);
    sm_prepare(s, method, p, &g_env, &cmd, &e);
    bool extra = false;
    for (size_t i = 0; i < e.n; i++) {
        const char *attr = e.items[i].attr;
        const char *dot = attr != NULL ? strrchr(attr, '.') : NULL;
        extra = extra || (dot != NULL && strcmp(dot + 1, field) == 0 &&
                          strcmp(e.items[i].msg, "Extra inputs are not permitted") == 0);
    }
    nv_err_clear(&e);
    nv_free(cmd);
    nv_free(p);
    return extra;
}

/* The field names of the first map of a description: "name!: type" and
 * "(or alias)" both count. Returns how many were written to out. */
static size_t fields_of(const char *args, char out[][64], size_t max)
{
    const char *p = strchr(args, '{');
    size_t n = 0;
    int depth = 0;
    bool want_name = true;
    for (; p != NULL && *p != '\0' && n < max; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
            want_name = depth == 1;
            continue;
        }
        if (*p == '}' || *p == ']') {
            if (--depth == 0) {
                break;
            }
            continue;
        }
        if (depth != 1) {
            continue;
        }
        if (*p == ',') {
            want_name = true;
            continue;
        }
        if (strncmp(p, "(or ", 4) == 0) {
            size_t k = strcspn(p + 4, ":) ");
            snprintf(out[n++], 64, "%.*s", (int)k, p + 4);
            p += 3 + k;
            continue;
        }
        if (want_name && *p != ' ') {
            size_t k = strcspn(p, "!:");
            snprintf(out[n++], 64, "%.*s", (int)k, p);
            p += k - 1;
            want_name = false;
        }
    }
    return n;
}

static bool listed(char names[][64], size_t n, const char *field)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], field) == 0) {
            return true;
        }
    }
    return false;
}

static void test_described_fields_accepted(void **state)
{
    (void)state;
    struct sm_state *s = populated();
    static const char *const methods[] = {
        "nvmet.subsys.create",      "nvmet.subsys.update",      "nvmet.namespace.create",
        "nvmet.namespace.update",   "nvmet.port.create",        "nvmet.port.update",
        "nvmet.host.create",        "nvmet.host.update",        "nvmet.host_subsys.create",
        "nvmet.host_subsys.update", "nvmet.port_subsys.create", "nvmet.port_subsys.update",
        "nvmet.global.update",      "failover.update"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        const char *args = rpc_method_args(methods[i]);
        assert_non_null(args);
        bool update = strstr(methods[i], ".update") != NULL &&
                      strncmp(methods[i], "nvmet.global", 12) != 0 &&
                      strncmp(methods[i], "failover", 8) != 0;
        char names[32][64];
        size_t n = fields_of(args, names, 32);
        if (n < 2) {
            fail_msg("%s: no fields in \"%s\"", methods[i], args);
        }
        /* a plausible value: the stored entry's where it has the field */
        char service[64];
        snprintf(service, sizeof service, "%.*s", (int)(strrchr(methods[i], '.') - methods[i]),
                 methods[i]);
        int t = sm_table_of(service);
        struct nv *entry = t >= 0 ? sm_entry(s, (enum sm_table)t, 1, NULL) : NULL;
        for (size_t k = 0; k < n; k++) {
            if (extra_input(s, methods[i], update, names[k], nv_get(entry, names[k]))) {
                fail_msg("%s lists \"%s\", which the statemachine refuses", methods[i],
                         names[k]);
            }
        }
        if (!extra_input(s, methods[i], update, "zz_not_a_field", NULL)) {
            fail_msg("%s takes a made-up field", methods[i]);
        }
        nv_free(entry);
    }
    sm_free(s);
}

/* Every field of an entry that update accepts is described. */
static void test_accepted_fields_described(void **state)
{
    (void)state;
    struct sm_state *s = populated();
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        char method[64];
        snprintf(method, sizeof method, "%s.update", sm_table_service((enum sm_table)t));
        char names[32][64];
        size_t n = fields_of(rpc_method_args(method), names, 32);
        struct nv *e = sm_entry(s, (enum sm_table)t, 1, NULL);
        assert_non_null(e);
        for (size_t k = 0; k < e->u.m.n; k++) {
            const char *f = e->u.m.kv[k].k;
            if (!extra_input(s, method, true, f, e->u.m.kv[k].v) && !listed(names, n, f)) {
                fail_msg("%s accepts \"%s\", which its description leaves out", method, f);
            }
        }
        nv_free(e);
    }
    sm_free(s);
}

/* Every method the product registers has a description (the rpc layer's
 * built-in ones and the method table's). */
static void test_every_method_described(void **state)
{
    (void)state;
    static const char *const verbs[] = {"query", "get_instance", "create", "update", "delete"};
    for (int t = 0; t < SM_TABLE_COUNT; t++) {
        for (size_t v = 0; v < 5; v++) {
            char m[80];
            snprintf(m, sizeof m, "%s.%s", sm_table_service((enum sm_table)t), verbs[v]);
            if (rpc_method_args(m) == NULL) {
                fail_msg("%s has no description", m);
            }
        }
    }
    assert_null(rpc_method_args("nvmet.nothing"));
    assert_non_null(rpc_method_args("core.get_methods"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_described_fields_accepted),
        cmocka_unit_test(test_accepted_fields_described),
        cmocka_unit_test(test_every_method_described),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
