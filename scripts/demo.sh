#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds, starts a
# local nvmet-ha node on loopback (a one-member Raft cluster; configfs
# emulated under run/ because this host kernel has no nvmet), runs the
# complete setup of API.md through nvmetctl, prints the rendered configfs
# tree, and leaves the node up for nvmetctl calls until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)" --target nvmetd nvmetctl >/dev/null
NVMETD=$TOP/build/release/cmd/nvmetd
NVMETCTL=$TOP/build/release/cmd/nvmetctl

RUN=$TOP/run
rm -rf "$RUN"
N=$RUN/node1
mkdir -p "$N/configfs" "$N/root/dev/zvol/tank/nvme"
# The brief's namespace lives on zvol/tank/nvme/ns1: give the demo a block
# device node there (it is only checked, never opened, by the emulation).
if [ "$(id -u)" -eq 0 ]; then
    mknod "$N/root/dev/zvol/tank/nvme/ns1" b 7 200
else
    echo "demo: not root: cannot create the demo's block device node; run as root" >&2
    exit 1
fi
head -c 24 /dev/urandom | base64 > "$N/api.key"
chmod 600 "$N/api.key"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
RAFT_PORT=$(free_port)
RPC_PORT=$(free_port)
SOCK=$N/nvmetd.sock

"$NVMETD" --id 1 --data-dir "$N/data" --raft "127.0.0.1:$RAFT_PORT" \
    --rpc "127.0.0.1:$RPC_PORT" --api-key-file "$N/api.key" --socket "$SOCK" \
    --configfs "$N/configfs" --device-root "$N/root" --debugfs "$N" 2> "$N/nvmetd.log" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; exit 0' INT TERM

ctl() { "$NVMETCTL" --socket "$SOCK" call "$@"; }
for _ in $(seq 1 100); do
    ctl core.ping >/dev/null 2>&1 && break
    sleep 0.1
done
ctl core.ping >/dev/null || { cat "$N/nvmetd.log"; echo "demo: nvmetd did not start" >&2; exit 1; }

show() { echo "\$ nvmetctl call $*"; ctl "$@"; echo; }
echo "== The complete setup of API.md, through nvmetctl"
show nvmet.subsys.create '{"name": "nqn.2024-01.com.example:nvme:subsys1", "serial": "TRUENAS001"}'
show nvmet.namespace.create '{"subsys": 1, "device": "zvol/tank/nvme/ns1", "device_nguid": null, "device_uuid": null, "enabled": true}'
show nvmet.port.create '{"addr_trtype": "TCP", "addr_traddr": "0.0.0.0", "addr_trsvcid": "4420", "addr_adrfam": "IPV4"}'
show nvmet.port_subsys.create '{"port": 1, "subsys": 1}'
show nvmet.host.create '{"hostnqn": "nqn.2024-01.com.example:host:server1"}'
show nvmet.host_subsys.create '{"host": 1, "subsys": 1}'
show nvmet.global.update '{"enabled": true}'

echo "== The rendered configfs tree ($N/configfs/nvmet)"
(cd "$N/configfs" && find nvmet -mindepth 1 | sort | while read -r p; do
    if [ -L "$p" ]; then printf '%s -> %s\n' "$p" "$(readlink "$p" | sed "s|$N/configfs/||")"
    elif [ -f "$p" ]; then printf '%s = %s\n' "$p" "$(head -c 200 "$p" | tr '\n' ' ' | sed 's/ *$//')"
    fi
done)
echo
echo "== Cluster status"
ctl cluster.status
echo
cat <<MSG

The node is up (pid $PID, log $N/nvmetd.log). Try, in another shell:
  export NVMETCTL_SOCKET=$SOCK
  $NVMETCTL call nvmet.subsys.query
  $NVMETCTL call nvmet.namespace.query '[["subsys.id", "=", 1]]' '{"select": ["nsid", "device_path"]}'
  $NVMETCTL --url 127.0.0.1:$RPC_PORT --api-key-file $N/api.key call nvmet.global.config
Press Ctrl-C to stop.
MSG
wait "$PID"
