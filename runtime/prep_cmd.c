/* prep_cmd.c: `gptrain prep`: turns text files or directories into train and
 * val token shards (byte-level tokenizer for now; see data/data.h). */
#include <stdlib.h>
#include "data.h"
#include "runtime.h"

#define PREP_MAX_INPUTS 4096

static int run_prep(const char **inputs, int npos, const data_prep_opts *po) {
    if (npos == 0) return rt_fail("prep", RT_ERR_USAGE, "no input files or directories given");
    if (po->block_tokens < 1 || po->shard_tokens < 1)
        return rt_fail("prep", RT_ERR_USAGE, "--block-tokens and --shard-tokens must be >= 1");
    data_error_t derr;
    data_status ds = data_prep(inputs, npos, po, NULL, derr);
    return ds ? rt_fail("prep", ds == DATA_ERR_NOMEM ? RT_ERR_RUN : RT_ERR_USAGE, derr) : 0;
}

int rt_cmd_prep(int argc, char **argv) {
    const char *out = "runs/data";
    float val_fraction = 0.1f;
    long block = DATA_PREP_BLOCK_TOKENS, shard = DATA_PREP_SHARD_TOKENS;
    int quiet = 0;
    rt_flag flags[] = {
        {"out", RT_STR, &out, "output directory for the shards"},
        {"val-fraction", RT_FLOAT, &val_fraction, "share of blocks that go to val, in [0, 1)"},
        {"block-tokens", RT_LONG, &block, "tokens per train/val split block"},
        {"shard-tokens", RT_LONG, &shard, "maximum tokens per shard file"},
        {"quiet", RT_BOOL, &quiet, "no progress or skip messages"},
    };
    int npos = 0;
    const char **inputs = malloc(sizeof(char *) * PREP_MAX_INPUTS);
    if (!inputs) return rt_fail("prep", RT_ERR_RUN, "out of memory");
    int rc = rt_parse_command("prep", "usage: gptrain prep [flags] PATH...  (text files or "
                              "directories)", argc, argv, flags,
                              sizeof(flags) / sizeof(flags[0]), inputs, PREP_MAX_INPUTS, &npos);
    if (rc < 0) {
        /* Negative values would wrap in size_t; run_prep rejects 0. */
        data_prep_opts po = {out, val_fraction, block > 0 ? (size_t)block : 0,
                             shard > 0 ? (size_t)shard : 0, quiet};
        rc = run_prep(inputs, npos, &po);
    }
    free(inputs);
    return rc;
}
