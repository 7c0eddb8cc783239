// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The `nbd` file driver: an export of an NBD server, through libnbd.
 *
 * libnbd runs on our event loop: the loop watches the handle's socket in
 * the direction nbd_aio_get_direction() asks and calls
 * nbd_aio_notify_read/write(); requests go out as nbd_aio_* commands, many
 * in flight, and complete through completion callbacks.  Only the
 * connection made while opening (at setup) waits; metadata I/O
 * (pread/pwrite/sync, for qcow2) waits in poll() as it does on a file.
 *
 * When the server goes away the requests in flight and those that come
 * wait; the driver connects again (to the address resolved at open, never
 * resolving names in the loop) and sends them again.  After
 * file.reconnect-delay seconds without a server they fail with EIO, and so
 * does new I/O until a connection is back (a handshake that never ends
 * too: the attempt is given up after OPEN_TIMEOUT_S for the next).  A
 * write completes only when the server acknowledged it, a flush only after
 * the server's flush.
 *
 * A server that comes back may offer less than the one the drive was
 * opened on (no FUA, no FLUSH, no WRITE_ZEROES): how each command goes
 * is decided when it is sent, from the connection it goes out on, so that
 * libnbd never refuses a flag we chose.  A writethrough write goes with
 * FUA, else followed by a flush; on an export that had a write cache (a
 * connection to it offered FLUSH or FUA), a connection offering neither
 * cannot make anything stable, and such writes and flushes fail with EIO
 * rather than being acknowledged as stable (logged once, at the
 * reconnection).
 */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drivers.h"
#include "block/nbd-target.h"
#include "util/error.h"
#include "util/guarded-copy.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/opts.h"

enum {
    /* Below Linux's 30 s SCSI command timeout: the guest does not abort first. */
    DEFAULT_RECONNECT_DELAY_S = 15,
    MAX_RECONNECT_DELAY_S = 3600,
    MAX_COMMANDS_IN_FLIGHT = 64,
    /* What servers take when they do not say (the NBD protocol's advice). */
    DEFAULT_MAX_PAYLOAD = 32 << 20,
    MAX_ZERO_COMMAND = 1 << 30,
    ZERO_BUFFER_SIZE = 1 << 20,
    RETRY_FIRST_MS = 50,
    OPEN_TIMEOUT_S = 30,
    RETRY_MAX_MS = 1000,
};

enum conn_state { CONN_CONNECTING, CONN_READY, CONN_WAITING };

struct nbd_req;

struct nbd_file {
    struct blk_file base;
    struct nbd_target target;
    char *uri;                      /* base.name */
    uint64_t reconnect_delay_ns;
    /* Where the server is, resolved once, at open. */
    struct addrinfo *addrs;         /* TCP */
    struct addrinfo *addr;          /* the one tried next */
    struct sockaddr_un unix_addr;
    /* The connection. */
    struct nbd_handle *h;
    enum conn_state state;
    struct loop_watch watch;        /* our copy of the handle's socket; fd -1 when not watched */
    int watched_fd;                 /* the handle's fd that copy was made of; -1: none */
    ino_t watched_ino;              /* the socket's inode */
    int timer_fd;                   /* the next connection attempt, or the reconnect deadline */
    struct loop_watch timer_watch;
    uint64_t down_since_ns;         /* when the server went away; 0 while connected */
    uint64_t next_attempt_ns;
    uint64_t attempt_deadline_ns;   /* the attempt connecting now is given up then */
    unsigned retry_ms;
    uint64_t connected_ns;          /* when the last connection was made */
    struct log_ratelimit flaps;     /* outages of connections that served under a second */
    bool quiet;                     /* this outage's lines are past that rate limit */
    bool failing;                   /* down past reconnect-delay: I/O fails until reconnected */
    bool refused;                   /* a server was refused since the connection was lost */
    /* The export, as the first handshake found it. */
    uint64_t size;
    /* What a connection to it offered, ever: FLUSH or FUA, it has a write cache. */
    bool had_flush, had_fua, had_zero;
    /* What the current connection offers. */
    bool can_flush, can_fua, can_zero;
    uint32_t max_payload;
    /* Requests. */
    struct nbd_req *queue_head, *queue_tail;    /* to send (again) */
    struct nbd_req *settled_head, *settled_tail; /* commands done, seen outside libnbd's lock */
    struct nbd_req *done_head, *done_tail;      /* finished, done() not yet called */
    struct loop_bh done_bh;
    unsigned active;                /* accepted, not yet finished */
    unsigned commands_in_flight;
    uint8_t *zeros;                 /* writes zeros where the server has no WRITE_ZEROES */
    struct aio_drainer drainer;     /* the process's aio_drain() waits for our I/O too */
    bool drainer_added;
};

/* One blk_io, or one synchronous metadata access, cut into NBD commands. */
struct nbd_req {
    struct nbd_file *nf;
    struct blk_io *io;              /* NULL: synchronous (sync_done, result) */
    enum blk_op op;
    uint64_t offset, len;
    struct iovec *iov;
    int iovcnt;
    struct iovec own_iov;           /* the buffer of a synchronous access */
    bool fua;                       /* writethrough: each write with FUA (as sent) */
    bool flush_after;               /* writethrough without FUA: a flush once written (as sent) */
    bool flushing;                  /* that flush is in flight */
    bool sent_before;               /* lost with a connection once: goes through bounce */
    bool issuing;                   /* commands are being sent: do not settle yet */
    void *bounce;
    unsigned pending;               /* commands in flight */
    unsigned completed;             /* commands libnbd completed, ever */
    int error;                      /* the first error the server gave */
    bool lost;                      /* a command died with the connection */
    bool sync_done;
    int result;
    struct nbd_req *next;
};

static struct nbd_file *nbd_of(const struct blk_file *f)
{
    return (struct nbd_file *)((char *)f - offsetof(struct nbd_file, base));
}

