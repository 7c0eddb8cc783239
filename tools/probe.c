// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * mpqemu-probe: connects to a remote device as QEMU's proxy would, prints
 * what the device is and how fast it answers.
 *
 *   mpqemu-probe [--iterations N] -- COMMAND ARGS...   ({fd} -> the socket)
 *   mpqemu-probe [--iterations N] -- COMMAND ...{socket}... (vfio-user)
 *   mpqemu-probe [--iterations N] --fd N | --socket PATH
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/mpqemu-client.h"
#include "util/opts.h"

enum { GUEST_RAM_SIZE = 16 << 20, CHILD_EXIT_WAIT_MS = 10000 };

static void usage(FILE *out)
{
    fprintf(out,
        "usage: mpqemu-probe [--iterations N] -- COMMAND ARGS...\n"
        "       mpqemu-probe [--iterations N] --fd N | --socket PATH\n"
        "\n"
        "Starts COMMAND and probes the device it serves: ids, BARs, and\n"
        "round-trip times.  '{fd}' in the arguments becomes one end of a socket\n"
        "pair (QEMU's multi-process protocol); '{socket}' becomes a fresh socket\n"
        "path the command listens on (vfio-user).\n"
        "  --iterations N   timed accesses per measurement (default 1000)\n"
        "  --fd N           probe an inherited, connected socket instead\n"
        "  --socket PATH    probe the vfio-user server listening on PATH instead\n"
        "  --poll-ns N      spin up to N ns for each reply before sleeping\n"
        "                   (default 50000; 0: sleep at once, as QEMU's proxy does)\n");
}

static const char *bar_kind(const struct mpq_bar_info *b)
{
    if (b->io) {
        return "I/O";
    }
    if (b->mem64) {
        return b->prefetchable ? "memory 64-bit prefetchable" : "memory 64-bit";
    }
    return b->prefetchable ? "memory 32-bit prefetchable" : "memory 32-bit";
}

static void print_info(const struct mpq_pci_info *p)
{
    printf("device: vendor 0x%04x device 0x%04x class 0x%04x prog-if 0x%02x "
           "revision 0x%02x subsystem 0x%04x:0x%04x interrupt pin %u\n",
           p->vendor, p->device, p->class_code >> 8, p->class_code & 0xff, p->revision,
           p->subsystem_vendor, p->subsystem, p->interrupt_pin);
    for (int i = 0; i < 6; i++) {
        const struct mpq_bar_info *b = &p->bars[i];

        if (b->present) {
            printf("BAR%d: %s %llu bytes at 0x%llx\n", i, bar_kind(b),
                   (unsigned long long)b->size, (unsigned long long)b->addr);
        }
    }
}

static void print_stats(const char *what, struct mpq_stats *s)
{
    printf("  %-16s %10.2f %10.2f %10.2f\n", what, mpq_stats_quantile(s, 0),
           mpq_stats_quantile(s, 0.5), mpq_stats_quantile(s, 0.99));
}

static int time_config_reads(struct mpq_dev *d, long n, char **err)
{
    struct mpq_stats s = { 0 };
    uint32_t v;

    for (long i = 0; i < n; i++) {
        double t0 = mpq_now_us();

        if (mpq_cfg_read(d, 0, 4, &v, err) < 0) {
            mpq_stats_free(&s);
            return -1;
        }
        mpq_stats_add(&s, mpq_now_us() - t0);
    }
    print_stats("config read", &s);
    mpq_stats_free(&s);
    return 0;
}

static int time_bar_reads(struct mpq_dev *d, int bar, long n, char **err)
{
    struct mpq_stats s = { 0 };
    char what[32];
    uint64_t v;

    for (long i = 0; i < n; i++) {
        double t0 = mpq_now_us();

        if (mpq_bar_read(d, bar, 0, 4, &v, err) < 0) {
            mpq_stats_free(&s);
            return -1;
        }
        mpq_stats_add(&s, mpq_now_us() - t0);
    }
    snprintf(what, sizeof(what), "BAR%d read", bar);
    print_stats(what, &s);
    mpq_stats_free(&s);
    return 0;
}

