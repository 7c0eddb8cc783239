// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The vfio-user server through raw messages: negotiation and device info,
 * errors that get an error reply, framing that closes the connection, INTx
 * masking, DMA through messages and the requests that wait for its reply,
 * clients one after another, the counts logged per client, and random
 * frames.  The remote serves mpqemu-testdev and must survive all of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "client/mpqemu-client.h"
#include "hw/testdev.h"
#include "pci/pci.h"
#include "io/sock-io.h"
#include "proto/vfio-user-wire.h"

enum { RAM_GPA = 0x100000, RAM_SIZE = 1 << 20, BAR0_ADDR = 0xe0000000u };

struct fixture {
    pid_t pid;
    char dir[64];
    char path[96];
    int sock;
    uint16_t id;
    struct vfio_user_reader reader;
    int log;        /* the remote's stderr, or -1: the test's */
};

static int connect_to(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    strcpy(addr.sun_path, path);
    for (int i = 0; i < 500; i++) {
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            return fd;
        }
        usleep(10000);
    }
    fail_msg("cannot connect to %s", path);
    return -1;
}

static struct fixture *start(bool logged)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char log_path[] = "/tmp/mpqemu-vu-log-XXXXXX";
    char object[200];
    char *err = NULL;
    int saved = -1;

    strcpy(f->dir, "/tmp/mpqemu-vu-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/s", f->dir);
    snprintf(object, sizeof(object),
             "x-vfio-user-server,id=v,device=t0,socket.type=unix,socket.path=%s", f->path);
    f->log = -1;
    if (logged) {
        /* The remote inherits our stderr: for its spawning, a file of ours. */
        f->log = mkstemp(log_path);
        saved = dup(STDERR_FILENO);
        assert_true(f->log >= 0 && saved >= 0);
        unlink(log_path);
        assert_int_equal(dup2(f->log, STDERR_FILENO), STDERR_FILENO);
    }
    {
        char *argv[] = { getenv("MPQEMU_REMOTE"), "-device", "mpqemu-testdev,id=t0",
                         "-object", object, NULL };

        f->pid = mpq_spawn(argv, 0, NULL, &err);
    }
    if (logged) {
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
    }
    assert_true(f->pid > 0);
    f->sock = connect_to(f->path);
    vfio_user_reader_init(&f->reader);
    return f;
}

static int setup(void **state)
{
    *state = start(false);
    return 0;
}

static int setup_logged(void **state)
{
    *state = start(true);
    return 0;
}

/* SIGTERM; the remote must leave cleanly, removing its socket. */
static void stop(struct fixture *f)
{
    int status;

    kill(f->pid, SIGTERM);
    assert_int_equal(mpq_reap(f->pid, 10000, &status), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(f->path, F_OK), -1);
    f->pid = 0;
}

