/* The real configfs backend: plain syscalls, the kernel enforces the
 * rules and its errno is returned as -errno. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tgt_int.h"

#define PATH(rel, buf)                                    \
    do {                                                  \
        int prv = tgt__path(t, (rel), (buf), sizeof(buf)); \
        if (prv < 0) {                                    \
            return prv;                                   \
        }                                                 \
    } while (0)

static int real_mkdir(struct tgt *t, const char *rel)
{
    char p[4096];
    PATH(rel, p);
    return mkdir(p, 0755) < 0 ? -errno : 0;
}

static int real_rmdir(struct tgt *t, const char *rel)
{
    char p[4096];
    PATH(rel, p);
    return rmdir(p) < 0 ? -errno : 0;
}

static ssize_t real_read(struct tgt *t, const char *rel, char *buf, size_t len)
{
    char p[4096];
    PATH(rel, p);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    /* configfs hands out the whole show() page on the first read */
    size_t got = 0;
    while (got + 1 < len) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(fd);
    return (ssize_t)got;
}

static int real_write(struct tgt *t, const char *rel, const char *buf, size_t len)
{
    char p[4096];
    PATH(rel, p);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    /* one write(2): each write runs the attribute's store() once */
    ssize_t n = write(fd, buf, len);
    int e = errno;
    close(fd);
    if (n < 0) {
        return -e;
    }
    return (size_t)n == len ? 0 : -EIO;
}

static int real_symlink(struct tgt *t, const char *target, const char *rel)
{
    char p[4096];
    PATH(rel, p);
    return symlink(target, p) < 0 ? -errno : 0;
}

static int real_unlink(struct tgt *t, const char *rel)
{
    char p[4096];
    PATH(rel, p);
    return unlink(p) < 0 ? -errno : 0;
}

/* Shared with the emulator: a plain directory listing with types. */
int tgt__plain_readdir(const char *dirpath, struct tgt_dirent **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dirpath);
    if (d == NULL) {
        return -errno;
    }
    size_t cap = 0;
    struct dirent *e;
    int rv = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        unsigned char type = e->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_REG;
            }
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct tgt_dirent *v = realloc(*out, cap * sizeof *v);
            if (v == NULL) {
                rv = -ENOMEM;
                break;
            }
            *out = v;
        }
        (*out)[*n].name = strdup(e->d_name);
        if ((*out)[*n].name == NULL) {
            rv = -ENOMEM;
            break;
        }
        (*out)[*n].type = type;
        (*n)++;
    }
    closedir(d);
    if (rv < 0) {
        tgt__dirents_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rv;
}

static int real_readdir(struct tgt *t, const char *rel, struct tgt_dirent **out, size_t *n)
{
    char p[4096];
    PATH(rel, p);
    return tgt__plain_readdir(p, out, n);
}

static ssize_t real_readlink(struct tgt *t, const char *rel, char *buf, size_t len)
{
    char p[4096];
    PATH(rel, p);
    ssize_t n = readlink(p, buf, len - 1);
    if (n < 0) {
        return -errno;
    }
    buf[n] = '\0';
    return n;
}

static int real_load(struct tgt *t, const char *module)
{
    return tgt__modprobe(module, t->modprobe_timeout_ms);
}

const struct tgt_ops tgt__real_ops = {
    .name = "configfs",
    .mkdir = real_mkdir,
    .rmdir = real_rmdir,
    .read = real_read,
    .write = real_write,
    .symlink = real_symlink,
    .unlink = real_unlink,
    .readdir = real_readdir,
    .readlink = real_readlink,
    .load = real_load,
};
