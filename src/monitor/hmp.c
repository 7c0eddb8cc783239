// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * HMP: QEMU's text monitor.  Each command runs the QMP command of the same
 * meaning and prints its result as QEMU's HMP does, so the two never
 * disagree.
 */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/device.h"
#include "monitor/monitor.h"

struct text {
    char *buf;
    size_t len;
    FILE *f;
};

static const char *help_text =
    "block_resize device size -- resize a block image\r\n"
    "change device filename [format [read-only-mode]] -- change a removable medium\r\n"
    "eject [-f] device -- eject a removable medium (use -f to force it)\r\n"
    "help|? [cmd] -- show the help\r\n"
    "info [subcommand] -- show various information about the system state\r\n"
    "quit|q -- quit the remote process\r\n"
    "system_reset -- reset every device\r\n";

static const char *info_help_text =
    "info block -- show the block devices\r\n"
    "info blockstats -- show block device statistics\r\n"
    "info name -- show the current VM name\r\n"
    "info pci -- show PCI info\r\n"
    "info qtree -- show device tree\r\n"
    "info sandbox -- show what confines the process\r\n"
    "info status -- show the current VM status (running|paused)\r\n"
    "info version -- show the version of QEMU\r\n";

static struct json_object *get(const struct json_object *o, const char *key)
{
    struct json_object *v = NULL;

    json_object_object_get_ex(o, key, &v);
    return v;
}

static const char *str(const struct json_object *o, const char *key)
{
    struct json_object *v = get(o, key);

    return v ? json_object_get_string(v) : "";
}

static long long num(const struct json_object *o, const char *key)
{
    return (long long)json_object_get_int64(get(o, key));
}

/* Runs a QMP command; prints its error and returns NULL if it fails. */
static struct json_object *run(struct monitor_vm *vm, struct text *t, const char *cmd,
                               struct json_object *args)
{
    struct qmp_error e;
    struct json_object *r = qmp_run(vm, cmd, args, &e);

    json_object_put(args);
    if (!r) {
        fprintf(t->f, "Error: %s\r\n", e.desc ? e.desc : "failed");
        free(e.desc);
    }
    return r;
}

/* The lines QEMU prints for any block device: where it is attached, its tray. */
static void print_attachment(struct text *t, struct json_object *b)
{
    if (get(b, "qdev")) {
        fprintf(t->f, "    Attached to:      %s\r\n", str(b, "qdev"));
    }
    if (json_object_get_boolean(get(b, "removable"))) {
        fprintf(t->f, "    Removable device: %slocked, tray %s\r\n",
                json_object_get_boolean(get(b, "locked")) ? "" : "not ",
                json_object_get_boolean(get(b, "tray_open")) ? "open" : "closed");
    }
}

static void print_block(struct text *t, struct json_object *b)
{
    struct json_object *ins = get(b, "inserted");

    if (ins) {
        struct json_object *cache = get(ins, "cache");
        bool wb = json_object_get_boolean(get(cache, "writeback"));
        bool direct = json_object_get_boolean(get(cache, "direct"));

        fprintf(t->f, "%s: %s (%s%s)\r\n", str(b, "device"), str(ins, "file"),
                str(ins, "drv"), json_object_get_boolean(get(ins, "ro")) ? ", read-only" : "");
        if (get(ins, "backing_file")) {
            fprintf(t->f, "    Backing file:     %s (chain depth: %lld)\r\n",
                    str(ins, "backing_file"), num(ins, "backing_file_depth"));
        }
        print_attachment(t, b);
        fprintf(t->f, "    Cache mode:       %s%s\r\n", wb ? "writeback" : "writethrough",
                direct ? ", direct" : "");
    } else {
        fprintf(t->f, "%s: [not inserted]\r\n", str(b, "device"));
        print_attachment(t, b);
    }
    fprintf(t->f, "\r\n");
}

static void info_block(struct monitor_vm *vm, struct text *t)
{
    struct json_object *list = run(vm, t, "query-block", NULL);

    for (size_t i = 0; list && i < json_object_array_length(list); i++) {
        print_block(t, json_object_array_get_idx(list, i));
    }
    json_object_put(list);
}

static void info_blockstats(struct monitor_vm *vm, struct text *t)
{
    struct json_object *list = run(vm, t, "query-blockstats", NULL);

    for (size_t i = 0; list && i < json_object_array_length(list); i++) {
        struct json_object *b = json_object_array_get_idx(list, i), *s = get(b, "stats");

        fprintf(t->f, "%s: rd_bytes=%lld wr_bytes=%lld rd_operations=%lld wr_operations=%lld "
                "flush_operations=%lld unmap_operations=%lld unmap_bytes=%lld\r\n",
                str(b, "device"), num(s, "rd_bytes"), num(s, "wr_bytes"),
                num(s, "rd_operations"), num(s, "wr_operations"), num(s, "flush_operations"),
                num(s, "unmap_operations"), num(s, "unmap_bytes"));
    }
    json_object_put(list);
}

