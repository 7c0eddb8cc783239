// SPDX-License-Identifier: GPL-2.0-or-later
/* mpqemu-testdev through mpqemu-remote and the client library, end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "client/mpqemu-client.h"
#include "harness.h"
#include "hw/testdev.h"
#include "pci/pci.h"

enum { RAM_GPA = 0x100000, RAM_SIZE = 1 << 20 };

struct fixture {
    struct remote remote;
    struct mpq_ram ram;
    struct mpq_dev *dev;
};

static int setup(void **state)
{
    static const char *const args[] = { "{fd}", "-device", "mpqemu-testdev,id=t0", NULL };
    struct fixture *f = calloc(1, sizeof(*f));

    remote_start(&f->remote, 1, args);
    assert_int_equal(mpq_ram_create(&f->ram, RAM_GPA, RAM_SIZE, NULL), 0);
    f->dev = remote_connect(&f->remote, 0, &f->ram);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    mpq_close(f->dev);
    /* The remote ends cleanly once its proxy is gone. */
    assert_int_equal(remote_expect_exit(&f->remote), 0);
    mpq_ram_destroy(&f->ram);
    free(f);
    return 0;
}

static uint64_t rd(struct fixture *f, int bar, uint64_t off, unsigned size)
{
    uint64_t v = 0;
    char *err = NULL;

    if (mpq_bar_read(f->dev, bar, off, size, &v, &err) < 0) {
        fail_msg("read: %s", err);
    }
    return v;
}

static void wr(struct fixture *f, int bar, uint64_t off, unsigned size, uint64_t v)
{
    char *err = NULL;

    if (mpq_bar_write(f->dev, bar, off, size, v, &err) < 0) {
        fail_msg("write: %s", err);
    }
}

static void cfg_wr(struct fixture *f, uint32_t off, uint32_t len, uint32_t v)
{
    assert_int_equal(mpq_cfg_write(f->dev, off, len, v, NULL), 0);
}

static void test_identity_and_bars(void **state)
{
    struct fixture *f = *state;
    struct mpq_pci_info info;

    assert_int_equal(mpq_probe(f->dev, &info, NULL), 0);
    assert_int_equal(info.vendor, TESTDEV_VENDOR);
    assert_int_equal(info.device, TESTDEV_DEVICE);
    assert_int_equal(info.class_code, TESTDEV_CLASS);
    assert_int_equal(info.interrupt_pin, 1);
    assert_true(info.bars[0].present && !info.bars[0].io && info.bars[0].size == 4096);
    assert_true(info.bars[1].present && info.bars[1].io && info.bars[1].size == 64);
    assert_true(info.bars[2].present && info.bars[2].mem64 && info.bars[2].prefetchable);
    assert_int_equal(info.bars[2].size, 16384);
    assert_false(info.bars[3].present);
}

static void test_registers_through_memory_and_io(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(rd(f, 0, TESTDEV_REG_ID, 4), TESTDEV_MAGIC);
    assert_int_equal(rd(f, 1, TESTDEV_REG_ID, 4), TESTDEV_MAGIC);
    wr(f, 1, TESTDEV_REG_SCRATCH, 4, 0xa5a55a5a);
    assert_int_equal(rd(f, 0, TESTDEV_REG_SCRATCH, 4), 0xa5a55a5a);
    assert_int_equal(rd(f, 0, TESTDEV_REG_SCRATCH + 1, 1), 0x5a);
    assert_int_equal(rd(f, 0, TESTDEV_REG_SCRATCH + 2, 2), 0xa5a5);
    wr(f, 0, TESTDEV_REG_DMA_ADDR, 8, 0x123456789abcdef0ull);
    assert_true(rd(f, 0, TESTDEV_REG_DMA_ADDR, 8) == 0x123456789abcdef0ull);
    /* Read-only registers ignore writes. */
    wr(f, 0, TESTDEV_REG_ID, 4, 0);
    assert_int_equal(rd(f, 0, TESTDEV_REG_ID, 4), TESTDEV_MAGIC);
    /* The 64-bit BAR is the buffer, byte-addressable. */
    wr(f, 2, 16384 - 8, 8, 0x0102030405060708ull);
    assert_int_equal(rd(f, 2, 16384 - 8, 1), 0x08);
    assert_int_equal(rd(f, 2, 16384 - 4, 4), 0x01020304);
}

