// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/vfio-user-server.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "io/eventfd.h"
#include "pci/pci.h"
#include "proto/conn.h"
#include "proto/vfio-user-wire.h"
#include "util/error.h"
#include "util/opts.h"

enum {
    /*
     * Waiting for the reply to a DMA_READ/DMA_WRITE of ours stops the whole
     * process.  A client may hold it at most this long at once, and in the
     * long run for this share of the time.
     */
    DMA_WAIT_BUDGET_MS = 5000,
    DMA_WAIT_SHARE_PERCENT = 10,
    /* Requests that arrive while we wait for such a reply wait here. */
    MAX_DEFERRED = 256,
    /* A line still high at a client's unmask message is signalled by then. */
    RESIGNAL_DELAY_NS = 1000 * 1000,
};

/* A request received while waiting for the reply to one of ours. */
struct deferred {
    struct vfio_user_msg msg;   /* body is our own copy */
};

struct intx {
    int trigger;        /* eventfd the client waits on, or -1 */
    int unmask;         /* eventfd the client signals to unmask, or -1 */
    struct loop_watch unmask_watch;
    bool masked;        /* automasked on trigger, as VFIO's INTx is */
    bool line_high;
    /* Unmasked by message while high: signalled after the next write or the delay. */
    bool resignal_pending;
    int resignal_timer;
    struct loop_watch resignal_watch;
};

/*
 * What one client cost us, counted where the messages are dispatched and the
 * interrupts signalled, and logged when it leaves or at shutdown: the
 * figures a benchmark divides by its commands.  Every command the client
 * sent is in MSGS and, unless it was malformed, in exactly one of the
 * kinds after it; REFUSED counts the error answers among them.
 */
enum count {
    COUNT_MSGS,
    COUNT_REGION_READ,
    COUNT_REGION_WRITE_WAITED,  /* the client waits for our reply */
    COUNT_REGION_WRITE_POSTED,  /* VFIO_USER_F_NO_REPLY: no reply, no wait */
    COUNT_DMA_MAP,
    COUNT_DMA_UNMAP,
    COUNT_IRQ_UNMASK_MSG,       /* SET_IRQS unmasking INTx (not setting its eventfd) */
    COUNT_SET_IRQS,             /* the other SET_IRQS */
    COUNT_OTHER,                /* VERSION, the GET_*INFO, RESET */
    COUNT_REFUSED,
    COUNT_IRQ_UNMASK_FD,        /* unmasks through the client's unmask eventfd */
    COUNT_INTX_SIGNALS,         /* writes to the client's INTx eventfd */
    COUNT_DMA_READ_REQ,         /* our DMA_READs, each waiting for the client's reply */
    COUNT_DMA_WRITE_REQ,
    COUNT_N
};

static const char *const count_names[COUNT_N] = {
    [COUNT_MSGS] = "msgs",
    [COUNT_REGION_READ] = "region_read",
    [COUNT_REGION_WRITE_WAITED] = "region_write_waited",
    [COUNT_REGION_WRITE_POSTED] = "region_write_posted",
    [COUNT_DMA_MAP] = "dma_map",
    [COUNT_DMA_UNMAP] = "dma_unmap",
    [COUNT_IRQ_UNMASK_MSG] = "irq_unmask_msg",
    [COUNT_SET_IRQS] = "set_irqs",
    [COUNT_OTHER] = "other",
    [COUNT_REFUSED] = "refused",
    [COUNT_IRQ_UNMASK_FD] = "irq_unmask_fd",
    [COUNT_INTX_SIGNALS] = "intx_signals",
    [COUNT_DMA_READ_REQ] = "dma_read_req",
    [COUNT_DMA_WRITE_REQ] = "dma_write_req",
};

struct vfio_user_server {
    struct server server;
    char *path;
    int listen_fd;
    struct loop_watch listen_watch;

    /* The client, when one is connected. */
    struct conn conn;
    struct vfio_user_reader reader;
    bool negotiated;
    uint64_t client_max_data;
    uint16_t next_id;
    struct intx intx;
    struct deferred *deferred;
    size_t n_deferred;
    struct loop_bh deferred_bh;
    struct loop_bh reset_bh;
    bool in_remote_dma;
    /* What DMA reply waits may still take (ns), and when it was last refilled. */
    uint64_t dma_wait_budget;
    uint64_t dma_wait_refilled;
    uint64_t dma_wait_full;     /* DMA_WAIT_BUDGET_MS, less in tests */
    struct log_ratelimit dma_budget_log;
    /* The current or last client's, until logged; clients numbered from 1. */
    uint64_t counts[COUNT_N];
    uint64_t n_clients;
    bool counts_pending;
};

static struct vfio_user_server *server_of(struct conn *c)
{
    return (struct vfio_user_server *)((char *)c - offsetof(struct vfio_user_server, conn));
}

static void serve_deferred(void *opaque);

/* --- counts --------------------------------------------------------------- */

static void count(struct vfio_user_server *s, enum count what)
{
    s->counts[what]++;
}

/* The kind of a well-formed command, for the counts. */
static enum count count_kind(const struct vfio_user_msg *m)
{
    struct vfio_user_irq_set set;

    switch (m->hdr.cmd) {
    case VFIO_USER_REGION_READ:
        return COUNT_REGION_READ;
    case VFIO_USER_REGION_WRITE:
        return m->hdr.flags & VFIO_USER_F_NO_REPLY ? COUNT_REGION_WRITE_POSTED
                                                   : COUNT_REGION_WRITE_WAITED;
    case VFIO_USER_DMA_MAP:
        return COUNT_DMA_MAP;
    case VFIO_USER_DMA_UNMAP:
        return COUNT_DMA_UNMAP;
    case VFIO_USER_DEVICE_SET_IRQS:
        memcpy(&set, m->body, sizeof(set));
        /* An unmask itself, not the setting of an unmask eventfd. */
        return set.index == VFIO_PCI_INTX_IRQ &&
               (set.flags & VFIO_IRQ_SET_ACTION_MASK_ALL) == VFIO_IRQ_SET_ACTION_UNMASK &&
               (set.flags & VFIO_IRQ_SET_DATA_MASK) != VFIO_IRQ_SET_DATA_EVENTFD
               ? COUNT_IRQ_UNMASK_MSG : COUNT_SET_IRQS;
    default:
        return COUNT_OTHER;
    }
}

