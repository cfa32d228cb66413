#!/bin/sh
# /payload/run.sh of an end-to-end guest (busybox sh): loads the NIC and
# disk drivers, sets the address from the kernel command line
# (mvm.name=, mvm.ip=), mounts the disk whose serial is "nvmetdata" at
# /var/lib/nvmet, then serves the command channel on the second UART:
# "ID BASE64" lines in, the command's output and "@@END ID RC" out.
NAME=guest
IP=
for a in $(cat /proc/cmdline); do
    case "$a" in
    mvm.name=*) NAME=${a#*=} ;;
    mvm.ip=*) IP=${a#*=} ;;
    esac
done
while read -r m; do
    insmod "/payload/mods/$m" 2> /dev/null || echo "agent: insmod $m failed"
done < /payload/mods/order
hostname "$NAME"
i=0
until [ -e /sys/class/net/eth0 ] || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
[ -n "$IP" ] && ip addr add "$IP/24" dev eth0
mkdir -p /var/lib/nvmet /run/nvmet-ha /etc/nvme
for s in /sys/block/vd*; do
    [ "$(cat "$s/serial" 2> /dev/null)" = nvmetdata ] && mount -t ext4 "/dev/${s##*/}" /var/lib/nvmet
done
for f in api.key raft.psk; do
    cp "/payload/$f" "/run/nvmet-ha/$f" 2> /dev/null && chmod 600 "/run/nvmet-ha/$f"
done

dmesg -n 6 # nvme and nvmet info lines on the console, with kernel time stamps
stty -F /dev/ttyS1 raw -echo
echo "@@READY $NAME" > /dev/ttyS1
while IFS=' ' read -r id b64; do
    [ -n "$id" ] || continue
    cmd=$(echo "$b64" | base64 -d)
    (eval "$cmd") < /dev/null > /tmp/agent.out 2>&1
    rc=$?
    { cat /tmp/agent.out; echo "@@END $id $rc"; } > /dev/ttyS1
done < /dev/ttyS1
