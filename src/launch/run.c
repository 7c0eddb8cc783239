// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Starting and supervising the VM's processes.  Each child gets only its
 * own fds (its sockets at 3, 4, ...; a log file for output), everything
 * else is closed.  The launcher then waits for signals and child exits:
 * SIGINT/SIGTERM go to QEMU; when QEMU exits the remotes are stopped; a
 * remote that dies is reported (exit status, last log lines) and, with
 * the "stop" policy, stops the VM.  With "restart" each remote is a keeper
 * (mpqemu-remote -restart) that restarts its device process itself: it
 * exits only when its budget is spent (reported, and the VM stopped).  At
 * the end every child is reaped and the run directory (sockets, guest
 * memory file) removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch/launch.h"

/* Exit statuses of mpqemu-launch (docs/launcher.md). */
enum {
    EXIT_VM_OK = 0, EXIT_LAUNCH_FAILED = 1, EXIT_REMOTE_DIED = 3, EXIT_QEMU_FAILED = 4,
    EXIT_INTERRUPTED = 5,
};

#define STOP_GRACE_MS 10000
#define SOCKET_WAIT_MS 20000
#define LOG_TAIL_LINES 10
#define MAX_CHILD_FDS 256     /* the plan refuses more PCI devices than this */
/* The keepers' log lines (src/remote/keeper.c) the reports quote and count. */
#define RESTART_BUDGET_SPENT "over the restart budget"
#define RESTART_STARTED "starting a new one (restart "
#define KEEPER_DIR_PREFIX ".mpqemu-keeper-"

struct child_spec {
    const struct strv *argv;
    const char *log_path;
    const int *fds;             /* handed over as 3, 4, ... */
    size_t n_fds;
    bool inherit_stdio;         /* QEMU: its console is the launcher's terminal */
    const struct confine *confine;
    const struct view *view;    /* with confine: the file system it sees */
};

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("mpqemu-launch: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* --- the child's side of a start ------------------------------------------- */

static void child_fail(const char *what)
{
    dprintf(STDERR_FILENO, "mpqemu-launch: %s: %s\n", what, strerror(errno));
    _exit(127);
}

static void child_exec(const struct child_spec *s)
{
    int log = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    int moved[MAX_CHILD_FDS];

    if (log < 0) {
        child_fail(s->log_path);
    }
    /* Out of the way first, so that placing one cannot clobber another. */
    for (size_t i = 0; i < s->n_fds && i < MAX_CHILD_FDS; i++) {
        if ((moved[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, 100)) < 0) {
            child_fail("fd");
        }
    }
    if (!s->inherit_stdio) {
        int null = open("/dev/null", O_RDONLY);

        if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(log, STDOUT_FILENO) < 0) {
            child_fail("stdio");
        }
    }
    if (dup2(log, STDERR_FILENO) < 0) {
        child_fail("stderr");
    }
    for (size_t i = 0; i < s->n_fds; i++) {
        if (dup2(moved[i], 3 + (int)i) < 0) {
            child_fail("fd");
        }
    }
    /* Only what was handed over stays open. */
    if (syscall(SYS_close_range, 3 + (unsigned)s->n_fds, ~0u, 0) < 0) {
        for (int fd = 3 + (int)s->n_fds; fd < 1024; fd++) {
            close(fd);
        }
    }
    if (s->confine && s->confine->enabled) {
        const char *what = "confinement";

        if (confine_enter(s->confine, s->view, &what) < 0) {
            child_fail(what);
        }
    }
    execvp(s->argv->v[0], s->argv->v);
    child_fail(s->argv->v[0]);
}

static pid_t start_child(const struct child_spec *s)
{
    unsigned long flags = SIGCHLD | (s->confine ? confine_clone_flags(s->confine) : 0);
    sigset_t all;
    pid_t pid;

    /* With namespaces, a fork that enters them (glibc's fork cannot). */
    pid = flags == SIGCHLD ? fork() : (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        child_exec(s);
    }
    return pid;
}

/* --- the launcher's side ------------------------------------------------------- */

struct vm_run {
    struct launch_config *c;
    pid_t qemu;
    int qemu_status;
    bool qemu_exited;
    int sigfd;
    int exit_code;
    bool stopping;
};

