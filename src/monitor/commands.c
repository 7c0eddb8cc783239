// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The monitor commands, with QMP's names, arguments, results and error
 * classes (QEMU's qapi/).  Arguments are checked before anything is done:
 * an unknown argument, a missing one or one of the wrong type is an error.
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/backend.h"
#include "block/drive.h"
#include "hw/device.h"
#include "monitor/monitor.h"
#include "monitor/qmp-json.h"
#include "pci/pci.h"
#include "util/error.h"
#include "util/loop.h"

#define PERIPHERAL "/machine/peripheral"

/* --- errors and arguments ------------------------------------------------ */

static struct json_object *fail(struct qmp_error *e, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static struct json_object *fail(struct qmp_error *e, const char *cls, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&e->desc, fmt, ap) < 0) {
        e->desc = NULL;
    }
    va_end(ap);
    e->cls = cls;
    return NULL;
}

static struct json_object *fail_err(struct qmp_error *e, char *err)
{
    fail(e, "GenericError", "%s", err ? err : "failed");
    free(err);
    return NULL;
}

/* The QAPI types of the arguments the commands take. */
enum arg_type { ARG_STR, ARG_INT, ARG_BOOL, ARG_ENUM, ARG_ENUM_LIST };

/* One argument a command takes; values: an enum's names, NULL-terminated. */
struct arg_spec {
    const char *name;
    enum arg_type type;
    bool required;
    const char *const *values;
};

/* A command's arguments, in its table entry: ARGS({ "size", ARG_INT, true }, ...). */
#define ARGS(...) ((const struct arg_spec[]){ __VA_ARGS__, { 0 } })
/* A disk named by its drive ("device") or by its qdev id ("id"). */
#define DISK_ARGS { "device", ARG_STR, false, NULL }, { "id", ARG_STR, false, NULL }

static const char *const capabilities[] = { "oob", NULL };
static const char *const read_only_modes[] = { "retain", "read-only", "read-write", NULL };

static bool is_one_of(const char *s, const char *const *values)
{
    for (; *values; values++) {
        if (!strcmp(s, *values)) {
            return true;
        }
    }
    return false;
}

/* json-c keeps an integer past INT64_MAX as uint64; QAPI's 'int' takes int64 only. */
static bool is_int64(struct json_object *v)
{
    return json_object_is_type(v, json_type_int) &&
           (json_object_get_int64(v) != INT64_MAX || json_object_get_uint64(v) == INT64_MAX);
}

static bool wrong_type(struct qmp_error *e, const char *name, const char *expected)
{
    fail(e, "GenericError", "Invalid parameter type for '%s', expected: %s", name, expected);
    return false;
}

/* An enum's value: a string, one of the names. */
static bool check_enum(const char *name, struct json_object *v, const char *const *values,
                       struct qmp_error *e)
{
    if (!json_object_is_type(v, json_type_string)) {
        return wrong_type(e, name, "string");
    }
    if (!is_one_of(json_object_get_string(v), values)) {
        fail(e, "GenericError", "Parameter '%s' does not accept value '%s'", name,
             json_object_get_string(v));
        return false;
    }
    return true;
}

/* A list of enum values, with QEMU 11's texts ("null": its visitor names no element there). */
static bool check_enum_list(const struct arg_spec *s, struct json_object *v,
                            struct qmp_error *e)
{
    if (!json_object_is_type(v, json_type_array)) {
        return wrong_type(e, s->name, "array");
    }
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        struct json_object *item = json_object_array_get_idx(v, i);
        char name[128];

        snprintf(name, sizeof(name), "%s[%zu]", s->name, i);
        if (!json_object_is_type(item, json_type_string)) {
            return wrong_type(e, name, "string");
        }
        if (!check_enum("null", item, s->values, e)) {
            return false;
        }
    }
    return true;
}

static bool check_value(const struct arg_spec *s, struct json_object *v, struct qmp_error *e)
{
    switch (s->type) {
    case ARG_STR:
        return json_object_is_type(v, json_type_string) || wrong_type(e, s->name, "string");
    case ARG_INT:
        return is_int64(v) || wrong_type(e, s->name, "integer");
    case ARG_BOOL:
        return json_object_is_type(v, json_type_boolean) || wrong_type(e, s->name, "boolean");
    case ARG_ENUM:
        return check_enum(s->name, v, s->values, e);
    case ARG_ENUM_LIST:
        return check_enum_list(s, v, e);
    }
    return false;
}

static bool declared(const struct arg_spec *spec, const char *key)
{
    for (const struct arg_spec *s = spec; s && s->name; s++) {
        if (!strcmp(s->name, key)) {
            return true;
        }
    }
    return false;
}

/*
 * Checks args as QEMU's QAPI input visitor does: each declared argument in
 * the order the schema declares them (there and of its type, or missing),
 * then the ones it does not know.  Of several unknown ones QEMU names one
 * in the order of a GLib hash table; here the first in QDict order.
 */
