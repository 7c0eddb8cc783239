// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * mpqemu-bench: device-level benchmark of an LSI53C895A remote through the
 * client library, for one remote command or two side by side.
 *
 *   mpqemu-bench [--seconds S] [--image-mb N] -- CMD1 ARGS... [--vs CMD2 ARGS...]
 *
 * In the arguments "{fd}" becomes the socket (multi-process protocol),
 * "{socket}" a socket path to listen on (vfio-user) and "{image}" a scratch raw
 * image the benchmark creates (one per command) and removes.  The remote
 * must serve an lsi53c895a with a scsi-hd on that image at scsi-id 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "client/mpqemu-lsi.h"
#include "util/opts.h"

enum {
    RAM_SIZE = 64 << 20, WORK = 1 << 20, BUF = 2 << 20, MAX_XFER = 1 << 20, MAX_ARGS = 64,
    QD = 32, ROWS = 11, REGISTER_READS = 20000,
    BATCH = QD * 4,             /* commands per call into the driver's queue */
};

/* What a row cost, per command: the driver's interrupts and register accesses, the remote's CPU. */
struct cost {
    double interrupts, registers, cpu_us;
};

struct target {
    char *argv[MAX_ARGS];
    char *substituted[MAX_ARGS];    /* the arguments made here, freed at the end */
    char image[512];
    struct mpq_remote remote;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    struct mpq_lsi *lsi;
    double results[ROWS];
    struct cost costs[ROWS];
};

/* What is counted across a row. */
struct counters {
    struct mpq_lsi_stats lsi;
    double cpu_s;               /* the remote's user + system time */
};

static const char *const row_names[ROWS] = {
    "register read round trip, p50 us", "4 KiB random read, IOPS (QD1)",
    "4 KiB random write, IOPS (QD1)", "1 MiB sequential read, MB/s (QD1)",
    "1 MiB sequential write, MB/s (QD1)", "4 KiB random read, IOPS (QD32)",
    "4 KiB random write, IOPS (QD32)", "1 MiB sequential read, MB/s (QD32)",
    "1 MiB sequential write, MB/s (QD32)", "4 KiB random read, untagged, IOPS",
    "4 KiB random write, untagged, IOPS",
};

static double seconds = 3;
/*
 * Scratch images made so far, removed at exit whatever the way out.  Copies:
 * exit handlers run after main() has returned and its targets are gone.
 */
static char made_images[2][64];

static void remove_images(void)
{
    for (int i = 0; i < 2; i++) {
        if (made_images[i][0]) {
            unlink(made_images[i]);
        }
    }
}
static uint64_t image_mb = 256;

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "mpqemu-bench: %s: %s\n", what, err ? err : "failed");
    exit(1);
}

/* User + system time of a process and all its threads (io_uring's workers too), seconds. */
static double process_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long utime, stime;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = 0;
    /* The name may hold spaces and parentheses: fields count from the last ')'. */
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                     &stime) != 2) {
        return 0;
    }
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void count(const struct target *t, struct counters *c)
{
    mpq_lsi_get_stats(t->lsi, &c->lsi);
    c->cpu_s = process_cpu_seconds(t->remote.pid);
}

/* Per command between two counts; 'ops' when the driver did not count them (register reads). */
static struct cost cost_between(const struct counters *a, const struct counters *b, uint64_t ops)
{
    uint64_t cmds = b->lsi.commands - a->lsi.commands;
    double n = (double)(cmds ? cmds : ops ? ops : 1);

    return (struct cost){
        .interrupts = (double)(b->lsi.interrupts - a->lsi.interrupts) / n,
        .registers = (double)(b->lsi.register_accesses - a->lsi.register_accesses) / n,
        .cpu_us = (b->cpu_s - a->cpu_s) * 1e6 / n,
    };
}

