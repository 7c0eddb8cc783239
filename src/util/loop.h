/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A single-threaded event loop on epoll.  Every device, connection and disk
 * of a remote process is served from one loop; nothing in it may block.
 */
#ifndef MPQEMU_UTIL_LOOP_H
#define MPQEMU_UTIL_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

typedef void loop_fd_fn(void *opaque, uint32_t events);
typedef void loop_bh_fn(void *opaque);

/* A handler for one fd; embed it in the object that owns the fd. */
struct loop_watch {
    int fd;
    uint32_t events;
    loop_fd_fn *fn;
    void *opaque;
};

/*
 * A deferred call ("bottom half"): runs once from the loop after the current
 * handler returns.  Scheduling one that is already pending does nothing.
 */
struct loop_bh {
    loop_bh_fn *fn;
    void *opaque;
    bool pending;
    struct loop_bh *next;
};

/*
 * Bottom halves waiting to run together, in the order queued: the loop's,
 * and any other owner's that runs them itself (an I/O engine's deferred
 * completions, which its drain runs as well).
 */
struct loop_bh_list {
    struct loop_bh *head, *tail;
};
/* Queues bh unless it is pending already; whether it was queued. */
bool loop_bh_list_add(struct loop_bh_list *q, struct loop_bh *bh);
/* Runs the bottom halves queued so far (new ones wait for the next call); how many. */
int loop_bh_list_run(struct loop_bh_list *q);

struct loop *loop_new(void);
void loop_free(struct loop *l);

int loop_watch_add(struct loop *l, struct loop_watch *w, int fd, uint32_t events,
                   loop_fd_fn *fn, void *opaque);
int loop_watch_modify(struct loop *l, struct loop_watch *w, uint32_t events);
void loop_watch_remove(struct loop *l, struct loop_watch *w);

void loop_bh_init(struct loop_bh *bh, loop_bh_fn *fn, void *opaque);
/* CLOCK_MONOTONIC, in nanoseconds. */
uint64_t loop_now_ns(void);
void loop_bh_schedule(struct loop *l, struct loop_bh *bh);
/*
 * For a bottom half that yields (a budget spent, more work left): it runs
 * after the loop has polled its fds once more, not in the rounds of
 * bottom halves that schedule bottom halves.
 */
void loop_bh_schedule_later(struct loop *l, struct loop_bh *bh);
/*
 * For work that should see what the round did (a reply that should find
 * the I/O it started done as far as the loop could take it): runs once the
 * round's events and bottom halves have run, before the loop polls again.
 * Outside a round, as loop_bh_schedule.
 */
void loop_bh_schedule_round_end(struct loop *l, struct loop_bh *bh);
/* Whether the loop is dispatching a round of events and bottom halves. */
bool loop_in_round(const struct loop *l);
void loop_bh_cancel(struct loop *l, struct loop_bh *bh);

/*
 * Busy-polls for events before sleeping, for up to ns nanoseconds, adapting
 * to how soon events come (0: never poll).
 */
void loop_set_poll_max_ns(struct loop *l, uint64_t ns);

/*
 * SIGTERM, SIGINT and SIGHUP, blocked and read from a signalfd that 'w'
 * watches (SIGPIPE ignored): the fd (the caller closes it), or -1 with
 * errno.  Blocked, they are queued even for the init of a PID namespace
 * (mpqemu-launch's confinement), which would otherwise ignore them.
 */
int loop_watch_termination(struct loop *l, struct loop_watch *w, loop_fd_fn *fn, void *opaque);

/*
 * Neither runs a round inside a round: called from a handler or a bottom
 * half of this loop, they return -1 with errno EDEADLK (and a log line).
 */

/* Runs handlers until loop_quit(); returns the code given to loop_quit(). */
int loop_run(struct loop *l);
/*
 * One round, for programs that drive the loop themselves (fuzzers, tests):
 * waits up to timeout_ms for events (not at all while bottom halves are
 * pending; -1: no limit), runs their handlers, then the bottom halves (and
 * those they schedule, up to a few rounds).
 * Returns how many handlers and bottom halves ran, or -1 on error.
 */
int loop_run_once(struct loop *l, int timeout_ms);
void loop_quit(struct loop *l, int code);

#endif
