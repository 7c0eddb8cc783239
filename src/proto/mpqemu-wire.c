// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/mpqemu-wire.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>

#include "util/error.h"

/* The layout must match QEMU's MPQemuMsg byte for byte. */
_Static_assert(sizeof(struct mpqemu_hdr) == 16, "header");
_Static_assert(sizeof(struct mpqemu_pci_conf) == 12, "PciConfDataMsg");
_Static_assert(sizeof(struct mpqemu_bar_access) == 24, "BarAccessMsg");
_Static_assert(offsetof(struct mpqemu_bar_access, memory) == 20, "BarAccessMsg.memory");
_Static_assert(sizeof(struct mpqemu_sync_sysmem) == 192, "SyncSysmemMsg");
_Static_assert(MPQEMU_MAX_PAYLOAD == 192, "payload union");
_Static_assert(offsetof(struct mpqemu_msg, data) == MPQEMU_HDR_SIZE, "payload offset");

struct cmd_shape {
    const char *name;
    size_t size;        /* exact payload size */
    size_t min_fds, max_fds;
};

static const struct cmd_shape request_shape[MPQEMU_CMD_MAX] = {
    [MPQEMU_CMD_SYNC_SYSMEM] = { "SYNC_SYSMEM", sizeof(struct mpqemu_sync_sysmem), 1, MPQEMU_MAX_FDS },
    [MPQEMU_CMD_RET] = { "RET", 0, 0, 0 },
    [MPQEMU_CMD_PCI_CFGWRITE] = { "PCI_CFGWRITE", sizeof(struct mpqemu_pci_conf), 0, 0 },
    [MPQEMU_CMD_PCI_CFGREAD] = { "PCI_CFGREAD", sizeof(struct mpqemu_pci_conf), 0, 0 },
    [MPQEMU_CMD_BAR_WRITE] = { "BAR_WRITE", sizeof(struct mpqemu_bar_access), 0, 0 },
    [MPQEMU_CMD_BAR_READ] = { "BAR_READ", sizeof(struct mpqemu_bar_access), 0, 0 },
    [MPQEMU_CMD_SET_IRQFD] = { "SET_IRQFD", 0, 2, 2 },
    [MPQEMU_CMD_DEVICE_RESET] = { "DEVICE_RESET", 0, 0, 0 },
};

const char *mpqemu_cmd_name(int32_t cmd)
{
    if (cmd < 0 || cmd >= MPQEMU_CMD_MAX) {
        return "unknown";
    }
    return request_shape[cmd].name;
}

int mpqemu_check_header(const struct mpqemu_hdr *h, char **err)
{
    if (h->cmd < 0 || h->cmd >= MPQEMU_CMD_MAX) {
        error_setf(err, "unknown command %" PRId32, h->cmd);
        return -1;
    }
    if (h->size > MPQEMU_MAX_PAYLOAD) {
        error_setf(err, "%s: payload size %" PRIu64 " exceeds the maximum of %d",
                   mpqemu_cmd_name(h->cmd), h->size, MPQEMU_MAX_PAYLOAD);
        return -1;
    }
    return 0;
}

static int check_fds(const struct mpqemu_msg *m, size_t min, size_t max, char **err)
{
    if (m->nfds >= min && m->nfds <= max) {
        return 0;
    }
    if (min == max) {
        error_setf(err, "%s: carries %zu fds, expected %zu",
                   mpqemu_cmd_name(m->hdr.cmd), m->nfds, min);
    } else {
        error_setf(err, "%s: carries %zu fds, expected %zu to %zu",
                   mpqemu_cmd_name(m->hdr.cmd), m->nfds, min, max);
    }
    return -1;
}

int mpqemu_check_request(const struct mpqemu_msg *m, char **err)
{
    const struct cmd_shape *shape;

    if (mpqemu_check_header(&m->hdr, err) < 0) {
        return -1;
    }
    if (m->hdr.cmd == MPQEMU_CMD_RET) {
        error_setf(err, "RET is a reply, not a request");
        return -1;
    }
    shape = &request_shape[m->hdr.cmd];
    if (m->hdr.size != shape->size) {
        error_setf(err, "%s: payload size %" PRIu64 ", expected %zu",
                   shape->name, m->hdr.size, shape->size);
        return -1;
    }
    return check_fds(m, shape->min_fds, shape->max_fds, err);
}

int mpqemu_check_reply(const struct mpqemu_msg *m, char **err)
{
    if (mpqemu_check_header(&m->hdr, err) < 0) {
        return -1;
    }
    if (m->hdr.cmd != MPQEMU_CMD_RET) {
        error_setf(err, "expected a RET reply, got %s", mpqemu_cmd_name(m->hdr.cmd));
        return -1;
    }
    /* QEMU's remote answers DEVICE_RESET with an empty RET. */
    if (m->hdr.size != 0 && m->hdr.size != sizeof(uint64_t)) {
        error_setf(err, "RET: payload size %" PRIu64 ", expected 0 or 8", m->hdr.size);
        return -1;
    }
    return check_fds(m, 0, 0, err);
}

