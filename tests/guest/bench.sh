#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Guest-level benchmark: the same Linux guest workload (dd with O_DIRECT:
# 1 MiB sequential write and read, 4 KiB reads) on the same kind of image,
# against QEMU's in-process lsi53c895a and against mpqemu-remote over
# vfio-user, under the same QEMU (Debian sid's, TCG).  Prints MB/s and the
# ratio.  Not a test: figures, for the closing notes and docs.
#
#   tests/guest/bench.sh [ROUNDS]
#   MPQEMU_REMOTE: the remote to use; REMOTE_ARGS: more of its options
set -eu
. "$(dirname "$0")/lib.sh"
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$(cd "$(dirname "$0")/../.." && pwd)/build/mpqemu-remote}
ROUNDS=${1:-2}
SECTORS=524288      # 256 MiB

guest_kit || { echo "bench: the guest kit does not build" >&2; exit 1; }
guest_workdir
APPEND="console=ttyS0 quiet mpq.test=disks mpq.bench=$SECTORS"

boot_inprocess() {
    sid_qemu 1200 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" -append "$APPEND" \
        -device lsi53c895a,id=lsi0 \
        -drive if=none,id=d0,file="$IW/disk.img",format=raw \
        -device scsi-hd,drive=d0,bus=lsi0.0,scsi-id=0
}

boot_remote() {
    start_remote "$W/remote.log" -device lsi53c895a,id=lsi0 \
        -drive id=d0,file="$W/disk.img",format=raw \
        -device scsi-hd,id=hd0,drive=d0,bus=lsi0.0,scsi-id=0 \
        -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$W/lsi0.sock" \
        ${REMOTE_ARGS:-}
    pid=$!
    wait_socket "$W/lsi0.sock"
    sid_qemu 1200 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" -append "$APPEND" \
        -device "$(vfio_user_dev "$IW/lsi0.sock")"
    stop_remote "$pid"
}

# result NAME: MB/s of the guest's "MPQ bench NAME mb M cs C" line.
result() {
    line=$(mpq_line "$W/serial.log" bench "$1")
    mb=$(printf '%s\n' "$line" | awk '{ print $2 }')
    cs=$(printf '%s\n' "$line" | awk '{ print $4 }')
    [ -n "$cs" ] && [ "$cs" -gt 0 ] || { echo 0; return; }
    awk -v mb="$mb" -v cs="$cs" 'BEGIN { printf "%.1f", mb * 100 / cs }'
}

run() { # kind -> "write read read4k" MB/s
    rm -f "$W/disk.img"
    truncate -s $((SECTORS * 512)) "$W/disk.img"
    "boot_$1" >/dev/null 2>&1 || true
    grep -aq '^MPQ done' "$W/serial.log" || { echo "bench: $1 guest did not finish" >&2; exit 1; }
    echo "$(result seq-write-1M) $(result seq-read-1M) $(result read-4K)"
}

echo "guest benchmark: Linux $(basename "$GUEST" | sed 's/guest-//'), TCG, 256 MiB raw image, dd O_DIRECT"
printf '%-8s %-12s %14s %14s %14s\n' round controller "1M write MB/s" "1M read MB/s" "4K read MB/s"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b ? a / b : 0 }'; }
# median KIND COLUMN: the middle figure of that kind's rounds (2: write, 3: read, 4: 4K)
median() {
    awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$W/results" | sort -n | awk '{ v[NR] = $1 }
        END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

: >"$W/results"
r=1
while [ $r -le "$ROUNDS" ]; do
    # Alternate the order so neither side always runs on a warm cache.
    if [ $((r % 2)) -eq 1 ]; then order="inprocess remote"; else order="remote inprocess"; fi
    for kind in $order; do
        figures=$(run $kind)
        echo "$kind $figures" >>"$W/results"
        printf '%-8s %-12s %14s %14s %14s\n' "$r" $kind $figures
    done
    set -- $(grep -v '^$' "$W/results" | tail -2 | sort | awk '{ printf "%s %s %s ", $2, $3, $4 }')
    printf '%-8s %-12s %14s %14s %14s\n' "$r" ratio "$(ratio $4 $1)" "$(ratio $5 $2)" "$(ratio $6 $3)"
    r=$((r + 1))
done
if [ "$ROUNDS" -gt 1 ]; then
    # This machine's noise between rounds exceeds the gap: medians say more than any round.
    for kind in inprocess remote; do
        printf '%-8s %-12s %14s %14s %14s\n' median $kind \
            "$(median $kind 2)" "$(median $kind 3)" "$(median $kind 4)"
    done
    printf '%-8s %-12s %14s %14s %14s\n' median ratio \
        "$(ratio "$(median remote 2)" "$(median inprocess 2)")" \
        "$(ratio "$(median remote 3)" "$(median inprocess 3)")" \
        "$(ratio "$(median remote 4)" "$(median inprocess 4)")"
fi
echo "inprocess: QEMU's own lsi53c895a; remote: mpqemu-remote over vfio-user-pci (ratio: remote / inprocess)"
