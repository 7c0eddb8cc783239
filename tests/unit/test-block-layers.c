// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Formats over a stub file layer that keeps the image in memory: raw
 * passes the caller's request down untouched; qcow2 does all its I/O,
 * data and metadata, through the layer below (there is no file to reach
 * any other way) and orders its writes as docs/qcow2.md says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "block/file-layer.h"
#include "util/guarded-copy.h"
#include "util/loop.h"
#include "util/opts.h"

/* --- the stub file layer ----------------------------------------------------- */

/* The image's bytes and what happened to them; outlives the file layers opened on it. */
struct mem_image {
    uint8_t *data;
    uint64_t len;
    uint8_t *durable;               /* the bytes as of the last sync: what survives a crash */
    uint64_t durable_len;
    unsigned preads, pwrites, syncs, submits, flushes;
    int fail_submits;               /* async I/O completes with this, when not 0 */
    const struct blk_io *last_io;   /* the last request submitted */
    struct iovec *last_iov;
    /* Called before each synchronous write takes effect. */
    void (*before_pwrite)(struct mem_image *img, const uint8_t *buf, uint64_t len,
                          uint64_t offset);
};

struct mem_file {
    struct blk_file base;
    struct mem_image *img;
    struct mem_req *pending;
};

/* An asynchronous request: it takes effect when it completes, from the loop. */
struct mem_req {
    struct loop_bh bh;
    struct mem_file *file;
    struct blk_io *io;
    struct mem_req *next;
};

static struct mem_file *mem_of(const struct blk_file *f)
{
    return (struct mem_file *)((char *)f - offsetof(struct mem_file, base));
}

static void grow(struct mem_image *img, uint64_t end)
{
    if (end > img->len) {
        img->data = realloc(img->data, end);
        assert_non_null(img->data);
        memset(img->data + img->len, 0, end - img->len);
        img->len = end;
    }
}

static int apply(struct mem_image *img, struct blk_io *io)
{
    uint64_t len = io->op == BLK_READ || io->op == BLK_WRITE ? iov_size(io->iov, io->iovcnt)
                                                             : io->len;

    if (img->fail_submits) {
        return img->fail_submits;
    }
    switch (io->op) {
    case BLK_READ:
        if (io->offset + len > img->len) {
            return -EIO;
        }
        return iov_from_buf(io->iov, io->iovcnt, 0, img->data + io->offset, len);
    case BLK_WRITE:
        grow(img, io->offset + len);
        return iov_to_buf(io->iov, io->iovcnt, 0, img->data + io->offset, len);
    case BLK_DISCARD:
    case BLK_WRITE_ZEROES:
        grow(img, io->offset + len);
        memset(img->data + io->offset, 0, len);
        return 0;
    case BLK_FLUSH:
        img->flushes++;
        return 0;
    }
    return -EINVAL;
}

static void mem_complete(struct mem_req *r)
{
    struct mem_req **p = &r->file->pending;
    struct blk_io *io = r->io;
    int result;

    while (*p != r) {
        p = &(*p)->next;
    }
    *p = r->next;
    result = apply(r->file->img, io);
    free(r);
    io->done(io, result);
}

static void on_mem_bh(void *opaque)
{
    mem_complete(opaque);
}

static void mem_submit(struct blk_file *f, struct blk_io *io)
{
    struct mem_file *m = mem_of(f);
    struct mem_req *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    m->img->submits++;
    m->img->last_io = io;
    m->img->last_iov = io->iov;
    r->file = m;
    r->io = io;
    r->next = m->pending;
    m->pending = r;
    loop_bh_init(&r->bh, on_mem_bh, r);
    loop_bh_schedule(blk_file_loop(f), &r->bh);
}

static void mem_drain(struct blk_file *f)
{
    struct mem_file *m = mem_of(f);

    while (m->pending) {
        loop_bh_cancel(blk_file_loop(f), &m->pending->bh);
        mem_complete(m->pending);
    }
}

static void mem_close(struct blk_file *f)
{
    assert_null(mem_of(f)->pending);
    free(mem_of(f));
}

static int mem_length(struct blk_file *f, uint64_t *len)
{
    *len = mem_of(f)->img->len;
    return 0;
}

