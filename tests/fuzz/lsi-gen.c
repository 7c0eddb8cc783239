// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The encodings are the LSI53C895A data manual's (chapter 6), as
 * src/hw/lsi53c895a.c decodes them.  Every choice is the fuzzer's; the
 * tables only make the useful choices likely.
 */
#include "lsi-gen.h"

#include <string.h>

enum {
    MAX_INSNS = 32,         /* a random program's longest */
    PHASE_DATA_OUT = 0, PHASE_DATA_IN = 1, PHASE_COMMAND = 2, PHASE_STATUS = 3,
    PHASE_MSG_OUT = 6, PHASE_MSG_IN = 7,
};

/* Registers a driver, a SCRIPTS program or a hostile move would touch. */
static const uint8_t interesting_regs[] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x14, 0x15, 0x16, 0x17, 0x1a, 0x1b, 0x1c, 0x20, 0x21, 0x22, 0x24, 0x27,
    0x28, 0x2c, 0x2f, 0x30, 0x34, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x40, 0x41, 0x42, 0x43,
    0x48, 0x49, 0x4a, 0x4d, 0x4e, 0x4f, 0x50, 0x56, 0x57, 0x58, 0x5c, 0x60, 0xa0, 0xb4,
    0xb8, 0xc0, 0xc4, 0xc8, 0xd4, 0xdc,
};

/* The ones whose writes change the chip's state under a move: reset, abort, start, connect. */
static const uint8_t hot_regs[] = { 0x14, 0x01, 0x2f, 0x3b, 0x10, 0x24, 0x28, 0x38 };

unsigned lsi_gen_register(struct lsi_gen *g)
{
    uint8_t pick = fi_u8(g->in);
    unsigned reg;

    if (pick >= 0xf0) {
        return fi_u8(g->in);
    }
    reg = pick < 0x40 ? hot_regs[pick % sizeof(hot_regs)]
                      : interesting_regs[pick % sizeof(interesting_regs)];
    /* A few bytes before it: a move's later bytes land on it. */
    if (pick & 0x80) {
        reg -= fi_u8(g->in) & 7;
    }
    return reg & 0xff;
}

uint32_t lsi_gen_address(struct lsi_gen *g)
{
    uint8_t sel = fi_u8(g->in);

    switch (sel % 10) {
    case 0: case 1: case 2: case 3: case 4:
        return LSI_RAM_BASE + fi_u16(g->in) % LSI_RAM_BYTES;
    case 5:
        return LSI_RAM_BASE + fi_u32(g->in) % LSI_RAM_BYTES;
    case 6:
        return LSI_MMIO_BASE + lsi_gen_register(g);
    case 7:
        return LSI_SRAM_BASE + fi_u16(g->in) % LSI_SRAM_BYTES;
    case 8:
        return LSI_IO_BASE + lsi_gen_register(g);
    default:
        return fi_u32(g->in);
    }
}

/*
 * Where a phase's bytes go (a block move's data, status, message): guest
 * RAM mostly, else a register whose write changes the chip's state under
 * the move (reset, abort, connection, start) -- or a few bytes before one,
 * so that a later byte of the move lands on it -- the SCRIPTS RAM, anything.
 */
uint32_t lsi_gen_phase_address(struct lsi_gen *g)
{
    static const uint8_t write_targets[] = { 0x14, 0x01, 0x3b, 0x2f, 0x49, 0x38, 0x10, 0x24 };
    uint8_t sel = fi_u8(g->in), b;
    unsigned reg;

    switch (sel % 8) {
    case 0: case 1: case 2: case 3: case 4:
        return LSI_RAM_BASE + fi_u16(g->in) % LSI_RAM_BYTES;
    case 5:
        b = fi_u8(g->in);
        reg = write_targets[b % sizeof(write_targets)];
        if (b & 0x80) {
            reg -= (b >> 3) & 7;
        }
        return LSI_MMIO_BASE + (reg & 0xff);
    case 6:
        return LSI_SRAM_BASE + fi_u16(g->in) % LSI_SRAM_BYTES;
    default:
        return lsi_gen_address(g);
    }
}

