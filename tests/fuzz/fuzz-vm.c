// SPDX-License-Identifier: GPL-2.0-or-later
#include "fuzz-vm.h"

#include <stdlib.h>
#include <string.h>

#include "block/aio.h"
#include "block/drive.h"
#include "fuzz-common.h"
#include "hw/device.h"
#include "lsi-gen.h"
#include "pci/dma.h"
#include "pci/pci.h"
#include "qcow2-image.h"
#include "scsi/bus.h"
#include "util/error.h"
#include "util/loop.h"
#include "util/opts.h"

enum {
    /* Small, so that requests queue in software too. */
    AIO_DEPTH = 8,
    /* How long one round waits for a disk request in flight. */
    IO_WAIT_MS = 200,
    /* After a reset nothing restarts SCRIPTS: this many rounds is a hang. */
    QUIESCE_ROUNDS = 10000,
};

/* --- images ---------------------------------------------------------------- */

static uint8_t *qcow2_bytes(const struct q2img *img, size_t *len)
{
    uint8_t *bytes = q2img_build(img, len);

    if (!bytes) {
        fuzz_fail("cannot build a qcow2 image");
    }
    return bytes;
}

/* hd.qcow2: every kind of cluster, and a backing file shorter than the disk. */
static void write_qcow2_images(void)
{
    static const uint8_t kinds[] = {
        Q2IMG_DATA, Q2IMG_UNALLOCATED, Q2IMG_ZERO, Q2IMG_COMPRESSED, Q2IMG_DATA,
        Q2IMG_ZERO_ALLOCATED, Q2IMG_COMPRESSED, Q2IMG_UNALLOCATED, Q2IMG_DATA,
    };
    static uint8_t *hd, *fresh;
    static size_t hd_len, fresh_len;

    if (!hd) {
        struct q2img img = {
            .version = 3, .cluster_bits = 12, .refcount_order = 4, .size = 512 << 10,
            .backing = "base.raw", .backing_format = "raw", .kinds = kinds,
            .n_kinds = sizeof(kinds),
        };
        struct q2img blank = { .version = 2, .cluster_bits = 9, .refcount_order = 4,
                               .size = 64 << 10 };

        hd = qcow2_bytes(&img, &hd_len);
        fresh = qcow2_bytes(&blank, &fresh_len);
    }
    fuzz_write_file("hd.qcow2", hd, hd_len);
    fuzz_write_file("new.qcow2", fresh, fresh_len);
}

static void write_images(void)
{
    fuzz_write_file("hd.raw", NULL, 256 << 10);
    fuzz_write_file("direct.raw", NULL, 256 << 10);
    fuzz_write_file("base.raw", NULL, 128 << 10);
    fuzz_write_file("cd.iso", NULL, 64 << 10);
    fuzz_write_file("new.iso", NULL, 32 << 10);
    write_qcow2_images();
}

/* --- what the monitors may do (as mpqemu-remote's main.c) ------------------ */

static struct fuzz_vm *vm_of(struct monitor_vm *mon)
{
    return (struct fuzz_vm *)((char *)mon - offsetof(struct fuzz_vm, mon));
}

static void vm_reset(struct monitor_vm *mon)
{
    for (size_t i = 0; i < mon->n_devices; i++) {
        if (mon->devices[i]->pci) {
            pci_device_reset(mon->devices[i]->pci);
        }
    }
}

static void vm_quit(struct monitor_vm *mon)
{
    vm_of(mon)->quit_requested = true;
}

static int vm_add_drive(struct monitor_vm *mon, struct drive *d)
{
    struct drive **grown = realloc(mon->drives, (mon->n_drives + 1) * sizeof(*grown));

    if (!grown) {
        return -1;
    }
    grown[mon->n_drives++] = d;
    mon->drives = grown;
    return 0;
}

static void vm_remove_drive(struct monitor_vm *mon, struct drive *d)
{
    for (size_t i = 0; i < mon->n_drives; i++) {
        if (mon->drives[i] == d) {
            memmove(&mon->drives[i], &mon->drives[i + 1],
                    (mon->n_drives - i - 1) * sizeof(*mon->drives));
            mon->n_drives--;
            break;
        }
    }
    drive_close(d);
}

