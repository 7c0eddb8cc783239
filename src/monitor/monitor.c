// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Monitor sessions: QMP (a stream of JSON objects, capabilities
 * negotiation first, replies with the request's id, events with
 * timestamps) and HMP (lines of text with a "(qemu) " prompt).
 */
#include "monitor/monitor.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "monitor/chardev.h"
#include "util/error.h"
#include "util/log.h"

enum {
    MAX_REQUEST_BYTES = 1 << 20,    /* one QMP request, or one HMP line */
    MAX_JSON_DEPTH = 32,
};

struct monitor {
    struct monitor_vm *vm;
    struct chardev *chr;
    bool qmp;
    /* QMP */
    struct json_tokener *tok;
    size_t request_bytes;
    bool negotiated;
    /* HMP */
    char *line;
    size_t line_len;
    bool line_too_long;
    struct monitor *next;
};

static struct monitor *all_monitors;

static void send_text(struct monitor *m, const char *text)
{
    chardev_write(m->chr, text, strlen(text));
}

static void send_json(struct monitor *m, struct json_object *o)
{
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

    chardev_write(m->chr, s, strlen(s));
    chardev_write(m->chr, "\r\n", 2);
}

/* --- QMP ------------------------------------------------------------------ */

static void qmp_greet(struct monitor *m)
{
    struct json_object *args = json_object_new_object(), *greeting;
    struct qmp_error e;
    struct json_object *version = qmp_run(m->vm, "query-version", args, &e);
    struct json_object *body = json_object_new_object();

    json_object_put(args);
    json_object_object_add(body, "version", version);
    json_object_object_add(body, "capabilities", json_object_new_array());
    greeting = json_object_new_object();
    json_object_object_add(greeting, "QMP", body);
    send_json(m, greeting);
    json_object_put(greeting);
}

/* Sends { key: value } with the request's id, if it had one; takes value. */
static void qmp_answer(struct monitor *m, struct json_object *id, const char *key,
                       struct json_object *value)
{
    struct json_object *r = json_object_new_object();

    json_object_object_add(r, key, value);
    if (id) {
        json_object_object_add(r, "id", json_object_get(id));
    }
    send_json(m, r);
    json_object_put(r);
}

static void qmp_reply_error(struct monitor *m, struct json_object *id, const char *cls,
                            const char *desc)
{
    struct json_object *err = json_object_new_object();

    json_object_object_add(err, "class", json_object_new_string(cls));
    json_object_object_add(err, "desc", json_object_new_string(desc ? desc : "failed"));
    qmp_answer(m, id, "error", err);
}

static void qmp_reply(struct monitor *m, struct json_object *id, struct json_object *ret)
{
    qmp_answer(m, id, "return", ret);
}

/* qmp_capabilities: the only command before negotiation, refused after it. */
static void qmp_negotiate(struct monitor *m, struct json_object *id, struct json_object *args)
{
    struct json_object *enable = NULL;

    if (m->negotiated) {
        qmp_reply_error(m, id, "CommandNotFound",
                        "Capabilities negotiation is already complete, command ignored");
        return;
    }
    if (args) {
        json_object_object_foreach(args, key, val) {
            (void)val;
            if (strcmp(key, "enable")) {
                qmp_reply_error(m, id, "GenericError", "Parameter 'enable' expected");
                return;
            }
        }
    }
    if (args && json_object_object_get_ex(args, "enable", &enable) &&
        (!json_object_is_type(enable, json_type_array) ||
         json_object_array_length(enable) > 0)) {
        qmp_reply_error(m, id, "GenericError", "Capability 'oob' not available");
        return;
    }
    m->negotiated = true;
    qmp_reply(m, id, json_object_new_object());
}

/* Checks the request's shape; returns the command name or NULL after an error reply. */
static const char *qmp_request_command(struct monitor *m, struct json_object *req,
                                       struct json_object *id, struct json_object **args)
{
    struct json_object *exec = NULL;

    *args = NULL;
    if (!json_object_is_type(req, json_type_object)) {
        qmp_reply_error(m, NULL, "GenericError", "QMP input must be a JSON object");
        return NULL;
    }
    json_object_object_foreach(req, key, val) {
        if (!strcmp(key, "execute")) {
            exec = val;
        } else if (!strcmp(key, "arguments")) {
            *args = val;
        } else if (strcmp(key, "id")) {
            char desc[128];

            snprintf(desc, sizeof(desc), "QMP input member '%.64s' is unexpected", key);
            qmp_reply_error(m, id, "GenericError", desc);
            return NULL;
        }
    }
    if (!exec || !json_object_is_type(exec, json_type_string)) {
        qmp_reply_error(m, id, "GenericError", exec ? "QMP input member 'execute' must be a string"
                                                    : "QMP input lacks member 'execute'");
        return NULL;
    }
    if (*args && !json_object_is_type(*args, json_type_object)) {
        qmp_reply_error(m, id, "GenericError", "QMP input member 'arguments' must be an object");
        return NULL;
    }
    return json_object_get_string(exec);
}

static void qmp_handle(struct monitor *m, struct json_object *req)
{
    struct json_object *id = NULL, *args, *ret;
    struct qmp_error e;
    const char *cmd;

    if (json_object_is_type(req, json_type_object)) {
        json_object_object_get_ex(req, "id", &id);
    }
    if (!(cmd = qmp_request_command(m, req, id, &args))) {
        return;
    }
    if (!strcmp(cmd, "qmp_capabilities")) {
        qmp_negotiate(m, id, args);
        return;
    }
    if (!m->negotiated) {
        qmp_reply_error(m, id, "CommandNotFound",
                        "Expecting capabilities negotiation with 'qmp_capabilities'");
        return;
    }
    ret = qmp_run(m->vm, cmd, args, &e);
    if (ret) {
        qmp_reply(m, id, ret);
    } else {
        qmp_reply_error(m, id, e.cls, e.desc);
        free(e.desc);
    }
}

