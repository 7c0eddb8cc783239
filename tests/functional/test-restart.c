// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * mpqemu-remote -restart on: the device process killed at exact points,
 * over our own client (MPQEMU_TRANSPORT selects the protocol, as for the
 * device tests).  A tracer thread attaches to the device process with
 * ptrace, as test-sandbox.c does, lets it run from system call to system
 * call and SIGKILLs it at the one chosen:
 *
 *   (a) the entry of the send of a reply: the request was read, not answered
 *   (b) the poll of a vfio-user DMA reply wait (vfio-user only)
 *   (c) the return of the send of a reply: between a reply and the next read
 *   (d) the entry of the eventfd write that raises an interrupt
 *   (e) the same, in a bottom half a write set going, before the write's reply
 *
 * After each, the request in flight gets exactly one answer (nothing more
 * arrives on the client's socket), and the device works: registers and
 * BARs kept, guest memory and interrupts.  Then: the LSI reports a SCSI
 * bus reset and runs commands with the right data, a qcow2 allocation
 * killed many times leaves an image `qemu-img check` finds clean but for
 * leaks (reported), writes into new clusters completed before a kill are
 * read back after it, several devices of one process all come back, and the
 * budget stops a device process that dies in a loop.
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
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client-internal.h"
#include "client/mpqemu-client.h"
#include "client/mpqemu-lsi.h"
#include "harness.h"
#include "hw/testdev.h"
#include "tracer.h"
#include "pci/pci.h"
#include "util.h"
#include "util/byteorder.h"

enum {
    RAM_SIZE = 4 << 20, WORK_OFFSET = 1 << 20, BUF_A = 2 << 20, BUF_B = 3 << 20,
    DISK_BLOCKS = 8192,
    NO_FD_RAM_GPA = 0x10000000, NO_FD_RAM_SIZE = 1 << 16,
    QCOW2_KILLS = 8,
    MAX_SAMPLES = 64,
};

static bool vfio_user(void)
{
    const char *t = getenv("MPQEMU_TRANSPORT");

    return t && !strcmp(t, "vfio-user");
}

/* --- kill -> answer figures --------------------------------------------------------- */

static double samples_ms[MAX_SAMPLES];
static size_t n_samples;

static void note_recovery(double kill_us)
{
    double ms = (mpq_now_us() - kill_us) / 1000;

    if (n_samples < MAX_SAMPLES) {
        samples_ms[n_samples++] = ms;
    }
    printf("# kill -> next answer: %.1f ms\n", ms);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void print_recovery_figures(void)
{
    if (!n_samples) {
        return;
    }
    qsort(samples_ms, n_samples, sizeof(double), by_value);
    printf("# %s: kill -> next answer over %zu kills: median %.1f ms, worst %.1f ms\n",
           vfio_user() ? "vfio-user" : "multi-process", n_samples, samples_ms[n_samples / 2],
           samples_ms[n_samples - 1]);
}

/* --- the device process --------------------------------------------------------------- */

/* The keeper's child: the device process (the newest, if one is dying). */
static pid_t device_pid(pid_t keeper, pid_t not)
{
    for (int tries = 0; tries < 2000; tries++) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t found = 0;

        while (d && (de = readdir(d))) {
            char path[64], line[256];
            FILE *fp;
            int pid = atoi(de->d_name);

            if (pid <= 0 || pid == not) {
                continue;
            }
            snprintf(path, sizeof(path), "/proc/%d/status", pid);
            if (!(fp = fopen(path, "r"))) {
                continue;
            }
            while (fgets(line, sizeof(line), fp)) {
                if (!strncmp(line, "PPid:", 5) && atoi(line + 5) == keeper) {
                    found = pid;
                }
                if (!strncmp(line, "State:", 6) && strchr(line, 'Z')) {
                    found = 0;
                    break;
                }
            }
            fclose(fp);
            if (found) {
                break;
            }
        }
        if (d) {
            closedir(d);
        }
        if (found) {
            return found;
        }
        usleep(5000);
    }
    fail_msg("the keeper %d has no device process", (int)keeper);
    return -1;
}

/* --- the tracer (tracer.c) in a thread ------------------------------------------------ */

enum kill_point { AT_ENTRY, AT_EXIT };

struct tracer {
    pid_t pid;
    long calls[2];              /* system calls to stop at (-1: none) */
    enum kill_point when;
    bool eventfd_only;          /* write(2) to an eventfd only */
    int armed[2];               /* a pipe: the tracer is attached */
    struct tracer_kill kill;
    double kill_us;
    pthread_t thread;
};

static bool wanted(pid_t pid, const struct syscall_stop *s, void *opaque)
{
    struct tracer *t = opaque;

    if ((s->nr != t->calls[0] && s->nr != t->calls[1]) || s->entry != (t->when == AT_ENTRY)) {
        return false;
    }
    if (t->eventfd_only && !tracer_fd_names(pid, s->args[0], "eventfd")) {
        return false;
    }
    t->kill_us = mpq_now_us();
    return true;
}

/* Follows the process from system call to system call; SIGKILLs it at the chosen one. */
static void *trace(void *opaque)
{
    struct tracer *t = opaque;
    char one = tracer_seize(t->pid) == 0;

    if (write(t->armed[1], &one, 1) != 1 || !one) {
        return NULL;
    }
    tracer_kill_at(t->pid, wanted, t, &t->kill);
    return NULL;
}

/* Attaches to the device process; returns once it is stopped and armed. */
static void arm(struct tracer *t, pid_t device, long call1, long call2, enum kill_point when,
                bool eventfd_only)
{
    char ok = 0;

    memset(t, 0, sizeof(*t));
    t->pid = device;
    t->eventfd_only = eventfd_only;
    t->calls[0] = call1;
    t->calls[1] = call2;
    t->when = when;
    assert_int_equal(pipe(t->armed), 0);
    assert_int_equal(pthread_create(&t->thread, NULL, trace, t), 0);
    assert_int_equal(read(t->armed[0], &ok, 1), 1);
    assert_true(ok);
}

static void disarm(struct tracer *t)
{
    bool killed = false;

    /* The answer may come before the tracer has seen the call return (c). */
    for (int i = 0; i < 500 && !(killed = __atomic_load_n(&t->kill.killed, __ATOMIC_ACQUIRE));
         i++) {
        usleep(10000);
    }
    if (!killed) {
        kill(t->pid, SIGKILL);      /* never reached its call: the test fails below */
    }
    pthread_join(t->thread, NULL);
    close(t->armed[0]);
    close(t->armed[1]);
    assert_true(t->kill.killed);
}

/* --- fixtures ---------------------------------------------------------------------- */

struct fixture {
    struct remote remote;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    struct mpq_pci_info info;
    struct mpq_lsi *lsi;
    char image[64];
};

static struct mpq_dev *connect_and_probe(struct fixture *f)
{
    char *err = NULL;
    struct mpq_dev *d;

    assert_int_equal(mpq_ram_create(&f->ram, 0, RAM_SIZE, NULL), 0);
    d = remote_connect(&f->remote, 0, &f->ram);
    if (mpq_probe(d, &f->info, &err) < 0) {
        fail_msg("probe: %s", err);
    }
    /* Every write waits for its answer: the journal sends it again after a kill. */
    mpq_set_posted_writes(d, false);
    return d;
}

static int setup_testdev(void **state)
{
    static const char *const args[] = {
        "{fd}", "-device", "mpqemu-testdev,id=t0", "-restart", "on", NULL,
    };
    struct fixture *f = calloc(1, sizeof(*f));

    remote_start(&f->remote, 1, args);
    f->dev = connect_and_probe(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    mpq_lsi_free(f->lsi);
    mpq_close(f->dev);
    assert_int_equal(remote_expect_exit(&f->remote), 0);
    mpq_ram_destroy(&f->ram);
    if (f->image[0]) {
        unlink(f->image);
    }
    free(f);
    return 0;
}

static uint64_t rd(struct mpq_dev *d, uint64_t off)
{
    uint64_t v = 0;
    char *err = NULL;

    if (mpq_bar_read(d, 0, off, 4, &v, &err) < 0) {
        fail_msg("read 0x%llx: %s", (unsigned long long)off, err);
    }
    return v;
}

static void wr(struct mpq_dev *d, uint64_t off, uint64_t v)
{
    char *err = NULL;

    if (mpq_bar_write(d, 0, off, 4, v, &err) < 0) {
        fail_msg("write 0x%llx: %s", (unsigned long long)off, err);
    }
}

/* Exactly one answer: nothing more comes on the client's socket. */
static void expect_quiet_stream(struct mpq_dev *d)
{
    struct pollfd p = { .fd = d->sock, .events = POLLIN };

    assert_int_equal(poll(&p, 1, 100), 0);
}

/* Registers, BARs, guest memory and interrupts, after a restart. */
static void expect_testdev_works(struct fixture *f, uint32_t scratch)
{
    uint8_t *guest = f->ram.host + BUF_A;
    uint32_t bar0 = 0;
    char *err = NULL;

    assert_int_equal(rd(f->dev, TESTDEV_REG_SCRATCH), scratch);
    assert_int_equal(mpq_cfg_read(f->dev, PCI_BASE_ADDRESS_0, 4, &bar0, &err), 0);
    assert_int_equal(bar0 & ~0xfu, (uint32_t)f->info.bars[0].addr);
    wr(f->dev, TESTDEV_REG_IRQ_STATUS, 0xff);
    mpq_intx_eoi(f->dev);
    while (mpq_intx_wait(f->dev, 0) > 0) {
        mpq_intx_eoi(f->dev);       /* interrupts of the device before the kill */
    }
    for (int i = 0; i < 256; i++) {
        guest[i] = (uint8_t)(i * 7 + scratch);
    }
    wr(f->dev, TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_DMA_DONE);
    wr(f->dev, TESTDEV_REG_DMA_ADDR, BUF_A);
    wr(f->dev, TESTDEV_REG_DMA_LEN, 256);
    wr(f->dev, TESTDEV_REG_DMA_CMD, TESTDEV_DMA_FROM_GUEST);
    assert_int_equal(mpq_intx_wait(f->dev, 5000), 1);
    wr(f->dev, TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_DMA_DONE);
    mpq_intx_eoi(f->dev);
    wr(f->dev, TESTDEV_REG_DMA_ADDR, BUF_B);
    wr(f->dev, TESTDEV_REG_DMA_CMD, TESTDEV_DMA_TO_GUEST);
    assert_int_equal(mpq_intx_wait(f->dev, 5000), 1);
    wr(f->dev, TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_DMA_DONE);
    mpq_intx_eoi(f->dev);
    assert_memory_equal(f->ram.host + BUF_B, guest, 256);
    wr(f->dev, TESTDEV_REG_IRQ_MASK, 0);
}

/* --- (a) to (d) --------------------------------------------------------------------- */

/* (a) The request was read; the process dies as it sends the reply. */
static void test_killed_sending_a_reply(void **state)
{
    struct fixture *f = *state;
    struct tracer t;

    wr(f->dev, TESTDEV_REG_SCRATCH, 0x1234);
    arm(&t, device_pid(f->remote.pid, 0), SYS_sendmsg, SYS_sendto, AT_ENTRY, false);
    assert_int_equal(rd(f->dev, TESTDEV_REG_SCRATCH), 0x1234);
    note_recovery(t.kill_us);
    disarm(&t);
    expect_quiet_stream(f->dev);
    expect_testdev_works(f, 0x1234);
}

/* (c) The reply went out; the process dies before it reads the next request. */
static void test_killed_after_a_reply(void **state)
{
    struct fixture *f = *state;
    struct tracer t;

    wr(f->dev, TESTDEV_REG_SCRATCH, 0x5678);
    arm(&t, device_pid(f->remote.pid, 0), SYS_sendmsg, SYS_sendto, AT_EXIT, false);
    assert_int_equal(rd(f->dev, TESTDEV_REG_ID), TESTDEV_MAGIC);
    disarm(&t);
    assert_int_equal(rd(f->dev, TESTDEV_REG_SCRATCH), 0x5678);
    note_recovery(t.kill_us);
    expect_quiet_stream(f->dev);
    expect_testdev_works(f, 0x5678);
}

/* (d) The process dies writing the eventfd of the interrupt it raises. */
static void test_killed_raising_an_interrupt(void **state)
{
    struct fixture *f = *state;
    struct tracer t;

    wr(f->dev, TESTDEV_REG_SCRATCH, 0x9abc);
    wr(f->dev, TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_SOFT);
    arm(&t, device_pid(f->remote.pid, 0), SYS_write, -1, AT_ENTRY, true);
    wr(f->dev, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    note_recovery(t.kill_us);
    disarm(&t);
    expect_quiet_stream(f->dev);
    /* The line was high in the registers the new process found: the interrupt comes. */
    assert_int_equal(mpq_intx_wait(f->dev, 5000), 1);
    assert_int_equal(rd(f->dev, TESTDEV_REG_IRQ_STATUS) & TESTDEV_IRQ_SOFT, TESTDEV_IRQ_SOFT);
    expect_testdev_works(f, 0x9abc);
}

/*
 * (e) The write was read and its handler returned; the process dies in the
 * work the write set going (a bottom half: the DMA, then the eventfd write
 * of its interrupt), before the write's reply, which leaves at the end of
 * the loop's round.  The VMM gets one answer, from the next process, to
 * which the keeper sent the write again: the DMA ran there (the buffer,
 * not in the checkpoint, holds the data).  At least once, not exactly
 * once: the dead process's DMA was counted in the checkpoint's registers
 * before its interrupt, so DMA_COUNT says two (docs/restart.md).
 */
static void test_killed_in_a_writes_work(void **state)
{
    struct fixture *f = *state;
    uint8_t *guest = f->ram.host + BUF_A;
    struct tracer t;
    uint32_t count;

    for (int i = 0; i < 512; i++) {
        guest[i] = (uint8_t)(i * 3 + 11);
    }
    memset(f->ram.host + BUF_B, 0, 512);
    wr(f->dev, TESTDEV_REG_SCRATCH, 0x2468);
    wr(f->dev, TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_DMA_DONE);
    wr(f->dev, TESTDEV_REG_DMA_ADDR, BUF_A);
    wr(f->dev, TESTDEV_REG_DMA_LEN, 512);
    count = (uint32_t)rd(f->dev, TESTDEV_REG_DMA_COUNT);
    arm(&t, device_pid(f->remote.pid, 0), SYS_write, -1, AT_ENTRY, true);
    wr(f->dev, TESTDEV_REG_DMA_CMD_BH, TESTDEV_DMA_FROM_GUEST);
    note_recovery(t.kill_us);
    disarm(&t);
    expect_quiet_stream(f->dev);
    assert_int_equal(rd(f->dev, TESTDEV_REG_DMA_COUNT), count + 2);
    assert_int_equal(rd(f->dev, TESTDEV_REG_STATUS) & TESTDEV_STATUS_DMA_ERROR, 0);
    assert_int_equal(mpq_intx_wait(f->dev, 5000), 1);
    wr(f->dev, TESTDEV_REG_DMA_ADDR, BUF_B);
    wr(f->dev, TESTDEV_REG_DMA_CMD, TESTDEV_DMA_TO_GUEST);
    assert_memory_equal(f->ram.host + BUF_B, guest, 512);
    expect_quiet_stream(f->dev);
    expect_testdev_works(f, 0x2468);
}

/* (b) vfio-user only: the process dies waiting for the reply to its DMA_READ. */
static void test_killed_in_a_dma_reply_wait(void **state)
{
    struct fixture *f = *state;
    struct mpq_ram no_fd;
    struct tracer t;
    char *err = NULL;
    uint8_t *mem;

    mem = mmap(NULL, NO_FD_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    no_fd = (struct mpq_ram){ .fd = -1, .gpa = NO_FD_RAM_GPA, .size = NO_FD_RAM_SIZE,
                              .host = mem };
    if (mpq_map_ram(f->dev, &no_fd, 1, &err) < 0) {
        fail_msg("map: %s", err);
    }
    for (int i = 0; i < 512; i++) {
        mem[i] = (uint8_t)(i ^ 0x5a);
    }
    wr(f->dev, TESTDEV_REG_SCRATCH, 0xdef0);
    wr(f->dev, TESTDEV_REG_DMA_ADDR, NO_FD_RAM_GPA);
    wr(f->dev, TESTDEV_REG_DMA_LEN, 512);
    arm(&t, device_pid(f->remote.pid, 0), SYS_poll, SYS_ppoll, AT_ENTRY, false);
    /* Answered once the next process has done the DMA again (through us, again). */
    wr(f->dev, TESTDEV_REG_DMA_CMD, TESTDEV_DMA_FROM_GUEST);
    note_recovery(t.kill_us);
    disarm(&t);
    assert_int_equal(rd(f->dev, TESTDEV_REG_STATUS) & TESTDEV_STATUS_DMA_ERROR, 0);
    wr(f->dev, TESTDEV_REG_DMA_ADDR, BUF_A);
    wr(f->dev, TESTDEV_REG_DMA_CMD, TESTDEV_DMA_TO_GUEST);
    assert_memory_equal(f->ram.host + BUF_A, mem, 512);
    expect_quiet_stream(f->dev);
    expect_testdev_works(f, 0xdef0);
    munmap(mem, NO_FD_RAM_SIZE);
}

/* --- the LSI: a bus reset the driver recovers from ------------------------------------- */

static void make_raw_image(char *path)
{
    int fd;

    strcpy(path, "/var/tmp/mpqemu-restart-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_BLOCKS * 512), 0);
    close(fd);
}

static void start_lsi(struct fixture *f, const char *format, const char *restart)
{
    char drive[160];
    const char *args[] = {
        "{fd}", "-device", "lsi53c895a,id=lsi0", "-drive", drive,
        "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0", "-restart", restart, NULL,
    };
    char *err = NULL;

    snprintf(drive, sizeof(drive), "id=d0,file=%s,format=%s", f->image, format);
    remote_start(&f->remote, 1, args);
    f->dev = connect_and_probe(f);
    if (!(f->lsi = mpq_lsi_new(f->dev, &f->ram, WORK_OFFSET, &err))) {
        fail_msg("lsi: %s", err);
    }
}

static int setup_lsi(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    make_raw_image(f->image);
    start_lsi(f, "raw", "on");
    *state = f;
    return 0;
}

static int scsi_rw(struct fixture *f, bool write, uint32_t lba, uint32_t blocks, uint64_t gpa,
                   char **err)
{
    uint8_t cdb[10] = { write ? 0x2a : 0x28 };
    struct mpq_scsi_result r;

    put_be32(cdb + 2, lba);
    put_be16(cdb + 7, (uint16_t)blocks);
    if (mpq_lsi_command(f->lsi, 0, 0, cdb, 10, gpa, blocks * 512, &r, err) < 0) {
        return -1;
    }
    if (r.status == 0x02 && r.sense[2] == 0x06) {
        /* UNIT ATTENTION: a new process's disk was just "powered on"; retry, as Linux does. */
        return mpq_lsi_command(f->lsi, 0, 0, cdb, 10, gpa, blocks * 512, &r, err) < 0 ||
               r.status ? -1 : 0;
    }
    return r.status ? -1 : 0;
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(seed + i * 131 + (i >> 9));
    }
}

/* The chip's report of the new process: SIST0 RST with its interrupt; acknowledged. */
static void expect_bus_reset_reported(struct fixture *f)
{
    uint64_t istat = 0, sist0 = 0, sist1 = 0;

    assert_int_equal(mpq_intx_wait(f->dev, 5000), 1);
    assert_int_equal(mpq_bar_read(f->dev, 1, 0x14, 1, &istat, NULL), 0);
    assert_true(istat & 0x02);                  /* SIP */
    assert_int_equal(mpq_bar_read(f->dev, 1, 0x42, 1, &sist0, NULL), 0);
    assert_int_equal(mpq_bar_read(f->dev, 1, 0x43, 1, &sist1, NULL), 0);
    assert_true(sist0 & 0x02);                  /* RST */
    mpq_intx_eoi(f->dev);
}

/*
 * What sym53c8xx does on "SCSI BUS reset detected": sym_start_up() soft-resets
 * the chip (ISTAT SRST), sets it up again and requeues its commands.  A
 * request sent again by the keeper may have started SCRIPTS in the new
 * process meanwhile; the reset ends whatever they did.
 */
static void recover_like_sym53c8xx(struct fixture *f)
{
    char *err = NULL;

    assert_int_equal(mpq_bar_write(f->dev, 1, 0x14, 1, 0x40, &err), 0);   /* ISTAT SRST */
    assert_int_equal(mpq_bar_write(f->dev, 1, 0x14, 1, 0x00, &err), 0);
    while (mpq_intx_wait(f->dev, 50) > 0) {
        mpq_intx_eoi(f->dev);
    }
    mpq_lsi_free(f->lsi);
    if (!(f->lsi = mpq_lsi_new(f->dev, &f->ram, WORK_OFFSET, &err))) {
        fail_msg("lsi: %s", err);
    }
}

static void test_lsi_reports_a_bus_reset(void **state)
{
    struct fixture *f = *state;
    uint32_t bar1 = 0;
    uint64_t sien0 = 0;
    struct tracer t;
    char *err = NULL;

    fill(f->ram.host + BUF_A, 8 * 512, 1);
    if (scsi_rw(f, true, 100, 8, BUF_A, &err) < 0) {
        fail_msg("write: %s", err);
    }
    arm(&t, device_pid(f->remote.pid, 0), SYS_sendmsg, SYS_sendto, AT_ENTRY, false);
    assert_int_equal(mpq_bar_read(f->dev, 1, 0x40, 1, &sien0, &err), 0);
    note_recovery(t.kill_us);
    disarm(&t);
    assert_int_equal(sien0, 0xff);              /* the registers the driver set, kept */
    expect_quiet_stream(f->dev);
    expect_bus_reset_reported(f);
    recover_like_sym53c8xx(f);
    assert_int_equal(mpq_cfg_read(f->dev, PCI_BASE_ADDRESS_0 + 4, 4, &bar1, &err), 0);
    assert_int_equal(bar1 & ~0xfu, (uint32_t)f->info.bars[1].addr);
    /* New commands run, with the data written before the kill. */
    memset(f->ram.host + BUF_B, 0, 8 * 512);
    if (scsi_rw(f, false, 100, 8, BUF_B, &err) < 0) {
        fail_msg("read after restart: %s", err);
    }
    assert_memory_equal(f->ram.host + BUF_B, f->ram.host + BUF_A, 8 * 512);
    fill(f->ram.host + BUF_A, 4 * 512, 2);
    assert_int_equal(scsi_rw(f, true, 200, 4, BUF_A, &err), 0);
    assert_int_equal(scsi_rw(f, false, 200, 4, BUF_B, &err), 0);
    assert_memory_equal(f->ram.host + BUF_B, f->ram.host + BUF_A, 4 * 512);
}

/* --- qcow2: allocations killed again and again ------------------------------------------ */

static int setup_lsi_qcow2(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    strcpy(f->image, "/var/tmp/mpqemu-restart-XXXXXX");
    close(mkstemp(f->image));
    assert_int_equal(sh("qemu-img create -q -f qcow2 %s %d", f->image, DISK_BLOCKS * 512), 0);
    start_lsi(f, "qcow2", "on,max=100");
    *state = f;
    return 0;
}

/* Leaked clusters `qemu-img check` reports (exit 3: leaks only), or -1 for corruption. */
static int leaked_clusters(const char *image)
{
    char cmd[160], line[256];
    FILE *p;
    int leaks = 0, status;

    snprintf(cmd, sizeof(cmd), "qemu-img check %s 2>&1", image);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p)) {
        sscanf(line, "%d leaked clusters were found", &leaks);
    }
    status = pclose(p);
    if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3)) {
        return -1;
    }
    return leaks;
}

