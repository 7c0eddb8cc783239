// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/mpqemu-wire.h"
#include "proto/vfio-user-wire.h"

static int sv[2];

static int setup_pair(void **state)
{
    (void)state;
    return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
}

static int teardown_pair(void **state)
{
    (void)state;
    close(sv[0]);
    close(sv[1]);
    return 0;
}

static void expect_request_error(struct mpqemu_msg *m, const char *needle)
{
    char *err = NULL;

    assert_int_equal(mpqemu_check_request(m, &err), -1);
    assert_non_null(err);
    if (!strstr(err, needle)) {
        fail_msg("error '%s' does not mention '%s'", err, needle);
    }
    free(err);
}

/* The next read from the pair fails, and says why with 'needle'. */
static void expect_read_error(struct mpqemu_reader *r, const char *needle)
{
    struct mpqemu_msg got;
    char *err = NULL;

    assert_int_equal(mpqemu_reader_read(r, sv[1], &got, &err), MPQEMU_READ_ERROR);
    assert_non_null(err);
    if (!strstr(err, needle)) {
        fail_msg("error '%s' does not mention '%s'", err, needle);
    }
    free(err);
}

static void test_request_shapes(void **state)
{
    struct mpqemu_msg m;

    (void)state;
    mpqemu_msg_init(&m, MPQEMU_CMD_PCI_CFGREAD, 12);
    assert_int_equal(mpqemu_check_request(&m, NULL), 0);
    m.hdr.size = 8;
    expect_request_error(&m, "payload size 8, expected 12");
    mpqemu_msg_init(&m, MPQEMU_CMD_BAR_READ, 24);
    assert_int_equal(mpqemu_check_request(&m, NULL), 0);
    m.nfds = 1;
    expect_request_error(&m, "carries 1 fds, expected 0");
    mpqemu_msg_init(&m, MPQEMU_CMD_SYNC_SYSMEM, 192);
    expect_request_error(&m, "expected 1 to 8");
    m.nfds = 8;
    assert_int_equal(mpqemu_check_request(&m, NULL), 0);
    mpqemu_msg_init(&m, MPQEMU_CMD_SET_IRQFD, 0);
    m.nfds = 1;
    expect_request_error(&m, "expected 2");
    mpqemu_msg_init(&m, MPQEMU_CMD_RET, 8);
    expect_request_error(&m, "reply");
    mpqemu_msg_init(&m, MPQEMU_CMD_DEVICE_RESET, 0);
    assert_int_equal(mpqemu_check_request(&m, NULL), 0);
    m.hdr.cmd = 99;
    expect_request_error(&m, "unknown command 99");
    m.hdr.cmd = -3;
    expect_request_error(&m, "unknown command -3");
    mpqemu_msg_init(&m, MPQEMU_CMD_BAR_WRITE, 193);
    expect_request_error(&m, "exceeds the maximum of 192");
}

static void test_reply_shapes(void **state)
{
    struct mpqemu_msg m;

    (void)state;
    mpqemu_msg_init(&m, MPQEMU_CMD_RET, 8);
    assert_int_equal(mpqemu_check_reply(&m, NULL), 0);
    m.hdr.size = 0;     /* DEVICE_RESET's reply */
    assert_int_equal(mpqemu_check_reply(&m, NULL), 0);
    m.hdr.size = 4;
    assert_int_equal(mpqemu_check_reply(&m, NULL), -1);
    mpqemu_msg_init(&m, MPQEMU_CMD_PCI_CFGREAD, 12);
    assert_int_equal(mpqemu_check_reply(&m, NULL), -1);
}

