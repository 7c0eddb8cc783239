// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The monitors as a QMP or HMP client meets them, byte for byte: each
 * expected text is what QEMU 11 answers in the same case (checked against
 * Debian's qemu-system-x86_64 11.1, tests/guest/monitor-crosscheck.sh),
 * but where docs/monitor.md says mpqemu-remote differs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "disk-io.h"
#include "harness.h"
#include "util.h"

enum { DISK_BYTES = 64 << 20, CD_BYTES = 2 << 20 };

struct fixture {
    struct remote remote;
    struct mpq_ram ram;
    struct mpq_dev *dev;
    char dir[64], qmp_path[96], hmp_path[96];
    /* The sessions a test opened; teardown closes them, a failed test's too. */
    int sessions[16];
    size_t n_sessions;
};

/* --- sessions ------------------------------------------------------------------ */

static int connect_to(struct fixture *f, const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(f->n_sessions < sizeof(f->sessions) / sizeof(f->sessions[0]));
    f->sessions[f->n_sessions++] = fd;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    for (int i = 0; connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0; i++) {
        if (i == 500) {
            fail_msg("connect %s: %s", path, strerror(errno));
        }
        usleep(10000);
    }
    return fd;
}

static void session_close(struct fixture *f, int fd)
{
    for (size_t i = 0; i < f->n_sessions; i++) {
        if (f->sessions[i] == fd) {
            f->sessions[i] = f->sessions[--f->n_sessions];
            close(fd);
            return;
        }
    }
    fail_msg("fd %d is no session", fd);
}

/* Reads until the text read ends with 'end' (10 s at most); the text, malloc'd. */
static char *read_until(int fd, const char *end)
{
    size_t len = 0, cap = 4096, n_end = strlen(end);
    char *buf = malloc(cap);

    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        if (len >= n_end && !memcmp(buf + len - n_end, end, n_end)) {
            buf[len] = 0;
            return buf;
        }
        if (cap - len < 2) {
            buf = realloc(buf, cap *= 2);
        }
        if (poll(&p, 1, 10000) != 1 || read(fd, buf + len, 1) != 1) {
            fail_msg("no '%s' after %zu bytes: %.*s", end, len, (int)len, buf);
        }
        len++;
    }
}

/* One line from QMP, CR LF included. */
static char *qmp_line(int fd)
{
    return read_until(fd, "\r\n");
}

#define STR_(x) #x
#define STR(x) STR_(x)
/* query-version's answer: the project's version (meson.build), micro first in QDict order. */
#define VERSION_JSON                                                                          \
    "{\"qemu\": {\"micro\": " STR(MPQEMU_VERSION_MICRO) ", \"minor\": " STR(MPQEMU_VERSION_MINOR) \
    ", \"major\": " STR(MPQEMU_VERSION_MAJOR) "}, \"package\": \"mpqemu-remote " MPQEMU_VERSION "\"}"

/* A QMP session, negotiated; the greeting checked. */
static int qmp_open(struct fixture *f)
{
    int fd = connect_to(f, f->qmp_path);
    char *line = qmp_line(fd);

    assert_string_equal(line, "{\"QMP\": {\"version\": " VERSION_JSON ", \"capabilities\": []}}\r\n");
    free(line);
    return fd;
}

/*
 * One write: the monitor acts on a JSON object as soon as it is whole, so
 * a "quit" may close the socket before a separate newline arrives.
 */
static void send_line(int fd, const char *line)
{
    size_t len = strlen(line);
    char *text = malloc(len + 2);

    assert_non_null(text);
    memcpy(text, line, len);
    memcpy(text + len, "\n", 2);
    assert_int_equal(write(fd, text, len + 1), (ssize_t)len + 1);
    free(text);
}

/* Fails unless got (freed) is want. */
static void expect_text(const char *what, char *got, const char *want)
{
    if (strcmp(got, want)) {
        fail_msg("%s\n  got:  [%s]\n  want: [%s]", what, got, want);
    }
    free(got);
}

/* Sends one request line; its reply line (events skipped), CR LF cut off. */
static char *qmp(int fd, const char *request)
{
    char *line;

    send_line(fd, request);
    while (!strncmp(line = qmp_line(fd), "{\"timestamp\"", 12)) {
        free(line);
    }
    line[strlen(line) - 2] = 0;
    return line;
}

static void expect_qmp(int fd, const char *request, const char *reply)
{
    expect_text(request, qmp(fd, request), reply);
}

static int qmp_negotiated(struct fixture *f)
{
    int fd = qmp_open(f);

    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\"}", "{\"return\": {}}");
    return fd;
}

/* An HMP session: the banner and the first prompt checked. */
static int hmp_open(struct fixture *f)
{
    int fd = connect_to(f, f->hmp_path);
    char *banner = read_until(fd, "(qemu) ");

    assert_string_equal(banner, "mpqemu-remote " MPQEMU_VERSION
                                " monitor - type 'help' for more information\r\n(qemu) ");
    free(banner);
    return fd;
}

/* Sends one command line; what is printed before the next prompt. */
static char *hmp(int fd, const char *line)
{
    char *out;

    send_line(fd, line);
    out = read_until(fd, "(qemu) ");
    out[strlen(out) - strlen("(qemu) ")] = 0;
    return out;
}

