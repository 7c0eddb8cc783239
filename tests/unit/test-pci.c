// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pci/pci.h"

struct fake {
    struct pci_device pci;
    int resets;
    int edges;
    bool line;
    uint64_t last_off;
    unsigned last_size;
};

static uint64_t fake_read(struct pci_device *d, int bar, uint64_t off, unsigned size)
{
    struct fake *f = (struct fake *)d;

    f->last_off = off;
    f->last_size = size;
    return (uint64_t)bar << 32 | off;
}

static void fake_write(struct pci_device *d, int bar, uint64_t off, uint64_t val,
                       unsigned size)
{
    (void)d; (void)bar; (void)off; (void)val; (void)size;
}

static void fake_reset(struct pci_device *d)
{
    ((struct fake *)d)->resets++;
}

static const struct pci_device_ops fake_ops = {
    .bar_read = fake_read, .bar_write = fake_write, .reset = fake_reset,
};

static void sink_level(void *opaque, bool level)
{
    struct fake *f = opaque;

    f->line = level;
    f->edges++;
}

static void make(struct fake *f)
{
    const struct pci_ids ids = { .vendor = 0x1000, .device = 0x0012, .class_code = 0x010000,
                                 .revision = 2, .interrupt_pin = 1 };
    struct pci_intx_sink sink = { .set_level = sink_level, .opaque = f };

    memset(f, 0, sizeof(*f));
    pci_device_init(&f->pci, "fake", &fake_ops, &ids);
    assert_int_equal(pci_register_bar(&f->pci, 0, PCI_BAR_IO, 256, false, NULL), 0);
    assert_int_equal(pci_register_bar(&f->pci, 1, PCI_BAR_MEM32, 1024, false, NULL), 0);
    assert_int_equal(pci_register_bar(&f->pci, 2, PCI_BAR_MEM64, 1ull << 32, true, NULL), 0);
    pci_set_intx_sink(&f->pci, &sink);
}

static uint32_t size_mask(struct fake *f, uint32_t reg)
{
    pci_config_write(&f->pci, reg, 0xffffffff, 4);
    return pci_config_read(&f->pci, reg, 4);
}

static void test_header_is_read_only(void **state)
{
    struct fake f;

    (void)state;
    make(&f);
    pci_config_write(&f.pci, PCI_VENDOR_ID, 0xdead, 2);
    pci_config_write(&f.pci, PCI_CLASS_DEVICE, 0xbeef, 2);
    pci_config_write(&f.pci, PCI_INTERRUPT_PIN, 4, 1);
    assert_int_equal(pci_config_read(&f.pci, PCI_VENDOR_ID, 4), 0x00121000);
    assert_int_equal(pci_config_read(&f.pci, PCI_REVISION_ID, 4), 0x01000002);
    assert_int_equal(pci_config_read(&f.pci, PCI_INTERRUPT_PIN, 1), 1);
    pci_config_write(&f.pci, PCI_INTERRUPT_LINE, 11, 1);
    assert_int_equal(pci_config_read(&f.pci, PCI_INTERRUPT_LINE, 1), 11);
    /* Only the defined command bits stick. */
    pci_config_write(&f.pci, PCI_COMMAND, 0xffff, 2);
    assert_int_equal(pci_config_read(&f.pci, PCI_COMMAND, 2), 0x547);
}

static void test_status_write_one_to_clear(void **state)
{
    struct fake f;

    (void)state;
    make(&f);
    f.pci.config[PCI_STATUS + 1] = 0xf9;    /* error bits set by "hardware" */
    pci_config_write(&f.pci, PCI_STATUS, 0x1000, 2);    /* clear one */
    assert_int_equal(pci_config_read(&f.pci, PCI_STATUS, 2), 0xe900);
    pci_config_write(&f.pci, PCI_STATUS, 0, 2);         /* 0 clears nothing */
    assert_int_equal(pci_config_read(&f.pci, PCI_STATUS, 2), 0xe900);
}

static void test_bar_sizing(void **state)
{
    struct fake f;

    (void)state;
    make(&f);
    assert_int_equal(size_mask(&f, 0x10), 0xffffff01);
    assert_int_equal(size_mask(&f, 0x14), 0xfffffc00);
    assert_int_equal(size_mask(&f, 0x18), 0x0000000c);     /* 4 GiB, 64-bit, prefetch */
    assert_int_equal(size_mask(&f, 0x1c), 0xffffffff);
    assert_int_equal(size_mask(&f, 0x20), 0);
    assert_int_equal(size_mask(&f, PCI_ROM_ADDRESS), 0);
}

