// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 against QEMU's own tools: images made by qemu-img and qemu-io are
 * read and written through our drive layer, with a raw mirror of every
 * write; afterwards 'qemu-img check' must be clean and 'qemu-img compare'
 * must find the image equal to the mirror.
 */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "util/loop.h"
#include "util/opts.h"
#include "util.h"

enum { SECTOR = 512, BATCH = 12 };

struct env {
    struct loop *loop;
    struct aio_engine *aio;
    char dir[64];
    char image[128], mirror[128];
    int pending;
    uint64_t rng;
};

struct io {
    struct blk_io blk;
    struct iovec iov[3];
    struct env *env;
    uint8_t *buf;
    int result;
};

/* --- helpers ---------------------------------------------------------------- */

static uint64_t next_rand(struct env *e)
{
    return xorshift64(&e->rng);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));

    e->loop = loop_new();
    e->aio = aio_engine_new(e->loop, 32, NULL);
    assert_non_null(e->aio);
    strcpy(e->dir, "/var/tmp/mpqemu-qcow2-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->image, sizeof(e->image), "%s/disk.qcow2", e->dir);
    snprintf(e->mirror, sizeof(e->mirror), "%s/mirror.raw", e->dir);
    e->rng = 0x9e3779b97f4a7c15ull;
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;

    aio_engine_free(e->aio);
    loop_free(e->loop);
    sh("rm -rf '%s'", e->dir);
    free(e);
    return 0;
}

static struct drive *try_open(struct env *e, const char *path, const char *extra, char **err)
{
    char text[512];
    struct opts *o;
    struct drive *d;

    snprintf(text, sizeof(text), "id=d0,file=%s%s", path, extra);
    o = opts_parse(text, NULL, err);
    assert_non_null(o);
    d = drive_open(o, e->aio, err);
    opts_free(o);
    return d;
}

static struct drive *open_drive(struct env *e, const char *path, const char *extra)
{
    char *err = NULL;
    struct drive *d = try_open(e, path, extra, &err);

    if (!d) {
        fail_msg("open %s: %s", path, err);
    }
    return d;
}

static void on_done(struct blk_io *blk, int result)
{
    struct io *io = blk->opaque;

    io->result = result;
    if (--io->env->pending == 0) {
        loop_quit(io->env->loop, 0);
    }
}

static void start(struct env *e, struct drive *d, struct io *io, enum blk_op op,
                  uint64_t offset, uint64_t len)
{
    io->env = e;
    io->result = 1;
    io->blk = (struct blk_io){ .op = op, .offset = offset, .iov = io->iov, .iovcnt = 0,
                               .len = len, .done = on_done, .opaque = io };
    if (op == BLK_READ || op == BLK_WRITE) {
        /* Two pieces, as a guest's scatter-gather list would give. */
        uint64_t first = len > SECTOR ? (len / SECTOR / 2) * SECTOR : len;

        io->iov[0] = (struct iovec){ io->buf, first };
        io->iov[1] = (struct iovec){ io->buf + first, len - first };
        io->blk.iovcnt = len > first ? 2 : 1;
    }
    e->pending++;
    drive_submit(d, &io->blk);
}

static void run(struct env *e)
{
    if (e->pending) {
        loop_run(e->loop);
    }
    assert_int_equal(e->pending, 0);
}

static int io_one(struct env *e, struct drive *d, enum blk_op op, uint64_t off, uint8_t *buf,
                  uint64_t len)
{
    struct io io = { .buf = buf };

    start(e, d, &io, op, off, len);
    run(e);
    return io.result;
}

static void close_drive(struct drive *d)
{
    drive_close(d);
}

/* qemu-img check: clean (exit 0), leaks allowed only when 'leaks_ok'. */
static void assert_check_clean(struct env *e, bool leaks_ok)
{
    int st = sh("qemu-img check -q '%s' >/dev/null 2>&1", e->image);

    if (st != 0 && !(leaks_ok && st == 3)) {
        sh("qemu-img check '%s' 2>&1 | head -20", e->image);
        fail_msg("qemu-img check: exit %d", st);
    }
}

static void assert_equal_to_mirror(struct env *e)
{
    if (sh("qemu-img compare -q -f raw -F qcow2 '%s' '%s'", e->mirror, e->image) != 0) {
        fail_msg("qemu-img compare: the image differs from the mirror");
    }
}

/* --- a random workload mirrored into a raw file ---------------------------- */

