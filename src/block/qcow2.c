// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * qcow2: opening an image.  Everything in the header is input: each field
 * is checked against the format's limits and the other fields before it is
 * used, so a bad image gets a clear error here rather than trouble later.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/backing.h"
#include "block/drivers.h"
#include "block/qcow2-int.h"
#include "util/error.h"
#include "util/log.h"

#define L2_CACHE_BYTES (32u << 20)
#define L2_CACHE_MAX_TABLES 512u
#define RB_CACHE_TABLES 32u

/* Names of incompatible features, as an image's feature table gives them. */
struct feature_names {
    char name[64][47];
};

static const char *const known_incompat[] = {
    "dirty bit", "corrupt bit", "external data file", "compression type",
    "extended L2 entries",
};

/*
 * The first cluster, read whole: the header, its extensions and the
 * backing name.  Its first 4 KiB (O_DIRECT's unit) say how large it is;
 * no more than that is read.
 */
static int read_first_cluster(struct qcow2 *q, uint8_t **out, uint64_t *len, char **err)
{
    enum { HEAD = 4096 };
    uint8_t *buf, *whole;
    int64_t n, more;
    uint32_t bits;

    if (posix_memalign((void **)&buf, 4096, HEAD)) {
        error_setf(err, "out of memory");
        return -1;
    }
    n = blk_file_pread(q->file, buf, HEAD, 0);
    if (n < QH_V2_LENGTH) {
        error_setf(err, "%s: %s", q->drive->file,
                   n < 0 ? strerror((int)-n) : "too short for a qcow2 header");
        free(buf);
        return -1;
    }
    bits = be32(buf + QH_CLUSTER_BITS);
    if (n == HEAD && bits <= QCOW2_MAX_CLUSTER_BITS && (1u << bits) > HEAD) {
        if (posix_memalign((void **)&whole, 4096, 1u << bits)) {
            error_setf(err, "out of memory");
            free(buf);
            return -1;
        }
        memcpy(whole, buf, HEAD);
        free(buf);
        buf = whole;
        more = blk_file_pread(q->file, buf + HEAD, (1u << bits) - HEAD, HEAD);
        if (more < 0) {
            error_setf(err, "%s: %s", q->drive->file, strerror((int)-more));
            free(buf);
            return -1;
        }
        n += more;
    }
    *out = buf;
    *len = (uint64_t)n;
    return 0;
}

static int parse_fixed_header(struct qcow2 *q, const uint8_t *h, uint64_t avail, char **err)
{
    const char *file = q->drive->file;

    if (be32(h) != QCOW2_MAGIC) {
        error_setf(err, "%s: not a qcow2 image", file);
        return -1;
    }
    q->version = be32(h + QH_VERSION);
    if (q->version != 2 && q->version != 3) {
        error_setf(err, "%s: qcow2 version %u is not supported (2, 3)", file, q->version);
        return -1;
    }
    q->cluster_bits = be32(h + QH_CLUSTER_BITS);
    if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        error_setf(err, "%s: cluster_bits %u is outside 9..21", file, q->cluster_bits);
        return -1;
    }
    q->cluster_size = 1ull << q->cluster_bits;
    q->l2_bits = q->cluster_bits - 3;
    if (be32(h + QH_CRYPT)) {
        error_setf(err, "%s: encrypted qcow2 images are not supported", file);
        return -1;
    }
    q->size = be64(h + QH_SIZE);
    if (q->version == 2) {
        q->refcount_order = 4;
        q->header_length = QH_V2_LENGTH;
        return 0;
    }
    q->incompat = be64(h + QH_INCOMPAT);
    q->compat = be64(h + QH_COMPAT);
    q->autoclear = be64(h + QH_AUTOCLEAR);
    q->refcount_order = be32(h + QH_REFCOUNT_ORDER);
    q->header_length = be32(h + QH_HEADER_LENGTH);
    if (q->refcount_order > 6) {
        error_setf(err, "%s: refcount_order %u is larger than 6", file, q->refcount_order);
        return -1;
    }
    if (q->header_length < QH_V3_MIN_LENGTH || q->header_length > q->cluster_size ||
        q->header_length > avail || (q->header_length & 7)) {
        error_setf(err, "%s: header_length %" PRIu64 " is invalid", file, q->header_length);
        return -1;
    }
    if (q->header_length > QH_COMPRESSION_TYPE && h[QH_COMPRESSION_TYPE] != 0) {
        error_setf(err, "%s: compression type %u (zstd) is not supported; only zlib is",
                   file, h[QH_COMPRESSION_TYPE]);
        return -1;
    }
    return 0;
}

