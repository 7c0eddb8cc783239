// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Hostile guests against the LSI53C895A: QEMU's public fuzz reproducers
 * (tests/qtest/fuzz-lsi53c895a-test.c) replayed over the multi-process
 * protocol after the config-space probe QEMU's proxy makes, and SCRIPTS
 * of our own that loop forever or point nowhere.  The remote must not
 * crash or hang, must keep answering, and must exit cleanly afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "harness.h"
#include "proto/mpqemu-wire.h"
#include "util/byteorder.h"
#include "util.h"

enum { RAM_SIZE = 2ull << 30 };

struct fixture {
    struct remote remote;
    struct mpq_ram ram;
    int sock;
    int irqfd, resamplefd;
    char image[64];
};

static void wb(struct fixture *f, uint64_t gpa, uint8_t v)
{
    f->ram.host[gpa] = v;
}

static void wl(struct fixture *f, uint64_t gpa, uint32_t v)
{
    memcpy(f->ram.host + gpa, &v, 4);
}

/*
 * Starts a remote with an LSI controller ('lsi': its -device argument) and,
 * at scsi-id 0, a 4 MiB disk: 'drive' holds the -drive options after file=
 * ("format=raw,cache=none").  'more' adds arguments (a CD-ROM, a monitor).
 */
static int setup_remote(void **state, const char *lsi, const char *drive,
                        const char *const *more)
{
    struct fixture *f = calloc(1, sizeof(*f));
    static char drive_arg[200];
    static const char *args[24];
    struct mpqemu_sync_sysmem sm = { .sizes = { RAM_SIZE } };
    size_t n = 0;
    int fds[2];

    strcpy(f->image, "/var/tmp/mpqemu-lsifuzz-XXXXXX");
    close(mkstemp(f->image));
    if (strstr(drive, "format=qcow2")) {
        assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' 4M", f->image), 0);
    } else {
        assert_int_equal(truncate(f->image, 4 << 20), 0);
    }
    snprintf(drive_arg, sizeof(drive_arg), "id=d0,file=%s,%s", f->image, drive);
    args[n++] = "{fd}";
    args[n++] = "-device"; args[n++] = lsi;
    args[n++] = "-drive"; args[n++] = drive_arg;
    args[n++] = "-device"; args[n++] = "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0";
    while (more && *more && n < sizeof(args) / sizeof(args[0]) - 1) {
        args[n++] = *more++;
    }
    args[n] = NULL;
    remote_start(&f->remote, 1, args);
    f->sock = f->remote.socks[0];
    assert_int_equal(mpq_ram_create(&f->ram, 0, RAM_SIZE, NULL), 0);
    raw_send(f->sock, MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), &f->ram.fd, 1);
    fds[0] = f->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    fds[1] = f->resamplefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    raw_send(f->sock, MPQEMU_CMD_SET_IRQFD, 0, NULL, 0, fds, 2);
    /* The probe QEMU's proxy makes at start: ids, then each BAR sized and restored. */
    assert_int_equal(raw_config_read(f->sock, 0, 2), 0x1000);
    for (uint32_t bar = 0x10; bar < 0x2c; bar += 4) {
        uint32_t orig = raw_config_read(f->sock, bar, 4);

        raw_config_write(f->sock, bar, UINT32_MAX, 4);
        raw_config_read(f->sock, bar, 4);
        raw_config_write(f->sock, bar, orig, 4);
    }
    *state = f;
    return 0;
}

static const char lsi_default[] = "lsi53c895a,id=lsi0";

static int setup(void **state)
{
    return setup_remote(state, lsi_default, "format=raw,cache=writeback", NULL);
}

enum { SMALL_PROGRESS_BUDGET = 1024 };

/* Unexpected disconnect after 1024 instructions without progress on the bus, not 1M. */
static int setup_small_progress_budget(void **state)
{
    static char lsi[80];

    snprintf(lsi, sizeof(lsi), "lsi53c895a,id=lsi0,x-insn-without-progress=%d",
             SMALL_PROGRESS_BUDGET);
    return setup_remote(state, lsi, "format=raw,cache=writeback", NULL);
}

/* Disk reads the kernel does not finish at submission: they are in flight for a while. */
static int setup_uncached(void **state)
{
    return setup_remote(state, lsi_default, "format=raw,cache=none", NULL);
}

static int setup_qcow2(void **state)
{
    return setup_remote(state, lsi_default, "format=qcow2", NULL);
}

static char qmp_path[64];

/* A CD-ROM at scsi-id 1 with a 1 MiB medium, and a QMP monitor. */
/* What the CD-ROM's first two blocks hold. */
static void cd_pattern(uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + 3);
    }
}

static int setup_cdrom(void **state)
{
    static char cd_image[64], cd_drive[120], qmp[100];
    uint8_t blocks[4096];
    int fd;
    static const char *more[] = {
        "-drive", cd_drive, "-device", "scsi-cd,id=cd0,drive=cd,bus=lsi0.0,scsi-id=1",
        "-qmp", qmp, NULL,
    };
    int r;

    strcpy(cd_image, "/var/tmp/mpqemu-lsicd-XXXXXX");
    close(mkstemp(cd_image));
    assert_int_equal(truncate(cd_image, 1 << 20), 0);
    cd_pattern(blocks, sizeof(blocks));
    fd = open(cd_image, O_WRONLY);
    assert_int_equal(pwrite(fd, blocks, sizeof(blocks), 0), (ssize_t)sizeof(blocks));
    close(fd);
    snprintf(cd_drive, sizeof(cd_drive), "id=cd,file=%s,format=raw,readonly=on", cd_image);
    snprintf(qmp_path, sizeof(qmp_path), "/tmp/mpqemu-lsiqmp-%d", (int)getpid());
    snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", qmp_path);
    r = setup_remote(state, lsi_default, "format=raw", more);
    unlink(cd_image);       /* the remote holds it open */
    return r;
}

static void expect_alive(struct fixture *f)
{
    assert_int_equal(raw_config_read(f->sock, 2, 2), 0x0012);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (qmp_path[0]) {
        unlink(qmp_path);
        qmp_path[0] = 0;
    }

    expect_alive(f);
    close(f->sock);
    assert_int_equal(remote_expect_exit(&f->remote), 0);
    mpq_ram_destroy(&f->ram);
    close(f->irqfd);
    close(f->resamplefd);
    unlink(f->image);
    free(f);
    return 0;
}

/* SCRIPTS RAM BAR 0xff000000, registers 0xff100000: a memory move into ISTAT and DSP. */
static void test_dma_reentrancy(void **state)
{
    struct fixture *f = *state;

    raw_config_write(f->sock, 0x04, 0x7, 2);
    raw_config_write(f->sock, 0x14, 0xff100000, 4);
    raw_config_write(f->sock, 0x18, 0xff000000, 4);
    raw_bar_write(f->sock, true, 0xff000000, 0xc0000024, 4);
    raw_bar_write(f->sock, true, 0xff000114, 0x00000080, 4);
    raw_bar_write(f->sock, true, 0xff00012c, 0xff000000, 4);
    raw_bar_write(f->sock, true, 0xff000004, 0xff000114, 4);
    raw_bar_write(f->sock, true, 0xff000008, 0xff100014, 4);
    raw_bar_write(f->sock, true, 0xff10002f, 0x000000ff, 4);
    expect_alive(f);
}

/* SCRIPTS in guest memory whose messages cancel a request mid-flight. */
static void test_msgout_cancel_req(void **state)
{
    struct fixture *f = *state;
    static const struct { uint32_t gpa; uint8_t v; } bytes1[] = {
        { 0x69736c10, 0x08 }, { 0x69736c13, 0x58 }, { 0x69736c1a, 0x01 }, { 0x69736c1b, 0x06 },
        { 0x69736c22, 0x01 }, { 0x69736c23, 0x07 }, { 0x69736c2b, 0x02 }, { 0x69736c48, 0x08 },
        { 0x69736c4b, 0x58 }, { 0x69736c52, 0x04 }, { 0x69736c53, 0x06 }, { 0x69736c5b, 0x02 },
    }, bytes2[] = {
        { 0x5a554662, 0x01 }, { 0x5a554663, 0x07 }, { 0x5a55466a, 0x10 }, { 0x5a55466b, 0x22 },
        { 0x5a55466c, 0x5a }, { 0x5a55466d, 0x5a }, { 0x5a55466e, 0x34 }, { 0x5a55466f, 0x5a },
        { 0x5a345a5a, 0x77 }, { 0x5a345a5b, 0x55 }, { 0x5a345a5c, 0x51 }, { 0x5a345a5d, 0x27 },
        { 0x27515577, 0x41 },
    }, bytes3[] = {
        { 0x364001d0, 0x08 }, { 0x364001d3, 0x58 }, { 0x364001da, 0x01 }, { 0x364001db, 0x26 },
        { 0x364001dc, 0x0d }, { 0x364001dd, 0xae }, { 0x364001de, 0x41 }, { 0x364001df, 0x5a },
        { 0x5a41ae0d, 0xf8 }, { 0x5a41ae0e, 0x36 }, { 0x5a41ae0f, 0xd7 }, { 0x5a41ae10, 0x36 },
        { 0x36d736f8, 0x0c }, { 0x36d736f9, 0x80 }, { 0x36d736fa, 0x0d },
    };

    raw_config_write(f->sock, 0x10, 0xc000, 4);
    raw_config_write(f->sock, 0x04, 0x05, 2);
    for (size_t i = 0; i < sizeof(bytes1) / sizeof(bytes1[0]); i++) {
        wb(f, bytes1[i].gpa, bytes1[i].v);
    }
    raw_bar_write(f->sock, false, 0xc02d, 0x697300, 4);
    for (size_t i = 0; i < sizeof(bytes2) / sizeof(bytes2[0]); i++) {
        wb(f, bytes2[i].gpa, bytes2[i].v);
    }
    raw_bar_write(f->sock, false, 0xc02d, 0x5a5500, 4);
    for (size_t i = 0; i < sizeof(bytes3) / sizeof(bytes3[0]); i++) {
        wb(f, bytes3[i].gpa, bytes3[i].v);
    }
    raw_bar_write(f->sock, false, 0xc02d, 0x364000, 4);
    expect_alive(f);
}

/* DSP pointed at nothing: the SCRIPTS fetch must fault, not crash. */
static void test_do_dma_empty_queue(void **state)
{
    struct fixture *f = *state;

    raw_config_write(f->sock, 0x14, 0xe1068000, 4);
    raw_config_write(f->sock, 0x04, 0x7, 2);
    raw_bar_write(f->sock, true, 0xe106802e, 0xff, 1);
    raw_bar_write(f->sock, true, 0xe106802f, 0xff, 1);
    expect_alive(f);
}

static uint8_t mmio_readb(struct fixture *f, uint32_t off)
{
    struct mpqemu_bar_access a = { .addr = 0xfe000000u + off, .size = 1, .memory = 1 };

    raw_send(f->sock, MPQEMU_CMD_BAR_READ, sizeof(a), &a, sizeof(a), NULL, 0);
    return (uint8_t)raw_ret(f->sock);
}

static void enable_mmio(struct fixture *f)
{
    raw_config_write(f->sock, 0x14, 0xfe000000, 4);
    raw_config_write(f->sock, 0x04, 0x7, 2);
    raw_bar_write(f->sock, true, 0xfe000000 + 0x39, 0xff, 1);     /* DIEN: all */
    raw_bar_write(f->sock, true, 0xfe000000 + 0x40, 0xff, 1);     /* SIEN0 */
}

static void wait_irq(struct fixture *f)
{
    uint64_t n;

    for (int i = 0; i < 500; i++) {
        if (read(f->irqfd, &n, 8) == 8) {
            return;
        }
        usleep(10000);
    }
    fail_msg("no interrupt within 5 s");
}

/* Writes SCRIPTS at gpa 0x100000 and starts them there. */
static void start_program(struct fixture *f, const uint32_t *prog, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wl(f, 0x100000 + 4 * i, prog[i]);
    }
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
}

/* A SCRIPTS loop that never touches the bus: the remote keeps serving, then reports UDC. */
static void test_endless_scripts_loop(void **state)
{
    struct fixture *f = *state;

    enable_mmio(f);
    wl(f, 0x100000, 0x80080000);        /* JUMP to itself */
    wl(f, 0x100004, 0x100000);
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    /* The loop runs, and register accesses are still answered. */
    for (int i = 0; i < 50; i++) {
        expect_alive(f);
    }
    wait_irq(f);
    assert_true(mmio_readb(f, 0x42) & 0x04);        /* SIST0: unexpected disconnect */
    assert_false(mmio_readb(f, 0x15) & 0x02);       /* ISTAT1: SCRIPTS stopped */
}

/*
 * A SCRIPTS loop of memory moves (1 MiB each) that never touches the bus:
 * it yields every COPY_PER_ACTIVATION bytes (4 moves), and a request waits
 * for one activation at most, not for the rounds of bottom halves that run
 * bottom halves.
 */
static void test_memory_move_loop_latency(void **state)
{
    struct fixture *f = *state;
    uint64_t worst = 0, total = 0;
    enum { N = 20 };

    enable_mmio(f);
    wl(f, 0x100000, 0xc0100000);        /* MEMORY MOVE 1 MiB */
    wl(f, 0x100004, 0x1000000);         /* from 16 MiB */
    wl(f, 0x100008, 0x2000000);         /* to 32 MiB */
    wl(f, 0x10000c, 0x80080000);        /* JUMP back */
    wl(f, 0x100010, 0x100000);
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    for (int i = 0; i < N; i++) {
        struct timespec a, b;
        uint64_t ns;

        clock_gettime(CLOCK_MONOTONIC, &a);
        expect_alive(f);
        clock_gettime(CLOCK_MONOTONIC, &b);
        ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
        total += ns;
        worst = ns > worst ? ns : worst;
    }
    print_message("# config read during a memory-move loop: mean %llu us, worst %llu us\n",
                  (unsigned long long)(total / N / 1000), (unsigned long long)(worst / 1000));
    /* One activation: 0.3 s idle, 0.9 s on a loaded machine; eight: 3 s and more. */
    assert_true(total / N < 1500000000ull);
    raw_send(f->sock, MPQEMU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0);
    raw_ret(f->sock);
}

static uint16_t mmio_readw(struct fixture *f, uint32_t off)
{
    struct mpqemu_bar_access a = { .addr = 0xfe000000u + off, .size = 2, .memory = 1 };

    raw_send(f->sock, MPQEMU_CMD_BAR_READ, sizeof(a), &a, sizeof(a), NULL, 0);
    return (uint16_t)raw_ret(f->sock);
}

/*
 * A loop of the biggest memory moves there are (16 MiB - 1, from guest
 * memory to guest memory), each followed by a 16-bit count in SCRATCHA:
 * the budget counts bytes, so an activation ends after one move, and the
 * client's register reads, answered between activations, see the count
 * go up by a move or a few, not by the 1024 that 4096 instructions hold
 * (16 GiB copied, seconds, before a read was answered).
 */
