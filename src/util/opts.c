// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/opts.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "util/error.h"

struct opt_entry {
    char *key;
    char *val;
    bool used;
};

struct opts {
    struct opt_entry *v;
    size_t n;
};

static struct opt_entry *opts_find(const struct opts *o, const char *key)
{
    for (size_t i = 0; i < o->n; i++) {
        if (!strcmp(o->v[i].key, key)) {
            return &o->v[i];
        }
    }
    return NULL;
}

/* Takes ownership of key and val. */
static int opts_add(struct opts *o, char *key, char *val, char **err)
{
    struct opt_entry *grown;

    if (!*key) {
        error_setf(err, "empty parameter name");
        goto fail;
    }
    if (opts_find(o, key)) {
        error_setf(err, "parameter '%s' given twice", key);
        goto fail;
    }
    grown = realloc(o->v, (o->n + 1) * sizeof(*o->v));
    if (!grown) {
        error_setf(err, "out of memory");
        goto fail;
    }
    o->v = grown;
    o->v[o->n++] = (struct opt_entry){ .key = key, .val = val };
    return 0;
fail:
    free(key);
    free(val);
    return -1;
}

/*
 * Copy one element of a comma-separated list into a new string, turning
 * ",," into ",".  Stops at a single comma, or at 'stop' (for the '=' that
 * ends a key; keys cannot contain commas).
 */
static char *take_element(const char **pos, char stop)
{
    const char *p = *pos;
    size_t len = strlen(p);
    char *out = malloc(len + 1), *w = out;

    if (!out) {
        return NULL;
    }
    while (*p) {
        if (*p == ',') {
            if (p[1] == ',' && stop != '=') {
                *w++ = ',';
                p += 2;
                continue;
            }
            break;
        }
        if (*p == stop) {
            break;
        }
        *w++ = *p++;
    }
    *w = '\0';
    *pos = p;
    return out;
}

static int parse_keyval(struct opts *o, const char *text, const char *implied,
                        char **err)
{
    const char *p = text;
    bool first = true;

    while (*p) {
        char *key = take_element(&p, '=');
        char *val;

        if (!key) {
            error_setf(err, "out of memory");
            return -1;
        }
        if (*p == '=') {
            p++;
            val = take_element(&p, '\0');
        } else if (first && implied) {
            /* "lsi53c895a,..." means "driver=lsi53c895a,...". */
            val = key;
            key = strdup(implied);
        } else {
            val = strdup("on");
        }
        if (!key || !val) {
            free(key);
            free(val);
            error_setf(err, "out of memory");
            return -1;
        }
        if (opts_add(o, key, val, err) < 0) {
            return -1;
        }
        if (*p == ',') {
            p++;
            if (!*p) {
                error_setf(err, "trailing comma");
                return -1;
            }
        }
        first = false;
    }
    return 0;
}

static int flatten_json(struct opts *o, const char *prefix, json_object *obj,
                        char **err)
{
    json_object_object_foreach(obj, name, value) {
        char *key = NULL, *val = NULL;

        if (asprintf(&key, "%s%s%s", prefix, *prefix ? "." : "", name) < 0) {
            error_setf(err, "out of memory");
            return -1;
        }
        switch (json_object_get_type(value)) {
        case json_type_object: {
            int r = flatten_json(o, key, value, err);
            free(key);
            if (r < 0) {
                return -1;
            }
            continue;
        }
        case json_type_string:
            val = strdup(json_object_get_string(value));
            break;
        case json_type_boolean:
            val = strdup(json_object_get_boolean(value) ? "on" : "off");
            break;
        case json_type_int:
            if (json_object_get_int64(value) < 0) {
                error_setf(err, "parameter '%s' must not be negative", key);
                free(key);
                return -1;
            }
            if (asprintf(&val, "%" PRId64, json_object_get_int64(value)) < 0) {
                val = NULL;
            }
            break;
        default:
            error_setf(err, "parameter '%s' has a JSON type that is not "
                       "supported here", key);
            free(key);
            return -1;
        }
        if (!val) {
            free(key);
            error_setf(err, "out of memory");
            return -1;
        }
        if (opts_add(o, key, val, err) < 0) {
            return -1;
        }
    }
    return 0;
}

