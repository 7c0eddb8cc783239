/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Confining the remotes (docs/launcher.md): the description's "confine",
 * the namespaces a remote starts in, its ids and capabilities (confine.c),
 * and the view of the file system it gets: a fresh root into which only
 * what it needs is bound (view.c).  The launcher plans both before it
 * starts anything; the child carries them out between fork and exec.
 */
#ifndef MPQEMU_LAUNCH_CONFINE_H
#define MPQEMU_LAUNCH_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

struct json_object;

struct confine {
    bool enabled;
    bool new_mount, new_net, new_pid;
    bool no_new_privs;
    bool minimal_view;          /* a fresh root (needs new_mount) */
    char *user;                 /* run as this user (the launcher must be root), or NULL */
    /* Set by confine_plan(). */
    bool new_user;              /* not root: a user namespace gives the rights to set up */
    uid_t uid;                  /* the remote's ids; without a user, the launcher's */
    gid_t gid;
};

/* A file or directory of a remote's view: the host's, bound at the same path. */
enum view_kind {
    VIEW_BIND,
    VIEW_SYMLINK,               /* /lib -> usr/lib, as on the host */
    VIEW_PROC,                  /* a proc of the remote's own PID namespace */
};

struct view_entry {
    enum view_kind kind;
    char *path;                 /* absolute, in the view as on the host */
    char *target;               /* VIEW_SYMLINK */
    bool dir, writable, exec, dev;
};

struct view {
    struct view_entry *entries;
    size_t n;
    char *cwd;                  /* the launcher's: relative paths mean the same inside */
};

/* confine.c.  "confine": absent (the default: confined), true, false or the detailed object. */
void confine_set_default(struct confine *c);
int confine_parse(struct confine *c, struct json_object *o, char **err);
/* Resolves the user and whether a user namespace is needed; 0 or -1 with *err. */
int confine_plan(struct confine *c, char **err);
/* clone() flags for a confined child. */
unsigned long confine_clone_flags(const struct confine *c);
/* In the child, before exec: 0, or -1 with errno and *what failed. */
int confine_enter(const struct confine *c, const struct view *v, const char **what);
void confine_free(struct confine *c);

/*
 * view.c.  Checks a confined remote's options (argv, NULL-terminated) and,
 * with a minimal view, plans its view: its binary and the system's
 * libraries read-only, the images of its -drive options (read-only ones
 * read-only) and their backing files (read-only), for drives on NBD
 * servers the directory of the unix socket and the TLS keys (read-only),
 * the directories of its -sandbox allow-dir (read-only) and allow-dir-rw
 * options, the run directory, /dev/null and its own /proc.  An NBD server
 * over TCP needs c without a network namespace of its own.  With
 * check_files, every file must exist.
 */
int view_plan(struct view *v, const struct confine *c, char *const *argv, const char *run_dir,
              bool check_files, char **err);
void view_print(const struct view *v, FILE *out);
/* In the child, in its own mount namespace: builds the view and enters it. */
int view_enter(const struct view *v, const char **what);
void view_free(struct view *v);

#endif
