// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 I/O paths.  A request is mapped cluster by cluster: runs that map
 * to contiguous host clusters become one asynchronous file I/O each, runs
 * that are unallocated read from the backing image (or as zeros).  When a
 * cluster's L2 table is not cached the mapping parks until it is loaded,
 * after issuing what it has mapped so far; a write or zeroing owns its
 * range meanwhile, so that no other decides about the same clusters.
 *
 * A write to a cluster that is not yet ours (unallocated, zero, compressed
 * or shared with a snapshot) allocates a new one (struct q2_alloc): the
 * lane makes the L2 table ours and counts the new clusters; the parts of
 * the clusters the write does not cover are read (copy-on-write), the
 * whole is written while a round writes the counts, and only when both
 * are done does the L2 entry point to it.  While that is in flight, other
 * writes to the same clusters wait, so two writers never allocate the same
 * cluster.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "block/qcow2-int.h"
#include "util/checkpoint.h"
#include "util/guarded-copy.h"
#include "util/log.h"
#include "util/loop.h"

#define MAX_ALLOC_RUN_BYTES (8u << 20)

enum q2_op { Q2_READ, Q2_WRITE, Q2_ZERO, Q2_FLUSH };

enum extent_kind { EXT_NONE, EXT_ZERO, EXT_DATA, EXT_BACKING, EXT_COMPRESSED };

struct extent {
    enum extent_kind kind;
    uint64_t at;        /* guest offset */
    uint64_t len;
    uint64_t host;      /* EXT_DATA: file offset; EXT_COMPRESSED: the L2 entry */
};

/* A guest range a write is about to allocate, with the old entries at its ends. */
struct alloc_run {
    uint64_t at, len;
    uint64_t first_entry, last_entry;
};

struct q2_req {
    struct qcow2 *q;
    enum q2_op op;
    uint64_t offset, len;
    struct iovec *iov;
    int iovcnt;
    void (*done)(struct q2_req *req, int result);
    void *opaque;
    unsigned pending;
    int result;
    struct loop_bh bh;
    struct q2_waiter busy_wait;     /* parked until a range it overlaps is free */
    /* Mapping: issues the request's pieces, parking while a table loads. */
    struct q2_task task;
    uint64_t pos;                   /* the next guest byte to map (cluster, when zeroing) */
    struct extent cur;              /* a read's run not yet issued */
    struct extent data;             /* a write's in-place run not yet issued */
    struct alloc_run run;           /* a write's run to allocate, not yet issued */
    struct q2_range busy;           /* a write's or zeroing's, while it maps */
    bool busy_held, flushed;
    /* Q2_ZERO: a table made ours; then the byte ranges still to be written with zeros. */
    struct q2_l2_prepare prep;
    struct q2_job job;
    bool zeroing, preparing, zeroed;
    uint64_t zero_at[2], zero_len[2];
    unsigned zero_ranges, zero_next;
    struct iovec zero_iov;
    struct q2_req *child;
};

/* One file or backing I/O of a request. */
struct q2_sub {
    struct blk_io io;
    struct q2_req *req;
    struct iovec *iov;
};

enum { ALLOC_RESERVE, ALLOC_LANE, ALLOC_DATA, ALLOC_MAP, ALLOC_WRITETHROUGH };

struct q2_alloc {
    struct qcow2 *q;
    struct q2_req *req;
    struct q2_range range;          /* guest clusters */
    struct q2_task task;
    int phase;
    struct q2_job job;
    struct q2_l2_prepare prep;
    bool prepared;
    struct q2_cluster_alloc clusters;
    uint64_t end_before;            /* the file's end before the clusters were taken */
    bool old_zeros;                 /* the old contents at both ends read as zeros */
    uint64_t host;
    uint64_t write_at;              /* where the write starts in the file */
    uint64_t head_len, tail_len;    /* bytes of the clusters copied from the old contents */
    uint64_t data_at, data_len;     /* the part of req's data it writes */
    uint8_t *head, *tail;
    struct q2_req cow[2];
    struct iovec cow_iov[2];
    unsigned cow_pending;
    int cow_result;
    unsigned parts;                 /* the data write and the round, in flight */
    int parts_result;
    struct q2_waiter round_wait;
    struct blk_io io;
    struct iovec *wiov;
    uint64_t mapped;                /* clusters whose L2 entry points at the new ones */
};

static void dispatch(struct q2_req *req);

/* --- iovec helpers --------------------------------------------------------- */

