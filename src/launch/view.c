// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A confined remote's view of the file system: a fresh root (a tmpfs) into
 * which only what the remote needs is bound, each file and directory at
 * the path it has on the host, so that the remote's options mean the same
 * inside.  Planned from the remote's own command line (its -drive, -sandbox
 * and socket options, read with the remote's option parser), built in the
 * child after clone, entered with pivot_root.
 *
 * The system's libraries come whole: /usr and the /lib directories (or
 * their symlinks into /usr), read-only.  Cheaper to keep right than a list
 * of the libraries the binary loads, and nothing there is secret; the
 * remote's own sandbox (docs/sandbox.md) lets it open none of it once set up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "block/backing.h"
#include "block/format.h"
#include "block/nbd-target.h"
#include "block/qcow2-int.h"
#include "launch/confine.h"
#include "util/error.h"
#include "util/opts.h"

/* What resolving a name reads, for an NBD server named rather than numbered. */
static const char *const resolver_files[] = {
    "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
};
/* Read-only, with their programs and libraries. */
static const char *const system_dirs[] = { "/usr", "/lib", "/lib64", "/lib32", "/libx32" };
/* Where the host's root stays reachable while the view is built. */
#define STAGE "/tmp"
#define HOST "/.host"

/* --- planning -------------------------------------------------------------------- */

struct entry_spec {
    enum view_kind kind;
    bool writable, exec, dev;
};

static const struct entry_spec READ_ONLY = { VIEW_BIND, false, false, false };
static const struct entry_spec READ_WRITE = { VIEW_BIND, true, false, false };
static const struct entry_spec PROGRAMS = { VIEW_BIND, false, true, false };

/* "/a//b/" -> "/a/b"; a relative path from the launcher's (and the remote's) directory. */
static char *absolute(const struct view *v, const char *path)
{
    char *out = malloc(strlen(v->cwd) + strlen(path) + 3), *w = out;

    if (!out) {
        return NULL;
    }
    if (path[0] != '/') {
        w = stpcpy(w, v->cwd);
        if (w[-1] != '/') {
            *w++ = '/';
        }
    }
    for (const char *r = path; *r; r++) {
        if (!(*r == '/' && w > out && w[-1] == '/')) {
            *w++ = *r;
        }
    }
    while (w > out + 1 && w[-1] == '/') {
        w--;
    }
    *w = 0;
    return out;
}

static struct view_entry *find_entry(struct view *v, const char *path)
{
    for (size_t i = 0; i < v->n; i++) {
        if (!strcmp(v->entries[i].path, path)) {
            return &v->entries[i];
        }
    }
    return NULL;
}

/* Adds path (taken) to the view; a path given twice gets the rights of both. */
static int add_entry(struct view *v, char *path, char *target, struct entry_spec spec,
                     bool dir, char **err)
{
    struct view_entry *e = path ? find_entry(v, path) : NULL, *grown;

    if (!path) {
        free(target);
        error_setf(err, "out of memory");
        return -1;
    }
    if (e) {
        e->writable |= spec.writable;
        e->exec |= spec.exec;
        e->dev |= spec.dev;
        free(path);
        free(target);
        return 0;
    }
    if (!(grown = realloc(v->entries, (v->n + 1) * sizeof(*grown)))) {
        free(path);
        free(target);
        error_setf(err, "out of memory");
        return -1;
    }
    v->entries = grown;
    v->entries[v->n++] = (struct view_entry){
        .kind = spec.kind, .path = path, .target = target, .dir = dir,
        .writable = spec.writable, .exec = spec.exec, .dev = spec.dev,
    };
    return 0;
}

/*
 * A host file or directory, bound at its path.  One that does not exist is
 * an error when check_files (a real start), else listed as a file (a dry run).
 */
static int add_host_path(struct view *v, const char *given, struct entry_spec spec,
                         bool check_files, char **err)
{
    char *path = absolute(v, given);
    struct stat st;

    if (!path) {
        error_setf(err, "out of memory");
        return -1;
    }
    if (!strcmp(path, "/")) {
        error_setf(err, "'%s' is the host's whole file system: a minimal view cannot hold it "
                   "(\"confine\": {\"view\": \"host\"} gives the host's)", given);
        free(path);
        return -1;
    }
    if (stat(path, &st) < 0) {
        if (check_files) {
            error_setf(err, "%s: %s", path, strerror(errno));
            free(path);
            return -1;
        }
        st.st_mode = S_IFREG;
    }
    spec.dev |= S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode);
    return add_entry(v, path, NULL, spec, S_ISDIR(st.st_mode), err);
}

