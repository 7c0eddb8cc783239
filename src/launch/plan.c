// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * From the VM description to command lines: which protocol (what the QEMU
 * binary offers, and its accelerator), the remotes' -object options for
 * their sockets, and QEMU's proxies and shared guest memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch/launch.h"
#include "monitor/chardev-spec.h"
#include "util/error.h"

/* Fds handed to a child start here, in the order of its devices. */
#define FIRST_CHILD_FD 3
/*
 * With restart, a vfio-user keeper puts its device process's sockets in
 * RUN_DIR/.mpqemu-keeper-XXXXXX (src/remote/keeper.c: 80 bytes at most,
 * else /tmp, which a minimal view has not got).
 */
#define KEEPER_DIR_MAX 79
#define KEEPER_DIR_SUFFIX "/.mpqemu-keeper-XXXXXX"

char *qemu_path(const struct launch_config *c, const char *host_path, char **err)
{
    size_t n;

    if (!c->qemu_root) {
        return strdup(host_path);
    }
    n = strlen(c->qemu_root);
    while (n > 1 && c->qemu_root[n - 1] == '/') {
        n--;
    }
    if (strncmp(host_path, c->qemu_root, n) || (host_path[n] != '/' && host_path[n])) {
        error_setf(err, "'%s' is outside qemu-root '%s', where QEMU cannot see it", host_path,
                   c->qemu_root);
        return NULL;
    }
    return strdup(host_path[n] ? host_path + n : "/");
}