static bool check_args(struct json_object *args, const struct arg_spec *spec,
                       struct qmp_error *e)
{
    struct qmp_member *members;
    bool ok = true;
    size_t n;

    for (const struct arg_spec *s = spec; s && s->name; s++) {
        struct json_object *v;

        if (json_object_object_get_ex(args, s->name, &v)) {
            if (!check_value(s, v, e)) {
                return false;
            }
        } else if (s->required) {
            fail(e, "GenericError", "Parameter '%s' is missing", s->name);
            return false;
        }
    }
    if (!(members = qmp_json_members(args, &n))) {
        fail(e, "GenericError", "out of memory");
        return false;
    }
    for (size_t i = 0; ok && i < n; i++) {
        if (!declared(spec, members[i].key)) {
            fail(e, "GenericError", "Parameter '%s' is unexpected", members[i].key);
            ok = false;
        }
    }
    free(members);
    return ok;
}

static const char *arg_str(struct json_object *args, const char *name)
{
    struct json_object *v;

    return json_object_object_get_ex(args, name, &v) ? json_object_get_string(v) : NULL;
}

static bool arg_bool(struct json_object *args, const char *name)
{
    struct json_object *v;

    return json_object_object_get_ex(args, name, &v) && json_object_get_boolean(v);
}

static void add_str(struct json_object *o, const char *key, const char *v)
{
    json_object_object_add(o, key, json_object_new_string(v ? v : ""));
}

static void add_int(struct json_object *o, const char *key, int64_t v)
{
    json_object_object_add(o, key, json_object_new_int64(v));
}

static void add_bool(struct json_object *o, const char *key, bool v)
{
    json_object_object_add(o, key, json_object_new_boolean(v));
}

/* "qdev": the id of the device a drive is attached to, if any (QEMU: its id, else its QOM path). */
static void add_qdev(struct json_object *o, const struct device *dev)
{
    if (dev) {
        add_str(o, "qdev", dev->id);
    }
}

/* --- finding things ---------------------------------------------------------- */

static struct device *find_device(struct monitor_vm *vm, const char *id)
{
    for (size_t i = 0; id && i < vm->n_devices; i++) {
        if (!strcmp(vm->devices[i]->id, id)) {
            return vm->devices[i];
        }
    }
    return NULL;
}

static struct drive *find_drive(struct monitor_vm *vm, const char *id)
{
    for (size_t i = 0; id && i < vm->n_drives; i++) {
        if (!strcmp(vm->drives[i]->id, id)) {
            return vm->drives[i];
        }
    }
    return NULL;
}

static const struct prop_def *find_prop(const struct device *dev, const char *name)
{
    for (const struct prop_def *p = dev->driver->props; p && p->name; p++) {
        if (!strcmp(p->name, name)) {
            return p;
        }
    }
    return NULL;
}

/* The name a command gives a disk: its qdev "id", or its drive ("device"). */
static const char *disk_named(struct json_object *args)
{
    return arg_str(args, "id") ? arg_str(args, "id") : arg_str(args, "device");
}

/*
 * The block backend of the device a command names by "id" (qdev) or
 * "device" (drive), exactly one of them; errors as QEMU's qmp_get_blk().
 */
static struct block_backend *find_disk(struct monitor_vm *vm, struct json_object *args,
                                       struct qmp_error *e)
{
    const char *id = arg_str(args, "id"), *name = arg_str(args, "device");
    struct device *dev;

    if (!id == !name) {
        fail(e, "GenericError", "Need exactly one of 'device' and 'id'");
        return NULL;
    }
    if (id && (dev = find_device(vm, id))) {
        if (!dev->blk) {
            fail(e, "GenericError", "Device does not have a block device backend");
        }
        return dev->blk;
    }
    for (size_t i = 0; name && i < vm->n_devices; i++) {
        if (vm->devices[i]->blk && !strcmp(blk_name(vm->devices[i]->blk), name)) {
            return vm->devices[i]->blk;
        }
    }
    fail(e, "DeviceNotFound", "Device '%s' not found", id ? id : name);
    return NULL;
}

/* --- queries ---------------------------------------------------------------- */

static struct json_object *query_status(struct monitor_vm *vm, struct json_object *args,
                                        struct qmp_error *e)
{
    struct json_object *r = json_object_new_object();

    (void)vm, (void)args, (void)e;
    add_bool(r, "running", true);
    add_str(r, "status", "running");
    return r;
}

static struct json_object *query_name(struct monitor_vm *vm, struct json_object *args,
                                      struct qmp_error *e)
{
    struct json_object *r = json_object_new_object();

    (void)args, (void)e;
    if (vm->name) {
        add_str(r, "name", vm->name);
    }
    return r;
}

static struct json_object *query_version(struct monitor_vm *vm, struct json_object *args,
                                         struct qmp_error *e)
{
    struct json_object *r = json_object_new_object(), *q = json_object_new_object();

