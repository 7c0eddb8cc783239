// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * scsi-hd and scsi-cd: SCSI block targets on a drive (SPC-3, SBC-3, MMC
 * basics).  READ and WRITE move data between the HBA's guest-memory iovecs
 * and the image with no copy; everything else is emulated.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/backend.h"
#include "block/drive.h"
#include "hw/device.h"
#include "scsi/bus.h"
#include "util/byteorder.h"
#include "util/error.h"
#include "util/guarded-copy.h"
#include "util/log.h"
#include "util/loop.h"

enum {
    OP_TEST_UNIT_READY = 0x00, OP_REQUEST_SENSE = 0x03, OP_READ_6 = 0x08,
    OP_WRITE_6 = 0x0a, OP_INQUIRY = 0x12, OP_MODE_SELECT_6 = 0x15,
    OP_MODE_SENSE_6 = 0x1a, OP_START_STOP = 0x1b, OP_PREVENT_ALLOW = 0x1e,
    OP_READ_CAPACITY_10 = 0x25, OP_READ_10 = 0x28, OP_WRITE_10 = 0x2a,
    OP_WRITE_VERIFY_10 = 0x2e, OP_VERIFY_10 = 0x2f, OP_SYNC_CACHE_10 = 0x35,
    OP_WRITE_SAME_10 = 0x41, OP_UNMAP = 0x42, OP_READ_TOC = 0x43,
    OP_GET_CONFIGURATION = 0x46, OP_GET_EVENT_STATUS = 0x4a, OP_MODE_SELECT_10 = 0x55, OP_MODE_SENSE_10 = 0x5a,
    OP_READ_16 = 0x88, OP_WRITE_16 = 0x8a, OP_WRITE_VERIFY_16 = 0x8e,
    OP_VERIFY_16 = 0x8f, OP_SYNC_CACHE_16 = 0x91, OP_WRITE_SAME_16 = 0x93,
    OP_SERVICE_ACTION_IN_16 = 0x9e, OP_READ_12 = 0xa8, OP_WRITE_12 = 0xaa,
    OP_WRITE_VERIFY_12 = 0xae, OP_VERIFY_12 = 0xaf,

    SAI_READ_CAPACITY_16 = 0x10,
    TYPE_DISK = 0x00, TYPE_ROM = 0x05,
    MAX_IOV = 16,
    /* Caps on what one command may ask of us (advertised in VPD 0xb0). */
    MAX_UNMAP_DESCRIPTORS = 256,
    MAX_WRITE_SAME_BLOCKS = 1 << 22,
    MAX_VERIFY_BYTES = 65536,
    /* A WRITE SAME pattern is written this much at a time: QEMU's SCSI_WRITE_SAME_MAX,
     * so query-blockstats counts as many writes. */
    WRITE_SAME_CHUNK = 512 << 10,
    /*
     * A guest's scatter-gather list is often a list of 4 KiB pages.  Pieces
     * that small go through a staging buffer, so that a command costs one
     * disk I/O per STAGE_SIZE bytes rather than one per page; pieces of at
     * least STAGE_DIRECT_MIN bytes move between guest memory and the disk
     * directly.
     */
    STAGE_SIZE = 128 * 1024,
    STAGE_DIRECT_MIN = 64 * 1024,
    /*
     * A WRITE gathers all its pieces, however big, in a stage of up to
     * this much before going to the disk.  A buffered write to a file is
     * done by an io_uring worker thread, not inline: each I/O costs two
     * thread wakeups, and on a busy host each may wait for a CPU for a
     * scheduler slice (milliseconds).  One I/O per command rather than one
     * per 64 or 128 KiB keeps a 1 MiB WRITE of Linux's sym53c8xx within
     * one timer tick of a guest that polls for completions.
     */
    WRITE_STAGE_SIZE = 1024 * 1024,
    /*
     * Full-size stages kept for the next commands: allocating one per
     * command costs an mmap and a page fault per page.
     */
    SPARE_STAGES = 8,
    SPARE_WRITE_STAGES = 2,
};

/* Which medium the device holds, as the checkpoint says (struct disk_kept). */
enum { KEPT_MEDIUM_GIVEN, KEPT_MEDIUM_NONE, KEPT_MEDIUM_CHANGED, KEPT_MEDIUM_KINDS };
/* Whether writes are cached: as the -drive's cache mode says, or as the guest chose. */
enum { KEPT_WCE_DRIVE, KEPT_WCE_OFF, KEPT_WCE_ON, KEPT_WCE_KINDS };

/*
 * The medium's state, kept in the checkpoint ("ID/media") and used live, so
 * that a restarted process presents the same medium, tray, lock, events,
 * unit attentions and size (docs/restart.md).  Plain data, checked when
 * found again (kept_is_sound()).
 */
struct disk_kept {
    struct scsi_unit_attention ua;
    uint8_t tray_open, locked;  /* 0 or 1 */
    /* For GET EVENT STATUS NOTIFICATION: reported once, then cleared (0 or 1). */
    uint8_t media_event;        /* the tray moved or the medium changed */
    uint8_t eject_request;      /* the host asked to eject a locked medium */
    uint8_t medium;             /* KEPT_MEDIUM_*: the -drive's, none, or the one below */
    uint8_t readonly;           /* of a changed medium: 0 or 1 */
    uint8_t cache;              /* of a changed medium: enum drive_cache */
    uint8_t wce;                /* KEPT_WCE_*: the guest's MODE SELECT of the caching page */
    uint64_t size;              /* of the medium, in bytes, when last seen; 0: none */
    char format[16];            /* of a changed medium, NUL-terminated */
    char file[4096];            /* of a changed medium, NUL-terminated */
};

struct scsi_disk {
    struct device dev;
    /* Properties. */
    char *drive_id, *bus_name, *serial, *vendor, *product, *version;
    uint64_t scsi_id, lun, wwn, block_size;
    uint64_t drain_limit_ms;    /* how long an eject waits for the medium's I/O */
    bool removable_prop;
    /* State. */
    struct scsi_device sdev;
    struct block_backend *blk;  /* holds the medium: a medium change swaps it there */
    bool cdrom;
    bool removable;
    bool write_cache;           /* WCE: writes are acknowledged before they are durable */
    /*
     * The last block as the guest knows it, from its last READ CAPACITY or
     * the device's last reset (QEMU's max_lba): block commands are checked
     * against it, so after a resize a command past the new end goes to the
     * medium (and fails there, EIO) until the guest reads the capacity.
     */
    uint64_t max_lba;
    struct disk_kept *kept;     /* in the checkpoint, or own_kept when it has no room */
    struct disk_kept own_kept;
    /*
     * A restart's changed medium, opened once the process is confined
     * (disk_serve): the file named in the checkpoint gets what a monitor's
     * medium change gets, the sandbox's media directories, not the rights
     * of a process still setting up.  The command line's medium it does
     * not hold is closed then, so that the sandbox allows its file as the
     * first process's did (a monitor may put it back).
     */
    bool kept_to_open;
    struct drive *given_to_close;
    /*
     * Counts the host's tray moves (an eject, a medium change): a command
     * started before one does no more I/O, not on the medium that went nor
     * on the one that came in its place.
     */
    unsigned medium_epoch;
    struct loop *loop;
    /*
     * Cancelled commands' I/O still in flight, and the I/O of other
     * commands held back until it has landed: an aborted WRITE must not
     * land after a later command's I/O (SAM-5: a task management function
     * completes once the commands it aborts have ended), nor a later READ
     * see it half done.
     */
    unsigned orphans;
    struct disk_req *fenced, **fenced_tail;
    void *spare_stages[SPARE_STAGES];
    unsigned n_spare_stages;
    void *spare_write_stages[SPARE_WRITE_STAGES];
    unsigned n_spare_write_stages;
};

/* Per-request state for commands that do I/O. */
struct disk_req {
    struct scsi_request *req;
    struct scsi_disk *disk;
    struct blk_io io;
    struct iovec iov[MAX_IOV];
    bool busy;                  /* an I/O is in flight, or fenced */
    bool orphan;                /* cancelled with its I/O in flight: counted in orphans */
    bool fenced;                /* its I/O waits in the fenced list */
    unsigned medium_epoch;      /* the disk's when the command started */
    struct loop_bh no_medium;   /* fails an I/O the medium is not there for */
    struct disk_req *fenced_next;
    uint64_t lba;               /* first block of the command */
    uint32_t nblocks;
    bool write, fua;
    /* Multi-step commands (UNMAP, WRITE SAME, VERIFY). */
    unsigned step, steps;
    uint8_t *scratch;
    size_t scratch_len;
    /* Staged READ/WRITE data: request bytes [stage_off, stage_off + stage_len). */
    uint8_t *stage;
    size_t stage_cap;           /* its size: stage_size(), or less for a small command */
    uint64_t stage_off;
    size_t stage_len;
    struct iovec stage_iov;
    bool stage_io;              /* the I/O in flight fills or flushes the stage */
    int piece_iovcnt;           /* the piece waiting for it, in iov[] */
    size_t piece_len;
};

