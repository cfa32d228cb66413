/* Test certificates made with the openssl command at test start: a CA and
 * certificates it signs, EC P-256, valid for two days, usable by servers
 * and clients (extendedKeyUsage serverAuth and clientAuth). */
#ifndef TEST_CERTS_H
#define TEST_CERTS_H

/* A CA: <dir>/<name>.pem and <dir>/<name>.key (mode 0600). 0 or -1. */
int tc_make_ca(const char *dir, const char *name);
/* A certificate signed by the CA <dir>/<ca>.pem: <dir>/<name>.pem and
 * <dir>/<name>.key (mode 0600), with the subjectAltNames san (e.g.
 * "IP:127.0.0.1,DNS:localhost"). 0 or -1. */
int tc_make_cert(const char *dir, const char *ca, const char *name, const char *san);

#endif