static void test_qcow2_allocation_killed(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    int leaks;

    for (unsigned k = 0; k < QCOW2_KILLS; k++) {
        uint32_t lba = 1024 + k * 512;     /* a new cluster each time */
        struct tracer t;

        fill(f->ram.host + BUF_A, 16 * 512, k + 10);
        /*
         * Once the allocation's first I/O is on its way: qcow2 submits its
         * metadata (table loads, refcount writes) to io_uring with the data,
         * or the loop makes a small write itself (pwritev).
         */
        arm(&t, device_pid(f->remote.pid, 0), SYS_io_uring_enter, SYS_pwritev, AT_EXIT, false);
        if (scsi_rw(f, true, lba, 16, BUF_A, &err) == 0) {
            fail_msg("the write completed: the process was not killed in it");
        }
        disarm(&t);
        /* What the driver saw instead of the command's end: the bus reset. */
        if (!strstr(err, "SIST0 0x02")) {
            fail_msg("not a bus reset: %s", err);
        }
        free(err);
        err = NULL;
        recover_like_sym53c8xx(f);
        /* The driver retries the command. */
        if (scsi_rw(f, true, lba, 16, BUF_A, &err) < 0) {
            fail_msg("write retried after restart %u: %s", k, err);
        }
        memset(f->ram.host + BUF_B, 0, 16 * 512);
        assert_int_equal(scsi_rw(f, false, lba, 16, BUF_B, &err), 0);
        assert_memory_equal(f->ram.host + BUF_B, f->ram.host + BUF_A, 16 * 512);
    }
    mpq_lsi_free(f->lsi);
    f->lsi = NULL;
    mpq_close(f->dev);
    f->dev = NULL;
    assert_int_equal(remote_expect_exit(&f->remote), 0);
    leaks = leaked_clusters(f->image);
    printf("# qcow2: %d leaked clusters after %d kills in cluster allocations\n", leaks,
           QCOW2_KILLS);
    assert_true(leaks >= 0);
    assert_true(leaks <= 2 * QCOW2_KILLS);
    /* A new remote, so that teardown finds one. */
    mpq_ram_destroy(&f->ram);
    start_lsi(f, "qcow2", "on,max=100");
}

