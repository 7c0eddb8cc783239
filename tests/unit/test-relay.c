// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The keeper's relay over socket pairs, the test playing both the VMM and
 * the device process: requests and answers go through, the journal sends
 * again what a dead device process left unanswered, after the session;
 * vfio-user ids are the keeper's each way; a reply for a process that died
 * is dropped; what breaks the protocol is refused.  And the checkpoint:
 * areas found again, a corrupt one started afresh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/mpqemu-wire.h"
#include "proto/relay.h"
#include "proto/vfio-user-wire.h"
#include "util/checkpoint.h"

struct harness {
    struct loop *loop;
    struct loop_bh quit_bh;
    struct relay_link link;
    int vmm, dev;               /* the test's ends */
    int faults, device_closes, vmm_closes;
    bool vmm_error;
};

static void on_fault(struct relay_link *l, const char *why)
{
    (void)why;
    ((struct harness *)l->opaque)->faults++;
}

static void on_device_closed(struct relay_link *l)
{
    ((struct harness *)l->opaque)->device_closes++;
}

static void on_vmm_closed(struct relay_link *l, bool error)
{
    struct harness *h = l->opaque;

    h->vmm_closes++;
    h->vmm_error = error;
}

static const struct relay_events events = {
    .device_fault = on_fault, .device_closed = on_device_closed, .vmm_closed = on_vmm_closed,
};

static void quit(void *opaque)
{
    loop_quit(((struct harness *)opaque)->loop, 0);
}

/* Lets the relay handle what is ready, a few rounds (both hops). */
static void pump(struct harness *h)
{
    for (int i = 0; i < 4; i++) {
        loop_bh_schedule(h->loop, &h->quit_bh);
        loop_run(h->loop);
    }
}

static int pair(int *ours)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    *ours = sv[0];
    return sv[1];
}

static void attach_device(struct harness *h)
{
    assert_int_equal(relay_attach_device(&h->link, pair(&h->dev)), 0);
}

static struct harness *start(const struct relay_proto *proto)
{
    struct harness *h = calloc(1, sizeof(*h));

    h->loop = loop_new();
    loop_bh_init(&h->quit_bh, quit, h);
    relay_link_init(&h->link, proto, h->loop, "t0", &events, h);
    assert_int_equal(relay_attach_vmm(&h->link, pair(&h->vmm)), 0);
    attach_device(h);
    return h;
}

static int teardown(void **state)
{
    struct harness *h = *state;

    relay_link_free(&h->link);
    close(h->vmm);
    if (h->dev >= 0) {
        close(h->dev);
    }
    loop_bh_cancel(h->loop, &h->quit_bh);
    loop_free(h->loop);
    free(h);
    return 0;
}

static bool readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };

    return poll(&p, 1, 0) > 0;
}

/* The device process dies: its socket closes, the relay keeps the journal. */
static void kill_device(struct harness *h)
{
    close(h->dev);
    h->dev = -1;
    relay_detach_device(&h->link);
}

/* --- multi-process --------------------------------------------------------------- */

static void mp_send(int sock, enum mpqemu_cmd cmd, uint32_t addr, const int *fds, size_t nfds)
{
    struct mpqemu_msg m;

    mpqemu_msg_init(&m, cmd, cmd == MPQEMU_CMD_SYNC_SYSMEM ? sizeof(m.data.sysmem)
                             : cmd == MPQEMU_CMD_SET_IRQFD ? 0 : sizeof(m.data.conf));
    if (cmd == MPQEMU_CMD_SYNC_SYSMEM) {
        m.data.sysmem.sizes[0] = 4096;
    } else if (cmd != MPQEMU_CMD_SET_IRQFD) {
        m.data.conf = (struct mpqemu_pci_conf){ .addr = addr, .len = 4 };
    }
    if (nfds) {
        memcpy(m.fds, fds, nfds * sizeof(int));
    }
    m.nfds = nfds;
    assert_int_equal(mpqemu_send(sock, &m), 0);
}

static struct mpqemu_msg mp_read(int sock)
{
    struct mpqemu_reader r;
    struct mpqemu_msg m;

    mpqemu_reader_init(&r);
    assert_true(readable(sock));
    assert_int_equal(mpqemu_reader_read(&r, sock, &m, NULL), MPQEMU_READ_MSG);
    return m;
}

