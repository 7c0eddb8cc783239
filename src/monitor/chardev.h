/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The character devices a monitor talks through, in QEMU's -qmp/-monitor
 * forms: "unix:PATH,server[,nowait]", "tcp:HOST:PORT,server[,nowait]"
 * ("server=on,wait=off" too) and "stdio".  A server takes one client at a
 * time, the next one when it leaves.  Output is buffered and never blocks
 * the loop; a client that stops reading is dropped.
 */
#ifndef MPQEMU_MONITOR_CHARDEV_H
#define MPQEMU_MONITOR_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>

struct loop;
struct chardev;

struct chardev_handler {
    void (*connected)(void *opaque);
    void (*received)(void *opaque, const char *data, size_t len);
    void (*disconnected)(void *opaque);
    void *opaque;
};

struct chardev *chardev_open(struct loop *loop, const char *spec,
                             const struct chardev_handler *h, char **err);
/* Blocks until a client connects, for the "wait" form; 0 or -1 with *err. */
int chardev_wait_client(struct chardev *c, char **err);
bool chardev_wants_wait(const struct chardev *c);
bool chardev_connected(const struct chardev *c);
/* The path of a unix socket the device listens on (removed at close), else NULL. */
const char *chardev_socket_path(const struct chardev *c);
void chardev_write(struct chardev *c, const char *data, size_t len);
/* Sends what is buffered (waiting up to timeout_ms), closes, removes its socket file. */
void chardev_close(struct chardev *c, int timeout_ms);

#endif
