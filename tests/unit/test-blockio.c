// SPDX-License-Identifier: GPL-2.0-or-later
/* Drive I/O through io_uring: data, bounds, read-only, holes, O_DIRECT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "util/loop.h"
#include "util/opts.h"

enum { DISK_SIZE = 1 << 20 };

struct env {
    struct loop *loop;
    struct aio_engine *aio;
    char path[64];
    int pending;
};

struct io {
    struct blk_io blk;
    struct env *env;
    int result;
    bool done;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    int fd;

    e->loop = loop_new();
    e->aio = aio_engine_new(e->loop, 8, NULL);
    assert_non_null(e->aio);
    /* The defaults but for timing: a write this loaded machine holds up does not back off. */
    aio_set_inline_policy(e->aio, &(struct aio_inline_policy){
        .max_bytes = 64 * 1024, .round_bytes = 256 * 1024, .slow_ns = UINT64_MAX });
    strcpy(e->path, "/var/tmp/mpqemu-blkio-XXXXXX");
    fd = mkstemp(e->path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;

    aio_engine_free(e->aio);
    loop_free(e->loop);
    unlink(e->path);
    free(e);
    return 0;
}

static struct drive *open_drive(struct env *e, const char *extra)
{
    char text[256];
    char *err = NULL;
    struct opts *o;
    struct drive *d;

    snprintf(text, sizeof(text), "id=d0,file=%s,format=raw%s", e->path, extra);
    o = opts_parse(text, NULL, &err);
    assert_non_null(o);
    d = drive_open(o, e->aio, &err);
    if (!d) {
        fail_msg("open: %s", err);
    }
    opts_free(o);
    return d;
}

static void on_done(struct blk_io *blk, int result)
{
    struct io *io = blk->opaque;

    io->result = result;
    io->done = true;
    if (--io->env->pending == 0) {
        loop_quit(io->env->loop, 0);
    }
}

static void start(struct env *e, struct drive *d, struct io *io, enum blk_op op,
                  uint64_t offset, struct iovec *iov, int iovcnt, uint64_t len)
{
    memset(io, 0, sizeof(*io));
    io->env = e;
    io->blk = (struct blk_io){ .op = op, .offset = offset, .iov = iov, .iovcnt = iovcnt,
                               .len = len, .done = on_done, .opaque = io };
    e->pending++;
    drive_submit(d, &io->blk);
    /* Completion always comes from the loop, never from inside submit. */
    assert_false(io->done);
}

static int run_one(struct env *e, struct drive *d, enum blk_op op, uint64_t offset,
                   void *buf, size_t len)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct io io;

    start(e, d, &io, op, offset, &iov, 1, len);
    loop_run(e->loop);
    assert_true(io.done);
    return io.result;
}

static void test_scatter_gather_write_and_read(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    uint8_t a[512], b[1024], c[512], back[2048], file[2048];
    struct iovec wr[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
    struct iovec rd[2] = { { back, 100 }, { back + 100, 1948 } };
    struct io io;
    int fd;

    memset(a, 0xaa, sizeof(a));
    memset(b, 0xbb, sizeof(b));
    memset(c, 0xcc, sizeof(c));
    start(e, d, &io, BLK_WRITE, 4096, wr, 3, 0);
    loop_run(e->loop);
    assert_int_equal(io.result, 0);
    start(e, d, &io, BLK_READ, 4096, rd, 2, 0);
    loop_run(e->loop);
    assert_int_equal(io.result, 0);
    assert_int_equal(back[0], 0xaa);
    assert_int_equal(back[600], 0xbb);
    assert_int_equal(back[2047], 0xcc);
    fd = open(e->path, O_RDONLY);
    assert_int_equal(pread(fd, file, sizeof(file), 4096), (ssize_t)sizeof(file));
    close(fd);
    assert_memory_equal(file, back, sizeof(file));
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    drive_close(d);
}

/* Every write to the ring, none made by the loop itself. */
static void ring_only(struct env *e)
{
    aio_set_inline_policy(e->aio, &(struct aio_inline_policy){ 0 });
}

static void many_requests(struct env *e)
{
    struct drive *d = open_drive(e, "");
    enum { N = 300 };
    static struct io ios[N];
    static uint32_t bufs[N][128];
    static struct iovec iov[N];

    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 128; j++) {
            bufs[i][j] = (uint32_t)(i * 1000 + j);
        }
        iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
        start(e, d, &ios[i], BLK_WRITE, (uint64_t)i * 512, &iov[i], 1, 0);
    }
    loop_run(e->loop);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ios[i].result, 0);
        memset(bufs[i], 0, sizeof(bufs[i]));
        iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
        start(e, d, &ios[i], BLK_READ, (uint64_t)i * 512, &iov[i], 1, 0);
    }
    loop_run(e->loop);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ios[i].result, 0);
        assert_int_equal(bufs[i][127], (uint32_t)(i * 1000 + 127));
    }
    drive_close(d);
}

