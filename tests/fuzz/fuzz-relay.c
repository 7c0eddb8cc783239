// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The keeper's relay (src/proto/relay*.c, -restart on) between a VMM and a
 * device process, the input playing both: messages of either protocol
 * (headers from the input, often well formed, with memfds and eventfds
 * attached) and raw bytes from each side, the device process dying and a
 * new one attaching (the session and the journal replayed to it), either
 * side's output read or left to pile up, the VMM leaving.  The relay must
 * neither crash nor leak (each input frees the link), whatever either side
 * sends; a device that breaks the protocol is killed, as the keeper does.
 *
 * Input: a byte choosing the protocol (bit 0: vfio-user), then operations.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "io/sock-io.h"
#include "proto/mpqemu-wire.h"
#include "proto/relay.h"
#include "proto/vfio-user-wire.h"

enum { MAX_OPS = 256, MAX_BODY = 512, MAX_SEND_FDS = 3, PUMP_ROUNDS = 3 };

enum op { OP_VMM_MSG, OP_DEV_MSG, OP_VMM_RAW, OP_DEV_RAW, OP_DEVICE_DIES, OP_READ,
          OP_VMM_LEAVES, OP_COUNT };

struct world {
    struct loop *loop;
    struct loop_bh quit_bh;
    struct relay_link link;
    bool vfio_user;
    int vmm, dev;               /* our ends, -1 when closed */
    bool device_faulted;
};

static void on_fault(struct relay_link *l, const char *why)
{
    (void)why;
    ((struct world *)l->opaque)->device_faulted = true;
}

static void on_device_closed(struct relay_link *l)
{
    (void)l;
}

static void on_vmm_closed(struct relay_link *l, bool error)
{
    (void)l;
    (void)error;
}

static const struct relay_events events = {
    .device_fault = on_fault, .device_closed = on_device_closed, .vmm_closed = on_vmm_closed,
};

static void quit(void *opaque)
{
    loop_quit(((struct world *)opaque)->loop, 0);
}

/* Returns the relay's end of a new socket pair, ours in *ours. */
static int pair(int *ours)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        fuzz_fail("socketpair: %s", strerror(errno));
    }
    *ours = sv[0];
    return sv[1];
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* The device process dies, as the keeper makes one that broke the protocol. */
static void device_dies(struct world *w)
{
    close_fd(&w->dev);
    relay_detach_device(&w->link);
    w->device_faulted = false;
}

/* The relay handles what is ready, a few rounds (both hops). */
static void pump(struct world *w)
{
    for (int i = 0; i < PUMP_ROUNDS; i++) {
        loop_bh_schedule(w->loop, &w->quit_bh);
        loop_run(w->loop);
        if (w->device_faulted) {
            device_dies(w);
        }
    }
}

/* Reads whatever the relay sent to one of our ends, closing the fds it passed. */
static void read_all(int fd)
{
    char buf[8192];
    int fds[16];
    struct fd_bag bag = { .fds = fds, .cap = 16 };

    while (fd >= 0 && sock_recv(fd, buf, sizeof(buf), &bag, MSG_DONTWAIT) > 0) {
        fd_bag_close(&bag);
    }
    fd_bag_close(&bag);
}

/* Fds of the kinds the protocols pass (guest memory, interrupts), as the input picks. */
static size_t make_fds(struct fuzz_input *in, int *fds)
{
    size_t n = fi_below(in, MAX_SEND_FDS + 1);

    for (size_t i = 0; i < n; i++) {
        if (fi_bool(in)) {
            fds[i] = memfd_create("fuzz-relay", MFD_CLOEXEC);
            if (fds[i] >= 0 && ftruncate(fds[i], 4096) < 0) {
                fuzz_fail("ftruncate: %s", strerror(errno));
            }
        } else {
            fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        }
        if (fds[i] < 0) {
            fuzz_fail("fd: %s", strerror(errno));
        }
    }
    return n;
}

/* Sends bytes with fds on the first; a full socket loses them (the relay stopped reading). */
static void send_bytes(int sock, const void *data, size_t len, const int *fds, size_t nfds)
{
    struct iovec iov = { (void *)data, len };

    if (sock >= 0 && len) {
        (void)sock_send(sock, &iov, 1, fds, nfds, MSG_DONTWAIT);
    }
}

/*
 * A message of the link's protocol: a header whose fields come from the
 * input (the size mostly true to the body), the body, fds.  From the device
 * it is mostly a reply (RET; a vfio-user reply to a small id).
 */
