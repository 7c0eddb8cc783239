// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 L1 and L2 tables: lookups, making a table the image's own (a copy
 * of one shared with a snapshot, or a new one), entries set, and the
 * ordered writeback that keeps the image file consistent whenever the
 * process dies (see qcow2-int.h and docs/qcow2.md).
 *
 * A writeback takes the dirty L2 tables and L1 units as they are when it
 * starts: a table it writes is frozen (a change meanwhile goes to a copy),
 * the L1 units are copied.  So everything it writes points only at what
 * the round it waits for first has counted, and the syncs in between make
 * each level durable before the next points at it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2-int.h"
#include "util/log.h"

/* --- validation ------------------------------------------------------------ */

int q2_check_table_offset(struct qcow2 *q, uint64_t offset, const char *what)
{
    if (offset == 0 || (offset & (q->cluster_size - 1)) || offset >= (1ull << 56)) {
        log_error("qcow2 '%s': corrupt image: %s at offset %#llx", q->drive->file, what,
                  (unsigned long long)offset);
        return -EIO;
    }
    return 0;
}

int q2_l2_entry_check(struct qcow2 *q, uint64_t entry)
{
    uint64_t off = entry & QCOW2_OFFSET_MASK;

    if (entry & QCOW2_OFLAG_COMPRESSED) {
        uint64_t coff, clen;

        q2_compressed_extent(q, entry, &coff, &clen);
        if (coff < q->cluster_size || (entry & QCOW2_OFLAG_COPIED)) {
            log_error("qcow2 '%s': corrupt compressed cluster entry %#llx", q->drive->file,
                      (unsigned long long)entry);
            return -EIO;
        }
        return 0;
    }
    if ((entry & QCOW2_L2_RESERVED) || (q->version < 3 && (entry & QCOW2_OFLAG_ZERO)) ||
        (off && q2_check_table_offset(q, off, "data cluster") < 0)) {
        log_error("qcow2 '%s': corrupt L2 entry %#llx", q->drive->file,
                  (unsigned long long)entry);
        return -EIO;
    }
    return 0;
}

/* --- L1 ------------------------------------------------------------------------ */

static int l1_entry(struct qcow2 *q, uint64_t guest_cluster, uint64_t *l1e, uint32_t *index)
{
    uint64_t i = guest_cluster >> q->l2_bits;

    if (i >= q->l1_size) {
        log_error("qcow2 '%s': cluster %llu is beyond the L1 table", q->drive->file,
                  (unsigned long long)guest_cluster);
        return -EIO;
    }
    *index = (uint32_t)i;
    *l1e = q->l1[i];
    if (*l1e & QCOW2_L1_RESERVED) {
        log_error("qcow2 '%s': corrupt L1 entry %u", q->drive->file, *index);
        return -EIO;
    }
    return 0;
}

static void l1_set(struct qcow2 *q, uint32_t i, uint64_t entry)
{
    q->l1[i] = entry;
    q2_mark_units(q, &q->l1_dirty_lo, &q->l1_dirty_hi, (uint64_t)i * 8, (uint64_t)i * 8 + 8);
}

bool q2_l2_is_ours(struct qcow2 *q, uint64_t guest_cluster)
{
    uint64_t i = guest_cluster >> q->l2_bits;

    return i < q->l1_size && (q->l1[i] & QCOW2_OFLAG_COPIED) &&
           !(q->l1[i] & QCOW2_L1_RESERVED);
}

/* --- L2 ------------------------------------------------------------------------ */

static uint8_t *l2_slot(struct qcow2 *q, struct q2_table *t, uint64_t guest_cluster)
{
    return t->data + 8 * (guest_cluster & ((1ull << q->l2_bits) - 1));
}

/* The cached L2 table of guest_cluster (NULL and *r 0 when it has none). */
static struct q2_table *l2_table(struct qcow2 *q, uint64_t guest_cluster, struct q2_waiter *w,
                                 int *r)
{
    uint64_t l1e, off;
    uint32_t i;

    if ((*r = l1_entry(q, guest_cluster, &l1e, &i)) < 0) {
        return NULL;
    }
    off = l1e & QCOW2_OFFSET_MASK;
    if (!off) {
        return NULL;
    }
    if ((*r = q2_check_table_offset(q, off, "L2 table")) < 0) {
        return NULL;
    }
    return q2_cache_get(&q->l2_cache, off, w, r);
}