/* The iovecs covering bytes [off, off+len) of iov; NULL if out of memory. */
static struct iovec *iov_slice(const struct iovec *iov, int n, uint64_t off, uint64_t len,
                               int *out_n)
{
    struct iovec *out = calloc((size_t)n + 2, sizeof(*out));
    int k = 0;

    if (!out) {
        return NULL;
    }
    for (int i = 0; i < n && len; i++) {
        uint64_t take;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        take = iov[i].iov_len - off < len ? iov[i].iov_len - off : len;
        out[k].iov_base = (uint8_t *)iov[i].iov_base + off;
        out[k].iov_len = take;
        k++;
        len -= take;
        off = 0;
    }
    *out_n = k;
    return out;
}

/* --- request bookkeeping ------------------------------------------------- */

static void on_req_bh(void *opaque)
{
    struct q2_req *req = opaque;

    req->done(req, req->result);
}

static void req_fail(struct q2_req *req, int r)
{
    if (r < 0 && req->result == 0) {
        req->result = r;
    }
}

/* Drops one hold on req; the last one completes it, from the loop (or a drain). */
static void req_put(struct q2_req *req)
{
    if (--req->pending == 0) {
        aio_defer(req->q->file->aio, &req->bh);
    }
}

static int req_step(struct q2_task *t);
static void req_mapped(struct q2_task *t, int result);
static void on_busy_free(struct q2_waiter *w, int result);

static void req_init(struct q2_req *req, struct qcow2 *q, enum q2_op op, uint64_t offset,
                     uint64_t len, struct iovec *iov, int iovcnt,
                     void (*done)(struct q2_req *, int), void *opaque)
{
    memset(req, 0, sizeof(*req));
    req->q = q;
    req->op = op;
    req->offset = offset;
    req->len = len;
    req->iov = iov;
    req->iovcnt = iovcnt;
    req->done = done;
    req->opaque = opaque;
    req->pos = offset;
    req->pending = 1;       /* the mapping's hold */
    loop_bh_init(&req->bh, on_req_bh, req);
    req->busy_wait.resume = on_busy_free;
    q2_task_init(&req->task, req_step, req_mapped);
}

static void on_sub_done(struct blk_io *io, int result)
{
    struct q2_sub *sub = io->opaque;
    struct q2_req *req = sub->req;

    req_fail(req, result);
    free(sub->iov);
    free(sub);
    req_put(req);
}

/*
 * Starts a read or write of req's bytes [at, at+len) at 'offset' of the
 * file layer below, or of the backing image when one is given.
 */
static void sub_submit(struct q2_req *req, struct drive *backing, enum blk_op op,
                       uint64_t offset, uint64_t at, uint64_t len)
{
    struct q2_sub *sub = calloc(1, sizeof(*sub));
    int n = 0;

    if (!sub || !(sub->iov = iov_slice(req->iov, req->iovcnt, at, len, &n))) {
        free(sub);
        req_fail(req, -ENOMEM);
        return;
    }
    sub->req = req;
    sub->io = (struct blk_io){ .op = op, .offset = offset, .iov = sub->iov, .iovcnt = n,
                               .done = on_sub_done, .opaque = sub };
    req->pending++;
    if (backing) {
        drive_submit(backing, &sub->io);
    } else {
        blk_file_submit(req->q->file, &sub->io);
    }
}

/* --- owned ranges ----------------------------------------------------------- */

static bool overlaps_busy(const struct qcow2 *q, uint64_t offset, uint64_t len)
{
    uint64_t first = offset >> q->cluster_bits;
    uint64_t last = (offset + (len ? len : 1) - 1) >> q->cluster_bits;

    for (const struct q2_range *b = q->busy; b; b = b->next) {
        if (first < b->first + b->count && b->first <= last) {
            return true;
        }
    }
    return false;
}

static void busy_add(struct qcow2 *q, struct q2_range *b, uint64_t first, uint64_t count)
{
    b->first = first;
    b->count = count;
    b->next = q->busy;
    q->busy = b;
}

static void busy_remove(struct qcow2 *q, struct q2_range *b)
{
    for (struct q2_range **p = &q->busy; *p; p = &(*p)->next) {
        if (*p == b) {
            *p = b->next;
            return;
        }
    }
}

static void on_busy_free(struct q2_waiter *w, int result)
{
    (void)result;
    dispatch(Q2_OF(w, struct q2_req, busy_wait));
}

/* Gives every request that waits for a busy range another go, in arrival order. */
static void wake_waiting(struct qcow2 *q)
{
    q2_wake_all(&q->busy_waiters, 0);
}

/* --- reading ------------------------------------------------------------- */

