#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# mpqemu-remote's command line: help, version, and clear errors.
. "$(dirname "$0")/tap.sh"
R=${MPQEMU_REMOTE:?}
P=${MPQEMU_PROBE:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dev=mpqemu-testdev,id=t0

expect_run "--version" 0 '^mpqemu-remote version [0-9]' -- "$R" --version
expect_run "-h lists the options" 0 'x-remote-object,id=ID,devid=DEVID,fd=N' -- "$R" -h
expect_run "-device help lists drivers" 0 'name "mpqemu-testdev"' -- "$R" -device help
expect_run "-device DRIVER,help lists properties" 0 'buffer-size +<size>' -- "$R" -device mpqemu-testdev,help
expect_run "unknown option" 1 'invalid option' -- "$R" -frobnicate
expect_run "option without argument" 1 '-device requires an argument' -- "$R" -device
expect_run "unknown driver" 1 "'nosuch' is not a valid device model name" -- "$R" 3 -device nosuch,id=x
expect_run "unknown property" 1 "mpqemu-testdev has no property 'speed'" -- "$R" 3 -device $dev,speed=9
expect_run "bad property value" 1 "buffer-size' expects a size" -- "$R" 3 -device $dev,buffer-size=big
expect_run "missing id" 1 "needs an id" -- "$R" 3 -device mpqemu-testdev
expect_run "duplicate id" 1 "duplicate device id 't0'" -- "$R" 3 -device $dev -device $dev
expect_run "fd that is no socket" 1 "fd 0 is not an open socket" -- "$R" 0 -device $dev
expect_run "fd that is not open" 1 "fd 77 is not an open socket" -- "$R" 77 -device $dev
expect_run "fd that is no number" 1 "'abc' is not a file descriptor number" -- "$R" abc -device $dev
expect_run "no device" 1 "no PCI device given" -- "$R"
expect_run "two devices, one positional fd" 1 "2 PCI devices have no socket" -- \
    "$R" 3 -device $dev -device mpqemu-testdev,id=t1
expect_run "device without a socket" 1 "PCI device 't0' has no socket" -- "$R" -device $dev
expect_run "x-remote-object names no device" 1 "devid 'zz' names no device" -- \
    "$R" -device $dev -object x-remote-object,id=o,devid=zz,fd=3
expect_run "main-loop poll-max-ns out of range" 1 "poll-max-ns' expects a number from 0 to 10000000" -- \
    "$R" -device $dev -object main-loop,id=ml,poll-max-ns=99999999999
expect_run "main-loop needs an id" 1 "main-loop needs an id" -- "$R" -device $dev -object main-loop
expect_run "-sandbox help lists the allowed calls" 0 'io_uring_enter +disk I/O' -- "$R" -sandbox help
# docs/sandbox.md lists every call the filter allows.
missing=$("$R" -sandbox help | awk '/^allowed system calls:/ {f = 1; next} f && /^  / {print $1}' |
    while read -r call; do grep -q "^| \`$call\` |" "$(dirname "$0")/../../docs/sandbox.md" || echo "$call"; done)
tap_result "$([ -z "$missing" ] && echo 0 || echo 1)" "docs/sandbox.md lists every allowed call${missing:+ (missing: $missing)}"
expect_run "-sandbox takes on or off" 1 "'maybe' is not on or off" -- "$R" -sandbox maybe -device $dev
expect_run "-sandbox allow-dir must be a directory" 1 "allow-dir=/etc/passwd: not a directory" -- \
    "$R" -sandbox on,allow-dir=/etc/passwd -device $dev
expect_run "-sandbox: an unknown key is named" 1 "sandbox.*spawn" -- "$R" -sandbox on,spawn=deny
expect_run "main-loop with polling on serves" 0 'remote exited with status 0' -- \
    "$P" --iterations 5 -- "$R" '{fd}' -device $dev -object main-loop,id=ml,poll-max-ns=32768
expect_run "unknown object type" 1 "object type 'memory-backend-ram' is not supported" -- \
    "$R" -device $dev -object memory-backend-ram,id=m
truncate -s 1M "$tmp/disk.raw"
expect_run "scsi-hd on a bus that does not exist" 1 "bus 'lsi9.0' not found" -- \
    "$R" 3 -drive id=d0,file=$tmp/disk.raw -device scsi-hd,id=sd0,drive=d0,bus=lsi9.0
expect_run "a character device is no drive" 1 "/dev/null is neither a file nor a block device" -- \
    "$R" 3 -drive id=d0,file=/dev/null -device $dev
expect_run "-device help lists scsi-hd and scsi-cd" 0 'name "scsi-cd"' -- "$R" -device help
expect_run "-device help lists lsi53c895a" 0 'name "lsi53c895a"' -- "$R" -device help
expect_run "lsi53c895a lists its properties" 0 'x-insn-without-progress +<uint64>' -- \
    "$R" -device lsi53c895a,help
expect_run "lsi53c895a needs a budget of progress" 1 "x-insn-without-progress must be at least 1" -- \
    "$R" 3 -device lsi53c895a,id=l,x-insn-without-progress=0
expect_run "scsi-hd lists its properties" 0 'scsi-id +<uint64>' -- "$R" -device scsi-hd,help
expect_run "scsi-id out of range" 1 "scsi-id' expects a number from 0 to 15" -- \
    "$R" 3 -device lsi53c895a,id=l -drive id=d0,file=$tmp/disk.raw -device scsi-hd,id=s,drive=d0,bus=l.0,scsi-id=99
expect_run "scsi-cd lists the eject's drain limit" 0 'x-drain-limit-ms +<uint64>' -- \
    "$R" -device scsi-cd,help
expect_run "an eject's drain limit of 0 ms" 1 "x-drain-limit-ms must be at least 1" -- \
    "$R" 3 -device lsi53c895a,id=l -drive id=d0,file=$tmp/disk.raw -device scsi-hd,id=s,drive=d0,bus=l.0,removable=on,x-drain-limit-ms=0
expect_run "scsi-id beyond the controller's targets" 1 "scsi-id 7 is out of range for bus l.0" -- \
    "$R" 3 -device lsi53c895a,id=l -drive id=d0,file=$tmp/disk.raw -device scsi-hd,id=s,drive=d0,bus=l.0,scsi-id=7
expect_run "one drive for two disks" 1 "drive 'd0' is already in use" -- \
    "$R" 3 -device lsi53c895a,id=l -drive id=d0,file=$tmp/disk.raw \
    -device scsi-hd,id=s,drive=d0,bus=l.0 -device scsi-hd,id=t,drive=d0,bus=l.0,scsi-id=1
expect_run "scsi-cd wants a read-only drive" 1 "scsi-cd needs a read-only drive" -- \
    "$R" 3 -device lsi53c895a,id=l -drive id=d0,file=$tmp/disk.raw -device scsi-cd,id=c,drive=d0,bus=l.0
expect_run "drive without file" 1 "drive 'd0' needs a file" -- "$R" -drive id=d0 -device $dev
expect_run "drive that does not exist" 1 "Could not open '$tmp/none.img'" -- \
    "$R" -drive id=d0,file=$tmp/none.img -device $dev
expect_run "drive with unknown format" 1 "unknown format 'vmdk'" -- \
    "$R" -drive id=d0,file=/dev/null,format=vmdk -device $dev
expect_run "drive with unknown cache mode" 1 "cache mode 'fast' is not supported" -- \
    "$R" -drive id=d0,file=/dev/null,cache=fast -device $dev
# rerror=/werror=: only report; QEMU's default werror=enospc would stop the VM on ENOSPC.
expect_run "werror=enospc is refused" 1 \
    "drive 'd0': werror=enospc is not supported: a failed write is reported to the guest \(werror=report\)" -- \
    "$R" -drive id=d0,file=/dev/null,werror=enospc -device $dev
expect_run "rerror=stop is refused" 1 "drive 'd0': rerror=stop is not supported" -- \
    "$R" -drive id=d0,file=/dev/null,rerror=stop -device $dev
expect_run "werror=ignore is refused" 1 "drive 'd0': werror=ignore is not supported" -- \
    "$R" -drive id=d0,file=/dev/null,werror=ignore -device $dev
expect_run "rerror=enospc is no read error action" 1 "'enospc' invalid read error action" -- \
    "$R" -drive id=d0,file=/dev/null,rerror=enospc -device $dev

# A good command line runs and serves; -device in JSON works as well.
expect_run "drive and device run and exit 0" 0 'remote exited with status 0' -- \
    "$P" --iterations 5 -- "$R" '{fd}' -drive id=d0,file=$tmp/disk.raw,format=raw,cache=writeback -device $dev
expect_run "rerror=report,werror=report" 0 'remote exited with status 0' -- \
    "$P" --iterations 5 -- "$R" '{fd}' -drive id=d0,file=$tmp/disk.raw,rerror=report,werror=report -device $dev
expect_run "JSON -device" 0 'vendor 0x1234 device 0x4d50' -- \
    "$P" --iterations 5 -- "$R" '{fd}' -device '{"driver": "mpqemu-testdev", "id": "t0", "buffer-size": 8192}'
expect_run "64-bit BAR follows buffer-size" 0 'BAR2: memory 64-bit prefetchable 1048576 bytes' -- \
    "$P" --iterations 5 -- "$R" '{fd}' -device mpqemu-testdev,id=t0,buffer-size=1M
# --fd: probe over an inherited socket, the other end given to the remote.
expect_run "mpqemu-probe --fd N" 0 'vendor 0x1234 device 0x4d50' -- python3 -c '
import os, socket, subprocess, sys
a, b = socket.socketpair()
remote = subprocess.Popen([sys.argv[1], str(b.fileno()), "-device", "mpqemu-testdev,id=t0"],
                          pass_fds=[b.fileno()])
b.close()
rc = subprocess.call([sys.argv[2], "--iterations", "5", "--fd", str(a.fileno())],
                     pass_fds=[a.fileno()])
a.close()
sys.exit(rc or remote.wait(10))' "$R" "$P"
# vfio-user servers on the command line.
vu() { echo "x-vfio-user-server,id=v0,device=${2:-t0},socket.type=unix,socket.path=$1"; }
expect_run "vfio-user server probed over vfio-user" 0 'remote exited with status 0' -- \
    "$P" --iterations 5 -- "$R" -device $dev -object "$(vu '{socket}')"
expect_run "vfio-user server in JSON form" 0 'vendor 0x1234 device 0x4d50' -- \
    "$P" --iterations 5 -- "$R" -device $dev \
    -object '{"qom-type":"x-vfio-user-server","id":"v0","device":"t0","socket":{"type":"unix","path":"{socket}"}}'
expect_run "vfio-user server for an unknown device" 1 "device 'nope' names no device" -- \
    "$R" -device $dev -object "$(vu "$tmp/s" nope)"
expect_run "vfio-user server without socket.path" 1 "needs socket.type=unix and socket.path" -- \
    "$R" -device $dev -object x-vfio-user-server,id=v0,device=t0,socket.type=unix
expect_run "vfio-user server on a tcp socket" 1 "needs socket.type=unix" -- \
    "$R" -device $dev -object x-vfio-user-server,id=v0,device=t0,socket.type=inet,socket.path=x
touch "$tmp/regular"
expect_run "vfio-user path that is a regular file" 1 "exists and is not a socket" -- \
    "$R" -device $dev -object "$(vu "$tmp/regular")"
expect_run "two servers on one path" 1 "already serves" -- \
    "$R" -device $dev -device mpqemu-testdev,id=t1 -object "$(vu "$tmp/s")" \
    -object "x-vfio-user-server,id=v1,device=t1,socket.type=unix,socket.path=$tmp/s"
"$R" -device $dev -object "$(vu "$tmp/live")" 2>/dev/null &
live=$!
i=0; while [ ! -S "$tmp/live" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
expect_run "a path another server listens on is refused" 1 "in use by another server" -- \
    "$R" -device $dev -object "$(vu "$tmp/live")"
kill -9 $live; wait $live 2>/dev/null
expect_run "a stale socket left by a killed server is replaced" 0 'remote exited with status 0' -- \
    sh -c "\"$R\" -device $dev -object '$(vu "$tmp/live")' & pid=\$!; i=0;
           until \"$P\" --iterations 5 --socket $tmp/live; do
               i=\$((i + 1)); [ \$i -lt 50 ] || exit 1; sleep 0.1; done
           kill \$pid; wait \$pid; echo remote exited with status \$?"

if command -v qemu-img >/dev/null; then
    qemu-img create -q -f qcow2 "$tmp/disk.qcow2" 1M
    expect_run "a qcow2 image is served, its format probed" 0 'remote exited with status 0' -- \
        "$P" --iterations 5 -- "$R" '{fd}' -drive id=d0,file=$tmp/disk.qcow2 -device $dev
    truncate -s 1M "$tmp/plain.raw"
    expect_run "format=qcow2 on a raw file is refused clearly" 1 "not a qcow2 image" -- \
        "$R" 3 -drive id=d0,file=$tmp/plain.raw,format=qcow2 -device $dev
    qemu-img create -q -f qcow2 -o compression_type=zstd "$tmp/zstd.qcow2" 1M
    expect_run "a qcow2 feature we lack is named in the error" 1 "zstd" -- \
        "$R" 3 -drive id=d0,file=$tmp/zstd.qcow2 -device $dev
    expect_run "format=raw is not overridden by a qcow2 header" 0 'remote exited with status 0' -- \
        "$P" --iterations 5 -- "$R" '{fd}' -drive id=d0,file=$tmp/disk.qcow2,format=raw -device $dev
else
    tap_result 1 "qemu-img is needed for the qcow2 checks"
fi
tap_done
