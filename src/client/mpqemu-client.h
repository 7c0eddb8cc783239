/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mpqemu client library: drives a remote PCI device from the VMM's side,
 * as QEMU's proxy does.  One API whatever the wire protocol underneath.
 *
 *   struct mpq_dev *d = mpq_open_mpqemu(sock, &err);     multi-process, or
 *   struct mpq_dev *d = mpq_open_vfio_user(path, &err);  vfio-user
 *   mpq_map_ram(d, &ram, 1, &err);          share guest RAM
 *   mpq_intx_enable(d, &err);               install the irqfd pair
 *   mpq_probe(d, &info, &err);              ids, BAR sizes, assign, enable
 *   mpq_bar_read(d, 0, 0x10, 4, &v, &err);  register access by BAR + offset
 *
 * Functions return 0 on success, -1 with *err (free()) on failure.
 */
#ifndef MPQEMU_CLIENT_H
#define MPQEMU_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mpq_dev;

/*
 * Guest RAM shared with the device: a memfd mapped here too.  Over
 * vfio-user, fd -1 maps it without sharing: the device then reaches it
 * through DMA_READ/DMA_WRITE messages the client serves from 'host'.
 */
struct mpq_ram {
    int fd;
    uint64_t gpa;
    uint64_t size;
    uint64_t fd_offset;
    uint8_t *host;
};

int mpq_ram_create(struct mpq_ram *ram, uint64_t gpa, uint64_t size, char **err);
void mpq_ram_destroy(struct mpq_ram *ram);

struct mpq_bar_info {
    bool present;
    bool io;
    bool mem64;
    bool prefetchable;
    uint64_t size;
    uint64_t addr;      /* bus address assigned by mpq_probe() */
};

struct mpq_pci_info {
    uint16_t vendor, device;
    uint16_t subsystem_vendor, subsystem;
    uint32_t class_code;
    uint8_t revision;
    uint8_t interrupt_pin;
    struct mpq_bar_info bars[6];
};

/* Multi-process protocol on a connected socket (taken over, closed by mpq_close). */
struct mpq_dev *mpq_open_mpqemu(int sock, char **err);
/* vfio-user: connects to a server's socket, negotiates the version. */
struct mpq_dev *mpq_open_vfio_user(const char *path, char **err);
/* vfio-user on a connected socket (taken over). */
struct mpq_dev *mpq_open_vfio_user_fd(int sock, char **err);
/*
 * Connects to 'path' as soon as the server listens there, for up to
 * timeout_ms, while process 'pid' (the server; 0: none) lives.
 */
struct mpq_dev *mpq_open_vfio_user_wait(const char *path, pid_t pid, int timeout_ms,
                                        char **err);
void mpq_close(struct mpq_dev *d);

/*
 * vfio-user: BAR writes go without waiting for a reply, as QEMU posts them
 * (default on).  Errors in posted writes are lost; turn off to see them.
 */
void mpq_set_posted_writes(struct mpq_dev *d, bool post);

/* How long to wait for any reply; default 10 s. */
void mpq_set_timeout(struct mpq_dev *d, int timeout_ms);
/*
 * How long to spin for a reply before sleeping (default 50 us, 0: never).
 * Spinning saves the cross-core wakeup, which costs tens of microseconds.
 */
void mpq_set_poll_ns(struct mpq_dev *d, uint64_t ns);

int mpq_map_ram(struct mpq_dev *d, const struct mpq_ram *ram, size_t n, char **err);
int mpq_cfg_read(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t *val, char **err);
int mpq_cfg_write(struct mpq_dev *d, uint32_t off, uint32_t len, uint32_t val, char **err);

/*
 * Reads the ids, sizes every BAR the way QEMU's proxy does (write all-ones,
 * read back, restore), assigns bus addresses, and enables I/O, memory and
 * bus mastering.
 */
int mpq_probe(struct mpq_dev *d, struct mpq_pci_info *info, char **err);

int mpq_bar_read(struct mpq_dev *d, int bar, uint64_t off, unsigned size, uint64_t *val,
                 char **err);
int mpq_bar_write(struct mpq_dev *d, int bar, uint64_t off, unsigned size, uint64_t val,
                  char **err);

/* INTx: level-triggered, acknowledged by mpq_intx_eoi() as an EOI would. */
int mpq_intx_enable(struct mpq_dev *d, char **err);
/* 1: interrupt, 0: timeout, -1: error. */
int mpq_intx_wait(struct mpq_dev *d, int timeout_ms);
int mpq_intx_eoi(struct mpq_dev *d);

int mpq_reset(struct mpq_dev *d, char **err);

/*
 * Starts argv with nsocks socket pairs; the remote ends replace "{fd}",
 * "{fd1}", "{fd2}"... in the arguments and are the only fds the child
 * inherits from us.  Our ends go to socks[].  The child gets SIGTERM
 * should we die before it.  Returns the pid or -1.
 */
enum { MPQ_SPAWN_MAX_SOCKS = 16 };
pid_t mpq_spawn(char *const *argv, size_t nsocks, int *socks, char **err);
/*
 * Waits up to timeout_ms for pid to exit (status as waitpid's); kills it
 * and returns 1 if it did not, 0 if it did, -1 on error.
 */
int mpq_reap(pid_t pid, int timeout_ms, int *status);

/*
 * A remote started by a tool.  Arguments with "{fd}" get a socket pair and
 * the multi-process protocol; with "{socket}", a fresh path in a private
 * directory and vfio-user.
 */
struct mpq_remote {
    pid_t pid;
    struct mpq_dev *dev;
    bool vfio_user;
    char dir[32];
    char path[64];
};
/* Starts and connects (waiting up to timeout_ms for a vfio-user server). */
int mpq_remote_start(struct mpq_remote *r, char *const *argv, int timeout_ms, char **err);
/*
 * Disconnects, asks a vfio-user remote to exit (SIGTERM: a multi-process
 * remote exits by itself), and reaps it: mpq_reap's result and status.
 */
int mpq_remote_stop(struct mpq_remote *r, int timeout_ms, int *status);

/* Latency samples, for the tools. */
struct mpq_stats {
    double *us;
    size_t n, cap;
};
int mpq_stats_add(struct mpq_stats *s, double us);
/* q in [0, 1]: 0 is the minimum, 0.5 the median. */
double mpq_stats_quantile(struct mpq_stats *s, double q);
void mpq_stats_free(struct mpq_stats *s);
double mpq_now_us(void);

#endif
