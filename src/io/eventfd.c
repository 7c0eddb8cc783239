// SPDX-License-Identifier: GPL-2.0-or-later
#include "io/eventfd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

bool fd_is_eventfd(int fd)
{
    char path[64], target[64];
    struct statfs fs;
    ssize_t n;

    /*
     * An anonymous inode first, with or without /proc: a pipe, a socket,
     * a terminal or a file (of a FUSE mount that never answers) must not
     * pass for one when /proc cannot tell.  A write to such a file may
     * wait where no tick ends it: after a signal, FUSE waits for its
     * daemon's answer killably only, whatever poll() said.
     */
    if (fstatfs(fd, &fs) < 0 || fs.f_type != ANON_INODE_FS_MAGIC) {
        return false;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) {
        /*
         * No /proc (a confined remote): an anonymous inode is as far as we
         * can tell.  Of those, only an eventfd takes a write at all (a
         * timerfd, a signalfd, an epoll fd say EINVAL).
         */
        return true;
    }
    target[n] = '\0';
    return !strcmp(target, "anon_inode:[eventfd]");
}

/* glibc before 2.35 names it only in the kernel's headers. */
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/*
 * A writing thread's ticks.  Initial-exec: the handler reads them, and a
 * lazily allocated thread-local would not be safe there.
 */
struct ticks {
    bool made;                          /* the timer exists (a fork()'s child has none) */
    timer_t timer;
    volatile sig_atomic_t running;      /* armed; the first tick without a write stops it */
    volatile sig_atomic_t writing_fd;   /* the eventfd being written, or -1 */
    sigjmp_buf abandon;                 /* back into eventfd_signal(), the write given up */
};
static __thread struct ticks ticks __attribute__((tls_model("initial-exec"))) = {
    .writing_fd = -1,
};

static const struct itimerspec ticks_off;

/* Whether a write of one would not wait: poll says so without taking anything. */
static bool has_room(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    int n = poll(&p, 1, 0);

    /* A failed poll counts as room: the next tick looks again. */
    return n < 0 || (n == 1 && (p.revents & POLLOUT));
}

/*
 * With SA_RESTART, a write with room left goes on, and so does any other
 * call the kernel restarts; a write into a full counter is given up (the
 * reader has a signal pending then).  SA_NODEFER: the jump leaves the
 * signal mask as it is, so no call saves and restores it per write.
 */
static void on_write_tick(int sig)
{
    int saved = errno;
    int fd = ticks.writing_fd;

    (void)sig;
    if (fd < 0) {
        timer_settime(ticks.timer, 0, &ticks_off, NULL);
        ticks.running = 0;
    } else if (!has_room(fd)) {
        siglongjmp(ticks.abandon, 1);
    }
    errno = saved;
}

/* A child of fork() has no timers: its first write makes its own. */
static void ticks_forked(void)
{
    ticks.made = false;
    ticks.running = 0;
}

/*
 * A thread's timer ends with it, else every thread that ever signalled
 * leaves one behind, aimed at a thread id that is gone (or reused).  The
 * signal is blocked first: no tick runs on a deleted id that another
 * thread's timer_create() may have taken meanwhile.  A pthread key's
 * destructor: it runs at a thread's exit, never at exit() (a
 * single-threaded process, as the remote, never runs it).
 */
static void ticks_thread_exit(void *value)
{
    struct ticks *t = value;
    sigset_t tick;

    if (!t->made) {
        return;     /* a fork()'s child whose thread never signalled */
    }
    sigemptyset(&tick);
    sigaddset(&tick, EVENTFD_TICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &tick, NULL);
    timer_delete(t->timer);
    t->made = false;
    t->running = 0;
}

static pthread_key_t ticks_key;
static int ticks_setup_err;

static void ticks_setup(void)
{
    ticks_setup_err = pthread_key_create(&ticks_key, ticks_thread_exit);
    if (!ticks_setup_err) {
        ticks_setup_err = pthread_atfork(NULL, NULL, ticks_forked);
    }
}

