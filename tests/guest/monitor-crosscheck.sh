#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# mpqemu-remote's QMP and HMP against Debian sid's QEMU (the guest kit's),
# the same requests to both (tests/guest/monitor-crosscheck.py): QEMU runs
# stopped (-S) with the devices the remote emulates, an LSI53C895A with a
# qcow2 scsi-hd and a raw scsi-cd, on copies of the same images.
. "$(dirname "$0")/../functional/tap.sh"
. "$(dirname "$0")/lib.sh"
: "${MPQEMU_REMOTE:?}"

if ! guest_kit; then
    tap_result 1 "guest kit (Debian sid's QEMU) builds"
    tap_done
    exit 1
fi
guest_workdir
mkdir "$W/media"
qemu-img create -q -f qcow2 "$W/disk.qcow2" 64M
head -c 2M /dev/zero >"$W/cd1.iso"
head -c 4M /dev/zero >"$W/media/cd2.iso"
mkdir "$W/ours" && cp "$W/cd1.iso" "$W/ours/" && cp "$W/disk.qcow2" "$W/ours/" &&
    mkdir "$W/ours/media" && cp "$W/media/cd2.iso" "$W/ours/media/"

# devices DIR: both processes' drives and devices.
devices() {
    echo -device lsi53c895a,id=lsi0 \
        -drive id=d0,file="$1/disk.qcow2" -drive id=cd,file="$1/cd1.iso",format=raw,readonly=on \
        -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0 \
        -device scsi-cd,id=cd0,drive=cd,bus=lsi0.0,scsi-id=2 -name guest=vm1
}

# shellcheck disable=SC2046
MPQEMU_KIT=$KIT timeout 300 "$GUEST_DIR/sid-qemu" -machine pc -accel tcg -S -nodefaults \
    -display none $(devices "$IW" | sed 's/-drive id=/-drive if=none,id=/g') \
    -qmp unix:"$IW/qemu.qmp",server=on,wait=off >"$W/qemu.log" 2>&1 &
REMOTE_PIDS="$REMOTE_PIDS $!"
# shellcheck disable=SC2046
start_remote "$W/remote.log" $(devices "$W/ours") -qmp unix:"$W/ours.qmp",server,nowait \
    -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$W/lsi0.sock" \
    -sandbox on,allow-dir="$W/ours/media"
wait_socket "$W/qemu.qmp" && wait_socket "$W/ours.qmp"
tap_result $? "QEMU and mpqemu-remote listen on their QMP sockets"

python3 "$GUEST_DIR/monitor-crosscheck.py" "$W/qemu.qmp" "$W/ours.qmp" "$IW" "$W/ours" \
    >"$W/check.out" 2>&1
status=$?
while IFS= read -r line; do
    case $line in
        "ok - "*) tap_result 0 "${line#ok - }" ;;
        "not ok - "*) tap_result 1 "${line#not ok - }" ;;
        *) printf '%s\n' "$line" ;;
    esac
done <"$W/check.out"
[ $status -le 1 ]
tap_result $? "the cross-check ran to its end"
tap_done
