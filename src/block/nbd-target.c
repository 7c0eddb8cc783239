// SPDX-License-Identifier: GPL-2.0-or-later
/* NBD URIs and QEMU's nbd options, parsed into a struct nbd_target. */
#include "block/nbd-target.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/opts.h"

struct scheme {
    const char *name;
    enum nbd_transport transport;
    bool tls;
};

static const struct scheme schemes[] = {
    { "nbd", NBD_TRANSPORT_TCP, false }, { "nbds", NBD_TRANSPORT_TCP, true },
    { "nbd+unix", NBD_TRANSPORT_UNIX, false }, { "nbds+unix", NBD_TRANSPORT_UNIX, true },
};

/* The scheme s starts with, followed by "://"; NULL if none. */
static const struct scheme *scheme_of(const char *s)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i].name);

        if (!strncmp(s, schemes[i].name, n) && !strncmp(s + n, "://", 3)) {
            return &schemes[i];
        }
    }
    return NULL;
}

bool nbd_is_uri(const char *s)
{
    return s && scheme_of(s);
}

static int hex_value(char c)
{
    return isdigit((unsigned char)c) ? c - '0'
           : isxdigit((unsigned char)c) ? tolower((unsigned char)c) - 'a' + 10 : -1;
}

/* A copy of s[0, len) with %XX decoded; NULL for a bad escape, a NUL byte or no memory. */
static char *decode(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;

    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        int hi, lo;

        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
        lo = hi < 0 ? -1 : hex_value(s[i + 2]);
        if (lo < 0 || (hi | lo) == 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

static int set_decoded(char **field, const char *s, size_t len, const char *what, char **err)
{
    free(*field);
    if (!(*field = decode(s, len))) {
        error_setf(err, "bad %%-escape in the %s", what);
        return -1;
    }
    return 0;
}

/* host, [v6], host:port, [v6]:port */
static int parse_host_port(const char *s, size_t len, struct nbd_target *t, char **err)
{
    const char *host = s, *colon;
    size_t host_len;
    unsigned long port = NBD_DEFAULT_PORT;

    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);

        if (!close) {
            error_setf(err, "an IPv6 address lacks its ']'");
            return -1;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1 < s + len ? close + 1 : NULL;
        if (colon && *colon != ':') {
            error_setf(err, "text after the IPv6 address");
            return -1;
        }
    } else {
        colon = memchr(s, ':', len);
        host_len = colon ? (size_t)(colon - s) : len;
    }
    if (colon) {
        char digits[8];
        size_t n = (size_t)(s + len - colon - 1);
        char *end;

        if (n == 0 || n >= sizeof(digits)) {
            error_setf(err, "the port must be a number from 1 to 65535");
            return -1;
        }
        memcpy(digits, colon + 1, n);
        digits[n] = '\0';
        port = strtoul(digits, &end, 10);
        if (*end || !isdigit((unsigned char)digits[0]) || port == 0 || port > 65535) {
            error_setf(err, "the port must be a number from 1 to 65535");
            return -1;
        }
    }
    if (host_len == 0) {
        error_setf(err, "an nbd:// URI names a host (nbd+unix:// reaches a socket)");
        return -1;
    }
    t->port = (uint16_t)port;
    return set_decoded(&t->host, host, host_len, "host", err);
}

/* The authority: [user@]host[:port] for TCP; empty for a unix socket. */
static int parse_authority(const char *s, size_t len, struct nbd_target *t, char **err)
{
    const char *at = memchr(s, '@', len);

    if (at) {
        if (!t->tls) {
            error_setf(err, "a user name is for TLS (nbds://USER@HOST)");
            return -1;
        }
        if (set_decoded(&t->tls_username, s, (size_t)(at - s), "user name", err) < 0) {
            return -1;
        }
        len -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    if (t->transport == NBD_TRANSPORT_UNIX) {
        if (len) {
            error_setf(err, "an nbd+unix:// URI names no host (nbd+unix:///EXPORT?socket=PATH)");
            return -1;
        }
        return 0;
    }
    return parse_host_port(s, len, t, err);
}

static int parse_query_item(const char *s, size_t len, struct nbd_target *t, char **err)
{
    static const char *const keys[] = { "socket", "tls-certificates", "tls-psk-file" };
    char **fields[] = { &t->socket, &t->tls_certificates, &t->tls_psk_file };
    const char *eq = memchr(s, '=', len);
    size_t key_len = eq ? (size_t)(eq - s) : len;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (key_len == strlen(keys[i]) && !strncmp(s, keys[i], key_len) && eq) {
            if (i > 0 && !t->tls) {
                error_setf(err, "%s is for TLS (nbds://, nbds+unix://)", keys[i]);
                return -1;
            }
            return set_decoded(fields[i], eq + 1, (size_t)(s + len - eq - 1), keys[i], err);
        }
    }
    error_setf(err, "unknown query parameter '%.*s' (socket, tls-certificates, tls-psk-file)",
               (int)key_len, s);
    return -1;
}

static int parse_query(const char *s, struct nbd_target *t, char **err)
{
    while (*s) {
        size_t len = strcspn(s, "&;");

        if (len && parse_query_item(s, len, t, err) < 0) {
            return -1;
        }
        s += len + (s[len] != '\0');
    }
    return 0;
}

static int check_socket(const struct nbd_target *t, char **err)
{
    if (t->transport == NBD_TRANSPORT_UNIX && (!t->socket || !*t->socket)) {
        error_setf(err, "an nbd+unix:// URI needs ?socket=PATH");
        return -1;
    }
    if (t->transport == NBD_TRANSPORT_TCP && t->socket) {
        error_setf(err, "socket= is for nbd+unix:// URIs");
        return -1;
    }
    return 0;
}

int nbd_target_parse_uri(const char *uri, struct nbd_target *t, char **err)
{
    const struct scheme *sch = scheme_of(uri);
    const char *auth, *path, *query;
    int r;

    *t = (struct nbd_target){ 0 };
    if (!sch) {
        error_setf(err, "'%s' is not an NBD URI (nbd://, nbds://, nbd+unix://, nbds+unix://)",
                   uri);
        return -1;
    }
    t->transport = sch->transport;
    t->tls = sch->tls;
    auth = uri + strlen(sch->name) + 3;
    path = auth + strcspn(auth, "/?#");
    query = path + strcspn(path, "?#");
    if (*query == '#' || strchr(query, '#')) {
        error_setf(err, "an NBD URI has no fragment ('#')");
        r = -1;
    } else {
        /* "/EXPORT": the export is what follows the first slash. */
        const char *export = *path == '/' ? path + 1 : path;

        r = parse_authority(auth, (size_t)(path - auth), t, err);
        if (r == 0) {
            r = set_decoded(&t->export_name, export, (size_t)(query - export), "export name",
                            err);
        }
        if (r == 0 && *query == '?') {
            r = parse_query(query + 1, t, err);
        }
        if (r == 0) {
            r = check_socket(t, err);
        }
    }
    if (r < 0) {
        error_prefix(err, "%s", uri);
        nbd_target_clear(t);
    }
    return r;
}

/* server.KEY, or the older spelling KEY (QEMU's host=, port=, path=). */
static const char *server_opt(struct opts *o, const char *prefix, const char *key)
{
    char name[64];
    const char *v;

    snprintf(name, sizeof(name), "%sserver.%s", prefix, key);
    v = opts_get(o, name);
    snprintf(name, sizeof(name), "%s%s", prefix, key);
    return v ? v : opts_get(o, name);
}

static int dup_field(char **field, const char *v, char **err)
{
    if (v && !(*field = strdup(v))) {
        error_setf(err, "out of memory");
        return -1;
    }
    return 0;
}

int nbd_target_from_opts(struct opts *o, const char *prefix, struct nbd_target *t, char **err)
{
    const char *type = server_opt(o, prefix, "type"), *host = server_opt(o, prefix, "host");
    const char *port = server_opt(o, prefix, "port"), *path = server_opt(o, prefix, "path");
    char name[64];
    uint64_t port_nr = NBD_DEFAULT_PORT;

    *t = (struct nbd_target){ 0 };
    snprintf(name, sizeof(name), "%sexport", prefix);
    if (!type) {
        type = path ? "unix" : "inet";
    }
    if (!strcmp(type, "unix")) {
        t->transport = NBD_TRANSPORT_UNIX;
        if (!path || !*path || host || port) {
            error_setf(err, "an NBD server of type unix takes a path and no host or port");
            return -1;
        }
    } else if (!strcmp(type, "inet")) {
        if (!host || !*host || path || (port && (parse_uint(port, &port_nr) < 0 || !port_nr ||
                                       port_nr > 65535))) {
            error_setf(err, "an NBD server of type inet takes a host and a port (1 to 65535)");
            return -1;
        }
    } else {
        error_setf(err, "NBD server type '%s' is not supported (inet, unix)", type);
        return -1;
    }
    /* As a URI leaves it: a port only for TCP (one target, one form). */
    t->port = t->transport == NBD_TRANSPORT_TCP ? (uint16_t)port_nr : 0;
    if (dup_field(&t->host, host, err) < 0 || dup_field(&t->socket, path, err) < 0 ||
        dup_field(&t->export_name, opts_get(o, name) ? opts_get(o, name) : "", err) < 0) {
        nbd_target_clear(t);
        return -1;
    }
    return 0;
}

int nbd_target_of_drive(struct opts *o, struct nbd_target *t, char **err)
{
    const char *file = opts_get(o, "file"), *driver = opts_get(o, "file.driver");

    if (driver && !strcmp(driver, "nbd")) {
        return nbd_target_from_opts(o, "file.", t, err) < 0 ? -1 : 1;
    }
    if (file && nbd_is_uri(file)) {
        return nbd_target_parse_uri(file, t, err) < 0 ? -1 : 1;
    }
    return 0;
}

/* Appends s to the URI, %-escaping what a URI part cannot hold as it is. */
static void append_escaped(FILE *f, const char *s, const char *also_safe)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (isalnum(c) || strchr("-._~", c) || strchr(also_safe, c)) {
            fputc(c, f);
        } else {
            fprintf(f, "%%%02X", c);
        }
    }
}