/*
 * Writes into new clusters that the driver was told are done are there
 * after a kill: their mapping must not live only in the dead process's
 * table cache (the guest goes on, unlike after a power loss).
 */
static void test_qcow2_completed_writes_survive_a_kill(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;

    for (unsigned k = 0; k < 4; k++) {
        uint32_t lba = 5120 + k * 512;     /* a new cluster each time */
        pid_t device = device_pid(f->remote.pid, 0);

        fill(f->ram.host + BUF_A, 16 * 512, k + 50);
        if (scsi_rw(f, true, lba, 16, BUF_A, &err) < 0) {
            fail_msg("write %u: %s", k, err);
        }
        kill(device, SIGKILL);
        device_pid(f->remote.pid, device);
        expect_bus_reset_reported(f);
        recover_like_sym53c8xx(f);
        memset(f->ram.host + BUF_B, 0, 16 * 512);
        if (scsi_rw(f, false, lba, 16, BUF_B, &err) < 0) {
            fail_msg("read after restart %u: %s", k, err);
        }
        assert_memory_equal(f->ram.host + BUF_B, f->ram.host + BUF_A, 16 * 512);
    }
}

/* --- media: what a monitor and the guest did to them comes back ---------------------- */

/* Sends one QMP command on a new session; its reply line (events skipped), malloc'd. */
static char *qmp_command(const char *path, const char *command)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    char buf[16384], *line = buf, *end;
    size_t len = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), lines = 0;

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    for (int i = 0; connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0; i++) {
        assert_true(i < 500);
        usleep(10000);
    }
    dprintf(fd, "{\"execute\":\"qmp_capabilities\"}\n%s\n", command);
    /* The greeting, the capabilities' reply, then the command's (events may come between). */
    while (len < sizeof(buf) - 1) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t n = 0;

        if (poll(&p, 1, 10000) != 1 || (n = read(fd, buf + len, sizeof(buf) - 1 - len)) <= 0) {
            fail_msg("%s: no reply (%zu bytes: %.*s)", command, len, (int)len, buf);
        }
        len += (size_t)n;
        buf[len] = 0;
        for (; (end = strchr(line, '\n')); line = end + 1) {
            *end = 0;
            if (!strstr(line, "\"event\"") && ++lines == 3) {
                close(fd);
                return strdup(line);
            }
        }
    }
    fail_msg("no reply to %s", command);
    return NULL;
}

