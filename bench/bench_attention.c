/* bench_attention.c: times our causal flash attention (model/cuda/attention.cu)
 * and cuDNN's fused attention as the model calls it (attention_cudnn.c,
 * --attention cudnn) alone, forward and forward + backward, on random bf16
 * inputs, and prints one JSON line for each ("gptrain", "gptrain-cudnn").
 * bench/gpu/torch_attention.py times PyTorch's SDPA back ends (cuDNN's and
 * FlashAttention's) on the same shapes, so `run.sh attention` puts them all
 * side by side.
 * usage: bench_attention B T NH HS ITERS
 * FLOPs follow the FlashAttention benchmarks' convention: forward 4 B NH T^2
 * HS / 2 (causal: half the score matrix), backward 2.5 times the forward. */
#include <stdio.h>
#include <stdlib.h>
#include "bench_util.h"
#include <cuda_runtime.h>
#include "kernels_cuda.h"

static int fail(const char *what) {
    fprintf(stderr, "bench_attention: %s\n", what);
    return 1;
}

/* n bf16 values uniform in [-1, 1) on the device. */
static gpt_bf16 *random_dev(size_t n, unsigned seed) {
    gpt_bf16 *h = malloc(n * sizeof *h), *d = NULL;
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = gpt_bf16_from_float((float)(seed >> 8) / 8388608.0f - 1.0f);
    }
    if (cudaMalloc((void **)&d, n * sizeof *d) != cudaSuccess ||
        cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice) != cudaSuccess)
        d = NULL;
    free(h);
    return d;
}

/* Median milliseconds of ITERS runs of forward (with_backward 0) or
 * forward + backward, after three warm-up runs. */
static int time_it(gpt_cu_ctx *x, gpt_cudnn_att *cu, int with_backward, int iters, int B,
                   int T, int NH, int HS, gpt_bf16 *const buf[4], float *lse, float *delta,
                   double *med) {
    int C = NH * HS;
    gpt_error_t err;
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    double *ms = malloc(sizeof(double) * (size_t)iters);
    for (int i = -3; ms && i < iters; i++) {
        cudaEventRecord(a, x->stream);
        gpt_status st = cu ? gpt_cudnn_attention_forward(cu, buf[1], lse, buf[0], B, T, C, NH, err)
                           : gpt_cu_attention_forward(x, buf[1], lse, buf[0], B, T, C, NH, err);
        if (!st && with_backward)
            st = cu ? gpt_cudnn_attention_backward(cu, buf[3], buf[2], buf[0], buf[1], lse, B, T,
                                                   C, NH, err)
                    : gpt_cu_attention_backward(x, buf[3], delta, buf[2], buf[0], buf[1], lse,
                                                B, T, C, NH, err);
        if (st) return fail(err);
        cudaEventRecord(b, x->stream);
        float t = 0;
        if (cudaEventSynchronize(b) != cudaSuccess) return fail("a kernel failed");
        cudaEventElapsedTime(&t, a, b);
        if (i >= 0) ms[i] = t;
    }
    if (!ms) return fail("out of memory");
    *med = bench_median(ms, iters);
    free(ms);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: bench_attention B T NH HS ITERS\n");
        return 2;
    }
    int B = atoi(argv[1]), T = atoi(argv[2]), NH = atoi(argv[3]), HS = atoi(argv[4]);
    int iters = atoi(argv[5]);
    if (B < 1 || T < 1 || NH < 1 || iters < 1 || (HS != 64 && HS != 128))
        return fail("B, T, NH, ITERS must be >= 1 and HS 64 or 128");
    if (cudaSetDevice(0) != cudaSuccess) return fail("no CUDA device");
    size_t BT = (size_t)B * T, C = (size_t)NH * HS;
    gpt_cu_ctx x;
    gpt_error_t err;
    if (gpt_cu_ctx_create(&x, NULL, gpt_cu_scratch_floats((int)C), err)) return fail(err);
    /* qkv, out, dout, dqkv */
    gpt_bf16 *buf[4] = {random_dev(BT * 3 * C, 1), random_dev(BT * C, 2), random_dev(BT * C, 3),
                        random_dev(BT * 3 * C, 4)};
    float *lse = NULL, *delta = NULL;
    if (!buf[0] || !buf[1] || !buf[2] || !buf[3] ||
        cudaMalloc((void **)&lse, BT * NH * sizeof(float)) != cudaSuccess ||
        cudaMalloc((void **)&delta, BT * NH * sizeof(float)) != cudaSuccess)
        return fail("out of device memory");
    /* The uploads ran on the legacy stream, which the context's does not wait for. */
    if (cudaDeviceSynchronize() != cudaSuccess) return fail("uploading the inputs");
    double flops = 4.0 * B * NH * (double)T * T * HS / 2.0;
    char name[256] = "";
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) snprintf(name, sizeof name, "%s", p.name);
    gpt_cudnn_att *cu = NULL;
    for (int impl = 0; impl < 2; impl++) {
        const char *id = impl ? "gptrain-cudnn" : "gptrain";
        double fwd = 0, both = 0;
        if (impl && gpt_cudnn_att_create(&cu, &x, err)) {
            printf("{\"impl\":\"%s\",\"B\":%d,\"T\":%d,\"NH\":%d,\"HS\":%d,\"error\":\"%s\"}\n",
                   id, B, T, NH, HS, "no cuDNN in this build");
            break;
        }
        if (time_it(&x, cu, 0, iters, B, T, NH, HS, buf, lse, delta, &fwd) ||
            time_it(&x, cu, 1, iters, B, T, NH, HS, buf, lse, delta, &both))
            return 1;
        printf("{\"impl\":\"%s\",\"device\":\"%s\",\"B\":%d,\"T\":%d,\"NH\":%d,\"HS\":%d,"
               "\"fwd_ms\":%.4f,\"fwd_bwd_ms\":%.4f,\"fwd_tflops\":%.1f,\"fwd_bwd_tflops\":%.1f}\n",
               id, name, B, T, NH, HS, fwd, both, flops / (fwd * 1e-3) / 1e12,
               3.5 * flops / (both * 1e-3) / 1e12);
        fflush(stdout);
    }
    gpt_cudnn_att_free(cu);
    for (int i = 0; i < 4; i++) cudaFree(buf[i]);
    cudaFree(lse);
    cudaFree(delta);
    gpt_cu_ctx_free(&x);
    return 0;
}
