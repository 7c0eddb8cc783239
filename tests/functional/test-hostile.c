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
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
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
    /* A well-formed write that hits no BAR is dropped, as on a bus: RET 0, not an error. */
    static const bool hits_nothing[] = { false, false, false, false, true, true };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw_send(r->socks[0], MPQEMU_CMD_BAR_READ, sizeof(bad[i]), &bad[i], sizeof(bad[i]),
                 NULL, 0);
        assert_true(raw_ret(r->socks[0]) == MPQEMU_RET_ERROR);
        raw_send(r->socks[0], MPQEMU_CMD_BAR_WRITE, sizeof(bad[i]), &bad[i], sizeof(bad[i]),
                 NULL, 0);
        assert_true(raw_ret(r->socks[0]) == (hits_nothing[i] ? 0 : MPQEMU_RET_ERROR));
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

/* Requests queued in one write are all answered, in order. */
static void test_burst_in_one_write(void **state)
{
    struct remote *r = *state;
    enum { N = 40 };
    uint8_t frames[N][MPQEMU_HDR_SIZE + sizeof(struct mpqemu_pci_conf)];

    for (int i = 0; i < N; i++) {
        struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_PCI_CFGREAD,
                                .size = sizeof(struct mpqemu_pci_conf) };
        /* Alternately the ids and the scratch-free class bytes: replies tell them apart. */
        struct mpqemu_pci_conf c = { .addr = i % 2 ? 0 : 0x0a, .len = i % 2 ? 4 : 2 };

        memcpy(frames[i], &h, sizeof(h));
        memcpy(frames[i] + sizeof(h), &c, sizeof(c));
    }
    assert_int_equal(send(r->socks[0], frames, sizeof(frames), MSG_NOSIGNAL),
                     (ssize_t)sizeof(frames));
    for (int i = 0; i < N; i++) {
        assert_int_equal(raw_ret(r->socks[0]), i % 2 ? (uint32_t)TESTDEV_DEVICE << 16 |
                         TESTDEV_VENDOR : (uint32_t)(TESTDEV_CLASS >> 8));
    }
    expect_alive(r->socks[0]);
}

/* A request that arrives a byte at a time is served once whole. */
static void test_split_byte_by_byte(void **state)
{
    struct remote *r = *state;
    struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_PCI_CFGREAD, .size = sizeof(struct mpqemu_pci_conf) };
    struct mpqemu_pci_conf c = { .addr = 0, .len = 4 };
    uint8_t frame[MPQEMU_HDR_SIZE + sizeof(c)];
    struct pollfd pfd = { .fd = r->socks[0], .events = POLLIN };

    memcpy(frame, &h, sizeof(h));
    memcpy(frame + sizeof(h), &c, sizeof(c));
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(frame); i++) {
            assert_int_equal(send(r->socks[0], frame + i, 1, MSG_NOSIGNAL), 1);
            usleep(500);
        }
        assert_int_equal(raw_ret(r->socks[0]), (uint32_t)TESTDEV_DEVICE << 16 | TESTDEV_VENDOR);
        /* Nothing more: no reply to a request that was not whole. */
        assert_int_equal(poll(&pfd, 1, 0), 0);
    }
    expect_alive(r->socks[0]);
}

/* The testdev's BAR0 at 'base', memory decoding on. */
static void map_bar0(int sock, uint32_t base)
{
    raw_config_write(sock, 0x10, base, 4);
    raw_config_write(sock, 0x04, 0x6, 2);     /* memory, bus master */
}

/*
 * A resample fd that is a semaphore eventfd with a huge count: each read
 * takes one.  While the line is high the remote keeps being woken by it
 * (the proxy's own doing) but must go on serving requests, and it stops
 * when the line goes low.
 */
static void test_semaphore_resample_fd(void **state)
{
    struct remote *r = *state;
    int fds[2] = { eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
                   eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE) };
    uint64_t count = 1ull << 40, n;
    const uint32_t bar0 = 0xe0000000;

    assert_int_equal(write(fds[1], &count, sizeof(count)), (ssize_t)sizeof(count));
    raw_send(r->socks[0], MPQEMU_CMD_SET_IRQFD, 0, NULL, 0, fds, 2);
    map_bar0(r->socks[0], bar0);
    raw_bar_write(r->socks[0], true, bar0 + TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_SOFT, 4);
    raw_bar_write(r->socks[0], true, bar0 + TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT, 4);
    for (int i = 0; i < 50; i++) {
        expect_alive(r->socks[0]);
    }
    assert_int_equal(read(fds[0], &n, sizeof(n)), (ssize_t)sizeof(n));
    raw_bar_write(r->socks[0], true, bar0 + TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_SOFT, 4);
    expect_alive(r->socks[0]);
    /* Low now: the resample fd is no longer read. */
    usleep(20000);
    while (read(fds[0], &n, sizeof(n)) == (ssize_t)sizeof(n)) {
    }
    usleep(20000);
    assert_int_equal(read(fds[0], &n, sizeof(n)), -1);
    close_fds(fds, 2);
}

