/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Copies to and from memory a peer shares with us by fd.  The peer may
 * truncate the file after we mapped it; touching the lost pages raises
 * SIGBUS.  A guarded copy turns that fault into an error for the access
 * instead of the death of the process.
 */
#ifndef MPQEMU_UTIL_GUARDED_COPY_H
#define MPQEMU_UTIL_GUARDED_COPY_H

#include <stddef.h>

/*
 * Installs the SIGBUS handler, again if something replaced it since.  A
 * SIGBUS outside a guarded copy goes to the handler there was before (a
 * sanitizer's report, or death as before).
 */
void guarded_copy_arm(void);
/* memcpy that returns -1 instead of dying when a page is gone, else 0. */
int guarded_copy(void *dst, const void *src, size_t len);

#endif
