# consensus/ unit tests: real raft_uv nodes on loopback TCP and mkdtemp data
# dirs (single node, restart/replay, snapshots, three nodes in one loop).
nvmet_unit_test(test_cons SOURCES unit/test_cons.c LIBS consensus nvcommon TIMEOUT 120)
# Storage faults (cons_disk.c): damaged and missing segments, the commit
# watermark, a member catching up, and (as root, on small tmpfs mounts) a
# data dir too small at start and a disk that fills while running.
nvmet_unit_test(test_cons_disk SOURCES unit/test_cons_disk.c LIBS consensus nvcommon TIMEOUT 180)
