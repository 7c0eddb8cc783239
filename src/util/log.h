/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging for the mpqemu programs: one line per event on stderr, prefixed
 * with the program name, in the style of QEMU's error_report().
 */
#ifndef MPQEMU_UTIL_LOG_H
#define MPQEMU_UTIL_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_program(const char *name);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

/*
 * A guest can trigger some warnings at will (accesses that hit no BAR, for
 * instance).  A rate limit keeps such a guest from filling the host's logs:
 * the first few are logged, then one in every 'every'.
 */
struct log_ratelimit {
    uint64_t count;
};
bool log_ratelimit_ok(struct log_ratelimit *rl);

#endif
