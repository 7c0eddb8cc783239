// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 metadata: the table caches, L2 lookups and updates, refcounts and
 * cluster allocation, and the ordered writeback that keeps the image file
 * consistent whenever the process dies (see qcow2-int.h).
 */
#include "block/qcow2-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* --- synchronous metadata I/O ------------------------------------------- */

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

/* The part of a table cluster written after a change: an I/O unit, or the cluster if smaller. */
static uint64_t table_unit(const struct qcow2 *q)
{
    uint64_t unit = q2_io_unit(q);

    return unit < q->cluster_size ? unit : q->cluster_size;
}

int q2_header_write(struct qcow2 *q, unsigned offset, const void *bytes, size_t len)
{
    uint64_t unit = q2_io_unit(q);
    uint8_t *buf;
    int r;

    if (offset + len > unit) {
        return -EINVAL;
    }
    if (posix_memalign((void **)&buf, 4096, unit)) {
        return -ENOMEM;
    }
    r = q2_pread(q, buf, unit, 0);
    if (r == 0) {
        memcpy(buf + offset, bytes, len);
        r = q2_pwrite(q, buf, unit, 0);
    }
    if (r == 0) {
        r = q2_sync(q);
    }
    free(buf);
    return r;
}

/* --- table cache ---------------------------------------------------------- */

int q2_cache_init(struct q2_cache *c, unsigned n, uint64_t cluster_size)
{
    c->slots = calloc(n, sizeof(*c->slots));
    if (!c->slots) {
        return -ENOMEM;
    }
    c->n = n;
    for (unsigned i = 0; i < n; i++) {
        if (posix_memalign((void **)&c->slots[i].data, 4096, cluster_size)) {
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

/* A dirty L2 table may only reach the file after what it points to is durable. */
static int write_table(struct qcow2 *q, struct q2_table *t, bool synced)
{
    int r = synced ? 0 : q2_sync(q);

    if (r == 0) {
        r = q2_pwrite(q, t->data, q->cluster_size, t->offset);
    }
    if (r == 0) {
        t->dirty = false;
    }
    return r;
}

static struct q2_table *cache_victim(struct q2_cache *c)
{
    struct q2_table *victim = &c->slots[0];

    for (unsigned i = 0; i < c->n; i++) {
        struct q2_table *t = &c->slots[i];

        if (!t->offset) {
            return t;
        }
        if (t->last_use < victim->last_use) {
            victim = t;
        }
    }
    return victim;
}

static struct q2_table *cache_find(struct q2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->slots[i].offset == offset) {
            c->slots[i].last_use = ++c->clock;
            return &c->slots[i];
        }
    }
    return NULL;
}

/*
 * The table at offset, read from the file unless 'fresh' (a new table,
 * zeroed).  NULL with *r on an error.
 */
static struct q2_table *cache_get(struct qcow2 *q, struct q2_cache *c, uint64_t offset,
                                  bool fresh, int *r)
{
    struct q2_table *t = cache_find(c, offset);

    *r = 0;
    if (t) {
        if (fresh) {
            memset(t->data, 0, q->cluster_size);
        }
        return t;
    }
    t = cache_victim(c);
    if (t->offset && t->dirty && (*r = write_table(q, t, false)) < 0) {
        log_error("qcow2 '%s': writing back a table: %s", q->drive->file, strerror(-*r));
        return NULL;
    }
    t->offset = 0;
    if (fresh) {
        memset(t->data, 0, q->cluster_size);
    } else if ((*r = q2_pread(q, t->data, q->cluster_size, offset)) < 0) {
        log_error("qcow2 '%s': reading the table at %#llx: %s", q->drive->file,
                  (unsigned long long)offset, strerror(-*r));
        return NULL;
    }
    t->offset = offset;
    t->dirty = false;
    t->last_use = ++c->clock;
    return t;
}

static void cache_forget(struct q2_cache *c, uint64_t offset)
{
    struct q2_table *t = cache_find(c, offset);

    if (t) {
        t->offset = 0;
        t->dirty = false;
    }
}

/* --- validation ------------------------------------------------------------ */

/* A table offset from the image: cluster-aligned and not the header's cluster. */
static int check_table_offset(struct qcow2 *q, uint64_t offset, const char *what)
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
        (off && check_table_offset(q, off, "data cluster") < 0)) {
        log_error("qcow2 '%s': corrupt L2 entry %#llx", q->drive->file,
                  (unsigned long long)entry);
        return -EIO;
    }
    return 0;
}

