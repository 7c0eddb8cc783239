// SPDX-License-Identifier: GPL-2.0-or-later
/* The VM description: a JSON file (docs/launcher.md), checked key by key. */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/launch.h"
#include "remote/keeper.h"
#include "util/error.h"

/* PCI functions get a socket each; the other devices sit on their buses. */
static const char *const pci_drivers[] = { "lsi53c895a", "mpqemu-testdev" };

int strv_add(struct strv *s, const char *text)
{
    char **grown = realloc(s->v, (s->n + 2) * sizeof(*s->v));

    if (!grown || !(grown[s->n] = strdup(text))) {
        if (grown) {
            s->v = grown;
        }
        return -1;
    }
    s->v = grown;
    s->v[++s->n] = NULL;
    return 0;
}

int strv_addf(struct strv *s, const char *fmt, ...)
{
    va_list ap;
    char *text;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (r < 0) {
        return -1;
    }
    r = strv_add(s, text);
    free(text);
    return r;
}

void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i]);
    }
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static char *dup_str(struct json_object *o)
{
    return o ? strdup(json_object_get_string(o)) : NULL;
}

/* A QEMU option value: commas doubled, booleans as on/off. */
static int append_value(FILE *f, struct json_object *v)
{
    const char *s;

    if (json_object_is_type(v, json_type_boolean)) {
        return fputs(json_object_get_boolean(v) ? "on" : "off", f);
    }
    if (!json_object_is_type(v, json_type_string) && !json_object_is_type(v, json_type_int)) {
        return -1;
    }
    for (s = json_object_get_string(v); *s; s++) {
        if (*s == ',') {
            fputc(',', f);
        }
        fputc(*s, f);
    }
    return 0;
}

/* {"driver": "x", "id": "y", "k": v} -> "x,id=y,k=v" (first_key's value leads, bare). */
static char *option_text(struct json_object *o, const char *first_key, const char *what,
                         char **err)
{
    struct json_object *first = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f;
    bool comma = false;

    if (!json_object_is_type(o, json_type_object)) {
        error_setf(err, "%s must be an object", what);
        return NULL;
    }
    if (first_key && (!json_object_object_get_ex(o, first_key, &first) ||
                      !json_object_is_type(first, json_type_string))) {
        error_setf(err, "%s needs \"%s\"", what, first_key);
        return NULL;
    }
    if (!(f = open_memstream(&text, &len))) {
        error_setf(err, "out of memory");
        return NULL;
    }
    if (first) {
        append_value(f, first);
        comma = true;
    }
    json_object_object_foreach(o, key, val) {
        if (first_key && !strcmp(key, first_key)) {
            continue;
        }
        fprintf(f, "%s%s=", comma ? "," : "", key);
        comma = true;
        if (append_value(f, val) < 0) {
            fclose(f);
            free(text);
            error_setf(err, "%s: \"%s\" must be a string, a number or a boolean", what, key);
            return NULL;
        }
    }
    fclose(f);
    return text;
}

static int get_string(struct json_object *o, const char *key, char **out, char **err)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v)) {
        return 0;
    }
    if (!json_object_is_type(v, json_type_string)) {
        error_setf(err, "\"%s\" must be a string", key);
        return -1;
    }
    free(*out);
    *out = dup_str(v);
    return 0;
}

static int get_strv(struct json_object *o, const char *key, struct strv *out, char **err)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v)) {
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        return strv_add(out, json_object_get_string(v));
    }
    if (!json_object_is_type(v, json_type_array)) {
        error_setf(err, "\"%s\" must be a string or a list of strings", key);
        return -1;
    }
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        struct json_object *s = json_object_array_get_idx(v, i);

        if (!json_object_is_type(s, json_type_string)) {
            error_setf(err, "\"%s\" must be a list of strings", key);
            return -1;
        }
        strv_add(out, json_object_get_string(s));
    }
    return 0;
}

static bool is_pci_driver(const char *driver)
{
    for (size_t i = 0; i < sizeof(pci_drivers) / sizeof(pci_drivers[0]); i++) {
        if (!strcmp(driver, pci_drivers[i])) {
            return true;
        }
    }
    return false;
}

