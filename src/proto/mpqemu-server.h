/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The remote end of QEMU's multi-process protocol: serves one PCI function
 * to one x-pci-proxy-dev over one socket, from the event loop.
 */
#ifndef MPQEMU_PROTO_MPQEMU_SERVER_H
#define MPQEMU_PROTO_MPQEMU_SERVER_H

#include <stdbool.h>

struct loop;
struct pci_device;
struct mpqemu_server;

/* Called once when the connection ends; 'error' when it ended on a fault. */
typedef void mpqemu_server_closed_fn(void *opaque, bool error);

/* Takes ownership of 'sock'.  NULL on failure (sock closed). */
struct mpqemu_server *mpqemu_server_new(struct loop *loop, int sock,
                                        struct pci_device *dev,
                                        mpqemu_server_closed_fn *closed, void *opaque);
void mpqemu_server_free(struct mpqemu_server *s);

#endif
