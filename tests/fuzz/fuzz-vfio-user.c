// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The vfio-user server (src/proto/vfio-user-server.c) fed a whole message
 * stream on its listening socket, as QEMU's vfio-user-pci would send it:
 * VERSION with any capabilities, DMA_MAP with a memfd, with fds of the
 * wrong kind or with none (memory only reachable by DMA_READ/DMA_WRITE),
 * DMA_UNMAP, the info queries, SET_IRQS with eventfds, REGION_READ/WRITE
 * on config space and the BARs, DEVICE_RESET, raw bytes, the INTx eventfds
 * made blocking and their counters filled, and the client leaving and
 * coming back.  The device behind it is the harnesses' LSI
 * controller with its disks.
 *
 * When the device touches memory mapped without an fd, the server sends
 * DMA_READ/DMA_WRITE and waits for the reply, reading the socket.  The
 * harness is single-threaded, so it answers ahead: replies it queued in
 * the stream before (for the id the server will use, or a wrong one, with
 * an error, or with the wrong amount of data) -- or none, and the server's
 * wait, shortened to a few milliseconds by its test hook, runs out.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "fuzz-vm.h"
#include "lsi-gen.h"
#include "pci/pci.h"
#include "proto-client.h"
#include "proto/vfio-user-server.h"
#include "proto/vfio-user-wire.h"
#include "util/opts.h"

enum {
    MAX_OPS = 256,
    /* The server's wait for a DMA reply that never comes, in milliseconds. */
    DMA_WAIT_MS = 2,
    MAX_BODY = 512,
};

enum op {
    OP_VERSION = PROTO_OP_COMMON, OP_DMA_MAP, OP_DMA_UNMAP, OP_INFO, OP_SET_IRQS,
    OP_REGION_READ, OP_REGION_WRITE, OP_START, OP_RESET, OP_DMA_REPLY, OP_RAW, OP_UNMASK,
    OP_RECONNECT, OP_EVENTFD, OP_COUNT
};

struct world {
    struct fuzz_vm vm;
    struct server *server;
    struct proto_client client;
    char path[FUZZ_PATH_MAX];
    uint16_t next_id;           /* ours */
    uint16_t last_dma_id;       /* the server's last DMA_READ/DMA_WRITE, this connection */
    uint16_t last_reply_id;     /* the last reply queued ahead, this connection */
    int trigger, unmask;        /* our copies of the INTx eventfds sent, or -1 */
};

/* --- the connection ----------------------------------------------------------- */

static size_t frame(const uint8_t *data, size_t len)
{
    struct vfio_user_hdr h;

    if (len < sizeof(h)) {
        return 0;
    }
    memcpy(&h, data, sizeof(h));
    if (h.size < sizeof(h)) {
        return len;
    }
    return len >= h.size ? h.size : 0;
}

/* Notes the ids of the server's DMA requests: the replies queued next answer them. */
static void received(struct proto_client *c, const uint8_t *data, size_t len)
{
    struct world *w = (struct world *)((char *)c - offsetof(struct world, client));
    struct vfio_user_hdr h;

    if (len < sizeof(h)) {
        return;
    }
    memcpy(&h, data, sizeof(h));
    if ((h.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_COMMAND &&
        (h.cmd == VFIO_USER_DMA_READ || h.cmd == VFIO_USER_DMA_WRITE)) {
        w->last_dma_id = h.id;
    }
}

static void connect_client(struct world *w, struct fuzz_input *in)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (strlen(w->path) >= sizeof(a.sun_path)) {
        fuzz_fail("socket path too long: %s", w->path);
    }
    memcpy(a.sun_path, w->path, strlen(w->path) + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fuzz_fail("connect %s: %s", w->path, strerror(errno));
    }
    proto_client_init(&w->client, &w->vm, in, fd);
    w->client.frame = frame;
    w->client.received = received;
    w->last_dma_id = w->last_reply_id = 0;
    proto_step(&w->client);     /* accepted */
}

