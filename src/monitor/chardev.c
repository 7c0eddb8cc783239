// SPDX-License-Identifier: GPL-2.0-or-later
#include "monitor/chardev.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/outbuf.h"
#include "monitor/chardev-spec.h"
#include "io/sock-io.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"

/* More unsent output than this: the client is not reading; drop it. */
#define MAX_PENDING_OUTPUT (4u << 20)

struct chardev {
    struct loop *loop;
    struct chardev_handler h;
    char *spec;
    char *unix_path;            /* removed at close */
    bool wait;
    int listen_fd;
    struct loop_watch listen_watch;
    int in_fd, out_fd;          /* the client; the same socket, or stdin and stdout */
    struct loop_watch in_watch;
    struct outbuf out;
    struct loop_bh close_bh;
    struct loop_bh stdio_bh;    /* stdio's client is there from the start */
};

static void client_close(struct chardev *c)
{
    if (c->in_fd < 0) {
        return;
    }
    loop_watch_remove(c->loop, &c->in_watch);
    if (c->in_fd != STDIN_FILENO) {
        close(c->in_fd);
    }
    c->in_fd = c->out_fd = -1;
    outbuf_free(&c->out);
    if (c->listen_fd >= 0) {
        loop_watch_modify(c->loop, &c->listen_watch, EPOLLIN);
    }
    c->h.disconnected(c->h.opaque);
}

static void on_close_bh(void *opaque)
{
    client_close(opaque);
}

/*
 * Sends what the client takes; arms EPOLLOUT for the rest.  Input is always
 * read: a client that does not read its replies is dropped instead.
 */
static void flush_output(struct chardev *c)
{
    if (c->out_fd >= 0 &&
        outbuf_flush_and_watch(&c->out, c->out_fd, c->loop, &c->in_watch, SIZE_MAX) < 0) {
        loop_bh_schedule(c->loop, &c->close_bh);
    }
}

static void on_client(void *opaque, uint32_t events)
{
    struct chardev *c = opaque;
    char buf[4096];
    ssize_t n;

    if (events & EPOLLOUT) {
        flush_output(c);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->in_fd < 0) {
        return;
    }
    n = read(c->in_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        client_close(c);
        return;
    }
    c->h.received(c->h.opaque, buf, (size_t)n);
}

static int client_open(struct chardev *c, int in_fd, int out_fd)
{
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    if (loop_watch_add(c->loop, &c->in_watch, in_fd, EPOLLIN, on_client, c) < 0) {
        c->in_fd = c->out_fd = -1;
        return -1;
    }
    if (c->listen_fd >= 0) {
        loop_watch_modify(c->loop, &c->listen_watch, 0);   /* one client at a time */
    }
    c->h.connected(c->h.opaque);
    return 0;
}

static void on_listen(void *opaque, uint32_t events)
{
    struct chardev *c = opaque;
    int fd;

    (void)events;
    fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        return;
    }
    if (c->in_fd >= 0 || client_open(c, fd, fd) < 0) {
        close(fd);
    }
}

static void on_stdio_bh(void *opaque)
{
    struct chardev *c = opaque;

    if (client_open(c, STDIN_FILENO, STDOUT_FILENO) < 0) {
        log_error("%s: cannot watch standard input (a file or /dev/null?)", c->spec);
    }
}

static int listen_tcp(const char *hostport, char **err)
{
    char *host = strdup(hostport), *port = host ? strrchr(host, ':') : NULL;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *res = NULL;
    int fd = -1, one = 1, r;

    if (!port) {
        error_setf(err, "tcp: needs HOST:PORT");
        free(host);
        return -1;
    }
    *port++ = 0;
    r = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (r != 0) {
        error_setf(err, "tcp:%s: %s", hostport, gai_strerror(r));
        free(host);
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4) < 0) {
        error_setf(err, "cannot listen on tcp:%s: %s", hostport, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    }
    freeaddrinfo(res);
    free(host);
    return fd;
}