/* A compressed cluster being read: its bytes, then inflated into the request. */
struct inflate_read {
    struct q2_meta_io m;
    struct q2_req *req;
    struct extent e;
    uint8_t *raw;
    uint64_t skip, len;             /* where the compressed bytes are in raw */
};

static int inflate_cluster(struct qcow2 *q, const uint8_t *in, uint64_t len, uint8_t *out)
{
    z_stream zs = { 0 };
    int r;

    zs.next_in = (uint8_t *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)q->cluster_size;
    r = inflateInit2(&zs, -12) == Z_OK ? 0 : -ENOMEM;
    if (r == 0) {
        int z = inflate(&zs, Z_FINISH);

        if ((z != Z_STREAM_END && z != Z_BUF_ERROR) || zs.avail_out != 0) {
            log_error("qcow2 '%s': a compressed cluster does not inflate", q->drive->file);
            r = -EIO;
        }
        inflateEnd(&zs);
    }
    return r;
}

static void on_compressed_read(struct q2_meta_io *m, int result)
{
    struct inflate_read *ir = Q2_OF(m, struct inflate_read, m);
    struct q2_req *req = ir->req;
    struct qcow2 *q = req->q;
    uint8_t *cluster = result < 0 ? NULL : malloc(q->cluster_size);

    if (result == 0 && !cluster) {
        result = -ENOMEM;
    }
    if (result == 0) {
        result = inflate_cluster(q, ir->raw + ir->skip, ir->len, cluster);
    }
    if (result == 0) {
        result = iov_from_buf(req->iov, req->iovcnt, ir->e.at - req->offset,
                              cluster + (ir->e.at & (q->cluster_size - 1)), ir->e.len);
    }
    req_fail(req, result);
    free(cluster);
    free(ir->raw);
    free(ir);
    req_put(req);
}

static void read_compressed(struct q2_req *req, const struct extent *e)
{
    struct qcow2 *q = req->q;
    struct inflate_read *ir;
    uint64_t off, len, unit = q->file->align ? q->file->align : 1, start, span;
    int r;

    q2_compressed_extent(q, e->host, &off, &len);
    if (len > 2 * q->cluster_size + 512) {
        req_fail(req, -EIO);
        return;
    }
    start = off / unit * unit;
    span = (off + len - start + unit - 1) / unit * unit;
    if (!(ir = calloc(1, sizeof(*ir))) || posix_memalign((void **)&ir->raw, 4096, span)) {
        free(ir);
        req_fail(req, -ENOMEM);
        return;
    }
    *ir = (struct inflate_read){ .req = req, .e = *e, .raw = ir->raw, .skip = off - start,
                                 .len = len };
    /* The last compressed cluster may end past the end of the file: zeros there. */
    r = q2_meta_read(q, &ir->m, ir->raw, span, start, on_compressed_read);
    if (r < 0) {
        free(ir->raw);
        free(ir);
        req_fail(req, r);
        return;
    }
    req->pending++;
}

static void read_backing(struct q2_req *req, const struct extent *e)
{
    uint64_t bsize = req->q->backing->size, in = 0;

    if (e->at < bsize) {
        in = bsize - e->at < e->len ? bsize - e->at : e->len;
        sub_submit(req, req->q->backing, BLK_READ, e->at, e->at - req->offset, in);
    }
    if (in < e->len) {
        req_fail(req, iov_from_buf(req->iov, req->iovcnt, e->at + in - req->offset, NULL,
                               e->len - in));
    }
}

static void issue_read(struct q2_req *req, const struct extent *e)
{
    switch (e->kind) {
    case EXT_ZERO:
        req_fail(req, iov_from_buf(req->iov, req->iovcnt, e->at - req->offset, NULL, e->len));
        break;
    case EXT_DATA:
        sub_submit(req, NULL, BLK_READ, e->host, e->at - req->offset, e->len);
        break;
    case EXT_BACKING:
        read_backing(req, e);
        break;
    case EXT_COMPRESSED:
        read_compressed(req, e);
        break;
    case EXT_NONE:
        break;
    }
}

static int classify(struct q2_req *req, uint64_t pos, struct extent *e)
{
    struct qcow2 *q = req->q;
    uint64_t entry = 0;
    int r = pos < q->size ? q2_l2_get(q, pos >> q->cluster_bits, &entry, &req->task.wait) : 0;

    if (r) {
        return r;
    }
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        e->kind = EXT_COMPRESSED;
        e->host = entry;
    } else if ((entry & QCOW2_OFLAG_ZERO) || pos >= q->size) {
        e->kind = EXT_ZERO;
    } else if (entry & QCOW2_OFFSET_MASK) {
        e->kind = EXT_DATA;
        e->host = (entry & QCOW2_OFFSET_MASK) + (pos & (q->cluster_size - 1));
    } else {
        e->kind = q->backing ? EXT_BACKING : EXT_ZERO;
    }
    return 0;
}

