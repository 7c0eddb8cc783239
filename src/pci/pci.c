// SPDX-License-Identifier: GPL-2.0-or-later
#include "pci/pci.h"

#include <string.h>

#include "util/error.h"

void pci_device_init(struct pci_device *d, const char *id,
                     const struct pci_device_ops *ops, const struct pci_ids *ids)
{
    memset(d, 0, sizeof(*d));
    d->config = d->own_config;
    d->id = id;
    d->ops = ops;
    pci_set_word(d->config + PCI_VENDOR_ID, ids->vendor);
    pci_set_word(d->config + PCI_DEVICE_ID, ids->device);
    d->config[PCI_REVISION_ID] = ids->revision;
    d->config[PCI_CLASS_PROG] = (uint8_t)ids->class_code;
    pci_set_word(d->config + PCI_CLASS_DEVICE, (uint16_t)(ids->class_code >> 8));
    pci_set_word(d->config + PCI_SUBSYSTEM_VENDOR_ID, ids->subsystem_vendor);
    pci_set_word(d->config + PCI_SUBSYSTEM_ID, ids->subsystem);
    d->config[PCI_INTERRUPT_PIN] = ids->interrupt_pin;

    pci_set_word(d->wmask + PCI_COMMAND,
                 PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                 PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    pci_set_word(d->w1cmask + PCI_STATUS, PCI_STATUS_W1C);
    d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
    d->wmask[PCI_LATENCY_TIMER] = 0xff;
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    pci_device_realized(d);
}

/* Whether slot 'bar' is free: neither a BAR nor the upper half of a 64-bit one. */
static bool bar_slot_free(const struct pci_device *d, int bar)
{
    return d->bars[bar].type == PCI_BAR_UNUSED &&
           (bar == 0 || d->bars[bar - 1].type != PCI_BAR_MEM64);
}

static int check_bar(const struct pci_device *d, int bar, enum pci_bar_type type,
                     uint64_t size, char **err)
{
    uint64_t min = type == PCI_BAR_IO ? 4 : 16;
    uint64_t max = type == PCI_BAR_MEM64 ? 1ull << 63 : 1ull << 31;

    if (bar < 0 || bar >= PCI_NUM_BARS) {
        error_setf(err, "no BAR %d (a function has BARs 0 to %d)", bar, PCI_NUM_BARS - 1);
        return -1;
    }
    if (type != PCI_BAR_IO && type != PCI_BAR_MEM32 && type != PCI_BAR_MEM64) {
        error_setf(err, "BAR %d has no type", bar);
        return -1;
    }
    if (!bar_slot_free(d, bar)) {
        error_setf(err, "BAR %d is taken", bar);
        return -1;
    }
    if (type == PCI_BAR_MEM64 && bar == PCI_NUM_BARS - 1) {
        /* Its upper dword would be config offset 0x28, CardBus CIS, not a BAR. */
        error_setf(err, "a 64-bit BAR %d has no slot above it for its upper half", bar);
        return -1;
    }
    if (type == PCI_BAR_MEM64 && !bar_slot_free(d, bar + 1)) {
        error_setf(err, "the upper half of the 64-bit BAR %d would be BAR %d, taken",
                   bar, bar + 1);
        return -1;
    }
    /* A 32-bit BAR of 4 GiB could only sit at 0, which does not decode. */
    if (size < min || size > max || (size & (size - 1))) {
        error_setf(err, "BAR %d of %llu bytes: the size must be a power of two "
                   "from %llu to %llu", bar, (unsigned long long)size,
                   (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    return 0;
}

int pci_register_bar(struct pci_device *d, int bar, enum pci_bar_type type,
                     uint64_t size, bool prefetchable, char **err)
{
    uint8_t *cfg, *wm;
    uint64_t mask = ~(size - 1);
    uint32_t flags = 0;

    if (check_bar(d, bar, type, size, err) < 0) {
        return -1;
    }
    cfg = d->config + PCI_BASE_ADDRESS_0 + 4 * bar;
    wm = d->wmask + PCI_BASE_ADDRESS_0 + 4 * bar;
    d->bars[bar] = (struct pci_bar){ .type = type, .prefetchable = prefetchable, .size = size };
    d->decode.valid = false;
    if (type == PCI_BAR_IO) {
        flags = PCI_BASE_ADDRESS_SPACE_IO;
        mask &= ~(uint64_t)0x3;
    } else {
        flags = (type == PCI_BAR_MEM64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) |
                (prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
        mask &= ~(uint64_t)0xf;
    }
    pci_set_long(cfg, flags);
    pci_set_long(wm, (uint32_t)mask);
    if (type == PCI_BAR_MEM64) {
        /* The upper half is the next BAR slot (checked to be one). */
        pci_set_long(cfg + 4, 0);
        pci_set_long(wm + 4, (uint32_t)(mask >> 32));
    }
    pci_device_realized(d);
    return 0;
}

void pci_device_realized(struct pci_device *d)
{
    memcpy(d->power_on, d->config, PCI_CONFIG_SIZE);
}

/* The bytes no write can change hold the power-on values (STATUS follows the device). */
static bool config_matches_model(const struct pci_device *d, const uint8_t *cfg)
{
    for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++) {
        uint8_t fixed = (uint8_t)~(d->wmask[i] | d->w1cmask[i]);

        if (i == PCI_STATUS || i == PCI_STATUS + 1) {
            continue;
        }
        if ((cfg[i] & fixed) != (d->power_on[i] & fixed)) {
            return false;
        }
    }
    return true;
}

bool pci_config_keep_in(struct pci_device *d, uint8_t *area, bool restored)
{
    uint16_t status;

    if (!area) {
        return false;
    }
    restored = restored && config_matches_model(d, area);
    if (!restored) {
        memcpy(area, d->config, PCI_CONFIG_SIZE);
    }
    d->config = area;
    /* The interrupt status is the device's, whatever the area says. */
    status = pci_get_word(d->config + PCI_STATUS) & ~PCI_STATUS_INTERRUPT;
    pci_set_word(d->config + PCI_STATUS, status | (d->irq_level ? PCI_STATUS_INTERRUPT : 0));
    return restored;
}

bool pci_config_access_valid(uint32_t off, uint32_t len)
{
    return (len == 1 || len == 2 || len == 4) && off < PCI_CONFIG_SIZE &&
           len <= PCI_CONFIG_SIZE - off;
}

uint32_t pci_config_read(struct pci_device *d, uint32_t off, uint32_t len)
{
    uint32_t val = 0;

    for (uint32_t i = 0; i < len; i++) {
        val |= (uint32_t)d->config[off + i] << (8 * i);
    }
    return val;
}

static void update_intx(struct pci_device *d)
{
    bool disabled = pci_get_word(d->config + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
    bool out = d->irq_level && !disabled;

    if (out != d->intx_out) {
        d->intx_out = out;
        if (d->intx.set_level) {
            d->intx.set_level(d->intx.opaque, out);
        }
    }
}

void pci_config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        uint32_t a = off + i;
        uint8_t b = (uint8_t)(val >> (8 * i));

        d->config[a] = (uint8_t)((d->config[a] & ~d->wmask[a]) | (b & d->wmask[a]));
        d->config[a] &= (uint8_t)~(b & d->w1cmask[a]);
    }
    if (off < PCI_COMMAND + 2 && off + len > PCI_COMMAND) {
        update_intx(d);
    }
}

uint64_t pci_bar_address(const struct pci_device *d, int bar)
{
    const uint8_t *cfg = d->config + PCI_BASE_ADDRESS_0 + 4 * bar;
    uint64_t addr = pci_get_long(cfg);

    switch (d->bars[bar].type) {
    case PCI_BAR_IO:
        return addr & ~(uint64_t)0x3;
    case PCI_BAR_MEM64:
        addr |= (uint64_t)pci_get_long(cfg + 4) << 32;
        __attribute__((fallthrough));
    case PCI_BAR_MEM32:
        return addr & ~(uint64_t)0xf;
    default:
        return 0;
    }
}

bool pci_bar_decodes(const struct pci_device *d, int bar, uint64_t *base)
{
    const struct pci_bar *b = &d->bars[bar];
    uint16_t cmd = pci_get_word(d->config + PCI_COMMAND);
    uint64_t addr = pci_bar_address(d, bar);
    uint64_t limit = b->type == PCI_BAR_MEM64 ? UINT64_MAX : UINT32_MAX;

    if (b->type == PCI_BAR_UNUSED) {
        return false;
    }
    if (!(cmd & (b->type == PCI_BAR_IO ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY))) {
        return false;
    }
    /*
     * 0 is "not programmed"; like QEMU, a BAR that reaches the top of its
     * address space does not decode, so a BAR being sized (all ones) is off.
     */
    if (addr == 0 || b->size - 1 >= limit - addr) {
        return false;
    }
    *base = addr;
    return true;
}

/* The decoding BARs, in BAR order (the first that claims an address has it). */
static const struct pci_decode_cache *decoding(struct pci_device *d)
{
    struct pci_decode_cache *c = &d->decode;
    const uint8_t *command = d->config + PCI_COMMAND, *bar_regs = d->config + PCI_BASE_ADDRESS_0;

    if (c->valid && !memcmp(c->bar_regs, bar_regs, sizeof(c->bar_regs)) &&
        !memcmp(c->command, command, sizeof(c->command))) {
        return c;
    }
    memcpy(c->bar_regs, bar_regs, sizeof(c->bar_regs));
    memcpy(c->command, command, sizeof(c->command));
    c->n = 0;
    for (int i = 0; i < PCI_NUM_BARS; i++) {
        uint64_t base;

        if (pci_bar_decodes(d, i, &base)) {
            c->win[c->n++] = (struct pci_bar_window){
                .base = base, .size = d->bars[i].size, .bar = i,
                .memory = d->bars[i].type != PCI_BAR_IO,
            };
        }
    }
    c->valid = true;
    return c;
}

int pci_bar_find(struct pci_device *d, bool memory, uint64_t addr,
                 unsigned size, uint64_t *off)
{
    const struct pci_decode_cache *c = decoding(d);

    for (int i = 0; i < c->n; i++) {
        const struct pci_bar_window *w = &c->win[i];

        if (w->memory == memory && addr >= w->base && size <= w->size &&
            addr - w->base <= w->size - size) {
            *off = addr - w->base;
            return w->bar;
        }
    }
    return -1;
}

uint64_t pci_bar_run(struct pci_device *d, bool memory, uint64_t addr, uint64_t len)
{
    const struct pci_decode_cache *c = decoding(d);

    for (int i = 0; i < c->n; i++) {
        const struct pci_bar_window *w = &c->win[i];
        uint64_t edge = addr < w->base ? w->base : w->base + w->size;   /* no window wraps */

        if (w->memory == memory && edge > addr && edge - addr < len) {
            len = edge - addr;
        }
    }
    return len;
}

bool pci_access_size_valid(unsigned size)
{
    return size == 1 || size == 2 || size == 4 || size == 8;
}

uint64_t pci_bar_read(struct pci_device *d, int bar, uint64_t off, unsigned size)
{
    return d->ops->bar_read(d, bar, off, size);
}

void pci_bar_write(struct pci_device *d, int bar, uint64_t off, uint64_t val, unsigned size)
{
    d->ops->bar_write(d, bar, off, val, size);
}

bool pci_bus_master(const struct pci_device *d)
{
    return pci_get_word(d->config + PCI_COMMAND) & PCI_COMMAND_MASTER;
}

void pci_set_irq(struct pci_device *d, bool level)
{
    uint16_t status = pci_get_word(d->config + PCI_STATUS);

    d->irq_level = level;
    status = level ? (status | PCI_STATUS_INTERRUPT) : (status & ~PCI_STATUS_INTERRUPT);
    pci_set_word(d->config + PCI_STATUS, status);
    update_intx(d);
}

void pci_set_intx_sink(struct pci_device *d, const struct pci_intx_sink *sink)
{
    d->intx = *sink;
    d->intx_out = false;
    update_intx(d);
}

void pci_device_reset(struct pci_device *d)
{
    memcpy(d->config, d->power_on, PCI_CONFIG_SIZE);
    if (d->ops->reset) {
        d->ops->reset(d);
    }
    pci_set_irq(d, false);
}
