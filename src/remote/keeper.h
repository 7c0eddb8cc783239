/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mpqemu-remote -restart on: the process becomes the keeper.  It takes the
 * VMM-facing endpoints (inherited multi-process sockets, vfio-user listening
 * paths), starts the device process (this binary, its endpoints replaced by
 * sockets to the keeper, and -x-checkpoint), relays every message through
 * proto/relay.h, and starts a new device process when one dies, within a
 * budget.  docs/restart.md.
 */
#ifndef MPQEMU_REMOTE_KEEPER_H
#define MPQEMU_REMOTE_KEEPER_H

#include <stdbool.h>

struct remote_cmdline;
struct sandbox;

/* The restart budget (-restart max=N,window=SECONDS): defaults and limits, mpqemu-launch's too. */
enum {
    RESTART_DEFAULT_MAX = 5,
    RESTART_DEFAULT_WINDOW_S = 60,
    RESTART_MAX_LIMIT = 1000,
    RESTART_WINDOW_LIMIT_S = 24 * 3600,
};

/* Parses -restart: 1 when on, 0 when off, -1 (logged) when malformed. */
int keeper_wanted(const struct remote_cmdline *cl);
/* Runs the keeper until the VMM has gone or the budget is spent; the exit code. */
/* 'sb': the -sandbox options; the keeper confines itself by them before the first device process. */
int keeper_main(int argc, char **argv, struct remote_cmdline *cl, struct sandbox *sb);

#endif