int q2_l2_get(struct qcow2 *q, uint64_t guest_cluster, uint64_t *entry, struct q2_waiter *w)
{
    int r;
    struct q2_table *t = l2_table(q, guest_cluster, w, &r);

    *entry = 0;
    if (!t) {
        return r;
    }
    *entry = be64(l2_slot(q, t, guest_cluster));
    return q2_l2_entry_check(q, *entry);
}

int q2_l2_set(struct qcow2 *q, uint64_t guest_cluster, uint64_t entry, struct q2_waiter *w)
{
    struct q2_table *t;
    int r;

    if (!q2_l2_is_ours(q, guest_cluster)) {
        return -EIO;    /* q2_l2_prepare was not called: a bug, not the image */
    }
    if (!(t = l2_table(q, guest_cluster, w, &r))) {
        return r ? r : -EIO;
    }
    if ((r = q2_table_make_writable(t)) < 0) {
        return r;
    }
    put_be64(l2_slot(q, t, guest_cluster), entry);
    t->dirty = true;
    return 0;
}

/* --- making an L2 table ours ------------------------------------------------------ */

enum { PREPARE_CHECK, PREPARE_ALLOC, PREPARE_READ_OLD, PREPARE_INSTALL };

int q2_l2_prepare_begin(struct qcow2 *q, struct q2_l2_prepare *p, uint64_t guest_cluster,
                        struct q2_waiter *w)
{
    int r = 0;

    if (!p->slot) {
        *p = (struct q2_l2_prepare){ .guest_cluster = guest_cluster };
    }
    if (q2_l2_is_ours(q, guest_cluster) || p->slot) {
        return 0;
    }
    /* Taken before the lane: jobs there never wait for L2 slots (which may wait for the lane). */
    p->slot = q2_cache_reserve(&q->l2_cache, w, &r);
    return p->slot ? 0 : r;
}

void q2_l2_prepare_end(struct qcow2 *q, struct q2_l2_prepare *p)
{
    if (p->slot) {
        q2_cache_unreserve(&q->l2_cache, p->slot);
        p->slot = NULL;
    }
    q2_cluster_alloc_cleanup(q, &p->alloc);
}

/* The new table starts as the old one (copied from the cache or read) or empty. */
static int fill_new_table(struct q2_job *job, struct q2_l2_prepare *p)
{
    struct qcow2 *q = job->q;
    struct q2_table *old = p->old ? q2_cache_peek(&q->l2_cache, p->old) : NULL;
    int r;

    if (!p->old) {
        memset(p->slot->data, 0, q->cluster_size);
        return 0;
    }
    if (old) {
        memcpy(p->slot->data, old->data, q->cluster_size);
        return 0;
    }
    p->read.opaque = &job->task;
    r = q2_meta_read(q, &p->read, p->slot->data, q->cluster_size, p->old, q2_meta_resume_task);
    return r < 0 ? r : Q2_PARKED;
}

