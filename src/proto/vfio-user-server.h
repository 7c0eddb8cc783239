/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The server end of vfio-user: serves one PCI function on a listening
 * Unix socket to one client at a time (QEMU's vfio-user-pci).  When the
 * client goes, the device is reset and the next client may connect.
 */
#ifndef MPQEMU_PROTO_VFIO_USER_SERVER_H
#define MPQEMU_PROTO_VFIO_USER_SERVER_H

struct loop;
struct pci_device;
struct vfio_user_server;

/*
 * Listens on 'path'.  A stale socket file there (no server answers) is
 * replaced; a live one or any other file is an error.
 */
struct vfio_user_server *vfio_user_server_new(struct loop *loop, const char *path,
                                              struct pci_device *dev, char **err);
/*
 * For tests and fuzzers: how long a DMA_READ/DMA_WRITE we send waits for
 * its reply before the client is dropped (5000 ms by default).
 */
void vfio_user_server_set_dma_timeout(struct vfio_user_server *s, int ms);
/* Closes the client and the listening socket and removes the socket file. */
void vfio_user_server_free(struct vfio_user_server *s);

#endif
