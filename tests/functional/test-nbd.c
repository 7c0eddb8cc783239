// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Disks on NBD servers the test starts (qemu-nbd, nbdkit), through
 * mpqemu-remote's LSI controller with the sandbox on: SCSI reads and
 * writes many in flight, checked against a mirror and the server's file;
 * qcow2 over NBD; zeroing; injected errors reaching the guest and QMP;
 * slow commands overlapping (on the drive layer itself); a server killed and started again mid-I/O,
 * and one that stays away past reconnect-delay; TLS; read-only exports;
 * the server's block-size limits; an export size no server should send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "disk-io.h"
#include "harness.h"
#include "hw/testdev.h"
#include "util/loop.h"
#include "util/opts.h"
#include "util/byteorder.h"
#include "util.h"

#ifdef __SANITIZE_ADDRESS__
/* Freed memory filled with 0xff, as M_PERTURB does without ASan (test_server_gone_before_a_request). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "max_free_fill_size=4096:free_fill_byte=255";
}
#endif

enum { DISK_BYTES = 32 << 20, DISK_BLOCKS = DISK_BYTES / 512, DATA = DISK_IO_DATA, DEPTH = 16 };

struct fixture {
    struct remote remote;
    bool running;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    struct disk_io disk;
    char dir[64], sock[128], image[128], mirror_path[128], pidfile[128], qmp_path[128];
    char server_cmd[1024];
    unsigned port;
    int qmp;
    bool unconfined;            /* the next remote_up runs with -sandbox off */
    bool confined;              /* ... runs confined, in the leak runs too */
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/var/tmp/mpqemu-nbd-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof(f->sock), "%s/nbd.sock", f->dir);
    snprintf(f->image, sizeof(f->image), "%s/disk.img", f->dir);
    snprintf(f->mirror_path, sizeof(f->mirror_path), "%s/mirror.raw", f->dir);
    snprintf(f->pidfile, sizeof(f->pidfile), "%s/server.pid", f->dir);
    snprintf(f->qmp_path, sizeof(f->qmp_path), "%s/qmp.sock", f->dir);
    /* A port of our own for TCP servers; tests in parallel processes differ by pid. */
    f->port = 20000 + (unsigned)getpid() % 20000;
    f->disk = (struct disk_io){ .ram = &f->ram, .mirror = calloc(1, DISK_BYTES),
                                .blocks = DISK_BLOCKS, .rng = 0x243f6a8885a308d3ull };
    f->qmp = -1;
    assert_int_equal(mpq_ram_create(&f->ram, 0, DISK_IO_RAM_SIZE, NULL), 0);
    *state = f;
    return 0;
}

/* --- servers ---------------------------------------------------------------------- */

/* Starts the server command (which writes its pid file once serving) and waits for it. */
static void server_start(struct fixture *f)
{
    sh("rm -f '%s'", f->pidfile);
    if (sh("%s", f->server_cmd) != 0) {
        fail_msg("server did not start: %s", f->server_cmd);
    }
    for (int i = 0; i < 500 && access(f->pidfile, F_OK) < 0; i++) {
        usleep(10000);
    }
    assert_int_equal(access(f->pidfile, F_OK), 0);
    usleep(50000);     /* the pid file may come a moment before the socket listens */
}

/* nbdkit ARGS, on the unix socket (tcp false) or our TCP port. */
static void nbdkit(struct fixture *f, bool tcp, const char *fmt, ...)
{
    char args[480];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    if (tcp) {
        snprintf(f->server_cmd, sizeof(f->server_cmd), "nbdkit -i 127.0.0.1 -p %u -P '%s' %s",
                 f->port, f->pidfile, args);
    } else {
        snprintf(f->server_cmd, sizeof(f->server_cmd), "nbdkit -U '%s' -P '%s' %s", f->sock,
                 f->pidfile, args);
    }
    server_start(f);
}

static void qemu_nbd(struct fixture *f, bool tcp, const char *format, const char *image)
{
    char where[160];

    if (tcp) {
        snprintf(where, sizeof(where), "-b 127.0.0.1 -p %u", f->port);
    } else {
        snprintf(where, sizeof(where), "-k '%s'", f->sock);
    }
    snprintf(f->server_cmd, sizeof(f->server_cmd),
             "qemu-nbd --fork --persistent --pid-file='%s' %s -x exp -f %s '%s'", f->pidfile,
             where, format, image);
    server_start(f);
}

/*
 * Shell: kills the server of pid file $1 and waits until it is dead (a
 * zombie, until whoever inherited it reaps it: its socket is closed).
 */
#define KILL_SERVER \
    "p=$(cat \"$1\" 2>/dev/null) && kill -9 $p 2>/dev/null; while [ -n \"$p\" ] && " \
    "kill -0 $p 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' /proc/$p/stat 2>/dev/null; " \
    "do sleep 0.01; done"

/* kill -9, and waits until it is gone (its port or socket free again). */
static void server_kill(struct fixture *f)
{
    sh("set -- '%s'; " KILL_SERVER "; rm -f '%s' '%s'", f->pidfile, f->pidfile, f->sock);
}

/* --- the remote ------------------------------------------------------------------------ */

static void remote_up(struct fixture *f, const char *drive)
{
    char qmp[192];
    const char *args[] = {
        "{fd}", "-device", "lsi53c895a,id=lsi0", "-drive", drive,
        "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0", "-qmp", qmp,
        f->unconfined ? "-sandbox" : NULL, "off", NULL,
    };
    char *err = NULL;

    snprintf(qmp, sizeof(qmp), "unix:%s,server,nowait", f->qmp_path);
    if (f->confined) {
        remote_start_confined(&f->remote, 1, args);
    } else {
        remote_start(&f->remote, 1, args);
    }
    f->running = true;
    f->dev = remote_connect(&f->remote, 0, &f->ram);
    f->disk.lsi = mpq_lsi_new(f->dev, &f->ram, DISK_IO_WORK, &err);
    if (!f->disk.lsi) {
        fail_msg("lsi: %s", err);
    }
}

static void remote_down(struct fixture *f)
{
    if (f->qmp >= 0) {
        close(f->qmp);
        f->qmp = -1;
    }
    mpq_lsi_free(f->disk.lsi);
    mpq_close(f->dev);
    f->running = false;
    assert_int_equal(remote_expect_exit(&f->remote), 0);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    server_kill(f);
    if (f->running) {   /* a test that failed half-way */
        kill(f->remote.pid, SIGKILL);
        waitpid(f->remote.pid, NULL, 0);
        mpq_lsi_free(f->disk.lsi);
        mpq_close(f->dev);
    }
    if (f->qmp >= 0) {
        close(f->qmp);
    }
    mpq_ram_destroy(&f->ram);
    sh("rm -rf '%s'", f->dir);
    free(f->disk.mirror);
    free(f);
    return 0;
}

/* --- SCSI ---------------------------------------------------------------------------------- */

/* One READ(10) or WRITE(10) of 'blocks' at lba from DATA; the result with its sense. */
static struct mpq_scsi_result rw_one(struct fixture *f, uint8_t op, uint32_t lba, uint16_t blocks)
{
    struct mpq_scsi_cmd c;
    struct mpq_scsi_result r;

    scsi_rw10(&c, op, lba, blocks, DATA);
    disk_command(&f->disk, c.cdb, c.cdb_len, DATA, c.len, &r);
    return r;
}

/* Writes, flushes, reads back: the common part of the data tests. */
static void write_flush_verify(struct fixture *f)
{
    disk_clear_unit_attention(&f->disk);
    disk_write_batch(&f->disk, 0, DISK_BLOCKS, true);
    disk_write_batch(&f->disk, 0, DISK_BLOCKS / 4, true);
    disk_sync_cache(&f->disk);
    disk_read_and_compare(&f->disk);
}

/* The guest writes through the drive; the server is stopped, the mirror saved beside its image. */
static void guest_writes_through(struct fixture *f, const char *drive)
{
    remote_up(f, drive);
    write_flush_verify(f);
    remote_down(f);
    server_kill(f);
    disk_save_mirror(&f->disk, f->mirror_path);
}

static void expect_qcow2_image_is_mirror(struct fixture *f)
{
    assert_int_equal(sh("qemu-img check -q '%s'", f->image), 0);
    assert_int_equal(sh("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", f->image,
                        f->mirror_path), 0);
}

/* --- QMP -------------------------------------------------------------------------------- */