/* Walks the header extensions; unknown ones are skipped, as the format allows. */
static int parse_extensions(struct qcow2 *q, const uint8_t *h, uint64_t avail,
                            char *backing_format, struct feature_names *names, char **err)
{
    uint64_t pos = q->header_length, limit = avail < q->cluster_size ? avail : q->cluster_size;

    for (unsigned count = 0; pos + 8 <= limit; count++) {
        uint32_t type = be32(h + pos), len = be32(h + pos + 4);
        const uint8_t *data = h + pos + 8;

        if (type == QCOW2_EXT_END) {
            return 0;
        }
        if (len > limit - pos - 8 || count > 1024) {
            error_setf(err, "%s: header extension %#x runs past the first cluster",
                       q->drive->file, type);
            return -1;
        }
        if (type == QCOW2_EXT_BACKING_FORMAT) {
            if (len == 0 || len > 15) {
                error_setf(err, "%s: invalid backing format extension", q->drive->file);
                return -1;
            }
            memcpy(backing_format, data, len);
            backing_format[len] = 0;
        } else if (type == QCOW2_EXT_FEATURE_TABLE) {
            for (uint32_t i = 0; i + 48 <= len; i += 48) {
                if (data[i] == 0 && data[i + 1] < 64) {
                    memcpy(names->name[data[i + 1]], data + i + 2, 46);
                    names->name[data[i + 1]][46] = 0;
                }
            }
        }
        pos += 8 + (((uint64_t)len + 7) & ~7ull);
    }
    return 0;
}

