#!/bin/sh
# PID 1 of the VM lane's guest (built into the cached image as /vmtest-init; scripts/vmtest).
# It mounts what the lab needs, then runs the per-run script from the second disk, which carries
# this commit's tree: the image never needs rebuilding when only the project changes.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mnt() { mountpoint -q "$3" || mount -t "$1" "$2" "$3"; }
mnt proc proc /proc
mnt sysfs sys /sys
mnt devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mnt devpts devpts /dev/pts
mnt tmpfs shm /dev/shm
mnt tmpfs run /run
mnt tmpfs tmp /tmp
mnt cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /mnt/run
echo VMTEST-BOOTED
if mount -o ro /dev/vdb /mnt/run; then
  /bin/sh /mnt/run/guest-run.sh
else
  echo "vmtest-init: cannot mount the run disk /dev/vdb"
  echo "VMTEST-EXIT=3"
fi
# Power off however the run script ended; a PID 1 that exited would panic the kernel instead.
sync
echo o >/proc/sysrq-trigger
sleep 10
