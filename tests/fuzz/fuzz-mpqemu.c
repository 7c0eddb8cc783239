// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The multi-process protocol server (src/proto/mpqemu-server.c) fed a
 * whole message stream through a socketpair, as QEMU's x-pci-proxy-dev
 * would send it: SYNC_SYSMEM with memfds and fds of the wrong kind,
 * config and BAR accesses, SET_IRQFD with eventfds or not, DEVICE_RESET,
 * replies and unknown commands, headers that lie about their size, and
 * raw bytes; the eventfds made blocking and their counters filled.  The device behind it is the harnesses' LSI controller with
 * its disks, so BAR writes start SCRIPTS the stream wrote into guest RAM.
 * The loop runs between messages; the stream may end or close at any
 * point.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "fuzz-vm.h"
#include "lsi-gen.h"
#include "pci/pci.h"
#include "proto-client.h"
#include "proto/mpqemu-server.h"
#include "proto/mpqemu-wire.h"

enum { MAX_OPS = 256 };

enum op {
    OP_SYSMEM = PROTO_OP_COMMON, OP_CONFIG, OP_BAR, OP_START, OP_SET_IRQFD, OP_RESET,
    OP_ODD_MESSAGE, OP_RAW, OP_RESAMPLE, OP_HANG_UP, OP_EVENTFD, OP_COUNT
};

struct world {
    struct fuzz_vm vm;
    struct server *server;
    struct proto_client client;
    int irqfd, resample;        /* our copies of the last eventfds sent, or -1 */
    bool closed;
};

static void on_closed(void *opaque, bool error)
{
    struct world *w = opaque;

    (void)error;
    w->closed = true;
}

/* RET messages: a 16-byte header and 0 or 8 bytes. */
static size_t frame(const uint8_t *data, size_t len)
{
    struct mpqemu_hdr h;

    if (len < sizeof(h)) {
        return 0;
    }
    memcpy(&h, data, sizeof(h));
    if (h.size > 64) {
        return len;     /* not ours to check: take what there is */
    }
    return len >= sizeof(h) + h.size ? sizeof(h) + h.size : 0;
}

static void send_msg(struct world *w, int32_t cmd, const void *payload, uint64_t size,
                     uint64_t claimed, const int *fds, size_t nfds)
{
    uint8_t buf[sizeof(struct mpqemu_hdr) + MPQEMU_MAX_PAYLOAD];
    struct mpqemu_hdr h = { .cmd = cmd, .size = claimed };

    memcpy(buf, &h, sizeof(h));
    if (size) {
        memcpy(buf + sizeof(h), payload, size);
    }
    proto_send(&w->client, buf, sizeof(h) + size, fds, nfds);
}

/* Guest memory: the RAM memfd at 0 mostly, else regions the fuzzer lays out. */
static void op_sysmem(struct world *w, struct fuzz_input *in)
{
    struct mpqemu_sync_sysmem sm = { 0 };
    int fds[MPQEMU_MAX_FDS];
    size_t n;

    proto_fds(&w->client, in, fds, MPQEMU_MAX_FDS, &n);
    for (size_t i = 0; i < n; i++) {
        uint8_t shape = fi_u8(in);

        if (shape & 1) {
            sm.gpas[i] = fi_u64(in);
            sm.sizes[i] = fi_u64(in);
            sm.offsets[i] = (int64_t)fi_u64(in);
        } else {
            sm.gpas[i] = (uint64_t)(shape >> 1) << 18;
            sm.sizes[i] = LSI_RAM_BYTES >> (fi_u8(in) % 4);
        }
    }
    send_msg(w, MPQEMU_CMD_SYNC_SYSMEM, &sm, sizeof(sm), sizeof(sm), fds, n);
    proto_close_fds(fds, n);
}

static void op_config(struct world *w, struct fuzz_input *in)
{
    uint8_t how = fi_u8(in);
    struct mpqemu_pci_conf c = { .len = (int32_t[]){ 1, 2, 4, 3, 0, -1 }[how % 6] };

    c.addr = how & 0x80 ? fi_u32(in) : fi_u8(in);
    c.val = fi_u32(in);
    send_msg(w, (how & 8) ? MPQEMU_CMD_PCI_CFGWRITE : MPQEMU_CMD_PCI_CFGREAD, &c, sizeof(c),
             sizeof(c), NULL, 0);
}

static void bar_access(struct world *w, bool write, uint64_t addr, uint64_t val, uint32_t size,
                       uint8_t memory)
{
    struct mpqemu_bar_access a = { .addr = addr, .val = val, .size = size, .memory = memory };

    send_msg(w, write ? MPQEMU_CMD_BAR_WRITE : MPQEMU_CMD_BAR_READ, &a, sizeof(a), sizeof(a),
             NULL, 0);
}

/* A register of BAR1 or BAR0, SCRIPTS RAM, or any address, any size. */
static void op_bar(struct world *w, struct fuzz_input *in)
{
    static const uint64_t sizes[] = { 1, 2, 4, 8, 1, 4, 3, 0 };
    uint8_t how = fi_u8(in);
    uint64_t addr, val;
    uint8_t memory = 1;

    w->client.gen.in = in;
    switch (how % 4) {
    case 0: case 1:
        addr = LSI_MMIO_BASE + lsi_gen_register(&w->client.gen);
        break;
    case 2:
        addr = LSI_IO_BASE + lsi_gen_register(&w->client.gen);
        memory = 0;
        break;
    default:
        addr = fi_u64(in);
        memory = fi_u8(in) % 3;
        break;
    }
    val = fi_u64(in);
    bar_access(w, how & 4, addr, val, (uint32_t)FI_PICK(in, sizes), memory);
}