static void test_many_requests_beyond_the_queue_depth(void **state)
{
    struct env *e = *state;
    struct aio_counts c;

    many_requests(e);
    ring_only(e);
    many_requests(e);
    aio_get_counts(e->aio, &c);
    assert_int_equal(c.ring, 300 + 600);    /* the first round's reads, the second's all */
    assert_int_equal(c.inline_writes, 300);
}

static void start_writes(struct env *e, struct drive *d, struct io *ios, struct iovec *iov,
                         uint8_t *bufs, int n, size_t len, uint8_t seed)
{
    for (int i = 0; i < n; i++) {
        memset(bufs + (size_t)i * len, (uint8_t)(seed + i), len);
        iov[i] = (struct iovec){ bufs + (size_t)i * len, len };
        start(e, d, &ios[i], BLK_WRITE, (uint64_t)i * len, &iov[i], 1, 0);
    }
}

static void check_file(struct env *e, int n, size_t len, uint8_t seed)
{
    int fd = open(e->path, O_RDONLY);
    uint8_t *back = malloc(len);

    for (int i = 0; i < n; i++) {
        assert_int_equal(pread(fd, back, len, (off_t)((size_t)i * len)), (ssize_t)len);
        assert_int_equal(back[0], (uint8_t)(seed + i));
        assert_int_equal(back[len - 1], (uint8_t)(seed + i));
    }
    free(back);
    close(fd);
}

/*
 * Small writes to a buffered file are made by the loop itself, their
 * completions still from the loop (start() checks); large ones, and every
 * write of a file opened O_DIRECT or O_DSYNC, go to the ring.
 */
static void test_small_buffered_writes_are_made_by_the_loop(void **state)
{
    struct env *e = *state;
    static const char *const modes[] = { "", ",cache=none", ",cache=writethrough",
                                         ",cache=directsync" };
    enum { N = 8, LEN = 4096, BIG = 128 * 1024 };
    static struct io ios[N];
    static struct iovec iov[N];
    uint8_t *bufs = aligned_alloc(4096, BIG);
    struct aio_counts before, after;

    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        struct drive *d = open_drive(e, modes[m]);

        aio_get_counts(e->aio, &before);
        start_writes(e, d, ios, iov, bufs, N, LEN, (uint8_t)(m * 16));
        loop_run(e->loop);
        for (int i = 0; i < N; i++) {
            assert_int_equal(ios[i].result, 0);
        }
        check_file(e, N, LEN, (uint8_t)(m * 16));
        aio_get_counts(e->aio, &after);
        assert_int_equal(after.inline_writes - before.inline_writes, m == 0 ? N : 0);
        assert_int_equal(after.ring - before.ring, m == 0 ? 0 : N);
        drive_close(d);
    }
    {
        struct drive *d = open_drive(e, "");

        start_writes(e, d, ios, iov, bufs, 1, BIG, 0x5a);
        loop_run(e->loop);
        assert_int_equal(ios[0].result, 0);
        check_file(e, 1, BIG, 0x5a);
        aio_get_counts(e->aio, &before);
        assert_int_equal(before.inline_writes, after.inline_writes);
        assert_int_equal(before.ring, after.ring + 1);
        drive_close(d);
    }
    free(bufs);
}

