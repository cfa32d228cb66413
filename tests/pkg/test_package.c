/* The Debian package: cpack builds it from this build tree; it holds the
 * daemon, the CLI, the systemd unit, the sample config (a conffile), man
 * pages and bash completion, and declares its library dependencies; it
 * installs into an empty root with its maintainer scripts (the config
 * directory ends up 0700) and purges cleanly. The installed nvmetd,
 * started as the unit starts it (--config, Type=notify), tells systemd's
 * notify socket READY=1 once it serves, RELOADING=1 then READY=1 on
 * SIGHUP, STOPPING=1 on SIGTERM, and exits 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char g_dir[256]; /* the package and the root live here */
static char g_deb[400];
static char g_root[300];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "failed (%d): %s\n", rc, cmd);
    }
    return rc == 0 ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/nvmet-pkg.XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        return -1;
    }
    if (sh("cd %s && '%s' -G DEB -B %s --config %s/CPackConfig.cmake >%s/cpack.log 2>&1 || "
           "{ cat %s/cpack.log; false; }",
           BUILD_DIR, CPACK_BIN, g_dir, BUILD_DIR, g_dir, g_dir) != 0) {
        return -1;
    }
    snprintf(g_deb, sizeof g_deb, "%s/nvmet-ha_%s_amd64.deb", g_dir, NVMET_HA_VERSION);
    snprintf(g_root, sizeof g_root, "%s/root", g_dir);
    return sh(
        "mkdir -p %s/var/lib/dpkg/updates %s/var/lib/dpkg/info && touch "
        "%s/var/lib/dpkg/status",
        g_root, g_root, g_root);
}

static int teardown(void **state)
{
    (void)state;
    if (g_dir[0] != '\0') {
        sh("rm -rf %s", g_dir);
    }
    return 0;
}

/* The files a user needs, and the shared libraries it depends on. */
static void test_contents(void **state)
{
    (void)state;
    static const char *const files[] = {
        "./usr/sbin/nvmetd",
        "./usr/bin/nvmetctl",
        "./usr/lib/systemd/system/nvmetd.service",
        "./etc/nvmet-ha/nvmetd.conf",
        "./usr/share/man/man8/nvmetd.8",
        "./usr/share/man/man1/nvmetctl.1",
        "./usr/share/bash-completion/completions/nvmetctl",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        assert_int_equal(sh("dpkg-deb -c %s | awk '{print $6}' | grep -qx '%s'", g_deb, files[i]),
                         0);
    }
    assert_int_equal(sh("dpkg-deb -f %s Depends | grep -q 'libraft2'", g_deb), 0);
    assert_int_equal(sh("dpkg-deb -f %s Depends | grep -q 'libuv1'", g_deb), 0);
    assert_int_equal(sh("dpkg-deb -f %s Depends | grep -q 'libmicrohttpd'", g_deb), 0);
    assert_int_equal(sh("dpkg-deb -I %s conffiles | grep -qx /etc/nvmet-ha/nvmetd.conf", g_deb), 0);
    /* the unit starts the daemon with the sample config as systemd's notify type */
    assert_int_equal(sh("dpkg-deb --fsys-tarfile %s | tar -xO ./usr/lib/systemd/system/"
                        "nvmetd.service | grep -qx 'Type=notify'",
                        g_deb),
                     0);
}

static void install(void)
{
    assert_int_equal(sh("dpkg --root=%s --force-script-chrootless --force-depends --log=/dev/null "
                        "-i %s >%s/dpkg.log 2>&1 || { cat %s/dpkg.log; false; }",
                        g_root, g_deb, g_dir, g_dir),
                     0);
}

/* Installed (maintainer scripts run), the config dir is 0700, the
 * binaries run; a purge leaves nothing of the package behind. */
