// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 I/O paths.  A request is cut at cluster boundaries; runs that map
 * to contiguous host clusters become one asynchronous file I/O each, runs
 * that are unallocated read from the backing image (or as zeros).
 *
 * A write to a cluster that is not yet ours (unallocated, zero, compressed
 * or shared with a snapshot) allocates a new one: the parts of the cluster
 * the write does not cover are read first (copy-on-write), the whole
 * cluster is written, and only then does the L2 entry point to it.  While
 * that is in flight, other writes to the same clusters wait, so two writers
 * never allocate the same cluster.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "block/qcow2-int.h"
#include "util/guarded-copy.h"
#include "util/log.h"
#include "util/loop.h"

#define MAX_ALLOC_RUN_BYTES (8u << 20)

enum q2_op { Q2_READ, Q2_WRITE, Q2_ZERO, Q2_FLUSH };

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
    struct q2_req *next;            /* in the waiting list */
    /* Q2_ZERO: the byte ranges still to be written with zeros, in order. */
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

struct q2_alloc {
    struct qcow2 *q;
    struct q2_req *req;
    uint64_t first, count;          /* guest clusters */
    uint64_t host;
    uint64_t write_at;              /* where the write starts in the file */
    uint64_t head_len, tail_len;    /* bytes of the clusters copied from the old contents */
    uint64_t data_at, data_len;     /* the part of req's data it writes */
    uint8_t *head, *tail;
    struct q2_req cow[2];
    struct iovec cow_iov[2];
    unsigned pending;
    int result;
    struct blk_io io;
    struct iovec *wiov;
    struct q2_alloc *next;
};

static void dispatch(struct q2_req *req);

static struct loop *q_loop(const struct qcow2 *q)
{
    return blk_file_loop(q->file);
}

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

/* Drops one hold on req; the last one completes it, from the loop. */
static void req_put(struct q2_req *req)
{
    if (--req->pending == 0) {
        loop_bh_schedule(q_loop(req->q), &req->bh);
    }
}

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
    loop_bh_init(&req->bh, on_req_bh, req);
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

/* --- reading ------------------------------------------------------------- */

enum extent_kind { EXT_NONE, EXT_ZERO, EXT_DATA, EXT_BACKING, EXT_COMPRESSED };

struct extent {
    enum extent_kind kind;
    uint64_t at;        /* guest offset */
    uint64_t len;
    uint64_t host;      /* EXT_DATA: file offset; EXT_COMPRESSED: the L2 entry */
};

/* Reads a compressed cluster's bytes and inflates them into out (one cluster). */
static int inflate_cluster(struct qcow2 *q, uint64_t entry, uint8_t *out)
{
    uint64_t off, len, unit = q->file->align, start, span;
    uint8_t *raw;
    z_stream zs = { 0 };
    int64_t got;
    int r;

    q2_compressed_extent(q, entry, &off, &len);
    if (len > 2 * q->cluster_size + 512) {
        return -EIO;
    }
    start = off / unit * unit;
    span = (off + len - start + unit - 1) / unit * unit;
    if (posix_memalign((void **)&raw, 4096, span)) {
        return -ENOMEM;
    }
    /* The last compressed cluster may end past the end of the file: zeros there. */
    got = blk_file_pread(q->file, raw, span, start);
    if (got < 0 || (uint64_t)got <= off - start) {
        free(raw);
        return -EIO;
    }
    zs.next_in = raw + (off - start);
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
    free(raw);
    return r;
}

