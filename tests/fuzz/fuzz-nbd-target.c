// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Where an NBD drive's server is, from a user's or a monitor client's
 * string (src/block/nbd-target.c): the input is a -drive option string
 * (QEMU's file.driver=nbd,file.server.* options, or file= an NBD URI),
 * and, when it is written as one, an NBD URI by itself.
 *
 * Besides the sanitizers, one property: a target that parsed prints as a
 * URI (nbd_target_uri(), what messages and query-block show) that parses
 * back into the same target.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/nbd-target.h"
#include "fuzz-common.h"
#include "util/opts.h"

enum { MAX_TEXT = 4096 };

static bool same_string(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static bool same_target(const struct nbd_target *a, const struct nbd_target *b)
{
    return a->transport == b->transport && a->tls == b->tls &&
           same_string(a->host, b->host) && a->port == b->port &&
           same_string(a->socket, b->socket) && same_string(a->export_name, b->export_name) &&
           same_string(a->tls_certificates, b->tls_certificates) &&
           same_string(a->tls_psk_file, b->tls_psk_file) &&
           same_string(a->tls_username, b->tls_username);
}

/* The target printed as a URI parses back into itself; aborts otherwise. */
static void check_round_trip(const struct nbd_target *t)
{
    struct nbd_target again;
    char *uri = nbd_target_uri(t), *err = NULL;

    if (!uri) {
        return; /* no memory */
    }
    if (nbd_target_parse_uri(uri, &again, &err) < 0) {
        fprintf(stderr, "fuzz-nbd-target: \"%s\" does not parse back: %s\n", uri, err);
        abort();
    }
    if (!same_target(t, &again)) {
        fprintf(stderr, "fuzz-nbd-target: \"%s\" parses back into another target\n", uri);
        abort();
    }
    nbd_target_clear(&again);
    free(uri);
}

static void try_uri(const char *text)
{
    struct nbd_target t;
    char *err = NULL;

    if (!nbd_is_uri(text)) {
        return;
    }
    if (nbd_target_parse_uri(text, &t, &err) < 0) {
        free(err);
        return;
    }
    check_round_trip(&t);
    nbd_target_clear(&t);
}

static void try_drive(const char *text)
{
    struct opts *o;
    struct nbd_target t;
    char *err = NULL;

    if (!(o = opts_parse(text, NULL, &err))) {
        free(err);
        return;
    }
    if (nbd_target_of_drive(o, &t, &err) == 1) {
        check_round_trip(&t);
        nbd_target_clear(&t);
    }
    free(err);
    opts_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;

    if (size > MAX_TEXT || !(text = malloc(size + 1))) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0'; /* a NUL inside ends the string, as it would on a command line */
    try_uri(text);
    try_drive(text);
    free(text);
    return 0;
}
