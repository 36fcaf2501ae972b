/* test_cu_attention.c: the flash attention of model/cuda/attention.cu against
 * its CPU twin (gpt_attention_forward / _backward), on inputs rounded to bf16
 * so that both sides start from the same numbers.
 *
 * What is checked, per the contract in kernels_cuda.h:
 *  - out, and dq, dk, dv each on its own (a bug in one slice would hide in
 *    the norm of all three), against the CPU twin; the GPU backward runs on
 *    the GPU's own out and lse, as in the model; the CPU backward ADDS into
 *    zeros with its forward's att matrix;
 *  - lse against a log-sum-exp computed here in double from the same inputs;
 *  - outputs start as NaN (out, lse, dqkv, delta), so an element left
 *    unwritten, or added to instead of overwritten, fails;
 *  - shapes: hs 64 on whole tiles (B=2, T=64, C=128, NH=2); hs 128 with a
 *    T tail (B=1, T=200, C=256, NH=2); one position (B=3, T=1, C=64, NH=1);
 *    GPT-2 small heads with a tail (B=2, T=257, C=768, NH=12) and at its
 *    context length (B=1, T=1024, C=768, NH=12);
 *  - causality: changing qkv after position t0 leaves out and lse at
 *    positions <= t0 bitwise unchanged (masked keys contribute exact zeros);
 *  - determinism: identical calls give bitwise identical out, lse, dqkv;
 *  - unsupported shapes (head size 96, C not split by NH) and misaligned
 *    pointers give GPT_ERR_CONFIG naming the value;
 *  - cuDNN's fused attention (attention_cudnn.c, --attention cudnn) against
 *    the same references and tolerances, on the hs 64, hs 128-with-tail and
 *    GPT-2 shapes (skipped in a build without cuDNN).
 * Tolerances: TOL (2e-2) is the relative error by norm for out, dq, dk, dv:
 * the GPU rounds P and dS to bf16 before its tensor-core products and out to
 * bf16 before delta, an RMS error of a few 2^-9, far below it. LSE_TOL (2e-4,
 * absolute) is for lse, which the GPU computes in fp32 from exact bf16
 * products (errors ~1e-5); it still notices a single key more or less at
 * T = 1024 (a change of about 1/T). Inputs are uniform in [-1.5, 1.5) for
 * qkv (raw dot products with a standard deviation of 6 to 8.5, 0.75 after the
 * scale, so the running max moves across key tiles) and [-1, 1) for dout. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "cu_test.h"
#include "kernels.h"

#define TOL 2e-2
#define LSE_TOL 2e-4
#define QKV_SCALE 1.5f

typedef struct { int B, T, C, NH; } shape;

static gpt_cu_ctx ctx;
static gpt_cudnn_att *cudnn; /* NULL in a build without cuDNN */
static gpt_error_t err;

/* ---- buffers, freed after each test ---- */
#define MAX_BUFS 64
static void *hbufs[MAX_BUFS], *dbufs[MAX_BUFS];
static int nh, nd;

static float *hbuf(size_t n) {
    assert_true(nh < MAX_BUFS);
    return hbufs[nh++] = cu_host(n);
}
static void *hraw(size_t bytes) {
    assert_true(nh < MAX_BUFS);
    void *p = calloc(bytes ? bytes : 1, 1);
    assert_non_null(p);
    return hbufs[nh++] = p;
}
static float *hrand(size_t n, float scale, unsigned *seed) {
    float *x = hbuf(n);
    cu_fill(x, n, scale, seed);
    return x;
}
static gpt_bf16 *dev(const float *x, size_t n) {
    assert_true(nd < MAX_BUFS);
    return dbufs[nd++] = cu_upload_bf16(x, n);
}
/* n device bf16 values that are all NaN. */
static gpt_bf16 *dev_nan(size_t n) {
    float *x = hbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return dev(x, n);
}
/* n device floats, all NaN (0xFFFFFFFF). */
static float *devf_nan(size_t n) {
    assert_true(nd < MAX_BUFS);
    float *d = NULL;
    CU_CHECK(cudaMalloc((void **)&d, (n ? n : 1) * sizeof *d));
    CU_CHECK(cudaMemset(d, 0xFF, (n ? n : 1) * sizeof *d));
    /* The legacy stream's memset is not ordered with ctx's stream. */
    CU_CHECK(cudaDeviceSynchronize());
    return dbufs[nd++] = d;
}
static float *down_bf16(const gpt_bf16 *d, size_t n) {
    float *x = hbuf(n);
    cu_download_bf16(x, d, n);
    return x;
}
static float *down_f(const float *d, size_t n) {
    float *x = hbuf(n);
    cu_download(x, d, n * sizeof *x);
    return x;
}
static void *down_raw(const void *d, size_t bytes) {
    void *x = hraw(bytes);
    cu_download(x, d, bytes);
    return x;
}

