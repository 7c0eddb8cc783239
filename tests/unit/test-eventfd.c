// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The accesses to a peer's eventfds (io/eventfd.h): none waits, whatever
 * the peer does to the file's flags and counter, also while it does so
 * concurrently; a write that cannot add one says the signal was pending.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/eventfd.h"

static const uint64_t FULL = UINT64_MAX - 1;

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The counter, taken with a read that cannot wait (the test's own fds are blocking). */
static uint64_t take(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    uint64_t n = 0;

    if (poll(&p, 1, 0) == 1) {
        assert_int_equal(read(fd, &n, sizeof(n)), (ssize_t)sizeof(n));
    }
    return n;
}

static void test_drain_never_waits(void **state)
{
    int fd = eventfd(0, EFD_CLOEXEC);       /* blocking, as a hostile peer leaves it */
    int sem = eventfd(3, EFD_CLOEXEC | EFD_SEMAPHORE);
    int pipefd[2];
    uint64_t five = 5;

    (void)state;
    assert_int_equal(eventfd_drain(fd), 0);     /* empty: EAGAIN inside, not a wait */
    assert_int_equal(write(fd, &five, sizeof(five)), (ssize_t)sizeof(five));
    assert_int_equal(eventfd_drain(fd), 1);
    assert_int_equal(take(fd), 0);              /* one read zeroed it */
    assert_int_equal(eventfd_drain(sem), 1);    /* a semaphore gives one per read */
    assert_int_equal(take(sem), 1);
    assert_int_equal(take(sem), 1);
    assert_int_equal(eventfd_drain(sem), 0);
    /* A file that cannot be read says so. */
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(eventfd_drain(pipefd[1]), -1);
    assert_int_equal(errno, EBADF);
    close(pipefd[0]);
    close(pipefd[1]);
    close(fd);
    close(sem);
}

/*
 * The first tick after the last write stops the ticks: it may end one
 * wait the kernel does not restart (EINTR), no later one.
 */
static void expect_ticks_stop(void)
{
    int interrupted = 0;

    while (poll(NULL, 0, 20) < 0) {
        assert_int_equal(errno, EINTR);
        assert_true(++interrupted <= 1);
    }
    assert_int_equal(poll(NULL, 0, 20), 0);
}

static void test_signal_adds_one(void **state)
{
    int fd = eventfd(0, EFD_CLOEXEC);

    (void)state;
    alarm(1000);
    assert_int_equal(eventfd_signal(fd), EVENTFD_ADDED);
    assert_int_equal(eventfd_signal(fd), EVENTFD_ADDED);
    assert_int_equal(take(fd), 2);
    expect_ticks_stop();
    /* alarm() (ITIMER_REAL, SIGALRM) is left alone: fuzzing drivers time inputs by it. */
    assert_true(alarm(0) > 990);
    close(fd);
}

/* A counter at its maximum: non-blocking, EAGAIN; blocking, a tick ends the wait. */
static void test_signal_into_a_full_counter(void **state)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    uint64_t t0;

    (void)state;
    assert_int_equal(write(fd, &FULL, sizeof(FULL)), (ssize_t)sizeof(FULL));
    t0 = now_us();
    assert_int_equal(eventfd_signal(fd), EVENTFD_WAS_FULL);
    /* A tick or two; loaded machines and sanitizers get a wide margin. */
    assert_true(now_us() - t0 < 500000);
    /* Given up again: the jump out of the first left the tick's signal unblocked. */
    t0 = now_us();
    assert_int_equal(eventfd_signal(fd), EVENTFD_WAS_FULL);
    assert_true(now_us() - t0 < 500000);
    expect_ticks_stop();
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(eventfd_signal(fd), EVENTFD_WAS_FULL);
    assert_int_equal(take(fd), FULL);           /* the reader's signal was there all along */
    assert_int_equal(eventfd_signal(fd), EVENTFD_ADDED);
    assert_int_equal(take(fd), 1);
    close(fd);
}

/*
 * A counter the peer keeps full and blocking: once found so, the next
 * signal polls and writes nothing.  With the ticks' signal blocked, a
 * write would wait for ever (alarm() fails the test), so returning at all
 * shows none was made.
 */