static struct scsi_disk *disk_of(struct scsi_device *sdev)
{
    return (struct scsi_disk *)((char *)sdev - offsetof(struct scsi_disk, sdev));
}

/* The drive in the tray, or NULL. */
static struct drive *medium(const struct scsi_disk *d)
{
    return blk_drive(d->blk);
}

static uint64_t capacity_blocks(const struct scsi_disk *d)
{
    return medium(d) ? medium(d)->size / d->block_size : 0;
}

static bool has_medium(const struct scsi_disk *d)
{
    return medium(d) && !d->kept->tray_open;
}

/* A reset: the guest's idea of the capacity is the medium's now (0 for none, as QEMU's). */
static void reset_max_lba(struct scsi_disk *d)
{
    uint64_t n = capacity_blocks(d);

    d->max_lba = n ? n - 1 : 0;
}

static struct disk_req *disk_req_new(struct scsi_request *req)
{
    struct disk_req *r = calloc(1, sizeof(*r));

    if (r) {
        r->req = req;
        r->disk = disk_of(req->dev);
        r->medium_epoch = r->disk->medium_epoch;
        req->target_private = r;
        scsi_req_ref(req);
    }
    return r;
}

/* A full-size stage of a READ or of a WRITE. */
static size_t stage_size(const struct disk_req *r)
{
    return r->write ? WRITE_STAGE_SIZE : STAGE_SIZE;
}

/* The spare full-size stages of a READ's size or of a WRITE's; n: how many, max: room. */
static void **spares(struct disk_req *r, unsigned **n, unsigned *max)
{
    struct scsi_disk *d = r->disk;

    if (r->write) {
        *n = &d->n_spare_write_stages;
        *max = SPARE_WRITE_STAGES;
        return d->spare_write_stages;
    }
    *n = &d->n_spare_stages;
    *max = SPARE_STAGES;
    return d->spare_stages;
}

static void stage_release(struct disk_req *r)
{
    unsigned *n, max;
    void **spare = spares(r, &n, &max);

    if (r->stage && r->stage_cap == stage_size(r) && *n < max) {
        spare[(*n)++] = r->stage;
    } else {
        free(r->stage);
    }
    r->stage = NULL;
}

static void disk_req_free(struct disk_req *r)
{
    r->req->target_private = NULL;
    scsi_req_unref(r->req);
    free(r->scratch);
    stage_release(r);
    free(r);
}

static void fail(struct scsi_request *req, struct scsi_sense sense)
{
    scsi_req_check_condition(req, sense);
}

/* Memory for the command's state was short: as an I/O failing ENOMEM would. */
static void fail_no_memory(struct scsi_request *req)
{
    fail(req, scsi_sense_from_errno(ENOMEM));
}

/* --- INQUIRY ------------------------------------------------------------ */

static void pad_copy(uint8_t *dst, const char *src, size_t len)
{
    size_t n = strlen(src);

    memset(dst, ' ', len);
    memcpy(dst, src, n < len ? n : len);
}

static size_t inquiry_standard(struct scsi_disk *d, uint8_t *out)
{
    memset(out, 0, 36);
    out[0] = d->cdrom ? TYPE_ROM : TYPE_DISK;
    out[1] = d->removable ? 0x80 : 0;
    out[2] = 5;                 /* SPC-3 */
    out[3] = 0x12;              /* HiSup, response data format 2 */
    out[4] = 36 - 5;
    out[7] = 0x12;              /* Sync, CmdQue: tagged queueing */
    pad_copy(out + 8, d->vendor, 8);
    pad_copy(out + 16, d->product, 16);
    pad_copy(out + 32, d->version, 4);
    return 36;
}

static size_t vpd_page(struct scsi_disk *d, uint8_t page, uint8_t *out, bool *ok)
{
    size_t len = 0;

    *ok = true;
    out[0] = d->cdrom ? TYPE_ROM : TYPE_DISK;
    out[1] = page;
    switch (page) {
    case 0x00: {                /* supported pages */
        static const uint8_t disk_pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
        len = d->cdrom ? 3 : sizeof(disk_pages);
        memcpy(out + 4, disk_pages, len);
        break;
    }
    case 0x80:                  /* unit serial number */
        len = strlen(d->serial) < 252 ? strlen(d->serial) : 252;
        memcpy(out + 4, d->serial, len);
        break;
    case 0x83: {                /* device identification */
        size_t id = strlen(d->dev.id) < 200 ? strlen(d->dev.id) : 200;

        out[4] = 0x2;           /* ASCII, vendor specific, LUN */
        out[7] = (uint8_t)id;
        memcpy(out + 8, d->dev.id, id);
        len = 4 + id;
        if (d->wwn) {
            out[4 + len] = 0x1;         /* binary */
            out[5 + len] = 0x3;         /* NAA, LUN */
            out[7 + len] = 8;
            put_be64(out + 8 + len, d->wwn);
            len += 12;
        }
        break;
    }
    case 0xb0:                  /* block limits */
        if (d->cdrom) {
            *ok = false;
            return 0;
        }
        len = 0x3c;
        memset(out + 4, 0, len);
        put_be32(out + 8, 65535);                       /* max transfer length */
        put_be32(out + 20, UINT32_MAX);                 /* max unmap LBA count */
        put_be32(out + 24, MAX_UNMAP_DESCRIPTORS);      /* max unmap descriptors */
        put_be32(out + 28, 4096 / (uint32_t)d->block_size ? 4096 / (uint32_t)d->block_size : 1);
        put_be64(out + 36, MAX_WRITE_SAME_BLOCKS);      /* max write same length */
        break;
    case 0xb1:                  /* block device characteristics */
        if (d->cdrom) {
            *ok = false;
            return 0;
        }
        len = 0x3c;
        memset(out + 4, 0, len);
        put_be16(out + 4, 1);   /* non-rotating medium */
        break;
    case 0xb2:                  /* logical block provisioning */
        if (d->cdrom) {
            *ok = false;
            return 0;
        }
        len = 4;
        memset(out + 4, 0, len);
        out[5] = 0xe0;          /* LBPU, LBPWS, LBPWS10 */
        out[6] = 0x02;          /* thin provisioned */
        break;
    default:
        *ok = false;
        return 0;
    }
    put_be16(out + 2, (uint16_t)len);
    return 4 + len;
}

static void do_inquiry(struct scsi_disk *d, struct scsi_request *req)
{
    uint8_t out[256];
    size_t len;
    bool ok = true;

    if (req->cdb[1] & 0x1) {
        len = vpd_page(d, req->cdb[2], out, &ok);
    } else if (req->cdb[2]) {
        ok = false;
    } else {
        len = inquiry_standard(d, out);
    }
    if (!ok) {
        fail(req, SENSE_INVALID_FIELD);
        return;
    }
    scsi_req_reply(req, out, len, be16(req->cdb + 3));
}

/* --- capacity, mode pages ----------------------------------------------- */