/*
 * One line, "DEVID: vfio-user-counts event=EVENT client=N KEY=VALUE...",
 * with every key always present in the same order, for scripts to parse.
 */
static void log_counts(struct vfio_user_server *s, const char *event)
{
    char line[768];
    size_t len = 0;

    if (!s->counts_pending) {
        return;
    }
    for (int i = 0; i < COUNT_N && len < sizeof(line); i++) {
        len += (size_t)snprintf(line + len, sizeof(line) - len, " %s=%" PRIu64,
                                count_names[i], s->counts[i]);
    }
    log_info("%s: vfio-user-counts event=%s client=%" PRIu64 "%s", s->conn.dev->id, event,
             s->n_clients, line);
    s->counts_pending = false;
}

/* --- connection lifetime ------------------------------------------------ */

static void intx_resignal_cancel(struct vfio_user_server *s);
static void intx_resignal_now(struct vfio_user_server *s);
static void on_resignal_timer(void *opaque, uint32_t events);

static void intx_disable(struct vfio_user_server *s)
{
    intx_resignal_cancel(s);
    loop_watch_remove(s->conn.loop, &s->intx.unmask_watch);
    if (s->intx.trigger >= 0) {
        close(s->intx.trigger);
    }
    if (s->intx.unmask >= 0) {
        close(s->intx.unmask);
    }
    s->intx.trigger = s->intx.unmask = -1;
    s->intx.masked = false;
}

static void drop_deferred(struct vfio_user_server *s)
{
    for (size_t i = 0; i < s->n_deferred; i++) {
        close_fds(s->deferred[i].msg.fds, s->deferred[i].msg.nfds);
        free(s->deferred[i].msg.body);
    }
    free(s->deferred);
    s->deferred = NULL;
    s->n_deferred = 0;
    loop_bh_cancel(s->conn.loop, &s->deferred_bh);
}

/* What a client set up (interrupts, memory, requests in waiting) goes with it. */
static void forget_client(struct vfio_user_server *s)
{
    intx_disable(s);
    drop_deferred(s);
    dma_space_clear(&s->conn.dma);
    vfio_user_reader_free(&s->reader);
    vfio_user_reader_init_read_ahead(&s->reader);
    s->negotiated = false;
}

/* The next client starts from a device just out of reset, with no memory. */
static void reset_for_next_client(void *opaque)
{
    struct vfio_user_server *s = opaque;

    pci_device_reset(s->conn.dev);
    forget_client(s);
    log_counts(s, "disconnect");
    loop_watch_modify(s->conn.loop, &s->listen_watch, EPOLLIN);
}

/* The client has gone: the device is reset from the loop, as it may be on the stack. */
static void client_gone(struct conn *c, bool error)
{
    (void)error;
    loop_bh_schedule(c->loop, &server_of(c)->reset_bh);
}

/* --- output ------------------------------------------------------------- */

static void send_msg_as(struct vfio_user_server *s, const struct vfio_user_hdr *hdr,
                        const void *body, size_t len, const void *data, size_t data_len,
                        conn_send_fn *send)
{
    struct iovec iov[3] = {
        { (void *)hdr, sizeof(*hdr) }, { (void *)body, len }, { (void *)data, data_len },
    };

    send(&s->conn, iov, 3);
}

static void send_msg(struct vfio_user_server *s, const struct vfio_user_hdr *hdr,
                     const void *body, size_t len, const void *data, size_t data_len)
{
    send_msg_as(s, hdr, body, len, data, data_len, conn_send);
}

static void reply_as(struct vfio_user_server *s, const struct vfio_user_msg *m,
                     const void *body, size_t len, const void *data, size_t data_len,
                     conn_send_fn *send)
{
    struct vfio_user_hdr hdr = {
        .id = m->hdr.id, .cmd = m->hdr.cmd, .flags = VFIO_USER_F_REPLY,
        .size = (uint32_t)(sizeof(hdr) + len + data_len),
    };

    if (m->hdr.flags & VFIO_USER_F_NO_REPLY) {
        return;
    }
    send_msg_as(s, &hdr, body, len, data, data_len, send);
}

static void reply(struct vfio_user_server *s, const struct vfio_user_msg *m,
                  const void *body, size_t len, const void *data, size_t data_len)
{
    reply_as(s, m, body, len, data, data_len, conn_send);
}

static void reply_error(struct vfio_user_server *s, const struct vfio_user_msg *m, int err)
{
    struct vfio_user_hdr hdr = {
        .id = m->hdr.id, .cmd = m->hdr.cmd, .size = sizeof(hdr),
        .flags = VFIO_USER_F_REPLY | VFIO_USER_F_ERROR, .error = (uint32_t)err,
    };

    if (m->hdr.flags & VFIO_USER_F_NO_REPLY) {
        return;
    }
    send_msg(s, &hdr, NULL, 0, NULL, 0);
}

