/* test_cu_layers.c: the CUDA encoder, LayerNorm and residual kernels
 * (model/cuda/encoder.cu, layernorm.cu) against their CPU twins (kernels.h).
 *
 * Inputs are rounded to bf16 before either side sees them, so the CPU twin
 * computes in fp32 on exactly the GPU's inputs; what is left is the GPU's
 * bf16 rounding of its outputs and its different fp32 summation order.
 * Relative errors by norm (cu_rel_err): forward outputs <= 1e-2, the fp32
 * LayerNorm statistics <= 1e-5, gradients <= 2e-2. Where the GPU does one
 * fp32 add and one rounding (encoder forward, residual) the result must be
 * the CPU's fp32 value rounded to bf16, exactly.
 *
 * Beyond agreement with the twin:
 *  - the backward kernels ADD: each runs into zeros and into pre-filled
 *    gradients; the encoder backward twice into zeros gives twice once;
 *  - the encoder backward gets tokens from a vocabulary of 5, so nearly
 *    every dwte row sums many positions, through the host-built plan;
 *  - the fused residual + LayerNorm equals residual then LayerNorm, bitwise;
 *  - LayerNorm backward twice from the same state gives the same bits;
 *  - unsupported shapes (C = 12, C > 8192, N = 0, misaligned pointers, a
 *    too-small scratch, an empty plan) give GPT_ERR_CONFIG naming the value.
 * Shapes: N = 3*37 with C = 64 and 768 (rows that do not fill blocks), N =
 * 1024 with C = 768 (GPT-2 small), N = 1443 with C = 1000 (more rows than
 * GPT_CU_PARTIAL_ROWS, unevenly folded; 125 chunks so a warp is partly idle)
 * and N = 64 with C = 8192 (the widest row, 1024-thread blocks). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "cu_test.h"
#include "kernels.h"

#define FWD_TOL 1e-2  /* bf16 outputs */
#define STAT_TOL 1e-5 /* fp32 mean and rstd */
#define GRAD_TOL 2e-2 /* bf16 gradients */
#define ENC_VOCAB 50  /* encoder forward: a small table */
#define REP_VOCAB 5   /* encoder backward: tokens repeat */
#define MAX_C 1000    /* widest C of the shapes that use ctx (8192 has its own) */

typedef struct {
    int B, T, C;
} shape; /* N = B*T rows */

static shape ODD_64 = {3, 37, 64}, ODD_768 = {3, 37, 768}, GPT2_768 = {4, 256, 768};
static shape FOLD_1000 = {13, 111, 1000}, WIDE_8192 = {2, 32, 8192};

static gpt_cu_ctx ctx;
static gpt_error_t err;

/* ---- allocations, freed after each test ---- */
#define MAX_ALLOCS 64
static void *host_allocs[MAX_ALLOCS], *dev_allocs[MAX_ALLOCS];
static int n_host, n_dev;

static float *hbuf(size_t n) {
    assert_true(n_host < MAX_ALLOCS);
    return host_allocs[n_host++] = cu_host(n);
}
static void *track_dev(void *d) {
    assert_true(n_dev < MAX_ALLOCS);
    /* cudaMemset runs on the legacy stream, which ctx's stream does not wait for */
    CU_CHECK(cudaDeviceSynchronize());
    return dev_allocs[n_dev++] = d;
}
static gpt_bf16 *dev_bf16_of(const float *x, size_t n) {
    return track_dev(cu_upload_bf16(x, n));
}
static void *dev_copy(const void *x, size_t bytes) { return track_dev(cu_upload(x, bytes)); }
static gpt_bf16 *dev_zeros(size_t n) {
    void *d = NULL;
    CU_CHECK(cudaMalloc(&d, n * sizeof(gpt_bf16)));
    CU_CHECK(cudaMemset(d, 0, n * sizeof(gpt_bf16)));
    return track_dev(d);
}
static float *dev_f32(size_t n) {
    void *d = NULL;
    CU_CHECK(cudaMalloc(&d, n * sizeof(float)));
    CU_CHECK(cudaMemset(d, 0, n * sizeof(float)));
    return track_dev(d);
}