static bool claims_nbd(const char *filename)
{
    return nbd_is_uri(filename);
}

/* --- the request lists ------------------------------------------------------ */

static void push(struct nbd_req **head, struct nbd_req **tail, struct nbd_req *r)
{
    r->next = NULL;
    if (*tail) {
        (*tail)->next = r;
    } else {
        *head = r;
    }
    *tail = r;
}

static struct nbd_req *pop(struct nbd_req **head, struct nbd_req **tail)
{
    struct nbd_req *r = *head;

    if (r) {
        *head = r->next;
        if (!*head) {
            *tail = NULL;
        }
    }
    return r;
}

/* Calls done() of the finished requests; from the loop (or a drain), never from libnbd. */
static bool deliver_finished(struct nbd_file *nf)
{
    bool any = false;
    struct nbd_req *r;

    while ((r = pop(&nf->done_head, &nf->done_tail))) {
        struct blk_io *io = r->io;
        int result = r->result;

        free(r);
        io->done(io, result);
        any = true;
    }
    return any;
}

static void deliver_done(void *opaque)
{
    deliver_finished(opaque);
}

static void finish(struct nbd_req *r, int result)
{
    struct nbd_file *nf = r->nf;

    if (result >= 0 && r->bounce && r->op == BLK_READ &&
        iov_from_buf(r->iov, r->iovcnt, 0, r->bounce, r->len) < 0) {
        result = -EFAULT;   /* guest memory went away under the copy */
    }
    free(r->bounce);
    r->bounce = NULL;
    r->result = result;
    nf->active--;
    if (!r->io) {
        r->sync_done = true;
        return;
    }
    push(&nf->done_head, &nf->done_tail, r);
    loop_bh_schedule(blk_file_loop(&nf->base), &nf->done_bh);
}

/* --- commands ----------------------------------------------------------------- */

/* libnbd fails the commands of a dead connection with ENOTCONN, which no server sends. */
static bool connection_lost(int err)
{
    return err == ENOTCONN;
}

static bool is_connected(struct nbd_handle *h)
{
    return nbd_aio_is_ready(h) || nbd_aio_is_processing(h);
}

static bool is_gone(struct nbd_handle *h)
{
    return nbd_aio_is_dead(h) || nbd_aio_is_closed(h);
}

static void issue(struct nbd_file *nf, struct nbd_req *r);

/* Every command of the request's current step has finished; never under libnbd's lock. */
static void settle(struct nbd_req *r)
{
    struct nbd_file *nf = r->nf;

    if (r->error) {
        finish(r, r->error);
    } else if (r->lost) {
        free(r->bounce);
        r->bounce = NULL;
        r->sent_before = true;
        r->flushing = false;
        push(&nf->queue_head, &nf->queue_tail, r);
    } else if (r->flush_after && !r->flushing) {
        r->flushing = true;
        issue(nf, r);
    } else {
        finish(r, 0);
    }
}

static void settle_all(struct nbd_file *nf)
{
    struct nbd_req *r;

    while ((r = pop(&nf->settled_head, &nf->settled_tail))) {
        settle(r);
    }
}

/*
 * libnbd calls it holding the handle's lock, where no nbd_* call may be
 * made: it only notes the result; settle_all() acts on it after.
 */
static int on_command_done(void *opaque, int *error)
{
    struct nbd_req *r = opaque;
    struct nbd_file *nf = r->nf;

    nf->commands_in_flight--;
    r->pending--;
    r->completed++;
    if (*error && connection_lost(*error)) {
        r->lost = true;
    } else if (*error && !r->error) {
        r->error = -*error;
    }
    if (!r->pending && !r->issuing) {
        push(&nf->settled_head, &nf->settled_tail, r);
    }
    return 1;   /* retire the command */
}

enum command { CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_ZERO };

static void send_command(struct nbd_file *nf, struct nbd_req *r, enum command cmd, void *buf,
                         uint64_t len, uint64_t offset, uint32_t flags)
{
    nbd_completion_callback cb = { .callback = on_command_done, .user_data = r };
    unsigned before = r->pending, completed = r->completed;
    int64_t cookie = -1;
    int err;

    /* Counted first: libnbd may complete the command before the call returns. */
    r->pending++;
    nf->commands_in_flight++;
    switch (cmd) {
    case CMD_READ:
        cookie = nbd_aio_pread(nf->h, buf, len, offset, cb, 0);
        break;
    case CMD_WRITE:
        cookie = nbd_aio_pwrite(nf->h, buf, len, offset, cb, flags);
        break;
    case CMD_FLUSH:
        cookie = nbd_aio_flush(nf->h, cb, 0);
        break;
    case CMD_ZERO:
        cookie = nbd_aio_zero(nf->h, len, offset, cb, flags);
        break;
    }
    if (cookie >= 0) {
        return;
    }
    /*
     * The call failed.  Refused, the command never was; but when the
     * connection died while libnbd sent it, libnbd (1.14) completed it
     * (ENOTCONN), with every other command in flight, and failed the call
     * too.  Counted once more, the request waited for a command that was
     * no more: it never finished.
     */
    if (r->completed - completed <= before) {
        r->pending--;
        nf->commands_in_flight--;
    }
    err = nbd_get_errno();
    if (is_gone(nf->h)) {
        r->lost = true;
    } else if (!r->error) {
        log_warn("%s: %s", nf->uri, nbd_get_error());
        r->error = err ? -err : -EIO;
    }
}

static uint32_t write_flags(const struct nbd_req *r)
{
    return r->fua ? LIBNBD_CMD_FLAG_FUA : 0;
}

static bool drive_writethrough(const struct nbd_file *nf)
{
    return nf->base.cache == DRIVE_CACHE_WRITETHROUGH || nf->base.cache == DRIVE_CACHE_DIRECTSYNC;
}

