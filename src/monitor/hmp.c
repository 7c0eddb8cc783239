// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * HMP: QEMU's text monitor.  Command lines are parsed as QEMU's
 * monitor/hmp.c parses them, from each command's argument types (its
 * "args_type": "force:-f,device:B"), with QEMU's messages for what does
 * not parse.  Each command runs the QMP command of the same meaning and
 * prints its result as QEMU's HMP does, so the two never disagree.  Every
 * line ends with CR LF, as QEMU's monitor ends them.
 */
#include <ctype.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/device.h"
#include "monitor/monitor.h"

enum {
    MAX_HELP_ARGS = 16,     /* words "help" looks at, as QEMU's */
    MAX_WORD = 1024,        /* a string argument, as QEMU's buffer (longer ones are cut) */
    MAX_NAME = 256,         /* a command name */
};

struct text {
    char *buf;
    size_t len;
    FILE *f;
    struct hmp_later *later;    /* where a command that waits prints, or NULL */
    bool waits;                 /* the line's command waits: later gets its text */
};

/* A command: QEMU's name ("quit|q"), argument types, help text; what it runs. */
struct hmp_command {
    const char *name, *args_type, *params, *help;
    void (*run)(struct monitor_vm *vm, struct text *t, struct json_object *args);
    const struct hmp_command *sub;      /* info's subcommands */
};

/* --- JSON results -------------------------------------------------------------- */

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

static bool flag(const struct json_object *o, const char *key)
{
    return json_object_get_boolean(get(o, key));
}

/* QEMU's HMP form of a command's error. */
static void print_error(FILE *f, struct qmp_error *e)
{
    fprintf(f, "Error: %s\r\n", e->desc ? e->desc : "failed");
    free(e->desc);
}

/* A command of the line that waits: its error (or nothing) is the line's text. */
struct qmp_wait {
    struct qmp_later qmp;
    struct hmp_later *later;
};

static void qmp_waited(struct qmp_later *l, struct json_object *ret, struct qmp_error *e)
{
    struct qmp_wait *w = (struct qmp_wait *)l;
    struct hmp_later *later = w->later;
    char *text = NULL;
    size_t len;
    FILE *f;

    free(w);
    json_object_put(ret);
    if ((f = open_memstream(&text, &len))) {
        if (!ret) {
            print_error(f, e);
        }
        fclose(f);
    }
    if (ret || !f) {
        free(e->desc);
    }
    later->done(later, text);
}

/* Runs a QMP command (takes args); prints its error as QEMU's HMP does and returns NULL. */
static struct json_object *run(struct monitor_vm *vm, struct text *t, const char *cmd,
                               struct json_object *args)
{
    struct qmp_wait *w = t->later ? calloc(1, sizeof(*w)) : NULL;
    struct qmp_error e;
    struct json_object *r;

    if (w) {
        *w = (struct qmp_wait){ { qmp_waited }, t->later };
    }
    r = qmp_run_later(vm, cmd, args, &e, w ? &w->qmp : NULL);
    json_object_put(args);
    if (!r && !e.cls) {
        t->waits = true;    /* qmp_waited() prints */
        return NULL;
    }
    free(w);
    if (!r) {
        print_error(t->f, &e);
    }
    return r;
}

static void action(struct monitor_vm *vm, struct text *t, const char *cmd,
                   struct json_object *args)
{
    json_object_put(run(vm, t, cmd, args));
}

/* A copy of some of the parsed arguments (those present), for a QMP command. */
static struct json_object *args_from(struct json_object *parsed, const char *const *map)
{
    struct json_object *a = json_object_new_object(), *v;

    for (; map[0]; map += 2) {
        if ((v = get(parsed, map[0]))) {
            json_object_object_add(a, map[1], json_object_get(v));
        }
    }
    return a;
}

/* --- info block ------------------------------------------------------------------ */

