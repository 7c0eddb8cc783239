// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Malformed multi-process messages sent to mpqemu-remote.  After each, the
 * remote must either answer the next valid message or close the connection;
 * it must never die by a signal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "harness.h"
#include "hw/testdev.h"
#include "proto/mpqemu-wire.h"

static const char *const testdev_args[] = { "{fd}", "-device", "mpqemu-testdev,id=t0", NULL };

static int setup(void **state)
{
    struct remote *r = calloc(1, sizeof(*r));

    remote_start(r, 1, testdev_args);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    struct remote *r = *state;

    close(r->socks[0]);
    if (r->pid > 0) {
        remote_expect_exit(r);      /* fails the test on death by signal */
    }
    free(r);
    return 0;
}

static void config_read(int sock, uint32_t addr, int32_t len)
{
    struct mpqemu_pci_conf c = { .addr = addr, .len = len };

    raw_send(sock, MPQEMU_CMD_PCI_CFGREAD, sizeof(c), &c, sizeof(c), NULL, 0);
}

static void expect_alive(int sock)
{
    config_read(sock, 0, 4);
    assert_int_equal(raw_ret(sock), (uint32_t)TESTDEV_DEVICE << 16 | TESTDEV_VENDOR);
}

static void expect_closed(struct remote *r)
{
    struct pollfd pfd = { .fd = r->socks[0], .events = POLLIN };
    char byte;

    assert_int_equal(poll(&pfd, 1, 5000), 1);
    /* Closing with our bytes still unread resets the connection: closed too. */
    if (recv(r->socks[0], &byte, 1, 0) != 0) {
        assert_int_equal(errno, ECONNRESET);
    }
    /* A connection closed on a protocol error ends the process with 1. */
    assert_int_equal(remote_expect_exit(r), 1);
    r->pid = -1;
}

static void test_unknown_commands(void **state)
{
    struct remote *r = *state;

    raw_send(r->socks[0], 99, 0, NULL, 0, NULL, 0);
    expect_closed(r);
}

static void test_negative_command(void **state)
{
    struct remote *r = *state;

    raw_send(r->socks[0], -1, 0, NULL, 0, NULL, 0);
    expect_closed(r);
}

static void test_oversize_size_field(void **state)
{
    struct remote *r = *state;

    raw_send(r->socks[0], MPQEMU_CMD_PCI_CFGREAD, UINT64_MAX, NULL, 0, NULL, 0);
    expect_closed(r);
}

static void test_size_not_the_commands(void **state)
{
    struct remote *r = *state;
    uint8_t payload[16] = { 0 };

    raw_send(r->socks[0], MPQEMU_CMD_PCI_CFGREAD, 16, payload, 16, NULL, 0);
    expect_closed(r);
}

static void test_nine_fds(void **state)
{
    struct remote *r = *state;
    struct mpqemu_sync_sysmem sm = { 0 };
    int fds[9];

    for (int i = 0; i < 9; i++) {
        fds[i] = eventfd(0, EFD_CLOEXEC);
    }
    raw_send(r->socks[0], MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), fds, 9);
    close_fds(fds, 9);
    expect_closed(r);
}

static void test_sysmem_without_fds(void **state)
{
    struct remote *r = *state;
    struct mpqemu_sync_sysmem sm = { .sizes = { 4096 } };

    raw_send(r->socks[0], MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), NULL, 0);
    expect_closed(r);
}

static void test_sysmem_region_larger_than_file(void **state)
{
    struct remote *r = *state;
    struct mpqemu_sync_sysmem sm = { .sizes = { 1ull << 40 } };
    int fd = memfd_create("small", MFD_CLOEXEC);

    assert_int_equal(ftruncate(fd, 4096), 0);
    raw_send(r->socks[0], MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), &fd, 1);
    close(fd);
    expect_closed(r);
}