/* Whether the request writes, on a drive whose writes are stable when acknowledged. */
static bool writethrough(const struct nbd_file *nf, const struct nbd_req *r)
{
    bool writes = r->op == BLK_WRITE || r->op == BLK_WRITE_ZEROES || r->op == BLK_DISCARD;

    return writes && drive_writethrough(nf);
}

/*
 * The export has a write cache (a connection to it offered FLUSH or FUA)
 * and this connection offers no way to empty it.
 */
static bool cannot_make_stable(const struct nbd_file *nf)
{
    return (nf->had_flush || nf->had_fua) && !nf->can_flush && !nf->can_fua;
}

/*
 * How a request's writes are made stable on the connection they are about
 * to go out on (decided at each send: a request sent again after a
 * reconnection may find other flags): FUA, else a flush after them, else
 * nothing, which is stable only for an export without a write cache.  0,
 * or -EIO when the export has a cache and this server offers no way to
 * empty it (QEMU would send the flush-less write and call it stable).
 */
static int choose_stability(const struct nbd_file *nf, struct nbd_req *r)
{
    bool stable = writethrough(nf, r);

    r->fua = stable && nf->can_fua;
    r->flush_after = stable && !nf->can_fua && nf->can_flush;
    return stable && cannot_make_stable(nf) ? -EIO : 0;
}

/* A buffer of the request's length, the data to write copied in (guarded: guest memory). */
static int make_bounce(struct nbd_req *r)
{
    if (!(r->bounce = malloc(r->len))) {
        return -ENOMEM;
    }
    if (r->op == BLK_WRITE && iov_to_buf(r->iov, r->iovcnt, 0, r->bounce, r->len) < 0) {
        return -EFAULT;
    }
    return 0;
}

static bool iov_aligned(const struct iovec *iov, int n, unsigned align)
{
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len % align) {
            return false;
        }
    }
    return true;
}

/*
 * Guest memory goes to the socket without a copy, one command per iovec
 * piece.  Through a copy instead: with TLS (gnutls reads and writes the
 * buffer with the CPU, unguarded), for pieces not in whole blocks, and for
 * a request sent again (guest memory that vanished then fails the request,
 * not the connection once more).
 */
static bool needs_bounce(const struct nbd_file *nf, const struct nbd_req *r)
{
    return nf->target.tls || r->sent_before || !iov_aligned(r->iov, r->iovcnt, nf->base.align);
}

static void issue_transfer(struct nbd_file *nf, struct nbd_req *r)
{
    enum command cmd = r->op == BLK_READ ? CMD_READ : CMD_WRITE;
    uint32_t flags = cmd == CMD_WRITE ? write_flags(r) : 0;
    uint64_t at = r->offset;
    int err;

    if (needs_bounce(nf, r)) {
        if ((err = make_bounce(r)) < 0) {
            r->error = err;
            return;
        }
        for (uint64_t done = 0; done < r->len && !r->lost && !r->error;) {
            uint64_t n = r->len - done < nf->max_payload ? r->len - done : nf->max_payload;

            send_command(nf, r, cmd, (char *)r->bounce + done, n, at + done, flags);
            done += n;
        }
        return;
    }
    for (int i = 0; i < r->iovcnt && !r->lost && !r->error; i++) {
        for (size_t done = 0; done < r->iov[i].iov_len && !r->lost && !r->error;) {
            size_t n = r->iov[i].iov_len - done;

            n = n < nf->max_payload ? n : nf->max_payload;
            send_command(nf, r, cmd, (char *)r->iov[i].iov_base + done, n, at, flags);
            done += n;
            at += n;
        }
    }
}

/*
 * Zeros, for WRITE_ZEROES (kept allocated: NO_HOLE) and DISCARD (the
 * server may free the space).  Not NBD's TRIM: the disk promises that
 * unmapped blocks read as zeros (LBPRZ), which TRIM does not.  Without the
 * server's WRITE_ZEROES, zeros are written.
 */
static void issue_zeroes(struct nbd_file *nf, struct nbd_req *r)
{
    uint32_t flags = write_flags(r) | (r->op == BLK_WRITE_ZEROES ? LIBNBD_CMD_FLAG_NO_HOLE : 0);
    uint64_t chunk = nf->can_zero ? MAX_ZERO_COMMAND
                     : ZERO_BUFFER_SIZE < nf->max_payload ? ZERO_BUFFER_SIZE : nf->max_payload;

    chunk -= chunk % nf->base.align;
    for (uint64_t done = 0; done < r->len && !r->lost && !r->error;) {
        uint64_t n = r->len - done < chunk ? r->len - done : chunk;

        if (nf->can_zero) {
            send_command(nf, r, CMD_ZERO, NULL, n, r->offset + done, flags);
        } else {
            send_command(nf, r, CMD_WRITE, nf->zeros, n, r->offset + done, write_flags(r));
        }
        done += n;
    }
}

/*
 * Sends the commands of the request's current step (the data, or the flush
 * after it), as the current connection allows.  A flush the server does not
 * offer succeeds at once, as in QEMU, when the export never offered one (no
 * write cache) or the drive does not write; else it fails.  (A flush after
 * written data goes on the connection that took the data: it offers FLUSH.)
 */
static void issue(struct nbd_file *nf, struct nbd_req *r)
{
    int err;

    r->issuing = true;
    r->lost = false;
    if (r->op == BLK_FLUSH || r->flushing) {
        if (nf->can_flush) {
            send_command(nf, r, CMD_FLUSH, NULL, 0, 0, 0);
        } else if ((nf->had_flush && !nf->base.readonly) || r->flushing) {
            r->error = -EIO;
        }
    } else if ((err = choose_stability(nf, r)) < 0) {
        r->error = err;
    } else if (r->op == BLK_READ || r->op == BLK_WRITE) {
        issue_transfer(nf, r);
    } else {
        issue_zeroes(nf, r);
    }
    r->issuing = false;
    if (!r->pending) {
        settle(r);
    }
}