/* /usr and the /lib directories, as the host has them: directories or symlinks. */
static int add_system(struct view *v, bool own_pid_namespace, char **err)
{
    struct entry_spec symlink_spec = { VIEW_SYMLINK, false, false, false };
    struct entry_spec proc_spec = { VIEW_PROC, false, false, false };

    for (size_t i = 0; i < sizeof(system_dirs) / sizeof(system_dirs[0]); i++) {
        char target[PATH_MAX];
        ssize_t n = readlink(system_dirs[i], target, sizeof(target) - 1);
        struct stat st;

        if (n > 0) {
            target[n] = 0;
            if (add_entry(v, strdup(system_dirs[i]), strdup(target), symlink_spec, false,
                          err) < 0) {
                return -1;
            }
        } else if (stat(system_dirs[i], &st) == 0 && S_ISDIR(st.st_mode) &&
                   add_host_path(v, system_dirs[i], PROGRAMS, true, err) < 0) {
            return -1;
        }
    }
    /* The dynamic loader's cache, where there is one. */
    if (access("/etc/ld.so.cache", R_OK) == 0 &&
        add_host_path(v, "/etc/ld.so.cache", READ_ONLY, true, err) < 0) {
        return -1;
    }
    /* Its own processes only: a proc of the host's PID namespace would show them all. */
    if (own_pid_namespace && add_entry(v, strdup("/proc"), NULL, proc_spec, true, err) < 0) {
        return -1;
    }
    return add_host_path(v, "/dev/null", READ_WRITE, true, err);
}

/* The first executable name in a directory of $PATH, as execvp() finds it; NULL if none. */
static char *search_path(const char *name)
{
    const char *search = getenv("PATH");
    char *dirs = strdup(search ? search : "/usr/local/bin:/usr/bin:/bin"), *save = NULL;
    char *found = NULL;

    for (char *dir = dirs ? strtok_r(dirs, ":", &save) : NULL; dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        if (asprintf(&found, "%s/%s", dir, name) < 0) {
            found = NULL;
            break;
        }
        if (access(found, X_OK) < 0) {
            free(found);
            found = NULL;
        }
    }
    free(dirs);
    return found;
}

/* The binary: a path, or the one execvp() will find in $PATH. */
static int add_binary(struct view *v, const char *name, bool check_files, char **err)
{
    char *path;
    int r;

    if (strchr(name, '/')) {
        return add_host_path(v, name, PROGRAMS, check_files, err);
    }
    if (!(path = search_path(name))) {
        if (!check_files) {
            return 0;
        }
        error_setf(err, "%s: not found in $PATH", name);
        return -1;
    }
    r = add_host_path(v, path, PROGRAMS, check_files, err);
    free(path);
    return r;
}

/* 1 with name set if the image at path is qcow2 and names a backing file, 0 if not, -1. */
static int read_backing_name(const char *path, char name[BACKING_NAME_MAX], char **err)
{
    size_t size = (size_t)1 << QCOW2_MAX_CLUSTER_BITS;
    uint8_t *head = malloc(size);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 && head ? pread(fd, head, size, 0) : -1;
    int r = 0;

    if (n >= QH_V2_LENGTH && be32(head) == QCOW2_MAGIC) {
        r = qcow2_backing_name(head, (uint64_t)n, QH_V2_LENGTH, path, name, err);
    }
    if (fd >= 0) {
        close(fd);
    }
    free(head);
    return r;
}

/* The backing files of a qcow2 image, read-only, as the remote's drive layer finds them. */
static int add_backing_chain(struct view *v, const char *image, bool check_files, char **err)
{
    char *path = absolute(v, image), name[BACKING_NAME_MAX];
    int r = 0;

    for (unsigned depth = 1; path && depth < DRIVE_MAX_BACKING_DEPTH; depth++) {
        char *next;

        if ((r = read_backing_name(path, name, err)) <= 0) {
            break;
        }
        if (!(next = backing_path(path, name))) {
            r = -1;
            error_setf(err, "out of memory");
            break;
        }
        free(path);
        path = next;
        if ((r = add_host_path(v, path, READ_ONLY, check_files, err)) < 0) {
            break;
        }
    }
    free(path);
    return r < 0 ? -1 : 0;
}

