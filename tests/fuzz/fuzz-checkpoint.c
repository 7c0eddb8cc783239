// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A device process restarted from a checkpoint a compromised predecessor
 * wrote (docs/restart.md): the input is the checkpoint's bytes from its
 * start (header, directory, areas; the rest of the 4 MiB memfd is zero).
 * They go into a checkpoint memfd, which is opened as mpqemu-remote's
 * -x-checkpoint opens it; then the fuzz remote (fuzz-vm.h: an LSI53C895A
 * with scsi-hd and scsi-cd disks) and an mpqemu-testdev are realized,
 * restoring their configuration spaces, register files and the disks'
 * medium state (a changed medium is opened again only among the harness's
 * own images: fuzz-vm.c, open_kept_drive()) from it, and
 * driven as a guest's driver drives them after the restart:
 *
 *   - every register and the configuration space read back;
 *   - SCRIPTS started again where the checkpoint's DSP says (its SCRIPTS
 *     RAM is in the checkpoint too), the testdev's DMA run with its
 *     restored address and length, in the write and from a bottom half;
 *   - a READ with disconnection on the restored chip, as it was left;
 *   - the driver's recovery: a soft reset (ISTAT0 SRST) and the BARs
 *     programmed again, then an INQUIRY, which must complete: whatever the
 *     checkpoint held, a reset gives the driver a working chip back;
 *   - the remote torn down and the checkpoint closed: nothing may leak.
 *
 * MPQEMU_FUZZ_CHECKPOINT_OUT=PREFIX writes the checkpoint as the devices
 * leave it, trailing zeros cut, to PREFIX-inflight (the READ in flight, as
 * a process killed then leaves it) and PREFIX-done (after the INQUIRY):
 * real checkpoints, the corpus's seed-real-* entries (tests/fuzz/seeds.py).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "fuzz-vm.h"
#include "hw/device.h"
#include "hw/testdev.h"
#include "lsi-gen.h"
#include "pci/dma.h"
#include "pci/pci.h"
#include "util/checkpoint.h"

enum {
    SETTLE_ROUNDS = 64,
    R_DSTAT = 0x0c, R_DSA = 0x10, R_ISTAT0 = 0x14, R_DSP = 0x2c, R_DSPS = 0x30, R_SIST0 = 0x42,
    ISTAT0_SRST = 0x40,
    DSPS_DONE = 1,                  /* the recipe's INT when the command completed */
    INQUIRY_DATA = 0x8000, INQUIRY_STATUS = 0x8100,
};

/*
 * The bytes lsi_gen_recipe() reads, in its order, for a plain driver's
 * command (no twist): MESSAGE OUT, the CDB, where its blocks go, the target.
 */
#define RECIPE(identify, cdb0, cdb1, cdb2, cdb3, cdb4, cdb5, cdb6, cdb7, cdb8, cdb9, slot, \
               target, count_pick, data, status, msgin)                                    \
    {                                                                                      \
        0x00,                   /* no twist */                                             \
        0, 0, (identify), 0,    /* one message: IDENTIFY with these bits */                \
        0xf0, 0x04,             /* the CDB as written, cut to its group's length */        \
        (cdb0), (cdb1), (cdb2), (cdb3), (cdb4), (cdb5), (cdb6), (cdb7), (cdb8), (cdb9),    \
        0, 0, 0, 0, 0, 0,                                                                  \
        (slot), (slot),         /* message and CDB in the slot's place */                  \
        (target),                                                                          \
        (count_pick),           /* the data move's byte count, from lsi-gen's table */    \
        0, (data) & 0xff, (data) >> 8,     /* data, status, message in: guest RAM */       \
        0, (status) & 0xff, (status) >> 8,                                                 \
        0,                      /* one MESSAGE IN byte at a time */                        \
        0, (msgin) & 0xff, (msgin) >> 8,                                                   \
        (slot),                 /* the DSA table's slot */                                 \
    }

