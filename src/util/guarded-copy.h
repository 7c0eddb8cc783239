/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Copies to and from memory a peer shares with us by fd.  The peer may
 * truncate the file after we mapped it; touching the lost pages raises
 * SIGBUS.  A guarded copy turns that fault into an error for the access
 * instead of the death of the process.
 *
 * Guest memory is touched by the CPU only through these functions; the
 * kernel (io_uring) reports a lost page itself, as EFAULT.
 */
#ifndef MPQEMU_UTIL_GUARDED_COPY_H
#define MPQEMU_UTIL_GUARDED_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * Installs the SIGBUS handler, again if something replaced it since.  A
 * SIGBUS outside a guarded copy goes to the handler there was before (a
 * sanitizer's report, or death as before).
 */
void guarded_copy_arm(void);
/* memcpy that returns -1 instead of dying when a page is gone, else 0. */
int guarded_copy(void *dst, const void *src, size_t len);
/* memset(dst, 0, len), guarded the same way. */
int guarded_zero(void *dst, size_t len);

/* Bytes in an iovec array. */
uint64_t iov_size(const struct iovec *iov, int n);
/*
 * Copies len bytes of src (zeros when src is NULL) into bytes [off, off+len)
 * of iov, or those bytes of iov out to dst.  0, or -EFAULT when memory
 * vanished under the copy or the iovecs hold fewer bytes.
 */
int iov_from_buf(const struct iovec *iov, int n, uint64_t off, const void *src, uint64_t len);
int iov_to_buf(const struct iovec *iov, int n, uint64_t off, void *dst, uint64_t len);

#endif
