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
 * For tests and fuzzers: the most the waits for replies to our
 * DMA_READ/DMA_WRITE may take at once (5000 ms by default), the budget
 * full again.  A harness playing a client that never answers waits
 * milliseconds, not seconds.
 */
void vfio_user_server_set_dma_wait_budget(struct vfio_user_server *s, unsigned ms);
/* Closes the client and the listening socket and removes the socket file. */
void vfio_user_server_free(struct vfio_user_server *s);

#endif
