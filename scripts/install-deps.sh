#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs, from Debian's packages, what mpqemu needs to build, test and run.
# libnbd-dev: NBD disks; scdoc: the man pages; nbdkit and qemu-utils
# (qemu-nbd): the NBD servers of the tests; man-db renders the pages.
# debootstrap and the rest of the last line build the guest-test kit
# (tests/guest/kit.sh: Debian sid's QEMU, a busybox guest).
set -eu
packages="
    gcc meson ninja-build pkg-config python3
    libjson-c-dev libcmocka-dev liburing-dev zlib1g-dev libseccomp-dev libnbd-dev scdoc
    qemu-system-x86 qemu-utils socat iproute2 nbdkit man-db
    debootstrap cpio kmod xz-utils zstd e2fsprogs util-linux
"
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -q
# shellcheck disable=SC2086
as_root apt-get install -y -q --no-install-recommends $packages
