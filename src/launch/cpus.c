// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * "cpus" / --cpus: where the VM's processes run.  A TCG vCPU thread, QEMU's
 * vfio-user thread and the remote hand each register access on to one
 * another; within one CPU that is a switch, across CPUs a wakeup, which
 * costs far more on some hosts (docs/performance.md, "Placing").
 */
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "launch/launch.h"
#include "util/error.h"

/* A CPU number at *p, moved past; -1 if there is none or it is too big. */
static long cpu_number(const char **p)
{
    long n = 0;

    if (!isdigit((unsigned char)**p)) {
        return -1;
    }
    for (; isdigit((unsigned char)**p); (*p)++) {
        n = n * 10 + (**p - '0');
        if (n >= CPU_SETSIZE) {
            return -1;
        }
    }
    return n;
}

/* One item, "N" or "N-M", into set; -1 if malformed. */
static int add_item(const char **p, cpu_set_t *set)
{
    long first = cpu_number(p), last = first;

    if (first >= 0 && **p == '-') {
        (*p)++;
        last = cpu_number(p);
    }
    if (first < 0 || last < first) {
        return -1;
    }
    for (long cpu = first; cpu <= last; cpu++) {
        CPU_SET((size_t)cpu, set);
    }
    return 0;
}

int cpu_list_parse(const char *text, cpu_set_t *set, char **err)
{
    cpu_set_t allowed;
    const char *p = text;

    CPU_ZERO(set);
    /* Items up to the end; on a malformed one p stops inside the text (p[-1] not its end). */
    do {
        if (add_item(&p, set) < 0) {
            break;
        }
    } while (*p++ == ',');
    if (p == text || p[-1]) {
        error_setf(err, "\"%s\" is not a CPU list such as \"0\" or \"0-3,6\" "
                   "(CPUs below %d)", text, CPU_SETSIZE);
        return -1;
    }
    if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0) {
        error_setf(err, "cannot read this process's CPUs: %s", strerror(errno));
        return -1;
    }
    for (size_t cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, set) && !CPU_ISSET(cpu, &allowed)) {
            error_setf(err, "CPU %zu is not one mpqemu-launch may run on", cpu);
            return -1;
        }
    }
    return 0;
}
