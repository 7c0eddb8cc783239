// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2 through mpqemu-remote: SCSI writes from the client's LSI driver,
 * many in flight, into images made by qemu-img; then qemu-img check and
 * compare against a mirror.  And kill -9 in the middle of writing: the
 * image stays consistent and what was flushed before is intact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "client/mpqemu-lsi.h"
#include "harness.h"
#include "util/byteorder.h"
#include "util.h"

enum {
    RAM_SIZE = 16 << 20, WORK_OFFSET = 1 << 20, DATA = 2 << 20, DATA_MAX = 12 << 20,
    DISK_BYTES = 32 << 20, DISK_BLOCKS = DISK_BYTES / 512, BATCH = 48, MAX_BLOCKS = 256,
};

struct fixture {
    struct remote remote;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    struct mpq_lsi *lsi;
    char dir[64], image[128], mirror_path[128];
    uint8_t *mirror;
    uint64_t rng;
};

static uint64_t next_rand(struct fixture *f)
{
    return xorshift64(&f->rng);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/var/tmp/mpqemu-q2r-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->image, sizeof(f->image), "%s/disk.qcow2", f->dir);
    snprintf(f->mirror_path, sizeof(f->mirror_path), "%s/mirror.raw", f->dir);
    f->mirror = calloc(1, DISK_BYTES);
    f->rng = 0x243f6a8885a308d3ull;
    assert_int_equal(mpq_ram_create(&f->ram, 0, RAM_SIZE, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    mpq_ram_destroy(&f->ram);
    sh("rm -rf '%s'", f->dir);
    free(f->mirror);
    free(f);
    return 0;
}

static void start(struct fixture *f, const char *format)
{
    char drive[256];
    const char *args[] = {
        "{fd}", "-device", "lsi53c895a,id=lsi0", "-drive", drive,
        "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0", NULL,
    };
    char *err = NULL;

    snprintf(drive, sizeof(drive), "id=d0,file=%s%s", f->image, format);
    remote_start(&f->remote, 1, args);
    f->dev = remote_connect(&f->remote, 0, &f->ram);
    f->lsi = mpq_lsi_new(f->dev, &f->ram, WORK_OFFSET, &err);
    if (!f->lsi) {
        fail_msg("lsi: %s", err);
    }
}

static void stop(struct fixture *f)
{
    mpq_lsi_free(f->lsi);
    mpq_close(f->dev);
    assert_int_equal(remote_expect_exit(&f->remote), 0);
}

static void rw10(struct mpq_scsi_cmd *c, uint8_t op, uint32_t lba, uint16_t blocks,
                 uint64_t gpa)
{
    memset(c, 0, sizeof(*c));
    c->cdb[0] = op;
    put_be32(c->cdb + 2, lba);
    c->cdb[7] = (uint8_t)(blocks >> 8);
    c->cdb[8] = (uint8_t)blocks;
    c->cdb_len = 10;
    c->data_gpa = gpa;
    c->len = blocks * 512u;
}

/* The unit attention after reset, then a plain TEST UNIT READY. */
static void clear_unit_attention(struct fixture *f)
{
    uint8_t tur[6] = { 0 };
    struct mpq_scsi_result r;
    char *err = NULL;

    for (int i = 0; i < 2; i++) {
        if (mpq_lsi_command(f->lsi, 0, 0, tur, 6, 0, 0, &r, &err) < 0) {
            fail_msg("TEST UNIT READY: %s", err);
        }
    }
    assert_int_equal(r.status, 0);
}

/*
 * One batch of random writes within blocks [first, first+count), queued
 * 16 deep; writes in a batch may share clusters but not blocks.
 * Returns the mpq_lsi_run_queued result.
 */
static int write_batch(struct fixture *f, uint32_t first, uint32_t count, bool must_work)
{
    struct mpq_scsi_cmd cmds[BATCH];
    uint32_t lbas[BATCH], lens[BATCH];
    uint64_t gpa = DATA;
    char *err = NULL;
    int n = 0, r;

    for (int tries = 0; n < BATCH && tries < 400; tries++) {
        uint32_t len = (uint32_t)(next_rand(f) % MAX_BLOCKS) + 1;
        uint32_t lba = first + (uint32_t)(next_rand(f) % (count - len));
        bool clash = gpa + len * 512ull > DATA_MAX;

        for (int i = 0; i < n && !clash; i++) {
            clash = lba < lbas[i] + lens[i] && lbas[i] < lba + len;
        }
        if (clash) {
            continue;
        }
        for (uint32_t b = 0; b < len * 512; b += 8) {
            uint64_t v = next_rand(f);

            memcpy(f->ram.host + gpa + b, &v, 8);
        }
        rw10(&cmds[n], 0x2a, lba, (uint16_t)len, gpa);
        lbas[n] = lba;
        lens[n] = len;
        gpa += len * 512ull;
        n++;
    }
    r = mpq_lsi_run_queued(f->lsi, cmds, (size_t)n, 16, &err);
    if (must_work) {
        if (r < 0) {
            fail_msg("writes: %s", err);
        }
        for (int i = 0; i < n; i++) {
            assert_int_equal(cmds[i].status, 0);
            memcpy(f->mirror + lbas[i] * 512ull, f->ram.host + cmds[i].data_gpa,
                   lens[i] * 512ull);
        }
    }
    free(err);
    return r;
}

static void sync_cache(struct fixture *f)
{
    uint8_t cdb[10] = { 0x35 };
    struct mpq_scsi_result r;
    char *err = NULL;

    if (mpq_lsi_command(f->lsi, 0, 0, cdb, 10, 0, 0, &r, &err) < 0) {
        fail_msg("SYNCHRONIZE CACHE: %s", err);
    }
    assert_int_equal(r.status, 0);
}

static void read_and_compare(struct fixture *f)
{
    for (uint32_t lba = 0; lba < DISK_BLOCKS; lba += 8192) {
        struct mpq_scsi_cmd c;
        char *err = NULL;

        rw10(&c, 0x28, lba, 8192, DATA);
        if (mpq_lsi_run_queued(f->lsi, &c, 1, 1, &err) < 0) {
            fail_msg("read: %s", err);
        }
        assert_int_equal(c.status, 0);
        assert_memory_equal(f->ram.host + DATA, f->mirror + lba * 512ull, 8192 * 512);
    }
}

static void save_mirror(struct fixture *f)
{
    int fd = open(f->mirror_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, f->mirror, DISK_BYTES), DISK_BYTES);
    close(fd);
}

