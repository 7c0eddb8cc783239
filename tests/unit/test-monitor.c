// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The monitor's commands on block devices, through a stub device's media
 * operations on its block backend: the monitor needs nothing of SCSI.  And
 * the argument checks QMP's command table declares.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/backend.h"
#include "block/drive.h"
#include "hw/device.h"
#include "monitor/monitor.h"
#include "monitor/qmp-json.h"
#include "util/loop.h"
#include "util/opts.h"

enum { MEDIUM_SIZE = 1 << 20 };

/* A device with a tray, as the monitor sees one through its backend. */
struct stub_disk {
    struct device dev;
    bool tray_open, locked, refuse_media;
    /* What the backend asked of it. */
    unsigned opened, loaded, eject_requests, resizes;
};

struct env {
    struct monitor_vm vm;
    struct loop *loop;
    struct device *devices[2];
    struct drive **drives;
    struct stub_disk cd, hd;
    char paths[4][64];
    int npaths;
    struct drive *removed[4];
    int nremoved;
    /* What the listener heard. */
    int tray_events;
    bool last_tray_open;
};

static const struct device_driver stub_driver = { .name = "stub-disk" };

static struct stub_disk *stub_of(void *opaque)
{
    return opaque;
}

static void stub_change_media(void *opaque, bool load)
{
    struct stub_disk *s = stub_of(opaque);

    if (load) {
        s->loaded++;
    } else {
        s->opened++;
        s->locked = false;
    }
    s->tray_open = !load;
    blk_tray_moved(s->dev.blk, s->tray_open);
}

static void stub_eject_request(void *opaque)
{
    stub_of(opaque)->eject_requests++;
}

static bool stub_tray_open(void *opaque)
{
    return stub_of(opaque)->tray_open;
}

static bool stub_locked(void *opaque)
{
    return stub_of(opaque)->locked;
}

static int stub_check_medium(void *opaque, const struct drive *d, char **err)
{
    (void)d;
    if (stub_of(opaque)->refuse_media) {
        *err = strdup("the stub refuses this medium");
        return -1;
    }
    return 0;
}

static void stub_resize(void *opaque)
{
    stub_of(opaque)->resizes++;
}

static const struct blk_dev_ops removable_ops = {
    .change_media = stub_change_media,
    .eject_request = stub_eject_request,
    .is_tray_open = stub_tray_open,
    .is_medium_locked = stub_locked,
    .check_medium = stub_check_medium,
    .resize = stub_resize,
};

static const struct blk_dev_ops fixed_ops = { .resize = stub_resize };

