// SPDX-License-Identifier: GPL-2.0-or-later
#include "remote/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <linux/landlock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "util/error.h"
#include "util/log.h"
#include "util/opts.h"

/* Landlock beyond the build's kernel headers (ABI 3 to 6); the ABI is asked at run time. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define NET_BIND_TCP (1ULL << 0)
#define NET_CONNECT_TCP (1ULL << 1)
#define RULE_NET_PORT 2     /* LANDLOCK_RULE_NET_PORT */

/* struct landlock_net_port_attr (ABI 4), beyond the build's kernel headers. */
struct net_port_rule {
    uint64_t allowed_access;
    uint64_t port;
} __attribute__((packed));
#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define SCOPE_SIGNAL (1ULL << 1)

/* struct landlock_ruleset_attr as of ABI 6; older kernels take a prefix of it. */
struct ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

enum path_use { USE_READ, USE_READ_WRITE, USE_MEDIA_DIR, USE_MEDIA_DIR_RW, USE_REMOVE,
                USE_EXECUTE };

struct allowed_path {
    char *path;
    enum path_use use;
};

struct sandbox {
    bool enabled;
    struct allowed_path *paths;
    size_t n_paths;
    /* Network drives reconnect: the socket families and TCP ports they connect to. */
    uint32_t connect_families;  /* bit (1 << AF_*) */
    uint16_t tcp_ports[8];
    size_t n_tcp_ports;
    /* Filled by sandbox_enter(). */
    bool entered;
    int landlock_abi;           /* 0: the kernel has none */
    unsigned n_calls;           /* system calls the filter allows */
};

/*
 * The serving loop's system calls, and why each is there.  Calls whose
 * arguments are checked as well are listed with the check.
 */
enum arg_check {
    ANY_ARGS,
    NO_EXEC_MAPPING,            /* mmap, mprotect: never PROT_EXEC */
    FD_FLAGS_ONLY,              /* fcntl: F_GETFD, F_SETFD, F_GETFL, F_SETFL */
    SIZE_IOCTLS_ONLY,           /* ioctl: BLKGETSIZE64, BLKSSZGET, TCGETS */
    SELF_ONLY,                  /* kill, tgkill: this process */
    CONNECT_FAMILIES_ONLY,      /* socket: stream sockets of the families network drives use */
    SO_ERROR_ONLY,              /* getsockopt: SOL_SOCKET, SO_ERROR */
    TCP_NODELAY_ONLY,           /* setsockopt: IPPROTO_TCP, TCP_NODELAY */
    DUPFD_CLOEXEC_ONLY,         /* fcntl: F_DUPFD_CLOEXEC */
};

struct allowed_call {
    const char *name;
    enum arg_check check;
    const char *why;
};

