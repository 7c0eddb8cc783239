// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The servers in-process, their loop run by hand: the multi-process one
 * on a socketpair, the vfio-user one on its listening socket.  What the
 * multi-process server holds read ahead is checked against what the
 * socket's watch can and cannot wake it for; both servers' replies to
 * writes against the end of the loop's round.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "io/outbuf.h"
#include "pci/pci.h"
#include "proto/mpqemu-server.h"
#include "proto/mpqemu-wire.h"
#include "proto/vfio-user-server.h"
#include "proto/vfio-user-wire.h"
#include "util/opts.h"
#include "util/loop.h"

enum { FRAME = MPQEMU_HDR_SIZE + sizeof(struct mpqemu_pci_conf), REPLY = MPQEMU_HDR_SIZE + 8 };

struct world {
    struct pci_device pci;
    struct loop *loop;
    struct server *server;
    int sv[2];                  /* [0]: the proxy's end; [1]: the server's (multi-process only) */
    char dir[64];               /* vfio-user: where its socket is */
    bool ended;
};

static int unread(int sock);

/*
 * The device's accesses start work in a bottom half, as a doorbell starts
 * SCRIPTS that do I/O: it notes how much of a reply the proxy could read
 * when it ran.
 */
static struct world *the_world;
static struct loop_bh work_bh;
static int unread_at_work = -1;

static void work(void *opaque)
{
    (void)opaque;
    unread_at_work = unread(the_world->sv[0]);
}

static uint64_t start_work_read(struct pci_device *d, int bar, uint64_t off, unsigned size)
{
    (void)d; (void)bar; (void)off; (void)size;
    loop_bh_schedule(the_world->loop, &work_bh);
    return 0;
}

static void start_work(struct pci_device *d, int bar, uint64_t off, uint64_t val, unsigned size)
{
    (void)d; (void)bar; (void)off; (void)val; (void)size;
    loop_bh_schedule(the_world->loop, &work_bh);
}

static const struct pci_device_ops ops = { .bar_read = start_work_read, .bar_write = start_work };

enum { BAR_BASE = 0xe0000000 };

static void on_ended(void *opaque, bool error)
{
    (void)error;
    ((struct world *)opaque)->ended = true;
}

/* The device and the loop, as either server serves them. */
static struct world *new_world(void)
{
    const struct pci_ids ids = { .vendor = 0x1000, .device = 0x0012, .class_code = 0x010000 };
    struct world *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    pci_device_init(&w->pci, "t0", &ops, &ids);
    assert_int_equal(pci_register_bar(&w->pci, 1, PCI_BAR_MEM32, 1024, false, NULL), 0);
    pci_config_write(&w->pci, 0x14, BAR_BASE, 4);
    pci_config_write(&w->pci, 0x04, 0x2, 2);        /* memory space on */
    loop_bh_init(&work_bh, work, NULL);
    unread_at_work = -1;
    the_world = w;
    w->loop = loop_new();
    return w;
}

static void start(struct world *w)
{
    char *err = NULL;

    assert_non_null(w->server);
    assert_int_equal(w->server->ops->start(w->server, w->loop, &w->pci, on_ended, w, &err), 0);
}