/* --- building ---------------------------------------------------------------- */

static struct opts *parse(const char *text, const char *implied)
{
    char *err = NULL;
    struct opts *o = opts_parse(text, implied, &err);

    if (!o) {
        fuzz_fail("%s: %s", text, err);
    }
    return o;
}

static void add_drive(struct fuzz_vm *v, const char *id, const char *image, const char *extra)
{
    char path[FUZZ_PATH_MAX], text[512], *err = NULL;
    struct opts *o;
    struct drive *d;

    fuzz_scratch_path(path, image);
    snprintf(text, sizeof(text), "id=%s,file=%s%s", id, path, extra);
    o = parse(text, NULL);
    d = drive_open(o, v->aio, &err);
    opts_free(o);
    if (!d || vm_add_drive(&v->mon, d) < 0) {
        fuzz_fail("drive %s: %s", text, err);
    }
}

static struct drive *find_drive(void *opaque, const char *id)
{
    struct fuzz_vm *v = opaque;

    for (size_t i = 0; i < v->mon.n_drives; i++) {
        if (!strcmp(v->mon.drives[i]->id, id)) {
            return v->mon.drives[i];
        }
    }
    return NULL;
}

/*
 * A medium a checkpoint names (a restart), opened only among the harness's
 * own images: a name with no '/', or one of their paths.
 */
static struct drive *open_kept_drive(void *opaque, const struct drive_spec *spec, char **err)
{
    struct fuzz_vm *v = opaque;
    char dir[FUZZ_PATH_MAX], path[FUZZ_PATH_MAX];
    struct drive_spec inside = *spec;
    const char *name = spec->file;
    struct drive *d;

    fuzz_scratch_path(dir, "");
    if (!strncmp(name, dir, strlen(dir))) {
        name += strlen(dir);
    }
    if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
        error_setf(err, "'%s' is not one of the harness's images", spec->file);
        return NULL;
    }
    fuzz_scratch_path(path, name);
    inside.file = path;
    d = drive_open_spec(&inside, v->aio, err);
    if (d && vm_add_drive(&v->mon, d) < 0) {
        drive_close(d);
        error_setf(err, "out of memory");
        return NULL;
    }
    return d;
}

static void close_drive(void *opaque, struct drive *d)
{
    vm_remove_drive(&((struct fuzz_vm *)opaque)->mon, d);
}

void fuzz_vm_add_device(struct fuzz_vm *v, const char *text)
{
    struct device_ctx ctx = { .loop = v->loop, .find_drive = find_drive,
                              .open_drive = open_kept_drive, .close_drive = close_drive,
                              .opaque = v };
    struct opts *o = parse(text, "driver");
    char *err = NULL;
    struct device *dev = device_create(&ctx, o, &err);
    struct device **grown;

    opts_free(o);
    grown = dev ? realloc(v->mon.devices, (v->mon.n_devices + 1) * sizeof(*grown)) : NULL;
    if (!grown) {
        fuzz_fail("device %s: %s", text, err);
    }
    grown[v->mon.n_devices++] = dev;
    v->mon.devices = grown;
    device_serve(dev, &ctx);    /* no sandbox here: kept media open among the images above */
}

/* Disk transfers land before guest memory is unmapped, as in mpqemu-remote. */
static void finish_io(void *opaque)
{
    aio_drain(opaque);
}

