// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * LSI53C895A PCI-to-SCSI controller: register file, SCRIPTS processor and
 * the initiator side of the SCSI bus phases, over the SCSI layer.
 *
 * The SCSI data phase is zero-copy: a block move in DATA IN/OUT hands the
 * guest memory it names to the target, which reads or writes the image
 * straight into it.  Tagged commands disconnect and are reselected when the
 * initiator waits for reselection, so many commands can be queued at once;
 * while disconnected their disk I/O runs in a buffer of the request's (a
 * read prefetched, a write taken from the initiator first), so that the
 * disk works on all of them at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/device.h"
#include "hw/lsi53c895a-regs.h"
#include "pci/dma.h"
#include "pci/pci.h"
#include "scsi/bus.h"
#include "util/byteorder.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"

enum {
    /* SCRIPTS run at most this many instructions before yielding to the loop. */
    INSN_PER_ACTIVATION = 4096,
    MSG_IN_MAX = 8,
    TAG_VALID = 1 << 16,
    MAX_DATA_IOV = 16,
    COPY_CHUNK = 4096,
    /*
     * Toward the unexpected disconnect, so many bytes copied count as one
     * instruction, and so many bytes of MESSAGE OUT: taken a message at a
     * time, one costs about as much as ten bytes copied.
     */
    COPY_PER_INSN = COPY_CHUNK,
    MSGOUT_PER_INSN = 64,
    /*
     * Disconnected tagged commands move their data through buffers up to
     * this much per command and per controller; bigger commands, and
     * commands past the controller's share, move guest memory directly once
     * reselected (the disk I/O then runs while the bus is held).
     */
    BUFFER_PER_COMMAND = 256 << 10,
    BUFFER_PER_CONTROLLER = 4 << 20,
    /*
     * An activation also ends once memory moves, MESSAGE OUT moves and
     * buffered block moves have moved this much: a guest looping on 16 MiB
     * memory moves is bounded by bytes, not by instructions.  Linux's
     * sym53c8xx copies a few dozen bytes per memory move, and its buffered
     * block moves copy what the controller's buffers hold, so its
     * activations end as they did, but for one that both empties the
     * buffers and fills them again.
     */
    COPY_PER_ACTIVATION = BUFFER_PER_CONTROLLER,
};

enum wait_state {
    RUNNING_FREE,       /* SCRIPTS run or are stopped; nothing awaited */
    WAIT_RESELECT,      /* a WAIT RESELECT instruction is pending */
    WAIT_DATA,          /* a data-phase transfer is in flight */
    WAIT_PHASE,         /* the target has not asserted the next phase yet */
};

enum msg_action { AFTER_MSG_COMMAND, AFTER_MSG_DISCONNECT, AFTER_MSG_DATA };

struct lsi;

/* One SCSI command of ours: the request, and whether it waits to be reselected. */
struct lsi_cmd {
    struct lsi *s;
    struct scsi_request *req;
    uint32_t tag;               /* target << 8 | queue tag | TAG_VALID */
    unsigned lun;
    struct lsi_cmd *next;       /* list of disconnected commands */
    /*
     * The request's buffer (scsi_req_buffer) when its data waits there: a
     * READ prefetched while disconnected, a WRITE taken before the disk
     * has it.  NULL: the data phase moves guest memory directly.
     */
    uint8_t *buf;
    uint64_t buf_len;           /* a READ's bytes in it */
    uint64_t buf_pos;           /* bytes moved between it and the initiator */
    bool buf_io;                /* the disk is filling or reading it */
};

/*
 * The register file and the SCRIPTS RAM: plain data (no pointers, no bool),
 * kept in the checkpoint (device_checkpoint) so that a restarted process
 * finds the registers the driver programmed and the SCRIPTS it loaded.
 */
struct lsi_regs {
    uint32_t dsa, temp, dnad, dbc, dsp, dsps, adder;
    uint8_t istat0, istat1, dcmd, dstat, dien, sist0, sist1, sien0, sien1;
    /* The second level of the interrupt stack, behind DSTAT, SIST0 and SIST1. */
    uint8_t stacked_dstat, stacked_sist0, stacked_sist1;
    uint8_t status_read;        /* a read cleared DSTAT or SIST: unstack after it */
    uint8_t mbox0, mbox1, dfifo, ctest2, ctest3, ctest4, ctest5, ccntl0, ccntl1;
    uint8_t dmode, dcntl, scntl0, scntl1, scntl2, scntl3, sstat0, sstat1;
    uint8_t scid, sxfer, socl, sdid, ssid, sfbr, sbcl, stest1, stest2, stest3;
    uint8_t sidl, stime0, respid0, respid1, sbr;
    uint32_t mmrs, mmws, sfs, drs, sbms, dbms, dnad64, pmjad1, pmjad2;
    uint32_t rbc, ua, esa, ia, sbc, csbc;
    uint32_t scratch[18];       /* SCRATCHA, SCRATCHB, SCRATCHC..R */

    uint8_t ram[LSI_RAM_SIZE];
};

struct lsi {
    struct device dev;
    struct pci_device pci;
    struct scsi_bus bus;
    struct loop *loop;
    struct loop_bh resume_bh;
    bool running;               /* inside run_scripts(): no recursion */
    /*
     * Instructions (and bytes copied, charge_bytes) since the last progress
     * on the bus: a command taken by a target, data moved, a reselection.
     */
    uint64_t insn_since_progress;
    /* x-insn-without-progress: so many is a guest looping, reported as UDC. */
    uint64_t insn_without_progress;
    uint32_t copy_budget;       /* bytes this activation may still copy */

    /* SCSI-side state. */
    enum wait_state waiting;
    bool phase_valid;           /* the target asserts REQ for sstat1's phase */
    bool mismatch_pending;      /* a data move outlived the data: mismatch at status */
    bool move_aborted;          /* SCRIPTS were aborted under the data move in flight */
    int carry;
    uint8_t status;
    enum msg_action msg_action;
    uint8_t msg[MSG_IN_MAX];
    unsigned msg_len;
    uint32_t select_tag;
    unsigned current_lun;
    bool disc_priv;
    struct lsi_cmd *current;
    struct lsi_cmd *queue;      /* disconnected, oldest first */
    struct lsi_cmd **queue_tail;
    struct scsi_buffer_pool *buffers;

    /* The register file and SCRIPTS RAM, in the checkpoint. */
    struct lsi_regs *r;
};

static uint8_t reg_read(struct lsi *s, unsigned off);
static void reg_write(struct lsi *s, unsigned off, uint8_t val);
static void run_scripts(struct lsi *s);
static void reselect(struct lsi *s, struct lsi_cmd *c);

static struct lsi *lsi_of(struct pci_device *pci)
{
    return (struct lsi *)((char *)pci - offsetof(struct lsi, pci));
}

static uint32_t sign_extend24(uint32_t v)
{
    return (v & 0x800000) ? (v | 0xff000000u) : (v & 0xffffff);
}

/* --- interrupts ----------------------------------------------------------- */

static bool irq_on_reselect(const struct lsi *s)
{
    return (s->r->sien0 & SIST0_RSL) && (s->r->scid & SCID_RRE);
}

/* Bytes of the data phase still to move between the initiator and the command. */
static uint64_t data_left(const struct lsi_cmd *c)
{
    const struct scsi_request *r = c->req;

    if (c->buf) {
        return (r->dir == SCSI_XFER_FROM_DEV ? c->buf_len : r->xfer_len) - c->buf_pos;
    }
    return r->completed ? 0 : r->xfer_len - r->offset;
}

/* Ready to reselect once it has data to move or a status to report, and no disk I/O on its buffer. */
static bool cmd_ready(const struct lsi_cmd *c)
{
    return !c->buf_io && (c->req->completed || data_left(c));
}

/* The longest waiting ready command: no command starves behind newer ones. */
static struct lsi_cmd *ready_cmd(struct lsi *s)
{
    for (struct lsi_cmd *c = s->queue; c; c = c->next) {
        if (cmd_ready(c)) {
            return c;
        }
    }
    return NULL;
}

static void queue_append(struct lsi *s, struct lsi_cmd *c)
{
    c->next = NULL;
    *s->queue_tail = c;
    s->queue_tail = &c->next;
}

static void queue_remove(struct lsi *s, struct lsi_cmd *c)
{
    for (struct lsi_cmd **pp = &s->queue; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            if (s->queue_tail == &c->next) {
                s->queue_tail = pp;
            }
            return;
        }
    }
}

static void update_irq(struct lsi *s)
{
    bool level = false;

    if (s->r->dstat) {
        level |= (s->r->dstat & s->r->dien) != 0;
        s->r->istat0 |= ISTAT0_DIP;
    } else {
        s->r->istat0 &= ~ISTAT0_DIP;
    }
    if (s->r->sist0 || s->r->sist1) {
        level |= (s->r->sist0 & s->r->sien0) || (s->r->sist1 & s->r->sien1);
        s->r->istat0 |= ISTAT0_SIP;
    } else {
        s->r->istat0 &= ~ISTAT0_SIP;
    }
    level |= (s->r->istat0 & ISTAT0_INTF) != 0;
    pci_set_irq(&s->pci, level);

    /* With the interrupts serviced and the bus free, a target may reselect. */
    if (!level && !s->current && irq_on_reselect(s) && !(s->r->scntl1 & SCNTL1_CON)) {
        struct lsi_cmd *c = ready_cmd(s);

        if (c) {
            reselect(s, c);
        }
    }
}

static void stop_scripts(struct lsi *s)
{
    s->r->istat1 &= ~ISTAT1_SRUN;
}

/*
 * Interrupts stack as the manual describes: while one is pending (SIP or
 * DIP in ISTAT), new conditions go to a second level behind DSTAT, SIST0
 * and SIST1, and move up once the first level has been read empty.
 */
