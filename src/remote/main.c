// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * mpqemu-remote: emulates PCI devices for a VMM in a process of their own.
 * Each PCI device is served on its own socket, over QEMU's multi-process
 * protocol (an inherited socket fd) or vfio-user (a listening socket path);
 * one event loop serves them all.  The process ends when every
 * multi-process proxy has disconnected (vfio-user servers wait for the next
 * client instead), or on SIGTERM, after flushing every drive.
 */
#include <errno.h>
#include <json-c/json.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "hw/device.h"
#include "monitor/monitor.h"
#include "pci/dma.h"
#include "pci/pci.h"
#include "proto/mpqemu-server.h"
#include "proto/sock-io.h"
#include "proto/vfio-user-server.h"
#include "remote/cmdline.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/opts.h"

enum {
    /* QEMU's iothreads poll 32 us by default; it saves a wakeup per access. */
    DEFAULT_POLL_MAX_NS = 32768,
    MAX_POLL_MAX_NS = 10 * 1000 * 1000,
    AIO_DEPTH = 128,
};

struct remote;

/* A PCI device and the socket it is served on. */
struct binding {
    struct remote *remote;
    struct device *dev;
    int fd;                     /* multi-process protocol: the socket, else -1 */
    const char *path;           /* vfio-user: where to listen, else NULL */
    struct mpqemu_server *server;
    struct vfio_user_server *vfio_user;
};

struct remote {
    struct loop *loop;
    struct aio_engine *aio;
    struct monitor_vm vm;       /* devices and drives, as the monitors see them */
    struct monitor **monitors;
    size_t n_monitors;
    struct loop_bh quit_bh;
    char *name;
    struct binding *bindings;
    size_t n_bindings;
    size_t n_open;              /* multi-process connections still open */
    size_t n_vfio_user;         /* vfio-user servers: they keep the process up */
    bool had_error;
    int sigfd;
    struct loop_watch sig_watch;
};

static int append(void **vec, size_t *n, size_t elem, const void *item)
{
    void *grown = realloc(*vec, (*n + 1) * elem);

    if (!grown) {
        return -1;
    }
    memcpy((char *)grown + *n * elem, item, elem);
    *vec = grown;
    (*n)++;
    return 0;
}

static struct device *find_device(struct remote *r, const char *id)
{
    for (size_t i = 0; i < r->vm.n_devices; i++) {
        if (!strcmp(r->vm.devices[i]->id, id)) {
            return r->vm.devices[i];
        }
    }
    return NULL;
}

static struct binding *binding_of_device(struct remote *r, const struct device *dev)
{
    for (size_t i = 0; i < r->n_bindings; i++) {
        if (r->bindings[i].dev == dev) {
            return &r->bindings[i];
        }
    }
    return NULL;
}

static struct binding *binding_of_fd(struct remote *r, int fd)
{
    for (size_t i = 0; i < r->n_bindings; i++) {
        if (r->bindings[i].fd == fd) {
            return &r->bindings[i];
        }
    }
    return NULL;
}

static int add_binding(struct remote *r, const struct binding *b, char **err)
{
    if (!b->dev->pci) {
        error_setf(err, "'%s' is not a PCI device", b->dev->id);
        return -1;
    }
    if (binding_of_device(r, b->dev)) {
        error_setf(err, "device '%s' already has a socket", b->dev->id);
        return -1;
    }
    if (append((void **)&r->bindings, &r->n_bindings, sizeof(*b), b) < 0) {
        error_setf(err, "out of memory");
        return -1;
    }
    return 0;
}

