#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A real Linux guest (Debian's kernel, the sym53c8xx driver) under QEMU
# >= 10.1 with TCG, its two LSI53C895A controllers in one mpqemu-remote
# process over vfio-user: two disks and a CD on the first, two disks on the
# second, one of them on an NBD server (qemu-nbd on a unix socket).  The
# guest writes and reads raw patterns with O_DIRECT, builds an ext2 file
# system (on a qcow2 image) and rereads it after a remount, reads the CD;
# the host then checks the images: the pattern at its offset (in the NBD
# server's file too), qemu-img check, e2fsck, the files.
. "$(dirname "$0")/../functional/tap.sh"
. "$(dirname "$0")/lib.sh"
: "${MPQEMU_REMOTE:?}"

if ! guest_kit; then
    tap_result 1 "guest kit (Debian sid's QEMU, the guest kernel) builds"
    tap_done
    exit 1
fi
guest_workdir
RAW0=131072 FS=196608 CD=20480 RAW1=98304 NBD=114688   # sectors: each disk has its own size
truncate -s $((RAW0 * 512)) "$W/raw0.img"
qemu-img create -q -f qcow2 -o cluster_size=4k "$W/fs.qcow2" $((FS * 512))
truncate -s $((RAW1 * 512)) "$W/raw1.img"
head -c $((CD * 512)) /dev/urandom >"$W/cd.iso"
truncate -s $((NBD * 512)) "$W/nbd.img"
qemu-nbd --fork --persistent --pid-file="$W/qemu-nbd.pid" -k "$W/nbd.sock" -f raw "$W/nbd.img"
tap_result $? "qemu-nbd serves the NBD disk's image"
nbd_server=$(cat "$W/qemu-nbd.pid")
REMOTE_PIDS="$REMOTE_PIDS $nbd_server"

start_remote "$W/remote.log" \
    -device lsi53c895a,id=lsi0 -device lsi53c895a,id=lsi1 \
    -drive id=d0,file="$W/raw0.img",format=raw,cache=none \
    -drive id=d1,file="$W/fs.qcow2",format=qcow2 \
    -drive id=d2,file="$W/cd.iso",format=raw,readonly=on \
    -drive id=d3,file="$W/raw1.img",format=raw,cache=writethrough \
    -drive id=d4,file="nbd+unix:///?socket=$W/nbd.sock",format=raw \
    -device scsi-hd,id=hd0,drive=d0,bus=lsi0.0,scsi-id=0 \
    -device scsi-hd,id=hd1,drive=d1,bus=lsi0.0,scsi-id=1 \
    -device scsi-cd,id=cd0,drive=d2,bus=lsi0.0,scsi-id=2 \
    -device scsi-hd,id=hd2,drive=d3,bus=lsi1.0,scsi-id=3 \
    -device scsi-hd,id=hd3,drive=d4,bus=lsi1.0,scsi-id=4 \
    -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$W/lsi0.sock" \
    -object '{"qom-type":"x-vfio-user-server","id":"v1","device":"lsi1","socket":{"type":"unix","path":"'"$W/lsi1.sock"'"}}'
remote=$!
wait_socket "$W/lsi0.sock" && wait_socket "$W/lsi1.sock"
tap_result $? "the remote listens on both vfio-user sockets"

sid_qemu 600 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" \
    -append "console=ttyS0 quiet mpq.test=disks mpq.raw=$RAW0,$RAW1,$NBD mpq.fs=$FS mpq.cd=$CD" \
    -device "$(vfio_user_dev "$IW/lsi0.sock")" -device "$(vfio_user_dev "$IW/lsi1.sock")"
qemu_status=$?
tap_result $qemu_status "the guest boots, runs its workload and powers off (QEMU exit 0)"
grep -aq '^MPQ done' "$W/serial.log"
tap_result $? "the guest's workload ran to the end"
# Stopped before the host looks at the images: it writes back what it caches.
stop_remote $remote
tap_result $? "the remote exits 0 on SIGTERM after the guest is gone"
kill -TERM "$nbd_server"    # qemu-nbd flushes and exits
while kill -0 "$nbd_server" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' /proc/$nbd_server/stat; do
    sleep 0.05
