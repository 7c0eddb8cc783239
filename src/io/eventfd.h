/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The eventfds a peer sends us (irqfds, resample and unmask fds), read and
 * written so that the peer cannot make us wait.
 *
 * The peer holds the same open file, so it can clear O_NONBLOCK on it at
 * any time, also after we set it: no access here depends on that flag.  A
 * read is preadv2() with RWF_NOWAIT, which the kernel honours whatever the
 * flag says.  An eventfd's write honours no such flag (pwritev2 with
 * RWF_NOWAIT says EOPNOTSUPP), and blocks only while the counter cannot
 * take one more: then a signal is pending there anyway.  So a write runs
 * under a periodic timer whose signal (EVENTFD_TICK_SIGNAL, a handler
 * without SA_RESTART) interrupts it: one that blocks ends within
 * EVENTFD_WRITE_TICK_US or the tick after, and counts as a signal already
 * pending.
 *
 * EVENTFD_TICK_SIGNAL belongs to this module: the first write installs its
 * handler, unblocks it and makes the timer, aimed at the writing thread.
 * Writes come from that one thread (the loop's).  The timer runs only
 * during a write, so no other call ever sees the signal.
 */
#ifndef MPQEMU_IO_EVENTFD_H
#define MPQEMU_IO_EVENTFD_H

#include <signal.h>
#include <stdbool.h>

/* The longest an eventfd write waits, a tick or two of this. */
#define EVENTFD_WRITE_TICK_US 1000
/* The ticks' signal: the first real-time signal glibc leaves to programs. */
#define EVENTFD_TICK_SIGNAL SIGRTMIN

/* Whether fd is an eventfd (with /proc; else only whether it is open at all). */
bool fd_is_eventfd(int fd);

enum eventfd_signalled {
    EVENTFD_ADDED = 0,      /* the counter went up by one */
    EVENTFD_WAS_FULL = 1,   /* it could take no more: the reader has a signal pending */
};
/* Adds one to an eventfd; an enum eventfd_signalled, or -1 with errno. */
int eventfd_signal(int fd);

/*
 * Zeroes an eventfd's counter (one read; a semaphore eventfd loses one):
 * 1 when something was pending, 0 when it was empty, -1 with errno (a file
 * that cannot be read without waiting: EOPNOTSUPP).
 */
int eventfd_drain(int fd);

#endif