static void expect_hmp(int fd, const char *line, const char *want)
{
    expect_text(line, hmp(fd, line), want);
}

/* A QEMU-style "Try help" error of an HMP command. */
#define HMP_TRY(cmd) "Try \"help " cmd "\" for more information\r\n"

/* An error reply's text, as QEMU prints it. */
#define QMP_ERROR(cls, desc) "{\"error\": {\"class\": \"" cls "\", \"desc\": \"" desc "\"}}"

/* --- the remote ------------------------------------------------------------------ */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char qmp_spec[128], hmp_spec[128], drive[160], cd[160], sandbox[128];
    const char *args[] = {
        "{fd}", "-device", "lsi53c895a,id=lsi0", "-drive", drive, "-drive", cd,
        "-device", "scsi-hd,id=sd0,drive=d0,bus=lsi0.0,scsi-id=0",
        "-device", "scsi-cd,id=cd0,drive=cd,bus=lsi0.0,scsi-id=2",
        "-qmp", qmp_spec, "-monitor", hmp_spec, "-name", "guest=vm1", "-sandbox", sandbox, NULL,
    };

    strcpy(f->dir, "/var/tmp/mpqemu-mon-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(sh("cd '%s' && mkdir media && qemu-img create -q -f qcow2 disk.qcow2 %d && "
                        "head -c %d /dev/zero >cd1.iso && head -c %d /dev/zero >media/cd2.iso",
                        f->dir, DISK_BYTES, CD_BYTES, 2 * CD_BYTES), 0);
    snprintf(f->qmp_path, sizeof(f->qmp_path), "%s/qmp.sock", f->dir);
    snprintf(f->hmp_path, sizeof(f->hmp_path), "%s/hmp.sock", f->dir);
    snprintf(qmp_spec, sizeof(qmp_spec), "unix:%s,server,nowait", f->qmp_path);
    snprintf(hmp_spec, sizeof(hmp_spec), "unix:%s,server,nowait", f->hmp_path);
    snprintf(drive, sizeof(drive), "id=d0,file=%s/disk.qcow2", f->dir);
    snprintf(cd, sizeof(cd), "id=cd,file=%s/cd1.iso,format=raw,readonly=on", f->dir);
    snprintf(sandbox, sizeof(sandbox), "on,allow-dir=%s/media", f->dir);
    assert_int_equal(mpq_ram_create(&f->ram, 0, DISK_IO_RAM_SIZE, NULL), 0);
    remote_start(&f->remote, 1, args);
    f->dev = remote_connect(&f->remote, 0, &f->ram);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int fd;

    while (f->n_sessions) {
        session_close(f, f->sessions[0]);
    }
    fd = qmp_negotiated(f);

    expect_qmp(fd, "{\"execute\":\"quit\"}", "{\"return\": {}}");
    session_close(f, fd);
    mpq_close(f->dev);
    assert_int_equal(remote_expect_exit(&f->remote), 0);
    mpq_ram_destroy(&f->ram);
    sh("rm -rf '%s'", f->dir);
    free(f);
    return 0;
}

/* --- QMP: the text ------------------------------------------------------------------ */

/*
 * ": " and ", " as QEMU's JSON writer puts them; members in the order of
 * QEMU's QDict (a hash table walked bucket by bucket): "id" after
 * "return" but before "error".
 */
static void test_qmp_text_is_qemus(void **state)
{
    int fd = qmp_open(*state);

    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"id\":1}", "{\"return\": {}, \"id\": 1}");
    expect_qmp(fd, "{\"id\":\"x\",\"execute\":\"query-name\"}",
               "{\"return\": {\"name\": \"vm1\"}, \"id\": \"x\"}");
    expect_qmp(fd, "{\"id\":2,\"execute\":\"nosuch\"}",
               "{\"id\": 2, \"error\": {\"class\": \"CommandNotFound\", "
               "\"desc\": \"The command nosuch has not been found\"}}");
}

/*
 * The id comes back whatever its JSON type, printed as QEMU prints it:
 * objects in QDict order ("status" and "singlestep" share a bucket, the
 * newer first), doubles with 17 digits, integers past INT64_MAX whole,
 * every non-ASCII or control character as \uXXXX (surrogate pairs past
 * U+FFFF), '/' unescaped.
 */
static void test_ids_of_every_type_come_back(void **state)
{
    int fd = qmp_negotiated(*state);

    expect_qmp(fd, "{\"execute\":\"query-name\",\"id\":null}",
               "{\"return\": {\"name\": \"vm1\"}, \"id\": null}");
    expect_qmp(fd, "{\"execute\":\"query-name\",\"id\":{\"a\":[1,2.5,true,false,null],"
                   "\"status\":1,\"singlestep\":2,\"q\":0.1,\"u\":18446744073709551615,"
                   "\"n\":-7,\"e\":{},\"l\":[]}}",
               "{\"return\": {\"name\": \"vm1\"}, \"id\": {\"n\": -7, \"e\": {}, "
               "\"singlestep\": 2, \"status\": 1, \"a\": [1, 2.5, true, false, null], "
               "\"u\": 18446744073709551615, \"l\": [], \"q\": 0.10000000000000001}}");
    expect_qmp(fd, "{\"execute\":\"query-name\",\"id\":\"\\u00e9\\u0001\\ud83d\\ude00\\u0000"
                   "\\\"\\\\\\/\\b\\f\\n\\r\\t\\u007f~\"}",
               "{\"return\": {\"name\": \"vm1\"}, \"id\": \"\\u00E9\\u0001\\uD83D\\uDE00"
               "\\u0000\\\"\\\\/\\b\\f\\n\\r\\t\\u007F~\"}");
    /* QEMU's modified UTF-8: C0 80 is U+0000. */
    expect_qmp(fd, "{\"execute\":\"query-name\",\"id\":\"\xc0\x80\"}",
               "{\"return\": {\"name\": \"vm1\"}, \"id\": \"\\u0000\"}");
}

