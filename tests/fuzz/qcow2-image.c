// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A qcow2 writer for test images (QEMU's docs/interop/qcow2.txt).  The
 * file is laid out in order: header cluster (with the backing name),
 * L1 table, L2 tables, data clusters, compressed data, refcount table,
 * refcount blocks; every cluster's refcount is exact.
 */
#include "qcow2-image.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define OFLAG_COPIED (1ull << 63)
#define OFLAG_COMPRESSED (1ull << 62)
#define OFLAG_ZERO 1ull
#define EXT_BACKING_FORMAT 0xe2792acau

enum { V2_HEADER = 72, V3_HEADER = 104, MAX_IMAGE = 8 << 20 };

struct layout {
    const struct q2img *img;
    uint64_t cs;                    /* cluster size */
    uint64_t guest_clusters;
    uint64_t l2_entries;
    uint32_t l1_size;
    uint64_t l1_clusters;
    uint64_t *l2_of;                /* per L1 entry: host cluster of its L2 table, 0: none */
    uint64_t *host_of;              /* per guest cluster: host offset (data) or 0 */
    uint64_t *zstart, *zlen;        /* per guest cluster: compressed bytes */
    uint8_t **zdata;
    uint64_t next;                  /* next free host cluster while laying out */
    uint64_t zend;                  /* end of the compressed data, in bytes */
    uint64_t reftable_clusters, refblocks, total;
};

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint8_t q2img_pattern(uint64_t at)
{
    /* Compressible, yet different in every sector of every cluster. */
    return (uint8_t)((at >> 9) * 7 + (at & 0x3f) + 1);
}

static enum q2img_kind kind_of(const struct layout *l, uint64_t c)
{
    enum q2img_kind k = c < l->img->n_kinds ? (enum q2img_kind)(l->img->kinds[c] % Q2IMG_KINDS)
                                            : Q2IMG_UNALLOCATED;

    /* Version 2 has no zero flag. */
    if (l->img->version < 3 && (k == Q2IMG_ZERO || k == Q2IMG_ZERO_ALLOCATED)) {
        return Q2IMG_UNALLOCATED;
    }
    return k;
}

static bool valid(const struct q2img *img)
{
    return (img->version == 2 || img->version == 3) && img->cluster_bits >= 9 &&
           img->cluster_bits <= 16 && img->refcount_order <= 6 &&
           (img->version == 3 || img->refcount_order == 4) && img->size > 0 &&
           img->size <= (64u << 20) && (!img->backing || strlen(img->backing) < 256);
}

/*
 * Deflates guest cluster c's pattern (raw deflate, 4 KiB window, as qcow2
 * wants).  The smallest memory level: the harnesses build images all the
 * time, and a large deflate state costs more to clear than to use.
 */
static bool compress_cluster(struct layout *l, uint64_t c)
{
    uint8_t *in = malloc(l->cs), *out = malloc(2 * l->cs + 64);
    z_stream zs = { 0 };
    bool ok = false;

    if (in && out && deflateInit2(&zs, 1, Z_DEFLATED, -12, 1, Z_DEFAULT_STRATEGY) == Z_OK) {
        for (uint64_t i = 0; i < l->cs; i++) {
            in[i] = q2img_pattern(c * l->cs + i);
        }
        zs.next_in = in;
        zs.avail_in = (uInt)l->cs;
        zs.next_out = out;
        zs.avail_out = (uInt)(2 * l->cs + 64);
        ok = deflate(&zs, Z_FINISH) == Z_STREAM_END;
        l->zlen[c] = zs.total_out;
        deflateEnd(&zs);
    }
    free(in);
    if (!ok) {
        free(out);
        return false;
    }
    l->zdata[c] = out;
    return true;
}

static bool l2_needed(const struct layout *l, uint64_t i)
{
    for (uint64_t c = i * l->l2_entries; c < (i + 1) * l->l2_entries && c < l->guest_clusters;
         c++) {
        if (kind_of(l, c) != Q2IMG_UNALLOCATED) {
            return true;
        }
    }
    return false;
}

/*
 * Places compressed streams from byte 'at': packed when refcounts can
 * count sharing, one host cluster each with 1-bit refcounts.
 */
