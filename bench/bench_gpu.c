/* bench_gpu.c: times full GPT-2 training steps of the CUDA model (zero grad,
 * forward with the fused classifier, backward, norm, clip, AdamW) on random
 * tokens and prints one JSON line: device, median ms/step, tokens/s, model
 * TFLOP/s and MFU against the device table (model/cuda/devices.c; "null"
 * for an unknown GPU), and the device memory the model took.
 * usage: bench_gpu PRESET B T STEPS [--recompute] [--cudnn]
 * --cudnn trains with cuDNN's fused attention (--attention cudnn).
 * B = 0 picks the largest power of two whose estimated memory
 * (gpt_cuda_bytes) fits in 90% of the free device memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_util.h"
#include <cuda_runtime.h>
#include "gpt.h"
#include "gpt_cuda.h"

static int fail(const char *what) {
    fprintf(stderr, "bench_gpu: %s\n", what);
    return 1;
}

/* The largest power-of-two micro-batch (<= 512) that fits 90% of free memory. */
static int auto_batch(const gpt_config *cfg, gpt_cuda_opts o) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    int best = 0;
    for (o.B = 1; o.B <= 512; o.B *= 2)
        if (gpt_cuda_bytes(cfg, &o) <= free_b / 10 * 9) best = o.B;
    return best;
}

int main(int argc, char **argv) {
    gpt_cuda_opts o = {0};
    int bad = argc < 5;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--recompute")) o.recompute = 1;
        else if (!strcmp(argv[i], "--cudnn")) o.attention = GPT_CUDA_ATT_CUDNN;
        else bad = 1;
    }
    if (bad) {
        fprintf(stderr, "usage: bench_gpu PRESET B T STEPS [--recompute] [--cudnn]\n");
        return 2;
    }
    gpt_config cfg;
    gpt_error_t err;
    if (gpt_config_preset(argv[1], &cfg, err) || gpt_config_finish(&cfg, err)) return fail(err);
    o.B = atoi(argv[2]);
    o.T = atoi(argv[3]);
    int steps = atoi(argv[4]);
    if (steps < 1) return fail("STEPS must be >= 1");
    if (cudaSetDevice(0) != cudaSuccess) return fail("no CUDA device");
    if (o.B == 0 && (o.B = auto_batch(&cfg, o)) == 0) return fail("not even B=1 fits");
    /* Initial weights from the CPU initialiser (a 1x1 CPU model). */
    gpt_model host;
    if (gpt_model_create(&host, &cfg, 1, 1, err)) return fail(err);
    gpt_init_weights(&host, 1337);
    gpt_cuda *g;
    size_t free0 = 0, free1 = 0, total = 0;
    cudaMemGetInfo(&free0, &total);
    if (gpt_cuda_create(&g, &cfg, &o, err) || gpt_cuda_set_params(g, host.params, err))
        return fail(err);
    cudaMemGetInfo(&free1, &total);
    gpt_model_free(&host);
    int BT = o.B * o.T;
    int *tok = malloc(sizeof(int) * (BT + 1));
    gpt_rng rng;
    gpt_rng_seed(&rng, 42);
    for (int i = 0; i <= BT; i++) tok[i] = (int)(gpt_rng_u64(&rng) % (uint64_t)cfg.vocab);
    gpt_adamw opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    double *ms = malloc(sizeof(double) * steps);
    float loss = 0, norm = 0;
    for (int s = -3; s < steps; s++) { /* three warm-up steps pick the matmul algorithms */
        double t0 = bench_now_s();
        if (gpt_cuda_zero_grad(g, err) ||
            gpt_cuda_forward(g, tok, tok + 1, o.B, o.T, 1.0f, &loss, err) ||
            gpt_cuda_backward(g, err) || gpt_cuda_grad_norm(g, &norm, err) ||
            gpt_cuda_update(g, &opt, norm, err))
            return fail(err);
        cudaDeviceSynchronize();
        if (s >= 0) ms[s] = (bench_now_s() - t0) * 1e3;
    }
    double med = bench_median(ms, steps);
    double tflops = gpt_flops_per_step(&cfg, o.T, BT) / (med * 1e-3) / 1e12;
    char name[256];
    gpt_cuda_device_name(0, name, sizeof name);
    double peak = gpt_cuda_peak_tflops(name);
    char mfu[32] = "null";
    if (peak > 0) snprintf(mfu, sizeof mfu, "%.4f", tflops / peak);
    printf("{\"impl\":\"gptrain\",\"device\":\"%s\",\"model\":\"%s\",\"B\":%d,\"T\":%d,"
           "\"attention\":\"%s\",\"recompute\":%s,\"steps\":%d,\"ms_per_step\":%.3f,"
           "\"ms_min\":%.3f,"
           "\"tok_per_s\":%.0f,\"tflops\":%.1f,\"peak_tflops\":%.1f,\"mfu\":%s,"
           "\"device_gib\":%.2f,\"loss\":%.4f}\n",
           name, argv[1], o.B, o.T, o.attention ? "cudnn" : "gptrain",
           o.recompute ? "true" : "false", steps, med, ms[0],
           BT / (med * 1e-3), tflops, peak, mfu, (double)(free0 - free1) / (1 << 30), loss);
    gpt_cuda_free(g);
    free(tok);
    free(ms);
    return 0;
}
