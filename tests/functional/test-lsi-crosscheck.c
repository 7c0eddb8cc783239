// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The same SCSI command sequences, through the same SCRIPTS driver, against
 * QEMU's own remote process (x-remote, lsi53c895a + scsi-hd) and against
 * mpqemu-remote: status, sense, capacity and data must agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "client/mpqemu-lsi.h"
#include "harness.h"
#include "util.h"
#include "util/byteorder.h"
#include "util/error.h"

enum { RAM_SIZE = 4 << 20, WORK = 1 << 20, BUF = 2 << 20, DISK_BLOCKS = 8192 };

struct side {
    const char *name;
    pid_t pid;
    int sock;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    struct mpq_lsi *lsi;
    char image[64];
    char qmp[80];       /* its QMP monitor's socket, when it has one */
};

static struct side sides[2];

static void make_image(char *path)
{
    int fd;
    uint8_t block[512];

    strcpy(path, "/var/tmp/mpqemu-xcheck-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    for (uint32_t b = 0; b < DISK_BLOCKS; b++) {
        memset(block, (int)(b * 7), sizeof(block));
        put_be32(block, b);
        assert_int_equal(pwrite(fd, block, 512, (off_t)b * 512), 512);
    }
    close(fd);
}

/* Starts one side; 0, or -1 with *err and nothing left running. */
static int try_start_side(struct side *sd, char **argv, char **err)
{
    int status;

    sd->pid = mpq_spawn(argv, 1, &sd->sock, err);
    assert_true(sd->pid > 0);
    assert_int_equal(mpq_ram_create(&sd->ram, 0, RAM_SIZE, NULL), 0);
    sd->dev = mpq_open_mpqemu(sd->sock, err);
    if (sd->dev && mpq_map_ram(sd->dev, &sd->ram, 1, err) == 0 &&
        mpq_intx_enable(sd->dev, err) == 0 && mpq_reset(sd->dev, err) == 0 &&
        mpq_probe(sd->dev, NULL, err) == 0 && (sd->lsi = mpq_lsi_new(sd->dev, &sd->ram, WORK, err))) {
        return 0;
    }
    if (sd->dev) {
        mpq_close(sd->dev);     /* closes the socket too */
    } else {
        close(sd->sock);
    }
    sd->dev = NULL;
    kill(sd->pid, SIGKILL);
    mpq_reap(sd->pid, 10000, &status);
    mpq_ram_destroy(&sd->ram);
    return -1;
}

/*
 * QEMU 7.2's x-remote, the reference, sometimes answers "Bad address" for
 * a BAR it has mapped when the machine is loaded, and drops the
 * connection (its bug): the reference gets three tries, said on the
 * output; mpqemu-remote gets one.
 */
static void start_side(struct side *sd, char **argv, int tries)
{
    char *err = NULL;

    for (int i = 1; try_start_side(sd, argv, &err) < 0; i++) {
        if (i == tries) {
            fail_msg("%s: %s", sd->name, err);
        }
        print_message("# %s failed to start (%s); again, %d of %d\n", sd->name, err, i + 1, tries);
        free(err);
        err = NULL;
    }
}

