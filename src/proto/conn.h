/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The connection core of the protocol servers: one peer on one socket,
 * serving one PCI function.  It holds what every protocol does alike: the
 * socket's watch and read loop, replies buffered with back-pressure, the
 * rate-limited log of refused requests, the device's INTx sink and DMA
 * space, and the end of the connection.  A protocol (mpqemu-server.c,
 * vfio-user-server.c) embeds a struct conn and gives it a table of
 * operations: how to read and act on one message, where the INTx line
 * goes, what to do when the peer has gone.
 *
 *   loop ─> conn: flush, read loop ─> ops->serve_one ─> pci_config_*, pci_bar_*
 *   protocol ─> conn_send, conn_refusal, conn_fail
 *   device ─> pci_set_irq ─> ops->intx_set_level;  device ─> dma_* ─> conn.dma
 */
#ifndef MPQEMU_PROTO_CONN_H
#define MPQEMU_PROTO_CONN_H

#include <stdarg.h>
#include <stdbool.h>
#include <sys/uio.h>

#include "io/outbuf.h"
#include "io/sock-io.h"
#include "pci/dma.h"
#include "util/log.h"
#include "util/loop.h"

struct conn;
struct pci_device;

struct conn_ops {
    const char *name;       /* in log lines: "connection", "vfio-user connection" */
    const char *peer;       /* in log lines: "proxy", "vfio-user client" */
    /*
     * Reads one message from c->sock and acts on it.  MSG_READ_AGAIN also
     * when the protocol holds reading back; on MSG_READ_ERROR, *err may say
     * why.
     */
    enum msg_read (*serve_one)(struct conn *c, char **err);
    /*
     * Optional: whether a message was read ahead and waits for serve_one,
     * which the socket's watch would not wake us for.
     */
    bool (*buffered)(struct conn *c);
    /* The device's INTx line changed. */
    void (*intx_set_level)(struct conn *c, bool level);
    /* The peer has gone (the socket is closed); 'error': dropped for a fault. */
    void (*closed)(struct conn *c, bool error);
};

struct conn {
    const struct conn_ops *ops;
    struct loop *loop;
    struct pci_device *dev;     /* once bound */
    int sock;                   /* the peer, or -1 */
    struct loop_watch watch;
    struct outbuf out;          /* replies the peer has not read yet */
    struct dma_space dma;       /* guest memory as the peer gave it */
    bool bound;                 /* the device's INTx and DMA come here */
    bool serving;               /* in serve_one */
    struct loop_bh resume_bh;   /* serves what was read ahead once replies drain */
    struct loop_bh flush_bh;    /* sends conn_send_late's replies at the round's end */
    struct log_ratelimit refusal_log;
    struct log_ratelimit eventfd_log;   /* INTx eventfds the peer keeps full */
    bool eventfd_full;                  /* the last INTx signal found its counter full */
};

void conn_init(struct conn *c, const struct conn_ops *ops);
/* Serves 'dev' from 'loop': the device's INTx sink and DMA space become ours. */
void conn_bind(struct conn *c, struct loop *loop, struct pci_device *dev);
/* Drops the peer without calling ops->closed, and gives the device back. */
void conn_unbind(struct conn *c);

/* Serves the peer on 'sock', which it takes; -1 (sock closed) if it cannot. */
int conn_attach(struct conn *c, int sock);
static inline bool conn_is_open(const struct conn *c)
{
    return c->sock >= 0;
}

/* conn_send or conn_send_late. */
typedef void conn_send_fn(struct conn *c, const struct iovec *iov, int iovcnt);
/* Queues the iovecs whole and sends what the peer takes; nothing once closed. */
void conn_send(struct conn *c, const struct iovec *iov, int iovcnt);
/*
 * The reply to a write of the peer's, which may have started work (a
 * doorbell): queued like conn_send's but sent at the end of the loop's
 * round, so that a peer waiting for it then finds that work done as far as
 * the round took it (a page-cache read or write, a completion in guest
 * memory) rather than an interrupt to wait for.  Replies sent after it in
 * the round go with it, in order.
 */
void conn_send_late(struct conn *c, const struct iovec *iov, int iovcnt);
/* Sends what waits, and stops reading while too much does. */
void conn_flush(struct conn *c);
/*
 * Serves, from the loop, what the protocol read ahead and left when it
 * held reading back (ops->buffered): the socket would not wake us for it.
 */
void conn_resume(struct conn *c);

/* Closes the socket and calls ops->closed; nothing if already closed. */
void conn_close(struct conn *c, bool error);
/* A fault that ends the connection: logged with the reason, then closed. */
void conn_fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * A request the peer got wrong but may recover from: logged, rate-limited,
 * as "DEVICE: CONTEXT: what" (no CONTEXT when NULL).  The protocol answers.
 */
void conn_refusal(struct conn *c, const char *context, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conn_vrefusal(struct conn *c, const char *context, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/*
 * INTx through the peer's eventfds ('what' names one in log lines: "irqfd",
 * "resample fd").  Signalling adds one; a counter the peer keeps at its
 * maximum is logged, rate-limited: the signal is pending there already.
 * Draining empties a watched one; one that cannot be read without waiting
 * (no eventfd after all) is logged and no longer watched, or its
 * level-triggered watch would spin: false.  Nothing for an fd of -1 (none
 * given yet) or a w not watched.
 */
void conn_signal_eventfd(struct conn *c, int fd, const char *what);
bool conn_drain_eventfd(struct conn *c, struct loop_watch *w, int fd, const char *what);

#endif
