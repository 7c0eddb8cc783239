// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Runs a harness's LLVMFuzzerTestOneInput() over files, without libFuzzer:
 * what the regression test does with the committed corpora, in any build
 * (gcc, sanitizers or not).  Arguments are files or directories (their
 * files, sorted).  The inputs run in child processes, a batch each; when a
 * batch fails (a crash, a sanitizer report, a leak at exit), its inputs run
 * again one child each, so that the failure is the input's alone.  The
 * output is TAP, one line per input.  MPQEMU_FUZZ_NOFORK=1 runs them in
 * this process instead (for a debugger, or coverage of a single run).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz-common.h"

enum {
    INPUT_TIMEOUT_S = 60,
    BATCH = 32,     /* inputs per child */
};

struct list {
    char **v;
    size_t n;
};

static void add(struct list *l, char *path)
{
    char **grown = realloc(l->v, (l->n + 1) * sizeof(*grown));

    if (!grown) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    grown[l->n++] = path;
    l->v = grown;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_dir(struct list *l, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t first = l->n;

    if (!d) {
        fprintf(stderr, "%s: %s\n", dir, strerror(errno));
        exit(2);
    }
    while ((e = readdir(d))) {
        char *path;

        if (e->d_name[0] == '.' || asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
            continue;
        }
        add(l, path);
    }
    closedir(d);
    qsort(l->v + first, l->n - first, sizeof(*l->v), by_name);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long size;

    if (!f || fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) < 0 || !(buf = malloc((size_t)size + 1)) ||
        fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void run_one(const char *path)
{
    size_t len;
    uint8_t *data = read_file(path, &len);

    LLVMFuzzerTestOneInput(data, len);
    free(data);
}

/* How a child ended, into why; 0 when it exited cleanly (its leak check passed too). */
static int wait_child(pid_t pid, char *why, size_t why_len)
{
    int status;

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return 0;
    }
    if (WIFSIGNALED(status)) {
        snprintf(why, why_len, "killed by signal %d%s", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    } else {
        snprintf(why, why_len, "exit status %d", WEXITSTATUS(status));
    }
    return -1;
}

/*
 * Runs inputs [first, first + n) one after the other in a child; 0 when
 * the child ran them all and exited cleanly.  A child per input costs a
 * sanitizer's start and leak check each: batches are much faster.
 */
static int run_batch(struct list *l, size_t first, size_t n, char *why, size_t why_len)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        alarm(INPUT_TIMEOUT_S * (unsigned)n);
        for (size_t i = first; i < first + n; i++) {
            run_one(l->v[i]);
        }
        exit(0);
    }
    return wait_child(pid, why, why_len);
}

/* The verdicts of a batch: all ok, or each input again on its own to find which failed. */
static size_t report_batch(struct list *l, size_t first, size_t n)
{
    char why[128] = "";
    size_t failed = 0;

    if (run_batch(l, first, n, why, sizeof(why)) == 0) {
        for (size_t i = first; i < first + n; i++) {
            printf("ok %zu - %s\n", i + 1, l->v[i]);
        }
        return 0;
    }
    for (size_t i = first; i < first + n; i++) {
        if (run_batch(l, i, 1, why, sizeof(why)) < 0) {
            printf("not ok %zu - %s: %s\n", i + 1, l->v[i], why);
            failed++;
        } else {
            printf("ok %zu - %s\n", i + 1, l->v[i]);
        }
    }
    if (!failed) {
        /* Only together (state one input left for the next): the batch fails as one. */
        printf("not ok %zu - %s: fails only after the inputs before it\n", first + n,
               l->v[first + n - 1]);
        failed++;
    }
    return failed;
}

int main(int argc, char **argv)
{
    struct list inputs = { 0 };
    bool fork_each = !getenv("MPQEMU_FUZZ_NOFORK");
    size_t failed = 0;
    struct stat st;

    for (int i = 1; i < argc; i++) {
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            add_dir(&inputs, argv[i]);
        } else {
            add(&inputs, strdup(argv[i]));
        }
    }
    printf("1..%zu\n", inputs.n);
    for (size_t i = 0; i < inputs.n; i += BATCH) {
        size_t n = inputs.n - i < BATCH ? inputs.n - i : BATCH;

        if (fork_each) {
            failed += report_batch(&inputs, i, n);
            continue;
        }
        for (size_t k = i; k < i + n; k++) {
            run_one(inputs.v[k]);
            printf("ok %zu - %s\n", k + 1, inputs.v[k]);
        }
    }
    for (size_t i = 0; i < inputs.n; i++) {
        free(inputs.v[i]);
    }
    free(inputs.v);
    return failed ? 1 : 0;
}
