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

#include "disk-io.h"
#include "harness.h"
#include "util.h"

enum { DISK_BYTES = 32 << 20, DISK_BLOCKS = DISK_BYTES / 512 };

struct fixture {
    struct remote remote;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    struct disk_io disk;
    char dir[64], image[128], mirror_path[128];
};

static uint64_t next_rand(struct fixture *f)
{
    return xorshift64(&f->disk.rng);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/var/tmp/mpqemu-q2r-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->image, sizeof(f->image), "%s/disk.qcow2", f->dir);
    snprintf(f->mirror_path, sizeof(f->mirror_path), "%s/mirror.raw", f->dir);
    f->disk = (struct disk_io){ .ram = &f->ram, .mirror = calloc(1, DISK_BYTES),
                                .blocks = DISK_BLOCKS, .rng = 0x243f6a8885a308d3ull };
    assert_int_equal(mpq_ram_create(&f->ram, 0, DISK_IO_RAM_SIZE, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    mpq_ram_destroy(&f->ram);
    sh("rm -rf '%s'", f->dir);
    free(f->disk.mirror);
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
    f->disk.lsi = mpq_lsi_new(f->dev, &f->ram, DISK_IO_WORK, &err);
    if (!f->disk.lsi) {
        fail_msg("lsi: %s", err);
    }
}

static void stop(struct fixture *f)
{
    mpq_lsi_free(f->disk.lsi);
    mpq_close(f->dev);
    assert_int_equal(remote_expect_exit(&f->remote), 0);
}

static void guest_writes(struct fixture *f, const char *create_options, const char *format)
{
    assert_int_equal(sh("qemu-img create -q -f qcow2 -o '%s' '%s' %d", create_options,
                        f->image, DISK_BYTES), 0);
    start(f, format);
    disk_clear_unit_attention(&f->disk);
    for (int round = 0; round < 6; round++) {
        disk_write_batch(&f->disk, 0, DISK_BLOCKS, true);
    }
    disk_sync_cache(&f->disk);
    disk_read_and_compare(&f->disk);
    stop(f);
    /* Reopened: the mapping written back at exit reads the same. */
    start(f, format);
    disk_clear_unit_attention(&f->disk);
    disk_read_and_compare(&f->disk);
    stop(f);
    disk_save_mirror(&f->disk, f->mirror_path);
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
        disk_clear_unit_attention(&f->disk);
        /* Flushed: must survive.  The first half of the disk. */
        disk_write_batch(&f->disk, 0, half, true);
        disk_sync_cache(&f->disk);
        /* Not flushed, killed midway: the second half. */
        killer = kill_later(f->remote.pid, 2000 + (unsigned)(next_rand(f) % 30000));
        while (disk_write_batch(&f->disk, half, half, false) == 0) {
        }
        waitpid(killer, NULL, 0);
        assert_int_equal(waitpid(f->remote.pid, &status, 0), f->remote.pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        mpq_lsi_free(f->disk.lsi);
        mpq_close(f->dev);
        /* Leaked clusters are allowed (exit 3), corruption is not. */
        status = sh("qemu-img check -q '%s' >/dev/null 2>&1", f->image);
        if (status != 0 && status != 3) {
            sh("qemu-img check '%s' | head -20", f->image);
            fail_msg("round %d: qemu-img check exit %d", round, status);
        }
        disk_save_mirror(&f->disk, f->mirror_path);
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
        assert_memory_equal(got, f->disk.mirror, half * 512ull);
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