static int setup(void **state) {
    (void)state;
    nh = nd = 0;
    return 0;
}
static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < nh; i++) free(hbufs[i]);
    for (int i = 0; i < nd; i++) cudaFree(dbufs[i]);
    nh = nd = 0;
    return 0;
}
static int group_setup(void **state) {
    (void)state;
    if (gpt_cu_ctx_create(&ctx, NULL, 1024, err) != GPT_OK) return -1;
    if (gpt_cudnn_att_create(&cudnn, &ctx, err) != GPT_OK) {
        print_message("no cuDNN attention: %s\n", err);
        cudnn = NULL;
    }
    return 0;
}
static int group_teardown(void **state) {
    (void)state;
    gpt_cudnn_att_free(cudnn);
    gpt_cu_ctx_free(&ctx);
    return 0;
}

/* ---- references ---- */

/* lse[(b*NH + h)*T + i] = log sum_{j<=i} exp(scale * q_i . k_j), in double. */
static void lse_ref(double *lse, const float *qkv, shape s) {
    const int hs = s.C / s.NH;
    const long C3 = 3L * s.C;
    const double scale = 1.0 / sqrt((double)hs);
    double *sc = malloc(sizeof(double) * (size_t)s.T);
    assert_non_null(sc);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.NH; h++)
            for (int i = 0; i < s.T; i++) {
                const float *q = qkv + ((long)b * s.T + i) * C3 + h * hs;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((long)b * s.T + j) * C3 + s.C + h * hs;
                    double d = 0;
                    for (int c = 0; c < hs; c++) d += (double)q[c] * k[c];
                    sc[j] = d * scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j <= i; j++) sum += exp(sc[j] - mx);
                lse[((long)b * s.NH + h) * s.T + i] = mx + log(sum);
            }
    free(sc);
}

static void check_lse(const float *got, const double *want, size_t n, const char *label) {
    double worst = -1;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (isnan(d)) d = INFINITY;
        if (d > worst) { worst = d; at = i; }
    }
    if (!(worst <= LSE_TOL))
        fail_msg("%s: lse error %.3g > %.3g at %zu: got %.8g, want %.8g", label, worst,
                 LSE_TOL, at, got[at], want[at]);
}

/* One slice (0: q, 1: k, 2: v) of a (B, T, 3C) gradient, as (B*T, C). */
static float *slice(const float *dqkv, shape s, int which) {
    const size_t rows = (size_t)s.B * s.T;
    float *x = hbuf(rows * s.C);
    for (size_t r = 0; r < rows; r++)
        memcpy(x + r * s.C, dqkv + r * 3 * s.C + (size_t)which * s.C, sizeof(float) * s.C);
    return x;
}

/* Forward and backward on the GPU (ours, or cuDNN's with use_cudnn) and
 * the CPU; compares out, lse and the three gradient slices. A cuDNN release
 * whose backward is refused at this T (gpt_cudnn_backward_ok) must refuse
 * it with GPT_ERR_CONFIG; only the forward is compared then. */
static void check_impl(shape s, unsigned seed, int use_cudnn) {
    const size_t nqkv = (size_t)s.B * s.T * 3 * s.C, nout = (size_t)s.B * s.T * s.C;
    const size_t nst = (size_t)s.B * s.NH * s.T;
    char label[96];
    snprintf(label, sizeof label, "%sB=%d T=%d C=%d NH=%d", use_cudnn ? "cuDNN " : "", s.B,
             s.T, s.C, s.NH);
    float *qkv = hrand(nqkv, QKV_SCALE, &seed), *dout = hrand(nout, 1.0f, &seed);

    float *out = hbuf(nout), *att = hbuf((size_t)s.B * s.NH * s.T * s.T), *dqkv = hbuf(nqkv);
    gpt_attention_forward(out, att, qkv, s.B, s.T, s.C, s.NH);
    gpt_attention_backward(dqkv, dout, qkv, att, s.B, s.T, s.C, s.NH);
    double *lse = (double *)hraw(sizeof(double) * nst);
    lse_ref(lse, qkv, s);

    gpt_bf16 *d_qkv = dev(qkv, nqkv), *d_dout = dev(dout, nout);
    gpt_bf16 *d_out = dev_nan(nout), *d_dqkv = dev_nan(nqkv);
    float *d_lse = devf_nan(nst), *d_delta = devf_nan(nst);
    gpt_status st;
    if (use_cudnn)
        st = gpt_cudnn_attention_forward(cudnn, d_out, d_lse, d_qkv, s.B, s.T, s.C, s.NH, err);
    else
        st = gpt_cu_attention_forward(&ctx, d_out, d_lse, d_qkv, s.B, s.T, s.C, s.NH, err);
    if (st) fail_msg("%s forward: %s", label, err);
    gpt_error_t why = "";
    int backward = !use_cudnn || gpt_cudnn_backward_ok(0, s.T, why);
    if (use_cudnn)
        st = gpt_cudnn_attention_backward(cudnn, d_dqkv, d_dout, d_qkv, d_out, d_lse, s.B, s.T,
                                          s.C, s.NH, err);
    else
        st = gpt_cu_attention_backward(&ctx, d_dqkv, d_delta, d_dout, d_qkv, d_out, d_lse, s.B,
                                       s.T, s.C, s.NH, err);
    if (!backward) {
        print_message("    %s: backward refused, forward only: %s\n", label, why);
        assert_int_equal(st, GPT_ERR_CONFIG);
    } else if (st) {
        fail_msg("%s backward: %s", label, err);
    }
    CU_CHECK(cudaDeviceSynchronize());

    char what[128];
    snprintf(what, sizeof what, "%s out", label);
    assert_true(cu_rel_err(what, down_bf16(d_out, nout), out, nout, TOL) <= TOL);
    check_lse(down_f(d_lse, nst), lse, nst, label);
    if (!backward) return;
    const float *g = down_bf16(d_dqkv, nqkv);
    static const char *names[3] = {"dq", "dk", "dv"};
    int bad = 0;
    for (int w = 0; w < 3; w++) {
        snprintf(what, sizeof what, "%s %s", label, names[w]);
        bad |= !(cu_rel_err(what, slice(g, s, w), slice(dqkv, s, w), nout, TOL) <= TOL);
    }
    assert_false(bad);
}