/* What "QEMU -device help" lists: bit 0 vfio-user-pci, bit 1 x-pci-proxy-dev. */
static int probe_qemu(const struct launch_config *c, char **err)
{
    struct strv argv = { 0 };
    char buf[65536];
    size_t len = 0;
    int pipefd[2], status, found = 0;
    pid_t pid;

    for (size_t i = 0; i < c->qemu.n; i++) {
        strv_add(&argv, c->qemu.v[i]);
    }
    strv_add(&argv, "-device");
    strv_add(&argv, "help");
    if (pipe2(pipefd, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
        error_setf(err, "cannot run %s: %s", c->qemu.v[0], strerror(errno));
        strv_free(&argv);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(pipefd[1], STDERR_FILENO);
        execvp(argv.v[0], argv.v);
        _exit(127);
    }
    close(pipefd[1]);
    for (;;) {
        struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
        ssize_t n;

        if (poll(&p, 1, 20000) <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        n = read(pipefd[0], buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        if (len == sizeof(buf) - 1) {
            break;
        }
    }
    buf[len] = 0;
    close(pipefd[0]);
    waitpid(pid, &status, 0);
    strv_free(&argv);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        error_setf(err, "'%s -device help' failed%s", c->qemu.v[0],
                   WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (not found)" : "");
        return -1;
    }
    if (strstr(buf, "name \"vfio-user-pci\"")) {
        found |= 1;
    }
    if (strstr(buf, "name \"x-pci-proxy-dev\"")) {
        found |= 2;
    }
    return found;
}

static bool uses_kvm(const struct launch_config *c)
{
    return c->accel && !strncmp(c->accel, "kvm", 3);
}

/*
 * The original design's protocol needs KVM: QEMU's x-pci-proxy-dev delivers
 * interrupts only through KVM irqfds.  Without KVM auto takes vfio-user; the
 * multi-process protocol asked for by name runs, for guests that poll.
 */
static int choose_protocol(struct launch_config *c, bool dry_run, char **err)
{
    int found;

    if (dry_run && c->protocol != PROTO_AUTO) {
        return 0;
    }
    if ((found = probe_qemu(c, err)) < 0) {
        return -1;
    }
    if (c->protocol == PROTO_AUTO) {
        if ((found & 2) && uses_kvm(c)) {
            c->protocol = PROTO_MULTI_PROCESS;
        } else if (found & 1) {
            c->protocol = PROTO_VFIO_USER;
        } else if (found & 2) {
            error_setf(err, "%s offers only x-pci-proxy-dev, which delivers interrupts only "
                       "with KVM: use accel kvm, or a QEMU >= 10.1 (vfio-user-pci)",
                       c->qemu.v[0]);
            return -1;
        } else {
            error_setf(err, "%s supports neither vfio-user-pci nor x-pci-proxy-dev",
                       c->qemu.v[0]);
            return -1;
        }
    } else if (c->protocol == PROTO_VFIO_USER && !(found & 1)) {
        error_setf(err, "%s has no vfio-user-pci (QEMU >= 10.1 has)", c->qemu.v[0]);
        return -1;
    } else if (c->protocol == PROTO_MULTI_PROCESS && !(found & 2)) {
        error_setf(err, "%s has no x-pci-proxy-dev (QEMU >= 6.0 has)", c->qemu.v[0]);
        return -1;
    } else if (c->protocol == PROTO_MULTI_PROCESS && !uses_kvm(c)) {
        fprintf(stderr, "mpqemu-launch: warning: without KVM x-pci-proxy-dev delivers no "
                "interrupt: the guest must poll for them (Linux: irqpoll nolapic)\n");
    }
    return 0;
}

static char *default_remote_binary(void)
{
    char self[PATH_MAX], *slash, *path;
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    if (n > 0) {
        self[n] = 0;
        slash = strrchr(self, '/');
        if (slash && asprintf(&path, "%.*s/mpqemu-remote", (int)(slash - self), self) > 0) {
            if (access(path, X_OK) == 0) {
                return path;
            }
            free(path);
        }
    }
    return strdup("mpqemu-remote");
}

static int set_defaults(struct launch_config *c, char **err)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    if (!c->qemu.n && strv_add(&c->qemu, "qemu-system-x86_64") < 0) {
        goto oom;
    }
    if ((!c->remote_binary && !(c->remote_binary = default_remote_binary())) ||
        (!c->machine && !(c->machine = strdup("pc"))) ||
        (!c->accel && !(c->accel = strdup("tcg"))) ||
        (!c->memory && !(c->memory = strdup("512M")))) {
        goto oom;
    }
    if (!c->run_dir && asprintf(&c->run_dir, "%s%s/mpqemu-launch-%d",
                                c->qemu_root ? c->qemu_root : "",
                                c->qemu_root ? "/tmp" : tmp, (int)getpid()) < 0) {
        c->run_dir = NULL;
        goto oom;
    }
    /* It goes into option strings and QEMU's JSON device argument unquoted. */
    if (c->run_dir[strcspn(c->run_dir, "\",\\")]) {
        error_setf(err, "run-dir '%s' must not contain '\"', ',' or '\\'", c->run_dir);
        return -1;
    }
    if (!c->log_dir && asprintf(&c->log_dir, "%s/mpqemu-launch-%d-logs", tmp,
                                (int)getpid()) < 0) {
        c->log_dir = NULL;
        goto oom;
    }
    return 0;
oom:
    error_setf(err, "out of memory");
    return -1;
}

/* An option of args ("-name" or "--name") is name. */
static bool is_option(const char *arg, const char *name)
{
    return arg[0] == '-' && !strcmp(arg + 1 + (arg[1] == '-'), name);
}

/*
 * A keeper restarts the device process with the remote's own options: a
 * monitor that waits for its client would hold every restart until one
 * connects, and -restart is the launcher's to give.
 */
static int check_restart_args(const struct lc_remote *r, char **err)
{
    for (size_t i = 0; i < r->args.n; i++) {
        bool server, wait;

        if (is_option(r->args.v[i], "restart")) {
            error_setf(err, "\"args\" must not give -restart: \"on-remote-exit\": \"restart\" "
                       "gives it, with the description's \"restart\" budget");
            return -1;
        }
        if ((is_option(r->args.v[i], "qmp") || is_option(r->args.v[i], "monitor")) &&
            i + 1 < r->args.n) {
            const char *spec = r->args.v[++i];

            if (chardev_spec_flags(spec, &server, &wait, err) < 0) {
                return -1;
            }
            if (server && wait) {
                error_setf(err, "monitor '%s' waits for a client: each restart of the device "
                           "process would wait for one too; add ,nowait", spec);
                return -1;
            }
        }
    }
    return 0;
}

/* A confined vfio-user keeper's private directory must fit beside the sockets. */
static int check_keeper_dir(const struct launch_config *c, char **err)
{
    if (c->protocol != PROTO_VFIO_USER || !c->confine.enabled || !c->confine.minimal_view ||
        strlen(c->run_dir) + strlen(KEEPER_DIR_SUFFIX) <= KEEPER_DIR_MAX) {
        return 0;
    }
    error_setf(err, "run-dir '%s' is too long for on-remote-exit restart over vfio-user: the "
               "keeper's private sockets go in a directory beside the remote's, at most %zu "
               "characters for the run directory (set a shorter \"run-dir\")", c->run_dir,
               (size_t)KEEPER_DIR_MAX - strlen(KEEPER_DIR_SUFFIX));
    return -1;
}

static int plan_remote(struct launch_config *c, struct lc_remote *r, bool dry_run, char **err)
{
    int fd = FIRST_CHILD_FD, object = 0;

    if (c->on_remote_exit == POLICY_RESTART &&
        (check_restart_args(r, err) < 0 || check_keeper_dir(c, err) < 0)) {
        return -1;
    }
    strv_add(&r->argv, c->remote_binary);
    for (size_t i = 0; i < r->drives.n; i++) {
        strv_add(&r->argv, "-drive");
        strv_add(&r->argv, r->drives.v[i]);
    }
    for (size_t i = 0; i < r->n_devices; i++) {
        strv_add(&r->argv, "-device");
        strv_add(&r->argv, r->devices[i].text);
    }
    for (size_t i = 0; i < r->n_devices; i++) {
        struct lc_device *d = &r->devices[i];

        if (!d->pci) {
            continue;
        }
        strv_add(&r->argv, "-object");
        if (c->protocol == PROTO_VFIO_USER) {
            if (asprintf(&d->socket_path, "%s/%s.sock", c->run_dir, d->id) < 0) {
                d->socket_path = NULL;
                error_setf(err, "out of memory");
                return -1;
            }
            strv_addf(&r->argv, "x-vfio-user-server,id=vfu%d,device=%s,socket.type=unix,"
                      "socket.path=%s", object++, d->id, d->socket_path);
        } else {
            strv_addf(&r->argv, "x-remote-object,id=rmt%d,devid=%s,fd=%d", object++, d->id,
                      fd++);
        }
    }
    if (c->on_remote_exit == POLICY_RESTART) {
        strv_add(&r->argv, "-restart");
        strv_addf(&r->argv, "on,max=%u,window=%u", c->restart.max, c->restart.window);
    }
    for (size_t i = 0; i < r->media_dirs.n; i++) {
        strv_add(&r->argv, "-sandbox");
        strv_add(&r->argv, r->media_dirs.v[i]);
    }
    for (size_t i = 0; i < r->args.n; i++) {
        strv_add(&r->argv, r->args.v[i]);
    }
    if (asprintf(&r->log_path, "%s/%s.log", c->log_dir, r->name) < 0) {
        r->log_path = NULL;
        error_setf(err, "out of memory");
        return -1;
    }
    r->confine = c->confine;
    r->confine.new_net &= !r->host_network;
    if (r->confine.enabled &&
        view_plan(&r->view, &r->confine, r->argv.v, c->run_dir, !dry_run, err) < 0) {
        return -1;
    }
    return 0;
}

static int add_mapped(struct launch_config *c, const char *opt, const char *host, char **err)
{
    char *p = qemu_path(c, host, err);

    if (!p) {
        return -1;
    }
    strv_add(&c->qemu_argv, opt);
    strv_add(&c->qemu_argv, p);
    free(p);
    return 0;
}

static int plan_qemu(struct launch_config *c, char **err)
{
    int fd = FIRST_CHILD_FD;

    for (size_t i = 0; i < c->qemu.n; i++) {
        strv_add(&c->qemu_argv, c->qemu.v[i]);
    }
    strv_add(&c->qemu_argv, "-machine");
    strv_addf(&c->qemu_argv, "%s,memory-backend=mem", c->machine);
    strv_add(&c->qemu_argv, "-accel");
    strv_add(&c->qemu_argv, c->accel);
    strv_add(&c->qemu_argv, "-m");
    strv_add(&c->qemu_argv, c->memory);
    /* The remotes reach guest memory by its fd: it must be shared. */
    strv_add(&c->qemu_argv, "-object");
    if (c->memory_path) {
        char *p = qemu_path(c, c->memory_path, err);

        if (!p) {
            return -1;
        }
        strv_addf(&c->qemu_argv, "memory-backend-file,id=mem,size=%s,mem-path=%s,share=on",
                  c->memory, p);
        free(p);
    } else {
        strv_addf(&c->qemu_argv, "memory-backend-memfd,id=mem,size=%s,share=on", c->memory);
    }
    if ((c->kernel && add_mapped(c, "-kernel", c->kernel, err) < 0) ||
        (c->initrd && add_mapped(c, "-initrd", c->initrd, err) < 0)) {
        return -1;
    }
    if (c->append) {
        strv_add(&c->qemu_argv, "-append");
        strv_add(&c->qemu_argv, c->append);
    }
    for (size_t i = 0; i < c->qemu_args.n; i++) {
        strv_add(&c->qemu_argv, c->qemu_args.v[i]);
    }
    for (size_t i = 0; i < c->n_remotes; i++) {
        for (size_t k = 0; k < c->remotes[i].n_devices; k++) {
            struct lc_device *d = &c->remotes[i].devices[k];
            char *p;

            if (!d->pci) {
                continue;
            }
            strv_add(&c->qemu_argv, "-device");
            if (c->protocol == PROTO_MULTI_PROCESS) {
                strv_addf(&c->qemu_argv, "x-pci-proxy-dev,id=%s,fd=%d", d->id, fd++);
                continue;
            }
            if (!(p = qemu_path(c, d->socket_path, err))) {
                return -1;
            }
            strv_addf(&c->qemu_argv, "{\"driver\":\"vfio-user-pci\",\"id\":\"%s\","
                      "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}", d->id, p);
            free(p);
        }
    }
    if (asprintf(&c->qemu_log, "%s/qemu.log", c->log_dir) < 0) {
        c->qemu_log = NULL;
        error_setf(err, "out of memory");
        return -1;
    }
    return 0;
}

static int check_devices(const struct launch_config *c, char **err)
{
    size_t pci = 0;

    for (size_t i = 0; i < c->n_remotes; i++) {
        for (size_t k = 0; k < c->remotes[i].n_devices; k++) {
            pci += c->remotes[i].devices[k].pci;
        }
    }
    if (pci > 200) {
        error_setf(err, "%zu PCI devices: at most 200 (each needs a socket)", pci);
        return -1;
    }
    for (size_t i = 0; i < c->n_remotes; i++) {
        for (size_t k = 0; k < c->remotes[i].n_devices; k++) {
            const char *id = c->remotes[i].devices[k].id;

            for (size_t j = 0; j <= i; j++) {
                for (size_t l = 0; l < (j == i ? k : c->remotes[j].n_devices); l++) {
                    if (!strcmp(c->remotes[j].devices[l].id, id)) {
                        error_setf(err, "device id '%s' is used twice", id);
                        return -1;
                    }
                }
            }
            if (strchr(id, '"') || strchr(id, '\\') || strchr(id, ',') || strchr(id, '/')) {
                error_setf(err, "device id '%s' has characters ids cannot have", id);
                return -1;
            }
        }
    }
    return 0;
}

int plan_build(struct launch_config *c, bool dry_run, char **err)
{
    if (c->cpus && cpu_list_parse(c->cpus, &c->cpu_set, err) < 0) {
        error_prefix(err, "\"cpus\"");
        return -1;
    }
    if (set_defaults(c, err) < 0 || confine_plan(&c->confine, err) < 0 ||
        check_devices(c, err) < 0 || choose_protocol(c, dry_run, err) < 0) {
        return -1;
    }
    if (c->protocol == PROTO_AUTO) {
        c->protocol = PROTO_VFIO_USER;  /* --dry-run without a QEMU to ask */
    }
    for (size_t i = 0; i < c->n_remotes; i++) {
        if (plan_remote(c, &c->remotes[i], dry_run, err) < 0) {
            error_prefix(err, "remote '%s'", c->remotes[i].name);
            return -1;
        }
    }
    return plan_qemu(c, err);
}

/* Shell-quotes an argument when it needs it, so the printed line can be pasted. */
static void print_arg(FILE *out, const char *a)
{
    if (*a && !a[strcspn(a, " \t\n\"'\\$`{}*?[]<>|&;()#~")]) {
        fputs(a, out);
        return;
    }
    fputc('\'', out);
    for (; *a; a++) {
        if (*a == '\'') {
            fputs("'\\''", out);
        } else {
            fputc(*a, out);
        }
    }
    fputc('\'', out);
}

static void print_argv(FILE *out, const struct strv *argv)
{
    for (size_t i = 0; i < argv->n; i++) {
        if (i) {
            fputc(' ', out);
        }
        print_arg(out, argv->v[i]);
    }
    fputc('\n', out);
}

void plan_print(const struct launch_config *c, FILE *out)
{
    fprintf(out, "# protocol: %s\n",
            c->protocol == PROTO_MULTI_PROCESS ? "multi-process" : "vfio-user");
    if (c->cpus) {
        fprintf(out, "# cpus: %s (QEMU and every remote process)\n", c->cpus);
    }
    for (size_t i = 0; i < c->n_remotes; i++) {
        const struct lc_remote *r = &c->remotes[i];

        fprintf(out, "# remote %s (log %s)", r->name, r->log_path);
        if (c->protocol == PROTO_MULTI_PROCESS) {
            int fd = FIRST_CHILD_FD;

            for (size_t k = 0; k < r->n_devices; k++) {
                if (r->devices[k].pci) {
                    fprintf(out, "%s fd %d: socket pair with QEMU for %s",
                            fd == FIRST_CHILD_FD ? ";" : ",", fd, r->devices[k].id);
                    fd++;
                }
            }
        }
        fputc('\n', out);
        if (r->confine.enabled && c->confine.new_net && r->host_network) {
            fputs("# network: the host's (\"network\": \"host\")\n", out);
        }
        if (c->on_remote_exit == POLICY_RESTART) {
            fprintf(out, "# on-remote-exit restart: this process is the keeper of QEMU's "
                    "connections; it restarts its device process at most %u times in %u s, "
                    "then the VM is stopped\n", c->restart.max, c->restart.window);
        }
        if (r->view.n) {
            view_print(&r->view, out);
        }
        print_argv(out, &r->argv);
    }
    fprintf(out, "# qemu (log %s)\n", c->qemu_log);
    print_argv(out, &c->qemu_argv);
}
