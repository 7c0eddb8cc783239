#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Writes the hand-made corpus entries of the fuzz harnesses, and the reproducers
of crashes not fixed yet (tests/fuzz/crashers/, next to the corpus).

Each harness reads its input as a list of operations (see the harness's
source); the encoders here produce the same bytes from readable steps, in
the order the harness consumes them.  The entries are starting points for
the fuzzer (a whole SCSI command per disk, tagged commands, every monitor
action) and reproducers of the bug classes the harnesses must keep
exercising (docs/fuzzing.md).

    tests/fuzz/seeds.py [OUTDIR]      (default: tests/fuzz/corpus; crashers: OUTDIR/../crashers)
"""
import os
import struct
import sys

# --- the LSI harness (tests/fuzz/fuzz-lsi.c, lsi-gen.c) ------------------------

(OP_SCRIPT, OP_RECIPE, OP_START, OP_REG_WRITE, OP_REG_READ, OP_CONFIG, OP_GUEST_BYTES,
 OP_COMMAND_BYTES, OP_LOOP, OP_SETTLE, OP_WAIT_IO, OP_RESET, OP_MONITOR, OP_MEMORY,
 OP_RECOVER) = range(15)
RECOVER_ISTAT0 = [0x80, 0x40, 0x20, 0x04, 0xa0, 0x00]

INTERESTING_REGS = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x14, 0x15, 0x16, 0x17, 0x1a, 0x1b, 0x1c, 0x20, 0x21, 0x22, 0x24, 0x27,
    0x28, 0x2c, 0x2f, 0x30, 0x34, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x40, 0x41, 0x42, 0x43,
    0x48, 0x49, 0x4a, 0x4d, 0x4e, 0x4f, 0x50, 0x56, 0x57, 0x58, 0x5c, 0x60, 0xa0, 0xb4,
    0xb8, 0xc0, 0xc4, 0xc8, 0xd4, 0xdc,
]
HOT_REGS = [0x14, 0x01, 0x2f, 0x3b, 0x10, 0x24, 0x28, 0x38]
OPCODES = [
    0x00, 0x03, 0x08, 0x0a, 0x12, 0x15, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x2a, 0x2e, 0x2f,
    0x35, 0x41, 0x42, 0x43, 0x46, 0x4a, 0x55, 0x5a, 0x88, 0x8a, 0x8e, 0x8f, 0x91, 0x93,
    0x9e, 0xa0, 0xa8, 0xaa, 0xae, 0xaf,
]
COUNTS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 18, 36, 255, 256, 512, 1024, 2048, 4096,
          8192, 65536, 0xffffff]
REG_SIZES = [1, 1, 2, 4, 4, 8]
ISTAT0, SCNTL1, DSP, DSA, DIEN = 0x14, 0x01, 0x2c, 0x10, 0x39
SRAM = 0xfebf2000

# Messages (lsi_gen_msgout item kinds).
MSG_IDENTIFY, MSG_TAG, MSG_SDTR, MSG_WDTR, MSG_PPR, MSG_EXT, MSG_ABORT, MSG_NOP = (
    0, 3, 4, 5, 6, 7, 8, 9)


def u8(v):
    return struct.pack("<B", v & 0xff)


def u16(v):
    return struct.pack("<H", v & 0xffff)


def u32(v):
    return struct.pack("<I", v & 0xffffffff)


def u64(v):
    return struct.pack("<Q", v & 0xffffffffffffffff)


def ram(offset):
    """An address selector for guest RAM (under 64 KiB)."""
    assert offset < 0x10000
    return u8(0) + u16(offset)


def reg(offset):
    """A register, by lsi_gen_register: from its tables when it is there."""
    if offset in HOT_REGS:
        return u8(HOT_REGS.index(offset))
    if offset in INTERESTING_REGS:
        # pick % len(table) is the index; 0x40 <= pick < 0x80 (no hot table, no offset byte).
        i = INTERESTING_REGS.index(offset)
        return u8(len(INTERESTING_REGS) + i if len(INTERESTING_REGS) + i >= 0x40 else
                  2 * len(INTERESTING_REGS) + i)
    return u8(0xf0) + u8(offset)


WRITE_TARGETS = [0x14, 0x01, 0x3b, 0x2f, 0x49, 0x38, 0x10, 0x24]


def addr(where):
    """lsi_gen_phase_address: a RAM offset, or a selector already encoded."""
    return ram(where) if isinstance(where, int) else where


def block(offset):
    """A control block's address (block_address in lsi-gen.c): here, not in a slot."""
    return u8(0xe0) + ram(offset)


def phase_reg(offset):
    """lsi_gen_phase_address aimed at a register it favours."""
    return u8(5) + u8(WRITE_TARGETS.index(offset))


def phase_any(selector):
    """lsi_gen_phase_address handing over to lsi_gen_address (an address selector)."""
    return u8(7) + selector


def mmio(offset):
    """An address selector for a register on BAR1."""
    return u8(6) + reg(offset)


def count(n):
    if n in COUNTS:
        return u8(COUNTS.index(n))
    return u8(0xe0) + u32(n)