/* Both sides, each with its own -drive (QEMU's gets if=none added). */
static void start_sides(char drive[2][256])
{
    const char *qemu = getenv("QEMU") ? getenv("QEMU") : "qemu-system-x86_64";
    char *qemu_argv[18], *ours_argv[12], qmp[2][128];

    sides[0].name = "QEMU x-remote";
    sides[1].name = "mpqemu-remote";
    strncat(drive[0], ",if=none", 255 - strlen(drive[0]));
    qemu_argv[0] = (char *)qemu;
    qemu_argv[1] = "-machine"; qemu_argv[2] = "x-remote";
    qemu_argv[3] = "-nodefaults"; qemu_argv[4] = "-display"; qemu_argv[5] = "none";
    qemu_argv[6] = "-device"; qemu_argv[7] = "lsi53c895a,id=lsi0";
    qemu_argv[8] = "-drive"; qemu_argv[9] = drive[0];
    qemu_argv[10] = "-device"; qemu_argv[11] = "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0";
    qemu_argv[12] = "-object"; qemu_argv[13] = "x-remote-object,id=r0,devid=lsi0,fd={fd}";
    qemu_argv[14] = NULL;
    if (sides[0].qmp[0]) {
        snprintf(qmp[0], sizeof(qmp[0]), "unix:%s,server=on,wait=off", sides[0].qmp);
        qemu_argv[14] = "-qmp"; qemu_argv[15] = qmp[0]; qemu_argv[16] = NULL;
    }
    ours_argv[0] = getenv("MPQEMU_REMOTE");
    ours_argv[1] = "{fd}";
    ours_argv[2] = "-device"; ours_argv[3] = "lsi53c895a,id=lsi0";
    ours_argv[4] = "-drive"; ours_argv[5] = drive[1];
    ours_argv[6] = "-device"; ours_argv[7] = "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0";
    ours_argv[8] = NULL;
    if (sides[1].qmp[0]) {
        snprintf(qmp[1], sizeof(qmp[1]), "unix:%s,server,nowait", sides[1].qmp);
        ours_argv[8] = "-qmp"; ours_argv[9] = qmp[1]; ours_argv[10] = NULL;
    }
    start_side(&sides[0], qemu_argv, 3);
    start_side(&sides[1], ours_argv, 1);
}

static int setup(void **state)
{
    char drive[2][256];

    (void)state;
    for (int i = 0; i < 2; i++) {
        make_image(sides[i].image);
        snprintf(drive[i], sizeof(drive[i]), "id=d0,file=%s,format=raw", sides[i].image);
    }
    start_sides(drive);
    return 0;
}

/* kill: SIGKILL first (a side that failed may not see its socket close). */
static void stop_sides(bool kill_them)
{
    for (int i = 0; i < 2; i++) {
        int status;

        mpq_lsi_free(sides[i].lsi);
        mpq_close(sides[i].dev);
        if (kill_them) {
            kill(sides[i].pid, SIGKILL);
        }
        assert_int_equal(mpq_reap(sides[i].pid, 10000, &status), 0);
        mpq_ram_destroy(&sides[i].ram);
    }
}

static int teardown(void **state)
{
    (void)state;
    stop_sides(false);
    for (int i = 0; i < 2; i++) {
        unlink(sides[i].image);
        if (sides[i].qmp[0]) {
            unlink(sides[i].qmp);
            sides[i].qmp[0] = 0;
        }
    }
    return 0;
}

/* As setup(), each side with a QMP monitor. */
static int setup_with_qmp(void **state)
{
    for (int i = 0; i < 2; i++) {
        snprintf(sides[i].qmp, sizeof(sides[i].qmp), "/var/tmp/mpqemu-xcheck-qmp-%d-%d.sock",
                 (int)getpid(), i);
    }
    return setup(state);
}

struct outcome {
    struct mpq_scsi_result r;
    uint8_t data[8192];
};

/*
 * The command on both sides, compared; -1 with *err when the reference
 * failed to run it (QEMU 7.2's x-remote, see start_side()).
 */
static int try_run_both(const uint8_t *cdb, size_t len, uint32_t xfer, const void *out_data,
                        struct outcome o[2], char **err)
{
    for (int i = 0; i < 2; i++) {
        if (out_data) {
            memcpy(sides[i].ram.host + BUF, out_data, xfer);
        } else {
            memset(sides[i].ram.host + BUF, 0xee, xfer);
        }
        if (mpq_lsi_command(sides[i].lsi, 0, 0, cdb, len, BUF, xfer, &o[i].r, err) < 0) {
            if (i == 0) {
                error_prefix(err, "%s: command 0x%02x", sides[i].name, cdb[0]);
                return -1;
            }
            fail_msg("%s: command 0x%02x: %s", sides[i].name, cdb[0], *err);
        }
        memcpy(o[i].data, sides[i].ram.host + BUF, xfer);
    }
    print_message("# 0x%02x: status %u/%u sense %02x/%02x/%02x vs %02x/%02x/%02x "
                  "residual %u/%u\n", cdb[0], o[0].r.status, o[1].r.status,
                  o[0].r.sense[2], o[0].r.sense[12], o[0].r.sense[13],
                  o[1].r.sense[2], o[1].r.sense[12], o[1].r.sense[13],
                  o[0].r.residual, o[1].r.residual);
    assert_int_equal(o[0].r.status, o[1].r.status);
    assert_int_equal(o[0].r.sense[2] & 0x0f, o[1].r.sense[2] & 0x0f);
    assert_int_equal(o[0].r.sense[12], o[1].r.sense[12]);
    assert_int_equal(o[0].r.sense[13], o[1].r.sense[13]);
    assert_int_equal(o[0].r.residual, o[1].r.residual);
    return 0;
}