static bool interrupt_pending(const struct lsi *s)
{
    return s->r->istat0 & (ISTAT0_SIP | ISTAT0_DIP);
}

/* A selection timeout not yet read, at either level of the stack. */
static bool selection_timed_out(const struct lsi *s)
{
    return (s->r->sist1 | s->r->stacked_sist1) & SIST1_STO;
}

/* After a read that cleared DSTAT or SIST (the whole access, both SIST bytes). */
static void unstack_interrupts(struct lsi *s)
{
    if (!s->r->status_read) {
        return;
    }
    s->r->status_read = false;
    if (!s->r->dstat && !s->r->sist0 && !s->r->sist1) {
        s->r->dstat = s->r->stacked_dstat;
        s->r->sist0 = s->r->stacked_sist0;
        s->r->sist1 = s->r->stacked_sist1;
        s->r->stacked_dstat = s->r->stacked_sist0 = s->r->stacked_sist1 = 0;
    }
    update_irq(s);
}

/* A SCSI interrupt; fatal or unmasked ones stop SCRIPTS (the manual, 5.x SIEN). */
static void scsi_interrupt(struct lsi *s, uint8_t stat0, uint8_t stat1)
{
    uint8_t fatal0 = s->r->sien0 | (uint8_t)~(SIST0_CMP | SIST0_SEL | SIST0_RSL);
    uint8_t fatal1 = (s->r->sien1 | (uint8_t)~(SIST1_GEN | SIST1_HTH)) & (uint8_t)~SIST1_STO;

    if (interrupt_pending(s)) {
        s->r->stacked_sist0 |= stat0;
        s->r->stacked_sist1 |= stat1;
    } else {
        s->r->sist0 |= stat0;
        s->r->sist1 |= stat1;
    }
    if ((stat0 & fatal0) || (stat1 & fatal1)) {
        stop_scripts(s);
    }
    update_irq(s);
}

static void dma_interrupt(struct lsi *s, uint8_t stat)
{
    if (interrupt_pending(s)) {
        s->r->stacked_dstat |= stat;
    } else {
        s->r->dstat |= stat;
    }
    update_irq(s);
    stop_scripts(s);
}

/* --- SCSI phases ------------------------------------------------------------ */

static void set_phase(struct lsi *s, int phase)
{
    s->r->sbcl = (uint8_t)((s->r->sbcl & ~7) | phase | SBCL_REQ);
    s->r->sstat1 = (uint8_t)((s->r->sstat1 & ~7) | phase);
    s->phase_valid = true;
}

static void bad_phase(struct lsi *s, bool out, int new_phase)
{
    if (s->r->ccntl0 & CCNTL0_ENPMJ) {
        /* Phase mismatch jump instead of an interrupt. */
        if (s->r->ccntl0 & CCNTL0_PMJCTL) {
            s->r->dsp = out ? s->r->pmjad1 : s->r->pmjad2;
        } else {
            s->r->dsp = (s->r->scntl2 & SCNTL2_WSR) ? s->r->pmjad2 : s->r->pmjad1;
        }
    } else {
        scsi_interrupt(s, SIST0_MA, 0);
        stop_scripts(s);
    }
    set_phase(s, new_phase);
}

static void bus_disconnect(struct lsi *s)
{
    s->r->scntl1 &= ~SCNTL1_CON;
    s->r->sstat1 &= ~7;
    s->r->sbcl = 0;
    s->phase_valid = false;
}

static void add_msg(struct lsi *s, uint8_t b)
{
    if (s->msg_len < MSG_IN_MAX) {
        s->msg[s->msg_len++] = b;
    }
}

static void cmd_free(struct lsi *s, struct lsi_cmd *c)
{
    if (s->current == c) {
        s->current = NULL;
    }
    queue_remove(s, c);
    /* Its buffer goes with the request's last reference: I/O in flight may still hold it. */
    c->req->hba_private = NULL;
    scsi_req_unref(c->req);
    free(c);
}

/*
 * Ends a command whatever its state: a running one is cancelled (its
 * completion frees it), one already complete but not yet reported is freed.
 */
static void drop_cmd(struct lsi *s, struct lsi_cmd *c)
{
    if (c->req->completed) {
        cmd_free(s, c);
    } else {
        scsi_req_cancel(c->req);
    }
}

/* The phase that follows the command's progress: data, status, or none yet. */
static void next_phase_of_current(struct lsi *s)
{
    struct scsi_request *r = s->current->req;

    if (data_left(s->current)) {
        set_phase(s, r->dir == SCSI_XFER_TO_DEV ? PHASE_DO : PHASE_DI);
    } else if (r->completed) {
        s->status = r->status;
        set_phase(s, PHASE_ST);
    } else {
        s->phase_valid = false;     /* busy: the target holds REQ back */
    }
}

static void reselect(struct lsi *s, struct lsi_cmd *c)
{
    unsigned id = (c->tag >> 8) & 0xf;

    queue_remove(s, c);
    s->current = c;
    s->r->ssid = (uint8_t)(id | 0x80);
    if (!(s->r->dcntl & DCNTL_COM)) {
        s->r->sfbr = (uint8_t)(1 << (id & 7));     /* 53C700 compatibility */
    }
    s->r->scntl1 |= SCNTL1_CON;
    s->msg_len = 0;
    add_msg(s, (uint8_t)(0x80 | c->lun));       /* IDENTIFY */
    if (c->tag & TAG_VALID) {
        add_msg(s, 0x20);                       /* SIMPLE QUEUE TAG */
        add_msg(s, (uint8_t)c->tag);
    }
    s->msg_action = AFTER_MSG_DATA;
    set_phase(s, PHASE_MI);
    s->insn_since_progress = 0;
    if (irq_on_reselect(s)) {
        scsi_interrupt(s, SIST0_RSL, 0);
    }
}

/* A command became ready: reselect now if the initiator is waiting for it. */
static void maybe_reselect(struct lsi *s)
{
    struct lsi_cmd *c;

    if (s->current || (s->r->scntl1 & SCNTL1_CON)) {
        return;
    }
    c = ready_cmd(s);
    if (!c) {
        return;
    }
    if (s->waiting == WAIT_RESELECT) {
        reselect(s, c);
        s->waiting = RUNNING_FREE;
        run_scripts(s);
    } else if (irq_on_reselect(s) && !(s->r->istat0 & (ISTAT0_SIP | ISTAT0_DIP))) {
        reselect(s, c);
    }
}

static void resume_later(void *opaque)
{
    run_scripts(opaque);
}

/* The target finished a command (bus callback). */
static void on_complete(struct scsi_request *req)
{
    struct lsi_cmd *c = req->hba_private;
    struct lsi *s;

    if (!c) {
        return;
    }
    s = c->s;
    if (req->cancelled) {
        cmd_free(s, c);
        return;
    }
    if (c != s->current) {
        maybe_reselect(s);
        return;
    }
    s->status = req->status;
    if (s->waiting == WAIT_DATA) {
        return;     /* the transfer's own callback moves on */
    }
    if (s->waiting == WAIT_PHASE) {
        s->waiting = RUNNING_FREE;
        if (s->mismatch_pending) {
            s->mismatch_pending = false;
            bad_phase(s, req->dir == SCSI_XFER_TO_DEV, PHASE_ST);
        } else {
            next_phase_of_current(s);
        }
        loop_bh_schedule(s->loop, &s->resume_bh);
    } else if (!s->phase_valid) {
        next_phase_of_current(s);
    }
}

static const struct scsi_bus_ops lsi_bus_ops = { .complete = on_complete };

/* --- bus-master memory access --------------------------------------------- */

/*
 * A memory move, a buffered block move or a MESSAGE OUT move took 'n'
 * bytes: run_scripts yields once they add up, and each 'per_insn' of them
 * counts as one more instruction toward the unexpected disconnect, so that
 * a loop of 16 MiB moves is caught after as much work as one of small moves.
 */
static void charge_bytes(struct lsi *s, uint32_t n, uint32_t per_insn)
{
    s->copy_budget = n < s->copy_budget ? s->copy_budget - n : 0;
    s->insn_since_progress += n / per_insn;
}

/* Who makes a bus-master access: what it may reach differs. */
enum master {
    SCRIPTS_MASTER,     /* fetches, table entries, memory moves, LOAD/STORE */
    PHASE_MASTER,       /* the bytes of a SCSI phase (command, status, messages) */
};

/*
 * SCRIPTS, table entries and memory moves may name the chip's own register
 * and SCRIPTS RAM BARs as well as guest memory.  The bytes of a SCSI phase
 * never go to the registers: a block move keeps its bookkeeping (DBC, DNAD,
 * the message and the command in progress) across its access, and a
 * register written under it (ISTAT0 SRST, SCNTL1 RST, DSP...) would reset
 * or restart the chip in the middle of the move.  Such a move gets a bus
 * fault, as a bus-master cycle that no target claims.  Returns 0, or -1
 * for an access that hits nothing (the chip reports a bus fault).
 * 'len' bytes that one target decodes (mem_access splits the others).
 */
static int target_access(struct lsi *s, uint64_t addr, uint8_t *p, size_t len, bool write,
                         bool io_space, enum master who)
{
    uint64_t off;
    int bar;

    bar = len <= UINT32_MAX ? pci_bar_find(&s->pci, !io_space, addr, (unsigned)len, &off) : -1;
    if (bar == 2) {
        if (write) {
            memcpy(s->r->ram + off, p, len);
        } else {
            memcpy(p, s->r->ram + off, len);
        }
        return 0;
    }
    if (bar == 0 || bar == 1) {
        if (who == PHASE_MASTER) {
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            if (write) {
                reg_write(s, (unsigned)(off + i) & 0xff, p[i]);
            } else {
                p[i] = reg_read(s, (unsigned)(off + i) & 0xff);
            }
        }
        unstack_interrupts(s);
        return 0;
    }
    if (io_space || !s->pci.dma) {
        return -1;
    }
    return write ? dma_write(s->pci.dma, addr, p, len) : dma_read(s->pci.dma, addr, p, len);
}

