/* sample.c: text generation from a model, used by `gptrain sample` and by the
 * periodic samples during training. The tokenizer is the one saved next to
 * the model (or the data). Generation starts after an end-of-text token, as
 * every training document does. Each new token runs the model over the
 * current context window; the KV cache that makes this O(T) per token comes
 * with the user-experience issue. */
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "checkpoint.h"
#include "runtime.h"

/* Draws a token from row (V logits): temperature, then top-k, then a
 * categorical draw; temperature 0 is greedy. */
static int draw(const float *row, int V, const rt_sample_opts *o, gpt_rng *rng,
                float *prob) {
    int best = 0;
    for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
    if (o->temperature <= 0.0f) return best;
    float kth = -INFINITY; /* logits below the k-th largest are dropped */
    if (o->top_k > 0 && o->top_k < V) {
        memcpy(prob, row, sizeof(float) * V);
        for (int k = 0; k < o->top_k; k++) { /* partial selection, k is small */
            int arg = k;
            for (int v = k + 1; v < V; v++) if (prob[v] > prob[arg]) arg = v;
            float t = prob[k]; prob[k] = prob[arg]; prob[arg] = t;
        }
        kth = prob[o->top_k - 1];
    }
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        prob[v] = row[v] >= kth ? expf((row[v] - row[best]) / o->temperature) : 0.0f;
        sum += prob[v];
    }
    double u = gpt_rng_uniform(rng) * sum, acc = 0.0;
    for (int v = 0; v < V; v++) {
        acc += prob[v];
        if (u < acc) return v;
    }
    return best;
}

static void emit(FILE *out, const data_tokenizer *tok, int id) {
    if (!out) return;
    size_t len;
    const unsigned char *b = tok ? data_tok_token(tok, id, &len) : NULL;
    if (b) fwrite(b, 1, len, out);
    else if (!tok && id < 256) fputc(id, out);
    else fprintf(out, "<%d>", id);
    fflush(out);
}

rt_status rt_find_tokenizer(const char *dir, data_tokenizer **tok, rt_error_t err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, DATA_TOKENIZER_FILE);
    *tok = NULL;
    if (access(path, F_OK) != 0) return RT_OK;
    data_error_t derr;
    if (data_tok_load(tok, path, derr) == DATA_OK) return RT_OK;
    snprintf(err, RT_ERRLEN, "%s", derr);
    return RT_ERR_USAGE;
}

rt_status rt_generate(gpt_model *m, const data_tokenizer *tok, const int *prompt,
                      int nprompt, const rt_sample_opts *o, FILE *out, rt_error_t err) {
    int V = m->cfg.vocab, Vp = m->cfg.padded_vocab, n = nprompt + o->max_tokens;
    int *seq = malloc(sizeof(int) * (size_t)n);
    float *prob = malloc(sizeof(float) * (size_t)V);
    if (!seq || !prob) {
        free(seq); free(prob);
        snprintf(err, RT_ERRLEN, "out of memory for sampling");
        return RT_ERR_RUN;
    }
    memcpy(seq, prompt, sizeof(int) * (size_t)nprompt);
    gpt_rng rng;
    gpt_rng_seed(&rng, o->seed);
    rt_status st = RT_OK;
    for (int len = nprompt; len < n; len++) {
        int ctx = len < m->T ? len : m->T;
        gpt_error_t gerr;
        if (gpt_forward(m, seq + len - ctx, NULL, 1, ctx, gerr) != GPT_OK) {
            snprintf(err, RT_ERRLEN, "sampling: %s", gerr);
            st = RT_ERR_USAGE;
            break;
        }
        seq[len] = draw(m->logits + (size_t)(ctx - 1) * Vp, V, o, &rng, prob);
        emit(out, tok, seq[len]);
    }
    free(seq);
    free(prob);
    return st;
}

/* The prompt's tokens after an end-of-text token (documents start after
 * one in training); without a tokenizer, bytes after a newline. */
static rt_status encode_prompt(const data_tokenizer *tok, const char *text, int **ids,
                               int *n, rt_error_t err) {
    size_t len = strlen(text);
    data_tokens t = {0};
    data_error_t derr;
    data_encoder *enc = tok ? data_encoder_new(tok) : NULL;
    data_status ds = !tok ? DATA_OK : !enc ? DATA_ERR_NOMEM
                   : data_encode(enc, (const unsigned char *)text, len, &t, derr);
    data_encoder_free(enc);
    if (ds) {
        snprintf(err, RT_ERRLEN, "encoding the prompt: %s", ds == DATA_ERR_NOMEM ?
                 "out of memory" : derr);
        return RT_ERR_RUN;
    }
    size_t count = 1 + (tok ? t.len : len);
    *ids = malloc(sizeof(int) * count);
    if (!*ids) {
        data_tokens_free(&t);
        snprintf(err, RT_ERRLEN, "out of memory for the prompt");
        return RT_ERR_RUN;
    }
    int eot = tok ? data_tok_eot(tok) : -1;
    (*ids)[0] = eot >= 0 ? eot : '\n';
    for (size_t i = 1; i < count; i++)
        (*ids)[i] = tok ? (int)t.ids[i - 1] : (unsigned char)text[i - 1];
    *n = (int)count;
    data_tokens_free(&t);
    return RT_OK;
}