uint32_t lsi_gen_code_address(struct lsi_gen *g)
{
    uint16_t at = fi_u16(g->in);

    /* Dword-aligned: SCRIPTS fetch from where DSP points, aligned or not. */
    if (at & 1) {
        return LSI_SRAM_BASE + (at >> 1) % LSI_SRAM_BYTES / 4 * 4;
    }
    return LSI_RAM_BASE + (at >> 1) % (LSI_RAM_BYTES / 2) / 4 * 4;
}

/* --- instructions -------------------------------------------------------------- */

struct insn {
    uint32_t w[3];
    unsigned nwords;
    int label;          /* w[1] is the address of this instruction index; -1: none */
    bool relative;      /* ... as a 24-bit offset from the next instruction */
    int named;          /* a recipe's label, resolved to an index; -1: none */
};

static uint32_t byte_count(struct lsi_gen *g)
{
    static const uint64_t counts[] = {
        0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 18, 36, 255, 256, 512, 1024, 2048, 4096, 8192,
        65536, 0xffffff,
    };
    uint8_t pick = fi_u8(g->in);

    return pick >= 0xe0 ? fi_u32(g->in) & 0xffffff : (uint32_t)counts[pick % 22];
}

static int label(struct lsi_gen *g)
{
    return fi_u8(g->in) % MAX_INSNS;
}

static void block_move(struct lsi_gen *g, struct insn *i)
{
    uint8_t b = fi_u8(g->in);
    uint32_t phase = b & 7;

    switch ((b >> 3) % 3) {
    case 0:                                         /* direct */
        i->w[0] = 0x08000000u | phase << 24 | byte_count(g);
        i->w[1] = lsi_gen_phase_address(g);
        break;
    case 1:                                         /* table indirect: DSA-relative entry */
        i->w[0] = 0x18000000u | phase << 24;
        i->w[1] = fi_u8(g->in) & 0xf8;
        break;
    default:                                        /* indirect: the address is in memory */
        i->w[0] = 0x28000000u | phase << 24 | byte_count(g);
        i->w[1] = lsi_gen_address(g);
        break;
    }
}

static void io_insn(struct lsi_gen *g, struct insn *i)
{
    uint8_t b = fi_u8(g->in);
    uint32_t opcode = b % 5, flags = fi_u8(g->in);

    i->w[0] = 0x40000000u | opcode << 27;
    switch (opcode) {
    case 0:                                         /* SELECT [ATN] id, alt */
        if (flags & 1) {
            i->w[0] |= 1u << 25 | (fi_u8(g->in) & 0xf8);      /* id from the DSA table */
        } else {
            i->w[0] |= (uint32_t)(fi_u8(g->in) % 8) << 16;
        }
        i->w[0] |= (flags & 2) ? 1u << 3 : 0;
        break;
    case 2:                                         /* WAIT RESELECT, alt */
        break;
    case 3:                                         /* SET / CLEAR ATN, ACK, carry */
    case 4:
        i->w[0] |= (flags & 1 ? 1u << 3 : 0) | (flags & 2 ? 1u << 6 : 0) |
                   (flags & 4 ? 1u << 10 : 0);
        return;
    default:                                        /* WAIT DISCONNECT */
        return;
    }
    i->relative = flags & 4;
    if (i->relative) {
        i->w[0] |= 1u << 26;
    }
    i->label = label(g);
}

static void register_insn(struct lsi_gen *g, struct insn *i)
{
    uint8_t b = fi_u8(g->in);
    uint32_t opcode = 5 + b % 3, op = (b >> 2) & 7, reg = lsi_gen_register(g);

    i->w[0] = 0x40000000u | opcode << 27 | op << 24 | (reg & 0x7f) << 16 |
              (uint32_t)fi_u8(g->in) << 8 | (reg & 0x80) | ((b & 0x20) ? 1u << 23 : 0);
}