/* The lines QEMU prints for a block device after its first: attachment, I/O status, tray. */
static void print_attachment(struct text *t, struct json_object *b)
{
    if (get(b, "qdev")) {
        fprintf(t->f, "    Attached to:      %s\r\n", str(b, "qdev"));
    }
    if (get(b, "io-status") && strcmp(str(b, "io-status"), "ok")) {
        fprintf(t->f, "    I/O status:       %s\r\n", str(b, "io-status"));
    }
    if (flag(b, "removable")) {
        fprintf(t->f, "    Removable device: %slocked, tray %s\r\n",
                flag(b, "locked") ? "" : "not ", flag(b, "tray_open") ? "open" : "closed");
    }
}

/* QEMU's size_to_str(): three significant digits of the largest IEC unit under 1000 of it. */
static void size_text(char *buf, size_t size, uint64_t val)
{
    static const char *const prefixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    double v = (double)val / (1000.0 / 1024.0);
    int bits = 0;       /* frexp()'s exponent of v */

    for (; v >= 1.0; v /= 2) {
        bits++;
    }
    bits = (bits - 1) / 10;
    snprintf(buf, size, "%0.3g %sB", (double)val / (double)(1ull << (bits * 10)), prefixes[bits]);
}

/* QEMU's bdrv_node_info_dump() of each image of a chain (info block -v). */
static void print_images(struct text *t, struct json_object *img)
{
    char size[32];

    fputs("\r\nImages:\r\n", t->f);
    for (; img; img = get(img, "backing-image")) {
        size_text(size, sizeof(size), (uint64_t)num(img, "virtual-size"));
        fprintf(t->f, "image: %s\r\nfile format: %s\r\nvirtual size: %s (%lld bytes)\r\n",
                str(img, "filename"), str(img, "format"), size, num(img, "virtual-size"));
        fputs("disk size: unavailable\r\n", t->f);        /* no actual-size */
        if (get(img, "backing-filename")) {
            fprintf(t->f, "backing file: %s", str(img, "backing-filename"));
            if (!get(img, "full-backing-filename")) {
                fputs(" (cannot determine actual path)", t->f);
            } else if (strcmp(str(img, "backing-filename"), str(img, "full-backing-filename"))) {
                fprintf(t->f, " (actual path: %s)", str(img, "full-backing-filename"));
            }
            fputs("\r\n", t->f);
            if (get(img, "backing-filename-format")) {
                fprintf(t->f, "backing file format: %s\r\n", str(img, "backing-filename-format"));
            }
        }
    }
}

/*
 * QEMU's print_block_info(): of a BlockInfo b (its "inserted" ins), or of
 * a node (b NULL, ins its BlockDeviceInfo).
 */
static void print_block(struct text *t, struct json_object *b, struct json_object *ins,
                        bool verbose)
{
    struct json_object *cache;

    if (b && *str(b, "device")) {
        fputs(str(b, "device"), t->f);
        if (ins && get(ins, "node-name")) {
            fprintf(t->f, " (%s)", str(ins, "node-name"));
        }
    } else {
        fputs(ins && get(ins, "node-name") ? str(ins, "node-name")
              : b && get(b, "qdev")        ? str(b, "qdev")
                                           : "<anonymous>", t->f);
    }
    if (ins) {
        fprintf(t->f, ": %s (%s%s%s%s)\r\n", str(ins, "file"), str(ins, "drv"),
                flag(ins, "ro") ? ", read-only" : "", flag(ins, "encrypted") ? ", encrypted" : "",
                flag(ins, "active") ? "" : ", inactive");
    } else {
        fputs(": [not inserted]\r\n", t->f);
    }
    if (b) {
        print_attachment(t, b);
    }
    if (!ins) {
        return;
    }
    cache = get(ins, "cache");
    fprintf(t->f, "    Cache mode:       %s%s%s\r\n",
            flag(cache, "writeback") ? "writeback" : "writethrough",
            flag(cache, "direct") ? ", direct" : "", flag(cache, "no-flush") ? ", ignore flushes" : "");
    if (get(ins, "backing_file")) {
        fprintf(t->f, "    Backing file:     %s (chain depth: %lld)\r\n", str(ins, "backing_file"),
                num(ins, "backing_file_depth"));
    }
    if (verbose) {
        print_images(t, get(ins, "image"));
    }
}

