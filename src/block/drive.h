/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A disk image given with -drive: its file, format and cache mode. */
#ifndef MPQEMU_BLOCK_DRIVE_H
#define MPQEMU_BLOCK_DRIVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/aio.h"
#include "util/loop.h"

struct opts;
struct block_backend;

enum drive_format { DRIVE_FORMAT_RAW, DRIVE_FORMAT_QCOW2 };
enum drive_cache { DRIVE_CACHE_WRITEBACK, DRIVE_CACHE_WRITETHROUGH, DRIVE_CACHE_NONE,
                   DRIVE_CACHE_DIRECTSYNC };

/* What the drive has done, as QMP's query-blockstats reports it. */
struct drive_stats {
    uint64_t rd_bytes, wr_bytes, unmap_bytes;
    uint64_t rd_operations, wr_operations, flush_operations, unmap_operations;
    uint64_t failed_rd_operations, failed_wr_operations, failed_flush_operations,
        failed_unmap_operations;
};

struct drive {
    char *id;
    char *file;
    enum drive_format format;
    enum drive_cache cache;
    bool readonly;
    int fd;
    uint64_t size;
    unsigned align;         /* O_DIRECT: buffers, offsets and lengths in these units */
    /*
     * The backend holding it as a device's medium (block/backend.h), or
     * NULL.  While held, its requests are counted and their I/O errors
     * reported to the backend.
     */
    struct block_backend *backend;
    struct aio_engine *aio;
    struct qcow2 *qcow2;    /* the format driver of a qcow2 image */
    struct drive_stats stats;
};

enum blk_op { BLK_READ, BLK_WRITE, BLK_FLUSH, BLK_DISCARD, BLK_WRITE_ZEROES };

/*
 * One I/O on a drive.  The caller embeds it in its own request, fills the
 * first fields and gets done() once, from the event loop, with 0 or -errno.
 * READ and WRITE move data straight between iov (guest memory) and the
 * image; iov may be changed by the time done() runs.
 */
struct blk_io {
    enum blk_op op;
    uint64_t offset;
    struct iovec *iov;
    int iovcnt;
    uint64_t len;           /* DISCARD and WRITE_ZEROES */
    void (*done)(struct blk_io *io, int result);
    void *opaque;
    /* The drive's. */
    void (*caller_done)(struct blk_io *io, int result);
    uint64_t counted_len;
    struct drive *drive;
    struct aio_request aio;
    void *bounce;           /* O_DIRECT copy of misaligned buffers */
    struct iovec bounce_iov;
    struct loop_bh fail_bh;
    int fail_result;
};

/* Opens the image named by "-drive id=,file=[,format=][,readonly=][,cache=]". */
struct drive *drive_open(struct opts *o, struct aio_engine *aio, char **err);
/* Starts io; an invalid one (out of range, write to read-only) completes with an error. */
void drive_submit(struct drive *d, struct blk_io *io);
/*
 * For format drivers: the backing image at path (format "raw", "qcow2" or
 * NULL to probe), read-only, 'depth' images below the top of the chain.
 */
struct drive *drive_open_backing(const struct drive *top, const char *path,
                                 const char *format, unsigned depth, char **err);
/* For format drivers: io on the image file itself, at file offsets. */
void drive_file_submit(struct drive *d, struct blk_io *io);
/* For format drivers: completes io with result, from the loop. */
void drive_fail_io(struct blk_io *io, int result);
/* Changes the disk's size (raw files, qcow2 within its L1 table); 0 or -1 with *err. */
int drive_resize(struct drive *d, uint64_t size, char **err);
/* The -drive cache= name of a mode. */
const char *drive_cache_name(enum drive_cache cache);
/* "raw" or "qcow2". */
const char *drive_format_name(const struct drive *d);
/* The backing image of a qcow2 drive, or NULL. */
struct drive *drive_backing(const struct drive *d);
/* Makes written data durable; 0 or -1 with *err. */
int drive_flush(struct drive *d, char **err);
/* Flushes (a failure is logged) and closes; I/O in flight completes first. */
void drive_close(struct drive *d);

#endif
