#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A device process that dies comes back under a running Linux guest, whose
# I/O goes on: mpqemu-launch with "on-remote-exit": "restart", the remote
# confined (the default), two LSI53C895A controllers in it (perf mode).
#
#   restart.sh vfio-user       Debian sid's QEMU 11, vfio-user-pci, as root
#   restart.sh multi-process   bookworm's QEMU 7.2, x-pci-proxy-dev, under TCG,
#                              launched by a normal user; its proxy delivers no
#                              interrupt without KVM, so the guest polls them
#                              (irqpoll nolapic: the shared handlers run on each
#                              timer tick)
#
# The guest (tests/guest/init, mpq.direct) runs mpq-io for 45 s: checked
# O_DIRECT writes and reads at random offsets over 48 MiB of a fresh qcow2
# disk (16 KiB clusters: it allocates all along), and checked files on an
# ext4 file system (made here) whose disk is an NBD export (qemu-nbd on a
# unix socket, its directory bound into the remote's view).  Meanwhile
# restart-run.py kills the device process 6 times: once in the middle of a
# qcow2 cluster allocation (kill-in-allocation: at the first io_uring_enter
# after the image grew, so a new cluster is there and its L2 entry does not
# point to it yet), then 5 times with SIGKILL at random moments, each
# once the last one's successor serves and the guest's I/O has gone on.
# Afterwards: no checksum mismatch and no I/O error in the guest's
# programs or kernel log, every file as the guest last wrote it, e2fsck
# -fn and qemu-img check clean (leaks allowed), QEMU the same process
# throughout, one restart per kill in the launcher's report, and the guest's
# kernel log shows each restart: both controllers' "SCSI BUS reset
# detected.".  Prints the time from each kill to the guest's next
# completed I/O.
. "$(dirname "$0")/../functional/tap.sh"
. "$(dirname "$0")/../functional/confinement.sh"
. "$(dirname "$0")/lib.sh"
: "${MPQEMU_REMOTE:?}" "${MPQEMU_LAUNCH:?}" "${MPQEMU_KILL_IN_ALLOCATION:?}"
PROTOCOL=${1:?usage: restart.sh vfio-user|multi-process}
# Disks in sectors, each its own size.  Each kill pauses the guest's I/O about 3.5 s (its
# driver's settle delay) and the next waits for I/O again: 45 s leave room for 6 on a slow host.
DIRECT=131072 EXT4=196608 MIB=48 RUN_S=45 KILLS=5

if ! guest_kit; then
    tap_result 1 "guest kit (Debian sid's QEMU, the guest kernel) builds"
    tap_done
    exit 1
fi
guest_workdir
qemu-img create -q -f qcow2 -o cluster_size=16k "$W/direct.qcow2" $((DIRECT * 512))
truncate -s $((EXT4 * 512)) "$W/fs.img"
mkfs.ext4 -q -F "$W/fs.img"
mkdir "$W/nbd"

# A normal user launches the multi-process VM: its own copies of the binaries, its files.
run_as=""
launch=$MPQEMU_LAUNCH remote=$MPQEMU_REMOTE
if [ "$PROTOCOL" = multi-process ]; then
    bin=$(user_copy "$W/bin" "$MPQEMU_LAUNCH" "$MPQEMU_REMOTE")
    launch=$bin/mpqemu-launch remote=$bin/mpqemu-remote
    chown -R "$NORMAL_UID:$NORMAL_UID" "$W"
    run_as=as_user
fi
$run_as qemu-nbd --fork --persistent --pid-file="$W/nbd/pid" -k "$W/nbd/fs.sock" -f raw "$W/fs.img"
nbd_server=$(cat "$W/nbd/pid")
REMOTE_PIDS="$REMOTE_PIDS $nbd_server"

append="console=ttyS0 quiet mpq.direct=$DIRECT mpq.ext4=$EXT4 mpq.mib=$MIB mpq.seconds=$RUN_S mpq.seed=$$"
if [ "$PROTOCOL" = vfio-user ]; then
    qemu="\"qemu\": [\"$GUEST_DIR/sid-qemu\"], \"qemu-root\": \"$QEMU_ROOT\""
else
    qemu="\"qemu\": \"${QEMU:-qemu-system-x86_64}\""
    append="$append irqpoll nolapic"
fi
cat >"$W/vm.json" <<EOF
{
  $qemu, "remote": "$remote", "protocol": "$PROTOCOL",
  "accel": "tcg", "memory": "512M", "kernel": "$W/vmlinuz", "initrd": "$W/initrd",
  "append": "$append",
  "qemu-args": ["-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio"],
  "log-dir": "$W/logs", "run-dir": "$W/run",
  "on-remote-exit": "restart", "restart": {"max": 10, "window": 60},
  "remotes": [
    {"name": "perf",
     "drives": [{"id": "d0", "file": "$W/direct.qcow2"},
                {"id": "d1", "file": "nbd+unix:///?socket=$W/nbd/fs.sock", "format": "raw"}],
     "devices": [{"driver": "lsi53c895a", "id": "lsi0"}, {"driver": "lsi53c895a", "id": "lsi1"},
                 {"driver": "scsi-hd", "id": "sd0", "drive": "d0", "bus": "lsi0.0", "scsi-id": 0},
                 {"driver": "scsi-hd", "id": "sd1", "drive": "d1", "bus": "lsi1.0", "scsi-id": 1}]}
  ]
}
EOF
[ -z "$run_as" ] || chown "$NORMAL_UID:$NORMAL_UID" "$W/vm.json"