/*
 * As QEMU's hmp_info_block(): the block devices (one, or all), a blank line
 * before each but the first of the whole list; with -n, or a name no
 * device has, the nodes (query-named-block-nodes) instead; -v adds each
 * image of the chain.
 */
static void info_block(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    const char *device = get(args, "device") ? str(args, "device") : NULL;
    bool nodes = flag(args, "nodes"), verbose = flag(args, "verbose"), printed = false;
    struct json_object *list = nodes ? NULL : run(vm, t, "query-block", NULL);

    for (size_t i = 0; list && i < json_object_array_length(list); i++) {
        struct json_object *b = json_object_array_get_idx(list, i);

        if (device && strcmp(device, str(b, "device"))) {
            continue;
        }
        fputs(i ? "\r\n" : "", t->f);
        print_block(t, b, get(b, "inserted"), verbose);
        printed = true;
    }
    json_object_put(list);
    if ((!device && !nodes) || printed) {
        return;
    }
    list = run(vm, t, "query-named-block-nodes", NULL);
    for (size_t i = 0; list && i < json_object_array_length(list); i++) {
        struct json_object *n = json_object_array_get_idx(list, i);

        if (device && strcmp(device, str(n, "node-name"))) {
            continue;
        }
        fputs(i ? "\r\n" : "", t->f);
        print_block(t, NULL, n, verbose);
    }
    json_object_put(list);
}

/* QEMU 11's table: bytes, operations, time and merged requests of each kind. */
static void info_blockstats(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    struct json_object *list = run(vm, t, "query-blockstats", NULL);

    (void)args;
    for (size_t i = 0; list && i < json_object_array_length(list); i++) {
        struct json_object *b = json_object_array_get_idx(list, i), *s = get(b, "stats");

        fprintf(t->f, "%s%s: idle_time_ns=%lld\r\n", i ? "\r\n" : "", str(b, "device"),
                num(s, "idle_time_ns"));
        fprintf(t->f, "       %24s %16s %24s %10s\r\n", "bytes", "operations", "total_time_ns",
                "merged");
        fprintf(t->f, "Read:  %24lld %16lld %24lld %10lld\r\n", num(s, "rd_bytes"),
                num(s, "rd_operations"), num(s, "rd_total_time_ns"), num(s, "rd_merged"));
        fprintf(t->f, "Write: %24lld %16lld %24lld %10lld\r\n", num(s, "wr_bytes"),
                num(s, "wr_operations"), num(s, "wr_total_time_ns"), num(s, "wr_merged"));
        fprintf(t->f, "Flush: %24s %16lld %24lld\r\n", "", num(s, "flush_operations"),
                num(s, "flush_total_time_ns"));
    }
    json_object_put(list);
}

/* --- info pci, info qtree --------------------------------------------------------- */

static void print_pci_region(struct text *t, struct json_object *reg)
{
    long long addr = num(reg, "address"), end = addr + num(reg, "size") - 1;

    fprintf(t->f, "      BAR%lld: ", num(reg, "bar"));
    if (!strcmp(str(reg, "type"), "io")) {
        if (addr == -1) {
            fputs("I/O (not mapped)\r\n", t->f);
        } else {
            fprintf(t->f, "I/O at 0x%04llx [0x%04llx]\r\n", addr, end);
        }
        return;
    }
    fprintf(t->f, "%d bit%s memory", flag(reg, "mem_type_64") ? 64 : 32,
            flag(reg, "prefetch") ? " prefetchable" : "");
    if (addr == -1) {
        fputs(" (not mapped)\r\n", t->f);
    } else {
        fprintf(t->f, " at 0x%08llx [0x%08llx]\r\n", addr, end);
    }
}