    (void)vm, (void)args, (void)e;
    /* mpqemu-remote's own (meson.build's project version), not a QEMU's. */
    add_int(q, "major", MPQEMU_VERSION_MAJOR);
    add_int(q, "minor", MPQEMU_VERSION_MINOR);
    add_int(q, "micro", MPQEMU_VERSION_MICRO);
    json_object_object_add(r, "qemu", q);
    add_str(r, "package", "mpqemu-remote " MPQEMU_VERSION);
    return r;
}

/* PciMemoryRegion: "address" -1 while the BAR does not decode (QEMU: not mapped). */
static struct json_object *pci_regions(struct pci_device *p)
{
    struct json_object *list = json_object_new_array();

    for (int bar = 0; bar < PCI_NUM_BARS; bar++) {
        const struct pci_bar *b = &p->bars[bar];
        struct json_object *r;
        uint64_t base;

        if (b->type == PCI_BAR_UNUSED) {
            continue;
        }
        r = json_object_new_object();
        add_int(r, "bar", bar);
        add_str(r, "type", b->type == PCI_BAR_IO ? "io" : "memory");
        add_int(r, "address", pci_bar_decodes(p, bar, &base) ? (int64_t)base : -1);
        add_int(r, "size", (int64_t)b->size);
        if (b->type != PCI_BAR_IO) {
            add_bool(r, "prefetch", b->prefetchable);
            add_bool(r, "mem_type_64", b->type == PCI_BAR_MEM64);
        }
        json_object_array_add(list, r);
    }
    return list;
}

/* PciDeviceClass: QEMU's table names classes; of ours, SCSI only (the testdev's has no name). */
static struct json_object *pci_class_info(uint16_t cls)
{
    struct json_object *ci = json_object_new_object();

    if (cls == 0x0100) {
        add_str(ci, "desc", "SCSI controller");
    }
    add_int(ci, "class", cls);
    return ci;
}

/* PciDeviceInfo of a function of bus 0 in slot 'slot'. */
static struct json_object *pci_device_info(const struct device *dev, int slot)
{
    struct pci_device *p = dev->pci;
    struct json_object *d = json_object_new_object(), *id = json_object_new_object();

    add_int(d, "bus", 0);
    add_int(d, "slot", slot);
    add_int(d, "function", 0);
    json_object_object_add(d, "class_info", pci_class_info(pci_get_word(p->config + 0x0a)));
    add_int(id, "device", pci_get_word(p->config + 0x02));
    add_int(id, "vendor", pci_get_word(p->config + 0x00));
    add_int(id, "subsystem", pci_get_word(p->config + 0x2e));
    add_int(id, "subsystem-vendor", pci_get_word(p->config + 0x2c));
    json_object_object_add(d, "id", id);
    if (p->config[0x3d]) {
        add_int(d, "irq", p->config[0x3c]);     /* the interrupt line the guest wrote */
    }
    add_int(d, "irq_pin", p->config[0x3d]);
    add_str(d, "qdev_id", dev->id);
    json_object_object_add(d, "regions", pci_regions(p));
    return d;
}

static struct json_object *query_pci(struct monitor_vm *vm, struct json_object *args,
                                     struct qmp_error *e)
{
    struct json_object *bus = json_object_new_object(), *devs = json_object_new_array();
    struct json_object *list = json_object_new_array();
    int slot = 0;

    (void)args, (void)e;
    for (size_t i = 0; i < vm->n_devices; i++) {
        if (vm->devices[i]->pci) {
            json_object_array_add(devs, pci_device_info(vm->devices[i], slot++));
        }
    }
    add_int(bus, "bus", 0);
    json_object_object_add(bus, "devices", devs);
    json_object_array_add(list, bus);
    return list;
}

/* QEMU's view of a cache mode: a volatile write cache, the page cache bypassed. */
static const struct {
    bool writeback, direct;
} cache_modes[] = {
    [DRIVE_CACHE_WRITEBACK] = { true, false }, [DRIVE_CACHE_WRITETHROUGH] = { false, false },
    [DRIVE_CACHE_NONE] = { true, true }, [DRIVE_CACHE_DIRECTSYNC] = { false, true },
};

/* ImageInfo: what qemu-img info says of the image, the backing chain's too. */
static struct json_object *image_info(const struct drive *d)
{
    struct json_object *img = json_object_new_object();
    const struct drive *backing = drive_backing(d);

    add_str(img, "filename", d->file);
    add_str(img, "format", drive_format_name(d));
    add_int(img, "virtual-size", (int64_t)d->size);
    if (backing) {
        /* The path opened, whole: as written in the image it may be relative (QEMU: both). */
        add_str(img, "backing-filename", backing->file);
        add_str(img, "full-backing-filename", backing->file);
        add_str(img, "backing-filename-format", drive_format_name(backing));
        json_object_object_add(img, "backing-image", image_info(backing));
    }
    return img;
}

/*
 * BlockDeviceInfo, every member QEMU's schema requires: no child nodes of
 * their own ("children" empty), no I/O throttling (limits 0), no write
 * threshold, never encrypted nor inactive.
 */