static void send_msg(struct world *w, uint16_t cmd, uint32_t flags, const void *body,
                     size_t len, const int *fds, size_t nfds)
{
    uint8_t buf[sizeof(struct vfio_user_hdr) + MAX_BODY + 64];
    struct vfio_user_hdr h = { .id = w->next_id++, .cmd = cmd, .flags = flags,
                               .size = (uint32_t)(sizeof(h) + len) };

    memcpy(buf, &h, sizeof(h));
    if (len) {
        memcpy(buf + sizeof(h), body, len);
    }
    proto_send(&w->client, buf, sizeof(h) + len, fds, nfds);
}

/* --- messages ------------------------------------------------------------------ */

static void op_version(struct world *w, struct fuzz_input *in)
{
    static const char *const caps[] = {
        "", "{}", "{\"capabilities\":{\"max_data_xfer_size\":1048576,\"pgsizes\":4096}}",
        "{\"capabilities\":{\"max_data_xfer_size\":512}}", "{\"capabilities\":[]}",
        "{\"capabilities\":{\"pgsizes\":8192}}", "not json",
    };
    uint8_t body[8 + 128] = { 0 };
    uint8_t how = fi_u8(in);
    const char *json = caps[how % 7];
    size_t len = 4;

    body[0] = how & 0x80 ? fi_u8(in) : 0;      /* major */
    body[2] = fi_u8(in);                        /* minor */
    if (*json) {
        strcpy((char *)body + 4, json);
        len += strlen(json) + ((how & 0x40) ? 0 : 1);   /* NUL-terminated, or not */
    }
    send_msg(w, VFIO_USER_VERSION, 0, body, len, NULL, 0);
}

static void op_dma_map(struct world *w, struct fuzz_input *in)
{
    struct vfio_user_dma_map m = { .argsz = sizeof(m), .flags = 3 };
    uint8_t how = fi_u8(in);
    int fds[2];
    size_t n = 0;

    if (how & 1) {
        m.argsz = fi_u32(in);
        m.flags = fi_u32(in);
    }
    m.addr = (uint64_t)(fi_u8(in) % 8) << 18;
    m.size = LSI_RAM_BYTES >> (fi_u8(in) % 4);
    m.offset = (uint64_t)(fi_u8(in) % 4) << 16;
    if (how & 2) {
        m.addr = fi_u64(in);
        m.size = fi_u64(in);
        m.offset = fi_u64(in);
    }
    if (how & 4) {
        fds[n++] = dup(w->client.ram);
    } else if (how & 8) {
        proto_fds(&w->client, in, fds, 2, &n);
    }
    send_msg(w, VFIO_USER_DMA_MAP, 0, &m, sizeof(m), fds, n);
    proto_close_fds(fds, n);
}

static void op_dma_unmap(struct world *w, struct fuzz_input *in)
{
    struct vfio_user_dma_unmap u = { .argsz = sizeof(u) };
    uint8_t how = fi_u8(in);

    u.addr = (uint64_t)(fi_u8(in) % 8) << 18;
    u.size = LSI_RAM_BYTES >> (fi_u8(in) % 4);
    if (how & 1) {
        u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
        u.addr = u.size = 0;
    }
    if (how & 2) {
        u.argsz = fi_u32(in);
        u.flags = fi_u32(in);
        u.addr = fi_u64(in);
        u.size = fi_u64(in);
    }
    send_msg(w, VFIO_USER_DMA_UNMAP, 0, &u, sizeof(u), NULL, 0);
}