/*
 * A bus-master access, split where a BAR window begins or ends, so that
 * every byte goes where the bus decodes it: a BAR mapped over guest memory
 * hides the memory under it from the first byte to the last, however the
 * access is cut (a MESSAGE OUT move's read-ahead, a memory move's chunks).
 * Bytes before a fault may have been moved.  The chip's accesses come
 * through access32(), which keeps them below 4 GiB.
 */
static int mem_access(struct lsi *s, uint64_t addr, void *buf, size_t len, bool write,
                      bool io_space, enum master who)
{
    uint8_t *p = buf;

    if (!pci_bus_master(&s->pci) || !len) {
        return len ? -1 : 0;
    }
    while (len) {
        size_t n = (size_t)pci_bar_run(&s->pci, !io_space, addr, len);

        if (target_access(s, addr, p, n, write, io_space, who) < 0) {
            return -1;
        }
        addr += n;
        p += n;
        len -= n;
    }
    return 0;
}

/*
 * How many of 'len' bytes from 'addr' on lie below 4 GiB, where the chip's
 * 32-bit address counter goes on at 0: all of them, or the first piece of
 * an access that wraps (never none: 'len' is not 0).
 */
static size_t below_4g(uint32_t addr, size_t len)
{
    uint64_t room = (1ull << 32) - addr;

    return len < room ? len : (size_t)room;
}

/*
 * An access of the chip's 32-bit bus master: SCRIPTS fetches, table
 * entries, memory moves, LOAD/STORE and the bytes of a SCSI phase.  Its
 * address counter has 32 bits, so bytes past 4 GiB are at 0 on, as they
 * would be one by one, however many are moved at once (a memory move's
 * chunk, a MESSAGE OUT move's read-ahead), never at 4 GiB.  'len' is
 * under 4 GiB.
 */
static int access32(struct lsi *s, uint32_t addr, void *buf, size_t len, bool write,
                    bool io_space, enum master who)
{
    size_t first = below_4g(addr, len);

    if (mem_access(s, addr, buf, first, write, io_space, who) < 0) {
        return -1;
    }
    return mem_access(s, 0, (uint8_t *)buf + first, len - first, write, io_space, who);
}

static int mem_read(struct lsi *s, uint32_t addr, void *buf, size_t len)
{
    return access32(s, addr, buf, len, false, s->r->dmode & 0x20, SCRIPTS_MASTER);   /* SIOM */
}

static int mem_write(struct lsi *s, uint32_t addr, const void *buf, size_t len)
{
    return access32(s, addr, (void *)buf, len, true, s->r->dmode & 0x10, SCRIPTS_MASTER);
}

/* The bytes of a command, status or message phase, at DNAD. */
static int phase_access(struct lsi *s, void *buf, size_t len, bool write)
{
    bool io_space = s->r->dmode & (write ? 0x10 : 0x20);     /* DIOM, SIOM */

    return access32(s, s->r->dnad, buf, len, write, io_space, PHASE_MASTER);
}

static int phase_read(struct lsi *s, void *buf, size_t len)
{
    return phase_access(s, buf, len, false);
}

static int phase_write(struct lsi *s, const void *buf, size_t len)
{
    return phase_access(s, (void *)buf, len, true);
}

static int fetch_dword(struct lsi *s, uint32_t addr, uint32_t *val)
{
    uint8_t b[4];

    if (access32(s, addr, b, 4, false, false, SCRIPTS_MASTER) < 0) {
        return -1;
    }
    *val = le32(b);
    return 0;
}

static void bus_fault(struct lsi *s)
{
    dma_interrupt(s, DSTAT_BF);
}

/* --- data phases -------------------------------------------------------- */

/*
 * Has the data address DNAD64 as its high half?  With any of CCNTL1's
 * 64-bit bits set (64-bit direct moves, 64-bit or 40-bit table indirect
 * moves), block_move() loaded it, and a move runs on across 4 GiB.
 */
static bool data_address64(const struct lsi *s)
{
    return s->r->ccntl1 & (CCNTL1_EN64DBMV | CCNTL1_EN64TIBMV | CCNTL1_64TIMOD);
}

static uint64_t data_address(const struct lsi *s)
{
    return (uint64_t)(data_address64(s) ? s->r->dnad64 : 0) << 32 | s->r->dnad;
}

/*
 * How many of a data phase's 'count' bytes move as one piece: a 32-bit
 * address wraps at 4 GiB as DNAD does, so a move across it is two pieces,
 * the second at 0 (data_moved() takes DNAD there).  Zero-copy mappings
 * and buffer copies never cross 4 GiB in one.
 */
static uint32_t data_piece(const struct lsi *s, uint32_t count)
{
    return data_address64(s) ? count : (uint32_t)below_4g(s->r->dnad, count);
}

/*
 * 'n' bytes of the move went over the bus: DNAD on (a 64-bit address
 * carries into DNAD64, so that a move continued in pieces runs on as one
 * mapped whole does), DBC down, progress made.
 */
static void data_moved(struct lsi *s, uint32_t n)
{
    uint32_t dnad = s->r->dnad + n;

    if (data_address64(s) && dnad < s->r->dnad) {
        s->r->dnad64++;
    }
    s->r->dnad = dnad;
    s->r->dbc -= n;
    s->r->csbc += n;
    s->insn_since_progress = 0;
}

static void data_done(struct scsi_request *req, int n);
static void buffer_move(struct lsi *s, bool out, uint32_t count);

/* The move wants more than the data phase holds: a phase mismatch once the status is there. */
static void data_exhausted(struct lsi *s, struct scsi_request *r, bool out)
{
    if (r->completed) {
        s->status = r->status;
        bad_phase(s, out, PHASE_ST);
    } else {
        s->phase_valid = false;
        s->mismatch_pending = true;
        s->waiting = WAIT_PHASE;
    }
}

static bool may_dma(struct lsi *s)
{
    return s->pci.dma && pci_bus_master(&s->pci);
}

static void start_data(struct lsi *s, bool out)
{
    struct scsi_request *r = s->current->req;
    uint64_t left = data_left(s->current);
    uint32_t count = s->r->dbc < left ? s->r->dbc : (uint32_t)left;
    struct iovec iov[MAX_DATA_IOV];
    int n;

    if (count == 0) {
        data_exhausted(s, r, out);      /* no more data for this move: on to status */
        return;
    }
    if (s->current->buf) {
        buffer_move(s, out, count);
        return;
    }
    /*
     * The request's mapping outlives a cancel's I/O in flight, bounce buffer
     * and all.  A piece up to 4 GiB; data_done() starts the rest at 0.  A
     * piece over more than MAX_DATA_IOV regions maps the prefix that fits
     * (or a bounce buffer's worth), and data_done() moves on from its end.
     */
    n = may_dma(s) ? dma_mapping_map(&r->hba_dma, s->pci.dma, data_address(s),
                                     data_piece(s, count), !out, iov, MAX_DATA_IOV)
                   : -1;
    if (n < 0) {
        bus_fault(s);
        return;
    }
    s->waiting = WAIT_DATA;
    scsi_req_transfer(r, iov, n, data_done);
}

static void data_done(struct scsi_request *req, int n)
{
    struct lsi_cmd *c = req->hba_private;
    struct lsi *s = c->s;
    bool out = req->dir == SCSI_XFER_TO_DEV, aborted = s->move_aborted;

    s->waiting = RUNNING_FREE;
    s->move_aborted = false;
    /* Guest memory gone under the move (a truncated file), or a bounced move not written back. */
    if (dma_mapping_complete(&req->hba_dma, s->pci.dma, n) < 0 || n == -EFAULT) {
        bus_fault(s);
        return;
    }
    if (n > 0) {
        data_moved(s, (uint32_t)n);
    }
    if (aborted) {
        next_phase_of_current(s);   /* the move ends here; SCRIPTS go on only if restarted */
        loop_bh_schedule(s->loop, &s->resume_bh);
        return;
    }
    if (n > 0 && s->r->dbc && req->offset < req->xfer_len) {
        start_data(s, out);     /* more of the same move */
        return;
    }
    if (s->r->dbc) {
        data_exhausted(s, req, out);    /* a short transfer */
    } else {
        next_phase_of_current(s);
    }
    if (s->waiting != WAIT_PHASE) {
        loop_bh_schedule(s->loop, &s->resume_bh);
    }
}

/* --- data through the command's buffer --------------------------------------- */

static void buffer_io_done(struct scsi_request *req, int n);

/*
 * The target frees the bus while the command works: SAVE DATA POINTER,
 * DISCONNECT; it reselects once the command has data or status (cmd_ready).
 */
static void disconnect_current(struct lsi *s)
{
    s->msg_len = 0;
    add_msg(s, 0x02);           /* SAVE DATA POINTER */
    add_msg(s, 0x04);           /* DISCONNECT */
    s->msg_action = AFTER_MSG_DISCONNECT;
    queue_append(s, s->current);
    s->current = NULL;
}

/* The disk moves the whole data phase between the command's buffer and the image. */
static void start_buffer_io(struct lsi_cmd *c)
{
    struct iovec iov = { .iov_base = c->buf, .iov_len = (size_t)c->req->xfer_len };

    c->buf_io = true;
    scsi_req_transfer(c->req, &iov, 1, buffer_io_done);
}

static void buffer_io_done(struct scsi_request *req, int n)
{
    struct lsi_cmd *c = req->hba_private;

    if (!c) {
        return;         /* dropped meanwhile: the buffer goes with the request */
    }
    c->buf_io = false;
    if (req->dir == SCSI_XFER_FROM_DEV) {
        c->buf_len = n > 0 ? (uint64_t)n : 0;
    }
    /* A failure completed the request already; a success completes it next (on_complete). */
    maybe_reselect(c->s);
}

