// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/guarded-copy.h"

#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

static __thread sigjmp_buf *volatile fault_jmp;
/* The handler there was before ours: a sanitizer's, or the default. */
static struct sigaction previous = { .sa_handler = SIG_DFL };

static void sigbus_handler(int sig, siginfo_t *info, void *uctx)
{
    (void)uctx;
    if (fault_jmp) {
        siglongjmp(*fault_jmp, 1);
    }
    /*
     * Not a guarded copy: back to the previous handler, which a fault
     * meets again when the instruction reruns (a sanitizer reports where
     * it happened); a sent signal is sent again.
     */
    sigaction(sig, &previous, NULL);
    if (info->si_code <= 0) {
        raise(sig);
    }
}

void guarded_copy_arm(void)
{
    /* SA_NODEFER: leaving by siglongjmp must not leave SIGBUS blocked. */
    struct sigaction sa = { .sa_sigaction = sigbus_handler,
                            .sa_flags = SA_SIGINFO | SA_NODEFER };
    struct sigaction old;

    if (sigaction(SIGBUS, NULL, &old) < 0) {
        return;
    }
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == sigbus_handler) {
        return;
    }
    previous = old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

/*
 * An aligned word lands in one store, as a bus master's write does:
 * memcpy() stores 4 bytes twice, and a driver that clears a word once it
 * sees it filled (a done queue) would see the second store bring it back.
 */
static void store_once(void *dst, const void *src, size_t len)
{
    uint16_t v2;
    uint32_t v4;
    uint64_t v8;

    if (len == 2) {
        memcpy(&v2, src, 2);
        __atomic_store_n((uint16_t *)dst, v2, __ATOMIC_RELAXED);
    } else if (len == 4) {
        memcpy(&v4, src, 4);
        __atomic_store_n((uint32_t *)dst, v4, __ATOMIC_RELAXED);
    } else {
        memcpy(&v8, src, 8);
        __atomic_store_n((uint64_t *)dst, v8, __ATOMIC_RELAXED);
    }
}

/* Copies src, or zeros when src is NULL; -1 when a page faulted. */
static int guarded_move(void *dst, const void *src, size_t len)
{
    sigjmp_buf jb;

    if (sigsetjmp(jb, 0)) {
        fault_jmp = NULL;
        return -1;
    }
    fault_jmp = &jb;
    if (src && (len == 2 || len == 4 || len == 8) && !((uintptr_t)dst & (len - 1))) {
        store_once(dst, src, len);
    } else if (src) {
        memcpy(dst, src, len);
    } else {
        memset(dst, 0, len);
    }
    fault_jmp = NULL;
    return 0;
}

int guarded_copy(void *dst, const void *src, size_t len)
{
    return len ? guarded_move(dst, src, len) : 0;
}

int guarded_zero(void *dst, size_t len)
{
    return len ? guarded_move(dst, NULL, len) : 0;
}

uint64_t iov_size(const struct iovec *iov, int n)
{
    uint64_t len = 0;

    for (int i = 0; i < n; i++) {
        len += iov[i].iov_len;
    }
    return len;
}

/* Moves between iov bytes [off, off+len) and buf; to_iov: into the iovecs. */
static int iov_move(const struct iovec *iov, int n, uint64_t off, uint8_t *buf, uint64_t len,
                    bool to_iov, bool zeros)
{
    for (int i = 0; i < n && len; i++) {
        uint8_t *base = iov[i].iov_base;
        size_t take;
        int r;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        take = iov[i].iov_len - off < len ? (size_t)(iov[i].iov_len - off) : (size_t)len;
        r = !to_iov ? guarded_copy(buf, base + off, take)
            : zeros ? guarded_zero(base + off, take) : guarded_copy(base + off, buf, take);
        if (r < 0) {
            return -EFAULT;
        }
        if (!zeros) {
            buf += take;
        }
        len -= take;
        off = 0;
    }
    return len ? -EFAULT : 0;
}

int iov_from_buf(const struct iovec *iov, int n, uint64_t off, const void *src, uint64_t len)
{
    return iov_move(iov, n, off, (uint8_t *)src, len, true, src == NULL);
}

int iov_to_buf(const struct iovec *iov, int n, uint64_t off, void *dst, uint64_t len)
{
    return iov_move(iov, n, off, dst, len, false, false);
}
