// SPDX-License-Identifier: GPL-2.0-or-later
/* scsi-hd and scsi-cd through a fake HBA: commands, sense, data on disk. */
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
#include <unistd.h>

#include "block/aio.h"
#include "block/backend.h"
#include "block/drive.h"
#include "block/file-layer.h"
#include "hw/device.h"
#include "scsi/bus.h"
#include "util/byteorder.h"
#include "util/guarded-copy.h"
#include "util/loop.h"
#include "util/opts.h"

enum { DISK_BLOCKS = 6144, DISK_SIZE = DISK_BLOCKS * 512, CD_SIZE = 64 * 2048 };

struct env {
    struct loop *loop;
    struct aio_engine *aio;
    struct scsi_bus bus;
    struct drive *drives[4];
    int ndrives;
    struct device *devs[4];
    int ndevs;
    char paths[4][64];
    int completions;
};

static struct env *E;

/*
 * Memory short on demand: this test links with --wrap=calloc and
 * --wrap=realloc (tests/meson.build), so every calloc and realloc of the
 * code under test comes here first.
 */
static bool allocations_fail;

void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

void *__wrap_calloc(size_t n, size_t size)
{
    return allocations_fail ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return allocations_fail ? NULL : __real_realloc(p, size);
}

static void hba_complete(struct scsi_request *req)
{
    (void)req;
    E->completions++;
    loop_quit(E->loop, 0);
}

static const struct scsi_bus_ops hba_ops = { .complete = hba_complete };

static struct drive *find_drive(void *opaque, const char *id)
{
    struct env *e = opaque;

    for (int i = 0; i < e->ndrives; i++) {
        if (!strcmp(e->drives[i]->id, id)) {
            return e->drives[i];
        }
    }
    return NULL;
}

static void add_drive(struct env *e, const char *id, size_t size, const char *extra)
{
    char *path = e->paths[e->ndrives], text[256], *err = NULL;
    int fd;
    uint8_t block[512];
    struct opts *o;

    strcpy(path, "/var/tmp/mpqemu-scsi-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    /* Every 512-byte block holds its own number, so reads can be checked. */
    for (size_t b = 0; b < size / 512; b++) {
        memset(block, (int)(b & 0xff), sizeof(block));
        put_be32(block, (uint32_t)b);
        assert_int_equal(pwrite(fd, block, 512, (off_t)(b * 512)), 512);
    }
    close(fd);
    snprintf(text, sizeof(text), "id=%s,file=%s,format=raw%s", id, path, extra);
    o = opts_parse(text, NULL, &err);
    e->drives[e->ndrives] = drive_open(o, e->aio, &err);
    if (!e->drives[e->ndrives]) {
        fail_msg("drive: %s", err);
    }
    opts_free(o);
    e->ndrives++;
}

static void add_device(struct env *e, const char *text)
{
    struct device_ctx ctx = { .loop = e->loop, .find_drive = find_drive, .opaque = e };
    char *err = NULL;
    struct opts *o = opts_parse(text, "driver", &err);

    e->devs[e->ndevs] = device_create(&ctx, o, &err);
    if (!e->devs[e->ndevs]) {
        fail_msg("device: %s", err);
    }
    opts_free(o);
    e->ndevs++;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));

    E = e;
    e->loop = loop_new();
    e->aio = aio_engine_new(e->loop, 16, NULL);
    scsi_bus_init(&e->bus, "hba0.0", 8, &hba_ops);
    add_drive(e, "d0", DISK_SIZE, "");
    add_drive(e, "ro", DISK_SIZE, ",readonly=on");
    add_drive(e, "iso", CD_SIZE, ",readonly=on");
    add_device(e, "scsi-hd,id=sd0,drive=d0,bus=hba0.0,scsi-id=1,serial=SN123");
    add_device(e, "scsi-hd,id=sd1,drive=ro,bus=hba0.0,scsi-id=1,lun=2");
    add_device(e, "scsi-cd,id=cd0,drive=iso,bus=hba0.0,scsi-id=3");
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;

    for (int i = 0; i < e->ndevs; i++) {
        device_destroy(e->devs[i]);
    }
    for (int i = 0; i < e->ndrives; i++) {
        drive_close(e->drives[i]);
        unlink(e->paths[i]);
    }
    aio_engine_free(e->aio);
    scsi_bus_cleanup(&e->bus);
    loop_free(e->loop);
    free(e);
    return 0;
}

struct result {
    uint8_t status;
    struct scsi_sense sense;
    size_t moved;
};

static void on_transfer(struct scsi_request *req, int n)
{
    (void)req;
    assert_true(n >= 0);
    loop_quit(E->loop, 0);
}

/* A transfer that may fail (-errno): the command's status says why. */
static void on_transfer_may_fail(struct scsi_request *req, int n)
{
    (void)req;
    (void)n;
    loop_quit(E->loop, 0);
}

/* Runs one command; data moves in 'chunk'-byte transfers, each ended by 'done'. */
static struct result run_chunked_with(unsigned target, unsigned lun, const uint8_t *cdb,
                                      void *data, size_t len, size_t chunk,
                                      scsi_transfer_done_fn *done)
{
    struct scsi_request *req = scsi_req_new(&E->bus, target, lun, 7, cdb,
                                            scsi_cdb_length(cdb[0]) ? scsi_cdb_length(cdb[0]) : 6,
                                            NULL);
    int before = E->completions;
    struct result r = { 0 };

    scsi_req_start(req);
    while (!req->completed && req->offset < req->xfer_len) {
        size_t n = (size_t)(req->xfer_len - req->offset);
        struct iovec iov;
        uint64_t at = req->offset;

        if (n > chunk) {
            n = chunk;
        }
        assert_true(at + n <= len);
        iov = (struct iovec){ (uint8_t *)data + at, n };
        scsi_req_transfer(req, &iov, 1, done);
        if (req->offset == at) {
            loop_run(E->loop);
        }
    }
    while (E->completions == before) {
        loop_run(E->loop);
    }
    r.status = req->status;
    r.sense = req->sense;
    r.moved = (size_t)req->offset;
    scsi_req_unref(req);
    return r;
}

static struct result run_chunked(unsigned target, unsigned lun, const uint8_t *cdb,
                                 void *data, size_t len, size_t chunk)
{
    return run_chunked_with(target, lun, cdb, data, len, chunk, on_transfer);
}

static struct result run(unsigned target, unsigned lun, const uint8_t *cdb, void *data,
                         size_t len)
{
    return run_chunked(target, lun, cdb, data, len, 4096);
}

/* As run(), for a command whose data phase may fail. */
static struct result run_may_fail(unsigned target, unsigned lun, const uint8_t *cdb,
                                  void *data, size_t len)
{
    return run_chunked_with(target, lun, cdb, data, len, 4096, on_transfer_may_fail);
}

static void expect_sense(struct result r, struct scsi_sense s)
{
    assert_int_equal(r.status, SCSI_CHECK_CONDITION);
    assert_int_equal(r.sense.key, s.key);
    assert_int_equal(r.sense.asc, s.asc);
    assert_int_equal(r.sense.ascq, s.ascq);
}

static void clear_unit_attention(unsigned target, unsigned lun)
{
    uint8_t tur[6] = { 0 };

    expect_sense(run(target, lun, tur, NULL, 0), SENSE_RESET);
    assert_int_equal(run(target, lun, tur, NULL, 0).status, SCSI_GOOD);
}

static void test_unit_attention_and_request_sense(void **state)
{
    uint8_t tur[6] = { 0 }, rs[6] = { 0x03, 0, 0, 0, 18, 0 }, sense[18];
    struct result r;

    (void)state;
    expect_sense(run(1, 0, tur, NULL, 0), SENSE_RESET);
    r = run(1, 0, rs, sense, sizeof(sense));
    assert_int_equal(r.status, SCSI_GOOD);
    assert_int_equal(r.moved, 18);
    assert_int_equal(sense[0], 0x70);
    assert_int_equal(sense[2], 0x06);
    assert_int_equal(sense[12], 0x29);
    r = run(1, 0, rs, sense, sizeof(sense));
    assert_int_equal(sense[2], 0);          /* reported once */
    assert_int_equal(run(1, 0, tur, NULL, 0).status, SCSI_GOOD);
    /* A bus reset brings it back. */
    scsi_bus_reset(&E->bus);
    expect_sense(run(1, 0, tur, NULL, 0), SENSE_RESET);
}