static const struct allowed_call allowed_calls[] = {
    { "epoll_wait", ANY_ARGS, "the event loop waits for its sockets, eventfds and timers" },
    { "epoll_pwait", ANY_ARGS, "the same, as some libc versions call it" },
    { "epoll_ctl", ANY_ARGS, "a connection or monitor client comes or goes, output backs up" },
    { "poll", ANY_ARGS,
      "a vfio-user DMA reply is awaited on the client's socket; NBD metadata I/O waits; a "
      "tick looks whether the VMM's eventfd being written is full" },
    { "ppoll", ANY_ARGS, "the same, as some libc versions call it" },
    { "read", ANY_ARGS, "timerfds, signalfd, monitor clients" },
    { "preadv2", ANY_ARGS,
      "the VMM's eventfds, with RWF_NOWAIT: never waits, whatever flags the VMM sets on them" },
    { "write", ANY_ARGS, "interrupt eventfds, monitor output, the log on stderr" },
    { "timer_settime", ANY_ARGS,
      "ticks while writes to the VMM's eventfds go on: a write it made block ends" },
    { "timer_create", ANY_ARGS,
      "once, at the first interrupt: the timer of those ticks, aimed at this thread (no "
      "timer_delete: eventfd.c deletes it at a thread's exit, and the remote's one thread "
      "ends only with the process)" },
    { "readv", ANY_ARGS, "monitor clients" },
    { "writev", ANY_ARGS, "replies and log lines in one call" },
    { "recvmsg", ANY_ARGS, "protocol messages with their fds (memory, eventfds)" },
    { "sendmsg", ANY_ARGS, "protocol replies and requests" },
    { "recvfrom", ANY_ARGS, "recv() on sockets" },
    { "sendto", ANY_ARGS, "send() on sockets" },
    { "accept4", ANY_ARGS, "a vfio-user client or a monitor client connects" },
    { "close", ANY_ARGS, "fds that messages carried, clients that left" },
    { "io_uring_enter", ANY_ARGS,
      "disk I/O; the ring only takes read, write, fsync and fallocate (registered restrictions)" },
    { "pread64", ANY_ARGS, "qcow2 metadata, compressed clusters" },
    { "pwrite64", ANY_ARGS, "qcow2 metadata" },
    { "pwritev", ANY_ARGS,
      "small page-cache writes the loop makes itself (block/aio.c): io_uring hands them to a "
      "worker thread" },
    { "fdatasync", ANY_ARGS, "flush before acknowledging a flush, and at exit" },
    { "fsync", ANY_ARGS, "the same, where fdatasync is not enough" },
    { "fallocate", ANY_ARGS, "qcow2 grows its file" },
    { "ftruncate", ANY_ARGS, "block_resize of a raw image, qcow2 growth" },
    { "openat", ANY_ARGS, "a medium change opens an image (Landlock decides which)" },
    { "unlink", ANY_ARGS, "our own sockets at exit (Landlock decides which)" },
    { "unlinkat", ANY_ARGS, "the same" },
    { "newfstatat", ANY_ARGS, "fstat() of an image being opened, of received fds" },
    { "fstat", ANY_ARGS, "the same, as some libc versions call it" },
    { "statx", ANY_ARGS, "the same" },
    { "fstatfs", ANY_ARGS,
      "the filesystem of an image being opened: whether the loop may write to it itself "
      "(block/file-posix.c); an fd a message carries is an anonymous inode (an eventfd's)" },
    { "lseek", ANY_ARGS, "libc's stdio" },
    { "readlink", ANY_ARGS, "an fd a message carries is checked to be an eventfd (/proc/self/fd)" },
    { "ioctl", SIZE_IOCTLS_ONLY, "the size of a block device opened as a new medium; isatty" },
    { "fcntl", FD_FLAGS_ONLY, "non-blocking and close-on-exec flags of new connections" },
    { "mmap", NO_EXEC_MAPPING, "guest memory the VMM shares, and malloc" },
    { "mprotect", NO_EXEC_MAPPING, "malloc" },
    { "munmap", ANY_ARGS, "guest memory unmapped, and malloc" },
    { "mremap", ANY_ARGS, "realloc of large buffers" },
    { "madvise", ANY_ARGS, "malloc returning memory" },
    { "brk", ANY_ARGS, "malloc" },
    { "timerfd_settime", ANY_ARGS, "the vfio-user INTx re-signal delay; NBD reconnect attempts" },
    { "timerfd_gettime", ANY_ARGS, "the same" },
    { "clock_gettime", ANY_ARGS, "timestamps, poll budgets (outside the vDSO)" },
    { "gettimeofday", ANY_ARGS, "the same" },
    { "clock_nanosleep", ANY_ARGS, "libc sleeps" },
    { "nanosleep", ANY_ARGS, "the same" },
    { "getrandom", ANY_ARGS, "json-c's hash seeds (QMP)" },
    { "futex", ANY_ARGS, "libc's internal locks" },
    { "rt_sigaction", ANY_ARGS,
      "the SIGBUS guard of copies into guest memory re-arms; the eventfd write ticks' handler" },
    { "rt_sigprocmask", ANY_ARGS,
      "signal masks around the SIGBUS guard; the eventfd ticks' signal unblocked" },
    { "rt_sigreturn", ANY_ARGS, "return from the SIGBUS, tick and SIGSYS handlers" },
    { "sigaltstack", ANY_ARGS, "sanitizer runtimes" },
    { "restart_syscall", ANY_ARGS, "interrupted waits resume" },
    { "getpid", ANY_ARGS, "raise() names this process" },
    { "gettid", ANY_ARGS, "the same" },
    { "tgkill", SELF_ONLY, "raise(): a fault outside a guarded copy, or a denied call, ends us" },
    { "kill", SELF_ONLY, "the same" },
    { "exit", ANY_ARGS, "the process ends" },
    { "exit_group", ANY_ARGS, "the same" },
};

