// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2: waiting, asynchronous metadata I/O, and the table caches (L2
 * tables, refcount blocks).  A table that is not cached is loaded into a
 * free slot while whoever needs it parks on the slot: several waiting for
 * the same table wait on one load.  A slot holding a table that is dirty,
 * being written or loaded is never taken; when every slot is so, the
 * cache asks for room (a writeback, a refcount round) and the caller
 * parks until slots change.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2-int.h"
#include "util/log.h"

/* --- waiting ------------------------------------------------------------------ */

void q2_wait_add(struct q2_wait_list *l, struct q2_waiter *w)
{
    w->next = NULL;
    if (l->tail) {
        l->tail->next = w;
    } else {
        l->head = w;
    }
    l->tail = w;
}

void q2_wake_all(struct q2_wait_list *l, int result)
{
    struct q2_waiter *w = l->head;

    l->head = l->tail = NULL;
    while (w) {
        struct q2_waiter *next = w->next;

        w->resume(w, result);
        w = next;
    }
}

/* Runs the step, and again while its waiter resumed during it; finishes it when it ends. */
static void task_loop(struct q2_task *t, int woken_with)
{
    int r;

    t->running = true;
    for (;;) {
        t->woken = false;
        r = woken_with < 0 ? woken_with : t->step(t);
        if (r != Q2_PARKED || !t->woken) {
            break;
        }
        woken_with = t->wake_result;
    }
    t->running = false;
    if (r != Q2_PARKED) {
        t->finish(t, r);
    }
}

static void on_task_resume(struct q2_waiter *w, int result)
{
    struct q2_task *t = Q2_OF(w, struct q2_task, wait);

    t->wake_result = result;
    t->woken = true;
    if (!t->running) {
        task_loop(t, result);
    }
}

void q2_task_init(struct q2_task *t, int (*step)(struct q2_task *),
                  void (*finish)(struct q2_task *, int))
{
    *t = (struct q2_task){ .wait = { .resume = on_task_resume }, .step = step,
                           .finish = finish };
}

void q2_task_run(struct q2_task *t)
{
    task_loop(t, 0);
}

int q2_batch_wait(struct q2_batch *b, struct q2_waiter *w)
{
    int r;

    if (!b->pending(b->owner)) {
        if (!b->running) {
            return 0;
        }
        q2_wait_add(&b->current, w);
        return Q2_PARKED;
    }
    if (b->running) {
        q2_wait_add(&b->next, w);
        return Q2_PARKED;
    }
    q2_wait_add(&b->current, w);
    b->running = true;
    if ((r = b->start(b->owner)) < 0) {
        b->running = false;
        b->current = (struct q2_wait_list){ 0 };
        return r;
    }
    return Q2_PARKED;
}

int q2_batch_kick(struct q2_batch *b)
{
    int r = 0;

    if (!b->running && b->pending(b->owner)) {
        b->running = true;
        if ((r = b->start(b->owner)) < 0) {
            b->running = false;
        }
    }
    return r;
}

void q2_batch_end(struct q2_batch *b, int result)
{
    struct q2_wait_list done = b->current;

    b->running = false;
    b->current = b->next;
    b->next = (struct q2_wait_list){ 0 };
    if (b->current.head) {
        int r = q2_batch_kick(b);

        if (r < 0 || !b->running) {
            q2_wake_all(&b->current, r);
        }
    }
    q2_wake_all(&done, result);
}

/* --- asynchronous metadata I/O ------------------------------------------------ */

void q2_meta_resume_task(struct q2_meta_io *m, int result)
{
    struct q2_task *t = m->opaque;

    t->wait.resume(&t->wait, result);
}

static void on_meta_done(struct blk_io *io, int result)
{
    struct q2_meta_io *m = io->opaque;

    m->q->meta_in_flight--;
    if (result >= 0 && io->op == BLK_READ && m->in_file < m->len) {
        memset(m->buf + m->in_file, 0, m->len - m->in_file);
    }
    m->done(m, result < 0 ? result : 0);
}

static void meta_submit(struct qcow2 *q, struct q2_meta_io *m, enum blk_op op, void *buf,
                        uint64_t len, uint64_t offset, void (*done)(struct q2_meta_io *, int))
{
    m->q = q;
    m->buf = buf;
    m->len = len;
    m->done = done;
    m->iov = (struct iovec){ buf, len };
    m->io = (struct blk_io){ .op = op, .offset = offset, .iov = &m->iov,
                             .iovcnt = op == BLK_FLUSH ? 0 : 1, .done = on_meta_done,
                             .opaque = m };
    q->meta_in_flight++;
    blk_file_submit(q->file, &m->io);
}

