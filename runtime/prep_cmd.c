/* prep_cmd.c: `gptrain prep`: turns text (files, directories, globs, stdin)
 * into train and val token shards with a BPE tokenizer that it trains or
 * loads (see data/data.h). */
#include <stdlib.h>
#include "data.h"
#include "runtime.h"

#define PREP_MAX_INPUTS 4096

static int run_prep(const char **inputs, int npos, const data_prep_opts *po) {
    if (npos == 0) return rt_fail("prep", RT_ERR_USAGE, "no input files or directories given");
    if (po->block_tokens < 1 || po->shard_tokens < 1)
        return rt_fail("prep", RT_ERR_USAGE, "--block-tokens and --shard-tokens must be >= 1");
    if (!po->tokenizer && po->vocab_size < 257)
        return rt_fail("prep", RT_ERR_USAGE, "--vocab-size must be >= 257 (256 bytes and the "
                       "end-of-text token)");
    data_error_t derr;
    data_prep_stats s;
    data_status ds = data_prep(inputs, npos, po, &s, derr);
    if (ds) return rt_fail("prep", ds == DATA_ERR_NOMEM ? RT_ERR_RUN : RT_ERR_USAGE, derr);
    if (!po->quiet)
        printf("prep: %d documents, %.1f MB (%d files skipped, %d duplicates) -> vocab %d; "
               "%zu train tokens in %d shard%s, %zu val tokens in %d shard%s; encoded in "
               "%.1f s; in %s\n", s.files_used, s.text_bytes / 1048576.0, s.files_skipped,
               s.files_duplicate, s.vocab_size, s.train_tokens, s.train_shards,
               s.train_shards == 1 ? "" : "s", s.val_tokens, s.val_shards,
               s.val_shards == 1 ? "" : "s", s.encode_seconds, po->out_dir);
    return 0;
}

int rt_cmd_prep(int argc, char **argv) {
    const char *out = "runs/data", *tokenizer = NULL;
    float val_fraction = 0.1f;
    long block = DATA_PREP_BLOCK_TOKENS, shard = DATA_PREP_SHARD_TOKENS;
    long train_mb = (long)(DATA_PREP_TRAIN_BYTES >> 20);
    int quiet = 0, vocab = DATA_PREP_VOCAB;
    rt_flag flags[] = {
        {"out", RT_STR, &out, "output directory for the shards, tokenizer and manifest"},
        {"vocab-size", RT_INT, &vocab, "train a BPE tokenizer of this many tokens (>= 257)"},
        {"tokenizer", RT_STR, &tokenizer, "use this tokenizer instead: a tokenizer.bpe file or "
                                          "a GPT-2 directory with vocab.json and merges.txt"},
        {"train-mb", RT_LONG, &train_mb, "MB of text (whole documents, in order) that train "
                                         "the tokenizer; 0 is all"},
        {"val-fraction", RT_FLOAT, &val_fraction, "share of blocks that go to val, in [0, 1)"},
        {"block-tokens", RT_LONG, &block, "tokens per train/val split block"},
        {"shard-tokens", RT_LONG, &shard, "maximum tokens per shard file"},
        {"quiet", RT_BOOL, &quiet, "no progress or skip messages"},
    };
    int npos = 0;
    const char **inputs = malloc(sizeof(char *) * PREP_MAX_INPUTS);
    if (!inputs) return rt_fail("prep", RT_ERR_RUN, "out of memory");
    int rc = rt_parse_command("prep", "usage: gptrain prep [flags] PATH...  (text files, "
                              "directories, globs, or - for stdin)", argc, argv, flags,
                              sizeof(flags) / sizeof(flags[0]), inputs, PREP_MAX_INPUTS, &npos);
    if (rc < 0) {
        /* Negative values would wrap in size_t; run_prep rejects 0. */
        data_prep_opts po = {out, tokenizer, vocab, train_mb > 0 ? (size_t)train_mb << 20 : 0,
                             val_fraction, block > 0 ? (size_t)block : 0,
                             shard > 0 ? (size_t)shard : 0, quiet};
        rc = run_prep(inputs, npos, &po);
    }
    free(inputs);
    return rc;
}
