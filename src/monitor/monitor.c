// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Monitor sessions: QMP (a stream of JSON objects, capabilities
 * negotiation first, replies with the request's id, events with
 * timestamps) and HMP (lines of text with a "(qemu) " prompt).
 */
#include "monitor/monitor.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "monitor/chardev.h"
#include "monitor/qmp-json.h"
#include "util/error.h"
#include "util/log.h"
#include "util/loop.h"

enum {
    MAX_REQUEST_BYTES = 1 << 20,    /* one QMP request, or one HMP line */
    MAX_JSON_DEPTH = 32,
};

/*
 * The command a session waits for (an eject whose medium's I/O is
 * completing).  As QEMU's monitor, the session answers nothing else
 * meanwhile: what its client sends waits, and is read once it has answered.
 */
struct session_wait {
    struct qmp_later qmp;
    struct hmp_later hmp;
    struct monitor *m;          /* NULL once the client has left: the answer goes nowhere */
    struct json_object *req;    /* the QMP request, for its id */
};

struct monitor {
    struct monitor_vm *vm;
    struct chardev *chr;
    bool qmp;
    struct session_wait *wait;
    /* Input received while waiting, read from a bottom half once answered. */
    char *held;
    size_t held_len;
    bool held_dropped;          /* past the limit: logged once */
    struct loop *loop;
    struct loop_bh resume;
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

static void on_received(void *opaque, const char *data, size_t len);
static struct session_wait *new_wait(struct monitor *m);

/* Keeps input for after the answer; past MAX_REQUEST_BYTES the rest is dropped. */
static void hold(struct monitor *m, const char *data, size_t len)
{
    char *grown;

    if (!len) {
        return;
    }
    /* Once some is dropped, all that follows is: no request is read with a hole in it. */
    if (m->held_dropped || m->held_len + len > MAX_REQUEST_BYTES ||
        !(grown = realloc(m->held, m->held_len + len))) {
        if (!m->held_dropped) {
            log_warn("monitor: input past %d bytes while a command waits, dropped",
                     MAX_REQUEST_BYTES);
        }
        m->held_dropped = true;
        return;
    }
    memcpy(grown + m->held_len, data, len);
    m->held = grown;
    m->held_len += len;
}

/*
 * What came while the session waited, read from the loop: not inside the
 * backend's call that ended the wait (which may be a device going away).
 * Input that comes before then is read after it.
 */
static void on_resume(void *opaque)
{
    struct monitor *m = opaque;
    char *data = m->held;
    size_t len = m->held_len;

    m->held = NULL;
    m->held_len = 0;
    m->held_dropped = false;
    on_received(m, data, len);
    free(data);
}

/* The session has answered. */
static void resume(struct monitor *m)
{
    m->wait = NULL;
    if (m->held_len) {
        loop_bh_schedule(m->loop, &m->resume);
    }
}

/* The client left (or the monitor goes): a command still waiting answers no one. */
static void forget_wait(struct monitor *m)
{
    if (m->wait) {
        m->wait->m = NULL;
        m->wait = NULL;
    }
    loop_bh_cancel(m->loop, &m->resume);
    free(m->held);
    m->held = NULL;
    m->held_len = 0;
    m->held_dropped = false;
}

static void send_text(struct monitor *m, const char *text)
{
    chardev_write(m->chr, text, strlen(text));
}

/* One JSON value a line, in QEMU's text form; QEMU's monitor ends lines with CR LF. */
static void send_json(struct monitor *m, struct json_object *o)
{
    char *text = qmp_json_text(o);

    if (!text) {
        log_warn("monitor: out of memory for a QMP reply");
        return;
    }
    chardev_write(m->chr, text, strlen(text));
    chardev_write(m->chr, "\r\n", 2);
    free(text);
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

/*
 * Sends { key: value } with the id of req (an object, or NULL), if it has
 * one, whatever its JSON type (null too); takes value.
 */
static void qmp_answer(struct monitor *m, struct json_object *req, const char *key,
                       struct json_object *value)
{
    struct json_object *r = json_object_new_object(), *id;

    json_object_object_add(r, key, value);
    if (json_object_is_type(req, json_type_object) && json_object_object_get_ex(req, "id", &id)) {
        json_object_object_add(r, "id", json_object_get(id));
    }
    send_json(m, r);
    json_object_put(r);
}

static void qmp_reply_error(struct monitor *m, struct json_object *req, const char *cls,
                            const char *desc)
{
    struct json_object *err = json_object_new_object();

    json_object_object_add(err, "class", json_object_new_string(cls));
    json_object_object_add(err, "desc", json_object_new_string(desc ? desc : "failed"));
    qmp_answer(m, req, "error", err);
}

static void qmp_reply(struct monitor *m, struct json_object *req, struct json_object *ret)
{
    qmp_answer(m, req, "return", ret);
}

static void __attribute__((format(printf, 4, 5)))
qmp_reply_errorf(struct monitor *m, struct json_object *req, const char *cls, const char *fmt, ...)
{
    char *desc = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&desc, fmt, ap) < 0) {
        desc = NULL;
    }
    va_end(ap);
    qmp_reply_error(m, req, cls, desc);
    free(desc);
}