static void test_inquiry(void **state)
{
    uint8_t std[6] = { 0x12, 0, 0, 0, 96, 0 }, out[256];
    uint8_t vpd[6] = { 0x12, 1, 0x00, 0, 255, 0 };
    struct result r;

    (void)state;
    /* INQUIRY answers even with a unit attention pending. */
    r = run(1, 0, std, out, sizeof(out));
    assert_int_equal(r.status, SCSI_GOOD);
    assert_int_equal(r.moved, 36);
    assert_int_equal(out[0], 0x00);
    assert_int_equal(out[7] & 0x02, 0x02);      /* tagged queueing */
    assert_memory_equal(out + 8, "MPQEMU  ", 8);
    r = run(1, 0, vpd, out, sizeof(out));
    assert_int_equal(r.moved, 4 + 6);
    assert_int_equal(out[9], 0xb2);
    vpd[2] = 0x80;
    r = run(1, 0, vpd, out, sizeof(out));
    assert_int_equal(be16(out + 2), 5);
    assert_memory_equal(out + 4, "SN123", 5);
    vpd[2] = 0xb0;
    r = run(1, 0, vpd, out, sizeof(out));
    assert_int_equal(be16(out + 2), 0x3c);
    assert_int_equal(be32(out + 24), 256);
    vpd[2] = 0x99;
    expect_sense(run(1, 0, vpd, out, sizeof(out)), SENSE_INVALID_FIELD);
    std[2] = 0x80;                              /* page code without EVPD */
    expect_sense(run(1, 0, std, out, sizeof(out)), SENSE_INVALID_FIELD);
    /* Allocation length clips the reply. */
    std[2] = 0;
    std[4] = 5;
    assert_int_equal(run(1, 0, std, out, sizeof(out)).moved, 5);
}

static void test_capacity_and_reads(void **state)
{
    uint8_t rc10[10] = { 0x25 }, rc16[16] = { 0x9e, 0x10 }, out[32];
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 100, 0, 0, 8, 0 };
    uint8_t r6[6] = { 0x08, 0, 0, 7, 1, 0 };
    uint8_t r16[16] = { 0x88 };
    static uint8_t data[8 * 512];

    (void)state;
    clear_unit_attention(1, 0);
    run(1, 0, rc10, out, 8);
    assert_int_equal(be32(out), DISK_BLOCKS - 1);
    assert_int_equal(be32(out + 4), 512);
    rc16[13] = 32;
    run(1, 0, rc16, out, 32);
    assert_true(be64(out) == DISK_BLOCKS - 1);
    assert_int_equal(out[14] & 0x80, 0x80);     /* thin provisioning */
    /* 8 blocks from 100, in 700-byte pieces. */
    assert_int_equal(run_chunked(1, 0, r10, data, sizeof(data), 700).status, SCSI_GOOD);
    for (int b = 0; b < 8; b++) {
        assert_int_equal(be32(data + 512 * b), 100 + b);
    }
    assert_int_equal(run(1, 0, r6, data, 512).status, SCSI_GOOD);
    assert_int_equal(be32(data), 7);
    put_be64(r16 + 2, DISK_BLOCKS - 1);
    put_be32(r16 + 10, 1);
    assert_int_equal(run(1, 0, r16, data, 512).status, SCSI_GOOD);
    assert_int_equal(be32(data), DISK_BLOCKS - 1);
    put_be32(r16 + 10, 2);
    expect_sense(run(1, 0, r16, data, sizeof(data)), SENSE_LBA_OUT_OF_RANGE);
    put_be64(r16 + 2, UINT64_MAX);
    expect_sense(run(1, 0, r16, data, sizeof(data)), SENSE_LBA_OUT_OF_RANGE);
}

static void read_file(int drive, uint64_t off, void *buf, size_t len)
{
    int fd = open(E->paths[drive], O_RDONLY);

    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void test_writes_reach_the_image(void **state)
{
    uint8_t w10[10] = { 0x2a, 0x08, 0, 0, 0, 10, 0, 0, 2, 0 };     /* FUA */
    uint8_t w12[12] = { 0xaa, 0, 0, 0, 0, 20, 0, 0, 0, 1 };
    uint8_t data[1024], back[1024];

    (void)state;
    clear_unit_attention(1, 0);
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 13);
    }
    assert_int_equal(run(1, 0, w10, data, sizeof(data)).status, SCSI_GOOD);
    read_file(0, 10 * 512, back, sizeof(back));
    assert_memory_equal(data, back, sizeof(back));
    assert_int_equal(run(1, 0, w12, data, 512).status, SCSI_GOOD);
    read_file(0, 20 * 512, back, 512);
    assert_memory_equal(data, back, 512);
    /* Read-only drive: write protect. */
    clear_unit_attention(1, 2);
    expect_sense(run(1, 2, w10, data, sizeof(data)), SENSE_WRITE_PROTECTED);
}

/*
 * Data phases in small pieces (a guest's list of pages) go through the
 * disk's staging buffer; in large ones, straight to the image.  Either way
 * every byte lands where it belongs, across the buffer's 128 KiB edges.
 */
static void test_data_in_pieces_of_any_size(void **state)
{
    enum { LBA = 100, BLOCKS = 700, LEN = BLOCKS * 512 };
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0, LBA, 0, BLOCKS >> 8, BLOCKS & 0xff, 0 };
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, LBA, 0, BLOCKS >> 8, BLOCKS & 0xff, 0 };
    static const size_t pieces[] = { 4096, 512, 1536, 3584, 65536, 200000 };
    uint8_t *data = malloc(LEN), *back = malloc(LEN);

    (void)state;
    clear_unit_attention(1, 0);
    for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
        for (size_t i = 0; i < LEN; i++) {
            data[i] = (uint8_t)(i * 7 + p * 31 + (i >> 9));
        }
        assert_int_equal(run_chunked(1, 0, w10, data, LEN, pieces[p]).status, SCSI_GOOD);
        read_file(0, LBA * 512, back, LEN);
        assert_memory_equal(data, back, LEN);
        /* Read back in another piece size than the write's. */
        memset(back, 0, LEN);
        assert_int_equal(run_chunked(1, 0, r10, back, LEN,
                                     pieces[(p + 1) % (sizeof(pieces) / sizeof(pieces[0]))]).status,
                         SCSI_GOOD);
        assert_memory_equal(data, back, LEN);
    }
    free(data);
    free(back);
}

/*
 * A WRITE's pieces, small or big, are gathered into one disk write per
 * MiB (a buffered write to a file costs two thread wakeups per I/O; see
 * WRITE_STAGE_SIZE); pieces of a MiB go straight from their memory.
 */
static void test_write_pieces_gathered(void **state)
{
    enum { LBA = 64, BLOCKS = 5120, LEN = BLOCKS * 512 };
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0, LBA, 0, BLOCKS >> 8, BLOCKS & 0xff, 0 };
    static const struct { size_t piece; uint64_t writes; } cases[] = {
        { 4096, 3 }, { 65536, 3 }, { 300000, 3 }, { 1 << 20, 3 }, { LEN, 1 },
    };
    uint8_t *data = malloc(LEN), *back = malloc(LEN);
    const struct blk_stats *st = blk_stats(E->drives[0]->backend);

    (void)state;
    clear_unit_attention(1, 0);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint64_t before = st->wr_operations;

        for (size_t i = 0; i < LEN; i++) {
            data[i] = (uint8_t)(i * 11 + c * 17 + (i >> 12));
        }
        assert_int_equal(run_chunked(1, 0, w10, data, LEN, cases[c].piece).status, SCSI_GOOD);
        assert_int_equal(st->wr_operations - before, cases[c].writes);
        read_file(0, LBA * 512, back, LEN);
        assert_memory_equal(data, back, LEN);
    }
    free(data);
    free(back);
}

/*
 * The drive's counters as QEMU's block accounting keeps them for
 * query-blockstats: a request out of range is invalid (not failed, not an
 * operation); WRITE SAME of zeros counts as a write, UNMAP apart; each
 * operation's time adds up; the furthest write's end is kept.
 */
static void test_accounting_as_qemu(void **state)
{
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 100, 0, 0, 8, 0 };
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0, 10, 0, 0, 2, 0 };
    uint8_t ws10[10] = { 0x41, 0, 0, 0, 1, 0, 0, 0, 4, 0 };     /* 4 blocks from 256 */
    uint8_t unmap[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0 }, param[24] = { 0 };
    static uint8_t data[8 * 512];
    const struct blk_stats *st = blk_stats(E->drives[0]->backend);
    struct blk_stats was;

    (void)state;
    clear_unit_attention(1, 0);
    was = *st;
    assert_int_equal(run(1, 0, r10, data, sizeof(data)).status, SCSI_GOOD);
    assert_int_equal(st->rd_operations - was.rd_operations, 1);
    assert_int_equal(st->rd_bytes - was.rd_bytes, 4096);
    assert_true(st->rd_total_time_ns > was.rd_total_time_ns);
    assert_true(st->last_access_ns > was.last_access_ns);
    put_be32(r10 + 2, DISK_BLOCKS);                 /* past the end */
    expect_sense(run(1, 0, r10, data, sizeof(data)), SENSE_LBA_OUT_OF_RANGE);
    assert_int_equal(st->invalid_rd_operations - was.invalid_rd_operations, 1);
    assert_int_equal(st->rd_operations - was.rd_operations, 1);
    assert_int_equal(st->failed_rd_operations, was.failed_rd_operations);

    assert_int_equal(run(1, 0, w10, data, 1024).status, SCSI_GOOD);
    assert_int_equal(run(1, 0, ws10, (uint8_t[512]){ 0 }, 512).status, SCSI_GOOD);
    assert_int_equal(st->wr_operations - was.wr_operations, 2);
    assert_int_equal(st->wr_bytes - was.wr_bytes, 1024 + 4 * 512);
    assert_true(E->drives[0]->wr_highest_offset >= 260 * 512);
    assert_true(st->wr_total_time_ns > was.wr_total_time_ns);

    put_be16(param, 22);
    put_be16(param + 2, 16);
    put_be64(param + 8, DISK_BLOCKS);               /* past the end */
    put_be32(param + 16, 8);
    expect_sense(run(1, 0, unmap, param, sizeof(param)), SENSE_LBA_OUT_OF_RANGE);
    assert_int_equal(st->invalid_unmap_operations - was.invalid_unmap_operations, 1);
    put_be64(param + 8, 100);
    assert_int_equal(run(1, 0, unmap, param, sizeof(param)).status, SCSI_GOOD);
    assert_int_equal(st->unmap_operations - was.unmap_operations, 1);
    assert_int_equal(st->unmap_bytes - was.unmap_bytes, 4096);
}

