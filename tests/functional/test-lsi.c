// SPDX-License-Identifier: GPL-2.0-or-later
/* SCSI commands through SCRIPTS into mpqemu-remote's lsi53c895a, end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "client/mpqemu-lsi.h"
#include "harness.h"
#include "util/byteorder.h"

enum {
    RAM_SIZE = 40 << 20, WORK_OFFSET = 1 << 20, BUF_A = 2 << 20, BUF_B = 3 << 20,
    DISK_BLOCKS = 32768, CD_BLOCKS = 64,
    /* Data of the tagged batches: written from OUT_AREA, read into IN_AREA. */
    OUT_AREA = 4 << 20, IN_AREA = 20 << 20, AREA_SIZE = 16 << 20,
    /* The driver's layout of its work area (src/client/lsi.c), at this offset. */
    DONE_RING = WORK_OFFSET + 0x1100, UNTAGGED_CCB = WORK_OFFSET + 0x1200, DONE_SLOTS = 64,
};

struct fixture {
    struct remote remote;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    struct mpq_lsi *lsi;
    char disk[64], iso[64], qmp[64];
};

static void make_image(char *path, size_t size)
{
    int fd;
    uint8_t block[512];

    strcpy(path, "/var/tmp/mpqemu-lsi-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    for (size_t b = 0; b < size / 512; b++) {
        memset(block, 0, sizeof(block));
        put_be32(block, (uint32_t)b);
        assert_int_equal(pwrite(fd, block, 512, (off_t)(b * 512)), 512);
    }
    close(fd);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char drive0[128], drive1[128], qmp[100];
    const char *args[16];
    char *err = NULL;

    make_image(f->disk, DISK_BLOCKS * 512);
    make_image(f->iso, CD_BLOCKS * 2048);
    snprintf(drive0, sizeof(drive0), "id=d0,file=%s,format=raw", f->disk);
    snprintf(drive1, sizeof(drive1), "id=cd,file=%s,format=raw,readonly=on", f->iso);
    args[0] = "{fd}";
    args[1] = "-device"; args[2] = "lsi53c895a,id=lsi0";
    args[3] = "-drive"; args[4] = drive0;
    args[5] = "-device"; args[6] = "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0";
    args[7] = "-drive"; args[8] = drive1;
    args[9] = "-device"; args[10] = "scsi-cd,id=cd0,drive=cd,bus=lsi0.0,scsi-id=2";
    snprintf(f->qmp, sizeof(f->qmp), "/var/tmp/mpqemu-lsi-qmp-%d.sock", (int)getpid());
    snprintf(qmp, sizeof(qmp), "unix:%s,server,nowait", f->qmp);
    args[11] = "-qmp"; args[12] = qmp;
    args[13] = NULL;
    remote_start(&f->remote, 1, args);
    assert_int_equal(mpq_ram_create(&f->ram, 0, RAM_SIZE, NULL), 0);
    f->dev = remote_connect(&f->remote, 0, &f->ram);
    f->lsi = mpq_lsi_new(f->dev, &f->ram, WORK_OFFSET, &err);
    if (!f->lsi) {
        fail_msg("lsi: %s", err);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    mpq_lsi_free(f->lsi);
    mpq_close(f->dev);
    assert_int_equal(remote_expect_exit(&f->remote), 0);
    mpq_ram_destroy(&f->ram);
    unlink(f->disk);
    unlink(f->iso);
    unlink(f->qmp);
    free(f);
    return 0;
}

static struct mpq_scsi_result cmd(struct fixture *f, unsigned target, const uint8_t *cdb,
                                  size_t cdb_len, uint64_t gpa,
                                  uint32_t len)
{
    struct mpq_scsi_result r;
    char *err = NULL;

    if (mpq_lsi_command(f->lsi, target, 0, cdb, cdb_len, gpa, len, &r, &err) < 0) {
        fail_msg("command 0x%02x: %s", cdb[0], err);
    }
    return r;
}

static void clear_unit_attention(struct fixture *f, unsigned target)
{
    uint8_t tur[6] = { 0 };
    struct mpq_scsi_result r = cmd(f, target, tur, 6, 0, 0);

    assert_int_equal(r.status, 0x02);
    assert_int_equal(r.sense[2], 0x06);     /* UNIT ATTENTION */
    assert_int_equal(r.sense[12], 0x29);    /* power on, reset */
    assert_int_equal(cmd(f, target, tur, 6, 0, 0).status, 0);
}

static void test_inquiry_and_capacity(void **state)
{
    struct fixture *f = *state;
    uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 }, rc[10] = { 0x25 };
    uint8_t *buf = f->ram.host + BUF_A;
    struct mpq_scsi_result r;

    r = cmd(f, 0, inq, 6, BUF_A, 36);
    assert_int_equal(r.status, 0);
    assert_int_equal(buf[0], 0x00);
    assert_memory_equal(buf + 8, "MPQEMU  ", 8);
    assert_int_equal(r.residual, 0);
    clear_unit_attention(f, 0);
    r = cmd(f, 0, rc, 10, BUF_A, 8);
    assert_int_equal(r.status, 0);
    assert_int_equal(be32(buf), DISK_BLOCKS - 1);
    assert_int_equal(be32(buf + 4), 512);
    /* A buffer larger than the reply: the move ends early, the residual says so. */
    r = cmd(f, 0, inq, 6, BUF_A, 96);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.residual, 96 - 36);
    r = cmd(f, 2, inq, 6, BUF_A, 36);
    assert_int_equal(buf[0], 0x05);
}