static void send_message(struct world *w, struct fuzz_input *in, bool from_vmm)
{
    uint8_t msg[sizeof(struct mpqemu_hdr) + VFIO_USER_HDR_SIZE + MAX_BODY];
    size_t body = fi_below(in, MAX_BODY + 1), hdr_len;
    bool true_size = fi_below(in, 8) != 0;
    int fds[MAX_SEND_FDS];
    size_t nfds;

    if (w->vfio_user) {
        struct vfio_user_hdr h = {
            .id = (uint16_t)fi_below(in, 8),
            .cmd = (uint16_t)fi_below(in, VFIO_USER_CMD_MAX + 2),
            .flags = fi_u8(in),
        };

        if (!from_vmm && fi_below(in, 4)) {
            h.flags = VFIO_USER_F_REPLY | (fi_bool(in) ? VFIO_USER_F_ERROR : 0);
        }
        h.size = true_size ? (uint32_t)(VFIO_USER_HDR_SIZE + body) : fi_u32(in);
        h.error = fi_below(in, 4) ? 0 : fi_u32(in);
        memcpy(msg, &h, sizeof(h));
        hdr_len = sizeof(h);
    } else {
        struct mpqemu_hdr h = { .cmd = (int32_t)fi_below(in, MPQEMU_CMD_MAX + 2) };

        if (!from_vmm && fi_below(in, 4)) {
            h.cmd = MPQEMU_CMD_RET;
        }
        h.size = true_size ? body : fi_u64(in);
        memcpy(msg, &h, sizeof(h));
        hdr_len = sizeof(h);
    }
    fi_bytes(in, msg + hdr_len, body);
    nfds = make_fds(in, fds);
    send_bytes(from_vmm ? w->vmm : w->dev, msg, hdr_len + body, fds, nfds);
    for (size_t i = 0; i < nfds; i++) {
        close(fds[i]);
    }
}

static void send_raw(int sock, struct fuzz_input *in)
{
    uint8_t buf[256];
    size_t len = fi_below(in, sizeof(buf) + 1);

    fi_bytes(in, buf, len);
    send_bytes(sock, buf, len, NULL, 0);
}

static void run_op(struct world *w, struct fuzz_input *in)
{
    switch ((enum op)fi_below(in, OP_COUNT)) {
    case OP_VMM_MSG:
        send_message(w, in, true);
        break;
    case OP_DEV_MSG:
        send_message(w, in, false);
        break;
    case OP_VMM_RAW:
        send_raw(w->vmm, in);
        break;
    case OP_DEV_RAW:
        send_raw(w->dev, in);
        break;
    case OP_DEVICE_DIES:
        if (relay_device_attached(&w->link)) {
            device_dies(w);
        } else if (relay_vmm_connected(&w->link)) {
            close_fd(&w->dev);
            if (relay_attach_device(&w->link, pair(&w->dev)) < 0) {
                close_fd(&w->dev);
            }
        }
        break;
    case OP_READ:
        read_all(w->vmm);
        read_all(w->dev);
        break;
    case OP_VMM_LEAVES:
    case OP_COUNT:
        close_fd(&w->vmm);
        break;
    }
    pump(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct fuzz_input in;

    fuzz_process_init();
    fi_init(&in, data, size);
    memset(&w, 0, sizeof(w));
    w.vmm = w.dev = -1;
    w.vfio_user = fi_u8(&in) & 1;
    w.loop = loop_new();
    loop_bh_init(&w.quit_bh, quit, &w);
    relay_link_init(&w.link, w.vfio_user ? &vfio_user_relay_proto : &mpqemu_relay_proto, w.loop,
                    "fuzz", &events, &w);
    if (relay_attach_vmm(&w.link, pair(&w.vmm)) < 0 ||
        relay_attach_device(&w.link, pair(&w.dev)) < 0) {
        fuzz_fail("the relay refused its first connections");
    }
    for (int i = 0; i < MAX_OPS && !fi_empty(&in) && w.vmm >= 0; i++) {
        run_op(&w, &in);
        if (!relay_vmm_connected(&w.link)) {
            break;      /* the relay dropped the VMM: the link is closed */
        }
    }
    read_all(w.vmm);
    read_all(w.dev);
    relay_link_free(&w.link);
    close_fd(&w.vmm);
    close_fd(&w.dev);
    loop_bh_cancel(w.loop, &w.quit_bh);
    loop_free(w.loop);
    return 0;
}
