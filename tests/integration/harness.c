/* Integration test harness: see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nv.h"
#include "nv_err.h"
#include "nv_json.h"
#include "rpc.h"
#include "test_certs.h"

long h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_tmpdir(char *out, size_t len)
{
    snprintf(out, len, "/tmp/nvmet-it-XXXXXX");
    if (mkdtemp(out) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

void h_rmrf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) < 0) {
        perror("free port");
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void mkdirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

void h_write_psk(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        return; /* another node of this base made it */
    }
    unsigned char key[32];
    char hex[66];
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
        perror("getrandom");
        abort();
    }
    for (size_t i = 0; i < sizeof key; i++) {
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    }
    hex[64] = '\n';
    if (write(fd, hex, 65) != 65) {
        perror("write psk");
        abort();
    }
    close(fd);
}

void h_node_init(struct h_node *n, const char *base, int id)
{
    memset(n, 0, sizeof *n);
    n->id = id;
    snprintf(n->dir, sizeof n->dir, "%s/node%d", base, id);
    snprintf(n->sock, sizeof n->sock, "%s/nvmetd.sock", n->dir);
    snprintf(n->data, sizeof n->data, "%s/data", n->dir);
    snprintf(n->configfs, sizeof n->configfs, "%s/configfs", n->dir);
    snprintf(n->devroot, sizeof n->devroot, "%s/root", n->dir);
    snprintf(n->log, sizeof n->log, "%s/nvmetd.log", n->dir);
    snprintf(n->keyfile, sizeof n->keyfile, "%s/api.key", n->dir);
    mkdirs(n->configfs);
    char dev[400];
    snprintf(dev, sizeof dev, "%s/dev/zvol/tank/nvme", n->devroot);
    mkdirs(dev);
    /* zvol/tank/nvme/ns1..ns8 exist as block device nodes (loop major 7;
     * the device never has to open: the emulated kernel checks existence) */
    for (int i = 1; i <= 8; i++) {
        char p[450];
        snprintf(p, sizeof p, "%s/ns%d", dev, i);
        if (mknod(p, S_IFBLK | 0600, makedev(7, 200 + i)) < 0 && errno != EEXIST) {
            perror("mknod");
        }
    }
    FILE *f = fopen(n->keyfile, "w");
    fputs("test-key\n", f);
    fclose(f);
    chmod(n->keyfile, 0600); /* nvmetd refuses a key file others can read */
    snprintf(n->psk, sizeof n->psk, "%s/raft.psk", base);
    h_write_psk(n->psk);
    snprintf(n->cacert, sizeof n->cacert, "%s/rpc-ca.pem", base);
    if (access(n->cacert, F_OK) != 0 && tc_make_ca(base, "rpc-ca") < 0) {
        abort();
    }
    char name[32];
    snprintf(name, sizeof name, "node%d-rpc", id);
    snprintf(n->cert, sizeof n->cert, "%s/%s.pem", base, name);
    snprintf(n->certkey, sizeof n->certkey, "%s/%s.key", base, name);
    if (access(n->cert, F_OK) != 0 &&
        tc_make_cert(base, "rpc-ca", name, "IP:127.0.0.1,DNS:localhost") < 0) {
        abort();
    }
    n->raft_port = h_free_port();
    n->rpc_port = h_free_port();
}

void h_node_print_log(const struct h_node *n)
{
    char *log = h_read(n->log);
    fprintf(stderr, "---- log of node %d (%s) ----\n%s\n----\n", n->id, n->log,
            log ? log : "(none)");
    free(log);
}

int h_node_start(struct h_node *n, const char *const *extra)
{
    char id[16], raft[32], rpc[32];
    snprintf(id, sizeof id, "%d", n->id);
    snprintf(raft, sizeof raft, "127.0.0.1:%d", n->raft_port);
    snprintf(rpc, sizeof rpc, "127.0.0.1:%d", n->rpc_port);
    const char *argv[64] = {NVMETD_BIN, "--id",       id,          "--data-dir", n->data,
                            "--raft",   raft,         "--rpc",     rpc,          "--api-key-file",
                            n->keyfile, "--socket",   n->sock,     "--configfs", n->configfs,
                            "--device-root", n->devroot, "--election-timeout", "300",
                            "--debugfs", n->dir, "--emulate"};
    size_t argc = 22;
    bool psk = true, tls = !n->rpc_plaintext;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        /* extra chooses another Raft or RPC security mode */
        if (strcmp(extra[i], "--raft-insecure") == 0 || strcmp(extra[i], "--raft-cacert") == 0) {
            psk = false;
        }
        if (strcmp(extra[i], "--rpc-plaintext") == 0 || strcmp(extra[i], "--rpc-cert") == 0) {
            tls = false;
        }
    }
    if (psk) {
        argv[argc++] = "--raft-psk-file";
        argv[argc++] = n->psk;
    }
    if (tls) {
        const char *t[] = {"--rpc-cert", n->cert, "--rpc-key", n->certkey, "--rpc-cacert", n->cacert};
        for (size_t i = 0; i < 6; i++) {
            argv[argc++] = t[i];
        }
    } else if (n->rpc_plaintext) {
        argv[argc++] = "--rpc-plaintext";
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 62; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    n->pid = pid;
    long deadline = h_now_ms() + 15000;
    while (h_now_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            n->pid = 0;
            fprintf(stderr, "nvmetd %d exited during start\n", n->id);
            h_node_print_log(n);
            return -1;
        }
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(n, "cluster.status", "[{\"local\": true}]", &e);
        nv_err_clear(&e);
        if (r != NULL) {
            bool ready = nv_get_bool(nv_get(r, "node"), "leader_ready", false);
            nv_free(r);
            if (ready || extra != NULL) {
                return 0;
            }
        }
        usleep(20000);
    }
    fprintf(stderr, "nvmetd %d did not become ready\n", n->id);
    h_node_print_log(n);
    return -1;
}

