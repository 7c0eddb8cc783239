// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The LSI53C895A in-process, as a hostile guest and VMM drive it: the
 * input is a list of operations on one fresh remote (fuzz-vm.h) -- register
 * accesses on BAR0/BAR1, SCRIPTS RAM and config space, guest memory
 * written with SCRIPTS programs, commands, messages and parameter lists
 * (lsi-gen.h), rounds of the event loop so that bottom halves and io_uring
 * completions interleave with the accesses, device resets, guest memory
 * remapped, truncated and grown back, and monitor commands (eject,
 * blockdev-change-medium, block_resize, system_reset) run through QMP's
 * command table.
 *
 * Guest memory is a memfd mapped as the device's DMA space, as a transport
 * maps the VMM's; part of it can be memory only "the VMM" reaches (the
 * dma_remote path vfio-user uses), which the harness serves.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/aio.h"
#include "fuzz-common.h"
#include "fuzz-vm.h"
#include "lsi-gen.h"
#include "monitor/monitor.h"
#include "pci/dma.h"
#include "pci/pci.h"

enum {
    MAX_OPS = 512,
    REMOTE_BYTES = 64 << 10,
    AT_4G_BYTES = 4096,         /* LAYOUT_TOP_ALIAS: the page at 4 GiB, only the VMM reaches */
    SHIFT = 4096,               /* the "shifted" layout maps the file from this offset */
    SETTLE_ROUNDS = 8,          /* looping SCRIPTS run 4096 instructions (or copy 4 MiB) a round */
};

/* How guest memory is laid out, and how the harness reaches each part. */
/*
 * LAYOUT_TOP_ALIAS: flat, RAM's last page seen again below 4 GiB (a 32-bit
 * DNAD wraps there) and a page at 4 GiB that only the VMM reaches (a 64-bit
 * address runs on into it: its carry into DNAD64, through a bounce buffer).
 * LAYOUT_PAGES: a region per page up to the remote tail, as a VMM mapping
 * guest memory in many small pieces: a data move over more than 16 of them
 * is mapped and moved in parts, the last one bounced where the tail begins.
 */
enum layout { LAYOUT_FLAT, LAYOUT_SPLIT, LAYOUT_REMOTE_TAIL, LAYOUT_SHIFTED, LAYOUT_NONE,
              LAYOUT_TOP_ALIAS, LAYOUT_PAGES, LAYOUTS };

enum { PAGE_REGIONS = (LSI_RAM_BYTES - REMOTE_BYTES) / 4096 };

/* Does the layout leave the last REMOTE_BYTES of RAM to the VMM? */
static bool remote_tail(enum layout layout)
{
    return layout == LAYOUT_REMOTE_TAIL || layout == LAYOUT_PAGES;
}

struct guest {
    int memfd;
    enum layout layout;
    uint64_t split;             /* LAYOUT_SPLIT: where the second region starts */
    struct dma_space dma;
    uint8_t remote[REMOTE_BYTES];   /* LAYOUT_REMOTE_TAIL: the last REMOTE_BYTES of RAM */
    uint8_t at_4g[AT_4G_BYTES];     /* LAYOUT_TOP_ALIAS: the page at 4 GiB */
    bool remote_refuses;        /* the "VMM" fails its copies */
};

struct world {
    struct fuzz_vm vm;
    struct guest guest;
    struct lsi_gen gen;
    uint32_t code;              /* the last program's address */
    unsigned irqs;
};

static int memfd = -1;

/* --- guest memory ------------------------------------------------------------ */

static uint64_t file_size(const struct guest *g)
{
    off_t end = lseek(g->memfd, 0, SEEK_END);

    return end < 0 ? 0 : (uint64_t)end;
}

/* Writes guest RAM as the VMM would, never growing a truncated file back. */
static void guest_write(struct guest *g, uint32_t gpa, const void *data, size_t len)
{
    uint64_t off, size = file_size(g);

    if (gpa >= LSI_RAM_BYTES) {
        return;
    }
    len = len < LSI_RAM_BYTES - gpa ? len : LSI_RAM_BYTES - gpa;
    if (remote_tail(g->layout) && gpa + len > LSI_RAM_BYTES - REMOTE_BYTES) {
        size_t in_file = gpa < LSI_RAM_BYTES - REMOTE_BYTES
                             ? LSI_RAM_BYTES - REMOTE_BYTES - gpa : 0;

        memcpy(g->remote + (gpa + in_file - (LSI_RAM_BYTES - REMOTE_BYTES)),
               (const uint8_t *)data + in_file, len - in_file);
        len = in_file;
    }
    off = gpa + (g->layout == LAYOUT_SHIFTED ? SHIFT : 0);
    if (off < size) {
        len = len < size - off ? len : (size_t)(size - off);
        if (pwrite(g->memfd, data, len, (off_t)off) < 0) {
            fuzz_fail("pwrite guest memory: %s", strerror(errno));
        }
    }
}