static struct json_object *inserted_info(const struct drive *d)
{
    static const char *const throttles[] = { "bps", "bps_rd", "bps_wr", "iops", "iops_rd",
                                             "iops_wr" };
    struct json_object *ins = json_object_new_object(), *cache = json_object_new_object();
    int depth = 0;

    for (const struct drive *b = drive_backing(d); b; b = drive_backing(b)) {
        depth++;
    }
    add_str(ins, "file", d->file);
    add_str(ins, "node-name", d->id);
    add_bool(ins, "ro", d->readonly);
    add_str(ins, "drv", drive_format_name(d));
    if (drive_backing(d)) {
        add_str(ins, "backing_file", drive_backing(d)->file);
    }
    add_int(ins, "backing_file_depth", depth);
    json_object_object_add(ins, "children", json_object_new_array());
    add_bool(ins, "active", true);
    add_bool(ins, "encrypted", false);
    add_str(ins, "detect_zeroes", "off");
    for (size_t i = 0; i < sizeof(throttles) / sizeof(throttles[0]); i++) {
        add_int(ins, throttles[i], 0);
    }
    json_object_object_add(ins, "image", image_info(d));
    add_bool(cache, "writeback", cache_modes[d->cache].writeback);
    add_bool(cache, "direct", cache_modes[d->cache].direct);
    add_bool(cache, "no-flush", false);
    json_object_object_add(ins, "cache", cache);
    add_int(ins, "write_threshold", 0);
    return ins;
}

/*
 * BlockInfo of a device's backend (blk), or of a drive no device uses
 * (blk NULL; as QEMU's drive without a device: removable, its tray
 * closed).  "io-status" is there when a device keeps one, and stays "ok"
 * (the error action is always "report").
 */
static struct json_object *block_entry(const char *name, const struct block_backend *blk,
                                       const struct drive *d)
{
    struct json_object *b = json_object_new_object();
    bool removable = !blk || blk_removable(blk);

    add_str(b, "device", name);
    add_qdev(b, blk ? blk_dev(blk) : NULL);
    add_str(b, "type", "unknown");
    add_bool(b, "removable", removable);
    add_bool(b, "locked", blk && blk_medium_locked(blk));
    if (d) {
        json_object_object_add(b, "inserted", inserted_info(d));
    }
    if (removable) {
        add_bool(b, "tray_open", blk && blk_tray_open(blk));
    }
    if (blk) {
        add_str(b, "io-status", "ok");
    }
    return b;
}

typedef void block_entry_fn(struct json_object *list, const char *name,
                            struct block_backend *blk, const struct drive *d);

/*
 * The block backends as QEMU's query-block and query-blockstats list them
 * (blk_all_next()): here the devices' (empty ones too), in the devices'
 * order, then each drive no device uses, which QEMU's -drive gives a
 * backend of its own.
 */
static struct json_object *list_backends(struct monitor_vm *vm, block_entry_fn *add)
{
    struct json_object *list = json_object_new_array();

    for (size_t i = 0; i < vm->n_devices; i++) {
        struct block_backend *blk = vm->devices[i]->blk;

        if (blk) {
            add(list, blk_name(blk), blk, blk_drive(blk));
        }
    }
    for (size_t i = 0; i < vm->n_drives; i++) {
        if (!vm->drives[i]->backend) {
            add(list, vm->drives[i]->id, NULL, vm->drives[i]);
        }
    }
    return list;
}

static void add_block_entry(struct json_object *list, const char *name,
                            struct block_backend *blk, const struct drive *d)
{
    json_object_array_add(list, block_entry(name, blk, d));
}

static struct json_object *query_block(struct monitor_vm *vm, struct json_object *args,
                                       struct qmp_error *e)
{
    (void)args, (void)e;
    return list_backends(vm, add_block_entry);
}

/*
 * QEMU's query-named-block-nodes: each node, the newest first (QEMU lists
 * its graph's so).  A drive is a node here, named by its id; its backing
 * images have no names of their own (they are in its "image"), and files
 * are no nodes apart.  "flat" leaves the backing images out of "image".
 */
static struct json_object *query_named_block_nodes(struct monitor_vm *vm,
                                                   struct json_object *args,
                                                   struct qmp_error *e)
{
    struct json_object *list = json_object_new_array(), *flat;
    bool is_flat = json_object_object_get_ex(args, "flat", &flat) &&
                   json_object_get_boolean(flat);

    (void)e;
    for (size_t i = vm->n_drives; i-- > 0;) {
        struct json_object *ins = inserted_info(vm->drives[i]);

        if (is_flat) {
            json_object_object_del(json_object_object_get(ins, "image"), "backing-image");
        }
        json_object_array_add(list, ins);
    }
    return list;
}