static void run_both(const uint8_t *cdb, size_t len, uint32_t xfer,
                     const void *out_data, struct outcome o[2])
{
    char *err = NULL;

    if (try_run_both(cdb, len, xfer, out_data, o, &err) < 0) {
        fail_msg("%s", err);
    }
}

static void test_same_answers(void **state)
{
    uint8_t tur[6] = { 0 }, rc10[10] = { 0x25 }, rc16[16] = { 0x9e, 0x10 };
    uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 };
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0x10, 0, 0, 0, 16, 0 };
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0x10, 0x20, 0, 0, 16, 0 };  /* LBA 4128 */
    uint8_t oor[10] = { 0x28, 0, 0, 0, 0x20, 0, 0, 0, 1, 0 };      /* LBA 8192: past the end */
    uint8_t bad[6] = { 0xff }, pattern[8192];
    struct outcome o[2];

    (void)state;
    run_both(tur, 6, 0, NULL, o);       /* unit attention on both */
    run_both(tur, 6, 0, NULL, o);
    run_both(inq, 6, 36, NULL, o);
    assert_int_equal(o[0].data[0], o[1].data[0]);       /* type; vendor strings may differ */
    assert_int_equal(o[0].data[1], o[1].data[1]);
    run_both(rc10, 10, 8, NULL, o);
    assert_memory_equal(o[0].data, o[1].data, 8);
    rc16[13] = 32;
    run_both(rc16, 16, 32, NULL, o);
    assert_memory_equal(o[0].data, o[1].data, 12);      /* last LBA, block length */
    run_both(r10, 10, 8192, NULL, o);
    assert_memory_equal(o[0].data, o[1].data, 8192);
    for (int i = 0; i < 8192; i++) {
        pattern[i] = (uint8_t)(i * 11 + 5);
    }
    run_both(w10, 10, 8192, pattern, o);
    w10[0] = 0x28;                                      /* read it back */
    run_both(w10, 10, 8192, NULL, o);
    assert_memory_equal(o[0].data, pattern, 8192);
    assert_memory_equal(o[1].data, pattern, 8192);
    run_both(oor, 10, 512, NULL, o);
    assert_int_equal(o[1].r.sense[12], 0x21);
    run_both(bad, 6, 0, NULL, o);
    assert_int_equal(o[1].r.sense[12], 0x20);
}

/* Tagged commands, 16 outstanding, on both: the same data in every buffer. */
static void test_same_data_tagged(void **state)
{
    uint8_t tur[6] = { 0 };
    struct outcome o[2];

    (void)state;
    run_both(tur, 6, 0, NULL, o);       /* unit attention */
    for (int i = 0; i < 2; i++) {
        struct mpq_scsi_cmd cmds[64];
        char *err = NULL;

        for (int k = 0; k < 64; k++) {
            memset(&cmds[k], 0, sizeof(cmds[k]));
            cmds[k].cdb[0] = 0x28;
            put_be32(cmds[k].cdb + 2, (uint32_t)(k * 101 % (DISK_BLOCKS - 8)));
            cmds[k].cdb[8] = 8;
            cmds[k].cdb_len = 10;
            cmds[k].data_gpa = BUF + (uint64_t)k * 4096;
            cmds[k].len = 4096;
        }
        if (mpq_lsi_run_queued(sides[i].lsi, cmds, 64, 16, &err) < 0) {
            fail_msg("%s: %s", sides[i].name, err);
        }
        for (int k = 0; k < 64; k++) {
            assert_int_equal(cmds[k].status, 0);
            assert_int_equal(be32(sides[i].ram.host + BUF + k * 4096), k * 101 % (DISK_BLOCKS - 8));
        }
    }
    assert_memory_equal(sides[0].ram.host + BUF, sides[1].ram.host + BUF, 64 * 4096);
}

