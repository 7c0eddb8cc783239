// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * mpqemu-launch: starts a VM whose PCI devices live in mpqemu-remote
 * processes, from a JSON description (docs/launcher.md), supervises it and
 * cleans up.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/launch.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: mpqemu-launch [options] VM.json\n"
        "\n"
        "Starts QEMU and the mpqemu-remote processes VM.json describes, with a\n"
        "socket pair (multi-process protocol) or a socket path (vfio-user) per\n"
        "PCI device and shared guest memory; supervises them; cleans up.\n"
        "Each remote is confined (its own namespaces and view of the file system,\n"
        "no capabilities) unless VM.json says \"confine\": false.\n"
        "\n"
        "  --dry-run               print every command line, start nothing\n"
        "  --qemu CMD              the QEMU binary (overrides \"qemu\")\n"
        "  --qemu-root DIR         QEMU runs chrooted in DIR (paths are mapped)\n"
        "  --remote PATH           the mpqemu-remote binary\n"
        "  --machine M, --accel A, --memory SIZE\n"
        "  --kernel F, --initrd F, --append TEXT\n"
        "  --protocol auto|vfio-user|multi-process\n"
        "  --on-remote-exit stop|continue|restart\n"
        "                          when a remote dies: stop the VM (default), go on\n"
        "                          without it, or restart its device process under the\n"
        "                          running guest, within the description's \"restart\" budget\n"
        "  --log-dir DIR           one log file per process (default\n"
        "                          ${TMPDIR:-/tmp}/mpqemu-launch-PID-logs)\n"
        "  --run-dir DIR           sockets and memory files (made, then removed)\n"
        "  --cpus LIST             QEMU and the remotes run on these CPUs (\"0\", \"0-3,6\")\n"
        "  -h, --help\n"
        "\n"
        "Exit status: 0 the VM ran and QEMU exited 0; 1 the launch failed;\n"
        "2 bad usage or description; 3 a remote process died (with restart: it\n"
        "spent its budget); 4 QEMU failed; 5 interrupted by a signal (the VM was\n"
        "stopped).\n");
}

static int set_string(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
    return *field ? 0 : -1;
}

enum { OPT_DRY_RUN = 256, OPT_QEMU, OPT_QEMU_ROOT, OPT_REMOTE, OPT_MACHINE, OPT_ACCEL,
       OPT_MEMORY, OPT_KERNEL, OPT_INITRD, OPT_APPEND, OPT_PROTOCOL, OPT_POLICY, OPT_LOG_DIR,
       OPT_RUN_DIR, OPT_CPUS };

static const struct option longopts[] = {
    { "dry-run", no_argument, NULL, OPT_DRY_RUN },
    { "qemu", required_argument, NULL, OPT_QEMU },
    { "qemu-root", required_argument, NULL, OPT_QEMU_ROOT },
    { "remote", required_argument, NULL, OPT_REMOTE },
    { "machine", required_argument, NULL, OPT_MACHINE },
    { "accel", required_argument, NULL, OPT_ACCEL },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "kernel", required_argument, NULL, OPT_KERNEL },
    { "initrd", required_argument, NULL, OPT_INITRD },
    { "append", required_argument, NULL, OPT_APPEND },
    { "protocol", required_argument, NULL, OPT_PROTOCOL },
    { "on-remote-exit", required_argument, NULL, OPT_POLICY },
    { "log-dir", required_argument, NULL, OPT_LOG_DIR },
    { "run-dir", required_argument, NULL, OPT_RUN_DIR },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "help", no_argument, NULL, 'h' },
    { 0 },
};

/* Applies one command-line override on top of the description. */
static int apply(struct launch_config *c, int opt, const char *v)
{
    int n;

    switch (opt) {
    case OPT_QEMU:
        strv_free(&c->qemu);
        return strv_add(&c->qemu, v);
    case OPT_QEMU_ROOT: return set_string(&c->qemu_root, v);
    case OPT_REMOTE: return set_string(&c->remote_binary, v);
    case OPT_MACHINE: return set_string(&c->machine, v);
    case OPT_ACCEL: return set_string(&c->accel, v);
    case OPT_MEMORY: return set_string(&c->memory, v);
    case OPT_KERNEL: return set_string(&c->kernel, v);
    case OPT_INITRD: return set_string(&c->initrd, v);
    case OPT_APPEND: return set_string(&c->append, v);
    case OPT_LOG_DIR: return set_string(&c->log_dir, v);
    case OPT_RUN_DIR: return set_string(&c->run_dir, v);
    case OPT_CPUS: return set_string(&c->cpus, v);
    case OPT_PROTOCOL:
        if ((n = protocol_from_name(v)) >= 0) {
            c->protocol = (enum protocol)n;
            return 0;
        }
        break;
    case OPT_POLICY:
        if ((n = policy_from_name(v)) >= 0) {
            c->on_remote_exit = (enum remote_policy)n;
            return 0;
        }
        break;
    }
    fprintf(stderr, "mpqemu-launch: invalid value '%s'\n", v);
    return -1;
}

int main(int argc, char **argv)
{
    struct launch_config c = { 0 };
    struct { int opt; const char *value; } overrides[64];
    size_t n_overrides = 0;
    bool dry_run = false;
    char *err = NULL;
    int opt, code;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 0;
        }
        if (opt == OPT_DRY_RUN) {
            dry_run = true;
        } else if (opt != '?' && n_overrides < 64) {
            overrides[n_overrides].opt = opt;
            overrides[n_overrides++].value = optarg;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    if (config_load(&c, argv[optind], &err) < 0) {
        fprintf(stderr, "mpqemu-launch: %s\n", err);
        free(err);
        config_free(&c);
        return 2;
    }
    for (size_t i = 0; i < n_overrides; i++) {
        if (apply(&c, overrides[i].opt, overrides[i].value) < 0) {
            config_free(&c);
            return 2;
        }
    }
    if (plan_build(&c, dry_run, &err) < 0) {
        fprintf(stderr, "mpqemu-launch: %s\n", err);
        free(err);
        config_free(&c);
        return 2;
    }
    if (dry_run) {
        plan_print(&c, stdout);
        config_free(&c);
        return 0;
    }
    code = run_vm(&c);
    config_free(&c);
    return code;
}
