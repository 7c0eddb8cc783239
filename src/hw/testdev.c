// SPDX-License-Identifier: GPL-2.0-or-later
#include "hw/testdev.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hw/device.h"
#include "pci/dma.h"
#include "pci/pci.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"

/* The registers: plain data, kept in the checkpoint so that they survive a restart. */
struct testdev_regs {
    uint32_t scratch;
    uint32_t dma_len;
    uint64_t dma_addr;
    uint32_t status;
    uint32_t irq_status;
    uint32_t irq_mask;
    uint32_t dma_count;
};

struct testdev {
    struct device dev;
    uint64_t buffer_size;       /* property */
    struct pci_device pci;
    uint8_t *buffer;
    struct testdev_regs *r;
    struct loop *loop;
    struct loop_bh dma_bh;      /* DMA_CMD_BH's DMA; not in the checkpoint: lost with the process */
    uint32_t dma_bh_cmd;
};

static struct testdev *to_testdev(struct pci_device *pci)
{
    return (struct testdev *)((char *)pci - offsetof(struct testdev, pci));
}

static void update_irq(struct testdev *t)
{
    pci_set_irq(&t->pci, (t->r->irq_status & t->r->irq_mask) != 0);
}

static void run_dma(struct testdev *t, uint32_t cmd)
{
    bool to_guest = cmd == TESTDEV_DMA_TO_GUEST;
    int r = -1;

    if ((cmd == TESTDEV_DMA_FROM_GUEST || to_guest) && t->r->dma_len <= t->buffer_size &&
        pci_bus_master(&t->pci) && t->pci.dma) {
        r = to_guest ? dma_write(t->pci.dma, t->r->dma_addr, t->buffer, t->r->dma_len)
                     : dma_read(t->pci.dma, t->r->dma_addr, t->buffer, t->r->dma_len);
    }
    if (r < 0) {
        t->r->status |= TESTDEV_STATUS_DMA_ERROR;
        t->r->irq_status |= TESTDEV_IRQ_DMA_ERROR;
    } else {
        t->r->status &= ~(uint32_t)TESTDEV_STATUS_DMA_ERROR;
        t->r->irq_status |= TESTDEV_IRQ_DMA_DONE;
        t->r->dma_count++;
    }
    update_irq(t);
}

static void dma_later(void *opaque)
{
    struct testdev *t = opaque;

    run_dma(t, t->dma_bh_cmd);
}

/* A second one before the first has run replaces its command, as a doorbell rung twice. */
static void schedule_dma(struct testdev *t, uint32_t cmd)
{
    t->dma_bh_cmd = cmd;
    loop_bh_schedule(t->loop, &t->dma_bh);
}

static uint32_t reg_read(struct testdev *t, uint64_t off)
{
    switch (off) {
    case TESTDEV_REG_ID: return TESTDEV_MAGIC;
    case TESTDEV_REG_VERSION: return 1;
    case TESTDEV_REG_SCRATCH: return t->r->scratch;
    case TESTDEV_REG_DMA_ADDR: return (uint32_t)t->r->dma_addr;
    case TESTDEV_REG_DMA_ADDR + 4: return (uint32_t)(t->r->dma_addr >> 32);
    case TESTDEV_REG_DMA_LEN: return t->r->dma_len;
    case TESTDEV_REG_STATUS: return t->r->status;
    case TESTDEV_REG_IRQ_STATUS: return t->r->irq_status;
    case TESTDEV_REG_IRQ_MASK: return t->r->irq_mask;
    case TESTDEV_REG_DMA_COUNT: return t->r->dma_count;
    default: return 0;
    }
}

static void reg_write(struct testdev *t, uint64_t off, uint32_t val)
{
    switch (off) {
    case TESTDEV_REG_SCRATCH: t->r->scratch = val; break;
    case TESTDEV_REG_DMA_ADDR:
        t->r->dma_addr = (t->r->dma_addr & ~(uint64_t)UINT32_MAX) | val;
        break;
    case TESTDEV_REG_DMA_ADDR + 4:
        t->r->dma_addr = (t->r->dma_addr & UINT32_MAX) | (uint64_t)val << 32;
        break;
    case TESTDEV_REG_DMA_LEN: t->r->dma_len = val; break;
    case TESTDEV_REG_DMA_CMD: run_dma(t, val); break;
    case TESTDEV_REG_DMA_CMD_BH: schedule_dma(t, val); break;
    case TESTDEV_REG_IRQ_STATUS: t->r->irq_status &= ~val; update_irq(t); break;
    case TESTDEV_REG_IRQ_MASK: t->r->irq_mask = val; update_irq(t); break;
    case TESTDEV_REG_IRQ_RAISE: t->r->irq_status |= val; update_irq(t); break;
    default: break;     /* read-only or unassigned: ignored */
    }
}

