// SPDX-License-Identifier: GPL-2.0-or-later
#include "block/drive.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "util/error.h"
#include "util/guarded-copy.h"
#include "util/loop.h"
#include "util/log.h"
#include "util/opts.h"

static const char *const cache_names[] = {
    [DRIVE_CACHE_WRITEBACK] = "writeback", [DRIVE_CACHE_WRITETHROUGH] = "writethrough",
    [DRIVE_CACHE_NONE] = "none", [DRIVE_CACHE_DIRECTSYNC] = "directsync",
};

static int parse_cache(const char *s, enum drive_cache *out, char **err)
{
    for (size_t i = 0; i < sizeof(cache_names) / sizeof(cache_names[0]); i++) {
        if (!strcmp(s, cache_names[i])) {
            *out = (enum drive_cache)i;
            return 0;
        }
    }
    error_setf(err, "cache mode '%s' is not supported "
               "(writeback, writethrough, none, directsync)", s);
    return -1;
}

static int open_flags(const struct drive *d)
{
    int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;

    if (d->cache == DRIVE_CACHE_NONE || d->cache == DRIVE_CACHE_DIRECTSYNC) {
        flags |= O_DIRECT;
    }
    if (d->cache == DRIVE_CACHE_WRITETHROUGH || d->cache == DRIVE_CACHE_DIRECTSYNC) {
        flags |= O_DSYNC;
    }
    return flags;
}

static void drive_free(struct drive *d);

static bool looks_like_qcow2(int fd)
{
    void *first;
    bool qcow2;

    /* Aligned, whole block: the file may be open with O_DIRECT. */
    if (posix_memalign(&first, 4096, 4096)) {
        return false;
    }
    qcow2 = pread(fd, first, 4096, 0) >= 4 && !memcmp(first, "QFI\xfb", 4);
    free(first);
    return qcow2;
}

static int parse_options(struct drive *d, struct opts *o, bool *format_given, char **err)
{
    const char *id = opts_get(o, "id"), *file = opts_get(o, "file");
    const char *format = opts_get(o, "format"), *cache = opts_get(o, "cache");
    const char *iface = opts_get(o, "if");

    if (!id || !*id) {
        error_setf(err, "-drive needs an id (id=...)");
        return -1;
    }
    if (!(d->id = strdup(id))) {
        error_setf(err, "out of memory");
        return -1;
    }
    if (!file || !*file) {
        error_setf(err, "drive '%s' needs a file (file=...)", id);
        return -1;
    }
    if (!(d->file = strdup(file))) {
        error_setf(err, "out of memory");
        return -1;
    }
    if (iface && strcmp(iface, "none")) {
        error_setf(err, "drive '%s': only if=none exists in a remote process", id);
        return -1;
    }
    if (format && strcmp(format, "raw") && strcmp(format, "qcow2")) {
        error_setf(err, "drive '%s': unknown format '%s' (raw, qcow2)", id, format);
        return -1;
    }
    d->format = format && !strcmp(format, "qcow2") ? DRIVE_FORMAT_QCOW2 : DRIVE_FORMAT_RAW;
    if ((cache && parse_cache(cache, &d->cache, err) < 0) ||
        opts_get_bool(o, "readonly", false, &d->readonly, err) < 0 ||
        opts_check_all_used(o, "-drive", err) < 0) {
        error_prefix(err, "drive '%s'", id);
        return -1;
    }
    *format_given = format != NULL;
    return 0;
}

static int get_size(struct drive *d, char **err)
{
    struct stat st;

    if (fstat(d->fd, &st) < 0) {
        error_setf(err, "drive '%s': %s: %s", d->id, d->file, strerror(errno));
        return -1;
    }
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0) {
            error_setf(err, "drive '%s': %s: %s", d->id, d->file, strerror(errno));
            return -1;
        }
    } else if (S_ISREG(st.st_mode)) {
        d->size = (uint64_t)st.st_size;
    } else {
        error_setf(err, "drive '%s': %s is neither a file nor a block device", d->id,
                   d->file);
        return -1;
    }
    return 0;
}

/*
 * O_DIRECT wants buffers, offsets and lengths in logical blocks; 512 bytes
 * for files on the usual filesystems, the device's own size for devices.
 */
static unsigned direct_alignment(const struct drive *d)
{
    struct stat st;
    int sector;

    if (!(open_flags(d) & O_DIRECT)) {
        return 1;
    }
    if (fstat(d->fd, &st) == 0 && S_ISBLK(st.st_mode) &&
        ioctl(d->fd, BLKSSZGET, &sector) == 0 && sector > 0) {
        return (unsigned)sector;
    }
    return 512;
}