/*
 * WRITE SAME as QEMU's scsi-disk counts it: a write whether or not it
 * unmaps (QEMU's write zeroes with BDRV_REQ_MAY_UNMAP), a pattern one write
 * per 512 KiB (SCSI_WRITE_SAME_MAX), one out of range not counted at all.
 */
static void test_write_same_counted_as_qemu(void **state)
{
    uint8_t ws10[10] = { 0x41, 0x08, 0, 0, 1, 0, 0, 0, 4, 0 };     /* UNMAP, 4 blocks from 256 */
    uint8_t pattern[512];
    const struct blk_stats *st = blk_stats(E->drives[0]->backend);
    struct blk_stats was;

    (void)state;
    clear_unit_attention(1, 0);
    was = *st;
    assert_int_equal(run(1, 0, ws10, (uint8_t[512]){ 0 }, 512).status, SCSI_GOOD);
    assert_int_equal(st->wr_operations - was.wr_operations, 1);
    assert_int_equal(st->wr_bytes - was.wr_bytes, 4 * 512);
    assert_int_equal(st->unmap_operations, was.unmap_operations);
    assert_int_equal(st->unmap_bytes, was.unmap_bytes);
    assert_true(E->drives[0]->wr_highest_offset >= 260 * 512);

    memset(pattern, 0x5a, sizeof(pattern));
    ws10[1] = 0;
    put_be32(ws10 + 2, 1024);
    put_be16(ws10 + 7, 2048);                       /* 1 MiB: two of QEMU's writes */
    assert_int_equal(run(1, 0, ws10, pattern, sizeof(pattern)).status, SCSI_GOOD);
    assert_int_equal(st->wr_operations - was.wr_operations, 3);
    assert_int_equal(st->wr_bytes - was.wr_bytes, 4 * 512 + (1 << 20));

    put_be32(ws10 + 2, DISK_BLOCKS);                /* past the end */
    put_be16(ws10 + 7, 1);
    expect_sense(run(1, 0, ws10, pattern, sizeof(pattern)), SENSE_LBA_OUT_OF_RANGE);
    assert_int_equal(st->invalid_wr_operations, was.invalid_wr_operations);
    assert_int_equal(st->wr_operations - was.wr_operations, 3);
}

/* Sends UNMAP with the given descriptors (LBA, blocks); the parameter list built as SBC's. */
static struct result run_unmap(unsigned lun, uint8_t flags, const uint64_t (*desc)[2], size_t n)
{
    uint8_t cdb[10] = { 0x42, flags }, param[8 + 4 * 16] = { 0 };
    size_t len = 8 + 16 * n;

    assert_true(n <= 4);
    put_be16(cdb + 7, (uint16_t)len);
    put_be16(param, (uint16_t)(len - 2));
    put_be16(param + 2, (uint16_t)(16 * n));
    for (size_t i = 0; i < n; i++) {
        put_be64(param + 8 + 16 * i, desc[i][0]);
        put_be32(param + 16 + 16 * i, (uint32_t)desc[i][1]);
    }
    return run(1, lun, cdb, param, len);
}

/*
 * UNMAP as QEMU's scsi-disk counts it: each descriptor an unmap operation
 * (one of no blocks too), the ones before a descriptor out of range done,
 * that one invalid; a parameter list it refuses, ANCHOR, a read-only
 * medium: one invalid unmap each.
 */
static void test_unmap_counted_as_qemu(void **state)
{
    static const uint64_t good_then_bad[2][2] = { { 100, 8 }, { DISK_BLOCKS, 8 } };
    static const uint64_t empty[1][2] = { { 200, 0 } };
    uint8_t bad_len[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0 }, param[4] = { 0 };
    const struct blk_stats *st = blk_stats(E->drives[0]->backend);
    const struct blk_stats *ro = blk_stats(E->drives[1]->backend);
    struct blk_stats was, ro_was;

    (void)state;
    clear_unit_attention(1, 0);
    clear_unit_attention(1, 2);
    was = *st;
    ro_was = *ro;
    expect_sense(run_unmap(0, 0, good_then_bad, 2), SENSE_LBA_OUT_OF_RANGE);
    assert_int_equal(st->unmap_operations - was.unmap_operations, 1);
    assert_int_equal(st->unmap_bytes - was.unmap_bytes, 8 * 512);
    assert_int_equal(st->invalid_unmap_operations - was.invalid_unmap_operations, 1);

    assert_int_equal(run_unmap(0, 0, empty, 1).status, SCSI_GOOD);
    assert_int_equal(st->unmap_operations - was.unmap_operations, 2);
    assert_int_equal(st->unmap_bytes - was.unmap_bytes, 8 * 512);

    expect_sense(run(1, 0, bad_len, param, sizeof(param)), SENSE_INVALID_PARAM_LEN);
    assert_int_equal(st->invalid_unmap_operations - was.invalid_unmap_operations, 2);
    expect_sense(run_unmap(0, 0x01, empty, 1), SENSE_INVALID_FIELD);        /* ANCHOR */
    assert_int_equal(st->invalid_unmap_operations - was.invalid_unmap_operations, 3);
    assert_int_equal(st->unmap_operations - was.unmap_operations, 2);

    expect_sense(run_unmap(2, 0, empty, 1), SENSE_WRITE_PROTECTED);
    assert_int_equal(ro->invalid_unmap_operations - ro_was.invalid_unmap_operations, 1);
    assert_int_equal(ro->unmap_operations, ro_was.unmap_operations);
}

static void test_mode_pages_and_write_cache(void **state)
{
    uint8_t ms6[6] = { 0x1a, 0, 0x08, 0, 255, 0 }, out[255];
    uint8_t sel[6] = { 0x15, 0x10, 0, 0, 0, 0 }, param[4 + 8 + 20];
    struct result r;

    (void)state;
    clear_unit_attention(1, 0);
    r = run(1, 0, ms6, out, sizeof(out));
    assert_int_equal(r.status, SCSI_GOOD);
    assert_int_equal(out[3], 8);                    /* block descriptor */
    assert_int_equal(out[12], 0x08);                /* caching page */
    assert_int_equal(out[14] & 0x04, 0x04);         /* WCE */
    /* Turn the write cache off through MODE SELECT. */
    memcpy(param, out, sizeof(param));
    param[0] = 0;
    param[2] = 0;
    param[14] &= ~0x04;
    sel[4] = sizeof(param);
    assert_int_equal(run(1, 0, sel, param, sizeof(param)).status, SCSI_GOOD);
    run(1, 0, ms6, out, sizeof(out));
    assert_int_equal(out[14] & 0x04, 0);
    /* A value that cannot change is refused; so is a page of the wrong length. */
    param[15] = 0x55;
    expect_sense(run(1, 0, sel, param, sizeof(param)), SENSE_INVALID_PARAM);
    param[15] = out[15];
    param[13] = 0x13;
    expect_sense(run(1, 0, sel, param, sizeof(param)), SENSE_INVALID_PARAM_LEN);
    ms6[2] = 0xc8;                                  /* saved values */
    expect_sense(run(1, 0, ms6, out, sizeof(out)), SENSE_SAVING_PARAMS_NOT_SUPPORTED);
    ms6[2] = 0x3f;                                  /* all pages */
    assert_int_equal(run(1, 0, ms6, out, sizeof(out)).status, SCSI_GOOD);
    ms6[2] = 0x31;
    expect_sense(run(1, 0, ms6, out, sizeof(out)), SENSE_INVALID_FIELD);
}

