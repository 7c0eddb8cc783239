/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 internals shared by the open code (qcow2.c), the metadata code
 * (qcow2-meta.c: tables, refcounts, cluster allocation) and the I/O paths
 * (qcow2-io.c).  The layout is QEMU's docs/interop/qcow2.txt.
 *
 * Metadata lives in the process: the L1 table whole, L2 tables and refcount
 * blocks in bounded caches.  Refcount changes are written at once; L2 and
 * L1 changes are kept dirty and written back at a flush (or when a dirty
 * table leaves the cache), after the data and refcounts they depend on are
 * durable.  Freed clusters are released only after the tables that stopped
 * using them are durable.  So the file on disk is consistent at every
 * moment, at worst with leaked clusters.
 */
#ifndef MPQEMU_BLOCK_QCOW2_INT_H
#define MPQEMU_BLOCK_QCOW2_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "block/drive.h"
#include "block/file-layer.h"
#include "util/byteorder.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)          /* as QEMU: refuse larger */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* Incompatible features. */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

/* L1/L2 entries. */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO 1ull
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L1_RESERVED 0x7f000000000001ffull
#define QCOW2_L2_RESERVED 0x3f000000000001feull
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ull

/* Header field offsets. */
enum {
    QH_VERSION = 4, QH_BACKING_OFFSET = 8, QH_BACKING_SIZE = 16, QH_CLUSTER_BITS = 20,
    QH_SIZE = 24, QH_CRYPT = 32, QH_L1_SIZE = 36, QH_L1_OFFSET = 40, QH_REFT_OFFSET = 48,
    QH_REFT_CLUSTERS = 56, QH_NB_SNAPSHOTS = 60, QH_SNAPSHOTS_OFFSET = 64,
    QH_INCOMPAT = 72, QH_COMPAT = 80, QH_AUTOCLEAR = 88, QH_REFCOUNT_ORDER = 96,
    QH_HEADER_LENGTH = 100, QH_COMPRESSION_TYPE = 104,
    QH_V2_LENGTH = 72, QH_V3_MIN_LENGTH = 104,
};

/* A cached table: an L2 table or a refcount block, one cluster. */
struct q2_table {
    uint64_t offset;        /* in the file; 0: slot empty */
    uint8_t *data;
    bool dirty;
    uint64_t last_use;
};

struct q2_cache {
    struct q2_table *slots;
    unsigned n;
    uint64_t clock;
};

/* A guest-cluster range whose allocating write is in flight. */
struct q2_alloc;

struct qcow2 {
    struct drive *drive;            /* the image: its name and options, the backing chain */
    struct blk_file *file;          /* the layer below: all data and metadata I/O goes there */
    unsigned version;
    unsigned cluster_bits;
    uint64_t cluster_size;
    unsigned l2_bits;               /* entries per L2 table: 1 << l2_bits */
    unsigned refcount_order;
    unsigned rb_bits;               /* entries per refcount block: 1 << rb_bits */
    uint64_t size;                  /* virtual */
    uint64_t incompat, compat, autoclear;
    uint64_t header_length;

    uint64_t *l1;                   /* host order */
    uint32_t l1_size;
    uint64_t l1_offset;
    bool l1_dirty;

    uint64_t *reftable;             /* host order */
    uint64_t reftable_entries;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;

    struct q2_cache l2_cache, rb_cache;
    uint64_t file_end;              /* first cluster past everything allocated */
    uint64_t free_hint;             /* no free cluster below this index */

    uint64_t *pending_free;         /* host offsets (with compressed extents) to release */
    size_t pending_n, pending_cap;

    struct drive *backing;
    struct q2_alloc *allocs;        /* in flight */
    struct q2_req *waiting;         /* requests that wait for an allocation or a flush */
    struct q2_req *waiting_tail;
    uint8_t *zeros;                 /* Q2_ZERO_CHUNK bytes of zeros, made on first use */
};

#define Q2_ZERO_CHUNK (1u << 20)

/* --- qcow2-meta.c -------------------------------------------------------- */

int q2_cache_init(struct q2_cache *c, unsigned n, uint64_t cluster_size);
void q2_cache_free(struct q2_cache *c);

/* Synchronous metadata I/O through the file layer; 0 or -errno. */
int q2_pread(struct qcow2 *q, void *buf, uint64_t len, uint64_t offset);
int q2_pwrite(struct qcow2 *q, const void *buf, uint64_t len, uint64_t offset);
int q2_sync(struct qcow2 *q);
/* The unit metadata is read and written in: a sector, or O_DIRECT's block if larger. */
uint64_t q2_io_unit(const struct qcow2 *q);
/* Rewrites len bytes of the header at offset (one unit, so all or nothing), durably. */
int q2_header_write(struct qcow2 *q, unsigned offset, const void *bytes, size_t len);

/*
 * The L2 entry of a guest cluster: 0 for an unallocated one (also when its
 * L2 table is absent).  -errno on a read error or a corrupt entry.
 */
int q2_l2_get(struct qcow2 *q, uint64_t guest_cluster, uint64_t *entry);
/* Makes the L2 table of guest_cluster writable (allocating or copying it). */
int q2_l2_prepare(struct qcow2 *q, uint64_t guest_cluster);
/* Sets an entry in a table made ready by q2_l2_prepare. */
int q2_l2_set(struct qcow2 *q, uint64_t guest_cluster, uint64_t entry);
/* Checks an L2 entry read from the image; -EIO (logged) if it is corrupt. */
int q2_l2_entry_check(struct qcow2 *q, uint64_t entry);

int q2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *refcount);
/* Allocates n contiguous clusters with refcount 1; their offset or -errno. */
int64_t q2_alloc_clusters(struct qcow2 *q, uint64_t n);
/* Releases what an L2 entry held, after the next flush makes the change durable. */
int q2_release_entry(struct qcow2 *q, uint64_t entry);
/* Host byte range of a compressed entry. */
void q2_compressed_extent(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len);

/*
 * Writes back dirty tables in the safe order (sync, L2 tables, sync, L1,
 * sync, then the pending releases).  Synchronous; 0 or -errno.
 */
int q2_writeback(struct qcow2 *q);

/* --- qcow2-io.c ---------------------------------------------------------- */

struct q2_req;
void q2_submit(struct qcow2 *q, struct blk_io *io);

#endif