static int setup(void **state) {
    (void)state;
    n_host = n_dev = 0;
    return 0;
}
static int teardown(void **state) {
    (void)state;
    while (n_host > 0) free(host_allocs[--n_host]);
    while (n_dev > 0) cudaFree(dev_allocs[--n_dev]);
    return 0;
}

/* ---- inputs ---- */
/* bf16-exact values offset + uniform [-scale, scale). */
static float *rand_host(size_t n, float scale, float offset, unsigned *seed) {
    float *x = hbuf(n);
    cu_fill(x, n, scale, seed);
    for (size_t i = 0; i < n; i++) x[i] = gpt_bf16_to_float(gpt_bf16_from_float(x[i] + offset));
    return x;
}
static int irand(unsigned *seed, int n) {
    *seed = *seed * 1664525u + 1013904223u;
    return (int)((*seed >> 8) % (unsigned)n);
}
static float *copy_host(const float *x, size_t n) { return memcpy(hbuf(n), x, n * sizeof(float)); }

/* ---- results ---- */
static float *download(const gpt_bf16 *d, size_t n) {
    float *x = hbuf(n);
    cu_download_bf16(x, d, n);
    return x;
}
static float *download_f32(const float *d, size_t n) {
    float *x = hbuf(n);
    cu_download(x, d, n * sizeof(float));
    return x;
}
static void ok(gpt_status st) {
    if (st != GPT_OK) print_error("unexpected error: %s\n", err);
    assert_int_equal(st, GPT_OK);
}
static void expect_close(const char *what, const float *got, const float *want, size_t n,
                         double tol) {
    double e = cu_rel_err(what, got, want, n, tol);
    print_message("    %-36s rel err %.2e (tol %.0e)\n", what, e, tol);
    assert_true(e <= tol); /* also fails on NaN */
}
/* got must be want rounded to bf16, element for element. */
static void expect_rounded(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float r = gpt_bf16_to_float(gpt_bf16_from_float(want[i]));
        if (memcmp(&got[i], &r, sizeof r) != 0) {
            print_error("%s: element %zu is %g, want bf16(%g) = %g\n", what, i, got[i], want[i], r);
            fail();
        }
    }
    print_message("    %-36s exact\n", what);
}
/* n bytes of two device buffers, bitwise. */
static void expect_same_bits(const char *what, const void *d1, const void *d2, size_t bytes) {
    void *h1 = hbuf(bytes / sizeof(float) + 1), *h2 = hbuf(bytes / sizeof(float) + 1);
    cu_download(h1, d1, bytes);
    cu_download(h2, d2, bytes);
    if (memcmp(h1, h2, bytes) != 0) {
        print_error("%s: not bitwise identical\n", what);
        fail();
    }
    print_message("    %-36s bitwise identical\n", what);
}

/* ================= encoder ================= */
static void test_encoder_forward(void **state) {
    const shape *s = *state;
    const int B = s->B, T = s->T, C = s->C, N = B * T, V = ENC_VOCAB;
    unsigned seed = 11;
    int *tok = (int *)hbuf((size_t)N);
    for (int i = 0; i < N; i++) tok[i] = irand(&seed, V);
    tok[N - 1] = V - 1; /* the table's last row */
    float *wte = rand_host((size_t)V * C, 1.0f, 0.0f, &seed);
    float *wpe = rand_host((size_t)T * C, 1.0f, 0.0f, &seed);
    gpt_bf16 *d_out = dev_zeros((size_t)N * C);
    ok(gpt_cu_encoder_forward(&ctx, d_out, dev_copy(tok, N * sizeof(int)),
                              dev_bf16_of(wte, (size_t)V * C), dev_bf16_of(wpe, (size_t)T * C),
                              B, T, C, err));
    float *want = hbuf((size_t)N * C);
    gpt_encoder_forward(want, tok, wte, wpe, B, T, C);
    float *got = download(d_out, (size_t)N * C);
    expect_close("encoder_forward out", got, want, (size_t)N * C, FWD_TOL);
    expect_rounded("encoder_forward out", got, want, (size_t)N * C);
}