static void test_unmap_write_same_verify(void **state)
{
    uint8_t unmap[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0 }, param[24] = { 0 };
    uint8_t ws16[16] = { 0x93, 0x08 }, ws10[10] = { 0x41 }, vf[10] = { 0x2f, 0x02 };
    uint8_t sync[10] = { 0x35 }, zeros[4096] = { 0 }, back[4096], pattern[512];

    (void)state;
    clear_unit_attention(1, 0);
    put_be16(param, 22);
    put_be16(param + 2, 16);
    put_be64(param + 8, 100);
    put_be32(param + 16, 8);
    assert_int_equal(run(1, 0, unmap, param, sizeof(param)).status, SCSI_GOOD);
    read_file(0, 100 * 512, back, 4096);
    assert_memory_equal(back, zeros, 4096);
    put_be64(param + 8, DISK_BLOCKS);               /* past the end */
    expect_sense(run(1, 0, unmap, param, sizeof(param)), SENSE_LBA_OUT_OF_RANGE);
    /* WRITE SAME (16) of zeros with UNMAP. */
    put_be64(ws16 + 2, 200);
    put_be32(ws16 + 10, 8);
    assert_int_equal(run(1, 0, ws16, zeros, 512).status, SCSI_GOOD);
    read_file(0, 200 * 512, back, 4096);
    assert_memory_equal(back, zeros, 4096);
    /* WRITE SAME (10) of a pattern. */
    memset(pattern, 0x3c, sizeof(pattern));
    put_be32(ws10 + 2, 300);
    put_be16(ws10 + 7, 5);
    assert_int_equal(run(1, 0, ws10, pattern, 512).status, SCSI_GOOD);
    read_file(0, 304 * 512, back, 512);
    assert_memory_equal(back, pattern, 512);
    /* VERIFY with BYTCHK: equal, then different. */
    put_be32(vf + 2, 300);
    put_be16(vf + 7, 1);
    assert_int_equal(run(1, 0, vf, pattern, 512).status, SCSI_GOOD);
    pattern[100] ^= 1;
    expect_sense(run(1, 0, vf, pattern, 512), SENSE_MISCOMPARE);
    assert_int_equal(run(1, 0, sync, NULL, 0).status, SCSI_GOOD);
}

static void test_luns_and_absent_targets(void **state)
{
    uint8_t rl[12] = { 0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0 }, out[256];
    uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 }, tur[6] = { 0 };
    struct result r;

    (void)state;
    r = run(1, 0, rl, out, sizeof(out));
    assert_int_equal(r.status, SCSI_GOOD);
    assert_int_equal(be32(out), 16);                /* LUNs 0 and 2 */
    assert_int_equal(out[8 + 1], 0);
    assert_int_equal(out[16 + 1], 2);
    r = run(1, 5, inq, out, sizeof(out));
    assert_int_equal(out[0], 0x7f);
    expect_sense(run(1, 5, tur, NULL, 0), SENSE_LUN_NOT_SUPPORTED);
    assert_true(scsi_target_present(&E->bus, 1));
    assert_false(scsi_target_present(&E->bus, 2));
    rl[8] = 0;
    rl[9] = 8;                                      /* allocation length below 16 */
    expect_sense(run(1, 0, rl, out, sizeof(out)), SENSE_INVALID_FIELD);
}

static void test_invalid_opcodes(void **state)
{
    uint8_t op[16] = { 0 };

    (void)state;
    clear_unit_attention(1, 0);
    op[0] = 0xff;
    expect_sense(run(1, 0, op, NULL, 0), SENSE_INVALID_OPCODE);
    op[0] = 0x01;
    expect_sense(run(1, 0, op, NULL, 0), SENSE_INVALID_OPCODE);
    op[0] = 0x43;                                   /* READ TOC is for CDs */
    expect_sense(run(1, 0, op, NULL, 0), SENSE_INVALID_OPCODE);
}

static void test_cdrom(void **state)
{
    uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 }, out[64], rc[10] = { 0x25 };
    uint8_t toc[10] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 20, 0 }, tur[6] = { 0 };
    uint8_t eject[6] = { 0x1b, 0, 0, 0, 0x02, 0 }, load[6] = { 0x1b, 0, 0, 0, 0x03, 0 };
    uint8_t lock[6] = { 0x1e, 0, 0, 0, 1, 0 }, unlock[6] = { 0x1e, 0, 0, 0, 0, 0 };
    uint8_t rd[10] = { 0x28, 0, 0, 0, 0, 2, 0, 0, 1, 0 }, wr[10] = { 0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
    static uint8_t block[2048];

    (void)state;
    run(3, 0, inq, out, sizeof(out));
    assert_int_equal(out[0], 0x05);
    assert_int_equal(out[1], 0x80);
    clear_unit_attention(3, 0);
    run(3, 0, rc, out, 8);
    assert_int_equal(be32(out), CD_SIZE / 2048 - 1);
    assert_int_equal(be32(out + 4), 2048);
    assert_int_equal(run(3, 0, toc, out, 20).status, SCSI_GOOD);
    assert_int_equal(out[14], 0xaa);
    assert_int_equal(be32(out + 16), CD_SIZE / 2048);
    assert_int_equal(run(3, 0, rd, block, sizeof(block)).status, SCSI_GOOD);
    assert_int_equal(be32(block), 2 * 4);           /* 512-byte block 8 */
    expect_sense(run(3, 0, wr, block, sizeof(block)), SENSE_INVALID_OPCODE);
    assert_int_equal(run(3, 0, lock, NULL, 0).status, SCSI_GOOD);
    expect_sense(run(3, 0, eject, NULL, 0), SENSE_REMOVAL_PREVENTED);
    assert_int_equal(run(3, 0, unlock, NULL, 0).status, SCSI_GOOD);
    assert_int_equal(run(3, 0, eject, NULL, 0).status, SCSI_GOOD);
    expect_sense(run(3, 0, tur, NULL, 0), SENSE_NO_MEDIUM);
    assert_int_equal(run(3, 0, load, NULL, 0).status, SCSI_GOOD);
    assert_int_equal(run(3, 0, tur, NULL, 0).status, SCSI_GOOD);
}

/* GET EVENT STATUS NOTIFICATION, media class: what happened since the last poll. */
static uint8_t media_event(uint8_t *status)
{
    uint8_t gesn[10] = { 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0 }, out[8];

    assert_int_equal(run(3, 0, gesn, out, sizeof(out)).status, SCSI_GOOD);
    assert_int_equal(be16(out), 6);             /* a media descriptor follows */
    assert_int_equal(out[2], 0x04);             /* media class */
    assert_int_equal(out[3], 0x10);             /* supported: media */
    *status = out[5];
    return out[4] & 0x0f;
}

static void test_cdrom_events(void **state)
{
    uint8_t eject[6] = { 0x1b, 0, 0, 0, 0x02, 0 }, load[6] = { 0x1b, 0, 0, 0, 0x03, 0 };
    uint8_t lock[6] = { 0x1e, 0, 0, 0, 1, 0 };
    uint8_t async[10] = { 0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0 };
    uint8_t other[10] = { 0x4a, 0x01, 0, 0, 0x02, 0, 0, 0, 8, 0 }, out[8], status;
    struct env *e = *state;
    struct drive *old;
    char *err = NULL;

    /* Not held back by the pending unit attention (MMC-6 4.1.6.1). */
    assert_int_equal(media_event(&status), 0);
    assert_int_equal(status, 0x02);             /* medium present, tray closed */
    expect_sense(run(3, 0, async, out, sizeof(out)), SENSE_INVALID_FIELD);
    clear_unit_attention(3, 0);
    assert_int_equal(run(3, 0, other, out, sizeof(out)).status, SCSI_GOOD);
    assert_int_equal(be16(out), 2);
    assert_int_equal(out[2], 0x80);             /* no event available in those classes */
    assert_int_equal(run(3, 0, eject, NULL, 0).status, SCSI_GOOD);
    assert_int_equal(media_event(&status), 3);  /* media removal */
    assert_int_equal(status, 0x03);             /* tray open, the disc on it */
    assert_int_equal(media_event(&status), 0);  /* reported once */
    assert_int_equal(run(3, 0, load, NULL, 0).status, SCSI_GOOD);
    assert_int_equal(run(3, 0, lock, NULL, 0).status, SCSI_GOOD);
    assert_int_equal(blk_eject(e->devs[2]->blk, "cd", false, &old, NULL, NULL, &err), -1);
    free(err);
    err = NULL;
    /* Two events pending: one a poll, the medium's first, none lost. */
    assert_int_equal(media_event(&status), 2);  /* new media */
    assert_int_equal(media_event(&status), 1);  /* the host asks the guest to eject */
    assert_int_equal(media_event(&status), 0);
    /* Asked again, then forced: the tray opens and the request is moot. */
    assert_int_equal(blk_eject(e->devs[2]->blk, "cd", false, &old, NULL, NULL, &err), -1);
    free(err);
    err = NULL;
    assert_int_equal(blk_eject(e->devs[2]->blk, "cd", true, &old, NULL, NULL, &err), 0);
    assert_int_equal(media_event(&status), 3);  /* media removal */
    assert_int_equal(status, 0x01);             /* tray open, empty */
    assert_int_equal(media_event(&status), 0);
    assert_ptr_equal(old, e->drives[2]);        /* "iso": closed with the others */
}

static void count_transfer(struct scsi_request *req, int n)
{
    (void)req;
    (void)n;
    E->completions += 1000;     /* must not happen for a cancelled request */
}

static void test_cancel_with_io_in_flight(void **state)
{
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 64, 0 };
    static uint8_t data[64 * 512];
    struct iovec iov = { data, sizeof(data) };
    struct scsi_request *req;
    int before;

    (void)state;
    clear_unit_attention(1, 0);
    before = E->completions;
    req = scsi_req_new(&E->bus, 1, 0, 9, r10, 10, NULL);
    scsi_req_start(req);
    scsi_req_transfer(req, &iov, 1, count_transfer);
    scsi_req_cancel(req);
    assert_int_equal(E->completions, before + 1);
    assert_int_equal(req->status, SCSI_TASK_ABORTED);
    scsi_req_unref(req);
    aio_drain(E->aio);
    assert_int_equal(E->completions, before + 1);
}

