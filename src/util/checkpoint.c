// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/log.h"

/*
 * Layout of the memfd: a header, a directory of named areas, then the
 * areas, each 64-byte aligned, allocated in order and never moved.
 */
enum {
    CHECKPOINT_VERSION = 1,
    MAX_ENTRIES = 128,
    AREA_ALIGN = 64,
    MAX_CLAIMS = 256,
};

static const char checkpoint_magic[8] = "MPQCKPT";

struct checkpoint_entry {
    char name[CHECKPOINT_NAME_MAX + 1];
    uint64_t offset;
    uint64_t size;
};

struct checkpoint_header {
    char magic[8];
    uint32_t version;
    uint32_t n_entries;
    uint64_t size;          /* of the whole memfd */
    uint64_t used;          /* end of the last area */
    struct checkpoint_entry entries[MAX_ENTRIES];
};

#define DATA_START ((sizeof(struct checkpoint_header) + AREA_ALIGN - 1) & ~(size_t)(AREA_ALIGN - 1))

_Static_assert(sizeof(struct checkpoint_entry) == 72, "entry layout");
_Static_assert(DATA_START < CHECKPOINT_SIZE, "room for areas");

/* What this process has handed out: areas in the memfd, or heap memory without one. */
struct claim {
    void *area;
    bool in_memfd;
};

static struct checkpoint_header *mapped;
static size_t restored_areas;
static struct claim claims[MAX_CLAIMS];

int checkpoint_create_fd(char **err)
{
    int fd = memfd_create("mpqemu-checkpoint", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0 || ftruncate(fd, CHECKPOINT_SIZE) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        error_setf(err, "checkpoint memfd: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static void start_afresh(struct checkpoint_header *h)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, checkpoint_magic, sizeof(h->magic));
    h->version = CHECKPOINT_VERSION;
    h->size = CHECKPOINT_SIZE;
    h->used = DATA_START;
}

/* Every entry named, in bounds, aligned and in order: then the areas can be trusted as memory. */
static bool directory_holds(const struct checkpoint_header *h, const char **why)
{
    uint64_t end = DATA_START;

    if (memcmp(h->magic, checkpoint_magic, sizeof(h->magic)) || h->version != CHECKPOINT_VERSION) {
        *why = "unknown header";
        return false;
    }
    if (h->size != CHECKPOINT_SIZE || h->n_entries > MAX_ENTRIES || h->used < DATA_START ||
        h->used > h->size) {
        *why = "header out of bounds";
        return false;
    }
    for (uint32_t i = 0; i < h->n_entries; i++) {
        const struct checkpoint_entry *e = &h->entries[i];

        /* offset <= used first: used - offset must not wrap round to let any size in. */
        if (!memchr(e->name, '\0', sizeof(e->name)) || !e->name[0] || e->offset < end ||
            e->offset % AREA_ALIGN || e->offset > h->used || e->size == 0 ||
            e->size > CHECKPOINT_MAX_AREA || e->size > h->used - e->offset) {
            *why = "directory entry out of bounds";
            return false;
        }
        end = e->offset + e->size;
    }
    return true;
}

int checkpoint_open(int fd, char **err)
{
    struct stat st;
    const char *why = NULL;
    void *p;

    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != CHECKPOINT_SIZE) {
        error_setf(err, "checkpoint fd %d is not a %d-byte memory file", fd, CHECKPOINT_SIZE);
        return -1;
    }
    p = mmap(NULL, CHECKPOINT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        error_setf(err, "checkpoint: mmap: %s", strerror(errno));
        return -1;
    }
    mapped = p;
    restored_areas = 0;
    if (mapped->magic[0] == '\0') {
        start_afresh(mapped);           /* the first process: the keeper made it empty */
    } else if (!directory_holds(mapped, &why)) {
        log_warn("checkpoint corrupt (%s): devices start from power-on", why);
        start_afresh(mapped);
    } else {
        restored_areas = mapped->n_entries;
    }
    return 0;
}

void checkpoint_close(void)
{
    for (size_t i = 0; i < MAX_CLAIMS; i++) {
        if (claims[i].in_memfd) {
            claims[i] = (struct claim){ 0 };    /* gone with the mapping */
        }
    }
    if (mapped) {
        munmap(mapped, CHECKPOINT_SIZE);
        mapped = NULL;
    }
}

bool checkpoint_is_open(void)
{
    return mapped != NULL;
}

size_t checkpoint_restored_areas(void)
{
    return restored_areas;
}

static bool claimed(const void *area)
{
    for (size_t i = 0; i < MAX_CLAIMS; i++) {
        if (claims[i].area == area) {
            return true;
        }
    }
    return false;
}

static void *claim(void *area, bool in_memfd)
{
    for (size_t i = 0; i < MAX_CLAIMS; i++) {
        if (!claims[i].area) {
            claims[i] = (struct claim){ .area = area, .in_memfd = in_memfd };
            return area;
        }
    }
    if (!in_memfd) {
        free(area);
    }
    return NULL;
}

static struct checkpoint_entry *find_entry(const char *name)
{
    for (uint32_t i = 0; i < mapped->n_entries; i++) {
        if (!strcmp(mapped->entries[i].name, name)) {
            return &mapped->entries[i];
        }
    }
    return NULL;
}

static struct checkpoint_entry *new_entry(const char *name, size_t size)
{
    uint64_t offset = (mapped->used + AREA_ALIGN - 1) & ~(uint64_t)(AREA_ALIGN - 1);
    struct checkpoint_entry *e;

    if (mapped->n_entries == MAX_ENTRIES || offset > mapped->size ||
        size > mapped->size - offset) {
        return NULL;
    }
    e = &mapped->entries[mapped->n_entries];
    memset(e, 0, sizeof(*e));
    strcpy(e->name, name);
    e->offset = offset;
    e->size = size;
    memset((uint8_t *)mapped + offset, 0, size);
    mapped->used = offset + size;
    mapped->n_entries++;    /* last: a process killed before it leaves no half entry */
    return e;
}

void *checkpoint_area(const char *name, size_t size, bool *restored)
{
    struct checkpoint_entry *e;
    void *area;

    *restored = false;
    if (!name[0] || strlen(name) > CHECKPOINT_NAME_MAX || size == 0 ||
        size > CHECKPOINT_MAX_AREA) {
        return NULL;
    }
    if (!mapped) {
        area = calloc(1, size);
        return area ? claim(area, false) : NULL;
    }
    e = find_entry(name);
    if (e && e->size == size && !claimed((uint8_t *)mapped + e->offset)) {
        *restored = true;
        return claim((uint8_t *)mapped + e->offset, true);
    }
    if (!e) {
        e = new_entry(name, size);
        if (e) {
            return claim((uint8_t *)mapped + e->offset, true);
        }
        /*
         * A directory or space the previous process filled (or too many
         * devices): the device still comes up, its state this process's own.
         */
        log_warn("checkpoint: no room for '%s'; it will start from power-on after a restart",
                 name);
    }
    /* No room, another size (another build) or a second device of that name: fresh memory. */
    area = calloc(1, size);
    return area ? claim(area, false) : NULL;
}

void checkpoint_release(void *area)
{
    for (size_t i = 0; area && i < MAX_CLAIMS; i++) {
        if (claims[i].area == area) {
            if (!claims[i].in_memfd) {
                free(area);
            }
            claims[i] = (struct claim){ 0 };
            return;
        }
    }
}