static void check_shape(shape s, unsigned seed) { check_impl(s, seed, 0); }
static void check_cudnn(shape s, unsigned seed) {
    if (!cudnn) skip();
    check_impl(s, seed, 1);
}

static void test_hs64_whole_tiles(void **state) {
    (void)state;
    check_shape((shape){2, 64, 128, 2}, 11u);
}
static void test_hs128_tail(void **state) {
    (void)state;
    check_shape((shape){1, 200, 256, 2}, 12u);
}
static void test_one_position(void **state) {
    (void)state;
    check_shape((shape){3, 1, 64, 1}, 13u);
}
static void test_gpt2_tail(void **state) {
    (void)state;
    check_shape((shape){2, 257, 768, 12}, 14u);
}
static void test_gpt2_1024(void **state) {
    (void)state;
    check_shape((shape){1, 1024, 768, 12}, 15u);
}

/* Forward on qkv, then on qkv with every position after t0 redrawn: out and
 * lse at positions <= t0 must keep their bits, and some later ones change. */
static void check_causal(shape s, int t0, unsigned seed) {
    const size_t C3 = 3 * (size_t)s.C, nqkv = (size_t)s.B * s.T * C3;
    const size_t nout = (size_t)s.B * s.T * s.C, nst = (size_t)s.B * s.NH * s.T;
    float *qkv = hrand(nqkv, QKV_SCALE, &seed), *qkv2 = hbuf(nqkv);
    memcpy(qkv2, qkv, nqkv * sizeof *qkv);
    for (int b = 0; b < s.B; b++)
        cu_fill(qkv2 + ((size_t)b * s.T + t0 + 1) * C3, (size_t)(s.T - t0 - 1) * C3,
                QKV_SCALE, &seed);
    const gpt_bf16 *outs[2];
    const float *lses[2];
    for (int run = 0; run < 2; run++) {
        gpt_bf16 *d_out = dev_nan(nout);
        float *d_lse = devf_nan(nst);
        assert_int_equal(gpt_cu_attention_forward(&ctx, d_out, d_lse, dev(run ? qkv2 : qkv, nqkv),
                                                  s.B, s.T, s.C, s.NH, err), GPT_OK);
        outs[run] = down_raw(d_out, nout * sizeof(gpt_bf16));
        lses[run] = down_raw(d_lse, nst * sizeof(float));
    }
    int later_changed = 0;
    for (int b = 0; b < s.B; b++) {
        const size_t row0 = (size_t)b * s.T * s.C;
        assert_memory_equal(outs[0] + row0, outs[1] + row0, (size_t)(t0 + 1) * s.C * 2);
        later_changed |= memcmp(outs[0] + row0 + (size_t)(t0 + 1) * s.C,
                                outs[1] + row0 + (size_t)(t0 + 1) * s.C,
                                (size_t)(s.T - t0 - 1) * s.C * 2) != 0;
        for (int h = 0; h < s.NH; h++) {
            const size_t at = ((size_t)b * s.NH + h) * s.T;
            assert_memory_equal(lses[0] + at, lses[1] + at, (size_t)(t0 + 1) * sizeof(float));
        }
    }
    assert_true(later_changed);
}

