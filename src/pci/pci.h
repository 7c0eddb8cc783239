/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A conventional PCI function: 256 bytes of configuration space whose bytes
 * are read-only, writable or write-1-to-clear as the masks say, up to six
 * BARs, and one INTx line.  Devices embed a struct pci_device and know
 * nothing of the transport: a transport routes accesses in with
 * pci_config_*() / pci_bar_*() and receives INTx changes through the sink.
 */
#ifndef MPQEMU_PCI_PCI_H
#define MPQEMU_PCI_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "util/byteorder.h"

enum {
    PCI_CONFIG_SIZE = 256,
    PCI_NUM_BARS = 6,

    PCI_VENDOR_ID = 0x00,
    PCI_DEVICE_ID = 0x02,
    PCI_COMMAND = 0x04,
    PCI_STATUS = 0x06,
    PCI_REVISION_ID = 0x08,
    PCI_CLASS_PROG = 0x09,
    PCI_CLASS_DEVICE = 0x0a,
    PCI_CACHE_LINE_SIZE = 0x0c,
    PCI_LATENCY_TIMER = 0x0d,
    PCI_HEADER_TYPE = 0x0e,
    PCI_BASE_ADDRESS_0 = 0x10,
    PCI_SUBSYSTEM_VENDOR_ID = 0x2c,
    PCI_SUBSYSTEM_ID = 0x2e,
    PCI_ROM_ADDRESS = 0x30,
    PCI_CAPABILITY_LIST = 0x34,
    PCI_INTERRUPT_LINE = 0x3c,
    PCI_INTERRUPT_PIN = 0x3d,
    PCI_MIN_GNT = 0x3e,
    PCI_MAX_LAT = 0x3f,

    PCI_COMMAND_IO = 0x1,
    PCI_COMMAND_MEMORY = 0x2,
    PCI_COMMAND_MASTER = 0x4,
    PCI_COMMAND_PARITY = 0x40,
    PCI_COMMAND_SERR = 0x100,
    PCI_COMMAND_INTX_DISABLE = 0x400,

    PCI_STATUS_INTERRUPT = 0x8,
    PCI_STATUS_DEVSEL_MEDIUM = 0x200,
    PCI_STATUS_W1C = 0xf900,    /* parity, target/master abort, SERR, parity detected */

    PCI_BASE_ADDRESS_SPACE_IO = 0x1,
    PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x4,
    PCI_BASE_ADDRESS_MEM_PREFETCH = 0x8,
};

enum pci_bar_type { PCI_BAR_UNUSED, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_bar {
    enum pci_bar_type type;
    bool prefetchable;
    uint64_t size;
};

struct pci_device;

struct pci_device_ops {
    /* size is 1, 2, 4 or 8 and off + size <= the BAR's size. */
    uint64_t (*bar_read)(struct pci_device *d, int bar, uint64_t off, unsigned size);
    void (*bar_write)(struct pci_device *d, int bar, uint64_t off, uint64_t val,
                      unsigned size);
    /* Device state back to power-on; config space is restored by the core. */
    void (*reset)(struct pci_device *d);
};

/* Where the INTx line goes; a transport installs one. */
struct pci_intx_sink {
    void (*set_level)(void *opaque, bool level);
    void *opaque;
};

struct dma_space;

struct pci_ids {
    uint16_t vendor, device;
    uint16_t subsystem_vendor, subsystem;
    uint32_t class_code;    /* base class << 16 | subclass << 8 | prog-if */
    uint8_t revision;
    uint8_t interrupt_pin;  /* 0: none, 1: INTA ... 4: INTD */
};

/*
 * The BARs that decode, as the config bytes that place them (COMMAND and
 * the BAR registers) said when it was made: a lookup compares those bytes
 * first, so it is never stale, whoever wrote them.
 */
struct pci_decode_cache {
    uint8_t bar_regs[4 * PCI_NUM_BARS];
    uint8_t command[2];
    bool valid;
    int n;
    struct pci_bar_window {
        uint64_t base, size;
        int bar;
        bool memory;
    } win[PCI_NUM_BARS];
};

struct pci_device {
    const char *id;
    const struct pci_device_ops *ops;
    /* own_config, or the device's area of the checkpoint (pci_config_keep_in) */
    uint8_t *config;
    uint8_t own_config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE];
    uint8_t w1cmask[PCI_CONFIG_SIZE];
    uint8_t power_on[PCI_CONFIG_SIZE];
    struct pci_bar bars[PCI_NUM_BARS];
    bool irq_level;     /* what the device asks for */
    bool intx_out;      /* what the sink was last told */
    struct pci_intx_sink intx;
    struct dma_space *dma;  /* guest memory as the transport maps it */
    struct pci_decode_cache decode;     /* pci_bar_find's */
};

