/* The configfs half of an emergency release (fo_int.h), shared by the
 * start-up of fo_open and the guardian: it must work with nothing but the
 * configfs root, since the guardian knows no configuration.
 *
 * Ports below index 5000 are the ones a standby never links (IP takeover
 * ports, VIPs or not); unlinking their subsystems makes the kernel drop
 * the controllers connected through them and stop listening when the last
 * link goes. Ports from 5000 up are per-node ANA ports that a standby
 * keeps linked: for them the ANA groups of this node go inaccessible
 * (group 1 is the kernel's default group, always left alone). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fo_int.h"

#define ANA_PORT_BASE 5000

static bool all_digits(const char *s)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

static void note(char *msg, size_t msglen, int *first_err, int err, const char *what,
                 const char *path)
{
    if (*first_err == 0) {
        *first_err = err;
        snprintf(msg, msglen, "%s %s: %s", what, path, strerror(-err));
    }
}

/* Unlink every symlink in dir; count what went. */
static int unlink_links(const char *dir, char *msg, size_t msglen, int *first_err)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char p[4096];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p) {
            continue;
        }
        if (unlink(p) == 0) {
            n++;
        } else if (errno != ENOENT) {
            note(msg, msglen, first_err, -errno, "unlink", p);
        }
    }
    closedir(d);
    return n;
}

static int write_inaccessible(const char *path, char *msg, size_t msglen, int *first_err)
{
    char cur[64] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0; /* no such group file: nothing to do */
    }
    ssize_t r = read(fd, cur, sizeof cur - 1);
    close(fd);
    if (r > 0 && strncmp(cur, "inaccessible", 12) == 0) {
        return 0;
    }
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "inaccessible\n", 13) != 13) {
        note(msg, msglen, first_err, -errno, "write", path);
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    close(fd);
    return 1;
}

int fo__release_configfs(const char *configfs, char *msg, size_t msglen)
{
    if (msg != NULL && msglen > 0) {
        msg[0] = '\0';
    }
    if (configfs == NULL) {
        return 0;
    }
    char ports[4096];
    if ((size_t)snprintf(ports, sizeof ports, "%s/nvmet/ports", configfs) >= sizeof ports) {
        return -ENAMETOOLONG;
    }
    DIR *d = opendir(ports);
    if (d == NULL) {
        return errno == ENOENT ? 0 : -errno;
    }
    int changed = 0, first_err = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!all_digits(e->d_name)) {
            continue;
        }
        long index = strtol(e->d_name, NULL, 10);
        char p[4096];
        if (index < ANA_PORT_BASE) {
            snprintf(p, sizeof p, "%s/%s/subsystems", ports, e->d_name);
            changed += unlink_links(p, msg, msglen, &first_err);
        }
        snprintf(p, sizeof p, "%s/%s/ana_groups", ports, e->d_name);
        DIR *g = opendir(p);
        if (g == NULL) {
            continue;
        }
        struct dirent *ge;
        while ((ge = readdir(g)) != NULL) {
            if (!all_digits(ge->d_name) || strcmp(ge->d_name, "1") == 0) {
                continue;
            }
            char s[4096];
            if ((size_t)snprintf(s, sizeof s, "%s/%s/ana_state", p, ge->d_name) < sizeof s) {
                changed += write_inaccessible(s, msg, msglen, &first_err);
            }
        }
        closedir(g);
    }
    closedir(d);
    return first_err < 0 ? first_err : changed;
}