/*
 * A proxy that sends requests without reading the replies until neither
 * side can write: the remote stops reading at its high water with
 * requests read ahead, and must serve every one once the replies drain
 * (no wakeup of the socket says they are there).  Alternate requests ask
 * different bytes, so a lost, repeated or reordered one shows.
 */
static void test_flood_past_the_high_water(void **state)
{
    struct remote *r = *state;
    enum { FRAME = MPQEMU_HDR_SIZE + sizeof(struct mpqemu_pci_conf), CHUNK = 97 * FRAME };
    static uint8_t stream[2 * FRAME + CHUNK];
    uint8_t reply[2 * 24];
    uint64_t sent = 0, frames, replies = 0;
    size_t have = 0;
    int sock = r->socks[0];

    for (int i = 0; i < 2; i++) {
        struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_PCI_CFGREAD,
                                .size = sizeof(struct mpqemu_pci_conf) };
        struct mpqemu_pci_conf c = { .addr = i ? 0 : 0x0a, .len = i ? 4 : 2 };

        memcpy(stream + i * FRAME, &h, sizeof(h));
        memcpy(stream + i * FRAME + sizeof(h), &c, sizeof(c));
    }
    for (size_t i = 2 * FRAME; i < sizeof(stream); i++) {
        stream[i] = stream[i % (2 * FRAME)];
    }
    /* Both directions fill: the remote holds replies over its high water. */
    for (;;) {
        ssize_t n = send(sock, stream + sent % (2 * FRAME), CHUNK, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        sent += (uint64_t)n;
    }
    frames = (sent + FRAME - 1) / FRAME;
    assert_true(frames > 4000);     /* more replies than the high water (64 KiB) holds */
    /* Read every reply, finishing the last request as the remote reads again. */
    while (replies < frames) {
        struct pollfd pfd = { .fd = sock, .events = POLLIN | (sent % FRAME ? POLLOUT : 0) };
        ssize_t n;

        assert_int_equal(poll(&pfd, 1, 5000), 1);   /* a request left unserved hangs here */
        if (pfd.revents & POLLOUT) {
            n = send(sock, stream + sent % (2 * FRAME), FRAME - sent % FRAME,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                sent += (uint64_t)n;
            }
        }
        if (!(pfd.revents & POLLIN)) {
            continue;
        }
        n = recv(sock, reply + have, sizeof(reply) - have, MSG_DONTWAIT);
        assert_true(n > 0);
        have += (size_t)n;
        while (have >= 24) {
            struct mpqemu_hdr h;
            uint64_t v;

            memcpy(&h, reply, sizeof(h));
            memcpy(&v, reply + sizeof(h), sizeof(v));
            assert_int_equal(h.cmd, MPQEMU_CMD_RET);
            assert_int_equal(h.size, 8);
            assert_int_equal(v, replies % 2 ? (uint32_t)TESTDEV_DEVICE << 16 | TESTDEV_VENDOR
                                            : (uint32_t)(TESTDEV_CLASS >> 8));
            replies++;
            have -= 24;
            memmove(reply, reply + 24, have);
        }
    }
    assert_int_equal(have, 0);
    expect_alive(sock);
}

/* A remote whose stderr goes to a file of the test's, to read what it logged. */
struct logged_remote {
    struct remote r;            /* first: teardown() takes it for a struct remote */
    int log;
};

static int setup_logged(void **state)
{
    struct logged_remote *l = calloc(1, sizeof(*l));
    char path[] = "/tmp/mpqemu-hostile-log-XXXXXX";
    int saved = dup(STDERR_FILENO);

    l->log = mkstemp(path);
    assert_true(l->log >= 0 && saved >= 0);
    unlink(path);
    assert_int_equal(dup2(l->log, STDERR_FILENO), STDERR_FILENO);
    remote_start(&l->r, 1, testdev_args);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    *state = l;
    return 0;
}

static int teardown_logged(void **state)
{
    struct logged_remote *l = *state;

    close(l->log);
    return teardown(state);
}

