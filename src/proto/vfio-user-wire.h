/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vfio-user wire format (QEMU's docs/interop/vfio-user.rst): a 16-byte
 * header, then a command's body; fds travel as SCM_RIGHTS with the header.
 * All fields are little-endian, as on every host this runs on.
 */
#ifndef MPQEMU_PROTO_VFIO_USER_WIRE_H
#define MPQEMU_PROTO_VFIO_USER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/sock-io.h"

struct vfio_user_hdr {
    uint16_t id;
    uint16_t cmd;
    uint32_t size;      /* header included */
    uint32_t flags;
    uint32_t error;     /* errno, in a reply with VFIO_USER_F_ERROR */
};

enum vfio_user_cmd {
    VFIO_USER_VERSION = 1,
    VFIO_USER_DMA_MAP = 2,
    VFIO_USER_DMA_UNMAP = 3,
    VFIO_USER_DEVICE_GET_INFO = 4,
    VFIO_USER_DEVICE_GET_REGION_INFO = 5,
    VFIO_USER_DEVICE_GET_REGION_IO_FDS = 6,
    VFIO_USER_DEVICE_GET_IRQ_INFO = 7,
    VFIO_USER_DEVICE_SET_IRQS = 8,
    VFIO_USER_REGION_READ = 9,
    VFIO_USER_REGION_WRITE = 10,
    VFIO_USER_DMA_READ = 11,
    VFIO_USER_DMA_WRITE = 12,
    VFIO_USER_DEVICE_RESET = 13,
    VFIO_USER_CMD_MAX = 18,
};

enum {
    VFIO_USER_F_TYPE_MASK = 0xf,
    VFIO_USER_F_COMMAND = 0x0,
    VFIO_USER_F_REPLY = 0x1,
    VFIO_USER_F_NO_REPLY = 0x10,
    VFIO_USER_F_ERROR = 0x20,

    VFIO_USER_MAJOR = 0,
    VFIO_USER_MINOR = 0,

    VFIO_USER_HDR_SIZE = 16,
    VFIO_USER_MAX_FDS = 8,
    /* Largest REGION_READ/WRITE or DMA_READ/WRITE payload we accept or send. */
    VFIO_USER_MAX_DATA = 1024 * 1024,
    /* Largest body of any message: the data plus its access header. */
    VFIO_USER_MAX_BODY = VFIO_USER_MAX_DATA + 64,
    VFIO_USER_MAX_CAPS_JSON = 4096,
    VFIO_USER_PGSIZE = 4096,

    /* VFIO's PCI region and IRQ indices. */
    VFIO_PCI_BAR0_REGION = 0,
    VFIO_PCI_ROM_REGION = 6,
    VFIO_PCI_CONFIG_REGION = 7,
    VFIO_PCI_VGA_REGION = 8,
    VFIO_PCI_NUM_REGIONS = 9,
    VFIO_PCI_INTX_IRQ = 0,
    VFIO_PCI_MSI_IRQ = 1,
    VFIO_PCI_MSIX_IRQ = 2,
    VFIO_PCI_ERR_IRQ = 3,
    VFIO_PCI_REQ_IRQ = 4,
    VFIO_PCI_NUM_IRQS = 5,

    VFIO_DEVICE_FLAGS_RESET = 1 << 0,
    VFIO_DEVICE_FLAGS_PCI = 1 << 1,
    VFIO_REGION_INFO_FLAG_READ = 1 << 0,
    VFIO_REGION_INFO_FLAG_WRITE = 1 << 1,
    VFIO_REGION_INFO_FLAG_MMAP = 1 << 2,
    VFIO_IRQ_INFO_EVENTFD = 1 << 0,
    VFIO_IRQ_INFO_MASKABLE = 1 << 1,
    VFIO_IRQ_INFO_AUTOMASKED = 1 << 2,
    VFIO_IRQ_INFO_NORESIZE = 1 << 3,
    VFIO_IRQ_SET_DATA_NONE = 1 << 0,
    VFIO_IRQ_SET_DATA_BOOL = 1 << 1,
    VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2,
    VFIO_IRQ_SET_ACTION_MASK = 1 << 3,
    VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4,
    VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5,
    VFIO_IRQ_SET_DATA_MASK = 0x7,
    VFIO_IRQ_SET_ACTION_MASK_ALL = 0x38,
    VFIO_DMA_MAP_FLAG_READ = 1 << 0,
    VFIO_DMA_MAP_FLAG_WRITE = 1 << 1,
    VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0,
    VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1,
};

struct vfio_user_version {
    uint16_t major;
    uint16_t minor;
    /* then a NUL-terminated JSON object, optional */
};

struct vfio_user_dma_map {
    uint32_t argsz;
    uint32_t flags;
    uint64_t offset;    /* into the fd */
    uint64_t addr;
    uint64_t size;
};

struct vfio_user_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
    uint64_t addr;
    uint64_t size;
};

