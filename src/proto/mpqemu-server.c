// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/mpqemu-server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "io/eventfd.h"
#include "pci/pci.h"
#include "proto/conn.h"
#include "proto/mpqemu-wire.h"
#include "util/error.h"
#include "util/opts.h"

struct mpqemu_server {
    struct server server;
    int fd;                     /* the proxy's socket; the connection's once started */
    struct conn conn;
    struct mpqemu_reader reader;

    int irqfd, resamplefd;
    struct loop_watch resample_watch;
    bool line_high;

    server_ended_fn *ended;
    void *opaque;
};

static struct mpqemu_server *server_of(struct conn *c)
{
    return (struct mpqemu_server *)((char *)c - offsetof(struct mpqemu_server, conn));
}

static void send_ret_as(struct mpqemu_server *s, bool with_value, uint64_t value,
                        conn_send_fn *send)
{
    struct mpqemu_hdr hdr = { .cmd = MPQEMU_CMD_RET, .size = with_value ? 8 : 0 };
    struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { &value, with_value ? 8 : 0 } };

    send(&s->conn, iov, 2);
}

static void send_ret(struct mpqemu_server *s, bool with_value, uint64_t value)
{
    send_ret_as(s, with_value, value, conn_send);
}

/* A write's: the proxy waits for it, and then finds what the write started done (conn.h). */
static void send_write_ret(struct mpqemu_server *s)
{
    send_ret_as(s, true, 0, conn_send_late);
}

/* --- INTx through the irqfd / resample pair ----------------------------- */

static void signal_irqfd(struct mpqemu_server *s)
{
    conn_signal_eventfd(&s->conn, s->irqfd, "irqfd");
}

/* A resample fd no longer watched: EOIs then go unseen, the line signals at rising edges only. */
static void drain_resample(struct mpqemu_server *s)
{
    conn_drain_eventfd(&s->conn, &s->resample_watch, s->resamplefd, "resample fd");
}

/*
 * The resample fd matters only while the line is high: an EOI then may
 * find it still high and fire again.  A driver lowers the line (clears the
 * cause) before its EOI, so watching the fd only while high spares the
 * process a wakeup per interrupt; the EOIs that came while it was low are
 * stale and dropped at the next rising edge.
 */
static void watch_resample(struct mpqemu_server *s, bool on)
{
    if (s->resample_watch.fd >= 0) {
        loop_watch_modify(s->conn.loop, &s->resample_watch, on ? EPOLLIN : 0);
    }
}

static void intx_set_level(struct conn *c, bool level)
{
    struct mpqemu_server *s = server_of(c);

    /* Only a rising edge signals; while high, the resample fd re-signals. */
    if (level && !s->line_high) {
        drain_resample(s);
        watch_resample(s, true);
        signal_irqfd(s);
    } else if (!level && s->line_high) {
        watch_resample(s, false);
    }
    s->line_high = level;
}

static void on_resample(void *opaque, uint32_t events)
{
    struct mpqemu_server *s = opaque;

    (void)events;
    /* The guest acknowledged the interrupt; a line still high fires again. */
    drain_resample(s);
    if (s->line_high) {
        signal_irqfd(s);
    }
}

static void drop_irqfds(struct mpqemu_server *s)
{
    loop_watch_remove(s->conn.loop, &s->resample_watch);
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
        conn_fail(&s->conn, "SET_IRQFD: the fds are not eventfds");
        return -1;
    }
    drop_irqfds(s);
    s->irqfd = m->fds[0];
    s->resamplefd = m->fds[1];
    m->nfds = 0;
    /*
     * Their file status flags are left as the VMM set them: it shares the
     * open files and may change them at any time, and no access of ours
     * depends on them (io/eventfd.h).
     */
    if (loop_watch_add(s->conn.loop, &s->resample_watch, s->resamplefd,
                       s->line_high ? EPOLLIN : 0, on_resample, s) < 0) {
        conn_fail(&s->conn, "SET_IRQFD: cannot watch the resample fd");
        return -1;
    }
    if (s->line_high) {
        signal_irqfd(s);
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
    if (dma_space_replace(&s->conn.dma, req, m->nfds, &err) < 0) {
        error_prefix(&err, "SYNC_SYSMEM");
        conn_fail(&s->conn, "%s", err ? err : "SYNC_SYSMEM: out of memory");
        free(err);
        return -1;
    }
    return 0;
}

static void handle_config(struct mpqemu_server *s, const struct mpqemu_msg *m)
{
    const struct mpqemu_pci_conf *c = &m->data.conf;
    bool write = m->hdr.cmd == MPQEMU_CMD_PCI_CFGWRITE;

    if (c->len < 0 || !pci_config_access_valid(c->addr, (uint32_t)c->len)) {
        conn_refusal(&s->conn, NULL, "config access of %" PRId32 " bytes at 0x%" PRIx32
                     " refused", c->len, c->addr);
        send_ret(s, true, MPQEMU_RET_ERROR);
        return;
    }
    if (write) {
        pci_config_write(s->conn.dev, c->addr, c->val, (uint32_t)c->len);
        send_write_ret(s);
    } else {
        send_ret(s, true, pci_config_read(s->conn.dev, c->addr, (uint32_t)c->len));
    }
}

