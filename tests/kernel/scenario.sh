#!/bin/sh
# The real-kernel scenario (busybox sh). Runs inside the guest
# (MODE=guest: real configfs, nvme-cli as the host) or on the build host
# (MODE=host: the same API calls against the emulated configfs, no host
# side), dumping the nvmet tree at the same named steps so the two runs
# can be compared (fidelity of the emulation).
# Prints "TEST PASS: ..." / "TEST FAIL: ..." lines and "RESULT: PASS|FAIL".
MODE=${MODE:-guest}
WORK=${WORK:-/tmp/nvmet-ha}
CFS=${CFS:-/sys/kernel/config}
NVMETD=${NVMETD:-/usr/sbin/nvmetd}
NVMETCTL=${NVMETCTL:-/usr/sbin/nvmetctl}
DEVROOT=${DEVROOT:-}
DUMP=${DUMP:-$WORK/trees.txt}
SUB=nqn.2024-01.com.example:nvme:subsys1
SUB2=nqn.2024-01.com.example:nvme:subsys2
HOST=nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555
HOST2=nqn.2014-08.org.nvmexpress:uuid:66666666-7777-8888-9999-000000000000
BAD=nqn.2014-08.org.nvmexpress:uuid:99999999-9999-9999-9999-999999999999
fails=0
ok() { echo "TEST PASS: $*"; }
bad() { echo "TEST FAIL: $*"; fails=$((fails + 1)); }
chk() { d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
guest() { [ "$MODE" = guest ]; }

mkdir -p "$WORK"
: > "$DUMP"
ctl() { "$NVMETCTL" --socket "$WORK/nvmetd.sock" call "$@"; }
# ctl_ok DESC METHOD ARGS...: must succeed; its output is in $OUT
ctl_ok() {
    d=$1; shift
    if OUT=$(ctl "$@" 2> "$WORK/err"); then ok "$d"; else bad "$d: $(cat "$WORK/err")"; fi
}
# ctl_err DESC EXPECTED-FIRST-STDERR-LINE METHOD ARGS...
ctl_err() {
    d=$1; want=$2; shift 2
    if ctl "$@" > /dev/null 2> "$WORK/err"; then bad "$d: succeeded"; return; fi
    got=$(head -n 1 "$WORK/err")
    if [ "$got" = "$want" ]; then ok "$d"; else bad "$d: got '$got', want '$want'"; fi
}

# The nvmet tree as sorted "path = value" lines: links by target basename,
# DH-CHAP keys reduced to their kind and length (generated keys differ per
# run), write-only files by name.
dump() {
    echo "== TREE $1" >> "$DUMP"
    (cd "$CFS" && find nvmet -mindepth 1 | sort | while read -r p; do
        n=${p##*/}
        if [ -L "$p" ]; then
            t=$(readlink "$p"); echo "$p -> ${t##*/}"
        elif [ -d "$p" ]; then
            echo "$p/"
        elif [ "$(stat -c %a "$p" 2> /dev/null)" != 200 ] && v=$(cat "$p" 2> /dev/null); then
            v=$(echo "$v" | sed 's/ *$//')
            case "$n" in dhchap_key | dhchap_ctrl_key)
                [ -n "$v" ] && v="${v%%:*}:$(echo "$v" | cut -d: -f2):len${#v}" ;;
            clear_ids) # set by the kernel when a host connects over nvme-loop:
                v="(host side)" ;; # a fact of the host, not of the configuration
            esac
            echo "$p = $v"
        else
            echo "$p (unreadable)"
        fi
    done) >> "$DUMP"
}

# --- start ---------------------------------------------------------------
mkdir -p "$DEVROOT/tmp/nvmet"
if guest; then
    mkdir -p /etc/nvme
    echo "$HOST" > /etc/nvme/hostnqn
    echo "11111111-2222-3333-4444-555555555555" > /etc/nvme/hostid
    truncate -s 32M /tmp/blk.img
    losetup /dev/loop0 /tmp/blk.img || bad "losetup"
    HAVE_LOOP=0; [ -d /sys/module/nvme_loop ] && HAVE_LOOP=1
else
    mkdir -p "$DEVROOT/dev"
    [ -b "$DEVROOT/dev/loop0" ] || mknod "$DEVROOT/dev/loop0" b 7 0
    HAVE_LOOP=${HAVE_LOOP:-1}
