// SPDX-License-Identifier: GPL-2.0-or-later
#include "remote/keeper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "block/nbd-target.h"
#include "proto/relay.h"
#include "remote/cmdline.h"
#include "remote/sandbox.h"
#include "util/checkpoint.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/opts.h"

enum {
    /* A new device process listens on its vfio-user sockets within this. */
    CONNECT_TIMEOUT_MS = 10000,
    /* A device side that closes: the process's death follows within this, if it dies. */
    DEATH_GRACE_MS = 500,
};

struct keeper;
struct endpoint;

/* What the keeper does differently for each protocol. */
struct keeper_protocol {
    const char *object_type;
    const struct relay_proto *relay;
    /* Takes the VMM-facing endpoint from the -object options. */
    int (*take)(struct endpoint *e, struct opts *o, char **err);
    /* Before a device process starts: its end of the connection. */
    int (*prepare_device)(struct endpoint *e, char **err);
    /* The endpoint as the device process's -object (or positional) argument. */
    char *(*device_argument)(const struct endpoint *e);
    /* The device process has started: connect it. */
    void (*device_started)(struct endpoint *e);
    /* The VMM has gone. */
    void (*vmm_gone)(struct endpoint *e);
    /* The keeper ends. */
    void (*cleanup)(struct endpoint *e);
};

struct endpoint {
    struct keeper *k;
    const struct keeper_protocol *proto;
    char *id, *devid;           /* the object's; none for the positional fd */
    char *name;                 /* in messages */
    bool positional;
    /* Multi-process: the proxy's socket until attached; the device's end while it starts. */
    int vmm_fd;
    int our_end, child_end;
    bool ended;                 /* the proxy has gone: this device is served no more */
    /* vfio-user: the user's socket, and the device process's private one. */
    char *path, *private_path;
    int listen_fd;
    struct loop_watch listen_watch;
    struct relay_link link;
};

struct keeper {
    struct loop *loop;
    struct endpoint *endpoints;
    size_t n_endpoints;
    char binary[PATH_MAX];
    int argc;
    char **argv;
    int checkpoint_fd;
    char dir[80];               /* private sockets of the device process */
    pid_t child;
    int pidfd;
    struct loop_watch pid_watch;
    unsigned max_restarts, window_s;
    uint64_t *restart_times;    /* the last max_restarts, oldest first */
    size_t n_restart_times;
    unsigned restarts;
    int sigfd;
    struct loop_watch sig_watch;
    bool stopping;
    bool had_error;             /* a VMM connection ended on a fault: exit 1, as the remote */
};

/* --- options -------------------------------------------------------------------------- */

static int parse_restart(const char *text, bool *on, unsigned *max, unsigned *window, char **err)
{
    struct opts *o = opts_parse(text, "enable", err);
    const char *state;
    uint64_t n = RESTART_DEFAULT_MAX, w = RESTART_DEFAULT_WINDOW_S;
    int r = -1;

    if (!o) {
        return -1;
    }
    state = opts_get(o, "enable");
    *on = false;
    if (state && parse_bool(state, on) < 0) {
        error_setf(err, "-restart: '%s' is not on or off", state);
    } else if (opts_get_uint(o, "max", RESTART_DEFAULT_MAX, RESTART_MAX_LIMIT, &n, err) == 0 &&
               opts_get_uint(o, "window", RESTART_DEFAULT_WINDOW_S, RESTART_WINDOW_LIMIT_S, &w,
                             err) == 0 &&
               opts_check_all_used(o, "-restart", err) == 0) {
        if (w == 0) {
            error_setf(err, "-restart: window must be at least 1 second");
        } else {
            *max = (unsigned)n;
            *window = (unsigned)w;
            r = 0;
        }
    }
    opts_free(o);
    return r;
}

