/* bench_step.c: times full GPT-2 training steps (forward, backward, clip,
 * AdamW) on random tokens and prints one JSON line: median and min ms/step,
 * tokens/s and achieved GFLOP/s (model FLOPs, see gpt_flops_per_step).
 * usage: bench_step PRESET B T STEPS [layers heads channels vocab] */
#include <stdio.h>
#include <stdlib.h>
#include "bench_util.h"
#include "gpt.h"

int main(int argc, char **argv) {
    if (argc != 5 && argc != 9) {
        fprintf(stderr, "usage: bench_step PRESET B T STEPS [layers heads channels vocab]\n");
        return 2;
    }
    gpt_config cfg;
    gpt_error_t err;
    if (gpt_config_preset(argv[1], &cfg, err)) {
        fprintf(stderr, "bench_step: %s\n", err);
        return 2;
    }
    int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[4]);
    if (argc == 9) {
        cfg.n_layer = atoi(argv[5]);
        cfg.n_head = atoi(argv[6]);
        cfg.n_embd = atoi(argv[7]);
        cfg.vocab = atoi(argv[8]);
    }
    gpt_model m;
    if (steps < 1 || gpt_model_create(&m, &cfg, B, T, err)) {
        fprintf(stderr, "bench_step: %s\n", steps < 1 ? "STEPS must be >= 1" : err);
        return 2;
    }
    gpt_init_weights(&m, 1337);
    int *tok = malloc(sizeof(int) * (B * T + 1));
    gpt_rng rng;
    gpt_rng_seed(&rng, 42);
    for (int i = 0; i <= B * T; i++) tok[i] = (int)(gpt_rng_u64(&rng) % (uint64_t)m.cfg.vocab);
    gpt_adamw opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    double *ms = malloc(sizeof(double) * steps);
    for (int s = -1; s < steps; s++) { /* step -1 warms caches and thread pools */
        double t0 = bench_now_s();
        gpt_zero_grad(&m);
        gpt_forward(&m, tok, tok + 1, B, T, err);
        gpt_backward(&m, 1.0f, err);
        gpt_update(&m, &opt, gpt_grad_norm(&m));
        if (s >= 0) ms[s] = (bench_now_s() - t0) * 1e3;
    }
    double med = bench_median(ms, steps);
    double flops = gpt_flops_per_step(&m.cfg, T, (long)B * T);
    printf("{\"impl\":\"gptrain\",\"ms_median\":%.2f,\"ms_min\":%.2f,\"tok_s\":%.1f,"
           "\"gflops\":%.2f,\"loss\":%.4f,\"params\":%zu}\n", med, ms[0], B * T / (med / 1e3),
           flops / (med / 1e3) / 1e9, m.mean_loss, gpt_num_params(&m.cfg));
    free(ms);
    free(tok);
    gpt_model_free(&m);
    return 0;
}
