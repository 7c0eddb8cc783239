/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What every fuzz harness shares: reading the fuzzer's bytes as typed
 * values, a private scratch directory the code under test may open files
 * in (and nothing else), and small file helpers.
 *
 * A harness defines LLVMFuzzerTestOneInput(); it is linked either with
 * libFuzzer (scripts/fuzz.sh) or with standalone.c, which replays corpus
 * files for the regression test.
 */
#ifndef MPQEMU_TESTS_FUZZ_COMMON_H
#define MPQEMU_TESTS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* --- the input ------------------------------------------------------------ */

/*
 * The fuzzer's bytes, consumed from the front.  Past the end every value
 * reads as 0, so a harness never needs to check for running short.
 */
struct fuzz_input {
    const uint8_t *p;
    size_t left;
};

static inline void fi_init(struct fuzz_input *in, const uint8_t *data, size_t size)
{
    in->p = data;
    in->left = size;
}

static inline bool fi_empty(const struct fuzz_input *in)
{
    return in->left == 0;
}

uint8_t fi_u8(struct fuzz_input *in);
uint16_t fi_u16(struct fuzz_input *in);
uint32_t fi_u32(struct fuzz_input *in);
uint64_t fi_u64(struct fuzz_input *in);
bool fi_bool(struct fuzz_input *in);
/* A value in [0, n) from one byte (n <= 256) or two (larger n). */
unsigned fi_below(struct fuzz_input *in, unsigned n);
/* One of the n values in table. */
uint64_t fi_pick(struct fuzz_input *in, const uint64_t *table, size_t n);
/* Copies up to len bytes into out (zeros past the end); returns len. */
size_t fi_bytes(struct fuzz_input *in, void *out, size_t len);

#define FI_PICK(in, table) fi_pick((in), (table), sizeof(table) / sizeof((table)[0]))

/* --- the scratch directory ---------------------------------------------------- */

/*
 * A directory of this process's own (under $TMPDIR, else /dev/shm when
 * it takes O_DIRECT, else /tmp), removed at exit.  While the harness runs, the code under test opens files only
 * there: open() of any other path fails with EACCES, and relative paths
 * are taken from it.  Fuzzed input names files (QMP's filename, a qcow2
 * backing name); this keeps it from opening, let alone writing or
 * truncating, the host's files.
 */
const char *fuzz_scratch_dir(void);
enum { FUZZ_PATH_MAX = 256 };
/* The absolute path of a file in the scratch directory, into out. */
void fuzz_scratch_path(char out[FUZZ_PATH_MAX], const char *name);
/* Creates or replaces a scratch file with len bytes of data (NULL: zeros). */
void fuzz_write_file(const char *name, const void *data, size_t len);

/* --- the process ------------------------------------------------------------- */

/*
 * Once per process: logs only errors (unless MPQEMU_FUZZ_VERBOSE is set),
 * SIGPIPE ignored as in mpqemu-remote.
 */
void fuzz_process_init(void);

struct loop;
struct aio_engine;
/* A new event loop, and an I/O engine of depth requests on it; aborts when either fails. */
void fuzz_loop_new(struct loop **loop, struct aio_engine **aio, unsigned depth);

/* A harness's own invariant broke: reports and aborts, so the fuzzer keeps the input. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
