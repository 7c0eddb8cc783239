// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/relay.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"

/* --- messages and queues ----------------------------------------------------- */

struct relay_msg *relay_msg_new(size_t len)
{
    struct relay_msg *m = malloc(sizeof(*m) + len);

    if (m) {
        memset(m, 0, sizeof(*m));
        m->refs = 1;
        m->len = len;
    }
    return m;
}

void relay_msg_ref(struct relay_msg *m)
{
    m->refs++;
}

void relay_msg_unref(struct relay_msg *m)
{
    if (m && --m->refs == 0) {
        close_fds(m->fds, m->nfds);
        free(m);
    }
}

static void queue_append(struct relay_queue *q, struct relay_msg *m)
{
    m->next = NULL;
    m->prev = q->tail;
    if (q->tail) {
        q->tail->next = m;
    } else {
        q->head = m;
    }
    q->tail = m;
    if (!q->cursor) {
        q->cursor = m;
        q->cursor_off = 0;
    }
    q->count++;
    q->bytes += m->len;
}

static void queue_remove(struct relay_queue *q, struct relay_msg *m)
{
    if (q->cursor == m) {
        q->cursor = m->next;
        q->cursor_off = 0;
    }
    if (m->prev) {
        m->prev->next = m->next;
    } else {
        q->head = m->next;
    }
    if (m->next) {
        m->next->prev = m->prev;
    } else {
        q->tail = m->prev;
    }
    m->prev = m->next = NULL;
    q->count--;
    q->bytes -= m->len;
}

static void queue_clear(struct relay_queue *q)
{
    while (q->head) {
        struct relay_msg *m = q->head;

        queue_remove(q, m);
        relay_msg_unref(m);
    }
}

/* Puts 'front' (a whole queue) before q's messages; everything is to be sent again. */
static void queue_splice_front(struct relay_queue *q, struct relay_queue *front)
{
    if (front->head) {
        front->tail->next = q->head;
        if (q->head) {
            q->head->prev = front->tail;
        } else {
            q->tail = front->tail;
        }
        q->head = front->head;
        q->count += front->count;
        q->bytes += front->bytes;
    }
    *front = (struct relay_queue){ 0 };
    q->cursor = q->head;
    q->cursor_off = 0;
}

/* --- sending ------------------------------------------------------------------- */

static bool is_device(const struct relay_link *l, const struct relay_side *side)
{
    return side == &l->dev;
}

/*
 * A posted message may have been read or not when a device process dies:
 * it is kept, sent whole, until a later answer says the device read it.
 * Only so many: a VMM that only posts does not fill the journal.
 */
static void forget_oldest_posted(struct relay_queue *q)
{
    size_t kept = 0;
    struct relay_msg *oldest = NULL;

    for (struct relay_msg *m = q->head; m && m->sent; m = m->next) {
        if (m->posted) {
            oldest = oldest ? oldest : m;
            kept++;
        }
    }
    if (kept > RELAY_MAX_POSTED_KEPT) {
        queue_remove(q, oldest);
        relay_msg_unref(oldest);
    }
}

/*
 * Sends from the cursor on.  A message sent whole leaves the queue unless
 * it waits for a reply (the journal keeps it to send again).  1: the socket
 * is full, 0: all sent, -1 with errno.
 */
static int side_send(struct relay_link *l, struct relay_side *side)
{
    struct relay_queue *q = &side->out;

    while (q->cursor) {
        struct relay_msg *m = q->cursor;
        struct iovec iov = { m->bytes + q->cursor_off, m->len - q->cursor_off };
        bool first = q->cursor_off == 0;
        ssize_t n = sock_send(side->sock, &iov, 1, first ? m->fds : NULL, first ? m->nfds : 0,
                              MSG_DONTWAIT);

        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
        }
        q->cursor_off += (size_t)n;
        if (q->cursor_off < m->len) {
            continue;
        }
        m->sent = true;
        q->cursor = m->next;
        q->cursor_off = 0;
        if (is_device(l, side) && l->proto->sent_to_device) {
            l->proto->sent_to_device(l, m);
        }
        if (!m->awaits_reply && !m->posted) {
            queue_remove(q, m);
            relay_msg_unref(m);
        } else if (m->posted) {
            forget_oldest_posted(q);
        }
    }
    return 0;
}