/* The tokenizer: --tokenizer, else tokenizer.bpe beside the model file. */
static rt_status sample_tokenizer(const char *ckpt, const char *path, const gpt_config *cfg,
                                  data_tokenizer **tok, rt_error_t err) {
    rt_status st = RT_OK;
    data_error_t derr;
    if (path) {
        if (data_tok_load(tok, path, derr)) {
            snprintf(err, RT_ERRLEN, "%s", derr);
            st = RT_ERR_USAGE;
        }
    } else {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", ckpt);
        st = rt_find_tokenizer(dirname(dir), tok, err);
    }
    if (!st && *tok && data_tok_vocab_size(*tok) > cfg->vocab) {
        snprintf(err, RT_ERRLEN, "the tokenizer has %d tokens but the model's vocabulary is %d",
                 data_tok_vocab_size(*tok), cfg->vocab);
        st = RT_ERR_USAGE;
    }
    if (!st && !*tok && cfg->vocab > 256) {
        snprintf(err, RT_ERRLEN, "no %s next to %s and --tokenizer not given (the model's "
                 "vocabulary of %d is not bytes)", DATA_TOKENIZER_FILE, ckpt, cfg->vocab);
        st = RT_ERR_USAGE;
    }
    return st;
}

static int sample_run(const char *ckpt, const char *tok_path, const char *prompt,
                      const rt_sample_opts *o) {
    gpt_config cfg;
    ckpt_error_t cerr;
    if (ckpt_read_config(ckpt, &cfg, cerr)) return rt_fail("sample", RT_ERR_USAGE, cerr);
    data_tokenizer *tok = NULL;
    int *ids = NULL, nprompt = 0, rc = 0;
    rt_error_t err;
    rt_status st = sample_tokenizer(ckpt, tok_path, &cfg, &tok, err);
    if (!st) st = encode_prompt(tok, prompt, &ids, &nprompt, err);
    int ctx = nprompt + o->max_tokens < cfg.max_seq ? nprompt + o->max_tokens : cfg.max_seq;
    gpt_model m = {0};
    gpt_error_t gerr;
    if (!st && gpt_model_create(&m, &cfg, 1, ctx, gerr)) {
        snprintf(err, RT_ERRLEN, "%s", gerr);
        st = RT_ERR_RUN;
    }
    if (!st && ckpt_load_model(ckpt, &m, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        st = RT_ERR_USAGE;
    }
    if (!st) {
        fputs(prompt, stdout);
        st = rt_generate(&m, tok, ids, nprompt, o, stdout, err);
        fputc('\n', stdout);
    }
    if (st) rc = rt_fail("sample", st, err);
    gpt_model_free(&m);
    data_tok_free(tok);
    free(ids);
    return rc;
}

int rt_cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *tok_path = NULL;
    rt_sample_opts o = {200, 1.0f, 0, 1337};
    long seed = 1337;
    rt_flag flags[] = {
        {"ckpt", RT_STR, &ckpt, "model file written by gptrain train (required)"},
        {"tokenizer", RT_STR, &tok_path, "tokenizer file (default: tokenizer.bpe beside the model)"},
        {"prompt", RT_STR, &prompt, "text to continue (generation starts after an "
                                    "end-of-text token)"},
        {"max-tokens", RT_INT, &o.max_tokens, "tokens to generate"},
        {"temperature", RT_FLOAT, &o.temperature, "softmax temperature; 0 is greedy"},
        {"top-k", RT_INT, &o.top_k, "sample from the k most likely tokens; 0 is all"},
        {"seed", RT_LONG, &seed, "random seed"},
    };
    int npos, rc = rt_parse_command("sample", "usage: gptrain sample --ckpt FILE [flags]",
                                    argc, argv, flags, sizeof(flags) / sizeof(flags[0]),
                                    NULL, 0, &npos);
    if (rc >= 0) return rc;
    if (!ckpt) return rt_fail("sample", RT_ERR_USAGE, "--ckpt is required");
    if (o.max_tokens < 1 || o.top_k < 0 || o.temperature < 0.0f)
        return rt_fail("sample", RT_ERR_USAGE, "--max-tokens must be >= 1, --top-k >= 0 "
                       "and --temperature >= 0");
    o.seed = (uint64_t)seed;
    return sample_run(ckpt, tok_path, prompt, &o);
}