/* Allowed only when a network drive (NBD) is configured: it reconnects. */
static const struct allowed_call connect_calls[] = {
    { "socket", CONNECT_FAMILIES_ONLY,
      "a new connection to the NBD server: stream sockets of its families only" },
    { "connect", ANY_ARGS, "the same (Landlock: the server's TCP port only)" },
    { "getsockopt", SO_ERROR_ONLY, "SO_ERROR: how a non-blocking connect ended" },
    { "setsockopt", TCP_NODELAY_ONLY, "TCP_NODELAY on the new connection" },
    { "fcntl", DUPFD_CLOEXEC_ONLY,
      "F_DUPFD_CLOEXEC: the loop watches a copy of the new connection's socket of its own, "
      "removed before it is closed (libnbd closes its fd itself, and epoll would keep "
      "watching a socket another process still holds: block/file-nbd.c)" },
};

enum {
    N_ALLOWED_CALLS = sizeof(allowed_calls) / sizeof(allowed_calls[0]),
    N_CONNECT_CALLS = sizeof(connect_calls) / sizeof(connect_calls[0]),
    MAX_CALL_NR = 512,
};

/*
 * Whether the connect call 'c' is a call the serving loop already has with
 * other arguments (fcntl): one system call, listed and counted once.
 */
static bool also_a_serving_call(const struct allowed_call *c)
{
    for (size_t i = 0; i < N_ALLOWED_CALLS; i++) {
        if (!strcmp(allowed_calls[i].name, c->name)) {
            return true;
        }
    }
    return false;
}

/* --- options ---------------------------------------------------------------- */

struct sandbox *sandbox_new(void)
{
    struct sandbox *sb = calloc(1, sizeof(*sb));

    if (sb) {
        sb->enabled = true;     /* as the design promises: confined unless told otherwise */
    }
    return sb;
}

void sandbox_free(struct sandbox *sb)
{
    if (!sb) {
        return;
    }
    for (size_t i = 0; i < sb->n_paths; i++) {
        free(sb->paths[i].path);
    }
    free(sb->paths);
    free(sb);
}

bool sandbox_enabled(const struct sandbox *sb)
{
    return sb->enabled;
}

static int add_path(struct sandbox *sb, const char *path, enum path_use use, char **err)
{
    struct allowed_path *grown = realloc(sb->paths, (sb->n_paths + 1) * sizeof(*grown));
    char *copy = strdup(path);

    if (!grown || !copy) {
        free(copy);
        if (grown) {
            sb->paths = grown;
        }
        error_setf(err, "out of memory");
        return -1;
    }
    sb->paths = grown;
    sb->paths[sb->n_paths++] = (struct allowed_path){ copy, use };
    return 0;
}

static int add_media_dir(struct sandbox *sb, struct opts *o, const char *key,
                         enum path_use use, char **err)
{
    const char *dir = opts_get(o, key);
    struct stat st;

