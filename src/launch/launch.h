/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mpqemu-launch: one VM whose PCI devices live in mpqemu-remote processes.
 * config.c reads the VM description (docs/launcher.md), plan.c turns it
 * into command lines, run.c starts and supervises the processes;
 * confine.c and view.c confine the remotes (confine.h).
 */
#ifndef MPQEMU_LAUNCH_LAUNCH_H
#define MPQEMU_LAUNCH_LAUNCH_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "launch/confine.h"

enum protocol { PROTO_AUTO, PROTO_VFIO_USER, PROTO_MULTI_PROCESS };
enum remote_policy { POLICY_STOP, POLICY_CONTINUE, POLICY_RESTART };

/*
 * "on-remote-exit": "restart": each remote's keeper restarts its device
 * process at most max times within any window seconds (mpqemu-remote -restart).
 */
struct restart_budget {
    unsigned max, window;
};

struct strv {
    char **v;
    size_t n;
};

/* A device of a remote: its -device text and, for PCI functions, its socket. */
struct lc_device {
    char *id;
    char *text;                 /* "driver,id=...,prop=..." */
    bool pci;
    /* Set by the plan. */
    int fds[2];                 /* multi-process: [0] the remote's end, [1] QEMU's */
    char *socket_path;          /* vfio-user */
};

struct lc_remote {
    char *name;
    struct lc_device *devices;
    size_t n_devices;
    struct strv drives;         /* -drive texts */
    struct strv args;           /* more options, as given */
    struct strv media_dirs;     /* "-sandbox allow-dir=DIR" texts, one per media directory */
    bool host_network;          /* "network": "host": no network namespace of its own */
    /* Set by the plan and the run. */
    struct confine confine;     /* the description's, for this remote (user shared with it) */
    struct strv argv;
    struct view view;           /* confined: what it sees of the file system */
    char *log_path;
    off_t log_start;            /* the log's size at start: earlier runs' lines come before */
    pid_t pid;
    int status;
    bool exited;
};

struct launch_config {
    struct strv qemu;           /* the QEMU command (binary and leading arguments) */
    char *qemu_root;            /* QEMU runs chrooted here: host paths are mapped */
    char *remote_binary;
    char *machine, *accel, *memory;
    char *memory_path;          /* memory-backend-file on this path, else memfd */
    char *kernel, *initrd, *append;
    struct strv qemu_args;
    enum protocol protocol;
    enum remote_policy on_remote_exit;
    struct restart_budget restart;
    char *log_dir;
    char *run_dir;              /* sockets and shared memory; made and removed by us */
    char *cpus;                 /* "cpus": the CPU list QEMU and the remotes run on */
    struct confine confine;
    struct lc_remote *remotes;
    size_t n_remotes;
    /* Set by the plan. */
    struct strv qemu_argv;
    char *qemu_log;
    bool created_memory_file;
    cpu_set_t cpu_set;          /* cpus, parsed; applied to the launcher, inherited */
};

/* config.c */
int config_load(struct launch_config *c, const char *path, char **err);
/* "auto", "vfio-user", "multi-process"; -1 for another name. */
int protocol_from_name(const char *name);
/* "stop", "continue", "restart"; -1 for another name. */
int policy_from_name(const char *name);
const char *policy_name(enum remote_policy p);
void config_free(struct launch_config *c);
int strv_add(struct strv *s, const char *text);
int strv_addf(struct strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strv_free(struct strv *s);

/*
 * cpus.c: a CPU list as taskset -c and cpusets write it ("0", "0-3,6"),
 * every CPU one the launcher may use; 0 or -1 with *err.
 */
int cpu_list_parse(const char *text, cpu_set_t *set, char **err);

/* plan.c: picks the protocol and builds every command line; 0 or -1 with *err. */
int plan_build(struct launch_config *c, bool dry_run, char **err);
void plan_print(const struct launch_config *c, FILE *out);
/* A path as QEMU sees it (inside qemu_root); NULL with *err if it is outside. */
char *qemu_path(const struct launch_config *c, const char *host_path, char **err);

/* run.c: starts, supervises and cleans up; returns the launcher's exit status. */
int run_vm(struct launch_config *c);

#endif
