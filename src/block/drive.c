// SPDX-License-Identifier: GPL-2.0-or-later
#include "block/drive.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/backend.h"
#include "block/backing.h"
#include "block/file-layer.h"
#include "block/format.h"
#include "util/error.h"
#include "util/guarded-copy.h"
#include "util/loop.h"
#include "util/log.h"
#include "util/opts.h"

static const char *const cache_names[] = {
    [DRIVE_CACHE_WRITEBACK] = "writeback", [DRIVE_CACHE_WRITETHROUGH] = "writethrough",
    [DRIVE_CACHE_NONE] = "none", [DRIVE_CACHE_DIRECTSYNC] = "directsync",
};

static int parse_cache(const char *s, enum drive_cache *out, char **err)
{
    for (size_t i = 0; i < sizeof(cache_names) / sizeof(cache_names[0]); i++) {
        if (!strcmp(s, cache_names[i])) {
            *out = (enum drive_cache)i;
            return 0;
        }
    }
    error_setf(err, "cache mode '%s' is not supported "
               "(writeback, writethrough, none, directsync)", s);
    return -1;
}

/*
 * rerror=, werror=: what a failed read or write does.  Only QEMU's
 * "report" is here, what every failure does.  The remote process has no
 * run state to stop (no stop, no cont), so neither "stop" nor werror's
 * QEMU default "enospc" (stop on ENOSPC) can be honoured; "ignore" (the
 * guest told a failed I/O succeeded) is not offered.  A value QEMU does
 * not know gets QEMU's message.
 */
static int check_error_action(const char *key, const char *value, bool read, char **err)
{
    const char *op = read ? "read" : "write";

    if (!value || !strcmp(value, "report")) {
        return 0;
    }
    if (!strcmp(value, "stop") || !strcmp(value, "ignore") ||
        (!read && !strcmp(value, "enospc"))) {
        error_setf(err, "%s=%s is not supported: a failed %s is reported to the guest "
                   "(%s=report)", key, value, op, key);
    } else {
        error_setf(err, "'%s' invalid %s error action", value, op);
    }
    return -1;
}

/* --- format drivers ------------------------------------------------------ */

static const struct format_driver *format_find(const char *name)
{
    for (size_t i = 0; format_drivers[i]; i++) {
        if (!strcmp(format_drivers[i]->name, name)) {
            return format_drivers[i];
        }
    }
    return NULL;
}

bool drive_format_known(const char *name)
{
    return format_find(name) != NULL;
}

/* "raw, qcow2": the formats an error message offers. */
static const char *format_names(char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = 0;
    for (size_t i = 0; format_drivers[i] && used < size; i++) {
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                                 format_drivers[i]->name);
    }
    return buf;
}

/* The format whose probe is surest of the image's first bytes; an unreadable head is empty. */
static const struct format_driver *probe_format(struct blk_file *f)
{
    const struct format_driver *best = NULL;
    int best_score = -1;
    uint8_t *head = NULL;
    int64_t len = 0;

    /* Aligned, whole block: the file may be open with O_DIRECT. */
    if (posix_memalign((void **)&head, 4096, FORMAT_PROBE_BYTES)) {
        head = NULL;
    } else {
        len = blk_file_pread(f, head, FORMAT_PROBE_BYTES, 0);
    }
    for (size_t i = 0; format_drivers[i]; i++) {
        int score = format_drivers[i]->probe(head, len < 0 ? 0 : (size_t)len);

        if (score > best_score) {
            best = format_drivers[i];
            best_score = score;
        }
    }
    free(head);
    return best;
}

/* --- opening ---------------------------------------------------------------- */

static void drive_free(struct drive *d);