/* INQUIRY, 36 bytes, of target 0 (sd0) without disconnection. */
static const uint8_t inquiry_recipe[] = RECIPE(0x00, 0x12, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0,
                                               12, INQUIRY_DATA, INQUIRY_STATUS, 0x8200);
/* READ(10) of 8 blocks at 0 of target 1 (sd1, qcow2: completes later), disconnection allowed. */
static const uint8_t read_recipe[] = RECIPE(0x40, 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 1, 18,
                                            0x9000, 0x9100, 0x9200);

struct world {
    struct fuzz_vm vm;
    struct pci_device *testdev;
    int ram;                    /* guest RAM, LSI_RAM_BYTES */
    struct dma_space dma;
};

/* --- the checkpoint -------------------------------------------------------------- */

/* A checkpoint memfd holding the input, opened as the device process opens it; its fd. */
static int open_checkpoint(const uint8_t *data, size_t size)
{
    char *err = NULL;
    int fd = checkpoint_create_fd(&err);

    if (fd < 0) {
        fuzz_fail("%s", err);
    }
    size = size < CHECKPOINT_SIZE ? size : CHECKPOINT_SIZE;
    if (size && pwrite(fd, data, size, 0) != (ssize_t)size) {
        fuzz_fail("pwrite checkpoint: %s", strerror(errno));
    }
    if (checkpoint_open(fd, &err) < 0) {
        fuzz_fail("checkpoint_open: %s", err);
    }
    return fd;
}

/* MPQEMU_FUZZ_CHECKPOINT_OUT: the checkpoint as it is now, trailing zeros cut. */
static void dump_checkpoint(int fd, const char *stage)
{
    const char *prefix = getenv("MPQEMU_FUZZ_CHECKPOINT_OUT");
    uint8_t *bytes;
    size_t len = CHECKPOINT_SIZE;
    char path[4096];
    FILE *f;

    if (!prefix) {
        return;
    }
    bytes = mmap(NULL, CHECKPOINT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (bytes == MAP_FAILED) {
        fuzz_fail("mmap checkpoint: %s", strerror(errno));
    }
    while (len && !bytes[len - 1]) {
        len--;
    }
    snprintf(path, sizeof(path), "%s-%s", prefix, stage);
    f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len || fclose(f)) {
        fuzz_fail("writing %s: %s", path, strerror(errno));
    }
    munmap(bytes, CHECKPOINT_SIZE);
}

/* --- guest memory and the generator's writes -------------------------------------- */

static void guest_init(struct world *w)
{
    struct dma_map_request flat = { 0, LSI_RAM_BYTES, -1, 0 };
    char *err = NULL;

    w->ram = memfd_create("fuzz-guest-ram", MFD_CLOEXEC);
    if (w->ram < 0 || ftruncate(w->ram, LSI_RAM_BYTES) < 0) {
        fuzz_fail("guest RAM: %s", strerror(errno));
    }
    flat.fd = w->ram;
    dma_space_init(&w->dma);
    if (dma_space_replace(&w->dma, &flat, 1, &err) < 0) {
        fuzz_fail("mapping guest RAM: %s", err);
    }
    w->vm.lsi->dma = &w->dma;
    w->testdev->dma = &w->dma;
}

static void guest_fini(struct world *w)
{
    dma_space_clear(&w->dma);
    w->vm.lsi->dma = NULL;
    w->testdev->dma = NULL;
    close(w->ram);
}

/* Guest RAM by pwrite, SCRIPTS RAM through BAR2 a dword at a time. */
static void gen_write(void *opaque, uint32_t addr, const void *data, size_t len)
{
    struct world *w = opaque;
    const uint8_t *p = data;

    if (addr < LSI_RAM_BYTES) {
        len = len < LSI_RAM_BYTES - addr ? len : LSI_RAM_BYTES - addr;
        if (pwrite(w->ram, data, len, addr) != (ssize_t)len) {
            fuzz_fail("pwrite guest RAM: %s", strerror(errno));
        }
        return;
    }
    for (size_t i = 0; i + 4 <= len && addr - LSI_SRAM_BASE + i < LSI_SRAM_BYTES; i += 4) {
        uint32_t v = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 |
                     (uint32_t)p[i + 3] << 24;

        pci_bar_write(w->vm.lsi, 2, addr - LSI_SRAM_BASE + i, v, 4);
    }
}