static void many_done(struct scsi_request *req, int n)
{
    (void)req;
    assert_true(n > 0);
}

static void test_many_tagged_requests(void **state)
{
    enum { N = 64 };
    static uint8_t data[N][4096];
    struct scsi_request *reqs[N];
    struct iovec iov[N];
    int before;

    (void)state;
    clear_unit_attention(1, 0);
    before = E->completions;
    for (int i = 0; i < N; i++) {
        uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 };

        put_be32(r10 + 2, (uint32_t)(i * 16));
        reqs[i] = scsi_req_new(&E->bus, 1, 0, (uint32_t)i, r10, 10, NULL);
        scsi_req_start(reqs[i]);
        iov[i] = (struct iovec){ data[i], sizeof(data[i]) };
        scsi_req_transfer(reqs[i], &iov[i], 1, many_done);
    }
    while (E->completions < before + N) {
        loop_run(E->loop);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(reqs[i]->status, SCSI_GOOD);
        assert_int_equal(be32(data[i]), i * 16);
        assert_int_equal(be32(data[i] + 7 * 512), i * 16 + 7);
        scsi_req_unref(reqs[i]);
    }
}

static int second_transfer_result;

static void second_done(struct scsi_request *req, int n)
{
    (void)req;
    second_transfer_result = n;
}

/* A transfer while another is in flight is refused; the first lands whole. */
static void test_one_transfer_at_a_time(void **state)
{
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 64, 0 };
    static uint8_t data[64 * 512];
    struct iovec first = { data, 32 * 512 }, second = { data + 32 * 512, 32 * 512 };
    struct scsi_request *req;

    (void)state;
    clear_unit_attention(1, 0);
    req = scsi_req_new(&E->bus, 1, 0, 9, r10, 10, NULL);
    scsi_req_start(req);
    scsi_req_transfer(req, &first, 1, on_transfer);
    assert_int_equal(req->offset, 0);           /* in flight */
    second_transfer_result = 0;
    scsi_req_transfer(req, &second, 1, second_done);
    assert_int_equal(second_transfer_result, -EBUSY);
    loop_run(E->loop);
    assert_int_equal(req->offset, 32 * 512);
    assert_int_equal(be32(data + 31 * 512), 31);
    scsi_req_cancel(req);
    scsi_req_unref(req);
}

/* --- a file layer whose I/O waits until the test lets it go ------------------ */

enum { GATE_SIZE = 64 * 512, GATE_MAX = 8 };

struct gate_io {
    struct loop_bh bh;
    struct blk_io *io;
};

static struct gate {
    struct blk_file base;
    uint8_t data[GATE_SIZE];
    struct gate_io ios[GATE_MAX];
    unsigned submits, done;
    bool hold;
    int fail;                   /* an errno every I/O fails with; 0: none */
} G;

static void gate_run(void *opaque)
{
    struct gate_io *g = opaque;
    struct blk_io *io = g->io;
    int result = -G.fail;

    if (!G.fail && io->op == BLK_READ) {
        result = iov_from_buf(io->iov, io->iovcnt, 0, G.data + io->offset, iov_size(io->iov, io->iovcnt));
    } else if (!G.fail && io->op == BLK_WRITE) {
        result = iov_to_buf(io->iov, io->iovcnt, 0, G.data + io->offset, iov_size(io->iov, io->iovcnt));
    }
    G.done++;
    io->done(io, result);
    loop_quit(E->loop, 0);
}

static void gate_submit(struct blk_file *f, struct blk_io *io)
{
    struct gate_io *g = &G.ios[G.submits++];

    assert_true(G.submits <= GATE_MAX);
    assert_true(io->offset + io->len <= GATE_SIZE);
    g->io = io;
    loop_bh_init(&g->bh, gate_run, g);
    if (!G.hold) {
        loop_bh_schedule(blk_file_loop(f), &g->bh);
    }
}

static void gate_release(unsigned i)
{
    loop_bh_schedule(blk_file_loop(&G.base), &G.ios[i].bh);
}

static void gate_drain(struct blk_file *f)
{
    (void)f;
    assert_int_equal(G.done, G.submits);
}

static void gate_close(struct blk_file *f)
{
    (void)f;
}

static int gate_length(struct blk_file *f, uint64_t *len)
{
    (void)f;
    *len = GATE_SIZE;
    return 0;
}

static int64_t gate_pread(struct blk_file *f, void *buf, uint64_t len, uint64_t offset)
{
    (void)f;
    memcpy(buf, G.data + offset, len);
    return (int64_t)len;
}

static int gate_pwrite(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset)
{
    (void)f;
    memcpy(G.data + offset, buf, len);
    return 0;
}

static int gate_sync(struct blk_file *f)
{
    (void)f;
    return 0;
}

static const struct file_driver gate_driver = {
    .name = "gate", .close = gate_close, .submit = gate_submit, .drain = gate_drain,
    .length = gate_length, .pread = gate_pread, .pwrite = gate_pwrite, .sync = gate_sync,
};

/* A device that must not be created: the error it gives. */
static char *device_refused(struct env *e, const char *text)
{
    struct device_ctx ctx = { .loop = e->loop, .find_drive = find_drive, .opaque = e };
    char *err = NULL;
    struct opts *o = opts_parse(text, "driver", &err);
    struct device *dev = device_create(&ctx, o, &err);

    opts_free(o);
    assert_null(dev);
    assert_non_null(err);
    return err;
}

/* scsi-hd takes 512, 2048 and 4096-byte blocks (QEMU takes any power of two); no other. */
static void test_block_sizes(void **state)
{
    struct env *e = *state;
    uint8_t rc10[10] = { 0x25 }, out[8];
    char *err;

    add_drive(e, "bs", DISK_SIZE, "");
    err = device_refused(e, "scsi-hd,id=sb,drive=bs,bus=hba0.0,scsi-id=6,logical_block_size=1024");
    assert_non_null(strstr(err, "512, 2048 or 4096"));
    free(err);
    add_device(e, "scsi-hd,id=sb,drive=bs,bus=hba0.0,scsi-id=6,logical_block_size=2048");
    clear_unit_attention(6, 0);
    run(6, 0, rc10, out, sizeof(out));
    assert_int_equal(be32(out), DISK_SIZE / 2048 - 1);
    assert_int_equal(be32(out + 4), 2048);
}

/* A scsi-hd at scsi-id 5 on the gate (removable=on, or more of its properties). */
static void add_gate_disk_with(struct env *e, const char *more)
{
    char text[128];
    char *err = NULL;
    struct opts *o = opts_parse("id=gd,file=gate,format=raw", NULL, &err);

    memset(&G, 0, sizeof(G));
    G.base = (struct blk_file){ .driver = &gate_driver, .aio = e->aio, .align = 1 };
    e->drives[e->ndrives] = drive_open_on(o, &G.base, &err);
    if (!e->drives[e->ndrives]) {
        fail_msg("gate drive: %s", err);
    }
    opts_free(o);
    e->ndrives++;
    snprintf(text, sizeof(text), "scsi-hd,id=sg,drive=gd,bus=hba0.0,scsi-id=5%s", more);
    add_device(e, text);
}

static void add_gate_disk(struct env *e)
{
    add_gate_disk_with(e, "");
}

static void no_transfer_result(struct scsi_request *req, int n)
{
    (void)req;
    (void)n;
}