/* The remote must still be alive, and leave cleanly on SIGTERM. */
static int teardown(void **state)
{
    struct fixture *f = *state;

    close(f->sock);
    vfio_user_reader_free(&f->reader);
    if (f->pid > 0) {
        stop(f);
    }
    if (f->log >= 0) {
        close(f->log);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static uint16_t send_raw(struct fixture *f, uint16_t cmd, uint32_t flags, const void *body,
                         size_t len, const void *data, size_t data_len, const int *fds,
                         size_t nfds)
{
    struct vfio_user_hdr h = {
        .id = ++f->id, .cmd = cmd, .flags = flags,
        .size = (uint32_t)(sizeof(h) + len + data_len),
    };
    struct iovec iov[3] = { { &h, sizeof(h) }, { (void *)body, len }, { (void *)data, data_len } };

    assert_int_equal(sock_send_all(f->sock, iov, 3, fds, nfds), 0);
    return h.id;
}

/* The next message, waiting up to 5 s; NULL-safe body in m. */
static int receive(struct fixture *f, struct vfio_user_msg *m)
{
    for (;;) {
        struct pollfd p = { .fd = f->sock, .events = POLLIN };
        int r = vfio_user_reader_read(&f->reader, f->sock, m, NULL);

        if (r != VFIO_USER_READ_AGAIN) {
            return r;
        }
        if (poll(&p, 1, 5000) <= 0) {
            fail_msg("no message within 5 s");
        }
    }
}

/* Sends a command and returns the errno of its reply (0: success). */
static int request(struct fixture *f, uint16_t cmd, const void *body, size_t len,
                   const void *data, size_t data_len, const int *fds, size_t nfds,
                   struct vfio_user_msg *reply)
{
    struct vfio_user_msg m;
    uint16_t id = send_raw(f, cmd, VFIO_USER_F_COMMAND, body, len, data, data_len, fds, nfds);

    assert_int_equal(receive(f, reply ? reply : &m), VFIO_USER_READ_MSG);
    if (!reply) {
        reply = &m;
    }
    assert_int_equal(reply->hdr.id, id);
    assert_int_equal(reply->hdr.cmd, cmd);
    assert_int_equal(reply->hdr.flags & VFIO_USER_F_TYPE_MASK, VFIO_USER_F_REPLY);
    return reply->hdr.flags & VFIO_USER_F_ERROR ? (int)reply->hdr.error : 0;
}

static void negotiate(struct fixture *f)
{
    static const char caps[] = "{\"capabilities\":{\"max_msg_fds\":8,\"pgsizes\":4096}}";
    struct vfio_user_version v = { 0, 0 };
    struct vfio_user_msg reply;

    assert_int_equal(request(f, VFIO_USER_VERSION, &v, sizeof(v), caps, sizeof(caps), NULL, 0,
                             &reply), 0);
    memcpy(&v, reply.body, sizeof(v));
    assert_int_equal(v.major, 0);
    assert_non_null(strstr((char *)reply.body + sizeof(v), "\"max_data_xfer_size\":1048576"));
    assert_int_equal(reply.body[reply.body_len - 1], '\0');
}

static int region_rw(struct fixture *f, bool write, uint32_t region, uint64_t off,
                     uint32_t count, void *data)
{
    struct vfio_user_region_access a = { .offset = off, .region = region, .count = count };
    struct vfio_user_msg reply;
    int rc = request(f, write ? VFIO_USER_REGION_WRITE : VFIO_USER_REGION_READ, &a, sizeof(a),
                     write ? data : NULL, write ? count : 0, NULL, 0, &reply);

    if (rc == 0 && !write) {
        assert_int_equal(reply.body_len, sizeof(a) + count);
        memcpy(data, reply.body + sizeof(a), count);
    }
    return rc;
}

static uint32_t rd32(struct fixture *f, uint32_t region, uint64_t off)
{
    uint32_t v = 0;

    assert_int_equal(region_rw(f, false, region, off, 4, &v), 0);
    return v;
}

static void wr32(struct fixture *f, uint32_t region, uint64_t off, uint32_t v)
{
    assert_int_equal(region_rw(f, true, region, off, 4, &v), 0);
}

/* The server answers, and answers right: the vendor and device ids. */
static void expect_alive(struct fixture *f)
{
    assert_int_equal(rd32(f, VFIO_PCI_CONFIG_REGION, 0),
                     TESTDEV_VENDOR | (uint32_t)TESTDEV_DEVICE << 16);
}

static void expect_closed(struct fixture *f)
{
    struct vfio_user_msg m;
    int r;

    /* An error reply may come first; then the end of the stream. */
    while ((r = receive(f, &m)) == VFIO_USER_READ_MSG) {
        close_fds(m.fds, m.nfds);
    }
    assert_int_equal(r, VFIO_USER_READ_EOF);
}

/* A new client is served once the old one has gone. */
/* A new connection, not negotiated yet. */
static void connect_again(struct fixture *f)
{
    close(f->sock);
    vfio_user_reader_free(&f->reader);
    vfio_user_reader_init(&f->reader);
    f->sock = connect_to(f->path);
}

static void reconnect(struct fixture *f)
{
    connect_again(f);
    negotiate(f);
    expect_alive(f);
}

static void test_negotiation_and_device_info(void **state)
{
    struct fixture *f = *state;
    struct vfio_user_device_info info = { .argsz = sizeof(info) };
    static const uint64_t sizes[VFIO_PCI_NUM_REGIONS] = {
        TESTDEV_BAR0_SIZE, TESTDEV_BAR1_SIZE, 16384, 0, 0, 0, 0, 256, 0,
    };
    struct vfio_user_msg reply;

    negotiate(f);
    assert_int_equal(request(f, VFIO_USER_DEVICE_GET_INFO, &info, sizeof(info), NULL, 0, NULL,
                             0, &reply), 0);
    memcpy(&info, reply.body, sizeof(info));
    assert_int_equal(info.flags, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
    assert_int_equal(info.num_regions, 9);
    assert_int_equal(info.num_irqs, 5);
    for (uint32_t i = 0; i <= VFIO_PCI_NUM_REGIONS; i++) {
        struct vfio_user_region_info ri = { .argsz = sizeof(ri), .index = i };
        int rc = request(f, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, NULL, 0,
                         &reply);

        if (i == VFIO_PCI_NUM_REGIONS) {
            assert_int_equal(rc, EINVAL);
            break;
        }
        assert_int_equal(rc, 0);
        memcpy(&ri, reply.body, sizeof(ri));
        assert_int_equal(ri.size, sizes[i]);
        /* Emulated registers: readable and writable, never mmapped. */
        assert_int_equal(ri.flags, sizes[i] ? 3 : 0);
    }
    {
        struct vfio_user_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_INTX_IRQ };

        assert_int_equal(request(f, VFIO_USER_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0,
                                 NULL, 0, &reply), 0);
        memcpy(&ii, reply.body, sizeof(ii));
        assert_int_equal(ii.count, 1);
        assert_true(ii.flags & VFIO_IRQ_INFO_AUTOMASKED);
        ii = (struct vfio_user_irq_info){ .argsz = sizeof(ii), .index = VFIO_PCI_MSIX_IRQ };
        assert_int_equal(request(f, VFIO_USER_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0,
                                 NULL, 0, &reply), 0);
        memcpy(&ii, reply.body, sizeof(ii));
        assert_int_equal(ii.count, 0);
    }
    /* Config space reads of any length, as QEMU reads all of it at once. */
    {
        uint8_t cfg[256] = { 0 };

        assert_int_equal(region_rw(f, false, VFIO_PCI_CONFIG_REGION, 0, 256, cfg), 0);
        assert_int_equal(cfg[0] | cfg[1] << 8, TESTDEV_VENDOR);
        assert_int_equal(cfg[PCI_INTERRUPT_PIN], 1);
    }
}

static void test_command_before_version_closes(void **state)
{
    struct fixture *f = *state;
    struct vfio_user_device_info info = { .argsz = sizeof(info) };

    assert_int_equal(request(f, VFIO_USER_DEVICE_GET_INFO, &info, sizeof(info), NULL, 0, NULL,
                             0, NULL), EINVAL);
    expect_closed(f);
    reconnect(f);
}

/* A VERSION the server cannot take gets an error reply, then the connection closes. */
static void test_failed_version_closes(void **state)
{
    struct fixture *f = *state;
    static const char bad_caps[] = "{\"capabilities\":{\"max_data_xfer_size\":100}}";
    struct vfio_user_version v = { 1, 0 };

    assert_int_equal(request(f, VFIO_USER_VERSION, &v, sizeof(v), NULL, 0, NULL, 0, NULL),
                     ENOTSUP);
    expect_closed(f);
    connect_again(f);
    v.major = 0;
    assert_int_equal(request(f, VFIO_USER_VERSION, &v, sizeof(v), bad_caps, sizeof(bad_caps),
                             NULL, 0, NULL), EINVAL);
    expect_closed(f);
    reconnect(f);               /* and the next client is served */
}

static void test_bad_requests_get_error_replies(void **state)
{
    struct fixture *f = *state;
    int pipefd[2], efd = eventfd(0, EFD_CLOEXEC), small = memfd_create("small", MFD_CLOEXEC);
    uint32_t v = 0;
    uint8_t big[16] = { 0 };

    negotiate(f);
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(ftruncate(small, 4096), 0);
    /* Outside a region, a size a BAR cannot take, a region that does not exist. */
    assert_int_equal(region_rw(f, false, 0, TESTDEV_BAR0_SIZE - 2, 4, &v), EINVAL);
    assert_int_equal(region_rw(f, false, 0, UINT64_MAX - 1, 4, &v), EINVAL);
    assert_int_equal(region_rw(f, false, 0, 0, 3, &v), EINVAL);
    assert_int_equal(region_rw(f, false, 0, 0, 16, big), EINVAL);
    assert_int_equal(region_rw(f, false, 5, 0, 4, &v), EINVAL);
    assert_int_equal(region_rw(f, false, 99, 0, 4, &v), EINVAL);
    assert_int_equal(region_rw(f, false, VFIO_PCI_CONFIG_REGION, 255, 2, &v), EINVAL);
    /* A BAR whose decoding is off does not answer. */
    assert_int_equal(region_rw(f, false, 0, 0, 4, &v), EIO);
    {
        /* A write whose count disagrees with its data. */
        struct vfio_user_region_access a = { .offset = 8, .region = 0, .count = 8 };

        assert_int_equal(request(f, VFIO_USER_REGION_WRITE, &a, sizeof(a), &v, 4, NULL, 0,
                                 NULL), EINVAL);
    }
    assert_int_equal(request(f, 99, NULL, 0, NULL, 0, NULL, 0, NULL), ENOTSUP);
    assert_int_equal(request(f, VFIO_USER_DMA_READ, big, 16, NULL, 0, NULL, 0, NULL), ENOTSUP);
    {
        struct vfio_user_dma_map map = { .argsz = sizeof(map), .flags = 3, .addr = RAM_GPA,
                                         .size = 4096 };
        struct vfio_user_dma_unmap unmap = { .argsz = sizeof(unmap), .addr = RAM_GPA,
                                             .size = 4096 };

        assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0,
                                 &pipefd[0], 1, NULL), EINVAL);     /* not memory */
        map.size = 8192;
        assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, &small, 1,
                                 NULL), EINVAL);    /* longer than the file */
        map.size = 4097;
        assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, &small, 1,
                                 NULL), EINVAL);    /* not page aligned */
        map.size = 4096;
        assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, &small, 1,
                                 NULL), 0);
        assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, &small, 1,
                                 NULL), EINVAL);    /* overlaps */
        unmap.size = 2048;
        assert_int_equal(request(f, VFIO_USER_DMA_UNMAP, &unmap, sizeof(unmap), NULL, 0,
                                 NULL, 0, NULL), EINVAL);   /* would split */
        unmap.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
        assert_int_equal(request(f, VFIO_USER_DMA_UNMAP, &unmap, sizeof(unmap), NULL, 0,
                                 NULL, 0, NULL), ENOTSUP);
        unmap = (struct vfio_user_dma_unmap){ .argsz = sizeof(unmap), .addr = RAM_GPA,
                                              .size = 4096 };
        assert_int_equal(request(f, VFIO_USER_DMA_UNMAP, &unmap, sizeof(unmap), NULL, 0,
                                 NULL, 0, NULL), 0);
    }
    {
        struct vfio_user_irq_set set = { .argsz = sizeof(set), .index = 0, .count = 1,
            .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER };

        assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0,
                                 &pipefd[0], 1, NULL), EINVAL);     /* not an eventfd */
        set.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK;
        assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0,
                                 &efd, 1, NULL), EINVAL);   /* no mask eventfd for INTx */
        set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK |
                    VFIO_IRQ_SET_ACTION_UNMASK;
        assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0,
                                 NULL, 0, NULL), EINVAL);   /* two actions */
        set = (struct vfio_user_irq_set){ .argsz = sizeof(set), .index = VFIO_PCI_MSI_IRQ,
            .count = 1, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER };
        assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0,
                                 NULL, 0, NULL), EINVAL);   /* no MSI */
        set.count = 3;
        set.flags = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
        assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0,
                                 NULL, 0, NULL), EINVAL);   /* bools missing */
    }
    {
        struct vfio_user_version again = { 0, 0 };

        assert_int_equal(request(f, VFIO_USER_VERSION, &again, sizeof(again), NULL, 0, NULL, 0,
                                 NULL), EINVAL);
    }
    expect_alive(f);
    close(pipefd[0]);
    close(pipefd[1]);
    close(efd);
    close(small);
}

