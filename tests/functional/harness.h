/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Starting mpqemu-remote for functional tests. */
#ifndef MPQEMU_TESTS_HARNESS_H
#define MPQEMU_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

struct mpq_dev;
struct mpq_ram;

struct remote {
    pid_t pid;
    int socks[4];
};

/* Runs $MPQEMU_REMOTE with the given arguments ("{fd}", "{fd1}" ... substituted). */
void remote_start(struct remote *r, size_t nsocks, const char *const *args);
/* Waits for the remote to exit; fails the test if it died by a signal. Returns its status. */
int remote_expect_exit(struct remote *r);
/* Opens the client on socket i, shares ram, installs INTx, resets and probes. */
struct mpq_dev *remote_connect(struct remote *r, size_t i, struct mpq_ram *ram);

#endif
