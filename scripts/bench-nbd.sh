#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# NBD benchmark: mpqemu-bench's rows (register round trip, 4 KiB random
# reads and writes, 1 MiB sequential, at QD1 and QD32; SCSI commands through
# the LSI controller over the multi-process protocol) on a local raw image
# (A) and on a raw image of the same size served by an NBD server on a
# unix socket (B), in one run, side by side with the ratio B/A.  A
# benchmark that prints figures, not a test.
#
#   scripts/bench-nbd.sh [SECONDS] [qemu-nbd|nbdkit]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${MPQEMU_BENCH:-$top/build/mpqemu-bench}
REMOTE=${MPQEMU_REMOTE:-$top/build/mpqemu-remote}
SECONDS_PER_ROW=${1:-3}
SERVER=${2:-qemu-nbd}
IMAGE_MB=1024
dir=$(mktemp -d /var/tmp/mpqemu-bench-nbd.XXXXXX)
server_pid=""
# Stops the server and waits until it has (it is not our child: until it is a zombie).
cleanup() {
    if [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; then
        while kill -0 "$server_pid" 2>/dev/null &&
              ! grep -q '^[0-9]* (.*) Z' "/proc/$server_pid/stat" 2>/dev/null; do
            sleep 0.05
        done
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

truncate -s ${IMAGE_MB}M "$dir/nbd.img"
case $SERVER in
qemu-nbd)
    qemu-nbd --fork --persistent --pid-file="$dir/server.pid" -k "$dir/nbd.sock" -f raw \
        --cache=writeback "$dir/nbd.img" ;;
nbdkit)
    nbdkit -U "$dir/nbd.sock" -P "$dir/server.pid" file "$dir/nbd.img" ;;
*)
    echo "usage: $0 [SECONDS] [qemu-nbd|nbdkit]" >&2
    exit 2 ;;
esac
while [ ! -s "$dir/server.pid" ]; do sleep 0.05; done
server_pid=$(cat "$dir/server.pid")

disk="-device lsi53c895a,id=lsi0 -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0"
echo "A: a local raw image; B: the same size of raw image served by $SERVER on a unix socket"
# shellcheck disable=SC2086
"$BENCH" --seconds "$SECONDS_PER_ROW" --image-mb $IMAGE_MB \
    -- "$REMOTE" '{fd}' -drive id=d0,file='{image}',format=raw $disk \
    --vs "$REMOTE" '{fd}' -drive "id=d0,file=nbd+unix:///?socket=$dir/nbd.sock,format=raw" $disk
