// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/mpqemu-server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pci/dma.h"
#include "pci/pci.h"
#include "proto/mpqemu-wire.h"
#include "io/outbuf.h"
#include "io/sock-io.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"

struct mpqemu_server {
    struct loop *loop;
    struct pci_device *dev;
    int sock;
    struct loop_watch sock_watch;
    struct mpqemu_reader reader;
    struct dma_space dma;

    struct outbuf out;      /* replies the proxy has not read yet */

    int irqfd, resamplefd;
    struct loop_watch resample_watch;
    bool line_high;

    struct log_ratelimit bad_access_log;
    mpqemu_server_closed_fn *closed;
    void *opaque;
    bool dead;
};

static void server_close(struct mpqemu_server *s, bool error)
{
    if (s->dead) {
        return;
    }
    s->dead = true;
    loop_watch_remove(s->loop, &s->sock_watch);
    loop_watch_remove(s->loop, &s->resample_watch);
    if (s->closed) {
        s->closed(s->opaque, error);
    }
}

static void fail(struct mpqemu_server *s, const char *why)
{
    log_error("%s: closing the connection: %s", s->dev->id, why);
    server_close(s, true);
}

/* --- output ------------------------------------------------------------- */

static void flush_output(struct mpqemu_server *s)
{
    if (outbuf_flush_and_watch(&s->out, s->sock, s->loop, &s->sock_watch,
                               OUTBUF_HIGH_WATER) < 0) {
        char why[128];

        snprintf(why, sizeof(why), "send failed: %s", strerror(errno));
        fail(s, why);
    }
}

static void send_ret(struct mpqemu_server *s, bool with_value, uint64_t value)
{
    struct mpqemu_hdr hdr = { .cmd = MPQEMU_CMD_RET, .size = with_value ? 8 : 0 };
    struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { &value, with_value ? 8 : 0 } };

    if (outbuf_append(&s->out, iov, 2) < 0) {
        fail(s, "out of memory for replies");
        return;
    }
    flush_output(s);
}

/* --- INTx through the irqfd / resample pair ----------------------------- */

static void signal_eventfd(int fd)
{
    if (fd >= 0 && eventfd_signal(fd) < 0) {
        log_warn("irqfd write: %s", strerror(errno));
    }
}

static void intx_set_level(void *opaque, bool level)
{
    struct mpqemu_server *s = opaque;

    /* Only a rising edge signals; while high, the resample fd re-signals. */
    if (level && !s->line_high) {
        signal_eventfd(s->irqfd);
    }
    s->line_high = level;
}

static void on_resample(void *opaque, uint32_t events)
{
    struct mpqemu_server *s = opaque;

    (void)events;
    /* The guest acknowledged the interrupt; a line still high fires again. */
    eventfd_drain(s->resamplefd);
    if (s->line_high) {
        signal_eventfd(s->irqfd);
    }
}

static void drop_irqfds(struct mpqemu_server *s)
{
    loop_watch_remove(s->loop, &s->resample_watch);
    if (s->irqfd >= 0) {
        close(s->irqfd);
    }
    if (s->resamplefd >= 0) {
        close(s->resamplefd);
    }
    s->irqfd = s->resamplefd = -1;
}

static int handle_set_irqfd(struct mpqemu_server *s, struct mpqemu_msg *m)
{
    if (!fd_is_eventfd(m->fds[0]) || !fd_is_eventfd(m->fds[1])) {
        fail(s, "SET_IRQFD: the fds are not eventfds");
        return -1;
    }
    drop_irqfds(s);
    s->irqfd = m->fds[0];
    s->resamplefd = m->fds[1];
    m->nfds = 0;
    /* Eventfds from QEMU are non-blocking already; make sure of it. */
    fcntl(s->irqfd, F_SETFL, fcntl(s->irqfd, F_GETFL) | O_NONBLOCK);
    fcntl(s->resamplefd, F_SETFL, fcntl(s->resamplefd, F_GETFL) | O_NONBLOCK);
    if (loop_watch_add(s->loop, &s->resample_watch, s->resamplefd, EPOLLIN,
                       on_resample, s) < 0) {
        fail(s, "SET_IRQFD: cannot watch the resample fd");
        return -1;
    }
    if (s->line_high) {
        signal_eventfd(s->irqfd);
    }
    return 0;
}

/* --- requests ----------------------------------------------------------- */

static int handle_sync_sysmem(struct mpqemu_server *s, struct mpqemu_msg *m)
{
    struct dma_map_request req[MPQEMU_MAX_FDS];
    char *err = NULL;

    for (size_t i = 0; i < m->nfds; i++) {
        req[i] = (struct dma_map_request){
            .gpa = m->data.sysmem.gpas[i], .size = m->data.sysmem.sizes[i],
            .fd = m->fds[i], .offset = m->data.sysmem.offsets[i],
        };
    }
    if (dma_space_replace(&s->dma, req, m->nfds, &err) < 0) {
        error_prefix(&err, "SYNC_SYSMEM");
        fail(s, err ? err : "SYNC_SYSMEM: out of memory");
        free(err);
        return -1;
    }
    return 0;
}