void fuzz_vm_start(struct fuzz_vm *v)
{
    fuzz_process_init();
    memset(v, 0, sizeof(*v));
    write_images();
    fuzz_loop_new(&v->loop, &v->aio, AIO_DEPTH);
    dma_set_quiesce(&(struct dma_quiesce){ .fn = finish_io, .opaque = v->aio });
    v->mon = (struct monitor_vm){ .name = "fuzz", .aio = v->aio, .reset = vm_reset,
                                  .quit = vm_quit, .add_drive = vm_add_drive,
                                  .remove_drive = vm_remove_drive };
    add_drive(v, "d0", "hd.raw", ",format=raw");
    add_drive(v, "d1", "hd.qcow2", ",format=qcow2");
    add_drive(v, "d2", "direct.raw", ",format=raw,cache=none");
    add_drive(v, "d3", "cd.iso", ",format=raw,readonly=on");
    /*
     * A SCRIPTS loop that never touches the bus ends in an unexpected
     * disconnect after 8 rounds of 4096 instructions (fuzz-lsi's settle),
     * not after 256, nor after 4 GiB copied.
     */
    fuzz_vm_add_device(v, "lsi53c895a,id=lsi0,x-insn-without-progress=32768");
    fuzz_vm_add_device(v, "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0,removable=on");
    fuzz_vm_add_device(v, "scsi-hd,id=sd1,drive=d1,bus=lsi0.0,scsi-id=1");
    fuzz_vm_add_device(v, "scsi-hd,id=sd2,drive=d2,bus=lsi0.0,scsi-id=2,logical_block_size=4096");
    fuzz_vm_add_device(v, "scsi-cd,id=cd0,drive=d3,bus=lsi0.0,scsi-id=3");
    fuzz_vm_add_device(v, "scsi-cd,id=cd1,bus=lsi0.0,scsi-id=4");
    v->lsi = v->mon.devices[0]->pci;
    /* Tray moves and I/O errors become QMP events, as in mpqemu-remote. */
    monitor_watch_block_devices(&v->mon);
}

/* --- running ------------------------------------------------------------------ */

void fuzz_vm_step(struct fuzz_vm *v)
{
    loop_run_once(v->loop, 0);
}

bool fuzz_vm_settle(struct fuzz_vm *v, unsigned max_rounds)
{
    for (unsigned i = 0; i < max_rounds; i++) {
        bool io = aio_in_flight(v->aio) > 0;

        if (loop_run_once(v->loop, io ? IO_WAIT_MS : 0) == 0 && !aio_in_flight(v->aio)) {
            return true;
        }
    }
    return false;
}

void fuzz_vm_quiesce(struct fuzz_vm *v)
{
    pci_device_reset(v->lsi);
    if (!fuzz_vm_settle(v, QUIESCE_ROUNDS)) {
        fuzz_fail("the loop is still busy %d rounds after a device reset", QUIESCE_ROUNDS);
    }
}

void fuzz_vm_destroy(struct fuzz_vm *v)
{
    aio_drain(v->aio);
    /* Newest first: a disk leaves its controller's bus before the controller goes. */
    for (size_t i = v->mon.n_devices; i-- > 0;) {
        device_destroy(v->mon.devices[i]);
    }
    for (size_t i = 0; i < v->mon.n_drives; i++) {
        drive_close(v->mon.drives[i]);
    }
    dma_set_quiesce(&(struct dma_quiesce){ 0 });
    aio_engine_free(v->aio);
    loop_free(v->loop);
    free(v->mon.devices);
    free(v->mon.drives);
    memset(v, 0, sizeof(*v));
}

void fuzz_vm_firmware(struct fuzz_vm *v)
{
    pci_config_write(v->lsi, PCI_BASE_ADDRESS_0, LSI_IO_BASE, 4);
    pci_config_write(v->lsi, PCI_BASE_ADDRESS_0 + 4, LSI_MMIO_BASE, 4);
    pci_config_write(v->lsi, PCI_BASE_ADDRESS_0 + 8, LSI_SRAM_BASE, 4);
    pci_config_write(v->lsi, PCI_COMMAND,
                     PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

void fuzz_vm_take_unit_attentions(struct fuzz_vm *v)
{
    struct scsi_bus *bus = scsi_bus_find("lsi0.0");

    (void)v;
    for (unsigned t = 0; bus && t < SCSI_MAX_TARGETS; t++) {
        for (unsigned l = 0; l < SCSI_MAX_LUNS; l++) {
            if (bus->devs[t][l]) {
                scsi_device_set_ua(bus->devs[t][l], SENSE_NO_SENSE);
            }
        }
    }
}
