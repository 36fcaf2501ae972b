/* test_cu_host.c: the host-side logic of the CUDA backend, which runs (and
 * must pass) on machines without a GPU: bf16 conversions, the encoder's
 * token plan, stochastic rounding's host twin, the supported shapes, the
 * memory estimate, the update's spans, and clean failures when no device is
 * there. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cu_test.h"
#include "gpt_cuda.h"
#include "kernels_cuda.h"

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_bf16_round_to_nearest_even(void **state) {
    (void)state;
    assert_int_equal(gpt_bf16_from_float(1.0f), 0x3f80);
    assert_int_equal(gpt_bf16_from_float(-2.0f), 0xc000);
    /* Exactly half-way between 0x3f80 and 0x3f81: ties go to the even one. */
    assert_int_equal(gpt_bf16_from_float(bits_to_float(0x3f808000u)), 0x3f80);
    assert_int_equal(gpt_bf16_from_float(bits_to_float(0x3f818000u)), 0x3f82);
    /* Just above half-way rounds up; just below rounds down. */
    assert_int_equal(gpt_bf16_from_float(bits_to_float(0x3f808001u)), 0x3f81);
    assert_int_equal(gpt_bf16_from_float(bits_to_float(0x3f807fffu)), 0x3f80);
    /* Overflow of the mantissa carries into the exponent; huge values go to inf. */
    assert_int_equal(gpt_bf16_from_float(bits_to_float(0x3fffffffu)), 0x4000);
    assert_int_equal(gpt_bf16_from_float(bits_to_float(0x7f7fffffu)), 0x7f80);
    assert_true(isnan(gpt_bf16_to_float(gpt_bf16_from_float(NAN))));
    assert_true(isinf(gpt_bf16_to_float(gpt_bf16_from_float(INFINITY))));
    for (int i = -1000; i <= 1000; i++) {
        float x = (float)i * 0.37f, y = gpt_bf16_to_float(gpt_bf16_from_float(x));
        assert_true(fabsf(y - x) <= fabsf(x) * (1.0f / 256.0f));
    }
}

static void test_encoder_plan_groups_positions_by_token(void **state) {
    (void)state;
    enum { N = 12, V = 9 };
    const int tokens[N] = {5, 0, 5, 8, 1, 5, 0, 8, 8, 3, 5, 1};
    int uniq[N + 1], start[N + 1], pos[N], counts[V + 1];
    gpt_cu_encoder_plan p = {0, uniq, start, pos};
    gpt_cu_encoder_plan_build(&p, tokens, N, V, counts);
    const int want_uniq[] = {0, 1, 3, 5, 8};
    const int want_start[] = {0, 2, 4, 5, 9, 12};
    const int want_pos[] = {1, 6, 4, 11, 9, 0, 2, 5, 10, 3, 7, 8};
    assert_int_equal(p.n_uniq, 5);
    assert_memory_equal(uniq, want_uniq, sizeof(want_uniq));
    assert_memory_equal(start, want_start, sizeof(want_start));
    assert_memory_equal(pos, want_pos, sizeof(want_pos));
    /* The same tokens again give the same plan (counts is reused scratch). */
    int pos2[N];
    gpt_cu_encoder_plan q = {0, uniq, start, pos2};
    gpt_cu_encoder_plan_build(&q, tokens, N, V, counts);
    assert_memory_equal(pos2, want_pos, sizeof(want_pos));
}

