// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Formats over a stub file layer that keeps the image in memory: raw
 * passes the caller's request down untouched; qcow2 does all its I/O,
 * data and metadata, through the layer below (there is no file to reach
 * any other way), never waits for it (the stub completes requests only
 * when the test says so), and orders its writes as docs/qcow2.md says
 * (the stub checks, at every metadata write and flush, that what could
 * survive a crash is a consistent image).
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
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "block/file-layer.h"
#include "util/guarded-copy.h"
#include "util/loop.h"
#include "util/opts.h"

/* --- the stub file layer ----------------------------------------------------- */

struct mem_image;
typedef void check_fn(struct mem_image *img, enum blk_op op, uint64_t offset,
                      const uint8_t *bytes, uint64_t len);

/* The image's bytes and what happened to them; outlives the file layers opened on it. */
struct mem_image {
    uint8_t *data;
    uint64_t len, cap;
    uint8_t *durable;               /* the bytes as of the last sync: what survives a crash */
    uint64_t durable_len, durable_cap;
    unsigned preads, pwrites, syncs;    /* synchronous calls */
    unsigned submits, reads, writes, flushes;
    int fail_submits;               /* async I/O completes with this, when not 0 */
    const struct blk_io *last_io;   /* the last request submitted */
    struct iovec *last_iov;
    bool hold;                      /* async requests wait for release_held() */
    unsigned held;
    unsigned sync_delay_ms;         /* what a synchronous call costs: slow storage */
    uint64_t watch_offset;          /* reads of this offset are counted */
    unsigned watch_reads;
    /* Fault injection: the fail_countdown-th async request of fail_op fails with fail_with. */
    enum blk_op fail_op;
    unsigned fail_countdown;
    int fail_with;
    bool fault_hit;
    /* Called before a write or flush (async or not) takes effect. */
    check_fn *check;
    bool fail_refblock_writes;      /* async writes into refcount blocks fail (EIO) */
};

struct mem_req;

struct mem_file {
    struct blk_file base;
    struct mem_image *img;
    struct mem_req *pending, *pending_tail;     /* in submission order */
};

/* An asynchronous request: it takes effect when it completes, from the loop. */
struct mem_req {
    struct loop_bh bh;
    struct mem_file *file;
    struct blk_io *io;
    bool held;
    struct mem_req *next;
};

static struct mem_file *mem_of(const struct blk_file *f)
{
    return (struct mem_file *)((char *)f - offsetof(struct mem_file, base));
}

/* Room for len bytes in *buf of capacity *cap, doubling it (a file grows a write at a time). */
static void reserve(uint8_t **buf, uint64_t *cap, uint64_t len)
{
    if (len > *cap) {
        *cap = len > 2 * *cap ? len : 2 * *cap;
        *buf = realloc(*buf, *cap);
        assert_non_null(*buf);
    }
}

static void grow(struct mem_image *img, uint64_t end)
{
    if (end > img->len) {
        reserve(&img->data, &img->cap, end);
        memset(img->data + img->len, 0, end - img->len);
        img->len = end;
    }
}

static void make_durable(struct mem_image *img)
{
    reserve(&img->durable, &img->durable_cap, img->len ? img->len : 1);
    memcpy(img->durable, img->data, img->len);
    img->durable_len = img->len;
}

static void take_write(struct mem_image *img, uint64_t offset, const uint8_t *bytes, uint64_t len)
{
    if (img->check) {
        img->check(img, BLK_WRITE, offset, bytes, len);
    }
    grow(img, offset + len);
    memcpy(img->data + offset, bytes, len);
}

static void take_flush(struct mem_image *img)
{
    if (img->check) {
        img->check(img, BLK_FLUSH, 0, NULL, 0);
    }
    make_durable(img);
}

static bool inject_fault(struct mem_image *img, enum blk_op op)
{
    if (img->fail_countdown && op == img->fail_op && --img->fail_countdown == 0) {
        img->fault_hit = true;
        return true;
    }
    return false;
}

static bool in_refcount_block(const struct mem_image *img, uint64_t offset);

static int apply(struct mem_image *img, struct blk_io *io)
{
    uint64_t len = io->op == BLK_READ || io->op == BLK_WRITE ? iov_size(io->iov, io->iovcnt)
                                                             : io->len;
    uint8_t *bytes;
    int r;

    if (img->fail_submits) {
        return img->fail_submits;
    }
    if (inject_fault(img, io->op)) {
        return img->fail_with;
    }
    switch (io->op) {
    case BLK_READ:
        img->reads++;
        img->watch_reads += io->offset == img->watch_offset;
        if (io->offset + len > img->len) {
            return -EIO;
        }
        return iov_from_buf(io->iov, io->iovcnt, 0, img->data + io->offset, len);
    case BLK_WRITE:
        img->writes++;
        if (img->fail_refblock_writes && in_refcount_block(img, io->offset)) {
            return -EIO;
        }
        bytes = malloc(len ? len : 1);
        assert_non_null(bytes);
        r = iov_to_buf(io->iov, io->iovcnt, 0, bytes, len);
        if (r == 0) {
            take_write(img, io->offset, bytes, len);
        }
        free(bytes);
        return r;
    case BLK_DISCARD:
    case BLK_WRITE_ZEROES:
        grow(img, io->offset + len);
        memset(img->data + io->offset, 0, len);
        return 0;
    case BLK_FLUSH:
        img->flushes++;
        take_flush(img);
        return 0;
    }
    return -EINVAL;
}

static void mem_complete(struct mem_req *r)
{
    struct mem_file *m = r->file;
    struct mem_req **p = &m->pending, *prev = NULL;
    struct blk_io *io = r->io;
    int result;

    while (*p != r) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = r->next;
    if (m->pending_tail == r) {
        m->pending_tail = prev;
    }
    m->img->held -= r->held;
    result = apply(m->img, io);
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
    if (m->pending_tail) {
        m->pending_tail->next = r;
    } else {
        m->pending = r;
    }
    m->pending_tail = r;
    loop_bh_init(&r->bh, on_mem_bh, r);
    if (m->img->hold) {
        r->held = true;
        m->img->held++;
    } else {
        loop_bh_schedule(blk_file_loop(f), &r->bh);
    }
}

/* Lets the held request k places after the oldest complete (from the loop). */
static void release_held_at(struct mem_file *m, unsigned k)
{
    for (struct mem_req *r = m->pending; r; r = r->next) {
        if (r->held && k-- == 0) {
            r->held = false;
            m->img->held--;
            loop_bh_schedule(blk_file_loop(&m->base), &r->bh);
            return;
        }
    }
}