    if (!dir) {
        return 0;
    }
    if (stat(dir, &st) < 0) {
        error_setf(err, "-sandbox %s=%s: %s", key, dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        error_setf(err, "-sandbox %s=%s: not a directory", key, dir);
        return -1;
    }
    return add_path(sb, dir, use, err);
}

int sandbox_parse(struct sandbox *sb, const char *text, char **err)
{
    struct opts *o;
    const char *state;
    int r = -1;

    if (!strcmp(text, "help") || !strcmp(text, "?")) {
        sandbox_print_help(stdout);
        return 1;
    }
    if (!(o = opts_parse(text, "enable", err))) {
        return -1;
    }
    state = opts_get(o, "enable");
    if (state && parse_bool(state, &sb->enabled) < 0) {
        error_setf(err, "-sandbox: '%s' is not on or off", state);
    } else if (add_media_dir(sb, o, "allow-dir", USE_MEDIA_DIR, err) == 0 &&
               add_media_dir(sb, o, "allow-dir-rw", USE_MEDIA_DIR_RW, err) == 0 &&
               opts_check_all_used(o, "-sandbox", err) == 0) {
        r = 0;
    }
    opts_free(o);
    return r;
}

int sandbox_allow_file(struct sandbox *sb, const char *path, bool writable, char **err)
{
    return add_path(sb, path, writable ? USE_READ_WRITE : USE_READ, err);
}

int sandbox_allow_connect(struct sandbox *sb, int family, uint16_t tcp_port, char **err)
{
    bool known = false;

    if (family != AF_UNIX && family != AF_INET && family != AF_INET6) {
        error_setf(err, "sandbox: socket family %d is not one a drive connects with", family);
        return -1;
    }
    sb->connect_families |= 1u << family;
    for (size_t i = 0; i < sb->n_tcp_ports; i++) {
        known |= sb->tcp_ports[i] == tcp_port;
    }
    if (!tcp_port || known) {
        return 0;
    }
    if (sb->n_tcp_ports == sizeof(sb->tcp_ports) / sizeof(sb->tcp_ports[0])) {
        error_setf(err, "sandbox: drives connect to more than %zu TCP ports", sb->n_tcp_ports);
        return -1;
    }
    sb->tcp_ports[sb->n_tcp_ports++] = tcp_port;
    return 0;
}

int sandbox_allow_removal(struct sandbox *sb, const char *path, char **err)
{
    char *dir = strdup(path), *slash;
    int r;

    if (!dir) {
        error_setf(err, "out of memory");
        return -1;
    }
    slash = strrchr(dir, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    r = add_path(sb, dir, USE_REMOVE, err);
    free(dir);
    return r;
}

/* --- Landlock ------------------------------------------------------------------ */

static int landlock_version(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

    return abi < 0 ? 0 : (int)abi;
}

/* Every file-system right this kernel knows: all of them are handled, so denied by default. */
static uint64_t handled_fs(int abi)
{
    uint64_t fs = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;   /* ABI 1 */

    if (abi >= 2) {
        fs |= LANDLOCK_ACCESS_FS_REFER;
    }
    if (abi >= 3) {
        fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    }
    if (abi >= 5) {
        fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    }
    return fs;
}

static uint64_t rights_of(enum path_use use)
{
    const uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_IOCTL_DEV;
    const uint64_t write = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE;

    switch (use) {
    case USE_READ: return read;
    case USE_READ_WRITE: return read | write;
    case USE_MEDIA_DIR: return read | LANDLOCK_ACCESS_FS_READ_DIR;
    case USE_MEDIA_DIR_RW: return read | write | LANDLOCK_ACCESS_FS_READ_DIR;
    case USE_REMOVE: return LANDLOCK_ACCESS_FS_REMOVE_FILE;
    case USE_EXECUTE: return LANDLOCK_ACCESS_FS_EXECUTE;
    }
    return 0;
}

static const char *use_name(enum path_use use)
{
    static const char *const names[] = {
        [USE_READ] = "read-only", [USE_READ_WRITE] = "read-write",
        [USE_MEDIA_DIR] = "media, read-only", [USE_MEDIA_DIR_RW] = "media, read-write",
        [USE_REMOVE] = "remove our sockets", [USE_EXECUTE] = "execute",
    };
    return names[use];
}

static int add_landlock_rule(int ruleset, const struct allowed_path *p, uint64_t handled,
                             char **err)
{
    struct landlock_path_beneath_attr rule = { .allowed_access = rights_of(p->use) & handled };
    int fd;
    int r;

    if (!rule.allowed_access) {
        return 0;   /* it grants nothing this domain handles (the keeper's: execute only) */
    }
    fd = open(p->path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        error_setf(err, "sandbox: %s: %s", p->path, strerror(errno));
        return -1;
    }
    rule.parent_fd = fd;
    r = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
    if (r < 0) {
        error_setf(err, "sandbox: Landlock rule for %s (%s): %s", p->path, use_name(p->use),
                   strerror(errno));
    }
    close(fd);
    return r;
}

/* This TCP port may be bound (a tcp: monitor) or connected to (a network drive's server). */
static int add_port_rule(int ruleset, uint16_t port, uint64_t access, char **err)
{
    struct net_port_rule rule = { .allowed_access = access, .port = port };

    if (syscall(SYS_landlock_add_rule, ruleset, RULE_NET_PORT, &rule, 0) < 0) {
        error_setf(err, "sandbox: Landlock rule for TCP port %u: %s", port, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * One Landlock domain for good: the rights handled are denied but where a
 * path's rule grants them (every file-system right, or for the keeper only
 * 'execute'); TCP is handled, with a bind rule per port in 'ports'; signals
 * and abstract sockets are scoped.  Where the kernel has no Landlock,
 * 'unconfined' is said once and nothing is done.
 */
static int landlock_domain(struct sandbox *sb, bool execute_only, const uint16_t *ports,
                           size_t n_ports, const char *unconfined, char **err)
{
    struct ruleset_attr attr = { 0 };
    int ruleset, r = 0;

    sb->landlock_abi = landlock_version();
    if (!sb->landlock_abi) {
        log_warn("sandbox: this kernel has no Landlock; %s", unconfined);
        return 0;
    }
    attr.handled_access_fs = execute_only ? LANDLOCK_ACCESS_FS_EXECUTE
                                          : handled_fs(sb->landlock_abi);
    if (sb->landlock_abi >= 4) {
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP;   /* no rule: none at all */
    }
    if (sb->landlock_abi >= 6) {
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL;
    }
    ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
    if (ruleset < 0) {
        error_setf(err, "sandbox: Landlock ruleset: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sb->n_paths && r == 0; i++) {
        r = add_landlock_rule(ruleset, &sb->paths[i], attr.handled_access_fs, err);
    }
    for (size_t i = 0; i < n_ports && r == 0 && sb->landlock_abi >= 4; i++) {
        r = add_port_rule(ruleset, ports[i], NET_BIND_TCP, err);
    }
    for (size_t i = 0; i < sb->n_tcp_ports && r == 0 && sb->landlock_abi >= 4; i++) {
        r = add_port_rule(ruleset, sb->tcp_ports[i], NET_CONNECT_TCP, err);
    }
    if (r == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) < 0) {
        error_setf(err, "sandbox: Landlock: %s", strerror(errno));
        r = -1;
    }
    close(ruleset);
    return r;
}

static int enter_landlock(struct sandbox *sb, char **err)
{
    return landlock_domain(sb, false, NULL, 0,
                           "file access is not confined (system calls still are)", err);
}

/* --- seccomp ------------------------------------------------------------------- */

/* Names of system calls, resolved before the filter: the SIGSYS handler may not allocate. */
static const char *call_names[MAX_CALL_NR];

static void write_str(const char *s)
{
    ssize_t unused = write(STDERR_FILENO, s, strlen(s));

    (void)unused;
}

static void on_denied_call(int sig, siginfo_t *info, void *uctx)
{
    int nr = info->si_syscall;
    char num[16], *p = num + sizeof(num) - 1;
    unsigned v = nr < 0 ? 0 : (unsigned)nr;

    (void)uctx;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    write_str("mpqemu-remote: sandbox: system call ");
    write_str(nr >= 0 && nr < MAX_CALL_NR && call_names[nr] ? call_names[nr] : "?");
    write_str(" (");
    write_str(p);
    write_str(") is not allowed; exiting\n");
    /*
     * Die of it.  raise() does not do for the init of a PID namespace (as
     * mpqemu-launch starts us): the kernel drops the signals it sends itself
     * without a handler, and the denied call would return.  The SIGSYS the
     * kernel forces on a denied call with the default action it does not
     * drop, so make one: getppid is never allowed.
     */
    signal(sig, SIG_DFL);
    syscall(SYS_getppid);
    raise(sig);
    _exit(128 + sig);
}

static void resolve_call_names(void)
{
    for (int nr = 0; nr < MAX_CALL_NR; nr++) {
        if (!call_names[nr]) {
            call_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        }
    }
}

/*
 * An argument comparison with every field set: libseccomp's SCMP_A* macros
 * leave datum_b out, which clang's -Wmissing-field-initializers refuses.
 */
static struct scmp_arg_cmp arg_eq(unsigned arg, scmp_datum_t value)
{
    return (struct scmp_arg_cmp){ .arg = arg, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0 };
}

/* (argument & mask) == value */
static struct scmp_arg_cmp arg_masked_eq(unsigned arg, scmp_datum_t mask, scmp_datum_t value)
{
    return (struct scmp_arg_cmp){ .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask,
                                  .datum_b = value };
}

static int allow_socket_families(scmp_filter_ctx ctx, int nr, uint32_t families)
{
    const scmp_datum_t stream = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;   /* as libnbd asks */
    int r = 0;

    for (int family = 0; family < 32 && r == 0; family++) {
        if (families & (1u << family)) {
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 2, arg_eq(0, family),
                                 arg_eq(1, stream));
        }
    }
    return r;
}

static int allow_call(scmp_filter_ctx ctx, const struct allowed_call *c, uint32_t families)
{
    int nr = seccomp_syscall_resolve_name(c->name);
    scmp_datum_t self = (scmp_datum_t)getpid();

    if (nr == __NR_SCMP_ERROR) {
        return 1;       /* not a call of this architecture (fstat on some): nothing to allow */
    }
    switch (c->check) {
    case ANY_ARGS:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    case NO_EXEC_MAPPING:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                arg_masked_eq(2, PROT_EXEC, 0));
    case SELF_ONLY:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, arg_eq(0, self));
    case FD_FLAGS_ONLY: {
        static const int cmds[] = { F_GETFD, F_SETFD, F_GETFL, F_SETFL };
        int r = 0;

        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]) && r == 0; i++) {
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, arg_eq(1, cmds[i]));
        }
        return r;
    }
    case SIZE_IOCTLS_ONLY: {
        static const unsigned long reqs[] = { BLKGETSIZE64, BLKSSZGET, TCGETS };
        int r = 0;

        for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]) && r == 0; i++) {
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, arg_eq(1, reqs[i]));
        }
        return r;
    }
    case CONNECT_FAMILIES_ONLY:
        return allow_socket_families(ctx, nr, families);
    case SO_ERROR_ONLY:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 2, arg_eq(1, SOL_SOCKET),
                                arg_eq(2, SO_ERROR));
    case TCP_NODELAY_ONLY:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 2, arg_eq(1, IPPROTO_TCP),
                                arg_eq(2, TCP_NODELAY));
    case DUPFD_CLOEXEC_ONLY:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, arg_eq(1, F_DUPFD_CLOEXEC));
    }
    return -EINVAL;
}

