// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 refcounts: the allocation lane, cluster allocation, new refcount
 * blocks, a larger refcount table, releases, and the rounds that write
 * refcount changes.
 *
 * Refcounts change in memory (cached refcount blocks, the refcount table),
 * in the lane only, one job at a time.  Any state they reach in memory may
 * go to the file at any moment: a cluster's count rises before anything
 * points to it, and falls only after nothing durable does.  A round writes
 * the units that changed (copies, so that later changes cannot tear them);
 * whoever is about to point to a new cluster waits for a round that
 * started after its count rose.  Rounds run one at a time, so two writes
 * of one unit are never in flight together.
 *
 * Structure changes wait in the lane for the file: a new refcount block is
 * written and synced before the table names it; a larger table (with the
 * blocks that count it) is written and synced before the header names it.
 * A range of clusters without a refcount block keeps its first cluster for
 * that block (the allocator never hands it out), so a new block always
 * sits at the start of the range it counts and counts itself.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2-int.h"
#include "util/log.h"

/* --- the lane ----------------------------------------------------------------- */

static int on_job_step(struct q2_task *t)
{
    struct q2_job *job = Q2_OF(t, struct q2_job, task);

    return job->step(job);
}

static void lane_start_next(struct qcow2 *q);

static void on_job_finish(struct q2_task *t, int result)
{
    struct q2_job *job = Q2_OF(t, struct q2_job, task);
    struct qcow2 *q = job->q;

    q->lane_head = job->next;
    if (!q->lane_head) {
        q->lane_tail = NULL;
    }
    job->done(job, result);
    lane_start_next(q);
}

/* Starts the job at the head; a loop, not recursion, when jobs finish at once. */
static void lane_start_next(struct qcow2 *q)
{
    if (q->lane_starting) {
        return;
    }
    q->lane_starting = true;
    while (q->lane_head && !q->lane_head->started) {
        q->lane_head->started = true;
        q2_task_run(&q->lane_head->task);
    }
    q->lane_starting = false;
}

void q2_lane_submit(struct qcow2 *q, struct q2_job *job, int (*step)(struct q2_job *),
                    void (*done)(struct q2_job *, int))
{
    job->q = q;
    job->step = step;
    job->done = done;
    job->started = false;
    job->next = NULL;
    q2_task_init(&job->task, on_job_step, on_job_finish);
    if (q->lane_tail) {
        q->lane_tail->next = job;
    } else {
        q->lane_head = job;
    }
    q->lane_tail = job;
    lane_start_next(q);
}

/* --- refcount blocks in memory ------------------------------------------------ */

static uint64_t span(const struct qcow2 *q)
{
    return 1ull << q->rb_bits;
}

static uint64_t rb_read(const struct qcow2 *q, const uint8_t *block, uint64_t index)
{
    unsigned bits = 1u << q->refcount_order;

    if (bits < 8) {
        unsigned per_byte = 8 / bits;

        return (block[index / per_byte] >> (bits * (index % per_byte))) & ((1u << bits) - 1);
    }
    {
        unsigned bytes = bits / 8;
        uint64_t v = 0;

        for (unsigned i = 0; i < bytes; i++) {
            v = v << 8 | block[index * bytes + i];
        }
        return v;
    }
}

/* Stores v; the byte range of the change within the block in [*from, *to). */
static void rb_write(const struct qcow2 *q, uint8_t *block, uint64_t index, uint64_t v,
                     uint64_t *from, uint64_t *to)
{
    unsigned bits = 1u << q->refcount_order;

    if (bits < 8) {
        unsigned per_byte = 8 / bits, shift = bits * (unsigned)(index % per_byte);
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);

        block[index / per_byte] = (uint8_t)((block[index / per_byte] & ~mask) |
                                            ((v << shift) & mask));
        *from = index / per_byte;
        *to = *from + 1;
        return;
    }
    {
        unsigned bytes = bits / 8;

        for (unsigned i = bytes; i-- > 0;) {
            block[index * bytes + i] = (uint8_t)v;
            v >>= 8;
        }
        *from = index * bytes;
        *to = *from + bytes;
    }
}