static void expect_reply(const char *path, const char *command, const char *want)
{
    char *reply = qmp_command(path, command);

    if (!strstr(reply, want)) {
        fprintf(stderr, "%s: got %s\n", command, reply);
        fail_msg("%s: wanted %s", command, want);
    }
    free(reply);
}

enum {
    MEDIA_SD0 = 0, MEDIA_SD1 = 1, MEDIA_CD = 2,         /* targets */
    CD_BLOCKS = 32,                                     /* 2048-byte blocks */
    NEW_MEDIUM_BLOCKS = 6144, SD1_GROWN_BLOCKS = DISK_BLOCKS + 2048,
};

struct media_fixture {
    struct fixture f;
    char dir[64], qmp_path[96];
    char media[96];             /* the sandbox's media directory, new.raw in it */
};

/* A command of the guest's with up to 'len' bytes of data in at BUF_B; its status and sense. */
static struct mpq_scsi_result media_command(struct fixture *f, unsigned target,
                                            const uint8_t *cdb, size_t cdb_len, uint32_t len)
{
    struct mpq_scsi_result r;
    char *err = NULL;

    if (mpq_lsi_command(f->lsi, target, 0, cdb, cdb_len, BUF_B, len, &r, &err) < 0) {
        fail_msg("target %u, command %02x: %s", target, cdb[0], err);
    }
    return r;
}