/*
 * Both images cut short behind the drives' backs (not block_resize): a
 * READ past the file's end gets zeros on both, a WRITE there grows the
 * file, both GOOD.
 */
static void test_same_after_the_file_is_cut_short(void **state)
{
    uint8_t tur[6] = { 0 }, r10[10] = { 0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0 };
    uint8_t pattern[4096], zeros[4096] = { 0 };
    struct outcome o[2];

    (void)state;
    run_both(tur, 6, 0, NULL, o);       /* unit attention */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(truncate(sides[i].image, 4096 * 512 + 1024), 0);
    }
    run_both(r10, 10, 4096, NULL, o);
    assert_int_equal(o[0].r.status, 0);
    assert_memory_equal(o[0].data, o[1].data, 4096);
    assert_memory_equal(o[1].data + 1024, zeros, 4096 - 1024);
    memset(pattern, 0x3c, sizeof(pattern));
    r10[0] = 0x2a;
    run_both(r10, 10, 4096, pattern, o);
    assert_int_equal(o[0].r.status, 0);
    r10[0] = 0x28;
    run_both(r10, 10, 4096, NULL, o);
    assert_memory_equal(o[0].data, pattern, 4096);
    assert_memory_equal(o[1].data, pattern, 4096);
}

/*
 * The images shrunk (block_resize, 4 MiB to 2 MiB) under both: CAPACITY
 * DATA HAS CHANGED on both; a WRITE past the new end then goes to the
 * medium on both and fails there (EIO: ABORTED COMMAND) with its data
 * moved (no residual), until READ CAPACITY; after it both refuse it and a
 * READ there (LBA OUT OF RANGE).  Not a READ before: QEMU disconnects an
 * untagged READ while its I/O runs, and its failure raises a phase
 * mismatch (SIST0 MA) with no command connected, which this driver does
 * not take as a command's (unexpected interrupt).
 */
static void test_same_after_block_resize(void **state)
{
    static const char resize[] = "{\"execute\":\"block_resize\",\"arguments\":"
                                 "{\"device\":\"d0\",\"size\":2097152}}\n";
    uint8_t tur[6] = { 0 }, rc10[10] = { 0x25 };
    uint8_t r10[10] = { 0x28, 0, 0, 0, 0x17, 0x70, 0, 0, 8, 0 };  /* LBA 6000 */
    uint8_t w10[10] = { 0x2a, 0, 0, 0, 0x17, 0x70, 0, 0, 8, 0 }, data[4096] = { 0 };
    struct outcome o[2];
    char reply[4096];

    (void)state;
    run_both(tur, 6, 0, NULL, o);       /* unit attention */
    for (int i = 0; i < 2; i++) {
        int qmp = qmp_socket_open(sides[i].qmp);

        qmp_socket_command(qmp, resize, reply, sizeof(reply));
        if (!strstr(reply, "\"return\"")) {
            fail_msg("%s: block_resize: %s", sides[i].name, reply);
        }
        close(qmp);
    }
    run_both(tur, 6, 0, NULL, o);
    assert_int_equal(o[1].r.sense[12], 0x2a);   /* CAPACITY DATA HAS CHANGED */
    assert_int_equal(o[1].r.sense[13], 0x09);
    run_both(w10, 10, 4096, data, o);
    assert_int_equal(o[1].r.sense[2] & 0x0f, 0x0b);
    assert_int_equal(o[1].r.residual, 0);
    run_both(rc10, 10, 8, NULL, o);
    assert_memory_equal(o[0].data, o[1].data, 8);
    assert_int_equal(be32(o[1].data), 4095);
    run_both(r10, 10, 4096, NULL, o);
    assert_int_equal(o[1].r.sense[12], 0x21);   /* LOGICAL BLOCK ADDRESS OUT OF RANGE */
    run_both(w10, 10, 4096, data, o);
    assert_int_equal(o[1].r.sense[12], 0x21);
}

