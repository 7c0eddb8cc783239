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

static uint64_t no_read(struct pci_device *d, int bar, uint64_t off, unsigned size)
{
    (void)d; (void)bar; (void)off; (void)size;
    return 0;
}

static void no_write(struct pci_device *d, int bar, uint64_t off, uint64_t val, unsigned size)
{
    (void)d; (void)bar; (void)off; (void)val; (void)size;
}

static const struct pci_device_ops ops = { .bar_read = no_read, .bar_write = no_write };

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_held_past_the_high_water, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