struct vfio_user_device_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
};

struct vfio_user_region_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;
};

struct vfio_user_irq_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};

struct vfio_user_irq_set {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t start;
    uint32_t count;
    /* then count bytes for DATA_BOOL */
};

struct vfio_user_region_access {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    /* then count bytes of data (write request, read reply) */
};

struct vfio_user_dma_access {
    uint64_t addr;
    uint64_t count;
    /* then count bytes of data (DMA_WRITE request, DMA_READ reply) */
};

_Static_assert(sizeof(struct vfio_user_hdr) == VFIO_USER_HDR_SIZE, "header layout");
_Static_assert(sizeof(struct vfio_user_dma_map) == 32, "DMA_MAP layout");
_Static_assert(sizeof(struct vfio_user_dma_unmap) == 24, "DMA_UNMAP layout");
_Static_assert(sizeof(struct vfio_user_region_info) == 32, "REGION_INFO layout");
_Static_assert(sizeof(struct vfio_user_irq_set) == 20, "SET_IRQS layout");
_Static_assert(sizeof(struct vfio_user_region_access) == 16, "REGION_READ layout");
_Static_assert(sizeof(struct vfio_user_dma_access) == 16, "DMA_READ layout");

const char *vfio_user_cmd_name(unsigned cmd);

/* One received message; body points into the reader's buffer until the next read. */
struct vfio_user_msg {
    struct vfio_user_hdr hdr;
    uint8_t *body;
    size_t body_len;
    int fds[VFIO_USER_MAX_FDS];
    size_t nfds;
};

/*
 * Reads one message at a time without reading past its end, so the fds that
 * arrive belong to it.  Bodies up to VFIO_USER_MAX_BODY bytes.
 *
 * With read-ahead (a server, on a non-blocking socket), it reads as
 * struct sock_ahead says, up to VFIO_USER_READ_AHEAD bytes at once; a
 * larger message is read exactly once its header is in.  The caller must
 * serve what is buffered (vfio_user_reader_buffered) before it waits on
 * the socket again.
 */
enum { VFIO_USER_READ_AHEAD = 1024 };

struct vfio_user_reader {
    struct vfio_user_hdr hdr;
    size_t have;            /* bytes of header + body received (read exactly) */
    uint8_t *buf;
    size_t cap;
    int fd_store[VFIO_USER_MAX_FDS];
    struct fd_bag bag;
    bool read_ahead;
    struct sock_ahead ahead;    /* points into this reader: not to be copied */
    uint8_t ahead_buf[VFIO_USER_READ_AHEAD];
};

enum vfio_user_read_result {
    VFIO_USER_READ_MSG = MSG_READ_WHOLE,
    VFIO_USER_READ_AGAIN = MSG_READ_AGAIN,
    VFIO_USER_READ_EOF = MSG_READ_EOF,
    VFIO_USER_READ_ERROR = MSG_READ_ERROR,  /* *err says why; close the connection */
};

void vfio_user_reader_init(struct vfio_user_reader *r);
void vfio_user_reader_init_read_ahead(struct vfio_user_reader *r);
/* Whether the next read needs no receive (a whole message, or a bad header, is buffered). */
bool vfio_user_reader_buffered(const struct vfio_user_reader *r);
void vfio_user_reader_free(struct vfio_user_reader *r);
/* The caller owns the fds of a message it receives. */
enum vfio_user_read_result vfio_user_reader_read(struct vfio_user_reader *r, int sock,
                                                 struct vfio_user_msg *out, char **err);

/*
 * Checks that a command's body has the size its command needs and carries
 * the fds it may carry.  Returns 0 or an errno for the error reply.
 */
int vfio_user_check_request(const struct vfio_user_msg *m, char **err);

#endif
