// SPDX-License-Identifier: GPL-2.0-or-later
#include "block/drive.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
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

static int open_flags(const struct drive *d)
{
    int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;

    if (d->cache == DRIVE_CACHE_NONE || d->cache == DRIVE_CACHE_DIRECTSYNC) {
        flags |= O_DIRECT;
    }
    if (d->cache == DRIVE_CACHE_WRITETHROUGH || d->cache == DRIVE_CACHE_DIRECTSYNC) {
        flags |= O_DSYNC;
    }
    return flags;
}

static bool looks_like_qcow2(int fd)
{
    uint8_t magic[4];

    return pread(fd, magic, sizeof(magic), 0) == sizeof(magic) &&
           !memcmp(magic, "QFI\xfb", 4);
}

static int parse_options(struct drive *d, struct opts *o, bool *format_given, char **err)
{
    const char *id = opts_get(o, "id"), *file = opts_get(o, "file");
    const char *format = opts_get(o, "format"), *cache = opts_get(o, "cache");
    const char *iface = opts_get(o, "if");

    if (!id || !*id) {
        error_setf(err, "-drive needs an id (id=...)");
        return -1;
    }
    if (!(d->id = strdup(id))) {
        error_setf(err, "out of memory");
        return -1;
    }
    if (!file || !*file) {
        error_setf(err, "drive '%s' needs a file (file=...)", id);
        return -1;
    }
    if (!(d->file = strdup(file))) {
        error_setf(err, "out of memory");
        return -1;
    }
    if (iface && strcmp(iface, "none")) {
        error_setf(err, "drive '%s': only if=none exists in a remote process", id);
        return -1;
    }
    if (format && strcmp(format, "raw") && strcmp(format, "qcow2")) {
        error_setf(err, "drive '%s': unknown format '%s' (raw, qcow2)", id, format);
        return -1;
    }
    d->format = format && !strcmp(format, "qcow2") ? DRIVE_FORMAT_QCOW2 : DRIVE_FORMAT_RAW;
    if ((cache && parse_cache(cache, &d->cache, err) < 0) ||
        opts_get_bool(o, "readonly", false, &d->readonly, err) < 0 ||
        opts_check_all_used(o, "-drive", err) < 0) {
        error_prefix(err, "drive '%s'", id);
        return -1;
    }
    *format_given = format != NULL;
    return 0;
}

static int get_size(struct drive *d, char **err)
{
    struct stat st;

    if (fstat(d->fd, &st) < 0) {
        error_setf(err, "drive '%s': %s: %s", d->id, d->file, strerror(errno));
        return -1;
    }
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0) {
            error_setf(err, "drive '%s': %s: %s", d->id, d->file, strerror(errno));
            return -1;
        }
    } else if (S_ISREG(st.st_mode)) {
        d->size = (uint64_t)st.st_size;
    } else {
        error_setf(err, "drive '%s': %s is neither a file nor a block device", d->id,
                   d->file);
        return -1;
    }
    return 0;
}

struct drive *drive_open(struct opts *o, char **err)
{
    struct drive *d = calloc(1, sizeof(*d));
    bool format_given;

    if (!d) {
        error_setf(err, "out of memory");
        return NULL;
    }
    d->fd = -1;
    if (parse_options(d, o, &format_given, err) < 0) {
        goto fail;
    }
    d->fd = open(d->file, open_flags(d));
    if (d->fd < 0) {
        error_setf(err, "drive '%s': could not open '%s'%s: %s", d->id, d->file,
                   d->readonly ? " read-only" : "", strerror(errno));
        goto fail;
    }
    if (get_size(d, err) < 0) {
        goto fail;
    }
    if (!format_given && looks_like_qcow2(d->fd)) {
        d->format = DRIVE_FORMAT_QCOW2;
    }
    if (d->format == DRIVE_FORMAT_QCOW2) {
        error_setf(err, "drive '%s': '%s' is a qcow2 image; this build serves raw images "
                   "only (convert with: qemu-img convert -O raw)", d->id, d->file);
        goto fail;
    }
    return d;
fail:
    drive_close(d);
    return NULL;
}

int drive_flush(struct drive *d, char **err)
{
    if (d->readonly || d->fd < 0) {
        return 0;
    }
    if (fdatasync(d->fd) < 0) {
        error_setf(err, "drive '%s': flush failed: %s", d->id, strerror(errno));
        return -1;
    }
    return 0;
}

void drive_close(struct drive *d)
{
    char *err = NULL;

    if (!d) {
        return;
    }
    if (drive_flush(d, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    if (d->fd >= 0) {
        close(d->fd);
    }
    free(d->id);
    free(d->file);
    free(d);
}
