// SPDX-License-Identifier: GPL-2.0-or-later
/* The protocol-neutral half of the client: probing, BAR checks, INTx. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client/client-internal.h"
#include "pci/pci.h"
#include "util/error.h"

enum {
    DEFAULT_TIMEOUT_MS = 10000,
    DEFAULT_POLL_NS = 50000,
    /* Where mpq_probe() places BARs, as a PC firmware might. */
    MEM_WINDOW_BASE = 0xe0000000u,
    IO_WINDOW_BASE = 0xc000u,
};

struct mpq_dev *mpq_dev_new(const struct mpq_transport *t, int sock)
{
    struct mpq_dev *d = calloc(1, sizeof(*d));

    if (d) {
        d->t = t;
        d->sock = sock;
        d->timeout_ms = DEFAULT_TIMEOUT_MS;
        d->poll_ns = DEFAULT_POLL_NS;
        d->irqfd = d->resamplefd = -1;
    }
    return d;
}

void mpq_close(struct mpq_dev *d)
{
    if (!d) {
        return;
    }
    d->t->close(d);
    if (d->irqfd >= 0) {
        close(d->irqfd);
    }
    if (d->resamplefd >= 0) {
        close(d->resamplefd);
    }
    free(d);
}

int mpq_await_reply(struct mpq_dev *d, double start_us, char **err)
{
    struct pollfd pfd = { .fd = d->sock, .events = POLLIN };
    int n;

    if (d->poll_ns && mpq_now_us() - start_us < (double)d->poll_ns / 1000) {
        return 0;       /* spin: the reply is usually microseconds away */
    }
    do {
        n = poll(&pfd, 1, d->timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        error_setf(err, "no reply within %d ms", d->timeout_ms);
        return -1;
    }
    if (n < 0) {
        error_setf(err, "poll: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void mpq_set_timeout(struct mpq_dev *d, int timeout_ms)
{
    d->timeout_ms = timeout_ms;
}

void mpq_set_poll_ns(struct mpq_dev *d, uint64_t ns)
{
    d->poll_ns = ns;
}

int mpq_map_ram(struct mpq_dev *d, const struct mpq_ram *ram, size_t n, char **err)
{
    return d->t->map_ram(d, ram, n, err);
}

int mpq_cfg_read(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t *val, char **err)
{
    return d->t->cfg_read(d, off, len, val, err);
}

int mpq_cfg_write(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t val, char **err)
{
    return d->t->cfg_write(d, off, len, val, err);
}

static int check_bar_access(struct mpq_dev *d, int bar, uint64_t off, unsigned size,
                            char **err)
{
    const struct mpq_bar_info *b;

    if (bar < 0 || bar >= PCI_NUM_BARS || !d->probed || !d->info.bars[bar].present) {
        error_setf(err, "BAR %d is not present (or mpq_probe() was not called)", bar);
        return -1;
    }
    b = &d->info.bars[bar];
    if (size > b->size || off > b->size - size) {
        error_setf(err, "BAR %d access at 0x%llx size %u is outside its %llu bytes", bar,
                   (unsigned long long)off, size, (unsigned long long)b->size);
        return -1;
    }
    return 0;
}

int mpq_bar_read(struct mpq_dev *d, int bar, uint64_t off, unsigned size, uint64_t *val,
                 char **err)
{
    if (check_bar_access(d, bar, off, size, err) < 0) {
        return -1;
    }
    return d->t->bar_read(d, bar, off, size, val, err);
}

int mpq_bar_write(struct mpq_dev *d, int bar, uint64_t off, unsigned size, uint64_t val,
                  char **err)
{
    if (check_bar_access(d, bar, off, size, err) < 0) {
        return -1;
    }
    return d->t->bar_write(d, bar, off, size, val, err);
}

/* Sizes one BAR slot as QEMU's proxy does; returns the slots it used (1 or 2). */
static int size_bar(struct mpq_dev *d, int i, struct mpq_bar_info *b, char **err)
{
    uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * (uint32_t)i, orig, mask, hi_orig, hi_mask = 0;

    if (mpq_cfg_read(d, reg, 4, &orig, err) < 0 ||
        mpq_cfg_write(d, reg, 4, UINT32_MAX, err) < 0 ||
        mpq_cfg_read(d, reg, 4, &mask, err) < 0 ||
        mpq_cfg_write(d, reg, 4, orig, err) < 0) {
        return -1;
    }
    memset(b, 0, sizeof(*b));
    if (!mask) {
        return 1;
    }
    b->io = mask & PCI_BASE_ADDRESS_SPACE_IO;
    b->mem64 = !b->io && (mask & 0x6) == PCI_BASE_ADDRESS_MEM_TYPE_64;
    b->prefetchable = !b->io && (mask & PCI_BASE_ADDRESS_MEM_PREFETCH);
    if (b->mem64 && i + 1 < PCI_NUM_BARS) {
        if (mpq_cfg_read(d, reg + 4, 4, &hi_orig, err) < 0 ||
            mpq_cfg_write(d, reg + 4, 4, UINT32_MAX, err) < 0 ||
            mpq_cfg_read(d, reg + 4, 4, &hi_mask, err) < 0 ||
            mpq_cfg_write(d, reg + 4, 4, hi_orig, err) < 0) {
            return -1;
        }
    }
    {
        uint64_t full = (uint64_t)hi_mask << 32 | (mask & (b->io ? ~3u : ~15u));

        if (!b->mem64) {
            full |= 0xffffffff00000000ull;
        }
        b->size = ~full + 1;
    }
    b->present = b->size != 0;
    return b->mem64 ? 2 : 1;
}

static int assign_bars(struct mpq_dev *d, char **err)
{
    uint64_t mem = MEM_WINDOW_BASE, io = IO_WINDOW_BASE;

    for (int i = 0; i < PCI_NUM_BARS; i++) {
        struct mpq_bar_info *b = &d->info.bars[i];
        uint64_t *next = b->io ? &io : &mem;
        uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * (uint32_t)i;

        if (!b->present) {
            continue;
        }
        b->addr = (*next + b->size - 1) & ~(b->size - 1);
        *next = b->addr + b->size;
        if (mpq_cfg_write(d, reg, 4, (uint32_t)b->addr, err) < 0 ||
            (b->mem64 && mpq_cfg_write(d, reg + 4, 4, (uint32_t)(b->addr >> 32), err) < 0)) {
            return -1;
        }
    }
    return mpq_cfg_write(d, PCI_COMMAND, 2,
                         PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, err);
}

int mpq_probe(struct mpq_dev *d, struct mpq_pci_info *info, char **err)
{
    struct mpq_pci_info *p = &d->info;
    uint32_t v[6];
    static const uint32_t regs[][2] = {
        { PCI_VENDOR_ID, 2 }, { PCI_DEVICE_ID, 2 }, { PCI_REVISION_ID, 4 },
        { PCI_SUBSYSTEM_VENDOR_ID, 2 }, { PCI_SUBSYSTEM_ID, 2 }, { PCI_INTERRUPT_PIN, 1 },
    };

    for (size_t i = 0; i < 6; i++) {
        if (mpq_cfg_read(d, regs[i][0], regs[i][1], &v[i], err) < 0) {
            return -1;
        }
    }
    memset(p, 0, sizeof(*p));
    p->vendor = (uint16_t)v[0];
    p->device = (uint16_t)v[1];
    p->revision = (uint8_t)v[2];
    p->class_code = v[2] >> 8;
    p->subsystem_vendor = (uint16_t)v[3];
    p->subsystem = (uint16_t)v[4];
    p->interrupt_pin = (uint8_t)v[5];
    for (int i = 0; i < PCI_NUM_BARS;) {
        int used = size_bar(d, i, &p->bars[i], err);

        if (used < 0) {
            return -1;
        }
        i += used;
    }
    if (assign_bars(d, err) < 0) {
        return -1;
    }
    d->probed = true;
    if (info) {
        *info = *p;
    }
    return 0;
}

int mpq_intx_enable(struct mpq_dev *d, char **err)
{
    int irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int resamplefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (irqfd < 0 || resamplefd < 0) {
        error_setf(err, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (d->t->intx_enable(d, irqfd, resamplefd, err) < 0) {
        goto fail;
    }
    if (d->irqfd >= 0) {
        close(d->irqfd);
        close(d->resamplefd);
    }
    d->irqfd = irqfd;
    d->resamplefd = resamplefd;
    return 0;
fail:
    if (irqfd >= 0) {
        close(irqfd);
    }
    if (resamplefd >= 0) {
        close(resamplefd);
    }
    return -1;
}

int mpq_intx_wait(struct mpq_dev *d, int timeout_ms)
{
    /* The device may need us (DMA through messages) before it can interrupt. */
    struct pollfd pfd[2] = { { .fd = d->irqfd, .events = POLLIN },
                             { .fd = d->sock, .events = POLLIN } };
    nfds_t nfds = d->t->serve_requests ? 2 : 1;
    double deadline = mpq_now_us() + timeout_ms * 1000.0;
    uint64_t count;
    int n;

    if (d->irqfd < 0) {
        return -1;
    }
    for (;;) {
        double left_ms = (deadline - mpq_now_us()) / 1000;

        n = poll(pfd, nfds, timeout_ms < 0 ? -1 : left_ms > 0 ? (int)left_ms + 1 : 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n;
        }
        if (pfd[0].revents) {
            return read(d->irqfd, &count, sizeof(count)) == sizeof(count) ? 1 : -1;
        }
        if (d->t->serve_requests(d, NULL) < 0) {
            return -1;
        }
    }
}

int mpq_intx_eoi(struct mpq_dev *d)
{
    uint64_t one = 1;

    if (d->resamplefd < 0) {
        return -1;
    }
    if (d->t->intx_eoi) {
        return d->t->intx_eoi(d);
    }
    return write(d->resamplefd, &one, sizeof(one)) == sizeof(one) ? 0 : -1;
}

int mpq_reset(struct mpq_dev *d, char **err)
{
    return d->t->reset(d, err);
}
