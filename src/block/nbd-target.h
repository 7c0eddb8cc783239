/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Where an NBD export is and how to reach it, from a URI as libnbd and
 * QEMU write them:
 *
 *   nbd://HOST[:PORT]/EXPORT            nbds://[USER@]HOST[:PORT]/EXPORT
 *   nbd+unix:///EXPORT?socket=PATH      nbds+unix:///EXPORT?socket=PATH
 *   query: socket=, tls-certificates=DIR, tls-psk-file=FILE
 *
 * or from QEMU's options of its nbd driver (server.type=inet|unix,
 * server.host, server.port, server.path, export).  No I/O and no name
 * resolution here: the parsers only read strings (fuzz targets).
 */
#ifndef MPQEMU_BLOCK_NBD_TARGET_H
#define MPQEMU_BLOCK_NBD_TARGET_H

#include <stdbool.h>
#include <stdint.h>

struct opts;

enum nbd_transport { NBD_TRANSPORT_TCP, NBD_TRANSPORT_UNIX };

enum { NBD_DEFAULT_PORT = 10809 };

struct nbd_target {
    enum nbd_transport transport;
    bool tls;
    char *host;                 /* TCP: a name or an address (IPv6 without brackets) */
    uint16_t port;              /* TCP */
    char *socket;               /* unix: the socket's path */
    char *export_name;          /* "" names the server's default export */
    char *tls_certificates;     /* a directory of PEM files, or NULL: libnbd's default */
    char *tls_psk_file;         /* PSK keys (USER:HEXKEY lines), or NULL */
    char *tls_username;         /* or NULL */
};

/* Whether s is written as an NBD URI (a scheme this parser knows). */
bool nbd_is_uri(const char *s);
/* Fills t from uri; 0, or -1 with *err (t then holds nothing). */
int nbd_target_parse_uri(const char *uri, struct nbd_target *t, char **err);
/* Fills t from QEMU's options under prefix ("file."); 0, or -1 with *err. */
int nbd_target_from_opts(struct opts *o, const char *prefix, struct nbd_target *t, char **err);
/*
 * The server of a -drive's options (its opts, parsed), as the drive layer
 * finds it: file.driver=nbd with QEMU's options under "file.", or file= an
 * NBD URI.  1 with t filled, 0 when the drive is not on NBD, -1 with *err.
 */
int nbd_target_of_drive(struct opts *o, struct nbd_target *t, char **err);
/* The target as one URI, the way messages and query-block name it; NULL without memory. */
char *nbd_target_uri(const struct nbd_target *t);
void nbd_target_clear(struct nbd_target *t);

#endif
