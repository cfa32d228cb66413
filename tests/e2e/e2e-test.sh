#!/usr/bin/env bash
# e2e-test.sh BUILD_DIR [--trials N] [--keep]
#
# End-to-end failover on Debian's real 6.12 kernel: four qemu TCG guests on
# one virtual L2 (tests/e2e/mvm.sh): data nodes da and db share one disk
# image (as a dual-ported drive) and run nvmetd with the witness wit; the
# guest "host" is a Linux NVMe/TCP initiator (nvme-cli, native multipath)
# writing numbered, checksummed 4 KiB blocks with O_DIRECT
# (nvmet-e2e-io). Scenarios, in one boot:
#   takeover   power loss of the active data node; the host follows the VIP
#   return     the old active boots again and must not take anything back
#   switchover failover.become_passive under load: no I/O error
#   witness    witness down, then the active dies: no quorum, no takeover,
#              disabled_reasons says so; the witness returns -> takeover
#   ana        ANA multipath (host connected to both nodes): power loss
#              of the active, then a planned switchover
# Every acknowledged block is read back from the surviving node after
# each failover and once more at the end. DH-CHAP and the allowed-hosts
# list are configured through the API and checked after the failovers.
# --trials N repeats takeover, switchover and the two ANA cases N times
# (the benchmark mode; the summary gives p50 and max).
# Exit 0 pass, 1 fail, 77 skipped (qemu cannot run here).
set -uo pipefail
HERE=$(dirname "$(readlink -f "$0")")
source "$HERE/mvm.sh"
set +e
# The whole script is one compound command, parsed before it runs: bash
# would otherwise read an edited file from the old offset mid-run.
{
E2E_T0=$(date +%s)

BUILD=$(readlink -f "$1")
shift
TRIALS=1
KEEP=0
# The election timeout of the guests' nvmetd. TCG guests on a shared
# 2-core host see scheduling stalls of several hundred ms, which the
# default 400 ms cannot absorb (the lease would expire and the VIP flap).
ET=${E2E_ELECTION_TIMEOUT:-1000}
# The host's keep-alive timeout on ANA paths: a dead path is noticed by a
# failed keep-alive (nothing resets its TCP connection), so this bounds
# the ANA stall (see README, Host settings).
KATO=${E2E_KATO:-1}
while [ $# -gt 0 ]; do
    case "$1" in
    --trials) TRIALS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: e2e-test.sh BUILD_DIR [--trials N] [--keep]"; exit 2 ;;
    esac
done
OUT=$BUILD/e2e
exec 9> "$BUILD/e2e.lock"
flock -n 9 || { echo "FAIL: another e2e run uses $BUILD"; exit 1; }
CACHE=${NVMET_KERNEL_CACHE:-$BUILD/kernel-cache}
rm -rf "$OUT"
mkdir -p "$OUT" "$CACHE"

if ! khost_tools || ! command -v qemu-system-x86_64 > /dev/null; then
    echo "SKIP: qemu-system-x86_64 is not available and could not be installed"; exit 77
fi
if ! KDIR=$(kfetch "$CACHE" linux-image-6.12-cloud-amd64); then
    echo "SKIP: cannot download the kernel from Debian's archive"; exit 77
fi
command -v mkfs.ext4 > /dev/null || { echo "SKIP: mkfs.ext4 (e2fsprogs) is missing"; exit 77; }

FAILS=0
pass() { echo "TEST PASS: $*"; }
fail() { echo "TEST FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

mvm_init "$OUT/w"
cleanup() {
    mvm_stop_all
    [ "$KEEP" = 1 ] || rm -f "$MW"/*.img
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NQN=nqn.2024-01.com.example:nvme:e2e
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:e2e00000-0000-4000-8000-000000000020
BADNQN=nqn.2014-08.org.nvmexpress:uuid:e2e00000-0000-4000-8000-0000000000ff
VIP=198.51.100.100
declare -A IP=([da]=198.51.100.11 [db]=198.51.100.12 [wit]=198.51.100.13 [host]=198.51.100.20)
declare -A ID=([da]=1 [db]=2 [wit]=3)
CLUSTER="1=${IP[da]}:7001,2=${IP[db]}:7001,3=${IP[wit]}:7001"
SOCK=/run/nvmet-ha/nvmetd.sock

echo "e2e-test-key-$RANDOM$RANDOM" > "$MW/api.key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$MW/raft.psk"
mvm_initrd "$KDIR" "$BUILD" "$MW/initrd" "$MW/api.key" "$MW/raft.psk" || { echo "FAIL: initrd"; exit 1; }
truncate -s 4G "$MW/shared.img" # 64 MiB per writer run (SEG), sparse
for n in da db wit; do
    truncate -s 96M "$MW/$n.img"
    mkfs.ext4 -q -F "$MW/$n.img"
done

# boot NAME: launch the guest with its disks (the shared one first on data
# nodes, so it is /dev/vda on both).
boot() {
    local n=$1 disks=()
    if [ "$n" = da ] || [ "$n" = db ]; then
        disks+=(-drive "file=$MW/shared.img,format=raw,if=none,id=sd,cache=none,file.locking=off"
                -device virtio-blk-pci,drive=sd,serial=shared0)
    fi
    if [ -n "${ID[$n]:-}" ]; then
        disks+=(-drive "file=$MW/$n.img,format=raw,if=none,id=dd,cache=none"
                -device virtio-blk-pci,drive=dd,serial=nvmetdata)
    fi
    mvm_launch "$n" "${IP[$n]}" "$KDIR" "$MW/initrd" "${disks[@]}"
}

# start NAME: nvmetd in the guest, its data dir on the guest's own disk,
# its log on the console (NAME.console survives a power loss). The RPC
# port is plaintext (--rpc-plaintext): the guests' network is private to
# this test, and RPC TLS is covered by the integration tests.
start() {
    local n=$1 extra=""
    [ "$n" = wit ] && extra=--witness
    gx "$n" "(nvmetd --id ${ID[$n]} --data-dir /var/lib/nvmet/data --raft ${IP[$n]}:7001 \
        --rpc ${IP[$n]}:6000 --rpc-plaintext --api-key-file /run/nvmet-ha/api.key --socket $SOCK \
        --raft-psk-file /run/nvmet-ha/raft.psk \
        --cluster $CLUSTER --election-timeout $ET $extra 2>&1 | cat > /dev/ttyS0) &" > /dev/null
}

# ctl NAME METHOD [JSON...]: nvmetctl on the node's unix socket.
ctl() {
    local n=$1 m=$2 a="" arg
    shift 2
    for arg in "$@"; do a="$a '$arg'"; done
    gx "$n" "nvmetctl --socket $SOCK --timeout 15 call $m$a" 40
}

up_s() { gx "$1" "cut -d' ' -f1 /proc/uptime"; }
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
holds_vip() { gx "$1" "ip addr show dev eth0" 2> /dev/null | grep -q "inet $VIP/"; }
other() { [ "$1" = da ] && echo db || echo da; }

# The data node holding the VIP (empty if none), waiting up to $2 s.
active() {
    local t=${1:-0} i n
    for ((i = 0; i <= t * 4; i++)); do
        for n in da db; do
            mvm_alive "$n" && holds_vip "$n" && { echo "$n"; return 0; }
        done
        [ "$t" = 0 ] && break
        sleep 0.25
    done
    return 1
}

# ANA_OPT: a guest condition, true when this node's ANA group (the one
# its namespace is in) is optimized on its port.
ANA_OPT='g=$(cat /sys/kernel/config/nvmet/subsystems/*/namespaces/1/ana_grpid 2>/dev/null) && grep -q "^optimized" /sys/kernel/config/nvmet/ports/*/ana_groups/$g/ana_state 2>/dev/null'
ana_optimized() { gx "$1" "$ANA_OPT" > /dev/null 2>&1; }

# sync_clock NAME: sets G0/H0 so that guest uptime g maps to host time
# H0 + (g - G0) (within half a command round trip, reported as ERR_MS).
sync_clock() {
    local a b g
    a=$(now); g=$(up_s "$1"); b=$(now)
    G0=$g
    H0=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", (a + b) / 2 }')
    ERR_MS=$(ms "$a" "$b")
    ERR_MS=$((ERR_MS / 2))
}
guest_to_host() { awk -v g="$1" -v g0="$G0" -v h0="$H0" 'BEGIN { printf "%.3f", h0 + g - g0 }'; }

# watch NAME CONDITION-COMMAND: in the guest, polls every 10 ms (at most
# 120 s) until CONDITION holds, then writes its uptime to /tmp/watch.
watch() {
    gx "$1" "rm -f /tmp/watch; (i=0; while [ \$i -lt 12000 ]; do if $2; then \
        cut -d' ' -f1 /proc/uptime > /tmp/watch; break; fi; usleep 10000; i=\$((i+1)); done) \
        > /dev/null 2>&1 &" > /dev/null
}
# watched NAME TIMEOUT_S: waits for /tmp/watch; prints the guest uptime.
watched() {
    local i v
    for ((i = 0; i < $2 * 5; i++)); do
        v=$(gx "$1" "cat /tmp/watch 2>/dev/null") && [ -n "$v" ] && { echo "$v"; return 0; }
        sleep 0.2
    done
    return 1
}

# --- writer on the host guest ------------------------------------------------
SEG=0
LOGS=()
DEV=""
writer_start() {
    SEG=$((SEG + 1))
    gx host "rm -f /tmp/stop; nvmet-e2e-io write $DEV /tmp/io-$SEG.log --base $((SEG * 16384)) \
        --max 16384 --seconds 90 --stop /tmp/stop --run $SEG > /tmp/io-$SEG.out 2>&1 &" > /dev/null
    LOGS+=("/tmp/io-$SEG.log")
}
# writer_stop -> WOUT "acked=.. errors=.. stall_ms=.. ..."; STALL, ERRORS, ACKED
writer_stop() {
    local i
    gx host "touch /tmp/stop" > /dev/null
    for ((i = 0; i < 150; i++)); do
        WOUT=$(gx host "cat /tmp/io-$SEG.out") && [ -n "$WOUT" ] && break
        sleep 0.2
    done
    STALL=$(echo "$WOUT" | sed -n 's/.*stall_ms=\([0-9]*\).*/\1/p')
    ERRORS=$(echo "$WOUT" | sed -n 's/.*errors=\([0-9]*\).*/\1/p')
    ACKED=$(echo "$WOUT" | sed -n 's/.*acked=\([0-9]*\).*/\1/p')
    [ -n "$WOUT" ] || WOUT="(no summary: the writer is stuck in a write, the host has no usable path)"
    STALL=${STALL:-999999}; ERRORS=${ERRORS:-999999}; ACKED=${ACKED:-0}
}
# verify LABEL LOG...: every acknowledged block reads back.
verify() {
    local label=$1 v
    shift
    v=$(gx host "nvmet-e2e-io verify $DEV $*" 120)
    local rc=$?
    echo "  verify ($label): $v"
    [ $rc = 0 ] && pass "$label: every acknowledged block reads back" ||
        fail "$label: acknowledged blocks lost or damaged: $v"
    LOST=$(echo "$v" | sed -n 's/.*lost=\([0-9]*\).*/\1/p')
}

declare -A RES
record() { RES[$1]="${RES[$1]:-} $2"; }

# --- boot, cluster, configuration ----------------------------------------------
T0=$(now)
for n in da db wit host; do boot "$n"; done
for n in da db wit host; do mvm_ready "$n" || { echo "FAIL: $n did not boot"; exit 1; }; done
echo "== 4 guests up in $(ms "$T0" "$(now)") ms ($(cat "$KDIR/kver"))"
for n in da db wit; do start "$n"; done
for ((i = 0; i < 120; i++)); do
    ctl da cluster.status 2> /dev/null | grep -q '"leader": *[1-3]' && break
    sleep 0.5
done
if ctl da cluster.status 2> /dev/null | grep -q '"leader": *[1-3]'; then pass "the cluster elects a leader"
else fail "no leader: $(ctl da cluster.status 2>&1 | head -5)"; fi

KEY=$(ctl da nvmet.host.generate_key SHA-256 "$HOSTNQN")
SETUP=(
    "failover.update|{\"vips\": [{\"address\": \"$VIP\", \"prefix\": 24, \"interface\": \"eth0\", \"node_addresses\": {\"1\": \"${IP[da]}\", \"2\": \"${IP[db]}\"}}], \"announce_count\": 3, \"announce_interval_ms\": 100}"
    "nvmet.subsys.create|{\"name\": \"$NQN\", \"serial\": \"E2ESHARED0001\", \"allow_any_host\": false}"
    "nvmet.namespace.create|{\"subsys\": 1, \"device\": \"/dev/vda\", \"device_uuid\": \"5a1e0000-0000-4000-8000-000000000001\", \"device_nguid\": \"5a1e0000-0000-4000-8000-0000000000a1\"}"
    "nvmet.host.create|{\"hostnqn\": \"$HOSTNQN\", \"dhchap_key\": \"$KEY\", \"dhchap_hash\": \"SHA-256\", \"dhchap_dhgroup\": \"2048-BIT\"}"
    "nvmet.host_subsys.create|{\"host\": 1, \"subsys\": 1}"
    "nvmet.port.create|{\"addr_trtype\": \"TCP\", \"addr_traddr\": \"$VIP\", \"addr_trsvcid\": 4420}"
    "nvmet.port_subsys.create|{\"port\": 1, \"subsys\": 1}"
    "nvmet.global.update|{\"enabled\": true}"
)
for c in "${SETUP[@]}"; do
    out=$(ctl da "${c%%|*}" "${c#*|}" 2>&1) || fail "setup ${c%%|*}: $out"
done
ACT=$(active 30) && pass "a data node holds the VIP ($ACT)" || fail "no data node holds the VIP"

gx host "echo $HOSTNQN > /etc/nvme/hostnqn; echo ${HOSTNQN##*:} > /etc/nvme/hostid" > /dev/null
CONNECT="nvme connect -t tcp -s 4420 -n $NQN -q $HOSTNQN --dhchap-secret=$KEY --reconnect-delay=1 --ctrl-loss-tmo=120"
# find_dev: the namespace block device of $NQN on the host (polls 10 s).
find_dev() {
    gx host "for i in \$(seq 100); do for s in /sys/class/nvme-subsystem/nvme-subsys*; do \
        [ \"\$(cat \$s/subsysnqn 2>/dev/null)\" = $NQN ] || continue; \
        for b in \$s/nvme*n1; do [ -e \$b ] && [ -b /dev/\${b##*/} ] && { echo /dev/\${b##*/}; exit 0; }; done; \
        done; usleep 100000; done; exit 1"
}
refused() { # refused ADDR: the host NQN that is not allowed cannot connect
    if gx host "nvme connect -t tcp -a $1 -s 4420 -n $NQN -q $BADNQN" > /dev/null 2>&1; then
        gx host "nvme disconnect -n $NQN" > /dev/null
        return 1
    fi
    return 0
}
check "a host that is not allowed is refused" refused "$VIP"
check "the host connects to the VIP with DH-CHAP" gx host "$CONNECT -a $VIP" 30
DEV=$(find_dev) && pass "namespace device $DEV" || fail "no namespace device on the host"
gx host "cat /sys/class/nvme/nvme*/dhchap_secret" | grep -q '^DHHC-1' &&
    pass "the connection uses DH-CHAP" || fail "no DH-CHAP secret on the host controller"

# --- takeover ----------------------------------------------------------------
# takeover LABEL KEY: power loss of the active while the host writes; the
# new active is the node that takes the VIP (ANA=1: whose ANA group
# becomes optimized). Records KEY_stall, KEY_fo (kill -> new active, host
# clock) and KEY_lost.
takeover() {
    local label=$1 key=$2 act="" oth g t_kill cond what n
    if [ "$ANA" = 1 ]; then
        for n in da db; do mvm_alive "$n" && ana_optimized "$n" && act=$n; done
        cond=$ANA_OPT what="reports its ANA group optimized"
    else
        act=$(active 10)
        cond="ip addr show dev eth0 | grep -q 'inet $VIP/'" what="holds the VIP"
    fi
    [ -n "$act" ] || { fail "$label: no active node before the power loss"; return 1; }
    oth=$(other "$act")
    writer_start
    watch "$oth" "$cond"
    sleep 3
    sync_clock "$oth"
    t_kill=$(now)
    mvm_kill "$act"
    if g=$(watched "$oth" 30); then
        FO_MS=$(ms "$t_kill" "$(guest_to_host "$g")")
        pass "$label: $oth $what ${FO_MS} ms after $act lost power (±${ERR_MS} ms)"
    else
        FO_MS=-1
        fail "$label: $oth did not take over within 30 s"
    fi
    sleep 5
    writer_stop
    echo "  writer: $WOUT"
    [ "$ERRORS" = 0 ] && pass "$label: no I/O error" || fail "$label: $ERRORS I/O errors"
    verify "$label" "/tmp/io-$SEG.log"
    record "${key}_stall" "$STALL"
    record "${key}_fo" "$FO_MS"
    record "${key}_lost" "$LOST"
    LAST_DEAD=$act
}

# back NAME: the node powered off by a takeover boots and rejoins; it must
# not take the VIP (or, with ANA, the optimized state) back by itself.
back() {
    local n=$1 label="return of $1" i c0
    # its console is kept across boots: count the catch-ups seen so far
    c0=$(grep -ac "caught up at index" "$MW/$n.console" 2> /dev/null || true)
    writer_start
    boot "$n"
    mvm_ready "$n" || { fail "$label: did not boot"; return 1; }
    start "$n"
    for ((i = 0; i < 60; i++)); do
        ctl "$n" failover.status 2> /dev/null | grep -q BACKUP && break
        sleep 0.5
    done
    if ctl "$n" failover.status 2> /dev/null | grep -q BACKUP; then pass "$label: it rejoins as BACKUP"
    else fail "$label: failover.status is $(ctl "$n" failover.status 2>&1)"; fi
    # a planned switchover to it (the next scenario) needs it to have
    # caught up with the log first, as an operator would wait for
    for ((i = 0; i < 120; i++)); do
        [ "$(grep -ac "caught up at index" "$MW/$n.console" 2> /dev/null || true)" -gt "${c0:-0}" ] &&
            break
        sleep 0.5
    done
    local held=0 opt=0
    for ((i = 0; i < 10; i++)); do
        holds_vip "$n" && held=1
        [ "$ANA" = 1 ] && ana_optimized "$n" && opt=1
        sleep 0.3
    done
    [ $held = 0 ] && pass "$label: it does not take the VIP back" || fail "$label: it holds the VIP"
    if [ "$ANA" = 1 ]; then
        [ $opt = 0 ] && pass "$label: its ANA group stays inaccessible" ||
            fail "$label: its ANA group became optimized"
    fi
    writer_stop
    echo "  writer: $WOUT"
    [ "$ERRORS" = 0 ] && pass "$label: no I/O error" || fail "$label: $ERRORS I/O errors"
    [ "$STALL" -lt 1000 ] && pass "$label: host I/O kept going (longest gap ${STALL} ms)" ||
        fail "$label: host I/O stalled ${STALL} ms while the old active returned"
}

# switchover LABEL: failover.become_passive on the active under load.
switchover() {
    local label=$1 act oth g t0
    act=$(active 10) || { fail "$label: no active"; return 1; }
    oth=$(other "$act")
    writer_start
    if [ "$ANA" = 1 ]; then watch "$oth" "$ANA_OPT"
    else watch "$oth" "ip addr show dev eth0 | grep -q 'inet $VIP/'"; fi
    sleep 3
    sync_clock "$oth"
    t0=$(now)
    local out
    out=$(ctl "$act" failover.become_passive 2>&1) || fail "$label: become_passive failed: $out"
    if g=$(watched "$oth" 30); then
        FO_MS=$(ms "$t0" "$(guest_to_host "$g")")
        pass "$label: $oth active ${FO_MS} ms after become_passive on $act (±${ERR_MS} ms)"
    else
        FO_MS=-1; fail "$label: $oth did not become active"
    fi
    sleep 4
    writer_stop
    echo "  writer: $WOUT"
    [ "$ERRORS" = 0 ] && pass "$label: no I/O error" || fail "$label: $ERRORS I/O errors"
    verify "$label" "/tmp/io-$SEG.log"
    record "${2}_stall" "$STALL"
    record "${2}_fo" "$FO_MS"
}

# witness_down: no quorum -> no takeover; the witness returns -> takeover.
witness_down() {
    local label="witness down" act oth i reasons held=0
    act=$(active 10) || { fail "$label: no active"; return 1; }
    oth=$(other "$act")
    mvm_kill wit
    sleep 2
    holds_vip "$act" && pass "$label: $act stays active with the other data node" ||
        fail "$label: $act lost the VIP when the witness went down"
    writer_start
    sleep 2
    mvm_kill "$act"
    for ((i = 0; i < 16; i++)); do holds_vip "$oth" && held=1; sleep 0.5; done
    [ $held = 0 ] && pass "$label: $oth alone takes nothing (no quorum)" ||
        fail "$label: $oth took the VIP without quorum"
    reasons=$(ctl "$oth" failover.disabled_reasons)
    echo "$reasons" | grep -q NO_QUORUM && pass "$label: disabled_reasons says NO_QUORUM" ||
        fail "$label: disabled_reasons is $reasons"
    boot wit
    mvm_ready wit && start wit
    watch "$oth" "ip addr show dev eth0 | grep -q 'inet $VIP/'"
    watched "$oth" 60 > /dev/null && pass "$label: $oth takes over once the witness is back" ||
        fail "$label: no takeover after the witness returned"
    sleep 4
    writer_stop
    echo "  writer: $WOUT (the stall includes the time without quorum)"
    [ "$ERRORS" = 0 ] && pass "$label: no I/O error" || fail "$label: $ERRORS I/O errors"
    verify "$label" "/tmp/io-$SEG.log"
    LAST_DEAD=$act
}

ANA=0
takeover "takeover 1" takeover
back "$LAST_DEAD"
for ((k = 2; k <= TRIALS; k++)); do takeover "takeover $k" takeover; back "$LAST_DEAD"; done
for ((k = 1; k <= TRIALS; k++)); do switchover "switchover $k" switchover; done
gx host "cat /sys/class/nvme/nvme*/dhchap_secret" | grep -q '^DHHC-1' &&
    pass "DH-CHAP still in use after the failovers" || fail "no DH-CHAP secret after the failovers"
A=$(active 10)
check "a host that is not allowed is still refused (on $A)" refused "$VIP"
witness_down
back "$LAST_DEAD"

# --- ANA multipath -------------------------------------------------------------
ANA=1
gx host "nvme disconnect -n $NQN" > /dev/null
# ctl_retry NAME METHOD JSON: an idempotent call, retried while an
# election runs (TCG guests on a loaded host stall past the election
# timeout now and then; the call then fails with ENOQUORUM).
ctl_retry() {
    local i out
    for ((i = 0; i < 5; i++)); do
        out=$(ctl "$@" 2>&1) && return 0
        echo "  $2 on $1 (try $((i + 1))): $out"
        sleep 2
    done
    return 1
}
if ! ctl_retry da nvmet.global.update '{"ana": true}'; then
    fail "ana: nvmet.global.update ana"
    TRIALS=0 # no ANA scenarios on a cluster that cannot switch
fi
sleep 2
# ana_connect NAME: the host adds the path to NAME (its port may need a
# render pass after the switch to ANA: a few tries).
ana_connect() {
    local i
    for ((i = 0; i < 10; i++)); do
        gx host "$CONNECT -a ${IP[$1]} --keep-alive-tmo=$KATO" 30 > /dev/null 2>&1 && return 0
        sleep 1
    done
    return 1
}
for n in da db; do check "ana: the host connects to $n" ana_connect "$n"; done
# paths_live N TIMEOUT_S: N controllers of the host are live.
paths_live() {
    local i
    for ((i = 0; i < $2 * 2; i++)); do
        [ "$(gx host "cat /sys/class/nvme/nvme*/state" | grep -c '^live')" -ge "$1" ] && return 0
        sleep 0.5
    done
    return 1
}
DEV=$(find_dev) && pass "ana: multipath device $DEV" || fail "ana: no device"
gx host "cat /sys/block/${DEV#/dev/}/multipath/*/ana_state 2>/dev/null; for c in /sys/block/nvme*c*n1; do echo \$c \$(cat \$c/ana_state); done"
for ((k = 1; k <= TRIALS; k++)); do
    takeover "ana takeover $k" ana
    back "$LAST_DEAD"
    # the host's controller for that path kept reconnecting (ctrl-loss-tmo)
    check "ana: the host's path to $LAST_DEAD comes back by itself" paths_live 2 60
done
for ((k = 1; k <= TRIALS; k++)); do switchover "ana switchover $k" ana_switchover; done

A=$(for n in da db; do ana_optimized "$n" && echo "$n"; done | head -1)
verify "all blocks at the end (through $A)" "${LOGS[@]}"

# --- report ------------------------------------------------------------------
stats() { # "v v v" -> "p50 max n"
    echo "$1" | tr ' ' '\n' | grep -v '^$' | sort -n |
        awk '{a[NR]=$1} END {if (NR==0) {print "- - 0"; exit} printf "%s %s %d\n", a[int((NR+1)/2)], a[NR], NR}'
}
echo "== report (ms; p50 max trials)"
printf '%-16s %-22s %-22s %s\n' scenario "host I/O stall" "server failover" "lost blocks"
for s in takeover switchover ana ana_switchover; do
    printf '%-16s %-22s %-22s %s\n' "$s" "$(stats "${RES[${s}_stall]:-}")" \
        "$(stats "${RES[${s}_fo]:-}")" "$(echo ${RES[${s}_lost]:-0} | tr ' ' '+' | bc)"
done
echo "RESULT: $([ $FAILS = 0 ] && echo PASS || echo "FAIL ($FAILS)") in $(($(date +%s) - E2E_T0)) s"
[ $FAILS = 0 ]
exit
}
