// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The guest's workload while the host kills its device process
 * (tests/guest/restart.sh): built static by kit.sh, run by init
 * (mpq.direct).
 *
 *   mpq-io SECONDS SEED DEV MIB DIR
 *
 * For SECONDS it runs, each in a process of its own:
 *   - two O_DIRECT workers on DEV, each on its half of the first MIB MiB:
 *     random offsets and lengths (4 KiB to 256 KiB), writes of 4 KiB blocks
 *     whose CRC it keeps, and reads that check every block against the CRC
 *     last written there (a fresh disk reads zeros); then a last pass
 *     rereads the whole region;
 *   - a file worker in DIR (a mounted ext4): files written whole under a
 *     temporary name, fsynced, renamed over the old one, and every few
 *     writes the page cache dropped and every file reread and checked;
 * while this process prints a clock line every 100 ms, "MPQ T US N": its
 * CLOCK_MONOTONIC in microseconds and how many O_DIRECT requests have
 * completed, from which the host aligns its clock with the guest's.
 *
 * At the end: each worker's counts ("MPQ direct ...", "MPQ files ..."), any
 * mismatch or I/O error as it happened ("MPQ direct mismatch ...", "MPQ
 * ... io-error ..."), every file's size and CRC ("MPQ file NAME SIZE CRC",
 * zlib's CRC-32, which the host checks in the image), and the completion
 * time of every O_DIRECT request ("MPQ c D D ...": microseconds, each the
 * difference from the one before, in hex).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    BLOCK = 4096,
    MAX_BLOCKS_PER_IO = 64,             /* 256 KiB */
    DIRECT_WORKERS = 2,
    MAX_COMPLETIONS = 1 << 20,
    FILE_SLOTS = 24,
    MAX_FILE_SIZE = 1 << 20,
    REREAD_EVERY = 8,                   /* file writes between rereads */
    CLOCK_PERIOD_US = 100000,
    MAX_REPORTED = 10,                  /* mismatches and errors printed per worker */
};

/* Shared by every process: the O_DIRECT completions, in the order they happened. */
struct shared {
    uint64_t n;
    uint64_t us[MAX_COMPLETIONS];
};

static struct shared *shared;

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++) {
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[i] = c;
    }
}

/* zlib's crc32(crc, buf, len). */
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t s = seed | 1;

    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t v = next_random(&s);

        memcpy(p + i, &v, 8);
    }
    for (size_t i = len & ~(size_t)7; i < len; i++) {
        p[i] = (uint8_t)next_random(&s);
    }
}

/* One line to the console, in one write so that processes do not interleave within it. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if (n > (int)sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
        _exit(3);
    }
}

/* --- O_DIRECT: random writes and checked reads ------------------------------------ */

struct direct {
    int id, fd;
    uint64_t first, blocks;             /* its region, in blocks */
    uint32_t *crc;                      /* the CRC each block should read back with */
    uint8_t *buf;
    uint64_t rnd, generation;
    uint64_t writes, reads, bytes_written, mismatches, errors, verified;
};

static void note_completion(void)
{
    uint64_t i = __atomic_fetch_add(&shared->n, 1, __ATOMIC_RELAXED);

    if (i < MAX_COMPLETIONS) {
        shared->us[i] = now_us();
    }
}

static void fill_block(struct direct *d, uint8_t *p, uint64_t block)
{
    uint32_t head[4] = { 0x4251504d, (uint32_t)block, (uint32_t)d->generation, (uint32_t)d->id };

    fill_random(p, BLOCK, (block << 20) ^ d->generation ^ d->rnd);
    memcpy(p, head, sizeof(head));
    d->crc[block - d->first] = crc32_update(0, p, BLOCK);
}

static void io_error(struct direct *d, const char *op, uint64_t block, uint64_t n, ssize_t r)
{
    if (d->errors++ < MAX_REPORTED) {
        say("MPQ direct %d io-error %s block %" PRIu64 " count %" PRIu64 " result %zd errno %d",
            d->id, op, block, n, r, r < 0 ? errno : 0);
    }
}

static void direct_write(struct direct *d, uint64_t block, uint64_t n)
{
    ssize_t r;

    d->generation++;
    for (uint64_t i = 0; i < n; i++) {
        fill_block(d, d->buf + i * BLOCK, block + i);
    }
    r = pwrite(d->fd, d->buf, n * BLOCK, (off_t)(block * BLOCK));
    note_completion();
    if (r != (ssize_t)(n * BLOCK)) {
        io_error(d, "write", block, n, r);
        return;
    }
    d->writes++;
    d->bytes_written += n * BLOCK;
}

