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
 * take one more: then a signal is pending there anyway.  So writes run
 * under a periodic timer (EVENTFD_TICK_SIGNAL, every EVENTFD_WRITE_TICK_US)
 * whose handler polls the counter of a write in progress and gives the
 * write up if it is full: a write that blocks ends within a tick or two and
 * counts as a signal already pending.
 *
 * The timer is armed by a write and stops at the first tick that finds no
 * write, so a thread that signals often pays no timer call per write.  The
 * handler has SA_RESTART: of the writing thread's other calls, only those
 * the kernel never restarts (epoll_wait, poll, io_uring_enter's waits,
 * sleeps) may say EINTR, within a tick of its last write; they must take
 * EINTR as "wait again".
 *
 * EVENTFD_TICK_SIGNAL belongs to this module: a thread's first write
 * installs its handler, unblocks it and makes that thread's timer, which
 * the thread's exit deletes (the signal blocked in it first).
 */
#ifndef MPQEMU_IO_EVENTFD_H
#define MPQEMU_IO_EVENTFD_H

#include <signal.h>
#include <stdbool.h>

/* The longest an eventfd write waits, a tick or two of this. */
#define EVENTFD_WRITE_TICK_US 1000
/* The ticks' signal: the first real-time signal glibc leaves to programs. */
#define EVENTFD_TICK_SIGNAL SIGRTMIN

/* Whether fd is an eventfd (without /proc: an anonymous inode, never a pipe, socket or file). */
bool fd_is_eventfd(int fd);

enum eventfd_signalled {
    EVENTFD_ADDED = 0,      /* the counter went up by one */
    EVENTFD_WAS_FULL = 1,   /* it could take no more: the reader has a signal pending */
};
/* Adds one to an eventfd; an enum eventfd_signalled, or -1 with errno. */
int eventfd_signal(int fd);
/*
 * The same, for an fd signalled again and again: *was_full says whether
 * the last signal found the counter full, and then a poll() that finds it
 * full still answers EVENTFD_WAS_FULL without a write (which would wait
 * for a tick).  Updated on return.
 */
int eventfd_signal_hinted(int fd, bool *was_full);

/*
 * Zeroes an eventfd's counter (one read; a semaphore eventfd loses one):
 * 1 when something was pending, 0 when it was empty, -1 with errno (a file
 * that cannot be read without waiting: EOPNOTSUPP).
 */
int eventfd_drain(int fd);

#endif