/* Loads the filter built in 'ctx' unless building it failed ('r' < 0), and frees it. */
static int load_filter(scmp_filter_ctx ctx, int r, const char *what, char **err)
{
    if (r >= 0) {
        r = seccomp_load(ctx);
    }
    if (ctx) {
        seccomp_release(ctx);
    }
    if (r < 0) {
        error_setf(err, "sandbox: %s: %s", what, strerror(-r));
        return -1;
    }
    return 0;
}

static int enter_seccomp(struct sandbox *sb, char **err)
{
    struct sigaction sa = { .sa_sigaction = on_denied_call, .sa_flags = SA_SIGINFO };
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    int r = ctx ? 0 : -ENOMEM;

    resolve_call_names();
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSYS, &sa, NULL);
    sb->n_calls = 0;
    for (size_t i = 0; i < N_ALLOWED_CALLS && r >= 0; i++) {
        r = allow_call(ctx, &allowed_calls[i], 0);
        sb->n_calls += r == 0;
    }
    for (size_t i = 0; i < N_CONNECT_CALLS && r >= 0 && sb->connect_families; i++) {
        r = allow_call(ctx, &connect_calls[i], sb->connect_families);
        sb->n_calls += r == 0 && !also_a_serving_call(&connect_calls[i]);
    }
    return load_filter(ctx, r, "seccomp filter", err);
}

