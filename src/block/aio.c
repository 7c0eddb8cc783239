// SPDX-License-Identifier: GPL-2.0-or-later
#include "block/aio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/error.h"
#include "util/guarded-copy.h"
#include "util/log.h"
#include "util/loop.h"

/* Requests in line, first to last (linked through their next). */
struct aio_queue {
    struct aio_request *head, *tail;
};

struct aio_engine {
    struct io_uring ring;
    struct loop *loop;
    struct loop_watch watch;    /* on the ring's fd */
    struct loop_bh submit_bh;
    unsigned depth;
    unsigned in_kernel;
    unsigned ring_writers;      /* writes, discards and zeroings of those in the ring */
    unsigned queued;
    struct aio_queue waiting;           /* for a slot in the ring */
    struct aio_queue made;              /* writes the loop made, to complete */
    struct aio_drainer *drainers;
    struct loop_bh_list deferred;       /* aio_defer()'s */
    struct loop_bh deferred_bh;
    unsigned holds;
    struct aio_inline_policy inline_policy;
    uint64_t inline_resume_ns;          /* after a slow inline write: not before this */
    uint64_t inline_backoff_ns;         /* the last backoff's length */
    struct aio_counts counts;
};

/*
 * Small buffered writes are made by the loop itself.  ext4 (and others)
 * take no write without blocking, so io_uring hands each to an io-wq
 * worker: two thread wakeups, which cost more here than the copy into the
 * page cache (4 KiB writes at QD1: 48 -> 24 us of the remote's CPU per
 * write, 15.5 -> 26.8 k IOPS).  A page-cache write can still block
 * (dirty-page throttling, a journal commit, reclaim), and the loop serves
 * every device and monitor: the writes are small and bounded per
 * submission, and one that took long sends the writes of the next second to
 * the ring, of the next two seconds if one is slow again within a second of
 * that, and so on up to a minute: under lasting throttling the loop waits
 * in a write about once a minute.  A write the scheduler preempted looks
 * slow too: on a host that loaded the writes go to the ring more often.
 */
static const struct aio_inline_policy default_inline_policy = {
    .max_bytes = 64 * 1024,
    .round_bytes = 256 * 1024,
    .slow_ns = 1000 * 1000,
    .backoff_ns = 1000ull * 1000 * 1000,
    .backoff_max_ns = 64ull * 1000 * 1000 * 1000,
};

/* Drops n transferred bytes from the front of the request's iovecs. */
static void iov_advance(struct aio_request *req, uint64_t n)
{
    while (n && req->iovcnt) {
        if (n < req->iov->iov_len) {
            req->iov->iov_base = (char *)req->iov->iov_base + n;
            req->iov->iov_len -= (size_t)n;
            return;
        }
        n -= req->iov->iov_len;
        req->iov++;
        req->iovcnt--;
    }
}

static void prep(struct io_uring_sqe *sqe, struct aio_request *req)
{
    uint64_t off = req->offset + req->transferred;

    switch (req->op) {
    case AIO_READ:
        io_uring_prep_readv(sqe, req->fd, req->iov, (unsigned)req->iovcnt, off);
        break;
    case AIO_WRITE:
        io_uring_prep_writev(sqe, req->fd, req->iov, (unsigned)req->iovcnt, off);
        break;
    case AIO_FLUSH:
        io_uring_prep_fsync(sqe, req->fd, IORING_FSYNC_DATASYNC);
        break;
    case AIO_DISCARD:
        io_uring_prep_fallocate(sqe, req->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                req->offset, req->len);
        break;
    case AIO_ZERO:
        io_uring_prep_fallocate(sqe, req->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                req->offset, req->len);
        break;
    }
    io_uring_sqe_set_data(sqe, req);
}

static void enqueue(struct aio_queue *q, struct aio_request *req)
{
    req->next = NULL;
    if (q->tail) {
        q->tail->next = req;
    } else {
        q->head = req;
    }
    q->tail = req;
}