void h_node_kill(struct h_node *n, int sig)
{
    if (n->pid > 0) {
        kill(n->pid, sig);
    }
}

int h_node_wait(struct h_node *n)
{
    if (n->pid <= 0) {
        return -1;
    }
    int st = 0;
    /* bounded: a daemon that ignores SIGTERM for 10 s gets SIGKILL */
    long deadline = h_now_ms() + 10000;
    while (waitpid(n->pid, &st, WNOHANG) == 0) {
        if (h_now_ms() > deadline) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, &st, 0);
            break;
        }
        usleep(10000);
    }
    n->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    return buf;
}

int h_ctl(const struct h_node *n, struct h_out *o, const char *method, ...)
{
    const char *argv[64] = {NVMETCTL_BIN, "--socket", n->sock, "call", method};
    size_t argc = 5;
    va_list ap;
    va_start(ap, method);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 62) {
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    char outp[] = "/tmp/nvmetctl-out-XXXXXX", errp[] = "/tmp/nvmetctl-err-XXXXXX";
    int ofd = mkstemp(outp), efd = mkstemp(errp);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    o->out = slurp_fd(ofd);
    o->err = slurp_fd(efd);
    close(ofd);
    close(efd);
    unlink(outp);
    unlink(errp);
    o->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return o->code;
}

void h_out_free(struct h_out *o)
{
    free(o->out);
    free(o->err);
    o->out = o->err = NULL;
}

struct nv *h_call(const struct h_node *n, const char *method, const char *params_json,
                  struct nv_err *err)
{
    struct nv *params = params_json ? nv_from_json(params_json) : nv_arr();
    if (params == NULL) {
        nv_err_set(err, NV_E_PARSE, EINVAL, "bad test JSON: %s", params_json);
        return NULL;
    }
    char ep[320];
    snprintf(ep, sizeof ep, "unix:%s", n->sock);
    struct rpc_sync_opts opts = {.msgid = -1, .timeout_ms = 10000};
    struct nv *result = NULL;
    if (rpc_call_sync(ep, method, params, &opts, &result, err) < 0) {
        return NULL;
    }
    return result;
}

struct nv *h_call_ok(const struct h_node *n, const char *method, const char *params_json)
{
    struct nv_err e;
    nv_err_init(&e);
    struct nv *r = h_call(n, method, params_json, &e);
    if (r == NULL) {
        char *why = nv_err_reason(&e);
        fprintf(stderr, "%s %s: %s\n", method, params_json ? params_json : "[]",
                why ? why : "?");
        free(why);
    }
    nv_err_clear(&e);
    return r;
}

int h_wait_leader(const struct h_node *n, int count, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        for (int i = 0; i < count; i++) {
            if (n[i].pid <= 0) {
                continue;
            }
            struct nv_err e;
            nv_err_init(&e);
            struct nv *s = h_call(&n[i], "cluster.status", "[{\"local\": true}]", &e);
            nv_err_clear(&e);
            bool ready = nv_get_bool(nv_get(s, "node"), "leader_ready", false);
            nv_free(s);
            if (ready) {
                return i;
            }
        }
        usleep(50000);
    }
    return -1;
}

int h_key_generate(const char *name, const char *role, char *key, size_t klen, char *line,
                   size_t llen)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s key generate --name %s --role %s 2>/dev/null", NVMETCTL_BIN, name,
             role);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }
    bool got = fgets(key, (int)klen, p) != NULL && fgets(line, (int)llen, p) != NULL;
    if (pclose(p) != 0 || !got) {
        return -1;
    }
    key[strcspn(key, "\n")] = '\0';
    line[strcspn(line, "\n")] = '\0';
    return 0;
}

int h_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    int rv = fputs(text, f) < 0 ? -1 : 0;
    return fclose(f) != 0 ? -1 : rv;
}

char *h_read(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return NULL;
    }
    char *s = slurp_fd(fd);
    close(fd);
    size_t l = strlen(s);
    while (l > 0 && s[l - 1] == '\n') {
        s[--l] = '\0';
    }
    return s;
}

void h_nodes_down(struct h_node *n, int count)
{
    for (int i = 0; i < count; i++) {
        if (n[i].pid > 0) {
            h_node_kill(&n[i], SIGKILL);
            h_node_wait(&n[i]);
        }
    }
}

int h_wait_rendered(const struct h_node *n, int timeout_ms)
{
    long deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        struct nv_err e;
        nv_err_init(&e);
        struct nv *r = h_call(n, "cluster.status", "[{\"local\": true}]", &e);
        nv_err_clear(&e);
        bool ok = nv_get_bool(nv_get(nv_get(r, "node"), "render"), "matches", false);
        nv_free(r);
        if (ok) {
            return 0;
        }
        usleep(20000);
    }
    return -1;
}
