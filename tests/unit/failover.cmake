# failover/ unit tests: the decision and its actions through a fake node
# (real uv loop, real statemachine); addresses and the guardian have their
# own tests (failover_net.cmake).
nvmet_unit_test(test_failover SOURCES unit/test_failover.c LIBS failover statemachine nvjson nvcommon)
