# SPDX-License-Identifier: GPL-2.0-or-later
# Shared by the guest tests: the kit, a scratch folder QEMU's chroot can see,
# remotes in the background, QEMU from Debian sid run through chroot.
GUEST_DIR=${GUEST_DIR:-$(cd "$(dirname "$0")/../guest" && pwd)}

# Builds (or reuses) the kit; sets KIT, QEMU_ROOT, GUEST.
guest_kit() {
    kit_out=$(sh "$GUEST_DIR/kit.sh" 2>&1) || {
        printf '%s\n' "$kit_out" | sed 's/^/# /'
        return 1
    }
    eval "$(printf '%s\n' "$kit_out" | tail -1)"
}

# A scratch folder inside the chroot: $W on the host is $IW inside.
guest_workdir() {
    W=$(mktemp -d "$QEMU_ROOT/tmp/mpqemu-test.XXXXXX")
    IW=${W#"$QEMU_ROOT"}
    cp "$GUEST/vmlinuz" "$GUEST/initrd" "$W/"
    trap 'guest_cleanup' EXIT
}

# guest_nothing_left: a TAP check that a launch left no process and no run directory in $W.
guest_nothing_left() {
    left=$(pgrep -af "$W/")
    [ -z "$left" ] && [ ! -e "$W/run" ]
    tap_result $? "nothing is left: no process, no run directory"
}

REMOTE_PIDS=""
guest_cleanup() {
    # "|| true": under set -e (bench.sh) a remote already gone made the script exit 1.
    # The children first: a QEMU started by timeout(1) outlived a SIGKILLed
    # timeout (left behind by every monitor-crosscheck run).
    for p in $REMOTE_PIDS; do
        pkill -9 -P "$p" 2>/dev/null || true
        kill -9 "$p" 2>/dev/null || true
    done
    [ -n "${KEEP_GUEST_DIR:-}" ] || rm -rf "$W"
}

# start_remote LOG ARGS...: an mpqemu-remote in the background; its pid in $!.
start_remote() {
    log=$1; shift
    "$MPQEMU_REMOTE" "$@" >"$log" 2>&1 &
    REMOTE_PIDS="$REMOTE_PIDS $!"
}

# wait_socket PATH: until a server listens there (10 s at most).
wait_socket() {
    i=0
    while [ ! -S "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -S "$1" ]
}

# stop_remote PID: SIGTERM, then its exit status (flushes drives first).
stop_remote() {
    kill -TERM "$1" 2>/dev/null
    wait "$1"
}

# sid_qemu TIMEOUT SERIAL_LOG ARGS...: QEMU >= 10.1 from the kit (sid-qemu), under
# TCG with shared memfd RAM, console on the serial log.
sid_qemu() {
    t=$1 serial=$2; shift 2
    MPQEMU_KIT=$KIT timeout "$t" "$GUEST_DIR/sid-qemu" \
        -accel tcg -m 512 -nodefaults -display none -no-reboot \
        -object memory-backend-memfd,id=mem,size=512M,share=on \
        -machine pc,memory-backend=mem -serial stdio "$@" >"$serial" 2>&1
}

# vfio_user_dev PATH: the -device argument attaching QEMU to our server.
vfio_user_dev() {
    printf '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"%s"}}' "$1"
}

# qd_append DEPTHS: the kernel arguments for rows with several I/Os in flight at
# each depth (sym53c8xx queues 16 tagged commands per device unless told otherwise).
qd_append() {
    [ -n "$1" ] || return 0
    tags=$(printf '%s\n' $1 16 | sort -n | tail -1)
    printf ' mpq.qd=%s mpq.symtags=%s' "$(echo $1 | tr ' ' ,)" "$tags"
}

# mpq_line LOG WORDS...: the guest's result line "MPQ WORDS ...", rest printed.
mpq_line() {
    log=$1; shift
    grep -a "^MPQ $* " "$log" | head -1 | sed "s/^MPQ $* //" | tr -d '\r'
}
