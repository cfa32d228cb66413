/* Shared fixture of the failover/ tests that need a network of their own. */
#ifndef TEST_FO_UTIL_H
#define TEST_FO_UTIL_H

#include <stddef.h>

#define FO_TEST_IFA "fo0" /* the node's interface */
#define FO_TEST_IFB "fo1" /* its peer: the "switch" that captures */

/* Move the calling process into a fresh network namespace holding
 * FO_TEST_IFA <-> FO_TEST_IFB (a veth pair, both up: veth has carrier only
 * when both ends are up) and lo. 0 done; 1 not possible here (not root,
 * no permission: why says so, the test skips); a failure to build it when
 * it should work fails the test. */
int fo_test_netns(char *why, size_t whylen);

#endif