static bool extends(const struct extent *cur, const struct extent *next)
{
    return cur->kind == next->kind && cur->kind != EXT_COMPRESSED &&
           (cur->kind != EXT_DATA || cur->host + cur->len == next->host);
}

/* The extent of one cluster (or less, at the request's ends) at pos. */
static struct extent cluster_piece(const struct q2_req *req, uint64_t pos)
{
    uint64_t n = req->q->cluster_size - (pos & (req->q->cluster_size - 1));
    uint64_t end = req->offset + req->len;

    return (struct extent){ .at = pos, .len = n < end - pos ? n : end - pos };
}

static int read_step(struct q2_req *req)
{
    uint64_t end = req->offset + req->len;

    while (req->pos < end) {
        struct extent next = cluster_piece(req, req->pos);
        int r = classify(req, req->pos, &next);

        if (r == Q2_PARKED) {
            /* What is mapped goes now; the rest once the table is here. */
            issue_read(req, &req->cur);
            req->cur.kind = EXT_NONE;
        }
        if (r) {
            return r;
        }
        if (req->cur.kind != EXT_NONE && extends(&req->cur, &next)) {
            req->cur.len += next.len;
        } else {
            issue_read(req, &req->cur);
            req->cur = next;
        }
        req->pos += next.len;
    }
    issue_read(req, &req->cur);
    req->cur.kind = EXT_NONE;
    return 0;
}

/* --- allocating writes ------------------------------------------------------ */

/*
 * Whether a changed mapping must be written back before the I/O completes:
 * write-through caches want it durable.  So does a device process a keeper
 * may restart under the running guest (docs/restart.md): the guest goes on
 * after a kill and must find what it was told was written, and a mapping
 * only in our table cache dies with us.
 */
static bool writethrough(const struct qcow2 *q)
{
    return q->drive->cache == DRIVE_CACHE_WRITETHROUGH ||
           q->drive->cache == DRIVE_CACHE_DIRECTSYNC || checkpoint_is_open();
}

/* Whether the old contents of a cluster with this entry are zeros, without reading them. */
static bool reads_as_zeros(const struct qcow2 *q, uint64_t entry)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        return false;
    }
    return (entry & QCOW2_OFLAG_ZERO) || (!(entry & QCOW2_OFFSET_MASK) && !q->backing);
}

static void alloc_part_done(struct q2_alloc *a, int result)
{
    if (result < 0 && !a->parts_result) {
        a->parts_result = result;   /* the clusters leak; the mapping stays as it was */
    }
    if (--a->parts == 0) {
        a->task.wait.resume(&a->task.wait, a->parts_result);
    }
}

static void on_alloc_written(struct blk_io *io, int result)
{
    alloc_part_done(io->opaque, result);
}

static void on_alloc_counted(struct q2_waiter *w, int result)
{
    alloc_part_done(Q2_OF(w, struct q2_alloc, round_wait), result);
}

static void alloc_write(struct q2_alloc *a)
{
    struct q2_req *req = a->req;
    int n = 0, k = 0;
    struct iovec *data;

    if (a->cow_result < 0) {
        alloc_part_done(a, a->cow_result);
        return;
    }
    data = iov_slice(req->iov, req->iovcnt, a->data_at, a->data_len, &n);
    a->wiov = data ? calloc((size_t)n + 2, sizeof(*a->wiov)) : NULL;
    if (!a->wiov) {
        free(data);
        alloc_part_done(a, -ENOMEM);
        return;
    }
    if (a->head_len) {
        a->wiov[k++] = (struct iovec){ a->head, a->head_len };
    }
    memcpy(a->wiov + k, data, (size_t)n * sizeof(*data));
    k += n;
    if (a->tail_len) {
        a->wiov[k++] = (struct iovec){ a->tail, a->tail_len };
    }
    free(data);
    a->io = (struct blk_io){ .op = BLK_WRITE, .offset = a->write_at, .iov = a->wiov,
                             .iovcnt = k, .done = on_alloc_written, .opaque = a };
    blk_file_submit(a->q->file, &a->io);
}

static void on_cow_read(struct q2_req *cow, int result)
{
    struct q2_alloc *a = cow->opaque;

    if (result < 0 && a->cow_result == 0) {
        a->cow_result = result;
    }
    if (--a->cow_pending == 0) {
        alloc_write(a);
    }
}

