#!/usr/bin/env bash
# Shared functions of the real-kernel harness: kernel download and base
# initramfs (cached per kernel package), the project payload appended as a
# second cpio, and booting a VM under qemu TCG. Sourced by the scripts here
# and meant for reuse by multi-VM tests (kvm_boot takes extra qemu args,
# e.g. -netdev socket NICs).
set -euo pipefail

KHERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")

klog() { echo "kernel-test: $*" >&2; }

# Install the host tools (only what is missing).
khost_tools() {
    local pkgs=(qemu-system-x86 busybox-static nvme-cli cpio kmod xz-utils zstd) missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
}

# kfetch CACHE META -> prints the kernel dir CACHE/<image package> holding
# vmlinux (PVH-bootable ELF), base.cpio.gz (busybox, nvme-cli, modules,
# /init) and kver. Reused when present.
kfetch() {
    local cache=$1 meta=$2 pkg dir
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$pkg" ] || { klog "cannot resolve $meta (apt-cache)"; return 1; }
    dir=$cache/$pkg
    if [ -s "$dir/vmlinux" ] && [ -s "$dir/base.cpio.gz" ]; then
        echo "$dir"; return 0
    fi
    mkdir -p "$dir/deb"
    chmod 777 "$dir/deb"
    (cd "$dir/deb" && apt-get download -qq "$pkg" >/dev/null 2>&1) ||
        { apt-get update -qq >/dev/null 2>&1; (cd "$dir/deb" && apt-get download -qq "$pkg" >/dev/null); } ||
        { klog "cannot download $pkg"; return 1; }
    rm -rf "$dir/root"
    dpkg-deb -x "$dir"/deb/"${pkg}"_*.deb "$dir/root"
    local kver
    kver=$(ls "$dir/root/lib/modules")
    depmod -b "$dir/root" "$kver"
    echo "$kver" > "$dir/kver"
    kextract_vmlinux "$dir/root/boot/vmlinuz-$kver" "$dir/vmlinux"
    kbase_initramfs "$dir/root" "$dir/base.cpio.gz"
    rm -rf "$dir/deb" "$dir/root"
    echo "$dir"
}

# bzImage -> uncompressed ELF (boots faster under TCG through PVH).
kextract_vmlinux() {
    local in=$1 out=$2 magic dec off
    for pair in '\x28\xb5\x2f\xfd:zstd -dc' '\xfd7zXZ\x00:xz -dc' '\x02\x21\x4c\x18:lz4 -dc' '\x1f\x8b\x08:gzip -dc'; do
        magic=${pair%%:*}; dec=${pair#*:}
        for off in $(LC_ALL=C grep -obUaP "$magic" "$in" | cut -d: -f1); do
            tail -c +$((off + 1)) "$in" | $dec > "$out.tmp" 2>/dev/null || true
            if [ "$(head -c4 "$out.tmp" 2>/dev/null)" = $'\x7fELF' ]; then
                mv "$out.tmp" "$out"; return 0
            fi
        done
    done
    rm -f "$out.tmp"
    klog "no ELF kernel inside $in; booting the bzImage"
    cp "$in" "$out"
}

# Copy a dynamically linked program and every library it needs.
kcopy_prog() {
    local prog=$1 dest=$2 into=${3:-/usr/sbin}
    mkdir -p "$dest$into"
    cp "$prog" "$dest$into/"
    for l in $(ldd "$prog" | grep -o '/[^ ]*'); do
        mkdir -p "$dest$(dirname "$l")"
        cp -Ln "$l" "$dest$l" 2>/dev/null || true
    done
}

kbase_initramfs() {
    local kroot=$1 out=$2 kver w m f b
    kver=$(ls "$kroot/lib/modules")
    w=$(mktemp -d)
    mkdir -p "$w"/{bin,sbin,usr/bin,usr/sbin,lib/modules,lib64,etc/nvme,proc,sys,dev,tmp,run,payload}
    cp /bin/busybox "$w/bin/busybox"
    kcopy_prog /usr/sbin/nvme "$w" /usr/sbin
    : > "$w/lib/modules/load.order"
    for m in configfs nvmet nvmet-tcp nvme-fabrics nvme-tcp nvme-loop loop; do
        local deps
        if ! deps=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null); then
            echo "$m" >> "$w/lib/modules/absent"; continue
        fi
        echo "$deps" | awk '$1=="insmod"{print $2}' | while read -r f; do
            b=$(basename "$f"); b=${b%.xz}; b=${b%.zst}; b=${b%.gz}
            grep -qx "$b" "$w/lib/modules/load.order" && continue
            case "$f" in *.xz) xz -dc "$f" ;; *.zst) zstd -dc "$f" ;; *.gz) gzip -dc "$f" ;; *) cat "$f" ;; esac > "$w/lib/modules/$b"
            echo "$b" >> "$w/lib/modules/load.order"
        done
    done
    cp "$KHERE/guest-init.sh" "$w/init"
    chmod +x "$w/init"
    (cd "$w" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) > "$out"
    truncate -s %4 "$out" # a cpio appended later must start on a 4-byte boundary
    rm -rf "$w"
}

# kpayload OUT BUILD_DIR FILE... -> uncompressed cpio with /payload/: the
# project's binaries (+ libraries) and the given files (run.sh first).
kpayload() {
    local out=$1 build=$2 w
    shift 2
    w=$(mktemp -d)
    mkdir -p "$w/payload"
    kcopy_prog "$build/cmd/nvmetd" "$w" /usr/sbin
    kcopy_prog "$build/cmd/nvmetctl" "$w" /usr/sbin
    for f in "$@"; do cp "$f" "$w/payload/"; done
    chmod +x "$w"/payload/*.sh
    (cd "$w" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) > "$out"
    rm -rf "$w"
}

# kboot KDIR PAYLOAD LOG [qemu args...] -> the guest's exit code (from the
# second UART), 124 on timeout, 125 if the guest never reported.
kboot() {
    local kdir=$1 payload=$2 log=$3 initrd rcfile rc
    shift 3
    initrd=$(mktemp /tmp/nvmet-initrd-XXXXXX)
    rcfile=$(mktemp /tmp/nvmet-rc-XXXXXX)
    cat "$kdir/base.cpio.gz" "$payload" > "$initrd"
    set +e
    timeout --foreground -k 5 "${KTIMEOUT:-300}" qemu-system-x86_64 -accel tcg -cpu max -M pc \
        -m "${KMEM:-512M}" -smp 1 -nodefaults -no-user-config -display none -monitor none \
        -serial stdio -serial "file:$rcfile" -nic none -no-reboot \
        -kernel "$kdir/vmlinux" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 loglevel=3 quiet" "$@" < /dev/null > "$log" 2>&1
    rc=$?
    set -e
    rm -f "$initrd"
    if [ $rc -eq 124 ]; then klog "VM timed out"; rm -f "$rcfile"; return 124; fi
    rc=$(grep -ao 'EXIT=[0-9]*' "$rcfile" | tail -1 | cut -d= -f2)
    rm -f "$rcfile"
    echo "${rc:-125}"
}
