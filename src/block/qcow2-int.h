/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 internals shared by the open code (qcow2.c), the table caches
 * (qcow2-cache.c), refcounts and cluster allocation (qcow2-refcount.c), L1
 * and L2 tables and their writeback (qcow2-meta.c) and the I/O paths
 * (qcow2-io.c).  The layout is QEMU's docs/interop/qcow2.txt.
 *
 * Metadata lives in the process: the L1 table whole, L2 tables and refcount
 * blocks in bounded caches.  Nothing after open waits for the file layer:
 * a table that is not cached is loaded asynchronously while whoever needs
 * it parks (struct q2_waiter), and every write of metadata is an
 * asynchronous step in a chain.  The order of those writes keeps the file
 * consistent at every moment, at worst with leaked clusters:
 *
 *   - refcount changes are made in memory and written by "rounds"; a new
 *     cluster is pointed to only after a round that started after its
 *     refcount changed has completed (and its data write too);
 *   - dirty L2 tables and the L1 table are written back in docs/qcow2.md's
 *     order: (round), sync, L2 tables, sync, L1, sync, then releases;
 *   - freed clusters are released only after the tables that stopped using
 *     them are durable.
 *
 * Allocation runs in one lane (q2_lane_submit): one job at a time changes
 * refcounts, so two jobs never take the same cluster even while one waits
 * for a refcount block to load.
 */
#ifndef MPQEMU_BLOCK_QCOW2_INT_H
#define MPQEMU_BLOCK_QCOW2_INT_H

#include <stdbool.h>
#include <stddef.h>
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

#define Q2_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* --- waiting ------------------------------------------------------------------ */

/*
 * What a step returns when it parked its waiter: the step runs again when
 * the waiter resumes.  Steps otherwise return 0 (done) or -errno.
 */
#define Q2_PARKED 1

/*
 * Something parked until a table loads, a cache slot frees, a round or a
 * writeback ends, or file I/O of a chain completes.  resume() runs from
 * that event, with 0 or the -errno of what it waited for; it may also run
 * from inside the call that parked it (a task copes: see below).
 */
struct q2_waiter {
    void (*resume)(struct q2_waiter *w, int result);
    struct q2_waiter *next;
};

struct q2_wait_list {
    struct q2_waiter *head, *tail;
};

void q2_wait_add(struct q2_wait_list *l, struct q2_waiter *w);
/* Resumes the waiters on l now, in order; those added meanwhile wait for the next wake. */
void q2_wake_all(struct q2_wait_list *l, int result);

/*
 * A chain of steps: step() runs until it returns 0 or -errno, then
 * finish() is called once (and may free the task); Q2_PARKED: it parked
 * t->wait and runs again when that resumes -- even when it resumed before
 * step() returned.  Resumed with an error, the task finishes with it.
 */
struct q2_task {
    struct q2_waiter wait;
    int (*step)(struct q2_task *t);
    void (*finish)(struct q2_task *t, int result);
    int wake_result;
    bool running, woken;
};

void q2_task_init(struct q2_task *t, int (*step)(struct q2_task *),
                  void (*finish)(struct q2_task *, int));
/* Runs the task's step now (its first step, or again after an outside event). */
void q2_task_run(struct q2_task *t);

/*
 * Work done in passes that each take everything pending when they start
 * (a refcount round, a writeback): a waiter whose changes a running pass
 * took waits for it; one whose changes came later waits for the next.
 */
struct q2_batch {
    bool running;
    struct q2_wait_list current, next;
    void *owner;
    bool (*pending)(void *owner);   /* whether there is anything for a pass */
    int (*start)(void *owner);      /* takes it and starts a pass; 0 or -errno */
};

/* 0 when there is nothing to wait for, Q2_PARKED, or -errno (a pass could not start). */
int q2_batch_wait(struct q2_batch *b, struct q2_waiter *w);
/* Starts a pass if there is anything for one and none runs; 0 or -errno. */
int q2_batch_kick(struct q2_batch *b);
/* The running pass ended with result: its waiters resume, the next pass starts. */
void q2_batch_end(struct q2_batch *b, int result);

/* --- asynchronous metadata I/O ----------------------------------------------- */