static bool can_issue(const struct nbd_file *nf)
{
    return nf->state == CONN_READY && nf->queue_head &&
           nf->commands_in_flight < MAX_COMMANDS_IN_FLIGHT && is_connected(nf->h);
}

static void issue_queued(struct nbd_file *nf)
{
    while (can_issue(nf)) {
        issue(nf, pop(&nf->queue_head, &nf->queue_tail));
    }
}

/* --- the connection ------------------------------------------------------------- */

static void update_watch(struct nbd_file *nf);
static void lose_connection(struct nbd_file *nf, const char *why);

static struct nbd_handle *new_handle(const struct nbd_target *t, char **err)
{
    struct nbd_handle *h = nbd_create();

    if (!h) {
        error_setf(err, "%s", nbd_get_error());
        return NULL;
    }
    /*
     * libnbd would zero a read's buffer before sending the command: a CPU
     * write into guest memory outside the guarded copies (SIGBUS should the
     * VMM have truncated it).  The reply fills it, or the read fails.
     */
    if (nbd_set_pread_initialize(h, false) < 0 || nbd_set_export_name(h, t->export_name) < 0 ||
        (t->tls && nbd_set_tls(h, LIBNBD_TLS_REQUIRE) < 0) ||
        (t->tls_certificates && nbd_set_tls_certificates(h, t->tls_certificates) < 0) ||
        (t->tls_psk_file && nbd_set_tls_psk_file(h, t->tls_psk_file) < 0) ||
        (t->tls_username && nbd_set_tls_username(h, t->tls_username) < 0)) {
        error_setf(err, "%s", nbd_get_error());
        nbd_close(h);
        return NULL;
    }
    return h;
}

/*
 * libnbd checks a server's X.509 certificate only against a host name it
 * resolved itself: such a connection goes by name.  Every other one goes to
 * the address resolved at open.
 */
static bool connects_by_name(const struct nbd_target *t)
{
    return t->transport == NBD_TRANSPORT_TCP && t->tls && !t->tls_psk_file;
}

/* Starts connecting a new handle; false with *err when it could not start. */
static bool start_connecting(struct nbd_file *nf, char **err)
{
    const struct nbd_target *t = &nf->target;
    char port[8];
    int r;

    if (!(nf->h = new_handle(t, err))) {
        return false;
    }
    snprintf(port, sizeof(port), "%u", t->port);
    if (connects_by_name(t)) {
        r = nbd_aio_connect_tcp(nf->h, t->host, port);
    } else if (t->transport == NBD_TRANSPORT_UNIX) {
        r = nbd_aio_connect(nf->h, (struct sockaddr *)&nf->unix_addr, sizeof(nf->unix_addr));
    } else {
        r = nbd_aio_connect(nf->h, nf->addr->ai_addr, nf->addr->ai_addrlen);
    }
    if (r < 0) {
        error_setf(err, "%s", nbd_get_error());
        nbd_close(nf->h);
        nf->h = NULL;
        return false;
    }
    nf->state = CONN_CONNECTING;
    return true;
}

/*
 * What the server offers on the new connection; the same export as before
 * (size, writable, requests in its blocks) when reconnecting.  Its flags
 * may differ: commands are made for the connection they go out on.  0, or
 * -1 with *err.
 */
static int take_export(struct nbd_file *nf, bool first, char **err)
{
    int64_t size = nbd_get_size(nf->h), min = nbd_get_block_size(nf->h, LIBNBD_SIZE_MINIMUM);
    int64_t max = nbd_get_block_size(nf->h, LIBNBD_SIZE_MAXIMUM);
    unsigned align = min > 1 ? (unsigned)min : 1;
    uint32_t payload = max > 0 && max < DEFAULT_MAX_PAYLOAD ? (uint32_t)max : DEFAULT_MAX_PAYLOAD;

    if (min < 0 || max < 0) {
        error_setf(err, "%s", nbd_get_error());
        return -1;
    }
    /* libnbd takes a size of 2^63 or more and returns it negative, with no error of its own. */
    if (size < 0) {
        error_setf(err, "the export size is out of range: %llu bytes", (unsigned long long)size);
        return -1;
    }
    if (!first && (uint64_t)size != nf->size) {
        error_setf(err, "the export's size changed from %llu to %lld bytes",
                   (unsigned long long)nf->size, (long long)size);
        return -1;
    }
    if (!nf->base.readonly && nbd_is_read_only(nf->h) == 1) {
        error_setf(err, "the export is read-only (use readonly=on)");
        return -1;
    }
    /*
     * The drive's requests come in the blocks of the first connection
     * (libnbd refuses what is not in the server's): a later server must take
     * them, and commands of at least one.
     */
    if (first) {
        nf->base.align = align;
    }
    if (nf->base.align % align || payload < nf->base.align) {
        error_setf(err, "the server takes blocks of %u bytes, commands up to %u, the drive's "
                   "blocks are %u", align, payload, nf->base.align);
        return -1;
    }
    nf->size = (uint64_t)size;
    nf->max_payload = payload - payload % nf->base.align;
    nf->can_flush = nbd_can_flush(nf->h) == 1;
    nf->can_fua = nbd_can_fua(nf->h) == 1;
    nf->can_zero = nbd_can_zero(nf->h) == 1;
    nf->had_flush |= nf->can_flush;
    nf->had_fua |= nf->can_fua;
    nf->had_zero |= nf->can_zero;
    return 0;
}

