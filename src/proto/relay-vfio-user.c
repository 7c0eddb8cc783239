// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vfio-user through the keeper.  Requests are matched to replies by id, so
 * the keeper numbers what it sends each way itself: the VMM's requests carry
 * ids of the keeper's to the device (a replayed request never collides with
 * one in the journal), and the device's own requests (DMA_READ, DMA_WRITE)
 * carry ids of the keeper's to the VMM, remembered with the device process
 * that asked, so that a reply meant for a process that died is dropped.
 * Requests flagged VFIO_USER_F_NO_REPLY are sent and forgotten.
 *
 * The session, what the VMM said once: its VERSION (with its
 * capabilities), the DMA_MAP regions now mapped (DMA_UNMAP takes them
 * away) with their fds, and the eventfds of DEVICE_SET_IRQS; each taken
 * when the device has accepted it.
 */
#include "proto/relay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/vfio-user-wire.h"
#include "util/error.h"

enum {
    /* The device waits for each of its requests; a few more is already a fault. */
    MAX_DEVICE_REQUESTS = 16,
    IRQ_ACTIONS = 3,        /* mask, unmask, trigger */
};

/* A request of the device's, on its way to the VMM. */
struct device_request {
    bool used;
    uint16_t vmm_side_id;       /* the id the VMM sees */
    uint16_t dev_id;            /* the device's own */
    uint64_t generation;        /* of the device process that asked */
};

struct vfio_user_relay {
    struct vfio_user_reader vmm_reader, dev_reader;
    uint16_t next_dev_id, next_vmm_id;
    struct device_request requests[MAX_DEVICE_REQUESTS];
    /* The session. */
    struct relay_msg *version;
    struct relay_msg *maps, *maps_tail;         /* by next_in_session, in order */
    struct relay_msg *irq_eventfds[VFIO_PCI_NUM_IRQS][IRQ_ACTIONS];
};

static struct vfio_user_relay *state_of(struct relay_link *l)
{
    return l->state;
}

static void *state_new(void)
{
    struct vfio_user_relay *s = calloc(1, sizeof(*s));

    if (s) {
        vfio_user_reader_init(&s->vmm_reader);
        vfio_user_reader_init(&s->dev_reader);
    }
    return s;
}

static void state_free(void *state)
{
    struct vfio_user_relay *s = state;

    vfio_user_reader_free(&s->vmm_reader);
    vfio_user_reader_free(&s->dev_reader);
    free(s);
}

static struct vfio_user_hdr header_of(const struct relay_msg *m)
{
    struct vfio_user_hdr h;

    memcpy(&h, m->bytes, sizeof(h));
    return h;
}

static void set_id(struct relay_msg *m, uint16_t id)
{
    memcpy(m->bytes + offsetof(struct vfio_user_hdr, id), &id, sizeof(id));
}