static bool place_compressed(struct layout *l)
{
    uint64_t at = l->next * l->cs;
    bool pack = l->img->refcount_order > 0;

    for (uint64_t c = 0; c < l->guest_clusters; c++) {
        if (kind_of(l, c) != Q2IMG_COMPRESSED) {
            continue;
        }
        if (!compress_cluster(l, c)) {
            return false;
        }
        if (!pack) {
            at = (at + l->cs - 1) / l->cs * l->cs;
        }
        l->zstart[c] = at;
        at += l->zlen[c];
    }
    l->zend = at;
    l->next = (at + l->cs - 1) / l->cs;
    return true;
}

/* Refcount table and blocks for everything, themselves included. */
static void size_refcounts(struct layout *l)
{
    uint64_t per_block = l->cs * 8 >> l->img->refcount_order;
    uint64_t before = l->next;

    l->refblocks = 1;
    l->reftable_clusters = 1;
    for (;;) {
        uint64_t total = before + l->reftable_clusters + l->refblocks;
        uint64_t blocks = (total + per_block - 1) / per_block;
        uint64_t table = (blocks * 8 + l->cs - 1) / l->cs;

        if (blocks == l->refblocks && table == l->reftable_clusters) {
            l->total = total;
            return;
        }
        l->refblocks = blocks;
        l->reftable_clusters = table;
    }
}

static bool lay_out(struct layout *l)
{
    const struct q2img *img = l->img;

    l->guest_clusters = (img->size + l->cs - 1) / l->cs;
    l->l2_entries = l->cs / 8;
    l->l1_size = (uint32_t)((l->guest_clusters + l->l2_entries - 1) / l->l2_entries);
    l->l1_clusters = ((uint64_t)l->l1_size * 8 + l->cs - 1) / l->cs;
    l->l2_of = calloc(l->l1_size, sizeof(uint64_t));
    l->host_of = calloc(l->guest_clusters, sizeof(uint64_t));
    l->zstart = calloc(l->guest_clusters, sizeof(uint64_t));
    l->zlen = calloc(l->guest_clusters, sizeof(uint64_t));
    l->zdata = calloc(l->guest_clusters, sizeof(uint8_t *));
    if (!l->l2_of || !l->host_of || !l->zstart || !l->zlen || !l->zdata) {
        return false;
    }
    l->next = 1 + l->l1_clusters;
    for (uint32_t i = 0; i < l->l1_size; i++) {
        l->l2_of[i] = l2_needed(l, i) ? l->next++ : 0;
    }
    for (uint64_t c = 0; c < l->guest_clusters; c++) {
        enum q2img_kind k = kind_of(l, c);

        if (k == Q2IMG_DATA || k == Q2IMG_ZERO_ALLOCATED) {
            l->host_of[c] = l->next++ * l->cs;
        }
    }
    if (!place_compressed(l)) {
        return false;
    }
    size_refcounts(l);
    return l->total * l->cs <= MAX_IMAGE;
}

static uint64_t l2_entry(const struct layout *l, uint64_t c)
{
    unsigned x = 62 - (l->img->cluster_bits - 8);
    uint64_t sectors;

    switch (kind_of(l, c)) {
    case Q2IMG_ZERO:
        return OFLAG_ZERO;
    case Q2IMG_ZERO_ALLOCATED:
        return l->host_of[c] | OFLAG_ZERO | OFLAG_COPIED;
    case Q2IMG_DATA:
        return l->host_of[c] | OFLAG_COPIED;
    case Q2IMG_COMPRESSED:
        sectors = (l->zstart[c] + l->zlen[c] - 1) / 512 - l->zstart[c] / 512 + 1;
        return OFLAG_COMPRESSED | (sectors - 1) << x | l->zstart[c];
    default:
        return 0;
    }
}

static void write_header(const struct layout *l, uint8_t *f)
{
    const struct q2img *img = l->img;
    uint64_t reftable = (l->total - l->refblocks - l->reftable_clusters) * l->cs;
    size_t at = img->version == 3 ? V3_HEADER : V2_HEADER;

    put_be32(f, 0x514649fbu);
    put_be32(f + 4, img->version);
    put_be32(f + 20, img->cluster_bits);
    put_be64(f + 24, img->size);
    put_be32(f + 36, l->l1_size);
    put_be64(f + 40, l->cs);
    put_be64(f + 48, reftable);
    put_be32(f + 56, (uint32_t)l->reftable_clusters);
    if (img->version == 3) {
        put_be32(f + 96, img->refcount_order);
        put_be32(f + 100, V3_HEADER);
    }
    if (img->backing_format) {
        size_t n = strlen(img->backing_format);

        put_be32(f + at, EXT_BACKING_FORMAT);
        put_be32(f + at + 4, (uint32_t)n);
        memcpy(f + at + 8, img->backing_format, n);
        at += 8 + (n + 7) / 8 * 8;
    }
    at += 8;                                        /* the end-of-extensions marker */
    if (img->backing) {
        put_be64(f + 8, at);
        put_be32(f + 16, (uint32_t)strlen(img->backing));
        memcpy(f + at, img->backing, strlen(img->backing));
    }
}

