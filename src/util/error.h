/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Errors travel as heap strings: a function that fails returns -1 (or NULL)
 * and, when the caller passed a non-NULL 'err', stores a message there that
 * the caller must free().
 */
#ifndef MPQEMU_UTIL_ERROR_H
#define MPQEMU_UTIL_ERROR_H

#include <stdarg.h>

void error_setf(char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix an error already set: "prefix: old message". */
void error_prefix(char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