static void test_roundtrip_with_fds(void **state)
{
    struct mpqemu_msg m, got;
    struct mpqemu_reader r;
    int efd = eventfd(0, 0), efd2 = eventfd(0, 0);

    (void)state;
    mpqemu_msg_init(&m, MPQEMU_CMD_SET_IRQFD, 0);
    m.fds[0] = efd;
    m.fds[1] = efd2;
    m.nfds = 2;
    assert_int_equal(mpqemu_send(sv[0], &m), 0);
    mpqemu_msg_init(&m, MPQEMU_CMD_PCI_CFGWRITE, 12);
    m.data.conf = (struct mpqemu_pci_conf){ .addr = 4, .val = 7, .len = 2 };
    assert_int_equal(mpqemu_send(sv[0], &m), 0);

    mpqemu_reader_init(&r);
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_MSG);
    assert_int_equal(got.hdr.cmd, MPQEMU_CMD_SET_IRQFD);
    assert_int_equal(got.nfds, 2);
    assert_int_equal(mpqemu_check_request(&got, NULL), 0);
    close_fds(got.fds, got.nfds);
    /* The fds of the first message must not leak into the second. */
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_MSG);
    assert_int_equal(got.hdr.cmd, MPQEMU_CMD_PCI_CFGWRITE);
    assert_int_equal(got.nfds, 0);
    assert_int_equal(got.data.conf.val, 7);
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_AGAIN);
    close(efd);
    close(efd2);
}

static void test_message_split_across_writes(void **state)
{
    struct mpqemu_msg m, got;
    struct mpqemu_reader r;
    const uint8_t *bytes = (const uint8_t *)&m;

    (void)state;
    mpqemu_msg_init(&m, MPQEMU_CMD_BAR_READ, 24);
    m.data.bar.addr = 0xc000;
    m.data.bar.size = 4;
    mpqemu_reader_init(&r);
    for (size_t i = 0; i < 40; i++) {
        assert_int_equal(write(sv[0], bytes + i, 1), 1);
        assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL),
                         i == 39 ? MPQEMU_READ_MSG : MPQEMU_READ_AGAIN);
    }
    assert_true(got.data.bar.addr == 0xc000);
}

static void test_eof_between_and_within_messages(void **state)
{
    struct mpqemu_msg m, got;
    struct mpqemu_reader r;

    (void)state;
    mpqemu_reader_init(&r);
    mpqemu_msg_init(&m, MPQEMU_CMD_PCI_CFGREAD, 12);
    assert_int_equal(write(sv[0], &m, 20), 20);   /* header + 4 of 12 payload bytes */
    shutdown(sv[0], SHUT_WR);
    expect_read_error(&r, "middle of a message");

    teardown_pair(NULL);
    assert_int_equal(setup_pair(NULL), 0);
    shutdown(sv[0], SHUT_WR);
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_EOF);
}

static void test_oversize_header_rejected_before_payload(void **state)
{
    struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_PCI_CFGREAD, .size = 1ull << 40 };
    struct mpqemu_reader r;

    (void)state;
    mpqemu_reader_init(&r);
    assert_int_equal(write(sv[0], &h, sizeof(h)), (ssize_t)sizeof(h));
    expect_read_error(&r, "exceeds");
}

static void test_nine_fds_rejected_and_closed(void **state)
{
    struct mpqemu_reader r;
    struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_SYNC_SYSMEM, .size = 0 };
    struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
    int fds[9];

    (void)state;
    for (int i = 0; i < 9; i++) {
        fds[i] = eventfd(0, 0);
    }
    assert_true(sock_send(sv[0], &iov, 1, fds, 9, 0) == (ssize_t)sizeof(h));
    mpqemu_reader_init(&r);
    expect_read_error(&r, "more than 8 fds");
    /* Every received fd was closed: the lowest free fd is back where it was. */
    for (int i = 0; i < 9; i++) {
        close(fds[i]);
    }
    {
        int probe = eventfd(0, 0);

        assert_true(probe <= fds[0]);
        close(probe);
    }
}

/* Read-ahead: the reader of a server, on a non-blocking socket. */

static void send_frame(int sock, int32_t cmd, uint64_t size, uint32_t tag, const int *fds,
                       size_t nfds)
{
    struct mpqemu_msg m;
    struct iovec iov = { .iov_base = &m, .iov_len = MPQEMU_HDR_SIZE + size };

    mpqemu_msg_init(&m, cmd, size);
    if (size >= sizeof(tag)) {
        memcpy(&m.data, &tag, sizeof(tag));
    }
    assert_int_equal(sock_send(sock, &iov, 1, fds, nfds, 0), (ssize_t)iov.iov_len);
}

