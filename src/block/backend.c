// SPDX-License-Identifier: GPL-2.0-or-later
#include "block/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "hw/device.h"
#include "util/error.h"
#include "util/loop.h"
#include "util/log.h"

/*
 * How long an eject or a medium change waits for the medium's I/O in flight
 * (docs/monitor.md, "Trays and locks"): past the NBD driver's default
 * reconnect-delay (15 s), after which a server that went away has failed
 * its requests, and at Linux's SCSI command timeout (30 s), when the guest
 * has given up on them too.  Only a server that holds its connection open
 * and never answers gets there.
 */
enum { DRAIN_LIMIT_NS_DEFAULT = 30ull * 1000000000u };

/*
 * An eject or a medium change whose tray is open and whose medium comes out
 * once the I/O in flight on it has completed.
 */
struct medium_wait {
    bool active;
    char *named;                /* the device as the command named it */
    struct drive *incoming;     /* a medium change's new medium; NULL: an eject */
    blk_media_done_fn *done;
    void *opaque;
    struct loop_bh drained;     /* the last request completed */
};

struct block_backend {
    char *name;                 /* as the device was given it; "" for none */
    struct drive *drive;        /* the medium, or NULL */
    struct device *dev;
    const struct blk_dev_ops *dev_ops;
    void *dev_opaque;
    const struct blk_listener *listener;
    void *listener_opaque;
    /* Requests of the device on the medium, from submission to the end of their done(). */
    unsigned in_flight;
    /* For an eject that waits (blk_set_loop); NULL, -1: it cannot wait. */
    struct loop *loop;
    int timer_fd;
    struct loop_watch timer_watch;
    uint64_t drain_limit_ns;
    struct medium_wait wait;
    struct blk_stats stats;     /* the device's, whatever the medium */
};

static const struct blk_dev_ops no_dev_ops;

static int check_free(const struct drive *d, char **err)
{
    if (d->backend) {
        error_setf(err, "drive '%s' is already in use by another device", d->id);
        return -1;
    }
    return 0;
}

/* Makes d the medium; refused when another backend holds it. */
static int insert_medium(struct block_backend *blk, struct drive *d, char **err)
{
    if (check_free(d, err) < 0) {
        return -1;
    }
    d->backend = blk;
    blk->drive = d;
    return 0;
}

static struct drive *take_medium(struct block_backend *blk)
{
    struct drive *old = blk->drive;

    if (old) {
        old->backend = NULL;
    }
    blk->drive = NULL;
    return old;
}

struct block_backend *blk_new(const char *name, struct drive *medium, char **err)
{
    struct block_backend *blk = calloc(1, sizeof(*blk));

    if (!blk || !(blk->name = strdup(name ? name : ""))) {
        free(blk);
        error_setf(err, "out of memory");
        return NULL;
    }
    blk->dev_ops = &no_dev_ops;
    blk->timer_fd = -1;
    blk->drain_limit_ns = DRAIN_LIMIT_NS_DEFAULT;
    if (medium && insert_medium(blk, medium, err) < 0) {
        blk_free(blk);
        return NULL;
    }
    return blk;
}

static void end_wait(struct block_backend *blk, struct drive *old, char *err);

void blk_free(struct block_backend *blk)
{
    if (!blk) {
        return;
    }
    if (blk->wait.active) {
        end_wait(blk, NULL, strdup("the device is going away"));
    }
    if (blk->in_flight && blk->drive) {
        drive_drain(blk->drive);    /* their completions count down here */
    }
    if (blk->timer_fd >= 0) {
        loop_watch_remove(blk->loop, &blk->timer_watch);
        close(blk->timer_fd);
    }
    take_medium(blk);
    free(blk->name);
    free(blk);
}

void blk_attach_dev(struct block_backend *blk, struct device *dev,
                    const struct blk_dev_ops *ops, void *opaque)
{
    blk->dev = dev;
    blk->dev_ops = ops;
    blk->dev_opaque = opaque;
}

