#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A fresh Debian machine to a running remote device: installs the
# dependencies, builds mpqemu, and runs the main job: a remote device
# process probed over QEMU's multi-process protocol, next to QEMU's own
# remote process (x-remote) probed the same way.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
ninja -C build

echo "== mpqemu-remote serving the test device, probed as QEMU's proxy would"
./build/mpqemu-probe -- ./build/mpqemu-remote '{fd}' -device mpqemu-testdev,id=t0

echo "== QEMU's own remote process serving lsi53c895a, probed the same way"
./build/mpqemu-probe -- qemu-system-x86_64 -machine x-remote -nodefaults -display none \
    -device lsi53c895a,id=lsi0 -object x-remote-object,id=r0,devid=lsi0,fd='{fd}'