/* Registers are 32-bit; narrower reads take their bytes, 8 bytes span two. */
static uint64_t regs_read(struct testdev *t, uint64_t off, unsigned size)
{
    uint64_t val = 0;

    for (unsigned i = 0; i < size; i++) {
        uint64_t a = off + i;
        uint32_t word = reg_read(t, a & ~(uint64_t)3);

        val |= (uint64_t)((word >> (8 * (a & 3))) & 0xff) << (8 * i);
    }
    return val;
}

static void regs_write(struct testdev *t, uint64_t off, uint64_t val, unsigned size)
{
    if ((size != 4 && size != 8) || (off & 3)) {
        log_debug("%s: %u-byte register write at 0x%llx ignored", t->dev.id, size,
                  (unsigned long long)off);
        return;
    }
    reg_write(t, off, (uint32_t)val);
    if (size == 8) {
        reg_write(t, off + 4, (uint32_t)(val >> 32));
    }
}

static uint64_t testdev_bar_read(struct pci_device *pci, int bar, uint64_t off, unsigned size)
{
    struct testdev *t = to_testdev(pci);
    uint64_t val = 0;

    if (bar == 2) {
        memcpy(&val, t->buffer + off, size);
        return val;
    }
    return regs_read(t, off, size);
}

static void testdev_bar_write(struct pci_device *pci, int bar, uint64_t off, uint64_t val,
                              unsigned size)
{
    struct testdev *t = to_testdev(pci);

    if (bar == 2) {
        memcpy(t->buffer + off, &val, size);
        return;
    }
    regs_write(t, off, val, size);
}

static void testdev_reset(struct pci_device *pci)
{
    struct testdev *t = to_testdev(pci);

    loop_bh_cancel(t->loop, &t->dma_bh);
    memset(t->buffer, 0, t->buffer_size);
    memset(t->r, 0, sizeof(*t->r));
}

static const struct pci_device_ops testdev_ops = {
    .bar_read = testdev_bar_read,
    .bar_write = testdev_bar_write,
    .reset = testdev_reset,
};

static int testdev_realize(struct device *dev, struct device_ctx *ctx, char **err)
{
    struct testdev *t = (struct testdev *)dev;
    bool restored;
    const struct pci_ids ids = {
        .vendor = TESTDEV_VENDOR, .device = TESTDEV_DEVICE,
        .subsystem_vendor = TESTDEV_VENDOR, .subsystem = TESTDEV_DEVICE,
        .class_code = TESTDEV_CLASS, .revision = 1, .interrupt_pin = 1,
    };

    if (t->buffer_size < 4096 || (t->buffer_size & (t->buffer_size - 1))) {
        error_setf(err, "buffer-size must be a power of two of at least 4096");
        return -1;
    }
    t->buffer = calloc(1, t->buffer_size);
    t->r = device_checkpoint(dev, "regs", sizeof(*t->r), &restored);
    if (!t->buffer || !t->r) {
        free(t->buffer);
        error_setf(err, "out of memory for a %llu-byte buffer",
                   (unsigned long long)t->buffer_size);
        return -1;
    }
    pci_device_init(&t->pci, dev->id, &testdev_ops, &ids);
    if (pci_register_bar(&t->pci, 0, PCI_BAR_MEM32, TESTDEV_BAR0_SIZE, false, err) < 0 ||
        pci_register_bar(&t->pci, 1, PCI_BAR_IO, TESTDEV_BAR1_SIZE, false, err) < 0 ||
        pci_register_bar(&t->pci, 2, PCI_BAR_MEM64, t->buffer_size, true, err) < 0) {
        free(t->buffer);
        return -1;
    }
    dev->pci = &t->pci;
    t->loop = ctx->loop;
    loop_bh_init(&t->dma_bh, dma_later, t);
    /* Registers as the last process left them: the line follows them. */
    t->pci.irq_level = (t->r->irq_status & t->r->irq_mask) != 0;
    return 0;
}

static void testdev_unrealize(struct device *dev)
{
    struct testdev *t = (struct testdev *)dev;

    loop_bh_cancel(t->loop, &t->dma_bh);
    free(t->buffer);
}

static const struct prop_def testdev_props[] = {
    { "buffer-size", PROP_SIZE, offsetof(struct testdev, buffer_size), 1ull << 30,
      "16K", "size of the DMA buffer and of BAR2 (power of two, >= 4K)" },
    { 0 },
};

static const struct device_driver testdev_driver = {
    .name = "mpqemu-testdev",
    .desc = "test device: registers, I/O BAR, 64-bit BAR, DMA engine with INTx",
    .instance_size = sizeof(struct testdev),
    .props = testdev_props,
    .realize = testdev_realize,
    .unrealize = testdev_unrealize,
};

DEVICE_DRIVERS(&testdev_driver);
