// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * An LSI53C8xx SCRIPTS driver, proxy side, built the way Linux's sym53c8xx
 * is (drivers/scsi/sym53c8xx_2/sym_fw2.h, sym_hipd.c): the SCRIPTS run all
 * the time, the host talks to them through memory.
 *
 *   start queue   a ring of control block addresses the host fills; the
 *                 SCRIPTS take them in order (SCRATCHA points at the next
 *                 slot) and select, send IDENTIFY (and the tag), the CDB
 *   reselection   the SCRIPTS read IDENTIFY and the queue tag themselves and
 *                 load the tag's control block into DSA; untagged commands
 *                 have one slot the host names
 *   done queue    on COMMAND COMPLETE the SCRIPTS store DSA in the next slot
 *                 (SCRATCHB) and raise INTFLY: an interrupt on the fly, the
 *                 SCRIPTS go on
 *
 * So a command costs the host a doorbell (ISTAT SIGP) and its share of an
 * interrupt, whose acknowledgement (ISTAT INTF) is the next doorbell; under
 * load one interrupt reports many completions.  Only errors (phase
 * mismatch, selection timeout, SCRIPTS interrupts) stop the SCRIPTS and cost
 * the register reads of a classic interrupt handler.
 *
 * The encodings are the chip's (LSI53C895A data manual, chapter 6); the
 * program is ours.  Its self-modifying LOADs and STOREs (the queue slots are
 * patched into the instruction that reads or writes them) are what
 * sym53c8xx does too.
 */
#include "client/mpqemu-lsi.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

enum {
    WORK_SIZE = 64 * 1024,
    SCRIPT_OFF = 0,             /* the program, up to 2 KiB */
    MSG_OFF = 2048,             /* message bytes the SCRIPTS read */
    CCB_BASE_VAR = 2056,        /* the tagged control blocks' base, for the SCRIPTS */
    UNTAGGED_VAR = 2060,        /* the untagged command's control block */
    RING_SLOTS = 64,            /* 256 bytes: the low byte of a slot address wraps */
    CCB_SIZE = 256,             /* DSA of tag t = ccb base + t << 8 */
    QMAX = 32,

    /* A control block: table entries (DSA-relative), then its bytes. */
    T_SELECT = 0, T_MSGOUT = 8, T_CMD = 16, T_DATA = 24, T_STATUS = 32,
    C_MSGOUT = 48, C_CDB = 64, C_STATUS = 80, C_SENSE = 96,

    PHASE_DATA_OUT = 0, PHASE_DATA_IN = 1, PHASE_COMMAND = 2, PHASE_STATUS = 3,
    PHASE_MSG_OUT = 6, PHASE_MSG_IN = 7,

    REG_DSTAT = 0x0c, REG_DSA = 0x10, REG_DSA1 = 0x11, REG_ISTAT = 0x14, REG_CTEST2 = 0x1a,
    REG_DBC = 0x24, REG_DSP = 0x2c, REG_DSPS = 0x30, REG_SCRATCHA = 0x34, REG_DIEN = 0x39,
    REG_SIEN0 = 0x40, REG_SIEN1 = 0x41, REG_SIST0 = 0x42, REG_SIST1 = 0x43,
    REG_SCRATCHB = 0x5c,

    ISTAT_DIP = 0x01, ISTAT_SIP = 0x02, ISTAT_INTF = 0x04, ISTAT_SIGP = 0x20,
    DSTAT_SIR = 0x04, SIST0_MA = 0x80, SIST1_STO = 0x04,
    IRQ_TIMEOUT_MS = 10000,
    STATUS_NONE = 0xff,         /* in a control block until the status phase */
};