static void refuse(struct vfio_user_server *s, const struct vfio_user_msg *m, int err,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An error the client caused but may recover from: logged (rate-limited), answered. */
static void refuse(struct vfio_user_server *s, const struct vfio_user_msg *m, int err,
                   const char *fmt, ...)
{
    va_list ap;

    count(s, COUNT_REFUSED);
    va_start(ap, fmt);
    conn_vrefusal(&s->conn, vfio_user_cmd_name(m->hdr.cmd), fmt, ap);
    va_end(ap);
    reply_error(s, m, err);
}

/* --- VERSION -------------------------------------------------------------- */

static int parse_client_caps(struct vfio_user_server *s, const char *json, char **err)
{
    struct json_object *root = json_tokener_parse(json), *caps, *v;
    int rc = -1;

    if (!root || !json_object_is_type(root, json_type_object)) {
        error_setf(err, "capabilities are not a JSON object");
        goto out;
    }
    if (!json_object_object_get_ex(root, "capabilities", &caps)) {
        rc = 0;
        goto out;
    }
    if (!json_object_is_type(caps, json_type_object)) {
        error_setf(err, "\"capabilities\" is not an object");
        goto out;
    }
    if (json_object_object_get_ex(caps, "max_data_xfer_size", &v)) {
        int64_t n = json_object_get_int64(v);

        if (!json_object_is_type(v, json_type_int) || n < 512) {
            error_setf(err, "max_data_xfer_size is not a number of at least 512");
            goto out;
        }
        s->client_max_data = (uint64_t)n < VFIO_USER_MAX_DATA ? (uint64_t)n
                                                              : VFIO_USER_MAX_DATA;
    }
    if (json_object_object_get_ex(caps, "pgsizes", &v)) {
        int64_t n = json_object_get_int64(v);

        if (!json_object_is_type(v, json_type_int) || !(n & VFIO_USER_PGSIZE)) {
            error_setf(err, "pgsizes does not include 4096");
            goto out;
        }
    }
    rc = 0;
out:
    json_object_put(root);
    return rc;
}

static void handle_version(struct vfio_user_server *s, const struct vfio_user_msg *m)
{
    struct vfio_user_version v;
    const char *json = NULL;
    char *err = NULL;
    char caps[200];

    memcpy(&v, m->body, sizeof(v));
    if (v.major != VFIO_USER_MAJOR) {
        reply_error(s, m, ENOTSUP);
        conn_fail(&s->conn, "client speaks vfio-user %u.%u, we speak %d.%d", v.major,
                  v.minor, VFIO_USER_MAJOR, VFIO_USER_MINOR);
        return;
    }
    if (m->body_len > sizeof(v)) {
        size_t json_len = m->body_len - sizeof(v);

        json = (const char *)m->body + sizeof(v);
        if (json_len > VFIO_USER_MAX_CAPS_JSON || json[json_len - 1] != '\0') {
            reply_error(s, m, EINVAL);
            conn_fail(&s->conn, "VERSION: capabilities are not a NUL-terminated string of "
                      "at most %d bytes", VFIO_USER_MAX_CAPS_JSON);
            return;
        }
    }
    s->client_max_data = VFIO_USER_MAX_DATA;
    if (json && parse_client_caps(s, json, &err) < 0) {
        reply_error(s, m, EINVAL);
        conn_fail(&s->conn, "VERSION: %s", err ? err : "bad capabilities");
        free(err);
        return;
    }
    /* No migration: the device state lives here and is not saved. */
    snprintf(caps, sizeof(caps),
             "{\"capabilities\":{\"max_msg_fds\":%d,\"max_data_xfer_size\":%d,"
             "\"pgsizes\":%d,\"max_dma_maps\":%d}}",
             VFIO_USER_MAX_FDS, VFIO_USER_MAX_DATA, VFIO_USER_PGSIZE, DMA_MAX_REGIONS);
    /* We speak 0.0, the lowest minor there is: the client accepts it. */
    v = (struct vfio_user_version){ .major = VFIO_USER_MAJOR, .minor = VFIO_USER_MINOR };
    s->negotiated = true;
    reply(s, m, &v, sizeof(v), caps, strlen(caps) + 1);
}

/* --- memory ------------------------------------------------------------- */

static void handle_dma_map(struct vfio_user_server *s, struct vfio_user_msg *m)
{
    struct vfio_user_dma_map b;
    struct dma_map_request req;
    char *err = NULL;

    memcpy(&b, m->body, sizeof(b));
    if (b.argsz != sizeof(b) || b.offset > INT64_MAX ||
        !(b.flags & VFIO_DMA_MAP_FLAG_READ) ||
        (b.flags & ~(uint32_t)(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE))) {
        refuse(s, m, EINVAL, "argsz %" PRIu32 " flags 0x%" PRIx32 " refused", b.argsz, b.flags);
        return;
    }
    if ((b.addr | b.size) % VFIO_USER_PGSIZE) {
        refuse(s, m, EINVAL, "0x%" PRIx64 "+0x%" PRIx64 " is not page aligned", b.addr, b.size);
        return;
    }
    req = (struct dma_map_request){ .gpa = b.addr, .size = b.size,
                                    .fd = m->nfds ? m->fds[0] : -1, .offset = (int64_t)b.offset };
    if (dma_space_map(&s->conn.dma, &req, &err) < 0) {
        refuse(s, m, EINVAL, "%s", err ? err : "cannot map");
        free(err);
        return;
    }
    reply(s, m, NULL, 0, NULL, 0);
}

static void handle_dma_unmap(struct vfio_user_server *s, const struct vfio_user_msg *m)
{
    struct vfio_user_dma_unmap b;
    char *err = NULL;

    memcpy(&b, m->body, sizeof(b));
    if (b.argsz < sizeof(b) || (b.flags & ~(uint32_t)VFIO_DMA_UNMAP_FLAG_ALL)) {
        /* Dirty-page bitmaps belong to migration, which we do not offer. */
        refuse(s, m, ENOTSUP, "flags 0x%" PRIx32 " (argsz %" PRIu32 ") not supported",
               b.flags, b.argsz);
        return;
    }
    if (b.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
        if (b.addr || b.size) {
            refuse(s, m, EINVAL, "unmap-all with an address range");
            return;
        }
        dma_space_clear(&s->conn.dma);
    } else if (dma_space_unmap(&s->conn.dma, b.addr, b.size, &err) < 0) {
        refuse(s, m, EINVAL, "%s", err ? err : "cannot unmap");
        free(err);
        return;
    }
    reply(s, m, &b, sizeof(b), NULL, 0);
}

/*
 * Guest memory the client mapped without an fd: ask the client to copy.
 * Requests that arrive meanwhile wait and are served after this returns.
 */
static int wait_for_reply(struct vfio_user_server *s, uint16_t id, void *buf, size_t len,
                          bool to_guest, uint64_t timeout_ms)
{
    uint64_t start = loop_now_ns();

    while (conn_is_open(&s->conn)) {
        struct pollfd p = { .fd = s->conn.sock,
                            .events = POLLIN | (s->conn.out.len ? POLLOUT : 0) };
        struct vfio_user_msg m;
        char *err = NULL;
        uint64_t waited = (loop_now_ns() - start) / 1000000;
        bool ready;

        if (waited >= timeout_ms) {
            /* QEMU's client serves our requests only while no vCPU waits on us. */
            conn_fail(&s->conn, "no reply to DMA request %u in %llu ms (a client that waits "
                      "for a reply of ours meanwhile, as QEMU's vfio-user-pci does, needs guest "
                      "memory shared by fd: memory-backend-memfd,share=on)", id,
                      (unsigned long long)timeout_ms);
            return -1;
        }
        /* What was read ahead needs no wait (the socket may have nothing more). */
        ready = !s->conn.out.len && vfio_user_reader_buffered(&s->reader);

        if (!ready && poll(&p, 1, (int)(timeout_ms - waited)) < 0 && errno != EINTR) {
            conn_fail(&s->conn, "poll: %s", strerror(errno));
            return -1;
        }
        if (s->conn.out.len) {
            conn_flush(&s->conn);
            continue;
        }
        switch (vfio_user_reader_read(&s->reader, s->conn.sock, &m, &err)) {
        case VFIO_USER_READ_AGAIN:
            continue;
        case VFIO_USER_READ_EOF:
        case VFIO_USER_READ_ERROR:
            conn_fail(&s->conn, "while waiting for DMA reply %u: %s", id,
                      err ? err : "client went away");
            free(err);
            return -1;
        case VFIO_USER_READ_MSG:
            break;
        }
        if ((m.hdr.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_COMMAND) {
            struct deferred *grown;
            void *copy = malloc(m.body_len ? m.body_len : 1);

            grown = s->n_deferred < MAX_DEFERRED
                        ? realloc(s->deferred, (s->n_deferred + 1) * sizeof(*grown)) : NULL;
            if (!grown || !copy) {
                free(copy);
                close_fds(m.fds, m.nfds);
                if (grown) {
                    s->deferred = grown;
                }
                conn_fail(&s->conn, "too many requests while waiting for DMA reply %u", id);
                return -1;
            }
            s->deferred = grown;
            memcpy(copy, m.body, m.body_len);
            m.body = copy;
            s->deferred[s->n_deferred++].msg = m;
            continue;
        }
        close_fds(m.fds, m.nfds);
        if (m.hdr.id != id || m.nfds) {
            conn_fail(&s->conn, "unexpected reply %u while waiting for DMA reply %u", m.hdr.id,
                      id);
            return -1;
        }
        if (m.hdr.flags & VFIO_USER_F_ERROR) {
            log_warn("%s: client refused DMA request %u: %s", s->conn.dev->id, id,
                     strerror((int)m.hdr.error));
            return -1;
        }
        if (!to_guest) {
            struct vfio_user_dma_access a;

            if (m.body_len != sizeof(a) + len) {
                conn_fail(&s->conn, "DMA_READ reply %u carries %zu bytes, expected %zu", id,
                          m.body_len, sizeof(a) + len);
                return -1;
            }
            memcpy(buf, m.body + sizeof(a), len);
        }
        return 0;
    }
    return -1;
}

/*
 * The budget refills at DMA_WAIT_SHARE_PERCENT of the time that passes, up
 * to DMA_WAIT_BUDGET_MS.  It belongs to the server: a client that stalled
 * us and reconnects finds it spent.
 */
static void refill_dma_wait(struct vfio_user_server *s)
{
    uint64_t now = loop_now_ns(), full = s->dma_wait_full;
    uint64_t gained = (now - s->dma_wait_refilled) / 100 * DMA_WAIT_SHARE_PERCENT;

    s->dma_wait_budget = gained >= full - s->dma_wait_budget ? full : s->dma_wait_budget + gained;
    s->dma_wait_refilled = now;
}

static void spend_dma_wait(struct vfio_user_server *s, uint64_t ns)
{
    s->dma_wait_budget = ns < s->dma_wait_budget ? s->dma_wait_budget - ns : 0;
}

static int remote_copy_chunk(struct vfio_user_server *s, uint64_t gpa, void *buf, size_t len,
                             bool to_guest)
{
    struct vfio_user_dma_access a = { .addr = gpa, .count = len };
    struct vfio_user_hdr hdr = {
        .id = s->next_id++, .cmd = to_guest ? VFIO_USER_DMA_WRITE : VFIO_USER_DMA_READ,
        .flags = VFIO_USER_F_COMMAND,
        .size = (uint32_t)(sizeof(hdr) + sizeof(a) + (to_guest ? len : 0)),
    };

    uint64_t start = loop_now_ns();
    int rc;

    count(s, to_guest ? COUNT_DMA_WRITE_REQ : COUNT_DMA_READ_REQ);
    send_msg(s, &hdr, &a, sizeof(a), buf, to_guest ? len : 0);
    rc = conn_is_open(&s->conn) ? wait_for_reply(s, hdr.id, buf, len, to_guest,
                                                 s->dma_wait_budget / 1000000) : -1;
    spend_dma_wait(s, loop_now_ns() - start);
    return rc;
}

static int remote_copy(void *opaque, uint64_t gpa, void *buf, size_t len, bool to_guest)
{
    struct vfio_user_server *s = opaque;
    uint8_t *p = buf;
    int rc = 0;

    /* A device copying from inside a reply wait would reorder the stream. */
    if (!conn_is_open(&s->conn) || s->in_remote_dma) {
        return -1;
    }
    refill_dma_wait(s);
    if (s->dma_wait_budget < 1000000) {
        /* The client kept us waiting for its replies: its copies fail, the others go on. */
        if (log_ratelimit_ok(&s->dma_budget_log)) {
            log_warn("%s: the client's DMA replies took their share of the time; "
                     "DMA through messages fails until it refills", s->conn.dev->id);
        }
        return -1;
    }
    s->in_remote_dma = true;
    while (len && rc == 0) {
        size_t chunk = len < s->client_max_data ? len : (size_t)s->client_max_data;

        rc = remote_copy_chunk(s, gpa, p, chunk, to_guest);
        gpa += chunk;
        p += chunk;
        len -= chunk;
    }
    s->in_remote_dma = false;
    if (s->n_deferred) {
        loop_bh_schedule(s->conn.loop, &s->deferred_bh);
    } else {
        conn_resume(&s->conn);     /* what the wait read ahead */
    }
    return rc;
}

/* --- device info and regions --------------------------------------------- */

static void handle_device_info(struct vfio_user_server *s, const struct vfio_user_msg *m)
{
    struct vfio_user_device_info info = {
        .argsz = sizeof(info), .flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
        .num_regions = VFIO_PCI_NUM_REGIONS, .num_irqs = VFIO_PCI_NUM_IRQS,
    };
    uint32_t argsz;

    memcpy(&argsz, m->body, sizeof(argsz));
    if (argsz < sizeof(info)) {
        refuse(s, m, EINVAL, "argsz %" PRIu32 " too small", argsz);
        return;
    }
    reply(s, m, &info, sizeof(info), NULL, 0);
}

static uint64_t region_size(const struct vfio_user_server *s, uint32_t index)
{
    if (index == VFIO_PCI_CONFIG_REGION) {
        return PCI_CONFIG_SIZE;
    }
    if (index < PCI_NUM_BARS) {
        return s->conn.dev->bars[index].size;   /* 0 for an unused BAR */
    }
    return 0;   /* no expansion ROM, no VGA */
}

static void handle_region_info(struct vfio_user_server *s, const struct vfio_user_msg *m)
{
    struct vfio_user_region_info info;

    memcpy(&info, m->body, sizeof(info));
    if (info.argsz < sizeof(info) || info.index >= VFIO_PCI_NUM_REGIONS) {
        refuse(s, m, EINVAL, "region %" PRIu32 " (argsz %" PRIu32 ") refused",
               info.index, info.argsz);
        return;
    }
    info.size = region_size(s, info.index);
    /* Registers are emulated: every access is a message, nothing is mmapped. */
    info.flags = info.size ? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0;
    info.argsz = sizeof(info);
    info.cap_offset = 0;
    info.offset = 0;
    reply(s, m, &info, sizeof(info), NULL, 0);
}

/* Config space in naturally aligned pieces of 4, 2 or 1 bytes. */
static void config_access(struct pci_device *dev, uint32_t off, uint8_t *data, uint32_t count,
                          bool write)
{
    while (count) {
        uint32_t n = (count >= 4 && !(off & 3)) ? 4 : (count >= 2 && !(off & 1)) ? 2 : 1;
        uint32_t v = 0;

        if (write) {
            for (uint32_t i = 0; i < n; i++) {
                v |= (uint32_t)data[i] << (8 * i);
            }
            pci_config_write(dev, off, v, n);
        } else {
            v = pci_config_read(dev, off, n);
            for (uint32_t i = 0; i < n; i++) {
                data[i] = (uint8_t)(v >> (8 * i));
            }
        }
        off += n;
        data += n;
        count -= n;
    }
}

static void bar_access(struct pci_device *dev, int bar, uint64_t off, uint8_t *data,
                       uint32_t count, bool write)
{
    uint64_t v = 0;

    if (count > sizeof(v)) {
        return;     /* checked by the caller; keeps the copy visibly in bounds */
    }
    if (write) {
        memcpy(&v, data, count);
        pci_bar_write(dev, bar, off, v, count);
    } else {
        v = pci_bar_read(dev, bar, off, count);
        memcpy(data, &v, count);
    }
}

static bool bar_enabled(const struct pci_device *dev, int bar)
{
    uint16_t cmd = pci_get_word(dev->config + PCI_COMMAND);

    return cmd & (dev->bars[bar].type == PCI_BAR_IO ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY);
}

static void handle_region_rw(struct vfio_user_server *s, const struct vfio_user_msg *m)
{
    bool write = m->hdr.cmd == VFIO_USER_REGION_WRITE;
    struct vfio_user_region_access a;
    uint8_t small[8], *data;
    uint64_t size;

    memcpy(&a, m->body, sizeof(a));
    size = a.region < VFIO_PCI_NUM_REGIONS ? region_size(s, a.region) : 0;
    if (a.count == 0 || a.count > size || a.offset > size - a.count) {
        refuse(s, m, EINVAL, "%" PRIu32 " bytes at 0x%" PRIx64 " of region %" PRIu32
               " (size 0x%" PRIx64 ") refused", a.count, a.offset, a.region, size);
        return;
    }
    if (a.region != VFIO_PCI_CONFIG_REGION && !pci_access_size_valid(a.count)) {
        refuse(s, m, EINVAL, "a %" PRIu32 "-byte access to BAR %" PRIu32 " refused",
               a.count, a.region);
        return;
    }
    /* As VFIO: a BAR whose space COMMAND turned off does not answer. */
    if (a.region != VFIO_PCI_CONFIG_REGION && !bar_enabled(s->conn.dev, (int)a.region)) {
        refuse(s, m, EIO, "BAR %" PRIu32 " accessed with its decoding off", a.region);
        return;
    }
    data = write ? m->body + sizeof(a) : a.count <= sizeof(small) ? small : malloc(a.count);
    if (!data) {
        refuse(s, m, ENOMEM, "no memory for a %" PRIu32 "-byte read", a.count);
        return;
    }
    if (a.region == VFIO_PCI_CONFIG_REGION) {
        config_access(s->conn.dev, (uint32_t)a.offset, data, a.count, write);
    } else {
        bar_access(s->conn.dev, (int)a.region, a.offset, data, a.count, write);
    }
    /* Nothing goes out if the device's access ended the connection. */
    /* A write's reply goes at the round's end: what it started is done then (conn.h). */
    reply_as(s, m, &a, sizeof(a), write ? NULL : data, write ? 0 : a.count,
             write ? conn_send_late : conn_send);
    if (write) {
        intx_resignal_now(s);   /* the guest has had its say about the interrupt */
    }
    if (data != small && !write) {
        free(data);
    }
}

/* --- interrupts ----------------------------------------------------------- */

static void intx_fire(struct vfio_user_server *s)
{
    if (s->intx.trigger >= 0) {
        count(s, COUNT_INTX_SIGNALS);
    }
    conn_signal_eventfd(&s->conn, s->intx.trigger, "INTx eventfd");
}

/* VFIO's INTx is level-triggered and automasked: one signal per unmask. */
static void intx_update(struct vfio_user_server *s)
{
    if (s->intx.line_high && !s->intx.masked && s->intx.trigger >= 0) {
        s->intx.masked = true;
        intx_fire(s);
    }
}

static void intx_set_level(struct conn *c, bool level)
{
    struct vfio_user_server *s = server_of(c);

    s->intx.line_high = level;
    if (!level && s->intx.resignal_pending) {
        intx_resignal_cancel(s);
        s->intx.masked = false;
    }
    intx_update(s);
}

static void intx_unmask(struct vfio_user_server *s)
{
    intx_resignal_cancel(s);
    s->intx.masked = false;
    intx_update(s);
}

static void intx_resignal_cancel(struct vfio_user_server *s)
{
    struct itimerspec off = { 0 };

    if (s->intx.resignal_pending) {
        s->intx.resignal_pending = false;
        timerfd_settime(s->intx.resignal_timer, 0, &off, NULL);
    }
}

/*
 * QEMU without KVM takes a guest's first register access after an
 * interrupt for its end and unmasks by message before that access, so
 * before the handler has cleared the cause.  Signalling the still-high line
 * at once would cost the guest a spurious interrupt (two more round trips)
 * per interrupt; it is signalled after the guest's next register write if
 * still high then, or after RESIGNAL_DELAY_NS if the guest writes nothing.
 */
static void intx_unmask_by_message(struct vfio_user_server *s)
{
    struct itimerspec at = { .it_value = { .tv_nsec = RESIGNAL_DELAY_NS } };

    if (!s->intx.line_high || s->intx.trigger < 0 || s->intx.resignal_timer < 0 ||
        timerfd_settime(s->intx.resignal_timer, 0, &at, NULL) < 0) {
        intx_unmask(s);
        return;
    }
    s->intx.resignal_pending = true;    /* masked until then */
}

static void intx_resignal_now(struct vfio_user_server *s)
{
    if (s->intx.resignal_pending) {
        intx_unmask(s);
    }
}

static void on_resignal_timer(void *opaque, uint32_t events)
{
    struct vfio_user_server *s = opaque;
    uint64_t expirations;

    (void)events;
    if (read(s->intx.resignal_timer, &expirations, sizeof(expirations)) > 0) {
        intx_resignal_now(s);
    }
}

static void on_unmask_fd(void *opaque, uint32_t events)
{
    struct vfio_user_server *s = opaque;

    (void)events;
    if (conn_drain_eventfd(&s->conn, &s->intx.unmask_watch, s->intx.unmask, "INTx unmask fd")) {
        count(s, COUNT_IRQ_UNMASK_FD);
        intx_unmask(s);
    }
}

static int take_eventfd(struct vfio_user_msg *m, int *slot)
{
    int fd = m->fds[0];

    if (!fd_is_eventfd(fd)) {
        return -1;
    }
    /* Its flags stay the client's: no access of ours depends on them (io/eventfd.h). */
    if (*slot >= 0) {
        close(*slot);
    }
    *slot = fd;
    m->fds[0] = -1;
    m->nfds = 0;
    return 0;
}

static int intx_set_eventfd(struct vfio_user_server *s, struct vfio_user_msg *m,
                            uint32_t action)
{
    if (action == VFIO_IRQ_SET_ACTION_MASK) {
        return EINVAL;  /* VFIO has no mask eventfd for INTx */
    }
    if (action == VFIO_IRQ_SET_ACTION_TRIGGER) {
        if (m->nfds == 0) {
            intx_disable(s);
            return 0;
        }
        if (take_eventfd(m, &s->intx.trigger) < 0) {
            return EINVAL;
        }
        s->intx.masked = false;
        intx_update(s);
        return 0;
    }
    loop_watch_remove(s->conn.loop, &s->intx.unmask_watch);
    if (m->nfds == 0) {
        if (s->intx.unmask >= 0) {
            close(s->intx.unmask);
        }
        s->intx.unmask = -1;
        return 0;
    }
    if (take_eventfd(m, &s->intx.unmask) < 0 ||
        loop_watch_add(s->conn.loop, &s->intx.unmask_watch, s->intx.unmask, EPOLLIN,
                       on_unmask_fd, s) < 0) {
        return EINVAL;
    }
    return 0;
}

static int set_intx(struct vfio_user_server *s, struct vfio_user_msg *m,
                    const struct vfio_user_irq_set *set)
{
    uint32_t data = set->flags & VFIO_IRQ_SET_DATA_MASK;
    uint32_t action = set->flags & VFIO_IRQ_SET_ACTION_MASK_ALL;
    bool on = true;

    if (set->start != 0 || set->count > 1) {
        return EINVAL;
    }
    if (data == VFIO_IRQ_SET_DATA_EVENTFD) {
        return intx_set_eventfd(s, m, action);
    }
    if (set->count == 0) {
        /* DATA_NONE with count 0 and TRIGGER: interrupts off. */
        if (action != VFIO_IRQ_SET_ACTION_TRIGGER || data != VFIO_IRQ_SET_DATA_NONE) {
            return EINVAL;
        }
        intx_disable(s);
        return 0;
    }
    if (data == VFIO_IRQ_SET_DATA_BOOL) {
        on = m->body[sizeof(*set)] != 0;
    }
    if (!on) {
        return 0;
    }
    switch (action) {
    case VFIO_IRQ_SET_ACTION_MASK:
        intx_resignal_cancel(s);
        s->intx.masked = true;
        break;
    case VFIO_IRQ_SET_ACTION_UNMASK:
        intx_unmask_by_message(s);
        break;
    case VFIO_IRQ_SET_ACTION_TRIGGER:
        intx_fire(s);   /* a test of the client's handler, as VFIO allows */
        break;
    }
    return 0;
}

static void handle_set_irqs(struct vfio_user_server *s, struct vfio_user_msg *m)
{
    struct vfio_user_irq_set set;
    uint32_t action;
    int rc;

    memcpy(&set, m->body, sizeof(set));
    action = set.flags & VFIO_IRQ_SET_ACTION_MASK_ALL;
    if (action != VFIO_IRQ_SET_ACTION_MASK && action != VFIO_IRQ_SET_ACTION_UNMASK &&
        action != VFIO_IRQ_SET_ACTION_TRIGGER) {
        refuse(s, m, EINVAL, "flags 0x%" PRIx32 ": not exactly one action", set.flags);
        return;
    }
    if (set.flags & ~(uint32_t)(VFIO_IRQ_SET_DATA_MASK | VFIO_IRQ_SET_ACTION_MASK_ALL)) {
        refuse(s, m, EINVAL, "unknown flags 0x%" PRIx32, set.flags);
        return;
    }
    if (set.index == VFIO_PCI_INTX_IRQ && s->conn.dev->config[PCI_INTERRUPT_PIN]) {
        rc = set_intx(s, m, &set);
    } else if (set.index < VFIO_PCI_NUM_IRQS && set.count == 0 &&
               action == VFIO_IRQ_SET_ACTION_TRIGGER) {
        rc = 0;     /* turning off interrupts the device does not have */
    } else {
        rc = EINVAL;
    }
    if (rc) {
        refuse(s, m, rc, "index %" PRIu32 " start %" PRIu32 " count %" PRIu32
               " flags 0x%" PRIx32 " refused", set.index, set.start, set.count, set.flags);
        return;
    }
    reply(s, m, NULL, 0, NULL, 0);
}

static void handle_irq_info(struct vfio_user_server *s, const struct vfio_user_msg *m)
{
    struct vfio_user_irq_info info;

    memcpy(&info, m->body, sizeof(info));
    if (info.argsz < sizeof(info) || info.index >= VFIO_PCI_NUM_IRQS) {
        refuse(s, m, EINVAL, "index %" PRIu32 " (argsz %" PRIu32 ") refused",
               info.index, info.argsz);
        return;
    }
    info.argsz = sizeof(info);
    info.flags = VFIO_IRQ_INFO_EVENTFD;
    info.count = 0;
    if (info.index == VFIO_PCI_INTX_IRQ) {
        info.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
        info.count = s->conn.dev->config[PCI_INTERRUPT_PIN] ? 1 : 0;
    } else if (info.index == VFIO_PCI_MSI_IRQ || info.index == VFIO_PCI_MSIX_IRQ) {
        info.flags |= VFIO_IRQ_INFO_NORESIZE;
    }
    reply(s, m, &info, sizeof(info), NULL, 0);
}

/* --- dispatch ------------------------------------------------------------- */

static void dispatch(struct vfio_user_server *s, struct vfio_user_msg *m)
{
    char *err = NULL;
    int rc;

    if ((m->hdr.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_COMMAND) {
        conn_fail(&s->conn, "reply %u to nothing we asked", m->hdr.id);
        return;
    }
    count(s, COUNT_MSGS);
    rc = vfio_user_check_request(m, &err);
    if (rc) {
        refuse(s, m, rc, "%s", err ? err : "invalid");
        free(err);
        return;
    }
    count(s, count_kind(m));
    if (!s->negotiated && m->hdr.cmd != VFIO_USER_VERSION) {
        reply_error(s, m, EINVAL);
        conn_fail(&s->conn, "%s before VERSION", vfio_user_cmd_name(m->hdr.cmd));
        return;
    }
    switch (m->hdr.cmd) {
    case VFIO_USER_VERSION:
        if (s->negotiated) {
            refuse(s, m, EINVAL, "version already negotiated");
            return;
        }
        handle_version(s, m);
        break;
    case VFIO_USER_DMA_MAP:
        handle_dma_map(s, m);
        break;
    case VFIO_USER_DMA_UNMAP:
        handle_dma_unmap(s, m);
        break;
    case VFIO_USER_DEVICE_GET_INFO:
        handle_device_info(s, m);
        break;
    case VFIO_USER_DEVICE_GET_REGION_INFO:
        handle_region_info(s, m);
        break;
    case VFIO_USER_DEVICE_GET_IRQ_INFO:
        handle_irq_info(s, m);
        break;
    case VFIO_USER_DEVICE_SET_IRQS:
        handle_set_irqs(s, m);
        break;
    case VFIO_USER_REGION_READ:
    case VFIO_USER_REGION_WRITE:
        handle_region_rw(s, m);
        break;
    case VFIO_USER_DEVICE_RESET:
        pci_device_reset(s->conn.dev);
        intx_resignal_cancel(s);
        s->intx.masked = false;
        reply(s, m, NULL, 0, NULL, 0);
        break;
    }
}

static void serve_deferred(void *opaque)
{
    struct vfio_user_server *s = opaque;

    while (s->n_deferred && conn_is_open(&s->conn) && !s->in_remote_dma) {
        struct vfio_user_msg m = s->deferred[0].msg;

        memmove(&s->deferred[0], &s->deferred[1], (s->n_deferred - 1) * sizeof(*s->deferred));
        s->n_deferred--;
        dispatch(s, &m);
        close_fds(m.fds, m.nfds);
        free(m.body);
    }
    if (!s->n_deferred) {
        conn_resume(&s->conn);     /* what came after them, read ahead */
    }
}

/* --- the connection and the server ---------------------------------------- */

static enum msg_read serve_one(struct conn *c, char **err)
{
    struct vfio_user_server *s = server_of(c);
    enum vfio_user_read_result r;
    struct vfio_user_msg m;

    if (s->n_deferred) {
        serve_deferred(s);      /* they came first */
        if (s->n_deferred || !conn_is_open(c)) {
            return MSG_READ_AGAIN;
        }
    }
    r = vfio_user_reader_read(&s->reader, c->sock, &m, err);
    if (r == VFIO_USER_READ_MSG) {
        dispatch(s, &m);
        close_fds(m.fds, m.nfds);
    }
    return (enum msg_read)r;
}

static bool buffered(struct conn *c)
{
    return vfio_user_reader_buffered(&server_of(c)->reader);
}

static const struct conn_ops client_conn_ops = {
    .name = "vfio-user connection",
    .peer = "vfio-user client",
    .serve_one = serve_one,
    .buffered = buffered,
    .intx_set_level = intx_set_level,
    .closed = client_gone,
};

static void on_listen(void *opaque, uint32_t events)
{
    struct vfio_user_server *s = opaque;
    int fd;

    (void)events;
    fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            log_warn("%s: accept on %s: %s", s->conn.dev->id, s->path, strerror(errno));
        }
        return;
    }
    if (conn_is_open(&s->conn)) {
        /* Not reached while the listening watch is paused; kept as a guard. */
        close(fd);
        return;
    }
    s->next_id = 1;
    if (conn_attach(&s->conn, fd) < 0) {
        log_error("%s: cannot watch the client socket", s->conn.dev->id);
        return;
    }
    memset(s->counts, 0, sizeof(s->counts));
    s->n_clients++;
    s->counts_pending = true;
    /* One client at a time: others wait in the backlog until this one goes. */
    loop_watch_modify(s->conn.loop, &s->listen_watch, 0);
    log_info("%s: vfio-user client connected on %s", s->conn.dev->id, s->path);
}

/*
 * -object x-vfio-user-server,id=ID,device=DEVID,socket.type=unix,socket.path=PATH
 * (QEMU's form; the JSON form nests "socket" as an object).
 */
static struct server *create(struct opts *o, const char *id, char **err)
{
    const char *type = opts_get(o, "socket.type"), *path = opts_get(o, "socket.path");
    struct vfio_user_server *s;

    if (!type || strcmp(type, "unix") || !path || !*path) {
        error_setf(err, "x-vfio-user-server '%s': needs socket.type=unix and socket.path=PATH",
                   id);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(path))) {
        free(s);
        error_setf(err, "out of memory");
        return NULL;
    }
    s->server.ops = &vfio_user_server_ops;
    s->listen_fd = -1;
    s->listen_watch.fd = -1;
    s->dma_wait_full = (uint64_t)DMA_WAIT_BUDGET_MS * 1000000;
    s->dma_wait_budget = s->dma_wait_full;
    s->intx.trigger = s->intx.unmask = s->intx.resignal_timer = -1;
    s->intx.unmask_watch.fd = -1;
    s->intx.resignal_watch.fd = -1;
    loop_bh_init(&s->deferred_bh, serve_deferred, s);
    loop_bh_init(&s->reset_bh, reset_for_next_client, s);
    vfio_user_reader_init_read_ahead(&s->reader);
    conn_init(&s->conn, &client_conn_ops);
    s->conn.dma.remote = (struct dma_remote){ .copy = remote_copy, .opaque = s };
    return &s->server;
}

