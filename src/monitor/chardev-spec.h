/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The flags of a monitor's character device, "BACKEND:ADDRESS,server,nowait"
 * (QEMU's "server=on,wait=off" too), read from the string alone: for the
 * monitors that open it and for mpqemu-launch, which checks a remote's
 * monitors before it starts anything.
 */
#ifndef MPQEMU_MONITOR_CHARDEV_SPEC_H
#define MPQEMU_MONITOR_CHARDEV_SPEC_H

#include <stdbool.h>

/* Sets *server and *wait (a server waits for its first client unless nowait); 0, or -1 with *err. */
int chardev_spec_flags(const char *spec, bool *server, bool *wait, char **err);

#endif
