// SPDX-License-Identifier: GPL-2.0-or-later
/* Several devices in one remote process, each on its own socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "harness.h"
#include "hw/testdev.h"
#include "proto/mpqemu-wire.h"

static uint64_t rd(struct mpq_dev *d, uint64_t off)
{
    uint64_t v = 0;
    char *err = NULL;

    if (mpq_bar_read(d, 0, off, 4, &v, &err) < 0) {
        fail_msg("read: %s", err);
    }
    return v;
}

static void wr(struct mpq_dev *d, uint64_t off, uint64_t v)
{
    assert_int_equal(mpq_bar_write(d, 0, off, 4, v, NULL), 0);
}

static void test_two_devices_two_sockets(void **state)
{
    static const char *const args[] = {
        "-device", "mpqemu-testdev,id=a", "-device", "mpqemu-testdev,id=b",
        "-object", "x-remote-object,id=ra,devid=a,fd={fd}",
        "-object", "{\"qom-type\": \"x-remote-object\", \"id\": \"rb\", \"devid\": \"b\","
                   " \"fd\": \"{fd1}\"}",
        NULL,
    };
    struct remote r;
    struct mpq_ram ram;
    struct mpq_dev *a, *b;
    struct mpqemu_hdr partial = { .cmd = MPQEMU_CMD_PCI_CFGREAD, .size = 12 };

    (void)state;
    remote_start(&r, 2, args);
    assert_int_equal(mpq_ram_create(&ram, 0, 1 << 20, NULL), 0);
    a = remote_connect(&r, 0, &ram);
    b = remote_connect(&r, 1, &ram);
    wr(a, TESTDEV_REG_SCRATCH, 1);
    wr(b, TESTDEV_REG_SCRATCH, 2);
    assert_int_equal(rd(a, TESTDEV_REG_SCRATCH), 1);
    assert_int_equal(rd(b, TESTDEV_REG_SCRATCH), 2);

    /* A proxy stalled in the middle of a message holds up nobody else. */
    assert_int_equal(send(r.socks[0], &partial, sizeof(partial), 0), (ssize_t)sizeof(partial));
    assert_int_equal(rd(b, TESTDEV_REG_ID), TESTDEV_MAGIC);

    /* One proxy leaving does not end the others' service. */
    mpq_close(a);
    assert_int_equal(rd(b, TESTDEV_REG_ID), TESTDEV_MAGIC);
    mpq_close(b);
    /* a left in the middle of a message: that is a fault, reported in the status. */
    assert_int_equal(remote_expect_exit(&r), 1);
    mpq_ram_destroy(&ram);
}

static void test_positional_fd_serves_the_unbound_device(void **state)
{
    static const char *const args[] = {
        "{fd}", "-device", "mpqemu-testdev,id=a", "-device", "mpqemu-testdev,id=b",
        "-object", "x-remote-object,id=rb,devid=b,fd={fd1}", NULL,
    };
    struct remote r;
    struct mpq_ram ram;
    struct mpq_dev *a, *b;

    (void)state;
    remote_start(&r, 2, args);
    assert_int_equal(mpq_ram_create(&ram, 0, 1 << 20, NULL), 0);
    a = remote_connect(&r, 0, &ram);
    b = remote_connect(&r, 1, &ram);
    assert_int_equal(rd(a, TESTDEV_REG_ID), TESTDEV_MAGIC);
    assert_int_equal(rd(b, TESTDEV_REG_ID), TESTDEV_MAGIC);
    mpq_close(a);
    mpq_close(b);
    assert_int_equal(remote_expect_exit(&r), 0);
    mpq_ram_destroy(&ram);
}

static void test_sigterm_ends_cleanly(void **state)
{
    static const char *const args[] = { "{fd}", "-device", "mpqemu-testdev,id=a", NULL };
    struct remote r;
    struct mpq_ram ram;
    struct mpq_dev *a;

    (void)state;
    remote_start(&r, 1, args);
    assert_int_equal(mpq_ram_create(&ram, 0, 1 << 20, NULL), 0);
    a = remote_connect(&r, 0, &ram);
    assert_int_equal(kill(r.pid, SIGTERM), 0);
    assert_int_equal(remote_expect_exit(&r), 0);
    mpq_close(a);
    mpq_ram_destroy(&ram);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_devices_two_sockets),
        cmocka_unit_test(test_positional_fd_serves_the_unbound_device),
        cmocka_unit_test(test_sigterm_ends_cleanly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