static void test_stochastic_rounding_host_twin(void **state) {
    (void)state;
    /* 1 + 2^-9 lies a quarter of the way from 1.0 to the next bf16 (1 + 2^-7). */
    float x = 1.0f + 1.0f / 512.0f;
    gpt_bf16 lo = 0x3f80, hi = 0x3f81;
    int n_hi = 0, n = 20000;
    for (int i = 0; i < n; i++) {
        gpt_bf16 r = gpt_cu_sr_round_host(x, 42, 3, (uint64_t)i);
        assert_true(r == lo || r == hi);
        assert_int_equal(r, gpt_cu_sr_round_host(x, 42, 3, (uint64_t)i));
        n_hi += r == hi;
    }
    /* Unbiased: about a quarter round up (4 sigma is about 0.012). */
    assert_true(fabs((double)n_hi / n - 0.25) < 0.015);
    /* Another seed or step draws other bits; exact values never move. */
    int differ = 0;
    for (int i = 0; i < 256; i++)
        differ += gpt_cu_sr_round_host(x, 42, 3, (uint64_t)i) !=
                  gpt_cu_sr_round_host(x, 43, 3, (uint64_t)i);
    assert_true(differ > 0);
    for (int i = 0; i < 256; i++) assert_int_equal(gpt_cu_sr_round_host(1.5f, 7, 1, i), 0x3fc0);
}

static void test_supported_shapes(void **state) {
    (void)state;
    gpt_error_t err = "";
    gpt_config c;
    const char *ok[] = {"d2", "d12", "gpt2-124M", "gpt2-350M", "gpt2-1558M"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(gpt_config_preset(ok[i], &c, err), GPT_OK);
        assert_int_equal(gpt_config_finish(&c, err), GPT_OK);
        assert_int_equal(gpt_cuda_check_config(&c, err), GPT_OK);
    }
    c = (gpt_config){3, 3, 30, 16, 131, 0};
    assert_int_equal(gpt_config_finish(&c, err), GPT_OK);
    assert_int_equal(gpt_cuda_check_config(&c, err), GPT_ERR_CONFIG);
    assert_non_null(strstr(err, "30"));
    c = (gpt_config){2, 4, 128, 64, 256, 0}; /* head size 32 */
    assert_int_equal(gpt_config_finish(&c, err), GPT_OK);
    assert_int_equal(gpt_cuda_check_config(&c, err), GPT_ERR_CONFIG);
    assert_non_null(strstr(err, "32"));
}

static void test_memory_estimate(void **state) {
    (void)state;
    gpt_error_t err;
    gpt_config c;
    assert_int_equal(gpt_config_preset("gpt2-124M", &c, err), GPT_OK);
    gpt_cuda_opts o = {.B = 16, .T = 1024};
    size_t full = gpt_cuda_bytes(&c, &o);
    o.recompute = 1;
    size_t rec = gpt_cuda_bytes(&c, &o);
    o.B = 8;
    size_t half = gpt_cuda_bytes(&c, &o);
    /* Weights and state alone: 124M x (2 + 2 + 4 + 4 + 4) bytes is ~2 GB. Per
     * layer and token the kept activations are 16C bf16 values (12C with
     * --recompute), and the logits 50304: about 6.8 GB at B=16, T=1024. */
    print_message("124M at 16x1024: %.2f GB, %.2f GB with --recompute, %.2f GB at B=8\n",
                  full / 1e9, rec / 1e9, half / 1e9);
    assert_true(full > (size_t)7e9 && full < (size_t)10e9);
    assert_true(rec < full && full - rec > (size_t)1e9);
    assert_true(half < rec);
}

static void test_clean_failure_without_a_device(void **state) {
    (void)state;
    char line[256];
    gpt_cuda_describe(0, line, sizeof line);
    print_message("%s\n", line);
    if (cu_test_gpu()) {
        assert_null(strstr(line, "no CUDA device"));
        skip();
    }
    assert_non_null(strstr(line, "no CUDA device"));
    gpt_error_t err = "";
    gpt_config c;
    assert_int_equal(gpt_config_preset("d2", &c, err), GPT_OK);
    gpt_cuda_opts o = {.B = 2, .T = 64};
    gpt_cuda *g = (gpt_cuda *)&o; /* must be reset to NULL */
    assert_int_equal(gpt_cuda_create(&g, &c, &o, err), GPT_ERR_DEVICE);
    assert_null(g);
    assert_non_null(strstr(err, "device 0"));
}

