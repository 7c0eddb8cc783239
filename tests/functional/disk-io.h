/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A SCSI disk driven through the client's LSI driver as a guest would, and
 * a mirror in memory of what was written to it: random writes many in
 * flight, reads compared with the mirror.  Guest RAM holds the controller's
 * work area at DISK_IO_WORK and data buffers from DISK_IO_DATA.
 */
#ifndef MPQEMU_TESTS_DISK_IO_H
#define MPQEMU_TESTS_DISK_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "client/mpqemu-client.h"
#include "client/mpqemu-lsi.h"

enum {
    DISK_IO_RAM_SIZE = 16 << 20,
    DISK_IO_WORK = 1 << 20,
    DISK_IO_DATA = 2 << 20,
    DISK_IO_DATA_END = 12 << 20,
};

struct disk_io {
    struct mpq_lsi *lsi;
    struct mpq_ram *ram;
    uint8_t *mirror;            /* the disk's bytes as written */
    uint32_t blocks;            /* the disk's size, in 512-byte blocks */
    uint64_t rng;               /* the data and offsets, reproducible */
};

/* READ(10) (0x28) or WRITE(10) (0x2a) of blocks at lba, the data at gpa. */
void scsi_rw10(struct mpq_scsi_cmd *c, uint8_t op, uint32_t lba, uint16_t blocks, uint64_t gpa);
/* One command, which must run (its status is in *r). */
void disk_command(struct disk_io *d, const uint8_t *cdb, size_t len, uint64_t gpa,
                  uint32_t bytes, struct mpq_scsi_result *r);
/* The unit attention after reset, then a TEST UNIT READY that passes. */
void disk_clear_unit_attention(struct disk_io *d);
void disk_sync_cache(struct disk_io *d);
/*
 * A batch of random writes in blocks [first, first+count), 16 in flight,
 * none overlapping.  With must_work every one must succeed and the mirror
 * follows them; else the mpq_lsi_run_queued result is returned as it is.
 */
int disk_write_batch(struct disk_io *d, uint32_t first, uint32_t count, bool must_work);
/* Reads the whole disk back, 1 MiB at a time, and compares it with the mirror. */
void disk_read_and_compare(struct disk_io *d);
void disk_save_mirror(const struct disk_io *d, const char *path);

#endif
