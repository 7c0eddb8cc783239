/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A process stopped at a chosen system call and SIGKILLed there, with
 * ptrace: for the tests that kill a device process at an exact point
 * (test-restart.c in a thread of its own; tests/guest/kill-at-syscall.c
 * for the guest tests).  x86-64.
 */
#ifndef MPQEMU_TESTS_TRACER_H
#define MPQEMU_TESTS_TRACER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* A system-call stop: the call, whether at its entry or exit, its arguments, its result. */
struct syscall_stop {
    long nr;
    bool entry;
    uint64_t args[6];
    int64_t result;             /* at the exit */
};

struct tracer_kill {
    struct syscall_stop at;     /* where it was killed */
    uint64_t ns;                /* CLOCK_MONOTONIC just before the kill */
    bool killed;                /* set (atomically, release) right after the kill */
};

/* Decides whether to kill at this stop. */
typedef bool (*tracer_wants)(pid_t pid, const struct syscall_stop *s, void *opaque);

/* Attaches to pid (PTRACE_SEIZE) and stops it; 0, or -1 with errno. */
int tracer_seize(pid_t pid);
/*
 * Runs the seized pid from system call to system call, SIGKILLs it at the
 * first stop wants() takes, and waits until it has died.  1 when killed so,
 * 0 when it died first, -1 when ptrace failed.
 */
int tracer_kill_at(pid_t pid, tracer_wants wants, void *opaque, struct tracer_kill *k);
/* Whether fd of pid is the file at path (the same inode), or names something containing what. */
bool tracer_fd_is(pid_t pid, uint64_t fd, const char *path);
bool tracer_fd_names(pid_t pid, uint64_t fd, const char *what);

#endif