static void transfer_control(struct lsi_gen *g, struct insn *i)
{
    uint8_t b = fi_u8(g->in), cond = fi_u8(g->in);
    uint32_t type = b % 6;      /* JUMP CALL RETURN INT, and two invalid ones */

    if (type > 3) {
        type += 2;
    }
    i->w[0] = 0x80000000u | type << 27 | (uint32_t)(cond & 7) << 24;
    i->w[0] |= (cond & 0x08 ? 1u << 19 : 0)        /* jump if true */
             | (cond & 0x10 ? 1u << 17 : 0)        /* compare phase */
             | (cond & 0x20 ? 1u << 16 : 0)        /* WHEN: wait for a valid phase */
             | (cond & 0x40 ? 1u << 18 : 0)        /* compare data */
             | (cond & 0x80 ? 1u << 21 : 0)        /* test carry */
             | (b & 0x40 ? 1u << 20 : 0);          /* INTFLY */
    if (cond & 0x40) {
        uint8_t data = fi_u8(g->in), mask = fi_u8(g->in);

        i->w[0] |= (uint32_t)mask << 8 | data;
    }
    if (!(cond & 0xf8) && fi_bool(g->in)) {
        i->w[0] |= 1u << 19;                        /* unconditional */
    }
    if (type == 3) {
        i->w[1] = fi_u8(g->in);                     /* the interrupt vector */
        return;
    }
    i->relative = b & 0x80;
    if (i->relative) {
        i->w[0] |= 1u << 23;
    }
    if (b & 0x20) {
        i->w[1] = lsi_gen_address(g);
    } else {
        i->label = label(g);
    }
}

static void memory_insn(struct lsi_gen *g, struct insn *i)
{
    uint8_t b = fi_u8(g->in);

    if (b & 1) {                                    /* MEMORY MOVE count, src, dst */
        i->w[0] = 0xc0000000u | (byte_count(g) & 0xfff);
        i->w[1] = lsi_gen_address(g);
        i->w[2] = lsi_gen_address(g);
        i->nwords = 3;
        return;
    }
    /* LOAD / STORE reg, n bytes, [DSA-relative] address */
    i->w[0] = 0xe0000000u | (b & 2 ? 1u << 24 : 0) | (uint32_t)lsi_gen_register(g) << 16 |
              (b >> 2) % 6;
    if (b & 0x40) {
        i->w[0] |= 1u << 28;
        i->w[1] = fi_u8(g->in);
    } else {
        i->w[1] = lsi_gen_address(g);
    }
}

