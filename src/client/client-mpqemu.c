// SPDX-License-Identifier: GPL-2.0-or-later
/* The client library over QEMU's multi-process protocol, as x-pci-proxy-dev. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client-internal.h"
#include "proto/mpqemu-wire.h"
#include "util/error.h"

static int send_msg(struct mpq_dev *d, const struct mpqemu_msg *m, char **err)
{
    if (mpqemu_send(d->sock, m) < 0) {
        error_setf(err, "%s: send failed: %s", mpqemu_cmd_name(m->hdr.cmd), strerror(errno));
        return -1;
    }
    return 0;
}

/* Sends a request and waits for its RET; *ret gets the value (0 if empty). */
static int call(struct mpq_dev *d, const struct mpqemu_msg *m, uint64_t *ret, char **err)
{
    struct mpqemu_reader reader;
    struct mpqemu_msg reply;
    double start;

    if (send_msg(d, m, err) < 0) {
        return -1;
    }
    start = mpq_now_us();
    mpqemu_reader_init(&reader);
    for (;;) {
        switch (mpqemu_reader_read(&reader, d->sock, &reply, err)) {
        case MPQEMU_READ_MSG:
            if (mpqemu_check_reply(&reply, err) < 0) {
                close_fds(reply.fds, reply.nfds);
                return -1;
            }
            *ret = reply.hdr.size ? reply.data.u64 : 0;
            return 0;
        case MPQEMU_READ_AGAIN:
            if (mpq_await_reply(d, start, err) < 0) {
                mpqemu_reader_reset(&reader);
                error_prefix(err, "%s", mpqemu_cmd_name(m->hdr.cmd));
                return -1;
            }
            continue;
        case MPQEMU_READ_EOF:
            error_setf(err, "%s: the remote closed the connection",
                       mpqemu_cmd_name(m->hdr.cmd));
            return -1;
        case MPQEMU_READ_ERROR:
            error_prefix(err, "%s: bad reply", mpqemu_cmd_name(m->hdr.cmd));
            return -1;
        }
    }
}

static int mp_map_ram(struct mpq_dev *d, const struct mpq_ram *ram, size_t n, char **err)
{
    struct mpqemu_msg m;

    if (n == 0 || n > MPQEMU_MAX_FDS) {
        error_setf(err, "SYNC_SYSMEM takes 1 to %d regions, not %zu", MPQEMU_MAX_FDS, n);
        return -1;
    }
    mpqemu_msg_init(&m, MPQEMU_CMD_SYNC_SYSMEM, sizeof(m.data.sysmem));
    for (size_t i = 0; i < n; i++) {
        if (ram[i].fd < 0) {
            error_setf(err, "SYNC_SYSMEM shares memory only as fds");
            return -1;
        }
        m.data.sysmem.gpas[i] = ram[i].gpa;
        m.data.sysmem.sizes[i] = ram[i].size;
        m.data.sysmem.offsets[i] = (int64_t)ram[i].fd_offset;
        m.fds[i] = ram[i].fd;
    }
    m.nfds = n;
    return send_msg(d, &m, err);
}

static int config_call(struct mpq_dev *d, enum mpqemu_cmd cmd, uint32_t off, uint32_t len,
                       uint32_t val, uint64_t *ret, char **err)
{
    struct mpqemu_msg m;

    mpqemu_msg_init(&m, cmd, sizeof(m.data.conf));
    m.data.conf = (struct mpqemu_pci_conf){ .addr = off, .val = val, .len = (int32_t)len };
    if (call(d, &m, ret, err) < 0) {
        return -1;
    }
    if (*ret == MPQEMU_RET_ERROR) {
        error_setf(err, "config %s of %u bytes at 0x%x refused by the remote",
                   cmd == MPQEMU_CMD_PCI_CFGREAD ? "read" : "write", len, off);
        return -1;
    }
    return 0;
}

static int mp_cfg_read(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t *val,
                       char **err)
{
    uint64_t ret;

    if (config_call(d, MPQEMU_CMD_PCI_CFGREAD, off, len, 0, &ret, err) < 0) {
        return -1;
    }
    *val = (uint32_t)ret;
    return 0;
}

static int mp_cfg_write(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t val,
                        char **err)
{
    uint64_t ret;

    return config_call(d, MPQEMU_CMD_PCI_CFGWRITE, off, len, val, &ret, err);
}

static void bar_msg(struct mpq_dev *d, struct mpqemu_msg *m, enum mpqemu_cmd cmd, int bar,
                    uint64_t off, unsigned size, uint64_t val)
{
    const struct mpq_bar_info *b = &d->info.bars[bar];

    mpqemu_msg_init(m, cmd, sizeof(m->data.bar));
    /* The protocol carries the absolute bus address the BAR was given. */
    m->data.bar = (struct mpqemu_bar_access){
        .addr = b->addr + off, .val = val, .size = size, .memory = !b->io,
    };
}

static int mp_bar_read(struct mpq_dev *d, int bar, uint64_t off, unsigned size,
                       uint64_t *val, char **err)
{
    struct mpqemu_msg m;

    bar_msg(d, &m, MPQEMU_CMD_BAR_READ, bar, off, size, 0);
    return call(d, &m, val, err);
}

static int mp_bar_write(struct mpq_dev *d, int bar, uint64_t off, unsigned size,
                        uint64_t val, char **err)
{
    struct mpqemu_msg m;
    uint64_t ret;

    bar_msg(d, &m, MPQEMU_CMD_BAR_WRITE, bar, off, size, val);
    return call(d, &m, &ret, err);
}

static int mp_intx_enable(struct mpq_dev *d, int irqfd, int resamplefd, char **err)
{
    struct mpqemu_msg m;

    mpqemu_msg_init(&m, MPQEMU_CMD_SET_IRQFD, 0);
    m.fds[0] = irqfd;
    m.fds[1] = resamplefd;
    m.nfds = 2;
    return send_msg(d, &m, err);
}

static int mp_reset(struct mpq_dev *d, char **err)
{
    struct mpqemu_msg m;
    uint64_t ret;

    mpqemu_msg_init(&m, MPQEMU_CMD_DEVICE_RESET, 0);
    return call(d, &m, &ret, err);
}

static void mp_close(struct mpq_dev *d)
{
    close(d->sock);
}

static const struct mpq_transport mpqemu_transport = {
    .name = "mpqemu",
    .map_ram = mp_map_ram,
    .cfg_read = mp_cfg_read,
    .cfg_write = mp_cfg_write,
    .bar_read = mp_bar_read,
    .bar_write = mp_bar_write,
    .intx_enable = mp_intx_enable,
    .reset = mp_reset,
    .close = mp_close,
};

struct mpq_dev *mpq_open_mpqemu(int sock, char **err)
{
    struct mpq_dev *d;

    if (!fd_is_socket(sock)) {
        error_setf(err, "fd %d is not a socket", sock);
        return NULL;
    }
    d = mpq_dev_new(&mpqemu_transport, sock);
    if (!d) {
        error_setf(err, "out of memory");
    }
    return d;
}