static void test_huge_memory_moves_yield(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0xc0ffffff, 0x1000000, 0x3000000,   /* MEMORY MOVE 16 MiB - 1 from 16 MiB to 48 MiB */
        0x7e340100, 0,                      /* SCRATCHA0 += 1 */
        0x7f350000, 0,                      /* SCRATCHA1 += 0 + carry */
        0x80080000, 0x100000,               /* JUMP back */
    };
    uint16_t last = 0, now;
    unsigned reads = 0, most = 0;

    enable_mmio(f);
    start_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    /* Until the loop went round 8 times: it runs, between the reads. */
    while (last < 8) {
        now = mmio_readw(f, 0x34);
        most = (uint16_t)(now - last) > most ? (uint16_t)(now - last) : most;
        last = now;
        assert_true(++reads < 100000);
    }
    print_message("# %u reads while the loop went round %u times, at most %u between two\n",
                  reads, last, most);
    assert_true(most < 64);
    assert_true(mmio_readb(f, 0x15) & 0x02);        /* ISTAT1: SCRIPTS still run */
    raw_send(f->sock, MPQEMU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0);
    raw_ret(f->sock);
}

/*
 * Runs 'prog', a loop of moves of 'move' bytes counted in SCRATCHA, under a
 * budget of SMALL_PROGRESS_BUDGET instructions without progress.  Each
 * 'per_insn' bytes count as one instruction: the unexpected disconnect
 * comes once the budget's worth is moved, where moves counted as one
 * instruction each would go round 256 times first.
 */
static void expect_disconnect_after_budget(struct fixture *f, const uint32_t *prog, size_t n,
                                           uint32_t move, uint32_t per_insn)
{
    unsigned moves, budget = SMALL_PROGRESS_BUDGET * per_insn / move;

    enable_mmio(f);
    start_program(f, prog, n);
    wait_irq(f);
    assert_true(mmio_readb(f, 0x42) & 0x04);        /* SIST0: unexpected disconnect */
    assert_false(mmio_readb(f, 0x15) & 0x02);       /* ISTAT1: SCRIPTS stopped */
    moves = mmio_readw(f, 0x34);
    print_message("# %u moves of %u bytes before the unexpected disconnect (budget: %u)\n",
                  moves, move, budget);
    assert_true(moves <= budget);
    assert_true(moves >= budget - 2);               /* the other instructions count too */
}

enum { MEMORY_LOOP_MOVE = 256 << 10, MSGOUT_LOOP_MOVE = 4 << 10 };

/* Memory moves from guest memory to guest memory: 4 KiB copied count as one instruction. */
static void test_memory_move_loop_disconnects(void **state)
{
    static const uint32_t prog[] = {
        0xc0000000 | MEMORY_LOOP_MOVE, 0x1000000, 0x2000000,   /* MEMORY MOVE 16 -> 32 MiB */
        0x7e340100, 0,                      /* SCRATCHA0 += 1 */
        0x7f350000, 0,                      /* SCRATCHA1 += 0 + carry */
        0x80080000, 0x100000,               /* JUMP back */
    };

    expect_disconnect_after_budget(*state, prog, sizeof(prog) / sizeof(prog[0]),
                                   MEMORY_LOOP_MOVE, 4096);
}

/*
 * MESSAGE OUT moves of SIMPLE QUEUE TAG messages: the target stays in
 * MESSAGE OUT, so each move takes all its bytes, 64 counting as one
 * instruction.
 */
static void test_message_out_loop_disconnects(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                      /* SELECT ATN id 0 */
        0x0e000000 | MSGOUT_LOOP_MOVE, 0x1000000,   /* MOVE, WHEN MSG OUT, from 16 MiB */
        0x7e340100, 0,                      /* SCRATCHA0 += 1 */
        0x7f350000, 0,                      /* SCRATCHA1 += 0 + carry */
        0x80080000, 0x100008,               /* JUMP back to the move */
    };

    for (uint32_t i = 0; i < MSGOUT_LOOP_MOVE; i += 2) {
        wb(f, 0x1000000 + i, 0x20);         /* SIMPLE QUEUE TAG */
        wb(f, 0x1000000 + i + 1, 0x00);
    }
    expect_disconnect_after_budget(f, prog, sizeof(prog) / sizeof(prog[0]), MSGOUT_LOOP_MOVE, 64);
}

/*
 * A memory move into the registers that aborts SCRIPTS (ISTAT0 ABRT) and
 * restarts them at itself (DSP): SCRIPTS restarting themselves are no
 * driver's start, and the loop still ends in an unexpected disconnect.
 */
static void test_self_restarting_scripts_disconnect(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0xc000001c, 0x200000, 0xfe000014,   /* MEMORY MOVE 28 bytes into ISTAT0..DSP */
    };
    int polls = 0;

    enable_mmio(f);
    memset(f->ram.host + 0x200000, 0, 28);
    wb(f, 0x200000, 0x80);                          /* ISTAT0: ABRT */
    wl(f, 0x200000 + 0x2c - 0x14, 0x100000);        /* DSP: the move again */
    start_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    while (mmio_readb(f, 0x15) & 0x02) {            /* ISTAT1: SCRIPTS run */
        assert_true(++polls < 500);
        usleep(10000);
    }
    assert_true(mmio_readb(f, 0x0c) & 0x10);        /* DSTAT: abort */
    assert_true(mmio_readb(f, 0x42) & 0x04);        /* SIST0, stacked: unexpected disconnect */
}

/*
 * Runs 'prog', a loop of 'per_round' instructions counted in SCRATCHA that
 * selects the target and lets it go without a command taken or data moved,
 * under a budget of SMALL_PROGRESS_BUDGET instructions without progress.
 * A selection is no progress: the loop ends in an unexpected disconnect
 * once the budget is spent, and does not go on forever.
 */
static void expect_select_loop_disconnects(struct fixture *f, const uint32_t *prog, size_t n,
                                           unsigned per_round)
{
    /* The round the budget runs out in counts too: its count comes before its JUMP. */
    unsigned rounds, budget = (SMALL_PROGRESS_BUDGET + per_round - 1) / per_round;

    enable_mmio(f);
    start_program(f, prog, n);
    wait_irq(f);                                    /* at most 5 s, not forever */
    assert_true(mmio_readb(f, 0x42) & 0x04);        /* SIST0: unexpected disconnect */
    assert_false(mmio_readb(f, 0x15) & 0x02);       /* ISTAT1: SCRIPTS stopped */
    assert_false(mmio_readb(f, 0x01) & 0x10);       /* SCNTL1: not connected */
    rounds = mmio_readw(f, 0x34);
    print_message("# %u rounds before the unexpected disconnect (budget: %u)\n", rounds, budget);
    assert_true(rounds <= budget);
    assert_true(rounds >= budget - 1);
}

/* SELECT and WAIT DISCONNECT, over and over. */
static void test_select_loop_disconnects(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0,                      /* SELECT ATN id 0 */
        0x48000000, 0,                      /* WAIT DISCONNECT */
        0x7e340100, 0,                      /* SCRATCHA0 += 1 */
        0x7f350000, 0,                      /* SCRATCHA1 += 0 + carry */
        0x80080000, 0x100000,               /* JUMP back */
    };

    expect_select_loop_disconnects(*state, prog, sizeof(prog) / sizeof(prog[0]), 5);
}

/* SELECT and ABORT: the target disconnects with nothing moved, over and over. */
static void test_select_abort_loop_disconnects(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                      /* SELECT ATN id 0 */
        0x0e000001, 0x200000,               /* MOVE 1, WHEN MSG OUT: ABORT */
        0x7e340100, 0,                      /* SCRATCHA0 += 1 */
        0x7f350000, 0,                      /* SCRATCHA1 += 0 + carry */
        0x80080000, 0x100000,               /* JUMP back */
    };

    wb(f, 0x200000, 0x06);
    expect_select_loop_disconnects(f, prog, sizeof(prog) / sizeof(prog[0]), 5);
}

/*
 * A driver's loop of whole commands (TEST UNIT READY: no data phase), nine
 * instructions a round: a command taken is progress, so the loop runs on
 * far past the budget of SMALL_PROGRESS_BUDGET instructions.
 */
static void test_command_loop_runs_on(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                      /* SELECT ATN id 0 */
        0x0e000001, 0x200000,               /* MOVE 1, WHEN MSG OUT: IDENTIFY */
        0x0a000006, 0x200100,               /* MOVE 6, WHEN COMMAND: TEST UNIT READY */
        0x0b000001, 0x200200,               /* MOVE 1, WHEN STATUS */
        0x0f000001, 0x200300,               /* MOVE 1, WHEN MSG IN: COMMAND COMPLETE */
        0x48000000, 0,                      /* WAIT DISCONNECT */
        0x7e340100, 0,                      /* SCRATCHA0 += 1 */
        0x7f350000, 0,                      /* SCRATCHA1 += 0 + carry */
        0x80080000, 0x100000,               /* JUMP back */
    };
    enum { ROUNDS = 8 * SMALL_PROGRESS_BUDGET / 9 };
    unsigned reads = 0;

    enable_mmio(f);
    wb(f, 0x200000, 0x80);
    memset(f->ram.host + 0x200100, 0, 6);
    start_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    while (mmio_readw(f, 0x34) < ROUNDS) {
        assert_true(mmio_readb(f, 0x15) & 0x02);    /* ISTAT1: SCRIPTS still run */
        assert_true(++reads < 100000);
    }
    assert_int_equal(mmio_readb(f, 0x42) & 0x04, 0);    /* SIST0: no unexpected disconnect */
    raw_send(f->sock, MPQEMU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0);
    raw_ret(f->sock);
}

/* SCRIPTS, and a memory move, that reach outside guest memory: bus fault. */
static void test_scripts_outside_memory(void **state)
{
    struct fixture *f = *state;

    enable_mmio(f);
    raw_bar_write(f->sock, true, 0xfe00002c, 0xfff00000, 4);      /* no memory there */
    wait_irq(f);
    assert_true(mmio_readb(f, 0x0c) & 0x20);        /* DSTAT: bus fault */
    wl(f, 0x100000, 0xc0ffffff);                    /* MEMORY MOVE 16 MiB ... */
    wl(f, 0x100004, 0xfff00000);                    /* from nowhere */
    wl(f, 0x100008, 0x200000);
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    wait_irq(f);
    assert_true(mmio_readb(f, 0x0c) & 0x20);
}

/* Runs SCRIPTS at gpa 0x100000 and waits for their interrupt. */
static void run_program(struct fixture *f, const uint32_t *prog, size_t n)
{
    start_program(f, prog, n);
    wait_irq(f);
    /* Acknowledge as a driver does, so that the next interrupt raises the line anew. */
    mmio_readb(f, 0x0c);
    mmio_readb(f, 0x42);
    mmio_readb(f, 0x43);
}

/*
 * Interrupt stacking (the manual's "stacked interrupts"): a SCSI interrupt
 * that comes while a DMA interrupt is pending waits behind it, and shows
 * once DSTAT has been read.
 */
static void test_interrupts_stack(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = { 0x98080000, 0x60 };    /* INT 0x60 */

    enable_mmio(f);
    start_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    wait_irq(f);
    raw_bar_write(f->sock, true, 0xfe000001, 0x08, 1);      /* SCNTL1: assert RST */
    raw_bar_write(f->sock, true, 0xfe000001, 0x00, 1);
    assert_int_equal(mmio_readb(f, 0x14) & 0x03, 0x01);     /* ISTAT: DIP only */
    assert_int_equal(mmio_readb(f, 0x0c) & 0x04, 0x04);     /* DSTAT: SIR */
    assert_int_equal(mmio_readb(f, 0x30), 0x60);            /* DSPS */
    assert_int_equal(mmio_readb(f, 0x14) & 0x03, 0x02);     /* ISTAT: now SIP */
    assert_int_equal(mmio_readb(f, 0x42), 0x02);            /* SIST0: RST */
    assert_int_equal(mmio_readb(f, 0x43), 0x00);
    assert_int_equal(mmio_readb(f, 0x14) & 0x03, 0x00);     /* all read */
}

/* An extended message whose length byte claims 200 bytes: answered with MESSAGE REJECT. */
static void test_oversized_extended_message(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                  /* SELECT ATN id 0 */
        0x0e000000 | 255, 0x200000,     /* MOVE 255, WHEN MSG OUT, from 0x200000 */
        0x0f000001, 0x200200,           /* MOVE 1, WHEN MSG IN: the reply */
        0x98080000, 0x77,               /* INT 0x77 */
    };

    enable_mmio(f);
    memset(f->ram.host + 0x200000, 0x41, 255);
    wb(f, 0x200000, 0x80);              /* IDENTIFY */
    wb(f, 0x200001, 0x01);              /* extended */
    wb(f, 0x200002, 200);               /* length */
    wb(f, 0x200003, 0x01);              /* SDTR */
    run_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    assert_int_equal(f->ram.host[0x200200], 0x07);     /* MESSAGE REJECT */
}

/* The first command reports the power-on unit attention: take it, from 'target'. */
static void clear_unit_attention_of(struct fixture *f, unsigned target)
{
    const uint32_t prog[] = {
        0x41000000 | target << 16, 0,           /* SELECT target */
        0x0e000001, 0x200000,                   /* MOVE 1, MSG OUT: IDENTIFY */
        0x0a000006, 0x200100,                   /* MOVE 6, COMMAND: TEST UNIT READY */
        0x0b000001, 0x200200,                   /* MOVE 1, STATUS */
        0x0f000001, 0x200201,                   /* MOVE 1, MSG IN */
        0x48000000, 0, 0x98080000, 0x54,        /* WAIT DISCONNECT; INT */
    };

    wb(f, 0x200000, 0x80);
    memset(f->ram.host + 0x200100, 0, 6);
    run_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    assert_int_equal(f->ram.host[0x200200], 0x02);     /* CHECK CONDITION */
}

static void clear_unit_attention(struct fixture *f)
{
    clear_unit_attention_of(f, 0);
}

/*
 * Tagged commands disconnect; one completes while disconnected; then the
 * SCSI bus is reset.  Every command must go, and the controller serve on.
 */