int keeper_wanted(const struct remote_cmdline *cl)
{
    unsigned max, window;
    char *err = NULL;
    bool on;

    if (!cl->restart) {
        return 0;
    }
    if (parse_restart(cl->restart, &on, &max, &window, &err) < 0) {
        log_error("%s", err ? err : "-restart: parse error");
        free(err);
        return -1;
    }
    if (on && cl->checkpoint) {
        log_error("-restart and -x-checkpoint do not go together");
        return -1;
    }
    return on;
}

/* "a,b" as an option value: "a,,b". */
static char *escaped(const char *s)
{
    size_t n = strlen(s), commas = 0;
    char *out, *p;

    for (size_t i = 0; i < n; i++) {
        commas += s[i] == ',';
    }
    if (!(out = malloc(n + commas + 1))) {
        return NULL;
    }
    p = out;
    for (size_t i = 0; i < n; i++) {
        *p++ = s[i];
        if (s[i] == ',') {
            *p++ = ',';
        }
    }
    *p = '\0';
    return out;
}

/* TYPE,id=ID,KEY=DEVID,ENDPOINT (values escaped); NULL when out of memory. */
static char *object_argument(const char *type, const char *id, const char *key,
                             const char *devid, const char *endpoint)
{
    char *eid = escaped(id), *edev = escaped(devid), *out = NULL;

    if (eid && edev && asprintf(&out, "%s,id=%s,%s=%s,%s", type, eid, key, edev, endpoint) < 0) {
        out = NULL;
    }
    free(eid);
    free(edev);
    return out;
}

/* --- the multi-process protocol: an inherited socket, a socket pair to the device ------- */

static int mpqemu_take_fd(struct endpoint *e, int fd, char **err)
{
    if (fcntl(fd, F_GETFD) < 0 || !fd_is_socket(fd)) {
        error_setf(err, "fd %d is not an open socket", fd);
        return -1;
    }
    /* Ours alone: the device process talks to us, never to the proxy. */
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    e->vmm_fd = fd;
    return 0;
}

static int mpqemu_take(struct endpoint *e, struct opts *o, char **err)
{
    const char *text = opts_get(o, "fd");
    uint64_t fd;

    if (!text || parse_uint(text, &fd) < 0 || fd > 1000000) {
        error_setf(err, "x-remote-object '%s': fd must be a file descriptor number", e->id);
        return -1;
    }
    return mpqemu_take_fd(e, (int)fd, err);
}

static int mpqemu_prepare_device(struct endpoint *e, char **err)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        error_setf(err, "socketpair: %s", strerror(errno));
        return -1;
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    e->our_end = sv[0];
    e->child_end = sv[1];
    return 0;
}

static char *mpqemu_device_argument(const struct endpoint *e)
{
    char fd[32], endpoint[40];

    snprintf(fd, sizeof(fd), "%d", e->child_end);
    if (e->positional) {
        return strdup(fd);
    }
    snprintf(endpoint, sizeof(endpoint), "fd=%s", fd);
    return object_argument("x-remote-object", e->id, "devid", e->devid, endpoint);
}

static void mpqemu_device_started(struct endpoint *e)
{
    int ours = e->our_end;

    e->our_end = -1;
    if (e->ended) {
        close(ours);    /* the proxy has gone: that server of the new process ends at once */
        return;
    }
    if (relay_attach_device(&e->link, ours) < 0) {
        log_error("%s: cannot watch the device process's socket", e->name);
    }
}

static void mpqemu_vmm_gone(struct endpoint *e)
{
    e->ended = true;
}

static void mpqemu_cleanup(struct endpoint *e)
{
    if (e->vmm_fd >= 0) {
        close(e->vmm_fd);
    }
    if (e->our_end >= 0) {
        close(e->our_end);
    }
}

static const struct keeper_protocol mpqemu_keeper = {
    .object_type = "x-remote-object",
    .relay = &mpqemu_relay_proto,
    .take = mpqemu_take,
    .prepare_device = mpqemu_prepare_device,
    .device_argument = mpqemu_device_argument,
    .device_started = mpqemu_device_started,
    .vmm_gone = mpqemu_vmm_gone,
    .cleanup = mpqemu_cleanup,
};

