// SPDX-License-Identifier: GPL-2.0-or-later
#include "disk-io.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>

#include "util.h"
#include "util/byteorder.h"

enum { BATCH = 48, MAX_BLOCKS = 256, DEPTH = 16, READ_BLOCKS = 2048 };

void scsi_rw10(struct mpq_scsi_cmd *c, uint8_t op, uint32_t lba, uint16_t blocks, uint64_t gpa)
{
    memset(c, 0, sizeof(*c));
    c->cdb[0] = op;
    put_be32(c->cdb + 2, lba);
    c->cdb[7] = (uint8_t)(blocks >> 8);
    c->cdb[8] = (uint8_t)blocks;
    c->cdb_len = 10;
    c->data_gpa = gpa;
    c->len = blocks * 512u;
}

void disk_command(struct disk_io *d, const uint8_t *cdb, size_t len, uint64_t gpa,
                  uint32_t bytes, struct mpq_scsi_result *r)
{
    char *err = NULL;

    if (mpq_lsi_command(d->lsi, 0, 0, cdb, len, gpa, bytes, r, &err) < 0) {
        fail_msg("SCSI command 0x%02x: %s", cdb[0], err);
    }
}

void disk_clear_unit_attention(struct disk_io *d)
{
    uint8_t tur[6] = { 0 };
    struct mpq_scsi_result r;

    for (int i = 0; i < 2; i++) {
        disk_command(d, tur, 6, 0, 0, &r);
    }
    assert_int_equal(r.status, 0);
}

void disk_sync_cache(struct disk_io *d)
{
    uint8_t cdb[10] = { 0x35 };
    struct mpq_scsi_result r;

    disk_command(d, cdb, 10, 0, 0, &r);
    assert_int_equal(r.status, 0);
}

/* Fills a buffer of guest RAM with the next random bytes. */
static void fill_random(struct disk_io *d, uint64_t gpa, uint32_t bytes)
{
    for (uint32_t b = 0; b < bytes; b += 8) {
        uint64_t v = xorshift64(&d->rng);

        memcpy(d->ram->host + gpa + b, &v, 8);
    }
}

int disk_write_batch(struct disk_io *d, uint32_t first, uint32_t count, bool must_work)
{
    struct mpq_scsi_cmd cmds[BATCH];
    uint32_t lbas[BATCH], lens[BATCH];
    uint64_t gpa = DISK_IO_DATA;
    char *err = NULL;
    int n = 0, r;

    for (int tries = 0; n < BATCH && tries < 400; tries++) {
        uint32_t len = (uint32_t)(xorshift64(&d->rng) % MAX_BLOCKS) + 1;
        uint32_t lba = first + (uint32_t)(xorshift64(&d->rng) % (count - len));
        bool clash = gpa + len * 512ull > DISK_IO_DATA_END;

        for (int i = 0; i < n && !clash; i++) {
            clash = lba < lbas[i] + lens[i] && lbas[i] < lba + len;
        }
        if (clash) {
            continue;
        }
        fill_random(d, gpa, len * 512);
        scsi_rw10(&cmds[n], 0x2a, lba, (uint16_t)len, gpa);
        lbas[n] = lba;
        lens[n] = len;
        gpa += len * 512ull;
        n++;
    }
    r = mpq_lsi_run_queued(d->lsi, cmds, (size_t)n, DEPTH, &err);
    if (must_work) {
        if (r < 0) {
            fail_msg("writes: %s", err);
        }
        for (int i = 0; i < n; i++) {
            assert_int_equal(cmds[i].status, 0);
            memcpy(d->mirror + lbas[i] * 512ull, d->ram->host + cmds[i].data_gpa,
                   lens[i] * 512ull);
        }
    }
    free(err);
    return r;
}

void disk_read_and_compare(struct disk_io *d)
{
    for (uint32_t lba = 0; lba < d->blocks; lba += READ_BLOCKS) {
        uint32_t n = d->blocks - lba < READ_BLOCKS ? d->blocks - lba : READ_BLOCKS;
        struct mpq_scsi_cmd c;
        char *err = NULL;

        scsi_rw10(&c, 0x28, lba, (uint16_t)n, DISK_IO_DATA);
        if (mpq_lsi_run_queued(d->lsi, &c, 1, 1, &err) < 0) {
            fail_msg("read: %s", err);
        }
        assert_int_equal(c.status, 0);
        assert_memory_equal(d->ram->host + DISK_IO_DATA, d->mirror + lba * 512ull, n * 512);
    }
}

void disk_save_mirror(const struct disk_io *d, const char *path)
{
    FILE *m = fopen(path, "wb");

    assert_non_null(m);
    assert_int_equal(fwrite(d->mirror, 512, d->blocks, m), d->blocks);
    assert_int_equal(fclose(m), 0);
}