static bool is_address(const char *host)
{
    struct in6_addr a;

    return inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
}

/* The directory of a unix socket: a server started again makes a new socket there. */
static int add_socket_dir(struct view *v, const char *socket, bool check_files, char **err)
{
    char *path = absolute(v, socket), *slash;
    int r;

    if (!path) {
        error_setf(err, "out of memory");
        return -1;
    }
    slash = strrchr(path, '/');
    slash[slash == path] = '\0';
    r = add_host_path(v, path, READ_ONLY, check_files, err);
    free(path);
    return r;
}

/*
 * What a confined remote needs to reach its NBD server: the socket's
 * directory, the TLS keys libnbd reads at each handshake, and over TCP the
 * host's network (the remote's "network": "host") and, for a server named
 * rather than numbered, the resolver's files, read at setup.
 */
static int add_nbd_server(struct view *v, const struct confine *c, const struct nbd_target *t,
                          bool check_files, char **err)
{
    bool tcp = t->transport == NBD_TRANSPORT_TCP;

    if (tcp && c->new_net) {
        error_setf(err, "the NBD server %s port %u is reached over TCP, and a confined remote "
                   "has a network namespace of its own, with no network: give this remote "
                   "\"network\": \"host\" (the host's network namespace; its sandbox lets it "
                   "connect to that port only), serve the export on a unix socket "
                   "(nbd+unix:///EXPORT?socket=PATH), or \"confine\": false", t->host,
                   (unsigned)t->port);
        return -1;
    }
    if (!c->minimal_view) {
        return 0;
    }
    if ((!tcp && add_socket_dir(v, t->socket, check_files, err) < 0) ||
        (t->tls_psk_file && add_host_path(v, t->tls_psk_file, READ_ONLY, check_files, err) < 0) ||
        (t->tls_certificates &&
         add_host_path(v, t->tls_certificates, READ_ONLY, check_files, err) < 0)) {
        return -1;
    }
    for (size_t i = 0; tcp && !is_address(t->host) && i < sizeof(resolver_files) /
                                                           sizeof(resolver_files[0]); i++) {
        if (access(resolver_files[i], R_OK) == 0 &&
            add_host_path(v, resolver_files[i], READ_ONLY, check_files, err) < 0) {
            return -1;
        }
    }
    return 0;
}

/* An image file, and the backing files of a qcow2 one. */
static int add_image(struct view *v, struct opts *o, bool check_files, char **err)
{
    const char *file = opts_get(o, "file"), *format = opts_get(o, "format");
    bool readonly;

    if (opts_get_bool(o, "readonly", false, &readonly, err) < 0) {
        return -1;
    }
    if (!file) {
        return 0;
    }
    if (add_host_path(v, file, readonly ? READ_ONLY : READ_WRITE, check_files, err) < 0) {
        return -1;
    }
    return !format || !strcmp(format, "qcow2") ? add_backing_chain(v, file, check_files, err) : 0;
}

static int add_drive(struct view *v, const struct confine *c, const char *text, bool check_files,
                     char **err)
{
    struct opts *o = opts_parse(text, NULL, err);
    struct nbd_target t;
    int r = -1, nbd;

    if (!o) {
        return -1;
    }
    nbd = nbd_target_of_drive(o, &t, err);
    if (nbd > 0) {
        r = add_nbd_server(v, c, &t, check_files, err);
        nbd_target_clear(&t);
    } else if (nbd == 0) {
        r = c->minimal_view ? add_image(v, o, check_files, err) : 0;
    }
    if (r < 0) {
        error_prefix(err, "-drive %s", text);
    }
    opts_free(o);
    return r;
}

/* The directories media changes may open files from. */
static int add_sandbox_dirs(struct view *v, const char *text, bool check_files, char **err)
{
    struct opts *o = opts_parse(text, "enable", err);
    const char *ro, *rw;
    int r = -1;

    if (!o) {
        return -1;
    }
    ro = opts_get(o, "allow-dir");
    rw = opts_get(o, "allow-dir-rw");
    if ((!ro || add_host_path(v, ro, READ_ONLY, check_files, err) == 0) &&
        (!rw || add_host_path(v, rw, READ_WRITE, check_files, err) == 0)) {
        r = 0;
    }
    opts_free(o);
    return r;
}

