// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The sandbox, proved on the real binary: a serving mpqemu-remote is made
 * to attempt forbidden things by a tracer that attaches with ptrace and
 * injects the system calls, as code a guest took over would make them.
 * Confined (the default), each is refused (Landlock: EACCES) or kills the
 * process (seccomp: SIGSYS, named on stderr); with -sandbox off the same
 * calls go through, so the checks can fail.  With an NBD drive, the
 * sockets and the TCP port it reconnects with are allowed, nothing more.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

struct fixture {
    pid_t pid;
    char dir[64];
    char socket_path[96];
    char log_path[96];
    bool sandbox;
    bool pid_namespace_init;    /* the remote starts a PID namespace of its own, as its init */
    char drive[128];            /* an NBD drive's -drive, or empty */
    char nbd_pidfile[96];       /* its server's */
    unsigned nbd_port;
};

/* What an injected call came to. */
struct outcome {
    bool killed;        /* the process died of a signal */
    int signal;
    bool exited;        /* it ended by exit (a successful execve of /bin/true) */
    long result;        /* else: the call's return value (-errno) */
};

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* The remote serves mpqemu-testdev over vfio-user; its stderr goes to a file. */
static void start_remote(struct fixture *f)
{
    strcpy(f->dir, "/tmp/mpqemu-sbx-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->socket_path, sizeof(f->socket_path), "%s/s", f->dir);
    snprintf(f->log_path, sizeof(f->log_path), "%s/log", f->dir);
    /* clone() with the namespace flag is a fork into it. */
    f->pid = f->pid_namespace_init ? (pid_t)syscall(SYS_clone, SIGCHLD | CLONE_NEWPID, 0, 0, 0, 0)
                                   : fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        char object[200];
        int log = open(f->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        snprintf(object, sizeof(object),
                 "x-vfio-user-server,id=v,device=t0,socket.type=unix,socket.path=%s",
                 f->socket_path);
        dup2(log, STDERR_FILENO);
        if (f->drive[0]) {
            execl(getenv("MPQEMU_REMOTE"), "mpqemu-remote", "-device", "mpqemu-testdev,id=t0",
                  "-object", object, "-sandbox", f->sandbox ? "on" : "off",
                  "-drive", f->drive, (char *)NULL);
        } else {
            execl(getenv("MPQEMU_REMOTE"), "mpqemu-remote", "-device", "mpqemu-testdev,id=t0",
                  "-object", object, "-sandbox", f->sandbox ? "on" : "off", (char *)NULL);
        }
        _exit(127);
    }
    for (int i = 0; i < 500 && !file_exists(f->socket_path); i++) {
        usleep(10000);
    }
    assert_true(file_exists(f->socket_path));
}

/* The sandbox goes up after setup; the socket exists a moment before. */
static void wait_confined(struct fixture *f)
{
    for (int i = 0; i < 500 && proc_status_field(f->pid, "Seccomp") != 2; i++) {
        usleep(10000);
    }
}

static int setup_confined(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->sandbox = true;
    start_remote(f);
    wait_confined(f);
    *state = f;
    return 0;
}

/* As mpqemu-launch starts it: the init of its own PID namespace. */
static int setup_namespace_init(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->sandbox = true;
    f->pid_namespace_init = true;
    start_remote(f);
    wait_confined(f);
    *state = f;
    return 0;
}

static int setup_unconfined(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->sandbox = false;
    start_remote(f);
    usleep(200 * 1000);     /* past setup: serving */
    *state = f;
    return 0;
}

/* Confined, with a drive on nbdkit's memory plugin over TCP on 127.0.0.1. */
static int setup_confined_nbd(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->sandbox = true;
    f->nbd_port = 40000 + (unsigned)getpid() % 20000;
    snprintf(f->nbd_pidfile, sizeof(f->nbd_pidfile), "/tmp/mpqemu-sbx-nbd-%d.pid", (int)getpid());
    assert_int_equal(sh("nbdkit -i 127.0.0.1 -p %u -P '%s' memory 1M", f->nbd_port,
                        f->nbd_pidfile), 0);
    for (int i = 0; i < 500 && !file_exists(f->nbd_pidfile); i++) {
        usleep(10000);
    }
    snprintf(f->drive, sizeof(f->drive), "id=d0,file=nbd://127.0.0.1:%u", f->nbd_port);
    start_remote(f);
    wait_confined(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int status;

    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, &status, 0);
    }
    if (f->nbd_pidfile[0]) {
        sh("kill $(cat '%s') 2>/dev/null; rm -f '%s'", f->nbd_pidfile, f->nbd_pidfile);
    }
    sh("rm -rf '%s'", f->dir);
    free(f);
    return 0;
}