/* Instruction words (the manual's encodings; sym53c8xx names them alike). */
#define SEL_TBL_ATN(off)        (0x43000000u | (off))   /* 2nd word: where to go if reselected */
#define MOVE_TBL(phase)         (0x18000000u | (uint32_t)(phase) << 24)   /* 2nd word: DSA offset */
#define MOVE_ABS(phase, count)  (0x08000000u | (uint32_t)(phase) << 24 | (count))
#define JUMP                    0x80080000u
#define JUMP_WHEN(phase)        (0x800b0000u | (uint32_t)(phase) << 24)
#define JUMP_WHEN_NOT(phase)    (0x80030000u | (uint32_t)(phase) << 24)
#define JUMP_IF_DATA(d, m)      (0x800c0000u | (uint32_t)((m) ^ 0xff) << 8 | (d))
#define JUMP_IF_NOT_DATA(d, m)  (0x80040000u | (uint32_t)((m) ^ 0xff) << 8 | (d))
#define INT                     0x98080000u
#define INT_FLY                 0x98180000u
#define CLEAR_ACK               0x60000040u
#define WAIT_DISCONNECT         0x48000000u
#define WAIT_RESELECT           0x50000000u    /* 2nd word: where to go when signalled */
#define LOAD_ABS(reg, n)        (0xe1000000u | (uint32_t)(reg) << 16 | (n))
#define STORE_ABS(reg, n)       (0xe0000000u | (uint32_t)(reg) << 16 | (n))
#define REG_SET(reg, data)      (0x78000000u | (uint32_t)(reg) << 16 | (uint32_t)(data) << 8)
#define REG_ADD(reg, data)      (0x7e000000u | (uint32_t)(reg) << 16 | (uint32_t)(data) << 8)
#define SFBR_FROM(reg)          (0x72000000u | (uint32_t)(reg) << 16)     /* SFBR = reg | 0 */
#define SFBR_ADD_TO(reg, data)  (0x6e000000u | (uint32_t)(reg) << 16 | (uint32_t)(data) << 8)

enum { INT_BAD_PHASE = 0x10, INT_BAD_MESSAGE = 0x11 };

/* Labels of the program. */
enum label { L_IDLE, L_TAKE, L_DISPATCH, L_DATA_IN, L_DATA_OUT, L_STATUS, L_MSG_IN, L_ACK,
             L_DISCONNECT, L_COMPLETE, L_DONE_SLOT, L_WAIT, L_RESELECTED, L_UNTAGGED,
             L_SELECT_LOST, L_BAD_MESSAGE, L_COUNT };

/* Where the host keeps a command while the SCRIPTS have it. */
struct slot {
    struct mpq_scsi_cmd *cmd;   /* NULL: free */
    uint32_t residual;
};

struct mpq_lsi {
    struct mpq_dev *d;
    uint8_t *host;
    uint64_t gpa;
    uint32_t label[L_COUNT];    /* bus addresses of the program's labels */
    uint32_t squeue_off, dqueue_off, untagged_off, ccb_off;     /* in the work area */
    unsigned squeue_put, dqueue_get;
    bool started;               /* the SCRIPTS run the idle loop as we left them */
    struct slot tagged[QMAX], untagged;
    struct mpq_lsi_stats stats;
};

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);       /* SCRIPTS are little-endian, as is the host */
}

/* --- the program ------------------------------------------------------------ */

/* A tiny assembler: instructions, and label addresses patched in once known. */
struct prog {
    uint32_t w[160];
    unsigned n;
    uint32_t base;
    unsigned fix[32][3];        /* word index, label, addend */
    unsigned nfix;
    uint32_t label[L_COUNT];    /* word index of each label */
};

static void emit(struct prog *p, uint32_t insn, uint32_t arg)
{
    p->w[p->n++] = insn;
    p->w[p->n++] = arg;
}

static void here(struct prog *p, enum label l)
{
    p->label[l] = p->n;
}

/* An instruction whose second word is a label's address (plus addend bytes). */
static void emit_to(struct prog *p, uint32_t insn, enum label to, unsigned addend)
{
    p->fix[p->nfix][0] = p->n + 1;
    p->fix[p->nfix][1] = to;
    p->fix[p->nfix][2] = addend;
    p->nfix++;
    emit(p, insn, 0);
}

/* Takes the next start queue entry and runs its command's phases until it disconnects or ends. */
static void emit_start_queue(struct prog *p)
{
    here(p, L_IDLE);
    emit(p, SFBR_FROM(REG_CTEST2), 0);                  /* reading CTEST2 clears SIGP */
    emit_to(p, STORE_ABS(REG_SCRATCHA, 4), L_TAKE, 4);  /* the slot into the LOAD below */
    here(p, L_TAKE);
    emit(p, LOAD_ABS(REG_DSA, 4), 0);
    emit(p, SFBR_FROM(REG_DSA), 0);                     /* bit 0: the slot holds a command */
    emit_to(p, JUMP_IF_DATA(0x00, 0x01), L_WAIT, 0);
    emit(p, REG_SET(REG_DSA, 0), 0);
    emit(p, REG_ADD(REG_SCRATCHA, 4), 0);               /* wraps in the ring's 256 bytes */
    emit_to(p, SEL_TBL_ATN(T_SELECT), L_SELECT_LOST, 0);
    emit(p, MOVE_TBL(PHASE_MSG_OUT), T_MSGOUT);
    emit(p, MOVE_TBL(PHASE_COMMAND), T_CMD);
}