/* A raw image file of MEDIUM_SIZE bytes, removed at teardown. */
static const char *make_image(struct env *e)
{
    char *path = e->paths[e->npaths++];
    int fd;

    strcpy(path, "/var/tmp/mpqemu-monitor-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, MEDIUM_SIZE), 0);
    close(fd);
    return path;
}

static struct drive *open_image(struct env *e, const char *id)
{
    const char *path = make_image(e);
    char text[160], *err = NULL;
    struct opts *o;
    struct drive *d;

    snprintf(text, sizeof(text), "id=%s,file=%s,format=raw", id, path);
    o = opts_parse(text, NULL, &err);
    d = drive_open(o, e->vm.aio, &err);
    opts_free(o);
    if (!d) {
        fail_msg("drive: %s", err);
    }
    return d;
}

static int vm_add_drive(struct monitor_vm *vm, struct drive *d)
{
    struct drive **grown = realloc(vm->drives, (vm->n_drives + 1) * sizeof(*grown));

    if (!grown) {
        return -1;
    }
    vm->drives = grown;
    vm->drives[vm->n_drives++] = d;
    return 0;
}

static void vm_remove_drive(struct monitor_vm *vm, struct drive *d)
{
    struct env *e = (struct env *)vm;

    for (size_t i = 0; i < vm->n_drives; i++) {
        if (vm->drives[i] == d) {
            vm->drives[i] = vm->drives[--vm->n_drives];
            break;
        }
    }
    e->removed[e->nremoved++] = d;
    drive_close(d);
}

static void heard_tray(void *opaque, struct block_backend *blk, bool open)
{
    struct env *e = opaque;

    (void)blk;
    e->tray_events++;
    e->last_tray_open = open;
}

static const struct blk_listener listener = { .tray_moved = heard_tray };

static void add_stub(struct env *e, struct stub_disk *s, const char *id, const char *drive_name,
                     struct drive *medium, const struct blk_dev_ops *ops)
{
    s->dev.driver = &stub_driver;
    s->dev.id = strdup(id);
    s->dev.blk = blk_new(drive_name, medium, NULL);
    assert_non_null(s->dev.blk);
    assert_int_equal(blk_set_loop(s->dev.blk, e->loop, NULL), 0);
    blk_attach_dev(s->dev.blk, &s->dev, ops, s);
    blk_set_listener(s->dev.blk, &listener, e);
    e->devices[e->vm.n_devices++] = &s->dev;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    struct drive *cd_medium, *hd_medium;

    e->loop = loop_new();
    e->vm.aio = aio_engine_new(e->loop, 16, NULL);
    assert_non_null(e->vm.aio);
    e->vm.devices = e->devices;
    e->vm.add_drive = vm_add_drive;
    e->vm.remove_drive = vm_remove_drive;
    cd_medium = open_image(e, "cd");
    hd_medium = open_image(e, "d0");
    assert_int_equal(vm_add_drive(&e->vm, cd_medium), 0);
    assert_int_equal(vm_add_drive(&e->vm, hd_medium), 0);
    add_stub(e, &e->cd, "cd0", "cd", cd_medium, &removable_ops);
    add_stub(e, &e->hd, "hd0", "d0", hd_medium, &fixed_ops);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;

    for (size_t i = 0; i < e->vm.n_devices; i++) {
        blk_free(e->devices[i]->blk);
        free(e->devices[i]->id);
    }
    for (size_t i = 0; i < e->vm.n_drives; i++) {
        drive_close(e->vm.drives[i]);
    }
    for (int i = 0; i < e->npaths; i++) {
        unlink(e->paths[i]);
    }
    free(e->vm.drives);
    aio_engine_free(e->vm.aio);
    loop_free(e->loop);
    free(e);
    return 0;
}

/* Runs a QMP command given as JSON arguments; returns the error text, or NULL on success. */
static char *qmp(struct env *e, const char *cmd, const char *args_json, const char **cls)
{
    struct json_object *args = args_json ? json_tokener_parse(args_json) : NULL;
    struct qmp_error err;
    struct json_object *r = qmp_run(&e->vm, cmd, args, &err);

    json_object_put(args);
    if (cls) {
        *cls = err.cls;
    }
    if (r) {
        json_object_put(r);
        return NULL;
    }
    return err.desc ? err.desc : strdup("(no description)");
}

static void expect_ok(struct env *e, const char *cmd, const char *args_json)
{
    char *desc = qmp(e, cmd, args_json, NULL);

    if (desc) {
        fail_msg("%s %s: %s", cmd, args_json, desc);
    }
}

static void expect_error(struct env *e, const char *cmd, const char *args_json,
                         const char *want_cls, const char *want_desc)
{
    const char *cls;
    char *desc = qmp(e, cmd, args_json, &cls);

    assert_non_null(desc);
    assert_string_equal(cls, want_cls);
    assert_string_equal(desc, want_desc);
    free(desc);
}

/* The entry for a device (its qdev id) in what a query (query-block, query-blockstats) lists. */
static struct json_object *device_entry(struct env *e, const char *query, const char *qdev_id)
{
    struct qmp_error err;
    struct json_object *list = qmp_run(&e->vm, query, NULL, &err), *found = NULL;

    assert_non_null(list);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *b = json_object_array_get_idx(list, i), *qdev;

        if (json_object_object_get_ex(b, "qdev", &qdev) &&
            !strcmp(json_object_get_string(qdev), qdev_id)) {
            found = json_object_get(b);
        }
    }
    json_object_put(list);
    if (!found) {
        fail_msg("no %s entry for %s", query, qdev_id);
    }
    return found;
}

/* query-block's entry for a device, as the monitor reports it. */
static struct json_object *block_entry(struct env *e, const char *qdev_id)
{
    return device_entry(e, "query-block", qdev_id);
}

static bool entry_bool(struct json_object *b, const char *key)
{
    struct json_object *v;

    assert_true(json_object_object_get_ex(b, key, &v));
    return json_object_get_boolean(v);
}

static void test_locked_tray_refuses_eject_unless_forced(void **state)
{
    struct env *e = *state;
    struct drive *medium = blk_drive(e->cd.dev.blk);
    struct json_object *b;

    e->cd.locked = true;
    b = block_entry(e, "cd0");
    assert_true(entry_bool(b, "removable"));
    assert_true(entry_bool(b, "locked"));
    assert_false(entry_bool(b, "tray_open"));
    json_object_put(b);

    expect_error(e, "eject", "{\"id\": \"cd0\"}", "GenericError",
                 "Device 'cd0' is locked and force was not specified, "
                 "wait for tray to open and try again");
    assert_int_equal(e->cd.eject_requests, 1);      /* the guest is asked to eject */
    assert_int_equal(e->cd.opened, 0);
    assert_ptr_equal(blk_drive(e->cd.dev.blk), medium);

    expect_ok(e, "eject", "{\"device\": \"cd\", \"force\": true}");
    assert_int_equal(e->cd.opened, 1);
    assert_null(blk_drive(e->cd.dev.blk));
    assert_int_equal(e->nremoved, 1);
    assert_ptr_equal(e->removed[0], medium);         /* closed and forgotten */
    assert_int_equal(e->tray_events, 1);
    assert_true(e->last_tray_open);

    b = block_entry(e, "cd0");
    assert_string_equal(json_object_get_string(json_object_object_get(b, "device")), "cd");
    assert_true(entry_bool(b, "tray_open"));
    assert_false(entry_bool(b, "locked"));
    assert_false(json_object_object_get_ex(b, "inserted", NULL));
    json_object_put(b);
}

static void test_open_tray_is_not_held_by_its_lock(void **state)
{
    struct env *e = *state;

    /* The guest opened the tray, then locked it: QEMU's do_open_tray() has nothing to open. */
    e->cd.tray_open = true;
    e->cd.locked = true;
    expect_ok(e, "eject", "{\"device\": \"cd\"}");
    assert_int_equal(e->cd.eject_requests, 0);
    assert_null(blk_drive(e->cd.dev.blk));
}