static void test_write_then_read(void **state)
{
    struct fixture *f = *state;
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0, 100, 0, 0, 16, 0 };
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 100, 0, 0, 16, 0 };
    uint8_t *a = f->ram.host + BUF_A, *b = f->ram.host + BUF_B, file[8192];
    int fd;

    clear_unit_attention(f, 0);
    for (int i = 0; i < 8192; i++) {
        a[i] = (uint8_t)(i * 31 + 7);
    }
    assert_int_equal(cmd(f, 0, w10, 10, BUF_A, 8192).status, 0);
    memset(b, 0, 8192);
    assert_int_equal(cmd(f, 0, r10, 10, BUF_B, 8192).status, 0);
    assert_memory_equal(a, b, 8192);
    fd = open(f->disk, O_RDONLY);
    assert_int_equal(pread(fd, file, sizeof(file), 100 * 512), (ssize_t)sizeof(file));
    close(fd);
    assert_memory_equal(a, file, sizeof(file));
}

static void test_errors(void **state)
{
    struct fixture *f = *state;
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0 };

    put_be32(r10 + 2, DISK_BLOCKS);                             /* past the end */
    uint8_t bad[6] = { 0xff }, inq[6] = { 0x12, 0, 0, 0, 36, 0 };
    struct mpq_scsi_result r;

    clear_unit_attention(f, 0);
    r = cmd(f, 0, r10, 10, BUF_A, 512);
    assert_int_equal(r.status, 0x02);
    assert_int_equal(r.sense[2], 0x05);
    assert_int_equal(r.sense[12], 0x21);
    r = cmd(f, 0, bad, 6, 0, 0);
    assert_int_equal(r.sense[12], 0x20);
    /* No device at target 5: selection times out. */
    r = cmd(f, 5, inq, 6, BUF_A, 36);
    assert_true(r.selection_timeout);
    /* The controller is still fine. */
    assert_int_equal(cmd(f, 0, inq, 6, BUF_A, 36).status, 0);
}

/*
 * The disk shrunk (block_resize, 16 MiB to 8 MiB): commands past the new
 * end are checked against the capacity the guest knows until it reads it
 * again (as QEMU's max_lba), so they go to the image and fail there (EIO:
 * ABORTED COMMAND).  The WRITE's data had moved (no residual, its block
 * move done), the READ's had not (its block move the residual).  After
 * READ CAPACITY they are refused (LBA OUT OF RANGE).
 */
