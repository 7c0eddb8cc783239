// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 through the drive layer (drive_submit), on images the input
 * describes: version, cluster size, refcount width, virtual size, the kind
 * of every guest cluster (unallocated, zero, data, compressed), a backing
 * chain (none, raw, or qcow2 over raw), the cache mode -- made consistent
 * by qcow2-image.c, then maybe corrupted by the input's patches, or given
 * whole as raw bytes.  Then a list of operations: reads, writes, write
 * zeroes, discards, flushes, resizes, the image closed and opened again,
 * loop rounds between them so that requests overlap, and the buffers'
 * memory (a memfd) truncated under them.
 *
 * A shadow copy (a plain buffer) holds every byte the harness wrote, and
 * every read that completes is checked against it, as is the whole disk
 * at the end -- for images the harness made consistent; a corrupted one
 * is only run for crashes.  Bytes a request in flight may change at the
 * same time as another are not checked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "fuzz-common.h"
#include "qcow2-image.h"
#include "util/guarded-copy.h"
#include "util/loop.h"
#include "util/opts.h"

enum {
    MAX_OPS = 256,
    MAX_FLIGHT = 16,
    SLOT = 64 << 10,            /* buffer memory per request in flight */
    MAX_IO = SLOT - 4096,
    BUF_BYTES = MAX_FLIGHT * SLOT,
    MAX_DISK = 4 << 20,         /* virtual size, resizes included */
    MAX_PATCHES = 8,
    SETTLE_ROUNDS = 64,
    IO_WAIT_MS = 200,
};

enum op { OP_READ, OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH, OP_RESIZE, OP_REOPEN, OP_LOOP,
          OP_SETTLE, OP_TRUNCATE, OP_GROW, OP_COUNT };

struct request {
    struct blk_io io;
    struct iovec iov[3];
    struct world *w;
    bool busy;
    enum blk_op op;
    uint64_t offset, len;
    bool unknown;       /* what it writes, or what it read, may be anything */
};

struct world {
    struct loop *loop;
    struct aio_engine *aio;
    struct drive *drive;
    char options[512];
    bool consistent;            /* the harness made the image; checks apply */
    uint8_t *buf;               /* BUF_BYTES of memfd, the requests' memory */
    struct request req[MAX_FLIGHT];
    unsigned next;
    uint8_t shadow[MAX_DISK];
    uint8_t known[MAX_DISK];    /* 1: shadow holds what the disk must read */
    uint64_t known_end;         /* no byte of known is 1 from here on */
    uint64_t checked;           /* bytes compared, for the record */
};

static int buf_fd = -1;

/* --- the images -------------------------------------------------------------- */

static void write_base_raw(void)
{
    static uint8_t *base;
    enum { BASE_BYTES = 1 << 20 };

    if (!base) {
        base = malloc(BASE_BYTES);
        for (size_t i = 0; base && i < BASE_BYTES; i++) {
            base[i] = q2img_pattern(i) ^ 0x5a;
        }
        if (!base) {
            fuzz_fail("out of memory");
        }
    }
    fuzz_write_file("base.raw", base, BASE_BYTES / 2);
}

static void put_image(const char *name, const struct q2img *img)
{
    size_t len;
    uint8_t *bytes = q2img_build(img, &len);

    if (!bytes) {
        fuzz_fail("qcow2 image rejected by its builder");
    }
    fuzz_write_file(name, bytes, len);
    free(bytes);
}

/* Geometry from the input, within what the builder takes. */
static void read_geometry(struct fuzz_input *in, struct q2img *img, uint8_t *kinds, size_t cap)
{
    uint8_t shape = fi_u8(in);

    img->version = shape & 1 ? 3 : 2;
    img->cluster_bits = 9 + fi_u8(in) % 8;
    img->refcount_order = img->version == 3 ? fi_u8(in) % 7 : 4;
    img->size = ((uint64_t)fi_u16(in) % (MAX_DISK / 512 / 2) + 1) * 512;
    if (shape & 2) {
        img->size += fi_u8(in);     /* not a whole number of sectors */
    }
    img->n_kinds = fi_u8(in) % cap;
    fi_bytes(in, kinds, img->n_kinds);
    img->kinds = kinds;
}

