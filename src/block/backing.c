// SPDX-License-Identifier: GPL-2.0-or-later
#include "block/backing.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2-int.h"
#include "util/error.h"

int qcow2_backing_name(const uint8_t *h, uint64_t avail, uint64_t header_end, const char *file,
                       char name[BACKING_NAME_MAX], char **err)
{
    uint64_t off = be64(h + QH_BACKING_OFFSET);
    uint32_t len = be32(h + QH_BACKING_SIZE);

    if (!off) {
        return 0;
    }
    if (len == 0 || len >= BACKING_NAME_MAX || off > avail || len > avail - off ||
        off < header_end) {
        error_setf(err, "%s: the backing file name is out of bounds", file);
        return -1;
    }
    memcpy(name, h + off, len);
    name[len] = 0;
    if (strlen(name) != len) {
        error_setf(err, "%s: the backing file name contains a NUL byte", file);
        return -1;
    }
    return 1;
}

char *backing_path(const char *image, const char *name)
{
    char *dir, *path;

    if (name[0] == '/') {
        return strdup(name);
    }
    if (!(dir = strdup(image))) {
        return NULL;
    }
    if (asprintf(&path, "%s/%s", dirname(dir), name) < 0) {
        path = NULL;
    }
    free(dir);
    return path;
}
