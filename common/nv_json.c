/* JSON <-> nv with json-c. */
#include "nv_json.h"

#include "nv.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static struct nv *from_jc(struct json_object *o)
{
    struct nv *v;
    switch (json_object_get_type(o)) {
    case json_type_null:
        return nv_nil();
    case json_type_boolean:
        return nv_bool(json_object_get_boolean(o));
    case json_type_int:
        return nv_int(json_object_get_int64(o));
    case json_type_double:
        return nv_float(json_object_get_double(o));
    case json_type_string:
        return nv_strn(json_object_get_string(o), (size_t)json_object_get_string_len(o));
    case json_type_array:
        v = nv_arr();
        for (size_t i = 0; v != NULL && i < json_object_array_length(o); i++) {
            struct nv *e = from_jc(json_object_array_get_idx(o, i));
            if (e == NULL || nv_push(v, e) != 0) {
                nv_free(v);
                v = NULL;
            }
        }
        return v;
    case json_type_object:
        v = nv_map();
        json_object_object_foreach(o, key, val)
        {
            if (v == NULL) {
                break;
            }
            struct nv *e = from_jc(val);
            if (e == NULL || nv_set(v, key, e) != 0) {
                nv_free(v);
                v = NULL;
            }
        }
        return v;
    }
    return NULL;
}

struct nv *nv_from_json(const char *text)
{
    /* deeper than json-c's default 32: nested query filters are legitimate */
    struct json_tokener *tok = json_tokener_new_ex(512);
    if (tok == NULL) {
        return NULL;
    }
    size_t len = strlen(text);
    /* include the NUL: a bare number ("1") is complete only at a delimiter */
    struct json_object *o = json_tokener_parse_ex(tok, text, (int)len + 1);
    struct nv *v = NULL;
    if (json_tokener_get_error(tok) == json_tokener_success &&
        json_tokener_get_parse_end(tok) >= len) {
        v = from_jc(o);
    } else if (json_tokener_get_error(tok) == json_tokener_success) {
        /* trailing characters: allowed only if they are whitespace */
        size_t end = json_tokener_get_parse_end(tok);
        while (end < len && strchr(" \t\r\n", text[end]) != NULL) {
            end++;
        }
        if (end == len) {
            v = from_jc(o);
        }
    }
    json_object_put(o);
    json_tokener_free(tok);
    return v;
}

static struct json_object *to_jc(const struct nv *v)
{
    struct json_object *o;
    if (v == NULL) {
        return NULL;
    }
    switch (v->t) {
    case NV_NIL:
        return NULL;
    case NV_BOOL:
        return json_object_new_boolean(v->u.b);
    case NV_INT:
        return json_object_new_int64(v->u.i);
    case NV_FLOAT:
        return json_object_new_double(v->u.f);
    case NV_STR:
        return json_object_new_string_len(v->u.s.p, (int)v->u.s.len);
    case NV_ARR:
        o = json_object_new_array();
        for (size_t i = 0; i < v->u.a.n; i++) {
            json_object_array_add(o, to_jc(v->u.a.v[i]));
        }
        return o;
    case NV_MAP:
        o = json_object_new_object();
        for (size_t i = 0; i < v->u.m.n; i++) {
            json_object_object_add(o, v->u.m.kv[i].k, to_jc(v->u.m.kv[i].v));
        }
        return o;
    }
    return NULL;
}

char *nv_to_json(const struct nv *v)
{
    struct json_object *o = to_jc(v);
    const char *s = o == NULL ? "null"
                              : json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                      JSON_C_TO_STRING_NOSLASHESCAPE);
    char *out = strdup(s);
    json_object_put(o);
    return out;
}