/*
 * A tagged command about to disconnect: does its data wait in a buffer?
 * Disk data only (emulated replies are buffered already), within the
 * per-command and per-controller bounds.
 */
static bool take_buffer(struct lsi *s, struct lsi_cmd *c)
{
    struct scsi_request *r = c->req;

    if (r->dir == SCSI_XFER_NONE || r->buffered || r->completed || !r->xfer_len ||
        r->xfer_len > BUFFER_PER_COMMAND) {
        return false;
    }
    c->buf = scsi_req_buffer(r, s->buffers, (size_t)r->xfer_len);
    return c->buf != NULL;
}

/*
 * Copies a piece (data_piece()) between the buffer and guest memory at the
 * data address; 0, or -1 for memory that is not there.
 */
static int buffer_copy(struct lsi *s, uint8_t *at, uint32_t count, bool out)
{
    if (!may_dma(s)) {
        return -1;
    }
    return out ? dma_read(s->pci.dma, data_address(s), at, count)
               : dma_write(s->pci.dma, data_address(s), at, count);
}

/*
 * A block move of a buffered command: a copy, done at once, in pieces that
 * do not cross 4 GiB (data_piece()); a fault stops it after the pieces
 * moved.  A WRITE whose last byte came goes to the disk, and the target
 * disconnects until it is written (a move asking for more ends in a phase
 * mismatch).
 */
static void buffer_move(struct lsi *s, bool out, uint32_t count)
{
    struct lsi_cmd *c = s->current;
    struct scsi_request *r = c->req;

    for (uint32_t n; count; count -= n) {
        n = data_piece(s, count);
        if (buffer_copy(s, c->buf + c->buf_pos, n, out) < 0) {
            bus_fault(s);
            return;
        }
        charge_bytes(s, n, COPY_PER_INSN);
        c->buf_pos += n;
        data_moved(s, n);
    }
    if (out && c->buf_pos == r->xfer_len) {
        disconnect_current(s);
        if (s->r->dbc) {
            bad_phase(s, out, PHASE_MI);
        } else {
            set_phase(s, PHASE_MI);
        }
        start_buffer_io(c);
    } else if (s->r->dbc) {
        data_exhausted(s, r, out);
    } else {
        next_phase_of_current(s);
    }
}

/* --- command, status and message phases ------------------------------------ */

static void bad_selection(struct lsi *s)
{
    scsi_interrupt(s, 0, SIST1_STO);
    bus_disconnect(s);
}

/* A disconnected command of the same I_T_L nexus with this tag. */
static bool tag_in_use(const struct lsi *s, uint32_t tag, unsigned lun)
{
    for (const struct lsi_cmd *c = s->queue; c; c = c->next) {
        if (c->tag == tag && c->lun == lun) {
            return true;
        }
    }
    return false;
}

static void do_command(struct lsi *s)
{
    uint8_t cdb[SCSI_CDB_MAX];
    uint32_t len = s->r->dbc > SCSI_CDB_MAX ? SCSI_CDB_MAX : s->r->dbc;
    unsigned target = (s->select_tag >> 8) & 0xf;
    struct lsi_cmd *c;
    struct scsi_request *r;

    if (s->current) {
        /* The nexus already has a command: a target would not take another. */
        scsi_interrupt(s, SIST0_MA, 0);
        return;
    }
    if (!len || phase_read(s, cdb, len) < 0) {
        bus_fault(s);
        return;
    }
    s->r->sfbr = cdb[0];
    s->r->dnad += len;
    s->r->dbc = 0;
    if (!scsi_target_present(&s->bus, target)) {
        bad_selection(s);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        bad_selection(s);
        return;
    }
    c->s = s;
    c->tag = s->select_tag;
    c->lun = s->current_lun;
    r = scsi_req_new(&s->bus, target, c->lun, c->tag & 0xff, cdb, len, c);
    if (!r) {
        free(c);
        bad_selection(s);
        return;
    }
    c->req = r;
    s->current = c;
    s->insn_since_progress = 0;
    if ((c->tag & TAG_VALID) && tag_in_use(s, c->tag, c->lun)) {
        /*
         * A tag already in the task set (SAM-5 5.10: an overlapped command):
         * ABORTED COMMAND, TAGGED OVERLAPPED COMMANDS with the tag.  The
         * older command goes on.  This also bounds what a guest can queue:
         * 256 tags per logical unit.
         */
        scsi_req_check_condition(r, (struct scsi_sense){ 0x0b, 0x4d, (uint8_t)c->tag });
    } else {
        scsi_req_start(r);
    }
    if (!s->current) {
        return;         /* cancelled from inside: nothing more */
    }
    if ((c->tag & TAG_VALID) && s->disc_priv && !r->completed) {
        bool buffered = take_buffer(s, c);

        if (buffered && r->dir == SCSI_XFER_TO_DEV) {
            next_phase_of_current(s);   /* the data now, into the buffer; then disconnect */
            return;
        }
        /* Free the bus while the command waits; reselect for its data or status. */
        disconnect_current(s);
        set_phase(s, PHASE_MI);
        if (buffered) {
            start_buffer_io(c);         /* the READ's data comes in meanwhile */
        }
        return;
    }
    next_phase_of_current(s);
}

static void do_status(struct lsi *s)
{
    uint8_t status = s->status;
    struct lsi_cmd *c = s->current;

    s->r->sfbr = status;
    if (phase_write(s, &status, 1) < 0) {
        bus_fault(s);
        return;
    }
    s->r->dnad += 1;
    s->r->dbc = s->r->dbc ? s->r->dbc - 1 : 0;
    s->msg_len = 0;
    add_msg(s, 0x00);           /* COMMAND COMPLETE */
    s->msg_action = AFTER_MSG_DISCONNECT;
    set_phase(s, PHASE_MI);
    if (c) {
        cmd_free(s, c);
    }
}

static void do_msgin(struct lsi *s)
{
    uint32_t len = s->msg_len < s->r->dbc ? s->msg_len : s->r->dbc;

    if (!s->msg_len) {
        bus_disconnect(s);      /* nothing to say: the target lets go */
        return;
    }
    if (!len) {
        return;
    }
    if (phase_write(s, s->msg, len) < 0) {
        bus_fault(s);
        return;
    }
    s->r->sfbr = s->msg[0];
    s->r->sidl = s->msg[len - 1];  /* Linux reads the last byte from SIDL */
    s->r->dnad += len;
    s->r->dbc -= len;
    s->msg_len -= len;
    memmove(s->msg, s->msg + len, s->msg_len);
    if (s->msg_len) {
        return;
    }
    switch (s->msg_action) {
    case AFTER_MSG_COMMAND:
        set_phase(s, PHASE_CMD);
        break;
    case AFTER_MSG_DISCONNECT:
        bus_disconnect(s);
        s->current = NULL;
        break;
    case AFTER_MSG_DATA:
        if (s->current) {
            next_phase_of_current(s);
        } else {
            bus_disconnect(s);
        }
        break;
    }
}

/*
 * The bytes of a MESSAGE OUT move, read ahead from DNAD: a move of 16 MiB
 * of tags read a byte at a time held the loop for over a second.
 */
struct msgout_bytes {
    uint8_t buf[256];
    uint32_t pos, len;
};

/* Reads ahead; a read that fails is tried again for one byte, so a fault comes at its byte. */
static int msgout_read_ahead(struct lsi *s, struct msgout_bytes *in)
{
    uint32_t n = s->r->dbc < sizeof(in->buf) ? s->r->dbc : (uint32_t)sizeof(in->buf);

    if (phase_read(s, in->buf, n) < 0) {
        n = 1;
        if (phase_read(s, in->buf, n) < 0) {
            return -1;
        }
    }
    in->pos = 0;
    in->len = n;
    return 0;
}

static int msgout_byte(struct lsi *s, struct msgout_bytes *in, uint8_t *b)
{
    if (!s->r->dbc || (in->pos == in->len && msgout_read_ahead(s, in) < 0)) {
        return -1;
    }
    *b = in->buf[in->pos++];
    s->r->dnad++;
    s->r->dbc--;
    return 0;
}

/* Answers a negotiation with what this chip does: wide, Ultra2, no DT. */
static int negotiate(struct lsi *s, struct msgout_bytes *in, uint8_t code, uint8_t len)
{
    uint8_t b[6] = { 0 };

    if (len > sizeof(b)) {
        return -1;      /* no extended message we know is this long */
    }
    for (unsigned i = 0; i < len; i++) {
        if (msgout_byte(s, in, &b[i]) < 0) {
            return -1;
        }
    }
    s->msg_len = 0;
    add_msg(s, 0x01);
    switch (code) {
    case 0x01:                  /* SDTR: period factor, offset */
        if (len != 2) {
            return -1;
        }
        add_msg(s, 3);
        add_msg(s, 0x01);
        add_msg(s, b[0] < 0x0a ? 0x0a : b[0]);
        add_msg(s, b[1] > 31 ? 31 : b[1]);
        break;
    case 0x03:                  /* WDTR: width exponent */
        if (len != 1) {
            return -1;
        }
        add_msg(s, 2);
        add_msg(s, 0x03);
        add_msg(s, b[0] > 1 ? 1 : b[0]);
        break;
    case 0x04:                  /* PPR: period, reserved, offset, width, options */
        if (len != 5) {
            return -1;
        }
        add_msg(s, 6);
        add_msg(s, 0x04);
        add_msg(s, b[0] < 0x0a ? 0x0a : b[0]);
        add_msg(s, 0);
        add_msg(s, b[2] > 31 ? 31 : b[2]);
        add_msg(s, b[3] > 1 ? 1 : b[3]);
        add_msg(s, 0);          /* protocol options: no DT, IU or QAS on this chip */
        break;
    default:
        return -1;
    }
    s->msg_action = AFTER_MSG_COMMAND;
    set_phase(s, PHASE_MI);
    return 0;
}