static struct scsi_request *start_rw(bool write, uint32_t tag, struct iovec *iov)
{
    uint8_t cdb[10] = { write ? 0x2a : 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
    struct scsi_request *req = scsi_req_new(&E->bus, 5, 0, tag, cdb, 10, NULL);

    scsi_req_start(req);
    scsi_req_transfer(req, iov, 1, no_transfer_result);
    return req;
}

/*
 * A WRITE aborted with its I/O in flight: the I/O of later commands to the
 * disk waits until it has landed, so a later WRITE of the same blocks is
 * never overwritten by it, and a later READ sees the later data.
 */
static void test_aborted_write_lands_before_later_io(void **state)
{
    static uint8_t old[8 * 512], new[8 * 512], got[8 * 512];
    struct iovec a = { old, sizeof(old) }, b = { new, sizeof(new) }, c = { got, sizeof(got) };
    struct scsi_request *wa, *wb, *rc;
    int before;

    add_gate_disk(*state);
    clear_unit_attention(5, 0);
    memset(old, 0xaa, sizeof(old));
    memset(new, 0xbb, sizeof(new));
    G.hold = true;
    before = E->completions;
    wa = start_rw(true, 1, &a);
    assert_int_equal(G.submits, 1);             /* in flight */
    scsi_req_cancel(wa);
    assert_int_equal(wa->status, SCSI_TASK_ABORTED);
    wb = start_rw(true, 2, &b);
    rc = start_rw(false, 3, &c);
    assert_int_equal(G.submits, 1);             /* held back behind the aborted write */
    G.hold = false;
    gate_release(0);
    while (E->completions < before + 3) {
        loop_run(E->loop);
    }
    assert_int_equal(G.submits, 3);
    assert_int_equal(wb->status, SCSI_GOOD);
    assert_int_equal(rc->status, SCSI_GOOD);
    assert_memory_equal(got, new, sizeof(new));
    assert_memory_equal(G.data, new, sizeof(new));
    scsi_req_unref(wa);
    scsi_req_unref(wb);
    scsi_req_unref(rc);
}

/* A command cancelled while its I/O waits behind an aborted one never does that I/O. */
static void test_fenced_io_cancelled_while_it_waits(void **state)
{
    static uint8_t old[8 * 512], new[8 * 512];
    struct iovec a = { old, sizeof(old) }, b = { new, sizeof(new) };
    struct scsi_request *wa, *wb;

    add_gate_disk(*state);
    clear_unit_attention(5, 0);
    memset(old, 0xaa, sizeof(old));
    memset(new, 0xbb, sizeof(new));
    G.hold = true;
    wa = start_rw(true, 1, &a);
    scsi_req_cancel(wa);
    wb = start_rw(true, 2, &b);
    scsi_req_cancel(wb);
    G.hold = false;
    gate_release(0);
    while (G.done < 1) {
        loop_run(E->loop);
    }
    assert_int_equal(G.submits, 1);             /* the second write never went */
    assert_memory_equal(G.data, old, sizeof(old));
    scsi_req_unref(wa);
    scsi_req_unref(wb);
}

static void medium_out(void *opaque, struct drive *old, char *err)
{
    struct drive **out = opaque;

    assert_null(err);
    *out = old;
}

/*
 * The host ejects a removable disk (forced) while a WRITE's I/O is in
 * flight and a READ has started but moved no data yet: as QEMU, the tray
 * opens at once, the WRITE lands and ends GOOD, then the medium comes out;
 * the READ's data move fails NOT READY, MEDIUM NOT PRESENT (QEMU's
 * ENOMEDIUM), and so does a command that starts afterwards.
 */
static void test_eject_waits_for_the_write_in_flight(void **state)
{
    struct env *e = *state;
    static uint8_t new[8 * 512], got[8 * 512];
    struct iovec a = { new, sizeof(new) }, c = { got, sizeof(got) };
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
    struct drive *gate, *old = NULL;
    struct block_backend *blk;
    struct scsi_request *wa, *rb;
    char *err = NULL;
    int before;

    add_gate_disk_with(e, ",removable=on");
    gate = e->drives[e->ndrives - 1];
    blk = e->devs[e->ndevs - 1]->blk;
    clear_unit_attention(5, 0);
    memset(new, 0xbb, sizeof(new));
    G.hold = true;
    before = E->completions;
    wa = start_rw(true, 1, &a);
    assert_int_equal(G.submits, 1);             /* in flight */
    rb = scsi_req_new(&E->bus, 5, 0, 2, r10, 10, NULL);
    scsi_req_start(rb);                         /* its command phase only */
    assert_int_equal(blk_eject(blk, "sg", true, &old, medium_out, &old, &err), 1);
    assert_true(blk_tray_open(blk));
    assert_ptr_equal(blk_drive(blk), gate);     /* until the write has landed */

    scsi_req_transfer(rb, &c, 1, no_transfer_result);
    while (E->completions < before + 1) {
        loop_run(E->loop);
    }
    assert_int_equal(rb->status, SCSI_CHECK_CONDITION);
    assert_int_equal(rb->sense.key, SENSE_NO_MEDIUM.key);
    assert_int_equal(rb->sense.asc, SENSE_NO_MEDIUM.asc);
    assert_int_equal(G.submits, 1);             /* it did no I/O */
    expect_sense(run(5, 0, r10, got, sizeof(got)), SENSE_NO_MEDIUM);
    assert_null(old);
    assert_ptr_equal(blk_drive(blk), gate);

    G.hold = false;
    gate_release(0);
    while (!old) {
        loop_run_once(E->loop, 100);
    }
    assert_int_equal(wa->status, SCSI_GOOD);
    assert_memory_equal(G.data, new, sizeof(new));
    assert_ptr_equal(old, gate);                /* closed with the others at teardown */
    assert_null(blk_drive(blk));
    scsi_req_unref(wa);
    scsi_req_unref(rb);
}

/*
 * The guest closes the tray (START STOP UNIT, LoEj) while a forced eject
 * waits for a WRITE in flight, and starts a READ on the medium that is
 * available again: before the WRITE lands (read_first), or once it has
 * landed but before the eject's wait has looked (its bottom half runs a
 * loop pass later).  Either way the eject waits for that READ too, then
 * opens the tray again and takes the medium out (swap_medium()).  Both
 * commands end GOOD; the eject's answer (done()) comes once, no error.
 */
static void eject_while_the_guest_closes_the_tray(struct env *e, bool read_first)
{
    static uint8_t new[8 * 512], got[8 * 512];
    struct iovec a = { new, sizeof(new) }, c = { got, sizeof(got) };
    uint8_t load[6] = { 0x1b, 0, 0, 0, 0x03, 0 }, tur[6] = { 0 };
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 16, 0, 0, 8, 0 };
    struct drive *gate, *old = NULL;
    struct block_backend *blk;
    struct scsi_request *wa, *rb;
    char *err = NULL;

    add_gate_disk_with(e, ",removable=on");
    gate = e->drives[e->ndrives - 1];
    blk = e->devs[e->ndevs - 1]->blk;
    clear_unit_attention(5, 0);
    memset(new, 0xbb, sizeof(new));
    memset(G.data + 16 * 512, 0xcc, sizeof(got));
    G.hold = true;
    wa = start_rw(true, 1, &a);
    assert_int_equal(G.submits, 1);
    assert_int_equal(blk_eject(blk, "sg", true, &old, medium_out, &old, &err), 1);
    assert_true(blk_tray_open(blk));

    assert_int_equal(run(5, 0, load, NULL, 0).status, SCSI_GOOD);
    assert_false(blk_tray_open(blk));
    assert_true(blk_available(blk));
    if (!read_first) {
        gate_release(0);
        while (!wa->completed) {
            loop_run_once(E->loop, 100);
        }
        assert_null(old);                       /* the wait's bottom half is yet to run */
    }
    rb = scsi_req_new(&E->bus, 5, 0, 2, r10, 10, NULL);
    scsi_req_start(rb);
    scsi_req_transfer(rb, &c, 1, no_transfer_result);
    assert_int_equal(G.submits, 2);             /* the READ's I/O is in flight too */
    if (read_first) {
        gate_release(0);
        while (!wa->completed) {
            loop_run_once(E->loop, 100);
        }
    }
    loop_run_once(E->loop, 10);
    assert_int_equal(wa->status, SCSI_GOOD);
    assert_null(old);                           /* the READ still holds the medium */
    assert_ptr_equal(blk_drive(blk), gate);
    assert_false(blk_tray_open(blk));

    gate_release(1);
    while (!old) {
        loop_run_once(E->loop, 100);
    }
    assert_true(rb->completed);
    assert_int_equal(rb->status, SCSI_GOOD);
    assert_memory_equal(got, G.data + 16 * 512, sizeof(got));
    assert_memory_equal(G.data, new, sizeof(new));
    assert_ptr_equal(old, gate);                /* closed with the others at teardown */
    assert_null(blk_drive(blk));
    assert_true(blk_tray_open(blk));            /* opened again for the medium to come out */
    expect_sense(run(5, 0, tur, NULL, 0), SENSE_NO_MEDIUM);
    scsi_req_unref(wa);
    scsi_req_unref(rb);
}

static void test_eject_waits_when_the_guest_closes_the_tray(void **state)
{
    eject_while_the_guest_closes_the_tray(*state, true);
}

static void test_eject_waits_when_the_guest_closes_the_tray_late(void **state)
{
    eject_while_the_guest_closes_the_tray(*state, false);
}

static struct scsi_request *plain_req(void)
{
    static const uint8_t tur[6] = { 0 };

    return scsi_req_new(&E->bus, 1, 0, 0, tur, 6, NULL);
}

/* The I/O errors a backend reported (BLOCK_IO_ERROR), the last one's errno. */
static struct {
    unsigned count;
    int error;
    enum blk_op op;
} reported;

static void on_io_error(void *opaque, struct block_backend *blk, enum blk_op op, int error)
{
    (void)opaque;
    (void)blk;
    reported.count++;
    reported.error = error;
    reported.op = op;
}

static const struct blk_listener error_listener = { .io_error = on_io_error };

/* A READ(10) or WRITE(10) of 8 blocks on the gate disk, run to its status. */
static struct result gate_rw(bool write)
{
    static uint8_t data[8 * 512];
    struct iovec iov = { data, sizeof(data) };
    int before = E->completions;
    struct scsi_request *req = start_rw(write, 1, &iov);
    struct result r;

    while (E->completions == before) {
        loop_run(E->loop);
    }
    r = (struct result){ .status = req->status, .sense = req->sense, .moved = req->offset };
    scsi_req_unref(req);
    return r;
}

