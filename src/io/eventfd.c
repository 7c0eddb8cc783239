// SPDX-License-Identifier: GPL-2.0-or-later
#include "io/eventfd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
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

/* Its only work is to be there: the write it interrupts returns EINTR. */
static void on_write_tick(int sig)
{
    (void)sig;
}

static int prepare_ticks(void)
{
    static bool ready;
    struct sigaction sa = { .sa_handler = on_write_tick };  /* no SA_RESTART */
    sigset_t alarm;

    if (ready) {
        return 0;
    }
    sigemptyset(&sa.sa_mask);
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    if (sigaction(SIGALRM, &sa, NULL) < 0 || sigprocmask(SIG_UNBLOCK, &alarm, NULL) < 0) {
        return -1;
    }
    ready = true;
    return 0;
}

int eventfd_signal(int fd)
{
    /*
     * Periodic, not one-shot: a tick that comes before the write has begun
     * to wait interrupts nothing, and the next one does.  Disarmed before
     * we return, so a tick can only ever land in this write.
     */
    static const struct itimerval ticks = {
        .it_interval = { .tv_usec = EVENTFD_WRITE_TICK_US },
        .it_value = { .tv_usec = EVENTFD_WRITE_TICK_US },
    };
    static const struct itimerval off;
    uint64_t one = 1;
    ssize_t n;
    int saved;

    if (prepare_ticks() < 0 || setitimer(ITIMER_REAL, &ticks, NULL) < 0) {
        return -1;      /* never an unbounded write */
    }
    n = write(fd, &one, sizeof(one));
    saved = errno;
    setitimer(ITIMER_REAL, &off, NULL);
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