/* --- vfio-user: the user's path is ours, the device process listens on a private one ---- */

static void on_vfio_user_client(void *opaque, uint32_t events);

/*
 * The device process's sockets go in a directory of their own beside the
 * user's socket (where an orchestrator lets us write: mpqemu-launch's run
 * directory), or in /tmp when that path would be too long for a socket.
 */
static int make_private_dir(struct keeper *k, const char *socket_path, char **err)
{
    const char *slash = strrchr(socket_path, '/');
    int dir_len = slash ? (int)(slash - socket_path) : 1;

    if (snprintf(k->dir, sizeof(k->dir), "%.*s/.mpqemu-keeper-XXXXXX", dir_len,
                 slash ? socket_path : ".") >= (int)sizeof(k->dir) || !mkdtemp(k->dir)) {
        snprintf(k->dir, sizeof(k->dir), "/tmp/mpqemu-keeper-XXXXXX");
        if (!mkdtemp(k->dir)) {
            error_setf(err, "mkdtemp: %s", strerror(errno));
            k->dir[0] = '\0';
            return -1;
        }
    }
    return 0;
}

static int vfio_user_take(struct endpoint *e, struct opts *o, char **err)
{
    const char *type = opts_get(o, "socket.type"), *path = opts_get(o, "socket.path");
    struct keeper *k = e->k;

    if (!type || strcmp(type, "unix") || !path || !*path) {
        error_setf(err, "x-vfio-user-server '%s': needs socket.type=unix and socket.path=PATH",
                   e->id);
        return -1;
    }
    if (!k->dir[0] && make_private_dir(k, path, err) < 0) {
        return -1;
    }
    if (!(e->path = strdup(path)) ||
        asprintf(&e->private_path, "%s/%zu.sock", k->dir, (size_t)(e - k->endpoints)) < 0) {
        e->private_path = NULL;
        error_setf(err, "out of memory");
        return -1;
    }
    if ((e->listen_fd = sock_listen_unix(path, err)) < 0) {
        error_prefix(err, "x-vfio-user-server '%s'", e->id);
        return -1;
    }
    return 0;
}

static int vfio_user_prepare_device(struct endpoint *e, char **err)
{
    (void)e;
    (void)err;
    return 0;
}

static char *vfio_user_device_argument(const struct endpoint *e)
{
    char *path = escaped(e->private_path), *endpoint = NULL, *arg;

    if (!path || asprintf(&endpoint, "socket.type=unix,socket.path=%s", path) < 0) {
        free(path);
        return NULL;
    }
    arg = object_argument("x-vfio-user-server", e->id, "device", e->devid, endpoint);
    free(path);
    free(endpoint);
    return arg;
}

static bool child_alive(struct keeper *k)
{
    struct pollfd p = { .fd = k->pidfd, .events = POLLIN };

    return k->pidfd >= 0 && poll(&p, 1, 0) == 0;
}

/*
 * Connects the device side once the device process listens (it may still be
 * setting up).  The whole keeper waits meanwhile: the VMM's requests wait
 * in its socket, as they would wait in our journal.
 */
static void connect_device(struct endpoint *e)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    uint64_t deadline = loop_now_ns() + (uint64_t)CONNECT_TIMEOUT_MS * 1000000;

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", e->private_path);
    while (child_alive(e->k)) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0) {
            log_error("%s: socket: %s", e->name, strerror(errno));
            return;
        }
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            fcntl(fd, F_SETFL, O_NONBLOCK);
            if (relay_attach_device(&e->link, fd) < 0) {
                log_error("%s: cannot watch the device process's socket", e->name);
            }
            return;
        }
        close(fd);
        if (loop_now_ns() > deadline) {
            log_error("%s: the device process does not listen on %s after %d ms; killing it",
                      e->name, e->private_path, CONNECT_TIMEOUT_MS);
            kill(e->k->child, SIGKILL);
            return;
        }
        nanosleep(&(struct timespec){ .tv_nsec = 500 * 1000 }, NULL);
    }
}

