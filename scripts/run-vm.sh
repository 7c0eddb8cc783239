#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Boots a Linux VM whose SCSI controller lives in mpqemu-remote, through
# mpqemu-launch: Debian sid's QEMU (>= 10.1, from the guest kit, under TCG)
# attaches to the remote over vfio-user; the guest (Debian's kernel,
# sym53c8xx, busybox) finds the disk, writes 8 MiB of random data at 16 MiB
# with O_DIRECT, reads it back and powers off.  The host then finds the same
# data in the image (raw or qcow2).
#
#   scripts/run-vm.sh [DISK]     (default: a fresh 128 MiB scratch image)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
GUEST_DIR=$top/tests/guest
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$top/build/mpqemu-remote}
MPQEMU_LAUNCH=${MPQEMU_LAUNCH:-$top/build/mpqemu-launch}
. "$GUEST_DIR/lib.sh"

echo "== guest kit: Debian sid's QEMU and a test guest, cached in ${MPQEMU_KIT:-/var/tmp/mpqemu-kit}"
guest_kit || { echo "run-vm: the guest kit does not build" >&2; exit 1; }
guest_workdir
if [ $# -ge 1 ]; then
    ln -s "$(realpath "$1")" "$W/disk"
    sectors=$(qemu-img info --output=json "$W/disk" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
    sectors=$((sectors / 512))
else
    truncate -s 128M "$W/disk"
    sectors=262144
fi

cat >"$W/vm.json" <<EOF
{
  "qemu": ["$GUEST_DIR/sid-qemu"], "qemu-root": "$QEMU_ROOT", "remote": "$MPQEMU_REMOTE",
  "accel": "tcg", "memory": "512M", "kernel": "$W/vmlinuz", "initrd": "$W/initrd",
  "append": "console=ttyS0 mpq.test=disks mpq.raw=$sectors",
  "qemu-args": ["-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio"],
  "log-dir": "$W/logs",
  "remotes": [
    {"name": "remote0",
     "drives": [{"id": "d0", "file": "$W/disk"}],
     "devices": [{"driver": "lsi53c895a", "id": "lsi0"},
                 {"driver": "scsi-hd", "id": "hd0", "drive": "d0", "bus": "lsi0.0", "scsi-id": 0}],
     "args": ["-qmp", "unix:$W/remote0.qmp,server,nowait"]}
  ]
}
EOF
echo "== mpqemu-launch $W/vm.json runs:"
"$MPQEMU_LAUNCH" --dry-run "$W/vm.json" | sed 's/^/   /'
echo "== the VM (TCG, 512 MiB shared memfd RAM); its console goes to $W/serial.log"
"$MPQEMU_LAUNCH" "$W/vm.json" >"$W/serial.log" &
launcher=$!
if wait_socket "$W/remote0.qmp" && command -v socat >/dev/null; then
    echo "== the remote's QMP monitor, asked with socat: query-block"
    printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"query-block"}' |
        socat -t 1 - UNIX-CONNECT:"$W/remote0.qmp" | tail -1 | cut -c1-240 | sed 's/^/   /'
fi
status=0
wait $launcher || status=$?
echo "== mpqemu-launch exited with status $status (0: the guest powered off, everything stopped)"
grep -a -e '^MPQ' -e 'sym0' -e 'sd 0:' "$W/serial.log" | tr -d '\r' | sed 's/^/guest: /'
pattern=$(mpq_line "$W/serial.log" raw "$sectors" pattern)
qemu-img convert -O raw "$W/disk" "$W/disk.raw"
host=$(dd if="$W/disk.raw" bs=1M skip=16 count=8 2>/dev/null | md5sum | cut -d' ' -f1)
if [ "$status" -eq 0 ] && [ -n "$pattern" ] && [ "$pattern" = "$host" ]; then
    echo "== the host reads at 16 MiB of the image what the guest wrote: $host"
else
    echo "== MISMATCH: guest wrote $pattern, the image holds $host" >&2
    exit 1
fi
