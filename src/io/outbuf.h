/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bytes waiting to go out on a non-blocking socket.  A server stops reading
 * requests while too much waits here, so a peer that never reads its
 * replies cannot make us buffer without bound.  Used by the protocol
 * servers and by the monitors' character devices.
 */
#ifndef MPQEMU_IO_OUTBUF_H
#define MPQEMU_IO_OUTBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct loop;
struct loop_watch;

enum { OUTBUF_HIGH_WATER = 64 * 1024 };

struct outbuf {
    uint8_t *data;
    size_t len, cap;
};

/* Appends the iovecs whole; -1 (ENOMEM) appends nothing. */
int outbuf_append(struct outbuf *o, const struct iovec *iov, int iovcnt);
/* Sends what the socket (or pipe) takes now; -1 with errno on a send error. */
int outbuf_flush(struct outbuf *o, int sock);
/*
 * Sends what 'fd' takes now, then sets what the peer's watch 'w' waits for:
 * EPOLLOUT while bytes remain (when w watches fd itself: a watch on stdin
 * cannot tell when stdout drains), EPOLLIN while fewer than 'read_limit'
 * bytes remain.  0, or -1 with errno on a send error (the watch untouched).
 */
int outbuf_flush_and_watch(struct outbuf *o, int fd, struct loop *l, struct loop_watch *w,
                           size_t read_limit);
void outbuf_free(struct outbuf *o);

#endif