/* Backing chain: none, base.raw, or base.qcow2 over base.raw. */
static void write_backing(struct fuzz_input *in, struct q2img *img)
{
    uint8_t kinds[64];
    struct q2img base = { 0 };

    write_base_raw();
    switch (fi_u8(in) % 3) {
    case 0:
        break;
    case 1:
        img->backing = "base.raw";
        img->backing_format = fi_bool(in) ? "raw" : NULL;
        break;
    default:
        read_geometry(in, &base, kinds, sizeof(kinds));
        base.backing = "base.raw";
        base.backing_format = "raw";
        put_image("base.qcow2", &base);
        img->backing = "base.qcow2";
        img->backing_format = fi_bool(in) ? "qcow2" : NULL;
        break;
    }
}

/* The input's corruption: bytes overwritten in the image file. */
static bool patch_image(struct fuzz_input *in)
{
    char path[FUZZ_PATH_MAX];
    unsigned n = fi_u8(in) % (MAX_PATCHES + 1);
    FILE *f;

    if (n == 0) {
        return false;
    }
    fuzz_scratch_path(path, "disk.qcow2");
    f = fopen(path, "r+b");
    if (!f) {
        fuzz_fail("%s: %s", path, strerror(errno));
    }
    fseek(f, 0, SEEK_END);
    for (unsigned i = 0; i < n; i++) {
        long size = ftell(f) > 0 ? ftell(f) : 1;
        long at = (long)(fi_u32(in) % (uint32_t)size);
        uint8_t bytes[16];
        size_t len = 1 + fi_u8(in) % sizeof(bytes);

        fi_bytes(in, bytes, len);
        fseek(f, at, SEEK_SET);
        fwrite(bytes, 1, len, f);
        fseek(f, 0, SEEK_END);
    }
    fclose(f);
    return true;
}

/* The image under test: built (and maybe corrupted), or the input's own bytes. */
static void make_image(struct world *w, struct fuzz_input *in)
{
    static const char *const caches[] = { "writeback", "writethrough", "none", "directsync" };
    uint8_t mode = fi_u8(in), kinds[256], raw[4096];
    struct q2img img = { 0 };
    char path[FUZZ_PATH_MAX];

    if (mode % 8 == 7) {
        size_t len = fi_u16(in) % sizeof(raw);

        fi_bytes(in, raw, len);
        write_base_raw();
        fuzz_write_file("disk.qcow2", raw, len);
        w->consistent = false;
    } else {
        read_geometry(in, &img, kinds, sizeof(kinds));
        write_backing(in, &img);
        put_image("disk.qcow2", &img);
        w->consistent = !patch_image(in);
    }
    fuzz_scratch_path(path, "disk.qcow2");
    snprintf(w->options, sizeof(w->options), "id=disk,file=%s,format=qcow2,cache=%s", path,
             caches[(mode >> 3) % 4]);
}

static bool open_drive(struct world *w)
{
    char *err = NULL;
    struct opts *o = opts_parse(w->options, NULL, &err);

    if (!o) {
        fuzz_fail("%s: %s", w->options, err);
    }
    w->drive = drive_open(o, w->aio, &err);
    opts_free(o);
    free(err);
    if (w->drive && w->drive->size > MAX_DISK) {
        w->consistent = false;      /* larger than the shadow: crashes only */
    }
    return w->drive != NULL;
}

/* --- requests and the shadow --------------------------------------------------- */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static bool writes(enum blk_op op)
{
    return op == BLK_WRITE || op == BLK_WRITE_ZEROES || op == BLK_DISCARD;
}

/* Overlapping requests in flight make each other's bytes unknown (any order may win). */
static void mark_contention(struct world *w, struct request *r)
{
    for (unsigned i = 0; i < MAX_FLIGHT; i++) {
        struct request *o = &w->req[i];

        if (o != r && o->busy && (writes(o->op) || writes(r->op)) &&
            overlaps(o->offset, o->len, r->offset, r->len)) {
            o->unknown = r->unknown = true;
        }
    }
}