static void test_bus_reset_with_disconnected_commands(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                  /* SELECT ATN id 0 */
        0x0e000003, 0x200000,           /* MOVE 3, WHEN MSG OUT: IDENTIFY+disc, SIMPLE TAG */
        0x0a00000a, 0x200010,           /* MOVE 10, WHEN COMMAND: SYNCHRONIZE CACHE */
        0x0f000002, 0x200200,           /* MOVE 2, WHEN MSG IN: SAVE DP, DISCONNECT */
        0x48000000, 0,                  /* WAIT DISCONNECT */
        0x98080000, 0x55,               /* INT 0x55 */
    };

    enable_mmio(f);
    clear_unit_attention(f);
    wb(f, 0x200000, 0xc0);
    wb(f, 0x200001, 0x20);
    wb(f, 0x200002, 0x05);
    memset(f->ram.host + 0x200010, 0, 10);
    wb(f, 0x200010, 0x35);
    run_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    assert_int_equal(f->ram.host[0x200201], 0x04);     /* it did disconnect */
    /* Give the flush time to finish: the command is then complete, not yet reported. */
    usleep(100 * 1000);
    expect_alive(f);
    raw_bar_write(f->sock, true, 0xfe000001, 0x08, 1);     /* SCNTL1: assert RST */
    raw_bar_write(f->sock, true, 0xfe000001, 0x00, 1);
    expect_alive(f);
    raw_bar_write(f->sock, true, 0xfe000014, 0x40, 1);     /* ISTAT0: software reset */
    expect_alive(f);
}

/*
 * Negotiation: after IDENTIFY and an extended message the target answers in
 * MESSAGE IN with what it accepts (wide, Ultra2 periods, offset <= 31, no
 * DT), then asks for the command.
 */
static void negotiate_once(struct fixture *f, const uint8_t *out, size_t out_len,
                           const uint8_t *want, size_t want_len)
{
    uint32_t prog[] = {
        0x41000000, 0,                                  /* SELECT ATN id 0 */
        0x0e000000 | (uint32_t)out_len, 0x200000,       /* MOVE n, WHEN MSG OUT */
        0x0f000000 | (uint32_t)want_len, 0x200200,      /* MOVE n, WHEN MSG IN */
        0x820b0000, 0x100000 + 5 * 8,                   /* JUMP +1, WHEN COMMAND */
        0x98080000, 0x61,                               /* INT 0x61: no command phase */
        0x98080000, 0x60,                               /* INT 0x60 */
    };

    memcpy(f->ram.host + 0x200000, out, out_len);
    memset(f->ram.host + 0x200200, 0xee, 16);
    run_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    assert_memory_equal(f->ram.host + 0x200200, want, want_len);
    assert_int_equal(mmio_readb(f, 0x30), 0x60);       /* DSPS */
    raw_bar_write(f->sock, true, 0xfe000001, 0x08, 1); /* SCSI bus reset: free the bus */
    raw_bar_write(f->sock, true, 0xfe000001, 0x00, 1);
    mmio_readb(f, 0x42);
}

static void test_negotiation_replies(void **state)
{
    struct fixture *f = *state;
    static const uint8_t sdtr[] = { 0x80, 0x01, 0x03, 0x01, 0x0c, 0x10 };
    static const uint8_t sdtr_reply[] = { 0x01, 0x03, 0x01, 0x0c, 0x10 };
    static const uint8_t fast[] = { 0x80, 0x01, 0x03, 0x01, 0x08, 0x40 };
    static const uint8_t fast_reply[] = { 0x01, 0x03, 0x01, 0x0a, 0x1f };
    static const uint8_t wdtr[] = { 0x80, 0x01, 0x02, 0x03, 0x02 };
    static const uint8_t wdtr_reply[] = { 0x01, 0x02, 0x03, 0x01 };
    static const uint8_t ppr[] = { 0x80, 0x01, 0x06, 0x04, 0x09, 0x00, 0x3e, 0x01, 0x02 };
    static const uint8_t ppr_reply[] = { 0x01, 0x06, 0x04, 0x0a, 0x00, 0x1f, 0x01, 0x00 };

    enable_mmio(f);
    negotiate_once(f, sdtr, sizeof(sdtr), sdtr_reply, sizeof(sdtr_reply));
    negotiate_once(f, fast, sizeof(fast), fast_reply, sizeof(fast_reply));
    negotiate_once(f, wdtr, sizeof(wdtr), wdtr_reply, sizeof(wdtr_reply));
    negotiate_once(f, ppr, sizeof(ppr), ppr_reply, sizeof(ppr_reply));
}

/* LOAD/STORE (absolute and DSA-relative), register arithmetic, CALL/RETURN, conditions. */
static void test_register_instructions(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0xe1340004, 0x200000,       /*  0 LOAD SCRATCHA, 4, from 0x200000 */
        0xe0340004, 0x200010,       /*  1 STORE SCRATCHA, 4, to 0x200010 */
        0xf15c0004, 0x8,            /*  2 LOAD SCRATCHB, 4, from DSA + 8 */
        0xf05c0004, 0xc,            /*  3 STORE SCRATCHB, 4, to DSA + 12 */
        0x7e340100, 0,              /*  4 SCRATCHA0 += 1 (read-modify-write, ADD) */
        0x72340000, 0,              /*  5 SFBR = SCRATCHA0 | 0 (how drivers copy a register) */
        0x800c0012, 0x100000 + 8 * 8, /* 6 JUMP 8 IF DATA 0x12 */
        0x98080000, 0x71,           /*  7 INT 0x71: arithmetic wrong */
        0x88080000, 0x100000 + 12 * 8, /* 8 CALL 12 (its ADD sets the carry from its sum) */
        0x58000400, 0,              /*  9 SET CARRY */
        0x80280000, 0x100000 + 14 * 8, /* 10 JUMP 14 IF CARRY */
        0x98080000, 0x72,           /* 11 INT 0x72: carry lost */
        0x7e340100, 0,              /* 12 SCRATCHA0 += 1 */
        0x90080000, 0,              /* 13 RETURN */
        0x72340000, 0,              /* 14 SFBR = SCRATCHA0 | 0 */
        0x800c0013, 0x100000 + 17 * 8, /* 15 JUMP 17 IF DATA 0x13 */
        0x98080000, 0x73,           /* 16 INT 0x73: the call did not run */
        0x98080000, 0x70,           /* 17 INT 0x70: all good */
    };

    enable_mmio(f);
    wl(f, 0x200000, 0x44332211);
    wl(f, 0x200108, 0x88776655);
    raw_bar_write(f->sock, true, 0xfe000010, 0x200100, 4);     /* DSA */
    run_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    assert_int_equal(mmio_readb(f, 0x30), 0x70);
    assert_int_equal(be32(f->ram.host + 0x200010), 0x11223344);
    assert_memory_equal(f->ram.host + 0x20010c, f->ram.host + 0x200108, 4);
    assert_int_equal(mmio_readb(f, 0x34), 0x13);                /* SCRATCHA0 */
}

/* ABORT TAG: a disconnected tagged command is gone and never reselects. */
static void test_abort_tag(void **state)
{
    struct fixture *f = *state;
    static const uint32_t issue[] = {
        0x41000000, 0,                  /* SELECT ATN id 0 */
        0x0e000003, 0x200000,           /* MOVE 3, MSG OUT: IDENTIFY+disc, SIMPLE TAG 7 */
        0x0a00000a, 0x200010,           /* MOVE 10, COMMAND: READ(10) */
        0x0f000002, 0x200200,           /* MOVE 2, MSG IN: SAVE DP, DISCONNECT */
        0x48000000, 0,                  /* WAIT DISCONNECT */
        0x98080000, 0x50,
    };
    static const uint32_t abort_it[] = {
        0x41000000, 0,                  /* SELECT ATN id 0 */
        0x0e000004, 0x200020,           /* MOVE 4, MSG OUT: IDENTIFY, SIMPLE TAG 7, ABORT TAG */
        0x48000000, 0,                  /* WAIT DISCONNECT */
        0x50000000, 0x100000 + 5 * 8,   /* WAIT RESELECT, else (SIGP) to 5 */
        0x98080000, 0x52,               /* reselected: the command was not aborted */
        0x98080000, 0x51,               /* 5: signalled: nothing to reselect */
    };
    static const uint8_t msgs[] = { 0xc0, 0x20, 0x07 }, abort_msgs[] = { 0xc0, 0x20, 0x07, 0x0d };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0 };

    enable_mmio(f);
    clear_unit_attention(f);
    memcpy(f->ram.host + 0x200000, msgs, sizeof(msgs));
    memcpy(f->ram.host + 0x200010, read10, sizeof(read10));
    memcpy(f->ram.host + 0x200020, abort_msgs, sizeof(abort_msgs));
    run_program(f, issue, sizeof(issue) / sizeof(issue[0]));
    assert_int_equal(f->ram.host[0x200201], 0x04);         /* it disconnected */
    for (size_t i = 0; i < sizeof(abort_it) / sizeof(abort_it[0]); i++) {
        wl(f, 0x100000 + 4 * i, abort_it[i]);
    }
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    usleep(100 * 1000);
    raw_bar_write(f->sock, true, 0xfe000014, 0x20, 1);      /* ISTAT: SIGP */
    wait_irq(f);
    assert_int_equal(mmio_readb(f, 0x30), 0x51);
}

/*
 * A data phase in several block moves, as a scatter-gather list makes it:
 * WRITE(10) of 3 blocks from three places, READ(10) back in two moves, then
 * a READ whose single move is longer than the data (phase mismatch, residual).
 */
static void test_scatter_gather_moves(void **state)
{
    struct fixture *f = *state;
    static const uint32_t write3[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: WRITE(10) */
        0x08000200, 0x300000,                   /* MOVE 512, WHEN DATA OUT, from 0x300000 */
        0x08000200, 0x310000,                   /* ... from 0x310000 */
        0x08000200, 0x320000,                   /* ... from 0x320000 */
        0x0b000001, 0x200200, 0x0f000001, 0x200201,  /* STATUS, MSG IN */
        0x48000000, 0, 0x98080000, 0x40,
    };
    static const uint32_t read2[] = {
        0x41000000, 0, 0x0e000001, 0x200000,
        0x0a00000a, 0x200020,                   /* MOVE 10, COMMAND: READ(10) of 3 blocks */
        0x09000400, 0x400000,                   /* MOVE 1024, WHEN DATA IN, to 0x400000 */
        0x09000200, 0x400400,                   /* MOVE 512 to 0x400400 */
        0x0b000001, 0x200200, 0x0f000001, 0x200201,
        0x48000000, 0, 0x98080000, 0x41,
    };
    static const uint32_t read_long[] = {
        0x41000000, 0, 0x0e000001, 0x200000,
        0x0a00000a, 0x200020,                   /* READ(10) of 3 blocks */
        0x09001000, 0x500000,                   /* MOVE 4096, WHEN DATA IN: longer than 1536 */
        0x98080000, 0x42,                       /* (not reached: phase mismatch) */
    };
    static const uint8_t write10[] = { 0x2a, 0, 0, 0, 0, 9, 0, 0, 3, 0 };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 9, 0, 0, 3, 0 };
    uint8_t expect[1536];

    enable_mmio(f);
    clear_unit_attention(f);
    wb(f, 0x200000, 0x80);
    memcpy(f->ram.host + 0x200010, write10, sizeof(write10));
    memcpy(f->ram.host + 0x200020, read10, sizeof(read10));
    for (int i = 0; i < 512; i++) {
        f->ram.host[0x300000 + i] = (uint8_t)i;
        f->ram.host[0x310000 + i] = (uint8_t)(i * 3);
        f->ram.host[0x320000 + i] = (uint8_t)(i * 5);
        expect[i] = (uint8_t)i;
        expect[512 + i] = (uint8_t)(i * 3);
        expect[1024 + i] = (uint8_t)(i * 5);
    }
    run_program(f, write3, sizeof(write3) / sizeof(write3[0]));
    assert_int_equal(mmio_readb(f, 0x30), 0x40);
    assert_int_equal(f->ram.host[0x200200], 0x00);         /* GOOD */
    run_program(f, read2, sizeof(read2) / sizeof(read2[0]));
    assert_int_equal(mmio_readb(f, 0x30), 0x41);
    assert_memory_equal(f->ram.host + 0x400000, expect, sizeof(expect));
    for (size_t i = 0; i < sizeof(read_long) / sizeof(read_long[0]); i++) {
        wl(f, 0x100000 + 4 * i, read_long[i]);
    }
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    wait_irq(f);
    assert_true(mmio_readb(f, 0x42) & 0x80);                /* SIST0: phase mismatch */
    assert_int_equal(mmio_readb(f, 0x24) | mmio_readb(f, 0x25) << 8, 4096 - 1536);  /* DBC */
    assert_int_equal(mmio_readb(f, 0x0e) & 7, 3);            /* SSTAT1: now STATUS */
    assert_memory_equal(f->ram.host + 0x500000, expect, sizeof(expect));
}

/* The host aborts running SCRIPTS through ISTAT: DSTAT reports ABRT, SCRIPTS stop. */
static void test_abort_through_istat(void **state)
{
    struct fixture *f = *state;

    enable_mmio(f);
    wl(f, 0x100000, 0x80080000);        /* JUMP to itself */
    wl(f, 0x100004, 0x100000);
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    assert_true(mmio_readb(f, 0x15) & 0x02);                /* ISTAT1: running */
    raw_bar_write(f->sock, true, 0xfe000014, 0x80, 1);      /* ISTAT0: ABRT */
    wait_irq(f);
    assert_true(mmio_readb(f, 0x14) & 0x01);                /* ISTAT0: DMA interrupt */
    assert_true(mmio_readb(f, 0x0c) & 0x10);                /* DSTAT: aborted */
    assert_false(mmio_readb(f, 0x15) & 0x02);               /* ISTAT1: stopped */
    raw_bar_write(f->sock, true, 0xfe000014, 0x00, 1);      /* the driver clears ABRT */
    expect_alive(f);
}

/*
 * The VMM truncates guest memory under the controller: a move into the lost
 * pages gets a bus fault (DSTAT BF) and the remote lives on.  'prog' runs
 * with its CDB at 0x200010 and its data at 0x900000, past the new end.
 */
static void expect_bus_fault_past_the_end_with(struct fixture *f, const uint32_t *prog, size_t n,
                                               const uint8_t *msgs, size_t msgs_len,
                                               const uint8_t *cdb, size_t cdb_len)
{
    enum { SIZE = 16 << 20 };
    struct mpqemu_sync_sysmem sm = { .sizes = { SIZE } };
    int fd = memfd_create("unsealed-guest-ram", MFD_CLOEXEC);  /* ours are sealed */
    uint8_t *sealed_host = f->ram.host, *host;

    assert_int_equal(ftruncate(fd, SIZE), 0);
    host = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(host != MAP_FAILED);
    raw_send(f->sock, MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), &fd, 1);
    f->ram.host = host;
    enable_mmio(f);
    clear_unit_attention(f);
    memcpy(host + 0x200000, msgs, msgs_len);
    memcpy(host + 0x200010, cdb, cdb_len);
    for (size_t i = 0; i < n; i++) {
        wl(f, 0x100000 + 4 * i, prog[i]);
    }
    assert_int_equal(ftruncate(fd, 8 << 20), 0);
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    wait_irq(f);
    assert_int_equal(mmio_readb(f, 0x0c) & 0x20, 0x20);     /* DSTAT: bus fault */
    expect_alive(f);
    f->ram.host = sealed_host;
    munmap(host, SIZE);
    close(fd);
}