/* Inline writes are bounded per submission; the rest of a burst goes to the ring. */
static void test_inline_writes_are_bounded_per_submission(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    enum { N = 8, LEN = 4096 };
    static struct io ios[N];
    static struct iovec iov[N];
    static uint8_t bufs[N * LEN];
    struct aio_counts c;

    aio_set_inline_policy(e->aio, &(struct aio_inline_policy){
        .max_bytes = LEN, .round_bytes = 3 * LEN, .slow_ns = UINT64_MAX });
    start_writes(e, d, ios, iov, bufs, N, LEN, 1);
    loop_run(e->loop);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ios[i].result, 0);
    }
    check_file(e, N, LEN, 1);
    aio_get_counts(e->aio, &c);
    assert_int_equal(c.inline_writes, 3);
    assert_int_equal(c.ring, N - 3);
    drive_close(d);
}

/* A write that took longer than slow_ns sends the writes after it to the ring, for backoff_ns. */
static void test_a_slow_inline_write_backs_off_to_the_ring(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    enum { N = 6, LEN = 4096 };
    static struct io ios[N];
    static struct iovec iov[N];
    static uint8_t bufs[N * LEN];
    const uint64_t hour = 3600ull * 1000 * 1000 * 1000;
    struct aio_counts c;

    aio_set_inline_policy(e->aio, &(struct aio_inline_policy){
        .max_bytes = LEN, .round_bytes = N * LEN, .slow_ns = 0, .backoff_ns = hour,
        .backoff_max_ns = 4 * hour });
    start_writes(e, d, ios, iov, bufs, N, LEN, 7);
    loop_run(e->loop);
    check_file(e, N, LEN, 7);
    aio_get_counts(e->aio, &c);
    assert_int_equal(c.inline_writes, 1);
    assert_int_equal(c.slow_inline, 1);
    assert_int_equal(c.ring, N - 1);
    assert_int_equal(c.backoff_ns, hour);
    drive_close(d);
}

/* The times the engine reads, in turn: a write's start, then its end. */
static uint64_t clock_values[16];
static unsigned clock_next;

static uint64_t scripted_clock(void)
{
    assert_true(clock_next < sizeof(clock_values) / sizeof(clock_values[0]));
    return clock_values[clock_next++];
}

/*
 * The backoff doubles when writes are slow again soon after one ends, up to
 * its bound, and starts afresh when they were not.
 */
static void test_the_backoff_doubles_while_writes_stay_slow(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    /* slow: over 5 ns; backoffs of 1000 ns, at most 3000 */
    static const uint64_t times[] = {
        0, 10,          /* slow: the ring until 1010 */
        500,            /* in the backoff: to the ring */
        1100, 1110,     /* slow again 90 ns after: 2000 ns, until 3110 */
        3200, 3201,     /* fast: no change */
        4000, 4010,     /* slow 890 ns after: 3000 ns (the bound), until 7010 */
        20000, 20010,   /* slow long after: 1000 ns again */
    };
    static const struct { uint64_t inline_writes, slow, ring, backoff; } after[] = {
        { 1, 1, 0, 1000 }, { 1, 1, 1, 1000 }, { 2, 2, 1, 2000 }, { 3, 2, 1, 2000 },
        { 4, 3, 1, 3000 }, { 5, 4, 1, 1000 },
    };
    uint8_t buf[4096] = { 0 };
    struct aio_counts c;

    memcpy(clock_values, times, sizeof(times));
    clock_next = 0;
    aio_set_inline_policy(e->aio, &(struct aio_inline_policy){
        .max_bytes = 4096, .round_bytes = 4096, .slow_ns = 5, .backoff_ns = 1000,
        .backoff_max_ns = 3000, .clock_ns = scripted_clock });
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        assert_int_equal(run_one(e, d, BLK_WRITE, 0, buf, sizeof(buf)), 0);
        aio_get_counts(e->aio, &c);
        assert_int_equal(c.inline_writes, after[i].inline_writes);
        assert_int_equal(c.slow_inline, after[i].slow);
        assert_int_equal(c.ring, after[i].ring);
        assert_int_equal(c.backoff_ns, after[i].backoff);
    }
    assert_int_equal(clock_next, sizeof(times) / sizeof(times[0]));
    drive_close(d);
}

