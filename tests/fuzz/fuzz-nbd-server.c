// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The NBD file driver (src/block/file-nbd.c) against a hostile server: the
 * input plays the server on a Unix socket in the scratch directory, and a
 * drive (raw, or qcow2 on top) opened on it through the real block layer
 * runs the operations the input chooses.
 *
 * The input:
 *
 *   header   config byte (format, read-only, cache mode, reconnect-delay,
 *            what the honest server offers), the export's size, flags and
 *            block sizes (for the honest server, below)
 *   client   a length byte, then that many bytes of client operations:
 *            reads, writes, write zeroes, discards, flushes (drive_submit),
 *            the synchronous path (blk_file_pread/pwrite/sync, which waits
 *            in poll()), resizes, loop rounds
 *   server   the rest: the server's program, run by a thread of its own
 *            while the main thread runs the client: raw bytes, waits for the
 *            client's next message (option or request), greetings, option
 *            replies, export information, replies to a request the client
 *            sent (or a cookie it never sent) in any order -- simple,
 *            structured chunks of every kind, errors, short or lying
 *            lengths -- the connection closed or half-closed, the next
 *            connection accepted, and "honest" steps that answer what the
 *            client sent as a real server would.
 *
 * A real server transcript is the usual seed (tests/fuzz/seeds.py): the
 * server's bytes in chunks, each sent after the client's next message.
 * When the program ends the server turns honest (greets new connections,
 * answers every option and request, from an image it keeps), so that the
 * client's waits end; it stops at the end of the input or after its time
 * budget, closing its sockets, after which the client's I/O fails within
 * reconnect-delay (0 or 1 s).  Every wait of the server is bounded, so no
 * input hangs.
 *
 * Checks, besides the sanitizers: every request completes exactly once,
 * with 0 or a negative errno, and none is left when the drive has closed;
 * an open that fails says why (no null string printed as "(null)").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "block/aio.h"
#include "block/drive.h"
#include "block/file-layer.h"
#include "fuzz-common.h"
#include "qcow2-image.h"
#include "util/byteorder.h"
#include "util/loop.h"
#include "util/opts.h"

enum {
    IMAGE_BYTES = 1 << 20,      /* what the server keeps; zeros past it */
    MAX_FLIGHT = 16,
    SLOT = 72 << 10,            /* buffer memory per request in flight */
    MAX_IO = 64 << 10,
    MAX_CLIENT_OPS = 64,
    MAX_SERVER_OPS = 256,
    MAX_REQUESTS = 256,         /* the server's record of the client's requests */
    MAX_OPTIONS = 32,
    RX_BYTES = 64 << 10,
    WAIT_MS = 20,               /* for the client's next message */
    ACCEPT_MS = 300,            /* for the client's next connection (retries come after 50 ms) */
    SERVER_BUDGET_MS = 1500,    /* then the server closes everything */
    SETTLE_MS = 200,
};

/* --- the protocol's numbers (the NBD protocol, doc/proto.md) -------------------- */

#define NBD_MAGIC 0x4e42444d41474943ull               /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ull            /* "IHAVEOPT" */
#define NBD_OLDSTYLE_MAGIC 0x00420281861253ull
#define NBD_REP_MAGIC 0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

enum { NBD_FLAG_FIXED_NEWSTYLE = 1, NBD_FLAG_NO_ZEROES = 2 };
enum { NBD_FLAG_HAS_FLAGS = 1, NBD_FLAG_READ_ONLY = 2 };
enum { NBD_OPT_EXPORT_NAME = 1, NBD_OPT_ABORT = 2, NBD_OPT_LIST = 3, NBD_OPT_INFO = 6,
       NBD_OPT_GO = 7, NBD_OPT_STRUCTURED_REPLY = 8 };
enum { NBD_REP_ACK = 1, NBD_REP_SERVER = 2, NBD_REP_INFO = 3 };
#define NBD_REP_ERR_UNSUP 0x80000001u
enum { NBD_INFO_EXPORT = 0, NBD_INFO_BLOCK_SIZE = 3 };
enum { NBD_CMD_READ = 0, NBD_CMD_WRITE = 1, NBD_CMD_DISC = 2, NBD_CMD_TRIM = 4,
       NBD_CMD_WRITE_ZEROES = 6 };
enum { NBD_REPLY_FLAG_DONE = 1 };
enum { NBD_REPLY_TYPE_NONE = 0, NBD_REPLY_TYPE_OFFSET_DATA = 1, NBD_REPLY_TYPE_OFFSET_HOLE = 2,
       NBD_REPLY_TYPE_BLOCK_STATUS = 5, NBD_REPLY_TYPE_ERROR = 32769,
       NBD_REPLY_TYPE_ERROR_OFFSET = 32770 };
enum { NBD_EINVAL = 22 };

/* Export sizes, block sizes, errors and option reply types the input picks from. */
static const uint64_t sizes[] = {
    IMAGE_BYTES, 0, 1, 511, 512, 4096, 65536, 65537, 1ull << 31, 1ull << 40,
    (1ull << 63) - 1, 1ull << 63, ~0ull, 0 /* the input's own */,
};
static const uint64_t block_sizes[] = {
    0, 1, 2, 512, 4096, 65536, 3, 4097, 1 << 20, 32 << 20, 64 << 20, 0xffffffffu,
    0 /* the input's own */,
};
static const uint64_t errors[] = {
    0, 1 /* EPERM */, 5 /* EIO */, 12 /* ENOMEM */, 22 /* EINVAL */, 28 /* ENOSPC */,
    75 /* EOVERFLOW */, 95 /* ENOTSUP */, 108 /* ESHUTDOWN */, 0xffffffff, 0 /* own */,
};
static const uint64_t option_replies[] = {
    NBD_REP_ACK, NBD_REP_SERVER, NBD_REP_INFO, 4 /* META_CONTEXT */, NBD_REP_ERR_UNSUP,
    0x80000002 /* POLICY */, 0x80000003 /* INVALID */, 0x80000004 /* PLATFORM */,
    0x80000005 /* TLS_REQD */, 0x80000006 /* UNKNOWN */, 0x80000007 /* SHUTDOWN */,
    0x80000008 /* BLOCK_SIZE_REQD */, 0x80000009 /* TOO_BIG */, 0 /* own */,
};