static bool is_command(const struct vfio_user_hdr *h)
{
    return (h->flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_COMMAND;
}

static enum msg_read read_msg(struct relay_link *l, bool from_vmm, int sock,
                              struct relay_msg **out, char **err)
{
    struct vfio_user_relay *s = state_of(l);
    struct vfio_user_msg m;
    enum vfio_user_read_result r;
    struct relay_msg *rm;

    r = vfio_user_reader_read(from_vmm ? &s->vmm_reader : &s->dev_reader, sock, &m, err);
    if (r != VFIO_USER_READ_MSG) {
        return (enum msg_read)r;
    }
    rm = relay_msg_new(sizeof(m.hdr) + m.body_len);
    if (!rm) {
        error_setf(err, "out of memory for a %zu-byte message", m.body_len);
        close_fds(m.fds, m.nfds);
        return MSG_READ_ERROR;
    }
    memcpy(rm->bytes, &m.hdr, sizeof(m.hdr));
    if (m.body_len) {
        memcpy(rm->bytes + sizeof(m.hdr), m.body, m.body_len);
    }
    memcpy(rm->fds, m.fds, m.nfds * sizeof(int));
    rm->nfds = m.nfds;
    *out = rm;
    return MSG_READ_WHOLE;
}

/* --- ids --------------------------------------------------------------------------- */

static bool has_dev_id(const struct relay_msg *m, const void *arg)
{
    return m->dev_id == *(const uint16_t *)arg;
}

static bool dev_id_in_use(struct relay_link *l, uint16_t id)
{
    for (struct relay_msg *m = l->dev.out.head; m; m = m->next) {
        if (m->awaits_reply && m->dev_id == id) {
            return true;
        }
    }
    return false;
}

/* An id towards the device that no request waiting for its reply carries. */
static uint16_t new_dev_id(struct relay_link *l)
{
    struct vfio_user_relay *s = state_of(l);

    while (dev_id_in_use(l, s->next_dev_id)) {
        s->next_dev_id++;
    }
    return s->next_dev_id++;
}

static bool vmm_side_id_in_use(const struct vfio_user_relay *s, uint16_t id)
{
    for (size_t i = 0; i < MAX_DEVICE_REQUESTS; i++) {
        if (s->requests[i].used && s->requests[i].vmm_side_id == id) {
            return true;
        }
    }
    return false;
}

static struct device_request *find_device_request(struct vfio_user_relay *s, uint16_t id)
{
    for (size_t i = 0; i < MAX_DEVICE_REQUESTS; i++) {
        if (s->requests[i].used && s->requests[i].vmm_side_id == id) {
            return &s->requests[i];
        }
    }
    return NULL;
}

/* A free slot, or one whose process has died (its reply will be dropped anyway). */
static struct device_request *new_device_request(struct relay_link *l)
{
    struct vfio_user_relay *s = state_of(l);

    for (size_t i = 0; i < MAX_DEVICE_REQUESTS; i++) {
        if (!s->requests[i].used || s->requests[i].generation != l->generation) {
            return &s->requests[i];
        }
    }
    return NULL;
}

/* --- the session ------------------------------------------------------------------ */

static void forget_maps(struct vfio_user_relay *s, bool (*gone)(const struct relay_msg *m,
                                                                  const void *arg),
                        const void *arg)
{
    struct relay_msg **pp = &s->maps;

    s->maps_tail = NULL;
    while (*pp) {
        struct relay_msg *m = *pp;

        if (gone(m, arg)) {
            *pp = m->next_in_session;
            relay_msg_unref(m);
        } else {
            s->maps_tail = m;
            pp = &m->next_in_session;
        }
    }
}

static bool every_map(const struct relay_msg *m, const void *arg)
{
    (void)m;
    (void)arg;
    return true;
}

/* A mapping that lies wholly inside the range unmapped. */
static bool map_inside(const struct relay_msg *m, const void *arg)
{
    const struct vfio_user_dma_unmap *u = arg;
    struct vfio_user_dma_map map;

    memcpy(&map, m->bytes + VFIO_USER_HDR_SIZE, sizeof(map));
    return map.addr >= u->addr && map.size <= u->size && map.addr - u->addr <= u->size - map.size;
}

static void keep_map(struct vfio_user_relay *s, struct relay_msg *req)
{
    relay_msg_ref(req);
    req->next_in_session = NULL;
    if (s->maps_tail) {
        s->maps_tail->next_in_session = req;
    } else {
        s->maps = req;
    }
    s->maps_tail = req;
}

static void forget_unmapped(struct vfio_user_relay *s, const struct relay_msg *req)
{
    struct vfio_user_dma_unmap u;

    if (req->len < VFIO_USER_HDR_SIZE + sizeof(u)) {
        return;
    }
    memcpy(&u, req->bytes + VFIO_USER_HDR_SIZE, sizeof(u));
    forget_maps(s, (u.flags & VFIO_DMA_UNMAP_FLAG_ALL) ? every_map : map_inside, &u);
}

static void keep_in_slot(struct relay_msg **slot, struct relay_msg *req)
{
    if (req) {
        relay_msg_ref(req);
    }
    relay_msg_unref(*slot);
    *slot = req;
}

static void forget_irqs(struct vfio_user_relay *s, uint32_t index)
{
    for (size_t a = 0; a < IRQ_ACTIONS; a++) {
        keep_in_slot(&s->irq_eventfds[index][a], NULL);
    }
}

/* Eventfds are the session's; masks and unmasks by message are of the moment. */
static void keep_irqs(struct vfio_user_relay *s, struct relay_msg *req)
{
    struct vfio_user_irq_set set;
    uint32_t data, action;
    size_t slot;

    if (req->len < VFIO_USER_HDR_SIZE + sizeof(set)) {
        return;
    }
    memcpy(&set, req->bytes + VFIO_USER_HDR_SIZE, sizeof(set));
    data = set.flags & VFIO_IRQ_SET_DATA_MASK;
    action = set.flags & VFIO_IRQ_SET_ACTION_MASK_ALL;
    if (set.index >= VFIO_PCI_NUM_IRQS) {
        return;
    }
    slot = action == VFIO_IRQ_SET_ACTION_MASK ? 0 : action == VFIO_IRQ_SET_ACTION_UNMASK ? 1 : 2;
    if (data == VFIO_IRQ_SET_DATA_EVENTFD && req->nfds) {
        keep_in_slot(&s->irq_eventfds[set.index][slot], req);
    } else if (data == VFIO_IRQ_SET_DATA_EVENTFD && slot != 2) {
        keep_in_slot(&s->irq_eventfds[set.index][slot], NULL);
    } else if (action == VFIO_IRQ_SET_ACTION_TRIGGER &&
               (data == VFIO_IRQ_SET_DATA_EVENTFD || set.count == 0)) {
        forget_irqs(s, set.index);      /* interrupts off: every eventfd goes */
    }
}

/* The device accepted 'req': what it changes in the session is kept. */
static void commit(struct relay_link *l, struct relay_msg *req)
{
    struct vfio_user_relay *s = state_of(l);

    switch (header_of(req).cmd) {
    case VFIO_USER_VERSION:
        keep_in_slot(&s->version, req);
        break;
    case VFIO_USER_DMA_MAP:
        keep_map(s, req);
        break;
    case VFIO_USER_DMA_UNMAP:
        forget_unmapped(s, req);
        break;
    case VFIO_USER_DEVICE_SET_IRQS:
        keep_irqs(s, req);
        break;
    }
}

static void replay_one(struct relay_link *l, struct relay_msg *m)
{
    m->dev_id = new_dev_id(l);
    set_id(m, m->dev_id);
    m->awaits_reply = true;
    m->sent = false;
    relay_replay(l, m);
}

static void replay_session(struct relay_link *l)
{
    struct vfio_user_relay *s = state_of(l);

    if (!s->version) {
        return;     /* nothing negotiated yet: the journal has it all */
    }
    replay_one(l, s->version);
    for (struct relay_msg *m = s->maps; m; m = m->next_in_session) {
        replay_one(l, m);
    }
    for (size_t i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
        for (size_t a = IRQ_ACTIONS; a-- > 0;) {      /* trigger first */
            if (s->irq_eventfds[i][a]) {
                replay_one(l, s->irq_eventfds[i][a]);
            }
        }
    }
}

static void forget_session(struct relay_link *l)
{
    struct vfio_user_relay *s = state_of(l);

    keep_in_slot(&s->version, NULL);
    forget_maps(s, every_map, NULL);
    for (uint32_t i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
        forget_irqs(s, i);
    }
    memset(s->requests, 0, sizeof(s->requests));
    vfio_user_reader_free(&s->vmm_reader);
    vfio_user_reader_init(&s->vmm_reader);
}

static void device_lost(struct relay_link *l)
{
    struct vfio_user_relay *s = state_of(l);

    vfio_user_reader_free(&s->dev_reader);
    vfio_user_reader_init(&s->dev_reader);
}

/* --- messages ------------------------------------------------------------------------ */

static int from_vmm(struct relay_link *l, struct relay_msg *m, char **err)
{
    struct vfio_user_relay *s = state_of(l);
    struct vfio_user_hdr h = header_of(m);
    struct device_request *r;

    if (is_command(&h)) {
        m->vmm_id = h.id;
        m->awaits_reply = !(h.flags & VFIO_USER_F_NO_REPLY);
        m->posted = !m->awaits_reply;
        m->dev_id = new_dev_id(l);
        set_id(m, m->dev_id);
        relay_to_device(l, m);
        return 0;
    }
    r = find_device_request(s, h.id);
    if (!r) {
        error_setf(err, "reply %u to nothing we asked", h.id);
        relay_msg_unref(m);
        return -1;
    }
    if (r->generation != l->generation || !relay_device_attached(l)) {
        relay_warn(l, "reply %u dropped: the device process that asked has gone", h.id);
        relay_msg_unref(m);
    } else {
        set_id(m, r->dev_id);
        m->for_this_process = true;
        relay_to_device(l, m);
    }
    r->used = false;
    return 0;
}

static int reply_from_device(struct relay_link *l, struct relay_msg *m,
                             const struct vfio_user_hdr *h, char **err)
{
    struct relay_msg *req = relay_take_answered(l, has_dev_id, &h->id);

    if (!req || header_of(req).cmd != h->cmd) {
        error_setf(err, "reply %u (%s) to no request of ours", h->id, vfio_user_cmd_name(h->cmd));
        relay_msg_unref(req);
        relay_msg_unref(m);
        return -1;
    }
    if (req->replayed) {
        if (h->flags & VFIO_USER_F_ERROR) {
            relay_warn(l, "the new device process refused the replayed %s: %s",
                       vfio_user_cmd_name(h->cmd), strerror((int)h->error));
        }
        relay_msg_unref(m);
    } else {
        if (!(h->flags & VFIO_USER_F_ERROR)) {
            commit(l, req);
        }
        set_id(m, req->vmm_id);
        relay_to_vmm(l, m);
    }
    relay_msg_unref(req);
    return 0;
}

static int from_device(struct relay_link *l, struct relay_msg *m, char **err)
{
    struct vfio_user_relay *s = state_of(l);
    struct vfio_user_hdr h = header_of(m);
    struct device_request *r;

    if (!is_command(&h)) {
        return reply_from_device(l, m, &h, err);
    }
    if (h.flags & VFIO_USER_F_NO_REPLY) {
        relay_to_vmm(l, m);
        return 0;
    }
    if (!(r = new_device_request(l))) {
        error_setf(err, "more than %d requests of its own at once", MAX_DEVICE_REQUESTS);
        relay_msg_unref(m);
        return -1;
    }
    while (vmm_side_id_in_use(s, s->next_vmm_id)) {
        s->next_vmm_id++;
    }
    *r = (struct device_request){
        .used = true, .vmm_side_id = s->next_vmm_id++, .dev_id = h.id,
        .generation = l->generation,
    };
    set_id(m, r->vmm_side_id);
    relay_to_vmm(l, m);
    return 0;
}

const struct relay_proto vfio_user_relay_proto = {
    .name = "vfio-user",
    .state_new = state_new,
    .state_free = state_free,
    .read = read_msg,
    .from_vmm = from_vmm,
    .from_device = from_device,
    .replay_session = replay_session,
    .device_lost = device_lost,
    .forget_session = forget_session,
};