/* The first request in line (the queue must not be empty). */
static struct aio_request *dequeue(struct aio_queue *q)
{
    struct aio_request *req = q->head;

    q->head = req->next;
    if (!q->head) {
        q->tail = NULL;
    }
    return req;
}

static void requeue_first(struct aio_queue *q, struct aio_request *req)
{
    req->next = q->head;
    q->head = req;
    if (!q->tail) {
        q->tail = req;
    }
}

static void complete(struct aio_engine *e, struct aio_request *req, int res);

static bool writes_file(const struct aio_request *req)
{
    return req->op == AIO_WRITE || req->op == AIO_DISCARD || req->op == AIO_ZERO;
}

/*
 * Whether the loop made the write itself; *round_bytes counts.  The request
 * completes later (complete_made), once the ring has what was prepared.
 */
static bool write_inline(struct aio_engine *e, struct aio_request *req, uint64_t *round_bytes)
{
    const struct aio_inline_policy *p = &e->inline_policy;
    uint64_t len, start, took;
    ssize_t r;

    /*
     * A write, discard or zeroing in the ring holds its file's inode lock
     * (ext4, in an io-wq worker) for as long as it takes, a punch or zero
     * range writing back the range's dirty pages first: a write made here
     * meanwhile would wait for it (50-80 ms for 1 GiB of dirty pages).
     */
    if (req->op != AIO_WRITE || !req->may_write_inline || req->iovcnt > IOV_MAX || e->ring_writers) {
        return false;
    }
    len = iov_size(req->iov, req->iovcnt);
    if (!len || len > p->max_bytes || len > INT_MAX || *round_bytes + len > p->round_bytes) {
        return false;
    }
    start = p->clock_ns();
    if (start < e->inline_resume_ns) {
        return false;
    }
    r = pwritev(req->fd, req->iov, req->iovcnt, (off_t)(req->offset + req->transferred));
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        return false;
    }
    req->made_result = r < 0 ? -errno : (int)r;
    took = p->clock_ns() - start;
    if (took > p->slow_ns) {
        /* Slow again within a backoff's length of the last one's end: twice as long. */
        bool again = e->inline_resume_ns && start - e->inline_resume_ns < e->inline_backoff_ns;

        e->inline_backoff_ns = !again ? p->backoff_ns
                               : e->inline_backoff_ns > p->backoff_max_ns / 2 ? p->backoff_max_ns
                               : e->inline_backoff_ns * 2;
        e->inline_resume_ns = start + took + e->inline_backoff_ns;
        e->counts.slow_inline++;
    }
    e->counts.inline_writes++;
    *round_bytes += len;
    e->in_kernel++;     /* complete() counts it out as if from the ring */
    enqueue(&e->made, req);
    return true;
}

/*
 * Completes the writes the loop made, after the ring got the requests
 * prepared beside them: a completion may drain the engine, which waits for
 * what the kernel has (and completes the rest of these itself).  What a
 * short write left goes in the next round.
 */
static void complete_made(struct aio_engine *e)
{
    bool any = e->made.head != NULL;

    while (e->made.head) {
        struct aio_request *req = dequeue(&e->made);

        complete(e, req, req->made_result);
    }
    /* Not while the ring is full: its completions submit the rest (reap). */
    if (any && e->waiting.head && e->in_kernel < e->depth) {
        loop_bh_schedule(e->loop, &e->submit_bh);
    }
}

static void submit_queued(struct aio_engine *e)
{
    unsigned prepared = 0;
    uint64_t inline_bytes = 0;

    while (e->waiting.head && e->in_kernel < e->depth) {
        struct aio_request *req = dequeue(&e->waiting);
        struct io_uring_sqe *sqe;

        if (write_inline(e, req, &inline_bytes)) {
            continue;
        }
        sqe = io_uring_get_sqe(&e->ring);
        if (!sqe) {
            requeue_first(&e->waiting, req);
            break;
        }
        prep(sqe, req);
        e->in_kernel++;
        e->ring_writers += writes_file(req);
        prepared++;
    }
    if (prepared) {
        int r = io_uring_submit(&e->ring);

        if (r < 0) {
            log_error("io_uring_submit: %s", strerror(-r));
        } else {
            e->counts.ring += (unsigned)r;
        }
    }
    complete_made(e);
}