/*
 * The writing thread's timer, made at its first write and aimed at it,
 * deleted at its exit.  A POSIX timer and a real-time signal of its own,
 * not ITIMER_REAL and SIGALRM: those stay free for alarm() (the fuzzing
 * drivers' timeouts).
 */
static int make_ticks(void)
{
    static pthread_once_t setup = PTHREAD_ONCE_INIT;
    struct sigaction sa = { .sa_handler = on_write_tick, .sa_flags = SA_RESTART | SA_NODEFER };
    struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID };
    sigset_t tick;

    if (ticks.made) {
        return 0;
    }
    /* Registered before the timer exists: no failure after it leaves one behind. */
    if (pthread_once(&setup, ticks_setup) != 0 || ticks_setup_err != 0 ||
        pthread_setspecific(ticks_key, &ticks) != 0) {
        return -1;
    }
    ev.sigev_signo = EVENTFD_TICK_SIGNAL;
    ev.sigev_notify_thread_id = gettid();
    sigemptyset(&sa.sa_mask);
    sigemptyset(&tick);
    sigaddset(&tick, EVENTFD_TICK_SIGNAL);
    if (sigaction(EVENTFD_TICK_SIGNAL, &sa, NULL) < 0 ||
        pthread_sigmask(SIG_UNBLOCK, &tick, NULL) != 0 ||
        timer_create(CLOCK_MONOTONIC, &ev, &ticks.timer) < 0) {
        return -1;
    }
    ticks.made = true;
    return 0;
}

/* Ticks from now until the first one that finds no write: two timer calls per tick at most. */
static int keep_ticking(void)
{
    static const struct itimerspec every = {
        .it_interval = { .tv_nsec = EVENTFD_WRITE_TICK_US * 1000 },
        .it_value = { .tv_nsec = EVENTFD_WRITE_TICK_US * 1000 },
    };

    if (ticks.running) {
        return 0;
    }
    if (timer_settime(ticks.timer, 0, &every, NULL) < 0) {
        return -1;
    }
    ticks.running = 1;
    return 0;
}

int eventfd_signal(int fd)
{
    static const uint64_t one = 1;
    ssize_t n;
    int saved;

    if (make_ticks() < 0) {
        return -1;      /* never an unbounded write */
    }
    if (sigsetjmp(ticks.abandon, 0)) {
        ticks.writing_fd = -1;      /* a tick found the counter full */
        return EVENTFD_WAS_FULL;
    }
    /* Watched before the ticks are checked: a tick from now on cannot stop them. */
    ticks.writing_fd = fd;
    atomic_signal_fence(memory_order_seq_cst);
    if (keep_ticking() < 0) {
        ticks.writing_fd = -1;
        return -1;
    }
    do {
        n = write(fd, &one, sizeof(one));   /* another signal's EINTR: the ticks bound it still */
    } while (n < 0 && errno == EINTR);
    saved = errno;
    atomic_signal_fence(memory_order_seq_cst);
    ticks.writing_fd = -1;
    if (n == (ssize_t)sizeof(one)) {
        return EVENTFD_ADDED;
    }
    /* EAGAIN (non-blocking): the counter stood at its maximum, a signal is pending there. */
    if (n < 0 && saved == EAGAIN) {
        return EVENTFD_WAS_FULL;
    }
    errno = n < 0 ? saved : EIO;
    return -1;
}

int eventfd_signal_hinted(int fd, bool *was_full)
{
    int r;

    /* Full at the last signal (a peer that keeps it so): a poll spares a write that waits a tick. */
    if (*was_full && !has_room(fd)) {
        return EVENTFD_WAS_FULL;
    }
    r = eventfd_signal(fd);
    *was_full = r == EVENTFD_WAS_FULL;
    return r;
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