static void test_sysmem_with_a_pipe(void **state)
{
    struct remote *r = *state;
    struct mpqemu_sync_sysmem sm = { .sizes = { 4096 } };
    int p[2];

    assert_int_equal(pipe(p), 0);
    raw_send(r->socks[0], MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), p, 1);
    close_fds(p, 2);
    expect_closed(r);
}

static void test_irqfd_with_one_fd(void **state)
{
    struct remote *r = *state;
    int fd = eventfd(0, EFD_CLOEXEC);

    raw_send(r->socks[0], MPQEMU_CMD_SET_IRQFD, 0, NULL, 0, &fd, 1);
    close(fd);
    expect_closed(r);
}

static void test_irqfd_with_pipes(void **state)
{
    struct remote *r = *state;
    int p[2];

    assert_int_equal(pipe(p), 0);
    raw_send(r->socks[0], MPQEMU_CMD_SET_IRQFD, 0, NULL, 0, p, 2);
    close_fds(p, 2);
    expect_closed(r);
}

static void test_fds_on_a_config_read(void **state)
{
    struct remote *r = *state;
    struct mpqemu_pci_conf c = { .len = 4 };
    int fd = eventfd(0, EFD_CLOEXEC);

    raw_send(r->socks[0], MPQEMU_CMD_PCI_CFGREAD, sizeof(c), &c, sizeof(c), &fd, 1);
    close(fd);
    expect_closed(r);
}

static void test_ret_sent_to_the_remote(void **state)
{
    struct remote *r = *state;
    uint64_t v = 0;

    raw_send(r->socks[0], MPQEMU_CMD_RET, 8, &v, 8, NULL, 0);
    expect_closed(r);
}

static void test_truncated_payload(void **state)
{
    struct remote *r = *state;
    struct mpqemu_pci_conf c = { .len = 4 };

    raw_send(r->socks[0], MPQEMU_CMD_PCI_CFGREAD, sizeof(c), &c, 5, NULL, 0);
    shutdown(r->socks[0], SHUT_WR);
    expect_closed(r);
}

static void test_config_access_past_the_end(void **state)
{
    struct remote *r = *state;
    static const struct { uint32_t addr; int32_t len; } bad[] = {
        { 253, 4 }, { 256, 1 }, { 0xffffffff, 4 }, { 0, 3 }, { 0, 8 }, { 0, -1 }, { 0, 0 },
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        config_read(r->socks[0], bad[i].addr, bad[i].len);
        assert_true(raw_ret(r->socks[0]) == MPQEMU_RET_ERROR);
        expect_alive(r->socks[0]);
    }
    {
        struct mpqemu_pci_conf c = { .addr = 300, .val = 1, .len = 4 };

        raw_send(r->socks[0], MPQEMU_CMD_PCI_CFGWRITE, sizeof(c), &c, sizeof(c), NULL, 0);
        assert_true(raw_ret(r->socks[0]) == MPQEMU_RET_ERROR);
        expect_alive(r->socks[0]);
    }
}

static void test_bad_bar_accesses(void **state)
{
    struct remote *r = *state;
    static const struct mpqemu_bar_access bad[] = {
        { .addr = 0xe0000000, .size = 3, .memory = 1 },
        { .addr = 0xe0000000, .size = 16, .memory = 1 },
        { .addr = 0xe0000000, .size = 0, .memory = 1 },
        { .addr = 0xe0000000, .size = 4, .memory = 7 },
        { .addr = 0x1234, .size = 4, .memory = 1 },         /* hits no BAR */
        { .addr = UINT64_MAX - 1, .size = 8, .memory = 0 },
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw_send(r->socks[0], MPQEMU_CMD_BAR_READ, sizeof(bad[i]), &bad[i], sizeof(bad[i]),
                 NULL, 0);
        assert_true(raw_ret(r->socks[0]) == MPQEMU_RET_ERROR);
        raw_send(r->socks[0], MPQEMU_CMD_BAR_WRITE, sizeof(bad[i]), &bad[i], sizeof(bad[i]),
                 NULL, 0);
        raw_ret(r->socks[0]);
        expect_alive(r->socks[0]);
    }
}

