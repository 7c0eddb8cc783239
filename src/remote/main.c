// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * mpqemu-remote: emulates PCI devices for a VMM in a process of their own.
 * Each PCI device is served on its own socket by a server of one protocol
 * (proto/server.h): QEMU's multi-process protocol (an inherited socket fd)
 * or vfio-user (a listening socket path); one event loop serves them all.
 * The process ends when every server has ended (a multi-process server
 * ends with its proxy's connection; a vfio-user server waits for the next
 * client instead), or on SIGTERM, after flushing every drive.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "block/file-layer.h"
#include "hw/device.h"
#include "monitor/monitor.h"
#include "pci/dma.h"
#include "pci/pci.h"
#include "proto/server.h"
#include "remote/cmdline.h"
#include "remote/keeper.h"
#include "remote/sandbox.h"
#include "util/checkpoint.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/opts.h"

enum {
    /*
     * No busy-polling by default.  It saves a wakeup per access only when
     * the remote has a core to itself; sharing cores with the VMM (or
     * other remotes), the spinning delays the very request it waits for,
     * and every remote of a host burns CPU while its guest is busy.
     * Measured on 2 shared cores (docs/performance.md): polling made the
     * register round trip and most QD1 rows slower, though it helped most
     * QD32 rows.  -object
     * main-loop,poll-max-ns=N turns it on for a remote with its own core.
     */
    DEFAULT_POLL_MAX_NS = 0,
    MAX_POLL_MAX_NS = 10 * 1000 * 1000,
    AIO_DEPTH = 128,
};

struct remote;