/* Sets a count in a cached block; the next round writes the unit. */
static void rb_set(struct qcow2 *q, struct q2_table *t, uint64_t cluster, uint64_t v)
{
    uint64_t from, to;

    rb_write(q, t->data, cluster & (span(q) - 1), v, &from, &to);
    q2_mark_units(q, &t->dirty_lo, &t->dirty_hi, from, to);
}

/* The offset of the refcount block of range bi, 0 if it has none. */
static uint64_t block_offset(const struct qcow2 *q, uint64_t bi)
{
    return bi < q->reftable_entries ? q->reftable[bi] & QCOW2_REFT_OFFSET_MASK : 0;
}

/*
 * The cached refcount block counting cluster; NULL with *r: 0 when the
 * cluster has no block (its count is 0), else Q2_PARKED or -errno.
 */
static struct q2_table *block_of(struct q2_job *job, uint64_t cluster, int *r)
{
    struct qcow2 *q = job->q;
    uint64_t off = block_offset(q, cluster >> q->rb_bits);

    *r = 0;
    if (!off) {
        return NULL;
    }
    if ((*r = q2_check_table_offset(q, off, "refcount block")) < 0) {
        return NULL;
    }
    return q2_cache_get(&q->rb_cache, off, &job->task.wait, r);
}

int q2_refcount_get(struct q2_job *job, uint64_t cluster, uint64_t *refcount)
{
    int r;
    struct q2_table *t = block_of(job, cluster, &r);

    *refcount = t ? rb_read(job->q, t->data, cluster & (span(job->q) - 1)) : 0;
    return r;
}

/* Sets the count of a cluster that has a block: 0, Q2_PARKED, -errno. */
static int set_refcount(struct q2_job *job, uint64_t cluster, uint64_t v)
{
    int r;
    struct q2_table *t = block_of(job, cluster, &r);

    if (!t) {
        return r ? r : -EIO;    /* COVER gave it a block: a bug, not the image */
    }
    rb_set(job->q, t, cluster, v);
    return 0;
}

static void note_end(struct qcow2 *q, uint64_t cluster_after)
{
    if (cluster_after > q->file_end) {
        q->file_end = cluster_after;
    }
}

static void mark_reftable_entry(struct qcow2 *q, uint64_t bi)
{
    q2_mark_units(q, &q->reftable_dirty_lo, &q->reftable_dirty_hi, bi * 8, bi * 8 + 8);
}

/* --- rounds: writing what changed ------------------------------------------------ */

struct round_write {
    struct q2_meta_io m;
    struct q2_table *t;             /* NULL: the refcount table */
    uint64_t lo, hi;                /* units */
};

struct q2_round {
    struct q2_batch batch;
    unsigned writes;
    int result;
    struct round_write *w;
    uint8_t *buf;
};

static bool refcounts_dirty(void *opaque);
static int round_start(void *opaque);

int q2_refcount_init(struct qcow2 *q)
{
    q->round = calloc(1, sizeof(*q->round));
    if (!q->round) {
        return -ENOMEM;
    }
    q->round->batch = (struct q2_batch){ .owner = q, .pending = refcounts_dirty,
                                         .start = round_start };
    return 0;
}

void q2_refcount_free(struct qcow2 *q)
{
    free(q->round);
    q->round = NULL;
}

static bool block_dirty(const struct q2_table *t)
{
    return t->state == Q2_TABLE_READY && t->dirty_lo < t->dirty_hi;
}

static bool refcounts_dirty(void *opaque)
{
    const struct qcow2 *q = opaque;

    for (unsigned i = 0; i < q->rb_cache.n; i++) {
        if (block_dirty(&q->rb_cache.slots[i])) {
            return true;
        }
    }
    return q->reftable_dirty_lo < q->reftable_dirty_hi;
}

/* Copies units [lo, hi) of the refcount table into buf, as in the file. */
static void reftable_units(const struct qcow2 *q, uint8_t *buf, uint64_t lo, uint64_t hi)
{
    uint64_t unit = q2_table_unit(q), first = lo * unit / 8, n = (hi - lo) * unit / 8;

    memset(buf, 0, (hi - lo) * unit);
    for (uint64_t i = 0; i < n && first + i < q->reftable_entries; i++) {
        put_be64(buf + 8 * i, q->reftable[first + i]);
    }
}

