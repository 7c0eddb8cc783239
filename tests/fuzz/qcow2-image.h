/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Builds small, consistent qcow2 images for the harnesses: any version,
 * cluster size and refcount width, with guest clusters that are
 * unallocated, zero, data (a fill pattern) or compressed, and an optional
 * backing file.  What a fuzzer then corrupts is up to the fuzzer.
 */
#ifndef MPQEMU_TESTS_FUZZ_QCOW2_IMAGE_H
#define MPQEMU_TESTS_FUZZ_QCOW2_IMAGE_H

#include <stddef.h>
#include <stdint.h>

enum q2img_kind {
    Q2IMG_UNALLOCATED,
    Q2IMG_ZERO,             /* v3: the zero flag, no cluster */
    Q2IMG_ZERO_ALLOCATED,   /* v3: the zero flag over a cluster of its own */
    Q2IMG_DATA,             /* a cluster filled with the cluster's pattern */
    Q2IMG_COMPRESSED,       /* the same pattern, deflated */
    Q2IMG_KINDS
};

struct q2img {
    unsigned version;           /* 2 or 3 */
    unsigned cluster_bits;      /* 9 .. 16 */
    unsigned refcount_order;    /* 0 .. 6 (version 2: 4) */
    uint64_t size;              /* virtual bytes */
    const char *backing;        /* backing file name, or NULL */
    const char *backing_format; /* "raw", "qcow2" or NULL (no extension) */
    /* Per guest cluster, up to n_kinds of them (the rest unallocated). */
    const uint8_t *kinds;
    size_t n_kinds;
};

/* The byte at guest offset 'at' of a data or compressed cluster. */
uint8_t q2img_pattern(uint64_t at);

/*
 * The image, malloc'd, in *out (*len bytes); NULL on nonsense parameters
 * (the fuzzer's: the caller then writes raw bytes instead).
 */
uint8_t *q2img_build(const struct q2img *img, size_t *len);

#endif
