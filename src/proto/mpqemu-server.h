/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The remote end of QEMU's multi-process protocol: serves one PCI function
 * to one x-pci-proxy-dev over one inherited socket, from the event loop.
 * The messages are this protocol's; the connection (watch, output,
 * refusals, binding the device) is conn.c's.  When the proxy goes, the
 * server has ended.
 */
#ifndef MPQEMU_PROTO_MPQEMU_SERVER_H
#define MPQEMU_PROTO_MPQEMU_SERVER_H

#include "proto/server.h"

/* -object x-remote-object,id=ID,devid=DEVID,fd=N, or the positional FD. */
extern const struct server_ops mpqemu_server_ops;

#endif