static void reap(struct aio_engine *e);

static void on_submit_bh(void *opaque)
{
    struct aio_engine *e = opaque;

    submit_queued(e);
    reap(e);        /* what completed in the submission (page cache reads) ends in this round */
}

void aio_submit(struct aio_engine *e, struct aio_request *req)
{
    req->transferred = 0;
    e->queued++;
    enqueue(&e->waiting, req);
    loop_bh_schedule(e->loop, &e->submit_bh);
}

/*
 * A read that met the end of the file (one cut short under us: block_resize
 * is checked above): the rest reads as zeros, as QEMU's file driver pads a
 * short read (handle_aiocb_rw()).  -EFAULT when guest memory went away.
 */
static int zeros_past_eof(struct aio_request *req)
{
    uint64_t left = iov_size(req->iov, req->iovcnt);

    if (iov_from_buf(req->iov, req->iovcnt, 0, NULL, left) < 0) {
        return -EFAULT;
    }
    req->transferred += left;
    return 0;
}

static void complete(struct aio_engine *e, struct aio_request *req, int res)
{
    bool rw = req->op == AIO_READ || req->op == AIO_WRITE;

    e->in_kernel--;
    if (rw && res > 0) {
        uint64_t left;

        req->transferred += (uint64_t)res;
        iov_advance(req, (uint64_t)res);
        left = iov_size(req->iov, req->iovcnt);
        if (left) {
            /* Short transfer: the rest goes again, first in line. */
            requeue_first(&e->waiting, req);
            return;
        }
    }
    e->queued--;
    if (rw && res == 0 && iov_size(req->iov, req->iovcnt)) {
        /* End of file inside the request: a write that wrote nothing failed. */
        res = req->op == AIO_READ ? zeros_past_eof(req) : -EIO;
    }
    req->done(req, res < 0 ? res : (int64_t)req->transferred);
}

static void reap(struct aio_engine *e)
{
    struct io_uring_cqe *cqe;

    while (io_uring_peek_cqe(&e->ring, &cqe) == 0) {
        struct aio_request *req = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&e->ring, cqe);
        e->ring_writers -= writes_file(req);
        complete(e, req, res);
    }
    submit_queued(e);
}

static void on_deferred_bh(void *opaque)
{
    struct aio_engine *e = opaque;

    loop_bh_list_run(&e->deferred);
}

/*
 * The ring's fd polls readable while completions wait in it, and the
 * watch is level-triggered: those reaped in the round that submitted them
 * (page-cache reads) wake nobody, as an eventfd they signalled would.  The
 * kernel orders a completion against a concurrent poll itself.
 */
static void on_ring(void *opaque, uint32_t events)
{
    (void)events;
    reap(opaque);
}

/*
 * The ring takes only the operations prep() makes, and no further
 * registration: a process that lost control of its code cannot open,
 * connect or spawn through io_uring, which seccomp does not see.
 */
static int restrict_ring(struct io_uring *ring)
{
    static const uint8_t ops[] = { IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
                                   IORING_OP_FALLOCATE };
    struct io_uring_restriction res[sizeof(ops)] = { 0 };

    for (size_t i = 0; i < sizeof(ops); i++) {
        res[i].opcode = IORING_RESTRICTION_SQE_OP;
        res[i].sqe_op = ops[i];
    }
    /* Debian's liburing 2.3 declares but does not export the helpers for these two. */
    if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, res,
                (unsigned)sizeof(ops)) < 0 ||
        syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
        return -errno;
    }
    return 0;
}

struct aio_engine *aio_engine_new(struct loop *loop, unsigned depth, char **err)
{
    struct aio_engine *e = calloc(1, sizeof(*e));
    int r;

