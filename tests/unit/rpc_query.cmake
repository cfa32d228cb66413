nvmet_unit_test(test_rpc_query SOURCES unit/test_rpc_query.c LIBS rpc nvjson nvcommon)
