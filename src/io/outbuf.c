// SPDX-License-Identifier: GPL-2.0-or-later
#include "io/outbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/loop.h"

int outbuf_append(struct outbuf *o, const struct iovec *iov, int iovcnt)
{
    size_t need = o->len;

    for (int i = 0; i < iovcnt; i++) {
        need += iov[i].iov_len;
    }
    if (need > o->cap) {
        size_t cap = need * 2;
        uint8_t *grown = realloc(o->data, cap);

        if (!grown) {
            errno = ENOMEM;
            return -1;
        }
        o->data = grown;
        o->cap = cap;
    }
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_len) {
            continue;       /* an absent part: its base may be NULL */
        }
        memcpy(o->data + o->len, iov[i].iov_base, iov[i].iov_len);
        o->len += iov[i].iov_len;
    }
    return 0;
}

int outbuf_flush(struct outbuf *o, int sock)
{
    size_t sent = 0;

    while (sent < o->len) {
        ssize_t n = send(sock, o->data + sent, o->len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0 && errno == ENOTSOCK) {     /* a pipe or terminal (stdio) */
            n = write(sock, o->data + sent, o->len - sent);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -1;
        }
        sent += (size_t)n;
    }
    memmove(o->data, o->data + sent, o->len - sent);
    o->len -= sent;
    return 0;
}

int outbuf_flush_and_watch(struct outbuf *o, int fd, struct loop *l, struct loop_watch *w,
                           size_t read_limit)
{
    uint32_t events = 0;

    if (outbuf_flush(o, fd) < 0) {
        return -1;
    }
    if (o->len && w->fd == fd) {
        events |= EPOLLOUT;
    }
    if (o->len < read_limit) {
        events |= EPOLLIN;
    }
    loop_watch_modify(l, w, events);
    return 0;
}

void outbuf_free(struct outbuf *o)
{
    free(o->data);
    *o = (struct outbuf){ 0 };
}
