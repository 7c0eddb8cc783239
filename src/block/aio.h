/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Asynchronous file I/O on io_uring, completed from the event loop.  Data
 * moves straight between the caller's iovecs (guest memory, for disks) and
 * the file.  Requests wait in a queue and are submitted in one batch per
 * loop round; at most 'depth' are in the kernel at once.
 */
#ifndef MPQEMU_BLOCK_AIO_H
#define MPQEMU_BLOCK_AIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/loop.h"

struct aio_engine;
struct aio_request;

enum aio_op {
    AIO_READ,       /* iov/iovcnt from offset */
    AIO_WRITE,
    AIO_FLUSH,      /* fdatasync */
    AIO_DISCARD,    /* punch a hole of len bytes at offset (reads back as zeros) */
    AIO_ZERO,       /* zero len bytes at offset, keeping the allocation */
};

/* result: bytes transferred (READ/WRITE, always all of them) or 0, else -errno. */
typedef void aio_done_fn(struct aio_request *req, int64_t result);

struct aio_request {
    enum aio_op op;
    int fd;
    uint64_t offset;
    struct iovec *iov;      /* advanced in place when the kernel transfers short */
    int iovcnt;
    uint64_t len;           /* DISCARD and ZERO */
    aio_done_fn *done;
    void *opaque;
    /*
     * WRITE: the engine may make a small one itself (aio.c): the file
     * takes writes into its page cache (opened without O_DIRECT and
     * O_DSYNC), on a local filesystem whose buffered writes io_uring
     * would hand to a worker thread.
     */
    bool may_write_inline;
    /* The engine's. */
    uint64_t transferred;
    int made_result;        /* of a write the loop made, until it completes */
    struct aio_request *next;
};

/*
 * Disk I/O that does not go through the ring (an NBD drive's commands) but
 * that draining the engine must wait for as well: before guest memory is
 * unmapped, and before devices go at exit.  drain() completes it all and
 * says whether it completed anything (whose completions may start more).
 */
struct aio_drainer {
    bool (*drain)(struct aio_drainer *d);
    struct aio_drainer *next;
};

struct aio_engine *aio_engine_new(struct loop *loop, unsigned depth, char **err);
/* Completes every request first (aio_drain). */
void aio_engine_free(struct aio_engine *e);
void aio_submit(struct aio_engine *e, struct aio_request *req);
/*
 * Blocks until nothing is left: no request queued or in flight, the
 * drainers' neither, no deferred completion, no hold.  Completions run
 * here, so that when it returns no device I/O will touch guest memory
 * (dma_set_quiesce) until a device starts more.
 */
void aio_drain(struct aio_engine *e);
/*
 * A completion the block layer delivers from the loop rather than inline
 * (qcow2 requests, refused requests): bh runs from the loop, or from
 * aio_drain(), whichever comes first.  bh is loop_bh_init()'ed; deferring
 * one that is pending does nothing; loop_bh_cancel() does not know it.
 */
void aio_defer(struct aio_engine *e, struct loop_bh *bh);
/*
 * A drive request from submission to the end of its done(): aio_drain()
 * does not return while one is held (drive_submit holds its requests).
 */
void aio_hold(struct aio_engine *e);
void aio_release(struct aio_engine *e);
void aio_add_drainer(struct aio_engine *e, struct aio_drainer *d);
void aio_remove_drainer(struct aio_engine *e, struct aio_drainer *d);
struct loop *aio_engine_loop(const struct aio_engine *e);

/*
 * Small page-cache writes the loop makes itself instead of handing them to
 * an io-wq worker (aio.c says why): up to max_bytes each (0: none), up to
 * round_bytes per submission; one that took longer than slow_ns sends the
 * writes after it to the ring for backoff_ns, or for twice the last backoff
 * (up to backoff_max_ns) if it came within that backoff's length of its end.
 */
struct aio_inline_policy {
    uint64_t max_bytes;
    uint64_t round_bytes;
    uint64_t slow_ns;
    uint64_t backoff_ns;
    uint64_t backoff_max_ns;
    uint64_t (*clock_ns)(void);     /* NULL: loop_now_ns (tests bring their own) */
};
/* Starts afresh: no backoff under way. */
void aio_set_inline_policy(struct aio_engine *e, const struct aio_inline_policy *p);

/* What the engine did, since it was made. */
struct aio_counts {
    uint64_t ring;          /* operations submitted to the io_uring */
    uint64_t inline_writes; /* writes the loop made itself */
    uint64_t slow_inline;   /* of those, ones that started a backoff */
    uint64_t backoff_ns;    /* the last backoff's length */
};
void aio_get_counts(const struct aio_engine *e, struct aio_counts *c);
/* Requests queued or in flight. */
unsigned aio_in_flight(const struct aio_engine *e);

#endif
