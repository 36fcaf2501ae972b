/* test_cu_matmul.c: the cuBLASLt matmuls of model/cuda/matmul.cu against
 * their CPU twins (gpt_matmul_forward / _backward, and gpt_gelu_forward /
 * _backward for the GELU epilogues), on inputs rounded to bf16 so both sides
 * multiply the same numbers.
 *
 * What is checked, per the contract in kernels_cuda.h:
 *  - forward with and without bias, with the GELU epilogue with and without
 *    bias (out and pre_gelu both);
 *  - backward with and without dinp and dbias, with pre_gelu (DGELU: dinp is
 *    d(pre-GELU)); dw and dbias start from non-zero values, so an overwrite
 *    instead of an add fails;
 *  - accumulation: two backward calls add twice into dw and dbias, while dinp
 *    is overwritten, not added to;
 *  - overwritten outputs (out, pre_gelu, dinp) start as NaN, so an element
 *    left unwritten, or added to, fails (this also checks that beta = 0
 *    really ignores the old contents);
 *  - shapes: N = 37*8+3 (no multiple of any tile), C = 64, OC = 192; the
 *    GPT-2 small MLP, N = 512, C = 768, OC = 3072, and its projection back
 *    (C = 3072, OC = 768, where the DGELU sits in the model); N = 1, C = OC = 8;
 *  - the bias gradient with a scratch of only 3 partial rows (rows folded);
 *  - buffers 16 bytes past a 256-byte boundary after a plan was made on
 *    aligned ones (the cached algorithm must suit any 16-byte alignment);
 *  - determinism: identical calls give bitwise identical results;
 *  - bad shapes and misaligned pointers give GPT_ERR_CONFIG naming the value.
 * Tolerances are relative errors by norm. TOL_ONE (5e-3) is for results
 * rounded once from fp32 to bf16: an RMS relative error of about 2^-9, the
 * fp32 summation order being far below that. TOL (1e-2) is for the GELU
 * epilogues (cuBLASLt's GELU, evaluated its own way) and for results rounded
 * twice (the second of two accumulating calls). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "cu_test.h"
#include "kernels.h"

#define TOL_ONE 5e-3
#define TOL 1e-2

typedef struct { int N, C, OC; } shape;
static const shape SMALL = {37 * 8 + 3, 64, 192};
static const shape GPT2_FC = {512, 768, 3072};
static const shape GPT2_PROJ = {512, 3072, 768};
static const shape TINY = {1, 8, 8};

static gpt_cu_ctx ctx;
static gpt_error_t err;

/* ---- buffers, freed after each test ---- */
#define MAX_BUFS 256
static void *hbufs[MAX_BUFS], *dbufs[MAX_BUFS];
static int nh, nd;