static void expect_bus_fault_past_the_end(struct fixture *f, const uint32_t *prog, size_t n,
                                          const uint8_t *cdb, size_t cdb_len)
{
    static const uint8_t identify = 0x80;

    expect_bus_fault_past_the_end_with(f, prog, n, &identify, 1, cdb, cdb_len);
}

/* A piece of a READ served from the stage: the copy into guest memory faults. */
static void test_staged_read_into_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: READ(10) of 3 blocks */
        0x09000400, 0x900000,                   /* MOVE 1024, WHEN DATA IN: staged */
        0x98080000, 0x41,
    };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 9, 0, 0, 3, 0 };

    expect_bus_fault_past_the_end(*state, prog, sizeof(prog) / sizeof(prog[0]), read10,
                                  sizeof(read10));
}

/* A piece of a WRITE gathered into the stage: the copy from guest memory faults. */
static void test_staged_write_from_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,
        0x0a00000a, 0x200010,                   /* WRITE(10) of 3 blocks */
        0x08000200, 0x900000,                   /* MOVE 512, WHEN DATA OUT: staged */
        0x98080000, 0x42,
    };
    static const uint8_t write10[] = { 0x2a, 0, 0, 0, 0, 9, 0, 0, 3, 0 };

    expect_bus_fault_past_the_end(*state, prog, sizeof(prog) / sizeof(prog[0]), write10,
                                  sizeof(write10));
}

/* An emulated command's reply (INQUIRY) copied into the lost pages. */
static void test_reply_into_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,
        0x0a000006, 0x200010,                   /* MOVE 6, COMMAND: INQUIRY */
        0x09000024, 0x900000,                   /* MOVE 36, WHEN DATA IN */
        0x98080000, 0x43,
    };
    static const uint8_t inquiry[] = { 0x12, 0, 0, 0, 36, 0 };

    expect_bus_fault_past_the_end(*state, prog, sizeof(prog) / sizeof(prog[0]), inquiry,
                                  sizeof(inquiry));
}

/* Starts SCRIPTS at 0x100000 and returns the DSTAT of the interrupt they end in. */
static uint8_t run_to_dma_interrupt(struct fixture *f, const uint32_t *prog, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wl(f, 0x100000 + 4 * i, prog[i]);
    }
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    wait_irq(f);
    return mmio_readb(f, 0x0c);
}

static uint32_t mmio_readl(struct fixture *f, uint32_t off)
{
    return mmio_readb(f, off) | (uint32_t)mmio_readb(f, off + 1) << 8 |
           (uint32_t)mmio_readb(f, off + 2) << 16 | (uint32_t)mmio_readb(f, off + 3) << 24;
}

/*
 * A MESSAGE OUT move that runs off the end of guest memory: the messages
 * before the end are taken, and the bus fault comes at the first byte that
 * is not there (DNAD, DBC), however far ahead the bytes are read.
 */
static void test_message_out_past_the_end_of_memory(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                              /* SELECT ATN id 0 */
        0x0e000008, (uint32_t)RAM_SIZE - 3,         /* MOVE 8, WHEN MSG OUT: 3 bytes there */
    };

    enable_mmio(f);
    wb(f, RAM_SIZE - 3, 0x80);                      /* IDENTIFY */
    wb(f, RAM_SIZE - 2, 0x20);                      /* SIMPLE QUEUE TAG 5 */
    wb(f, RAM_SIZE - 1, 0x05);
    start_program(f, prog, sizeof(prog) / sizeof(prog[0]));
    wait_irq(f);
    assert_int_equal(mmio_readb(f, 0x0c) & 0x20, 0x20);     /* DSTAT: bus fault */
    assert_int_equal(mmio_readl(f, 0x28), RAM_SIZE);        /* DNAD: the end of memory */
    assert_int_equal(mmio_readl(f, 0x24) & 0xffffff, 5);    /* DBC: 5 bytes not moved */
    assert_int_equal(mmio_readb(f, 0x08), 0x20);            /* SFBR: the last message */
}

enum { PAGE = 4096 };

/*
 * Guest memory around 4 GiB: RAM at 0 as before, a page below 4 GiB and one
 * at 4 GiB, both in '*pages' (a memfd), mapped at the returned address.
 */
static uint8_t *map_pages_around_4_gib(struct fixture *f, int *pages)
{
    struct mpqemu_sync_sysmem sm = {
        .gpas = { 0, 0x100000000ull - PAGE, 0x100000000ull },
        .sizes = { RAM_SIZE, PAGE, PAGE }, .offsets = { 0, 0, PAGE },
    };
    int fds[3] = { f->ram.fd, -1, -1 };
    uint8_t *p;

    *pages = fds[1] = fds[2] = memfd_create("around-4g", MFD_CLOEXEC);
    assert_int_equal(ftruncate(*pages, 2 * PAGE), 0);
    p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, *pages, 0);
    assert_true(p != MAP_FAILED);
    raw_send(f->sock, MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), fds, 3);
    return p;
}

static void unmap_pages_around_4_gib(uint8_t *p, int pages)
{
    munmap(p, 2 * PAGE);
    close(pages);
}

/*
 * A MESSAGE OUT move from the last 3 bytes below 4 GiB on: DNAD is a 32-bit
 * counter, so its next bytes come from address 0 (NO OPERATION), as a
 * byte-by-byte read takes them, not from 4 GiB (ABORT), however far ahead
 * the bytes are read.  Guest memory: RAM at 0, a page below 4 GiB and one
 * at 4 GiB.
 */
static void test_message_out_across_4_gib(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                              /* SELECT ATN id 0 */
        0x0e000008, 0xfffffffd,                     /* MOVE 8, WHEN MSG OUT */
        0x98080000, 0x71,                           /* INT 0x71 */
    };
    int pages;
    uint8_t *p = map_pages_around_4_gib(f, &pages);

    memcpy(p + PAGE - 3, "\x80\x20\x05", 3);     /* IDENTIFY, SIMPLE QUEUE TAG 5 */
    memset(p + PAGE, 0x06, 5);                      /* ABORT, at 4 GiB */
    memset(f->ram.host, 0x08, 5);                   /* NO OPERATION, at 0 */
    enable_mmio(f);
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])), 0x84);
    assert_int_equal(mmio_readl(f, 0x28), 5);               /* DNAD: past the wrap */
    assert_int_equal(mmio_readl(f, 0x24) & 0xffffff, 0);    /* DBC */
    assert_int_equal(mmio_readb(f, 0x08), 0x08);            /* SFBR: the last message */
    assert_int_equal(mmio_readb(f, 0x0e) & 7, 2);           /* SSTAT1: COMMAND, connected */
    unmap_pages_around_4_gib(p, pages);
}

/*
 * Memory moves and a LOAD across 4 GiB: the chip is a 32-bit bus master,
 * so their addresses go on at 0, not at 4 GiB.  Guest memory: RAM at 0,
 * a page below 4 GiB and one at 4 GiB that must be neither read nor
 * written.
 */
static void test_memory_move_across_4_gib(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0xc0000020, 0xfffffff0, 0x200000,           /* MEMORY MOVE 32 from 4 GiB - 16 */
        0xc0000020, 0x300000, 0xfffffff8,           /* MEMORY MOVE 32 to 4 GiB - 8 */
        0xe1340004, 0xfffffffe,                     /* LOAD SCRATCHA, 4 from 4 GiB - 2 */
        0x98080000, 0x72,                           /* INT 0x72 */
    };
    int pages;
    uint8_t *p = map_pages_around_4_gib(f, &pages), want[32];

    for (int i = 0; i < 16; i++) {
        p[PAGE - 16 + i] = (uint8_t)(0xa0 + i);     /* below 4 GiB */
        f->ram.host[i] = (uint8_t)(0xb0 + i);       /* at 0 */
    }
    for (int i = 0; i < 32; i++) {
        f->ram.host[0x300000 + i] = (uint8_t)(0xc0 + i);
    }
    memset(p + PAGE, 0xee, PAGE);                   /* at 4 GiB */
    enable_mmio(f);
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])), 0x84);
    /* The first move: 16 bytes from below 4 GiB, 16 from 0. */
    for (int i = 0; i < 32; i++) {
        want[i] = (uint8_t)(i < 16 ? 0xa0 + i : 0xb0 + i - 16);
    }
    assert_memory_equal(f->ram.host + 0x200000, want, 32);
    /* The second: 8 bytes below 4 GiB, 24 at 0. */
    assert_memory_equal(p + PAGE - 8, f->ram.host + 0x300000, 8);
    assert_memory_equal(f->ram.host, f->ram.host + 0x300008, 24);
    /* The LOAD: 2 bytes below 4 GiB, 2 at 0. */
    assert_int_equal(mmio_readl(f, 0x34), 0xc9c8c7c6);
    for (int i = 0; i < PAGE; i++) {
        assert_int_equal(p[PAGE + i], 0xee);        /* 4 GiB untouched */
    }
    unmap_pages_around_4_gib(p, pages);
}

/*
 * A table entry (DSA-relative) across 4 GiB: its count in the last dword
 * below 4 GiB, its address at 0, not at 4 GiB (where no memory answers
 * the address read there).
 */
static void test_table_entry_across_4_gib(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                              /* SELECT ATN id 0 */
        0x1e000000, 0,                              /* MOVE FROM DSA + 0, WHEN MSG OUT */
        0x98080000, 0x73,                           /* INT 0x73 */
    };
    int pages;
    uint8_t *p = map_pages_around_4_gib(f, &pages);

    memcpy(p + PAGE - 4, "\x01\x00\x00\x00", 4);    /* the count: 1 */
    wl(f, 0, 0x200000);                             /* the address, at 0 */
    memset(p + PAGE, 0xee, PAGE);                   /* at 4 GiB: 0xeeeeeeee */
    wb(f, 0x200000, 0x80);                          /* IDENTIFY */
    enable_mmio(f);
    raw_bar_write(f->sock, true, 0xfe000010, 0xfffffffc, 4);   /* DSA */
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])), 0x84);
    assert_int_equal(mmio_readl(f, 0x28), 0x200001);        /* DNAD: past the message */
    assert_int_equal(mmio_readb(f, 0x08), 0x80);            /* SFBR: IDENTIFY */
    assert_int_equal(mmio_readb(f, 0x0e) & 7, 2);           /* SSTAT1: COMMAND */
    unmap_pages_around_4_gib(p, pages);
}

/*
 * STORE across 4 GiB: the first 2 bytes of SCRATCHA below it, the other 2
 * at 0, none at 4 GiB.
 */
static void test_store_across_4_gib(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0xe0340004, 0xfffffffe,                     /* STORE SCRATCHA, 4 to 4 GiB - 2 */
        0x98080000, 0x74,                           /* INT 0x74 */
    };
    int pages;
    uint8_t *p = map_pages_around_4_gib(f, &pages);

    memset(p, 0xdd, PAGE);
    memset(p + PAGE, 0xee, PAGE);
    memset(f->ram.host, 0xcc, 4);
    enable_mmio(f);
    raw_bar_write(f->sock, true, 0xfe000034, 0x44332211, 4);   /* SCRATCHA */
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])), 0x84);
    assert_memory_equal(p + PAGE - 2, "\x11\x22", 2);
    assert_memory_equal(f->ram.host, "\x33\x44\xcc\xcc", 4);
    assert_int_equal(p[PAGE - 3], 0xdd);
    for (int i = 0; i < PAGE; i++) {
        assert_int_equal(p[PAGE + i], 0xee);        /* 4 GiB untouched */
    }
    unmap_pages_around_4_gib(p, pages);
}

/* --- data phases across 4 GiB ---------------------------------------------------- */

/* READ(10) and WRITE(10) of 8 blocks (4 KiB) at block 0, as data_rw_across_4_gib() puts them. */
enum { RW_MSGS = 0x200000, RW_CDB = 0x200010, RW_LEN = 4096 };

/* Bytes that differ from a place to the next and from 'seed' to 'seed'. */
static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(seed + i * 7 + i / 251);
    }
}

/*
 * Runs 'prog', a command whose 4 KiB of data move in one block move from
 * 4 GiB - 2 KiB: READ(10) ('write' false) of the image's first 8 blocks,
 * filled with a pattern first, or WRITE(10) of them from a pattern in
 * guest memory, the image read back after.  A 32-bit address goes on at 0
 * (the data at 4 GiB - 2 KiB .. 4 GiB and 0 .. 2 KiB); with 'ccntl1' set
 * to a 64-bit mode for 'prog', the data runs on into the page at 4 GiB
 * instead.  Every page around stays as it was but for the data.  IDENTIFY
 * (with SIMPLE TAG 1 when 'tagged') is at RW_MSGS, the CDB at RW_CDB.
 */
static void data_rw_across_4_gib(struct fixture *f, const uint32_t *prog, size_t n, bool write,
                                 bool tagged, uint8_t ccntl1)
{
    uint8_t cdb[10] = { write ? 0x2a : 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
    uint8_t data[RW_LEN], before[2 * PAGE], zero_before[2048], *second;
    bool at_4_gib = ccntl1 != 0;
    int pages, fd = open(f->image, O_RDWR);
    uint8_t *p = map_pages_around_4_gib(f, &pages);

    assert_true(fd >= 0);
    fill_pattern(p, 2 * PAGE, 0x40);
    fill_pattern(f->ram.host, sizeof(zero_before), 0x80);
    fill_pattern(data, sizeof(data), 0x10);
    if (write) {
        memcpy(p + PAGE - 2048, data, 2048);
        memcpy(at_4_gib ? p + PAGE : f->ram.host, data + 2048, 2048);
    } else {
        assert_int_equal(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    }
    memcpy(before, p, sizeof(before));
    memcpy(zero_before, f->ram.host, sizeof(zero_before));
    enable_mmio(f);
    clear_unit_attention(f);
    memcpy(f->ram.host + RW_MSGS, tagged ? "\xc0\x20\x01" : "\x80", tagged ? 3 : 1);
    memcpy(f->ram.host + RW_CDB, cdb, sizeof(cdb));
    raw_bar_write(f->sock, true, 0xfe000057, ccntl1, 1);   /* CCNTL1 */
    assert_int_equal(run_to_dma_interrupt(f, prog, n) & 0x04, 0x04);       /* DSTAT: SIR */
    assert_int_equal(mmio_readl(f, 0x30), 0x75);            /* DSPS: the end, no fault */
    assert_int_equal(f->ram.host[0x200100], 0x00);          /* GOOD */
    if (write) {
        uint8_t image[RW_LEN];

        assert_int_equal(pread(fd, image, sizeof(image), 0), (ssize_t)sizeof(image));
        assert_memory_equal(image, data, sizeof(data));
    } else {
        second = at_4_gib ? before + PAGE : zero_before;
        memcpy(before + PAGE - 2048, data, 2048);
        memcpy(second, data + 2048, 2048);
    }
    assert_memory_equal(p, before, sizeof(before));         /* the data, and nothing else */
    assert_memory_equal(f->ram.host, zero_before, sizeof(zero_before));
    close(fd);
    unmap_pages_around_4_gib(p, pages);
}

/* The end of a command: status into 0x200100, COMMAND COMPLETE, then INT 0x75. */
#define RW_END 0x0b000001, 0x200100, 0x0f000001, 0x200101, 0x48000000, 0, 0x98080000, 0x75

/* A READ's DATA IN move across 4 GiB, zero-copy: on at 0. */
static void test_data_in_across_4_gib(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, RW_MSGS,     /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, RW_CDB,                     /* MOVE 10, COMMAND: READ(10) */
        0x09001000, 0xfffff800,                 /* MOVE 4096, WHEN DATA IN, to 4 GiB - 2 KiB */
        RW_END,
    };

    data_rw_across_4_gib(*state, prog, sizeof(prog) / sizeof(prog[0]), false, false, 0);
}

/* A WRITE's DATA OUT move across 4 GiB, zero-copy: on at 0. */
static void test_data_out_across_4_gib(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, RW_MSGS,
        0x0a00000a, RW_CDB,                     /* WRITE(10) */
        0x08001000, 0xfffff800,                 /* MOVE 4096, WHEN DATA OUT, from 4 GiB - 2 KiB */
        RW_END,
    };

    data_rw_across_4_gib(*state, prog, sizeof(prog) / sizeof(prog[0]), true, false, 0);
}

