/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The servers of mpqemu-remote.  A server serves one PCI function over one
 * protocol; each protocol describes itself by a struct server_ops, and
 * server.c lists them all.  The remote creates servers from -object options
 * (or its positional fd), starts and frees them, and never names a
 * protocol.
 */
#ifndef MPQEMU_PROTO_SERVER_H
#define MPQEMU_PROTO_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct loop;
struct opts;
struct pci_device;

struct server {
    const struct server_ops *ops;
};

/* The server will serve no more ('error': it ended on a fault). */
typedef void server_ended_fn(void *opaque, bool error);

struct server_ops {
    /* -object OBJECT_TYPE,id=ID,DEVICE_KEY=DEVID,ENDPOINT_USAGE */
    const char *object_type;
    const char *device_key;
    const char *endpoint_usage;
    /* The object's other options, NULL-terminated: any more is an error. */
    const char *const *endpoint_keys;
    /*
     * From the object's options (their keys checked, the device found):
     * checks the endpoint; error messages name the object 'id'.
     */
    struct server *(*create)(struct opts *o, const char *id, char **err);
    /* On an inherited socket (the remote's positional FD); NULL: no such form. */
    struct server *(*create_on_fd)(int fd, char **err);
    /* Where it serves, for messages: "fd 4", "socket '/run/a.sock'".  Unique. */
    void (*describe)(const struct server *s, char *buf, size_t len);
    /* The socket file it listens on and removes at the end; NULL: none. */
    const char *(*socket_path)(const struct server *s);
    /*
     * Serves 'dev' from the loop.  What keeps the process up: a server that
     * will serve no more calls 'ended' (the multi-process protocol, when its
     * one proxy connection closes); one that serves client after client
     * (vfio-user) never does.
     */
    int (*start)(struct server *s, struct loop *loop, struct pci_device *dev,
                 server_ended_fn *ended, void *opaque, char **err);
    /* Stops serving, gives the device back, frees; started or not. */
    void (*free)(struct server *s);
};

/* Every protocol, NULL-terminated. */
extern const struct server_ops *const server_protocols[];

const struct server_ops *server_protocol_find(const char *object_type);
/* The protocol of a socket fd given with no -object (QEMU's remote: its own). */
const struct server_ops *server_protocol_for_fd(void);

#endif