/* The update's spans over GPT-2 124M's table, whole and for a shard that
 * starts and ends inside tensors: in table order, each at most
 * GPT_CU_SPAN_MAX long and inside one tensor, decaying as it does, and
 * covering exactly the shard's tensor elements (the gaps in no span). */
static void check_spans(const gpt_table *t, size_t lo, size_t hi) {
    size_t n = gpt_cu_adamw_spans(t, lo, hi, NULL, 0);
    gpt_cu_span *sp = calloc(n + 1, sizeof *sp);
    assert_non_null(sp);
    assert_int_equal(gpt_cu_adamw_spans(t, lo, hi, sp, n), n);
    size_t covered = 0, want = 0, end = 0;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t a = lo + sp[i].off, b = a + sp[i].n;
        assert_true(sp[i].n > 0 && sp[i].n <= GPT_CU_SPAN_MAX && a >= end && b <= hi);
        while (t->t[k].offset + t->t[k].numel <= a) k++;
        assert_true(a >= t->t[k].offset && b <= t->t[k].offset + t->t[k].numel);
        assert_int_equal(sp[i].decay, t->t[k].decay != 0);
        covered += sp[i].n;
        end = b;
    }
    for (int j = 0; j < t->count; j++) {
        size_t a = t->t[j].offset > lo ? t->t[j].offset : lo;
        size_t b = t->t[j].offset + t->t[j].numel < hi ? t->t[j].offset + t->t[j].numel : hi;
        if (a < b) want += b - a;
    }
    assert_int_equal(covered, want);
    /* A smaller cap writes only the first spans, and still counts them all. */
    gpt_cu_span first[2];
    assert_int_equal(gpt_cu_adamw_spans(t, lo, hi, first, 2), n);
    assert_memory_equal(first, sp, (n < 2 ? n : 2) * sizeof *sp);
    free(sp);
}

static void test_adamw_spans(void **state) {
    (void)state;
    gpt_error_t err;
    gpt_config c;
    gpt_table t;
    assert_int_equal(gpt_config_preset("gpt2-124M", &c, err), GPT_OK);
    assert_int_equal(gpt_config_finish(&c, err), GPT_OK);
    assert_int_equal(gpt_table_build(&t, &c, err), GPT_OK);
    check_spans(&t, 0, t.total);
    size_t mid = t.t[GPT_T_WPE].offset + 100; /* inside wpe */
    check_spans(&t, mid, t.total - 5);        /* ends inside ln_f.bias */
    check_spans(&t, mid, mid + 1);
    assert_int_equal(gpt_cu_adamw_spans(&t, mid, mid, NULL, 0), 0);
    /* about one span per 16384 elements, plus one per small tensor */
    size_t n = gpt_cu_adamw_spans(&t, 0, t.total, NULL, 0);
    print_message("    gpt2-124M: %zu spans for %d tensors\n", n, t.count);
    assert_true(n < t.total / GPT_CU_SPAN_MAX + (size_t)t.count + 1);
    gpt_table_free(&t);
}

static void test_peak_table(void **state) {
    (void)state;
    assert_true(gpt_cuda_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4);
    assert_true(gpt_cuda_peak_tflops("NVIDIA H100 PCIe") == 756.5);
    assert_true(gpt_cuda_peak_tflops("NVIDIA H200") == 989.4);
    assert_true(gpt_cuda_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0);
    assert_true(gpt_cuda_peak_tflops("NVIDIA GeForce RTX 4090") == 0.0);
    assert_non_null(strstr(gpt_cuda_peak_source(), "datasheet"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_round_to_nearest_even),
        cmocka_unit_test(test_encoder_plan_groups_positions_by_token),
        cmocka_unit_test(test_stochastic_rounding_host_twin),
        cmocka_unit_test(test_supported_shapes),
        cmocka_unit_test(test_memory_estimate),
        cmocka_unit_test(test_clean_failure_without_a_device),
        cmocka_unit_test(test_peak_table),
        cmocka_unit_test(test_adamw_spans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
