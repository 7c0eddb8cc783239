// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * SCSI bus: addresses targets and LUNs, owns requests, and answers what is
 * the same for every target (REQUEST SENSE, REPORT LUNS, unit attention,
 * commands to a LUN that does not exist).
 */
#include "scsi/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/byteorder.h"
#include "util/error.h"
#include "util/guarded-copy.h"

const struct scsi_sense SENSE_NO_SENSE = { 0x00, 0x00, 0x00 };
const struct scsi_sense SENSE_INVALID_OPCODE = { 0x05, 0x20, 0x00 };
const struct scsi_sense SENSE_INVALID_FIELD = { 0x05, 0x24, 0x00 };
const struct scsi_sense SENSE_INVALID_PARAM = { 0x05, 0x26, 0x00 };
const struct scsi_sense SENSE_INVALID_PARAM_LEN = { 0x05, 0x1a, 0x00 };
const struct scsi_sense SENSE_LBA_OUT_OF_RANGE = { 0x05, 0x21, 0x00 };
const struct scsi_sense SENSE_LUN_NOT_SUPPORTED = { 0x05, 0x25, 0x00 };
const struct scsi_sense SENSE_SAVING_PARAMS_NOT_SUPPORTED = { 0x05, 0x39, 0x00 };
const struct scsi_sense SENSE_RESET = { 0x06, 0x29, 0x00 };
const struct scsi_sense SENSE_MEDIUM_CHANGED = { 0x06, 0x28, 0x00 };
const struct scsi_sense SENSE_NO_MEDIUM = { 0x02, 0x3a, 0x00 };
const struct scsi_sense SENSE_READ_ERROR = { 0x03, 0x11, 0x00 };
const struct scsi_sense SENSE_WRITE_PROTECTED = { 0x07, 0x27, 0x00 };
const struct scsi_sense SENSE_REMOVAL_PREVENTED = { 0x05, 0x53, 0x02 };
const struct scsi_sense SENSE_MISCOMPARE = { 0x0e, 0x1d, 0x00 };
const struct scsi_sense SENSE_IO_ERROR = { 0x0b, 0x00, 0x06 };
const struct scsi_sense SENSE_INCOMPATIBLE_FORMAT = { 0x05, 0x30, 0x00 };
const struct scsi_sense SENSE_CAPACITY_CHANGED = { 0x06, 0x2a, 0x09 };
const struct scsi_sense SENSE_TARGET_FAILURE = { 0x04, 0x44, 0x00 };
const struct scsi_sense SENSE_SPACE_ALLOC_FAILED = { 0x07, 0x27, 0x07 };

/*
 * The sense of an I/O that failed with an errno, as QEMU's
 * scsi_sense_from_errno() chooses it (scsi/utils.c; ENODATA, EREMOTEIO and
 * ENODEV are its Linux cases).  The errnos that give QEMU a status other
 * than CHECK CONDITION (EDOM, EBADE) come from SCSI passthrough only, which
 * we do not have.
 */
static const struct {
    int error;
    const struct scsi_sense *sense;
} errno_senses[] = {
    { ENOMEDIUM, &SENSE_NO_MEDIUM },
    { ENOMEM, &SENSE_TARGET_FAILURE },
    { EINVAL, &SENSE_INVALID_FIELD },
    { ENOSPC, &SENSE_SPACE_ALLOC_FAILED },
    { ENODATA, &SENSE_READ_ERROR },
    { EREMOTEIO, &SENSE_TARGET_FAILURE },
    { ENODEV, &SENSE_TARGET_FAILURE },
};

struct scsi_sense scsi_sense_from_errno(int error)
{
    for (size_t i = 0; i < sizeof(errno_senses) / sizeof(errno_senses[0]); i++) {
        if (errno_senses[i].error == error) {
            return *errno_senses[i].sense;
        }
    }
    return SENSE_IO_ERROR;      /* EIO, EDQUOT, EPERM, ...: a guest retries ABORTED COMMAND */
}