/* TEST UNIT READY: GOOD (0), or the unit attention's ASC and ASCQ (0x06 key checked). */
static unsigned unit_attention(struct fixture *f, unsigned target)
{
    static const uint8_t tur[6] = { 0x00 };
    struct mpq_scsi_result r = media_command(f, target, tur, 6, 0);

    if (!r.status) {
        return 0;
    }
    assert_int_equal(r.status, 0x02);
    assert_int_equal(r.sense[2] & 0x0f, 0x06);
    return (unsigned)r.sense[12] << 8 | r.sense[13];
}

static uint32_t capacity_blocks(struct fixture *f, unsigned target)
{
    static const uint8_t read_capacity[10] = { 0x25 };
    struct mpq_scsi_result r = media_command(f, target, read_capacity, 10, 8);

    assert_int_equal(r.status, 0);
    return be32(f->ram.host + BUF_B) + 1;
}

/* GET EVENT STATUS NOTIFICATION, polled, media class: the event code and the media status. */
static unsigned media_event(struct fixture *f, unsigned target)
{
    static const uint8_t gesn[10] = { 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0 };
    struct mpq_scsi_result r = media_command(f, target, gesn, 10, 8);

    assert_int_equal(r.status, 0);
    return (unsigned)(f->ram.host[BUF_B + 4] & 0x0f) << 8 | f->ram.host[BUF_B + 5];
}

/* MODE SENSE(6) of the caching page: whether WCE is set. */
static bool write_cache_enabled(struct fixture *f, unsigned target)
{
    static const uint8_t sense_caching[6] = { 0x1a, 0x08, 0x08, 0, 32, 0 };   /* DBD */
    struct mpq_scsi_result r = media_command(f, target, sense_caching, 6, 32);

    assert_int_equal(r.status, 0);
    assert_int_equal(f->ram.host[BUF_B + 4] & 0x3f, 0x08);
    return f->ram.host[BUF_B + 4 + 2] & 0x04;
}

/* MODE SELECT(6) of the caching page, WCE off: a header and the page, all else zero. */
static void write_cache_off(struct fixture *f, unsigned target)
{
    static const uint8_t select[6] = { 0x15, 0x10, 0, 0, 24, 0 };

    memset(f->ram.host + BUF_B, 0, 24);
    f->ram.host[BUF_B + 4] = 0x08;
    f->ram.host[BUF_B + 5] = 0x12;
    assert_int_equal(media_command(f, target, select, 6, 24).status, 0);
}

static void make_file(const char *dir, const char *name, off_t size)
{
    char path[128];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
}

/* sd0 on nbdkit (its delay filter: each read takes this long) with slow_sd0. */
enum { SLOW_SD0_READ_MS = 5000 };