/* Once per reconnection: what the new server offers less of, and what that does. */
static void report_flags(const struct nbd_file *nf)
{
    bool no_flush = nf->had_flush && !nf->can_flush, no_fua = nf->had_fua && !nf->can_fua;
    bool no_zero = nf->had_zero && !nf->can_zero, wt = drive_writethrough(nf);
    bool writes_fail = wt && cannot_make_stable(nf);

    if ((!no_flush && !no_fua && !no_zero) || nf->base.readonly) {
        return;     /* nothing changes for a read-only drive */
    }
    log_msg(writes_fail || no_flush ? LOG_ERROR : LOG_WARN,
            "%s: the server offers less than the export had:%s%s%s%s%s%s%s", nf->uri,
            no_flush ? " no FLUSH" : "", no_fua ? " no FUA" : "", no_zero ? " no WRITE_ZEROES" : "",
            writes_fail ? "; writes fail with EIO" : "",
            wt && no_fua && !writes_fail ? "; a flush follows each write" : "",
            no_flush ? "; flushes fail with EIO" : "",
            no_zero && !writes_fail ? "; zeros are written as data" : "");
}

static void arm_timer(struct nbd_file *nf, uint64_t at_ns)
{
    uint64_t now = loop_now_ns(), wait = at_ns > now ? at_ns - now : 1;
    struct itimerspec its = { .it_value = { .tv_sec = (time_t)(wait / 1000000000u),
                                            .tv_nsec = (long)(wait % 1000000000u) } };

    timerfd_settime(nf->timer_fd, 0, &its, NULL);
}

/* The first of reconnect-delay's end (while I/O still waits) and at_ns. */
static uint64_t until_deadline(const struct nbd_file *nf, uint64_t at_ns)
{
    uint64_t deadline = nf->down_since_ns + nf->reconnect_delay_ns;

    return !nf->failing && deadline < at_ns ? deadline : at_ns;
}

/* The next attempt after a growing pause; the deadline too, while I/O still waits. */
static void schedule_attempt(struct nbd_file *nf)
{
    nf->state = CONN_WAITING;
    nf->next_attempt_ns = loop_now_ns() + nf->retry_ms * 1000000ull;
    nf->retry_ms = nf->retry_ms * 2 < RETRY_MAX_MS ? nf->retry_ms * 2 : RETRY_MAX_MS;
    arm_timer(nf, until_deadline(nf, nf->next_attempt_ns));
}

/* A handshake ended: the connection serves if it is the same export. */
static bool on_connected(struct nbd_file *nf)
{
    char *err = NULL;

    if (take_export(nf, false, &err) < 0) {
        if (!nf->refused) {     /* once per outage: the next attempts are debug */
            log_msg(nf->quiet ? LOG_DEBUG : LOG_WARN,
                    "%s: not the export the drive was opened on (%s): still waiting", nf->uri,
                    err);
            nf->refused = true;
        }
        lose_connection(nf, err);
        free(err);
        return false;
    }
    nf->refused = false;
    nf->state = CONN_READY;
    nf->connected_ns = loop_now_ns();
    log_msg(nf->quiet ? LOG_DEBUG : LOG_WARN, "%s: reconnected after %llu ms", nf->uri,
            (unsigned long long)((nf->connected_ns - nf->down_since_ns) / 1000000u));
    if (!nf->quiet) {
        report_flags(nf);
    }
    nf->down_since_ns = 0;
    nf->failing = false;
    return true;
}

/*
 * After libnbd ran (or a request came): finished commands are acted on, a
 * handshake that ended serves, a connection that died is replaced, and
 * what waits is sent.
 */
static void after_progress(struct nbd_file *nf)
{
    for (;;) {
        settle_all(nf);
        if (!nf->h) {
            return;     /* waiting for the next attempt */
        }
        if (nf->state == CONN_CONNECTING && is_connected(nf->h)) {
            if (!on_connected(nf)) {
                return;
            }
        } else if (is_gone(nf->h)) {
            lose_connection(nf, nbd_get_error());
            return;
        } else if (can_issue(nf)) {
            issue_queued(nf);
        } else {
            update_watch(nf);
            return;
        }
    }
}

/* Tells libnbd what the socket is ready for, in the directions it waits in. */
static void notify(struct nbd_handle *h, uint32_t events)
{
    bool trouble = events & (EPOLLHUP | EPOLLERR);

    if ((events & EPOLLIN || trouble) && (nbd_aio_get_direction(h) & LIBNBD_AIO_DIRECTION_READ)) {
        nbd_aio_notify_read(h);
    }
    if ((events & EPOLLOUT || trouble) && !is_gone(h) &&
        (nbd_aio_get_direction(h) & LIBNBD_AIO_DIRECTION_WRITE)) {
        nbd_aio_notify_write(h);
    }
}

static void on_socket(void *opaque, uint32_t events)
{
    struct nbd_file *nf = opaque;

    notify(nf->h, events);
    after_progress(nf);
}

static uint32_t wanted_events(struct nbd_handle *h)
{
    unsigned dir = nbd_aio_get_direction(h);

    return ((dir & LIBNBD_AIO_DIRECTION_READ) ? EPOLLIN : 0) |
           ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? EPOLLOUT : 0);
}

/*
 * The loop watches a copy of libnbd's fd that is ours (F_DUPFD_CLOEXEC),
 * never libnbd's own.  epoll keys an entry by the open file, not by the fd
 * number, and drops it only once every fd of that file, in any process,
 * is closed.  libnbd closes its socket itself (when the connection ends,
 * inside nbd_aio_notify_*() or a command's call; in nbd_close()), and
 * while another process held a copy (a child forked meanwhile, an fd
 * passed on) the entry outlived that close: EPOLL_CTL_DEL refused the
 * closed number (EBADF), and the entry went on reporting the dead socket
 * to this watch, without a handle, with the next one's, or once the drive
 * was closed to freed memory.  Our copy stays open until stop_watching()
 * has removed the entry, whatever libnbd did: the watch always ends
 * before the fd it watches is closed.  (It holds the socket open a moment
 * longer than libnbd: each libnbd call that may close it is followed by
 * after_progress(), which finds the handle gone and stops watching.)
 */
static void stop_watching(struct nbd_file *nf)
{
    int own = nf->watch.fd;

    if (own >= 0) {
        loop_watch_remove(blk_file_loop(&nf->base), &nf->watch);
        close(own);
    }
    nf->watched_fd = -1;
}