static void mp_ret(int sock, uint64_t value)
{
    struct mpqemu_msg m;

    mpqemu_msg_init(&m, MPQEMU_CMD_RET, 8);
    m.data.u64 = value;
    assert_int_equal(mpqemu_send(sock, &m), 0);
}

static int setup_mpqemu(void **state)
{
    *state = start(&mpqemu_relay_proto);
    return 0;
}

static void test_mpqemu_requests_and_answers(void **state)
{
    struct harness *h = *state;
    struct mpqemu_msg m;

    mp_send(h->vmm, MPQEMU_CMD_PCI_CFGREAD, 0x10, NULL, 0);
    mp_send(h->vmm, MPQEMU_CMD_PCI_CFGREAD, 0x14, NULL, 0);
    pump(h);
    assert_int_equal(mp_read(h->dev).data.conf.addr, 0x10);
    assert_int_equal(mp_read(h->dev).data.conf.addr, 0x14);
    mp_ret(h->dev, 1);
    mp_ret(h->dev, 2);
    pump(h);
    m = mp_read(h->vmm);
    assert_int_equal(m.hdr.cmd, MPQEMU_CMD_RET);
    assert_int_equal(m.data.u64, 1);
    assert_int_equal(mp_read(h->vmm).data.u64, 2);
    assert_false(readable(h->vmm));
    assert_int_equal(h->faults, 0);
}

/* The session first (memory, interrupts, with fds), then what was not answered, in order. */
static void test_mpqemu_journal_after_death(void **state)
{
    struct harness *h = *state;
    int mem = memfd_create("ram", MFD_CLOEXEC), irq[2] = { eventfd(0, 0), eventfd(0, 0) };
    struct mpqemu_msg m;

    assert_int_equal(ftruncate(mem, 4096), 0);
    mp_send(h->vmm, MPQEMU_CMD_SYNC_SYSMEM, 0, &mem, 1);
    mp_send(h->vmm, MPQEMU_CMD_SET_IRQFD, 0, irq, 2);
    mp_send(h->vmm, MPQEMU_CMD_PCI_CFGREAD, 0x10, NULL, 0);
    mp_send(h->vmm, MPQEMU_CMD_PCI_CFGREAD, 0x14, NULL, 0);
    pump(h);
    for (int i = 0; i < 4; i++) {
        close_fds(mp_read(h->dev).fds, 0);
    }
    mp_ret(h->dev, 1);              /* the first is answered, then the process dies */
    pump(h);
    kill_device(h);
    mp_send(h->vmm, MPQEMU_CMD_PCI_CFGREAD, 0x18, NULL, 0);    /* while it is down */
    pump(h);
    attach_device(h);
    pump(h);
    m = mp_read(h->dev);
    assert_int_equal(m.hdr.cmd, MPQEMU_CMD_SYNC_SYSMEM);
    assert_int_equal(m.nfds, 1);
    close_fds(m.fds, m.nfds);
    m = mp_read(h->dev);
    assert_int_equal(m.hdr.cmd, MPQEMU_CMD_SET_IRQFD);
    assert_int_equal(m.nfds, 2);
    close_fds(m.fds, m.nfds);
    assert_int_equal(mp_read(h->dev).data.conf.addr, 0x14);
    assert_int_equal(mp_read(h->dev).data.conf.addr, 0x18);
    assert_false(readable(h->dev));
    mp_ret(h->dev, 2);
    mp_ret(h->dev, 3);
    pump(h);
    assert_int_equal(mp_read(h->vmm).data.u64, 1);
    assert_int_equal(mp_read(h->vmm).data.u64, 2);
    assert_int_equal(mp_read(h->vmm).data.u64, 3);
    assert_false(readable(h->vmm));
    close(mem);
    close(irq[0]);
    close(irq[1]);
}

/* An answer the dead process sent before it died is not asked again. */
static void test_mpqemu_answer_left_by_the_dead(void **state)
{
    struct harness *h = *state;

    mp_send(h->vmm, MPQEMU_CMD_PCI_CFGREAD, 0x10, NULL, 0);
    pump(h);
    mp_read(h->dev);
    mp_ret(h->dev, 7);
    kill_device(h);                 /* before the relay read the answer */
    attach_device(h);
    pump(h);
    assert_false(readable(h->dev));
    assert_int_equal(mp_read(h->vmm).data.u64, 7);
}