# The launcher runs under restart-run.py, which reads the console and kills; as the user if so.
cat >"$W/launch-as" <<EOF
#!/bin/sh
exec ${run_as:+setpriv --reuid $NORMAL_UID --regid $NORMAL_UID --clear-groups} "$launch" "\$@"
EOF
chmod 755 "$W/launch-as"
timeout 900 python3 "$GUEST_DIR/restart-run.py" --launch "$W/launch-as" --json "$W/vm.json" \
    --serial "$W/serial.log" --stderr "$W/launch.err" --tracer "$MPQEMU_KILL_IN_ALLOCATION" \
    --alloc-image "$W/direct.qcow2" --kills $KILLS >"$W/run.out" 2>&1
sed 's/^/# /' "$W/run.out"
run() { grep "^$1" "$W/run.out" | head -1; }

expect "the launcher exits 0 once the guest has powered off" "$(run launcher-status)" \
    "launcher-status 0"
! grep -q '^error' "$W/run.out"
tap_result $? "every kill was made while the guest's I/O ran"
expect "6 kills: 1 in a qcow2 cluster allocation, 5 at random moments" "$(run kills)" \
    "kills $((KILLS + 1)) alloc 1"
grep -q "^kill 1 alloc .*killed [0-9]* at \(io_uring_enter\|pwritev\), $W/direct.qcow2 grown from " "$W/run.out"
tap_result $? "the allocation kill stopped the device process once the qcow2 image grew"
qemu=$(run "qemu pid" | awk '{print $3}')
expect "QEMU was never restarted: the same process from start to end" \
    "$(run "qemu pid") $(grep -c "VM started: QEMU pid $qemu," "$W/launch.err")" \
    "qemu pid $qemu same yes 1"
grep -q "remote 'perf': its device process was restarted $((KILLS + 1)) times" "$W/launch.err"
tap_result $? "the launcher reports one restart per kill"
for c in lsi0 lsi1; do
    expect "$c came back after every kill, its registers restored" \
        "$(grep -c "mpqemu-remote: $c: restarted: registers restored" "$W/logs/perf.log")" \
        $((KILLS + 1))
done

expect "the guest's workload ran to its end without a failure" \
    "$(grep -a '^MPQ io \(ok\|failed\)' "$W/serial.log" | tr -d '\r')" "MPQ io ok"
for worker in 0 1; do
    line=$(grep -a "^MPQ direct $worker writes" "$W/serial.log" | tr -d '\r')
    printf '%s\n' "$line" | grep -q ' mismatches 0 errors 0$'
    tap_result $? "O_DIRECT worker $worker: no checksum mismatch, no I/O error (${line#MPQ direct $worker })"
done
line=$(grep -a '^MPQ files written' "$W/serial.log" | tr -d '\r')
printf '%s\n' "$line" | grep -q ' mismatches 0 errors 0$'
tap_result $? "ext4 files: no checksum mismatch, no I/O error (${line#MPQ files })"
bad=$(grep -a '^MPQ kmsg' "$W/serial.log" |
      grep -E 'I/O error|blk_update_request|Buffer I/O|EXT4-fs (error|warning)|journal|timing out|abort')
[ -z "$bad" ]
tap_result $? "the guest's kernel logged no I/O error, abort or file system error"
[ -z "$bad" ] || printf '%s\n' "$bad" | sed 's/^/# /'
grep -a '^MPQ kmsg.*SCSI BUS reset detected' "$W/serial.log" | tr -d '\r' |
    sed 's/^MPQ kmsg /# guest kernel: /'
for sym in sym0 sym1; do
    expect "the guest's kernel log shows each restart: $sym: SCSI BUS reset detected" \
        "$(grep -ac "^MPQ kmsg .*$sym: SCSI BUS reset detected" "$W/serial.log")" $((KILLS + 1))
done

out=$(qemu-img check "$W/direct.qcow2" 2>&1)
status=$?
[ $status -eq 0 ] || [ $status -eq 3 ]
tap_result $? "qemu-img check: the qcow2 image is consistent (exit $status; leaks allowed)"
printf '%s\n' "$out" | grep -E 'leaked|corrupt|No errors' | sed 's/^/# /'
kill -TERM "$nbd_server"    # qemu-nbd flushes and exits
while kill -0 "$nbd_server" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' /proc/$nbd_server/stat; do
    sleep 0.05
done
out=$(e2fsck -fn "$W/fs.img" 2>&1)
status=$?
tap_result $status "e2fsck -fn: the ext4 file system is clean"
[ $status -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
files=0 wrong=""
for f in $(grep -a '^MPQ file ' "$W/serial.log" | tr -d '\r' | awk '{print $3 ":" $4 ":" $5}'); do
    name=${f%%:*} size=${f#*:} size=${size%%:*} crc=${f##*:}
    got=$(debugfs -R "cat /$name" "$W/fs.img" 2>/dev/null |
          python3 -c 'import sys, zlib; d = sys.stdin.buffer.read(); print(len(d), "%08x" % zlib.crc32(d))')
    [ "$got" = "$size $crc" ] || wrong="$wrong $name"
    files=$((files + 1))
done
[ $files -gt 0 ] && [ -z "$wrong" ]
tap_result $? "the host reads each of the guest's $files files as it last wrote them${wrong:+ (not:$wrong)}"

guest_nothing_left
if [ "$tap_failed" -ne 0 ]; then
    sed 's/^/# launcher: /' "$W/launch.err"
    tail -30 "$W/logs/perf.log" | sed 's/^/# remote: /'
    grep -av '^MPQ [cT] ' "$W/serial.log" | tail -40 | sed 's/^/# guest: /'
fi
tap_done