/* --- the remote's options ------------------------------------------------------ */

/* Sockets the remote binds must be where QEMU and the monitors' clients find them. */
static int check_socket_path(const struct view *v, const char *option, const char *path,
                             const char *run_dir, char **err)
{
    char *abs = absolute(v, path);
    size_t n = strlen(run_dir);
    bool inside;

    while (n > 1 && run_dir[n - 1] == '/') {
        n--;
    }
    inside = abs && !strncmp(abs, run_dir, n) && abs[n] == '/' && !strchr(abs + n + 1, '/');
    free(abs);
    if (!inside) {
        error_setf(err, "%s: a confined remote's sockets must be in the run directory %.*s "
                   "(set \"run-dir\" and put them there, or \"confine\": false)",
                   option, (int)n, run_dir);
        return -1;
    }
    return 0;
}

static int check_monitor(const struct view *v, const struct confine *c, const char *option,
                         const char *spec, const char *run_dir, char **err)
{
    if (!strncmp(spec, "tcp:", 4) && c->new_net) {
        error_setf(err, "%s %s: the remote has a network namespace of its own, where nothing "
                   "can reach a tcp: monitor: use unix:PATH in the run directory, or "
                   "\"confine\": false", option, spec);
        return -1;
    }
    if (!strncmp(spec, "unix:", 5) && c->minimal_view) {
        char *path = strndup(spec + 5, strcspn(spec + 5, ","));
        int r = path ? check_socket_path(v, option, path, run_dir, err) : -1;

        free(path);
        return r;
    }
    return 0;
}

static int check_object(const struct view *v, const char *text, const char *run_dir, char **err)
{
    struct opts *o = opts_parse(text, "qom-type", err);
    const char *path;
    int r;

    if (!o) {
        return -1;
    }
    path = opts_get(o, "socket.path");
    r = path ? check_socket_path(v, "-object", path, run_dir, err) : 0;
    opts_free(o);
    return r;
}

/* One option of the remote's and its value: what it asks of the view. */
static int plan_option(struct view *v, const struct confine *c, const char *name,
                       const char *value, const char *run_dir, bool check_files, char **err)
{
    if (!strcmp(name, "qmp") || !strcmp(name, "monitor")) {
        return check_monitor(v, c, name, value, run_dir, err);
    }
    if (!strcmp(name, "drive")) {
        return add_drive(v, c, value, check_files, err);
    }
    if (!c->minimal_view) {
        return 0;
    }
    if (!strcmp(name, "sandbox")) {
        return add_sandbox_dirs(v, value, check_files, err);
    }
    if (!strcmp(name, "object")) {
        return check_object(v, value, run_dir, err);
    }
    return 0;
}

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const struct view_entry *)a)->path, ((const struct view_entry *)b)->path);
}

int view_plan(struct view *v, const struct confine *c, char *const *argv, const char *run_dir,
              bool check_files, char **err)
{
    char cwd[PATH_MAX];

    if (!getcwd(cwd, sizeof(cwd)) || !(v->cwd = strdup(cwd))) {
        error_setf(err, "the current directory: %s", strerror(errno));
        return -1;
    }
    /* As mpqemu-remote reads them: -option or --option, each with a value. */
    for (size_t i = 1; argv[i] && argv[i + 1]; i++) {
        const char *name = argv[i][0] != '-' ? NULL : argv[i] + 1 + (argv[i][1] == '-');

        if (name && plan_option(v, c, name, argv[++i], run_dir, check_files, err) < 0) {
            return -1;
        }
    }
    if (!c->minimal_view) {
        return 0;
    }
    /* The run directory is made at start, after the plan. */
    if (add_system(v, c->new_pid, err) < 0 || add_binary(v, argv[0], check_files, err) < 0 ||
        add_entry(v, absolute(v, run_dir), NULL, READ_WRITE, true, err) < 0) {
        return -1;
    }
    /* Parents before what is bound inside them. */
    qsort(v->entries, v->n, sizeof(*v->entries), compare_entries);
    return 0;
}