/* DEVICE_GET_INFO, GET_REGION_INFO, GET_IRQ_INFO. */
static void op_info(struct world *w, struct fuzz_input *in)
{
    uint8_t how = fi_u8(in);
    uint32_t body[8] = { 32, 0, fi_u8(in) % 10, 0 };

    switch (how % 3) {
    case 0:
        body[0] = how & 4 ? fi_u32(in) : 16;
        send_msg(w, VFIO_USER_DEVICE_GET_INFO, 0, body, 16, NULL, 0);
        break;
    case 1:
        send_msg(w, VFIO_USER_DEVICE_GET_REGION_INFO, 0, body, how & 4 ? 16 : 32, NULL, 0);
        break;
    default:
        body[0] = 16;
        send_msg(w, VFIO_USER_DEVICE_GET_IRQ_INFO, 0, body, 16, NULL, 0);
        break;
    }
}

static void keep_copy(int *copy, int fd)
{
    if (*copy >= 0) {
        close(*copy);
    }
    *copy = dup(fd);
}

static void op_set_irqs(struct world *w, struct fuzz_input *in)
{
    static const uint64_t actions[] = {
        VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_ACTION_MASK,
    };
    static const uint64_t datas[] = {
        VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_BOOL,
    };
    uint8_t body[sizeof(struct vfio_user_irq_set) + 8] = { 0 };
    struct vfio_user_irq_set s = { .argsz = sizeof(s) };
    uint8_t how = fi_u8(in);
    int fds[VFIO_USER_MAX_FDS];
    size_t n = 0, len = sizeof(s);

    s.flags = (uint32_t)FI_PICK(in, actions);
    s.flags |= (uint32_t)FI_PICK(in, datas);
    s.index = how & 0x80 ? fi_u8(in) % 6 : VFIO_PCI_INTX_IRQ;
    s.count = how & 0x40 ? fi_u8(in) % 3 : 1;
    if (how & 0x20) {
        s.start = fi_u8(in) % 2;
    }
    if (s.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
        for (; n < s.count; n++) {
            fds[n] = (how & 1) ? proto_eventfd() : dup(w->client.ram);
        }
        if (s.index == VFIO_PCI_INTX_IRQ && (s.flags & VFIO_IRQ_SET_ACTION_UNMASK) && n) {
            keep_copy(&w->unmask, fds[0]);
        }
        if (s.index == VFIO_PCI_INTX_IRQ && (s.flags & VFIO_IRQ_SET_ACTION_TRIGGER) && n) {
            keep_copy(&w->trigger, fds[0]);
        }
    } else if (s.flags & VFIO_IRQ_SET_DATA_BOOL) {
        body[sizeof(s)] = 1;
        body[sizeof(s) + 1] = fi_u8(in);
        len += s.count;
    }
    memcpy(body, &s, sizeof(s));
    send_msg(w, VFIO_USER_DEVICE_SET_IRQS, 0, body, len, fds, n);
    proto_close_fds(fds, n);
}

/* Region 0 (I/O registers), 1 (memory registers), 2 (SCRIPTS RAM), 7 (config), or any. */
static void region_access(struct world *w, bool write, uint32_t region, uint64_t offset,
                          const void *data, uint32_t count)
{
    uint8_t body[sizeof(struct vfio_user_region_access) + MAX_BODY];
    struct vfio_user_region_access a = { .offset = offset, .region = region, .count = count };
    size_t len = sizeof(a) + (write ? count : 0);

    memcpy(body, &a, sizeof(a));
    if (write) {
        memcpy(body + sizeof(a), data, count);
    }
    send_msg(w, write ? VFIO_USER_REGION_WRITE : VFIO_USER_REGION_READ, 0, body, len, NULL, 0);
}

static void op_region(struct world *w, struct fuzz_input *in, bool write)
{
    static const uint64_t counts[] = { 1, 2, 4, 8, 4, 3, 16, 0 };
    uint8_t how = fi_u8(in), data[16];
    uint32_t region, count;
    uint64_t offset;

    w->client.gen.in = in;
    switch (how % 5) {
    case 0: case 1:
        region = 1;
        offset = lsi_gen_register(&w->client.gen);
        break;
    case 2:
        region = 7;
        offset = fi_u8(in);
        break;
    case 3:
        region = 2;
        offset = fi_u16(in) % LSI_SRAM_BYTES;
        break;
    default:
        region = fi_u8(in) % 10;
        offset = fi_u64(in);
        break;
    }
    count = (uint32_t)FI_PICK(in, counts);
    fi_bytes(in, data, sizeof(data));
    region_access(w, write, region, offset, data, count);
}