static void test_commands_past_a_shrunk_end(void **state)
{
    static const char resize[] = "{\"execute\":\"block_resize\",\"arguments\":"
                                 "{\"device\":\"d0\",\"size\":8388608}}\n";
    struct fixture *f = *state;
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0x4e, 0x20, 0, 0, 8, 0 };   /* LBA 20000 */
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0x4e, 0x20, 0, 0, 8, 0 };
    uint8_t tur[6] = { 0 }, rc10[10] = { 0x25 }, *out = f->ram.host + BUF_B;
    struct mpq_scsi_result r;
    char reply[4096];
    int qmp;

    clear_unit_attention(f, 0);
    qmp = qmp_socket_open(f->qmp);
    qmp_socket_command(qmp, resize, reply, sizeof(reply));
    close(qmp);
    assert_non_null(strstr(reply, "\"return\""));
    r = cmd(f, 0, tur, 6, 0, 0);
    assert_int_equal(r.sense[12], 0x2a);                        /* CAPACITY DATA HAS CHANGED */
    r = cmd(f, 0, w10, 10, BUF_A, 4096);
    assert_int_equal(r.status, 0x02);
    assert_int_equal(r.sense[2], 0x0b);                         /* ABORTED COMMAND */
    assert_int_equal(r.residual, 0);
    r = cmd(f, 0, r10, 10, BUF_A, 4096);
    assert_int_equal(r.sense[2], 0x0b);
    assert_int_equal(r.residual, 4096);
    assert_int_equal(cmd(f, 0, rc10, 10, BUF_B, 8).status, 0);
    assert_int_equal(be32(out), 16383);
    r = cmd(f, 0, w10, 10, BUF_A, 4096);
    assert_int_equal(r.sense[2], 0x05);                         /* ILLEGAL REQUEST */
    assert_int_equal(r.sense[12], 0x21);                        /* LBA OUT OF RANGE */
}

/* 64 tagged commands, 16 at a time: reads of known blocks, every one right. */
static void test_tagged_queue(void **state)
{
    struct fixture *f = *state;
    struct mpq_scsi_cmd cmds[64];
    char *err = NULL;

    clear_unit_attention(f, 0);
    for (int i = 0; i < 64; i++) {
        uint8_t *c = cmds[i].cdb;

        memset(&cmds[i], 0, sizeof(cmds[i]));
        c[0] = 0x28;
        put_be32(c + 2, (uint32_t)(i * 37 % DISK_BLOCKS));
        c[8] = 1;
        cmds[i].cdb_len = 10;
        cmds[i].data_gpa = BUF_A + (uint64_t)i * 512;
        cmds[i].len = 512;
    }
    if (mpq_lsi_run_queued(f->lsi, cmds, 64, 16, &err) < 0) {
        fail_msg("queued: %s", err);
    }
    for (int i = 0; i < 64; i++) {
        assert_int_equal(cmds[i].status, 0);
        assert_int_equal(be32(f->ram.host + BUF_A + i * 512), i * 37 % DISK_BLOCKS);
    }
}

/* A batch of tagged READ(10)s or WRITE(10)s: command i moves sizes[i % n_sizes] bytes. */
struct batch {
    struct mpq_scsi_cmd cmds[64];
    uint32_t lba[64], len[64];
    unsigned n;
};

/* Lays out n commands of the given sizes back to back on the disk and in each data area. */
static void plan_batch(struct batch *b, unsigned n, const uint32_t *sizes, size_t n_sizes)
{
    uint32_t lba = 0;

    b->n = n;
    for (unsigned i = 0; i < n; i++) {
        b->len[i] = sizes[i % n_sizes];
        b->lba[i] = lba;
        lba += b->len[i] / 512;
    }
    assert_true(lba <= DISK_BLOCKS && (uint64_t)lba * 512 <= AREA_SIZE);
}