static void poke_bytes(pid_t pid, unsigned long addr, const void *data, size_t len)
{
    for (size_t i = 0; i < len; i += sizeof(long)) {
        long word = 0;

        memcpy(&word, (const char *)data + i, len - i < sizeof(long) ? len - i : sizeof(long));
        assert_int_equal(ptrace(PTRACE_POKEDATA, pid, addr + i, word), 0);
    }
}

static void poke_string(pid_t pid, unsigned long addr, const char *s)
{
    poke_bytes(pid, addr, s, strlen(s) + 1);
}

/* Stops the process; true with its registers if it stopped just after a system call. */
static bool stop_after_syscall(pid_t pid, struct user_regs_struct *regs)
{
    int status;
    long insn;

    assert_int_equal(ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD), 0);
    assert_int_equal(ptrace(PTRACE_INTERRUPT, pid, 0, 0), 0);
    assert_int_equal(waitpid(pid, &status, __WALL), pid);
    assert_true(WIFSTOPPED(status));
    assert_int_equal(ptrace(PTRACE_GETREGS, pid, 0, regs), 0);
    errno = 0;
    insn = ptrace(PTRACE_PEEKTEXT, pid, regs->rip - 2, 0);
    assert_int_equal(errno, 0);
    return (insn & 0xffff) == 0x050f;   /* the syscall instruction */
}

/*
 * Stops the serving process where it waits in epoll_wait and returns its
 * registers.  Caught elsewhere (busy-polling, a timer), it is let go and
 * stopped again a moment later.
 */
static struct user_regs_struct attach(pid_t pid)
{
    struct user_regs_struct regs;

    for (int tries = 0; !stop_after_syscall(pid, &regs); tries++) {
        assert_true(tries < 100);
        assert_int_equal(ptrace(PTRACE_DETACH, pid, 0, 0), 0);
        usleep(20 * 1000);
    }
    return regs;
}

/* The process's end, as its tracer (and parent) sees it. */
static bool ended(int status, struct outcome *o)
{
    if (WIFSIGNALED(status)) {
        o->killed = true;
        o->signal = WTERMSIG(status);
        return true;
    }
    if (WIFEXITED(status)) {
        o->exited = true;
        o->result = WEXITSTATUS(status);
        return true;
    }
    return false;
}

/*
 * Resumes the process until it ends or makes its next system call.  A
 * SIGSYS (a call the filter denied) is passed on and the process followed
 * to its end: its handler names the call and the process dies of it.
 */
static bool run_to_next_syscall(pid_t pid, struct outcome *o)
{
    int status, sig = 0;
    bool denied = false;

    for (;;) {
        assert_int_equal(ptrace(denied ? PTRACE_CONT : PTRACE_SYSCALL, pid, 0, sig), 0);
        assert_int_equal(waitpid(pid, &status, __WALL), pid);
        if (ended(status, o)) {
            return false;
        }
        if (!denied && WSTOPSIG(status) == (SIGTRAP | 0x80)) {
            return true;
        }
        sig = WSTOPSIG(status) == SIGTRAP || WSTOPSIG(status) == (SIGTRAP | 0x80)
                  ? 0 : WSTOPSIG(status);
        denied |= sig == SIGSYS;
    }
}

/*
 * Makes the process run system call nr with args (strings already poked)
 * from the syscall instruction it stopped after, then puts its registers
 * back so it goes on serving, unless the call killed or replaced it.
 */
static struct outcome inject(pid_t pid, struct user_regs_struct saved, long nr, const long *args)
{
    struct user_regs_struct regs = saved;
    struct outcome o = { 0 };
    int status;

