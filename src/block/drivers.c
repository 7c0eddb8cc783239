// SPDX-License-Identifier: GPL-2.0-or-later
/* The one list of built-in drivers: formats, and the file drivers below them. */
#include "block/drivers.h"

#include <stddef.h>

/* In the order error messages name them. */
const struct format_driver *const format_drivers[] = { &format_raw, &format_qcow2, NULL };

/* nbd claims NBD URIs; file takes any other name. */
const struct file_driver *const file_drivers[] = { &file_driver_nbd, &file_driver_posix, NULL };