static void expect_msg(struct mpqemu_reader *r, int32_t cmd, uint32_t tag, size_t nfds)
{
    struct mpqemu_msg got;
    uint32_t got_tag = 0;

    assert_int_equal(mpqemu_reader_read(r, sv[1], &got, NULL), MPQEMU_READ_MSG);
    assert_int_equal(got.hdr.cmd, cmd);
    if (got.hdr.size >= sizeof(got_tag)) {
        memcpy(&got_tag, &got.data, sizeof(got_tag));
        assert_int_equal(got_tag, tag);
    }
    assert_int_equal(got.nfds, nfds);
    close_fds(got.fds, got.nfds);
}

static int lowest_free_fd(void)
{
    int fd = eventfd(0, 0);

    close(fd);
    return fd;
}

/* A burst is read in one go and served whole; each message's fds stay its own. */
static void test_read_ahead_burst(void **state)
{
    struct mpqemu_reader r;
    struct mpqemu_msg got;
    int efd[2] = { eventfd(0, 0), eventfd(0, 0) }, lowest;

    (void)state;
    send_frame(sv[0], MPQEMU_CMD_BAR_WRITE, 24, 1, NULL, 0);
    send_frame(sv[0], MPQEMU_CMD_SET_IRQFD, 0, 0, efd, 2);
    send_frame(sv[0], MPQEMU_CMD_PCI_CFGREAD, 12, 3, NULL, 0);
    send_frame(sv[0], MPQEMU_CMD_SYNC_SYSMEM, 192, 4, efd, 1);
    send_frame(sv[0], MPQEMU_CMD_DEVICE_RESET, 0, 0, NULL, 0);
    send_frame(sv[0], MPQEMU_CMD_BAR_READ, 24, 6, NULL, 0);
    close_fds(efd, 2);
    lowest = lowest_free_fd();
    mpqemu_reader_init_read_ahead(&r);
    assert_false(mpqemu_reader_buffered(&r));
    expect_msg(&r, MPQEMU_CMD_BAR_WRITE, 1, 0);
    expect_msg(&r, MPQEMU_CMD_SET_IRQFD, 0, 2);
    expect_msg(&r, MPQEMU_CMD_PCI_CFGREAD, 3, 0);
    expect_msg(&r, MPQEMU_CMD_SYNC_SYSMEM, 4, 1);
    expect_msg(&r, MPQEMU_CMD_DEVICE_RESET, 0, 0);
    expect_msg(&r, MPQEMU_CMD_BAR_READ, 6, 0);
    assert_false(mpqemu_reader_buffered(&r));
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_AGAIN);
    /* Every fd received went to its message and was closed there. */
    assert_int_equal(lowest_free_fd(), lowest);
}

/* Without fds, messages sent together come in one receive: the rest is buffered. */
static void test_read_ahead_buffers_what_came(void **state)
{
    struct mpqemu_reader r;
    struct mpqemu_msg got;

    (void)state;
    for (uint32_t i = 0; i < 10; i++) {
        send_frame(sv[0], MPQEMU_CMD_BAR_READ, 24, i, NULL, 0);
    }
    mpqemu_reader_init_read_ahead(&r);
    for (uint32_t i = 0; i < 10; i++) {
        expect_msg(&r, MPQEMU_CMD_BAR_READ, i, 0);
        assert_int_equal(mpqemu_reader_buffered(&r), i < 9);
    }
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_AGAIN);
}

static void test_read_ahead_byte_by_byte(void **state)
{
    struct mpqemu_msg m, got;
    struct mpqemu_reader r;
    const uint8_t *bytes = (const uint8_t *)&m;

    (void)state;
    mpqemu_msg_init(&m, MPQEMU_CMD_BAR_READ, 24);
    m.data.bar.addr = 0xc000;
    mpqemu_reader_init_read_ahead(&r);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < 40; i++) {
            assert_int_equal(write(sv[0], bytes + i, 1), 1);
            assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL),
                             i == 39 ? MPQEMU_READ_MSG : MPQEMU_READ_AGAIN);
            assert_false(mpqemu_reader_buffered(&r));
        }
        assert_true(got.data.bar.addr == 0xc000);
    }
}