static void test_hint_spares_the_write(void **state)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    bool was_full = false;
    sigset_t tick, old;

    (void)state;
    assert_int_equal(write(fd, &FULL, sizeof(FULL)), (ssize_t)sizeof(FULL));
    assert_int_equal(eventfd_signal_hinted(fd, &was_full), EVENTFD_WAS_FULL);   /* a tick */
    assert_true(was_full);
    sigemptyset(&tick);
    sigaddset(&tick, EVENTFD_TICK_SIGNAL);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &tick, &old), 0);
    alarm(10);
    assert_int_equal(eventfd_signal_hinted(fd, &was_full), EVENTFD_WAS_FULL);
    assert_true(was_full);
    alarm(0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    /* Room again: the hint costs a poll, the write is made, and it clears. */
    assert_int_equal(take(fd), FULL);
    assert_int_equal(eventfd_signal_hinted(fd, &was_full), EVENTFD_ADDED);
    assert_false(was_full);
    assert_int_equal(take(fd), 1);
    expect_ticks_stop();
    close(fd);
}

static void *write_later(void *opaque)
{
    int fd = *(int *)opaque;

    usleep(30000);
    assert_int_equal(write(fd, "x", 1), 1);
    return NULL;
}

/* While the ticks run, a wait the kernel restarts (a pipe's read) is not cut short. */
static void test_ticks_leave_restartable_calls_alone(void **state)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    int pipefd[2];
    pthread_t t;
    char c;

    (void)state;
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(pthread_create(&t, NULL, write_later, &pipefd[1]), 0);
    assert_int_equal(eventfd_signal(fd), EVENTFD_ADDED);       /* the ticks run */
    assert_int_equal(read(pipefd[0], &c, 1), 1);                /* 30 ms: ticks came meanwhile */
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(take(fd), 1);
    close(pipefd[0]);
    close(pipefd[1]);
    close(fd);
}

/*
 * Which fds pass for an eventfd, one bit each: an eventfd, a timerfd, a
 * pipe, a socket, a file.
 */
static unsigned taken_for_eventfds(void)
{
    int fds[6], n = 0;
    unsigned taken = 0;
    char file[] = "/tmp/test-eventfd-XXXXXX";

    fds[n++] = eventfd(0, EFD_CLOEXEC);
    fds[n++] = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    assert_int_equal(pipe2(&fds[n], O_CLOEXEC), 0);
    fds[n] = fds[n + 1];    /* the write end, as an interrupt fd would be written */
    close(fds[n + 1]);
    n++;
    fds[n++] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    fds[n++] = mkstemp(file);
    unlink(file);
    for (int i = 0; i < n; i++) {
        assert_true(fds[i] >= 0);
        taken |= (unsigned)fd_is_eventfd(fds[i]) << i;
        close(fds[i]);
    }
    return taken;
}

/*
 * Only an eventfd passes, with /proc; without it (a confined remote whose
 * view has none) an anonymous inode, never a pipe, a socket or a file: a
 * write to a file of a FUSE mount whose daemon never answers waits where
 * no tick ends it.  The child sees no /proc in a mount namespace of its own.
 */
static void test_only_eventfds_pass(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    assert_int_equal(taken_for_eventfds(), 1u);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0 ||
            mount("none", "/proc", "tmpfs", 0, NULL) < 0) {
            _exit(77);
        }
        _exit(access("/proc/self/fd", F_OK) == 0 ? 2 : taken_for_eventfds() == 3u ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        skip();     /* no user namespaces here */
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A child of fork() (a fuzzing driver's, say) gets ticks of its own. */
static void test_signal_in_a_forked_child(void **state)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    int status;
    pid_t pid;

    (void)state;
    assert_int_equal(eventfd_signal(fd), EVENTFD_ADDED);       /* the parent's timer exists */
    assert_int_equal(take(fd), 1);
    assert_int_equal(write(fd, &FULL, sizeof(FULL)), (ssize_t)sizeof(FULL));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);      /* a hang fails the test */
        _exit(eventfd_signal(fd) == EVENTFD_WAS_FULL ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(fd);
}

/* The id of the POSIX timer aimed at thread tid, -1 if none; the count of all in *count. */
static int timer_of(pid_t tid, int *count)
{
    FILE *f = fopen("/proc/self/timers", "r");
    char line[128];
    int id = -1, found = -1, t;

    *count = 0;
    if (!f) {
        return -2;
    }
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "ID: %d", &id) == 1) {
            ++*count;
        } else if (sscanf(line, "notify: %*[^/]/tid.%d", &t) == 1 && t == tid) {
            found = id;
        }
    }
    fclose(f);
    return found;
}

struct exiting {
    int fd, signalled, timer, count;
    pid_t tid;
};