static int parse_json(struct opts *o, const char *text, char **err)
{
    struct json_tokener *tok = json_tokener_new();
    size_t len = strlen(text);
    json_object *obj;
    int r = -1;

    if (!tok) {
        error_setf(err, "out of memory");
        return -1;
    }
    obj = json_tokener_parse_ex(tok, text, (int)len);
    if (!obj) {
        enum json_tokener_error jerr = json_tokener_get_error(tok);

        error_setf(err, "invalid JSON: %s", jerr == json_tokener_continue
                   ? "unexpected end of data" : json_tokener_error_desc(jerr));
    } else if ((size_t)json_tokener_get_parse_end(tok) != len) {
        error_setf(err, "invalid JSON: text after the object");
    } else {
        /* Text that starts with '{' and parses whole is an object. */
        r = flatten_json(o, "", obj, err);
    }
    json_object_put(obj);
    json_tokener_free(tok);
    return r;
}

struct opts *opts_parse(const char *text, const char *implied_key, char **err)
{
    struct opts *o = calloc(1, sizeof(*o));
    const char *p = text;
    int r;

    if (!o) {
        error_setf(err, "out of memory");
        return NULL;
    }
    while (isspace((unsigned char)*p)) {
        p++;
    }
    r = *p == '{' ? parse_json(o, p, err) : parse_keyval(o, text, implied_key, err);
    if (r < 0) {
        opts_free(o);
        return NULL;
    }
    return o;
}

void opts_free(struct opts *o)
{
    if (!o) {
        return;
    }
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].val);
    }
    free(o->v);
    free(o);
}

const char *opts_get(struct opts *o, const char *key)
{
    struct opt_entry *e = opts_find(o, key);

    if (!e) {
        return NULL;
    }
    e->used = true;
    return e->val;
}

bool opts_has(const struct opts *o, const char *key)
{
    return opts_find(o, key) != NULL;
}

size_t opts_count(const struct opts *o)
{
    return o->n;
}

int opts_check_all_used(const struct opts *o, const char *what, char **err)
{
    for (size_t i = 0; i < o->n; i++) {
        if (!o->v[i].used) {
            error_setf(err, "%s has no property '%s'", what, o->v[i].key);
            return -1;
        }
    }
    return 0;
}

int parse_uint(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!isdigit((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || *end) {
        return -1;
    }
    *out = v;
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    static const char suffixes[] = "BKMGTPE";
    char *end;
    unsigned long long v;
    const char *sfx;
    unsigned shift;

    if (!isdigit((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno) {
        return -1;
    }
    if (!*end) {
        *out = v;
        return 0;
    }
    sfx = strchr(suffixes, toupper((unsigned char)*end));
    if (!sfx || end[1]) {
        return -1;
    }
    shift = 10 * (unsigned)(sfx - suffixes);
    if (shift && v > (UINT64_MAX >> shift)) {
        return -1;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcmp(s, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(s, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int opts_get_bool(struct opts *o, const char *key, bool def, bool *out, char **err)
{
    const char *v = opts_get(o, key);

    *out = def;
    if (v && parse_bool(v, out) < 0) {
        error_setf(err, "parameter '%s' expects 'on' or 'off', not '%s'", key, v);
        return -1;
    }
    return 0;
}

int opts_get_uint(struct opts *o, const char *key, uint64_t def, uint64_t max,
                  uint64_t *out, char **err)
{
    const char *v = opts_get(o, key);

    *out = def;
    if (!v) {
        return 0;
    }
    if (parse_uint(v, out) < 0 || *out > max) {
        error_setf(err, "parameter '%s' expects a number from 0 to %" PRIu64
                   ", not '%s'", key, max, v);
        return -1;
    }
    return 0;
}

int opts_get_size(struct opts *o, const char *key, uint64_t def, uint64_t *out,
                  char **err)
{
    const char *v = opts_get(o, key);

    *out = def;
    if (v && parse_size(v, out) < 0) {
        error_setf(err, "parameter '%s' expects a size (e.g. 512, 64K, 1G), "
                   "not '%s'", key, v);
        return -1;
    }
    return 0;
}