static void bad_access(struct mpqemu_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bad_access(struct mpqemu_server *s, const char *fmt, ...)
{
    if (log_ratelimit_ok(&s->bad_access_log)) {
        char line[160];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log_warn("%s: %s", s->dev->id, line);
    }
}

static void handle_config(struct mpqemu_server *s, const struct mpqemu_msg *m)
{
    const struct mpqemu_pci_conf *c = &m->data.conf;
    bool write = m->hdr.cmd == MPQEMU_CMD_PCI_CFGWRITE;

    if (c->len < 0 || !pci_config_access_valid(c->addr, (uint32_t)c->len)) {
        bad_access(s, "config access of %" PRId32 " bytes at 0x%" PRIx32 " refused",
                   c->len, c->addr);
        send_ret(s, true, MPQEMU_RET_ERROR);
        return;
    }
    if (write) {
        pci_config_write(s->dev, c->addr, c->val, (uint32_t)c->len);
        send_ret(s, true, 0);
    } else {
        send_ret(s, true, pci_config_read(s->dev, c->addr, (uint32_t)c->len));
    }
}

static void handle_bar(struct mpqemu_server *s, const struct mpqemu_msg *m)
{
    const struct mpqemu_bar_access *a = &m->data.bar;
    bool write = m->hdr.cmd == MPQEMU_CMD_BAR_WRITE;
    uint64_t off;
    int bar;

    if (!pci_access_size_valid(a->size) || a->memory > 1) {
        bad_access(s, "BAR access of size %" PRIu32 " (memory flag %u) at 0x%" PRIx64
                   " refused", a->size, a->memory, a->addr);
        send_ret(s, true, MPQEMU_RET_ERROR);
        return;
    }
    bar = pci_bar_find(s->dev, a->memory, a->addr, a->size, &off);
    if (bar < 0) {
        bad_access(s, "%s access at 0x%" PRIx64 " hits no BAR",
                   a->memory ? "memory" : "I/O", a->addr);
        send_ret(s, true, write ? 0 : MPQEMU_RET_ERROR);
        return;
    }
    if (write) {
        pci_bar_write(s->dev, bar, off, a->val, a->size);
        send_ret(s, true, 0);
    } else {
        send_ret(s, true, pci_bar_read(s->dev, bar, off, a->size));
    }
}

static void dispatch(struct mpqemu_server *s, struct mpqemu_msg *m)
{
    char *err = NULL;

    if (mpqemu_check_request(m, &err) < 0) {
        fail(s, err ? err : "invalid message");
        free(err);
        return;
    }
    switch (m->hdr.cmd) {
    case MPQEMU_CMD_SYNC_SYSMEM:
        handle_sync_sysmem(s, m);
        break;
    case MPQEMU_CMD_PCI_CFGREAD:
    case MPQEMU_CMD_PCI_CFGWRITE:
        handle_config(s, m);
        break;
    case MPQEMU_CMD_BAR_READ:
    case MPQEMU_CMD_BAR_WRITE:
        handle_bar(s, m);
        break;
    case MPQEMU_CMD_SET_IRQFD:
        handle_set_irqfd(s, m);
        break;
    case MPQEMU_CMD_DEVICE_RESET:
        pci_device_reset(s->dev);
        send_ret(s, false, 0);
        break;
    }
}

static void on_socket(void *opaque, uint32_t events)
{
    struct mpqemu_server *s = opaque;

    if (events & EPOLLOUT) {
        flush_output(s);
    }
    while (!s->dead && s->out.len < OUTBUF_HIGH_WATER) {
        struct mpqemu_msg m;
        char *err = NULL;

        switch (mpqemu_reader_read(&s->reader, s->sock, &m, &err)) {
        case MPQEMU_READ_MSG:
            dispatch(s, &m);
            close_fds(m.fds, m.nfds);
            continue;
        case MPQEMU_READ_AGAIN:
            return;
        case MPQEMU_READ_EOF:
            log_info("%s: proxy disconnected", s->dev->id);
            server_close(s, false);
            return;
        case MPQEMU_READ_ERROR:
            fail(s, err ? err : "receive error");
            free(err);
            return;
        }
    }
}

struct mpqemu_server *mpqemu_server_new(struct loop *loop, int sock,
                                        struct pci_device *dev,
                                        mpqemu_server_closed_fn *closed, void *opaque)
{
    struct mpqemu_server *s = calloc(1, sizeof(*s));
    struct pci_intx_sink sink;

    if (!s) {
        close(sock);
        return NULL;
    }
    s->loop = loop;
    s->dev = dev;
    s->sock = sock;
    s->irqfd = s->resamplefd = -1;
    s->resample_watch.fd = -1;
    s->closed = closed;
    s->opaque = opaque;
    mpqemu_reader_init(&s->reader);
    dma_space_init(&s->dma);
    dev->dma = &s->dma;
    sink = (struct pci_intx_sink){ .set_level = intx_set_level, .opaque = s };
    pci_set_intx_sink(dev, &sink);
    if (loop_watch_add(loop, &s->sock_watch, sock, EPOLLIN, on_socket, s) < 0) {
        mpqemu_server_free(s);
        return NULL;
    }
    return s;
}

void mpqemu_server_free(struct mpqemu_server *s)
{
    struct pci_intx_sink none = { 0 };

    if (!s) {
        return;
    }
    loop_watch_remove(s->loop, &s->sock_watch);
    drop_irqfds(s);
    mpqemu_reader_reset(&s->reader);
    pci_set_intx_sink(s->dev, &none);
    s->dev->dma = NULL;
    dma_space_clear(&s->dma);
    close(s->sock);
    outbuf_free(&s->out);
    free(s);
}
