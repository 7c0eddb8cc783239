#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The multi-process path with stock QEMU, carrying a real guest's I/O:
# Debian bookworm's QEMU 7.2 with x-pci-proxy-dev, under TCG, attached to
# mpqemu-remote by inherited sockets (tests/guest/proxy-run.py).  The stock
# proxy delivers interrupts only through KVM irqfds, so without KVM none
# reach the guest; its kernel is booted with "irqpoll nolapic" and then runs
# the shared interrupt handlers (sym53c8xx's among them) on every timer
# interrupt (IRQ 0: the HPET in legacy mode on QEMU's pc machine).
#
# Two controllers, each with a raw and a qcow2 disk, in both of the original
# design's modes: normal (one remote process per controller) and perf (one
# process, both controllers, a proxy and socket each).  On every disk the
# guest writes an 8 MiB random pattern and 64 scattered 4 KiB blocks with
# O_DIRECT and reads them back, or makes ext4, writes files, remounts and
# rereads them; the host then checks the data in the images, e2fsck -fn,
# qemu-img check.  A corrupted copy of
# each image must fail the same checks, so that they are known to catch one.
. "$(dirname "$0")/../functional/tap.sh"
. "$(dirname "$0")/lib.sh"
: "${MPQEMU_REMOTE:?}"
QEMU=${QEMU:-qemu-system-x86_64}

if ! guest_kit; then
    tap_result 1 "guest kit builds"
    tap_done
    exit 1
fi
guest_workdir

# Every disk has its own size: the guest finds them by it.
RAW_DATA=196608 QCOW_DATA=229376 QCOW_FS=327680 RAW_FS=294912
APPEND="console=ttyS0 quiet irqpoll nolapic mpq.test=disks mpq.raw=$RAW_DATA,$QCOW_DATA mpq.raw4k=1"
APPEND="$APPEND mpq.fs=$QCOW_FS,$RAW_FS mpq.fstype=ext4"

# image_as_raw IMAGE FMT: a raw file with the image's guest-visible contents.
image_as_raw() {
    if [ "$2" = raw ]; then
        echo "$1"
    else
        qemu-img convert -O raw "$1" "$1.raw" && echo "$1.raw"
    fi
}

# The 8 MiB at 16 MiB, where the guest wrote its pattern.
pattern_sum() { dd if="$1" bs=1M skip=16 count=8 2>/dev/null | md5sum | cut -d' ' -f1; }

# The guest's scattered 4 KiB blocks (init's raw_4k), in the order written.
blocks_4k_sum() {
    k=0
    while [ $k -lt 64 ]; do
        dd if="$1" bs=4k skip=$((2048 + k * 613 % 2048)) count=1 2>/dev/null
        k=$((k + 1))
    done | md5sum | cut -d' ' -f1
}

# check_data MODE SIZE IMAGE FMT
check_data() {
    pattern=$(mpq_line "$W/serial.log" raw "$2" pattern)
    expect "$1 $4: the guest reads its O_DIRECT pattern back" \
        "$(mpq_line "$W/serial.log" raw "$2" readback)" "$pattern"
    raw=$(image_as_raw "$3" "$4")
    expect "$1 $4: the image holds the pattern at 16 MiB" "$(pattern_sum "$raw")" "$pattern"
    expect "$1 $4: the guest reads its 64 scattered 4 KiB O_DIRECT blocks back" \
        "$(mpq_line "$W/serial.log" raw "$2" 4k-readback)" \
        "$(mpq_line "$W/serial.log" raw "$2" 4k-pattern)"
    expect "$1 $4: the image holds the 4 KiB blocks where the guest wrote them" \
        "$(blocks_4k_sum "$raw")" "$(mpq_line "$W/serial.log" raw "$2" 4k-pattern)"
    # One byte changed in the pattern must show.
    cp "$raw" "$W/bad.img"
    printf '\377' | dd of="$W/bad.img" bs=1 seek=$((20 * 1048576 + 12345)) conv=notrunc 2>/dev/null
    printf '\000' | dd of="$W/bad.img" bs=1 seek=$((20 * 1048576 + 12346)) conv=notrunc 2>/dev/null
    [ "$(pattern_sum "$W/bad.img")" != "$pattern" ]
    tap_result $? "$1 $4: the pattern check catches a corrupted byte"
    rm -f "$W/bad.img"
}