/* Sets *format to the driver named by format=, or NULL to probe. */
static int parse_options(struct drive *d, struct opts *o, const struct format_driver **format,
                         char **err)
{
    const char *id = opts_get(o, "id"), *file = opts_get(o, "file");
    const char *fmt = opts_get(o, "format"), *cache = opts_get(o, "cache");
    const char *iface = opts_get(o, "if");
    char names[64];

    if (!id || !*id) {
        error_setf(err, "-drive needs an id (id=...)");
        return -1;
    }
    if (!(d->id = strdup(id))) {
        error_setf(err, "out of memory");
        return -1;
    }
    /* file.driver=NAME,file.KEY=...: the file driver names the file from its options. */
    if ((!file || !*file) && !opts_has(o, "file.driver")) {
        error_setf(err, "drive '%s' needs a file (file=...)", id);
        return -1;
    }
    if (file && *file && !(d->file = strdup(file))) {
        error_setf(err, "out of memory");
        return -1;
    }
    if (iface && strcmp(iface, "none")) {
        error_setf(err, "drive '%s': only if=none exists in a remote process", id);
        return -1;
    }
    *format = fmt ? format_find(fmt) : NULL;
    if (fmt && !*format) {
        error_setf(err, "drive '%s': unknown format '%s' (%s)", id, fmt,
                   format_names(names, sizeof(names)));
        return -1;
    }
    if ((cache && parse_cache(cache, &d->cache, err) < 0) ||
        opts_get_bool(o, "readonly", false, &d->readonly, err) < 0 ||
        check_error_action("rerror", opts_get(o, "rerror"), true, err) < 0 ||
        check_error_action("werror", opts_get(o, "werror"), false, err) < 0) {
        error_prefix(err, "drive '%s'", id);
        return -1;
    }
    return 0;
}

/* o: the -drive options, whose file.* keys are the file driver's; NULL for a backing file. */
static int open_file_layer(struct drive *d, struct opts *o, struct aio_engine *aio, char **err)
{
    d->file_layer = blk_file_open(d->file, o, aio, d->readonly, d->cache, err);
    if (!d->file_layer) {
        error_prefix(err, "drive '%s'", d->id);
        return -1;
    }
    if (!d->file && !(d->file = strdup(d->file_layer->name))) {
        error_setf(err, "out of memory");
        return -1;
    }
    return 0;
}

/* After the file driver took its file.* keys: anything left is misspelt. */
static int check_all_used(struct drive *d, struct opts *o, char **err)
{
    if (opts_check_all_used(o, "-drive", err) < 0) {
        error_prefix(err, "drive '%s'", d->id);
        return -1;
    }
    return 0;
}

/* Opens the image on d->file_layer with the format given, or the one probing finds. */
static int open_format(struct drive *d, const struct format_driver *format, char **err)
{
    if (!format) {
        format = probe_format(d->file_layer);
    }
    if (format->open(d, err) < 0) {
        error_prefix(err, "drive '%s'", d->id);
        return -1;
    }
    d->format = format;
    return 0;
}

struct drive *drive_open(struct opts *o, struct aio_engine *aio, char **err)
{
    struct drive *d = calloc(1, sizeof(*d));
    const struct format_driver *format;

    if (!d) {
        error_setf(err, "out of memory");
        return NULL;
    }
    if (parse_options(d, o, &format, err) < 0 || open_file_layer(d, o, aio, err) < 0 ||
        check_all_used(d, o, err) < 0 || open_format(d, format, err) < 0) {
        drive_free(d);
        return NULL;
    }
    return d;
}

struct drive *drive_open_spec(const struct drive_spec *spec, struct aio_engine *aio, char **err)
{
    struct json_object *o = json_object_new_object();
    struct drive *d = NULL;
    struct opts *opts;

    /* JSON, so that no character of a file name is taken for syntax. */
    json_object_object_add(o, "id", json_object_new_string(spec->id));
    json_object_object_add(o, "file", json_object_new_string(spec->file));
    if (spec->format) {
        json_object_object_add(o, "format", json_object_new_string(spec->format));
    }
    json_object_object_add(o, "readonly", json_object_new_string(spec->readonly ? "on" : "off"));
    if (spec->cache) {
        json_object_object_add(o, "cache", json_object_new_string(cache_names[*spec->cache]));
    }
    opts = opts_parse(json_object_to_json_string(o), NULL, err);
    json_object_put(o);
    if (opts) {
        d = drive_open(opts, aio, err);
        opts_free(opts);
    }
    return d;
}

