// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The `file` driver: a local file or block device.  Data moves on the
 * process's io_uring straight between the caller's iovecs and the file;
 * cache=none and directsync open it O_DIRECT, and buffers that are not
 * block-aligned then go through an aligned copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drivers.h"
#include "util/error.h"
#include "util/guarded-copy.h"

struct posix_file {
    struct blk_file base;
    int fd;
    bool may_write_inline;
};

static struct posix_file *posix_of(const struct blk_file *f)
{
    return (struct posix_file *)((char *)f - offsetof(struct posix_file, base));
}

static int open_flags(bool readonly, enum drive_cache cache)
{
    int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;

    if (cache == DRIVE_CACHE_NONE || cache == DRIVE_CACHE_DIRECTSYNC) {
        flags |= O_DIRECT;
    }
    if (cache == DRIVE_CACHE_WRITETHROUGH || cache == DRIVE_CACHE_DIRECTSYNC) {
        flags |= O_DSYNC;
    }
    return flags;
}

/*
 * O_DIRECT wants buffers, offsets and lengths in logical blocks; 512 bytes
 * for files on the usual filesystems, the device's own size for devices.
 */
static unsigned direct_alignment(int fd, int flags, const struct stat *st)
{
    int sector;

    if (!(flags & O_DIRECT)) {
        return 1;
    }
    if (S_ISBLK(st->st_mode) && ioctl(fd, BLKSSZGET, &sector) == 0 && sector > 0) {
        return (unsigned)sector;
    }
    return 512;
}

/*
 * Whether the engine may make small writes to the file itself (block/aio.c):
 * a regular file written through the page cache on ext2/3/4 or tmpfs, which
 * take no buffered write without blocking, so that io_uring would hand each
 * to a worker.  Not on a network or FUSE filesystem, whose writes may wait
 * for a server, nor on one that takes non-blocking buffered writes: io_uring
 * makes those inline already.
 */
static bool writes_inline(int fd, int flags, const struct stat *st)
{
    struct statfs fs;

    if (!S_ISREG(st->st_mode) || (flags & (O_DIRECT | O_DSYNC)) || fstatfs(fd, &fs) < 0) {
        return false;
    }
    return fs.f_type == 0xEF53 /* ext2/3/4 */ || fs.f_type == 0x01021994 /* tmpfs */;
}

static struct blk_file *posix_open(const char *filename, struct opts *o, struct aio_engine *aio,
                                   bool readonly, enum drive_cache cache, char **err)
{
    struct posix_file *p = calloc(1, sizeof(*p));
    int flags = open_flags(readonly, cache);
    struct stat st;

    (void)o;    /* no options of its own */
    if (!p) {
        error_setf(err, "out of memory");
        return NULL;
    }
    p->fd = open(filename, flags);
    if (p->fd < 0) {
        error_setf(err, "Could not open '%s': %s", filename, strerror(errno));     /* QEMU's */
    } else if (fstat(p->fd, &st) < 0) {
        error_setf(err, "%s: %s", filename, strerror(errno));
    } else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        error_setf(err, "%s is neither a file nor a block device", filename);
    } else {
        p->base = (struct blk_file){ .driver = &file_driver_posix, .aio = aio,
                                     .readonly = readonly, .cache = cache,
                                     .align = direct_alignment(p->fd, flags, &st) };
        p->may_write_inline = writes_inline(p->fd, flags, &st);
        return &p->base;
    }
    if (p->fd >= 0) {
        close(p->fd);
    }
    free(p);
    return NULL;
}

static void posix_close(struct blk_file *f)
{
    struct posix_file *p = posix_of(f);

    close(p->fd);
    free(p);
}

static void posix_drain(struct blk_file *f)
{
    aio_drain(f->aio);
}

static int posix_length(struct blk_file *f, uint64_t *len)
{
    struct posix_file *p = posix_of(f);
    struct stat st;

    if (fstat(p->fd, &st) < 0) {
        return -errno;
    }
    if (S_ISBLK(st.st_mode)) {
        return ioctl(p->fd, BLKGETSIZE64, len) < 0 ? -errno : 0;
    }
    *len = (uint64_t)st.st_size;
    return 0;
}

