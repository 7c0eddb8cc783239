// SPDX-License-Identifier: GPL-2.0-or-later
#include "pci/dma.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/guarded-copy.h"

static struct dma_quiesce quiesce_hook;

void dma_set_quiesce(const struct dma_quiesce *q)
{
    quiesce_hook = *q;
}

/* Lets transfers in flight finish before regions [first, end) of s lose their mappings. */
static void quiesce(const struct dma_space *s, size_t first, size_t end)
{
    static bool running;    /* a transfer finishing may not unmap in turn */
    bool mapped = false;

    for (size_t i = first; i < end; i++) {
        mapped |= s->regions[i].map_base != NULL;
    }
    if (mapped && quiesce_hook.fn && !running) {
        running = true;
        quiesce_hook.fn(quiesce_hook.opaque);
        running = false;
    }
}

void dma_space_init(struct dma_space *s)
{
    memset(s, 0, sizeof(*s));
}

static void unmap_region(struct dma_region *r)
{
    if (r->map_base) {
        munmap(r->map_base, r->map_len);
    }
}

static void unmap_regions(struct dma_region *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unmap_region(&r[i]);
    }
    free(r);
}

void dma_space_clear(struct dma_space *s)
{
    quiesce(s, 0, s->n);
    unmap_regions(s->regions, s->n);
    s->regions = NULL;
    s->n = 0;
}

static int check_request(const struct dma_map_request *q, char **err)
{
    struct stat st;

    if (q->size == 0) {
        error_setf(err, "region at 0x%" PRIx64 " has size 0", q->gpa);
        return -1;
    }
    if (q->gpa + q->size - 1 < q->gpa) {
        error_setf(err, "region 0x%" PRIx64 "+0x%" PRIx64 " wraps the address space",
                   q->gpa, q->size);
        return -1;
    }
    if (q->offset < 0 || (uint64_t)q->offset > UINT64_MAX - q->size ||
        q->size > SIZE_MAX / 2) {
        error_setf(err, "region at 0x%" PRIx64 ": bad fd offset %" PRId64 " or size",
                   q->gpa, q->offset);
        return -1;
    }
    if (q->fd < 0) {
        return 0;       /* reached through the VMM: nothing to map */
    }
    if (fstat(q->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setf(err, "region at 0x%" PRIx64 ": fd is not a memory file", q->gpa);
        return -1;
    }
    /* Mapping past the end of the file would fault on first touch. */
    if ((uint64_t)st.st_size < (uint64_t)q->offset + q->size) {
        error_setf(err, "region at 0x%" PRIx64 ": fd holds %" PRId64 " bytes, "
                   "the region needs %" PRIu64, q->gpa, (int64_t)st.st_size,
                   (uint64_t)q->offset + q->size);
        return -1;
    }
    return 0;
}

static int map_request(const struct dma_map_request *q, struct dma_region *r, char **err)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t aligned = (uint64_t)q->offset & ~(page - 1);
    uint64_t delta = (uint64_t)q->offset - aligned;
    void *p;

    *r = (struct dma_region){ .gpa = q->gpa, .size = q->size };
    if (q->fd < 0) {
        return 0;
    }
    r->map_len = (size_t)(q->size + delta);
    p = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, q->fd, (off_t)aligned);
    if (p == MAP_FAILED) {
        error_setf(err, "region at 0x%" PRIx64 ": mmap: %s", q->gpa, strerror(errno));
        return -1;
    }
    r->map_base = p;
    r->host = (uint8_t *)p + delta;
    return 0;
}