static int64_t mem_pread(struct blk_file *f, void *buf, uint64_t len, uint64_t offset)
{
    struct mem_image *img = mem_of(f)->img;
    uint64_t in = offset >= img->len ? 0 : img->len - offset < len ? img->len - offset : len;

    img->preads++;
    if (in) {
        memcpy(buf, img->data + offset, in);
    }
    memset((uint8_t *)buf + in, 0, len - in);
    return (int64_t)in;
}

static int mem_pwrite(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset)
{
    struct mem_image *img = mem_of(f)->img;

    img->pwrites++;
    if (img->before_pwrite) {
        img->before_pwrite(img, buf, len, offset);
    }
    grow(img, offset + len);
    memcpy(img->data + offset, buf, len);
    return 0;
}

static int mem_sync(struct blk_file *f)
{
    struct mem_image *img = mem_of(f)->img;

    img->syncs++;
    img->durable = realloc(img->durable, img->len);
    assert_non_null(img->durable);
    memcpy(img->durable, img->data, img->len);
    img->durable_len = img->len;
    return 0;
}

static int mem_truncate(struct blk_file *f, uint64_t len, char **err)
{
    struct mem_image *img = mem_of(f)->img;

    (void)err;
    grow(img, len);
    img->len = len;
    return 0;
}

static const struct file_driver mem_driver = {
    .name = "mem",
    .close = mem_close,
    .submit = mem_submit,
    .drain = mem_drain,
    .length = mem_length,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .sync = mem_sync,
    .truncate = mem_truncate,
};

/* --- the test's world ---------------------------------------------------------- */

struct env {
    struct loop *loop;
    struct aio_engine *aio;
    struct mem_image img;
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

    e->loop = loop_new();
    e->aio = aio_engine_new(e->loop, 8, NULL);
    assert_non_null(e->aio);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;

    aio_engine_free(e->aio);
    loop_free(e->loop);
    free(e->img.data);
    free(e->img.durable);
    free(e);
    return 0;
}

static struct drive *open_on_mem(struct env *e, const char *options)
{
    struct mem_file *m = calloc(1, sizeof(*m));
    char text[256], *err = NULL;
    struct opts *o;
    struct drive *d;

    m->base = (struct blk_file){ .driver = &mem_driver, .aio = e->aio, .align = 1 };
    m->img = &e->img;
    snprintf(text, sizeof(text), "id=d0,file=mem%s", options);
    o = opts_parse(text, NULL, &err);
    assert_non_null(o);
    d = drive_open_on(o, &m->base, &err);
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

static int run_one(struct env *e, struct drive *d, enum blk_op op, uint64_t offset, void *buf,
                   size_t len)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct io io = { .env = e };

    io.blk = (struct blk_io){ .op = op, .offset = offset, .iov = &iov, .iovcnt = 1, .len = len,
                              .done = on_done, .opaque = &io };
    e->pending++;
    drive_submit(d, &io.blk);
    /* Completion always comes from the loop, never from inside submit. */
    assert_false(io.done);
    loop_run(e->loop);
    assert_true(io.done);
    return io.result;
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

enum { CLUSTER = 4096, L1_AT = CLUSTER, REFTABLE_AT = 2 * CLUSTER, REFBLOCK_AT = 3 * CLUSTER };
#define DISK_SIZE (4ull << 20)
#define OFFSET_MASK 0x00fffffffffffe00ull

/*
 * An empty qcow2 v3 image, as qemu-img would make it with 4 KiB clusters:
 * the header, the L1 table, the refcount table, one refcount block.
 */
static void make_qcow2(struct mem_image *img)
{
    uint8_t *h;

    free(img->data);
    img->len = 4 * CLUSTER;
    img->data = calloc(1, img->len);
    h = img->data;
    put_be(h, 0x514649fb, 4);               /* QFI\xfb */
    put_be(h + 4, 3, 4);                    /* version */
    put_be(h + 20, 12, 4);                  /* cluster_bits */
    put_be(h + 24, DISK_SIZE, 8);
    put_be(h + 36, 2, 4);                   /* L1 entries: 2 MiB each */
    put_be(h + 40, L1_AT, 8);
    put_be(h + 48, REFTABLE_AT, 8);
    put_be(h + 56, 1, 4);                   /* refcount table clusters */
    put_be(h + 96, 4, 4);                   /* refcount_order: 16 bits */
    put_be(h + 100, 104, 4);                /* header_length */
    put_be(img->data + REFTABLE_AT, REFBLOCK_AT, 8);
    for (int c = 0; c < 4; c++) {
        put_be(img->data + REFBLOCK_AT + 2 * c, 1, 2);
    }
}

/* A raw image of len zero bytes. */
static void make_raw(struct mem_image *img, uint64_t len)
{
    free(img->data);
    img->len = len;
    img->data = calloc(1, len);
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
    }
}