static void test_causality(void **state) {
    (void)state;
    check_causal((shape){2, 150, 128, 2}, 70, 21u);  /* inside the second tile */
    check_causal((shape){1, 150, 256, 2}, 63, 22u);  /* the last row of the first */
}

/* The same calls twice (into differently pre-filled buffers) give the same bits. */
static void check_deterministic(shape s, unsigned seed) {
    const size_t nqkv = (size_t)s.B * s.T * 3 * s.C, nout = (size_t)s.B * s.T * s.C;
    const size_t nst = (size_t)s.B * s.NH * s.T;
    gpt_bf16 *d_qkv = dev(hrand(nqkv, QKV_SCALE, &seed), nqkv);
    gpt_bf16 *d_dout = dev(hrand(nout, 1.0f, &seed), nout);
    const void *got[2][4];
    for (int run = 0; run < 2; run++) {
        gpt_bf16 *d_out = dev_nan(nout), *d_dqkv = run ? dev(hbuf(nqkv), nqkv) : dev_nan(nqkv);
        float *d_lse = devf_nan(nst), *d_delta = devf_nan(nst);
        assert_int_equal(gpt_cu_attention_forward(&ctx, d_out, d_lse, d_qkv, s.B, s.T, s.C,
                                                  s.NH, err), GPT_OK);
        assert_int_equal(gpt_cu_attention_backward(&ctx, d_dqkv, d_delta, d_dout, d_qkv, d_out,
                                                   d_lse, s.B, s.T, s.C, s.NH, err), GPT_OK);
        got[run][0] = down_raw(d_out, nout * sizeof(gpt_bf16));
        got[run][1] = down_raw(d_lse, nst * sizeof(float));
        got[run][2] = down_raw(d_dqkv, nqkv * sizeof(gpt_bf16));
        got[run][3] = down_raw(d_delta, nst * sizeof(float));
    }
    assert_memory_equal(got[0][0], got[1][0], nout * sizeof(gpt_bf16));
    assert_memory_equal(got[0][1], got[1][1], nst * sizeof(float));
    assert_memory_equal(got[0][2], got[1][2], nqkv * sizeof(gpt_bf16));
    assert_memory_equal(got[0][3], got[1][3], nst * sizeof(float));
}

static void test_deterministic(void **state) {
    (void)state;
    check_deterministic((shape){2, 300, 768, 12}, 31u);
    check_deterministic((shape){1, 200, 256, 2}, 32u);
}

/* Config errors come before any launch and name the bad value. */
static void expect_config(gpt_status st, const char *needle) {
    assert_int_equal(st, GPT_ERR_CONFIG);
    if (!strstr(err, needle)) fail_msg("message '%s' does not name '%s'", err, needle);
}
static void test_bad_shapes(void **state) {
    (void)state;
    const size_t n = 4 * 3 * 256;
    gpt_bf16 *a = dev(hbuf(n), n), *o = dev(hbuf(n), n), *dq = dev(hbuf(n), n);
    float *lse = devf_nan(64), *delta = devf_nan(64);
    expect_config(gpt_cu_attention_forward(&ctx, o, lse, a, 1, 4, 96, 1, err), "96");
    expect_config(gpt_cu_attention_backward(&ctx, dq, delta, o, a, o, lse, 1, 4, 96, 1, err),
                  "96");
    expect_config(gpt_cu_attention_forward(&ctx, o, lse, a, 1, 4, 100, 3, err), "C=100");
    expect_config(gpt_cu_attention_forward(&ctx, o, lse, a, 1, 0, 64, 1, err), "T=0");
    expect_config(gpt_cu_attention_forward(&ctx, o, lse, a + 1, 1, 4, 64, 1, err), "qkv");
    expect_config(gpt_cu_attention_backward(&ctx, dq + 4, delta, o, a, o, lse, 1, 4, 64, 1,
                                            err), "dqkv");
    CU_CHECK(cudaDeviceSynchronize());
}

static void test_cudnn_hs64(void **state) {
    (void)state;
    check_cudnn((shape){2, 64, 128, 2}, 21u);
}
static void test_cudnn_hs128_tail(void **state) {
    (void)state;
    check_cudnn((shape){1, 200, 256, 2}, 22u);
}
static void test_cudnn_gpt2(void **state) {
    (void)state;
    check_cudnn((shape){2, 257, 768, 12}, 23u);
    check_cudnn((shape){1, 1024, 768, 12}, 24u);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(int argc, char **argv) {
    (void)argc;
    cu_test_require_gpu(argv[0]);
    const struct CMUnitTest tests[] = {
        T(test_bad_shapes),     T(test_hs64_whole_tiles), T(test_hs128_tail),
        T(test_one_position),   T(test_gpt2_tail),        T(test_gpt2_1024),
        T(test_causality),      T(test_deterministic),    T(test_cudnn_hs64),
        T(test_cudnn_hs128_tail), T(test_cudnn_gpt2),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