static int by_gpa(const void *a, const void *b)
{
    const struct dma_region *x = a, *y = b;

    return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int dma_space_replace(struct dma_space *s, const struct dma_map_request *req,
                      size_t n, char **err)
{
    struct dma_region *r = calloc(n ? n : 1, sizeof(*r));
    size_t mapped = 0;

    if (n > DMA_MAX_REGIONS) {
        free(r);
        error_setf(err, "%zu regions, at most %d", n, DMA_MAX_REGIONS);
        return -1;
    }
    if (!r) {
        error_setf(err, "out of memory");
        return -1;
    }
    for (; mapped < n; mapped++) {
        if (req[mapped].fd < 0) {
            error_setf(err, "region at 0x%" PRIx64 " has no fd", req[mapped].gpa);
            goto fail;
        }
        if (check_request(&req[mapped], err) < 0 ||
            map_request(&req[mapped], &r[mapped], err) < 0) {
            goto fail;
        }
    }
    qsort(r, n, sizeof(*r), by_gpa);
    for (size_t i = 1; i < n; i++) {
        if (r[i].gpa <= r[i - 1].gpa + r[i - 1].size - 1) {
            error_setf(err, "regions at 0x%" PRIx64 " and 0x%" PRIx64 " overlap",
                       r[i - 1].gpa, r[i].gpa);
            goto fail;
        }
    }
    dma_space_clear(s);
    s->regions = r;
    s->n = n;
    guarded_copy_arm();
    return 0;
fail:
    unmap_regions(r, mapped);
    return -1;
}

/* Index of the first region whose end lies above gpa. */
static size_t lower_bound(const struct dma_space *s, uint64_t gpa)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct dma_region *r = &s->regions[mid];

        if (gpa >= r->gpa && gpa - r->gpa >= r->size) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int dma_space_map(struct dma_space *s, const struct dma_map_request *req, char **err)
{
    struct dma_region r, *grown;
    size_t at;

    if (s->n >= DMA_MAX_REGIONS) {
        error_setf(err, "region at 0x%" PRIx64 ": already %d regions mapped",
                   req->gpa, DMA_MAX_REGIONS);
        return -1;
    }
    if (check_request(req, err) < 0) {
        return -1;
    }
    at = lower_bound(s, req->gpa);
    if (at < s->n && s->regions[at].gpa <= req->gpa + req->size - 1) {
        error_setf(err, "region 0x%" PRIx64 "+0x%" PRIx64 " overlaps the one at 0x%" PRIx64,
                   req->gpa, req->size, s->regions[at].gpa);
        return -1;
    }
    grown = realloc(s->regions, (s->n + 1) * sizeof(*grown));
    if (!grown) {
        error_setf(err, "out of memory");
        return -1;
    }
    s->regions = grown;
    if (map_request(req, &r, err) < 0) {
        return -1;
    }
    memmove(&s->regions[at + 1], &s->regions[at], (s->n - at) * sizeof(r));
    s->regions[at] = r;
    s->n++;
    guarded_copy_arm();
    return 0;
}

int dma_space_unmap(struct dma_space *s, uint64_t gpa, uint64_t size, char **err)
{
    uint64_t last = gpa + size - 1;
    size_t first, end;

    if (size == 0 || last < gpa) {
        error_setf(err, "unmap of 0x%" PRIx64 "+0x%" PRIx64 ": bad range", gpa, size);
        return -1;
    }
    first = lower_bound(s, gpa);
    end = first;
    while (end < s->n && s->regions[end].gpa <= last) {
        const struct dma_region *r = &s->regions[end];

        if (r->gpa < gpa || r->size - 1 > last - r->gpa) {
            error_setf(err, "unmap of 0x%" PRIx64 "+0x%" PRIx64 " would split the region "
                       "0x%" PRIx64 "+0x%" PRIx64, gpa, size, r->gpa, r->size);
            return -1;
        }
        end++;
    }
    if (end == first) {
        return 0;       /* nothing mapped there (maybe nothing at all: regions is NULL) */
    }
    quiesce(s, first, end);
    for (size_t i = first; i < end; i++) {
        unmap_region(&s->regions[i]);
    }
    memmove(&s->regions[first], &s->regions[end], (s->n - end) * sizeof(*s->regions));
    s->n -= end - first;
    return (int)(end - first);
}

static const struct dma_region *find_region(const struct dma_space *s, uint64_t gpa)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct dma_region *r = &s->regions[mid];

        if (gpa < r->gpa) {
            hi = mid;
        } else if (gpa - r->gpa >= r->size) {
            lo = mid + 1;
        } else {
            return r;
        }
    }
    return NULL;
}

void *dma_host_ptr(const struct dma_space *s, uint64_t gpa, uint64_t len)
{
    const struct dma_region *r = find_region(s, gpa);

    if (!r || !r->host || len > r->size - (gpa - r->gpa)) {
        return NULL;
    }
    return r->host + (gpa - r->gpa);
}

/* Checks that every byte of the range is mapped, across adjacent regions. */
static bool range_mapped(const struct dma_space *s, uint64_t gpa, uint64_t len)
{
    while (len) {
        const struct dma_region *r = find_region(s, gpa);
        uint64_t avail;

        if (!r) {
            return false;
        }
        avail = r->size - (gpa - r->gpa);
        if (avail >= len) {
            return true;
        }
        gpa += avail;
        len -= avail;
    }
    return true;
}

