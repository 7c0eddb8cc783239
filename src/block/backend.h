/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A block device's backend, as QEMU's BlockBackend: the device attaches to
 * it and finds its medium there (a drive, or none).  The device registers
 * its removable-media and resize operations on it (struct blk_dev_ops, as
 * QEMU's BlockDevOps); the monitor ejects, changes and resizes media only
 * through the backend, and hears of tray moves and I/O errors through the
 * listener it registers on it.  A medium change swaps the drive under the
 * backend: the device asks it for its medium at every command.
 *
 *   monitor ──blk_eject/blk_change_medium/blk_drive_resize──▶ backend
 *   backend ──blk_dev_ops (tray, lock, media, resize)──▶ device
 *   device ──blk_tray_moved──▶ backend ──blk_listener──▶ monitor (events)
 *   drive ──blk_report_io_error──▶ backend ──blk_listener──▶ monitor
 */
#ifndef MPQEMU_BLOCK_BACKEND_H
#define MPQEMU_BLOCK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "block/drive.h"

struct device;
struct loop;
struct block_backend;

/*
 * What the device's requests did, as QEMU's block accounting
 * (block/accounting.c) counts it for query-blockstats: operations and bytes
 * of the requests that succeeded, failed ones apart, requests the device
 * refused before submitting them (out of range) apart; the time requests
 * took, failed ones included.  QEMU keeps these on the BlockBackend, the
 * device's, so they run on across medium changes (the end of the furthest
 * write is the medium's: struct drive's wr_highest_offset).
 */
struct blk_stats {
    uint64_t rd_bytes, wr_bytes, unmap_bytes;
    uint64_t rd_operations, wr_operations, flush_operations, unmap_operations;
    uint64_t failed_rd_operations, failed_wr_operations, failed_flush_operations,
        failed_unmap_operations;
    uint64_t invalid_rd_operations, invalid_wr_operations, invalid_flush_operations,
        invalid_unmap_operations;
    uint64_t rd_total_time_ns, wr_total_time_ns, flush_total_time_ns, unmap_total_time_ns;
    uint64_t last_access_ns;    /* loop_now_ns() of the last one counted; 0: none yet */
};

/* What a device lets the host do to its medium; unset members: not supported. */
struct blk_dev_ops {
    /*
     * The host opened the tray (load false) or closed it on a new medium
     * (load true).  NULL: the medium is fixed, not removable.
     */
    void (*change_media)(void *opaque, bool load);
    /*
     * The medium came out of the open tray (an eject or a medium change
     * takes it once its I/O in flight has completed, after the tray opened).
     */
    void (*medium_removed)(void *opaque);
    /* The host asked for a medium the guest locked in: the guest hears of it. */
    void (*eject_request)(void *opaque);
    bool (*is_tray_open)(void *opaque);
    bool (*is_medium_locked)(void *opaque);
    /* Refuses a new medium the device cannot use: 0, or -1 with *err. */
    int (*check_medium)(void *opaque, const struct drive *d, char **err);
    /* Whether a medium put in with no mode asked for, while none is in, is read-only. */
    bool (*read_only_media)(void *opaque);
    /* The medium's size changed. */
    void (*resize)(void *opaque);
};

/* Who hears of a backend's events (the monitors, for QMP events). */
struct blk_listener {
    /* The tray opened or closed, by the guest or the host. */
    void (*tray_moved)(void *opaque, struct block_backend *blk, bool open);
    /* A request of the device failed with an I/O error (not a refused one). */
    void (*io_error)(void *opaque, struct block_backend *blk, enum blk_op op, int error);
};

/*
 * A backend for the device given drive=name (NULL or "": none), holding
 * medium (may be NULL).  Refuses a drive another backend holds.
 */
struct block_backend *blk_new(const char *name, struct drive *medium, char **err);
/*
 * Ends an eject that waits (its done() gets an error), completes the I/O in
 * flight on the medium, lets go of it (it stays the process's drive) and
 * frees blk.
 */
void blk_free(struct block_backend *blk);
void blk_attach_dev(struct block_backend *blk, struct device *dev,
                    const struct blk_dev_ops *ops, void *opaque);
void blk_set_listener(struct block_backend *blk, const struct blk_listener *l, void *opaque);

/* The medium, or NULL when there is none. */
struct drive *blk_drive(const struct block_backend *blk);
struct device *blk_dev(const struct block_backend *blk);
/* The name the monitor knows it by: its medium's drive id, or the name it was created with. */
const char *blk_name(const struct block_backend *blk);
bool blk_removable(const struct block_backend *blk);
bool blk_tray_open(const struct block_backend *blk);
bool blk_medium_locked(const struct block_backend *blk);
/* Whether a new medium is read-only when no mode is asked for: as the current one. */
bool blk_read_only(const struct block_backend *blk);

/*
 * The end of an eject or a medium change that waited for the medium's I/O:
 * old is the medium taken out (NULL: none), or err says why the medium
 * stayed in (the drain limit passed, the device went away); done() frees
 * err and closes old.
 */
typedef void blk_media_done_fn(void *opaque, struct drive *old, char *err);

/*
 * Opens the tray and takes the medium out.  Refused (-1 with *err) while
 * the guest locks the closed tray, unless forced (the guest is asked to
 * eject).  Errors name the device 'named', as the command named it.  The
 * tray opens at once: the device's requests from then on fail (see
 * blk_available()).  Returns 0 when done, the medium in *old (NULL: none);
 * or 1 when requests were in flight on it: the medium stays in the open
 * tray until they have completed, then comes out, and done() says so, once,
 * from the loop.  Past the drain limit (blk_set_drain_limit) done() gets an
 * error and the medium stays in the open tray.  One eject or medium change
 * at a time: another is refused meanwhile.
 */
int blk_eject(struct block_backend *blk, const char *named, bool force, struct drive **old,
              blk_media_done_fn *done, void *opaque, char **err);
/*
 * Opens the tray, swaps d in for the medium and closes the tray, as
 * blk_eject takes it out (0, or 1 then done()); refused as blk_eject is,
 * and when the device cannot use d.  d is not put in when done() gets an
 * error: the caller closes it.
 */
int blk_change_medium(struct block_backend *blk, const char *named, struct drive *d,
                      bool force, struct drive **old, blk_media_done_fn *done, void *opaque,
                      char **err);
/*
 * The loop an eject that waits for the medium's I/O runs on; makes its
 * timer, which a confined process could not.  Without it an eject with
 * requests in flight is refused.  0, or -1 with *err.
 */
int blk_set_loop(struct block_backend *blk, struct loop *loop, char **err);
/* How long an eject waits for the medium's I/O (default 30 s); for tests. */
void blk_set_drain_limit(struct block_backend *blk, uint64_t ns);
/*
 * Whether the device may start requests on the medium: there is one and the
 * tray is closed (QEMU's blk_is_available(); requests fail with ENOMEDIUM).
 */
bool blk_available(const struct block_backend *blk);
/* For drives: a request of the device starts, ends (after its done()). */
void blk_inc_in_flight(struct block_backend *blk);
void blk_dec_in_flight(struct block_backend *blk);
/*
 * Puts d into blk's empty tray as it was, with no tray move and no event:
 * a restarted device's medium, found again.  Refused when blk holds a
 * medium or another backend holds d.
 */
int blk_put_back_medium(struct block_backend *blk, struct drive *d, char **err);
/*
 * Resizes d (block_resize) once its I/O in flight has completed, and tells
 * the device whose medium it is.
 */
int blk_drive_resize(struct drive *d, uint64_t size, char **err);

/* The device's counters (query-blockstats). */
const struct blk_stats *blk_stats(const struct block_backend *blk);
/*
 * For drives: a request of the device ended (result 0 or -errno), bytes
 * long, started at start_ns (loop_now_ns()); op WRITE_ZEROES counts as a
 * write (QEMU's devices account write zeroes as BLOCK_ACCT_WRITE).
 */
void blk_account_done(struct block_backend *blk, enum blk_op op, uint64_t bytes,
                      uint64_t start_ns, int result);
/*
 * For devices: a request refused before it was submitted (out of range, a
 * bad UNMAP parameter list), as QEMU's block_acct_invalid().
 */
void blk_account_invalid(struct block_backend *blk, enum blk_op op);

/* For devices: the tray moved. */
void blk_tray_moved(struct block_backend *blk, bool open);
/* For drives: a request of the device failed. */
void blk_report_io_error(struct block_backend *blk, enum blk_op op, int error);

#endif