/* The plan, checked against its contract, and its device copy. */
static gpt_cu_encoder_plan upload_plan(const int *tok, int N, int V) {
    gpt_cu_encoder_plan h = {0, (int *)hbuf(N + 1), (int *)hbuf(N + 1), (int *)hbuf(N + 1)};
    gpt_cu_encoder_plan_build(&h, tok, N, V, (int *)hbuf(V + 1));
    assert_true(h.n_uniq >= 1 && h.n_uniq <= V);
    assert_int_equal(h.start[0], 0);
    assert_int_equal(h.start[h.n_uniq], N);
    for (int k = 0; k < h.n_uniq; k++)
        for (int j = h.start[k]; j < h.start[k + 1]; j++) {
            assert_int_equal(tok[h.pos[j]], h.uniq[k]);
            if (j > h.start[k]) assert_true(h.pos[j] > h.pos[j - 1]);
        }
    gpt_cu_encoder_plan d = {h.n_uniq, dev_copy(h.uniq, (N + 1) * sizeof(int)),
                             dev_copy(h.start, (N + 1) * sizeof(int)),
                             dev_copy(h.pos, (N + 1) * sizeof(int))};
    return d;
}

static void test_encoder_backward(void **state) {
    const shape *s = *state;
    const int B = s->B, T = s->T, C = s->C, N = B * T, V = REP_VOCAB;
    const size_t nte = (size_t)V * C, npe = (size_t)T * C, nout = (size_t)N * C;
    unsigned seed = 22;
    int *tok = (int *)hbuf((size_t)N);
    for (int i = 0; i < N; i++) tok[i] = irand(&seed, V);
    gpt_cu_encoder_plan plan = upload_plan(tok, N, V);
    float *dout = rand_host(nout, 1.0f, 0.0f, &seed);
    gpt_bf16 *d_dout = dev_bf16_of(dout, nout);

    /* into zeros; then twice into zeros must be twice once */
    gpt_bf16 *d_te = dev_zeros(nte), *d_pe = dev_zeros(npe);
    ok(gpt_cu_encoder_backward(&ctx, d_te, d_pe, d_dout, &plan, B, T, C, err));
    float *once_te = download(d_te, nte), *once_pe = download(d_pe, npe);
    float *want_te = hbuf(nte), *want_pe = hbuf(npe);
    gpt_encoder_backward(want_te, want_pe, dout, tok, B, T, C);
    expect_close("encoder_backward dwte (zeros)", once_te, want_te, nte, GRAD_TOL);
    expect_close("encoder_backward dwpe (zeros)", once_pe, want_pe, npe, GRAD_TOL);
    ok(gpt_cu_encoder_backward(&ctx, d_te, d_pe, d_dout, &plan, B, T, C, err));
    float *twice_te = download(d_te, nte), *twice_pe = download(d_pe, npe);
    for (size_t i = 0; i < nte; i++) once_te[i] *= 2.0f;
    for (size_t i = 0; i < npe; i++) once_pe[i] *= 2.0f;
    expect_close("encoder_backward dwte twice = 2x once", twice_te, once_te, nte, FWD_TOL);
    expect_close("encoder_backward dwpe twice = 2x once", twice_pe, once_pe, npe, FWD_TOL);

    /* into pre-filled gradients */
    float *te0 = rand_host(nte, 8.0f, 0.0f, &seed), *pe0 = rand_host(npe, 2.0f, 0.0f, &seed);
    gpt_bf16 *d_te0 = dev_bf16_of(te0, nte), *d_pe0 = dev_bf16_of(pe0, npe);
    ok(gpt_cu_encoder_backward(&ctx, d_te0, d_pe0, d_dout, &plan, B, T, C, err));
    want_te = copy_host(te0, nte);
    want_pe = copy_host(pe0, npe);
    gpt_encoder_backward(want_te, want_pe, dout, tok, B, T, C);
    expect_close("encoder_backward dwte (adds)", download(d_te0, nte), want_te, nte, GRAD_TOL);
    expect_close("encoder_backward dwpe (adds)", download(d_pe0, npe), want_pe, npe, GRAD_TOL);
}

