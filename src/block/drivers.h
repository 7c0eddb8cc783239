/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The built-in block drivers, each defined in its own file and listed in drivers.c. */
#ifndef MPQEMU_BLOCK_DRIVERS_H
#define MPQEMU_BLOCK_DRIVERS_H

#include "block/file-layer.h"
#include "block/format.h"

extern const struct format_driver format_raw;       /* raw.c */
extern const struct format_driver format_qcow2;     /* qcow2.c */
extern const struct file_driver file_driver_posix;  /* file-posix.c: "file" */
extern const struct file_driver file_driver_nbd;    /* file-nbd.c: "nbd" */

#endif
