/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Option strings as QEMU's command line takes them:
 *   "lsi53c895a,id=lsi0,bus=pci.0"         first element may be an implied key
 *   "file=a,,b.img"                         ",," is a literal comma
 *   "readonly"                              a bare key means key=on
 *   '{"qom-type":"x","socket":{"path":"p"}}' JSON, nested keys become "socket.path"
 * Every key must be consumed by a getter; opts_check_all_used() reports the
 * first one nobody asked for, so a misspelt property is an error.
 */
#ifndef MPQEMU_UTIL_OPTS_H
#define MPQEMU_UTIL_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct opts;

struct opts *opts_parse(const char *text, const char *implied_key, char **err);
void opts_free(struct opts *o);

/* The raw value of 'key', or NULL when absent; marks the key as used. */
const char *opts_get(struct opts *o, const char *key);
bool opts_has(const struct opts *o, const char *key);
size_t opts_count(const struct opts *o);
/* -1 when every key was used, else fills *err naming the stray key. */
int opts_check_all_used(const struct opts *o, const char *what, char **err);

/* Typed getters: 0 when absent (out = def) or valid, -1 with *err otherwise. */
int opts_get_bool(struct opts *o, const char *key, bool def, bool *out, char **err);
int opts_get_uint(struct opts *o, const char *key, uint64_t def, uint64_t max,
                  uint64_t *out, char **err);
int opts_get_size(struct opts *o, const char *key, uint64_t def, uint64_t *out,
                  char **err);

/* Strict number parsers: decimal or 0x-hex, no sign, no trailing text. */
int parse_uint(const char *s, uint64_t *out);
/* A size with an optional suffix B, K, M, G, T, P, E (powers of 1024). */
int parse_size(const char *s, uint64_t *out);
/* on/off, yes/no, true/false, y/n. */
int parse_bool(const char *s, bool *out);

#endif