static void round_finish(struct qcow2 *q);

static void on_round_write(struct q2_meta_io *m, int result)
{
    struct round_write *w = Q2_OF(m, struct round_write, m);
    struct qcow2 *q = m->q;
    struct q2_round *rd = q->round;

    if (result < 0) {
        log_error("qcow2 '%s': writing refcounts: %s", q->drive->file, strerror(-result));
        rd->result = rd->result ? rd->result : result;
    }
    if (w->t) {
        w->t->in_round--;
        if (result < 0) {
            q2_mark_units(q, &w->t->dirty_lo, &w->t->dirty_hi, w->lo * q2_table_unit(q),
                          w->hi * q2_table_unit(q));
        }
    } else if (result < 0) {
        q2_mark_units(q, &q->reftable_dirty_lo, &q->reftable_dirty_hi,
                      w->lo * q2_table_unit(q), w->hi * q2_table_unit(q));
    }
    if (--rd->writes == 0) {
        round_finish(q);
    }
}

/* Takes every changed unit (copied) and writes them; -ENOMEM leaves them changed. */
static int round_start(void *opaque)
{
    struct qcow2 *q = opaque;
    struct q2_round *rd = q->round;
    uint64_t unit = q2_table_unit(q), bytes = 0, used = 0;
    unsigned n = 0, k = 0;

    for (unsigned i = 0; i < q->rb_cache.n; i++) {
        struct q2_table *t = &q->rb_cache.slots[i];

        if (block_dirty(t)) {
            n++;
            bytes += (t->dirty_hi - t->dirty_lo) * unit;
        }
    }
    if (q->reftable_dirty_lo < q->reftable_dirty_hi) {
        n++;
        bytes += (q->reftable_dirty_hi - q->reftable_dirty_lo) * unit;
    }
    rd->w = calloc(n, sizeof(*rd->w));
    if (!rd->w || posix_memalign((void **)&rd->buf, 4096, bytes)) {
        free(rd->w);
        rd->w = NULL;
        return -ENOMEM;
    }
    for (unsigned i = 0; i < q->rb_cache.n; i++) {
        struct q2_table *t = &q->rb_cache.slots[i];

        if (block_dirty(t)) {
            rd->w[k] = (struct round_write){ .t = t, .lo = t->dirty_lo, .hi = t->dirty_hi };
            memcpy(rd->buf + used, t->data + t->dirty_lo * unit, (t->dirty_hi - t->dirty_lo) * unit);
            t->dirty_lo = t->dirty_hi = 0;
            t->in_round++;
            rd->w[k].m.buf = rd->buf + used;
            used += (rd->w[k].hi - rd->w[k].lo) * unit;
            k++;
        }
    }
    if (q->reftable_dirty_lo < q->reftable_dirty_hi) {
        rd->w[k] = (struct round_write){ .lo = q->reftable_dirty_lo, .hi = q->reftable_dirty_hi };
        reftable_units(q, rd->buf + used, rd->w[k].lo, rd->w[k].hi);
        q->reftable_dirty_lo = q->reftable_dirty_hi = 0;
        rd->w[k].m.buf = rd->buf + used;
        k++;
    }
    rd->result = 0;
    rd->writes = n;
    for (unsigned i = 0; i < n; i++) {
        struct round_write *w = &rd->w[i];
        uint64_t base = w->t ? w->t->offset : q->reftable_offset;

        q2_meta_write(q, &w->m, w->m.buf, (w->hi - w->lo) * unit, base + w->lo * unit,
                      on_round_write);
    }
    return 0;
}

static void round_finish(struct qcow2 *q)
{
    struct q2_round *rd = q->round;

    free(rd->w);
    free(rd->buf);
    rd->w = NULL;
    rd->buf = NULL;
    q2_batch_end(&rd->batch, rd->result);
    q2_cache_room_made(&q->rb_cache, rd->result);   /* what failed is dirty again */
}

int q2_round_wait(struct qcow2 *q, struct q2_waiter *w)
{
    return q2_batch_wait(&q->round->batch, w);
}