/*
 * A write, discard or zeroing in the ring holds the file's inode lock in
 * the kernel (ext4) for as long as it takes (a punched or zeroed range's
 * dirty pages are written back first): a write the loop made meanwhile
 * would wait for it, and every device of the process with it.  Small
 * writes go to the ring while one is there.
 */
static void test_no_inline_write_while_the_ring_writes(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    enum { BIG = 128 * 1024 };
    static uint8_t big[BIG], small[4096];
    struct iovec iov[2] = { { big, BIG }, { small, sizeof(small) } };
    static const enum blk_op first[] = { BLK_DISCARD, BLK_WRITE_ZEROES, BLK_WRITE };
    struct io ios[2];
    struct aio_counts before, after;

    for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
        aio_get_counts(e->aio, &before);
        if (first[i] == BLK_WRITE) {
            start(e, d, &ios[0], BLK_WRITE, 0, &iov[0], 1, 0);
        } else {
            start(e, d, &ios[0], first[i], 0, NULL, 0, BIG);
        }
        start(e, d, &ios[1], BLK_WRITE, 2 * BIG, &iov[1], 1, 0);
        loop_run(e->loop);
        assert_int_equal(ios[0].result, 0);
        assert_int_equal(ios[1].result, 0);
        aio_get_counts(e->aio, &after);
        assert_int_equal(after.inline_writes - before.inline_writes, 0);
        assert_int_equal(after.ring - before.ring, 2);
    }
    /* Nothing in the ring: made by the loop again. */
    assert_int_equal(run_one(e, d, BLK_WRITE, 2 * BIG, small, sizeof(small)), 0);
    aio_get_counts(e->aio, &before);
    assert_int_equal(before.inline_writes, after.inline_writes + 1);
    drive_close(d);
}

/*
 * Simulated time for the throttled loop below: the engine reads the clock
 * at a write's start (sim_now) and, when it made the write, at its end
 * (sim_now + sim_took).
 */
static uint64_t sim_now, sim_took;
static unsigned sim_reads;

static uint64_t simulated_clock(void)
{
    return sim_reads++ == 0 ? sim_now : sim_now + sim_took;
}

/*
 * Lasting dirty-page throttling pauses a writer only every so many pages
 * it dirtied (balance_dirty_pages), so most writes are fast and one in a
 * few stalls: here every 5th write the loop makes takes 100 ms, a write
 * comes every 10 ms.  The backoff must keep growing (1, 2, 4 ... 64 s):
 * over 127 s the loop waits in at most 8 writes, not in one a second.
 */
static void test_intermittent_slow_writes_keep_backing_off(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    const uint64_t ms = 1000 * 1000;
    uint8_t buf[512] = { 0 };
    uint64_t made = 0;
    struct aio_counts c;

    sim_now = 0;
    aio_set_inline_policy(e->aio, &(struct aio_inline_policy){
        .max_bytes = 64 * 1024, .round_bytes = 256 * 1024, .slow_ns = ms,
        .backoff_ns = 1000 * ms, .backoff_max_ns = 64000 * ms, .clock_ns = simulated_clock });
    while (sim_now < 127000 * ms) {
        sim_now += 10 * ms;
        sim_reads = 0;
        sim_took = made % 5 == 4 ? 100 * ms : ms / 100;
        assert_int_equal(run_one(e, d, BLK_WRITE, 0, buf, sizeof(buf)), 0);
        aio_get_counts(e->aio, &c);
        if (c.inline_writes > made) {
            made = c.inline_writes;
            sim_now += sim_took;
        }
    }
    aio_get_counts(e->aio, &c);
    print_message("# %llu writes made by the loop, %llu of them slow\n",
                  (unsigned long long)c.inline_writes, (unsigned long long)c.slow_inline);
    assert_true(c.slow_inline <= 8);
    drive_close(d);
}

