#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Builds what the guest tests need, cached outside the checkout:
#   $KIT/sid/                  Debian sid with QEMU >= 10.1 (vfio-user-pci), run by chroot
#   $KIT/guest-$KVER-$STAMP/vmlinuz  the kernel of Debian's linux-image-amd64
#   $KIT/guest-$KVER-$STAMP/initrd   busybox-static, the SCSI and ext4 modules,
#                                    tests/guest/init, mpq-io and mpq-ticker
#                                    (mpq-io.c, mpq-ticker.c, static)
# (STAMP: a hash of init, the C files and this script, so that checkouts with
# other versions of them each keep their own guest instead of rebuilding
# one another's)
# and prints "KIT=... QEMU_ROOT=... GUEST=..." for the caller to eval.
#
# KIT defaults to /var/tmp/mpqemu-kit.  Everything comes from Debian's
# packages at run time; nothing built here is committed.
set -eu

KIT=${MPQEMU_KIT:-/var/tmp/mpqemu-kit}
HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${MPQEMU_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The guest's modules, and what they need (found with modinfo -F depends);
# ext4 and sd_mod ask the crypto API for crc32c and crct10dif at run time.
MODULES="sym53c8xx scsi_transport_spi sd_mod sr_mod ext4 crc32c_generic crct10dif_generic"

log() { echo "kit: $*" >&2; }

mkdir -p "$KIT"
# One builder at a time: tests run in parallel.
exec 9>"$KIT/.lock"
flock 9

# --- QEMU from Debian sid -----------------------------------------------------
if [ ! -x "$KIT/sid/usr/bin/qemu-system-x86_64" ]; then
    log "installing Debian sid's qemu-system-x86 into $KIT/sid (about a minute)"
    rm -rf "$KIT/sid.tmp"
    debootstrap --variant=minbase --include=qemu-system-x86,python3-qemu-qmp \
        sid "$KIT/sid.tmp" "$MIRROR" >"$KIT/debootstrap.log" 2>&1 ||
        { tail -20 "$KIT/debootstrap.log" >&2; exit 1; }
    mv "$KIT/sid.tmp" "$KIT/sid"
fi

# --- the guest kernel and initramfs -------------------------------------------
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$KPKG" ] || { log "no linux-image-amd64 in the apt lists (apt-get update?)"; exit 1; }
KVER=${KPKG#linux-image-}
STAMP=$(cat "$HERE/init" "$HERE/mpq-io.c" "$HERE/mpq-ticker.c" "$0" | md5sum | cut -c1-12)
GUEST="$KIT/guest-$KVER-$STAMP"

if [ ! -f "$GUEST/initrd" ] || [ "$(cat "$GUEST/stamp" 2>/dev/null)" != "$STAMP" ]; then
    log "building the guest from $KPKG and busybox-static"
    WORK="$KIT/build.$$"
    rm -rf "$WORK"
    mkdir -p "$WORK/debs" "$WORK/kernel" "$WORK/root"
    (cd "$WORK/debs" && apt-get download "$KPKG" busybox-static >/dev/null 2>&1) ||
        { log "apt-get download $KPKG busybox-static failed"; exit 1; }
    dpkg-deb -x "$WORK"/debs/linux-image-*.deb "$WORK/kernel"
    dpkg-deb -x "$WORK"/debs/busybox-static_*.deb "$WORK/bb"
    MODDIR="$WORK/kernel/lib/modules/$KVER"

    # Modules in load order: dependencies before the modules that need them.
    ORDER="$WORK/order"
    : >"$ORDER"
    add_module() {
        local name file dep
        name=$(echo "$1" | tr - _)
        grep -qx "$name" "$ORDER" 2>/dev/null && return 0
        file=$(find "$MODDIR" -name "$name.ko*" -o -name "$(echo "$name" | tr _ -).ko*" | head -1)
        [ -n "$file" ] || { log "module $name is not in $KPKG (built in?)"; return 0; }
        for dep in $(modinfo -F depends "$file" | tr , ' '); do
            add_module "$dep"
        done
        grep -qx "$name" "$ORDER" || { echo "$name" >>"$ORDER"; echo "$file" >>"$ORDER.files"; }
    }
    for m in $MODULES; do add_module "$m"; done

    mkdir -p "$WORK/root/bin" "$WORK/root/lib/modules" "$WORK/root/dev" \
             "$WORK/root/proc" "$WORK/root/sys" "$WORK/root/mnt" "$WORK/root/tmp"
    cp "$WORK/bb/bin/busybox" "$WORK/root/bin/busybox"
    n=0
    while read -r file; do
        n=$((n + 1))
        dst="$WORK/root/lib/modules/$(printf %02d $n)-$(basename "$file" | sed 's/\.ko.*//').ko"
        case "$file" in
            *.xz) xz -dc "$file" >"$dst" ;;
            *.zst) zstd -qdc "$file" >"$dst" ;;
            *) cp "$file" "$dst" ;;
        esac
    done <"$ORDER.files"
    # e2fsprogs' mke2fs from this host with its libraries, for ext4 (busybox's makes ext2).
    if command -v mke2fs >/dev/null && command -v ldd >/dev/null; then
        mkdir -p "$WORK/root/usr/lib/mpq" "$WORK/root/etc"
        cp "$(command -v mke2fs)" "$WORK/root/usr/lib/mpq/mke2fs"
        for lib in $(ldd "$(command -v mke2fs)" | grep -o '/[^ ]*'); do
            mkdir -p "$WORK/root$(dirname "$lib")"
            cp -L "$lib" "$WORK/root$lib"
        done
        [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$WORK/root/etc/"
    fi
    cp "$HERE/init" "$WORK/root/init"
    chmod 755 "$WORK/root/init"
    # The workload of the restart tests and the benchmark's timer, with the
    # host's compiler: static, so they need nothing else.
    for prog in mpq-io mpq-ticker; do
        ${CC:-cc} -std=gnu17 -static -O2 -Wall -Werror -o "$WORK/root/bin/$prog" "$HERE/$prog.c" ||
            { log "cannot build $prog (a C compiler and a static libc: libc6-dev)"; exit 1; }
    done
    mkdir -p "$GUEST"
    (cd "$WORK/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$GUEST/initrd.tmp"
    cp "$WORK/kernel/boot/vmlinuz-$KVER" "$GUEST/vmlinuz"
    mv "$GUEST/initrd.tmp" "$GUEST/initrd"
    echo "$STAMP" >"$GUEST/stamp"
    log "guest: $(tr '\n' ' ' <"$ORDER")"
    rm -rf "$WORK"
fi

# Guests of other script versions (other branches, older commits) go once
# unused for a week; a use marks the stamp.
touch "$GUEST/stamp"
for old in "$KIT"/guest-*; do
    [ "$old" != "$GUEST" ] && [ -d "$old" ] || continue
    mark=$old/stamp
    [ -f "$mark" ] || mark=$old
    if [ -n "$(find "$mark" -maxdepth 0 -mtime +7)" ]; then
        rm -rf "$old"
    fi
done

echo "KIT='$KIT' QEMU_ROOT='$KIT/sid' GUEST='$GUEST'"