/*
 * A tagged READ disconnects and prefetches into its buffer; once it is
 * reselected, its DATA IN move copies the buffer across 4 GiB: on at 0.
 */
static void test_buffered_data_in_across_4_gib(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000003, RW_MSGS,     /* SELECT; MSG OUT: IDENTIFY, SIMPLE TAG 1 */
        0x0a00000a, RW_CDB,                     /* READ(10): disconnects */
        0x0f000002, 0x200200,                   /* MOVE 2, MSG IN: SAVE DP, DISCONNECT */
        0x48000000, 0,                          /* WAIT DISCONNECT */
        0x50000000, 0x100000 + 13 * 8,          /* WAIT RESELECT, else (SIGP) to 13 */
        0x0f000003, 0x200300,                   /* MOVE 3, MSG IN: IDENTIFY, SIMPLE TAG 1 */
        0x09001000, 0xfffff800,                 /* MOVE 4096, WHEN DATA IN: from the buffer */
        RW_END,
        0x98080000, 0x53,                       /* 13: signalled */
    };

    data_rw_across_4_gib(*state, prog, sizeof(prog) / sizeof(prog[0]), false, true, 0);
}

/* A tagged WRITE's DATA OUT move into its buffer across 4 GiB: on at 0. */
static void test_buffered_data_out_across_4_gib(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000003, RW_MSGS,     /* SELECT; MSG OUT: IDENTIFY, SIMPLE TAG 1 */
        0x0a00000a, RW_CDB,                     /* WRITE(10) */
        0x08001000, 0xfffff800,                 /* MOVE 4096, WHEN DATA OUT: into the buffer */
        0x0f000002, 0x200200,                   /* MOVE 2, MSG IN: SAVE DP, DISCONNECT */
        0x48000000, 0,                          /* WAIT DISCONNECT: the disk writes */
        0x50000000, 0x100000 + 13 * 8,          /* WAIT RESELECT, else (SIGP) to 13 */
        0x0f000003, 0x200300,                   /* MOVE 3, MSG IN: IDENTIFY, SIMPLE TAG 1 */
        RW_END,
        0x98080000, 0x53,                       /* 13: signalled */
    };

    data_rw_across_4_gib(*state, prog, sizeof(prog) / sizeof(prog[0]), true, true, 0);
}

/*
 * With CCNTL1 EN64DBMV a direct block move has a third dword, its address's
 * high half: the address has 64 bits, and a READ's DATA IN move from
 * 4 GiB - 2 KiB runs on into the page at 4 GiB, not at 0.  After it, DNAD
 * has carried into DNAD64: 1:00000800.
 */
static void test_data_in_64_bit_runs_past_4_gib(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, RW_MSGS, 0,  /* SELECT; MOVE 1, MSG OUT (high dword 0) */
        0x0a00000a, RW_CDB, 0,                  /* READ(10) */
        0x09001000, 0xfffff800, 0,              /* MOVE 4096, WHEN DATA IN, to 4 GiB - 2 KiB */
        0xc0000004, 0xfe000028, 0x200400,       /* MEMORY MOVE 4 from DNAD */
        0xc0000004, 0xfe0000b8, 0x200404,       /* MEMORY MOVE 4 from DNAD64 */
        0x0b000001, 0x200100, 0, 0x0f000001, 0x200101, 0,
        0x48000000, 0, 0x98080000, 0x75,
    };

    data_rw_across_4_gib(f, prog, sizeof(prog) / sizeof(prog[0]), false, false,
                         0x01);                         /* CCNTL1: EN64DBMV */
    assert_int_equal(le32(f->ram.host + 0x200400), 0x800);
    assert_int_equal(le32(f->ram.host + 0x200404), 1);
}

/*
 * SCRIPTS RAM (BAR 2) mapped over guest RAM, a MESSAGE OUT move from its
 * last 3 bytes on: those come from SCRIPTS RAM, the chip's own (IDENTIFY,
 * SIMPLE QUEUE TAG 5), the next 5 from guest RAM (NO OPERATION), byte by
 * byte as the bus decodes them, however far ahead the bytes are read.  The
 * guest RAM the BAR hides holds an ABORT, which must not be taken.
 */
static void test_message_out_across_the_end_of_scripts_ram(void **state)
{
    struct fixture *f = *state;
    enum { RAM_BAR = 0x300000, END = RAM_BAR + 8192 };
    static const uint32_t prog[] = {
        0x41000000, 0,                              /* SELECT ATN id 0 */
        0x0e000008, END - 3,                        /* MOVE 8, WHEN MSG OUT */
        0x98080000, 0x70,                           /* INT 0x70 */
    };
    static const uint8_t in_scripts_ram[] = { 0x80, 0x20, 0x05 };

    enable_mmio(f);
    raw_config_write(f->sock, 0x18, RAM_BAR, 4);
    for (unsigned i = 0; i < sizeof(in_scripts_ram); i++) {
        raw_bar_write(f->sock, true, END - 3 + i, in_scripts_ram[i], 1);
        wb(f, END - 3 + i, 0x06);                   /* ABORT, under the BAR */
    }
    memset(f->ram.host + END, 0x08, 5);             /* NO OPERATION */
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])), 0x84);
    assert_int_equal(mmio_readl(f, 0x28), END + 5);         /* DNAD: every byte taken */
    assert_int_equal(mmio_readl(f, 0x24) & 0xffffff, 0);    /* DBC */
    assert_int_equal(mmio_readb(f, 0x08), 0x08);            /* SFBR: the last message */
    assert_int_equal(mmio_readb(f, 0x0e) & 7, 2);           /* SSTAT1: COMMAND, connected */
}

/*
 * A SCSI phase's bytes aimed at the chip's own registers: the reply to a
 * synchronous negotiation moved by MESSAGE IN onto DSA+1 .. ISTAT1, its
 * period byte (0x48, the initiator's own proposal) landing on ISTAT0 as a
 * software reset in the middle of the move.  The move is refused with a
 * bus fault; the chip is not reset under it and the message stays whole.
 */
static void test_message_in_into_own_registers(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0,                  /* SELECT ATN id 0 */
        0x0e000006, 0x200000,           /* MOVE 6, WHEN MSG OUT: IDENTIFY, SDTR */
        0x0f000005, 0xfe000011,         /* MOVE 5, WHEN MSG IN: onto DSA+1 .. ISTAT1 */
        0x98080000, 0x60,
    };
    static const uint8_t msgs[] = { 0x80, 0x01, 0x03, 0x01, 0x48, 0x0f };

    enable_mmio(f);
    memcpy(f->ram.host + 0x200000, msgs, sizeof(msgs));
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])) & 0x20,
                     0x20);                                  /* DSTAT: bus fault */
    assert_int_equal(mmio_readl(f, 0x10), 0);                /* DSA untouched */
    assert_int_equal(mmio_readl(f, 0x2c), 0x100018);         /* DSP: not reset */
    assert_int_equal(mmio_readb(f, 0x0e) & 7, 7);            /* SSTAT1: still MESSAGE IN */
    assert_int_equal(mmio_readb(f, 0x58), 0x01);             /* SBDL: the message's first byte */
}

/* A STATUS byte moved onto ISTAT0: refused the same way. */
static void test_status_into_own_registers(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a000006, 0x200100,                   /* MOVE 6, COMMAND: TEST UNIT READY */
        0x0b000001, 0xfe000014,                 /* MOVE 1, STATUS: onto ISTAT0 */
        0x98080000, 0x61,
    };

    enable_mmio(f);
    wb(f, 0x200000, 0x80);
    memset(f->ram.host + 0x200100, 0, 6);
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])) & 0x20,
                     0x20);
    assert_int_equal(mmio_readb(f, 0x0e) & 7, 3);            /* SSTAT1: still STATUS */
}

/* A command fetched from the registers (reads that clear DSTAT and SIST): refused. */
static void test_command_from_own_registers(void **state)
{
    struct fixture *f = *state;
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a000006, 0xfe00000c,                 /* MOVE 6, COMMAND: from DSTAT .. */
        0x98080000, 0x62,
    };

    enable_mmio(f);
    wb(f, 0x200000, 0x80);
    assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])) & 0x20,
                     0x20);
    assert_int_equal(mmio_readb(f, 0x0e) & 7, 2);            /* SSTAT1: still COMMAND */
}

/* Sends BAR writes in one write(), so that the remote reads them in one go. */
static void bar_writes_back_to_back(struct fixture *f, const struct mpqemu_bar_access *a,
                                    size_t n)
{
    struct { struct mpqemu_hdr h; struct mpqemu_bar_access a; } msg[8];

    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        msg[i].h = (struct mpqemu_hdr){ .cmd = MPQEMU_CMD_BAR_WRITE, .size = sizeof(a[i]) };
        msg[i].a = a[i];
    }
    assert_int_equal(write(f->sock, msg, n * sizeof(msg[0])), (ssize_t)(n * sizeof(msg[0])));
    for (size_t i = 0; i < n; i++) {
        raw_ret(f->sock);
    }
}

/*
 * The image's first 'len' bytes (a multiple of 512, under 32 MiB) filled
 * with a pattern (returned; the caller frees it), the MMIO BAR on, the unit
 * attention taken, and a READ(10) of them as the command a program finds:
 * IDENTIFY at 0x200000, the CDB at 0x200010.
 */
static uint8_t *prepare_read(struct fixture *f, size_t len, unsigned seed)
{
    const uint8_t read10[10] = { 0x28, 0, 0, 0, 0, 0, 0, (uint8_t)(len / 512 >> 8),
                                 (uint8_t)(len / 512), 0 };
    uint8_t *data = malloc(len);
    int fd = open(f->image, O_WRONLY);

    fill_pattern(data, len, seed);
    assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
    close(fd);
    enable_mmio(f);
    clear_unit_attention(f);
    wb(f, 0x200000, 0x80);
    memcpy(f->ram.host + 0x200010, read10, sizeof(read10));
    return data;
}

/*
 * The host aborts SCRIPTS (ISTAT0 ABRT) while a 2 MiB READ piece is on its
 * way from the disk, and restarts them at once (DSP) with a program that
 * moves the rest.  The request must not take a second transfer while the
 * first is in flight: the restarted SCRIPTS wait for it, then move the
 * rest.  All 4 MiB arrive, the command ends GOOD.
 */
static void test_abort_and_restart_during_a_transfer(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 4 << 20, BUF = 0x1000000 };
    static const uint32_t first[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: READ(10), 4 MiB */
        0x09000000 | LEN / 2, BUF,              /* MOVE 2 MiB, WHEN DATA IN */
        0x98080000, 0x44,                       /* (aborted before it gets here) */
    };
    static const uint32_t rest[] = {
        0x09000000 | LEN / 2, BUF + LEN / 2,    /* MOVE 2 MiB, WHEN DATA IN */
        0x0b000001, 0x200100,                   /* MOVE 1, STATUS */
        0x0f000001, 0x200101,                   /* MOVE 1, MSG IN */
        0x48000000, 0, 0x98080000, 0x45,        /* WAIT DISCONNECT; INT 0x45 */
    };
    const struct mpqemu_bar_access writes[] = {
        { .addr = 0xfe00002c, .val = 0x100000, .size = 4, .memory = 1 },    /* DSP: start */
        { .addr = 0xfe000014, .val = 0x80, .size = 1, .memory = 1 },        /* ISTAT0: ABRT */
        { .addr = 0xfe000014, .val = 0x00, .size = 1, .memory = 1 },
        { .addr = 0xfe00002c, .val = 0x100100, .size = 4, .memory = 1 },    /* DSP: the rest */
    };
    uint8_t *block = prepare_read(f, LEN, 3), dstat = 0;

    f->ram.host[0x200100] = f->ram.host[0x200101] = 0xff;
    for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
        wl(f, 0x100000 + 4 * i, first[i]);
    }
    for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++) {
        wl(f, 0x100100 + 4 * i, rest[i]);
    }
    bar_writes_back_to_back(f, writes, sizeof(writes) / sizeof(writes[0]));
    for (int i = 0; i < 500 && !(dstat & 0x04); i++) {
        dstat |= mmio_readb(f, 0x0c);                       /* stacked: ABRT, then SIR */
        usleep(10000);
    }
    assert_int_equal(dstat & 0x14, 0x14);                   /* aborted, then INT */
    assert_int_equal(mmio_readl(f, 0x30), 0x45);            /* DSPS: the second program's */
    assert_int_equal(f->ram.host[0x200100], 0x00);          /* GOOD */
    assert_int_equal(f->ram.host[0x200101], 0x00);          /* COMMAND COMPLETE */
    assert_memory_equal(f->ram.host + BUF, block, LEN);
    free(block);
}

/* --- registers written while a data move is in flight ------------------------------ */

/*
 * Starts 'prog' at 0x100000 and, in the same write(), the host's 'writes',
 * which the remote then takes while the data move 'prog' starts waits for
 * the disk.  Returns the DSTAT of the interrupt the SCRIPTS end in.
 */
static uint8_t run_with_writes_during_the_move(struct fixture *f, const uint32_t *prog, size_t n,
                                               const struct mpqemu_bar_access *writes,
                                               size_t n_writes)
{
    struct mpqemu_bar_access all[8] = {
        { .addr = 0xfe00002c, .val = 0x100000, .size = 4, .memory = 1 },   /* DSP: start */
    };

    assert_true(n_writes < 8);
    memcpy(all + 1, writes, n_writes * sizeof(*writes));
    for (size_t i = 0; i < n; i++) {
        wl(f, 0x100000 + 4 * i, prog[i]);
    }
    bar_writes_back_to_back(f, all, n_writes + 1);
    wait_irq(f);
    return mmio_readb(f, 0x0c);
}

