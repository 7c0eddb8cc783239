#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# mpqemu-launch without a guest: --dry-run for the original design's sample
# layouts, the protocol choice, description errors, and supervision with a
# stand-in for QEMU that drives the devices over the inherited sockets
# (mpqemu-probe --fd), exits, fails, or waits to be stopped.  The remotes'
# confinement, seen from outside (/proc/PID): by default, "confine": false,
# as a normal user, and a remote its sandbox kills, named in the report.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/confinement.sh"
R=${MPQEMU_REMOTE:?}
P=${MPQEMU_PROBE:?}
L=${MPQEMU_LAUNCH:?}
DENY_CALL=${MPQEMU_SANDBOX_TEST:?}   # test-sandbox --deny-call PID
tmp=$(mktemp -d /tmp/mpqemu-launch-test.XXXXXX)
trap 'pkill -9 -f "$tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
truncate -s 16M "$tmp/d0.img" "$tmp/d1.img" "$tmp/d2.img"
chmod 666 "$tmp"/*.img

# A stand-in for QEMU: "-device help" lists $FAKE_DEVICES; otherwise it
# probes every x-pci-proxy-dev socket and vfio-user-pci path it was given,
# then sleeps $FAKE_SLEEP seconds, probes them all again if $FAKE_PROBE_AGAIN,
# hangs up on the remotes $FAKE_LINGER seconds before it exits if that is set,
# and exits $FAKE_EXIT.
cat >"$tmp/fake-qemu" <<'EOF'
#!/bin/sh
case "$*" in *"-device help"*) printf '%b\n' "$FAKE_DEVICES"; exit 0 ;; esac
probe_all() {
    for a in "$@"; do
        case $a in
        x-pci-proxy-dev,*fd=*)
            "$MPQEMU_PROBE" --iterations 20 --fd "${a##*fd=}" | grep -E 'vendor|config read' ;;
        *'"vfio-user-pci"'*)
            "$MPQEMU_PROBE" --iterations 20 --socket "$(echo "$a" | sed 's/.*"path":"\([^"]*\)".*/\1/')" |
                grep -E 'vendor|config read' ;;
        esac
    done
}
probe_all "$@"
[ -z "$FAKE_SHOW_CPUS" ] || grep '^Cpus_allowed_list:' /proc/$$/status
sleep "${FAKE_SLEEP:-0}"
[ -z "$FAKE_PROBE_AGAIN" ] || probe_all "$@"
if [ -n "$FAKE_LINGER" ]; then
    for a in "$@"; do
        case $a in x-pci-proxy-dev,*fd=*) eval "exec ${a##*fd=}>&-" ;; esac
    done
    sleep "$FAKE_LINGER"
fi
exit "${FAKE_EXIT:-0}"
EOF
chmod +x "$tmp/fake-qemu"
export MPQEMU_PROBE="$P"
PROXY='name "x-pci-proxy-dev", bus PCI'
VFU='name "vfio-user-pci", bus PCI'

lsi() { # N DRIVE-FILE: a controller with one disk, as JSON devices
    printf '{"driver": "lsi53c895a", "id": "lsi%s"}, {"driver": "scsi-hd", "id": "drive%s", "drive": "drive_image%s", "bus": "lsi%s.0", "scsi-id": 0}' \
        "$1" "$1" "$1" "$1"
}
drive() { printf '{"id": "drive_image%s", "file": "%s"}' "$1" "$2"; }

# The original design's samples: three controllers in three processes ...
cat >"$tmp/three.json" <<EOF
{"qemu": "$tmp/fake-qemu", "remote": "$R", "accel": "kvm", "memory": "4G",
 "protocol": "multi-process", "run-dir": "$tmp/run", "log-dir": "$tmp/logs",
 "remotes": [
  {"name": "remote0", "drives": [$(drive 1 "$tmp/d0.img")], "devices": [$(lsi 1)]},
  {"name": "remote1", "drives": [$(drive 2 "$tmp/d1.img")], "devices": [$(lsi 2)]},
  {"name": "remote2", "drives": [$(drive 3 "$tmp/d2.img")], "devices": [$(lsi 3)]}]}
EOF
# ... and two controllers in one process ("perf mode").
cat >"$tmp/perf.json" <<EOF
{"qemu": "$tmp/fake-qemu", "remote": "$R", "accel": "kvm", "memory": "4G",
 "run-dir": "$tmp/run", "log-dir": "$tmp/logs",
 "remotes": [
  {"name": "perf", "drives": [$(drive 1 "$tmp/d0.img"), $(drive 2 "$tmp/d1.img")],
   "devices": [$(lsi 1), $(lsi 2)]}]}
EOF

