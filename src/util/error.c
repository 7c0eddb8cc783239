// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/error.h"

#include <stdio.h>
#include <stdlib.h>

static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;

    if (vasprintf(&s, fmt, ap) < 0) {
        return NULL;
    }
    return s;
}

void error_setf(char **err, const char *fmt, ...)
{
    va_list ap;

    if (!err) {
        return;
    }
    free(*err);
    va_start(ap, fmt);
    *err = vformat(fmt, ap);
    va_end(ap);
}

void error_prefix(char **err, const char *fmt, ...)
{
    va_list ap;
    char *prefix, *joined = NULL;

    if (!err || !*err) {
        return;
    }
    va_start(ap, fmt);
    prefix = vformat(fmt, ap);
    va_end(ap);
    if (prefix && asprintf(&joined, "%s: %s", prefix, *err) >= 0) {
        free(*err);
        *err = joined;
    }
    free(prefix);
}
