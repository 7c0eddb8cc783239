// SPDX-License-Identifier: GPL-2.0-or-later
/* Guest RAM for tests and tools: a sealed memfd, mapped here and shared. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "util/error.h"

int mpq_ram_create(struct mpq_ram *ram, uint64_t gpa, uint64_t size, char **err)
{
    memset(ram, 0, sizeof(*ram));
    ram->fd = memfd_create("mpqemu-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (ram->fd < 0) {
        error_setf(err, "memfd_create: %s", strerror(errno));
        return -1;
    }
    /* Sealed against shrinking, as QEMU's memory-backend-memfd does. */
    if (ftruncate(ram->fd, (off_t)size) < 0 ||
        fcntl(ram->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        error_setf(err, "guest RAM of %llu bytes: %s", (unsigned long long)size,
                   strerror(errno));
        close(ram->fd);
        return -1;
    }
    ram->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ram->fd, 0);
    if (ram->host == MAP_FAILED) {
        error_setf(err, "mmap guest RAM: %s", strerror(errno));
        close(ram->fd);
        return -1;
    }
    ram->gpa = gpa;
    ram->size = size;
    return 0;
}

void mpq_ram_destroy(struct mpq_ram *ram)
{
    if (ram->host) {
        munmap(ram->host, ram->size);
    }
    if (ram->fd >= 0) {
        close(ram->fd);
    }
    memset(ram, 0, sizeof(*ram));
    ram->fd = -1;
}
