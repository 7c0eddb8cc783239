#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# What the keeper costs (-restart on): the round trip of a register read
# (mpqemu-probe's BAR0 read, p50 and p99 over N accesses) with the device
# process served directly and through the keeper, for each protocol.  The
# two sides alternate their order from round to round, as the machine's
# speed drifts; the medians of the rounds are printed.
#
#   scripts/bench-restart.sh [BUILD_DIR] [ROUNDS] [ACCESSES]
set -eu
build=${1:-build/rel}
rounds=${2:-4}
n=${3:-5000}
probe="$build/mpqemu-probe"
remote="$build/mpqemu-remote"

# The p50 and p99 of BAR0 reads, in microseconds.
one() {     # protocol, restart (on|off)
    if [ "$1" = mpqemu ]; then
        endpoint="{fd}"
    else
        endpoint="-object x-vfio-user-server,id=v0,device=t0,socket.type=unix,socket.path={socket}"
    fi
    # shellcheck disable=SC2086
    nice "$probe" --iterations "$n" -- "$remote" $endpoint -device mpqemu-testdev,id=t0 \
        -restart "$2" 2>/dev/null | awk '/BAR0 read/ { print $4, $5 }'
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

printf '%-12s %-8s %12s %12s\n' protocol path "p50 (us)" "p99 (us)"
for proto in mpqemu vfio-user; do
    : > /tmp/bench-restart.direct
    : > /tmp/bench-restart.keeper
    r=0
    while [ "$r" -lt "$rounds" ]; do
        if [ $((r % 2)) -eq 0 ]; then order="off on"; else order="on off"; fi
        for side in $order; do
            if [ "$side" = off ]; then
                one "$proto" off >> /tmp/bench-restart.direct
            else
                one "$proto" on >> /tmp/bench-restart.keeper
            fi
        done
        r=$((r + 1))
    done
    for f in direct keeper; do
        p50=$(cut -d' ' -f1 /tmp/bench-restart.$f | median)
        p99=$(cut -d' ' -f2 /tmp/bench-restart.$f | median)
        printf '%-12s %-8s %12s %12s\n' "$proto" "$f" "$p50" "$p99"
    done
    rm -f /tmp/bench-restart.direct /tmp/bench-restart.keeper
done