static void guest_writes(struct fixture *f, const char *create_options, const char *format)
{
    assert_int_equal(sh("qemu-img create -q -f qcow2 -o '%s' '%s' %d", create_options,
                        f->image, DISK_BYTES), 0);
    start(f, format);
    clear_unit_attention(f);
    for (int round = 0; round < 6; round++) {
        write_batch(f, 0, DISK_BLOCKS, true);
    }
    sync_cache(f);
    read_and_compare(f);
    stop(f);
    /* Reopened: the mapping written back at exit reads the same. */
    start(f, format);
    clear_unit_attention(f);
    read_and_compare(f);
    stop(f);
    save_mirror(f);
    assert_int_equal(sh("qemu-img check -q '%s'", f->image), 0);
    assert_int_equal(sh("qemu-img compare -q -f raw -F qcow2 '%s' '%s'", f->mirror_path,
                        f->image), 0);
}

static void test_guest_writes_v3_probed(void **state)
{
    guest_writes(*state, "compat=1.1,cluster_size=64k", "");
}

static void test_guest_writes_v2_small_clusters(void **state)
{
    guest_writes(*state, "compat=0.10,cluster_size=4k", ",format=qcow2");
}

/* Sends SIGKILL to pid after a random few milliseconds, from another process. */
static pid_t kill_later(pid_t pid, unsigned delay_us)
{
    pid_t killer = fork();

    if (killer == 0) {
        usleep(delay_us);
        kill(pid, SIGKILL);
        _exit(0);
    }
    return killer;
}

static void test_kill9_mid_write_leaves_a_consistent_image(void **state)
{
    struct fixture *f = *state;
    uint32_t half = DISK_BLOCKS / 2;

    assert_int_equal(sh("qemu-img create -q -f qcow2 -o cluster_size=4k '%s' %d", f->image,
                        DISK_BYTES), 0);
    for (int round = 0; round < 8; round++) {
        pid_t killer;
        int status;
        uint8_t *got;

        start(f, "");
        clear_unit_attention(f);
        /* Flushed: must survive.  The first half of the disk. */
        write_batch(f, 0, half, true);
        sync_cache(f);
        /* Not flushed, killed midway: the second half. */
        killer = kill_later(f->remote.pid, 2000 + (unsigned)(next_rand(f) % 30000));
        while (write_batch(f, half, half, false) == 0) {
        }
        waitpid(killer, NULL, 0);
        assert_int_equal(waitpid(f->remote.pid, &status, 0), f->remote.pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        mpq_lsi_free(f->lsi);
        mpq_close(f->dev);
        /* Leaked clusters are allowed (exit 3), corruption is not. */
        status = sh("qemu-img check -q '%s' >/dev/null 2>&1", f->image);
        if (status != 0 && status != 3) {
            sh("qemu-img check '%s' | head -20", f->image);
            fail_msg("round %d: qemu-img check exit %d", round, status);
        }
        save_mirror(f);
        assert_int_equal(sh("qemu-img convert -O raw '%s' '%s.now'", f->image, f->mirror_path),
                         0);
        got = malloc(half * 512ull);
        {
            char now[160];
            int fd;

            snprintf(now, sizeof(now), "%s.now", f->mirror_path);
            fd = open(now, O_RDONLY);
            assert_int_equal(pread(fd, got, half * 512ull, 0), (ssize_t)(half * 512ull));
            close(fd);
        }
        assert_memory_equal(got, f->mirror, half * 512ull);
        free(got);
    }
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_guest_writes_v3_probed),
        CASE(test_guest_writes_v2_small_clusters),
        CASE(test_kill9_mid_write_leaves_a_consistent_image),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
