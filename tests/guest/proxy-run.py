#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Boots the test guest on QEMU's x-pci-proxy-dev (bookworm's QEMU 7.2, TCG)
with LSI53C895A controllers served by a remote process over the
multi-process protocol, as an orchestrator does: the socket pairs are made
here and one end of each is handed to QEMU, the other to the remote.

  proxy-run.py --workdir W --append ARGS --mode normal|perf
               --remote ours:PATH|x-remote:QEMU [--qemu QEMU] [--timeout S]
               --controller FMT:IMAGE[,FMT:IMAGE...] [--controller ...]

normal: one remote process per controller (the original design's default);
perf: one remote process serving every controller, one socket each.
x-remote is QEMU's own remote (-machine x-remote, QEMU 7.2).
Writes W/serial.log (the guest console), W/remote-N.log and prints
"qemu-status S", "remote-N-status S" (S: exit status, "killed" when it had
to be killed) and "guest-done yes|no".
"""
import argparse
import os
import socket
import subprocess
import sys
import time


def remote_argv(kind, path, controllers, fds):
    """The remote's command line for the controllers [(index, disks)]."""
    if kind == "ours":
        argv = [path]
        if_none = ""
    elif kind == "x-remote":
        argv = [path, "-machine", "x-remote", "-nodefaults", "-display", "none"]
        if_none = ",if=none"
    else:
        sys.exit("proxy-run: unknown remote kind %r" % kind)
    for (n, disks), fd in zip(controllers, fds):
        argv += ["-device", "lsi53c895a,id=lsi%d" % n]
        for unit, (fmt, image) in enumerate(disks):
            drive = "d%d_%d" % (n, unit)
            argv += ["-drive", "id=%s,file=%s,format=%s%s" % (drive, image, fmt, if_none),
                     "-device", "scsi-hd,id=hd%d_%d,drive=%s,bus=lsi%d.0,scsi-id=%d"
                     % (n, unit, drive, n, unit)]
        argv += ["-object", "x-remote-object,id=r%d,devid=lsi%d,fd=%d" % (n, n, fd)]
    return argv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--append", required=True)
    ap.add_argument("--mode", choices=["normal", "perf"], required=True)
    ap.add_argument("--remote", required=True)
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--controller", action="append", required=True)
    args = ap.parse_args()
    w = args.workdir
    kind, _, path = args.remote.partition(":")
    controllers = []
    for n, spec in enumerate(args.controller):
        disks = [tuple(d.split(":", 1)) for d in spec.split(",")]
        controllers.append((n, disks))

    # One socket pair per controller: QEMU's end, the remote's end.
    pairs = [socket.socketpair() for _ in controllers]
    groups = [controllers] if args.mode == "perf" else [[c] for c in controllers]
    remotes = []
    for g in groups:
        ends = [pairs[n][1] for n, _ in g]
        fds = [e.fileno() for e in ends]
        log = open("%s/remote-%d.log" % (w, len(remotes)), "w")
        remotes.append(subprocess.Popen(remote_argv(kind, path, g, fds), pass_fds=fds,
                                        stdout=log, stderr=subprocess.STDOUT))
    for _, theirs in pairs:
        theirs.close()

    qemu_argv = [args.qemu, "-accel", "tcg", "-m", "512", "-nodefaults", "-display", "none",
                 "-no-reboot", "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
                 "-machine", "pc,memory-backend=mem", "-serial", "stdio",
                 "-kernel", w + "/vmlinuz", "-initrd", w + "/initrd", "-append", args.append]
    for (n, _), (ours, _) in zip(controllers, pairs):
        qemu_argv += ["-device", "x-pci-proxy-dev,id=lsi%d,fd=%d" % (n, ours.fileno())]
    serial = open(w + "/serial.log", "w")
    qemu = subprocess.Popen(qemu_argv, pass_fds=[p[0].fileno() for p in pairs],
                            stdout=serial, stderr=subprocess.STDOUT)
    for ours, _ in pairs:
        ours.close()

    # The guest powers off after "MPQ done"; QEMU then exits by itself.
    try:
        status = qemu.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        qemu.kill()
        qemu.wait()
        status = "killed"
    print("qemu-status", status)
    with open(w + "/serial.log", errors="replace") as f:
        print("guest-done", "yes" if any(l.startswith("MPQ done") for l in f) else "no")
    # A remote ends when its last proxy goes away.
    for i, r in enumerate(remotes):
        try:
            print("remote-%d-status" % i, r.wait(timeout=60))
        except subprocess.TimeoutExpired:
            r.kill()
            r.wait()
            print("remote-%d-status killed" % i)


if __name__ == "__main__":
    main()
