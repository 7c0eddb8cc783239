#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Real VMs through mpqemu-launch (Debian sid's QEMU under TCG, vfio-user):
#  A. one remote process per controller: a raw disk and a CD on one, a
#     qcow2 disk on the other, both confined (the default).  QEMU's own QMP
#     client (python3-qemu-qmp) checks query-block, changes the CD to an
#     image in the remote's media directory while the guest waits for it
#     (DEVICE_TRAY_MOVED, the guest reads the new medium) and reads the
#     bytes the guest moved in query-blockstats.  The guest powers off: the
#     launcher exits 0 and leaves nothing behind.
#  B. perf mode, two controllers in one process; the remote is killed with
#     SIGKILL while the guest writes: the launcher reports it (status, last
#     log lines), stops the VM, exits 3, leaves nothing behind, and the qcow2
#     image the guest was writing is consistent.
. "$(dirname "$0")/../functional/tap.sh"
. "$(dirname "$0")/lib.sh"
: "${MPQEMU_REMOTE:?}" "${MPQEMU_LAUNCH:?}"

if ! guest_kit; then
    tap_result 1 "guest kit (Debian sid's QEMU, the guest kernel) builds"
    tap_done
    exit 1
fi
guest_workdir
RAW0=131072 RAW1=98304 CD=20480 LOOP=65536
truncate -s $((RAW0 * 512)) "$W/raw0.img"
qemu-img create -q -f qcow2 "$W/disk1.qcow2" $((RAW1 * 512))
qemu-img create -q -f qcow2 -o cluster_size=16k "$W/loop.qcow2" $((LOOP * 512))
head -c $((CD * 512)) /dev/urandom >"$W/cd1.iso"
mkdir "$W/media"      # r0's media directory: its monitor may change the CD to files there
head -c $((CD * 1024)) /dev/urandom >"$W/media/cd2.iso"
cp "$GUEST_DIR/qmp-check.py" "$W/"

common() { # LOG_DIR APPEND
    cat <<EOF
  "qemu": ["$GUEST_DIR/sid-qemu"], "qemu-root": "$QEMU_ROOT", "remote": "$MPQEMU_REMOTE",
  "accel": "tcg", "memory": "512M", "kernel": "$W/vmlinuz", "initrd": "$W/initrd",
  "append": "console=ttyS0 quiet $2",
  "qemu-args": ["-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio"],
  "log-dir": "$1", "run-dir": "$W/run",
EOF
}

cat >"$W/vm-a.json" <<EOF
{
$(common "$W/logs-a" "mpq.test=disks mpq.raw=$RAW0,$RAW1 mpq.cd=$CD mpq.cdwait=60")
  "remotes": [
    {"name": "r0",
     "drives": [{"id": "d0", "file": "$W/raw0.img", "format": "raw"},
                {"id": "cd", "file": "$W/cd1.iso", "format": "raw", "readonly": true}],
     "devices": [{"driver": "lsi53c895a", "id": "lsi0"},
                 {"driver": "scsi-hd", "id": "sd0", "drive": "d0", "bus": "lsi0.0", "scsi-id": 0},
                 {"driver": "scsi-cd", "id": "cd0", "drive": "cd", "bus": "lsi0.0", "scsi-id": 2}],
     "media-dirs": ["$W/media"],
     "args": ["-qmp", "unix:$W/run/r0.qmp,server,nowait"]},
    {"name": "r1",
     "drives": [{"id": "d1", "file": "$W/disk1.qcow2"}],
     "devices": [{"driver": "lsi53c895a", "id": "lsi1"},
                 {"driver": "scsi-hd", "id": "sd1", "drive": "d1", "bus": "lsi1.0", "scsi-id": 0}]}
  ]
}
EOF

# nothing_left NAME: no process runs on this test's files; the run directory
# (sockets, memory) is gone.
nothing_left() {
    left=$(pgrep -af "$W/")
    [ -z "$left" ] && [ ! -e "$W/run" ]
    tap_result $? "$1: nothing is left: no process, no run directory, no socket"
    [ -z "$left" ] || printf '%s\n' "$left" | sed 's/^/# left: /'
}

# --- A: one process per controller, QMP with qemu.qmp ------------------------------
timeout 600 "$MPQEMU_LAUNCH" "$W/vm-a.json" >"$W/serial-a.log" 2>"$W/launch-a.err" &
launcher=$!
wait_socket "$W/run/r0.qmp"
tap_result $? "A: the launcher starts the remotes (r0's QMP socket is there)"
# The client runs in the chroot; the new medium's path is the remote's (the host's).
timeout 300 chroot "$QEMU_ROOT" python3 "$IW/qmp-check.py" "$IW/run/r0.qmp" "$IW/serial-a.log" \
    "$W/media/cd2.iso" >"$W/qmp.out" 2>&1