void q2_round_kick(struct qcow2 *q)
{
    if (q2_batch_kick(&q->round->batch) < 0) {
        log_error("qcow2 '%s': out of memory for writing refcounts", q->drive->file);
    }
}

/* --- a new refcount block --------------------------------------------------------- */

enum { CREATE_RESERVE, CREATE_WRITTEN, CREATE_SYNCED };

struct q2_refblock_create {
    uint64_t bi;
    int phase;
    struct q2_table *t;
    struct q2_meta_io io;
};

/* Whether cluster c holds the L1 table, the refcount table or the header. */
static bool holds_fixed_tables(const struct qcow2 *q, uint64_t c)
{
    uint64_t l1_first = q->l1_offset >> q->cluster_bits;
    uint64_t l1_end = l1_first + ((uint64_t)q->l1_size * 8 + q->cluster_size - 1) /
                                 q->cluster_size;
    uint64_t rt_first = q->reftable_offset >> q->cluster_bits;

    return c == 0 || (q->l1_size && c >= l1_first && c < l1_end) ||
           (c >= rt_first && c < rt_first + q->reftable_clusters);
}

/* A range without a refcount block keeps its first cluster for that block. */
static bool kept_for_block(const struct qcow2 *q, uint64_t c)
{
    return (c & (span(q) - 1)) == 0 && !block_offset(q, c >> q->rb_bits);
}

/*
 * The refcount block of range bi: made at the range's first cluster,
 * counting itself, written and synced, then named in the refcount table.
 */
static int create_block(struct q2_job *job, struct q2_cluster_alloc *ca, uint64_t bi)
{
    struct qcow2 *q = job->q;
    struct q2_refblock_create *cr = ca->create;
    uint64_t place = bi << q->rb_bits, from, to;
    int r;

    if (!cr && !(cr = ca->create = calloc(1, sizeof(*cr)))) {
        return -ENOMEM;
    }
    cr->bi = bi;
    switch (cr->phase) {
    case CREATE_RESERVE:
        if (holds_fixed_tables(q, place)) {
            log_error("qcow2 '%s': corrupt image: no refcount block counts cluster %llu",
                      q->drive->file, (unsigned long long)place);
            return -EIO;
        }
        if (!(cr->t = q2_cache_reserve(&q->rb_cache, &job->task.wait, &r))) {
            return r;
        }
        memset(cr->t->data, 0, q->cluster_size);
        rb_write(q, cr->t->data, 0, 1, &from, &to);
        cr->phase = CREATE_WRITTEN;
        cr->io.opaque = &job->task;
        q2_meta_write(q, &cr->io, cr->t->data, q->cluster_size, place << q->cluster_bits,
                      q2_meta_resume_task);
        return Q2_PARKED;
    case CREATE_WRITTEN:
        cr->phase = CREATE_SYNCED;
        q2_meta_sync(q, &cr->io, q2_meta_resume_task);
        return Q2_PARKED;
    default:
        if ((r = q2_cache_install(&q->rb_cache, cr->t, place << q->cluster_bits)) < 0) {
            return r;
        }
        cr->t = NULL;
        q->reftable[bi] = place << q->cluster_bits;
        mark_reftable_entry(q, bi);
        note_end(q, place + 1);
        free(cr);
        ca->create = NULL;
        q2_cache_slots_changed(&q->rb_cache);   /* no longer reserved */
        return 0;
    }
}

/* --- a larger refcount table -------------------------------------------------------- */

/* What is in flight (or, for COUNT and DRAIN, what it waits for). */
enum { GROW_COUNT, GROW_WRITE, GROW_ROUND, GROW_SYNC, GROW_HEADER, GROW_HEADER_SYNC,
       GROW_DRAIN, GROW_RELEASE };

struct q2_reftable_grow {
    int phase;
    uint64_t *table;                /* the new table, host order */
    uint64_t entries, clusters;
    uint64_t place;                 /* its new refcount blocks, then the table */
    uint64_t nblocks;
    uint64_t at;                    /* the next cluster to count, or of the old table to release */
    uint8_t *buf;                   /* the new blocks and the table, as written */
    struct q2_meta_io io;
    uint64_t old_offset, old_clusters;
    uint8_t old_header[12];         /* the header's refcount table fields, until it switches */
};

