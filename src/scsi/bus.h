/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The SCSI bus (bus.c): the layer between a host bus adapter (the LSI
 * controller) and its targets (scsi-hd, scsi-cd, in disk.c, which has no
 * header: it registers its drivers and the host reaches its media through
 * the block backend).  The HBA knows nothing of commands; the targets know
 * nothing of the HBA's registers.
 *
 * A request's life, driven by the HBA:
 *   req = scsi_req_new(bus, target, lun, tag, cdb, len, hba_private);
 *   scsi_req_start(req);          decodes; req->dir and req->xfer_len say
 *                                 what data phase the command wants
 *   scsi_req_transfer(req, iov)   moves the next bytes of the data phase
 *                                 straight between guest memory and the disk
 *                                 (repeat; each completes through a callback)
 *   ... the bus's complete() runs once, with req->status and the sense set
 *   scsi_req_unref(req)
 * scsi_req_cancel() ends a request early (ABORT, reset); complete() still
 * runs once, with req->cancelled set.
 */
#ifndef MPQEMU_SCSI_BUS_H
#define MPQEMU_SCSI_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pci/dma.h"

enum {
    SCSI_MAX_TARGETS = 16,
    SCSI_MAX_LUNS = 8,
    SCSI_CDB_MAX = 16,
    SCSI_SENSE_LEN = 18,        /* fixed format */
};

enum scsi_status {
    SCSI_GOOD = 0x00,
    SCSI_CHECK_CONDITION = 0x02,
    SCSI_BUSY = 0x08,
    SCSI_TASK_ABORTED = 0x40,
};

enum scsi_dir { SCSI_XFER_NONE, SCSI_XFER_FROM_DEV, SCSI_XFER_TO_DEV };

struct scsi_sense {
    uint8_t key, asc, ascq;
};

/* Sense data the targets report. */
extern const struct scsi_sense SENSE_NO_SENSE, SENSE_INVALID_OPCODE, SENSE_INVALID_FIELD,
    SENSE_INVALID_PARAM, SENSE_INVALID_PARAM_LEN, SENSE_LBA_OUT_OF_RANGE,
    SENSE_LUN_NOT_SUPPORTED, SENSE_SAVING_PARAMS_NOT_SUPPORTED, SENSE_RESET,
    SENSE_MEDIUM_CHANGED, SENSE_NO_MEDIUM, SENSE_READ_ERROR, SENSE_WRITE_PROTECTED,
    SENSE_REMOVAL_PREVENTED, SENSE_MISCOMPARE, SENSE_IO_ERROR, SENSE_INCOMPATIBLE_FORMAT,
    SENSE_CAPACITY_CHANGED, SENSE_TARGET_FAILURE, SENSE_SPACE_ALLOC_FAILED;

/*
 * What a command whose I/O failed with -error reports, as QEMU's SCSI
 * disks do: one table for every errno, reads and writes alike.
 */
struct scsi_sense scsi_sense_from_errno(int error);

/*
 * A device's pending unit attention conditions, reported once each, 'now'
 * first.  Plain data: a target may keep it where it outlives the process.
 */
struct scsi_unit_attention {
    struct scsi_sense now, next;
};

struct scsi_bus;
struct scsi_buffer_pool;
struct scsi_device;
struct scsi_request;

/* What the HBA provides to its bus. */
struct scsi_bus_ops {
    /* The request reached its status; called once per started request. */
    void (*complete)(struct scsi_request *req);
};

struct scsi_bus {
    char *name;                 /* "<hba id>.0", as in bus=lsi0.0 */
    const struct scsi_bus_ops *ops;
    unsigned max_target;        /* targets 0 .. max_target - 1 */
    struct scsi_device *devs[SCSI_MAX_TARGETS][SCSI_MAX_LUNS];
    struct scsi_bus *next_bus;  /* process-wide list, for bus= lookups */
};

/* Per-target command set: scsi-hd, scsi-cd. */
struct scsi_device_ops {
    /*
     * Decodes req->cdb.  For a command with a data phase it sets req->dir and
     * req->xfer_len and returns; with none it executes and completes.
     */
    void (*start)(struct scsi_request *req);
    /*
     * Moves len bytes of a direct (disk) data phase at req->offset, then
     * calls scsi_req_transfer_done().  Emulated replies and parameter lists
     * (scsi_req_reply/scsi_req_expect) are moved by the bus itself.
     */
    void (*transfer)(struct scsi_request *req, struct iovec *iov, int iovcnt, size_t len);
    /* Every byte of the data phase moved: finish the command (NULL: GOOD). */
    void (*data_done)(struct scsi_request *req);
    /* The request was cancelled: drop its state once no I/O is in flight. */
    void (*cancel)(struct scsi_request *req);
    void (*reset)(struct scsi_device *dev);
};

struct scsi_device {
    struct scsi_bus *bus;
    unsigned target, lun;
    const struct scsi_device_ops *ops;
    /* Sense of the last CHECK CONDITION, for a later REQUEST SENSE. */
    struct scsi_sense sense;
    /*
     * Conditions every command but INQUIRY/REPORT LUNS/REQUEST SENSE reports
     * once: in ua_own, or where the target keeps them (scsi_device_keep_ua_in).
     */
    struct scsi_unit_attention *ua;
    struct scsi_unit_attention ua_own;
};

typedef void scsi_transfer_done_fn(struct scsi_request *req, int result);