fi
# Raft's cluster secret (raw random bytes; the file must be private)
(umask 077 && head -c 48 /dev/urandom > "$WORK/raft.psk")
set -- --id 1 --data-dir "$WORK/data" --raft "${RAFT:-127.0.0.1:7001}" --socket "$WORK/nvmetd.sock" \
    --configfs "$CFS" --sweep-interval 500 --election-timeout 300 --raft-psk-file "$WORK/raft.psk"
[ -n "$DEVROOT" ] && set -- "$@" --device-root "$DEVROOT"
[ -n "${EMULATE:-}" ] && set -- "$@" --emulate-kernel "$EMULATE"
"$NVMETD" "$@" 2> "$WORK/nvmetd.log" &
DPID=$!
i=0
until ctl core.ping > /dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
chk "nvmetd answers" ctl core.ping

# --- the complete setup: FILE + BLOCK namespaces, TCP + loop ports ------------
ctl_ok "subsys create" nvmet.subsys.create "{\"name\": \"$SUB\", \"serial\": \"NVMETHA0001\"}"
ctl_ok "FILE namespace" nvmet.namespace.create "{\"subsys\": 1, \"device\": \"/tmp/nvmet/file.img\", \"filesize\": 67108864, \"device_uuid\": \"0f01fb42-9f7f-4856-b0b3-51e60b8de301\", \"device_nguid\": \"0f01fb42-9f7f-4856-b0b3-51e60b8de302\"}"
ctl_ok "BLOCK namespace" nvmet.namespace.create "{\"subsys\": 1, \"device\": \"/dev/loop0\", \"device_uuid\": \"0f01fb42-9f7f-4856-b0b3-51e60b8de303\", \"device_nguid\": \"0f01fb42-9f7f-4856-b0b3-51e60b8de304\"}"
ctl_ok "TCP port" nvmet.port.create '{"addr_trtype": "TCP", "addr_traddr": "127.0.0.1", "addr_trsvcid": "4420", "addr_adrfam": "IPV4"}'
ctl_ok "port link" nvmet.port_subsys.create '{"port": 1, "subsys": 1}'
ctl_ok "host" nvmet.host.create "{\"hostnqn\": \"$HOST\"}"
ctl_ok "host link" nvmet.host_subsys.create '{"host": 1, "subsys": 1}'
ctl_ok "enable" nvmet.global.update '{"enabled": true}'
if [ "$HAVE_LOOP" = 1 ]; then
    ctl_ok "loop port" nvmet.port.create '{"addr_trtype": "LOOP", "addr_traddr": "1"}'
    ctl_ok "loop port link" nvmet.port_subsys.create '{"port": 2, "subsys": 1}'
fi
dump setup