static void handle_bar(struct mpqemu_server *s, const struct mpqemu_msg *m)
{
    const struct mpqemu_bar_access *a = &m->data.bar;
    bool write = m->hdr.cmd == MPQEMU_CMD_BAR_WRITE;
    uint64_t off;
    int bar;

    if (!pci_access_size_valid(a->size) || a->memory > 1) {
        conn_refusal(&s->conn, NULL, "BAR access of size %" PRIu32 " (memory flag %u) at 0x%"
                     PRIx64 " refused", a->size, a->memory, a->addr);
        send_ret(s, true, MPQEMU_RET_ERROR);
        return;
    }
    bar = pci_bar_find(s->conn.dev, a->memory, a->addr, a->size, &off);
    if (bar < 0) {
        conn_refusal(&s->conn, NULL, "%s access at 0x%" PRIx64 " hits no BAR",
                     a->memory ? "memory" : "I/O", a->addr);
        send_ret(s, true, write ? 0 : MPQEMU_RET_ERROR);
        return;
    }
    if (write) {
        pci_bar_write(s->conn.dev, bar, off, a->val, a->size);
        send_write_ret(s);
    } else {
        send_ret(s, true, pci_bar_read(s->conn.dev, bar, off, a->size));
    }
}

static void dispatch(struct mpqemu_server *s, struct mpqemu_msg *m)
{
    char *err = NULL;

    if (mpqemu_check_request(m, &err) < 0) {
        conn_fail(&s->conn, "%s", err ? err : "invalid message");
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
        pci_device_reset(s->conn.dev);
        send_ret(s, false, 0);
        break;
    }
}

/* --- the connection and the server ---------------------------------------- */

static enum msg_read serve_one(struct conn *c, char **err)
{
    struct mpqemu_server *s = server_of(c);
    struct mpqemu_msg m;
    enum mpqemu_read_result r = mpqemu_reader_read(&s->reader, c->sock, &m, err);

    if (r == MPQEMU_READ_MSG) {
        dispatch(s, &m);
        close_fds(m.fds, m.nfds);
    }
    return (enum msg_read)r;
}

static bool buffered(struct conn *c)
{
    return mpqemu_reader_buffered(&server_of(c)->reader);
}

/* The proxy had the device to itself: without it the server has ended. */
static void proxy_gone(struct conn *c, bool error)
{
    struct mpqemu_server *s = server_of(c);

    loop_watch_remove(c->loop, &s->resample_watch);
    if (s->ended) {
        s->ended(s->opaque, error);
    }
}

static const struct conn_ops proxy_conn_ops = {
    .name = "connection",
    .peer = "proxy",
    .serve_one = serve_one,
    .buffered = buffered,
    .intx_set_level = intx_set_level,
    .closed = proxy_gone,
};

static struct server *create_on_fd(int fd, char **err)
{
    struct mpqemu_server *s;

    if (fcntl(fd, F_GETFD) < 0 || !fd_is_socket(fd)) {
        error_setf(err, "fd %d is not an open socket", fd);
        return NULL;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        error_setf(err, "out of memory");
        return NULL;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    s->server.ops = &mpqemu_server_ops;
    s->fd = fd;
    s->irqfd = s->resamplefd = -1;
    s->resample_watch.fd = -1;
    mpqemu_reader_init_read_ahead(&s->reader);
    conn_init(&s->conn, &proxy_conn_ops);
    return &s->server;
}

/* -object x-remote-object,id=ID,devid=DEVID,fd=N */
static struct server *create(struct opts *o, const char *id, char **err)
{
    const char *fdtext = opts_get(o, "fd");
    struct server *s;
    uint64_t fd;

    if (!fdtext || parse_uint(fdtext, &fd) < 0 || fd > 1000000) {
        error_setf(err, "x-remote-object '%s': fd must be a file descriptor number", id);
        return NULL;
    }
    if (!(s = create_on_fd((int)fd, err))) {
        error_prefix(err, "x-remote-object '%s'", id);
    }
    return s;
}

static void describe(const struct server *srv, char *buf, size_t len)
{
    snprintf(buf, len, "fd %d", ((const struct mpqemu_server *)srv)->fd);
}

static int start(struct server *srv, struct loop *loop, struct pci_device *dev,
                 server_ended_fn *ended, void *opaque, char **err)
{
    struct mpqemu_server *s = (struct mpqemu_server *)srv;

    s->ended = ended;
    s->opaque = opaque;
    conn_bind(&s->conn, loop, dev);
    if (conn_attach(&s->conn, s->fd) < 0) {
        error_setf(err, "cannot watch the proxy's socket");
        return -1;
    }
    return 0;
}

/* The socket closes with the connection: one never started stays the remote's. */
static void server_free(struct server *srv)
{
    struct mpqemu_server *s = (struct mpqemu_server *)srv;

    if (!s) {
        return;
    }
    conn_unbind(&s->conn);
    drop_irqfds(s);
    mpqemu_reader_reset(&s->reader);
    free(s);
}

const struct server_ops mpqemu_server_ops = {
    .object_type = "x-remote-object",
    .device_key = "devid",
    .endpoint_usage = "fd=N",
    .endpoint_keys = (const char *const[]){ "fd", NULL },
    .create = create,
    .create_on_fd = create_on_fd,
    .describe = describe,
    .start = start,
    .free = server_free,
};