static bool has_block(const struct qcow2 *q, uint64_t bi)
{
    return block_offset(q, bi) != 0;
}

/* Ranges overlapping clusters [first, end) that have no refcount block. */
static uint64_t ranges_without_block(const struct qcow2 *q, uint64_t first, uint64_t end)
{
    uint64_t n = 0;

    for (uint64_t bi = first >> q->rb_bits; bi <= (end - 1) >> q->rb_bits; bi++) {
        n += !has_block(q, bi);
    }
    return n;
}

/*
 * Where the new table goes and how large: after everything, after the
 * blocks for the ranges it and they occupy, large enough to name those
 * blocks and range needed.
 */
static int grow_plan(struct qcow2 *q, struct q2_reftable_grow *g, uint64_t after,
                     uint64_t needed)
{
    uint64_t cs = q->cluster_size, limit = 1ull << (56 - q->cluster_bits);

    g->place = after;
    g->entries = q->reftable_entries * 2 > needed + 2 ? q->reftable_entries * 2 : needed + 2;
    for (;;) {
        uint64_t end;

        g->clusters = (g->entries * 8 + cs - 1) / cs;
        if (g->clusters * cs > QCOW2_MAX_REFTABLE_BYTES) {
            log_error("qcow2 '%s': the refcount table would grow too large", q->drive->file);
            return -EFBIG;
        }
        /* More blocks take more room, which may need more blocks: until it settles. */
        g->nblocks = 0;
        for (;;) {
            uint64_t n = ranges_without_block(q, after, after + g->nblocks + g->clusters);

            if (n == g->nblocks) {
                break;
            }
            g->nblocks = n;
        }
        end = after + g->nblocks + g->clusters;
        if (end > limit) {
            return -EFBIG;
        }
        if (((end - 1) >> q->rb_bits) < g->entries) {
            break;
        }
        g->entries = ((end - 1) >> q->rb_bits) + 2;
    }
    g->entries = g->clusters * cs / 8;
    return 0;
}

/* The new blocks (counting what of the new clusters they cover) and the table, in g->buf. */
static int grow_build(struct qcow2 *q, struct q2_reftable_grow *g)
{
    uint64_t cs = q->cluster_size, end = g->place + g->nblocks + g->clusters, j = 0, from, to;
    uint8_t *tbuf;

    g->table = calloc(g->entries, 8);
    if (!g->table || posix_memalign((void **)&g->buf, 4096, (g->nblocks + g->clusters) * cs)) {
        return -ENOMEM;
    }
    memset(g->buf, 0, (g->nblocks + g->clusters) * cs);
    memcpy(g->table, q->reftable, q->reftable_entries * 8);
    for (uint64_t bi = g->place >> q->rb_bits; bi <= (end - 1) >> q->rb_bits; bi++) {
        uint64_t lo = bi << q->rb_bits, hi = lo + span(q);

        if (has_block(q, bi)) {
            continue;
        }
        g->table[bi] = (g->place + j) << q->cluster_bits;
        for (uint64_t c = lo > g->place ? lo : g->place; c < hi && c < end; c++) {
            rb_write(q, g->buf + j * cs, c - lo, 1, &from, &to);
        }
        j++;
    }
    tbuf = g->buf + g->nblocks * cs;
    for (uint64_t i = 0; i < g->entries; i++) {
        put_be64(tbuf + 8 * i, g->table[i]);
    }
    g->at = g->place;
    return 0;
}

/* Counts the new clusters that ranges with a block already cover, in those blocks. */
static int grow_count_in_old_blocks(struct q2_job *job, struct q2_reftable_grow *g)
{
    struct qcow2 *q = job->q;
    uint64_t end = g->place + g->nblocks + g->clusters;

    for (; g->at < end; g->at++) {
        int r;

        if (has_block(q, g->at >> q->rb_bits) && (r = set_refcount(job, g->at, 1)) != 0) {
            return r;
        }
    }
    return 0;
}