static void start_mapping(struct q2_req *req)
{
    q2_task_run(&req->task);
}

/* Reads the old contents of guest bytes [at, at+len) into buf (copy-on-write). */
static void cow_read(struct q2_alloc *a, unsigned i, uint8_t *buf, uint64_t at, uint64_t len)
{
    a->cow_iov[i] = (struct iovec){ buf, len };
    req_init(&a->cow[i], a->q, Q2_READ, at, len, &a->cow_iov[i], 1, on_cow_read, a);
    a->cow_pending++;
    start_mapping(&a->cow[i]);
}

static uint8_t *cow_buffer(uint64_t len)
{
    uint8_t *p;

    return posix_memalign((void **)&p, 4096, len) ? NULL : p;
}

/*
 * Makes the file cover new clusters, as zeros, without writing them.  Never
 * shrinks the file (writes may be extending it at the same time); false
 * when the filesystem cannot do it.
 */
static bool cover_with_zeros(struct qcow2 *q, uint64_t offset, uint64_t len)
{
    return blk_file_allocate(q->file, offset, len) == 0;
}

/*
 * The new clusters are counted: the write (with the old contents around
 * it) goes to them while a round writes their counts.  New clusters past
 * the old end of the file read as zeros once the file covers them: when
 * the old contents were zeros too, only the data is written.
 */
static void alloc_write_data(struct q2_alloc *a)
{
    struct qcow2 *q = a->q;
    struct q2_req *req = a->req;
    uint64_t cs = q->cluster_size, at = req->offset + a->data_at, len = a->data_len;
    bool copy = (a->host >> q->cluster_bits) < a->end_before || !a->old_zeros;
    int r;

    /* The file must reach the clusters' end for reads of their unwritten parts. */
    if (!copy) {
        copy = !cover_with_zeros(q, a->host, a->range.count << q->cluster_bits);
    }
    a->head_len = copy ? at & (cs - 1) : 0;
    a->tail_len = copy ? ((a->range.first + a->range.count) << q->cluster_bits) - (at + len) : 0;
    a->write_at = a->host + (copy ? 0 : at & (cs - 1));
    a->parts = 2;
    a->round_wait.resume = on_alloc_counted;
    r = q2_round_wait(q, &a->round_wait);
    if (r != Q2_PARKED) {
        alloc_part_done(a, r);
    }
    a->cow_pending = 1;
    if (a->head_len && !(a->head = cow_buffer(a->head_len))) {
        a->cow_result = -ENOMEM;
    } else if (a->head_len) {
        cow_read(a, 0, a->head, a->range.first << q->cluster_bits, a->head_len);
    }
    if (a->tail_len && !(a->tail = cow_buffer(a->tail_len))) {
        a->cow_result = -ENOMEM;
    } else if (a->tail_len) {
        cow_read(a, 1, a->tail, at + len, a->tail_len);
    }
    if (--a->cow_pending == 0) {
        alloc_write(a);
    }
}

/* The L2 entries point at the new clusters; what they held is released later. */
static int point_l2_at_new_clusters(struct q2_alloc *a)
{
    struct qcow2 *q = a->q;

    for (; a->mapped < a->range.count; a->mapped++) {
        uint64_t c = a->range.first + a->mapped, old;
        int r;

        if ((r = q2_l2_get(q, c, &old, &a->task.wait)) != 0 ||
            (r = q2_l2_set(q, c, (a->host + (a->mapped << q->cluster_bits)) |
                                 QCOW2_OFLAG_COPIED, &a->task.wait)) != 0 ||
            (r = q2_release_entry(q, old)) < 0) {
            return r;
        }
    }
    return 0;
}

/* In the lane: the L2 table made ours, then the new clusters counted. */
static int alloc_job_step(struct q2_job *job)
{
    struct q2_alloc *a = Q2_OF(job, struct q2_alloc, job);
    int r;

    if (!a->prepared) {
        if ((r = q2_l2_prepare_step(job, &a->prep)) != 0) {
            return r;
        }
        a->prepared = true;
        a->end_before = a->q->file_end;
        q2_cluster_alloc_init(&a->clusters, a->range.count);
    }
    return q2_cluster_alloc_step(job, &a->clusters);
}

static void alloc_job_done(struct q2_job *job, int result)
{
    struct q2_alloc *a = Q2_OF(job, struct q2_alloc, job);

    a->phase = ALLOC_DATA;
    a->task.wait.resume(&a->task.wait, result);
}

