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
#include <stddef.h>
#include <stdint.h>
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
/*
 * A network drive connects again (after its server went away): stream
 * sockets of family (AF_UNIX, AF_INET, AF_INET6), and for TCP connect to
 * tcp_port (0: none).  Without any, no socket can be made.
 */
int sandbox_allow_connect(struct sandbox *sb, int family, uint16_t tcp_port, char **err);
/* A socket the process removes at exit: its directory keeps that right. */
int sandbox_allow_removal(struct sandbox *sb, const char *path, char **err);

/*
 * Confines the process for good (nothing when disabled).  Landlock missing
 * from the kernel is said once and seccomp goes on alone; a failure to
 * install the filter is an error.
 */
int sandbox_enter(struct sandbox *sb, char **err);
/*
 * The keeper's confinement (-restart on), for good, before it starts a
 * device process (docs/sandbox.md): no_new_privs; Landlock lets it execute
 * only the files mapped executable in it (this binary, its loader and
 * libraries), denies TCP but binding 'tcp_ports' (the device process's tcp:
 * monitors), and scopes signals and abstract sockets; seccomp kills a
 * process that makes one of the calls no part of mpqemu makes (ptrace,
 * mount, namespaces, modules, BPF, keys...).  Every device process inherits
 * all of it.  Nothing when disabled (-sandbox off).
 */
int sandbox_enter_keeper(struct sandbox *sb, const uint16_t *tcp_ports, size_t n_ports,
                         char **err);
/* What is enforced, for query-sandbox and -sandbox help. */
struct json_object *sandbox_describe(const struct sandbox *sb);
void sandbox_print_help(FILE *out);

#endif
