/* loader.c: the shuffling, rank-sharded, resumable loader (data.h).
 *
 * The global sample order of an epoch is a pure function of (seed, epoch): a
 * seeded permutation of the shards, then within each shard a seeded
 * permutation of its samples. No rank enumerates that order. A global index
 * maps to (shard, sample) through prefix sums over the permuted shard order,
 * and only the sample permutation of the shard in use is kept, so memory is
 * O(shards + samples of one shard), a rank reads only its own samples'
 * tokens, and P ranks at micro-batch B read exactly what one rank at P*B
 * would. Every shard is mapped at open time, so a bad shard fails the run
 * before training starts; token ids are checked as they are read, since
 * reading a whole corpus up front would take minutes. */
#include "data.h"
#include "data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Derived from (seed, epoch) alone, so filling it in is not a change of the
 * loader's state: functions taking a const loader may update it. */
struct data_loader_cache {
    int have_order;       /* order and start describe epoch order_epoch */
    uint64_t order_epoch;
    uint32_t *order;      /* [nshards] file indices of the shards in visit order */
    uint64_t *start;      /* [nshards + 1] first global sample of each, in visit order */
    int perm_shard;       /* file index of the shard perm belongs to; -1: none */
    uint64_t perm_epoch;
    uint32_t *perm;       /* that shard's sample order; NULL without shuffling */
};

/* ---- seeded permutations ---------------------------------------------------- */

/* splitmix64's output function, a bijective 64-bit mixer. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The generator seed of one stream of (seed, epoch): stream 0 orders the
 * shards, stream i + 1 the samples of shard i (in file order). */
static uint64_t stream_seed(uint64_t seed, uint64_t epoch, uint64_t stream)
{
    return mix64(mix64(mix64(seed) ^ epoch) ^ stream);
}

/* splitmix64: small, and good enough for shuffling. */
static uint64_t next_u64(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return mix64(*s);
}

/* Uniform in [0, n) for n >= 1; rejection rather than a bare modulo, whose
 * bias would make some orders more likely than others. */
static uint64_t below(uint64_t *s, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do
        r = next_u64(s);
    while (r >= limit);
    return r % n;
}