static struct lsi_cmd *find_tag(struct lsi *s, uint32_t tag)
{
    if (s->current && s->current->tag == tag) {
        return s->current;
    }
    for (struct lsi_cmd *c = s->queue; c; c = c->next) {
        if (c->tag == tag) {
            return c;
        }
    }
    return NULL;
}

/* ABORT, CLEAR QUEUE, BUS DEVICE RESET: every command of the target goes. */
static void abort_target(struct lsi *s, unsigned target)
{
    struct lsi_cmd *c = s->queue;

    if (s->current && ((s->current->tag >> 8) & 0xf) == target) {
        drop_cmd(s, s->current);
    }
    while (c) {
        struct lsi_cmd *next = c->next;

        if (((c->tag >> 8) & 0xf) == target) {
            drop_cmd(s, c);
        }
        c = next;
    }
}

static void reject(struct lsi *s)
{
    s->msg_len = 0;
    add_msg(s, 0x07);           /* MESSAGE REJECT */
    s->msg_action = AFTER_MSG_COMMAND;
    set_phase(s, PHASE_MI);
}

/* The nexus the messages are about, as far as they have named it. */
static uint32_t current_tag(const struct lsi *s)
{
    return s->current ? s->current->tag : s->select_tag;
}

static void take_messages(struct lsi *s)
{
    struct msgout_bytes in = { .len = 0 };
    uint8_t m, arg;

    while (s->r->dbc) {
        if (msgout_byte(s, &in, &m) < 0) {
            bus_fault(s);
            return;
        }
        s->r->sfbr = m;
        if (m & 0x80) {                         /* IDENTIFY */
            s->current_lun = m & 7;
            s->disc_priv = m & 0x40;
            set_phase(s, PHASE_CMD);
            continue;
        }
        switch (m) {
        case 0x01: {                            /* extended message */
            uint8_t len, code;

            if (msgout_byte(s, &in, &len) < 0 || msgout_byte(s, &in, &code) < 0 || !len ||
                negotiate(s, &in, code, (uint8_t)(len - 1)) < 0) {
                reject(s);
                return;
            }
            return;     /* the reply goes out in MESSAGE IN */
        }
        case 0x20: case 0x21: case 0x22:        /* SIMPLE, HEAD OF QUEUE, ORDERED tag */
            if (msgout_byte(s, &in, &arg) < 0) {
                reject(s);
                return;
            }
            s->select_tag = (s->select_tag & ~0xffu) | arg | TAG_VALID;
            break;
        case 0x0d: {                            /* ABORT TAG */
            struct lsi_cmd *c = find_tag(s, current_tag(s));

            if (c) {
                drop_cmd(s, c);
            }
            bus_disconnect(s);
            return;
        }
        case 0x06: case 0x0c: case 0x0e:        /* ABORT, BUS DEVICE RESET, CLEAR QUEUE */
            abort_target(s, (current_tag(s) >> 8) & 0xf);
            bus_disconnect(s);
            return;
        case 0x04:                              /* DISCONNECT, from the initiator */
            bus_disconnect(s);
            return;
        case 0x07: case 0x08:                   /* MESSAGE REJECT, NO OPERATION */
            set_phase(s, PHASE_CMD);
            break;
        default:
            reject(s);
            return;
        }
    }
}

/* IDENTIFY, tags and NO OPERATION let a MESSAGE OUT move go on, through 16 MiB of them. */
static void do_msgout(struct lsi *s)
{
    uint32_t dbc = s->r->dbc;

    take_messages(s);
    charge_bytes(s, dbc > s->r->dbc ? dbc - s->r->dbc : 0, MSGOUT_PER_INSN);
}

/* --- SCRIPTS ---------------------------------------------------------------- */

static void wait_for_phase(struct lsi *s, uint32_t insn_len)
{
    s->r->dsp -= insn_len;     /* run the instruction again once REQ is asserted */
    s->waiting = WAIT_PHASE;
}

static void block_move(struct lsi *s, uint32_t insn, uint32_t addr)
{
    uint32_t high = 0;
    int phase = (insn >> 24) & 7;

    if (selection_timed_out(s)) {
        stop_scripts(s);    /* a selection timed out: stop at the next bus access */
        return;
    }
    /* Before any extra fetch, so that running it again starts 8 bytes back. */
    if ((s->r->scntl1 & SCNTL1_CON) && !s->phase_valid) {
        wait_for_phase(s, 8);
        return;
    }
    s->r->dbc = insn & 0xffffff;
    s->r->rbc = s->r->dbc;
    s->r->ia = s->r->dsp - 8;
    if (insn & (1u << 29)) {                        /* indirect */
        if (fetch_dword(s, addr, &addr) < 0) {
            bus_fault(s);
            return;
        }
    } else if (insn & (1u << 28)) {                 /* table indirect, DSA-relative */
        uint32_t entry[2];

        if (access32(s, s->r->dsa + sign_extend24(addr), entry, 8, false, false,
                     SCRIPTS_MASTER) < 0) {
            bus_fault(s);
            return;
        }
        s->r->dbc = entry[0] & 0xffffff;   /* SCRIPTS tables are little-endian, as is the host */
        s->r->rbc = s->r->dbc;
        addr = entry[1];
        if ((s->r->ccntl1 & (CCNTL1_EN64TIBMV | CCNTL1_64TIMOD)) ==
            (CCNTL1_EN64TIBMV | CCNTL1_64TIMOD)) {
            high = entry[0] >> 24;      /* 40-bit: address bits 39:32 */
        } else if (s->r->ccntl1 & CCNTL1_EN64TIBMV) {
            unsigned sel = (entry[0] >> 24) & 0x1f;

            high = sel < 0x10 ? s->r->scratch[2 + sel] : sel == 0x10 ? s->r->mmrs :
                   sel == 0x11 ? s->r->mmws : sel == 0x12 ? s->r->sfs : sel == 0x13 ? s->r->drs :
                   sel == 0x14 ? s->r->sbms : sel == 0x15 ? s->r->dbms : 0;
        }
    } else if (s->r->ccntl1 & CCNTL1_EN64DBMV) {       /* a third dword: address high */
        if (fetch_dword(s, s->r->dsp, &s->r->dbms) < 0) {
            bus_fault(s);
            return;
        }
        s->r->dsp += 4;
        high = s->r->dbms;
    }
    if (!(s->r->scntl1 & SCNTL1_CON) || (s->r->sstat1 & 7) != phase) {
        scsi_interrupt(s, SIST0_MA, 0);             /* not the phase the target asserts */
        return;
    }
    s->r->dnad = addr;
    s->r->dnad64 = high;
    switch (phase) {
    case PHASE_DO:
    case PHASE_DI:
        if (!s->current) {
            scsi_interrupt(s, SIST0_MA, 0);
            return;
        }
        start_data(s, phase == PHASE_DO);
        break;
    case PHASE_CMD:
        do_command(s);
        break;
    case PHASE_ST:
        do_status(s);
        break;
    case PHASE_MO:
        do_msgout(s);
        break;
    case PHASE_MI:
        do_msgin(s);
        break;
    default:
        scsi_interrupt(s, SIST0_MA, 0);             /* reserved phases */
        break;
    }
    s->r->dfifo = (uint8_t)s->r->dbc;
    s->r->ctest5 = (uint8_t)((s->r->ctest5 & 0xfc) | ((s->r->dbc >> 8) & 3));
    s->r->sbc = s->r->dbc;
    s->r->ua = addr + s->r->dbc;
}

static void io_instruction(struct lsi *s, uint32_t insn, uint32_t addr, int opcode)
{
    uint32_t idword = insn;
    unsigned id;

    if (insn & (1u << 25)) {                        /* table indirect: ID from DSA */
        if (fetch_dword(s, s->r->dsa + sign_extend24(insn), &idword) < 0) {
            bus_fault(s);
            return;
        }
    }
    id = (idword >> 16) & 0xf;
    if (insn & (1u << 26)) {
        addr = s->r->dsp + sign_extend24(addr);
    }
    s->r->dnad = addr;
    switch (opcode) {
    case 0:                                         /* SELECT */
        s->r->sdid = (uint8_t)id;
        if (s->r->scntl1 & SCNTL1_CON) {
            s->r->dsp = s->r->dnad;                       /* reselected meanwhile */
            break;
        }
        s->r->sstat0 |= SSTAT0_WOA;
        if (!scsi_target_present(&s->bus, id)) {
            bad_selection(s);
            break;
        }
        s->select_tag = id << 8;
        s->current_lun = 0;
        s->disc_priv = false;
        s->r->scntl1 |= SCNTL1_CON;
        if (insn & (1u << 3)) {
            s->r->socl |= SOCL_ATN;
            s->r->sbcl |= SBCL_ATN;
        }
        s->r->sbcl |= SBCL_BSY;
        set_phase(s, PHASE_MO);
        /*
         * No progress toward the unexpected disconnect yet: a loop of
         * SELECT and WAIT DISCONNECT (or of SELECT and ABORT) would run
         * forever.  Progress is a command taken (do_command), data moved
         * or a reselection.
         */
        break;
    case 1:                                         /* WAIT DISCONNECT */
        bus_disconnect(s);
        break;
    case 2:                                         /* WAIT RESELECT */
        if (s->r->istat0 & ISTAT0_SIGP) {
            s->r->dsp = s->r->dnad;
        } else if (!s->current) {
            struct lsi_cmd *c = ready_cmd(s);

            if (c) {
                reselect(s, c);
            } else {
                s->waiting = WAIT_RESELECT;
            }
        }
        break;
    case 3:                                         /* SET */
    case 4:                                         /* CLEAR */
        if (insn & (1u << 3)) {
            s->r->socl = opcode == 3 ? (s->r->socl | SOCL_ATN) : (s->r->socl & ~SOCL_ATN);
            s->r->sbcl = opcode == 3 ? (s->r->sbcl | SBCL_ATN) : (s->r->sbcl & ~SBCL_ATN);
            if (opcode == 3 && (s->r->scntl1 & SCNTL1_CON)) {
                set_phase(s, PHASE_MO);             /* the target answers ATN */
            }
        }
        if (insn & (1u << 6)) {
            s->r->sbcl = opcode == 3 ? (s->r->sbcl | SBCL_ACK) : (s->r->sbcl & ~SBCL_ACK);
        }
        if (insn & (1u << 10)) {
            s->carry = opcode == 3;
        }
        break;
    }
}

