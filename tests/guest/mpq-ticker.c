// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The guest's timer interrupts at a chosen rate (tests/guest/proxy-bench.sh):
 * built static by kit.sh, started by init (mpq.ticker) before the bench rows.
 *
 *   mpq-ticker HZ
 *
 * Turns on the RTC's periodic interrupt at HZ (RTC_IRQP_SET, RTC_PIE_ON on
 * /dev/rtc0) and waits to be killed.  Linux makes that interrupt with an
 * hrtimer (the RTC class's pie_timer); the guest is booted with "irqpoll
 * nolapic", so its only clockevent device is on IRQ 0 (HPET in legacy mode
 * or the PIT) and, with high-resolution timers, it is programmed one shot
 * for each hrtimer: IRQ 0 fires HZ times a second, and irqpoll runs every
 * shared interrupt handler (sym53c8xx's among them) on each IRQ 0.  The
 * guest then finds a device's completion within 1/HZ instead of at the next
 * 250 Hz tick.  Nobody reads /dev/rtc0, so no process wakes up for it: a
 * loop of short sleeps would cost the (TCG) guest a context switch per
 * interrupt.  init prints the IRQ 0 rate this gives.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/rtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum { MAX_HZ = 8192 };         /* the RTC class's limit (RTC_MAX_FREQ) */

int main(int argc, char **argv)
{
    char *end;
    long hz;
    int fd;

    hz = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 2 || *end || hz < 1 || hz > MAX_HZ) {
        fprintf(stderr, "usage: mpq-ticker HZ (1 to %d)\n", MAX_HZ);
        return 2;
    }
    fd = open("/dev/rtc0", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror("mpq-ticker: /dev/rtc0");
        return 1;
    }
    if (ioctl(fd, RTC_IRQP_SET, (unsigned long)hz) < 0 || ioctl(fd, RTC_PIE_ON, 0) < 0) {
        perror("mpq-ticker: the RTC's periodic interrupt");
        return 1;
    }
    /* Closing the device (our exit) turns the interrupt off. */
    for (;;) {
        pause();
    }
}