/* Fisher-Yates: a uniform permutation of 0..n-1 determined by seed. */
static void permute(uint32_t *a, uint32_t n, uint64_t seed)
{
    for (uint32_t i = 0; i < n; i++)
        a[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)below(&seed, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* ---- the global order ------------------------------------------------------- */

/* Sample j of a shard needs tokens up to j*T + T, so j < (ntok - 1) / T. Shard
 * token counts are below 2^31, so this fits a uint32. */
static uint32_t shard_samples(const data_shard *s, int T)
{
    return s->ntok > 0 ? (uint32_t)((s->ntok - 1) / (size_t)T) : 0;
}

/* Makes the cache's shard order and prefix sums those of epoch. */
static void load_order(const data_loader *L, uint64_t epoch)
{
    data_loader_cache *c = L->cache;
    if (c->have_order && c->order_epoch == epoch)
        return;
    uint32_t n = (uint32_t)L->nshards;
    if (L->shuffle)
        permute(c->order, n, stream_seed(L->seed, epoch, 0));
    else
        for (uint32_t k = 0; k < n; k++)
            c->order[k] = k;
    c->start[0] = 0;
    for (uint32_t k = 0; k < n; k++)
        c->start[k + 1] = c->start[k] + shard_samples(&L->shards[c->order[k]], L->T);
    c->have_order = 1;
    c->order_epoch = epoch;
}

/* The visit position of the shard holding global sample g < epoch_samples:
 * the last k with start[k] <= g. An empty shard shares its start with the
 * next one, so the search passes over it. */
static uint32_t find_shard(const data_loader_cache *c, uint32_t n, uint64_t g)
{
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (c->start[mid] <= g)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* The sample of shard (file index) that its j-th visit in epoch reads. */
static uint32_t local_sample(const data_loader *L, uint64_t epoch, uint32_t shard,
                             uint32_t j)
{
    if (!L->shuffle)
        return j;
    data_loader_cache *c = L->cache;
    if (c->perm_shard != (int)shard || c->perm_epoch != epoch) {
        permute(c->perm, shard_samples(&L->shards[shard], L->T),
                stream_seed(L->seed, epoch, (uint64_t)shard + 1));
        c->perm_shard = (int)shard;
        c->perm_epoch = epoch;
    }
    return c->perm[j];
}

/* The state n samples after st. */
static data_loader_state advance(const data_loader *L, data_loader_state st, uint64_t n)
{
    uint64_t es = L->epoch_samples;
    st.epoch += n / es;
    st.cursor += n % es; /* both terms are below es, so no overflow */
    if (st.cursor >= es) {
        st.cursor -= es;
        st.epoch++;
    }
    return st;
}

/* ---- reading ---------------------------------------------------------------- */

/* Copies sample j of s into in and tg (T ints each), checking every token. */
static data_status copy_sample(const data_loader *L, const data_shard *s, uint32_t j,
                               int *in, int *tg, char *err)
{
    size_t T = (size_t)L->T, first = (size_t)j * T;
    for (size_t t = 0; t <= T; t++) {
        uint32_t tok = data_shard_token(s, first + t);
        if (tok >= (uint32_t)L->vocab) {
            size_t data_at = (size_t)((const char *)s->tokens - (const char *)s->map);
            return data_fail(err, DATA_ERR_FORMAT,
                             "%s: token %u at byte offset %zu is outside the "
                             "vocabulary (%d)", s->path, tok,
                             data_at + (first + t) * (size_t)s->token_bytes, L->vocab);
        }
        if (t < T)
            in[t] = (int)tok;
        if (t > 0)
            tg[t - 1] = (int)tok;
    }
    return DATA_OK;
}

/* Reads the global sample at position at into in and tg. */
static data_status read_sample(const data_loader *L, data_loader_state at, int *in,
                               int *tg, char *err)
{
    load_order(L, at.epoch);
    const data_loader_cache *c = L->cache;
    uint32_t k = find_shard(c, (uint32_t)L->nshards, at.cursor);
    uint32_t shard = c->order[k];
    uint32_t j = local_sample(L, at.epoch, shard, (uint32_t)(at.cursor - c->start[k]));
    return copy_sample(L, &L->shards[shard], j, in, tg, err);
}

data_status data_loader_next(data_loader *L, int rank, int world, int B, int *inputs,
                             int *targets, data_error_t err)
{
    if (!L->cache)
        return data_fail(err, DATA_ERR_ARG, "loader: not open");
    if (world < 1 || rank < 0 || rank >= world || B < 1)
        return data_fail(err, DATA_ERR_ARG,
                         "loader: rank %d, world %d, B %d: need 0 <= rank < world "
                         "and B >= 1", rank, world, B);
    size_t T = (size_t)L->T;
    data_loader_state at = advance(L, L->state, (uint64_t)rank * (uint64_t)B);
    for (int b = 0; b < B; b++) {
        data_status st = read_sample(L, at, inputs + (size_t)b * T,
                                     targets + (size_t)b * T, err);
        if (st != DATA_OK)
            return st;
        at = advance(L, at, 1);
    }
    L->state = advance(L, L->state, (uint64_t)world * (uint64_t)B);
    return DATA_OK;
}

data_loader_state data_loader_get_state(const data_loader *L)
{
    return L->state;
}

data_status data_loader_set_state(data_loader *L, data_loader_state st, data_error_t err)
{
    if (!L->cache)
        return data_fail(err, DATA_ERR_ARG, "loader: not open");
    if (st.cursor >= L->epoch_samples)
        return data_fail(err, DATA_ERR_ARG,
                         "loader state: cursor %llu is outside an epoch of %llu samples",
                         (unsigned long long)st.cursor,
                         (unsigned long long)L->epoch_samples);
    L->state = st;
    return DATA_OK;
}

void data_loader_reset(data_loader *L)
{
    L->state = (data_loader_state){0, 0};
}

/* ---- opening ---------------------------------------------------------------- */

typedef struct {
    char **v;
    size_t n, cap;
} name_list;

static void free_names(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static data_status add_name(name_list *l, const char *name, char *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return data_fail(err, DATA_ERR_NOMEM, "loader: out of memory listing shards");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(name)))
        return data_fail(err, DATA_ERR_NOMEM, "loader: out of memory listing shards");
    l->n++;
    return DATA_OK;
}

/* Whether name is a shard of split: <split>_*.bin (gptrain prep), or, as
 * llm.c names them, *_<split>_*.bin (fineweb_train_000001.bin) or
 * *_<split>.bin (tiny_shakespeare_val.bin). */
static int is_shard_name(const char *name, const char *split)
{
    size_t ls = strlen(split), ln = strlen(name);
    if (ln < ls + 5 || strcmp(name + ln - 4, ".bin") != 0)
        return 0;
    if (strncmp(name, split, ls) == 0 && name[ls] == '_')
        return 1;
    if (ln >= ls + 6 && name[ln - 5 - ls] == '_' && strncmp(name + ln - 4 - ls, split, ls) == 0)
        return 1;
    char mid[80];
    snprintf(mid, sizeof mid, "_%s_", split);
    const char *at = strstr(name, mid);
    return at && at > name;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists dir/<split>_*.bin sorted by strcmp, so the file order, and with it
 * the sample order, does not depend on the locale or the directory layout. */
static data_status list_shards(name_list *l, const char *dir, const char *split,
                               char *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return data_fail(err, DATA_ERR_IO, "%s: cannot open the data directory: %s",
                         dir, strerror(errno));
    data_status st = DATA_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                st = data_fail(err, DATA_ERR_IO, "%s: cannot read the directory: %s",
                               dir, strerror(errno));
            break;
        }
        if (is_shard_name(e->d_name, split) &&
            (st = add_name(l, e->d_name, err)) != DATA_OK)
            break;
    }
    closedir(d);
    if (st != DATA_OK)
        return st;
    if (l->n == 0)
        return data_fail(err, DATA_ERR_IO, "%s: no %s_*.bin shards found (nor llm.c's "
                         "*_%s_*.bin or *_%s.bin)", dir, split, split, split);
    if (l->n > INT_MAX)
        return data_fail(err, DATA_ERR_ARG, "%s: too many %s shards (%zu)", dir, split,
                         l->n);
    qsort(l->v, l->n, sizeof *l->v, cmp_names);
    return DATA_OK;
}

static data_status open_shards(data_loader *L, const char *dir, const name_list *l,
                               char *err)
{
    L->shards = calloc(l->n, sizeof *L->shards);
    if (!L->shards)
        return data_fail(err, DATA_ERR_NOMEM, "loader: out of memory for %zu shards", l->n);
    /* Counted before opening so that close releases any prefix opened. */
    L->nshards = (int)l->n;
    for (size_t i = 0; i < l->n; i++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, l->v[i]) >= sizeof path)
            return data_fail(err, DATA_ERR_ARG, "%.64s...: data path too long", dir);
        data_status st = data_shard_open(&L->shards[i], path, err);
        if (st != DATA_OK)
            return st;
    }
    return DATA_OK;
}