static void test_disk_named_as_qemu_names_it(void **state)
{
    struct env *e = *state;

    expect_error(e, "eject", "{\"device\": \"cd\", \"id\": \"cd0\"}", "GenericError",
                 "Need exactly one of 'device' and 'id'");
    /* Errors name the device as the command did. */
    expect_error(e, "eject", "{\"device\": \"d0\"}", "GenericError",
                 "Device 'd0' is not removable");
    e->cd.locked = true;
    expect_error(e, "eject", "{\"device\": \"cd\"}", "GenericError",
                 "Device 'cd' is locked and force was not specified, "
                 "wait for tray to open and try again");
    expect_error(e, "eject", "{\"id\": \"nope\"}", "DeviceNotFound", "Device 'nope' not found");
    assert_int_equal(e->cd.opened, 0);
}

/* A command's answer that comes later. */
struct answer {
    struct qmp_later later;
    bool done;
    struct json_object *ret;
    char *desc;
};

static void answered(struct qmp_later *l, struct json_object *ret, struct qmp_error *e)
{
    struct answer *a = (struct answer *)l;

    a->done = true;
    a->ret = ret;
    a->desc = e->desc;
}

/* Runs a command that may wait; whether it did (its answer then comes to a). */
static bool run_later(struct env *e, const char *cmd, const char *args_json, struct answer *a)
{
    struct json_object *args = json_tokener_parse(args_json);
    struct qmp_error err;
    struct json_object *r;

    *a = (struct answer){ .later = { answered } };
    r = qmp_run_later(&e->vm, cmd, args, &err, &a->later);
    json_object_put(args);
    if (r || err.cls) {
        a->done = true;
        a->ret = r;
        a->desc = err.desc;
        return false;
    }
    return true;
}

static void run_until(struct env *e, const bool *flag)
{
    for (int i = 0; i < 500 && !*flag; i++) {
        loop_run_once(e->loop, 10);
    }
    assert_true(*flag);
}

/* A read of the guest's on a medium, in flight. */
struct read_in_flight {
    struct blk_io io;
    struct iovec iov;
    uint8_t data[4096];
    bool done;
    int result;
    bool medium_was_in;         /* when it completed */
    struct block_backend *blk;
};

static void read_done(struct blk_io *io, int result)
{
    struct read_in_flight *r = io->opaque;

    r->done = true;
    r->result = result;
    r->medium_was_in = blk_drive(r->blk) != NULL;
}

static void start_read(struct read_in_flight *r, struct block_backend *blk)
{
    *r = (struct read_in_flight){ .blk = blk };
    r->iov = (struct iovec){ r->data, sizeof(r->data) };
    r->io = (struct blk_io){ .op = BLK_READ, .offset = 8192, .iov = &r->iov, .iovcnt = 1,
                             .done = read_done, .opaque = r };
    drive_submit(blk_drive(blk), &r->io);
}

/*
 * As QEMU's eject (blk_remove_bs() drains): the tray opens at once, the
 * read in flight completes on the medium, then the medium comes out and the
 * command answers.
 */
static void test_eject_waits_for_the_io_in_flight(void **state)
{
    struct env *e = *state;
    struct block_backend *blk = e->cd.dev.blk;
    struct drive *medium = blk_drive(blk);
    /* Static: a failed check leaves it in flight until the teardown drains it. */
    static struct read_in_flight r;
    struct answer a;

    start_read(&r, blk);
    assert_true(run_later(e, "eject", "{\"id\": \"cd0\", \"force\": true}", &a));
    assert_int_equal(e->cd.opened, 1);              /* the tray is open already */
    assert_true(e->last_tray_open);
    assert_false(blk_available(blk));               /* nothing new starts */
    assert_ptr_equal(blk_drive(blk), medium);       /* the medium waits for its read */
    assert_false(a.done);
    run_until(e, &a.done);
    assert_true(r.done);
    assert_int_equal(r.result, 0);
    assert_true(r.medium_was_in);
    assert_non_null(a.ret);
    json_object_put(a.ret);
    assert_null(blk_drive(blk));
    assert_ptr_equal(e->removed[e->nremoved - 1], medium);
    assert_int_equal(e->tray_events, 1);
}

/* blockdev-change-medium goes the same way: the new medium goes in once the old one's I/O is done. */
static void test_change_medium_waits_for_the_io_in_flight(void **state)
{
    struct env *e = *state;
    struct block_backend *blk = e->cd.dev.blk;
    struct drive *medium = blk_drive(blk);
    static struct read_in_flight r;
    struct answer a, busy;
    char args[200];

    snprintf(args, sizeof(args), "{\"id\": \"cd0\", \"filename\": \"%s\"}", make_image(e));
    start_read(&r, blk);
    assert_true(run_later(e, "blockdev-change-medium", args, &a));
    assert_ptr_equal(blk_drive(blk), medium);
    /* One at a time: another is refused meanwhile, its new medium closed. */
    assert_false(run_later(e, "blockdev-change-medium", args, &busy));
    assert_string_equal(busy.desc, "Device 'cd0' is busy: its medium is coming out");
    free(busy.desc);
    assert_int_equal(e->vm.n_drives, 3);            /* two, and the one waiting to go in */
    run_until(e, &a.done);
    assert_true(r.done);
    assert_int_equal(r.result, 0);
    assert_non_null(a.ret);
    json_object_put(a.ret);
    assert_ptr_not_equal(blk_drive(blk), medium);
    assert_ptr_equal(e->removed[e->nremoved - 1], medium);
    assert_int_equal(e->cd.opened, 1);
    assert_int_equal(e->cd.loaded, 1);
    assert_false(e->last_tray_open);
    assert_int_equal(e->vm.n_drives, 2);
}

