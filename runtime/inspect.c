/* inspect.c: `gptrain inspect CKPT`: what a checkpoint or model file holds,
 * and whether it is whole. It reads every tensor (and both AdamW moments
 * where present) through the same checks a resume makes, so a file that
 * inspects cleanly loads; a damaged one gives the one-line error a resume
 * would. */
#include <stdlib.h>
#include <sys/stat.h>
#include "checkpoint.h"
#include "runtime.h"

/* Loads everything the file holds into a model of its config. */
static rt_status verify(const char *path, const ckpt_info *info, gpt_model *m,
                        rt_error_t err) {
    gpt_error_t gerr;
    if (gpt_model_create(m, &info->cfg, 1, 1, gerr)) {
        snprintf(err, RT_ERRLEN, "%s: %s", path, gerr);
        return RT_ERR_RUN;
    }
    ckpt_part all = {0, m->table.total, m->params, info->has_optimizer ? m->m : NULL,
                     info->has_optimizer ? m->v : NULL};
    ckpt_error_t cerr;
    if (ckpt_load_part(path, m, &all, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

static void print_train(const char *path) {
    ckpt_train_state ts;
    ckpt_error_t cerr;
    if (ckpt_read_state(path, &ts, cerr)) {
        printf("training    none (%s)\n", cerr);
        return;
    }
    printf("training    step %ld, %ld tokens, %ld tokens/step; data epoch %llu, sample %llu "
           "of %llu; seed %ld, seq %d, %s\n", ts.step, ts.tokens, ts.total_batch, ts.epoch,
           ts.cursor, ts.epoch_samples, ts.seed, ts.seq, ts.shuffle ? "shuffled" : "in order");
    printf("written by  %d rank%s at ZeRO stage %d\n", ts.world, ts.world == 1 ? "" : "s",
           ts.zero);
}

int rt_cmd_inspect(int argc, char **argv) {
    const char *pos[1];
    int npos, rc = rt_parse_command("inspect", "usage: gptrain inspect CKPT", argc, argv, NULL,
                                    0, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1) return rt_fail("inspect", RT_ERR_USAGE, "name one checkpoint file");
    const char *path = pos[0];
    ckpt_info info;
    ckpt_error_t cerr;
    if (ckpt_read_info(path, &info, cerr)) return rt_fail("inspect", RT_ERR_USAGE, cerr);
    gpt_model m;
    rt_error_t err;
    rt_status st = verify(path, &info, &m, err);
    if (st) return rt_fail("inspect", st, err);
    struct stat sb;
    const gpt_config *c = &info.cfg;
    printf("file        %s (%.1f MB)\n", path, stat(path, &sb) == 0 ? sb.st_size / 1e6 : 0.0);
    printf("format      %ld, written by gptrain %s\n", info.format_version,
           info.version[0] ? info.version : "(unknown)");
    printf("model       %d layers, %d heads, %d channels, max seq %d, vocab %d (padded %d), "
           "%zu params\n", c->n_layer, c->n_head, c->n_embd, c->max_seq, c->vocab,
           c->padded_vocab, gpt_num_params(c));
    printf("tokenizer   %s\n", info.tokenizer[0] ? info.tokenizer : "(none: bytes or bare "
           "shards)");
    printf("step        %ld\n", info.step);
    if (info.has_train) print_train(path);
    printf("optimizer   %s\n", info.has_optimizer ? "AdamW moments m and v for every tensor"
                                                  : "none (a model file)");
    printf("tensors     %d, all present with their shapes%s\n", m.table.count,
           info.has_optimizer ? " (parameters and both moments)" : "");
    for (int i = 0; i < m.table.count; i++) {
        const gpt_tensor *t = &m.table.t[i];
        int rows = i == GPT_T_WTE ? c->vocab : t->shape[0];
        if (t->ndim == 2) printf("  %-28s %d x %d\n", t->name, rows, t->shape[1]);
        else printf("  %-28s %d\n", t->name, rows);
    }
    gpt_model_free(&m);
    return 0;
}