static void set_refcount(const struct layout *l, uint8_t *f, uint64_t cluster, uint64_t v)
{
    unsigned bits = 1u << l->img->refcount_order;
    uint64_t per_block = l->cs * 8 / bits;
    uint64_t first_block = l->total - l->refblocks;
    uint8_t *block = f + (first_block + cluster / per_block) * l->cs;
    uint64_t i = cluster % per_block;

    if (bits < 8) {
        unsigned per_byte = 8 / bits, shift = bits * (unsigned)(i % per_byte);

        block[i / per_byte] |= (uint8_t)(v << shift);
        return;
    }
    for (unsigned b = bits / 8; b-- > 0;) {
        block[i * (bits / 8) + b] = (uint8_t)v;
        v >>= 8;
    }
}

static void write_refcounts(const struct layout *l, uint8_t *f)
{
    uint64_t reftable = l->total - l->refblocks - l->reftable_clusters;
    uint64_t zfirst = l->zend ? (l->zend - 1) / l->cs : 0;
    uint64_t *counts = calloc(l->total, sizeof(uint64_t));

    if (!counts) {
        return;
    }
    for (uint64_t c = 0; c < l->total; c++) {
        counts[c] = 1;
    }
    /* Compressed data: one reference per stream touching the cluster. */
    for (uint64_t c = 0; c <= zfirst && c < l->total; c++) {
        bool in_data = false;

        for (uint64_t g = 0; g < l->guest_clusters; g++) {
            if (l->zdata[g]) {
                in_data |= c >= l->zstart[g] / l->cs &&
                           c <= (l->zstart[g] + l->zlen[g] - 1) / l->cs;
            }
        }
        if (in_data) {
            counts[c] = 0;
        }
    }
    for (uint64_t g = 0; g < l->guest_clusters; g++) {
        if (l->zdata[g]) {
            for (uint64_t c = l->zstart[g] / l->cs; c <= (l->zstart[g] + l->zlen[g] - 1) / l->cs;
                 c++) {
                counts[c]++;
            }
        }
    }
    for (uint64_t b = 0; b < l->refblocks; b++) {
        put_be64(f + reftable * l->cs + 8 * b, (l->total - l->refblocks + b) * l->cs);
    }
    for (uint64_t c = 0; c < l->total; c++) {
        set_refcount(l, f, c, counts[c]);
    }
    free(counts);
}

static void write_tables(const struct layout *l, uint8_t *f)
{
    for (uint32_t i = 0; i < l->l1_size; i++) {
        if (l->l2_of[i]) {
            put_be64(f + l->cs + 8 * i, l->l2_of[i] * l->cs | OFLAG_COPIED);
        }
    }
    for (uint64_t c = 0; c < l->guest_clusters; c++) {
        uint64_t l2 = l->l2_of[c / l->l2_entries];

        if (l2) {
            put_be64(f + l2 * l->cs + 8 * (c % l->l2_entries), l2_entry(l, c));
        }
        if (kind_of(l, c) == Q2IMG_DATA) {
            for (uint64_t i = 0; i < l->cs; i++) {
                f[l->host_of[c] + i] = q2img_pattern(c * l->cs + i);
            }
        }
        if (l->zdata[c]) {
            memcpy(f + l->zstart[c], l->zdata[c], l->zlen[c]);
        }
    }
}

static void free_layout(struct layout *l)
{
    for (uint64_t c = 0; l->zdata && c < l->guest_clusters; c++) {
        free(l->zdata[c]);
    }
    free(l->zdata);
    free(l->zstart);
    free(l->zlen);
    free(l->host_of);
    free(l->l2_of);
}

uint8_t *q2img_build(const struct q2img *img, size_t *len)
{
    struct layout l = { .img = img };
    uint8_t *f = NULL;

    if (valid(img)) {
        l.cs = 1ull << img->cluster_bits;
        if (lay_out(&l) && (f = calloc(l.total, l.cs))) {
            write_header(&l, f);
            write_tables(&l, f);
            write_refcounts(&l, f);
            *len = (size_t)(l.total * l.cs);
        }
    }
    free_layout(&l);
    return f;
}