static void one_insn(struct lsi_gen *g, struct insn *i)
{
    uint8_t kind = fi_u8(g->in);

    *i = (struct insn){ .nwords = 2, .label = -1, .named = -1 };
    switch (kind % 8) {
    case 0: case 1:
        block_move(g, i);
        break;
    case 2:
        io_insn(g, i);
        break;
    case 3:
        register_insn(g, i);
        break;
    case 4: case 5:
        transfer_control(g, i);
        break;
    case 6:
        memory_insn(g, i);
        break;
    default:
        i->w[0] = fi_u32(g->in);
        i->w[1] = fi_u32(g->in);
        break;
    }
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Resolves labels to addresses and stores the program at base. */
static void emit(struct lsi_gen *g, uint32_t base, struct insn *insns, unsigned n)
{
    uint32_t at[LSI_GEN_MAX_INSNS + 1], pos = base;
    uint8_t code[LSI_GEN_MAX_INSNS * 12];
    size_t len = 0;

    for (unsigned k = 0; k < n; k++) {
        at[k] = pos;
        pos += 4 * insns[k].nwords;
    }
    at[n] = pos;
    memcpy(g->labels, at, (n + 1) * sizeof(at[0]));
    g->n_labels = n + 1;
    g->n_moves = 0;
    for (unsigned k = 0; k < n; k++) {
        struct insn *i = &insns[k];

        if (!(i->w[0] >> 30)) {
            g->moves[g->n_moves++] = at[k];
        }
        if (i->label >= 0) {
            uint32_t target = at[(unsigned)i->label % (n + 1)];

            i->w[1] = i->relative ? (target - (at[k] + 8)) & 0xffffff : target;
        }
        for (unsigned w = 0; w < i->nwords; w++, len += 4) {
            put32(code + len, i->w[w]);
        }
    }
    g->write(g->opaque, base, code, len);
}

void lsi_gen_script(struct lsi_gen *g, uint32_t base)
{
    struct insn insns[MAX_INSNS];
    unsigned n = 1 + fi_u8(g->in) % MAX_INSNS;

    for (unsigned k = 0; k < n; k++) {
        one_insn(g, &insns[k]);
    }
    emit(g, base, insns, n);
}

/* --- a whole command ---------------------------------------------------------- */

/* The DSA table of the recipe: {count, address} per phase, as Linux's driver keeps. */
enum { T_SELECT = 0, T_MSGOUT = 8, T_CMD = 16, T_DATA = 24, T_STATUS = 32, T_MSGIN = 40,
       T_SIZE = 48 };

enum recipe_label { R_DISPATCH, R_MSG_OUT, R_COMMAND, R_DATA_IN, R_DATA_OUT, R_STATUS,
                    R_MSG_IN, R_DISCONNECT, R_DONE, R_SIGNALLED, R_LABELS };

static void add(struct insn *insns, unsigned *n, uint32_t w0, uint32_t w1, int to)
{
    insns[(*n)++] = (struct insn){ .w = { w0, w1 }, .nwords = 2, .label = -1, .named = to };
}

/* One of the fuzzer's instructions, where the recipe's twist says. */
static void maybe_twist(struct lsi_gen *g, struct insn *insns, unsigned *n, uint8_t twist,
                        unsigned bit)
{
    if (twist & bit) {
        one_insn(g, &insns[(*n)++]);
    }
}

/*
 * The program of src/client/lsi.c: select, then a dispatcher that follows
 * whatever phase the target asserts, with the fuzzer's twists in between.
 */
static unsigned recipe_program(struct lsi_gen *g, struct insn *insns, unsigned *at)
{
    unsigned n = 0;
    uint8_t twist = fi_u8(g->in);

    if (!(twist & 0x20)) {
        twist &= 1;     /* half the recipes run as a driver wrote them */
    }

    add(insns, &n, 0x43000000u | (twist & 1 ? 1u << 3 : 0) | T_SELECT, 0, -1);
    maybe_twist(g, insns, &n, twist, 2);
    at[R_DISPATCH] = n;
    add(insns, &n, 0x810b0000u, 0, R_DATA_IN);             /* JUMP WHEN DATA IN */
    add(insns, &n, 0x800b0000u, 0, R_DATA_OUT);            /* JUMP WHEN DATA OUT */
    add(insns, &n, 0x830b0000u, 0, R_STATUS);              /* JUMP WHEN STATUS */
    add(insns, &n, 0x870b0000u, 0, R_MSG_IN);              /* JUMP WHEN MSG IN */
    add(insns, &n, 0x820b0000u, 0, R_COMMAND);             /* JUMP WHEN COMMAND */
    add(insns, &n, 0x860b0000u, 0, R_MSG_OUT);             /* JUMP WHEN MSG OUT */
    add(insns, &n, 0x98080000u, 0x10, -1);                 /* INT: unexpected phase */
    at[R_MSG_OUT] = n;
    add(insns, &n, 0x1e000000u, T_MSGOUT, -1);             /* MOVE FROM T_MSGOUT, WHEN MSG OUT */
    add(insns, &n, 0x80080000u, 0, R_DISPATCH);
    at[R_COMMAND] = n;
    add(insns, &n, 0x1a000000u, T_CMD, -1);
    maybe_twist(g, insns, &n, twist, 4);
    add(insns, &n, 0x80080000u, 0, R_DISPATCH);
    at[R_DATA_IN] = n;
    add(insns, &n, 0x19000000u, T_DATA, -1);
    add(insns, &n, 0x80080000u, 0, R_DISPATCH);
    at[R_DATA_OUT] = n;
    add(insns, &n, 0x18000000u, T_DATA, -1);
    add(insns, &n, 0x80080000u, 0, R_DISPATCH);
    at[R_STATUS] = n;
    add(insns, &n, 0x1b000000u, T_STATUS, -1);
    maybe_twist(g, insns, &n, twist, 8);
    add(insns, &n, 0x80080000u, 0, R_DISPATCH);
    at[R_MSG_IN] = n;
    add(insns, &n, 0x1f000000u, T_MSGIN, -1);
    add(insns, &n, 0x800c0000u, 0, R_DONE);                /* JUMP IF 0x00: COMMAND COMPLETE */
    add(insns, &n, 0x800c0004u, 0, R_DISCONNECT);          /* JUMP IF 0x04: DISCONNECT */
    add(insns, &n, 0x60000040u, 0, -1);                    /* CLEAR ACK */
    add(insns, &n, 0x80080000u, 0, R_DISPATCH);
    at[R_DISCONNECT] = n;
    add(insns, &n, 0x60000040u, 0, -1);
    add(insns, &n, 0x48000000u, 0, -1);                    /* WAIT DISCONNECT */
    add(insns, &n, 0x50000000u, 0, R_SIGNALLED);           /* WAIT RESELECT, SIGP: alt */
    add(insns, &n, 0x80080000u, 0, R_DISPATCH);
    at[R_DONE] = n;
    add(insns, &n, 0x60000040u, 0, -1);
    add(insns, &n, 0x48000000u, 0, -1);
    add(insns, &n, 0x98080000u, 0x01, -1);                 /* INT: done */
    at[R_SIGNALLED] = n;
    add(insns, &n, 0x98080000u, 0x02, -1);
    maybe_twist(g, insns, &n, twist, 16);
    return n;
}

/* Turns recipe labels (indices into 'at') into instruction indices. */
static void resolve_recipe_labels(struct insn *insns, unsigned n, const unsigned *at)
{
    for (unsigned k = 0; k < n; k++) {
        if (insns[k].named >= 0) {
            insns[k].label = (int)at[insns[k].named];
        }
    }
}

static void table_entry(uint8_t *t, unsigned off, uint32_t count, uint32_t addr)
{
    put32(t + off, count);
    put32(t + off + 4, addr);
}

/* The bytes a recipe moves in MESSAGE OUT and COMMAND, where its table says. */
/*
 * Where a driver keeps a command's control blocks (the DSA table, message
 * and CDB bytes): slots of its own in guest RAM mostly, one area per kind
 * so that they do not overlap, else anywhere.
 */
static uint32_t block_address(struct lsi_gen *g, uint32_t area, uint32_t stride)
{
    uint8_t sel = fi_u8(g->in);

    return sel >= 0xe0 ? lsi_gen_address(g) : LSI_RAM_BASE + area + sel % 64 * stride;
}

static void recipe_data(struct lsi_gen *g, uint8_t *table)
{
    uint8_t msg[16], cdb[16];
    size_t msg_len = lsi_gen_msgout(g, msg, sizeof(msg)), cdb_len = lsi_gen_cdb(g, cdb);
    uint32_t msg_at = block_address(g, 0x5000, 16), cdb_at = block_address(g, 0x5400, 16);
    uint32_t data_len, msgin_len;

    g->write(g->opaque, msg_at, msg, msg_len);
    g->write(g->opaque, cdb_at, cdb, cdb_len);
    table_entry(table, T_SELECT, (fi_u8(g->in) % 8) << 16, 0);
    table_entry(table, T_MSGOUT, (uint32_t)msg_len, msg_at);
    table_entry(table, T_CMD, (uint32_t)cdb_len, cdb_at);
    /* One value per statement: the order the bytes are read in is fixed. */
    data_len = byte_count(g);
    table_entry(table, T_DATA, data_len, lsi_gen_phase_address(g));
    table_entry(table, T_STATUS, 1, lsi_gen_phase_address(g));
    /* MESSAGE IN a byte at a time mostly, as drivers move it (each byte is looked at). */
    msgin_len = fi_u8(g->in);
    msgin_len = msgin_len < 0xc0 ? 1 : 1 + msgin_len % 8;
    table_entry(table, T_MSGIN, msgin_len, lsi_gen_phase_address(g));
}

uint32_t lsi_gen_recipe(struct lsi_gen *g, uint32_t base)
{
    struct insn insns[LSI_GEN_MAX_INSNS];
    unsigned at[R_LABELS], n;
    uint8_t table[T_SIZE];
    uint32_t dsa;

    n = recipe_program(g, insns, at);
    resolve_recipe_labels(insns, n, at);
    emit(g, base, insns, n);
    recipe_data(g, table);
    dsa = block_address(g, 0x4000, 64) & ~3u;
    g->write(g->opaque, dsa, table, sizeof(table));
    return dsa;
}

/* --- commands, messages, parameters ------------------------------------------ */

static const uint8_t opcodes[] = {
    0x00, 0x03, 0x08, 0x0a, 0x12, 0x15, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x2a, 0x2e, 0x2f,
    0x35, 0x41, 0x42, 0x43, 0x46, 0x4a, 0x55, 0x5a, 0x88, 0x8a, 0x8e, 0x8f, 0x91, 0x93,
    0x9e, 0xa0, 0xa8, 0xaa, 0xae, 0xaf,
};

static size_t cdb_length(uint8_t op)
{
    static const uint8_t by_group[8] = { 6, 10, 10, 6, 16, 12, 6, 6 };

    return by_group[op >> 5];
}

static void put_be(uint8_t *p, uint64_t v, unsigned bytes)
{
    while (bytes--) {
        p[bytes] = (uint8_t)v;
        v >>= 8;
    }
}

/* LBA and length where the targets look for them, small enough to be in range often. */
static void sane_fields(struct lsi_gen *g, uint8_t *cdb)
{
    uint64_t lba = fi_u8(g->in) & 0x7f, n = fi_u8(g->in) % 17;

    switch (cdb_length(cdb[0])) {
    case 6:
        put_be(cdb + 1, lba, 3);
        cdb[4] = (uint8_t)n;
        break;
    case 10:
        put_be(cdb + 2, lba, 4);
        put_be(cdb + 7, n, 2);
        break;
    case 12:
        put_be(cdb + 2, lba, 4);
        put_be(cdb + 6, n, 4);
        break;
    default:
        put_be(cdb + 2, lba, 8);
        put_be(cdb + 10, n, 4);
        break;
    }
}

/* READ and WRITE: the commands with a disk transfer, a guest's most frequent. */
static const uint8_t data_opcodes[] = { 0x08, 0x0a, 0x28, 0x2a, 0xa8, 0xaa, 0x88, 0x8a };

size_t lsi_gen_cdb(struct lsi_gen *g, uint8_t cdb[16])
{
    uint8_t pick = fi_u8(g->in), shape = fi_u8(g->in);

    fi_bytes(g->in, cdb, 16);
    if (pick < 0x60) {
        cdb[0] = data_opcodes[pick % sizeof(data_opcodes)];
    } else if (pick < 0xf0) {
        cdb[0] = opcodes[pick % sizeof(opcodes)];
    }
    if (shape & 1) {
        sane_fields(g, cdb);
    }
    if (shape & 2) {
        cdb[1] = (uint8_t)(shape & 0xf8);      /* FUA, BYTCHK, UNMAP, EVPD ... */
    }
    if (shape & 4) {
        /* Mostly short CDBs: the rest of COMMAND is not read. */
        memset(cdb + cdb_length(cdb[0]), 0, 16 - cdb_length(cdb[0]));
    }
    return cdb_length(cdb[0]);
}

size_t lsi_gen_msgout(struct lsi_gen *g, uint8_t *out, size_t cap)
{
    unsigned items = 1 + fi_u8(g->in) % 4;
    size_t n = 0;

    for (unsigned k = 0; k < items; k++) {
        uint8_t m[8], kind = fi_u8(g->in), a = fi_u8(g->in), b = fi_u8(g->in);
        size_t len = 1;

        switch (kind % 12) {
        case 0: case 1: case 2:                     /* IDENTIFY, disconnect privilege, LUN */
            m[0] = (uint8_t)(0x80 | (a & 0x40) | (a & 1 ? a & 7 : 0));
            break;
        case 3:                                     /* SIMPLE / HEAD / ORDERED queue tag */
            m[0] = (uint8_t)(0x20 + a % 3);
            m[1] = b;
            len = 2;
            break;
        case 4:                                     /* SDTR period, offset */
            memcpy(m, (uint8_t[]){ 0x01, 0x03, 0x01, a, b }, 5);
            len = 5;
            break;
        case 5:                                     /* WDTR width */
            memcpy(m, (uint8_t[]){ 0x01, 0x02, 0x03, a }, 4);
            len = 4;
            break;
        case 6:                                     /* PPR */
            memcpy(m, (uint8_t[]){ 0x01, 0x06, 0x04, a, 0, b, a & 1, 0 }, 8);
            len = 8;
            break;
        case 7:                                     /* an extended message of any shape */
            memcpy(m, (uint8_t[]){ 0x01, a, b }, 3);
            len = 3;
            break;
        case 8:                                     /* ABORT, BDR, ABORT TAG, CLEAR QUEUE */
            m[0] = (uint8_t[]){ 0x06, 0x0c, 0x0d, 0x0e }[a % 4];
            break;
        case 9:                                     /* NOP, REJECT, DISCONNECT */
            m[0] = (uint8_t[]){ 0x08, 0x07, 0x04 }[a % 3];
            break;
        default:
            m[0] = a;
            break;
        }
        if (n + len > cap) {
            break;
        }
        memcpy(out + n, m, len);
        n += len;
    }
    return n;
}

void lsi_gen_params(struct lsi_gen *g, uint32_t addr)
{
    uint8_t p[64] = { 0 };
    uint8_t kind = fi_u8(g->in);
    size_t len;

    switch (kind % 4) {
    case 0: {                                       /* UNMAP: header, descriptors */
        unsigned n = 1 + fi_u8(g->in) % 3;

        put_be(p, 6 + 16 * n, 2);
        put_be(p + 2, 16 * n, 2);
        for (unsigned k = 0; k < n; k++) {
            put_be(p + 8 + 16 * k, fi_u8(g->in) & 0x7f, 8);
            put_be(p + 16 + 16 * k, fi_u8(g->in) % 17, 4);
        }
        len = 8 + 16 * n;
        break;
    }
    case 1:                                         /* MODE SELECT(6): caching page */
        memcpy(p, (uint8_t[]){ 0, 0, 0, 0, 0x08, 0x12, (uint8_t)(fi_u8(g->in) & 0x04) }, 7);
        len = 4 + 20;
        break;
    case 2:                                         /* MODE SELECT(10): block descriptor */
        memcpy(p, (uint8_t[]){ 0, 0, 0, 0, 0, 0, 0, 8 }, 8);
        put_be(p + 12, fi_bool(g->in) ? 512 : 4096, 4);
        len = 16;
        break;
    default:
        len = fi_bytes(g->in, p, 1 + fi_u8(g->in) % sizeof(p));
        break;
    }
    g->write(g->opaque, addr, p, len);
}

uint32_t lsi_gen_restart_address(struct lsi_gen *g, uint32_t fallback)
{
    uint8_t pick = fi_u8(g->in);

    if ((pick & 1) && g->n_moves) {
        return g->moves[(pick >> 1) % g->n_moves];
    }
    return g->n_labels ? g->labels[(pick >> 1) % g->n_labels] : fallback;
}