void blk_set_listener(struct block_backend *blk, const struct blk_listener *l, void *opaque)
{
    blk->listener = l;
    blk->listener_opaque = opaque;
}

struct drive *blk_drive(const struct block_backend *blk)
{
    return blk->drive;
}

struct device *blk_dev(const struct block_backend *blk)
{
    return blk->dev;
}

const char *blk_name(const struct block_backend *blk)
{
    return blk->drive ? blk->drive->id : blk->name;
}

bool blk_removable(const struct block_backend *blk)
{
    return blk->dev_ops->change_media != NULL;
}

bool blk_tray_open(const struct block_backend *blk)
{
    return blk->dev_ops->is_tray_open && blk->dev_ops->is_tray_open(blk->dev_opaque);
}

bool blk_medium_locked(const struct block_backend *blk)
{
    return blk->dev_ops->is_medium_locked && blk->dev_ops->is_medium_locked(blk->dev_opaque);
}

bool blk_read_only(const struct block_backend *blk)
{
    const struct blk_dev_ops *ops = blk->dev_ops;

    if (blk->drive) {
        return blk->drive->readonly;
    }
    return ops->read_only_media && ops->read_only_media(blk->dev_opaque);
}

/*
 * Opens the tray, if the host may: a removable medium, unlocked or forced,
 * and no I/O in flight unless the caller can wait for it.  As QEMU's
 * do_open_tray(): a tray already open is not held by a lock.
 * Messages name the device as the command did.
 */
static int open_tray(struct block_backend *blk, const char *named, bool force, bool can_wait,
                     char **err)
{
    const struct blk_dev_ops *ops = blk->dev_ops;

    if (!blk_removable(blk)) {
        error_setf(err, "Device '%s' is not removable", named);
        return -1;
    }
    if (blk->in_flight && !can_wait) {
        error_setf(err, "Device '%s' has I/O in flight, which this command cannot wait for",
                   named);
        return -1;
    }
    if (blk_tray_open(blk)) {
        return 0;   /* nothing new starts: what is in flight is waited for */
    }
    if (blk_medium_locked(blk) && !force) {
        if (ops->eject_request) {
            ops->eject_request(blk->dev_opaque);    /* the guest may unlock and eject */
        }
        error_setf(err, "Device '%s' is locked and force was not specified, "
                   "wait for tray to open and try again", named);
        return -1;
    }
    ops->change_media(blk->dev_opaque, false);
    return 0;
}

/*
 * The tray is open and no request is in flight: out with the medium, in
 * with the incoming one (a medium change), whose tray then closes.  The
 * tray is opened again if the guest closed it while the I/O drained.
 */
static struct drive *swap_medium(struct block_backend *blk, struct drive *incoming)
{
    const struct blk_dev_ops *ops = blk->dev_ops;
    struct drive *old;

    if (!blk_tray_open(blk)) {
        ops->change_media(blk->dev_opaque, false);
    }
    old = take_medium(blk);
    if (ops->medium_removed) {
        ops->medium_removed(blk->dev_opaque);
    }
    if (incoming) {
        insert_medium(blk, incoming, NULL);     /* cannot fail: checked free before */
        ops->change_media(blk->dev_opaque, true);
    }
    return old;
}

static void disarm_timer(struct block_backend *blk)
{
    struct itimerspec none = { 0 };

    timerfd_settime(blk->timer_fd, 0, &none, NULL);
}

/* The wait is over: the medium swapped (err NULL), or not (err, taken by done()). */
static void end_wait(struct block_backend *blk, struct drive *old, char *err)
{
    struct medium_wait w = blk->wait;

    disarm_timer(blk);
    loop_bh_cancel(blk->loop, &blk->wait.drained);
    free(w.named);
    blk->wait = (struct medium_wait){ 0 };
    w.done(w.opaque, old, err);
}