static void substitute_image(struct target *t)
{
    for (int i = 0; t->argv[i]; i++) {
        char *at = strstr(t->argv[i], "{image}"), *s;

        if (at && asprintf(&s, "%.*s%s%s", (int)(at - t->argv[i]), t->argv[i], t->image,
                           at + 7) >= 0) {
            t->argv[i] = t->substituted[i] = s;
        }
    }
}

/* --image: the caller's image, used as it is, instead of a scratch one. */
static const char *given_image;

static void make_scratch_image(struct target *t)
{
    int fd;

    strcpy(t->image, "/var/tmp/mpqemu-bench-XXXXXX");
    fd = mkstemp(t->image);
    if (fd >= 0) {
        strcpy(made_images[made_images[0][0] ? 1 : 0], t->image);
    }
    if (fd < 0 || ftruncate(fd, (off_t)(image_mb << 20)) < 0) {
        die("scratch image", strerror(errno));
    }
    /* Written once, so reads measure the device, not holes. */
    {
        static char chunk[1 << 20];

        memset(chunk, 0x5a, sizeof(chunk));
        for (uint64_t i = 0; i < image_mb; i++) {
            if (pwrite(fd, chunk, sizeof(chunk), (off_t)(i << 20)) != sizeof(chunk)) {
                die("scratch image", strerror(errno));
            }
        }
    }
    close(fd);
}

static void start(struct target *t)
{
    char *err = NULL;

    if (given_image) {
        snprintf(t->image, sizeof(t->image), "%s", given_image);
    } else {
        make_scratch_image(t);
    }
    substitute_image(t);
    if (mpq_remote_start(&t->remote, t->argv, 10000, &err) < 0) {
        die(t->argv[0], err);
    }
    t->dev = t->remote.dev;
    if (mpq_ram_create(&t->ram, 0, RAM_SIZE, &err) < 0 || mpq_map_ram(t->dev, &t->ram, 1, &err) < 0 ||
        mpq_intx_enable(t->dev, &err) < 0 || mpq_reset(t->dev, &err) < 0 ||
        mpq_probe(t->dev, NULL, &err) < 0 ||
        !(t->lsi = mpq_lsi_new(t->dev, &t->ram, WORK, &err))) {
        die(t->argv[0], err);
    }
}

static void stop(struct target *t)
{
    int status;

    mpq_lsi_free(t->lsi);
    mpq_remote_stop(&t->remote, 10000, &status);
    mpq_ram_destroy(&t->ram);
}

static void free_substituted(struct target *t)
{
    for (int i = 0; i < MAX_ARGS; i++) {
        free(t->substituted[i]);
    }
}

static void command(struct target *t, const uint8_t *cdb, uint32_t len)
{
    struct mpq_scsi_result r;
    char *err = NULL;

    if (mpq_lsi_command(t->lsi, 0, 0, cdb, 10, BUF, len, &r, &err) < 0) {
        die("command", err);
    }
    if (r.status != 0 && !(r.status == 2 && r.sense[2] == 6)) {
        char why[64];

        snprintf(why, sizeof(why), "status 0x%02x sense %02x/%02x", r.status, r.sense[2],
                 r.sense[12]);
        die("command", why);
    }
}

/* A READ(10) or WRITE(10) of n blocks at lba, its data at gpa. */
static void rw10(struct mpq_scsi_cmd *cmd, bool write, uint64_t lba, uint32_t n, uint64_t gpa)
{
    uint8_t *c = cmd->cdb;

    memset(cmd, 0, sizeof(*cmd));
    c[0] = write ? 0x2a : 0x28;
    c[2] = (uint8_t)(lba >> 24);
    c[3] = (uint8_t)(lba >> 16);
    c[4] = (uint8_t)(lba >> 8);
    c[5] = (uint8_t)lba;
    c[7] = (uint8_t)(n >> 8);
    c[8] = (uint8_t)n;
    cmd->cdb_len = 10;
    cmd->len = n * 512;
    cmd->data_gpa = gpa;
}