static int dma_copy(const struct dma_space *s, uint64_t gpa, void *buf, size_t len,
                    bool to_guest)
{
    uint8_t *p = buf;

    if (len && (gpa + len - 1 < gpa || !range_mapped(s, gpa, len))) {
        errno = EFAULT;
        return -1;
    }
    while (len) {
        const struct dma_region *r = find_region(s, gpa);
        uint64_t avail;
        size_t chunk;
        uint8_t *host;

        if (!r) {       /* cannot happen after range_mapped() */
            errno = EFAULT;
            return -1;
        }
        avail = r->size - (gpa - r->gpa);
        chunk = avail < len ? (size_t)avail : len;
        if (!r->host) {
            if (!s->remote.copy || s->remote.copy(s->remote.opaque, gpa, p, chunk,
                                                  to_guest) < 0) {
                errno = EFAULT;
                return -1;
            }
        } else {
            host = r->host + (gpa - r->gpa);
            if (guarded_copy(to_guest ? host : p, to_guest ? p : host, chunk) < 0) {
                errno = EFAULT;
                return -1;
            }
        }
        p += chunk;
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

int dma_read(const struct dma_space *s, uint64_t gpa, void *buf, size_t len)
{
    return dma_copy(s, gpa, buf, len, false);
}

int dma_write(const struct dma_space *s, uint64_t gpa, const void *buf, size_t len)
{
    return dma_copy(s, gpa, (void *)buf, len, true);
}

/*
 * Maps [gpa, gpa + len) region by region into iov until the range ends,
 * iov is full, or a byte is not in this process's mappings; *mapped says
 * how far it got and *stop (when short) why: E2BIG, EREMOTE or EFAULT.
 * Returns the iovecs used.  The range does not wrap.
 */
static size_t map_run(const struct dma_space *s, uint64_t gpa, uint64_t len, struct iovec *iov,
                      size_t max_iov, uint64_t *mapped, int *stop)
{
    size_t used = 0;

    *mapped = 0;
    *stop = 0;
    while (*mapped < len) {
        const struct dma_region *r = find_region(s, gpa);
        uint64_t avail, chunk;

        if (!r || !r->host || used == max_iov) {
            *stop = !r ? EFAULT : !r->host ? EREMOTE : E2BIG;
            break;
        }
        avail = r->size - (gpa - r->gpa);
        chunk = avail < len - *mapped ? avail : len - *mapped;
        iov[used++] = (struct iovec){ .iov_base = r->host + (gpa - r->gpa),
                                      .iov_len = (size_t)chunk };
        *mapped += chunk;
        gpa += chunk;
    }
    return used;
}

int dma_map_sg(const struct dma_space *s, const struct dma_sg *sg, size_t n,
               struct iovec *iov, size_t max_iov, uint64_t *total)
{
    size_t used = 0;

    *total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t mapped;
        int stop;

        if (sg[i].len && sg[i].gpa + sg[i].len - 1 < sg[i].gpa) {
            errno = EFAULT;
            return -1;
        }
        used += map_run(s, sg[i].gpa, sg[i].len, iov + used, max_iov - used, &mapped, &stop);
        *total += mapped;
        if (mapped < sg[i].len) {
            errno = stop;
            return -1;
        }
    }
    return (int)used;
}

/* --- mappings for one transfer ------------------------------------------------ */

/* A buffer of at least len bytes; its old contents need not survive. */
static int bounce_reserve(struct dma_mapping *m, size_t len)
{
    if (m->bounce_size < len) {
        free(m->bounce);
        m->bounce = malloc(len);
        m->bounce_size = m->bounce ? len : 0;
    }
    return m->bounce ? 0 : -1;
}

static int map_bounce(struct dma_mapping *m, const struct dma_space *s, uint64_t gpa,
                      uint64_t len, bool from_device, struct iovec *iov)
{
    size_t n = len < DMA_BOUNCE_MAX ? (size_t)len : DMA_BOUNCE_MAX;

    if (bounce_reserve(m, n) < 0) {
        errno = ENOMEM;
        return -1;
    }
    if (!from_device && dma_read(s, gpa, m->bounce, n) < 0) {
        return -1;
    }
    *m = (struct dma_mapping){ .bounce = m->bounce, .bounce_size = m->bounce_size,
                               .in_flight = true, .from_device = from_device,
                               .gpa = gpa, .len = n };
    iov[0] = (struct iovec){ .iov_base = m->bounce, .iov_len = n };
    return 1;
}

int dma_mapping_map(struct dma_mapping *m, const struct dma_space *s, uint64_t gpa,
                    uint64_t len, bool from_device, struct iovec *iov, size_t max_iov)
{
    uint64_t mapped;
    size_t n;
    int stop;

    if (m->in_flight) {
        errno = EBUSY;
        return -1;
    }
    /* A byte missing anywhere fails the transfer before any piece of it moves. */
    if (len && (gpa + len - 1 < gpa || !range_mapped(s, gpa, len))) {
        errno = EFAULT;
        return -1;
    }
    n = map_run(s, gpa, len, iov, max_iov, &mapped, &stop);
    if (n || mapped == len) {
        return (int)n;      /* the longest prefix that fits; the caller maps on from its end */
    }
    if (stop != EREMOTE || !max_iov) {
        errno = E2BIG;      /* no room for a single piece */
        return -1;
    }
    return map_bounce(m, s, gpa, len, from_device, iov);    /* begins where only the VMM reaches */
}

int dma_mapping_complete(struct dma_mapping *m, const struct dma_space *s, int64_t moved)
{
    bool copy_out = m->in_flight && m->from_device && moved > 0;

    m->in_flight = false;
    if (!copy_out) {
        return 0;
    }
    return dma_write(s, m->gpa, m->bounce, (uint64_t)moved < m->len ? (size_t)moved : m->len);
}

void dma_mapping_release(struct dma_mapping *m)
{
    free(m->bounce);
    *m = (struct dma_mapping){ 0 };
}
