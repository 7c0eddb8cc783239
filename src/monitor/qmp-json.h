/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP's JSON text as QEMU writes it (qobject/json-writer.c): ": " after a
 * key, ", " between members and elements, strings escaped as QEMU escapes
 * them, numbers as QEMU prints them, and an object's members in the order
 * QEMU's QDict keeps them (qobject/qdict.c: a hash table of 512 buckets,
 * walked bucket by bucket, the newest member of a bucket first).
 */
#ifndef MPQEMU_MONITOR_QMP_JSON_H
#define MPQEMU_MONITOR_QMP_JSON_H

#include <stddef.h>

struct json_object;

/* One member of a JSON object. */
struct qmp_member {
    const char *key;
    struct json_object *value;
};

/*
 * The members of obj (a JSON object) in QEMU's order: a malloc'd array of
 * *n members (not NULL even when there are none), NULL if memory ran out.
 */
struct qmp_member *qmp_json_members(struct json_object *obj, size_t *n);

/* The JSON text of value (NULL is JSON null), malloc'd; NULL when memory ran out. */
char *qmp_json_text(struct json_object *value);

#endif
