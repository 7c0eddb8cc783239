// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A minimal LSI53C8xx SCRIPTS driver, proxy side.  The encodings are the
 * chip's (LSI53C895A data manual, chapter 6); the program is ours:
 *
 *   select (table indirect, ATN) -> MSG OUT -> COMMAND
 *   -> DATA IN / DATA OUT (when the target asks) -> STATUS -> MSG IN
 *   -> clear ACK, wait for disconnect -> INT 0x1
 */
#include "client/mpqemu-lsi.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

enum {
    WORK_SIZE = 64 * 1024,
    SCRIPT_OFF = 0,             /* the program */
    CCB_OFF = 4096,             /* DSA: table entries */
    MSGOUT_OFF = 4352, CDB_OFF = 4368, STATUS_OFF = 4384, MSGIN_OFF = 4392,
    SENSE_OFF = 4416,

    /* DSA-relative table entries. */
    T_SELECT = 0, T_MSGOUT = 8, T_CMD = 16, T_DATA = 24, T_STATUS = 32, T_MSGIN = 40,

    PHASE_DATA_OUT = 0, PHASE_DATA_IN = 1, PHASE_COMMAND = 2, PHASE_STATUS = 3,
    PHASE_MSG_OUT = 6, PHASE_MSG_IN = 7,

    REG_DSTAT = 0x0c, REG_DSA = 0x10, REG_ISTAT = 0x14, REG_DBC = 0x24, REG_DSP = 0x2c,
    REG_DSPS = 0x30, REG_DIEN = 0x39, REG_SIEN0 = 0x40, REG_SIEN1 = 0x41,
    REG_SIST0 = 0x42, REG_SIST1 = 0x43, REG_CTEST2 = 0x1a, ISTAT_SIGP = 0x20,
    IRQ_TIMEOUT_MS = 10000,
};

/* Instruction words (the manual's encodings; Linux's sym53c8xx names them alike). */
#define SEL_TBL_ATN(off)        (0x43000000u | (off))
#define MOVE_TBL(phase)         (0x18000000u | (uint32_t)(phase) << 24)   /* 2nd word: DSA offset */
#define JUMP                    0x80080000u
#define JUMP_WHEN(phase)        (0x800b0000u | (uint32_t)(phase) << 24)
#define JUMP_IF_DATA(d, m)      (0x800c0000u | (uint32_t)((m) ^ 0xff) << 8 | (d))
#define CLEAR_ACK               0x60000040u
#define WAIT_DISCONNECT         0x48000000u
#define WAIT_RESELECT           0x50000000u
#define INT                     0x98080000u

enum { INT_DONE = 0x1, INT_BAD_PHASE = 0x10, INT_BAD_MESSAGE = 0x11, INT_SIGNALLED = 0x12,
       INT_DISCONNECTED = 0x2, INT_RESELECTED = 0x3 };

#define MOVE_ABS(phase, count)  (0x08000000u | (uint32_t)(phase) << 24 | (count))

/* The tagged program lives after the simple one; its control blocks after that. */
enum {
    QSCRIPT_OFF = 1024, QMSG_OFF = 2048, QCCB_OFF = 8192, QCCB_SIZE = 64, QMAX = 32,
    /* A control block holds the table entries at the T_ offsets, then: */
    Q_MSGOUT_BYTES = 40, Q_CDB = 44, Q_STATUS_BYTE = 60,
};

struct mpq_lsi {
    struct mpq_dev *d;
    uint8_t *host;
    uint64_t gpa;
    uint32_t dispatch;          /* program offset of the phase dispatcher */
    uint32_t q_start, q_dispatch, q_idle;   /* the tagged program's entry points */
    bool idle;                  /* SCRIPTS wait for reselection: still running */
};

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);       /* SCRIPTS are little-endian, as is the host */
}

/* A tiny assembler: instructions, and labels patched once known. */
struct prog {
    uint32_t w[96];
    unsigned n;
    uint32_t base;
};

