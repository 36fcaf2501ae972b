/* prep_cmd.c: `gptrain prep`: turns text files or directories into train and
 * val token shards (byte-level tokenizer for now; see data/data.h). */
#include <stdlib.h>
#include "data.h"
#include "runtime.h"

#define PREP_MAX_INPUTS 4096

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
    int nf = sizeof(flags) / sizeof(flags[0]), npos = 0;
    const char **inputs = malloc(sizeof(char *) * PREP_MAX_INPUTS);
    rt_error_t err;
    if (!inputs) return rt_fail("prep", RT_ERR_RUN, "out of memory");
    rt_status st = rt_parse_flags(argc, argv, flags, nf, inputs, PREP_MAX_INPUTS, &npos, err);
    int rc = 0;
    if (st == RT_HELP) {
        rt_print_help(stdout, "usage: gptrain prep [flags] PATH...  (text files or directories)",
                      flags, nf);
    } else if (st) {
        rc = rt_fail("prep", st, err);
    } else if (npos == 0) {
        rc = rt_fail("prep", RT_ERR_USAGE, "no input files or directories given");
    } else if (block < 1 || shard < 1) {
        rc = rt_fail("prep", RT_ERR_USAGE, "--block-tokens and --shard-tokens must be >= 1");
    } else {
        data_prep_opts po = {out, val_fraction, (size_t)block, (size_t)shard, quiet};
        data_prep_stats stats;
        data_error_t derr;
        data_status ds = data_prep(inputs, npos, &po, &stats, derr);
        if (ds) rc = rt_fail("prep", ds == DATA_ERR_NOMEM ? RT_ERR_RUN : RT_ERR_USAGE, derr);
    }
    free(inputs);
    return rc;
}