static void start_watching(struct nbd_file *nf, int fd, uint32_t events)
{
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    struct stat st;

    if (own < 0 || fstat(own, &st) < 0) {
        log_error("%s: cannot watch the socket: %s", nf->uri, strerror(errno));
    } else if (loop_watch_add(blk_file_loop(&nf->base), &nf->watch, own, events, on_socket,
                              nf) < 0) {
        log_error("%s: cannot watch the socket", nf->uri);
    } else {
        nf->watched_fd = fd;
        nf->watched_ino = st.st_ino;
        return;
    }
    if (own >= 0) {
        close(own);
    }
}

/*
 * Whether our copy is of the socket the handle has now (fd; -1: none).
 * Connected, the number tells: libnbd keeps that socket until the handle
 * is gone (and a gone handle has none).  While connecting to a name it
 * resolved, libnbd closes the socket of an address that failed and opens
 * the next one's, most likely under the same number: the inode tells.
 */
static bool watching(const struct nbd_file *nf, int fd)
{
    struct stat st;

    if (fd != nf->watched_fd) {
        return false;
    }
    if (fd < 0 || nf->state != CONN_CONNECTING) {
        return true;
    }
    return fstat(fd, &st) == 0 && st.st_ino == nf->watched_ino;
}

static void update_watch(struct nbd_file *nf)
{
    int fd = nbd_aio_get_fd(nf->h);
    uint32_t events = wanted_events(nf->h);

    if (!watching(nf, fd)) {
        stop_watching(nf);
        if (fd >= 0) {
            start_watching(nf, fd, events);
        }
    } else if (nf->watch.fd >= 0 && nf->watch.events != events) {
        loop_watch_modify(blk_file_loop(&nf->base), &nf->watch, events);
    }
}

static void fail_queued(struct nbd_file *nf, int result)
{
    struct nbd_req *r;

    while ((r = pop(&nf->queue_head, &nf->queue_tail))) {
        finish(r, result);
    }
}

/* The connection is gone (or a new one is unusable): wait, then try again. */
static void lose_connection(struct nbd_file *nf, const char *why)
{
    stop_watching(nf);
    nbd_close(nf->h);
    nf->h = NULL;
    if (!nf->down_since_ns) {
        /*
         * A connection that served under a second (a server that takes
         * each handshake and hangs up) does not start the pauses over, and
         * past a few such outages their lines are rate-limited: else such
         * a server has us reconnect, and log it, 20 times a second.
         */
        uint64_t served_ns = loop_now_ns() - nf->connected_ns;
        bool flap = nf->connected_ns && served_ns < RETRY_MAX_MS * 1000000ull;

        nf->down_since_ns = loop_now_ns();
        if (!flap) {
            nf->retry_ms = RETRY_FIRST_MS;
            nf->flaps.count = 0;
        }
        nf->quiet = flap && !log_ratelimit_ok(&nf->flaps);
        log_msg(nf->quiet ? LOG_DEBUG : LOG_WARN,
                "%s: connection lost (%s); reconnecting, I/O waits up to %llu s", nf->uri,
                why ? why : "closed", (unsigned long long)(nf->reconnect_delay_ns / 1000000000u));
    } else {
        log_debug("%s: no connection (%s)", nf->uri, why ? why : "closed");
    }
    if (nf->addrs) {
        nf->addr = nf->addr->ai_next ? nf->addr->ai_next : nf->addrs;
    }
    schedule_attempt(nf);
}

static void on_timer(void *opaque, uint32_t events)
{
    struct nbd_file *nf = opaque;
    uint64_t expirations, now = loop_now_ns();
    char *err = NULL;

    (void)events;
    if (read(nf->timer_fd, &expirations, sizeof(expirations)) < 0 || !nf->down_since_ns) {
        return;     /* nothing expired, or connected again */
    }
    if (!nf->failing && now - nf->down_since_ns >= nf->reconnect_delay_ns) {
        nf->failing = true;
        /* Each outage of a flapping server reaches a reconnect-delay of a second or less. */
        log_msg(nf->quiet ? LOG_DEBUG : LOG_ERROR, "%s: no server for %llu s: I/O fails until "
                "it is back", nf->uri,
                (unsigned long long)(nf->reconnect_delay_ns / 1000000000u));
        fail_queued(nf, -EIO);
    }
    /*
     * A handshake that does not end (a server stopped, a listener that
     * does not accept: the backlog took the connection) neither holds I/O
     * past the deadline nor keeps the next attempt from being made.
     */
    if (nf->state == CONN_CONNECTING) {
        if (now >= nf->attempt_deadline_ns) {
            lose_connection(nf, "no answer");
        } else {
            arm_timer(nf, until_deadline(nf, nf->attempt_deadline_ns));
        }
    } else if (nf->state != CONN_WAITING) {
        return;
    } else if (now < nf->next_attempt_ns) {
        arm_timer(nf, nf->next_attempt_ns);
    } else if (start_connecting(nf, &err)) {
        nf->attempt_deadline_ns = now + OPEN_TIMEOUT_S * 1000000000ull;
        arm_timer(nf, until_deadline(nf, nf->attempt_deadline_ns));
        after_progress(nf);
    } else {
        log_debug("%s: %s", nf->uri, err);
        free(err);
        schedule_attempt(nf);
    }
}

/* Waits (in poll, outside the loop) for the socket or the timer, and acts on them. */
static void wait_once(struct nbd_file *nf)
{
    struct pollfd fds[2] = { { .fd = nf->timer_fd, .events = POLLIN } };
    nfds_t n = 1;

    if (nf->h && nbd_aio_get_fd(nf->h) >= 0) {
        fds[1] = (struct pollfd){ .fd = nbd_aio_get_fd(nf->h),
                                  .events = (short)wanted_events(nf->h) };
        n = 2;
    }
    if (poll(fds, n, -1) < 0) {
        return;     /* EINTR: the caller waits again */
    }
    if (n == 2 && fds[1].revents) {
        on_socket(nf, (uint32_t)fds[1].revents);
    }
    if (fds[0].revents) {
        on_timer(nf, EPOLLIN);
    }
}

