#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The man pages made at build time: man renders each without a warning, and
# each names every option and KEY= its program's -h prints (kept in sync).
. "$(dirname "$0")/tap.sh"
: "${MPQEMU_MAN_DIR:?}" "${MPQEMU_REMOTE:?}" "${MPQEMU_PROBE:?}" "${MPQEMU_LAUNCH:?}"
bin_dir=$(dirname "$MPQEMU_PROBE")

# What -h prints that a user types: -options, --options and KEY= (words only).
options_of() {
    "$1" -h 2>&1 | tr ' \t,[]|()' '\n\n\n\n\n\n\n\n' |
        sed -n -e 's/^\(--\{0,1\}[a-zA-Z][a-zA-Z0-9-]*\).*/\1/p' \
               -e 's/^\([a-z][a-z0-9.-]*\)=.*/\1=/p' | sort -u
}

for prog in mpqemu-remote mpqemu-launch mpqemu-probe mpqemu-bench; do
    page="$MPQEMU_MAN_DIR/$prog.1"
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    [ -s "$page" ] && [ -z "$warnings" ]
    tap_result $? "man renders $prog(1) without warnings${warnings:+: $warnings}"
    # Wide, so that no word is hyphenated across lines.
    text=$(MANWIDTH=1000 man -l "$page" 2>/dev/null)
    missing=""
    for opt in $(options_of "$bin_dir/$prog"); do
        printf '%s\n' "$text" | grep -qF -- "$opt" || missing="$missing $opt"
    done
    [ -z "$missing" ]
    tap_result $? "$prog(1) mentions every option of $prog -h${missing:+ (missing:$missing)}"
done
tap_done