void q2_compressed_extent(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len)
{
    unsigned x = 62 - (q->cluster_bits - 8);
    uint64_t sectors = ((entry & ((1ull << 62) - 1)) >> x) + 1;

    *off = entry & ((1ull << x) - 1);
    *len = sectors * 512 - (*off & 511);
}

/* --- L2 tables ---------------------------------------------------------- */

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

static uint8_t *l2_slot(struct qcow2 *q, struct q2_table *t, uint64_t guest_cluster)
{
    return t->data + 8 * (guest_cluster & ((1ull << q->l2_bits) - 1));
}

int q2_l2_get(struct qcow2 *q, uint64_t guest_cluster, uint64_t *entry)
{
    uint64_t l1e, off;
    uint32_t i;
    struct q2_table *t;
    int r = l1_entry(q, guest_cluster, &l1e, &i);

    *entry = 0;
    if (r < 0) {
        return r;
    }
    off = l1e & QCOW2_OFFSET_MASK;
    if (!off) {
        return 0;
    }
    if ((r = check_table_offset(q, off, "L2 table")) < 0 ||
        !(t = cache_get(q, &q->l2_cache, off, false, &r))) {
        return r;
    }
    *entry = be64(l2_slot(q, t, guest_cluster));
    return q2_l2_entry_check(q, *entry);
}

int q2_l2_prepare(struct qcow2 *q, uint64_t guest_cluster)
{
    uint64_t l1e, old, refcount = 0;
    uint8_t *copy = NULL;
    uint32_t i;
    struct q2_table *t;
    int64_t fresh;
    int r = l1_entry(q, guest_cluster, &l1e, &i);

    if (r < 0 || (l1e & QCOW2_OFLAG_COPIED)) {
        return r;
    }
    old = l1e & QCOW2_OFFSET_MASK;
    if (old) {
        if ((r = check_table_offset(q, old, "L2 table")) < 0 ||
            (r = q2_refcount_get(q, old >> q->cluster_bits, &refcount)) < 0) {
            return r;
        }
        if (refcount == 1) {            /* only ours after all: just mark it so */
            q->l1[i] = old | QCOW2_OFLAG_COPIED;
            q->l1_dirty = true;
            return 0;
        }
        /* Shared with a snapshot: copy it before changing it. */
        if (!(t = cache_get(q, &q->l2_cache, old, false, &r))) {
            return r;
        }
        if (!(copy = malloc(q->cluster_size))) {
            return -ENOMEM;
        }
        memcpy(copy, t->data, q->cluster_size);
    }
    fresh = q2_alloc_clusters(q, 1);
    if (fresh < 0 || !(t = cache_get(q, &q->l2_cache, (uint64_t)fresh, true, &r))) {
        free(copy);
        return fresh < 0 ? (int)fresh : r;
    }
    if (copy) {
        memcpy(t->data, copy, q->cluster_size);
        free(copy);
        q2_release_entry(q, old);
    }
    t->dirty = true;
    q->l1[i] = (uint64_t)fresh | QCOW2_OFLAG_COPIED;
    q->l1_dirty = true;
    return 0;
}

int q2_l2_set(struct qcow2 *q, uint64_t guest_cluster, uint64_t entry)
{
    uint64_t l1e;
    uint32_t i;
    struct q2_table *t;
    int r = l1_entry(q, guest_cluster, &l1e, &i);

    if (r < 0) {
        return r;
    }
    if (!(l1e & QCOW2_OFLAG_COPIED)) {
        return -EIO;    /* q2_l2_prepare was not called: a bug, not the image */
    }
    if (!(t = cache_get(q, &q->l2_cache, l1e & QCOW2_OFFSET_MASK, false, &r))) {
        return r;
    }
    put_be64(l2_slot(q, t, guest_cluster), entry);
    t->dirty = true;
    return 0;
}

/* --- refcounts ------------------------------------------------------------ */

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

