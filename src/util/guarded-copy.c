// SPDX-License-Identifier: GPL-2.0-or-later
#include "util/guarded-copy.h"

#include <setjmp.h>
#include <signal.h>
#include <string.h>

static __thread sigjmp_buf *volatile fault_jmp;

static void sigbus_handler(int sig, siginfo_t *info, void *uctx)
{
    (void)info;
    (void)uctx;
    if (fault_jmp) {
        siglongjmp(*fault_jmp, 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void guarded_copy_arm(void)
{
    /* SA_NODEFER: leaving by siglongjmp must not leave SIGBUS blocked. */
    struct sigaction sa = { .sa_sigaction = sigbus_handler,
                            .sa_flags = SA_SIGINFO | SA_NODEFER };
    struct sigaction old;

    if (sigaction(SIGBUS, NULL, &old) == 0 && (old.sa_flags & SA_SIGINFO) &&
        old.sa_sigaction == sigbus_handler) {
        return;
    }
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
