#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# mpqemu-probe against QEMU's own remote process (x-remote) and against ours:
# both must complete the same probe sequence and exit cleanly afterwards.
. "$(dirname "$0")/tap.sh"
R=${MPQEMU_REMOTE:?}
P=${MPQEMU_PROBE:?}
N=${PROBE_ITERATIONS:-2000}
QEMU=${QEMU:-qemu-system-x86_64}

if ! command -v "$QEMU" >/dev/null; then
    tap_result 1 "$QEMU is installed (apt-get install qemu-system-x86)"
    tap_done
    exit 1
fi

# The reference gets three tries, each failure shown: under load QEMU 7.2's
# x-remote answers "Bad address" for a BAR it has mapped (its bug), and now
# and then reads back 0 when its third BAR is sized, so that the BAR seems
# absent (seen only on a loaded machine, one probe in tens; never with ours).
for try in 1 2 3; do
    qemu_out=$("$P" --iterations "$N" -- "$QEMU" -machine x-remote -nodefaults -display none \
        -device lsi53c895a,id=lsi0 -object x-remote-object,id=r0,devid=lsi0,fd='{fd}' 2>&1)
    qemu_status=$?
    [ $qemu_status -eq 0 ] && printf '%s\n' "$qemu_out" | grep -q '^BAR2: ' && break
    printf '%s\n' "QEMU x-remote failed (try $try of 3):" "$qemu_out" | sed 's/^/# /'
done
ours_out=$("$P" --iterations "$N" -- "$R" '{fd}' -device mpqemu-testdev,id=t0 2>&1)
ours_status=$?
printf '%s\n' "QEMU x-remote (lsi53c895a):" "$qemu_out" "mpqemu-remote (mpqemu-testdev):" \
    "$ours_out" | sed 's/^/# /'

has() { printf '%s\n' "$1" | grep -Eq -- "$2"; }
check() { # name output pattern
    if has "$2" "$3"; then tap_result 0 "$1"; else tap_result 1 "$1: no line matches '$3'"; fi
}
tap_result $qemu_status "probe of QEMU's x-remote completes"
check "x-remote: LSI53C895A ids" "$qemu_out" 'vendor 0x1000 device 0x0012 class 0x0100 '
check "x-remote: BAR0 I/O 256" "$qemu_out" '^BAR0: I/O 256 bytes'
check "x-remote: BAR1 memory 1024" "$qemu_out" '^BAR1: memory 32-bit 1024 bytes'
check "x-remote: BAR2 memory 8192" "$qemu_out" '^BAR2: memory 32-bit 8192 bytes'
check "x-remote: exits 0 after the disconnect" "$qemu_out" 'remote exited with status 0'
tap_result $ours_status "probe of mpqemu-remote completes"
check "ours: test device ids" "$ours_out" 'vendor 0x1234 device 0x4d50 class 0x00ff '
check "ours: BAR0 memory 4096" "$ours_out" '^BAR0: memory 32-bit 4096 bytes'
check "ours: BAR1 I/O 64" "$ours_out" '^BAR1: I/O 64 bytes'
check "ours: BAR2 64-bit 16384" "$ours_out" '^BAR2: memory 64-bit prefetchable 16384 bytes'
check "ours: exits 0 after the disconnect" "$ours_out" 'remote exited with status 0'
# Same sequence: both printed a config-read line and one line per BAR.
for out in "$qemu_out" "$ours_out"; do
    n=$(printf '%s\n' "$out" | grep -Ec '^  (config|BAR[0-5]) read ')
    [ "$n" -eq 4 ]; tap_result $? "four timed access kinds measured"
done
tap_done
