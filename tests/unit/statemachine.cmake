nvmet_unit_test(test_sm SOURCES unit/test_sm.c unit/test_sm_util.c LIBS statemachine nvjson nvcommon)
# The golden v1 and v2 logs (tests/unit/fixtures): replayed, never regenerated here.
nvmet_unit_test(test_sm_golden SOURCES unit/test_sm_golden.c unit/test_sm_util.c LIBS statemachine nvjson nvcommon)
target_compile_definitions(test_sm_golden PRIVATE SM_FIXTURE_DIR="${CMAKE_CURRENT_SOURCE_DIR}/unit/fixtures")
# The v2 log format: round trips, races apply re-checks, no re-validation.
nvmet_unit_test(test_sm_v2 SOURCES unit/test_sm_v2.c unit/test_sm_util.c LIBS statemachine nvjson nvcommon)
