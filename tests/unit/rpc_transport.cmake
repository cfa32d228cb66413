nvmet_unit_test(test_rpc_transport SOURCES unit/test_rpc_transport.c LIBS rpc nvjson nvcommon TIMEOUT 120)
nvmet_unit_test(test_rpc_keys SOURCES unit/test_rpc_keys.c LIBS rpc nvcommon TIMEOUT 120)