/* --- tests ------------------------------------------------------------------------ */

static void test_raw_passes_the_request_itself_down(void **state)
{
    struct env *e = *state;
    uint8_t buf[4096];
    struct iovec iov = { buf, sizeof(buf) };
    struct io io = { .env = e };
    struct drive *d;

    make_raw(&e->img, 1 << 20);
    fill(e->img.data + 8192, 4096, 3);
    d = open_on_mem(e, ",format=raw");
    assert_string_equal(drive_format_name(d), "raw");
    assert_int_equal(d->size, 1 << 20);
    io.blk = (struct blk_io){ .op = BLK_READ, .offset = 8192, .iov = &iov, .iovcnt = 1,
                              .done = on_done, .opaque = &io };
    e->pending++;
    drive_submit(d, &io.blk);
    /* No copy of the request, no copy of its iovecs: the file layer has the caller's. */
    assert_ptr_equal(e->img.last_io, &io.blk);
    assert_ptr_equal(e->img.last_iov, &iov);
    assert_false(io.done);
    loop_run(e->loop);
    assert_int_equal(io.result, 0);
    assert_memory_equal(buf, e->img.data + 8192, 4096);
    /* The drive layer refuses what is out of range; the layer below never sees it. */
    e->img.submits = 0;
    assert_int_equal(run_one(e, d, BLK_READ, (1 << 20) - 512, buf, 1024), -EINVAL);
    assert_int_equal(e->img.submits, 0);
    drive_close(d);
}

static void test_read_only_is_checked_above_the_format(void **state)
{
    struct env *e = *state;
    uint8_t buf[512] = { 0 };
    struct drive *d;

    make_qcow2(&e->img);
    d = open_on_mem(e, ",readonly=on");
    assert_string_equal(drive_format_name(d), "qcow2");
    assert_int_equal(run_one(e, d, BLK_WRITE, 0, buf, sizeof(buf)), -EROFS);
    assert_int_equal(run_one(e, d, BLK_DISCARD, 0, NULL, 512), -EROFS);
    assert_int_equal(e->img.submits, 0);
    assert_int_equal(e->img.pwrites, 0);
    drive_close(d);
}

/* An error below reaches the caller from the loop; formats pass it up as it is. */
static void test_errors_from_below_reach_the_caller(void **state)
{
    struct env *e = *state;
    uint8_t buf[4096] = { 0 };
    struct drive *d;

    make_raw(&e->img, 1 << 20);
    d = open_on_mem(e, ",format=raw");
    e->img.fail_submits = -EIO;
    assert_int_equal(run_one(e, d, BLK_READ, 0, buf, sizeof(buf)), -EIO);
    e->img.fail_submits = 0;
    drive_close(d);

    make_qcow2(&e->img);
    d = open_on_mem(e, "");
    assert_int_equal(run_one(e, d, BLK_WRITE, 0, buf, sizeof(buf)), 0);
    e->img.fail_submits = -ENOSPC;
    assert_int_equal(run_one(e, d, BLK_READ, 0, buf, sizeof(buf)), -ENOSPC);
    assert_int_equal(run_one(e, d, BLK_WRITE, 1 << 20, buf, sizeof(buf)), -ENOSPC);
    e->img.fail_submits = 0;
    drive_close(d);
}

/* The whole disk reads back as want. */
static void assert_disk_holds(struct env *e, struct drive *d, const uint8_t *want)
{
    static uint8_t got[DISK_SIZE];

    memset(got, 0, sizeof(got));
    assert_int_equal(run_one(e, d, BLK_READ, 0, got, DISK_SIZE), 0);
    assert_memory_equal(got, want, DISK_SIZE);
}

