/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unix-socket I/O with file descriptors passed as SCM_RIGHTS. */
#ifndef MPQEMU_IO_SOCK_IO_H
#define MPQEMU_IO_SOCK_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * What reading one framed message from a socket gave; the protocols'
 * message readers (mpqemu-wire.h, vfio-user-wire.h) answer with these.
 */
enum msg_read {
    MSG_READ_WHOLE = 1,     /* a whole message, its framing checked */
    MSG_READ_AGAIN = 0,     /* the socket would block */
    MSG_READ_EOF = -1,      /* the peer closed between messages */
    MSG_READ_ERROR = -2,    /* a framing or receive error: the connection must close */
};

/* Received fds are collected here; more than 'cap' are closed and counted. */
struct fd_bag {
    int *fds;
    size_t cap;
    size_t n;        /* fds stored in fds[] */
    size_t dropped;  /* fds received beyond cap, already closed */
};

/*
 * One recvmsg() into buf (at most len bytes), with every fd that arrives
 * added to the bag (close-on-exec).  Returns the byte count, 0 at end of
 * stream, -1 with errno on error (EAGAIN included).
 */
ssize_t sock_recv(int fd, void *buf, size_t len, struct fd_bag *bag, int flags);

/* One sendmsg() of iov with fds attached; returns bytes sent or -1/errno. */
ssize_t sock_send(int fd, const struct iovec *iov, int iovcnt,
                  const int *fds, size_t nfds, int flags);

/* Blocking: sends all of iov (fds with the first byte); 0 or -1/errno. */
int sock_send_all(int fd, struct iovec *iov, int iovcnt, const int *fds, size_t nfds);

bool fd_is_socket(int fd);
/*
 * A non-blocking listening unix socket at path.  A stale socket there (its
 * server gone) is replaced; a live one or any other file is an error.
 */
int sock_listen_unix(const char *path, char **err);
bool fd_is_eventfd(int fd);
/* Adds one to an eventfd; 0, or -1 with errno. */
int eventfd_signal(int fd);
/* Zeroes a non-blocking eventfd (one read; a semaphore eventfd loses one). */
void eventfd_drain(int fd);
void close_fds(int *fds, size_t n);
void fd_bag_close(struct fd_bag *bag);

#endif
