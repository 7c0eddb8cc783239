// SPDX-License-Identifier: GPL-2.0-or-later
/* The file layer's generic part: choosing a file driver, and the calls into it. */
#include "block/file-layer.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "block/aio.h"
#include "util/error.h"
#include "util/opts.h"

/* The first driver that claims the name; the one that claims any name is the fallback. */
static const struct file_driver *driver_for(const char *filename)
{
    const struct file_driver *fallback = NULL;

    for (size_t i = 0; file_drivers[i]; i++) {
        if (!file_drivers[i]->claims) {
            fallback = fallback ? fallback : file_drivers[i];
        } else if (file_drivers[i]->claims(filename)) {
            return file_drivers[i];
        }
    }
    return fallback;
}

static const struct file_driver *driver_named(const char *name)
{
    for (size_t i = 0; file_drivers[i]; i++) {
        if (!strcmp(file_drivers[i]->name, name)) {
            return file_drivers[i];
        }
    }
    return NULL;
}

static bool new_servers_forbidden;

void blk_file_forbid_new_servers(void)
{
    new_servers_forbidden = true;
}

struct blk_file *blk_file_open(const char *filename, struct opts *o, struct aio_engine *aio,
                               bool readonly, enum drive_cache cache, char **err)
{
    const char *name = o ? opts_get(o, "file.driver") : NULL;
    const struct file_driver *drv = name ? driver_named(name) : driver_for(filename);

    if (!drv) {
        error_setf(err, name ? "no file driver '%s'" : "no file driver for '%s'",
                   name ? name : filename);
        return NULL;
    }
    if (!filename && !drv->claims) {
        error_setf(err, "file driver '%s' needs a file name (file=...)", drv->name);
        return NULL;
    }
    if (drv->network && new_servers_forbidden) {
        error_setf(err, "a drive on a %s server can only be given at start: the sandbox "
                   "allows no other server (or use -sandbox off)", drv->name);
        return NULL;
    }
    return drv->open(filename, o, aio, readonly, cache, err);
}

void blk_file_close(struct blk_file *f)
{
    if (f) {
        f->driver->close(f);
    }
}

void blk_file_drain(struct blk_file *f)
{
    f->driver->drain(f);
}

struct loop *blk_file_loop(const struct blk_file *f)
{
    return aio_engine_loop(f->aio);
}

int blk_file_length(struct blk_file *f, uint64_t *len)
{
    return f->driver->length(f, len);
}

int64_t blk_file_pread(struct blk_file *f, void *buf, uint64_t len, uint64_t offset)
{
    return f->driver->pread(f, buf, len, offset);
}

int blk_file_pwrite(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset)
{
    return f->driver->pwrite(f, buf, len, offset);
}

int blk_file_sync(struct blk_file *f)
{
    return f->driver->sync(f);
}

int blk_file_truncate(struct blk_file *f, uint64_t len, char **err)
{
    return f->driver->truncate(f, len, err);
}

int blk_file_allocate(struct blk_file *f, uint64_t offset, uint64_t len)
{
    return f->driver->allocate ? f->driver->allocate(f, offset, len) : -EOPNOTSUPP;
}

bool blk_file_is(const struct blk_file *f, const char *filename)
{
    return driver_for(filename) == f->driver && f->driver->is && f->driver->is(f, filename);
}

bool blk_file_reach(const struct blk_file *f, struct blk_file_reach *out)
{
    *out = (struct blk_file_reach){ 0 };
    return f->driver->reach && f->driver->reach(f, out);
}
