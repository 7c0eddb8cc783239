# SPDX-License-Identifier: GPL-2.0-or-later
# Minimal TAP for shell tests: each check prints "ok N - name" or "not ok N - name".
tap_n=0
tap_failed=0

tap_result() { # status name
    tap_n=$((tap_n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $tap_n - $2"
    else
        echo "not ok $tap_n - $2"
        tap_failed=$((tap_failed + 1))
    fi
}

# expect_run NAME WANT_STATUS PATTERN -- COMMAND...: the command exits with
# WANT_STATUS and its combined output matches the extended regex PATTERN.
expect_run() {
    name=$1 want=$2 pattern=$3
    shift 4
    out=$("$@" 2>&1 </dev/null)
    got=$?
    if [ "$got" -eq "$want" ] && printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
        tap_result 0 "$name"
    else
        printf '%s\n' "$out" | sed 's/^/# /'
        echo "# exit status $got, wanted $want; output should match: $pattern"
        tap_result 1 "$name"
    fi
}

# expect NAME GOT WANT: a TAP check that GOT is WANT (and not empty).
expect() {
    if [ -n "$3" ] && [ "$2" = "$3" ]; then
        tap_result 0 "$1"
    else
        echo "# got '$2', wanted '$3'"
        tap_result 1 "$1"
    fi
}

tap_done() {
    echo "1..$tap_n"
    [ "$tap_failed" -eq 0 ]
}
