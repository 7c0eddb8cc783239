// SPDX-License-Identifier: GPL-2.0-or-later
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "proto/mpqemu-wire.h"

static bool want_vfio_user(void)
{
    const char *t = getenv("MPQEMU_TRANSPORT");

    return t && !strcmp(t, "vfio-user");
}

/* The id of the first PCI device in the arguments. */
static const char *pci_device_id(const char *const *args)
{
    for (size_t i = 0; args[i] && args[i + 1]; i++) {
        const char *id = strstr(args[i + 1], ",id=");

        if (!strcmp(args[i], "-device") && id &&
            (!strncmp(args[i + 1], "lsi53c895a,", 11) ||
             !strncmp(args[i + 1], "mpqemu-testdev,", 15))) {
            return id + 4;
        }
    }
    fail_msg("no PCI device among the remote's arguments");
    return NULL;
}

static void start_vfio_user(struct remote *r, const char **argv, size_t n)
{
    static char object[160];
    char *err = NULL;
    const char *id = pci_device_id(argv + 1);
    size_t id_len = strcspn(id, ",");

    snprintf(object, sizeof(object),
             "x-vfio-user-server,id=vu0,device=%.*s,socket.type=unix,socket.path={socket}",
             (int)id_len, id);
    argv[n++] = "-object";
    argv[n++] = object;
    argv[n] = NULL;
    r->vfio_user = true;
    if (mpq_remote_start(&r->vu, (char *const *)argv, 10000, &err) < 0) {
        fail_msg("start: %s", err);
    }
    r->pid = r->vu.pid;
}

const char *confined_remote(void)
{
    const char *binary = getenv("MPQEMU_REMOTE_BINARY");

    return binary ? binary : getenv("MPQEMU_REMOTE");
}

static void start_binary(struct remote *r, const char *binary, size_t nsocks,
                         const char *const *args)
{
    const char *argv[34];
    size_t n = 0;
    char *err = NULL;
    bool vfio_user = want_vfio_user();

    memset(r, 0, sizeof(*r));
    argv[n++] = binary;
    assert_non_null(argv[0]);
    for (; *args && n < 31; args++) {
        if (!(vfio_user && !strcmp(*args, "{fd}"))) {
            argv[n++] = *args;
        }
    }
    argv[n] = NULL;
    if (vfio_user) {
        start_vfio_user(r, argv, n);
        return;
    }
    r->pid = mpq_spawn((char *const *)argv, nsocks, r->socks, &err);
    if (r->pid < 0) {
        fail_msg("spawn: %s", err);
    }
}

void remote_start(struct remote *r, size_t nsocks, const char *const *args)
{
    start_binary(r, getenv("MPQEMU_REMOTE"), nsocks, args);
}

void remote_start_confined(struct remote *r, size_t nsocks, const char *const *args)
{
    start_binary(r, confined_remote(), nsocks, args);
}

int remote_expect_exit(struct remote *r)
{
    int status = 0;

    if (r->vfio_user) {
        r->vu.dev = NULL;       /* the test closed it */
        assert_int_equal(mpq_remote_stop(&r->vu, 10000, &status), 0);
        if (WIFSIGNALED(status)) {
            fail_msg("remote died by signal %d", WTERMSIG(status));
        }
        return WEXITSTATUS(status);
    }
    assert_int_equal(mpq_reap(r->pid, 10000, &status), 0);
    if (WIFSIGNALED(status)) {
        fail_msg("remote died by signal %d", WTERMSIG(status));
    }
    return WEXITSTATUS(status);
}

struct mpq_dev *remote_connect(struct remote *r, size_t i, struct mpq_ram *ram)
{
    char *err = NULL;
    struct mpq_dev *d = r->vfio_user ? r->vu.dev : mpq_open_mpqemu(r->socks[i], &err);

    if (!d || mpq_map_ram(d, ram, 1, &err) < 0 || mpq_intx_enable(d, &err) < 0 ||
        mpq_reset(d, &err) < 0 || mpq_probe(d, NULL, &err) < 0) {
        fail_msg("connect: %s", err);
    }
    return d;
}

void raw_send(int sock, int32_t cmd, uint64_t size, const void *payload, size_t len,
              const int *fds, size_t nfds)
{
    struct mpqemu_hdr h = { .cmd = cmd, .size = size };
    struct iovec iov[2] = {
        { .iov_base = &h, .iov_len = sizeof(h) },
        { .iov_base = (void *)payload, .iov_len = len },
    };

    assert_int_equal(sock_send_all(sock, iov, 2, fds, nfds), 0);
}

uint64_t raw_ret(int sock)
{
    struct mpqemu_reader rd;
    struct mpqemu_msg m;
    struct pollfd pfd = { .fd = sock, .events = POLLIN };

    mpqemu_reader_init(&rd);
    for (;;) {
        int r = mpqemu_reader_read(&rd, sock, &m, NULL);

        if (r == MPQEMU_READ_MSG) {
            assert_int_equal(mpqemu_check_reply(&m, NULL), 0);
            return m.hdr.size ? m.data.u64 : 0;
        }
        assert_int_equal(r, MPQEMU_READ_AGAIN);
        assert_int_equal(poll(&pfd, 1, 5000), 1);
    }
}

uint32_t raw_config_read(int sock, uint32_t addr, int32_t len)
{
    struct mpqemu_pci_conf c = { .addr = addr, .len = len };

    raw_send(sock, MPQEMU_CMD_PCI_CFGREAD, sizeof(c), &c, sizeof(c), NULL, 0);
    return (uint32_t)raw_ret(sock);
}

void raw_config_write(int sock, uint32_t addr, uint32_t val, int32_t len)
{
    struct mpqemu_pci_conf c = { .addr = addr, .val = val, .len = len };

    raw_send(sock, MPQEMU_CMD_PCI_CFGWRITE, sizeof(c), &c, sizeof(c), NULL, 0);
    raw_ret(sock);
}

void raw_bar_write(int sock, bool memory, uint64_t addr, uint64_t val, uint32_t size)
{
    struct mpqemu_bar_access a = { .addr = addr, .val = val, .size = size, .memory = memory };

    raw_send(sock, MPQEMU_CMD_BAR_WRITE, sizeof(a), &a, sizeof(a), NULL, 0);
    raw_ret(sock);
}

/* One line of QMP, its newline dropped. */
static void qmp_line(int fd, char *line, size_t size)
{
    size_t n = 0;

    for (;;) {
        char c;
        struct pollfd p = { .fd = fd, .events = POLLIN };

        assert_int_equal(poll(&p, 1, 5000), 1);
        assert_int_equal(read(fd, &c, 1), 1);
        if (c == '\n') {
            break;
        }
        assert_true(n + 1 < size);
        line[n++] = c;
    }
    line[n] = 0;
}

void qmp_socket_command(int fd, const char *cmd, char *reply, size_t size)
{
    assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    do {
        qmp_line(fd, reply, size);      /* events come between */
    } while (!strstr(reply, "\"return\"") && !strstr(reply, "\"error\""));
}

int qmp_socket_open(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char line[512];

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    qmp_line(fd, line, sizeof(line));                       /* greeting */
    qmp_socket_command(fd, "{\"execute\":\"qmp_capabilities\"}\n", line, sizeof(line));
    return fd;
}
