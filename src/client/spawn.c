// SPDX-License-Identifier: GPL-2.0-or-later
/* Starting a remote with sockets, as an orchestrator does. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "util/error.h"

/* "{fd}" is the first socket, "{fd1}" the second, and so on. */
static char *substitute(const char *arg, const int *fds, size_t n)
{
    char *out = strdup(arg);

    for (size_t i = 0; out && i < n; i++) {
        char tag[16], *at, *next;

        snprintf(tag, sizeof(tag), i ? "{fd%zu}" : "{fd}", i);
        while (out && (at = strstr(out, tag))) {
            if (asprintf(&next, "%.*s%d%s", (int)(at - out), out, fds[i],
                         at + strlen(tag)) < 0) {
                next = NULL;
            }
            free(out);
            out = next;
        }
    }
    return out;
}

static void exec_child(char *const *argv, const int *fds, size_t n)
{
    size_t argc = 0;
    char **args;

    while (argv[argc]) {
        argc++;
    }
    args = calloc(argc + 1, sizeof(*args));
    for (size_t i = 0; args && i < argc; i++) {
        args[i] = substitute(argv[i], fds, n);
    }
    /* Only the remote's ends cross exec; everything else is close-on-exec. */
    for (size_t i = 0; i < n; i++) {
        fcntl(fds[i], F_SETFD, 0);
    }
    if (args) {
        execvp(args[0], args);
    }
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

pid_t mpq_spawn(char *const *argv, size_t nsocks, int *socks, char **err)
{
    int remote_ends[MPQ_SPAWN_MAX_SOCKS];
    size_t made = 0;
    pid_t pid;

    if (nsocks > MPQ_SPAWN_MAX_SOCKS) {
        error_setf(err, "at most %d sockets", MPQ_SPAWN_MAX_SOCKS);
        return -1;
    }
    for (; made < nsocks; made++) {
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            error_setf(err, "socketpair: %s", strerror(errno));
            goto fail;
        }
        socks[made] = sv[0];
        remote_ends[made] = sv[1];
    }
    pid = fork();
    if (pid == 0) {
        exec_child(argv, remote_ends, nsocks);
    }
    if (pid < 0) {
        error_setf(err, "fork: %s", strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < nsocks; i++) {
        close(remote_ends[i]);
    }
    return pid;
fail:
    for (size_t i = 0; i < made; i++) {
        close(socks[i]);
        close(remote_ends[i]);
    }
    return -1;
}

int mpq_reap(pid_t pid, int timeout_ms, int *status)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        pid_t r = waitpid(pid, status, WNOHANG);

        if (r == pid) {
            return 0;
        }
        if (r < 0) {
            return -1;
        }
        nanosleep(&(struct timespec){ .tv_nsec = 5 * 1000 * 1000 }, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return 1;
}