static uint64_t poll_ns = 50000;

static int probe(struct mpq_dev *d, long iterations)
{
    char *err = NULL;
    struct mpq_ram ram = { .fd = -1 };
    struct mpq_pci_info info;
    int rc = -1;

    mpq_set_poll_ns(d, poll_ns);
    /* The order of QEMU's proxy: memory map, irqfds, then a reset and the probe. */
    if (mpq_ram_create(&ram, 0, GUEST_RAM_SIZE, &err) < 0 ||
        mpq_map_ram(d, &ram, 1, &err) < 0 || mpq_intx_enable(d, &err) < 0 ||
        mpq_reset(d, &err) < 0 || mpq_probe(d, &info, &err) < 0) {
        goto out;
    }
    print_info(&info);
    printf("round trip (us, %ld accesses)    min        p50        p99\n", iterations);
    if (time_config_reads(d, iterations, &err) < 0) {
        goto out;
    }
    for (int i = 0; i < 6; i++) {
        if (info.bars[i].present && time_bar_reads(d, i, iterations, &err) < 0) {
            goto out;
        }
    }
    rc = 0;
out:
    if (rc < 0) {
        fprintf(stderr, "mpqemu-probe: %s\n", err ? err : "failed");
    }
    free(err);
    mpq_ram_destroy(&ram);
    return rc;
}

/*
 * The remote must exit, and cleanly, once its proxy has gone (a vfio-user
 * remote once told to).
 */
static int stop(struct mpq_remote *r)
{
    int status;

    if (mpq_remote_stop(r, CHILD_EXIT_WAIT_MS, &status) != 0) {
        printf("remote did not exit after the disconnect; killed\n");
        return -1;
    }
    if (WIFSIGNALED(status)) {
        printf("remote killed by signal %d\n", WTERMSIG(status));
        return -1;
    }
    printf("remote exited with status %d\n", WEXITSTATUS(status));
    return WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "iterations", required_argument, NULL, 'n' },
        { "fd", required_argument, NULL, 'f' },
        { "socket", required_argument, NULL, 's' },
        { "poll-ns", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    uint64_t iterations = 1000, fd = 0;
    const char *socket_path = NULL;
    bool have_fd = false;
    struct mpq_remote remote;
    struct mpq_dev *d;
    int opt, rc;
    char *err = NULL;

    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            if (parse_uint(optarg, &iterations) < 0 || !iterations || iterations > 10000000) {
                fprintf(stderr, "mpqemu-probe: --iterations takes 1 to 10000000\n");
                return 2;
            }
            break;
        case 'f':
            if (parse_uint(optarg, &fd) < 0 || fd > 1000000) {
                fprintf(stderr, "mpqemu-probe: --fd takes a file descriptor number\n");
                return 2;
            }
            have_fd = true;
            break;
        case 's':
            socket_path = optarg;
            break;
        case 'p':
            if (parse_uint(optarg, &poll_ns) < 0 || poll_ns > 1000000000) {
                fprintf(stderr, "mpqemu-probe: --poll-ns takes 0 to 1000000000\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if ((int)have_fd + (socket_path != NULL) + (optind < argc) != 1) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (optind < argc) {
        if (mpq_remote_start(&remote, argv + optind, CHILD_EXIT_WAIT_MS, &err) < 0) {
            fprintf(stderr, "mpqemu-probe: %s\n", err ? err : "cannot start the remote");
            free(err);
            mpq_remote_stop(&remote, CHILD_EXIT_WAIT_MS, &rc);
            return 1;
        }
        rc = probe(remote.dev, (long)iterations);
        return (stop(&remote) < 0 || rc < 0) ? 1 : 0;
    }
    d = have_fd ? mpq_open_mpqemu((int)fd, &err) : mpq_open_vfio_user(socket_path, &err);
    if (!d) {
        fprintf(stderr, "mpqemu-probe: %s\n", err ? err : "cannot connect");
        free(err);
        return 1;
    }
    rc = probe(d, (long)iterations);
    mpq_close(d);
    return rc < 0 ? 1 : 0;
}
