nvmet_unit_test(test_sm SOURCES unit/test_sm.c LIBS statemachine nvjson nvcommon)