static int open_backend(struct chardev *c, char **err)
{
    char *copy = strdup(c->spec), *comma;
    bool server;
    int r = -1;

    if (!copy) {
        error_setf(err, "out of memory");
        return -1;
    }
    comma = strchr(copy, ',');
    if (comma) {
        *comma = 0;
    }
    if (chardev_spec_flags(c->spec, &server, &c->wait, err) < 0) {
        goto out;
    }
    if (!strcmp(copy, "stdio")) {
        c->wait = false;
        loop_bh_schedule(c->loop, &c->stdio_bh);
        r = 0;
        goto out;
    }
    if (strncmp(copy, "unix:", 5) && strncmp(copy, "tcp:", 4)) {
        error_setf(err, "'%s': unsupported character device (unix:PATH,server,nowait; "
                   "tcp:HOST:PORT,server,nowait; stdio)", c->spec);
        goto out;
    }
    if (!server) {
        error_setf(err, "'%s': only server sockets are supported (add ,server,nowait)",
                   c->spec);
        goto out;
    }
    if (!strncmp(copy, "unix:", 5)) {
        c->listen_fd = sock_listen_unix(copy + 5, err);
        if (c->listen_fd >= 0 && !(c->unix_path = strdup(copy + 5))) {
            error_setf(err, "out of memory");
            goto out;
        }
    } else {
        c->listen_fd = listen_tcp(copy + 4, err);
    }
    if (c->listen_fd >= 0 &&
        loop_watch_add(c->loop, &c->listen_watch, c->listen_fd, EPOLLIN, on_listen, c) == 0) {
        r = 0;
    }
out:
    free(copy);
    return r;
}

struct chardev *chardev_open(struct loop *loop, const char *spec,
                             const struct chardev_handler *h, char **err)
{
    struct chardev *c = calloc(1, sizeof(*c));

    if (!c || !(c->spec = strdup(spec))) {
        free(c);
        error_setf(err, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->h = *h;
    c->listen_fd = c->in_fd = c->out_fd = -1;
    c->listen_watch.fd = c->in_watch.fd = -1;
    loop_bh_init(&c->close_bh, on_close_bh, c);
    loop_bh_init(&c->stdio_bh, on_stdio_bh, c);
    if (open_backend(c, err) < 0) {
        chardev_close(c, 0);
        return NULL;
    }
    return c;
}

bool chardev_wants_wait(const struct chardev *c)
{
    return c->wait && c->listen_fd >= 0;
}

int chardev_wait_client(struct chardev *c, char **err)
{
    struct pollfd p = { .fd = c->listen_fd, .events = POLLIN };

    log_info("waiting for a monitor client on %s", c->spec);
    while (c->in_fd < 0) {
        if (poll(&p, 1, -1) < 0 && errno != EINTR) {
            error_setf(err, "%s: %s", c->spec, strerror(errno));
            return -1;
        }
        on_listen(c, POLLIN);
    }
    return 0;
}

const char *chardev_socket_path(const struct chardev *c)
{
    return c->unix_path;
}

bool chardev_connected(const struct chardev *c)
{
    return c->in_fd >= 0;
}

void chardev_write(struct chardev *c, const char *data, size_t len)
{
    struct iovec iov = { (void *)data, len };

    if (c->out_fd < 0) {
        return;
    }
    if (c->out.len + len > MAX_PENDING_OUTPUT || outbuf_append(&c->out, &iov, 1) < 0) {
        log_warn("%s: the monitor client does not read its replies; dropping it", c->spec);
        loop_bh_schedule(c->loop, &c->close_bh);
        return;
    }
    flush_output(c);
}

void chardev_close(struct chardev *c, int timeout_ms)
{
    if (!c) {
        return;
    }
    /* Last words (a reply to quit, SHUTDOWN) still reach a client that reads. */
    for (int waited = 0; c->out_fd >= 0 && c->out.len && waited < timeout_ms; waited += 10) {
        struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };

        if (poll(&p, 1, 10) > 0 && outbuf_flush(&c->out, c->out_fd) < 0) {
            break;
        }
    }
    loop_bh_cancel(c->loop, &c->close_bh);
    loop_bh_cancel(c->loop, &c->stdio_bh);
    if (c->in_fd >= 0) {
        loop_watch_remove(c->loop, &c->in_watch);
        if (c->in_fd != STDIN_FILENO) {
            close(c->in_fd);
        }
    }
    outbuf_free(&c->out);
    if (c->listen_fd >= 0) {
        loop_watch_remove(c->loop, &c->listen_watch);
        close(c->listen_fd);
    }
    if (c->unix_path) {
        unlink(c->unix_path);
    }
    free(c->unix_path);
    free(c->spec);
    free(c);
}
