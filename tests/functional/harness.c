// SPDX-License-Identifier: GPL-2.0-or-later
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <sys/wait.h>

#include "client/mpqemu-client.h"

void remote_start(struct remote *r, size_t nsocks, const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    char *err = NULL;

    argv[n++] = getenv("MPQEMU_REMOTE");
    assert_non_null(argv[0]);
    while (*args && n < 31) {
        argv[n++] = *args++;
    }
    argv[n] = NULL;
    r->pid = mpq_spawn((char *const *)argv, nsocks, r->socks, &err);
    if (r->pid < 0) {
        fail_msg("spawn: %s", err);
    }
}

int remote_expect_exit(struct remote *r)
{
    int status = 0;

    assert_int_equal(mpq_reap(r->pid, 10000, &status), 0);
    if (WIFSIGNALED(status)) {
        fail_msg("remote died by signal %d", WTERMSIG(status));
    }
    return WEXITSTATUS(status);
}

struct mpq_dev *remote_connect(struct remote *r, size_t i, struct mpq_ram *ram)
{
    char *err = NULL;
    struct mpq_dev *d = mpq_open_mpqemu(r->socks[i], &err);

    if (!d || mpq_map_ram(d, ram, 1, &err) < 0 || mpq_intx_enable(d, &err) < 0 ||
        mpq_reset(d, &err) < 0 || mpq_probe(d, NULL, &err) < 0) {
        fail_msg("connect: %s", err);
    }
    return d;
}
