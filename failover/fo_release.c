/* The configfs half of an emergency release (fo_int.h), shared by the
 * guardian and the start-up of fo_open: it works with nothing but the
 * configfs root, since the guardian knows no configuration.
 *
 * Ports below index 5000 are the ones a standby never links (IP takeover
 * ports, VIPs or not): unlinking their subsystems makes the kernel drop
 * the controllers connected through them and stop listening when the last
 * link goes. Ports from 5000 up are per-node ANA ports that a standby
 * keeps linked: for them this node's ANA groups go inaccessible (group 1
 * is the kernel's default group, always left alone). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fo_int.h"

/* ports from this index on are the ANA ports: linked on a standby too */
#define ANA_PORT_BASE 5000

struct out {
    void (*log)(void *arg, const char *line);
    void *arg;
    int changed;
};

static void say(const struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct out *o, const char *fmt, ...)
{
    if (o->log == NULL) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->log(o->arg, line);
}

static bool port_index(const char *name, unsigned long *p)
{
    char *end;
    errno = 0;
    *p = strtoul(name, &end, 10);
    return name[0] >= '0' && name[0] <= '9' && *end == '\0' && errno == 0;
}

/* Unlink every port->subsystem link of port dir pfd (configfs removes the
 * link, and with it the port's exposure of that subsystem). */
static void unlink_subsystems(struct out *g, int pfd, const char *port, const char *why)
{
    int sfd = openat(pfd, "subsystems", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) {
        return; /* no subsystems dir: nothing linked */
    }
    DIR *d = fdopendir(sfd);
    if (d == NULL) {
        close(sfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        struct stat st;
        if (e->d_type != DT_LNK &&
            (e->d_type != DT_UNKNOWN || fstatat(sfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
             !S_ISLNK(st.st_mode))) {
            continue;
        }
        if (unlinkat(sfd, e->d_name, 0) < 0) {
            say(g, "unlink port %s from %s: %s (%s)", port, e->d_name, strerror(errno), why);
        } else {
            g->changed++;
            say(g, "unlinked port %s from %s (%s)", port, e->d_name, why);
        }
    }
    closedir(d);
}

static void ana_inaccessible(struct out *g, int pfd, const char *port, const char *why)
{
    static const char inacc[] = "inaccessible";
    int afd = openat(pfd, "ana_groups", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (afd < 0) {
        return;
    }
    DIR *d = fdopendir(afd);
    if (d == NULL) {
        close(afd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long grp;
        if (!port_index(e->d_name, &grp) || grp == 1) {
            continue; /* group 1 is the default group: never changed */
        }
        char rel[NAME_MAX + 16];
        snprintf(rel, sizeof(rel), "%s/ana_state", e->d_name);
        /* Read first: every store of ana_state sends the hosts an ANA
         * change event (nvmet_port_send_ana_event), and this runs again on
         * each release. configfs hands out the whole value on one read. */
        char cur[64] = "";
        int fd = openat(afd, rel, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ssize_t r = read(fd, cur, sizeof(cur) - 1);
        close(fd);
        if (r > 0) {
            cur[r] = '\0';
            cur[strcspn(cur, "\n")] = '\0';
            if (strcmp(cur, inacc) == 0) {
                continue;
            }
        }
        /* O_TRUNC as nvmetcli's open(path, 'w'): configfs ignores it, a
         * plain (emulated) tree needs it; one write runs store() once */
        fd = openat(afd, rel, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ssize_t w = fd < 0 ? -1 : write(fd, inacc, sizeof(inacc) - 1);
        int err = errno;
        if (fd >= 0) {
            close(fd);
        }
        if (w != (ssize_t)sizeof(inacc) - 1) {
            say(g, "port %s ana group %s inaccessible: %s (%s)", port, e->d_name,
                w < 0 ? strerror(err) : "short write", why);
        } else {
            g->changed++;
            say(g, "port %s ana group %s inaccessible (%s)", port, e->d_name, why);
        }
    }
    closedir(d);
}

static void release_configfs(struct out *g, const char *configfs, const char *why)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/nvmet/ports", configfs) >= sizeof(path)) {
        say(g, "configfs path too long (%s)", why);
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno != ENOENT) {
            say(g, "open %s: %s (%s)", path, strerror(errno), why);
        }
        return;
    }
    /* two passes over the ports, in the order of the header: first every
     * IP takeover port's links, then the ANA groups */
    for (int pass = 0; pass < 2; pass++) {
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            unsigned long p;
            if (!port_index(e->d_name, &p) || (pass == 0 && p >= ANA_PORT_BASE)) {
                continue;
            }
            int pfd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pfd < 0) {
                continue;
            }
            if (pass == 0) {
                unlink_subsystems(g, pfd, e->d_name, why);
            } else {
                ana_inaccessible(g, pfd, e->d_name, why);
            }
            close(pfd);
        }
    }
    closedir(d);
}

int fo__release_configfs(const char *configfs, const char *why,
                         void (*log)(void *arg, const char *line), void *arg)
{
    struct out o = {.log = log, .arg = arg};
    if (configfs != NULL) {
        release_configfs(&o, configfs, why);
    }
    return o.changed;
}
