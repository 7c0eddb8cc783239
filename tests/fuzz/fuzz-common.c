// SPDX-License-Identifier: GPL-2.0-or-later
#include "fuzz-common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/aio.h"
#include "util/log.h"
#include "util/loop.h"

/* --- the input ------------------------------------------------------------ */

uint8_t fi_u8(struct fuzz_input *in)
{
    if (!in->left) {
        return 0;
    }
    in->left--;
    return *in->p++;
}

uint16_t fi_u16(struct fuzz_input *in)
{
    uint16_t lo = fi_u8(in);

    return (uint16_t)(lo | fi_u8(in) << 8);
}

uint32_t fi_u32(struct fuzz_input *in)
{
    uint32_t lo = fi_u16(in);

    return lo | (uint32_t)fi_u16(in) << 16;
}

uint64_t fi_u64(struct fuzz_input *in)
{
    uint64_t lo = fi_u32(in);

    return lo | (uint64_t)fi_u32(in) << 32;
}

bool fi_bool(struct fuzz_input *in)
{
    return fi_u8(in) & 1;
}

unsigned fi_below(struct fuzz_input *in, unsigned n)
{
    if (n <= 1) {
        return 0;
    }
    return n <= 256 ? fi_u8(in) % n : fi_u16(in) % n;
}

uint64_t fi_pick(struct fuzz_input *in, const uint64_t *table, size_t n)
{
    return table[fi_below(in, (unsigned)n)];
}

size_t fi_bytes(struct fuzz_input *in, void *out, size_t len)
{
    size_t n = len < in->left ? len : in->left;

    memcpy(out, in->p, n);
    memset((uint8_t *)out + n, 0, len - n);
    in->p += n;
    in->left -= n;
    return len;
}

/* --- the scratch directory ---------------------------------------------------- */

static char scratch[FUZZ_PATH_MAX - 64];
static int scratch_fd = -1;
static pid_t scratch_owner;

static void remove_scratch(void)
{
    DIR *d;
    struct dirent *e;

    if (scratch_fd < 0 || getpid() != scratch_owner) {
        return;
    }
    d = fdopendir(dup(scratch_fd));
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            unlinkat(scratch_fd, e->d_name, 0);
        }
    }
    if (d) {
        closedir(d);
    }
    rmdir(scratch);
}

/*
 * /dev/shm when it takes O_DIRECT (cache=none images; tmpfs does since
 * Linux 6.6): the drives sync when they close, on every input, and tmpfs
 * syncs for free.
 */
static bool shm_usable(void)
{
    char path[] = "/dev/shm/mpqemu-fuzz-probe-XXXXXX";
    int fd = mkstemp(path), direct;

    if (fd < 0) {
        return false;
    }
    close(fd);
    direct = openat(AT_FDCWD, path, O_RDWR | O_DIRECT | O_CLOEXEC);
    unlink(path);
    if (direct < 0) {
        return false;
    }
    close(direct);
    return true;
}

/* Each process its own: a forked replay must not share files with its parent. */
const char *fuzz_scratch_dir(void)
{
    const char *tmp = getenv("TMPDIR");

    if (scratch_fd >= 0 && scratch_owner == getpid()) {
        return scratch;
    }
    if (scratch_fd >= 0) {
        close(scratch_fd);
    }
    if (!tmp || !*tmp) {
        tmp = shm_usable() ? "/dev/shm" : "/tmp";
    }
    snprintf(scratch, sizeof(scratch), "%s/mpqemu-fuzz-XXXXXX", tmp);
    if (!mkdtemp(scratch)) {
        fuzz_fail("mkdtemp %s: %s", scratch, strerror(errno));
    }
    /* openat(): open() is the code under test's, wrapped below. */
    scratch_fd = openat(AT_FDCWD, scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (scratch_fd < 0) {
        fuzz_fail("open %s: %s", scratch, strerror(errno));
    }
    if (!scratch_owner) {
        atexit(remove_scratch);
    }
    scratch_owner = getpid();
    return scratch;
}

void fuzz_scratch_path(char out[FUZZ_PATH_MAX], const char *name)
{
    snprintf(out, FUZZ_PATH_MAX, "%s/%s", fuzz_scratch_dir(), name);
}

void fuzz_write_file(const char *name, const void *data, size_t len)
{
    char path[FUZZ_PATH_MAX];
    int fd;
    ssize_t n = 0;

    fuzz_scratch_path(path, name);
    fd = openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fuzz_fail("create %s: %s", path, strerror(errno));
    }
    if (data) {
        n = pwrite(fd, data, len, 0);
    }
    if ((data && n != (ssize_t)len) || (!data && ftruncate(fd, (off_t)len) < 0)) {
        fuzz_fail("write %s: %s", path, strerror(errno));
    }
    close(fd);
}

/* No ".." component: a name cannot climb out of the directory it is in. */
static bool stays_inside(const char *path)
{
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, "/");

        if (len == 2 && p[0] == '.' && p[1] == '.') {
            return false;
        }
        p += len;
        p += *p == '/';
    }
    return true;
}

/*
 * The code under test opens files with open() (open64() once large file
 * support renames it); harness executables link with --wrap=open64.
 */
int __real_open64(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...);

int __wrap_open64(const char *path, int flags, ...)
{
    const char *dir = fuzz_scratch_dir();
    size_t dir_len = strlen(dir);
    mode_t mode = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;

        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (!stays_inside(path)) {
        errno = EACCES;
        return -1;
    }
    if (path[0] != '/') {
        return openat(scratch_fd, path, flags, mode);
    }
    if (strncmp(path, dir, dir_len) || path[dir_len] != '/') {
        errno = EACCES;
        return -1;
    }
    return __real_open64(path, flags, mode);
}

/* --- the process ------------------------------------------------------------- */

void fuzz_process_init(void)
{
    static bool done;

    if (done) {
        return;
    }
    done = true;
    log_set_program("fuzz");
    log_set_level(getenv("MPQEMU_FUZZ_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    fuzz_scratch_dir();
}

void fuzz_loop_new(struct loop **loop, struct aio_engine **aio, unsigned depth)
{
    char *err = NULL;

    *loop = loop_new();
    if (!*loop || !(*aio = aio_engine_new(*loop, depth, &err))) {
        fuzz_fail("loop or io_uring: %s", err);
    }
}

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "fuzz harness: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}