/*
 * A READ(10) of 4 MiB whose first block move asks for 2 MiB into BUF; the
 * host writes 'w' while the disk fills them.  The move is the SCRIPTS
 * processor's until it lands: the write is dropped, the move ends after
 * the 2 MiB its instruction asked for, at the next instruction (INT 0x44),
 * with DBC 0 and DNAD past the data, nothing beyond BUF + 2 MiB touched.
 */
static void expect_move_keeps_its_registers(struct fixture *f, struct mpqemu_bar_access w)
{
    enum { LEN = 4 << 20, BUF = 0x1000000, SENTINEL = 0xee };
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: READ(10), 4 MiB */
        0x09000000 | LEN / 2, BUF,              /* MOVE 2 MiB, WHEN DATA IN */
        0x98080000, 0x44,                       /* INT 0x44 */
    };
    uint8_t *block = prepare_read(f, LEN, 5);

    memset(f->ram.host + BUF, SENTINEL, 2 * LEN);
    assert_int_equal(run_with_writes_during_the_move(f, prog, sizeof(prog) / sizeof(prog[0]),
                                                     &w, 1) & 0x04, 0x04);      /* DSTAT: SIR */
    assert_int_equal(mmio_readl(f, 0x30), 0x44);            /* DSPS: the next instruction */
    assert_int_equal(mmio_readb(f, 0x42) & 0x80, 0);        /* SIST0: no phase mismatch */
    assert_int_equal(mmio_readl(f, 0x24) & 0xffffff, 0);    /* DBC: all moved */
    assert_int_equal(mmio_readl(f, 0x28), BUF + LEN / 2);   /* DNAD: past the data */
    assert_memory_equal(f->ram.host + BUF, block, LEN / 2);
    for (size_t i = LEN / 2; i < 2 * LEN; i++) {
        if (f->ram.host[BUF + i] != SENTINEL) {
            fail_msg("byte at 0x%zx past the move written", BUF + i);
        }
    }
    expect_alive(f);
    free(block);
}

/* DBC set to 0 under the move: no underflow into a move of 16 MiB less 2 MiB. */
static void test_dbc_zeroed_during_a_move(void **state)
{
    expect_move_keeps_its_registers(*state, (struct mpqemu_bar_access){
        .addr = 0xfe000024, .val = 0, .size = 4, .memory = 1 });
}

/* DBC set to 16 MiB - 1 under the move: it moves no more than its 2 MiB. */
static void test_dbc_raised_during_a_move(void **state)
{
    expect_move_keeps_its_registers(*state, (struct mpqemu_bar_access){
        .addr = 0xfe000024, .val = 0xffffff, .size = 4, .memory = 1 });
}

/* DNAD pointed elsewhere under the move: DNAD tells where the move got to. */
static void test_dnad_moved_during_a_move(void **state)
{
    expect_move_keeps_its_registers(*state, (struct mpqemu_bar_access){
        .addr = 0xfe000028, .val = 0x3000000, .size = 4, .memory = 1 });
}

/*
 * A READ's 4 KiB DATA IN move from 4 GiB - 2 KiB goes in two pieces (the
 * second at 0); the host points DNAD (and DNAD64, and CCNTL1 at a 64-bit
 * mode) elsewhere while the first lands.  The second piece still goes to
 * 0, where the move's address went on: nothing lands at the host's
 * address, nor at 4 GiB.
 */
static void test_dnad_moved_between_the_pieces_of_a_move(void **state)
{
    struct fixture *f = *state;
    enum { ELSEWHERE = 0x800000 };
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, RW_MSGS,     /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, RW_CDB,                     /* MOVE 10, COMMAND: READ(10) */
        0x09001000, 0xfffff800,                 /* MOVE 4096, WHEN DATA IN, to 4 GiB - 2 KiB */
        RW_END,
    };
    static const uint8_t read10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
    const struct mpqemu_bar_access writes[] = {
        { .addr = 0xfe000028, .val = ELSEWHERE, .size = 4, .memory = 1 },   /* DNAD */
        { .addr = 0xfe0000b8, .val = 0, .size = 4, .memory = 1 },           /* DNAD64 */
        { .addr = 0xfe000057, .val = 0x01, .size = 1, .memory = 1 },        /* CCNTL1: EN64DBMV */
    };
    uint8_t data[RW_LEN], before[2 * PAGE];
    int pages, fd = open(f->image, O_WRONLY);
    uint8_t *p = map_pages_around_4_gib(f, &pages);

    fill_pattern(data, sizeof(data), 0x21);
    assert_int_equal(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    close(fd);
    fill_pattern(p, 2 * PAGE, 0x40);
    memcpy(before, p, sizeof(before));
    memset(f->ram.host, 0xee, 2048);
    memset(f->ram.host + ELSEWHERE, 0xee, RW_LEN);
    enable_mmio(f);
    clear_unit_attention(f);
    wb(f, RW_MSGS, 0x80);
    memcpy(f->ram.host + RW_CDB, read10, sizeof(read10));
    assert_int_equal(run_with_writes_during_the_move(f, prog, sizeof(prog) / sizeof(prog[0]),
                                                     writes, 3) & 0x04, 0x04);  /* DSTAT: SIR */
    assert_int_equal(mmio_readl(f, 0x30), 0x75);            /* DSPS: the end, no fault */
    assert_int_equal(f->ram.host[0x200100], 0x00);          /* GOOD */
    memcpy(before + PAGE - 2048, data, 2048);
    assert_memory_equal(p, before, sizeof(before));         /* nothing at 4 GiB */
    assert_memory_equal(f->ram.host, data + 2048, 2048);    /* the second piece at 0 */
    for (size_t i = 0; i < RW_LEN; i++) {
        assert_int_equal(f->ram.host[ELSEWHERE + i], 0xee);
    }
    unmap_pages_around_4_gib(p, pages);
}

/* query-block's entry for one device (a device's entry begins with its "io-status"). */
static void query_block_of(int qmp, const char *qdev, char *reply, size_t size)
{
    static const char query[] = "{\"execute\":\"query-block\"}\n";
    const char *entry = "{\"io-status\"";
    char *at, *start = NULL, *next;

    qmp_socket_command(qmp, query, reply, size);
    at = strstr(reply, qdev);
    assert_non_null(at);
    for (char *p = reply; (p = strstr(p, entry)) && p < at; p++) {
        start = p;
    }
    assert_non_null(start);
    if ((next = strstr(at, entry))) {
        *next = 0;
    }
    memmove(reply, start, strlen(start) + 1);
}

/*
 * The host ejects the CD-ROM while a guest READ holds it, between two data
 * moves.  As QEMU (whose blk_remove_bs() drains the medium's I/O in flight):
 * the eject is not refused; the READ had its two blocks read ahead (QEMU
 * reads them at once into its bounce buffer), no I/O of it is in flight, so
 * the tray opens and the medium comes out at once; the READ finishes GOOD
 * with the medium's data, and the drive is empty afterwards.
 */
static void test_eject_while_a_read_holds_the_medium(void **state)
{
    struct fixture *f = *state;
    static const uint32_t command[] = {
        0x41010000, 0, 0x0e000001, 0x200000,    /* SELECT id 1; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: READ(10) of 2 blocks */
        0x98080000, 0x50,                       /* INT: stop before the data phase */
    };
    static const uint32_t piece[] = {
        0x09000800, 0x300000,                   /* MOVE 2048, WHEN DATA IN */
        0x98080000, 0x51,                       /* INT: stop between the pieces */
    };
    static const uint32_t rest[] = {
        0x09000800, 0x300800,                   /* MOVE 2048, WHEN DATA IN */
        0x0b000001, 0x200100, 0x0f000001, 0x200101,
        0x48000000, 0, 0x98080000, 0x52,
    };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0 };
    static const char eject[] = "{\"execute\":\"eject\",\"arguments\":{\"id\":\"cd0\"}}\n";
    uint8_t want[4096];
    char reply[4096];
    int qmp = qmp_socket_open(qmp_path);

    enable_mmio(f);
    clear_unit_attention_of(f, 1);
    wb(f, 0x200000, 0x80);
    memcpy(f->ram.host + 0x200010, read10, sizeof(read10));
    memset(f->ram.host + 0x300000, 0, sizeof(want));
    run_to_dma_interrupt(f, command, sizeof(command) / sizeof(command[0]));
    run_to_dma_interrupt(f, piece, sizeof(piece) / sizeof(piece[0]));
    qmp_socket_command(qmp, eject, reply, sizeof(reply));
    assert_non_null(strstr(reply, "\"return\""));
    assert_int_equal(run_to_dma_interrupt(f, rest, sizeof(rest) / sizeof(rest[0])) & 0x04,
                     0x04);
    assert_int_equal(mmio_readl(f, 0x30), 0x52);
    assert_int_equal(f->ram.host[0x200100], 0x00);          /* GOOD */
    cd_pattern(want, sizeof(want));
    assert_memory_equal(f->ram.host + 0x300000, want, sizeof(want));
    query_block_of(qmp, "\"qdev\": \"cd0\"", reply, sizeof(reply));
    assert_non_null(strstr(reply, "\"tray_open\": true"));
    assert_null(strstr(reply, "\"inserted\""));
    close(qmp);
}

/* A removable disk at scsi-id 2 (1 MiB), and a QMP monitor. */
static char removable_image[64];

static int setup_removable(void **state)
{
    static char drive[120], qmp[100];
    static const char *more[] = {
        "-drive", drive, "-device", "scsi-hd,id=rd0,drive=rd,bus=lsi0.0,scsi-id=2,removable=on",
        "-qmp", qmp, NULL,
    };

    strcpy(removable_image, "/var/tmp/mpqemu-lsirm-XXXXXX");
    close(mkstemp(removable_image));
    assert_int_equal(truncate(removable_image, 1 << 20), 0);
    snprintf(drive, sizeof(drive), "id=rd,file=%s,format=raw", removable_image);
    snprintf(qmp_path, sizeof(qmp_path), "/tmp/mpqemu-lsiqmp-%d", (int)getpid());
    snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", qmp_path);
    return setup_remote(state, lsi_default, "format=raw", more);
}

/*
 * The host ejects a removable disk, forced, while a tagged WRITE holds it:
 * its data is in the command's buffer and the target disconnected, its I/O
 * in flight or done.  As QEMU: the eject answers once that I/O has
 * completed, not before; the data is on the medium, the medium is out, and
 * the command, reselected, ends GOOD.
 */
static void test_eject_while_a_tagged_write_holds_the_medium(void **state)
{
    struct fixture *f = *state;
    static const uint32_t command[] = {
        0x41020000, 0, 0x0e000003, 0x200000,    /* SELECT id 2; MOVE 3, MSG OUT: IDENTIFY, TAG */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: WRITE(10) of 2 blocks */
        0x08000400, 0x300000,                   /* MOVE 1024, WHEN DATA OUT: into its buffer */
        0x0f000002, 0x200200, 0x48000000, 0,    /* SAVE DP, DISCONNECT; WAIT DISCONNECT */
        0x98080000, 0x51,
    };
    static const uint32_t status[] = {
        0x50000000, 0x100000 + 6 * 8,           /* WAIT RESELECT */
        0x0f000003, 0x200300,                   /* MOVE 3, MSG IN: IDENTIFY, TAG */
        0x0b000001, 0x200100, 0x0f000001, 0x200101,
        0x48000000, 0, 0x98080000, 0x52, 0x98080000, 0x53,
    };
    static const uint8_t msgs[] = { 0xc0, 0x20, 0x03 };
    static const uint8_t write10[] = { 0x2a, 0, 0, 0, 0, 4, 0, 0, 2, 0 };
    static const char eject[] =
        "{\"execute\":\"eject\",\"arguments\":{\"id\":\"rd0\",\"force\":true}}\n";
    char reply[4096];
    uint8_t on_disk[1024];
    int qmp = qmp_socket_open(qmp_path), fd;

    enable_mmio(f);
    clear_unit_attention_of(f, 2);
    memcpy(f->ram.host + 0x200000, msgs, sizeof(msgs));
    memcpy(f->ram.host + 0x200010, write10, sizeof(write10));
    memset(f->ram.host + 0x300000, 0x6b, 1024);
    run_to_dma_interrupt(f, command, sizeof(command) / sizeof(command[0]));
    assert_int_equal(f->ram.host[0x200201], 0x04);          /* disconnected */
    qmp_socket_command(qmp, eject, reply, sizeof(reply));
    assert_non_null(strstr(reply, "\"return\""));
    /* The answer came after the write: it is on the medium. */
    fd = open(removable_image, O_RDONLY);
    assert_int_equal(pread(fd, on_disk, sizeof(on_disk), 4 * 512), (ssize_t)sizeof(on_disk));
    close(fd);
    assert_memory_equal(on_disk, f->ram.host + 0x300000, sizeof(on_disk));
    query_block_of(qmp, "\"qdev\": \"rd0\"", reply, sizeof(reply));
    assert_null(strstr(reply, "\"inserted\""));
    assert_int_equal(run_to_dma_interrupt(f, status, sizeof(status) / sizeof(status[0])) & 0x04,
                     0x04);
    assert_int_equal(mmio_readl(f, 0x30), 0x52);
    assert_int_equal(f->ram.host[0x200302], 0x03);          /* its tag */
    assert_int_equal(f->ram.host[0x200100], 0x00);          /* GOOD */
    close(qmp);
    unlink(removable_image);
}

/*
 * A removable disk at scsi-id 2 on an NBD server (nbdkit's delay filter:
 * each read takes 2 s) that an eject waits for only 300 ms
 * (x-drain-limit-ms), and a QMP monitor.
 */
static char nbd_dir[64];

enum { NBD_READ_DELAY_MS = 2000, NBD_DRAIN_LIMIT_MS = 300 };

static int setup_removable_on_nbd(void **state)
{
    static char drive[160], device[160], qmp[100];
    static const char *more[] = { "-drive", drive, "-device", device, "-qmp", qmp, NULL };

    if (sh("command -v nbdkit >/dev/null") != 0) {
        skip();
    }
    strcpy(nbd_dir, "/var/tmp/mpqemu-lsinbd-XXXXXX");
    assert_non_null(mkdtemp(nbd_dir));
    assert_int_equal(sh("head -c 1M /dev/urandom >'%s/img' && nbdkit -U '%s/sock' -P '%s/pid' "
                        "--filter=delay file '%s/img' delay-read=%dms",
                        nbd_dir, nbd_dir, nbd_dir, nbd_dir, NBD_READ_DELAY_MS), 0);
    for (int i = 0; i < 500 && sh("test -S '%s/sock'", nbd_dir) != 0; i++) {
        usleep(10000);
    }
    snprintf(drive, sizeof(drive), "id=rd,file=nbd+unix:///?socket=%s/sock,format=raw", nbd_dir);
    snprintf(device, sizeof(device), "scsi-hd,id=rd0,drive=rd,bus=lsi0.0,scsi-id=2,"
             "removable=on,x-drain-limit-ms=%d", NBD_DRAIN_LIMIT_MS);
    snprintf(qmp_path, sizeof(qmp_path), "/tmp/mpqemu-lsiqmp-%d", (int)getpid());
    snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", qmp_path);
    return setup_remote(state, lsi_default, "format=raw", more);
}

