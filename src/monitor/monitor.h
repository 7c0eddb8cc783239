/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The remote's monitors, as QEMU's -qmp and -monitor: QMP (JSON, with
 * capabilities negotiation and events) and HMP (text).  Both run the same
 * commands (commands.c) on the process's devices and drives; HMP's
 * "info" commands print what QMP's "query-" commands return.
 */
#ifndef MPQEMU_MONITOR_MONITOR_H
#define MPQEMU_MONITOR_MONITOR_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;
struct loop;
struct device;
struct drive;
struct aio_engine;

/* What the monitors see of the process and may do to it. */
struct monitor_vm {
    const char *name;               /* -name, or NULL */
    struct device **devices;
    size_t n_devices;
    struct drive **drives;
    size_t n_drives;
    struct aio_engine *aio;
    /* Resets every device, as a system reset would. */
    void (*reset)(struct monitor_vm *vm);
    /* Ends the process soon (after this command's reply). */
    void (*quit)(struct monitor_vm *vm);
    /* Adds a drive opened by a command (a new medium); 0 or -1. */
    int (*add_drive)(struct monitor_vm *vm, struct drive *d);
    /* Closes a drive no device uses any more and forgets it. */
    void (*remove_drive)(struct monitor_vm *vm, struct drive *d);
    /* What the process's sandbox enforces (query-sandbox), a new JSON object. */
    struct json_object *(*sandbox_info)(struct monitor_vm *vm);
};

struct monitor;

/* A QMP (qmp true) or HMP monitor on the character device 'spec'. */
struct monitor *monitor_new(struct loop *loop, struct monitor_vm *vm, const char *spec,
                            bool qmp, char **err);
/* For the "wait" form: blocks until its client is there. */
int monitor_wait_client(struct monitor *m, char **err);
/* The unix socket the monitor listens on, else NULL. */
const char *monitor_socket_path(const struct monitor *m);
void monitor_free(struct monitor *m);

/* Sends an event (name, data or NULL, consumed) to every QMP client. */
void monitor_event(const char *name, struct json_object *data);

/* --- block-events.c ------------------------------------------------------------ */

/* The block devices' tray moves and I/O errors become QMP events from now on. */
void monitor_watch_block_devices(struct monitor_vm *vm);

/* --- commands.c --------------------------------------------------------------- */

/* A command's failure: QMP's error class and a description. */
struct qmp_error {
    const char *cls;
    char *desc;
};

/*
 * Runs a QMP command; returns its result (never NULL on success) or NULL
 * with *e set.  A command that cannot answer at once (an eject whose
 * medium has I/O in flight) is refused.
 */
struct json_object *qmp_run(struct monitor_vm *vm, const char *name, struct json_object *args,
                            struct qmp_error *e);

/*
 * Where the answer of a command that waits goes: done() runs once, from
 * the loop, with the result, or with NULL and the error (*e: done() frees
 * its desc).
 */
struct qmp_later {
    void (*done)(struct qmp_later *l, struct json_object *ret, struct qmp_error *e);
};
/*
 * qmp_run(), but a command may wait (an eject, a medium change, an HMP
 * line running one, while the medium's I/O completes): it returns NULL
 * with e->cls NULL, and later->done() answers.  later NULL: as qmp_run().
 */
struct json_object *qmp_run_later(struct monitor_vm *vm, const char *name,
                                  struct json_object *args, struct qmp_error *e,
                                  struct qmp_later *later);

/* --- hmp.c -------------------------------------------------------------------- */

/* Runs one HMP command line; returns the text to print (malloc'd). */
char *hmp_run(struct monitor_vm *vm, const char *line);

/* Where the text of an HMP line that waits goes: done() takes it (malloc'd, may be NULL). */
struct hmp_later {
    void (*done)(struct hmp_later *l, char *text);
};
/*
 * hmp_run(), but the line's command may wait (as qmp_run_later()): then
 * it returns NULL with *waits true, and later->done() gets the text.
 */
char *hmp_run_later(struct monitor_vm *vm, const char *line, struct hmp_later *later,
                    bool *waits);

#endif
