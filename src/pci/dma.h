/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest memory as a device sees it for DMA: regions of guest-physical
 * address space mapped from fds the VMM shares.  Every access is checked
 * against the map; nothing outside a mapped region is ever touched.
 */
#ifndef MPQEMU_PCI_DMA_H
#define MPQEMU_PCI_DMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct dma_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;      /* host address of gpa; NULL: reached through messages */
    void *map_base;     /* what mmap() returned */
    size_t map_len;
};

/*
 * Guest memory the VMM registered without an fd can only be reached by
 * asking the VMM to copy (vfio-user's DMA_READ/DMA_WRITE).  The transport
 * installs this; it returns 0 or -1 when the VMM refused or went away.
 */
struct dma_remote {
    int (*copy)(void *opaque, uint64_t gpa, void *buf, size_t len, bool to_guest);
    void *opaque;
};

struct dma_space {
    struct dma_region *regions;    /* sorted by gpa, never overlapping */
    size_t n;
    struct dma_remote remote;
};

/* The most regions one space holds; a VMM asking for more is refused. */
enum { DMA_MAX_REGIONS = 1024 };

/*
 * One region the VMM asks to map: 'size' bytes of 'fd' from 'offset' at
 * 'gpa'.  fd -1 (dma_space_map only): memory reached through dma_remote.
 */
struct dma_map_request {
    uint64_t gpa;
    uint64_t size;
    int fd;
    int64_t offset;
};

/*
 * Runs before mappings go away (DMA_UNMAP, a new SYNC_SYSMEM, the client
 * leaving): whoever moves data into guest memory without holding the map
 * (the disks' I/O in flight, in the kernel) finishes first, so that no
 * transfer lands at an address that is unmapped, or mapped again for
 * something else.  One per process, as its I/O engine.
 */
struct dma_quiesce {
    void (*fn)(void *opaque);
    void *opaque;
};
void dma_set_quiesce(const struct dma_quiesce *q);

void dma_space_init(struct dma_space *s);
void dma_space_clear(struct dma_space *s);
/*
 * Replaces the whole map.  Every request is checked (size, overflow,
 * overlap, fd type and length) and mapped before the old map is dropped;
 * on error the old map stays.  The fds stay the caller's.
 */
int dma_space_replace(struct dma_space *s, const struct dma_map_request *req,
                      size_t n, char **err);

/*
 * Adds one region to the map (vfio-user's DMA_MAP); checked as above, and
 * it must not overlap a region already mapped.
 */
int dma_space_map(struct dma_space *s, const struct dma_map_request *req, char **err);
/*
 * Removes the regions that lie wholly in [gpa, gpa + size) (DMA_UNMAP).  A
 * region only partly inside is an error and nothing is removed.  Returns the
 * number of regions removed.
 */
int dma_space_unmap(struct dma_space *s, uint64_t gpa, uint64_t size, char **err);

/*
 * Host pointer for [gpa, gpa + len) when it lies in one region with a host
 * mapping, else NULL.
 */
void *dma_host_ptr(const struct dma_space *s, uint64_t gpa, uint64_t len);
/*
 * Copies between guest memory and buf; the range may span adjacent
 * regions, and regions without a host mapping go through dma_remote.
 * Returns 0, or -1 when any byte is unmapped (or the mapping faults), in
 * which case nothing is written to guest memory.
 */
int dma_read(const struct dma_space *s, uint64_t gpa, void *buf, size_t len);
int dma_write(const struct dma_space *s, uint64_t gpa, const void *buf, size_t len);

/* One element of a guest scatter-gather list. */
struct dma_sg {
    uint64_t gpa;
    uint64_t len;
};

/*
 * Translates a guest scatter-gather list into host iovecs for zero-copy
 * I/O, splitting elements that cross region boundaries.  Every byte must be
 * mapped in this process.  Returns the number of iovecs and the total length
 * in *total, or -1 with errno EFAULT (a byte unmapped), EREMOTE (a byte only
 * the VMM can reach) or E2BIG (more than max_iov).
 */
int dma_map_sg(const struct dma_space *s, const struct dma_sg *sg, size_t n,
               struct iovec *iov, size_t max_iov, uint64_t *total);

/*
 * One transfer's guest memory as iovecs for I/O, for any device: straight
 * into this process's mapping where the VMM shared the memory by fd, else
 * (memory only the VMM can reach) through a bounce buffer, filled from the
 * guest (dma_read) before a transfer to the device and copied to it
 * (dma_write) once a transfer from the device is done.
 *
 * The bounce buffer is kept and grown across transfers and freed by
 * dma_mapping_release(): the mapping's owner keeps it until no I/O can
 * still land in it (a SCSI request keeps its HBA's mapping until its last
 * reference, which a cancelled request's I/O in flight holds).
 */
struct dma_mapping {
    uint8_t *bounce;
    size_t bounce_size;
    /* The bounced transfer mapped last, until dma_mapping_complete(). */
    bool in_flight, from_device;
    uint64_t gpa;
    size_t len;
};

/* The most one bounced transfer moves; the caller moves the rest in further transfers. */
enum { DMA_BOUNCE_MAX = 256 << 10 };

/*
 * Maps [gpa, gpa + len) for a transfer from the device (from_device: the
 * device writes guest memory) or to it.  Returns the number of iovecs (at
 * most max_iov, at least 1 unless len is 0).  They may cover less than
 * len: the longest prefix that fits in max_iov pieces of this process's
 * mappings, up to the first byte only the VMM reaches, or, from such a
 * byte on, what the bounce buffer holds; the caller maps the rest when the
 * transfer is done.  -1 with errno EFAULT (a byte of the range unmapped,
 * checked before anything is mapped, or the VMM refused the copy), E2BIG
 * (max_iov 0), ENOMEM, or EBUSY (the last bounced transfer is not
 * complete: its buffer is still in use).
 */
int dma_mapping_map(struct dma_mapping *m, const struct dma_space *s, uint64_t gpa,
                    uint64_t len, bool from_device, struct iovec *iov, size_t max_iov);
/*
 * The transfer mapped last moved 'moved' bytes (or failed: moved < 0).  A
 * bounced transfer from the device copies them to guest memory.  Returns 0,
 * or -1 when that copy failed (nothing written to the guest).
 */
int dma_mapping_complete(struct dma_mapping *m, const struct dma_space *s, int64_t moved);
void dma_mapping_release(struct dma_mapping *m);

#endif