/* Reads what QMP sent within ms milliseconds (or until 'want' shows up) into buf. */
static void qmp_read(struct fixture *f, char *buf, size_t size, const char *want, int ms)
{
    size_t used = strlen(buf);
    double end = now_s() + ms / 1000.0;

    while (now_s() < end && (!want || !strstr(buf, want)) && used + 1 < size) {
        struct pollfd p = { .fd = f->qmp, .events = POLLIN };
        ssize_t n;

        if (poll(&p, 1, 50) <= 0) {
            continue;
        }
        n = read(f->qmp, buf + used, size - used - 1);
        if (n <= 0) {
            break;
        }
        used += (size_t)n;
        buf[used] = '\0';
    }
}

static void qmp_connect(struct fixture *f)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    char buf[4096] = "";
    const char *caps = "{\"execute\":\"qmp_capabilities\"}\n";

    strcpy(a.sun_path, f->qmp_path);
    f->qmp = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(f->qmp, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(write(f->qmp, caps, strlen(caps)), (ssize_t)strlen(caps));
    qmp_read(f, buf, sizeof(buf), "\"return\"", 5000);
    assert_non_null(strstr(buf, "\"return\""));
}

static void expect_io_error_event(struct fixture *f, const char *operation)
{
    char buf[8192] = "", want[64];

    snprintf(want, sizeof(want), "\"operation\": \"%s\"", operation);
    qmp_read(f, buf, sizeof(buf), want, 5000);
    if (!strstr(buf, "BLOCK_IO_ERROR") || !strstr(buf, want)) {
        fail_msg("no BLOCK_IO_ERROR for %s; QMP said: %s", operation, buf);
    }
}

static void expect_sense(const struct mpq_scsi_result *r, uint8_t key, uint8_t asc, uint8_t ascq)
{
    assert_int_equal(r->status, 2);     /* CHECK CONDITION */
    assert_int_equal(r->sense[2] & 0xf, key);
    assert_int_equal(r->sense[12], asc);
    assert_int_equal(r->sense[13], ascq);
}

/* --- the tests ---------------------------------------------------------------------------- */

/* qemu-nbd serving a raw image over TCP: what the guest wrote is in the file. */
static void test_qemu_nbd_raw_tcp(void **state)
{
    struct fixture *f = *state;
    char drive[256];

    assert_int_equal(sh("truncate -s %d '%s'", DISK_BYTES, f->image), 0);
    qemu_nbd(f, true, "raw", f->image);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd://127.0.0.1:%u/exp,format=raw", f->port);
    guest_writes_through(f, drive);
    assert_int_equal(sh("cmp -s '%s' '%s'", f->image, f->mirror_path), 0);
}

/* qemu-nbd serving a qcow2 image's disk (it does the qcow2), through QEMU's option spelling. */
static void test_qemu_nbd_qcow2_export(void **state)
{
    struct fixture *f = *state;
    char drive[384];

    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' %d", f->image, DISK_BYTES), 0);
    qemu_nbd(f, false, "qcow2", f->image);
    snprintf(drive, sizeof(drive),
             "id=d0,file.driver=nbd,file.server.type=unix,file.server.path=%s,file.export=exp,"
             "format=raw", f->sock);
    guest_writes_through(f, drive);
    expect_qcow2_image_is_mirror(f);
}

/*
 * A qcow2 image served as plain bytes by qemu-nbd, our qcow2 driver on top.
 * An export does not grow: the image's clusters are allocated beforehand.
 */
static void test_qcow2_over_nbd(void **state)
{
    struct fixture *f = *state;
    char drive[256];

    assert_int_equal(sh("qemu-img create -q -f qcow2 -o preallocation=metadata '%s' %d",
                        f->image, DISK_BYTES), 0);
    qemu_nbd(f, false, "raw", f->image);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///exp?socket=%s,format=qcow2", f->sock);
    guest_writes_through(f, drive);
    expect_qcow2_image_is_mirror(f);
}

/* Without preallocation a write needs clusters past the export's end: it fails ENOSPC, no crash. */
static void test_qcow2_over_nbd_cannot_grow(void **state)
{
    struct fixture *f = *state;
    char drive[256];
    struct mpq_scsi_result r;

    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' %d", f->image, DISK_BYTES), 0);
    qemu_nbd(f, false, "raw", f->image);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///exp?socket=%s,format=qcow2", f->sock);
    remote_up(f, drive);
    disk_clear_unit_attention(&f->disk);
    r = rw_one(f, 0x2a, 0, 8);
    /* ENOSPC, as QEMU's werror=report gives it (its default werror=enospc would stop) */
    expect_sense(&r, 0x7, 0x27, 0x07);  /* DATA PROTECT, space allocation failed */
    assert_int_equal(rw_one(f, 0x28, 0, 8).status, 0);
    remote_down(f);
}

/* nbdkit's memory plugin: data, then WRITE SAME with UNMAP and without reading back zeros. */
static void test_nbdkit_memory_zeroing(void **state)
{
    struct fixture *f = *state;
    char drive[256];
    uint8_t ws[16] = { 0x93, 0x08 };    /* WRITE SAME(16), UNMAP */
    struct mpq_scsi_result r;

    nbdkit(f, false, "memory %d", DISK_BYTES);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s", f->sock);
    remote_up(f, drive);
    write_flush_verify(f);
    for (int unmap = 1; unmap >= 0; unmap--) {
        uint32_t lba = unmap ? 0 : 8192, blocks = 4096;

        ws[1] = unmap ? 0x08 : 0;
        put_be64(ws + 2, lba);
        put_be32(ws + 10, blocks);
        memset(f->ram.host + DATA, 0, 512);
        disk_command(&f->disk, ws, 16, DATA, 512, &r);
        assert_int_equal(r.status, 0);
        memset(f->disk.mirror + lba * 512ull, 0, blocks * 512ull);
    }
    disk_sync_cache(&f->disk);
    disk_read_and_compare(&f->disk);
    remote_down(f);
}

/*
 * nbdkit's log filter shows the flags: cache=writeback writes without FUA
 * (SYNCHRONIZE CACHE is a flush), cache=writethrough with FUA.
 */
static void test_fua_only_for_writethrough(void **state)
{
    struct fixture *f = *state;
    char drive[256], log[160];

    snprintf(log, sizeof(log), "%s/nbdkit.log", f->dir);
    nbdkit(f, false, "--filter=log memory %d logfile='%s'", DISK_BYTES, log);
    for (int writethrough = 0; writethrough <= 1; writethrough++) {
        snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s,cache=%s", f->sock,
                 writethrough ? "writethrough" : "writeback");
        remote_up(f, drive);
        disk_clear_unit_attention(&f->disk);
        assert_int_equal(rw_one(f, 0x2a, 0, 8).status, 0);
        disk_sync_cache(&f->disk);
        remote_down(f);
        /* The log grows: writeback's writes come first. */
        assert_int_equal(sh("grep -q 'Write .* fua=%d' '%s'", writethrough, log), 0);
        if (!writethrough) {
            assert_int_equal(sh("grep -q 'Write .* fua=1' '%s'", log), 1);
        }
        assert_int_equal(sh("grep -q ' Flush ' '%s'", log), 0);
    }
}

/* nbdkit's error filter: the guest's read fails (EIO), QMP has a BLOCK_IO_ERROR; the rest serves. */
static void test_injected_errors(void **state)
{
    struct fixture *f = *state;
    char drive[256], trigger[160];
    struct mpq_scsi_result r;

    snprintf(trigger, sizeof(trigger), "%s/fail-reads", f->dir);
    nbdkit(f, false, "--filter=error memory %d error-pread=EIO error-pread-rate=100%% "
           "error-pread-file='%s'", DISK_BYTES, trigger);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s", f->sock);
    remote_up(f, drive);
    qmp_connect(f);
    disk_clear_unit_attention(&f->disk);
    assert_int_equal(rw_one(f, 0x2a, 100, 8).status, 0);
    sh("touch '%s'", trigger);
    r = rw_one(f, 0x28, 100, 8);
    expect_sense(&r, 0xb, 0x00, 0x06);  /* EIO: ABORTED COMMAND, I/O process terminated */
    expect_io_error_event(f, "read");
    sh("rm -f '%s'", trigger);
    assert_int_equal(rw_one(f, 0x28, 100, 8).status, 0);
    remote_down(f);
}

/* The drive layer alone, on the test's own loop: requests in flight, counted as they end. */
struct drive_env {
    struct loop *loop;
    struct aio_engine *aio;
    unsigned pending;
    int failed;
};

static void on_drive_io_done(struct blk_io *io, int result)
{
    struct drive_env *e = io->opaque;

    e->failed += result < 0;
    if (--e->pending == 0) {
        loop_quit(e->loop, 0);
    }
}