static void forget(struct world *w, uint64_t offset, uint64_t len)
{
    if (offset < MAX_DISK) {
        memset(w->known + offset, 0, len < MAX_DISK - offset ? len : MAX_DISK - offset);
    }
}

/* Compares what a read returned with what the harness wrote there. */
static void check_read(struct world *w, struct request *r)
{
    uint8_t *got = malloc(r->len);

    if (!got || iov_to_buf(r->iov, 3, 0, got, r->len) < 0) {
        free(got);
        return;     /* the buffer's memory went away: nothing to compare */
    }
    /* Run by run of known bytes: memcmp, then the first difference if any. */
    for (uint64_t i = 0, end = r->offset < MAX_DISK ? MAX_DISK - r->offset : 0;
         i < r->len && i < end;) {
        const uint8_t *k = w->known + r->offset, *start = memchr(k + i, 1, end - i), *stop;
        uint64_t from, to;

        if (!start || (uint64_t)(start - k) >= r->len) {
            break;
        }
        from = (uint64_t)(start - k);
        stop = memchr(start, 0, (r->len < end ? r->len : end) - from);
        to = stop ? (uint64_t)(stop - k) : (r->len < end ? r->len : end);
        if (memcmp(got + from, w->shadow + r->offset + from, to - from)) {
            while (got[from] == w->shadow[r->offset + from]) {
                from++;
            }
            fuzz_fail("qcow2 read at %llu (request %llu+%llu) returned 0x%02x, "
                      "the harness wrote 0x%02x there",
                      (unsigned long long)(r->offset + from), (unsigned long long)r->offset,
                      (unsigned long long)r->len, got[from], w->shadow[r->offset + from]);
        }
        w->checked += to - from;
        i = to;
    }
    free(got);
}

static void record_write(struct world *w, struct request *r)
{
    uint8_t *data = r->op == BLK_WRITE ? malloc(r->len) : NULL;

    if (r->unknown || r->offset + r->len > MAX_DISK ||
        (r->op == BLK_WRITE && (!data || iov_to_buf(r->iov, 3, 0, data, r->len) < 0))) {
        forget(w, r->offset, r->len);
        free(data);
        return;
    }
    if (data) {
        memcpy(w->shadow + r->offset, data, r->len);
    } else {
        memset(w->shadow + r->offset, 0, r->len);
    }
    memset(w->known + r->offset, 1, r->len);
    if (r->offset + r->len > w->known_end) {
        w->known_end = r->offset + r->len;
    }
    free(data);
}

static void on_done(struct blk_io *io, int result)
{
    struct request *r = io->opaque;
    struct world *w = r->w;

    r->busy = false;
    if (!w->consistent) {
        return;
    }
    if (writes(r->op)) {
        if (result < 0) {
            forget(w, r->offset, r->len);
        } else {
            record_write(w, r);
        }
    } else if (r->op == BLK_READ && result == 0 && !r->unknown) {
        check_read(w, r);
    }
}

static struct request *free_request(struct world *w)
{
    for (unsigned i = 0; i < MAX_FLIGHT; i++) {
        struct request *r = &w->req[(w->next + i) % MAX_FLIGHT];

        if (!r->busy) {
            w->next = (unsigned)(r - w->req) + 1;
            return r;
        }
    }
    return NULL;
}

/* An offset and length mostly in sectors, within the disk mostly. */
static void read_range(struct world *w, struct fuzz_input *in, uint64_t *offset, uint64_t *len)
{
    uint8_t how = fi_u8(in);
    uint64_t size = w->drive->size ? w->drive->size : 1;

    *offset = (uint64_t)fi_u16(in) * 512 % size;
    *len = ((uint64_t)fi_u8(in) + 1) * 512;
    if (how & 1) {
        *offset = fi_u32(in) % (size + 4096);
        *len = fi_u16(in);
    }
    if (*len > MAX_IO) {
        *len = MAX_IO;
    }
}

