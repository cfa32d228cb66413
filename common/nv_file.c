/* Small files in a data dir that must survive a power loss (nv_file.h). */
#include "nv_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL) {
        return;
    }
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int nv_write_durably(const char *path, const char *text, size_t len, mode_t mode)
{
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return -errno;
    }
    int rv = 0;
    if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
        rv = errno ? -errno : -EIO;
    }
    close(fd);
    if (rv == 0 && rename(tmp, path) < 0) {
        rv = -errno;
    }
    if (rv < 0) {
        unlink(tmp);
        return rv;
    }
    sync_dir_of(path);
    return 0;
}