/* DEPTH requests of op, each 64 KiB in three pieces (one of them not in whole sectors). */
static double run_depth(struct drive_env *e, struct drive *d, enum blk_op op, uint8_t *buf)
{
    struct blk_io io[DEPTH];
    struct iovec iov[DEPTH][3];
    double t0 = now_s();

    for (int i = 0; i < DEPTH; i++) {
        uint8_t *b = buf + i * 65536;

        iov[i][0] = (struct iovec){ b, 1000 };
        iov[i][1] = (struct iovec){ b + 1000, 31768 - 1000 };
        iov[i][2] = (struct iovec){ b + 31768, 65536 - 31768 };
        io[i] = (struct blk_io){ .op = op, .offset = (uint64_t)i * 65536, .iov = iov[i],
                                 .iovcnt = 3, .done = on_drive_io_done, .opaque = e };
        e->pending++;
        drive_submit(d, &io[i]);
    }
    loop_run(e->loop);
    assert_int_equal(e->failed, 0);
    return now_s() - t0;
}

/*
 * nbdkit's delay filter makes each read and write take 200 ms: DEPTH of
 * them in flight at once take about that, not DEPTH times that.  (On the
 * drive layer: the LSI model moves one command's data at a time.)
 */
static void test_commands_overlap(void **state)
{
    struct fixture *f = *state;
    struct drive_env e = { .loop = loop_new() };
    uint8_t *out = malloc(DEPTH * 65536), *in = malloc(DEPTH * 65536);
    char text[256], *err = NULL;
    struct drive *d;
    struct opts *o;
    double wrote, read;

    nbdkit(f, false, "--filter=delay memory %d delay-read=200ms delay-write=200ms", DISK_BYTES);
    e.aio = aio_engine_new(e.loop, 32, NULL);
    snprintf(text, sizeof(text), "id=d0,file=nbd+unix:///?socket=%s", f->sock);
    o = opts_parse(text, NULL, NULL);
    if (!(d = drive_open(o, e.aio, &err))) {
        fail_msg("%s", err);
    }
    for (int i = 0; i < DEPTH * 65536; i++) {
        out[i] = (uint8_t)xorshift64(&f->disk.rng);
    }
    wrote = run_depth(&e, d, BLK_WRITE, out);
    read = run_depth(&e, d, BLK_READ, in);
    print_message("# %d writes of 200 ms in flight together took %.2f s, reads %.2f s\n", DEPTH,
                  wrote, read);
    assert_memory_equal(in, out, DEPTH * 65536);
    assert_true(wrote >= 0.2 && wrote < 1.0);
    assert_true(read >= 0.2 && read < 1.0);
    drive_close(d);
    opts_free(o);
    aio_engine_free(e.aio);
    loop_free(e.loop);
    free(in);
    free(out);
}

/*
 * A qcow2 drive on a slow server closed with writes in flight that
 * allocate clusters (data, and write zeroes not in whole clusters):
 * drive_close() returns only when every request has completed.  (It
 * drained the NBD file's own commands, not what qcow2 defers after them:
 * requests were left behind, their done() never called, and qcow2 freed
 * under them.  Found by fuzz-nbd-server.)
 */
static void test_qcow2_close_completes_requests(void **state)
{
    enum { N = 8 };
    struct fixture *f = *state;
    struct drive_env e = { .loop = loop_new() };
    static uint8_t data[N][4096];
    struct blk_io io[N];
    struct iovec iov[N];
    char text[256], *err = NULL;
    struct drive *d;
    struct opts *o;

    /* Room past the image's end for the clusters it allocates (an export does not grow). */
    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' %d && truncate -s %d '%s'", f->image,
                        DISK_BYTES, DISK_BYTES, f->image), 0);
    nbdkit(f, false, "--filter=delay file '%s' delay-read=20ms delay-write=20ms", f->image);
    e.aio = aio_engine_new(e.loop, 32, NULL);
    snprintf(text, sizeof(text), "id=d0,file=nbd+unix:///?socket=%s,format=qcow2", f->sock);
    o = opts_parse(text, NULL, NULL);
    if (!(d = drive_open(o, e.aio, &err))) {
        fail_msg("%s", err);
    }
    for (int i = 0; i < N; i++) {
        uint64_t at = (uint64_t)i * (1 << 20) + (i % 2 ? 1536 : 0);

        memset(data[i], i + 1, sizeof(data[i]));
        iov[i] = (struct iovec){ data[i], sizeof(data[i]) };
        io[i] = (struct blk_io){ .op = i % 2 ? BLK_WRITE_ZEROES : BLK_WRITE, .offset = at,
                                 .iov = &iov[i], .iovcnt = 1, .len = sizeof(data[i]) - 1024,
                                 .done = on_drive_io_done, .opaque = &e };
        e.pending++;
        drive_submit(d, &io[i]);
    }
    drive_close(d);
    assert_int_equal(e.pending, 0);
    assert_int_equal(e.failed, 0);
    assert_int_equal(sh("qemu-img check -q -U '%s'", f->image), 0);
    opts_free(o);
    aio_engine_free(e.aio);
    loop_free(e.loop);
}

/* --- qcow2 metadata waits do not stall the remote ---------------------------------------- */

/* What the watcher saw of the remote while the burst ran: latencies in ms. */
struct stall_report {
    unsigned samples;
    double dev_p90, dev_max, qmp_p90, qmp_max;
};

/* One QMP command and its answer: the round trip in ms, or -1. */
static double qmp_round_trip(int qmp)
{
    static const char cmd[] = "{\"execute\":\"query-status\"}\n";
    char buf[4096];
    size_t used = 0;
    double t0 = now_s();

    if (write(qmp, cmd, sizeof(cmd) - 1) != (ssize_t)sizeof(cmd) - 1) {
        return -1;
    }
    while (used + 1 < sizeof(buf)) {
        struct pollfd p = { .fd = qmp, .events = POLLIN };
        ssize_t n;

        if (poll(&p, 1, 10000) <= 0 || (n = read(qmp, buf + used, sizeof(buf) - used - 1)) <= 0) {
            return -1;
        }
        used += (size_t)n;
        buf[used] = '\0';
        if (strstr(buf, "\"return\"")) {
            return (now_s() - t0) * 1e3;
        }
    }
    return -1;
}

/*
 * A child process: a register read of the other device and a QMP command,
 * every 5 ms, until stop_fd reaches its end; then the report on out_fd.
 */
static void watch_remote(struct mpq_dev *other, int qmp, int stop_fd, int out_fd)
{
    struct mpq_stats dev = { 0 }, mon = { 0 };
    struct stall_report rep = { 0 };

    for (;;) {
        struct pollfd p = { .fd = stop_fd, .events = POLLIN };
        uint64_t v;
        double t0, q;

        if (poll(&p, 1, 5) != 0) {
            break;
        }
        t0 = now_s();
        if (mpq_bar_read(other, 0, TESTDEV_REG_SCRATCH, 4, &v, NULL) < 0) {
            break;
        }
        mpq_stats_add(&dev, (now_s() - t0) * 1e3);
        if ((q = qmp_round_trip(qmp)) < 0) {
            break;
        }
        mpq_stats_add(&mon, q);
        rep.samples++;
    }
    if (rep.samples) {
        rep = (struct stall_report){ rep.samples, mpq_stats_quantile(&dev, 0.9),
                                     mpq_stats_quantile(&dev, 1), mpq_stats_quantile(&mon, 0.9),
                                     mpq_stats_quantile(&mon, 1) };
    }
    _exit(write(out_fd, &rep, sizeof(rep)) == sizeof(rep) ? 0 : 1);
}

/*
 * Every read and write of the NBD server takes STALL_DELAY_MS: a burst of
 * writes that allocate clusters of a qcow2 image on it (L2 tables and
 * refcount blocks loaded, made and written, refcounts written) waits on
 * metadata most of the time.  Meanwhile another device of the same remote
 * and its QMP monitor are served at once: qcow2 never waits for the server
 * in the loop.  (With metadata read and written synchronously, each access
 * held the loop for the whole delay, and an allocation for several.)
 */