static void check_statuses(const struct target *t, const struct mpq_scsi_cmd *cmds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].status != 0) {
            char why[96];

            snprintf(why, sizeof(why), "command %zu (0x%02x) ended with status 0x%02x", i,
                     cmds[i].cdb[0], cmds[i].status);
            die(t->argv[0], why);
        }
    }
}

/*
 * Untagged READ(10) or WRITE(10)s of len bytes, one at a time: operations
 * per second for 'seconds'.  The driver's single-command path, which a
 * guest uses for disks without tagged queueing.
 */
static double rate_untagged(struct target *t, bool write, uint32_t len)
{
    uint64_t blocks = (image_mb << 20) / 512, ops = 0;
    uint32_t n = len / 512;
    double t0 = mpq_now_us(), now;

    do {
        struct mpq_scsi_cmd cmd;

        rw10(&cmd, write, (rng() % (blocks / n)) * n, n, BUF);
        command(t, cmd.cdb, len);
        ops++;
        now = mpq_now_us();
    } while (now - t0 < seconds * 1e6);
    return (double)ops / ((now - t0) / 1e6);
}

/*
 * Tagged commands, 'depth' outstanding, each slot with its own buffer, as a
 * guest's sym53c8xx queues them to a disk (tagged at any depth): operations
 * per second for 'seconds'.
 */
static double rate(struct target *t, bool write, uint32_t len, bool random, unsigned depth)
{
    uint64_t blocks = (image_mb << 20) / 512, ops = 0, lba = 0;
    uint32_t n = len / 512;
    struct mpq_scsi_cmd cmds[BATCH];
    double t0 = mpq_now_us(), now;
    char *err = NULL;

    do {
        for (unsigned i = 0; i < BATCH; i++) {
            lba = random ? (rng() % (blocks / n)) * n : (lba + n) % blocks;
            rw10(&cmds[i], write, lba, n, BUF + (uint64_t)(i % depth) * len);
        }
        if (mpq_lsi_run_queued(t->lsi, cmds, BATCH, depth, &err) < 0) {
            die("queued commands", err);
        }
        check_statuses(t, cmds, BATCH);
        ops += BATCH;
        now = mpq_now_us();
    } while (now - t0 < seconds * 1e6);
    return (double)ops / ((now - t0) / 1e6);
}

static double register_round_trip(struct target *t)
{
    struct mpq_stats s = { 0 };
    uint64_t v;
    char *err = NULL;

    for (int i = 0; i < REGISTER_READS; i++) {
        double t0 = mpq_now_us();

        if (mpq_bar_read(t->dev, 1, 0x34, 4, &v, &err) < 0) {   /* SCRATCHA */
            die("register read", err);
        }
        mpq_stats_add(&s, mpq_now_us() - t0);
    }
    {
        double p50 = mpq_stats_quantile(&s, 0.5);

        mpq_stats_free(&s);
        return p50;
    }
}

/* Writes of one run must not be written back during the next one's. */
static void settle(struct target *t)
{
    int fd = open(t->image, O_RDONLY);

    if (fd >= 0) {
        fdatasync(fd);
        close(fd);
    }
}

static double measure_row(struct target *t, int row)
{
    switch (row) {
    case 0: return register_round_trip(t);
    case 1: return rate(t, false, 4096, true, 1);
    case 2: return rate(t, true, 4096, true, 1);
    case 3: return rate(t, false, MAX_XFER, false, 1) * MAX_XFER / 1e6;
    case 4: return rate(t, true, MAX_XFER, false, 1) * MAX_XFER / 1e6;
    case 5: return rate(t, false, 4096, true, QD);
    case 6: return rate(t, true, 4096, true, QD);
    case 7: return rate(t, false, MAX_XFER, false, QD) * MAX_XFER / 1e6;
    case 8: return rate(t, true, MAX_XFER, false, QD) * MAX_XFER / 1e6;
    case 9: return rate_untagged(t, false, 4096);
    default: return rate_untagged(t, true, 4096);
    }
}