static void direct_read(struct direct *d, uint64_t block, uint64_t n, bool timed)
{
    ssize_t r = pread(d->fd, d->buf, n * BLOCK, (off_t)(block * BLOCK));

    if (timed) {
        note_completion();
    }
    if (r != (ssize_t)(n * BLOCK)) {
        io_error(d, "read", block, n, r);
        return;
    }
    d->reads++;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t got = crc32_update(0, d->buf + i * BLOCK, BLOCK);
        uint32_t want = d->crc[block + i - d->first];
        uint32_t head[4];

        d->verified++;
        if (got == want) {
            continue;
        }
        memcpy(head, d->buf + i * BLOCK, sizeof(head));
        if (d->mismatches++ < MAX_REPORTED) {
            say("MPQ direct %d mismatch block %" PRIu64 " crc %08x want %08x (holds block %u "
                "generation %u of worker %u)", d->id, block + i, got, want, head[1], head[2],
                head[3]);
        }
    }
}

static int run_direct(int id, const char *dev, uint64_t mib, uint64_t seed, uint64_t deadline)
{
    uint64_t total = mib * (1 << 20) / BLOCK;
    struct direct d = {
        .id = id, .first = total / DIRECT_WORKERS * (uint64_t)id,
        .blocks = total / DIRECT_WORKERS, .rnd = seed * 2654435761u + (uint64_t)id + 1,
    };
    uint8_t zero[BLOCK] = { 0 };
    uint32_t zero_crc = crc32_update(0, zero, BLOCK);

    d.fd = open(dev, O_RDWR | O_DIRECT);
    d.crc = malloc(d.blocks * sizeof(*d.crc));
    if (d.fd < 0 || !d.crc || posix_memalign((void **)&d.buf, BLOCK, MAX_BLOCKS_PER_IO * BLOCK)) {
        say("MPQ direct %d cannot-start %s errno %d", id, dev, errno);
        return 1;
    }
    for (uint64_t i = 0; i < d.blocks; i++) {
        d.crc[i] = zero_crc;            /* a fresh disk */
    }
    while (now_us() < deadline) {
        uint64_t r = next_random(&d.rnd);
        uint64_t block = d.first + (r >> 8) % d.blocks;
        uint64_t n = 1 + (r >> 40) % MAX_BLOCKS_PER_IO;

        if (block + n > d.first + d.blocks) {
            n = d.first + d.blocks - block;
        }
        if (r & 1) {
            direct_write(&d, block, n);
        } else {
            direct_read(&d, block, n, true);
        }
    }
    for (uint64_t b = d.first; b < d.first + d.blocks; b += MAX_BLOCKS_PER_IO) {
        direct_read(&d, b, d.first + d.blocks - b < MAX_BLOCKS_PER_IO ? d.first + d.blocks - b
                                                                      : MAX_BLOCKS_PER_IO, false);
    }
    say("MPQ direct %d writes %" PRIu64 " reads %" PRIu64 " kib-written %" PRIu64
        " blocks-checked %" PRIu64 " mismatches %" PRIu64 " errors %" PRIu64, id, d.writes,
        d.reads, d.bytes_written / 1024, d.verified, d.mismatches, d.errors);
    return d.mismatches || d.errors ? 1 : 0;
}

/* --- files on ext4 ------------------------------------------------------------------- */

struct files {
    const char *dir;
    int dir_fd;
    uint8_t *buf;
    uint64_t rnd;
    uint32_t size[FILE_SLOTS], crc[FILE_SLOTS];
    bool present[FILE_SLOTS];
    uint64_t written, rereads, checked, mismatches, errors;
};

static void file_error(struct files *f, const char *op, int slot)
{
    if (f->errors++ < MAX_REPORTED) {
        say("MPQ files io-error %s f%d errno %d", op, slot, errno);
    }
}

static bool write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);

        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* A new version of file slot: written under a temporary name, made durable, renamed over. */
