/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Device drivers of the remote process, as QEMU's -device knows them.
 * A driver declares its properties in a table; the same table parses
 * "-device DRIVER,prop=value" and prints "-device DRIVER,help".
 *
 * Each device model registers its drivers itself (DEVICE_DRIVERS below);
 * this registry names none.  Which models are built in is meson.build's
 * device_models list.
 */
#ifndef MPQEMU_HW_DEVICE_H
#define MPQEMU_HW_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct opts;
struct loop;
struct pci_device;

enum prop_type { PROP_STRING, PROP_BOOL, PROP_UINT, PROP_SIZE };

struct prop_def {
    const char *name;
    enum prop_type type;
    size_t offset;          /* of a char *, bool or uint64_t in the instance */
    uint64_t max;           /* PROP_UINT and PROP_SIZE */
    const char *default_value;
    const char *help;
};

struct drive;
struct drive_spec;
struct block_backend;

/* What a device may use of the process while it is created. */
struct device_ctx {
    struct loop *loop;
    /* The drive named by a drive= property, or NULL. */
    struct drive *(*find_drive)(void *opaque, const char *id);
    /*
     * For a restart: opens the medium a previous process held and adds it
     * to the process's drives (only from serve(): confined, as a monitor's
     * medium change opens it); closes one the device will not hold (the
     * command line's, when the medium was changed or ejected).  NULL: none.
     */
    struct drive *(*open_drive)(void *opaque, const struct drive_spec *spec, char **err);
    void (*close_drive)(void *opaque, struct drive *d);
    void *opaque;
};

enum { DEVICE_MAX_CHECKPOINTS = 4 };

struct device {
    const struct device_driver *driver;
    char *id;
    struct pci_device *pci;     /* set by PCI functions when realized */
    struct block_backend *blk;  /* set by block devices when realized: their medium's */
    void *checkpoints[DEVICE_MAX_CHECKPOINTS];     /* areas it keeps state in */
    size_t n_checkpoints;
};

struct device_driver {
    const char *name;
    const char *desc;
    size_t instance_size;       /* begins with struct device */
    const struct prop_def *props;   /* ends with a zeroed entry */
    const char *child_bus;      /* the kind of bus ID.0 it gives its children ("SCSI"), or NULL */
    int (*realize)(struct device *dev, struct device_ctx *ctx, char **err);
    /*
     * Setup is done and the process confined as it will serve (its sandbox
     * entered, docs/sandbox.md): what the device opens here, it opens with
     * the rights a monitor's command has (a restarted disk's kept medium).
     * NULL: nothing to do.
     */
    void (*serve)(struct device *dev, struct device_ctx *ctx);
    void (*unrealize)(struct device *dev);
};

/*
 * Makes drv known to -device; a second driver of the same name, or more
 * drivers than the registry holds, is a programming error and aborts.
 */
void device_driver_register(const struct device_driver *drv);
/*
 * A model's registration, once per file: DEVICE_DRIVERS(&a_driver, &b_driver);
 * runs before main(), in the order given.
 */
#define DEVICE_DRIVERS(...)                                                                 \
    __attribute__((constructor)) static void register_device_drivers(void)                 \
    {                                                                                      \
        static const struct device_driver *const list[] = { __VA_ARGS__ };                \
        for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {                      \
            device_driver_register(list[i]);                                               \
        }                                                                                  \
    }

/*
 * Memory for state that survives a restart of the process (util/checkpoint.h):
 * 'size' bytes named after the device and 'part', zeroed on the first start,
 * as the previous process left them when *restored.  Plain data only, checked
 * by the device before use.  NULL when out of room; released with the device.
 * A PCI function's configuration space is kept there by device_create().
 */
void *device_checkpoint(struct device *dev, const char *part, size_t size, bool *restored);

const struct device_driver *device_driver_find(const char *name);
/* A property's current value as text ("" for an unset string); malloc'd. */
char *device_prop_text(const struct device *dev, const struct prop_def *p);
/* QOM's type name of a property: "str", "bool", "uint64", "size". */
const char *device_prop_type(const struct prop_def *p);
void device_print_drivers(FILE *out);
void device_print_props(const struct device_driver *drv, FILE *out);

/*
 * Creates a device from "-device" options: "driver" and "id" are required,
 * every other key must be a property of the driver.
 */
struct device *device_create(struct device_ctx *ctx, struct opts *o, char **err);
void device_destroy(struct device *dev);
/* The process is confined and about to serve: the driver's serve(), once per device. */
void device_serve(struct device *dev, struct device_ctx *ctx);

#endif