/* Follows the target: data, status, messages; the dispatcher of every command. */
static void emit_phases(struct prog *p, uint32_t msg)
{
    here(p, L_DISPATCH);
    emit_to(p, JUMP_WHEN(PHASE_DATA_IN), L_DATA_IN, 0);
    emit_to(p, JUMP_WHEN(PHASE_DATA_OUT), L_DATA_OUT, 0);
    emit_to(p, JUMP_WHEN(PHASE_STATUS), L_STATUS, 0);
    emit_to(p, JUMP_WHEN(PHASE_MSG_IN), L_MSG_IN, 0);
    emit(p, INT, INT_BAD_PHASE);
    here(p, L_DATA_IN);
    emit(p, MOVE_TBL(PHASE_DATA_IN), T_DATA);
    emit_to(p, JUMP, L_DISPATCH, 0);
    here(p, L_DATA_OUT);
    emit(p, MOVE_TBL(PHASE_DATA_OUT), T_DATA);
    emit_to(p, JUMP, L_DISPATCH, 0);
    here(p, L_STATUS);
    emit(p, MOVE_TBL(PHASE_STATUS), T_STATUS);
    emit_to(p, JUMP, L_DISPATCH, 0);
    here(p, L_MSG_IN);
    emit(p, MOVE_ABS(PHASE_MSG_IN, 1), msg);
    emit_to(p, JUMP_IF_DATA(0x00, 0xff), L_COMPLETE, 0);    /* COMMAND COMPLETE */
    emit_to(p, JUMP_IF_DATA(0x04, 0xff), L_DISCONNECT, 0);  /* DISCONNECT */
    emit_to(p, JUMP_IF_DATA(0x02, 0xff), L_ACK, 0);         /* SAVE DATA POINTER */
    emit_to(p, JUMP_IF_DATA(0x03, 0xff), L_ACK, 0);         /* RESTORE POINTERS */
    emit(p, INT, INT_BAD_MESSAGE);
    here(p, L_ACK);
    emit(p, CLEAR_ACK, 0);
    emit_to(p, JUMP, L_DISPATCH, 0);
    here(p, L_DISCONNECT);
    emit(p, CLEAR_ACK, 0);
    emit(p, WAIT_DISCONNECT, 0);
    emit_to(p, JUMP, L_IDLE, 0);
}

/* COMMAND COMPLETE: DSA into the done queue, an interrupt on the fly, on with the queue. */
static void emit_done_queue(struct prog *p)
{
    here(p, L_COMPLETE);
    emit(p, CLEAR_ACK, 0);
    emit(p, WAIT_DISCONNECT, 0);
    emit_to(p, STORE_ABS(REG_SCRATCHB, 4), L_DONE_SLOT, 4);
    here(p, L_DONE_SLOT);
    emit(p, STORE_ABS(REG_DSA, 4), 0);
    emit(p, REG_ADD(REG_SCRATCHB, 4), 0);
    emit(p, INT_FLY, 0);
    emit_to(p, JUMP, L_IDLE, 0);
}

/*
 * Nothing to start: wait for a target to reselect, or for the host's
 * signal.  A reselecting target says IDENTIFY, then SIMPLE QUEUE TAG and
 * the tag (whose control block the SCRIPTS compute), or goes on to its
 * data or status (the untagged command).
 */
static void emit_reselection(struct prog *p, uint32_t msg, uint32_t ccb_base_var,
                             uint32_t untagged_var, uint8_t ccb_base_byte1)
{
    here(p, L_WAIT);
    emit_to(p, WAIT_RESELECT, L_IDLE, 0);
    here(p, L_RESELECTED);
    emit(p, MOVE_ABS(PHASE_MSG_IN, 1), msg);
    emit_to(p, JUMP_IF_NOT_DATA(0x80, 0x80), L_BAD_MESSAGE, 0);     /* IDENTIFY */
    emit(p, CLEAR_ACK, 0);
    emit_to(p, JUMP_WHEN_NOT(PHASE_MSG_IN), L_UNTAGGED, 0);
    emit(p, MOVE_ABS(PHASE_MSG_IN, 1), msg);
    emit_to(p, JUMP_IF_NOT_DATA(0x20, 0xff), L_BAD_MESSAGE, 0);     /* SIMPLE QUEUE TAG */
    emit(p, CLEAR_ACK, 0);
    emit(p, MOVE_ABS(PHASE_MSG_IN, 1), msg + 1);                     /* the tag, in SFBR */
    emit(p, LOAD_ABS(REG_DSA, 4), ccb_base_var);
    emit(p, SFBR_ADD_TO(REG_DSA1, ccb_base_byte1), 0);              /* DSA = base + tag << 8 */
    emit(p, CLEAR_ACK, 0);
    emit_to(p, JUMP, L_DISPATCH, 0);
    here(p, L_UNTAGGED);
    emit(p, LOAD_ABS(REG_DSA, 4), untagged_var);
    emit_to(p, JUMP, L_DISPATCH, 0);
    here(p, L_SELECT_LOST);                         /* reselected while selecting */
    emit(p, REG_ADD(REG_SCRATCHA, 0xfc), 0);        /* the entry goes back to the queue */
    emit_to(p, JUMP, L_RESELECTED, 0);
    here(p, L_BAD_MESSAGE);
    emit(p, INT, INT_BAD_MESSAGE);
}