static void append_query(FILE *f, bool *first, const char *key, const char *value)
{
    if (value) {
        fprintf(f, "%c%s=", *first ? '?' : '&', key);
        append_escaped(f, value, "/");
        *first = false;
    }
}

char *nbd_target_uri(const struct nbd_target *t)
{
    bool unix_sock = t->transport == NBD_TRANSPORT_UNIX, first = true;
    char *uri = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&uri, &size);

    if (!f) {
        return NULL;
    }
    fprintf(f, "%s%s://", t->tls ? "nbds" : "nbd", unix_sock ? "+unix" : "");
    if (t->tls_username) {
        append_escaped(f, t->tls_username, "");
        fputc('@', f);
    }
    if (!unix_sock) {
        /* Escaped as every other part: a decoded host may hold '/', '?', '@' or ']'. */
        bool ipv6 = strchr(t->host, ':');

        fputs(ipv6 ? "[" : "", f);
        append_escaped(f, t->host, ipv6 ? ":" : "");
        fputs(ipv6 ? "]" : "", f);
        if (t->port != NBD_DEFAULT_PORT) {
            fprintf(f, ":%u", t->port);
        }
    }
    fputc('/', f);
    append_escaped(f, t->export_name, "/");
    append_query(f, &first, "socket", t->socket);
    append_query(f, &first, "tls-certificates", t->tls_certificates);
    append_query(f, &first, "tls-psk-file", t->tls_psk_file);
    if (fclose(f) != 0) {
        free(uri);
        return NULL;
    }
    return uri;
}

void nbd_target_clear(struct nbd_target *t)
{
    free(t->host);
    free(t->socket);
    free(t->export_name);
    free(t->tls_certificates);
    free(t->tls_psk_file);
    free(t->tls_username);
    *t = (struct nbd_target){ 0 };
}
