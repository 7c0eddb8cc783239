#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# mpqemu-bench's table run, over both protocols side by side: every row
# measured for both remotes, and the driver's costs per command as the
# docs describe them (untagged: one interrupt and two register writes per
# command; tagged at depth 32: completions share interrupts).  Figures are
# not judged here: speed lives in the benchmark, not in tests.
. "$(dirname "$0")/tap.sh"
R=${MPQEMU_REMOTE:?}
P=${MPQEMU_PROBE:?}
B=${MPQEMU_BENCH:-$(dirname "$P")/mpqemu-bench}
LSI="-device lsi53c895a,id=lsi0 -drive id=d0,file={image},format=raw
     -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0"
out=$(mktemp /tmp/mpqemu-bench-test.XXXXXX)
trap 'rm -f "$out"' EXIT

# shellcheck disable=SC2086 # LSI is a list of words
"$B" --seconds 0.2 --image-mb 64 -- "$R" '{fd}' $LSI \
    --vs "$R" $LSI -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path='{socket}' \
    >"$out" 2>&1
expect "the bench runs both remotes to the end" "$?" 0
sed 's/^/# /' "$out"

# value ROW COLUMN [TABLE]: the COLUMN-th number after the row's name, in the
# first table (figures) or the second (per command: irqs regs cpu per remote).
value() {
    awk -v row="$1" -v col="$2" -v table="${3:-1}" '
        /^per command/ { t = 2; next }
        !t { t = 1 }
        t == table && index($0, row) == 1 {
            rest = substr($0, length(row) + 1); n = split(rest, f, " ")
            print f[col]; exit
        }' "$out"
}

rows="4 KiB random read, IOPS (QD1)|4 KiB random write, IOPS (QD1)|1 MiB sequential read, MB/s (QD1)|1 MiB sequential write, MB/s (QD1)|4 KiB random read, IOPS (QD32)|4 KiB random write, IOPS (QD32)|1 MiB sequential read, MB/s (QD32)|1 MiB sequential write, MB/s (QD32)|4 KiB random read, untagged, IOPS|4 KiB random write, untagged, IOPS"
IFS='|'
for row in $rows; do
    a=$(value "$row" 1) b=$(value "$row" 2)
    expect "$row: measured for both remotes" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN { print (a > 0 && b > 0) ? "yes" : "no" }')" yes
done
# between(V, LO, HI): "yes" when LO <= V <= HI.
between() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { print (v >= lo && v <= hi) ? "yes" : "no" }'; }
# Untagged: an interrupt and two register writes per command; a wakeup that
# finds its completion already taken (a loaded machine) adds an ISTAT read.
for row in "4 KiB random read, untagged, IOPS" "4 KiB random write, untagged, IOPS"; do
    for col in 1 4; do
        expect "$row: one interrupt per command (column $col)" \
            "$(between "$(value "$row" $col 2)" 1.00 1.10)" yes
        expect "$row: two register accesses per command (column $col)" \
            "$(between "$(value "$row" $((col + 1)) 2)" 2.00 2.20)" yes
    done
done
for row in "4 KiB random read, IOPS (QD32)" "4 KiB random write, IOPS (QD32)"; do
    for col in 1 4; do
        expect "$row: completions share interrupts (column $col)" \
            "$(between "$(value "$row" $col 2)" 0.01 0.99)" yes
    done
done
unset IFS
tap_done
