/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An LSI53C895A driver for the client library: runs SCSI commands through
 * SCRIPTS it writes into guest RAM, as Linux's sym53c8xx does: the SCRIPTS
 * take commands from a start queue in memory, find a reselecting command by
 * its tag themselves and report completions in a done queue with an
 * interrupt on the fly.  Untagged commands one at a time, tagged ones up to
 * 32 at once.
 */
#ifndef MPQEMU_CLIENT_LSI_H
#define MPQEMU_CLIENT_LSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpqemu-client.h"     /* beside it, in the tree and installed */

struct mpq_lsi;

struct mpq_scsi_result {
    bool selection_timeout;     /* no such target */
    uint8_t status;             /* SCSI status byte */
    uint8_t sense[18];          /* fixed sense, after a CHECK CONDITION */
    uint32_t residual;          /* bytes of the data buffer not moved */
};

/*
 * Uses 'ram' (already shared with the device, and with mpq_probe() done)
 * from ram->gpa + work_offset for 64 KiB of SCRIPTS and control blocks.
 */
struct mpq_lsi *mpq_lsi_new(struct mpq_dev *d, struct mpq_ram *ram, uint64_t work_offset,
                            char **err);
void mpq_lsi_free(struct mpq_lsi *l);

/* What the driver has cost so far, for benchmarks. */
struct mpq_lsi_stats {
    uint64_t commands;          /* commands completed (REQUEST SENSE included) */
    uint64_t interrupts;        /* interrupts taken */
    uint64_t register_accesses; /* register reads and writes: each a round trip to the device */
};
void mpq_lsi_get_stats(const struct mpq_lsi *l, struct mpq_lsi_stats *stats);

/* One command of a batch for mpq_lsi_run_queued(). */
struct mpq_scsi_cmd {
    uint8_t cdb[16];
    uint8_t cdb_len;
    uint64_t data_gpa;
    uint32_t len;
    uint8_t status;             /* out; 0xff: selection timed out */
};

/*
 * Runs every command of a batch with up to 'depth' (1 to 32) tagged
 * commands outstanding at target 0 LUN 0: the target disconnects and
 * reselects, the driver keeps its queue full.
 */
int mpq_lsi_run_queued(struct mpq_lsi *l, struct mpq_scsi_cmd *cmds, size_t n, unsigned depth,
                       char **err);

/*
 * Runs one command; its data phase, in whichever direction the target
 * asks, is 'len' bytes of guest RAM at data_gpa.
 */
int mpq_lsi_command(struct mpq_lsi *l, unsigned target, unsigned lun, const uint8_t *cdb,
                    size_t cdb_len, uint64_t data_gpa, uint32_t len,
                    struct mpq_scsi_result *res, char **err);

#endif