static void test_mpqemu_ret_for_nothing_is_a_fault(void **state)
{
    struct harness *h = *state;

    mp_ret(h->dev, 1);
    pump(h);
    assert_int_equal(h->faults, 1);
}

static void test_mpqemu_bad_vmm_message_closes_it(void **state)
{
    struct harness *h = *state;
    struct mpqemu_hdr bad = { .cmd = 99 };

    assert_int_equal(write(h->vmm, &bad, sizeof(bad)), (ssize_t)sizeof(bad));
    pump(h);
    assert_int_equal(h->vmm_closes, 1);
    assert_true(h->vmm_error);
}

/* --- vfio-user ----------------------------------------------------------------------- */

static void vu_send(int sock, uint16_t id, uint16_t cmd, uint32_t flags, const void *body,
                    size_t len, const int *fds, size_t nfds)
{
    struct vfio_user_hdr hdr = { .id = id, .cmd = cmd, .flags = flags,
                                 .size = (uint32_t)(sizeof(hdr) + len) };
    struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { (void *)body, len } };

    assert_int_equal(sock_send_all(sock, iov, 2, fds, nfds), 0);
}

static struct vfio_user_hdr vu_read(int sock)
{
    struct vfio_user_reader r;
    struct vfio_user_msg m;
    struct vfio_user_hdr h;

    vfio_user_reader_init(&r);
    assert_true(readable(sock));
    assert_int_equal(vfio_user_reader_read(&r, sock, &m, NULL), VFIO_USER_READ_MSG);
    close_fds(m.fds, m.nfds);
    h = m.hdr;
    vfio_user_reader_free(&r);
    return h;
}

static void vu_reply(int sock, const struct vfio_user_hdr *req)
{
    vu_send(sock, req->id, req->cmd, VFIO_USER_F_REPLY, NULL, 0, NULL, 0);
}

static int setup_vfio_user(void **state)
{
    *state = start(&vfio_user_relay_proto);
    return 0;
}

static void test_vfio_user_ids_each_way(void **state)
{
    struct harness *h = *state;
    struct vfio_user_region_access a = { .region = 7, .count = 4 };
    struct vfio_user_dma_access dma = { .addr = 0x1000, .count = 4 };
    struct vfio_user_hdr req, dev_req;

    vu_send(h->vmm, 500, VFIO_USER_REGION_READ, 0, &a, sizeof(a), NULL, 0);
    pump(h);
    req = vu_read(h->dev);
    assert_int_not_equal(req.id, 500);      /* the keeper's id towards the device */
    /* The device asks something of its own meanwhile. */
    vu_send(h->dev, 500, VFIO_USER_DMA_READ, 0, &dma, sizeof(dma), NULL, 0);
    vu_reply(h->dev, &req);
    pump(h);
    dev_req = vu_read(h->vmm);
    assert_int_equal(dev_req.cmd, VFIO_USER_DMA_READ);
    assert_int_equal(vu_read(h->vmm).id, 500);      /* the answer under the VMM's id */
    vu_reply(h->vmm, &dev_req);
    pump(h);
    assert_int_equal(vu_read(h->dev).id, 500);      /* under the device's */
    /* A posted write the device may not have read when it died: sent again. */
    vu_send(h->vmm, 501, VFIO_USER_REGION_WRITE, VFIO_USER_F_NO_REPLY, &a, sizeof(a), NULL, 0);
    pump(h);
    assert_int_equal(vu_read(h->dev).cmd, VFIO_USER_REGION_WRITE);
    kill_device(h);
    attach_device(h);
    pump(h);
    assert_int_equal(vu_read(h->dev).cmd, VFIO_USER_REGION_WRITE);
    /* One followed by an answered request was read: not sent again. */
    vu_send(h->vmm, 502, VFIO_USER_REGION_READ, 0, &a, sizeof(a), NULL, 0);
    pump(h);
    req = vu_read(h->dev);
    vu_reply(h->dev, &req);
    pump(h);
    assert_int_equal(vu_read(h->vmm).id, 502);
    kill_device(h);
    attach_device(h);
    pump(h);
    assert_false(readable(h->dev));
    assert_int_equal(h->faults, 0);
}