/* Opens d->file and, for a qcow2 image, its format driver; sets size and alignment. */
static int open_image(struct drive *d, bool format_given, unsigned depth, char **err)
{
    d->fd = open(d->file, open_flags(d));
    if (d->fd < 0) {
        error_setf(err, "drive '%s': could not open '%s'%s: %s", d->id, d->file,
                   d->readonly ? " read-only" : "", strerror(errno));
        return -1;
    }
    if (get_size(d, err) < 0) {
        return -1;
    }
    d->align = direct_alignment(d);
    if (!format_given && looks_like_qcow2(d->fd)) {
        d->format = DRIVE_FORMAT_QCOW2;
    }
    if (d->format == DRIVE_FORMAT_QCOW2 && !(d->qcow2 = qcow2_open(d, depth, err))) {
        error_prefix(err, "drive '%s'", d->id);
        return -1;
    }
    return 0;
}

struct drive *drive_open(struct opts *o, struct aio_engine *aio, char **err)
{
    struct drive *d = calloc(1, sizeof(*d));
    bool format_given;

    if (!d) {
        error_setf(err, "out of memory");
        return NULL;
    }
    d->fd = -1;
    d->aio = aio;
    if (parse_options(d, o, &format_given, err) < 0 ||
        open_image(d, format_given, 0, err) < 0) {
        drive_free(d);
        return NULL;
    }
    return d;
}

struct drive *drive_open_backing(const struct drive *top, const char *path,
                                 const char *format, unsigned depth, char **err)
{
    struct drive *d = calloc(1, sizeof(*d));

    if (!d || !(d->id = strdup(top->id)) || !(d->file = strdup(path))) {
        error_setf(err, "out of memory");
        drive_free(d);
        return NULL;
    }
    d->fd = -1;
    d->aio = top->aio;
    d->readonly = true;
    d->format = format && !strcmp(format, "qcow2") ? DRIVE_FORMAT_QCOW2 : DRIVE_FORMAT_RAW;
    if (open_image(d, format != NULL, depth, err) < 0) {
        error_prefix(err, "backing file");
        drive_free(d);
        return NULL;
    }
    return d;
}

const char *drive_cache_name(enum drive_cache cache)
{
    return cache_names[cache];
}

const char *drive_format_name(const struct drive *d)
{
    return d->format == DRIVE_FORMAT_QCOW2 ? "qcow2" : "raw";
}

struct drive *drive_backing(const struct drive *d)
{
    return d->qcow2 ? qcow2_backing(d->qcow2) : NULL;
}