/*
 * Guest memory the VMM truncated under an inline write: the part still
 * there is written, the rest fails with EFAULT, no signal.
 */
static void test_inline_write_from_truncated_memory_fails_cleanly(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    int mfd = memfd_create("guest", MFD_CLOEXEC);
    uint8_t *mem;
    struct iovec iov;
    struct io io;
    struct aio_counts c;

    assert_true(mfd >= 0);
    assert_int_equal(ftruncate(mfd, 8192), 0);
    mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    assert_true(mem != MAP_FAILED);
    memset(mem, 0x3c, 8192);
    assert_int_equal(ftruncate(mfd, 4096), 0);
    iov = (struct iovec){ mem, 8192 };
    start(e, d, &io, BLK_WRITE, 0, &iov, 1, 0);
    loop_run(e->loop);
    assert_int_equal(io.result, -EFAULT);
    check_file(e, 1, 4096, 0x3c);
    aio_get_counts(e->aio, &c);
    assert_true(c.inline_writes >= 2);     /* the first page, then the fault */
    assert_int_equal(c.ring, 0);
    munmap(mem, 8192);
    close(mfd);
    drive_close(d);
}

static void test_bounds_and_read_only(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, ",readonly=on");
    uint8_t buf[512] = { 0 };

    assert_int_equal(run_one(e, d, BLK_READ, DISK_SIZE - 512, buf, 512), 0);
    /* Past the end: EIO, as QEMU's block layer says. */
    assert_int_equal(run_one(e, d, BLK_READ, DISK_SIZE - 256, buf, 512), -EIO);
    assert_int_equal(run_one(e, d, BLK_READ, UINT64_MAX - 100, buf, 512), -EIO);
    assert_int_equal(run_one(e, d, BLK_WRITE, 0, buf, 512), -EROFS);
    assert_int_equal(run_one(e, d, BLK_DISCARD, 0, NULL, 512), -EROFS);
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    drive_close(d);
}

static void test_discard_and_write_zeroes_read_back_zeros(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    uint8_t buf[8192], zeros[8192] = { 0 };
    struct io io;

    memset(buf, 0x77, sizeof(buf));
    assert_int_equal(run_one(e, d, BLK_WRITE, 65536, buf, sizeof(buf)), 0);
    start(e, d, &io, BLK_DISCARD, 65536, NULL, 0, 4096);
    loop_run(e->loop);
    assert_int_equal(io.result, 0);
    start(e, d, &io, BLK_WRITE_ZEROES, 65536 + 4096, NULL, 0, 4096);
    loop_run(e->loop);
    assert_int_equal(io.result, 0);
    assert_int_equal(run_one(e, d, BLK_READ, 65536, buf, sizeof(buf)), 0);
    assert_memory_equal(buf, zeros, sizeof(buf));
    drive_close(d);
}

static void test_direct_io_bounces_misaligned_buffers(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, ",cache=none");
    uint8_t *raw = malloc(4096 + 1), *odd = raw + 1, back[4096];

    for (int i = 0; i < 4096; i++) {
        odd[i] = (uint8_t)(i ^ 0x5a);
    }
    assert_int_equal(run_one(e, d, BLK_WRITE, 8192, odd, 4096), 0);
    assert_int_equal(run_one(e, d, BLK_READ, 8192, back, 4096), 0);
    assert_memory_equal(odd, back, 4096);
    memset(odd, 0, 4096);
    assert_int_equal(run_one(e, d, BLK_READ, 8192, odd, 4096), 0);
    assert_memory_equal(odd, back, 4096);
    /* Offsets and lengths must still be whole blocks. */
    assert_int_equal(run_one(e, d, BLK_READ, 8193, back, 512), -EINVAL);
    assert_int_equal(run_one(e, d, BLK_READ, 8192, back, 100), -EINVAL);
    free(raw);
    drive_close(d);
}

