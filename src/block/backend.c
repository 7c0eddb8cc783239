// SPDX-License-Identifier: GPL-2.0-or-later
#include "block/backend.h"

#include <stdlib.h>
#include <string.h>

#include "hw/device.h"
#include "util/error.h"

struct block_backend {
    char *name;                 /* as the device was given it; "" for none */
    struct drive *drive;        /* the medium, or NULL */
    struct device *dev;
    const struct blk_dev_ops *dev_ops;
    void *dev_opaque;
    const struct blk_listener *listener;
    void *listener_opaque;
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
    if (medium && insert_medium(blk, medium, err) < 0) {
        blk_free(blk);
        return NULL;
    }
    return blk;
}

void blk_free(struct block_backend *blk)
{
    if (!blk) {
        return;
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
 * no command on it.  As QEMU's do_open_tray(): a tray already open is not
 * held by a lock.  Messages name the device as the command did.
 */
static int open_tray(struct block_backend *blk, const char *named, bool force, char **err)
{
    const struct blk_dev_ops *ops = blk->dev_ops;
    unsigned users = ops->medium_users ? ops->medium_users(blk->dev_opaque) : 0;

    if (!blk_removable(blk)) {
        error_setf(err, "Device '%s' is not removable", named);
        return -1;
    }
    if (!blk_tray_open(blk) && blk_medium_locked(blk) && !force) {
        if (ops->eject_request) {
            ops->eject_request(blk->dev_opaque);    /* the guest may unlock and eject */
        }
        error_setf(err, "Device '%s' is locked and force was not specified, "
                   "wait for tray to open and try again", named);
        return -1;
    }
    if (users) {
        error_setf(err, "Device '%s' is in use by %u command%s of the guest; try again",
                   named, users, users == 1 ? "" : "s");
        return -1;
    }
    ops->change_media(blk->dev_opaque, false);
    return 0;
}

int blk_eject(struct block_backend *blk, const char *named, bool force, struct drive **old,
              char **err)
{
    *old = NULL;
    if (open_tray(blk, named, force, err) < 0) {
        return -1;
    }
    *old = take_medium(blk);
    return 0;
}

int blk_change_medium(struct block_backend *blk, const char *named, struct drive *d,
                      bool force, struct drive **old, char **err)
{
    const struct blk_dev_ops *ops = blk->dev_ops;

    *old = NULL;
    if (check_free(d, err) < 0) {
        return -1;
    }
    if (ops->check_medium && ops->check_medium(blk->dev_opaque, d, err) < 0) {
        return -1;
    }
    if (open_tray(blk, named, force, err) < 0) {
        return -1;
    }
    *old = take_medium(blk);
    insert_medium(blk, d, err);     /* cannot fail: d is free, checked above */
    ops->change_media(blk->dev_opaque, true);
    return 0;
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