static void test_qcow2_metadata_waits_do_not_stall_the_remote(void **state)
{
    enum { STALL_DELAY_MS = 300, IMAGE_BYTES = 48 << 20 };
    struct fixture *f = *state;
    char drive[256], qmp[192];
    const char *args[] = {
        "-device", "lsi53c895a,id=lsi0", "-drive", drive,
        "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0",
        "-device", "mpqemu-testdev,id=t0",
        "-object", "x-remote-object,id=r0,devid=lsi0,fd={fd}",
        "-object", "x-remote-object,id=r1,devid=t0,fd={fd1}",
        "-qmp", qmp, NULL,
    };
    struct mpq_dev *other;
    struct stall_report rep;
    int stop[2], out[2];
    char *err = NULL;
    pid_t watcher;

    /* 4 KiB clusters; the file has room past the image for what the writes allocate. */
    assert_int_equal(sh("qemu-img create -q -f qcow2 -o cluster_size=4k '%s' %d && "
                        "truncate -s %d '%s'", f->image, DISK_BYTES, IMAGE_BYTES, f->image), 0);
    nbdkit(f, false, "--filter=delay file '%s' delay-read=%dms delay-write=%dms", f->image,
           STALL_DELAY_MS, STALL_DELAY_MS);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s,format=qcow2", f->sock);
    snprintf(qmp, sizeof(qmp), "unix:%s,server,nowait", f->qmp_path);
    remote_start(&f->remote, 2, args);
    f->running = true;
    f->dev = remote_connect(&f->remote, 0, &f->ram);
    other = remote_connect(&f->remote, 1, &f->ram);
    mpq_set_timeout(other, 60000);
    if (!(f->disk.lsi = mpq_lsi_new(f->dev, &f->ram, DISK_IO_WORK, &err))) {
        fail_msg("lsi: %s", err);
    }
    qmp_connect(f);
    disk_clear_unit_attention(&f->disk);

    assert_int_equal(pipe(stop), 0);
    assert_int_equal(pipe(out), 0);
    watcher = fork();
    assert_true(watcher >= 0);
    if (watcher == 0) {
        close(stop[1]);
        watch_remote(other, f->qmp, stop[0], out[1]);
    }
    close(stop[0]);
    close(out[1]);
    for (int i = 0; i < 2; i++) {
        disk_write_batch(&f->disk, 0, DISK_BLOCKS, true);
    }
    close(stop[1]);
    assert_int_equal(read(out[0], &rep, sizeof(rep)), sizeof(rep));
    close(out[0]);
    assert_int_equal(waitpid(watcher, NULL, 0), watcher);
    print_message("# %u round trips while the burst waited on %d ms metadata I/O: device p90 "
                  "%.1f ms (max %.1f), QMP p90 %.1f ms (max %.1f)\n", rep.samples,
                  STALL_DELAY_MS, rep.dev_p90, rep.dev_max, rep.qmp_p90, rep.qmp_max);
    /* Not one wait as long as a single access to the server (a loaded machine adds tens of ms). */
    assert_true(rep.samples >= 10);
    assert_true(rep.dev_max < STALL_DELAY_MS && rep.qmp_max < STALL_DELAY_MS);

    disk_sync_cache(&f->disk);
    disk_read_and_compare(&f->disk);
    mpq_close(other);
    remote_down(f);
    server_kill(f);
    disk_save_mirror(&f->disk, f->mirror_path);
    expect_qcow2_image_is_mirror(f);
}

/*
 * The server is killed in the middle of a batch of writes and started again
 * a second later: every write completes, the data is all there.  Over TCP,
 * so that the confined remote reconnects through its Landlock port rule.
 * The batch's tagged writes overlap (16 at once), so each is slow enough
 * that the batch is still running at the kill.
 */
static void test_server_restart(void **state)
{
    struct fixture *f = *state;
    char drive[256];
    double t0, took;

    assert_int_equal(sh("truncate -s %d '%s'", DISK_BYTES, f->image), 0);
    nbdkit(f, true, "--filter=delay file '%s' delay-write=200ms", f->image);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd://127.0.0.1:%u,file.reconnect-delay=10",
             f->port);
    remote_up(f, drive);
    disk_clear_unit_attention(&f->disk);
    disk_write_batch(&f->disk, 0, DISK_BLOCKS, true);
    sh("(set -- '%s'; sleep 0.15; " KILL_SERVER "; sleep 1; %s) >/dev/null 2>&1 &", f->pidfile,
       f->server_cmd);
    t0 = now_s();
    disk_write_batch(&f->disk, 0, DISK_BLOCKS, true);
    took = now_s() - t0;
    print_message("# the batch across the restart took %.2f s\n", took);
    assert_true(took > 1.0);
    disk_sync_cache(&f->disk);
    disk_read_and_compare(&f->disk);
    remote_down(f);
    server_kill(f);
    disk_save_mirror(&f->disk, f->mirror_path);
    assert_int_equal(sh("cmp -s '%s' '%s'", f->image, f->mirror_path), 0);
}

/*
 * The server stays away past reconnect-delay: the guest's read fails (EIO,
 * ABORTED COMMAND, BLOCK_IO_ERROR) and the remote serves on; once the server is
 * back, reads work again.
 */
static void test_past_reconnect_delay(void **state)
{
    struct fixture *f = *state;
    char drive[256];
    struct mpq_scsi_result r;
    double t0, took;

    assert_int_equal(sh("truncate -s %d '%s'", DISK_BYTES, f->image), 0);
    nbdkit(f, false, "file '%s'", f->image);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s,file.reconnect-delay=1",
             f->sock);
    remote_up(f, drive);
    qmp_connect(f);
    disk_clear_unit_attention(&f->disk);
    assert_int_equal(rw_one(f, 0x28, 0, 8).status, 0);
    t0 = now_s();       /* the delay runs from the loss of the connection */
    server_kill(f);
    r = rw_one(f, 0x28, 0, 8);
    took = now_s() - t0;
    print_message("# the read failed %.2f s after the server was killed\n", took);
    expect_sense(&r, 0xb, 0x00, 0x06);  /* EIO: ABORTED COMMAND, I/O process terminated */
    expect_io_error_event(f, "read");
    assert_true(took >= 0.9 && took < 5.0);
    r = rw_one(f, 0x2a, 0, 8);          /* still away: fails at once */
    expect_sense(&r, 0xb, 0x00, 0x06);
    server_start(f);
    for (int i = 0; i < 50 && (r = rw_one(f, 0x28, 0, 8)).status != 0; i++) {
        usleep(100000);
    }
    assert_int_equal(r.status, 0);
    remote_down(f);
}

/*
 * With an NBD drive the sandbox allows fcntl twice over (flags, and
 * F_DUPFD_CLOEXEC to reconnect): query-sandbox names it once and counts
 * each system call once.
 */
/* query-sandbox's reply, parsed (the caller puts it). */
static struct json_object *query_sandbox(struct fixture *f)
{
    const char *ask = "{\"execute\":\"query-sandbox\"}\n";
    char buf[16384] = "";
    struct json_object *reply, *ret;

    assert_int_equal(write(f->qmp, ask, strlen(ask)), (ssize_t)strlen(ask));
    qmp_read(f, buf, sizeof(buf), "\"syscalls-allowed\"", 5000);
    reply = json_tokener_parse(strchr(buf, '{') ? strchr(buf, '{') : buf);
    assert_true(json_object_object_get_ex(reply, "return", &ret));
    json_object_get(ret);
    json_object_put(reply);
    return ret;
}

static void test_sandbox_lists_each_call_once(void **state)
{
    struct fixture *f = *state;
    char drive[256];
    struct json_object *r = NULL, *enforced = NULL, *calls, *counted;
    size_t fcntls = 0, connects = 0, n;

    assert_int_equal(sh("truncate -s %d '%s'", DISK_BYTES, f->image), 0);
    nbdkit(f, false, "file '%s'", f->image);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s", f->sock);
    f->confined = true;
    remote_up(f, drive);
    qmp_connect(f);
    /* The remote confines itself once set up: ask until it has. */
    for (int i = 0; i < 50 && !json_object_get_boolean(enforced); i++) {
        json_object_put(r);
        usleep(i ? 100000 : 0);
        r = query_sandbox(f);
        json_object_object_get_ex(r, "enforced", &enforced);
    }
    assert_true(json_object_get_boolean(enforced));
    assert_true(json_object_object_get_ex(r, "syscalls", &calls));
    assert_true(json_object_object_get_ex(r, "syscalls-allowed", &counted));
    n = json_object_array_length(calls);
    for (size_t i = 0; i < n; i++) {
        const char *name = json_object_get_string(json_object_array_get_idx(calls, i));

        fcntls += !strcmp(name, "fcntl");
        connects += !strcmp(name, "connect");
    }
    print_message("# query-sandbox: %zu calls named (fcntl %zu times), %d counted\n", n, fcntls,
                  json_object_get_int(counted));
    assert_int_equal(connects, 1);      /* the NBD drive's calls are there */
    assert_int_equal(fcntls, 1);
    assert_int_equal(json_object_get_int(counted), (int)n);
    json_object_put(r);
    remote_down(f);
}

