/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mpqemu-testdev: a small PCI device that exercises every path of the core
 * before a real controller exists.
 *   BAR0  memory, 4 KiB: the registers below
 *   BAR1  I/O, 64 bytes: the first 64 bytes of BAR0 again
 *   BAR2  64-bit prefetchable memory (buffer-size): the DMA buffer
 * A DMA copies DMA_LEN bytes between guest memory at DMA_ADDR and the
 * buffer, then raises INTA (level) while IRQ_STATUS & IRQ_MASK is non-zero.
 * DMA_CMD runs it in the write; DMA_CMD_BH from a bottom half, as a real
 * controller's work runs after the write that starts it (the write's reply
 * still leaves after it: the loop sends it at the end of its round).
 */
#ifndef MPQEMU_HW_TESTDEV_H
#define MPQEMU_HW_TESTDEV_H

enum {
    TESTDEV_VENDOR = 0x1234,
    TESTDEV_DEVICE = 0x4d50,
    TESTDEV_CLASS = 0x00ff00,       /* unclassified, "other" */
    TESTDEV_MAGIC = 0x4d505144,     /* "MPQD" */

    TESTDEV_REG_ID = 0x00,          /* ro */
    TESTDEV_REG_VERSION = 0x04,     /* ro */
    TESTDEV_REG_SCRATCH = 0x08,     /* rw */
    TESTDEV_REG_DMA_ADDR = 0x10,    /* rw, 64 bits */
    TESTDEV_REG_DMA_LEN = 0x18,     /* rw */
    TESTDEV_REG_DMA_CMD = 0x1c,     /* wo: starts a DMA */
    TESTDEV_REG_STATUS = 0x20,      /* ro */
    TESTDEV_REG_IRQ_STATUS = 0x24,  /* write 1 to clear */
    TESTDEV_REG_IRQ_MASK = 0x28,    /* rw */
    TESTDEV_REG_IRQ_RAISE = 0x2c,   /* wo: sets IRQ_STATUS bits */
    TESTDEV_REG_DMA_COUNT = 0x30,   /* ro: DMAs completed */
    TESTDEV_REG_DMA_CMD_BH = 0x34,  /* wo: starts a DMA from a bottom half (one at a time) */

    TESTDEV_DMA_FROM_GUEST = 1,     /* guest memory -> buffer */
    TESTDEV_DMA_TO_GUEST = 2,       /* buffer -> guest memory */

    TESTDEV_STATUS_DMA_ERROR = 0x2,
    TESTDEV_IRQ_DMA_DONE = 0x1,
    TESTDEV_IRQ_DMA_ERROR = 0x2,
    TESTDEV_IRQ_SOFT = 0x4,

    TESTDEV_BAR0_SIZE = 4096,
    TESTDEV_BAR1_SIZE = 64,
};

#endif