done

disk() { grep -a "^MPQ disk .* sectors $1 " "$W/serial.log" | head -1 | tr -d '\r'; }
field() { printf '%s\n' "$1" | sed -n "s/.* $2 \([^ ]*\).*/\1/p"; }

d0=$(disk $RAW0) d1=$(disk $FS) cd=$(disk $CD) d2=$(disk $RAW1)
expect "disk 1 on controller 1 has the configured size" "$(field "$d0" sectors)" $RAW0
expect "disk 2 on controller 1 has the configured size" "$(field "$d1" sectors)" $FS
expect "the CD is read-only to the guest" "$(field "$cd" ro)" 1
expect "two disks and the CD share a SCSI host" \
    "$(field "$d0" host) $(field "$d1" host)" "$(field "$cd" host) $(field "$cd" host)"
h0=$(field "$d0" host) h1=$(field "$d2" host)
[ -n "$h1" ] && [ "$h1" != "$h0" ]
tap_result $? "the disk of the second controller is on another SCSI host ($h0, $h1)"
d3=$(disk $NBD)
expect "the NBD disk has the export's size, on the second controller" \
    "$(field "$d3" sectors) $(field "$d3" host)" "$NBD $h1"

for size in $RAW0 $RAW1 $NBD; do
    img=$W/raw0.img
    [ $size = $RAW1 ] && img=$W/raw1.img
    [ $size = $NBD ] && img=$W/nbd.img
    pattern=$(mpq_line "$W/serial.log" raw $size pattern)
    expect "raw $size: the O_DIRECT pattern reads back in the guest" \
        "$(mpq_line "$W/serial.log" raw $size readback)" "$pattern"
    expect "raw $size: the host sees the pattern at 16 MiB" \
        "$(dd if="$img" bs=1M skip=16 count=8 2>/dev/null | md5sum | cut -d' ' -f1)" "$pattern"
done

for f in a b c; do
    written=$(mpq_line "$W/serial.log" fs written $f)
    expect "fs: file $f reads back after a remount" \
        "$(mpq_line "$W/serial.log" fs reread $f)" "$written"
done
check_out=$(qemu-img check "$W/fs.qcow2" 2>&1)
check_status=$?
[ $check_status -ne 0 ] && printf '%s\n' "$check_out" | sed 's/^/# /'
tap_result $check_status "fs: qemu-img check finds the guest-written qcow2 image clean"
qemu-img convert -O raw "$W/fs.qcow2" "$W/fs.img"
fsck_out=$(e2fsck -fn "$W/fs.img" 2>&1)
fsck_status=$?
[ $fsck_status -ne 0 ] && printf '%s\n' "$fsck_out" | sed 's/^/# /'
tap_result $fsck_status "fs: e2fsck -fn on the host finds the file system clean"
for f in a b c; do
    expect "fs: the host reads file $f as the guest wrote it" \
        "$(debugfs -R "cat /$f" "$W/fs.img" 2>/dev/null | md5sum | cut -d' ' -f1)" \
        "$(mpq_line "$W/serial.log" fs written $f)"
done

expect "cd: the guest reads the image's first MiB" "$(mpq_line "$W/serial.log" cd sum)" \
    "$(head -c 1048576 "$W/cd.iso" | md5sum | cut -d' ' -f1)"
expect "cd: a write to the CD is refused" "$(mpq_line "$W/serial.log" cd write)" refused

if [ "$tap_failed" -ne 0 ]; then
    grep -av '^MPQ' "$W/serial.log" | tail -30 | sed 's/^/# guest: /'
    sed 's/^/# remote: /' "$W/remote.log"
fi
tap_done