enum {
    OP_REQUEST_SENSE = 0x03,
    OP_INQUIRY = 0x12,
    OP_GET_CONFIGURATION = 0x46,
    OP_GET_EVENT_STATUS = 0x4a,
    OP_REPORT_LUNS = 0xa0,
    MAX_EMULATED_REPLY = 65536,
};

static struct scsi_bus *all_buses;

enum { SPARE_BUFFERS = 64 };

/* Freed buffers are kept as spares (bus.h): in use and spare within the limit. */
struct scsi_buffer_pool {
    size_t used, limit;
    unsigned refs;              /* the owner's, and one per buffer */
    bool closed;                /* the owner has gone: nothing more is kept */
    size_t spare_bytes;
    unsigned n_spare;
    struct { uint8_t *p; size_t len; } spare[SPARE_BUFFERS];
};

void scsi_bus_init(struct scsi_bus *bus, const char *name, unsigned max_target,
                   const struct scsi_bus_ops *ops)
{
    memset(bus, 0, sizeof(*bus));
    bus->name = strdup(name);
    bus->max_target = max_target < SCSI_MAX_TARGETS ? max_target : SCSI_MAX_TARGETS;
    bus->ops = ops;
    bus->next_bus = all_buses;
    all_buses = bus;
}

void scsi_bus_cleanup(struct scsi_bus *bus)
{
    for (struct scsi_bus **pp = &all_buses; *pp; pp = &(*pp)->next_bus) {
        if (*pp == bus) {
            *pp = bus->next_bus;
            break;
        }
    }
    free(bus->name);
    bus->name = NULL;
}

struct scsi_bus *scsi_bus_find(const char *name)
{
    for (struct scsi_bus *b = all_buses; b; b = b->next_bus) {
        if (b->name && !strcmp(b->name, name)) {
            return b;
        }
    }
    return NULL;
}

static bool same_sense(struct scsi_sense a, struct scsi_sense b)
{
    return a.key == b.key && a.asc == b.asc && a.ascq == b.ascq;
}

/* A pending change of the medium or its capacity (of those conditions, the first), or none. */
static struct scsi_sense medium_change_of(const struct scsi_unit_attention *ua)
{
    const struct scsi_sense pending[2] = { ua->now, ua->next };

    for (int i = 0; i < 2; i++) {
        if (same_sense(pending[i], SENSE_MEDIUM_CHANGED) ||
            same_sense(pending[i], SENSE_CAPACITY_CHANGED)) {
            return pending[i];
        }
    }
    return SENSE_NO_SENSE;
}

/*
 * A reset is reported first; a change of the medium the guest has not yet
 * been told of is still reported after it (a driver's bus reset after a
 * restart must not hide a medium change from it).
 */
static void report_reset(struct scsi_device *dev)
{
    struct scsi_sense change = medium_change_of(dev->ua);

    dev->ua->now = SENSE_RESET;
    dev->ua->next = change;
}

int scsi_bus_attach(struct scsi_bus *bus, struct scsi_device *dev, unsigned target,
                    unsigned lun, char **err)
{
    if (target >= bus->max_target) {
        error_setf(err, "scsi-id %u is out of range for bus %s (0 to %u)", target,
                   bus->name, bus->max_target - 1);
        return -1;
    }
    if (lun >= SCSI_MAX_LUNS) {
        error_setf(err, "lun %u is out of range (0 to %d)", lun, SCSI_MAX_LUNS - 1);
        return -1;
    }
    if (bus->devs[target][lun]) {
        error_setf(err, "scsi-id %u lun %u on bus %s is taken", target, lun, bus->name);
        return -1;
    }
    dev->bus = bus;
    dev->target = target;
    dev->lun = lun;
    /* A device coming up reports the power-on condition once. */
    dev->ua = &dev->ua_own;
    scsi_device_set_ua(dev, SENSE_RESET);
    bus->devs[target][lun] = dev;
    return 0;
}

void scsi_bus_detach(struct scsi_device *dev)
{
    if (dev->bus) {
        dev->bus->devs[dev->target][dev->lun] = NULL;
        dev->bus = NULL;
    }
}