static int prepare_run(struct q2_job *job, struct q2_l2_prepare *p)
{
    struct qcow2 *q = job->q;
    uint64_t l1e, refcount;
    uint32_t i;
    int r = l1_entry(q, p->guest_cluster, &l1e, &i);

    if (r < 0) {
        return r;
    }
    switch (p->phase) {
    case PREPARE_CHECK:
        if (l1e & QCOW2_OFLAG_COPIED) {
            return 0;       /* another request made it ours meanwhile */
        }
        p->old = l1e & QCOW2_OFFSET_MASK;
        if (p->old) {
            if ((r = q2_check_table_offset(q, p->old, "L2 table")) < 0 ||
                (r = q2_refcount_get(job, p->old >> q->cluster_bits, &refcount)) != 0) {
                return r;
            }
            if (refcount == 1) {            /* only ours after all: just mark it so */
                l1_set(q, i, p->old | QCOW2_OFLAG_COPIED);
                return 0;
            }
        }
        /* Shared with a snapshot, or none yet: a new table. */
        q2_cluster_alloc_init(&p->alloc, 1);
        p->phase = PREPARE_ALLOC;
        __attribute__((fallthrough));
    case PREPARE_ALLOC:
        if ((r = q2_cluster_alloc_step(job, &p->alloc)) != 0) {
            return r;
        }
        p->phase = PREPARE_READ_OLD;
        if ((r = fill_new_table(job, p)) != 0) {
            return r;
        }
        __attribute__((fallthrough));
    default: {
        uint64_t fresh = p->alloc.start << q->cluster_bits;

        if ((r = q2_cache_install(&q->l2_cache, p->slot, fresh)) < 0) {
            return r;
        }
        p->slot->dirty = true;
        p->slot = NULL;
        if (p->old) {
            q2_release_entry(q, p->old);
        }
        l1_set(q, i, fresh | QCOW2_OFLAG_COPIED);
        /* The reserved slot is a dirty table: a writeback can free it, if someone asks. */
        q2_cache_slots_changed(&q->l2_cache);
        return 0;
    }
    }
}

int q2_l2_prepare_step(struct q2_job *job, struct q2_l2_prepare *p)
{
    int r = prepare_run(job, p);

    /*
     * The table is ours: the slot, if the new table did not take it, goes
     * back now.  Kept until the caller ends, it would be a slot held while
     * the caller waits for others (its own table to load): with every slot
     * so held, nothing would ever free one.
     */
    if (r == 0) {
        q2_l2_prepare_end(job->q, p);
    }
    return r;
}

/* --- writeback ---------------------------------------------------------------------- */

enum { WB_ROUND, WB_L2_SYNC, WB_L2_WRITE, WB_L1_SYNC, WB_L1_WRITE, WB_RELEASE_SYNC,
       WB_RELEASE, WB_RELEASE_ROUND };

/* A dirty L2 table as a writeback took it. */
struct wb_table {
    struct q2_meta_io m;
    struct q2_table *t;
    uint8_t *buf;                   /* what it writes; t->data unless the table changed since */
    bool issued;
};

struct q2_writeback {
    struct qcow2 *q;
    struct q2_batch batch;
    struct q2_task task;
    int phase;
    struct wb_table *tables;
    unsigned n_tables, writing;
    int write_result;
    bool left_dirty;                /* a table it took is dirty again: not written */
    uint8_t *l1_buf;                /* L1 units [l1_lo, l1_hi), as they were */
    uint64_t l1_lo, l1_hi;
    uint64_t *releases;
    size_t n_releases;
    struct q2_meta_io io;
};

static bool needs_writeback(void *opaque)
{
    const struct qcow2 *q = opaque;

    for (unsigned i = 0; i < q->l2_cache.n; i++) {
        if (q->l2_cache.slots[i].dirty) {
            return true;
        }
    }
    return q->l1_dirty_lo < q->l1_dirty_hi || q->pending_n;
}

/* Ends a table's part in a writeback: written, or given back dirty. */
static void wb_table_done(struct q2_writeback *wb, struct wb_table *e, bool written)
{
    struct q2_table *t = e->t;

    if (t->data == e->buf) {
        t->frozen = false;
        t->dirty |= !written;
        wb->left_dirty |= !written;
    } else {
        free(e->buf);           /* the table changed meanwhile: it is dirty already */
    }
}