/*
 * Fds that come with the second half of their message, and fds sent with
 * bytes of two messages (a peer's choice QEMU never makes): each batch goes
 * to one message, none is lost or leaked.
 */
static void test_read_ahead_fds_split(void **state)
{
    struct mpqemu_msg m[2];
    struct mpqemu_reader r;
    struct mpqemu_msg got;
    int efd[2] = { eventfd(0, 0), eventfd(0, 0) }, lowest;
    struct iovec iov;
    size_t total = 0;

    (void)state;
    mpqemu_msg_init(&m[0], MPQEMU_CMD_SYNC_SYSMEM, 192);
    iov = (struct iovec){ &m[0], 100 };
    assert_int_equal(sock_send(sv[0], &iov, 1, NULL, 0, 0), 100);
    iov = (struct iovec){ (uint8_t *)&m[0] + 100, 108 };
    assert_int_equal(sock_send(sv[0], &iov, 1, efd, 1, 0), 108);
    /* The tail of a BAR_READ and the head of a SET_IRQFD, with two fds. */
    mpqemu_msg_init(&m[0], MPQEMU_CMD_BAR_READ, 24);
    mpqemu_msg_init(&m[1], MPQEMU_CMD_SET_IRQFD, 0);
    iov = (struct iovec){ &m[0], 30 };
    assert_int_equal(sock_send(sv[0], &iov, 1, NULL, 0, 0), 30);
    {
        uint8_t mixed[10 + 8];

        memcpy(mixed, (uint8_t *)&m[0] + 30, 10);
        memcpy(mixed + 10, &m[1], 8);
        iov = (struct iovec){ mixed, sizeof(mixed) };
        assert_int_equal(sock_send(sv[0], &iov, 1, efd, 2, 0), (ssize_t)sizeof(mixed));
    }
    iov = (struct iovec){ (uint8_t *)&m[1] + 8, 8 };
    assert_int_equal(sock_send(sv[0], &iov, 1, NULL, 0, 0), 8);
    close_fds(efd, 2);
    lowest = lowest_free_fd();

    mpqemu_reader_init_read_ahead(&r);
    expect_msg(&r, MPQEMU_CMD_SYNC_SYSMEM, 0, 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_MSG);
        assert_int_equal(got.hdr.cmd, i ? MPQEMU_CMD_SET_IRQFD : MPQEMU_CMD_BAR_READ);
        total += got.nfds;
        assert_true(got.nfds == 0 || got.nfds == 2);
        close_fds(got.fds, got.nfds);
    }
    assert_int_equal(total, 2);
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_AGAIN);
    assert_int_equal(lowest_free_fd(), lowest);
}

/* Nine fds for one message, whichever way they are split, end it. */
static void test_read_ahead_nine_fds(void **state)
{
    struct mpqemu_msg m;
    struct mpqemu_reader r;
    int fds[9], lowest;
    struct iovec iov;

    (void)state;
    for (int i = 0; i < 9; i++) {
        fds[i] = eventfd(0, 0);
    }
    mpqemu_msg_init(&m, MPQEMU_CMD_SYNC_SYSMEM, 192);
    iov = (struct iovec){ &m, 50 };
    assert_int_equal(sock_send(sv[0], &iov, 1, fds, 5, 0), 50);
    iov = (struct iovec){ (uint8_t *)&m + 50, 158 };
    assert_int_equal(sock_send(sv[0], &iov, 1, fds + 5, 4, 0), 158);
    close_fds(fds, 9);
    lowest = lowest_free_fd();
    mpqemu_reader_init_read_ahead(&r);
    expect_read_error(&r, "more than 8 fds");
    assert_int_equal(lowest_free_fd(), lowest);
}