/* ================= LayerNorm and residual ================= */
typedef struct {
    int N, C;
    float *inp, *w, *b; /* host, bf16-exact; inp off-centre so the mean matters */
    gpt_bf16 *d_inp, *d_w, *d_b;
} ln_case;

static ln_case ln_inputs(const shape *s, unsigned *seed) {
    ln_case l = {s->B * s->T, s->C, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t n = (size_t)l.N * l.C;
    l.inp = rand_host(n, 1.0f, 1.5f, seed);
    l.w = rand_host((size_t)l.C, 0.5f, 1.0f, seed);
    l.b = rand_host((size_t)l.C, 0.5f, 0.0f, seed);
    l.d_inp = dev_bf16_of(l.inp, n);
    l.d_w = dev_bf16_of(l.w, (size_t)l.C);
    l.d_b = dev_bf16_of(l.b, (size_t)l.C);
    return l;
}

/* A context whose scratch fits the shape (C = 8192 needs more than ctx's). */
static gpt_cu_ctx *ctx_for(int C, gpt_cu_ctx *wide) {
    if (C <= MAX_C) return &ctx;
    ok(gpt_cu_ctx_create(wide, NULL, gpt_cu_scratch_floats(C), err));
    return wide;
}

static void test_layernorm_forward(void **state) {
    unsigned seed = 33;
    ln_case l = ln_inputs(*state, &seed);
    const size_t n = (size_t)l.N * l.C;
    gpt_bf16 *d_out = dev_zeros(n);
    float *d_mean = dev_f32((size_t)l.N), *d_rstd = dev_f32((size_t)l.N);
    ok(gpt_cu_layernorm_forward(&ctx, d_out, d_mean, d_rstd, l.d_inp, l.d_w, l.d_b, l.N, l.C,
                                err));
    float *out = hbuf(n), *mean = hbuf((size_t)l.N), *rstd = hbuf((size_t)l.N);
    gpt_layernorm_forward(out, mean, rstd, l.inp, l.w, l.b, l.N, l.C);
    expect_close("layernorm_forward out", download(d_out, n), out, n, FWD_TOL);
    expect_close("layernorm_forward mean", download_f32(d_mean, (size_t)l.N), mean, (size_t)l.N,
                 STAT_TOL);
    expect_close("layernorm_forward rstd", download_f32(d_rstd, (size_t)l.N), rstd, (size_t)l.N,
                 STAT_TOL);
}

static void test_residual_layernorm(void **state) {
    unsigned seed = 44;
    ln_case l = ln_inputs(*state, &seed); /* inp serves as the addend a */
    const int N = l.N, C = l.C;
    const size_t n = (size_t)N * C;
    float *b = rand_host(n, 1.0f, 0.0f, &seed);
    gpt_bf16 *d_addend = dev_bf16_of(b, n);

    /* unfused: residual_forward, then layernorm_forward */
    gpt_bf16 *r1 = dev_zeros(n), *o1 = dev_zeros(n);
    float *m1 = dev_f32((size_t)N), *s1 = dev_f32((size_t)N);
    ok(gpt_cu_residual_forward(&ctx, r1, l.d_inp, d_addend, n, err));
    ok(gpt_cu_layernorm_forward(&ctx, o1, m1, s1, r1, l.d_w, l.d_b, N, C, err));
    /* fused */
    gpt_bf16 *r2 = dev_zeros(n), *o2 = dev_zeros(n);
    float *m2 = dev_f32((size_t)N), *s2 = dev_f32((size_t)N);
    ok(gpt_cu_residual_layernorm_forward(&ctx, r2, o2, m2, s2, l.d_inp, d_addend, l.d_w, l.d_b,
                                         N, C, err));
    expect_same_bits("fused resid", r1, r2, n * sizeof(gpt_bf16));
    expect_same_bits("fused out", o1, o2, n * sizeof(gpt_bf16));
    expect_same_bits("fused mean", m1, m2, N * sizeof(float));
    expect_same_bits("fused rstd", s1, s2, N * sizeof(float));

    /* and the pair against the CPU twin */
    float *resid = hbuf(n), *out = hbuf(n), *mean = hbuf((size_t)N), *rstd = hbuf((size_t)N);
    gpt_residual_forward(resid, l.inp, b, (int)n);
    float *got_resid = download(r2, n);
    expect_rounded("residual_forward", got_resid, resid, n);
    gpt_layernorm_forward(out, mean, rstd, got_resid, l.w, l.b, N, C);
    expect_close("fused out", download(o2, n), out, n, FWD_TOL);
    expect_close("fused mean", download_f32(m2, (size_t)N), mean, (size_t)N, STAT_TOL);
    expect_close("fused rstd", download_f32(s2, (size_t)N), rstd, (size_t)N, STAT_TOL);
}

/* Lengths that leave a tail after the groups of 8, and in place (out = a). */
static void test_residual_tail(void **state) {
    (void)state;
    static const size_t lens[] = {3, 8, 8005};
    unsigned seed = 55;
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
        size_t n = lens[k];
        float *a = rand_host(n, 2.0f, 0.0f, &seed), *b = rand_host(n, 2.0f, 0.0f, &seed);
        float *want = hbuf(n);
        gpt_residual_forward(want, a, b, (int)n);
        gpt_bf16 *d_a = dev_bf16_of(a, n), *d_b = dev_bf16_of(b, n), *d_out = dev_zeros(n);
        ok(gpt_cu_residual_forward(&ctx, d_out, d_a, d_b, n, err));
        expect_rounded("residual_forward", download(d_out, n), want, n);
        ok(gpt_cu_residual_forward(&ctx, d_a, d_a, d_b, n, err));
        expect_rounded("residual_forward in place", download(d_a, n), want, n);
    }
}