static void start_dma(struct fixture *f, uint64_t gpa, uint32_t len, uint32_t cmd)
{
    wr(f, 0, TESTDEV_REG_DMA_ADDR, 8, gpa);
    wr(f, 0, TESTDEV_REG_DMA_LEN, 4, len);
    wr(f, 0, TESTDEV_REG_DMA_CMD, 4, cmd);
}

static void test_dma_raises_level_interrupt(void **state)
{
    struct fixture *f = *state;
    uint8_t *src = f->ram.host + 0x1000, *dst = f->ram.host + 0x8000;

    for (int i = 0; i < 4096; i++) {
        src[i] = (uint8_t)(i * 7 + 3);
    }
    wr(f, 0, TESTDEV_REG_IRQ_MASK, 4, TESTDEV_IRQ_DMA_DONE | TESTDEV_IRQ_DMA_ERROR);
    start_dma(f, RAM_GPA + 0x1000, 4096, TESTDEV_DMA_FROM_GUEST);
    assert_int_equal(mpq_intx_wait(f->dev, 2000), 1);
    assert_int_equal(rd(f, 0, TESTDEV_REG_IRQ_STATUS, 4), TESTDEV_IRQ_DMA_DONE);
    assert_int_equal(rd(f, 2, 4095, 1), src[4095]);

    /* Level-triggered: an EOI while the line is still high fires again. */
    assert_int_equal(mpq_intx_eoi(f->dev), 0);
    assert_int_equal(mpq_intx_wait(f->dev, 2000), 1);
    wr(f, 0, TESTDEV_REG_IRQ_STATUS, 4, TESTDEV_IRQ_DMA_DONE);
    assert_int_equal(mpq_intx_eoi(f->dev), 0);
    assert_int_equal(mpq_intx_wait(f->dev, 200), 0);

    start_dma(f, RAM_GPA + 0x8000, 4096, TESTDEV_DMA_TO_GUEST);
    assert_int_equal(mpq_intx_wait(f->dev, 2000), 1);
    assert_memory_equal(src, dst, 4096);
    assert_int_equal(rd(f, 0, TESTDEV_REG_DMA_COUNT, 4), 2);
}

/*
 * A DMA started from a bottom half: the write's reply leaves at the end of
 * the loop's round, after it, so the driver finds it done (count, status,
 * data) without waiting for the interrupt; the interrupt comes too.  Over
 * vfio-user the write waits for its reply (not posted, as QEMU's would be).
 */
static void test_dma_from_a_bottom_half_done_by_the_reply(void **state)
{
    struct fixture *f = *state;
    uint8_t *src = f->ram.host + 0x1000, *dst = f->ram.host + 0x8000;

    mpq_set_posted_writes(f->dev, false);
    for (int i = 0; i < 4096; i++) {
        src[i] = (uint8_t)(i * 5 + 1);
    }
    wr(f, 0, TESTDEV_REG_IRQ_MASK, 4, TESTDEV_IRQ_DMA_DONE);
    wr(f, 0, TESTDEV_REG_DMA_ADDR, 8, RAM_GPA + 0x1000);
    wr(f, 0, TESTDEV_REG_DMA_LEN, 4, 4096);
    wr(f, 0, TESTDEV_REG_DMA_CMD_BH, 4, TESTDEV_DMA_FROM_GUEST);
    assert_int_equal(rd(f, 0, TESTDEV_REG_DMA_COUNT, 4), 1);
    assert_int_equal(rd(f, 0, TESTDEV_REG_IRQ_STATUS, 4), TESTDEV_IRQ_DMA_DONE);
    assert_int_equal(rd(f, 2, 4095, 1), src[4095]);
    assert_int_equal(mpq_intx_wait(f->dev, 2000), 1);
    wr(f, 0, TESTDEV_REG_IRQ_STATUS, 4, TESTDEV_IRQ_DMA_DONE);
    assert_int_equal(mpq_intx_eoi(f->dev), 0);
    wr(f, 0, TESTDEV_REG_DMA_ADDR, 8, RAM_GPA + 0x8000);
    wr(f, 0, TESTDEV_REG_DMA_CMD_BH, 4, TESTDEV_DMA_TO_GUEST);
    assert_memory_equal(src, dst, 4096);        /* in guest memory when the reply came */
    assert_int_equal(rd(f, 0, TESTDEV_REG_DMA_COUNT, 4), 2);
    assert_int_equal(mpq_intx_wait(f->dev, 2000), 1);
}

