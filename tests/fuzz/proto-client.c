// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto-client.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io/eventfd.h"
#include "io/sock-io.h"
#include "proto/server.h"

enum {
    /* Sends that find the socket full this many times in a row give up. */
    SEND_TRIES = 64,
    /* How many message fds a harness may attach. */
    MAX_FDS = 8,
};

static int ram_fd = -1;

static void gen_write(void *opaque, uint32_t addr, const void *data, size_t len);

void proto_client_init(struct proto_client *c, struct fuzz_vm *vm, struct fuzz_input *in,
                       int sock)
{
    c->vm = vm;
    c->sock = sock;
    c->inbox_len = 0;
    c->gen = (struct lsi_gen){ .in = in, .write = gen_write, .opaque = c };
    if (ram_fd < 0 && (ram_fd = memfd_create("fuzz-vmm-ram", MFD_CLOEXEC)) < 0) {
        fuzz_fail("memfd_create: %s", strerror(errno));
    }
    if (ftruncate(ram_fd, 0) < 0 || ftruncate(ram_fd, LSI_RAM_BYTES) < 0) {
        fuzz_fail("ftruncate: %s", strerror(errno));
    }
    c->ram = ram_fd;
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
}

void proto_client_close(struct proto_client *c)
{
    if (c->sock >= 0) {
        close(c->sock);
        c->sock = -1;
    }
}

/* --- fds ------------------------------------------------------------------ */

int proto_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (fd < 0) {
        fuzz_fail("eventfd: %s", strerror(errno));
    }
    return fd;
}

void proto_eventfd_meddle(int fd, unsigned how)
{
    static const uint64_t full = UINT64_MAX - 1;
    uint64_t count;
    struct iovec iov = { &count, sizeof(count) };

    if (fd < 0) {
        return;
    }
    switch (how % 3) {
    case 0:
        fcntl(fd, F_SETFL, 0);
        break;
    case 1:
        fcntl(fd, F_SETFL, O_NONBLOCK);
        break;
    default:
        /* Emptied first, so the write finds room: the server does not run meanwhile. */
        (void)!preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
        if (write(fd, &full, sizeof(full)) != (ssize_t)sizeof(full)) {
            fuzz_fail("eventfd write: %s", strerror(errno));
        }
        break;
    }
}

void proto_eventfd_signal(int fd)
{
    if (fd >= 0 && eventfd_signal(fd) < 0) {
        fuzz_fail("eventfd_signal: %s", strerror(errno));
    }
}

static int short_memfd(struct fuzz_input *in)
{
    static const uint64_t sizes[] = { 0, 1, 4096, 8192, 65536, LSI_RAM_BYTES / 2 };
    int fd = memfd_create("fuzz-short", MFD_CLOEXEC);

    if (fd < 0 || ftruncate(fd, (off_t)FI_PICK(in, sizes)) < 0) {
        fuzz_fail("memfd: %s", strerror(errno));
    }
    return fd;
}

static int one_fd(struct proto_client *c, struct fuzz_input *in)
{
    int p[2], fd;
    char path[FUZZ_PATH_MAX];

    switch (fi_u8(in) % 8) {
    case 0: case 1: case 2:
        return dup(c->ram);
    case 3:
        return short_memfd(in);
    case 4:
        return proto_eventfd();
    case 5:
        if (pipe2(p, O_CLOEXEC) < 0) {
            fuzz_fail("pipe: %s", strerror(errno));
        }
        close(p[1]);
        return p[0];
    case 6:
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return fd >= 0 ? fd : dup(c->ram);
    default:
        /* A regular file that is no memfd: the raw disk image, or the directory. */
        fuzz_scratch_path(path, fi_bool(in) ? "hd.raw" : ".");
        fd = openat(AT_FDCWD, path, O_RDWR | O_CLOEXEC);
        return fd >= 0 ? fd : openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    }
}

void proto_fds(struct proto_client *c, struct fuzz_input *in, int *fds, size_t max, size_t *n)
{
    size_t want = fi_u8(in) % (max + 1);

    *n = 0;
    while (*n < want) {
        int fd = one_fd(c, in);

        if (fd < 0) {
            fuzz_fail("making an fd: %s", strerror(errno));
        }
        fds[(*n)++] = fd;
    }
}

void proto_close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/* --- the socket ------------------------------------------------------------- */

