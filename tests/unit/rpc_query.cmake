nvmet_unit_test(test_rpc_query SOURCES unit/test_rpc_query.c LIBS rpc nvjson nvcommon)
nvmet_unit_test(test_method_args SOURCES unit/test_method_args.c LIBS rpc nvjson nvcommon)
