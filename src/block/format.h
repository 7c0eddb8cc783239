/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Format drivers: how an image maps the disk's bytes onto its file layer
 * (file-layer.h).  The drive layer (drive.c) checks, counts and reports a
 * device's requests and hands them to its format driver; it names no
 * format.  A driver keeps its state in d->format_state.
 */
#ifndef MPQEMU_BLOCK_FORMAT_H
#define MPQEMU_BLOCK_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "block/drive.h"

/* The bytes at the start of an image that probing looks at. */
#define FORMAT_PROBE_BYTES 4096u
/* Images in a backing chain, the top included; a deeper chain is taken for a loop. */
#define DRIVE_MAX_BACKING_DEPTH 16u

struct format_driver {
    const char *name;       /* format=NAME, and query-block's "drv" */
    /*
     * How sure the driver is that an image whose first len bytes (at most
     * FORMAT_PROBE_BYTES) are head is its own: 0 not at all; the highest
     * score wins.
     */
    int (*probe)(const uint8_t *head, size_t len);
    /* Opens the image on d->file_layer and sets d->size; 0 or -1 with *err. */
    int (*open)(struct drive *d, char **err);
    /* Starts a request drive_submit has checked; it completes from the loop. */
    void (*submit)(struct drive *d, struct blk_io *io);
    /* Optional: writes cached metadata to the file layer, before drive_flush syncs it. */
    int (*writeback)(struct drive *d, char **err);
    /* Changes the disk's size (checked for read-only and 512-byte units); 0 or -1 with *err. */
    int (*resize)(struct drive *d, uint64_t size, char **err);
    /* Optional: the image this one reads unallocated data from, or NULL. */
    struct drive *(*backing)(const struct drive *d);
    /* Optional: after the drive's I/O has drained, frees the driver's state. */
    void (*close)(struct drive *d);
};

/* The built-in format drivers (drivers.c), NULL-terminated. */
extern const struct format_driver *const format_drivers[];

/*
 * For format drivers: opens the backing image 'name' of top (relative
 * names from top's directory), read-only, with the format named (or
 * probed when NULL).
 */
struct drive *drive_open_backing(const struct drive *top, const char *name, const char *format,
                                 char **err);

#endif
