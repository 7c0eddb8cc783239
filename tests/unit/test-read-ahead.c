// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The mpqemu reader's read-ahead against the ways a peer can split bytes
 * and fds across its sends.  Each fd is a memfd whose size names the send
 * that carried it, so that where it lands can be checked:
 *
 * - a sender like QEMU's (each message in its own sends, its fds with the
 *   first) gets every message with exactly its own fds, whatever the split;
 * - any other sender (sends that span messages, fds anywhere, too many,
 *   EOF anywhere) gets each fd given to one message whose bytes its send
 *   carried, or closed, never lost or leaked, and never more than 8 on a
 *   message.
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/mpqemu-wire.h"

enum { MAX_MSGS = 24, MAX_SENDS = 4 * MAX_MSGS + 1, STREAM_MAX = MAX_MSGS * 208 };

static uint64_t seed;

static uint32_t rnd(uint32_t n)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return n ? (uint32_t)(seed >> 33) % n : 0;
}

static int lowest_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    close(fd);
    return fd;
}

/* A memfd whose size is 'tag' + 1 (a send's number): where it came from. */
static int tagged_fd(unsigned tag)
{
    int fd = memfd_create("tag", MFD_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)tag + 1), 0);
    return fd;
}

static unsigned tag_of(int fd)
{
    struct stat st;

    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_size >= 1);
    return (unsigned)st.st_size - 1;
}

struct stream {
    uint8_t bytes[STREAM_MAX];
    size_t len;
    size_t msg_start[MAX_MSGS + 1];     /* message i: [msg_start[i], msg_start[i + 1]) */
    int32_t cmd[MAX_MSGS];
    size_t n_msgs;
    /* Send j: bytes [send_start[j], send_start[j + 1]), send_fds[j] fds tagged j. */
    size_t send_start[MAX_SENDS + 1];
    unsigned send_fds[MAX_SENDS];
    size_t n_sends;
};

/* Messages of every size the protocol has (a command that lies is still framed by its size). */
static void make_messages(struct stream *s)
{
    static const uint64_t sizes[] = { 0, 12, 24, 192, 8, 1 };

    s->len = 0;
    s->n_msgs = 2 + rnd(MAX_MSGS - 1);
    for (size_t i = 0; i < s->n_msgs; i++) {
        struct mpqemu_hdr h = { .cmd = (int32_t)rnd(MPQEMU_CMD_MAX), .size = sizes[rnd(6)] };

        s->msg_start[i] = s->len;
        s->cmd[i] = h.cmd;
        memcpy(s->bytes + s->len, &h, sizeof(h));
        for (size_t b = 0; b < h.size; b++) {
            s->bytes[s->len + sizeof(h) + b] = (uint8_t)(i + b);
        }
        s->len += sizeof(h) + h.size;
    }
    s->msg_start[s->n_msgs] = s->len;
}

/* QEMU's way: each message in one to three sends, its fds (0 to 8) with the first. */
static void split_like_qemu(struct stream *s)
{
    s->n_sends = 0;
    for (size_t i = 0; i < s->n_msgs; i++) {
        size_t at = s->msg_start[i], end = s->msg_start[i + 1];
        unsigned fds = rnd(3) ? 0 : 1 + rnd(8);

        for (int part = 0; at < end; part++) {
            size_t left = end - at, n = rnd(3) && part < 3 ? left : 1 + rnd((uint32_t)left);

            if (part == 3) {
                n = left;
            }

            s->send_start[s->n_sends] = at;
            s->send_fds[s->n_sends++] = fds;
            fds = 0;
            at += n;
        }
    }
    s->send_start[s->n_sends] = s->len;
}

