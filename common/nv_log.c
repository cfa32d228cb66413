/* Log lines (nv_log.h). The state is process-wide on purpose: it describes
 * the one stderr all modules share; only main (and its SIGHUP handler on
 * the loop thread) writes it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "nv_log.h"

static char g_ident[64];
static int g_max = NV_LOG_INFO;
static bool g_journal;

/* systemd connected stderr to the journal: $JOURNAL_STREAM is its
 * "device:inode", and stderr is still that stream (not redirected). */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) < 0) {
        return false;
    }
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void nv_log_init(const char *ident, int max_prio)
{
    snprintf(g_ident, sizeof g_ident, "%s", ident != NULL ? ident : "");
    g_max = max_prio;
    g_journal = stderr_is_journal();
}

void nv_log_set_level(int max_prio)
{
    g_max = max_prio;
}

int nv_log_level_of(const char *name)
{
    static const struct {
        const char *name;
        int prio;
    } levels[] = {{"error", NV_LOG_ERR},
                  {"warning", NV_LOG_WARNING},
                  {"info", NV_LOG_INFO},
                  {"debug", NV_LOG_DEBUG}};
    for (size_t i = 0; name != NULL && i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(levels[i].name, name) == 0) {
            return levels[i].prio;
        }
    }
    return -1;
}

bool nv_log_enabled(int prio)
{
    return prio <= g_max;
}

static const char *prio_name(int prio)
{
    return prio <= NV_LOG_ERR       ? "error: "
           : prio == NV_LOG_WARNING ? "warning: "
           : prio >= NV_LOG_DEBUG   ? "debug: "
                                    : "";
}

size_t nv_log_prefix(char *buf, size_t len, int prio)
{
    const char *sep = g_ident[0] != '\0' ? ": " : "";
    int n;
    if (g_journal) {
        n = snprintf(buf, len, "<%d>%s%s", prio, g_ident, sep);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        localtime_r(&ts.tv_sec, &tm);
        char when[48], zone[8];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        strftime(zone, sizeof zone, "%z", &tm); /* +hhmm -> +hh:mm (ISO 8601) */
        n = snprintf(buf, len, "%s.%03ld%.3s:%s %s%s%s", when, ts.tv_nsec / 1000000, zone, zone + 3,
                     g_ident, sep, prio_name(prio));
    }
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

void nv_logf(int prio, const char *fmt, ...)
{
    if (!nv_log_enabled(prio)) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char head[160];
    nv_log_prefix(head, sizeof head, prio);
    fprintf(stderr, "%s%s\n", head, line);
}
