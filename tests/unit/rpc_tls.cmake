nvmet_unit_test(test_rpc_tls SOURCES unit/test_rpc_tls.c common/test_certs.c
                LIBS rpc nvjson nvcommon TIMEOUT 120)
target_include_directories(test_rpc_tls PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/common)
