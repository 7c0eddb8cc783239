// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A program of a library user: built against the installed libmpqemu-client
 * through pkg-config (tests/functional/install.sh), it probes the running
 * remote listening on the vfio-user socket argv[1] and asks its disk for
 * INQUIRY data.  Only the public headers, as installed.
 */
#include <mpqemu-client.h>
#include <mpqemu-lsi.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    struct mpq_ram ram;
    struct mpq_pci_info info;
    struct mpq_scsi_result res;
    const uint8_t inquiry[6] = { 0x12, 0, 0, 0, 96, 0 };
    struct mpq_lsi *lsi;
    struct mpq_dev *d;
    char *err = NULL;

    if (argc != 2) {
        fprintf(stderr, "usage: %s VFIO-USER-SOCKET\n", argv[0]);
        return 2;
    }
    if (mpq_ram_create(&ram, 0, 8 << 20, &err) < 0 || !(d = mpq_open_vfio_user(argv[1], &err)) ||
        mpq_map_ram(d, &ram, 1, &err) < 0 || mpq_intx_enable(d, &err) < 0 ||
        mpq_probe(d, &info, &err) < 0) {
        fprintf(stderr, "probe: %s\n", err);
        return 1;
    }
    printf("vendor 0x%04x device 0x%04x class 0x%06x\n", info.vendor, info.device,
           info.class_code);
    if (!(lsi = mpq_lsi_new(d, &ram, 1 << 20, &err)) ||
        mpq_lsi_command(lsi, 0, 0, inquiry, sizeof(inquiry), 2 << 20, 96, &res, &err) < 0) {
        fprintf(stderr, "inquiry: %s\n", err);
        return 1;
    }
    printf("inquiry status %u: %.8s %.16s\n", res.status, (char *)ram.host + (2 << 20) + 8,
           (char *)ram.host + (2 << 20) + 16);
    mpq_lsi_free(lsi);
    mpq_close(d);
    mpq_ram_destroy(&ram);
    return 0;
}