/* The harness's bytes behind 'len' bytes at 'gpa' in a region only the VMM reaches, or NULL. */
static uint8_t *remote_bytes(struct guest *g, uint64_t gpa, size_t len)
{
    static const uint64_t tail = LSI_RAM_BYTES - REMOTE_BYTES, top = 1ull << 32;

    if (gpa >= top) {
        return gpa - top <= AT_4G_BYTES && len <= AT_4G_BYTES - (gpa - top)
                   ? g->at_4g + (gpa - top) : NULL;
    }
    return gpa >= tail && gpa - tail <= REMOTE_BYTES && len <= REMOTE_BYTES - (gpa - tail)
               ? g->remote + (gpa - tail) : NULL;
}

/* The memory only the VMM reaches: the copies a transport would ask it for. */
static int remote_copy(void *opaque, uint64_t gpa, void *buf, size_t len, bool to_guest)
{
    struct guest *g = opaque;
    uint8_t *at = remote_bytes(g, gpa, len);

    if (g->remote_refuses || !at) {
        return -1;
    }
    if (to_guest) {
        memcpy(at, buf, len);
    } else {
        memcpy(buf, at, len);
    }
    return 0;
}

/* Maps the layout; the old map stays when the file is too short for the new one. */
static void guest_map(struct guest *g, enum layout layout, uint64_t split)
{
    struct dma_map_request req[PAGE_REGIONS] = { { 0 } };  /* gcc -O3 sees n = 0 maps as reading it */
    size_t n = 0;
    char *err = NULL;

    switch (layout) {
    case LAYOUT_FLAT:
        req[n++] = (struct dma_map_request){ 0, LSI_RAM_BYTES, g->memfd, 0 };
        break;
    case LAYOUT_TOP_ALIAS:
        req[n++] = (struct dma_map_request){ 0, LSI_RAM_BYTES, g->memfd, 0 };
        req[n++] = (struct dma_map_request){ (1ull << 32) - 4096, 4096, g->memfd,
                                             LSI_RAM_BYTES - 4096 };
        break;
    case LAYOUT_SPLIT:
        req[n++] = (struct dma_map_request){ 0, split, g->memfd, 0 };
        req[n++] = (struct dma_map_request){ split, LSI_RAM_BYTES - split, g->memfd,
                                             (int64_t)split };
        break;
    case LAYOUT_REMOTE_TAIL:
        req[n++] = (struct dma_map_request){ 0, LSI_RAM_BYTES - REMOTE_BYTES, g->memfd, 0 };
        break;
    case LAYOUT_SHIFTED:
        req[n++] = (struct dma_map_request){ 0, LSI_RAM_BYTES, g->memfd, SHIFT };
        break;
    case LAYOUT_PAGES:
        for (uint64_t gpa = 0; n < PAGE_REGIONS; gpa += 4096) {
            req[n++] = (struct dma_map_request){ gpa, 4096, g->memfd, (int64_t)gpa };
        }
        break;
    default:
        break;
    }
    if (dma_space_replace(&g->dma, req, n, &err) < 0) {
        free(err);
        return;
    }
    g->layout = layout;
    g->split = split;
    if (remote_tail(layout) || layout == LAYOUT_TOP_ALIAS) {
        struct dma_map_request remote = { LSI_RAM_BYTES - REMOTE_BYTES, REMOTE_BYTES, -1, 0 };

        if (layout == LAYOUT_TOP_ALIAS) {
            remote = (struct dma_map_request){ 1ull << 32, AT_4G_BYTES, -1, 0 };
        }
        if (dma_space_map(&g->dma, &remote, &err) < 0) {
            fuzz_fail("mapping the remote region: %s", err);
        }
    }
}