/*
 * O_DIRECT requests are in flight when the loop goes to sleep: their
 * completions, posted later, must wake it (none finishes at submission).
 */
static void test_completions_after_submission_wake_the_loop(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, ",cache=none");
    enum { N = 64, LEN = 4096 };
    static struct io ios[N];
    static struct iovec iov[N];
    uint8_t *bufs = aligned_alloc(4096, (size_t)N * LEN);

    alarm(30);      /* a lost completion hangs the loop: fail instead */
    for (int round = 0; round < 4; round++) {
        bool write = round % 2 == 0;

        for (int i = 0; i < N; i++) {
            uint8_t *b = bufs + (size_t)i * LEN;

            if (write) {
                memset(b, (uint8_t)(i + round), LEN);
            } else {
                memset(b, 0, LEN);
            }
            iov[i] = (struct iovec){ b, LEN };
            start(e, d, &ios[i], write ? BLK_WRITE : BLK_READ, (uint64_t)i * LEN, &iov[i], 1, 0);
        }
        loop_run(e->loop);
        for (int i = 0; i < N; i++) {
            assert_true(ios[i].done);
            assert_int_equal(ios[i].result, 0);
            if (!write) {
                assert_int_equal(bufs[(size_t)i * LEN + LEN - 1], (uint8_t)(i + round - 1));
            }
        }
    }
    /* One at a time: each waits in the kernel alone, the loop asleep. */
    for (int i = 0; i < 16; i++) {
        assert_int_equal(run_one(e, d, BLK_READ, (uint64_t)i * LEN, bufs, LEN), 0);
        assert_int_equal(bufs[LEN - 1], (uint8_t)(i + 2));
    }
    alarm(0);
    free(bufs);
    drive_close(d);
}

/* A completion that drains the engine: a drive closed or guest memory unmapped from it. */
static void on_done_then_drain(struct blk_io *blk, int result)
{
    struct io *io = blk->opaque;

    on_done(blk, result);
    aio_drain(io->env->aio);
    assert_int_equal(aio_in_flight(io->env->aio), 0);
}

/*
 * A READ then two small WRITEs in one batch: the read takes its place in
 * the ring, the loop makes the writes and runs the first one's completion,
 * which drains.  The read must reach the kernel then, not wait for a
 * submission that comes only after the completion returns, and the drain
 * must complete the second write, made but not yet completed.
 */
static void test_a_completion_may_drain(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, "");
    uint8_t rbuf[4096], wbuf[4096] = { 1 };
    struct iovec riov = { rbuf, sizeof(rbuf) }, wiov = { wbuf, sizeof(wbuf) };
    struct io rd, wr, wr2;
    struct aio_counts c;

    start(e, d, &rd, BLK_READ, 0, &riov, 1, 0);
    start(e, d, &wr, BLK_WRITE, 8192, &wiov, 1, 0);
    wr.blk.done = on_done_then_drain;
    start(e, d, &wr2, BLK_WRITE, 16384, &wiov, 1, 0);
    alarm(10);      /* a hang fails the test (SIGALRM) rather than the suite's timeout */
    loop_run(e->loop);
    alarm(0);
    assert_true(rd.done && wr.done && wr2.done);
    assert_int_equal(rd.result, 0);
    assert_int_equal(wr.result, 0);
    assert_int_equal(wr2.result, 0);
    aio_get_counts(e->aio, &c);
    assert_int_equal(c.inline_writes, 2);
    drive_close(d);
}

static void quit_loop(void *opaque, uint32_t events)
{
    (void)events;
    loop_quit(opaque, 0);
}