/* QEMU's qmp_dispatch_check_obj(): the members in QDict order, the first bad one reported. */
static void test_request_members_checked_in_qemus_order(void **state)
{
    int fd = qmp_negotiated(*state);

    expect_qmp(fd, "[1]", QMP_ERROR("GenericError", "QMP input must be a JSON object"));
    expect_qmp(fd, "{\"id\":5}",
               "{\"id\": 5, \"error\": {\"class\": \"GenericError\", "
               "\"desc\": \"QMP input lacks member 'execute'\"}}");
    /* "execute" comes before "foo" in QEMU's order, "x" before "arguments". */
    expect_qmp(fd, "{\"foo\":1,\"execute\":7}",
               QMP_ERROR("GenericError", "QMP input member 'execute' must be a string"));
    expect_qmp(fd, "{\"arguments\":[],\"x\":1,\"execute\":\"query-status\"}",
               QMP_ERROR("GenericError", "QMP input member 'x' is unexpected"));
    expect_qmp(fd, "{\"execute\":\"query-status\",\"arguments\":[]}",
               QMP_ERROR("GenericError", "QMP input member 'arguments' must be an object"));
    /* No out-of-band execution: "exec-oob" is a member like any other. */
    expect_qmp(fd, "{\"exec-oob\":\"query-status\"}",
               QMP_ERROR("GenericError", "QMP input member 'exec-oob' is unexpected"));
}

/*
 * qmp_capabilities: the only command before negotiation (any other, known
 * or not, is "not found" with QEMU's hint); its arguments checked before
 * anything else, even once negotiated; "oob" is a capability QEMU knows
 * but this monitor does not offer.
 */
static void test_capabilities_negotiation_as_qemu(void **state)
{
    int fd = qmp_open(*state);

    expect_qmp(fd, "{\"execute\":\"query-status\"}",
               QMP_ERROR("CommandNotFound",
                         "Expecting capabilities negotiation with 'qmp_capabilities'"));
    expect_qmp(fd, "{\"execute\":\"nosuch\"}",
               QMP_ERROR("CommandNotFound",
                         "Expecting capabilities negotiation with 'qmp_capabilities'"));
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":\"oob\"}}",
               QMP_ERROR("GenericError", "Invalid parameter type for 'enable', expected: array"));
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[1]}}",
               QMP_ERROR("GenericError",
                         "Invalid parameter type for 'enable[0]', expected: string"));
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"xx\"]}}",
               QMP_ERROR("GenericError", "Parameter 'null' does not accept value 'xx'"));
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"foo\":1}}",
               QMP_ERROR("GenericError", "Parameter 'foo' is unexpected"));
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\",\"oob\"]}}",
               QMP_ERROR("GenericError", "Capability oob, oob not available"));
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[]}}",
               "{\"return\": {}}");
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"x\"]}}",
               QMP_ERROR("GenericError", "Parameter 'null' does not accept value 'x'"));
    expect_qmp(fd, "{\"execute\":\"qmp_capabilities\"}",
               QMP_ERROR("CommandNotFound",
                         "Capabilities negotiation is already complete, command ignored"));
}

/*
 * QEMU's QAPI visitor: the declared arguments in the schema's order
 * (missing, or of the wrong type, or an enum's unknown value), the
 * unknown ones after them; all before the command looks for anything.
 */
static void test_arguments_checked_in_schema_order(void **state)
{
    static const struct { const char *request, *reply; } cases[] = {
        { "{\"execute\":\"eject\",\"arguments\":{\"foo\":1,\"force\":\"yes\",\"device\":5}}",
          QMP_ERROR("GenericError", "Invalid parameter type for 'device', expected: string") },
        { "{\"execute\":\"eject\",\"arguments\":{\"foo\":1,\"id\":\"x\"}}",
          QMP_ERROR("GenericError", "Parameter 'foo' is unexpected") },
        { "{\"execute\":\"blockdev-change-medium\",\"arguments\":{\"device\":\"x\"}}",
          QMP_ERROR("GenericError", "Parameter 'filename' is missing") },
        { "{\"execute\":\"blockdev-change-medium\",\"arguments\":"
          "{\"read-only-mode\":\"x\",\"filename\":\"f\",\"device\":\"nosuch\"}}",
          QMP_ERROR("GenericError", "Parameter 'read-only-mode' does not accept value 'x'") },
        { "{\"execute\":\"block_resize\",\"arguments\":{\"device\":\"x\"}}",
          QMP_ERROR("GenericError", "Parameter 'size' is missing") },
        { "{\"execute\":\"block_resize\",\"arguments\":{\"size\":1.5,\"device\":\"x\"}}",
          QMP_ERROR("GenericError", "Invalid parameter type for 'size', expected: integer") },
        { "{\"execute\":\"block_resize\",\"arguments\":"
          "{\"size\":9223372036854775808,\"device\":\"x\"}}",
          QMP_ERROR("GenericError", "Invalid parameter type for 'size', expected: integer") },
        { "{\"execute\":\"eject\",\"arguments\":{\"device\":null}}",
          QMP_ERROR("GenericError", "Invalid parameter type for 'device', expected: string") },
        { "{\"execute\":\"query-blockstats\",\"arguments\":{\"query-nodes\":1}}",
          QMP_ERROR("GenericError", "Invalid parameter type for 'query-nodes', expected: boolean") },
        { "{\"execute\":\"query-status\",\"arguments\":{\"zz\":1,\"a\":2}}",
          QMP_ERROR("GenericError", "Parameter 'a' is unexpected") },
    };
    int fd = qmp_negotiated(*state);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_qmp(fd, cases[i].request, cases[i].reply);
    }
}