/* Labels of both programs. */
enum label { L_START, L_DISPATCH, L_DATA_IN, L_DATA_OUT, L_STATUS, L_MSG_IN, L_COMPLETE,
             L_DISCONNECT, L_TAG, L_ACK, L_IDENT, L_RESELECTED, L_IDLE, L_SIGNALLED, L_COUNT };

static void emit(struct prog *p, uint32_t insn, uint32_t arg)
{
    p->w[p->n++] = insn;
    p->w[p->n++] = arg;
}

static void emit_jump(struct prog *p, uint32_t insn, unsigned to, unsigned fix[][2],
                      unsigned *nfix)
{
    fix[*nfix][0] = p->n + 1;
    fix[*nfix][1] = to;
    (*nfix)++;
    emit(p, insn, 0);
}

/*
 * What both programs share: select (going to 'select_alt' if reselected
 * meanwhile, or nowhere), MESSAGE OUT, COMMAND, then a dispatcher that
 * follows the target's phase to the data moves, the status, or L_MSG_IN,
 * and the ends of message handling: L_ACK (go on) and L_COMPLETE (done).
 */
static void emit_command(struct prog *p, uint32_t *label, int select_alt, unsigned fix[][2],
                         unsigned *nfix)
{
    label[L_START] = p->n;
    if (select_alt >= 0) {
        emit_jump(p, SEL_TBL_ATN(T_SELECT), (unsigned)select_alt, fix, nfix);
    } else {
        emit(p, SEL_TBL_ATN(T_SELECT), 0);
    }
    emit(p, MOVE_TBL(PHASE_MSG_OUT), T_MSGOUT);
    emit(p, MOVE_TBL(PHASE_COMMAND), T_CMD);
    label[L_DISPATCH] = p->n;
    emit_jump(p, JUMP_WHEN(PHASE_DATA_IN), L_DATA_IN, fix, nfix);
    emit_jump(p, JUMP_WHEN(PHASE_DATA_OUT), L_DATA_OUT, fix, nfix);
    emit_jump(p, JUMP_WHEN(PHASE_STATUS), L_STATUS, fix, nfix);
    emit_jump(p, JUMP_WHEN(PHASE_MSG_IN), L_MSG_IN, fix, nfix);
    emit(p, INT, INT_BAD_PHASE);
    label[L_DATA_IN] = p->n;
    emit(p, MOVE_TBL(PHASE_DATA_IN), T_DATA);
    emit_jump(p, JUMP, L_DISPATCH, fix, nfix);
    label[L_DATA_OUT] = p->n;
    emit(p, MOVE_TBL(PHASE_DATA_OUT), T_DATA);
    emit_jump(p, JUMP, L_DISPATCH, fix, nfix);
    label[L_STATUS] = p->n;
    emit(p, MOVE_TBL(PHASE_STATUS), T_STATUS);
    emit_jump(p, JUMP, L_DISPATCH, fix, nfix);
    label[L_ACK] = p->n;                            /* a message taken: on with the phases */
    emit(p, CLEAR_ACK, 0);
    emit_jump(p, JUMP, L_DISPATCH, fix, nfix);
    label[L_COMPLETE] = p->n;                       /* COMMAND COMPLETE: done */
    emit(p, CLEAR_ACK, 0);
    emit(p, WAIT_DISCONNECT, 0);
    emit(p, INT, INT_DONE);
}

/* Patches the jumps, writes the program out; returns nothing, labels stay in 'label'. */
static void link_program(struct prog *p, const uint32_t *label, unsigned fix[][2], unsigned nfix,
                         uint8_t *out)
{
    for (unsigned i = 0; i < nfix; i++) {
        p->w[fix[i][0]] = p->base + 4 * label[fix[i][1]];
    }
    for (unsigned i = 0; i < p->n; i++) {
        put32(out + 4 * i, p->w[i]);
    }
}

/*
 * select -> MSG OUT (IDENTIFY) -> COMMAND, then a dispatcher that follows
 * the target: data moves, status, and the messages of completion,
 * disconnection (SAVE DATA POINTER, DISCONNECT, then WAIT RESELECT) and
 * reselection (IDENTIFY, a queue tag).
 */