static void start_media(void **state, bool confined, bool slow_sd0)
{
    struct media_fixture *m = calloc(1, sizeof(*m));
    char d0[160], d1[160], cd[160], qmp[128], sandbox[128];
    const char *args[] = {
        "{fd}", "-device", "lsi53c895a,id=lsi0", "-drive", d0, "-drive", d1, "-drive", cd,
        "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0,removable=on",
        "-device", "scsi-hd,id=sd1,drive=d1,bus=lsi0.0,scsi-id=1",
        "-device", "scsi-cd,id=cd0,drive=cd,bus=lsi0.0,scsi-id=2",
        "-qmp", qmp, "-sandbox", sandbox, "-restart", "on", NULL,
    };
    char *err = NULL;

    strcpy(m->dir, "/var/tmp/mpqemu-media-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    make_file(m->dir, "d0.raw", DISK_BLOCKS * 512);
    make_file(m->dir, "d1.raw", DISK_BLOCKS * 512);
    make_file(m->dir, "a.iso", CD_BLOCKS * 2048);
    /* Confined, the command line's images lie outside the media directory. */
    snprintf(m->media, sizeof(m->media), confined ? "%s/media" : "%s", m->dir);
    assert_true(!confined || mkdir(m->media, 0700) == 0);
    make_file(m->media, "new.raw", NEW_MEDIUM_BLOCKS * 512);
    snprintf(d0, sizeof(d0), "id=d0,file=%s/d0.raw,format=raw", m->dir);
    if (slow_sd0) {
        assert_int_equal(sh("nbdkit -U '%s/nbd.sock' -P '%s/nbd.pid' --filter=delay "
                            "file '%s/d0.raw' delay-read=%dms", m->dir, m->dir, m->dir,
                            SLOW_SD0_READ_MS), 0);
        for (int i = 0; i < 500 && sh("test -S '%s/nbd.sock'", m->dir) != 0; i++) {
            usleep(10000);
        }
        snprintf(d0, sizeof(d0), "id=d0,file=nbd+unix:///?socket=%s/nbd.sock,format=raw",
                 m->dir);
    }
    snprintf(d1, sizeof(d1), "id=d1,file=%s/d1.raw,format=raw", m->dir);
    snprintf(cd, sizeof(cd), "id=cd,file=%s/a.iso,format=raw,readonly=on", m->dir);
    snprintf(m->qmp_path, sizeof(m->qmp_path), "%s/qmp.sock", m->dir);
    snprintf(qmp, sizeof(qmp), "unix:%s,server,nowait", m->qmp_path);
    snprintf(sandbox, sizeof(sandbox), "on,allow-dir-rw=%s", m->media);
    (confined ? remote_start_confined : remote_start)(&m->f.remote, 1, args);
    m->f.dev = connect_and_probe(&m->f);
    if (!(m->f.lsi = mpq_lsi_new(m->f.dev, &m->f.ram, WORK_OFFSET, &err))) {
        fail_msg("lsi: %s", err);
    }
    *state = m;
}

static int setup_media(void **state)
{
    start_media(state, false, false);
    return 0;
}

/*
 * The same, the sandbox on in the leak runs too (their wrapper adds -sandbox
 * off), its media directory a subdirectory: the images are allowed only as
 * the command line's.
 */
static int setup_media_confined(void **state)
{
    start_media(state, true, false);
    return 0;
}

/* sd0 on a slow NBD server (see start_media()). */
static int setup_media_slow_sd0(void **state)
{
    if (sh("command -v nbdkit >/dev/null") != 0) {
        skip();
    }
    start_media(state, false, true);
    return 0;
}

static int teardown_media(void **state)
{
    struct media_fixture *m = *state;

    sh("test -f '%s/nbd.pid' && kill $(cat '%s/nbd.pid'); rm -rf '%s'", m->dir, m->dir, m->dir);
    *state = &m->f;
    teardown(state);
    return 0;
}

/*
 * sd0's medium changed for new.raw, sd1 grown and its write cache turned
 * off by the guest, cd0 locked by the guest and an eject asked of it: none
 * of it seen by the guest yet when the device process is killed.  The next
 * process presents it all.
 */
static void test_media_state_survives_a_kill(void **state)
{
    struct media_fixture *m = *state;
    struct fixture *f = &m->f;
    static const uint8_t prevent[6] = { 0x1e, 0, 0, 0, 0x01, 0 };
    char command[256], want[160];
    uint64_t sien0 = 0;
    char *err = NULL;

    while (unit_attention(f, MEDIA_SD0) || unit_attention(f, MEDIA_SD1) ||
           unit_attention(f, MEDIA_CD)) {
    }
    assert_true(write_cache_enabled(f, MEDIA_SD1));            /* cache=writeback */
    write_cache_off(f, MEDIA_SD1);
    assert_false(write_cache_enabled(f, MEDIA_SD1));
    snprintf(command, sizeof(command),
             "{\"execute\":\"blockdev-change-medium\",\"arguments\":{\"id\":\"sd0\","
             "\"filename\":\"%s/new.raw\",\"format\":\"raw\"}}", m->dir);
    expect_reply(m->qmp_path, command, "{\"return\": {}}");
    snprintf(command, sizeof(command),
             "{\"execute\":\"block_resize\",\"arguments\":{\"device\":\"d1\",\"size\":%d}}",
             SD1_GROWN_BLOCKS * 512);
    expect_reply(m->qmp_path, command, "{\"return\": {}}");
    assert_int_equal(media_command(f, MEDIA_CD, prevent, 6, 0).status, 0);
    expect_reply(m->qmp_path, "{\"execute\":\"eject\",\"arguments\":{\"id\":\"cd0\"}}",
                 "is locked and force was not specified");

    kill(device_pid(f->remote.pid, 0), SIGKILL);
    assert_int_equal(mpq_bar_read(f->dev, 1, 0x40, 1, &sien0, &err), 0);
    /* The monitor: new.raw in sd0, the guest's lock on cd0 (until the guest resets it). */
    /* Members in QEMU's order (QDict's): "file" last of "inserted". */
    snprintf(want, sizeof(want), "\"file\": \"%s/new.raw\"}, \"qdev\": \"sd0\"", m->dir);
    expect_reply(m->qmp_path, "{\"execute\":\"query-block\"}", want);
    expect_reply(m->qmp_path, "{\"execute\":\"query-block\"}",
                 "\"device\": \"cd\", \"locked\": true, \"removable\": true, \"inserted\": {");
    expect_reply(m->qmp_path, "{\"execute\":\"query-block\"}",
                 "\"qdev\": \"cd0\", \"tray_open\": false, \"type\": \"unknown\"}");
    expect_bus_reset_reported(f);
    recover_like_sym53c8xx(f);

    /* The guest: the reset, then the change it had not seen yet, then the medium. */
    assert_int_equal(unit_attention(f, MEDIA_SD0), 0x2900);
    assert_int_equal(unit_attention(f, MEDIA_SD0), 0x2800);    /* MEDIUM MAY HAVE CHANGED */
    assert_int_equal(unit_attention(f, MEDIA_SD0), 0);
    assert_int_equal(capacity_blocks(f, MEDIA_SD0), NEW_MEDIUM_BLOCKS);
    assert_int_equal(unit_attention(f, MEDIA_SD1), 0x2900);
    assert_int_equal(unit_attention(f, MEDIA_SD1), 0x2a09);    /* CAPACITY DATA HAS CHANGED */
    assert_int_equal(capacity_blocks(f, MEDIA_SD1), SD1_GROWN_BLOCKS);
    assert_false(write_cache_enabled(f, MEDIA_SD1));
    assert_true(write_cache_enabled(f, MEDIA_SD0));
    assert_int_equal(unit_attention(f, MEDIA_CD), 0x2900);
    assert_int_equal(media_event(f, MEDIA_CD), 0x0102);        /* EJECT REQUEST, medium in */
    assert_int_equal(media_event(f, MEDIA_CD), 0x0002);        /* reported once */
}

/* A guest READ of sd0, tagged: the target disconnects while the server holds its I/O. */
static void *read_sd0(void *opaque)
{
    struct fixture *f = opaque;
    struct mpq_scsi_cmd cmd = { .cdb = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 }, .cdb_len = 10,
                                .data_gpa = BUF_B, .len = 8 * 512 };
    char *err = NULL;

    mpq_lsi_run_queued(f->lsi, &cmd, 1, 1, &err);      /* ended by the kill: no status */
    free(err);
    return NULL;
}

/*
 * Sends a command that waits on the monitor's one connection: what comes
 * back within ms (the greeting, the capabilities' reply, events, perhaps
 * its answer) is in buf; the connection stays open, its fd returned.
 */
static int qmp_send(const char *path, const char *command, char *buf, size_t size, int ms)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    size_t len = 0;
    ssize_t n;

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    dprintf(fd, "{\"execute\":\"qmp_capabilities\"}\n%s\n", command);
    while (len < size - 1 && poll(&p, 1, ms) == 1 &&
           (n = read(fd, buf + len, size - 1 - len)) > 0) {
        len += (size_t)n;
    }
    buf[len] = 0;
    return fd;
}

static unsigned count_of(const char *s, const char *what)
{
    unsigned n = 0;

    for (; (s = strstr(s, what)); s++) {
        n++;
    }
    return n;
}

/*
 * The device process is killed while an eject waits for a guest READ the
 * NBD server holds: the tray is open, the medium still in it.  The next
 * process finds the medium in the open tray, as it was (the checkpoint
 * drops it only once it is out), and an eject then takes it out at once.
 */
static void test_medium_kept_while_an_eject_waits(void **state)
{
    struct media_fixture *m = *state;
    struct fixture *f = &m->f;
    static const char query[] = "{\"execute\":\"query-block\"}";
    const char *sd0 = "\"device\": \"d0\", \"locked\": false, \"removable\": true, \"inserted\"";
    const char *open_tray = "\"qdev\": \"sd0\", \"tray_open\": true";
    pthread_t reader;
    char *reply, got[4096];
    int eject;

    while (unit_attention(f, MEDIA_SD0)) {
    }
    assert_int_equal(pthread_create(&reader, NULL, read_sd0, f), 0);
    usleep(500000);                                 /* the READ reached the server */
    eject = qmp_send(m->qmp_path,
                     "{\"execute\":\"eject\",\"arguments\":{\"id\":\"sd0\",\"force\":true}}",
                     got, sizeof(got), 1000);
    /* The tray opened; the eject waits (the one answer is the capabilities'). */
    assert_non_null(strstr(got, "\"DEVICE_TRAY_MOVED\""));
    assert_int_equal(count_of(got, "\"return\""), 1);

    kill(device_pid(f->remote.pid, 0), SIGKILL);
    pthread_join(reader, NULL);
    close(eject);
    expect_reply(m->qmp_path, query, sd0);
    expect_reply(m->qmp_path, query, open_tray);
    recover_like_sym53c8xx(f);
    expect_reply(m->qmp_path, "{\"execute\":\"eject\",\"arguments\":{\"id\":\"sd0\"}}",
                 "{\"return\": {}}");
    reply = qmp_command(m->qmp_path, query);
    assert_null(strstr(reply, sd0));
    free(reply);
}

/* blockdev-change-medium of sd0 for 'file' (raw): the reply must hold 'want'. */
static void change_sd0(struct media_fixture *m, const char *file, const char *want)
{
    char command[384];

    snprintf(command, sizeof(command),
             "{\"execute\":\"blockdev-change-medium\",\"arguments\":{\"id\":\"sd0\","
             "\"filename\":\"%s\",\"format\":\"raw\"}}", file);
    expect_reply(m->qmp_path, command, want);
}

