// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kill-in-allocation [--timeout SECONDS] PID IMAGE
 *
 * SIGKILLs the device process PID in the middle of a cluster allocation of
 * the qcow2 image IMAGE, with ptrace (tests/functional/tracer.c), and
 * prints where:
 *
 *   killed PID at io_uring_enter, IMAGE grown from 327680 to 344064 bytes ns NS
 *
 * (or "at pwritev": small writes the process makes itself, block/aio.c).
 *
 * NS is CLOCK_MONOTONIC at the kill.  For the guest restart tests.  qcow2
 * submits its reads and writes, data and metadata, to io_uring, but for
 * small writes the loop makes itself with pwritev; a submission is either
 * of those two system calls.  A new
 * cluster goes at the end of the file, which grows when the file is made
 * to cover it (fallocate) or when it is written past the old end.  Either
 * way the L2 entry that points to it reaches the file only in a later
 * submission (after the data and the counts are written, under a keeper
 * before the guest's write completes): an image that has grown since the
 * last submission is in the middle of an allocation.  The kill comes at
 * the entry of the next submission, before it submits or writes anything.
 * Exit status 0 when killed so, 1 when the process died first or could not
 * be traced; past the timeout (default 30 s) the process is let go and this
 * one dies of SIGALRM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tracer.h"

struct image {
    const char *path;
    long long last, grown_from;     /* sizes: at the last submission; before the growth */
    const char *call;               /* the one killed at */
};

static long long size_of(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static bool image_grew(pid_t pid, const struct syscall_stop *s, void *opaque)
{
    struct image *im = opaque;
    long long now;

    (void)pid;
    if (!s->entry || (s->nr != SYS_io_uring_enter && s->nr != SYS_pwritev)) {
        return false;
    }
    now = size_of(im->path);
    if (im->last >= 0 && now > im->last) {
        im->grown_from = im->last;
        im->last = now;
        im->call = s->nr == SYS_pwritev ? "pwritev" : "io_uring_enter";
        return true;
    }
    im->last = now;
    return false;
}

int main(int argc, char **argv)
{
    struct tracer_kill k = { 0 };
    struct image im = { .last = -1 };
    unsigned timeout = 30;
    pid_t pid;

    if (argc == 5 && !strcmp(argv[1], "--timeout")) {
        timeout = (unsigned)strtoul(argv[2], NULL, 10);
        argv += 2;
        argc -= 2;
    }
    if (argc != 3 || (pid = (pid_t)strtol(argv[1], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: kill-in-allocation [--timeout SECONDS] PID IMAGE\n");
        return 2;
    }
    im.path = argv[2];
    if (size_of(im.path) < 0) {
        fprintf(stderr, "kill-in-allocation: no file '%s'\n", im.path);
        return 2;
    }
    alarm(timeout);
    if (tracer_seize(pid) < 0) {
        perror("kill-in-allocation: ptrace");
        return 1;
    }
    if (tracer_kill_at(pid, image_grew, &im, &k) != 1) {
        fprintf(stderr, "kill-in-allocation: %d ended before %s grew\n", (int)pid, im.path);
        return 1;
    }
    printf("killed %d at %s, %s grown from %lld to %lld bytes ns %llu\n", (int)pid, im.call,
           im.path, im.grown_from, im.last, (unsigned long long)k.ns);
    return 0;
}