/* From the loop once the last request in flight has completed (blk_dec_in_flight). */
static void on_drained(void *opaque)
{
    struct block_backend *blk = opaque;

    /* A guest that closed the tray meanwhile may have started more. */
    if (blk->wait.active && !blk->in_flight) {
        end_wait(blk, swap_medium(blk, blk->wait.incoming), NULL);
    }
}

/* The drain limit passed: the medium stays in the open tray. */
static void on_timer(void *opaque, uint32_t events)
{
    struct block_backend *blk = opaque;
    uint64_t expirations;
    char *err = NULL;

    (void)events;
    if (read(blk->timer_fd, &expirations, sizeof(expirations)) < 0 || !blk->wait.active) {
        return;
    }
    error_setf(&err, "Device '%s' still has %u request%s in flight after %llu ms; "
               "the tray is open, the medium stays in it",
               blk->wait.named, blk->in_flight, blk->in_flight == 1 ? "" : "s",
               (unsigned long long)(blk->drain_limit_ns / 1000000u));
    log_warn("%s", err);
    end_wait(blk, NULL, err);
}

/* Waits, from the loop, for the medium's I/O to complete; 0, or -1 with *err. */
static int start_wait(struct block_backend *blk, const char *named, struct drive *incoming,
                      blk_media_done_fn *done, void *opaque, char **err)
{
    struct itimerspec its = {
        .it_value = { .tv_sec = (time_t)(blk->drain_limit_ns / 1000000000u),
                      .tv_nsec = (long)(blk->drain_limit_ns % 1000000000u) },
    };

    if (!(blk->wait.named = strdup(named))) {
        error_setf(err, "out of memory");
        return -1;
    }
    blk->wait.active = true;
    blk->wait.incoming = incoming;
    blk->wait.done = done;
    blk->wait.opaque = opaque;
    loop_bh_init(&blk->wait.drained, on_drained, blk);
    timerfd_settime(blk->timer_fd, 0, &its, NULL);
    return 0;
}

/*
 * eject and blockdev-change-medium, as QEMU's qmp_eject() and
 * qmp_blockdev_change_medium(): the tray opens (from now on the device's
 * new requests fail, blk_available()), the I/O in flight completes (QEMU's
 * blk_remove_bs() drains it, here the loop runs on), the medium comes out
 * and the incoming one, if any, goes in.
 */
static int change(struct block_backend *blk, const char *named, struct drive *incoming,
                  bool force, struct drive **old, blk_media_done_fn *done, void *opaque,
                  char **err)
{
    const struct blk_dev_ops *ops = blk->dev_ops;

    *old = NULL;
    if (blk->wait.active) {
        error_setf(err, "Device '%s' is busy: its medium is coming out", named);
        return -1;
    }
    if (incoming && check_free(incoming, err) < 0) {
        return -1;
    }
    if (incoming && ops->check_medium && ops->check_medium(blk->dev_opaque, incoming, err) < 0) {
        return -1;
    }
    if (open_tray(blk, named, force, done && blk->timer_fd >= 0, err) < 0) {
        return -1;
    }
    if (blk->in_flight) {
        return start_wait(blk, named, incoming, done, opaque, err) < 0 ? -1 : 1;
    }
    *old = swap_medium(blk, incoming);
    return 0;
}

int blk_eject(struct block_backend *blk, const char *named, bool force, struct drive **old,
              blk_media_done_fn *done, void *opaque, char **err)
{
    return change(blk, named, NULL, force, old, done, opaque, err);
}

int blk_change_medium(struct block_backend *blk, const char *named, struct drive *d,
                      bool force, struct drive **old, blk_media_done_fn *done, void *opaque,
                      char **err)
{
    return change(blk, named, d, force, old, done, opaque, err);
}