static uint8_t alu(struct lsi *s, int op, uint8_t a, uint8_t b)
{
    unsigned r;

    switch (op) {
    case 0: return b;                               /* MOVE */
    case 1: r = (unsigned)a << 1 | (unsigned)s->carry; s->carry = a >> 7; return (uint8_t)r;
    case 2: return a | b;
    case 3: return a ^ b;
    case 4: return a & b;
    case 5: r = (unsigned)(a >> 1) | (unsigned)s->carry << 7; s->carry = a & 1; return (uint8_t)r;
    case 6: r = (unsigned)a + b; s->carry = r > 0xff; return (uint8_t)r;
    default: r = (unsigned)a + b + (unsigned)s->carry; s->carry = r > 0xff; return (uint8_t)r;
    }
}

static void register_instruction(struct lsi *s, uint32_t insn, int opcode)
{
    unsigned reg = ((insn >> 16) & 0x7f) | (insn & 0x80);
    uint8_t data = (uint8_t)(insn >> 8), a = 0, b = data;
    int op = (insn >> 24) & 7;

    if (opcode == 5) {                              /* SFBR op data -> register */
        a = s->r->sfbr;
    } else {
        a = op ? reg_read(s, reg) : 0;
        unstack_interrupts(s);
        if (opcode == 7 && (insn & (1u << 23))) {
            b = s->r->sfbr;
        }
    }
    a = alu(s, op, a, b);
    if (opcode == 6) {                              /* register op data -> SFBR */
        s->r->sfbr = a;
    } else {
        reg_write(s, reg, a);
    }
}

static void transfer_control(struct lsi *s, uint32_t insn, uint32_t addr)
{
    bool jmp = insn & (1u << 19), cond = jmp;

    if (!(insn & 0x002e0000)) {
        return;             /* tests nothing and jumps if false: a no-op */
    }
    if (selection_timed_out(s)) {
        stop_scripts(s);
        return;
    }
    if (cond == jmp && (insn & (1u << 21))) {
        cond = s->carry != 0;
    }
    if (cond == jmp && (insn & (1u << 17))) {
        if ((insn & (1u << 16)) && (s->r->scntl1 & SCNTL1_CON) && !s->phase_valid) {
            wait_for_phase(s, 8);                   /* WHEN: wait for a valid phase */
            return;
        }
        cond = (s->r->sstat1 & 7) == ((insn >> 24) & 7);
    }
    if (cond == jmp && (insn & (1u << 18))) {
        uint8_t mask = (uint8_t)(~insn >> 8);

        cond = (s->r->sfbr & mask) == (insn & mask);
    }
    if (cond != jmp) {
        return;
    }
    if (insn & (1u << 23)) {
        addr = s->r->dsp + sign_extend24(addr);
    }
    switch ((insn >> 27) & 7) {
    case 0:                                         /* JUMP */
        s->r->adder = addr;
        s->r->dsp = addr;
        break;
    case 1:                                         /* CALL */
        s->r->temp = s->r->dsp;
        s->r->dsp = addr;
        break;
    case 2:                                         /* RETURN */
        s->r->dsp = s->r->temp;
        break;
    case 3:                                         /* INT, INTFLY */
        if (insn & (1u << 20)) {
            s->r->istat0 |= ISTAT0_INTF;
            update_irq(s);
        } else {
            dma_interrupt(s, DSTAT_SIR);
        }
        break;
    default:
        dma_interrupt(s, DSTAT_IID);
        break;
    }
}

static void memory_instruction(struct lsi *s, uint32_t insn, uint32_t addr)
{
    uint8_t buf[COPY_CHUNK];

    if (!(insn & (1u << 29))) {                     /* MEMORY MOVE */
        uint32_t dest, count = insn & 0xffffff;

        if (fetch_dword(s, s->r->dsp, &dest) < 0) {
            bus_fault(s);
            return;
        }
        s->r->dsp += 4;
        /*
         * The move runs whole, however little budget is left, and the
         * activation ends after it: at most COPY_PER_ACTIVATION plus one
         * move (16 MiB) per activation.  Splitting a move across
         * activations would need its source, destination and count kept
         * in registers in between, and the manual's registers for them do
         * not serve: the destination would be TEMP, which Linux's driver
         * relies on keeping across a move (as QEMU's model notes), and a
         * driver may read or write any register, or restart SCRIPTS, while
         * SCRIPTS run.
         */
        charge_bytes(s, count, COPY_PER_INSN);
        while (count) {
            uint32_t n = count < COPY_CHUNK ? count : COPY_CHUNK;

            if (mem_read(s, addr, buf, n) < 0 || mem_write(s, dest, buf, n) < 0) {
                bus_fault(s);
                return;
            }
            addr += n;
            dest += n;
            count -= n;
        }
        return;
    }
    {                                               /* LOAD and STORE */
        unsigned n = insn & 7, reg = (insn >> 16) & 0xff;

        if (insn & (1u << 28)) {
            addr = s->r->dsa + sign_extend24(addr);
        }
        if (n == 0 || n > 4) {
            dma_interrupt(s, DSTAT_IID);
            return;
        }
        if (insn & (1u << 24)) {
            if (mem_read(s, addr, buf, n) < 0) {
                bus_fault(s);
                return;
            }
            for (unsigned i = 0; i < n; i++) {
                reg_write(s, (reg + i) & 0xff, buf[i]);
            }
        } else {
            for (unsigned i = 0; i < n; i++) {
                buf[i] = reg_read(s, (reg + i) & 0xff);
            }
            unstack_interrupts(s);
            if (mem_write(s, addr, buf, n) < 0) {
                bus_fault(s);
            }
        }
    }
}

static void execute_one(struct lsi *s)
{
    uint32_t insn, addr;

    if (fetch_dword(s, s->r->dsp, &insn) < 0) {
        bus_fault(s);
        return;
    }
    if (!insn) {
        s->r->dsp += 4;        /* an empty opcode: the next dword is tried */
        return;
    }
    if (fetch_dword(s, s->r->dsp + 4, &addr) < 0) {
        bus_fault(s);
        return;
    }
    s->r->dsps = addr;
    s->r->dcmd = (uint8_t)(insn >> 24);
    s->r->dsp += 8;
    switch (insn >> 30) {
    case 0:
        block_move(s, insn, addr);
        break;
    case 1: {
        int opcode = (insn >> 27) & 7;

        if (opcode < 5) {
            io_instruction(s, insn, addr, opcode);
        } else {
            register_instruction(s, insn, opcode);
        }
        break;
    }
    case 2:
        transfer_control(s, insn, addr);
        break;
    default:
        memory_instruction(s, insn, addr);
        break;
    }
}

/*
 * Runs SCRIPTS until they stop or wait, at most INSN_PER_ACTIVATION
 * instructions and about COPY_PER_ACTIVATION bytes copied at a time: a
 * guest loop yields to the event loop, so every device keeps being served,
 * and one that makes no progress on the bus (insn_since_progress) is
 * reported as the chip's unexpected disconnect.
 */
static void run_scripts(struct lsi *s)
{
    if (s->running) {
        return;
    }
    s->running = true;
    s->copy_budget = COPY_PER_ACTIVATION;
    for (unsigned n = 0; n < INSN_PER_ACTIVATION && s->copy_budget; n++) {
        if (!(s->r->istat1 & ISTAT1_SRUN) || s->waiting != RUNNING_FREE) {
            break;
        }
        if (++s->insn_since_progress > s->insn_without_progress) {
            log_warn("%s: SCRIPTS ran %llu instructions (or copies of 4 KiB, or 64 message bytes) "
                     "without progress on the bus; unexpected disconnect", s->dev.id,
                     (unsigned long long)s->insn_without_progress);
            s->insn_since_progress = 0;
            scsi_interrupt(s, SIST0_UDC, 0);
            bus_disconnect(s);
            stop_scripts(s);
            break;
        }
        execute_one(s);
        if ((s->r->dcntl & DCNTL_SSM) && (s->r->istat1 & ISTAT1_SRUN) && s->waiting == RUNNING_FREE) {
            dma_interrupt(s, DSTAT_SSI);            /* single step */
        }
    }
    s->running = false;
    if ((s->r->istat1 & ISTAT1_SRUN) && s->waiting == RUNNING_FREE) {
        loop_bh_schedule_later(s->loop, &s->resume_bh);     /* budget spent: after a poll */
    }
}

/*
 * SCRIPTS start at DSP.  Whatever the old program waited for is forgotten,
 * except a data move in flight: the disk is moving its bytes, and the
 * request takes no second transfer until it lands (data_done resumes).
 * The count toward the unexpected disconnect starts anew, but for SCRIPTS
 * restarting themselves (a memory move aborting them and writing DSP).
 */
static void start_scripts(struct lsi *s)
{
    s->r->istat1 |= ISTAT1_SRUN;
    if (s->waiting != WAIT_DATA) {
        s->waiting = RUNNING_FREE;
    }
    if (!s->running) {
        s->insn_since_progress = 0;
    }
    run_scripts(s);
}