static void assemble(struct mpq_lsi *l)
{
    struct prog p = { .base = (uint32_t)(l->gpa + SCRIPT_OFF) };
    uint32_t msg = (uint32_t)(l->gpa + MSG_OFF), ccb_base = (uint32_t)(l->gpa + l->ccb_off);

    emit_start_queue(&p);
    emit_phases(&p, msg);
    emit_done_queue(&p);
    emit_reselection(&p, msg, (uint32_t)(l->gpa + CCB_BASE_VAR),
                     (uint32_t)(l->gpa + UNTAGGED_VAR), (uint8_t)(ccb_base >> 8));
    for (unsigned i = 0; i < p.nfix; i++) {
        p.w[p.fix[i][0]] = p.base + 4 * p.label[p.fix[i][1]] + p.fix[i][2];
    }
    for (unsigned i = 0; i < p.n; i++) {
        put32(l->host + SCRIPT_OFF + 4 * i, p.w[i]);
    }
    for (unsigned i = 0; i < L_COUNT; i++) {
        l->label[i] = p.base + 4 * p.label[i];
    }
    put32(l->host + CCB_BASE_VAR, ccb_base);
}

/* --- registers, counted ------------------------------------------------------ */

static uint64_t reg(struct mpq_lsi *l, unsigned off, unsigned size, char **err)
{
    uint64_t v = 0;

    l->stats.register_accesses++;
    if (mpq_bar_read(l->d, 1, off, size, &v, err) < 0) {
        return UINT64_MAX;
    }
    return v;
}

static int reg_write(struct mpq_lsi *l, unsigned off, unsigned size, uint64_t v, char **err)
{
    l->stats.register_accesses++;
    return mpq_bar_write(l->d, 1, off, size, v, err);
}

static int wait_interrupt(struct mpq_lsi *l, char **err)
{
    if (mpq_intx_wait(l->d, IRQ_TIMEOUT_MS) <= 0) {
        uint64_t istat = UINT64_MAX, dsp = UINT64_MAX;

        mpq_bar_read(l->d, 1, REG_ISTAT, 1, &istat, NULL);
        mpq_bar_read(l->d, 1, REG_DSP, 4, &dsp, NULL);
        error_setf(err, "no interrupt from the controller within %d ms (ISTAT 0x%02llx, "
                   "SCRIPTS at 0x%llx, idle loop at 0x%x)", IRQ_TIMEOUT_MS,
                   (unsigned long long)istat, (unsigned long long)dsp, l->label[L_IDLE]);
        return -1;
    }
    l->stats.interrupts++;
    return 0;
}

/* --- the queues ---------------------------------------------------------------- */

static uint32_t *squeue(struct mpq_lsi *l)
{
    return (uint32_t *)(l->host + l->squeue_off);
}

static uint32_t *dqueue(struct mpq_lsi *l)
{
    return (uint32_t *)(l->host + l->dqueue_off);
}

static uint8_t *ccb_of_tag(struct mpq_lsi *l, unsigned tag)
{
    return l->host + l->ccb_off + CCB_SIZE * tag;
}

static uint32_t gpa_of(struct mpq_lsi *l, const uint8_t *p)
{
    return (uint32_t)(l->gpa + (uint64_t)(p - l->host));
}

/*
 * Starts the SCRIPTS' idle loop on empty queues: they wait for reselection
 * or a signal.  Only while no command is out.
 */
