// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/opts.h"

static struct opts *parse_ok(const char *text, const char *implied)
{
    char *err = NULL;
    struct opts *o = opts_parse(text, implied, &err);

    if (!o) {
        fail_msg("parse of '%s' failed: %s", text, err);
    }
    return o;
}

static void expect_parse_error(const char *text, const char *needle)
{
    char *err = NULL;
    struct opts *o = opts_parse(text, "driver", &err);

    assert_null(o);
    assert_non_null(err);
    assert_non_null(strstr(err, needle));
    free(err);
}

static void test_implied_key_and_values(void **state)
{
    struct opts *o = parse_ok("lsi53c895a,id=lsi0,bus=pci.0", "driver");

    (void)state;
    assert_int_equal(opts_count(o), 3);
    assert_string_equal(opts_get(o, "driver"), "lsi53c895a");
    assert_string_equal(opts_get(o, "id"), "lsi0");
    assert_string_equal(opts_get(o, "bus"), "pci.0");
    assert_null(opts_get(o, "nothere"));
    opts_free(o);
}

static void test_double_comma_escapes(void **state)
{
    struct opts *o = parse_ok("id=d0,file=a,,b,,.img,readonly", NULL);

    (void)state;
    assert_string_equal(opts_get(o, "file"), "a,b,.img");
    assert_string_equal(opts_get(o, "readonly"), "on");
    opts_free(o);
}

static void test_unused_key_is_reported(void **state)
{
    struct opts *o = parse_ok("scsi-hd,id=x,drvie=d0", "driver");
    char *err = NULL;

    (void)state;
    opts_get(o, "driver");
    opts_get(o, "id");
    assert_int_equal(opts_check_all_used(o, "scsi-hd", &err), -1);
    assert_non_null(strstr(err, "'drvie'"));
    free(err);
    opts_get(o, "drvie");
    assert_int_equal(opts_check_all_used(o, "scsi-hd", NULL), 0);
    opts_free(o);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_parse_error("a,id=1,id=2", "given twice");
    expect_parse_error("a,=x", "empty parameter name");
    expect_parse_error("a,id=1,", "trailing comma");
    expect_parse_error("{\"id\": [1,2]}", "not supported");
    expect_parse_error("{\"id\": ", "invalid JSON");
    expect_parse_error("{\"n\": -5}", "negative");
    expect_parse_error("{\"id\": \"x\"} junk", "text after the object");
}

static void test_json_flattens_nested_objects(void **state)
{
    struct opts *o = parse_ok("{\"qom-type\": \"x-vfio-user-server\", \"id\": \"v0\","
                              " \"socket\": {\"type\": \"unix\", \"path\": \"/tmp/s\"},"
                              " \"n\": 12, \"b\": false}", "qom-type");

    (void)state;
    assert_string_equal(opts_get(o, "qom-type"), "x-vfio-user-server");
    assert_string_equal(opts_get(o, "socket.type"), "unix");
    assert_string_equal(opts_get(o, "socket.path"), "/tmp/s");
    assert_string_equal(opts_get(o, "n"), "12");
    assert_string_equal(opts_get(o, "b"), "off");
    opts_free(o);
}

static void test_numbers(void **state)
{
    uint64_t v;
    bool b;

    (void)state;
    assert_int_equal(parse_uint("0x10", &v), 0);
    assert_int_equal(v, 16);
    assert_int_equal(parse_uint("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(parse_uint("18446744073709551616", &v), -1);
    assert_int_equal(parse_uint("-1", &v), -1);
    assert_int_equal(parse_uint("12x", &v), -1);
    assert_int_equal(parse_uint("", &v), -1);
    assert_int_equal(parse_size("64K", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(parse_size("2g", &v), 0);
    assert_true(v == 2ull << 30);
    assert_int_equal(parse_size("16E", &v), -1);   /* overflows 64 bits */
    assert_int_equal(parse_size("1KB", &v), -1);
    assert_int_equal(parse_bool("on", &b), 0);
    assert_true(b);
    assert_int_equal(parse_bool("no", &b), 0);
    assert_false(b);
    assert_int_equal(parse_bool("maybe", &b), -1);
}

static void test_typed_getters(void **state)
{
    struct opts *o = parse_ok("a=5,b=off,c=1M,d=300,e=nope", NULL);
    uint64_t v;
    bool b;
    char *err = NULL;

    (void)state;
    assert_int_equal(opts_get_uint(o, "a", 0, 10, &v, &err), 0);
    assert_int_equal(v, 5);
    assert_int_equal(opts_get_bool(o, "b", true, &b, &err), 0);
    assert_false(b);
    assert_int_equal(opts_get_size(o, "c", 0, &v, &err), 0);
    assert_int_equal(v, 1 << 20);
    assert_int_equal(opts_get_uint(o, "d", 0, 255, &v, &err), -1);
    assert_non_null(strstr(err, "0 to 255"));
    free(err);
    err = NULL;
    assert_int_equal(opts_get_bool(o, "e", false, &b, &err), -1);
    free(err);
    assert_int_equal(opts_get_uint(o, "absent", 7, 10, &v, NULL), 0);
    assert_int_equal(v, 7);
    opts_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_implied_key_and_values),
        cmocka_unit_test(test_double_comma_escapes),
        cmocka_unit_test(test_unused_key_is_reported),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_json_flattens_nested_objects),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_typed_getters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