static void start_program(struct world *w, uint32_t code, uint32_t dsa)
{
    if (dsa) {
        bar_access(w, true, LSI_MMIO_BASE + 0x10, dsa, 4, 1);
    }
    bar_access(w, true, LSI_MMIO_BASE + 0x2c, code, 4, 1);
}

/* Restarts SCRIPTS in the last program, as a driver's recovery does, maybe after an abort. */
static void op_start(struct world *w, struct fuzz_input *in)
{
    uint8_t how = fi_u8(in);

    w->client.gen.in = in;
    if (how & 1) {
        bar_access(w, true, LSI_MMIO_BASE + 0x14, (uint64_t[]){ 0x80, 0x40, 0x20 }[how / 2 % 3],
                   1, 1);
    }
    bar_access(w, true, LSI_MMIO_BASE + 0x2c, lsi_gen_restart_address(&w->client.gen, 0), 4, 1);
}

static void close_copies(struct world *w)
{
    if (w->irqfd >= 0) {
        close(w->irqfd);
    }
    if (w->resample >= 0) {
        close(w->resample);
    }
    w->irqfd = w->resample = -1;
}

static void op_set_irqfd(struct world *w, struct fuzz_input *in)
{
    int fds[MPQEMU_MAX_FDS];
    size_t n;

    close_copies(w);
    if (fi_bool(in)) {
        fds[0] = proto_eventfd();
        fds[1] = proto_eventfd();
        n = 2;
        w->irqfd = dup(fds[0]);
        w->resample = dup(fds[1]);
    } else {
        proto_fds(&w->client, in, fds, 3, &n);
    }
    send_msg(w, MPQEMU_CMD_SET_IRQFD, NULL, 0, 0, fds, n);
    proto_close_fds(fds, n);
}

/* A message whose command, size or fds are wrong. */
static void op_odd_message(struct world *w, struct fuzz_input *in)
{
    uint8_t payload[MPQEMU_MAX_PAYLOAD];
    int32_t cmd = (int32_t)fi_u32(in);
    uint64_t claimed = fi_u8(in) & 1 ? fi_u64(in) : fi_u8(in);
    size_t len = fi_u8(in) % sizeof(payload), n;
    int fds[MPQEMU_MAX_FDS];

    fi_bytes(in, payload, len);
    proto_fds(&w->client, in, fds, 4, &n);
    send_msg(w, cmd % (MPQEMU_CMD_MAX + 2), payload, len, claimed, fds, n);
    proto_close_fds(fds, n);
}

static void op_raw(struct world *w, struct fuzz_input *in)
{
    uint8_t buf[256];
    size_t len = 1 + fi_u8(in) % sizeof(buf);

    fi_bytes(in, buf, len);
    proto_send(&w->client, buf, len, NULL, 0);
}

/* The guest acknowledged the interrupt: the proxy's resample. */
static void op_resample(struct world *w)
{
    proto_eventfd_signal(w->resample);
}

/* The proxy meddles with the eventfds it shares: blocking, or a full counter. */
static void op_eventfd(struct world *w, struct fuzz_input *in)
{
    unsigned how = fi_u8(in);

    proto_eventfd_meddle(how & 1 ? w->resample : w->irqfd, how / 2);
}

static void run_op(struct world *w, struct fuzz_input *in)
{
    unsigned op = fi_u8(in) % OP_COUNT;
    uint32_t dsa, code;

    switch ((enum op)op) {
    case OP_SYSMEM: op_sysmem(w, in); break;
    case OP_CONFIG: op_config(w, in); break;
    case OP_BAR: op_bar(w, in); break;
    case OP_START: op_start(w, in); break;
    case OP_SET_IRQFD: op_set_irqfd(w, in); break;
    case OP_RESET: send_msg(w, MPQEMU_CMD_DEVICE_RESET, NULL, 0, 0, NULL, 0); break;
    case OP_ODD_MESSAGE: op_odd_message(w, in); break;
    case OP_RAW: op_raw(w, in); break;
    case OP_RESAMPLE: op_resample(w); break;
    case OP_HANG_UP: proto_client_close(&w->client); break;
    case OP_EVENTFD: op_eventfd(w, in); break;
    case OP_COUNT: break;
    default:
        code = proto_common_op(&w->client, in, op, &dsa);
        if (code && fi_bool(in)) {
            start_program(w, code, dsa);
        }
        break;
    }
    /* The proxy waits for each reply; the device runs between messages. */
    proto_step(&w->client);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct fuzz_input in;
    char *err = NULL;
    int sv[2];

    fi_init(&in, data, size);
    fuzz_vm_start(&w.vm);
    if (fi_u8(&in) & 1) {
        fuzz_vm_take_unit_attentions(&w.vm);
    }
    fuzz_vm_firmware(&w.vm);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        fuzz_fail("socketpair: %s", strerror(errno));
    }
    w.closed = false;
    w.irqfd = w.resample = -1;
    /* As mpqemu-remote serves its positional socket fd. */
    w.server = mpqemu_server_ops.create_on_fd(sv[1], &err);
    if (!w.server || w.server->ops->start(w.server, w.vm.loop, w.vm.lsi, on_closed, &w, &err)) {
        fuzz_fail("the multi-process server: %s", err);
    }
    proto_client_init(&w.client, &w.vm, &in, sv[0]);
    w.client.frame = frame;
    w.client.received = NULL;
    for (unsigned n = 0; n < MAX_OPS && !fi_empty(&in); n++) {
        run_op(&w, &in);
    }
    proto_client_finish(&w.client, w.server);
    close_copies(&w);
    fuzz_vm_destroy(&w.vm);
    return 0;
}