wait $launcher
status=$?
sed 's/^/# qmp: /' "$W/qmp.out"
expect "A: the launcher exits 0 after the guest powers off" $status 0
q() { grep "^$1" "$W/qmp.out" | tr '\n' ';'; }
expect "A: qemu.qmp connects and sees mpqemu-remote" "$(q greeting)" \
    "greeting-version: mpqemu-remote ${MPQEMU_VERSION:?};"
expect "A: query-block shows the drives with files and formats" "$(q block)" \
    "block: d0 raw0.img raw fixed;block: cd cd1.iso raw removable;"
expect "A: changing the CD raises DEVICE_TRAY_MOVED, open then closed" "$(q event)" \
    "event: DEVICE_TRAY_MOVED cd0 open;event: DEVICE_TRAY_MOVED cd0 closed;"
expect "A: the guest reads the new medium" "$(q guest-cd)" \
    "guest-cd: $(head -c 1048576 "$W/media/cd2.iso" | md5sum | cut -d' ' -f1);"
d0=$(grep '^stats: d0 ' "$W/qmp.out")
[ -n "$d0" ] && [ "$(echo "$d0" | awk '{print $3}')" -ge 8388608 ] &&
    [ "$(echo "$d0" | awk '{print $4}')" -ge 8388608 ]
tap_result $? "A: query-blockstats counts the 8 MiB the guest wrote and read ($d0)"
expect "A: query-blockstats times the guest's requests, keeps its furthest write, as QEMU" \
    "$(q accounting)" "accounting: d0 sd0 timed highest-write idle;"
for size in $RAW0 $RAW1; do
    expect "A: disk of $size sectors: the guest's pattern reads back" \
        "$(mpq_line "$W/serial-a.log" raw $size readback)" \
        "$(mpq_line "$W/serial-a.log" raw $size pattern)"
done
expect "A: the pattern is in the raw image at 16 MiB" \
    "$(dd if="$W/raw0.img" bs=1M skip=16 count=8 2>/dev/null | md5sum | cut -d' ' -f1)" \
    "$(mpq_line "$W/serial-a.log" raw $RAW0 pattern)"
qemu-img check -q "$W/disk1.qcow2"
tap_result $? "A: the qcow2 disk of the second remote checks clean"
[ -e "$W/logs-a/r0.log" ] && [ -e "$W/logs-a/r1.log" ] && [ -e "$W/logs-a/qemu.log" ]
tap_result $? "A: one log file per process"
nothing_left "A"

# --- B: perf mode, SIGKILL to the remote mid-I/O ---------------------------------------
cat >"$W/vm-b.json" <<EOF
{
$(common "$W/logs-b" "mpq.test=disks mpq.raw=$RAW1 mpq.loop=$LOOP")
  "on-remote-exit": "stop",
  "remotes": [
    {"name": "perf",
     "drives": [{"id": "d0", "file": "$W/loop.qcow2"}, {"id": "d1", "file": "$W/disk1.qcow2"}],
     "devices": [{"driver": "lsi53c895a", "id": "lsi0"}, {"driver": "lsi53c895a", "id": "lsi1"},
                 {"driver": "scsi-hd", "id": "sd0", "drive": "d0", "bus": "lsi0.0", "scsi-id": 0},
                 {"driver": "scsi-hd", "id": "sd1", "drive": "d1", "bus": "lsi1.0", "scsi-id": 1}]}
  ]
}
EOF
timeout 600 "$MPQEMU_LAUNCH" "$W/vm-b.json" >"$W/serial-b.log" 2>"$W/launch-b.err" &
launcher=$!
i=0
until grep -aq '^MPQ loop started' "$W/serial-b.log" || [ $i -ge 600 ]; do
    sleep 0.2
    i=$((i + 1))
done
grep -aq '^MPQ loop started' "$W/serial-b.log"
tap_result $? "B: the guest writes to a disk of the perf-mode remote"
sleep 2
remote=$(pgrep -f "$W/loop.qcow2" | head -1)
kill -9 "$remote"
wait $launcher
status=$?
sed 's/^/# launcher: /' "$W/launch-b.err"
expect "B: the launcher exits 3 (a remote died)" $status 3
grep -q "remote 'perf' (pid $remote) was killed by signal 9" "$W/launch-b.err"
tap_result $? "B: the launcher reports the remote's death and its signal"
grep -q "last lines of $W/logs-b/perf.log" "$W/launch-b.err" &&
    grep -q "stopping the VM (on-remote-exit: stop)" "$W/launch-b.err"
tap_result $? "B: with its last log lines, and stops the VM"
nothing_left "B"
out=$(qemu-img check "$W/loop.qcow2" 2>&1)
st=$?
[ $st -eq 0 ] || [ $st -eq 3 ]
tap_result $? "B: the qcow2 image written at the kill is consistent (exit $st)"
[ $st -eq 0 ] || [ $st -eq 3 ] || printf '%s\n' "$out" | head | sed 's/^/# /'
tap_done