/* After a parse error: the rest of the line is dropped, the next line starts afresh. */
static size_t skip_line(const char *data, size_t len)
{
    const char *nl = memchr(data, '\n', len);

    return nl ? (size_t)(nl + 1 - data) : len;
}

static void qmp_received(struct monitor *m, const char *data, size_t len)
{
    while (len) {
        struct json_object *req = json_tokener_parse_ex(m->tok, data, (int)len);
        enum json_tokener_error jerr = json_tokener_get_error(m->tok);
        size_t used;
        char desc[160];

        if (req) {
            used = json_tokener_get_parse_end(m->tok);
            used = used && used <= len ? used : len;
            m->request_bytes = 0;
            qmp_handle(m, req);
            json_object_put(req);
        } else if (jerr == json_tokener_continue &&
                   m->request_bytes + len <= MAX_REQUEST_BYTES) {
            used = len;
            m->request_bytes += len;
        } else {
            snprintf(desc, sizeof(desc), "JSON parse error, %s",
                     jerr == json_tokener_continue ? "request too large"
                                                    : json_tokener_error_desc(jerr));
            qmp_reply_error(m, NULL, "GenericError", desc);
            json_tokener_reset(m->tok);
            m->request_bytes = 0;
            used = skip_line(data, len);
        }
        data += used;
        len -= used;
    }
}

void monitor_event(const char *name, struct json_object *data)
{
    struct json_object *ev = json_object_new_object(), *ts = json_object_new_object();
    struct timeval tv;

    gettimeofday(&tv, NULL);
    json_object_object_add(ev, "event", json_object_new_string(name));
    if (data) {
        json_object_object_add(ev, "data", data);
    }
    json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
    json_object_object_add(ts, "microseconds", json_object_new_int64(tv.tv_usec));
    json_object_object_add(ev, "timestamp", ts);
    for (struct monitor *m = all_monitors; m; m = m->next) {
        if (m->qmp && m->negotiated && chardev_connected(m->chr)) {
            send_json(m, ev);
        }
    }
    json_object_put(ev);
}

/* --- HMP ---------------------------------------------------------------------- */

static void hmp_line(struct monitor *m, const char *line)
{
    char *out = hmp_run(m->vm, line);

    if (out) {
        send_text(m, out);
        free(out);
    }
    send_text(m, "(qemu) ");
}

static void hmp_received(struct monitor *m, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];

        if (c == '\n') {
            if (m->line_too_long) {
                send_text(m, "line too long\r\n(qemu) ");
            } else {
                while (m->line_len && m->line[m->line_len - 1] == '\r') {
                    m->line_len--;
                }
                m->line[m->line_len] = 0;
                hmp_line(m, m->line);
            }
            m->line_len = 0;
            m->line_too_long = false;
        } else if (m->line_len + 1 < 4096) {
            m->line[m->line_len++] = c;
        } else {
            m->line_too_long = true;
        }
    }
}

/* --- sessions ----------------------------------------------------------------- */

static void on_connected(void *opaque)
{
    struct monitor *m = opaque;

    if (m->qmp) {
        json_tokener_reset(m->tok);
        m->request_bytes = 0;
        m->negotiated = false;
        qmp_greet(m);
    } else {
        m->line_len = 0;
        m->line_too_long = false;
        send_text(m, "mpqemu-remote " MPQEMU_VERSION
                     " monitor - type 'help' for more information\r\n(qemu) ");
    }
}

static void on_received(void *opaque, const char *data, size_t len)
{
    struct monitor *m = opaque;

    if (m->qmp) {
        qmp_received(m, data, len);
    } else {
        hmp_received(m, data, len);
    }
}

static void on_disconnected(void *opaque)
{
    struct monitor *m = opaque;

    m->negotiated = false;
}

struct monitor *monitor_new(struct loop *loop, struct monitor_vm *vm, const char *spec,
                            bool qmp, char **err)
{
    struct monitor *m = calloc(1, sizeof(*m));
    struct chardev_handler h = { on_connected, on_received, on_disconnected, m };

    if (!m || !(m->line = malloc(4096)) ||
        !(m->tok = json_tokener_new_ex(MAX_JSON_DEPTH))) {
        error_setf(err, "out of memory");
        monitor_free(m);
        return NULL;
    }
    m->vm = vm;
    m->qmp = qmp;
    m->next = all_monitors;
    all_monitors = m;
    if (!(m->chr = chardev_open(loop, spec, &h, err))) {
        error_prefix(err, "%s", qmp ? "-qmp" : "-monitor");
        monitor_free(m);
        return NULL;
    }
    return m;
}

int monitor_wait_client(struct monitor *m, char **err)
{
    return chardev_wants_wait(m->chr) ? chardev_wait_client(m->chr, err) : 0;
}

const char *monitor_socket_path(const struct monitor *m)
{
    return chardev_socket_path(m->chr);
}

void monitor_free(struct monitor *m)
{
    if (!m) {
        return;
    }
    for (struct monitor **p = &all_monitors; *p; p = &(*p)->next) {
        if (*p == m) {
            *p = m->next;
            break;
        }
    }
    chardev_close(m->chr, 200);
    if (m->tok) {
        json_tokener_free(m->tok);
    }
    free(m->line);
    free(m);
}
