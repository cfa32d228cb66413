# failover/ internals that need a network namespace of their own: virtual
# IPs, the monitor and the announcements (fo_net.h), the guardian
# (fo_guard.h). Each test unshares its own namespace; skipped unless root.
nvmet_unit_test(test_fo_net SOURCES unit/test_fo_net.c unit/test_fo_util.c LIBS failover)
nvmet_unit_test(test_fo_guard SOURCES unit/test_fo_guard.c unit/test_fo_util.c LIBS failover)