static bool vmm_readable(const struct relay_link *l)
{
    return l->dev.out.count < RELAY_MAX_PENDING && l->dev.out.bytes < RELAY_MAX_PENDING_BYTES &&
           l->vmm.out.bytes < RELAY_VMM_HIGH_WATER;
}

static void set_events(struct relay_link *l, struct relay_side *side, uint32_t events)
{
    if (side->sock >= 0 && side->watch.events != events) {
        loop_watch_modify(l->loop, &side->watch, events);
    }
}

/* What each side's watch waits for now: reading under the limits, writing what waits. */
static void update_watches(struct relay_link *l)
{
    set_events(l, &l->vmm, (vmm_readable(l) ? EPOLLIN : 0) | (l->vmm.out.cursor ? EPOLLOUT : 0));
    set_events(l, &l->dev, (l->vmm.out.bytes < RELAY_VMM_HIGH_WATER ? EPOLLIN : 0) |
                           (l->dev.out.cursor ? EPOLLOUT : 0));
}

static void flush(struct relay_link *l)
{
    if (l->vmm.sock >= 0 && side_send(l, &l->vmm) < 0) {
        log_error("%s: sending to the VMM: %s", l->name, strerror(errno));
        relay_close_vmm(l, true);
        return;
    }
    if (l->dev.sock >= 0 && side_send(l, &l->dev) < 0) {
        /* The device process is going; its death brings the next one. */
        relay_detach_device(l);
        l->events->device_closed(l);
        return;
    }
    update_watches(l);
}

void relay_to_device(struct relay_link *l, struct relay_msg *m)
{
    queue_append(&l->dev.out, m);
}

void relay_to_vmm(struct relay_link *l, struct relay_msg *m)
{
    if (l->vmm.sock < 0) {
        relay_msg_unref(m);     /* the VMM has gone: nobody to tell */
        return;
    }
    queue_append(&l->vmm.out, m);
}

void relay_replay(struct relay_link *l, struct relay_msg *m)
{
    relay_msg_ref(m);
    m->replayed = true;
    queue_append(&l->replay, m);
}

/* The device answered 'answered': it had read every posted message sent before. */
static void forget_posted_before(struct relay_queue *q, struct relay_msg *answered)
{
    struct relay_msg *m = q->head, *next;

    for (; m && m != answered; m = next) {
        next = m->next;
        if (m->posted) {
            queue_remove(q, m);
            relay_msg_unref(m);
        }
    }
}

struct relay_msg *relay_take_answered(struct relay_link *l,
                                      bool (*match)(const struct relay_msg *m, const void *arg),
                                      const void *arg)
{
    for (struct relay_msg *m = l->dev.out.head; m && m->sent; m = m->next) {
        if (m->awaits_reply && match(m, arg)) {
            forget_posted_before(&l->dev.out, m);
            queue_remove(&l->dev.out, m);
            return m;
        }
    }
    return NULL;
}