/* Members of BlockDeviceStats in the schema's order, where each is kept. */
#define NONE SIZE_MAX               /* always 0 here */
#define WR_HIGHEST (SIZE_MAX - 1)   /* the medium's, not the backend's */
#define STAT(member) { #member, offsetof(struct blk_stats, member) }
static const struct stat_member {
    const char *name;
    size_t offset;
} stats_before_idle[] = {
    STAT(rd_bytes), STAT(wr_bytes), { "zone_append_bytes", NONE }, STAT(unmap_bytes),
    STAT(rd_operations), STAT(wr_operations), { "zone_append_operations", NONE },
    STAT(flush_operations), STAT(unmap_operations), STAT(rd_total_time_ns),
    STAT(wr_total_time_ns), { "zone_append_total_time_ns", NONE }, STAT(flush_total_time_ns),
    STAT(unmap_total_time_ns), { "wr_highest_offset", WR_HIGHEST }, { "rd_merged", NONE },
    { "wr_merged", NONE }, { "zone_append_merged", NONE }, { "unmap_merged", NONE },
}, stats_after_idle[] = {
    STAT(failed_rd_operations), STAT(failed_wr_operations),
    { "failed_zone_append_operations", NONE }, STAT(failed_flush_operations),
    STAT(failed_unmap_operations), STAT(invalid_rd_operations), STAT(invalid_wr_operations),
    { "invalid_zone_append_operations", NONE }, STAT(invalid_flush_operations),
    STAT(invalid_unmap_operations),
};
#undef STAT

static void add_stats(struct json_object *o, const struct blk_stats *s, uint64_t wr_highest,
                      const struct stat_member *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = m[i].offset == NONE         ? 0
                     : m[i].offset == WR_HIGHEST ? wr_highest
                     : *(const uint64_t *)((const char *)s + m[i].offset);

        add_int(o, m[i].name, (int64_t)v);
    }
}
#undef WR_HIGHEST
#undef NONE

/*
 * BlockDeviceStats, every member QEMU's schema requires: no zone appends,
 * no merged requests, no latency intervals (timed_stats empty); invalid
 * and failed requests accounted, as QEMU's -drive does by default.  The
 * counters are the backend's, which outlive its media, as QEMU's
 * BlockBackend's do; wr_highest_offset is the medium's (QEMU: the node's).
 */
static struct json_object *stats_of(const struct blk_stats *s, uint64_t wr_highest)
{
    struct json_object *o = json_object_new_object();

    add_stats(o, s, wr_highest, stats_before_idle,
              sizeof(stats_before_idle) / sizeof(stats_before_idle[0]));
    if (s->last_access_ns) {
        add_int(o, "idle_time_ns", (int64_t)(loop_now_ns() - s->last_access_ns));
    }
    add_stats(o, s, wr_highest, stats_after_idle,
              sizeof(stats_after_idle) / sizeof(stats_after_idle[0]));
    add_bool(o, "account_invalid", true);
    add_bool(o, "account_failed", true);
    json_object_object_add(o, "timed_stats", json_object_new_array());
    return o;
}

/* A drive no device uses has done nothing a device counts. */
static const struct blk_stats no_stats;

static void add_blockstats_entry(struct json_object *list, const char *name,
                                 struct block_backend *blk, const struct drive *d)
{
    struct json_object *o = json_object_new_object();

    add_str(o, "device", name);
    add_qdev(o, blk ? blk_dev(blk) : NULL);
    if (d) {
        add_str(o, "node-name", d->id);
    }
    json_object_object_add(o, "stats", stats_of(blk ? blk_stats(blk) : &no_stats,
                                                d ? d->wr_highest_offset : 0));
    json_object_array_add(list, o);
}

static struct json_object *query_blockstats(struct monitor_vm *vm, struct json_object *args,
                                            struct qmp_error *e)
{
    (void)args, (void)e;
    return list_backends(vm, add_blockstats_entry);
}

/* --- QOM ---------------------------------------------------------------------- */

/* A device named by a QOM path: /machine/peripheral/ID, or just ID (a partial path). */
static struct device *device_at(struct monitor_vm *vm, const char *path)
{
    size_t n = strlen(PERIPHERAL "/");

    if (!strncmp(path, PERIPHERAL "/", n)) {
        path += n;
    } else if (path[0] == '/') {
        return NULL;
    }
    return find_device(vm, path);
}

static void add_child(struct json_object *list, const char *name, const char *type)
{
    struct json_object *o = json_object_new_object();

    add_str(o, "name", name);
    add_str(o, "type", type);
    json_object_array_add(list, o);
}

static struct json_object *qom_list(struct monitor_vm *vm, struct json_object *args,
                                    struct qmp_error *e)
{
    const char *path = arg_str(args, "path");
    struct json_object *list = json_object_new_array();
    struct device *dev;

    if (!strcmp(path, "/")) {
        add_child(list, "type", "string");
        add_child(list, "machine", "child<container>");
    } else if (!strcmp(path, "/machine")) {
        add_child(list, "type", "string");
        add_child(list, "peripheral", "child<container>");
    } else if (!strcmp(path, PERIPHERAL)) {
        add_child(list, "type", "string");
        for (size_t i = 0; i < vm->n_devices; i++) {
            char type[96];

            snprintf(type, sizeof(type), "child<%s>", vm->devices[i]->driver->name);
            add_child(list, vm->devices[i]->id, type);
        }
    } else if ((dev = device_at(vm, path))) {
        add_child(list, "type", "string");
        for (const struct prop_def *p = dev->driver->props; p && p->name; p++) {
            add_child(list, p->name, device_prop_type(p));
        }
    } else {
        json_object_put(list);
        return fail(e, "DeviceNotFound", "Device '%s' not found", path);
    }
    return list;
}