/* Lets the n oldest held requests complete (from the loop). */
static void release_held(struct mem_file *m, unsigned n)
{
    for (struct mem_req *r = m->pending; r && n; r = r->next) {
        if (r->held) {
            r->held = false;
            m->img->held--;
            loop_bh_schedule(blk_file_loop(&m->base), &r->bh);
            n--;
        }
    }
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

/* A synchronous call: the loop waits for it. */
static void sync_call(struct mem_image *img, unsigned *count)
{
    (*count)++;
    if (img->sync_delay_ms) {
        usleep(img->sync_delay_ms * 1000);
    }
}

static int64_t mem_pread(struct blk_file *f, void *buf, uint64_t len, uint64_t offset)
{
    struct mem_image *img = mem_of(f)->img;
    uint64_t in = offset >= img->len ? 0 : img->len - offset < len ? img->len - offset : len;

    sync_call(img, &img->preads);
    if (in) {
        memcpy(buf, img->data + offset, in);
    }
    memset((uint8_t *)buf + in, 0, len - in);
    return (int64_t)in;
}

static int mem_pwrite(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset)
{
    struct mem_image *img = mem_of(f)->img;

    sync_call(img, &img->pwrites);
    take_write(img, offset, buf, len);
    return 0;
}

static int mem_sync(struct blk_file *f)
{
    struct mem_image *img = mem_of(f)->img;

    sync_call(img, &img->syncs);
    take_flush(img);
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

static unsigned sync_calls(const struct mem_image *img)
{
    return img->preads + img->pwrites + img->syncs;
}

/* --- the test's world ---------------------------------------------------------- */

struct env {
    struct loop *loop;
    struct aio_engine *aio;
    struct mem_image img;
    struct mem_file *file;          /* the last one opened */
    int pending;
    uint64_t release_seed;          /* run_to_completion(): held requests complete in its order */
};

struct io {
    struct blk_io blk;
    struct iovec iov;
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
    e->file = m;
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

/* Submits one request of io's; it completes through on_done. */
static void start_io(struct env *e, struct drive *d, struct io *io, enum blk_op op,
                     uint64_t offset, void *buf, size_t len)
{
    *io = (struct io){ .env = e, .iov = { buf, len } };
    io->blk = (struct blk_io){ .op = op, .offset = offset, .iov = &io->iov, .iovcnt = 1,
                               .len = len, .done = on_done, .opaque = io };
    e->pending++;
    drive_submit(d, &io->blk);
    /* Completion always comes from the loop, never from inside submit. */
    assert_false(io->done);
}

static int run_one(struct env *e, struct drive *d, enum blk_op op, uint64_t offset, void *buf,
                   size_t len)
{
    struct io io;

    start_io(e, d, &io, op, offset, buf, len);
    loop_run(e->loop);
    assert_true(io.done);
    return io.result;
}

/* Another device: the loop serves it while qcow2 waits for the layer below. */
struct ticker {
    struct loop_watch watch;
    int fd;
    struct loop *loop;
    unsigned ticks, until;
};

static void on_tick(void *opaque, uint32_t events)
{
    struct ticker *t = opaque;
    uint64_t v;

    (void)events;
    assert_int_equal(read(t->fd, &v, sizeof(v)), sizeof(v));
    if (++t->ticks == t->until) {
        loop_quit(t->loop, 0);
        return;
    }
    v = 1;
    assert_int_equal(write(t->fd, &v, sizeof(v)), sizeof(v));
}

/* Runs the loop for n ticks of the other device. */
static void serve_ticks(struct env *e, struct ticker *t, unsigned n)
{
    uint64_t v = 1;

    if (!t->loop) {
        t->loop = e->loop;
        t->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        assert_true(t->fd >= 0);
        assert_int_equal(loop_watch_add(e->loop, &t->watch, t->fd, EPOLLIN, on_tick, t), 0);
    }
    t->until = t->ticks + n;
    assert_int_equal(write(t->fd, &v, sizeof(v)), sizeof(v));
    /* The last request done quits the loop too: go on until the ticks are served. */
    while (t->ticks < t->until) {
        loop_run(e->loop);
    }
}

static void ticker_stop(struct env *e, struct ticker *t)
{
    if (t->loop) {
        loop_watch_remove(e->loop, &t->watch);
        close(t->fd);
        t->loop = NULL;
    }
}

/* --- qcow2 images --------------------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;

    for (int i = 0; i < bytes; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

enum { CLUSTER = 4096 };
#define DISK_SIZE (4ull << 20)
#define OFFSET_MASK 0x00fffffffffffe00ull
#define COPIED (1ull << 63)

/* Whether offset is in a refcount block the image's refcount table names. */
static bool in_refcount_block(const struct mem_image *img, uint64_t offset)
{
    uint64_t cs = 1ull << get_be(img->data + 20, 4), table = get_be(img->data + 48, 8);
    uint64_t entries = get_be(img->data + 56, 4) * cs / 8;

    for (uint64_t i = 0; i < entries && table + 8 * (i + 1) <= img->len; i++) {
        uint64_t block = get_be(img->data + table + 8 * i, 8) & OFFSET_MASK;

        if (block && offset >= block && offset < block + cs) {
            return true;
        }
    }
    return false;
}

/*
 * An empty qcow2 v3 image as qemu-img would make it, with 16-bit
 * refcounts: the header, the L1 table, the refcount table (one cluster),
 * one refcount block.
 */
static void make_qcow2_sized(struct mem_image *img, unsigned cluster_bits, uint64_t disk)
{
    uint64_t cs = 1ull << cluster_bits, per_l2 = cs << (cluster_bits - 3);
    uint64_t l1_entries = (disk + per_l2 - 1) / per_l2;
    uint64_t l1_clusters = (l1_entries * 8 + cs - 1) / cs;
    uint64_t reftable = 1 + l1_clusters, refblock = reftable + 1, used = refblock + 1;
    uint8_t *h;

    free(img->data);
    img->len = img->cap = used * cs;
    img->data = calloc(1, img->len);
    h = img->data;
    put_be(h, 0x514649fb, 4);               /* QFI\xfb */
    put_be(h + 4, 3, 4);                    /* version */
    put_be(h + 20, cluster_bits, 4);
    put_be(h + 24, disk, 8);
    put_be(h + 36, l1_entries, 4);
    put_be(h + 40, cs, 8);                  /* L1 table: the second cluster on */
    put_be(h + 48, reftable * cs, 8);
    put_be(h + 56, 1, 4);                   /* refcount table clusters */
    put_be(h + 96, 4, 4);                   /* refcount_order: 16 bits */
    put_be(h + 100, 104, 4);                /* header_length */
    put_be(img->data + reftable * cs, refblock * cs, 8);
    for (uint64_t c = 0; c < used; c++) {
        put_be(img->data + refblock * cs + 2 * c, 1, 2);
    }
    make_durable(img);
}

/* 4 KiB clusters, 4 MiB: two L2 tables. */
static void make_qcow2(struct mem_image *img)
{
    make_qcow2_sized(img, 12, DISK_SIZE);
}

/* A raw image of len zero bytes. */
static void make_raw(struct mem_image *img, uint64_t len)
{
    free(img->data);
    img->len = img->cap = len;
    img->data = calloc(1, len);
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
    }
}

/* --- what survives a crash -------------------------------------------------------- */

/* An image's bytes after a crash: the durable ones, with maybe one more write that made it. */
struct view {
    const uint8_t *base;
    uint64_t base_len;
    const uint8_t *over;
    uint64_t over_at, over_len;
};

static uint64_t view_len(const struct view *v)
{
    uint64_t end = v->over ? v->over_at + v->over_len : 0;

    return end > v->base_len ? end : v->base_len;
}

static uint64_t view_be(const struct view *v, uint64_t off, int bytes)
{
    uint8_t b[8] = { 0 };

    for (int i = 0; i < bytes; i++) {
        uint64_t at = off + (uint64_t)i;

        if (v->over && at >= v->over_at && at < v->over_at + v->over_len) {
            b[i] = v->over[at - v->over_at];
        } else if (at < v->base_len) {
            b[i] = v->base[at];
        }
    }
    return get_be(b, bytes);
}

/* Whether v holds want at [off, off+len). */
static bool view_equal(const struct view *v, uint64_t off, const uint8_t *want, uint64_t len)
{
    for (uint64_t done = 0; done < len;) {
        uint64_t at = off + done, n = len - done;

        if (v->over && at >= v->over_at && at < v->over_at + v->over_len) {
            n = n < v->over_at + v->over_len - at ? n : v->over_at + v->over_len - at;
            if (memcmp(v->over + (at - v->over_at), want + done, n)) {
                return false;
            }
        } else {
            if (v->over && at < v->over_at && v->over_at - at < n) {
                n = v->over_at - at;
            }
            if (at + n > v->base_len || memcmp(v->base + at, want + done, n)) {
                return false;
            }
        }
        done += n;
    }
    return true;
}

struct layout {
    unsigned cluster_bits, rb_bits;
    uint64_t cs, l1_off, rt_off;
    uint32_t l1_size, rt_clusters;
};

static void read_layout(const struct view *v, struct layout *l)
{
    l->cluster_bits = (unsigned)view_be(v, 20, 4);
    l->cs = 1ull << l->cluster_bits;
    l->l1_size = (uint32_t)view_be(v, 36, 4);
    l->l1_off = view_be(v, 40, 8);
    l->rt_off = view_be(v, 48, 8);
    l->rt_clusters = (uint32_t)view_be(v, 56, 4);
    assert_int_equal(view_be(v, 96, 4), 4);     /* the images here have 16-bit refcounts */
    l->rb_bits = l->cluster_bits + 3 - 4;
}

static uint64_t view_refcount(const struct view *v, const struct layout *l, uint64_t cluster)
{
    uint64_t bi = cluster >> l->rb_bits, block;

    if (bi * 8 >= (uint64_t)l->rt_clusters * l->cs) {
        return 0;
    }
    block = view_be(v, l->rt_off + bi * 8, 8) & OFFSET_MASK;
    return block ? view_be(v, block + 2 * (cluster & ((1ull << l->rb_bits) - 1)), 2) : 0;
}

enum use_kind { USE_NONE, USE_DATA, USE_L2, USE_OTHER };

/* How the image uses each cluster, counted. */
struct uses {
    uint32_t *count;
    uint8_t *kind;
    uint64_t n;
};

static void use(struct uses *u, const struct layout *l, uint64_t offset, enum use_kind kind)
{
    uint64_t c = offset >> l->cluster_bits;

    assert_true(c < u->n);
    u->count[c]++;
    u->kind[c] = (uint8_t)kind;
}

/*
 * A data cluster an L2 entry points to: within the image, and, with
 * data_final (every data cluster is written once), holding its final bytes
 * (those of img->data): it was synced before the entry could be.
 */
static void check_data(const struct view *v, const struct layout *l,
                       const struct mem_image *img, bool data_final, uint64_t data)
{
    if (data_final) {
        assert_true(data + l->cs <= img->len);
        if (!view_equal(v, data, img->data + data, l->cs)) {
            fail_msg("data cluster %#llx is pointed to before it is durable",
                     (unsigned long long)data);
        }
    }
}

/* Walks what v's header and tables point to, counting each cluster's uses. */
static void walk(const struct view *v, const struct layout *l, const struct mem_image *img,
                 bool data_final, struct uses *u)
{
    uint64_t len = view_len(v);

    u->n = (len > img->len ? len : img->len) / l->cs + 2;
    u->count = calloc(u->n, sizeof(*u->count));
    u->kind = calloc(u->n, 1);
    use(u, l, 0, USE_OTHER);
    for (uint64_t c = 0; c < ((uint64_t)l->l1_size * 8 + l->cs - 1) / l->cs; c++) {
        use(u, l, l->l1_off + c * l->cs, USE_OTHER);
    }
    for (uint64_t c = 0; c < l->rt_clusters; c++) {
        use(u, l, l->rt_off + c * l->cs, USE_OTHER);
    }
    for (uint64_t bi = 0; bi < (uint64_t)l->rt_clusters * l->cs / 8; bi++) {
        uint64_t block = view_be(v, l->rt_off + bi * 8, 8) & OFFSET_MASK;

        if (block) {
            assert_true(block + l->cs <= len);
            use(u, l, block, USE_OTHER);
        }
    }
    for (uint32_t i = 0; i < l->l1_size; i++) {
        uint64_t table = view_be(v, l->l1_off + 8ull * i, 8) & OFFSET_MASK;

        if (!table) {
            continue;
        }
        assert_true(table + l->cs <= len);
        use(u, l, table, USE_L2);
        for (uint64_t k = 0; k < l->cs / 8; k++) {
            uint64_t data = view_be(v, table + 8 * k, 8) & OFFSET_MASK;

            if (data) {
                use(u, l, data, USE_DATA);
                check_data(v, l, img, data_final, data);
            }
        }
    }
}

static void uses_free(struct uses *u)
{
    free(u->count);
    free(u->kind);
}

/*
 * v is a consistent image: every cluster it uses has a refcount at least
 * its uses (exact: equal, and nothing else counted: no leaks).
 */
static void assert_consistent(const struct view *v, const struct mem_image *img,
                              bool data_final, bool exact)
{
    struct layout l;
    struct uses u;

    read_layout(v, &l);
    walk(v, &l, img, data_final, &u);
    for (uint64_t c = 0; c < u.n; c++) {
        uint64_t rc = view_refcount(v, &l, c);

        if (rc < u.count[c] || (exact && rc != u.count[c])) {
            fail_msg("cluster %llu: refcount %llu, used %u times", (unsigned long long)c,
                     (unsigned long long)rc, u.count[c]);
        }
    }
    uses_free(&u);
}

/* The crash checker's state: how the durable image uses its clusters. */
static struct {
    bool data_final;
    unsigned checked;
    bool stale;                     /* the durable image changed since 'kind' was made */
    uint8_t *kind;
    uint64_t n, cs;
} crash;

static void note_durable_uses(const struct mem_image *img)
{
    struct view v = { img->durable, img->durable_len, NULL, 0, 0 };
    struct layout l;
    struct uses u;

    read_layout(&v, &l);
    walk(&v, &l, img, false, &u);
    free(crash.kind);
    crash.kind = u.kind;
    crash.n = u.n;
    crash.cs = l.cs;
    crash.stale = false;
    free(u.count);
}

/* The strongest use of the durable image's clusters a write touches. */
static enum use_kind touched_use(uint64_t offset, uint64_t len)
{
    enum use_kind most = USE_NONE;

    for (uint64_t c = offset / crash.cs; c <= (offset + len - 1) / crash.cs && c < crash.n; c++) {
        most = crash.kind[c] > most ? crash.kind[c] : most;
    }
    return most;
}

/* A write into durable L2 tables: each entry it sets points at a counted, durable cluster. */
static void check_l2_write(const struct view *v, const struct mem_image *img)
{
    struct layout l;

    read_layout(v, &l);
    for (uint64_t at = v->over_at & ~7ull; at < v->over_at + v->over_len; at += 8) {
        uint64_t data = view_be(v, at, 8) & OFFSET_MASK;

        if (data) {
            assert_true(view_refcount(v, &l, data >> l.cluster_bits) >= 1);
            check_data(v, &l, img, crash.data_final, data);
        }
    }
}

/*
 * Before a write: the image is consistent if this write, alone of those
 * not yet synced, survives a crash.  Before a flush: everything written so
 * far becomes durable, so it must be a consistent image now.
 */
static void check_crash_consistency(struct mem_image *img, enum blk_op op, uint64_t offset,
                                    const uint8_t *bytes, uint64_t len)
{
    struct view v = { img->durable, img->durable_len, bytes, offset, len };
    enum use_kind touched;

    if (op == BLK_FLUSH) {
        v = (struct view){ img->data, img->len, NULL, 0, 0 };
        assert_consistent(&v, img, false, false);
        crash.checked++;
        crash.stale = true;
        return;
    }
    if (!crash.kind || crash.stale) {
        note_durable_uses(img);
    }
    touched = len ? touched_use(offset, len) : USE_NONE;
    if (touched == USE_L2) {
        check_l2_write(&v, img);
        crash.checked++;
    } else if (touched == USE_OTHER) {
        assert_consistent(&v, img, crash.data_final, false);
        crash.checked++;
    }
}

static void crash_checks_on(struct mem_image *img, bool data_final)
{
    crash.data_final = data_final;
    crash.checked = 0;
    crash.stale = true;
    img->check = check_crash_consistency;
}

static void crash_checks_off(struct mem_image *img)
{
    img->check = NULL;
    free(crash.kind);
    crash.kind = NULL;
}

/* The image as it is now, and as it is durably, is consistent; exact: no leaks. */
static void assert_image_consistent(const struct mem_image *img, bool exact)
{
    struct view now = { img->data, img->len, NULL, 0, 0 };
    struct view durable = { img->durable, img->durable_len, NULL, 0, 0 };

    assert_consistent(&now, img, false, exact);
    assert_consistent(&durable, img, false, exact);
}

/* --- tests ------------------------------------------------------------------------ */

static void test_raw_passes_the_request_itself_down(void **state)
{
    struct env *e = *state;
    uint8_t buf[4096];
    struct io io;
    struct drive *d;

    make_raw(&e->img, 1 << 20);
    fill(e->img.data + 8192, 4096, 3);
    d = open_on_mem(e, ",format=raw");
    assert_string_equal(drive_format_name(d), "raw");
    assert_int_equal(d->size, 1 << 20);
    start_io(e, d, &io, BLK_READ, 8192, buf, sizeof(buf));
    /* No copy of the request, no copy of its iovecs: the file layer has the caller's. */
    assert_ptr_equal(e->img.last_io, &io.blk);
    assert_ptr_equal(e->img.last_iov, &io.iov);
    loop_run(e->loop);
    assert_int_equal(io.result, 0);
    assert_memory_equal(buf, e->img.data + 8192, 4096);
    /* The drive layer fails what is out of range (EIO); the layer below never sees it. */
    e->img.submits = 0;
    assert_int_equal(run_one(e, d, BLK_READ, (1 << 20) - 512, buf, 1024), -EIO);
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

/* The disk's first bytes read back as want. */
static void assert_disk_holds(struct env *e, struct drive *d, const uint8_t *want, uint64_t len)
{
    uint8_t *got = calloc(1, len);

    assert_int_equal(run_one(e, d, BLK_READ, 0, got, len), 0);
    assert_memory_equal(got, want, len);
    free(got);
}

/* The disk holds want; closed, it leaves an exact image (consistent, no leaks). */
static void close_exact(struct env *e, struct drive *d, const uint8_t *want, uint64_t len)
{
    assert_disk_holds(e, d, want, len);
    drive_close(d);
    assert_image_consistent(&e->img, true);
}

static void test_qcow2_does_all_its_io_through_the_layer_below(void **state)
{
    struct env *e = *state;
    static uint8_t want[DISK_SIZE];
    static const uint64_t at[] = { 0, 12288, 2 << 20, (4 << 20) - 8192, 700 * 512 };
    struct drive *d;
    char path[] = "/var/tmp/mpqemu-layers-XXXXXX", options[128];
    unsigned opened;
    int fd;

    make_qcow2(&e->img);
    d = open_on_mem(e, "");         /* probed through the stub */
    assert_string_equal(drive_format_name(d), "qcow2");
    assert_int_equal(d->size, DISK_SIZE);
    assert_true(e->img.preads > 0);     /* opening reads the header and tables */
    opened = sync_calls(&e->img);
    memset(want, 0, sizeof(want));
    for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        fill(want + at[i], 8192, i + 1);
        assert_int_equal(run_one(e, d, BLK_WRITE, at[i], want + at[i], 8192), 0);
    }
    assert_disk_holds(e, d, want, DISK_SIZE);
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    /* After open, metadata too went down as requests the loop completes: no call waited. */
    assert_int_equal(sync_calls(&e->img), opened);
    assert_true(e->img.writes > sizeof(at) / sizeof(at[0]) && e->img.flushes > 0);
    drive_close(d);

    /* What it left in the layer below is an image: ours again, and through a real file. */
    d = open_on_mem(e, ",readonly=on");
    assert_disk_holds(e, d, want, DISK_SIZE);
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
    assert_disk_holds(e, d, want, DISK_SIZE);
    drive_close(d);
    unlink(path);
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
    crash_checks_on(&e->img, true);
    d = open_on_mem(e, "");
    for (unsigned i = 0; i < 12; i++) {
        /* Whole clusters, each written once: the data in the file is final. */
        uint64_t at = (uint64_t)(i * 37 % 1024) * CLUSTER;

        fill(buf, sizeof(buf), i);
        assert_int_equal(run_one(e, d, BLK_WRITE, at, buf, sizeof(buf)), 0);
        if (i % 4 == 3) {
            unsigned flushes = e->img.flushes;

            assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
            /* The guest's flush reaches the layer below: all it wrote is durable. */
            assert_true(e->img.flushes > flushes);
            assert_int_equal(e->img.durable_len, e->img.len);
            assert_memory_equal(e->img.durable, e->img.data, e->img.len);
        }
    }
    drive_close(d);
    crash_checks_off(&e->img);
    assert_true(crash.checked >= 8);
    assert_image_consistent(&e->img, true);
}

/* A random order of the n slots, from seed. */
static unsigned *shuffled(unsigned n, uint64_t seed)
{
    unsigned *p = malloc(n * sizeof(*p));

    for (unsigned i = 0; i < n; i++) {
        p[i] = i;
    }
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        j = (unsigned)((seed >> 33) % (i + 1));
        unsigned t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

enum { SLOT = 4096, DEPTH = 64 };

/*
 * Many allocating writes in flight at once, on an image of 512-byte
 * clusters: more refcount blocks than the cache holds (blocks leave it
 * dirty, new ones are made), the refcount table grows, L2 tables come and
 * go.  At every metadata write and flush, what could survive a crash is
 * consistent; at the end the image is exact (no leak) and reads back.
 */
static void test_qcow2_orders_many_concurrent_allocations(void **state)
{
    struct env *e = *state;
    enum { DISK = 8 << 20, SLOTS = DISK / SLOT };
    unsigned *order = shuffled(SLOTS, 42);
    uint8_t *want = calloc(1, DISK);
    static struct io ios[DEPTH], flush;
    struct drive *d;
    uint64_t first_len;

    make_qcow2_sized(&e->img, 9, DISK);
    first_len = e->img.len;
    crash_checks_on(&e->img, true);
    d = open_on_mem(e, "");
    for (unsigned done = 0; done < SLOTS; done += DEPTH) {
        for (unsigned i = 0; i < DEPTH; i++) {
            uint64_t at = (uint64_t)order[done + i] * SLOT;

            fill(want + at, SLOT, done + i);
            start_io(e, d, &ios[i], BLK_WRITE, at, want + at, SLOT);
        }
        if (done % (4 * DEPTH) == 0) {
            start_io(e, d, &flush, BLK_FLUSH, 0, NULL, 0);
        }
        loop_run(e->loop);
        for (unsigned i = 0; i < DEPTH; i++) {
            assert_true(ios[i].done);
            assert_int_equal(ios[i].result, 0);
        }
    }
    assert_disk_holds(e, d, want, DISK);
    drive_close(d);
    crash_checks_off(&e->img);
    print_message("# %u crash checks, image %llu -> %llu bytes\n", crash.checked,
                  (unsigned long long)first_len, (unsigned long long)e->img.len);
    /* The file outgrew what one refcount table cluster counts (64 blocks of 128 KiB). */
    assert_true(get_be(e->img.data + 56, 4) > 1);
    assert_true(crash.checked >= 20);
    assert_image_consistent(&e->img, true);
    d = open_on_mem(e, ",readonly=on");
    assert_disk_holds(e, d, want, DISK);
    drive_close(d);
    free(want);
    free(order);
}

/* Writes one pattern into cluster 'first' of every L2 table of d (512-byte clusters). */
static void write_one_cluster_per_table(struct env *e, struct drive *d, uint64_t tables,
                                        uint8_t *want)
{
    enum { TABLE_SPAN = 512 * 64 };

    for (uint64_t t = 0; t < tables; t++) {
        fill(want + t * TABLE_SPAN, 512, (unsigned)t);
        assert_int_equal(run_one(e, d, BLK_WRITE, t * TABLE_SPAN, want + t * TABLE_SPAN, 512), 0);
    }
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
}

/*
 * An image of 512-byte clusters whose first 'tables' L2 tables each map
 * one written cluster, opened again: its caches are cold.
 */
static struct drive *open_cold(struct env *e, uint64_t disk, uint64_t tables, uint8_t *want)
{
    struct drive *d;

    make_qcow2_sized(&e->img, 9, disk);
    d = open_on_mem(e, "");
    write_one_cluster_per_table(e, d, tables, want);
    drive_close(d);
    return open_on_mem(e, "");
}

/* Completes held requests a few at a time, serving the other device in between. */
static void release_until_done(struct env *e, struct ticker *t, unsigned step)
{
    while (e->pending) {
        release_held(e->file, step);
        serve_ticks(e, t, 2);
    }
}

/*
 * The layer below completes nothing until the test says so: a burst of
 * allocating writes (each needing its L2 table loaded, refcount blocks
 * loaded and made, refcounts written) and reads all wait on metadata I/O,
 * yet every submit returns at once, no synchronous call is made, and the
 * loop keeps serving another device.  Many requests needing the same
 * table wait on one load of it.
 */
static void test_qcow2_metadata_io_never_blocks_the_loop(void **state)
{
    struct env *e = *state;
    enum { DISK = 8 << 20, TABLES = DISK / (512 * 64), TABLE_SPAN = 512 * 64, SAME = 32 };
    uint8_t *want = calloc(1, DISK), *got = calloc(SAME, 512);
    static struct io writes[TABLES], reads[SAME];
    struct ticker t = { 0 };
    unsigned before;
    struct drive *d;
    double t0, in_submit;
    struct timespec ts;

    /* Cold caches; from here on, the layer below is slow and answers only when told. */
    d = open_cold(e, DISK, TABLES, want);
    e->img.hold = true;
    e->img.sync_delay_ms = 20;
    e->img.watch_offset = get_be(e->img.data + 512, 8) & OFFSET_MASK;  /* table 0 */
    e->img.watch_reads = 0;
    before = sync_calls(&e->img);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    for (unsigned i = 0; i < TABLES; i++) {
        uint64_t at = (uint64_t)(i + 1) * TABLE_SPAN - 512;     /* a fresh cluster */

        fill(want + at, 512, 1000 + i);
        start_io(e, d, &writes[i], BLK_WRITE, at, want + at, 512);
    }
    for (unsigned i = 0; i < SAME; i++) {
        start_io(e, d, &reads[i], BLK_READ, i * 512ull, got + i * 512, 512);
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    in_submit = (double)ts.tv_sec + ts.tv_nsec / 1e9 - t0;
    serve_ticks(e, &t, 50);
    print_message("# %u requests submitted in %.3f s; %u synchronous calls; %u held\n",
                  TABLES + SAME, in_submit, sync_calls(&e->img) - before, e->img.held);
    assert_int_equal(sync_calls(&e->img), before);
    assert_int_equal(e->pending, TABLES + SAME);
    assert_true(e->img.held > 0);
    /* Table 0: one load, every request on it parked there. */
    assert_int_equal(e->img.watch_reads, 0);
    release_until_done(e, &t, 7);
    assert_int_equal(e->img.watch_reads, 1);
    assert_int_equal(sync_calls(&e->img), before);
    for (unsigned i = 0; i < TABLES; i++) {
        assert_int_equal(writes[i].result, 0);
    }
    for (unsigned i = 0; i < SAME; i++) {
        assert_int_equal(reads[i].result, 0);
    }
    assert_memory_equal(got, want, SAME * 512);
    e->img.hold = false;
    e->img.sync_delay_ms = 0;
    ticker_stop(e, &t);
    close_exact(e, d, want, DISK);
    free(want);
    free(got);
}

/*
 * More tables wanted at once than the L2 cache holds (512): as many loads
 * as slots are in flight, the other requests park until a slot frees;
 * tables leave the cache while loads of others are in flight, dirty ones
 * only after a writeback.
 */
static void test_qcow2_eviction_while_loads_are_in_flight(void **state)
{
    struct env *e = *state;
    enum { DISK = 20 << 20, TABLE_SPAN = 512 * 64, TABLES = DISK / TABLE_SPAN };
    uint8_t *want = calloc(1, DISK), *got = calloc(TABLES, 512);
    static struct io ios[TABLES];
    struct ticker t = { 0 };
    struct drive *d;

    d = open_cold(e, DISK, TABLES, want);
    e->img.hold = true;
    for (unsigned i = 0; i < TABLES; i++) {
        start_io(e, d, &ios[i], BLK_READ, (uint64_t)i * TABLE_SPAN, got + i * 512ull, 512);
    }
    serve_ticks(e, &t, 5);
    /* One load per slot, no more. */
    assert_int_equal(e->img.held, 512);
    release_until_done(e, &t, 37);
    for (unsigned i = 0; i < TABLES; i++) {
        assert_int_equal(ios[i].result, 0);
        assert_memory_equal(got + i * 512ull, want + (uint64_t)i * TABLE_SPAN, 512);
    }

    /* Writes into every table: dirty tables fill the cache and leave it through writebacks. */
    crash_checks_on(&e->img, true);
    for (unsigned i = 0; i < TABLES; i++) {
        uint64_t at = (uint64_t)i * TABLE_SPAN + 1024;

        fill(want + at, 512, 7 * i);
        start_io(e, d, &ios[i], BLK_WRITE, at, want + at, 512);
    }
    release_until_done(e, &t, 53);
    for (unsigned i = 0; i < TABLES; i++) {
        assert_int_equal(ios[i].result, 0);
    }
    e->img.hold = false;
    ticker_stop(e, &t);
    assert_disk_holds(e, d, want, DISK);
    drive_close(d);
    crash_checks_off(&e->img);
    assert_image_consistent(&e->img, true);
    free(want);
    free(got);
}

/* Where write i of the fault test goes: 8 KiB apiece, over tables old and new, some across two. */
static uint64_t fault_test_offset(unsigned i)
{
    return (uint64_t)i * (512 * 64 + 8192) + 4096;
}

/*
 * After a request that failed: each cluster of [at, at+len) holds, whole,
 * either what want says or what 'other' does; want becomes what it holds.
 */
static void expect_either(struct env *e, struct drive *d, uint8_t *want, const uint8_t *other,
                          uint64_t at, uint64_t len)
{
    uint8_t *got = malloc(len);

    assert_int_equal(run_one(e, d, BLK_READ, at, got, len), 0);
    for (uint64_t c = 0; c < len; c += 512) {
        assert_true(!memcmp(got + c, want + at + c, 512) || !memcmp(got + c, other + c, 512));
    }
    memcpy(want + at, got, len);
    free(got);
}

/* Runs n requests of the fault test at once: each succeeds or fails with the fault. */
static void run_fault_batch(struct env *e, struct io *ios, unsigned n)
{
    loop_run(e->loop);
    for (unsigned i = 0; i < n; i++) {
        assert_true(ios[i].done);
        assert_true(ios[i].result == 0 || (e->img.fault_hit && ios[i].result == -EIO));
    }
}

/*
 * A fixed workload after a reopen -- allocating writes over several L2
 * tables and refcount blocks, a flush, more writes with a discard and a
 * flush -- with the n-th asynchronous request of one kind failing: true
 * once n is past all of them.
 */
static bool run_with_fault(struct env *e, enum blk_op op, unsigned n)
{
    enum { DISK = 2 << 20, FIRST = 12, WRITES = 16, LEN = 8192, DISCARD = WRITES,
           FLUSH1, FLUSH2, REQUESTS };
    static const uint8_t zeros[LEN];
    uint8_t *want = calloc(1, DISK);
    static struct io ios[REQUESTS];
    struct drive *d;
    bool hit;

    d = open_cold(e, DISK, 4, want);
    crash_checks_on(&e->img, true);
    e->img.fail_op = op;
    e->img.fail_countdown = n;
    e->img.fail_with = -EIO;
    e->img.fault_hit = false;
    for (unsigned i = 0; i < WRITES; i++) {
        fill(want + fault_test_offset(i), LEN, i + 1);
    }
    for (unsigned i = 0; i < FIRST; i++) {
        start_io(e, d, &ios[i], BLK_WRITE, fault_test_offset(i), want + fault_test_offset(i), LEN);
    }
    run_fault_batch(e, ios, FIRST);
    start_io(e, d, &ios[FLUSH1], BLK_FLUSH, 0, NULL, 0);
    run_fault_batch(e, ios + FLUSH1, 1);
    for (unsigned i = FIRST; i < WRITES; i++) {
        start_io(e, d, &ios[i], BLK_WRITE, fault_test_offset(i), want + fault_test_offset(i), LEN);
    }
    start_io(e, d, &ios[DISCARD], BLK_DISCARD, fault_test_offset(1), NULL, LEN);
    start_io(e, d, &ios[FLUSH2], BLK_FLUSH, 0, NULL, 0);
    run_fault_batch(e, ios + FIRST, REQUESTS - FIRST);
    hit = e->img.fault_hit;
    e->img.fail_countdown = 0;

    /* What failed left each of its clusters old or new, whole. */
    for (unsigned i = 0; i < WRITES; i++) {
        if (ios[i].result < 0 && i == 1 && ios[DISCARD].result == 0) {
            memset(want + fault_test_offset(1), 0, LEN);    /* discarded since */
        } else if (ios[i].result < 0) {
            expect_either(e, d, want, zeros, fault_test_offset(i), LEN);
        }
    }
    if (ios[DISCARD].result < 0 && ios[1].result == 0) {
        expect_either(e, d, want, zeros, fault_test_offset(1), LEN);
    } else if (ios[DISCARD].result == 0) {
        memset(want + fault_test_offset(1), 0, LEN);
    }
    /* With the layer below well again, the rest is all there, and stays. */
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    assert_disk_holds(e, d, want, DISK);
    drive_close(d);
    crash_checks_off(&e->img);
    assert_image_consistent(&e->img, false);
    d = open_on_mem(e, ",readonly=on");
    assert_disk_holds(e, d, want, DISK);
    drive_close(d);
    free(want);
    return !hit;
}

/*
 * Errors from the layer below in the middle of chained allocations and
 * writebacks: every read, write and flush in turn fails once.  The request
 * that needed it fails cleanly (nothing leaks, ASan watching), the others
 * complete, and what could survive a crash is consistent throughout.
 */
static void test_qcow2_errors_below_during_allocation(void **state)
{
    static const enum blk_op ops[] = { BLK_READ, BLK_WRITE, BLK_FLUSH };
    static const char *const names[] = { [BLK_READ] = "read", [BLK_WRITE] = "write",
                                         [BLK_FLUSH] = "flush" };
    struct env *e = *state;

    for (unsigned k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        unsigned n = 1;

        while (!run_with_fault(e, ops[k], n)) {
            n++;
        }
        print_message("# each %s in turn failed: %u of them\n", names[ops[k]], n - 1);
        assert_true(n > 3);
    }
}

/*
 * Runs the loop until every request started is done; when it has nothing
 * left to run, one held request of the layer below completes, chosen by
 * e->release_seed.  A request that never completes fails the test instead
 * of hanging it: the loop went idle with it pending and nothing held, or
 * went on without end (something retried that never succeeds).
 */
static void run_to_completion(struct env *e)
{
    enum { MAX_ROUNDS = 10000 };    /* 100 times what the load test takes */

    for (unsigned rounds = 0; e->pending; rounds++) {
        if (rounds == MAX_ROUNDS) {
            fail_msg("%d requests still in flight after %u loop rounds", e->pending, rounds);
        }
        if (loop_run_once(e->loop, 0) == 0) {
            if (!e->img.held) {
                fail_msg("%d requests never complete: the loop went idle", e->pending);
            }
            e->release_seed = e->release_seed * 6364136223846793005ull + 1442695040888963407ull;
            release_held_at(e->file, (unsigned)((e->release_seed >> 33) % e->img.held));
        }
    }
}

/* 512-byte writes at at[0..n) at once, each a pattern of its own (into want): all succeed. */
static void run_writes(struct env *e, struct drive *d, uint8_t *want, const uint64_t *at,
                       unsigned n)
{
    struct io *ios = calloc(n, sizeof(*ios));

    for (unsigned i = 0; i < n; i++) {
        fill(want + at[i], 512, i + 2);
        start_io(e, d, &ios[i], BLK_WRITE, at[i], want + at[i], 512);
    }
    run_to_completion(e);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(ios[i].result, 0);
    }
    free(ios);
}

/*
 * An L1 entry without its COPIED flag though its table's refcount is 1
 * (qemu-img check counts it as a corruption; a write marks the table
 * ours): four allocating writes into that table each take a cache slot
 * for a new table they may have to make, the fourth taking the table's own
 * slot -- the cache has four.  Each gives its slot back once the table
 * turned out to be ours: kept until the write ended, every slot would be
 * held by a write waiting for a slot to load the table into (fuzz-qcow2's
 * found-corrupt-image-requests-never-complete).
 */
static void test_qcow2_no_slot_is_held_while_waiting_for_one(void **state)
{
    struct env *e = *state;
    enum { DISK = 64 << 10, WRITES = 4 };     /* two L2 tables: the smallest cache, 4 slots */
    static const uint64_t at[WRITES] = { 512, 1024, 1536, 2048 };
    uint8_t *want = calloc(1, DISK);
    struct drive *d;
    uint64_t l1e;

    make_qcow2_sized(&e->img, 9, DISK);
    d = open_on_mem(e, "");
    fill(want, 512, 1);
    assert_int_equal(run_one(e, d, BLK_WRITE, 0, want, 512), 0);
    drive_close(d);
    l1e = get_be(e->img.data + 512, 8);
    assert_true(l1e & COPIED);
    put_be(e->img.data + 512, l1e & ~COPIED, 8);
    make_durable(&e->img);

    d = open_on_mem(e, "");
    run_writes(e, d, want, at, WRITES);
    close_exact(e, d, want, DISK);
    assert_true(get_be(e->img.data + 512, 8) & COPIED);
    free(want);
}

/*
 * Four writes into the four L2 tables of a new image each take a cache
 * slot for their new table, all four the cache has; a fifth write, into
 * the first table, finds none and waits.  The first write's table is made
 * (the lane waits for the refcount block to load), then the others: the
 * slots become dirty tables, which only a writeback frees -- the waiting
 * write must be told, to look again and ask for one.  Not told, it waited
 * for ever.
 */
static void test_qcow2_a_reserved_slot_become_a_table_wakes_waiters(void **state)
{
    struct env *e = *state;
    enum { DISK = 128 << 10, TABLE_SPAN = 512 * 64, WRITES = 5 };
    static const uint64_t at[WRITES] = { 0, TABLE_SPAN, 2 * TABLE_SPAN, 3 * TABLE_SPAN, 4096 };
    uint8_t *want = calloc(1, DISK);
    struct drive *d;

    make_qcow2_sized(&e->img, 9, DISK);
    d = open_on_mem(e, "");
    run_writes(e, d, want, at, WRITES);
    close_exact(e, d, want, DISK);
    free(want);
}

/*
 * Every L2 slot holds a dirty table (512 of the image's 640) and the layer
 * below fails every request: a read that needs a slot for another table
 * waits for a writeback, which fails.  The read fails with its error --
 * QEMU's too fails a request whose cache flush fails -- rather than ask
 * for one writeback after another for ever.  With the layer well again,
 * the tables are written by the next flush, and nothing was lost.
 */
static void test_qcow2_a_failed_writeback_fails_who_waits_for_its_slots(void **state)
{
    struct env *e = *state;
    enum { DISK = 20 << 20, TABLE_SPAN = 512 * 64, TABLES = DISK / TABLE_SPAN, SLOTS = 512 };
    uint8_t *want = calloc(1, DISK), buf[512];
    uint64_t *at = calloc(SLOTS, sizeof(*at));
    struct drive *d = open_cold(e, DISK, TABLES, want);
    struct io read;

    for (unsigned i = 0; i < SLOTS; i++) {
        at[i] = (uint64_t)i * TABLE_SPAN + 1024;    /* a new cluster: the table changes */
    }
    run_writes(e, d, want, at, SLOTS);
    e->img.fail_submits = -EIO;
    start_io(e, d, &read, BLK_READ, (TABLES - 1) * (uint64_t)TABLE_SPAN, buf, sizeof(buf));
    run_to_completion(e);
    assert_int_equal(read.result, -EIO);
    e->img.fail_submits = 0;
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    close_exact(e, d, want, DISK);
    free(at);
    free(want);
}

/*
 * The same for refcount blocks: clusters released over more blocks than
 * the cache holds (32), the refcount blocks' writes failing.  The release
 * needs a slot for the 33rd block, all 32 holding counts not yet written;
 * the round that would write them fails, and the release fails with it
 * (the clusters it did not count down leak), rather than start one round
 * after another for ever.  With writes well again, the counts it did
 * change are written by the next flush.
 */
static void test_qcow2_a_failed_round_fails_who_waits_for_its_slots(void **state)
{
    struct env *e = *state;
    enum { BLOCK_SPAN = 256 * 512, DISK = 36 * BLOCK_SPAN, PIECE = 64 << 10 };
    uint8_t *want = calloc(1, DISK);
    struct drive *d;

    make_qcow2_sized(&e->img, 9, DISK);
    d = open_on_mem(e, "");
    for (uint64_t at = 0; at < DISK; at += PIECE) {
        fill(want + at, PIECE, (unsigned)(at / PIECE));
        assert_int_equal(run_one(e, d, BLK_WRITE, at, want + at, PIECE), 0);
    }
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    assert_int_equal(run_one(e, d, BLK_DISCARD, 0, NULL, DISK), 0);
    memset(want, 0, DISK);
    e->img.fail_refblock_writes = true;
    {
        struct io flush;

        start_io(e, d, &flush, BLK_FLUSH, 0, NULL, 0);
        run_to_completion(e);
        assert_int_equal(flush.result, -EIO);
    }
    e->img.fail_refblock_writes = false;
    assert_int_equal(run_one(e, d, BLK_FLUSH, 0, NULL, 0), 0);
    assert_disk_holds(e, d, want, DISK);
    drive_close(d);
    assert_image_consistent(&e->img, false);
    free(want);
}

/* The load test: requests in flight at once, each on a chunk of its own. */
enum { LOAD_CHUNK = 1024, LOAD_DEPTH = 24 };

/*
 * One request of the load test on the chunk at 'at', of one of five kinds:
 * what it leaves there goes into want; a read reads into got.  True for a
 * read.
 */
static bool start_load_request(struct env *e, struct drive *d, struct io *io, uint8_t *want,
                               uint8_t *got, uint64_t at, unsigned kind, unsigned seed)
{
    switch (kind % 5) {
    case 0:         /* allocating, whole clusters */
        fill(want + at, LOAD_CHUNK, seed);
        start_io(e, d, io, BLK_WRITE, at, want + at, LOAD_CHUNK);
        return false;
    case 1:         /* allocating, part of a cluster: copy-on-write */
        fill(want + at + 256, 512, seed);
        start_io(e, d, io, BLK_WRITE, at + 256, want + at + 256, 512);
        return false;
    case 2:         /* zeros written into part of a cluster, the next one unmapped */
        memset(want + at + 256, 0, LOAD_CHUNK - 256);
        start_io(e, d, io, BLK_WRITE_ZEROES, at + 256, NULL, LOAD_CHUNK - 256);
        return false;
    case 3:         /* a cluster unmapped, zeros written into part of the next */
        memset(want + at, 0, LOAD_CHUNK - 256);
        start_io(e, d, io, BLK_DISCARD, at, NULL, LOAD_CHUNK - 256);
        return false;
    default:
        start_io(e, d, io, BLK_READ, at, got + at, LOAD_CHUNK);
        return true;
    }
}

/*
 * A new image of 'disk' bytes in 512-byte clusters under load, in batches:
 * LOAD_DEPTH requests at once on chunks spread over every L2 table, and a
 * flush, while the layer below completes one held request at a time in
 * an order of 'seed''s.  Every request succeeds, reads find what the
 * earlier batches left, and the image is exact.
 */
static void run_load(struct env *e, uint64_t disk, unsigned batches, uint64_t seed)
{
    uint8_t *want = calloc(1, disk), *got = malloc(disk);
    static struct io ios[LOAD_DEPTH], flush;
    bool read[LOAD_DEPTH];
    struct drive *d;

    make_qcow2_sized(&e->img, 9, disk);
    d = open_on_mem(e, "");
    e->img.hold = true;
    e->release_seed = seed;
    for (unsigned b = 0; b < batches; b++) {
        unsigned *order = shuffled((unsigned)(disk / LOAD_CHUNK), seed * 1000 + b);

        for (unsigned i = 0; i < LOAD_DEPTH; i++) {
            read[i] = start_load_request(e, d, &ios[i], want, got,
                                         (uint64_t)order[i] * LOAD_CHUNK, order[i] + b,
                                         b * LOAD_DEPTH + i);
        }
        start_io(e, d, &flush, BLK_FLUSH, 0, NULL, 0);
        run_to_completion(e);
        assert_int_equal(flush.result, 0);
        for (unsigned i = 0; i < LOAD_DEPTH; i++) {
            uint64_t at = (uint64_t)order[i] * LOAD_CHUNK;

            assert_int_equal(ios[i].result, 0);
            if (read[i]) {
                assert_memory_equal(got + at, want + at, LOAD_CHUNK);
            }
        }
        free(order);
    }
    e->img.hold = false;
    close_exact(e, d, want, disk);
    free(want);
    free(got);
}

/*
 * A valid image under load on the smallest cache: four L2 tables, four
 * slots, 24 requests at once.  On the old code, seed 33 stalled as
 * test_qcow2_a_reserved_slot_become_a_table_wakes_waiters does (1000 seeds
 * pass, and 1000 with 80 requests at once).
 */
static void test_qcow2_valid_image_under_load_never_stalls(void **state)
{
    for (uint64_t seed = 1; seed <= 40; seed++) {
        run_load(*state, 128 << 10, 12, seed);
    }
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
        CASE(test_qcow2_orders_many_concurrent_allocations),
        CASE(test_qcow2_metadata_io_never_blocks_the_loop),
        CASE(test_qcow2_eviction_while_loads_are_in_flight),
        CASE(test_qcow2_errors_below_during_allocation),
        CASE(test_qcow2_no_slot_is_held_while_waiting_for_one),
        CASE(test_qcow2_a_reserved_slot_become_a_table_wakes_waiters),
        CASE(test_qcow2_valid_image_under_load_never_stalls),
        CASE(test_qcow2_a_failed_writeback_fails_who_waits_for_its_slots),
        CASE(test_qcow2_a_failed_round_fails_who_waits_for_its_slots),
    };

    /* BLOCK_LAYERS_TEST=PATTERN runs the tests whose names match. */
    if (getenv("BLOCK_LAYERS_TEST")) {
        cmocka_set_test_filter(getenv("BLOCK_LAYERS_TEST"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