static void do_read_capacity_10(struct scsi_disk *d, struct scsi_request *req)
{
    uint8_t out[8];
    uint64_t last = capacity_blocks(d) - 1;

    d->max_lba = last;      /* the guest knows it now */
    put_be32(out, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
    put_be32(out + 4, (uint32_t)d->block_size);
    scsi_req_reply(req, out, sizeof(out), sizeof(out));
}

static void do_read_capacity_16(struct scsi_disk *d, struct scsi_request *req)
{
    uint8_t out[32] = { 0 };

    d->max_lba = capacity_blocks(d) - 1;   /* the guest knows it now */
    put_be64(out, d->max_lba);
    put_be32(out + 8, (uint32_t)d->block_size);
    if (!d->cdrom) {
        out[14] = 0xc0;         /* LBPME, LBPRZ: unmapped blocks read as zeros */
    }
    scsi_req_reply(req, out, sizeof(out), be32(req->cdb + 10));
}

/* Appends mode page 'page' (control 0 current, 1 changeable, 2 default). */
static size_t mode_page(struct scsi_disk *d, uint8_t page, int control, uint8_t *p)
{
    size_t len;

    switch (page) {
    case 0x08:                  /* caching */
        len = 0x14;
        memset(p, 0, len);
        if (control == 1) {
            p[2] = 0x04;        /* WCE can change */
        } else if (control == 2 || d->write_cache) {
            p[2] = control == 2 ? 0x04 : (d->write_cache ? 0x04 : 0);
        }
        break;
    case 0x0a:                  /* control */
        len = 0x0c;
        memset(p, 0, len);
        if (control != 1) {
            p[3] = 0x10;        /* queue algorithm: unrestricted reordering */
        }
        break;
    case 0x04: {                /* rigid disk geometry */
        uint64_t cylinders = capacity_blocks(d) / (16 * 63);

        if (d->cdrom) {
            return 0;
        }
        len = 0x18;
        memset(p, 0, len);
        if (control != 1) {
            p[2] = (uint8_t)(cylinders >> 16);
            p[3] = (uint8_t)(cylinders >> 8);
            p[4] = (uint8_t)cylinders;
            p[5] = 16;          /* heads */
            put_be16(p + 20, 5400);
        }
        break;
    }
    case 0x03:                  /* format device */
        if (d->cdrom) {
            return 0;
        }
        len = 0x18;
        memset(p, 0, len);
        if (control != 1) {
            put_be16(p + 10, 63);                       /* sectors per track */
            put_be16(p + 12, (uint16_t)d->block_size);  /* bytes per sector */
        }
        break;
    case 0x2a:                  /* CD capabilities and mechanical status */
        if (!d->cdrom) {
            return 0;
        }
        len = 0x16;
        memset(p, 0, len);
        if (control != 1) {
            p[2] = 0x3b;        /* reads CD-R/RW, DVD-ROM... */
            p[6] = 0x29 | (d->kept->locked ? 0x02 : 0);   /* lock, eject, tray */
            put_be16(p + 8, 706);   /* max read speed, kB/s */
            put_be16(p + 12, 2048);
        }
        break;
    default:
        return 0;
    }
    p[0] = page;
    p[1] = (uint8_t)(len - 2);
    return len;
}

static void do_mode_sense(struct scsi_disk *d, struct scsi_request *req)
{
    static const uint8_t all_pages[] = { 0x03, 0x04, 0x08, 0x0a, 0x2a };
    bool ten = req->cdb[0] == OP_MODE_SENSE_10;
    bool dbd = req->cdb[1] & 0x08;
    int control = req->cdb[2] >> 6;
    uint8_t page = req->cdb[2] & 0x3f, out[512] = { 0 };
    size_t hdr = ten ? 8 : 4, len = hdr;
    uint64_t blocks = capacity_blocks(d);

    if (control == 3) {
        fail(req, SENSE_SAVING_PARAMS_NOT_SUPPORTED);
        return;
    }
    if (req->cdb[3] && req->cdb[3] != 0xff) {
        fail(req, SENSE_INVALID_FIELD);     /* no subpages */
        return;
    }
    if (!dbd && !d->cdrom) {
        uint8_t *bd = out + hdr;

        put_be32(bd, blocks > 0xffffff ? 0 : (uint32_t)blocks);
        bd[0] = 0;              /* density code */
        put_be32(bd + 4, (uint32_t)d->block_size);
        bd[4] = 0;
        len += 8;
        if (ten) {
            put_be16(out + 6, 8);
        } else {
            out[3] = 8;
        }
    }
    if (page == 0x3f) {
        for (size_t i = 0; i < sizeof(all_pages); i++) {
            len += mode_page(d, all_pages[i], control, out + len);
        }
    } else {
        size_t n = mode_page(d, page, control, out + len);

        if (!n) {
            fail(req, SENSE_INVALID_FIELD);
            return;
        }
        len += n;
    }
    /* Device-specific parameter: write protect, and DPO/FUA supported. */
    out[ten ? 3 : 2] = (medium(d) && medium(d)->readonly ? 0x80 : 0) | (d->cdrom ? 0 : 0x10);
    if (ten) {
        put_be16(out, (uint16_t)(len - 2));
    } else {
        out[0] = (uint8_t)(len - 1);
    }
    scsi_req_reply(req, out, len, ten ? be16(req->cdb + 7) : req->cdb[4]);
}

/* MODE SELECT: WCE is the one thing that changes; other values must match. */
static void mode_select_data(struct scsi_disk *d, struct scsi_request *req)
{
    bool ten = req->cdb[0] == OP_MODE_SELECT_10;
    const uint8_t *p = req->buf;
    size_t len = (size_t)req->xfer_len, hdr = ten ? 8 : 4, off;
    size_t bdlen;
    bool wce = d->write_cache;

    if (len < hdr) {
        fail(req, SENSE_INVALID_PARAM_LEN);
        return;
    }
    bdlen = ten ? be16(p + 6) : p[3];
    off = hdr + bdlen;
    if (off > len || (bdlen && bdlen != 8) ||
        (bdlen && be32(p + hdr + 4) % (1u << 24) != d->block_size)) {
        fail(req, SENSE_INVALID_PARAM);
        return;
    }
    while (off < len) {
        uint8_t page = p[off] & 0x3f, cur[64];
        size_t plen, clen;

        if (off + 2 > len || off + 2 + p[off + 1] > len) {
            fail(req, SENSE_INVALID_PARAM_LEN);
            return;
        }
        plen = (size_t)p[off + 1] + 2;
        clen = mode_page(d, page, 0, cur);
        if (!clen || clen != plen) {
            fail(req, SENSE_INVALID_PARAM);
            return;
        }
        if (page == 0x08) {
            wce = p[off + 2] & 0x04;
            cur[2] = p[off + 2];
        }
        if (memcmp(cur + 2, p + off + 2, plen - 2)) {
            fail(req, SENSE_INVALID_PARAM);
            return;
        }
        off += plen;
    }
    d->write_cache = wce;
    d->kept->wce = wce ? KEPT_WCE_ON : KEPT_WCE_OFF;
    scsi_req_complete(req, SCSI_GOOD);
}

static void do_mode_select(struct scsi_request *req)
{
    bool ten = req->cdb[0] == OP_MODE_SELECT_10;
    size_t len = ten ? be16(req->cdb + 7) : req->cdb[4];

    if (!(req->cdb[1] & 0x10) || (req->cdb[1] & 0x01)) {
        /* Only the standard page format; saving is not supported. */
        fail(req, req->cdb[1] & 0x01 ? SENSE_SAVING_PARAMS_NOT_SUPPORTED : SENSE_INVALID_FIELD);
        return;
    }
    if (!len) {
        scsi_req_complete(req, SCSI_GOOD);
        return;
    }
    scsi_req_expect(req, len);  /* the parameter list, or the request failed */
}

/* --- CD-ROM ------------------------------------------------------------- */

static void lba_to_msf(uint8_t *p, uint64_t lba)
{
    lba += 150;
    p[0] = 0;
    p[1] = (uint8_t)(lba / 75 / 60);
    p[2] = (uint8_t)(lba / 75 % 60);
    p[3] = (uint8_t)(lba % 75);
}

static void do_read_toc(struct scsi_disk *d, struct scsi_request *req)
{
    bool msf = req->cdb[1] & 0x02;
    int format = req->cdb[2] & 0x0f;
    uint8_t out[32] = { 0 };
    size_t len;

    if (format == 0) {
        if (req->cdb[6] > 1 && req->cdb[6] != 0xaa) {
            fail(req, SENSE_INVALID_FIELD);
            return;
        }
        out[2] = out[3] = 1;                /* first and last track */
        out[5] = 0x14;                      /* data track */
        out[6] = 1;
        if (msf) {
            lba_to_msf(out + 8, 0);
        }
        out[13] = 0x14;
        out[14] = 0xaa;                     /* lead-out */
        if (msf) {
            lba_to_msf(out + 16, capacity_blocks(d));
        } else {
            put_be32(out + 16, (uint32_t)capacity_blocks(d));
        }
        len = 20;
    } else if (format == 1) {               /* session info */
        out[2] = out[3] = 1;
        out[5] = 0x14;
        out[6] = 1;
        len = 12;
    } else {
        fail(req, SENSE_INVALID_FIELD);
        return;
    }
    put_be16(out, (uint16_t)(len - 2));
    scsi_req_reply(req, out, len, be16(req->cdb + 7));
}

static void do_get_configuration(struct scsi_disk *d, struct scsi_request *req)
{
    /* Profiles: DVD-ROM (0x10) and CD-ROM (0x08); the medium's is current. */
    bool dvd = capacity_blocks(d) > 360000;     /* more than a CD holds */
    uint16_t current = !has_medium(d) ? 0 : dvd ? 0x10 : 0x08;
    uint8_t out[8 + 4 + 8] = { 0 };

    put_be16(out + 6, current);
    /* Feature 0: profile list. */
    out[10] = 0x03;             /* persistent, current */
    out[11] = 8;
    put_be16(out + 12, 0x10);
    out[14] = current == 0x10;
    put_be16(out + 16, 0x08);
    out[18] = current == 0x08;
    put_be32(out, sizeof(out) - 4);
    scsi_req_reply(req, out, sizeof(out), be16(req->cdb + 7));
}

/*
 * GET EVENT STATUS NOTIFICATION (MMC-6 6.7), polled, media class only:
 * how a guest learns of a medium change or an eject request without
 * waiting for a unit attention.
 */
static void do_get_event_status(struct scsi_disk *d, struct scsi_request *req)
{
    enum { POLLED = 0x01, MEDIA_CLASS = 4, NO_EVENT_AVAILABLE = 0x80,
           EJECT_REQUEST = 1, NEW_MEDIA = 2, MEDIA_REMOVAL = 3,
           TRAY_OPEN = 0x01, MEDIA_PRESENT = 0x02 };
    uint8_t out[8] = { 0 };
    size_t len = 4;

    if (!(req->cdb[1] & POLLED)) {
        fail(req, SENSE_INVALID_FIELD);     /* asynchronous notification: not offered */
        return;
    }
    out[3] = 1 << MEDIA_CLASS;              /* the classes we support */
    if (req->cdb[4] & (1 << MEDIA_CLASS)) {
        out[2] = MEDIA_CLASS;
        /* One event a poll, the medium's first (as QEMU): the other waits for the next. */
        if (d->kept->media_event) {
            out[4] = has_medium(d) ? NEW_MEDIA : MEDIA_REMOVAL;
            d->kept->media_event = 0;
        } else if (d->kept->eject_request) {
            out[4] = EJECT_REQUEST;
            d->kept->eject_request = 0;
        }
        out[5] = (d->kept->tray_open ? TRAY_OPEN : 0) | (medium(d) ? MEDIA_PRESENT : 0);
        len = 8;
    } else {
        out[2] = NO_EVENT_AVAILABLE;
    }
    put_be16(out, (uint16_t)(len - 2));
    scsi_req_reply(req, out, len, be16(req->cdb + 7));
}

static void set_tray(struct scsi_disk *d, bool open)
{
    if (d->kept->tray_open == open) {
        return;
    }
    d->kept->tray_open = open;
    d->kept->media_event = true;
    blk_tray_moved(d->blk, open);
}

static void do_start_stop(struct scsi_disk *d, struct scsi_request *req)
{
    bool loej = req->cdb[4] & 0x02, start = req->cdb[4] & 0x01;

    if (d->removable && loej) {
        if (!start && d->kept->locked) {
            fail(req, SENSE_REMOVAL_PREVENTED);
            return;
        }
        set_tray(d, !start);
    }
    scsi_req_complete(req, SCSI_GOOD);
}

/* --- data commands ------------------------------------------------------ */

/* Within the capacity the guest knows (max_lba): a command past it is refused. */
static bool lba_range_ok(struct scsi_disk *d, uint64_t lba, uint64_t n)
{
    uint64_t cap = d->max_lba + 1;

    return lba <= cap && n <= cap - lba;
}

/*
 * The checks every block command makes before it starts: write protection,
 * the range of blocks.  Returns the command's state, or NULL once the
 * request has been failed.
 */
static struct disk_req *begin_blocks(struct scsi_disk *d, struct scsi_request *req,
                                     uint64_t lba, uint32_t n, bool write)
{
    struct disk_req *r;

    if (write && medium(d)->readonly) {
        fail(req, SENSE_WRITE_PROTECTED);
        return NULL;
    }
    if (!lba_range_ok(d, lba, n)) {
        /* QEMU's scsi-disk does not count a WRITE SAME it refuses. */
        if (req->cdb[0] != OP_WRITE_SAME_10 && req->cdb[0] != OP_WRITE_SAME_16) {
            blk_account_invalid(d->blk, write ? BLK_WRITE : BLK_READ);
        }
        fail(req, SENSE_LBA_OUT_OF_RANGE);
        return NULL;
    }
    r = disk_req_new(req);
    if (!r) {
        fail_no_memory(req);
        return NULL;
    }
    r->lba = lba;
    r->nblocks = n;
    r->write = write;
    return r;
}

static void io_finished(struct blk_io *io, int result);
static void piece_io_done(struct disk_req *r, int result, size_t len);
static void stage_io_finished(struct disk_req *r, int result);

static void on_no_medium(void *opaque)
{
    struct disk_req *r = opaque;

    io_finished(&r->io, -ENOMEDIUM);
}

/*
 * Starts the command's I/O on its medium.  As QEMU's BlockBackend refuses
 * requests (ENOMEDIUM) while the tray is open, the I/O fails, from the
 * loop, once the host has opened the tray (an eject under way waits for
 * the I/O in flight, not for this) or swapped the medium since the command
 * started: half of a command's data does not go to another medium.
 */
static void start_io(struct disk_req *r)
{
    struct scsi_disk *d = r->disk;

    if (r->medium_epoch != d->medium_epoch || !blk_available(d->blk)) {
        loop_bh_init(&r->no_medium, on_no_medium, r);
        loop_bh_schedule(d->loop, &r->no_medium);
        return;
    }
    drive_submit(medium(d), &r->io);
}

static void submit(struct disk_req *r, enum blk_op op, uint64_t offset, struct iovec *iov,
                   int iovcnt, uint64_t len)
{
    r->io = (struct blk_io){ .op = op, .offset = offset, .iov = iov, .iovcnt = iovcnt,
                             .len = len, .done = io_finished, .opaque = r };
    /* WRITE SAME's unmapping counts as a write: QEMU's is a write zeroes that may unmap. */
    r->io.counted_as_write = op == BLK_DISCARD && r->req->cdb[0] != OP_UNMAP;
    r->busy = true;
    if (r->disk->orphans) {
        r->fenced = true;
        r->fenced_next = NULL;
        *r->disk->fenced_tail = r;
        r->disk->fenced_tail = &r->fenced_next;
        return;
    }
    start_io(r);
}

/* The last cancelled command's I/O has landed: the held-back I/O goes, in order. */
static void release_fenced(struct scsi_disk *d)
{
    while (!d->orphans && d->fenced) {
        struct disk_req *r = d->fenced;

        d->fenced = r->fenced_next;
        if (!d->fenced) {
            d->fenced_tail = &d->fenced;
        }
        r->fenced = false;
        if (r->req->cancelled) {
            io_finished(&r->io, -ECANCELED);    /* cancelled while it waited: no I/O */
        } else {
            start_io(r);
        }
    }
}

/* The sense of a command whose I/O failed with result (-errno). */
static struct scsi_sense io_sense(int result)
{
    return scsi_sense_from_errno(-result);
}

static void finish_with(struct disk_req *r, int result)
{
    struct scsi_request *req = r->req;

    if (!req->cancelled) {
        if (result < 0) {
            fail(req, io_sense(result));
        } else {
            scsi_req_complete(req, SCSI_GOOD);
        }
    }
    disk_req_free(r);
}

/* Steps of commands that are not one transfer: FUA flush, UNMAP, WRITE SAME, VERIFY. */
static void next_step(struct disk_req *r, int result);

static void io_finished(struct blk_io *io, int result)
{
    struct disk_req *r = io->opaque;
    struct scsi_request *req = r->req;

    r->busy = false;
    if (r->orphan) {
        r->orphan = false;
        r->disk->orphans--;
        release_fenced(r->disk);
    }
    if (req->cancelled) {
        if (req->transfer_done) {
            scsi_req_transfer_done(req, -ECANCELED);
        }
        disk_req_free(r);
        return;
    }
    if (r->stage_io) {
        stage_io_finished(r, result);
        return;
    }
    if (req->transfer_done) {
        /* A data-phase transfer of READ or WRITE. */
        piece_io_done(r, result, req->transfer_len);
        return;
    }
    next_step(r, result);
}

/* Copies the piece's first len bytes into r->iov; returns the iovec count. */
static int take_piece(struct disk_req *r, const struct iovec *iov, int iovcnt, size_t *len)
{
    size_t left = *len;
    int n = 0;

    for (int i = 0; i < iovcnt && left && n < MAX_IOV; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;

        r->iov[n++] = (struct iovec){ iov[i].iov_base, take };
        left -= take;
    }
    *len -= left;       /* more pieces than we take at once: the rest comes later */
    return n;
}

static uint64_t disk_offset(const struct disk_req *r, uint64_t req_offset)
{
    return r->lba * r->disk->block_size + req_offset;
}

static void direct_transfer(struct disk_req *r, const struct iovec *iov, int iovcnt, size_t len)
{
    int n = take_piece(r, iov, iovcnt, &len);

    r->req->transfer_len = len;
    submit(r, r->write ? BLK_WRITE : BLK_READ, disk_offset(r, r->req->offset), r->iov, n, len);
}

/*
 * Moves between the stage (from request offset 'at') and r->iov; returns
 * bytes, or -EFAULT when guest memory vanished under the copy.
 */
static int stage_copy(struct disk_req *r, uint64_t at, int iovcnt, size_t len, bool into)
{
    uint8_t *p = r->stage + (at - r->stage_off);
    int rc = into ? iov_to_buf(r->iov, iovcnt, 0, p, len) : iov_from_buf(r->iov, iovcnt, 0, p, len);

    return rc < 0 ? rc : (int)len;
}

/* The command failed (-errno): CHECK CONDITION, and its state goes, none of it in flight. */
static void fail_command(struct disk_req *r, int error)
{
    fail(r->req, io_sense(error));
    disk_req_free(r);
}

/* A piece moved (bytes): the data phase goes on.  Or it failed (-errno), and the command with it. */
static void piece_done(struct disk_req *r, int moved)
{
    struct scsi_request *req = r->req;

    if (moved < 0) {
        fail_command(r, moved);
    }
    scsi_req_transfer_done(req, moved);
}

/*
 * The I/O of a piece of 'len' bytes ended (result: -errno, or not).  A
 * WRITE's piece had left the initiator's memory for it: failed at the disk,
 * it still counts as moved, as in QEMU, whose HBA moves a write's data into
 * the disk's buffer before the disk's I/O is issued (scsi_write_data()), so
 * that the guest sees the data phase done and the CHECK CONDITION after it.
 * Guest memory gone under the I/O (EFAULT) is the HBA's fault, not moved.
 */
static void piece_io_done(struct disk_req *r, int result, size_t len)
{
    struct scsi_request *req = r->req;

    if (result < 0 && r->write && result != -EFAULT) {
        fail_command(r, result);
        scsi_req_transfer_done(req, (int)len);
        return;
    }
    piece_done(r, result < 0 ? result : (int)len);
}

/* A stage no larger than the command: small commands stay off mmap'd buffers. */
static bool stage_alloc(struct disk_req *r)
{
    uint64_t want = (r->req->xfer_len + 4095) & ~(uint64_t)4095;
    void *p;

    if (!r->stage) {
        unsigned *n, max;
        void **spare = spares(r, &n, &max);

        r->stage_cap = want < stage_size(r) ? (size_t)want : stage_size(r);
        if (r->stage_cap == stage_size(r) && *n) {
            r->stage = spare[--(*n)];
        } else if (posix_memalign(&p, 4096, r->stage_cap) == 0) {
            r->stage = p;
        }
    }
    return r->stage != NULL;
}

/*
 * Staging pays when more pieces follow; a piece that ends the command goes
 * direct, and so do big pieces: a READ's of STAGE_DIRECT_MIN (its disk I/O
 * is mostly done inline), a WRITE's only of a whole stage (WRITE_STAGE_SIZE).
 */
static bool worth_staging(const struct disk_req *r, size_t len)
{
    return len < (r->write ? WRITE_STAGE_SIZE : STAGE_DIRECT_MIN) &&
           r->req->offset + len < r->req->xfer_len;
}

static void stage_submit(struct disk_req *r, enum blk_op op, int iovcnt, size_t piece_len)
{
    r->stage_iov = (struct iovec){ r->stage, r->stage_len };
    r->stage_io = true;
    r->piece_iovcnt = iovcnt;
    r->piece_len = piece_len;
    submit(r, op, disk_offset(r, r->stage_off), &r->stage_iov, 1, r->stage_len);
}

static void read_piece(struct disk_req *r, const struct iovec *iov, int iovcnt, size_t len)
{
    struct scsi_request *req = r->req;
    uint64_t at = req->offset;
    int n;

    if (r->stage_len && at >= r->stage_off && at - r->stage_off < r->stage_len) {
        size_t avail = r->stage_len - (size_t)(at - r->stage_off);

        len = len < avail ? len : avail;
        n = take_piece(r, iov, iovcnt, &len);
        piece_done(r, stage_copy(r, at, n, len, false));
        return;
    }
    if (!worth_staging(r, len) || !stage_alloc(r)) {
        direct_transfer(r, iov, iovcnt, len);
        return;
    }
    /* Read ahead a stage's worth; the piece is served from it. */
    r->stage_off = at;
    r->stage_len = req->xfer_len - at < r->stage_cap ? (size_t)(req->xfer_len - at)
                                                      : r->stage_cap;
    len = len < r->stage_len ? len : r->stage_len;
    n = take_piece(r, iov, iovcnt, &len);
    stage_submit(r, BLK_READ, n, len);
}

static void write_piece(struct disk_req *r, const struct iovec *iov, int iovcnt, size_t len)
{
    struct scsi_request *req = r->req;
    size_t room;
    int n, copied;

    if ((r->stage_len == 0 && !worth_staging(r, len)) || !stage_alloc(r)) {
        direct_transfer(r, iov, iovcnt, len);
        return;
    }
    /* Gather; write the stage once it is full or holds the command's last byte. */
    if (r->stage_len == 0) {
        r->stage_off = req->offset;
    }
    room = r->stage_cap - r->stage_len;
    len = len < room ? len : room;
    n = take_piece(r, iov, iovcnt, &len);
    copied = stage_copy(r, r->stage_off + r->stage_len, n, len, true);
    if (copied < 0) {
        piece_done(r, copied);
        return;
    }
    len = (size_t)copied;
    r->stage_len += len;
    if (r->stage_len == r->stage_cap || r->stage_off + r->stage_len == req->xfer_len) {
        stage_submit(r, BLK_WRITE, 0, len);
        return;
    }
    scsi_req_transfer_done(req, (int)len);
}

static void stage_io_finished(struct disk_req *r, int result)
{
    r->stage_io = false;
    if (result < 0) {
        piece_io_done(r, result, r->piece_len);
        return;
    }
    if (r->write) {
        r->stage_len = 0;
        piece_done(r, (int)r->piece_len);
    } else {
        piece_done(r, stage_copy(r, r->req->offset, r->piece_iovcnt, r->piece_len, false));
    }
}

static void rw_transfer(struct scsi_request *req, struct iovec *iov, int iovcnt, size_t len)
{
    struct disk_req *r = req->target_private;

    if (r->write) {
        write_piece(r, iov, iovcnt, len);
    } else {
        read_piece(r, iov, iovcnt, len);
    }
}

static void start_rw(struct scsi_disk *d, struct scsi_request *req, bool write)
{
    uint64_t lba = scsi_cdb_lba(req->cdb);
    uint32_t n = scsi_cdb_blocks(req->cdb);
    struct disk_req *r;

    if (n == 0 && lba_range_ok(d, lba, 0) && !(write && medium(d)->readonly)) {
        scsi_req_complete(req, SCSI_GOOD);
        return;
    }
    r = begin_blocks(d, req, lba, n, write);
    if (!r) {
        return;
    }
    /* FUA, or no write cache: the data is durable before GOOD. */
    r->fua = write && ((req->cdb[0] != OP_WRITE_6 && (req->cdb[1] & 0x08)) ||
                       !d->write_cache);
    req->dir = write ? SCSI_XFER_TO_DEV : SCSI_XFER_FROM_DEV;
    req->xfer_len = (uint64_t)n * d->block_size;
}

static void rw_data_done(struct disk_req *r)
{
    if (r->fua) {
        r->steps = 1;
        submit(r, BLK_FLUSH, 0, NULL, 0, 0);
        return;
    }
    finish_with(r, 0);
}

static void start_sync_cache(struct scsi_disk *d, struct scsi_request *req)
{
    struct disk_req *r = disk_req_new(req);

    if (!r) {
        fail_no_memory(req);
        return;
    }
    r->write = true;
    r->steps = 1;
    (void)d;
    submit(r, BLK_FLUSH, 0, NULL, 0, 0);
}

/* An UNMAP refused: counted as an invalid unmap, as QEMU's scsi-disk counts it. */
static void refuse_unmap(struct disk_req *r, struct scsi_sense sense)
{
    blk_account_invalid(r->disk->blk, BLK_DISCARD);
    fail(r->req, sense);
    disk_req_free(r);
}

/*
 * UNMAP: the parameter list arrives, then one discard per descriptor, each
 * checked as its turn comes (QEMU's order: the ones before a descriptor out
 * of range are done).
 */
static void unmap_data(struct disk_req *r)
{
    struct scsi_request *req = r->req;
    const uint8_t *p = req->buf;
    size_t len = (size_t)req->xfer_len, desc_len;

    if (req->cdb[1] & 0x01) {
        refuse_unmap(r, SENSE_INVALID_FIELD);       /* ANCHOR: no anchored blocks here */
        return;
    }
    if (len < 8 || be16(p) + 2u > len || (desc_len = be16(p + 2)) + 8 > len ||
        desc_len % 16) {
        refuse_unmap(r, SENSE_INVALID_PARAM_LEN);
        return;
    }
    r->steps = (unsigned)(desc_len / 16);
    if (r->steps > MAX_UNMAP_DESCRIPTORS) {
        refuse_unmap(r, SENSE_INVALID_PARAM);
        return;
    }
    r->step = 0;
    next_step(r, 0);
}

/* The next UNMAP descriptor's discard; a descriptor of no blocks counts as one (QEMU's). */
static void unmap_step(struct disk_req *r)
{
    const uint8_t *desc = r->req->buf + 8 + 16 * r->step++;
    uint64_t lba = be64(desc);
    uint32_t blocks = be32(desc + 8);

    if (!lba_range_ok(r->disk, lba, blocks)) {
        refuse_unmap(r, SENSE_LBA_OUT_OF_RANGE);
        return;
    }
    if (!blocks) {
        blk_account_done(r->disk->blk, BLK_DISCARD, 0, loop_now_ns(), 0);
        next_step(r, 0);
        return;
    }
    submit(r, BLK_DISCARD, lba * r->disk->block_size, NULL, 0,
           (uint64_t)blocks * r->disk->block_size);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/* WRITE SAME: zeros become a zeroing or an unmap; a pattern is written out. */
static void write_same_data(struct disk_req *r)
{
    struct scsi_disk *d = r->disk;
    struct scsi_request *req = r->req;
    bool unmap = req->cdb[1] & 0x08;
    uint64_t off = r->lba * d->block_size, len = (uint64_t)r->nblocks * d->block_size;
    const uint8_t *block = req->buf;

    if (!block || all_zero(block, d->block_size)) {
        r->steps = 1;
        submit(r, unmap ? BLK_DISCARD : BLK_WRITE_ZEROES, off, NULL, 0, len);
        return;
    }
    r->scratch_len = len < WRITE_SAME_CHUNK ? (size_t)len : WRITE_SAME_CHUNK;
    r->scratch = malloc(r->scratch_len);
    if (!r->scratch) {
        finish_with(r, -ENOMEM);
        return;
    }
    for (size_t i = 0; i < r->scratch_len; i += d->block_size) {
        memcpy(r->scratch + i, block, d->block_size);
    }
    r->steps = (unsigned)((len + r->scratch_len - 1) / r->scratch_len);
    r->step = 0;
    next_step(r, 0);
}

static void start_write_same(struct scsi_disk *d, struct scsi_request *req)
{
    bool sixteen = req->cdb[0] == OP_WRITE_SAME_16;
    uint64_t lba = sixteen ? be64(req->cdb + 2) : be32(req->cdb + 2);
    uint32_t n = sixteen ? be32(req->cdb + 10) : be16(req->cdb + 7);
    bool ndob = sixteen && (req->cdb[1] & 0x01);
    struct disk_req *r;

    if (n == 0 || n > MAX_WRITE_SAME_BLOCKS) {
        fail(req, medium(d)->readonly ? SENSE_WRITE_PROTECTED : SENSE_INVALID_FIELD);
        return;
    }
    r = begin_blocks(d, req, lba, n, true);
    if (!r) {
        return;
    }
    if (ndob) {
        write_same_data(r);
    } else if (scsi_req_expect(req, d->block_size) < 0) {
        disk_req_free(r);       /* failed there */
    }
}

/* VERIFY with BYTCHK: the data sent must equal what the medium holds. */
static void verify_data(struct disk_req *r)
{
    r->scratch_len = (size_t)r->req->xfer_len;
    r->scratch = malloc(r->scratch_len);
    if (!r->scratch) {
        finish_with(r, -ENOMEM);
        return;
    }
    r->iov[0] = (struct iovec){ r->scratch, r->scratch_len };
    r->steps = 1;
    submit(r, BLK_READ, r->lba * r->disk->block_size, r->iov, 1, r->scratch_len);
}

static void start_verify(struct scsi_disk *d, struct scsi_request *req)
{
    uint64_t lba = scsi_cdb_lba(req->cdb);
    uint32_t n = scsi_cdb_blocks(req->cdb);
    int bytchk = (req->cdb[1] >> 1) & 0x3;
    struct disk_req *r;

    if (!lba_range_ok(d, lba, n)) {
        fail(req, SENSE_LBA_OUT_OF_RANGE);
        return;
    }
    if (bytchk == 0 || n == 0) {
        scsi_req_complete(req, SCSI_GOOD);      /* the medium is always readable */
        return;
    }
    if (bytchk != 1 || (uint64_t)n * d->block_size > MAX_VERIFY_BYTES) {
        fail(req, SENSE_INVALID_FIELD);
        return;
    }
    r = begin_blocks(d, req, lba, n, false);
    if (r && scsi_req_expect(req, (size_t)n * d->block_size) < 0) {
        disk_req_free(r);       /* failed there */
    }
}

static void next_step(struct disk_req *r, int result)
{
    struct scsi_request *req = r->req;
    uint8_t op = req->cdb[0];

    if (result < 0 || req->cancelled || r->step >= r->steps) {
        if (result >= 0 && (op == OP_VERIFY_10 || op == OP_VERIFY_12 || op == OP_VERIFY_16) &&
            !req->cancelled && memcmp(r->scratch, req->buf, r->scratch_len)) {
            fail(req, SENSE_MISCOMPARE);
            disk_req_free(r);
            return;
        }
        finish_with(r, result);
        return;
    }
    if (op == OP_UNMAP) {
        unmap_step(r);
    } else if (r->scratch && (op == OP_WRITE_SAME_10 || op == OP_WRITE_SAME_16)) {
        uint64_t base = r->lba * r->disk->block_size;
        uint64_t total = (uint64_t)r->nblocks * r->disk->block_size;
        uint64_t off = (uint64_t)r->step++ * r->scratch_len;
        uint64_t len = total - off < r->scratch_len ? total - off : r->scratch_len;

        r->iov[0] = (struct iovec){ r->scratch, (size_t)len };
        submit(r, BLK_WRITE, base + off, r->iov, 1, len);
    } else {
        r->step++;
        next_step(r, 0);
    }
}

/* --- dispatch ----------------------------------------------------------- */

static bool needs_medium(uint8_t op)
{
    switch (op) {
    case OP_INQUIRY: case OP_REQUEST_SENSE: case OP_START_STOP: case OP_PREVENT_ALLOW:
    case OP_GET_CONFIGURATION: case OP_GET_EVENT_STATUS: case OP_MODE_SENSE_6:
    case OP_MODE_SENSE_10:
        return false;
    default:
        return true;
    }
}

/* Commands only one kind of device has; the other does not know them. */
static bool opcode_known(const struct scsi_disk *d, uint8_t op)
{
    switch (op) {
    case OP_READ_TOC: case OP_GET_CONFIGURATION: case OP_GET_EVENT_STATUS:
        return d->cdrom;
    case OP_WRITE_SAME_10: case OP_WRITE_SAME_16: case OP_UNMAP:
        return !d->cdrom;
    default:
        return true;
    }
}

static void disk_start(struct scsi_request *req)
{
    struct scsi_disk *d = disk_of(req->dev);
    uint8_t op = req->cdb[0];

    if (!opcode_known(d, op)) {
        fail(req, SENSE_INVALID_OPCODE);
        return;
    }
    if (needs_medium(op) && !has_medium(d)) {
        fail(req, SENSE_NO_MEDIUM);
        return;
    }
    switch (op) {
    case OP_TEST_UNIT_READY:
        scsi_req_complete(req, SCSI_GOOD);
        break;
    case OP_INQUIRY:
        do_inquiry(d, req);
        break;
    case OP_READ_CAPACITY_10:
        do_read_capacity_10(d, req);
        break;
    case OP_SERVICE_ACTION_IN_16:
        if ((req->cdb[1] & 0x1f) != SAI_READ_CAPACITY_16) {
            fail(req, SENSE_INVALID_FIELD);
        } else {
            do_read_capacity_16(d, req);
        }
        break;
    case OP_READ_6: case OP_READ_10: case OP_READ_12: case OP_READ_16:
        start_rw(d, req, false);
        break;
    case OP_WRITE_6: case OP_WRITE_10: case OP_WRITE_12: case OP_WRITE_16:
    case OP_WRITE_VERIFY_10: case OP_WRITE_VERIFY_12: case OP_WRITE_VERIFY_16:
        if (d->cdrom) {
            fail(req, SENSE_INVALID_OPCODE);
        } else {
            start_rw(d, req, true);
        }
        break;
    case OP_VERIFY_10: case OP_VERIFY_12: case OP_VERIFY_16:
        start_verify(d, req);
        break;
    case OP_SYNC_CACHE_10: case OP_SYNC_CACHE_16:
        start_sync_cache(d, req);
        break;
    case OP_MODE_SENSE_6: case OP_MODE_SENSE_10:
        do_mode_sense(d, req);
        break;
    case OP_MODE_SELECT_6: case OP_MODE_SELECT_10:
        do_mode_select(req);
        break;
    case OP_START_STOP:
        do_start_stop(d, req);
        break;
    case OP_PREVENT_ALLOW:
        d->kept->locked = d->removable && (req->cdb[4] & 0x01);
        scsi_req_complete(req, SCSI_GOOD);
        break;
    case OP_WRITE_SAME_10: case OP_WRITE_SAME_16:
        start_write_same(d, req);
        break;
    case OP_UNMAP: {
        struct disk_req *r;
        size_t len = be16(req->cdb + 7);

        if (medium(d)->readonly) {
            blk_account_invalid(d->blk, BLK_DISCARD);
            fail(req, SENSE_WRITE_PROTECTED);
        } else if (!len) {
            scsi_req_complete(req, SCSI_GOOD);
        } else if (!(r = disk_req_new(req))) {
            fail_no_memory(req);
        } else if (scsi_req_expect(req, len) < 0) {
            disk_req_free(r);   /* failed there */
        } else {
            r->write = true;
        }
        break;
    }
    case OP_READ_TOC:
        do_read_toc(d, req);
        break;
    case OP_GET_CONFIGURATION:
        do_get_configuration(d, req);
        break;
    case OP_GET_EVENT_STATUS:
        do_get_event_status(d, req);
        break;
    default:
        fail(req, SENSE_INVALID_OPCODE);
        break;
    }
}

static void disk_data_done(struct scsi_request *req)
{
    struct disk_req *r = req->target_private;
    uint8_t op = req->cdb[0];

    if (op == OP_MODE_SELECT_6 || op == OP_MODE_SELECT_10) {
        mode_select_data(disk_of(req->dev), req);
    } else if (!r) {
        scsi_req_complete(req, SCSI_GOOD);      /* an emulated reply was read */
    } else if (op == OP_UNMAP) {
        unmap_data(r);
    } else if (op == OP_WRITE_SAME_10 || op == OP_WRITE_SAME_16) {
        write_same_data(r);
    } else if (op == OP_VERIFY_10 || op == OP_VERIFY_12 || op == OP_VERIFY_16) {
        verify_data(r);
    } else {
        rw_data_done(r);
    }
}

static void disk_cancel(struct scsi_request *req)
{
    struct disk_req *r = req->target_private;

    if (r && !r->busy) {
        disk_req_free(r);
    } else if (r && !r->fenced) {
        r->orphan = true;       /* later I/O waits until this lands */
        r->disk->orphans++;
    }
}

static void disk_reset(struct scsi_device *sdev)
{
    struct scsi_disk *d = disk_of(sdev);

    d->kept->locked = false;
    reset_max_lba(d);
}

static const struct scsi_device_ops disk_ops = {
    .start = disk_start,
    .transfer = rw_transfer,
    .data_done = disk_data_done,
    .cancel = disk_cancel,
    .reset = disk_reset,
};

/* --- the host's side: operations on the medium, through the backend ------------ */

/*
 * What the checkpoint says of the medium now in the tray: a restarted
 * process opens the same one.  The kind is written last, so that a process
 * killed halfway leaves no half-written medium behind.
 */
static void keep_medium(struct scsi_disk *d)
{
    const struct drive *m = medium(d);

    d->kept->medium = KEPT_MEDIUM_NONE;
    d->kept->size = m ? m->size : 0;
    if (!m || snprintf(d->kept->file, sizeof(d->kept->file), "%s", m->file) >=
                  (int)sizeof(d->kept->file)) {
        return;     /* a path too long to keep: a restart finds the tray empty */
    }
    snprintf(d->kept->format, sizeof(d->kept->format), "%s", drive_format_name(m));
    d->kept->readonly = m->readonly;
    d->kept->cache = (uint8_t)m->cache;
    d->kept->medium = KEPT_MEDIUM_CHANGED;
}

static void media_changed(void *opaque, bool load)
{
    struct scsi_disk *d = opaque;

    d->kept->eject_request = 0;     /* the host moved the tray: nothing left to ask */
    d->medium_epoch++;
    if (load) {
        keep_medium(d);
        set_tray(d, false);
        scsi_device_set_ua(&d->sdev, SENSE_MEDIUM_CHANGED);
    } else {
        d->kept->locked = false;
        set_tray(d, true);
    }
}

/* Until then a restart finds the medium in the open tray, as it is. */
static void medium_removed(void *opaque)
{
    struct scsi_disk *d = opaque;

    d->kept->medium = KEPT_MEDIUM_NONE;
}

static void eject_requested(void *opaque)
{
    ((struct scsi_disk *)opaque)->kept->eject_request = true;
}

static bool tray_is_open(void *opaque)
{
    return ((struct scsi_disk *)opaque)->kept->tray_open;
}

static bool medium_is_locked(void *opaque)
{
    return ((struct scsi_disk *)opaque)->kept->locked;
}

static int check_new_medium(void *opaque, const struct drive *drv, char **err)
{
    struct scsi_disk *d = opaque;

    if (d->cdrom && !drv->readonly) {
        error_setf(err, "a CD-ROM's medium must be read-only");
        return -1;
    }
    if (drv->size < d->block_size) {
        error_setf(err, "the new medium is smaller than one block");
        return -1;
    }
    return 0;
}

static void capacity_changed(void *opaque)
{
    struct scsi_disk *d = opaque;

    d->kept->size = medium(d) ? medium(d)->size : 0;
    scsi_device_set_ua(&d->sdev, SENSE_CAPACITY_CHANGED);
}

/* A CD-ROM's media are read-only. */
static bool read_only_media(void *opaque)
{
    return ((struct scsi_disk *)opaque)->cdrom;
}

/* scsi-cd, and scsi-hd with removable=on. */
static const struct blk_dev_ops removable_media_ops = {
    .change_media = media_changed,
    .medium_removed = medium_removed,
    .eject_request = eject_requested,
    .is_tray_open = tray_is_open,
    .is_medium_locked = medium_is_locked,
    .check_medium = check_new_medium,
    .read_only_media = read_only_media,
    .resize = capacity_changed,
};

static const struct blk_dev_ops fixed_media_ops = {
    .resize = capacity_changed,
};

/* --- -device ------------------------------------------------------------ */

static const struct device_driver scsi_cd_driver;

/* The drive named by drive=: there must be one, but for a CD-ROM (an empty tray). */
static int find_medium(struct scsi_disk *d, struct device_ctx *ctx, struct drive **drive,
                       char **err)
{
    *drive = NULL;
    if (d->drive_id) {
        *drive = ctx->find_drive ? ctx->find_drive(ctx->opaque, d->drive_id) : NULL;
        if (!*drive) {
            error_setf(err, "drive '%s' not found", d->drive_id);
            return -1;
        }
    } else if (!d->cdrom) {
        error_setf(err, "scsi-hd needs a drive (drive=...)");
        return -1;
    }
    return 0;
}

static int set_block_size(struct scsi_disk *d, char **err)
{
    if (!d->block_size) {
        d->block_size = d->cdrom ? 2048 : 512;
    }
    if (d->block_size != 512 && d->block_size != 4096 && d->block_size != 2048) {
        error_setf(err, "logical_block_size must be 512, 2048 or 4096");
        return -1;
    }
    return 0;
}

/* WCE: as the medium's cache mode says, unless the guest chose with MODE SELECT (kept). */
static void set_write_cache(struct scsi_disk *d, const struct drive *drive)
{
    if (d->kept->wce == KEPT_WCE_DRIVE) {
        d->write_cache = !drive || drive->cache != DRIVE_CACHE_WRITETHROUGH;
    } else {
        d->write_cache = d->kept->wce == KEPT_WCE_ON;
    }
}

/* What it takes of the medium the device starts with. */
static int configure(struct scsi_disk *d, const struct drive *drive, char **err)
{
    if (drive && drive->size % d->block_size) {
        log_warn("%s: drive '%s' is not a whole number of %llu-byte blocks; "
                 "the tail is not visible", d->dev.id, drive->id,
                 (unsigned long long)d->block_size);
    }
    if (drive && drive->size < d->block_size) {
        error_setf(err, "drive '%s' is smaller than one block", drive->id);
        return -1;
    }
    if (d->cdrom && drive && !drive->readonly) {
        error_setf(err, "scsi-cd needs a read-only drive (readonly=on)");
        return -1;
    }
    if (!d->serial) {
        d->serial = strdup(d->dev.id);
    }
    set_write_cache(d, drive);
    d->sdev.ops = &disk_ops;
    return 0;
}

/* --- the medium's state across a restart (docs/restart.md) ---------------------- */

static bool is_flag(uint8_t v)
{
    return v <= 1;
}

static bool is_string(const char *s, size_t size)
{
    return memchr(s, 0, size) != NULL;
}

/* Whether a checkpoint's medium state is one this device could have left. */
static bool kept_is_sound(const struct scsi_disk *d, const struct disk_kept *k)
{
    bool changed = k->medium == KEPT_MEDIUM_CHANGED;

    if (!is_flag(k->tray_open) || !is_flag(k->locked) || !is_flag(k->media_event) ||
        !is_flag(k->eject_request) || k->medium >= KEPT_MEDIUM_KINDS ||
        k->wce >= KEPT_WCE_KINDS) {
        return false;
    }
    if (!d->removable) {
        return k->medium == KEPT_MEDIUM_GIVEN && !k->tray_open && !k->locked;
    }
    return !changed || (is_flag(k->readonly) && k->cache <= DRIVE_CACHE_DIRECTSYNC &&
                        is_string(k->format, sizeof(k->format)) &&
                        is_string(k->file, sizeof(k->file)) && k->file[0] &&
                        (!d->cdrom || k->readonly));
}

/* The device's medium state: found again in the checkpoint (true), or fresh. */
static bool take_kept_state(struct scsi_disk *d)
{
    bool restored = false;

    d->kept = device_checkpoint(&d->dev, "media", sizeof(*d->kept), &restored);
    if (!d->kept) {
        d->kept = &d->own_kept;
        return false;
    }
    if (restored && !kept_is_sound(d, d->kept)) {
        log_warn("%s: medium state in the checkpoint is not this device's; "
                 "starting from the command line", d->dev.id);
        restored = false;
    }
    if (!restored) {
        memset(d->kept, 0, sizeof(*d->kept));
    }
    return restored;
}

/*
 * A changed medium the checkpoint names, opened again and put back in the
 * tray; NULL (logged) if it cannot be: the tray is empty, the guest told
 * after the power-on reset.
 */
static struct drive *open_kept_medium(struct scsi_disk *d, struct device_ctx *ctx)
{
    enum drive_cache cache = (enum drive_cache)d->kept->cache;
    struct drive_spec spec = {
        .id = d->drive_id ? d->drive_id : d->dev.id, .file = d->kept->file,
        .format = d->kept->format[0] ? d->kept->format : NULL,
        .readonly = d->kept->readonly, .cache = &cache,
    };
    struct drive *m = NULL;
    char *err = NULL;

    if (!ctx->open_drive) {
        error_setf(&err, "no drives can be opened here");
    } else if ((m = ctx->open_drive(ctx->opaque, &spec, &err)) &&
               (check_new_medium(d, m, &err) < 0 || blk_put_back_medium(d->blk, m, &err) < 0)) {
        ctx->close_drive(ctx->opaque, m);
        m = NULL;
    }
    if (!m) {
        log_warn("%s: the medium it held, %s, cannot be opened again (%s); the tray is empty",
                 d->dev.id, d->kept->file, err ? err : "?");
        free(err);
        d->kept->medium = KEPT_MEDIUM_NONE;
        d->kept->media_event = 1;
        d->kept->ua.next = SENSE_MEDIUM_CHANGED;    /* after the power-on reset, kept in now */
    }
    return m;
}

/*
 * The medium a restarted device starts with: the command line's (given),
 * or none until it serves (disk_serve), which closes the command line's
 * and opens the one a monitor changed it for.
 */
static struct drive *kept_medium(struct scsi_disk *d, struct drive *given)
{
    if (d->kept->medium == KEPT_MEDIUM_GIVEN) {
        return given;
    }
    d->kept_to_open = d->kept->medium == KEPT_MEDIUM_CHANGED;
    d->given_to_close = given;
    return NULL;
}

/* The medium's size now; after a restart, one other than the kept one (changed meanwhile) is told. */
static void keep_size(struct scsi_disk *d, bool restored)
{
    const struct drive *m = medium(d);
    uint64_t size = m ? m->size : 0;

    if (restored && m && d->kept->size && d->kept->size != size) {
        d->kept->ua.next = SENSE_CAPACITY_CHANGED;
    }
    d->kept->size = size;
}

/* After attach: unit attentions in the checkpoint, and a size that changed meanwhile. */
static void keep_state(struct scsi_disk *d, bool restored)
{
    scsi_device_keep_ua_in(&d->sdev, &d->kept->ua, restored);
    if (!d->kept_to_open) {
        keep_size(d, restored);     /* else the kept size holds until the medium is opened */
    }
    if (!restored) {
        d->kept->medium = medium(d) ? KEPT_MEDIUM_GIVEN : KEPT_MEDIUM_NONE;
    }
}

/*
 * Confined (device_serve): a restart's changed medium is opened as a
 * monitor's medium change opens it, and put back in the tray as it was.
 */
static void disk_serve(struct device *dev, struct device_ctx *ctx)
{
    struct scsi_disk *d = (struct scsi_disk *)dev;
    struct drive *given = d->given_to_close;

    d->given_to_close = NULL;
    /* Unless another device took it meanwhile (a command line no first process accepts). */
    if (given && !given->backend && ctx->close_drive) {
        ctx->close_drive(ctx->opaque, given);
    }
    if (!d->kept_to_open) {
        return;
    }
    d->kept_to_open = false;
    set_write_cache(d, open_kept_medium(d, ctx));
    keep_size(d, true);
    reset_max_lba(d);
}

static int disk_realize(struct device *dev, struct device_ctx *ctx, char **err)
{
    struct scsi_disk *d = (struct scsi_disk *)dev;
    struct scsi_bus *bus;
    struct drive *drive;
    bool restored;

    d->cdrom = dev->driver == &scsi_cd_driver;
    d->removable = d->cdrom || d->removable_prop;
    d->fenced_tail = &d->fenced;
    if (!d->bus_name || !(bus = scsi_bus_find(d->bus_name))) {
        error_setf(err, "bus '%s' not found (a SCSI controller's id followed by .0)",
                   d->bus_name ? d->bus_name : "");
        return -1;
    }
    if (!d->drain_limit_ms) {
        error_setf(err, "x-drain-limit-ms must be at least 1");
        return -1;
    }
    if (set_block_size(d, err) < 0 || find_medium(d, ctx, &drive, err) < 0) {
        return -1;
    }
    restored = take_kept_state(d);
    if (restored) {
        drive = kept_medium(d, drive);
    }
    if (!(d->blk = blk_new(d->drive_id, drive, err))) {
        return -1;
    }
    d->loop = ctx->loop;
    blk_set_drain_limit(d->blk, d->drain_limit_ms * 1000000u);
    if ((d->removable && blk_set_loop(d->blk, ctx->loop, err) < 0) ||
        configure(d, drive, err) < 0 ||
        scsi_bus_attach(bus, &d->sdev, (unsigned)d->scsi_id, (unsigned)d->lun, err) < 0) {
        blk_free(d->blk);
        d->blk = NULL;
        return -1;
    }
    keep_state(d, restored);
    reset_max_lba(d);       /* a new process comes up with a power-on reset */
    blk_attach_dev(d->blk, dev, d->removable ? &removable_media_ops : &fixed_media_ops, d);
    dev->blk = d->blk;
    return 0;
}

static void disk_unrealize(struct device *dev)
{
    struct scsi_disk *d = (struct scsi_disk *)dev;

    while (d->n_spare_stages) {
        free(d->spare_stages[--d->n_spare_stages]);
    }
    while (d->n_spare_write_stages) {
        free(d->spare_write_stages[--d->n_spare_write_stages]);
    }
    scsi_bus_detach(&d->sdev);
    blk_free(d->blk);
    dev->blk = NULL;
}

#define DISK_PROPS(vendor_default, product_default)                                        \
    { "drive", PROP_STRING, offsetof(struct scsi_disk, drive_id), 0, NULL,                 \
      "the -drive id holding the medium" },                                                \
    { "bus", PROP_STRING, offsetof(struct scsi_disk, bus_name), 0, NULL,                   \
      "the SCSI bus: CONTROLLER-ID.0" },                                                    \
    { "scsi-id", PROP_UINT, offsetof(struct scsi_disk, scsi_id), SCSI_MAX_TARGETS - 1, "0",\
      "target number" },                                                                   \
    { "lun", PROP_UINT, offsetof(struct scsi_disk, lun), SCSI_MAX_LUNS - 1, "0",           \
      "logical unit number" },                                                             \
    { "serial", PROP_STRING, offsetof(struct scsi_disk, serial), 0, NULL,                  \
      "unit serial number (VPD page 0x80); default: the device id" },                     \
    { "vendor", PROP_STRING, offsetof(struct scsi_disk, vendor), 0, vendor_default,        \
      "INQUIRY vendor" },                                                                  \
    { "product", PROP_STRING, offsetof(struct scsi_disk, product), 0, product_default,     \
      "INQUIRY product" },                                                                 \
    { "ver", PROP_STRING, offsetof(struct scsi_disk, version), 0, "0.1",                  \
      "INQUIRY revision" },                                                                \
    { "wwn", PROP_UINT, offsetof(struct scsi_disk, wwn), UINT64_MAX, "0",                 \
      "NAA world wide name (VPD page 0x83), 0: none" },                                   \
    { "logical_block_size", PROP_SIZE, offsetof(struct scsi_disk, block_size), 4096, NULL, \
      "512, 2048 or 4096 (default: 512; scsi-cd: 2048)" },                                \
    { "x-drain-limit-ms", PROP_UINT, offsetof(struct scsi_disk, drain_limit_ms), 3600000,   \
      "30000", "how long an eject or a medium change waits for the medium's I/O in flight " \
      "before it gives up, in ms (for tests)" }

static const struct prop_def hd_props[] = {
    DISK_PROPS("MPQEMU", "MPQEMU HARDDISK"),
    { "removable", PROP_BOOL, offsetof(struct scsi_disk, removable_prop), 0, "off",
      "report a removable medium" },
    { 0 },
};

static const struct prop_def cd_props[] = {
    DISK_PROPS("MPQEMU", "MPQEMU CD-ROM"),
    { 0 },
};

static const struct device_driver scsi_hd_driver = {
    .name = "scsi-hd",
    .desc = "SCSI disk on a drive",
    .instance_size = sizeof(struct scsi_disk),
    .props = hd_props,
    .realize = disk_realize,
    .serve = disk_serve,
    .unrealize = disk_unrealize,
};

static const struct device_driver scsi_cd_driver = {
    .name = "scsi-cd",
    .desc = "SCSI CD-ROM (read-only, removable medium)",
    .instance_size = sizeof(struct scsi_disk),
    .props = cd_props,
    .realize = disk_realize,
    .serve = disk_serve,
    .unrealize = disk_unrealize,
};

DEVICE_DRIVERS(&scsi_hd_driver, &scsi_cd_driver);