/* Without a way to answer later (qmp_run()), an eject with I/O in flight is refused untouched. */
static void test_eject_that_cannot_wait_is_refused(void **state)
{
    struct env *e = *state;
    static struct read_in_flight r;

    start_read(&r, e->cd.dev.blk);
    expect_error(e, "eject", "{\"id\": \"cd0\"}", "GenericError",
                 "Device 'cd0' has I/O in flight, which this command cannot wait for");
    assert_int_equal(e->cd.opened, 0);
    run_until(e, &r.done);
    expect_ok(e, "eject", "{\"id\": \"cd0\"}");
}

/*
 * A request that never completes (a server that holds its connection and
 * never answers) holds the eject only up to the drain limit: it fails, the
 * tray stays open with the medium in it, and a later eject takes it out
 * once the request is done.
 */
static void test_eject_gives_up_past_the_drain_limit(void **state)
{
    struct env *e = *state;
    struct block_backend *blk = e->cd.dev.blk;
    struct drive *medium = blk_drive(blk);
    uint64_t t0;
    struct answer a;
    struct json_object *b;

    blk_set_drain_limit(blk, 200 * 1000000ull);
    blk_inc_in_flight(blk);                         /* the request the server sits on */
    t0 = loop_now_ns();
    assert_true(run_later(e, "eject", "{\"device\": \"cd\"}", &a));
    run_until(e, &a.done);
    assert_true(loop_now_ns() - t0 >= 200 * 1000000ull);
    assert_null(a.ret);
    assert_string_equal(a.desc, "Device 'cd' still has 1 request in flight after 200 ms; "
                                "the tray is open, the medium stays in it");
    free(a.desc);
    assert_ptr_equal(blk_drive(blk), medium);
    b = block_entry(e, "cd0");
    assert_true(entry_bool(b, "tray_open"));
    assert_true(json_object_object_get_ex(b, "inserted", NULL));
    json_object_put(b);
    assert_int_equal(e->nremoved, 0);

    blk_dec_in_flight(blk);                         /* the server answers at last */
    assert_false(run_later(e, "eject", "{\"device\": \"cd\"}", &a));
    assert_non_null(a.ret);
    json_object_put(a.ret);
    assert_null(blk_drive(blk));
    assert_ptr_equal(e->removed[0], medium);
}

/* A device that goes (the process ends) while its eject waits: the command fails, once. */
static void test_device_going_away_ends_the_wait(void **state)
{
    struct env *e = *state;
    struct answer a;
    char args[200];

    snprintf(args, sizeof(args), "{\"id\": \"cd0\", \"filename\": \"%s\"}", make_image(e));
    blk_inc_in_flight(e->cd.dev.blk);
    assert_true(run_later(e, "blockdev-change-medium", args, &a));
    blk_free(e->cd.dev.blk);
    e->cd.dev.blk = NULL;
    assert_true(a.done);
    assert_null(a.ret);
    assert_string_equal(a.desc, "the device is going away");
    free(a.desc);
    assert_int_equal(e->vm.n_drives, 2);            /* the new medium was closed */
}

/* --- sessions that wait for a command ------------------------------------------ */

/* A monitor of the env's on a unix socket, and its client. */
struct session {
    struct monitor *mon;
    char path[64];
    int fd;
    char got[8192];
    size_t len;
};

static void session_open(struct env *e, struct session *s, bool qmp)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char spec[100], *err = NULL;

    snprintf(s->path, sizeof(s->path), "/tmp/mpqemu-montest-%d", (int)getpid());
    snprintf(spec, sizeof(spec), "unix:%s,server=on,wait=off", s->path);
    s->mon = monitor_new(e->loop, &e->vm, spec, qmp, &err);
    if (!s->mon) {
        fail_msg("monitor: %s", err);
    }
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
    assert_int_equal(connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    s->len = 0;
}

/* Runs the loop a while; what the client received since the last call. */
static const char *session_read(struct env *e, struct session *s)
{
    ssize_t n;

    s->len = 0;
    for (int i = 0; i < 20; i++) {
        loop_run_once(e->loop, 5);
        while ((n = read(s->fd, s->got + s->len, sizeof(s->got) - 1 - s->len)) > 0) {
            s->len += (size_t)n;
        }
    }
    s->got[s->len] = 0;
    return s->got;
}

static void session_send(struct session *s, const char *text)
{
    assert_int_equal(write(s->fd, text, strlen(text)), (ssize_t)strlen(text));
}

/* A QMP session past its greeting and capabilities negotiation. */
static void qmp_session_open(struct env *e, struct session *s)
{
    session_open(e, s, true);
    assert_non_null(strstr(session_read(e, s), "\"QMP\""));
    session_send(s, "{\"execute\":\"qmp_capabilities\"}");
    assert_non_null(strstr(session_read(e, s), "{\"return\": {}}"));
}

static void session_close(struct session *s)
{
    if (s->fd >= 0) {
        close(s->fd);
    }
    monitor_free(s->mon);
}