static int setup(void **state)
{
    struct world *w = new_world();
    int small = 4096;
    char *err = NULL;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w->sv), 0);
    /* The server's replies fill the socket soon: the rest wait in its output buffer. */
    assert_int_equal(setsockopt(w->sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    w->server = mpqemu_server_ops.create_on_fd(w->sv[1], &err);
    start(w);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    w->server->ops->free(w->server);
    close(w->sv[0]);
    if (w->dir[0]) {
        char path[sizeof(w->dir) + 2];

        snprintf(path, sizeof(path), "%s/s", w->dir);
        unlink(path);
        assert_int_equal(rmdir(w->dir), 0);
    }
    loop_free(w->loop);
    free(w);
    return 0;
}

static void run_until_idle(struct world *w)
{
    for (int idle = 0; idle < 3;) {
        int n = loop_run_once(w->loop, 0);

        assert_true(n >= 0);
        idle = n ? 0 : idle + 1;
    }
}

static int unread(int sock)
{
    int n = 0;

    assert_int_equal(ioctl(sock, FIONREAD, &n), 0);
    return n;
}

static void send_reads(int sock, unsigned n)
{
    uint8_t burst[64 * FRAME];
    struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_PCI_CFGREAD, .size = sizeof(struct mpqemu_pci_conf) };
    struct mpqemu_pci_conf c = { .addr = 0, .len = 4 };

    assert_true(n <= 64);
    for (unsigned i = 0; i < n; i++) {
        memcpy(burst + i * FRAME, &h, sizeof(h));
        memcpy(burst + i * FRAME + sizeof(h), &c, sizeof(c));
    }
    assert_int_equal(send(sock, burst, n * FRAME, MSG_NOSIGNAL), (ssize_t)(n * FRAME));
}

/*
 * The high water crossed in the middle of a burst that one receive took
 * whole: the rest of the burst is held read ahead and the socket has
 * nothing more, so it will not wake the server for them.  Once the proxy
 * reads the replies, every request held must be answered.
 */
static void test_held_past_the_high_water(void **state)
{
    struct world *w = *state;
    enum { BURST = 1000 / FRAME };      /* fits the read-ahead buffer: one receive */
    uint64_t sent = 0, got = 0;
    uint8_t buf[4096];
    int stalled = 0;

    for (;;) {
        size_t in_socket, out;

        run_until_idle(w);
        assert_int_equal(unread(w->sv[1]), 0);      /* it read all we sent... */
        in_socket = (size_t)unread(w->sv[0]);
        out = sent * REPLY - in_socket;             /* ...and answered it: the rest is buffered */
        if (out + BURST * REPLY >= OUTBUF_HIGH_WATER + 2 * REPLY) {
            break;
        }
        send_reads(w->sv[0], BURST);
        sent += BURST;
    }
    /* This burst crosses the high water with requests of it left over. */
    send_reads(w->sv[0], BURST);
    sent += BURST;
    run_until_idle(w);
    assert_int_equal(unread(w->sv[1]), 0);

    /* The proxy reads its replies; the server gets no new request. */
    while (got < sent * REPLY && stalled < 100) {
        ssize_t n = recv(w->sv[0], buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0) {
            got += (uint64_t)n;
            stalled = 0;
        } else {
            stalled++;
        }
        run_until_idle(w);
    }
    assert_int_equal(got, sent * REPLY);
    assert_int_equal(unread(w->sv[0]), 0);
    assert_false(w->ended);
}

static void send_bar_access(struct world *w, bool write)
{
    struct mpqemu_hdr h = { .cmd = write ? MPQEMU_CMD_BAR_WRITE : MPQEMU_CMD_BAR_READ,
                            .size = sizeof(struct mpqemu_bar_access) };
    struct mpqemu_bar_access a = { .addr = BAR_BASE + 0x14, .val = 0x20, .size = 1, .memory = 1 };
    uint8_t frame[MPQEMU_HDR_SIZE + sizeof(a)];

    memcpy(frame, &h, sizeof(h));
    memcpy(frame + sizeof(h), &a, sizeof(a));
    assert_int_equal(send(w->sv[0], frame, sizeof(frame), MSG_NOSIGNAL), (ssize_t)sizeof(frame));
}

/* --- vfio-user: a client on the server's socket ------------------------------- */

enum { VFU_ACCESS = VFIO_USER_HDR_SIZE + sizeof(struct vfio_user_region_access) };