static void print_log_tail(const char *path)
{
    char *lines[LOG_TAIL_LINES] = { 0 }, buf[512];
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (!f) {
        return;
    }
    while (fgets(buf, sizeof(buf), f)) {
        free(lines[n % LOG_TAIL_LINES]);
        lines[n % LOG_TAIL_LINES] = strdup(buf);
        n++;
    }
    fclose(f);
    fprintf(stderr, "mpqemu-launch: last lines of %s:\n", path);
    for (size_t i = n > LOG_TAIL_LINES ? n - LOG_TAIL_LINES : 0; i < n; i++) {
        fprintf(stderr, "  | %s", lines[i % LOG_TAIL_LINES] ? lines[i % LOG_TAIL_LINES] : "\n");
    }
    for (size_t i = 0; i < LOG_TAIL_LINES; i++) {
        free(lines[i]);
    }
}

static void describe_status(char *out, size_t len, int status)
{
    if (WIFEXITED(status)) {
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(out, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(out, len, "stopped (status %#x)", status);
    }
}

static bool remotes_running(const struct launch_config *c)
{
    for (size_t i = 0; i < c->n_remotes; i++) {
        if (c->remotes[i].pid > 0 && !c->remotes[i].exited) {
            return true;
        }
    }
    return false;
}

static void signal_remotes(const struct launch_config *c, int sig)
{
    for (size_t i = 0; i < c->n_remotes; i++) {
        if (c->remotes[i].pid > 0 && !c->remotes[i].exited) {
            kill(c->remotes[i].pid, sig);
        }
    }
}

/* Stops the VM: QEMU first (it holds the other ends), then the remotes. */
static void stop_vm(struct vm_run *vm)
{
    vm->stopping = true;
    if (vm->qemu > 0 && !vm->qemu_exited) {
        kill(vm->qemu, SIGTERM);
    } else {
        signal_remotes(vm->c, SIGTERM);
    }
}

/*
 * How many lines this run of the remote wrote to its log contain needle;
 * the first of them, without its newline, in first.
 */
static unsigned log_lines_with(const struct lc_remote *r, const char *needle, char *first,
                               size_t size)
{
    FILE *f = fopen(r->log_path, "r");
    char line[512];
    unsigned n = 0;

    if (f && fseeko(f, r->log_start, SEEK_SET) < 0) {
        fclose(f);
        f = NULL;
    }
    while (f && fgets(line, (int)sizeof(line), f)) {
        if (strstr(line, needle) && n++ == 0 && first) {
            snprintf(first, size, "%.*s", (int)strcspn(line, "\n"), line);
        }
    }
    if (f) {
        fclose(f);
    }
    return n;
}

/* How a remote died, in the report: SIGSYS is its sandbox's doing, and its log says why. */
static void report_remote_death(const struct lc_remote *r, int status)
{
    char what[128], line[512];

    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS) {
        describe_status(what, sizeof(what), status);
        warn("remote '%s' (pid %d) %s", r->name, (int)r->pid, what);
    } else if (log_lines_with(r, "mpqemu-remote: sandbox: system call", line, sizeof(line))) {
        warn("remote '%s' (pid %d) was killed by its sandbox for a system call outside its "
             "allowlist: \"%s\"", r->name, (int)r->pid, line);
    } else {
        warn("remote '%s' (pid %d) was killed by signal %d (SIGSYS: its sandbox denies a "
             "system call), and its log does not name the call", r->name, (int)r->pid,
             SIGSYS);
    }
    print_log_tail(r->log_path);
}

/*
 * With restart the remote is the keeper: it exits while QEMU runs only when
 * its device process died more often than the budget allows (its log says
 * so), on a protocol fault of the VMM's side, or when it was killed itself.
 */
static void report_keeper_exit(const struct lc_remote *r, int status)
{
    char line[512];

    if (WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
        log_lines_with(r, RESTART_BUDGET_SPENT, line, sizeof(line))) {
        warn("remote '%s' (pid %d) gave up restarting its device process, over its restart "
             "budget: \"%s\"", r->name, (int)r->pid, line);
        print_log_tail(r->log_path);
    } else {
        report_remote_death(r, status);
    }
}