/*
 * In sanitizer builds, LeakSanitizer's check at exit traces the process
 * (clone, ptrace, /proc), which the sandbox denies: a confined process
 * skips it.  The tests look for leaks in runs with -sandbox off.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif

#ifdef SANITIZER_BUILD
static bool confined;

int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return confined;
}
#define NOTE_CONFINED() (confined = true)
#else
#define NOTE_CONFINED() ((void)0)
#endif

int sandbox_enter(struct sandbox *sb, char **err)
{
    if (!sb->enabled) {
        return 0;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        error_setf(err, "sandbox: no_new_privs: %s", strerror(errno));
        return -1;
    }
    if (enter_landlock(sb, err) < 0 || enter_seccomp(sb, err) < 0) {
        return -1;
    }
    sb->entered = true;
    NOTE_CONFINED();
    return 0;
}

/* --- the keeper ---------------------------------------------------------------------- */

/*
 * System calls the keeper and everything it starts never make: seccomp's
 * kill, for the keeper and, inherited, for every device process (which
 * confines itself further once set up).
 */
static const char *const keeper_denied_calls[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
    "chroot", "unshare", "setns", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "bpf", "keyctl", "add_key", "request_key",
    "perf_event_open", "userfaultfd", "swapon", "swapoff", "reboot", "acct",
    "settimeofday", "clock_settime", "open_by_handle_at", "name_to_handle_at",
    "fanotify_init", "iopl", "ioperm", "quotactl", "personality",
};