static void guest_init(struct guest *g)
{
    memset(g, 0, sizeof(*g));
    if (memfd < 0 && (memfd = memfd_create("fuzz-guest-ram", MFD_CLOEXEC)) < 0) {
        fuzz_fail("memfd_create: %s", strerror(errno));
    }
    g->memfd = memfd;
    /* Zero it: the previous input's data goes with the pages. */
    if (ftruncate(memfd, 0) < 0 || ftruncate(memfd, LSI_RAM_BYTES + SHIFT) < 0) {
        fuzz_fail("ftruncate: %s", strerror(errno));
    }
    dma_space_init(&g->dma);
    g->dma.remote = (struct dma_remote){ .copy = remote_copy, .opaque = g };
    guest_map(g, LAYOUT_FLAT, 0);
}

/* Changes under the device: a new map, a file cut short or grown back, a VMM that refuses. */
static void op_memory(struct world *w, struct fuzz_input *in)
{
    static const uint64_t sizes[] = {
        0, 1, 4096, 8192, 64 << 10, (128 << 10) + 512, (192 << 10) - 4096, LSI_RAM_BYTES,
    };
    uint8_t what = fi_u8(in);

    switch (what % 4) {
    case 0: {
        enum layout layout = (enum layout)(fi_u8(in) % LAYOUTS);
        uint64_t split = (1 + fi_u8(in) % (LSI_RAM_BYTES / 4096 - 1)) * 4096ull;

        guest_map(&w->guest, layout, split);
        break;
    }
    case 1:
        if (ftruncate(w->guest.memfd, (off_t)FI_PICK(in, sizes)) < 0) {
            fuzz_fail("ftruncate: %s", strerror(errno));
        }
        break;
    case 2:
        if (ftruncate(w->guest.memfd, LSI_RAM_BYTES + SHIFT) < 0) {
            fuzz_fail("ftruncate: %s", strerror(errno));
        }
        break;
    default:
        w->guest.remote_refuses = !w->guest.remote_refuses;
        break;
    }
}

/* --- the chip's BARs, reached as a transport reaches them --------------------- */

static void bar_write(struct world *w, bool memory, uint32_t addr, uint64_t val, unsigned size)
{
    uint64_t off;
    int bar = pci_bar_find(w->vm.lsi, memory, addr, size, &off);

    if (bar >= 0) {
        pci_bar_write(w->vm.lsi, bar, off, val, size);
    }
}

static void bar_read(struct world *w, bool memory, uint32_t addr, unsigned size)
{
    uint64_t off;
    int bar = pci_bar_find(w->vm.lsi, memory, addr, size, &off);

    if (bar >= 0) {
        pci_bar_read(w->vm.lsi, bar, off, size);
    }
}

/* Where the generator puts bytes: guest RAM, or SCRIPTS RAM a dword at a time. */
static void gen_write(void *opaque, uint32_t addr, const void *data, size_t len)
{
    struct world *w = opaque;
    const uint8_t *p = data;

    if (addr < LSI_RAM_BYTES) {
        guest_write(&w->guest, addr, data, len);
        return;
    }
    if (addr < LSI_SRAM_BASE || addr - LSI_SRAM_BASE >= LSI_SRAM_BYTES) {
        return;
    }
    for (size_t i = 0; i + 4 <= len; i += 4) {
        uint32_t v = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 |
                     (uint32_t)p[i + 3] << 24;

        bar_write(w, true, addr + (uint32_t)i, v, 4);
    }
}

/* A register access on BAR1 (memory) or BAR0 (I/O). */
static void op_register(struct world *w, struct fuzz_input *in, bool write)
{
    static const uint64_t sizes[] = { 1, 1, 2, 4, 4, 8 };
    uint8_t how = fi_u8(in);
    bool memory = how & 1;
    unsigned reg = lsi_gen_register(&w->gen), size = (unsigned)FI_PICK(in, sizes);
    uint32_t addr = (memory ? LSI_MMIO_BASE : LSI_IO_BASE) + reg;

    if (write) {
        bar_write(w, memory, addr, fi_u64(in), size);
    } else {
        bar_read(w, memory, addr, size);
    }
}

/*
 * Starts SCRIPTS: DSP written whole (its top byte starts them) at the last
 * program, one of its instructions (a restart in the middle), or anywhere.
 */