/* Stores v and returns the byte offset of the change within the block. */
static uint64_t rb_write(const struct qcow2 *q, uint8_t *block, uint64_t index, uint64_t v)
{
    unsigned bits = 1u << q->refcount_order;

    if (bits < 8) {
        unsigned per_byte = 8 / bits, shift = bits * (unsigned)(index % per_byte);
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);

        block[index / per_byte] = (uint8_t)((block[index / per_byte] & ~mask) |
                                            ((v << shift) & mask));
        return index / per_byte;
    }
    {
        unsigned bytes = bits / 8;

        for (unsigned i = bytes; i-- > 0;) {
            block[index * bytes + i] = (uint8_t)v;
            v >>= 8;
        }
        return index * bytes;
    }
}

int q2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *refcount)
{
    uint64_t bi = cluster >> q->rb_bits, off;
    struct q2_table *t;
    int r;

    *refcount = 0;
    if (bi >= q->reftable_entries || !(off = q->reftable[bi] & QCOW2_REFT_OFFSET_MASK)) {
        return 0;
    }
    if ((r = check_table_offset(q, off, "refcount block")) < 0 ||
        !(t = cache_get(q, &q->rb_cache, off, false, &r))) {
        return r;
    }
    *refcount = rb_read(q, t->data, cluster & ((1ull << q->rb_bits) - 1));
    return 0;
}

/* Writes the unit of the in-memory refcount table that holds entry i. */
static int write_reftable_entry(struct qcow2 *q, uint64_t i)
{
    uint64_t unit = table_unit(q), first = (i * 8) / unit * unit / 8;
    uint64_t per_unit = unit / 8;
    uint8_t *buf;
    int r;

    if (posix_memalign((void **)&buf, 4096, unit)) {
        return -ENOMEM;
    }
    memset(buf, 0, unit);
    for (uint64_t k = 0; k < per_unit && first + k < q->reftable_entries; k++) {
        put_be64(buf + 8 * k, q->reftable[first + k]);
    }
    r = q2_pwrite(q, buf, unit, q->reftable_offset + first * 8);
    free(buf);
    return r;
}

/* Clusters being allocated right now: a new refcount block must avoid them. */
#define RESERVED_MAX 8

struct reserved {
    uint64_t start[RESERVED_MAX], n[RESERVED_MAX];
    unsigned count;
};

static bool is_reserved(const struct reserved *res, uint64_t cluster)
{
    for (unsigned i = 0; i < res->count; i++) {
        if (cluster >= res->start[i] && cluster - res->start[i] < res->n[i]) {
            return true;
        }
    }
    return false;
}

static void reserve(struct reserved *res, uint64_t start, uint64_t n)
{
    res->start[res->count] = start;
    res->n[res->count] = n;
    res->count++;
}

static void note_end(struct qcow2 *q, uint64_t cluster_after)
{
    if (cluster_after > q->file_end) {
        q->file_end = cluster_after;
    }
}

static int grow_reftable(struct qcow2 *q, uint64_t needed_index, struct reserved *res);
static int set_refcount(struct qcow2 *q, uint64_t cluster, uint64_t v, struct reserved *res);

/* The first cluster past the file and past everything being allocated. */
static uint64_t after_reserved(const struct qcow2 *q, const struct reserved *res)
{
    uint64_t end = q->file_end;

    for (unsigned i = 0; i < res->count; i++) {
        if (res->start[i] + res->n[i] > end) {
            end = res->start[i] + res->n[i];
        }
    }
    return end;
}

/*
 * Creates the missing refcount block with index bi.  All clusters in its
 * range have refcount 0 but the reserved ones; the block takes the first
 * other one and counts itself.  When the whole range is reserved it goes
 * after everything else and is counted like any cluster.  Written and
 * synced before the table points to it.
 */
static int create_refcount_block(struct qcow2 *q, uint64_t bi, struct reserved *res)
{
    uint64_t first = bi << q->rb_bits, place = first, span = 1ull << q->rb_bits;
    struct q2_table *t;
    bool counts_itself;
    int r;

    while (place - first < span && is_reserved(res, place)) {
        place++;
    }
    counts_itself = place - first < span;
    if (!counts_itself) {
        if (res->count == RESERVED_MAX) {
            return -EFBIG;
        }
        place = after_reserved(q, res);
        reserve(res, place, 1);
        r = set_refcount(q, place, 1, res);
        res->count--;
        if (r < 0) {
            return r;
        }
    }
    if (!(t = cache_get(q, &q->rb_cache, place << q->cluster_bits, true, &r))) {
        return r;
    }
    if (counts_itself) {
        rb_write(q, t->data, place - first, 1);
    }
    if ((r = q2_pwrite(q, t->data, q->cluster_size, place << q->cluster_bits)) < 0 ||
        (r = q2_sync(q)) < 0) {
        cache_forget(&q->rb_cache, place << q->cluster_bits);
        return r;
    }
    note_end(q, place + 1);
    q->reftable[bi] = place << q->cluster_bits;
    return write_reftable_entry(q, bi);
}

