// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/log.h"

#include <stdio.h>

static const char *program_name = "mpqemu";
static enum log_level max_level = LOG_INFO;

void log_set_program(const char *name)
{
    program_name = name;
}

void log_set_level(enum log_level level)
{
    max_level = level;
}

bool log_enabled(enum log_level level)
{
    return level <= max_level;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    static const char *const tag[] = {
        [LOG_ERROR] = "", [LOG_WARN] = "warning: ",
        [LOG_INFO] = "", [LOG_DEBUG] = "debug: ",
    };
    char line[1024];

    if (!log_enabled(level)) {
        return;
    }
    vsnprintf(line, sizeof(line), fmt, ap);
    /* One fprintf per line so that lines of several processes do not mix. */
    fprintf(stderr, "%s: %s%s\n", program_name, tag[level], line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

enum { RATELIMIT_BURST = 10, RATELIMIT_EVERY = 1000 };

bool log_ratelimit_ok(struct log_ratelimit *rl)
{
    uint64_t n = rl->count++;

    return n < RATELIMIT_BURST || n % RATELIMIT_EVERY == 0;
}
