/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The server end of vfio-user: serves one PCI function on a listening
 * Unix socket to one client at a time (QEMU's vfio-user-pci).  When the
 * client goes, the device is reset and the next client may connect.  The
 * messages are this protocol's; the connection (watch, output, refusals,
 * binding the device) is conn.c's.
 */
#ifndef MPQEMU_PROTO_VFIO_USER_SERVER_H
#define MPQEMU_PROTO_VFIO_USER_SERVER_H

#include "proto/server.h"

/*
 * -object x-vfio-user-server,id=ID,device=DEVID,socket.type=unix,socket.path=PATH.
 * A stale socket file at PATH (no server answers) is replaced; a live one or
 * any other file is an error.
 */
extern const struct server_ops vfio_user_server_ops;

/*
 * For tests and fuzzers, on a server of vfio_user_server_ops: the most the
 * waits for replies to our DMA_READ/DMA_WRITE may take at once (5000 ms by
 * default), the budget full again.  A harness playing a client that never
 * answers waits milliseconds, not seconds.
 */
void vfio_user_server_set_dma_wait_budget(struct server *s, unsigned ms);

#endif
