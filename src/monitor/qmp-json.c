// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * JSON text in QEMU's QMP form, for json-c values.  json-c's own printer
 * differs in every detail a client may compare: spacing, escapes (json-c
 * escapes '/', QEMU every non-ASCII character), number forms and member
 * order.  No qsort(): glibc's may call sysinfo(), which the sandbox kills.
 */
#include "monitor/qmp-json.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { QDICT_BUCKETS = 512 };

/* --- member order ---------------------------------------------------------- */

/* The bucket QEMU's QDict puts a key in: the tdb hash (from gdbm), modulo 512. */
static unsigned qdict_bucket(const char *key)
{
    unsigned value = 0x238F13AFu * (unsigned)strlen(key);

    for (unsigned i = 0; key[i]; i++) {
        value += (unsigned)(unsigned char)key[i] << (i * 5 % 24);
    }
    return (1103515243u * value + 12345u) % QDICT_BUCKETS;
}

struct qmp_member *qmp_json_members(struct json_object *obj, size_t *n)
{
    size_t count = (size_t)json_object_object_length(obj), i = 0;
    struct qmp_member *in = calloc(count + 1, sizeof(*in));
    struct qmp_member *out = calloc(count + 1, sizeof(*out));
    unsigned *bucket = calloc(count + 1, sizeof(*bucket));
    /* Most objects have no member or one: no table to sort with then. */
    size_t *next = count > 1 ? calloc(QDICT_BUCKETS + 1, sizeof(*next)) : NULL;

    *n = 0;
    if (!in || !out || !bucket || (count > 1 && !next)) {
        free(out);
        out = NULL;
        goto done;
    }
    json_object_object_foreach(obj, key, value) {
        out[i] = in[i] = (struct qmp_member){ key, value };
        bucket[i] = qdict_bucket(key);
        if (next) {
            next[bucket[i] + 1]++;
        }
        i++;
    }
    /* A counting sort by bucket; within one, the newest member first. */
    for (unsigned b = 0; next && b < QDICT_BUCKETS; b++) {
        next[b + 1] += next[b];
    }
    for (i = count; next && i-- > 0;) {
        out[next[bucket[i]]++] = in[i];
    }
    *n = count;
done:
    free(in);
    free(bucket);
    free(next);
    return out;
}

/* --- the text ------------------------------------------------------------------- */

struct text {
    char *s;
    size_t len, cap;
    bool failed;
};

static void put(struct text *t, const char *s, size_t len)
{
    if (t->failed) {
        return;
    }
    if (t->cap - t->len <= len) {
        size_t cap = (t->cap ? t->cap : 256) * 2 + len;
        char *grown = realloc(t->s, cap);

        if (!grown) {
            t->failed = true;
            return;
        }
        t->s = grown;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, len);
    t->len += len;
    t->s[t->len] = 0;
}

static void puts_text(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) printf_text(struct text *t, const char *fmt,
                                                              ...)
{
    char buf[64];
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    put(t, buf, len > 0 && (size_t)len < sizeof(buf) ? (size_t)len : 0);
}

/*
 * Decodes the (modified) UTF-8 sequence at s[0..len) as QEMU's
 * mod_utf8_codepoint() does: returns the code point, or -1 for an invalid
 * sequence (noncharacters, surrogates, overlong forms but C0 80, values
 * past U+10FFFF, bytes that cannot start one); *used is how many bytes it
 * takes (a sequence cut short ends at its last continuation byte).
 */
static long utf8_codepoint(const unsigned char *s, size_t len, size_t *used)
{
    static const long min_cp[] = { 0x80, 0x800, 0x10000, 0x200000, 0x4000000 };
    unsigned char first = s[0];
    unsigned mask, n = 0;
    long cp;

    *used = 1;
    if (first < 0x80) {
        return first;
    }
    if (first >= 0xFE || !(first & 0x40)) {
        return -1;          /* an impossible byte, or a continuation byte */
    }
    for (mask = 0x80; first & mask; mask >>= 1) {
        n++;
    }
    cp = first & (mask - 1);
    for (unsigned i = 1; i < n; i++) {
        unsigned char c = i < len ? s[i] : 0;

        if ((c & 0xC0) != 0x80) {
            return -1;      /* a continuation byte is missing */
        }
        (*used)++;
        cp = cp << 6 | (c & 0x3F);
    }
    if (cp > 0x10FFFF || (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp < min_cp[n - 2] && !(cp == 0 && n == 2))) {
        return -1;
    }
    return cp;
}

/* A string as QEMU quotes it: ASCII control and non-ASCII characters as \uXXXX. */
static void put_string(struct text *t, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;

    puts_text(t, "\"");
    for (size_t at = 0, used; at < len; at += used) {
        long cp = utf8_codepoint(s + at, len - at, &used);

        switch (cp) {
        case '"': puts_text(t, "\\\""); break;
        case '\\': puts_text(t, "\\\\"); break;
        case '\b': puts_text(t, "\\b"); break;
        case '\f': puts_text(t, "\\f"); break;
        case '\n': puts_text(t, "\\n"); break;
        case '\r': puts_text(t, "\\r"); break;
        case '\t': puts_text(t, "\\t"); break;
        default:
            if (cp < 0) {
                cp = 0xFFFD;        /* the replacement character */
            }
            if (cp > 0xFFFF) {
                printf_text(t, "\\u%04lX\\u%04lX", 0xD800 + ((cp - 0x10000) >> 10),
                            0xDC00 + ((cp - 0x10000) & 0x3FF));
            } else if (cp < 0x20 || cp >= 0x7F) {
                printf_text(t, "\\u%04lX", cp);
            } else {
                put(t, (const char *)&s[at], 1);
            }
        }
    }
    puts_text(t, "\"");
}

/* json-c keeps integers past INT64_MAX as uint64; QEMU prints both kinds whole. */
static void put_int(struct text *t, struct json_object *v)
{
    int64_t i = json_object_get_int64(v);

    if (i == INT64_MAX) {
        printf_text(t, "%" PRIu64, json_object_get_uint64(v));
    } else {
        printf_text(t, "%" PRId64, i);
    }
}

static void put_value(struct text *t, struct json_object *v);

static void put_object(struct text *t, struct json_object *obj)
{
    size_t n;
    struct qmp_member *m = qmp_json_members(obj, &n);

    if (!m) {
        t->failed = true;
        return;
    }
    puts_text(t, "{");
    for (size_t i = 0; i < n; i++) {
        puts_text(t, i ? ", " : "");
        put_string(t, m[i].key, strlen(m[i].key));
        puts_text(t, ": ");
        put_value(t, m[i].value);
    }
    puts_text(t, "}");
    free(m);
}

static void put_value(struct text *t, struct json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        puts_text(t, "null");
        break;
    case json_type_boolean:
        puts_text(t, json_object_get_boolean(v) ? "true" : "false");
        break;
    case json_type_int:
        put_int(t, v);
        break;
    case json_type_double:
        /* As QEMU: 17 significant digits, and inf or nan as C prints them. */
        printf_text(t, "%.17g", json_object_get_double(v));
        break;
    case json_type_string:
        put_string(t, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        break;
    case json_type_array:
        puts_text(t, "[");
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            puts_text(t, i ? ", " : "");
            put_value(t, json_object_array_get_idx(v, i));
        }
        puts_text(t, "]");
        break;
    case json_type_object:
        put_object(t, v);
        break;
    }
}

char *qmp_json_text(struct json_object *value)
{
    struct text t = { 0 };

    put_value(&t, value);
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}