/* VERSION, maps and eventfds again, answers swallowed; then the journal; dead replies dropped. */
static void test_vfio_user_session_after_death(void **state)
{
    struct harness *h = *state;
    struct vfio_user_version v = { 0 };
    struct vfio_user_dma_map map = { .argsz = sizeof(map), .flags = 3, .size = 4096 };
    struct vfio_user_irq_set irq = { .argsz = sizeof(irq), .count = 1,
                                     .flags = VFIO_IRQ_SET_DATA_EVENTFD |
                                              VFIO_IRQ_SET_ACTION_TRIGGER };
    struct vfio_user_region_access a = { .region = 7, .count = 4 };
    struct vfio_user_dma_access dma = { .addr = 0x1000, .count = 4 };
    int mem = memfd_create("ram", MFD_CLOEXEC), efd = eventfd(0, 0);
    struct vfio_user_hdr req, dev_req;

    vu_send(h->vmm, 1, VFIO_USER_VERSION, 0, &v, sizeof(v), NULL, 0);
    vu_send(h->vmm, 2, VFIO_USER_DMA_MAP, 0, &map, sizeof(map), &mem, 1);
    vu_send(h->vmm, 3, VFIO_USER_DEVICE_SET_IRQS, 0, &irq, sizeof(irq), &efd, 1);
    pump(h);
    for (int i = 0; i < 3; i++) {
        req = vu_read(h->dev);
        vu_reply(h->dev, &req);
    }
    pump(h);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(vu_read(h->vmm).id, i);
    }
    vu_send(h->vmm, 4, VFIO_USER_REGION_READ, 0, &a, sizeof(a), NULL, 0);
    pump(h);
    vu_read(h->dev);
    vu_send(h->dev, 9, VFIO_USER_DMA_READ, 0, &dma, sizeof(dma), NULL, 0);
    pump(h);
    dev_req = vu_read(h->vmm);
    kill_device(h);
    vu_reply(h->vmm, &dev_req);             /* for the dead process: dropped */
    pump(h);
    attach_device(h);
    pump(h);
    assert_int_equal((req = vu_read(h->dev)).cmd, VFIO_USER_VERSION);
    vu_reply(h->dev, &req);
    assert_int_equal((req = vu_read(h->dev)).cmd, VFIO_USER_DMA_MAP);
    vu_reply(h->dev, &req);
    assert_int_equal((req = vu_read(h->dev)).cmd, VFIO_USER_DEVICE_SET_IRQS);
    vu_reply(h->dev, &req);
    assert_int_equal((req = vu_read(h->dev)).cmd, VFIO_USER_REGION_READ);
    assert_false(readable(h->dev));
    vu_reply(h->dev, &req);
    pump(h);
    assert_int_equal(vu_read(h->vmm).id, 4);        /* one answer; the replays' swallowed */
    assert_false(readable(h->vmm));
    assert_int_equal(h->faults, 0);
    close(mem);
    close(efd);
}

static void test_vfio_user_reply_to_nothing(void **state)
{
    struct harness *h = *state;
    struct vfio_user_hdr fake = { .id = 77, .cmd = VFIO_USER_DMA_READ };

    vu_reply(h->dev, &fake);
    pump(h);
    assert_int_equal(h->faults, 1);
    vu_reply(h->vmm, &fake);
    pump(h);
    assert_int_equal(h->vmm_closes, 1);
    assert_true(h->vmm_error);
}

/* --- hostile bytes on both sides ------------------------------------------------------ */

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* A header of the protocol's shape (often plausible), then random bytes. */
static void send_noise(int sock, bool vfio_user, uint64_t *rng)
{
    uint8_t buf[256];
    size_t len = 16 + next_random(rng) % 64;

    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)next_random(rng);
    }
    if (vfio_user) {
        struct vfio_user_hdr h = { .id = (uint16_t)(next_random(rng) % 4),
                                   .cmd = (uint16_t)(next_random(rng) % 14),
                                   .flags = (next_random(rng) % 4 == 0 ? VFIO_USER_F_REPLY : 0) |
                                            (next_random(rng) % 3 == 0 ? VFIO_USER_F_NO_REPLY : 0),
                                   .size = (uint32_t)len };
        memcpy(buf, &h, sizeof(h));
    } else {
        struct mpqemu_hdr h = { .cmd = (int32_t)(next_random(rng) % 9),
                                .size = next_random(rng) % 3 ? 12 : next_random(rng) % 200 };
        memcpy(buf, &h, sizeof(h));
        len = sizeof(h) + (h.size < sizeof(buf) - sizeof(h) ? h.size : 0);
    }
    if (send(sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        return;     /* the relay stopped reading or closed: fine */
    }
}