expect_run "--help" 0 'usage: mpqemu-launch' -- "$L" --help
out=$("$L" --dry-run "$tmp/three.json" 2>&1)
printf '%s\n' "$out" | grep -c "^$R " | grep -qx 3 &&
    printf '%s\n' "$out" | grep -q "^$R -drive id=drive_image1,file=$tmp/d0.img -device lsi53c895a,id=lsi1 -device scsi-hd,id=drive1,drive=drive_image1,bus=lsi1.0,scsi-id=0 -object x-remote-object,id=rmt0,devid=lsi1,fd=3$" &&
    printf '%s\n' "$out" | grep -q "memory-backend-memfd,id=mem,size=4G,share=on .*-device x-pci-proxy-dev,id=lsi1,fd=3 -device x-pci-proxy-dev,id=lsi2,fd=4 -device x-pci-proxy-dev,id=lsi3,fd=5$"
tap_result $? "--dry-run: three controllers in three processes, one socket pair each"
[ $? -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'

out=$("$L" --dry-run --protocol multi-process "$tmp/perf.json" 2>&1)
printf '%s\n' "$out" | grep -c "^$R " | grep -qx 1 &&
    printf '%s\n' "$out" | grep -q "x-remote-object,id=rmt0,devid=lsi1,fd=3 -object x-remote-object,id=rmt1,devid=lsi2,fd=4$" &&
    printf '%s\n' "$out" | grep -q "x-pci-proxy-dev,id=lsi1,fd=3 -device x-pci-proxy-dev,id=lsi2,fd=4$"
tap_result $? "--dry-run: two controllers in one process"
[ $? -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'

out=$("$L" --dry-run --protocol vfio-user --memory 1G "$tmp/perf.json" 2>&1)
printf '%s\n' "$out" | grep -q "x-vfio-user-server,id=vfu0,device=lsi1,socket.type=unix,socket.path=$tmp/run/lsi1.sock" &&
    printf '%s\n' "$out" | grep -qF "'{\"driver\":\"vfio-user-pci\",\"id\":\"lsi2\",\"socket\":{\"type\":\"unix\",\"path\":\"$tmp/run/lsi2.sock\"}}'" &&
    printf '%s\n' "$out" | grep -q "size=1G,share=on"
tap_result $? "--dry-run over vfio-user: socket paths, quoted JSON, overrides"
[ $? -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'

# The protocol comes from what the QEMU binary offers, and the accelerator.
FAKE_DEVICES="$PROXY" expect_run "auto: only x-pci-proxy-dev under TCG is refused" 2 \
    'delivers interrupts only with KVM' -- "$L" --dry-run --accel tcg "$tmp/perf.json"
FAKE_DEVICES="$PROXY\n$VFU" expect_run "auto: vfio-user under TCG" 0 'protocol: vfio-user' -- \
    "$L" --dry-run --accel tcg "$tmp/perf.json"
FAKE_DEVICES="$PROXY\n$VFU" expect_run "auto: the multi-process protocol with KVM" 0 \
    'protocol: multi-process' -- "$L" --dry-run "$tmp/perf.json"
FAKE_DEVICES='name "e1000"' expect_run "a QEMU with neither is refused" 2 \
    'supports neither vfio-user-pci nor x-pci-proxy-dev' -- "$L" --dry-run "$tmp/perf.json"
expect_run "a QEMU that does not run is refused" 2 'not found' -- \
    "$L" --dry-run --qemu /nonexistent/qemu "$tmp/perf.json"

printf '{"remotes": [], "x": 1}' >"$tmp/bad1.json"
expect_run "an unknown key is an error" 2 'unknown key "x"' -- "$L" "$tmp/bad1.json"
printf '{"remotes": []}' >"$tmp/bad2.json"
expect_run "no remotes is an error" 2 'at least one remote' -- "$L" "$tmp/bad2.json"
printf '{"remotes": [{"devices": [%s]}, {"devices": [%s]}]}' "$(lsi 1)" "$(lsi 1)" >"$tmp/bad3.json"
expect_run "a device id used twice is an error" 2 "device id 'lsi1' is used twice" -- \
    "$L" --dry-run --protocol vfio-user "$tmp/bad3.json"
printf '{"remotes": [{"devices": [{"driver": "lsi53c895a"}]}]}' >"$tmp/bad4.json"
expect_run "a device without id is an error" 2 'needs an "id"' -- "$L" "$tmp/bad4.json"
printf '{"run-dir": "/tmp/a,b", "remotes": [{"devices": [%s]}]}' "$(lsi 1)" >"$tmp/bad6.json"
expect_run "a run-dir that cannot be quoted is an error" 2 "must not contain" -- \
    "$L" --dry-run --protocol vfio-user "$tmp/bad6.json"
printf '{"remotes' >"$tmp/bad5.json"
expect_run "malformed JSON is an error" 2 'bad5.json' -- "$L" "$tmp/bad5.json"

# --- confinement -------------------------------------------------------------------

qemu-img create -q -f qcow2 "$tmp/base.qcow2" 16M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$tmp/top.qcow2"
truncate -s 1M "$tmp/cd.iso"
mkdir -p "$tmp/iso"
chmod 666 "$tmp"/*.qcow2
# PERF_JSON_WITH KEYS REMOTE-KEYS: perf.json with more keys, and more keys for its remote.
perf_with() {
    sed -e "s|\"run-dir\"|$1 \"run-dir\"|" -e "s|{\"name\": \"perf\",|{\"name\": \"perf\", $2|" \
        "$tmp/perf.json"
}
cat >"$tmp/media.json" <<EOF
{"qemu": "$tmp/fake-qemu", "remote": "$R", "run-dir": "$tmp/run", "log-dir": "$tmp/logs",
 "remotes": [{"name": "r0", "media-dirs": ["$tmp/iso"],
   "drives": [{"id": "d0", "file": "$tmp/top.qcow2"},
              {"id": "cd", "file": "$tmp/cd.iso", "format": "raw", "readonly": true}],
   "devices": [{"driver": "lsi53c895a", "id": "lsi0"},
               {"driver": "scsi-hd", "id": "hd0", "drive": "d0", "bus": "lsi0.0"},
               {"driver": "scsi-cd", "id": "cd0", "drive": "cd", "bus": "lsi0.0", "scsi-id": 1}],
   "args": ["-qmp", "unix:$tmp/run/r0.qmp,server,nowait"]}]}
EOF
out=$("$L" --dry-run --protocol vfio-user "$tmp/media.json" 2>&1)
view=$(printf '%s\n' "$out" | grep '^# view:')
for want in "/usr (ro, exec)" "/dev/null (rw, dev)" "/proc (its own proc)" "$R (ro, exec)" \
            "$tmp/top.qcow2 (rw)" "$tmp/base.qcow2 (ro)" "$tmp/cd.iso (ro)" "$tmp/iso (ro)" \
            "$tmp/run (rw)"; do
    printf '%s\n' "$view" | grep -qF " $want" || { echo "# not in the view: $want"; false; } || break
done &&
    printf '%s\n' "$out" | grep -q "^$R .* -sandbox allow-dir=$tmp/iso -qmp unix:$tmp/run/r0.qmp"
tap_result $? "--dry-run: the default view binds the binary, libraries, images, backing file, media directory, run directory"
[ $? -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
sed 's|"run-dir"|"confine": false, "run-dir"|' "$tmp/media.json" >"$tmp/media-off.json"
out=$("$L" --dry-run --protocol vfio-user "$tmp/media-off.json" 2>&1)
[ $? -eq 0 ] && ! printf '%s\n' "$out" | grep -q '^# view'
tap_result $? '--dry-run: "confine": false: no view'

# refused NAME PATTERN TOP-KEYS REMOTE-KEYS: perf.json with these keys is an error (exit 2).
refused() {
    perf_with "$3" "$4" >"$tmp/refused.json"
    expect_run "$1" 2 "$2" -- "$L" --dry-run --protocol vfio-user "$tmp/refused.json"
}
refused "confine: a string is an error" '"confine" must be true, false or an object' \
    '"confine": "yes",' ''
refused "confine: an unknown key is an error" 'unknown key "users"' '"confine": {"users": "x"},' ''
refused "confine: a minimal view without a mount namespace is an error" \
    'a minimal view needs the mount namespace' '"confine": {"namespaces": ["net"]},' ''
refused "confined: a tcp: monitor is refused (nothing could reach it)" \
    'network namespace of its own' '' '"args": ["-qmp", "tcp:127.0.0.1:4444,server,nowait"],'
refused "confined: a unix: monitor outside the run directory is refused" \
    "sockets must be in the run directory $tmp/run" '' \
    '"args": ["-qmp", "unix:/tmp/elsewhere.qmp,server,nowait"],'
refused "media-dirs must be strings" '"media-dirs" must be a list of strings' '' '"media-dirs": [7],'
refused "confined: the host's root as a media directory is refused" \
    "the host's whole file system" '' '"media-dirs": ["//"],'
perf_with "" '"media-dirs": ["'"$tmp"'/none"],' >"$tmp/bad13.json"
FAKE_DEVICES="$PROXY" expect_run "confined: a media directory that is not there is refused" 2 \
    "$tmp/none: No such file or directory" -- "$L" "$tmp/bad13.json"

# confined_run OUT JSON [WRAPPER...]: runs the launcher (the stand-in QEMU probes both
# controllers, then sleeps 4 s) and looks at its remote meanwhile: sets $seen (its uid,
# confinement, processes, interfaces) and $status; true if QEMU reached both controllers.
confined_run() {
    out=$1 json=$2
    shift 2
    FAKE_DEVICES="$PROXY" FAKE_SLEEP=4 "$@" "$L" "$json" >"$out" 2>&1 &
    launcher=$!
    sleep 1.5
    pid=$(remote_of "$tmp/d0.img")
    seen="uid $(awk '/^Uid:/ {print $2}' "/proc/$pid/status") $(confinement "$pid"); procs: $(its_processes "$pid"); net: $(netdevs "$pid")"
    wait $launcher
    status=$?
    [ $status -eq 0 ] && [ "$(grep -c 'vendor 0x1000 device 0x0012' "$out")" -eq 2 ] ||
        { sed 's/^/# /' "$out"; false; }
}
CONFINED="mnt=own net=own pid=own user=%s nnp=1 capeff=0000000000000000 capbnd=0000000000000000 root=own; procs: 1 ; net: lo<LOOPBACK> "

# Default confinement, as root; -sandbox off so that no_new_privs is the launcher's doing.
perf_with "" '"args": ["-sandbox", "off"],' >"$tmp/default.json"
confined_run "$tmp/default.out" "$tmp/default.json"
tap_result $? "default confinement: QEMU reaches both controllers, exit 0 (got $status)"
expect "default confinement: own mount, net, pid namespaces, no_new_privs, no capabilities, its own root" \
    "$seen" "uid 0 $(printf "$CONFINED" host)"
nothing_left_now() { [ -z "$(pgrep -af "mpqemu-remote.*$tmp/")" ] && [ ! -e "$tmp/run" ]; }
nothing_left_now
tap_result $? "after the default run: no process and no run directory left"

perf_with '"confine": false,' '"args": ["-sandbox", "off"],' >"$tmp/unconfined.json"
FAKE_DEVICES="$PROXY" FAKE_SLEEP=3 "$L" "$tmp/unconfined.json" >"$tmp/unconfined.out" 2>&1 &
launcher=$!
sleep 1.5
pid=$(pgrep -f "mpqemu-remote.*$tmp/d0.img" | head -1)
got=$(confinement "$pid" | sed 's/capeff=0*[1-9a-f][0-9a-f]*/capeff=some/; s/capbnd=[0-9a-f]*//')
wait $launcher
expect '"confine": false: the host'"'"'s namespaces and root, capabilities, no no_new_privs' \
    "$got" "mnt=host net=host pid=host user=host nnp=0 capeff=some  root=host"

# "cpus": QEMU and the remotes run on the CPUs given, and only then.
cpus_of() { awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$1/status"; }
refused '"cpus": a reversed range is an error' '"cpus": "1-0" is not a CPU list' '"cpus": "1-0",' ''
refused '"cpus": a CPU the launcher may not use is an error' \
    '"cpus": CPU 1023 is not one mpqemu-launch may run on' '"cpus": "1023",' ''
expect_run '--cpus: a trailing comma is an error' 2 '"0," is not a CPU list' -- \
    "$L" --dry-run --protocol vfio-user --cpus 0, "$tmp/perf.json"
last=$(cpus_of $$ | sed 's/.*[-,]//')
perf_with "\"cpus\": \"$last\"," '' >"$tmp/cpus.json"
expect_run '--dry-run: "cpus" is printed' 0 "# cpus: $last \\(QEMU and every remote process\\)" -- \
    "$L" --dry-run --protocol vfio-user "$tmp/cpus.json"
# cpus_seen ARGS...: runs the launcher; "remote CPUS qemu CPUS", where the two ran.
cpus_seen() {
    FAKE_DEVICES="$PROXY" FAKE_SLEEP=3 FAKE_SHOW_CPUS=1 "$L" "$@" >"$tmp/cpus.out" 2>&1 &
    launcher=$!
    remote=$(cpus_of "$(remote_of "$tmp/d0.img")")
    wait $launcher
    echo "remote $remote qemu $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$tmp/cpus.out")"
}
expect "cpus $last (json): QEMU and the remote run on CPU $last only" \
    "$(cpus_seen "$tmp/cpus.json")" "remote $last qemu $last"
expect "cpus $last (--cpus): QEMU and the remote run on CPU $last only" \
    "$(cpus_seen --cpus "$last" "$tmp/perf.json")" "remote $last qemu $last"
# Without it, they keep the launcher's CPUs (a leak of the above would show here).
expect 'no "cpus": QEMU and the remote run where the launcher may' \
    "$(cpus_seen "$tmp/perf.json")" "remote $(cpus_of $$) qemu $(cpus_of $$)"

# A remote its sandbox kills: named in the report, with its own log line.
FAKE_DEVICES="$PROXY" FAKE_SLEEP=30 "$L" "$tmp/perf.json" >"$tmp/sigsys.out" 2>&1 &
launcher=$!
sleep 1.5
pid=$(remote_of "$tmp/d0.img")
wait_sandboxed "$pid"
"$DENY_CALL" --deny-call "$pid"
wait $launcher
status=$?
[ $status -eq 3 ] && grep -q "remote 'perf' (pid $pid) was killed by its sandbox for a system call outside its allowlist: \"mpqemu-remote: sandbox: system call socket (41) is not allowed; exiting\"" "$tmp/sigsys.out" &&
    grep -q 'stopping the VM' "$tmp/sigsys.out"
tap_result $? "a remote its sandbox kills (SIGSYS) is named in the report with its log line; exit 3"
[ $status -eq 3 ] || sed 's/^/# /' "$tmp/sigsys.out"

# As a normal user: a user namespace gives the remote the rights to set up its confinement.
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$tmp/user"
    chown "$NORMAL_UID:$NORMAL_UID" "$tmp/user"
    bin=$(user_copy "$tmp/bin" "$L" "$R" "$P")
    sed -e "s|$tmp/run|$tmp/user/run|; s|$tmp/logs|$tmp/user/logs|; s|\"$R\"|\"$bin/mpqemu-remote\"|" \
        "$tmp/perf.json" >"$tmp/user.json"
    L=$bin/mpqemu-launch MPQEMU_PROBE=$bin/mpqemu-probe
    confined_run "$tmp/user.out" "$tmp/user.json" as_user
    tap_result $? "a normal user's launcher: QEMU reaches both controllers, exit 0 (got $status)"
    L=${MPQEMU_LAUNCH:?} MPQEMU_PROBE=$P
    expect "a normal user's launcher: the remote runs as that user, in its own user, mount, net, pid namespaces" \
        "$seen" "uid $NORMAL_UID $(printf "$CONFINED" own)"
    [ ! -e "$tmp/user/run" ]
    tap_result $? "a normal user's launcher: the run directory is gone"
    sed 's/"run-dir"/"confine": {"user": "nobody"}, "run-dir"/' "$tmp/user.json" >"$tmp/user2.json"
    expect_run "a normal user cannot run the remotes as another user" 2 'needs the launcher to run as root' -- \
        as_user "$bin/mpqemu-launch" --dry-run --protocol vfio-user "$tmp/user2.json"
else
    tap_result 1 "the normal-user checks need root to become one"
fi

nothing_left() { # NAME
    left=$(pgrep -af "mpqemu-remote.*$tmp/")
    [ -z "$left" ] && [ ! -e "$tmp/run" ]
    tap_result $? "$1: no process and no run directory left"
}

# A run: the stand-in drives each controller through the socket it inherited.
out=$(FAKE_DEVICES="$PROXY" "$L" "$tmp/three.json" 2>&1)
status=$?
[ $status -eq 0 ] && [ "$(printf '%s\n' "$out" | grep -c 'vendor 0x1000 device 0x0012')" -eq 3 ]
tap_result $? "multi-process run: QEMU reaches all three controllers through its fds (exit $status)"
[ $status -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
[ -e "$tmp/logs/remote0.log" ] && [ -e "$tmp/logs/remote2.log" ] && [ -e "$tmp/logs/qemu.log" ]
tap_result $? "one log file per process"
nothing_left "after QEMU exits"

# QEMU hangs up on its remotes as it quits: they exit first, and that is no remote's death.
out=$(FAKE_DEVICES="$PROXY" FAKE_LINGER=0.5 "$L" "$tmp/three.json" 2>&1)
status=$?
[ $status -eq 0 ] && ! printf '%s\n' "$out" | grep -q 'stopping the VM'
tap_result $? "remotes that exit as QEMU hangs up before quitting: a clean end, exit 0 (got $status)"
[ $status -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
nothing_left "after QEMU hangs up and exits"

# The multi-process protocol asked for by name without KVM runs, for a guest that polls.
out=$(FAKE_DEVICES="$PROXY" "$L" --accel tcg "$tmp/three.json" 2>&1)
status=$?
[ $status -eq 0 ] && printf '%s
' "$out" |
    grep -q 'warning: without KVM x-pci-proxy-dev delivers no interrupt: the guest must poll'
tap_result $? "multi-process asked for under TCG: it runs (exit $status), warning that the guest must poll"
[ $status -eq 0 ] || printf '%s
' "$out" | sed 's/^/# /'
nothing_left "after a TCG run"

FAKE_DEVICES="$PROXY" FAKE_EXIT=7 expect_run "QEMU failing: exit 4, reported" 4 \
    'QEMU \(pid [0-9]+\) exited with status 7' -- "$L" "$tmp/perf.json"
nothing_left "after QEMU fails"

# SIGTERM to the launcher: QEMU and the remotes are stopped.
FAKE_DEVICES="$PROXY" FAKE_SLEEP=30 "$L" "$tmp/perf.json" >"$tmp/term.out" 2>&1 &
launcher=$!
sleep 1.5
kill -TERM $launcher
wait $launcher
status=$?
[ $status -eq 5 ] && grep -q 'Terminated: stopping the VM' "$tmp/term.out"
tap_result $? "SIGTERM: the VM is stopped, exit 5 (got $status)"
nothing_left "after SIGTERM"

# A remote killed, policy continue: reported, the VM goes on, exit 3 at the end.
FAKE_DEVICES="$PROXY" FAKE_SLEEP=3 "$L" --on-remote-exit continue "$tmp/three.json" \
    >"$tmp/cont.out" 2>&1 &
launcher=$!
sleep 1.5
pkill -9 -f "mpqemu-remote.*$tmp/d1.img"
wait $launcher
status=$?
[ $status -eq 3 ] && grep -q "remote 'remote1' (pid [0-9]*) was killed by signal 9" "$tmp/cont.out" &&
    grep -q 'the VM goes on without it' "$tmp/cont.out" && ! grep -q 'stopping the VM' "$tmp/cont.out"
tap_result $? "a remote killed with on-remote-exit continue: reported, VM goes on, exit 3"
[ $status -eq 3 ] || sed 's/^/# /' "$tmp/cont.out"
nothing_left "after a remote died"

# Confined remotes: another user, new mount/net/pid namespaces, no_new_privs.
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
    sed 's/"run-dir"/"confine": {"user": "nobody", "namespaces": ["mount", "net", "pid"]}, "run-dir"/' \
        "$tmp/perf.json" >"$tmp/confined.json"
    FAKE_DEVICES="$PROXY" FAKE_SLEEP=5 "$L" "$tmp/confined.json" >"$tmp/conf.out" 2>&1 &
    launcher=$!
    sleep 1.5
    pid=$(pgrep -f "mpqemu-remote.*$tmp/d0.img" | head -1)
    user=$(ps -o user= -p "$pid" 2>/dev/null)
    nnp=$(awk '/^NoNewPrivs/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    netns=$([ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] && echo own)
    pidns=$(awk '/^NSpid/ {print NF}' "/proc/$pid/status" 2>/dev/null)
    [ "$user" = nobody ] && [ "$nnp" = 1 ] && [ "$netns" = own ] && [ "$pidns" = 3 ] &&
        [ "$(grep -c 'vendor 0x1000 device 0x0012' "$tmp/conf.out")" -eq 2 ]
    tap_result $? "confined remote: user nobody, no_new_privs, own net and pid namespaces, serves"
    echo "# user=$user no_new_privs=$nnp netns=$netns NSpid-fields=$pidns"
    # As its namespace's init it must still hear SIGTERM from outside (and exit 0).
    kill -TERM "$pid"
    wait $launcher
    grep -q "remote 'perf' (pid $pid) exited with status 0" "$tmp/conf.out"
    tap_result $? "a confined remote (PID namespace init) stops on SIGTERM from outside"
    sed 's/^/# /' "$tmp/conf.out" | grep -v 'round trip\|BAR\|read '
    nothing_left "after the confined run"
else
    tap_result 1 "confinement needs root and a 'nobody' user"
fi

# --- on-remote-exit restart: each remote is a keeper, its device process comes back ------

restart_json() { # PROTOCOL BUDGET: perf.json with the restart policy, confined (the default)
    perf_with "\"protocol\": \"$1\", \"on-remote-exit\": \"restart\", \"restart\": $2," ''
}
restart_json multi-process '{"max": 3, "window": 30}' >"$tmp/restart.json"
out=$("$L" --dry-run "$tmp/restart.json" 2>&1)
printf '%s\n' "$out" | grep -q "^$R .*fd=4 -restart on,max=3,window=30$" &&
    printf '%s\n' "$out" | grep -q "^# on-remote-exit restart: .* at most 3 times in 30 s" &&
    printf '%s\n' "$out" | grep -q "x-pci-proxy-dev,id=lsi1,fd=3 -device x-pci-proxy-dev,id=lsi2,fd=4$"
ok=$?
tap_result $ok "--dry-run with restart: the remote gets -restart on with the budget, the proxies are as ever"
[ $ok -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'

refused 'on-remote-exit: an unknown policy is an error' \
    '"on-remote-exit" is stop, continue or restart, not "retry"' '"on-remote-exit": "retry",' ''
refused 'restart: a budget without the restart policy is an error' \
    'which this description does not choose' '"restart": {"max": 2},' ''
refused 'restart: max must be a number' '"max" must be a whole number from 0 to 1000' \
    '"on-remote-exit": "restart", "restart": {"max": "2"},' ''
refused 'restart: max is at most 1000' '"max" must be a whole number from 0 to 1000' \
    '"on-remote-exit": "restart", "restart": {"max": 1001},' ''
refused 'restart: a window of 0 s is an error' '"window" must be a whole number from 1 to 86400' \
    '"on-remote-exit": "restart", "restart": {"window": 0},' ''
refused 'restart: an unknown key is an error' 'unknown key "tries" \(max, window\)' \
    '"on-remote-exit": "restart", "restart": {"tries": 2},' ''
refused 'restart: -restart in args is an error' '"args" must not give -restart' \
    '"on-remote-exit": "restart",' '"args": ["-restart", "on"],'
refused 'restart: a monitor that waits for a client is an error' 'waits for a client.*add ,nowait' \
    '"on-remote-exit": "restart",' '"args": ["-qmp", "unix:'"$tmp"'/run/r.qmp,server"],'
long=$tmp/run-directory-long-enough-that-no-keeper-directory-fits
sed -e "s|$tmp/run|$long|" -e 's|"run-dir"|"on-remote-exit": "restart", "run-dir"|' \
    "$tmp/perf.json" >"$tmp/long.json"
expect_run "restart over vfio-user, confined: a run-dir too long for the keeper's directory is an error" 2 \
    'too long for on-remote-exit restart over vfio-user' -- \
    "$L" --dry-run --protocol vfio-user "$tmp/long.json"

# device_of KEEPER [NOT]: the keeper's device process (its child), once it has one other than NOT.
device_of() {
    i=0
    until d=$(awk '{print $1}' "/proc/$1/task/$1/children" 2>/dev/null) && [ -n "$d" ] &&
          [ "$d" != "${2:-}" ] || [ $i -ge 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "$d"
}
# until_probed N OUT: until the stand-in has probed N controllers.
until_probed() {
    i=0
    until [ "$(grep -c 'vendor 0x1000 device 0x0012' "$2")" -ge "$1" ] || [ $i -ge 200 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}
# A device process killed under a running VM comes back; QEMU's sockets stay connected.
for proto in multi-process vfio-user; do
    devices=$PROXY
    [ $proto = vfio-user ] && devices=$VFU
    restart_json $proto '{"max": 3, "window": 30}' >"$tmp/restart-$proto.json"
    FAKE_DEVICES="$devices" FAKE_SLEEP=4 FAKE_PROBE_AGAIN=1 "$L" "$tmp/restart-$proto.json" \
        >"$tmp/restart.out" 2>&1 &
    launcher=$!
    keeper=$(remote_of "$tmp/d0.img")
    until_probed 2 "$tmp/restart.out"
    device=$(device_of "$keeper")
    kill -9 "$device"
    wait $launcher
    status=$?
    [ $status -eq 0 ] && [ "$(grep -c 'vendor 0x1000 device 0x0012' "$tmp/restart.out")" -eq 4 ] &&
        grep -q "remote 'perf': its device process was restarted 1 time" "$tmp/restart.out" &&
        grep -q 'lsi1: restarted: registers restored' "$tmp/logs/perf.log" &&
        grep -q 'lsi2: restarted: registers restored' "$tmp/logs/perf.log"
    ok=$?
    tap_result $ok "restart, $proto, confined: the device process killed, both controllers answer QEMU again through the same keeper; exit 0"
    [ $ok -eq 0 ] || { sed 's/^/# /' "$tmp/restart.out"; tail -8 "$tmp/logs/perf.log" | sed 's/^/# log: /'; }
    nothing_left "restart, $proto"
done

# The budget spent: the keeper gives up, the launcher says why and stops the VM.
restart_json vfio-user '{"max": 1, "window": 60}' >"$tmp/budget.json"
FAKE_DEVICES="$VFU" FAKE_SLEEP=30 "$L" "$tmp/budget.json" >"$tmp/budget.out" 2>&1 &
launcher=$!
keeper=$(remote_of "$tmp/d0.img")
until_probed 2 "$tmp/budget.out"
first=$(device_of "$keeper")
kill -9 "$first"
kill -9 "$(device_of "$keeper" "$first")"
wait $launcher
status=$?
[ $status -eq 3 ] &&
    grep -q "remote 'perf' (pid $keeper) gave up restarting its device process, over its restart budget: \".*it died 2 times in 60 s, over the restart budget (-restart max=1,window=60): giving up\"" "$tmp/budget.out" &&
    grep -q 'stopping the VM (on-remote-exit: restart' "$tmp/budget.out"
tap_result $? "restart: over the budget the launcher quotes the keeper, stops the VM, exit 3 (got $status)"
[ $status -eq 3 ] || sed 's/^/# /' "$tmp/budget.out"
nothing_left "restart, budget spent"

# The keeper itself killed: reported, the VM stopped; its private directory does not stay behind.
FAKE_DEVICES="$VFU" FAKE_SLEEP=30 "$L" "$tmp/budget.json" >"$tmp/keeper.out" 2>&1 &
launcher=$!
keeper=$(remote_of "$tmp/d0.img")
until_probed 2 "$tmp/keeper.out"
ls -a "$tmp/run" | grep -q '^\.mpqemu-keeper-'
private=$?
kill -9 "$keeper"
wait $launcher
status=$?
[ $private -eq 0 ] && [ $status -eq 3 ] &&
    grep -q "remote 'perf' (pid $keeper) was killed by signal 9" "$tmp/keeper.out"
tap_result $? "restart: the keeper killed is reported, the VM stopped, exit 3 (got $status)"
[ $status -eq 3 ] || sed 's/^/# /' "$tmp/keeper.out"
nothing_left "restart, keeper killed (its private socket directory removed)"

# --- NBD drives: a unix socket's directory in the view; TCP with "network": "host" ------------

truncate -s 8M "$tmp/unix-export.img" "$tmp/tcp-export.img"
mkdir -p "$tmp/nbd"
qemu-nbd --fork --persistent --pid-file="$tmp/nbd/unix.pid" -k "$tmp/nbd/export.sock" -f raw \
    "$tmp/unix-export.img"
port=$((20000 + $$ % 20000))
qemu-nbd --fork --persistent --pid-file="$tmp/nbd/tcp.pid" -b 127.0.0.1 -p $port -f raw \
    "$tmp/tcp-export.img"
nbd_json() { # FILE [REMOTE-KEYS]: a confined remote whose disk is that NBD export (no format:
             # the remote reads it to tell)
    cat <<EOF
{"qemu": "$tmp/fake-qemu", "remote": "$R", "run-dir": "$tmp/run", "log-dir": "$tmp/logs",
 "protocol": "multi-process",
 "remotes": [{"name": "nbd", ${2:-} "drives": [{"id": "n0", "file": "$1"}],
   "devices": [{"driver": "lsi53c895a", "id": "lsi0"},
               {"driver": "scsi-hd", "id": "hd0", "drive": "n0", "bus": "lsi0.0"}],
   "args": ["-monitor", "unix:$tmp/run/hmp.sock,server,nowait"]}]}
EOF
}
# nbd_run NAME JSON URI NET: the stand-in QEMU reaches the controller, HMP's info block shows
# the export, the launcher exits 0; the remote's network namespace is NET (own or host).
nbd_run() {
    FAKE_DEVICES="$PROXY" FAKE_SLEEP=3 "$L" "$2" >"$tmp/nbd.out" 2>&1 &
    launcher=$!
    pid=$(remote_of "lsi53c895a.*$tmp/run/hmp.sock")
    i=0
    until [ -S "$tmp/run/hmp.sock" ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
    block=$({ echo "info block"; sleep 0.3; } |
            socat -t 0.5 - UNIX-CONNECT:"$tmp/run/hmp.sock" 2>/dev/null | tr -d '\r' | grep '^(qemu) n0')
    net=$(confinement "$pid" | sed 's/.*\(mnt=[a-z]* net=[a-z]* pid=[a-z]*\).*/\1/')
    wait $launcher
    status=$?
    [ $status -eq 0 ] && [ "$block" = "(qemu) n0 (n0): $3 (raw)" ] && [ "$net" = "mnt=own net=$4 pid=own" ] &&
        grep -q 'vendor 0x1000 device 0x0012' "$tmp/nbd.out"
    ok=$?
    tap_result $ok "$1"
    [ $ok -eq 0 ] || { echo "# exit $status; '$block'; $net"; sed 's/^/# /' "$tmp/nbd.out"; }
}

unix_uri="nbd+unix:///?socket=$tmp/nbd/export.sock"
nbd_json "$unix_uri" >"$tmp/nbd-unix.json"
out=$("$L" --dry-run "$tmp/nbd-unix.json" 2>&1)
printf '%s\n' "$out" | grep '^# view:' | grep -qF " $tmp/nbd (ro)," &&
    ! printf '%s\n' "$out" | grep '^# view:' | grep -qF 'nbd+unix'
tap_result $? "NBD over a unix socket: the socket's directory is in the view, read-only"
nbd_run "NBD over a unix socket, confined: the remote reads the export through the bound directory" \
    "$tmp/nbd-unix.json" "$unix_uri" own
nothing_left "NBD over a unix socket"

nbd_json "nbd://127.0.0.1:$port/" >"$tmp/nbd-tcp.json"
expect_run "NBD over TCP, confined: refused without \"network\": \"host\", saying why" 2 \
    "NBD server 127.0.0.1 port $port is reached over TCP.*\"network\": \"host\"" -- \
    "$L" --dry-run "$tmp/nbd-tcp.json"
nbd_json "nbd://127.0.0.1:$port/" '"network": "host",' >"$tmp/nbd-tcp-host.json"
expect_run "NBD over TCP with \"network\": \"host\": --dry-run says so" 0 \
    "# network: the host's" -- "$L" --dry-run "$tmp/nbd-tcp-host.json"
nbd_run "NBD over TCP, \"network\": \"host\": the remote reaches the server from the host's network namespace, the others its own" \
    "$tmp/nbd-tcp-host.json" "nbd://127.0.0.1:$port/" host
nothing_left "NBD over TCP"
nbd_json "nbd://localhost:$port/" '"network": "host",' >"$tmp/nbd-name.json"
out=$("$L" --dry-run "$tmp/nbd-name.json" 2>&1)
printf '%s\n' "$out" | grep '^# view:' | grep -qF ' /etc/hosts (ro)'
tap_result $? "NBD over TCP to a server named: the resolver's files are in the view"
mkdir -p "$tmp/psk"
echo "alice:0123456789abcdef" >"$tmp/psk/keys.psk"
nbd_json "nbds+unix:///?socket=$tmp/nbd/export.sock&tls-psk-file=$tmp/psk/keys.psk" >"$tmp/nbd-tls.json"
out=$("$L" --dry-run "$tmp/nbd-tls.json" 2>&1)
printf '%s\n' "$out" | grep '^# view:' | grep -qF " $tmp/psk/keys.psk (ro)"
status=$?
tap_result $status "NBD with TLS: the key file is in the view, read-only"
[ $status -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
nbd_json "$unix_uri" '"network": "wifi",' >"$tmp/nbd-bad.json"
expect_run '"network" is "none" or "host"' 2 '"network" is "none" or "host"' -- \
    "$L" --dry-run "$tmp/nbd-bad.json"
kill "$(cat "$tmp/nbd/unix.pid")" "$(cat "$tmp/nbd/tcp.pid")"
tap_done