static void measure_counted(struct target *t, int row)
{
    struct counters before, after;

    count(t, &before);
    t->results[row] = measure_row(t, row);
    count(t, &after);
    t->costs[row] = cost_between(&before, &after, row == 0 ? REGISTER_READS : 0);
    if (row == 0) {
        t->costs[row].registers = 1;    /* the bench's own reads, one each */
    }
}

/* Row by row, each target in turn, so that both run under the same conditions. */
static void measure(struct target *t, int n)
{
    uint8_t tur[10] = { 0 };

    for (int i = 0; i < n; i++) {
        start(&t[i]);
        command(&t[i], tur, 0);  /* collect the unit attention */
    }
    for (int row = 0; row < ROWS; row++) {
        for (int i = 0; i < n; i++) {
            measure_counted(&t[i], row);
            settle(&t[i]);
        }
    }
    for (int i = 0; i < n; i++) {
        stop(&t[i]);
    }
}

/*
 * --job: one fixed pattern, for comparing with other tools (qemu-img bench):
 * 'count' READ(10)s or WRITE(10)s of 'bs' bytes at offsets 0, step, 2*step
 * ... (wrapping at the disk's end), 'depth' tagged commands outstanding.
 */
struct job {
    bool write;
    uint64_t bs, step, count;
    unsigned depth;
};

static int parse_job(const char *spec, struct job *j)
{
    char op[8];
    unsigned long long bs, step, count;
    unsigned depth;

    if (sscanf(spec, "%7[a-z],%llu,%llu,%llu,%u", op, &bs, &step, &count, &depth) != 5 ||
        (strcmp(op, "read") && strcmp(op, "write")) || bs < 512 || bs % 512 ||
        bs > MAX_XFER || step % 512 || count == 0 || depth < 1 || depth > QD) {
        return -1;
    }
    *j = (struct job){ .write = !strcmp(op, "write"), .bs = bs, .step = step, .count = count,
                       .depth = depth };
    return 0;
}

static uint64_t disk_blocks(struct target *t)
{
    uint8_t cdb[10] = { 0x25 };
    const uint8_t *d = t->ram.host + BUF;

    command(t, cdb, 8);
    return ((uint64_t)d[0] << 24 | (uint64_t)d[1] << 16 | (uint64_t)d[2] << 8 | d[3]) + 1;
}

static void run_job(struct target *t, const struct job *j)
{
    uint64_t blocks, lba = 0, done = 0;
    struct mpq_scsi_cmd cmds[BATCH];
    uint32_t n = (uint32_t)(j->bs / 512);
    struct counters before, after;
    struct cost c;
    double t0, secs;
    char *err = NULL;

    start(t);
    command(t, (const uint8_t[10]){ 0 }, 0);    /* collect the unit attention */
    blocks = disk_blocks(t);
    count(t, &before);
    t0 = mpq_now_us();
    while (done < j->count) {
        uint64_t k = j->count - done < BATCH ? j->count - done : BATCH;

        for (uint64_t i = 0; i < k; i++) {
            if (lba + n > blocks) {
                lba = 0;
            }
            rw10(&cmds[i], j->write, lba, n, BUF + (i % j->depth) * j->bs);
            lba += j->step / 512;
        }
        if (mpq_lsi_run_queued(t->lsi, cmds, (size_t)k, j->depth, &err) < 0) {
            die("job", err);
        }
        check_statuses(t, cmds, (size_t)k);
        done += k;
    }
    secs = (mpq_now_us() - t0) / 1e6;
    count(t, &after);
    c = cost_between(&before, &after, 0);
    printf("%s bs %llu step %llu depth %u: %llu ops in %.3f s, %.0f IOPS, %.1f MB/s; "
           "per command %.2f interrupts, %.2f register accesses, %.1f us remote CPU\n",
           j->write ? "write" : "read", (unsigned long long)j->bs,
           (unsigned long long)j->step, j->depth, (unsigned long long)j->count, secs,
           (double)j->count / secs, (double)j->count * (double)j->bs / secs / 1e6,
           c.interrupts, c.registers, c.cpu_us);
    stop(t);
}