/*
 * QMP: an eject whose medium has a request in flight answers once it has
 * completed, as QEMU's (which drains before it answers); the session
 * answers nothing else meanwhile, and the commands sent in the meantime
 * are answered afterwards, in order.
 */
static void test_qmp_session_waits_for_the_eject(void **state)
{
    struct env *e = *state;
    struct block_backend *blk = e->cd.dev.blk;
    struct session s;
    const char *got;

    qmp_session_open(e, &s);
    blk_inc_in_flight(blk);                         /* a request in flight on the medium */
    session_send(&s, "{\"execute\":\"eject\",\"arguments\":{\"id\":\"cd0\"},\"id\":1}"
                     "{\"execute\":\"query-name\",\"id\":2}");
    assert_string_equal(session_read(e, &s), "");  /* waiting */
    assert_true(e->cd.tray_open);
    session_send(&s, "{\"execute\":\"query-status\",\"id\":3}");
    assert_string_equal(session_read(e, &s), "");
    blk_dec_in_flight(blk);                         /* it completes */
    got = session_read(e, &s);
    assert_string_equal(got, "{\"return\": {}, \"id\": 1}\r\n"
                             "{\"return\": {}, \"id\": 2}\r\n"
                             "{\"return\": {\"status\": \"running\", \"running\": true}, "
                             "\"id\": 3}\r\n");
    assert_null(blk_drive(blk));
    session_close(&s);
}

/* HMP, and HMP through QMP's human-monitor-command, wait the same way. */
static void test_hmp_sessions_wait_for_the_eject(void **state)
{
    struct env *e = *state;
    struct block_backend *blk = e->cd.dev.blk;
    struct session s;
    char args[200];

    qmp_session_open(e, &s);
    blk_inc_in_flight(blk);
    session_send(&s, "{\"execute\":\"human-monitor-command\","
                     "\"arguments\":{\"command-line\":\"eject cd\"},\"id\":\"h\"}");
    assert_string_equal(session_read(e, &s), "");
    blk_dec_in_flight(blk);
    assert_string_equal(session_read(e, &s), "{\"return\": \"\", \"id\": \"h\"}\r\n");
    assert_null(blk_drive(blk));
    session_close(&s);

    snprintf(args, sizeof(args), "{\"device\": \"cd\", \"filename\": \"%s\"}", make_image(e));
    expect_ok(e, "blockdev-change-medium", args);
    session_open(e, &s, false);
    assert_non_null(strstr(session_read(e, &s), "(qemu) "));
    blk_inc_in_flight(blk);
    session_send(&s, "eject -f cd\ninfo status\n");
    assert_string_equal(session_read(e, &s), "");
    blk_dec_in_flight(blk);
    assert_string_equal(session_read(e, &s), "(qemu) VM status: running\r\n(qemu) ");
    assert_null(blk_drive(blk));
    session_close(&s);
}

/* Input past 1 MiB while a command waits is dropped: what comes after it is not answered. */
static void test_input_past_the_limit_while_waiting(void **state)
{
    struct env *e = *state;
    struct block_backend *blk = e->cd.dev.blk;
    static char spaces[64 * 1024];
    const char *late = "{\"execute\":\"query-name\",\"id\":\"late\"}";
    struct session s;
    size_t sent = 0;

    qmp_session_open(e, &s);
    blk_inc_in_flight(blk);
    session_send(&s, "{\"execute\":\"eject\",\"arguments\":{\"id\":\"cd0\"},\"id\":1}");
    session_read(e, &s);
    memset(spaces, ' ', sizeof(spaces));
    while (sent < (1u << 20) + strlen(late)) {
        bool all_spaces = sent < (1u << 20);
        ssize_t n = all_spaces ? write(s.fd, spaces, sizeof(spaces))
                               : write(s.fd, late + (sent - (1u << 20)),
                                       strlen(late) - (sent - (1u << 20)));

        if (n > 0) {
            sent += all_spaces && sent + (size_t)n > (1u << 20) ? (1u << 20) - sent : (size_t)n;
        } else {
            loop_run_once(e->loop, 5);      /* the monitor reads (and keeps) the input */
        }
    }
    for (int unread = 1, i = 0; unread && i < 1000; i++) {
        assert_int_equal(ioctl(s.fd, SIOCOUTQ, &unread), 0);
        loop_run_once(e->loop, 5);
    }
    session_read(e, &s);
    blk_dec_in_flight(blk);
    /* The MiB kept is read (whitespace: nothing to answer); the late request is gone. */
    assert_string_equal(session_read(e, &s), "{\"return\": {}, \"id\": 1}\r\n");
    assert_string_equal(session_read(e, &s), "");
    session_close(&s);
}

/*
 * A client that leaves while its eject waits: the eject goes on and its
 * answer goes nowhere; the next client is served at once.  Past the drain
 * limit, the answer is the error.
 */