/*
 * Each errno a file layer may give, on a READ and a WRITE: the sense QEMU's
 * scsi-hd reports for it (scsi_sense_from_errno(), werror=report,
 * rerror=report), written out here, not taken from our table; and an I/O
 * error reported for each (BLOCK_IO_ERROR), as QEMU's blk_error_action().
 * A WRITE's data counts as moved (QEMU's HBA moves it into the disk's
 * buffer before the I/O), but for EFAULT (guest memory gone under it);
 * a READ's none.
 */
static void test_io_errors_as_qemu_reports_them(void **state)
{
    static const struct {
        int error;
        struct scsi_sense sense;
    } cases[] = {
        { EIO, { 0x0b, 0x00, 0x06 } },          /* ABORTED COMMAND, I/O PROCESS TERMINATED */
        { EDQUOT, { 0x0b, 0x00, 0x06 } },
        { ECANCELED, { 0x0b, 0x00, 0x06 } },
        { EFAULT, { 0x0b, 0x00, 0x06 } },
        { EROFS, { 0x0b, 0x00, 0x06 } },
        { EPERM, { 0x0b, 0x00, 0x06 } },        /* NBD's errors: EPERM, EOVERFLOW, ... */
        { EOVERFLOW, { 0x0b, 0x00, 0x06 } },
        { ENOTSUP, { 0x0b, 0x00, 0x06 } },
        { ESHUTDOWN, { 0x0b, 0x00, 0x06 } },
        { ENOSPC, { 0x07, 0x27, 0x07 } },       /* DATA PROTECT, SPACE ALLOCATION FAILED */
        { EINVAL, { 0x05, 0x24, 0x00 } },       /* ILLEGAL REQUEST, INVALID FIELD IN CDB */
        { ENOMEDIUM, { 0x02, 0x3a, 0x00 } },    /* NOT READY, MEDIUM NOT PRESENT */
        { ENOMEM, { 0x04, 0x44, 0x00 } },       /* HARDWARE ERROR, INTERNAL TARGET FAILURE */
        { EREMOTEIO, { 0x04, 0x44, 0x00 } },
        { ENODEV, { 0x04, 0x44, 0x00 } },
        { ENODATA, { 0x03, 0x11, 0x00 } },      /* MEDIUM ERROR, UNRECOVERED READ ERROR */
    };
    struct result r;

    add_gate_disk(*state);
    clear_unit_attention(5, 0);
    memset(&reported, 0, sizeof(reported));
    blk_set_listener(E->drives[E->ndrives - 1]->backend, &error_listener, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int write = 0; write <= 1; write++) {
            unsigned before = reported.count;

            G.fail = cases[i].error;
            G.submits = G.done = 0;
            print_message("# %s of %s\n", write ? "WRITE" : "READ", strerror(cases[i].error));
            r = gate_rw(write);
            expect_sense(r, cases[i].sense);
            assert_int_equal(r.moved, write && cases[i].error != EFAULT ? 8 * 512 : 0);
            assert_int_equal(reported.count, before + 1);
            assert_int_equal(reported.error, -cases[i].error);
            assert_int_equal(reported.op, write ? BLK_WRITE : BLK_READ);
        }
    }
    G.fail = 0;
    G.submits = G.done = 0;
    assert_int_equal(gate_rw(true).status, SCSI_GOOD);
}

struct shrink_run {
    uint64_t shrink_to;         /* the image's new size once the data phase is under way */
    int failed_transfer;        /* what the transfer that failed said */
};

static void shrink_transfer_done(struct scsi_request *req, int n)
{
    struct shrink_run *s = req->hba_private;

    if (n < 0) {
        s->failed_transfer = n;
    }
    loop_quit(E->loop, 0);
}

/*
 * A command of 256 KiB at LBA 4096 of d0 (at 2 MiB), in 4 KiB transfers;
 * after the first, d0 shrinks (block_resize) below the command's blocks.
 */
static struct result run_across_shrink(uint8_t op, struct shrink_run *s)
{
    static uint8_t data[256 * 1024];
    uint8_t cdb[10] = { op, 0, 0, 0, 0x10, 0, 0, 2, 0, 0 };
    struct scsi_request *req = scsi_req_new(&E->bus, 1, 0, 9, cdb, 10, s);
    int before = E->completions;
    char *err = NULL;
    struct result r;

    scsi_req_start(req);
    assert_int_equal(req->xfer_len, sizeof(data));
    while (!req->completed && req->offset < req->xfer_len) {
        struct iovec iov = { data + req->offset, 4096 };
        uint64_t at = req->offset;

        scsi_req_transfer(req, &iov, 1, shrink_transfer_done);
        while (req->offset == at && !req->completed && !s->failed_transfer) {
            loop_run(E->loop);
        }
        if (at == 0 && blk_drive_resize(E->drives[0], s->shrink_to, &err) < 0) {
            fail_msg("block_resize: %s", err);
        }
    }
    while (E->completions == before) {
        loop_run(E->loop);
    }
    r = (struct result){ .status = req->status, .sense = req->sense, .moved = req->offset };
    scsi_req_unref(req);
    return r;
}

/*
 * The image shrinks under commands in their data phase: their later I/O
 * falls past the new end and fails as in QEMU, whose block layer fails it
 * EIO (ABORTED COMMAND, I/O PROCESS TERMINATED), counted as a failed
 * operation, not an invalid one.
 */
static void test_shrink_under_commands_in_their_data_phase(void **state)
{
    const struct blk_stats *st = blk_stats(E->drives[0]->backend);
    struct blk_stats was;
    struct shrink_run s = { .shrink_to = 1 << 20 };
    struct result r;

    (void)state;
    clear_unit_attention(1, 0);
    was = *st;
    memset(&reported, 0, sizeof(reported));
    blk_set_listener(E->drives[0]->backend, &error_listener, NULL);
    r = run_across_shrink(0x2a, &s);            /* the write gathers, then fails whole */
    expect_sense(r, (struct scsi_sense){ 0x0b, 0x00, 0x06 });
    assert_int_equal(reported.count, 1);        /* BLOCK_IO_ERROR, as QEMU's */
    assert_int_equal(reported.error, -EIO);
    assert_int_equal(st->failed_wr_operations - was.failed_wr_operations, 1);
    assert_int_equal(st->invalid_wr_operations, was.invalid_wr_operations);
    /* Its data had all left the initiator for the I/O, as in QEMU: every transfer moved. */
    assert_int_equal(s.failed_transfer, 0);
    assert_int_equal(r.moved, 256 * 1024);

    assert_int_equal(blk_drive_resize(E->drives[0], DISK_SIZE, NULL), 0);
    expect_sense(run(1, 0, (uint8_t[6]){ 0 }, NULL, 0), SENSE_CAPACITY_CHANGED);
    s = (struct shrink_run){ .shrink_to = 1 << 20 };
    r = run_across_shrink(0x28, &s);            /* the read's first 128 KiB came before */
    expect_sense(r, (struct scsi_sense){ 0x0b, 0x00, 0x06 });
    assert_int_equal(r.moved, 128 * 1024);
    assert_int_equal(st->failed_rd_operations - was.failed_rd_operations, 1);
    assert_int_equal(st->invalid_rd_operations, was.invalid_rd_operations);
}

static void read_capacity_16(uint64_t *last)
{
    uint8_t rc16[16] = { 0x9e, 0x10, [13] = 32 }, out[32];

    assert_int_equal(run(1, 0, rc16, out, sizeof(out)).status, SCSI_GOOD);
    *last = be64(out);
}

/*
 * After a resize, block commands are checked against the capacity the
 * guest last read (READ CAPACITY) or had at the last reset, as QEMU's
 * max_lba: past a shrunk end a new command goes to the image and fails
 * there (EIO: ABORTED COMMAND, a failed operation, its write's data
 * moved), refused (LBA OUT OF RANGE, an invalid one) only once the guest
 * has read the new capacity or the bus was reset; the blocks of a growth
 * are refused until then.
 */
