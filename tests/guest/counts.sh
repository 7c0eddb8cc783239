#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Messages and interrupts per command, counted: the guest of bench.sh does
# N 4 KiB O_DIRECT reads, or writes, at depth 1 or 32, one row per boot
# (mpq.only), against mpqemu-remote over vfio-user and against QEMU's
# in-process lsi53c895a.  Per SCSI command of the row, it prints what the
# remote logged for the client (its vfio-user-counts line, less that of a
# boot that runs no row) and the sym53c8xx interrupts the guest took during
# the row (/proc/interrupts).  Not a test: figures, for the docs.
#
#   tests/guest/counts.sh
#   MPQEMU_REMOTE: the remote to use; N: commands per row (32 to 8192, a
#   multiple of 32; default 8192)
#   Take the bench lock around it on a shared machine.
set -eu
. "$(dirname "$0")/lib.sh"
MPQEMU_REMOTE=${MPQEMU_REMOTE:-$(cd "$(dirname "$0")/../.." && pwd)/build/mpqemu-remote}
N=${N:-8192}
[ $((N % 32)) -eq 0 ] && [ "$N" -ge 32 ] && [ "$N" -le 8192 ] ||
    { echo "counts: N must be a multiple of 32 from 32 to 8192" >&2; exit 1; }
# The guest's 4 KiB rows move mb * 32 blocks, mb the disk's MiB.
SECTORS=$((N / 32 * 2048))
ROWS="qd1-read-4K qd1-write-4K qd32-read-4K qd32-write-4K"
KEYS="msgs region_read region_write_waited region_write_posted irq_unmask_msg irq_unmask_fd intx_signals"

guest_kit || { echo "counts: the guest kit does not build" >&2; exit 1; }
guest_workdir

append() { # ROW
    echo "console=ttyS0 quiet mpq.test=disks mpq.bench=$SECTORS mpq.only=$1$(qd_append "1 32")"
}

fresh_disk() {
    rm -f "$W/disk.img"
    truncate -s $((SECTORS * 512)) "$W/disk.img"
}

boot_inprocess() { # ROW
    fresh_disk
    sid_qemu 1800 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" \
        -append "$(append "$1")" -device lsi53c895a,id=lsi0 \
        -drive if=none,id=d0,file="$IW/disk.img",format=raw \
        -device scsi-hd,drive=d0,bus=lsi0.0,scsi-id=0 || true
}

boot_remote() { # ROW
    fresh_disk
    start_remote "$W/remote.log" -device lsi53c895a,id=lsi0 \
        -drive id=d0,file="$W/disk.img",format=raw \
        -device scsi-hd,id=hd0,drive=d0,bus=lsi0.0,scsi-id=0 \
        -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$W/lsi0.sock"
    pid=$!
    wait_socket "$W/lsi0.sock"
    sid_qemu 1800 "$W/serial.log" -kernel "$IW/vmlinuz" -initrd "$IW/initrd" \
        -append "$(append "$1")" -device "$(vfio_user_dev "$IW/lsi0.sock")" || true
    stop_remote "$pid" || true
}

# run KIND ROW: boots; keeps the serial log and the remote's counts as $W/KIND-ROW.*
run() {
    : >"$W/remote.log"
    "boot_$1" "$2" >/dev/null 2>&1
    grep -aq '^MPQ done' "$W/serial.log" || { echo "counts: $1 $2: the guest did not finish" >&2; exit 1; }
    if grep -a '^MPQ bench .* failed' "$W/serial.log" >&2; then
        echo "counts: $1 $2: an I/O failed" >&2
        exit 1
    fi
    cp "$W/serial.log" "$W/$1-$2.serial"
    grep -a 'vfio-user-counts ' "$W/remote.log" | tail -1 >"$W/$1-$2.counts" || true
    [ "$1" != remote ] || [ -s "$W/$1-$2.counts" ] ||
        { echo "counts: $1 $2: the remote logged no counts" >&2; exit 1; }
}

# count KIND ROW KEY: KEY's value in that run's vfio-user-counts line
count() { tr ' ' '\n' <"$W/$1-$2.counts" | awk -F= -v k="$3" '$1 == k { print $2 }'; }
# guest ROW KIND FIELD: FIELD (cmds, symirq, cs) of the row's "MPQ bench" line
guest() { mpq_line "$W/$2-$1.serial" bench "$1" | awk -v f="$3" '{ for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }'; }
# boot_irqs KIND ROW: the sym53c8xx interrupts of that run's whole boot
boot_irqs() { mpq_line "$W/$1-$2.serial" irqs sym53c8xx; }
per() { awk -v a="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", a / n; else printf "-" }'; }

load=$(cut -d' ' -f1-3 /proc/loadavg)
run remote none
for row in $ROWS; do
    run remote "$row"
    run inprocess "$row"
done

echo "messages and interrupts per command: Linux $(basename "$GUEST" | sed 's/guest-//; s/-[0-9a-f]\{12\}$//')," \
     "TCG, QEMU $(MPQEMU_KIT=$KIT "$GUEST_DIR/sid-qemu" -version 2>/dev/null | awk 'NR == 1 { print $4 }')," \
     "$N 4 KiB O_DIRECT commands per row, one row per boot; load average at the start $load"
echo "boot alone (remote, no row): $(cut -d' ' -f4- "$W/remote-none.counts")"
printf '%-13s %6s' row cmds
for k in $KEYS; do printf ' %s' "$k"; done
printf ' %s %s\n' guest-irq inproc-irq
for row in $ROWS; do
    cmds=$(guest "$row" remote cmds)
    printf '%-13s %6s' "$row" "$cmds"
    for k in $KEYS; do
        printf " %${#k}s" "$(per $(($(count remote "$row" "$k") - $(count remote none "$k"))) "$cmds")"
    done
    printf " %9s %10s\n" "$(per "$(guest "$row" remote symirq)" "$cmds")" \
        "$(per "$(guest "$row" inprocess symirq)" "$(guest "$row" inprocess cmds)")"
done
echo "whole boots, the remote's INTx signals against the guest's sym53c8xx interrupts:"
for row in none $ROWS; do
    echo "  $row: $(count remote "$row" intx_signals) $(boot_irqs remote "$row")"
done
echo "per SCSI command of the row (the guest's iorequest_cnt): the remote's counts for the client" \
     "less those of the boot alone; guest-irq, inproc-irq: sym53c8xx interrupts the guest took" \
     "during the row, over vfio-user and with QEMU's in-process lsi53c895a"
