#!/usr/bin/env bash
# Several qemu TCG guests on one virtual L2, each with a command channel.
# Sourced by e2e-test.sh; builds on tests/kernel/lib.sh (kernel download,
# base initramfs, kcopy_prog).
#
# The L2 is qemu's "-netdev socket,mcast=" hub bound to 127.0.0.1: frames
# never leave the host's loopback and no host bridge, tap or address is
# involved. Every guest's second UART is a qemu pipe chardev
# ($MW/NAME.ctl.in/.out); the guest agent (agent.sh) reads
# "ID BASE64-COMMAND" lines from it, runs them and answers with the output
# and "@@END ID RC".
set -euo pipefail
MHERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
source "$MHERE/../kernel/lib.sh"

declare -A MPID MREADER MSEQ
MW=${MW:-}
MCAST=""

mlog() { printf '%s e2e: %s\n' "$(date +%T.%3N)" "$*" >&2; }

# e2e_modules KDIR -> KDIR/e2e-mods.cpio: the NIC and disk drivers the base
# initramfs leaves out (virtio_net, virtio_blk and their dependencies) under
# /payload/mods with a load order. Downloads the kernel package once.
e2e_modules() {
    local kdir=$1 out=$1/e2e-mods.cpio pkg w kver m f b
    [ -s "$out" ] && { echo "$out"; return 0; }
    pkg=$(basename "$kdir")
    w=$(mktemp -d)
    mkdir -p "$w/deb" "$w/cpio/payload/mods"
    chmod 777 "$w/deb"
    (cd "$w/deb" && apt-get download -qq "$pkg" > /dev/null 2>&1) ||
        { klog "cannot download $pkg"; rm -rf "$w"; return 1; }
    dpkg-deb -x "$w"/deb/*.deb "$w/root"
    kver=$(ls "$w/root/lib/modules")
    depmod -b "$w/root" "$kver"
    : > "$w/cpio/payload/mods/order"
    for m in virtio_net virtio_blk; do
        modprobe -d "$w/root" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}' |
            while read -r f; do
                b=$(basename "$f"); b=${b%.xz}; b=${b%.zst}
                grep -qx "$b" "$w/cpio/payload/mods/order" && continue
                case "$f" in *.xz) xz -dc "$f" ;; *.zst) zstd -dc "$f" ;; *) cat "$f" ;; esac \
                    > "$w/cpio/payload/mods/$b"
                echo "$b" >> "$w/cpio/payload/mods/order"
            done
    done
    (cd "$w/cpio" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$w"
    echo "$out"
}

# mvm_initrd KDIR BUILD OUT FILE...: base initramfs + modules + the
# project's binaries, the agent as /payload/run.sh and the given files
# under /payload.
mvm_initrd() {
    local kdir=$1 build=$2 out=$3 mods w
    shift 3
    mods=$(e2e_modules "$kdir")
    w=$(mktemp -d)
    mkdir -p "$w/payload"
    kcopy_prog "$build/cmd/nvmetd" "$w" /usr/sbin
    kcopy_prog "$build/cmd/nvmetctl" "$w" /usr/sbin
    kcopy_prog "$build/tests/e2e/nvmet-e2e-io" "$w" /usr/sbin
    cp "$MHERE/agent.sh" "$w/payload/run.sh"
    for f in "$@"; do cp "$f" "$w/payload/"; done
    chmod +x "$w"/payload/*.sh
    (cd "$w" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) > "$w.cpio"
    cat "$kdir/base.cpio.gz" "$mods" "$w.cpio" > "$out"
    rm -rf "$w" "$w.cpio"
}

# mvm_init WORKDIR: a fresh hub (random port) for this run.
mvm_init() {
    MW=$1
    mkdir -p "$MW"
    MCAST="230.0.$((RANDOM % 200 + 1)).$((RANDOM % 200 + 1)):$((30000 + RANDOM % 20000))"
}

# mvm_launch NAME IP KDIR INITRD [qemu args...]: boots a guest in the
# background (several can boot at once); mvm_ready waits for its agent.
mvm_launch() {
    local name=$1 ip=$2 kdir=$3 initrd=$4 mac
    shift 4
    mac=$(printf '52:54:00:00:00:%02x' "${ip##*.}")
    rm -f "$MW/$name.ctl.in" "$MW/$name.ctl.out"
    mkfifo "$MW/$name.ctl.in" "$MW/$name.ctl.out"
    : > "$MW/$name.ctl.log"
    qemu-system-x86_64 -accel tcg -cpu max -M pc -m "${MMEM:-768M}" -smp 1 \
        -nodefaults -no-user-config -display none -monitor none -no-reboot \
        -chardev "file,id=con,path=$MW/$name.console,append=on" -serial chardev:con \
        -serial "pipe:$MW/$name.ctl" \
        -kernel "$kdir/vmlinux" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 loglevel=4 quiet mvm.name=$name mvm.ip=$ip" \
        -netdev "socket,id=n0,mcast=$MCAST,localaddr=127.0.0.1" \
        -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=" \
        "$@" < /dev/null >> "$MW/$name.qemu.log" 2>&1 &
    MPID[$name]=$!
    cat "$MW/$name.ctl.out" >> "$MW/$name.ctl.log" &
    MREADER[$name]=$!
    MSEQ[$name]=0
}

# mvm_ready NAME: waits up to 120 s for the guest's agent.
mvm_ready() {
    local name=$1 i
    for ((i = 0; i < 1200; i++)); do
        grep -aq "@@READY $name" "$MW/$name.ctl.log" && return 0
        mvm_alive "$name" || break
        sleep 0.1
    done
    mlog "$name did not come up (console: $MW/$name.console)"
    tail -n 20 "$MW/$name.console" >&2 || true
    return 1
}

# mvm_kill NAME: power loss (SIGKILL of its qemu).
mvm_kill() {
    local name=$1
    [ -n "${MPID[$name]:-}" ] || return 0
    kill -9 "${MPID[$name]}" 2> /dev/null || true
    wait "${MPID[$name]}" 2> /dev/null || true
    kill "${MREADER[$name]}" 2> /dev/null || true
    wait "${MREADER[$name]}" 2> /dev/null || true
    MPID[$name]=""
}

mvm_alive() { [ -n "${MPID[$1]:-}" ] && kill -0 "${MPID[$1]}" 2> /dev/null; }

mvm_stop_all() {
    local n
    for n in "${!MPID[@]}"; do mvm_kill "$n"; done
}

# gx NAME COMMAND [TIMEOUT_S]: runs COMMAND (sh) in the guest, prints its
# output, returns its exit code (124 on timeout, 125 if the guest is gone).
gx() {
    local name=$1 cmd=$2 t=${3:-30} id off i line rc
    mvm_alive "$name" || { echo "gx: $name is not running" >&2; return 125; }
    MSEQ[$name]=$((MSEQ[$name] + 1))
    id=${MSEQ[$name]}
    off=$(stat -c %s "$MW/$name.ctl.log")
    printf '%s %s\n' "$id" "$(printf '%s' "$cmd" | base64 -w0)" > "$MW/$name.ctl.in"
    for ((i = 0; i < t * 50; i++)); do
        line=$(tail -c +"$((off + 1))" "$MW/$name.ctl.log" | tr -d '\r' | grep -a "^@@END $id " || true)
        if [ -n "$line" ]; then
            rc=${line##* }
            tail -c +"$((off + 1))" "$MW/$name.ctl.log" | tr -d '\r' |
                awk -v id="$id" '$1=="@@END" && $2==id {exit} {print}'
            return "$rc"
        fi
        mvm_alive "$name" || return 125
        sleep 0.02
    done
    echo "gx: $name: timeout after ${t}s: $cmd" >&2
    return 124
}
