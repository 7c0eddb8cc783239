// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The client library over vfio-user, as QEMU's vfio-user-pci: region
 * accesses by index and offset, guest memory by DMA_MAP, INTx by an
 * automasked trigger eventfd and an unmask eventfd.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client-internal.h"
#include "io/sock-io.h"
#include "proto/vfio-user-wire.h"
#include "util/error.h"

enum { MAX_RAM = 64 };

struct vu_client {
    struct vfio_user_reader reader;
    uint16_t next_id;
    uint64_t max_data;          /* the server's max_data_xfer_size */
    struct mpq_ram ram[MAX_RAM];    /* what we mapped: DMA_READ/WRITE are served from it */
    size_t n_ram;
    bool post_writes;
};

static struct vu_client *vu(struct mpq_dev *d)
{
    return d->proto;
}

static int send_request(struct mpq_dev *d, struct vfio_user_hdr *hdr, const void *body,
                        size_t len, const void *data, size_t data_len, const int *fds,
                        size_t nfds, char **err)
{
    struct iovec iov[3] = {
        { hdr, sizeof(*hdr) }, { (void *)body, len }, { (void *)data, data_len },
    };

    hdr->id = vu(d)->next_id++;
    hdr->size = (uint32_t)(sizeof(*hdr) + len + data_len);
    if (sock_send_all(d->sock, iov, 3, fds, nfds) < 0) {
        error_setf(err, "%s: send failed: %s", vfio_user_cmd_name(hdr->cmd), strerror(errno));
        return -1;
    }
    return 0;
}

static void send_reply(struct mpq_dev *d, const struct vfio_user_hdr *req, int error,
                       const void *body, size_t len, const void *data, size_t data_len)
{
    struct vfio_user_hdr hdr = {
        .id = req->id, .cmd = req->cmd,
        .flags = VFIO_USER_F_REPLY | (error ? VFIO_USER_F_ERROR : 0), .error = (uint32_t)error,
        .size = (uint32_t)(sizeof(hdr) + len + data_len),
    };
    struct iovec iov[3] = {
        { &hdr, sizeof(hdr) }, { (void *)body, len }, { (void *)data, data_len },
    };

    sock_send_all(d->sock, iov, 3, NULL, 0);
}

/* Host memory for [gpa, gpa + len) when one of our regions holds it all. */
static uint8_t *ram_ptr(struct vu_client *c, uint64_t gpa, uint64_t len)
{
    for (size_t i = 0; i < c->n_ram; i++) {
        const struct mpq_ram *r = &c->ram[i];

        if (gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len) {
            return r->host + (gpa - r->gpa);
        }
    }
    return NULL;
}

/* A DMA_READ or DMA_WRITE from the device: copy, as the VMM would. */
static void serve_dma(struct mpq_dev *d, const struct vfio_user_msg *m)
{
    struct vfio_user_dma_access a;
    uint8_t *p;

    if (m->body_len < sizeof(a)) {
        send_reply(d, &m->hdr, EINVAL, NULL, 0, NULL, 0);
        return;
    }
    memcpy(&a, m->body, sizeof(a));
    p = a.count <= vu(d)->max_data ? ram_ptr(vu(d), a.addr, a.count) : NULL;
    if (!p) {
        send_reply(d, &m->hdr, EFAULT, NULL, 0, NULL, 0);
        return;
    }
    if (m->hdr.cmd == VFIO_USER_DMA_READ) {
        send_reply(d, &m->hdr, 0, &a, sizeof(a), p, (size_t)a.count);
        return;
    }
    if (m->body_len != sizeof(a) + a.count) {
        send_reply(d, &m->hdr, EINVAL, NULL, 0, NULL, 0);
        return;
    }
    memcpy(p, m->body + sizeof(a), (size_t)a.count);
    send_reply(d, &m->hdr, 0, &a, sizeof(a), NULL, 0);
}

static int serve_request(struct mpq_dev *d, const struct vfio_user_msg *m, char **err)
{
    if (m->nfds) {
        error_setf(err, "the server sent fds with %s", vfio_user_cmd_name(m->hdr.cmd));
        return -1;
    }
    if (m->hdr.cmd == VFIO_USER_DMA_READ || m->hdr.cmd == VFIO_USER_DMA_WRITE) {
        serve_dma(d, m);
    } else {
        send_reply(d, &m->hdr, ENOTSUP, NULL, 0, NULL, 0);
    }
    return 0;
}

