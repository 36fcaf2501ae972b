/* logits_dump.c: loads a gptrain model or checkpoint file and writes the
 * logits of one sequence of token ids (the real vocabulary's columns,
 * float32, row-major (T, vocab)) to a file, for tests that compare them with
 * another implementation.   usage: logits_dump FILE.h5 OUT.bin ID... */
#include <stdio.h>
#include <stdlib.h>
#include "checkpoint.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: logits_dump FILE.h5 OUT.bin ID...\n");
        return 2;
    }
    int T = argc - 3;
    int *tok = malloc(sizeof(int) * (size_t)T);
    for (int i = 0; i < T; i++) tok[i] = atoi(argv[3 + i]);
    gpt_config cfg;
    gpt_model m;
    ckpt_error_t err;
    gpt_error_t gerr;
    if (ckpt_read_config(argv[1], &cfg, err) || gpt_model_create(&m, &cfg, 1, T, gerr) ||
        ckpt_load_model(argv[1], &m, err) || gpt_forward(&m, tok, NULL, 1, T, gerr)) {
        fprintf(stderr, "logits_dump: %s: cannot load or run\n", argv[1]);
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    for (int t = 0; t < T && f; t++)
        fwrite(m.logits + (size_t)t * cfg.padded_vocab, sizeof(float), (size_t)cfg.vocab, f);
    if (!f || fclose(f) != 0) return 1;
    gpt_model_free(&m);
    free(tok);
    return 0;
}
