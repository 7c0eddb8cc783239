// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The loop's rounds of bottom halves: a chain (one scheduling the next)
 * runs in one round of the loop; one that yields runs once per poll, so
 * that fds ready meanwhile are served between its runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/loop.h"

/*
 * A bottom half that schedules the next: the whole chain runs in one loop
 * round, as long as the SCRIPTS of a 1 MiB READ of Linux's sym53c8xx (15 to
 * 30 bottom halves, src/util/loop.c's BH_ROUNDS): the reply sent at the
 * round's end must find the command done.
 */
enum { CHAIN = 40 };
static int order[CHAIN + 2], n_order;    /* the chain and two round-end runs */
static struct loop *the_loop;
static struct loop_bh links[CHAIN];

static void link_fn(void *opaque)
{
    int i = (int)(intptr_t)opaque;

    order[n_order++] = i;
    if (i + 1 < CHAIN) {
        loop_bh_schedule(the_loop, &links[i + 1]);
    }
}

static void test_chain_runs_in_one_round(void **state)
{
    (void)state;
    the_loop = loop_new();
    n_order = 0;
    for (int i = 0; i < CHAIN; i++) {
        loop_bh_init(&links[i], link_fn, (void *)(intptr_t)i);
    }
    loop_bh_schedule(the_loop, &links[0]);
    assert_int_equal(loop_run_once(the_loop, 0), CHAIN);
    assert_int_equal(n_order, CHAIN);
    for (int i = 0; i < CHAIN; i++) {
        assert_int_equal(order[i], i);
    }
    loop_free(the_loop);
}

/* A yielding bottom half and an fd that is ready: the fd is served after each run. */
static int yields, fd_served;
static struct loop_bh yielder;

static void yield_fn(void *opaque)
{
    (void)opaque;
    yields++;
    if (yields < 5) {
        loop_bh_schedule_later(the_loop, &yielder);
    }
}

static void on_fd(void *opaque, uint32_t events)
{
    (void)opaque;
    (void)events;
    fd_served++;
}

static void test_yield_lets_fds_in(void **state)
{
    struct loop_watch w;
    int efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);     /* always ready */

    (void)state;
    the_loop = loop_new();
    yields = fd_served = 0;
    assert_int_equal(loop_watch_add(the_loop, &w, efd, EPOLLIN, on_fd, NULL), 0);
    loop_bh_init(&yielder, yield_fn, NULL);
    loop_bh_schedule(the_loop, &yielder);
    /* One run of it per poll, the fd served in each. */
    for (int i = 0; i < 6; i++) {
        assert_true(loop_run_once(the_loop, 0) > 0);
        assert_int_equal(yields, i < 5 ? i + 1 : 5);
        assert_int_equal(fd_served, i + 1);
    }
    assert_false(yielder.pending);
    /* Scheduled to yield outside a round (a harness driving a device): it runs at the next. */
    yields = 0;
    loop_bh_schedule_later(the_loop, &yielder);
    loop_run_once(the_loop, 1000);
    assert_int_equal(yields, 1);
    assert_true(yielder.pending);
    /* Cancelled while it waits, in either list: gone, and can be scheduled again. */
    loop_bh_cancel(the_loop, &yielder);
    assert_false(yielder.pending);
    loop_bh_schedule_later(the_loop, &yielder);
    loop_bh_cancel(the_loop, &yielder);
    assert_false(yielder.pending);
    loop_run_once(the_loop, 0);
    assert_int_equal(yields, 1);
    loop_bh_schedule(the_loop, &yielder);
    loop_run_once(the_loop, 0);
    assert_int_equal(yields, 2);
    loop_bh_cancel(the_loop, &yielder);
    loop_watch_remove(the_loop, &w);
    close(efd);
    loop_free(the_loop);
}

/*
 * A round-end bottom half runs after the round's chain, however long, once;
 * what it schedules runs in the next round; outside a round it is an
 * ordinary bottom half; cancelled, it does not run.
 */
static struct loop_bh ender, after_end;
static int ended_after;     /* n_order when it ran */

static void end_fn(void *opaque)
{
    (void)opaque;
    ended_after = n_order;
    loop_bh_schedule(the_loop, &after_end);
}

static void after_end_fn(void *opaque)
{
    (void)opaque;
    order[n_order++] = 99;
}

static void start_chain_and_end(void *opaque)
{
    (void)opaque;
    loop_bh_schedule_round_end(the_loop, &ender);
    loop_bh_schedule(the_loop, &links[0]);
}

static void end_then_cancel(void *opaque)
{
    (void)opaque;
    loop_bh_schedule_round_end(the_loop, &ender);
    assert_true(ender.pending);
    loop_bh_cancel(the_loop, &ender);
}

static void test_round_end_sees_the_round(void **state)
{
    struct loop_bh starter;

    (void)state;
    the_loop = loop_new();
    n_order = 0;
    ended_after = -1;
    for (int i = 0; i < CHAIN; i++) {
        loop_bh_init(&links[i], link_fn, (void *)(intptr_t)i);
    }
    loop_bh_init(&ender, end_fn, NULL);
    loop_bh_init(&after_end, after_end_fn, NULL);
    loop_bh_init(&starter, start_chain_and_end, NULL);
    assert_false(loop_in_round(the_loop));
    loop_bh_schedule(the_loop, &starter);
    loop_run_once(the_loop, 0);
    assert_int_equal(ended_after, CHAIN);       /* the whole chain ran before it */
    assert_int_equal(n_order, CHAIN);           /* what it scheduled waits */
    assert_true(after_end.pending);
    loop_run_once(the_loop, 0);
    assert_int_equal(n_order, CHAIN + 1);
    assert_int_equal(order[CHAIN], 99);
    assert_false(loop_in_round(the_loop));
    /* Outside a round: an ordinary bottom half. */
    ended_after = -1;
    loop_bh_schedule_round_end(the_loop, &ender);
    loop_run_once(the_loop, 0);
    assert_int_equal(ended_after, CHAIN + 1);
    loop_run_once(the_loop, 0);
    /* Cancelled inside the round that scheduled it: it never runs. */
    ended_after = -1;
    loop_bh_init(&starter, end_then_cancel, NULL);
    loop_bh_schedule(the_loop, &starter);
    loop_run_once(the_loop, 0);
    assert_int_equal(ended_after, -1);
    assert_false(ender.pending);
    loop_free(the_loop);
}

