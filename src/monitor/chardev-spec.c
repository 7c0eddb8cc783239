// SPDX-License-Identifier: GPL-2.0-or-later
#include "monitor/chardev-spec.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

int chardev_spec_flags(const char *spec, bool *server, bool *wait, char **err)
{
    const char *comma = strchr(spec, ',');
    char *flags = strdup(comma ? comma + 1 : ""), *save = NULL;
    int r = 0;

    if (!flags) {
        error_setf(err, "out of memory");
        return -1;
    }
    *server = false;
    *wait = true;
    for (char *tok = strtok_r(flags, ",", &save); tok && r == 0;
         tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "server") || !strcmp(tok, "server=on")) {
            *server = true;
        } else if (!strcmp(tok, "nowait") || !strcmp(tok, "wait=off")) {
            *wait = false;
        } else if (!strcmp(tok, "wait") || !strcmp(tok, "wait=on")) {
            *wait = true;
        } else {
            error_setf(err, "'%s': unknown option '%s' (server, nowait, wait=on|off)", spec, tok);
            r = -1;
        }
    }
    free(flags);
    return r;
}
