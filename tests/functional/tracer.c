// SPDX-License-Identifier: GPL-2.0-or-later
#include "tracer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int tracer_seize(pid_t pid)
{
    int status;

    if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD) < 0 ||
        ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0 || waitpid(pid, &status, __WALL) < 0) {
        return -1;
    }
    return 0;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static void read_stop(const struct user_regs_struct *regs, struct syscall_stop *s)
{
    /* At a system call's entry, rax holds -ENOSYS; at its exit, the result. */
    *s = (struct syscall_stop){
        .nr = (long)regs->orig_rax, .entry = (long)regs->rax == -ENOSYS,
        .args = { regs->rdi, regs->rsi, regs->rdx, regs->r10, regs->r8, regs->r9 },
        .result = (int64_t)regs->rax,
    };
}

int tracer_kill_at(pid_t pid, tracer_wants wants, void *opaque, struct tracer_kill *k)
{
    bool killed = false;
    int status, sig = 0;

    for (;;) {
        struct user_regs_struct regs;
        struct syscall_stop s;

        if (ptrace(PTRACE_SYSCALL, pid, 0, sig) < 0 || waitpid(pid, &status, __WALL) < 0) {
            return killed ? 1 : -1;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            return killed ? 1 : 0;
        }
        sig = 0;
        if (WSTOPSIG(status) != (SIGTRAP | 0x80)) {
            sig = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);
            continue;
        }
        if (killed || ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0) {
            continue;
        }
        read_stop(&regs, &s);
        if (wants(pid, &s, opaque)) {
            k->at = s;
            k->ns = monotonic_ns();
            kill(pid, SIGKILL);
            killed = true;
            __atomic_store_n(&k->killed, true, __ATOMIC_RELEASE);
        }
    }
}

static bool fd_link(pid_t pid, uint64_t fd, char *link, size_t size)
{
    char path[64];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/fd/%llu", (int)pid, (unsigned long long)fd);
    n = readlink(path, link, size - 1);
    if (n <= 0) {
        return false;
    }
    link[n] = '\0';
    return true;
}

bool tracer_fd_is(pid_t pid, uint64_t fd, const char *path)
{
    char proc[64];
    struct stat a, b;

    snprintf(proc, sizeof(proc), "/proc/%d/fd/%llu", (int)pid, (unsigned long long)fd);
    return stat(proc, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

bool tracer_fd_names(pid_t pid, uint64_t fd, const char *what)
{
    char link[256];

    return fd_link(pid, fd, link, sizeof(link)) && strstr(link, what) != NULL;
}