/* QEMU's error for capabilities not offered: "Capability oob, oob not available". */
static void qmp_refuse_capabilities(struct monitor *m, struct json_object *req,
                                    struct json_object *asked)
{
    char *names = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&names, &len);

    for (size_t i = 0; f && i < json_object_array_length(asked); i++) {
        fprintf(f, "%s%s", i ? ", " : "",
                json_object_get_string(json_object_array_get_idx(asked, i)));
    }
    if (f && !fclose(f)) {
        qmp_reply_errorf(m, req, "GenericError", "Capability %s not available", names);
    } else {
        qmp_reply_error(m, req, "GenericError", "out of memory");
    }
    free(names);
}

/*
 * qmp_capabilities: its arguments are checked first (the command table's
 * entry hands back the capabilities asked for), then whether negotiation
 * is over, then whether each capability is offered: none is (no "oob").
 */
static void qmp_negotiate(struct monitor *m, struct json_object *req, struct json_object *args)
{
    struct qmp_error e;
    struct json_object *asked = qmp_run(m->vm, "qmp_capabilities", args, &e);

    if (!asked) {
        qmp_reply_error(m, req, e.cls, e.desc);
        free(e.desc);
        return;
    }
    if (m->negotiated) {
        qmp_reply_error(m, req, "CommandNotFound",
                        "Capabilities negotiation is already complete, command ignored");
    } else if (json_object_array_length(asked)) {
        qmp_refuse_capabilities(m, req, asked);
    } else {
        m->negotiated = true;
        qmp_reply(m, req, json_object_new_object());
    }
    json_object_put(asked);
}

/*
 * Checks one member of a request as QEMU's qmp_dispatch_check_obj() does;
 * false after an error reply.
 */
static bool qmp_request_member(struct monitor *m, struct json_object *req, const char *key,
                               struct json_object *val, const char **exec,
                               struct json_object **args)
{
    if (!strcmp(key, "execute")) {
        if (!json_object_is_type(val, json_type_string)) {
            qmp_reply_error(m, req, "GenericError", "QMP input member 'execute' must be a string");
            return false;
        }
        *exec = json_object_get_string(val);
    } else if (!strcmp(key, "arguments")) {
        if (!json_object_is_type(val, json_type_object)) {
            qmp_reply_error(m, req, "GenericError",
                            "QMP input member 'arguments' must be an object");
            return false;
        }
        *args = val;
    } else if (strcmp(key, "id")) {
        /* "exec-oob" too: out-of-band execution is never enabled. */
        qmp_reply_errorf(m, req, "GenericError", "QMP input member '%s' is unexpected", key);
        return false;
    }
    return true;
}

/*
 * Checks the request's members in the order QEMU's QDict holds them (the
 * first bad one is the one reported); returns the command name, or NULL
 * after an error reply.
 */
static const char *qmp_request_command(struct monitor *m, struct json_object *req,
                                       struct json_object **args)
{
    const char *exec = NULL;
    struct qmp_member *members;
    bool ok = true;
    size_t n;

