/* One log line format for every module.
 *
 * Where lines go and how they look is process-wide (one stderr): main sets
 * it once, before any thread starts, and SIGHUP may change the level.
 *   plain:    2026-11-30T01:47:23.123+00:00 nvmetd[1]: error: rpc: ...
 *   journald: <3>nvmetd[1]: rpc: ...
 * The journal form is chosen when stderr is the journal (systemd sets
 * $JOURNAL_STREAM to its device:inode): journald stamps the time itself and
 * reads the <N> prefix as the line's syslog priority. */
#ifndef NV_LOG_H
#define NV_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* syslog priorities */
enum nv_log_prio { NV_LOG_ERR = 3, NV_LOG_WARNING = 4, NV_LOG_INFO = 6, NV_LOG_DEBUG = 7 };

/* ident ("nvmetd[1]", copied; NULL = none) and the most verbose priority
 * printed. Decides plain or journal form. */
void nv_log_init(const char *ident, int max_prio);
void nv_log_set_level(int max_prio);
/* "error", "warning", "info", "debug" -> priority; -1 if unknown. */
int nv_log_level_of(const char *name);
bool nv_log_enabled(int prio);
void nv_logf(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The start of a line as nv_logf writes it (time or <N>, ident, level),
 * for a process that writes its lines with write(2) (the forked
 * guardian). Returns its length (< len). */
size_t nv_log_prefix(char *buf, size_t len, int prio);

#endif