static uint32_t assemble(uint8_t *out, uint32_t base)
{
    struct prog p = { .base = base };
    uint32_t label[L_COUNT];
    unsigned fix[32][2], nfix = 0;

    emit_command(&p, label, -1, fix, &nfix);
    label[L_MSG_IN] = p.n;
    emit(&p, MOVE_TBL(PHASE_MSG_IN), T_MSGIN);
    emit_jump(&p, JUMP_IF_DATA(0x00, 0xff), L_COMPLETE, fix, &nfix);    /* COMMAND COMPLETE */
    emit_jump(&p, JUMP_IF_DATA(0x04, 0xff), L_DISCONNECT, fix, &nfix);  /* DISCONNECT */
    emit_jump(&p, JUMP_IF_DATA(0x02, 0xff), L_ACK, fix, &nfix);         /* SAVE DATA POINTER */
    emit_jump(&p, JUMP_IF_DATA(0x80, 0x80), L_ACK, fix, &nfix);         /* IDENTIFY */
    emit_jump(&p, JUMP_IF_DATA(0x20, 0xff), L_TAG, fix, &nfix);         /* SIMPLE QUEUE TAG */
    emit(&p, INT, INT_BAD_MESSAGE);
    label[L_TAG] = p.n;
    emit(&p, CLEAR_ACK, 0);
    emit(&p, MOVE_TBL(PHASE_MSG_IN), T_MSGIN);                          /* the tag byte */
    emit_jump(&p, JUMP, L_ACK, fix, &nfix);
    label[L_DISCONNECT] = p.n;
    emit(&p, CLEAR_ACK, 0);
    emit(&p, WAIT_DISCONNECT, 0);
    /* Reselection goes on at the dispatcher; a host signal goes to INT. */
    emit_jump(&p, WAIT_RESELECT, L_SIGNALLED, fix, &nfix);
    emit_jump(&p, JUMP, L_DISPATCH, fix, &nfix);
    label[L_SIGNALLED] = p.n;
    emit(&p, INT, INT_SIGNALLED);
    link_program(&p, label, fix, nfix, out);
    return 4 * label[L_DISPATCH];
}

/*
 * The tagged program: every disconnection, reselection and completion
 * interrupts the host, which chooses what runs next (a new command at
 * q_start, a reselected one at q_dispatch, or waiting at q_idle).
 */
static void assemble_tagged(struct mpq_lsi *l)
{
    struct prog p = { .base = (uint32_t)(l->gpa + QSCRIPT_OFF) };
    uint32_t msg = (uint32_t)(l->gpa + QMSG_OFF), label[L_COUNT];
    unsigned fix[32][2], nfix = 0;

    emit_command(&p, label, L_RESELECTED, fix, &nfix);
    label[L_MSG_IN] = p.n;
    emit(&p, MOVE_ABS(PHASE_MSG_IN, 1), msg);
    emit_jump(&p, JUMP_IF_DATA(0x00, 0xff), L_COMPLETE, fix, &nfix);
    emit_jump(&p, JUMP_IF_DATA(0x04, 0xff), L_DISCONNECT, fix, &nfix);
    emit_jump(&p, JUMP_IF_DATA(0x02, 0xff), L_ACK, fix, &nfix);
    emit_jump(&p, JUMP_IF_DATA(0x80, 0x80), L_IDENT, fix, &nfix);
    emit(&p, INT, INT_BAD_MESSAGE);
    label[L_DISCONNECT] = p.n;
    emit(&p, CLEAR_ACK, 0);
    emit(&p, WAIT_DISCONNECT, 0);
    emit(&p, INT, INT_DISCONNECTED);
    label[L_IDENT] = p.n;
    emit(&p, CLEAR_ACK, 0);
    emit(&p, MOVE_ABS(PHASE_MSG_IN, 2), msg + 1);   /* SIMPLE QUEUE TAG, tag */
    emit(&p, CLEAR_ACK, 0);
    emit(&p, INT, INT_RESELECTED);
    label[L_RESELECTED] = p.n;                      /* reselected while selecting */
    emit_jump(&p, JUMP, L_MSG_IN, fix, &nfix);
    label[L_IDLE] = p.n;
    emit_jump(&p, WAIT_RESELECT, L_SIGNALLED, fix, &nfix);
    emit_jump(&p, JUMP, L_MSG_IN, fix, &nfix);
    label[L_SIGNALLED] = p.n;
    emit(&p, INT, INT_SIGNALLED);
    link_program(&p, label, fix, nfix, l->host + QSCRIPT_OFF);
    l->q_start = p.base + 4 * label[L_START];
    l->q_dispatch = p.base + 4 * label[L_DISPATCH];
    l->q_idle = p.base + 4 * label[L_IDLE];
}

