nvmet_unit_test(test_common SOURCES unit/test_common.c LIBS nvcommon nvjson)
nvmet_unit_test(test_nv_log SOURCES unit/test_nv_log.c LIBS nvcommon)