static float *hbuf(size_t n) {
    assert_true(nh < MAX_BUFS);
    return hbufs[nh++] = cu_host(n);
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
/* A device copy that starts 8 values (16 bytes) past cudaMalloc's 256-byte
 * alignment, so its address is aligned to exactly 16 bytes. */
static gpt_bf16 *dev_off16(const float *x, size_t n) {
    float *padded = hbuf(n + 8);
    memcpy(padded + 8, x, n * sizeof *x);
    return dev(padded, n + 8) + 8;
}
/* n host values that upload as bf16 NaN: an output element that the GPU
 * leaves unwritten, or adds to instead of overwriting, stays NaN. */
static float *hnan(size_t n) {
    float *x = hbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}
/* A label naming the case, for cu_rel_err's message. */
static const char *label(const char *what, shape s, int variant) {
    static char buf[128];
    snprintf(buf, sizeof buf, "%s (N=%d C=%d OC=%d, variant %d)", what, s.N, s.C, s.OC,
             variant);
    return buf;
}
static float *down(const gpt_bf16 *d, size_t n) {
    float *x = hbuf(n);
    cu_download_bf16(x, d, n);
    return x;
}
static gpt_bf16 *down_raw(const gpt_bf16 *d, size_t n) {
    gpt_bf16 *x = (gpt_bf16 *)hbuf(n);  /* floats: room to spare */
    cu_download(x, d, n * sizeof *x);
    return x;
}

static int setup(void **state) { (void)state; nh = nd = 0; err[0] = 0; return 0; }
static int teardown(void **state) {
    (void)state;
    while (nh > 0) free(hbufs[--nh]);
    while (nd > 0) cudaFree(dbufs[--nd]);
    return 0;
}
static int group_setup(void **state) {
    (void)state;
    if (gpt_cu_ctx_create(&ctx, NULL, gpt_cu_scratch_floats(768), err) != GPT_OK) {
        fprintf(stderr, "gpt_cu_ctx_create: %s\n", err);
        return -1;
    }
    return 0;
}
static int group_teardown(void **state) { (void)state; gpt_cu_ctx_free(&ctx); return 0; }

#define ASSERT_OK(call) do { if ((call) != GPT_OK) fail_msg("%s", err); } while (0)
#define CHECK(what, got, want, n, tol) assert_true(cu_rel_err(what, got, want, n, tol) <= (tol))

/* ---- one problem: bf16-exact host inputs and their device copies ---- */
typedef struct {
    shape s;
    float *inp, *w, *bias, *dout, *pre, *dw0, *db0;
} problem;

/* w ~ 3/sqrt(C) keeps the pre-activations near unit size, where GELU bends;
 * dw0 and db0 are about as large as one call's gradients. */
static problem make_problem(shape s, unsigned seed) {
    problem p = {.s = s};
    size_t N = (size_t)s.N, C = (size_t)s.C, OC = (size_t)s.OC;
    p.inp = hrand(N * C, 1.0f, &seed);
    p.w = hrand(OC * C, 3.0f / sqrtf((float)C), &seed);
    p.bias = hrand(OC, 0.5f, &seed);
    p.dout = hrand(N * OC, 1.0f, &seed);
    p.pre = hrand(N * C, 3.0f, &seed);
    p.dw0 = hrand(OC * C, 0.5f * sqrtf((float)N), &seed);
    p.db0 = hrand(OC, 0.5f * sqrtf((float)N), &seed);
    return p;
}

/* ---- forward ---- */
typedef enum { PLAIN, BIAS, GELU, GELU_BIAS } fwd_kind;

/* The CPU twin: pre = inp w^T (+ bias), out = gelu(pre) for the GELU kinds. */
static void forward_ref(const problem *p, fwd_kind k, float **out, float **pre) {
    size_t n = (size_t)p->s.N * p->s.OC;
    *pre = hbuf(n);
    int bias = k == BIAS || k == GELU_BIAS, gelu = k == GELU || k == GELU_BIAS;
    gpt_matmul_forward(*pre, p->inp, p->w, bias ? p->bias : NULL, p->s.N, p->s.C, p->s.OC);
    *out = *pre;
    if (gelu) {
        *out = hbuf(n);
        gpt_gelu_forward(*out, *pre, (int)n);
    }
}

typedef gpt_bf16 *(*uploader)(const float *, size_t);

/* Runs the GPU forward of kind k on p (device copies from put) and checks
 * out and pre_gelu against the CPU twin. */
static void check_forward_with(const problem *p, fwd_kind k, uploader put) {
    shape s = p->s;
    size_t n = (size_t)s.N * s.OC;
    int bias = k == BIAS || k == GELU_BIAS, gelu = k == GELU || k == GELU_BIAS;
    gpt_bf16 *out = put(hnan(n), n), *pre = gelu ? put(hnan(n), n) : NULL;
    ASSERT_OK(gpt_cu_matmul_forward(&ctx, out, pre, put(p->inp, (size_t)s.N * s.C),
                                    put(p->w, (size_t)s.OC * s.C),
                                    bias ? put(p->bias, (size_t)s.OC) : NULL, s.N, s.C, s.OC,
                                    err));
    float *want_out, *want_pre;
    forward_ref(p, k, &want_out, &want_pre);
    CHECK(label("forward out", s, k), down(out, n), want_out, n, gelu ? TOL : TOL_ONE);
    if (gelu) CHECK(label("forward pre_gelu", s, k), down(pre, n), want_pre, n, TOL_ONE);
}

static void check_forward(shape s, fwd_kind k) {
    problem p = make_problem(s, 1000u + (unsigned)k);
    check_forward_with(&p, k, dev);
}

static void test_forward_small(void **state) {
    (void)state;
    check_forward(SMALL, PLAIN);
    check_forward(SMALL, BIAS);
    check_forward(SMALL, GELU);
    check_forward(SMALL, GELU_BIAS);
}
static void test_forward_gpt2(void **state) {
    (void)state;
    check_forward(GPT2_FC, GELU_BIAS);
    check_forward(GPT2_PROJ, BIAS);
    check_forward(GPT2_FC, PLAIN);
}
static void test_forward_tiny(void **state) {
    (void)state;
    check_forward(TINY, BIAS);
    check_forward(TINY, GELU_BIAS);
}

/* ---- backward ---- */
typedef struct { int dinp, dbias, gelu, calls; } bwd_opts;

/* Calls the GPU backward o.calls times, from dw = dw0, dbias = db0 and a
 * NaN dinp, and checks dw0 + calls * g, db0 + calls * g and a single g for
 * dinp (times gelu'(pre) with o.gelu). */
static void check_backward_in(gpt_cu_ctx *c, shape s, bwd_opts o) {
    problem p = make_problem(s, 2000u + (unsigned)(o.dinp + 2 * o.dbias + 4 * o.gelu));
    size_t N = (size_t)s.N, C = (size_t)s.C, OC = (size_t)s.OC;
    int variant = o.dinp + 2 * o.dbias + 4 * o.gelu + 8 * o.calls;
    gpt_bf16 *dinp = o.dinp ? dev(hnan(N * C), N * C) : NULL;
    gpt_bf16 *dw = dev(p.dw0, OC * C), *db = o.dbias ? dev(p.db0, OC) : NULL;
    gpt_bf16 *dout = dev(p.dout, N * OC), *inp = dev(p.inp, N * C), *w = dev(p.w, OC * C);
    gpt_bf16 *pre = o.gelu ? dev(p.pre, N * C) : NULL;
    for (int i = 0; i < o.calls; i++)
        ASSERT_OK(gpt_cu_matmul_backward(c, dinp, dw, db, dout, inp, w, pre, s.N, s.C, s.OC,
                                         err));

    float *gin = hbuf(N * C), *gw = hbuf(OC * C), *gb = hbuf(OC);
    gpt_matmul_backward(gin, gw, gb, p.dout, p.inp, p.w, s.N, s.C, s.OC);
    double tol = o.calls == 1 ? TOL_ONE : TOL;
    for (size_t i = 0; i < OC * C; i++) gw[i] = p.dw0[i] + (float)o.calls * gw[i];
    CHECK(label("backward dw", s, variant), down(dw, OC * C), gw, OC * C, tol);
    if (o.dbias) {
        for (size_t i = 0; i < OC; i++) gb[i] = p.db0[i] + (float)o.calls * gb[i];
        CHECK(label("backward dbias", s, variant), down(db, OC), gb, OC, tol);
    }
    if (o.dinp) {
        float *want = gin;
        if (o.gelu) {
            want = hbuf(N * C);
            gpt_gelu_backward(want, p.pre, gin, (int)(N * C));
        }
        CHECK(label("backward dinp", s, variant), down(dinp, N * C), want, N * C,
              o.gelu ? TOL : TOL_ONE);
    }
}
static void check_backward(shape s, bwd_opts o) { check_backward_in(&ctx, s, o); }

static void test_backward_small(void **state) {
    (void)state;
    check_backward(SMALL, (bwd_opts){.dinp = 1, .dbias = 1, .calls = 1});
    check_backward(SMALL, (bwd_opts){.dinp = 1, .dbias = 0, .calls = 1});
    check_backward(SMALL, (bwd_opts){.dinp = 0, .dbias = 1, .calls = 1});
    check_backward(SMALL, (bwd_opts){.dinp = 0, .dbias = 0, .calls = 1});
}
static void test_backward_dgelu_small(void **state) {
    (void)state;
    check_backward(SMALL, (bwd_opts){.dinp = 1, .dbias = 1, .gelu = 1, .calls = 1});
    check_backward(SMALL, (bwd_opts){.dinp = 1, .dbias = 0, .gelu = 1, .calls = 1});
}
static void test_backward_accumulates(void **state) {
    (void)state;
    check_backward(SMALL, (bwd_opts){.dinp = 1, .dbias = 1, .calls = 2});
    check_backward(SMALL, (bwd_opts){.dinp = 1, .dbias = 1, .gelu = 1, .calls = 2});
}
static void test_backward_gpt2(void **state) {
    (void)state;
    check_backward(GPT2_FC, (bwd_opts){.dinp = 1, .dbias = 1, .calls = 1});
    check_backward(GPT2_PROJ, (bwd_opts){.dinp = 1, .dbias = 1, .gelu = 1, .calls = 1});
}
static void test_backward_tiny(void **state) {
    (void)state;
    check_backward(TINY, (bwd_opts){.dinp = 1, .dbias = 1, .calls = 2});
    check_backward(TINY, (bwd_opts){.dinp = 1, .dbias = 1, .gelu = 1, .calls = 1});
}

/* Scratch for 3 rows of OC partial sums: 299 rows fold into 3 blocks. */
static void test_dbias_small_scratch(void **state) {
    (void)state;
    gpt_cu_ctx small;
    ASSERT_OK(gpt_cu_ctx_create(&small, NULL, 3 * (size_t)SMALL.OC, err));
    check_backward_in(&small, SMALL, (bwd_opts){.dinp = 0, .dbias = 1, .calls = 1});
    CU_CHECK(cudaDeviceSynchronize());
    gpt_cu_ctx_free(&small);
}

/* The same shapes on aligned buffers first (that makes the plans), then on
 * buffers aligned to exactly 16 bytes. */
static void test_offset_pointers(void **state) {
    (void)state;
    problem p = make_problem(SMALL, 3000u);
    check_forward_with(&p, GELU_BIAS, dev);
    check_forward_with(&p, GELU_BIAS, dev_off16);
    size_t N = (size_t)SMALL.N, C = (size_t)SMALL.C, OC = (size_t)SMALL.OC;
    float *gin = hbuf(N * C), *gw = hbuf(OC * C), *gb = hbuf(OC), *want = hbuf(N * C);
    gpt_matmul_backward(gin, gw, gb, p.dout, p.inp, p.w, SMALL.N, SMALL.C, SMALL.OC);
    gpt_gelu_backward(want, p.pre, gin, (int)(N * C));
    for (size_t i = 0; i < OC * C; i++) gw[i] += p.dw0[i];
    for (size_t i = 0; i < OC; i++) gb[i] += p.db0[i];
    for (int off = 0; off < 2; off++) {
        uploader put = off ? dev_off16 : dev;
        gpt_bf16 *dinp = put(hnan(N * C), N * C), *dw = put(p.dw0, OC * C);
        gpt_bf16 *db = put(p.db0, OC);
        ASSERT_OK(gpt_cu_matmul_backward(&ctx, dinp, dw, db, put(p.dout, N * OC),
                                         put(p.inp, N * C), put(p.w, OC * C), put(p.pre, N * C),
                                         SMALL.N, SMALL.C, SMALL.OC, err));
        CHECK(label("offset dinp", SMALL, off), down(dinp, N * C), want, N * C, TOL);
        CHECK(label("offset dw", SMALL, off), down(dw, OC * C), gw, OC * C, TOL_ONE);
        CHECK(label("offset dbias", SMALL, off), down(db, OC), gb, OC, TOL_ONE);
    }
}

/* Two identical calls from identical buffers: the same bits. */
static void test_deterministic(void **state) {
    (void)state;
    shape s = GPT2_PROJ;
    problem p = make_problem(s, 4000u);
    size_t N = (size_t)s.N, C = (size_t)s.C, OC = (size_t)s.OC;
    gpt_bf16 *dout = dev(p.dout, N * OC), *inp = dev(p.inp, N * C), *w = dev(p.w, OC * C);
    gpt_bf16 *pre = dev(p.pre, N * C), *bias = dev(p.bias, OC);
    gpt_bf16 *dinp[2], *dw[2], *db[2], *out[2], *act[2];
    for (int r = 0; r < 2; r++) {
        dinp[r] = dev(hnan(N * C), N * C);
        dw[r] = dev(p.dw0, OC * C);
        db[r] = dev(p.db0, OC);
        out[r] = dev(hnan(N * OC), N * OC);
        act[r] = dev(hnan(N * OC), N * OC);
        ASSERT_OK(gpt_cu_matmul_backward(&ctx, dinp[r], dw[r], db[r], dout, inp, w, pre, s.N,
                                         s.C, s.OC, err));
        ASSERT_OK(gpt_cu_matmul_forward(&ctx, out[r], act[r], inp, w, bias, s.N, s.C, s.OC,
                                        err));
    }
    assert_memory_equal(down_raw(dw[0], OC * C), down_raw(dw[1], OC * C), OC * C * 2);
    assert_memory_equal(down_raw(db[0], OC), down_raw(db[1], OC), OC * 2);
    assert_memory_equal(down_raw(dinp[0], N * C), down_raw(dinp[1], N * C), N * C * 2);
    assert_memory_equal(down_raw(out[0], N * OC), down_raw(out[1], N * OC), N * OC * 2);
    assert_memory_equal(down_raw(act[0], N * OC), down_raw(act[1], N * OC), N * OC * 2);
}

/* Config errors come before any launch and name the bad value. */
static void expect_config(gpt_status st, const char *needle) {
    assert_int_equal(st, GPT_ERR_CONFIG);
    if (!strstr(err, needle)) fail_msg("message '%s' does not name '%s'", err, needle);
}
static void test_bad_shapes(void **state) {
    (void)state;
    float zeros[64 * 64] = {0};
    gpt_bf16 *a = dev(zeros, 64 * 64), *b = dev(zeros, 64 * 64), *c = dev(zeros, 64 * 64);
    expect_config(gpt_cu_matmul_forward(&ctx, c, NULL, a, b, NULL, 4, 60, 64, err), "60");
    expect_config(gpt_cu_matmul_forward(&ctx, c, NULL, a, b, NULL, 4, 64, 100, err), "100");
    expect_config(gpt_cu_matmul_forward(&ctx, c, NULL, a, b, NULL, 0, 64, 64, err), "N = 0");
    expect_config(gpt_cu_matmul_backward(&ctx, c, b, NULL, a, a, b, NULL, 4, 60, 64, err),
                  "60");
    expect_config(gpt_cu_matmul_backward(&ctx, c, b, NULL, a, a, b, NULL, 4, 64, 12, err),
                  "12");
    expect_config(gpt_cu_matmul_forward(&ctx, c, NULL, a + 1, b, NULL, 4, 64, 64, err),
                  "16-byte");
    expect_config(gpt_cu_matmul_backward(&ctx, c, b, a + 4, a, a, b, NULL, 4, 64, 64, err),
                  "dbias");
    expect_config(gpt_cu_matmul_backward(&ctx, c, NULL, NULL, a, a, b, NULL, 4, 64, 64, err),
                  "dw");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(int argc, char **argv) {
    (void)argc;
    cu_test_require_gpu(argv[0]);
    const struct CMUnitTest tests[] = {
        T(test_bad_shapes),          T(test_forward_small),        T(test_forward_tiny),
        T(test_forward_gpt2),        T(test_backward_small),       T(test_backward_dgelu_small),
        T(test_backward_accumulates), T(test_backward_tiny),       T(test_backward_gpt2),
        T(test_dbias_small_scratch), T(test_offset_pointers),      T(test_deterministic),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