/* --- QMP: what the commands answer ----------------------------------------------- */

/* A text with the fixture's directory for each "%1$s", malloc'd. */
static char *with_dir(struct fixture *f, const char *fmt)
{
    size_t n = 1;
    char *s, *o;

    for (const char *p = fmt; (p = strstr(p, "%1$s")); p += 4) {
        n++;
    }
    o = s = malloc(strlen(fmt) + n * strlen(f->dir) + 1);
    for (const char *p = fmt, *q; *p; p = q + 4) {
        if (!(q = strstr(p, "%1$s"))) {
            strcpy(o, p);
            return s;
        }
        memcpy(o, p, (size_t)(q - p));
        o = stpcpy(o + (q - p), f->dir);
    }
    *o = 0;
    return s;
}

static void expect_qmp_dir(struct fixture *f, int fd, const char *request, const char *fmt)
{
    char *want = with_dir(f, fmt);

    expect_qmp(fd, request, want);
    free(want);
}

/*
 * The queries' members as QEMU 11's schema has them, each it requires
 * there: query-status without "singlestep" (gone since QEMU 9.1);
 * BlockInfo's "qdev" the device's id; BlockDeviceInfo's children (none
 * here), "active", throttling limits, write threshold; ImageInfo without
 * the optional members QEMU adds (limits, actual-size, format-specific).
 */
static void test_queries_answer_qemus_shapes(void **state)
{
    struct fixture *f = *state;
    int fd = qmp_negotiated(f);

    expect_qmp(fd, "{\"execute\":\"query-status\"}",
               "{\"return\": {\"status\": \"running\", \"running\": true}}");
    expect_qmp(fd, "{\"execute\":\"query-version\"}",
               "{\"return\": " VERSION_JSON "}");
    expect_qmp_dir(f, fd, "{\"execute\":\"query-block\"}",
        "{\"return\": [{\"io-status\": \"ok\", \"device\": \"d0\", \"locked\": false, "
        "\"removable\": false, \"inserted\": {\"iops_rd\": 0, \"detect_zeroes\": \"off\", "
        "\"active\": true, \"image\": {\"virtual-size\": 67108864, "
        "\"filename\": \"%1$s/disk.qcow2\", \"format\": \"qcow2\"}, \"iops_wr\": 0, \"ro\": false, "
        "\"children\": [], \"node-name\": \"d0\", \"backing_file_depth\": 0, \"drv\": \"qcow2\", "
        "\"iops\": 0, \"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, \"bps\": 0, "
        "\"bps_rd\": 0, \"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, "
        "\"file\": \"%1$s/disk.qcow2\"}, \"qdev\": \"sd0\", \"type\": \"unknown\"}, "
        "{\"io-status\": \"ok\", \"device\": \"cd\", \"locked\": false, \"removable\": true, "
        "\"inserted\": {\"iops_rd\": 0, \"detect_zeroes\": \"off\", \"active\": true, "
        "\"image\": {\"virtual-size\": 2097152, \"filename\": \"%1$s/cd1.iso\", "
        "\"format\": \"raw\"}, \"iops_wr\": 0, \"ro\": true, \"children\": [], "
        "\"node-name\": \"cd\", \"backing_file_depth\": 0, \"drv\": \"raw\", \"iops\": 0, "
        "\"bps_wr\": 0, \"write_threshold\": 0, \"encrypted\": false, \"bps\": 0, \"bps_rd\": 0, "
        "\"cache\": {\"no-flush\": false, \"direct\": false, \"writeback\": true}, "
        "\"file\": \"%1$s/cd1.iso\"}, \"qdev\": \"cd0\", \"tray_open\": false, "
        "\"type\": \"unknown\"}]}");
}

/* query-pci: PciDeviceInfo with "irq_pin" (required) and the interrupt line as "irq". */
static void test_query_pci_as_qemu(void **state)
{
    int fd = qmp_negotiated(*state);
    char *r = qmp(fd, "{\"execute\":\"query-pci\"}");

    if (strncmp(r, "{\"return\": [{\"bus\": 0, \"devices\": [{\"irq_pin\": 1, \"bus\": 0, "
                   "\"qdev_id\": \"lsi0\", \"irq\": ", 80) ||
        !strstr(r, ", \"slot\": 0, \"class_info\": {\"class\": 256, \"desc\": \"SCSI controller\"}, "
                   "\"id\": {\"device\": 18, \"subsystem-vendor\": 0, \"vendor\": 4096, "
                   "\"subsystem\": 4096}, \"function\": 0, \"regions\": [{\"bar\": 0, "
                   "\"size\": 256, \"address\": ") ||
        !strstr(r, "{\"prefetch\": false, \"mem_type_64\": false, \"bar\": 2, \"size\": 8192, "
                   "\"address\": ")) {
        fail_msg("query-pci: %s", r);
    }
    free(r);
}