/* Anyone's way: cuts anywhere, fds on any send, sometimes more than 8 for a message. */
static void split_anyhow(struct stream *s)
{
    size_t at = 0;

    s->n_sends = 0;
    while (at < s->len && s->n_sends < MAX_SENDS - 1) {
        size_t left = s->len - at, n;

        switch (rnd(4)) {
        case 0: n = 1 + rnd(16); break;
        case 1: n = 1 + rnd(300); break;
        case 2: n = 1 + rnd(1500); break;
        default: n = left; break;
        }
        if (n > left) {
            n = left;
        }
        s->send_start[s->n_sends] = at;
        s->send_fds[s->n_sends++] = rnd(3) ? 0 : 1 + rnd(rnd(8) ? 4 : 10);
        at += n;
    }
    if (at < s->len) {
        s->send_start[s->n_sends] = at;
        s->send_fds[s->n_sends++] = 0;
    }
    s->send_start[s->n_sends] = s->len;
}

static void do_send(int sock, const struct stream *s, size_t j)
{
    int fds[10];
    struct iovec iov = { .iov_base = (void *)(s->bytes + s->send_start[j]),
                         .iov_len = s->send_start[j + 1] - s->send_start[j] };

    for (unsigned k = 0; k < s->send_fds[j]; k++) {
        fds[k] = tagged_fd((unsigned)j);
    }
    assert_int_equal(sock_send(sock, &iov, 1, fds, s->send_fds[j], MSG_DONTWAIT),
                     (ssize_t)iov.iov_len);
    close_fds(fds, s->send_fds[j]);
}

/*
 * Sends the stream, reading between sends as a loop would, then ends it
 * (EOF or a reader reset as at a connection's end).  'strict': the fds of
 * each message are exactly those of its first send.
 */
static void run(struct stream *s, bool strict)
{
    struct mpqemu_reader *r = malloc(sizeof(*r));
    size_t sent = 0, got = 0;
    int sv[2], lowest = lowest_free_fd();
    bool failed = false, errored = false, eof = rnd(2);

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    mpqemu_reader_init_read_ahead(r);
    while (!failed) {
        struct mpqemu_msg m;
        char *err = NULL;
        enum mpqemu_read_result res;

        /* Send a few, then read a few: what the reader holds varies. */
        for (uint32_t k = rnd(4); k > 0 && sent < s->n_sends; k--) {
            do_send(sv[0], s, sent++);
        }
        if (sent == s->n_sends && eof) {
            shutdown(sv[0], SHUT_WR);
        }
        res = mpqemu_reader_read(r, sv[1], &m, &err);
        switch (res) {
        case MPQEMU_READ_MSG: {
            size_t first = s->msg_start[got], last = s->msg_start[got + 1] - 1;

            assert_true(got < s->n_msgs);
            assert_int_equal(m.hdr.cmd, s->cmd[got]);
            assert_memory_equal(&m, s->bytes + first, last + 1 - first);
            assert_true(m.nfds <= MPQEMU_MAX_FDS);
            for (size_t k = 0; k < m.nfds; k++) {
                unsigned j = tag_of(m.fds[k]);

                /* The send that carried it carried bytes of this message. */
                assert_true(j < s->n_sends);
                assert_true(s->send_start[j] <= last && s->send_start[j + 1] > first);
            }
            if (strict) {
                size_t j = 0;

                while (s->send_start[j] != first) {
                    j++;
                }
                assert_int_equal(m.nfds, s->send_fds[j]);
                for (size_t k = 0; k < m.nfds; k++) {
                    assert_int_equal(tag_of(m.fds[k]), j);
                }
            }
            close_fds(m.fds, m.nfds);
            got++;
            break;
        }
        case MPQEMU_READ_AGAIN:
            assert_false(mpqemu_reader_buffered(r));
            if (sent == s->n_sends && !eof) {
                failed = true;      /* all sent and read: the connection ends here */
            }
            break;
        case MPQEMU_READ_EOF:
            assert_int_equal(got, s->n_msgs);
            failed = true;
            break;
        case MPQEMU_READ_ERROR:
            assert_non_null(err);
            /* Only too many fds for one message can fail a stream of whole messages. */
            assert_false(strict);
            assert_non_null(strstr(err, "more than 8 fds"));
            failed = errored = true;
            break;
        }
        free(err);
    }
    if (!errored) {
        assert_int_equal(got, s->n_msgs);
    }
    mpqemu_reader_reset(r);
    free(r);
    close(sv[0]);
    close(sv[1]);
    /* Nothing received stayed open. */
    assert_int_equal(lowest_free_fd(), lowest);
}

