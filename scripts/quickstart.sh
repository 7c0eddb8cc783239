#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A fresh Debian machine to a running VM whose SCSI controller lives in a
# remote process: installs the dependencies, builds mpqemu, boots a Linux
# guest under QEMU with its LSI53C895A in mpqemu-remote (vfio-user), then
# measures the controller over the multi-process protocol against QEMU's
# own remote process (x-remote).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
ninja -C build

./scripts/run-vm.sh

lsi="-device lsi53c895a,id=lsi0 -drive id=d0,file={image},format=raw"
lsi="$lsi -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0"

echo "== mpqemu-remote serving an LSI53C895A with a disk, probed as QEMU's proxy would"
truncate -s 64M /tmp/mpqemu-quickstart.img
# shellcheck disable=SC2086
./build/mpqemu-probe -- ./build/mpqemu-remote '{fd}' \
    $(echo "$lsi" | sed 's|{image}|/tmp/mpqemu-quickstart.img|')
rm -f /tmp/mpqemu-quickstart.img

echo "== SCSI I/O through the controller: QEMU's own remote (A) against mpqemu-remote (B)"
# shellcheck disable=SC2086
./build/mpqemu-bench --seconds 2 -- qemu-system-x86_64 -machine x-remote -nodefaults \
    -display none -device lsi53c895a,id=lsi0 -drive id=d0,file={image},format=raw,if=none \
    -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0 \
    -object x-remote-object,id=r0,devid=lsi0,fd='{fd}' \
    --vs ./build/mpqemu-remote '{fd}' $lsi
