// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The block devices' QMP events, heard through a listener on each
 * device's block backend: DEVICE_TRAY_MOVED and BLOCK_IO_ERROR.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "block/backend.h"
#include "hw/device.h"
#include "monitor/monitor.h"

static void add_str(struct json_object *o, const char *key, const char *v)
{
    json_object_object_add(o, key, json_object_new_string(v));
}

static void on_tray_moved(void *opaque, struct block_backend *blk, bool open)
{
    struct json_object *data = json_object_new_object();
    struct drive *d = blk_drive(blk);

    (void)opaque;
    add_str(data, "device", d ? d->id : "");
    add_str(data, "id", blk_dev(blk)->id);
    json_object_object_add(data, "tray-open", json_object_new_boolean(open));
    monitor_event("DEVICE_TRAY_MOVED", data);
}

/* As QEMU's: the device's QOM path, its drive, what failed; the error "reported" to the guest. */
static void on_io_error(void *opaque, struct block_backend *blk, enum blk_op op, int error)
{
    struct json_object *data = json_object_new_object();
    const char *id = blk_drive(blk)->id;
    char path[256];

    (void)opaque;
    snprintf(path, sizeof(path), "/machine/peripheral/%s", blk_dev(blk)->id);
    add_str(data, "qom-path", path);
    add_str(data, "device", id);
    add_str(data, "node-name", id);
    add_str(data, "operation", op == BLK_READ ? "read" : "write");
    add_str(data, "action", "report");
    json_object_object_add(data, "nospace", json_object_new_boolean(error == -ENOSPC));
    add_str(data, "reason", strerror(-error));
    monitor_event("BLOCK_IO_ERROR", data);
}

static const struct blk_listener block_events = {
    .tray_moved = on_tray_moved,
    .io_error = on_io_error,
};

void monitor_watch_block_devices(struct monitor_vm *vm)
{
    for (size_t i = 0; i < vm->n_devices; i++) {
        if (vm->devices[i]->blk) {
            blk_set_listener(vm->devices[i]->blk, &block_events, vm);
        }
    }
}