bool scsi_target_present(const struct scsi_bus *bus, unsigned target)
{
    if (target >= bus->max_target) {
        return false;
    }
    for (unsigned lun = 0; lun < SCSI_MAX_LUNS; lun++) {
        if (bus->devs[target][lun]) {
            return true;
        }
    }
    return false;
}

void scsi_bus_reset(struct scsi_bus *bus)
{
    for (unsigned t = 0; t < bus->max_target; t++) {
        for (unsigned l = 0; l < SCSI_MAX_LUNS; l++) {
            struct scsi_device *dev = bus->devs[t][l];

            if (dev) {
                if (dev->ops->reset) {
                    dev->ops->reset(dev);
                }
                dev->sense = SENSE_NO_SENSE;
                report_reset(dev);
            }
        }
    }
}

void scsi_device_set_ua(struct scsi_device *dev, struct scsi_sense sense)
{
    dev->ua->now = sense;
    dev->ua->next = SENSE_NO_SENSE;
}

void scsi_device_keep_ua_in(struct scsi_device *dev, struct scsi_unit_attention *kept,
                            bool restored)
{
    struct scsi_sense carried = restored ? medium_change_of(kept) : SENSE_NO_SENSE;

    kept->now = dev->ua->now;
    kept->next = carried;
    dev->ua = kept;
}

/* The condition to report now, and the next one in its place. */
static struct scsi_sense take_ua(struct scsi_device *dev)
{
    struct scsi_sense s = dev->ua->now;

    dev->ua->now = dev->ua->next;
    dev->ua->next = SENSE_NO_SENSE;
    return s;
}

void scsi_sense_fixed(struct scsi_sense sense, uint8_t out[SCSI_SENSE_LEN])
{
    memset(out, 0, SCSI_SENSE_LEN);
    out[0] = 0x70;                  /* current error, fixed format */
    out[2] = sense.key;
    out[7] = SCSI_SENSE_LEN - 8;    /* additional sense length */
    out[12] = sense.asc;
    out[13] = sense.ascq;
}

size_t scsi_cdb_length(uint8_t opcode)
{
    switch (opcode >> 5) {
    case 0: return 6;
    case 1: case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0;      /* reserved or vendor-specific groups */
    }
}

uint64_t scsi_cdb_lba(const uint8_t *cdb)
{
    switch (cdb[0] >> 5) {
    case 0: return (uint64_t)(cdb[1] & 0x1f) << 16 | (uint64_t)cdb[2] << 8 | cdb[3];
    case 1: case 2: case 5: return be32(cdb + 2);
    case 4: return be64(cdb + 2);
    default: return 0;
    }
}

uint32_t scsi_cdb_blocks(const uint8_t *cdb)
{
    switch (cdb[0] >> 5) {
    case 0: return cdb[4] ? cdb[4] : 256;
    case 1: case 2: return be16(cdb + 7);
    case 4: return be32(cdb + 10);
    case 5: return be32(cdb + 6);
    default: return 0;
    }
}

struct scsi_request *scsi_req_new(struct scsi_bus *bus, unsigned target, unsigned lun,
                                  uint32_t tag, const uint8_t *cdb, size_t cdb_len,
                                  void *hba_private)
{
    struct scsi_request *req = calloc(1, sizeof(*req));

    if (!req) {
        return NULL;
    }
    req->bus = bus;
    req->target = target;
    req->lun = lun;
    req->tag = tag;
    req->hba_private = hba_private;
    req->cdb_len = cdb_len < SCSI_CDB_MAX ? cdb_len : SCSI_CDB_MAX;
    memcpy(req->cdb, cdb, req->cdb_len);
    if (target < bus->max_target && lun < SCSI_MAX_LUNS) {
        req->dev = bus->devs[target][lun];
    }
    req->refs = 1;
    return req;
}

void scsi_req_ref(struct scsi_request *req)
{
    req->refs++;
}

struct scsi_buffer_pool *scsi_buffer_pool_new(size_t limit)
{
    struct scsi_buffer_pool *pool = calloc(1, sizeof(*pool));

    if (pool) {
        pool->limit = limit;
        pool->refs = 1;
    }
    return pool;
}