static int parse_device(struct lc_device *d, struct json_object *o, const char *remote,
                        char **err)
{
    struct json_object *id, *driver;
    char what[128];

    snprintf(what, sizeof(what), "remote '%s': a device", remote);
    d->fds[0] = d->fds[1] = -1;
    if (!(d->text = option_text(o, "driver", what, err))) {
        return -1;
    }
    if (!json_object_object_get_ex(o, "id", &id) || !json_object_is_type(id, json_type_string)) {
        error_setf(err, "%s (%s) needs an \"id\"", what, d->text);
        return -1;
    }
    json_object_object_get_ex(o, "driver", &driver);
    d->id = dup_str(id);
    d->pci = is_pci_driver(json_object_get_string(driver));
    return 0;
}

/* "media-dirs": ["/srv/iso"] -> -sandbox allow-dir=/srv/iso (read-only: media are CDs). */
static int parse_media_dirs(struct lc_remote *r, struct json_object *o, size_t index, char **err)
{
    struct strv dirs = { 0 };
    int rc = get_strv(o, "media-dirs", &dirs, err);

    for (size_t i = 0; rc == 0 && i < dirs.n; i++) {
        struct json_object *opt = json_object_new_object();
        char *text = NULL;

        if (!*dirs.v[i]) {
            error_setf(err, "remote %zu: \"media-dirs\" has an empty path", index);
            rc = -1;
        } else if (!opt || json_object_object_add(opt, "allow-dir",
                                                  json_object_new_string(dirs.v[i])) < 0 ||
                   !(text = option_text(opt, NULL, "a media directory", err)) ||
                   strv_add(&r->media_dirs, text) < 0) {
            rc = -1;
        }
        free(text);
        json_object_put(opt);
    }
    strv_free(&dirs);
    return rc;
}

/* "network": "none" (its own namespace, no network: the default) or "host". */
static int parse_network(struct lc_remote *r, struct json_object *o, size_t index, char **err)
{
    struct json_object *v;
    const char *s;

    if (!json_object_object_get_ex(o, "network", &v)) {
        return 0;
    }
    s = json_object_get_string(v);
    if (!json_object_is_type(v, json_type_string) || (strcmp(s, "none") && strcmp(s, "host"))) {
        error_setf(err, "remote %zu: \"network\" is \"none\" or \"host\"", index);
        return -1;
    }
    r->host_network = !strcmp(s, "host");
    return 0;
}

static int parse_remote(struct lc_remote *r, struct json_object *o, size_t index, char **err)
{
    static const char *const keys[] = {
        "name", "devices", "drives", "args", "media-dirs", "network",
    };
    struct json_object *devs, *drives;

    if (!json_object_is_type(o, json_type_object)) {
        error_setf(err, "each of \"remotes\" must be an object");
        return -1;
    }
    json_object_object_foreach(o, key, val) {
        size_t k;

        (void)val;
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]) && strcmp(keys[k], key); k++) {
        }
        if (k == sizeof(keys) / sizeof(keys[0])) {
            error_setf(err, "remote %zu: unknown key \"%s\" (name, devices, drives, args, "
                       "media-dirs, network)", index, key);
            return -1;
        }
    }
    if (get_string(o, "name", &r->name, err) < 0 || get_strv(o, "args", &r->args, err) < 0 ||
        parse_media_dirs(r, o, index, err) < 0 || parse_network(r, o, index, err) < 0) {
        return -1;
    }
    if (!r->name && asprintf(&r->name, "remote%zu", index) < 0) {
        r->name = NULL;
        error_setf(err, "out of memory");
        return -1;
    }
    if (!json_object_object_get_ex(o, "devices", &devs) ||
        !json_object_is_type(devs, json_type_array) || !json_object_array_length(devs)) {
        error_setf(err, "remote '%s' needs a list of \"devices\"", r->name);
        return -1;
    }
    r->n_devices = json_object_array_length(devs);
    r->devices = calloc(r->n_devices, sizeof(*r->devices));
    for (size_t i = 0; r->devices && i < r->n_devices; i++) {
        if (parse_device(&r->devices[i], json_object_array_get_idx(devs, i), r->name, err) < 0) {
            return -1;
        }
    }
    if (json_object_object_get_ex(o, "drives", &drives)) {
        if (!json_object_is_type(drives, json_type_array)) {
            error_setf(err, "remote '%s': \"drives\" must be a list", r->name);
            return -1;
        }
        for (size_t i = 0; i < json_object_array_length(drives); i++) {
            char *text = option_text(json_object_array_get_idx(drives, i), NULL, "a drive", err);

            if (!text) {
                return -1;
            }
            strv_add(&r->drives, text);
            free(text);
        }
    }
    return 0;
}

