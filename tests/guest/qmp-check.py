# SPDX-License-Identifier: GPL-2.0-or-later
"""QMP checks with QEMU's own client library (python3-qemu-qmp), run inside
the guest kit's chroot against an mpqemu-remote's -qmp socket.

    qmp-check.py SOCKET SERIAL_LOG NEW_MEDIUM

Prints one "name: value" line per finding; the calling test compares them.
Waits for the guest to report its CD's sum before changing the medium, and
for the guest to see the change afterwards.
"""
import asyncio
import sys
import time

from qemu.qmp import ExecuteError, QMPClient


def guest_said(log, words, timeout):
    end = time.time() + timeout
    while time.time() < end:
        with open(log, 'rb') as f:
            for line in f.read().decode(errors='replace').splitlines():
                if line.startswith('MPQ ' + words):
                    return line.strip()
        time.sleep(0.2)
    return None


async def main(sock, log, medium):
    qmp = QMPClient('mpqemu-test')
    await qmp.connect(sock)
    print('greeting-version:', qmp.greeting._asdict()['QMP']['version']['package'])
    blocks = await qmp.execute('query-block')
    for b in blocks:
        ins = b.get('inserted')
        print('block:', b['device'], ins['file'].rsplit('/', 1)[-1] if ins else '-',
              ins['drv'] if ins else '-', 'removable' if b['removable'] else 'fixed')
    if not guest_said(log, 'cd waiting', 120):
        print('guest-cd: never waited')
        return
    # The guest's disk tests ran before its CD test: their bytes are counted,
    # with what QEMU's block accounting adds: the time the requests took, the
    # furthest write, the time since the last (QEMU 11's query-blockstats).
    for s in await qmp.execute('query-blockstats'):
        st = s['stats']
        print('stats:', s['device'], st['wr_bytes'], st['rd_bytes'])
        if st['wr_operations']:
            print('accounting:', s['device'], s.get('qdev'),
                  'timed' if st['rd_total_time_ns'] > 0 and st['wr_total_time_ns'] > 0 else '-',
                  'highest-write' if st['wr_highest_offset'] >= 8388608 else '-',
                  'idle' if 'idle_time_ns' in st else '-')
    with qmp.listener(('DEVICE_TRAY_MOVED',)) as listener:
        # The guest locks the tray while it has the CD open: try again, as
        # QEMU's error message asks.
        for attempt in range(40):
            try:
                await qmp.execute('blockdev-change-medium',
                                  {'id': 'cd0', 'filename': medium, 'format': 'raw'})
                break
            except ExecuteError as e:
                if 'locked' not in str(e) or attempt == 39:
                    raise
                await asyncio.sleep(0.1)
        for _ in range(2):
            ev = await asyncio.wait_for(listener.get(), 5)
            print('event:', ev['event'], ev['data']['id'], 'open' if ev['data']['tray-open']
                  else 'closed')
    changed = guest_said(log, 'cd changed', 60)
    print('guest-cd:', ' '.join(changed.split()[3:4]) if changed else 'unchanged')
    await qmp.disconnect()


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