/* Signals, finds its timer, and exits with the ticks running. */
static void *signal_and_exit(void *opaque)
{
    struct exiting *e = opaque;

    e->tid = gettid();
    e->signalled = eventfd_signal(e->fd);
    e->timer = timer_of(e->tid, &e->count);
    return NULL;
}

/* A thread that signalled leaves no timer behind when it exits, however many come and go. */
static void test_ticks_end_with_their_thread(void **state)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    int before, after;

    (void)state;
    if (timer_of(0, &before) == -2) {
        skip();     /* no /proc/self/timers (CONFIG_CHECKPOINT_RESTORE) */
    }
    for (int i = 0; i < 3; i++) {
        struct exiting e = { .fd = fd };
        pthread_t t;

        assert_int_equal(pthread_create(&t, NULL, signal_and_exit, &e), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(e.signalled, EVENTFD_ADDED);
        assert_true(e.timer >= 0);                  /* it had one, aimed at it */
        assert_int_equal(e.count, before + 1);
        assert_int_equal(timer_of(e.tid, &after), -1);
        assert_int_equal(after, before);            /* gone with it */
    }
    assert_int_equal(take(fd), 3);
    close(fd);
}

/*
 * The peer, in a thread: flips O_NONBLOCK, takes the counter and writes
 * value into it, as fast as it can.
 */
struct peer {
    int fd;
    uint64_t value;
    atomic_bool stop;
};

static void *hostile_peer(void *opaque)
{
    struct peer *p = opaque;
    uint64_t n;
    struct iovec iov = { &n, sizeof(n) };

    for (unsigned i = 0; !atomic_load(&p->stop); i++) {
        fcntl(p->fd, F_SETFL, i & 1 ? O_NONBLOCK : 0);
        (void)!preadv2(p->fd, &iov, 1, -1, RWF_NOWAIT);
        /* Waits only if the other side added more than a little since the read. */
        (void)!write(p->fd, &p->value, sizeof(p->value));
        usleep(i % 7 * 50);     /* the other side gets to find it so, for a while */
    }
    return NULL;
}

static void test_peer_racing_the_accesses(void **state)
{
    /* The irqfd's peer fills it up to the brim; the resample fd's signals EOIs. */
    struct peer p = { .fd = eventfd(0, EFD_CLOEXEC), .value = FULL - 2 };
    int resample = eventfd(0, EFD_CLOEXEC);
    struct peer q = { .fd = resample, .value = 1 };
    int results[2] = { 0, 0 };
    pthread_t t, u;
    uint64_t worst = 0;

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, hostile_peer, &p), 0);
    assert_int_equal(pthread_create(&u, NULL, hostile_peer, &q), 0);
    for (int i = 0; i < 1000; i++) {
        uint64_t t0 = now_us(), took;
        int r = eventfd_signal(p.fd);

        assert_true(r == EVENTFD_ADDED || r == EVENTFD_WAS_FULL);
        results[r]++;
        assert_true(eventfd_drain(resample) >= 0);
        took = now_us() - t0;
        worst = took > worst ? took : worst;
    }
    atomic_store(&p.stop, true);
    atomic_store(&q.stop, true);
    /* The peers may wait in a write of their own: make room for them. */
    for (int i = 0; pthread_tryjoin_np(t, NULL) != 0; i++) {
        fcntl(p.fd, F_SETFL, O_NONBLOCK);
        take(p.fd);
        assert_true(i < 100000);
    }
    for (int i = 0; pthread_tryjoin_np(u, NULL) != 0; i++) {
        fcntl(resample, F_SETFL, O_NONBLOCK);
        take(resample);
        assert_true(i < 100000);
    }
    print_message("# while the peers raced: %d added, %d full; the slowest access %llu us\n",
                  results[EVENTFD_ADDED], results[EVENTFD_WAS_FULL], (unsigned long long)worst);
    assert_true(worst < 500000);
    close(p.fd);
    close(resample);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drain_never_waits),
        cmocka_unit_test(test_only_eventfds_pass),
        cmocka_unit_test(test_signal_adds_one),
        cmocka_unit_test(test_signal_into_a_full_counter),
        cmocka_unit_test(test_hint_spares_the_write),
        cmocka_unit_test(test_ticks_leave_restartable_calls_alone),
        cmocka_unit_test(test_signal_in_a_forked_child),
        cmocka_unit_test(test_ticks_end_with_their_thread),
        cmocka_unit_test(test_peer_racing_the_accesses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