static uint64_t area_offset(const struct batch *b, unsigned i)
{
    return (uint64_t)b->lba[i] * 512;
}

/* Command i of the batch: a write from OUT_AREA or a read into IN_AREA. */
static void batch_command(struct batch *b, unsigned i, bool write)
{
    uint8_t *c = b->cmds[i].cdb;

    memset(&b->cmds[i], 0, sizeof(b->cmds[i]));
    c[0] = write ? 0x2a : 0x28;
    put_be32(c + 2, b->lba[i]);
    put_be16(c + 7, (uint16_t)(b->len[i] / 512));
    b->cmds[i].cdb_len = 10;
    b->cmds[i].len = b->len[i];
    b->cmds[i].data_gpa = (write ? OUT_AREA : IN_AREA) + area_offset(b, i);
}

static void run_batch(struct fixture *f, struct batch *b, unsigned depth)
{
    char *err = NULL;

    if (mpq_lsi_run_queued(f->lsi, b->cmds, b->n, depth, &err) < 0) {
        fail_msg("queued: %s", err);
    }
    for (unsigned i = 0; i < b->n; i++) {
        assert_int_equal(b->cmds[i].status, 0);
    }
}

static void fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)((seed * 2654435761u + i * 40503u) >> 13 ^ i);
    }
}

/* Writes the batch (pattern 'seed'), checks the image, reads it back and compares. */
static void write_read_back(struct fixture *f, struct batch *b, unsigned depth, uint32_t seed)
{
    uint8_t *file = malloc(AREA_SIZE);
    int fd = open(f->disk, O_RDONLY);

    for (unsigned i = 0; i < b->n; i++) {
        fill_pattern(f->ram.host + OUT_AREA + area_offset(b, i), b->len[i], seed + i);
        batch_command(b, i, true);
    }
    run_batch(f, b, depth);
    for (unsigned i = 0; i < b->n; i++) {
        assert_int_equal(pread(fd, file, b->len[i], (off_t)area_offset(b, i)), b->len[i]);
        assert_memory_equal(file, f->ram.host + OUT_AREA + area_offset(b, i), b->len[i]);
        memset(f->ram.host + IN_AREA + area_offset(b, i), 0xee, b->len[i]);
        batch_command(b, i, false);
    }
    run_batch(f, b, depth);
    for (unsigned i = 0; i < b->n; i++) {
        assert_memory_equal(f->ram.host + IN_AREA + area_offset(b, i),
                            f->ram.host + OUT_AREA + area_offset(b, i), b->len[i]);
    }
    close(fd);
    free(file);
}

/*
 * Tagged commands up to 32 at once, of many sizes: small ones through the
 * controller's buffers while disconnected, those over its per-command share
 * (256 KiB) straight between guest memory and the disk once reselected.
 * Writes, read back; then reads and writes mixed in one batch.  Every byte
 * where it belongs.
 */
static void test_tagged_overlap_many_sizes(void **state)
{
    struct fixture *f = *state;
    static const uint32_t sizes[] = { 512, 4096, 65536, 262144, 524288, 8192, 1024, 131072 };
    struct batch b;

    clear_unit_attention(f, 0);
    plan_batch(&b, 48, sizes, sizeof(sizes) / sizeof(sizes[0]));
    write_read_back(f, &b, 32, 1);
    /* Even commands read what was written; odd ones write anew, all in one batch. */
    for (unsigned i = 0; i < b.n; i++) {
        if (i % 2) {
            fill_pattern(f->ram.host + OUT_AREA + area_offset(&b, i), b.len[i], 1000 + i);
        } else {
            memset(f->ram.host + IN_AREA + area_offset(&b, i), 0xee, b.len[i]);
        }
        batch_command(&b, i, i % 2);
    }
    run_batch(f, &b, 32);
    for (unsigned i = 0; i < b.n; i += 2) {
        assert_memory_equal(f->ram.host + IN_AREA + area_offset(&b, i),
                            f->ram.host + OUT_AREA + area_offset(&b, i), b.len[i]);
    }
    write_read_back(f, &b, 1, 77);      /* one tag at a time: the same paths, no overlap */
}

