// SPDX-License-Identifier: GPL-2.0-or-later
#include "proto/server.h"

#include <string.h>

#include "proto/mpqemu-server.h"
#include "proto/vfio-user-server.h"

const struct server_ops *const server_protocols[] = {
    &mpqemu_server_ops,
    &vfio_user_server_ops,
    NULL,
};

const struct server_ops *server_protocol_find(const char *object_type)
{
    for (size_t i = 0; server_protocols[i]; i++) {
        if (!strcmp(server_protocols[i]->object_type, object_type)) {
            return server_protocols[i];
        }
    }
    return NULL;
}

const struct server_ops *server_protocol_for_fd(void)
{
    for (size_t i = 0; server_protocols[i]; i++) {
        if (server_protocols[i]->create_on_fd) {
            return server_protocols[i];
        }
    }
    return NULL;
}