# check_fs MODE IMAGE FMT: the ext4 the guest made, from the host.
check_fs() {
    if [ "$3" = qcow2 ]; then
        out=$(qemu-img check "$2" 2>&1)
        st=$?
        [ $st -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'
        tap_result $st "$1 qcow2 fs: qemu-img check finds the image clean"
    fi
    raw=$(image_as_raw "$2" "$3")
    features=$(dumpe2fs -h "$raw" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
    case " $features " in
        *" has_journal "*" extent "*) tap_result 0 "$1 $3 fs: ext4 with a journal and extents" ;;
        *) echo "# features: $features"; tap_result 1 "$1 $3 fs: ext4 with a journal and extents" ;;
    esac
    out=$(e2fsck -fn "$raw" 2>&1)
    st=$?
    [ $st -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'
    tap_result $st "$1 $3 fs: e2fsck -fn finds it clean"
    for f in a b c; do
        sum=$(debugfs -R "cat /$f" "$raw" 2>/dev/null | md5sum | cut -d' ' -f1)
        grep -aq "^MPQ fs written $f $sum" "$W/serial.log"
        tap_result $? "$1 $3 fs: the host reads file $f as the guest wrote it"
    done
    # The root directory's inode cleared must make e2fsck fail.
    cp "$raw" "$W/bad.img"
    debugfs -w -R "clri <2>" "$W/bad.img" >/dev/null 2>&1
    e2fsck -fn "$W/bad.img" >/dev/null 2>&1
    [ $? -ne 0 ]
    tap_result $? "$1 $3 fs: e2fsck -fn fails on a copy with the root inode cleared"
    rm -f "$W/bad.img"
}

for mode in normal perf; do
    rm -f "$W"/*.img "$W"/*.qcow2 "$W"/*.raw "$W"/*.log
    truncate -s $((RAW_DATA * 512)) "$W/data.img"
    qemu-img create -q -f qcow2 "$W/data.qcow2" $((QCOW_DATA * 512))
    qemu-img create -q -f qcow2 "$W/fs.qcow2" $((QCOW_FS * 512))
    truncate -s $((RAW_FS * 512)) "$W/fs.img"
    python3 "$GUEST_DIR/proxy-run.py" --workdir "$W" --append "$APPEND" --mode $mode \
        --remote "ours:$MPQEMU_REMOTE" --qemu "$QEMU" --timeout 900 \
        --controller "raw:$W/data.img,qcow2:$W/fs.qcow2" \
        --controller "qcow2:$W/data.qcow2,raw:$W/fs.img" >"$W/run.log" 2>&1
    expect "$mode: the guest runs its workload to the end" \
        "$(sed -n 's/^guest-done //p' "$W/run.log")" yes
    expect "$mode: QEMU 7.2 exits 0 after the guest powers off" \
        "$(sed -n 's/^qemu-status //p' "$W/run.log")" 0
    want="remote-0-status 0"
    [ $mode = normal ] && want="$want remote-1-status 0"
    expect "$mode: every remote exits 0 when its proxies go away" \
        "$(grep '^remote-' "$W/run.log" | tr '\n' ' ' | sed 's/ $//')" "$want"
    hosts=$(grep -a '^MPQ disk ' "$W/serial.log" | sed 's/.* host //' | tr -d '\r' | sort -u | wc -l)
    expect "$mode: four disks on two SCSI hosts" \
        "$(grep -ac '^MPQ disk ' "$W/serial.log") $hosts" "4 2"
    ! grep -a '^MPQ .*\(fail\|no-disk\|timeout\)' "$W/serial.log" | sed 's/^/# /' | grep -q .
    tap_result $? "$mode: the guest reports no failed step"

    check_data $mode $RAW_DATA "$W/data.img" raw
    check_data $mode $QCOW_DATA "$W/data.qcow2" qcow2
    out=$(qemu-img check "$W/data.qcow2" 2>&1)
    st=$?
    [ $st -ne 0 ] && printf '%s\n' "$out" | sed 's/^/# /'
    tap_result $st "$mode qcow2: qemu-img check finds the data image clean"
    for f in a b c; do
        expect "$mode: file $f reads back the same after a remount, on both file systems" \
            "$(grep -a "^MPQ fs reread $f " "$W/serial.log" | tr -d '\r' | cut -d' ' -f5 | tr '\n' ' ')" \
            "$(grep -a "^MPQ fs written $f " "$W/serial.log" | tr -d '\r' | cut -d' ' -f5 | tr '\n' ' ' |
               awk 'NF == 2')"
    done
    check_fs $mode "$W/fs.qcow2" qcow2
    check_fs $mode "$W/fs.img" raw

    if [ "$tap_failed" -ne 0 ]; then
        sed 's/^/# run: /' "$W/run.log"
        grep -av '^MPQ' "$W/serial.log" | tail -30 | sed 's/^/# guest: /'
        cat "$W"/remote-*.log | sed 's/^/# remote: /'
    fi
done
tap_done
