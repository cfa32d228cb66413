/* common/nv_log: one line per call; plain lines start with an ISO 8601
 * time with milliseconds and zone, then ident and level; when stderr is
 * the journal ($JOURNAL_STREAM = its device:inode) lines carry the <N>
 * syslog priority and no time; lines above the level are dropped. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nv_log.h"

static char g_path[64];
static int g_saved = -1;

/* stderr to a fresh temp file; returns its path in g_path */
static void capture(void)
{
    snprintf(g_path, sizeof g_path, "/tmp/nv_log.XXXXXX");
    int fd = mkstemp(g_path);
    assert_true(fd >= 0);
    fflush(stderr);
    g_saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* stderr back; the captured text (owned) */
static char *release(void)
{
    fflush(stderr);
    dup2(g_saved, 2);
    close(g_saved);
    FILE *f = fopen(g_path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 8192);
    size_t n = fread(buf, 1, 8191, f);
    buf[n] = '\0';
    fclose(f);
    unlink(g_path);
    return buf;
}

static void test_plain(void **state)
{
    (void)state;
    unsetenv("JOURNAL_STREAM");
    capture();
    nv_log_init("nvmetd[7]", NV_LOG_INFO);
    nv_logf(NV_LOG_ERR, "rpc: %s", "broken");
    nv_logf(NV_LOG_INFO, "started");
    nv_logf(NV_LOG_DEBUG, "not shown");
    char *out = release();
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}"
                             "[+-][0-9]{2}:[0-9]{2} nvmetd\\[7\\]: error: rpc: broken\n"
                             "[0-9T:.+-]+ nvmetd\\[7\\]: started\n$",
                             REG_EXTENDED),
                     0);
    if (regexec(&re, out, 0, NULL, 0) != 0) {
        fail_msg("log: %s", out);
    }
    regfree(&re);
    free(out);
}

static void test_journal_and_level(void **state)
{
    (void)state;
    capture();
    struct stat st;
    assert_int_equal(fstat(2, &st), 0);
    char js[64];
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    nv_log_init("nvmetd[7]", NV_LOG_WARNING);
    nv_logf(NV_LOG_WARNING, "consensus[7]: refused");
    nv_logf(NV_LOG_INFO, "dropped");
    nv_log_set_level(NV_LOG_DEBUG);
    nv_logf(NV_LOG_DEBUG, "now shown");
    char *out = release();
    unsetenv("JOURNAL_STREAM");
    assert_string_equal(out, "<4>nvmetd[7]: consensus[7]: refused\n<7>nvmetd[7]: now shown\n");
    free(out);
    assert_int_equal(nv_log_level_of("warning"), NV_LOG_WARNING);
    assert_int_equal(nv_log_level_of("chatty"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_journal_and_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
