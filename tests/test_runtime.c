/* test_runtime.c: the runtime's pure logic: learning-rate schedules and the
 * flag parser (types, ranges, unknown flags, positional arguments). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>
#include "runtime.h"

static void test_cosine(void **state) {
    (void)state;
    rt_schedule s = {RT_SCHED_COSINE, 1e-3f, 10, 110, 0.1f, 0.0f};
    assert_float_equal(rt_lr_at(&s, 0), 1e-4f, 1e-9f);
    assert_float_equal(rt_lr_at(&s, 9), 1e-3f, 1e-9f);
    assert_float_equal(rt_lr_at(&s, 10), 1e-3f, 1e-9f);
    assert_float_equal(rt_lr_at(&s, 109), 1e-4f, 1e-9f);
    /* The middle of the decay is halfway between peak and floor. */
    rt_schedule odd = {RT_SCHED_COSINE, 1e-3f, 0, 101, 0.0f, 0.0f};
    assert_float_equal(rt_lr_at(&odd, 50), 5e-4f, 1e-8f);
    for (int i = 11; i < 110; i++) assert_true(rt_lr_at(&s, i) <= rt_lr_at(&s, i - 1));
}

static void test_constant_and_wsd(void **state) {
    (void)state;
    rt_schedule c = {RT_SCHED_CONSTANT, 2e-3f, 4, 50, 0.1f, 0.0f};
    assert_float_equal(rt_lr_at(&c, 1), 1e-3f, 1e-9f);
    assert_float_equal(rt_lr_at(&c, 49), 2e-3f, 1e-9f);
    rt_schedule w = {RT_SCHED_WSD, 1e-3f, 0, 100, 0.0f, 0.2f};
    assert_float_equal(rt_lr_at(&w, 79), 1e-3f, 1e-9f);
    assert_float_equal(rt_lr_at(&w, 80), 1e-3f, 1e-9f);
    assert_true(rt_lr_at(&w, 90) < 1e-3f && rt_lr_at(&w, 90) > 0.0f);
    assert_float_equal(rt_lr_at(&w, 99), 0.0f, 1e-9f);
    rt_sched_kind k;
    rt_error_t err;
    assert_int_equal(rt_schedule_kind("wsd", &k, err), RT_OK);
    assert_int_equal(k, RT_SCHED_WSD);
    assert_int_equal(rt_schedule_kind("linear", &k, err), RT_ERR_USAGE);
    assert_non_null(strstr(err, "linear"));
}

typedef struct {
    int n;
    long big;
    float x;
    const char *s;
    int flag;
} opts;

static rt_status parse(opts *o, int argc, char **argv, rt_error_t err, int *npos,
                       const char **pos) {
    rt_flag flags[] = {
        {"n", RT_INT, &o->n, "an int"},
        {"big", RT_LONG, &o->big, "a long"},
        {"x", RT_FLOAT, &o->x, "a float"},
        {"s", RT_STR, &o->s, "a string"},
        {"flag", RT_BOOL, &o->flag, "a switch"},
    };
    return rt_parse_flags(argc, argv, flags, 5, pos, 2, npos, err);
}

static void test_flags(void **state) {
    (void)state;
    opts o = {1, 2, 3.0f, "d", 0};
    rt_error_t err;
    const char *pos[2];
    int npos;
    char *ok[] = {"--n", "7", "--big=9000000000", "in1", "--x", "0.5", "--s", "hi", "--flag", "in2"};
    assert_int_equal(parse(&o, 10, ok, err, &npos, pos), RT_OK);
    assert_int_equal(o.n, 7);
    assert_true(o.big == 9000000000L);
    assert_float_equal(o.x, 0.5f, 0.0f);
    assert_string_equal(o.s, "hi");
    assert_int_equal(o.flag, 1);
    assert_int_equal(npos, 2);
    assert_string_equal(pos[1], "in2");
    char *bad[][2] = {{"--n", "12x"}, {"--n", "9999999999"}, {"--x", "nan"}, {"--x", "1e99"},
                      {"--bogus", "1"}, {"--n", NULL}};
    const char *needle[] = {"12x", "9999999999", "nan", "1e99", "--bogus", "needs a value"};
    for (int i = 0; i < 6; i++) {
        int argc = bad[i][1] ? 2 : 1;
        assert_int_equal(parse(&o, argc, bad[i], err, &npos, pos), RT_ERR_USAGE);
        assert_non_null(strstr(err, needle[i]));
    }
    char *three[] = {"a", "b", "c"};
    assert_int_equal(parse(&o, 3, three, err, &npos, pos), RT_ERR_USAGE);
    char *help[] = {"--n", "3", "-h"};
    assert_int_equal(parse(&o, 3, help, err, &npos, pos), RT_HELP);
    char *boolval[] = {"--flag=1"};
    assert_int_equal(parse(&o, 1, boolval, err, &npos, pos), RT_ERR_USAGE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cosine),
        cmocka_unit_test(test_constant_and_wsd),
        cmocka_unit_test(test_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