static int check_features(struct qcow2 *q, const struct feature_names *names, char **err)
{
    const uint64_t allowed_ro = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
    uint64_t unknown = q->incompat & ~allowed_ro;

    if (unknown) {
        unsigned bit = (unsigned)__builtin_ctzll(unknown);
        const char *name = names->name[bit][0] ? names->name[bit]
                           : bit < 5 ? known_incompat[bit] : "unknown";

        error_setf(err, "%s: the image uses incompatible feature bit %u (%s), "
                   "which this implementation does not support", q->drive->file, bit, name);
        return -1;
    }
    if (q->drive->readonly) {
        return 0;
    }
    if (q->incompat & QCOW2_INCOMPAT_CORRUPT) {
        error_setf(err, "%s: the image is marked corrupt; open it read-only or repair it "
                   "with 'qemu-img check -r all'", q->drive->file);
        return -1;
    }
    if (q->incompat & QCOW2_INCOMPAT_DIRTY) {
        error_setf(err, "%s: the image is dirty (its lazy refcounts were not written back); "
                   "repair it with 'qemu-img check -r all' or open it read-only",
                   q->drive->file);
        return -1;
    }
    return 0;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Sizes and places of the L1 and refcount tables. */
static int check_tables(struct qcow2 *q, const uint8_t *h, char **err)
{
    const char *file = q->drive->file;
    uint64_t per_l2 = q->cluster_size << q->l2_bits;    /* bytes an L2 table maps */
    uint64_t l1_bytes, rt_bytes, needed;

    q->l1_size = be32(h + QH_L1_SIZE);
    q->l1_offset = be64(h + QH_L1_OFFSET);
    q->reftable_offset = be64(h + QH_REFT_OFFSET);
    q->reftable_clusters = be32(h + QH_REFT_CLUSTERS);
    if (q->size > (1ull << 62) || q->size % 512) {
        error_setf(err, "%s: virtual size %" PRIu64 " is invalid", file, q->size);
        return -1;
    }
    needed = (q->size + per_l2 - 1) / per_l2;
    l1_bytes = (uint64_t)q->l1_size * 8;
    if (l1_bytes > QCOW2_MAX_L1_BYTES || q->l1_size < needed) {
        error_setf(err, "%s: L1 table of %u entries does not fit a %" PRIu64 "-byte disk",
                   file, q->l1_size, q->size);
        return -1;
    }
    rt_bytes = (uint64_t)q->reftable_clusters * q->cluster_size;
    if (q->reftable_clusters == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES) {
        error_setf(err, "%s: refcount table of %u clusters is invalid", file,
                   q->reftable_clusters);
        return -1;
    }
    if ((q->l1_offset & (q->cluster_size - 1)) || (q->reftable_offset & (q->cluster_size - 1)) ||
        q->l1_offset > (1ull << 56) || q->reftable_offset > (1ull << 56) ||
        (q->l1_size && ranges_overlap(q->l1_offset, l1_bytes, 0, q->cluster_size)) ||
        ranges_overlap(q->reftable_offset, rt_bytes, 0, q->cluster_size) ||
        (q->l1_size && ranges_overlap(q->l1_offset, l1_bytes, q->reftable_offset, rt_bytes))) {
        error_setf(err, "%s: the L1 table (%#" PRIx64 ") or refcount table (%#" PRIx64
                   ") is misplaced: unaligned, overlapping the header or each other",
                   file, q->l1_offset, q->reftable_offset);
        return -1;
    }
    q->rb_bits = q->cluster_bits + 3 - q->refcount_order;
    q->reftable_entries = rt_bytes / 8;
    return 0;
}

static int load_table(struct qcow2 *q, uint64_t **out, uint64_t entries, uint64_t offset,
                      const char *what, char **err)
{
    uint64_t unit = q2_io_unit(q);
    uint64_t bytes = (entries * 8 + unit - 1) / unit * unit;
    uint8_t *raw;
    int r;

    *out = calloc(entries ? entries : 1, 8);
    if (!*out || posix_memalign((void **)&raw, 4096, bytes ? bytes : unit)) {
        error_setf(err, "out of memory");
        return -1;
    }
    r = bytes ? q2_pread(q, raw, bytes, offset) : 0;
    if (r < 0) {
        error_setf(err, "%s: reading the %s: %s", q->drive->file, what, strerror(-r));
        free(raw);
        return -1;
    }
    for (uint64_t i = 0; i < entries; i++) {
        (*out)[i] = be64(raw + 8 * i);
    }
    free(raw);
    return 0;
}

static int open_backing(struct qcow2 *q, const uint8_t *h, uint64_t avail,
                        const char *format, char **err)
{
    char name[BACKING_NAME_MAX];
    int r = qcow2_backing_name(h, avail, q->header_length, q->drive->file, name, err);

    if (r <= 0) {
        return r;
    }
    q->backing = drive_open_backing(q->drive, name, format[0] ? format : NULL, err);
    return q->backing ? 0 : -1;
}

int q2_header_write(struct qcow2 *q, unsigned offset, const void *bytes, size_t len)
{
    uint64_t unit = q2_io_unit(q);
    int r;

    if (offset + len > unit) {
        return -EINVAL;
    }
    if (q->header_writing) {
        return -EBUSY;      /* a larger refcount table is being named in it */
    }
    memcpy(q->header + offset, bytes, len);
    r = q2_pwrite(q, q->header, unit, 0);
    return r < 0 ? r : q2_sync(q);
}

/* Keeps the header's first unit, which its rewrites start from. */
static int keep_header(struct qcow2 *q, const uint8_t *h, uint64_t avail, char **err)
{
    uint64_t unit = q2_io_unit(q);

    if (posix_memalign((void **)&q->header, 4096, unit)) {
        error_setf(err, "out of memory");
        return -1;
    }
    memset(q->header, 0, unit);
    memcpy(q->header, h, avail < unit ? avail : unit);
    return 0;
}

/* Rewrites one 8-byte header field, durably. */
static int update_header_field(struct qcow2 *q, unsigned offset, uint64_t value, char **err)
{
    uint8_t bytes[8];
    int r;

    put_be64(bytes, value);
    r = q2_header_write(q, offset, bytes, sizeof(bytes));
    if (r < 0) {
        error_setf(err, "%s: updating the header: %s", q->drive->file, strerror(-r));
        return -1;
    }
    return 0;
}

/* Unknown autoclear bits name extensions a writer that ignores them must invalidate. */
static int clear_autoclear(struct qcow2 *q, char **err)
{
    if (q->drive->readonly || q->version < 3 || !q->autoclear) {
        return 0;
    }
    if (update_header_field(q, QH_AUTOCLEAR, 0, err) < 0) {
        return -1;
    }
    q->autoclear = 0;
    return 0;
}

static int qcow2_resize(struct drive *d, uint64_t size, char **err)
{
    struct qcow2 *q = d->format_state;
    uint64_t mapped = (uint64_t)q->l1_size * (q->cluster_size << q->l2_bits);

    if (size < q->size) {
        error_setf(err, "%s: shrinking a qcow2 image is not supported", q->drive->file);
        return -1;
    }
    if (size > mapped) {
        error_setf(err, "%s: %llu bytes is more than the L1 table maps (%llu); "
                   "growing the L1 table is not supported", q->drive->file,
                   (unsigned long long)size, (unsigned long long)mapped);
        return -1;
    }
    if (update_header_field(q, QH_SIZE, size, err) < 0) {
        return -1;
    }
    q->size = size;
    return 0;
}

static struct drive *qcow2_backing(const struct drive *d)
{
    const struct qcow2 *q = d->format_state;

    return q->backing;
}

static int init_caches(struct qcow2 *q, char **err)
{
    uint64_t tables = L2_CACHE_BYTES / q->cluster_size, needed = q->l1_size;
    uint64_t rb = RB_CACHE_TABLES, file_len;
    int r;

    if (tables > L2_CACHE_MAX_TABLES) {
        tables = L2_CACHE_MAX_TABLES;
    }
    if (tables > needed) {
        tables = needed;
    }
    if (tables < 4) {
        tables = 4;
    }
    if (rb * q->cluster_size > (8u << 20)) {
        rb = 4;
    }
    if (q2_cache_init(q, &q->l2_cache, "L2 table", (unsigned)tables, q2_writeback_kick) < 0 ||
        q2_cache_init(q, &q->rb_cache, "refcount block", (unsigned)rb, q2_round_kick) < 0 ||
        q2_refcount_init(q) < 0 || q2_writeback_init(q) < 0) {
        error_setf(err, "out of memory for the qcow2 table caches");
        return -1;
    }
    if ((r = blk_file_length(q->file, &file_len)) < 0) {
        error_setf(err, "%s: %s", q->drive->file, strerror(-r));
        return -1;
    }
    q->file_end = (file_len + q->cluster_size - 1) >> q->cluster_bits;
    q->free_hint = 1;
    return 0;
}

static void qcow2_free(struct qcow2 *q)
{
    if (!q) {
        return;
    }
    if (q->backing) {
        drive_close(q->backing);
    }
    q2_cache_free(&q->l2_cache);
    q2_cache_free(&q->rb_cache);
    q2_refcount_free(q);
    q2_writeback_free(q);
    free(q->header);
    free(q->l1);
    free(q->reftable);
    free(q->pending_free);
    free(q->zeros);
    free(q);
}

static int qcow2_probe(const uint8_t *head, size_t len)
{
    return len >= 4 && !memcmp(head, "QFI\xfb", 4) ? 100 : 0;
}

static int qcow2_open(struct drive *d, char **err)
{
    struct qcow2 *q = calloc(1, sizeof(*q));
    struct feature_names *names = calloc(1, sizeof(*names));
    char backing_format[16] = "";
    uint8_t *h = NULL;
    uint64_t avail;

    if (!q || !names) {
        error_setf(err, "out of memory");
        goto fail;
    }
    q->drive = d;
    q->file = d->file_layer;
    if (read_first_cluster(q, &h, &avail, err) < 0 || keep_header(q, h, avail, err) < 0 ||
        parse_fixed_header(q, h, avail, err) < 0 ||
        parse_extensions(q, h, avail, backing_format, names, err) < 0 ||
        check_features(q, names, err) < 0 || check_tables(q, h, err) < 0 ||
        load_table(q, &q->l1, q->l1_size, q->l1_offset, "L1 table", err) < 0 ||
        load_table(q, &q->reftable, q->reftable_entries, q->reftable_offset,
                   "refcount table", err) < 0 ||
        init_caches(q, err) < 0 || clear_autoclear(q, err) < 0 ||
        open_backing(q, h, avail, backing_format, err) < 0) {
        goto fail;
    }
    d->format_state = q;
    d->size = q->size;
    free(h);
    free(names);
    return 0;
fail:
    free(h);
    free(names);
    qcow2_free(q);
    return -1;
}

static int writeback(struct qcow2 *q, char **err)
{
    int r = q->drive->readonly ? 0 : q2_writeback_sync(q);

    if (r < 0) {
        error_setf(err, "%s: writing back qcow2 metadata: %s", q->drive->file, strerror(-r));
        return -1;
    }
    return 0;
}

static int qcow2_writeback(struct drive *d, char **err)
{
    return writeback(d->format_state, err);
}

static void qcow2_close(struct drive *d)
{
    struct qcow2 *q = d->format_state;
    char *err = NULL;

    if (writeback(q, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    /* A round the writeback did not wait for (the cache's own) ends first. */
    while (q->meta_in_flight) {
        blk_file_drain(q->file);
    }
    qcow2_free(q);
    d->format_state = NULL;
}

static void qcow2_submit(struct drive *d, struct blk_io *io)
{
    q2_submit(d->format_state, io);
}

const struct format_driver format_qcow2 = {
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .submit = qcow2_submit,
    .writeback = qcow2_writeback,
    .resize = qcow2_resize,
    .backing = qcow2_backing,
    .close = qcow2_close,
};
