#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# mpqemu-remote's monitors through socat, as the original design drives
# them: QMP (negotiation, ids, errors, queries, QOM, events, medium change,
# resize, quit) and HMP, on unix, tcp and stdio, several at once; bad input
# and clients that vanish or never read harm nothing.
. "$(dirname "$0")/tap.sh"
R=${MPQEMU_REMOTE:?}
P=${MPQEMU_PROBE:?}
MPQEMU_BENCH=${MPQEMU_BENCH:-$(dirname "$P")/mpqemu-bench}
tmp=$(mktemp -d /tmp/mpqemu-mon.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT

if ! command -v socat >/dev/null || ! command -v qemu-img >/dev/null; then
    tap_result 1 "socat and qemu-img are installed"
    tap_done
    exit 1
fi
qemu-img create -q -f qcow2 "$tmp/disk.qcow2" 64M
head -c 2M /dev/urandom >"$tmp/cd1.iso"
mkdir "$tmp/media"
head -c 4M /dev/urandom >"$tmp/media/cd2.iso"
head -c 4M /dev/urandom >"$tmp/outside.iso"
port=$((20000 + $$ % 20000))

start_remote() { # extra options...
    "$R" -device lsi53c895a,id=lsi0 \
        -drive id=d0,file="$tmp/disk.qcow2" \
        -drive id=cd,file="$tmp/cd1.iso",format=raw,readonly=on \
        -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0 \
        -device scsi-cd,id=cd0,drive=cd,bus=lsi0.0,scsi-id=2 \
        -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$tmp/lsi0.sock" \
        -name guest=vm1,debug-threads=on -sandbox on,allow-dir="$tmp/media" \
        "$@" 2>>"$tmp/remote.log" &
    pid=$!
    i=0
    while [ ! -S "$tmp/qmp.sock" ] || [ ! -S "$tmp/hmp.sock" ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || return 1
        sleep 0.05
    done
}

# qmp [ADDRESS] LINES...: a QMP session (negotiated first unless NONEG=1); prints all output.
qmp() {
    addr=UNIX-CONNECT:$tmp/qmp.sock
    case $1 in TCP:*|UNIX-CONNECT:*) addr=$1; shift ;; esac
    {
        [ -n "${NONEG:-}" ] || echo '{"execute":"qmp_capabilities"}'
        for line in "$@"; do echo "$line"; done
        sleep 0.3
    } | socat -t 0.5 - "$addr"
}

hmp() {
    { for line in "$@"; do echo "$line"; done; sleep 0.3; } |
        socat -t 0.5 - UNIX-CONNECT:"$tmp/hmp.sock" | tr -d '\r'
}

# check NAME OUTPUT PATTERN...: every extended regex matches the output.
check() {
    name=$1 out=$2
    shift 2
    for pat in "$@"; do
        if ! printf '%s\n' "$out" | grep -Eq -- "$pat"; then
            printf '%s\n' "$out" | head -20 | sed 's/^/# /'
            echo "# missing: $pat"
            tap_result 1 "$name"
            return
        fi
    done
    tap_result 0 "$name"
}

start_remote -qmp unix:"$tmp/qmp.sock",server,nowait \
    -qmp tcp:127.0.0.1:$port,server=on,wait=off \
    -monitor unix:"$tmp/hmp.sock",server,nowait
tap_result $? "the remote starts with two QMP monitors and an HMP monitor"

# The project's version (meson.build; MPQEMU_VERSION from tests/meson.build), as query-version splits it.
IFS=. read -r V_MAJOR V_MINOR V_MICRO <<EOF
${MPQEMU_VERSION:?}
EOF
out=$(NONEG=1 qmp '{"execute":"query-status"}' '{"execute":"qmp_capabilities","id":1}' \
    '{"execute":"qmp_capabilities"}')
check "greeting, then commands only after qmp_capabilities" "$out" \
    "^\\{\"QMP\": \\{\"version\": \\{\"qemu\": \\{\"micro\": $V_MICRO, \"minor\": $V_MINOR, \"major\": $V_MAJOR\\}, \"package\": \"mpqemu-remote $MPQEMU_VERSION\"" \
    '"capabilities": \[\]' \
    '"CommandNotFound", "desc": "Expecting capabilities negotiation' \
    '^\{"return": \{\}, "id": 1\}' 'already complete'

out=$(qmp '{"execute":"query-status","id":"abc"}' '{"execute":"query-name","id":[1,{"x":2}]}')
check "ids are echoed; query-status and query-name" "$out" \
    '"return": \{"status": "running", "running": true\}, "id": "abc"' \
    '"return": \{"name": "vm1"\}, "id": \[1, \{"x": 2\}\]'

out=$(qmp 'garbage{' '{"execute":"query-status","id":2}' '[1,2]' '{"execute":"nosuch","id":3}' \
    '{"execute":"query-status","arguments":{"x":1},"id":4}' '{"id":5}' \
    '{"execute":"qom-get","arguments":{"path":7,"property":"x"},"id":6}' \
    '{"execute":"query-status","id":7}')
check "bad input gets error replies and the session goes on" "$out" \
    '"class": "GenericError", "desc": "JSON parse error' '"return": \{"status": "running".*"id": 2' \
    'QMP input must be a JSON object' \
    '"id": 3, "error": \{"class": "CommandNotFound", "desc": "The command nosuch has not been found"' \
    "\"id\": 4, .*Parameter 'x' is unexpected" "\"id\": 5, .*lacks member 'execute'" \
    "\"id\": 6, .*Invalid parameter type for 'path', expected: string" \
    '"return": \{"status": "running".*"id": 7'

out=$(qmp '{"execute":"query-commands"}' '{"execute":"query-version"}')
check "query-commands and query-version" "$out" '"name": "query-block"' '"name": "qom-get"' \
    '"name": "blockdev-change-medium"' '"package": "mpqemu-remote [0-9.]+"'

out=$(qmp '{"execute":"query-block"}')
check "query-block: drives with their files and formats" "$out" \
    '"device": "d0", "locked": false, "removable": false, "inserted": \{' \
    "\"file\": \"$tmp/disk.qcow2\"\\}, \"qdev\": \"sd0\"" '"node-name": "d0"' '"ro": false' \
    '"drv": "qcow2"' '"virtual-size": 67108864' \
    '"device": "cd", "locked": false, "removable": true,.*"qdev": "cd0", "tray_open": false' \
    '"drv": "raw"'

out=$(qmp '{"execute":"query-pci"}')
check "query-pci: the controller's ids, class and BARs" "$out" \
    '"class_info": \{"class": 256, "desc": "SCSI controller"\}' \
    '"id": \{"device": 18, "subsystem-vendor": 0, "vendor": 4096, "subsystem": 4096\}' \
    '"qdev_id": "lsi0"' '"bar": 0, "size": 256, "address": -1, "type": "io"' \
    '"bar": 2, "size": 8192, "address": -1, "type": "memory"'

out=$(qmp '{"execute":"qom-list","arguments":{"path":"/machine/peripheral"}}' \
    '{"execute":"qom-list","arguments":{"path":"/machine/peripheral/sd0"}}' \
    '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/cd0","property":"scsi-id"}}' \
    '{"execute":"qom-get","arguments":{"path":"sd0","property":"type"}}' \
    '{"execute":"qom-get","arguments":{"path":"sd0","property":"nosuch"}}' \
    '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/zz","property":"type"}}')
check "qom-list and qom-get on the devices" "$out" \
    '\{"name": "lsi0", "type": "child<lsi53c895a>"\}' '\{"name": "cd0", "type": "child<scsi-cd>"\}' \
    '\{"name": "scsi-id", "type": "uint64"\}' '^\{"return": 2\}' '^\{"return": "scsi-hd"\}' \
    "Property 'scsi-hd.nosuch' not found" '"class": "DeviceNotFound"'

out=$(qmp '{"execute":"eject","arguments":{"id":"cd0"}}' '{"execute":"query-block"}' \
    "{\"execute\":\"blockdev-change-medium\",\"arguments\":{\"id\":\"cd0\",\"filename\":\"$tmp/media/cd2.iso\",\"format\":\"raw\"}}" \
    '{"execute":"query-block"}' '{"execute":"eject","arguments":{"device":"d0"}}' \
    '{"execute":"blockdev-change-medium","arguments":{"id":"cd0","filename":"/nonexistent.iso"}}' \
    '{"execute":"eject","arguments":{"id":"lsi0"}}' \
    '{"execute":"eject","arguments":{"id":"cd0","device":"cd"}}')
check "eject and blockdev-change-medium move the tray, with events" "$out" \
    '^\{"timestamp": \{"seconds": [0-9]+, "microseconds": [0-9]+\}, "event": "DEVICE_TRAY_MOVED", "data": \{"device": "cd", "tray-open": true, "id": "cd0"\}\}' \
    '\{"io-status": "ok", "device": "cd", "locked": false, "removable": true, "qdev": "cd0", "tray_open": true, "type": "unknown"\}' \
    '"event": "DEVICE_TRAY_MOVED", "data": \{"device": "cd", "tray-open": false, "id": "cd0"\}' \
    '"virtual-size": 4194304, "filename": "[^"]*cd2.iso"' "Device 'd0' is not removable" \
    "Could not open '/nonexistent.iso': No such file or directory" \
    '"class": "GenericError", "desc": "Device does not have a block device backend"' \
    "Need exactly one of 'device' and 'id'"

# The sandbox: a medium outside -sandbox allow-dir is refused, the process goes on.
out=$(qmp "{\"execute\":\"blockdev-change-medium\",\"arguments\":{\"id\":\"cd0\",\"filename\":\"$tmp/outside.iso\",\"format\":\"raw\"}}" \
    '{"execute":"query-sandbox"}' '{"execute":"query-status"}')
check "sandbox: a medium outside allow-dir is refused; query-sandbox says what is enforced" \
    "$out" "Could not open '.*outside.iso': Permission denied" \
    '"enabled": true' '"enforced": true' '"syscalls-allowed": [0-9]+' \
    '"path": "[^"]*media", "access": "media, read-only"' \
    '"running": true'

# A medium on an NBD server once confined: refused (the sandbox allows no new server).
out=$(qmp "{\"execute\":\"blockdev-change-medium\",\"arguments\":{\"id\":\"cd0\",\"filename\":\"nbd+unix:///?socket=$tmp/nbd.sock\",\"format\":\"raw\"}}" \
    '{"execute":"query-status"}')
check "sandbox: a medium on an NBD server is refused once confined, the process goes on" "$out" \
    "a drive on a nbd server can only be given at start" '"running": true'

out=$(qmp '{"execute":"block_resize","arguments":{"device":"d0","size":134217728}}' \
    '{"execute":"query-block"}' '{"execute":"block_resize","arguments":{"device":"d0","size":1024}}')
check "block_resize grows the qcow2 disk; shrinking is refused" "$out" \
    '^\{"return": \{\}\}' '"virtual-size": 134217728' 'shrinking a qcow2 image is not supported'
qemu-img info "$tmp/disk.qcow2" | grep -q 'virtual size: 128 MiB'
tap_result $? "qemu-img sees the new size"

out=$(qmp TCP:127.0.0.1:$port '{"execute":"query-blockstats"}' '{"execute":"system_reset"}')
check "the tcp monitor: query-blockstats, system_reset raises RESET" "$out" \
    '"device": "d0", "stats": \{.*"rd_bytes": 0,.*\}, "node-name": "d0", "qdev": "sd0"' \
    '"event": "RESET", "data": \{"guest": false, "reason": "host-qmp-system-reset"\}'

out=$(hmp 'info status' 'info block' 'info blockstats' 'info qtree' 'info pci' 'nosuch' \
    'eject -f cd' 'info block' 'help' "$(head -c 5000 /dev/zero | tr '\0' x)" 'info status' \
    'info sandbox')
check "HMP: banner, info status/block/blockstats/qtree/pci, eject, errors" "$out" \
    "^mpqemu-remote [0-9.]+ monitor - type 'help' for more information" \
    '\(qemu\) VM status: running' "d0 \\(d0\\): $tmp/disk.qcow2 \\(qcow2\\)" \
    'Attached to: +sd0$' 'Removable device: not locked, tray closed' \
    'd0: idle_time_ns=0$' '^Read: +0 +0 +0 +0$' 'dev: scsi-hd, id "sd0"' 'drive = "d0"' \
    'SCSI controller: PCI device 1000:0012' "unknown command: 'nosuch'" 'cd: \[not inserted\]' \
    'eject \[-f\] device' '^\(qemu\) line too long' 'sandbox: enforced' \
    'seccomp: [0-9]+ system calls allowed' "$tmp/media \\(media, read-only\\)"

out=$(hmp 'info version' 'info name' "change cd $tmp/media/cd2.iso raw" 'info block' \
    'change cd' 'block_resize d0 192' 'block_resize d0 1x' 'block_resize d0 16')
check "HMP: info version/name, change, block_resize (MiB by default) and their errors" "$out" \
    '^\(qemu\) [0-9]+\.[0-9]+\.[0-9]+mpqemu-remote [0-9.]+$' '^\(qemu\) vm1' \
    "cd \\(cd\\): $tmp/media/cd2.iso \\(raw, read-only\\)" \
    '\(qemu\) change: filename expected$' '^Try "help change" for more information$' \
    '\(qemu\) block_resize: extraneous characters at the end of line$' \
    'Error: .*disk.qcow2: shrinking a qcow2 image is not supported'
qemu-img info "$tmp/disk.qcow2" | grep -q 'virtual size: 192 MiB'
tap_result $? "HMP block_resize: qemu-img sees 192 MiB"

out=$(qmp '{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}')
check "human-monitor-command runs HMP" "$out" '"return": "VM status: running\\r\\n"'

# A client that sends half a request and goes, one that never reads its replies.
printf '{"execute":"query-' | socat -t 0.2 - UNIX-CONNECT:"$tmp/qmp.sock" >/dev/null
yes '{"execute":"query-pci"}' | head -n 40000 | socat -u -t 1 - UNIX-CONNECT:"$tmp/qmp.sock" &
flood=$!
expect_run "the device serves while a QMP client floods without reading" 0 'config read' -- \
    "$P" --iterations 200 --socket "$tmp/lsi0.sock"
wait $flood
out=$(qmp '{"execute":"query-status"}')
check "after them, the monitor still answers" "$out" '"running": true'

out=$(qmp '{"execute":"quit"}')
check "quit: SHUTDOWN event and a reply" "$out" \
    '"event": "SHUTDOWN", "data": \{"guest": false, "reason": "host-qmp-quit"\}' '^\{"return": \{\}\}'
wait $pid
tap_result $? "the remote exits 0 after quit"
pid=
[ ! -e "$tmp/qmp.sock" ] && [ ! -e "$tmp/hmp.sock" ] && [ ! -e "$tmp/lsi0.sock" ]
tap_result $? "its sockets are gone"

# SIGTERM: a connected client hears SHUTDOWN.
start_remote -qmp unix:"$tmp/qmp.sock",server,nowait -monitor unix:"$tmp/hmp.sock",server,nowait
{ echo '{"execute":"qmp_capabilities"}'; sleep 1.5; } |
    socat -t 0.5 - UNIX-CONNECT:"$tmp/qmp.sock" >"$tmp/term.out" &
listener=$!
sleep 0.5
kill -TERM $pid
wait $pid
status=$?
pid=
wait $listener
check "SIGTERM: the client hears SHUTDOWN (host-signal)" "$(cat "$tmp/term.out")" \
    '"event": "SHUTDOWN", "data": \{"guest": false, "reason": "host-signal"\}'
tap_result $status "the remote exits 0 on SIGTERM"

out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"query-status"}' \
    '{"execute":"quit"}' | "$R" -device lsi53c895a,id=lsi0 \
    -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$tmp/s.sock" \
    -qmp stdio 2>&1)
