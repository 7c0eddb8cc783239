#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Fuzzes the harnesses of tests/fuzz with libFuzzer (clang) for MINUTES each,
# merges what they found into the committed corpora (tests/fuzz/corpus/),
# and prints the executions, the crashes, and the line coverage of each
# source file that all the corpora reach (clang's source-based coverage).
#
#   scripts/fuzz.sh [MINUTES] [HARNESS...]
#
# MINUTES defaults to 5 (0: no fuzzing, only minimising and the report);
# HARNESS: lsi mpqemu vfio-user qcow2 qmp hmp relay nbd-target nbd-server checkpoint (all by
# default).
# Crashes stay in build/fuzz/artifacts/HARNESS/.  Environment:
#   FUZZ_NICE=10         niceness of the fuzzers
#   FUZZ_MINIMIZE=1      also re-minimise the corpora: keep only the found
#                        entries (named by hash) that add coverage to the
#                        hand-made ones (seed-*, bug*, found-*), which stay
#   TMPDIR               where the harnesses keep their images (default
#                        /dev/shm when there is one: no disk syncs)
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
minutes=${1:-5}
[ $# -gt 0 ] && shift
all_harnesses="lsi mpqemu vfio-user qcow2 qmp hmp relay nbd-target nbd-server checkpoint"
harnesses=${*:-$all_harnesses}
nice=${FUZZ_NICE:-10}
fuzz_dir=$top/build/fuzz
cov_dir=$top/build/fuzz-cov
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    TMPDIR=/dev/shm
    export TMPDIR
fi

configure() { # dir options...
    dir=$1
    shift
    [ -f "$dir/build.ninja" ] || CC=clang meson setup "$dir" "$@" >/dev/null
}

# libFuzzer builds: ASan and UBSan, every sanitizer report fatal.
configure "$fuzz_dir" -Dfuzzing=true -Dtests=disabled -Dbuildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false \
    "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=all"
# Coverage builds: the standalone harnesses, replaying the corpora.
configure "$cov_dir" -Dtests=enabled -Dbuildtype=debug -Db_lundef=false \
    "-Dc_args=-fprofile-instr-generate -fcoverage-mapping" \
    "-Dc_link_args=-fprofile-instr-generate -fcoverage-mapping"
for h in $harnesses; do
    ninja -C "$fuzz_dir" "tests/fuzz/fuzz-$h" >/dev/null
done
for h in $all_harnesses; do
    ninja -C "$cov_dir" "tests/fuzz/fuzz-$h" >/dev/null
done

dict_of() {
    case $1 in
    mpqemu|vfio-user) echo "$top/tests/fuzz/lsi.dict" ;;
    *) if [ -f "$top/tests/fuzz/$1.dict" ]; then echo "$top/tests/fuzz/$1.dict"; fi ;;
    esac
}

max_len_of() {
    case $1 in
    qmp|hmp) echo 2048 ;;
    checkpoint) echo 24576 ;;   # header, directory, the LSI's registers and SCRIPTS RAM
    nbd-server) echo 8192 ;;    # server transcripts: handshakes, replies with their data
    *) echo 1024 ;;
    esac
}

# Found entries (named by hash) that add coverage to the hand-made ones, the rest dropped.
minimize() { # harness
    corpus=$top/tests/fuzz/corpus/$1
    aside=$fuzz_dir/minimize/$1
    rm -rf "$aside"
    mkdir -p "$aside"
    find "$corpus" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' \
        -exec mv {} "$aside" \;
    "$fuzz_dir/tests/fuzz/fuzz-$1" -merge=1 -use_counters=0 -close_fd_mask=2 "$corpus" "$aside" \
        >"$fuzz_dir/logs/$1-minimize.log" 2>&1
}

summary=""
mkdir -p "$fuzz_dir/logs"
for h in $harnesses; do
    work=$fuzz_dir/work/$h
    artifacts=$fuzz_dir/artifacts/$h
    log=$fuzz_dir/logs/$h.log
    corpus=$top/tests/fuzz/corpus/$h
    dict=$(dict_of "$h")
    mkdir -p "$work" "$artifacts" "$corpus"
    touch "$fuzz_dir/logs/$h.started"     # crashes of this run: the artifacts newer than it
    before=$(find "$corpus" -type f | wc -l)
    execs=0 rate=0
    if [ "$minutes" -gt 0 ]; then
        echo "=== fuzz-$h: $minutes minute(s)"
        # -close_fd_mask=2: the code's own log lines stay quiet; sanitizer reports do not.
        # -timeout=60: an input that runs longer hangs (as in standalone.c's replay).
        nice -n "$nice" "$fuzz_dir/tests/fuzz/fuzz-$h" -max_total_time=$((minutes * 60)) \
            -timeout=60 \
            -max_len="$(max_len_of "$h")" -len_control=0 ${dict:+-dict="$dict"} \
            -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$artifacts/" \
            "$work" "$corpus" >"$log" 2>&1 || true
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        # Edges only, not hit counts: what the committed corpus keeps stays small.
        "$fuzz_dir/tests/fuzz/fuzz-$h" -merge=1 -use_counters=0 -close_fd_mask=2 "$corpus" \
            "$work" >"$fuzz_dir/logs/$h-merge.log" 2>&1
    fi
    [ "${FUZZ_MINIMIZE:-0}" = 1 ] && minimize "$h"
    after=$(find "$corpus" -type f | wc -l)
    crashes=$(find "$artifacts" -type f -newer "$fuzz_dir/logs/$h.started" | wc -l)
    line=$(printf '%-10s %10s executions %6s/s  corpus %4d -> %4d  crashes %d' "$h" \
           "${execs:-?}" "${rate:-?}" "$before" "$after" "$crashes")
    echo "$line"
    summary="$summary$line
"
    if [ -f "$log" ] && grep -q "ERROR: \|runtime error" "$log"; then
        grep -m 3 "ERROR: \|runtime error\|SUMMARY" "$log" | sed 's/^/    /'
    fi
done

# Coverage of the corpora: every harness replays its corpus in the coverage build.
profiles=$cov_dir/profiles
rm -rf "$profiles"
mkdir -p "$profiles"
objects=""
for h in $all_harnesses; do
    LLVM_PROFILE_FILE="$profiles/$h-%p.profraw" \
        "$cov_dir/tests/fuzz/fuzz-$h" "$top/tests/fuzz/corpus/$h" >/dev/null 2>&1 || true
    objects="$objects -object $cov_dir/tests/fuzz/fuzz-$h"
done
llvm-profdata merge -sparse "$profiles"/*.profraw -o "$cov_dir/fuzz.profdata"
echo "=== line coverage of all the corpora"
# shellcheck disable=SC2086
llvm-cov report $objects -instr-profile="$cov_dir/fuzz.profdata" \
    -ignore-filename-regex='tests/|/usr/' 2>/dev/null |
    awk '$1 ~ /\.[ch]$/ || $1 == "TOTAL" { printf "%-30s %6s lines %6s missed %8s\n", $1, $8, $9, $10 }'
echo "=== executions"
printf '%s' "$summary"
echo "corpus: $(du -sh "$top/tests/fuzz/corpus" | cut -f1) in tests/fuzz/corpus"