/* Takes the dirty L2 tables, L1 units and releases as they are now. */
static int wb_take(struct q2_writeback *wb)
{
    struct qcow2 *q = wb->q;
    uint64_t unit = q2_table_unit(q);
    unsigned n = 0;

    for (unsigned i = 0; i < q->l2_cache.n; i++) {
        n += q->l2_cache.slots[i].dirty;
    }
    wb->tables = n ? calloc(n, sizeof(*wb->tables)) : NULL;
    wb->l1_lo = q->l1_dirty_lo;
    wb->l1_hi = q->l1_dirty_hi;
    if ((n && !wb->tables) || (wb->l1_lo < wb->l1_hi &&
        posix_memalign((void **)&wb->l1_buf, 4096, (wb->l1_hi - wb->l1_lo) * unit))) {
        free(wb->tables);
        wb->tables = NULL;
        wb->l1_buf = NULL;
        return -ENOMEM;
    }
    wb->n_tables = 0;
    for (unsigned i = 0; i < q->l2_cache.n; i++) {
        struct q2_table *t = &q->l2_cache.slots[i];

        if (t->dirty) {
            wb->tables[wb->n_tables++] = (struct wb_table){ .t = t, .buf = t->data };
            t->dirty = false;
            t->frozen = true;
        }
    }
    if (wb->l1_buf) {
        uint64_t first = wb->l1_lo * unit / 8, count = (wb->l1_hi - wb->l1_lo) * unit / 8;

        memset(wb->l1_buf, 0, (wb->l1_hi - wb->l1_lo) * unit);
        for (uint64_t k = 0; k < count && first + k < q->l1_size; k++) {
            put_be64(wb->l1_buf + 8 * k, q->l1[first + k]);
        }
        q->l1_dirty_lo = q->l1_dirty_hi = 0;
    }
    wb->releases = q->pending_free;
    wb->n_releases = q->pending_n;
    q->pending_free = NULL;
    q->pending_n = q->pending_cap = 0;
    wb->phase = WB_ROUND;
    wb->write_result = 0;
    wb->left_dirty = false;
    return 0;
}

/* What it took and did not make durable becomes dirty (or pending) again. */
static void wb_give_back(struct q2_writeback *wb)
{
    struct qcow2 *q = wb->q;

    for (unsigned i = 0; i < wb->n_tables; i++) {
        if (!wb->tables[i].issued) {
            wb_table_done(wb, &wb->tables[i], false);
        }
    }
    if (wb->l1_buf) {
        q2_mark_units(q, &q->l1_dirty_lo, &q->l1_dirty_hi, wb->l1_lo * q2_table_unit(q),
                      wb->l1_hi * q2_table_unit(q));
    }
    for (size_t i = 0; wb->releases && i < wb->n_releases; i++) {
        q2_release_entry(q, wb->releases[i]);   /* on failure, it leaks */
    }
    free(wb->releases);
    wb->releases = NULL;
}

static void on_wb_table_written(struct q2_meta_io *m, int result)
{
    struct wb_table *e = Q2_OF(m, struct wb_table, m);
    struct q2_writeback *wb = m->q->writeback;

    if (result < 0 && !wb->write_result) {
        wb->write_result = result;
    }
    wb_table_done(wb, e, result >= 0);
    if (--wb->writing == 0) {
        wb->task.wait.resume(&wb->task.wait, wb->write_result);
    }
}

static void wb_write_tables(struct q2_writeback *wb)
{
    struct qcow2 *q = wb->q;

    wb->writing = wb->n_tables;
    for (unsigned i = 0; i < wb->n_tables; i++) {
        struct wb_table *e = &wb->tables[i];

        e->issued = true;
        q2_meta_write(q, &e->m, e->buf, q->cluster_size, e->t->offset, on_wb_table_written);
    }
}

static int wb_sync(struct q2_writeback *wb, int next_phase)
{
    wb->phase = next_phase;
    q2_meta_sync(wb->q, &wb->io, q2_meta_resume_task);
    return Q2_PARKED;
}