    regs.rip = saved.rip - 2;
    regs.rax = (unsigned long)nr;
    regs.orig_rax = (unsigned long)-1;
    regs.rdi = (unsigned long)args[0];
    regs.rsi = (unsigned long)args[1];
    regs.rdx = (unsigned long)args[2];
    regs.r10 = (unsigned long)args[3];
    regs.r8 = (unsigned long)args[4];
    assert_int_equal(ptrace(PTRACE_SETREGS, pid, 0, &regs), 0);
    /* Entry, then exit of our call (a denied call exits with its SIGSYS pending). */
    if (!run_to_next_syscall(pid, &o) || !run_to_next_syscall(pid, &o)) {
        return o;
    }
    assert_int_equal(ptrace(PTRACE_GETREGS, pid, 0, &regs), 0);
    assert_int_equal((long)regs.orig_rax, nr);
    o.result = (long)regs.rax;
    if (nr == SYS_execve && o.result == 0) {
        /* Another program now: let it run to its end. */
        assert_int_equal(ptrace(PTRACE_DETACH, pid, 0, 0), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        ended(status, &o);
        return o;
    }
    /* Back into the interrupted epoll_wait; a pending SIGSYS strikes first. */
    assert_int_equal(ptrace(PTRACE_SETREGS, pid, 0, &saved), 0);
    if (run_to_next_syscall(pid, &o)) {
        assert_int_equal(ptrace(PTRACE_DETACH, pid, 0, 0), 0);
    }
    return o;
}

/*
 * Injects 'nr' into the serving remote.  args[i] is a number, or, where
 * strs[i] is set, a string put on the remote's stack below the red zone.
 */
static struct outcome run_in_remote(struct fixture *f, long nr, long args[5],
                                    const char *const strs[5])
{
    struct user_regs_struct saved = attach(f->pid);
    unsigned long scratch = (saved.rsp - 8192) & ~15ul;
    struct outcome o;

    for (int i = 0; i < 5; i++) {
        if (strs[i]) {
            poke_string(f->pid, scratch + 512 * (unsigned long)i, strs[i]);
            args[i] = (long)(scratch + 512 * (unsigned long)i);
        }
    }
    o = inject(f->pid, saved, nr, args);
    if (o.killed || o.exited) {
        f->pid = -1;        /* reaped by us, the tracer and its parent */
    }
    return o;
}

/*
 * test-sandbox --deny-call PID, for the launcher's test: makes the serving
 * remote PID call socket(AF_INET), which its filter denies, and lets it
 * go: it dies of SIGSYS as a remote a guest took over would, its parent
 * (mpqemu-launch) sees it and reports it.
 */
static int make_remote_call_socket(pid_t pid)
{
    struct user_regs_struct regs = attach(pid);

    regs.rip -= 2;
    regs.rax = SYS_socket;
    regs.orig_rax = (unsigned long)-1;
    regs.rdi = AF_INET;
    regs.rsi = SOCK_STREAM;
    regs.rdx = 0;
    assert_int_equal(ptrace(PTRACE_SETREGS, pid, 0, &regs), 0);
    assert_int_equal(ptrace(PTRACE_DETACH, pid, 0, 0), 0);
    return 0;
}

/* connect(fd, 127.0.0.1:port) made by the remote. */
static struct outcome connect_in_remote(struct fixture *f, long fd, unsigned port)
{
    struct user_regs_struct saved = attach(f->pid);
    unsigned long scratch = (saved.rsp - 8192) & ~15ul;
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

    poke_bytes(f->pid, scratch, &to, sizeof(to));
    return inject(f->pid, saved, SYS_connect, (long[5]){ fd, (long)scratch, sizeof(to) });
}

static bool log_names(struct fixture *f, const char *call)
{
    char needle[96], buf[4096] = { 0 };
    int fd = open(f->log_path, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);

    close(fd);
    snprintf(needle, sizeof(needle), "sandbox: system call %s (", call);
    return n > 0 && strstr(buf, needle);
}

static void expect_killed(struct fixture *f, struct outcome o, const char *call)
{
    assert_true(o.killed);
    assert_int_equal(o.signal, SIGSYS);
    assert_true(log_names(f, call));
}

/* /proc shows the filter and no_new_privs on the serving process. */
static void test_status_shows_the_filter(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(proc_status_field(f->pid, "Seccomp"), 2);
    assert_int_equal(proc_status_field(f->pid, "Seccomp_filters"), 1);
    assert_int_equal(proc_status_field(f->pid, "NoNewPrivs"), 1);
}

static void test_unconfined_status(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(proc_status_field(f->pid, "Seccomp"), 0);
}

/* A file outside the images: Landlock refuses it and the process serves on. */
static void test_open_outside_is_refused(void **state)
{
    struct fixture *f = *state;
    struct outcome o = run_in_remote(f, SYS_openat, (long[5]){ AT_FDCWD, 0, O_RDONLY },
                                     (const char *[5]){ NULL, "/etc/passwd" });

    if (f->sandbox) {
        assert_false(o.killed);
        assert_int_equal(o.result, -EACCES);
    } else {
        assert_true(o.result >= 0);
    }
    usleep(100 * 1000);
    assert_int_equal(kill(f->pid, 0), 0);     /* still there */
}

static void test_execve(void **state)
{
    struct fixture *f = *state;
    struct outcome o = run_in_remote(f, SYS_execve, (long[5]){ 0 },
                                     (const char *[5]){ "/bin/true" });

    if (f->sandbox) {
        expect_killed(f, o, "execve");
    } else {
        assert_true(o.exited);      /* it became /bin/true */
        assert_int_equal(o.result, 0);
    }
}

static void test_inet_socket(void **state)
{
    struct fixture *f = *state;
    struct outcome o = run_in_remote(f, SYS_socket, (long[5]){ AF_INET, SOCK_STREAM },
                                     (const char *[5]){ NULL });

    if (f->sandbox) {
        expect_killed(f, o, "socket");
    } else {
        assert_true(o.result >= 0);
    }
}

static void test_ptrace(void **state)
{
    struct fixture *f = *state;
    pid_t victim = fork();
    struct outcome o;
    int status;

    if (victim == 0) {
        pause();
        _exit(0);
    }
    o = run_in_remote(f, SYS_ptrace, (long[5]){ PTRACE_ATTACH, victim },
                      (const char *[5]){ NULL });
    if (f->sandbox) {
        expect_killed(f, o, "ptrace");
    } else {
        /* Reached the kernel: attached as root, refused otherwise. */
        assert_false(o.killed);
        assert_int_equal(o.result, geteuid() == 0 ? 0 : -EPERM);
        /* The victim's end goes to its tracer first: end the tracer. */
        kill(f->pid, SIGKILL);
        waitpid(f->pid, &status, 0);
        f->pid = -1;
    }
    kill(victim, SIGKILL);
    waitpid(victim, &status, 0);
}

static void test_mount(void **state)
{
    struct fixture *f = *state;
    char target[96];
    struct outcome o;

    snprintf(target, sizeof(target), "%s/mnt", f->dir);
    assert_int_equal(mkdir(target, 0700), 0);
    o = run_in_remote(f, SYS_mount, (long[5]){ 0 },
                      (const char *[5]){ "none", target, "tmpfs" });
    if (f->sandbox) {
        expect_killed(f, o, "mount");
    } else {
        /* Reached the kernel: mounted as root, refused otherwise. */
        assert_false(o.killed);
        assert_int_equal(o.result, geteuid() == 0 ? 0 : -EPERM);
        umount2(target, MNT_DETACH);
    }
}

/*
 * The kernel drops the signals a PID namespace's init sends itself without
 * a handler: a denied call must kill it all the same, and at once.  The
 * call is made untraced (a tracer keeps init's signals from killing it).
 */
static void test_namespace_init_dies_of_a_denied_call(void **state)
{
    struct fixture *f = *state;
    int status;

    assert_int_equal(make_remote_call_socket(f->pid), 0);
    assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
    f->pid = -1;
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSYS);
    assert_true(log_names(f, "socket"));
}