static void vfu_send(struct world *w, uint16_t cmd, const void *body, size_t len)
{
    static uint16_t id;
    struct vfio_user_hdr h = { .id = id++, .cmd = cmd, .flags = VFIO_USER_F_COMMAND,
                               .size = (uint32_t)(sizeof(h) + len) };
    uint8_t msg[sizeof(h) + 64];

    assert_true(len <= 64);
    memcpy(msg, &h, sizeof(h));
    memcpy(msg + sizeof(h), body, len);
    assert_int_equal(send(w->sv[0], msg, sizeof(h) + len, MSG_NOSIGNAL), (ssize_t)(sizeof(h) + len));
}

/* BAR 1 is region 1; a write carries its byte, a read's reply does. */
static void vfu_bar_access(struct world *w, bool write)
{
    struct vfio_user_region_access a = { .offset = 0x14, .region = 1, .count = 1 };
    uint8_t body[sizeof(a) + 1];

    memcpy(body, &a, sizeof(a));
    body[sizeof(a)] = 0x20;
    vfu_send(w, write ? VFIO_USER_REGION_WRITE : VFIO_USER_REGION_READ, body,
             sizeof(a) + (write ? 1 : 0));
}

/* The server as the remote makes it from -object x-vfio-user-server; connected, VERSION agreed. */
static int setup_vfio_user(void **state)
{
    struct world *w = new_world();
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    struct vfio_user_version v = { .major = VFIO_USER_MAJOR, .minor = VFIO_USER_MINOR };
    struct vfio_user_hdr reply;
    char text[160], caps[1024], *err = NULL;
    struct opts *o;

    snprintf(w->dir, sizeof(w->dir), "/tmp/test-conn-XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/s", w->dir);
    snprintf(text, sizeof(text), "socket.type=unix,socket.path=%s", a.sun_path);
    o = opts_parse(text, NULL, &err);
    assert_non_null(o);
    w->server = vfio_user_server_ops.create(o, "v0", &err);
    opts_free(o);
    start(w);
    w->sv[0] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    w->sv[1] = -1;
    assert_int_equal(connect(w->sv[0], (struct sockaddr *)&a, sizeof(a)), 0);
    run_until_idle(w);                                  /* accepted */
    vfu_send(w, VFIO_USER_VERSION, &v, sizeof(v));
    run_until_idle(w);
    assert_int_equal(recv(w->sv[0], &reply, sizeof(reply), MSG_PEEK), (ssize_t)sizeof(reply));
    assert_int_equal(reply.flags & VFIO_USER_F_ERROR, 0);
    assert_true(reply.size <= sizeof(caps));
    assert_int_equal(recv(w->sv[0], caps, reply.size, 0), (ssize_t)reply.size);
    *state = w;
    return 0;
}

/*
 * A write's reply leaves at the end of the loop's round: the proxy that
 * waits for it then finds the work the write started done (no interrupt to
 * wait for).  A read's leaves at once: it carries a value, nothing waits on it.
 */
static void expect_write_replies_after_the_round(struct world *w,
                                                 void (*access)(struct world *w, bool write),
                                                 int write_reply, int read_reply)
{
    uint8_t buf[64];

    access(w, true);
    run_until_idle(w);
    assert_int_equal(unread_at_work, 0);
    assert_int_equal(unread(w->sv[0]), write_reply);
    assert_int_equal(recv(w->sv[0], buf, sizeof(buf), 0), write_reply);

    access(w, false);
    run_until_idle(w);
    assert_int_equal(unread_at_work, read_reply);
    assert_int_equal(recv(w->sv[0], buf, sizeof(buf), 0), read_reply);
    assert_false(w->ended);
}

static void test_write_replies_after_the_round(void **state)
{
    expect_write_replies_after_the_round(*state, send_bar_access, REPLY, REPLY);
}

static void test_vfio_user_write_replies_after_the_round(void **state)
{
    expect_write_replies_after_the_round(*state, vfu_bar_access, VFU_ACCESS, VFU_ACCESS + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_held_past_the_high_water, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_replies_after_the_round, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vfio_user_write_replies_after_the_round,
                                        setup_vfio_user, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
