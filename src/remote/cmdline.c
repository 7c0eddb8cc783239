// SPDX-License-Identifier: GPL-2.0-or-later
#include "remote/cmdline.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/device.h"
#include "util/log.h"
#include "util/opts.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: mpqemu-remote [FD] [options]\n"
        "\n"
        "Emulates PCI devices for a VMM in a process of their own.  FD is an\n"
        "inherited socket to a QEMU x-pci-proxy-dev (multi-process protocol).\n"
        "\n"
        "  -device DRIVER,id=ID[,prop=value...]   add a device (-device help)\n"
        "  -drive id=ID,file=PATH|NBD-URI[,format=raw|qcow2][,readonly=on|off]\n"
        "         [,cache=writeback|writethrough|none|directsync][,file.reconnect-delay=S]\n"
        "                              NBD-URI: nbd://HOST[:PORT]/EXPORT,\n"
        "                              nbd+unix:///EXPORT?socket=PATH, nbds://... (TLS)\n"
        "  -drive id=ID,file.driver=nbd,file.server.type=inet|unix,file.server.host=H,\n"
        "         file.server.port=P|file.server.path=PATH[,file.export=NAME],...\n"
        "  -object x-remote-object,id=ID,devid=DEVID,fd=N\n"
        "                              serve device DEVID on socket N (one\n"
        "                              socket per device, several devices per process)\n"
        "  -object x-vfio-user-server,id=ID,device=DEVID,socket.type=unix,socket.path=PATH\n"
        "                              serve device DEVID over vfio-user on PATH\n"
        "  -object main-loop,id=ID,poll-max-ns=N\n"
        "                              busy-poll up to N ns before sleeping (default\n"
        "                              0: off): for a remote with a core of its own\n"
        "  -qmp CHARDEV                a QMP monitor: unix:PATH,server,nowait;\n"
        "                              tcp:HOST:PORT,server,nowait; stdio\n"
        "  -monitor CHARDEV            an HMP (text) monitor, same forms\n"
        "  -name NAME                  the name query-name reports\n"
        "  -sandbox on|off[,allow-dir=PATH][,allow-dir-rw=PATH]\n"
        "                              confine the process once set up (default: on);\n"
        "                              media changes may open files under allow-dir\n"
        "                              (-sandbox help: what is enforced)\n"
        "  -restart on|off[,max=N][,window=SECONDS]\n"
        "                              keep the VMM's connections in a keeper process\n"
        "                              and restart the device process when it dies, at\n"
        "                              most N times in SECONDS (default: off; 5 in 60)\n"
        "  -h, -help, --help           this text\n"
        "  -version, --version         print the version\n");
}

static int list_add(struct opts_list *l, struct opts *o)
{
    struct opts **grown = realloc(l->v, (l->n + 1) * sizeof(*l->v));

    if (!grown) {
        return -1;
    }
    l->v = grown;
    l->v[l->n++] = o;
    return 0;
}

/* "-device help" and "-device DRIVER,help" print and end the program. */
static enum cmdline_result device_help(const char *arg)
{
    char name[128];
    const char *comma = strchr(arg, ',');
    const struct device_driver *drv;

    if (!strcmp(arg, "help") || !strcmp(arg, "?")) {
        device_print_drivers(stdout);
        return CMDLINE_EXIT_OK;
    }
    if (!comma || (strcmp(comma, ",help") && strcmp(comma, ",?")) ||
        (size_t)(comma - arg) >= sizeof(name)) {
        return CMDLINE_RUN;
    }
    memcpy(name, arg, (size_t)(comma - arg));
    name[comma - arg] = '\0';
    drv = device_driver_find(name);
    if (!drv) {
        log_error("'%s' is not a valid device model name", name);
        return CMDLINE_EXIT_ERROR;
    }
    device_print_props(drv, stdout);
    return CMDLINE_EXIT_OK;
}

static const char *option_name(const char *arg)
{
    /* QEMU takes both -option and --option. */
    if (arg[0] == '-' && arg[1] == '-') {
        return arg + 2;
    }
    return arg[0] == '-' ? arg + 1 : NULL;
}