static int teardown_nbd(void **state)
{
    int r = teardown(state);

    sh("kill $(cat '%s/pid') 2>/dev/null; rm -rf '%s'", nbd_dir, nbd_dir);
    return r;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
 * The host ejects (forced) a removable disk whose NBD server is slow to
 * answer a guest READ, tagged and disconnected: the eject gives up after
 * the drain limit, not before and not when the READ ends, saying why; the
 * tray is open with the medium in it.  The READ then ends GOOD with the
 * server's data, and a second eject takes the medium out at once.
 */
static void test_eject_gives_up_on_a_slow_nbd_server(void **state)
{
    struct fixture *f = *state;
    static const uint32_t command[] = {
        0x41020000, 0, 0x0e000003, 0x200000,    /* SELECT id 2; MOVE 3, MSG OUT: IDENTIFY, TAG */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: READ(10) of 2 blocks */
        0x0f000002, 0x200200, 0x48000000, 0,    /* MSG IN: SAVE DP, DISCONNECT; WAIT DISCONNECT */
        0x98080000, 0x51,
    };
    static const uint32_t status[] = {
        0x50000000, 0x100000 + 7 * 8,           /* WAIT RESELECT */
        0x0f000003, 0x200300,                   /* MOVE 3, MSG IN: IDENTIFY, TAG */
        0x09000400, 0x300000,                   /* MOVE 1024, WHEN DATA IN */
        0x0b000001, 0x200100, 0x0f000001, 0x200101,
        0x48000000, 0, 0x98080000, 0x52, 0x98080000, 0x53,
    };
    static const uint8_t msgs[] = { 0xc0, 0x20, 0x03 };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 4, 0, 0, 2, 0 };
    static const char eject[] =
        "{\"execute\":\"eject\",\"arguments\":{\"id\":\"rd0\",\"force\":true}}\n";
    char reply[4096], path[96];
    uint8_t on_server[1024];
    int qmp = qmp_socket_open(qmp_path), fd;
    double t0, waited;

    enable_mmio(f);
    clear_unit_attention_of(f, 2);
    memcpy(f->ram.host + 0x200000, msgs, sizeof(msgs));
    memcpy(f->ram.host + 0x200010, read10, sizeof(read10));
    memset(f->ram.host + 0x300000, 0, 1024);
    run_to_dma_interrupt(f, command, sizeof(command) / sizeof(command[0]));
    assert_int_equal(f->ram.host[0x200201], 0x04);          /* disconnected */
    t0 = now_ms();
    qmp_socket_command(qmp, eject, reply, sizeof(reply));
    waited = now_ms() - t0;
    assert_non_null(strstr(reply, "\"error\""));
    assert_non_null(strstr(reply, "still has 1 request in flight after 300 ms"));
    assert_true(waited >= NBD_DRAIN_LIMIT_MS - 10);
    assert_true(waited < NBD_READ_DELAY_MS - 200);
    query_block_of(qmp, "\"qdev\": \"rd0\"", reply, sizeof(reply));
    assert_non_null(strstr(reply, "\"tray_open\": true"));
    assert_non_null(strstr(reply, "\"inserted\""));         /* the medium stays in the tray */

    assert_int_equal(run_to_dma_interrupt(f, status, sizeof(status) / sizeof(status[0])) & 0x04,
                     0x04);
    assert_int_equal(mmio_readl(f, 0x30), 0x52);
    assert_int_equal(f->ram.host[0x200302], 0x03);          /* its tag */
    assert_int_equal(f->ram.host[0x200100], 0x00);          /* GOOD */
    snprintf(path, sizeof(path), "%s/img", nbd_dir);
    fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, on_server, sizeof(on_server), 4 * 512), (ssize_t)sizeof(on_server));
    close(fd);
    assert_memory_equal(f->ram.host + 0x300000, on_server, sizeof(on_server));

    qmp_socket_command(qmp, eject, reply, sizeof(reply));
    assert_non_null(strstr(reply, "\"return\""));
    query_block_of(qmp, "\"qdev\": \"rd0\"", reply, sizeof(reply));
    assert_null(strstr(reply, "\"inserted\""));
    close(qmp);
}

/* qcow2: unallocated clusters read as zeros, written by us into the lost pages. */
static void test_qcow2_zeros_into_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,
        0x0a00000a, 0x200010,                   /* READ(10) of 3 blocks */
        0x09000600, 0x900000,                   /* MOVE 1536, WHEN DATA IN: one direct piece */
        0x98080000, 0x46,
    };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 9, 0, 0, 3, 0 };

    expect_bus_fault_past_the_end(*state, prog, sizeof(prog) / sizeof(prog[0]), read10,
                                  sizeof(read10));
}

/* cache=none, a buffer off the sector grid: the bounce copy into the lost pages. */
static void test_misaligned_read_into_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,
        0x0a00000a, 0x200010,                   /* READ(10) of 3 blocks */
        0x09000600, 0x900001,                   /* MOVE 1536, WHEN DATA IN: misaligned */
        0x98080000, 0x47,
    };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 9, 0, 0, 3, 0 };

    expect_bus_fault_past_the_end(*state, prog, sizeof(prog) / sizeof(prog[0]), read10,
                                  sizeof(read10));
}

/* cache=none, a buffer off the sector grid: the bounce copy from the lost pages. */
static void test_misaligned_write_from_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,
        0x0a00000a, 0x200010,                   /* WRITE(10) of 3 blocks */
        0x08000600, 0x900001,                   /* MOVE 1536, WHEN DATA OUT: misaligned */
        0x98080000, 0x48,
    };
    static const uint8_t write10[] = { 0x2a, 0, 0, 0, 0, 9, 0, 0, 3, 0 };

    expect_bus_fault_past_the_end(*state, prog, sizeof(prog) / sizeof(prog[0]), write10,
                                  sizeof(write10));
}

/*
 * The VMM replaces guest memory (SYNC_SYSMEM) while a 4 MiB READ moves
 * straight from the disk into the old memory: the remote lets the transfer
 * land before it unmaps, so the old memory holds every block and the new
 * memory none (no transfer lands at an address that went away).
 */
static void test_memory_replaced_during_a_read(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 4 << 20, BUF = 0x1000000 };
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: READ(10) of 8192 blocks */
        0x09000000 | LEN, BUF,                  /* MOVE 4 MiB, WHEN DATA IN: direct */
        0x98080000, 0x44,
    };
    struct mpqemu_sync_sysmem sm = { .sizes = { RAM_SIZE } };
    struct mpq_ram fresh;
    uint8_t *block = prepare_read(f, LEN, 7);

    for (size_t i = 0; i < sizeof(prog) / sizeof(prog[0]); i++) {
        wl(f, 0x100000 + 4 * i, prog[i]);
    }
    assert_int_equal(mpq_ram_create(&fresh, 0, RAM_SIZE, NULL), 0);
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    raw_send(f->sock, MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), &fresh.fd, 1);
    expect_alive(f);    /* answered after the replacement */
    assert_memory_equal(f->ram.host + BUF, block, LEN);
    for (size_t i = 0; i < LEN; i += 4096) {
        assert_int_equal(fresh.host[BUF + i], 0);
    }
    mpq_ram_destroy(&fresh);
    free(block);
}

/* --- tagged commands whose data waits in a buffer ---------------------------------- */

enum { TAGGED_MSGS = 0x200400, TAGGED_CDBS = 0x200500, TAGGED_DATA = 0x400000 };

/*
 * Writes SCRIPTS at 0x100000 that issue 'n' tagged commands (tags 1..n,
 * IDENTIFY with the disconnect privilege): each one's CDB at
 * TAGGED_CDBS + 16 * i; a WRITE's data (len bytes from TAGGED_DATA + i * len)
 * moves before it disconnects.  Then INT 0x50.
 */
static void issue_tagged(struct fixture *f, unsigned n, bool write, uint32_t blocks)
{
    uint32_t len = blocks * 512, at = 0x100000;

    for (unsigned i = 0; i < n; i++) {
        uint8_t *cdb = f->ram.host + TAGGED_CDBS + 16 * i;
        const uint32_t insns[] = {
            0x41000000, 0,                              /* SELECT ATN id 0 */
            0x0e000003, TAGGED_MSGS + 4 * i,            /* MOVE 3, MSG OUT: IDENTIFY, TAG */
            0x0a00000a, TAGGED_CDBS + 16 * i,           /* MOVE 10, COMMAND */
            0x08000000 | len, TAGGED_DATA + i * len,    /* (a WRITE) MOVE, DATA OUT */
            0x0f000002, 0x200200,                       /* MOVE 2, MSG IN: SAVE DP, DISCONNECT */
            0x48000000, 0,                              /* WAIT DISCONNECT */
        };

        f->ram.host[TAGGED_MSGS + 4 * i] = 0xc0;
        f->ram.host[TAGGED_MSGS + 4 * i + 1] = 0x20;
        f->ram.host[TAGGED_MSGS + 4 * i + 2] = (uint8_t)(i + 1);
        memset(cdb, 0, 10);
        cdb[0] = write ? 0x2a : 0x28;
        put_be32(cdb + 2, i * blocks);
        put_be16(cdb + 7, (uint16_t)blocks);
        for (size_t k = 0; k < sizeof(insns) / sizeof(insns[0]); k += 2) {
            if (!write && insns[k] >> 24 == 0x08) {
                continue;
            }
            wl(f, at, insns[k]);
            wl(f, at + 4, insns[k + 1]);
            at += 8;
        }
    }
    wl(f, at, 0x98080000);
    wl(f, at + 4, 0x50);
}

/* Runs what issue_tagged() wrote; every command disconnected. */
static void run_issued(struct fixture *f)
{
    raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
    wait_irq(f);
    assert_int_equal(mmio_readb(f, 0x0c) & 0x04, 0x04);     /* DSTAT: SIR */
    assert_int_equal(mmio_readb(f, 0x30), 0x50);
    assert_int_equal(f->ram.host[0x200201], 0x04);          /* the last one disconnected */
}

/* A disk of 'bytes' whose block b starts with b, for reads to check. */
static void number_blocks(struct fixture *f, size_t bytes)
{
    int fd = open(f->image, O_WRONLY);
    uint8_t block[512] = { 0 };

    for (uint32_t b = 0; b < bytes / 512; b++) {
        put_be32(block, b);
        assert_int_equal(pwrite(fd, block, 512, (off_t)b * 512), 512);
    }
    close(fd);
}

/*
 * Takes n reselections, one program run each: IDENTIFY and the tag, 'len'
 * bytes of DATA IN into a bounce area (copied to the tag's place,
 * TAGGED_DATA + (tag - 1) * len), the status (GOOD) and COMMAND COMPLETE.
 * The tags, in the order they came, go to 'tags'.
 */
static void collect_reads(struct fixture *f, unsigned n, uint32_t len, uint8_t *tags)
{
    unsigned got = 0;

    while (got < n) {
        const uint32_t prog[] = {
            0x50000000, 0x100000 + 8 * 8,       /* WAIT RESELECT, else (SIGP) to 8 */
            0x0f000003, 0x200300,               /* MOVE 3, MSG IN: IDENTIFY, SIMPLE TAG, tag */
            0x09000000 | len, 0x600000,         /* MOVE len, WHEN DATA IN, to the bounce area */
            0x0b000001, 0x200100,               /* MOVE 1, STATUS */
            0x0f000001, 0x200101,               /* MOVE 1, MSG IN */
            0x48000000, 0,                      /* WAIT DISCONNECT */
            0x98080000, 0x52,                   /* INT 0x52: one done */
            0x98080000, 0x51,
            0x98080000, 0x53,                   /* 8: signalled */
        };
        uint8_t tag;

        assert_int_equal(run_to_dma_interrupt(f, prog, sizeof(prog) / sizeof(prog[0])) & 0x04,
                         0x04);
        assert_int_equal(mmio_readl(f, 0x30), 0x52);
        assert_int_equal(f->ram.host[0x200100], 0x00);      /* GOOD */
        tag = f->ram.host[0x200302];
        assert_true(tag >= 1 && tag <= n);
        memcpy(f->ram.host + TAGGED_DATA + (tag - 1) * len, f->ram.host + 0x600000, len);
        tags[got++] = tag;
    }
}

/*
 * Eight tagged READs disconnect and prefetch at once; the target
 * reselects each (oldest first once its data is there) and the data is
 * each command's own.
 */
static void test_prefetched_reads(void **state)
{
    struct fixture *f = *state;
    enum { N = 8, BLOCKS = 16, LEN = BLOCKS * 512 };
    uint8_t tags[N];

    number_blocks(f, N * LEN);
    enable_mmio(f);
    clear_unit_attention(f);
    issue_tagged(f, N, false, BLOCKS);
    run_issued(f);
    collect_reads(f, N, LEN, tags);
    for (unsigned i = 0; i < N; i++) {
        for (unsigned b = 0; b < BLOCKS; b++) {
            assert_int_equal(be32(f->ram.host + TAGGED_DATA + i * LEN + b * 512),
                             i * BLOCKS + b);
        }
    }
}

/*
 * A second tagged command with the tag of one that is disconnected (an
 * overlapped command) ends at once in CHECK CONDITION, ABORTED COMMAND,
 * TAGGED OVERLAPPED COMMANDS with the tag; the first goes on and brings
 * its own data.  A guest cannot queue more than 256 commands per LUN.
 */