static void describe(const struct server *srv, char *buf, size_t len)
{
    snprintf(buf, len, "socket '%s'", ((const struct vfio_user_server *)srv)->path);
}

static const char *socket_path(const struct server *srv)
{
    return ((const struct vfio_user_server *)srv)->path;
}

/* Listens for client after client: it never ends by itself, so 'ended' is not called. */
static int start(struct server *srv, struct loop *loop, struct pci_device *dev,
                 server_ended_fn *ended, void *opaque, char **err)
{
    struct vfio_user_server *s = (struct vfio_user_server *)srv;

    (void)ended;
    (void)opaque;
    conn_bind(&s->conn, loop, dev);
    s->dma_wait_refilled = loop_now_ns();
    s->intx.resignal_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if ((s->listen_fd = sock_listen_unix(s->path, err)) < 0) {
        return -1;
    }
    if (s->intx.resignal_timer < 0 ||
        loop_watch_add(loop, &s->intx.resignal_watch, s->intx.resignal_timer, EPOLLIN,
                       on_resignal_timer, s) < 0) {
        error_setf(err, "cannot set up the interrupt timer: %s", strerror(errno));
        return -1;
    }
    if (loop_watch_add(loop, &s->listen_watch, s->listen_fd, EPOLLIN, on_listen, s) < 0) {
        error_setf(err, "cannot watch '%s'", s->path);
        return -1;
    }
    return 0;
}