/* One read, write or sync of metadata through the file layer's submit. */
struct q2_meta_io {
    struct blk_io io;
    struct iovec iov;
    struct qcow2 *q;
    uint8_t *buf;
    uint64_t len, in_file;          /* a read: bytes past in_file are zeros */
    void (*done)(struct q2_meta_io *m, int result);
    void *opaque;                   /* the caller's */
};
/* A done() for a task's I/O (m->opaque is the task): resumes it with the result. */
void q2_meta_resume_task(struct q2_meta_io *m, int result);

/*
 * Reads len bytes at offset into buf; bytes past the end of the file read
 * as zeros, as blk_file_pread's do.  0 when started (done() follows from
 * the loop), or -errno (nothing started): the read lies wholly past the
 * end of the file, which no table of a sound image does.
 */
int q2_meta_read(struct qcow2 *q, struct q2_meta_io *m, void *buf, uint64_t len,
                 uint64_t offset, void (*done)(struct q2_meta_io *, int));
void q2_meta_write(struct qcow2 *q, struct q2_meta_io *m, const void *buf, uint64_t len,
                   uint64_t offset, void (*done)(struct q2_meta_io *, int));
/* Makes what was written durable (the layer's flush). */
void q2_meta_sync(struct qcow2 *q, struct q2_meta_io *m, void (*done)(struct q2_meta_io *, int));

/* Synchronous metadata I/O, for opening an image only; 0 or -errno. */
int q2_pread(struct qcow2 *q, void *buf, uint64_t len, uint64_t offset);
int q2_pwrite(struct qcow2 *q, const void *buf, uint64_t len, uint64_t offset);
int q2_sync(struct qcow2 *q);
/* The unit metadata is read and written in: a sector, or O_DIRECT's block if larger. */
uint64_t q2_io_unit(const struct qcow2 *q);
/* The part of a table written after a change: an I/O unit, or the cluster if smaller. */
uint64_t q2_table_unit(const struct qcow2 *q);

/* --- table caches ------------------------------------------------------------ */

enum q2_table_state {
    Q2_TABLE_EMPTY,
    Q2_TABLE_RESERVED,      /* taken for a new table, not yet installed */
    Q2_TABLE_LOADING,
    Q2_TABLE_READY,
};

/* A cached table: an L2 table or a refcount block, one cluster. */
struct q2_table {
    struct q2_cache *cache;
    uint64_t offset;                /* in the file, while LOADING or READY */
    uint8_t *data;
    enum q2_table_state state;
    bool dirty;                     /* L2: changed since a writeback last took it */
    bool frozen;                    /* L2: a writeback writes data: replaced before a change */
    uint64_t dirty_lo, dirty_hi;    /* refcount block: units changed, not yet in a round */
    unsigned in_round;              /* refcount block: writes of it in flight */
    unsigned pins;                  /* kept in the cache while > 0 */
    uint64_t last_use;
    struct q2_wait_list loaded;     /* parked until it is READY (or failed to load) */
    struct q2_meta_io load;
};

struct q2_cache {
    struct qcow2 *q;
    const char *what;               /* "L2 table", "refcount block": for messages */
    struct q2_table *slots;
    unsigned n;
    uint64_t clock;
    struct q2_wait_list slot_free;  /* parked until some slot can be taken */
    /* Starts what makes dirty slots clean (a writeback, a round). */
    void (*make_room)(struct qcow2 *q);
};

int q2_cache_init(struct qcow2 *q, struct q2_cache *c, const char *what, unsigned n,
                  void (*make_room)(struct qcow2 *));
void q2_cache_free(struct q2_cache *c);
/*
 * The table at offset, READY in the cache; or NULL with *r: Q2_PARKED (w
 * resumes when it is loaded, or when a slot frees to load it into) or
 * -errno.
 */
struct q2_table *q2_cache_get(struct q2_cache *c, uint64_t offset, struct q2_waiter *w,
                              int *r);
/* The table at offset if it is READY in the cache, without loading it. */
struct q2_table *q2_cache_peek(struct q2_cache *c, uint64_t offset);
/* A slot for a new table (RESERVED, its data to fill); or NULL with *r as q2_cache_get. */
struct q2_table *q2_cache_reserve(struct q2_cache *c, struct q2_waiter *w, int *r);
/* Makes a reserved slot the table at offset, READY; -EIO if the cache holds offset elsewhere. */
int q2_cache_install(struct q2_cache *c, struct q2_table *t, uint64_t offset);
/* Gives back a reserved slot unused. */
void q2_cache_unreserve(struct q2_cache *c, struct q2_table *t);
/* Drops the table at offset from the cache if nothing holds it (it was freed). */
void q2_cache_forget(struct q2_cache *c, uint64_t offset);
void q2_table_pin(struct q2_table *t);
void q2_table_unpin(struct q2_table *t);
/*
 * Wakes whoever waits for a slot, after a slot may have become free, or
 * become one that make_room can free (a reserved slot now a dirty table):
 * they look again, and ask for room if they still find none.  Every such
 * change wakes them; a waiter is otherwise woken by nothing.
 */
