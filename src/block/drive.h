/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A disk image given with -drive: its file, format and cache mode. */
#ifndef MPQEMU_BLOCK_DRIVE_H
#define MPQEMU_BLOCK_DRIVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/aio.h"
#include "util/loop.h"

struct blk_file;
struct format_driver;
struct opts;
struct block_backend;

enum drive_cache { DRIVE_CACHE_WRITEBACK, DRIVE_CACHE_WRITETHROUGH, DRIVE_CACHE_NONE,
                   DRIVE_CACHE_DIRECTSYNC };

/*
 * A disk image: the format driver above, the file layer below (format.h,
 * file-layer.h).  A device's drive; also each image of a backing chain.
 */
struct drive {
    char *id;
    char *file;             /* the file layer's name: a path */
    enum drive_cache cache;
    bool readonly;
    uint64_t size;          /* of the disk, as the format presents it */
    /*
     * The backend holding it as a device's medium (block/backend.h), or
     * NULL.  While held, its requests are counted and their I/O errors
     * reported to the backend.
     */
    struct block_backend *backend;
    const struct format_driver *format;
    void *format_state;     /* the format driver's */
    struct blk_file *file_layer;
    unsigned depth;         /* images above this one in a backing chain */
    /*
     * The end of the furthest write of a device (query-blockstats'
     * wr_highest_offset): QEMU keeps it on the node, the medium, while its
     * other counters are the backend's (block/backend.h).
     */
    uint64_t wr_highest_offset;
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
    /* Counted as a write whatever op (QEMU counts WRITE SAME's unmapping so). */
    bool counted_as_write;
    /* The drive's: holding the engine (aio_hold), counting a device's requests. */
    void (*caller_done)(struct blk_io *io, int result);
    struct block_backend *in_flight_on;     /* whose blk_inc_in_flight() holds it */
    bool counted;
    uint64_t counted_len;
    uint64_t start_ns;
    struct drive *drive;
    /* The file layer's. */
    struct blk_file *file;
    struct aio_request aio;
    void *bounce;           /* O_DIRECT copy of misaligned buffers */
    struct iovec bounce_iov;
    /* blk_io_fail()'s. */
    struct loop_bh fail_bh;
    int fail_result;
};

/* A medium the host puts in (blockdev-change-medium), or a restart puts back. */
struct drive_spec {
    const char *id, *file;
    const char *format;     /* NULL: probed */
    bool readonly;
    const enum drive_cache *cache;  /* NULL: the default */
};

/* Opens the image named by "-drive id=,file=[,format=][,readonly=][,cache=]". */
struct drive *drive_open(struct opts *o, struct aio_engine *aio, char **err);
/* The same, from a spec (a file name may hold any character). */
struct drive *drive_open_spec(const struct drive_spec *spec, struct aio_engine *aio, char **err);
/*
 * The same on a file layer the caller opened (file= only names it); the
 * drive owns f from here on, also when it fails.
 */
struct drive *drive_open_on(struct opts *o, struct blk_file *f, char **err);
/* Starts io; an invalid one (out of range, write to read-only) completes with an error. */
void drive_submit(struct drive *d, struct blk_io *io);
/* For block drivers: completes io with result from the loop (or aio_drain), never inline. */
void blk_io_fail(struct blk_io *io, struct aio_engine *aio, int result);
/*
 * Completes the I/O in flight on d and its backing chain, running their
 * done() here (and any I/O those start), before it returns.
 */
void drive_drain(struct drive *d);
/* Changes the disk's size (raw files, qcow2 within its L1 table); 0 or -1 with *err. */
int drive_resize(struct drive *d, uint64_t size, char **err);
/* Whether a format of that name ("raw", "qcow2") exists. */
bool drive_format_known(const char *name);
/* The -drive cache= name of a mode. */
const char *drive_cache_name(enum drive_cache cache);
/* The format driver's name: "raw", "qcow2". */
const char *drive_format_name(const struct drive *d);
/* The backing image of the drive, or NULL. */
struct drive *drive_backing(const struct drive *d);
/* Makes written data durable; 0 or -1 with *err. */
int drive_flush(struct drive *d, char **err);
/* Flushes (a failure is logged) and closes; I/O in flight completes first. */
void drive_close(struct drive *d);

#endif