static int set_refcount(struct qcow2 *q, uint64_t cluster, uint64_t v, struct reserved *res)
{
    uint64_t bi = cluster >> q->rb_bits, off, unit = table_unit(q), at;
    struct q2_table *t;
    int r;

    if (bi >= q->reftable_entries && (r = grow_reftable(q, bi, res)) < 0) {
        return r;
    }
    if (!(q->reftable[bi] & QCOW2_REFT_OFFSET_MASK) &&
        (r = create_refcount_block(q, bi, res)) < 0) {
        return r;
    }
    off = q->reftable[bi] & QCOW2_REFT_OFFSET_MASK;
    if ((r = check_table_offset(q, off, "refcount block")) < 0 ||
        !(t = cache_get(q, &q->rb_cache, off, false, &r))) {
        return r;
    }
    at = rb_write(q, t->data, cluster & ((1ull << q->rb_bits) - 1), v) / unit * unit;
    return q2_pwrite(q, t->data + at, unit, off + at);
}

/*
 * A refcount table too small for block index needed_index: a larger one is
 * written after the end of the file, synced, and only then named in the
 * header; the old one is released after that.
 */
static int grow_reftable(struct qcow2 *q, uint64_t needed_index, struct reserved *res)
{
    uint64_t cs = q->cluster_size, start = after_reserved(q, res), entries, clusters;
    uint64_t old_offset = q->reftable_offset, old_clusters = q->reftable_clusters;
    uint64_t old_entries = q->reftable_entries;
    uint64_t *table, *old = q->reftable;
    uint8_t hdr[12], *buf;
    int r;

    /*
     * Room for the needed block, for the blocks that count the new table
     * itself (placed at 'start'), and for growth.
     */
    entries = q->reftable_entries * 2;
    if (entries < needed_index + 2) {
        entries = needed_index + 2;
    }
    do {
        clusters = (entries * 8 + cs - 1) / cs;
        if (entries < ((start + clusters) >> q->rb_bits) + 2) {
            entries = ((start + clusters) >> q->rb_bits) + 2;
            continue;
        }
        break;
    } while (clusters * cs <= QCOW2_MAX_REFTABLE_BYTES);
    entries = clusters * cs / 8;
    if (clusters * cs > QCOW2_MAX_REFTABLE_BYTES || res->count == RESERVED_MAX) {
        log_error("qcow2 '%s': the refcount table would grow too large", q->drive->file);
        return -EFBIG;
    }
    if (!(table = calloc(entries, 8))) {
        return -ENOMEM;
    }
    memcpy(table, old, q->reftable_entries * 8);
    q->reftable = table;
    q->reftable_entries = entries;
    q->reftable_offset = start << q->cluster_bits;
    q->reftable_clusters = (uint32_t)clusters;
    reserve(res, start, clusters);
    note_end(q, start + clusters);
    r = 0;
    for (uint64_t c = 0; c < clusters && r == 0; c++) {
        r = set_refcount(q, start + c, 1, res);
    }
    res->count--;
    if (r == 0 && !(buf = calloc(clusters, cs))) {
        r = -ENOMEM;
    }
    if (r == 0) {
        for (uint64_t i = 0; i < entries; i++) {
            put_be64(buf + 8 * i, q->reftable[i]);
        }
        r = q2_pwrite(q, buf, clusters * cs, q->reftable_offset);
        free(buf);
    }
    if (r == 0 && (r = q2_sync(q)) == 0) {
        put_be64(hdr, q->reftable_offset);
        put_be32(hdr + 8, q->reftable_clusters);
        r = q2_header_write(q, QH_REFT_OFFSET, hdr, sizeof(hdr));
    }
    if (r == 0) {
        free(old);
        for (uint64_t c = 0; c < old_clusters && r == 0; c++) {
            uint64_t rc;

            r = q2_refcount_get(q, (old_offset >> q->cluster_bits) + c, &rc);
            if (r == 0 && rc > 0) {
                r = set_refcount(q, (old_offset >> q->cluster_bits) + c, rc - 1, res);
            }
        }
        return r;
    }
    /* The header still names the old table: go on with it. */
    free(q->reftable);
    q->reftable = old;
    q->reftable_entries = old_entries;
    q->reftable_offset = old_offset;
    q->reftable_clusters = (uint32_t)old_clusters;
    return r;
}