static struct json_object *stats_of(int fd, const char *device)
{
    char *r = qmp(fd, "{\"execute\":\"query-blockstats\"}");
    struct json_object *reply = json_tokener_parse(r), *list, *found = NULL, *dev, *stats;

    assert_true(json_object_object_get_ex(reply, "return", &list));
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *b = json_object_array_get_idx(list, i);

        if (json_object_object_get_ex(b, "device", &dev) &&
            !strcmp(json_object_get_string(dev), device) &&
            json_object_object_get_ex(b, "stats", &stats)) {
            found = json_object_get(stats);
        }
    }
    json_object_put(reply);
    free(r);
    assert_non_null(found);
    return found;
}

static int64_t stat_of(struct json_object *stats, const char *name)
{
    struct json_object *v;

    if (!json_object_object_get_ex(stats, name, &v)) {
        fail_msg("no %s in query-blockstats", name);
    }
    return json_object_get_int64(v);
}

/*
 * query-blockstats counts as QEMU's block accounting: operations and bytes
 * of the requests that worked, the ones the device refused (out of range)
 * as invalid, the time they took, the end of the furthest write, the time
 * since the last; and every member QEMU 11's schema requires.
 */
static void test_blockstats_count_as_qemu(void **state)
{
    struct fixture *f = *state;
    struct disk_io disk = { .ram = &f->ram, .blocks = DISK_BYTES / 512 };
    static const char *const zero[] = {
        "unmap_bytes", "unmap_operations", "zone_append_bytes", "zone_append_operations",
        "zone_append_total_time_ns", "rd_merged", "wr_merged", "zone_append_merged",
        "unmap_merged", "failed_rd_operations", "failed_wr_operations",
        "failed_zone_append_operations", "failed_flush_operations", "failed_unmap_operations",
        "invalid_wr_operations", "invalid_zone_append_operations", "invalid_flush_operations",
        "invalid_unmap_operations", "unmap_total_time_ns",
    };
    struct mpq_scsi_result r;
    struct mpq_scsi_cmd c;
    struct json_object *st;
    char *err = NULL;
    int fd = qmp_negotiated(f);

    st = stats_of(fd, "d0");
    assert_false(json_object_object_get_ex(st, "idle_time_ns", NULL));     /* no I/O yet */
    json_object_put(st);
    disk.lsi = mpq_lsi_new(f->dev, &f->ram, DISK_IO_WORK, &err);
    assert_non_null(disk.lsi);
    disk_clear_unit_attention(&disk);
    scsi_rw10(&c, 0x2a, 16, 8, DISK_IO_DATA);
    disk_command(&disk, c.cdb, c.cdb_len, DISK_IO_DATA, c.len, &r);
    assert_int_equal(r.status, 0);
    scsi_rw10(&c, 0x28, 0, 4, DISK_IO_DATA);
    disk_command(&disk, c.cdb, c.cdb_len, DISK_IO_DATA, c.len, &r);
    assert_int_equal(r.status, 0);
    disk_sync_cache(&disk);
    scsi_rw10(&c, 0x28, DISK_BYTES / 512, 1, DISK_IO_DATA);       /* past the end */
    disk_command(&disk, c.cdb, c.cdb_len, DISK_IO_DATA, c.len, &r);
    assert_int_equal(r.status, 2);
    mpq_lsi_free(disk.lsi);

    st = stats_of(fd, "d0");
    assert_int_equal(stat_of(st, "wr_bytes"), 4096);
    assert_int_equal(stat_of(st, "wr_operations"), 1);
    assert_int_equal(stat_of(st, "wr_highest_offset"), 24 * 512);
    assert_int_equal(stat_of(st, "rd_bytes"), 2048);
    assert_int_equal(stat_of(st, "rd_operations"), 1);
    assert_int_equal(stat_of(st, "invalid_rd_operations"), 1);
    assert_true(stat_of(st, "flush_operations") >= 1);
    assert_true(stat_of(st, "rd_total_time_ns") > 0 && stat_of(st, "wr_total_time_ns") > 0);
    assert_true(stat_of(st, "flush_total_time_ns") > 0);
    assert_true(stat_of(st, "idle_time_ns") >= 0);
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
        assert_int_equal(stat_of(st, zero[i]), 0);
    }
    assert_true(json_object_get_boolean(json_object_object_get(st, "account_invalid")));
    assert_true(json_object_get_boolean(json_object_object_get(st, "account_failed")));
    assert_int_equal(json_object_array_length(json_object_object_get(st, "timed_stats")), 0);
    json_object_put(st);
}

/*
 * The block commands' errors as QEMU 11's (block/qapi-system.c,
 * bdrv_lookup_bs(), bdrv_open()), class and text.
 */