static void test_session_left_while_waiting(void **state)
{
    struct env *e = *state;
    struct block_backend *blk = e->cd.dev.blk;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct session s;

    qmp_session_open(e, &s);
    blk_inc_in_flight(blk);
    session_send(&s, "{\"execute\":\"eject\",\"arguments\":{\"device\":\"cd\"}}");
    assert_string_equal(session_read(e, &s), "");
    close(s.fd);
    session_read(e, &s);                            /* the monitor sees it go */
    s.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s.path);
    assert_int_equal(connect(s.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_non_null(strstr(session_read(e, &s), "\"QMP\""));
    session_send(&s, "{\"execute\":\"qmp_capabilities\"}");
    assert_string_equal(session_read(e, &s), "{\"return\": {}}\r\n");
    blk_dec_in_flight(blk);
    assert_string_equal(session_read(e, &s), "");   /* the old client's answer */
    assert_null(blk_drive(blk));

    snprintf(s.got, sizeof(s.got), "{\"device\": \"cd\", \"filename\": \"%s\"}",
             make_image(e));
    expect_ok(e, "blockdev-change-medium", s.got);
    blk_set_drain_limit(blk, 50 * 1000000ull);
    blk_inc_in_flight(blk);
    session_send(&s, "{\"execute\":\"eject\",\"arguments\":{\"device\":\"cd\"}}");
    for (int i = 0; i < 10 && !s.len; i++) {
        session_read(e, &s);
    }
    assert_non_null(strstr(s.got, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                                  "\"Device 'cd' still has 1 request in flight after 50 ms; "
                                  "the tray is open, the medium stays in it\"}}"));
    blk_dec_in_flight(blk);
    session_close(&s);
}

static void test_change_medium_swaps_the_drive(void **state)
{
    struct env *e = *state;
    struct drive *old = blk_drive(e->cd.dev.blk), *now;
    char args[200];

    const char *path = make_image(e);

    snprintf(args, sizeof(args),
             "{\"device\": \"cd\", \"filename\": \"%s\", \"format\": \"raw\"}", path);

    e->cd.refuse_media = true;
    expect_error(e, "blockdev-change-medium", args, "GenericError",
                 "the stub refuses this medium");
    assert_ptr_equal(blk_drive(e->cd.dev.blk), old);
    assert_int_equal(e->cd.opened, 0);

    e->cd.refuse_media = false;
    expect_ok(e, "blockdev-change-medium", args);
    now = blk_drive(e->cd.dev.blk);
    assert_ptr_not_equal(now, old);
    assert_string_equal(now->id, "cd");             /* named after the backend */
    assert_string_equal(now->file, path);
    assert_false(now->readonly);                    /* retained from the old medium */
    assert_int_equal(e->cd.opened, 1);
    assert_int_equal(e->cd.loaded, 1);
    assert_int_equal(e->tray_events, 2);
    assert_false(e->last_tray_open);
    assert_ptr_equal(e->removed[e->nremoved - 1], old);
    assert_ptr_equal(now->backend, e->cd.dev.blk);
}

static void test_fixed_medium_is_not_removable(void **state)
{
    struct env *e = *state;
    struct json_object *b = block_entry(e, "hd0");

    assert_false(entry_bool(b, "removable"));
    assert_false(json_object_object_get_ex(b, "tray_open", NULL));
    json_object_put(b);
    expect_error(e, "eject", "{\"id\": \"hd0\"}", "GenericError",
                 "Device 'hd0' is not removable");
    expect_error(e, "eject", "{\"device\": \"nope\"}", "DeviceNotFound",
                 "Device 'nope' not found");
    expect_error(e, "eject", "{}", "GenericError", "Need exactly one of 'device' and 'id'");
}

static void test_resize_tells_the_device(void **state)
{
    struct env *e = *state;

    expect_ok(e, "block_resize", "{\"device\": \"d0\", \"size\": 2097152}");
    assert_int_equal(blk_drive(e->hd.dev.blk)->size, 2 * MEDIUM_SIZE);
    assert_int_equal(e->hd.resizes, 1);
    assert_int_equal(e->cd.resizes, 0);
}

/* A write of the guest's, and what the device had heard of resizes when it completed. */
struct write_in_flight {
    struct blk_io io;
    struct iovec iov;
    uint8_t data[4096];
    struct env *env;
    bool done;
    int result;
    unsigned resizes_seen;
};

static void write_done(struct blk_io *io, int result)
{
    struct write_in_flight *w = io->opaque;

    w->done = true;
    w->result = result;
    w->resizes_seen = w->env->hd.resizes;
}

static off_t file_size(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_resize_drains_io_in_flight_first(void **state)
{
    struct env *e = *state;
    struct drive *d = blk_drive(e->hd.dev.blk);
    /* Static: a failed check leaves it in flight until the teardown drains it. */
    static struct write_in_flight w;

    w = (struct write_in_flight){ .env = e };
    /* A write to the last 4 KiB, submitted but not yet done, then a shrink to half. */
    memset(w.data, 0xa5, sizeof(w.data));
    w.iov = (struct iovec){ w.data, sizeof(w.data) };
    w.io = (struct blk_io){ .op = BLK_WRITE, .offset = MEDIUM_SIZE - sizeof(w.data),
                            .iov = &w.iov, .iovcnt = 1, .done = write_done, .opaque = &w };
    drive_submit(d, &w.io);
    expect_ok(e, "block_resize", "{\"device\": \"d0\", \"size\": 524288}");
    /* The write completed, against the old size, before the resize and its news. */
    assert_true(w.done);
    assert_int_equal(w.result, 0);
    assert_int_equal(w.resizes_seen, 0);
    assert_int_equal(e->hd.resizes, 1);
    /* Nothing lands past the new end afterwards. */
    while (loop_run_once(e->loop, 20) > 0) {
    }
    assert_int_equal(d->size, MEDIUM_SIZE / 2);
    assert_int_equal(file_size(d->file), MEDIUM_SIZE / 2);
}

/* query-blockstats' entry for a device (its qdev id). */
static struct json_object *blockstats_entry(struct env *e, const char *qdev_id)
{
    return device_entry(e, "query-blockstats", qdev_id);
}

static int64_t entry_stat(struct json_object *b, const char *name)
{
    struct json_object *v;

    assert_true(json_object_object_get_ex(json_object_object_get(b, "stats"), name, &v));
    return json_object_get_int64(v);
}

/* A write to a medium, run to its end. */
static void write_and_wait(struct env *e, struct block_backend *blk, uint64_t offset)
{
    static struct write_in_flight w;

    w = (struct write_in_flight){ .env = e };
    w.iov = (struct iovec){ w.data, sizeof(w.data) };
    w.io = (struct blk_io){ .op = BLK_WRITE, .offset = offset, .iov = &w.iov, .iovcnt = 1,
                            .done = write_done, .opaque = &w };
    drive_submit(blk_drive(blk), &w.io);
    run_until(e, &w.done);
    assert_int_equal(w.result, 0);
}

/*
 * As QEMU's, whose counters are the BlockBackend's (blk_get_stats()): the
 * device's counts run on across an eject and a new medium, the entry
 * stays while the tray is empty (no node-name then); wr_highest_offset is
 * the medium's (QEMU: the node's), 0 again on a new one.
 */
static void test_blockstats_survive_a_medium_change(void **state)
{
    struct env *e = *state;
    static struct read_in_flight r;
    struct json_object *b;
    char args[200];

    start_read(&r, e->cd.dev.blk);
    run_until(e, &r.done);
    write_and_wait(e, e->cd.dev.blk, 8192);
    b = blockstats_entry(e, "cd0");
    assert_int_equal(entry_stat(b, "rd_operations"), 1);
    assert_int_equal(entry_stat(b, "wr_operations"), 1);
    assert_int_equal(entry_stat(b, "wr_highest_offset"), 8192 + 4096);
    json_object_put(b);

    expect_ok(e, "eject", "{\"id\": \"cd0\"}");
    b = blockstats_entry(e, "cd0");
    assert_string_equal(json_object_get_string(json_object_object_get(b, "device")), "cd");
    assert_false(json_object_object_get_ex(b, "node-name", NULL));
    assert_int_equal(entry_stat(b, "rd_operations"), 1);
    assert_int_equal(entry_stat(b, "rd_bytes"), 4096);
    assert_int_equal(entry_stat(b, "wr_operations"), 1);
    assert_int_equal(entry_stat(b, "wr_highest_offset"), 0);
    assert_true(entry_stat(b, "idle_time_ns") >= 0);
    json_object_put(b);

    snprintf(args, sizeof(args),
             "{\"id\": \"cd0\", \"filename\": \"%s\", \"format\": \"raw\"}",
             make_image(e));
    expect_ok(e, "blockdev-change-medium", args);
    start_read(&r, e->cd.dev.blk);
    run_until(e, &r.done);
    b = blockstats_entry(e, "cd0");
    assert_string_equal(json_object_get_string(json_object_object_get(b, "node-name")), "cd");
    assert_int_equal(entry_stat(b, "rd_operations"), 2);
    assert_int_equal(entry_stat(b, "rd_bytes"), 8192);
    assert_int_equal(entry_stat(b, "wr_operations"), 1);
    assert_int_equal(entry_stat(b, "wr_highest_offset"), 0);
    json_object_put(b);
}

static void test_arguments_checked_from_the_table(void **state)
{
    struct env *e = *state;

    expect_error(e, "query-status", "{\"x\": 1}", "GenericError", "Parameter 'x' is unexpected");
    expect_error(e, "qom-get", "{\"path\": \"hd0\"}", "GenericError",
                 "Parameter 'property' is missing");
    expect_error(e, "block_resize", "{\"device\": \"d0\", \"size\": \"big\"}", "GenericError",
                 "Invalid parameter type for 'size', expected: integer");
    expect_error(e, "eject", "{\"id\": \"cd0\", \"filename\": \"x\"}", "GenericError",
                 "Parameter 'filename' is unexpected");
    expect_error(e, "no-such-command", NULL, "CommandNotFound",
                 "The command no-such-command has not been found");
    expect_ok(e, "query-blockstats", "{\"query-nodes\": false}");
    expect_ok(e, "qom-get", "{\"path\": \"hd0\", \"property\": \"type\"}");
    assert_int_equal(e->cd.opened + e->hd.resizes, 0);  /* nothing ran */
}

/*
 * A drive no device uses, as QEMU shows a -drive without a device: a
 * removable backend with its tray closed, no qdev, no I/O status.
 */
static void test_drive_without_device_as_qemu(void **state)
{
    struct env *e = *state;
    struct qmp_error err;
    struct json_object *list, *b, *v;

    assert_int_equal(vm_add_drive(&e->vm, open_image(e, "spare")), 0);
    list = qmp_run(&e->vm, "query-block", NULL, &err);
    assert_non_null(list);
    b = json_object_array_get_idx(list, json_object_array_length(list) - 1);
    assert_string_equal(json_object_get_string(json_object_object_get(b, "device")), "spare");
    assert_true(entry_bool(b, "removable"));
    assert_false(entry_bool(b, "tray_open"));
    assert_false(entry_bool(b, "locked"));
    assert_false(json_object_object_get_ex(b, "qdev", &v));
    assert_false(json_object_object_get_ex(b, "io-status", &v));
    assert_true(json_object_object_get_ex(b, "inserted", &v));
    json_object_put(list);
}

/* --- QMP's text ------------------------------------------------------------------ */

static void expect_text(struct json_object *o, const char *want)
{
    char *text = qmp_json_text(o);

    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
    json_object_put(o);
}

static void expect_quoted(const char *bytes, size_t len, const char *want)
{
    expect_text(json_object_new_string_len(bytes, (int)len), want);
}

/*
 * Strings as QEMU's JSON writer quotes them after mod_utf8_codepoint():
 * each invalid sequence (a stray or impossible byte, one cut short, an
 * overlong form other than C0 80, a surrogate, a noncharacter, past
 * U+10FFFF) one U+FFFD; past U+FFFF a surrogate pair.
 */
static void test_json_strings_as_qemu_quotes_them(void **state)
{
    (void)state;
    expect_quoted("a/\\\"\x7f", 5, "\"a/\\\\\\\"\\u007F\"");
    expect_quoted("\x00\xc0\x80", 3, "\"\\u0000\\u0000\"");
    expect_quoted("\xf0\x9f\x98\x80", 4, "\"\\uD83D\\uDE00\"");
    expect_quoted("\xff\xfe\x80", 3, "\"\\uFFFD\\uFFFD\\uFFFD\"");
    expect_quoted("\xe2\x82x", 3, "\"\\uFFFDx\"");
    expect_quoted("\xe2\x82", 2, "\"\\uFFFD\"");
    expect_quoted("\xc1\x81\xed\xa0\x80", 5, "\"\\uFFFD\\uFFFD\"");
    expect_quoted("\xef\xbf\xbe\xef\xb7\x90\xf4\x90\x80\x80", 10,
                  "\"\\uFFFD\\uFFFD\\uFFFD\"");
    expect_quoted("\xef\xbf\xbd\xc3\xa9", 5, "\"\\uFFFD\\u00E9\"");
}

/* Numbers as QEMU prints them; arrays and objects with ", " and ": ". */
static void test_json_values_as_qemu_prints_them(void **state)
{
    struct json_object *o = json_object_new_object(), *a = json_object_new_array();

    (void)state;
    expect_text(json_object_new_double(1.0), "1");
    expect_text(json_object_new_double(-0.0), "-0");
    expect_text(json_object_new_double(0.1), "0.10000000000000001");
    expect_text(json_object_new_double(HUGE_VAL), "inf");
    expect_text(json_object_new_uint64(UINT64_MAX), "18446744073709551615");
    expect_text(json_object_new_int64(INT64_MIN), "-9223372036854775808");
    expect_text(json_object_new_int64(INT64_MAX), "9223372036854775807");
    expect_text(NULL, "null");
    json_object_array_add(a, json_object_new_boolean(true));
    json_object_array_add(a, NULL);
    json_object_array_add(a, json_object_new_array());
    json_object_object_add(o, "list", a);
    json_object_object_add(o, "obj", json_object_new_object());
    expect_text(o, "{\"list\": [true, null, []], \"obj\": {}}");
}

/*
 * Members in the order of QEMU's QDict: by bucket of the tdb hash modulo
 * 512 (micro and minor share 225, status and singlestep 202), the newest
 * of a bucket first, whatever order they were added in.
 */
static void test_json_members_in_qdict_order(void **state)
{
    struct json_object *o = json_object_new_object();
    static const char *const keys[] = { "major", "minor", "micro", "running", "singlestep",
                                        "status", "id", "return", "error" };

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_object_object_add(o, keys[i], json_object_new_int64((int64_t)i));
    }
    expect_text(o, "{\"status\": 5, \"singlestep\": 4, \"micro\": 2, \"minor\": 1, "
                   "\"running\": 3, \"return\": 7, \"major\": 0, \"id\": 6, \"error\": 8}");
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_locked_tray_refuses_eject_unless_forced),
        CASE(test_open_tray_is_not_held_by_its_lock),
        CASE(test_disk_named_as_qemu_names_it),
        CASE(test_eject_waits_for_the_io_in_flight),
        CASE(test_change_medium_waits_for_the_io_in_flight),
        CASE(test_eject_that_cannot_wait_is_refused),
        CASE(test_eject_gives_up_past_the_drain_limit),
        CASE(test_device_going_away_ends_the_wait),
        CASE(test_qmp_session_waits_for_the_eject),
        CASE(test_hmp_sessions_wait_for_the_eject),
        CASE(test_input_past_the_limit_while_waiting),
        CASE(test_session_left_while_waiting),
        CASE(test_change_medium_swaps_the_drive),
        CASE(test_fixed_medium_is_not_removable),
        CASE(test_resize_tells_the_device),
        CASE(test_resize_drains_io_in_flight_first),
        CASE(test_arguments_checked_from_the_table),
        CASE(test_drive_without_device_as_qemu),
        CASE(test_blockstats_survive_a_medium_change),
        cmocka_unit_test(test_json_strings_as_qemu_quotes_them),
        cmocka_unit_test(test_json_values_as_qemu_prints_them),
        cmocka_unit_test(test_json_members_in_qdict_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