/*
 * More buffered data at once than the controller keeps (24 x 256 KiB
 * against 4 MiB): the commands past its share move guest memory directly,
 * the data is right either way.
 */
static void test_tagged_past_the_buffer_share(void **state)
{
    struct fixture *f = *state;
    static const uint32_t size = 262144;
    struct batch b;

    clear_unit_attention(f, 0);
    plan_batch(&b, 24, &size, 1);
    write_read_back(f, &b, 24, 5);
}

/*
 * vfio-user memory mapped without an fd, right after the shared RAM: a
 * 1 MiB write from a buffer that starts in the shared RAM and ends in it,
 * then a read back into it, all moved by DMA_READ/DMA_WRITE messages.
 */
static void test_data_through_vmm_copies(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 1 << 20, SHARED_PART = 4096, BLOCKS = LEN / 512 };
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0, 8, 0, BLOCKS >> 8, BLOCKS & 0xff, 0 };
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 8, 0, BLOCKS >> 8, BLOCKS & 0xff, 0 };
    struct mpq_ram private = { .fd = -1, .gpa = RAM_SIZE, .size = 2 * LEN };
    uint8_t *pattern = malloc(LEN), *file = malloc(LEN);
    uint64_t src = RAM_SIZE - SHARED_PART, dst = RAM_SIZE + LEN;
    char *err = NULL;
    int fd;

    private.host = calloc(1, private.size);
    assert_non_null(private.host);
    if (mpq_map_ram(f->dev, &private, 1, &err) < 0) {
        fail_msg("map: %s", err);
    }
    for (size_t i = 0; i < LEN; i++) {
        pattern[i] = (uint8_t)(i * 7 + i / 4099);
    }
    memcpy(f->ram.host + src, pattern, SHARED_PART);
    memcpy(private.host, pattern + SHARED_PART, LEN - SHARED_PART);
    clear_unit_attention(f, 0);
    assert_int_equal(cmd(f, 0, w10, 10, src, LEN).status, 0);
    fd = open(f->disk, O_RDONLY);
    assert_int_equal(pread(fd, file, LEN, 8 * 512), LEN);
    close(fd);
    assert_memory_equal(file, pattern, LEN);
    assert_int_equal(cmd(f, 0, r10, 10, dst, LEN).status, 0);
    assert_memory_equal(private.host + LEN, pattern, LEN);
    free(private.host);
    free(pattern);
    free(file);
}

/*
 * Guest memory as many small regions, each its own vfio-user DMA_MAP:
 * PIECES pages of one memfd at SCATTERED, the pages in reverse file order,
 * one of them (REMOTE_PAGE) mapped without its fd, reached by DMA_READ and
 * DMA_WRITE messages.  Returns the pages as the guest sees them, at
 * SCATTERED on.
 */
enum { SCATTERED = RAM_SIZE, PIECES = 40, PIECE = 4096, REMOTE_PAGE = 25 };