def code_ram(offset):
    """lsi_gen_code_address: guest RAM, dword-aligned, under 128 KiB."""
    return u16(offset // 4 * 4 << 1)


def msgout(*items):
    """Items: (kind, a, b)."""
    out = u8(len(items) - 1)
    for kind, a, b in items:
        out += u8(kind) + u8(a) + u8(b)
    return out


def identify(lun=0, disconnect=False):
    return (MSG_IDENTIFY, (0x40 if disconnect else 0) | (1 if lun else 0), 0) if not lun else \
        (MSG_IDENTIFY, (0x40 if disconnect else 0) | 1 | lun, 0)


def cdb_bytes(opcode, lba=0, blocks=1, raw=b""):
    """A CDB with the LBA and length where its group keeps them; raw: bytes from byte 1."""
    c = bytearray((bytes([opcode]) + raw + bytes(16))[:16])
    if raw:
        return bytes(c)
    group = opcode >> 5
    if group == 0:
        c[1:4] = (lba & 0x1fffff).to_bytes(3, "big")
        c[4] = blocks & 0xff
    elif group in (1, 2):
        c[2:6] = lba.to_bytes(4, "big")
        c[7:9] = blocks.to_bytes(2, "big")
    elif group == 5:
        c[2:6] = lba.to_bytes(4, "big")
        c[6:10] = blocks.to_bytes(4, "big")
    elif group == 4:
        c[2:10] = lba.to_bytes(8, "big")
        c[10:14] = blocks.to_bytes(4, "big")
    return bytes(c)


def cdb(opcode, lba=0, blocks=1, raw=b""):
    """lsi_gen_cdb: the opcode from its table, the other bytes as given (shape: short CDB)."""
    i = OPCODES.index(opcode)
    pick = 0x60 + (i - 0x60 % len(OPCODES)) % len(OPCODES)     # pick % len(OPCODES) == i
    return u8(pick) + u8(4) + cdb_bytes(opcode, lba, blocks, raw)


class Lsi:
    def __init__(self, unit_attentions_taken=True):
        self.b = u8(1 if unit_attentions_taken else 0)

    def op(self, code, *parts):
        self.b += u8(code) + b"".join(parts)
        return self

    def recipe(self, target, msgs, command, data_len=4096, data_at=0x8000, status_at=0x7f00,
               msgin_len=1, msgin_at=ram(0x7f10), code=0x1000, start=True, twist=0,
               twist_insns=b"", low=False):
        """A whole command (lsi_gen_recipe); low: everything but the data under 4 KiB."""
        msg_at, cdb_at, table_at = (0xe00, 0xe80, 0xd00) if low else (0x7e00, 0x7e80, 0x7d00)
        if low:
            code, status_at, msgin_at = 0x100, 0xf00, ram(0xf10)
        return self.op(OP_RECIPE, u8(1 if start else 0), code_ram(code), u8(twist),
                       twist_insns, msgs, command, block(msg_at), block(cdb_at),
                       u8(target), count(data_len), addr(data_at), addr(status_at),
                       u8(0 if msgin_len == 1 else 0xc0 + msgin_len - 1), msgin_at,
                       block(table_at))

    def ready(self, *targets):
        """TEST UNIT READY: takes the unit attention every disk reports after power-on."""
        for target in targets:
            self.recipe(target, msgout(identify()), cdb(TUR), data_len=0).settle()
        return self

    def script(self, insns, code=0x2000, start=True):
        """Raw instructions: (w0, w1) pairs, kind 7 each."""
        body = b"".join(u8(7) + u32(w0) + u32(w1) for w0, w1 in insns)
        return self.op(OP_SCRIPT, u8(1 if start else 0), code_ram(code), u8(len(insns) - 1),
                       body)

    def start(self, label=None, move=None):
        """At the last program, one of its instructions, or one of its block moves."""
        if label is not None:
            return self.op(OP_START, u8(1), u8(label << 1))
        if move is not None:
            return self.op(OP_START, u8(1), u8(move << 1 | 1))
        return self.op(OP_START, u8(0))

    def recover(self, istat0, read_status=True, restart_move=None, again=False):
        """
        A driver's error handling: ISTAT0, status reads, then a restart at a block
        move of the program, or at the instruction SCRIPTS stopped in (again).
        """
        restart = restart_move is not None or again
        how = (1 if read_status else 0) | (2 if restart else 0)
        self.op(OP_RECOVER, u8(how), u8(RECOVER_ISTAT0.index(istat0)))
        if again:
            self.b += u8(1)
        elif restart_move is not None:
            self.b += u8(2) + u8(restart_move << 1 | 1)
        return self

    def reg_write(self, offset, value, size=1):
        return self.op(OP_REG_WRITE, u8(1), reg(offset), u8(REG_SIZES.index(size)), u64(value))

    def reg_read(self, offset, size=1):
        return self.op(OP_REG_READ, u8(1), reg(offset), u8(REG_SIZES.index(size)))

    def guest(self, offset, data):
        assert 0 < len(data) <= 256
        return self.op(OP_GUEST_BYTES, ram(offset), u8(len(data) - 1), data)

    def loop(self, rounds=1):
        return self.op(OP_LOOP, u8(rounds - 1))

    def settle(self):
        return self.op(OP_SETTLE)

    def wait_io(self):
        return self.op(OP_WAIT_IO)

    def reset(self, firmware=True):
        return self.op(OP_RESET, u8(1 if firmware else 0))

    def eject(self, disk, force=False):
        """disk: index in FUZZ_DISKS (sd0 sd1 sd2 cd0 cd1), by qdev id."""
        return self.op(OP_MONITOR, u8(0), u8(disk << 1 | 1), u8(1 if force else 0))

    def change_medium(self, disk, medium, how=0x40):
        """medium: index in FUZZ_MEDIA; how: bit 0 format, 2 read-only-mode, 0x40 force."""
        return self.op(OP_MONITOR, u8(1), u8(how), u8(disk << 1 | 1), u8(medium))

    def resize(self, drive, size_index):
        return self.op(OP_MONITOR, u8(2), u8(drive), u8(size_index))

    def system_reset(self):
        return self.op(OP_MONITOR, u8(3))

    def query(self):
        return self.op(OP_MONITOR, u8(4)).op(OP_MONITOR, u8(5))

    def remap(self, layout, split_pages=32):
        return self.op(OP_MEMORY, u8(0), u8(layout), u8(split_pages - 1))

    def truncate(self, size_index):
        return self.op(OP_MEMORY, u8(1), u8(size_index))

    def grow(self):
        return self.op(OP_MEMORY, u8(2))

    def refuse_remote(self):
        return self.op(OP_MEMORY, u8(3))


READ10, WRITE10, READ16, INQUIRY, REQUEST_SENSE = 0x28, 0x2a, 0x88, 0x12, 0x03
SYNC_CACHE, WRITE_SAME10, UNMAP, VERIFY10, MODE_SENSE6 = 0x35, 0x41, 0x42, 0x2f, 0x1a
READ_TOC, GET_EVENT_STATUS, READ_CAPACITY10, START_STOP, PREVENT = 0x43, 0x4a, 0x25, 0x1b, 0x1e
TUR = 0x00


def lsi_entries():
    e = {}
    plain = msgout(identify())
    # One command per disk, as a driver runs it.
    for target, name in enumerate(["raw", "qcow2", "direct", "cd"]):
        blocks = 2 if target != 3 else 1
        length = blocks * (4096 if target == 2 else 2048 if target == 3 else 512)
        e[f"seed-read-{name}"] = Lsi().recipe(target, plain, cdb(READ10, 1, blocks),
                                              data_len=length).settle().b
        e[f"seed-write-read-{name}"] = (
            Lsi().guest(0x8000, bytes(range(1, 200)))
            .recipe(target, plain, cdb(WRITE10, 3, blocks), data_len=length).settle()
            .recipe(target, plain, cdb(READ10, 3, blocks), data_len=length).settle().b)
    # The qcow2 disk's every kind of cluster: data, unallocated (backing), zero, compressed.
    e["seed-read-qcow2-all-clusters"] = Lsi().recipe(
        1, plain, cdb(READ10, 0, 16), data_len=8192).settle().b
    e["seed-emulated"] = b"".join(
        Lsi().recipe(t, plain, cdb(op, 0, 1, raw=raw), data_len=255).settle().b
        for t, op, raw in [(0, INQUIRY, b"\x00\x00\x00\xff"), (1, REQUEST_SENSE, b"\x00\x00\x00\x12"),
                           (0, MODE_SENSE6, b"\x00\x3f\x00\xff"), (2, READ_CAPACITY10, b""),
                           (3, READ_TOC, b"\x00\x00\x00\x00\x00\x00\xff"),
                           (3, GET_EVENT_STATUS, b"\x01\x00\x00\x10\x00\x00\xff"),
                           (0, SYNC_CACHE, b""), (3, TUR, b""), (3, START_STOP, b"\x00\x00\x02"),
                           (3, PREVENT, b"\x00\x00\x01")])
    e["seed-unmap-write-same"] = (
        Lsi().op(OP_COMMAND_BYTES, u8(2), ram(0x8000), u8(0), u8(1), u8(2), u8(4))
        .recipe(1, plain, cdb(UNMAP, 0, 24), data_len=24).settle()
        .guest(0x8000, b"\x5a" * 16)
        .recipe(0, plain, cdb(WRITE_SAME10, 2, 4), data_len=512).settle()
        .recipe(2, plain, cdb(WRITE_SAME10, 0, 2), data_len=4096).settle().b)
    # Tagged commands: disconnect after the command, reselection for the data.
    tagged = msgout(identify(disconnect=True), (MSG_TAG, 0, 0x11))
    # The power-on unit attention, taken by TEST UNIT READY first.
    e["seed-unit-attention"] = (Lsi(unit_attentions_taken=False).ready(0, 1, 2, 3)
                                .recipe(0, plain, cdb(READ10, 0, 1), data_len=512).settle().b)
    e["seed-tagged"] = Lsi().recipe(1, tagged, cdb(READ10, 0, 8), data_len=4096).settle().b
    # Negotiations answered in MESSAGE IN.
    e["seed-negotiate"] = Lsi().recipe(
        0, msgout((MSG_SDTR, 0x0c, 0x10), (MSG_WDTR, 1, 0), identify()), cdb(TUR),
        msgin_len=8).settle().b
    # Monitor actions around I/O.
    e["seed-monitor"] = (
        Lsi().recipe(3, plain, cdb(READ10, 0, 1), data_len=2048).settle()
        .eject(3).change_medium(3, 0, how=0x40 | 4 | 8).resize(0, 7).resize(1, 6)
        .recipe(0, plain, cdb(READ10, 0, 1), data_len=512).settle().query().system_reset().b)
    # Guest memory that moves: split across regions, reached through the VMM, cut short.
    e["seed-memory"] = (
        Lsi().remap(1, split_pages=8).recipe(0, plain, cdb(READ10, 0, 64), data_len=32768,
                                             data_at=0x7000).settle()
        .remap(2).recipe(0, plain, cdb(READ10, 0, 8), data_len=4096, data_at=0xf800).settle()
        .refuse_remote().recipe(0, plain, cdb(READ10, 0, 8), data_len=4096, data_at=0xf800)
        .settle().b)
    # SCRIPTS RAM: a program there, and a memory move from guest RAM into it.
    e["seed-sram"] = Lsi().op(OP_SCRIPT, u8(1), u16(1), u8(1),
                              u8(6) + u8(1) + u8(5) + ram(0) + u8(7) + u16(0x100),
                              u8(4) + u8(3) + u8(0) + u8(1)).settle().b
    # A loop of 64 KiB memory moves: the activation ends on its copy budget, not on
    # its instruction count (the generator's moves are 4 KiB at most).
    e["seed-memory-move-budget"] = Lsi().script(
        [(0xc0010000, 0x10000), (0x30000, 0x80080000), (0x2000, 0)]).settle().settle().b
    e.update(lsi_tagged_entries())
    e.update(lsi_bug_entries())
    e.update(lsi_progress_entries())
    e.update(lsi_parts_entries())
    return e


LAYOUT_PAGES = 6


def lsi_parts_entries():
    """
    Data moves over guest memory mapped a page a region (LAYOUT_PAGES): a READ
    over 20 pages and a WRITE over 40 move in parts of 16, a READ running from
    the pages into the tail only the VMM reaches moves its last part bounced;
    tagged, the same through the command's buffer.  Then registers the move
    goes on from, written while its I/O is in flight: DBC 0 or 16 MiB - 1,
    DNAD elsewhere, DNAD64 and CCNTL1 under a move in parts.
    """
    e = {}
    plain = msgout(identify())
    tagged = msgout(identify(disconnect=True), (MSG_TAG, 0, 0x11))
    e["seed-parts-read-20-regions"] = (
        Lsi().remap(LAYOUT_PAGES).recipe(0, plain, cdb(READ10, 0, 160), data_len=20 * 4096,
                                         data_at=0x8000).settle().reg_read(0x0c).b)
    e["seed-parts-write-40-regions"] = (
        Lsi().remap(LAYOUT_PAGES).guest(0x1000, bytes(range(7, 207)))
        .recipe(2, plain, cdb(WRITE10, 0, 40), data_len=40 * 4096, data_at=0x1000).settle()
        .recipe(2, plain, cdb(READ10, 0, 40), data_len=40 * 4096, data_at=0x1000).settle().b)
    e["seed-parts-read-into-remote-tail"] = (
        Lsi().remap(LAYOUT_PAGES).recipe(2, plain, cdb(READ10, 0, 38), data_len=38 * 4096,
                                         data_at=0xe000).settle().b)
    e["seed-parts-tagged-read-40-regions"] = (
        Lsi().remap(LAYOUT_PAGES).recipe(0, tagged, cdb(READ10, 0, 320), data_len=40 * 4096,
                                         data_at=0x1000).settle().settle().b)
    for name, reg_, value in [("dbc-zeroed", 0x24, 0), ("dbc-raised", 0x24, 0xffffff),
                              ("dnad-moved", 0x28, 0x4000)]:
        e[f"seed-parts-{name}-during-a-move"] = (
            Lsi().recipe(2, plain, cdb(READ10, 0, 8), data_len=32768, data_at=0x8000)
            .reg_write(reg_, value, 4).reg_read(0x24, 4).settle().reg_read(0x28, 4).b)
    e["seed-parts-dnad-moved-between-parts"] = (
        Lsi().remap(LAYOUT_PAGES).recipe(2, plain, cdb(READ10, 0, 20), data_len=20 * 4096,
                                         data_at=0x8000)
        .reg_write(0x28, 0x1000, 4).reg_write(0xb8, 1, 4).reg_write(0x57, 0x01)
        .loop().reg_write(0x24, 0, 4).settle().reg_read(0x24, 4).reg_read(0x28, 4).b)
    return e


def dword_pairs(words):
    """Lsi.script's (w0, w1) pairs from a stream of dwords (a memory move has three)."""
    words = list(words) + [0] * (len(words) % 2)
    return list(zip(words[0::2], words[1::2]))


def lsi_data_across_4g_entries(code, select_atn):
    """
    READ and WRITE moves of 4 KiB from 4 GiB - 2 KiB under the top alias: a 32-bit
    DNAD goes on at 0, zero-copy or through a tagged command's buffer; with CCNTL1
    EN64DBMV (a third dword per direct block move) the move runs on into the page at
    4 GiB, which only the VMM reaches (a bounce buffer, or the buffer's copy in two
    pieces), DNAD carrying into DNAD64; or the VMM refuses, and the move faults
    after its data came.
    """
    e = {}
    msgs, cdbs, status, across = 0x9000, 0x9010, 0x9100, 0xfffff800
    end = [0x0b000001, status, 0x0f000001, status + 1, 0x48000000, 0, 0x98080000, 0x65]
    for name, op, move in [("in", READ10, 0x09001000), ("out", WRITE10, 0x08001000)]:
        cmd = cdb_bytes(op, 0, 8)[:10]
        e[f"seed-progress-data-{name}-across-4g"] = (
            Lsi().remap(5).guest(msgs, b"\x80").guest(cdbs, cmd)
            .script(dword_pairs(select_atn + [0x0e000001, msgs, 0x0a00000a, cdbs, move, across]
                                + end), code=code)
            .settle().reg_read(0x0c).reg_read(0x28, 4).b)
        # Tagged: the data through the command's buffer, before the disconnect (a
        # WRITE's) or after the reselection (a READ's); 12: SIGP instead.
        data = [move, across]
        e[f"seed-tagged-data-{name}-across-4g"] = (
            Lsi().remap(5).guest(msgs, b"\xc0\x20\x01").guest(cdbs, cmd)
            .script(dword_pairs(select_atn + [0x0e000003, msgs, 0x0a00000a, cdbs]
                                + (data if op == WRITE10 else [])
                                + [0x0f000002, status + 8, 0x48000000, 0,
                                   0x50000000, code + 12 * 8, 0x0f000003, status + 16]
                                + (data if op == READ10 else []) + end
                                + [0x98080000, 0x66]), code=code)
            .settle().settle().reg_read(0x0c).reg_read(0x28, 4).b)
    def past_4g(lsi):
        return (lsi.guest(msgs, b"\x80").guest(cdbs, cdb_bytes(READ10, 0, 8)[:10])
                .reg_write(0x57, 0x01)
                .script(dword_pairs(select_atn + [0x0e000001, msgs, 0, 0x0a00000a, cdbs, 0,
                                                  0x09001000, across, 0, 0x0b000001, status, 0,
                                                  0x0f000001, status + 1, 0, 0x48000000, 0,
                                                  0x98080000, 0x65]), code=code)
                .settle().reg_read(0x0c).reg_read(0xb8, 4).b)
    e["seed-progress-data-in-64-bit-past-4g"] = past_4g(Lsi().remap(5))
    e["seed-progress-data-in-64-bit-past-4g-refused"] = past_4g(Lsi().remap(5).refuse_remote())
    # Tagged: reselected, the READ's buffer copied across 4 GiB; 12: SIGP instead.
    e["seed-tagged-data-in-64-bit-past-4g"] = (
        Lsi().remap(5).guest(msgs, b"\xc0\x20\x01").guest(cdbs, cdb_bytes(READ10, 0, 8)[:10])
        .reg_write(0x57, 0x01)
        .script(dword_pairs(select_atn + [0x0e000003, msgs, 0, 0x0a00000a, cdbs, 0,
                                          0x0f000002, status + 8, 0, 0x48000000, 0,
                                          0x50000000, code + 124, 0x0f000003, status + 16, 0,
                                          0x09001000, across, 0, 0x0b000001, status, 0,
                                          0x0f000001, status + 1, 0, 0x48000000, 0,
                                          0x98080000, 0x65, 0x98080000, 0x66]), code=code)
        .settle().settle().reg_read(0x0c).reg_read(0x28, 4).reg_read(0xb8, 4).b)
    return e


def lsi_progress_entries():
    """
    SCRIPTS that never touch the bus, under the harness's x-insn-without-progress
    (32768, fuzz-vm.c): copies and MESSAGE OUT bytes count toward the unexpected
    disconnect (SIST0 UDC), and SCRIPTS restarting themselves go on counting.
    """
    e = {}
    code = 0x2000
    mmio = 0xfebf0000
    select_atn = [0x41000000, 0]
    # A loop of 96 KiB memory moves: 26 instructions a round, UDC after 1,261 rounds.
    e["seed-progress-memory-move-loop"] = (
        Lsi().script(dword_pairs([0xc0018000, 0x8000, 0x28000, 0x80080000, code]), code=code)
        .settle().settle().settle().settle().settle().reg_read(0x42).reg_read(0x0c).b)
    # SIMPLE QUEUE TAG messages, doubled by memory moves into 16 KiB, then a loop of
    # MESSAGE OUT moves of them: the target stays in MESSAGE OUT, 258 a round.
    double = []
    for k in range(1, 14):
        double += [0xc0000000 | 1 << k, 0x8000, 0x8000 + (1 << k)]
    loop_at = code + 4 * (len(double) + len(select_atn))
    e["seed-progress-msgout-loop"] = (
        Lsi().guest(0x8000, b"\x20\x00")
        .script(dword_pairs(double + select_atn + [0x0e004000, 0x8000, 0x80080000, loop_at]),
                code=code)
        .settle().settle().reg_read(0x42).reg_read(0x0c).b)
    # MESSAGE OUT bytes read ahead across the end of guest memory (cut to 64 KiB),
    # or across two regions: the messages before it are taken, the fault is at the end.
    for name, cut in [("truncated", lambda l: l.truncate(4)),
                      ("split", lambda l: l.remap(1, split_pages=16))]:
        e[f"seed-progress-msgout-across-{name}"] = (
            cut(Lsi().guest(0xfffd, b"\x80\x20\x05"))
            .script(dword_pairs(select_atn + [0x0e000008, 0xfffd, 0x98080000, 0x61]), code=code)
            .settle().reg_read(0x0c).reg_read(0x28, 4).reg_read(0x24, 4).b)
    # ... or across the end of SCRIPTS RAM moved over guest RAM (BAR2 at 64 KiB): IDENTIFY
    # and a tag from SCRIPTS RAM, not the ABORTs it hides, then NO OPERATIONs from guest RAM.
    sram_over_ram = 0x10000
    e["seed-progress-msgout-across-sram-end"] = (
        Lsi().op(OP_GUEST_BYTES, u8(7) + u16(0x1ff8), u8(7), b"\x08" * 5 + b"\x80\x20\x05")
        .op(OP_GUEST_BYTES, u8(5) + u32(sram_over_ram + 0x1ffd), u8(7), b"\x06" * 3 + b"\x08" * 5)
        .op(OP_CONFIG, u8(1), u8(0x18), u8(2), u32(sram_over_ram))
        .script(dword_pairs(select_atn + [0x0e000008, sram_over_ram + 0x1ffd, 0x98080000, 0x61]),
                code=code)
        .settle().reg_read(0x0c).reg_read(0x28, 4).reg_read(0x24, 4).reg_read(0x0e).b)
    # ... or across 4 GiB (RAM's last page seen again below it, the layout "top alias"):
    # DNAD counts on from 0, where guest RAM holds the NO OPERATIONs.
    e["seed-progress-msgout-across-4g"] = (
        Lsi().remap(5).op(OP_GUEST_BYTES, u8(5) + u32(0x3fffd), u8(2), b"\x80\x20\x05")
        .guest(0, b"\x08" * 5)
        .script(dword_pairs(select_atn + [0x0e000008, 0xfffffffd, 0x98080000, 0x61]), code=code)
        .settle().reg_read(0x0c).reg_read(0x28, 4).reg_read(0x24, 4).reg_read(0x0e).b)
    # Memory moves from and to 4 GiB - 16 and a LOAD from 4 GiB - 2, under the top
    # alias: the chip's 32-bit bus master goes on at 0, where guest RAM holds the rest.
    e["seed-progress-memory-move-across-4g"] = (
        Lsi().remap(5).op(OP_GUEST_BYTES, u8(5) + u32(0x3fff0), u8(15), bytes(range(0xa0, 0xb0)))
        .guest(0, bytes(range(0xb0, 0xc0)))
        .script(dword_pairs([0xc0000020, 0xfffffff0, 0x9000, 0xc0000020, 0x9000, 0xfffffff0,
                             0xe1340004, 0xfffffffe, 0x98080000, 0x62]), code=code)
        .settle().reg_read(0x0c).reg_read(0x34, 4).b)
    # ... and a table entry at DSA 4 GiB - 4: its count below 4 GiB, its address at 0.
    e["seed-progress-table-across-4g"] = (
        Lsi().remap(5).op(OP_GUEST_BYTES, u8(5) + u32(0x3fffc), u8(3), u32(1))
        .guest(0, u32(0x9000)).guest(0x9000, b"\x80").reg_write(DSA, 0xfffffffc, 4)
        .script(dword_pairs(select_atn + [0x1e000000, 0, 0x98080000, 0x63]), code=code)
        .settle().reg_read(0x0c).reg_read(0x28, 4).reg_read(0x0e).b)
    # ... and a STORE of SCRATCHA to 4 GiB - 2: two bytes below 4 GiB, two at 0.
    e["seed-progress-store-across-4g"] = (
        Lsi().remap(5).reg_write(0x34, 0x44332211, 4)
        .script(dword_pairs([0xe0340004, 0xfffffffe, 0x98080000, 0x64]), code=code)
        .settle().reg_read(0x0c).b)
    e.update(lsi_data_across_4g_entries(code, select_atn))
    # SELECT, then WAIT DISCONNECT or an ABORT the target disconnects on, over and
    # over: a selection is no progress, so the loop ends in the unexpected disconnect.
    e["seed-progress-select-loop"] = (
        Lsi().script(dword_pairs(select_atn + [0x48000000, 0, 0x80080000, code]), code=code)
        .settle().settle().reg_read(0x42).reg_read(0x15).b)
    e["seed-progress-select-abort-loop"] = (
        Lsi().guest(0x8000, b"\x06")
        .script(dword_pairs(select_atn + [0x0e000001, 0x8000, 0x80080000, code]), code=code)
        .settle().settle().reg_read(0x42).reg_read(0x15).b)
    # A memory move into ISTAT0 .. DSP: ABRT, then DSP at itself -- SCRIPTS that
    # restart themselves, until the unexpected disconnect.
    regs = bytearray(28)
    regs[0] = 0x80
    regs[DSP - ISTAT0:DSP - ISTAT0 + 4] = u32(code)
    e["seed-progress-self-restart"] = (
        Lsi().guest(0x9000, bytes(regs))
        .script(dword_pairs([0xc000001c, 0x9000, mmio + ISTAT0]), code=code)
        .settle().settle().reg_read(0x0c).reg_read(0x42).reg_read(0x0c).reg_read(0x42).b)
    return e


def lsi_bug_entries():
    e = {}
    plain = msgout(identify())
    # Bug 1: MESSAGE IN into the chip's own registers.  The target answers an
    # SDTR with 01 03 01 period offset; a period of 0x48 lands in ISTAT0 (SRST)
    # one byte at a time, and an offset of 0x08 in SCNTL1 (RST).
    e["bug1-msgin-istat0-srst"] = Lsi().recipe(
        0, msgout((MSG_SDTR, 0x48, 0x05)), cdb(TUR), msgin_len=1, msgin_at=phase_reg(ISTAT0)).settle().b
    # A PPR answer's offset byte (0x18: CON and RST) lands in SCNTL1 from 0xfc: the
    # register window repeats every 256 bytes, so the move's sixth byte is 0x101.
    e["bug1-msgin-scntl1-rst"] = Lsi().recipe(
        0, msgout((MSG_PPR, 0x10, 0x18)), cdb(TUR), msgin_len=8,
        msgin_at=phase_any(u8(6) + u8(0xf0) + u8(0xfc))).settle().b
    # ... and STATUS into SCNTL1: GOOD (0) clears CON under the status move.
    e["bug1-status-scntl1"] = Lsi().recipe(
        0, plain, cdb(TUR), status_at=phase_reg(SCNTL1), msgin_len=1).settle().b
    # Bug 2: ABRT while a data move is in flight, then SCRIPTS restarted at the
    # data move: the same disk request is submitted again.
    for name, target in [("raw", 0), ("direct", 2)]:
        e[f"bug2-abort-restart-{name}"] = (
            Lsi().recipe(target, plain, cdb(READ10, 0, 8), data_len=4096 if target == 0 else 32768)
            .recover(0x80, restart_move=2).settle().b)
        e[f"bug2-abort-retry-{name}"] = (
            Lsi().recipe(target, plain, cdb(WRITE10, 0, 8), data_len=4096 if target == 0 else 32768)
            .recover(0x80, read_status=False, again=True).settle().b)
    # Bug 3: eject while a READ waits between its command and data phases.
    stop_after_command = [
        (0x43000000, 0),                    # SELECT (table: T_SELECT)
        (0x1e000000, 8),                    # MOVE T_MSGOUT, WHEN MSG OUT
        (0x1a000000, 16),                   # MOVE T_CMD, WHEN COMMAND
        (0x98080000, 0x33),                 # INT: the host ejects now
        (0x19000000, 24),                   # MOVE T_DATA, WHEN DATA IN
        (0x98080000, 0x34),
    ]
    table = (u32(0) + u32(0) + u32(1) + u32(0x7e00) + u32(10) + u32(0x7e80) +
             u32(512) + u32(0x8000))
    read = bytes([READ10, 0, 0, 0, 0, 1, 0, 0, 1, 0])
    e["bug3-eject-between-command-and-data"] = (
        Lsi().guest(0x7d00, table).guest(0x7e00, b"\x80").guest(0x7e80, read)
        .reg_write(DSA, 0x7d00, 4).script(stop_after_command).settle()
        .eject(0).start(label=4).settle().b)
    # ... or between two pieces of its data phase (pieces of 64 KiB go straight to the disk).
    big_read = bytes([READ10, 0, 0, 0, 0, 0, 0, 2, 0, 0])
    e["bug3-eject-between-pieces"] = (
        Lsi().guest(0x7d00, table[:24] + u32(65536) + u32(0x10000))
        .guest(0x7e00, b"\x80").guest(0x7e80, big_read).reg_write(DSA, 0x7d00, 4)
        .script(stop_after_command).settle()
        .start(label=4).settle().eject(0).start(label=4).settle().b)
    # The host ejects (forced) or changes the removable disk's medium while a
    # WRITE's I/O is in flight: the command waits for it, then the medium goes.
    e["seed-eject-while-a-write-is-in-flight"] = (
        Lsi().ready(0).recipe(0, plain, cdb(WRITE10, 3, 8), data_len=4096)
        .eject(0, force=True).settle().query()
        .recipe(0, plain, cdb(READ10, 3, 8), data_len=4096).settle().b)
    e["seed-change-medium-while-a-read-is-in-flight"] = (
        Lsi().ready(0).recipe(0, plain, cdb(READ10, 0, 64), data_len=32768)
        .change_medium(0, 0).loop().change_medium(0, 0).settle().ready(0)
        .recipe(0, plain, cdb(READ10, 0, 8), data_len=4096).settle().b)
    # Bug 4: guest memory truncated under copies into it -- qcow2's zero,
    # unallocated (backing, backing tail), compressed fills, and cache=none's
    # misaligned bounce copies.
    for name, lba, blocks in [("zero", 16, 8), ("compressed", 24, 8), ("backing-read", 8, 8),
                              ("backing-tail", 248, 16), ("all", 0, 72)]:
        e[f"bug4-qcow2-{name}-truncated"] = (
            Lsi().recipe(1, plain, cdb(READ10, lba, blocks), data_len=blocks * 512, low=True,
                         start=False)
            .truncate(3).start().settle().b)
    # An unallocated cluster of an image without a backing file reads as zeros.
    e["bug4-qcow2-unallocated-truncated"] = (
        Lsi().change_medium(0, 1, how=0x40 | 0x10 | 4 | 2 | 1).ready(0)
        .recipe(0, plain, cdb(READ10, 0, 8), data_len=4096, low=True, start=False)
        .truncate(3).start().settle().b)
    for name, op in [("read", READ10), ("write", WRITE10)]:
        e[f"bug4-direct-bounce-{name}-truncated"] = (
            Lsi().recipe(2, plain, cdb(op, 0, 2), data_len=8192, data_at=0x8001, low=True,
                         start=False)
            .truncate(3).start().settle().b)
    # Found by the fuzzer: a qcow2 read staged for a small first piece; the stage's
    # read completed in a bottom half after a remap that drained only io_uring, and
    # its copy into the piece's iovecs hit the old mapping (now aio_drain runs it).
    for name, layout in [("none", 4), ("shifted", 3)]:
        e[f"found-staged-read-after-remap-{name}"] = (
            Lsi().recipe(1, plain, cdb(READ10, 0, 16), data_len=4096).remap(layout)
            .loop(2).settle().b)
    return e


def lsi_tagged_entries():
    """
    Disconnected tagged commands (src/hw/lsi53c895a.c): a READ prefetched into
    the request's buffer and reselected once its data is there, a WRITE's data
    taken into the buffer before the disk writes it, an overlapped tag, and
    what may happen to a command while it is disconnected.
    """
    e = {}
    plain = msgout(identify())

    def tag(t=0x11):
        return msgout(identify(disconnect=True), (MSG_TAG, 0, t))

    # READ(10) of 4 KiB: prefetched while disconnected, then reselected for the data.
    for target, name, blocks in [(0, "raw", 8), (2, "direct", 1)]:
        e[f"seed-tagged-read-{name}"] = Lsi().recipe(
            target, tag(), cdb(READ10, 2, blocks), data_len=4096).settle().b
    # WRITE(10) of 4 KiB: data-out into the buffer, disconnect while the disk
    # writes, reselection for the status; read back untagged.
    for target, name, blocks in [(0, "raw", 8), (1, "qcow2", 8), (2, "direct", 1)]:
        e[f"seed-tagged-write-{name}"] = (
            Lsi().guest(0x8000, bytes(range(7, 250)))
            .recipe(target, tag(), cdb(WRITE10, 4, blocks), data_len=4096).settle()
            .recipe(target, plain, cdb(READ10, 4, blocks), data_len=4096, data_at=0x9000)
            .settle().b)
    # The same tag twice: the first READ still disconnected (its prefetch in
    # flight), the driver signals WAIT RESELECT away and selects again with the
    # tag: TAGGED OVERLAPPED COMMANDS.  The first goes on: DSTAT and CTEST2
    # (SIGP) read, WAIT RESELECT again (instruction 25 of the recipe) reselects it.
    e["seed-tagged-overlapped"] = (
        Lsi().recipe(1, tag(0x22), cdb(READ10, 0, 8), data_len=4096).recover(0x20)
        .recipe(1, tag(0x22), cdb(READ10, 8, 8), data_len=4096, data_at=0x9000, low=True)
        .settle().reg_read(0x0c).reg_read(0x1a).start(label=25).settle().b)
    def buffered_write():
        """A tagged WRITE left with its data in the buffer, the disk writing it."""
        return Lsi().guest(0x8000, b"\xa5" * 64).recipe(0, tag(0x33), cdb(WRITE10, 8, 8),
                                                       data_len=4096)

    # Right after the data came: ABORT TAG for it (a selection with the tag), a
    # SCSI bus reset (SCNTL1 RST), a soft reset (ISTAT0 SRST).
    abort_tag = msgout(identify(disconnect=True), (MSG_TAG, 0, 0x33), (MSG_ABORT, 2, 0))
    e["seed-tagged-write-abort-tag"] = (
        buffered_write().recover(0x20).recipe(0, abort_tag, cdb(TUR), data_len=0, low=True).settle().b)
    e["seed-tagged-write-bus-reset"] = (
        buffered_write().reg_write(SCNTL1, 0x08).reg_write(SCNTL1, 0x00).settle()
        .recipe(0, plain, cdb(READ10, 8, 8), data_len=4096).settle().b)
    e["seed-tagged-write-soft-reset"] = (
        buffered_write().recover(0x40).reset().settle()
        .recipe(0, plain, cdb(READ10, 8, 8), data_len=4096).settle().b)
    # A data-out move longer than the WRITE: its last byte taken, the rest is a
    # phase mismatch (the target goes to MESSAGE IN and disconnects).
    e["seed-tagged-write-longer-move"] = (
        Lsi().recipe(0, tag(), cdb(WRITE10, 8, 8), data_len=8192).settle().b)
    # Over 256 KiB: no buffer, the data phase moves guest memory once reselected
    # (64 KiB a move, the same move again until the phase changes).
    e["seed-tagged-direct-path"] = Lsi().recipe(
        1, tag(), cdb(READ10, 0, 640), data_len=65536).settle().settle().b
    # Guest memory remapped, or cut short, between disconnect and reselection.
    # The prefetch done while the driver does other things (SIGP: INT 2), the
    # memory split under the data, then WAIT RESELECT: the copy crosses regions
    # (control blocks low, under 4 KiB, out of the data's way).
    e["seed-tagged-read-remapped"] = (
        Lsi().recipe(1, tag(), cdb(READ10, 0, 8), data_len=4096, data_at=0x7800, low=True)
        .recover(0x20).wait_io().remap(1, split_pages=8).reg_read(0x0c).reg_read(0x1a)
        .start(label=25).settle().b)
    # A remap while the prefetch is in flight: its drain completes it, reselecting.
    e["seed-tagged-read-remap-in-flight"] = (
        Lsi().recipe(1, tag(), cdb(READ10, 0, 8), data_len=4096).remap(3).settle().b)
    # Memory cut to 4 KiB under the prefetch (the data's copy faults), grown back.
    e["seed-tagged-read-truncated"] = (
        Lsi().recipe(1, tag(), cdb(READ10, 0, 8), data_len=4096, low=True).truncate(2).settle()
        .grow().recipe(1, tag(), cdb(READ10, 0, 8), data_len=4096).settle().b)
    # A WRITE's status after the memory was cut to 64 KiB and unmapped.
    e["seed-tagged-write-truncated"] = (
        Lsi().guest(0x8000, b"\x5a" * 64).recipe(0, tag(), cdb(WRITE10, 0, 8), data_len=4096)
        .truncate(3).remap(4).settle().b)
    return e


def lsi_open_crashers():
    """
    Crashes the fuzzer found beyond the four known ones, not fixed yet: they go to
    tests/fuzz/crashers/, which the tests do not replay.  Once fixed, an entry
    moves to lsi_entries() and the corpus, in the commit with the fix.
    """
    return {}


# --- the qcow2 harness (tests/fuzz/fuzz-qcow2.c) ---------------------------------------

(Q_READ, Q_WRITE, Q_ZERO, Q_DISCARD, Q_FLUSH, Q_RESIZE, Q_REOPEN, Q_LOOP, Q_SETTLE, Q_TRUNCATE,
 Q_GROW) = range(11)
UNALLOC, ZERO, ZERO_ALLOC, DATA, COMPRESSED = range(5)
CACHES = ["writeback", "writethrough", "none", "directsync"]


def geometry(version=3, cluster_bits=12, refcount_order=4, sectors=2048, kinds=b""):
    shape = 1 if version == 3 else 0
    out = u8(shape) + u8(cluster_bits - 9)
    if version == 3:
        out += u8(refcount_order)
    return out + u16(sectors - 1) + u8(len(kinds)) + bytes(kinds)


class Qcow2:
    def __init__(self, geo, backing=b"\x00", cache="writeback", patches=()):
        self.b = u8(CACHES.index(cache) << 3) + geo + backing + u8(len(patches))
        for at, data in patches:
            self.b += u32(at) + u8(len(data) - 1) + data

    def io(self, op, sector, sectors=1, fill=None, split=0):
        self.b += u8(op) + u8(0) + u16(sector) + u8(sectors - 1)
        if op in (Q_READ, Q_WRITE):
            self.b += u8(split)
        if op == Q_WRITE:
            self.b += u8(fill)
        return self

    def op(self, code, *parts):
        self.b += u8(code) + b"".join(parts)
        return self


def qcow2_entries():
    e = {}
    mixed = bytes([DATA, UNALLOC, ZERO, COMPRESSED, DATA, ZERO_ALLOC, COMPRESSED, UNALLOC] * 4)
    raw_backing = u8(1) + u8(1)
    qcow2_backing = u8(2) + geometry(3, 10, 4, 1024, bytes([DATA, COMPRESSED, ZERO] * 8)) + u8(1)
    for name, geo, backing in [
            ("v3-raw-backing", geometry(3, 12, 4, 2048, mixed), raw_backing),
            ("v2-no-backing", geometry(2, 9, 4, 1024, bytes([DATA, UNALLOC, COMPRESSED] * 20)),
             b"\x00"),
            ("v3-qcow2-backing", geometry(3, 16, 6, 4096, mixed[:8]), qcow2_backing),
            ("v3-refcount1", geometry(3, 9, 0, 512, mixed), raw_backing)]:
        for cache in CACHES:
            q = Qcow2(geo, backing, cache)
            q.io(Q_WRITE, 3, 20, fill=0x11).op(Q_SETTLE).io(Q_READ, 0, 40).op(Q_SETTLE)
            q.io(Q_ZERO, 8, 16).op(Q_SETTLE).io(Q_WRITE, 30, 3, fill=0x22, split=4)
            q.op(Q_SETTLE).io(Q_DISCARD, 0, 64).op(Q_LOOP).op(Q_SETTLE)
            q.io(Q_WRITE, 100, 80, fill=0x33).op(Q_SETTLE).io(Q_READ, 90, 100, split=5)
            q.op(Q_SETTLE).io(Q_FLUSH, 0).op(Q_SETTLE).op(Q_RESIZE, u16(6000)).op(Q_REOPEN)
            q.io(Q_READ, 0, 200)
            e[f"seed-{name}-{cache}"] = q.b
    # Requests in flight together, over the same clusters.
    q = Qcow2(geometry(3, 12, 4, 2048, mixed), raw_backing)
    for i in range(8):
        q.io(Q_WRITE, 7 * i, 9, fill=i)
    e["seed-overlapping-writes"] = q.op(Q_SETTLE).io(Q_READ, 0, 80).b
    # The buffers' memory truncated under reads of every kind of cluster (bug 4's class).
    q = Qcow2(geometry(3, 12, 4, 2048, mixed), raw_backing)
    e["bug4-qcow2-fills-truncated"] = q.op(Q_TRUNCATE, u8(0)).io(Q_READ, 0, 128).op(
        Q_SETTLE).op(Q_GROW).io(Q_READ, 0, 64).b
    q = Qcow2(geometry(3, 12, 4, 2048, mixed), raw_backing, cache="none")
    e["bug4-direct-bounce-truncated"] = q.io(Q_WRITE, 0, 8, fill=1, split=1).op(
        Q_TRUNCATE, u8(0)).io(Q_READ, 0, 8, split=1).op(Q_SETTLE).b
    # Corrupt tables: refused with an I/O error, never a crash.
    q = Qcow2(geometry(3, 12, 4, 2048, mixed), raw_backing,
              patches=[(4096 + 8, b"\x80\x00\x00\x00\x00\x00\x30\x01"), (48, b"\xff")])
    e["seed-corrupt-tables"] = q.io(Q_READ, 0, 64).io(Q_WRITE, 0, 64, fill=3).b
    return e


# --- the protocol harnesses (fuzz-mpqemu.c, fuzz-vfio-user.c, proto-client.c) -----------

P_SCRIPT, P_RECIPE, P_GUEST_BYTES, P_TRUNCATE, P_LOOP, P_SETTLE = range(6)
(M_SYSMEM, M_CONFIG, M_BAR, M_START, M_SET_IRQFD, M_RESET, M_ODD, M_RAW, M_RESAMPLE,
 M_HANG_UP, M_EVENTFD) = range(6, 17)
(V_VERSION, V_DMA_MAP, V_DMA_UNMAP, V_INFO, V_SET_IRQS, V_REGION_READ, V_REGION_WRITE, V_START,
 V_RESET, V_DMA_REPLY, V_RAW, V_UNMASK, V_RECONNECT, V_EVENTFD) = range(6, 20)
# proto_eventfd_meddle: how % 3, after the fd (bit 0) is taken off.
MEDDLE_BLOCKING, MEDDLE_NONBLOCKING, MEDDLE_FILL = range(3)


def meddle(op, second_fd, how):
    """M_EVENTFD/V_EVENTFD: the VMM does 'how' to the irqfd/trigger (or its second fd)."""
    return u8(op) + u8(how * 2 + (1 if second_fd else 0))
FD_RAM, FD_SHORT, FD_EVENTFD, FD_PIPE, FD_SOCKET, FD_FILE = 0, 3, 4, 5, 6, 7


def proto_recipe(target, command, data_len=4096, code=0x1000, start=True):
    """PROTO_OP_RECIPE: lsi_gen_recipe at code, then whether to start it."""
    return (u8(P_RECIPE) + code_ram(code) + u8(0) + msgout(identify()) + command +
            block(0x7e00) + block(0x7e80) + u8(target) + count(data_len) + ram(0x8000) +
            ram(0x7f00) + u8(0) + ram(0x7f10) + block(0x7d00) + u8(1 if start else 0))


def int_script(reg_write, at=0x9000):
    """SCRIPTS INT at 'at' in guest RAM, DIEN's SIR enabled, started by a DSP write
    (reg_write(register, value, size index 0: 1 byte, 2: 4 bytes)): the line goes high."""
    return (u8(P_GUEST_BYTES) + ram(at) + u8(7) + u32(0x98080000) + u32(0)
            + reg_write(DIEN, 0x04, 0) + reg_write(DSP, at, 2))


def mpqemu_reg_write(r, value, size):
    return u8(M_BAR) + u8(4) + reg(r) + u64(value) + u8(size)


def vfio_reg_write(r, value, size):
    return u8(V_REGION_WRITE) + u8(0) + reg(r) + u8(size) + u32(value) + bytes(12) + u8(0)


def mpqemu_entries():
    e = {}
    ram_at_0 = u8(M_SYSMEM) + u8(1) + u8(FD_RAM) + u8(0) + u8(0)
    irqfds = u8(M_SET_IRQFD) + u8(1)
    probe = b"".join(u8(M_CONFIG) + u8(i) + u8(off) + u32(0) for i, off in
                     [(1, 0), (1, 2), (2, 0x10), (2, 0x14), (2, 0x18)])
    read_istat = u8(M_BAR) + u8(0) + reg(ISTAT0) + u64(0) + u8(0)
    for target in range(4):
        e[f"seed-session-{target}"] = (
            u8(1) + ram_at_0 + irqfds + probe
            + proto_recipe(target, cdb(READ10, 1, 1), data_len=4096 if target == 2 else 2048
                           if target == 3 else 512)
            + u8(P_SETTLE) + read_istat + u8(M_RESAMPLE) + u8(M_RESET) + u8(M_HANG_UP))
    # The proxy makes both eventfds blocking and fills the irqfd; SCRIPTS INT raises the
    # line (DIEN SIR): the server's signal finds no room and must not wait, nor at the
    # resample that follows; a full resample fd is drained.
    e["seed-eventfds-made-blocking"] = (
        u8(1) + ram_at_0 + irqfds + probe
        + meddle(M_EVENTFD, False, MEDDLE_BLOCKING) + meddle(M_EVENTFD, True, MEDDLE_BLOCKING)
        + meddle(M_EVENTFD, False, MEDDLE_FILL) + int_script(mpqemu_reg_write)
        + u8(M_RESAMPLE) + meddle(M_EVENTFD, True, MEDDLE_FILL) + u8(P_SETTLE)
        + read_istat + u8(M_HANG_UP))
    e["seed-bad-fds"] = (
        u8(1) + u8(M_SYSMEM) + u8(4) + u8(FD_SHORT) + u8(2) + u8(FD_EVENTFD) + u8(FD_PIPE)
        + u8(FD_FILE) + u8(1) + b"\x00\x00" * 4 + u8(M_SET_IRQFD) + u8(0) + u8(2) + u8(FD_SOCKET)
        + u8(FD_RAM) + ram_at_0 + u8(P_TRUNCATE) + u8(1)
        + proto_recipe(0, cdb(READ10, 0, 8)) + u8(P_SETTLE))
    e["seed-odd-messages"] = (
        u8(0) + ram_at_0 + u8(M_ODD) + u32(1) + u8(0) + u8(8) + u8(8) + bytes(8) + u8(0)
        + u8(M_ODD) + u32(3) + u8(1) + u64(1 << 40) + u8(4) + bytes(4) + u8(0)
        + u8(M_RAW) + u8(15) + bytes(16) + u8(M_CONFIG) + u8(0x84) + u32(0x1000) + u32(0))
    return e


def vfio_msg_step():
    return u8(0)        # the loop runs after the message


def vfio_entries():
    e = {}
    version = u8(V_VERSION) + u8(2) + u8(0) + vfio_msg_step()
    infos = b"".join(u8(V_INFO) + u8(kind) + u8(index) + vfio_msg_step()
                     for kind, index in [(0, 0), (1, 0), (1, 1), (1, 2), (1, 7), (2, 0), (2, 1)])
    irqs = (u8(V_SET_IRQS) + u8(1) + u8(0) + u8(0) + vfio_msg_step()          # trigger eventfd
            + u8(V_SET_IRQS) + u8(1) + u8(1) + u8(0) + vfio_msg_step())       # unmask eventfd
    map_ram = u8(V_DMA_MAP) + u8(4) + u8(0) + u8(0) + u8(0) + vfio_msg_step()
    command = u8(V_REGION_WRITE) + u8(2) + u8(4) + u8(1) + bytes([7, 0] + [0] * 14) + vfio_msg_step()
    read_istat = u8(V_REGION_READ) + u8(0) + reg(ISTAT0) + u8(0) + bytes(16) + vfio_msg_step()
    for target in range(4):
        e[f"seed-session-{target}"] = (
            u8(1) + version + infos + irqs + map_ram + command
            + proto_recipe(target, cdb(READ10, 1, 1), data_len=4096 if target == 2 else 2048
                           if target == 3 else 512)
            + u8(P_SETTLE) + read_istat + u8(V_UNMASK) + vfio_msg_step()
            + u8(V_RESET) + vfio_msg_step() + u8(V_DMA_UNMAP) + u8(1) + u8(0) + u8(0)
            + vfio_msg_step())
    # The client makes its INTx eventfds blocking and fills the trigger; SCRIPTS INT
    # raises the line: the server's signal finds no room and must not wait, nor at the
    # unmasks that follow; a full unmask fd is drained.
    e["seed-eventfds-made-blocking"] = (
        u8(1) + version + infos + irqs + map_ram + command
        + meddle(V_EVENTFD, False, MEDDLE_BLOCKING) + vfio_msg_step()
        + meddle(V_EVENTFD, True, MEDDLE_BLOCKING) + vfio_msg_step()
        + meddle(V_EVENTFD, False, MEDDLE_FILL) + vfio_msg_step() + int_script(vfio_reg_write)
        + u8(P_SETTLE) + u8(V_UNMASK) + vfio_msg_step()
        + meddle(V_EVENTFD, True, MEDDLE_FILL) + vfio_msg_step() + u8(P_SETTLE) + read_istat)
    # Memory mapped without an fd: the server asks for it by DMA_READ/DMA_WRITE and waits;
    # the replies are queued ahead, from the client's copy of guest RAM.
    remote = u8(V_DMA_MAP) + u8(0) + u8(0) + u8(0) + u8(0) + vfio_msg_step()
    no_step = u8(1)     # the next messages go out before the loop runs: the replies wait there
    # What the recipe's SCRIPTS fetch, in order, up to the data move: SELECT and its table
    # entry, the dispatcher, MESSAGE OUT (entry, IDENTIFY), COMMAND (entry, READ(10)).
    dispatch = lambda taken: [(4, 0x1008 + 8 * k + w) for k in range(taken) for w in (0, 4)]
    fetches = ([(4, 0x1000), (4, 0x1004), (4, 0x7d00)] + dispatch(6)
               + [(4, 0x1040), (4, 0x1044), (8, 0x7d08), (1, 0x7e00), (4, 0x1048), (4, 0x104c)]
               + dispatch(5)
               + [(4, 0x1050), (4, 0x1054), (8, 0x7d10), (10, 0x7e80), (4, 0x1058), (4, 0x105c)]
               + dispatch(1) + [(4, 0x1060), (4, 0x1064), (8, 0x7d18)])
    counts = {4: 0, 8: 1, 1: 2, 10: 3}
    replies = b"".join(u8(V_DMA_REPLY) + u8(0) + u8(counts[n]) + u16(at) + no_step
                       for n, at in fetches)
    start = u8(V_REGION_WRITE) + u8(0) + reg(DSP) + u8(2) + u32(0x1000) + bytes(12) + no_step
    e["seed-remote-memory"] = (
        u8(1) + version + remote + command
        + proto_recipe(0, cdb(READ10, 1, 1), data_len=512, start=False)
        + u8(V_REGION_WRITE) + u8(0) + reg(DSA) + u8(2) + u32(0x7d00) + bytes(12) + no_step
        + start + replies + u8(P_SETTLE))
    # A client that answers wrongly: another id, an error, half the data; then none at all.
    wrong = (u8(V_DMA_REPLY) + u8(1) + u8(0) + u16(0x1000) + no_step
             + u8(V_DMA_REPLY) + u8(8) + u8(0) + u16(0) + no_step
             + u8(V_DMA_REPLY) + u8(0x20) + u8(0) + u16(0x1000) + no_step)
    e["seed-remote-memory-wrong-replies"] = (
        u8(1) + version + remote + command + proto_recipe(0, cdb(TUR), start=False) + start
        + wrong + u8(P_SETTLE) + u8(V_RECONNECT) + version + remote + command + start
        + u8(P_SETTLE))
    e["seed-reconnect"] = (u8(0) + version + map_ram + u8(V_RECONNECT) + u8(V_RAW) + u8(15)
                           + bytes(16) + u8(0) + vfio_msg_step() + u8(V_RECONNECT) + version
                           + u8(V_VERSION) + u8(0x80) + u8(1) + u8(0) + vfio_msg_step())
    return e


# --- the monitor harnesses (fuzz-monitor.c) ---------------------------------------------


def qmp_entries():
    neg = '{"execute":"qmp_capabilities"}\n'

    def req(cmd, **args):
        import json
        r = {"execute": cmd}
        if args:
            r["arguments"] = args
        return json.dumps(r, separators=(",", ":")) + "\n"

    sessions = {
        "seed-queries": [req("query-version"), req("query-commands"), req("query-status"),
                         req("query-name"), req("query-pci"), req("query-block"),
                         req("query-blockstats", **{"query-nodes": True}),
                         req("qom-list", path="/machine/peripheral"),
                         req("qom-get", path="/machine/peripheral/sd0", property="drive")],
        "seed-media": [req("eject", id="cd0"), req("blockdev-change-medium", id="cd0",
                                                   filename="new.iso", format="raw"),
                       req("eject", device="d0", force=True),
                       req("blockdev-change-medium", id="sd0", filename="new.qcow2",
                           format="qcow2", **{"read-only-mode": "read-write"}),
                       req("block_resize", **{"node-name": "d1", "size": 1048576}),
                       req("block_resize", device="d0", size=4096),
                       req("blockdev-change-medium", id="cd1", filename="missing.img"),
                       req("system_reset"), req("query-block")],
        "seed-hmp-inside": [req("human-monitor-command", **{"command-line": "info qtree"}),
                            req("human-monitor-command", **{"command-line": "eject -f cd0"})],
        "seed-errors": ['{"execute":', '{"arguments":{}}\n', '[1,2]\n', '{"execute":1}\n',
                        '{"execute":"eject","arguments":[]}\n', '{"execute":"quit","x":1}\n',
                        req("no-such-command"), req("eject", id="sd1")],
        "seed-quit": [req("quit"), req("query-status")],
        # Checked as QEMU checks them: members in QDict order, arguments in schema order.
        "seed-checks": ['{"foo":1,"execute":7}\n', '{"arguments":[],"x":1,"execute":"eject"}\n',
                        '{"exec-oob":"query-status"}\n',
                        req("eject", foo=1, force="yes", device=5),
                        req("blockdev-change-medium", filename="f", device="nosuch",
                            **{"read-only-mode": "x"}),
                        req("block_resize", device="x", size=9223372036854775808),
                        req("block_resize", device="d0", size=-1),
                        req("query-status", zz=1, a=2),
                        req("human-monitor-command", **{"command-line": "info name",
                                                        "cpu-index": 0}),
                        req("qmp_capabilities", enable=["oob", "oob"]),
                        req("qmp_capabilities", enable=[1])],
        # ids of every type come back in QEMU's text.
        "seed-ids": ['{"execute":"query-name","id":{"a":[1,2.5,true,null],"s":"\\u00e9\\ud83d'
                     '\\ude00\\u0000","u":18446744073709551615,"q":0.1,"e":{}}}\n',
                     '{"execute":"query-name","id":1e400}\n'],
    }
    e = {}
    for name, reqs in sessions.items():
        e[name] = b"\x07" + (neg + "".join(reqs)).encode()
    e["seed-before-negotiation"] = b"\x00" + req("query-block").encode() + neg.encode()
    # Raw bytes a string may hold: modified UTF-8's C0 80, invalid sequences (U+FFFD out).
    e["seed-id-bytes"] = (b"\x07" + neg.encode() +
                          b'{"execute":"query-name","id":"\xc0\x80\xff\xe2\x82\xed\xa0\x80"}\n')
    e["seed-capabilities"] = b"\x00" + "".join([
        req("qmp_capabilities", enable="oob"), req("qmp_capabilities", enable=["xx"]),
        req("qmp_capabilities", enable=["oob"]), req("qmp_capabilities", foo=1),
        req("qmp_capabilities", enable=[]), neg]).encode()
    return e


def hmp_entries():
    lines = {
        "seed-info": ["help", "help info", "info", "info status", "info version", "info name",
                      "info block", "info blockstats", "info pci", "info qtree", "info nothing"],
        "seed-media": ["eject cd0", "change cd0 new.iso raw read-only", "eject -f d0",
                       "change d0 new.qcow2 qcow2 read-write", "block_resize d1 1M",
                       "block_resize d0 4096", "change cd1 missing.img", "system_reset",
                       "info block"],
        "seed-errors": ["", "   ", "bogus", "change", "block_resize d0", "block_resize d0 -1",
                        "eject", "x" * 5000, "info block\r"],
        "seed-quit": ["quit", "info block"],
        # QEMU's argument parser: quotes and escapes, options, sizes, "help" words.
        "seed-parser": ['eject -f "cd0"', 'eject -x cd0', 'eject -', 'eject -fcd0', 'eject a b',
                        'change "cd\\"0\\n" x', 'change "cd0', 'change cd0 -f new.iso raw foo',
                        'change cd0 new.iso raw retain extra', 'block_resize d0 0x20',
                        'block_resize d0 1.5', 'block_resize d0 1.5B', 'block_resize d0 +2m',
                        'block_resize d0 .5G', 'block_resize d0 1x', 'block_resize d0 0x',
                        'block_resize d0 99999999999999999999', 'info qtree -b',
                        'info block "cd0"', 'info block -v', 'info status x',
                        'info/x', 'help info block', 'help "info', '? q',
                        'help a b c d e f g h i j k l m n o p q', '  nosuch arg'],
    }
    return {name: b"\x03" + "\n".join(ls).encode() + b"\n" for name, ls in lines.items()}


# --- the relay harness (tests/fuzz/fuzz-relay.c) ---------------------------------------

(R_VMM_MSG, R_DEV_MSG, R_VMM_RAW, R_DEV_RAW, R_DEVICE_DIES, R_READ, R_VMM_LEAVES) = range(7)
R_MEMFD, R_EVENTFD = 1, 0


class Relay:
    """The relay harness's operations; messages have true sizes, fds by kind."""

    def __init__(self, vfio_user):
        self.vfio_user = vfio_user
        self.b = u8(1 if vfio_user else 0)

    def _fds(self, fds):
        return u8(len(fds)) + b"".join(u8(k) for k in fds)

    def msg(self, from_vmm, cmd, body=b"", fds=(), id=0, reply=False, error=False):
        self.b += u8(R_VMM_MSG if from_vmm else R_DEV_MSG) + u16(len(body)) + u8(1)
        if self.vfio_user:
            self.b += u8(id) + u8(cmd) + u8(0)
            if not from_vmm:
                self.b += u8(1 if reply else 0) + (u8(1 if error else 0) if reply else b"")
            self.b += u8(1)                         # no error field
        else:
            self.b += u8(cmd)
            if not from_vmm:
                self.b += u8(1 if reply else 0)
        self.b += body + self._fds(fds)
        return self

    def raw(self, from_vmm, data):
        self.b += u8(R_VMM_RAW if from_vmm else R_DEV_RAW) + u16(len(data)) + data
        return self

    def op(self, op):
        self.b += u8(op)
        return self


def relay_entries():
    e = {}
    sysmem = u64(0) + bytes(56) + u64(4096) + bytes(56) + bytes(64)
    conf = u32(0) + u32(0) + u32(4)
    e["seed-mpqemu-session-and-restart"] = (
        Relay(False).msg(True, 0, sysmem, fds=[R_MEMFD]).msg(False, 1, u64(0), reply=True)
        .msg(True, 3, conf).msg(True, 6, b"", fds=[R_EVENTFD, R_EVENTFD]).op(R_READ)
        .op(R_DEVICE_DIES).msg(True, 5, u64(0x10) + u64(0) + u32(4) + u32(0))
        .op(R_DEVICE_DIES).op(R_READ).msg(False, 1, u64(0), reply=True)
        .msg(False, 1, u64(0), reply=True).op(R_READ).op(R_VMM_LEAVES).b)
    version = u16(0) + u16(0) + b'{"capabilities":{"max_msg_fds":8}}\0'
    dma_map = u32(32) + u32(3) + u64(0) + u64(0x100000) + u64(4096)
    region_read = u64(0x10) + u32(0) + u32(4)
    e["seed-vfio-user-session-and-restart"] = (
        Relay(True).msg(True, 1, version, id=0).msg(False, 1, version, id=0, reply=True)
        .msg(True, 2, dma_map, fds=[R_MEMFD], id=1).msg(False, 2, b"", id=1, reply=True)
        .msg(True, 9, region_read, id=2).op(R_READ)
        .msg(False, 11, u64(0x100000) + u64(4), id=0).op(R_READ)
        .op(R_DEVICE_DIES).op(R_DEVICE_DIES).op(R_READ)
        .msg(False, 1, version, id=0, reply=True).msg(False, 2, b"", id=1, reply=True)
        .msg(False, 9, region_read + bytes(4), id=2, reply=True, error=False)
        .op(R_READ).msg(True, 3, u32(24) + u32(0) + u64(0x100000) + u64(4096), id=3)
        .op(R_READ).op(R_VMM_LEAVES).b)
    for name, vu in [("mpqemu", False), ("vfio-user", True)]:
        e[f"seed-{name}-noise"] = (
            Relay(vu).raw(True, bytes(range(40))).raw(False, b"\xff" * 24)
            .msg(False, 1, u64(7), reply=True).msg(False, 9, b"", id=5, reply=True, error=True)
            .op(R_READ).b)
    return e


# --- the NBD server harness (tests/fuzz/fuzz-nbd-server.c) ------------------------------

(S_RAW, S_WAIT, S_GREETING, S_OLDSTYLE, S_OPT_REPLY, S_INFO_EXPORT, S_INFO_BLOCK, S_EXPORT_DATA,
 S_HONEST, S_REPLY, S_CLOSE, S_SHUT_WR, S_ACCEPT) = range(13)
(C_READ, C_WRITE, C_ZERO, C_DISCARD, C_FLUSH, C_LOOP, C_SETTLE, C_SYNC_READ, C_SYNC_WRITE,
 C_SYNC_FLUSH, C_RESIZE) = range(11)
# The harness's tables (None: the input's own value follows).
NBD_SIZES = [1 << 20, 0, 1, 511, 512, 4096, 65536, 65537, 1 << 31, 1 << 40, (1 << 63) - 1,
             1 << 63, (1 << 64) - 1, None]
NBD_BLOCK_SIZES = [0, 1, 2, 512, 4096, 65536, 3, 4097, 1 << 20, 32 << 20, 64 << 20, 0xffffffff,
                   None]
NBD_ERRORS = [0, 1, 5, 12, 22, 28, 75, 95, 108, 0xffffffff, None]
NBD_OPTION_REPLIES = [1, 2, 3, 4, 0x80000001, 0x80000002, 0x80000003, 0x80000004, 0x80000005,
                      0x80000006, 0x80000007, 0x80000008, 0x80000009, None]
# Transmission flags: HAS_FLAGS, READ_ONLY, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES.
TF_HAS, TF_RO, TF_FLUSH, TF_FUA, TF_TRIM, TF_ZEROES = 1, 2, 4, 8, 32, 64
TF_ALL = TF_HAS | TF_FLUSH | TF_FUA | TF_TRIM | TF_ZEROES
OPT_EXPORT_NAME, OPT_GO, OPT_STRUCTURED_REPLY = 1, 7, 8
REP_ACK, REP_INFO, REP_ERR_UNSUP, REP_ERR_POLICY = 1, 3, 0x80000001, 0x80000002
CHUNK_NONE, CHUNK_DATA, CHUNK_HOLE, CHUNK_ERROR, CHUNK_ERROR_OFFSET = 0, 1, 2, 32769, 32770
EIO, ENOSPC = 5, 28


def nbd_pick(table, value, wide=True):
    """A value from one of the harness's tables, or the table's last slot and the value."""
    if value in table:
        return u8(table.index(value))
    return u8(len(table) - 1) + (u64(value) if wide else u32(value))


def be(value, n):
    return value.to_bytes(n, "big")


# The server's wire format (the NBD protocol), as a real server writes it.
def nbd_greeting(flags=3):
    return b"NBDMAGIC" + b"IHAVEOPT" + be(flags, 2)


def nbd_oldstyle(size, tflags):
    return b"NBDMAGIC" + be(0x00420281861253, 8) + be(size, 8) + be(tflags, 4) + bytes(124)


def nbd_opt_reply(opt, rep, data=b""):
    return be(0x0003e889045565a9, 8) + be(opt, 4) + be(rep, 4) + be(len(data), 4) + data


def nbd_info_export(size, tflags, opt=OPT_GO):
    return nbd_opt_reply(opt, REP_INFO, be(0, 2) + be(size, 8) + be(tflags, 2))


def nbd_info_block(minimum, preferred, maximum, opt=OPT_GO):
    return nbd_opt_reply(opt, REP_INFO, be(3, 2) + be(minimum, 4) + be(preferred, 4) +
                         be(maximum, 4))


def nbd_simple(cookie, error=0, data=b""):
    return be(0x67446698, 4) + be(error, 4) + be(cookie, 8) + data


def nbd_chunk(cookie, kind, payload=b"", done=False, length=None):
    return (be(0x668e33ef, 4) + be(1 if done else 0, 2) + be(kind, 2) + be(cookie, 8) +
            be(len(payload) if length is None else length, 4) + payload)


def nbd_data(cookie, offset, data, done=False):
    return nbd_chunk(cookie, CHUNK_DATA, be(offset, 8) + data, done)


def nbd_hole(cookie, offset, length, done=False):
    return nbd_chunk(cookie, CHUNK_HOLE, be(offset, 8) + be(length, 4), done)


def nbd_error(cookie, error, message=b"", done=True, offset=None):
    payload = be(error, 4) + be(len(message), 2) + message
    if offset is not None:
        return nbd_chunk(cookie, CHUNK_ERROR_OFFSET, payload + be(offset, 8), done)
    return nbd_chunk(cookie, CHUNK_ERROR, payload, done)


def nbd_image(offset, length):
    """The harness's raw image (fill_image): what an honest server reads there."""
    return bytes((i * 7 + (i >> 9)) & 0xff for i in range(offset, offset + length))


class NbdRun:
    """An input of fuzz-nbd-server: the header, the client's operations, the server's program."""

    def __init__(self, size=1 << 20, tflags=TF_ALL, blocks=None, qcow2=False, readonly=False,
                 cache="writeback", reconnect=False, structured=True, go=True):
        config = ((1 if qcow2 else 0) | (2 if readonly else 0) | CACHES.index(cache) << 2 |
                  (0x10 if reconnect else 0) | (0 if structured else 0x20) |
                  (0x40 if blocks else 0) | (0 if go else 0x80))
        self.header = u8(config) + nbd_pick(NBD_SIZES, size) + u16(tflags)
        for b in blocks or ():
            self.header += nbd_pick(NBD_BLOCK_SIZES, b, wide=False)
        self.client = b""
        self.server = b""

    # The client (the main thread).
    def io(self, op, sector=0, sectors=1, split=None):
        self.client += u8(op) + u8(0) + u16(sector) + u8(sectors - 1)
        if op in (C_READ, C_WRITE):
            self.client += u8(split or 0)
        return self

    def io_bytes(self, op, offset, length, split=None):
        """A range in bytes (misaligned ones too)."""
        self.client += u8(op) + u8(1) + u32(offset) + u16(length)
        if op in (C_READ, C_WRITE):
            self.client += u8(split or 0)
        return self

    def c(self, op, *parts):
        self.client += u8(op) + b"".join(parts)
        return self

    # The server (its thread).
    def raw(self, data):
        while data:
            self.server += u8(S_RAW) + u16(len(data[:4096])) + data[:4096]
            data = data[4096:]
        return self

    def wait(self, n=1):
        self.server += u8(S_WAIT) * n
        return self

    def s(self, op, *parts):
        self.server += u8(op) + b"".join(parts)
        return self

    def reply(self, sel, form, *parts):
        """S_REPLY: to the sel-th open request (0xf0 and up: a cookie given in parts)."""
        self.server += u8(S_REPLY) + u8(sel) + u8(form) + b"".join(parts)
        return self

    def bytes(self):
        assert len(self.client) < 256
        return self.header + u8(len(self.client)) + self.client + self.server


def nbd_handshake(run, size=1 << 20, tflags=TF_ALL, blocks=None, structured=True):
    """A real newstyle handshake, as nbdkit answers libnbd: STRUCTURED_REPLY, then GO."""
    run.raw(nbd_greeting()).wait()
    run.raw(nbd_opt_reply(OPT_STRUCTURED_REPLY, REP_ACK if structured else REP_ERR_UNSUP))
    reply = nbd_info_export(size, tflags)
    if blocks:
        reply += nbd_info_block(*blocks)
    return run.wait().raw(reply + nbd_opt_reply(OPT_GO, REP_ACK))


def nbd_entries():
    e = {}
    # Honest servers: the harness answers as a real server would, for every export shape.
    for name, kw in [
            ("honest-raw", {}),
            ("honest-raw-writethrough-fua", {"cache": "writethrough"}),
            ("honest-raw-directsync-no-fua", {"cache": "directsync",
                                              "tflags": TF_HAS | TF_FLUSH | TF_ZEROES}),
            ("honest-no-zeroes-no-flush", {"tflags": TF_HAS, "cache": "writethrough"}),
            ("honest-blocks-4k-max-8k", {"blocks": (4096, 4096, 8192)}),
            ("honest-blocks-odd", {"blocks": (3, 4097, 4097)}),
            ("honest-simple-replies", {"structured": False}),
            ("honest-export-name", {"go": False}),
            ("honest-read-only", {"tflags": TF_ALL | TF_RO, "readonly": True}),
            ("honest-read-only-export-rw-drive", {"tflags": TF_ALL | TF_RO}),
            ("honest-size-odd", {"size": 65537}),
            ("honest-size-zero", {"size": 0}),
            ("honest-size-huge", {"size": (1 << 63) - 1}),
            ("honest-size-too-big", {"size": 1 << 63})]:
        r = NbdRun(**kw)
        r.io(C_WRITE, 2, 8).io(C_READ, 0, 16, split=1).c(C_SETTLE)
        r.io_bytes(C_READ, 1000, 3000, split=3).io_bytes(C_WRITE, 511, 1025, split=7)
        r.io(C_ZERO, 8, 4).io(C_DISCARD, 100, 256).io(C_FLUSH).c(C_SETTLE)
        r.io(C_SYNC_READ, 0, 8).io(C_SYNC_WRITE, 16, 2).io(C_SYNC_FLUSH).c(C_RESIZE, u16(1))
        e["seed-" + name] = r.bytes()
    for cache in CACHES:
        r = NbdRun(qcow2=True, cache=cache)
        r.io(C_WRITE, 3, 20).c(C_SETTLE).io(C_READ, 0, 40, split=1).io(C_ZERO, 8, 16)
        r.io(C_DISCARD, 0, 64).io(C_FLUSH).c(C_SETTLE).io(C_READ, 90, 100)
        e[f"seed-honest-qcow2-{cache}"] = r.bytes()

    # Real transcripts: the server's bytes, each chunk after the client's next message.
    data = nbd_image(0, 512)
    r = nbd_handshake(NbdRun(), structured=False)
    r.io(C_WRITE, 0, 1).c(C_SETTLE).io(C_READ, 0, 1).c(C_SETTLE).io(C_FLUSH).c(C_SETTLE)
    r.wait().raw(nbd_simple(1)).wait().raw(nbd_simple(2, data=data)).wait().raw(nbd_simple(3))
    e["seed-transcript-simple"] = r.bytes()

    r = nbd_handshake(NbdRun(), blocks=(512, 4096, 65536))
    r.io(C_READ, 0, 2).c(C_SETTLE).io(C_READ, 4, 2).c(C_SETTLE).io(C_READ, 8, 1).c(C_SETTLE)
    r.wait().raw(nbd_data(1, 512, nbd_image(512, 512)) + nbd_data(1, 0, nbd_image(0, 512)) +
                 nbd_chunk(1, CHUNK_NONE, done=True))
    r.wait().raw(nbd_hole(2, 2048, 512) + nbd_data(2, 2560, nbd_image(2560, 512), done=True))
    r.wait().raw(nbd_error(3, EIO, b"medium error") )
    e["seed-transcript-structured"] = r.bytes()

    r = nbd_handshake(NbdRun())
    r.io(C_WRITE, 0, 1).io(C_FLUSH).io(C_ZERO, 4, 4).c(C_SETTLE)
    r.wait(3).raw(nbd_simple(2, EIO) + nbd_simple(3, ENOSPC) + nbd_simple(1, 1))
    e["seed-transcript-errors-out-of-order"] = r.bytes()

    # GO refused: the client falls back to EXPORT_NAME.
    r = NbdRun()
    r.raw(nbd_greeting()).wait().raw(nbd_opt_reply(OPT_STRUCTURED_REPLY, REP_ERR_POLICY))
    r.wait().raw(nbd_opt_reply(OPT_GO, REP_ERR_UNSUP)).wait()
    r.raw(be(1 << 20, 8) + be(TF_ALL, 2))
    r.io(C_READ, 0, 1).c(C_SETTLE).wait().raw(nbd_simple(1, data=data))
    e["seed-transcript-export-name"] = r.bytes()

    r = NbdRun().raw(nbd_oldstyle(1 << 20, TF_ALL)).io(C_READ, 0, 1).c(C_SETTLE)
    e["seed-transcript-oldstyle"] = r.wait().raw(nbd_simple(1, data=data)).bytes()

    # The same, through the harness's own server operations.
    r = NbdRun()
    r.s(S_GREETING, u16(3)).wait().s(S_OPT_REPLY, nbd_pick(NBD_OPTION_REPLIES, REP_ACK), u8(0))
    r.wait().s(S_INFO_EXPORT, nbd_pick(NBD_SIZES, 1 << 20), u16(TF_ALL))
    r.s(S_INFO_BLOCK, *(nbd_pick(NBD_BLOCK_SIZES, v, False) for v in (512, 4096, 65536)))
    r.s(S_OPT_REPLY, nbd_pick(NBD_OPTION_REPLIES, REP_ACK), u8(0))
    r.io(C_READ, 0, 8).io(C_READ, 8, 8).io(C_WRITE, 0, 1).c(C_SETTLE)
    # The second read's first half; all of the first as a hole; the rest of the second; the write.
    r.wait(3).reply(1, 0x02, u8(0x08)).reply(0, 0x10 | 0x03, u8(0)).reply(0, 0x12, u8(0x02))
    r.reply(0, 0x00)
    r.reply(0xf0, 0x00, u64(77))      # a cookie never sent
    e["seed-ops-structured-replies"] = r.bytes()

    # Hand-broken: what a hostile or broken server does.
    def broken(name, run):
        e["seed-broken-" + name] = run.bytes()

    r = nbd_handshake(NbdRun()).io(C_READ, 0, 1).c(C_SETTLE)
    broken("reply-unknown-cookie", r.wait().raw(nbd_simple(99, data=data)))
    r = nbd_handshake(NbdRun(), structured=False).io(C_READ, 0, 1).c(C_SETTLE)
    broken("short-data-then-close", r.wait().raw(nbd_simple(1, data=data[:100])).s(S_CLOSE))
    r = nbd_handshake(NbdRun()).io(C_READ, 0, 1).c(C_SETTLE)
    broken("chunk-past-request", r.wait().raw(nbd_data(1, 4096, data, done=True)))
    r = nbd_handshake(NbdRun()).io(C_READ, 0, 1).c(C_SETTLE)
    broken("chunk-length-lies",
           r.wait().raw(nbd_chunk(1, CHUNK_DATA, be(0, 8) + data, done=True, length=8)))
    r = nbd_handshake(NbdRun()).io(C_READ, 0, 1).c(C_SETTLE)
    broken("error-chunk-error-zero", r.wait().raw(nbd_error(1, 0, b"fine?")))
    r = nbd_handshake(NbdRun()).io(C_READ, 0, 2).c(C_SETTLE)
    broken("error-offset-outside",
           r.wait().raw(nbd_error(1, EIO, b"bad", offset=1 << 40)))
    r = nbd_handshake(NbdRun()).io(C_WRITE, 0, 1).c(C_SETTLE)
    broken("structured-reply-to-write", r.wait().raw(nbd_data(1, 0, data, done=True)))
    r = nbd_handshake(NbdRun(), structured=False).io(C_READ, 0, 1).c(C_SETTLE)
    broken("chunk-not-negotiated", r.wait().raw(nbd_data(1, 0, data, done=True)))
    # The connection dies mid-reply: the client reconnects (to the honest server) and resends.
    r = nbd_handshake(NbdRun(reconnect=True)).io(C_READ, 0, 1).io(C_WRITE, 4, 1).c(C_SETTLE)
    broken("close-mid-reply-reconnect",
           r.wait(2).raw(nbd_chunk(1, CHUNK_DATA, be(0, 8) + data[:200], length=520)).s(S_CLOSE))
    r = nbd_handshake(NbdRun(reconnect=True)).io(C_READ, 0, 1).c(C_SETTLE)
    r.wait().s(S_CLOSE).s(S_ACCEPT)
    broken("reconnect-size-changed", nbd_handshake(r, size=4096))
    r = nbd_handshake(NbdRun(reconnect=True)).io(C_WRITE, 0, 1).c(C_SETTLE)
    r.wait().s(S_CLOSE).s(S_ACCEPT)
    broken("reconnect-read-only", nbd_handshake(r, tflags=TF_ALL | TF_RO))
    # The first connection offers everything; the one after it (the honest server, with the
    # header's flags and block sizes) less.  Requests made for the first (FUA, WRITE_ZEROES)
    # were sent again as they were, and libnbd refused them (EINVAL); the block sizes growing
    # made the drive's sectors unaligned.  Now each command is made for its connection, a
    # writethrough write without FLUSH or FUA fails (EIO), and other block sizes are refused.
    fewer = [("fua-to-flush-writethrough", "writethrough", TF_HAS | TF_FLUSH, False),
             ("fua-to-flush-directsync-qcow2", "directsync", TF_HAS | TF_FLUSH | TF_TRIM, True),
             ("no-flush-no-fua-writethrough", "writethrough", TF_HAS, False),
             ("no-flush-no-fua-writeback", "writeback", TF_HAS | TF_ZEROES, False),
             ("no-flush-fua-writethrough-qcow2", "writethrough", TF_HAS | TF_FUA, True)]
    for name, cache, tflags, qcow2 in fewer:
        r = nbd_handshake(NbdRun(reconnect=True, cache=cache, tflags=tflags, qcow2=qcow2),
                          tflags=TF_ALL)
        r.io(C_WRITE, 2, 8).io(C_ZERO, 16, 4).io(C_DISCARD, 32, 8).io(C_FLUSH)
        r.io(C_SYNC_WRITE, 48, 1).io(C_WRITE, 64, 1).c(C_SETTLE).io(C_READ, 2, 8)
        r.io(C_ZERO, 80, 300).io(C_FLUSH).c(C_SETTLE)
        if qcow2:
            r.s(S_HONEST, u8(5))    # the open's reads, and qcow2's first writes
        broken("reconnect-fewer-flags-" + name, r.wait(3).s(S_CLOSE))
    for first, then in [((512, 4096, 65536), (4096, 4096, 65536)),
                        ((4096, 4096, 65536), (512, 512, 1024))]:
        r = nbd_handshake(NbdRun(reconnect=True, blocks=then), blocks=first)
        r.io(C_WRITE, 8, 8).io(C_READ, 0, 1).c(C_SETTLE)
        broken("reconnect-block-sizes-%d-to-%d-%d" % (first[0], then[0], then[2]),
               r.wait(2).s(S_CLOSE))
    # A reconnection taken and never answered (the handshake does not end): the queued read
    # fails at reconnect-delay, not never.  Then a server that hangs up after each handshake:
    # the pauses between attempts grow (and the log is rate-limited) rather than 50 ms each.
    r = nbd_handshake(NbdRun(reconnect=True)).io(C_READ, 0, 1).c(C_SETTLE)
    r.wait().s(S_CLOSE).s(S_ACCEPT).io(C_READ, 2, 1).c(C_SETTLE).c(C_SETTLE)
    broken("reconnect-silent-handshake", r.wait(3))
    r = nbd_handshake(NbdRun(reconnect=True)).io(C_READ, 0, 1).c(C_SETTLE).c(C_SETTLE)
    for _ in range(4):
        nbd_handshake(r.wait().s(S_CLOSE).s(S_ACCEPT))
    broken("reconnect-flapping", r.wait().s(S_CLOSE))
    # A connection that served over a second (RETRY_MAX_MS) before it was lost: no flap,
    # the pauses between attempts start over from 50 ms.  The read stays unanswered while
    # the client settles and the server's 55 waits (20 ms each) run out.
    r = nbd_handshake(NbdRun(reconnect=True)).io(C_READ, 0, 1)
    for _ in range(7):
        r.c(C_SETTLE)
    r.wait(55).s(S_CLOSE).s(S_ACCEPT)
    broken("reconnect-after-a-long-connection", nbd_handshake(r))
    r = nbd_handshake(NbdRun()).io(C_READ, 0, 1).c(C_SETTLE)
    broken("half-close", r.wait().s(S_SHUT_WR))
    broken("close-in-handshake", NbdRun().raw(nbd_greeting()).wait().s(S_CLOSE))
    broken("greeting-garbage", NbdRun().raw(b"NBDMAGIC" + b"IHAVEOPX" + be(3, 2)))
    broken("greeting-no-fixed-newstyle", NbdRun().raw(nbd_greeting(0)))
    r = NbdRun().raw(nbd_greeting()).wait().raw(nbd_opt_reply(OPT_STRUCTURED_REPLY, REP_ACK))
    broken("info-short", r.wait().raw(nbd_opt_reply(OPT_GO, REP_INFO, be(0, 2) + be(1, 4)) +
                                      nbd_opt_reply(OPT_GO, REP_ACK)))
    r = NbdRun().raw(nbd_greeting()).wait().raw(nbd_opt_reply(OPT_STRUCTURED_REPLY, REP_ACK))
    broken("ack-without-info", r.wait().raw(nbd_opt_reply(OPT_GO, REP_ACK)))
    r = NbdRun().raw(nbd_greeting()).wait().raw(nbd_opt_reply(OPT_GO, REP_ACK))
    broken("reply-to-wrong-option", r)
    for blocks in [(3, 4096, 65536), (4096, 512, 1024), (65536, 65536, 65536),
                   (1, 1, 0xffffffff), (512, 512, 700)]:
        r = nbd_handshake(NbdRun(), blocks=blocks)
        r.io_bytes(C_READ, 1000, 3000, split=3).io(C_WRITE, 0, 128).io(C_DISCARD, 0, 200)
        broken("block-sizes-%d-%d-%d" % blocks, r.c(C_SETTLE))
    for size in [0, 511, 65537, (1 << 63) - 1]:
        r = nbd_handshake(NbdRun(), size=size).io(C_READ, 0, 1).io(C_SYNC_READ, 0, 2)
        broken("export-size-%d" % size, r.c(C_SETTLE))
    # Sizes of 2^63 and more: libnbd returns them negative without an error of its own, and
    # the failed open said "(null)" (printf of nbd_get_error()'s NULL).
    for size in [1 << 63, (1 << 64) - 1]:
        r = nbd_handshake(NbdRun(), size=size).io(C_READ, 0, 1)
        e["bug-export-size-%d" % size] = r.bytes()
    # qcow2 on a server that stops answering a while: the drive closes with an allocating write
    # and a write zeroes in flight.  The NBD file's drain ran only its own commands, not what
    # qcow2 defers after them: the requests never completed (found by the fuzzer).
    for stall in (15, 30):
        r = NbdRun(qcow2=True, tflags=TF_HAS | TF_FLUSH | TF_FUA | TF_TRIM | TF_ZEROES)
        r.io(C_WRITE, 3, 20, split=1).io_bytes(C_ZERO, 262143, 65535)
        e["bug-qcow2-closed-with-requests-in-flight-%d" % stall] = (
            r.s(S_HONEST, u8(15)).wait(stall).bytes())
    # The server closes right after the handshake, having read all the client sent: the next
    # request's send fails (EPIPE), and libnbd 1.14 completes the command yet fails the call
    # when the freed command's cookie reads negative.  Counted as in flight, the request (here
    # qcow2's first synchronous read) waited forever.  Whether the send or the loop finds the
    # close first is timing, and the cookie is what the allocator left: these exercise the
    # path, test_server_gone_before_a_request (test-nbd) pins it.
    for qcow2 in (False, True):
        r = NbdRun(qcow2=qcow2, reconnect=True).io(C_SYNC_READ, 0, 1).io(C_READ, 0, 1)
        e["bug-closed-after-handshake" + ("-qcow2" if qcow2 else "")] = (
            r.s(S_HONEST, u8(2)).wait().s(S_CLOSE).bytes())
    return e


# --- the checkpoint harness (tests/fuzz/fuzz-checkpoint.c, src/util/checkpoint.c) -----

CKPT_HEADER = struct.Struct("<8sIIQQ")      # magic, version, n_entries, size, used
CKPT_ENTRY = struct.Struct("<56sQQ")        # name, offset, size
CKPT_MAX_ENTRIES = 128
CKPT_DATA_START = 9280                      # the header and 128 entries, 64-byte aligned
CKPT_SIZE = 4 << 20
CKPT_MAX_AREA = 1 << 20


class Checkpoint:
    """A checkpoint's bytes: the header, the directory and the areas, each field settable."""

    def __init__(self, data):
        (self.magic, self.version, self.n_entries, self.size,
         self.used) = CKPT_HEADER.unpack_from(data)
        self.entries = []
        for i in range(min(self.n_entries, CKPT_MAX_ENTRIES)):
            at = CKPT_HEADER.size + i * CKPT_ENTRY.size
            self.entries.append(list(CKPT_ENTRY.unpack_from(data, at)))
        self.data = bytearray(data)

    def entry(self, name):
        return next(e for e in self.entries if e[0].rstrip(b"\0") == name)

    def area(self, name):
        e = self.entry(name)
        return e[1], e[2]

    def bytes(self):
        out = bytearray(self.data)
        out[:CKPT_HEADER.size] = CKPT_HEADER.pack(self.magic, self.version, self.n_entries,
                                                  self.size, self.used)
        for i, (name, offset, size) in enumerate(self.entries):
            at = CKPT_HEADER.size + i * CKPT_ENTRY.size
            out[at:at + CKPT_ENTRY.size] = CKPT_ENTRY.pack(name, offset, size)
        return bytes(out)


def checkpoint_entries(corpus):
    """Hand-broken checkpoints, made from the real one the harness wrote (seed-real-done)."""
    path = os.path.join(corpus, "checkpoint", "seed-real-done")
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        real = f.read()
    e = {}

    def variant(name, change):
        c = Checkpoint(real)
        change(c)
        e[name] = c.bytes()

    def rejected(name, change):
        """A directory the successor rejects: the areas do not matter, only it is kept."""
        c = Checkpoint(real)
        change(c)
        e[name] = c.bytes()[:CKPT_HEADER.size + CKPT_ENTRY.size * len(c.entries)]

    def set_entry(name, offset=None, size=None, new_name=None):
        def change(c):
            ent = c.entry(name)
            ent[1] = ent[1] if offset is None else offset
            ent[2] = ent[2] if size is None else size
            ent[0] = ent[0] if new_name is None else new_name
        return change

    regs_at, regs_size = Checkpoint(real).area(b"lsi0/regs")
    pci_at, _ = Checkpoint(real).area(b"lsi0/pci")
    t0_pci_at, _ = Checkpoint(real).area(b"t0/pci")
    # The directory cut short: the header counts entries the file no longer has.
    e["seed-truncated-directory"] = real[:CKPT_HEADER.size + CKPT_ENTRY.size + 20]
    e["seed-truncated-header"] = real[:12]
    e["seed-truncated-area"] = real[:regs_at + 300]
    # Areas on top of each other, on the header, out of order.
    rejected("seed-overlapping-areas", set_entry(b"lsi0/pci", offset=regs_at + 64))
    rejected("seed-area-on-header", set_entry(b"lsi0/regs", offset=0))
    rejected("seed-areas-same-offset", set_entry(b"t0/regs", offset=pci_at))
    rejected("seed-area-unaligned", set_entry(b"lsi0/pci", offset=pci_at + 8))
    # Sizes and offsets out of any bound; the last area past the end of what is used.
    rejected("seed-huge-size", set_entry(b"lsi0/regs", size=(1 << 64) - 1))
    rejected("seed-area-over-max", set_entry(b"lsi0/regs", size=CKPT_MAX_AREA + 64))
    rejected("bug-area-offset-huge", set_entry(b"t0/pci", offset=(1 << 64) - 64))
    rejected("bug-area-past-used", set_entry(b"t0/pci", offset=CKPT_SIZE - 64))
    rejected("bug-area-past-file", set_entry(b"t0/pci", offset=CKPT_SIZE + 4096))
    rejected("seed-zero-size", set_entry(b"t0/regs", size=0))

    # Valid directories with no room left for an area a device does not find.
    def space_full(c):
        c.entry(b"lsi0/regs")[0] = b"lsi0/regz"
        c.used = CKPT_SIZE
    variant("bug-space-full", space_full)

    def directory_full(c):
        c.entry(b"lsi0/regs")[0] = b"lsi1/regs"
        while len(c.entries) < CKPT_MAX_ENTRIES:
            c.entries.append([b"junk/%d" % len(c.entries), c.used, 64])
            c.used += 64
        c.n_entries = len(c.entries)
    variant("bug-directory-full", directory_full)

    def header(**fields):
        def change(c):
            for k, v in fields.items():
                setattr(c, k, v)
        return change

    rejected("seed-used-past-size", header(used=CKPT_SIZE + 64))
    rejected("seed-used-before-data", header(used=64))
    rejected("seed-too-many-entries", header(n_entries=CKPT_MAX_ENTRIES + 1))
    rejected("seed-all-entries", header(n_entries=0xffffffff))
    rejected("seed-wrong-size", header(size=CKPT_SIZE * 2))
    rejected("seed-wrong-version", header(version=2))
    rejected("seed-wrong-magic", header(magic=b"MPQCKPU\0"))
    # Names: another device's, an unknown one, unterminated, twice the same.
    variant("seed-wrong-name", set_entry(b"lsi0/regs", new_name=b"lsi0/regz"))
    rejected("seed-unterminated-name", set_entry(b"lsi0/pci", new_name=b"x" * 56))
    rejected("seed-empty-name", set_entry(b"t0/regs", new_name=b""))
    variant("seed-duplicate-name", set_entry(b"t0/regs", new_name=b"lsi0/regs"))

    def swap_pci(c):
        a, b = c.entry(b"lsi0/pci"), c.entry(b"t0/pci")
        a[0], b[0] = b[0], a[0]
    variant("seed-pci-areas-swapped", swap_pci)
    variant("seed-regs-size-of-another-build", set_entry(b"lsi0/regs", size=regs_size - 64))

    # Good directories over areas a compromised process filled.
    def fill(name, byte):
        def change(c):
            at, size = c.area(name)
            c.data[at:at + size] = bytes([byte]) * size
        return change
    variant("seed-lsi-registers-ones", fill(b"lsi0/regs", 0xff))
    variant("seed-lsi-pci-ones", fill(b"lsi0/pci", 0xff))
    variant("seed-testdev-registers-ones", fill(b"t0/regs", 0xff))

    def lsi_fields(c):
        # dsa, temp, dnad, dbc, dsp, dsps, adder: DSP into the SCRIPTS RAM's last dword,
        # a byte count past any buffer.
        struct.pack_into("<7I", c.data, regs_at, 0x4000, 0, 0xfffffff0, 0xffffff,
                         0xfebf2000 + 8188, 0, 0)
    variant("seed-lsi-registers-edges", lsi_fields)
    media_entries(variant)
    return e


# struct disk_kept (src/scsi/disk.c): unit attentions now and next (key, asc, ascq each),
# tray_open, locked, media_event, eject_request, medium, readonly, cache, wce (2 more
# to align), size,
# format[16], file[4096].
DISK_KEPT = struct.Struct("<3s3s8B2xQ16s4096s")
KEPT_GIVEN, KEPT_NONE, KEPT_CHANGED = 0, 1, 2
WCE_DRIVE, WCE_OFF, WCE_ON = 0, 1, 2
UA_NONE, UA_RESET = b"\0\0\0", b"\x06\x29\x00"
UA_MEDIUM_CHANGED, UA_CAPACITY_CHANGED = b"\x06\x28\x00", b"\x06\x2a\x09"


def media_entries(variant):
    """The disks' medium state (fuzz-vm: sd0 removable, sd1/sd2 fixed, cd0, cd1 empty)."""
    def kept(name, ua=UA_MEDIUM_CHANGED, ua_next=UA_NONE, tray_open=0, locked=0, event=0,
             eject_request=0, medium=KEPT_GIVEN, readonly=0, cache=0, wce=WCE_DRIVE, size=0,
             fmt=b"raw", file=b""):
        def change(c):
            at, size_ = c.area(name)
            c.data[at:at + DISK_KEPT.size] = DISK_KEPT.pack(
                ua, ua_next, tray_open, locked, event, eject_request, medium, readonly, cache,
                wce, size, fmt, file)
        return change

    def both(*changes):
        def change(c):
            for ch in changes:
                ch(c)
        return change

    # Well-formed: what a process leaves after a monitor's and a guest's doings.
    variant("seed-media-cd-changed", kept(b"cd0/media", event=1, medium=KEPT_CHANGED,
                                          readonly=1, file=b"new.iso", size=32 << 10))
    variant("seed-media-cd-ejected", kept(b"cd0/media", tray_open=1, event=1,
                                          medium=KEPT_NONE))
    variant("seed-media-empty-cd-loaded", kept(b"cd1/media", ua=UA_RESET,
                                               ua_next=UA_MEDIUM_CHANGED, event=1,
                                               medium=KEPT_CHANGED, readonly=1,
                                               file=b"cd.iso", cache=2))
    variant("seed-media-locked-eject-requested", kept(b"sd0/media", ua=UA_NONE, locked=1,
                                                      eject_request=1, size=256 << 10))
    variant("seed-media-hd-changed-qcow2", kept(b"sd0/media", medium=KEPT_CHANGED,
                                                fmt=b"qcow2", file=b"new.qcow2"))
    variant("seed-media-tray-open-medium-in", kept(b"sd0/media", ua=UA_NONE, tray_open=1))
    variant("seed-media-write-cache-chosen", both(kept(b"sd1/media", ua=UA_NONE, wce=WCE_OFF),
                                                  kept(b"sd0/media", ua=UA_NONE, wce=WCE_ON)))
    variant("seed-media-resized", both(kept(b"sd1/media", ua=UA_CAPACITY_CHANGED,
                                            size=128 << 10),
                                       kept(b"sd2/media", ua=UA_NONE, size=1 << 40)))
    # Broken: each must be refused (the command line's medium) or fail to open cleanly.
    variant("bug-media-flags-not-0-or-1", kept(b"cd0/media", tray_open=2, locked=0xff))
    variant("bug-media-kind-unknown", kept(b"cd0/media", medium=3))
    variant("bug-media-write-cache-unknown", kept(b"sd2/media", wce=3))
    variant("bug-media-fixed-disk-changed", kept(b"sd1/media", medium=KEPT_CHANGED,
                                                 file=b"new.qcow2", fmt=b"qcow2"))
    variant("bug-media-fixed-disk-tray-open", kept(b"sd2/media", tray_open=1))
    variant("bug-media-cd-writable", kept(b"cd0/media", medium=KEPT_CHANGED, readonly=0,
                                          file=b"new.iso"))
    variant("bug-media-cache-unknown", kept(b"cd0/media", medium=KEPT_CHANGED, readonly=1,
                                            cache=9, file=b"new.iso"))
    variant("bug-media-file-unterminated", kept(b"cd0/media", medium=KEPT_CHANGED,
                                                readonly=1, file=b"A" * 4096))
    variant("bug-media-format-unterminated", kept(b"cd0/media", medium=KEPT_CHANGED,
                                                  readonly=1, fmt=b"q" * 16, file=b"new.iso"))
    variant("bug-media-file-empty", kept(b"cd0/media", medium=KEPT_CHANGED, readonly=1))
    variant("bug-media-file-outside", kept(b"sd0/media", medium=KEPT_CHANGED,
                                           file=b"/etc/passwd"))
    variant("bug-media-file-climbs", kept(b"sd0/media", medium=KEPT_CHANGED, file=b".."))
    variant("bug-media-file-missing", kept(b"cd0/media", medium=KEPT_CHANGED, readonly=1,
                                           file=b"no-such.iso"))
    variant("bug-media-format-unknown", kept(b"cd0/media", medium=KEPT_CHANGED, readonly=1,
                                             fmt=b"vmdk", file=b"new.iso"))
    variant("bug-media-wrong-format", kept(b"sd0/media", medium=KEPT_CHANGED, fmt=b"qcow2",
                                           file=b"hd.raw"))
    variant("bug-media-size-not-the-files", kept(b"sd2/media", ua=UA_NONE, size=512))
    variant("bug-media-unit-attentions-junk", kept(b"sd0/media", ua=b"\xff\xff\xff",
                                                   ua_next=b"\x06\x00\x00"))


def write(outdir, harness, entries):
    if not entries:
        return
    d = os.path.join(outdir, harness)
    os.makedirs(d, exist_ok=True)
    for name, data in entries.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    crashers = os.path.join(os.path.dirname(os.path.abspath(outdir)), "crashers")
    write(crashers, "lsi", lsi_open_crashers())
    write(outdir, "lsi", lsi_entries())
    write(outdir, "qcow2", qcow2_entries())
    write(outdir, "mpqemu", mpqemu_entries())
    write(outdir, "vfio-user", vfio_entries())
    write(outdir, "qmp", qmp_entries())
    write(outdir, "hmp", hmp_entries())
    write(outdir, "relay", relay_entries())
    write(outdir, "nbd-server", nbd_entries())
    write(outdir, "checkpoint", checkpoint_entries(os.path.join(here, "corpus")))


if __name__ == "__main__":
    main()
