// SPDX-License-Identifier: GPL-2.0-or-later
#include "io/eventfd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

bool fd_is_eventfd(int fd)
{
    char path[64], target[64];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) {
        /* No /proc (a confined remote): fall back to a flag check. */
        return fcntl(fd, F_GETFL) >= 0;
    }
    target[n] = '\0';
    return !strcmp(target, "anon_inode:[eventfd]");
}

/* glibc before 2.35 names it only in the kernel's headers. */
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* Its only work is to be there: the write it interrupts returns EINTR. */
static void on_write_tick(int sig)
{
    (void)sig;
}

static bool ticks_ready;

/* A child of fork() has no timers: its first write makes its own. */
static void ticks_forked(void)
{
    ticks_ready = false;
}

/*
 * The ticks' timer, made at the first write and aimed at its thread.  A
 * POSIX timer and a real-time signal of its own, not ITIMER_REAL and
 * SIGALRM: those stay free for alarm() (the fuzzing drivers' timeouts).
 */
static int ticks_timer(timer_t *timer)
{
    static bool at_fork;
    static timer_t made;
    struct sigaction sa = { .sa_handler = on_write_tick };  /* no SA_RESTART */
    struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID };
    sigset_t tick;

    if (!ticks_ready) {
        if (!at_fork && pthread_atfork(NULL, NULL, ticks_forked) != 0) {
            return -1;
        }
        at_fork = true;
        ev.sigev_signo = EVENTFD_TICK_SIGNAL;
        ev.sigev_notify_thread_id = gettid();
        sigemptyset(&sa.sa_mask);
        sigemptyset(&tick);
        sigaddset(&tick, EVENTFD_TICK_SIGNAL);
        if (sigaction(EVENTFD_TICK_SIGNAL, &sa, NULL) < 0 ||
            sigprocmask(SIG_UNBLOCK, &tick, NULL) < 0 ||
            timer_create(CLOCK_MONOTONIC, &ev, &made) < 0) {
            return -1;
        }
        ticks_ready = true;
    }
    *timer = made;
    return 0;
}

int eventfd_signal(int fd)
{
    /*
     * Periodic, not one-shot: a tick that comes before the write has begun
     * to wait interrupts nothing, and the next one does.  Disarmed before
     * we return, so a tick can only ever land in this write.
     */
    static const struct itimerspec ticks = {
        .it_interval = { .tv_nsec = EVENTFD_WRITE_TICK_US * 1000 },
        .it_value = { .tv_nsec = EVENTFD_WRITE_TICK_US * 1000 },
    };
    static const struct itimerspec off;
    timer_t timer;
    uint64_t one = 1;
    ssize_t n;
    int saved;

    if (ticks_timer(&timer) < 0 || timer_settime(timer, 0, &ticks, NULL) < 0) {
        return -1;      /* never an unbounded write */
    }
    n = write(fd, &one, sizeof(one));
    saved = errno;
    timer_settime(timer, 0, &off, NULL);
    if (n == (ssize_t)sizeof(one)) {
        return EVENTFD_ADDED;
    }
    /*
     * EAGAIN (non-blocking) and EINTR (blocking, a tick ended the wait)
     * both mean the counter stood at its maximum: not zero, so the reader
     * finds a signal whenever it next reads, later than this one came.
     */
    if (n < 0 && (saved == EAGAIN || saved == EINTR)) {
        return EVENTFD_WAS_FULL;
    }
    errno = n < 0 ? saved : EIO;
    return -1;
}

int eventfd_drain(int fd)
{
    uint64_t count;
    struct iovec iov = { &count, sizeof(count) };
    ssize_t n;

    /*
     * One read zeroes a counter, and a second would only say EAGAIN.  An
     * EFD_SEMAPHORE eventfd (a hostile peer's) gives one per read: what is
     * left keeps a level-triggered watch ready, which costs that peer's
     * device wakeups but never holds the loop here.  RWF_NOWAIT: an empty
     * counter says EAGAIN even if the peer cleared O_NONBLOCK.
     */
    n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
    if (n == (ssize_t)sizeof(count)) {
        return 1;
    }
    if (n < 0 && errno == EAGAIN) {
        return 0;
    }
    if (n >= 0) {
        errno = EIO;
    }
    return -1;
}
