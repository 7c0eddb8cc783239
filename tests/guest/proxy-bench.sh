#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Guest-level benchmark over the original multi-process path: bookworm's
# QEMU 7.2 with x-pci-proxy-dev under TCG, the guest polling interrupts
# ("irqpoll nolapic", see x-pci-proxy.sh), its LSI53C895A served by
# mpqemu-remote and by QEMU 7.2's own remote (-machine x-remote) in the same
# run, rounds in alternating order.  The guest's dd with O_DIRECT: 1 MiB
# sequential write and read (4 KiB rows are bound by the timer on both sides
# and are left out).  Prints MB/s, medians and the ratio.  Not a test.
#
# The guest finds a completion only when IRQ 0 comes (irqpoll polls on it):
# at the 250 Hz tick while it is busy, more rarely while it idles (the tick
# stops), which caps dd at one 1 MiB request per tick whichever remote
# serves it.  TICKER (Hz, default 2048) runs tests/guest/mpq-ticker.c in the
# guest during the rows, the RTC's periodic interrupt, so that IRQ 0 comes
# that often for both remotes alike; TICKER=0 leaves the tick alone.  Each
# row also says how many IRQ 0 a second the guest had during it.
#
#   tests/guest/proxy-bench.sh [ROUNDS]
#   MPQEMU_REMOTE: our remote; QEMU: QEMU 7.2 (proxy and x-remote)
#   BASELINE: another build's mpqemu-remote, compared instead of x-remote
#             (before/after a change, the rows labelled "before")
#   QD: the depths of the rows with several I/Os in flight (default "8"; "" for none)
#   TICKER: IRQ 0 a second from the guest's ticker (default 2048; 0: none)
#   SECTORS: the disk's size in 512-byte sectors (default 262144, 128 MiB)
set -eu
. "$(dirname "$0")/lib.sh"
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$(cd "$(dirname "$0")/../.." && pwd)/build/mpqemu-remote}
QEMU=${QEMU:-qemu-system-x86_64}
ROUNDS=${1:-3}
SECTORS=${SECTORS:-262144}      # 128 MiB
QD=${QD-8}
TICKER=${TICKER-2048}
case "$TICKER" in "") TICKER=0 ;; *[!0-9]*) echo "proxy-bench: TICKER is a rate in Hz" >&2; exit 2 ;; esac
ROWS="seq-write-1M seq-read-1M"
for d in $QD; do ROWS="$ROWS qd$d-write-1M qd$d-read-1M"; done

guest_kit || { echo "proxy-bench: the guest kit does not build" >&2; exit 1; }
guest_workdir
APPEND="console=ttyS0 quiet irqpoll nolapic mpq.test=disks mpq.bench=$SECTORS mpq.rows=1M mpq.ticker=$TICKER$(qd_append "$QD")"

result() { # NAME: MB/s and IRQ 0/s of the guest's "MPQ bench NAME mb M cs C irq0 I" line
    mpq_line "$W/serial.log" bench "$1" |
        awk '$4 > 0 { printf "%.1f %.0f", $2 * 100 / $4, $6 * 100 / $4; ok = 1 }
             END { if (!ok) print "0 0" }'
}

# What ours is compared with: QEMU's x-remote, or BASELINE's build.
if [ -n "${BASELINE:-}" ]; then BASE=before; else BASE=x-remote; fi

run() { # round kind (ours|$BASE)
    rm -f "$W/disk.img" "$W/serial.log"
    truncate -s $((SECTORS * 512)) "$W/disk.img"
    case "$2" in
        ours) remote="ours:$MPQEMU_REMOTE" ;;
        before) remote="ours:$BASELINE" ;;
        *) remote="x-remote:$QEMU" ;;
    esac
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
    echo "round $1 $2: guest timers: $(mpq_line "$W/serial.log" timer)"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b ? a / b : 0 }'; }
fig() { # ROUND KIND ROW [FIELD: 4 MB/s (default), 5 IRQ 0/s]
    awk -v r="$1" -v k="$2" -v w="$3" -v f="${4:-4}" '$1 == r && $2 == k && $3 == w { print $f }' "$W/results"
}
median() { # KIND ROW [FIELD]
    awk -v k="$1" -v w="$2" -v f="${3:-4}" '$2 == k && $3 == w { print $f }' "$W/results" | sort -n |
        awk '{ v[NR] = $1 }
             END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "x-pci-proxy-dev benchmark: $($QEMU --version | head -1), TCG, guest Linux" \
     "$(basename "$GUEST" | sed 's/guest-//; s/-[0-9a-f]\{12\}$//') with irqpoll nolapic, $((SECTORS / 2048)) MiB raw," \
     "dd O_DIRECT, depths 1 $QD, $ROUNDS rounds," \
     "$([ "$TICKER" -gt 0 ] && echo "ticker $TICKER Hz (RTC periodic interrupt)" || echo "no ticker (250 Hz tick)")"
: >"$W/results"
r=1
while [ $r -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then order="$BASE ours"; else order="ours $BASE"; fi
    for kind in $order; do run $r $kind; done
    for row in $ROWS; do
        q=$(fig $r $BASE $row) o=$(fig $r ours $row)
        printf 'round %d (%s): %-13s %s %8s  ours %8s MB/s  %s  (IRQ 0/s %s, %s)\n' \
            $r "$order" $row $BASE "$q" "$o" "$(ratio "$o" "$q")" \
            "$(fig $r $BASE $row 5)" "$(fig $r ours $row 5)"
    done
    r=$((r + 1))
done
echo "medians over $ROUNDS rounds (MB/s; IRQ 0/s in the guest during the row):"
printf '%-13s %10s %10s %7s %9s %9s  %s\n' row $BASE ours ratio "IRQ0/s b" "IRQ0/s o" \
    "ratio per round"
for row in $ROWS; do
    q=$(median $BASE $row) o=$(median ours $row)
    per=""
    r=1
    while [ $r -le "$ROUNDS" ]; do
        per="$per $(ratio "$(fig $r ours $row)" "$(fig $r $BASE $row)")"
        r=$((r + 1))
    done
    printf '%-13s %10s %10s %7s %9.0f %9.0f %s\n' $row "$q" "$o" "$(ratio "$o" "$q")" \
        "$(median $BASE $row 5)" "$(median ours $row 5)" "$per"
done
if [ $BASE = before ]; then
    echo "before: $BASELINE; ours: $MPQEMU_REMOTE;"
else
    echo "x-remote: QEMU 7.2's own remote process (-machine x-remote); ours: mpqemu-remote;"
fi
echo "both behind x-pci-proxy-dev (ratio: ours / $BASE; IRQ0/s b: $BASE's rows, o: ours')"
