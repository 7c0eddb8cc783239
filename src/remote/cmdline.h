/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The command line of mpqemu-remote, in QEMU's style. */
#ifndef MPQEMU_REMOTE_CMDLINE_H
#define MPQEMU_REMOTE_CMDLINE_H

#include <stddef.h>

struct opts;

struct opts_list {
    struct opts **v;
    size_t n;
};

struct remote_cmdline {
    int socket_fd;              /* the positional fd, or -1 */
    struct opts_list devices;   /* -device */
    struct opts_list drives;    /* -drive */
    struct opts_list objects;   /* -object */
    const char **qmp;           /* -qmp chardev specs */
    size_t n_qmp;
    const char **hmp;           /* -monitor chardev specs */
    size_t n_hmp;
    const char *name;           /* -name */
    const char **sandbox;       /* -sandbox options, in order */
    size_t n_sandbox;
    const char *restart;        /* -restart on[,max=N,window=SECONDS], the last one */
    const char *checkpoint;     /* -x-checkpoint fd=N (internal: the keeper's memfd) */
};

enum cmdline_result { CMDLINE_RUN, CMDLINE_EXIT_OK, CMDLINE_EXIT_ERROR };

/* Parses argv; help and version are printed here. */
enum cmdline_result remote_cmdline_parse(int argc, char **argv, struct remote_cmdline *cl);
void remote_cmdline_free(struct remote_cmdline *cl);

#endif