void mpqemu_msg_init(struct mpqemu_msg *m, enum mpqemu_cmd cmd, size_t size)
{
    memset(m, 0, sizeof(*m));
    m->hdr.cmd = cmd;
    m->hdr.size = size;
}

void mpqemu_reader_init(struct mpqemu_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->bag = (struct fd_bag){ .fds = r->fd_store, .cap = MPQEMU_MAX_FDS };
}

void mpqemu_reader_init_read_ahead(struct mpqemu_reader *r)
{
    mpqemu_reader_init(r);
    r->read_ahead = true;
    r->ahead = (struct sock_ahead){ .buf = r->ahead_buf, .cap = sizeof(r->ahead_buf) };
}

void mpqemu_reader_reset(struct mpqemu_reader *r)
{
    fd_bag_close(&r->bag);
    r->have = 0;
    r->ahead.start = r->ahead.end = 0;
}

bool mpqemu_reader_buffered(const struct mpqemu_reader *r)
{
    struct mpqemu_hdr h;

    if (!r->read_ahead || !sock_ahead_peek(&r->ahead, &h, MPQEMU_HDR_SIZE)) {
        return false;
    }
    /* A bad header fails the next read at once: no byte more is needed. */
    return mpqemu_check_header(&h, NULL) < 0 ||
           sock_ahead_len(&r->ahead) >= MPQEMU_HDR_SIZE + h.size;
}

static enum mpqemu_read_result read_ahead(struct mpqemu_reader *r, int sock,
                                          struct mpqemu_msg *out, char **err)
{
    size_t want;

    for (;;) {
        struct mpqemu_hdr h;
        enum msg_read got;

        want = MPQEMU_HDR_SIZE;
        if (sock_ahead_peek(&r->ahead, &h, MPQEMU_HDR_SIZE)) {
            if (mpqemu_check_header(&h, err) < 0) {
                goto fail;
            }
            want += (size_t)h.size;
            if (sock_ahead_len(&r->ahead) >= want) {
                break;
            }
        }
        got = sock_ahead_fill(&r->ahead, sock, &r->bag, want, err);
        if (got == MSG_READ_ERROR) {
            goto fail;
        }
        if (got != MSG_READ_WHOLE) {
            return (enum mpqemu_read_result)got;
        }
    }
    memcpy(out, r->ahead.buf + r->ahead.start, want);  /* header, then payload: the msg's layout */
    out->nfds = 0;
    if (sock_ahead_take(&r->ahead, want, &r->bag)) {
        out->nfds = fd_bag_hand_over(&r->bag, out->fds);
    }
    return MPQEMU_READ_MSG;
fail:
    mpqemu_reader_reset(r);
    return MPQEMU_READ_ERROR;
}

static size_t wanted(const struct mpqemu_reader *r)
{
    if (r->have < MPQEMU_HDR_SIZE) {
        return MPQEMU_HDR_SIZE;
    }
    return MPQEMU_HDR_SIZE + (size_t)r->msg.hdr.size;
}

enum mpqemu_read_result mpqemu_reader_read(struct mpqemu_reader *r, int sock,
                                           struct mpqemu_msg *out, char **err)
{
    uint8_t *base = (uint8_t *)&r->msg;

    if (r->read_ahead) {
        return read_ahead(r, sock, out, err);
    }
    for (;;) {
        size_t want = wanted(r);
        ssize_t n;

        if (r->have == want) {
            break;
        }
        n = sock_recv(sock, base + r->have, want - r->have, &r->bag, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return MPQEMU_READ_AGAIN;
            }
            error_setf(err, "receive failed: %s", strerror(errno));
            goto fail;
        }
        if (r->bag.dropped) {
            error_setf(err, "message carries more than %d fds", MPQEMU_MAX_FDS);
            goto fail;
        }
        if (n == 0) {
            if (r->have == 0 && r->bag.n == 0) {
                return MPQEMU_READ_EOF;
            }
            error_setf(err, "peer closed the connection in the middle of a message "
                       "(%zu of %zu bytes received)", r->have, want);
            goto fail;
        }
        r->have += (size_t)n;
        if (r->have == MPQEMU_HDR_SIZE && mpqemu_check_header(&r->msg.hdr, err) < 0) {
            goto fail;
        }
    }
    *out = r->msg;
    out->nfds = fd_bag_hand_over(&r->bag, out->fds);
    r->have = 0;
    return MPQEMU_READ_MSG;
fail:
    mpqemu_reader_reset(r);
    return MPQEMU_READ_ERROR;
}

int mpqemu_send(int sock, const struct mpqemu_msg *m)
{
    struct iovec iov[2] = {
        { .iov_base = (void *)&m->hdr, .iov_len = MPQEMU_HDR_SIZE },
        { .iov_base = (void *)&m->data, .iov_len = (size_t)m->hdr.size },
    };

    if (m->hdr.size > MPQEMU_MAX_PAYLOAD || m->nfds > MPQEMU_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    return sock_send_all(sock, iov, 2, m->fds, m->nfds);
}
