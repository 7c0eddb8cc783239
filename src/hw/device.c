// SPDX-License-Identifier: GPL-2.0-or-later
#include "hw/device.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pci/pci.h"
#include "util/checkpoint.h"
#include "util/error.h"
#include "util/log.h"
#include "util/opts.h"

enum { MAX_DRIVERS = 64 };

/* In the order registered: -device help lists them so. */
static const struct device_driver *drivers[MAX_DRIVERS];
static size_t n_drivers;

void device_driver_register(const struct device_driver *drv)
{
    if (device_driver_find(drv->name) || n_drivers == MAX_DRIVERS) {
        log_error("cannot register device driver '%s': %s", drv->name,
                  n_drivers == MAX_DRIVERS ? "too many drivers" : "the name is taken");
        abort();
    }
    drivers[n_drivers++] = drv;
}

const struct device_driver *device_driver_find(const char *name)
{
    for (size_t i = 0; i < n_drivers; i++) {
        if (!strcmp(drivers[i]->name, name)) {
            return drivers[i];
        }
    }
    return NULL;
}

void device_print_drivers(FILE *out)
{
    fprintf(out, "Devices:\n");
    for (size_t i = 0; i < n_drivers; i++) {
        fprintf(out, "name \"%s\", desc \"%s\"\n", drivers[i]->name, drivers[i]->desc);
    }
}

static const char *const type_names[] = {
    [PROP_STRING] = "str", [PROP_BOOL] = "bool",
    [PROP_UINT] = "uint64", [PROP_SIZE] = "size",
};

const char *device_prop_type(const struct prop_def *p)
{
    return type_names[p->type];
}

char *device_prop_text(const struct device *dev, const struct prop_def *p)
{
    const char *field = (const char *)dev + p->offset;
    char *out = NULL;

    switch (p->type) {
    case PROP_STRING:
        out = strdup(*(char *const *)field ? *(char *const *)field : "");
        break;
    case PROP_BOOL:
        out = strdup(*(const bool *)field ? "true" : "false");
        break;
    case PROP_UINT:
    case PROP_SIZE:
        if (asprintf(&out, "%llu", (unsigned long long)*(const uint64_t *)field) < 0) {
            out = NULL;
        }
        break;
    }
    return out;
}

void device_print_props(const struct device_driver *drv, FILE *out)
{
    fprintf(out, "%s options:\n", drv->name);
    for (const struct prop_def *p = drv->props; p && p->name; p++) {
        fprintf(out, "  %-20s <%s>", p->name, type_names[p->type]);
        if (p->help) {
            fprintf(out, " - %s", p->help);
        }
        if (p->default_value) {
            fprintf(out, " (default: %s)", p->default_value);
        }
        fputc('\n', out);
    }
}

static int set_prop(void *obj, const struct prop_def *p, const char *text, char **err)
{
    char *field = (char *)obj + p->offset;
    uint64_t v;

    switch (p->type) {
    case PROP_STRING: {
        char *copy = strdup(text);

        if (!copy) {
            error_setf(err, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case PROP_BOOL:
        if (parse_bool(text, (bool *)field) < 0) {
            error_setf(err, "property '%s' expects 'on' or 'off', not '%s'", p->name, text);
            return -1;
        }
        return 0;
    case PROP_UINT:
    case PROP_SIZE:
        if ((p->type == PROP_UINT ? parse_uint(text, &v) : parse_size(text, &v)) < 0 ||
            v > p->max) {
            error_setf(err, "property '%s' expects a %s from 0 to %llu, not '%s'", p->name,
                       p->type == PROP_UINT ? "number" : "size",
                       (unsigned long long)p->max, text);
            return -1;
        }
        *(uint64_t *)field = v;
        return 0;
    }
    return -1;
}

static void free_props(struct device *dev)
{
    for (const struct prop_def *p = dev->driver->props; p && p->name; p++) {
        if (p->type == PROP_STRING) {
            free(*(char **)((char *)dev + p->offset));
        }
    }
}

static int apply_props(struct device *dev, struct opts *o, char **err)
{
    for (const struct prop_def *p = dev->driver->props; p && p->name; p++) {
        const char *text = opts_get(o, p->name);

        if (!text) {
            text = p->default_value;
        }
        if (text && set_prop(dev, p, text, err) < 0) {
            return -1;
        }
    }
    return 0;
}

void *device_checkpoint(struct device *dev, const char *part, size_t size, bool *restored)
{
    char name[CHECKPOINT_NAME_MAX + 1];
    void *area;

    *restored = false;
    if (dev->n_checkpoints == DEVICE_MAX_CHECKPOINTS ||
        snprintf(name, sizeof(name), "%s/%s", dev->id, part) >= (int)sizeof(name)) {
        return NULL;
    }
    area = checkpoint_area(name, size, restored);
    if (area) {
        dev->checkpoints[dev->n_checkpoints++] = area;
    }
    return area;
}

static void release_checkpoints(struct device *dev)
{
    for (size_t i = 0; i < dev->n_checkpoints; i++) {
        checkpoint_release(dev->checkpoints[i]);
    }
    dev->n_checkpoints = 0;
}

/* The configuration space the VMM programmed (BARs, COMMAND) outlives the process. */
static void keep_pci_config(struct device *dev)
{
    bool restored;
    uint8_t *area = device_checkpoint(dev, "pci", PCI_CONFIG_SIZE, &restored);

    if (!pci_config_keep_in(dev->pci, area, restored) && restored) {
        log_warn("%s: configuration space in the checkpoint is not this device's; "
                 "starting from power-on", dev->id);
    }
}

struct device *device_create(struct device_ctx *ctx, struct opts *o, char **err)
{
    const char *name = opts_get(o, "driver");
    const char *id = opts_get(o, "id");
    const struct device_driver *drv;
    struct device *dev;

    if (!name) {
        error_setf(err, "-device needs a driver name");
        return NULL;
    }
    drv = device_driver_find(name);
    if (!drv) {
        error_setf(err, "'%s' is not a valid device model name (try -device help)", name);
        return NULL;
    }
    if (!id || !*id) {
        error_setf(err, "device '%s' needs an id (id=...)", name);
        return NULL;
    }
    dev = calloc(1, drv->instance_size);
    if (!dev || !(dev->id = strdup(id))) {
        free(dev);
        error_setf(err, "out of memory");
        return NULL;
    }
    dev->driver = drv;
    if (apply_props(dev, o, err) < 0 || opts_check_all_used(o, name, err) < 0 ||
        drv->realize(dev, ctx, err) < 0) {
        error_prefix(err, "device '%s'", id);
        release_checkpoints(dev);
        free_props(dev);
        free(dev->id);
        free(dev);
        return NULL;
    }
    if (dev->pci) {
        keep_pci_config(dev);
    }
    return dev;
}

void device_serve(struct device *dev, struct device_ctx *ctx)
{
    if (dev->driver->serve) {
        dev->driver->serve(dev, ctx);
    }
}

void device_destroy(struct device *dev)
{
    if (!dev) {
        return;
    }
    if (dev->driver->unrealize) {
        dev->driver->unrealize(dev);
    }
    release_checkpoints(dev);
    free_props(dev);
    free(dev->id);
    free(dev);
}