/* The recipe's program in SCRIPTS RAM, its table in guest RAM, SCRIPTS started. */
static void run_recipe(struct world *w, const uint8_t *bytes, size_t len)
{
    struct fuzz_input in;
    struct lsi_gen gen = { .in = &in, .write = gen_write, .opaque = w };
    uint32_t dsa;

    fi_init(&in, bytes, len);
    dsa = lsi_gen_recipe(&gen, LSI_SRAM_BASE);
    pci_bar_write(w->vm.lsi, 1, R_DSA, dsa, 4);
    pci_bar_write(w->vm.lsi, 1, R_DSP, LSI_SRAM_BASE, 4);
}

/* --- what a driver does after the restart ---------------------------------------- */

/* MPQEMU_FUZZ_TRACE: the chip's state after each stage (registers read without side effects). */
static void trace(struct world *w, const char *stage)
{
    struct pci_device *d = w->vm.lsi;

    if (!getenv("MPQEMU_FUZZ_TRACE")) {
        return;
    }
    fprintf(stderr, "%-10s ISTAT0 %02x ISTAT1 %02x SSTAT1 %02x SCNTL1 %02x DSP %08x DSA %08x"
            " DSPS %08x\n", stage, (unsigned)pci_bar_read(d, 1, 0x14, 1),
            (unsigned)pci_bar_read(d, 1, 0x15, 1), (unsigned)pci_bar_read(d, 1, 0x0e, 1),
            (unsigned)pci_bar_read(d, 1, 0x01, 1), (unsigned)pci_bar_read(d, 1, R_DSP, 4),
            (unsigned)pci_bar_read(d, 1, R_DSA, 4), (unsigned)pci_bar_read(d, 1, R_DSPS, 4));
}

/*
 * Each BAR the restored configuration space decodes, reached by address as
 * a transport reaches it: its first and last dwords.
 */
static void read_by_address(struct pci_device *d)
{
    for (int i = 0; i < PCI_NUM_BARS; i++) {
        bool memory = d->bars[i].type != PCI_BAR_IO;
        uint64_t base, off;

        if (!pci_bar_decodes(d, i, &base)) {
            continue;
        }
        for (int last = 0; last < 2; last++) {
            int bar = pci_bar_find(d, memory, base + (last ? d->bars[i].size - 4 : 0), 4, &off);

            if (bar >= 0) {
                pci_bar_read(d, bar, off, 4);
            }
        }
    }
}

/* Everything read back, as a driver finding its device again may. */
static void read_back(struct world *w)
{
    read_by_address(w->vm.lsi);
    read_by_address(w->testdev);
    for (uint32_t off = 0; off < PCI_CONFIG_SIZE; off += 4) {
        pci_config_read(w->vm.lsi, off, 4);
        pci_config_read(w->testdev, off, 4);
    }
    for (uint32_t off = 0; off < 0x100; off++) {
        pci_bar_read(w->vm.lsi, 1, off, 1);     /* DSTAT, SIST0, SIST1 unstack as they go */
    }
    for (uint32_t off = 0; off < LSI_SRAM_BYTES; off += 512) {
        pci_bar_read(w->vm.lsi, 2, off, 4);
    }
    for (uint32_t off = 0; off < 0x40; off += 4) {
        pci_bar_read(w->testdev, 0, off, 4);
    }
}

/* A driver's interrupt handler: ISTAT0, then DSTAT and SIST0/SIST1 read (and so cleared). */
static void take_interrupt(struct world *w)
{
    pci_bar_read(w->vm.lsi, 1, R_ISTAT0, 1);
    pci_bar_read(w->vm.lsi, 1, R_DSTAT, 1);
    pci_bar_read(w->vm.lsi, 1, R_SIST0, 2);
}