/* A proxy that sends without reading replies must not make the remote buffer forever. */
static void test_flood_without_reading(void **state)
{
    struct remote *r = *state;
    struct mpqemu_pci_conf c = { .addr = 0, .len = 4 };
    uint8_t frame[MPQEMU_HDR_SIZE + sizeof(c)];
    struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_PCI_CFGREAD, .size = sizeof(c) };
    size_t sent = 0;

    memcpy(frame, &h, sizeof(h));
    memcpy(frame + sizeof(h), &c, sizeof(c));
    for (int spins = 0; spins < 200 && sent < 200000;) {
        ssize_t n = send(r->socks[0], frame, sizeof(frame), MSG_DONTWAIT);

        if (n == (ssize_t)sizeof(frame)) {
            sent++;
            continue;
        }
        assert_true(n < 0 && errno == EAGAIN);
        spins++;
        usleep(1000);
    }
    /* Both directions filled up and the remote stopped reading: it is pushing back. */
    assert_true(sent < 200000);
    for (size_t i = 0; i < sent; i++) {
        assert_int_equal(raw_ret(r->socks[0]), (uint32_t)TESTDEV_DEVICE << 16 | TESTDEV_VENDOR);
    }
    expect_alive(r->socks[0]);
}

/* Seeded random frames: whatever they are, the remote answers or closes, never crashes. */
static void test_random_frames(void **state)
{
    struct remote *r = *state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;

    (void)state;
    for (int round = 0; round < 300; round++) {
        uint8_t payload[MPQEMU_MAX_PAYLOAD];
        int32_t cmd;
        size_t len;
        struct pollfd pfd = { .fd = r->socks[0], .events = POLLIN };

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        cmd = (int32_t)((seed >> 33) % 10) - 1;
        if (cmd == MPQEMU_CMD_SYNC_SYSMEM || cmd == MPQEMU_CMD_SET_IRQFD) {
            cmd = MPQEMU_CMD_BAR_READ;
        }
        len = cmd == MPQEMU_CMD_BAR_READ || cmd == MPQEMU_CMD_BAR_WRITE ? 24
            : cmd == MPQEMU_CMD_PCI_CFGREAD || cmd == MPQEMU_CMD_PCI_CFGWRITE ? 12 : 0;
        for (size_t i = 0; i < sizeof(payload); i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            payload[i] = (uint8_t)(seed >> 56);
        }
        if (send(r->socks[0], &(struct mpqemu_hdr){ .cmd = cmd, .size = len },
                 MPQEMU_HDR_SIZE, MSG_NOSIGNAL) < 0 ||
            (len && send(r->socks[0], payload, len, MSG_NOSIGNAL) < 0)) {
            break;
        }
        if (cmd < 0 || cmd >= MPQEMU_CMD_MAX || cmd == MPQEMU_CMD_RET) {
            expect_closed(r);
            return;
        }
        assert_int_equal(poll(&pfd, 1, 5000), 1);
        raw_ret(r->socks[0]);
    }
    expect_alive(r->socks[0]);
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_unknown_commands),
        CASE(test_negative_command),
        CASE(test_oversize_size_field),
        CASE(test_size_not_the_commands),
        CASE(test_nine_fds),
        CASE(test_sysmem_without_fds),
        CASE(test_sysmem_region_larger_than_file),
        CASE(test_sysmem_with_a_pipe),
        CASE(test_irqfd_with_one_fd),
        CASE(test_irqfd_with_pipes),
        CASE(test_fds_on_a_config_read),
        CASE(test_ret_sent_to_the_remote),
        CASE(test_truncated_payload),
        CASE(test_config_access_past_the_end),
        CASE(test_bad_bar_accesses),
        CASE(test_flood_without_reading),
        CASE(test_random_frames),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