static int add_option(struct opts_list *l, const char *text, const char *implied,
                      const char *opt)
{
    char *err = NULL;
    struct opts *o = opts_parse(text, implied, &err);

    if (!o) {
        log_error("-%s %s: %s", opt, text, err ? err : "parse error");
        free(err);
        return -1;
    }
    if (list_add(l, o) < 0) {
        opts_free(o);
        log_error("out of memory");
        return -1;
    }
    return 0;
}

enum cmdline_result remote_cmdline_parse(int argc, char **argv, struct remote_cmdline *cl)
{
    int i = 1;

    memset(cl, 0, sizeof(*cl));
    cl->socket_fd = -1;
    if (i < argc && argv[i][0] != '-') {
        uint64_t fd;

        if (parse_uint(argv[i], &fd) < 0 || fd > 1000000) {
            log_error("'%s' is not a file descriptor number", argv[i]);
            return CMDLINE_EXIT_ERROR;
        }
        cl->socket_fd = (int)fd;
        i++;
    }
    for (; i < argc; i++) {
        const char *name = option_name(argv[i]);
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;

        if (name && (!strcmp(name, "h") || !strcmp(name, "help"))) {
            usage(stdout);
            return CMDLINE_EXIT_OK;
        }
        if (name && !strcmp(name, "version")) {
            printf("mpqemu-remote version " MPQEMU_VERSION "\n");
            return CMDLINE_EXIT_OK;
        }
        if (!name || (strcmp(name, "device") && strcmp(name, "drive") &&
                      strcmp(name, "object") && strcmp(name, "qmp") &&
                      strcmp(name, "monitor") && strcmp(name, "name") &&
                      strcmp(name, "sandbox") && strcmp(name, "restart") &&
                      strcmp(name, "x-checkpoint"))) {
            log_error("%s: invalid option (see mpqemu-remote -h)", argv[i]);
            return CMDLINE_EXIT_ERROR;
        }
        if (!value) {
            log_error("-%s requires an argument", name);
            return CMDLINE_EXIT_ERROR;
        }
        i++;
        if (!strcmp(name, "qmp") || !strcmp(name, "monitor") || !strcmp(name, "sandbox")) {
            const char ***list = !strcmp(name, "qmp") ? &cl->qmp
                                 : !strcmp(name, "monitor") ? &cl->hmp : &cl->sandbox;
            size_t *n = !strcmp(name, "qmp") ? &cl->n_qmp
                        : !strcmp(name, "monitor") ? &cl->n_hmp : &cl->n_sandbox;
            const char **grown = realloc(*list, (*n + 1) * sizeof(**list));

            if (!grown) {
                log_error("out of memory");
                return CMDLINE_EXIT_ERROR;
            }
            grown[(*n)++] = value;
            *list = grown;
        } else if (!strcmp(name, "restart")) {
            cl->restart = value;
        } else if (!strcmp(name, "x-checkpoint")) {
            cl->checkpoint = value;
        } else if (!strcmp(name, "name")) {
            /* QEMU's "-name guest=NAME,..." or "-name NAME". */
            cl->name = strncmp(value, "guest=", 6) ? value : value + 6;
        } else if (!strcmp(name, "device")) {
            enum cmdline_result r = device_help(value);

            if (r != CMDLINE_RUN) {
                return r;
            }
            if (add_option(&cl->devices, value, "driver", name) < 0) {
                return CMDLINE_EXIT_ERROR;
            }
        } else if (!strcmp(name, "drive")) {
            if (add_option(&cl->drives, value, NULL, name) < 0) {
                return CMDLINE_EXIT_ERROR;
            }
        } else if (add_option(&cl->objects, value, "qom-type", name) < 0) {
            return CMDLINE_EXIT_ERROR;
        }
    }
    return CMDLINE_RUN;
}

static void list_free(struct opts_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        opts_free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void remote_cmdline_free(struct remote_cmdline *cl)
{
    list_free(&cl->devices);
    list_free(&cl->drives);
    list_free(&cl->objects);
    free(cl->qmp);
    free(cl->hmp);
    free(cl->sandbox);
    cl->qmp = cl->hmp = cl->sandbox = NULL;
}