/* Whatever either side sends, the relay neither crashes nor grows without bound. */
static void random_streams(const struct relay_proto *proto, bool vfio_user)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;

    for (int round = 0; round < 40; round++) {
        struct harness *h = start(proto);
        char sink[4096];

        for (int i = 0; i < 30 && relay_vmm_connected(&h->link); i++) {
            switch (next_random(&rng) % 5) {
            case 0:
            case 1:
                send_noise(h->vmm, vfio_user, &rng);
                break;
            case 2:
                if (h->dev >= 0) {
                    send_noise(h->dev, vfio_user, &rng);
                }
                break;
            case 3:
                if (h->dev >= 0 && relay_device_attached(&h->link)) {
                    kill_device(h);
                } else if (!relay_device_attached(&h->link)) {
                    if (h->dev >= 0) {
                        close(h->dev);
                    }
                    attach_device(h);
                }
                break;
            default:
                while (h->dev >= 0 && recv(h->dev, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
                }
                while (recv(h->vmm, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
                }
                break;
            }
            pump(h);
        }
        teardown((void **)&h);
    }
}

static void test_mpqemu_random_streams(void **state)
{
    (void)state;
    random_streams(&mpqemu_relay_proto, false);
}

static void test_vfio_user_random_streams(void **state)
{
    (void)state;
    random_streams(&vfio_user_relay_proto, true);
}

/* --- the checkpoint -------------------------------------------------------------------- */

static void test_checkpoint_areas_found_again(void **state)
{
    int fd = checkpoint_create_fd(NULL);
    bool restored;
    uint8_t *a, *b;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(checkpoint_open(fd, NULL), 0);
    a = checkpoint_area("t0/regs", 64, &restored);
    assert_false(restored);
    assert_non_null(a);
    memset(a, 0x5a, 64);
    assert_null(checkpoint_area("t0/huge", CHECKPOINT_MAX_AREA + 1, &restored));
    checkpoint_close();
    assert_int_equal(checkpoint_open(fd, NULL), 0);     /* the next process */
    b = checkpoint_area("t0/regs", 64, &restored);
    assert_true(restored);
    assert_int_equal(b[63], 0x5a);
    /* Another size is another layout: not reused. */
    checkpoint_release(b);
    b = checkpoint_area("t0/regs", 128, &restored);
    assert_false(restored);
    checkpoint_release(b);
    checkpoint_close();
    close(fd);
}

/* Opens the checkpoint, fills the 64-byte area 'name' with ones, closes it. */
static void fill_area(int fd, const char *name, bool was_there)
{
    bool restored;
    uint8_t *a;

    assert_int_equal(checkpoint_open(fd, NULL), 0);
    a = checkpoint_area(name, 64, &restored);
    assert_non_null(a);
    assert_int_equal(restored, was_there);
    memset(a, 1, 64);
    checkpoint_release(a);
    checkpoint_close();
}

/* The checkpoint opens as corrupt: no area restored, 'name' zeroed. */
static void assert_starts_afresh(int fd, const char *name)
{
    bool restored;
    uint8_t *a;

    assert_int_equal(checkpoint_open(fd, NULL), 0);
    assert_int_equal(checkpoint_restored_areas(), 0);
    a = checkpoint_area(name, 64, &restored);
    assert_false(restored);
    assert_int_equal(a[0], 0);
    checkpoint_release(a);
    checkpoint_close();
}

static void test_checkpoint_corrupt_starts_afresh(void **state)
{
    int fd = checkpoint_create_fd(NULL);
    uint64_t garbage[4] = { 1, UINT64_MAX, UINT64_MAX, UINT64_MAX };

    (void)state;
    fill_area(fd, "lsi0/regs", false);
    /* Entry 0's offset and size (after the 8-byte magic, version, count, size, used). */
    assert_int_equal(pwrite(fd, garbage, sizeof(garbage), 32 + 56), (ssize_t)sizeof(garbage));
    assert_starts_afresh(fd, "lsi0/regs");
    close(fd);
}

/*
 * The last area's offset past the end of the areas in use ('used'): a
 * compromised process's directory.  Each must start afresh, not hand out
 * memory outside the checkpoint (a huge offset) or past its areas.
 */
static void test_checkpoint_area_past_used_starts_afresh(void **state)
{
    const uint64_t offsets[] = { UINT64_MAX - 63, CHECKPOINT_SIZE + 4096,
                                 CHECKPOINT_SIZE - 64, 1 << 20 };
    int fd = checkpoint_create_fd(NULL);
    uint64_t used;

    (void)state;
    fill_area(fd, "t0/regs", false);
    /* The header's used (after magic, version, count, size) and entry 0's offset. */
    assert_int_equal(pread(fd, &used, sizeof(used), 24), (ssize_t)sizeof(used));
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        assert_true(offsets[i] > used);
        assert_int_equal(pwrite(fd, &offsets[i], sizeof(offsets[i]), 32 + 56),
                         (ssize_t)sizeof(offsets[i]));
        assert_starts_afresh(fd, "t0/regs");
        fill_area(fd, "t0/regs", true);     /* afresh, the area is where it was */
    }
    close(fd);
}