/* Takes spare i out of the pool: its buffer, and its size in *len. */
static uint8_t *spare_take(struct scsi_buffer_pool *pool, unsigned i, size_t *len)
{
    uint8_t *p = pool->spare[i].p;

    *len = pool->spare[i].len;
    pool->spare_bytes -= *len;
    pool->spare[i] = pool->spare[--pool->n_spare];
    return p;
}

static void spare_drop(struct scsi_buffer_pool *pool, unsigned i)
{
    size_t len;

    free(spare_take(pool, i, &len));
}

static void pool_unref(struct scsi_buffer_pool *pool)
{
    if (pool && --pool->refs == 0) {
        free(pool);
    }
}

void scsi_buffer_pool_free(struct scsi_buffer_pool *pool)
{
    if (pool) {
        pool->closed = true;
        while (pool->n_spare) {
            spare_drop(pool, 0);
        }
    }
    pool_unref(pool);
}

size_t scsi_buffer_pool_used(const struct scsi_buffer_pool *pool)
{
    return pool->used;
}

/*
 * The smallest spare buffer of len to max bytes and less than twice len (a
 * small command does not take a big buffer), or -1.
 */
static int spare_fit(const struct scsi_buffer_pool *pool, size_t len, size_t max)
{
    int best = -1;

    for (unsigned i = 0; i < pool->n_spare; i++) {
        size_t cap = pool->spare[i].len;

        if (cap >= len && cap <= max && cap / 2 < len &&
            (best < 0 || cap < pool->spare[best].len)) {
            best = (int)i;
        }
    }
    return best;
}

/* The largest spare buffer (to make room at once), or the smallest (the cheapest to lose). */
static unsigned spare_extreme(const struct scsi_buffer_pool *pool, bool largest)
{
    unsigned pick = 0;

    for (unsigned i = 1; i < pool->n_spare; i++) {
        if (largest ? pool->spare[i].len > pool->spare[pick].len
                    : pool->spare[i].len < pool->spare[pick].len) {
            pick = i;
        }
    }
    return pick;
}

uint8_t *scsi_req_buffer(struct scsi_request *req, struct scsi_buffer_pool *pool, size_t len)
{
    size_t room = pool->limit - pool->used;
    int i;

    if (req->hba_buf || !len || len > room) {
        return NULL;
    }
    len = (len + 4095) & ~(size_t)4095;     /* whole pages: spares fit more commands */
    if (len > room) {
        return NULL;
    }
    i = spare_fit(pool, len, room);
    if (i >= 0) {
        req->hba_buf = spare_take(pool, (unsigned)i, &len);
    } else {
        /* In use and spare together within the limit. */
        while (pool->n_spare && pool->spare_bytes > room - len) {
            spare_drop(pool, spare_extreme(pool, true));
        }
        /* Page-aligned: O_DIRECT (cache=none) takes it as it is, with no bounce. */
        if (posix_memalign((void **)&req->hba_buf, 4096, len) != 0) {
            req->hba_buf = NULL;
            return NULL;
        }
    }
    req->hba_buf_len = len;
    req->hba_pool = pool;
    pool->used += len;
    pool->refs++;
    return req->hba_buf;
}

static void release_hba_buffer(struct scsi_request *req)
{
    struct scsi_buffer_pool *pool = req->hba_pool;

    if (req->hba_buf) {
        pool->used -= req->hba_buf_len;
        if (pool->closed) {
            free(req->hba_buf);
        } else {
            if (pool->n_spare == SPARE_BUFFERS) {
                spare_drop(pool, spare_extreme(pool, false));
            }
            pool->spare[pool->n_spare].p = req->hba_buf;
            pool->spare[pool->n_spare++].len = req->hba_buf_len;
            pool->spare_bytes += req->hba_buf_len;
        }
        req->hba_buf = NULL;
        pool_unref(pool);
    }
}

void scsi_req_unref(struct scsi_request *req)
{
    if (--req->refs) {
        return;
    }
    free(req->buf);
    dma_mapping_release(&req->hba_dma);
    release_hba_buffer(req);
    free(req);
}