static void test_read_ahead_eof(void **state)
{
    struct mpqemu_reader r;
    struct mpqemu_msg got;

    (void)state;
    send_frame(sv[0], MPQEMU_CMD_BAR_READ, 24, 7, NULL, 0);
    assert_int_equal(write(sv[0], "\4\0\0\0", 4), 4);    /* a header begun */
    shutdown(sv[0], SHUT_WR);
    mpqemu_reader_init_read_ahead(&r);
    expect_msg(&r, MPQEMU_CMD_BAR_READ, 7, 0);
    expect_read_error(&r, "middle of a message");

    teardown_pair(NULL);
    assert_int_equal(setup_pair(NULL), 0);
    send_frame(sv[0], MPQEMU_CMD_DEVICE_RESET, 0, 0, NULL, 0);
    shutdown(sv[0], SHUT_WR);
    mpqemu_reader_init_read_ahead(&r);
    expect_msg(&r, MPQEMU_CMD_DEVICE_RESET, 0, 0);
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &got, NULL), MPQEMU_READ_EOF);
}

/* A bad header read ahead behind a good message: that one is served, then the error. */
static void test_read_ahead_bad_header_after_good(void **state)
{
    struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_PCI_CFGREAD, .size = 1ull << 40 };
    struct mpqemu_reader r;

    (void)state;
    send_frame(sv[0], MPQEMU_CMD_BAR_READ, 24, 9, NULL, 0);
    assert_int_equal(write(sv[0], &h, sizeof(h)), (ssize_t)sizeof(h));
    mpqemu_reader_init_read_ahead(&r);
    expect_msg(&r, MPQEMU_CMD_BAR_READ, 9, 0);
    assert_true(mpqemu_reader_buffered(&r));
    expect_read_error(&r, "exceeds");
}

/* vfio-user's reader with read-ahead: a message of 'size' bytes whose body is 'fill'. */
static void vu_send(uint16_t id, uint16_t cmd, size_t size, uint8_t fill, const int *fds,
                    size_t nfds, size_t split)
{
    uint8_t *m = malloc(size);
    struct vfio_user_hdr h = { .id = id, .cmd = cmd, .size = (uint32_t)size };
    struct iovec iov;

    memcpy(m, &h, sizeof(h));
    memset(m + sizeof(h), fill, size - sizeof(h));
    /* split: the first 'split' bytes go alone, the fds with the rest */
    if (split) {
        iov = (struct iovec){ m, split };
        assert_int_equal(sock_send(sv[0], &iov, 1, NULL, 0, 0), (ssize_t)split);
    }
    iov = (struct iovec){ m + split, size - split };
    assert_int_equal(sock_send(sv[0], &iov, 1, fds, nfds, 0), (ssize_t)(size - split));
    free(m);
}

static void vu_expect(struct vfio_user_reader *r, uint16_t id, size_t size, uint8_t fill,
                      size_t nfds)
{
    struct vfio_user_msg m;

    assert_int_equal(vfio_user_reader_read(r, sv[1], &m, NULL), VFIO_USER_READ_MSG);
    assert_int_equal(m.hdr.id, id);
    assert_int_equal(m.body_len, size - VFIO_USER_HDR_SIZE);
    for (size_t i = 0; i < m.body_len; i++) {
        if (m.body[i] != fill) {
            fail_msg("message %u: byte %zu is %u, not %u", id, i, m.body[i], fill);
        }
    }
    assert_int_equal(m.nfds, nfds);
    close_fds(m.fds, m.nfds);
}

/*
 * Small messages, one with fds, and messages larger than the read-ahead
 * (read exactly once their header is in, fds in their middle): each comes
 * whole with its own fds, and nothing is left.
 */