static void op_start(struct world *w, struct fuzz_input *in)
{
    uint8_t how = fi_u8(in);
    uint32_t dsp;

    switch (how % 4) {
    case 0:
        dsp = w->code;
        break;
    case 1:
        dsp = lsi_gen_restart_address(&w->gen, w->code);
        break;
    case 2:
        dsp = lsi_gen_code_address(&w->gen);
        break;
    default:
        dsp = lsi_gen_address(&w->gen);
        break;
    }
    if (how & 4) {
        bar_write(w, false, LSI_IO_BASE + 0x2c, dsp, 4);
    } else {
        bar_write(w, true, LSI_MMIO_BASE + 0x2c, dsp, 4);
    }
}

/*
 * Where a driver's recovery restarts SCRIPTS: where they stopped (DSP, read
 * back), at the instruction they stopped in (DSP - 8: the move again), or
 * elsewhere in the program.
 */
static uint32_t recovery_address(struct world *w, struct fuzz_input *in)
{
    uint64_t off;
    uint32_t dsp = pci_bar_find(w->vm.lsi, true, LSI_MMIO_BASE + 0x2c, 4, &off) == 1
                       ? (uint32_t)pci_bar_read(w->vm.lsi, 1, off, 4) : w->code;

    switch (fi_u8(in) % 4) {
    case 0:
        return dsp;
    case 1:
        return dsp - 8;
    default:
        return lsi_gen_restart_address(&w->gen, w->code);
    }
}

/*
 * What a driver's error handling does: abort SCRIPTS, reset the chip or
 * signal it (ISTAT0), read the interrupt status, and restart SCRIPTS --
 * at any moment, a transfer in flight included.
 */
static void op_recover(struct world *w, struct fuzz_input *in)
{
    static const uint64_t istat0[] = { 0x80, 0x40, 0x20, 0x04, 0xa0, 0x00 };
    uint8_t how = fi_u8(in);

    bar_write(w, true, LSI_MMIO_BASE + 0x14, FI_PICK(in, istat0), 1);
    if (how & 1) {
        bar_read(w, true, LSI_MMIO_BASE + 0x0c, 1);     /* DSTAT */
        bar_read(w, true, LSI_MMIO_BASE + 0x42, 2);     /* SIST0, SIST1 */
    }
    if (how & 2) {
        bar_write(w, true, LSI_MMIO_BASE + 0x2c, recovery_address(w, in), 4);
    }
}

static void op_program(struct world *w, struct fuzz_input *in, bool recipe)
{
    uint8_t how = fi_u8(in);

    w->code = lsi_gen_code_address(&w->gen);
    if (recipe) {
        uint32_t dsa = lsi_gen_recipe(&w->gen, w->code);

        bar_write(w, true, LSI_MMIO_BASE + 0x10, dsa, 4);
    } else {
        lsi_gen_script(&w->gen, w->code);
    }
    if (how % 4) {
        bar_write(w, true, LSI_MMIO_BASE + 0x2c, w->code, 4);
    }
}

static void op_config(struct world *w, struct fuzz_input *in)
{
    static const uint64_t sizes[] = { 1, 2, 4 };
    uint8_t how = fi_u8(in);
    uint32_t off = fi_u8(in), size = (uint32_t)FI_PICK(in, sizes);

    if (!pci_config_access_valid(off, size)) {
        return;
    }
    if (how & 1) {
        pci_config_write(w->vm.lsi, off, fi_u32(in), size);
    } else {
        pci_config_read(w->vm.lsi, off, size);
    }
}

static void op_guest_bytes(struct world *w, struct fuzz_input *in)
{
    uint8_t buf[256];
    uint32_t addr = lsi_gen_address(&w->gen);
    size_t len = 1 + fi_u8(in) % sizeof(buf);

    fi_bytes(in, buf, len);
    gen_write(w, addr, buf, len);
}

static void op_command_bytes(struct world *w, struct fuzz_input *in)
{
    uint8_t what = fi_u8(in), buf[16];
    uint32_t addr = lsi_gen_address(&w->gen);

    switch (what % 3) {
    case 0:
        gen_write(w, addr, buf, lsi_gen_cdb(&w->gen, buf));
        break;
    case 1:
        gen_write(w, addr, buf, lsi_gen_msgout(&w->gen, buf, sizeof(buf)));
        break;
    default:
        lsi_gen_params(&w->gen, addr);
        break;
    }
}

/* --- the host's side ---------------------------------------------------------- */

static void add_str(struct json_object *o, const char *key, const char *v)
{
    json_object_object_add(o, key, json_object_new_string(v));
}