static void test_framing_errors_close_the_connection(void **state)
{
    struct fixture *f = *state;
    int fds[9];

    /* Size below the header. */
    negotiate(f);
    {
        struct vfio_user_hdr h = { .id = 1, .cmd = VFIO_USER_DEVICE_GET_INFO, .size = 8 };

        assert_int_equal(write(f->sock, &h, sizeof(h)), sizeof(h));
    }
    expect_closed(f);
    /* Size far beyond any message. */
    reconnect(f);
    {
        struct vfio_user_hdr h = { .id = 1, .cmd = VFIO_USER_REGION_WRITE, .size = UINT32_MAX };

        assert_int_equal(write(f->sock, &h, sizeof(h)), sizeof(h));
    }
    expect_closed(f);
    /* More fds than a message may carry. */
    reconnect(f);
    for (int i = 0; i < 9; i++) {
        fds[i] = eventfd(0, EFD_CLOEXEC);
    }
    send_raw(f, VFIO_USER_DEVICE_RESET, 0, NULL, 0, NULL, 0, fds, 9);
    expect_closed(f);
    close_fds(fds, 9);
    /* A reply to a request the server never made. */
    reconnect(f);
    send_raw(f, VFIO_USER_DMA_READ, VFIO_USER_F_REPLY, NULL, 0, NULL, 0, NULL, 0);
    expect_closed(f);
    /* Gone in the middle of a message. */
    reconnect(f);
    {
        struct vfio_user_hdr h = { .id = 1, .cmd = VFIO_USER_REGION_WRITE, .size = 64 };

        assert_int_equal(write(f->sock, &h, sizeof(h)), sizeof(h));
    }
    reconnect(f);
}

