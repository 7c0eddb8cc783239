#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Totals the TAP checks of meson test logs: prints "N passed, N failed".

A test program that failed without reporting a failing check (a crash, a
timeout, a sanitizer abort) counts as one failed check of its own.
"""
import argparse
import json
import re
import sys

TAP_OK = re.compile(r"^ok \d+")
TAP_NOT_OK = re.compile(r"^not ok \d+")


def count(log_path):
    passed = failed = 0
    with open(log_path, encoding="utf-8") as log:
        for line in log:
            test = json.loads(line)
            out = test.get("stdout") or ""
            ok = sum(1 for l in out.splitlines() if TAP_OK.match(l))
            bad = sum(1 for l in out.splitlines() if TAP_NOT_OK.match(l))
            if test.get("result") not in ("OK", "EXPECTEDFAIL") and bad == 0:
                bad = 1
                print(f"FAILED without a failing check: {test['name']} "
                      f"({test.get('result')}) in {log_path}")
            passed += ok
            failed += bad
    return passed, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-failures", type=int, default=0)
    ap.add_argument("logs", nargs="*")
    args = ap.parse_args()
    passed, failed = 0, args.build_failures
    for path in args.logs:
        p, f = count(path)
        print(f"{path}: {p} passed, {f} failed")
        passed += p
        failed += f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
