// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The multi-process server in-process, on a socketpair, its loop run by
 * hand: what it holds read ahead is checked against what the socket's
 * watch can and cannot wake it for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/outbuf.h"
#include "pci/pci.h"
#include "proto/mpqemu-server.h"
#include "proto/mpqemu-wire.h"
#include "util/loop.h"

enum { FRAME = MPQEMU_HDR_SIZE + sizeof(struct mpqemu_pci_conf), REPLY = MPQEMU_HDR_SIZE + 8 };

struct world {
    struct pci_device pci;
    struct loop *loop;
    struct server *server;
    int sv[2];
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

static int setup(void **state)
{
    const struct pci_ids ids = { .vendor = 0x1000, .device = 0x0012, .class_code = 0x010000 };
    struct world *w = calloc(1, sizeof(*w));
    int small = 4096;
    char *err = NULL;

    pci_device_init(&w->pci, "t0", &ops, &ids);
    assert_int_equal(pci_register_bar(&w->pci, 1, PCI_BAR_MEM32, 1024, false, NULL), 0);
    pci_config_write(&w->pci, 0x14, BAR_BASE, 4);
    pci_config_write(&w->pci, 0x04, 0x2, 2);        /* memory space on */
    loop_bh_init(&work_bh, work, NULL);
    the_world = w;
    w->loop = loop_new();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w->sv), 0);
    /* The server's replies fill the socket soon: the rest wait in its output buffer. */
    assert_int_equal(setsockopt(w->sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    w->server = mpqemu_server_ops.create_on_fd(w->sv[1], &err);
    assert_non_null(w->server);
    assert_int_equal(w->server->ops->start(w->server, w->loop, &w->pci, on_ended, w, &err), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    w->server->ops->free(w->server);
    close(w->sv[0]);
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

static void send_bar_access(int sock, bool write)
{
    struct mpqemu_hdr h = { .cmd = write ? MPQEMU_CMD_BAR_WRITE : MPQEMU_CMD_BAR_READ,
                            .size = sizeof(struct mpqemu_bar_access) };
    struct mpqemu_bar_access a = { .addr = BAR_BASE + 0x14, .val = 0x20, .size = 1, .memory = 1 };
    uint8_t frame[MPQEMU_HDR_SIZE + sizeof(a)];

    memcpy(frame, &h, sizeof(h));
    memcpy(frame + sizeof(h), &a, sizeof(a));
    assert_int_equal(send(sock, frame, sizeof(frame), MSG_NOSIGNAL), (ssize_t)sizeof(frame));
}

/*
 * A write's reply leaves at the end of the loop's round: the proxy that
 * waits for it then finds the work the write started done (no interrupt to
 * wait for).  A read's leaves at once: it carries a value, nothing waits on it.
 */
static void test_write_replies_after_the_round(void **state)
{
    struct world *w = *state;
    uint8_t buf[64];

    send_bar_access(w->sv[0], true);
    run_until_idle(w);
    assert_int_equal(unread_at_work, 0);
    assert_int_equal(unread(w->sv[0]), REPLY);
    assert_int_equal(recv(w->sv[0], buf, sizeof(buf), 0), REPLY);

    send_bar_access(w->sv[0], false);
    run_until_idle(w);
    assert_int_equal(unread_at_work, REPLY);
    assert_int_equal(recv(w->sv[0], buf, sizeof(buf), 0), REPLY);
    assert_false(w->ended);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_held_past_the_high_water, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_replies_after_the_round, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