static void print_pci_device(struct text *t, struct json_object *d)
{
    struct json_object *id = get(d, "id"), *cls = get(d, "class_info"), *regions;

    fprintf(t->f, "  Bus %2lld, device %3lld, function %lld:\r\n", num(d, "bus"), num(d, "slot"),
            num(d, "function"));
    if (get(cls, "desc")) {
        fprintf(t->f, "    %s", str(cls, "desc"));
    } else {
        fprintf(t->f, "    Class %04lld", num(cls, "class"));   /* decimal, as QEMU */
    }
    fprintf(t->f, ": PCI device %04llx:%04llx\r\n", num(id, "vendor"), num(id, "device"));
    if (get(id, "subsystem-vendor") && get(id, "subsystem")) {
        fprintf(t->f, "      PCI subsystem %04llx:%04llx\r\n", num(id, "subsystem-vendor"),
                num(id, "subsystem"));
    }
    if (get(d, "irq")) {
        fprintf(t->f, "      IRQ %lld, pin %c\r\n", num(d, "irq"),
                (char)('A' + num(d, "irq_pin") - 1));
    }
    regions = get(d, "regions");
    for (size_t r = 0; regions && r < json_object_array_length(regions); r++) {
        print_pci_region(t, json_object_array_get_idx(regions, r));
    }
    fprintf(t->f, "      id \"%s\"\r\n", str(d, "qdev_id"));
}