static void write_register(struct world *w, unsigned reg, uint32_t val, uint32_t count)
{
    region_access(w, true, 1, reg, &val, count);
}

/* A restart in the last program, maybe after an abort, a reset or a signal. */
static void op_start(struct world *w, struct fuzz_input *in)
{
    uint8_t how = fi_u8(in);

    w->client.gen.in = in;
    if (how & 1) {
        write_register(w, 0x14, (uint32_t[]){ 0x80, 0x40, 0x20 }[how / 2 % 3], 1);
    }
    write_register(w, 0x2c, lsi_gen_restart_address(&w->client.gen, 0), 4);
}

/*
 * A reply to a DMA request the server is about to make (it will wait for
 * it), right or wrong: the next id or another, an error, the data or not.
 */
static void op_dma_reply(struct world *w, struct fuzz_input *in)
{
    static const uint64_t counts[] = { 4, 8, 1, 10, 16, 4, 512, 0 };
    uint8_t body[sizeof(struct vfio_user_dma_access) + MAX_BODY] = { 0 };
    struct vfio_user_dma_access a = { 0 };
    uint8_t how = fi_u8(in);
    struct vfio_user_hdr h = { .flags = VFIO_USER_F_REPLY };
    uint8_t buf[sizeof(h) + sizeof(body)];
    size_t len = sizeof(a);
    int fds[2];
    size_t n = 0;

    /* After the last request seen and the last reply queued: the requests to come, in order. */
    h.id = (uint16_t)((w->last_dma_id > w->last_reply_id ? w->last_dma_id : w->last_reply_id) +
                      1 + (how & 3));
    w->last_reply_id = h.id;
    h.cmd = how & 4 ? VFIO_USER_DMA_WRITE : VFIO_USER_DMA_READ;
    if (how & 8) {
        h.flags |= VFIO_USER_F_ERROR;
        h.error = EFAULT;
    }
    a.count = FI_PICK(in, counts);
    if (!(how & 4)) {
        /* A DMA_READ's answer: bytes from guest RAM, or the fuzzer's. */
        if (how & 0x10) {
            fi_bytes(in, body + sizeof(a), a.count);
        } else if (pread(w->client.ram, body + sizeof(a), a.count, fi_u16(in) % LSI_RAM_BYTES) < 0) {
            fuzz_fail("pread: %s", strerror(errno));
        }
        len += how & 0x20 ? a.count / 2 : a.count;
    }
    if (how & 0x40) {
        proto_fds(&w->client, in, fds, 1, &n);
    }
    memcpy(body, &a, sizeof(a));
    h.size = (uint32_t)(sizeof(h) + len);
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), body, len);
    proto_send(&w->client, buf, sizeof(h) + len, fds, n);
    proto_close_fds(fds, n);
}

static void op_raw(struct world *w, struct fuzz_input *in)
{
    uint8_t buf[256];
    size_t len = 1 + fi_u8(in) % sizeof(buf), n;
    int fds[4];

    fi_bytes(in, buf, len);
    proto_fds(&w->client, in, fds, 4, &n);
    proto_send(&w->client, buf, len, fds, n);
    proto_close_fds(fds, n);
}

static void op_unmask(struct world *w)
{
    proto_eventfd_signal(w->unmask);
}

/* The client meddles with the eventfds it shares: blocking, or a full counter. */
static void op_eventfd(struct world *w, struct fuzz_input *in)
{
    unsigned how = fi_u8(in);

    proto_eventfd_meddle(how & 1 ? w->unmask : w->trigger, how / 2);
}