/* Sums the samples of every shard; an epoch needs at least one. */
static data_status count_samples(data_loader *L, const char *dir, const char *split,
                                 uint32_t *max_samples, char *err)
{
    *max_samples = 0;
    for (int i = 0; i < L->nshards; i++) {
        uint32_t n = shard_samples(&L->shards[i], L->T);
        L->epoch_samples += n;
        if (n > *max_samples)
            *max_samples = n;
    }
    if (L->epoch_samples == 0)
        return data_fail(err, DATA_ERR_FORMAT, "%s: no %s shard holds T+1 = %lld tokens",
                         dir, split, (long long)L->T + 1);
    return DATA_OK;
}

/* Allocates the cache once, so that data_loader_next never allocates. */
static data_status alloc_cache(data_loader *L, uint32_t max_samples, char *err)
{
    data_loader_cache *c = calloc(1, sizeof *c);
    if (!c)
        return data_fail(err, DATA_ERR_NOMEM, "loader: out of memory");
    L->cache = c;
    c->perm_shard = -1;
    c->order = malloc((size_t)L->nshards * sizeof *c->order);
    c->start = malloc(((size_t)L->nshards + 1) * sizeof *c->start);
    if (L->shuffle)
        c->perm = malloc((size_t)max_samples * sizeof *c->perm);
    if (!c->order || !c->start || (L->shuffle && !c->perm))
        return data_fail(err, DATA_ERR_NOMEM,
                         "loader: out of memory for the order of %d shards", L->nshards);
    return DATA_OK;
}

data_status data_loader_open(data_loader *L, const char *dir, const char *split,
                             int T, int vocab, uint64_t seed, int shuffle,
                             data_error_t err)
{
    memset(L, 0, sizeof *L);
    if (T < 1 || vocab < 1)
        return data_fail(err, DATA_ERR_ARG, "loader: T=%d and vocab=%d must both be >= 1",
                         T, vocab);
    L->T = T;
    L->vocab = vocab;
    L->seed = seed;
    L->shuffle = shuffle != 0;
    name_list names = {0};
    uint32_t max_samples = 0;
    data_status st = list_shards(&names, dir, split, err);
    if (st == DATA_OK)
        st = open_shards(L, dir, &names, err);
    free_names(&names);
    if (st == DATA_OK)
        st = count_samples(L, dir, split, &max_samples, err);
    if (st == DATA_OK)
        st = alloc_cache(L, max_samples, err);
    if (st != DATA_OK)
        data_loader_close(L);
    return st;
}

void data_loader_close(data_loader *L)
{
    for (int i = 0; i < L->nshards; i++)
        data_shard_close(&L->shards[i]);
    free(L->shards);
    if (L->cache) {
        free(L->cache->order);
        free(L->cache->start);
        free(L->cache->perm);
        free(L->cache);
    }
    memset(L, 0, sizeof *L);
}
