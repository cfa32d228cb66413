#!/usr/bin/env bash
# kernel-test.sh BUILD_DIR PROFILE: the scenario on Debian's real kernel in
# qemu (PROFILE 6.12 = linux-image-6.12-cloud-amd64, 6.1 =
# linux-image-cloud-amd64), then the same API calls on the emulated
# configfs on this host, and a comparison of the two trees at every step.
# Exit 0 pass, 1 fail, 77 skipped (qemu cannot run here).
set -uo pipefail
HERE=$(dirname "$(readlink -f "$0")")
source "$HERE/lib.sh"
set +e
BUILD=$(readlink -f "$1")
PROFILE=$2
case "$PROFILE" in
6.12) META=linux-image-6.12-cloud-amd64 ;;
6.1) META=linux-image-cloud-amd64 ;;
*) echo "unknown profile $PROFILE"; exit 2 ;;
esac
CACHE=${NVMET_KERNEL_CACHE:-$BUILD/kernel-cache}
OUT=$BUILD/kernel-$PROFILE
rm -rf "$OUT"; mkdir -p "$OUT" "$CACHE"

if ! khost_tools || ! command -v qemu-system-x86_64 > /dev/null; then
    echo "SKIP: qemu-system-x86_64 is not available and could not be installed"; exit 77
fi
if ! KDIR=$(kfetch "$CACHE" "$META"); then
    echo "SKIP: cannot download $META from Debian's archive"; exit 77
fi
cp "$HERE/run-guest.sh" "$OUT/run.sh"
kpayload "$OUT/payload.cpio" "$BUILD" "$OUT/run.sh" "$HERE/scenario.sh" || { echo "FAIL: payload"; exit 1; }

echo "== guest: $(cat "$KDIR/kver")"
START=$(date +%s)
RC=$(kboot "$KDIR" "$OUT/payload.cpio" "$OUT/console.log")
echo "guest finished in $(( $(date +%s) - START )) s with exit code $RC (console: $OUT/console.log)"
grep -a -E '^(TEST|RESULT|INIT)' "$OUT/console.log"
sed -n '/^== DUMP BEGIN/,/^== DUMP END/p' "$OUT/console.log" | sed '1d;$d' | tr -d '\r' > "$OUT/guest-trees.txt"

echo "== host: the same calls on the emulated configfs (profile $PROFILE)"
H=$(mktemp -d /tmp/nvmet-fidelity-XXXXXX)
mkdir -p "$H/cfs"
HAVE_LOOP=0
tr -d '\r' < "$OUT/console.log" | grep -aq '^TEST PASS: loop port$' && HAVE_LOOP=1
MODE=host WORK="$H/work" CFS="$H/cfs" DEVROOT="$H/root" EMULATE=$PROFILE HAVE_LOOP=$HAVE_LOOP \
    NVMETD="$BUILD/cmd/nvmetd" NVMETCTL="$BUILD/cmd/nvmetctl" DUMP="$OUT/host-trees.txt" \
    RAFT="127.0.0.1:$(( 20000 + RANDOM % 20000 ))" sh "$HERE/scenario.sh" > "$OUT/host.log" 2>&1
HRC=$?
grep -E '^(TEST FAIL|RESULT)' "$OUT/host.log"
rm -rf "$H"

FAIL=0
[ "$RC" = 0 ] || { echo "FAIL: the guest scenario failed (exit $RC)"; FAIL=1; }
[ "$HRC" = 0 ] || { echo "FAIL: the host scenario failed (see $OUT/host.log)"; FAIL=1; }
if [ ! -s "$OUT/guest-trees.txt" ]; then
    echo "FAIL: no tree dumps from the guest"; FAIL=1
elif ! diff -u "$OUT/guest-trees.txt" "$OUT/host-trees.txt" > "$OUT/fidelity.diff"; then
    echo "FAIL: the emulated tree differs from the real kernel's (guest = -, emulation = +):"
    cat "$OUT/fidelity.diff"
    FAIL=1
else
    echo "fidelity: the emulated tree equals the real kernel's at every step ($(grep -c '^== TREE' "$OUT/guest-trees.txt") steps)"
fi
[ $FAIL = 0 ] && echo "kernel $PROFILE: PASS"
exit $FAIL
