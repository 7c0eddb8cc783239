/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The checkpoint: device state that outlives the device process.  Under
 * `-restart on` the keeper creates a memfd and hands it to every device
 * process it starts (`-x-checkpoint fd=N`); each device keeps its PCI
 * configuration space and its register file there, in memory it uses live,
 * so a process killed at any instruction leaves the state as it was.  The
 * next process finds the same areas by name.
 *
 * Areas hold plain data only (no pointers), are bounded in size, and are
 * checked when found again: a checkpoint whose header or directory does not
 * hold together is started afresh, and the devices start from power-on.
 * Without a checkpoint fd, areas are ordinary zeroed memory.
 */
#ifndef MPQEMU_UTIL_CHECKPOINT_H
#define MPQEMU_UTIL_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

enum {
    CHECKPOINT_SIZE = 4 * 1024 * 1024,      /* the whole memfd */
    CHECKPOINT_MAX_AREA = 1024 * 1024,      /* one area */
    CHECKPOINT_NAME_MAX = 55,
};

/* Creates the memfd a keeper hands to its device processes (sealed against resizing). */
int checkpoint_create_fd(char **err);
/*
 * Maps the checkpoint memfd 'fd' (the device process, from -x-checkpoint):
 * checks its header and directory, starts it afresh if they are corrupt.
 */
int checkpoint_open(int fd, char **err);
/* Unmaps it (areas handed out must no longer be used). */
void checkpoint_close(void);
/*
 * Whether a checkpoint is open: this process is a keeper's device process,
 * which may be killed at any instruction while the guest goes on.  What it
 * tells the guest is done must then be in the checkpoint or in files (the
 * host's page cache outlives the process), not only in its own memory.
 */
bool checkpoint_is_open(void);
/* How many areas the last checkpoint_open() found in good order. */
size_t checkpoint_restored_areas(void);

/*
 * 'size' bytes of state named 'name' (at most CHECKPOINT_NAME_MAX chars):
 * zeroed the first time, as the previous process left them when *restored.
 * When the checkpoint has no room left (its directory or its space full),
 * zeroed memory of this process's own, which a restart does not keep.
 * NULL when the name or size is out of bounds, or memory runs out.
 */
void *checkpoint_area(const char *name, size_t size, bool *restored);
/* The caller is done with an area (the device goes away). */
void checkpoint_release(void *area);

#endif