static int alloc_step(struct q2_task *t)
{
    struct q2_alloc *a = Q2_OF(t, struct q2_alloc, task);
    struct qcow2 *q = a->q;
    int r;

    switch (a->phase) {
    case ALLOC_RESERVE:
        if ((r = q2_l2_prepare_begin(q, &a->prep, a->range.first, &t->wait)) != 0) {
            return r;
        }
        a->phase = ALLOC_LANE;
        q2_lane_submit(q, &a->job, alloc_job_step, alloc_job_done);
        return Q2_PARKED;
    case ALLOC_LANE:
        return Q2_PARKED;   /* woken by a slot: the lane's turn comes by itself */
    case ALLOC_DATA:
        a->phase = ALLOC_MAP;
        a->host = a->clusters.start << q->cluster_bits;
        alloc_write_data(a);
        return Q2_PARKED;
    case ALLOC_MAP:
        if ((r = point_l2_at_new_clusters(a)) != 0) {
            return r;
        }
        a->phase = ALLOC_WRITETHROUGH;
        /* A write-through cache, or a keeper's process, wants the mapping written first. */
        return writethrough(q) ? q2_writeback_wait(q, &t->wait) : 0;
    default:
        return 0;
    }
}

static void alloc_finish(struct q2_task *t, int result)
{
    struct q2_alloc *a = Q2_OF(t, struct q2_alloc, task);
    struct q2_req *req = a->req;
    struct qcow2 *q = a->q;

    req_fail(req, result);
    busy_remove(q, &a->range);
    q2_l2_prepare_end(q, &a->prep);
    q2_cluster_alloc_cleanup(q, &a->clusters);
    free(a->head);
    free(a->tail);
    free(a->wiov);
    free(a);
    req_put(req);
    wake_waiting(q);
}

/* Writes req's guest bytes [run->at, +len) into newly allocated clusters. */
static void issue_alloc(struct q2_req *req, const struct alloc_run *run)
{
    struct qcow2 *q = req->q;
    struct q2_alloc *a = calloc(1, sizeof(*a));
    uint64_t first = run->at >> q->cluster_bits;

    if (!a) {
        req_fail(req, -ENOMEM);
        return;
    }
    a->q = q;
    a->req = req;
    busy_add(q, &a->range, first,
             ((run->at + run->len + q->cluster_size - 1) >> q->cluster_bits) - first);
    a->old_zeros = reads_as_zeros(q, run->first_entry) && reads_as_zeros(q, run->last_entry);
    a->data_at = run->at - req->offset;
    a->data_len = run->len;
    req->pending++;
    q2_task_init(&a->task, alloc_step, alloc_finish);
    q2_task_run(&a->task);
}

/* Whether a write to this cluster can go where it is: allocated and ours alone. */
static bool writable_in_place(uint64_t entry)
{
    return (entry & QCOW2_OFLAG_COPIED) && !(entry & QCOW2_OFLAG_COMPRESSED) &&
           !(entry & QCOW2_OFLAG_ZERO) && (entry & QCOW2_OFFSET_MASK);
}

/* Whether the run to allocate may take n more bytes: one L2 table, one refcount block's span. */
static bool run_takes(const struct qcow2 *q, const struct alloc_run *run, uint64_t n)
{
    uint64_t first = run->at >> q->cluster_bits;
    uint64_t last = (run->at + run->len + n - 1) >> q->cluster_bits;

    return run->len + n <= MAX_ALLOC_RUN_BYTES && last - first < q2_max_alloc_clusters(q) &&
           (first >> q->l2_bits) == (last >> q->l2_bits);
}

static void issue_data(struct q2_req *req)
{
    if (req->data.len) {
        sub_submit(req, NULL, BLK_WRITE, req->data.host, req->data.at - req->offset,
                   req->data.len);
        req->data.len = 0;
    }
}

static void issue_run(struct q2_req *req)
{
    if (req->run.len) {
        issue_alloc(req, &req->run);
        req->run.len = 0;
    }
}

/* One cluster's piece of a write: in place, or added to the run to allocate. */
static void write_piece(struct q2_req *req, const struct extent *piece, uint64_t entry)
{
    struct qcow2 *q = req->q;

    if (writable_in_place(entry)) {
        uint64_t host = (entry & QCOW2_OFFSET_MASK) + (piece->at & (q->cluster_size - 1));

        issue_run(req);
        if (req->data.len && req->data.host + req->data.len != host) {
            issue_data(req);
        }
        if (!req->data.len) {
            req->data = (struct extent){ .at = piece->at, .host = host };
        }
        req->data.len += piece->len;
        return;
    }
    issue_data(req);
    if (req->run.len && !run_takes(q, &req->run, piece->len)) {
        issue_run(req);
    }
    if (!req->run.len) {
        req->run = (struct alloc_run){ .at = piece->at, .first_entry = entry };
    }
    req->run.len += piece->len;
    req->run.last_entry = entry;
}

