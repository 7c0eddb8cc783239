#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# meson install into a scratch destdir: the programs, libmpqemu-client
# (shared, its soname and exported symbols the public headers' functions;
# static), its headers, its pkg-config file and the man pages.  A program
# built against the installed library through pkg-config, shared and
# static, probes a running remote (the installed one) and reads its ids.
. "$(dirname "$0")/tap.sh"
: "${MPQEMU_BUILD_ROOT:?}" "${MPQEMU_SOURCE_ROOT:?}"
tmp=$(mktemp -d /var/tmp/mpqemu-install-XXXXXX)
remote=""
cleanup() {
    [ -n "$remote" ] && kill "$remote" 2>/dev/null && wait "$remote" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
root="$tmp/root"
unset LD_LIBRARY_PATH   # meson test points it at the build's libraries; we want the installed ones

meson install -C "$MPQEMU_BUILD_ROOT" --no-rebuild --destdir "$root" --quiet >"$tmp/install.log" 2>&1
tap_result $? "meson install --destdir"
( cd "$root" && find . -type f -o -type l | sed 's|^\.||' | sort ) >"$tmp/files"
sed 's/^/# installed: /' "$tmp/files"

has() { grep -Eq "$1" "$tmp/files"; }
for f in '/bin/mpqemu-remote$' '/bin/mpqemu-launch$' '/bin/mpqemu-probe$' '/bin/mpqemu-bench$' \
         '/libmpqemu-client\.so$' '/libmpqemu-client\.so\.0$' '/libmpqemu-client\.so\.0\.[0-9.]*$' \
         '/libmpqemu-client\.a$' '/include/mpqemu/mpqemu-client\.h$' '/include/mpqemu/mpqemu-lsi\.h$' \
         '/pkgconfig/mpqemu-client\.pc$' '/man1/mpqemu-remote\.1$' '/man1/mpqemu-launch\.1$' \
         '/man1/mpqemu-probe\.1$' '/man1/mpqemu-bench\.1$'; do
    has "$f"
    tap_result $? "installs $f"
done

pc=$(find "$root" -name mpqemu-client.pc)
libdir=$(dirname "$(dirname "$pc")")
includedir=$(find "$root" -type d -path '*/include/mpqemu')
so=$(find "$libdir" -name 'libmpqemu-client.so.0.*' -type f)
readelf -d "$so" | grep -q 'SONAME.*\[libmpqemu-client\.so\.0\]'
tap_result $? "the shared library's soname is libmpqemu-client.so.0"

# The library's ABI is its headers' functions: no more, no fewer.
nm -D --defined-only "$so" | awk '$2 == "T" {sub(/@.*/, "", $3); print $3}' | sort >"$tmp/exported"
grep -ohE '\bmpq_[a-z0-9_]+ *\(' "$includedir"/*.h | tr -d '( ' | sort -u >"$tmp/declared"
diff "$tmp/exported" "$tmp/declared" >"$tmp/abi.diff"
tap_result $? "the exported symbols are the public headers' functions$(sed 's/^/ /' "$tmp/abi.diff" | tr '\n' ' ')"
! grep -h '#include "' "$includedir"/*.h | grep -v '"mpqemu-client.h"'
tap_result $? "the installed headers include only each other and system headers"

export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
pkg-config --exists mpqemu-client
tap_result $? "pkg-config finds mpqemu-client ($(pkg-config --modversion mpqemu-client))"
san=""
[ "${MPQEMU_SANITIZE:-none}" != none ] && san="-fsanitize=$MPQEMU_SANITIZE"
src="$MPQEMU_SOURCE_ROOT/tests/install/probe-installed.c"
# shellcheck disable=SC2046,SC2086
cc -std=gnu17 -Wall -Wextra -Werror $san -o "$tmp/probe-shared" "$src" \
    $(pkg-config --cflags --libs mpqemu-client) -Wl,-rpath,"$libdir" 2>"$tmp/cc.log"
tap_result $? "a program builds against the installed shared library: cc \$(pkg-config --cflags --libs mpqemu-client)$(sed 's/^/ # /' "$tmp/cc.log")"
# shellcheck disable=SC2046,SC2086
cc -std=gnu17 -Wall -Wextra -Werror $san -o "$tmp/probe-static" "$src" \
    $(pkg-config --cflags mpqemu-client) "$libdir/libmpqemu-client.a" \
    $(pkg-config --static --libs-only-l mpqemu-client | sed 's/-lmpqemu-client//') 2>"$tmp/cc.log"
tap_result $? "and against the static library$(sed 's/^/ # /' "$tmp/cc.log")"
ldd "$tmp/probe-shared" | grep -q "libmpqemu-client.so.0 => $libdir"
tap_result $? "the shared build loads the installed libmpqemu-client.so.0"
! ldd "$tmp/probe-static" | grep -q libmpqemu-client
tap_result $? "the static build does not"

truncate -s 16M "$tmp/disk.img"
remote_bin=$(find "$root" -path '*/bin/mpqemu-remote')
"$remote_bin" -device lsi53c895a,id=lsi0 -drive id=d0,file="$tmp/disk.img",format=raw \
    -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0 \
    -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$tmp/lsi0.sock" \
    2>"$tmp/remote.log" &
remote=$!
for _ in $(seq 100); do [ -S "$tmp/lsi0.sock" ] && break; sleep 0.05; done
for kind in shared static; do
    out=$("$tmp/probe-$kind" "$tmp/lsi0.sock" 2>&1)
    printf '%s\n' "$out" | sed 's/^/# /'
    printf '%s\n' "$out" | grep -q 'vendor 0x1000 device 0x0012 class 0x010000' &&
        printf '%s\n' "$out" | grep -q 'inquiry status 0: MPQEMU   MPQEMU HARDDISK'
    tap_result $? "the $kind program probes the running remote: LSI53C895A (1000:0012), its disk answers INQUIRY"
done
MANPATH="$(dirname "$(find "$root" -type d -name man1)")" man -w mpqemu-launch >/dev/null 2>&1
tap_result $? "man finds the installed mpqemu-launch(1)"
tap_done