/* A refused BAR: -1, a message naming it, and not a config byte changed. */
static void expect_refused(struct fake *f, int bar, enum pci_bar_type type, uint64_t size,
                           const char *words)
{
    uint8_t config[PCI_CONFIG_SIZE], wmask[PCI_CONFIG_SIZE];
    struct pci_bar bars[PCI_NUM_BARS];
    char *err = NULL;

    memcpy(config, f->pci.config, sizeof(config));
    memcpy(wmask, f->pci.wmask, sizeof(wmask));
    memcpy(bars, f->pci.bars, sizeof(bars));
    assert_int_equal(pci_register_bar(&f->pci, bar, type, size, false, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, words));
    free(err);
    assert_memory_equal(config, f->pci.config, sizeof(config));
    assert_memory_equal(wmask, f->pci.wmask, sizeof(wmask));
    assert_memory_equal(bars, f->pci.bars, sizeof(bars));
}

/*
 * The BAR layout is checked: a 64-bit BAR in slot 5 would put its upper
 * half at 0x28, outside the BAR registers (and the decode cache's key).
 */
static void test_bar_layout_refused(void **state)
{
    struct fake f;

    (void)state;
    make(&f);       /* BAR0 I/O, BAR1 32-bit, BAR2+3 64-bit */
    expect_refused(&f, 5, PCI_BAR_MEM64, 4096, "no slot above it");
    expect_refused(&f, -1, PCI_BAR_MEM32, 4096, "no BAR -1");
    expect_refused(&f, PCI_NUM_BARS, PCI_BAR_MEM32, 4096, "no BAR 6");
    expect_refused(&f, 1, PCI_BAR_MEM32, 4096, "BAR 1 is taken");
    expect_refused(&f, 3, PCI_BAR_MEM32, 4096, "BAR 3 is taken");     /* BAR2's upper half */
    expect_refused(&f, 4, PCI_BAR_UNUSED, 4096, "no type");
    expect_refused(&f, 4, PCI_BAR_MEM32, 3000, "power of two");
    expect_refused(&f, 4, PCI_BAR_MEM32, 8, "power of two");
    expect_refused(&f, 4, PCI_BAR_IO, 2, "power of two");
    expect_refused(&f, 4, PCI_BAR_MEM32, 1ull << 32, "power of two");
    expect_refused(&f, 4, PCI_BAR_MEM64, 0, "power of two");
    assert_int_equal(pci_register_bar(&f.pci, 5, PCI_BAR_MEM32, 16, false, NULL), 0);
    /* BAR4 64-bit would take BAR5, now taken. */
    expect_refused(&f, 4, PCI_BAR_MEM64, 4096, "would be BAR 5, taken");
    assert_int_equal(pci_register_bar(&f.pci, 4, PCI_BAR_MEM32, 1ull << 31, false, NULL), 0);
    assert_int_equal(size_mask(&f, 0x20), 0x80000000);
    assert_int_equal(size_mask(&f, 0x24), 0xfffffff0);
    assert_int_equal(size_mask(&f, 0x28), 0);
}