static int bind_socket(struct remote *r, struct device *dev, int fd, char **err)
{
    struct binding b = { .remote = r, .dev = dev, .fd = fd };
    struct binding *other = binding_of_fd(r, fd);

    if (other) {
        error_setf(err, "fd %d already serves device '%s'", fd, other->dev->id);
        return -1;
    }
    if (fcntl(fd, F_GETFD) < 0 || !fd_is_socket(fd)) {
        error_setf(err, "fd %d is not an open socket", fd);
        return -1;
    }
    if (add_binding(r, &b, err) < 0) {
        return -1;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

/* -object x-remote-object,id=ID,devid=DEVID,fd=N */
static int add_remote_object(struct remote *r, struct opts *o, const char *id, char **err)
{
    const char *devid = opts_get(o, "devid"), *fdtext = opts_get(o, "fd");
    struct device *dev;
    uint64_t fd;

    if (opts_check_all_used(o, "x-remote-object", err) < 0) {
        return -1;
    }
    if (!devid || !(dev = find_device(r, devid))) {
        error_setf(err, "x-remote-object '%s': devid '%s' names no device", id,
                   devid ? devid : "");
        return -1;
    }
    if (!fdtext || parse_uint(fdtext, &fd) < 0 || fd > 1000000) {
        error_setf(err, "x-remote-object '%s': fd must be a file descriptor number", id);
        return -1;
    }
    if (bind_socket(r, dev, (int)fd, err) < 0) {
        error_prefix(err, "x-remote-object '%s'", id);
        return -1;
    }
    return 0;
}

/*
 * -object x-vfio-user-server,id=ID,device=DEVID,socket.type=unix,socket.path=PATH
 * (QEMU's form; the JSON form nests "socket" as an object).
 */
static int add_vfio_user_server(struct remote *r, struct opts *o, const char *id, char **err)
{
    const char *devid = opts_get(o, "device"), *type = opts_get(o, "socket.type");
    const char *path = opts_get(o, "socket.path");
    struct binding b = { .remote = r, .fd = -1, .path = path };

    if (opts_check_all_used(o, "x-vfio-user-server", err) < 0) {
        return -1;
    }
    if (!devid || !(b.dev = find_device(r, devid))) {
        error_setf(err, "x-vfio-user-server '%s': device '%s' names no device", id,
                   devid ? devid : "");
        return -1;
    }
    if (!type || strcmp(type, "unix") || !path || !*path) {
        error_setf(err, "x-vfio-user-server '%s': needs socket.type=unix and socket.path=PATH",
                   id);
        return -1;
    }
    for (size_t i = 0; i < r->n_bindings; i++) {
        if (r->bindings[i].path && !strcmp(r->bindings[i].path, path)) {
            error_setf(err, "x-vfio-user-server '%s': socket '%s' already serves '%s'", id,
                       path, r->bindings[i].dev->id);
            return -1;
        }
    }
    if (add_binding(r, &b, err) < 0) {
        error_prefix(err, "x-vfio-user-server '%s'", id);
        return -1;
    }
    return 0;
}

/*
 * -object main-loop,id=ID,poll-max-ns=N: how long the loop busy-polls before
 * sleeping (as a QEMU iothread's poll-max-ns; 0 turns polling off).
 */
static int configure_main_loop(struct remote *r, struct opts *o, char **err)
{
    uint64_t ns;

    if (opts_get_uint(o, "poll-max-ns", DEFAULT_POLL_MAX_NS, MAX_POLL_MAX_NS, &ns, err) < 0 ||
        opts_check_all_used(o, "main-loop", err) < 0) {
        return -1;
    }
    loop_set_poll_max_ns(r->loop, ns);
    return 0;
}

static int add_object(struct remote *r, struct opts *o, char **err)
{
    const char *type = opts_get(o, "qom-type"), *id = opts_get(o, "id");

    if (!type) {
        type = "";
    }
    if (strcmp(type, "x-remote-object") && strcmp(type, "x-vfio-user-server") &&
        strcmp(type, "main-loop")) {
        error_setf(err, "object type '%s' is not supported "
                   "(x-remote-object, x-vfio-user-server, main-loop)", type);
        return -1;
    }
    if (!id || !*id) {
        error_setf(err, "%s needs an id", type);
        return -1;
    }
    if (!strcmp(type, "main-loop")) {
        return configure_main_loop(r, o, err);
    }
    if (!strcmp(type, "x-vfio-user-server")) {
        return add_vfio_user_server(r, o, id, err);
    }
    return add_remote_object(r, o, id, err);
}

static size_t count_unbound(struct remote *r, struct device **last)
{
    size_t n = 0;

    for (size_t i = 0; i < r->vm.n_devices; i++) {
        if (r->vm.devices[i]->pci && !binding_of_device(r, r->vm.devices[i])) {
            *last = r->vm.devices[i];
            n++;
        }
    }
    return n;
}

/* The positional fd serves the one PCI device that has no other socket. */
static int bind_positional(struct remote *r, int fd, char **err)
{
    struct device *dev = NULL;
    size_t unbound = count_unbound(r, &dev);

    if (unbound != 1) {
        error_setf(err, "socket fd %d given, but %zu PCI devices have no socket; "
                   "serve each on its own with -object x-remote-object,id=...,devid=ID,fd=N",
                   fd, unbound);
        return -1;
    }
    return bind_socket(r, dev, fd, err);
}

static int check_all_bound(struct remote *r, char **err)
{
    struct device *dev = NULL;

    if (count_unbound(r, &dev)) {
        error_setf(err, "PCI device '%s' has no socket (give FD, "
                   "-object x-remote-object,id=...,devid=%s,fd=N or "
                   "-object x-vfio-user-server,id=...,device=%s,socket.type=unix,"
                   "socket.path=PATH)", dev->id, dev->id, dev->id);
        return -1;
    }
    if (!r->n_bindings) {
        error_setf(err, "no PCI device given (-device ...; see -device help)");
        return -1;
    }
    return 0;
}

static struct drive *find_drive(void *opaque, const char *id)
{
    struct remote *r = opaque;

    for (size_t i = 0; i < r->vm.n_drives; i++) {
        if (!strcmp(r->vm.drives[i]->id, id)) {
            return r->vm.drives[i];
        }
    }
    return NULL;
}

/* Guest memory is about to be unmapped: the disks' transfers into it land first. */
static void finish_io(void *opaque)
{
    struct remote *r = opaque;

    aio_drain(r->aio);
}

static int create_devices(struct remote *r, struct remote_cmdline *cl, char **err)
{
    struct device_ctx ctx = { .loop = r->loop, .find_drive = find_drive, .opaque = r };
    struct dma_quiesce quiesce = { .fn = finish_io, .opaque = r };

    /* Always: a monitor may insert a medium later. */
    if (!(r->aio = aio_engine_new(r->loop, AIO_DEPTH, err))) {
        return -1;
    }
    dma_set_quiesce(&quiesce);
    for (size_t i = 0; i < cl->drives.n; i++) {
        struct drive *d = drive_open(cl->drives.v[i], r->aio, err);

        if (!d) {
            return -1;
        }
        if (append((void **)&r->vm.drives, &r->vm.n_drives, sizeof(d), &d) < 0) {
            drive_close(d);
            error_setf(err, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < cl->devices.n; i++) {
        struct device *dev = device_create(&ctx, cl->devices.v[i], err);

        if (!dev) {
            return -1;
        }
        if (find_device(r, dev->id)) {
            error_setf(err, "duplicate device id '%s'", dev->id);
            device_destroy(dev);
            return -1;
        }
        if (append((void **)&r->vm.devices, &r->vm.n_devices, sizeof(dev), &dev) < 0) {
            error_setf(err, "out of memory");
            device_destroy(dev);
            return -1;
        }
    }
    return 0;
}

/* --- what the monitors may do ------------------------------------------------ */

static struct remote *remote_of(struct monitor_vm *vm)
{
    return (struct remote *)((char *)vm - offsetof(struct remote, vm));
}

static void vm_reset(struct monitor_vm *vm)
{
    struct remote *r = remote_of(vm);

    for (size_t i = 0; i < r->vm.n_devices; i++) {
        if (r->vm.devices[i]->pci) {
            pci_device_reset(r->vm.devices[i]->pci);
        }
    }
}

static void on_quit_bh(void *opaque)
{
    loop_quit(((struct remote *)opaque)->loop, 0);
}

static void vm_quit(struct monitor_vm *vm)
{
    struct remote *r = remote_of(vm);

    /* From the loop, after the command's reply has gone out. */
    loop_bh_schedule(r->loop, &r->quit_bh);
}

static int vm_add_drive(struct monitor_vm *vm, struct drive *d)
{
    struct remote *r = remote_of(vm);

    return append((void **)&r->vm.drives, &r->vm.n_drives, sizeof(d), &d);
}

static void vm_remove_drive(struct monitor_vm *vm, struct drive *d)
{
    for (size_t i = 0; i < vm->n_drives; i++) {
        if (vm->drives[i] == d) {
            memmove(&vm->drives[i], &vm->drives[i + 1],
                    (vm->n_drives - i - 1) * sizeof(*vm->drives));
            vm->n_drives--;
            break;
        }
    }
    drive_close(d);
}

static int add_monitor(struct remote *r, const char *spec, bool qmp, char **err)
{
    struct monitor *m = monitor_new(r->loop, &r->vm, spec, qmp, err);

    if (!m) {
        return -1;
    }
    if (append((void **)&r->monitors, &r->n_monitors, sizeof(m), &m) < 0) {
        monitor_free(m);
        error_setf(err, "out of memory");
        return -1;
    }
    return 0;
}

static int start_monitors(struct remote *r, struct remote_cmdline *cl, char **err)
{
    if (cl->name && !(r->name = strndup(cl->name, strcspn(cl->name, ",")))) {
        error_setf(err, "out of memory");
        return -1;
    }
    r->vm = (struct monitor_vm){
        .name = r->name, .devices = r->vm.devices, .n_devices = r->vm.n_devices,
        .drives = r->vm.drives, .n_drives = r->vm.n_drives, .aio = r->aio,
        .reset = vm_reset, .quit = vm_quit, .add_drive = vm_add_drive,
        .remove_drive = vm_remove_drive,
    };
    monitor_watch_block_devices(&r->vm);
    for (size_t i = 0; i < cl->n_qmp; i++) {
        if (add_monitor(r, cl->qmp[i], true, err) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < cl->n_hmp; i++) {
        if (add_monitor(r, cl->hmp[i], false, err) < 0) {
            return -1;
        }
    }
    /* "server" without "nowait": the process starts once the client is there. */
    for (size_t i = 0; i < r->n_monitors; i++) {
        if (monitor_wait_client(r->monitors[i], err) < 0) {
            return -1;
        }
    }
    return 0;
}

static int setup(struct remote *r, struct remote_cmdline *cl, char **err)
{
    loop_set_poll_max_ns(r->loop, DEFAULT_POLL_MAX_NS);
    if (create_devices(r, cl, err) < 0) {
        return -1;
    }
    for (size_t i = 0; i < cl->objects.n; i++) {
        if (add_object(r, cl->objects.v[i], err) < 0) {
            return -1;
        }
    }
    if (cl->socket_fd >= 0 && bind_positional(r, cl->socket_fd, err) < 0) {
        return -1;
    }
    if (check_all_bound(r, err) < 0) {
        return -1;
    }
    return start_monitors(r, cl, err);
}

static void on_connection_closed(void *opaque, bool error)
{
    struct binding *b = opaque;
    struct remote *r = b->remote;

    r->had_error |= error;
    if (--r->n_open == 0 && r->n_vfio_user == 0) {
        loop_quit(r->loop, r->had_error ? 1 : 0);
    }
}

static int start_servers(struct remote *r, char **err)
{
    for (size_t i = 0; i < r->n_bindings; i++) {
        struct binding *b = &r->bindings[i];

        if (b->path) {
            b->vfio_user = vfio_user_server_new(r->loop, b->path, b->dev->pci, err);
            if (!b->vfio_user) {
                error_prefix(err, "device '%s'", b->dev->id);
                return -1;
            }
            r->n_vfio_user++;
            continue;
        }
        b->server = mpqemu_server_new(r->loop, b->fd, b->dev->pci, on_connection_closed, b);
        if (!b->server) {
            error_setf(err, "cannot serve device '%s'", b->dev->id);
            return -1;
        }
        r->n_open++;
    }
    return 0;
}

static void on_signal(void *opaque, uint32_t events)
{
    struct remote *r = opaque;
    struct signalfd_siginfo si;

    (void)events;
    if (read(r->sigfd, &si, sizeof(si)) == sizeof(si)) {
        struct json_object *data = json_object_new_object();

        log_info("terminating on signal %u", si.ssi_signo);
        json_object_object_add(data, "guest", json_object_new_boolean(false));
        json_object_object_add(data, "reason", json_object_new_string("host-signal"));
        monitor_event("SHUTDOWN", data);
        loop_quit(r->loop, 0);
    }
}

static int watch_signals(struct remote *r)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /*
     * Blocked, they are queued even for the init of a PID namespace
     * (mpqemu-launch's confinement), which would otherwise ignore them.
     */
    sigprocmask(SIG_BLOCK, &set, NULL);
    r->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (r->sigfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        return -1;
    }
    return loop_watch_add(r->loop, &r->sig_watch, r->sigfd, EPOLLIN, on_signal, r);
}

static void teardown(struct remote *r)
{
    /* Completions call into devices: let them all land while devices exist. */
    if (r->aio) {
        aio_drain(r->aio);
    }
    /* Controllers drop their commands while the targets they name still exist. */
    for (size_t i = 0; i < r->vm.n_devices; i++) {
        if (r->vm.devices[i]->pci) {
            pci_device_reset(r->vm.devices[i]->pci);
        }
    }
    for (size_t i = 0; i < r->n_bindings; i++) {
        struct binding *b = &r->bindings[i];

        if (b->server) {
            mpqemu_server_free(b->server);
        } else if (b->fd >= 0) {
            close(b->fd);
        }
        vfio_user_server_free(b->vfio_user);
    }
    /* Newest first: a disk leaves its controller's bus before the controller goes. */
    for (size_t i = r->vm.n_devices; i-- > 0;) {
        device_destroy(r->vm.devices[i]);
    }
    /* Closing a drive flushes it: no acknowledged write is lost at exit. */
    for (size_t i = 0; i < r->vm.n_drives; i++) {
        drive_close(r->vm.drives[i]);
    }
    dma_set_quiesce(&(struct dma_quiesce){ 0 });
    aio_engine_free(r->aio);
    free(r->bindings);
    free(r->vm.devices);
    free(r->vm.drives);
    if (r->sigfd >= 0) {
        close(r->sigfd);
    }
    for (size_t i = 0; i < r->n_monitors; i++) {
        monitor_free(r->monitors[i]);
    }
    free(r->monitors);
    free(r->name);
    loop_bh_cancel(r->loop, &r->quit_bh);
    loop_free(r->loop);
}

int main(int argc, char **argv)
{
    struct remote_cmdline cl;
    struct remote r = { .sigfd = -1 };
    char *err = NULL;
    int code = 1;

    log_set_program("mpqemu-remote");
    switch (remote_cmdline_parse(argc, argv, &cl)) {
    case CMDLINE_EXIT_OK:
        remote_cmdline_free(&cl);
        return 0;
    case CMDLINE_EXIT_ERROR:
        remote_cmdline_free(&cl);
        return 1;
    case CMDLINE_RUN:
        break;
    }
    r.loop = loop_new();
    loop_bh_init(&r.quit_bh, on_quit_bh, &r);
    if (!r.loop) {
        log_error("cannot create the event loop");
    } else if (setup(&r, &cl, &err) < 0 || start_servers(&r, &err) < 0) {
        log_error("%s", err ? err : "setup failed");
    } else if (watch_signals(&r) == 0) {
        code = loop_run(r.loop);
    }
    free(err);
    remote_cmdline_free(&cl);
    if (r.loop) {
        teardown(&r);
    }
    return code;
}
