/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VMM's end of a transport for the protocol harnesses: a socket whose
 * messages carry fds the fuzzer chooses (guest RAM memfds, eventfds, and
 * fds of the wrong kind), and guest RAM the generator writes SCRIPTS and
 * commands into.  Between sends the event loop runs, and whatever the
 * server answered is read and handed to the harness.
 */
#ifndef MPQEMU_TESTS_FUZZ_PROTO_CLIENT_H
#define MPQEMU_TESTS_FUZZ_PROTO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "fuzz-common.h"
#include "fuzz-vm.h"
#include "lsi-gen.h"

struct server;

struct proto_client {
    struct fuzz_vm *vm;
    int sock;                   /* ours; -1 once closed */
    int ram;                    /* guest RAM: a memfd of LSI_RAM_BYTES */
    struct lsi_gen gen;
    /* Each message the server sent, as it arrives (may be NULL). */
    void (*received)(struct proto_client *c, const uint8_t *data, size_t len);
    uint8_t inbox[64 << 10];    /* a partly received message */
    size_t inbox_len;
    /* Frames server output: the length of the message at the front, 0 if incomplete. */
    size_t (*frame)(const uint8_t *data, size_t len);
};

/* Per input: guest RAM zeroed, the generator writing into it. */
void proto_client_init(struct proto_client *c, struct fuzz_vm *vm, struct fuzz_input *in,
                       int sock);
/* Closes our socket (the server sees the VMM leave) and any fds still held. */
void proto_client_close(struct proto_client *c);
/*
 * The end of an input: the server's answers read, our socket closed, the
 * device reset (the loop must go idle), the server freed.
 */
void proto_client_finish(struct proto_client *c, struct server *server);

/*
 * Up to max fds of the kinds the fuzzer picks: guest RAM, a short memfd,
 * an eventfd, a pipe, a socket, a directory, an image file; *n is how
 * many.  The caller closes them after sending.
 */
void proto_fds(struct proto_client *c, struct fuzz_input *in, int *fds, size_t max, size_t *n);
void proto_close_fds(int *fds, size_t n);
/* An eventfd, for the interrupt fds a message names. */
int proto_eventfd(void);
/*
 * What a hostile VMM does to an eventfd whose file it shares with the
 * server (how % 3): clears O_NONBLOCK, sets it, or takes the count and
 * fills the counter to its maximum.  Never waits itself.
 */
void proto_eventfd_meddle(int fd, unsigned how);
/* The VMM signals an eventfd of its own (an EOI, an unmask), full or not. */
void proto_eventfd_signal(int fd);

/*
 * Sends bytes with fds attached to the first; while the socket is full the
 * loop runs so that the server reads.  Gives up (the bytes are lost) if it
 * never drains.
 */
void proto_send(struct proto_client *c, const void *data, size_t len, const int *fds,
                size_t nfds);
/* One loop round, then whatever the server sent is read and framed. */
void proto_step(struct proto_client *c);
/* Rounds until idle (or max_rounds), reading the server's output as it comes. */
void proto_settle(struct proto_client *c, unsigned max_rounds);

/* Operations both protocol harnesses share: guest RAM, SCRIPTS, loop rounds. */
enum proto_common_op { PROTO_OP_SCRIPT, PROTO_OP_RECIPE, PROTO_OP_GUEST_BYTES,
                       PROTO_OP_TRUNCATE, PROTO_OP_LOOP, PROTO_OP_SETTLE, PROTO_OP_COMMON };
/*
 * Runs one of them; returns the DSP value a program wants started at (the
 * harness sends the register write its protocol's way), or 0.
 */
uint32_t proto_common_op(struct proto_client *c, struct fuzz_input *in, unsigned op,
                         uint32_t *dsa);

#endif
