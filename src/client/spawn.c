// SPDX-License-Identifier: GPL-2.0-or-later
/* Starting a remote with sockets, as an orchestrator does. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "util/error.h"

/* Every "tag" in arg replaced by value; NULL when out of memory. */
static char *replace_tag(char *arg, const char *tag, const char *value)
{
    char *at;

    while (arg && (at = strstr(arg, tag))) {
        char *next;

        if (asprintf(&next, "%.*s%s%s", (int)(at - arg), arg, value, at + strlen(tag)) < 0) {
            next = NULL;
        }
        free(arg);
        arg = next;
    }
    return arg;
}

/* "{fd}" is the first socket, "{fd1}" the second, and so on. */
static char *substitute(const char *arg, const int *fds, size_t n)
{
    char *out = strdup(arg);

    for (size_t i = 0; out && i < n; i++) {
        char tag[16], value[16];

        snprintf(tag, sizeof(tag), i ? "{fd%zu}" : "{fd}", i);
        snprintf(value, sizeof(value), "%d", fds[i]);
        out = replace_tag(out, tag, value);
    }
    return out;
}

static bool mentions(char *const *argv, const char *tag)
{
    for (size_t i = 0; argv[i]; i++) {
        if (strstr(argv[i], tag)) {
            return true;
        }
    }
    return false;
}

int mpq_remote_start(struct mpq_remote *r, char *const *argv, int timeout_ms, char **err)
{
    size_t argc = 0;
    char **args;
    int sock;

    memset(r, 0, sizeof(*r));
    if (!mentions(argv, "{socket}")) {
        r->pid = mpq_spawn(argv, 1, &sock, err);
        if (r->pid < 0 || !(r->dev = mpq_open_mpqemu(sock, err))) {
            return -1;
        }
        return 0;
    }
    strcpy(r->dir, "/tmp/mpqemu-XXXXXX");
    if (!mkdtemp(r->dir)) {
        error_setf(err, "mkdtemp: %s", strerror(errno));
        r->dir[0] = '\0';
        return -1;
    }
    snprintf(r->path, sizeof(r->path), "%s/vfio-user.sock", r->dir);
    while (argv[argc]) {
        argc++;
    }
    args = calloc(argc + 1, sizeof(*args));
    for (size_t i = 0; args && i < argc; i++) {
        args[i] = replace_tag(strdup(argv[i]), "{socket}", r->path);
    }
    r->vfio_user = true;
    r->pid = args ? mpq_spawn(args, 0, NULL, err) : -1;
    for (size_t i = 0; args && i < argc; i++) {
        free(args[i]);
    }
    free(args);
    if (r->pid < 0 || !(r->dev = mpq_open_vfio_user_wait(r->path, r->pid, timeout_ms, err))) {
        return -1;
    }
    return 0;
}

int mpq_remote_stop(struct mpq_remote *r, int timeout_ms, int *status)
{
    int rc = 0;

    mpq_close(r->dev);
    r->dev = NULL;
    if (r->pid > 0) {
        /* A vfio-user server waits for its next client: tell it to go. */
        if (r->vfio_user) {
            kill(r->pid, SIGTERM);
        }
        rc = mpq_reap(r->pid, timeout_ms, status);
        r->pid = 0;
    }
    if (r->dir[0]) {
        unlink(r->path);
        rmdir(r->dir);
        r->dir[0] = '\0';
    }
    return rc;
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
    pid_t pid, parent;

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
    parent = getpid();
    pid = fork();
    if (pid == 0) {
        /* A remote we started goes with us, even if we die without stopping it. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent) {
            _exit(127);
        }
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