static void info_pci(struct monitor_vm *vm, struct text *t)
{
    struct json_object *buses = run(vm, t, "query-pci", NULL);
    struct json_object *devs = buses ? get(json_object_array_get_idx(buses, 0), "devices") : NULL;

    for (size_t i = 0; devs && i < json_object_array_length(devs); i++) {
        struct json_object *d = json_object_array_get_idx(devs, i), *id = get(d, "id");
        struct json_object *regions = get(d, "regions");

        fprintf(t->f, "  Bus %2lld, device %3lld, function %lld:\r\n", num(d, "bus"),
                num(d, "slot"), num(d, "function"));
        fprintf(t->f, "    %s: PCI device %04llx:%04llx\r\n",
                str(get(d, "class_info"), "desc"), num(id, "vendor"), num(id, "device"));
        if (get(d, "irq_pin")) {
            fprintf(t->f, "      IRQ pin %c.\r\n", (char)('A' + num(d, "irq_pin") - 1));
        }
        for (size_t r = 0; regions && r < json_object_array_length(regions); r++) {
            struct json_object *reg = json_object_array_get_idx(regions, r);
            bool io = !strcmp(str(reg, "type"), "io");

            fprintf(t->f, "      BAR%lld: %s at 0x%llx [0x%llx].\r\n", num(reg, "bar"),
                    io ? "I/O" : json_object_get_boolean(get(reg, "mem_type_64"))
                                 ? "64 bit memory" : "32 bit memory",
                    num(reg, "address"), num(reg, "address") + num(reg, "size") - 1);
        }
        fprintf(t->f, "      id \"%s\"\r\n", str(d, "qdev_id"));
    }
    json_object_put(buses);
}

static void print_props(struct text *t, const struct device *dev, int indent)
{
    for (const struct prop_def *p = dev->driver->props; p && p->name; p++) {
        char *v = device_prop_text(dev, p);

        if (p->type == PROP_STRING) {
            fprintf(t->f, "%*s%s = \"%s\"\r\n", indent, "", p->name, v ? v : "");
        } else {
            fprintf(t->f, "%*s%s = %s\r\n", indent, "", p->name, v ? v : "");
        }
        free(v);
    }
}

/* The devices on a controller's SCSI bus name it as "bus=ID.0". */
static bool on_bus_of(const struct device *dev, const struct device *hba)
{
    const struct prop_def *p;
    bool match = false;

    for (p = dev->driver->props; p && p->name && strcmp(p->name, "bus"); p++) {
    }
    if (p && p->name) {
        char *bus = device_prop_text(dev, p);
        size_t n = strlen(hba->id);

        match = bus && !strncmp(bus, hba->id, n) && bus[n] == '.';
        free(bus);
    }
    return match;
}

static void info_qtree(struct monitor_vm *vm, struct text *t)
{
    fprintf(t->f, "bus: pci.0\r\n  type PCI\r\n");
    for (size_t i = 0; i < vm->n_devices; i++) {
        const struct device *hba = vm->devices[i];

        if (!hba->pci) {
            continue;
        }
        fprintf(t->f, "  dev: %s, id \"%s\"\r\n", hba->driver->name, hba->id);
        print_props(t, hba, 4);
        if (!hba->driver->child_bus) {
            continue;
        }
        fprintf(t->f, "    bus: %s.0\r\n      type %s\r\n", hba->id, hba->driver->child_bus);
        for (size_t k = 0; k < vm->n_devices; k++) {
            const struct device *dev = vm->devices[k];

            if (!dev->pci && on_bus_of(dev, hba)) {
                fprintf(t->f, "      dev: %s, id \"%s\"\r\n", dev->driver->name, dev->id);
                print_props(t, dev, 8);
            }
        }
    }
}

static void info_sandbox(struct monitor_vm *vm, struct text *t)
{
    struct json_object *r = run(vm, t, "query-sandbox", NULL), *ll;

    if (!r) {
        return;
    }
    fprintf(t->f, "sandbox: %s\r\n", !json_object_get_boolean(get(r, "enabled")) ? "off"
            : json_object_get_boolean(get(r, "enforced")) ? "enforced" : "on (not yet)");
    if (json_object_get_boolean(get(r, "enforced"))) {
        fprintf(t->f, "  seccomp: %d system calls allowed, others kill the process\r\n",
                json_object_get_int(get(r, "syscalls-allowed")));
        ll = get(r, "landlock");
        if (!ll) {
            fprintf(t->f, "  Landlock: not available in this kernel\r\n");
        } else {
            struct json_object *paths = get(ll, "paths");

            fprintf(t->f, "  Landlock ABI %d:%s\r\n", json_object_get_int(get(ll, "abi")),
                    json_object_array_length(paths) ? "" : " no file");
            for (size_t i = 0; i < json_object_array_length(paths); i++) {
                struct json_object *p = json_object_array_get_idx(paths, i);

                fprintf(t->f, "    %s (%s)\r\n", str(p, "path"), str(p, "access"));
            }
        }
    }
    json_object_put(r);
}