static void mirror_apply(struct env *e, enum blk_op op, uint64_t off, const uint8_t *buf,
                         uint64_t len)
{
    int fd = open(e->mirror, O_WRONLY);
    uint8_t *zeros = calloc(1, len);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, op == BLK_WRITE ? buf : zeros, len, (off_t)off), (ssize_t)len);
    close(fd);
    free(zeros);
}

static void mirror_read(struct env *e, uint64_t off, uint8_t *buf, uint64_t len)
{
    int fd = open(e->mirror, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static bool overlaps(const uint64_t *offs, const uint64_t *lens, int n, uint64_t off,
                     uint64_t len)
{
    for (int i = 0; i < n; i++) {
        if (off < offs[i] + lens[i] && offs[i] < off + len) {
            return true;
        }
    }
    return false;
}

/*
 * Rounds of BATCH requests at once: writes of random data, zeroing and
 * discards of disjoint random ranges (often within the same clusters), then
 * reads of random ranges compared with the mirror.
 */
static void random_workload(struct env *e, struct drive *d, uint64_t size, int rounds,
                            uint64_t max_len)
{
    struct io ios[BATCH];
    uint64_t offs[BATCH], lens[BATCH];
    enum blk_op ops[BATCH];

    for (int round = 0; round < rounds; round++) {
        int n = 0;

        for (int tries = 0; n < BATCH && tries < 100; tries++) {
            uint64_t len = (next_rand(e) % (max_len / SECTOR) + 1) * SECTOR;
            uint64_t off = next_rand(e) % ((size - len) / SECTOR + 1) * SECTOR;
            unsigned pick = (unsigned)(next_rand(e) % 10);

            if (overlaps(offs, lens, n, off, len)) {
                continue;
            }
            ops[n] = pick < 7 ? BLK_WRITE : pick < 9 ? BLK_WRITE_ZEROES : BLK_DISCARD;
            offs[n] = off;
            lens[n] = len;
            ios[n].buf = malloc(len);
            for (uint64_t i = 0; i < len; i++) {
                ios[n].buf[i] = (uint8_t)next_rand(e);
            }
            n++;
        }
        for (int i = 0; i < n; i++) {
            start(e, d, &ios[i], ops[i], offs[i], lens[i]);
        }
        run(e);
        for (int i = 0; i < n; i++) {
            assert_int_equal(ios[i].result, 0);
            mirror_apply(e, ops[i], offs[i], ios[i].buf, lens[i]);
        }
        /* Reads, also several at once, checked against the mirror. */
        for (int i = 0; i < n; i++) {
            lens[i] = (next_rand(e) % (max_len / SECTOR) + 1) * SECTOR;
            offs[i] = next_rand(e) % ((size - lens[i]) / SECTOR + 1) * SECTOR;
            ios[i].buf = realloc(ios[i].buf, lens[i]);
            start(e, d, &ios[i], BLK_READ, offs[i], lens[i]);
        }
        run(e);
        for (int i = 0; i < n; i++) {
            uint8_t *want = malloc(lens[i]);

            assert_int_equal(ios[i].result, 0);
            mirror_read(e, offs[i], want, lens[i]);
            if (memcmp(want, ios[i].buf, lens[i])) {
                fail_msg("round %d: read of %llu bytes at %llu differs from the mirror", round,
                         (unsigned long long)lens[i], (unsigned long long)offs[i]);
            }
            free(want);
            free(ios[i].buf);
        }
    }
}

/* Makes the image with qemu-img and a mirror that equals it. */
static void make_image(struct env *e, const char *options, uint64_t size)
{
    assert_int_equal(sh("qemu-img create -q -f qcow2 -o '%s' '%s' %llu", options, e->image,
                        (unsigned long long)size), 0);
    assert_int_equal(sh("qemu-img convert -O raw '%s' '%s'", e->image, e->mirror), 0);
}

static void write_and_check(struct env *e, const char *options, uint64_t size, int rounds,
                            uint64_t max_len, const char *drive_extra)
{
    struct drive *d;

    make_image(e, options, size);
    d = open_drive(e, e->image, drive_extra);
    assert_int_equal(d->size, size);
    random_workload(e, d, size, rounds, max_len);
    close_drive(d);
    assert_check_clean(e, false);
    assert_equal_to_mirror(e);
}

/* --- cases ---------------------------------------------------------------- */

static void test_v3_default_clusters(void **state)
{
    write_and_check(*state, "compat=1.1", 64 << 20, 30, 256 << 10, "");
}

static void test_v2_image(void **state)
{
    write_and_check(*state, "compat=0.10", 32 << 20, 30, 200 << 10, "");
}

static void test_small_clusters_grow_the_refcount_table(void **state)
{
    /* 512-byte clusters and 64-bit refcounts: 64 clusters per refcount block. */
    write_and_check(*state, "cluster_size=512,refcount_bits=64", 8 << 20, 40, 64 << 10, "");
}

static void test_large_clusters(void **state)
{
    write_and_check(*state, "cluster_size=2M", 32 << 20, 15, 1 << 20, "");
}

static void test_every_refcount_width(void **state)
{
    static const unsigned widths[] = { 1, 2, 4, 8, 16, 32, 64 };
    struct env *e = *state;

    for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
        char options[64];

        snprintf(options, sizeof(options), "cluster_size=4k,refcount_bits=%u", widths[i]);
        write_and_check(e, options, 4 << 20, 8, 64 << 10, "");
    }
}

static void test_direct_io_and_writethrough(void **state)
{
    struct env *e = *state;

    write_and_check(e, "cluster_size=16k", 8 << 20, 10, 64 << 10, ",cache=none");
    write_and_check(e, "cluster_size=16k", 8 << 20, 10, 64 << 10, ",cache=writethrough");
}

/* Data written by qemu-io, compressed clusters by qemu-img convert -c: we read them back. */
static void test_reads_what_qemu_wrote(void **state)
{
    struct env *e = *state;
    char src[160], expect[160];
    struct drive *d;
    uint64_t size = 8 << 20;
    uint8_t *got = malloc(size), *want = malloc(size);
    int fd;

    snprintf(src, sizeof(src), "%s/src.qcow2", e->dir);
    snprintf(expect, sizeof(expect), "%s/expect.raw", e->dir);
    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' 8M && qemu-io -c 'write -P 0xa5 0 1M' "
                        "-c 'write -P 0x3c 1536k 100k' -c 'write -z 200k 64k' "
                        "-c 'write -P 0x11 7M 1M' '%s' >/dev/null", src, src), 0);
    /* Compressed copy of it: every data cluster is deflated. */
    assert_int_equal(sh("qemu-img convert -c -O qcow2 '%s' '%s'", src, e->image), 0);
    assert_int_equal(sh("qemu-img convert -O raw '%s' '%s'", src, expect), 0);
    for (int pass = 0; pass < 2; pass++) {
        d = open_drive(e, pass ? src : e->image, ",readonly=on");
        assert_int_equal(io_one(e, d, BLK_READ, 0, got, size), 0);
        close_drive(d);
        fd = open(expect, O_RDONLY);
        assert_int_equal(pread(fd, want, size, 0), (ssize_t)size);
        close(fd);
        assert_memory_equal(got, want, size);
    }
    free(got);
    free(want);
}

