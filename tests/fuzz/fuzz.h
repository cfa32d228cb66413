/* Shared pieces of the libFuzzer harnesses (tests/fuzz/fuzz_*.c) and of
 * the seed generator (fuzz_seed.c): a reproducible leader environment, the
 * script of real calls that populates a state machine, consensus entry
 * framing, and a small byte reader for structured inputs. */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nv;
struct sm_env;
struct sm_state;

/* The libFuzzer entry point every harness defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fatal property violation: print and abort (libFuzzer saves the input). */
#define FUZZ_CHECK(cond)                          \
    do {                                          \
        if (!(cond)) {                            \
            fuzz_fail(__FILE__, __LINE__, #cond); \
        }                                         \
    } while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

/* The leader's environment: xorshift "randomness" (reset by
 * fuzz_env_reset), every path usable, ha and rdma available. */
extern const struct sm_env fuzz_env;
void fuzz_env_reset(void);

/* One call of the population script. */
struct fuzz_call {
    const char *method;
    const char *params; /* JSON positional arguments */
};
extern const struct fuzz_call fuzz_script[];
extern const size_t fuzz_script_len;

/* Prepare a call on the leader side; the encoded command (owned, with a
 * client session when client != NULL) or NULL if validation refused it
 * (then *why, if why is not NULL, says why; owned). */
char *fuzz_prepare(const struct sm_state *s, const char *method, const char *params,
                   const char *client, int64_t seq, size_t *len, char **why);
/* A state with every table populated by fuzz_script (applied through
 * sm_prepare/sm_apply); aborts if a call of the script fails. */
struct sm_state *fuzz_populated_state(void);

/* Empty s (sm_restore of an empty state's snapshot): reusing states
 * keeps the harnesses fast (sm_new allocates the whole session table);
 * emptying them before an input returns keeps libFuzzer's malloc/free
 * balance (else it re-runs the input to look for a leak). */
void fuzz_state_reset(struct sm_state *s);

/* Every read of a state (entries of each table with options.extra, the
 * global entry, the cluster facts) and snapshot -> restore -> snapshot,
 * which must give the same bytes. */
void fuzz_exercise_state(const struct sm_state *s);

/* Consensus entry framing of n commands (what cons_log.c proposes): owned
 * buffer, *len bytes. */
unsigned char *fuzz_entry(const char *const *cmds, const size_t *lens, size_t n, size_t *len);

/* Reads a structured input from the front; a short input gives zeros. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};
uint8_t fuzz_u8(struct fuzz_in *in);
/* The remaining bytes as a NUL-terminated string (owned; stops at NUL). */
char *fuzz_rest_str(struct fuzz_in *in);

#endif
