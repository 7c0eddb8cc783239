/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 images (versions 2 and 3) for a drive: the format driver behind
 * drive_submit when a drive's format is qcow2.  Data moves on the drive's
 * asynchronous I/O path; metadata is cached (qcow2-int.h).
 */
#ifndef MPQEMU_BLOCK_QCOW2_H
#define MPQEMU_BLOCK_QCOW2_H

#include "block/drive.h"

struct qcow2;

/*
 * Reads and checks the header and tables of the image open on d->fd, opens
 * its backing chain, and sets d->size to the virtual size.  'depth' counts
 * the images above this one in a backing chain.
 */
struct qcow2 *qcow2_open(struct drive *d, unsigned depth, char **err);
void qcow2_submit(struct qcow2 *q, struct blk_io *io);
/* Writes back the cached metadata in order; 0 or -1 with *err. */
int qcow2_writeback(struct qcow2 *q, char **err);
/* Grows the virtual size within what the L1 table maps; 0 or -1 with *err. */
int qcow2_resize(struct qcow2 *q, uint64_t size, char **err);
struct drive *qcow2_backing(const struct qcow2 *q);
/* After the drive's I/O has drained: writes back and frees. */
void qcow2_close(struct qcow2 *q);

#endif