static void on_qemu_exit(struct vm_run *vm, int status)
{
    vm->qemu_exited = true;
    vm->qemu_status = status;
    if (!vm->stopping && (!WIFEXITED(status) || WEXITSTATUS(status))) {
        char what[128];

        describe_status(what, sizeof(what), status);
        warn("QEMU (pid %d) %s", (int)vm->qemu, what);
        print_log_tail(vm->c->qemu_log);
        if (vm->exit_code == EXIT_VM_OK) {
            vm->exit_code = EXIT_QEMU_FAILED;
        }
    }
    vm->stopping = true;
    signal_remotes(vm->c, SIGTERM);
}

/*
 * A remote exits with status 0 when its proxy hangs up, which QEMU does as it
 * quits: the remote may be reaped a moment before QEMU is.  Waits up to
 * QEMU_QUIT_GRACE_MS for QEMU before calling the remote's exit a death.
 */
#define QEMU_QUIT_GRACE_MS 2000

static void wait_briefly_for_qemu(struct vm_run *vm)
{
    const struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };
    int status;

    for (int waited = 0; waited < QEMU_QUIT_GRACE_MS && vm->qemu > 0 && !vm->qemu_exited;
         waited += 10) {
        if (waitpid(vm->qemu, &status, WNOHANG) == vm->qemu) {
            on_qemu_exit(vm, status);
            return;
        }
        nanosleep(&tick, NULL);
    }
}

static void on_remote_exit(struct vm_run *vm, struct lc_remote *r, int status)
{
    r->exited = true;
    r->status = status;
    if (!vm->stopping && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        wait_briefly_for_qemu(vm);
    }
    if (vm->stopping) {
        return;     /* expected */
    }
    vm->exit_code = EXIT_REMOTE_DIED;
    switch (vm->c->on_remote_exit) {
    case POLICY_RESTART:
        report_keeper_exit(r, status);
        warn("stopping the VM (on-remote-exit: restart, and the remote could not go on)");
        stop_vm(vm);
        break;
    case POLICY_STOP:
        report_remote_death(r, status);
        warn("stopping the VM (on-remote-exit: stop)");
        stop_vm(vm);
        break;
    case POLICY_CONTINUE:
        report_remote_death(r, status);
        warn("the VM goes on without it (on-remote-exit: continue)");
        break;
    }
}

static void reap(struct vm_run *vm)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == vm->qemu) {
            on_qemu_exit(vm, status);
            continue;
        }
        for (size_t i = 0; i < vm->c->n_remotes; i++) {
            if (vm->c->remotes[i].pid == pid) {
                on_remote_exit(vm, &vm->c->remotes[i], status);
            }
        }
    }
}

static void on_signal(struct vm_run *vm, int sig)
{
    if (sig == SIGCHLD) {
        reap(vm);
        return;
    }
    warn("%s: stopping the VM", strsignal(sig));
    if (vm->exit_code == EXIT_VM_OK) {
        vm->exit_code = EXIT_INTERRUPTED;
    }
    stop_vm(vm);
}

/* Waits for signals and children until everyone is gone (or the grace time is over). */
static void supervise(struct vm_run *vm)
{
    struct timespec stop_since = { 0 };
    bool stopping_since_set = false;

    while ((vm->qemu > 0 && !vm->qemu_exited) || remotes_running(vm->c)) {
        struct pollfd p = { .fd = vm->sigfd, .events = POLLIN };
        struct signalfd_siginfo si;

        if (poll(&p, 1, 200) > 0 && read(vm->sigfd, &si, sizeof(si)) == sizeof(si)) {
            on_signal(vm, (int)si.ssi_signo);
        }
        reap(vm);
        if (vm->stopping) {
            struct timespec now;

            clock_gettime(CLOCK_MONOTONIC, &now);
            if (!stopping_since_set) {
                stop_since = now;
                stopping_since_set = true;
            }
            if ((now.tv_sec - stop_since.tv_sec) * 1000 > STOP_GRACE_MS) {
                warn("processes did not stop in %d s: killing them", STOP_GRACE_MS / 1000);
                if (vm->qemu > 0 && !vm->qemu_exited) {
                    kill(vm->qemu, SIGKILL);
                }
                signal_remotes(vm->c, SIGKILL);
                stop_since.tv_sec = now.tv_sec;
            }
        }
    }
}

