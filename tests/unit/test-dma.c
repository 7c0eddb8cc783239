// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pci/dma.h"

static int make_memfd(size_t size)
{
    int fd = memfd_create("test", MFD_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    return fd;
}

static void expect_replace_error(struct dma_space *s, struct dma_map_request *q, size_t n,
                                 const char *needle)
{
    char *err = NULL;

    assert_int_equal(dma_space_replace(s, q, n, &err), -1);
    assert_non_null(err);
    if (!strstr(err, needle)) {
        fail_msg("error '%s' does not mention '%s'", err, needle);
    }
    free(err);
}

static void test_adjacent_regions_and_bounds(void **state)
{
    struct dma_space s;
    int a = make_memfd(8192), b = make_memfd(8192);
    struct dma_map_request q[2] = {
        { .gpa = 0x10000, .size = 4096, .fd = a, .offset = 4096 },
        { .gpa = 0x11000, .size = 8192, .fd = b, .offset = 0 },
    };
    uint8_t buf[64], back[64];

    (void)state;
    dma_space_init(&s);
    assert_int_equal(dma_space_replace(&s, q, 2, NULL), 0);
    for (int i = 0; i < 64; i++) {
        buf[i] = (uint8_t)i;
    }
    /* Spans both regions. */
    assert_int_equal(dma_write(&s, 0x10fe0, buf, 64), 0);
    assert_int_equal(dma_read(&s, 0x10fe0, back, 64), 0);
    assert_memory_equal(buf, back, 64);
    /* The first region is the second page of fd a. */
    assert_int_equal(pread(a, back, 32, 4096 + 0xfe0), 32);
    assert_memory_equal(buf, back, 32);
    assert_non_null(dma_host_ptr(&s, 0x11000, 8192));
    assert_null(dma_host_ptr(&s, 0x10fff, 2));      /* crosses regions */
    /* Below, above, wrapping: refused and nothing copied. */
    assert_int_equal(dma_read(&s, 0xfff0, back, 32), -1);
    assert_int_equal(dma_write(&s, 0x12ff0, buf, 32), -1);
    assert_int_equal(dma_read(&s, UINT64_MAX - 4, back, 16), -1);
    assert_int_equal(dma_read(&s, 0x10000, back, 0), 0);
    dma_space_clear(&s);
    assert_int_equal(dma_read(&s, 0x10000, back, 1), -1);
    close(a);
    close(b);
}

static void test_bad_requests_keep_old_map(void **state)
{
    struct dma_space s;
    int a = make_memfd(4096), pipefd[2];
    struct dma_map_request good = { .gpa = 0, .size = 4096, .fd = a };
    struct dma_map_request q[2];
    uint8_t byte = 0x5a;

    (void)state;
    assert_int_equal(pipe(pipefd), 0);
    dma_space_init(&s);
    assert_int_equal(dma_space_replace(&s, &good, 1, NULL), 0);

    q[0] = (struct dma_map_request){ .gpa = 0x1000, .size = 8192, .fd = a };
    expect_replace_error(&s, q, 1, "fd holds 4096 bytes");
    q[0] = (struct dma_map_request){ .gpa = 0x1000, .size = 0, .fd = a };
    expect_replace_error(&s, q, 1, "size 0");
    q[0] = (struct dma_map_request){ .gpa = UINT64_MAX - 100, .size = 4096, .fd = a };
    expect_replace_error(&s, q, 1, "wraps");
    q[0] = (struct dma_map_request){ .gpa = 0x1000, .size = 4096, .fd = a, .offset = -4096 };
    expect_replace_error(&s, q, 1, "bad fd offset");
    q[0] = (struct dma_map_request){ .gpa = 0x1000, .size = 4096, .fd = pipefd[0] };
    expect_replace_error(&s, q, 1, "not a memory file");
    q[0] = (struct dma_map_request){ .gpa = 0x1000, .size = 4096, .fd = a };
    q[1] = (struct dma_map_request){ .gpa = 0x1800, .size = 2048, .fd = a };
    expect_replace_error(&s, q, 2, "overlap");
    /* The first map is still in place. */
    assert_int_equal(dma_write(&s, 100, &byte, 1), 0);
    assert_int_equal(dma_read(&s, 0x1000, &byte, 1), -1);
    dma_space_clear(&s);
    close(a);
    close(pipefd[0]);
    close(pipefd[1]);
}

static void test_truncated_file_faults_cleanly(void **state)
{
    struct dma_space s;
    int a = make_memfd(3 * 4096);
    struct dma_map_request q = { .gpa = 0, .size = 3 * 4096, .fd = a };
    uint8_t buf[4096] = { 1 };

    (void)state;
    dma_space_init(&s);
    assert_int_equal(dma_space_replace(&s, &q, 1, NULL), 0);
    /* A hostile VMM shrinks the file under the mapping. */
    assert_int_equal(ftruncate(a, 4096), 0);
    assert_int_equal(dma_read(&s, 0, buf, 16), 0);
    assert_int_equal(dma_read(&s, 8192, buf, sizeof(buf)), -1);
    assert_int_equal(dma_write(&s, 8192, buf, sizeof(buf)), -1);
    /* And the guard still works a second time. */
    assert_int_equal(dma_read(&s, 4096, buf, 8), -1);
    dma_space_clear(&s);
    close(a);
}

static void test_scatter_gather_to_iovecs(void **state)
{
    struct dma_space s;
    int a = make_memfd(8192), b = make_memfd(8192);
    struct dma_map_request q[2] = {
        { .gpa = 0x0, .size = 8192, .fd = a },
        { .gpa = 0x2000, .size = 8192, .fd = b },
    };
    struct dma_sg sg[3] = {
        { .gpa = 0x100, .len = 0x100 },
        { .gpa = 0x1f00, .len = 0x200 },        /* crosses into b */
        { .gpa = 0x3000, .len = 0 },
    };
    struct iovec iov[4];
    uint64_t total;

    (void)state;
    dma_space_init(&s);
    assert_int_equal(dma_space_replace(&s, q, 2, NULL), 0);
    assert_int_equal(dma_map_sg(&s, sg, 3, iov, 4, &total), 3);
    assert_int_equal(total, 0x300);
    assert_int_equal(iov[1].iov_len, 0x100);
    assert_int_equal(iov[2].iov_len, 0x100);
    assert_ptr_equal(iov[2].iov_base, dma_host_ptr(&s, 0x2000, 0x100));
    /* Too many pieces for the caller's array. */
    assert_int_equal(dma_map_sg(&s, sg, 2, iov, 2, &total), -1);
    assert_int_equal(errno, E2BIG);
    /* One unmapped byte refuses the whole list. */
    sg[2] = (struct dma_sg){ .gpa = 0x3fff, .len = 2 };
    assert_int_equal(dma_map_sg(&s, sg, 3, iov, 4, &total), -1);
    assert_int_equal(errno, EFAULT);
    sg[0] = (struct dma_sg){ .gpa = UINT64_MAX, .len = 2 };
    assert_int_equal(dma_map_sg(&s, sg, 1, iov, 4, &total), -1);
    dma_space_clear(&s);
    close(a);
    close(b);
}

/* A VMM may unmap before it ever mapped: nothing to remove, no NULL regions touched. */
static void test_unmap_with_nothing_mapped(void **state)
{
    struct dma_space s;

    (void)state;
    dma_space_init(&s);
    assert_int_equal(dma_space_unmap(&s, 0, 4096, NULL), 0);
    assert_int_equal(s.n, 0);
    dma_space_clear(&s);
}

/* The VMM's side of memory it shares without an fd: a plain buffer, copied on request. */
struct stub_vmm {
    uint8_t mem[1 << 20];
    uint64_t gpa;
    unsigned copies;
    bool refuse;
};

static int stub_copy(void *opaque, uint64_t gpa, void *buf, size_t len, bool to_guest)
{
    struct stub_vmm *v = opaque;
    uint8_t *at = v->mem + (gpa - v->gpa);

    v->copies++;
    if (v->refuse || gpa < v->gpa || gpa - v->gpa + len > sizeof(v->mem)) {
        return -1;
    }
    memcpy(to_guest ? at : buf, to_guest ? buf : at, len);
    return 0;
}

static void map_remote(struct dma_space *s, struct stub_vmm *v, uint64_t gpa)
{
    struct dma_map_request q = { .gpa = gpa, .size = sizeof(v->mem), .fd = -1 };

    v->gpa = gpa;
    s->remote = (struct dma_remote){ .copy = stub_copy, .opaque = v };
    assert_int_equal(dma_space_map(s, &q, NULL), 0);
}

static void test_mapping_direct_where_mapped(void **state)
{
    struct dma_space s;
    int a = make_memfd(8192);
    struct dma_map_request q = { .gpa = 0x10000, .size = 8192, .fd = a };
    struct dma_mapping m = { 0 };
    struct iovec iov[4];

    (void)state;
    dma_space_init(&s);
    assert_int_equal(dma_space_map(&s, &q, NULL), 0);
    assert_int_equal(dma_mapping_map(&m, &s, 0x10100, 0x200, true, iov, 4), 1);
    assert_ptr_equal(iov[0].iov_base, dma_host_ptr(&s, 0x10100, 0x200));
    assert_int_equal(iov[0].iov_len, 0x200);
    assert_null(m.bounce);                          /* no copy at all */
    assert_int_equal(dma_mapping_complete(&m, &s, 0x200), 0);
    assert_int_equal(dma_mapping_map(&m, &s, 0x11f00, 0x200, false, iov, 4), -1);
    assert_int_equal(errno, EFAULT);                /* past the end: not bounced */
    dma_mapping_release(&m);
    dma_space_clear(&s);
    close(a);
}

static void test_mapping_bounces_what_only_the_vmm_reaches(void **state)
{
    static struct stub_vmm vmm;
    struct dma_space s;
    struct dma_mapping m = { 0 };
    struct iovec iov[4];
    uint8_t *data;

    (void)state;
    dma_space_init(&s);
    map_remote(&s, &vmm, 0x100000);
    for (size_t i = 0; i < sizeof(vmm.mem); i++) {
        vmm.mem[i] = (uint8_t)(i * 3 + 1);
    }
    /* To the device: copied in at once, at most DMA_BOUNCE_MAX bytes of it. */
    assert_int_equal(dma_mapping_map(&m, &s, 0x100010, sizeof(vmm.mem) - 16, false, iov, 4),
                     1);
    assert_int_equal(iov[0].iov_len, DMA_BOUNCE_MAX);
    assert_memory_equal(iov[0].iov_base, vmm.mem + 16, DMA_BOUNCE_MAX);
    /* One transfer at a time: its buffer is in use until it completes. */
    assert_int_equal(dma_mapping_map(&m, &s, 0x100000, 16, false, iov, 4), -1);
    assert_int_equal(errno, EBUSY);
    vmm.copies = 0;
    assert_int_equal(dma_mapping_complete(&m, &s, DMA_BOUNCE_MAX), 0);
    assert_int_equal(vmm.copies, 0);                /* nothing goes back after a read */

    /* From the device: copied out on completion, only what the transfer moved. */
    assert_int_equal(dma_mapping_map(&m, &s, 0x100100, 0x1000, true, iov, 4), 1);
    assert_int_equal(vmm.copies, 0);
    data = iov[0].iov_base;
    memset(data, 0xab, 0x1000);
    assert_int_equal(dma_mapping_complete(&m, &s, 0x800), 0);
    assert_int_equal(vmm.mem[0x100], 0xab);
    assert_int_equal(vmm.mem[0x8ff], 0xab);
    assert_int_equal(vmm.mem[0x900], (uint8_t)(0x900 * 3 + 1));

    /* A failed transfer writes nothing back. */
    assert_int_equal(dma_mapping_map(&m, &s, 0x100000, 0x100, true, iov, 4), 1);
    memset(iov[0].iov_base, 0xcd, 0x100);
    assert_int_equal(dma_mapping_complete(&m, &s, -EIO), 0);
    assert_int_equal(vmm.mem[0], 1);

    /* The VMM refusing: the transfer fails, to the device at once, from it at completion. */
    vmm.refuse = true;
    assert_int_equal(dma_mapping_map(&m, &s, 0x100000, 0x100, false, iov, 4), -1);
    assert_int_equal(errno, EFAULT);
    assert_int_equal(dma_mapping_map(&m, &s, 0x100000, 0x100, true, iov, 4), 1);
    assert_int_equal(dma_mapping_complete(&m, &s, 0x100), -1);
    vmm.refuse = false;
    dma_mapping_release(&m);
    assert_null(m.bounce);
    dma_space_clear(&s);
}

/*
 * A range over more regions than the caller has iovecs for: the longest
 * prefix that fits is mapped, and the caller maps on from its end.  A
 * byte unmapped anywhere fails it before any piece is mapped; memory only
 * the VMM reaches ends the prefix and is bounced when the caller gets there.
 */
static void test_mapping_maps_the_prefix_that_fits(void **state)
{
    enum { REGIONS = 20, BASE = 0x10000, PAGE = 4096, REMOTE = BASE + REGIONS * PAGE };
    static struct stub_vmm vmm;
    struct dma_space s;
    struct dma_mapping m = { 0 };
    struct iovec iov[16];
    int fd = make_memfd(REGIONS * PAGE);
    uint8_t back[REGIONS * PAGE];
    uint64_t covered = 0;

    (void)state;
    dma_space_init(&s);
    for (int i = 0; i < REGIONS; i++) {     /* each page its own region, in reverse file order */
        struct dma_map_request q = { .gpa = BASE + (uint64_t)i * PAGE, .size = PAGE, .fd = fd,
                                     .offset = (int64_t)(REGIONS - 1 - i) * PAGE };

        assert_int_equal(dma_space_map(&s, &q, NULL), 0);
    }
    map_remote(&s, &vmm, REMOTE);
    assert_int_equal(dma_mapping_map(&m, &s, BASE + 0x100, REGIONS * PAGE - 0x100, true, iov, 16),
                     16);
    assert_ptr_equal(iov[0].iov_base, dma_host_ptr(&s, BASE + 0x100, PAGE - 0x100));
    assert_int_equal(iov[0].iov_len, PAGE - 0x100);
    for (int i = 0; i < 16; i++) {
        memset(iov[i].iov_base, 0x30 + i, iov[i].iov_len);
        covered += iov[i].iov_len;
    }
    assert_int_equal(covered, 16 * PAGE - 0x100);
    assert_false(m.in_flight);                      /* direct: nothing to copy back */
    assert_int_equal(dma_mapping_complete(&m, &s, (int64_t)covered), 0);
    /* The rest, from the prefix's end: the last 4 regions. */
    assert_int_equal(dma_mapping_map(&m, &s, BASE + 16 * PAGE, 4 * PAGE, true, iov, 16), 4);
    assert_ptr_equal(iov[3].iov_base, dma_host_ptr(&s, BASE + 19 * PAGE, PAGE));
    assert_int_equal(pread(fd, back, sizeof(back), 0), (ssize_t)sizeof(back));
    assert_int_equal(back[(REGIONS - 1) * PAGE + 0x100], 0x30);     /* region 0, in the last page */
    assert_int_equal(back[(REGIONS - 16) * PAGE], 0x30 + 15);
    assert_int_equal(back[(REGIONS - 17) * PAGE], 0);               /* region 16: not written */
    /* Past the direct regions into the VMM's memory: the direct part first, then bounced. */
    assert_int_equal(dma_mapping_map(&m, &s, BASE + 18 * PAGE, 2 * PAGE + 0x800, false, iov, 16),
                     2);
    assert_int_equal(iov[0].iov_len + iov[1].iov_len, 2 * PAGE);
    assert_int_equal(dma_mapping_map(&m, &s, REMOTE, 0x800, false, iov, 16), 1);
    assert_true(m.in_flight);
    assert_ptr_equal(iov[0].iov_base, m.bounce);
    assert_int_equal(dma_mapping_complete(&m, &s, 0x800), 0);
    /* An unmapped byte at the end: refused before the 16 pieces that would fit are mapped. */
    iov[0].iov_base = NULL;
    assert_int_equal(dma_mapping_map(&m, &s, BASE, REMOTE - BASE + sizeof(vmm.mem) + 1, true,
                                     iov, 16), -1);
    assert_int_equal(errno, EFAULT);
    assert_null(iov[0].iov_base);
    /* No room for a piece at all. */
    assert_int_equal(dma_mapping_map(&m, &s, BASE, PAGE, true, iov, 0), -1);
    assert_int_equal(errno, E2BIG);
    dma_mapping_release(&m);
    dma_space_clear(&s);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adjacent_regions_and_bounds),
        cmocka_unit_test(test_bad_requests_keep_old_map),
        cmocka_unit_test(test_truncated_file_faults_cleanly),
        cmocka_unit_test(test_scatter_gather_to_iovecs),
        cmocka_unit_test(test_unmap_with_nothing_mapped),
        cmocka_unit_test(test_mapping_direct_where_mapped),
        cmocka_unit_test(test_mapping_bounces_what_only_the_vmm_reaches),
        cmocka_unit_test(test_mapping_maps_the_prefix_that_fits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