static int wb_step(struct q2_task *t)
{
    struct q2_writeback *wb = Q2_OF(t, struct q2_writeback, task);
    struct qcow2 *q = wb->q;
    int r;

    switch (wb->phase) {
    case WB_ROUND:
        /* Every count that what it writes relies on is written first. */
        if ((r = q2_round_wait(q, &t->wait)) != 0) {
            return r;
        }
        if (wb->n_tables) {
            return wb_sync(wb, WB_L2_SYNC);     /* the data and refcounts, durable */
        }
        __attribute__((fallthrough));
    case WB_L2_SYNC:
        if (wb->n_tables) {
            wb->phase = WB_L2_WRITE;
            wb_write_tables(wb);
            return Q2_PARKED;
        }
        __attribute__((fallthrough));
    case WB_L2_WRITE:
        if (wb->l1_buf) {
            return wb_sync(wb, WB_L1_SYNC);     /* the L2 tables, durable */
        }
        __attribute__((fallthrough));
    case WB_L1_SYNC:
        if (wb->l1_buf) {
            wb->phase = WB_L1_WRITE;
            q2_meta_write(q, &wb->io, wb->l1_buf, (wb->l1_hi - wb->l1_lo) * q2_table_unit(q),
                          q->l1_offset + wb->l1_lo * q2_table_unit(q), q2_meta_resume_task);
            return Q2_PARKED;
        }
        __attribute__((fallthrough));
    case WB_L1_WRITE:
        free(wb->l1_buf);               /* written: nothing to give back */
        wb->l1_buf = NULL;
        if (wb->n_releases) {
            return wb_sync(wb, WB_RELEASE_SYNC);  /* nothing durable points to them now */
        }
        return 0;
    case WB_RELEASE_SYNC:
        wb->phase = WB_RELEASE;
        r = q2_release_submit(q, wb->releases, wb->n_releases, &t->wait);
        wb->releases = NULL;
        return r;
    case WB_RELEASE:
        wb->phase = WB_RELEASE_ROUND;
        __attribute__((fallthrough));
    default:
        return q2_round_wait(q, &t->wait);
    }
}

static void wb_finish(struct q2_task *t, int result)
{
    struct q2_writeback *wb = Q2_OF(t, struct q2_writeback, task);
    struct qcow2 *q = wb->q;

    if (result < 0) {
        log_error("qcow2 '%s': writing back metadata: %s", q->drive->file, strerror(-result));
    }
    wb_give_back(wb);
    free(wb->tables);
    free(wb->l1_buf);
    wb->tables = NULL;
    wb->l1_buf = NULL;
    wb->n_tables = 0;
    q2_batch_end(&wb->batch, result);
    q2_cache_room_made(&q->l2_cache, wb->left_dirty ? result : 0);
}

/* Takes what is dirty and starts writing it back. */
static int wb_start(void *opaque)
{
    struct q2_writeback *wb = ((struct qcow2 *)opaque)->writeback;
    int r = wb_take(wb);

    if (r == 0) {
        q2_task_run(&wb->task);
    }
    return r;
}

int q2_writeback_init(struct qcow2 *q)
{
    struct q2_writeback *wb = calloc(1, sizeof(*wb));

    if (!wb) {
        return -ENOMEM;
    }
    wb->q = q;
    wb->io.opaque = &wb->task;
    wb->batch = (struct q2_batch){ .owner = q, .pending = needs_writeback, .start = wb_start };
    q2_task_init(&wb->task, wb_step, wb_finish);
    q->writeback = wb;
    return 0;
}

void q2_writeback_free(struct qcow2 *q)
{
    free(q->writeback);
    q->writeback = NULL;
}

int q2_writeback_wait(struct qcow2 *q, struct q2_waiter *w)
{
    return q2_batch_wait(&q->writeback->batch, w);
}

void q2_writeback_kick(struct qcow2 *q)
{
    if (q2_batch_kick(&q->writeback->batch) < 0) {
        log_error("qcow2 '%s': out of memory for a writeback", q->drive->file);
    }
}

struct sync_wait {
    struct q2_waiter w;
    bool done;
    int result;
};

static void on_sync_wait(struct q2_waiter *w, int result)
{
    struct sync_wait *s = Q2_OF(w, struct sync_wait, w);

    s->done = true;
    s->result = result;
}

int q2_writeback_sync(struct qcow2 *q)
{
    struct sync_wait s = { .w = { .resume = on_sync_wait } };
    int r = q2_writeback_wait(q, &s.w);

    if (r != Q2_PARKED) {
        return r;
    }
    /* The chain moves on from the completions the drain runs. */
    while (!s.done) {
        if (!q->meta_in_flight) {
            log_error("qcow2 '%s': a writeback waits for nothing in flight", q->drive->file);
            return -EIO;
        }
        blk_file_drain(q->file);
    }
    return s.result;
}