typedef struct {
    ln_case l;
    float *dout, *mean, *rstd; /* host; mean and rstd from the CPU forward */
    gpt_bf16 *d_dout;
    float *d_mean, *d_rstd;
} lnb_case;

/* Both sides get the same statistics, so the backward is compared alone. */
static lnb_case lnb_inputs(const shape *s, unsigned *seed) {
    lnb_case c;
    c.l = ln_inputs(s, seed);
    const int N = c.l.N, C = c.l.C;
    const size_t n = (size_t)N * C;
    c.dout = rand_host(n, 1.0f, 0.0f, seed);
    c.mean = hbuf((size_t)N);
    c.rstd = hbuf((size_t)N);
    gpt_layernorm_forward(hbuf(n), c.mean, c.rstd, c.l.inp, c.l.w, c.l.b, N, C);
    c.d_dout = dev_bf16_of(c.dout, n);
    c.d_mean = dev_copy(c.mean, N * sizeof(float));
    c.d_rstd = dev_copy(c.rstd, N * sizeof(float));
    return c;
}

/* Backward from gradients holding dinp0, dw0, db0, GPU against CPU. */
static void lnb_compare(gpt_cu_ctx *cx, const lnb_case *c, const char *what, const float *dinp0,
                        const float *dw0, const float *db0) {
    const int N = c->l.N, C = c->l.C;
    const size_t n = (size_t)N * C;
    gpt_bf16 *d_dinp = dev_bf16_of(dinp0, n), *d_dw = dev_bf16_of(dw0, (size_t)C),
             *d_db = dev_bf16_of(db0, (size_t)C);
    ok(gpt_cu_layernorm_backward(cx, d_dinp, d_dw, d_db, c->d_dout, c->l.d_inp, c->l.d_w,
                                 c->d_mean, c->d_rstd, N, C, err));
    float *dinp = copy_host(dinp0, n), *dw = copy_host(dw0, (size_t)C),
          *db = copy_host(db0, (size_t)C);
    gpt_layernorm_backward(dinp, dw, db, c->dout, c->l.inp, c->l.w, c->mean, c->rstd, N, C);
    char label[64];
    snprintf(label, sizeof label, "layernorm_backward dinp (%s)", what);
    expect_close(label, download(d_dinp, n), dinp, n, GRAD_TOL);
    snprintf(label, sizeof label, "layernorm_backward dw (%s)", what);
    expect_close(label, download(d_dw, (size_t)C), dw, (size_t)C, GRAD_TOL);
    snprintf(label, sizeof label, "layernorm_backward db (%s)", what);
    expect_close(label, download(d_db, (size_t)C), db, (size_t)C, GRAD_TOL);
}

