# consensus/ unit tests: real raft_uv nodes on loopback TCP and mkdtemp data
# dirs (single node, restart/replay, snapshots, three nodes in one loop).
nvmet_unit_test(test_cons SOURCES unit/test_cons.c LIBS consensus nvcommon TIMEOUT 120)
# The Raft transport: frame checker, TLS (PSK and certificates made with
# the openssl CLI), attacks from a helper thread, clusters on 127.0.0.1
# and ::1.
find_package(Threads REQUIRED)
nvmet_unit_test(test_cons_tr SOURCES unit/test_cons_tr.c LIBS consensus nvcommon Threads::Threads
                TIMEOUT 180)