static void vfio_user_device_started(struct endpoint *e)
{
    if (relay_vmm_connected(&e->link)) {
        connect_device(e);
    }
}

static void on_vfio_user_client(void *opaque, uint32_t events)
{
    struct endpoint *e = opaque;
    int fd;

    (void)events;
    fd = accept4(e->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        return;
    }
    if (relay_attach_vmm(&e->link, fd) < 0) {
        log_error("%s: cannot watch the client's socket", e->name);
        return;
    }
    /* One client at a time, as the server: others wait in the backlog. */
    loop_watch_modify(e->k->loop, &e->listen_watch, 0);
    log_info("%s: vfio-user client connected on %s", e->name, e->path);
    if (e->k->child > 0) {
        connect_device(e);
    }
}

static void vfio_user_vmm_gone(struct endpoint *e)
{
    loop_watch_modify(e->k->loop, &e->listen_watch, EPOLLIN);
}

static void vfio_user_cleanup(struct endpoint *e)
{
    if (e->listen_fd >= 0) {
        loop_watch_remove(e->k->loop, &e->listen_watch);
        close(e->listen_fd);
        unlink(e->path);
    }
    if (e->private_path) {
        unlink(e->private_path);
    }
    free(e->path);
    free(e->private_path);
}

static const struct keeper_protocol vfio_user_keeper = {
    .object_type = "x-vfio-user-server",
    .relay = &vfio_user_relay_proto,
    .take = vfio_user_take,
    .prepare_device = vfio_user_prepare_device,
    .device_argument = vfio_user_device_argument,
    .device_started = vfio_user_device_started,
    .vmm_gone = vfio_user_vmm_gone,
    .cleanup = vfio_user_cleanup,
};

static const struct keeper_protocol *const keeper_protocols[] = {
    &mpqemu_keeper, &vfio_user_keeper, NULL,
};

static const struct keeper_protocol *keeper_protocol_find(const char *object_type)
{
    for (size_t i = 0; keeper_protocols[i]; i++) {
        if (!strcmp(keeper_protocols[i]->object_type, object_type)) {
            return keeper_protocols[i];
        }
    }
    return NULL;
}

/* --- the device process ------------------------------------------------------------- */

static void on_child_exit(void *opaque, uint32_t events);

/* The remote's command line with each endpoint replaced by the device process's. */
static char **device_argv(struct keeper *k)
{
    char **args = calloc((size_t)k->argc + 3, sizeof(*args));
    size_t n = 0, next_object = 0;
    int i = 1;

    if (!args || !(args[n++] = strdup(k->binary))) {
        goto fail;
    }
    if (i < k->argc && k->argv[i][0] != '-') {
        struct endpoint *e = &k->endpoints[k->n_endpoints - 1];     /* the positional fd */

        if (!(args[n++] = e->proto->device_argument(e))) {
            goto fail;
        }
        i++;
    }
    for (; i + 1 < k->argc; i += 2) {
        const char *name = k->argv[i] + (k->argv[i][1] == '-' ? 2 : 1);
        const char *value = k->argv[i + 1];
        struct opts *o = NULL;
        const char *type = NULL;

        if (!strcmp(name, "restart")) {
            continue;
        }
        if (!strcmp(name, "object") && (o = opts_parse(value, "qom-type", NULL))) {
            type = opts_get(o, "qom-type");
        }
        if (!(args[n++] = strdup(k->argv[i]))) {
            opts_free(o);
            goto fail;
        }
        if (type && keeper_protocol_find(type)) {
            struct endpoint *e = &k->endpoints[next_object++];

            args[n++] = e->proto->device_argument(e);
        } else {
            args[n++] = strdup(value);
        }
        opts_free(o);
        if (!args[n - 1]) {
            goto fail;
        }
    }
    if (!(args[n++] = strdup("-x-checkpoint")) ||
        asprintf(&args[n++], "fd=%d", k->checkpoint_fd) < 0) {
        args[n - 1] = NULL;
        goto fail;
    }
    return args;
fail:
    for (size_t j = 0; args && j < n; j++) {
        free(args[j]);
    }
    free(args);
    return NULL;
}

