// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

/*
 * BH_ROUNDS: how many times over a round runs the bottom halves that
 * bottom halves scheduled (dispatch()).  A 1 MiB READ of Linux's sym53c8xx
 * takes 15 to 30 (its SCRIPTS go on after each piece of the transfer, a
 * bottom half each); with fewer, the reply to its doorbell write left at the
 * round's end with the command half done, and a guest that polls for
 * completions (x-pci-proxy-dev under TCG) found it only at a later poll.
 */
enum { MAX_EVENTS = 32, BH_ROUNDS = 64 };

struct loop {
    int epfd;
    uint64_t poll_max_ns;   /* the most we busy-poll before sleeping */
    uint64_t poll_ns;       /* what we poll now: adapts between 0 and the max */
    bool quit;
    int exit_code;
    struct loop_bh_list bhs;
    struct loop_bh_list later;      /* loop_bh_schedule_later's: join bhs after the rounds */
    struct loop_bh_list round_end;  /* loop_bh_schedule_round_end's */
    bool in_round;                  /* dispatching events and bottom halves */
    bool dispatching;               /* in_round or running round_end: no round may nest */
    /*
     * Events fetched but not yet dispatched.  A handler may remove a watch
     * whose event is still in this batch; removal clears it here so that it
     * is never dispatched to freed memory.
     */
    struct epoll_event batch[MAX_EVENTS];
    int batch_len;
};

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof(*l));

    if (!l) {
        return NULL;
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    return l;
}

void loop_free(struct loop *l)
{
    if (l) {
        close(l->epfd);
        free(l);
    }
}

int loop_watch_add(struct loop *l, struct loop_watch *w, int fd, uint32_t events,
                   loop_fd_fn *fn, void *opaque)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };

    *w = (struct loop_watch){ .fd = fd, .events = events, .fn = fn, .opaque = opaque };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_error("epoll_ctl(ADD, fd %d): %s", fd, strerror(errno));
        w->fd = -1;
        return -1;
    }
    return 0;
}

int loop_watch_modify(struct loop *l, struct loop_watch *w, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };

    if (w->events == events) {
        return 0;
    }
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0) {
        log_error("epoll_ctl(MOD, fd %d): %s", w->fd, strerror(errno));
        return -1;
    }
    w->events = events;
    return 0;
}

void loop_watch_remove(struct loop *l, struct loop_watch *w)
{
    if (w->fd < 0) {
        return;
    }
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    for (int i = 0; i < l->batch_len; i++) {
        if (l->batch[i].data.ptr == w) {
            l->batch[i].data.ptr = NULL;
        }
    }
    w->fd = -1;
}

void loop_bh_init(struct loop_bh *bh, loop_bh_fn *fn, void *opaque)
{
    *bh = (struct loop_bh){ .fn = fn, .opaque = opaque };
}

bool loop_bh_list_add(struct loop_bh_list *q, struct loop_bh *bh)
{
    if (bh->pending) {
        return false;
    }
    bh->pending = true;
    bh->next = NULL;
    if (q->tail) {
        q->tail->next = bh;
    } else {
        q->head = bh;
    }
    q->tail = bh;
    return true;
}

/*
 * Each is taken off the list just before it runs, so that one cancelled
 * by an earlier one of the same call is gone from it (a detached copy of
 * the list would still run it, and scheduling it again there would cut
 * the copy).  New ones wait: the call stops at the last one it found, or
 * after as many as it found if that one was cancelled.
 */
int loop_bh_list_run(struct loop_bh_list *q)
{
    struct loop_bh *last = q->tail;
    int found = 0, ran = 0;

    for (struct loop_bh *bh = q->head; bh; bh = bh->next) {
        found++;
    }
    while (q->head && ran < found) {
        struct loop_bh *bh = q->head;

        q->head = bh->next;
        if (!q->head) {
            q->tail = NULL;
        }
        bh->pending = false;
        bh->fn(bh->opaque);
        ran++;
        if (bh == last) {
            break;
        }
    }
    return ran;
}

void loop_bh_schedule(struct loop *l, struct loop_bh *bh)
{
    loop_bh_list_add(&l->bhs, bh);
}

static bool list_remove(struct loop_bh_list *q, struct loop_bh *bh)
{
    struct loop_bh **pp = &q->head, *prev = NULL;

    while (*pp && *pp != bh) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) {
        return false;
    }
    *pp = bh->next;
    if (q->tail == bh) {
        q->tail = prev;
    }
    return true;
}

void loop_bh_schedule_later(struct loop *l, struct loop_bh *bh)
{
    loop_bh_list_add(&l->later, bh);
}

void loop_bh_cancel(struct loop *l, struct loop_bh *bh)
{
    if (!bh->pending) {
        return;
    }
    if (!list_remove(&l->bhs, bh) && !list_remove(&l->later, bh)) {
        list_remove(&l->round_end, bh);
    }
    bh->pending = false;
}

bool loop_in_round(const struct loop *l)
{
    return l->in_round;
}

