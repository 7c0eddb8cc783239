/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A disk image given with -drive: its file, format and cache mode. */
#ifndef MPQEMU_BLOCK_DRIVE_H
#define MPQEMU_BLOCK_DRIVE_H

#include <stdbool.h>
#include <stdint.h>

struct opts;

enum drive_format { DRIVE_FORMAT_RAW, DRIVE_FORMAT_QCOW2 };
enum drive_cache { DRIVE_CACHE_WRITEBACK, DRIVE_CACHE_WRITETHROUGH, DRIVE_CACHE_NONE,
                   DRIVE_CACHE_DIRECTSYNC };

struct drive {
    char *id;
    char *file;
    enum drive_format format;
    enum drive_cache cache;
    bool readonly;
    int fd;
    uint64_t size;
};

/* Opens the image named by "-drive id=,file=[,format=][,readonly=][,cache=]". */
struct drive *drive_open(struct opts *o, char **err);
/* Makes written data durable; 0 or -1 with *err. */
int drive_flush(struct drive *d, char **err);
/* Flushes (a failure is logged) and closes. */
void drive_close(struct drive *d);

#endif