struct drive *drive_open_on(struct opts *o, struct blk_file *f, char **err)
{
    struct drive *d = calloc(1, sizeof(*d));
    const struct format_driver *format;

    if (!d) {
        error_setf(err, "out of memory");
        blk_file_close(f);
        return NULL;
    }
    d->file_layer = f;
    if (parse_options(d, o, &format, err) < 0 || check_all_used(d, o, err) < 0 ||
        open_format(d, format, err) < 0) {
        drive_free(d);
        return NULL;
    }
    return d;
}

struct drive *drive_open_backing(const struct drive *top, const char *name, const char *format,
                                 char **err)
{
    const struct format_driver *drv = NULL;
    struct drive *d;
    char names[64];

    if (top->depth + 1 >= DRIVE_MAX_BACKING_DEPTH) {
        error_setf(err, "%s: backing chain is deeper than %u images or loops", top->file,
                   DRIVE_MAX_BACKING_DEPTH);
        return NULL;
    }
    d = calloc(1, sizeof(*d));
    if (!d || !(d->id = strdup(top->id)) || !(d->file = backing_path(top->file, name))) {
        error_setf(err, "out of memory");
        drive_free(d);
        return NULL;
    }
    if (blk_file_is(top->file_layer, d->file)) {
        error_setf(err, "%s: the image is its own backing file", top->file);
    } else if (format && !(drv = format_find(format))) {
        error_setf(err, "%s: backing format '%s' is not supported (%s)", top->file, format,
                   format_names(names, sizeof(names)));
    } else {
        d->readonly = true;
        d->depth = top->depth + 1;
        if (open_file_layer(d, NULL, top->file_layer->aio, err) == 0 &&
            open_format(d, drv, err) == 0) {
            return d;
        }
        error_prefix(err, "backing file");
    }
    drive_free(d);
    return NULL;
}

const char *drive_cache_name(enum drive_cache cache)
{
    return cache_names[cache];
}

const char *drive_format_name(const struct drive *d)
{
    return d->format->name;
}

struct drive *drive_backing(const struct drive *d)
{
    return d->format->backing ? d->format->backing(d) : NULL;
}

int drive_resize(struct drive *d, uint64_t size, char **err)
{
    if (d->readonly) {
        error_setf(err, "drive '%s' is read-only", d->id);
        return -1;
    }
    if (size == 0 || size % 512) {
        error_setf(err, "the new size must be a positive multiple of 512 bytes");
        return -1;
    }
    if (d->format->resize(d, size, err) < 0) {
        return -1;
    }
    d->size = size;
    return 0;
}

int drive_flush(struct drive *d, char **err)
{
    int r;

    if (d->readonly || !d->format) {
        return 0;
    }
    if (d->format->writeback && d->format->writeback(d, err) < 0) {
        return -1;
    }
    if ((r = blk_file_sync(d->file_layer)) < 0) {
        error_setf(err, "drive '%s': flush failed: %s", d->id, strerror(-r));
        return -1;
    }
    return 0;
}

/* Releases a drive without flushing: for one that never finished opening. */
static void drive_free(struct drive *d)
{
    if (!d) {
        return;
    }
    if (d->format && d->format->close) {
        d->format->close(d);
    }
    blk_file_close(d->file_layer);
    free(d->id);
    free(d->file);
    free(d);
}

/* Completes the I/O in flight on the whole chain, the images below first. */
void drive_drain(struct drive *d)
{
    struct drive *backing = d->format ? drive_backing(d) : NULL;

    if (backing) {
        drive_drain(backing);
    }
    if (d->file_layer) {
        blk_file_drain(d->file_layer);
    }
}

