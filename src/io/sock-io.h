/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unix-socket I/O with file descriptors passed as SCM_RIGHTS. */
#ifndef MPQEMU_IO_SOCK_IO_H
#define MPQEMU_IO_SOCK_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
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

/* Moves the bag's fds to a message's fds[] (room for the bag's cap); how many. */
size_t fd_bag_hand_over(struct fd_bag *bag, int *fds);

/* One sendmsg() of iov with fds attached; returns bytes sent or -1/errno. */
ssize_t sock_send(int fd, const struct iovec *iov, int iovcnt,
                  const int *fds, size_t nfds, int flags);

/* Blocking: sends all of iov (fds with the first byte); 0 or -1/errno. */
int sock_send_all(int fd, struct iovec *iov, int iovcnt, const int *fds, size_t nfds);

/*
 * Read-ahead for a stream of framed messages on a non-blocking socket: a
 * receive takes what is there, up to cap bytes (a message's header and
 * body together, a burst of messages at once), where exact reads would
 * take a header, then a body, then learn that nothing follows.  The kernel
 * ends a receive with the bytes fds came with, so the fds a receive brings
 * go with the message its last byte belongs to; while they wait for the
 * rest of that message, only that rest is received.  A peer that sends
 * each message with its fds in one call (QEMU) gets them with its bytes,
 * as with exact reads.
 */
struct sock_ahead {
    uint8_t *buf;
    size_t cap;
    size_t start, end;      /* buf[start..end): received, not yet taken */
    size_t fds_at;          /* the bag's fds go with the message holding buf[fds_at] */
};

static inline size_t sock_ahead_len(const struct sock_ahead *a)
{
    return a->end - a->start;
}

/* Copies the first len bytes held (a message's header) if all are there. */
static inline bool sock_ahead_peek(const struct sock_ahead *a, void *out, size_t len)
{
    if (sock_ahead_len(a) < len) {
        return false;
    }
    memcpy(out, a->buf + a->start, len);
    return true;
}

/*
 * Receives for the message at the front, of which 'want' bytes (more than
 * are there, at most cap) are known to be needed.  MSG_READ_WHOLE when
 * bytes came; else AGAIN, EOF (between messages) or ERROR (*err says why:
 * a receive error, the peer gone in a message, more fds than the bag holds).
 */
enum msg_read sock_ahead_fill(struct sock_ahead *a, int sock, struct fd_bag *bag, size_t want,
                              char **err);
/* Takes the front message, of len bytes: whether the bag's fds are its. */
bool sock_ahead_take(struct sock_ahead *a, size_t len, const struct fd_bag *bag);

bool fd_is_socket(int fd);
/*
 * A non-blocking listening unix socket at path.  A stale socket there (its
 * server gone) is replaced; a live one or any other file is an error.
 */
int sock_listen_unix(const char *path, char **err);
void close_fds(int *fds, size_t n);
void fd_bag_close(struct fd_bag *bag);

#endif
