// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Confining a remote: new mount, net and PID namespaces (and a user
 * namespace when the launcher is not root, which gives the child the rights
 * to set them up), a minimal view of the file system (view.c), then no
 * capabilities left, another user if asked (root only) and no_new_privs.
 * The steps run in the child between clone and exec, in the order that
 * keeps each one's rights until it is done.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launch/confine.h"
#include "util/error.h"

void confine_set_default(struct confine *c)
{
    free(c->user);
    *c = (struct confine){
        .enabled = true, .new_mount = true, .new_net = true, .new_pid = true,
        .no_new_privs = true, .minimal_view = true,
    };
}

static int parse_namespaces(struct confine *c, struct json_object *list, char **err)
{
    if (!json_object_is_type(list, json_type_array)) {
        error_setf(err, "\"confine\": \"namespaces\" must be a list (mount, net, pid)");
        return -1;
    }
    c->new_mount = c->new_net = c->new_pid = false;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *item = json_object_array_get_idx(list, i);
        const char *n = json_object_get_string(item);

        if (!json_object_is_type(item, json_type_string)) {
            error_setf(err, "\"confine\": \"namespaces\" must be a list of strings");
            return -1;
        }
        if (!strcmp(n, "mount")) {
            c->new_mount = true;
        } else if (!strcmp(n, "net")) {
            c->new_net = true;
        } else if (!strcmp(n, "pid")) {
            c->new_pid = true;
        } else {
            error_setf(err, "unknown namespace \"%s\" (mount, net, pid)", n);
            return -1;
        }
    }
    return 0;
}

static int parse_view(struct confine *c, struct json_object *v, char **err)
{
    const char *s = json_object_get_string(v);

    if (!json_object_is_type(v, json_type_string) || (strcmp(s, "minimal") && strcmp(s, "host"))) {
        error_setf(err, "\"confine\": \"view\" is \"minimal\" or \"host\"");
        return -1;
    }
    c->minimal_view = !strcmp(s, "minimal");
    return 0;
}

static int parse_user(struct confine *c, struct json_object *v, char **err)
{
    if (!json_object_is_type(v, json_type_string) || !*json_object_get_string(v)) {
        error_setf(err, "\"confine\": \"user\" must be a user name");
        return -1;
    }
    free(c->user);
    if (!(c->user = strdup(json_object_get_string(v)))) {
        error_setf(err, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_no_new_privs(struct confine *c, struct json_object *v, char **err)
{
    if (!json_object_is_type(v, json_type_boolean)) {
        error_setf(err, "\"confine\": \"no-new-privs\" must be true or false");
        return -1;
    }
    c->no_new_privs = json_object_get_boolean(v);
    return 0;
}

/* The detailed form: what it leaves out is as in the default. */
static int parse_object(struct confine *c, struct json_object *o, char **err)
{
    json_object_object_foreach(o, key, val) {
        int r;

        if (!strcmp(key, "user")) {
            r = parse_user(c, val, err);
        } else if (!strcmp(key, "namespaces")) {
            r = parse_namespaces(c, val, err);
        } else if (!strcmp(key, "no-new-privs")) {
            r = parse_no_new_privs(c, val, err);
        } else if (!strcmp(key, "view")) {
            r = parse_view(c, val, err);
        } else {
            error_setf(err, "\"confine\": unknown key \"%s\" (user, namespaces, no-new-privs, "
                       "view)", key);
            r = -1;
        }
        if (r < 0) {
            return -1;
        }
    }
    if (c->minimal_view && !c->new_mount) {
        error_setf(err, "\"confine\": a minimal view needs the mount namespace "
                   "(or \"view\": \"host\")");
        return -1;
    }
    return 0;
}

int confine_parse(struct confine *c, struct json_object *o, char **err)
{
    confine_set_default(c);
    if (json_object_is_type(o, json_type_boolean)) {
        c->enabled = json_object_get_boolean(o);
        return 0;
    }
    if (!json_object_is_type(o, json_type_object)) {
        error_setf(err, "\"confine\" must be true, false or an object");
        return -1;
    }
    return parse_object(c, o, err);
}

int confine_plan(struct confine *c, char **err)
{
    struct passwd *pw;

    c->uid = geteuid();
    c->gid = getegid();
    if (!c->enabled) {
        return 0;
    }
    c->new_user = c->uid != 0;
    if (!c->user) {
        return 0;
    }
    if (c->new_user) {
        error_setf(err, "\"confine\": running the remotes as '%s' needs the launcher to run "
                   "as root", c->user);
        return -1;
    }
    if (!(pw = getpwnam(c->user))) {
        error_setf(err, "\"confine\": no user '%s'", c->user);
        return -1;
    }
    c->uid = pw->pw_uid;
    c->gid = pw->pw_gid;
    return 0;
}

unsigned long confine_clone_flags(const struct confine *c)
{
    if (!c->enabled) {
        return 0;
    }
    return (c->new_user ? CLONE_NEWUSER : 0) | (c->new_mount ? CLONE_NEWNS : 0) |
           (c->new_net ? CLONE_NEWNET : 0) | (c->new_pid ? CLONE_NEWPID : 0);
}

/* --- in the child ---------------------------------------------------------------- */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        return -1;
    }
    n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The one id an unprivileged process may map: its own, as itself. */
static int map_own_ids(const struct confine *c)
{
    char map[64];

    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)c->uid, (unsigned)c->uid);
    if (write_file("/proc/self/uid_map", map) < 0 ||
        write_file("/proc/self/setgroups", "deny\n") < 0) {
        return -1;
    }
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)c->gid, (unsigned)c->gid);
    return write_file("/proc/self/gid_map", map);
}

/* No capability can come back at exec: the bounding set and the ambient set emptied. */
static int drop_bounding_set(void)
{
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            return -1;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        return -1;
    }
    return 0;
}

static int drop_capabilities(void)
{
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = { 0 };

    return (int)syscall(SYS_capset, &header, none);
}

static int switch_user(const struct confine *c)
{
    if (setgroups(0, NULL) < 0 || setgid(c->gid) < 0 || setuid(c->uid) < 0) {
        return -1;
    }
    return 0;
}

#define STEP(ok, name) do { if (!(ok)) { *what = (name); return -1; } } while (0)

int confine_enter(const struct confine *c, const struct view *v, const char **what)
{
    if (c->new_user) {
        STEP(map_own_ids(c) == 0, "mapping the user namespace's ids");
    }
    if (c->new_mount) {
        /* Nothing done here may reach the host's mounts. */
        STEP(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "making mounts private");
    }
    if (c->minimal_view && view_enter(v, what) < 0) {
        return -1;
    }
    STEP(drop_bounding_set() == 0, "dropping the capability bounding set");
    if (c->user) {
        STEP(switch_user(c) == 0, "changing user");
    }
    STEP(drop_capabilities() == 0, "dropping capabilities");
    if (c->no_new_privs) {
        STEP(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    }
    return 0;
}

void confine_free(struct confine *c)
{
    free(c->user);
    c->user = NULL;
}
