#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Boots a Linux VM whose SCSI controller lives in mpqemu-remote: Debian
# sid's QEMU (>= 10.1, from the guest kit, under TCG) attaches to the remote
# over vfio-user; the guest (Debian's kernel, sym53c8xx, busybox) finds the
# disk, writes 8 MiB of random data at 16 MiB with O_DIRECT, reads it back
# and powers off.  The host then finds the same data in the image.
#
#   scripts/run-vm.sh [DISK.img]     (default: a fresh 128 MiB scratch image)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
GUEST_DIR=$top/tests/guest
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$top/build/mpqemu-remote}
. "$GUEST_DIR/lib.sh"

echo "== guest kit: Debian sid's QEMU and a test guest, cached in ${MPQEMU_KIT:-/var/tmp/mpqemu-kit}"
guest_kit || { echo "run-vm: the guest kit does not build" >&2; exit 1; }
guest_workdir
if [ $# -ge 1 ]; then
    ln -s "$(realpath "$1")" "$W/disk.img"
else
    truncate -s 128M "$W/disk.img"
fi
sectors=$(( $(stat -L -c %s "$W/disk.img") / 512 ))

echo "== mpqemu-remote: lsi53c895a with a disk, served over vfio-user on $W/lsi0.sock"
start_remote "$W/remote.log" -device lsi53c895a,id=lsi0 \
    -drive id=d0,file="$W/disk.img",format=raw \
    -device scsi-hd,id=hd0,drive=d0,bus=lsi0.0,scsi-id=0 \
    -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$W/lsi0.sock"
remote=$!
wait_socket "$W/lsi0.sock"

echo "== QEMU: -device vfio-user-pci,socket=$IW/lsi0.sock (TCG, 512 MiB shared memfd RAM)"
sid_qemu 600 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" \
    -append "console=ttyS0 mpq.test=disks mpq.raw=$sectors" \
    -device "$(vfio_user_dev "$IW/lsi0.sock")" || true
grep -a -e '^MPQ' -e 'sym0' -e 'sd 0:' "$W/serial.log" | tr -d '\r' | sed 's/^/guest: /'
stop_remote "$remote" && echo "== remote exited with status 0"
sed 's/^/remote: /' "$W/remote.log"
pattern=$(mpq_line "$W/serial.log" raw "$sectors" pattern)
host=$(dd if="$W/disk.img" bs=1M skip=16 count=8 2>/dev/null | md5sum | cut -d' ' -f1)
if [ -n "$pattern" ] && [ "$pattern" = "$host" ]; then
    echo "== the host reads at 16 MiB of the image what the guest wrote: $host"
else
    echo "== MISMATCH: guest wrote $pattern, the image holds $host" >&2
    exit 1
fi
