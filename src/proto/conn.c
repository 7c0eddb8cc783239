// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "io/eventfd.h"
#include "pci/pci.h"

static void resume(void *opaque);
static void flush_late(void *opaque);

void conn_init(struct conn *c, const struct conn_ops *ops)
{
    *c = (struct conn){ .ops = ops, .sock = -1 };
    c->watch.fd = -1;
    loop_bh_init(&c->resume_bh, resume, c);
    loop_bh_init(&c->flush_bh, flush_late, c);
    dma_space_init(&c->dma);
}

static void intx_set_level(void *opaque, bool level)
{
    struct conn *c = opaque;

    c->ops->intx_set_level(c, level);
}

void conn_bind(struct conn *c, struct loop *loop, struct pci_device *dev)
{
    struct pci_intx_sink sink = { .set_level = intx_set_level, .opaque = c };

    c->loop = loop;
    c->dev = dev;
    dev->dma = &c->dma;
    pci_set_intx_sink(c->dev, &sink);
    c->bound = true;
}

/* The socket goes, quietly: for the end of the connection and for teardown. */
static void drop_socket(struct conn *c)
{
    loop_bh_cancel(c->loop, &c->resume_bh);
    loop_bh_cancel(c->loop, &c->flush_bh);
    loop_watch_remove(c->loop, &c->watch);
    close(c->sock);
    c->sock = -1;
    outbuf_free(&c->out);
}

void conn_unbind(struct conn *c)
{
    struct pci_intx_sink none = { 0 };

    if (conn_is_open(c)) {
        drop_socket(c);
    }
    if (c->bound) {
        pci_set_intx_sink(c->dev, &none);
        c->dev->dma = NULL;
        c->bound = false;
    }
    dma_space_clear(&c->dma);
}

void conn_close(struct conn *c, bool error)
{
    if (!conn_is_open(c)) {
        return;
    }
    drop_socket(c);
    c->ops->closed(c, error);
}

void conn_fail(struct conn *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_error("%s: closing the %s: %s", c->dev->id, c->ops->name, why);
    conn_close(c, true);
}

void conn_vrefusal(struct conn *c, const char *context, const char *fmt, va_list ap)
{
    char line[200];

    if (!log_ratelimit_ok(&c->refusal_log)) {
        return;
    }
    vsnprintf(line, sizeof(line), fmt, ap);
    if (context) {
        log_warn("%s: %s: %s", c->dev->id, context, line);
    } else {
        log_warn("%s: %s", c->dev->id, line);
    }
}

void conn_refusal(struct conn *c, const char *context, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conn_vrefusal(c, context, fmt, ap);
    va_end(ap);
}

static bool buffered(struct conn *c)
{
    return c->ops->buffered && c->ops->buffered(c);
}

void conn_flush(struct conn *c)
{
    if (!conn_is_open(c)) {
        return;
    }
    if (outbuf_flush_and_watch(&c->out, c->sock, c->loop, &c->watch, OUTBUF_HIGH_WATER) < 0) {
        conn_fail(c, "send failed: %s", strerror(errno));
        return;
    }
    /* Requests read ahead while replies were over the high water: the socket may not wake us. */
    if (!c->serving) {
        conn_resume(c);
    }
}

void conn_resume(struct conn *c)
{
    if (conn_is_open(c) && c->out.len < OUTBUF_HIGH_WATER && buffered(c)) {
        loop_bh_schedule(c->loop, &c->resume_bh);
    }
}

static bool queue(struct conn *c, const struct iovec *iov, int iovcnt)
{
    if (!conn_is_open(c)) {
        return false;   /* the peer left while the device was at work */
    }
    if (outbuf_append(&c->out, iov, iovcnt) < 0) {
        conn_fail(c, "out of memory for replies");
        return false;
    }
    return true;
}

void conn_send(struct conn *c, const struct iovec *iov, int iovcnt)
{
    if (queue(c, iov, iovcnt)) {
        conn_flush(c);
    }
}

static void flush_late(void *opaque)
{
    conn_flush(opaque);
}

void conn_send_late(struct conn *c, const struct iovec *iov, int iovcnt)
{
    if (!queue(c, iov, iovcnt)) {
        return;
    }
    if (loop_in_round(c->loop) && c->out.len < OUTBUF_HIGH_WATER) {
        loop_bh_schedule_round_end(c->loop, &c->flush_bh);
    } else {
        conn_flush(c);
    }
}

/*
 * Serves what the socket has, and only while the peer reads its replies
 * (over the high water it does not).  The watch is level-triggered: bytes
 * that wait wake us again, so no receive is spent to learn that none wait;
 * a reader that read ahead says itself what it holds.  A reader keeps what
 * it has of a message that is not all there yet.
 */
static void serve(struct conn *c)
{
    while (conn_is_open(c) && c->out.len < OUTBUF_HIGH_WATER) {
        char *err = NULL;
        enum msg_read r;

        c->serving = true;
        r = c->ops->serve_one(c, &err);
        c->serving = false;
        switch (r) {
        case MSG_READ_WHOLE:
            if (conn_is_open(c) && buffered(c)) {
                continue;   /* bounded: what one receive brought */
            }
            return;
        case MSG_READ_AGAIN:
            return;
        case MSG_READ_EOF:
            log_info("%s: %s disconnected", c->dev->id, c->ops->peer);
            conn_close(c, false);
            return;
        case MSG_READ_ERROR:
            conn_fail(c, "%s", err ? err : "receive error");
            free(err);
            return;
        }
    }
}

static void resume(void *opaque)
{
    struct conn *c = opaque;

    if (buffered(c)) {
        serve(c);
    }
}

static void on_socket(void *opaque, uint32_t events)
{
    struct conn *c = opaque;

    if (events & EPOLLOUT) {
        conn_flush(c);
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR) || buffered(c)) {
        serve(c);
    }
}

int conn_attach(struct conn *c, int sock)
{
    if (loop_watch_add(c->loop, &c->watch, sock, EPOLLIN, on_socket, c) < 0) {
        close(sock);
        return -1;
    }
    c->sock = sock;
    return 0;
}

void conn_signal_eventfd(struct conn *c, int fd, const char *what)
{
    int r = fd >= 0 ? eventfd_signal_hinted(fd, &c->eventfd_full) : EVENTFD_ADDED;

    if (r < 0) {
        log_warn("%s: %s write: %s", c->dev->id, what, strerror(errno));
    } else if (r == EVENTFD_WAS_FULL && log_ratelimit_ok(&c->eventfd_log)) {
        log_warn("%s: %s: its counter is at its maximum (the %s wrote a huge value and has "
                 "not read it): the interrupt is pending there already; not waiting",
                 c->dev->id, what, c->ops->peer);
    }
}

bool conn_drain_eventfd(struct conn *c, struct loop_watch *w, int fd, const char *what)
{
    if (w->fd < 0 || eventfd_drain(fd) >= 0) {
        return true;
    }
    log_warn("%s: %s read: %s; no longer watched", c->dev->id, what, strerror(errno));
    loop_watch_remove(c->loop, w);
    return false;
}
