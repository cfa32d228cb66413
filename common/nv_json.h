/* JSON <-> nv conversion with json-c (nvmetctl, tests; not the daemon). */
#ifndef NV_JSON_H
#define NV_JSON_H

struct nv;

/* Parse one JSON text (the whole string must be one value). Integers stay
 * NV_INT (int64), other numbers NV_FLOAT. NULL on a syntax error. */
struct nv *nv_from_json(const char *text);
/* Compact JSON (no spaces, like json.dumps(separators=(',', ':')) is NOT
 * required; json-c's plain form). Caller frees. */
char *nv_to_json(const struct nv *v);

#endif