static void grow_switch(struct qcow2 *q, struct q2_reftable_grow *g)
{
    g->old_offset = q->reftable_offset;
    g->old_clusters = q->reftable_clusters;
    free(q->reftable);
    q->reftable = g->table;
    g->table = NULL;
    q->reftable_entries = g->entries;
    q->reftable_offset = (g->place + g->nblocks) << q->cluster_bits;
    q->reftable_clusters = (uint32_t)g->clusters;
    /* The table was written whole: nothing of it is left to write. */
    q->reftable_dirty_lo = q->reftable_dirty_hi = 0;
    note_end(q, g->place + g->nblocks + g->clusters);
    g->at = 0;
}

static int decrement(struct q2_job *job, uint64_t cluster);

/* The header names the new table: in memory, and written (then synced). */
static void grow_write_header(struct qcow2 *q, struct q2_reftable_grow *g, struct q2_task *t)
{
    memcpy(g->old_header, q->header + QH_REFT_OFFSET, sizeof(g->old_header));
    put_be64(q->header + QH_REFT_OFFSET, (g->place + g->nblocks) << q->cluster_bits);
    put_be32(q->header + QH_REFT_CLUSTERS, (uint32_t)g->clusters);
    q->header_writing = true;
    g->io.opaque = t;
    q2_meta_write(q, &g->io, q->header, q2_io_unit(q), 0, q2_meta_resume_task);
}

static void grow_free(struct qcow2 *q, struct q2_reftable_grow *g)
{
    /* A header write that failed: the file still names the old table. */
    if (g->phase == GROW_HEADER || g->phase == GROW_HEADER_SYNC) {
        memcpy(q->header + QH_REFT_OFFSET, g->old_header, sizeof(g->old_header));
        q->header_writing = false;
    }
    free(g->table);
    free(g->buf);
    free(g);
}

/*
 * Refcount table index 'needed' is past the table: a larger one, with the
 * blocks that count it, is written after everything else and synced; then
 * the header names it (written, synced); then the old one is released.
 */
static int grow_reftable(struct q2_job *job, struct q2_cluster_alloc *ca, uint64_t needed)
{
    struct qcow2 *q = job->q;
    struct q2_reftable_grow *g = ca->grow;
    int r;

    if (!g) {
        uint64_t after = ca->start + ca->n > q->file_end ? ca->start + ca->n : q->file_end;

        if (q->header_writing) {
            return -EBUSY;
        }
        if (!(g = ca->grow = calloc(1, sizeof(*g)))) {
            return -ENOMEM;
        }
        if ((r = grow_plan(q, g, after, needed)) < 0 || (r = grow_build(q, g)) < 0) {
            return r;
        }
    }
    g->io.opaque = &job->task;
    switch (g->phase) {
    case GROW_COUNT:
        if ((r = grow_count_in_old_blocks(job, g)) != 0) {
            return r;
        }
        g->phase = GROW_WRITE;
        q2_meta_write(q, &g->io, g->buf, (g->nblocks + g->clusters) * q->cluster_size,
                      g->place << q->cluster_bits, q2_meta_resume_task);
        return Q2_PARKED;
    case GROW_WRITE:
        g->phase = GROW_ROUND;
        __attribute__((fallthrough));
    case GROW_ROUND:
        /* The counts in the old blocks are written too. */
        if ((r = q2_round_wait(q, &job->task.wait)) != 0) {
            return r;
        }
        g->phase = GROW_SYNC;
        q2_meta_sync(q, &g->io, q2_meta_resume_task);
        return Q2_PARKED;
    case GROW_SYNC:
        g->phase = GROW_HEADER;
        grow_write_header(q, g, &job->task);
        return Q2_PARKED;
    case GROW_HEADER:
        g->phase = GROW_HEADER_SYNC;
        q2_meta_sync(q, &g->io, q2_meta_resume_task);
        return Q2_PARKED;
    case GROW_HEADER_SYNC:
        q->header_writing = false;
        grow_switch(q, g);
        g->phase = GROW_DRAIN;
        __attribute__((fallthrough));
    case GROW_DRAIN:
        /* No round still writes into the old table's clusters once they are free. */
        if ((r = q2_round_wait(q, &job->task.wait)) != 0) {
            return r;
        }
        g->phase = GROW_RELEASE;
        __attribute__((fallthrough));
    default:
        for (; g->at < g->old_clusters; g->at++) {
            if ((r = decrement(job, (g->old_offset >> q->cluster_bits) + g->at)) != 0) {
                return r;
            }
        }
        grow_free(q, g);
        ca->grow = NULL;
        return 0;
    }
}

