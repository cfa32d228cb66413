/* Test certificates: see test_certs.h. */
#include "test_certs.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define OPENSSL "openssl"

static int run(const char *cmd)
{
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "test certs: failed: %s\n", cmd);
        return -1;
    }
    return 0;
}

int tc_make_ca(const char *dir, const char *name)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             OPENSSL
             " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=%s -addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign "
             "-keyout '%s/%s.key' -out '%s/%s.pem' 2>/dev/null",
             name, dir, name, dir, name);
    if (run(cmd) < 0) {
        return -1;
    }
    snprintf(cmd, sizeof cmd, "%s/%s.key", dir, name);
    return chmod(cmd, 0600);
}

int tc_make_cert(const char *dir, const char *ca, const char *name, const char *san)
{
    char ext[600];
    snprintf(ext, sizeof ext, "%s/%s.ext", dir, name);
    FILE *f = fopen(ext, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f,
            "subjectAltName=%s\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "basicConstraints=CA:FALSE\n",
            san);
    fclose(f);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             OPENSSL
             " req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=%s "
             "-keyout '%s/%s.key' -out '%s/%s.csr' 2>/dev/null && " OPENSSL
             " x509 -req -in '%s/%s.csr' -CA '%s/%s.pem' -CAkey '%s/%s.key' "
             "-set_serial %ld -days 2 -extfile '%s' -out '%s/%s.pem' 2>/dev/null",
             name, dir, name, dir, name, dir, name, dir, ca, dir, ca, random() + 1, ext, dir, name);
    if (run(cmd) < 0) {
        return -1;
    }
    snprintf(cmd, sizeof cmd, "%s/%s.key", dir, name);
    return chmod(cmd, 0600);
}