static void enable_bar0(struct fixture *f)
{
    wr32(f, VFIO_PCI_CONFIG_REGION, PCI_BASE_ADDRESS_0, BAR0_ADDR);
    wr32(f, VFIO_PCI_CONFIG_REGION, PCI_COMMAND,
         PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER);
}

static void set_intx_eventfd(struct fixture *f, uint32_t action, int fd)
{
    struct vfio_user_irq_set set = { .argsz = sizeof(set), .index = VFIO_PCI_INTX_IRQ,
                                     .count = 1, .flags = VFIO_IRQ_SET_DATA_EVENTFD | action };

    assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0, &fd, 1,
                             NULL), 0);
}

static bool fired(int efd, int timeout_ms)
{
    struct pollfd p = { .fd = efd, .events = POLLIN };
    uint64_t n;

    if (poll(&p, 1, timeout_ms) != 1) {
        return false;
    }
    return read(efd, &n, sizeof(n)) == sizeof(n);
}

/* VFIO's INTx: one signal, masked until unmasked, again if still high. */
static void test_intx_is_automasked_level(void **state)
{
    struct fixture *f = *state;
    int trigger = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int unmask = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t one = 1;
    struct vfio_user_irq_set set = { .argsz = sizeof(set), .index = VFIO_PCI_INTX_IRQ,
        .count = 1, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK };

    negotiate(f);
    enable_bar0(f);
    set_intx_eventfd(f, VFIO_IRQ_SET_ACTION_TRIGGER, trigger);
    set_intx_eventfd(f, VFIO_IRQ_SET_ACTION_UNMASK, unmask);
    wr32(f, 0, TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_SOFT);
    wr32(f, 0, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    assert_true(fired(trigger, 2000));
    wr32(f, 0, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    assert_false(fired(trigger, 100));          /* masked */
    assert_int_equal(write(unmask, &one, sizeof(one)), sizeof(one));
    assert_true(fired(trigger, 2000));          /* unmasked while high */
    wr32(f, 0, TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_SOFT);
    assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0, NULL, 0,
                             NULL), 0);
    assert_false(fired(trigger, 100));          /* low: nothing */
    wr32(f, 0, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    assert_true(fired(trigger, 2000));
    /* Interrupts off: the line may rise, nothing is signalled. */
    set = (struct vfio_user_irq_set){ .argsz = sizeof(set), .index = VFIO_PCI_INTX_IRQ,
        .count = 0, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER };
    assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0, NULL, 0,
                             NULL), 0);
    assert_int_equal(write(unmask, &one, sizeof(one)), sizeof(one));
    assert_false(fired(trigger, 100));
    close(trigger);
    close(unmask);
}

/*
 * The client shares the open files of the eventfds it sends, and clears
 * O_NONBLOCK on them.  The server still never waits on them: a trigger
 * whose counter is full (the signal is pending there already) and an
 * unmask fd found empty when read (the client read it first) leave it
 * answering at once; the interrupt works as before once the client reads.
 */
static void test_intx_eventfds_made_blocking_by_the_client(void **state)
{
    struct fixture *f = *state;
    int trigger = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int unmask = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t one = 1, full = UINT64_MAX - 1, n = 0;
    struct pollfd p = { .fd = trigger, .events = POLLIN };
    struct timespec t0, t1;

    negotiate(f);
    enable_bar0(f);
    set_intx_eventfd(f, VFIO_IRQ_SET_ACTION_TRIGGER, trigger);
    set_intx_eventfd(f, VFIO_IRQ_SET_ACTION_UNMASK, unmask);
    assert_int_equal(fcntl(trigger, F_SETFL, 0), 0);
    assert_int_equal(fcntl(unmask, F_SETFL, 0), 0);
    wr32(f, 0, TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_SOFT);
    wr32(f, 0, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    assert_true(fired(trigger, 2000));
    /* Unmasked while high into a full trigger: pending there already, no wait. */
    assert_int_equal(write(trigger, &full, sizeof(full)), sizeof(full));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(write(unmask, &one, sizeof(one)), sizeof(one));
    expect_alive(f);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2);     /* a tick or two (1 ms), not the 5 s timeout */
    assert_int_equal(rd32(f, 0, TESTDEV_REG_IRQ_STATUS), TESTDEV_IRQ_SOFT);
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(read(trigger, &n, sizeof(n)), sizeof(n));
    assert_int_equal(n, full);
    /* The client takes back its unmask signals, racing the server to read them. */
    for (int i = 0; i < 200; i++) {
        struct iovec iov = { &n, sizeof(n) };

        assert_int_equal(write(unmask, &one, sizeof(one)), sizeof(one));
        /* Ours is made blocking too, and the server may have read it first. */
        (void)!preadv2(unmask, &iov, 1, -1, RWF_NOWAIT);
        p.fd = trigger;
        if (poll(&p, 1, 0) == 1) {
            assert_int_equal(read(trigger, &n, sizeof(n)), sizeof(n));
        }
    }
    expect_alive(f);
    /* Still high: one more unmask signals again. */
    while (poll(&p, 1, 100) == 1) {
        assert_int_equal(read(trigger, &n, sizeof(n)), sizeof(n));
    }
    assert_int_equal(write(unmask, &one, sizeof(one)), sizeof(one));
    assert_true(fired(trigger, 2000));
    close(trigger);
    close(unmask);
}

/* Appends one command frame to buf at *len. */
static void frame(struct fixture *f, uint8_t *buf, size_t *len, uint16_t cmd, const void *body,
                  size_t body_len, const void *data, size_t data_len)
{
    struct vfio_user_hdr h = {
        .id = ++f->id, .cmd = cmd, .flags = VFIO_USER_F_COMMAND,
        .size = (uint32_t)(sizeof(h) + body_len + data_len),
    };

    memcpy(buf + *len, &h, sizeof(h));
    memcpy(buf + *len + sizeof(h), body, body_len);
    if (data_len) {
        memcpy(buf + *len + sizeof(h) + body_len, data, data_len);
    }
    *len += h.size;
}