/* The request's memory: its slot, cut into up to three iovecs, maybe misaligned. */
static void lay_out_buffer(struct world *w, struct request *r, struct fuzz_input *in)
{
    uint8_t *base = w->buf + (size_t)(r - w->req) * SLOT;
    uint8_t how = fi_u8(in);
    uint64_t left = r->len, skew = how & 1 ? fi_u8(in) : 0;
    int n = 1 + how % 3 / 2 + (how & 4 ? 1 : 0);

    memset(r->iov, 0, sizeof(r->iov));
    base += skew;
    for (int i = 0; i < n; i++) {
        uint64_t piece = i == n - 1 ? left : (left / 2) & ~(uint64_t)511;

        r->iov[i] = (struct iovec){ base, piece };
        base += piece + (how & 8 ? 0 : 512);
        left -= piece;
    }
}

static void fill_buffer(struct request *r, struct fuzz_input *in)
{
    uint8_t seed = fi_u8(in), *data = malloc(r->len);

    if (!data) {
        fuzz_fail("out of memory");
    }
    for (uint64_t i = 0; i < r->len; i++) {
        data[i] = (uint8_t)(seed + i * 131 + (i >> 9));
    }
    if (iov_from_buf(r->iov, 3, 0, data, r->len) < 0) {
        r->unknown = true;      /* truncated memory: the kernel reads what it can */
    }
    free(data);
}

static void op_io(struct world *w, struct fuzz_input *in, enum blk_op op)
{
    struct request *r = free_request(w);

    if (!r || !w->drive) {
        return;
    }
    memset(r, 0, sizeof(*r));
    r->w = w;
    r->op = op;
    read_range(w, in, &r->offset, &r->len);
    if (op == BLK_READ || op == BLK_WRITE) {
        lay_out_buffer(w, r, in);
    }
    if (op == BLK_WRITE) {
        fill_buffer(r, in);
    }
    r->io = (struct blk_io){ .op = op, .offset = r->offset, .iov = r->iov, .iovcnt = 3,
                             .len = r->len, .done = on_done, .opaque = r };
    if (op == BLK_FLUSH) {
        r->len = 0;
    }
    r->busy = true;
    mark_contention(w, r);
    drive_submit(w->drive, &r->io);
}

/* --- the rest ------------------------------------------------------------------- */

static void settle(struct world *w, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        bool io = aio_in_flight(w->aio) > 0;

        if (loop_run_once(w->loop, io ? IO_WAIT_MS : 0) == 0 && !aio_in_flight(w->aio)) {
            return;
        }
    }
}

static bool idle(const struct world *w)
{
    for (unsigned i = 0; i < MAX_FLIGHT; i++) {
        if (w->req[i].busy) {
            return false;
        }
    }
    return true;
}

static void settle_all(struct world *w)
{
    settle(w, 10000);
    if (!idle(w) || aio_in_flight(w->aio)) {
        fuzz_fail("requests still in flight after the loop went idle");
    }
}

static void op_resize(struct world *w, struct fuzz_input *in)
{
    uint64_t old = w->drive ? w->drive->size : 0, size = (uint64_t)fi_u16(in) * 512;
    char *err = NULL;

    if (!w->drive) {
        return;
    }
    if (drive_resize(w->drive, size, &err) == 0 && w->drive->size > old) {
        forget(w, old, w->drive->size - old);      /* reads what the backing file has there */
    }
    free(err);
}

/* Closed (metadata written back) and opened again: what was written must still be there. */
static void op_reopen(struct world *w)
{
    settle_all(w);
    if (w->drive) {
        drive_close(w->drive);
        w->drive = NULL;
    }
    if (!open_drive(w) && w->consistent) {
        fuzz_fail("an image the harness made no longer opens after it was closed");
    }
}