/* Everything the server sent so far, cut into messages for the harness. */
static void read_output(struct proto_client *c)
{
    while (c->sock >= 0) {
        struct fd_bag bag = { 0 };
        ssize_t n = sock_recv(c->sock, c->inbox + c->inbox_len,
                              sizeof(c->inbox) - c->inbox_len, &bag, MSG_DONTWAIT);
        size_t len;

        if (n <= 0) {
            return;
        }
        c->inbox_len += (size_t)n;
        while (c->frame && (len = c->frame(c->inbox, c->inbox_len)) > 0) {
            if (c->received) {
                c->received(c, c->inbox, len);
            }
            memmove(c->inbox, c->inbox + len, c->inbox_len - len);
            c->inbox_len -= len;
        }
        /* A message larger than the inbox (a 1 MiB read): dropped, not framed. */
        if (c->inbox_len == sizeof(c->inbox) || !c->frame) {
            c->inbox_len = 0;
        }
    }
}

void proto_step(struct proto_client *c)
{
    fuzz_vm_step(c->vm);
    read_output(c);
}

void proto_settle(struct proto_client *c, unsigned max_rounds)
{
    for (unsigned i = 0; i < max_rounds; i++) {
        read_output(c);
        if (fuzz_vm_settle(c->vm, 1)) {
            break;
        }
    }
    read_output(c);
}

void proto_send(struct proto_client *c, const void *data, size_t len, const int *fds,
                size_t nfds)
{
    const uint8_t *p = data;
    unsigned tries = 0;

    while (len && c->sock >= 0 && tries < SEND_TRIES) {
        struct iovec iov = { (void *)p, len };
        ssize_t n = sock_send(c->sock, &iov, 1, fds, nfds, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return;     /* the server hung up */
        }
        if (n <= 0) {
            proto_step(c);
            tries++;
            continue;
        }
        p += n;
        len -= (size_t)n;
        nfds = 0;
        tries = 0;
    }
}

/* --- what both harnesses do ------------------------------------------------ */

/* Guest RAM is the memfd from offset 0: where the VMM mapped it, as the seeds do. */
static void gen_write(void *opaque, uint32_t addr, const void *data, size_t len)
{
    struct proto_client *c = opaque;
    off_t size = lseek(c->ram, 0, SEEK_END);

    if (addr >= LSI_RAM_BYTES || size <= (off_t)addr) {
        return;
    }
    len = len < (size_t)size - addr ? len : (size_t)size - addr;
    if (pwrite(c->ram, data, len, addr) < 0) {
        fuzz_fail("pwrite: %s", strerror(errno));
    }
}

uint32_t proto_common_op(struct proto_client *c, struct fuzz_input *in, unsigned op,
                         uint32_t *dsa)
{
    static const uint64_t sizes[] = { 0, 4096, 8192, 65536, LSI_RAM_BYTES };
    uint8_t buf[256];
    uint32_t code;
    size_t len;

    c->gen.in = in;
    *dsa = 0;
    switch ((enum proto_common_op)op) {
    case PROTO_OP_SCRIPT:
        code = lsi_gen_code_address(&c->gen) % LSI_RAM_BYTES;
        lsi_gen_script(&c->gen, code);
        return code;
    case PROTO_OP_RECIPE:
        code = lsi_gen_code_address(&c->gen) % LSI_RAM_BYTES;
        *dsa = lsi_gen_recipe(&c->gen, code);
        return code;
    case PROTO_OP_GUEST_BYTES:
        code = lsi_gen_address(&c->gen);
        len = 1 + fi_u8(in) % sizeof(buf);
        fi_bytes(in, buf, len);
        gen_write(c, code, buf, len);
        return 0;
    case PROTO_OP_TRUNCATE:
        if (ftruncate(c->ram, (off_t)FI_PICK(in, sizes)) < 0) {
            fuzz_fail("ftruncate: %s", strerror(errno));
        }
        return 0;
    case PROTO_OP_LOOP:
        proto_step(c);
        return 0;
    case PROTO_OP_SETTLE:
        proto_settle(c, 8);
        return 0;
    case PROTO_OP_COMMON:
        break;
    }
    return 0;
}

void proto_client_finish(struct proto_client *c, struct server *server)
{
    proto_settle(c, 8);
    proto_client_close(c);
    proto_settle(c, 2);
    fuzz_vm_quiesce(c->vm);
    server->ops->free(server);
}