void pci_device_init(struct pci_device *d, const char *id,
                     const struct pci_device_ops *ops, const struct pci_ids *ids);
/*
 * Places BAR 'bar' of 'size' bytes: a power of two, at least 4 for I/O and
 * 16 for memory, at most 2 GiB for a 32-bit BAR.  A 64-bit BAR takes the
 * next slot for its upper half.  A slot out of range or taken (by a BAR or
 * an upper half), a 64-bit BAR in the last slot (its upper half would not
 * be a BAR register) or a size out of bounds is refused: -1 and a message
 * in *err, nothing changed.
 */
int pci_register_bar(struct pci_device *d, int bar, enum pci_bar_type type,
                     uint64_t size, bool prefetchable, char **err);
/* Call after the device has set its own config bytes: fixes the reset image. */
void pci_device_realized(struct pci_device *d);
/*
 * Keeps the configuration space in 'area' (PCI_CONFIG_SIZE bytes of the
 * checkpoint) from now on.  A restored area is taken when its read-only
 * bytes are the device's (the same model, not corrupt): the BARs, COMMAND
 * and interrupt line the VMM programmed survive a restart.  Otherwise the
 * current space is copied there.  Returns whether the area was taken as
 * restored.
 */
bool pci_config_keep_in(struct pci_device *d, uint8_t *area, bool restored);

bool pci_config_access_valid(uint32_t off, uint32_t len);
uint32_t pci_config_read(struct pci_device *d, uint32_t off, uint32_t len);
void pci_config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len);

/* Base address programmed into a BAR, whether or not it decodes. */
uint64_t pci_bar_address(const struct pci_device *d, int bar);
/* True when the BAR decodes: enabled in COMMAND, programmed, no overflow. */
bool pci_bar_decodes(const struct pci_device *d, int bar, uint64_t *base);
/*
 * The BAR that decodes [addr, addr + size) in memory or I/O space, or -1.
 * The access must lie wholly inside the BAR.
 */
int pci_bar_find(struct pci_device *d, bool memory, uint64_t addr,
                 unsigned size, uint64_t *off);
/*
 * How many of the 'len' bytes from addr lie before the next edge of a
 * decoding BAR window of that space: all of them resolve as the first does
 * (one BAR, or none), so that a bus master's access split there reaches
 * each byte where an access of that byte alone would.
 */
uint64_t pci_bar_run(struct pci_device *d, bool memory, uint64_t addr, uint64_t len);
bool pci_access_size_valid(unsigned size);
uint64_t pci_bar_read(struct pci_device *d, int bar, uint64_t off, unsigned size);
void pci_bar_write(struct pci_device *d, int bar, uint64_t off, uint64_t val, unsigned size);

bool pci_bus_master(const struct pci_device *d);
void pci_set_irq(struct pci_device *d, bool level);
void pci_set_intx_sink(struct pci_device *d, const struct pci_intx_sink *sink);
void pci_device_reset(struct pci_device *d);

/* Config-space fields are little-endian. */
static inline uint16_t pci_get_word(const uint8_t *p) { return le16(p); }
static inline uint32_t pci_get_long(const uint8_t *p) { return le32(p); }
static inline void pci_set_word(uint8_t *p, uint16_t v) { put_le16(p, v); }
static inline void pci_set_long(uint8_t *p, uint32_t v) { put_le32(p, v); }

#endif