void q2_cache_slots_changed(struct q2_cache *c);
/*
 * What make_room started has ended: the same, or, when it left slots it
 * took dirty (result < 0), the waiters fail with its error.  Asked again,
 * a write that keeps failing would keep them waiting for ever.
 */
void q2_cache_room_made(struct q2_cache *c, int result);
/* An L2 table about to change: a copy if a writeback is writing it; 0 or -ENOMEM. */
int q2_table_make_writable(struct q2_table *t);

/* --- the allocation lane (qcow2-refcount.c) ---------------------------------- */

/*
 * A piece of metadata work that runs alone: the lane starts a job's task
 * when the jobs queued before it have finished; then done() is called.
 */
struct q2_job {
    struct qcow2 *q;
    struct q2_task task;
    int (*step)(struct q2_job *job);
    void (*done)(struct q2_job *job, int result);
    bool started;
    struct q2_job *next;
};

/* Runs job after those queued before it; done() may be called before this returns. */
void q2_lane_submit(struct qcow2 *q, struct q2_job *job, int (*step)(struct q2_job *),
                    void (*done)(struct q2_job *, int));

/* n contiguous clusters given refcount 1, as a step of a lane job. */
struct q2_cluster_alloc {
    uint64_t n;
    int phase;
    uint64_t start, at;             /* the run found; the next cluster to look at or count */
    struct q2_refblock_create *create;
    struct q2_reftable_grow *grow;
};

void q2_cluster_alloc_init(struct q2_cluster_alloc *ca, uint64_t n);
/* 0 when [start, start+n) have refcount 1 in memory; Q2_PARKED; -errno. */
int q2_cluster_alloc_step(struct q2_job *job, struct q2_cluster_alloc *ca);
void q2_cluster_alloc_cleanup(struct qcow2 *q, struct q2_cluster_alloc *ca);
/* The most clusters one allocation may take: a refcount block's span, less its own. */
uint64_t q2_max_alloc_clusters(const struct qcow2 *q);

/* The refcount of a cluster, in the lane: 0, Q2_PARKED or -errno. */
int q2_refcount_get(struct q2_job *job, uint64_t cluster, uint64_t *refcount);
/* Notes what an L2 entry held, to be released after the next writeback makes the change durable. */
int q2_release_entry(struct qcow2 *q, uint64_t entry);
/* Host byte range of a compressed entry. */
void q2_compressed_extent(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len);
/*
 * Lowers the refcounts of released entries, after the tables that stopped
 * pointing to them are durable; takes entries (malloc'd).  Q2_PARKED (w
 * resumes when done) or -errno.
 */
int q2_release_submit(struct qcow2 *q, uint64_t *entries, size_t n, struct q2_waiter *w);

/*
 * Waits until every refcount change made so far is written (not synced):
 * 0 when there is nothing to wait for, Q2_PARKED, or -errno.
 */
int q2_round_wait(struct qcow2 *q, struct q2_waiter *w);
void q2_round_kick(struct qcow2 *q);

/* --- L1 and L2 tables (qcow2-meta.c) ------------------------------------------ */

/*
 * The L2 entry of a guest cluster: 0 for an unallocated one (also when its
 * L2 table is absent).  0, Q2_PARKED (w resumes when the table is loaded)
 * or -errno on a read error or a corrupt entry.
 */
int q2_l2_get(struct qcow2 *q, uint64_t guest_cluster, uint64_t *entry, struct q2_waiter *w);
/* Checks an L2 entry read from the image; -EIO (logged) if it is corrupt. */
int q2_l2_entry_check(struct qcow2 *q, uint64_t entry);
/* A table offset from the image: cluster-aligned, not 0; else -EIO (logged). */
int q2_check_table_offset(struct qcow2 *q, uint64_t offset, const char *what);
/* Whether the L2 table of guest_cluster is the image's own: its entries may change. */
bool q2_l2_is_ours(struct qcow2 *q, uint64_t guest_cluster);