void loop_bh_schedule_round_end(struct loop *l, struct loop_bh *bh)
{
    loop_bh_list_add(l->in_round ? &l->round_end : &l->bhs, bh);
}

/* Those that yielded run after the next poll, however many rounds of bottom halves ran. */
static void splice_later(struct loop *l)
{
    if (!l->later.head) {
        return;
    }
    if (l->bhs.tail) {
        l->bhs.tail->next = l->later.head;
    } else {
        l->bhs.head = l->later.head;
    }
    l->bhs.tail = l->later.tail;
    l->later.head = l->later.tail = NULL;
}

uint64_t loop_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Adapts the polling time as QEMU's iothreads do: a wakeup that came soon
 * after we gave up polling says polling longer would have caught it; a long
 * sleep says polling was wasted.
 */
static void adapt_poll(struct loop *l, uint64_t slept_ns)
{
    enum { POLL_START_NS = 4000 };

    if (slept_ns > l->poll_max_ns) {
        l->poll_ns /= 2;
        if (l->poll_ns < POLL_START_NS) {
            l->poll_ns = 0;
        }
    } else if (l->poll_ns < l->poll_max_ns) {
        l->poll_ns = l->poll_ns ? l->poll_ns * 2 : POLL_START_NS;
        if (l->poll_ns > l->poll_max_ns) {
            l->poll_ns = l->poll_max_ns;
        }
    }
}

/*
 * Waits for events.  A peer that sends its next request soon after our
 * reply finds us awake: spinning costs CPU but saves the cross-core wakeup,
 * which costs tens of microseconds.
 */
static int wait_events(struct loop *l)
{
    uint64_t start;
    int n;

    splice_later(l);    /* scheduled outside a round (a harness driving a device) */
    if (l->bhs.head) {
        return epoll_wait(l->epfd, l->batch, MAX_EVENTS, 0);
    }
    if (!l->poll_max_ns) {
        return epoll_wait(l->epfd, l->batch, MAX_EVENTS, -1);
    }
    start = loop_now_ns();
    while (loop_now_ns() - start < l->poll_ns) {
        n = epoll_wait(l->epfd, l->batch, MAX_EVENTS, 0);
        if (n != 0) {
            return n;
        }
    }
    n = epoll_wait(l->epfd, l->batch, MAX_EVENTS, -1);
    adapt_poll(l, loop_now_ns() - start);
    return n;
}

void loop_set_poll_max_ns(struct loop *l, uint64_t ns)
{
    l->poll_max_ns = ns;
    l->poll_ns = ns;
}

/* Runs the handlers of n fetched events, then the bottom halves; how many ran. */
static int dispatch(struct loop *l, int n)
{
    int ran = 0;

    l->dispatching = l->in_round = true;
    l->batch_len = n;
    for (int i = 0; i < n && !l->quit; i++) {
        struct loop_watch *w = l->batch[i].data.ptr;

        if (w) {
            w->fn(w->opaque, l->batch[i].events);
            ran++;
        }
    }
    l->batch_len = 0;
    /*
     * Bottom halves that schedule more (a completion that runs a device on)
     * run in the same round, a few times over, rather than each after a
     * poll for fds that costs a system call; the bound keeps fds served.
     */
    for (int round = 0; round < BH_ROUNDS && l->bhs.head && !l->quit; round++) {
        ran += loop_bh_list_run(&l->bhs);
    }
    l->in_round = false;
    /* What they schedule runs in the next round. */
    ran += loop_bh_list_run(&l->round_end);
    splice_later(l);
    l->dispatching = false;
    return ran;
}

/*
 * A round inside a round (a handler or bottom half that runs the loop)
 * would fetch its events into the batch the outer round is still going
 * through and run the outer round's round-end bottom halves before its
 * work is done: refused.
 */
static bool refuse_nested(struct loop *l, const char *what)
{
    if (!l->dispatching) {
        return false;
    }
    log_error("%s called from inside a round of the loop: refused", what);
    errno = EDEADLK;
    return true;
}

int loop_run(struct loop *l)
{
    if (refuse_nested(l, "loop_run")) {
        return -1;
    }
    l->quit = false;
    while (!l->quit) {
        int n = wait_events(l);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_error("epoll_wait: %s", strerror(errno));
            return 1;
        }
        dispatch(l, n);
    }
    return l->exit_code;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    int n;

    if (refuse_nested(l, "loop_run_once")) {
        return -1;
    }
    splice_later(l);
    n = epoll_wait(l->epfd, l->batch, MAX_EVENTS, l->bhs.head ? 0 : timeout_ms);

    if (n < 0) {
        return errno == EINTR ? 0 : -1;
    }
    l->quit = false;
    return dispatch(l, n);
}

void loop_quit(struct loop *l, int code)
{
    l->quit = true;
    l->exit_code = code;
}

int loop_watch_termination(struct loop *l, struct loop_watch *w, loop_fd_fn *fn, void *opaque)
{
    sigset_t set;
    int fd;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) {
        return -1;
    }
    if (loop_watch_add(l, w, fd, EPOLLIN, fn, opaque) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}