/* Whether the remote has logged text so far. */
static bool logged(const struct logged_remote *l, const char *text)
{
    static char buf[65536];
    ssize_t n = pread(l->log, buf, sizeof(buf) - 1, 0);

    assert_true(n >= 0);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t bar_read(int sock, uint64_t addr)
{
    struct mpqemu_bar_access a = { .addr = addr, .size = 4, .memory = 1 };

    raw_send(sock, MPQEMU_CMD_BAR_READ, sizeof(a), &a, sizeof(a), NULL, 0);
    return (uint32_t)raw_ret(sock);
}

/* Reads an eventfd the test made blocking, once poll() says it holds a count. */
static uint64_t read_fired(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    uint64_t n = 0;

    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_int_equal(read(fd, &n, sizeof(n)), (ssize_t)sizeof(n));
    return n;
}

/*
 * The proxy shares the open file of each eventfd it sends: it can clear
 * O_NONBLOCK after the remote received them.  The remote's reads and writes
 * of those eventfds must still never block it: a rising edge (the resample
 * fd drained, read while empty) and an irqfd whose counter is full (the
 * write cannot add one; the interrupt is pending there already).  Each
 * request is answered promptly, the full irqfd is logged, and interrupts
 * work as before once the proxy reads its irqfd again.
 */
static void test_eventfds_made_blocking_by_the_proxy(void **state)
{
    struct logged_remote *l = *state;
    int sock = l->r.socks[0];
    int fds[2] = { eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) };
    uint64_t full = UINT64_MAX - 1, one = 1, n, t0;
    const uint32_t bar0 = 0xe0000000;
    struct mpqemu_bar_access raise = { .addr = bar0 + TESTDEV_REG_IRQ_RAISE,
                                       .val = TESTDEV_IRQ_SOFT, .size = 4, .memory = 1 };
    struct pollfd pfd = { .fd = sock, .events = POLLIN };

    raw_send(sock, MPQEMU_CMD_SET_IRQFD, 0, NULL, 0, fds, 2);
    map_bar0(sock, bar0);
    expect_alive(sock);
    /* The proxy clears O_NONBLOCK on the files it shares with the remote. */
    assert_int_equal(fcntl(fds[0], F_SETFL, 0), 0);
    assert_int_equal(fcntl(fds[1], F_SETFL, 0), 0);
    raw_bar_write(sock, true, bar0 + TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_SOFT, 4);
    /* A rising edge drains the empty resample fd. */
    raw_bar_write(sock, true, bar0 + TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT, 4);
    expect_alive(sock);
    assert_int_equal(read_fired(fds[0]), 1);
    raw_bar_write(sock, true, bar0 + TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_SOFT, 4);
    /* An irqfd whose counter cannot take one more, then a rising edge signals it. */
    assert_int_equal(write(fds[0], &full, sizeof(full)), (ssize_t)sizeof(full));
    t0 = monotonic_ms();
    raw_send(sock, MPQEMU_CMD_BAR_WRITE, sizeof(raise), &raise, sizeof(raise), NULL, 0);
    if (poll(&pfd, 1, 3000) != 1) {
        /* Let the remote go on before failing: it is stuck in write() on the irqfd. */
        assert_int_equal(read(fds[0], &n, sizeof(n)), (ssize_t)sizeof(n));
        fail_msg("the remote blocked on the proxy's irqfd");
    }
    raw_ret(sock);
    /* A tick or two of the write's timer (1 ms), not a hang; generous for loaded machines. */
    assert_true(monotonic_ms() - t0 < 1000);
    /* It answers register reads: the interrupt is raised, and pending in the irqfd. */
    assert_int_equal(bar_read(sock, bar0 + TESTDEV_REG_IRQ_STATUS), TESTDEV_IRQ_SOFT);
    expect_alive(sock);
    assert_true(logged(l, "irqfd: its counter is at its maximum"));
    assert_int_equal(read_fired(fds[0]), full);
    /* The guest's EOI with the line still high signals again, into a counter with room. */
    assert_int_equal(write(fds[1], &one, sizeof(one)), (ssize_t)sizeof(one));
    assert_int_equal(read_fired(fds[0]), 1);
    raw_bar_write(sock, true, bar0 + TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_SOFT, 4);
    expect_alive(sock);
    close_fds(fds, 2);
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
        CASE(test_burst_in_one_write),
        CASE(test_split_byte_by_byte),
        CASE(test_semaphore_resample_fd),
        CASE(test_flood_past_the_high_water),
        cmocka_unit_test_setup_teardown(test_eventfds_made_blocking_by_the_proxy, setup_logged,
                                        teardown_logged),
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