struct scsi_request {
    struct scsi_bus *bus;
    struct scsi_device *dev;    /* NULL: no such LUN */
    unsigned target, lun;
    uint32_t tag;
    uint8_t cdb[SCSI_CDB_MAX];
    size_t cdb_len;
    void *hba_private;

    enum scsi_dir dir;
    uint64_t xfer_len;          /* bytes of the data phase */
    uint64_t offset;            /* bytes of it moved so far */
    uint8_t status;
    struct scsi_sense sense;
    bool completed, cancelled;

    /* A small response or parameter list, for emulated commands. */
    uint8_t *buf;
    size_t buf_size;
    bool buffered;              /* the data phase moves req->buf */
    /* The transfer in progress. */
    scsi_transfer_done_fn *transfer_done;
    size_t transfer_len;

    unsigned refs;
    void *target_private;       /* the target's per-request state */
    /*
     * The HBA's mapping of the data phase's guest memory (its bounce
     * buffer, for memory reached only through the VMM): released with the
     * request, so I/O still in flight after a cancel never writes into
     * freed memory.
     */
    struct dma_mapping hba_dma;
    /* The HBA's buffer for the data phase (scsi_req_buffer), freed with the request. */
    uint8_t *hba_buf;
    size_t hba_buf_len;
    struct scsi_buffer_pool *hba_pool;
};

void scsi_bus_init(struct scsi_bus *bus, const char *name, unsigned max_target,
                   const struct scsi_bus_ops *ops);
void scsi_bus_cleanup(struct scsi_bus *bus);
struct scsi_bus *scsi_bus_find(const char *name);
int scsi_bus_attach(struct scsi_bus *bus, struct scsi_device *dev, unsigned target,
                    unsigned lun, char **err);
void scsi_bus_detach(struct scsi_device *dev);
/* SCSI bus reset: every target's requests are cancelled; a unit attention follows. */
void scsi_bus_reset(struct scsi_bus *bus);
bool scsi_target_present(const struct scsi_bus *bus, unsigned target);

struct scsi_request *scsi_req_new(struct scsi_bus *bus, unsigned target, unsigned lun,
                                  uint32_t tag, const uint8_t *cdb, size_t cdb_len,
                                  void *hba_private);
void scsi_req_start(struct scsi_request *req);
/*
 * Moves up to 'len' bytes of the data phase (at req->offset) between the
 * request and iov, then calls done(req, bytes moved) or done(req, -errno).
 * The target may complete the request afterwards (the data phase ended).
 * One transfer at a time: while one is in flight another gets -EBUSY.
 */
void scsi_req_transfer(struct scsi_request *req, struct iovec *iov, int iovcnt,
                       scsi_transfer_done_fn *done);
void scsi_req_cancel(struct scsi_request *req);
void scsi_req_ref(struct scsi_request *req);
void scsi_req_unref(struct scsi_request *req);

/*
 * Buffers an HBA moves a data phase through when the data must wait, for
 * the initiator or for the disk: a disconnected command's read prefetched,
 * a write taken before the disk has it.  A pool bounds the bytes its
 * buffers hold.  A buffer belongs to its request and goes with the
 * request's last reference, so that I/O still in flight after a cancel
 * never lands in freed memory; its bytes count against the pool until then,
 * and the pool lives on (after scsi_buffer_pool_free) until the last goes.
 * Freed buffers stay in the pool as spares for later requests (a fresh
 * buffer costs a page fault a page); in use and spare stay within the limit.
 */
struct scsi_buffer_pool *scsi_buffer_pool_new(size_t limit);
void scsi_buffer_pool_free(struct scsi_buffer_pool *pool);
/* len bytes for req's data phase, or NULL when the pool is full (or memory short). */
uint8_t *scsi_req_buffer(struct scsi_request *req, struct scsi_buffer_pool *pool, size_t len);
size_t scsi_buffer_pool_used(const struct scsi_buffer_pool *pool);

/* For targets. */
void scsi_req_complete(struct scsi_request *req, uint8_t status);
void scsi_req_check_condition(struct scsi_request *req, struct scsi_sense sense);
/*
 * Set up an emulated data-in response of len bytes (clipped to alloc_len),
 * or a data-out phase of len bytes into req->buf: 0, or -errno (EINVAL:
 * over 64 KiB; ENOMEM) with the request failed already, as an I/O failing
 * with that errno would (scsi_sense_from_errno).
 */
int scsi_req_reply(struct scsi_request *req, const void *data, size_t len, size_t alloc_len);
int scsi_req_expect(struct scsi_request *req, size_t len);
void scsi_req_transfer_done(struct scsi_request *req, int result);

/* Fixed-format sense data, 18 bytes. */
/* Establishes a unit attention condition; it supersedes any pending one. */
void scsi_device_set_ua(struct scsi_device *dev, struct scsi_sense sense);
/*
 * Keeps dev's unit attentions in 'kept' from now on (after scsi_bus_attach).
 * When 'restored' (a previous process left it), a medium change or capacity
 * change it held is reported after the power-on reset a new process reports;
 * anything else in it is dropped.
 */
void scsi_device_keep_ua_in(struct scsi_device *dev, struct scsi_unit_attention *kept,
                            bool restored);
void scsi_sense_fixed(struct scsi_sense sense, uint8_t out[SCSI_SENSE_LEN]);

/* CDB fields. */
uint64_t scsi_cdb_lba(const uint8_t *cdb);
uint32_t scsi_cdb_blocks(const uint8_t *cdb);
size_t scsi_cdb_length(uint8_t opcode);

#endif
