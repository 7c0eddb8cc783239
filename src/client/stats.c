// SPDX-License-Identifier: GPL-2.0-or-later
#include <stdlib.h>
#include <time.h>

#include "client/mpqemu-client.h"

int mpq_stats_add(struct mpq_stats *s, double us)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        double *grown = realloc(s->us, cap * sizeof(*grown));

        if (!grown) {
            return -1;
        }
        s->us = grown;
        s->cap = cap;
    }
    s->us[s->n++] = us;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

double mpq_stats_quantile(struct mpq_stats *s, double q)
{
    size_t i;

    if (!s->n) {
        return 0;
    }
    qsort(s->us, s->n, sizeof(*s->us), cmp_double);
    i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return s->us[i < s->n ? i : s->n - 1];
}

void mpq_stats_free(struct mpq_stats *s)
{
    free(s->us);
    s->us = NULL;
    s->n = s->cap = 0;
}

double mpq_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}
