// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/guarded-copy.h"

#include <setjmp.h>
#include <signal.h>
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

int guarded_copy(void *dst, const void *src, size_t len)
{
    sigjmp_buf jb;

    if (sigsetjmp(jb, 0)) {
        fault_jmp = NULL;
        return -1;
    }
    fault_jmp = &jb;
    memcpy(dst, src, len);
    fault_jmp = NULL;
    return 0;
}