/* The client leaves (the device is reset) and a new one connects. */
static void op_reconnect(struct world *w, struct fuzz_input *in)
{
    proto_client_close(&w->client);
    proto_settle(&w->client, 2);
    connect_client(w, in);
}

/* As mpqemu-remote makes it from -object x-vfio-user-server,socket.type=unix,socket.path=... */
static struct server *create_server(struct world *w)
{
    char text[FUZZ_PATH_MAX + 64], *err = NULL;
    struct opts *o;
    struct server *s;

    snprintf(text, sizeof(text), "socket.type=unix,socket.path=%s", w->path);
    o = opts_parse(text, NULL, &err);
    s = o ? vfio_user_server_ops.create(o, "fuzz", &err) : NULL;
    opts_free(o);
    if (!s) {
        fuzz_fail("the vfio-user server: %s", err);
    }
    return s;
}

/* A vfio-user server serves client after client: it never ends. */
static void on_ended(void *opaque, bool error)
{
    (void)opaque;
    (void)error;
}

static void run_op(struct world *w, struct fuzz_input *in)
{
    unsigned op = fi_u8(in) % OP_COUNT;
    uint32_t dsa, code;

    switch ((enum op)op) {
    case OP_VERSION: op_version(w, in); break;
    case OP_DMA_MAP: op_dma_map(w, in); break;
    case OP_DMA_UNMAP: op_dma_unmap(w, in); break;
    case OP_INFO: op_info(w, in); break;
    case OP_SET_IRQS: op_set_irqs(w, in); break;
    case OP_REGION_READ: op_region(w, in, false); break;
    case OP_REGION_WRITE: op_region(w, in, true); break;
    case OP_START: op_start(w, in); break;
    case OP_RESET: send_msg(w, VFIO_USER_DEVICE_RESET, 0, NULL, 0, NULL, 0); break;
    case OP_DMA_REPLY: op_dma_reply(w, in); break;
    case OP_RAW: op_raw(w, in); break;
    case OP_UNMASK: op_unmask(w); break;
    case OP_RECONNECT: op_reconnect(w, in); break;
    case OP_EVENTFD: op_eventfd(w, in); break;
    case OP_COUNT: break;
    default:
        code = proto_common_op(&w->client, in, op, &dsa);
        if (code && fi_bool(in)) {
            if (dsa) {
                write_register(w, 0x10, dsa, 4);
            }
            write_register(w, 0x2c, code, 4);
        }
        return;
    }
    /* QEMU's client waits for each reply: the device runs between messages. */
    if (!(fi_u8(in) & 3)) {
        proto_step(&w->client);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct fuzz_input in;
    char *err = NULL;

    fi_init(&in, data, size);
    fuzz_vm_start(&w.vm);
    if (fi_u8(&in) & 1) {
        fuzz_vm_take_unit_attentions(&w.vm);
    }
    fuzz_vm_firmware(&w.vm);
    fuzz_scratch_path(w.path, "vfio-user.sock");
    w.server = create_server(&w);
    vfio_user_server_set_dma_wait_budget(w.server, DMA_WAIT_MS);
    if (w.server->ops->start(w.server, w.vm.loop, w.vm.lsi, on_ended, &w, &err) < 0) {
        fuzz_fail("the vfio-user server: %s", err);
    }
    w.next_id = 1;
    w.trigger = w.unmask = -1;
    connect_client(&w, &in);
    for (unsigned n = 0; n < MAX_OPS && !fi_empty(&in); n++) {
        run_op(&w, &in);
    }
    proto_client_finish(&w.client, w.server);
    if (w.trigger >= 0) {
        close(w.trigger);
    }
    if (w.unmask >= 0) {
        close(w.unmask);
    }
    fuzz_vm_destroy(&w.vm);
    return 0;
}