static void test_overlapped_tag(void **state)
{
    struct fixture *f = *state;
    enum { BLOCKS = 8, LEN = BLOCKS * 512 };
    const uint32_t again[] = {
        0x41000000, 0, 0x0e000003, TAGGED_MSGS, /* SELECT; MOVE 3, MSG OUT: IDENTIFY, TAG 1 */
        0x0a00000a, TAGGED_CDBS + 16,           /* MOVE 10, COMMAND: READ(10) */
        0x0b000001, 0x200100,                   /* MOVE 1, WHEN STATUS: no disconnect */
        0x0f000001, 0x200101, 0x48000000, 0,    /* MSG IN; WAIT DISCONNECT */
        0x98080000, 0x56,
    };
    const uint32_t sense[] = {
        0x41000000, 0, 0x0e000001, 0x200000,    /* SELECT; MOVE 1, MSG OUT: IDENTIFY */
        0x0a000006, 0x200010,                   /* MOVE 6, COMMAND: REQUEST SENSE */
        0x09000012, 0x700000,                   /* MOVE 18, WHEN DATA IN */
        0x0b000001, 0x200100, 0x0f000001, 0x200101, 0x48000000, 0,
        0x98080000, 0x57,
    };
    static const uint8_t request_sense[] = { 0x03, 0, 0, 0, 18, 0 };
    uint8_t *cdb = f->ram.host + TAGGED_CDBS + 16, tag;

    number_blocks(f, 2 * LEN);
    enable_mmio(f);
    clear_unit_attention(f);
    issue_tagged(f, 1, false, BLOCKS);
    run_issued(f);
    memset(cdb, 0, 10);
    cdb[0] = 0x28;
    put_be32(cdb + 2, BLOCKS);
    put_be16(cdb + 7, BLOCKS);
    assert_int_equal(run_to_dma_interrupt(f, again, sizeof(again) / sizeof(again[0])) & 0x04, 0x04);
    assert_int_equal(mmio_readl(f, 0x30), 0x56);
    assert_int_equal(f->ram.host[0x200100], 0x02);          /* CHECK CONDITION */
    assert_int_equal(f->ram.host[0x200101], 0x00);          /* COMMAND COMPLETE */
    wb(f, 0x200000, 0x80);
    memcpy(f->ram.host + 0x200010, request_sense, sizeof(request_sense));
    assert_int_equal(run_to_dma_interrupt(f, sense, sizeof(sense) / sizeof(sense[0])) & 0x04, 0x04);
    assert_int_equal(mmio_readl(f, 0x30), 0x57);
    assert_int_equal(f->ram.host[0x700002] & 0x0f, 0x0b);   /* ABORTED COMMAND */
    assert_int_equal(f->ram.host[0x700000 + 12], 0x4d);     /* TAGGED OVERLAPPED COMMANDS */
    assert_int_equal(f->ram.host[0x700000 + 13], 1);        /* the tag */
    collect_reads(f, 1, LEN, &tag);
    assert_int_equal(tag, 1);
    for (unsigned b = 0; b < BLOCKS; b++) {
        assert_int_equal(be32(f->ram.host + TAGGED_DATA + b * 512), b);
    }
}

/* Resets with tagged commands' disk I/O on their buffers: the I/O lands in nothing freed. */
static void reset_under_buffered_io(struct fixture *f, bool write, bool bus_reset)
{
    enum { N = 16, BLOCKS = 128 };

    enable_mmio(f);
    clear_unit_attention(f);
    memset(f->ram.host + TAGGED_DATA, 0x5a, N * BLOCKS * 512);
    issue_tagged(f, N, write, BLOCKS);
    run_issued(f);
    if (bus_reset) {
        raw_bar_write(f->sock, true, 0xfe000001, 0x08, 1);     /* SCNTL1: assert RST */
        raw_bar_write(f->sock, true, 0xfe000001, 0x00, 1);
        assert_int_equal(mmio_readb(f, 0x42) & 0x02, 0x02);     /* SIST0: RST, acknowledged */
        mmio_readb(f, 0x43);
    } else {
        raw_bar_write(f->sock, true, 0xfe000014, 0x40, 1);     /* ISTAT0: software reset */
        raw_bar_write(f->sock, true, 0xfe000014, 0x00, 1);
    }
    expect_alive(f);
    usleep(200 * 1000);                 /* the I/O lands meanwhile */
    expect_alive(f);
    /* The controller serves on: a new command works. */
    enable_mmio(f);
    while (read(f->irqfd, &(uint64_t){ 0 }, 8) == 8) {
    }
    clear_unit_attention(f);
}

static void test_bus_reset_under_prefetched_reads(void **state)
{
    reset_under_buffered_io(*state, false, true);
}

static void test_soft_reset_under_buffered_writes(void **state)
{
    reset_under_buffered_io(*state, true, false);
}

/* ABORT TAG for each prefetching READ, and for each buffered WRITE being written. */
static void test_abort_tags_under_buffered_io(void **state)
{
    struct fixture *f = *state;
    enum { N = 8, BLOCKS = 64 };
    const uint32_t abort_all[] = {
        0x41000000, 0, 0x0e000004, 0x200020,    /* SELECT; MOVE 4, MSG OUT: ..., ABORT TAG */
        0x48000000, 0, 0x98080000, 0x54,
    };

    enable_mmio(f);
    clear_unit_attention(f);
    for (int write = 0; write < 2; write++) {
        issue_tagged(f, N, write, BLOCKS);
        run_issued(f);
        for (unsigned t = 1; t <= N; t++) {
            const uint8_t msgs[] = { 0xc0, 0x20, (uint8_t)t, 0x0d };

            memcpy(f->ram.host + 0x200020, msgs, sizeof(msgs));
            run_program(f, abort_all, sizeof(abort_all) / sizeof(abort_all[0]));
        }
        usleep(100 * 1000);
        expect_alive(f);
    }
    /* Nothing is left to reselect: WAIT RESELECT waits until signalled. */
    {
        const uint32_t wait_it[] = {
            0x50000000, 0x100000 + 2 * 8, 0x98080000, 0x52, 0x98080000, 0x51,
        };

        for (size_t i = 0; i < sizeof(wait_it) / sizeof(wait_it[0]); i++) {
            wl(f, 0x100000 + 4 * i, wait_it[i]);
        }
        raw_bar_write(f->sock, true, 0xfe00002c, 0x100000, 4);
        usleep(100 * 1000);
        raw_bar_write(f->sock, true, 0xfe000014, 0x20, 1);      /* ISTAT: SIGP */
        wait_irq(f);
        assert_int_equal(mmio_readb(f, 0x30), 0x51);
    }
}

/* A tagged READ prefetched, reselected, its data moved into the lost pages. */
static void test_prefetched_read_into_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000003, 0x200000,    /* SELECT; MOVE 3, MSG OUT: IDENTIFY, TAG 1 */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: READ(10) of 3 blocks */
        0x0f000002, 0x200200, 0x48000000, 0,    /* SAVE DP, DISCONNECT; WAIT DISCONNECT */
        0x50000000, 0x100000 + 9 * 8,           /* WAIT RESELECT */
        0x0f000003, 0x200300,                   /* MOVE 3, MSG IN: IDENTIFY, TAG */
        0x09000600, 0x900000,                   /* MOVE 1536, WHEN DATA IN: past the end */
        0x98080000, 0x47, 0x98080000, 0x46,
    };
    static const uint8_t msgs[] = { 0xc0, 0x20, 0x01 };
    static const uint8_t read10[] = { 0x28, 0, 0, 0, 0, 9, 0, 0, 3, 0 };

    expect_bus_fault_past_the_end_with(*state, prog, sizeof(prog) / sizeof(prog[0]), msgs,
                                       sizeof(msgs), read10, sizeof(read10));
}

/* A tagged WRITE's data-out into its buffer, from the lost pages. */
static void test_buffered_write_from_truncated_memory(void **state)
{
    static const uint32_t prog[] = {
        0x41000000, 0, 0x0e000003, 0x200000,    /* SELECT; MOVE 3, MSG OUT: IDENTIFY, TAG 1 */
        0x0a00000a, 0x200010,                   /* MOVE 10, COMMAND: WRITE(10) of 3 blocks */
        0x08000600, 0x900000,                   /* MOVE 1536, WHEN DATA OUT: past the end */
        0x98080000, 0x48,
    };
    static const uint8_t msgs[] = { 0xc0, 0x20, 0x01 };
    static const uint8_t write10[] = { 0x2a, 0, 0, 0, 0, 9, 0, 0, 3, 0 };

    expect_bus_fault_past_the_end_with(*state, prog, sizeof(prog) / sizeof(prog[0]), msgs,
                                       sizeof(msgs), write10, sizeof(write10));
}

/*
 * A prefetched READ whose data would go to guest memory that the VMM took
 * away meanwhile (a new, smaller map): bus fault, nothing written, the
 * remote lives; a buffered WRITE whose data-out comes from there likewise.
 */
static void test_buffered_data_and_memory_taken_away(void **state)
{
    struct fixture *f = *state;
    enum { SMALL = 16 << 20 };
    struct mpqemu_sync_sysmem sm = { .sizes = { SMALL } };
    const uint32_t reselect[] = {
        0x50000000, 0x100000 + 5 * 8,       /* WAIT RESELECT */
        0x0f000003, 0x200300,               /* MOVE 3, MSG IN */
        0x09001000, 0x1800000,              /* MOVE 4096, DATA IN: 24 MiB, not mapped now */
        0x98080000, 0x52, 0x98080000, 0x51, 0x98080000, 0x53,
    };
    const uint32_t write_out[] = {
        0x41000000, 0, 0x0e000003, TAGGED_MSGS,
        0x0a00000a, TAGGED_CDBS,                /* WRITE(10) of 8 blocks, tagged */
        0x08001000, 0x1800000,                  /* MOVE 4096, DATA OUT: from nowhere */
        0x98080000, 0x55,
    };
    struct mpq_ram small;

    enable_mmio(f);
    clear_unit_attention(f);
    issue_tagged(f, 1, false, 8);
    run_issued(f);
    assert_int_equal(mpq_ram_create(&small, 0, SMALL, NULL), 0);
    memcpy(small.host + 0x100000, f->ram.host + 0x100000, 0x200000);
    raw_send(f->sock, MPQEMU_CMD_SYNC_SYSMEM, sizeof(sm), &sm, sizeof(sm), &small.fd, 1);
    mpq_ram_destroy(&f->ram);
    f->ram = small;
    assert_int_equal(run_to_dma_interrupt(f, reselect, sizeof(reselect) / sizeof(reselect[0])) &
                     0x20, 0x20);                           /* DSTAT: bus fault */
    expect_alive(f);
    raw_bar_write(f->sock, true, 0xfe000001, 0x08, 1);     /* the bus is reset, as a driver would */
    raw_bar_write(f->sock, true, 0xfe000001, 0x00, 1);
    mmio_readb(f, 0x42);
    while (read(f->irqfd, &(uint64_t){ 0 }, 8) == 8) {
    }
    clear_unit_attention(f);
    f->ram.host[TAGGED_MSGS] = 0xc0;
    f->ram.host[TAGGED_MSGS + 1] = 0x20;
    f->ram.host[TAGGED_MSGS + 2] = 0x09;
    memset(f->ram.host + TAGGED_CDBS, 0, 10);
    f->ram.host[TAGGED_CDBS] = 0x2a;
    f->ram.host[TAGGED_CDBS + 8] = 8;
    assert_int_equal(run_to_dma_interrupt(f, write_out, sizeof(write_out) / sizeof(write_out[0])) &
                     0x20, 0x20);
    expect_alive(f);
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_dma_reentrancy),
        CASE(test_msgout_cancel_req),
        CASE(test_do_dma_empty_queue),
        CASE(test_endless_scripts_loop),
        CASE(test_memory_move_loop_latency),
        CASE(test_huge_memory_moves_yield),
        cmocka_unit_test_setup_teardown(test_memory_move_loop_disconnects,
                                        setup_small_progress_budget, teardown),
        cmocka_unit_test_setup_teardown(test_message_out_loop_disconnects,
                                        setup_small_progress_budget, teardown),
        cmocka_unit_test_setup_teardown(test_self_restarting_scripts_disconnect,
                                        setup_small_progress_budget, teardown),
        cmocka_unit_test_setup_teardown(test_select_loop_disconnects,
                                        setup_small_progress_budget, teardown),
        cmocka_unit_test_setup_teardown(test_select_abort_loop_disconnects,
                                        setup_small_progress_budget, teardown),
        cmocka_unit_test_setup_teardown(test_command_loop_runs_on,
                                        setup_small_progress_budget, teardown),
        CASE(test_scripts_outside_memory),
        CASE(test_oversized_extended_message),
        CASE(test_interrupts_stack),
        CASE(test_bus_reset_with_disconnected_commands),
        CASE(test_negotiation_replies),
        CASE(test_register_instructions),
        CASE(test_abort_tag),
        CASE(test_scatter_gather_moves),
        CASE(test_abort_through_istat),
        CASE(test_staged_read_into_truncated_memory),
        CASE(test_staged_write_from_truncated_memory),
        CASE(test_reply_into_truncated_memory),
        cmocka_unit_test_setup_teardown(test_memory_replaced_during_a_read, setup_uncached,
                                        teardown),
        CASE(test_message_out_past_the_end_of_memory),
        CASE(test_message_out_across_the_end_of_scripts_ram),
        CASE(test_message_out_across_4_gib),
        CASE(test_memory_move_across_4_gib),
        CASE(test_table_entry_across_4_gib),
        CASE(test_store_across_4_gib),
        CASE(test_data_in_across_4_gib),
        CASE(test_data_out_across_4_gib),
        CASE(test_buffered_data_in_across_4_gib),
        CASE(test_buffered_data_out_across_4_gib),
        CASE(test_data_in_64_bit_runs_past_4_gib),
        CASE(test_message_in_into_own_registers),
        CASE(test_status_into_own_registers),
        CASE(test_command_from_own_registers),
        cmocka_unit_test_setup_teardown(test_dbc_zeroed_during_a_move, setup_uncached,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dbc_raised_during_a_move, setup_uncached, teardown),
        cmocka_unit_test_setup_teardown(test_dnad_moved_during_a_move, setup_uncached, teardown),
        CASE(test_dnad_moved_between_the_pieces_of_a_move),
        cmocka_unit_test_setup_teardown(test_abort_and_restart_during_a_transfer,
                                        setup_uncached, teardown),
        cmocka_unit_test_setup_teardown(test_eject_while_a_read_holds_the_medium, setup_cdrom,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_zeros_into_truncated_memory, setup_qcow2,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_misaligned_read_into_truncated_memory,
                                        setup_uncached, teardown),
        cmocka_unit_test_setup_teardown(test_misaligned_write_from_truncated_memory,
                                        setup_uncached, teardown),
        CASE(test_prefetched_reads),
        CASE(test_overlapped_tag),
        cmocka_unit_test_setup_teardown(test_bus_reset_under_prefetched_reads, setup_uncached,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_soft_reset_under_buffered_writes, setup_uncached,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_tags_under_buffered_io, setup_uncached,
                                        teardown),
        CASE(test_buffered_data_and_memory_taken_away),
        CASE(test_prefetched_read_into_truncated_memory),
        CASE(test_buffered_write_from_truncated_memory),
        cmocka_unit_test_setup_teardown(test_eject_while_a_tagged_write_holds_the_medium,
                                        setup_removable, teardown),
        cmocka_unit_test_setup_teardown(test_eject_gives_up_on_a_slow_nbd_server,
                                        setup_removable_on_nbd, teardown_nbd),
    };

    /* LSI_TEST=PATTERN runs the tests whose names match. */
    if (getenv("LSI_TEST")) {
        cmocka_set_test_filter(getenv("LSI_TEST"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