static uint8_t *map_scattered_pages(struct fixture *f, int *memfd)
{
    struct mpq_ram pages[PIECES];
    uint8_t *file;
    char *err = NULL;

    *memfd = memfd_create("scattered", MFD_CLOEXEC);
    assert_int_equal(ftruncate(*memfd, PIECES * PIECE), 0);
    file = mmap(NULL, PIECES * PIECE, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
    assert_true(file != MAP_FAILED);
    for (int i = 0; i < PIECES; i++) {
        uint64_t offset = (uint64_t)(PIECES - 1 - i) * PIECE;

        pages[i] = (struct mpq_ram){ .fd = i == REMOTE_PAGE ? -1 : *memfd, .fd_offset = offset,
                                     .gpa = SCATTERED + (uint64_t)i * PIECE, .size = PIECE,
                                     .host = file + offset };
    }
    if (mpq_map_ram(f->dev, pages, PIECES, &err) < 0) {
        fail_msg("map: %s", err);
    }
    return file;
}

/* Guest address 'gpa' in the scattered pages, as map_scattered_pages() laid them out. */
static uint8_t *scattered_byte(uint8_t *file, uint64_t gpa)
{
    uint64_t page = (gpa - SCATTERED) / PIECE;

    return file + (PIECES - 1 - page) * PIECE + (gpa - SCATTERED) % PIECE;
}

static void copy_scattered(uint8_t *file, uint64_t gpa, uint8_t *buf, size_t len, bool to_guest)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t *at = scattered_byte(file, gpa + i);

        if (to_guest) {
            *at = buf[i];
        } else {
            buf[i] = *at;
        }
    }
}

static void unmap_scattered_pages(uint8_t *file, int memfd)
{
    munmap(file, PIECES * PIECE);
    close(memfd);
}

/*
 * One block move whose buffer spans more regions than the controller maps
 * at once (16): a WRITE(10) from 40 regions (one of them reached only
 * through the VMM) and a READ(10) into 20 move all their data in parts,
 * GOOD status, the image and guest memory as checksummed.
 */
static void test_data_over_many_regions(void **state)
{
    struct fixture *f = *state;
    enum { W_GPA = SCATTERED + 0x200, W_LEN = PIECES * PIECE - 0x400,
           R_GPA = SCATTERED + 0x600, R_LEN = 20 * PIECE - 0x800, LBA = 3000 };
    uint8_t w10[10] = { 0x2a, 0, 0, 0, LBA >> 8, LBA & 0xff, 0, W_LEN / 512 >> 8, W_LEN / 512 & 0xff, 0 };
    uint8_t r10[10] = { 0x28, 0, 0, 0, (LBA + 1) >> 8, (LBA + 1) & 0xff, 0, 0, R_LEN / 512, 0 };
    uint8_t *pattern = malloc(W_LEN), *back = malloc(W_LEN), *file;
    int memfd, fd = open(f->disk, O_RDONLY);

    file = map_scattered_pages(f, &memfd);
    for (size_t i = 0; i < W_LEN; i++) {
        pattern[i] = (uint8_t)(i * 13 + i / 509);
    }
    copy_scattered(file, W_GPA, pattern, W_LEN, true);
    clear_unit_attention(f, 0);
    assert_int_equal(cmd(f, 0, w10, 10, W_GPA, W_LEN).status, 0);
    assert_int_equal(pread(fd, back, W_LEN, LBA * 512), W_LEN);
    assert_memory_equal(back, pattern, W_LEN);
    memset(file, 0xee, PIECES * PIECE);
    assert_int_equal(cmd(f, 0, r10, 10, R_GPA, R_LEN).status, 0);
    copy_scattered(file, R_GPA, back, R_LEN, false);
    assert_memory_equal(back, pattern + 512, R_LEN);
    assert_int_equal(*scattered_byte(file, R_GPA - 1), 0xee);      /* nothing around it */
    assert_int_equal(*scattered_byte(file, R_GPA + R_LEN), 0xee);
    close(fd);
    unmap_scattered_pages(file, memfd);
    free(pattern);
    free(back);
}

/*
 * Tagged commands over the same 40 regions: their data goes through the
 * controller's buffers, copied a region at a time (no iovec limit there).
 */
