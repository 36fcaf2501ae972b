/* cu_test.h: what the CUDA kernel tests share: GPU detection (a test program
 * with no GPU exits 77, which ctest reports as Skipped, never Passed),
 * moving data between host floats and device bf16, seeded random inputs, and
 * the comparison against the CPU twin used everywhere: the relative error
 * by norm, |gpu - cpu| / |cpu|, plus the worst element for the message. */
#ifndef CU_TEST_H
#define CU_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>
#include "kernels_cuda.h"

#define CU_SKIP 77

/* 1 when a CUDA device can be used (a missing driver counts as none). */
static inline int cu_test_gpu(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n > 0;
}

/* Exits 77 with a line saying why when there is no GPU. */
static inline void cu_test_require_gpu(const char *prog) {
    if (!cu_test_gpu()) {
        printf("%s: skipped: no GPU\n", prog);
        exit(CU_SKIP);
    }
}

static inline void cu_die(const char *what, cudaError_t e) {
    fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    exit(1);
}
#define CU_CHECK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) cu_die(#call, e_); } while (0)

/* Seeded uniform values in [-scale, scale), rounded to bf16 so the CPU
 * reference sees exactly the GPU's inputs. */
static inline void cu_fill(float *x, size_t n, float scale, unsigned *seed) {
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        float u = (float)(*seed >> 8) / 16777216.0f;
        x[i] = gpt_bf16_to_float(gpt_bf16_from_float((2.0f * u - 1.0f) * scale));
    }
}

static inline float *cu_host(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "out of host memory\n"); exit(1); }
    return p;
}

/* Device bf16 copy of n host floats (rounded to nearest even). */
static inline gpt_bf16 *cu_upload_bf16(const float *x, size_t n) {
    gpt_bf16 *h = malloc((n ? n : 1) * sizeof *h), *d = NULL;
    for (size_t i = 0; i < n; i++) h[i] = gpt_bf16_from_float(x[i]);
    CU_CHECK(cudaMalloc((void **)&d, (n ? n : 1) * sizeof *d));
    CU_CHECK(cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice));
    /* From pageable memory the copy may still be in flight when cudaMemcpy
     * returns, and the kernels' non-blocking streams do not wait for it. */
    CU_CHECK(cudaDeviceSynchronize());
    free(h);
    return d;
}

static inline void *cu_upload(const void *x, size_t bytes) {
    void *d = NULL;
    CU_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    CU_CHECK(cudaMemcpy(d, x, bytes, cudaMemcpyHostToDevice));
    CU_CHECK(cudaDeviceSynchronize()); /* as in cu_upload_bf16 */
    return d;
}

/* n device bf16 values into host floats (waits for the device). */
static inline void cu_download_bf16(float *x, const gpt_bf16 *d, size_t n) {
    gpt_bf16 *h = malloc((n ? n : 1) * sizeof *h);
    CU_CHECK(cudaDeviceSynchronize());
    CU_CHECK(cudaMemcpy(h, d, n * sizeof *h, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) x[i] = gpt_bf16_to_float(h[i]);
    free(h);
}

static inline void cu_download(void *x, const void *d, size_t bytes) {
    CU_CHECK(cudaDeviceSynchronize());
    CU_CHECK(cudaMemcpy(x, d, bytes, cudaMemcpyDeviceToHost));
}

/* |got - want| / |want| over n values (norms); prints the worst element
 * under the label when it exceeds tol, and returns the error. */
static inline double cu_rel_err(const char *label, const float *got, const float *want,
                                size_t n, double tol) {
    double num = 0, den = 0, worst = -1;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
        if (fabs(d) > worst || isnan(d)) { worst = isnan(d) ? INFINITY : fabs(d); at = i; }
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (!(rel <= tol))
        fprintf(stderr, "%s: relative error %.3g > %.3g; worst at %zu: got %g, want %g\n",
                label, rel, tol, at, n ? got[at] : 0.0f, n ? want[at] : 0.0f);
    return rel;
}

#endif
