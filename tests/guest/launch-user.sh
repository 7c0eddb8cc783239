#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A VM started by a normal user (a uid with no passwd entry, no groups)
# through mpqemu-launch with the default confinement: QEMU (Debian sid's,
# under TCG, in a user namespace of its own: tests/guest/sid-qemu) and the
# remote both run as that user.  Seen from the host while the guest runs,
# the remote cannot see the host's other processes (its PID namespace: its
# /proc shows itself alone, NSpid), has no network (its own network
# namespace: lo alone, down), has no capabilities and no_new_privs, and
# its root is not the host's.  The guest still boots and does I/O on both
# of the remote's disks: a raw image, and a qcow2 overlay whose backing
# file the launcher bound into the remote's view.
. "$(dirname "$0")/../functional/tap.sh"
. "$(dirname "$0")/../functional/confinement.sh"
. "$(dirname "$0")/lib.sh"
: "${MPQEMU_REMOTE:?}" "${MPQEMU_LAUNCH:?}"

if [ "$(id -u)" -ne 0 ]; then
    tap_result 1 "the test needs root to become a normal user (setpriv)"
    tap_done
    exit 1
fi
if ! guest_kit; then
    tap_result 1 "guest kit (Debian sid's QEMU, the guest kernel) builds"
    tap_done
    exit 1
fi
guest_workdir
RAW=131072 QCOW=98304
truncate -s $((RAW * 512)) "$W/raw0.img"
qemu-img create -q -f qcow2 "$W/base.qcow2" $((QCOW * 512))
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$W/overlay.qcow2"
bin=$(user_copy "$W/bin" "$MPQEMU_LAUNCH" "$MPQEMU_REMOTE" "$GUEST_DIR/sid-qemu")
chown -R "$NORMAL_UID:$NORMAL_UID" "$W"

cat >"$W/vm.json" <<JSON
{
  "qemu": ["$bin/sid-qemu"], "qemu-root": "$QEMU_ROOT", "remote": "$bin/mpqemu-remote",
  "accel": "tcg", "memory": "512M", "kernel": "$W/vmlinuz", "initrd": "$W/initrd",
  "append": "console=ttyS0 quiet mpq.test=disks mpq.raw=$RAW,$QCOW",
  "qemu-args": ["-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio"],
  "log-dir": "$W/logs", "run-dir": "$W/run",
  "remotes": [
    {"name": "r0",
     "drives": [{"id": "d0", "file": "$W/raw0.img", "format": "raw"},
                {"id": "d1", "file": "$W/overlay.qcow2"}],
     "devices": [{"driver": "lsi53c895a", "id": "lsi0"},
                 {"driver": "scsi-hd", "id": "sd0", "drive": "d0", "bus": "lsi0.0", "scsi-id": 0},
                 {"driver": "scsi-hd", "id": "sd1", "drive": "d1", "bus": "lsi0.0", "scsi-id": 1}]}
  ]
}
JSON

MPQEMU_KIT=$KIT as_user timeout 600 "$bin/mpqemu-launch" "$W/vm.json" >"$W/serial.log" 2>"$W/launch.err" &
launcher=$!
remote=$(remote_of "$W/raw0.img")
wait_sandboxed "$remote"
i=0
qemu_uid=
# Until QEMU's process is found and its status read: a match may be gone
# by the time it is read (seen once on a loaded host: an empty uid).
until qemu=$(pgrep -f "qemu-system-x86_64.*$IW/vmlinuz" | head -1) &&
      qemu_uid=$(awk '/^Uid:/ {print $2}' "/proc/$qemu/status" 2>/dev/null) &&
      [ -n "$qemu_uid" ] || [ $i -ge 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -n "$qemu_uid" ] || echo "# QEMU's process not read within 10 s: $(pgrep -af qemu-system-x86_64)"
remote_uid=$(awk '/^Uid:/ {print $2}' "/proc/$remote/status" 2>/dev/null)
nspid=$(awk '/^NSpid:/ {print NF - 1, $NF}' "/proc/$remote/status" 2>/dev/null)
procs=$(its_processes "$remote")
net=$(netdevs "$remote")
got=$(confinement "$remote")
wait $launcher
status=$?

expect "the remote and QEMU run as the normal user" "$remote_uid $qemu_uid" \
    "$NORMAL_UID $NORMAL_UID"
expect "the remote cannot see the host's other processes: its /proc shows itself alone" \
    "$procs" "1 "
expect "the remote is pid 1 of a PID namespace of its own (NSpid: 2 levels, 1 inside)" \
    "$nspid" "2 1"
expect "the remote has no network: its own namespace, lo alone and down" "$net" "lo<LOOPBACK> "
expect "the remote: own user, mount, net, pid namespaces; no_new_privs; no capabilities; its own root" \
    "$got" "mnt=own net=own pid=own user=own nnp=1 capeff=0000000000000000 capbnd=0000000000000000 root=own"
expect "the launcher exits 0 after the guest powers off" "$status" 0
for size in $RAW $QCOW; do
    expect "disk of $size sectors: the guest's pattern reads back" \
        "$(mpq_line "$W/serial.log" raw $size readback)" "$(mpq_line "$W/serial.log" raw $size pattern)"
done
expect "the pattern is in the raw image at 16 MiB" \
    "$(dd if="$W/raw0.img" bs=1M skip=16 count=8 2>/dev/null | md5sum | cut -d' ' -f1)" \
    "$(mpq_line "$W/serial.log" raw $RAW pattern)"
qemu-img check -q "$W/overlay.qcow2" && [ "$(qemu-img map --output=json "$W/base.qcow2" |
    grep -c '"data": true')" -eq 0 ]
tap_result $? "the qcow2 overlay checks clean; its backing file was only read"
guest_nothing_left
if [ "$tap_failed" -ne 0 ]; then
    sed 's/^/# launcher: /' "$W/launch.err"
    sed 's/^/# remote: /' "$W/logs/r0.log" 2>/dev/null
    grep -av '^MPQ' "$W/serial.log" | tail -20 | sed 's/^/# guest: /'
fi
tap_done