/* The device process killed; the driver sees the bus reset and recovers. */
static void kill_and_recover(struct fixture *f)
{
    uint64_t sien0 = 0;
    char *err = NULL;

    kill(device_pid(f->remote.pid, 0), SIGKILL);
    assert_int_equal(mpq_bar_read(f->dev, 1, 0x40, 1, &sien0, &err), 0);
    expect_bus_reset_reported(f);
    recover_like_sym53c8xx(f);
}

/* sd0 came back empty (no "inserted"): power-on reset, MEDIUM MAY HAVE CHANGED, NOT READY. */
static void expect_sd0_empty(struct media_fixture *m)
{
    static const uint8_t tur[6] = { 0x00 };
    struct mpq_scsi_result r;

    expect_reply(m->qmp_path, "{\"execute\":\"query-block\"}",
                 "{\"io-status\": \"ok\", \"device\": \"d0\", \"locked\": false, "
                 "\"removable\": true, \"qdev\": \"sd0\", \"tray_open\": false, "
                 "\"type\": \"unknown\"}");
    assert_int_equal(unit_attention(&m->f, MEDIA_SD0), 0x2900);
    assert_int_equal(unit_attention(&m->f, MEDIA_SD0), 0x2800);
    r = media_command(&m->f, MEDIA_SD0, tur, 6, 0);
    assert_int_equal(r.status, 0x02);
    assert_int_equal(r.sense[2] & 0x0f, 0x02);
    assert_int_equal(r.sense[12], 0x3a);                        /* medium not present */
}

/*
 * What changed while no process watched: sd0's new medium removed, sd1's
 * file grown.  sd0 comes back empty, told its medium changed; sd1 tells of
 * its new capacity.
 */
static void test_media_gone_or_resized_meanwhile(void **state)
{
    struct media_fixture *m = *state;
    struct fixture *f = &m->f;
    char file[128];

    while (unit_attention(f, MEDIA_SD0) || unit_attention(f, MEDIA_SD1)) {
    }
    snprintf(file, sizeof(file), "%s/new.raw", m->dir);
    change_sd0(m, file, "{\"return\": {}}");
    assert_int_equal(unit_attention(f, MEDIA_SD0), 0x2800);
    assert_int_equal(sh("rm '%s/new.raw' && truncate -s %d '%s/d1.raw'", m->dir,
                        SD1_GROWN_BLOCKS * 512, m->dir), 0);

    kill_and_recover(f);
    expect_sd0_empty(m);
    assert_int_equal(unit_attention(f, MEDIA_SD1), 0x2900);
    assert_int_equal(unit_attention(f, MEDIA_SD1), 0x2a09);
    assert_int_equal(capacity_blocks(f, MEDIA_SD1), SD1_GROWN_BLOCKS);
}

/*
 * A compromised device process writes what it likes into the checkpoint
 * (it maps it read-write), then dies.  As it would: the keeper's memory
 * file, found among its fds, has 'from' (a NUL-terminated string in some
 * area) replaced by 'to'.
 */
static void rewrite_checkpoint(pid_t keeper, const char *from, const char *to)
{
    char dir[64], path[320], link[256];
    struct dirent *de;
    bool done = false;
    DIR *d;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)keeper);
    assert_non_null(d = opendir(dir));
    while (!done && (de = readdir(d))) {
        ssize_t n;
        struct stat st;
        uint8_t *p, *at;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0 || (link[n] = 0, !strstr(link, "mpqemu-checkpoint"))) {
            continue;
        }
        assert_true((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        assert_true(p != MAP_FAILED);
        at = memmem(p, (size_t)st.st_size, from, strlen(from) + 1);
        assert_non_null(at);
        memset(at, 0, strlen(from));
        memcpy(at, to, strlen(to) + 1);
        munmap(p, (size_t)st.st_size);
        close(fd);
        done = true;
    }
    closedir(d);
    assert_true(done);
}

/*
 * The checkpoint names, as sd0's changed medium, a file outside the
 * sandbox's media directory, read-write: a monitor's medium change is
 * refused it, so a restart must not open it either (the new process opens
 * kept media confined, as the monitor does).  sd0 comes back empty and the
 * guest is told its medium changed; the file is neither shown nor written.
 */
static void test_kept_medium_outside_the_sandbox(void **state)
{
    struct media_fixture *m = *state;
    struct fixture *f = &m->f;
    char outside[64], secret[128], kept[128];

    strcpy(outside, "/var/tmp/mpqemu-outside-XXXXXX");
    assert_non_null(mkdtemp(outside));
    make_file(outside, "secret.raw", NEW_MEDIUM_BLOCKS * 512);
    snprintf(secret, sizeof(secret), "%s/secret.raw", outside);
    snprintf(kept, sizeof(kept), "%s/new.raw", m->media);
    while (unit_attention(f, MEDIA_SD0)) {
    }
    change_sd0(m, secret, "\"error\"");
    change_sd0(m, kept, "{\"return\": {}}");
    assert_int_equal(unit_attention(f, MEDIA_SD0), 0x2800);

    rewrite_checkpoint(f->remote.pid, kept, secret);
    kill_and_recover(f);
    expect_sd0_empty(m);
    assert_int_equal(sh("rm -rf '%s'", outside), 0);
}

/*
 * A monitor changed sd0's medium for one in the media directory, then back
 * to the command line's image (which the sandbox allows as such).  The
 * next process is confined as the first was, its command line's images
 * allowed, so it opens that image again, written data and all.
 */
static void test_kept_command_line_image(void **state)
{
    struct media_fixture *m = *state;
    struct fixture *f = &m->f;
    char file[128];
    char *err = NULL;

    fill(f->ram.host + BUF_A, 512, 0x5d);
    while (unit_attention(f, MEDIA_SD0)) {
    }
    assert_int_equal(scsi_rw(f, true, 7, 1, BUF_A, &err), 0);
    snprintf(file, sizeof(file), "%s/new.raw", m->media);
    change_sd0(m, file, "{\"return\": {}}");
    snprintf(file, sizeof(file), "%s/d0.raw", m->dir);
    change_sd0(m, file, "{\"return\": {}}");

    kill_and_recover(f);
    assert_int_equal(unit_attention(f, MEDIA_SD0), 0x2900);
    assert_int_equal(unit_attention(f, MEDIA_SD0), 0x2800);
    assert_int_equal(capacity_blocks(f, MEDIA_SD0), DISK_BLOCKS);
    memset(f->ram.host + BUF_B, 0, 512);
    assert_int_equal(scsi_rw(f, false, 7, 1, BUF_B, &err), 0);
    assert_memory_equal(f->ram.host + BUF_B, f->ram.host + BUF_A, 512);
}

/* --- several devices, one process ------------------------------------------------------ */

/* A QMP monitor greets a client on 'path' within 5 s. */
static bool qmp_greets(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    for (int i = 0; i < 500; i++, usleep(10000)) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char greeting[256] = "";

        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && poll(&p, 1, 5000) > 0 &&
            read(fd, greeting, sizeof(greeting) - 1) > 0 && strstr(greeting, "\"QMP\"")) {
            close(fd);
            return true;
        }
        close(fd);
    }
    return false;
}