/* Making the L2 table of a guest cluster the image's own: copied, or new. */
struct q2_l2_prepare {
    uint64_t guest_cluster;
    struct q2_table *slot;          /* reserved for a new table */
    int phase;
    uint64_t old;                   /* the table it replaces */
    struct q2_cluster_alloc alloc;
    struct q2_meta_io read;         /* the old table, read into slot */
};

/*
 * Outside the lane: takes the cache slot a new table would need.  0 when
 * the prepare can run in the lane (q2_l2_prepare_step), Q2_PARKED, -errno.
 */
int q2_l2_prepare_begin(struct qcow2 *q, struct q2_l2_prepare *p, uint64_t guest_cluster,
                        struct q2_waiter *w);
/*
 * In the lane: 0 when the table is ours -- the slot taken for it is by then
 * the new table or given back, so no request holds one past the lane --,
 * Q2_PARKED, -errno.
 */
int q2_l2_prepare_step(struct q2_job *job, struct q2_l2_prepare *p);
/* Gives back what a prepare held, whether it ran or not. */
void q2_l2_prepare_end(struct qcow2 *q, struct q2_l2_prepare *p);
/* Sets an entry of a table that is ours: 0, Q2_PARKED (w resumes once it is loaded), -errno. */
int q2_l2_set(struct qcow2 *q, uint64_t guest_cluster, uint64_t entry, struct q2_waiter *w);

/*
 * Writes back dirty tables in the safe order (round, sync, L2 tables,
 * sync, L1, sync, then the pending releases and a round for them).  0 when
 * nothing is dirty, Q2_PARKED (w resumes when a writeback that took every
 * change made so far has ended), -errno.
 */
int q2_writeback_wait(struct qcow2 *q, struct q2_waiter *w);
void q2_writeback_kick(struct qcow2 *q);
/* The same, waiting for the file layer (closing): 0 or -errno. */
int q2_writeback_sync(struct qcow2 *q);

/* --- the image ----------------------------------------------------------------- */

/* A guest-cluster range a write or zeroing owns: others that overlap it wait. */
struct q2_range {
    uint64_t first, count;
    struct q2_range *next;
};

struct q2_round;
struct q2_writeback;

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
    uint8_t *header;                /* the header's first I/O unit, as in the file */
    bool header_writing;            /* an asynchronous rewrite of it is in flight */

    uint64_t *l1;                   /* host order */
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t l1_dirty_lo, l1_dirty_hi;  /* table units changed since the last writeback */

    uint64_t *reftable;             /* host order */
    uint64_t reftable_entries;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint64_t reftable_dirty_lo, reftable_dirty_hi;  /* units not yet in a round */

    struct q2_cache l2_cache, rb_cache;
    uint64_t file_end;              /* first cluster past everything allocated */
    uint64_t free_hint;             /* no free cluster below this index */

    uint64_t *pending_free;         /* host offsets (with compressed extents) to release */
    size_t pending_n, pending_cap;

    struct q2_job *lane_head, *lane_tail;
    bool lane_starting;
    struct q2_round *round;
    struct q2_writeback *writeback;
    unsigned meta_in_flight;        /* asynchronous metadata I/O */

    struct drive *backing;
    struct q2_range *busy;          /* ranges owned by writes and zeroings in flight */
    struct q2_wait_list busy_waiters;   /* requests that wait for a busy range */
    uint8_t *zeros;                 /* Q2_ZERO_CHUNK bytes of zeros, made on first use */
};

#define Q2_ZERO_CHUNK (1u << 20)

/* qcow2-refcount.c / qcow2-meta.c: their state, made at open. */
int q2_refcount_init(struct qcow2 *q);
void q2_refcount_free(struct qcow2 *q);
int q2_writeback_init(struct qcow2 *q);
void q2_writeback_free(struct qcow2 *q);

/* Rewrites len bytes of the header at offset (one unit, so all or nothing), durably; open only. */
int q2_header_write(struct qcow2 *q, unsigned offset, const void *bytes, size_t len);

/* Marks the units of a table holding bytes [from, to) as changed, in *lo..*hi. */
void q2_mark_units(const struct qcow2 *q, uint64_t *lo, uint64_t *hi, uint64_t from,
                   uint64_t to);

/* --- qcow2-io.c ---------------------------------------------------------- */

struct q2_req;
void q2_submit(struct qcow2 *q, struct blk_io *io);

#endif
