#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Guest-level benchmark over the original multi-process path: bookworm's
# QEMU 7.2 with x-pci-proxy-dev under TCG, the guest polling interrupts
# ("irqpoll nolapic", see x-pci-proxy.sh), its LSI53C895A served by
# mpqemu-remote and by QEMU 7.2's own remote (-machine x-remote) in the same
# run, rounds in alternating order.  The guest's dd with O_DIRECT: 1 MiB
# sequential write and read (4 KiB rows are bound by the 250 Hz tick on both
# sides and are left out).  Prints MB/s, medians and the ratio.  Not a test.
#
#   tests/guest/proxy-bench.sh [ROUNDS]
#   MPQEMU_REMOTE: our remote; QEMU: QEMU 7.2 (proxy and x-remote)
#   QD: the depths of the rows with several I/Os in flight (default "8"; "" for none)
#   SECTORS: the disk's size in 512-byte sectors (default 262144, 128 MiB)
set -eu
. "$(dirname "$0")/lib.sh"
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$(cd "$(dirname "$0")/../.." && pwd)/build/mpqemu-remote}
QEMU=${QEMU:-qemu-system-x86_64}
ROUNDS=${1:-3}
SECTORS=${SECTORS:-262144}      # 128 MiB
QD=${QD-8}
ROWS="seq-write-1M seq-read-1M"
for d in $QD; do ROWS="$ROWS qd$d-write-1M qd$d-read-1M"; done

guest_kit || { echo "proxy-bench: the guest kit does not build" >&2; exit 1; }
guest_workdir
APPEND="console=ttyS0 quiet irqpoll nolapic mpq.test=disks mpq.bench=$SECTORS mpq.rows=1M$(qd_append "$QD")"

result() { # NAME: MB/s of the guest's "MPQ bench NAME mb M cs C" line
    line=$(mpq_line "$W/serial.log" bench "$1")
    mb=$(printf '%s\n' "$line" | awk '{ print $2 }')
    cs=$(printf '%s\n' "$line" | awk '{ print $4 }')
    [ -n "$cs" ] && [ "$cs" -gt 0 ] || { echo 0; return; }
    awk -v mb="$mb" -v cs="$cs" 'BEGIN { printf "%.1f", mb * 100 / cs }'
}

run() { # round kind (ours|x-remote)
    rm -f "$W/disk.img" "$W/serial.log"
    truncate -s $((SECTORS * 512)) "$W/disk.img"
    if [ "$2" = ours ]; then remote="ours:$MPQEMU_REMOTE"; else remote="x-remote:$QEMU"; fi
    python3 "$GUEST_DIR/proxy-run.py" --workdir "$W" --append "$APPEND" --mode normal \
        --remote "$remote" --qemu "$QEMU" --timeout 1200 --controller "raw:$W/disk.img" \
        >"$W/run.log" 2>&1 || true
    if ! grep -q '^guest-done yes' "$W/run.log" || grep -a '^MPQ bench .* failed' "$W/serial.log" >&2
    then
        echo "proxy-bench: the $2 guest did not finish its I/O" >&2
        cat "$W/run.log" "$W"/remote-*.log >&2
        exit 1
    fi
    for row in $ROWS; do echo "$1 $2 $row $(result $row)" >>"$W/results"; done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b ? a / b : 0 }'; }
fig() { awk -v r="$1" -v k="$2" -v w="$3" '$1 == r && $2 == k && $3 == w { print $4 }' "$W/results"; }
median() { # KIND ROW
    awk -v k="$1" -v w="$2" '$2 == k && $3 == w { print $4 }' "$W/results" | sort -n |
        awk '{ v[NR] = $1 }
             END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "x-pci-proxy-dev benchmark: $($QEMU --version | head -1), TCG, guest Linux" \
     "$(basename "$GUEST" | sed 's/guest-//; s/-[0-9a-f]\{12\}$//') with irqpoll nolapic, $((SECTORS / 2048)) MiB raw," \
     "dd O_DIRECT, depths 1 $QD, $ROUNDS rounds"
: >"$W/results"
r=1
while [ $r -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then order="x-remote ours"; else order="ours x-remote"; fi
    for kind in $order; do run $r $kind; done
    for row in $ROWS; do
        q=$(fig $r x-remote $row) o=$(fig $r ours $row)
        printf 'round %d (%s): %-13s x-remote %8s  ours %8s MB/s  %s\n' \
            $r "$order" $row "$q" "$o" "$(ratio "$o" "$q")"
    done
    r=$((r + 1))
done
echo "medians over $ROUNDS rounds (MB/s):"
printf '%-13s %10s %10s %7s  %s\n' row x-remote ours ratio "ratio per round"
for row in $ROWS; do
    q=$(median x-remote $row) o=$(median ours $row)
    per=""
    r=1
    while [ $r -le "$ROUNDS" ]; do
        per="$per $(ratio "$(fig $r ours $row)" "$(fig $r x-remote $row)")"
        r=$((r + 1))
    done
    printf '%-13s %10s %10s %7s %s\n' $row "$q" "$o" "$(ratio "$o" "$q")" "$per"
done
echo "x-remote: QEMU 7.2's own remote process (-machine x-remote); ours: mpqemu-remote;" \
     "both behind x-pci-proxy-dev (ratio: ours / x-remote)"