int drive_resize(struct drive *d, uint64_t size, char **err)
{
    struct stat st;

    if (d->readonly) {
        error_setf(err, "drive '%s' is read-only", d->id);
        return -1;
    }
    if (size == 0 || size % 512) {
        error_setf(err, "the new size must be a positive multiple of 512 bytes");
        return -1;
    }
    if (d->qcow2) {
        if (qcow2_resize(d->qcow2, size, err) < 0) {
            return -1;
        }
    } else if (fstat(d->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setf(err, "drive '%s': only image files can be resized", d->id);
        return -1;
    } else if (ftruncate(d->fd, (off_t)size) < 0) {
        error_setf(err, "drive '%s': %s", d->id, strerror(errno));
        return -1;
    }
    d->size = size;
    return 0;
}

int drive_flush(struct drive *d, char **err)
{
    if (d->readonly || d->fd < 0) {
        return 0;
    }
    if (d->qcow2 && qcow2_writeback(d->qcow2, err) < 0) {
        return -1;
    }
    if (fdatasync(d->fd) < 0) {
        error_setf(err, "drive '%s': flush failed: %s", d->id, strerror(errno));
        return -1;
    }
    return 0;
}

/* Releases a drive without flushing: for one that never finished opening. */
static void drive_free(struct drive *d)
{
    if (!d) {
        return;
    }
    qcow2_close(d->qcow2);
    if (d->fd >= 0) {
        close(d->fd);
    }
    free(d->id);
    free(d->file);
    free(d);
}

void drive_close(struct drive *d)
{
    char *err = NULL;

    if (!d) {
        return;
    }
    if (d->aio) {
        aio_drain(d->aio);
    }
    if (drive_flush(d, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    drive_free(d);
}

/* --- I/O ----------------------------------------------------------------- */

static bool iov_aligned(const struct iovec *iov, int n, unsigned align)
{
    for (int i = 0; i < n; i++) {
        if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & (align - 1)) {
            return false;
        }
    }
    return true;
}

static void finish(struct blk_io *io, int result)
{
    if (io->bounce) {
        /* Guest memory may have been truncated under the read: -EFAULT, not SIGBUS. */
        if (result >= 0 && io->op == BLK_READ &&
            iov_from_buf(io->iov, io->iovcnt, 0, io->bounce, iov_size(io->iov, io->iovcnt)) < 0) {
            result = -EFAULT;
        }
        free(io->bounce);
        io->bounce = NULL;
    }
    io->done(io, result);
}

static void on_aio_done(struct aio_request *a, int64_t result)
{
    struct blk_io *io = a->opaque;

    /* Some filesystems (tmpfs) cannot zero a range; a hole reads as zeros too. */
    if (result == -EOPNOTSUPP && a->op == AIO_ZERO) {
        struct stat st;

        if (fstat(a->fd, &st) == 0 && S_ISREG(st.st_mode)) {
            a->op = AIO_DISCARD;
            aio_submit(io->drive->aio, a);
            return;
        }
    }
    finish(io, result < 0 ? (int)result : 0);
}

static void on_failed(void *opaque)
{
    struct blk_io *io = opaque;

    finish(io, io->fail_result);
}

/* An I/O that cannot start still completes from the loop, never inline. */
void drive_fail_io(struct blk_io *io, int result)
{
    io->fail_result = result;
    loop_bh_init(&io->fail_bh, on_failed, io);
    loop_bh_schedule(aio_engine_loop(io->drive->aio), &io->fail_bh);
}

static int check_io(struct drive *d, struct blk_io *io, uint64_t len)
{
    bool writes = io->op != BLK_READ && io->op != BLK_FLUSH;

    if (writes && d->readonly) {
        return -EROFS;
    }
    if (io->op != BLK_FLUSH && (io->offset > d->size || len > d->size - io->offset)) {
        return -EINVAL;
    }
    if (d->align > 1 && io->op != BLK_FLUSH && ((io->offset | len) & (d->align - 1))) {
        return -EINVAL;
    }
    return 0;
}

static const enum aio_op aio_ops[] = {
    [BLK_READ] = AIO_READ, [BLK_WRITE] = AIO_WRITE, [BLK_FLUSH] = AIO_FLUSH,
    [BLK_DISCARD] = AIO_DISCARD, [BLK_WRITE_ZEROES] = AIO_ZERO,
};

static void (*error_notifier)(void *opaque, struct drive *d, enum blk_op op, int error);
static void *error_notifier_opaque;

void drive_set_error_notifier(void (*fn)(void *opaque, struct drive *d, enum blk_op op,
                                         int error),
                              void *opaque)
{
    error_notifier = fn;
    error_notifier_opaque = opaque;
}

/* Counts a device's request as it completes, and reports its I/O error. */
static void on_counted_done(struct blk_io *io, int result)
{
    struct drive_stats *st = &io->drive->stats;
    bool failed = result < 0;

    switch (io->op) {
    case BLK_READ:
        st->rd_operations++;
        st->rd_bytes += failed ? 0 : io->counted_len;
        st->failed_rd_operations += failed;
        break;
    case BLK_WRITE:
        st->wr_operations++;
        st->wr_bytes += failed ? 0 : io->counted_len;
        st->failed_wr_operations += failed;
        break;
    case BLK_FLUSH:
        st->flush_operations++;
        st->failed_flush_operations += failed;
        break;
    case BLK_DISCARD:
    case BLK_WRITE_ZEROES:
        st->unmap_operations++;
        st->unmap_bytes += failed ? 0 : io->counted_len;
        st->failed_unmap_operations += failed;
        break;
    }
    /* Refused requests (range, read-only) are the guest's errors, not the disk's. */
    if (failed && result != -EINVAL && result != -EROFS && error_notifier) {
        error_notifier(error_notifier_opaque, io->drive, io->op, result);
    }
    io->done = io->caller_done;
    io->done(io, result);
}

void drive_submit(struct drive *d, struct blk_io *io)
{
    bool rw = io->op == BLK_READ || io->op == BLK_WRITE;
    uint64_t len = rw ? iov_size(io->iov, io->iovcnt) : io->len;
    int bad;

    io->drive = d;
    if (d->attached) {
        io->caller_done = io->done;
        io->counted_len = len;
        io->done = on_counted_done;
    }
    bad = check_io(d, io, len);
    if (bad) {
        drive_fail_io(io, bad);
    } else if (d->qcow2) {
        qcow2_submit(d->qcow2, io);
    } else {
        drive_file_submit(d, io);
    }
}

void drive_file_submit(struct drive *d, struct blk_io *io)
{
    bool rw = io->op == BLK_READ || io->op == BLK_WRITE;
    uint64_t len = rw ? iov_size(io->iov, io->iovcnt) : io->len;

    io->drive = d;
    io->bounce = NULL;
    io->aio = (struct aio_request){
        .op = aio_ops[io->op], .fd = d->fd, .offset = io->offset, .iov = io->iov,
        .iovcnt = io->iovcnt, .len = len, .done = on_aio_done, .opaque = io,
    };
    /* O_DIRECT cannot take guest buffers that are not block-aligned: bounce those. */
    if (rw && d->align > 1 && !iov_aligned(io->iov, io->iovcnt, d->align)) {
        if (posix_memalign(&io->bounce, d->align, len ? len : d->align)) {
            drive_fail_io(io, -ENOMEM);
            return;
        }
        if (io->op == BLK_WRITE && iov_to_buf(io->iov, io->iovcnt, 0, io->bounce, len) < 0) {
            drive_fail_io(io, -EFAULT);
            return;
        }
        io->aio.iov = &io->bounce_iov;
        io->bounce_iov = (struct iovec){ .iov_base = io->bounce, .iov_len = len };
        io->aio.iovcnt = 1;
    }
    aio_submit(d->aio, &io->aio);
}