/*
 * A checkpoint whose directory or space a previous process filled: a
 * device whose area is not there still gets one (its own memory, zeroed),
 * so that the device process comes up; the area is not in the checkpoint.
 */
static void test_checkpoint_full_gives_own_memory(void **state)
{
    int fd = checkpoint_create_fd(NULL);
    char name[32];
    bool restored;
    uint8_t *a;

    (void)state;
    assert_int_equal(checkpoint_open(fd, NULL), 0);
    for (int i = 0; i < 128; i++) {        /* the directory's every entry */
        snprintf(name, sizeof(name), "x%d/regs", i);
        assert_non_null(checkpoint_area(name, 64, &restored));
    }
    checkpoint_close();
    for (int run = 0; run < 2; run++) {
        assert_int_equal(checkpoint_open(fd, NULL), 0);
        assert_int_equal(checkpoint_restored_areas(), 128);
        a = checkpoint_area("lsi0/regs", 64, &restored);
        assert_non_null(a);
        assert_false(restored);             /* not kept the first time either */
        assert_int_equal(a[0], 0);
        memset(a, 1, 64);
        checkpoint_release(a);
        checkpoint_close();
    }
    close(fd);

    /* The space: three areas of the most an area may be leave no room for a fourth. */
    fd = checkpoint_create_fd(NULL);
    assert_int_equal(checkpoint_open(fd, NULL), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "big%d", i);
        a = checkpoint_area(name, CHECKPOINT_MAX_AREA, &restored);
        assert_non_null(a);
        memset(a, 1, CHECKPOINT_MAX_AREA);
    }
    checkpoint_close();
    assert_int_equal(checkpoint_open(fd, NULL), 0);
    assert_int_equal(checkpoint_restored_areas(), 3);
    a = checkpoint_area("big3", CHECKPOINT_MAX_AREA, &restored);
    assert_false(restored);
    assert_int_equal(a[0], 0);
    checkpoint_release(a);
    checkpoint_close();
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mpqemu_requests_and_answers, setup_mpqemu,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mpqemu_journal_after_death, setup_mpqemu, teardown),
        cmocka_unit_test_setup_teardown(test_mpqemu_answer_left_by_the_dead, setup_mpqemu,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mpqemu_ret_for_nothing_is_a_fault, setup_mpqemu,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mpqemu_bad_vmm_message_closes_it, setup_mpqemu,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_vfio_user_ids_each_way, setup_vfio_user, teardown),
        cmocka_unit_test_setup_teardown(test_vfio_user_session_after_death, setup_vfio_user,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_vfio_user_reply_to_nothing, setup_vfio_user,
                                        teardown),
        cmocka_unit_test(test_mpqemu_random_streams),
        cmocka_unit_test(test_vfio_user_random_streams),
        cmocka_unit_test(test_checkpoint_areas_found_again),
        cmocka_unit_test(test_checkpoint_corrupt_starts_afresh),
        cmocka_unit_test(test_checkpoint_area_past_used_starts_afresh),
        cmocka_unit_test(test_checkpoint_full_gives_own_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