static int start_scripts(struct mpq_lsi *l, char **err)
{
    memset(squeue(l), 0, RING_SLOTS * 4);
    memset(dqueue(l), 0, RING_SLOTS * 4);
    l->squeue_put = l->dqueue_get = 0;
    if (reg_write(l, REG_SCRATCHA, 4, l->gpa + l->squeue_off, err) < 0 ||
        reg_write(l, REG_SCRATCHB, 4, l->gpa + l->dqueue_off, err) < 0 ||
        reg_write(l, REG_DSP, 4, l->label[L_IDLE], err) < 0) {
        return -1;
    }
    l->started = true;
    return 0;
}

/* Puts a control block on the start queue (memory only: the doorbell follows). */
static void queue_ccb(struct mpq_lsi *l, const uint8_t *ccb)
{
    unsigned put = l->squeue_put;

    /* The slot after it stops the SCRIPTS first; then the entry becomes valid. */
    __atomic_store_n(&squeue(l)[(put + 1) % RING_SLOTS], 0, __ATOMIC_RELEASE);
    __atomic_store_n(&squeue(l)[put], gpa_of(l, ccb) | 1, __ATOMIC_RELEASE);
    l->squeue_put = (put + 1) % RING_SLOTS;
}

/*
 * The next completed control block's address, or 0.  A slot taken is
 * cleared only once the next one is seen filled: the device's store of a
 * slot need not be one write (a remote's memcpy of 4 bytes writes them
 * twice), and the second write, landing after a clear, would leave a stale
 * entry for the next lap.  The SCRIPTS store slots in order, so the next
 * slot filled means the previous store has ended.
 */
static uint32_t next_done(struct mpq_lsi *l)
{
    uint32_t *slot = &dqueue(l)[l->dqueue_get];
    uint32_t dsa = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

    if (dsa) {
        __atomic_store_n(&dqueue(l)[(l->dqueue_get + RING_SLOTS - 1) % RING_SLOTS], 0,
                         __ATOMIC_RELAXED);
        l->dqueue_get = (l->dqueue_get + 1) % RING_SLOTS;
    }
    return dsa;
}

/* The slot of a control block address, or NULL for one we never queued. */
static struct slot *slot_of(struct mpq_lsi *l, uint32_t dsa)
{
    uint32_t base = gpa_of(l, ccb_of_tag(l, 0));

    if (dsa == gpa_of(l, l->host + l->untagged_off)) {
        return l->untagged.cmd ? &l->untagged : NULL;
    }
    if (dsa < base || (dsa - base) % CCB_SIZE || (dsa - base) / CCB_SIZE >= QMAX) {
        return NULL;
    }
    return l->tagged[(dsa - base) / CCB_SIZE].cmd ? &l->tagged[(dsa - base) / CCB_SIZE] : NULL;
}

static const uint8_t *ccb_of_slot(struct mpq_lsi *l, const struct slot *s)
{
    return s == &l->untagged ? l->host + l->untagged_off
                             : ccb_of_tag(l, (unsigned)(s - l->tagged));
}

/* --- commands ------------------------------------------------------------------ */

/* Fills a control block: select target, IDENTIFY (and a SIMPLE QUEUE TAG), CDB, data. */
static void fill_ccb(struct mpq_lsi *l, uint8_t *b, unsigned target, const uint8_t *msgout,
                     size_t msgout_len, const struct mpq_scsi_cmd *c)
{
    put32(b + T_SELECT, target << 16);
    memcpy(b + C_MSGOUT, msgout, msgout_len);
    memcpy(b + C_CDB, c->cdb, c->cdb_len);
    put32(b + T_MSGOUT, (uint32_t)msgout_len);
    put32(b + T_MSGOUT + 4, gpa_of(l, b + C_MSGOUT));
    put32(b + T_CMD, c->cdb_len);
    put32(b + T_CMD + 4, gpa_of(l, b + C_CDB));
    put32(b + T_DATA, c->len);
    put32(b + T_DATA + 4, (uint32_t)c->data_gpa);
    put32(b + T_STATUS, 1);
    put32(b + T_STATUS + 4, gpa_of(l, b + C_STATUS));
    b[C_STATUS] = STATUS_NONE;
}

static void finish(struct mpq_lsi *l, struct slot *s, uint8_t status)
{
    s->cmd->status = status;
    s->cmd = NULL;
    l->stats.commands++;
}

/* What the caller of the queue does with completions and free tags. */
struct queue_ops {
    void (*done)(struct mpq_lsi *l, struct slot *s, void *opaque);
    /* Queues more commands (memory only); how many. */
    unsigned (*refill)(struct mpq_lsi *l, void *opaque);
    void *opaque;
};