/* Writes over compressed clusters copy them out first. */
static void test_writes_over_compressed_clusters(void **state)
{
    struct env *e = *state;
    char src[160];
    struct drive *d;

    snprintf(src, sizeof(src), "%s/src.qcow2", e->dir);
    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' 4M && qemu-io -c 'write -P 0x5a 0 4M' "
                        "'%s' >/dev/null && qemu-img convert -c -O qcow2 '%s' '%s' && "
                        "qemu-img convert -O raw '%s' '%s'", src, src, src, e->image,
                        e->image, e->mirror), 0);
    d = open_drive(e, e->image, "");
    random_workload(e, d, 4 << 20, 10, 32 << 10);
    close_drive(d);
    assert_check_clean(e, false);
    assert_equal_to_mirror(e);
}

/* An overlay on a backing chain (qcow2 over raw): COW from the backing file. */
static void test_backing_chain(void **state)
{
    struct env *e = *state;
    char base[160], mid[160];
    struct drive *d;
    struct stat st;

    snprintf(base, sizeof(base), "%s/base.raw", e->dir);
    snprintf(mid, sizeof(mid), "%s/mid.qcow2", e->dir);
    assert_int_equal(sh("head -c 6M /dev/urandom > '%s' && "
                        "qemu-img create -q -f qcow2 -b base.raw -F raw '%s' 8M && "
                        "qemu-io -c 'write -P 0x77 1M 300k' '%s' >/dev/null && "
                        "qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 -o cluster_size=4k "
                        "'%s' 8M && qemu-img convert -O raw '%s' '%s'", base, mid, mid,
                        e->image, e->image, e->mirror), 0);
    stat(base, &st);
    d = open_drive(e, e->image, "");
    random_workload(e, d, 8 << 20, 20, 64 << 10);
    close_drive(d);
    assert_check_clean(e, false);
    assert_equal_to_mirror(e);
    /* The backing files were only read. */
    assert_int_equal(sh("qemu-img check -q '%s'", mid), 0);
    {
        struct stat now;

        stat(base, &now);
        assert_int_equal(now.st_mtime, st.st_mtime);
    }
}