    *args = NULL;
    if (!json_object_is_type(req, json_type_object)) {
        qmp_reply_error(m, NULL, "GenericError", "QMP input must be a JSON object");
        return NULL;
    }
    if (!(members = qmp_json_members(req, &n))) {
        qmp_reply_error(m, req, "GenericError", "out of memory");
        return NULL;
    }
    for (size_t i = 0; ok && i < n; i++) {
        ok = qmp_request_member(m, req, members[i].key, members[i].value, &exec, args);
    }
    free(members);
    if (ok && !exec) {
        qmp_reply_error(m, req, "GenericError", "QMP input lacks member 'execute'");
    }
    return ok ? exec : NULL;
}

static void qmp_handle(struct monitor *m, struct json_object *req)
{
    struct json_object *args, *ret;
    struct session_wait *w;
    struct qmp_error e;
    const char *cmd;

    if (!(cmd = qmp_request_command(m, req, &args))) {
        return;
    }
    if (!strcmp(cmd, "qmp_capabilities")) {
        qmp_negotiate(m, req, args);
        return;
    }
    /* As QEMU: before negotiation, every command (known or not) is "not found" this way. */
    if (!m->negotiated) {
        qmp_reply_error(m, req, "CommandNotFound",
                        "Expecting capabilities negotiation with 'qmp_capabilities'");
        return;
    }
    w = new_wait(m);
    ret = qmp_run_later(m->vm, cmd, args, &e, w ? &w->qmp : NULL);
    if (!ret && !e.cls) {
        w->req = json_object_get(req);      /* qmp_waited() answers */
        m->wait = w;
        return;
    }
    free(w);
    if (ret) {
        qmp_reply(m, req, ret);
    } else {
        qmp_reply_error(m, req, e.cls, e.desc);
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
            if (m->wait) {
                hold(m, data + used, len - used);
                return;
            }
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
    struct session_wait *w = new_wait(m);
    bool waits;
    char *out = hmp_run_later(m->vm, line, w ? &w->hmp : NULL, &waits);

    if (waits) {
        m->wait = w;    /* hmp_waited() answers */
        return;
    }
    free(w);
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
            if (m->wait) {
                hold(m, data + i + 1, len - i - 1);
                return;
            }
        } else if (m->line_len + 1 < 4096) {
            m->line[m->line_len++] = c;
        } else {
            m->line_too_long = true;
        }
    }
}

/* --- commands that wait --------------------------------------------------------- */

static void qmp_waited(struct qmp_later *l, struct json_object *ret, struct qmp_error *e)
{
    struct session_wait *w = (struct session_wait *)((char *)l - offsetof(struct session_wait, qmp));
    struct monitor *m = w->m;

    if (!m) {
        json_object_put(ret);
    } else if (ret) {
        qmp_reply(m, w->req, ret);
    } else {
        qmp_reply_error(m, w->req, e->cls, e->desc);
    }
    free(e->desc);
    json_object_put(w->req);
    free(w);
    if (m) {
        resume(m);
    }
}

static void hmp_waited(struct hmp_later *l, char *text)
{
    struct session_wait *w = (struct session_wait *)((char *)l - offsetof(struct session_wait, hmp));
    struct monitor *m = w->m;

    free(w);
    if (m) {
        if (text) {
            send_text(m, text);
        }
        send_text(m, "(qemu) ");
    }
    free(text);
    if (m) {
        resume(m);
    }
}

static struct session_wait *new_wait(struct monitor *m)
{
    struct session_wait *w = calloc(1, sizeof(*w));

    if (w) {
        *w = (struct session_wait){ .qmp = { qmp_waited }, .hmp = { hmp_waited }, .m = m };
    }
    return w;
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

    if (m->wait || m->resume.pending) {
        hold(m, data, len);
    } else if (m->qmp) {
        qmp_received(m, data, len);
    } else {
        hmp_received(m, data, len);
    }
}

static void on_disconnected(void *opaque)
{
    struct monitor *m = opaque;

    m->negotiated = false;
    forget_wait(m);
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
    m->loop = loop;
    loop_bh_init(&m->resume, on_resume, m);
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
    forget_wait(m);
    chardev_close(m->chr, 200);
    if (m->tok) {
        json_tokener_free(m->tok);
    }
    free(m->line);
    free(m);
}
