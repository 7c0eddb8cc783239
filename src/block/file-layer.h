/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file layer: where an image's bytes live.  A format driver (raw,
 * qcow2) does all its I/O through the file layer below it, never on a file
 * descriptor of its own, so a format works on any storage a file driver
 * (QEMU calls them protocol drivers) can reach: `file`, a local file or
 * block device on io_uring, and `nbd`, an export of an NBD server.
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
struct opts;

/* An open file layer; a driver embeds it in its own state. */
struct blk_file {
    const struct file_driver *driver;
    struct aio_engine *aio;     /* the process's I/O engine, and through it the loop */
    bool readonly;
    enum drive_cache cache;
    unsigned align;             /* I/O offsets, lengths (and, for submit, buffers) in these units */
    const char *name;           /* a name of the driver's making (a URI), or NULL: the filename */
};

/*
 * What an open file layer reaches once the process confines itself
 * (remote/sandbox.c): a network file layer connects again when its server
 * goes away, and may read its TLS keys again.
 */
struct blk_file_reach {
    int families[2];            /* socket families it connects with (AF_INET, AF_INET6, AF_UNIX) */
    unsigned n_families;
    uint16_t tcp_port;          /* the TCP port it connects to, or 0 */
    bool resolves_names;        /* resolves a host name again at each connection */
    const char *files[4];       /* files and directories it reads again, NULL-terminated */
};

/* What a file driver does; the drive layer and format drivers call it through blk_file_*(). */
struct file_driver {
    const char *name;
    bool network;               /* reaches a server (resolves, makes sockets) when it opens */
    /* Whether filename is this driver's (a URI scheme, say); NULL: any name, the fallback. */
    bool (*claims)(const char *filename);
    /*
     * Opens filename as the drive's options ask; NULL with *err.  o holds
     * the -drive options (NULL for a backing file): the driver takes the
     * "file.KEY" ones it knows.  filename is NULL when only options name
     * the file (file.driver=NAME,...): the driver then sets base.name.
     */
    struct blk_file *(*open)(const char *filename, struct opts *o, struct aio_engine *aio,
                             bool readonly, enum drive_cache cache, char **err);
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
    /* Optional: what it reaches besides the file named; false: nothing else. */
    bool (*reach)(const struct blk_file *f, struct blk_file_reach *out);
};

/* The built-in file drivers (drivers.c), NULL-terminated. */
extern const struct file_driver *const file_drivers[];

/*
 * Opens filename with the driver that file.driver= in o names, else the
 * first that claims it (o may be NULL; filename may be NULL with file.driver=).
 */
struct blk_file *blk_file_open(const char *filename, struct opts *o, struct aio_engine *aio,
                               bool readonly, enum drive_cache cache, char **err);
void blk_file_close(struct blk_file *f);
/*
 * From now on network drivers open nothing: the process is about to
 * confine itself, and the sandbox allows only the servers of the drives
 * it has (a medium change to an NBD URI is refused instead of killed).
 */
void blk_file_forbid_new_servers(void);

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
/* What f reaches besides its file, for the sandbox; false: only the file it was opened by. */
bool blk_file_reach(const struct blk_file *f, struct blk_file_reach *out);

#endif
