# target/ unit tests: the renderer against the emulated kernel on mkdtemp
# trees, the emulator's refusals, DH-CHAP known answers.
nvmet_unit_test(test_tgt_render SOURCES unit/test_tgt_render.c unit/test_tgt_util.c
                LIBS target nvcommon TIMEOUT 300)
nvmet_unit_test(test_tgt_roles SOURCES unit/test_tgt_roles.c unit/test_tgt_util.c
                LIBS target nvcommon)
nvmet_unit_test(test_tgt_emu SOURCES unit/test_tgt_emu.c unit/test_tgt_util.c
                LIBS target nvcommon)
nvmet_unit_test(test_tgt_ana SOURCES unit/test_tgt_ana.c unit/test_tgt_util.c
                LIBS target nvcommon)
# libnvme only as an independent implementation of the key transform
pkg_check_modules(TGT_LIBNVME IMPORTED_TARGET libnvme)
if(TGT_LIBNVME_FOUND)
  nvmet_unit_test(test_tgt_dhchap SOURCES unit/test_tgt_dhchap.c
                  LIBS target nvcommon PkgConfig::CRYPTO PkgConfig::TGT_LIBNVME)
  target_compile_definitions(test_tgt_dhchap PRIVATE HAVE_LIBNVME)
else()
  nvmet_unit_test(test_tgt_dhchap SOURCES unit/test_tgt_dhchap.c
                  LIBS target nvcommon PkgConfig::CRYPTO)
endif()
# through the real statemachine, once it is a library (not the placeholder)
get_target_property(TGT_SM_TYPE statemachine TYPE)
if(TGT_SM_TYPE STREQUAL "STATIC_LIBRARY")
  nvmet_unit_test(test_tgt_sm SOURCES unit/test_tgt_sm.c unit/test_tgt_util.c
                  LIBS target statemachine nvjson nvcommon)
  # incremental passes against full ones after random writes
  nvmet_unit_test(test_tgt_delta SOURCES unit/test_tgt_delta.c unit/test_tgt_util.c
                  LIBS target statemachine failover nvjson nvcommon TIMEOUT 300)
endif()