/* Closes the client and the listening socket and removes the socket file. */
static void server_free(struct server *srv)
{
    struct vfio_user_server *s = (struct vfio_user_server *)srv;

    if (!s) {
        return;
    }
    if (s->conn.bound) {    /* started: it has a loop, maybe a client */
        /* A client gone just before is logged as gone. */
        const char *event = conn_is_open(&s->conn) ? "shutdown" : "disconnect";

        loop_bh_cancel(s->conn.loop, &s->reset_bh);
        conn_unbind(&s->conn);
        forget_client(s);
        log_counts(s, event);
        loop_watch_remove(s->conn.loop, &s->listen_watch);
        loop_watch_remove(s->conn.loop, &s->intx.resignal_watch);
    }
    if (s->intx.resignal_timer >= 0) {
        close(s->intx.resignal_timer);
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        unlink(s->path);
    }
    vfio_user_reader_free(&s->reader);
    free(s->path);
    free(s);
}

void vfio_user_server_set_dma_wait_budget(struct server *srv, unsigned ms)
{
    struct vfio_user_server *s = (struct vfio_user_server *)srv;

    s->dma_wait_full = s->dma_wait_budget = (uint64_t)ms * 1000000;
}

const struct server_ops vfio_user_server_ops = {
    .object_type = "x-vfio-user-server",
    .device_key = "device",
    .endpoint_usage = "socket.type=unix,socket.path=PATH",
    .endpoint_keys = (const char *const[]){ "socket.type", "socket.path", NULL },
    .create = create,
    .describe = describe,
    .socket_path = socket_path,
    .start = start,
    .free = server_free,
};
