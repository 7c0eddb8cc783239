#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The multi-process path with stock QEMU: Debian bookworm's QEMU 7.2 with
# x-pci-proxy-dev, under TCG, attached to mpqemu-remote by an inherited
# socket.  The guest's sym53c8xx driver must find the controller and reset
# its SCSI bus.  No I/O beyond that: without KVM the stock proxy delivers
# no interrupts (its irqfds go to KVM only), so the driver's bus scan waits
# forever and the guest cannot shut down; the test stops QEMU itself once
# the guest has reported.
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
truncate -s 64M "$W/disk.img"

# Python makes the socket pair and hands one end to each process, as an
# orchestrator does; QEMU is stopped once the guest printed "MPQ done".
python3 - "$MPQEMU_REMOTE" "$QEMU" "$W" <<'PY' >"$W/run.log" 2>&1
import socket, subprocess, sys, time
remote_bin, qemu_bin, w = sys.argv[1:4]
ours, theirs = socket.socketpair()
remote = subprocess.Popen(
    [remote_bin, str(theirs.fileno()), "-device", "lsi53c895a,id=lsi0",
     "-drive", "id=d0,file=%s/disk.img,format=raw" % w,
     "-device", "scsi-hd,id=hd0,drive=d0,bus=lsi0.0,scsi-id=0"],
    pass_fds=[theirs.fileno()], stderr=open(w + "/remote.log", "w"))
theirs.close()
serial = open(w + "/serial.log", "w")
qemu = subprocess.Popen(
    [qemu_bin, "-accel", "tcg", "-m", "512", "-nodefaults", "-display", "none",
     "-no-reboot", "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
     "-machine", "pc,memory-backend=mem", "-serial", "stdio",
     "-kernel", w + "/vmlinuz", "-initrd", w + "/initrd",
     "-append", "console=ttyS0 quiet mpq.test=probe mpq.seconds=10",
     "-device", "x-pci-proxy-dev,id=lsi0,fd=%d" % ours.fileno()],
    pass_fds=[ours.fileno()], stdout=serial, stderr=subprocess.STDOUT)
ours.close()
deadline = time.time() + 300
while time.time() < deadline and qemu.poll() is None:
    if "MPQ done" in open(w + "/serial.log", errors="replace").read():
        break
    time.sleep(0.5)
print("qemu-running-at-end", qemu.poll() is None)
qemu.kill()
qemu.wait()
print("remote-status", remote.wait(timeout=30))
PY
tap_result $? "QEMU 7.2 with x-pci-proxy-dev and the remote run"
kmsg() { grep -a "^MPQ kmsg" "$W/serial.log" | grep -q -- "$1"; }
kmsg 'sym0: <895a> rev 0x[0-9a-f]* at pci'
tap_result $? "the guest's sym53c8xx driver finds the LSI53C895A"
kmsg 'sym0: SCSI BUS has been reset'
tap_result $? "the driver resets the SCSI bus through the remote's registers"
grep -q "remote-status 0" "$W/run.log"
tap_result $? "the remote exits 0 when QEMU's proxy goes away"
if [ "$tap_failed" -ne 0 ]; then
    sed 's/^/# /' "$W/run.log"
    tail -20 "$W/serial.log" | sed 's/^/# guest: /'
    sed 's/^/# remote: /' "$W/remote.log"
fi
tap_done
