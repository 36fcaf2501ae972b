/* loader.c: the sequential batch loader over one split's shards (data.h).
 *
 * Every shard of the split is mapped at open time, so a bad or short shard
 * fails the run before training starts rather than hours into it. Batches
 * are read in order and wrap around, which is what the minimal training loop
 * needs; the rank-sharded, shuffling loader replaces this one later. */
#include "data.h"
#include "data_internal.h"

#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds dir/<split>_*.bin; glob sorts the names, which fixes the order. */
static data_status find_shards(glob_t *g, const char *dir, const char *split,
                               char *err)
{
    char pattern[4096];
    if ((size_t)snprintf(pattern, sizeof pattern, "%s/%s_*.bin", dir, split) >=
        sizeof pattern)
        return data_fail(err, DATA_ERR_ARG, "%.64s...: data path too long", dir);
    int rc = glob(pattern, 0, NULL, g);
    if (rc == 0)
        return DATA_OK;
    if (rc == GLOB_NOMATCH)
        return data_fail(err, DATA_ERR_IO, "%s: no %s_*.bin shards found", dir, split);
    if (rc == GLOB_NOSPACE)
        return data_fail(err, DATA_ERR_NOMEM, "%s: out of memory listing shards", dir);
    return data_fail(err, DATA_ERR_IO, "%s: cannot list the directory", dir);
}

/* Opens each shard and checks that it holds at least one batch. */
static data_status open_shards(data_loader *L, const glob_t *g, char *err)
{
    size_t need = (size_t)L->B * (size_t)L->T + 1;
    L->shards = calloc(g->gl_pathc, sizeof *L->shards);
    if (!L->shards)
        return data_fail(err, DATA_ERR_NOMEM, "out of memory for %zu shards", g->gl_pathc);
    /* Counted before opening so that close releases any prefix opened. */
    L->nshards = (int)g->gl_pathc;
    for (int i = 0; i < L->nshards; i++) {
        data_status st = data_shard_open(&L->shards[i], g->gl_pathv[i], err);
        if (st != DATA_OK)
            return st;
        if (L->shards[i].ntok < need)
            return data_fail(err, DATA_ERR_FORMAT,
                        "%s: %zu tokens is fewer than one batch of B*T+1 = %zu",
                        g->gl_pathv[i], L->shards[i].ntok, need);
    }
    return DATA_OK;
}

data_status data_loader_open(data_loader *L, const char *dir, const char *split,
                             int B, int T, int vocab, data_error_t err)
{
    memset(L, 0, sizeof *L);
    if (B < 1 || T < 1 || vocab < 1)
        return data_fail(err, DATA_ERR_ARG,
                    "loader: B=%d, T=%d and vocab=%d must all be >= 1", B, T, vocab);
    L->B = B;
    L->T = T;
    L->vocab = vocab;
    glob_t g;
    data_status st = find_shards(&g, dir, split, err);
    if (st != DATA_OK)
        return st;
    if (g.gl_pathc > INT_MAX)
        st = data_fail(err, DATA_ERR_ARG, "%s: too many %s shards (%zu)", dir, split,
                  g.gl_pathc);
    else
        st = open_shards(L, &g, err);
    globfree(&g);
    if (st != DATA_OK)
        data_loader_close(L);
    return st;
}

data_status data_loader_next(data_loader *L, int *inputs, int *targets,
                             data_error_t err)
{
    if (L->nshards < 1)
        return data_fail(err, DATA_ERR_ARG, "loader: not open");
    size_t bt = (size_t)L->B * (size_t)L->T;
    if (L->pos + bt + 1 > L->shards[L->cur].ntok) {
        L->cur = (L->cur + 1) % L->nshards;
        L->pos = 0;
    }
    const data_shard *s = &L->shards[L->cur];
    const uint16_t *tok = s->tokens + L->pos;
    for (size_t i = 0; i <= bt; i++)
        if (tok[i] >= L->vocab)
            return data_fail(err, DATA_ERR_FORMAT,
                        "%s: token %d at position %zu is outside the vocabulary (%d)",
                        s->path, tok[i], L->pos + i, L->vocab);
    for (size_t i = 0; i < bt; i++) {
        inputs[i] = tok[i];
        targets[i] = tok[i + 1];
    }
    L->pos += bt;
    return DATA_OK;
}

void data_loader_reset(data_loader *L)
{
    L->cur = 0;
    L->pos = 0;
}

void data_loader_close(data_loader *L)
{
    for (int i = 0; i < L->nshards; i++)
        data_shard_close(&L->shards[i]);
    free(L->shards);
    memset(L, 0, sizeof *L);
}
