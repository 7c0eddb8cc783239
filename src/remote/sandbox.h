/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The device process's confinement once setup is done (images open,
 * sockets bound, monitors listening), before the first message is served:
 *
 *  - a seccomp-bpf allowlist (libseccomp) of the system calls the serving
 *    loop makes; any other call kills the process with SIGSYS, after a
 *    line on stderr that names it;
 *  - Landlock rules: the file system shrinks to the images (read-only ones
 *    read-only), the directories the user allows for media changes, and
 *    removing the process's own sockets at exit; no TCP bind or connect,
 *    no signals or abstract sockets outside the process.
 *
 * `-sandbox on|off[,allow-dir=PATH][,allow-dir-rw=PATH]`, on by default;
 * the option may be repeated to allow several directories.
 */
#ifndef MPQEMU_REMOTE_SANDBOX_H
#define MPQEMU_REMOTE_SANDBOX_H

#include <stdbool.h>
#include <stdio.h>

struct json_object;
struct sandbox;

struct sandbox *sandbox_new(void);
void sandbox_free(struct sandbox *sb);
/* One -sandbox option; "help" prints what is enforced and returns 1. */
int sandbox_parse(struct sandbox *sb, const char *text, char **err);
bool sandbox_enabled(const struct sandbox *sb);

/* What the confined process still reaches (collected during setup). */
int sandbox_allow_file(struct sandbox *sb, const char *path, bool writable, char **err);
/* A socket the process removes at exit: its directory keeps that right. */
int sandbox_allow_removal(struct sandbox *sb, const char *path, char **err);

/*
 * Confines the process for good (nothing when disabled).  Landlock missing
 * from the kernel is said once and seccomp goes on alone; a failure to
 * install the filter is an error.
 */
int sandbox_enter(struct sandbox *sb, char **err);
/* What is enforced, for query-sandbox and -sandbox help. */
struct json_object *sandbox_describe(const struct sandbox *sb);
void sandbox_print_help(FILE *out);

#endif