static void test_layernorm_backward(void **state) {
    const shape *s = *state;
    unsigned seed = 66;
    gpt_cu_ctx wide;
    gpt_cu_ctx *cx = ctx_for(s->C, &wide);
    lnb_case c = lnb_inputs(s, &seed);
    const size_t n = (size_t)c.l.N * c.l.C, C = (size_t)c.l.C;
    lnb_compare(cx, &c, "zeros", hbuf(n), hbuf(C), hbuf(C));
    /* pre-filled at about the gradients' own scale, so a missing add shows */
    const float gscale = sqrtf((float)c.l.N);
    lnb_compare(cx, &c, "adds", rand_host(n, 1.0f, 0.0f, &seed), rand_host(C, gscale, 0.0f, &seed),
                rand_host(C, gscale, 0.0f, &seed));
    if (cx != &ctx) gpt_cu_ctx_free(cx);
}

static void test_layernorm_backward_deterministic(void **state) {
    const shape *s = *state;
    unsigned seed = 77;
    gpt_cu_ctx wide;
    gpt_cu_ctx *cx = ctx_for(s->C, &wide);
    lnb_case c = lnb_inputs(s, &seed);
    const int N = c.l.N, C = c.l.C;
    const size_t n = (size_t)N * C;
    float *dinp0 = rand_host(n, 1.0f, 0.0f, &seed), *dw0 = rand_host((size_t)C, 4.0f, 0.0f, &seed),
          *db0 = rand_host((size_t)C, 4.0f, 0.0f, &seed);
    gpt_bf16 *dinp[2], *dw[2], *db[2];
    for (int k = 0; k < 2; k++) {
        dinp[k] = dev_bf16_of(dinp0, n);
        dw[k] = dev_bf16_of(dw0, (size_t)C);
        db[k] = dev_bf16_of(db0, (size_t)C);
        ok(gpt_cu_layernorm_backward(cx, dinp[k], dw[k], db[k], c.d_dout, c.l.d_inp, c.l.d_w,
                                     c.d_mean, c.d_rstd, N, C, err));
    }
    expect_same_bits("layernorm_backward dw, twice", dw[0], dw[1], C * sizeof(gpt_bf16));
    expect_same_bits("layernorm_backward db, twice", db[0], db[1], C * sizeof(gpt_bf16));
    expect_same_bits("layernorm_backward dinp, twice", dinp[0], dinp[1], n * sizeof(gpt_bf16));
    if (cx != &ctx) gpt_cu_ctx_free(cx);
}

/* ================= unsupported shapes ================= */
/* st must be GPT_ERR_CONFIG with a message naming `value`, and nothing launched. */
static void expect_config(const char *call, gpt_status st, const char *value) {
    if (st != GPT_ERR_CONFIG || !strstr(err, value))
        print_error("%s: status %d, message \"%s\" (want GPT_ERR_CONFIG naming %s)\n", call,
                    (int)st, err, value);
    assert_int_equal(st, GPT_ERR_CONFIG);
    assert_non_null(strstr(err, value));
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    print_message("    %-36s %s\n", call, err);
    err[0] = '\0';
}

