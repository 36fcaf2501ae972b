/* llmc.c: `gptrain import` of llm.c model files (gpt2_124M.bin and the
 * like), so a run can continue from weights llm.c trained (contract in
 * checkpoint.h). The file is a header of 256 int32 (magic 20240326, version
 * 3 for float32 or 5 for bfloat16, max_seq, vocab, layers, heads, channels,
 * padded vocab) and then every parameter, grouped by kind across layers:
 * wte (padded vocab x C), wpe, then all layers' ln_1 weights, all ln_1
 * biases, and so on, and ln_f last. Weights are (out, in) as here, so only
 * the grouping differs from our per-layer table. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ckpt_internal.h"

#define LLMC_MAGIC 20240326

/* Reads n values of the file's dtype as floats into dst (NULL skips). */
static int read_floats(FILE *f, int bf16, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v;
        if (bf16) {
            uint16_t h;
            if (fread(&h, 2, 1, f) != 1) return 0;
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&v, &bits, 4);
        } else if (fread(&v, 4, 1, f) != 1) {
            return 0;
        }
        if (dst) dst[i] = v;
    }
    return 1;
}

static ckpt_status read_header(FILE *f, const char *path, int *bf16, int *vp,
                               gpt_config *cfg, ckpt_error_t err) {
    int32_t h[256];
    if (fread(h, sizeof h, 1, f) != 1 || h[0] != LLMC_MAGIC) {
        snprintf(err, CKPT_ERRLEN, "%s: not an llm.c model file (magic %d, want %d)", path,
                 h[0], LLMC_MAGIC);
        return CKPT_ERR_FORMAT;
    }
    if (h[1] != 3 && h[1] != 5) {
        snprintf(err, CKPT_ERRLEN, "%s: llm.c model version %d (3 float32 and 5 bfloat16 are "
                 "read)", path, h[1]);
        return CKPT_ERR_FORMAT;
    }
    *bf16 = h[1] == 5;
    *vp = h[7];
    *cfg = (gpt_config){h[4], h[5], h[6], h[2], h[3], 0};
    gpt_error_t gerr;
    if (gpt_config_finish(cfg, gerr) || *vp < cfg->vocab) {
        snprintf(err, CKPT_ERRLEN, "%s: bad llm.c header: %s", path,
                 *vp < cfg->vocab ? "padded vocab below the vocab" : gerr);
        return CKPT_ERR_FORMAT;
    }
    return CKPT_OK;
}

/* llm.c's order: each layer tensor kind for all layers, then the next. */
static int read_params(FILE *f, int bf16, int vp, gpt_model *m) {
    const gpt_config *c = &m->cfg;
    const gpt_tensor *t = m->table.t;
    size_t C = (size_t)c->n_embd;
    if (!read_floats(f, bf16, m->params + t[GPT_T_WTE].offset, (size_t)c->vocab * C) ||
        !read_floats(f, bf16, NULL, (size_t)(vp - c->vocab) * C) ||
        !read_floats(f, bf16, m->params + t[GPT_T_WPE].offset, (size_t)c->max_seq * C))
        return 0;
    for (int k = 0; k < GPT_LAYER_TENSORS; k++)
        for (int l = 0; l < c->n_layer; l++) {
            const gpt_tensor *x = &t[GPT_T_LAYER(l, k)];
            if (!read_floats(f, bf16, m->params + x->offset, x->numel)) return 0;
        }
    return read_floats(f, bf16, m->params + t[GPT_T_LNF_W(c)].offset, C) &&
           read_floats(f, bf16, m->params + t[GPT_T_LNF_B(c)].offset, C);
}

ckpt_status ckpt_import_llmc(const char *path, gpt_model *m, ckpt_error_t err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, CKPT_ERRLEN, "%s: cannot read", path);
        return CKPT_ERR_IO;
    }
    int bf16, vp;
    gpt_config cfg;
    ckpt_status st = read_header(f, path, &bf16, &vp, &cfg, err);
    gpt_error_t gerr;
    if (!st && gpt_model_create(m, &cfg, 1, 1, gerr)) {
        snprintf(err, CKPT_ERRLEN, "%s: %s", path, gerr);
        st = CKPT_ERR_FORMAT;
    } else if (!st) {
        int extra = EOF;
        if (!read_params(f, bf16, vp, m) || (extra = fgetc(f)) != EOF) {
            snprintf(err, CKPT_ERRLEN, "%s: %s", path, extra != EOF ? "longer than its header "
                     "says (trailing data)" : "shorter than its header says (truncated)");
            gpt_model_free(m);
            st = CKPT_ERR_FORMAT;
        }
    }
    fclose(f);
    return st;
}

ckpt_status ckpt_export_llmc(const gpt_model *m, const char *path, ckpt_error_t err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const gpt_config *c = &m->cfg;
    const gpt_tensor *t = m->table.t;
    int32_t h[256] = {LLMC_MAGIC, 3, c->max_seq, c->vocab, c->n_layer, c->n_head, c->n_embd,
                      c->padded_vocab};
    FILE *f = fopen(tmp, "wb");
    /* wte with its padded rows (zero), as llm.c keeps them. */
    int ok = f && fwrite(h, sizeof h, 1, f) == 1;
    for (int i = GPT_T_WTE; i <= GPT_T_WPE && ok; i++)
        ok = fwrite(m->params + t[i].offset, sizeof(float), t[i].numel, f) == t[i].numel;
    for (int k = 0; k < GPT_LAYER_TENSORS && ok; k++)
        for (int l = 0; l < c->n_layer && ok; l++) {
            const gpt_tensor *x = &t[GPT_T_LAYER(l, k)];
            ok = fwrite(m->params + x->offset, sizeof(float), x->numel, f) == x->numel;
        }
    ok = ok && fwrite(m->params + t[GPT_T_LNF_W(c)].offset, sizeof(float), (size_t)c->n_embd,
                      f) == (size_t)c->n_embd &&
         fwrite(m->params + t[GPT_T_LNF_B(c)].offset, sizeof(float), (size_t)c->n_embd, f) ==
             (size_t)c->n_embd;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) {
        remove(tmp);
        snprintf(err, CKPT_ERRLEN, "%s: cannot write", tmp);
        return CKPT_ERR_IO;
    }
    return ckpt_commit(tmp, path, err);
}
