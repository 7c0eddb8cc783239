/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The remote process as the harnesses build it, fresh for every input: an
 * event loop and io_uring engine, an LSI53C895A with scsi-hd on a raw, a
 * qcow2 (over a raw backing file) and a cache=none image, a scsi-cd with a
 * disc and one with none, and the monitor's view of all that (so that
 * monitor commands run as mpqemu-remote runs them).  The images are
 * rewritten for every input, so that no input sees another's writes.
 */
#ifndef MPQEMU_TESTS_FUZZ_VM_H
#define MPQEMU_TESTS_FUZZ_VM_H

#include <stdbool.h>
#include <stddef.h>

#include "monitor/monitor.h"

struct loop;
struct aio_engine;
struct pci_device;

struct fuzz_vm {
    struct loop *loop;
    struct aio_engine *aio;
    struct monitor_vm mon;      /* devices and drives; its arrays are ours */
    struct pci_device *lsi;     /* the controller's PCI function */
    bool quit_requested;        /* a monitor's "quit" */
};

/* Names the harnesses and their dictionaries use. */
#define FUZZ_DISKS { "sd0", "sd1", "sd2", "cd0", "cd1" }
#define FUZZ_DRIVES { "d0", "d1", "d2", "d3" }
/* Images a monitor may insert as a new medium, relative to the scratch directory. */
#define FUZZ_MEDIA { "new.iso", "new.qcow2", "hd.raw", "cd.iso", "base.raw", "missing.img" }

void fuzz_vm_start(struct fuzz_vm *v);
/* One more device (-device's option string); the harness's own invariant breaks if it fails. */
void fuzz_vm_add_device(struct fuzz_vm *v, const char *text);
/* One round of the loop, not waiting for anything. */
void fuzz_vm_step(struct fuzz_vm *v);
/*
 * Rounds until nothing is left to run (no bottom half, no disk I/O in
 * flight), waiting for the disk when only it is busy; false if still busy
 * after max_rounds (SCRIPTS that loop keep the loop busy).
 */
bool fuzz_vm_settle(struct fuzz_vm *v, unsigned max_rounds);
/*
 * Stops the guest's side (a device reset, as mpqemu-remote's exit does)
 * and lets every request finish; a loop that never goes idle after that
 * is a bug and aborts.  Transports go between this and fuzz_vm_destroy().
 */
void fuzz_vm_quiesce(struct fuzz_vm *v);
/* Destroys devices, closes drives, frees the loop: nothing of the input remains. */
void fuzz_vm_destroy(struct fuzz_vm *v);

/*
 * Clears the unit attention every disk reports after power-on, as a
 * guest's driver has by the time it issues I/O (TEST UNIT READY until GOOD).
 */
void fuzz_vm_take_unit_attentions(struct fuzz_vm *v);
/* Programs the BARs and turns on I/O, memory and bus mastering, as firmware would. */
void fuzz_vm_firmware(struct fuzz_vm *v);

#endif
