#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Guest-level benchmark: the same Linux guest workload (dd with O_DIRECT:
# 1 MiB sequential write and read, 4 KiB reads, then the same rows and
# 4 KiB writes with D dd processes at once, D I/Os in flight) on the same
# kind of image, against QEMU's in-process lsi53c895a and against
# mpqemu-remote over vfio-user, under the same QEMU (Debian sid's, TCG).
# Prints MB/s per round, medians and the ratio.  Not a test: figures, for
# the closing notes and docs.
#
#   tests/guest/bench.sh [ROUNDS]
#   MPQEMU_REMOTE: the remote to use; REMOTE_ARGS: more of its options
#   QD: the depths of the rows with several I/Os in flight (default "8 32")
#   CPUS: run both sides, QEMU and the remote alike, on these CPUs (taskset -c;
#   mpqemu-launch's "cpus"); default: where the scheduler puts them
#   Take the bench lock around each boot on a shared machine: LOCK=FILE.
set -eu
. "$(dirname "$0")/lib.sh"
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$(cd "$(dirname "$0")/../.." && pwd)/build/mpqemu-remote}
ROUNDS=${1:-2}
# QEMU and the remote inherit it.
[ -z "${CPUS:-}" ] || taskset -p -c "$CPUS" $$ >/dev/null
QD=${QD:-8 32}
SECTORS=524288      # 256 MiB

guest_kit || { echo "bench: the guest kit does not build" >&2; exit 1; }
guest_workdir
APPEND="console=ttyS0 quiet mpq.test=disks mpq.bench=$SECTORS"
APPEND="$APPEND$(qd_append "$QD")"
ROWS="seq-write-1M seq-read-1M read-4K"
for d in $QD; do ROWS="$ROWS qd$d-write-1M qd$d-read-1M qd$d-write-4K qd$d-read-4K"; done

boot_inprocess() {
    sid_qemu 1800 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" -append "$APPEND" \
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
    sid_qemu 1800 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" -append "$APPEND" \
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

run() { # round kind: appends "round kind row MB/s" to $W/results
    rm -f "$W/disk.img"
    truncate -s $((SECTORS * 512)) "$W/disk.img"
    if [ -n "${LOCK:-}" ]; then
        exec 9>"$LOCK"; flock 9; "boot_$2" >/dev/null 2>&1 || true; flock -u 9; exec 9>&-
    else
        "boot_$2" >/dev/null 2>&1 || true
    fi
    grep -aq '^MPQ done' "$W/serial.log" || { echo "bench: $2 guest did not finish" >&2; exit 1; }
    if grep -a '^MPQ bench .* failed' "$W/serial.log" >&2; then
        echo "bench: an I/O of the $2 guest failed" >&2
        exit 1
    fi
    for row in $ROWS; do echo "$1 $2 $row $(result $row)" >>"$W/results"; done
    # What the guest's driver made of the depths asked for.
    grep -a '^MPQ bench qd ' "$W/serial.log" | tr -d '\r' | sed "s/^MPQ bench/# $2:/" | sort -u \
        >>"$W/depths"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b ? a / b : 0 }'; }
fig() { awk -v r="$1" -v k="$2" -v w="$3" '$1 == r && $2 == k && $3 == w { print $4 }' "$W/results"; }
# median KIND ROW: the middle figure of that kind's rounds
median() {
    awk -v k="$1" -v w="$2" '$2 == k && $3 == w { print $4 }' "$W/results" | sort -n |
        awk '{ v[NR] = $1 }
             END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "guest benchmark: Linux $(basename "$GUEST" | sed 's/guest-//; s/-[0-9a-f]\{12\}$//'), TCG, 256 MiB raw image," \
     "dd O_DIRECT, depths 1 ${QD}, $ROUNDS rounds, CPUs $(taskset -c -p $$ | sed 's/.*: //')"
: >"$W/results"
: >"$W/depths"
r=1
while [ $r -le "$ROUNDS" ]; do
    # Alternate the order so neither side always runs on a warm cache.
    if [ $((r % 2)) -eq 1 ]; then order="inprocess remote"; else order="remote inprocess"; fi
    for kind in $order; do run $r $kind; done
    echo "round $r ($order):"
    for row in $ROWS; do
        i=$(fig $r inprocess $row) o=$(fig $r remote $row)
        printf '  %-14s %9s %9s MB/s  %s\n' $row "$i" "$o" "$(ratio "$o" "$i")"
    done
    r=$((r + 1))
done
sort -u "$W/depths"
echo "medians over $ROUNDS rounds (MB/s):"
printf '%-14s %10s %10s %7s  %s\n' row inprocess remote ratio "ratio per round"
for row in $ROWS; do
    i=$(median inprocess $row) o=$(median remote $row)
    per=""
    r=1
    while [ $r -le "$ROUNDS" ]; do
        per="$per $(ratio "$(fig $r remote $row)" "$(fig $r inprocess $row)")"
        r=$((r + 1))
    done
    printf '%-14s %10s %10s %7s %s\n' $row "$i" "$o" "$(ratio "$o" "$i")" "$per"
done
echo "inprocess: QEMU's own lsi53c895a; remote: mpqemu-remote over vfio-user-pci (ratio: remote / inprocess)"
