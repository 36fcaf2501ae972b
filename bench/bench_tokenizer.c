/* bench_tokenizer.c: BPE tokenizer speed: training time for a vocabulary on
 * the given files, then encoding throughput in MB/s on one thread and on all
 * OpenMP threads (files split into ~1 MB pieces at newlines). Prints one
 * JSON line.   usage: bench_tokenizer VOCAB FILE...   (text files) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "data.h"

typedef struct {
    unsigned char *p;
    size_t len;
} text;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Splits every file into pieces of about 1 MB ending after a newline. */
static text *load(char **files, int n, int *count, size_t *bytes) {
    text *t = NULL;
    int cap = 0;
    *count = 0;
    *bytes = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        size_t len = (size_t)ftell(f), off = 0;
        fseek(f, 0, SEEK_SET);
        unsigned char *buf = malloc(len + 1);
        if (!buf || fread(buf, 1, len, f) != len) len = 0;
        fclose(f);
        while (off < len) {
            size_t end = off + (1 << 20) < len ? off + (1 << 20) : len;
            while (end < len && buf[end - 1] != '\n') end++;
            if (*count == cap) t = realloc(t, sizeof(*t) * (size_t)(cap = cap ? 2 * cap : 64));
            t[(*count)++] = (text){buf + off, end - off};
            off = end;
        }
        *bytes += len;
    }
    return t;
}

static double encode_all(const data_tokenizer *tok, const text *t, int n, int threads,
                         size_t *ntok) {
    size_t total = 0;
    double t0 = now_s();
    #pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        data_encoder *enc = data_encoder_new(tok);
        data_tokens out = {0};
        data_error_t err;
        #pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n; i++) {
            out.len = 0;
            if (data_encode(enc, t[i].p, t[i].len, &out, err) == DATA_OK) total += out.len;
        }
        data_tokens_free(&out);
        data_encoder_free(enc);
    }
    *ntok = total;
    return now_s() - t0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer VOCAB FILE...\n");
        return 2;
    }
    int vocab = atoi(argv[1]), n;
    size_t bytes;
    text *t = load(argv + 2, argc - 2, &n, &bytes);
    data_error_t err;
    double t0 = now_s();
    data_bpe_trainer *tr = data_bpe_trainer_new();
    for (int i = 0; i < n; i++) data_bpe_trainer_add(tr, t[i].p, t[i].len, err);
    double t_count = now_s() - t0;
    data_tokenizer *tok;
    if (data_bpe_trainer_finish(tr, vocab, &tok, err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err);
        return 1;
    }
    double t_train = now_s() - t0;
    data_bpe_trainer_free(tr);
    size_t ntok1, ntokn;
    double e1 = encode_all(tok, t, n, 1, &ntok1);
    int threads = omp_get_max_threads();
    double en = encode_all(tok, t, n, threads, &ntokn);
    double mb = bytes / 1048576.0;
    printf("{\"corpus_mb\":%.1f,\"vocab\":%d,\"train_s\":%.2f,\"count_s\":%.2f,"
           "\"tokens\":%zu,\"bytes_per_token\":%.2f,\"encode_mb_s_1thread\":%.2f,"
           "\"encode_mb_s_%dthreads\":%.2f}\n", mb, data_tok_vocab_size(tok), t_train, t_count,
           ntok1, bytes / (double)ntok1, mb / e1, threads, mb / en);
    data_tok_free(tok);
    return ntok1 == ntokn ? 0 : 1;
}