void scsi_req_complete(struct scsi_request *req, uint8_t status)
{
    if (req->completed) {
        return;
    }
    req->completed = true;
    req->status = status;
    if (req->dev) {
        /* Sense data is of the command just completed (SPC-4 5.12). */
        req->dev->sense = status == SCSI_CHECK_CONDITION ? req->sense : SENSE_NO_SENSE;
    }
    scsi_req_ref(req);
    req->bus->ops->complete(req);
    scsi_req_unref(req);
}

void scsi_req_check_condition(struct scsi_request *req, struct scsi_sense sense)
{
    req->sense = sense;
    scsi_req_complete(req, SCSI_CHECK_CONDITION);
}

/*
 * Grows req->buf to at least len bytes: 0, or -errno (EINVAL: more than an
 * emulated command moves, ENOMEM) having failed the request with its sense.
 */
static int ensure_buf(struct scsi_request *req, size_t len)
{
    int error = len > MAX_EMULATED_REPLY ? EINVAL : 0;

    if (!error && req->buf_size < len) {
        uint8_t *grown = realloc(req->buf, len);

        if (grown) {
            req->buf = grown;
            req->buf_size = len;
        } else {
            error = ENOMEM;
        }
    }
    if (error) {
        scsi_req_check_condition(req, scsi_sense_from_errno(error));
        return -error;
    }
    return 0;
}

int scsi_req_reply(struct scsi_request *req, const void *data, size_t len, size_t alloc_len)
{
    size_t n = len < alloc_len ? len : alloc_len;
    int rc;

    if (n == 0) {
        scsi_req_complete(req, SCSI_GOOD);
        return 0;
    }
    if ((rc = ensure_buf(req, n)) < 0) {
        return rc;
    }
    memcpy(req->buf, data, n);
    req->dir = SCSI_XFER_FROM_DEV;
    req->xfer_len = n;
    req->buffered = true;
    return 0;
}

int scsi_req_expect(struct scsi_request *req, size_t len)
{
    int rc = ensure_buf(req, len);

    if (rc < 0) {
        return rc;
    }
    req->dir = SCSI_XFER_TO_DEV;
    req->xfer_len = len;
    req->buffered = true;
    return 0;
}

/* Copies between req->buf at req->offset and iov, len bytes. */
static void buffer_transfer(struct scsi_request *req, struct iovec *iov, int iovcnt,
                            size_t len)
{
    uint8_t *p = req->buf + req->offset;
    int r = req->dir == SCSI_XFER_FROM_DEV ? iov_from_buf(iov, iovcnt, 0, p, len)
                                           : iov_to_buf(iov, iovcnt, 0, p, len);

    scsi_req_transfer_done(req, r < 0 ? r : (int)len);     /* -EFAULT: guest memory vanished */
}

/* REQUEST SENSE: the sense of the last CHECK CONDITION, then it is gone. */
static void request_sense(struct scsi_request *req, struct scsi_sense sense)
{
    uint8_t data[SCSI_SENSE_LEN];

    scsi_sense_fixed(sense, data);
    scsi_req_reply(req, data, sizeof(data), req->cdb[4]);
}

/* REPORT LUNS: the LUNs of this target, in the flat addressing format. */
static void report_luns(struct scsi_request *req)
{
    uint8_t data[8 + 8 * SCSI_MAX_LUNS] = { 0 };
    uint32_t alloc = be32(req->cdb + 6);
    size_t n = 0;

    if (alloc < 16 || req->cdb[2] > 2) {
        scsi_req_check_condition(req, SENSE_INVALID_FIELD);
        return;
    }
    for (unsigned lun = 0; lun < SCSI_MAX_LUNS; lun++) {
        if (req->bus->devs[req->target][lun]) {
            data[8 + 8 * n + 1] = (uint8_t)lun;
            n++;
        }
    }
    put_be32(data, (uint32_t)(8 * n));
    scsi_req_reply(req, data, 8 + 8 * n, alloc);
}