/* The answer of an eject that waited for its medium's I/O: nobody reads it. */
static void answer_dropped(struct qmp_later *l, struct json_object *ret, struct qmp_error *e)
{
    json_object_put(ret);
    free(e->desc);
    free(l);
}

/* Runs a command; an eject or medium change may wait for the guest's I/O in flight. */
static void run_qmp(struct world *w, const char *cmd, struct json_object *args)
{
    struct qmp_later *later = malloc(sizeof(*later));
    struct qmp_error e = { 0 };
    struct json_object *ret;

    if (later) {
        *later = (struct qmp_later){ answer_dropped };
    }
    ret = qmp_run_later(&w->vm.mon, cmd, args, &e, later);
    json_object_put(args);
    if (!ret && !e.cls) {
        return;     /* answer_dropped() frees it all */
    }
    free(later);
    json_object_put(ret);
    free(e.desc);
}

/* A disk named by qdev id or by its drive. */
static void add_disk(struct json_object *args, struct fuzz_input *in)
{
    static const char *const disks[] = FUZZ_DISKS, *const drives[] = FUZZ_DRIVES;
    uint8_t pick = fi_u8(in);

    if (pick & 1) {
        add_str(args, "id", disks[(pick >> 1) % 5]);
    } else {
        add_str(args, "device", drives[(pick >> 1) % 4]);
    }
}

static void qmp_change_medium(struct world *w, struct fuzz_input *in)
{
    static const char *const media[] = FUZZ_MEDIA, *const formats[] = { "raw", "qcow2" };
    static const char *const modes[] = { "retain", "read-only", "read-write" };
    struct json_object *args = json_object_new_object();
    uint8_t how = fi_u8(in);

    add_disk(args, in);
    add_str(args, "filename", media[fi_u8(in) % 6]);
    if (how & 1) {
        add_str(args, "format", formats[(how >> 1) & 1]);
    }
    if (how & 4) {
        add_str(args, "read-only-mode", modes[(how >> 3) % 3]);
    }
    json_object_object_add(args, "force", json_object_new_boolean(how & 0x40));
    run_qmp(w, "blockdev-change-medium", args);
}

static void qmp_resize(struct world *w, struct fuzz_input *in)
{
    static const char *const names[] = { "d0", "d1", "d2", "d3", "cd1" };
    static const uint64_t sizes[] = {
        512, 4096, 64 << 10, 128 << 10, 256 << 10, (256 << 10) + 512, 512 << 10, 1 << 20,
        4 << 20, 1000,
    };
    struct json_object *args = json_object_new_object();

    add_str(args, "node-name", names[fi_u8(in) % 5]);
    json_object_object_add(args, "size", json_object_new_int64((int64_t)FI_PICK(in, sizes)));
    run_qmp(w, "block_resize", args);
}

static void op_monitor(struct world *w, struct fuzz_input *in)
{
    struct json_object *args;

    switch (fi_u8(in) % 6) {
    case 0:
        args = json_object_new_object();
        add_disk(args, in);
        json_object_object_add(args, "force", json_object_new_boolean(fi_bool(in)));
        run_qmp(w, "eject", args);
        break;
    case 1:
        qmp_change_medium(w, in);
        break;
    case 2:
        qmp_resize(w, in);
        break;
    case 3:
        run_qmp(w, "system_reset", NULL);
        break;
    case 4:
        run_qmp(w, "query-block", NULL);
        break;
    default:
        run_qmp(w, "query-blockstats", json_object_new_object());
        break;
    }
}

/* --- the operations ------------------------------------------------------------ */

enum op {
    OP_SCRIPT, OP_RECIPE, OP_START, OP_REG_WRITE, OP_REG_READ, OP_CONFIG, OP_GUEST_BYTES,
    OP_COMMAND_BYTES, OP_LOOP, OP_SETTLE, OP_WAIT_IO, OP_RESET, OP_MONITOR, OP_MEMORY,
    OP_RECOVER, OP_COUNT
};

static void op_loop(struct world *w, struct fuzz_input *in)
{
    unsigned rounds = 1 + fi_u8(in) % 4;

    for (unsigned i = 0; i < rounds; i++) {
        fuzz_vm_step(&w->vm);
    }
}

/* Waits for a disk request to finish, if one is in flight, and runs what follows it. */
static void op_wait_io(struct world *w)
{
    if (aio_in_flight(w->vm.aio)) {
        fuzz_vm_settle(&w->vm, 2);
    }
}

