#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""
Side-by-side mpqemu-bench runs, repeated in both orders, reported as medians.

  scripts/bench-perf.py xremote [--rounds N] [--seconds S]
      mpqemu-remote against QEMU's x-remote (qemu-system-x86_64 -machine x-remote)
  scripts/bench-perf.py before DIR [--rounds N] [--seconds S]
      an older build (DIR: its build directory, e.g. a worktree's build/rel)
      against this one: DIR's own mpqemu-bench on DIR's remote (its driver too),
      and this mpqemu-bench on DIR's remote against this remote
  scripts/bench-perf.py poll [--rounds N] [--seconds S] [--hog none|pinned|free]
      this remote busy-polling (poll-max-ns=32768) against not (0); with
      --hog, a spinning process pinned to CPU 1, the bench and the remotes
      pinned to CPU 0 (pinned) or left free (free)

Each round runs every comparison once; odd rounds swap A and B.  Run it under
flock /work/shared/bench.lock (or your own lock) on a shared machine.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MPQEMU_BUILD", os.path.join(TOP, "build", "rel"))
LSI = ["-device", "lsi53c895a,id=lsi0", "-drive", "id=d0,file={image},format=raw",
       "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0"]
XREMOTE = ["qemu-system-x86_64", "-machine", "x-remote", "-nodefaults", "-display", "none",
           "-device", "lsi53c895a,id=lsi0", "-drive", "id=d0,file={image},format=raw,if=none",
           "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0",
           "-object", "x-remote-object,id=r0,devid=lsi0,fd={fd}"]


REMOTE_ARGS = []


def ours(build=BUILD, extra=()):
    more = REMOTE_ARGS if build == BUILD else []
    return [os.path.join(build, "mpqemu-remote"), "{fd}", *LSI, *more, *extra]


def parse(out):
    """{row: ([values per target], [cost triples per target])} from mpqemu-bench's tables."""
    rows, costs, in_costs = {}, {}, False
    for line in out.splitlines():
        if line.startswith("per command"):
            in_costs = True
            continue
        if line.startswith(("A:", "B:")) or not line.strip() or line.startswith(" "):
            continue
        name, _, rest = line.partition("  ")
        nums = [float(x) for x in rest.split()]
        if in_costs:
            costs[name] = [nums[i:i + 3] for i in range(0, len(nums) - len(nums) % 3, 3)]
        else:
            rows[name] = nums[0:1] if len(nums) == 1 else [nums[0], nums[1]]
    return {name: (vals, costs.get(name, [])) for name, vals in rows.items()}


def run(bench, targets, seconds, prefix=()):
    """Runs bench over one or two (label, argv) targets; returns {label: {row: (value, cost)}}."""
    cmd = [*prefix, bench, "--seconds", str(seconds), "--", *targets[0][1]]
    if len(targets) > 1:
        cmd += ["--vs", *targets[1][1]]
    print("+", " ".join(os.path.basename(c) if i in (len(prefix), len(prefix) + 4) else c
                        for i, c in enumerate(cmd))[:200], file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    sys.stderr.write(out)
    result = {label: {} for label, _ in targets}
    for name, (vals, costs) in parse(out).items():
        for i, (label, _) in enumerate(targets):
            result[label][name] = (vals[i], costs[i] if i < len(costs) else None)
    return result


def collect(runs_per_round, rounds, seconds, prefix=()):
    """runs_per_round: [(bench, [(label, argv), ...])]; odd rounds swap each pair and their order."""
    samples = {}     # label -> row -> [values], [costs]
    rows = []
    for r in range(rounds):
        plan = runs_per_round if r % 2 == 0 else [(b, t[::-1]) for b, t in runs_per_round[::-1]]
        for bench, targets in plan:
            for label, res in run(bench, targets, seconds, prefix).items():
                for name, (val, cost) in res.items():
                    if name not in rows:
                        rows.append(name)
                    s = samples.setdefault(label, {}).setdefault(name, ([], []))
                    s[0].append(val)
                    if cost:
                        s[1].append(cost)
    return rows, samples


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def report(rows, samples, labels, rounds):
    first = rows[0] if rows else ""
    print(f"medians of {rounds} rounds; ratio {labels[0]}/{labels[1]} "
          f"(for the round trip {labels[1]}/{labels[0]}: above 1 is faster)")
    print(f"{'':40}" + "".join(f"{l:>14}" for l in labels) + f"{'ratio':>9}")
    for name in rows:
        v = [median(samples[l].get(name, ([], []))[0]) for l in labels]
        ratio = v[1] / v[0] if name == first else v[0] / v[1]
        print(f"{name:40}" + "".join(f"{x:14.1f}" for x in v) + f"{ratio:9.2f}")
    print()
    print(f"per command (row 1: per register read): interrupts, register accesses, remote CPU us")
    print(f"{'':40}" + "".join(f"{l + ' irq/reg/cpu':>24}" for l in labels) + f"{'cpu ratio':>10}")
    for name in rows:
        cells, cpus = [], []
        for l in labels:
            c = samples[l].get(name, ([], []))[1]
            if c:
                irq, reg, cpu = (median([x[k] for x in c]) for k in range(3))
                cells.append(f"{irq:6.2f} {reg:6.2f} {cpu:8.1f}")
                cpus.append(cpu)
            else:
                cells.append("-")
        ratio = f"{cpus[0] / cpus[1]:10.2f}" if len(cpus) == 2 else ""
        print(f"{name:40}" + "".join(f"{c:>24}" for c in cells) + ratio)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["xremote", "before", "poll"])
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--hog", choices=["none", "pinned", "free"], default="none")
    ap.add_argument("--remote-arg", action="append", default=[],
                    help="one more argument for this build's remote (repeat the option)")
    a = ap.parse_args()
    bench = os.path.join(BUILD, "mpqemu-bench")
    prefix, hog = (), None
    REMOTE_ARGS.extend(a.remote_arg)

    if a.mode == "xremote":
        labels = ["mpqemu", "x-remote"]
        plan = [(bench, [("mpqemu", ours()), ("x-remote", XREMOTE)])]
    elif a.mode == "before":
        if not a.dir:
            ap.error("before needs the older build's directory")
        labels = ["before", "before-remote", "after"]
        plan = [(os.path.join(a.dir, "mpqemu-bench"), [("before", ours(a.dir))]),
                (bench, [("before-remote", ours(a.dir)), ("after", ours())])]
    else:
        labels = ["poll", "no-poll"]
        plan = [(bench, [("poll", ours(extra=["-object", "main-loop,id=ml,poll-max-ns=32768"])),
                         ("no-poll", ours(extra=["-object", "main-loop,id=ml,poll-max-ns=0"]))])]
        if a.hog != "none":
            hog = subprocess.Popen(["taskset", "-c", "1", "sh", "-c", "while :; do :; done"])
            if a.hog == "pinned":
                prefix = ("taskset", "-c", "0")
    try:
        rows, samples = collect(plan, a.rounds, a.seconds, prefix)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    if a.mode == "before":
        report(rows, samples, ["after", "before"], a.rounds)
        print()
        print("this mpqemu-bench (its driver) on the before remote, against the after remote:")
        report(rows, samples, ["after", "before-remote"], a.rounds)
    else:
        report(rows, samples, labels, a.rounds)


if __name__ == "__main__":
    main()