# --- host side: discover, connect, I/O ------------------------------------------
find_dev() { # NQN NSID -> /dev/nvmeXnY (polls up to 5 s)
    j=0
    while [ $j -lt 50 ]; do
        for s in /sys/class/nvme-subsystem/nvme-subsys*; do
            [ "$(cat "$s/subsysnqn" 2> /dev/null)" = "$1" ] || continue
            for b in "$s"/nvme*n*; do
                [ -e "$b" ] || continue
                n=${b##*/}
                [ "$(cat "$b/nsid" 2> /dev/null)" = "$2" ] && [ -b "/dev/$n" ] && { echo "/dev/$n"; return 0; }
            done
        done
        sleep 0.1; j=$((j + 1))
    done
    return 1
}
ctrl_of() { # /dev/nvmeXnY -> /dev/nvmeZ (a controller of the subsystem holding it)
    b=${1#/dev/}
    for s in /sys/class/nvme-subsystem/nvme-subsys*; do
        [ -e "$s/$b" ] || continue
        for c in "$s"/nvme*; do
            c=${c##*/}
            case "$c" in nvme*c*n* | nvme*n*) ;; nvme[0-9]*) echo "/dev/$c"; return 0 ;; esac
        done
    done
    echo "/dev/${b%n*}" # without native multipath the controller is nvmeX
}
io_check() { # LABEL: both namespaces, sizes, a pattern through NVMe and in the backing files
    t=$1
    D1=$(find_dev "$SUB" 1) || { bad "$t: FILE namespace device"; return; }
    D2=$(find_dev "$SUB" 2) || { bad "$t: BLOCK namespace device"; return; }
    chk "$t: FILE namespace is 64 MiB" [ "$(cat /sys/block/${D1#/dev/}/size)" = 131072 ]
    chk "$t: BLOCK namespace is 32 MiB" [ "$(cat /sys/block/${D2#/dev/}/size)" = 65536 ]
    C=$(ctrl_of "$D1")
    chk "$t: serial in id-ctrl" sh -c "nvme id-ctrl $C | grep -q '^sn *: NVMETHA0001'"
    chk "$t: model in id-ctrl" sh -c "nvme id-ctrl $C | grep -q '^mn *: nvmet-ha'"
    dd if=/dev/urandom of=/tmp/pat bs=4096 count=64 2> /dev/null
    dd if=/tmp/pat of="$D1" bs=4096 seek=8 oflag=direct conv=fsync 2> /dev/null
    dd if="$D1" of=/tmp/rb bs=4096 skip=8 count=64 iflag=direct 2> /dev/null
    chk "$t: pattern reads back" cmp -s /tmp/pat /tmp/rb
    dd if=/tmp/nvmet/file.img of=/tmp/rbf bs=4096 skip=8 count=64 2> /dev/null
    chk "$t: pattern is in the backing file" cmp -s /tmp/pat /tmp/rbf
    dd if=/tmp/pat of="$D2" bs=4096 oflag=direct conv=fsync 2> /dev/null
    dd if=/tmp/blk.img of=/tmp/rbb bs=4096 count=64 2> /dev/null
    chk "$t: pattern is on the loop device's file" cmp -s /tmp/pat /tmp/rbb
}
if guest; then
    chk "discover lists the subsystem" sh -c "nvme discover -t tcp -a 127.0.0.1 -s 4420 | grep -q '$SUB'"
    chk "connect over tcp" nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$SUB" -q "$HOST"
    io_check tcp
    nvme disconnect -n "$SUB" > /dev/null 2>&1
    if [ "$HAVE_LOOP" = 1 ]; then
        chk "connect over loop" nvme connect -t loop -n "$SUB" -q "$HOST"
        io_check loop
        nvme disconnect -n "$SUB" > /dev/null 2>&1
    fi
    if nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$SUB" -q "$BAD" > /dev/null 2>&1; then
        bad "a host that is not allowed is refused"; nvme disconnect -n "$SUB" > /dev/null 2>&1
    else ok "a host that is not allowed is refused"; fi
fi

# --- DH-CHAP ------------------------------------------------------------------
ctl_ok "generate_key" nvmet.host.generate_key SHA-256 "$HOST2"
KEY=$OUT
# A kernel without CONFIG_NVME_TARGET_AUTH (6.1) cannot take the key: the
# write is committed and its answer says what this kernel refused.
HOST_RC=0
ctl nvmet.host.create "{\"hostnqn\": \"$HOST2\", \"dhchap_key\": \"$KEY\", \"dhchap_hash\": \"SHA256\", \"dhchap_dhgroup\": \"NULL\"}" > /dev/null 2> "$WORK/hosterr" || HOST_RC=$?
ctl_ok "host2 link" nvmet.host_subsys.create '{"host": 2, "subsys": 1}'
HAVE_AUTH=0
[ -f "$CFS/nvmet/hosts/$HOST2/dhchap_key" ] && HAVE_AUTH=1
if [ "$HAVE_AUTH" = 1 ]; then
    chk "host with key" [ "$HOST_RC" = 0 ]
else
    chk "host with key: committed, refused by this kernel" sh -c "[ $HOST_RC = 1 ] && grep -q 'ENOTSUP.*committed' '$WORK/hosterr'"
    chk "host with key: in the configuration" sh -c "$NVMETCTL --socket $WORK/nvmetd.sock call nvmet.host.query | grep -q '$HOST2'"
    # 6.1: no CONFIG_NVME_TARGET_AUTH; the daemon must say so
    i=0
    until ctl cluster.status 2> /dev/null | grep -q 'DH-CHAP' || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
    chk "missing DH-CHAP support is reported in cluster.status" sh -c "$NVMETCTL --socket $WORK/nvmetd.sock call cluster.status | grep -q 'CONFIG_NVME_TARGET_AUTH'"
fi
if guest && [ "$HAVE_AUTH" = 1 ]; then
    chk "connect with the generated key" nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$SUB" -q "$HOST2" --dhchap-secret="$KEY"
    nvme disconnect -n "$SUB" > /dev/null 2>&1
    WRONG=$(nvme gen-dhchap-key -m 1 -n "$HOST2")
    if nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$SUB" -q "$HOST2" --dhchap-secret="$WRONG" > /dev/null 2>&1; then
        bad "a wrong key is refused"; nvme disconnect -n "$SUB" > /dev/null 2>&1
    else ok "a wrong key is refused"; fi
    ctl_ok "host update to an nvme-cli key" nvmet.host.update 2 "{\"dhchap_key\": \"$WRONG\"}"
    chk "connect with the nvme-cli key" nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$SUB" -q "$HOST2" --dhchap-secret="$WRONG"
    nvme disconnect -n "$SUB" > /dev/null 2>&1
    CKEY=$(ctl nvmet.host.generate_key SHA-256 "$SUB")
    ctl_ok "bidirectional key" nvmet.host.update 2 "{\"dhchap_ctrl_key\": \"$CKEY\"}"
    chk "bidirectional connect" nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$SUB" -q "$HOST2" --dhchap-secret="$WRONG" --dhchap-ctrl-secret="$CKEY"
    nvme disconnect -n "$SUB" > /dev/null 2>&1
elif [ "$HAVE_AUTH" = 1 ]; then
    ctl_ok "host update to another key" nvmet.host.update 2 "{\"dhchap_key\": \"$(ctl nvmet.host.generate_key SHA-256 "$HOST2")\"}"
    ctl_ok "bidirectional key" nvmet.host.update 2 "{\"dhchap_ctrl_key\": \"$(ctl nvmet.host.generate_key SHA-256 "$SUB")\"}"
fi
dump auth
# nvmetcli's saveconfig.json of what the daemon renders equals that of the
# real tree read back (once the render matches)
i=0
until ctl cluster.status 2> /dev/null | grep -q '"matches":true' || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
EXP_D=$(ctl nvmet.global.export_nvmetcli '{"source": "desired"}' 2> "$WORK/err")
EXP_L=$(ctl nvmet.global.export_nvmetcli '{"source": "live"}' 2>> "$WORK/err")
if [ -n "$EXP_D" ] && [ "$EXP_D" = "$EXP_L" ] && printf '%s' "$EXP_D" | grep -q "\"nqn\":\"$SUB\""; then
    ok "nvmetcli export of the configuration equals the real tree's"
else
    bad "nvmetcli export: desired $EXP_D / live $EXP_L / $(cat "$WORK/err")"
fi

# --- update rules against the live kernel -------------------------------------
ctl_err "port change while linked needs disable first" \
    "[EINVAL] nvmet_port_update.addr_trsvcid: Cannot change addr_trsvcid on an active port.  Disable first to allow change." \
    nvmet.port.update 1 '{"addr_trsvcid": 4421}'
chk "the port still listens on 4420" [ "$(cat "$CFS/nvmet/ports/1/addr_trsvcid")" = 4420 ]
ctl_ok "port disable" nvmet.port.update 1 '{"enabled": false}'
chk "a disabled port has no links" [ -z "$(ls "$CFS/nvmet/ports/1/subsystems")" ]
ctl_ok "port move" nvmet.port.update 1 '{"addr_trsvcid": 4421}'
ctl_ok "port enable" nvmet.port.update 1 '{"enabled": true}'
if guest; then
    chk "connect on the new port" nvme connect -t tcp -a 127.0.0.1 -s 4421 -n "$SUB" -q "$HOST"
    D1=$(find_dev "$SUB" 1)
    ctl_ok "namespace disable" nvmet.namespace.update 1 '{"enabled": false}'
    if dd if="$D1" of=/dev/null bs=4096 count=1 iflag=direct 2> /dev/null; then
        bad "I/O fails on a disabled namespace"; else ok "I/O fails on a disabled namespace"; fi
    ctl_ok "namespace enable" nvmet.namespace.update 1 '{"enabled": true}'
    j=0; okio=0
    while [ $j -lt 50 ]; do
        D1=$(find_dev "$SUB" 1 2>/dev/null) && dd if="$D1" of=/dev/null bs=4096 count=1 iflag=direct 2> /dev/null && { okio=1; break; }
        sleep 0.2; j=$((j + 1))
    done
    chk "I/O works again after enable" [ $okio = 1 ]
    nvme disconnect -n "$SUB" > /dev/null 2>&1
else
    ctl_ok "namespace disable" nvmet.namespace.update 1 '{"enabled": false}'
    ctl_ok "namespace enable" nvmet.namespace.update 1 '{"enabled": true}'
fi
ctl_ok "subsys2" nvmet.subsys.create "{\"name\": \"$SUB2\", \"serial\": \"FIRST\", \"allow_any_host\": true}"
ctl_ok "subsys2 namespace" nvmet.namespace.create "{\"subsys\": 2, \"device\": \"/tmp/nvmet/two.img\", \"filesize\": 16777216, \"device_uuid\": \"0f01fb42-9f7f-4856-b0b3-51e60b8de305\", \"device_nguid\": \"0f01fb42-9f7f-4856-b0b3-51e60b8de306\"}"
ctl_ok "serial update before any connect" nvmet.subsys.update 2 '{"serial": "SECOND"}'
ctl_ok "subsys2 link" nvmet.port_subsys.create '{"port": 1, "subsys": 2}'
if guest; then
    chk "connect subsys2" nvme connect -t tcp -a 127.0.0.1 -s 4421 -n "$SUB2" -q "$HOST"
    D=$(find_dev "$SUB2" 1) && C=$(ctrl_of "$D")
    chk "the updated serial shows in id-ctrl" sh -c "nvme id-ctrl $C | grep -q '^sn *: SECOND'"
    nvme disconnect -n "$SUB2" > /dev/null 2>&1
fi
ctl_err "identity change of a linked subsystem needs disable first" \
    "[EINVAL] nvmet_subsys_update.serial: Cannot change serial on an active subsystem.  Disable first to allow change." \
    nvmet.subsys.update 2 '{"serial": "THIRD"}'
dump rules

# --- drift: hand-made changes are repaired by the sweep --------------------------
mkdir "$CFS/nvmet/subsystems/nqn.2024-01.com.example:handmade"
echo 0 > "$CFS/nvmet/subsystems/$SUB2/attr_allow_any_host"
i=0
until [ ! -d "$CFS/nvmet/subsystems/nqn.2024-01.com.example:handmade" ] &&
    [ "$(cat "$CFS/nvmet/subsystems/$SUB2/attr_allow_any_host")" = 1 ] || [ $i -ge 100 ]; do
    sleep 0.1; i=$((i + 1))
done
chk "sweep removed the hand-made subsystem" [ ! -d "$CFS/nvmet/subsystems/nqn.2024-01.com.example:handmade" ]
chk "sweep restored the changed attribute" [ "$(cat "$CFS/nvmet/subsystems/$SUB2/attr_allow_any_host")" = 1 ]
dump drift

# --- teardown through the API ---------------------------------------------------
for p in 1 2; do ctl nvmet.port.delete $p '{"force": true}' > /dev/null 2>&1; done
ctl_ok "subsys delete (force)" nvmet.subsys.delete 1 '{"force": true}'
ctl_ok "subsys2 delete (force)" nvmet.subsys.delete 2 '{"force": true}'
ctl_ok "host delete" nvmet.host.delete 1
ctl_ok "host2 delete" nvmet.host.delete 2
chk "configfs nvmet is empty" [ -z "$(ls "$CFS/nvmet/subsystems" "$CFS/nvmet/ports" "$CFS/nvmet/hosts" 2>&1 | grep -v ':$' | grep -v '^$')" ]
dump teardown
kill "$DPID"
wait "$DPID"
chk "nvmetd stopped cleanly" [ $? = 0 ]
if guest; then
    rmmod nvme_loop 2> /dev/null
    rmmod nvme_tcp nvme_fabrics 2> /dev/null
    rmmod nvmet_tcp 2> /dev/null
    chk "rmmod nvmet" rmmod nvmet
fi
echo "== DUMP BEGIN"
cat "$DUMP"
echo "== DUMP END"
echo "== nvmetd log"
cat "$WORK/nvmetd.log"
if [ $fails -eq 0 ]; then echo "RESULT: PASS"; exit 0; fi
echo "RESULT: FAIL ($fails)"
exit 1
