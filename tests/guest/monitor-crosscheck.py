# SPDX-License-Identifier: GPL-2.0-or-later
"""mpqemu-remote's monitors against QEMU's own, request by request.

    monitor-crosscheck.py QEMU_QMP OURS_QMP QEMU_DIR OURS_DIR

Both processes have the same drives and devices (an LSI53C895A, a qcow2
scsi-hd "d0"/sd0, a raw scsi-cd "cd"/cd0, -name vm1), QEMU stopped (-S).
Each request goes to both; the replies are compared as text, members in
their order, after the differences docs/monitor.md names are taken out:
each process's own directory, QEMU's node names ("#block123", ours the
drive ids), versions, timestamps, and the optional members QEMU adds that
mpqemu-remote does not (KNOWN_EXTRAS).  HMP command lines go through
human-monitor-command (QEMU's HMP socket echoes what is typed).  Prints
one TAP line per request; exits 1 if any differs.
"""
import json
import re
import socket
import sys

# Members QEMU has that mpqemu-remote leaves out, all optional in QEMU's
# schema: (path of the object, member).  "*" is any list index.
KNOWN_EXTRAS = {
    ("return.*.inserted.image", "limits"),
    ("return.*.inserted.image", "actual-size"),
    ("return.*.inserted.image", "dirty-flag"),
    ("return.*.inserted.image", "cluster-size"),
    ("return.*.inserted.image", "format-specific"),
    ("return.*", "parent"),             # query-blockstats: the file node's
    ("return.*", "driver-specific"),
}


