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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/backend.h"
#include "block/drive.h"
#include "hw/device.h"
#include "monitor/monitor.h"
#include "pci/pci.h"
#include "util/error.h"

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

/* One argument a command takes. */
struct arg_spec {
    const char *name;
    enum json_type type;
    bool required;
};

/* A command's arguments, in its table entry: ARGS({ "size", json_type_int, true }, ...). */
#define ARGS(...) ((const struct arg_spec[]){ __VA_ARGS__, { 0 } })
/* A disk named by its drive ("device") or by its qdev id ("id"). */
#define DISK_ARGS { "device", json_type_string, false }, { "id", json_type_string, false }

/* Checks args against the command's arguments: none unknown, required ones there, types. */
static bool check_args(struct json_object *args, const struct arg_spec *spec,
                       struct qmp_error *e)
{
    const struct arg_spec *s;

    json_object_object_foreach(args, key, val) {
        for (s = spec; s && s->name && strcmp(s->name, key); s++) {
        }
        if (!s || !s->name) {
            fail(e, "GenericError", "Parameter '%s' is unexpected", key);
            return false;
        }
        if (!json_object_is_type(val, s->type) &&
            !(s->type == json_type_double && json_object_is_type(val, json_type_int))) {
            fail(e, "GenericError", "Invalid parameter type for '%s', expected: %s", key,
                 json_type_to_name(s->type));
            return false;
        }
    }
    for (s = spec; s && s->name; s++) {
        if (s->required && !json_object_object_get_ex(args, s->name, NULL)) {
            fail(e, "GenericError", "Parameter '%s' is missing", s->name);
            return false;
        }
    }
    return true;
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

/* "qdev": the QOM path of the device a drive is attached to, if any. */
static void add_qdev(struct json_object *o, const struct device *dev)
{
    char path[256];

    if (dev) {
        snprintf(path, sizeof(path), PERIPHERAL "/%s", dev->id);
        add_str(o, "qdev", path);
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

/* The device whose medium d is, or NULL. */
static struct device *device_of_drive(const struct drive *d)
{
    return d->backend ? blk_dev(d->backend) : NULL;
}

/* --- queries ---------------------------------------------------------------- */

static struct json_object *query_status(struct monitor_vm *vm, struct json_object *args,
                                        struct qmp_error *e)
{
    struct json_object *r = json_object_new_object();

    (void)vm, (void)args, (void)e;
    add_str(r, "status", "running");
    add_bool(r, "singlestep", false);
    add_bool(r, "running", true);
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
    unsigned major = 0, minor = 0, micro = 0;

    (void)vm, (void)args, (void)e;
    sscanf(MPQEMU_VERSION, "%u.%u.%u", &major, &minor, &micro);
    add_int(q, "major", major);
    add_int(q, "minor", minor);
    add_int(q, "micro", micro);
    json_object_object_add(r, "qemu", q);
    add_str(r, "package", "mpqemu-remote " MPQEMU_VERSION);
    return r;
}

static struct json_object *pci_regions(struct pci_device *p)
{
    struct json_object *list = json_object_new_array();

    for (int bar = 0; bar < PCI_NUM_BARS; bar++) {
        const struct pci_bar *b = &p->bars[bar];
        struct json_object *r;

        if (b->type == PCI_BAR_UNUSED) {
            continue;
        }
        r = json_object_new_object();
        add_int(r, "bar", bar);
        add_str(r, "type", b->type == PCI_BAR_IO ? "io" : "memory");
        add_int(r, "address", (int64_t)pci_bar_address(p, bar));
        add_int(r, "size", (int64_t)b->size);
        if (b->type != PCI_BAR_IO) {
            add_bool(r, "prefetch", b->prefetchable);
            add_bool(r, "mem_type_64", b->type == PCI_BAR_MEM64);
        }
        json_object_array_add(list, r);
    }
    return list;
}

static const char *class_desc(uint16_t cls)
{
    switch (cls) {
    case 0x0100: return "SCSI controller";
    case 0x0000: return "Unclassified device";
    default: return "PCI device";
    }
}

static struct json_object *query_pci(struct monitor_vm *vm, struct json_object *args,
                                     struct qmp_error *e)
{
    struct json_object *bus = json_object_new_object(), *devs = json_object_new_array();
    struct json_object *list = json_object_new_array();
    int slot = 0;

    (void)args, (void)e;
    for (size_t i = 0; i < vm->n_devices; i++) {
        struct pci_device *p = vm->devices[i]->pci;
        struct json_object *d, *ci, *id;
        uint16_t cls;

        if (!p) {
            continue;
        }
        cls = pci_get_word(p->config + 0x0a);
        d = json_object_new_object();
        ci = json_object_new_object();
        id = json_object_new_object();
        add_int(d, "bus", 0);
        add_int(d, "slot", slot++);
        add_int(d, "function", 0);
        add_int(ci, "class", cls);
        add_str(ci, "desc", class_desc(cls));
        json_object_object_add(d, "class_info", ci);
        add_int(id, "vendor", pci_get_word(p->config + 0x00));
        add_int(id, "device", pci_get_word(p->config + 0x02));
        add_int(id, "subsystem-vendor", pci_get_word(p->config + 0x2c));
        add_int(id, "subsystem", pci_get_word(p->config + 0x2e));
        json_object_object_add(d, "id", id);
        if (p->config[0x3d]) {
            add_int(d, "irq_pin", p->config[0x3d]);
        }
        add_str(d, "qdev_id", vm->devices[i]->id);
        json_object_object_add(d, "regions", pci_regions(p));
        json_object_array_add(devs, d);
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

static struct json_object *image_info(const struct drive *d)
{
    struct json_object *img = json_object_new_object();
    const struct drive *backing = drive_backing(d);

    add_str(img, "filename", d->file);
    add_str(img, "format", drive_format_name(d));
    add_int(img, "virtual-size", (int64_t)d->size);
    if (backing) {
        add_str(img, "backing-filename", backing->file);
        json_object_object_add(img, "backing-image", image_info(backing));
    }
    return img;
}

static struct json_object *inserted_info(const struct drive *d)
{
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
    add_bool(ins, "encrypted", false);
    add_str(ins, "detect_zeroes", "off");
    add_bool(cache, "writeback", cache_modes[d->cache].writeback);
    add_bool(cache, "direct", cache_modes[d->cache].direct);
    add_bool(cache, "no-flush", false);
    json_object_object_add(ins, "cache", cache);
    json_object_object_add(ins, "image", image_info(d));
    return ins;
}

/* A device's backend (blk), or a drive no device uses (blk NULL). */
static struct json_object *block_entry(const char *name, const struct block_backend *blk,
                                       const struct drive *d)
{
    struct json_object *b = json_object_new_object();
    bool removable = blk && blk_removable(blk);

    add_str(b, "device", name);
    add_qdev(b, blk ? blk_dev(blk) : NULL);
    add_bool(b, "removable", removable);
    add_bool(b, "locked", blk && blk_medium_locked(blk));
    if (removable) {
        add_bool(b, "tray_open", blk_tray_open(blk));
    }
    add_str(b, "type", "unknown");
    add_str(b, "io-status", "ok");
    if (d) {
        json_object_object_add(b, "inserted", inserted_info(d));
    }
    return b;
}

static struct json_object *query_block(struct monitor_vm *vm, struct json_object *args,
                                       struct qmp_error *e)
{
    struct json_object *list = json_object_new_array();

    (void)args, (void)e;
    for (size_t i = 0; i < vm->n_devices; i++) {
        struct block_backend *blk = vm->devices[i]->blk;

        if (blk) {
            json_object_array_add(list, block_entry(blk_name(blk), blk, blk_drive(blk)));
        }
    }
    for (size_t i = 0; i < vm->n_drives; i++) {
        if (!vm->drives[i]->backend) {
            json_object_array_add(list, block_entry(vm->drives[i]->id, NULL, vm->drives[i]));
        }
    }
    return list;
}

static struct json_object *stats_of(const struct drive_stats *s)
{
    struct json_object *o = json_object_new_object();

    add_int(o, "rd_bytes", (int64_t)s->rd_bytes);
    add_int(o, "wr_bytes", (int64_t)s->wr_bytes);
    add_int(o, "unmap_bytes", (int64_t)s->unmap_bytes);
    add_int(o, "rd_operations", (int64_t)s->rd_operations);
    add_int(o, "wr_operations", (int64_t)s->wr_operations);
    add_int(o, "flush_operations", (int64_t)s->flush_operations);
    add_int(o, "unmap_operations", (int64_t)s->unmap_operations);
    add_int(o, "failed_rd_operations", (int64_t)s->failed_rd_operations);
    add_int(o, "failed_wr_operations", (int64_t)s->failed_wr_operations);
    add_int(o, "failed_flush_operations", (int64_t)s->failed_flush_operations);
    add_int(o, "failed_unmap_operations", (int64_t)s->failed_unmap_operations);
    return o;
}

static struct json_object *query_blockstats(struct monitor_vm *vm, struct json_object *args,
                                            struct qmp_error *e)
{
    struct json_object *list = json_object_new_array();

    (void)args, (void)e;
    for (size_t i = 0; i < vm->n_drives; i++) {
        struct json_object *o = json_object_new_object();
        struct device *dev = device_of_drive(vm->drives[i]);

        add_str(o, "device", vm->drives[i]->id);
        add_str(o, "node-name", vm->drives[i]->id);
        add_qdev(o, dev);
        json_object_object_add(o, "stats", stats_of(&vm->drives[i]->stats));
        json_object_array_add(list, o);
    }
    return list;
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

static struct json_object *eject(struct monitor_vm *vm, struct json_object *args,
                                 struct qmp_error *e)
{
    struct block_backend *blk;
    struct drive *old;
    char *err = NULL;

    if (!(blk = find_disk(vm, args, e))) {
        return NULL;
    }
    if (blk_eject(blk, disk_named(args), arg_bool(args, "force"), &old, &err) < 0) {
        return fail_err(e, err);
    }
    if (old) {
        vm->remove_drive(vm, old);
    }
    return json_object_new_object();
}

/* Opens filename as a medium for blk, named after it (or its device while it has no name). */
static struct drive *open_medium(struct monitor_vm *vm, struct block_backend *blk,
                                 struct json_object *args, char **err)
{
    const char *mode = arg_str(args, "read-only-mode"), *name = blk_name(blk);
    const struct drive *cur = blk_drive(blk);
    struct drive_spec spec = {
        .id = *name ? name : blk_dev(blk)->id, .file = arg_str(args, "filename"),
        .format = arg_str(args, "format"), .cache = cur ? &cur->cache : NULL,
    };

    if (mode && strcmp(mode, "retain") && strcmp(mode, "read-only") &&
        strcmp(mode, "read-write")) {
        error_setf(err, "read-only-mode must be retain, read-only or read-write");
        return NULL;
    }
    /* "retain": as the current medium, or the device's kind of media. */
    spec.readonly = mode && !strcmp(mode, "read-only") ? true
                    : mode && !strcmp(mode, "read-write") ? false
                    : blk_read_only(blk);
    return drive_open_spec(&spec, vm->aio, err);
}

static struct json_object *change_medium(struct monitor_vm *vm, struct json_object *args,
                                         struct qmp_error *e)
{
    struct block_backend *blk;
    struct drive *d, *old;
    char *err = NULL;

    if (!(blk = find_disk(vm, args, e))) {
        return NULL;
    }
    if (!arg_str(args, "filename")) {
        return fail(e, "GenericError", "Parameter 'filename' is missing");
    }
    if (!(d = open_medium(vm, blk, args, &err))) {
        return fail_err(e, err);
    }
    if (vm->add_drive(vm, d) < 0) {
        drive_close(d);
        return fail(e, "GenericError", "out of memory");
    }
    if (blk_change_medium(blk, disk_named(args), d, arg_bool(args, "force"), &old, &err) < 0) {
        vm->remove_drive(vm, d);
        return fail_err(e, err);
    }
    if (old) {
        vm->remove_drive(vm, old);
    }
    return json_object_new_object();
}

static struct json_object *block_resize(struct monitor_vm *vm, struct json_object *args,
                                        struct qmp_error *e)
{
    const char *name = arg_str(args, "device") ? arg_str(args, "device")
                                               : arg_str(args, "node-name");
    int64_t size = json_object_get_int64(json_object_object_get(args, "size"));
    struct drive *d;
    char *err = NULL;

    if (!(d = find_drive(vm, name))) {
        return fail(e, "DeviceNotFound", "Device '%s' not found", name ? name : "");
    }
    if (size <= 0) {
        return fail(e, "GenericError", "Parameter 'size' expects a >0 size");
    }
    if (blk_drive_resize(d, (uint64_t)size, &err) < 0) {
        return fail_err(e, err);
    }
    return json_object_new_object();
}

static struct json_object *human_monitor_command(struct monitor_vm *vm,
                                                 struct json_object *args,
                                                 struct qmp_error *e)
{
    char *out = hmp_run(vm, arg_str(args, "command-line"));
    struct json_object *r = json_object_new_string(out ? out : "");

    (void)e;
    free(out);
    return r;
}

/* --- the table --------------------------------------------------------------- */

typedef struct json_object *command_fn(struct monitor_vm *vm, struct json_object *args,
                                       struct qmp_error *e);

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
};

static struct json_object *query_commands(struct monitor_vm *vm, struct json_object *args,
                                          struct qmp_error *e);

static const struct command commands[] = {
    { "query-version", query_version, NULL },
    { "query-commands", query_commands, NULL },
    { "query-status", query_status, NULL },
    { "query-name", query_name, NULL },
    { "query-pci", query_pci, NULL },
    { "query-block", query_block, NULL },
    { "query-blockstats", query_blockstats, ARGS({ "query-nodes", json_type_boolean, false }) },
    { "query-sandbox", query_sandbox, NULL },
    { "qom-list", qom_list, ARGS({ "path", json_type_string, true }) },
    { "qom-get", qom_get,
      ARGS({ "path", json_type_string, true }, { "property", json_type_string, true }) },
    { "system_reset", system_reset, NULL },
    { "eject", eject, ARGS(DISK_ARGS, { "force", json_type_boolean, false }) },
    { "blockdev-change-medium", change_medium,
      ARGS(DISK_ARGS, { "force", json_type_boolean, false },
           { "filename", json_type_string, false }, { "format", json_type_string, false },
           { "read-only-mode", json_type_string, false }) },
    { "block_resize", block_resize,
      ARGS({ "device", json_type_string, false }, { "node-name", json_type_string, false },
           { "size", json_type_int, true }) },
    { "human-monitor-command", human_monitor_command,
      ARGS({ "command-line", json_type_string, true }, { "cpu-index", json_type_int, false }) },
    { "quit", quit, NULL },
};

static struct json_object *query_commands(struct monitor_vm *vm, struct json_object *args,
                                          struct qmp_error *e)
{
    struct json_object *list = json_object_new_array(), *o = json_object_new_object();

    (void)vm, (void)args, (void)e;
    add_str(o, "name", "qmp_capabilities");
    json_object_array_add(list, o);
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
            r = c->fn(vm, args, e);
        }
        json_object_put(empty);
        return r;
    }
    return fail(e, "CommandNotFound", "The command %s has not been found", name);
}