void view_print(const struct view *v, FILE *out)
{
    fputs("# view:", out);
    for (size_t i = 0; i < v->n; i++) {
        const struct view_entry *e = &v->entries[i];

        fprintf(out, "%s %s", i ? "," : "", e->path);
        if (e->kind == VIEW_SYMLINK) {
            fprintf(out, " -> %s", e->target);
        } else if (e->kind == VIEW_PROC) {
            fputs(" (its own proc)", out);
        } else {
            fprintf(out, " (%s%s%s)", e->writable ? "rw" : "ro", e->exec ? ", exec" : "",
                    e->dev ? ", dev" : "");
        }
    }
    fputc('\n', out);
}

void view_free(struct view *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->entries[i].path);
        free(v->entries[i].target);
    }
    free(v->entries);
    free(v->cwd);
    *v = (struct view){ 0 };
}

/* --- in the child ---------------------------------------------------------------- */

/* Creates the missing directories of path (in the new root's tmpfs). */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];

    if (strlen(path) >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(buf, path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || !*p) {
            char c = *p;

            *p = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
                return -1;
            }
            if (!(*p = c)) {
                return 0;
            }
        }
    }
}

static int make_parent_dirs(const char *path)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (slash == path) {
        return 0;
    }
    snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
    return make_dirs(parent);
}

/* An empty file or directory to bind onto, unless the path is there already. */
static int make_mount_point(const struct view_entry *e)
{
    struct stat st;
    int fd;

    if (lstat(e->path, &st) == 0) {
        return 0;
    }
    if (make_parent_dirs(e->path) < 0) {
        return -1;
    }
    if (e->dir) {
        return mkdir(e->path, 0755);
    }
    if ((fd = open(e->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        return -1;
    }
    return close(fd);
}

static int bind_entry(const struct view_entry *e)
{
    char source[PATH_MAX];
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_NOSUID | (e->writable ? 0 : MOUNT_ATTR_RDONLY) |
                    (e->exec ? 0 : MOUNT_ATTR_NOEXEC) | (e->dev ? 0 : MOUNT_ATTR_NODEV),
    };

    if ((size_t)snprintf(source, sizeof(source), HOST "%s", e->path) >= sizeof(source)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (make_mount_point(e) < 0 || mount(source, e->path, NULL, MS_BIND | MS_REC, NULL) < 0) {
        return -1;
    }
    return mount_setattr(AT_FDCWD, e->path, AT_RECURSIVE, &attr, sizeof(attr));
}

static int mount_proc(const struct view_entry *e)
{
    if (make_dirs(e->path) < 0) {
        return -1;
    }
    if (mount("proc", e->path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) < 0) {
        /* Where the host's /proc is partly hidden the kernel refuses a new one: go on without. */
        dprintf(STDERR_FILENO, "mpqemu-launch: no /proc in the remote's view: %s\n",
                strerror(errno));
    }
    return 0;
}

static int build_entry(const struct view_entry *e)
{
    switch (e->kind) {
    case VIEW_BIND:
        return bind_entry(e);
    case VIEW_SYMLINK:
        return make_parent_dirs(e->path) < 0 ? -1 : symlink(e->target, e->path);
    case VIEW_PROC:
        return mount_proc(e);
    }
    return -1;
}

/* The new root, a tmpfs, becomes "/"; the host's stays at HOST until the view is built. */
static int enter_new_root(void)
{
    if (mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") < 0 ||
        mkdir(STAGE HOST, 0700) < 0 || syscall(SYS_pivot_root, STAGE, STAGE HOST) < 0) {
        return -1;
    }
    return chdir("/");
}

static int leave_host_root(const char *cwd)
{
    struct mount_attr read_only = {
        .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                    MOUNT_ATTR_NOEXEC,
    };

    if (umount2(HOST, MNT_DETACH) < 0 || rmdir(HOST) < 0 || make_dirs(cwd) < 0) {
        return -1;
    }
    /* Nothing can be added to the view from inside. */
    if (mount_setattr(AT_FDCWD, "/", 0, &read_only, sizeof(read_only)) < 0) {
        return -1;
    }
    return chdir(cwd);
}

int view_enter(const struct view *v, const char **what)
{
    if (enter_new_root() < 0) {
        *what = "a new root for the view (tmpfs on " STAGE ", pivot_root)";
        return -1;
    }
    for (size_t i = 0; i < v->n; i++) {
        if (build_entry(&v->entries[i]) < 0) {
            *what = v->entries[i].path;
            return -1;
        }
    }
    if (leave_host_root(v->cwd) < 0) {
        *what = "leaving the host's root";
        return -1;
    }
    return 0;
}
