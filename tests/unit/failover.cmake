nvmet_unit_test(test_failover SOURCES unit/test_failover.c LIBS failover)