/* --- requests ------------------------------------------------------------------- */

static void accept_request(struct nbd_file *nf, struct nbd_req *r)
{
    nf->active++;
    r->nf = nf;
    if (nf->failing) {
        finish(r, -EIO);
    } else if (r->op != BLK_FLUSH && (r->offset > nf->size || r->len > nf->size - r->offset)) {
        finish(r, -ENOSPC);     /* an export does not grow */
    } else if (r->op != BLK_FLUSH && !r->len) {
        finish(r, 0);
    } else {
        push(&nf->queue_head, &nf->queue_tail, r);
        if (nf->state == CONN_READY) {
            after_progress(nf);
        }
    }
}

static void nbd_submit(struct blk_file *f, struct blk_io *io)
{
    struct nbd_req *r = calloc(1, sizeof(*r));
    bool rw = io->op == BLK_READ || io->op == BLK_WRITE;

    if (!r) {
        blk_io_fail(io, f->aio, -ENOMEM);
        return;
    }
    *r = (struct nbd_req){ .io = io, .op = io->op, .offset = io->offset, .iov = io->iov,
                           .iovcnt = io->iovcnt,
                           .len = rw ? iov_size(io->iov, io->iovcnt) : io->len };
    accept_request(nbd_of(f), r);
}

/* A synchronous access to our own buffer: waits in poll() until it is done. */
static int run_sync(struct nbd_file *nf, enum blk_op op, void *buf, uint64_t len, uint64_t offset)
{
    struct nbd_req r = { .op = op, .offset = offset, .len = len,
                         .own_iov = { .iov_base = buf, .iov_len = len } };

    r.iov = &r.own_iov;
    r.iovcnt = 1;
    accept_request(nf, &r);
    while (!r.sync_done) {
        wait_once(nf);
    }
    return r.result;
}

static int64_t nbd_pread_sync(struct blk_file *f, void *buf, uint64_t len, uint64_t offset)
{
    struct nbd_file *nf = nbd_of(f);
    uint64_t in_export = offset >= nf->size ? 0 : nf->size - offset < len ? nf->size - offset : len;
    int r = in_export ? run_sync(nf, BLK_READ, buf, in_export, offset) : 0;

    if (r < 0) {
        return r;
    }
    memset((char *)buf + in_export, 0, len - in_export);
    return (int64_t)in_export;
}

static int nbd_pwrite_sync(struct blk_file *f, const void *buf, uint64_t len, uint64_t offset)
{
    return run_sync(nbd_of(f), BLK_WRITE, (void *)buf, len, offset);
}

static int nbd_sync(struct blk_file *f)
{
    return run_sync(nbd_of(f), BLK_FLUSH, NULL, 0, 0);
}

/* Completions may start new I/O: until none is left.  Whether it completed anything. */
static bool drain_commands(struct nbd_file *nf)
{
    bool any = false;

    do {
        while (nf->active) {
            wait_once(nf);
        }
        any |= deliver_finished(nf);
    } while (nf->active);
    return any;
}

/*
 * The engine's, as posix_drain(): what our completions lead to runs too
 * (qcow2 defers its next steps through the engine, and waits in a drain
 * for them), and our commands drain through our drainer.  Only our own
 * commands, it returned with a format's requests still going: a drive
 * closed under them (their done() never called, qcow2 freed), qcow2's
 * waits for its metadata spinning.
 */
static void nbd_drain(struct blk_file *f)
{
    aio_drain(f->aio);
}

static bool drain_for_engine(struct aio_drainer *d)
{
    return drain_commands((struct nbd_file *)((char *)d - offsetof(struct nbd_file, drainer)));
}

static int nbd_length(struct blk_file *f, uint64_t *len)
{
    *len = nbd_of(f)->size;
    return 0;
}

static int nbd_truncate(struct blk_file *f, uint64_t len, char **err)
{
    if (len == nbd_of(f)->size) {
        return 0;
    }
    error_setf(err, "an NBD export cannot be resized from here (it has %llu bytes)",
               (unsigned long long)nbd_of(f)->size);
    return -1;
}

/* --- opening and closing -------------------------------------------------------- */

static int parse_target(struct nbd_file *nf, const char *filename, struct opts *o, char **err)
{
    uint64_t delay = DEFAULT_RECONNECT_DELAY_S;

    if (o && opts_get_uint(o, "file.reconnect-delay", DEFAULT_RECONNECT_DELAY_S,
                           MAX_RECONNECT_DELAY_S, &delay, err) < 0) {
        return -1;
    }
    nf->reconnect_delay_ns = delay * 1000000000ull;
    if (filename ? nbd_target_parse_uri(filename, &nf->target, err)
                 : nbd_target_from_opts(o, "file.", &nf->target, err)) {
        return -1;
    }
    if (!(nf->uri = nbd_target_uri(&nf->target))) {
        error_setf(err, "out of memory");
        return -1;
    }
    nf->base.name = nf->uri;
    return 0;
}

/* Where to connect, resolved now: reconnecting never resolves a name in the loop. */
static int resolve(struct nbd_file *nf, char **err)
{
    const struct nbd_target *t = &nf->target;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    char port[8];
    int r;

    if (t->transport == NBD_TRANSPORT_UNIX) {
        if (strlen(t->socket) >= sizeof(nf->unix_addr.sun_path)) {
            error_setf(err, "socket path too long: %s", t->socket);
            return -1;
        }
        nf->unix_addr.sun_family = AF_UNIX;
        strcpy(nf->unix_addr.sun_path, t->socket);
        return 0;
    }
    snprintf(port, sizeof(port), "%u", t->port);
    if ((r = getaddrinfo(t->host, port, &hints, &nf->addrs)) != 0) {
        error_setf(err, "%s: %s", t->host, gai_strerror(r));
        return -1;
    }
    nf->addr = nf->addrs;
    return 0;
}

