#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs a VM through mpqemu-launch and kills its remote's device process
while the guest's mpq-io runs (tests/guest/restart.sh).

The launcher's standard output is the guest's console: every line is
written to the serial log and stamped with the host's CLOCK_MONOTONIC as it
arrives.  Once the guest says "MPQ io started", the device process (the
keeper's child) is SIGKILLed: first in the middle of a qcow2 cluster
allocation (kill-in-allocation stops it at the first io_uring_enter after
the image grew: a new cluster is there, its L2 entry not yet), then at
random moments.  Before each kill the new device process must serve (its
own seccomp filter is on) and the guest's I/O must have gone on since the
last kill.

Kill -> next guest I/O: the guest prints its CLOCK_MONOTONIC every 100 ms
("MPQ T US N") and, at the end, the completion time of every O_DIRECT
request ("MPQ c ...").  The host's clock minus the guest's is the smallest
(arrival - stamp) over the clock lines: the lines that waited least in the
serial path, whose delay is then a bound on the error (a millisecond or so:
a short line, one write to the UART's FIFO).  Each kill's host time,
moved to the guest's clock, is followed by the guest's next completion.

Prints "key value..." lines on standard output for the test to check.
"""
import argparse
import bisect
import os
import random
import re
import signal
import statistics
import subprocess
import threading
import time

CLOCK_LINE = re.compile(rb"^MPQ T (\d+) (\d+)")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def argv0(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def start_time(pid):
    """The process's start time in clock ticks since boot: a pid used again differs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def serving(pid):
    """The device process has confined itself, so it serves: its own filter on the keeper's."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return re.search(r"^Seccomp_filters:\s*2$", f.read(), re.M) is not None
    except OSError:
        return False


def wait_for(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(what)


class Console(threading.Thread):
    """Reads the guest's console from the launcher, stamps and keeps its lines."""

    def __init__(self, fd, path):
        super().__init__(daemon=True)
        self.fd, self.out = fd, open(path, "wb")
        self.clock = []          # (host ns, guest us, completions so far)
        self.started = threading.Event()

    def run(self):
        pending = b""
        while True:
            chunk = os.read(self.fd, 65536)
            now = time.monotonic_ns()
            if not chunk:
                break
            self.out.write(chunk)
            self.out.flush()
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                m = CLOCK_LINE.match(line)
                if m:
                    self.clock.append((now, int(m.group(1)), int(m.group(2))))
                elif line.startswith(b"MPQ io started"):
                    self.started.set()
        self.out.close()

    def io_since(self, host_ns, flowing=10):
        """Whether the guest's I/O flows after host_ns: clock lines made after it count
        more completions than the two that its workers, one request at a time each, may
        have had on their way."""
        clock = list(self.clock)
        if not clock:
            return False
        offset = min(host - guest * 1000 for host, guest, _ in clock)
        after = [n for _, guest, n in clock if guest * 1000 + offset > host_ns]
        return len(after) >= 2 and after[-1] - after[0] >= flowing


class Killer:
    def __init__(self, args, console, launcher):
        self.args, self.console, self.launcher = args, console, launcher
        self.rng = random.Random(args.seed)
        self.kills = []          # (how, pid, host ns, detail)
        self.qemu, self.qemu_same = None, False

    def find_processes(self):
        kids = wait_for("the launcher's children", lambda: len(children(self.launcher.pid)) >= 2
                        and children(self.launcher.pid), 60)
        self.keeper = next(p for p in kids if argv0(p).endswith("mpqemu-remote"))
        self.qemu = next(p for p in kids if p != self.keeper)
        self.qemu_start = start_time(self.qemu)

    def device(self):
        kids = [p for p in children(self.keeper) if serving(p)]
        return kids[0] if kids else None

    def kill_once(self, how, since_ns):
        wait_for("a device process that serves", self.device, 60)
        wait_for("guest I/O since the last kill", lambda: self.console.io_since(since_ns), 60)
        time.sleep(self.rng.uniform(0.2, 1.2))
        pid = self.device()
        if how == "random":
            t = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            self.kills.append((how, pid, t, "SIGKILL"))
        else:
            out = subprocess.run([self.args.tracer, "--timeout", "30", str(pid),
                                  self.args.alloc_image], capture_output=True, text=True)
            m = re.search(r"^killed .* ns (\d+)$", out.stdout, re.M)
            if out.returncode != 0 or not m:
                raise RuntimeError("kill-in-allocation: " + (out.stderr or out.stdout).strip())
            self.kills.append((how, pid, int(m.group(1)), out.stdout.strip()))
        wait_for("the killed process gone", lambda: pid not in children(self.keeper), 30)

    def run(self):
        self.find_processes()
        plan = ["alloc"] + ["random"] * self.args.kills
        since = time.monotonic_ns()
        for how in plan:
            self.kill_once(how, since)
            since = self.kills[-1][2]
        # The guest's I/O goes on after the last one, and QEMU is the one that started.
        wait_for("guest I/O after the last kill", lambda: self.console.io_since(since), 60)
        self.qemu_same = start_time(self.qemu) == self.qemu_start


def completion_times(serial):
    """The guest's O_DIRECT completions (its CLOCK_MONOTONIC, us), from the "MPQ c" lines."""
    times, t = [], 0
    with open(serial, "rb") as f:
        for line in f:
            if line.startswith(b"MPQ c "):
                for d in line.split()[2:]:
                    t += int(d, 16)
                    times.append(t)
    return times


def resumed_after(times, i, kill_us, until_us):
    """The end of the longest pause in completions after a kill, ending before until_us
    (the next kill: a pause that ends after it is that one's).

    The guest's driver holds its commands back a while after a bus reset
    (sym53c8xx: its "settle" delay, 3 s by default): a completion already on
    its way can come first, then the pause."""
    end, longest = times[i], times[i] - kill_us
    for j in range(i + 1, len(times)):
        if times[j] > until_us:
            break
        if times[j] - times[j - 1] > longest:
            end, longest = times[j], times[j] - times[j - 1]
    return end


def clock_offset(clock):
    """Host ns minus guest ns, from the clock lines that waited least; and its drift."""
    offsets = [host - guest * 1000 for host, guest, _ in clock]
    third = max(1, len(offsets) // 3)
    return min(offsets), (min(offsets[-third:]) - min(offsets[:third])) / 1e6


def report(killer, console, serial):
    print(f"seed {killer.args.seed}")
    print(f"kills {len(killer.kills)} alloc {sum(k[0] == 'alloc' for k in killer.kills)}")
    print(f"qemu pid {killer.qemu} same {'yes' if killer.qemu_same else 'no'}")
    times = completion_times(serial)
    if not console.clock or not times:
        print("figures none (no clock lines or completions from the guest)")
        return
    offset, drift = clock_offset(console.clock)
    print(f"clock {len(console.clock)} lines, guest-host drift {drift:.2f} ms over the run")
    nexts, resumes = [], []
    kills_us = [(k[2] - offset) / 1000 for k in killer.kills]
    for n, (how, pid, host_ns, detail) in enumerate(killer.kills, 1):
        kill_us = kills_us[n - 1]
        until_us = (kills_us[n:n + 1] or [float("inf")])[0]
        i = bisect.bisect_left(times, kill_us)
        if i == len(times):
            print(f"kill {n} {how} pid {pid}: no guest I/O completed after it")
            continue
        nexts.append((times[i] - kill_us) / 1000)
        resumes.append((resumed_after(times, i, kill_us, until_us) - kill_us) / 1000)
        print(f"kill {n} {how} pid {pid}: next guest I/O completed after {nexts[-1]:.1f} ms, "
              f"I/O flowing again after {resumes[-1]:.1f} ms; {detail}")
    for name, values in (("next-io", nexts), ("flowing-again", resumes)):
        if values:
            print(f"figures {name} median {statistics.median(values):.1f} ms "
                  f"worst {max(values):.1f} ms over {len(values)} kills")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--launch", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--serial", required=True)
    p.add_argument("--stderr", required=True)
    p.add_argument("--tracer", required=True)
    p.add_argument("--alloc-image", required=True)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--timeout", type=int, default=900)
    args = p.parse_args()

    launcher = subprocess.Popen([args.launch, args.json], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=open(args.stderr, "wb"))
    console = Console(launcher.stdout.fileno(), args.serial)
    console.start()
    killer = Killer(args, console, launcher)
    try:
        if not console.started.wait(300):
            raise TimeoutError("the guest's I/O did not start")
        killer.run()
    except Exception as e:              # reported; the guest runs to its end all the same
        print(f"error {type(e).__name__}: {e}")
        killer.qemu_same = False
    try:
        status = launcher.wait(args.timeout)
    except subprocess.TimeoutExpired:
        launcher.terminate()
        status = launcher.wait()
        print("error the launcher did not exit in time")
    console.join()
    print(f"launcher-status {status}")
    report(killer, console, args.serial)


if __name__ == "__main__":
    main()