static void expect_open_error(struct env *e, const char *path, const char *extra,
                              const char *needle)
{
    char *err = NULL;
    struct drive *d = try_open(e, path, extra, &err);

    if (d) {
        drive_close(d);
        fail_msg("%s opened, expected an error with '%s'", path, needle);
    }
    if (!strstr(err, needle)) {
        fail_msg("error '%s' does not mention '%s'", err, needle);
    }
    free(err);
}

static void patch(const char *path, uint64_t off, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void test_bad_images_get_clear_errors(void **state)
{
    /* A header field overwritten (big-endian bytes at an offset), the error it must give. */
    static const struct {
        const char *options;
        unsigned offset, len;
        uint8_t bytes[8];
        const char *error;
    } broken[] = {
        { "compat=1.1", 20, 4, { 0, 0, 0, 30 }, "cluster_bits 30" },
        { "compat=1.1", 36, 4, { 0x10, 0, 0, 0 }, "L1 table" },
        { "compat=1.1", 40, 8, { 0 }, "misplaced" },
        { "compat=1.1", 72, 8, { 0, 0, 0, 0, 0, 0, 0, 0x40 }, "incompatible feature bit 6" },
        { "compat=1.1,lazy_refcounts=on", 72, 8, { 0, 0, 0, 0, 0, 0, 0, 1 }, "dirty" },
    };
    struct env *e = *state;
    char loop_a[160], loop_b[160];

    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        make_image(e, broken[i].options, 1 << 20);
        patch(e->image, broken[i].offset, broken[i].bytes, broken[i].len);
        expect_open_error(e, e->image, "", broken[i].error);
    }
    /* Read-only, a dirty image is fine: refcounts are not used for reading. */
    drive_close(open_drive(e, e->image, ",readonly=on"));

    /* format=raw means raw, whatever the first bytes say. */
    make_image(e, "compat=1.1", 1 << 20);
    {
        struct drive *d = open_drive(e, e->image, ",format=raw");
        struct stat st;

        stat(e->image, &st);
        assert_int_equal(d->size, st.st_size);
        drive_close(d);
    }

    /* A backing chain that loops: a -> b -> a. */
    snprintf(loop_a, sizeof(loop_a), "%s/a.qcow2", e->dir);
    snprintf(loop_b, sizeof(loop_b), "%s/b.qcow2", e->dir);
    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' 1M && "
                        "qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 '%s' 1M && "
                        "qemu-img rebase -u -b b.qcow2 -F qcow2 '%s'", loop_a, loop_b, loop_a), 0);
    expect_open_error(e, loop_a, "", "loops");
}

/*
 * Deterministic fuzzing of the metadata: a small image with data, tables
 * and a backing file, its first clusters (header, L1, refcount table, L2
 * tables, refcount blocks) mutated at random, then opened and used.  Open
 * may fail and I/O may fail; nothing may crash (the sanitizer build aborts
 * on any bad access or absurd allocation), hang or leak.
 */