static void free_argv(char **args)
{
    for (size_t i = 0; args && args[i]; i++) {
        free(args[i]);
    }
    free(args);
}

static void exec_device(struct keeper *k, char **args, pid_t parent)
{
    sigset_t none;

    /* The device process goes with the keeper, whatever ends it. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) {
        _exit(127);
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    /* Only its own ends and the checkpoint cross exec. */
    for (size_t i = 0; i < k->n_endpoints; i++) {
        if (k->endpoints[i].child_end >= 0) {
            fcntl(k->endpoints[i].child_end, F_SETFD, 0);
        }
    }
    fcntl(k->checkpoint_fd, F_SETFD, 0);
    execv(k->binary, args);
    fprintf(stderr, "mpqemu-remote: cannot run %s: %s\n", k->binary, strerror(errno));
    _exit(127);
}

static int start_device(struct keeper *k, char **err)
{
    pid_t parent = getpid();
    char **args;

    for (size_t i = 0; i < k->n_endpoints; i++) {
        if (k->endpoints[i].proto->prepare_device(&k->endpoints[i], err) < 0) {
            return -1;
        }
    }
    if (!(args = device_argv(k))) {
        error_setf(err, "out of memory");
        return -1;
    }
    k->child = fork();
    if (k->child == 0) {
        exec_device(k, args, parent);
    }
    free_argv(args);
    for (size_t i = 0; i < k->n_endpoints; i++) {
        if (k->endpoints[i].child_end >= 0) {
            close(k->endpoints[i].child_end);
            k->endpoints[i].child_end = -1;
        }
    }
    if (k->child < 0) {
        error_setf(err, "fork: %s", strerror(errno));
        k->child = 0;
        return -1;
    }
    k->pidfd = (int)syscall(SYS_pidfd_open, k->child, 0);
    if (k->pidfd < 0 ||
        loop_watch_add(k->loop, &k->pid_watch, k->pidfd, EPOLLIN, on_child_exit, k) < 0) {
        error_setf(err, "cannot watch the device process: %s", strerror(errno));
        kill(k->child, SIGKILL);
        return -1;
    }
    for (size_t i = 0; i < k->n_endpoints; i++) {
        k->endpoints[i].proto->device_started(&k->endpoints[i]);
    }
    return 0;
}

/* Nothing left to serve: every proxy has gone and no vfio-user server waits for clients. */
static bool all_ended(const struct keeper *k)
{
    for (size_t i = 0; i < k->n_endpoints; i++) {
        if (!k->endpoints[i].ended) {
            return false;
        }
    }
    return true;
}

/* One more restart now: within the budget of max_restarts in window_s? */
static bool restart_allowed(struct keeper *k)
{
    uint64_t now = loop_now_ns(), window = (uint64_t)k->window_s * 1000000000;

    while (k->n_restart_times && now - k->restart_times[0] > window) {
        memmove(k->restart_times, k->restart_times + 1,
                (k->n_restart_times - 1) * sizeof(*k->restart_times));
        k->n_restart_times--;
    }
    if (k->n_restart_times >= k->max_restarts) {
        return false;
    }
    k->restart_times[k->n_restart_times++] = now;
    return true;
}

static void describe_status(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status)) {
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    }
}

static void close_all_vmm(struct keeper *k)
{
    for (size_t i = 0; i < k->n_endpoints; i++) {
        relay_close_vmm(&k->endpoints[i].link, true);
    }
}