static struct json_object *qom_get(struct monitor_vm *vm, struct json_object *args,
                                   struct qmp_error *e)
{
    const char *path = arg_str(args, "path"), *prop = arg_str(args, "property");
    const struct prop_def *p;
    struct json_object *v;
    struct device *dev;
    char *text;

    if (!(dev = device_at(vm, path))) {
        return fail(e, "DeviceNotFound", "Device '%s' not found", path);
    }
    if (!strcmp(prop, "type")) {
        return json_object_new_string(dev->driver->name);
    }
    if (!(p = find_prop(dev, prop))) {
        return fail(e, "GenericError", "Property '%s.%s' not found", dev->driver->name, prop);
    }
    text = device_prop_text(dev, p);
    if (!text) {
        return fail(e, "GenericError", "out of memory");
    }
    switch (p->type) {
    case PROP_BOOL:
        v = json_object_new_boolean(!strcmp(text, "true"));
        break;
    case PROP_UINT:
    case PROP_SIZE:
        v = json_object_new_uint64(strtoull(text, NULL, 10));
        break;
    default:
        v = json_object_new_string(text);
        break;
    }
    free(text);
    return v;
}

/* --- actions ------------------------------------------------------------------ */

static struct json_object *system_reset(struct monitor_vm *vm, struct json_object *args,
                                        struct qmp_error *e)
{
    struct json_object *data = json_object_new_object();

    (void)args, (void)e;
    vm->reset(vm);
    add_bool(data, "guest", false);
    add_str(data, "reason", "host-qmp-system-reset");
    monitor_event("RESET", data);
    return json_object_new_object();
}

static struct json_object *quit(struct monitor_vm *vm, struct json_object *args,
                                struct qmp_error *e)
{
    struct json_object *data = json_object_new_object();

    (void)args, (void)e;
    add_bool(data, "guest", false);
    add_str(data, "reason", "host-qmp-quit");
    monitor_event("SHUTDOWN", data);
    vm->quit(vm);
    return json_object_new_object();
}

/*
 * An eject or a medium change whose medium is waiting for its I/O to
 * complete (blk_eject()): the command's result goes to 'later' then.
 */
struct media_wait {
    struct monitor_vm *vm;
    struct drive *incoming;     /* a medium change's new medium, else NULL */
    struct qmp_later *later;
};

/* The command's result once the backend has swapped the media (old out) or not (err). */
static struct json_object *media_result(struct monitor_vm *vm, struct drive *incoming,
                                        struct drive *old, char *err, struct qmp_error *e)
{
    if (err) {
        if (incoming) {
            vm->remove_drive(vm, incoming);
        }
        return fail_err(e, err);
    }
    if (old) {
        vm->remove_drive(vm, old);
    }
    return json_object_new_object();
}

static void media_waited(void *opaque, struct drive *old, char *err)
{
    struct media_wait *w = opaque;
    struct qmp_error e = { 0 };
    struct json_object *ret = media_result(w->vm, w->incoming, old, err, &e);
    struct qmp_later *later = w->later;

    free(w);
    later->done(later, ret, &e);
}

/*
 * eject (incoming NULL) and blockdev-change-medium: done now, or later when
 * the medium has I/O in flight (NULL with e->cls NULL, see qmp_run_later()).
 */
static struct json_object *change_media(struct monitor_vm *vm, struct json_object *args,
                                        struct block_backend *blk, struct drive *incoming,
                                        struct qmp_error *e, struct qmp_later *later)
{
    struct media_wait *w = calloc(1, sizeof(*w));
    bool force = arg_bool(args, "force");
    struct drive *old = NULL;
    char *err = NULL;
    int rc;

    if (!w) {
        return media_result(vm, incoming, NULL, strdup("out of memory"), e);
    }
    *w = (struct media_wait){ vm, incoming, later };
    rc = incoming ? blk_change_medium(blk, disk_named(args), incoming, force, &old,
                                      later ? media_waited : NULL, w, &err)
                  : blk_eject(blk, disk_named(args), force, &old,
                              later ? media_waited : NULL, w, &err);
    if (rc > 0) {
        return NULL;    /* media_waited() answers */
    }
    free(w);
    return media_result(vm, incoming, old, rc < 0 ? (err ? err : strdup("failed")) : NULL, e);
}

static struct json_object *eject(struct monitor_vm *vm, struct json_object *args,
                                 struct qmp_error *e, struct qmp_later *later)
{
    struct block_backend *blk;

    if (!(blk = find_disk(vm, args, e))) {
        return NULL;
    }
    return change_media(vm, args, blk, NULL, e, later);
}