static void test_bad_config(void **state) {
    (void)state;
    /* big enough for any call below, had one been launched */
    gpt_bf16 *p = dev_zeros(1 << 20);
    float *f = dev_f32(1 << 16);
    int *tok = dev_copy((int[4]){0, 0, 0, 0}, 4 * sizeof(int));
    gpt_cu_encoder_plan plan = {1, tok, tok, tok}, empty = {0, tok, tok, tok};
    for (int k = 0; k < 2; k++) {
        const int C = k ? 8200 : 12;
        const char *v = k ? "8200" : "12";
        expect_config("encoder_forward",
                      gpt_cu_encoder_forward(&ctx, p, tok, p, p, 2, 2, C, err), v);
        expect_config("encoder_backward",
                      gpt_cu_encoder_backward(&ctx, p, p, p, &plan, 2, 2, C, err), v);
        expect_config("layernorm_forward",
                      gpt_cu_layernorm_forward(&ctx, p, f, f, p, p, p, 4, C, err), v);
        expect_config("residual_layernorm_forward",
                      gpt_cu_residual_layernorm_forward(&ctx, p, p, f, f, p, p, p, p, 4, C, err),
                      v);
        expect_config("layernorm_backward",
                      gpt_cu_layernorm_backward(&ctx, p, p, p, p, p, p, f, f, 4, C, err), v);
    }
    expect_config("layernorm_forward N = 0",
                  gpt_cu_layernorm_forward(&ctx, p, f, f, p, p, p, 0, 64, err), "N = 0");
    expect_config("encoder_forward T = 0",
                  gpt_cu_encoder_forward(&ctx, p, tok, p, p, 2, 0, 64, err), "T = 0");
    expect_config("encoder_backward empty plan",
                  gpt_cu_encoder_backward(&ctx, p, p, p, &empty, 2, 2, 64, err), "n_uniq = 0");
    expect_config("layernorm_forward misaligned",
                  gpt_cu_layernorm_forward(&ctx, p + 1, f, f, p, p, p, 4, 64, err), "out (");
    expect_config("residual_forward misaligned",
                  gpt_cu_residual_forward(&ctx, p, p, p + 4, 64, err), "b (");
    /* a scratch too small for the partial sums */
    gpt_cu_ctx small;
    ok(gpt_cu_ctx_create(&small, NULL, 16, err));
    expect_config("layernorm_backward small scratch",
                  gpt_cu_layernorm_backward(&small, p, p, p, p, p, p, f, f, 4, 64, err),
                  "scratch");
    gpt_cu_ctx_free(&small);
}

#define ON(f, s) {#f "_" #s, f, setup, teardown, &s}
#define SHAPES(f) \
    ON(f, ODD_64), ON(f, ODD_768), ON(f, GPT2_768), ON(f, FOLD_1000), ON(f, WIDE_8192)

int main(int argc, char **argv) {
    (void)argc;
    cu_test_require_gpu(argv[0]);
    if (gpt_cu_ctx_create(&ctx, NULL, gpt_cu_scratch_floats(MAX_C), err) != GPT_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        SHAPES(test_encoder_forward),
        SHAPES(test_encoder_backward),
        SHAPES(test_layernorm_forward),
        SHAPES(test_residual_layernorm),
        SHAPES(test_layernorm_backward),
        ON(test_layernorm_backward_deterministic, GPT2_768),
        ON(test_layernorm_backward_deterministic, FOLD_1000),
        {"test_residual_tail", test_residual_tail, setup, teardown, NULL},
        {"test_bad_config", test_bad_config, setup, teardown, NULL},
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    gpt_cu_ctx_free(&ctx);
    return failed;
}
