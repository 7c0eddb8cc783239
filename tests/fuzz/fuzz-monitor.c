// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A monitor session fed the input as its client's bytes: built as
 * fuzz-qmp (a QMP monitor: JSON, capabilities negotiation, commands) and
 * as fuzz-hmp (FUZZ_HMP: an HMP monitor, lines of text).  The monitor sits
 * on a Unix socket chardev in the harness's scratch directory, over the
 * harnesses' remote (fuzz-vm.h), so commands act on real devices and
 * drives: eject, blockdev-change-medium and change (files named by the
 * input, opened only in the scratch directory), block_resize,
 * system_reset, quit, the queries.
 *
 * The bytes go out in chunks whose sizes come from the input's first
 * byte, the loop running between them, and the client reading the
 * replies; the stream itself is untouched, so a dictionary's JSON and
 * command words stay whole.  A "quit" ends the input, as it ends the
 * process.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "fuzz-vm.h"
#include "monitor/monitor.h"

#ifdef FUZZ_HMP
#define QMP false
#else
#define QMP true
#endif

enum { MAX_CHUNK = 512, SETTLE_ROUNDS = 8 };

struct world {
    struct fuzz_vm vm;
    struct monitor *monitor;
    int sock;
    char path[FUZZ_PATH_MAX];
};

/*
 * Reads what the monitor answered, so that it never stops on a full
 * socket; MPQEMU_FUZZ_TRACE shows it.
 */
static void drain(struct world *w)
{
    static int trace = -1;
    char buf[4096];
    ssize_t n;

    if (trace < 0) {
        trace = getenv("MPQEMU_FUZZ_TRACE") != NULL;
    }
    while (w->sock >= 0 && (n = recv(w->sock, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        if (trace) {
            fwrite(buf, 1, (size_t)n, stderr);
        }
    }
}

static void step(struct world *w)
{
    fuzz_vm_step(&w->vm);
    drain(w);
}

static void connect_client(struct world *w)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };

    w->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (strlen(w->path) >= sizeof(a.sun_path)) {
        fuzz_fail("socket path too long: %s", w->path);
    }
    memcpy(a.sun_path, w->path, strlen(w->path) + 1);
    if (w->sock < 0 || connect(w->sock, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fuzz_fail("connect %s: %s", w->path, strerror(errno));
    }
    step(w);        /* accepted: the greeting or the banner */
}

/* Writes all of it, the loop running while the socket is full. */
static void send_chunk(struct world *w, const uint8_t *p, size_t len)
{
    for (unsigned tries = 0; len && tries < 64; tries++) {
        ssize_t n = send(w->sock, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return;     /* the monitor dropped us */
        }
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            tries = 0;
        }
        step(w);
    }
}

/* Chunk sizes: a small generator seeded by the input's first byte. */
static size_t next_chunk(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return 1 + (*state >> 16) % ((*state & 0x100) ? MAX_CHUNK : 16);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    char spec[FUZZ_PATH_MAX + 32], *err = NULL;
    uint32_t state = size ? data[0] : 0;

    fuzz_vm_start(&w.vm);
    fuzz_vm_firmware(&w.vm);
    fuzz_scratch_path(w.path, "monitor.sock");
    snprintf(spec, sizeof(spec), "unix:%s,server,nowait", w.path);
    w.monitor = monitor_new(w.vm.loop, &w.vm.mon, spec, QMP, &err);
    if (!w.monitor) {
        fuzz_fail("monitor_new %s: %s", spec, err);
    }
    connect_client(&w);
    for (size_t at = size ? 1 : 0; at < size && !w.vm.quit_requested && w.sock >= 0;) {
        size_t len = next_chunk(&state);

        len = len < size - at ? len : size - at;
        send_chunk(&w, data + at, len);
        at += len;
        step(&w);
    }
    for (unsigned i = 0; i < SETTLE_ROUNDS && !fuzz_vm_settle(&w.vm, 1); i++) {
        drain(&w);
    }
    drain(&w);
    close(w.sock);
    w.sock = -1;
    fuzz_vm_settle(&w.vm, SETTLE_ROUNDS);
    monitor_free(w.monitor);
    fuzz_vm_quiesce(&w.vm);
    fuzz_vm_destroy(&w.vm);
    return 0;
}