int q2_meta_read(struct qcow2 *q, struct q2_meta_io *m, void *buf, uint64_t len,
                 uint64_t offset, void (*done)(struct q2_meta_io *, int))
{
    uint64_t file_len, align = q->file->align ? q->file->align : 1;
    int r = blk_file_length(q->file, &file_len);

    if (r < 0) {
        return r;
    }
    if (offset >= file_len) {
        return -EIO;
    }
    /* Only what is in the file is read (in whole O_DIRECT blocks); zeros after it. */
    m->in_file = (file_len - offset + align - 1) / align * align;
    if (m->in_file > len) {
        m->in_file = len;
    }
    meta_submit(q, m, BLK_READ, buf, m->in_file, offset, done);
    m->len = len;
    return 0;
}

void q2_meta_write(struct qcow2 *q, struct q2_meta_io *m, const void *buf, uint64_t len,
                   uint64_t offset, void (*done)(struct q2_meta_io *, int))
{
    meta_submit(q, m, BLK_WRITE, (void *)buf, len, offset, done);
    m->in_file = len;
}

void q2_meta_sync(struct qcow2 *q, struct q2_meta_io *m, void (*done)(struct q2_meta_io *, int))
{
    meta_submit(q, m, BLK_FLUSH, NULL, 0, 0, done);
    m->in_file = 0;
}

/* --- synchronous metadata I/O (open) ------------------------------------------- */

int q2_pread(struct qcow2 *q, void *buf, uint64_t len, uint64_t offset)
{
    int64_t r = blk_file_pread(q->file, buf, len, offset);

    return r < 0 ? (int)r : 0;
}

int q2_pwrite(struct qcow2 *q, const void *buf, uint64_t len, uint64_t offset)
{
    return blk_file_pwrite(q->file, buf, len, offset);
}

int q2_sync(struct qcow2 *q)
{
    return blk_file_sync(q->file);
}

uint64_t q2_io_unit(const struct qcow2 *q)
{
    return q->file->align > 512 ? q->file->align : 512;
}

uint64_t q2_table_unit(const struct qcow2 *q)
{
    uint64_t unit = q2_io_unit(q);

    return unit < q->cluster_size ? unit : q->cluster_size;
}

void q2_mark_units(const struct qcow2 *q, uint64_t *lo, uint64_t *hi, uint64_t from,
                   uint64_t to)
{
    uint64_t unit = q2_table_unit(q), first = from / unit, end = (to + unit - 1) / unit;

    if (*lo >= *hi) {
        *lo = first;
        *hi = end;
        return;
    }
    *lo = first < *lo ? first : *lo;
    *hi = end > *hi ? end : *hi;
}

/* --- table caches ------------------------------------------------------------- */

int q2_cache_init(struct qcow2 *q, struct q2_cache *c, const char *what, unsigned n,
                  void (*make_room)(struct qcow2 *))
{
    *c = (struct q2_cache){ .q = q, .what = what, .make_room = make_room };
    c->slots = calloc(n, sizeof(*c->slots));
    if (!c->slots) {
        return -ENOMEM;
    }
    c->n = n;
    for (unsigned i = 0; i < n; i++) {
        c->slots[i].cache = c;
        if (posix_memalign((void **)&c->slots[i].data, 4096, q->cluster_size)) {
            c->slots[i].data = NULL;
            q2_cache_free(c);
            return -ENOMEM;
        }
    }
    return 0;
}

void q2_cache_free(struct q2_cache *c)
{
    for (unsigned i = 0; c->slots && i < c->n; i++) {
        free(c->slots[i].data);
    }
    free(c->slots);
    c->slots = NULL;
    c->n = 0;
}

void q2_cache_slots_changed(struct q2_cache *c)
{
    q2_wake_all(&c->slot_free, 0);
}

void q2_cache_room_made(struct q2_cache *c, int result)
{
    q2_wake_all(&c->slot_free, result < 0 ? result : 0);
}

static bool holds_changes(const struct q2_table *t)
{
    return t->dirty || t->frozen || t->dirty_lo < t->dirty_hi || t->in_round;
}

static bool evictable(const struct q2_table *t)
{
    return t->state == Q2_TABLE_EMPTY ||
           (t->state == Q2_TABLE_READY && !t->pins && !holds_changes(t));
}

/* The least recently used slot that may be taken, or NULL. */
static struct q2_table *cache_victim(struct q2_cache *c)
{
    struct q2_table *victim = NULL;

    for (unsigned i = 0; i < c->n; i++) {
        struct q2_table *t = &c->slots[i];

        if (t->state == Q2_TABLE_EMPTY) {
            return t;
        }
        if (evictable(t) && (!victim || t->last_use < victim->last_use)) {
            victim = t;
        }
    }
    return victim;
}

static struct q2_table *cache_find(struct q2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; i < c->n; i++) {
        struct q2_table *t = &c->slots[i];

        if ((t->state == Q2_TABLE_READY || t->state == Q2_TABLE_LOADING) &&
            t->offset == offset) {
            return t;
        }
    }
    return NULL;
}