static void write_file(struct files *f, int slot)
{
    uint64_t r = next_random(&f->rnd);
    size_t size = 1 + (r >> 16) % (r & 7 ? 256 * 1024 : MAX_FILE_SIZE);
    char tmp[32], name[32];
    int fd;

    snprintf(tmp, sizeof(tmp), "f%d.tmp", slot);
    snprintf(name, sizeof(name), "f%d", slot);
    fill_random(f->buf, size, r);
    fd = openat(f->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || !write_all(fd, f->buf, size) || fsync(fd) < 0) {
        file_error(f, "write", slot);
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    close(fd);
    if (renameat(f->dir_fd, tmp, f->dir_fd, name) < 0 || fsync(f->dir_fd) < 0) {
        file_error(f, "rename", slot);
        return;
    }
    f->present[slot] = true;
    f->size[slot] = (uint32_t)size;
    f->crc[slot] = crc32_update(0, f->buf, size);
    f->written++;
}

static void drop_caches(void)
{
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

    sync();
    if (fd >= 0) {
        if (write(fd, "3", 1) < 0) {
            say("MPQ files drop-caches-failed errno %d", errno);
        }
        close(fd);
    }
}

static void check_file(struct files *f, int slot)
{
    char name[32];
    ssize_t n;
    int fd;

    snprintf(name, sizeof(name), "f%d", slot);
    fd = openat(f->dir_fd, name, O_RDONLY);
    n = fd >= 0 ? read(fd, f->buf, MAX_FILE_SIZE + 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    if (n < 0) {
        file_error(f, "read", slot);
        return;
    }
    f->checked++;
    if ((uint32_t)n != f->size[slot] || crc32_update(0, f->buf, (size_t)n) != f->crc[slot]) {
        if (f->mismatches++ < MAX_REPORTED) {
            say("MPQ files mismatch f%d size %zd want %u", slot, n, f->size[slot]);
        }
    }
}

static void reread_all(struct files *f)
{
    drop_caches();
    f->rereads++;
    for (int i = 0; i < FILE_SLOTS; i++) {
        if (f->present[i]) {
            check_file(f, i);
        }
    }
}

static int run_files(const char *dir, uint64_t seed, uint64_t deadline)
{
    struct files f = { .dir = dir, .rnd = seed * 40503u + 7 };

    f.dir_fd = open(dir, O_RDONLY | O_DIRECTORY);
    f.buf = malloc(MAX_FILE_SIZE + 1);
    if (f.dir_fd < 0 || !f.buf) {
        say("MPQ files cannot-start %s errno %d", dir, errno);
        return 1;
    }
    while (now_us() < deadline) {
        write_file(&f, (int)(next_random(&f.rnd) % FILE_SLOTS));
        if (f.written % REREAD_EVERY == 0) {
            reread_all(&f);
        }
    }
    reread_all(&f);
    for (int i = 0; i < FILE_SLOTS; i++) {
        if (f.present[i]) {
            say("MPQ file f%d %u %08x", i, f.size[i], f.crc[i]);
        }
    }
    say("MPQ files written %" PRIu64 " rereads %" PRIu64 " checked %" PRIu64
        " mismatches %" PRIu64 " errors %" PRIu64, f.written, f.rereads, f.checked,
        f.mismatches, f.errors);
    return f.mismatches || f.errors ? 1 : 0;
}

/* --- the parent: clock lines, then the completions ---------------------------------- */

static void print_completions(void)
{
    uint64_t n = shared->n < MAX_COMPLETIONS ? shared->n : MAX_COMPLETIONS, prev = 0;
    char line[400];
    size_t len = 0;

    /* Two workers take their stamps a little apart: in order of time. */
    for (uint64_t i = 1; i < n; i++) {
        for (uint64_t j = i; j > 0 && shared->us[j - 1] > shared->us[j]; j--) {
            uint64_t t = shared->us[j];

            shared->us[j] = shared->us[j - 1];
            shared->us[j - 1] = t;
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        if (!len) {
            len = (size_t)snprintf(line, sizeof(line), "MPQ c");
        }
        len += (size_t)snprintf(line + len, sizeof(line) - len, " %" PRIx64, shared->us[i] - prev);
        prev = shared->us[i];
        if (len > sizeof(line) - 40 || i + 1 == n) {
            say("%s", line);
            len = 0;
        }
    }
    say("MPQ completions %" PRIu64, n);
}

static pid_t spawn(int (*body)(void *), void *arg)
{
    pid_t pid = fork();

    if (pid == 0) {
        _exit(body(arg));
    }
    return pid;
}

struct job {
    int id;
    const char *dev, *dir;
    uint64_t mib, seed, deadline;
};

static int direct_job(void *arg)
{
    const struct job *j = arg;

    return run_direct(j->id, j->dev, j->mib, j->seed, j->deadline);
}

static int files_job(void *arg)
{
    const struct job *j = arg;

    return run_files(j->dir, j->seed, j->deadline);
}

int main(int argc, char **argv)
{
    struct job jobs[DIRECT_WORKERS + 1];
    int running = DIRECT_WORKERS + 1, failed = 0;
    uint64_t seconds, seed;

    if (argc != 6) {
        fprintf(stderr, "usage: mpq-io SECONDS SEED DEV MIB DIR\n");
        return 2;
    }
    seconds = strtoull(argv[1], NULL, 10);
    seed = strtoull(argv[2], NULL, 10);
    crc_init();
    shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    if (shared == MAP_FAILED) {
        say("MPQ io cannot-start mmap errno %d", errno);
        return 1;
    }
    for (int i = 0; i <= DIRECT_WORKERS; i++) {
        jobs[i] = (struct job){ .id = i, .dev = argv[3], .mib = strtoull(argv[4], NULL, 10),
                                .dir = argv[5], .seed = seed,
                                .deadline = now_us() + seconds * 1000000 };
        if (spawn(i < DIRECT_WORKERS ? direct_job : files_job, &jobs[i]) < 0) {
            say("MPQ io cannot-start fork errno %d", errno);
            return 1;
        }
    }
    say("MPQ io started");
    while (running) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);

        if (pid > 0) {
            running--;
            failed |= !WIFEXITED(status) || WEXITSTATUS(status);
            continue;
        }
        say("MPQ T %" PRIu64 " %" PRIu64, now_us(), __atomic_load_n(&shared->n,
                                                                      __ATOMIC_RELAXED));
        usleep(CLOCK_PERIOD_US);
    }
    print_completions();
    say("MPQ io %s", failed ? "failed" : "ok");
    return failed;
}