static void test_block_command_errors_as_qemu(void **state)
{
    struct fixture *f = *state;
    int fd = qmp_negotiated(f);
    char request[256];

    expect_qmp(fd, "{\"execute\":\"eject\",\"arguments\":{\"device\":\"x\"}}",
               QMP_ERROR("DeviceNotFound", "Device 'x' not found"));
    expect_qmp(fd, "{\"execute\":\"eject\",\"arguments\":{}}",
               QMP_ERROR("GenericError", "Need exactly one of 'device' and 'id'"));
    expect_qmp(fd, "{\"execute\":\"eject\",\"arguments\":{\"id\":\"lsi0\"}}",
               QMP_ERROR("GenericError", "Device does not have a block device backend"));
    expect_qmp(fd, "{\"execute\":\"eject\",\"arguments\":{\"id\":\"sd0\"}}",
               QMP_ERROR("GenericError", "Device 'sd0' is not removable"));
    expect_qmp(fd, "{\"execute\":\"blockdev-change-medium\",\"arguments\":"
                   "{\"id\":\"cd0\",\"filename\":\"/nonexistent.iso\"}}",
               QMP_ERROR("GenericError",
                         "Could not open '/nonexistent.iso': No such file or directory"));
    expect_qmp(fd, "{\"execute\":\"blockdev-change-medium\",\"arguments\":"
                   "{\"id\":\"cd0\",\"filename\":\"/nonexistent.iso\",\"format\":\"nosuch\"}}",
               QMP_ERROR("GenericError", "Unknown driver 'nosuch'"));
    snprintf(request, sizeof(request), "{\"execute\":\"blockdev-change-medium\",\"arguments\":"
             "{\"id\":\"sd0\",\"filename\":\"%s/media/cd2.iso\",\"format\":\"raw\","
             "\"read-only-mode\":\"read-only\"}}", f->dir);
    expect_qmp(fd, request, QMP_ERROR("GenericError", "Device 'sd0' is not removable"));
    expect_qmp(fd, "{\"execute\":\"block_resize\",\"arguments\":{\"size\":-1,\"device\":\"x\"}}",
               QMP_ERROR("GenericError", "Cannot find device='x' nor node-name=''"));
    expect_qmp(fd, "{\"execute\":\"block_resize\",\"arguments\":{\"size\":512}}",
               QMP_ERROR("GenericError", "Cannot find device='' nor node-name=''"));
    expect_qmp(fd, "{\"execute\":\"block_resize\",\"arguments\":{\"size\":-1,\"device\":\"d0\"}}",
               QMP_ERROR("GenericError", "Parameter 'size' expects a >0 size"));
    expect_qmp(fd, "{\"execute\":\"block_resize\",\"arguments\":"
                   "{\"size\":134217728,\"device\":\"nosuch\",\"node-name\":\"d0\"}}",
               "{\"return\": {}}");
    expect_qmp(fd, "{\"execute\":\"human-monitor-command\",\"arguments\":"
                   "{\"command-line\":\"info name\",\"cpu-index\":5}}",
               QMP_ERROR("GenericError", "Parameter 'cpu-index' expects a CPU number"));
}

/* --- HMP ---------------------------------------------------------------------------- */

/* QEMU's formats: lines end CR LF; info block and status; the version as QEMU joins it. */
static void test_hmp_info_as_qemu(void **state)
{
    struct fixture *f = *state;
    int fd = hmp_open(f);
    char *want;

    expect_hmp(fd, "info status", "VM status: running\r\n");
    expect_hmp(fd, "info name", "vm1\r\n");
    expect_hmp(fd, "info version", MPQEMU_VERSION "mpqemu-remote " MPQEMU_VERSION "\r\n");
    want = with_dir(f, "d0 (d0): %1$s/disk.qcow2 (qcow2)\r\n"
                       "    Attached to:      sd0\r\n"
                       "    Cache mode:       writeback\r\n"
                       "\r\n"
                       "cd (cd): %1$s/cd1.iso (raw, read-only)\r\n"
                       "    Attached to:      cd0\r\n"
                       "    Removable device: not locked, tray closed\r\n"
                       "    Cache mode:       writeback\r\n");
    expect_hmp(fd, "info block", want);
    /* One device: still the blank line of a device not first in the list, as QEMU. */
    expect_hmp(fd, "info block \"cd\"", strstr(want, "\r\n\r\n") + 2);
    free(want);
    expect_hmp(fd, "info block nosuch", "");
    expect_hmp(fd, "info blockstats",
               "d0: idle_time_ns=0\r\n"
               "                          bytes       operations            total_time_ns     merged\r\n"
               "Read:                         0                0                        0          0\r\n"
               "Write:                        0                0                        0          0\r\n"
               "Flush:                                         0                        0\r\n"
               "\r\n"
               "cd: idle_time_ns=0\r\n"
               "                          bytes       operations            total_time_ns     merged\r\n"
               "Read:                         0                0                        0          0\r\n"
               "Write:                        0                0                        0          0\r\n"
               "Flush:                                         0                        0\r\n");
    expect_hmp(fd, "eject -f cd", "");
    expect_hmp(fd, "info block cd", "\r\ncd: [not inserted]\r\n"
                                    "    Attached to:      cd0\r\n"
                                    "    Removable device: not locked, tray open\r\n");
}