/*
 * One bottom half cancels the next of the same round, which must not run
 * (its owner may be gone); cancelled and scheduled again, it runs once and
 * the ones after it in the round are not lost.
 */
static struct loop_bh trio[3];
static int trio_ran[3];
static bool reschedule;

static void trio_fn(void *opaque)
{
    int i = (int)(intptr_t)opaque;

    trio_ran[i]++;
    if (i == 0) {
        loop_bh_cancel(the_loop, &trio[1]);
        if (reschedule) {
            loop_bh_schedule(the_loop, &trio[1]);
        }
    }
}

static void test_cancelled_in_the_round(void **state)
{
    (void)state;
    the_loop = loop_new();
    for (int i = 0; i < 3; i++) {
        loop_bh_init(&trio[i], trio_fn, (void *)(intptr_t)i);
    }
    for (int pass = 0; pass < 2; pass++) {
        reschedule = pass == 1;
        memset(trio_ran, 0, sizeof(trio_ran));
        for (int i = 0; i < 3; i++) {
            loop_bh_schedule(the_loop, &trio[i]);
        }
        loop_run_once(the_loop, 0);
        assert_int_equal(trio_ran[0], 1);
        assert_int_equal(trio_ran[1], reschedule ? 1 : 0);
        assert_int_equal(trio_ran[2], 1);
        for (int i = 0; i < 3; i++) {
            assert_false(trio[i].pending);
        }
    }
    loop_free(the_loop);
}

/*
 * A handler, a bottom half and a round-end bottom half each try to run the
 * loop from inside its round: refused (EDEADLK), and the outer round goes
 * on with its own batch (the other ready fd served once) and runs its
 * round-end bottom half once, after the rest of the round.
 */
static struct loop_bh nest_bh, nest_end;
static int nest_tries, nest_order[4], n_nest_order, served_a, served_b;
static bool nesting;    /* in a try: nothing of the loop may run meanwhile */

static void try_nesting(void)
{
    nesting = true;
    errno = 0;
    assert_int_equal(loop_run_once(the_loop, 0), -1);
    assert_int_equal(errno, EDEADLK);
    errno = 0;
    assert_int_equal(loop_run(the_loop), -1);
    assert_int_equal(errno, EDEADLK);
    nesting = false;
    nest_tries++;
}

static void nest_bh_fn(void *opaque)
{
    (void)opaque;
    assert_false(nesting);
    nest_order[n_nest_order++] = 1;
    try_nesting();
}

static void nest_end_fn(void *opaque)
{
    (void)opaque;
    assert_false(nesting);
    nest_order[n_nest_order++] = 2;
    try_nesting();
}

static void on_fd_nesting(void *opaque, uint32_t events)
{
    (void)events;
    assert_false(nesting);
    if (opaque) {
        served_b++;
        return;
    }
    served_a++;
    loop_bh_schedule_round_end(the_loop, &nest_end);
    loop_bh_schedule(the_loop, &nest_bh);
    if (served_a == 1) {
        try_nesting();
    }
}

static void test_no_round_inside_a_round(void **state)
{
    struct loop_watch a, b;
    int fa = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK), fb = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);

    (void)state;
    the_loop = loop_new();
    served_a = served_b = nest_tries = n_nest_order = 0;
    nesting = false;
    loop_bh_init(&nest_bh, nest_bh_fn, NULL);
    loop_bh_init(&nest_end, nest_end_fn, NULL);
    assert_int_equal(loop_watch_add(the_loop, &a, fa, EPOLLIN, on_fd_nesting, NULL), 0);
    assert_int_equal(loop_watch_add(the_loop, &b, fb, EPOLLIN, on_fd_nesting, &b), 0);
    assert_int_equal(loop_run_once(the_loop, 0), 4);
    assert_int_equal(served_a, 1);
    assert_int_equal(served_b, 1);
    assert_int_equal(nest_tries, 3);
    assert_int_equal(n_nest_order, 2);
    assert_int_equal(nest_order[0], 1);         /* the bottom half, then the round's end */
    assert_int_equal(nest_order[1], 2);
    assert_false(loop_in_round(the_loop));
    /* The loop is whole: the next round serves both again. */
    assert_int_equal(loop_run_once(the_loop, 0), 4);
    assert_int_equal(served_a, 2);
    assert_int_equal(served_b, 2);
    loop_watch_remove(the_loop, &a);
    loop_watch_remove(the_loop, &b);
    close(fa);
    close(fb);
    loop_free(the_loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_runs_in_one_round),
        cmocka_unit_test(test_yield_lets_fds_in),
        cmocka_unit_test(test_round_end_sees_the_round),
        cmocka_unit_test(test_cancelled_in_the_round),
        cmocka_unit_test(test_no_round_inside_a_round),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