static const char *const protocol_names[] = {
    [PROTO_AUTO] = "auto", [PROTO_VFIO_USER] = "vfio-user",
    [PROTO_MULTI_PROCESS] = "multi-process",
};
static const char *const policy_names[] = {
    [POLICY_STOP] = "stop", [POLICY_CONTINUE] = "continue", [POLICY_RESTART] = "restart",
};

static int index_of(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(names[i], name)) {
            return (int)i;
        }
    }
    return -1;
}

int protocol_from_name(const char *name)
{
    return index_of(protocol_names, sizeof(protocol_names) / sizeof(protocol_names[0]), name);
}

int policy_from_name(const char *name)
{
    return index_of(policy_names, sizeof(policy_names) / sizeof(policy_names[0]), name);
}

const char *policy_name(enum remote_policy p)
{
    return policy_names[p];
}

static int parse_enums(struct launch_config *c, struct json_object *root, char **err)
{
    struct json_object *v;
    int n;

    if (json_object_object_get_ex(root, "protocol", &v)) {
        if ((n = protocol_from_name(json_object_get_string(v))) < 0) {
            error_setf(err, "\"protocol\" is auto, vfio-user or multi-process, not \"%s\"",
                       json_object_get_string(v));
            return -1;
        }
        c->protocol = (enum protocol)n;
    }
    if (json_object_object_get_ex(root, "on-remote-exit", &v)) {
        if ((n = policy_from_name(json_object_get_string(v))) < 0) {
            error_setf(err, "\"on-remote-exit\" is stop, continue or restart, not \"%s\"",
                       json_object_get_string(v));
            return -1;
        }
        c->on_remote_exit = (enum remote_policy)n;
    }
    return 0;
}

/* An integer member of o within [min, max]; absent leaves *out as it is. */
static int get_bounded_uint(struct json_object *o, const char *key, unsigned min, unsigned max,
                            unsigned *out, char **err)
{
    struct json_object *v;
    int64_t n;

    if (!json_object_object_get_ex(o, key, &v)) {
        return 0;
    }
    n = json_object_get_int64(v);
    if (!json_object_is_type(v, json_type_int) || n < (int64_t)min || n > (int64_t)max) {
        error_setf(err, "\"restart\": \"%s\" must be a whole number from %u to %u", key, min,
                   max);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

/* "restart": {"max": N, "window": SECONDS}, the keeper's budget; only with its policy. */
static int parse_restart(struct launch_config *c, struct json_object *root, char **err)
{
    struct json_object *o;

    c->restart = (struct restart_budget){ RESTART_DEFAULT_MAX, RESTART_DEFAULT_WINDOW_S };
    if (!json_object_object_get_ex(root, "restart", &o)) {
        return 0;
    }
    if (c->on_remote_exit != POLICY_RESTART) {
        error_setf(err, "\"restart\" is the budget of \"on-remote-exit\": \"restart\", "
                   "which this description does not choose");
        return -1;
    }
    if (!json_object_is_type(o, json_type_object)) {
        error_setf(err, "\"restart\" must be an object: {\"max\": N, \"window\": SECONDS}");
        return -1;
    }
    json_object_object_foreach(o, key, val) {
        (void)val;
        if (strcmp(key, "max") && strcmp(key, "window")) {
            error_setf(err, "\"restart\": unknown key \"%s\" (max, window)", key);
            return -1;
        }
    }
    return get_bounded_uint(o, "max", 0, RESTART_MAX_LIMIT, &c->restart.max, err) < 0 ||
           get_bounded_uint(o, "window", 1, RESTART_WINDOW_LIMIT_S, &c->restart.window,
                            err) < 0 ? -1 : 0;
}

static int check_keys(struct json_object *root, char **err)
{
    static const char *const keys[] = {
        "qemu", "qemu-root", "remote", "machine", "accel", "memory", "memory-path",
        "kernel", "initrd", "append", "qemu-args", "protocol", "on-remote-exit", "restart",
        "log-dir", "run-dir", "cpus", "confine", "remotes",
    };

    json_object_object_foreach(root, key, val) {
        size_t k;

        (void)val;
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]) && strcmp(keys[k], key); k++) {
        }
        if (k == sizeof(keys) / sizeof(keys[0])) {
            error_setf(err, "unknown key \"%s\"", key);
            return -1;
        }
    }
    return 0;
}