/* --- registers -------------------------------------------------------------- */

static uint8_t byte_of(uint32_t v, unsigned i)
{
    return (uint8_t)(v >> (8 * i));
}

static void set_byte(uint32_t *v, unsigned i, uint8_t b)
{
    *v = (*v & ~(0xffu << (8 * i))) | (uint32_t)b << (8 * i);
}

/* The 32-bit registers, by offset: one table serves reads and writes. */
static uint32_t *reg32(struct lsi *s, unsigned off, bool writing)
{
    switch (off & ~3u) {
    case R_DSA: return &s->r->dsa;
    case R_TEMP: return &s->r->temp;
    case R_DNAD: return &s->r->dnad;
    case R_DSPS: return &s->r->dsps;
    case R_SCRATCHA: return &s->r->scratch[0];
    case R_ADDER: return writing ? NULL : &s->r->adder;
    case R_MMRS: return &s->r->mmrs;
    case R_MMWS: return &s->r->mmws;
    case R_SFS: return &s->r->sfs;
    case R_DRS: return &s->r->drs;
    case R_SBMS: return &s->r->sbms;
    case R_DBMS: return &s->r->dbms;
    case R_DNAD64: return &s->r->dnad64;
    case R_PMJAD1: return &s->r->pmjad1;
    case R_PMJAD2: return &s->r->pmjad2;
    case R_RBC: return &s->r->rbc;
    case R_UA: return &s->r->ua;
    case R_ESA: return &s->r->esa;
    case R_IA: return &s->r->ia;
    case R_SBC: return &s->r->sbc;
    case R_CSBC: return &s->r->csbc;
    default:
        if (off >= R_SCRATCHB && off < R_MMRS) {
            return &s->r->scratch[1 + (off - R_SCRATCHB) / 4];
        }
        return NULL;
    }
}

static uint8_t reg_read(struct lsi *s, unsigned off)
{
    uint32_t *r32 = reg32(s, off, false);
    uint8_t v;

    if (r32) {
        return byte_of(*r32, off & 3);
    }
    switch (off) {
    case R_SCNTL0: return s->r->scntl0;
    case R_SCNTL1: return s->r->scntl1;
    case R_SCNTL2: return s->r->scntl2;
    case R_SCNTL3: return s->r->scntl3;
    case R_SCID: return s->r->scid;
    case R_SXFER: return s->r->sxfer;
    case R_SDID: return s->r->sdid;
    case R_GPREG: return 0x7f;
    case R_SFBR: return s->r->sfbr;
    case R_SOCL: return s->r->socl;
    case R_SSID: return s->r->ssid;
    case R_SBCL: return s->r->sbcl;
    case R_DSTAT:
        v = s->r->dstat | DSTAT_DFE;
        if (!(s->r->istat0 & ISTAT0_INTF)) {
            s->r->dstat = 0;       /* reading clears; a stacked interrupt may move up */
            s->r->status_read = true;
        }
        return v;
    case R_SSTAT0: return s->r->sstat0;
    case R_SSTAT1: return s->r->sstat1;
    case R_SSTAT2: return (s->r->scntl1 & SCNTL1_CON) ? 0 : 2;
    case R_ISTAT0: return s->r->istat0;
    case R_ISTAT1: return s->r->istat1;
    case R_MBOX0: return s->r->mbox0;
    case R_MBOX1: return s->r->mbox1;
    case R_CTEST0: return 0xff;
    case R_CTEST1: return 0;
    case R_CTEST2:
        v = s->r->ctest2 | CTEST2_DACK | CTEST2_CM;
        if (s->r->istat0 & ISTAT0_SIGP) {
            s->r->istat0 &= ~ISTAT0_SIGP;
            v |= CTEST2_SIGP;
        }
        return v;
    case R_CTEST3: return s->r->ctest3;
    case R_DFIFO: return s->r->dfifo;
    case R_CTEST4: return s->r->ctest4;
    case R_CTEST5: return s->r->ctest5;
    case R_CTEST6: return 0;
    case R_DBC: case R_DBC + 1: case R_DBC + 2: return byte_of(s->r->dbc, off - R_DBC);
    case R_DCMD: return s->r->dcmd;
    case R_DSP: case R_DSP + 1: case R_DSP + 2: case R_DSP + 3:
        return byte_of(s->r->dsp, off - R_DSP);
    case R_DMODE: return s->r->dmode;
    case R_DIEN: return s->r->dien;
    case R_SBR: return s->r->sbr;
    case R_DCNTL: return s->r->dcntl;
    case R_SIEN0: return s->r->sien0;
    case R_SIEN1: return s->r->sien1;
    case R_SIST0:
        v = s->r->sist0;
        s->r->sist0 = 0;
        s->r->status_read = true;
        return v;
    case R_SIST1:
        v = s->r->sist1;
        s->r->sist1 = 0;
        s->r->status_read = true;
        return v;
    case R_MACNTL: case R_GPCNTL: return 0x0f;
    case R_STIME0: return s->r->stime0;
    case R_RESPID0: return s->r->respid0;
    case R_RESPID1: return s->r->respid1;
    case R_STEST1: return s->r->stest1;
    case R_STEST2: return s->r->stest2;
    case R_STEST3: return s->r->stest3;
    case R_SIDL: return s->r->sidl;
    case R_STEST4: return 0xe0;
    case R_CCNTL0: return s->r->ccntl0;
    case R_CCNTL1: return s->r->ccntl1;
    case R_SBDL:
        /* Drivers peek at the data lines in MESSAGE IN. */
        return (s->r->sstat1 & 7) == PHASE_MI && s->msg_len ? s->msg[0] : 0;
    default:
        return 0;           /* reserved */
    }
}

static void soft_reset(struct lsi *s);

static void bus_reset(struct lsi *s)
{
    while (s->queue) {
        drop_cmd(s, s->queue);
    }
    if (s->current) {
        drop_cmd(s, s->current);
    }
    scsi_bus_reset(&s->bus);
    bus_disconnect(s);
    /* Nothing is in flight any more: SCRIPTS waiting on the bus wait no longer. */
    if (s->waiting == WAIT_DATA || s->waiting == WAIT_PHASE) {
        s->waiting = RUNNING_FREE;
    }
    s->mismatch_pending = false;
    s->move_aborted = false;
    s->msg_len = 0;
}

static void write_istat0(struct lsi *s, uint8_t val)
{
    s->r->istat0 = (uint8_t)((s->r->istat0 & 0x0f) | (val & 0xf0));
    if (val & ISTAT0_ABRT) {
        /* A data move in flight cannot be called back: it lands, and ends there. */
        s->move_aborted = s->waiting == WAIT_DATA;
        dma_interrupt(s, DSTAT_ABRT);
    }
    if (val & ISTAT0_INTF) {
        s->r->istat0 &= ~ISTAT0_INTF;
        update_irq(s);
    }
    if (s->waiting == WAIT_RESELECT && (val & ISTAT0_SIGP)) {
        s->waiting = RUNNING_FREE;          /* the host has work: alternate path */
        s->r->dsp = s->r->dnad;
        run_scripts(s);
    }
    if (val & ISTAT0_SRST) {
        soft_reset(s);
    }
}

/*
 * While a data move is in flight (its disk I/O runs asynchronously, its
 * memory mapped when it started), the move owns the registers it goes on
 * from when the I/O lands: DBC (bytes left), DNAD and DNAD64 (where the
 * next piece goes) and CCNTL1 (whether DNAD carries into DNAD64).  A host
 * write to them then is dropped: the manual has them count as the DMA
 * moves the data, and one taken would have data_moved() subtract the bytes
 * moved from the host's DBC (an underflow: the move running on past what
 * its instruction asked) or send the rest of the move to the host's DNAD.
 */
static bool owned_by_data_move(const struct lsi *s, unsigned off)
{
    if (s->waiting != WAIT_DATA) {
        return false;
    }
    return (off >= R_DBC && off < R_DCMD) || (off & ~3u) == R_DNAD || (off & ~3u) == R_DNAD64 ||
           off == R_CCNTL1;
}