int blk_set_loop(struct block_backend *blk, struct loop *loop, char **err)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

    if (fd < 0 || loop_watch_add(loop, &blk->timer_watch, fd, EPOLLIN, on_timer, blk) < 0) {
        error_setf(err, "timerfd: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    blk->loop = loop;
    blk->timer_fd = fd;
    return 0;
}

void blk_set_drain_limit(struct block_backend *blk, uint64_t ns)
{
    blk->drain_limit_ns = ns ? ns : 1;
}

bool blk_available(const struct block_backend *blk)
{
    return blk->drive && !blk_tray_open(blk);
}

void blk_inc_in_flight(struct block_backend *blk)
{
    blk->in_flight++;
}

void blk_dec_in_flight(struct block_backend *blk)
{
    if (!--blk->in_flight && blk->wait.active) {
        loop_bh_schedule(blk->loop, &blk->wait.drained);
    }
}

int blk_put_back_medium(struct block_backend *blk, struct drive *d, char **err)
{
    if (blk->drive) {
        error_setf(err, "'%s' holds a medium already", blk_name(blk));
        return -1;
    }
    return insert_medium(blk, d, err);
}

int blk_drive_resize(struct drive *d, uint64_t size, char **err)
{
    struct block_backend *blk = d->backend;

    /*
     * As QEMU's qmp_block_resize (bdrv_drained_begin): no request in flight
     * may land past a new end or complete against the old size.
     */
    drive_drain(d);
    if (drive_resize(d, size, err) < 0) {
        return -1;
    }
    if (blk && blk->dev_ops->resize) {
        blk->dev_ops->resize(blk->dev_opaque);
    }
    return 0;
}

void blk_tray_moved(struct block_backend *blk, bool open)
{
    if (blk->listener && blk->listener->tray_moved) {
        blk->listener->tray_moved(blk->listener_opaque, blk, open);
    }
}

void blk_report_io_error(struct block_backend *blk, enum blk_op op, int error)
{
    if (blk->listener && blk->listener->io_error) {
        blk->listener->io_error(blk->listener_opaque, blk, op, error);
    }
}

/* The counters of one kind of operation, as QEMU's accounting sorts them. */
struct op_counters {
    uint64_t *ops, *bytes, *failed, *invalid, *time_ns;
};

/* Write zeroes counts as a write, discard apart; flushes have no bytes. */
static struct op_counters counters_of(struct blk_stats *st, enum blk_op op)
{
    switch (op) {
    case BLK_READ:
        return (struct op_counters){ &st->rd_operations, &st->rd_bytes,
                                     &st->failed_rd_operations, &st->invalid_rd_operations,
                                     &st->rd_total_time_ns };
    case BLK_WRITE:
    case BLK_WRITE_ZEROES:
        return (struct op_counters){ &st->wr_operations, &st->wr_bytes,
                                     &st->failed_wr_operations, &st->invalid_wr_operations,
                                     &st->wr_total_time_ns };
    case BLK_FLUSH:
        return (struct op_counters){ &st->flush_operations, NULL, &st->failed_flush_operations,
                                     &st->invalid_flush_operations, &st->flush_total_time_ns };
    case BLK_DISCARD:
        break;
    }
    return (struct op_counters){ &st->unmap_operations, &st->unmap_bytes,
                                 &st->failed_unmap_operations, &st->invalid_unmap_operations,
                                 &st->unmap_total_time_ns };
}

const struct blk_stats *blk_stats(const struct block_backend *blk)
{
    return &blk->stats;
}

void blk_account_done(struct block_backend *blk, enum blk_op op, uint64_t bytes,
                      uint64_t start_ns, int result)
{
    struct op_counters c = counters_of(&blk->stats, op);
    uint64_t now = loop_now_ns();

    if (result < 0) {
        (*c.failed)++;
    } else {
        (*c.ops)++;
        if (c.bytes) {
            *c.bytes += bytes;
        }
    }
    *c.time_ns += now - start_ns;
    blk->stats.last_access_ns = now;
}

void blk_account_invalid(struct block_backend *blk, enum blk_op op)
{
    (*counters_of(&blk->stats, op).invalid)++;
    blk->stats.last_access_ns = loop_now_ns();
}