/*
 * Waits for the reply to request 'id', serving the device's own requests
 * meanwhile.  The reply's body stays in the reader until the next read.
 */
static int await(struct mpq_dev *d, uint16_t id, unsigned cmd, struct vfio_user_msg *reply,
                 char **err)
{
    double start = mpq_now_us();

    for (;;) {
        switch (vfio_user_reader_read(&vu(d)->reader, d->sock, reply, err)) {
        case VFIO_USER_READ_MSG:
            break;
        case VFIO_USER_READ_AGAIN:
            if (mpq_await_reply(d, start, err) < 0) {
                error_prefix(err, "%s", vfio_user_cmd_name(cmd));
                return -1;
            }
            continue;
        case VFIO_USER_READ_EOF:
            error_setf(err, "%s: the server closed the connection", vfio_user_cmd_name(cmd));
            return -1;
        case VFIO_USER_READ_ERROR:
            error_prefix(err, "%s: bad reply", vfio_user_cmd_name(cmd));
            return -1;
        }
        if ((reply->hdr.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_COMMAND) {
            int rc = serve_request(d, reply, err);

            close_fds(reply->fds, reply->nfds);
            if (rc < 0) {
                return -1;
            }
            continue;
        }
        close_fds(reply->fds, reply->nfds);
        if (reply->hdr.id != id || reply->hdr.cmd != cmd) {
            error_setf(err, "%s: reply %u (%s) does not match request %u",
                       vfio_user_cmd_name(cmd), reply->hdr.id,
                       vfio_user_cmd_name(reply->hdr.cmd), id);
            return -1;
        }
        if (reply->hdr.flags & VFIO_USER_F_ERROR) {
            error_setf(err, "%s refused by the server: %s", vfio_user_cmd_name(cmd),
                       strerror((int)reply->hdr.error));
            return -1;
        }
        return 0;
    }
}

/* Sends a request and waits for its reply; the reply body must be 'want' bytes or more. */
static int call(struct mpq_dev *d, unsigned cmd, const void *body, size_t len,
                const void *data, size_t data_len, const int *fds, size_t nfds,
                struct vfio_user_msg *reply, size_t want, char **err)
{
    struct vfio_user_hdr hdr = { .cmd = (uint16_t)cmd, .flags = VFIO_USER_F_COMMAND };

    if (send_request(d, &hdr, body, len, data, data_len, fds, nfds, err) < 0 ||
        await(d, hdr.id, cmd, reply, err) < 0) {
        return -1;
    }
    if (reply->body_len < want) {
        error_setf(err, "%s: reply of %zu bytes, expected %zu", vfio_user_cmd_name(cmd),
                   reply->body_len, want);
        return -1;
    }
    return 0;
}

static int vu_serve_requests(struct mpq_dev *d, char **err)
{
    struct vfio_user_msg m;

    for (;;) {
        switch (vfio_user_reader_read(&vu(d)->reader, d->sock, &m, err)) {
        case VFIO_USER_READ_AGAIN:
            return 0;
        case VFIO_USER_READ_EOF:
            error_setf(err, "the server closed the connection");
            return -1;
        case VFIO_USER_READ_ERROR:
            return -1;
        case VFIO_USER_READ_MSG:
            break;
        }
        close_fds(m.fds, m.nfds);
        if ((m.hdr.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_COMMAND) {
            error_setf(err, "reply %u to no request", m.hdr.id);
            return -1;
        }
        if (serve_request(d, &m, err) < 0) {
            return -1;
        }
    }
}

static int vu_map_ram(struct mpq_dev *d, const struct mpq_ram *ram, size_t n, char **err)
{
    struct vu_client *c = vu(d);

    if (c->n_ram + n > MAX_RAM) {
        error_setf(err, "at most %d memory regions", MAX_RAM);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct vfio_user_dma_map map = {
            .argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            .offset = ram[i].fd >= 0 ? ram[i].fd_offset : 0,
            .addr = ram[i].gpa, .size = ram[i].size,
        };
        struct vfio_user_msg reply;

        /* fd -1: the device reaches this memory only through DMA_READ/DMA_WRITE. */
        if (call(d, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, &ram[i].fd,
                 ram[i].fd >= 0 ? 1 : 0, &reply, 0, err) < 0) {
            return -1;
        }
        c->ram[c->n_ram++] = ram[i];
    }
    return 0;
}

static int region_read(struct mpq_dev *d, uint32_t region, uint64_t off, uint32_t count,
                       void *out, char **err)
{
    struct vfio_user_region_access a = { .offset = off, .region = region, .count = count };
    struct vfio_user_msg reply;

    if (call(d, VFIO_USER_REGION_READ, &a, sizeof(a), NULL, 0, NULL, 0, &reply,
             sizeof(a) + count, err) < 0) {
        return -1;
    }
    memcpy(out, reply.body + sizeof(a), count);
    return 0;
}

static int region_write(struct mpq_dev *d, uint32_t region, uint64_t off, uint32_t count,
                        const void *data, bool post, char **err)
{
    struct vfio_user_region_access a = { .offset = off, .region = region, .count = count };
    struct vfio_user_hdr hdr = { .cmd = VFIO_USER_REGION_WRITE, .flags = VFIO_USER_F_COMMAND };
    struct vfio_user_msg reply;

    if (!post) {
        return call(d, VFIO_USER_REGION_WRITE, &a, sizeof(a), data, count, NULL, 0, &reply, 0,
                    err);
    }
    /* Posted, as QEMU posts BAR writes: a later read cannot pass it. */
    hdr.flags |= VFIO_USER_F_NO_REPLY;
    return send_request(d, &hdr, &a, sizeof(a), data, count, NULL, 0, err);
}

static int vu_cfg_read(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t *val,
                       char **err)
{
    *val = 0;
    return region_read(d, VFIO_PCI_CONFIG_REGION, off, len, val, err);
}

static int vu_cfg_write(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t val,
                        char **err)
{
    return region_write(d, VFIO_PCI_CONFIG_REGION, off, len, &val, false, err);
}

static int vu_bar_read(struct mpq_dev *d, int bar, uint64_t off, unsigned size,
                       uint64_t *val, char **err)
{
    *val = 0;
    return region_read(d, (uint32_t)bar, off, size, val, err);
}

static int vu_bar_write(struct mpq_dev *d, int bar, uint64_t off, unsigned size,
                        uint64_t val, char **err)
{
    return region_write(d, (uint32_t)bar, off, size, &val, vu(d)->post_writes, err);
}

static int set_irq_eventfd(struct mpq_dev *d, uint32_t action, int fd, char **err)
{
    struct vfio_user_irq_set set = {
        .argsz = sizeof(set), .flags = VFIO_IRQ_SET_DATA_EVENTFD | action,
        .index = VFIO_PCI_INTX_IRQ, .start = 0, .count = 1,
    };
    struct vfio_user_msg reply;

    return call(d, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0, &fd, 1, &reply, 0,
                err);
}

/*
 * The trigger eventfd only: EOIs unmask by message, as QEMU does without
 * KVM, so an unmask cannot overtake a posted write that lowered the line.
 */
static int vu_intx_enable(struct mpq_dev *d, int irqfd, int resamplefd, char **err)
{
    (void)resamplefd;
    return set_irq_eventfd(d, VFIO_IRQ_SET_ACTION_TRIGGER, irqfd, err);
}

static int vu_intx_eoi(struct mpq_dev *d)
{
    struct vfio_user_irq_set set = {
        .argsz = sizeof(set), .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        .index = VFIO_PCI_INTX_IRQ, .start = 0, .count = 1,
    };
    struct vfio_user_msg reply;

    return call(d, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0, NULL, 0, &reply, 0,
                NULL);
}

static int vu_reset(struct mpq_dev *d, char **err)
{
    struct vfio_user_msg reply;

    return call(d, VFIO_USER_DEVICE_RESET, NULL, 0, NULL, 0, NULL, 0, &reply, 0, err);
}

static void vu_close(struct mpq_dev *d)
{
    if (d->proto) {
        vfio_user_reader_free(&vu(d)->reader);
        free(d->proto);
    }
    close(d->sock);
}

static const struct mpq_transport vfio_user_transport = {
    .name = "vfio-user",
    .map_ram = vu_map_ram,
    .cfg_read = vu_cfg_read,
    .cfg_write = vu_cfg_write,
    .bar_read = vu_bar_read,
    .bar_write = vu_bar_write,
    .intx_enable = vu_intx_enable,
    .reset = vu_reset,
    .intx_eoi = vu_intx_eoi,
    .serve_requests = vu_serve_requests,
    .close = vu_close,
};

static int parse_server_caps(struct vu_client *c, const char *json, char **err)
{
    struct json_object *root = json_tokener_parse(json), *caps, *v;
    int rc = 0;

    if (!root || !json_object_object_get_ex(root, "capabilities", &caps)) {
        error_setf(err, "VERSION: the server's capabilities are not {\"capabilities\": ...}");
        rc = -1;
    } else if (json_object_object_get_ex(caps, "max_data_xfer_size", &v) &&
               json_object_get_int64(v) > 0) {
        c->max_data = (uint64_t)json_object_get_int64(v);
        if (c->max_data > VFIO_USER_MAX_DATA) {
            c->max_data = VFIO_USER_MAX_DATA;
        }
    }
    json_object_put(root);
    return rc;
}

static int negotiate(struct mpq_dev *d, char **err)
{
    static const char caps[] = "{\"capabilities\":{\"max_msg_fds\":8,"
                               "\"max_data_xfer_size\":1048576,\"pgsizes\":4096}}";
    struct vfio_user_version v = { .major = VFIO_USER_MAJOR, .minor = VFIO_USER_MINOR };
    struct vfio_user_device_info info = { .argsz = sizeof(info) };
    struct vfio_user_msg reply;
    const char *json;

    if (call(d, VFIO_USER_VERSION, &v, sizeof(v), caps, sizeof(caps), NULL, 0, &reply,
             sizeof(v) + 1, err) < 0) {
        return -1;
    }
    memcpy(&v, reply.body, sizeof(v));
    json = (const char *)reply.body + sizeof(v);
    if (v.major != VFIO_USER_MAJOR || reply.body[reply.body_len - 1] != '\0') {
        error_setf(err, "VERSION: the server speaks %u.%u or sent bad capabilities",
                   v.major, v.minor);
        return -1;
    }
    if (parse_server_caps(vu(d), json, err) < 0) {
        return -1;
    }
    if (call(d, VFIO_USER_DEVICE_GET_INFO, &info, sizeof(info), NULL, 0, NULL, 0, &reply,
             sizeof(info), err) < 0) {
        return -1;
    }
    memcpy(&info, reply.body, sizeof(info));
    if (!(info.flags & VFIO_DEVICE_FLAGS_PCI) || info.num_regions <= VFIO_PCI_CONFIG_REGION) {
        error_setf(err, "the server's device is not a PCI device (flags 0x%x, %u regions)",
                   info.flags, info.num_regions);
        return -1;
    }
    return 0;
}

struct mpq_dev *mpq_open_vfio_user_fd(int sock, char **err)
{
    struct mpq_dev *d = mpq_dev_new(&vfio_user_transport, sock);

    if (!d || !(d->proto = calloc(1, sizeof(struct vu_client)))) {
        error_setf(err, "out of memory");
        free(d);
        close(sock);
        return NULL;
    }
    vfio_user_reader_init(&vu(d)->reader);
    vu(d)->next_id = 1;
    vu(d)->max_data = VFIO_USER_MAX_DATA;
    vu(d)->post_writes = true;
    if (negotiate(d, err) < 0) {
        mpq_close(d);
        return NULL;
    }
    return d;
}

struct mpq_dev *mpq_open_vfio_user(const char *path, char **err)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int sock;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        error_setf(err, "socket path '%s' is too long", path);
        return NULL;
    }
    strcpy(addr.sun_path, path);
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        error_setf(err, "cannot connect to '%s': %s", path, strerror(errno));
        if (sock >= 0) {
            close(sock);
        }
        return NULL;
    }
    return mpq_open_vfio_user_fd(sock, err);
}

struct mpq_dev *mpq_open_vfio_user_wait(const char *path, pid_t pid, int timeout_ms,
                                        char **err)
{
    double deadline = mpq_now_us() + timeout_ms * 1000.0;

    for (;;) {
        struct mpq_dev *d;
        char *why = NULL;

        if (access(path, F_OK) == 0 && (d = mpq_open_vfio_user(path, &why))) {
            return d;
        }
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid) {
            error_setf(err, "the server exited before listening on '%s'", path);
            free(why);
            return NULL;
        }
        if (mpq_now_us() > deadline) {
            error_setf(err, "no server on '%s' within %d ms%s%s", path, timeout_ms,
                       why ? ": " : "", why ? why : "");
            free(why);
            return NULL;
        }
        free(why);
        usleep(2000);
    }
}

void mpq_set_posted_writes(struct mpq_dev *d, bool post)
{
    if (d->t == &vfio_user_transport) {
        vu(d)->post_writes = post;
    }
}