/*
 * info block's -v (each image of the chain, as QEMU's bdrv_node_info_dump()
 * prints it; no disk size here) and -n (the nodes, the newest first: a
 * drive is one, named by its id), and a name no device has looked up among
 * the nodes, as QEMU's hmp_info_block().
 */
static void test_hmp_info_block_options_as_qemu(void **state)
{
    struct fixture *f = *state;
    int fd = hmp_open(f);
    char *want;

    want = with_dir(f, "d0 (d0): %1$s/disk.qcow2 (qcow2)\r\n"
                       "    Attached to:      sd0\r\n"
                       "    Cache mode:       writeback\r\n"
                       "\r\n"
                       "Images:\r\n"
                       "image: %1$s/disk.qcow2\r\n"
                       "file format: qcow2\r\n"
                       "virtual size: 64 MiB (67108864 bytes)\r\n"
                       "disk size: unavailable\r\n"
                       "\r\n"
                       "cd (cd): %1$s/cd1.iso (raw, read-only)\r\n"
                       "    Attached to:      cd0\r\n"
                       "    Removable device: not locked, tray closed\r\n"
                       "    Cache mode:       writeback\r\n"
                       "\r\n"
                       "Images:\r\n"
                       "image: %1$s/cd1.iso\r\n"
                       "file format: raw\r\n"
                       "virtual size: 2 MiB (2097152 bytes)\r\n"
                       "disk size: unavailable\r\n");
    expect_hmp(fd, "info block -v", want);
    free(want);
    want = with_dir(f, "cd: %1$s/cd1.iso (raw, read-only)\r\n"
                       "    Cache mode:       writeback\r\n"
                       "\r\n"
                       "d0: %1$s/disk.qcow2 (qcow2)\r\n"
                       "    Cache mode:       writeback\r\n");
    expect_hmp(fd, "info block -n", want);
    expect_hmp(fd, "info block -n d0", strstr(want, "\r\n\r\n") + 2);
    free(want);
    want = with_dir(f, "cd: %1$s/cd1.iso (raw, read-only)\r\n"
                       "    Cache mode:       writeback\r\n"
                       "\r\n"
                       "Images:\r\n"
                       "image: %1$s/cd1.iso\r\n"
                       "file format: raw\r\n"
                       "virtual size: 2 MiB (2097152 bytes)\r\n"
                       "disk size: unavailable\r\n");
    expect_hmp(fd, "info block -n -v cd", want);
    free(want);
    expect_hmp(fd, "info block -n nosuch", "");
    /* As QEMU's parser: -n before -v, else the rest is the device ("n", "-n"): none. */
    expect_hmp(fd, "info block -vn", "");
    expect_hmp(fd, "info block -v -n", "");
    expect_hmp(fd, "info block -vn cd",
               "block: extraneous characters at the end of line\r\n" HMP_TRY("info block"));
    expect_hmp(fd, "info block -n -n", "block: unsupported option -n\r\n" HMP_TRY("info block"));
    expect_hmp(fd, "info block -x", "block: unsupported option -x\r\n" HMP_TRY("info block"));
    expect_hmp(fd, "eject -f cd", "");
    want = with_dir(f, "d0: %1$s/disk.qcow2 (qcow2)\r\n"
                       "    Cache mode:       writeback\r\n");
    expect_hmp(fd, "info block -n", want);
    free(want);
}

static void test_hmp_info_pci_as_qemu(void **state)
{
    int fd = hmp_open(*state);
    char *out = hmp(fd, "info pci");

    static const char head[] = "  Bus  0, device   0, function 0:\r\n"
                               "    SCSI controller: PCI device 1000:0012\r\n"
                               "      PCI subsystem 0000:1000\r\n"
                               "      IRQ ";

    if (strncmp(out, head, strlen(head)) ||
        !strstr(out, ", pin A\r\n      BAR0: I/O ") ||
        !strstr(out, "      BAR1: 32 bit memory ") || !strstr(out, "      BAR2: 32 bit memory ") ||
        !strstr(out, "]\r\n      id \"lsi0\"\r\n")) {
        fail_msg("info pci: [%s]", out);
    }
    free(out);
}

/* help: QEMU's "name params -- text" lines, sorted; with words, what they name. */
static void test_hmp_help_as_qemu(void **state)
{
    static const char info_help[] =
        "info block [-n] [-v] [device] -- show info of one block device or all block devices "
        "(-n: show named nodes; -v: show details)\r\n"
        "info blockstats  -- show block device statistics\r\n"
        "info name  -- show the current VM name\r\n"
        "info pci  -- show PCI info\r\n"
        "info qtree [-b] -- show device tree (-b: brief, omit properties)\r\n"
        "info sandbox  -- show what confines the process\r\n"
        "info status  -- show the current VM status (running|paused)\r\n"
        "info version  -- show the version of mpqemu-remote\r\n";
    int fd = hmp_open(*state);

    expect_hmp(fd, "help",
               "block_resize device size -- resize a block image\r\n"
               "change device [-f] filename [format [read-only-mode]] -- change a removable "
               "medium, optional format, use -f to force the operation\r\n"
               "eject [-f] device -- eject a removable medium (use -f to force it)\r\n"
               "help|? [cmd] -- show the help\r\n"
               "info [subcommand] -- show various information about the system state\r\n"
               "quit|q  -- quit the emulator\r\n"
               "system_reset  -- reset the system\r\n");
    expect_hmp(fd, "help info", info_help);
    expect_hmp(fd, "info", info_help);
    expect_hmp(fd, "? q", "quit|q  -- quit the emulator\r\n");
    expect_hmp(fd, "help info status",
               "info status  -- show the current VM status (running|paused)\r\n");
    expect_hmp(fd, "help x y", "unknown command: 'x'\r\n");
    expect_hmp(fd, "help info nosuch", "unknown command: 'info nosuch'\r\n");
    expect_hmp(fd, "help \"info", "");      /* words that do not read: nothing */
}

