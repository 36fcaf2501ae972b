/* sample.c: text generation from a model, used by `gptrain sample` and by the
 * periodic samples during training. Each new token runs the model over the
 * current context window; the KV cache that makes this O(T) per token comes
 * with the user-experience issue. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
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

static void emit(FILE *out, int tok) {
    if (tok < 256) fputc(tok, out);
    else fprintf(out, "<%d>", tok);
    fflush(out);
}

rt_status rt_generate(gpt_model *m, const int *prompt, int nprompt,
                      const rt_sample_opts *o, FILE *out, rt_error_t err) {
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
        emit(out, seq[len]);
    }
    free(seq);
    free(prob);
    return st;
}

/* Prompt text to byte tokens; an empty prompt starts from a newline. */
static int *encode_prompt(const char *text, int *n) {
    size_t len = strlen(text);
    int *t = malloc(sizeof(int) * (len ? len : 1));
    if (!t) return NULL;
    for (size_t i = 0; i < len; i++) t[i] = (unsigned char)text[i];
    if (!len) t[0] = '\n';
    *n = len ? (int)len : 1;
    return t;
}

int rt_cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "";
    rt_sample_opts o = {200, 1.0f, 0, 1337};
    long seed = 1337;
    rt_flag flags[] = {
        {"ckpt", RT_STR, &ckpt, "model file written by gptrain train (required)"},
        {"prompt", RT_STR, &prompt, "text to continue (empty: start from a newline)"},
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
    gpt_config cfg;
    ckpt_error_t cerr;
    if (ckpt_read_config(ckpt, &cfg, cerr)) return rt_fail("sample", RT_ERR_USAGE, cerr);
    int nprompt;
    int *tokens = encode_prompt(prompt, &nprompt);
    int ctx = nprompt + o.max_tokens < cfg.max_seq ? nprompt + o.max_tokens : cfg.max_seq;
    gpt_model m;
    gpt_error_t gerr;
    if (!tokens || gpt_model_create(&m, &cfg, 1, ctx, gerr)) {
        free(tokens);
        return rt_fail("sample", RT_ERR_RUN, tokens ? gerr : "out of memory");
    }
    rt_error_t err;
    if (ckpt_load_model(ckpt, &m, cerr)) {
        rc = rt_fail("sample", RT_ERR_USAGE, cerr);
    } else {
        fputs(prompt, stdout);
        rt_status st = rt_generate(&m, tokens, nprompt, &o, stdout, err);
        fputc('\n', stdout);
        rc = st ? rt_fail("sample", st, err) : 0;
    }
    gpt_model_free(&m);
    free(tokens);
    return rc;
}