/* A 64-bit BAR in slot 4 is the highest there can be: its upper half is 0x24. */
static void test_bar_64bit_in_slot_4(void **state)
{
    struct fake f;
    uint64_t off;

    (void)state;
    make(&f);
    assert_int_equal(pci_register_bar(&f.pci, 4, PCI_BAR_MEM64, 1ull << 20, false, NULL), 0);
    expect_refused(&f, 5, PCI_BAR_MEM32, 16, "BAR 5 is taken");
    assert_int_equal(size_mask(&f, 0x20), 0xfff00004);
    assert_int_equal(size_mask(&f, 0x24), 0xffffffff);
    pci_config_write(&f.pci, 0x20, 0, 4);
    pci_config_write(&f.pci, 0x24, 0x1, 4);     /* 4 GiB */
    pci_config_write(&f.pci, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    assert_int_equal(pci_bar_find(&f.pci, true, 0x100000010ull, 4, &off), 4);
    assert_int_equal(off, 0x10);
}

static void test_decode_and_routing(void **state)
{
    struct fake f;
    uint64_t off;

    (void)state;
    make(&f);
    pci_config_write(&f.pci, 0x10, 0xc000, 4);
    pci_config_write(&f.pci, 0x14, 0xfebf0000, 4);
    pci_config_write(&f.pci, 0x18, 0, 4);
    pci_config_write(&f.pci, 0x1c, 0x8, 4);     /* BAR2 at 32 GiB */
    /* Nothing decodes until COMMAND enables it. */
    assert_int_equal(pci_bar_find(&f.pci, false, 0xc004, 4, &off), -1);
    pci_config_write(&f.pci, PCI_COMMAND, PCI_COMMAND_IO, 2);
    assert_int_equal(pci_bar_find(&f.pci, false, 0xc004, 4, &off), 0);
    assert_int_equal(off, 4);
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfebf0000, 4, &off), -1);
    pci_config_write(&f.pci, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY, 2);
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfebf03fc, 4, &off), 1);
    assert_int_equal(off, 0x3fc);
    /* Straddling the end, or the wrong space, hits nothing. */
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfebf03fe, 4, &off), -1);
    assert_int_equal(pci_bar_find(&f.pci, true, 0xc004, 4, &off), -1);
    assert_int_equal(pci_bar_find(&f.pci, true, 0x800000010ull, 8, &off), 2);
    assert_int_equal(off, 0x10);
    /* A BAR being sized (all ones) does not decode. */
    pci_config_write(&f.pci, 0x14, 0xffffffff, 4);
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfffffc00, 4, &off), -1);
}

/* A run stops at the next edge of a window of its space: each piece resolves as its first byte. */
static void test_bar_runs(void **state)
{
    struct fake f;

    (void)state;
    make(&f);
    pci_config_write(&f.pci, 0x10, 0xfebf0400, 4);         /* I/O: the same numbers */
    pci_config_write(&f.pci, 0x14, 0xfebf0000, 4);         /* 1 KiB */
    pci_config_write(&f.pci, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY, 2);
    assert_int_equal(pci_bar_run(&f.pci, true, 0xfebefff0, 64), 0x10);     /* up to the BAR */
    assert_int_equal(pci_bar_run(&f.pci, true, 0xfebf0000, 4096), 1024);   /* the BAR */
    assert_int_equal(pci_bar_run(&f.pci, true, 0xfebf03fd, 8), 3);         /* its end */
    assert_int_equal(pci_bar_run(&f.pci, true, 0xfebf0400, 4096), 4096);   /* past it */
    assert_int_equal(pci_bar_run(&f.pci, true, 0xfebf0010, 16), 16);       /* inside */
    assert_int_equal(pci_bar_run(&f.pci, false, 0xfebf03fd, 8), 3);        /* I/O's edge */
    assert_int_equal(pci_bar_run(&f.pci, true, 0, 0), 0);
    /* Nothing decodes: one run. */
    pci_config_write(&f.pci, PCI_COMMAND, 0, 2);
    assert_int_equal(pci_bar_run(&f.pci, true, 0xfebefff0, 64), 64);
}

/* What pci_bar_find answered before it kept the decoding BARs: every BAR, every time. */
static int reference_find(const struct pci_device *d, bool memory, uint64_t addr, unsigned size,
                          uint64_t *off)
{
    for (int i = 0; i < PCI_NUM_BARS; i++) {
        const struct pci_bar *b = &d->bars[i];
        uint64_t base;

        if ((b->type == PCI_BAR_IO) == memory || !pci_bar_decodes(d, i, &base)) {
            continue;
        }
        if (addr >= base && size <= b->size && addr - base <= b->size - size) {
            *off = addr - base;
            return i;
        }
    }
    return -1;
}

/*
 * Config bytes changed by any means (written straight, the space moved to
 * a checkpoint area) change the answer at once; random spaces and accesses
 * get the reference's answers.
 */