static void info(struct monitor_vm *vm, struct text *t, const char *what)
{
    struct json_object *r;

    if (!what) {
        fputs(info_help_text, t->f);
    } else if (!strcmp(what, "status")) {
        r = run(vm, t, "query-status", NULL);
        if (r) {
            fprintf(t->f, "VM status: %s\r\n", str(r, "status"));
        }
        json_object_put(r);
    } else if (!strcmp(what, "version")) {
        r = run(vm, t, "query-version", NULL);
        if (r) {
            fprintf(t->f, "%s\r\n", str(r, "package"));
        }
        json_object_put(r);
    } else if (!strcmp(what, "name")) {
        if (vm->name) {
            fprintf(t->f, "%s\r\n", vm->name);
        }
    } else if (!strcmp(what, "block")) {
        info_block(vm, t);
    } else if (!strcmp(what, "blockstats")) {
        info_blockstats(vm, t);
    } else if (!strcmp(what, "pci")) {
        info_pci(vm, t);
    } else if (!strcmp(what, "qtree")) {
        info_qtree(vm, t);
    } else if (!strcmp(what, "sandbox")) {
        info_sandbox(vm, t);
    } else {
        fprintf(t->f, "unknown info subcommand: '%s'\r\n", what);
    }
}

static struct json_object *args_of(const char *key, const char *value, ...)
{
    struct json_object *a = json_object_new_object();
    va_list ap;

    va_start(ap, value);
    while (key) {
        if (value) {
            json_object_object_add(a, key, json_object_new_string(value));
        }
        key = va_arg(ap, const char *);
        value = key ? va_arg(ap, const char *) : NULL;
    }
    va_end(ap);
    return a;
}

static void action(struct monitor_vm *vm, struct text *t, const char *cmd,
                   struct json_object *args)
{
    json_object_put(run(vm, t, cmd, args));
}

static void resize(struct monitor_vm *vm, struct text *t, const char *dev, const char *size)
{
    char *end;
    unsigned long long v = size ? strtoull(size, &end, 10) : 0;
    struct json_object *a;

    if (!dev || !size || end == size) {
        fprintf(t->f, "Usage: block_resize device size\r\n");
        return;
    }
    switch (*end) {
    case 'G': case 'g': v <<= 30; break;
    case 'M': case 'm': v <<= 20; break;
    case 'K': case 'k': v <<= 10; break;
    case 0: v <<= 20; break;     /* HMP's default unit is MiB */
    default:
        fprintf(t->f, "invalid size '%s'\r\n", size);
        return;
    }
    a = args_of("device", dev, NULL);
    json_object_object_add(a, "size", json_object_new_int64((int64_t)v));
    action(vm, t, "block_resize", a);
}

static void eject(struct monitor_vm *vm, struct text *t, char **argv, int argc)
{
    bool force = argc > 1 && !strcmp(argv[1], "-f");
    const char *dev = argv[force ? 2 : 1];
    struct json_object *a;

    if (argc < (force ? 3 : 2)) {
        fprintf(t->f, "Usage: eject [-f] device\r\n");
        return;
    }
    a = args_of("device", dev, NULL);
    json_object_object_add(a, "force", json_object_new_boolean(force));
    action(vm, t, "eject", a);
}

static void dispatch(struct monitor_vm *vm, struct text *t, char **argv, int argc)
{
    const char *cmd = argv[0];

    if (!strcmp(cmd, "help") || !strcmp(cmd, "?")) {
        fputs(argc > 1 && !strcmp(argv[1], "info") ? info_help_text : help_text, t->f);
    } else if (!strcmp(cmd, "info")) {
        info(vm, t, argc > 1 ? argv[1] : NULL);
    } else if (!strcmp(cmd, "system_reset")) {
        action(vm, t, "system_reset", NULL);
    } else if (!strcmp(cmd, "quit") || !strcmp(cmd, "q")) {
        action(vm, t, "quit", NULL);
    } else if (!strcmp(cmd, "eject")) {
        eject(vm, t, argv, argc);
    } else if (!strcmp(cmd, "change")) {
        if (argc < 3) {
            fprintf(t->f, "Usage: change device filename [format [read-only-mode]]\r\n");
            return;
        }
        action(vm, t, "blockdev-change-medium",
               args_of("device", argv[1], "filename", argv[2], "format",
                       argc > 3 ? argv[3] : NULL, "read-only-mode", argc > 4 ? argv[4] : NULL,
                       NULL));
    } else if (!strcmp(cmd, "block_resize")) {
        resize(vm, t, argc > 1 ? argv[1] : NULL, argc > 2 ? argv[2] : NULL);
    } else {
        fprintf(t->f, "unknown command: '%s'\r\n", cmd);
    }
}

char *hmp_run(struct monitor_vm *vm, const char *line)
{
    struct text t = { 0 };
    char *copy = strdup(line), *argv[8], *save = NULL;
    int argc = 0;

    if (!copy || !(t.f = open_memstream(&t.buf, &t.len))) {
        free(copy);
        return NULL;
    }
    for (char *tok = strtok_r(copy, " \t", &save); tok && argc < 8;
         tok = strtok_r(NULL, " \t", &save)) {
        argv[argc++] = tok;
    }
    if (argc) {
        dispatch(vm, &t, argv, argc);
    }
    fclose(t.f);
    free(copy);
    return t.buf;
}