/* A slot to take, or NULL: then w parks until slots change, and room is asked for. */
static struct q2_table *take_slot(struct q2_cache *c, struct q2_waiter *w, int *r)
{
    struct q2_table *t = cache_victim(c);

    if (t) {
        t->state = Q2_TABLE_EMPTY;
        t->offset = 0;
        return t;
    }
    q2_wait_add(&c->slot_free, w);
    *r = Q2_PARKED;
    c->make_room(c->q);
    return NULL;
}

static void touch(struct q2_table *t)
{
    t->last_use = ++t->cache->clock;
}

static void on_table_loaded(struct q2_meta_io *m, int result)
{
    struct q2_table *t = Q2_OF(m, struct q2_table, load);
    struct q2_cache *c = t->cache;

    if (result < 0) {
        log_error("qcow2 '%s': reading the %s at %#llx: %s", c->q->drive->file, c->what,
                  (unsigned long long)t->offset, strerror(-result));
        t->state = Q2_TABLE_EMPTY;
        t->offset = 0;
        q2_wake_all(&t->loaded, result);
    } else {
        t->state = Q2_TABLE_READY;
        touch(t);
        /* Whoever waited finds it still here, whatever the first of them loads next. */
        t->pins++;
        q2_wake_all(&t->loaded, 0);
        t->pins--;
    }
    q2_cache_slots_changed(c);
}

struct q2_table *q2_cache_peek(struct q2_cache *c, uint64_t offset)
{
    struct q2_table *t = cache_find(c, offset);

    if (t && t->state == Q2_TABLE_READY) {
        touch(t);
        return t;
    }
    return NULL;
}

struct q2_table *q2_cache_get(struct q2_cache *c, uint64_t offset, struct q2_waiter *w,
                              int *r)
{
    struct q2_table *t = cache_find(c, offset);

    *r = 0;
    if (t && t->state == Q2_TABLE_READY) {
        touch(t);
        return t;
    }
    if (t) {
        q2_wait_add(&t->loaded, w);
        *r = Q2_PARKED;
        return NULL;
    }
    if (!(t = take_slot(c, w, r))) {
        return NULL;
    }
    *r = q2_meta_read(c->q, &t->load, t->data, c->q->cluster_size, offset, on_table_loaded);
    if (*r < 0) {
        log_error("qcow2 '%s': corrupt image: %s at %#llx is past the end of the file",
                  c->q->drive->file, c->what, (unsigned long long)offset);
        return NULL;
    }
    t->state = Q2_TABLE_LOADING;
    t->offset = offset;
    q2_wait_add(&t->loaded, w);
    *r = Q2_PARKED;
    return NULL;
}

struct q2_table *q2_cache_reserve(struct q2_cache *c, struct q2_waiter *w, int *r)
{
    struct q2_table *t;

    *r = 0;
    if (!(t = take_slot(c, w, r))) {
        return NULL;
    }
    t->state = Q2_TABLE_RESERVED;
    return t;
}

int q2_cache_install(struct q2_cache *c, struct q2_table *t, uint64_t offset)
{
    struct q2_table *stale = cache_find(c, offset);

    /* A cluster freed and taken again: what the cache held of it is gone. */
    if (stale && !evictable(stale)) {
        log_error("qcow2 '%s': corrupt image: cluster %#llx is in use as a %s twice",
                  c->q->drive->file, (unsigned long long)offset, c->what);
        return -EIO;
    }
    if (stale) {
        stale->state = Q2_TABLE_EMPTY;
        stale->offset = 0;
    }
    t->state = Q2_TABLE_READY;
    t->offset = offset;
    t->dirty = false;
    touch(t);
    return 0;
}

void q2_cache_unreserve(struct q2_cache *c, struct q2_table *t)
{
    t->state = Q2_TABLE_EMPTY;
    t->offset = 0;
    q2_cache_slots_changed(c);
}

void q2_cache_forget(struct q2_cache *c, uint64_t offset)
{
    struct q2_table *t = cache_find(c, offset);

    if (t && evictable(t)) {
        t->state = Q2_TABLE_EMPTY;
        t->offset = 0;
    }
}

void q2_table_pin(struct q2_table *t)
{
    t->pins++;
}

void q2_table_unpin(struct q2_table *t)
{
    if (--t->pins == 0) {
        q2_cache_slots_changed(t->cache);
    }
}

int q2_table_make_writable(struct q2_table *t)
{
    uint8_t *copy;

    if (!t->frozen) {
        return 0;
    }
    /* The writeback keeps writing the old buffer, and frees it. */
    if (posix_memalign((void **)&copy, 4096, t->cache->q->cluster_size)) {
        return -ENOMEM;
    }
    memcpy(copy, t->data, t->cache->q->cluster_size);
    t->data = copy;
    t->frozen = false;
    return 0;
}