static void on_child_exit(void *opaque, uint32_t events)
{
    struct keeper *k = opaque;
    char how[128];
    char *err = NULL;
    int status = 0;

    (void)events;
    waitpid(k->child, &status, 0);
    loop_watch_remove(k->loop, &k->pid_watch);
    close(k->pidfd);
    k->pidfd = -1;
    describe_status(status, how, sizeof(how));
    for (size_t i = 0; i < k->n_endpoints; i++) {
        relay_detach_device(&k->endpoints[i].link);
    }
    if (k->stopping || all_ended(k)) {
        k->child = 0;
        loop_quit(k->loop, k->stopping ? 0 : k->had_error || !WIFEXITED(status) ? 1
                                                                : WEXITSTATUS(status));
        return;
    }
    if (!restart_allowed(k)) {
        log_error("the device process (pid %d) %s; it died %u times in %u s, over the restart "
                  "budget (-restart max=%u,window=%u): giving up", (int)k->child, how,
                  k->max_restarts + 1, k->window_s, k->max_restarts, k->window_s);
        k->child = 0;
        close_all_vmm(k);
        loop_quit(k->loop, 1);
        return;
    }
    k->restarts++;
    log_warn("the device process (pid %d) %s; starting a new one (restart %u)", (int)k->child,
             how, k->restarts);
    k->child = 0;
    if (start_device(k, &err) < 0) {
        log_error("cannot restart the device process: %s", err ? err : "?");
        free(err);
        close_all_vmm(k);
        loop_quit(k->loop, 1);
    }
}

/* --- what the links tell ------------------------------------------------------------ */

static struct endpoint *endpoint_of(struct relay_link *l)
{
    return l->opaque;
}

/*
 * A dying process closes its sockets (the keeper may read ECONNRESET) and
 * becomes waitable a moment later: it is dying if that happens soon.
 */
static bool child_dying(struct keeper *k)
{
    struct pollfd p = { .fd = k->pidfd, .events = POLLIN };

    return k->pidfd < 0 || poll(&p, 1, DEATH_GRACE_MS) > 0;
}

static void device_fault(struct relay_link *l, const char *why)
{
    struct keeper *k = endpoint_of(l)->k;

    if (child_dying(k)) {
        return;     /* on_child_exit restarts it */
    }
    log_error("%s: the device process broke the protocol (%s); killing it", l->name, why);
    kill(k->child, SIGKILL);
}

/*
 * The device side closed.  A process that lives on ended the connection
 * itself (a fault it found), and the VMM's goes too, as without a keeper.
 */
static void device_closed(struct relay_link *l)
{
    if (child_dying(endpoint_of(l)->k)) {
        return;
    }
    log_warn("%s: the device process closed the connection; closing the VMM's", l->name);
    relay_close_vmm(l, true);
}

static void vmm_closed(struct relay_link *l, bool error)
{
    struct endpoint *e = endpoint_of(l);

    e->k->had_error |= error;
    e->proto->vmm_gone(e);
}

static const struct relay_events link_events = {
    .device_fault = device_fault,
    .device_closed = device_closed,
    .vmm_closed = vmm_closed,
};

/* --- setup ---------------------------------------------------------------------------- */

static struct endpoint *new_endpoint(struct keeper *k, const struct keeper_protocol *proto)
{
    struct endpoint *e = &k->endpoints[k->n_endpoints++];

    *e = (struct endpoint){
        .k = k, .proto = proto, .vmm_fd = -1, .our_end = -1, .child_end = -1, .listen_fd = -1,
    };
    e->listen_watch.fd = -1;
    return e;
}

static int add_object_endpoint(struct keeper *k, const struct keeper_protocol *proto,
                               struct opts *o, char **err)
{
    struct endpoint *e = new_endpoint(k, proto);
    const char *id = opts_get(o, "id");
    const char *devid = opts_get(o, proto == &mpqemu_keeper ? "devid" : "device");