static void test_qemu_like_sender(void **state)
{
    static struct stream s;

    (void)state;
    seed = 1;
    for (int i = 0; i < 3000; i++) {
        make_messages(&s);
        split_like_qemu(&s);
        run(&s, true);
    }
}

static void test_any_sender(void **state)
{
    static struct stream s;

    (void)state;
    seed = 2;
    for (int i = 0; i < 3000; i++) {
        make_messages(&s);
        split_anyhow(&s);
        run(&s, false);
    }
}

/* Fds sent with a header alone go with that message; the next one, sent with its payload, has none. */
static void test_fds_with_a_header_alone(void **state)
{
    static struct stream s;

    (void)state;
    make_messages(&s);
    s.n_msgs = 2;
    memcpy(s.bytes, &(struct mpqemu_hdr){ .cmd = MPQEMU_CMD_SET_IRQFD, .size = 0 }, 16);
    memcpy(s.bytes + 16, &(struct mpqemu_hdr){ .cmd = MPQEMU_CMD_SYNC_SYSMEM, .size = 192 }, 16);
    s.cmd[0] = MPQEMU_CMD_SET_IRQFD;
    s.cmd[1] = MPQEMU_CMD_SYNC_SYSMEM;
    s.msg_start[1] = 16;
    s.msg_start[2] = s.len = 16 + 16 + 192;
    /* The SYNC_SYSMEM's header with 3 fds, then its payload. */
    s.n_sends = 3;
    s.send_start[0] = 0;
    s.send_fds[0] = 2;
    s.send_start[1] = 16;
    s.send_fds[1] = 3;
    s.send_start[2] = 32;
    s.send_fds[2] = 0;
    s.send_start[3] = s.len;
    for (int i = 0; i < 50; i++) {
        run(&s, true);
    }
}

/* EOF with the fds of a message whose bytes are not all there: closed, an error. */
static void test_eof_with_fds_pending(void **state)
{
    struct mpqemu_hdr h = { .cmd = MPQEMU_CMD_SYNC_SYSMEM, .size = 192 };
    struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
    struct mpqemu_reader r;
    struct mpqemu_msg m;
    int sv[2], fds[3], lowest;
    char *err = NULL;

    (void)state;
    for (int i = 0; i < 3; i++) {
        fds[i] = tagged_fd(0);
    }
    lowest = fds[0];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(sock_send(sv[0], &iov, 1, fds, 3, 0), (ssize_t)sizeof(h));
    close_fds(fds, 3);
    shutdown(sv[0], SHUT_WR);
    mpqemu_reader_init_read_ahead(&r);
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &m, &err), MPQEMU_READ_ERROR);
    assert_non_null(strstr(err, "middle of a message"));
    free(err);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(lowest_free_fd(), lowest);
}

/*
 * A bad header behind a good message, its payload not there (nor ever
 * coming): held, it must say so, or the loop would sleep on it.
 */
static void test_bad_header_held_without_its_payload(void **state)
{
    struct mpqemu_hdr h[2] = { { .cmd = MPQEMU_CMD_DEVICE_RESET }, { .cmd = 99, .size = 24 } };
    struct mpqemu_reader r;
    struct mpqemu_msg m;
    int sv[2];
    char *err = NULL;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[0], h, sizeof(h)), (ssize_t)sizeof(h));
    mpqemu_reader_init_read_ahead(&r);
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &m, NULL), MPQEMU_READ_MSG);
    assert_int_equal(m.hdr.cmd, MPQEMU_CMD_DEVICE_RESET);
    assert_true(mpqemu_reader_buffered(&r));
    assert_int_equal(mpqemu_reader_read(&r, sv[1], &m, &err), MPQEMU_READ_ERROR);
    assert_non_null(strstr(err, "unknown command 99"));
    free(err);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qemu_like_sender),
        cmocka_unit_test(test_any_sender),
        cmocka_unit_test(test_fds_with_a_header_alone),
        cmocka_unit_test(test_eof_with_fds_pending),
        cmocka_unit_test(test_bad_header_held_without_its_payload),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