    if (!e) {
        error_setf(err, "out of memory");
        return NULL;
    }
    e->loop = loop;
    e->depth = depth;
    e->watch.fd = -1;
    aio_set_inline_policy(e, &default_inline_policy);
    /* Disabled until restricted: the kernel runs io_uring's operations past seccomp. */
    r = io_uring_queue_init(depth, &e->ring, IORING_SETUP_R_DISABLED);
    if (r < 0) {
        error_setf(err, "io_uring_queue_init: %s", strerror(-r));
        free(e);
        return NULL;
    }
    r = restrict_ring(&e->ring);
    if (r < 0) {
        error_setf(err, "io_uring restrictions: %s", strerror(-r));
        aio_engine_free(e);
        return NULL;
    }
    if (loop_watch_add(loop, &e->watch, e->ring.ring_fd, EPOLLIN, on_ring, e) < 0) {
        error_setf(err, "cannot watch the io_uring: %s", strerror(errno));
        aio_engine_free(e);
        return NULL;
    }
    loop_bh_init(&e->submit_bh, on_submit_bh, e);
    loop_bh_init(&e->deferred_bh, on_deferred_bh, e);
    return e;
}

/* Whether it completed anything. */
static bool drain_ring(struct aio_engine *e)
{
    bool any = e->queued != 0;

    while (e->queued) {
        struct io_uring_cqe *cqe;

        submit_queued(e);
        /* Writes made inline may have completed everything: then nothing will come. */
        if (e->in_kernel && io_uring_wait_cqe(&e->ring, &cqe) == 0) {
            reap(e);
        }
    }
    return any;
}

void aio_drain(struct aio_engine *e)
{
    bool progress;

    /*
     * Completions of each kind may start I/O of any other (a qcow2 read's
     * file I/O, then its deferred completion, a backing file's, an NBD
     * command's): until a round finds nothing to complete.
     */
    do {
        progress = drain_ring(e);
        for (struct aio_drainer *d = e->drainers; d; d = d->next) {
            progress |= d->drain(d);
        }
        progress |= loop_bh_list_run(&e->deferred) > 0;
    } while (progress);
    if (e->holds) {
        /* A request that waits for none of the above would be a bug of the block layer. */
        log_error("aio_drain: %u drive requests wait for nothing it can complete", e->holds);
    }
}

void aio_defer(struct aio_engine *e, struct loop_bh *bh)
{
    if (loop_bh_list_add(&e->deferred, bh)) {
        loop_bh_schedule(e->loop, &e->deferred_bh);
    }
}

void aio_hold(struct aio_engine *e)
{
    e->holds++;
}

void aio_release(struct aio_engine *e)
{
    e->holds--;
}

void aio_add_drainer(struct aio_engine *e, struct aio_drainer *d)
{
    d->next = e->drainers;
    e->drainers = d;
}

void aio_remove_drainer(struct aio_engine *e, struct aio_drainer *d)
{
    for (struct aio_drainer **p = &e->drainers; *p; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            return;
        }
    }
}

struct loop *aio_engine_loop(const struct aio_engine *e)
{
    return e->loop;
}

void aio_set_inline_policy(struct aio_engine *e, const struct aio_inline_policy *p)
{
    e->inline_policy = *p;
    if (!p->clock_ns) {
        e->inline_policy.clock_ns = loop_now_ns;
    }
    e->inline_resume_ns = 0;
    e->inline_backoff_ns = p->backoff_ns;
}

void aio_get_counts(const struct aio_engine *e, struct aio_counts *c)
{
    *c = e->counts;
    c->backoff_ns = e->inline_backoff_ns;
}

unsigned aio_in_flight(const struct aio_engine *e)
{
    return e->queued;
}

void aio_engine_free(struct aio_engine *e)
{
    if (!e) {
        return;
    }
    aio_drain(e);
    loop_bh_cancel(e->loop, &e->submit_bh);
    loop_bh_cancel(e->loop, &e->deferred_bh);
    loop_watch_remove(e->loop, &e->watch);
    io_uring_queue_exit(&e->ring);
    free(e);
}