/*
 * An NBD drive's reconnecting: a TCP stream socket may be made and connect
 * to its server's port (it is refused there by nothing but the server),
 * any other port is Landlock's EACCES.
 */
static void test_nbd_connects_to_its_port_only(void **state)
{
    struct fixture *f = *state;
    const long stream = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
    struct outcome sock = run_in_remote(f, SYS_socket, (long[5]){ AF_INET, stream },
                                        (const char *[5]){ NULL });
    struct outcome o;

    assert_false(sock.killed);
    assert_true(sock.result >= 0);
    o = connect_in_remote(f, sock.result, f->nbd_port == 65535 ? 1 : f->nbd_port + 1);
    assert_false(o.killed);
    assert_int_equal(o.result, -EACCES);
    o = connect_in_remote(f, sock.result, f->nbd_port);
    assert_false(o.killed);
    assert_true(o.result == 0 || o.result == -EINPROGRESS);
}

/* Other sockets are still denied with an NBD drive: a UDP socket kills the process. */
static void test_nbd_allows_no_other_socket(void **state)
{
    struct fixture *f = *state;
    struct outcome o = run_in_remote(f, SYS_socket, (long[5]){ AF_INET, SOCK_DGRAM },
                                     (const char *[5]){ NULL });

    expect_killed(f, o, "socket");
}

int main(int argc, char **argv)
{
#define CONFINED(t) cmocka_unit_test_setup_teardown(t, setup_confined, teardown)
#define UNCONFINED(t) cmocka_unit_test_setup_teardown(t, setup_unconfined, teardown)
#define CONFINED_NBD(t) cmocka_unit_test_setup_teardown(t, setup_confined_nbd, teardown)
    const struct CMUnitTest tests[] = {
        CONFINED_NBD(test_nbd_connects_to_its_port_only),
        CONFINED_NBD(test_nbd_allows_no_other_socket),
        CONFINED(test_status_shows_the_filter),
        CONFINED(test_open_outside_is_refused),
        CONFINED(test_execve),
        CONFINED(test_inet_socket),
        CONFINED(test_ptrace),
        CONFINED(test_mount),
        cmocka_unit_test_setup_teardown(test_namespace_init_dies_of_a_denied_call,
                                        setup_namespace_init, teardown),
        UNCONFINED(test_unconfined_status),
        UNCONFINED(test_open_outside_is_refused),
        UNCONFINED(test_execve),
        UNCONFINED(test_inet_socket),
        UNCONFINED(test_ptrace),
        UNCONFINED(test_mount),
    };

    if (argc == 3 && !strcmp(argv[1], "--deny-call")) {
        return make_remote_call_socket((pid_t)atoi(argv[2]));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