/* The files mapped executable here: this binary, its loader and libraries. */
static int allow_mapped_executables(struct sandbox *sb, char **err)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 128];
    int r = 0;

    if (!maps) {
        error_setf(err, "sandbox: /proc/self/maps: %s", strerror(errno));
        return -1;
    }
    while (r == 0 && fgets(line, sizeof(line), maps)) {
        char perms[8], *path = strchr(line, '/');
        bool known = false;

        if (sscanf(line, "%*s %7s", perms) != 1 || !strchr(perms, 'x') || !path) {
            continue;
        }
        path[strcspn(path, "\n")] = '\0';
        for (size_t i = 0; i < sb->n_paths; i++) {
            known |= !strcmp(sb->paths[i].path, path);
        }
        if (!known && strstr(path, " (deleted)") == NULL) {
            r = add_path(sb, path, USE_EXECUTE, err);
        }
    }
    fclose(maps);
    return r;
}

/* The device process's tcp: monitors bind their ports; nothing else touches TCP. */
static int keeper_landlock(struct sandbox *sb, const uint16_t *ports, size_t n_ports, char **err)
{
    return landlock_domain(sb, true, ports, n_ports,
                           "what the keeper may execute is not confined", err);
}

static int keeper_seccomp(char **err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int r = ctx ? 0 : -ENOMEM;

    for (size_t i = 0; r >= 0 && i < sizeof(keeper_denied_calls) / sizeof(*keeper_denied_calls);
         i++) {
        int nr = seccomp_syscall_resolve_name(keeper_denied_calls[i]);

        if (nr != __NR_SCMP_ERROR) {
            r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, nr, 0);
        }
    }
    return load_filter(ctx, r, "the keeper's seccomp filter", err);
}