static void test_fuzzed_metadata_never_crashes(void **state)
{
    struct env *e = *state;
    char seed[160], base[160];
    uint8_t *orig, *img, *buf = malloc(256 << 10);
    size_t meta = 6 * 4096, size;
    int fd, opened = 0;
    struct stat st;
    /* MPQEMU_FUZZ_ITERATIONS and _SEED: longer or other runs by hand. */
    const char *iter_env = getenv("MPQEMU_FUZZ_ITERATIONS"), *seed_env = getenv("MPQEMU_FUZZ_SEED");
    int iterations = iter_env ? atoi(iter_env) : 400;

    if (seed_env) {
        e->rng = strtoull(seed_env, NULL, 0) | 1;
    }

    snprintf(seed, sizeof(seed), "%s/seed.qcow2", e->dir);
    snprintf(base, sizeof(base), "%s/base.raw", e->dir);
    assert_int_equal(sh("head -c 1M /dev/urandom > '%s' && qemu-img create -q -f qcow2 "
                        "-o cluster_size=4k,compat=1.1 -b base.raw -F raw '%s' 2M && "
                        "qemu-io -c 'write -P 1 0 64k' -c 'write -z 512k 64k' "
                        "-c 'write -P 2 1500k 100k' '%s' >/dev/null", base, seed, seed), 0);
    assert_int_equal(stat(seed, &st), 0);
    size = (size_t)st.st_size;
    orig = malloc(size);
    img = malloc(size);
    fd = open(seed, O_RDONLY);
    assert_int_equal(read(fd, orig, size), (ssize_t)size);
    close(fd);
    if (meta > size) {
        meta = size;
    }
    for (int iter = 0; iter < iterations; iter++) {
        struct drive *d;
        char *err = NULL;
        int mutations = 1 + (int)(next_rand(e) % 4);

        memcpy(img, orig, size);
        for (int m = 0; m < mutations; m++) {
            /* Half of them in the header's fields, the rest anywhere in the tables. */
            size_t at = (size_t)(next_rand(e) % (next_rand(e) % 2 ? 112 : meta));
            unsigned kind = (unsigned)(next_rand(e) % 3);

            if (kind == 0) {
                img[at] ^= (uint8_t)(1u << (next_rand(e) % 8));
            } else if (kind == 1) {
                img[at] = (uint8_t)next_rand(e);
            } else if (at + 8 <= meta) {
                uint64_t v = next_rand(e);

                memcpy(img + at, &v, 8);
            }
        }
        fd = open(e->image, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(write(fd, img, size), (ssize_t)size);
        close(fd);
        d = try_open(e, e->image, "", &err);
        free(err);
        if (!d) {
            continue;
        }
        opened++;
        for (int k = 0; k < 6; k++) {
            uint64_t len = (next_rand(e) % 64 + 1) * SECTOR;
            uint64_t off = d->size > len ? next_rand(e) % ((d->size - len) / SECTOR) * SECTOR
                                         : 0;
            enum blk_op op = (enum blk_op)(next_rand(e) % 5);

            if (d->size < len) {
                break;
            }
            memset(buf, 0x5a, len);
            io_one(e, d, op, off, buf, len);
        }
        drive_close(d);
    }
    /* Most mutations hit bytes that do not matter: the images mostly open. */
    assert_true(opened > iterations / 8);
    free(orig);
    free(img);
    free(buf);
}

/*
 * aio_drain() runs before guest memory is unmapped: it returns only when
 * every request has completed, those whose completion qcow2 delivers from
 * the loop too (a copy into the old mapping after it would write into
 * memory that is gone).
 */
static void test_drain_completes_every_request(void **state)
{
    enum { N = 6, LEN = 64 << 10, DISK = 8 << 20 };
    static uint8_t bufs[N][LEN];
    struct env *e = *state;
    struct io ios[N];
    struct drive *d;

    make_image(e, "cluster_size=4k", DISK);
    d = open_drive(e, e->image, "");
    memset(bufs[0], 0x5a, LEN);
    assert_int_equal(io_one(e, d, BLK_WRITE, 0, bufs[0], LEN), 0);
    close_drive(d);
    /* Opened again: no L2 table cached, the reads load them first. */
    d = open_drive(e, e->image, "");
    memset(ios, 0, sizeof(ios));
    for (int i = 0; i < N; i++) {
        ios[i].buf = bufs[i];
    }
    start(e, d, &ios[0], BLK_READ, 0, LEN);                 /* allocated */
    start(e, d, &ios[1], BLK_READ, 4 << 20, LEN);           /* unallocated */
    start(e, d, &ios[2], BLK_WRITE, (2 << 20) + SECTOR, 8192);  /* allocates, copies on write */
    start(e, d, &ios[3], BLK_READ, DISK, SECTOR);           /* beyond the disk: fails */
    start(e, d, &ios[4], BLK_WRITE_ZEROES, 1 << 20, LEN);
    start(e, d, &ios[5], BLK_FLUSH, 0, 0);
    aio_drain(e->aio);
    assert_int_equal(e->pending, 0);
    assert_int_equal(ios[0].result, 0);
    assert_int_equal(bufs[0][LEN - 1], 0x5a);
    assert_int_equal(ios[1].result, 0);
    assert_int_equal(ios[2].result, 0);
    assert_int_equal(ios[3].result, -EIO);
    assert_int_equal(ios[4].result, 0);
    assert_int_equal(ios[5].result, 0);
    close_drive(d);
    assert_check_clean(e, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
        CASE(test_v3_default_clusters),
        CASE(test_v2_image),
        CASE(test_small_clusters_grow_the_refcount_table),
        CASE(test_large_clusters),
        CASE(test_every_refcount_width),
        CASE(test_direct_io_and_writethrough),
        CASE(test_reads_what_qemu_wrote),
        CASE(test_writes_over_compressed_clusters),
        CASE(test_backing_chain),
        CASE(test_bad_images_get_clear_errors),
        CASE(test_fuzzed_metadata_never_crashes),
        CASE(test_drain_completes_every_request),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