static void read_compressed(struct q2_req *req, const struct extent *e)
{
    struct qcow2 *q = req->q;
    uint8_t *cluster = malloc(q->cluster_size);
    int r;

    if (!cluster) {
        req_fail(req, -ENOMEM);
        return;
    }
    r = inflate_cluster(q, e->host, cluster);
    if (r == 0) {
        r = iov_from_buf(req->iov, req->iovcnt, e->at - req->offset,
                     cluster + (e->at & (q->cluster_size - 1)), e->len);
    }
    req_fail(req, r);
    free(cluster);
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

static int classify(struct qcow2 *q, uint64_t pos, struct extent *e)
{
    uint64_t entry = 0;
    int r = pos < q->size ? q2_l2_get(q, pos >> q->cluster_bits, &entry) : 0;

    if (r < 0) {
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

static void do_read(struct q2_req *req)
{
    struct qcow2 *q = req->q;
    struct extent cur = { .kind = EXT_NONE };
    uint64_t pos = req->offset, end = req->offset + req->len;

    while (pos < end) {
        uint64_t n = q->cluster_size - (pos & (q->cluster_size - 1));
        struct extent next = { .at = pos, .len = n < end - pos ? n : end - pos };
        int r = classify(q, pos, &next);

        if (r < 0) {
            req_fail(req, r);
            return;
        }
        if (cur.kind != EXT_NONE && extends(&cur, &next)) {
            cur.len += next.len;
        } else {
            issue_read(req, &cur);
            cur = next;
        }
        pos += next.len;
    }
    issue_read(req, &cur);
}

/* --- allocating writes ------------------------------------------------------ */

static bool overlaps_alloc(const struct qcow2 *q, uint64_t offset, uint64_t len)
{
    uint64_t first = offset >> q->cluster_bits;
    uint64_t last = (offset + (len ? len : 1) - 1) >> q->cluster_bits;

    for (const struct q2_alloc *a = q->allocs; a; a = a->next) {
        if (first < a->first + a->count && a->first <= last) {
            return true;
        }
    }
    return false;
}

static void wait_for_allocs(struct q2_req *req)
{
    struct qcow2 *q = req->q;

    req->next = NULL;
    if (q->waiting_tail) {
        q->waiting_tail->next = req;
    } else {
        q->waiting = req;
    }
    q->waiting_tail = req;
}

/* Gives every waiting request another go, in arrival order. */
static void wake_waiting(struct qcow2 *q)
{
    struct q2_req *list = q->waiting;

    q->waiting = q->waiting_tail = NULL;
    while (list) {
        struct q2_req *req = list;

        list = req->next;
        dispatch(req);
    }
}

static void alloc_unlink(struct q2_alloc *a)
{
    for (struct q2_alloc **p = &a->q->allocs; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            return;
        }
    }
}

/* Write-through caches want a changed mapping durable before the I/O completes. */
static int writeback_if_writethrough(struct qcow2 *q)
{
    bool writethrough = q->drive->cache == DRIVE_CACHE_WRITETHROUGH ||
                        q->drive->cache == DRIVE_CACHE_DIRECTSYNC;

    return writethrough ? q2_writeback(q) : 0;
}

static int point_l2_at_new_clusters(struct q2_alloc *a)
{
    struct qcow2 *q = a->q;
    int r = 0;

    for (uint64_t i = 0; i < a->count && r == 0; i++) {
        uint64_t old;

        r = q2_l2_get(q, a->first + i, &old);
        if (r == 0) {
            r = q2_l2_set(q, a->first + i,
                          (a->host + (i << q->cluster_bits)) | QCOW2_OFLAG_COPIED);
        }
        if (r == 0) {
            r = q2_release_entry(q, old);
        }
    }
    return r == 0 ? writeback_if_writethrough(q) : r;
}

static void alloc_finish(struct q2_alloc *a)
{
    struct q2_req *req = a->req;

    req_fail(req, a->result);
    alloc_unlink(a);
    free(a->head);
    free(a->tail);
    free(a->wiov);
    free(a);
    req_put(req);
    wake_waiting(req->q);
}

static void on_alloc_written(struct blk_io *io, int result)
{
    struct q2_alloc *a = io->opaque;

    if (result < 0) {
        a->result = result;     /* the clusters leak; the mapping stays as it was */
    } else {
        a->result = point_l2_at_new_clusters(a);
    }
    alloc_finish(a);
}

static void alloc_write(struct q2_alloc *a)
{
    struct q2_req *req = a->req;
    int n = 0;
    struct iovec *data;

    if (a->result < 0) {
        alloc_finish(a);
        return;
    }
    data = iov_slice(req->iov, req->iovcnt, a->data_at, a->data_len, &n);
    a->wiov = data ? calloc((size_t)n + 2, sizeof(*a->wiov)) : NULL;
    if (!a->wiov) {
        free(data);
        a->result = -ENOMEM;
        alloc_finish(a);
        return;
    }
    {
        int k = 0;

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
    }
    blk_file_submit(a->q->file, &a->io);
}

static void on_cow_read(struct q2_req *cow, int result)
{
    struct q2_alloc *a = cow->opaque;

    if (result < 0 && a->result == 0) {
        a->result = result;
    }
    if (--a->pending == 0) {
        alloc_write(a);
    }
}

/* Reads the old contents of guest bytes [at, at+len) into buf (copy-on-write). */
static void cow_read(struct q2_alloc *a, unsigned i, uint8_t *buf, uint64_t at, uint64_t len)
{
    a->cow_iov[i] = (struct iovec){ buf, len };
    req_init(&a->cow[i], a->q, Q2_READ, at, len, &a->cow_iov[i], 1, on_cow_read, a);
    a->pending++;
    a->cow[i].pending = 1;
    do_read(&a->cow[i]);
    req_put(&a->cow[i]);
}

static uint8_t *cow_buffer(uint64_t len)
{
    uint8_t *p;

    return posix_memalign((void **)&p, 4096, len) ? NULL : p;
}

/* Whether the old contents of a guest cluster are zeros, without reading them. */
static bool reads_as_zeros(struct qcow2 *q, uint64_t guest_cluster)
{
    uint64_t entry;

    if ((guest_cluster << q->cluster_bits) >= q->size) {
        return true;
    }
    if (q2_l2_get(q, guest_cluster, &entry) < 0 || (entry & QCOW2_OFLAG_COMPRESSED)) {
        return false;
    }
    return (entry & QCOW2_OFLAG_ZERO) || (!(entry & QCOW2_OFFSET_MASK) && !q->backing);
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
 * Writes req's guest bytes [at, at+len) into newly allocated clusters.
 * New clusters past the old end of the file read as zeros once the file
 * covers them: when the old contents were zeros too, only the data is
 * written.
 */
static void issue_alloc(struct qcow2 *q, struct q2_req *req, uint64_t at, uint64_t len)
{
    struct q2_alloc *a = calloc(1, sizeof(*a));
    uint64_t cs = q->cluster_size, end_before;
    bool copy;
    int64_t host;
    int r = 0;

    if (!a) {
        req_fail(req, -ENOMEM);
        return;
    }
    a->q = q;
    a->req = req;
    a->first = at >> q->cluster_bits;
    a->count = ((at + len + cs - 1) >> q->cluster_bits) - a->first;
    for (uint64_t i = 0; i < a->count && r == 0; i++) {
        r = q2_l2_prepare(q, a->first + i);
    }
    end_before = q->file_end;
    host = r < 0 ? r : q2_alloc_clusters(q, a->count);
    if (host < 0) {
        req_fail(req, (int)host);
        free(a);
        return;
    }
    copy = ((uint64_t)host >> q->cluster_bits) < end_before ||
           !reads_as_zeros(q, a->first) || !reads_as_zeros(q, a->first + a->count - 1);
    /* The file must reach the clusters' end for reads of their unwritten parts. */
    if (!copy) {
        copy = !cover_with_zeros(q, (uint64_t)host, a->count << q->cluster_bits);
    }
    a->host = (uint64_t)host;
    a->head_len = copy ? at & (cs - 1) : 0;
    a->tail_len = copy ? ((a->first + a->count) << q->cluster_bits) - (at + len) : 0;
    a->write_at = a->host + (copy ? 0 : at & (cs - 1));
    a->data_at = at - req->offset;
    a->data_len = len;
    a->next = q->allocs;
    q->allocs = a;
    req->pending++;
    a->pending = 1;
    if (a->head_len && !(a->head = cow_buffer(a->head_len))) {
        a->result = -ENOMEM;
    } else if (a->head_len) {
        cow_read(a, 0, a->head, a->first << q->cluster_bits, a->head_len);
    }
    if (a->tail_len && !(a->tail = cow_buffer(a->tail_len))) {
        a->result = -ENOMEM;
    } else if (a->tail_len) {
        cow_read(a, 1, a->tail, at + len, a->tail_len);
    }
    if (--a->pending == 0) {
        alloc_write(a);
    }
}

/* Whether a write to this cluster can go where it is: allocated and ours alone. */
static bool writable_in_place(uint64_t entry)
{
    return (entry & QCOW2_OFLAG_COPIED) && !(entry & QCOW2_OFLAG_COMPRESSED) &&
           !(entry & QCOW2_OFLAG_ZERO) && (entry & QCOW2_OFFSET_MASK);
}

static void do_write(struct q2_req *req)
{
    struct qcow2 *q = req->q;
    uint64_t pos = req->offset, end = req->offset + req->len;
    uint64_t run_at = 0, run_len = 0, data_at = 0, data_len = 0, data_host = 0;

    while (pos < end) {
        uint64_t n = q->cluster_size - (pos & (q->cluster_size - 1)), entry;
        int r = q2_l2_get(q, pos >> q->cluster_bits, &entry);

        n = n < end - pos ? n : end - pos;
        if (r < 0) {
            req_fail(req, r);
            break;
        }
        if (writable_in_place(entry)) {
            uint64_t host = (entry & QCOW2_OFFSET_MASK) + (pos & (q->cluster_size - 1));

            if (run_len) {
                issue_alloc(q, req, run_at, run_len);
                run_len = 0;
            }
            if (data_len && data_host + data_len != host) {
                sub_submit(req, NULL, BLK_WRITE, data_host, data_at - req->offset,
                           data_len);
                data_len = 0;
            }
            if (!data_len) {
                data_at = pos;
                data_host = host;
            }
            data_len += n;
        } else {
            if (data_len) {
                sub_submit(req, NULL, BLK_WRITE, data_host, data_at - req->offset,
                           data_len);
                data_len = 0;
            }
            if (run_len && run_len + n > MAX_ALLOC_RUN_BYTES) {
                issue_alloc(q, req, run_at, run_len);
                run_len = 0;
            }
            if (!run_len) {
                run_at = pos;
            }
            run_len += n;
        }
        pos += n;
    }
    if (data_len) {
        sub_submit(req, NULL, BLK_WRITE, data_host, data_at - req->offset, data_len);
    }
    if (run_len) {
        issue_alloc(q, req, run_at, run_len);
    }
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
    req->child->pending = 1;
    dispatch(req->child);
}

/* Whole clusters become zero clusters (v3, with a backing file) or unallocated. */
static int zero_clusters(struct qcow2 *q, uint64_t first, uint64_t count)
{
    uint64_t want = q->backing ? QCOW2_OFLAG_ZERO : 0;
    int r = 0;

    for (uint64_t c = first; c < first + count && r == 0; c++) {
        uint64_t old;

        r = q2_l2_get(q, c, &old);
        if (r < 0 || old == want || (!old && !q->backing)) {
            continue;
        }
        r = q2_l2_prepare(q, c);
        if (r == 0) {
            r = q2_l2_set(q, c, want);
        }
        if (r == 0) {
            r = q2_release_entry(q, old);
        }
    }
    return r == 0 ? writeback_if_writethrough(q) : r;
}

static void do_zero(struct q2_req *req)
{
    struct qcow2 *q = req->q;
    uint64_t cs = q->cluster_size, start = req->offset, end = req->offset + req->len;
    uint64_t first = (start + cs - 1) >> q->cluster_bits, last = end >> q->cluster_bits;
    int r;

    /* The disk's last cluster may be partial: covering up to the end covers it. */
    if (end == q->size && (end & (cs - 1))) {
        last++;
    }
    /* A v2 image cannot say "zero" over a backing file: write zeros there. */
    if (last <= first || (q->version < 3 && q->backing)) {
        req->zero_at[0] = start;
        req->zero_len[0] = req->len;
        req->zero_ranges = 1;
    } else {
        r = zero_clusters(q, first, last - first);
        if (r < 0) {
            req_fail(req, r);
            return;
        }
        req->zero_at[0] = start;
        req->zero_len[0] = (first << q->cluster_bits) - start;
        req->zero_at[1] = last << q->cluster_bits;
        req->zero_len[1] = req->zero_at[1] < end ? end - req->zero_at[1] : 0;
        req->zero_ranges = 2;
    }
    req->pending++;
    zero_next(req);
}

/* --- flush and dispatch --------------------------------------------------- */

static void do_flush(struct q2_req *req)
{
    struct q2_sub *sub;
    int r = q2_writeback(req->q);

    if (r < 0) {
        log_error("qcow2 '%s': writing back metadata: %s", req->q->drive->file, strerror(-r));
        req_fail(req, r);
        return;
    }
    if (!(sub = calloc(1, sizeof(*sub)))) {
        req_fail(req, -ENOMEM);
        return;
    }
    sub->req = req;
    sub->io = (struct blk_io){ .op = BLK_FLUSH, .done = on_sub_done, .opaque = sub };
    req->pending++;
    blk_file_submit(req->q->file, &sub->io);
}

/* Runs req, or parks it until the allocations it overlaps are done. */
static void dispatch(struct q2_req *req)
{
    if ((req->op == Q2_WRITE || req->op == Q2_ZERO) &&
        overlaps_alloc(req->q, req->offset, req->len)) {
        wait_for_allocs(req);
        return;
    }
    switch (req->op) {
    case Q2_READ:
        do_read(req);
        break;
    case Q2_WRITE:
        do_write(req);
        break;
    case Q2_ZERO:
        do_zero(req);
        break;
    case Q2_FLUSH:
        do_flush(req);
        break;
    }
    req_put(req);
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
        blk_io_fail(io, q_loop(q), -ENOMEM);
        return;
    }
    req_init(req, q, ops[io->op], io->offset, rw ? iov_size(io->iov, io->iovcnt) : io->len,
             io->iov, io->iovcnt, on_top_done, io);
    req->pending = 1;
    dispatch(req);
}