/* A socket file there is enough: a test connection would take the server's client slot. */
static bool socket_ready(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* vfio-user: QEMU connects at start, so every socket must be listening first. */
static int wait_for_sockets(struct vm_run *vm)
{
    for (int waited = 0; waited < SOCKET_WAIT_MS; waited += 20) {
        bool all = true;

        reap(vm);
        for (size_t i = 0; i < vm->c->n_remotes; i++) {
            struct lc_remote *r = &vm->c->remotes[i];

            if (r->exited) {
                return -1;
            }
            for (size_t k = 0; k < r->n_devices; k++) {
                if (r->devices[k].socket_path && !socket_ready(r->devices[k].socket_path)) {
                    all = false;
                }
            }
        }
        if (all) {
            return 0;
        }
        usleep(20000);
    }
    warn("the remotes' sockets did not appear in %d s", SOCKET_WAIT_MS / 1000);
    return -1;
}

static int make_socket_pairs(struct launch_config *c)
{
    for (size_t i = 0; i < c->n_remotes; i++) {
        for (size_t k = 0; k < c->remotes[i].n_devices; k++) {
            struct lc_device *d = &c->remotes[i].devices[k];

            if (d->pci && c->protocol == PROTO_MULTI_PROCESS &&
                socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, d->fds) < 0) {
                warn("socketpair: %s", strerror(errno));
                return -1;
            }
        }
    }
    return 0;
}

static int start_remotes(struct vm_run *vm)
{
    for (size_t i = 0; i < vm->c->n_remotes; i++) {
        struct lc_remote *r = &vm->c->remotes[i];
        int fds[MAX_CHILD_FDS];
        size_t n = 0;
        struct child_spec s = { .argv = &r->argv, .log_path = r->log_path, .fds = fds,
                                .confine = &r->confine, .view = &r->view };
        struct stat st;

        for (size_t k = 0; k < r->n_devices && n < MAX_CHILD_FDS; k++) {
            if (r->devices[k].fds[0] >= 0) {
                fds[n++] = r->devices[k].fds[0];
            }
        }
        s.n_fds = n;
        r->log_start = stat(r->log_path, &st) == 0 ? st.st_size : 0;
        r->pid = start_child(&s);
        if (r->pid < 0) {
            warn("cannot start remote '%s': %s%s", r->name, strerror(errno),
                 r->confine.new_user
                     ? " (are user namespaces disabled here? \"confine\": false runs it "
                       "unconfined)" : "");
            return -1;
        }
        /* The remote holds its ends now. */
        for (size_t k = 0; k < r->n_devices; k++) {
            if (r->devices[k].fds[0] >= 0) {
                close(r->devices[k].fds[0]);
                r->devices[k].fds[0] = -1;
            }
        }
    }
    return 0;
}

