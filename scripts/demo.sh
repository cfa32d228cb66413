#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds, starts a
# local three-node nvmet-ha cluster on loopback (one Raft cluster; configfs
# emulated under run/nodeN/configfs because this host kernel has no nvmet),
# runs the complete setup (every kind of object of the API) through nvmetctl against the cluster,
# prints the rendered tree of the active node and nvmetctl status, and
# leaves the cluster up for nvmetctl calls until Ctrl-C.
#   NODES=1 bash scripts/demo.sh   runs a single node instead.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
NODES=${NODES:-3}
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)" --target nvmetd nvmetctl >/dev/null
NVMETD=$TOP/build/release/cmd/nvmetd
NVMETCTL=$TOP/build/release/cmd/nvmetctl
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (the demo creates block device nodes for its zvols)" >&2
    exit 1
fi

RUN=$TOP/run
rm -rf "$RUN"
mkdir -p "$RUN"
head -c 24 /dev/urandom | base64 > "$RUN/api.key"
chmod 600 "$RUN/api.key"
# The cluster secret that authenticates and encrypts Raft between the nodes
# (TLS 1.3 PSK; README "Raft transport security").
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/raft.psk")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }

declare -a PIDS RAFT RPC
LIST=""
URLS=""
CERTS=()
for i in $(seq 1 "$NODES"); do
    RAFT[$i]=$(free_port)
    RPC[$i]=$(free_port)
    LIST="${LIST:+$LIST,}$i=127.0.0.1:${RAFT[$i]}"
    URLS="${URLS:+$URLS,}127.0.0.1:${RPC[$i]}"
    CERTS+=("node$i=127.0.0.1,localhost")
done
# TLS on the RPC ports (README "TLS on the RPC port"): a CA and one
# certificate per node; nvmetctl verifies the nodes with --cacert.
bash scripts/rpc-certs.sh "$RUN/tls" "${CERTS[@]}" > /dev/null
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; exit 0' INT TERM

for i in $(seq 1 "$NODES"); do
    N=$RUN/node$i
    mkdir -p "$N/configfs" "$N/root/dev/zvol/tank/nvme"
    # README "A complete setup" puts its namespace on zvol/tank/nvme/ns1: a block device node
    # there (only checked, never opened, by the emulation).
    mknod "$N/root/dev/zvol/tank/nvme/ns1" b 7 200
    CLUSTER=()
    [ "$NODES" -gt 1 ] && CLUSTER=(--cluster "$LIST")
    "$NVMETD" --id "$i" --data-dir "$N/data" --raft "127.0.0.1:${RAFT[$i]}" \
        --raft-psk-file "$RUN/raft.psk" \
        --rpc "127.0.0.1:${RPC[$i]}" --api-key-file "$RUN/api.key" --socket "$N/nvmetd.sock" \
        --rpc-cert "$RUN/tls/node$i.pem" --rpc-key "$RUN/tls/node$i.key" --rpc-cacert "$RUN/tls/ca.pem" \
        --configfs "$N/configfs" --emulate --device-root "$N/root" --debugfs "$N" "${CLUSTER[@]}" \
        2> "$N/nvmetd.log" &
    PIDS[$i]=$!
done

# Every call goes through the whole cluster: any node answers (followers
# forward to the leader), nvmetctl moves on when one is down.
ctl() { "$NVMETCTL" --url "$URLS" --api-key-file "$RUN/api.key" --cacert "$RUN/tls/ca.pem" call "$@"; }
for _ in $(seq 1 150); do
    ctl failover.status >/dev/null 2>&1 && break
    sleep 0.1
done
ctl failover.status >/dev/null || { tail -n 20 "$RUN"/node*/nvmetd.log; echo "demo: the cluster did not start" >&2; exit 1; }
sleep 1.5 # every member registers its RPC address through Raft

show() { echo "\$ nvmetctl call $*"; ctl "$@"; echo; }
echo "== The complete setup (subsystem, namespace, port, host, links), through nvmetctl --url $URLS (TLS)"
show nvmet.subsys.create '{"name": "nqn.2024-01.com.example:nvme:subsys1", "serial": "TRUENAS001"}'
show nvmet.namespace.create '{"subsys": 1, "device": "zvol/tank/nvme/ns1", "device_nguid": null, "device_uuid": null, "enabled": true}'
show nvmet.port.create '{"addr_trtype": "TCP", "addr_traddr": "0.0.0.0", "addr_trsvcid": "4420", "addr_adrfam": "IPV4"}'
show nvmet.port_subsys.create '{"port": 1, "subsys": 1}'
show nvmet.host.create '{"hostnqn": "nqn.2024-01.com.example:host:server1"}'
show nvmet.host_subsys.create '{"host": 1, "subsys": 1}'
show nvmet.global.update '{"enabled": true}'

ACTIVE=1
for i in $(seq 1 "$NODES"); do
    s=$("$NVMETCTL" --socket "$RUN/node$i/nvmetd.sock" call failover.status 2>/dev/null || true)
    [ "$s" = MASTER ] || [ "$s" = SINGLE ] && ACTIVE=$i
done
N=$RUN/node$ACTIVE
echo "== The rendered configfs tree of the active node ($N/configfs/nvmet)"
(cd "$N/configfs" && find nvmet -mindepth 1 | sort | while read -r p; do
    if [ -L "$p" ]; then printf '%s -> %s\n' "$p" "$(readlink "$p" | sed "s|$N/configfs/||")"
    elif [ -f "$p" ]; then printf '%s = %s\n' "$p" "$(head -c 200 "$p" | tr '\n' ' ' | sed 's/ *$//')"
    fi
done)
echo
echo "== failover.status of every node (the active node links the ports)"
for i in $(seq 1 "$NODES"); do
    echo "node $i: $("$NVMETCTL" --socket "$RUN/node$i/nvmetd.sock" call failover.status)"
done
echo
echo "== nvmetctl status (cluster.status at a glance; -o json for all of it)"
"$NVMETCTL" --url "$URLS" --api-key-file "$RUN/api.key" --cacert "$RUN/tls/ca.pem" status || true
echo
cat <<MSG

The cluster is up (pids ${PIDS[*]}, logs $RUN/node*/nvmetd.log). Try, in another shell:
  $NVMETCTL --url $URLS --api-key-file $RUN/api.key --cacert $RUN/tls/ca.pem call nvmet.subsys.query
  $NVMETCTL --socket $RUN/node1/nvmetd.sock call nvmet.namespace.query '[["subsys.id", "=", 1]]' '{"select": ["nsid", "device_path"]}'
  $NVMETCTL --socket $RUN/node1/nvmetd.sock status
  kill -9 ${PIDS[$ACTIVE]}    # the active node: another node becomes MASTER and links the port
Press Ctrl-C to stop.
MSG
wait
