#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# qcow2 benchmark: the same I/O patterns on the same kind of image, through
# mpqemu-remote (mpqemu-bench --job: SCSI commands via the LSI controller
# over the multi-process protocol) and through QEMU's own qcow2 driver
# (qemu-img bench, in-process, no device).  Prints IOPS/MB/s and the ratio,
# and the same patterns through mpqemu-remote on a raw image, with qcow2/raw.
#
#   4 KiB writes, each into a fresh cluster of a new image (64 KiB clusters,
#   4 KiB at every 64 KiB: qemu-img bench has no random pattern, and this
#   one allocates a cluster per write as random writes into a fresh image do)
#   1 MiB sequential reads of a fully written image
#
#   scripts/bench-qcow2.sh [COUNT_4K] [COUNT_1M]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${MPQEMU_BENCH:-$top/build/mpqemu-bench}
REMOTE=${MPQEMU_REMOTE:-$top/build/mpqemu-remote}
N4K=${1:-20000}
N1M=${2:-2000}
dir=$(mktemp -d /var/tmp/mpqemu-bench-qcow2.XXXXXX)
trap 'rm -rf "$dir"' EXIT

fresh() {
    rm -f "$dir/img.qcow2" "$dir/img.raw"
    qemu-img create -q -f qcow2 -o cluster_size=64k "$dir/img.qcow2" 4G
    truncate -s 4G "$dir/img.raw"
}
filled() {
    rm -f "$dir/img.qcow2"
    qemu-img create -q -f qcow2 -o cluster_size=64k "$dir/img.qcow2" 1G
    qemu-img bench -q -w -c 1024 -s 1M --pattern=90 "$dir/img.qcow2" >/dev/null
    qemu-img convert -O raw "$dir/img.qcow2" "$dir/img.raw"
}

# ours OP BS STEP COUNT DEPTH [FORMAT]: IOPS through mpqemu-remote.
ours() {
    fmt=${6:-qcow2}
    "$BENCH" --image "$dir/img.$fmt" --job "$1,$2,$3,$4,$5" -- "$REMOTE" '{fd}' \
        -device lsi53c895a,id=lsi0 -drive id=d0,file={image},format=$fmt \
        -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0 |
        sed -n 's/.* \([0-9.]*\) IOPS.*/\1/p'
}

# qemu OP BS STEP COUNT DEPTH: IOPS through qemu-img bench.
qemu() {
    w=""
    [ "$1" = write ] && w=-w
    secs=$(qemu-img bench $w -t writeback -c "$4" -d "$5" -s "$2" -S "$3" "$dir/img.qcow2" |
        sed -n 's/Run completed in \([0-9.]*\) seconds.*/\1/p')
    awk -v n="$4" -v s="$secs" 'BEGIN { printf "%.0f", n / s }'
}

row() { # NAME UNIT-SCALE OURS QEMU OURS-RAW
    awk -v name="$1" -v k="$2" -v a="$3" -v b="$4" -v c="$5" \
        'BEGIN { printf "%-40s %12.1f %12.1f %8.2fx %12.1f %8.2fx\n", name, a * k, b * k, a / b, c * k, a / c }'
}

printf '%-40s %12s %12s %9s %12s %9s\n' "" "mpqemu" "qemu-img" "ratio" "mpqemu raw" "qcow2/raw"
for depth in 1 32; do
    fresh; a=$(ours write 4096 65536 "$N4K" $depth); c=$(ours write 4096 65536 "$N4K" $depth raw)
    fresh; b=$(qemu write 4096 65536 "$N4K" $depth)
    row "4 KiB write, fresh clusters, IOPS QD$depth" 1 "$a" "$b" "$c"
done
filled
for depth in 1 32; do
    a=$(ours read 1048576 1048576 "$N1M" $depth)
    b=$(qemu read 1048576 1048576 "$N1M" $depth)
    c=$(ours read 1048576 1048576 "$N1M" $depth raw)
    row "1 MiB sequential read, MB/s QD$depth" 1.048576 "$a" "$b" "$c"
done
echo "mpqemu: SCSI commands through mpqemu-remote's LSI controller (client on the socket);"
echo "qemu-img: qemu-img bench $(qemu-img --version | head -1 | awk '{print $3}'), in-process, no device"
