// SPDX-License-Identifier: GPL-2.0-or-later
#include "io/sock-io.h"

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/error.h"

/* The kernel passes at most SCM_MAX_FD (253) fds in one message. */
enum { RECV_FD_SPACE = 253 };

static void bag_add(struct fd_bag *bag, int fd)
{
    if (bag && bag->n < bag->cap) {
        bag->fds[bag->n++] = fd;
        return;
    }
    close(fd);
    if (bag) {
        bag->dropped++;
    }
}

static void collect_fds(struct msghdr *mh, struct fd_bag *bag)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        size_t count;
        int fd;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            bag_add(bag, fd);
        }
    }
}

ssize_t sock_recv(int fd, void *buf, size_t len, struct fd_bag *bag, int flags)
{
    union {
        char buf[CMSG_SPACE(RECV_FD_SPACE * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control.buf, .msg_controllen = sizeof(control.buf),
    };
    ssize_t n;

    do {
        n = recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -1;
    }
    collect_fds(&mh, bag);
    if ((mh.msg_flags & MSG_CTRUNC) && bag) {
        /* The kernel closed fds it could not deliver; count them as extra. */
        bag->dropped++;
    }
    return n;
}

ssize_t sock_send(int fd, const struct iovec *iov, int iovcnt,
                  const int *fds, size_t nfds, int flags)
{
    union {
        char buf[CMSG_SPACE(RECV_FD_SPACE * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt };
    ssize_t n;

    if (nfds > RECV_FD_SPACE) {
        errno = EINVAL;
        return -1;
    }
    if (nfds) {
        struct cmsghdr *c;

        memset(control.buf, 0, sizeof(control.buf));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    do {
        n = sendmsg(fd, &mh, flags | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

int sock_send_all(int fd, struct iovec *iov, int iovcnt, const int *fds, size_t nfds)
{
    while (iovcnt > 0) {
        ssize_t n = sock_send(fd, iov, iovcnt, fds, nfds, 0);

        if (n < 0) {
            return -1;
        }
        fds = NULL;
        nfds = 0;
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

size_t fd_bag_hand_over(struct fd_bag *bag, int *fds)
{
    size_t n = bag->n;

    memcpy(fds, bag->fds, n * sizeof(int));
    bag->n = 0;
    return n;
}

enum msg_read sock_ahead_fill(struct sock_ahead *a, int sock, struct fd_bag *bag, size_t want,
                              char **err)
{
    size_t avail = sock_ahead_len(a), before = bag->n;
    ssize_t n;

    /* The front message goes to the front; what was taken before it is gone. */
    memmove(a->buf, a->buf + a->start, avail);
    if (bag->n) {
        a->fds_at -= a->start;
    }
    a->start = 0;
    a->end = avail;
    /* Fds here already are this message's: the rest of it comes alone. */
    n = sock_recv(sock, a->buf + avail, bag->n ? want - avail : a->cap - avail, bag,
                  MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return MSG_READ_AGAIN;
        }
        error_setf(err, "receive failed: %s", strerror(errno));
        return MSG_READ_ERROR;
    }
    if (bag->dropped) {
        error_setf(err, "message carries more than %zu fds", bag->cap);
        return MSG_READ_ERROR;
    }
    if (n == 0) {
        if (avail == 0 && bag->n == 0) {
            return MSG_READ_EOF;
        }
        error_setf(err, "peer closed the connection in the middle of a message "
                   "(%zu of %zu bytes received)", avail, want);
        return MSG_READ_ERROR;
    }
    a->end += (size_t)n;
    if (bag->n != before) {
        a->fds_at = a->end - 1;     /* the receive ended with the bytes they came with */
    }
    return MSG_READ_WHOLE;
}

bool sock_ahead_take(struct sock_ahead *a, size_t len, const struct fd_bag *bag)
{
    bool fds = bag->n && a->fds_at < a->start + len;

    a->start += len;
    if (a->start == a->end) {
        a->start = a->end = 0;
    }
    return fds;
}

bool fd_is_socket(int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

void fd_bag_close(struct fd_bag *bag)
{
    close_fds(bag->fds, bag->n);
    bag->n = 0;
    bag->dropped = 0;
}

static bool server_is_alive(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool alive;

    if (fd < 0) {
        return true;    /* cannot tell: do not remove it */
    }
    alive = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0 ||
            errno != ECONNREFUSED;
    close(fd);
    return alive;
}

int sock_listen_unix(const char *path, char **err)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        error_setf(err, "socket path '%s' is longer than %zu bytes", path,
                   sizeof(addr.sun_path) - 1);
        return -1;
    }
    strcpy(addr.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            error_setf(err, "'%s' exists and is not a socket", path);
            return -1;
        }
        if (server_is_alive(&addr)) {
            error_setf(err, "'%s' is in use by another server", path);
            return -1;
        }
        unlink(path);   /* stale: its server is gone */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0) {
        error_setf(err, "cannot listen on '%s': %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}