static void reg_write(struct lsi *s, unsigned off, uint8_t val)
{
    uint32_t *r32 = reg32(s, off, true);

    if (owned_by_data_move(s, off)) {
        return;
    }
    if (r32) {
        set_byte(r32, off & 3, val);
        return;
    }
    switch (off) {
    case R_SCNTL0: s->r->scntl0 = val; break;
    case R_SCNTL1:
        s->r->scntl1 = val & ~0x01;
        if (val & SCNTL1_RST) {
            if (!(s->r->sstat0 & SSTAT0_RST)) {
                bus_reset(s);
                s->r->sstat0 |= SSTAT0_RST;
                scsi_interrupt(s, SIST0_RST, 0);
            }
        } else {
            s->r->sstat0 &= ~SSTAT0_RST;
        }
        break;
    case R_SCNTL2: s->r->scntl2 = val & ~(SCNTL2_WSR | SCNTL2_WSS); break;
    case R_SCNTL3: s->r->scntl3 = val; break;
    case R_SCID: s->r->scid = val; break;
    case R_SXFER: s->r->sxfer = val; break;
    case R_SDID: s->r->sdid = val & 0xf; break;
    case R_SFBR: s->r->sfbr = val; break;          /* SCRIPTS register moves only */
    case R_ISTAT0: write_istat0(s, val); break;
    case R_MBOX0: s->r->mbox0 = val; break;
    case R_MBOX1: s->r->mbox1 = val; break;
    case R_CTEST2: s->r->ctest2 = val & CTEST2_PCICIE; break;
    case R_CTEST3: s->r->ctest3 = val & 0x0f; break;
    case R_CTEST4: s->r->ctest4 = val; break;
    case R_CTEST5: s->r->ctest5 = val; break;
    case R_DBC: case R_DBC + 1: case R_DBC + 2: set_byte(&s->r->dbc, off - R_DBC, val); break;
    case R_DSP: case R_DSP + 1: case R_DSP + 2: case R_DSP + 3:
        set_byte(&s->r->dsp, off - R_DSP, val);
        /* Writing the top byte starts SCRIPTS, unless in manual start mode. */
        if (off == R_DSP + 3 && !(s->r->dmode & DMODE_MAN) && !(s->r->istat1 & ISTAT1_SRUN)) {
            start_scripts(s);
        }
        break;
    case R_DMODE: s->r->dmode = val; break;
    case R_DIEN: s->r->dien = val; update_irq(s); break;
    case R_SBR: s->r->sbr = val; break;
    case R_DCNTL:
        s->r->dcntl = val & ~(DCNTL_PFF | DCNTL_STD);
        if ((val & DCNTL_STD) && !(s->r->istat1 & ISTAT1_SRUN)) {
            start_scripts(s);
        }
        break;
    case R_SIEN0: s->r->sien0 = val; update_irq(s); break;
    case R_SIEN1: s->r->sien1 = val; update_irq(s); break;
    case R_STIME0: s->r->stime0 = val; break;
    case R_STIME1:
        if (val & 0xf) {
            scsi_interrupt(s, 0, SIST1_GEN);    /* the general timer expires at once */
        }
        break;
    case R_RESPID0: s->r->respid0 = val; break;
    case R_RESPID1: s->r->respid1 = val; break;
    case R_STEST1: s->r->stest1 = val; break;
    case R_STEST2: s->r->stest2 = val; break;
    case R_STEST3: s->r->stest3 = val; break;
    case R_CCNTL0: s->r->ccntl0 = val; break;
    case R_CCNTL1: s->r->ccntl1 = val; break;
    default: break;         /* read-only or reserved: ignored, as by the chip */
    }
}

/* --- PCI ------------------------------------------------------------------- */

static uint64_t lsi_bar_read(struct pci_device *pci, int bar, uint64_t off, unsigned size)
{
    struct lsi *s = lsi_of(pci);
    uint64_t val = 0;

    for (unsigned i = 0; i < size; i++) {
        uint8_t b = bar == 2 ? s->r->ram[off + i] : reg_read(s, (unsigned)(off + i) & 0xff);

        val |= (uint64_t)b << (8 * i);
    }
    unstack_interrupts(s);
    return val;
}

static void lsi_bar_write(struct pci_device *pci, int bar, uint64_t off, uint64_t val,
                          unsigned size)
{
    struct lsi *s = lsi_of(pci);

    for (unsigned i = 0; i < size; i++) {
        uint8_t b = (uint8_t)(val >> (8 * i));

        if (bar == 2) {
            s->r->ram[off + i] = b;
        } else {
            reg_write(s, (unsigned)(off + i) & 0xff, b);
        }
    }
}

static void soft_reset(struct lsi *s)
{
    bus_reset(s);
    loop_bh_cancel(s->loop, &s->resume_bh);
    s->waiting = RUNNING_FREE;
    s->phase_valid = false;
    s->mismatch_pending = false;
    s->carry = 0;
    s->msg_len = 0;
    s->msg_action = AFTER_MSG_COMMAND;
    s->r->dsa = s->r->temp = s->r->dnad = s->r->dbc = s->r->dsp = s->r->dsps = s->r->adder = 0;
    memset(s->r->scratch, 0, sizeof(s->r->scratch));
    s->r->istat0 = s->r->istat1 = s->r->dstat = s->r->dien = 0;
    s->r->sist0 = s->r->sist1 = s->r->sien0 = s->r->sien1 = 0;
    s->r->stacked_dstat = s->r->stacked_sist0 = s->r->stacked_sist1 = 0;
    s->r->status_read = false;
    s->r->mbox0 = s->r->mbox1 = s->r->dfifo = 0;
    s->r->dcmd = 0x40;
    s->r->ctest2 = CTEST2_DACK;
    s->r->ctest3 = s->r->ctest4 = s->r->ctest5 = s->r->ccntl0 = s->r->ccntl1 = 0;
    s->r->dmode = s->r->dcntl = 0;
    s->r->scntl0 = 0xc0;
    s->r->scntl1 = s->r->scntl2 = s->r->scntl3 = s->r->sstat0 = s->r->sstat1 = 0;
    s->r->scid = 7;
    s->r->sxfer = s->r->socl = s->r->sdid = s->r->ssid = s->r->sfbr = s->r->sbcl = 0;
    s->r->stest1 = s->r->stest2 = s->r->stest3 = s->r->sidl = s->r->stime0 = 0;
    s->r->respid0 = 0x80;
    s->r->respid1 = s->r->sbr = 0;
    s->r->mmrs = s->r->mmws = s->r->sfs = s->r->drs = s->r->sbms = s->r->dbms = s->r->dnad64 = 0;
    s->r->pmjad1 = s->r->pmjad2 = s->r->rbc = s->r->ua = s->r->esa = s->r->ia = s->r->sbc = s->r->csbc = 0;
    update_irq(s);
}

static void lsi_reset(struct pci_device *pci)
{
    soft_reset(lsi_of(pci));
}

/*
 * A new process found the registers in the checkpoint, but the commands in
 * flight died with the old one.  The chip reports what a driver recovers
 * from by retrying: a SCSI bus reset (SIST0 RST), SCRIPTS stopped and the
 * bus free, as when another initiator resets the bus.  Linux's sym53c8xx
 * (sym_interrupt: "SCSI BUS reset detected") answers with sym_start_up(),
 * which reinitializes the chip and requeues its commands with DID_RESET;
 * the SCSI midlayer retries them.  docs/restart.md has the whole path.
 */
static void report_lost_commands(struct lsi *s)
{
    s->r->status_read = s->r->status_read != 0;
    stop_scripts(s);
    bus_disconnect(s);
    s->r->sstat0 &= ~SSTAT0_RST;
    update_irq(s);          /* SIP and DIP from what the checkpoint holds */
    scsi_interrupt(s, SIST0_RST, 0);
    log_info("%s: restarted: registers restored, SCSI bus reset reported to the driver",
             s->dev.id);
}

static const struct pci_device_ops lsi_pci_ops = {
    .bar_read = lsi_bar_read,
    .bar_write = lsi_bar_write,
    .reset = lsi_reset,
};

static int lsi_realize(struct device *dev, struct device_ctx *ctx, char **err)
{
    struct lsi *s = (struct lsi *)dev;
    const struct pci_ids ids = {
        .vendor = LSI_VENDOR, .device = LSI_DEVICE, .subsystem = 0x1000,
        .class_code = LSI_CLASS, .interrupt_pin = 1,
    };
    char bus_name[128];
    bool restored;

    if (snprintf(bus_name, sizeof(bus_name), "%s.0", dev->id) >= (int)sizeof(bus_name) ||
        scsi_bus_find(bus_name)) {
        error_setf(err, "cannot name the SCSI bus '%s.0'", dev->id);
        return -1;
    }
    if (!s->insn_without_progress) {
        error_setf(err, "x-insn-without-progress must be at least 1");
        return -1;
    }
    s->r = device_checkpoint(dev, "regs", sizeof(*s->r), &restored);
    if (!s->r) {
        error_setf(err, "out of memory for the registers");
        return -1;
    }
    s->buffers = scsi_buffer_pool_new(BUFFER_PER_CONTROLLER);
    if (!s->buffers) {
        error_setf(err, "out of memory");
        return -1;
    }
    s->queue_tail = &s->queue;
    s->loop = ctx->loop;
    loop_bh_init(&s->resume_bh, resume_later, s);
    pci_device_init(&s->pci, dev->id, &lsi_pci_ops, &ids);
    s->pci.config[PCI_LATENCY_TIMER] = 0xff;
    if (pci_register_bar(&s->pci, 0, PCI_BAR_IO, LSI_IO_SIZE, false, err) < 0 ||
        pci_register_bar(&s->pci, 1, PCI_BAR_MEM32, LSI_MMIO_SIZE, false, err) < 0 ||
        pci_register_bar(&s->pci, 2, PCI_BAR_MEM32, LSI_RAM_SIZE, false, err) < 0) {
        scsi_buffer_pool_free(s->buffers);
        return -1;
    }
    pci_device_realized(&s->pci);
    scsi_bus_init(&s->bus, bus_name, LSI_MAX_TARGETS, &lsi_bus_ops);
    if (restored) {
        report_lost_commands(s);
    } else {
        soft_reset(s);
    }
    dev->pci = &s->pci;
    return 0;
}

static void lsi_unrealize(struct device *dev)
{
    struct lsi *s = (struct lsi *)dev;

    bus_reset(s);
    loop_bh_cancel(s->loop, &s->resume_bh);
    scsi_bus_cleanup(&s->bus);
    scsi_buffer_pool_free(s->buffers);      /* lives on while a cancelled request's I/O holds a buffer */
}

static const struct prop_def lsi_props[] = {
    { "x-insn-without-progress", PROP_UINT, offsetof(struct lsi, insn_without_progress),
      UINT32_MAX, "1048576", "SCRIPTS instructions (4 KiB copied or 64 MESSAGE OUT bytes "
      "counting as one) without progress on the bus (a command taken, data moved, a reselection) "
      "before an unexpected disconnect (SIST0 UDC)" },
    { 0 },
};

static const struct device_driver lsi53c895a_driver = {
    .name = "lsi53c895a",
    .desc = "LSI53C895A SCSI controller (bus: ID.0, targets 0-6)",
    .instance_size = sizeof(struct lsi),
    .props = lsi_props,
    .child_bus = "SCSI",
    .realize = lsi_realize,
    .unrealize = lsi_unrealize,
};

DEVICE_DRIVERS(&lsi53c895a_driver);