/* TLS with a pre-shared key, and a reconnect that reads the key file again inside the sandbox. */
static void test_tls_psk(void **state)
{
    struct fixture *f = *state;
    char drive[384], keys[160];

    snprintf(keys, sizeof(keys), "%s/keys.psk", f->dir);
    assert_int_equal(sh("echo alice:0123456789abcdef0123456789abcdef > '%s'", keys), 0);
    assert_int_equal(sh("truncate -s %d '%s'", DISK_BYTES, f->image), 0);
    nbdkit(f, false, "--tls=require --tls-psk='%s' file '%s'", keys, f->image);
    snprintf(drive, sizeof(drive), "id=d0,file=nbds+unix://alice@/?socket=%s&tls-psk-file=%s",
             f->sock, keys);
    remote_up(f, drive);
    write_flush_verify(f);
    server_kill(f);
    server_start(f);
    disk_write_batch(&f->disk, 0, DISK_BLOCKS, true);
    disk_sync_cache(&f->disk);
    disk_read_and_compare(&f->disk);
    remote_down(f);
}

/*
 * Runs a remote serving drive over vfio-user, confined (the binary itself,
 * not the leak runs' unconfined wrapper); whether it fails at start, saying
 * 'says'.
 */
static bool remote_refuses(struct fixture *f, const char *drive, const char *says)
{
    return sh("timeout 20 '%s' -device lsi53c895a,id=lsi0 -drive '%s' "
              "-device scsi-hd,id=sd0,drive=d0,bus=lsi0.0 -object x-vfio-user-server,id=v0,"
              "device=lsi0,socket.type=unix,socket.path='%s/refused.sock' 2>&1 | grep -qF '%s'",
              confined_remote(), drive, f->dir, says) == 0;
}

/*
 * TLS with X.509 certificates (a CA of the test's, a server certificate
 * for localhost): the server's certificate is checked against the host
 * name, so 127.0.0.1 is refused; the sandbox refuses such a drive (it would
 * resolve the name at each connection); unconfined, the disk works.
 */
static void test_tls_x509(void **state)
{
    struct fixture *f = *state;
    char drive[384], wrong_name[384];

    assert_int_equal(sh("cd '%s' && mkdir server client && "
                        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                        "-nodes -keyout ca-key.pem -out server/ca-cert.pem -days 2 "
                        "-subj /CN=mpqemu-test-ca 2>/dev/null && "
                        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                        "-keyout server/server-key.pem -out server.csr -subj /CN=localhost "
                        "2>/dev/null && echo subjectAltName=DNS:localhost > san && "
                        "openssl x509 -req -in server.csr -CA server/ca-cert.pem "
                        "-CAkey ca-key.pem -CAcreateserial -out server/server-cert.pem "
                        "-days 2 -extfile san 2>/dev/null && cp server/ca-cert.pem client/",
                        f->dir), 0);
    nbdkit(f, true, "--tls=require --tls-certificates='%s/server' memory %d", f->dir,
           DISK_BYTES);
    snprintf(drive, sizeof(drive), "id=d0,file=nbds://localhost:%u/?tls-certificates=%s/client",
             f->port, f->dir);
    snprintf(wrong_name, sizeof(wrong_name),
             "id=d0,file=nbds://127.0.0.1:%u/?tls-certificates=%s/client", f->port, f->dir);
    assert_true(remote_refuses(f, wrong_name, "Error in the certificate verification"));
    assert_true(remote_refuses(f, drive, "resolves its host name at each connection (X.509 TLS)"));
    f->unconfined = true;
    remote_up(f, drive);
    write_flush_verify(f);
    remote_down(f);
}

/* A read-only export: refused for a writable drive, served with readonly=on (writes protected). */
static void test_readonly_export(void **state)
{
    struct fixture *f = *state;
    char drive[256];
    struct mpq_scsi_result r;

    nbdkit(f, false, "-r memory %d", DISK_BYTES);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s", f->sock);
    assert_true(remote_refuses(f, drive, "export is read-only (use readonly=on)"));
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s,readonly=on", f->sock);
    remote_up(f, drive);
    disk_clear_unit_attention(&f->disk);
    assert_int_equal(rw_one(f, 0x28, 0, 8).status, 0);
    r = rw_one(f, 0x2a, 0, 8);
    expect_sense(&r, 0x7, 0x27, 0x00);  /* DATA PROTECT, write protected */
    remote_down(f);
}

/* A unix socket listening at the fixture's path (nothing accepts until the caller does). */
static int listen_on_sock(struct fixture *f)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(strlen(f->sock) < sizeof(addr.sun_path));
    memcpy(addr.sun_path, f->sock, strlen(f->sock) + 1);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(l, 4), 0);
    return l;
}

/*
 * A server of our own for what no real server sends: it answers each
 * connection with the same bytes at once (libnbd reads the answer to each
 * option after sending it), then reads what the client sends until the
 * client leaves, or with quiet_ms >= 0 until the client has sent nothing
 * for that long, and hangs up; once: after one connection, it exits.  For
 * each connection it writes a byte to count_fd (unless -1).  Its pid goes
 * in the pid file, for server_kill(); the caller reaps it.
 */
static pid_t canned_server(struct fixture *f, const uint8_t *bytes, size_t len, int quiet_ms,
                           bool once, int count_fd)
{
    int l = listen_on_sock(f);
    pid_t pid;
    FILE *pidfile;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int c; (c = accept(l, NULL, NULL)) >= 0; close(c)) {
            char sink[512];

            struct pollfd p = { .fd = c, .events = POLLIN };

            if ((count_fd >= 0 && write(count_fd, "c", 1) != 1) ||
                write(c, bytes, len) != (ssize_t)len) {
                _exit(1);
            }
            while ((quiet_ms < 0 || poll(&p, 1, quiet_ms) > 0) && read(c, sink, sizeof(sink)) > 0) {
            }
            if (once) {
                _exit(0);
            }
        }
        _exit(0);
    }
    close(l);
    assert_non_null(pidfile = fopen(f->pidfile, "w"));
    fprintf(pidfile, "%d\n", (int)pid);
    fclose(pidfile);
    return pid;
}

/*
 * An export of 2^63 bytes or more: libnbd takes the size and gives it
 * back negative, with no error of its own to report; the open fails
 * saying why (it printed a null error string, "(null)", before).
 */
enum { CANNED_HANDSHAKE = 18 + 20 + 32 + 20 };

/* A real server's handshake for libnbd: STRUCTURED_REPLY, then GO with an export of size. */
static void canned_handshake(uint8_t hs[CANNED_HANDSHAKE], uint64_t size)
{
    uint8_t *p = hs + 16;

    memcpy(hs, "NBDMAGICIHAVEOPT", 16);
    put_be16(p, 3);                     /* fixed newstyle, no zeroes */
    p += 2;
    for (int i = 0; i < 3; i++) {       /* STRUCTURED_REPLY: ACK; GO: INFO_EXPORT, ACK */
        put_be64(p, 0x0003e889045565a9ull);
        put_be32(p + 8, i ? 7 : 8);
        put_be32(p + 12, i == 1 ? 3 : 1);
        put_be32(p + 16, i == 1 ? 12 : 0);
        p += 20;
        if (i == 1) {
            put_be16(p, 0);             /* NBD_INFO_EXPORT */
            put_be64(p + 2, size);
            put_be16(p + 10, 0x4d);
            p += 12;
        }
    }
}

