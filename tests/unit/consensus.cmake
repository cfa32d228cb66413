# consensus/ unit tests: real raft_uv nodes on loopback TCP and mkdtemp data
# dirs (single node, restart/replay, snapshots, three nodes in one loop).
nvmet_unit_test(test_cons SOURCES unit/test_cons.c LIBS consensus nvcommon TIMEOUT 120)
# The Raft transport: frame checker, TLS (PSK and certificates made with
# the openssl CLI), attacks from a helper thread, clusters on 127.0.0.1
# and ::1.
find_package(Threads REQUIRED)
nvmet_unit_test(test_cons_tr SOURCES unit/test_cons_tr.c LIBS consensus nvcommon Threads::Threads
                TIMEOUT 180)
# Storage faults (cons_disk.c): damaged and missing segments, the commit
# watermark, a member catching up, and (as root, on small tmpfs mounts) a
# data dir too small at start and a disk that fills while running.
nvmet_unit_test(test_cons_disk SOURCES unit/test_cons_disk.c LIBS consensus nvcommon TIMEOUT 180)
