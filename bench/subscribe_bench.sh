#!/bin/bash
# The cost of core.subscribe's events on bulk provisioning: one nvmetd
# (emulated configfs on tmpfs, Raft data under DIR) takes N nvmet.host
# creates from `nvmetctl batch` over its unix socket, first with no
# subscriber, then with one `nvmetctl subscribe '*'` reading every event.
# Prints the batch's wall time, the node's CPU time (user+system, from
# /proc) and the events the subscriber printed.
#
#   bench/subscribe_bench.sh BUILD_DIR [N] [DIR]
#
# It starts its own nvmetd and nvmetctl processes and kills only those.
set -euo pipefail
build=${1:?usage: subscribe_bench.sh BUILD_DIR [N] [DIR]}
n=${2:-10000}
dir=${3:-$(mktemp -d /tmp/nvmet-subbench-XXXXXX)}
nvmetd=$build/cmd/nvmetd
nvmetctl=$build/cmd/nvmetctl
shm=$(mktemp -d /dev/shm/nvmet-subbench-XXXXXX)
node_pid=
sub_pid=
cleanup() {
    [ -n "$sub_pid" ] && kill "$sub_pid" 2>/dev/null || true
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$shm" "$dir"
}
trap cleanup EXIT

cpu_ms() { # utime + stime of a pid, in ms
    local f
    read -r -a f < "/proc/$1/stat"
    echo $(( (f[13] + f[14]) * 1000 / $(getconf CLK_TCK) ))
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

run() { # $1: label, $2: "sub" to subscribe
    local data=$dir/$1 cfs=$shm/$1
    mkdir -p "$data" "$cfs" "$dir/dev-$1"
    local raft
    raft=$(free_port)
    "$nvmetd" --id 1 --data-dir "$data" --raft "127.0.0.1:$raft" --raft-insecure --socket "$dir/$1.sock" --configfs "$cfs" \
        --device-root "$dir/dev-$1" --emulate --election-timeout 3000 2> "$dir/$1.log" &
    node_pid=$!
    for _ in $(seq 100); do
        "$nvmetctl" --socket "$dir/$1.sock" --timeout 1 call core.ping > /dev/null 2>&1 && break
        kill -0 "$node_pid" 2> /dev/null || { cat "$dir/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    local events=0 out=$dir/$1.events
    if [ "$2" = sub ]; then
        "$nvmetctl" --socket "$dir/$1.sock" subscribe '*' > "$out" 2> /dev/null &
        sub_pid=$!
        sleep 0.5
    fi
    local c0 t0 t1 c1
    c0=$(cpu_ms "$node_pid")
    t0=$(date +%s%N)
    "$nvmetctl" --socket "$dir/$1.sock" --timeout 120 batch "$dir/batch" > /dev/null
    t1=$(date +%s%N)
    c1=$(cpu_ms "$node_pid")
    if [ -n "$sub_pid" ]; then
        sleep 1
        kill "$sub_pid"
        wait "$sub_pid" 2>/dev/null || true
        sub_pid=
        events=$(wc -l < "$out")
    fi
    printf '%-14s %6d creates: batch %6d ms, node CPU %6d ms, events printed %d\n' \
        "$1" "$n" $(( (t1 - t0) / 1000000 )) $(( c1 - c0 )) "$events"
    kill "$node_pid"
    wait "$node_pid" 2>/dev/null || true
    node_pid=
}

mkdir -p "$dir"
for i in $(seq "$n"); do
    printf '["nvmet.host.create", {"hostnqn": "nqn.2024-01.com.example:h%d"}]\n' "$i"
done > "$dir/batch"
run no-subscriber none
run one-subscriber sub