/* Takes every completion the done queue holds; how many. */
static int reap(struct mpq_lsi *l, const struct queue_ops *ops, char **err)
{
    uint32_t dsa;
    int n = 0;

    while ((dsa = next_done(l))) {
        struct slot *s = slot_of(l, dsa);

        if (!s) {
            error_setf(err, "the done queue names 0x%x, no command of ours", dsa);
            return -1;
        }
        finish(l, s, ccb_of_slot(l, s)[C_STATUS]);
        ops->done(l, s, ops->opaque);
        n++;
    }
    return n;
}

static int unexpected(struct mpq_lsi *l, uint64_t istat, uint64_t dstat, uint64_t sist0,
                      uint64_t sist1, uint64_t dsps, char **err)
{
    l->started = false;
    error_setf(err, "unexpected interrupt: ISTAT 0x%02llx DSTAT 0x%02llx SIST0 0x%02llx "
               "SIST1 0x%02llx DSPS 0x%llx", (unsigned long long)istat,
               (unsigned long long)dstat, (unsigned long long)sist0,
               (unsigned long long)sist1, (unsigned long long)dsps);
    return -1;
}

/*
 * The SCRIPTS stopped with an interrupt (SIP or DIP): a selection timeout
 * ends the command being selected, a phase mismatch (a short transfer)
 * counts the residual; either way the SCRIPTS go on.  Anything else is an
 * error.  These cost the reads a classic handler makes.
 */
static int on_stop(struct mpq_lsi *l, uint64_t istat, const struct queue_ops *ops, char **err)
{
    uint64_t dstat = (istat & ISTAT_DIP) ? reg(l, REG_DSTAT, 1, err) : 0;
    uint64_t sist0 = (istat & ISTAT_SIP) ? reg(l, REG_SIST0, 1, err) : 0;
    uint64_t sist1 = (istat & ISTAT_SIP) ? reg(l, REG_SIST1, 1, err) : 0;
    uint64_t dsa = reg(l, REG_DSA, 4, err);
    struct slot *s = dsa == UINT64_MAX ? NULL : slot_of(l, (uint32_t)dsa);

    if (dstat == UINT64_MAX || sist0 == UINT64_MAX || sist1 == UINT64_MAX || !s || dstat) {
        return unexpected(l, istat, dstat, sist0, sist1,
                          dstat & DSTAT_SIR ? reg(l, REG_DSPS, 4, err) : 0, err);
    }
    if ((sist1 & SIST1_STO) && !(sist0 & ~SIST0_MA)) {
        finish(l, s, STATUS_NONE);
        ops->done(l, s, ops->opaque);
        return reg_write(l, REG_DSP, 4, l->label[L_IDLE], err);
    }
    if (sist0 == SIST0_MA && !sist1) {
        uint64_t dbc = reg(l, REG_DBC, 4, err);

        s->residual += (uint32_t)(dbc & 0xffffff);
        return dbc == UINT64_MAX ? -1 : reg_write(l, REG_DSP, 4, l->label[L_DISPATCH], err);
    }
    return unexpected(l, istat, dstat, sist0, sist1, 0, err);
}

/*
 * An interrupt that brought no completion: a stop to handle, an INTF whose
 * completions an earlier pass took, or nothing.
 */
static int service_empty(struct mpq_lsi *l, const struct queue_ops *ops, char **err)
{
    uint64_t istat = reg(l, REG_ISTAT, 1, err);

    if (istat == UINT64_MAX) {
        return -1;
    }
    if (istat & (ISTAT_SIP | ISTAT_DIP)) {
        return on_stop(l, istat, ops, err);
    }
    if (istat & ISTAT_INTF) {
        return reg_write(l, REG_ISTAT, 1, ISTAT_INTF, err);
    }
    return 0;       /* a spurious wakeup, as drivers allow */
}

/*
 * One interrupt's work.  Completions in the done queue: take them, queue
 * more, and acknowledge INTF in the same write as the doorbell.  An empty
 * done queue: read ISTAT to see why.
 */
static int on_interrupt(struct mpq_lsi *l, const struct queue_ops *ops, char **err)
{
    int n = reap(l, ops, err);
    uint8_t doorbell;

    if (n < 0 || (n == 0 && service_empty(l, ops, err) < 0)) {
        return -1;
    }
    doorbell = (n ? ISTAT_INTF : 0) | (ops->refill(l, ops->opaque) ? ISTAT_SIGP : 0);
    return doorbell ? reg_write(l, REG_ISTAT, 1, doorbell, err) : 0;
}