int64_t q2_alloc_clusters(struct qcow2 *q, uint64_t n)
{
    uint64_t start = q->free_hint, c = start;
    struct reserved res = { .count = 0 };
    int r;

    /* First fit: a run of n clusters with refcount 0; past the end all are free. */
    while (c - start < n) {
        uint64_t rc = 0;

        if (c >= q->file_end) {
            c = start + n;
            break;
        }
        if ((r = q2_refcount_get(q, c, &rc)) < 0) {
            return r;
        }
        c++;
        if (rc) {
            if (start == q->free_hint) {
                q->free_hint = c;
            }
            start = c;
        }
    }
    if (start + n > (1ull << (56 - q->cluster_bits))) {
        return -EFBIG;
    }
    reserve(&res, start, n);
    for (uint64_t i = 0; i < n; i++) {
        if ((r = set_refcount(q, start + i, 1, &res)) < 0) {
            return r;
        }
    }
    note_end(q, start + n);
    if (start == q->free_hint) {
        q->free_hint = start + n;
    }
    return (int64_t)(start << q->cluster_bits);
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

static int decrement(struct qcow2 *q, uint64_t cluster)
{
    struct reserved res = { .count = 0 };
    uint64_t rc;
    int r = q2_refcount_get(q, cluster, &rc);

    if (r < 0) {
        return r;
    }
    if (rc == 0) {
        log_error("qcow2 '%s': releasing cluster %llu whose refcount is 0", q->drive->file,
                  (unsigned long long)cluster);
        return -EIO;
    }
    if ((r = set_refcount(q, cluster, rc - 1, &res)) < 0) {
        return r;
    }
    if (rc == 1 && cluster < q->free_hint) {
        q->free_hint = cluster;
    }
    return 0;
}

static int apply_releases(struct qcow2 *q)
{
    int r = 0;

    for (size_t i = 0; i < q->pending_n && r == 0; i++) {
        uint64_t e = q->pending_free[i], off, len;

        if (e & QCOW2_OFLAG_COMPRESSED) {
            q2_compressed_extent(q, e, &off, &len);
        } else {
            off = e & QCOW2_OFFSET_MASK;
            len = 1;
        }
        for (uint64_t c = off >> q->cluster_bits; c <= (off + len - 1) >> q->cluster_bits &&
             r == 0; c++) {
            cache_forget(&q->l2_cache, c << q->cluster_bits);
            r = decrement(q, c);
        }
    }
    q->pending_n = 0;
    return r;
}

static int write_l1(struct qcow2 *q)
{
    uint64_t unit = table_unit(q), bytes = ((uint64_t)q->l1_size * 8 + unit - 1) / unit * unit;
    uint8_t *buf;
    int r;

    if (posix_memalign((void **)&buf, 4096, bytes ? bytes : unit)) {
        return -ENOMEM;
    }
    memset(buf, 0, bytes);
    for (uint32_t i = 0; i < q->l1_size; i++) {
        put_be64(buf + 8 * i, q->l1[i]);
    }
    r = q2_pwrite(q, buf, bytes, q->l1_offset);
    free(buf);
    if (r == 0) {
        q->l1_dirty = false;
    }
    return r;
}

int q2_writeback(struct qcow2 *q)
{
    bool synced = false;
    int r = 0;

    for (unsigned i = 0; i < q->l2_cache.n && r == 0; i++) {
        struct q2_table *t = &q->l2_cache.slots[i];

        if (t->offset && t->dirty) {
            r = write_table(q, t, synced);
            synced = true;
        }
    }
    if (r == 0 && q->l1_dirty) {
        r = q2_sync(q);
        if (r == 0) {
            r = write_l1(q);
        }
    }
    if (r == 0 && q->pending_n) {
        r = q2_sync(q);
        if (r == 0) {
            r = apply_releases(q);
        }
    }
    return r;
}