static void op_reset(struct world *w, struct fuzz_input *in)
{
    pci_device_reset(w->vm.lsi);
    if (fi_bool(in)) {
        fuzz_vm_firmware(&w->vm);
    }
}

static const char *const op_names[] = {
    "script", "recipe", "start", "reg-write", "reg-read", "config", "guest-bytes",
    "command-bytes", "loop", "settle", "wait-io", "reset", "monitor", "memory", "recover",
};

/* MPQEMU_FUZZ_TRACE: each operation and the chip's state after it (reads without side effects). */
static void trace(struct world *w, enum op op)
{
    static int enabled = -1;
    uint64_t off;

    if (enabled < 0) {
        enabled = getenv("MPQEMU_FUZZ_TRACE") != NULL;
    }
    if (!enabled || pci_bar_find(w->vm.lsi, true, LSI_MMIO_BASE, 4, &off) != 1) {
        return;
    }
    fprintf(stderr, "%-14s ISTAT0 %02x ISTAT1 %02x SSTAT1 %02x SCNTL1 %02x DSP %08x DSA %08x"
            " irqs %u io %u\n", op_names[op],
            (unsigned)pci_bar_read(w->vm.lsi, 1, 0x14, 1), (unsigned)pci_bar_read(w->vm.lsi, 1, 0x15, 1),
            (unsigned)pci_bar_read(w->vm.lsi, 1, 0x0e, 1), (unsigned)pci_bar_read(w->vm.lsi, 1, 0x01, 1),
            (unsigned)pci_bar_read(w->vm.lsi, 1, 0x2c, 4), (unsigned)pci_bar_read(w->vm.lsi, 1, 0x10, 4),
            w->irqs, aio_in_flight(w->vm.aio));
}

static void run_op(struct world *w, struct fuzz_input *in)
{
    enum op op = (enum op)(fi_u8(in) % OP_COUNT);

    switch (op) {
    case OP_SCRIPT: op_program(w, in, false); break;
    case OP_RECIPE: op_program(w, in, true); break;
    case OP_START: op_start(w, in); break;
    case OP_REG_WRITE: op_register(w, in, true); break;
    case OP_REG_READ: op_register(w, in, false); break;
    case OP_CONFIG: op_config(w, in); break;
    case OP_GUEST_BYTES: op_guest_bytes(w, in); break;
    case OP_COMMAND_BYTES: op_command_bytes(w, in); break;
    case OP_LOOP: op_loop(w, in); break;
    case OP_SETTLE: fuzz_vm_settle(&w->vm, SETTLE_ROUNDS); break;
    case OP_WAIT_IO: op_wait_io(w); break;
    case OP_RESET: op_reset(w, in); break;
    case OP_MONITOR: op_monitor(w, in); break;
    case OP_MEMORY: op_memory(w, in); break;
    case OP_RECOVER: op_recover(w, in); break;
    case OP_COUNT: break;
    }
    trace(w, op);
}

static void count_irq(void *opaque, bool level)
{
    struct world *w = opaque;

    w->irqs += level;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct fuzz_input in;

    fi_init(&in, data, size);
    fuzz_vm_start(&w.vm);
    /* The first byte: whether the guest's driver has taken the power-on unit attentions. */
    if (fi_u8(&in) & 1) {
        fuzz_vm_take_unit_attentions(&w.vm);
    }
    guest_init(&w.guest);
    w.gen = (struct lsi_gen){ .in = &in, .write = gen_write, .opaque = &w };
    w.code = LSI_RAM_BASE;
    w.gen.n_labels = 0;
    w.irqs = 0;
    w.vm.lsi->dma = &w.guest.dma;
    pci_set_intx_sink(w.vm.lsi, &(struct pci_intx_sink){ .set_level = count_irq, .opaque = &w });
    fuzz_vm_firmware(&w.vm);
    for (unsigned n = 0; n < MAX_OPS && !fi_empty(&in); n++) {
        run_op(&w, &in);
    }
    fuzz_vm_quiesce(&w.vm);
    dma_space_clear(&w.guest.dma);
    w.vm.lsi->dma = NULL;
    pci_set_intx_sink(w.vm.lsi, &(struct pci_intx_sink){ 0 });
    fuzz_vm_destroy(&w.vm);
    return 0;
}