static int write_step(struct q2_req *req)
{
    struct qcow2 *q = req->q;
    uint64_t end = req->offset + req->len;
    int r = 0;

    while (req->pos < end) {
        struct extent piece = cluster_piece(req, req->pos);
        uint64_t entry;

        if ((r = q2_l2_get(q, req->pos >> q->cluster_bits, &entry, &req->task.wait)) != 0) {
            break;
        }
        write_piece(req, &piece, entry);
        req->pos += piece.len;
    }
    /* What is mapped goes now (also before a park, or after an error). */
    issue_data(req);
    issue_run(req);
    return r;
}

/* --- zeroing and discard ------------------------------------------------ */

static void zero_next(struct q2_req *req);

static void on_zero_chunk(struct q2_req *child, int result)
{
    struct q2_req *req = child->opaque;

    req_fail(req, result);
    free(child);
    req->child = NULL;
    if (req->result < 0) {
        req_put(req);
    } else {
        zero_next(req);
    }
}

/* Writes the next chunk of zeros, one at a time; the last one drops the hold. */
static void zero_next(struct q2_req *req)
{
    struct qcow2 *q = req->q;
    uint64_t at, len;

    while (req->zero_next < req->zero_ranges && req->zero_len[req->zero_next] == 0) {
        req->zero_next++;
    }
    if (req->zero_next == req->zero_ranges) {
        req_put(req);
        return;
    }
    at = req->zero_at[req->zero_next];
    len = req->zero_len[req->zero_next] < Q2_ZERO_CHUNK ? req->zero_len[req->zero_next]
                                                         : Q2_ZERO_CHUNK;
    req->zero_at[req->zero_next] += len;
    req->zero_len[req->zero_next] -= len;
    if (!q->zeros && !(q->zeros = calloc(1, Q2_ZERO_CHUNK))) {
        req_fail(req, -ENOMEM);
        req_put(req);
        return;
    }
    req->zero_iov = (struct iovec){ q->zeros, len };
    if (!(req->child = malloc(sizeof(*req->child)))) {
        req_fail(req, -ENOMEM);
        req_put(req);
        return;
    }
    req_init(req->child, q, Q2_WRITE, at, len, &req->zero_iov, 1, on_zero_chunk, req);
    dispatch(req->child);
}

static int zero_prepare_step(struct q2_job *job)
{
    return q2_l2_prepare_step(job, &Q2_OF(job, struct q2_req, job)->prep);
}

static void zero_prepare_done(struct q2_job *job, int result)
{
    struct q2_req *req = Q2_OF(job, struct q2_req, job);

    q2_l2_prepare_end(req->q, &req->prep);
    req->preparing = false;
    req->task.wait.resume(&req->task.wait, result);
}

/* The L2 table of cluster c made ours, through the lane: 0, Q2_PARKED, -errno. */
static int zero_make_ours(struct q2_req *req, uint64_t c)
{
    struct qcow2 *q = req->q;
    int r;

    if (q2_l2_is_ours(q, c)) {
        return 0;
    }
    if (req->preparing) {
        return Q2_PARKED;
    }
    if ((r = q2_l2_prepare_begin(q, &req->prep, c, &req->task.wait)) != 0) {
        return r;
    }
    req->preparing = true;
    q2_lane_submit(q, &req->job, zero_prepare_step, zero_prepare_done);
    return Q2_PARKED;
}

/* Whole clusters [req->pos, last) become zero clusters (v3, with a backing file) or unallocated. */
static int zero_clusters(struct q2_req *req, uint64_t last)
{
    struct qcow2 *q = req->q;
    uint64_t want = q->backing ? QCOW2_OFLAG_ZERO : 0;

    for (; req->pos < last; req->pos++) {
        uint64_t old;
        int r = q2_l2_get(q, req->pos, &old, &req->task.wait);

        if (r) {
            return r;
        }
        if (old == want || (!old && !q->backing)) {
            continue;
        }
        if ((r = zero_make_ours(req, req->pos)) != 0 ||
            (r = q2_l2_set(q, req->pos, want, &req->task.wait)) != 0 ||
            (r = q2_release_entry(q, old)) < 0) {
            return r;
        }
    }
    return 0;
}