class Monitor:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        self.greeting = self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("monitor closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def ask(self, request):
        """The reply line, and the events that came before it."""
        self.sock.sendall(request.encode() + b"\n")
        events = []
        while True:
            line = self.line()
            if line.startswith('{"timestamp"'):
                events.append(line)
            else:
                return line, events


def ordered(text):
    return json.loads(text, object_pairs_hook=lambda pairs: pairs)


def strip_extras(value, path=""):
    """value without KNOWN_EXTRAS (QEMU's side); lists of pairs are objects."""
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        return [(k, strip_extras(v, path + "." + k)) for k, v in value
                if not any(re.fullmatch(re.escape(p).replace(r"\*", r"[^.]+"), path.lstrip("."))
                           and k == m for p, m in KNOWN_EXTRAS)]
    if isinstance(value, list):
        return [strip_extras(v, path + ".*") for v in value]
    return value


def text_of(value):
    """The text QEMU's writer makes of a value parsed by ordered()."""
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        return "{" + ", ".join(json.dumps(k) + ": " + text_of(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(text_of(v) for v in value) + "]"
    return json.dumps(value)


def normalize(text, directory):
    text = text.replace(directory, "DIR")
    text = re.sub(r'"seconds": \d+, "microseconds": \d+', '"seconds": S, "microseconds": U', text)
    text = re.sub(r'#block\d+', 'NODE', text)
    text = re.sub(r'"node-name": "(d0|cd)"', '"node-name": "NODE"', text)
    text = re.sub(r'^(d0|cd) \((d0|cd)\):', r'\1 (NODE):', text)
    text = re.sub(r'\\r\\n(d0|cd) \((d0|cd)\):', r'\\r\\n\1 (NODE):', text)
    text = re.sub(r'"return": "(d0|cd) \((d0|cd)\):', r'"return": "\1 (NODE):', text)
    # A file node as QEMU's only child of a drive: none of ours has one.
    text = re.sub(r'"children": \[\{"node-name": "NODE", "child": "file"\}\]', '"children": []',
                  text)
    return text


def compare(name, qemu, ours, qdir, odir):
    """Texts as they are; or, where QEMU's had extras, both made again without them."""
    tree = ordered(qemu)
    stripped = strip_extras(tree)
    if stripped == tree:
        q, o = normalize(qemu, qdir), normalize(ours, odir)
    else:
        q, o = normalize(text_of(stripped), qdir), normalize(text_of(ordered(ours)), odir)
    ok = q == o
    print(("ok" if ok else "not ok") + " - " + name)
    if not ok:
        print("#   qemu: " + q[:2000])
        print("#   ours: " + o[:2000])
    return ok


def hmc(line):
    return json.dumps({"execute": "human-monitor-command", "arguments": {"command-line": line}})


QMP_SAME = [
    # Checks of the request and of the arguments, and their texts.
    '[1]', '{"id":5}', '{"foo":1,"execute":7}', '{"arguments":[],"x":1,"execute":"query-status"}',
    '{"execute":"query-status","arguments":[]}', '{"exec-oob":"query-status"}',
    '{"execute":"nosuch","id":{"a":[1,2.5,true,null],"status":1,"singlestep":2,"q":0.1}}',
    '{"execute":"query-name","id":"\\u00e9\\u0001\\ud83d\\ude00\\u0000\\"\\\\\\/\\t~"}',
    '{"execute":"query-name","id":18446744073709551615}',
    '{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}',
    '{"execute":"qmp_capabilities","arguments":{"enable":[1]}}',
    '{"execute":"qmp_capabilities","arguments":{"enable":["xx"]}}',
    '{"execute":"qmp_capabilities","arguments":{"foo":1}}',
    '{"execute":"qmp_capabilities"}',
    '{"execute":"eject","arguments":{"foo":1,"force":"yes","device":5}}',
    '{"execute":"eject","arguments":{"foo":1,"id":"x"}}',
    '{"execute":"blockdev-change-medium","arguments":{"device":"x"}}',
    '{"execute":"blockdev-change-medium","arguments":{"read-only-mode":"x","filename":"f",'
    '"device":"nosuch"}}',
    '{"execute":"block_resize","arguments":{"device":"x"}}',
    '{"execute":"block_resize","arguments":{"size":1.5,"device":"x"}}',
    '{"execute":"block_resize","arguments":{"size":9223372036854775808,"device":"x"}}',
    '{"execute":"query-blockstats","arguments":{"query-nodes":1}}',
    '{"execute":"query-status","arguments":{"zz":1,"a":2}}',
    # The commands' errors.
    '{"execute":"eject","arguments":{"device":"x"}}', '{"execute":"eject","arguments":{}}',
    '{"execute":"eject","arguments":{"id":"lsi0"}}', '{"execute":"eject","arguments":{"id":"sd0"}}',
    '{"execute":"blockdev-change-medium","arguments":{"id":"cd0","filename":"/nonexistent.iso"}}',
    '{"execute":"blockdev-change-medium","arguments":{"id":"cd0","filename":"/x","format":"nosuch"}}',
    '{"execute":"block_resize","arguments":{"size":-1,"device":"x"}}',
    '{"execute":"block_resize","arguments":{"size":512}}',
    '{"execute":"block_resize","arguments":{"size":-1,"device":"d0"}}',
    '{"execute":"human-monitor-command","arguments":{"command-line":"info name","cpu-index":5}}',
    '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/cd0","property":"scsi-id"}}',
    '{"execute":"qom-get","arguments":{"path":"sd0","property":"type"}}',
    '{"execute":"qom-get","arguments":{"path":"sd0","property":"nosuch"}}',
    '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/zz","property":"type"}}',
    # The queries, with QEMU's extras taken out.
    '{"execute":"query-name"}', '{"execute":"query-block"}', '{"execute":"query-blockstats"}',
    # HMP.
    hmc("info name"), hmc("info block"), hmc("info block cd"), hmc('info block "cd"'),
    hmc("info block nosuch"), hmc("info blockstats"), hmc("help eject"), hmc("help change"),
    hmc("help block_resize"), hmc("help help"), hmc("help quit"), hmc("? q"),
    hmc("help system_reset"), hmc("help info status"), hmc("help info nosuch"), hmc("help nosuch y"),
    hmc("help info qtree"), hmc('help "info'), hmc("help info block"), hmc("info block -x"),
    hmc("info block -n -n"), hmc("info block -vn"), hmc("info block -v -n"), hmc("info block -vn cd"),
    hmc("info block -n nosuch"),
    hmc("eject"), hmc("eject -"), hmc("eject -x cd"), hmc("eject a b"), hmc("eject x"),
    hmc("change cd"), hmc('change "cd'), hmc("change cd x y z w"), hmc("change cd x raw foo"),
    hmc("block_resize d0"), hmc("block_resize d0 1x"), hmc("block_resize d0 -1"),
    hmc("block_resize d0 99999999999999999999"), hmc("block_resize d0 1.5B"),
    hmc("block_resize d0 0x"), hmc("block_resize d0 16 extra"), hmc("system_reset x"),
    hmc("info status x"), hmc("info nosuch"), hmc("nosuch"), hmc("  nosuch arg"), hmc("info/x"),
    hmc("/x"), hmc(""),
    # Media: events, errors, the queries after.
    '{"execute":"eject","arguments":{"id":"cd0"}}', '{"execute":"query-block"}',
    hmc("info block cd"), '{"execute":"query-blockstats"}',
    '{"execute":"blockdev-change-medium","arguments":{"id":"cd0","filename":"MEDIA/cd2.iso",'
    '"format":"raw"}}',
    '{"execute":"blockdev-change-medium","arguments":{"id":"sd0","filename":"MEDIA/cd2.iso",'
    '"format":"raw","read-only-mode":"read-only"}}',
    '{"execute":"query-block"}', '{"execute":"query-blockstats"}',
    # The running state, once QEMU runs too.
    '{"execute":"cont"}', '{"execute":"query-status"}', hmc("info status"),
]

# Differences docs/monitor.md names: not compared, shown.
QMP_SHOWN = ['{"execute":"query-version"}', hmc("info version"), hmc("info block -v"),
             hmc("info block -n"),
             '{"execute":"human-monitor-command","arguments":{"command-line":"info name",'
             '"cpu-index":0}}', hmc("help x")]


def main(qemu_path, ours_path, qdir, odir):
    qemu, ours = Monitor(qemu_path), Monitor(ours_path)
    failed = 0
    print("# qemu greeting: " + qemu.greeting)
    print("# ours greeting: " + ours.greeting)
    for m in (qemu, ours):
        m.ask('{"execute":"qmp_capabilities"}')
    for n, request in enumerate(QMP_SAME):
        if request == '{"execute":"cont"}':
            qemu.ask(request)       # ours has no stopped state: it runs
            continue
        q_reply, q_events = qemu.ask(request.replace("MEDIA", qdir + "/media"))
        o_reply, o_events = ours.ask(request.replace("MEDIA", odir + "/media"))
        name = "%d %s" % (n, request[:100])
        failed += not compare(name, q_reply, o_reply, qdir, odir)
        for i, (qe, oe) in enumerate(zip(q_events, o_events)):
            failed += not compare(name + " event %d" % i, qe, oe, qdir, odir)
        if len(q_events) != len(o_events):
            print("not ok - %s: %d events, ours %d" % (name, len(q_events), len(o_events)))
            failed += 1
    for request in QMP_SHOWN:
        print("# " + request)
        print("#   qemu: " + qemu.ask(request)[0])
        print("#   ours: " + ours.ask(request)[0])
    return 1 if failed else 0


sys.exit(main(*sys.argv[1:5]))