static void test_several_devices_come_back(void **state)
{
    char dir[] = "/tmp/mpqemu-restart-XXXXXX", object[160], path[96], qmp[128], qmp_path[96];
    const char *args[] = {
        getenv("MPQEMU_REMOTE"), "-device", "mpqemu-testdev,id=a",
        "-device", "mpqemu-testdev,id=b", "-device", "mpqemu-testdev,id=c",
        "-object", "x-remote-object,id=ra,devid=a,fd={fd}",
        "-object", "x-remote-object,id=rb,devid=b,fd={fd1}",
        "-object", object, "-qmp", qmp, "-restart", "on", NULL,
    };
    struct mpq_dev *d[3];
    struct mpq_ram ram;
    int socks[2], status;
    char *err = NULL;
    pid_t keeper;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/c.sock", dir);
    snprintf(object, sizeof(object),
             "x-vfio-user-server,id=vc,device=c,socket.type=unix,socket.path=%s", path);
    snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", dir);
    snprintf(qmp, sizeof(qmp), "unix:%s,server,nowait", qmp_path);
    keeper = mpq_spawn((char *const *)args, 2, socks, &err);
    assert_true(keeper > 0);
    assert_int_equal(mpq_ram_create(&ram, 0, 1 << 20, NULL), 0);
    d[0] = mpq_open_mpqemu(socks[0], &err);
    d[1] = mpq_open_mpqemu(socks[1], &err);
    d[2] = mpq_open_vfio_user_wait(path, keeper, 10000, &err);
    for (int i = 0; i < 3; i++) {
        if (!d[i] || mpq_map_ram(d[i], &ram, 1, &err) < 0 || mpq_probe(d[i], NULL, &err) < 0) {
            fail_msg("device %d: %s", i, err);
        }
        /* vfio-user posts it: the keeper sends it again if the device may not have read it. */
        wr(d[i], TESTDEV_REG_SCRATCH, 0x100u + (unsigned)i);
    }
    kill(device_pid(keeper, 0), SIGKILL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rd(d[i], TESTDEV_REG_SCRATCH), 0x100u + (unsigned)i);
        assert_int_equal(rd(d[i], TESTDEV_REG_ID), TESTDEV_MAGIC);
    }
    /* The monitor came back on its path. */
    assert_true(qmp_greets(qmp_path));
    for (int i = 0; i < 3; i++) {
        mpq_close(d[i]);
    }
    kill(keeper, SIGTERM);
    assert_int_equal(mpq_reap(keeper, 10000, &status), 0);
    assert_true(WIFEXITED(status));
    mpq_ram_destroy(&ram);
    sh("rm -rf '%s'", dir);
}

/* --- the budget -------------------------------------------------------------------------- */

static void test_budget_stops_a_crash_loop(void **state)
{
    char log[] = "/tmp/mpqemu-restart-log-XXXXXX", shell[200], line[512];
    const char *args[] = {
        "/bin/sh", "-c", shell, getenv("MPQEMU_REMOTE"), "{fd}",
        "-device", "mpqemu-testdev,id=t0", "-restart", "on,max=2,window=60", NULL,
    };
    bool named = false;
    struct mpq_dev *d;
    int sock, status;
    char *err = NULL;
    pid_t keeper, device = 0;
    FILE *fp;

    (void)state;
    close(mkstemp(log));
    snprintf(shell, sizeof(shell), "exec \"$0\" \"$@\" 2>%s", log);
    keeper = mpq_spawn((char *const *)args, 1, &sock, &err);
    assert_true(keeper > 0);
    d = mpq_open_mpqemu(sock, &err);
    assert_non_null(d);
    mpq_set_timeout(d, 2000);
    for (int i = 0; i < 3; i++) {
        device = device_pid(keeper, device);
        kill(device, SIGKILL);
        if (i < 2) {
            assert_int_equal(mpq_cfg_read(d, PCI_VENDOR_ID, 2, &(uint32_t){ 0 }, &err), 0);
        }
    }
    assert_int_equal(mpq_reap(keeper, 10000, &status), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    fp = fopen(log, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp)) {
        named |= strstr(line, "restart budget (-restart max=2,window=60)") != NULL;
    }
    fclose(fp);
    assert_true(named);
    mpq_close(d);
    unlink(log);
}

/* The keeper confines itself before its first device process, which inherits it (sandbox.md). */
static void test_keeper_is_confined(void **state)
{
    const char *binary = confined_remote();
    const char *args[] = {
        binary, "{fd}", "-device", "mpqemu-testdev,id=t0", "-restart", "on", NULL,
    };
    struct mpq_dev *d;
    int sock, status;
    char *err = NULL;
    pid_t keeper, device;

    (void)state;
    keeper = mpq_spawn((char *const *)args, 1, &sock, &err);
    assert_true(keeper > 0);
    d = mpq_open_mpqemu(sock, &err);
    assert_int_equal(mpq_cfg_read(d, PCI_VENDOR_ID, 2, &(uint32_t){ 0 }, &err), 0);
    device = device_pid(keeper, 0);
    assert_int_equal(proc_status_field(keeper, "NoNewPrivs"), 1);
    assert_int_equal(proc_status_field(keeper, "Seccomp"), 2);
    assert_int_equal(proc_status_field(keeper, "Seccomp_filters"), 1);
    /* Once serving, the device process has its own filter on top of the keeper's. */
    assert_int_equal(proc_status_field(device, "Seccomp_filters"), 2);
    mpq_close(d);
    assert_int_equal(mpq_reap(keeper, 10000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int print_figures(void **state)
{
    (void)state;
    print_recovery_figures();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* The multi-process protocol has no DMA through messages: (b) is vfio-user's. */
        cmocka_unit_test_setup_teardown(test_killed_in_a_dma_reply_wait, setup_testdev,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_killed_sending_a_reply, setup_testdev, teardown),
        cmocka_unit_test_setup_teardown(test_killed_after_a_reply, setup_testdev, teardown),
        cmocka_unit_test_setup_teardown(test_killed_raising_an_interrupt, setup_testdev,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_killed_in_a_writes_work, setup_testdev, teardown),
        cmocka_unit_test_setup_teardown(test_lsi_reports_a_bus_reset, setup_lsi, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_allocation_killed, setup_lsi_qcow2, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_completed_writes_survive_a_kill,
                                        setup_lsi_qcow2, teardown),
        cmocka_unit_test_setup_teardown(test_media_state_survives_a_kill, setup_media,
                                        teardown_media),
        cmocka_unit_test_setup_teardown(test_medium_kept_while_an_eject_waits,
                                        setup_media_slow_sd0, teardown_media),
        cmocka_unit_test_setup_teardown(test_media_gone_or_resized_meanwhile, setup_media,
                                        teardown_media),
        cmocka_unit_test_setup_teardown(test_kept_medium_outside_the_sandbox,
                                        setup_media_confined, teardown_media),
        cmocka_unit_test_setup_teardown(test_kept_command_line_image, setup_media_confined,
                                        teardown_media),
        cmocka_unit_test(test_several_devices_come_back),
        cmocka_unit_test(test_budget_stops_a_crash_loop),
        cmocka_unit_test(test_keeper_is_confined),
    };
    size_t first = vfio_user() ? 0 : 1;

    return _cmocka_run_group_tests("restart", tests + first,
                                   sizeof(tests) / sizeof(tests[0]) - first, NULL,
                                   print_figures);
}