/*
 * Services interrupts until 'pending' says nothing is out.  After the EOI
 * (which follows the write that lowered the line; over vfio-user that
 * posted write has landed once the EOI is answered), the done queue is read
 * once more: completions that came before the acknowledgement landed raised
 * no interrupt of their own.
 */
static int run_until_idle(struct mpq_lsi *l, const struct queue_ops *ops,
                          bool (*pending)(struct mpq_lsi *l, void *opaque), char **err)
{
    while (pending(l, ops->opaque)) {
        int rc, n;

        if (wait_interrupt(l, err) < 0) {
            return -1;
        }
        rc = on_interrupt(l, ops, err);
        mpq_intx_eoi(l->d);
        if (rc < 0) {
            return -1;
        }
        while ((n = reap(l, ops, err)) > 0) {
            if (ops->refill(l, ops->opaque) && reg_write(l, REG_ISTAT, 1, ISTAT_SIGP, err) < 0) {
                return -1;
            }
        }
        if (n < 0) {
            return -1;
        }
    }
    return 0;
}

/* --- the API ------------------------------------------------------------------- */

/* Bus address of the first 'align'-aligned byte at or after work offset 'from'. */
static uint32_t aligned_offset(const struct mpq_lsi *l, uint32_t from, uint32_t align)
{
    uint64_t at = (l->gpa + from + align - 1) & ~(uint64_t)(align - 1);

    return (uint32_t)(at - l->gpa);
}

