/* safetensors.c: export to and import from Hugging Face's safetensors
 * format with GPT-2's tensor names and layout, so a model moves between
 * gptrain and the transformers library (contract in checkpoint.h).
 * safetensors is an 8-byte little-endian header length, a JSON header
 * mapping each tensor name to its dtype, shape and byte range, then the raw
 * little-endian data. GPT-2 in transformers keeps its linear weights as
 * Conv1D, (in, out), the transpose of our (out, in); everything else maps
 * one to one, and the LM head is tied to wte, as here. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ckpt_internal.h"

/* Our per-layer tensors in Hugging Face's names; 1 where HF transposes. */
static const int hf_transposed[GPT_LAYER_TENSORS] = {
    [GPT_QKV_W] = 1, [GPT_ATTPROJ_W] = 1, [GPT_FC_W] = 1, [GPT_FCPROJ_W] = 1};

/* HF's name of tensor i: wte.weight, wpe.weight, h.L.*, ln_f.* */
static void hf_name(const gpt_model *m, int i, char *out, size_t len) {
    const char *name = m->table.t[i].name;
    if (i == GPT_T_WTE || i == GPT_T_WPE) snprintf(out, len, "%s.weight", name);
    else snprintf(out, len, "%s", name);
}

int st_transposed(const gpt_model *m, int i) {
    if (i < GPT_T_LAYER(0, 0) || i >= GPT_T_LNF_W(&m->cfg)) return 0;
    return hf_transposed[(i - GPT_T_LAYER(0, 0)) % GPT_LAYER_TENSORS];
}

/* HF shape of tensor i: stored rows x cols, swapped where transposed. */
static void hf_shape(const gpt_model *m, int i, size_t *r, size_t *c) {
    const gpt_tensor *t = &m->table.t[i];
    size_t rows = (size_t)ckpt_stored_rows(m, i), cols = (size_t)t->shape[1];
    *r = st_transposed(m, i) ? cols : rows;
    *c = st_transposed(m, i) ? rows : cols;
}

void st_hf_layout(const gpt_model *m, int i, char *name, size_t len, size_t *r, size_t *c) {
    hf_name(m, i, name, len);
    hf_shape(m, i, r, c);
}

static int write_config_json(const gpt_model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const gpt_config *c = &m->cfg;
    fprintf(f, "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
            "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n  \"n_positions\": %d,\n"
            "  \"n_ctx\": %d,\n  \"vocab_size\": %d,\n  \"layer_norm_epsilon\": 1e-05,\n"
            "  \"activation_function\": \"gelu_new\",\n  \"tie_word_embeddings\": true,\n"
            "  \"torch_dtype\": \"float32\"\n}\n", c->n_layer, c->n_head, c->n_embd, c->max_seq,
            c->max_seq, c->vocab);
    return fclose(f);
}

/* The JSON header; offsets run over the tensors in table order. */
static char *header_json(const gpt_model *m, size_t *len) {
    size_t cap = 256 + (size_t)m->table.count * 160, n = 0, off = 0;
    char *h = malloc(cap);
    if (!h) return NULL;
    n += (size_t)snprintf(h + n, cap - n, "{\"__metadata__\":{\"format\":\"pt\",\"writer\":"
                          "\"gptrain %s\"}", GPTRAIN_VERSION);
    for (int i = 0; i < m->table.count; i++) {
        char name[GPT_NAME_MAX + 16];
        size_t r, c;
        hf_name(m, i, name, sizeof name);
        hf_shape(m, i, &r, &c);
        size_t bytes = r * c * sizeof(float);
        if (m->table.t[i].ndim == 2)
            n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu,%zu],"
                                  "\"data_offsets\":[%zu,%zu]}", name, r, c, off, off + bytes);
        else
            n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu],"
                                  "\"data_offsets\":[%zu,%zu]}", name, r, off, off + bytes);
        off += bytes;
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    while (n % 8) h[n++] = ' '; /* the data then starts 8-byte aligned */
    *len = n;
    return h;
}

ckpt_status ckpt_export_safetensors(const gpt_model *m, const char *dir, ckpt_error_t err) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t hlen = 0;
    char *h = header_json(m, &hlen);
    FILE *f = h ? fopen(tmp, "wb") : NULL;
    int ok = f != NULL;
    uint64_t le = hlen; /* x86 and the other targets are little-endian */
    ok = ok && fwrite(&le, 8, 1, f) == 1 && fwrite(h, 1, hlen, f) == hlen;
    float *row = malloc(sizeof(float) * (size_t)(4 * m->cfg.n_embd + m->cfg.padded_vocab));
    for (int i = 0; i < m->table.count && ok && row; i++) {
        const gpt_tensor *t = &m->table.t[i];
        const float *p = m->params + t->offset;
        size_t r, c;
        hf_shape(m, i, &r, &c);
        if (!st_transposed(m, i)) {
            ok = fwrite(p, sizeof(float), r * c, f) == r * c;
            continue;
        }
        for (size_t a = 0; a < r && ok; a++) { /* HF row a = our column a */
            for (size_t b = 0; b < c; b++) row[b] = p[b * r + a];
            ok = fwrite(row, sizeof(float), c, f) == c;
        }
    }
    if (!row) ok = 0;
    free(row);
    free(h);
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) {
        unlink(tmp);
        snprintf(err, CKPT_ERRLEN, "%s: cannot write", tmp);
        return CKPT_ERR_IO;
    }
    if (ckpt_commit(tmp, path, err)) return CKPT_ERR_IO;
    if (write_config_json(m, dir) != 0) {
        snprintf(err, CKPT_ERRLEN, "%s/config.json: cannot write", dir);
        return CKPT_ERR_IO;
    }
    return CKPT_OK;
}