static void test_dma_outside_guest_memory_fails(void **state)
{
    struct fixture *f = *state;
    static const uint64_t bad[] = {
        0, RAM_GPA - 1, RAM_GPA + RAM_SIZE - 100, UINT64_MAX - 10,
    };

    wr(f, 0, TESTDEV_REG_IRQ_MASK, 4, TESTDEV_IRQ_DMA_ERROR);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        start_dma(f, bad[i], 200, TESTDEV_DMA_TO_GUEST);
        assert_int_equal(mpq_intx_wait(f->dev, 2000), 1);
        assert_true(rd(f, 0, TESTDEV_REG_STATUS, 4) & TESTDEV_STATUS_DMA_ERROR);
        wr(f, 0, TESTDEV_REG_IRQ_STATUS, 4, TESTDEV_IRQ_DMA_ERROR);
        assert_int_equal(mpq_intx_eoi(f->dev), 0);
    }
    /* Longer than the buffer, and a DMA without bus mastering, fail too. */
    start_dma(f, RAM_GPA, 16385, TESTDEV_DMA_FROM_GUEST);
    assert_true(rd(f, 0, TESTDEV_REG_STATUS, 4) & TESTDEV_STATUS_DMA_ERROR);
    cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
    start_dma(f, RAM_GPA, 16, TESTDEV_DMA_FROM_GUEST);
    assert_true(rd(f, 0, TESTDEV_REG_STATUS, 4) & TESTDEV_STATUS_DMA_ERROR);
    assert_int_equal(rd(f, 0, TESTDEV_REG_DMA_COUNT, 4), 0);
}

static void test_intx_disable_bit(void **state)
{
    struct fixture *f = *state;
    uint32_t status;

    cfg_wr(f, PCI_COMMAND, 2, 0x7 | PCI_COMMAND_INTX_DISABLE);
    wr(f, 0, TESTDEV_REG_IRQ_MASK, 4, TESTDEV_IRQ_SOFT);
    wr(f, 0, TESTDEV_REG_IRQ_RAISE, 4, TESTDEV_IRQ_SOFT);
    assert_int_equal(mpq_intx_wait(f->dev, 200), 0);
    assert_int_equal(mpq_cfg_read(f->dev, PCI_STATUS, 2, &status, NULL), 0);
    assert_true(status & PCI_STATUS_INTERRUPT);
    cfg_wr(f, PCI_COMMAND, 2, 0x7);
    assert_int_equal(mpq_intx_wait(f->dev, 2000), 1);
}

static void test_disabled_decode_reads_all_ones(void **state)
{
    struct fixture *f = *state;

    uint64_t v = 0;
    int rc;

    cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_IO);
    /* All ones (multi-process protocol) or an error the VMM turns into all ones (vfio-user). */
    rc = mpq_bar_read(f->dev, 0, TESTDEV_REG_ID, 4, &v, NULL);
    assert_true(rc < 0 || v == UINT64_MAX);
    wr(f, 0, TESTDEV_REG_SCRATCH, 4, 1);        /* dropped */
    assert_int_equal(rd(f, 1, TESTDEV_REG_ID, 4), TESTDEV_MAGIC);
    cfg_wr(f, PCI_COMMAND, 2, 0x7);
    assert_int_equal(rd(f, 0, TESTDEV_REG_SCRATCH, 4), 0);
}

static void test_reset_restores_power_on_state(void **state)
{
    struct fixture *f = *state;
    uint32_t bar0;

    wr(f, 0, TESTDEV_REG_SCRATCH, 4, 42);
    assert_int_equal(mpq_reset(f->dev, NULL), 0);
    assert_int_equal(mpq_cfg_read(f->dev, PCI_BASE_ADDRESS_0, 4, &bar0, NULL), 0);
    assert_int_equal(bar0, 0);
    assert_int_equal(mpq_probe(f->dev, NULL, NULL), 0);
    assert_int_equal(rd(f, 0, TESTDEV_REG_SCRATCH, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity_and_bars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registers_through_memory_and_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_raises_level_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_from_a_bottom_half_done_by_the_reply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dma_outside_guest_memory_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intx_disable_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_decode_reads_all_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_restores_power_on_state, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