struct mpq_lsi *mpq_lsi_new(struct mpq_dev *d, struct mpq_ram *ram, uint64_t work_offset,
                            char **err)
{
    struct mpq_lsi *l;

    if (work_offset > ram->size || ram->size - work_offset < WORK_SIZE) {
        error_setf(err, "the LSI work area does not fit in guest RAM");
        return NULL;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        error_setf(err, "out of memory");
        return NULL;
    }
    l->d = d;
    l->host = ram->host + work_offset;
    l->gpa = ram->gpa + work_offset;
    l->dispatch = assemble(l->host + SCRIPT_OFF, (uint32_t)(l->gpa + SCRIPT_OFF));
    assemble_tagged(l);
    /* Every interrupt source on: the driver decides what is an error. */
    if (mpq_bar_write(d, 1, REG_DIEN, 1, 0xff, err) < 0 ||
        mpq_bar_write(d, 1, REG_SIEN0, 1, 0xff, err) < 0 ||
        mpq_bar_write(d, 1, REG_SIEN1, 1, 0xff, err) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

void mpq_lsi_free(struct mpq_lsi *l)
{
    free(l);
}

static void table(struct mpq_lsi *l, uint32_t entry, uint32_t count, uint64_t gpa)
{
    put32(l->host + CCB_OFF + entry, count);
    put32(l->host + CCB_OFF + entry + 4, (uint32_t)gpa);
}

static uint64_t reg(struct mpq_lsi *l, unsigned off, unsigned size, char **err)
{
    uint64_t v = 0;

    if (mpq_bar_read(l->d, 1, off, size, &v, err) < 0) {
        return UINT64_MAX;
    }
    return v;
}

/*
 * SCRIPTS waiting for reselection are still running: a new DSP would be
 * ignored.  SIGP makes WAIT RESELECT take its alternate path, which
 * interrupts; reading CTEST2 clears SIGP again.
 */
static int leave_idle(struct mpq_lsi *l, char **err)
{
    uint64_t v;

    if (!l->idle) {
        return 0;
    }
    if (mpq_bar_write(l->d, 1, REG_ISTAT, 1, ISTAT_SIGP, err) < 0) {
        return -1;
    }
    if (mpq_intx_wait(l->d, IRQ_TIMEOUT_MS) <= 0) {
        error_setf(err, "SCRIPTS did not answer the signal");
        return -1;
    }
    v = reg(l, REG_ISTAT, 1, err);
    if ((v & 0x01) && (reg(l, REG_DSTAT, 1, err) & 0x04) &&
        reg(l, REG_DSPS, 4, err) == INT_SIGNALLED) {
        reg(l, REG_CTEST2, 1, err);
        mpq_intx_eoi(l->d);
        l->idle = false;
        return 0;
    }
    mpq_intx_eoi(l->d);
    error_setf(err, "unexpected answer to the signal (ISTAT 0x%02llx)", (unsigned long long)v);
    return -1;
}

/* Runs the program once; 0 when it reached INT DONE, 1 on a selection timeout. */
static int run(struct mpq_lsi *l, unsigned target, const uint8_t *msgout, size_t msgout_len,
               const uint8_t *cdb, size_t cdb_len, uint64_t data_gpa, uint32_t len,
               uint32_t *residual, char **err)
{
    uint64_t istat, dstat, sist0, sist1, dsps;
    int mismatches;

    *residual = 0;
    mismatches = 0;
    put32(l->host + CCB_OFF + T_SELECT, target << 16);
    memcpy(l->host + MSGOUT_OFF, msgout, msgout_len);
    memcpy(l->host + CDB_OFF, cdb, cdb_len);
    table(l, T_MSGOUT, (uint32_t)msgout_len, l->gpa + MSGOUT_OFF);
    table(l, T_CMD, (uint32_t)cdb_len, l->gpa + CDB_OFF);
    table(l, T_DATA, len, data_gpa);
    table(l, T_STATUS, 1, l->gpa + STATUS_OFF);
    table(l, T_MSGIN, 1, l->gpa + MSGIN_OFF);
    l->host[STATUS_OFF] = 0xff;
    if (leave_idle(l, err) < 0 ||
        mpq_bar_write(l->d, 1, REG_DSA, 4, l->gpa + CCB_OFF, err) < 0 ||
        mpq_bar_write(l->d, 1, REG_DSP, 4, l->gpa + SCRIPT_OFF, err) < 0) {
        return -1;
    }
    for (;;) {
        int w = mpq_intx_wait(l->d, IRQ_TIMEOUT_MS);

        if (w <= 0) {
            error_setf(err, "no interrupt from the controller within %d ms", IRQ_TIMEOUT_MS);
            return -1;
        }
        istat = reg(l, REG_ISTAT, 1, err);
        dstat = (istat & 0x01) ? reg(l, REG_DSTAT, 1, err) : 0;
        sist0 = (istat & 0x02) ? reg(l, REG_SIST0, 1, err) : 0;
        sist1 = (istat & 0x02) ? reg(l, REG_SIST1, 1, err) : 0;
        dsps = reg(l, REG_DSPS, 4, err);
        mpq_intx_eoi(l->d);
        if (istat == UINT64_MAX || dsps == UINT64_MAX) {
            return -1;
        }
        if (!(istat & 0x07)) {
            continue;           /* nothing pending: a spurious wakeup */
        }
        if (sist1 & 0x04) {
            return 1;           /* STO: selection timeout */
        }
        if ((dstat & 0x04) && dsps == INT_DONE) {
            return 0;
        }
        if ((sist0 & 0x80) && mismatches++ < 4) {
            /* Phase mismatch: a move ended early (a short transfer); follow the target. */
            *residual += (uint32_t)(reg(l, REG_DBC, 4, err) & 0xffffff);
            if (mpq_bar_write(l->d, 1, REG_DSP, 4, l->gpa + SCRIPT_OFF + l->dispatch,
                              err) < 0) {
                return -1;
            }
            continue;
        }
        error_setf(err, "unexpected interrupt: ISTAT 0x%02llx DSTAT 0x%02llx SIST0 0x%02llx "
                   "SIST1 0x%02llx DSPS 0x%llx", (unsigned long long)istat,
                   (unsigned long long)dstat, (unsigned long long)sist0,
                   (unsigned long long)sist1, (unsigned long long)dsps);
        return -1;
    }
}

int mpq_lsi_command(struct mpq_lsi *l, unsigned target, unsigned lun, const uint8_t *cdb,
                    size_t cdb_len, uint64_t data_gpa, uint32_t len,
                    struct mpq_scsi_result *res, char **err)
{
    uint8_t identify = (uint8_t)(0x80 | (lun & 7));
    uint32_t ignored;
    int r;

    memset(res, 0, sizeof(*res));
    if (cdb_len == 0 || cdb_len > 16) {
        error_setf(err, "a CDB has 1 to 16 bytes");
        return -1;
    }
    r = run(l, target, &identify, 1, cdb, cdb_len, data_gpa, len, &res->residual, err);
    if (r < 0) {
        return -1;
    }
    if (r == 1) {
        res->selection_timeout = true;
        return 0;
    }
    res->status = l->host[STATUS_OFF];
    if (res->status == 0x02) {
        uint8_t rs[6] = { 0x03, (uint8_t)(lun << 5), 0, 0, sizeof(res->sense), 0 };

        if (run(l, target, &identify, 1, rs, sizeof(rs), l->gpa + SENSE_OFF,
                sizeof(res->sense), &ignored, err) != 0) {
            return -1;
        }
        memcpy(res->sense, l->host + SENSE_OFF, sizeof(res->sense));
    }
    return 0;
}

/* --- tagged queueing ---------------------------------------------------- */

struct queue_state {
    struct mpq_scsi_cmd *cmds;
    size_t n, next, done;
    unsigned depth, in_flight;
    int slot_cmd[QMAX];         /* command index per tag, -1 when free */
    int starting;               /* tag being started, until it is selected */
};

static uint8_t *ccb(struct mpq_lsi *l, unsigned tag)
{
    return l->host + QCCB_OFF + QCCB_SIZE * tag;
}

static uint64_t ccb_gpa(struct mpq_lsi *l, unsigned tag)
{
    return l->gpa + QCCB_OFF + QCCB_SIZE * tag;
}

static int start_or_idle(struct mpq_lsi *l, struct queue_state *q, char **err)
{
    unsigned tag;

    if (q->next == q->n || q->in_flight == q->depth) {
        l->idle = true;
        return mpq_bar_write(l->d, 1, REG_DSP, 4, l->q_idle, err);
    }
    for (tag = 0; tag < QMAX && q->slot_cmd[tag] >= 0; tag++) {
    }
    {
        struct mpq_scsi_cmd *c = &q->cmds[q->next];
        uint8_t *b = ccb(l, tag);
        uint64_t g = ccb_gpa(l, tag);

        q->slot_cmd[tag] = (int)q->next++;
        q->in_flight++;
        q->starting = (int)tag;
        put32(b + T_SELECT, 0);                         /* target 0 */
        b[Q_MSGOUT_BYTES] = 0xc0;                       /* IDENTIFY, may disconnect */
        b[Q_MSGOUT_BYTES + 1] = 0x20;                   /* SIMPLE QUEUE TAG */
        b[Q_MSGOUT_BYTES + 2] = (uint8_t)tag;
        memcpy(b + Q_CDB, c->cdb, c->cdb_len);
        put32(b + T_MSGOUT, 3);
        put32(b + T_MSGOUT + 4, (uint32_t)(g + Q_MSGOUT_BYTES));
        put32(b + T_CMD, c->cdb_len);
        put32(b + T_CMD + 4, (uint32_t)(g + Q_CDB));
        put32(b + T_DATA, c->len);
        put32(b + T_DATA + 4, (uint32_t)c->data_gpa);
        put32(b + T_STATUS, 1);
        put32(b + T_STATUS + 4, (uint32_t)(g + Q_STATUS_BYTE));
        b[Q_STATUS_BYTE] = 0xff;
        return mpq_bar_write(l->d, 1, REG_DSA, 4, g, err) < 0 ? -1 :
               mpq_bar_write(l->d, 1, REG_DSP, 4, l->q_start, err);
    }
}

static int finish_tag(struct queue_state *q, unsigned tag, uint8_t status)
{
    if (tag >= QMAX || q->slot_cmd[tag] < 0) {
        return -1;
    }
    q->cmds[q->slot_cmd[tag]].status = status;
    q->slot_cmd[tag] = -1;
    q->in_flight--;
    q->done++;
    return 0;
}

static int on_queued_interrupt(struct mpq_lsi *l, struct queue_state *q, char **err)
{
    uint64_t istat = reg(l, REG_ISTAT, 1, err), dstat = 0, sist0 = 0, sist1 = 0, dsps, dsa;
    unsigned tag;

    if (istat & 0x01) {
        dstat = reg(l, REG_DSTAT, 1, err);
    }
    if (istat & 0x02) {
        sist0 = reg(l, REG_SIST0, 1, err);
        sist1 = reg(l, REG_SIST1, 1, err);
    }
    dsps = reg(l, REG_DSPS, 4, err);
    dsa = reg(l, REG_DSA, 4, err);
    mpq_intx_eoi(l->d);
    if (istat != UINT64_MAX && !(istat & 0x07)) {
        return 0;               /* nothing pending: a spurious wakeup, as drivers allow */
    }
    l->idle = false;            /* an interrupt stopped the SCRIPTS */
    if (istat == UINT64_MAX || dsps == UINT64_MAX || dsa == UINT64_MAX) {
        return -1;
    }
    tag = (unsigned)((dsa - (l->gpa + QCCB_OFF)) / QCCB_SIZE);
    if (sist1 & 0x04) {                             /* selection timeout */
        q->starting = -1;
        return finish_tag(q, tag, 0xff) < 0 ? -1 : start_or_idle(l, q, err);
    }
    if (sist0 & 0x80) {                             /* a short transfer: follow the target */
        return mpq_bar_write(l->d, 1, REG_DSP, 4, l->q_dispatch, err);
    }
    if (!(dstat & 0x04)) {
        error_setf(err, "unexpected interrupt: ISTAT 0x%02llx DSTAT 0x%02llx SIST0 0x%02llx",
                   (unsigned long long)istat, (unsigned long long)dstat,
                   (unsigned long long)sist0);
        return -1;
    }
    switch (dsps) {
    case INT_DONE:
        if ((int)tag == q->starting) {
            q->starting = -1;
        }
        if (finish_tag(q, tag, ccb(l, tag)[Q_STATUS_BYTE]) < 0) {
            error_setf(err, "completion for tag %u, which is not in flight", tag);
            return -1;
        }
        return start_or_idle(l, q, err);
    case INT_DISCONNECTED:
        q->starting = -1;
        return start_or_idle(l, q, err);
    case INT_RESELECTED:
        if (q->starting >= 0) {
            /* The reselection won over our selection: that command did not start. */
            q->slot_cmd[q->starting] = -1;
            q->in_flight--;
            q->next--;
            q->starting = -1;
        }
        tag = l->host[QMSG_OFF + 2];
        if (l->host[QMSG_OFF + 1] != 0x20 || tag >= QMAX || q->slot_cmd[tag] < 0) {
            error_setf(err, "reselection with an unknown tag");
            return -1;
        }
        return mpq_bar_write(l->d, 1, REG_DSA, 4, ccb_gpa(l, tag), err) < 0 ? -1 :
               mpq_bar_write(l->d, 1, REG_DSP, 4, l->q_dispatch, err);
    case INT_SIGNALLED:
        reg(l, REG_CTEST2, 1, err);                 /* clears SIGP */
        l->idle = false;
        return start_or_idle(l, q, err);
    default:
        error_setf(err, "SCRIPTS interrupt 0x%llx", (unsigned long long)dsps);
        return -1;
    }
}

int mpq_lsi_run_queued(struct mpq_lsi *l, struct mpq_scsi_cmd *cmds, size_t n, unsigned depth,
                       char **err)
{
    struct queue_state q = { .cmds = cmds, .n = n, .depth = depth, .starting = -1 };

    if (depth == 0 || depth > QMAX) {
        error_setf(err, "queue depth is 1 to %d", QMAX);
        return -1;
    }
    for (unsigned i = 0; i < QMAX; i++) {
        q.slot_cmd[i] = -1;
    }
    if (leave_idle(l, err) < 0 || start_or_idle(l, &q, err) < 0) {
        return -1;
    }
    while (q.done < n) {
        if (mpq_intx_wait(l->d, IRQ_TIMEOUT_MS) <= 0) {
            error_setf(err, "no interrupt within %d ms (%zu of %zu done)", IRQ_TIMEOUT_MS,
                       q.done, n);
            return -1;
        }
        if (on_queued_interrupt(l, &q, err) < 0) {
            return -1;
        }
    }
    return 0;
}
