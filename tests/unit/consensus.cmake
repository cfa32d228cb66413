# consensus/ unit tests: real raft_uv nodes on loopback TCP and mkdtemp data
# dirs (single node, restart/replay, snapshots, three nodes in one loop).
nvmet_unit_test(test_cons SOURCES unit/test_cons.c LIBS consensus nvcommon TIMEOUT 120)