/* The last entry of each table: a value from the input instead. */
static uint64_t pick_or_own(struct fuzz_input *in, const uint64_t *table, size_t n, bool wide)
{
    unsigned i = fi_below(in, (unsigned)n);

    if (i < n - 1) {
        return table[i];
    }
    return wide ? fi_u64(in) : fi_u32(in);
}

#define PICK(in, table, wide) pick_or_own((in), (table), sizeof(table) / sizeof((table)[0]), wide)

/* --- the server ------------------------------------------------------------------ */

enum server_op { S_RAW, S_WAIT, S_GREETING, S_OLDSTYLE, S_OPT_REPLY, S_INFO_EXPORT, S_INFO_BLOCK,
                 S_EXPORT_DATA, S_HONEST, S_REPLY, S_CLOSE, S_SHUT_WR, S_ACCEPT, S_OP_COUNT };

enum phase { PH_FLAGS, PH_OPTIONS, PH_TRANSMISSION };

/* A request the client sent, as the server parsed it. */
struct sreq {
    uint64_t cookie, offset;
    uint32_t len;
    uint16_t type;
    bool answered;
};

struct server {
    pthread_t thread;
    int listen_fd, fd, stop_fd;
    uint64_t deadline_ns;
    struct fuzz_input prog;
    bool trace;
    /* The export, as the honest server offers it: the first size claimed. */
    uint64_t honest_size;
    bool claimed;
    uint64_t size;                      /* what the server claimed last */
    uint16_t tflags;
    bool block_info, structured_ok, go_ok;
    uint32_t min_block, pref_block, max_block;
    uint8_t *image;
    /* The connection. */
    bool greeted, no_zeroes, structured;
    enum phase phase;
    uint8_t rx[RX_BYTES];
    size_t rx_len;
    uint64_t write_left, write_at;      /* a write's payload still coming */
    uint32_t options[MAX_OPTIONS];      /* received, not answered yet */
    unsigned n_options;
    uint32_t last_option;
    struct sreq req[MAX_REQUESTS];
    unsigned n_req;
    unsigned seen, waited;              /* complete messages: parsed, waited for */
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A message under construction, big-endian. */
struct msg {
    uint8_t *b;
    size_t len, cap;
};

static void put(struct msg *m, const void *data, size_t len)
{
    if (!len) {
        return;
    }
    if (m->len + len > m->cap) {
        size_t cap = (m->len + len) * 2;
        uint8_t *b = realloc(m->b, cap);

        if (!b) {
            fuzz_fail("out of memory");
        }
        m->b = b;
        m->cap = cap;
    }
    if (data) {
        memcpy(m->b + m->len, data, len);
    } else {
        memset(m->b + m->len, 0, len);
    }
    m->len += len;
}

static void put_be(struct msg *m, uint64_t v, unsigned bytes)
{
    uint8_t b[8];

    put_be64(b, v);
    put(m, b + 8 - bytes, bytes);
}

/* The image's bytes at offset (zeros past it) into m. */
static void put_image(struct server *s, struct msg *m, uint64_t offset, uint64_t len)
{
    size_t at = m->len;

    put(m, NULL, len);
    if (offset < IMAGE_BYTES) {
        uint64_t n = IMAGE_BYTES - offset < len ? IMAGE_BYTES - offset : len;

        memcpy(m->b + at, s->image + offset, n);
    }
}

static void server_close_conn(struct server *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

static void new_conn(struct server *s, int fd)
{
    server_close_conn(s);
    s->fd = fd;
    s->greeted = s->no_zeroes = s->structured = false;
    s->phase = PH_FLAGS;
    s->rx_len = 0;
    s->write_left = 0;
    s->n_options = 0;
    s->n_req = 0;
}

static bool stopping(struct server *s)
{
    uint64_t v;

    if (now_ns() >= s->deadline_ns) {
        return true;
    }
    return read(s->stop_fd, &v, sizeof(v)) == sizeof(v) ? (s->deadline_ns = 0, true) : false;
}

/* Milliseconds left of ms, within the budget. */
static int budget_ms(struct server *s, uint64_t until_ns)
{
    uint64_t now = now_ns(), end = until_ns < s->deadline_ns ? until_ns : s->deadline_ns;

    return end > now ? (int)((end - now + 999999) / 1000000) : 0;
}

static void note_request(struct server *s, const uint8_t *p)
{
    struct sreq r = { .type = (uint16_t)(be32(p + 4) & 0xffff), .cookie = be64(p + 8),
                      .offset = be64(p + 16), .len = be32(p + 24) };
    unsigned kept = 0;

    if (s->n_req == MAX_REQUESTS) {
        for (unsigned i = 0; i < s->n_req; i++) {
            if (!s->req[i].answered) {
                s->req[kept++] = s->req[i];
            }
        }
        s->n_req = kept == MAX_REQUESTS ? MAX_REQUESTS - 1 : kept;
        if (kept == MAX_REQUESTS) {
            memmove(s->req, s->req + 1, (MAX_REQUESTS - 1) * sizeof(s->req[0]));
        }
    }
    s->req[s->n_req++] = r;
    if (r.type == NBD_CMD_WRITE) {
        s->write_left = r.len;
        s->write_at = r.offset;
    } else {
        s->seen++;
    }
    if (s->trace) {
        fprintf(stderr, "server: request type %u cookie %llu %llu+%u\n", r.type,
                (unsigned long long)r.cookie, (unsigned long long)r.offset, r.len);
    }
}

static void note_option(struct server *s, uint32_t opt)
{
    if (s->n_options < MAX_OPTIONS) {
        s->options[s->n_options++] = opt;
    }
    s->last_option = opt;
    s->seen++;
    if (s->trace) {
        fprintf(stderr, "server: option %u\n", opt);
    }
}

/* The client's messages out of what it sent; how many bytes were taken. */
static size_t parse_one(struct server *s, const uint8_t *p, size_t n)
{
    if (s->write_left) {
        uint64_t take = s->write_left < n ? s->write_left : n;

        if (s->write_at < IMAGE_BYTES) {
            memcpy(s->image + s->write_at,
                   p, IMAGE_BYTES - s->write_at < take ? IMAGE_BYTES - s->write_at : take);
        }
        s->write_at += take;
        s->write_left -= take;
        s->seen += !s->write_left;
        return take;
    }
    if (n >= 4 && be32(p) == NBD_REQUEST_MAGIC) {
        s->phase = PH_TRANSMISSION;
    }
    switch (s->phase) {
    case PH_FLAGS:
        if (n < 4) {
            return 0;
        }
        s->no_zeroes = be32(p) & NBD_FLAG_NO_ZEROES;
        s->phase = PH_OPTIONS;
        return 4;
    case PH_OPTIONS: {
        uint32_t len;

        if (n < 16) {
            return 0;
        }
        if (be64(p) != NBD_IHAVEOPT) {
            return n;   /* not what a client sends: dropped */
        }
        len = be32(p + 12);
        if (len > RX_BYTES - 16) {
            return n;
        }
        if (n < 16 + (size_t)len) {
            return 0;
        }
        note_option(s, be32(p + 8));
        return 16 + len;
    }
    case PH_TRANSMISSION:
        if (n < 28) {
            return 0;
        }
        if (be32(p) != NBD_REQUEST_MAGIC) {
            return n;
        }
        note_request(s, p);
        return 28;
    }
    return n;
}

static void parse(struct server *s)
{
    size_t at = 0, used;

    while (at < s->rx_len && (used = parse_one(s, s->rx + at, s->rx_len - at)) > 0) {
        at += used;
    }
    memmove(s->rx, s->rx + at, s->rx_len - at);
    s->rx_len -= at;
}

/* Reads what the client sent (waiting up to until_ns for it); false when the connection ended. */
static bool pump(struct server *s, uint64_t until_ns, bool wait)
{
    struct pollfd p[2] = { { .fd = s->fd, .events = POLLIN }, { .fd = s->stop_fd, .events = POLLIN } };
    ssize_t n;

    if (s->fd < 0) {
        return false;
    }
    if (wait && poll(p, 2, budget_ms(s, until_ns)) <= 0) {
        return true;
    }
    n = recv(s->fd, s->rx + s->rx_len, RX_BYTES - s->rx_len, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        server_close_conn(s);
        return false;
    }
    if (n > 0) {
        s->rx_len += (size_t)n;
        parse(s);
    }
    return true;
}

/* Sends all of m (reading the client meanwhile), within the budget. */
static void send_msg(struct server *s, struct msg *m)
{
    size_t done = 0;

    while (s->fd >= 0 && done < m->len && !stopping(s)) {
        ssize_t n = send(s->fd, m->b + done, m->len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        struct pollfd p[2] = { { .fd = s->fd, .events = POLLIN | POLLOUT },
                               { .fd = s->stop_fd, .events = POLLIN } };

        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            server_close_conn(s);
            break;
        }
        if (poll(p, 2, budget_ms(s, ~0ull)) > 0 && (p[0].revents & POLLIN)) {
            pump(s, 0, false);
        }
    }
    free(m->b);
    *m = (struct msg){ 0 };
}

/* Waits for the client's next message; whether one came. */
static bool wait_message(struct server *s)
{
    uint64_t until = now_ns() + WAIT_MS * 1000000ull;

    while (s->seen == s->waited && s->fd >= 0 && !stopping(s) && now_ns() < until) {
        pump(s, until, true);
    }
    if (s->seen == s->waited) {
        return false;
    }
    s->waited++;
    return true;
}

static bool accept_conn(struct server *s, unsigned ms)
{
    struct pollfd p[2] = { { .fd = s->listen_fd, .events = POLLIN },
                           { .fd = s->stop_fd, .events = POLLIN } };
    int fd;

    if (s->listen_fd < 0 || poll(p, 2, budget_ms(s, now_ns() + ms * 1000000ull)) <= 0 ||
        !(p[0].revents & POLLIN)) {
        return false;
    }
    fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    new_conn(s, fd);
    if (s->trace) {
        fprintf(stderr, "server: connection\n");
    }
    return true;
}

/* --- what the server sends ----------------------------------------------------------- */

static void option_answered(struct server *s);

/* The export's size as the server just claimed it; the honest server keeps the first. */
static void claim_size(struct server *s, uint64_t size)
{
    s->size = size;
    if (!s->claimed) {
        s->honest_size = size;
        s->claimed = true;
    }
}

static void request_answered(struct server *s, uint64_t cookie)
{
    for (unsigned i = 0; i < s->n_req; i++) {
        if (s->req[i].cookie == cookie) {
            s->req[i].answered = true;
        }
    }
}

/*
 * What raw bytes answer, so that the honest server does not answer it
 * again: an option with a final reply (or EXPORT_NAME, whose answer has
 * no header to recognise), a request with a simple reply or a last chunk.
 */
static void note_raw_replies(struct server *s, const uint8_t *p, size_t n)
{
    bool option_reply_seen = false;

    for (size_t i = 0; i + 16 <= n; i++) {
        uint32_t magic = be32(p + i);

        if (i + 20 <= n && be64(p + i) == NBD_REP_MAGIC) {
            uint32_t opt = be32(p + i + 8), type = be32(p + i + 12);

            option_reply_seen = true;
            if (type == NBD_REP_INFO && i + 34 <= n && be32(p + i + 16) >= 12 &&
                !p[i + 20] && !p[i + 21]) {
                claim_size(s, be64(p + i + 22));    /* NBD_INFO_EXPORT */
            }
            s->structured |= opt == NBD_OPT_STRUCTURED_REPLY && type == NBD_REP_ACK;
            if ((type == NBD_REP_ACK || type & 0x80000000u) && s->n_options &&
                s->options[0] == opt) {
                option_answered(s);
            }
        } else if (magic == NBD_SIMPLE_REPLY_MAGIC ||
                   (magic == NBD_STRUCTURED_REPLY_MAGIC && p[i + 5] & NBD_REPLY_FLAG_DONE)) {
            request_answered(s, be64(p + i + 8));
        }
    }
    if (!option_reply_seen && n && s->n_options && s->options[0] == NBD_OPT_EXPORT_NAME) {
        option_answered(s);
    }
}

static void greeting(struct server *s, uint16_t flags)
{
    struct msg m = { 0 };

    put_be(&m, NBD_MAGIC, 8);
    put_be(&m, NBD_IHAVEOPT, 8);
    put_be(&m, flags, 2);
    s->greeted = true;
    send_msg(s, &m);
}

static void oldstyle(struct server *s, uint64_t size, uint16_t tflags)
{
    struct msg m = { 0 };

    put_be(&m, NBD_MAGIC, 8);
    put_be(&m, NBD_OLDSTYLE_MAGIC, 8);
    claim_size(s, size);
    put_be(&m, size, 8);
    put_be(&m, tflags, 4);
    put(&m, NULL, 124);
    s->greeted = true;
    s->phase = PH_TRANSMISSION;
    send_msg(s, &m);
}

/* The option being answered: the oldest one not answered yet, else the last one. */
static uint32_t current_option(struct server *s)
{
    return s->n_options ? s->options[0] : s->last_option;
}

static void option_answered(struct server *s)
{
    if (s->n_options) {
        memmove(s->options, s->options + 1, --s->n_options * sizeof(s->options[0]));
    }
}

static void option_reply(struct server *s, uint32_t type, const void *data, uint32_t len)
{
    struct msg m = { 0 };

    put_be(&m, NBD_REP_MAGIC, 8);
    put_be(&m, current_option(s), 4);
    put_be(&m, type, 4);
    put_be(&m, len, 4);
    put(&m, data, len);
    send_msg(s, &m);
    s->structured |= current_option(s) == NBD_OPT_STRUCTURED_REPLY && type == NBD_REP_ACK;
    if (type == NBD_REP_ACK || type & 0x80000000u) {
        option_answered(s);
    }
}

/* NBD_REP_INFO: NBD_INFO_EXPORT (a: size, b: flags) or NBD_INFO_BLOCK_SIZE (a, b, c: min, pref, max). */
static void info(struct server *s, uint16_t type, uint64_t a, uint64_t b, uint64_t c)
{
    struct msg m = { 0 };

    put_be(&m, type, 2);
    if (type == NBD_INFO_EXPORT) {
        claim_size(s, a);
        put_be(&m, a, 8);
        put_be(&m, b, 2);
    } else {
        put_be(&m, a, 4);
        put_be(&m, b, 4);
        put_be(&m, c, 4);
    }
    option_reply(s, NBD_REP_INFO, m.b, (uint32_t)m.len);
    free(m.b);
}

/* The answer to NBD_OPT_EXPORT_NAME: transmission follows. */
static void export_data(struct server *s, uint64_t size, uint16_t tflags, bool zeros)
{
    struct msg m = { 0 };

    claim_size(s, size);
    put_be(&m, size, 8);
    put_be(&m, tflags, 2);
    if (zeros) {
        put(&m, NULL, 124);
    }
    option_answered(s);
    send_msg(s, &m);
}

static void simple_reply(struct server *s, uint64_t cookie, uint32_t error)
{
    struct msg m = { 0 };

    put_be(&m, NBD_SIMPLE_REPLY_MAGIC, 4);
    put_be(&m, error, 4);
    put_be(&m, cookie, 8);
    send_msg(s, &m);
}

static void chunk_header(struct msg *m, uint16_t flags, uint16_t type, uint64_t cookie,
                         uint32_t len)
{
    put_be(m, NBD_STRUCTURED_REPLY_MAGIC, 4);
    put_be(m, flags, 2);
    put_be(m, type, 2);
    put_be(m, cookie, 8);
    put_be(m, len, 4);
}

/* An honest answer to a request. */
static void answer_request(struct server *s, struct sreq *r)
{
    bool in_range = r->offset <= s->size && r->len <= s->size - r->offset;
    struct msg m = { 0 };

    r->answered = true;
    if (r->type == NBD_CMD_DISC) {
        server_close_conn(s);
        return;
    }
    if (!in_range && r->type == NBD_CMD_READ && s->structured) {
        chunk_header(&m, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, r->cookie, 6);
        put_be(&m, NBD_EINVAL, 4);
        put_be(&m, 0, 2);
        send_msg(s, &m);
        return;
    }
    if (!in_range) {
        simple_reply(s, r->cookie, NBD_EINVAL);
        return;
    }
    if ((r->type == NBD_CMD_WRITE_ZEROES || r->type == NBD_CMD_TRIM) && r->offset < IMAGE_BYTES) {
        memset(s->image + r->offset, 0,
               IMAGE_BYTES - r->offset < r->len ? IMAGE_BYTES - r->offset : r->len);
    }
    if (r->type != NBD_CMD_READ) {
        simple_reply(s, r->cookie, 0);
        return;
    }
    if (s->structured) {
        chunk_header(&m, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, r->cookie, 8 + r->len);
        put_be(&m, r->offset, 8);
    } else {
        put_be(&m, NBD_SIMPLE_REPLY_MAGIC, 4);
        put_be(&m, 0, 4);
        put_be(&m, r->cookie, 8);
    }
    put_image(s, &m, r->offset, r->len);
    send_msg(s, &m);
}

/* An honest answer to an option. */
static void answer_option(struct server *s)
{
    uint32_t opt = current_option(s);

    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        export_data(s, s->honest_size, s->tflags, !s->no_zeroes);
        s->phase = PH_TRANSMISSION;
        break;
    case NBD_OPT_GO:
    case NBD_OPT_INFO:
        if (!s->go_ok) {
            option_reply(s, NBD_REP_ERR_UNSUP, NULL, 0);
            break;
        }
        info(s, NBD_INFO_EXPORT, s->honest_size, s->tflags, 0);
        if (s->block_info) {
            info(s, NBD_INFO_BLOCK_SIZE, s->min_block, s->pref_block, s->max_block);
        }
        option_reply(s, NBD_REP_ACK, NULL, 0);
        s->phase = opt == NBD_OPT_GO ? PH_TRANSMISSION : s->phase;
        break;
    case NBD_OPT_STRUCTURED_REPLY:
        if (s->structured_ok) {
            option_reply(s, NBD_REP_ACK, NULL, 0);
            s->structured = true;
        } else {
            option_reply(s, NBD_REP_ERR_UNSUP, NULL, 0);
        }
        break;
    case NBD_OPT_LIST: {
        static const uint8_t name[] = { 0, 0, 0, 6, 'e', 'x', 'p', 'o', 'r', 't' };

        option_reply(s, NBD_REP_SERVER, name, sizeof(name));
        option_reply(s, NBD_REP_ACK, NULL, 0);
        break;
    }
    case NBD_OPT_ABORT:
        option_reply(s, NBD_REP_ACK, NULL, 0);
        server_close_conn(s);
        break;
    default:
        option_reply(s, NBD_REP_ERR_UNSUP, NULL, 0);
        break;
    }
}

/* Answers the oldest thing the client waits for; false when it waits for nothing. */
static bool answer_one(struct server *s)
{
    if (s->fd < 0) {
        return false;
    }
    if (!s->greeted) {
        greeting(s, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        return true;
    }
    if (s->n_options) {
        answer_option(s);
        return true;
    }
    for (unsigned i = 0; i < s->n_req; i++) {
        if (!s->req[i].answered && (s->req[i].type != NBD_CMD_WRITE || i < s->n_req - 1 ||
                                    !s->write_left)) {
            answer_request(s, &s->req[i]);
            return true;
        }
    }
    return false;
}

/* Honest for n messages (greetings, options, requests). */
static void honest(struct server *s, unsigned n)
{
    for (unsigned i = 0; i < n && !stopping(s); i++) {
        if (!answer_one(s)) {
            if (!wait_message(s)) {
                return;
            }
            if (!answer_one(s)) {
                return;
            }
        }
    }
}

/* --- scripted replies to requests -------------------------------------------------- */

/* S_REPLY: a reply to a request the client sent, or to a cookie it never sent. */
static void scripted_reply(struct server *s, struct fuzz_input *in)
{
    uint8_t sel = fi_u8(in), form = fi_u8(in);
    unsigned open = 0, pick;
    struct sreq fake = { .type = NBD_CMD_READ, .len = 512 }, *r = &fake;
    struct msg m = { 0 };
    uint32_t error, len, off = 0;
    uint16_t flags = form & 0x10 ? NBD_REPLY_FLAG_DONE : 0;

    for (unsigned i = 0; i < s->n_req; i++) {
        open += !s->req[i].answered;
    }
    if (open && sel < 0xf0) {
        pick = sel % open;
        for (unsigned i = 0; i < s->n_req; i++) {
            if (!s->req[i].answered && !pick--) {
                r = &s->req[i];
                break;
            }
        }
    } else {
        fake.cookie = fi_u64(in);
    }
    len = r->len < MAX_IO ? r->len : MAX_IO;
    switch (form & 7) {
    case 0:     /* simple, success, with the data of a read (maybe short) */
        put_be(&m, NBD_SIMPLE_REPLY_MAGIC, 4);
        put_be(&m, 0, 4);
        put_be(&m, r->cookie, 8);
        if (r->type == NBD_CMD_READ) {
            put_image(s, &m, r->offset, form & 8 ? fi_u16(in) % (len + 1) : len);
        }
        r->answered = true;
        break;
    case 1:     /* simple, an error */
        put_be(&m, NBD_SIMPLE_REPLY_MAGIC, 4);
        put_be(&m, PICK(in, errors, false), 4);
        put_be(&m, r->cookie, 8);
        r->answered = true;
        break;
    case 2:     /* data, for part of the request (or past it) */
    case 3: {   /* a hole */
        uint8_t where = fi_u8(in);

        off = where & 1 ? fi_u32(in) : where & 2 ? len / 2 : 0;
        len = where & 4 ? fi_u16(in) : where & 8 ? len / 2 : len - (off < len ? off : len);
        if ((form & 7) == 2) {
            chunk_header(&m, flags, NBD_REPLY_TYPE_OFFSET_DATA, r->cookie,
                         8 + len + (form & 0x20 ? (uint32_t)(int8_t)fi_u8(in) : 0));
            put_be(&m, r->offset + off, 8);
            put_image(s, &m, r->offset + off, len);
        } else {
            chunk_header(&m, flags, NBD_REPLY_TYPE_OFFSET_HOLE, r->cookie,
                         12 + (form & 0x20 ? (uint32_t)(int8_t)fi_u8(in) : 0));
            put_be(&m, r->offset + off, 8);
            put_be(&m, len, 4);
        }
        break;
    }
    case 4:     /* nothing more */
        chunk_header(&m, flags, NBD_REPLY_TYPE_NONE, r->cookie, form & 0x20 ? fi_u8(in) : 0);
        break;
    case 5:     /* an error */
    case 6: {   /* an error at an offset */
        uint8_t msg_len = fi_u8(in) % 32;
        bool at = (form & 7) == 6;

        error = (uint32_t)PICK(in, errors, false);
        chunk_header(&m, flags, at ? NBD_REPLY_TYPE_ERROR_OFFSET : NBD_REPLY_TYPE_ERROR,
                     r->cookie, 6 + msg_len + (at ? 8 : 0) +
                     (form & 0x20 ? (uint32_t)(int8_t)fi_u8(in) : 0));
        put_be(&m, error, 4);
        put_be(&m, msg_len, 2);
        put(&m, "the server says no, at length....", msg_len);
        if (at) {
            put_be(&m, r->offset + (fi_u32(in) % (len + 1)), 8);
        }
        break;
    }
    default: {  /* a chunk of any type, any length, any payload */
        uint16_t type = form & 0x20 ? fi_u16(in) : NBD_REPLY_TYPE_BLOCK_STATUS;
        uint8_t payload[64];
        size_t n = fi_u8(in) % sizeof(payload);

        fi_bytes(in, payload, n);
        chunk_header(&m, flags, type, r->cookie, form & 0x40 ? fi_u32(in) : (uint32_t)n);
        put(&m, payload, n);
        break;
    }
    }
    if (flags & NBD_REPLY_FLAG_DONE) {
        r->answered = true;
    }
    if (s->trace) {
        fprintf(stderr, "server: reply form 0x%02x to cookie %llu\n", form,
                (unsigned long long)r->cookie);
    }
    send_msg(s, &m);
}

static void run_server_op(struct server *s, struct fuzz_input *in)
{
    struct msg m = { 0 };

    switch ((enum server_op)(fi_u8(in) % S_OP_COUNT)) {
    case S_RAW: {
        size_t n = fi_u16(in) % 4097;

        put(&m, NULL, n);
        if (n) {
            fi_bytes(in, m.b, n);
            note_raw_replies(s, m.b, n);
        }
        s->greeted = true;
        send_msg(s, &m);
        break;
    }
    case S_WAIT:
        wait_message(s);
        break;
    case S_GREETING:
        greeting(s, fi_u16(in));
        break;
    case S_OLDSTYLE: {
        uint64_t size = PICK(in, sizes, true);

        oldstyle(s, size, fi_u16(in));
        break;
    }
    case S_OPT_REPLY: {
        uint32_t type = (uint32_t)PICK(in, option_replies, false);
        uint8_t data[256];
        size_t n = fi_u8(in);

        fi_bytes(in, data, n);
        option_reply(s, type, data, (uint32_t)n);
        break;
    }
    case S_INFO_EXPORT: {
        uint64_t size = PICK(in, sizes, true);

        info(s, NBD_INFO_EXPORT, size, fi_u16(in), 0);
        break;
    }
    case S_INFO_BLOCK: {
        uint32_t min = (uint32_t)PICK(in, block_sizes, false);
        uint32_t pref = (uint32_t)PICK(in, block_sizes, false);

        info(s, NBD_INFO_BLOCK_SIZE, min, pref, PICK(in, block_sizes, false));
        break;
    }
    case S_EXPORT_DATA: {
        uint64_t size = PICK(in, sizes, true);
        uint16_t tflags = fi_u16(in);

        export_data(s, size, tflags, fi_bool(in));
        break;
    }
    case S_HONEST:
        honest(s, 1 + fi_u8(in) % 16);
        break;
    case S_REPLY:
        scripted_reply(s, in);
        break;
    case S_CLOSE:
        server_close_conn(s);
        break;
    case S_SHUT_WR:
        if (s->fd >= 0) {
            shutdown(s->fd, SHUT_WR);
        }
        break;
    case S_ACCEPT:
        accept_conn(s, ACCEPT_MS);
        break;
    case S_OP_COUNT:
        break;
    }
    pump(s, 0, false);
}

static void *server_main(void *opaque)
{
    struct server *s = opaque;

    accept_conn(s, ACCEPT_MS);
    for (unsigned n = 0; n < MAX_SERVER_OPS && !fi_empty(&s->prog) && !stopping(s); n++) {
        run_server_op(s, &s->prog);
    }
    /* Honest from here on, new connections too, until the client is done or the time is up. */
    while (!stopping(s)) {
        if (s->fd < 0) {
            if (accept_conn(s, WAIT_MS)) {
                greeting(s, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
            }
        } else if (!answer_one(s)) {
            pump(s, now_ns() + WAIT_MS * 1000000ull, true);
        }
    }
    server_close_conn(s);
    close(s->listen_fd);
    s->listen_fd = -1;
    return NULL;
}

/* --- the client --------------------------------------------------------------------- */

enum client_op { C_READ, C_WRITE, C_ZERO, C_DISCARD, C_FLUSH, C_LOOP, C_SETTLE, C_SYNC_READ,
                 C_SYNC_WRITE, C_SYNC_FLUSH, C_RESIZE, C_OP_COUNT };

struct request {
    struct blk_io io;
    struct iovec iov[2];
    struct world *w;
};

struct world {
    struct loop *loop;
    struct aio_engine *aio;
    struct drive *drive;
    bool readonly;
    uint8_t *buf;               /* MAX_FLIGHT slots, and one for the synchronous path */
    struct request req[MAX_FLIGHT];
    uint32_t busy;              /* a bit per request in flight */
    struct server srv;
};

static void on_done(struct blk_io *io, int result)
{
    struct request *r = io->opaque;
    uint32_t bit = 1u << (r - r->w->req);

    if (!(r->w->busy & bit)) {
        fuzz_fail("a request completed twice");
    }
    if (result > 0 || result < -4095) {
        fuzz_fail("a request completed with %d", result);
    }
    r->w->busy &= ~bit;
}

static void settle(struct world *w, unsigned ms)
{
    uint64_t until = now_ns() + ms * 1000000ull;

    while (w->busy && now_ns() < until) {
        loop_run_once(w->loop, 10);
    }
}

/* An offset and length mostly in sectors within the disk, or anything. */
static void read_range(struct world *w, struct fuzz_input *in, uint64_t *offset, uint64_t *len)
{
    uint8_t how = fi_u8(in);
    uint64_t size = w->drive->size ? w->drive->size : 1;

    if (how & 1) {
        *offset = fi_u32(in) % (size + 4096);
        *len = fi_u16(in);
    } else {
        *offset = (uint64_t)fi_u16(in) * 512 % size;
        *len = ((uint64_t)fi_u8(in) + 1) * 512;
    }
    *len = *len < MAX_IO ? *len : MAX_IO;
}

static void op_io(struct world *w, struct fuzz_input *in, enum blk_op op)
{
    unsigned slot = (unsigned)__builtin_ctz(~w->busy);     /* the first free one */
    struct request *r;
    uint64_t offset, len;
    uint8_t *base;

    if (slot >= MAX_FLIGHT) {
        return;
    }
    r = &w->req[slot];
    base = w->buf + (size_t)slot * SLOT;
    read_range(w, in, &offset, &len);
    memset(r, 0, sizeof(*r));
    r->w = w;
    if (op == BLK_READ || op == BLK_WRITE) {
        uint8_t split = fi_u8(in);
        uint64_t first = split & 1 ? (len / 2) & ~(uint64_t)(split & 2 ? 0 : 511) : len;

        r->iov[0] = (struct iovec){ base, first };
        r->iov[1] = (struct iovec){ base + first + (split & 4 ? 512 : 0), len - first };
        if (op == BLK_WRITE) {
            memset(base, split, SLOT);
        }
    }
    r->io = (struct blk_io){ .op = op, .offset = offset, .iov = r->iov, .iovcnt = 2,
                             .len = len, .done = on_done, .opaque = r };
    w->busy |= 1u << slot;
    drive_submit(w->drive, &r->io);
}

/* The synchronous path (what qcow2's metadata takes), in whole blocks of the file. */
static void op_sync(struct world *w, struct fuzz_input *in, enum client_op op)
{
    struct blk_file *f = w->drive->file_layer;
    uint64_t offset, len, align = f->align ? f->align : 1;
    uint8_t *buf = w->buf + MAX_FLIGHT * SLOT;  /* a slot of its own */

    read_range(w, in, &offset, &len);
    offset -= offset % align;
    len -= len % align;
    if (op == C_SYNC_FLUSH) {
        blk_file_sync(f);
    } else if (op == C_SYNC_READ && len) {
        blk_file_pread(f, buf, len, offset);
    } else if (len && !w->readonly) {
        memset(buf, 0x5a, len);
        blk_file_pwrite(f, buf, len, offset);
    }
}

static void run_client_op(struct world *w, struct fuzz_input *in)
{
    char *err = NULL;

    switch ((enum client_op)(fi_u8(in) % C_OP_COUNT)) {
    case C_READ: op_io(w, in, BLK_READ); break;
    case C_WRITE: op_io(w, in, BLK_WRITE); break;
    case C_ZERO: op_io(w, in, BLK_WRITE_ZEROES); break;
    case C_DISCARD: op_io(w, in, BLK_DISCARD); break;
    case C_FLUSH: op_io(w, in, BLK_FLUSH); break;
    case C_LOOP: loop_run_once(w->loop, 0); break;
    case C_SETTLE: settle(w, SETTLE_MS); break;
    case C_SYNC_READ: op_sync(w, in, C_SYNC_READ); break;
    case C_SYNC_WRITE: op_sync(w, in, C_SYNC_WRITE); break;
    case C_SYNC_FLUSH: op_sync(w, in, C_SYNC_FLUSH); break;
    case C_RESIZE:
        drive_resize(w->drive, (uint64_t)fi_u16(in) * 512, &err);
        free(err);
        break;
    case C_OP_COUNT: break;
    }
    loop_run_once(w->loop, 0);
}

/* --- the input's header, and one run ------------------------------------------------- */

/* The server's image: a qcow2 image for format=qcow2, else a pattern. */
static void fill_image(uint8_t *image, bool qcow2)
{
    static const uint8_t kinds[] = { 3, 0, 1, 4, 3, 2, 4, 0, 3, 3, 4, 1 };
    struct q2img img = { .version = 3, .cluster_bits = 12, .refcount_order = 4,
                         .size = IMAGE_BYTES / 2, .kinds = kinds, .n_kinds = sizeof(kinds) };
    size_t len = 0;
    uint8_t *bytes = qcow2 ? q2img_build(&img, &len) : NULL;

    for (size_t i = 0; i < IMAGE_BYTES; i++) {
        image[i] = (uint8_t)(i * 7 + (i >> 9));
    }
    if (qcow2) {
        if (!bytes || len > IMAGE_BYTES) {
            fuzz_fail("qcow2 image for the server");
        }
        memset(image, 0, IMAGE_BYTES);
        memcpy(image, bytes, len);
        free(bytes);
    }
}

static void start_server(struct world *w, const char *path, const uint8_t *prog, size_t len)
{
    struct server *s = &w->srv;
    struct sockaddr_un addr = { .sun_family = AF_UNIX };

    if (strlen(path) >= sizeof(addr.sun_path)) {
        fuzz_fail("socket path too long: %s", path);
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    unlink(path);
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(s->listen_fd, 4) < 0) {
        fuzz_fail("listen on %s: %s", path, strerror(errno));
    }
    s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->stop_fd < 0) {
        fuzz_fail("eventfd: %s", strerror(errno));
    }
    s->fd = -1;
    s->seen = s->waited = 0;    /* nothing of the previous input's */
    s->last_option = 0;
    s->deadline_ns = now_ns() + SERVER_BUDGET_MS * 1000000ull;
    s->trace = getenv("MPQEMU_FUZZ_TRACE") != NULL;
    fi_init(&s->prog, prog, len);
    if (pthread_create(&s->thread, NULL, server_main, s)) {
        fuzz_fail("pthread_create");
    }
}

static void stop_server(struct world *w, const char *path)
{
    uint64_t one = 1;

    if (write(w->srv.stop_fd, &one, sizeof(one)) != sizeof(one)) {
        fuzz_fail("eventfd write: %s", strerror(errno));
    }
    pthread_join(w->srv.thread, NULL);
    close(w->srv.stop_fd);
    unlink(path);
}

static bool open_drive(struct world *w, uint8_t config, const char *path)
{
    static const char *const caches[] = { "writeback", "writethrough", "none", "directsync" };
    char text[FUZZ_PATH_MAX + 200], *err = NULL;
    struct opts *o;

    snprintf(text, sizeof(text),
             "id=disk,file=nbd+unix:///export?socket=%s,format=%s,readonly=%s,cache=%s,"
             "file.reconnect-delay=%u", path, config & 1 ? "qcow2" : "raw",
             w->readonly ? "on" : "off", caches[(config >> 2) & 3], (config >> 4) & 1);
    if (!(o = opts_parse(text, NULL, &err))) {
        fuzz_fail("%s: %s", text, err);
    }
    w->drive = drive_open(o, w->aio, &err);
    opts_free(o);
    if (!w->drive && getenv("MPQEMU_FUZZ_TRACE")) {
        fprintf(stderr, "client: open failed: %s\n", err);
    }
    if (!w->drive && (!err || strstr(err, "(null)"))) {
        fuzz_fail("the open failed without saying why: %s", err ? err : "no message");
    }
    free(err);
    return w->drive != NULL;
}

/* The header's export, for the honest server. */
static void read_export(struct server *s, struct fuzz_input *in, uint8_t config)
{
    s->size = s->honest_size = PICK(in, sizes, true);
    s->claimed = false;
    s->tflags = fi_u16(in);
    s->structured_ok = !(config & 0x20);
    s->block_info = config & 0x40;
    s->go_ok = !(config & 0x80);
    if (s->block_info) {
        s->min_block = (uint32_t)PICK(in, block_sizes, false);
        s->pref_block = (uint32_t)PICK(in, block_sizes, false);
        s->max_block = (uint32_t)PICK(in, block_sizes, false);
    }
}

static void setup(struct world *w)
{
    fuzz_process_init();
    if (!w->buf) {
        w->buf = malloc((MAX_FLIGHT + 1) * SLOT);
        w->srv.image = malloc(IMAGE_BYTES);
        if (!w->buf || !w->srv.image) {
            fuzz_fail("out of memory");
        }
    }
    w->busy = 0;
    fuzz_loop_new(&w->loop, &w->aio, 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct fuzz_input in, client;
    char path[FUZZ_PATH_MAX];
    uint8_t config;
    size_t client_len;

    setup(&w);
    fi_init(&in, data, size);
    config = fi_u8(&in);
    w.readonly = config & 2;
    read_export(&w.srv, &in, config);
    client_len = fi_u8(&in);
    client_len = client_len < in.left ? client_len : in.left;
    fi_init(&client, in.p, client_len);
    in.p += client_len;
    in.left -= client_len;

    fill_image(w.srv.image, config & 1);
    fuzz_scratch_path(path, "nbd.sock");
    start_server(&w, path, in.p, in.left);
    if (open_drive(&w, config, path)) {
        for (unsigned n = 0; n < MAX_CLIENT_OPS && !fi_empty(&client); n++) {
            run_client_op(&w, &client);
        }
        settle(&w, SETTLE_MS);
        drive_close(w.drive);   /* waits for what is in flight: bounded by the server */
        w.drive = NULL;
    }
    stop_server(&w, path);
    if (w.busy) {
        const struct blk_io *io = &w.req[__builtin_ctz(w.busy)].io;

        fuzz_fail("a request never completed (op %d at %llu, %llu bytes)", (int)io->op,
                  (unsigned long long)io->offset, (unsigned long long)io->len);
    }
    aio_engine_free(w.aio);
    loop_free(w.loop);
    return 0;
}
