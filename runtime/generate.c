/* generate.c: text generation from a model, for `gptrain sample` and the
 * periodic samples during training. Tokens are drawn with temperature,
 * top-k and top-p (nucleus) filtering from a seeded generator, and each is
 * written out (flushed) as soon as it is drawn. The model runs with a KV
 * cache (model/decode.c): the prompt in one pass, then one position per new
 * token, O(T) each. The plain path, gpt_forward over the whole window for
 * every token, stays beside it as the reference (--no-kv-cache). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

typedef struct {
    float p;
    int id;
} ranked;

/* What drawing and printing a token needs. */
typedef struct {
    const rt_sample_opts *o;
    const data_tokenizer *tok;
    FILE *out;
    int V;
    float *prob;  /* V */
    ranked *rank; /* V */
    gpt_rng rng;
} sampler;

static int by_prob_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->p != y->p) return (x->p < y->p) - (x->p > y->p);
    return (x->id > y->id) - (x->id < y->id);
}

/* Top-p (nucleus): keeps the most likely tokens until their probabilities
 * reach top_p of sum (ties with the last one kept too), zeroing the rest;
 * returns the new sum. */
static double nucleus(sampler *s, double sum) {
    int n = 0;
    for (int v = 0; v < s->V; v++)
        if (s->prob[v] > 0.0f) s->rank[n++] = (ranked){s->prob[v], v};
    qsort(s->rank, (size_t)n, sizeof *s->rank, by_prob_desc);
    double acc = 0.0, kept = 0.0;
    float cut = 0.0f;
    for (int i = 0; i < n && acc < s->o->top_p * sum; i++) {
        acc += s->rank[i].p;
        cut = s->rank[i].p;
    }
    for (int v = 0; v < s->V; v++) {
        if (s->prob[v] < cut) s->prob[v] = 0.0f;
        kept += s->prob[v];
    }
    return kept;
}

/* Draws a token from row (V logits): temperature, then top-k, then top-p,
 * then a categorical draw; temperature 0 is greedy. */
static int draw(sampler *s, const float *row) {
    const rt_sample_opts *o = s->o;
    int V = s->V, best = 0;
    float *prob = s->prob;
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
    if (o->top_p > 0.0f && o->top_p < 1.0f) sum = nucleus(s, sum);
    double u = gpt_rng_uniform(&s->rng) * sum, acc = 0.0;
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

/* Draws the next token from a row of logits and writes it at once. */
static int next_token(sampler *s, const float *logits) {
    int id = draw(s, logits);
    emit(s->out, s->tok, id);
    return id;
}

/* The reference: gpt_forward over the last m->T tokens for every new token. */
static rt_status generate_plain(gpt_model *m, int *seq, int nprompt, int n, sampler *s,
                                rt_error_t err) {
    for (int len = nprompt; len < n; len++) {
        int ctx = len < m->T ? len : m->T;
        gpt_error_t gerr;
        if (gpt_forward(m, seq + len - ctx, NULL, 1, ctx, gerr) != GPT_OK) {
            snprintf(err, RT_ERRLEN, "sampling: %s", gerr);
            return RT_ERR_USAGE;
        }
        seq[len] = next_token(s, m->logits + (size_t)(ctx - 1) * m->cfg.padded_vocab);
    }
    return RT_OK;
}

/* With the KV cache: the prompt (its last m->T tokens) in one pass, then
 * one position per token. When the cache is full, the context restarts
 * from the newest half of the window, so a token still costs O(T) on
 * average (the plain path slides the window by one instead). */
static rt_status generate_cached(gpt_model *m, int *seq, int nprompt, int n, sampler *s,
                                 rt_error_t err) {
    int cap = m->T, ctx = nprompt < cap ? nprompt : cap;
    gpt_kv *kv = NULL;
    gpt_error_t gerr;
    gpt_status gs = gpt_kv_create(&kv, m, cap, gerr);
    if (!gs) gs = gpt_kv_prefill(m, kv, seq + nprompt - ctx, ctx, gerr);
    for (int len = nprompt; len < n && !gs; len++) {
        seq[len] = next_token(s, gpt_kv_logits(kv));
        if (len + 1 == n) break;
        if (gpt_kv_len(kv) < cap) {
            gs = gpt_kv_step(m, kv, seq[len], gerr);
        } else {
            int keep = cap / 2 > 0 ? cap / 2 : 1;
            gs = gpt_kv_prefill(m, kv, seq + len + 1 - keep, keep, gerr);
        }
    }
    gpt_kv_free(kv);
    if (!gs) return RT_OK;
    snprintf(err, RT_ERRLEN, "sampling: %s", gerr);
    return gs == GPT_ERR_NOMEM ? RT_ERR_RUN : RT_ERR_USAGE;
}

rt_status rt_generate(gpt_model *m, const data_tokenizer *tok, const int *prompt,
                      int nprompt, const rt_sample_opts *o, FILE *out, rt_error_t err) {
    int V = m->cfg.vocab, n = nprompt + o->max_tokens;
    sampler s = {o, tok, out, V, malloc(sizeof(float) * (size_t)V),
                 malloc(sizeof(ranked) * (size_t)V), {0}};
    int *seq = malloc(sizeof(int) * (size_t)n);
    rt_status st = RT_ERR_RUN;
    if (!seq || !s.prob || !s.rank) {
        snprintf(err, RT_ERRLEN, "out of memory for sampling");
    } else {
        memcpy(seq, prompt, sizeof(int) * (size_t)nprompt);
        gpt_rng_seed(&s.rng, o->seed);
        st = o->no_kv_cache ? generate_plain(m, seq, nprompt, n, &s, err)
                            : generate_cached(m, seq, nprompt, n, &s, err);
    }
    free(seq);
    free(s.prob);
    free(s.rank);
    return st;
}