/* Per command of each row: the driver's interrupts and register round trips, the remote's CPU. */
static void print_costs(const struct target *t, int n)
{
    printf("\n%-38s", "per command (row 1: per register read)");
    for (int i = 0; i < n; i++) {
        printf("   %c: irqs  regs  cpu us", n == 2 ? 'A' + i : ' ');
    }
    printf("%s\n", n == 2 ? "  cpu B/A" : "");
    for (int r = 0; r < ROWS; r++) {
        printf("%-38s", row_names[r]);
        for (int i = 0; i < n; i++) {
            printf("   %8.2f %5.2f %7.1f", t[i].costs[r].interrupts, t[i].costs[r].registers,
                   t[i].costs[r].cpu_us);
        }
        if (n == 2) {
            printf("  %7.2f", t[1].costs[r].cpu_us / t[0].costs[r].cpu_us);
        }
        printf("\n");
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: mpqemu-bench [--seconds S] [--image-mb N] -- CMD ARGS... "
                 "[--vs CMD ARGS...]\n"
                 "       mpqemu-bench [--image FILE] --job OP,BS,STEP,COUNT,DEPTH -- CMD ARGS...\n"
                 "  {fd}: a socket (multi-process protocol), {socket}: a path to listen on\n"
                 "  (vfio-user), {image}: a scratch raw image made by the benchmark, or FILE\n"
                 "  --job: COUNT reads or writes (OP) of BS bytes at offsets 0, STEP, 2*STEP...\n"
                 "  with DEPTH commands outstanding; prints IOPS and MB/s\n");
}

/* --seconds: a time per row, fractions allowed (tests run short rows). */
static int parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.05 && v <= 600)) {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "seconds", required_argument, NULL, 's' },
        { "image-mb", required_argument, NULL, 'm' },
        { "image", required_argument, NULL, 'i' },
        { "job", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct target t[2];
    struct job job = { 0 };
    bool job_given = false;
    int n = 0, opt, i;
    uint64_t v;

    memset(t, 0, sizeof(t));
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        if (opt == 's' && parse_seconds(optarg, &seconds) == 0) {
            continue;
        } else if (opt == 'm' && parse_uint(optarg, &v) == 0 && v >= 16 && v <= 65536) {
            image_mb = v;
        } else if (opt == 'i' && *optarg && strlen(optarg) < sizeof(t[0].image)) {
            given_image = optarg;
        } else if (opt == 'j' && parse_job(optarg, &job) == 0) {
            job_given = true;
        } else {
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    for (i = optind; i < argc && n < 2; n++) {
        int k = 0;

        while (i < argc && strcmp(argv[i], "--vs") && k < MAX_ARGS - 1) {
            t[n].argv[k++] = argv[i++];
        }
        if (!k) {
            usage(stderr);
            return 2;
        }
        i++;        /* skip --vs */
    }
    if (!n) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(remove_images);
    if (job_given) {
        if (n != 1) {
            usage(stderr);
            return 2;
        }
        run_job(&t[0], &job);
        free_substituted(&t[0]);
        return 0;
    }
    measure(t, n);
    printf("%-38s %16s", "", n == 2 ? "A" : "result");
    if (n == 2) {
        printf(" %16s %8s", "B", "B/A");
    }
    printf("\n");
    for (int r = 0; r < ROWS; r++) {
        printf("%-38s %16.1f", row_names[r], t[0].results[r]);
        if (n == 2) {
            printf(" %16.1f %8.2f", t[1].results[r], t[1].results[r] / t[0].results[r]);
        }
        printf("\n");
    }
    print_costs(t, n);
    if (n == 2) {
        printf("A: %s ...\nB: %s ...\n", t[0].argv[0], t[1].argv[0]);
    }
    for (int k = 0; k < n; k++) {
        free_substituted(&t[k]);
    }
    return 0;
}
