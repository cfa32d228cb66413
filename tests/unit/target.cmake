# target/ unit tests: the renderer against the emulated kernel on mkdtemp
# trees, the emulator's refusals, DH-CHAP known answers.
nvmet_unit_test(test_tgt_render SOURCES unit/test_tgt_render.c unit/test_tgt_util.c
                LIBS target nvcommon TIMEOUT 300)