/* Drives a handshake to its end, for at most OPEN_TIMEOUT_S; whether it connected. */
static bool handshake(struct nbd_handle *h)
{
    uint64_t deadline = loop_now_ns() + OPEN_TIMEOUT_S * 1000000000ull;

    while (nbd_aio_is_connecting(h) && loop_now_ns() < deadline) {
        struct pollfd p = { .fd = nbd_aio_get_fd(h), .events = (short)wanted_events(h) };

        if (poll(&p, 1, 100) > 0) {
            notify(h, (uint32_t)p.revents);     /* POLLIN, POLLOUT... equal EPOLLIN... */
        }
    }
    return is_connected(h);
}

/* The first connection, at setup: waits for it, trying each address once. */
static int connect_first(struct nbd_file *nf, char **err)
{
    for (;;) {
        if (start_connecting(nf, err)) {
            if (handshake(nf->h)) {
                return take_export(nf, true, err);
            }
            error_setf(err, "%s", nbd_aio_is_connecting(nf->h) ? "no answer" : nbd_get_error());
            nbd_close(nf->h);
            nf->h = NULL;
        }
        if (!nf->addr || !nf->addr->ai_next || connects_by_name(&nf->target)) {
            return -1;
        }
        free(*err);
        *err = NULL;
        nf->addr = nf->addr->ai_next;
    }
}

static void nbd_close_file(struct blk_file *f)
{
    struct nbd_file *nf = nbd_of(f);
    struct loop *loop = blk_file_loop(f);

    drain_commands(nf);     /* the drive drained the rest; a failed open has nothing else */
    if (nf->drainer_added) {
        aio_remove_drainer(f->aio, &nf->drainer);
    }
    loop_bh_cancel(loop, &nf->done_bh);
    stop_watching(nf);
    if (nf->timer_fd >= 0) {
        loop_watch_remove(loop, &nf->timer_watch);
        close(nf->timer_fd);
    }
    nbd_close(nf->h);
    if (nf->addrs) {
        freeaddrinfo(nf->addrs);
    }
    nbd_target_clear(&nf->target);
    free(nf->uri);
    free(nf->zeros);
    free(nf);
}

static struct blk_file *nbd_open_file(const char *filename, struct opts *o, struct aio_engine *aio,
                                      bool readonly, enum drive_cache cache, char **err)
{
    struct nbd_file *nf = calloc(1, sizeof(*nf));

    if (!nf) {
        error_setf(err, "out of memory");
        return NULL;
    }
    nf->base = (struct blk_file){ .driver = &file_driver_nbd, .aio = aio, .readonly = readonly,
                                  .cache = cache, .align = 1 };
    nf->watch.fd = -1;
    nf->watched_fd = -1;
    nf->state = CONN_WAITING;
    loop_bh_init(&nf->done_bh, deliver_done, nf);
    nf->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (nf->timer_fd < 0 ||
        loop_watch_add(blk_file_loop(&nf->base), &nf->timer_watch, nf->timer_fd, EPOLLIN,
                       on_timer, nf) < 0) {
        error_setf(err, "timerfd: %s", strerror(errno));
        if (nf->timer_fd >= 0) {
            close(nf->timer_fd);
        }
        nf->timer_fd = -1;
    } else if (!(nf->zeros = calloc(1, ZERO_BUFFER_SIZE))) {
        error_setf(err, "out of memory");
    } else if (parse_target(nf, filename, o, err) == 0 && resolve(nf, err) == 0 &&
               connect_first(nf, err) == 0) {
        nf->state = CONN_READY;
        nf->connected_ns = loop_now_ns();
        nf->retry_ms = RETRY_FIRST_MS;
        update_watch(nf);
        nf->drainer = (struct aio_drainer){ .drain = drain_for_engine };
        aio_add_drainer(aio, &nf->drainer);
        nf->drainer_added = true;
        return &nf->base;
    }
    if (nf->uri || filename) {
        error_prefix(err, "%s", nf->uri ? nf->uri : filename);
    }
    nbd_close_file(&nf->base);
    return NULL;
}

/* --- the sandbox's view --------------------------------------------------------- */

static void add_family(struct blk_file_reach *out, int family)
{
    for (unsigned i = 0; i < out->n_families; i++) {
        if (out->families[i] == family) {
            return;
        }
    }
    if (out->n_families < sizeof(out->families) / sizeof(out->families[0])) {
        out->families[out->n_families++] = family;
    }
}

static bool nbd_reach(const struct blk_file *f, struct blk_file_reach *out)
{
    const struct nbd_file *nf = nbd_of(f);
    const struct nbd_target *t = &nf->target;
    size_t n = 0;

    /* Landlock does not govern connecting to a unix socket: no rule for its path. */
    if (t->transport == NBD_TRANSPORT_UNIX) {
        add_family(out, AF_UNIX);
    } else {
        for (const struct addrinfo *a = nf->addrs; a; a = a->ai_next) {
            add_family(out, a->ai_family);
        }
        out->tcp_port = t->port;
        out->resolves_names = connects_by_name(t);
    }
    if (t->tls_psk_file) {
        out->files[n++] = t->tls_psk_file;
    }
    if (t->tls_certificates) {
        out->files[n++] = t->tls_certificates;
    }
    return true;
}

const struct file_driver file_driver_nbd = {
    .name = "nbd",
    .network = true,
    .claims = claims_nbd,
    .open = nbd_open_file,
    .close = nbd_close_file,
    .submit = nbd_submit,
    .drain = nbd_drain,
    .length = nbd_length,
    .pread = nbd_pread_sync,
    .pwrite = nbd_pwrite_sync,
    .sync = nbd_sync,
    .truncate = nbd_truncate,
    .reach = nbd_reach,
};