/* An unmask message and a BAR 0 register write, sent in one go; both answered. */
static void unmask_then_write(struct fixture *f, uint64_t reg, uint32_t value)
{
    struct vfio_user_irq_set set = { .argsz = sizeof(set), .index = VFIO_PCI_INTX_IRQ,
        .count = 1, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK };
    struct vfio_user_region_access a = { .offset = reg, .region = 0, .count = 4 };
    uint8_t buf[128];
    size_t len = 0;
    struct vfio_user_msg m;

    frame(f, buf, &len, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0);
    frame(f, buf, &len, VFIO_USER_REGION_WRITE, &a, sizeof(a), &value, sizeof(value));
    assert_int_equal(write(f->sock, buf, len), (ssize_t)len);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(receive(f, &m), VFIO_USER_READ_MSG);
        assert_int_equal(m.hdr.flags & VFIO_USER_F_ERROR, 0);
    }
}

/*
 * An unmask by message while the line is high, as QEMU without KVM sends
 * before the handler's first register access: the handler's write that
 * lowers the line leaves nothing to signal; a line still high after the
 * write, or with no write at all, is signalled again.
 */
static void test_intx_message_unmask_waits_for_the_handler(void **state)
{
    struct fixture *f = *state;
    int trigger = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct vfio_user_irq_set set = { .argsz = sizeof(set), .index = VFIO_PCI_INTX_IRQ,
        .count = 1, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK };

    negotiate(f);
    enable_bar0(f);
    set_intx_eventfd(f, VFIO_IRQ_SET_ACTION_TRIGGER, trigger);
    wr32(f, 0, TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_SOFT);
    wr32(f, 0, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    assert_true(fired(trigger, 2000));
    unmask_then_write(f, TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_SOFT);
    assert_false(fired(trigger, 200));          /* handled: no spurious signal */
    wr32(f, 0, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    assert_true(fired(trigger, 2000));
    unmask_then_write(f, TESTDEV_REG_SCRATCH, 1);
    assert_true(fired(trigger, 2000));          /* still high after the write */
    assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0, NULL, 0,
                             NULL), 0);
    assert_true(fired(trigger, 2000));          /* still high, nothing written */
    close(trigger);
}

/* Memory mapped without an fd: the device's DMA becomes DMA_READ/DMA_WRITE. */
static void test_dma_through_messages(void **state)
{
    struct fixture *f = *state;
    uint8_t *guest = calloc(1, RAM_SIZE);
    struct mpq_ram ram = { .fd = -1, .gpa = RAM_GPA, .size = RAM_SIZE, .host = guest };
    struct mpq_dev *d;
    char *err = NULL;
    uint64_t count;

    close(f->sock);
    d = mpq_open_vfio_user(f->path, &err);
    assert_non_null(d);
    f->sock = -1;
    for (int i = 0; i < 8192; i++) {
        guest[0x1000 + i] = (uint8_t)(i * 13 + 1);
    }
    if (mpq_map_ram(d, &ram, 1, &err) < 0 || mpq_intx_enable(d, &err) < 0 ||
        mpq_probe(d, NULL, &err) < 0) {
        fail_msg("%s", err);
    }
    assert_int_equal(mpq_bar_write(d, 0, TESTDEV_REG_IRQ_MASK, 4, TESTDEV_IRQ_DMA_DONE, NULL), 0);
    assert_int_equal(mpq_bar_write(d, 0, TESTDEV_REG_DMA_ADDR, 8, RAM_GPA + 0x1000, NULL), 0);
    assert_int_equal(mpq_bar_write(d, 0, TESTDEV_REG_DMA_LEN, 4, 8192, NULL), 0);
    assert_int_equal(mpq_bar_write(d, 0, TESTDEV_REG_DMA_CMD, 4, TESTDEV_DMA_FROM_GUEST, NULL),
                     0);
    assert_int_equal(mpq_intx_wait(d, 5000), 1);
    assert_int_equal(mpq_bar_write(d, 0, TESTDEV_REG_IRQ_STATUS, 4, TESTDEV_IRQ_DMA_DONE, NULL),
                     0);
    assert_int_equal(mpq_intx_eoi(d), 0);
    assert_int_equal(mpq_bar_write(d, 0, TESTDEV_REG_DMA_ADDR, 8, RAM_GPA + 0x40000, NULL), 0);
    assert_int_equal(mpq_bar_write(d, 0, TESTDEV_REG_DMA_CMD, 4, TESTDEV_DMA_TO_GUEST, NULL), 0);
    assert_int_equal(mpq_intx_wait(d, 5000), 1);
    assert_memory_equal(guest + 0x1000, guest + 0x40000, 8192);
    assert_int_equal(mpq_bar_read(d, 0, TESTDEV_REG_DMA_COUNT, 4, &count, NULL), 0);
    assert_int_equal(count, 2);
    mpq_close(d);
    free(guest);
    f->sock = connect_to(f->path);
}

/* Appends a 4-byte write of 'value' to BAR 0 register 'reg', or a read (NULL); its id. */
static uint16_t bar0_frame(struct fixture *f, uint8_t *buf, size_t *len, uint64_t reg,
                           const uint32_t *value)
{
    struct vfio_user_region_access a = { .offset = reg, .region = 0, .count = 4 };

    frame(f, buf, len, value ? VFIO_USER_REGION_WRITE : VFIO_USER_REGION_READ, &a, sizeof(a),
          value, value ? 4 : 0);
    return f->id;
}