/*
 * The testdev's DMA both ways with its restored address and length, in the
 * write and from a bottom half (run by the settling that follows), then its
 * interrupts.
 */
static void drive_testdev(struct world *w)
{
    pci_bar_write(w->testdev, 0, TESTDEV_REG_IRQ_MASK, 7, 4);
    pci_bar_write(w->testdev, 0, TESTDEV_REG_DMA_CMD, TESTDEV_DMA_TO_GUEST, 4);
    pci_bar_write(w->testdev, 0, TESTDEV_REG_DMA_CMD, TESTDEV_DMA_FROM_GUEST, 4);
    pci_bar_write(w->testdev, 0, TESTDEV_REG_DMA_CMD_BH, TESTDEV_DMA_TO_GUEST, 4);
    pci_bar_read(w->testdev, 2, 0, 8);
    pci_bar_write(w->testdev, 0, TESTDEV_REG_IRQ_STATUS, UINT32_MAX, 4);
}

/* After a soft reset and the BARs programmed again, an INQUIRY completes. */
static void check_recovery(struct world *w)
{
    uint8_t status = 0xff, data[36] = { 0 };
    uint32_t dsps;

    pci_bar_write(w->vm.lsi, 1, R_ISTAT0, ISTAT0_SRST, 1);
    pci_bar_write(w->vm.lsi, 1, R_ISTAT0, 0, 1);
    fuzz_vm_firmware(&w->vm);
    run_recipe(w, inquiry_recipe, sizeof(inquiry_recipe));
    fuzz_vm_settle(&w->vm, SETTLE_ROUNDS);
    dsps = (uint32_t)pci_bar_read(w->vm.lsi, 1, R_DSPS, 4);
    if (pread(w->ram, &status, 1, INQUIRY_STATUS) != 1 ||
        pread(w->ram, data, sizeof(data), INQUIRY_DATA) != (ssize_t)sizeof(data)) {
        fuzz_fail("reading guest RAM: %s", strerror(errno));
    }
    if (dsps != DSPS_DONE || status != 0 || data[0] != 0 || data[4] == 0) {
        fuzz_fail("after a soft reset, INQUIRY did not complete: DSPS %x, status %x, "
                  "peripheral type %x, additional length %u", dsps, status, data[0], data[4]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    int fd;

    fuzz_process_init();
    fd = open_checkpoint(data, size);
    fuzz_vm_start(&w.vm);
    fuzz_vm_add_device(&w.vm, "mpqemu-testdev,id=t0");
    w.testdev = w.vm.mon.devices[w.vm.mon.n_devices - 1]->pci;
    guest_init(&w);
    trace(&w, "restored");

    read_back(&w);
    fuzz_vm_settle(&w.vm, SETTLE_ROUNDS);
    trace(&w, "read back");
    pci_bar_write(w.vm.lsi, 1, R_DSP, pci_bar_read(w.vm.lsi, 1, R_DSP, 4), 4);
    fuzz_vm_settle(&w.vm, SETTLE_ROUNDS);
    trace(&w, "restarted");
    drive_testdev(&w);
    /* The first READ takes the bus reset's unit attention, the retry goes to the disk. */
    for (int i = 0; i < 2; i++) {
        take_interrupt(&w);
        run_recipe(&w, read_recipe, sizeof(read_recipe));
        trace(&w, "read");
        if (!i) {
            fuzz_vm_settle(&w.vm, SETTLE_ROUNDS);
        }
    }
    dump_checkpoint(fd, "inflight");
    fuzz_vm_settle(&w.vm, SETTLE_ROUNDS);
    trace(&w, "settled");
    check_recovery(&w);
    trace(&w, "inquiry");
    dump_checkpoint(fd, "done");

    fuzz_vm_quiesce(&w.vm);
    guest_fini(&w);
    fuzz_vm_destroy(&w.vm);
    checkpoint_close();
    close(fd);
    return 0;
}
