// SPDX-License-Identifier: GPL-2.0-or-later
/* The raw format: the disk is the file, byte for byte; requests pass straight through. */
#include <string.h>

#include "block/drivers.h"
#include "util/error.h"

/* Any image reads as raw: the last resort of probing. */
static int raw_probe(const uint8_t *head, size_t len)
{
    (void)head;
    (void)len;
    return 1;
}

static int raw_open(struct drive *d, char **err)
{
    int r = blk_file_length(d->file_layer, &d->size);

    if (r < 0) {
        error_setf(err, "%s: %s", d->file, strerror(-r));
        return -1;
    }
    return 0;
}

/* The caller's request itself goes down: no allocation, no copy. */
static void raw_submit(struct drive *d, struct blk_io *io)
{
    blk_file_submit(d->file_layer, io);
}

static int raw_resize(struct drive *d, uint64_t size, char **err)
{
    if (blk_file_truncate(d->file_layer, size, err) < 0) {
        error_prefix(err, "drive '%s'", d->id);
        return -1;
    }
    return 0;
}

const struct format_driver format_raw = {
    .name = "raw",
    .probe = raw_probe,
    .open = raw_open,
    .submit = raw_submit,
    .resize = raw_resize,
};
