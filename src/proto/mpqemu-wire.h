/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QEMU's multi-process protocol (x-pci-proxy-dev <-> remote), QEMU >= 6.0.
 *
 * A message is a 16-byte header (command, payload size) and 'size' payload
 * bytes, with up to 8 fds attached as SCM_RIGHTS.  Fields are in host byte
 * order and the layout is that of QEMU's MPQemuMsg on x86-64/LP64, which is
 * fixed here with explicit padding so that it does not depend on the ABI.
 * The proxy sends a request and waits for a RET reply, except SYNC_SYSMEM
 * and SET_IRQFD, which get none.
 */
#ifndef MPQEMU_PROTO_MPQEMU_WIRE_H
#define MPQEMU_PROTO_MPQEMU_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/sock-io.h"

enum mpqemu_cmd {
    MPQEMU_CMD_SYNC_SYSMEM = 0,
    MPQEMU_CMD_RET = 1,
    MPQEMU_CMD_PCI_CFGWRITE = 2,
    MPQEMU_CMD_PCI_CFGREAD = 3,
    MPQEMU_CMD_BAR_WRITE = 4,
    MPQEMU_CMD_BAR_READ = 5,
    MPQEMU_CMD_SET_IRQFD = 6,
    MPQEMU_CMD_DEVICE_RESET = 7,
    MPQEMU_CMD_MAX,
};

enum { MPQEMU_MAX_FDS = 8 };

struct mpqemu_hdr {
    int32_t cmd;
    uint32_t pad;
    uint64_t size;
};

struct mpqemu_sync_sysmem {
    uint64_t gpas[MPQEMU_MAX_FDS];
    uint64_t sizes[MPQEMU_MAX_FDS];
    int64_t offsets[MPQEMU_MAX_FDS];
};

struct mpqemu_pci_conf {
    uint32_t addr;
    uint32_t val;
    int32_t len;
};

struct mpqemu_bar_access {
    uint64_t addr;     /* absolute bus address: the BAR's base plus offset */
    uint64_t val;
    uint32_t size;
    uint8_t memory;    /* 1: memory space, 0: I/O space */
    uint8_t pad[3];
};

union mpqemu_payload {
    uint64_t u64;
    struct mpqemu_pci_conf conf;
    struct mpqemu_sync_sysmem sysmem;
    struct mpqemu_bar_access bar;
    uint8_t bytes[sizeof(struct mpqemu_sync_sysmem)];
};

enum {
    MPQEMU_HDR_SIZE = sizeof(struct mpqemu_hdr),
    MPQEMU_MAX_PAYLOAD = sizeof(union mpqemu_payload),
};

/* The value a failed request returns, as QEMU's remote does. */
#define MPQEMU_RET_ERROR UINT64_MAX

struct mpqemu_msg {
    struct mpqemu_hdr hdr;
    union mpqemu_payload data;
    int fds[MPQEMU_MAX_FDS];
    size_t nfds;
};

const char *mpqemu_cmd_name(int32_t cmd);

/* Header alone: a known command and a payload that fits. */
int mpqemu_check_header(const struct mpqemu_hdr *h, char **err);
/* A whole message going proxy -> remote: size and fd count the command's. */
int mpqemu_check_request(const struct mpqemu_msg *m, char **err);
/* A whole message going remote -> proxy: only RET, 0 or 8 bytes, no fds. */
int mpqemu_check_reply(const struct mpqemu_msg *m, char **err);

void mpqemu_msg_init(struct mpqemu_msg *m, enum mpqemu_cmd cmd, size_t size);

/*
 * Reads one message at a time from a stream socket without ever reading
 * past its end, so that the fds that arrive belong to that message.  Works
 * on blocking and non-blocking sockets alike.
 *
 * With read-ahead (a server, on a non-blocking socket), it reads as
 * struct sock_ahead says, up to MPQEMU_READ_AHEAD bytes at once; the caller
 * must serve what is buffered (mpqemu_reader_buffered) before it waits on
 * the socket again.
 */
enum { MPQEMU_READ_AHEAD = 1024 };

struct mpqemu_reader {
    struct mpqemu_msg msg;
    size_t have;            /* bytes of header + payload received so far */
    int fd_store[MPQEMU_MAX_FDS];
    struct fd_bag bag;
    bool read_ahead;
    struct sock_ahead ahead;    /* points into this reader: not to be copied */
    uint8_t ahead_buf[MPQEMU_READ_AHEAD];
};

enum mpqemu_read_result {
    MPQEMU_READ_MSG = MSG_READ_WHOLE,       /* a whole, validated-framing message in *out */
    MPQEMU_READ_AGAIN = MSG_READ_AGAIN,     /* would block */
    MPQEMU_READ_EOF = MSG_READ_EOF,         /* peer closed between messages */
    MPQEMU_READ_ERROR = MSG_READ_ERROR,     /* *err says why; the connection must be closed */
};

void mpqemu_reader_init(struct mpqemu_reader *r);
void mpqemu_reader_init_read_ahead(struct mpqemu_reader *r);
/* Whether the next read needs no receive (a whole message, or a bad header, is buffered). */
bool mpqemu_reader_buffered(const struct mpqemu_reader *r);
/* Closes any fds of a partly received message. */
void mpqemu_reader_reset(struct mpqemu_reader *r);
/*
 * On MPQEMU_READ_MSG the message (fds included) moves to *out and the caller
 * owns its fds.  Checks framing only (header, fd count); the caller applies
 * mpqemu_check_request() or mpqemu_check_reply().
 */
enum mpqemu_read_result mpqemu_reader_read(struct mpqemu_reader *r, int sock,
                                           struct mpqemu_msg *out, char **err);

/* Blocking send of one message (fds attached); 0 or -1 with errno. */
int mpqemu_send(int sock, const struct mpqemu_msg *m);

#endif