static void count_done(struct aio_request *req, int64_t result)
{
    assert_int_equal(result, 8);
    (*(int *)req->opaque)++;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * A full ring (reads of a pipe nobody writes, one more than the depth):
 * the request that waits for a slot waits with the loop asleep, not in
 * bottom halves that find the ring full round after round.
 */
static void test_a_full_ring_leaves_the_loop_asleep(void **state)
{
    struct env *e = *state;
    enum { N = 9 };     /* the engine's depth (8) and one */
    static struct aio_request reqs[N];
    static struct iovec iov[N];
    static uint8_t bufs[N][8];
    struct itimerspec t = { .it_value = { .tv_nsec = 200 * 1000 * 1000 } };
    struct loop_watch timer;
    int p[2], tfd, done = 0;
    uint64_t cpu;

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    for (int i = 0; i < N; i++) {
        iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
        reqs[i] = (struct aio_request){ .op = AIO_READ, .fd = p[0], .iov = &iov[i], .iovcnt = 1,
                                        .done = count_done, .opaque = &done };
        aio_submit(e->aio, &reqs[i]);
    }
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    assert_true(tfd >= 0);
    assert_int_equal(timerfd_settime(tfd, 0, &t, NULL), 0);
    assert_int_equal(loop_watch_add(e->loop, &timer, tfd, EPOLLIN, quit_loop, e->loop), 0);
    alarm(10);      /* a loop that spins may not even see the timer: fail, not hang */
    cpu = thread_cpu_ns();
    loop_run(e->loop);
    cpu = thread_cpu_ns() - cpu;
    alarm(0);
    loop_watch_remove(e->loop, &timer);
    close(tfd);
    assert_int_equal(done, 0);
    /* 200 ms of waiting: a spinning loop would have taken most of it. */
    assert_true(cpu < 50 * 1000 * 1000);
    assert_int_equal(write(p[1], bufs, sizeof(bufs)), (ssize_t)sizeof(bufs));
    aio_drain(e->aio);
    assert_int_equal(done, N);
    close(p[0]);
    close(p[1]);
}

/* aio_drain() returns only when every request completed, refused and failed ones too (from the loop). */
static void test_drain_completes_refused_requests(void **state)
{
    struct env *e = *state;
    struct drive *d = open_drive(e, ",readonly=on");
    uint8_t buf[512];
    struct iovec iov = { buf, sizeof(buf) };
    struct io bad_range, read_only, good;

    start(e, d, &bad_range, BLK_READ, DISK_SIZE, &iov, 1, 0);
    start(e, d, &read_only, BLK_WRITE, 0, &iov, 1, 0);
    start(e, d, &good, BLK_READ, 0, &iov, 1, 0);
    aio_drain(e->aio);
    assert_int_equal(e->pending, 0);
    assert_true(bad_range.done && read_only.done && good.done);
    assert_int_equal(bad_range.result, -EIO);
    assert_int_equal(read_only.result, -EROFS);
    assert_int_equal(good.result, 0);
    drive_close(d);
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_scatter_gather_write_and_read),
        CASE(test_many_requests_beyond_the_queue_depth),
        CASE(test_small_buffered_writes_are_made_by_the_loop),
        CASE(test_inline_writes_are_bounded_per_submission),
        CASE(test_a_slow_inline_write_backs_off_to_the_ring),
        CASE(test_the_backoff_doubles_while_writes_stay_slow),
        CASE(test_intermittent_slow_writes_keep_backing_off),
        CASE(test_no_inline_write_while_the_ring_writes),
        CASE(test_inline_write_from_truncated_memory_fails_cleanly),
        CASE(test_bounds_and_read_only),
        CASE(test_discard_and_write_zeroes_read_back_zeros),
        CASE(test_direct_io_bounces_misaligned_buffers),
        CASE(test_completions_after_submission_wake_the_loop),
        CASE(test_drain_completes_refused_requests),
        CASE(test_a_full_ring_leaves_the_loop_asleep),
        CASE(test_a_completion_may_drain),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
