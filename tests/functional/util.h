/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small helpers the C tests share: shell commands, a reproducible generator. */
#ifndef MPQEMU_TESTS_UTIL_H
#define MPQEMU_TESTS_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* xorshift64: the same sequence for the same seed, so failures reproduce. */
static inline uint64_t xorshift64(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

#endif
