/* Shared fixture of the failover/ tests that need a network of their own. */
#include "test_fo_util.h"

#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

int fo_test_netns(char *why, size_t whylen)
{
    if (geteuid() != 0) {
        snprintf(why, whylen, "not root");
        return 1;
    }
    if (unshare(CLONE_NEWNET) < 0) {
        if (errno == EPERM) {
            snprintf(why, whylen, "unshare(CLONE_NEWNET): %s", strerror(errno));
            return 1;
        }
        fail_msg("unshare(CLONE_NEWNET): %s", strerror(errno));
    }
    int rc =
        system("ip link set lo up && ip link add " FO_TEST_IFA " type veth peer name " FO_TEST_IFB
               " && ip link set " FO_TEST_IFA " up && ip link set " FO_TEST_IFB " up");
    if (rc != 0) {
        fail_msg("creating the veth pair with ip(8) failed (status %d): iproute2 and veth?", rc);
    }
    return 0;
}