/* A PCI device and the server it is served by. */
struct binding {
    struct device *dev;
    struct server *server;
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
    size_t n_serving;           /* servers started that have not ended */
    bool had_error;
    struct sandbox *sandbox;
    struct device_ctx device_ctx;   /* what devices use of the process, realized and serving */
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

/*
 * Serves 'dev' by 's' unless the device or where 's' serves is taken already;
 * the server is freed on failure.
 */
static int add_binding(struct remote *r, struct device *dev, struct server *s, char **err)
{
    char where[PATH_MAX + 32], other[PATH_MAX + 32];

    s->ops->describe(s, where, sizeof(where));
    for (size_t i = 0; i < r->n_bindings; i++) {
        struct server *taken = r->bindings[i].server;

        taken->ops->describe(taken, other, sizeof(other));
        if (!strcmp(where, other)) {
            error_setf(err, "%s already serves device '%s'", where, r->bindings[i].dev->id);
            goto refuse;
        }
    }
    if (!dev->pci) {
        error_setf(err, "'%s' is not a PCI device", dev->id);
        goto refuse;
    }
    if (binding_of_device(r, dev)) {
        error_setf(err, "device '%s' already has a socket", dev->id);
        goto refuse;
    }
    if (append((void **)&r->bindings, &r->n_bindings, sizeof(struct binding),
               &(struct binding){ .dev = dev, .server = s }) < 0) {
        error_setf(err, "out of memory");
        goto refuse;
    }
    return 0;
refuse:
    s->ops->free(s);
    return -1;
}

/*
 * -object TYPE,id=ID,DEVICE_KEY=DEVID,... for a server of the protocol
 * 'ops': an option no one takes is reported first, then a device that does
 * not exist, then what the protocol finds wrong with the rest.
 */
static int add_server_object(struct remote *r, const struct server_ops *ops, struct opts *o,
                             const char *id, char **err)
{
    const char *devid = opts_get(o, ops->device_key);
    struct device *dev;
    struct server *s;

    for (const char *const *key = ops->endpoint_keys; *key; key++) {
        opts_get(o, *key);
    }
    if (opts_check_all_used(o, ops->object_type, err) < 0) {
        return -1;
    }
    if (!devid || !(dev = find_device(r, devid))) {
        error_setf(err, "%s '%s': %s '%s' names no device", ops->object_type, id,
                   ops->device_key, devid ? devid : "");
        return -1;
    }
    if (!(s = ops->create(o, id, err))) {
        return -1;
    }
    if (add_binding(r, dev, s, err) < 0) {
        error_prefix(err, "%s '%s'", ops->object_type, id);
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

static void unsupported_object(const char *type, char **err)
{
    char types[256] = "";

    for (size_t i = 0; server_protocols[i]; i++) {
        size_t used = strlen(types);

        snprintf(types + used, sizeof(types) - used, "%s, ", server_protocols[i]->object_type);
    }
    error_setf(err, "object type '%s' is not supported (%smain-loop)", type, types);
}

static int add_object(struct remote *r, struct opts *o, char **err)
{
    const char *type = opts_get(o, "qom-type"), *id = opts_get(o, "id");
    const struct server_ops *server;

    if (!type) {
        type = "";
    }
    server = server_protocol_find(type);
    if (!server && strcmp(type, "main-loop")) {
        unsupported_object(type, err);
        return -1;
    }
    if (!id || !*id) {
        error_setf(err, "%s needs an id", type);
        return -1;
    }
    if (!server) {
        return configure_main_loop(r, o, err);
    }
    return add_server_object(r, server, o, id, err);
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

    const struct server_ops *ops = server_protocol_for_fd();
    struct server *s;

    if (unbound != 1) {
        error_setf(err, "socket fd %d given, but %zu PCI devices have no socket; "
                   "serve each on its own with -object %s,id=...,%s=ID,%s",
                   fd, unbound, ops->object_type, ops->device_key, ops->endpoint_usage);
        return -1;
    }
    if (!(s = ops->create_on_fd(fd, err))) {
        return -1;
    }
    return add_binding(r, dev, s, err);
}

static int check_all_bound(struct remote *r, char **err)
{
    struct device *dev = NULL;

    if (count_unbound(r, &dev)) {
        char forms[512] = "";

        for (size_t i = 0; server_protocols[i]; i++) {
            const struct server_ops *ops = server_protocols[i];
            size_t used = strlen(forms);

            snprintf(forms + used, sizeof(forms) - used, "%s-object %s,id=...,%s=%s,%s",
                     i ? " or " : "", ops->object_type, ops->device_key, dev->id,
                     ops->endpoint_usage);
        }
        error_setf(err, "PCI device '%s' has no socket (give FD, %s)", dev->id, forms);
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

static void vm_remove_drive(struct monitor_vm *vm, struct drive *d);

static struct drive *open_kept_drive(void *opaque, const struct drive_spec *spec, char **err)
{
    struct remote *r = opaque;
    struct drive *d = drive_open_spec(spec, r->aio, err);

    if (d && append((void **)&r->vm.drives, &r->vm.n_drives, sizeof(d), &d) < 0) {
        drive_close(d);
        error_setf(err, "out of memory");
        return NULL;
    }
    return d;
}

static void close_drive(void *opaque, struct drive *d)
{
    vm_remove_drive(&((struct remote *)opaque)->vm, d);
}

/* Guest memory is about to be unmapped: the disks' transfers into it land first. */
static void finish_io(void *opaque)
{
    struct remote *r = opaque;

    aio_drain(r->aio);
}

static int create_devices(struct remote *r, struct remote_cmdline *cl, char **err)
{
    struct dma_quiesce quiesce = { .fn = finish_io, .opaque = r };

    /* Always: a monitor may insert a medium later. */
    if (!(r->aio = aio_engine_new(r->loop, AIO_DEPTH, err))) {
        return -1;
    }
    dma_set_quiesce(&quiesce);
    r->device_ctx = (struct device_ctx){ .loop = r->loop, .find_drive = find_drive,
                                         .open_drive = open_kept_drive,
                                         .close_drive = close_drive, .opaque = r };
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
        struct device *dev = device_create(&r->device_ctx, cl->devices.v[i], err);

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

static struct json_object *vm_sandbox_info(struct monitor_vm *vm)
{
    struct remote *r = (struct remote *)((char *)vm - offsetof(struct remote, vm));

    return sandbox_describe(r->sandbox);
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
        .remove_drive = vm_remove_drive, .sandbox_info = vm_sandbox_info,
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

/* -x-checkpoint fd=N: the keeper's memory file, where device state outlives us. */
static int open_checkpoint(const char *text, char **err)
{
    struct opts *o = opts_parse(text, NULL, err);
    uint64_t fd = 0;
    int r = -1;

    if (!o) {
        return -1;
    }
    if (opts_get_uint(o, "fd", UINT64_MAX, INT_MAX, &fd, err) == 0 &&
        opts_check_all_used(o, "-x-checkpoint", err) == 0) {
        if (fd == UINT64_MAX) {
            error_setf(err, "-x-checkpoint needs fd=N");
        } else {
            fcntl((int)fd, F_SETFD, FD_CLOEXEC);
            r = checkpoint_open((int)fd, err);
        }
    }
    opts_free(o);
    return r;
}

static int setup(struct remote *r, struct remote_cmdline *cl, char **err)
{
    loop_set_poll_max_ns(r->loop, DEFAULT_POLL_MAX_NS);
    if (cl->checkpoint && open_checkpoint(cl->checkpoint, err) < 0) {
        return -1;
    }
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

/*
 * What an image's file layer reaches: its file, or for a network drive
 * (NBD) the server it connects to again and the TLS keys it reads again.
 */
static int allow_file_layer(struct sandbox *sb, const struct drive *d, char **err)
{
    struct blk_file_reach reach;

    if (!blk_file_reach(d->file_layer, &reach)) {
        return sandbox_allow_file(sb, d->file, !d->readonly, err);
    }
    if (reach.resolves_names) {
        error_setf(err, "drive '%s': %s resolves its host name at each connection (X.509 TLS), "
                   "which the sandbox cannot allow; use tls-psk-file=, nbds+unix://, "
                   "or -sandbox off", d->id, d->file);
        return -1;
    }
    for (unsigned i = 0; i < reach.n_families; i++) {
        if (sandbox_allow_connect(sb, reach.families[i], reach.tcp_port, err) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; reach.files[i]; i++) {
        if (sandbox_allow_file(sb, reach.files[i], false, err) < 0) {
            return -1;
        }
    }
    return 0;
}

/* What the confined process still reaches: its images and backing files, its sockets. */
static int collect_sandbox_paths(struct remote *r, char **err)
{
    for (size_t i = 0; i < r->vm.n_drives; i++) {
        for (const struct drive *d = r->vm.drives[i]; d; d = drive_backing(d)) {
            if (allow_file_layer(r->sandbox, d, err) < 0) {
                return -1;
            }
        }
    }
    for (size_t i = 0; i < r->n_bindings; i++) {
        const struct server *srv = r->bindings[i].server;
        const char *path = srv->ops->socket_path ? srv->ops->socket_path(srv) : NULL;

        if (path && sandbox_allow_removal(r->sandbox, path, err) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < r->n_monitors; i++) {
        const char *path = monitor_socket_path(r->monitors[i]);

        if (path && sandbox_allow_removal(r->sandbox, path, err) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Setup is done: from here on the process serves, confined. */
static int confine(struct remote *r, char **err)
{
    if (!sandbox_enabled(r->sandbox)) {
        return 0;
    }
    blk_file_forbid_new_servers();
    return collect_sandbox_paths(r, err) < 0 ? -1 : sandbox_enter(r->sandbox, err);
}

/*
 * Confined: the devices open what they open with the rights a monitor's
 * command has (a restarted disk's kept medium: docs/restart.md).
 */
static void serve_devices(struct remote *r)
{
    for (size_t i = 0; i < r->vm.n_devices; i++) {
        device_serve(r->vm.devices[i], &r->device_ctx);
    }
}

/* -sandbox options: 1 for "help" (printed), 0, or -1 (logged). */
static int parse_sandbox(struct remote *r, const struct remote_cmdline *cl)
{
    char *err = NULL;

    r->sandbox = sandbox_new();
    if (!r->sandbox) {
        log_error("out of memory");
        return -1;
    }
    for (size_t i = 0; i < cl->n_sandbox; i++) {
        int rc = sandbox_parse(r->sandbox, cl->sandbox[i], &err);

        if (rc != 0) {
            if (rc < 0) {
                log_error("%s", err);
                free(err);
            }
            return rc;
        }
    }
    return 0;
}

static void on_server_ended(void *opaque, bool error)
{
    struct remote *r = opaque;

    r->had_error |= error;
    if (--r->n_serving == 0) {
        loop_quit(r->loop, r->had_error ? 1 : 0);
    }
}

static int start_servers(struct remote *r, char **err)
{
    for (size_t i = 0; i < r->n_bindings; i++) {
        struct binding *b = &r->bindings[i];

        if (b->server->ops->start(b->server, r->loop, b->dev->pci, on_server_ended, r,
                                  err) < 0) {
            error_prefix(err, "device '%s'", b->dev->id);
            return -1;
        }
        r->n_serving++;
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
    r->sigfd = loop_watch_termination(r->loop, &r->sig_watch, on_signal, r);
    if (r->sigfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
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
        r->bindings[i].server->ops->free(r->bindings[i].server);
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
    checkpoint_close();
}

int main(int argc, char **argv)
{
    struct remote_cmdline cl;
    struct remote r = { .sigfd = -1 };
    char *err = NULL;
    int code = 1;

    log_set_program("mpqemu-remote");
    /*
     * Per-command buffers (4 KiB aligned, tens in flight) sit at the top of
     * the heap: with glibc's default trim threshold the heap shrank and grew
     * around them, a brk and fresh zeroed pages per command (4 KiB reads at
     * depth 32 ran at a fifth of their speed, from one run to the next).
     * What was used is kept, and transfers up to 4 MiB come from the heap.
     */
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
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
    switch (parse_sandbox(&r, &cl)) {
    case 1:
        sandbox_free(r.sandbox);
        remote_cmdline_free(&cl);
        return 0;
    case -1:
        sandbox_free(r.sandbox);
        remote_cmdline_free(&cl);
        return 1;
    }
    switch (keeper_wanted(&cl)) {
    case 1:
        code = keeper_main(argc, argv, &cl, r.sandbox);
        sandbox_free(r.sandbox);
        remote_cmdline_free(&cl);
        return code;
    case -1:
        sandbox_free(r.sandbox);
        remote_cmdline_free(&cl);
        return 1;
    }
    r.loop = loop_new();
    loop_bh_init(&r.quit_bh, on_quit_bh, &r);
    if (!r.loop) {
        log_error("cannot create the event loop");
    } else if (setup(&r, &cl, &err) < 0 || start_servers(&r, &err) < 0) {
        log_error("%s", err ? err : "setup failed");
    } else if (watch_signals(&r) == 0 && confine(&r, &err) == 0) {
        serve_devices(&r);
        code = loop_run(r.loop);
    } else if (err) {
        log_error("%s", err);
    }
    free(err);
    remote_cmdline_free(&cl);
    if (r.loop) {
        teardown(&r);
    }
    sandbox_free(r.sandbox);
    return code;
}
