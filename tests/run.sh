#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds mpqemu twice, with ASan+UBSan and optimised, runs every test in
# both builds, and ends with the line "N passed, N failed" counting single
# checks.  Exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
logs=""
build_failures=0

configure() { # dir options...
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        return 0
    fi
    meson setup "$dir" -Dtests=enabled "$@"
}

run_config() { # name options...
    name=$1
    shift
    dir="$top/build/test-$name"
    echo "=== $name build ($*)"
    if ! configure "$dir" "$@" || ! ninja -C "$dir"; then
        echo "=== $name: build FAILED"
        build_failures=$((build_failures + 1))
        return
    fi
    meson test -C "$dir" --print-errorlogs --timeout-multiplier "${TEST_TIMEOUT_MULTIPLIER:-1}"
    logs="$logs $dir/meson-logs/testlog.json"
}

# Sanitizers: any report is fatal, leaks included.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export ASAN_OPTIONS
run_config sanitize -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=all
run_config release -Dbuildtype=release

# shellcheck disable=SC2086
python3 "$top/tests/summarize.py" --build-failures "$build_failures" $logs