/*
 * Errors an NBD server gives (nbdkit's error filter, on every request once
 * its trigger file is there), with rerror=report,werror=report on both
 * (QEMU's default werror=enospc would stop its VM on ENOSPC): the same
 * sense for a failed WRITE, errno by errno.  Not a READ: on QEMU's side a
 * READ failing in its data phase stops the SCRIPTS with a phase mismatch
 * (SIST0 MA) that this driver does not take as a command's (unexpected
 * interrupt); ours ends it in the status phase.
 */
/* One errno's round on sides started for it: 0, or -1 when the reference failed a command. */
static int nbd_error_round(const char *dir, char **err)
{
    uint8_t tur[6] = { 0 }, w10[10] = { 0x2a, 0, 0, 0, 0, 64, 0, 0, 8, 0 }, data[4096] = { 0 };
    char drive[2][256];
    struct outcome o[2];
    int r;

    for (int i = 0; i < 2; i++) {
        snprintf(drive[i], sizeof(drive[i]), "id=d0,file=nbd+unix:///?socket=%s/sock,"
                 "format=raw,rerror=report,werror=report", dir);
    }
    start_sides(drive);
    r = try_run_both(tur, 6, 0, NULL, o, err);      /* unit attention */
    if (r == 0) {
        assert_int_equal(sh("touch %s/fail", dir), 0);
        r = try_run_both(w10, 10, 4096, data, o, err);
        assert_int_equal(sh("rm -f %s/fail", dir), 0);
    }
    if (r == 0) {
        assert_int_equal(o[1].r.status, 2);
    }
    stop_sides(r < 0);
    return r;
}

/* The NBD test's server directory, "" when there is none. */
static char nbd_dir[64];

/*
 * The NBD test's server goes with it, failed or not: nbdkit runs in the
 * background and would keep the fds it inherited (a lock held around the
 * test run, say) for as long as it lived.
 */
static int stop_nbd_server(void **state)
{
    (void)state;
    if (nbd_dir[0]) {
        sh("if [ -f %s/pid ]; then kill $(cat %s/pid); fi; rm -rf %s", nbd_dir, nbd_dir, nbd_dir);
        nbd_dir[0] = 0;
    }
    return 0;
}

static void test_same_sense_for_nbd_errors(void **state)
{
    static const char *const errors[] = { "EIO", "ENOSPC", "EINVAL", "ENOMEM", "EPERM",
                                          "ESHUTDOWN" };
    const char *dir = nbd_dir;

    (void)state;
    if (sh("command -v nbdkit >/dev/null") != 0) {
        skip();
    }
    snprintf(nbd_dir, sizeof(nbd_dir), "/var/tmp/mpqemu-xcheck-nbd-XXXXXX");
    if (!mkdtemp(nbd_dir)) {
        nbd_dir[0] = 0;
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    for (size_t e = 0; e < sizeof(errors) / sizeof(errors[0]); e++) {
        print_message("# %s\n", errors[e]);
        assert_int_equal(sh("nbdkit -U %s/sock -P %s/pid --filter=error memory 4M error=%s "
                            "error-rate=100%% error-file=%s/fail", dir, dir, errors[e], dir), 0);
        for (int i = 0; i < 500 && sh("test -S %s/sock", dir) != 0; i++) {
            usleep(10000);
        }
        /* The reference gets three tries, as at its start (start_side()). */
        for (int tries = 1;; tries++) {
            char *err = NULL;

            if (nbd_error_round(dir, &err) == 0) {
                break;
            }
            if (tries == 3) {
                fail_msg("%s", err);
            }
            print_message("# %s; again, %d of 3\n", err, tries + 1);
            free(err);
        }
        assert_int_equal(sh("kill $(cat %s/pid); rm -f %s/sock %s/pid", dir, dir, dir), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_data_tagged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_after_the_file_is_cut_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_after_block_resize, setup_with_qmp, teardown),
        cmocka_unit_test_teardown(test_same_sense_for_nbd_errors, stop_nbd_server),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
