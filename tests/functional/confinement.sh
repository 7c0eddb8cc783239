# SPDX-License-Identifier: GPL-2.0-or-later
# How a process is confined, as the host sees it through /proc/PID: for the
# tests of mpqemu-launch's confinement (functional/launch.sh, guest/launch-user.sh).
# Run as root: /proc/PID/root and the other namespaces are root's to look into.

# netdevs PID: the interfaces of the remote's network namespace and their flags.
netdevs() {
    nsenter --net="/proc/$1/ns/net" ip -o link | sed 's/^[0-9]*: \([^:@]*\)[^<]*<\([^>]*\)>.*/\1<\2>/' |
        tr '\n' ' '
}
# confinement PID: how the process is confined, as the host sees it.
confinement() {
    c=""
    for ns in mnt net pid user; do
        [ "$(readlink "/proc/$1/ns/$ns")" = "$(readlink /proc/self/ns/$ns)" ] &&
            c="$c $ns=host" || c="$c $ns=own"
    done
    st() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$2/status"; }
    c="$c nnp=$(st NoNewPrivs "$1") capeff=$(st CapEff "$1") capbnd=$(st CapBnd "$1")"
    [ -e "/proc/$1/root/etc/passwd" ] && c="$c root=host" || c="$c root=own"
    echo "${c# }"
}
# its_processes PID: the processes the remote's /proc shows.
its_processes() { ls "/proc/$1/root/proc" | grep -E '^[0-9]+$' | tr '\n' ' '; }
remote_of() { # PATTERN: the remote whose command line matches, once in its view
    i=0
    until p=$(pgrep -f "mpqemu-remote.*$1" | head -1) && [ -e "/proc/$p/root/proc/1" ] ||
          [ $i -ge 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "$p"
}
# wait_sandboxed PID: until its seccomp filter is on (it serves from then on).
wait_sandboxed() {
    i=0
    until grep -q '^Seccomp:[[:space:]]*2' "/proc/$1/status" 2>/dev/null || [ $i -ge 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}

NORMAL_UID=${MPQEMU_TEST_UID:-64123}   # no one's: the tests run the launcher as it
# as_user COMMAND...: runs it as $NORMAL_UID, no one's user (no passwd entry, no groups).
as_user() { setpriv --reuid "$NORMAL_UID" --regid "$NORMAL_UID" --clear-groups "$@"; }
# user_copy DIR FILE...: copies of the files in DIR, which the normal user may run
# (the checkout may be where only root can go); prints the directory.
user_copy() {
    dir=$1
    shift
    mkdir -p "$dir" && cp "$@" "$dir/" && chmod -R a+rX "$dir" && echo "$dir"
}