void drive_close(struct drive *d)
{
    char *err = NULL;

    if (!d) {
        return;
    }
    drive_drain(d);
    if (drive_flush(d, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    drive_free(d);
}

/* --- I/O ----------------------------------------------------------------- */

static void on_failed(void *opaque)
{
    struct blk_io *io = opaque;

    io->done(io, io->fail_result);
}

void blk_io_fail(struct blk_io *io, struct aio_engine *aio, int result)
{
    io->fail_result = result;
    loop_bh_init(&io->fail_bh, on_failed, io);
    aio_defer(aio, &io->fail_bh);
}

/* A request the drive refuses: a write to a read-only drive, one not in whole blocks. */
static int check_io(struct drive *d, struct blk_io *io, uint64_t len)
{
    bool writes = io->op != BLK_READ && io->op != BLK_FLUSH;
    unsigned align = d->file_layer->align;

    if (writes && d->readonly) {
        return -EROFS;
    }
    if (align > 1 && io->op != BLK_FLUSH && ((io->offset | len) & (align - 1))) {
        return -EINVAL;
    }
    return 0;
}

/*
 * A request past the end: the image shrank under a command that checked its
 * range against the old size.  QEMU's block layer fails it with EIO
 * (blk_check_byte_request()), a failed I/O like any other: counted as
 * failed, reported as an I/O error.
 */
static bool past_end(const struct drive *d, const struct blk_io *io, uint64_t len)
{
    return io->op != BLK_FLUSH && (io->offset > d->size || len > d->size - io->offset);
}


/* The kind of operation a request is counted as (counted_as_write: a write). */
static enum blk_op accounted_op(const struct blk_io *io)
{
    return io->counted_as_write ? BLK_WRITE : io->op;
}

/*
 * Counts a device's request as it completes (QEMU's block_account_one_io()
 * with failed requests accounted), and reports its I/O error.
 */
static void count_done(struct blk_io *io, int result)
{
    enum blk_op op = accounted_op(io);

    blk_account_done(io->in_flight_on, op, io->counted_len, io->start_ns, result);
    if (result >= 0 && (op == BLK_WRITE || op == BLK_WRITE_ZEROES) &&
        io->offset + io->counted_len > io->drive->wr_highest_offset) {
        io->drive->wr_highest_offset = io->offset + io->counted_len;
    }
    /* Every failure, as QEMU's blk_error_action() (refused requests are not counted here). */
    if (result < 0) {
        blk_report_io_error(io->in_flight_on, io->op, result);
    }
}

static void on_drive_done(struct blk_io *io, int result)
{
    struct aio_engine *aio = io->drive->file_layer->aio;
    struct block_backend *blk = io->in_flight_on;

    if (io->counted) {
        count_done(io, result);
    }
    io->done = io->caller_done;
    io->done(io, result);
    /* Held to the end of done(): the caller's copies into guest memory are part of it. */
    if (blk) {
        blk_dec_in_flight(blk);
    }
    aio_release(aio);
}

void drive_submit(struct drive *d, struct blk_io *io)
{
    bool rw = io->op == BLK_READ || io->op == BLK_WRITE;
    uint64_t len = rw ? iov_size(io->iov, io->iovcnt) : io->len;
    int bad;

    io->drive = d;
    io->caller_done = io->done;
    io->done = on_drive_done;
    io->counted = d->backend != NULL;
    io->counted_len = len;
    io->start_ns = io->counted ? loop_now_ns() : 0;
    /* An eject waits for it (the medium cannot come out from under it). */
    io->in_flight_on = d->backend;
    if (d->backend) {
        blk_inc_in_flight(d->backend);
    }
    aio_hold(d->file_layer->aio);
    bad = check_io(d, io, len);
    if (bad) {
        /* Refused, not failed: QEMU's devices account these as invalid. */
        if (io->counted) {
            blk_account_invalid(d->backend, accounted_op(io));
            io->counted = false;
        }
        blk_io_fail(io, d->file_layer->aio, bad);
    } else if (past_end(d, io, len)) {
        blk_io_fail(io, d->file_layer->aio, -EIO);
    } else {
        d->format->submit(d, io);
    }
}