    if (!id || !*id || !devid || !*devid) {
        error_setf(err, "%s needs an id and a device", proto->object_type);
        return -1;
    }
    if (!(e->id = strdup(id)) || !(e->devid = strdup(devid)) || !(e->name = strdup(devid))) {
        error_setf(err, "out of memory");
        return -1;
    }
    return proto->take(e, o, err);
}

static int collect_endpoints(struct keeper *k, struct remote_cmdline *cl, char **err)
{
    k->endpoints = calloc(cl->objects.n + 1, sizeof(*k->endpoints));
    if (!k->endpoints) {
        error_setf(err, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cl->objects.n; i++) {
        const char *type = opts_get(cl->objects.v[i], "qom-type");
        const struct keeper_protocol *proto = type ? keeper_protocol_find(type) : NULL;

        if (proto && add_object_endpoint(k, proto, cl->objects.v[i], err) < 0) {
            return -1;
        }
    }
    if (cl->socket_fd >= 0) {
        struct endpoint *e = new_endpoint(k, &mpqemu_keeper);

        e->positional = true;
        if (asprintf(&e->name, "fd %d", cl->socket_fd) < 0) {
            e->name = NULL;
            error_setf(err, "out of memory");
            return -1;
        }
        if (mpqemu_take_fd(e, cl->socket_fd, err) < 0) {
            return -1;
        }
    }
    if (!k->n_endpoints) {
        error_setf(err, "-restart: no endpoint to keep (give FD, -object x-remote-object or "
                   "-object x-vfio-user-server)");
        return -1;
    }
    return 0;
}

static int start_links(struct keeper *k, char **err)
{
    for (size_t i = 0; i < k->n_endpoints; i++) {
        struct endpoint *e = &k->endpoints[i];

        relay_link_init(&e->link, e->proto->relay, k->loop, e->name, &link_events, e);
        if (!e->link.state) {
            error_setf(err, "out of memory");
            return -1;
        }
        if (e->vmm_fd >= 0) {
            int fd = e->vmm_fd;

            e->vmm_fd = -1;
            if (relay_attach_vmm(&e->link, fd) < 0) {
                error_setf(err, "%s: cannot watch the proxy's socket", e->name);
                return -1;
            }
        }
        if (e->listen_fd >= 0 &&
            loop_watch_add(k->loop, &e->listen_watch, e->listen_fd, EPOLLIN, on_vfio_user_client,
                           e) < 0) {
            error_setf(err, "cannot watch '%s'", e->path);
            return -1;
        }
    }
    return 0;
}

static void on_signal(void *opaque, uint32_t events)
{
    struct keeper *k = opaque;
    struct signalfd_siginfo si;

    (void)events;
    if (read(k->sigfd, &si, sizeof(si)) != sizeof(si)) {
        return;
    }
    log_info("terminating on signal %u", si.ssi_signo);
    k->stopping = true;
    if (k->child > 0) {
        kill(k->child, SIGTERM);    /* it flushes its disks; its exit ends us */
    } else {
        loop_quit(k->loop, 0);
    }
}

static int watch_signals(struct keeper *k)
{
    k->sigfd = loop_watch_termination(k->loop, &k->sig_watch, on_signal, k);
    return k->sigfd < 0 ? -1 : 0;
}

/* Session fds for up to 1024 DMA maps per device: more than the default soft limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int setup(struct keeper *k, struct remote_cmdline *cl, char **err)
{
    ssize_t n = readlink("/proc/self/exe", k->binary, sizeof(k->binary) - 1);

    if (n <= 0) {
        error_setf(err, "cannot find our own binary: %s", strerror(errno));
        return -1;
    }
    k->binary[n] = '\0';
    unsigned max = 0, window = 0;
    bool on;

    if (parse_restart(cl->restart, &on, &max, &window, err) < 0) {
        return -1;
    }
    k->max_restarts = max;
    k->window_s = window;
    if (!(k->restart_times = calloc(max + 1, sizeof(*k->restart_times)))) {
        error_setf(err, "out of memory");
        return -1;
    }
    raise_fd_limit();
    if (!(k->loop = loop_new())) {
        error_setf(err, "cannot create the event loop");
        return -1;
    }
    if (collect_endpoints(k, cl, err) < 0 ||
        (k->checkpoint_fd = checkpoint_create_fd(err)) < 0 || start_links(k, err) < 0) {
        return -1;
    }
    if (watch_signals(k) < 0) {
        error_setf(err, "signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void teardown(struct keeper *k)
{
    if (k->child > 0) {
        kill(k->child, SIGKILL);
        waitpid(k->child, NULL, 0);
    }
    if (k->pidfd >= 0) {
        loop_watch_remove(k->loop, &k->pid_watch);
        close(k->pidfd);
    }
    for (size_t i = 0; i < k->n_endpoints; i++) {
        struct endpoint *e = &k->endpoints[i];

        if (e->link.loop) {
            relay_link_free(&e->link);
        }
        e->proto->cleanup(e);
        free(e->id);
        free(e->devid);
        free(e->name);
    }
    free(k->endpoints);
    if (k->dir[0]) {
        rmdir(k->dir);
    }
    if (k->checkpoint_fd >= 0) {
        close(k->checkpoint_fd);
    }
    if (k->sigfd >= 0) {
        loop_watch_remove(k->loop, &k->sig_watch);
        close(k->sigfd);
    }
    free(k->restart_times);
    if (k->loop) {
        loop_free(k->loop);
    }
}

/* The ports of tcp:HOST:PORT monitors, which the device process binds. */
static size_t monitor_ports(const struct remote_cmdline *cl, uint16_t *ports, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < cl->n_qmp + cl->n_hmp && n < max; i++) {
        const char *spec = i < cl->n_qmp ? cl->qmp[i] : cl->hmp[i - cl->n_qmp];
        const char *end = spec + strcspn(spec, ","), *colon = end;
        unsigned long port;

        if (strncmp(spec, "tcp:", 4)) {
            continue;
        }
        while (colon > spec && *colon != ':') {
            colon--;
        }
        port = strtoul(colon + 1, NULL, 10);
        if (port > 0 && port <= UINT16_MAX) {
            ports[n++] = (uint16_t)port;
        }
    }
    return n;
}