static void test_install_purge(void **state)
{
    (void)state;
    install();
    char p[400];
    struct stat st;
    snprintf(p, sizeof p, "%s/etc/nvmet-ha", g_root);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(
        sh("%s/usr/sbin/nvmetd --version | grep -qx 'nvmetd %s'", g_root, NVMET_HA_VERSION), 0);
    assert_int_equal(sh("%s/usr/bin/nvmetctl --help >/dev/null 2>&1", g_root), 0);
    assert_int_equal(sh("dpkg --root=%s --force-script-chrootless --log=/dev/null --purge nvmet-ha "
                        ">/dev/null 2>&1",
                        g_root),
                     0);
    assert_int_not_equal(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/usr/sbin/nvmetd", g_root);
    assert_int_not_equal(stat(p, &st), 0);
}

/* Wait (10 s at most) for a datagram on fd holding want. */
static bool notified(int fd, const char *want)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++) {
        char buf[1024];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            if (strstr(buf, want) != NULL) {
                return true;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10) {
            break;
        }
    }
    fprintf(stderr, "no %s on the notify socket\n", want);
    return false;
}

/* The installed daemon speaks systemd's notify protocol. */
static void test_notify(void **state)
{
    (void)state;
    install();
    char conf[400], sock[300], notify[300];
    snprintf(conf, sizeof conf, "%s/etc/nvmet-ha/nvmetd.conf", g_root);
    snprintf(sock, sizeof sock, "%s/n.sock", g_dir);
    snprintf(notify, sizeof notify, "%s/notify", g_dir);
    assert_int_equal(sh("mkdir -p %s/data %s/cfs && (umask 077; head -c 32 /dev/urandom | od "
                        "-An -tx1 | tr -d ' \\n' > %s/psk) && cat >> %s <<EOF\n"
                        "id = 1\ndata-dir = %s/data\nraft = 127.0.0.1:0\nraft-psk-file = %s/psk\n"
                        "socket = %s\nconfigfs = %s/cfs\nemulate = true\nEOF",
                        g_dir, g_dir, g_dir, conf, g_dir, g_dir, sock, g_dir),
                     0);
    /* a free Raft port */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(0x7f000001);
    assert_int_equal(bind(probe, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(probe, (struct sockaddr *)&sa, &sl);
    close(probe);
    assert_int_equal(
        sh("sed -i 's/^raft = 127.0.0.1:0$/raft = 127.0.0.1:%d/' %s", ntohs(sa.sin_port), conf), 0);

    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", notify);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    struct timeval tv = {.tv_usec = 10000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    pid_t pid = fork();
    if (pid == 0) {
        char exe[400], log[400];
        snprintf(exe, sizeof exe, "%s/usr/sbin/nvmetd", g_root);
        snprintf(log, sizeof log, "%s/nvmetd.log", g_dir);
        if (freopen(log, "w", stderr) == NULL) {
            _exit(126);
        }
        setenv("NOTIFY_SOCKET", notify, 1);
        execl(exe, exe, "--config", conf, (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    bool ok = notified(fd, "READY=1");
    /* a node without an RPC port still reports itself healthy (once it
     * elected itself: bounded, 10 s) */
    bool status_ok =
        ok && sh("for i in $(seq 100); do %s/usr/bin/nvmetctl --socket %s status 2>&1 | "
                 "grep -q '^cluster: healthy' && exit 0; sleep 0.1; done; "
                 "%s/usr/bin/nvmetctl --socket %s status >&2; exit 1",
                 g_root, sock, g_root, sock) == 0;
    if (ok) {
        kill(pid, SIGHUP);
        ok = notified(fd, "RELOADING=1") && notified(fd, "READY=1");
    }
    kill(pid, SIGTERM);
    bool stopping = notified(fd, "STOPPING=1");
    int status = 0;
    waitpid(pid, &status, 0);
    close(fd);
    if (!ok || !stopping || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        sh("cat %s/nvmetd.log >&2", g_dir);
    }
    assert_true(ok);
    assert_true(status_ok);
    assert_true(stopping);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    sh("dpkg --root=%s --force-script-chrootless --log=/dev/null --purge nvmet-ha >/dev/null 2>&1",
       g_root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contents),
        cmocka_unit_test(test_install_purge),
        cmocka_unit_test(test_notify),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
