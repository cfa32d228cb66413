/* Small files in a data dir that must survive a power loss. */
#ifndef NV_FILE_H
#define NV_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* PATH := the LEN bytes of TEXT, whole or not at all after a crash at any
 * moment: written to PATH.tmp (MODE), synced, renamed over PATH, the
 * directory synced. 0, or -errno (PATH.tmp removed). */
int nv_write_durably(const char *path, const char *text, size_t len, mode_t mode);

#endif