static void op_truncate(struct world *w, struct fuzz_input *in, bool grow)
{
    static const uint64_t sizes[] = { 0, 4096, SLOT, 4 * SLOT, BUF_BYTES / 2 };

    /* Memory of requests in flight may lose what they wrote or read into it. */
    for (unsigned i = 0; i < MAX_FLIGHT; i++) {
        w->req[i].unknown |= w->req[i].busy;
    }
    if (ftruncate(buf_fd, grow ? BUF_BYTES : (off_t)FI_PICK(in, sizes)) < 0) {
        fuzz_fail("ftruncate: %s", strerror(errno));
    }
}

static void run_op(struct world *w, struct fuzz_input *in)
{
    switch ((enum op)(fi_u8(in) % OP_COUNT)) {
    case OP_READ: op_io(w, in, BLK_READ); break;
    case OP_WRITE: op_io(w, in, BLK_WRITE); break;
    case OP_ZERO: op_io(w, in, BLK_WRITE_ZEROES); break;
    case OP_DISCARD: op_io(w, in, BLK_DISCARD); break;
    case OP_FLUSH: op_io(w, in, BLK_FLUSH); break;
    case OP_RESIZE: op_resize(w, in); break;
    case OP_REOPEN: op_reopen(w); break;
    case OP_LOOP: loop_run_once(w->loop, 0); break;
    case OP_SETTLE: settle(w, SETTLE_ROUNDS); break;
    case OP_TRUNCATE: op_truncate(w, in, false); break;
    case OP_GROW: op_truncate(w, in, true); break;
    case OP_COUNT: break;
    }
}

/* The whole disk read back in pieces, compared where the harness knows the contents. */
static void verify_disk(struct world *w)
{
    struct request *r = &w->req[0];
    uint64_t size = w->drive->size < MAX_DISK ? w->drive->size : MAX_DISK;

    op_truncate(w, NULL, true);
    for (uint64_t at = 0; at < size; at += MAX_IO) {
        memset(r, 0, sizeof(*r));
        r->w = w;
        r->op = BLK_READ;
        r->offset = at;
        r->len = size - at < MAX_IO ? size - at : MAX_IO;
        r->iov[0] = (struct iovec){ w->buf, r->len };
        r->io = (struct blk_io){ .op = BLK_READ, .offset = at, .iov = r->iov, .iovcnt = 3,
                                 .done = on_done, .opaque = r };
        r->busy = true;
        drive_submit(w->drive, &r->io);
        settle_all(w);
    }
}

static void setup(struct world *w)
{
    fuzz_process_init();
    if (buf_fd < 0) {
        buf_fd = memfd_create("fuzz-qcow2-buffers", MFD_CLOEXEC);
        w->buf = buf_fd < 0 ? MAP_FAILED : mmap(NULL, BUF_BYTES, PROT_READ | PROT_WRITE,
                                                MAP_SHARED, buf_fd, 0);
        if (w->buf == MAP_FAILED) {
            fuzz_fail("buffer memory: %s", strerror(errno));
        }
        guarded_copy_arm();
    }
    /* Not cleared: every request fills its buffer, or has it filled, before it counts. */
    if (ftruncate(buf_fd, BUF_BYTES) < 0) {
        fuzz_fail("ftruncate: %s", strerror(errno));
    }
    memset(w->known, 0, w->known_end);
    w->known_end = 0;
    memset(w->req, 0, sizeof(w->req));
    w->next = 0;
    w->checked = 0;
    fuzz_loop_new(&w->loop, &w->aio, 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct fuzz_input in;

    fi_init(&in, data, size);
    setup(&w);
    make_image(&w, &in);
    if (open_drive(&w)) {
        for (unsigned n = 0; n < MAX_OPS && !fi_empty(&in); n++) {
            run_op(&w, &in);
        }
        settle_all(&w);
        if (w.consistent && w.drive) {
            verify_disk(&w);
        }
    }
    if (w.drive) {
        drive_close(w.drive);
        w.drive = NULL;
    }
    aio_engine_free(w.aio);
    loop_free(w.loop);
    if (getenv("MPQEMU_FUZZ_TRACE")) {
        fprintf(stderr, "qcow2: %s, %llu bytes compared\n",
                w.consistent ? "consistent image" : "corrupt image, crashes only",
                (unsigned long long)w.checked);
    }
    return 0;
}
