/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small helpers the C tests share: shell commands, a reproducible generator. */
#ifndef MPQEMU_TESTS_UTIL_H
#define MPQEMU_TESTS_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

/* Runs a shell command built like printf; its exit status, -1 if it did not exit. */
static inline int __attribute__((format(printf, 1, 2))) sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A number field of /proc/PID/status ("Seccomp", "NoNewPrivs"...); -1 when absent. */
static inline int proc_status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t len = strlen(field);
    int value = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!(fp = fopen(path, "r"))) {
        return -1;
    }
    while (fgets(line, sizeof(line), fp)) {
        if (!strncmp(line, field, len) && line[len] == ':') {
            value = atoi(line + len + 1);
        }
    }
    fclose(fp);
    return value;
}

/* xorshift64: the same sequence for the same seed, so failures reproduce. */
static inline uint64_t xorshift64(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

#endif