/* --- allocating clusters ----------------------------------------------------------- */

enum { ALLOC_SCAN, ALLOC_COVER, ALLOC_COUNT };

uint64_t q2_max_alloc_clusters(const struct qcow2 *q)
{
    return span(q) - 1;
}

void q2_cluster_alloc_init(struct q2_cluster_alloc *ca, uint64_t n)
{
    *ca = (struct q2_cluster_alloc){ .n = n, .phase = ALLOC_SCAN };
}

void q2_cluster_alloc_cleanup(struct qcow2 *q, struct q2_cluster_alloc *ca)
{
    struct q2_refblock_create *cr = ca->create;

    if (cr) {
        if (cr->t) {
            q2_cache_unreserve(&q->rb_cache, cr->t);
        }
        free(cr);
    }
    if (ca->grow) {
        grow_free(q, ca->grow);
    }
    ca->create = NULL;
    ca->grow = NULL;
}

/* Whether cluster c is taken; *r: 0, or Q2_PARKED / -errno when it cannot tell yet. */
static bool cluster_used(struct q2_job *job, uint64_t c, int *r)
{
    struct qcow2 *q = job->q;
    uint64_t rc = 0;

    *r = 0;
    if (kept_for_block(q, c)) {
        return true;
    }
    if (c >= q->file_end) {
        return false;   /* past everything allocated: free */
    }
    *r = q2_refcount_get(job, c, &rc);
    return rc != 0;
}

/* First fit: a run of n clusters that are free. */
static int scan(struct q2_job *job, struct q2_cluster_alloc *ca)
{
    struct qcow2 *q = job->q;
    uint64_t limit = 1ull << (56 - q->cluster_bits);

    while (ca->at - ca->start < ca->n) {
        int r;
        bool used;

        if (ca->at >= limit) {
            return -EFBIG;
        }
        used = cluster_used(job, ca->at, &r);
        if (r) {
            return r;
        }
        ca->at++;
        if (used) {
            if (ca->start == q->free_hint) {
                q->free_hint = ca->at;
            }
            ca->start = ca->at;
        }
    }
    return 0;
}

/* Every range the run touches gets a refcount block (and the table room for it). */
static int cover(struct q2_job *job, struct q2_cluster_alloc *ca)
{
    struct qcow2 *q = job->q;
    uint64_t last = (ca->start + ca->n - 1) >> q->rb_bits;
    int r;

    /* One of them parked: it goes on first. */
    if ((ca->grow && (r = grow_reftable(job, ca, 0)) != 0) ||
        (ca->create && (r = create_block(job, ca, ca->create->bi)) != 0)) {
        return r;
    }
    for (uint64_t bi = ca->start >> q->rb_bits; bi <= last; bi++) {
        if ((bi >= q->reftable_entries && (r = grow_reftable(job, ca, bi)) != 0) ||
            (!has_block(q, bi) && (r = create_block(job, ca, bi)) != 0)) {
            return r;
        }
    }
    return 0;
}

static int count_run(struct q2_job *job, struct q2_cluster_alloc *ca)
{
    for (; ca->at < ca->start + ca->n; ca->at++) {
        int r = set_refcount(job, ca->at, 1);

        if (r) {
            return r;
        }
    }
    return 0;
}

int q2_cluster_alloc_step(struct q2_job *job, struct q2_cluster_alloc *ca)
{
    struct qcow2 *q = job->q;
    int r;

    switch (ca->phase) {
    case ALLOC_SCAN:
        if (ca->at == 0) {
            ca->start = ca->at = q->free_hint;
        }
        if ((r = scan(job, ca)) != 0) {
            return r;
        }
        ca->phase = ALLOC_COVER;
        __attribute__((fallthrough));
    case ALLOC_COVER:
        if ((r = cover(job, ca)) != 0) {
            return r;
        }
        ca->phase = ALLOC_COUNT;
        ca->at = ca->start;
        __attribute__((fallthrough));
    default:
        if ((r = count_run(job, ca)) != 0) {
            return r;
        }
        note_end(q, ca->start + ca->n);
        if (ca->start == q->free_hint) {
            q->free_hint = ca->start + ca->n;
        }
        return 0;
    }
}

