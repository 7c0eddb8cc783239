/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file layer: where an image's bytes live.  A format driver (raw,
 * qcow2) does all its I/O through the file layer below it, never on a file
 * descriptor of its own, so a format works on any storage a file driver
 * (QEMU calls them protocol drivers) can reach: today `file`, a local file
 * or block device on io_uring; next, NBD.
 *
 * Data moves asynchronously (blk_file_submit, completed from the loop);
 * metadata may also be read and written synchronously.
 */
#ifndef MPQEMU_BLOCK_FILE_LAYER_H
#define MPQEMU_BLOCK_FILE_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "block/drive.h"

struct aio_engine;
struct loop;

/* An open file layer; a driver embeds it in its own state. */
struct blk_file {
    const struct file_driver *driver;
    struct aio_engine *aio;     /* the process's I/O engine, and through it the loop */
    bool readonly;
    enum drive_cache cache;
    unsigned align;             /* I/O offsets, lengths (and, for submit, buffers) in these units */
};

/* What a file driver does; the drive layer and format drivers call it through blk_file_*(). */
struct file_driver {
    const char *name;
    /* Whether filename is this driver's (a URI scheme, say); NULL: any name, the fallback. */
    bool (*claims)(const char *filename);
    /* Opens filename as the drive's options ask; NULL with *err. */
    struct blk_file *(*open)(const char *filename, struct aio_engine *aio, bool readonly,
                             enum drive_cache cache, char **err);
    /* After its I/O has completed. */
    void (*close)(struct blk_file *f);
    /* Starts io at file offsets; done() runs from the loop, never inline. */
    void (*submit)(struct blk_file *f, struct blk_io *io);
    /* Waits until no I/O of this file is in flight, running completions. */
    void (*drain)(struct blk_file *f);
    /* The file's current length in bytes; 0 or -errno. */
    int (*length)(struct blk_file *f, uint64_t *len);
    /* Synchronous I/O, in units of align: see blk_file_pread() and others below. */
    int64_t (*pread)(struct blk_file *f, void *buf, uint64_t len, uint64_t offset);
    int (*pwrite)(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset);
    int (*sync)(struct blk_file *f);
    /* Sets the length; 0 or -1 with *err. */
    int (*truncate)(struct blk_file *f, uint64_t len, char **err);
    /* Optional: makes [offset, offset+len) part of the file, reading as zeros; 0 or -errno. */
    int (*allocate)(struct blk_file *f, uint64_t offset, uint64_t len);
    /* Optional: whether filename names this very file. */
    bool (*is)(const struct blk_file *f, const char *filename);
};

/* The built-in file drivers (drivers.c), NULL-terminated. */
extern const struct file_driver *const file_drivers[];

/* Opens filename with the first driver that claims it. */
struct blk_file *blk_file_open(const char *filename, struct aio_engine *aio, bool readonly,
                               enum drive_cache cache, char **err);
void blk_file_close(struct blk_file *f);

static inline void blk_file_submit(struct blk_file *f, struct blk_io *io)
{
    io->file = f;
    f->driver->submit(f, io);
}

void blk_file_drain(struct blk_file *f);
struct loop *blk_file_loop(const struct blk_file *f);
int blk_file_length(struct blk_file *f, uint64_t *len);
/*
 * Reads len bytes at offset into buf; bytes past the end of the file read
 * as zeros.  The number of bytes that were in the file, or -errno.
 */
int64_t blk_file_pread(struct blk_file *f, void *buf, uint64_t len, uint64_t offset);
/* Writes all len bytes; 0 or -errno. */
int blk_file_pwrite(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset);
/* Makes what was written durable; 0 or -errno. */
int blk_file_sync(struct blk_file *f);
int blk_file_truncate(struct blk_file *f, uint64_t len, char **err);
/* 0, or -errno (-EOPNOTSUPP where the driver cannot). */
int blk_file_allocate(struct blk_file *f, uint64_t offset, uint64_t len);
/* Whether filename, opened, would be this same file. */
bool blk_file_is(const struct blk_file *f, const char *filename);

#endif
