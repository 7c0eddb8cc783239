// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The multi-process protocol through the keeper.  QEMU's proxy
 * (hw/remote/proxy.c) sends config and BAR accesses and DEVICE_RESET with
 * mpqemu_msg_send_and_await_reply(), so each waits for one RET, in order;
 * SYNC_SYSMEM (proxy-memory-listener.c) and SET_IRQFD are sent once and
 * never answered.  The session is the last of each of those two.
 */
#include "proto/relay.h"

#include <stdlib.h>
#include <string.h>

#include "proto/mpqemu-wire.h"
#include "util/error.h"

struct mpqemu_relay {
    struct mpqemu_reader vmm_reader, dev_reader;
    /* What the proxy said once: the memory map and the interrupt eventfds. */
    struct relay_msg *sysmem, *irqfd;
};

static struct mpqemu_relay *state_of(struct relay_link *l)
{
    return l->state;
}

static void *state_new(void)
{
    struct mpqemu_relay *s = calloc(1, sizeof(*s));

    if (s) {
        mpqemu_reader_init(&s->vmm_reader);
        mpqemu_reader_init(&s->dev_reader);
    }
    return s;
}

static void state_free(void *state)
{
    struct mpqemu_relay *s = state;

    mpqemu_reader_reset(&s->vmm_reader);
    mpqemu_reader_reset(&s->dev_reader);
    free(s);
}

static enum msg_read read_msg(struct relay_link *l, bool from_vmm, int sock,
                              struct relay_msg **out, char **err)
{
    struct mpqemu_relay *s = state_of(l);
    struct mpqemu_msg m;
    enum mpqemu_read_result r;
    struct relay_msg *rm;

    r = mpqemu_reader_read(from_vmm ? &s->vmm_reader : &s->dev_reader, sock, &m, err);
    if (r != MPQEMU_READ_MSG) {
        return (enum msg_read)r;
    }
    /* Checked whole here: a message that gets through is one the server takes. */
    if ((from_vmm ? mpqemu_check_request(&m, err) : mpqemu_check_reply(&m, err)) < 0 ||
        !(rm = relay_msg_new(MPQEMU_HDR_SIZE + (size_t)m.hdr.size))) {
        if (err && !*err) {
            error_setf(err, "out of memory");
        }
        close_fds(m.fds, m.nfds);
        return MSG_READ_ERROR;
    }
    memcpy(rm->bytes, &m, rm->len);
    memcpy(rm->fds, m.fds, m.nfds * sizeof(int));
    rm->nfds = m.nfds;
    *out = rm;
    return MSG_READ_WHOLE;
}

static int32_t cmd_of(const struct relay_msg *m)
{
    struct mpqemu_hdr h;

    memcpy(&h, m->bytes, sizeof(h));
    return h.cmd;
}

static int from_vmm(struct relay_link *l, struct relay_msg *m, char **err)
{
    int32_t cmd = cmd_of(m);

    (void)err;
    m->awaits_reply = cmd != MPQEMU_CMD_SYNC_SYSMEM && cmd != MPQEMU_CMD_SET_IRQFD;
    relay_to_device(l, m);
    return 0;
}

static bool any_request(const struct relay_msg *m, const void *arg)
{
    (void)m;
    (void)arg;
    return true;    /* RETs come in the order of their requests */
}

static int from_device(struct relay_link *l, struct relay_msg *m, char **err)
{
    struct relay_msg *req = relay_take_answered(l, any_request, NULL);

    if (!req) {
        error_setf(err, "a RET for no request");
        relay_msg_unref(m);
        return -1;
    }
    relay_msg_unref(req);
    relay_to_vmm(l, m);
    return 0;
}

/* Once the device has them, memory and interrupts are the session's. */
static void sent_to_device(struct relay_link *l, struct relay_msg *m)
{
    struct mpqemu_relay *s = state_of(l);
    struct relay_msg **slot;

    if (m->replayed) {
        return;
    }
    switch (cmd_of(m)) {
    case MPQEMU_CMD_SYNC_SYSMEM:
        slot = &s->sysmem;
        break;
    case MPQEMU_CMD_SET_IRQFD:
        slot = &s->irqfd;
        break;
    default:
        return;
    }
    relay_msg_ref(m);
    relay_msg_unref(*slot);
    *slot = m;
}

static void replay_session(struct relay_link *l)
{
    struct mpqemu_relay *s = state_of(l);

    if (s->sysmem) {
        relay_replay(l, s->sysmem);
    }
    if (s->irqfd) {
        relay_replay(l, s->irqfd);
    }
}

static void device_lost(struct relay_link *l)
{
    mpqemu_reader_reset(&state_of(l)->dev_reader);
}

static void forget_session(struct relay_link *l)
{
    struct mpqemu_relay *s = state_of(l);

    relay_msg_unref(s->sysmem);
    relay_msg_unref(s->irqfd);
    s->sysmem = s->irqfd = NULL;
    mpqemu_reader_reset(&s->vmm_reader);
}

const struct relay_proto mpqemu_relay_proto = {
    .name = "multi-process",
    .state_new = state_new,
    .state_free = state_free,
    .read = read_msg,
    .from_vmm = from_vmm,
    .from_device = from_device,
    .sent_to_device = sent_to_device,
    .replay_session = replay_session,
    .device_lost = device_lost,
    .forget_session = forget_session,
};