/* The next message is the server's DMA_READ of 'count' bytes at 'addr'; its id. */
static uint16_t expect_dma_read(struct fixture *f, uint64_t addr, uint64_t count)
{
    struct vfio_user_dma_access a;
    struct vfio_user_msg m;

    assert_int_equal(receive(f, &m), VFIO_USER_READ_MSG);
    assert_int_equal(m.hdr.flags & VFIO_USER_F_TYPE_MASK, VFIO_USER_F_COMMAND);
    assert_int_equal(m.hdr.cmd, VFIO_USER_DMA_READ);
    assert_int_equal(m.body_len, sizeof(a));
    memcpy(&a, m.body, sizeof(a));
    assert_int_equal(a.addr, addr);
    assert_int_equal(a.count, count);
    return m.hdr.id;
}

/* Appends our answer to the server's DMA_READ 'id': 'count' bytes of 'fill'. */
static void dma_read_reply_frame(uint8_t *buf, size_t *len, uint16_t id, uint64_t addr,
                                 uint64_t count, uint8_t fill)
{
    struct vfio_user_dma_access a = { .addr = addr, .count = count };
    struct vfio_user_hdr h = { .id = id, .cmd = VFIO_USER_DMA_READ, .flags = VFIO_USER_F_REPLY,
                               .size = (uint32_t)(sizeof(h) + sizeof(a) + count) };

    memcpy(buf + *len, &h, sizeof(h));
    memcpy(buf + *len + sizeof(h), &a, sizeof(a));
    memset(buf + *len + sizeof(h) + sizeof(a), fill, count);
    *len += h.size;
}

/* The next message is the reply, without error, to request 'id' of command 'cmd'. */
static void expect_reply(struct fixture *f, uint16_t id, uint16_t cmd, struct vfio_user_msg *m)
{
    assert_int_equal(receive(f, m), VFIO_USER_READ_MSG);
    assert_int_equal(m->hdr.flags & VFIO_USER_F_TYPE_MASK, VFIO_USER_F_REPLY);
    assert_int_equal(m->hdr.id, id);
    assert_int_equal(m->hdr.cmd, cmd);
    assert_int_equal(m->hdr.flags & VFIO_USER_F_ERROR, 0);
}

static void send_frames(struct fixture *f, const uint8_t *buf, size_t len)
{
    assert_int_equal(write(f->sock, buf, len), (ssize_t)len);
}

/* The next message is the reply to a 4-byte read of BAR 0 sent as 'id'; its value. */
static uint32_t expect_bar0_value(struct fixture *f, uint16_t id)
{
    struct vfio_user_msg m;
    uint32_t v;

    expect_reply(f, id, VFIO_USER_REGION_READ, &m);
    assert_int_equal(m.body_len, sizeof(struct vfio_user_region_access) + 4);
    memcpy(&v, m.body + sizeof(struct vfio_user_region_access), 4);
    return v;
}

/*
 * Requests that come while the server waits for the reply to its DMA_READ
 * are held back, then served after the reply in the order they came, none
 * lost, before any request that came after the reply: also when one of them
 * needs a DMA of its own.  The scratch register shows the order: each read
 * must see the write just before it.
 */
static void test_requests_during_a_dma_wait_are_served_in_order(void **state)
{
    enum { DMA_LEN = 64 };
    struct fixture *f = *state;
    struct vfio_user_dma_map map = { .argsz = sizeof(map), .addr = RAM_GPA, .size = RAM_SIZE,
                                     .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE };
    const uint32_t from_guest = TESTDEV_DMA_FROM_GUEST, one = 1, two = 2;
    uint16_t first_dma, write_one, second_dma, read_one, write_two, read_two, dma;
    uint64_t addr = RAM_GPA;
    struct vfio_user_msg m;
    uint8_t buf[512];
    size_t len = 0;

    negotiate(f);
    /* Memory without an fd: the device's DMA becomes our DMA_READ. */
    assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, NULL, 0, NULL), 0);
    enable_bar0(f);
    assert_int_equal(region_rw(f, true, 0, TESTDEV_REG_DMA_ADDR, 8, &addr), 0);
    wr32(f, 0, TESTDEV_REG_DMA_LEN, DMA_LEN);

    first_dma = bar0_frame(f, buf, &len, TESTDEV_REG_DMA_CMD, &from_guest);
    send_frames(f, buf, len);
    dma = expect_dma_read(f, RAM_GPA, DMA_LEN);
    /* In one go: three requests during the wait, the reply, two requests after it. */
    len = 0;
    write_one = bar0_frame(f, buf, &len, TESTDEV_REG_SCRATCH, &one);
    second_dma = bar0_frame(f, buf, &len, TESTDEV_REG_DMA_CMD, &from_guest);
    read_one = bar0_frame(f, buf, &len, TESTDEV_REG_SCRATCH, NULL);
    dma_read_reply_frame(buf, &len, dma, RAM_GPA, DMA_LEN, 0xa5);
    write_two = bar0_frame(f, buf, &len, TESTDEV_REG_SCRATCH, &two);
    read_two = bar0_frame(f, buf, &len, TESTDEV_REG_SCRATCH, NULL);
    send_frames(f, buf, len);

    expect_reply(f, first_dma, VFIO_USER_REGION_WRITE, &m);
    expect_reply(f, write_one, VFIO_USER_REGION_WRITE, &m);
    dma = expect_dma_read(f, RAM_GPA, DMA_LEN);     /* the second DMA's */
    len = 0;
    dma_read_reply_frame(buf, &len, dma, RAM_GPA, DMA_LEN, 0x5a);
    send_frames(f, buf, len);
    expect_reply(f, second_dma, VFIO_USER_REGION_WRITE, &m);
    assert_int_equal(expect_bar0_value(f, read_one), 1);
    expect_reply(f, write_two, VFIO_USER_REGION_WRITE, &m);
    assert_int_equal(expect_bar0_value(f, read_two), 2);
    assert_int_equal(rd32(f, 0, TESTDEV_REG_DMA_COUNT), 2);
    assert_int_equal(rd32(f, 0, TESTDEV_REG_STATUS) & TESTDEV_STATUS_DMA_ERROR, 0);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Maps memory without an fd and starts a DMA from it, then never answers
 * the DMA_READ that comes.  Returns the milliseconds until the remote gave
 * up on us: closed the connection, or failed the copy and answered.
 */