/* The drive layer's errors begin "drive 'ID': "; QEMU's command errors do not. */
static void drop_drive_prefix(char *err, const char *id)
{
    size_t n = strlen(id);

    if (!strncmp(err, "drive '", 7) && !strncmp(err + 7, id, n) && !strncmp(err + 7 + n, "': ", 3)) {
        memmove(err, err + 10 + n, strlen(err + 10 + n) + 1);
    }
}

/* Opens filename as a medium for blk, named after it (or its device while it has no name). */
static struct drive *open_medium(struct monitor_vm *vm, struct block_backend *blk,
                                 struct json_object *args, char **err)
{
    struct drive *d;
    const char *mode = arg_str(args, "read-only-mode"), *name = blk_name(blk);
    const struct drive *cur = blk_drive(blk);
    struct drive_spec spec = {
        .id = *name ? name : blk_dev(blk)->id, .file = arg_str(args, "filename"),
        .format = arg_str(args, "format"), .cache = cur ? &cur->cache : NULL,
    };

    /* "retain": as the current medium, or the device's kind of media. */
    spec.readonly = mode && !strcmp(mode, "read-only") ? true
                    : mode && !strcmp(mode, "read-write") ? false
                    : blk_read_only(blk);
    d = drive_open_spec(&spec, vm->aio, err);
    if (!d && *err) {
        drop_drive_prefix(*err, spec.id);
    }
    return d;
}

static struct json_object *change_medium(struct monitor_vm *vm, struct json_object *args,
                                         struct qmp_error *e, struct qmp_later *later)
{
    const char *format = arg_str(args, "format");
    struct block_backend *blk;
    struct drive *d;
    char *err = NULL;

    if (!(blk = find_disk(vm, args, e))) {
        return NULL;
    }
    /* QEMU's bdrv_open() names a format it has no driver for so. */
    if (format && !drive_format_known(format)) {
        return fail(e, "GenericError", "Unknown driver '%s'", format);
    }
    if (!(d = open_medium(vm, blk, args, &err))) {
        return fail_err(e, err);
    }
    if (vm->add_drive(vm, d) < 0) {
        drive_close(d);
        return fail(e, "GenericError", "out of memory");
    }
    return change_media(vm, args, blk, d, e, later);
}

/*
 * The drive block_resize names, as QEMU's bdrv_lookup_bs(): "device" a
 * block backend by name (a device's medium, or a drive no device uses),
 * else "node-name" a drive (whose node name is its id here).
 */
static struct drive *resize_target(struct monitor_vm *vm, struct json_object *args,
                                   struct qmp_error *e)
{
    const char *device = arg_str(args, "device"), *node = arg_str(args, "node-name");
    struct drive *d;

    for (size_t i = 0; device && i < vm->n_devices; i++) {
        struct block_backend *blk = vm->devices[i]->blk;

        if (blk && !strcmp(blk_name(blk), device)) {
            if (!(d = blk_drive(blk))) {
                fail(e, "GenericError", "Device '%s' has no medium", device);
            }
            return d;
        }
    }
    if (device && (d = find_drive(vm, device)) && !d->backend) {
        return d;
    }
    if (node && (d = find_drive(vm, node))) {
        return d;
    }
    fail(e, "GenericError", "Cannot find device='%s' nor node-name='%s'", device ? device : "",
         node ? node : "");
    return NULL;
}

static struct json_object *block_resize(struct monitor_vm *vm, struct json_object *args,
                                        struct qmp_error *e)
{
    int64_t size = json_object_get_int64(json_object_object_get(args, "size"));
    struct drive *d;
    char *err = NULL;

    if (!(d = resize_target(vm, args, e))) {
        return NULL;
    }
    if (size < 0) {
        return fail(e, "GenericError", "Parameter 'size' expects a >0 size");
    }
    if (blk_drive_resize(d, (uint64_t)size, &err) < 0) {
        return fail_err(e, err);
    }
    return json_object_new_object();
}

/* An HMP command line waiting (an eject): its text is the QMP command's result. */
struct hmp_wait {
    struct hmp_later hmp;
    struct qmp_later *later;
};

static struct json_object *text_result(char *out)
{
    struct json_object *r = json_object_new_string(out ? out : "");

    free(out);
    return r;
}

static void hmp_waited(struct hmp_later *l, char *text)
{
    struct hmp_wait *w = (struct hmp_wait *)l;
    struct qmp_later *later = w->later;
    struct qmp_error e = { 0 };

    free(w);
    later->done(later, text_result(text), &e);
}

static struct json_object *human_monitor_command(struct monitor_vm *vm,
                                                 struct json_object *args,
                                                 struct qmp_error *e, struct qmp_later *later)
{
    struct hmp_wait *w;
    bool waits = false;
    char *out;

    /* A remote has no CPU for "cpu-index" to name. */
    if (json_object_object_get_ex(args, "cpu-index", NULL)) {
        return fail(e, "GenericError", "Parameter 'cpu-index' expects a CPU number");
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        return fail(e, "GenericError", "out of memory");
    }
    *w = (struct hmp_wait){ { hmp_waited }, later };
    out = hmp_run_later(vm, arg_str(args, "command-line"), later ? &w->hmp : NULL, &waits);
    if (waits) {
        return NULL;    /* hmp_waited() answers */
    }
    free(w);
    return text_result(out);
}