static void test_vfio_user_read_ahead(void **state)
{
    struct vfio_user_reader r;
    struct vfio_user_msg m;
    int efd[2] = { eventfd(0, 0), eventfd(0, 0) }, lowest;

    (void)state;
    vu_send(1, VFIO_USER_REGION_WRITE, 33, 0x11, NULL, 0, 0);
    vu_send(2, VFIO_USER_DEVICE_SET_IRQS, 36, 0x22, efd, 1, 0);
    vu_send(3, VFIO_USER_REGION_READ, 32, 0x33, NULL, 0, 0);
    vu_send(4, VFIO_USER_REGION_WRITE, 5000, 0x44, efd, 2, 700);
    vu_send(5, VFIO_USER_REGION_WRITE, 40, 0x55, NULL, 0, 0);
    vu_send(6, VFIO_USER_REGION_WRITE, VFIO_USER_READ_AHEAD + 1, 0x66, NULL, 0, 0);
    vu_send(7, VFIO_USER_DEVICE_RESET, 16, 0, NULL, 0, 0);
    close_fds(efd, 2);
    lowest = lowest_free_fd();
    vfio_user_reader_init_read_ahead(&r);
    assert_false(vfio_user_reader_buffered(&r));
    vu_expect(&r, 1, 33, 0x11, 0);
    vu_expect(&r, 2, 36, 0x22, 1);
    vu_expect(&r, 3, 32, 0x33, 0);
    vu_expect(&r, 4, 5000, 0x44, 2);
    vu_expect(&r, 5, 40, 0x55, 0);
    vu_expect(&r, 6, VFIO_USER_READ_AHEAD + 1, 0x66, 0);
    vu_expect(&r, 7, 16, 0, 0);
    assert_false(vfio_user_reader_buffered(&r));
    assert_int_equal(vfio_user_reader_read(&r, sv[1], &m, NULL), VFIO_USER_READ_AGAIN);
    vfio_user_reader_free(&r);
    assert_int_equal(lowest_free_fd(), lowest);
}

static void test_vfio_user_read_ahead_byte_by_byte(void **state)
{
    struct vfio_user_reader r;
    struct vfio_user_msg m;
    uint8_t bytes[40];
    struct vfio_user_hdr h = { .id = 9, .cmd = VFIO_USER_REGION_WRITE, .size = sizeof(bytes) };

    (void)state;
    memset(bytes, 0x77, sizeof(bytes));
    memcpy(bytes, &h, sizeof(h));
    vfio_user_reader_init_read_ahead(&r);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(bytes); i++) {
            assert_int_equal(write(sv[0], bytes + i, 1), 1);
            assert_int_equal(vfio_user_reader_read(&r, sv[1], &m, NULL),
                             i == sizeof(bytes) - 1 ? VFIO_USER_READ_MSG : VFIO_USER_READ_AGAIN);
        }
        assert_int_equal(m.body_len, 24);
        assert_int_equal(m.body[23], 0x77);
    }
    /* A header that lies, behind a good message: that one first, then the error. */
    vu_send(10, VFIO_USER_REGION_READ, 32, 0x10, NULL, 0, 0);
    h.size = 3;
    assert_int_equal(write(sv[0], &h, sizeof(h)), (ssize_t)sizeof(h));
    vu_expect(&r, 10, 32, 0x10, 0);
    assert_true(vfio_user_reader_buffered(&r));
    assert_int_equal(vfio_user_reader_read(&r, sv[1], &m, NULL), VFIO_USER_READ_ERROR);
    vfio_user_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_shapes),
        cmocka_unit_test(test_reply_shapes),
        cmocka_unit_test_setup_teardown(test_roundtrip_with_fds, setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_message_split_across_writes, setup_pair,
                                        teardown_pair),
        cmocka_unit_test_setup_teardown(test_eof_between_and_within_messages, setup_pair,
                                        teardown_pair),
        cmocka_unit_test_setup_teardown(test_oversize_header_rejected_before_payload,
                                        setup_pair, teardown_pair),
        cmocka_unit_test_setup_teardown(test_nine_fds_rejected_and_closed, setup_pair,
                                        teardown_pair),
#define PAIR(t) cmocka_unit_test_setup_teardown(t, setup_pair, teardown_pair)
        PAIR(test_read_ahead_burst),
        PAIR(test_read_ahead_buffers_what_came),
        PAIR(test_read_ahead_byte_by_byte),
        PAIR(test_read_ahead_fds_split),
        PAIR(test_read_ahead_nine_fds),
        PAIR(test_read_ahead_eof),
        PAIR(test_read_ahead_bad_header_after_good),
        PAIR(test_vfio_user_read_ahead),
        PAIR(test_vfio_user_read_ahead_byte_by_byte),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
