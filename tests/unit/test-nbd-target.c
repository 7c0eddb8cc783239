// SPDX-License-Identifier: GPL-2.0-or-later
/* NBD URIs and QEMU's nbd options into a struct nbd_target, and back into a URI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/socket.h>

#include "block/nbd-target.h"
#include "util/opts.h"

static struct nbd_target parse_ok(const char *uri)
{
    struct nbd_target t;
    char *err = NULL;

    if (nbd_target_parse_uri(uri, &t, &err) < 0) {
        fail_msg("%s: %s", uri, err);
    }
    return t;
}

static void parse_fails(const char *uri, const char *message)
{
    struct nbd_target t;
    char *err = NULL;

    assert_int_equal(nbd_target_parse_uri(uri, &t, &err), -1);
    assert_non_null(err);
    if (!strstr(err, message)) {
        fail_msg("%s: '%s' does not say '%s'", uri, err, message);
    }
    free(err);
}

/* The URI the target gives back is the one expected. */
static void round_trip(const struct nbd_target *t, const char *uri)
{
    char *back = nbd_target_uri(t);

    assert_string_equal(back, uri);
    free(back);
}

static void test_tcp(void **state)
{
    struct nbd_target t = parse_ok("nbd://example.org:10810/disk%20one");

    (void)state;
    assert_int_equal(t.transport, NBD_TRANSPORT_TCP);
    assert_false(t.tls);
    assert_string_equal(t.host, "example.org");
    assert_int_equal(t.port, 10810);
    assert_string_equal(t.export_name, "disk one");
    round_trip(&t, "nbd://example.org:10810/disk%20one");
    nbd_target_clear(&t);

    t = parse_ok("nbd://localhost");
    assert_int_equal(t.port, NBD_DEFAULT_PORT);
    assert_string_equal(t.export_name, "");
    round_trip(&t, "nbd://localhost/");
    nbd_target_clear(&t);

    t = parse_ok("nbd://[::1]:2000//slash");
    assert_string_equal(t.host, "::1");
    assert_string_equal(t.export_name, "/slash");
    round_trip(&t, "nbd://[::1]:2000//slash");
    nbd_target_clear(&t);
}

static void test_unix_and_tls(void **state)
{
    struct nbd_target t = parse_ok("nbd+unix:///exp?socket=/run/a%2Cb.sock");

    (void)state;
    assert_int_equal(t.transport, NBD_TRANSPORT_UNIX);
    assert_string_equal(t.socket, "/run/a,b.sock");
    assert_string_equal(t.export_name, "exp");
    round_trip(&t, "nbd+unix:///exp?socket=/run/a%2Cb.sock");
    nbd_target_clear(&t);

    t = parse_ok("nbds+unix://alice@/?socket=/s&tls-psk-file=/k.psk");
    assert_true(t.tls);
    assert_string_equal(t.tls_username, "alice");
    assert_string_equal(t.tls_psk_file, "/k.psk");
    round_trip(&t, "nbds+unix://alice@/?socket=/s&tls-psk-file=/k.psk");
    nbd_target_clear(&t);

    t = parse_ok("nbds://h/e?tls-certificates=/etc/pki/x");
    assert_true(t.tls);
    assert_string_equal(t.tls_certificates, "/etc/pki/x");
    nbd_target_clear(&t);
    assert_true(nbd_is_uri("nbds+unix:///?socket=x"));
    assert_false(nbd_is_uri("/var/disk.img"));
    assert_false(nbd_is_uri("nbd:localhost:10809"));
}

static void test_bad_uris(void **state)
{
    (void)state;
    parse_fails("http://h/e", "not an NBD URI");
    parse_fails("nbd:///e", "names a host");
    parse_fails("nbd://h:0/e", "port must be");
    parse_fails("nbd://h:65536/e", "port must be");
    parse_fails("nbd://h:12x/e", "port must be");
    parse_fails("nbd://[::1/e", "']'");
    parse_fails("nbd://h/e?socket=/s", "socket= is for nbd+unix");
    parse_fails("nbd+unix:///e", "needs ?socket=PATH");
    parse_fails("nbd+unix://h/e?socket=/s", "names no host");
    parse_fails("nbd://h/e?tls-psk-file=/k", "is for TLS");
    parse_fails("nbd://alice@h/e", "user name is for TLS");
    parse_fails("nbd://h/e?color=blue", "unknown query parameter 'color'");
    parse_fails("nbd://h/%zz", "bad %-escape");
    parse_fails("nbd://h/a%00b", "bad %-escape");
    parse_fails("nbd://h/e#frag", "no fragment");
}

static struct opts *parse_opts(const char *text)
{
    struct opts *o = opts_parse(text, NULL, NULL);

    assert_non_null(o);
    return o;
}

static void test_qemu_options(void **state)
{
    struct opts *o = parse_opts("file.server.type=inet,file.server.host=h,file.server.port=99,"
                                "file.export=e");
    struct nbd_target t;
    char *err = NULL;

    (void)state;
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), 0);
    round_trip(&t, "nbd://h:99/e");
    nbd_target_clear(&t);
    assert_int_equal(opts_check_all_used(o, "-drive", NULL), 0);
    opts_free(o);

    o = parse_opts("file.server.type=unix,file.server.path=/s");
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), 0);
    assert_int_equal(t.port, 0);        /* as from its URI: a port is TCP's (found by fuzz-nbd-target) */
    round_trip(&t, "nbd+unix:///?socket=/s");
    nbd_target_clear(&t);
    opts_free(o);

    /* Empty host or path: refused, as in a URI (found by fuzz-nbd-target). */
    o = parse_opts("file.server.type=inet,file.server.host=");
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), -1);
    free(err);
    err = NULL;
    opts_free(o);
    o = parse_opts("file.server.type=unix,file.server.path=");
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), -1);
    free(err);
    err = NULL;
    opts_free(o);

    /* A host that holds URI syntax prints escaped (found by fuzz-nbd-target). */
    o = parse_opts("file.server.host=se]ver/x?y@z");
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), 0);
    round_trip(&t, "nbd://se%5Dver%2Fx%3Fy%40z/");
    nbd_target_clear(&t);
    opts_free(o);

    o = parse_opts("file.host=h");      /* QEMU's older spelling */
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), 0);
    round_trip(&t, "nbd://h/");
    nbd_target_clear(&t);
    opts_free(o);

    o = parse_opts("file.server.type=unix,file.server.host=h");
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), -1);
    assert_non_null(strstr(err, "takes a path"));
    free(err);
    opts_free(o);

    o = parse_opts("file.server.type=vsock");
    err = NULL;
    assert_int_equal(nbd_target_from_opts(o, "file.", &t, &err), -1);
    assert_non_null(strstr(err, "not supported"));
    free(err);
    opts_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_unix_and_tls),
        cmocka_unit_test(test_bad_uris),
        cmocka_unit_test(test_qemu_options),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