/* --- releasing ---------------------------------------------------------------------- */

void q2_compressed_extent(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len)
{
    unsigned x = 62 - (q->cluster_bits - 8);
    uint64_t sectors = ((entry & ((1ull << 62) - 1)) >> x) + 1;

    *off = entry & ((1ull << x) - 1);
    *len = sectors * 512 - (*off & 511);
}

int q2_release_entry(struct qcow2 *q, uint64_t entry)
{
    bool compressed = entry & QCOW2_OFLAG_COMPRESSED;

    if (!compressed && !(entry & QCOW2_OFFSET_MASK)) {
        return 0;
    }
    if (q->pending_n == q->pending_cap) {
        size_t cap = q->pending_cap ? q->pending_cap * 2 : 64;
        uint64_t *p = realloc(q->pending_free, cap * sizeof(*p));

        if (!p) {
            return -ENOMEM;     /* the cluster leaks: harmless to the image */
        }
        q->pending_free = p;
        q->pending_cap = cap;
    }
    q->pending_free[q->pending_n++] = entry;
    return 0;
}

static int decrement(struct q2_job *job, uint64_t cluster)
{
    struct qcow2 *q = job->q;
    uint64_t rc;
    int r = q2_refcount_get(job, cluster, &rc);

    if (r) {
        return r;
    }
    if (rc == 0) {
        log_error("qcow2 '%s': releasing cluster %llu whose refcount is 0", q->drive->file,
                  (unsigned long long)cluster);
        return -EIO;
    }
    if ((r = set_refcount(job, cluster, rc - 1)) != 0) {
        return r;
    }
    if (rc == 1 && cluster < q->free_hint) {
        q->free_hint = cluster;
    }
    return 0;
}

struct release_job {
    struct q2_job job;
    uint64_t *entries;
    size_t n, i;
    uint64_t next, end;             /* clusters of entries[i] still to release */
    struct q2_waiter *w;
};

/* The clusters an entry held: [*first, *end). */
static void entry_clusters(const struct qcow2 *q, uint64_t e, uint64_t *first, uint64_t *end)
{
    uint64_t off, len;

    if (e & QCOW2_OFLAG_COMPRESSED) {
        q2_compressed_extent(q, e, &off, &len);
    } else {
        off = e & QCOW2_OFFSET_MASK;
        len = 1;
    }
    *first = off >> q->cluster_bits;
    *end = ((off + len - 1) >> q->cluster_bits) + 1;
}

static int release_step(struct q2_job *job)
{
    struct release_job *rj = Q2_OF(job, struct release_job, job);
    struct qcow2 *q = job->q;

    while (rj->i < rj->n) {
        if (rj->next == rj->end) {
            entry_clusters(q, rj->entries[rj->i], &rj->next, &rj->end);
        }
        for (; rj->next < rj->end; rj->next++) {
            int r;

            q2_cache_forget(&q->l2_cache, rj->next << q->cluster_bits);
            if ((r = decrement(job, rj->next)) != 0) {
                return r;
            }
        }
        rj->i++;
    }
    return 0;
}

static void release_done(struct q2_job *job, int result)
{
    struct release_job *rj = Q2_OF(job, struct release_job, job);
    struct q2_waiter *w = rj->w;

    free(rj->entries);
    free(rj);
    w->resume(w, result);
}

int q2_release_submit(struct qcow2 *q, uint64_t *entries, size_t n, struct q2_waiter *w)
{
    struct release_job *rj = calloc(1, sizeof(*rj));

    if (!rj) {
        free(entries);          /* they leak: harmless to the image */
        return -ENOMEM;
    }
    rj->entries = entries;
    rj->n = n;
    rj->w = w;
    q2_lane_submit(q, &rj->job, release_step, release_done);
    return Q2_PARKED;
}