static void test_range_is_the_capacity_the_guest_knows(void **state)
{
    const struct blk_stats *st = blk_stats(E->drives[0]->backend);
    struct blk_stats was;
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0 };     /* LBA 4096: at 2 MiB */
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0 };
    uint8_t unmap[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0 }, list[24] = { 0, 22, 0, 16 };
    static uint8_t data[8 * 512];
    uint64_t last;
    struct result r;

    (void)state;
    clear_unit_attention(1, 0);
    assert_int_equal(blk_drive_resize(E->drives[0], 1 << 20, NULL), 0);
    expect_sense(run(1, 0, (uint8_t[6]){ 0 }, NULL, 0), SENSE_CAPACITY_CHANGED);
    was = *st;
    expect_sense(run_may_fail(1, 0, r10, data, sizeof(data)), SENSE_IO_ERROR);
    r = run_may_fail(1, 0, w10, data, sizeof(data));
    expect_sense(r, SENSE_IO_ERROR);
    assert_int_equal(r.moved, sizeof(data));
    put_be64(list + 8, 4096);
    put_be32(list + 16, 8);
    expect_sense(run(1, 0, unmap, list, sizeof(list)), SENSE_IO_ERROR);
    assert_int_equal(st->failed_rd_operations - was.failed_rd_operations, 1);
    assert_int_equal(st->failed_wr_operations - was.failed_wr_operations, 1);
    assert_int_equal(st->invalid_rd_operations, was.invalid_rd_operations);

    read_capacity_16(&last);
    assert_true(last == 2047);
    expect_sense(run_may_fail(1, 0, r10, data, sizeof(data)), SENSE_LBA_OUT_OF_RANGE);
    assert_int_equal(st->invalid_rd_operations - was.invalid_rd_operations, 1);

    /* Grown: the new blocks wait for READ CAPACITY. */
    assert_int_equal(blk_drive_resize(E->drives[0], DISK_SIZE, NULL), 0);
    expect_sense(run(1, 0, (uint8_t[6]){ 0 }, NULL, 0), SENSE_CAPACITY_CHANGED);
    expect_sense(run_may_fail(1, 0, r10, data, sizeof(data)), SENSE_LBA_OUT_OF_RANGE);
    read_capacity_16(&last);
    assert_true(last == DISK_BLOCKS - 1);
    memset(data, 0xee, sizeof(data));
    assert_int_equal(run(1, 0, r10, data, sizeof(data)).status, SCSI_GOOD);
    assert_int_equal(be32(data), 0);            /* grown: zeros */

    /* A bus reset takes the capacity of the moment, as QEMU's scsi_disk_reset(). */
    assert_int_equal(blk_drive_resize(E->drives[0], 1 << 20, NULL), 0);
    scsi_bus_reset(&E->bus);
    expect_sense(run(1, 0, (uint8_t[6]){ 0 }, NULL, 0), SENSE_RESET);
    expect_sense(run(1, 0, (uint8_t[6]){ 0 }, NULL, 0), SENSE_CAPACITY_CHANGED);
    expect_sense(run_may_fail(1, 0, r10, data, sizeof(data)), SENSE_LBA_OUT_OF_RANGE);
}

/* A command started while memory is short: its status and sense, at once. */
static struct result start_without_memory(unsigned target, const uint8_t *cdb)
{
    struct scsi_request *req = scsi_req_new(&E->bus, target, 0, 7, cdb,
                                            scsi_cdb_length(cdb[0]), NULL);
    struct result r;

    allocations_fail = true;
    scsi_req_start(req);
    allocations_fail = false;
    assert_true(req->completed);
    r = (struct result){ .status = req->status, .sense = req->sense };
    scsi_req_unref(req);
    return r;
}

/*
 * Memory short for a command's state or its emulated data: the command
 * fails as an I/O failing ENOMEM does (QEMU's scsi_sense_from_errno():
 * HARDWARE ERROR, INTERNAL TARGET FAILURE), whatever it was; the next one,
 * with memory, runs.
 */
static void test_commands_without_memory(void **state)
{
    static const uint8_t cdbs[][16] = {
        { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 },            /* READ(10): its state */
        { 0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0 },            /* WRITE(10) */
        { 0x35 },                                       /* SYNCHRONIZE CACHE(10) */
        { 0x2f, 0x02, 0, 0, 0, 0, 0, 0, 1, 0 },         /* VERIFY(10), BYTCHK=1 */
        { 0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0 },            /* WRITE SAME(10) */
        { 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0 },           /* UNMAP: its parameter list */
        { 0x55, 0x10, 0, 0, 0, 0, 0, 0, 24, 0 },        /* MODE SELECT(10) */
        { 0x12, 0, 0, 0, 36, 0 },                       /* INQUIRY: the reply */
        { 0x25 },                                       /* READ CAPACITY(10) */
        { 0x1a, 0, 0x3f, 0, 255, 0 },                   /* MODE SENSE(6) */
        { 0x03, 0, 0, 0, 18, 0 },                       /* REQUEST SENSE */
        { 0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 },     /* REPORT LUNS */
    };
    uint8_t rc10[10] = { 0x25 }, out[8];

    (void)state;
    clear_unit_attention(1, 0);
    for (size_t i = 0; i < sizeof(cdbs) / sizeof(cdbs[0]); i++) {
        print_message("# 0x%02x\n", cdbs[i][0]);
        expect_sense(start_without_memory(1, cdbs[i]), SENSE_TARGET_FAILURE);
    }
    assert_int_equal(run(1, 0, rc10, out, sizeof(out)).status, SCSI_GOOD);
    assert_int_equal(be32(out), DISK_BLOCKS - 1);
}

/*
 * The image file cut short behind the drive's back (not block_resize): as
 * QEMU's file driver, a read past the file's end gets zeros and a write
 * there grows the file; both end GOOD.
 */
static void test_file_cut_short_under_the_drive(void **state)
{
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0 };     /* LBA 4096: at 2 MiB */
    static uint8_t data[8 * 512], zeros[8 * 512], back[8 * 512];

    (void)state;
    clear_unit_attention(1, 0);
    assert_int_equal(truncate(E->paths[0], (2 << 20) + 1024), 0);
    memset(data, 0xee, sizeof(data));
    assert_int_equal(run(1, 0, r10, data, sizeof(data)).status, SCSI_GOOD);
    assert_int_equal(be32(data), 4096);                     /* what the file still has */
    assert_int_equal(be32(data + 512), 4097);
    memset(zeros, 0, sizeof(zeros));
    assert_memory_equal(data + 1024, zeros, sizeof(data) - 1024);
    r10[0] = 0x2a;
    memset(data, 0x5c, sizeof(data));
    assert_int_equal(run(1, 0, r10, data, sizeof(data)).status, SCSI_GOOD);
    read_file(0, 4096 * 512, back, sizeof(back));
    assert_memory_equal(back, data, sizeof(data));
}

/*
 * Buffers go back to the pool for later commands (a fresh one costs a page
 * fault per page): a command takes a spare that fits it, not one twice its
 * size; bytes in use and spare stay within the limit; spares make room for
 * a fresh buffer; those freed after the pool's owner went are not kept.
 */
static void test_buffer_pool_keeps_spares(void **state)
{
    struct scsi_buffer_pool *pool = scsi_buffer_pool_new(1 << 20);
    struct scsi_request *a = plain_req(), *b = plain_req(), *c = plain_req(), *d = plain_req();
    uint8_t *pa, *pb;

    (void)state;
    pa = scsi_req_buffer(a, pool, 300 << 10);
    assert_non_null(pa);
    assert_null(scsi_req_buffer(a, pool, 4096));           /* one per request */
    assert_int_equal(scsi_buffer_pool_used(pool), 300 << 10);
    scsi_req_unref(a);
    assert_int_equal(scsi_buffer_pool_used(pool), 0);
    pb = scsi_req_buffer(b, pool, 512);                     /* not the 300 KiB spare */
    assert_non_null(pb);
    assert_ptr_not_equal(pb, pa);
    assert_int_equal(scsi_buffer_pool_used(pool), 4096);    /* whole pages */
    assert_ptr_equal(scsi_req_buffer(c, pool, (290 << 10) + 512), pa);
    assert_int_equal(scsi_buffer_pool_used(pool), (300 << 10) + 4096);
    assert_null(scsi_req_buffer(d, pool, 800 << 10));       /* past the share left */
    scsi_req_unref(b);
    scsi_req_unref(c);
    assert_int_equal(scsi_buffer_pool_used(pool), 0);
    /* The whole limit: the spares go to make room. */
    assert_non_null(scsi_req_buffer(d, pool, 1 << 20));
    assert_int_equal(scsi_buffer_pool_used(pool), 1 << 20);
    a = plain_req();
    assert_null(scsi_req_buffer(a, pool, 512));
    scsi_req_unref(a);
    scsi_buffer_pool_free(pool);        /* lives on until d's buffer goes; nothing leaks */
    scsi_req_unref(d);
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_unit_attention_and_request_sense),
        CASE(test_inquiry),
        CASE(test_capacity_and_reads),
        CASE(test_block_sizes),
        CASE(test_writes_reach_the_image),
        CASE(test_data_in_pieces_of_any_size),
        CASE(test_write_pieces_gathered),
        CASE(test_mode_pages_and_write_cache),
        CASE(test_unmap_write_same_verify),
        CASE(test_accounting_as_qemu),
        CASE(test_write_same_counted_as_qemu),
        CASE(test_unmap_counted_as_qemu),
        CASE(test_luns_and_absent_targets),
        CASE(test_invalid_opcodes),
        CASE(test_cdrom),
        CASE(test_cdrom_events),
        CASE(test_cancel_with_io_in_flight),
        CASE(test_many_tagged_requests),
        CASE(test_one_transfer_at_a_time),
        CASE(test_aborted_write_lands_before_later_io),
        CASE(test_fenced_io_cancelled_while_it_waits),
        CASE(test_eject_waits_for_the_write_in_flight),
        CASE(test_eject_waits_when_the_guest_closes_the_tray),
        CASE(test_eject_waits_when_the_guest_closes_the_tray_late),
        CASE(test_buffer_pool_keeps_spares),
        CASE(test_io_errors_as_qemu_reports_them),
        CASE(test_shrink_under_commands_in_their_data_phase),
        CASE(test_range_is_the_capacity_the_guest_knows),
        CASE(test_commands_without_memory),
        CASE(test_file_cut_short_under_the_drive),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