check "-qmp stdio" "$out" '"QMP"' '"running": true' 'host-qmp-quit'

# BLOCK_IO_ERROR: a qcow2 image whose first L2 entry is corrupt fails the
# guest's read of it.  The remote waits for its QMP client ("server" without
# "nowait") so that the client hears the event of the first request.
qemu-img create -q -f qcow2 "$tmp/bad.qcow2" 16M
qemu-io -c 'write -P 7 0 64k' "$tmp/bad.qcow2" >/dev/null
python3 - "$tmp/bad.qcow2" <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(40)
    l1 = struct.unpack('>Q', f.read(8))[0]
    f.seek(l1)
    l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
    f.seek(l2)
    entry = struct.unpack('>Q', f.read(8))[0]
    f.seek(l2)
    f.write(struct.pack('>Q', entry | 2))   # a reserved bit
PY
{ echo '{"execute":"qmp_capabilities"}'; sleep 3; } |
    socat -t 0.5 - UNIX-CONNECT:"$tmp/err.qmp",retry=100,interval=0.05 >"$tmp/err.out" 2>&1 &
listener=$!
"$MPQEMU_BENCH" --image "$tmp/bad.qcow2" --job read,4096,4096,1,1 -- "$R" '{fd}' \
    -device lsi53c895a,id=lsi0 -drive id=d0,file={image} \
    -device scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0 \
    -qmp unix:"$tmp/err.qmp",server >/dev/null 2>&1
wait $listener
check "a failed read raises BLOCK_IO_ERROR" "$(cat "$tmp/err.out")" \
    '"event": "BLOCK_IO_ERROR", "data": \{"device": "d0", "nospace": false, "node-name": "d0", "qom-path": "/machine/peripheral/sd0", "reason": "Input.*output error", "operation": "read", "action": "report"\}'

expect_run "a chardev that is not a server is refused" 1 "only server sockets" -- \
    "$R" -device lsi53c895a,id=lsi0 -qmp unix:"$tmp/x.sock" \
    -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$tmp/s.sock"
expect_run "an unknown chardev is refused" 1 "unsupported character device" -- \
    "$R" -device lsi53c895a,id=lsi0 -monitor pty \
    -object x-vfio-user-server,id=v0,device=lsi0,socket.type=unix,socket.path="$tmp/s.sock"
tap_done
