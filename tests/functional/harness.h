/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Starting mpqemu-remote for functional tests. */
#ifndef MPQEMU_TESTS_HARNESS_H
#define MPQEMU_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mpq_dev;
struct mpq_ram;

#include "client/mpqemu-client.h"

struct remote {
    pid_t pid;
    int socks[4];
    /* MPQEMU_TRANSPORT=vfio-user: the device is served on a socket path. */
    bool vfio_user;
    struct mpq_remote vu;
};

/*
 * Runs $MPQEMU_REMOTE with the given arguments ("{fd}", "{fd1}" ...
 * substituted).  With MPQEMU_TRANSPORT=vfio-user the positional "{fd}"
 * becomes an x-vfio-user-server for the first PCI device instead (one-device
 * tests only).
 */
void remote_start(struct remote *r, size_t nsocks, const char *const *args);
/*
 * The remote binary itself, confined: the leak runs point $MPQEMU_REMOTE
 * at a wrapper that adds "-sandbox off" and name the binary in
 * $MPQEMU_REMOTE_BINARY.  For the checks that need the sandbox.
 */
const char *confined_remote(void);
/* remote_start with confined_remote(). */
void remote_start_confined(struct remote *r, size_t nsocks, const char *const *args);
/*
 * Waits for the remote to exit (a vfio-user remote is sent SIGTERM first);
 * fails the test if it died by a signal.  Returns its status.
 */
int remote_expect_exit(struct remote *r);
/* Opens the client on socket i, shares ram, installs INTx, resets and probes. */
struct mpq_dev *remote_connect(struct remote *r, size_t i, struct mpq_ram *ram);

/* Raw multi-process messages, for hostile tests. */
void raw_send(int sock, int32_t cmd, uint64_t size, const void *payload, size_t len,
              const int *fds, size_t nfds);
/* Waits up to 5 s for one RET and returns its value (0 for an empty one). */
uint64_t raw_ret(int sock);
uint32_t raw_config_read(int sock, uint32_t addr, int32_t len);
void raw_config_write(int sock, uint32_t addr, uint32_t val, int32_t len);
void raw_bar_write(int sock, bool memory, uint64_t addr, uint64_t val, uint32_t size);

/* A QMP monitor's socket (mpqemu-remote's or QEMU's), connected and past qmp_capabilities. */
int qmp_socket_open(const char *path);
/* Sends one command; its reply line (a "return" or an "error"; events between are skipped). */
void qmp_socket_command(int fd, const char *cmd, char *reply, size_t size);

#endif
