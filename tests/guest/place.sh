#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Placement experiment: the 4 KiB depth-32 rows of bench.sh (one row per
# boot, mpq.only), over vfio-user with the remote and QEMU's vCPU thread
# ("CPU 0/TCG") placed in turn as each variant says, and in-process as the
# reference.  Variants, in alternating order per round:
#   inproc   QEMU's own lsi53c895a, left to the scheduler
#   inproc1  QEMU's own lsi53c895a, every thread of QEMU on CPU 0
#   default  remote and QEMU left to the scheduler
#   same     vCPU thread and every remote thread on CPU 0
#   other    vCPU thread on CPU 0, every remote thread on CPU 1
#   poll     as "other", the remote busy-polling (poll-max-ns=32768)
#   split    as "other", and QEMU's vfio-user client thread on CPU 1 too
#   one      every thread of QEMU and of the remote on CPU 0
# Unless said, QEMU's other threads (main loop, vfio-user client) stay free.  Prints
# MB/s per round and medians.  Not a test: figures, for the docs.
#
#   tests/guest/place.sh [ROUNDS]
#   MPQEMU_REMOTE: the remote to use (default build/rel/mpqemu-remote)
#   VARIANTS: which of the above, in the order of odd rounds
#   Take the bench lock around each boot on a shared machine: LOCK=FILE.
set -eu
. "$(dirname "$0")/lib.sh"
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$(cd "$(dirname "$0")/../.." && pwd)/build/rel/mpqemu-remote}
ROUNDS=${1:-3}
VARIANTS=${VARIANTS:-inproc default same other poll}
ROWS="qd32-write-4K qd32-read-4K"
SECTORS=524288      # 256 MiB, as bench.sh: the 4 KiB rows cover its first 32 MiB

guest_kit || { echo "place: the guest kit does not build" >&2; exit 1; }
guest_workdir

append() { # ROW
    echo "console=ttyS0 quiet mpq.test=disks mpq.bench=$SECTORS mpq.only=$1$(qd_append 32)"
}

# pin_thread COMM CPU: once QEMU (of this $W) has a thread named COMM, pins it.
pin_thread() {
    i=0
    while [ $i -lt 600 ]; do
        for q in $(pgrep -f "qemu-system-x86_64.*$IW/" || true); do
            for t in /proc/"$q"/task/*; do
                [ "$(cat "$t/comm" 2>/dev/null)" = "$1" ] || continue
                taskset -p -c "$2" "${t##*/}" >/dev/null && echo "$1 ${t##*/} on $2" >>"$W/pins"
                return 0
            done
        done
        sleep 0.1; i=$((i + 1))
    done
    echo "place: no thread $1 found" >&2
}

boot() { # VARIANT ROW
    rm -f "$W/disk.img" "$W/serial.log"
    truncate -s $((SECTORS * 512)) "$W/disk.img"
    if [ "${1%1}" = inproc ]; then
        [ "$1" = inproc ] || taskset -p -c 0 $$ >/dev/null # QEMU inherits it
        sid_qemu 1800 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" \
            -append "$(append "$2")" -device lsi53c895a,id=lsi0 \
            -drive if=none,id=d0,file="$IW/disk.img",format=raw \
            -device scsi-hd,drive=d0,bus=lsi0.0,scsi-id=0 || true
        taskset -p -c 0,1 $$ >/dev/null
        return
    fi
    extra=""
    [ "$1" = poll ] && extra="-object main-loop,id=ml0,poll-max-ns=32768"
    # shellcheck disable=SC2086
    start_remote "$W/remote.log" -device lsi53c895a,id=lsi0 \
        -drive id=d0,file="$W/disk.img",format=raw \
        -device scsi-hd,id=hd0,drive=d0,bus=lsi0.0,scsi-id=0 \
        -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$W/lsi0.sock" $extra
    pid=$!
    pinner=""
    case $1 in
    same) taskset -a -p -c 0 "$pid" >/dev/null; pin_thread "CPU 0/TCG" 0 & pinner=$! ;;
    other | poll) taskset -a -p -c 1 "$pid" >/dev/null; pin_thread "CPU 0/TCG" 0 & pinner=$! ;;
    split)
        taskset -a -p -c 1 "$pid" >/dev/null
        { pin_thread "CPU 0/TCG" 0; pin_thread "IO vfio-user" 1; } & pinner=$! ;;
    one) taskset -a -p -c 0 "$pid" >/dev/null; taskset -p -c 0 $$ >/dev/null ;; # QEMU inherits it
    esac
    wait_socket "$W/lsi0.sock"
    sid_qemu 1800 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" \
        -append "$(append "$2")" -device "$(vfio_user_dev "$IW/lsi0.sock")" || true
    [ -z "$pinner" ] || wait "$pinner" || true
    taskset -p -c 0,1 $$ >/dev/null
    stop_remote "$pid" || true
}

result() { # ROW: MB/s of the guest's line, 0 if none
    line=$(mpq_line "$W/serial.log" bench "$1")
    mb=$(printf '%s\n' "$line" | awk '{ print $2 }')
    cs=$(printf '%s\n' "$line" | awk '{ print $4 }')
    [ -n "$cs" ] && [ "$cs" -gt 0 ] || { echo 0; return; }
    awk -v mb="$mb" -v cs="$cs" 'BEGIN { printf "%.1f", mb * 100 / cs }'
}

run() { # ROUND VARIANT ROW
    if [ -n "${LOCK:-}" ]; then
        exec 9>"$LOCK"; flock 9; boot "$2" "$3"; flock -u 9; exec 9>&-
    else
        boot "$2" "$3"
    fi
    echo "$1 $2 $3 $(result "$3") load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$W/results"
}

median() { # VARIANT ROW
    awk -v k="$1" -v w="$2" '$2 == k && $3 == w { print $4 }' "$W/results" | sort -n |
        awk '{ v[NR] = $1 }
             END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

: >"$W/results"
: >"$W/pins"
reversed=$(printf '%s\n' $VARIANTS | tac | tr '\n' ' ')
r=1
while [ $r -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then order=$VARIANTS; else order=$reversed; fi
    for v in $order; do for row in $ROWS; do run $r "$v" $row; done; done
    r=$((r + 1))
done
echo "pins made: $(sort -u "$W/pins" | wc -l) (one a pinned boot)"
echo "medians over $ROUNDS rounds (MB/s), remote: $MPQEMU_REMOTE"
printf '%-8s %14s %14s\n' variant $ROWS
for v in $VARIANTS; do
    printf '%-8s %14s %14s\n' "$v" "$(median "$v" qd32-write-4K)" "$(median "$v" qd32-read-4K)"
done