static void test_buffered_data_over_many_regions(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 32 * PIECE, LBA = 5000 };
    struct mpq_scsi_cmd c[2] = {
        { .cdb = { 0x2a, 0, 0, 0, LBA >> 8, LBA & 0xff, 0, LEN / 512 >> 8, LEN / 512 & 0xff, 0 }, .cdb_len = 10,
          .data_gpa = SCATTERED + 0x200, .len = LEN },
        { .cdb = { 0x28, 0, 0, 0, LBA >> 8, LBA & 0xff, 0, LEN / 512 >> 8, LEN / 512 & 0xff, 0 }, .cdb_len = 10,
          .data_gpa = SCATTERED + 6 * PIECE + 0x200, .len = LEN },
    };
    uint8_t *pattern = malloc(LEN), *back = malloc(LEN), *file;
    char *err = NULL;
    int memfd;

    file = map_scattered_pages(f, &memfd);
    for (size_t i = 0; i < LEN; i++) {
        pattern[i] = (uint8_t)(i * 29 + i / 511);
    }
    copy_scattered(file, c[0].data_gpa, pattern, LEN, true);
    clear_unit_attention(f, 0);
    for (int i = 0; i < 2; i++) {
        if (mpq_lsi_run_queued(f->lsi, &c[i], 1, 1, &err) < 0) {
            fail_msg("queued: %s", err);
        }
        assert_int_equal(c[i].status, 0);
    }
    copy_scattered(file, c[1].data_gpa, back, LEN, false);
    assert_memory_equal(back, pattern, LEN);
    unmap_scattered_pages(file, memfd);
    free(pattern);
    free(back);
}

/*
 * A device's store of a done queue entry need not be one write (a memcpy of
 * 4 bytes writes them twice): the second write may land after the driver
 * took the entry and cleared the slot.  Emulated here: the entry taken last
 * is written again.  A lap later, a command that stores no entry (a
 * selection timeout) makes the driver look at that slot before the SCRIPTS
 * do: it must not take the old entry as this command's completion.
 */
static void test_done_entry_written_twice(void **state)
{
    struct fixture *f = *state;
    uint8_t tur[6] = { 0 };
    uint32_t *done = (uint32_t *)(f->ram.host + DONE_RING);
    struct mpq_scsi_result r;

    clear_unit_attention(f, 0);                 /* three commands: slots 0 to 2 */
    __atomic_store_n(&done[2], (uint32_t)(f->ram.gpa + UNTAGGED_CCB), __ATOMIC_RELAXED);
    for (int i = 3; i < DONE_SLOTS + 2; i++) {  /* slots 3 to 63, 0, 1 */
        r = cmd(f, 0, tur, 6, 0, 0);
        assert_false(r.selection_timeout);
        assert_int_equal(r.status, 0);
    }
    r = cmd(f, 5, tur, 6, 0, 0);                /* no device: the driver reads slot 2 */
    assert_true(r.selection_timeout);
    for (int i = 0; i < 3; i++) {
        r = cmd(f, 0, tur, 6, 0, 0);
        assert_false(r.selection_timeout);
        assert_int_equal(r.status, 0);
    }
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_inquiry_and_capacity),
        CASE(test_write_then_read),
        CASE(test_errors),
        CASE(test_commands_past_a_shrunk_end),
        CASE(test_tagged_queue),
        CASE(test_tagged_overlap_many_sizes),
        CASE(test_tagged_past_the_buffer_share),
        CASE(test_done_entry_written_twice),
        /*
         * Memory without an fd, and more regions than SYNC_SYSMEM's 8, exist
         * only in vfio-user: the last cases.
         */
        CASE(test_data_through_vmm_copies),
        CASE(test_data_over_many_regions),
        CASE(test_buffered_data_over_many_regions),
    };
    enum { VFIO_USER_ONLY = 3 };
    const char *transport = getenv("MPQEMU_TRANSPORT");
    bool vfio_user = transport && strcmp(transport, "vfio-user") == 0;
    size_t n = sizeof(tests) / sizeof(tests[0]) - (vfio_user ? 0 : VFIO_USER_ONLY);

    return _cmocka_run_group_tests("lsi", tests, n, NULL, NULL);
}