static void test_decode_follows_config_bytes(void **state)
{
    static uint8_t area[PCI_CONFIG_SIZE];
    struct fake f;
    uint64_t off, ref_off, seed = 12345;

    (void)state;
    make(&f);
    pci_config_write(&f.pci, 0x14, 0xfebf0000, 4);
    pci_config_write(&f.pci, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfebf0010, 4, &off), 1);
    pci_set_long(f.pci.config + 0x14, 0xfeaf0000);      /* moved behind the core's back */
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfebf0010, 4, &off), -1);
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfeaf0010, 4, &off), 1);
    f.pci.config[PCI_COMMAND] = 0;
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfeaf0010, 4, &off), -1);
    memcpy(area, f.pci.config, sizeof(area));
    pci_set_word(area + PCI_COMMAND, PCI_COMMAND_MEMORY);
    pci_set_long(area + 0x14, 0xfe9f0000);
    assert_true(pci_config_keep_in(&f.pci, area, true));
    assert_int_equal(pci_bar_find(&f.pci, true, 0xfe9f0010, 4, &off), 1);

    for (int round = 0; round < 20000; round++) {
        static const uint64_t bases[] = { 0, 0xc000, 0xc0f0, 0xfebf0000, 0xfffffc00, 0xffffffff,
                                          0x800000000ull, 0xfffffffff0000000ull };
        bool memory;
        unsigned size;
        uint64_t addr;
        int got, want;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        if (round % 8 == 0) {
            pci_set_word(f.pci.config + PCI_COMMAND, (uint16_t)(seed >> 40) & 0x7);
            for (int b = 0; b < 3; b++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                pci_set_long(f.pci.config + 0x10 + 4 * b,
                             (uint32_t)bases[(seed >> 33) % 8] | (uint32_t)(seed >> 60));
            }
            pci_set_long(f.pci.config + 0x1c, (uint32_t)(seed >> 20) & 0x9);
        }
        memory = seed >> 63;
        size = 1u << ((seed >> 50) % 4);
        addr = bases[(seed >> 40) % 8] + ((seed >> 8) % 0x500) - 0x80;
        want = reference_find(&f.pci, memory, addr, size, &ref_off);
        got = pci_bar_find(&f.pci, memory, addr, size, &off);
        assert_int_equal(got, want);
        if (got >= 0) {
            assert_true(off == ref_off);
        }
    }
}

static void test_intx_level_and_disable(void **state)
{
    struct fake f;

    (void)state;
    make(&f);
    pci_set_irq(&f.pci, true);
    assert_true(f.line);
    assert_true(pci_config_read(&f.pci, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    pci_set_irq(&f.pci, true);
    assert_int_equal(f.edges, 1);   /* no change, no call */
    pci_config_write(&f.pci, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
    assert_false(f.line);
    /* The status bit still shows the device's request. */
    assert_true(pci_config_read(&f.pci, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    pci_config_write(&f.pci, PCI_COMMAND, 0, 2);
    assert_true(f.line);
    pci_set_irq(&f.pci, false);
    assert_false(f.line);
    assert_false(pci_config_read(&f.pci, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
}

static void test_reset_restores_power_on_state(void **state)
{
    struct fake f;

    (void)state;
    make(&f);
    pci_config_write(&f.pci, 0x14, 0xfebf0000, 4);
    pci_config_write(&f.pci, PCI_COMMAND, 7, 2);
    pci_set_irq(&f.pci, true);
    pci_device_reset(&f.pci);
    assert_int_equal(f.resets, 1);
    assert_int_equal(pci_config_read(&f.pci, 0x14, 4), 0);
    assert_int_equal(pci_config_read(&f.pci, 0x10, 4), 1);
    assert_int_equal(pci_config_read(&f.pci, PCI_COMMAND, 2), 0);
    assert_false(f.line);
}

static void test_config_access_bounds(void **state)
{
    (void)state;
    assert_true(pci_config_access_valid(252, 4));
    assert_true(pci_config_access_valid(255, 1));
    assert_false(pci_config_access_valid(253, 4));
    assert_false(pci_config_access_valid(256, 1));
    assert_false(pci_config_access_valid(0, 3));
    assert_false(pci_config_access_valid(0, 8));
    assert_false(pci_config_access_valid(0xffffffff, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_is_read_only),
        cmocka_unit_test(test_status_write_one_to_clear),
        cmocka_unit_test(test_bar_sizing),
        cmocka_unit_test(test_bar_layout_refused),
        cmocka_unit_test(test_bar_64bit_in_slot_4),
        cmocka_unit_test(test_decode_and_routing),
        cmocka_unit_test(test_bar_runs),
        cmocka_unit_test(test_decode_follows_config_bytes),
        cmocka_unit_test(test_intx_level_and_disable),
        cmocka_unit_test(test_reset_restores_power_on_state),
        cmocka_unit_test(test_config_access_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
