/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The keeper's relay (-restart on, docs/restart.md): for each PCI device,
 * the VMM's connection stays with the keeper and the device process talks
 * to the keeper only.  The relay forwards messages both ways and journals
 * what a new device process would need:
 *
 *   VMM ──▶ keeper: read (the protocol's wire reader), checked, appended to
 *           the device journal, sent on to the device process
 *   device ──▶ keeper: replies take their request out of the journal and go
 *           to the VMM; the device's own requests (vfio-user DMA) go to the
 *           VMM under ids of the keeper's
 *
 * The device journal holds, in order, every request still waiting for its
 * reply (sent or not) and every message not yet sent.  When the device
 * process dies, the journal is sent again, whole, to the next one, after
 * the protocol's session (what the VMM said once: memory, interrupts,
 * version) is replayed with its replies swallowed; so each request gets one
 * answer.  One core, one table per protocol (relay-mpqemu.c,
 * relay-vfio-user.c), as the servers.
 */
#ifndef MPQEMU_PROTO_RELAY_H
#define MPQEMU_PROTO_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/sock-io.h"
#include "util/log.h"
#include "util/loop.h"

enum {
    RELAY_MAX_FDS = 8,
    /* The VMM is not read while the journal holds this much: back-pressure. */
    RELAY_MAX_PENDING = 256,
    RELAY_MAX_PENDING_BYTES = 16 * 1024 * 1024,
    /* Nor the device while the VMM leaves this much of its replies unread. */
    RELAY_VMM_HIGH_WATER = 256 * 1024,
    /* Posted messages kept after they went out, until a later answer; beyond, the oldest go. */
    RELAY_MAX_POSTED_KEPT = 64,
};

/* One message, as it travels: its bytes and the fds that go with them. */
struct relay_msg {
    struct relay_msg *prev, *next;      /* in a queue */
    struct relay_msg *next_in_session;  /* in a protocol's session list */
    unsigned refs;
    bool awaits_reply;      /* stays in the device journal until answered */
    bool posted;            /* wants no answer: stays until a later answer shows it was read */
    bool sent;              /* whole, to the current device process */
    bool replayed;          /* session replay: its reply goes nowhere */
    bool for_this_process;  /* a reply to the device's own request: goes if it dies */
    uint16_t vmm_id;        /* vfio-user: the id the VMM gave it */
    uint16_t dev_id;        /* vfio-user: the id it carries to the device */
    int fds[RELAY_MAX_FDS];
    size_t nfds;
    size_t len;
    uint8_t bytes[];        /* header and body, as on the wire */
};

/* Messages to send in order; those before 'cursor' have gone out. */
struct relay_queue {
    struct relay_msg *head, *tail;
    struct relay_msg *cursor;
    size_t cursor_off;
    size_t count, bytes;
};

struct relay_side {
    int sock;
    struct loop_watch watch;
    struct relay_queue out;
};

struct relay_link;

/* What the keeper learns from a link. */
struct relay_events {
    /* The device process broke the protocol: it is killed (and restarted). */
    void (*device_fault)(struct relay_link *l, const char *why);
    /* The device side closed (a dying process, or one that ended the connection). */
    void (*device_closed)(struct relay_link *l);
    /* The VMM has gone ('error': dropped for a fault); the link is closed. */
    void (*vmm_closed)(struct relay_link *l, bool error);
};

/* A protocol, for the relay. */
struct relay_proto {
    const char *name;
    void *(*state_new)(void);
    void (*state_free)(void *state);
    /* Reads one message from 'sock' (VMM or device side) into *out. */
    enum msg_read (*read)(struct relay_link *l, bool from_vmm, int sock, struct relay_msg **out,
                          char **err);
    /* A message from the VMM: -1 with *err drops the VMM. */
    int (*from_vmm)(struct relay_link *l, struct relay_msg *m, char **err);
    /* A message from the device: -1 with *err, the device is at fault. */
    int (*from_device)(struct relay_link *l, struct relay_msg *m, char **err);
    /* A message went whole to the device. */
    void (*sent_to_device)(struct relay_link *l, struct relay_msg *m);
    /* A new device process: relay_replay() what the session holds. */
    void (*replay_session)(struct relay_link *l);
    /* The device process has gone: its own requests are forgotten. */
    void (*device_lost)(struct relay_link *l);
    /* The VMM has gone: the session goes with it. */
    void (*forget_session)(struct relay_link *l);
};

struct relay_link {
    const struct relay_proto *proto;
    void *state;                /* the protocol's */
    struct loop *loop;
    const char *name;           /* the device id, for messages */
    struct relay_side vmm, dev;
    struct relay_queue replay;  /* being built by replay_session */
    const struct relay_events *events;
    void *opaque;
    struct log_ratelimit log;
    uint64_t generation;        /* device processes this link has served */
};

void relay_link_init(struct relay_link *l, const struct relay_proto *proto, struct loop *loop,
                     const char *name, const struct relay_events *events, void *opaque);
void relay_link_free(struct relay_link *l);

/* The VMM's connection (taken; non-blocking). */
int relay_attach_vmm(struct relay_link *l, int sock);
bool relay_vmm_connected(const struct relay_link *l);
/* Drops the VMM (and the device side with it), forgetting the session. */
void relay_close_vmm(struct relay_link *l, bool error);

/* A device process's connection (taken): the session is replayed, then the journal. */
int relay_attach_device(struct relay_link *l, int sock);
bool relay_device_attached(const struct relay_link *l);
/*
 * The device process has gone: what it sent before it died is read and
 * relayed, then its side is closed and the journal waits for the next one.
 */
void relay_detach_device(struct relay_link *l);

/* For the protocols. */
struct relay_msg *relay_msg_new(size_t len);
void relay_msg_ref(struct relay_msg *m);
void relay_msg_unref(struct relay_msg *m);
/* Appends m (the queue's reference is the caller's) to the device journal and sends. */
void relay_to_device(struct relay_link *l, struct relay_msg *m);
/* The same towards the VMM. */
void relay_to_vmm(struct relay_link *l, struct relay_msg *m);
/* During replay_session: m (a reference taken here) goes before the journal. */
void relay_replay(struct relay_link *l, struct relay_msg *m);
/*
 * The first request sent to the device that awaits a reply and that 'match'
 * accepts, taken out of the journal (the caller owns the reference); NULL:
 * the device answered nothing we asked.  Posted messages sent before it
 * leave the journal too: the device read them before it.
 */
struct relay_msg *relay_take_answered(struct relay_link *l,
                                      bool (*match)(const struct relay_msg *m, const void *arg),
                                      const void *arg);
/* The protocols: relay-mpqemu.c, relay-vfio-user.c. */
extern const struct relay_proto mpqemu_relay_proto;
extern const struct relay_proto vfio_user_relay_proto;

/* A warning about one side's messages, rate-limited. */
void relay_warn(struct relay_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