static int zero_step(struct q2_req *req)
{
    struct qcow2 *q = req->q;
    uint64_t cs = q->cluster_size, start = req->offset, end = req->offset + req->len;
    uint64_t first = (start + cs - 1) >> q->cluster_bits, last = end >> q->cluster_bits;
    int r;

    if (req->zeroed) {
        return 0;           /* back from the write-through writeback */
    }
    /* The disk's last cluster may be partial: covering up to the end covers it. */
    if (end == q->size && (end & (cs - 1))) {
        last++;
    }
    /* A v2 image cannot say "zero" over a backing file: write zeros there. */
    if (last <= first || (q->version < 3 && q->backing)) {
        req->zero_at[0] = start;
        req->zero_len[0] = req->len;
        req->zero_ranges = 1;
        return 0;
    }
    if (!req->zeroing) {
        req->zeroing = true;
        req->pos = first;           /* from here on, a cluster */
    }
    if ((r = zero_clusters(req, last)) != 0) {
        return r;
    }
    req->zero_at[0] = start;
    req->zero_len[0] = (first << q->cluster_bits) - start;
    req->zero_at[1] = last << q->cluster_bits;
    req->zero_len[1] = req->zero_at[1] < end ? end - req->zero_at[1] : 0;
    req->zero_ranges = 2;
    req->zeroed = true;
    return writethrough(q) ? q2_writeback_wait(q, &req->task.wait) : 0;
}

/* --- flush and dispatch --------------------------------------------------- */

static int flush_step(struct q2_req *req)
{
    struct q2_sub *sub;
    int r;

    if (!req->flushed) {
        req->flushed = true;
        if ((r = q2_writeback_wait(req->q, &req->task.wait)) != 0) {
            return r;
        }
    }
    if (!(sub = calloc(1, sizeof(*sub)))) {
        return -ENOMEM;
    }
    sub->req = req;
    sub->io = (struct blk_io){ .op = BLK_FLUSH, .done = on_sub_done, .opaque = sub };
    req->pending++;
    blk_file_submit(req->q->file, &sub->io);
    return 0;
}

static int req_step(struct q2_task *t)
{
    struct q2_req *req = Q2_OF(t, struct q2_req, task);

    switch (req->op) {
    case Q2_READ:
        return read_step(req);
    case Q2_WRITE:
        return write_step(req);
    case Q2_ZERO:
        return zero_step(req);
    default:
        return flush_step(req);
    }
}

/* Everything of the request is issued (or it failed): its range is free for others. */
static void req_mapped(struct q2_task *t, int result)
{
    struct q2_req *req = Q2_OF(t, struct q2_req, task);
    struct qcow2 *q = req->q;

    req_fail(req, result);
    if (req->busy_held) {
        busy_remove(q, &req->busy);
        req->busy_held = false;
        wake_waiting(q);
    }
    if (req->op == Q2_ZERO && result == 0 && req->zero_ranges) {
        req->pending++;
        zero_next(req);
    }
    req_put(req);
}

/* Maps req, or parks it until the ranges it overlaps are free. */
static void dispatch(struct q2_req *req)
{
    struct qcow2 *q = req->q;

    if (req->op == Q2_WRITE || req->op == Q2_ZERO) {
        if (overlaps_busy(q, req->offset, req->len)) {
            q2_wait_add(&q->busy_waiters, &req->busy_wait);
            return;
        }
        busy_add(q, &req->busy, req->offset >> q->cluster_bits,
                 ((req->offset + (req->len ? req->len : 1) - 1) >> q->cluster_bits) -
                 (req->offset >> q->cluster_bits) + 1);
        req->busy_held = true;
    }
    start_mapping(req);
}

static void on_top_done(struct q2_req *req, int result)
{
    struct blk_io *io = req->opaque;

    free(req);
    io->done(io, result);
}

void q2_submit(struct qcow2 *q, struct blk_io *io)
{
    static const enum q2_op ops[] = {
        [BLK_READ] = Q2_READ, [BLK_WRITE] = Q2_WRITE, [BLK_FLUSH] = Q2_FLUSH,
        [BLK_DISCARD] = Q2_ZERO, [BLK_WRITE_ZEROES] = Q2_ZERO,
    };
    struct q2_req *req = malloc(sizeof(*req));
    bool rw = io->op == BLK_READ || io->op == BLK_WRITE;

    if (!req) {
        blk_io_fail(io, q->file->aio, -ENOMEM);
        return;
    }
    req_init(req, q, ops[io->op], io->offset, rw ? iov_size(io->iov, io->iovcnt) : io->len,
             io->iov, io->iovcnt, on_top_done, io);
    dispatch(req);
}