static uint64_t stall_the_remote_once(struct fixture *f)
{
    struct vfio_user_dma_map map = { .argsz = sizeof(map), .addr = RAM_GPA, .size = RAM_SIZE,
                                     .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE };
    struct vfio_user_region_access a = { .offset = TESTDEV_REG_DMA_CMD, .region = 0, .count = 4 };
    uint32_t cmd = TESTDEV_DMA_FROM_GUEST, len = 4096;
    uint64_t addr = RAM_GPA, start;
    uint16_t id;

    assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, NULL, 0, NULL), 0);
    enable_bar0(f);
    assert_int_equal(region_rw(f, true, 0, TESTDEV_REG_DMA_ADDR, 8, &addr), 0);
    wr32(f, 0, TESTDEV_REG_DMA_LEN, len);
    start = now_ms();
    id = send_raw(f, VFIO_USER_REGION_WRITE, VFIO_USER_F_COMMAND, &a, sizeof(a), &cmd, 4, NULL, 0);
    for (;;) {
        struct pollfd p = { .fd = f->sock, .events = POLLIN };
        struct vfio_user_msg m;
        int r = vfio_user_reader_read(&f->reader, f->sock, &m, NULL);

        if (r == VFIO_USER_READ_AGAIN) {
            assert_int_equal(poll(&p, 1, 10000), 1);
            continue;
        }
        if (r != VFIO_USER_READ_MSG || (m.hdr.id == id && m.hdr.cmd == VFIO_USER_REGION_WRITE)) {
            return now_ms() - start;
        }
        close_fds(m.fds, m.nfds);       /* our DMA_READ: left unanswered */
    }
}

/*
 * Waiting for a DMA reply stops every device and monitor of the process.
 * A client that never answers may hold it once for the full budget (5 s);
 * when it comes back and does it again, it finds the budget spent and
 * holds the process for no more than what refilled meanwhile.
 */
static void test_client_that_never_answers_dma(void **state)
{
    struct fixture *f = *state;
    uint64_t first, second;

    negotiate(f);
    first = stall_the_remote_once(f);
    reconnect(f);
    second = stall_the_remote_once(f);
    print_message("# held the remote %llu ms, then %llu ms\n", (unsigned long long)first,
                  (unsigned long long)second);
    assert_true(first >= 4000);
    assert_true(second < 1500);
    reconnect(f);
}

/* The next client finds the device as after a reset, with no memory mapped. */
static void test_next_client_gets_a_fresh_device(void **state)
{
    struct fixture *f = *state;

    negotiate(f);
    enable_bar0(f);
    wr32(f, 0, TESTDEV_REG_SCRATCH, 0x5a5a);
    assert_int_equal(rd32(f, 0, TESTDEV_REG_SCRATCH), 0x5a5a);
    reconnect(f);
    assert_int_equal(rd32(f, VFIO_PCI_CONFIG_REGION, PCI_BASE_ADDRESS_0), 0);
    enable_bar0(f);
    assert_int_equal(rd32(f, 0, TESTDEV_REG_SCRATCH), 0);
}

/* One client at a time: a second one is answered once the first has gone. */
static void test_second_client_waits_its_turn(void **state)
{
    struct fixture *f = *state;
    int first = f->sock;
    struct pollfd p;

    negotiate(f);
    f->sock = connect_to(f->path);
    {
        struct vfio_user_version v = { 0, 0 };

        send_raw(f, VFIO_USER_VERSION, 0, &v, sizeof(v), NULL, 0, NULL, 0);
    }
    p = (struct pollfd){ .fd = f->sock, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 200), 0);      /* not served yet */
    close(first);
    assert_int_equal(poll(&p, 1, 5000), 1);
    {
        struct vfio_user_msg m;

        assert_int_equal(receive(f, &m), VFIO_USER_READ_MSG);
        assert_int_equal(m.hdr.cmd, VFIO_USER_VERSION);
        assert_false(m.hdr.flags & VFIO_USER_F_ERROR);
    }
    expect_alive(f);
}

/*
 * The remote's line of counts whose text starts with 'prefix', waiting up
 * to 5 s for it: the rest of that line, its end cut off, or NULL.
 */
static const char *logged_line(struct fixture *f, const char *prefix)
{
    static char buf[65536];

    for (int i = 0; i < 500; i++) {
        ssize_t n = pread(f->log, buf, sizeof(buf) - 1, 0);
        char *at, *end;

        assert_true(n >= 0);
        buf[n] = '\0';
        if ((at = strstr(buf, prefix)) && (end = strchr(at, '\n'))) {
            *end = '\0';
            return at;
        }
        usleep(10000);
    }
    return NULL;
}

/* A 4-byte write to BAR 0 with VFIO_USER_F_NO_REPLY: no answer comes. */
static void posted_wr32(struct fixture *f, uint64_t reg, uint32_t v)
{
    struct vfio_user_region_access a = { .offset = reg, .region = 0, .count = 4 };

    send_raw(f, VFIO_USER_REGION_WRITE, VFIO_USER_F_COMMAND | VFIO_USER_F_NO_REPLY, &a,
             sizeof(a), &v, sizeof(v), NULL, 0);
}