/*
 * The TCP servers of NBD drives given as URIs, which the device process
 * connects to: the keeper's domain, which the device inherits, allows them.
 */
static int allow_nbd_servers(const struct remote_cmdline *cl, struct sandbox *sb, char **err)
{
    for (size_t i = 0; i < cl->drives.n; i++) {
        struct nbd_target t;
        char *ignored = NULL;
        int r = 0, nbd = nbd_target_of_drive(cl->drives.v[i], &t, &ignored);

        free(ignored);          /* the device process reports a bad target itself */
        if (nbd <= 0) {
            continue;
        }
        if (t.transport == NBD_TRANSPORT_TCP) {
            r = sandbox_allow_connect(sb, AF_INET, t.port, err);
        }
        nbd_target_clear(&t);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

static int confine(const struct remote_cmdline *cl, struct sandbox *sb, char **err)
{
    uint16_t ports[32];

    if (allow_nbd_servers(cl, sb, err) < 0) {
        return -1;
    }
    return sandbox_enter_keeper(sb, ports, monitor_ports(cl, ports, 32), err);
}

int keeper_main(int argc, char **argv, struct remote_cmdline *cl, struct sandbox *sb)
{
    struct keeper k = { .argc = argc, .argv = argv, .checkpoint_fd = -1, .pidfd = -1, .sigfd = -1 };
    char *err = NULL;
    int code = 1;

    log_set_program("mpqemu-remote[keeper]");
    if (setup(&k, cl, &err) < 0 || confine(cl, sb, &err) < 0 || start_device(&k, &err) < 0) {
        log_error("%s", err ? err : "setup failed");
    } else {
        code = loop_run(k.loop);
    }
    free(err);
    teardown(&k);
    return code;
}