static void test_qcow2_does_all_its_io_through_the_layer_below(void **state)
{
    struct env *e = *state;
    static uint8_t want[DISK_SIZE];
    static const uint64_t at[] = { 0, 12288, 2 << 20, (4 << 20) - 8192, 700 * 512 };
    struct drive *d;
    char path[] = "/var/tmp/mpqemu-layers-XXXXXX", options[128];
    int fd;

    make_qcow2(&e->img);
    d = open_on_mem(e, "");         /* probed through the stub */
    assert_string_equal(drive_format_name(d), "qcow2");
    assert_int_equal(d->size, DISK_SIZE);
    memset(want, 0, sizeof(want));
    for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        fill(want + at[i], 8192, i + 1);
        assert_int_equal(run_one(e, d, BLK_WRITE, at[i], want + at[i], 8192), 0);
    }
    assert_disk_holds(e, d, want);
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    drive_close(d);
    assert_true(e->img.preads > 0 && e->img.pwrites > 0 && e->img.syncs > 0);
    assert_true(e->img.submits >= sizeof(at) / sizeof(at[0]));

    /* What it left in the layer below is an image: ours again, and through a real file. */
    d = open_on_mem(e, ",readonly=on");
    assert_disk_holds(e, d, want);
    drive_close(d);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, e->img.data, e->img.len), (ssize_t)e->img.len);
    close(fd);
    snprintf(options, sizeof(options), "id=f0,file=%s,readonly=on", path);
    {
        char *err = NULL;
        struct opts *o = opts_parse(options, NULL, &err);

        d = drive_open(o, e->aio, &err);
        opts_free(o);
        if (!d) {
            fail_msg("open: %s", err);
        }
    }
    assert_disk_holds(e, d, want);
    drive_close(d);
    unlink(path);
}

/* Whether the bytes at [offset, offset+len) would survive a crash as they are now. */
static bool durable(const struct mem_image *img, uint64_t offset, uint64_t len)
{
    return offset + len <= img->durable_len &&
           !memcmp(img->durable + offset, img->data + offset, len);
}

static unsigned durable_refcount(const struct mem_image *img, uint64_t offset)
{
    const uint8_t *p = img->durable + REFBLOCK_AT + 2 * (offset / CLUSTER);

    return (unsigned)p[0] << 8 | p[1];
}

static unsigned tables_written, entries_checked;

/* Every entry a table write makes visible must point at a cluster that is durable and counted. */
static void check_pointers_are_durable(struct mem_image *img, const uint8_t *buf, uint64_t len,
                                       uint64_t offset)
{
    /* The L1 table, or an L2 table (whole clusters past the image's first four). */
    if (offset != L1_AT && !(len == CLUSTER && offset >= 4 * CLUSTER)) {
        return;
    }
    tables_written++;
    for (uint64_t i = 0; i + 8 <= len; i += 8) {
        uint64_t target = get_be64(buf + i) & OFFSET_MASK;

        if (target) {
            assert_true(durable(img, target, CLUSTER));
            assert_int_equal(durable_refcount(img, target), 1);
            entries_checked++;
        }
    }
}

/*
 * docs/qcow2.md's order, seen from below: when a table entry reaches the
 * file, the cluster it points to (data, or an L2 table) and its refcount
 * are already durable; so the image is consistent whenever the process dies.
 */
static void test_qcow2_orders_its_writes(void **state)
{
    struct env *e = *state;
    uint8_t buf[CLUSTER];
    struct drive *d;

    make_qcow2(&e->img);
    e->img.before_pwrite = check_pointers_are_durable;
    tables_written = entries_checked = 0;
    d = open_on_mem(e, "");
    for (unsigned i = 0; i < 12; i++) {
        /* Whole clusters, each written once: the data in the file is final. */
        uint64_t at = (uint64_t)(i * 37 % 1024) * CLUSTER;

        fill(buf, sizeof(buf), i);
        assert_int_equal(run_one(e, d, BLK_WRITE, at, buf, sizeof(buf)), 0);
        if (i % 4 == 3) {
            unsigned flushes = e->img.flushes;

            assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
            /* The guest's flush reaches the layer below, after the writeback. */
            assert_int_equal(e->img.flushes, flushes + 1);
        }
    }
    drive_close(d);
    e->img.before_pwrite = NULL;
    assert_true(tables_written >= 4);
    assert_true(entries_checked >= 12);
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_raw_passes_the_request_itself_down),
        CASE(test_read_only_is_checked_above_the_format),
        CASE(test_errors_from_below_reach_the_caller),
        CASE(test_qcow2_does_all_its_io_through_the_layer_below),
        CASE(test_qcow2_orders_its_writes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