/* A LUN that does not exist, on a target that does (SPC: qualifier 3). */
static void absent_lun(struct scsi_request *req)
{
    static const uint8_t inquiry[36] = { 0x7f, 0, 5, 2, 31 };

    switch (req->cdb[0]) {
    case OP_INQUIRY:
        if (req->cdb[1] & 1) {
            scsi_req_check_condition(req, SENSE_LUN_NOT_SUPPORTED);
        } else {
            scsi_req_reply(req, inquiry, sizeof(inquiry), be16(req->cdb + 3));
        }
        break;
    case OP_REPORT_LUNS:
        report_luns(req);
        break;
    case OP_REQUEST_SENSE:
        request_sense(req, SENSE_LUN_NOT_SUPPORTED);
        break;
    default:
        scsi_req_check_condition(req, SENSE_LUN_NOT_SUPPORTED);
        break;
    }
}

void scsi_req_start(struct scsi_request *req)
{
    struct scsi_device *dev = req->dev;
    uint8_t op = req->cdb[0];
    size_t need = scsi_cdb_length(op);

    if (!need || req->cdb_len < need) {
        scsi_req_check_condition(req, SENSE_INVALID_OPCODE);
        return;
    }
    if (!dev) {
        absent_lun(req);
        return;
    }
    if (op == OP_REQUEST_SENSE) {
        /* The last command's CHECK CONDITION first: its unit attention may be queued behind. */
        struct scsi_sense s = dev->sense.key ? dev->sense : take_ua(dev);

        dev->sense = SENSE_NO_SENSE;
        request_sense(req, s);
        return;
    }
    if (op == OP_REPORT_LUNS) {
        report_luns(req);
        return;
    }
    /* MMC-6 4.1.6.1: GET CONFIGURATION and GET EVENT STATUS do not report one either. */
    if (dev->ua->now.key && op != OP_INQUIRY && op != OP_GET_CONFIGURATION &&
        op != OP_GET_EVENT_STATUS) {
        scsi_req_check_condition(req, take_ua(dev));
        return;
    }
    dev->ops->start(req);
}

void scsi_req_transfer(struct scsi_request *req, struct iovec *iov, int iovcnt,
                       scsi_transfer_done_fn *done)
{
    size_t len = 0;

    for (int i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    if (len > req->xfer_len - req->offset) {
        len = (size_t)(req->xfer_len - req->offset);
    }
    if (req->transfer_done) {
        /* One transfer at a time: a second would reuse the target's I/O state in flight. */
        done(req, -EBUSY);
        return;
    }
    req->transfer_done = done;
    req->transfer_len = len;
    scsi_req_ref(req);
    if (req->completed || req->cancelled || req->dir == SCSI_XFER_NONE) {
        scsi_req_transfer_done(req, req->cancelled ? -ECANCELED : 0);
        return;
    }
    if (req->buffered) {
        buffer_transfer(req, iov, iovcnt, len);
        return;
    }
    req->dev->ops->transfer(req, iov, iovcnt, len);
}

void scsi_req_transfer_done(struct scsi_request *req, int result)
{
    scsi_transfer_done_fn *done = req->transfer_done;

    req->transfer_done = NULL;
    if (result > 0) {
        req->offset += (uint64_t)result;
    }
    /* The HBA hears of its data first, of the status after; not at all once cancelled. */
    if (done && !req->cancelled) {
        done(req, result);
    }
    if (!req->completed && req->offset == req->xfer_len) {
        if (req->dev && req->dev->ops->data_done) {
            req->dev->ops->data_done(req);
        } else {
            scsi_req_complete(req, SCSI_GOOD);
        }
    }
    scsi_req_unref(req);
}

void scsi_req_cancel(struct scsi_request *req)
{
    if (req->cancelled || req->completed) {
        return;
    }
    req->cancelled = true;
    req->sense = SENSE_NO_SENSE;
    /* I/O in flight finishes on its own and finds the request cancelled. */
    if (req->dev && req->dev->ops->cancel) {
        req->dev->ops->cancel(req);
    }
    scsi_req_complete(req, SCSI_TASK_ABORTED);
}