void relay_warn(struct relay_link *l, const char *fmt, ...)
{
    char line[256];
    va_list ap;

    if (!log_ratelimit_ok(&l->log)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log_warn("%s: %s", l->name, line);
}

/* --- reading -------------------------------------------------------------------- */

static void on_vmm(void *opaque, uint32_t events)
{
    struct relay_link *l = opaque;

    (void)events;
    while (l->vmm.sock >= 0 && vmm_readable(l)) {
        struct relay_msg *m = NULL;
        char *err = NULL;

        switch (l->proto->read(l, true, l->vmm.sock, &m, &err)) {
        case MSG_READ_WHOLE:
            if (l->proto->from_vmm(l, m, &err) == 0) {
                continue;
            }
            __attribute__((fallthrough));   /* clang takes no comment for it */
        case MSG_READ_ERROR:
            log_error("%s: closing the VMM's connection: %s", l->name, err ? err : "receive error");
            free(err);
            relay_close_vmm(l, true);
            return;
        case MSG_READ_EOF:
            log_info("%s: the VMM disconnected", l->name);
            relay_close_vmm(l, false);
            return;
        case MSG_READ_AGAIN:
            break;
        }
        break;
    }
    flush(l);
}

/*
 * Reads what the device sent.  'dying': the process has gone, read what it
 * left in the socket and stop there.  -1: the side is closed.
 */
static int read_device(struct relay_link *l, bool dying)
{
    while (l->dev.sock >= 0 && (dying || l->vmm.out.bytes < RELAY_VMM_HIGH_WATER)) {
        struct relay_msg *m = NULL;
        char *err = NULL;

        switch (l->proto->read(l, false, l->dev.sock, &m, &err)) {
        case MSG_READ_WHOLE:
            if (l->proto->from_device(l, m, &err) == 0) {
                continue;
            }
            if (!dying) {
                l->events->device_fault(l, err ? err : "protocol error");
            }
            free(err);
            return -1;
        case MSG_READ_ERROR:
            if (!dying) {
                l->events->device_fault(l, err ? err : "receive error");
            }
            free(err);
            return -1;
        case MSG_READ_EOF:
            return -1;
        case MSG_READ_AGAIN:
            return 0;
        }
    }
    return 0;
}

static void on_device(void *opaque, uint32_t events)
{
    struct relay_link *l = opaque;

    (void)events;
    if (read_device(l, false) < 0 && l->dev.sock >= 0) {
        relay_detach_device(l);
        l->events->device_closed(l);
        return;
    }
    flush(l);
}

/* --- the link ---------------------------------------------------------------------- */

void relay_link_init(struct relay_link *l, const struct relay_proto *proto, struct loop *loop,
                     const char *name, const struct relay_events *events, void *opaque)
{
    *l = (struct relay_link){
        .proto = proto, .loop = loop, .name = name, .events = events, .opaque = opaque,
    };
    l->vmm.sock = l->dev.sock = -1;
    l->vmm.watch.fd = l->dev.watch.fd = -1;
    l->state = proto->state_new();
}

static void close_side(struct relay_link *l, struct relay_side *side)
{
    if (side->sock >= 0) {
        loop_watch_remove(l->loop, &side->watch);
        close(side->sock);
        side->sock = -1;
    }
}

void relay_link_free(struct relay_link *l)
{
    close_side(l, &l->dev);
    close_side(l, &l->vmm);
    queue_clear(&l->dev.out);
    queue_clear(&l->vmm.out);
    queue_clear(&l->replay);
    if (l->state) {
        l->proto->forget_session(l);
        l->proto->state_free(l->state);
        l->state = NULL;
    }
}

int relay_attach_vmm(struct relay_link *l, int sock)
{
    if (loop_watch_add(l->loop, &l->vmm.watch, sock, EPOLLIN, on_vmm, l) < 0) {
        close(sock);
        return -1;
    }
    l->vmm.sock = sock;
    return 0;
}

bool relay_vmm_connected(const struct relay_link *l)
{
    return l->vmm.sock >= 0;
}

void relay_close_vmm(struct relay_link *l, bool error)
{
    if (l->vmm.sock < 0) {
        return;
    }
    close_side(l, &l->vmm);
    close_side(l, &l->dev);     /* the device ends the session as for a client that left */
    queue_clear(&l->vmm.out);
    queue_clear(&l->dev.out);
    l->proto->device_lost(l);
    l->proto->forget_session(l);
    l->events->vmm_closed(l, error);
}

int relay_attach_device(struct relay_link *l, int sock)
{
    if (loop_watch_add(l->loop, &l->dev.watch, sock, EPOLLIN | EPOLLOUT, on_device, l) < 0) {
        close(sock);
        return -1;
    }
    l->dev.sock = sock;
    l->generation++;
    l->proto->replay_session(l);
    queue_splice_front(&l->dev.out, &l->replay);
    flush(l);
    return 0;
}

bool relay_device_attached(const struct relay_link *l)
{
    return l->dev.sock >= 0;
}

void relay_detach_device(struct relay_link *l)
{
    struct relay_msg *m, *next;

    if (l->dev.sock < 0) {
        return;
    }
    read_device(l, true);       /* answers it sent before it died still count */
    close_side(l, &l->dev);
    /*
     * Replays and answers to its own requests belong to that process; the
     * rest goes again, whole, to the next.
     */
    for (m = l->dev.out.head; m; m = next) {
        next = m->next;
        m->sent = false;
        if (m->replayed || m->for_this_process) {
            queue_remove(&l->dev.out, m);
            relay_msg_unref(m);
        }
    }
    l->dev.out.cursor = l->dev.out.head;
    l->dev.out.cursor_off = 0;
    l->proto->device_lost(l);
    if (l->vmm.sock >= 0) {
        flush(l);
    }
}