/* --- the table --------------------------------------------------------------- */

typedef struct json_object *command_fn(struct monitor_vm *vm, struct json_object *args,
                                       struct qmp_error *e);
/* A command that may answer later, through 'later' (qmp_run_later()). */
typedef struct json_object *waiting_fn(struct monitor_vm *vm, struct json_object *args,
                                       struct qmp_error *e, struct qmp_later *later);

static struct json_object *query_sandbox(struct monitor_vm *vm, struct json_object *args,
                                         struct qmp_error *e)
{
    (void)args, (void)e;
    return vm->sandbox_info ? vm->sandbox_info(vm) : json_object_new_object();
}

struct command {
    const char *name;
    command_fn *fn;
    /* Checked before fn runs; NULL: the command takes no argument. */
    const struct arg_spec *args;
    waiting_fn *waiting_fn;     /* instead of fn */
};

static struct json_object *query_commands(struct monitor_vm *vm, struct json_object *args,
                                          struct qmp_error *e);

/*
 * qmp_capabilities is the monitor's own (monitor.c negotiates): its entry
 * checks the arguments and hands back the capabilities asked for.
 */
static struct json_object *qmp_capabilities(struct monitor_vm *vm, struct json_object *args,
                                            struct qmp_error *e)
{
    struct json_object *enable;

    (void)vm, (void)e;
    return json_object_object_get_ex(args, "enable", &enable) ? json_object_get(enable)
                                                                : json_object_new_array();
}

/* Each command's arguments in the order QEMU's schema (qapi/) declares them. */
static const struct command commands[] = {
    { "qmp_capabilities", qmp_capabilities,
      ARGS({ "enable", ARG_ENUM_LIST, false, capabilities }), NULL },
    { "query-version", query_version, NULL, NULL },
    { "query-commands", query_commands, NULL, NULL },
    { "query-status", query_status, NULL, NULL },
    { "query-name", query_name, NULL, NULL },
    { "query-pci", query_pci, NULL, NULL },
    { "query-block", query_block, NULL, NULL },
    { "query-blockstats", query_blockstats, ARGS({ "query-nodes", ARG_BOOL, false, NULL }),
      NULL },
    { "query-named-block-nodes", query_named_block_nodes,
      ARGS({ "flat", ARG_BOOL, false, NULL }), NULL },
    { "query-sandbox", query_sandbox, NULL, NULL },
    { "qom-list", qom_list, ARGS({ "path", ARG_STR, true, NULL }), NULL },
    { "qom-get", qom_get,
      ARGS({ "path", ARG_STR, true, NULL }, { "property", ARG_STR, true, NULL }), NULL },
    { "system_reset", system_reset, NULL, NULL },
    { "eject", NULL, ARGS(DISK_ARGS, { "force", ARG_BOOL, false, NULL }), eject },
    { "blockdev-change-medium", NULL,
      ARGS(DISK_ARGS, { "filename", ARG_STR, true, NULL }, { "format", ARG_STR, false, NULL },
           { "force", ARG_BOOL, false, NULL },
           { "read-only-mode", ARG_ENUM, false, read_only_modes }),
      change_medium },
    { "block_resize", block_resize,
      ARGS({ "device", ARG_STR, false, NULL }, { "node-name", ARG_STR, false, NULL },
           { "size", ARG_INT, true, NULL }), NULL },
    { "human-monitor-command", NULL,
      ARGS({ "command-line", ARG_STR, true, NULL }, { "cpu-index", ARG_INT, false, NULL }),
      human_monitor_command },
    { "quit", quit, NULL, NULL },
};

static struct json_object *query_commands(struct monitor_vm *vm, struct json_object *args,
                                          struct qmp_error *e)
{
    struct json_object *list = json_object_new_array(), *o;

    (void)vm, (void)args, (void)e;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        o = json_object_new_object();
        add_str(o, "name", commands[i].name);
        json_object_array_add(list, o);
    }
    return list;
}

struct json_object *qmp_run(struct monitor_vm *vm, const char *name, struct json_object *args,
                            struct qmp_error *e)
{
    return qmp_run_later(vm, name, args, e, NULL);
}

struct json_object *qmp_run_later(struct monitor_vm *vm, const char *name,
                                  struct json_object *args, struct qmp_error *e,
                                  struct qmp_later *later)
{
    struct json_object *empty = NULL, *r = NULL;

    e->cls = NULL;
    e->desc = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct command *c = &commands[i];

        if (strcmp(c->name, name)) {
            continue;
        }
        if (!args) {
            args = empty = json_object_new_object();
        }
        if (check_args(args, c->args, e)) {
            r = c->waiting_fn ? c->waiting_fn(vm, args, e, later) : c->fn(vm, args, e);
        }
        json_object_put(empty);
        return r;
    }
    return fail(e, "CommandNotFound", "The command %s has not been found", name);
}
