/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Backing file names: where a qcow2 image names its backing file, and which
 * file a name stands for.  Shared by the drive layer, which opens backing
 * chains, and mpqemu-launch, which binds a confined remote's backing files
 * into the remote's view of the file system: both must find the same files.
 */
#ifndef MPQEMU_BLOCK_BACKING_H
#define MPQEMU_BLOCK_BACKING_H

#include <stdint.h>

/* The longest backing file name we take, its NUL included. */
#define BACKING_NAME_MAX 1024

/*
 * The backing file name in a qcow2 image's first cluster h (avail bytes of
 * it; the fixed header at least): 1 with name set, 0 when the image has
 * none, -1 with *err (which names file).  A name may not start before
 * header_end, where the header ends.
 */
int qcow2_backing_name(const uint8_t *h, uint64_t avail, uint64_t header_end, const char *file,
                       char name[BACKING_NAME_MAX], char **err);

/* The file a backing name stands for: a relative name is from the image's directory. */
char *backing_path(const char *image, const char *name);

#endif