int config_load(struct launch_config *c, const char *path, char **err)
{
    struct json_object *root = json_object_from_file(path), *remotes, *confine;
    int r = -1;

    if (!root) {
        error_setf(err, "%s: %s", path, json_util_get_last_err());
        return -1;
    }
    if (!json_object_is_type(root, json_type_object)) {
        error_setf(err, "%s: the VM description must be a JSON object", path);
        goto out;
    }
    if (check_keys(root, err) < 0 || get_strv(root, "qemu", &c->qemu, err) < 0 ||
        get_string(root, "qemu-root", &c->qemu_root, err) < 0 ||
        get_string(root, "remote", &c->remote_binary, err) < 0 ||
        get_string(root, "machine", &c->machine, err) < 0 ||
        get_string(root, "accel", &c->accel, err) < 0 ||
        get_string(root, "memory", &c->memory, err) < 0 ||
        get_string(root, "memory-path", &c->memory_path, err) < 0 ||
        get_string(root, "kernel", &c->kernel, err) < 0 ||
        get_string(root, "initrd", &c->initrd, err) < 0 ||
        get_string(root, "append", &c->append, err) < 0 ||
        get_strv(root, "qemu-args", &c->qemu_args, err) < 0 ||
        get_string(root, "log-dir", &c->log_dir, err) < 0 ||
        get_string(root, "run-dir", &c->run_dir, err) < 0 ||
        get_string(root, "cpus", &c->cpus, err) < 0 || parse_enums(c, root, err) < 0 ||
        parse_restart(c, root, err) < 0) {
        goto out;
    }
    confine_set_default(&c->confine);
    if (json_object_object_get_ex(root, "confine", &confine) &&
        confine_parse(&c->confine, confine, err) < 0) {
        goto out;
    }
    if (!json_object_object_get_ex(root, "remotes", &remotes) ||
        !json_object_is_type(remotes, json_type_array) ||
        !json_object_array_length(remotes)) {
        error_setf(err, "%s: \"remotes\" must list at least one remote process", path);
        goto out;
    }
    c->n_remotes = json_object_array_length(remotes);
    if (!(c->remotes = calloc(c->n_remotes, sizeof(*c->remotes)))) {
        error_setf(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c->n_remotes; i++) {
        if (parse_remote(&c->remotes[i], json_object_array_get_idx(remotes, i), i, err) < 0) {
            goto out;
        }
    }
    r = 0;
out:
    if (r < 0) {
        error_prefix(err, "%s", path);
    }
    json_object_put(root);
    return r;
}

void config_free(struct launch_config *c)
{
    for (size_t i = 0; i < c->n_remotes; i++) {
        struct lc_remote *r = &c->remotes[i];

        for (size_t k = 0; k < r->n_devices; k++) {
            free(r->devices[k].id);
            free(r->devices[k].text);
            free(r->devices[k].socket_path);
        }
        free(r->devices);
        free(r->name);
        free(r->log_path);
        strv_free(&r->drives);
        strv_free(&r->args);
        strv_free(&r->media_dirs);
        strv_free(&r->argv);
        view_free(&r->view);
    }
    free(c->remotes);
    strv_free(&c->qemu);
    strv_free(&c->qemu_args);
    strv_free(&c->qemu_argv);
    free(c->qemu_root);
    free(c->remote_binary);
    free(c->machine);
    free(c->accel);
    free(c->memory);
    free(c->memory_path);
    free(c->kernel);
    free(c->initrd);
    free(c->append);
    free(c->log_dir);
    free(c->run_dir);
    free(c->cpus);
    free(c->qemu_log);
    confine_free(&c->confine);
}
