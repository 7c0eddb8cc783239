/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What each wire protocol provides to the client library. */
#ifndef MPQEMU_CLIENT_INTERNAL_H
#define MPQEMU_CLIENT_INTERNAL_H

#include "client/mpqemu-client.h"

struct mpq_transport {
    const char *name;
    int (*map_ram)(struct mpq_dev *d, const struct mpq_ram *ram, size_t n, char **err);
    int (*cfg_read)(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t *val, char **err);
    int (*cfg_write)(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t val, char **err);
    int (*bar_read)(struct mpq_dev *d, int bar, uint64_t off, unsigned size, uint64_t *val,
                    char **err);
    int (*bar_write)(struct mpq_dev *d, int bar, uint64_t off, unsigned size, uint64_t val,
                     char **err);
    /* Hands the device the irqfd and the resample fd. */
    int (*intx_enable)(struct mpq_dev *d, int irqfd, int resamplefd, char **err);
    int (*reset)(struct mpq_dev *d, char **err);
    /* Acknowledges INTx; NULL: by the resample eventfd, as KVM does. */
    int (*intx_eoi)(struct mpq_dev *d);
    /*
     * Serves requests the device sent while nobody waited for a reply
     * (vfio-user's DMA_READ/DMA_WRITE); NULL when the protocol has none.
     */
    int (*serve_requests)(struct mpq_dev *d, char **err);
    void (*close)(struct mpq_dev *d);
};

struct mpq_dev {
    const struct mpq_transport *t;
    int sock;
    int timeout_ms;
    uint64_t poll_ns;       /* spin this long for a reply before sleeping */
    int irqfd, resamplefd;
    struct mpq_pci_info info;
    bool probed;
    void *proto;            /* the transport's own state */
};

struct mpq_dev *mpq_dev_new(const struct mpq_transport *t, int sock);

/*
 * While waiting for a reply that has not come: spins until poll_ns have
 * passed since 'start_us', then sleeps until the socket is readable or the
 * timeout.  0 to read again, -1 with *err on timeout or error.
 */
int mpq_await_reply(struct mpq_dev *d, double start_us, char **err);

#endif