/* QEMU's parser: its messages for what does not parse, then "Try help" with the command. */
static void test_hmp_argument_errors_as_qemu(void **state)
{
    int fd = hmp_open(*state);

    expect_hmp(fd, "eject", "eject: block device name expected\r\n" HMP_TRY("eject"));
    expect_hmp(fd, "eject -x cd", "eject: unsupported option -x\r\n" HMP_TRY("eject"));
    /* QEMU prints the NUL after "-": its message ends there, line end and all. */
    expect_hmp(fd, "eject -", "eject: unsupported option -" HMP_TRY("eject"));
    expect_hmp(fd, "eject a b", "eject: extraneous characters at the end of line\r\n"
                                HMP_TRY("eject"));
    expect_hmp(fd, "eject x", "Error: Device 'x' not found\r\n");
    expect_hmp(fd, "change cd", "change: filename expected\r\n" HMP_TRY("change"));
    expect_hmp(fd, "change \"cd", "change: block device name expected\r\n" HMP_TRY("change"));
    expect_hmp(fd, "change cd x raw foo", "Error: invalid parameter value: foo\r\n");
    expect_hmp(fd, "block_resize d0", "invalid size\r\n" HMP_TRY("block_resize"));
    expect_hmp(fd, "block_resize d0 -1", "invalid size\r\n" HMP_TRY("block_resize"));
    expect_hmp(fd, "block_resize d0 1.5B", "invalid size\r\n" HMP_TRY("block_resize"));
    expect_hmp(fd, "block_resize d0 99999999999999999999",
               "invalid size\r\n" HMP_TRY("block_resize"));
    expect_hmp(fd, "block_resize d0 1x",
               "block_resize: extraneous characters at the end of line\r\n"
               HMP_TRY("block_resize"));
    expect_hmp(fd, "block_resize d0 0x", "block_resize: extraneous characters at the end of line\r\n"
                                         HMP_TRY("block_resize"));
    expect_hmp(fd, "system_reset x", "system_reset: extraneous characters at the end of line\r\n"
                                     HMP_TRY("system_reset"));
    expect_hmp(fd, "info status x", "status: extraneous characters at the end of line\r\n"
                                    HMP_TRY("info status"));
    expect_hmp(fd, "info nosuch", "unknown command: 'info nosuch'\r\n");
    expect_hmp(fd, "  nosuch arg", "unknown command: '  nosuch'\r\n");
    expect_hmp(fd, "info/x", "unknown command: 'info'\r\n");    /* a name ends at '/' */
    expect_hmp(fd, "/x", "unknown command: ''\r\n");
    expect_hmp(fd, "", "");
}

/* Sizes as QEMU's qemu_strtosz_MiB(): MiB by default, fractions, hex, suffixes. */
static void test_hmp_sizes_as_qemu(void **state)
{
    struct fixture *f = *state;
    int fd = hmp_open(f);
    static const struct { const char *size; long long bytes; } sizes[] = {
        { "80", 80ll << 20 }, { "80.5", (80ll << 20) + (512 << 10) }, { "+81", 81ll << 20 },
        { "0x52", 82ll << 20 }, { "85000k", 85000ll << 10 }, { "0.125g", 128ll << 20 },
    };

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char line[64], want[64];
        int q;
        char *r;

        snprintf(line, sizeof(line), "block_resize d0 %s", sizes[i].size);
        expect_hmp(fd, line, "");
        q = qmp_negotiated(f);
        r = qmp(q, "{\"execute\":\"query-block\"}");
        snprintf(want, sizeof(want), "\"virtual-size\": %lld", sizes[i].bytes);
        if (!strstr(r, want)) {
            fail_msg("%s: %s", line, r);
        }
        free(r);
        session_close(f, q);
    }
}

int main(void)
{
#define CASE(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_qmp_text_is_qemus),
        CASE(test_ids_of_every_type_come_back),
        CASE(test_request_members_checked_in_qemus_order),
        CASE(test_capabilities_negotiation_as_qemu),
        CASE(test_arguments_checked_in_schema_order),
        CASE(test_queries_answer_qemus_shapes),
        CASE(test_query_pci_as_qemu),
        CASE(test_blockstats_count_as_qemu),
        CASE(test_block_command_errors_as_qemu),
        CASE(test_hmp_info_as_qemu),
        CASE(test_hmp_info_block_options_as_qemu),
        CASE(test_hmp_info_pci_as_qemu),
        CASE(test_hmp_help_as_qemu),
        CASE(test_hmp_argument_errors_as_qemu),
        CASE(test_hmp_sizes_as_qemu),
    };

    /* A monitor or device process that went away fails the test that wrote to it, saying where. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