static void info_pci(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    struct json_object *buses = run(vm, t, "query-pci", NULL);
    struct json_object *devs = buses ? get(json_object_array_get_idx(buses, 0), "devices") : NULL;

    (void)args;
    for (size_t i = 0; devs && i < json_object_array_length(devs); i++) {
        print_pci_device(t, json_object_array_get_idx(devs, i));
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

/* -b: brief, the properties left out. */
static void info_qtree(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    bool brief = flag(args, "brief");

    fputs("bus: pci.0\r\n  type PCI\r\n", t->f);
    for (size_t i = 0; i < vm->n_devices; i++) {
        const struct device *hba = vm->devices[i];

        if (!hba->pci) {
            continue;
        }
        fprintf(t->f, "  dev: %s, id \"%s\"\r\n", hba->driver->name, hba->id);
        if (!brief) {
            print_props(t, hba, 4);
        }
        if (!hba->driver->child_bus) {
            continue;
        }
        fprintf(t->f, "    bus: %s.0\r\n      type %s\r\n", hba->id, hba->driver->child_bus);
        for (size_t k = 0; k < vm->n_devices; k++) {
            const struct device *dev = vm->devices[k];

            if (!dev->pci && on_bus_of(dev, hba)) {
                fprintf(t->f, "      dev: %s, id \"%s\"\r\n", dev->driver->name, dev->id);
                if (!brief) {
                    print_props(t, dev, 8);
                }
            }
        }
    }
}

/* --- the other info subcommands ------------------------------------------------------ */

static void info_sandbox(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    struct json_object *r = run(vm, t, "query-sandbox", NULL), *ll;

    (void)args;
    if (!r) {
        return;
    }
    fprintf(t->f, "sandbox: %s\r\n", !flag(r, "enabled") ? "off"
            : flag(r, "enforced") ? "enforced" : "on (not yet)");
    if (flag(r, "enforced")) {
        fprintf(t->f, "  seccomp: %d system calls allowed, others kill the process\r\n",
                json_object_get_int(get(r, "syscalls-allowed")));
        ll = get(r, "landlock");
        if (!ll) {
            fputs("  Landlock: not available in this kernel\r\n", t->f);
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

static void info_status(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    struct json_object *r = run(vm, t, "query-status", NULL);

    (void)args;
    if (r) {
        fprintf(t->f, "VM status: %s\r\n", flag(r, "running") ? "running" : "paused");
    }
    json_object_put(r);
}

/* As QEMU: the numbers, then the package, with nothing between. */
static void info_version(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    struct json_object *r = run(vm, t, "query-version", NULL), *q;

    (void)args;
    if (r) {
        q = get(r, "qemu");
        fprintf(t->f, "%lld.%lld.%lld%s\r\n", num(q, "major"), num(q, "minor"), num(q, "micro"),
                str(r, "package"));
    }
    json_object_put(r);
}

static void info_name(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    struct json_object *r = run(vm, t, "query-name", NULL);

    (void)args;
    if (r && get(r, "name")) {
        fprintf(t->f, "%s\r\n", str(r, "name"));
    }
    json_object_put(r);
}

/* --- the commands --------------------------------------------------------------------- */

static void help(struct monitor_vm *vm, struct text *t, struct json_object *args);
static void info_help(struct monitor_vm *vm, struct text *t, struct json_object *args);

static void block_resize(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    static const char *const map[] = { "device", "device", "size", "size", NULL };

    action(vm, t, "block_resize", args_from(args, map));
}

/* QEMU's hmp_change() of a block device: the mode checked first. */
static void change(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    static const char *const modes[] = { "retain", "read-only", "read-write" };
    static const char *const map[] = { "device", "device", "target", "filename", "arg", "format",
                                       "force", "force", "read-only-mode", "read-only-mode",
                                       NULL };
    struct json_object *mode = get(args, "read-only-mode");
    bool known = !mode;

    for (size_t i = 0; mode && i < sizeof(modes) / sizeof(modes[0]); i++) {
        known |= !strcmp(json_object_get_string(mode), modes[i]);
    }
    if (!known) {
        fprintf(t->f, "Error: invalid parameter value: %s\r\n", json_object_get_string(mode));
        return;
    }
    action(vm, t, "blockdev-change-medium", args_from(args, map));
}

static void eject(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    static const char *const map[] = { "device", "device", "force", "force", NULL };

    action(vm, t, "eject", args_from(args, map));
}

static void quit(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    (void)args;
    action(vm, t, "quit", NULL);
}

static void system_reset(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    (void)args;
    action(vm, t, "system_reset", NULL);
}

/* Both tables sorted by name, as QEMU sorts its own. */
static const struct hmp_command info_commands[] = {
    { "block", "nodes:-n,verbose:-v,device:B?", "[-n] [-v] [device]",
      "show info of one block device or all block devices (-n: show named nodes; -v: show "
      "details)", info_block, NULL },
    { "blockstats", "", "", "show block device statistics", info_blockstats, NULL },
    { "name", "", "", "show the current VM name", info_name, NULL },
    { "pci", "", "", "show PCI info", info_pci, NULL },
    { "qtree", "brief:-b", "[-b]", "show device tree (-b: brief, omit properties)", info_qtree,
      NULL },
    { "sandbox", "", "", "show what confines the process", info_sandbox, NULL },
    { "status", "", "", "show the current VM status (running|paused)", info_status, NULL },
    { "version", "", "", "show the version of mpqemu-remote", info_version, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL },
};

static const struct hmp_command commands[] = {
    { "block_resize", "device:B,size:o", "device size", "resize a block image", block_resize,
      NULL },
    { "change", "device:B,force:-f,target:F,arg:s?,read-only-mode:s?",
      "device [-f] filename [format [read-only-mode]]",
      "change a removable medium, optional format, use -f to force the operation", change, NULL },
    { "eject", "force:-f,device:B", "[-f] device", "eject a removable medium (use -f to force it)",
      eject, NULL },
    { "help|?", "name:S?", "[cmd]", "show the help", help, NULL },
    { "info", "item:s?", "[subcommand]", "show various information about the system state",
      info_help, info_commands },
    { "quit|q", "", "", "quit the emulator", quit, NULL },
    { "system_reset", "", "", "reset the system", system_reset, NULL },
    { NULL, NULL, NULL, NULL, NULL, NULL },
};

/* --- parsing, as QEMU's monitor/hmp.c ------------------------------------------------- */

static const char *skip_spaces(const char *p)
{
    while (isspace((unsigned char)*p)) {
        p++;
    }
    return p;
}

/* Whether name is one of cmd_name's '|'-separated names. */
static bool command_named(const char *name, const char *cmd_name)
{
    size_t n = strlen(name);

    for (const char *p = cmd_name; *p;) {
        const char *end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len == n && !memcmp(p, name, n)) {
            return true;
        }
        p += len + (end != NULL);
    }
    return false;
}

static const struct hmp_command *find_in(const struct hmp_command *table, const char *name)
{
    for (; table->name; table++) {
        if (command_named(name, table->name)) {
            return table;
        }
    }
    return NULL;
}

/*
 * A word, or a "quoted string" with \n, \r, \\, \' and \" escapes; longer
 * than MAX_WORD - 1, it is cut.  Returns false when there is none (or its
 * quotes or escapes are bad).
 */
static bool get_word(char *buf, const char **pp)
{
    const char *p = skip_spaces(*pp);
    size_t n = 0;

    *pp = p;
    if (!*p) {
        return false;
    }
    if (*p != '"') {
        for (; *p && !isspace((unsigned char)*p); p++) {
            if (n < MAX_WORD - 1) {
                buf[n++] = *p;
            }
        }
    } else {
        for (p++; *p && *p != '"'; p++) {
            char c = *p;

            if (c == '\\') {
                c = *++p;
                if (c == 'n' || c == 'r') {
                    c = c == 'n' ? '\n' : '\r';
                } else if (c != '\\' && c != '\'' && c != '"') {
                    return false;
                }
            }
            if (n < MAX_WORD - 1) {
                buf[n++] = c;
            }
        }
        if (*p++ != '"') {
            return false;
        }
    }
    buf[n] = 0;
    *pp = p;
    return true;
}

static uint64_t suffix_unit(char c)
{
    static const char units[] = "bkmgtpe";
    const char *u = c ? strchr(units, tolower((unsigned char)c)) : NULL;

    return u ? (uint64_t)1 << (10 * (u - units)) : 0;
}

static uint64_t hex_digits(const char **pp, bool *overflow)
{
    const char *s = *pp;
    uint64_t v = 0;

    for (; isxdigit((unsigned char)*s); s++) {
        *overflow |= v >> 60 != 0;
        v = v << 4 | (uint64_t)(isdigit((unsigned char)*s) ? *s - '0'
                                                        : tolower((unsigned char)*s) - 'a' + 10);
    }
    *pp = s;
    return v;
}

static uint64_t decimal_digits(const char **pp, bool *overflow)
{
    const char *s = *pp;
    uint64_t v = 0;

    for (; isdigit((unsigned char)*s); s++) {
        *overflow |= v > (UINT64_MAX - 9) / 10;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *pp = s;
    return v;
}

/*
 * A size as QEMU's qemu_strtosz_MiB() reads one: decimal with an optional
 * fraction, or 0x hexadecimal (no fraction, no suffix); a suffix B, K, M,
 * G, T, P or E, MiB without one.  Fails on no number, a minus sign,
 * overflow, a fraction of a byte.
 */
static bool parse_size(const char *p, const char **end, uint64_t *size)
{
    const char *s = p + (*p == '+'), *digits;
    uint64_t v, unit, part = 0;
    double fraction = 0, scale = 0.1;
    bool overflow = false;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isxdigit((unsigned char)s[2])) {
        s += 2;
        v = hex_digits(&s, &overflow);
        if (*s == '.' || suffix_unit(*s)) {
            return false;
        }
        unit = 1 << 20;
    } else {
        digits = s;
        v = decimal_digits(&s, &overflow);
        if (*s == '.') {
            for (s++; isdigit((unsigned char)*s); s++, scale /= 10) {
                fraction += (*s - '0') * scale;
            }
        }
        if (s == digits || (s == digits + 1 && *digits == '.')) {
            return false;
        }
        unit = suffix_unit(*s);
        s += unit != 0;
        unit = unit ? unit : 1 << 20;
        part = (uint64_t)(fraction * (double)unit);
        if (fraction != 0 && unit == 1) {
            return false;
        }
    }
    if (overflow || v > (UINT64_MAX - part) / unit) {
        return false;
    }
    *size = v * unit + part;
    *end = s;
    return true;
}

/* The next "key:type" of an args_type string; false at its end. */
static bool next_arg(const char **typestr, char *key, size_t size, const char **type)
{
    const char *t = **typestr == ',' ? *typestr + 1 : *typestr;
    const char *colon = strchr(t, ':');

    if (!colon || (size_t)(colon - t) >= size) {
        return false;
    }
    memcpy(key, t, (size_t)(colon - t));
    key[colon - t] = 0;
    *type = colon + 1;
    *typestr = strchrnul(colon + 1, ',');
    return true;
}

/*
 * An option ("-f"): present, absent, or one a later argument takes; an
 * unknown one is an error.  Returns false after printing it.
 */
static bool parse_option(struct text *t, const struct hmp_command *cmd, const char *key,
                         char letter, const char *later, const char **pp, struct json_object *a)
{
    const char *p = skip_spaces(*pp);
    char option[3] = { '-', 0, 0 };

    if (*p != '-') {
        *pp = p;
        return true;
    }
    option[1] = p[1];
    if (p[1] != letter) {
        if (!p[1]) {
            /* QEMU prints the NUL after '-', which ends its message, line end and all. */
            fprintf(t->f, "%s: unsupported option -", cmd->name);
            return false;
        }
        if (!strstr(later, option)) {
            fprintf(t->f, "%s: unsupported option -%c\r\n", cmd->name, p[1]);
            return false;
        }
        *pp = p;        /* a later argument's */
        return true;
    }
    json_object_object_add(a, key, json_object_new_boolean(true));
    *pp = p + 2;
    return true;
}

/* One argument of type c ('?' after it: optional); false after printing why not. */
static bool parse_one(struct text *t, const struct hmp_command *cmd, const char *key, char c,
                      bool optional, const char **pp, struct json_object *a)
{
    const char *p = skip_spaces(*pp);
    char word[MAX_WORD];
    uint64_t size;

    if (optional && !*p) {
        *pp = p;
        return true;
    }
    switch (c) {
    case 'S':       /* the rest of the line */
        json_object_object_add(a, key, json_object_new_string(p));
        p += strlen(p);
        break;
    case 'o':
        if (!parse_size(p, &p, &size) || size > INT64_MAX) {
            fputs("invalid size\r\n", t->f);
            return false;
        }
        json_object_object_add(a, key, json_object_new_int64((int64_t)size));
        break;
    default:        /* 's', 'B', 'F': a string */
        if (!get_word(word, &p)) {
            fprintf(t->f, "%s: %s expected\r\n", cmd->name,
                    c == 'F' ? "filename" : c == 'B' ? "block device name" : "string");
            return false;
        }
        json_object_object_add(a, key, json_object_new_string(word));
        break;
    }
    *pp = p;
    return true;
}

/* The command's arguments from p, into a; false after printing what is wrong. */
static bool parse_args(struct text *t, const struct hmp_command *cmd, const char *p,
                       struct json_object *a)
{
    const char *typestr = cmd->args_type, *type;
    char key[64];

    while (next_arg(&typestr, key, sizeof(key), &type)) {
        bool ok = type[0] == '-'
                  ? parse_option(t, cmd, key, type[1], typestr, &p, a)
                  : parse_one(t, cmd, key, type[0], type[1] == '?', &p, a);

        if (!ok) {
            return false;
        }
    }
    p = skip_spaces(p);
    if (*p) {
        fprintf(t->f, "%s: extraneous characters at the end of line\r\n", cmd->name);
        return false;
    }
    return true;
}

/*
 * The command a line names (a subcommand for "info"), *pp after it and
 * its spaces; NULL for an empty line, or after "unknown command" (a name
 * ends at a space or '/': "/x" names "").
 */
static const struct hmp_command *parse_command(struct text *t, const char *line,
                                               const char **pp, const struct hmp_command *table)
{
    const char *p = skip_spaces(*pp), *start = p;
    const struct hmp_command *cmd;
    char name[MAX_NAME];

    if (!*p) {
        return NULL;
    }
    while (*p && *p != '/' && !isspace((unsigned char)*p)) {
        p++;
    }
    snprintf(name, sizeof(name), "%.*s", (int)(p - start), start);
    if (!(cmd = find_in(table, name))) {
        fprintf(t->f, "unknown command: '%.*s'\r\n", (int)(p - line), line);
        return NULL;
    }
    *pp = p = skip_spaces(p);
    return cmd->sub && *p ? parse_command(t, line, pp, cmd->sub) : cmd;
}

/* --- help ---------------------------------------------------------------------------- */

static void help_line(struct text *t, char **prefix, int n, const struct hmp_command *cmd)
{
    for (int i = 0; i < n; i++) {
        fprintf(t->f, "%s ", prefix[i]);
    }
    fprintf(t->f, "%s %s -- %s\r\n", cmd->name, cmd->params, cmd->help);
}

/* QEMU's help_cmd_dump(): all of a table, or the command words[at] names. */
static void help_dump(struct text *t, const struct hmp_command *table, char **words, int n,
                      int at)
{
    const struct hmp_command *cmd;

    if (at >= n) {
        for (cmd = table; cmd->name; cmd++) {
            help_line(t, words, at, cmd);
        }
    } else if (!(cmd = find_in(table, words[at]))) {
        fputs("unknown command: '", t->f);
        for (int i = 0; i <= at; i++) {
            fprintf(t->f, "%s%s", words[i], i == at ? "'\r\n" : " ");
        }
    } else if (cmd->sub) {
        help_dump(t, cmd->sub, words, n, at + 1);
    } else {
        help_line(t, words, at, cmd);
    }
}

/* help [words]: the words read as QEMU reads them; if they do not read, nothing. */
static void help_for(struct text *t, const char *what)
{
    char *words[MAX_HELP_ARGS], word[MAX_WORD];
    const char *p = what ? what : "";
    int n = 0;

    while (*(p = skip_spaces(p))) {
        if (n == MAX_HELP_ARGS || !get_word(word, &p)) {
            goto out;
        }
        words[n++] = strdup(word);
        if (!words[n - 1]) {
            goto out;
        }
    }
    help_dump(t, commands, words, n, 0);
out:
    while (n > 0) {
        free(words[--n]);
    }
}

static void help(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    (void)vm;
    help_for(t, get(args, "name") ? str(args, "name") : NULL);
}

static void info_help(struct monitor_vm *vm, struct text *t, struct json_object *args)
{
    (void)vm, (void)args;
    help_for(t, "info");
}

/* --- a line ---------------------------------------------------------------------------- */

char *hmp_run(struct monitor_vm *vm, const char *line)
{
    bool waits;

    return hmp_run_later(vm, line, NULL, &waits);
}

char *hmp_run_later(struct monitor_vm *vm, const char *line, struct hmp_later *later,
                    bool *waits)
{
    struct text t = { .later = later };
    const struct hmp_command *cmd;
    struct json_object *args;
    const char *p = line;

    *waits = false;
    if (!(t.f = open_memstream(&t.buf, &t.len))) {
        return NULL;
    }
    if ((cmd = parse_command(&t, line, &p, commands))) {
        args = json_object_new_object();
        if (parse_args(&t, cmd, p, args)) {
            cmd->run(vm, &t, args);
        } else {
            while (p > line && isspace((unsigned char)p[-1])) {
                p--;
            }
            fprintf(t.f, "Try \"help %.*s\" for more information\r\n", (int)(p - line), line);
        }
        json_object_put(args);
    }
    fclose(t.f);
    *waits = t.waits;
    if (t.waits) {
        free(t.buf);    /* empty: the commands that wait print nothing before */
        return NULL;
    }
    return t.buf;
}