int sandbox_enter_keeper(struct sandbox *sb, const uint16_t *tcp_ports, size_t n_ports,
                         char **err)
{
    if (!sb->enabled) {
        return 0;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        error_setf(err, "sandbox: no_new_privs: %s", strerror(errno));
        return -1;
    }
    if (allow_mapped_executables(sb, err) < 0 || keeper_landlock(sb, tcp_ports, n_ports, err) < 0 ||
        keeper_seccomp(err) < 0) {
        return -1;
    }
    sb->entered = true;
    NOTE_CONFINED();
    return 0;
}

/* --- what is enforced -------------------------------------------------------- */

static struct json_object *tcp_ports_json(const struct sandbox *sb)
{
    struct json_object *ports = json_object_new_array();

    for (size_t i = 0; i < sb->n_tcp_ports; i++) {
        json_object_array_add(ports, json_object_new_int(sb->tcp_ports[i]));
    }
    return ports;
}

struct json_object *sandbox_describe(const struct sandbox *sb)
{
    struct json_object *o = json_object_new_object(), *calls = json_object_new_array();
    struct json_object *paths = json_object_new_array(), *landlock;

    json_object_object_add(o, "enabled", json_object_new_boolean(sb->enabled));
    json_object_object_add(o, "enforced", json_object_new_boolean(sb->entered));
    for (size_t i = 0; i < N_ALLOWED_CALLS; i++) {
        json_object_array_add(calls, json_object_new_string(allowed_calls[i].name));
    }
    for (size_t i = 0; i < N_CONNECT_CALLS && sb->connect_families; i++) {
        if (!also_a_serving_call(&connect_calls[i])) {
            json_object_array_add(calls, json_object_new_string(connect_calls[i].name));
        }
    }
    json_object_object_add(o, "syscalls", calls);
    json_object_object_add(o, "syscalls-allowed", json_object_new_int((int)sb->n_calls));
    json_object_object_add(o, "denied-syscall", json_object_new_string("kill (SIGSYS)"));
    if (sb->entered && !sb->landlock_abi) {
        landlock = NULL;
        json_object_put(paths);
    } else {
        landlock = json_object_new_object();
        for (size_t i = 0; i < sb->n_paths; i++) {
            struct json_object *p = json_object_new_object();

            json_object_object_add(p, "path", json_object_new_string(sb->paths[i].path));
            json_object_object_add(p, "access",
                                   json_object_new_string(use_name(sb->paths[i].use)));
            json_object_array_add(paths, p);
        }
        json_object_object_add(landlock, "abi", json_object_new_int(sb->landlock_abi));
        json_object_object_add(landlock, "paths", paths);
        json_object_object_add(landlock, "tcp-denied",
                               json_object_new_boolean(sb->landlock_abi >= 4));
        json_object_object_add(landlock, "tcp-connect-ports", tcp_ports_json(sb));
    }
    json_object_object_add(o, "landlock", landlock);
    return o;
}

void sandbox_print_help(FILE *out)
{
    int abi = landlock_version();

    fprintf(out,
            "-sandbox on|off[,allow-dir=PATH][,allow-dir-rw=PATH]   (default: on)\n"
            "\n"
            "Once set up, mpqemu-remote confines itself before serving:\n"
            "  seccomp: %zu system calls allowed; any other kills the process (SIGSYS)\n"
            "  Landlock (this kernel: %s): images (read-only ones read-only),\n"
            "    allow-dir (media changes, read-only), allow-dir-rw (read-write),\n"
            "    the directories of our sockets (removed at exit); no TCP bind or connect\n"
            "\nallowed system calls:\n",
            (size_t)N_ALLOWED_CALLS, abi ? "ABI available" : "not available");
    for (size_t i = 0; i < N_ALLOWED_CALLS; i++) {
        fprintf(out, "  %-16s %s\n", allowed_calls[i].name, allowed_calls[i].why);
    }
    fprintf(out, "\nand with an NBD drive (it reconnects; Landlock: connect to its TCP port):\n");
    for (size_t i = 0; i < N_CONNECT_CALLS; i++) {
        fprintf(out, "  %-16s %s\n", connect_calls[i].name, connect_calls[i].why);
    }
    if (abi) {
        fprintf(out, "\nLandlock ABI %d\n", abi);
    }
}