struct mpq_lsi *mpq_lsi_new(struct mpq_dev *d, struct mpq_ram *ram, uint64_t work_offset,
                            char **err)
{
    struct mpq_lsi *l;

    if (work_offset > ram->size || ram->size - work_offset < WORK_SIZE ||
        ram->gpa + work_offset + WORK_SIZE > UINT32_MAX) {
        error_setf(err, "the LSI work area does not fit in guest RAM (below 4 GiB)");
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
    /* The rings wrap in their low address byte; tag control blocks sit in one 64 KiB page. */
    l->squeue_off = aligned_offset(l, 4096, 256);
    l->dqueue_off = l->squeue_off + 256;
    l->untagged_off = l->dqueue_off + 256;
    l->ccb_off = aligned_offset(l, 8192, QMAX * CCB_SIZE);
    put32(l->host + UNTAGGED_VAR, (uint32_t)(l->gpa + l->untagged_off));
    assemble(l);
    /* Every interrupt source on: the driver decides what is an error. */
    if (reg_write(l, REG_DIEN, 1, 0xff, err) < 0 || reg_write(l, REG_SIEN0, 1, 0xff, err) < 0 ||
        reg_write(l, REG_SIEN1, 1, 0xff, err) < 0 || start_scripts(l, err) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

void mpq_lsi_free(struct mpq_lsi *l)
{
    free(l);
}

void mpq_lsi_get_stats(const struct mpq_lsi *l, struct mpq_lsi_stats *stats)
{
    *stats = l->stats;
}

/* An error left the SCRIPTS stopped, or commands out: start again on empty queues. */
static int ready_to_queue(struct mpq_lsi *l, char **err)
{
    if (l->started) {
        return 0;
    }
    memset(l->tagged, 0, sizeof(l->tagged));
    memset(&l->untagged, 0, sizeof(l->untagged));
    return start_scripts(l, err);
}

/* --- one untagged command ---------------------------------------------------------- */

static void untagged_done(struct mpq_lsi *l, struct slot *s, void *opaque)
{
    (void)l, (void)s, (void)opaque;
}

static unsigned no_refill(struct mpq_lsi *l, void *opaque)
{
    (void)l, (void)opaque;
    return 0;
}

static bool untagged_pending(struct mpq_lsi *l, void *opaque)
{
    (void)opaque;
    return l->untagged.cmd != NULL;
}

/*
 * Runs one command without a tag (the target keeps the bus, or disconnects
 * and reselects with IDENTIFY alone); 0, 1 on a selection timeout.
 */
static int run_untagged(struct mpq_lsi *l, unsigned target, unsigned lun,
                        struct mpq_scsi_cmd *c, uint32_t *residual, char **err)
{
    static const struct queue_ops ops = { .done = untagged_done, .refill = no_refill };
    uint8_t identify = (uint8_t)(0x80 | (lun & 7));
    uint8_t *b = l->host + l->untagged_off;

    if (ready_to_queue(l, err) < 0) {
        return -1;
    }
    fill_ccb(l, b, target, &identify, 1, c);
    l->untagged = (struct slot){ .cmd = c };
    queue_ccb(l, b);
    if (reg_write(l, REG_ISTAT, 1, ISTAT_SIGP, err) < 0 ||
        run_until_idle(l, &ops, untagged_pending, err) < 0) {
        l->started = false;
        return -1;
    }
    *residual = l->untagged.residual;
    return c->status == STATUS_NONE ? 1 : 0;     /* finished without a status phase */
}

int mpq_lsi_command(struct mpq_lsi *l, unsigned target, unsigned lun, const uint8_t *cdb,
                    size_t cdb_len, uint64_t data_gpa, uint32_t len,
                    struct mpq_scsi_result *res, char **err)
{
    struct mpq_scsi_cmd c = { .cdb_len = (uint8_t)cdb_len, .data_gpa = data_gpa, .len = len };
    uint8_t *sense = l->host + l->untagged_off + C_SENSE;
    uint32_t ignored;
    int r;

    memset(res, 0, sizeof(*res));
    if (cdb_len == 0 || cdb_len > 16) {
        error_setf(err, "a CDB has 1 to 16 bytes");
        return -1;
    }
    memcpy(c.cdb, cdb, cdb_len);
    r = run_untagged(l, target, lun, &c, &res->residual, err);
    if (r < 0) {
        return -1;
    }
    if (r == 1) {
        res->selection_timeout = true;
        return 0;
    }
    res->status = c.status;
    if (res->status == 0x02) {
        struct mpq_scsi_cmd rs = { .cdb = { 0x03, (uint8_t)(lun << 5), 0, 0, sizeof(res->sense) },
                                   .cdb_len = 6, .data_gpa = gpa_of(l, sense),
                                   .len = sizeof(res->sense) };

        if (run_untagged(l, target, lun, &rs, &ignored, err) != 0) {
            return -1;
        }
        memcpy(res->sense, sense, sizeof(res->sense));
    }
    return 0;
}

/* --- tagged queueing ------------------------------------------------------------- */

struct batch {
    struct mpq_scsi_cmd *cmds;
    size_t n, next;
    unsigned depth, in_flight;
};

static void batch_done(struct mpq_lsi *l, struct slot *s, void *opaque)
{
    struct batch *q = opaque;

    (void)l, (void)s;
    q->in_flight--;
}

/* Queues commands on free tags while the depth allows; how many. */
static unsigned batch_refill(struct mpq_lsi *l, void *opaque)
{
    struct batch *q = opaque;
    unsigned queued = 0, tag = 0;

    while (q->next < q->n && q->in_flight < q->depth) {
        struct mpq_scsi_cmd *c = &q->cmds[q->next++];
        uint8_t msg[3];

        while (l->tagged[tag].cmd) {
            tag++;
        }
        msg[0] = 0xc0;                              /* IDENTIFY, may disconnect */
        msg[1] = 0x20;                              /* SIMPLE QUEUE TAG */
        msg[2] = (uint8_t)tag;
        fill_ccb(l, ccb_of_tag(l, tag), 0, msg, sizeof(msg), c);
        c->status = STATUS_NONE;
        l->tagged[tag] = (struct slot){ .cmd = c };
        queue_ccb(l, ccb_of_tag(l, tag));
        q->in_flight++;
        queued++;
    }
    return queued;
}

static bool batch_pending(struct mpq_lsi *l, void *opaque)
{
    struct batch *q = opaque;

    (void)l;
    return q->in_flight > 0;
}

int mpq_lsi_run_queued(struct mpq_lsi *l, struct mpq_scsi_cmd *cmds, size_t n, unsigned depth,
                       char **err)
{
    struct batch q = { .cmds = cmds, .n = n, .depth = depth };
    struct queue_ops ops = { .done = batch_done, .refill = batch_refill, .opaque = &q };

    if (depth == 0 || depth > QMAX) {
        error_setf(err, "queue depth is 1 to %d", QMAX);
        return -1;
    }
    if (ready_to_queue(l, err) < 0) {
        return -1;
    }
    if (batch_refill(l, &q) && reg_write(l, REG_ISTAT, 1, ISTAT_SIGP, err) < 0) {
        l->started = false;
        return -1;
    }
    if (run_until_idle(l, &ops, batch_pending, err) < 0) {
        l->started = false;
        return -1;
    }
    return 0;
}