static void test_export_size_out_of_range(void **state)
{
    struct fixture *f = *state;
    uint8_t hs[CANNED_HANDSHAKE];
    char drive[256];
    pid_t pid;

    canned_handshake(hs, 1ull << 63);
    pid = canned_server(f, hs, sizeof(hs), -1, false, -1);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s", f->sock);
    assert_true(remote_refuses(f, drive, "export size is out of range: 9223372036854775808"));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/*
 * The server goes away while the drive is idle, and a request is the
 * first to find out (the loop has not run since): sending it fails
 * (EPIPE: the server read all there was before it closed).  libnbd 1.14
 * completes the command then (ENOTCONN) and frees it, yet returns its
 * cookie read from the freed command: whatever the allocator left there,
 * negative here (freed memory filled with 0xff by ASan's free_fill_byte
 * below; without ASan M_PERTURB does it, but glibc's tcache keeps small
 * freed blocks unfilled: there the old code failed only sometimes), a
 * failed call.  The request fails once
 * reconnect-delay has passed without a server.  (Counted as still in
 * flight after the failed call, it never ended.  Found by fuzz-nbd-server.)
 */
static void test_server_gone_before_a_request(void **state)
{
    struct fixture *f = *state;
    struct drive_env e = { .loop = loop_new() };
    static uint8_t buf[4096];
    struct iovec iov = { buf, sizeof(buf) };
    struct blk_io io = { .op = BLK_READ, .iov = &iov, .iovcnt = 1, .done = on_drive_io_done,
                         .opaque = &e };
    uint8_t hs[CANNED_HANDSHAKE];
    char text[256], *err = NULL;
    struct drive *d;
    struct opts *o;
    pid_t pid;

    canned_handshake(hs, DISK_BYTES);
    pid = canned_server(f, hs, sizeof(hs), 300, true, -1);
    e.aio = aio_engine_new(e.loop, 32, NULL);
    snprintf(text, sizeof(text),
             "id=d0,file=nbd+unix:///?socket=%s,format=raw,file.reconnect-delay=1", f->sock);
    o = opts_parse(text, NULL, NULL);
    if (!(d = drive_open(o, e.aio, &err))) {
        fail_msg("%s", err);
    }
    waitpid(pid, NULL, 0);      /* gone, having read all the client sent */
    e.pending = 1;
    mallopt(M_PERTURB, 0xff);
    drive_submit(d, &io);
    mallopt(M_PERTURB, 0);
    for (int i = 0; i < 500 && e.pending; i++) {
        loop_run_once(e.loop, 10);
    }
    assert_int_equal(e.pending, 0);
    assert_int_equal(e.failed, 1);
    drive_close(d);
    opts_free(o);
    aio_engine_free(e.aio);
    loop_free(e.loop);
}

/* --- the drive's log -------------------------------------------------------------------- */

/* How many lines of the log at path match the extended regular expression. */
static int log_lines(const char *path, const char *regex)
{
    return sh("exit $(grep -cE '%s' '%s')", regex, path);
}

/* stderr into the file at path (to count the drive's log lines); what to give log_end(). */
static int log_begin(const char *path)
{
    int log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int saved = dup(2);

    assert_true(log_fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(log_fd, 2);
    close(log_fd);
    return saved;
}

static void log_end(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

/* --- a reconnection to a server that offers less ---------------------------------------- */

enum { LESSER_WRITES = 6, LESSER_BLOCK = 4096, LESSER_ZERO_AT = 1 << 20 };

/* One request of the drive layer, and how it ended. */
struct tracked {
    struct blk_io io;
    struct iovec iov;
    struct drive_env *e;
    int result;
    bool done;
};

static void on_tracked_done(struct blk_io *io, int result)
{
    struct tracked *t = io->opaque;

    t->result = result;
    t->done = true;
    t->e->pending--;
}

static void track(struct drive_env *e, struct drive *d, struct tracked *t, enum blk_op op,
                  uint64_t offset, void *buf, uint64_t len)
{
    *t = (struct tracked){ .e = e, .iov = { buf, len } };
    t->io = (struct blk_io){ .op = op, .offset = offset, .iov = &t->iov, .iovcnt = 1, .len = len,
                             .done = on_tracked_done, .opaque = t };
    e->pending++;
    drive_submit(d, &t->io);
}

/* Runs the loop for ms milliseconds, or until nothing is pending. */
static void run_loop_for(struct drive_env *e, int ms, bool until_done)
{
    double end = now_s() + ms / 1000.0;

    while (now_s() < end && !(until_done && !e->pending)) {
        loop_run_once(e->loop, 10);
    }
}

/*
 * nbdkit's sh plugin on the fixture's image: no FUA, no WRITE_ZEROES, no
 * TRIM; FLUSH or not.  Each command's name and flags go to lesser.log.
 */
static void lesser_server(struct fixture *f, bool flush)
{
    char script[160];
    FILE *fp;

    snprintf(script, sizeof(script), "%s/lesser.sh", f->dir);
    assert_non_null(fp = fopen(script, "w"));
    fprintf(fp, "#!/bin/sh\n"
                "img='%s'; echo \"$1 $5\" >> '%s/lesser.log'\n"
                "case \"$1\" in\n"
                "get_size) stat -Lc %%s \"$img\" ;;\n"
                "pread) dd if=\"$img\" skip=$4 count=$3 iflag=count_bytes,skip_bytes "
                "status=none ;;\n"
                "pwrite) dd of=\"$img\" seek=$4 conv=notrunc oflag=seek_bytes status=none ;;\n"
                "can_write) exit 0 ;;\n"
                "can_flush) exit %d ;;\n"
                "flush) sync \"$img\" ;;\n"
                "can_fua) echo none ;;\n"
                "can_zero|can_trim|can_fast_zero|can_extents|can_multi_conn) exit 3 ;;\n"
                "*) exit 2 ;;\n"
                "esac\n", f->image, f->dir, flush ? 0 : 3);
    fclose(fp);
    assert_int_equal(chmod(script, 0755), 0);
    nbdkit(f, false, "--filter=nozero sh '%s' zeromode=none", script);
}

/*
 * A writethrough drive opened on a server offering FUA, FLUSH, WRITE_ZEROES
 * and TRIM (nbdkit file, its writes held 400 ms); writes and a write
 * zeroes sent to it, the server killed with them in flight, more writes
 * queued while it is away, and a server offering less (no FUA, no
 * WRITE_ZEROES; FLUSH or not) started in its place.  The requests were
 * made for the first server's flags (FUA): libnbd refused them on the
 * second (EINVAL, an I/O error for the guest).  Now each command is made
 * for the connection it goes out on: with FLUSH, every write lands
 * (followed by a flush) and the zeroes are written as data; without
 * FLUSH or FUA nothing can be made stable: the writes and the flush fail
 * with EIO (not sent), said once in the log, and reads still work.
 */
static void reconnect_to_lesser_server(struct fixture *f, bool flush)
{
    struct drive_env e = { .loop = loop_new() };
    static uint8_t data[LESSER_WRITES][LESSER_BLOCK], back[LESSER_BLOCK], ones[LESSER_BLOCK];
    struct tracked t[LESSER_WRITES + 3];
    char text[256], log[160], *err = NULL;
    int saved_stderr, n_errors;
    struct drive *d;
    struct opts *o;

    snprintf(log, sizeof(log), "%s/remote.log", f->dir);
    assert_int_equal(sh("truncate -s %d '%s'", DISK_BYTES, f->image), 0);
    nbdkit(f, false, "--filter=delay file '%s' delay-write=400ms delay-zero=400ms", f->image);
    e.aio = aio_engine_new(e.loop, 32, NULL);
    snprintf(text, sizeof(text), "id=d0,file=nbd+unix:///?socket=%s,cache=writethrough,"
             "file.reconnect-delay=20", f->sock);
    o = opts_parse(text, NULL, NULL);
    if (!(d = drive_open(o, e.aio, &err))) {
        fail_msg("%s", err);
    }
    /* Data where the zeroes go, written and flushed on the first server. */
    memset(ones, 0xa5, sizeof(ones));
    track(&e, d, &t[0], BLK_WRITE, LESSER_ZERO_AT, ones, LESSER_BLOCK);
    run_loop_for(&e, 5000, true);
    assert_true(t[0].done);
    assert_int_equal(t[0].result, 0);

    /* The drive's log from here on, to count what it says. */
    saved_stderr = log_begin(log);

    for (int i = 0; i < LESSER_WRITES; i++) {
        memset(data[i], 0x10 + i, LESSER_BLOCK);
    }
    /* Half in flight on the first server, and the zeroes... */
    for (int i = 0; i < LESSER_WRITES / 2; i++) {
        track(&e, d, &t[i], BLK_WRITE, (uint64_t)i * 65536, data[i], LESSER_BLOCK);
    }
    track(&e, d, &t[LESSER_WRITES], BLK_WRITE_ZEROES, LESSER_ZERO_AT, NULL, LESSER_BLOCK);
    run_loop_for(&e, 100, false);
    assert_int_equal(e.pending, LESSER_WRITES / 2 + 1);    /* held by the delay filter */
    server_kill(f);
    /* ...the other half queued while the server is away. */
    run_loop_for(&e, 100, false);
    for (int i = LESSER_WRITES / 2; i < LESSER_WRITES; i++) {
        track(&e, d, &t[i], BLK_WRITE, (uint64_t)i * 65536, data[i], LESSER_BLOCK);
    }
    track(&e, d, &t[LESSER_WRITES + 1], BLK_FLUSH, 0, NULL, 0);
    lesser_server(f, flush);
    run_loop_for(&e, 15000, true);
    assert_int_equal(e.pending, 0);
    track(&e, d, &t[LESSER_WRITES + 2], BLK_READ, 0, back, LESSER_BLOCK);
    run_loop_for(&e, 5000, true);

    log_end(saved_stderr);
    sh("cat '%s' >&2", log);

    for (int i = 0; i < LESSER_WRITES + 2; i++) {
        assert_true(t[i].done);
        assert_int_equal(t[i].result, flush ? 0 : -EIO);
    }
    assert_int_equal(t[LESSER_WRITES + 2].result, 0);
    n_errors = log_lines(log, "offers less than the export had: no FLUSH no FUA no "
                         "WRITE_ZEROES; writes fail with EIO; flushes fail with EIO$");
    if (flush) {
        assert_int_equal(n_errors, 0);
        assert_int_equal(sh("grep -q 'offers less than the export had: no FUA no WRITE_ZEROES; "
                            "a flush follows each write; zeros are written as data$' '%s'",
                            log), 0);
        assert_memory_equal(back, data[0], LESSER_BLOCK);
        /* A flush after each write (and after the zeroes), and the guest's. */
        assert_true(sh("exit $(grep -c '^flush' '%s/lesser.log')", f->dir) >=
                    LESSER_WRITES + 2);
    } else {
        assert_int_equal(n_errors, 1);
        assert_int_equal(sh("grep -q '^pwrite' '%s/lesser.log'", f->dir), 1);   /* none sent */
        for (int i = 0; i < LESSER_BLOCK; i++) {
            assert_int_equal(back[i], 0);   /* the first server never wrote it */
        }
    }
    drive_close(d);
    opts_free(o);
    aio_engine_free(e.aio);
    loop_free(e.loop);

    /* The image: every write (and the zeroes) there, or none of them. */
    server_kill(f);
    for (int i = 0; i <= LESSER_WRITES; i++) {
        uint64_t at = i < LESSER_WRITES ? (uint64_t)i * 65536 : LESSER_ZERO_AT;
        int fd = open(f->image, O_RDONLY);

        assert_true(fd >= 0);
        assert_int_equal(pread(fd, back, LESSER_BLOCK, (off_t)at), LESSER_BLOCK);
        close(fd);
        if (i == LESSER_WRITES) {
            assert_int_equal(back[0], flush ? 0 : 0xa5);
            assert_int_equal(back[LESSER_BLOCK - 1], flush ? 0 : 0xa5);
        } else {
            assert_memory_equal(back, flush ? data[i] : (uint8_t[LESSER_BLOCK]){ 0 },
                                LESSER_BLOCK);
        }
    }
}

static void test_reconnect_without_fua(void **state)
{
    reconnect_to_lesser_server(*state, true);
}

static void test_reconnect_without_flush_or_fua(void **state)
{
    reconnect_to_lesser_server(*state, false);
}

/*
 * A server that comes back taking only whole 4 KiB blocks, where the drive
 * was opened on one taking any: its requests in 512-byte sectors would be
 * refused by libnbd (EINVAL).  That server is refused as another export:
 * the write waits, fails with EIO after reconnect-delay, and works once the
 * first server is back.
 */
static void test_reconnect_block_size_grew(void **state)
{
    struct fixture *f = *state;
    struct drive_env e = { .loop = loop_new() };
    static uint8_t sector[512];
    struct tracked t;
    char text[256], first_cmd[sizeof(f->server_cmd)], *err = NULL;
    struct drive *d;
    struct opts *o;

    assert_int_equal(sh("truncate -s %d '%s'", DISK_BYTES, f->image), 0);
    nbdkit(f, false, "file '%s'", f->image);
    memcpy(first_cmd, f->server_cmd, sizeof(first_cmd));
    e.aio = aio_engine_new(e.loop, 32, NULL);
    snprintf(text, sizeof(text), "id=d0,file=nbd+unix:///?socket=%s,file.reconnect-delay=1",
             f->sock);
    o = opts_parse(text, NULL, NULL);
    if (!(d = drive_open(o, e.aio, &err))) {
        fail_msg("%s", err);
    }
    memset(sector, 0x3c, sizeof(sector));
    server_kill(f);
    nbdkit(f, false, "--filter=blocksize-policy file '%s' blocksize-minimum=4096 "
           "blocksize-preferred=4096 blocksize-error-policy=error", f->image);
    track(&e, d, &t, BLK_WRITE, 512, sector, sizeof(sector));
    run_loop_for(&e, 10000, true);
    assert_true(t.done);
    assert_int_equal(t.result, -EIO);
    server_kill(f);
    memcpy(f->server_cmd, first_cmd, sizeof(first_cmd));
    server_start(f);
    for (int i = 0; i < 50; i++) {
        track(&e, d, &t, BLK_WRITE, 512, sector, sizeof(sector));
        run_loop_for(&e, 10000, true);
        if (t.result == 0) {
            break;
        }
        usleep(100000);
    }
    assert_int_equal(t.result, 0);
    drive_close(d);
    opts_free(o);
    aio_engine_free(e.aio);
    loop_free(e.loop);
    assert_int_equal(sh("cmp -s -i 512:0 -n 512 '%s' /dev/zero", f->image), 1);
}

/* A drive on nbdkit's memory plugin at the fixture's socket; more: options after the file. */
static struct drive *open_memory_drive(struct fixture *f, struct drive_env *e, const char *more,
                                       struct opts **o)
{
    char text[256], *err = NULL;
    struct drive *d;

    nbdkit(f, false, "memory %d", DISK_BYTES);
    e->aio = aio_engine_new(e->loop, 32, NULL);
    snprintf(text, sizeof(text), "id=d0,file=nbd+unix:///?socket=%s%s", f->sock, more);
    *o = opts_parse(text, NULL, NULL);
    if (!(d = drive_open(*o, e->aio, &err))) {
        fail_msg("%s", err);
    }
    return d;
}

static void close_drive(struct drive_env *e, struct drive *d, struct opts *o)
{
    drive_close(d);
    opts_free(o);
    aio_engine_free(e->aio);
    loop_free(e->loop);
}

/*
 * The server's socket takes the connection and nothing answers (a server
 * stopped, or a listener that does not accept: the kernel's backlog takes
 * the connection).  The handshake never ends, yet I/O waiting for it fails
 * once reconnect-delay has passed, and a close does not wait for ever.
 * (The deadline was seen only between attempts: a request waited for good.)
 */
static void test_reconnect_to_a_silent_server(void **state)
{
    struct fixture *f = *state;
    struct drive_env e = { .loop = loop_new() };
    static uint8_t buf[4096];
    struct tracked t, late;
    struct opts *o;
    struct drive *d = open_memory_drive(f, &e, ",file.reconnect-delay=1", &o);
    double t0;
    int l;

    server_kill(f);
    l = listen_on_sock(f);
    t0 = now_s();
    track(&e, d, &t, BLK_READ, 0, buf, sizeof(buf));
    run_loop_for(&e, 5000, true);
    print_message("# the read ended after %.2f s\n", now_s() - t0);
    assert_true(t.done);
    assert_int_equal(t.result, -EIO);
    assert_true(now_s() - t0 < 4.0);
    /* Still no answer: more I/O fails at once, and the close returns. */
    track(&e, d, &late, BLK_WRITE, 0, buf, sizeof(buf));
    run_loop_for(&e, 100, true);
    assert_true(late.done);
    assert_int_equal(late.result, -EIO);
    close_drive(&e, d, o);
    close(l);
}

/*
 * log_ratelimit's burst; the connection the lines end by, one late should
 * the first loss not be a short outage; the connections to wait for: two
 * more outages past that, of a second each.
 */
enum { FLAP_BURST = 10, FLAP_QUIET_BY = FLAP_BURST + 2, FLAP_CONNECTIONS = FLAP_QUIET_BY + 2 };

/*
 * A server that completes each handshake and hangs up as soon as the
 * client is quiet: every reconnection succeeds and is lost again.  The
 * driver tried again 50 ms after each (a successful handshake reset the
 * pause), and each cycle said "connection lost" and "reconnected" (and
 * what the server offers less): some 40 lines a second for as long as such
 * a server liked.  Now a connection that served less than a second keeps
 * the pause growing (to a second): in the first 3 s at most 8 losses are
 * said.  And past ten such outages in a row their lines are rate-limited
 * (debug, but one in a thousand): the server counts its connections, and
 * once it has taken FLAP_QUIET_BY (some 8 s) nothing more is said over
 * the next two outages -- "no server for 1 s" included, which each outage
 * said (a reconnect-delay of 1 s: every outage reaches it).  At most ten
 * losses and reconnections were said, and one more should the first loss
 * (the drive's own server, killed) not have been such an outage.
 */
static void test_flapping_server_is_not_a_log_flood(void **state)
{
    struct fixture *f = *state;
    struct drive_env e = { .loop = loop_new() };
    uint8_t hs[CANNED_HANDSHAKE];
    char log_path[160], tick;
    int counts[2], saved_stderr, early_lost = -1, early_reconnected = -1, lost, reconnected;
    int connections = 0, said_by_then = -1, said;
    struct drive *d;
    struct opts *o;
    double t0;
    pid_t pid;

    canned_handshake(hs, DISK_BYTES);
    d = open_memory_drive(f, &e, ",file.reconnect-delay=1", &o);
    server_kill(f);
    assert_int_equal(pipe2(counts, O_CLOEXEC | O_NONBLOCK), 0);
    pid = canned_server(f, hs, sizeof(hs), 100, false, counts[1]);
    close(counts[1]);
    snprintf(log_path, sizeof(log_path), "%s/flap.log", f->dir);
    saved_stderr = log_begin(log_path);
    for (t0 = now_s(); connections < FLAP_CONNECTIONS && now_s() - t0 < 30;) {
        if (early_lost < 0 && now_s() - t0 >= 3) {
            early_lost = log_lines(log_path, "warning: .*connection lost");
            early_reconnected = log_lines(log_path, "warning: .*reconnected after");
        }
        loop_run_once(e.loop, 10);
        while (read(counts[0], &tick, 1) == 1) {
            if (++connections == FLAP_QUIET_BY) {
                said_by_then = log_lines(log_path, ".");
            }
        }
    }
    log_end(saved_stderr);
    said = log_lines(log_path, ".");
    lost = log_lines(log_path, "warning: .*connection lost");
    reconnected = log_lines(log_path, "warning: .*reconnected after");
    print_message("# in 3 s: %d losses, %d reconnections said; in %.1f s, %d connections: %d "
                  "losses, %d reconnections said; %d lines by connection %d, %d at the end\n",
                  early_lost, early_reconnected, now_s() - t0, connections, lost, reconnected,
                  said_by_then, FLAP_QUIET_BY, said);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(counts[0]);
    assert_true(early_lost >= 1 && early_lost <= 8);
    assert_true(early_reconnected >= 1 && early_reconnected <= 8);
    assert_int_equal(connections, FLAP_CONNECTIONS);
    assert_int_equal(said, said_by_then);
    assert_true(lost >= FLAP_BURST && lost <= FLAP_BURST + 1);
    assert_true(reconnected >= FLAP_BURST && reconnected <= FLAP_BURST + 1);
    close_drive(&e, d, o);
}

/*
 * The entries of this process's epoll instances (/proc/self/fdinfo): how
 * many, and in *stale how many of them no fd of ours names any more (the
 * number closed, or open on another file than the one watched).  epoll
 * keys an entry by the open file and keeps it as long as any process
 * holds a copy of that file, whatever became of our fd.
 */
static int epoll_entries(int *stale)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    assert_non_null(dir);
    *stale = 0;
    while ((de = readdir(dir))) {
        char path[300], link[64], line[256];
        ssize_t len;
        FILE *fp;

        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        if ((len = readlink(path, link, sizeof(link) - 1)) < 0) {
            continue;
        }
        link[len] = '\0';
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", de->d_name);
        if (strcmp(link, "anon_inode:[eventpoll]") || !(fp = fopen(path, "r"))) {
            continue;
        }
        while (fgets(line, sizeof(line), fp)) {
            const char *ino_at = strstr(line, " ino:");
            unsigned long ino;
            struct stat st;
            int tfd;

            if (sscanf(line, "tfd: %d", &tfd) != 1 || !ino_at ||
                sscanf(ino_at, " ino:%lx", &ino) != 1) {
                continue;
            }
            n++;
            *stale += fstat(tfd, &st) < 0 || st.st_ino != ino;
        }
        fclose(fp);
    }
    closedir(dir);
    return n;
}

/*
 * Another process holds a copy of the drive's socket (here a child forked
 * while the drive is connected; an fd inherited by a helper, or passed
 * on, would do the same).  When the server went away, libnbd closed its
 * fd but the socket lived on in the child, and so did its epoll entry:
 * EPOLL_CTL_DEL on the closed number failed (EBADF), and the entry went on
 * reporting the dead socket's end to the drive's watch -- with no handle
 * to give it to (a crash), later with the next connection's, and after the
 * drive's close to freed memory.  Now the entry goes with the connection,
 * the loop is quiet while the drive waits for the server, the drive
 * reconnects and serves, and its close leaves no entry behind.
 */
static void test_socket_copy_in_another_process(void **state)
{
    struct fixture *f = *state;
    struct drive_env e = { .loop = loop_new() };
    static uint8_t buf[4096], back[4096];
    struct tracked t;
    struct opts *o;
    struct drive *d = open_memory_drive(f, &e, "", &o);
    int connected, stale, ran = 0;
    double end;
    pid_t child;

    memset(buf, 0x5a, sizeof(buf));
    track(&e, d, &t, BLK_WRITE, 0, buf, sizeof(buf));
    run_loop_for(&e, 5000, true);
    assert_int_equal(t.result, 0);
    connected = epoll_entries(&stale);
    assert_int_equal(stale, 0);

    assert_true((child = fork()) >= 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pause();
        _exit(0);
    }
    server_kill(f);
    /* The end of the socket is the loop's only event: the drive finds the connection lost. */
    assert_true(loop_run_once(e.loop, 5000) >= 1);
    assert_int_equal(epoll_entries(&stale), connected - 1);
    assert_int_equal(stale, 0);
    /* Only the timer of the attempts to reconnect runs while the server is away. */
    for (end = now_s() + 0.3; now_s() < end;) {
        ran += loop_run_once(e.loop, 10);
    }
    print_message("# %d handlers ran in 300 ms without a server\n", ran);
    assert_true(ran < 20);

    server_start(f);
    track(&e, d, &t, BLK_WRITE, 4096, buf, sizeof(buf));
    run_loop_for(&e, 10000, true);
    assert_int_equal(t.result, 0);
    track(&e, d, &t, BLK_READ, 4096, back, sizeof(back));
    run_loop_for(&e, 5000, true);
    assert_int_equal(t.result, 0);
    assert_memory_equal(back, buf, sizeof(buf));
    assert_int_equal(epoll_entries(&stale), connected);
    assert_int_equal(stale, 0);

    /* Closed: neither its socket's entry nor its timer's is left. */
    drive_close(d);
    assert_int_equal(epoll_entries(&stale), connected - 2);
    assert_int_equal(stale, 0);
    assert_int_equal(loop_run_once(e.loop, 50), 0);
    opts_free(o);
    aio_engine_free(e.aio);
    loop_free(e.loop);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

/* A server that takes at most 64 KiB a command (and errors on more): 1 MiB I/O is split. */
static void test_block_size_limits(void **state)
{
    struct fixture *f = *state;
    char drive[256];

    nbdkit(f, false, "--filter=blocksize-policy memory %d blocksize-minimum=512 "
           "blocksize-preferred=4096 blocksize-maximum=65536 blocksize-error-policy=error",
           DISK_BYTES);
    snprintf(drive, sizeof(drive), "id=d0,file=nbd+unix:///?socket=%s", f->sock);
    remote_up(f, drive);
    write_flush_verify(f);
    remote_down(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qemu_nbd_raw_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qemu_nbd_qcow2_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_over_nbd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_over_nbd_cannot_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nbdkit_memory_zeroing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fua_only_for_writethrough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_injected_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_close_completes_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_gone_before_a_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_metadata_waits_do_not_stall_the_remote, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_past_reconnect_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_lists_each_call_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_psk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_x509, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_size_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_without_fua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_without_flush_or_fua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_block_size_grew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_size_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_to_a_silent_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flapping_server_is_not_a_log_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_copy_in_another_process, setup, teardown),
    };

    /* NBD_TEST=PATTERN runs the tests whose names match. */
    if (getenv("NBD_TEST")) {
        cmocka_set_test_filter(getenv("NBD_TEST"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