/* One DMA of 64 bytes from memory mapped without an fd: one DMA_READ of ours. */
static void dma_through_one_message(struct fixture *f)
{
    struct vfio_user_dma_map map = { .argsz = sizeof(map), .addr = RAM_GPA, .size = RAM_SIZE,
                                     .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE };
    struct vfio_user_dma_unmap unmap = { .argsz = sizeof(unmap), .addr = RAM_GPA,
                                         .size = RAM_SIZE };
    const uint32_t from_guest = TESTDEV_DMA_FROM_GUEST;
    uint64_t addr = RAM_GPA;
    struct vfio_user_msg m;
    uint8_t buf[256];
    size_t len = 0;
    uint16_t id;

    assert_int_equal(request(f, VFIO_USER_DMA_MAP, &map, sizeof(map), NULL, 0, NULL, 0, NULL), 0);
    assert_int_equal(region_rw(f, true, 0, TESTDEV_REG_DMA_ADDR, 8, &addr), 0);
    wr32(f, 0, TESTDEV_REG_DMA_LEN, 64);
    id = bar0_frame(f, buf, &len, TESTDEV_REG_DMA_CMD, &from_guest);
    send_frames(f, buf, len);
    len = 0;
    dma_read_reply_frame(buf, &len, expect_dma_read(f, RAM_GPA, 64), RAM_GPA, 64, 0x11);
    send_frames(f, buf, len);
    expect_reply(f, id, VFIO_USER_REGION_WRITE, &m);
    assert_int_equal(rd32(f, 0, TESTDEV_REG_DMA_COUNT), 1);
    assert_int_equal(request(f, VFIO_USER_DMA_UNMAP, &unmap, sizeof(unmap), NULL, 0, NULL, 0,
                             NULL), 0);
}

/* Two interrupts, one unmask through the eventfd and one by message. */
static void two_interrupts(struct fixture *f)
{
    int trigger = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int unmask = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct vfio_user_irq_set set = { .argsz = sizeof(set), .index = VFIO_PCI_INTX_IRQ,
        .count = 1, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK };
    uint64_t one = 1;

    set_intx_eventfd(f, VFIO_IRQ_SET_ACTION_TRIGGER, trigger);
    set_intx_eventfd(f, VFIO_IRQ_SET_ACTION_UNMASK, unmask);
    wr32(f, 0, TESTDEV_REG_IRQ_MASK, TESTDEV_IRQ_SOFT);
    wr32(f, 0, TESTDEV_REG_IRQ_RAISE, TESTDEV_IRQ_SOFT);
    assert_true(fired(trigger, 2000));
    assert_int_equal(write(unmask, &one, sizeof(one)), sizeof(one));
    assert_true(fired(trigger, 2000));          /* still high */
    wr32(f, 0, TESTDEV_REG_IRQ_STATUS, TESTDEV_IRQ_SOFT);
    assert_int_equal(request(f, VFIO_USER_DEVICE_SET_IRQS, &set, sizeof(set), NULL, 0, NULL, 0,
                             NULL), 0);
    close(trigger);
    close(unmask);
}

/*
 * Per client, the remote logs what it served and signalled when the client
 * leaves, and at shutdown for the one still connected: exactly the
 * messages of each kind the client sent.
 */
static void test_counts_logged_per_client(void **state)
{
    struct fixture *f = *state;
    const char *line;
    uint32_t v;

    negotiate(f);                                       /* other 1 */
    enable_bar0(f);                                     /* waited 2 */
    for (int i = 0; i < 3; i++) {
        wr32(f, 0, TESTDEV_REG_SCRATCH, (uint32_t)i);   /* waited 5 */
    }
    posted_wr32(f, TESTDEV_REG_SCRATCH, 7);
    posted_wr32(f, TESTDEV_REG_SCRATCH, 8);             /* posted 2 */
    assert_int_equal(rd32(f, 0, TESTDEV_REG_SCRATCH), 8);   /* read 1 */
    dma_through_one_message(f);     /* map 1, waited 8, read 2, unmap 1, dma_read_req 1 */
    two_interrupts(f);              /* set_irqs 2, waited 11, signals 2, unmask fd 1, msg 1 */
    assert_int_equal(region_rw(f, false, 0, TESTDEV_BAR0_SIZE, 4, &v), EINVAL); /* read 3 */
    connect_again(f);
    line = logged_line(f, "vfio-user-counts event=disconnect client=1 ");
    assert_non_null(line);
    assert_string_equal(line, "vfio-user-counts event=disconnect client=1 msgs=22 "
                        "region_read=3 region_write_waited=11 region_write_posted=2 "
                        "dma_map=1 dma_unmap=1 irq_unmask_msg=1 set_irqs=2 other=1 refused=1 "
                        "irq_unmask_fd=1 intx_signals=2 dma_read_req=1 dma_write_req=0");

    negotiate(f);
    expect_alive(f);
    stop(f);
    line = logged_line(f, "vfio-user-counts event=shutdown client=2 ");
    assert_non_null(line);
    assert_string_equal(line, "vfio-user-counts event=shutdown client=2 msgs=2 "
                        "region_read=1 region_write_waited=0 region_write_posted=0 "
                        "dma_map=0 dma_unmap=0 irq_unmask_msg=0 set_irqs=0 other=1 refused=0 "
                        "irq_unmask_fd=0 intx_signals=0 dma_read_req=0 dma_write_req=0");
}

static void test_random_frames(void **state)
{
    struct fixture *f = *state;
    unsigned seed = 12345;

    negotiate(f);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 15; i++) {
            uint8_t frame[96];
            struct vfio_user_hdr *h = (struct vfio_user_hdr *)frame;

            for (size_t j = 0; j < sizeof(frame); j++) {
                frame[j] = (uint8_t)rand_r(&seed);
            }
            /* Mostly plausible headers, so the bodies get looked at too. */
            h->cmd = (uint16_t)(rand_r(&seed) % 16);
            h->flags = rand_r(&seed) % 4 ? 0 : h->flags;
            h->size = rand_r(&seed) % 4 ? (uint32_t)(16 + rand_r(&seed) % 80) : h->size;
            if (send(f->sock, frame, sizeof(frame), MSG_NOSIGNAL) < 0) {
                break;
            }
        }
        reconnect(f);       /* negotiates again and checks the device answers */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_negotiation_and_device_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_before_version_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_version_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests_get_error_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_framing_errors_close_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_intx_is_automasked_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intx_message_unmask_waits_for_the_handler, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_intx_eventfds_made_blocking_by_the_client, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dma_through_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_during_a_dma_wait_are_served_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_that_never_answers_dma, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_client_gets_a_fresh_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_client_waits_its_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_logged_per_client, setup_logged, teardown),
        cmocka_unit_test_setup_teardown(test_random_frames, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
