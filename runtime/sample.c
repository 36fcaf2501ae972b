/* sample.c: `gptrain sample`: loads a model file and its tokenizer (the one
 * saved next to it, or --tokenizer), encodes the prompt and streams the
 * continuation (generate.c). Generation starts after an end-of-text token,
 * as every training document does. */
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "checkpoint.h"
#include "runtime.h"

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
    rt_sample_opts o = {.max_tokens = 200, .temperature = 1.0f, .top_p = 1.0f, .seed = 1337};
    long seed = 1337;
    rt_flag flags[] = {
        {"ckpt", RT_STR, &ckpt, "model file written by gptrain train (required)"},
        {"tokenizer", RT_STR, &tok_path, "tokenizer file (default: tokenizer.bpe beside the model)"},
        {"prompt", RT_STR, &prompt, "text to continue (generation starts after an "
                                    "end-of-text token)"},
        {"max-tokens", RT_INT, &o.max_tokens, "tokens to generate"},
        {"temperature", RT_FLOAT, &o.temperature, "softmax temperature; 0 is greedy"},
        {"top-k", RT_INT, &o.top_k, "sample from the k most likely tokens; 0 is all"},
        {"top-p", RT_FLOAT, &o.top_p, "sample from the most likely tokens whose "
                                      "probabilities add up to p (nucleus); 1 is all"},
        {"no-kv-cache", RT_BOOL, &o.no_kv_cache, "run the whole context for every token "
                                                 "(the slow reference path)"},
        {"seed", RT_LONG, &seed, "random seed"},
    };
    int npos, rc = rt_parse_command("sample", "usage: gptrain sample --ckpt FILE [flags]",
                                    argc, argv, flags, sizeof(flags) / sizeof(flags[0]),
                                    NULL, 0, &npos);
    if (rc >= 0) return rc;
    if (!ckpt) return rt_fail("sample", RT_ERR_USAGE, "--ckpt is required");
    if (o.max_tokens < 1 || o.top_k < 0 || o.temperature < 0.0f || !(o.top_p > 0.0f) ||
        o.top_p > 1.0f)
        return rt_fail("sample", RT_ERR_USAGE, "--max-tokens must be >= 1, --top-k >= 0, "
                       "--temperature >= 0 and 0 < --top-p <= 1");
    o.seed = (uint64_t)seed;
    return sample_run(ckpt, tok_path, prompt, &o);
}
