#!/bin/busybox sh
# /init of the test VM: mount, load the nvme modules, run /payload/run.sh,
# report its exit code on the second UART, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
while read -r m; do
    [ -n "$m" ] && { insmod "/lib/modules/$m" 2>/dev/null || echo "INIT: insmod $m failed"; }
done < /lib/modules/load.order
mount -t configfs none /sys/kernel/config 2>/dev/null || echo "INIT: no configfs"
mount -t debugfs none /sys/kernel/debug 2>/dev/null
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "INIT: kernel $(uname -r), modules absent: $(cat /lib/modules/absent 2>/dev/null | tr '\n' ' ')"
rc=1
if [ -x /payload/run.sh ]; then
    /payload/run.sh; rc=$?
else
    echo "INIT: no /payload/run.sh"
fi
echo "EXIT=$rc" > /dev/ttyS1
sync
poweroff -f
