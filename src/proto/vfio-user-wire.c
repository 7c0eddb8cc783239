// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/vfio-user-wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util/error.h"

const char *vfio_user_cmd_name(unsigned cmd)
{
    static const char *const names[] = {
        [VFIO_USER_VERSION] = "VERSION",
        [VFIO_USER_DMA_MAP] = "DMA_MAP",
        [VFIO_USER_DMA_UNMAP] = "DMA_UNMAP",
        [VFIO_USER_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
        [VFIO_USER_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
        [VFIO_USER_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
        [VFIO_USER_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
        [VFIO_USER_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
        [VFIO_USER_REGION_READ] = "REGION_READ",
        [VFIO_USER_REGION_WRITE] = "REGION_WRITE",
        [VFIO_USER_DMA_READ] = "DMA_READ",
        [VFIO_USER_DMA_WRITE] = "DMA_WRITE",
        [VFIO_USER_DEVICE_RESET] = "DEVICE_RESET",
    };

    return cmd < sizeof(names) / sizeof(names[0]) && names[cmd] ? names[cmd] : "unknown";
}

void vfio_user_reader_init(struct vfio_user_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->bag = (struct fd_bag){ .fds = r->fd_store, .cap = VFIO_USER_MAX_FDS };
}

void vfio_user_reader_init_read_ahead(struct vfio_user_reader *r)
{
    vfio_user_reader_init(r);
    r->read_ahead = true;
    r->ahead = (struct sock_ahead){ .buf = r->ahead_buf, .cap = sizeof(r->ahead_buf) };
}

void vfio_user_reader_free(struct vfio_user_reader *r)
{
    fd_bag_close(&r->bag);
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    r->have = 0;
    r->ahead.start = r->ahead.end = 0;
}

static int check_header(const struct vfio_user_hdr *h, char **err)
{
    unsigned type = h->flags & VFIO_USER_F_TYPE_MASK;

    if (h->size < VFIO_USER_HDR_SIZE || h->size - VFIO_USER_HDR_SIZE > VFIO_USER_MAX_BODY) {
        error_setf(err, "message %u (%s): size %" PRIu32 " out of range", h->id,
                   vfio_user_cmd_name(h->cmd), h->size);
        return -1;
    }
    if (type != VFIO_USER_F_COMMAND && type != VFIO_USER_F_REPLY) {
        error_setf(err, "message %u: unknown type %u", h->id, type);
        return -1;
    }
    return 0;
}

/* Makes room for the body once the header is in. */
static int reserve_body(struct vfio_user_reader *r, char **err)
{
    size_t need = r->hdr.size - VFIO_USER_HDR_SIZE;

    if (need > r->cap) {
        uint8_t *grown = realloc(r->buf, need);

        if (!grown) {
            error_setf(err, "out of memory for a %zu-byte message", need);
            return -1;
        }
        r->buf = grown;
        r->cap = need;
    }
    return 0;
}

static enum vfio_user_read_result read_exact(struct vfio_user_reader *r, int sock,
                                             struct vfio_user_msg *out, char **err)
{
    for (;;) {
        size_t want = r->have < VFIO_USER_HDR_SIZE ? VFIO_USER_HDR_SIZE : r->hdr.size;
        uint8_t *dst;
        ssize_t n;

        if (r->have == want) {
            break;
        }
        dst = r->have < VFIO_USER_HDR_SIZE ? (uint8_t *)&r->hdr + r->have
                                           : r->buf + (r->have - VFIO_USER_HDR_SIZE);
        n = sock_recv(sock, dst, want - r->have, &r->bag, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return VFIO_USER_READ_AGAIN;
            }
            error_setf(err, "receive failed: %s", strerror(errno));
            goto fail;
        }
        if (r->bag.dropped) {
            error_setf(err, "message carries more than %d fds", VFIO_USER_MAX_FDS);
            goto fail;
        }
        if (n == 0) {
            if (r->have == 0 && r->bag.n == 0) {
                return VFIO_USER_READ_EOF;
            }
            error_setf(err, "peer closed the connection in the middle of a message "
                       "(%zu of %zu bytes received)", r->have, want);
            goto fail;
        }
        r->have += (size_t)n;
        if (r->have == VFIO_USER_HDR_SIZE &&
            (check_header(&r->hdr, err) < 0 || reserve_body(r, err) < 0)) {
            goto fail;
        }
    }
    out->hdr = r->hdr;
    out->body = r->buf;
    out->body_len = r->hdr.size - VFIO_USER_HDR_SIZE;
    out->nfds = fd_bag_hand_over(&r->bag, out->fds);
    r->have = 0;
    return VFIO_USER_READ_MSG;
fail:
    fd_bag_close(&r->bag);
    r->have = 0;
    return VFIO_USER_READ_ERROR;
}

bool vfio_user_reader_buffered(const struct vfio_user_reader *r)
{
    struct vfio_user_hdr h;

    if (!r->read_ahead || r->have || !sock_ahead_peek(&r->ahead, &h, VFIO_USER_HDR_SIZE)) {
        return false;
    }
    return h.size <= sock_ahead_len(&r->ahead) || check_header(&h, NULL) < 0;
}

/* The body of the first len bytes read ahead (header and what follows) into the buffer. */
static void body_from_ahead(struct vfio_user_reader *r, size_t len)
{
    if (len > VFIO_USER_HDR_SIZE) {
        memcpy(r->buf, r->ahead.buf + r->ahead.start + VFIO_USER_HDR_SIZE,
               len - VFIO_USER_HDR_SIZE);
    }
}

static enum vfio_user_read_result read_ahead(struct vfio_user_reader *r, int sock,
                                             struct vfio_user_msg *out, char **err)
{
    size_t want, avail;

    for (;;) {
        enum msg_read got;

        avail = sock_ahead_len(&r->ahead);
        want = VFIO_USER_HDR_SIZE;
        if (sock_ahead_peek(&r->ahead, &r->hdr, VFIO_USER_HDR_SIZE)) {
            if (check_header(&r->hdr, err) < 0) {
                goto fail;
            }
            want = r->hdr.size;
            if (avail >= want) {
                break;
            }
            if (want > r->ahead.cap) {
                /* Too big to read ahead: what came moves out, the rest is read exactly. */
                if (reserve_body(r, err) < 0) {
                    goto fail;
                }
                body_from_ahead(r, avail);
                r->have = avail;
                r->ahead.start = r->ahead.end = 0;
                return read_exact(r, sock, out, err);
            }
        }
        got = sock_ahead_fill(&r->ahead, sock, &r->bag, want, err);
        if (got == MSG_READ_ERROR) {
            goto fail;
        }
        if (got != MSG_READ_WHOLE) {
            return (enum vfio_user_read_result)got;
        }
    }
    if (reserve_body(r, err) < 0) {
        goto fail;
    }
    body_from_ahead(r, want);
    out->hdr = r->hdr;
    out->body = r->buf;
    out->body_len = want - VFIO_USER_HDR_SIZE;
    out->nfds = 0;
    if (sock_ahead_take(&r->ahead, want, &r->bag)) {
        out->nfds = fd_bag_hand_over(&r->bag, out->fds);
    }
    return VFIO_USER_READ_MSG;
fail:
    fd_bag_close(&r->bag);
    r->have = 0;
    r->ahead.start = r->ahead.end = 0;
    return VFIO_USER_READ_ERROR;
}

enum vfio_user_read_result vfio_user_reader_read(struct vfio_user_reader *r, int sock,
                                                 struct vfio_user_msg *out, char **err)
{
    if (r->read_ahead && !r->have) {
        return read_ahead(r, sock, out, err);
    }
    return read_exact(r, sock, out, err);
}

static int bad(char **err, const struct vfio_user_msg *m, const char *what)
{
    error_setf(err, "%s (message %u): %s", vfio_user_cmd_name(m->hdr.cmd), m->hdr.id, what);
    return EINVAL;
}

static int check_set_irqs(const struct vfio_user_msg *m, char **err)
{
    struct vfio_user_irq_set s;
    uint32_t data = 0, fds = 0;

    if (m->body_len < sizeof(s)) {
        return bad(err, m, "body shorter than its fixed part");
    }
    memcpy(&s, m->body, sizeof(s));
    switch (s.flags & VFIO_IRQ_SET_DATA_MASK) {
    case VFIO_IRQ_SET_DATA_NONE:
        break;
    case VFIO_IRQ_SET_DATA_BOOL:
        data = s.count;
        break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
        fds = s.count;
        break;
    default:
        return bad(err, m, "not exactly one data type");
    }
    if (s.count > VFIO_USER_MAX_FDS && (s.flags & VFIO_IRQ_SET_DATA_EVENTFD)) {
        return bad(err, m, "more eventfds than a message carries");
    }
    if (m->body_len != sizeof(s) + data) {
        return bad(err, m, "body size does not match count");
    }
    /* Eventfds with no fds attached: those vectors lose their eventfd. */
    if (m->nfds != fds && m->nfds != 0) {
        return bad(err, m, "fd count does not match count");
    }
    return 0;
}

static int check_region_write(const struct vfio_user_msg *m, char **err)
{
    struct vfio_user_region_access a;

    if (m->body_len < sizeof(a)) {
        return bad(err, m, "body shorter than its fixed part");
    }
    memcpy(&a, m->body, sizeof(a));
    if (a.count > VFIO_USER_MAX_DATA || m->body_len != sizeof(a) + a.count) {
        return bad(err, m, "count does not match the data sent");
    }
    return 0;
}

int vfio_user_check_request(const struct vfio_user_msg *m, char **err)
{
    size_t len = m->body_len, max_fds = 0;

    switch (m->hdr.cmd) {
    case VFIO_USER_VERSION:
        if (len < sizeof(struct vfio_user_version)) {
            return bad(err, m, "body too short");
        }
        break;
    case VFIO_USER_DMA_MAP:
        if (len != sizeof(struct vfio_user_dma_map)) {
            return bad(err, m, "body is not 32 bytes");
        }
        max_fds = 1;
        break;
    case VFIO_USER_DMA_UNMAP:
        if (len != sizeof(struct vfio_user_dma_unmap)) {
            return bad(err, m, "body is not 24 bytes");
        }
        break;
    case VFIO_USER_DEVICE_GET_INFO:
    case VFIO_USER_DEVICE_GET_IRQ_INFO:
        if (len != 16) {
            return bad(err, m, "body is not 16 bytes");
        }
        break;
    case VFIO_USER_DEVICE_GET_REGION_INFO:
        /* argsz may offer room for capabilities; we have none to add. */
        if (len < sizeof(struct vfio_user_region_info) || len > 4096) {
            return bad(err, m, "body is not 32 to 4096 bytes");
        }
        break;
    case VFIO_USER_DEVICE_SET_IRQS:
        return check_set_irqs(m, err);
    case VFIO_USER_REGION_READ:
        if (len != sizeof(struct vfio_user_region_access)) {
            return bad(err, m, "body is not 16 bytes");
        }
        break;
    case VFIO_USER_REGION_WRITE:
        if (m->nfds) {
            return bad(err, m, "carries fds");
        }
        return check_region_write(m, err);
    case VFIO_USER_DEVICE_RESET:
        if (len) {
            return bad(err, m, "has a body");
        }
        break;
    default:
        error_setf(err, "command %u (%s) is not supported", m->hdr.cmd,
                   vfio_user_cmd_name(m->hdr.cmd));
        return ENOTSUP;
    }
    if (m->nfds > max_fds) {
        return bad(err, m, "carries fds it has no use for");
    }
    return 0;
}