static int start_qemu(struct vm_run *vm)
{
    int fds[MAX_CHILD_FDS];
    size_t n = 0;
    struct child_spec s = { .argv = &vm->c->qemu_argv, .log_path = vm->c->qemu_log,
                            .fds = fds, .inherit_stdio = true };

    for (size_t i = 0; i < vm->c->n_remotes; i++) {
        for (size_t k = 0; k < vm->c->remotes[i].n_devices && n < MAX_CHILD_FDS; k++) {
            if (vm->c->remotes[i].devices[k].fds[1] >= 0) {
                fds[n++] = vm->c->remotes[i].devices[k].fds[1];
            }
        }
    }
    s.n_fds = n;
    vm->qemu = start_child(&s);
    for (size_t i = 0; i < vm->c->n_remotes; i++) {
        for (size_t k = 0; k < vm->c->remotes[i].n_devices; k++) {
            int *fd = &vm->c->remotes[i].devices[k].fds[1];

            if (*fd >= 0) {
                close(*fd);
                *fd = -1;
            }
        }
    }
    if (vm->qemu < 0) {
        warn("cannot start QEMU: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Gives the confined user the run and log directories. */
static int prepare_dirs(struct launch_config *c)
{
    if (mkdir(c->run_dir, 0700) < 0) {
        warn("cannot create %s: %s", c->run_dir, strerror(errno));
        return -1;
    }
    if (mkdir(c->log_dir, 0750) < 0 && errno != EEXIST) {
        warn("cannot create %s: %s", c->log_dir, strerror(errno));
        return -1;
    }
    if (c->confine.enabled && c->confine.user) {
        if (chown(c->run_dir, c->confine.uid, c->confine.gid) < 0 ||
            chown(c->log_dir, c->confine.uid, c->confine.gid) < 0) {
            warn("confine: cannot give %s to '%s': %s", c->run_dir, c->confine.user,
                 strerror(errno));
            return -1;
        }
    }
    if (c->memory_path && access(c->memory_path, F_OK) != 0) {
        c->created_memory_file = true;
    }
    return 0;
}

/*
 * A keeper killed before it could clean up leaves its device process's
 * socket directory in the run directory: removed without following a link
 * the remote may have put there.
 */
static void remove_keeper_dirs(const char *run_dir)
{
    int dir_fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = dir_fd >= 0 ? fdopendir(dir_fd) : NULL;
    struct dirent *de;

    while (d && (de = readdir(d))) {
        int fd;
        DIR *sub;
        struct dirent *e;

        if (strncmp(de->d_name, KEEPER_DIR_PREFIX, strlen(KEEPER_DIR_PREFIX)) ||
            (fd = openat(dir_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                         O_CLOEXEC)) < 0) {
            continue;
        }
        if (!(sub = fdopendir(fd))) {
            close(fd);
            continue;
        }
        while ((e = readdir(sub))) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                unlinkat(fd, e->d_name, 0);
            }
        }
        closedir(sub);
        unlinkat(dir_fd, de->d_name, AT_REMOVEDIR);
    }
    if (d) {
        closedir(d);
    } else if (dir_fd >= 0) {
        close(dir_fd);
    }
}

/* With restart: how often each remote's device process came back, from its keeper's log. */
static void report_restarts(const struct launch_config *c)
{
    for (size_t i = 0; c->on_remote_exit == POLICY_RESTART && i < c->n_remotes; i++) {
        unsigned n = log_lines_with(&c->remotes[i], RESTART_STARTED, NULL, 0);

        if (n) {
            warn("remote '%s': its device process was restarted %u time%s (%s)",
                 c->remotes[i].name, n, n == 1 ? "" : "s", c->remotes[i].log_path);
        }
    }
}

static void cleanup(struct launch_config *c)
{
    for (size_t i = 0; i < c->n_remotes; i++) {
        for (size_t k = 0; k < c->remotes[i].n_devices; k++) {
            struct lc_device *d = &c->remotes[i].devices[k];

            if (d->socket_path) {
                unlink(d->socket_path);
            }
            for (int e = 0; e < 2; e++) {
                if (d->fds[e] >= 0) {
                    close(d->fds[e]);
                    d->fds[e] = -1;
                }
            }
        }
    }
    if (c->created_memory_file) {
        unlink(c->memory_path);
    }
    remove_keeper_dirs(c->run_dir);
    if (rmdir(c->run_dir) < 0 && errno != ENOENT) {
        warn("%s is not empty; left in place: %s", c->run_dir, strerror(errno));
    }
}

static int block_signals(struct vm_run *vm)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    vm->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return vm->sigfd < 0 ? -1 : 0;
}

int run_vm(struct launch_config *c)
{
    struct vm_run vm = { .c = c, .qemu = -1, .sigfd = -1 };

    /* The children inherit it, keepers' device processes too. */
    if (c->cpus && sched_setaffinity(0, sizeof(c->cpu_set), &c->cpu_set) < 0) {
        warn("cannot run on CPUs %s: %s", c->cpus, strerror(errno));
        return EXIT_LAUNCH_FAILED;
    }
    if (block_signals(&vm) < 0 || prepare_dirs(c) < 0) {
        return EXIT_LAUNCH_FAILED;
    }
    if (make_socket_pairs(c) < 0 || start_remotes(&vm) < 0 ||
        (c->protocol == PROTO_VFIO_USER && wait_for_sockets(&vm) < 0) ||
        start_qemu(&vm) < 0) {
        reap(&vm);
        if (vm.exit_code == EXIT_VM_OK) {
            vm.exit_code = EXIT_LAUNCH_FAILED;
        }
        stop_vm(&vm);
    } else {
        warn("VM started: QEMU pid %d, %zu remote process%s, logs in %s", (int)vm.qemu,
             c->n_remotes, c->n_remotes == 1 ? "" : "es", c->log_dir);
    }
    supervise(&vm);
    if (vm.exit_code == EXIT_VM_OK && vm.qemu_exited &&
        (!WIFEXITED(vm.qemu_status) || WEXITSTATUS(vm.qemu_status))) {
        vm.exit_code = EXIT_QEMU_FAILED;
    }
    report_restarts(c);
    cleanup(c);
    close(vm.sigfd);
    return vm.exit_code;
}