/* --- asynchronous I/O ------------------------------------------------------ */

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
            aio_submit(io->file->aio, a);
            return;
        }
    }
    finish(io, result < 0 ? (int)result : 0);
}

static const enum aio_op aio_ops[] = {
    [BLK_READ] = AIO_READ, [BLK_WRITE] = AIO_WRITE, [BLK_FLUSH] = AIO_FLUSH,
    [BLK_DISCARD] = AIO_DISCARD, [BLK_WRITE_ZEROES] = AIO_ZERO,
};

/* O_DIRECT cannot take buffers that are not block-aligned: the I/O goes through a copy. */
static int bounce(struct blk_file *f, struct blk_io *io, uint64_t len)
{
    if (posix_memalign(&io->bounce, f->align, len ? len : f->align)) {
        io->bounce = NULL;
        return -ENOMEM;
    }
    if (io->op == BLK_WRITE && iov_to_buf(io->iov, io->iovcnt, 0, io->bounce, len) < 0) {
        free(io->bounce);
        io->bounce = NULL;
        return -EFAULT;
    }
    io->aio.iov = &io->bounce_iov;
    io->bounce_iov = (struct iovec){ .iov_base = io->bounce, .iov_len = len };
    io->aio.iovcnt = 1;
    return 0;
}

static void posix_submit(struct blk_file *f, struct blk_io *io)
{
    bool rw = io->op == BLK_READ || io->op == BLK_WRITE;
    uint64_t len = rw ? iov_size(io->iov, io->iovcnt) : io->len;
    int r;

    io->bounce = NULL;
    io->aio = (struct aio_request){
        .op = aio_ops[io->op], .fd = posix_of(f)->fd, .offset = io->offset, .iov = io->iov,
        .iovcnt = io->iovcnt, .len = len, .done = on_aio_done, .opaque = io,
        .may_write_inline = posix_of(f)->may_write_inline,
    };
    if (rw && f->align > 1 && !iov_aligned(io->iov, io->iovcnt, f->align) &&
        (r = bounce(f, io, len)) < 0) {
        blk_io_fail(io, f->aio, r);
        return;
    }
    aio_submit(f->aio, &io->aio);
}

/* --- synchronous I/O ------------------------------------------------------- */

static int64_t posix_pread(struct blk_file *f, void *buf, uint64_t len, uint64_t offset)
{
    uint8_t *p = buf;
    uint64_t got = 0;

    while (got < len) {
        ssize_t n = pread(posix_of(f)->fd, p + got, len - got, (off_t)(offset + got));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        got += (uint64_t)n;
        /* The end of the file (O_DIRECT cannot read on from an unaligned end): zeros. */
        if (n == 0 || (offset + got) % f->align) {
            memset(p + got, 0, len - got);
            break;
        }
    }
    return (int64_t)got;
}

static int posix_pwrite(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = pwrite(posix_of(f)->fd, p, len, (off_t)offset);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        p += n;
        len -= (uint64_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static int posix_sync(struct blk_file *f)
{
    return fdatasync(posix_of(f)->fd) < 0 ? -errno : 0;
}

static int posix_truncate(struct blk_file *f, uint64_t len, char **err)
{
    struct posix_file *p = posix_of(f);
    struct stat st;

    if (fstat(p->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setf(err, "only image files can be resized");
        return -1;
    }
    if (ftruncate(p->fd, (off_t)len) < 0) {
        error_setf(err, "%s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Never shrinks the file: writes may be extending it at the same time. */
static int posix_allocate(struct blk_file *f, uint64_t offset, uint64_t len)
{
    return fallocate(posix_of(f)->fd, 0, (off_t)offset, (off_t)len) < 0 ? -errno : 0;
}

static bool posix_is(const struct blk_file *f, const char *filename)
{
    struct stat mine, theirs;

    return stat(filename, &theirs) == 0 && fstat(posix_of(f)->fd, &mine) == 0 &&
           theirs.st_dev == mine.st_dev && theirs.st_ino == mine.st_ino;
}

const struct file_driver file_driver_posix = {
    .name = "file",
    .open = posix_open,
    .close = posix_close,
    .submit = posix_submit,
    .drain = posix_drain,
    .length = posix_length,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .sync = posix_sync,
    .truncate = posix_truncate,
    .allocate = posix_allocate,
    .is = posix_is,
};
