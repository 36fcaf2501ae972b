/* bpe_train.c: learns a byte-level BPE tokenizer from text (data.h).
 *
 * add() pre-splits each document with data_pretok_next and counts every
 * distinct piece in a hash table, so the text itself is never kept: only its
 * distinct pieces and their counts (3 MB of pieces for 100 MB of English). Pieces
 * longer than MAX_PIECE bytes are cut into chunks of at most that size (at a
 * UTF-8 character start where one is near): merges still stay inside a piece
 * and only the pairs across a cut are lost, while a megabyte of whitespace or
 * junk costs no more to train on than its length.
 *
 * finish() runs the usual incremental BPE: each distinct piece ("word") is an
 * array of token ids with a count; every adjacent pair has a total count and
 * a list of the words that (may) hold it; a max-heap orders the pairs by
 * (count desc, left asc, right asc). A merge rewrites only the words on its
 * pair's list and updates the counts of their neighbouring pairs, so a step
 * costs what it touches instead of a pass over the corpus. Merges are applied
 * exactly as encoding applies them (in order, left to right), so the span
 * of a token splits inside its word as its bytes alone would encode: no two
 * merges ever make the same bytes, which data_tok_from_merges demands.
 *
 * Heap entries are refreshed lazily. After its creation step a pair's count
 * can only fall: a merge of (a, b) into c removes pairs next to a and b and
 * adds pairs holding c, which is new. So a stored count is never below the
 * true one, and an entry whose count is still exact at the top is the true
 * best pair, tie-break included. Since only (count, left, right) decide,
 * the result depends on the multiset of pieces alone, not on the order they
 * were added or the hash tables' layout. */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PIECE 256

/* ---- counting pieces ------------------------------------------------------ */

typedef struct {
    uint64_t count; /* 0: an empty slot */
    size_t off;     /* the piece's bytes in the trainer's arena */
    uint32_t hash, len;
} piece_slot;

struct data_bpe_trainer {
    piece_slot *slots;
    size_t cap, n; /* cap is a power of two; n <= cap / 2 */
    unsigned char *bytes;
    size_t nbytes, bytes_cap;
};

/* arr (room for *cap items of elem bytes) grown to hold need items by
 * doubling: arr itself when it has room, else the moved array, or NULL
 * (arr intact) when memory is short. */
static void *reserve(void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return arr;
    size_t c = *cap ? *cap : 4;
    while (c < need)
        c *= 2;
    void *q = realloc(arr, c * elem);
    if (q)
        *cap = c;
    return q;
}

/* FNV-1a: pieces are short, so a byte loop is fast enough. */
static uint32_t hash_bytes(const unsigned char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return (uint32_t)(h ^ (h >> 32));
}

data_bpe_trainer *data_bpe_trainer_new(void)
{
    return calloc(1, sizeof(data_bpe_trainer));
}

void data_bpe_trainer_free(data_bpe_trainer *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->bytes);
    free(t);
}

static int rehash_pieces(data_bpe_trainer *t)
{
    size_t cap = t->cap ? 2 * t->cap : 1024;
    piece_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].count)
            continue;
        size_t j = t->slots[i].hash & (cap - 1);
        while (s[j].count)
            j = (j + 1) & (cap - 1);
        s[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return 0;
}

static int count_piece(data_bpe_trainer *t, const unsigned char *p, size_t n)
{
    if (2 * (t->n + 1) > t->cap && rehash_pieces(t))
        return -1;
    uint32_t h = hash_bytes(p, n);
    size_t j = h & (t->cap - 1);
    for (; t->slots[j].count; j = (j + 1) & (t->cap - 1)) {
        piece_slot *s = &t->slots[j];
        if (s->hash == h && s->len == n && !memcmp(t->bytes + s->off, p, n)) {
            s->count++;
            return 0;
        }
    }
    unsigned char *bytes = reserve(t->bytes, &t->bytes_cap, t->nbytes + n, 1);
    if (!bytes)
        return -1;
    t->bytes = bytes;
    memcpy(t->bytes + t->nbytes, p, n);
    t->slots[j] = (piece_slot){.count = 1, .off = t->nbytes, .hash = h, .len = (uint32_t)n};
    t->nbytes += n;
    t->n++;
    return 0;
}

/* Length of the next training chunk of a piece of n bytes: the piece, or
 * its first MAX_PIECE bytes backed off to a UTF-8 character start. */
static size_t chunk_len(const unsigned char *p, size_t n)
{
    if (n <= MAX_PIECE)
        return n;
    size_t cut = MAX_PIECE;
    while (cut > MAX_PIECE - 3 && (p[cut] & 0xC0) == 0x80)
        cut--;
    return (p[cut] & 0xC0) == 0x80 ? MAX_PIECE : cut;
}

data_status data_bpe_trainer_add(data_bpe_trainer *t, const unsigned char *text,
                                 size_t len, data_error_t err)
{
    if (!t || (!text && len))
        return data_fail(err, DATA_ERR_ARG, "bpe trainer: no trainer or no text");
    for (size_t i = 0; i < len;) {
        size_t n = data_pretok_next(text + i, len - i);
        for (size_t k = 0; k < n;) {
            size_t c = chunk_len(text + i + k, n - k);
            if (count_piece(t, text + i + k, c))
                return data_fail(err, DATA_ERR_NOMEM,
                                 "bpe trainer: out of memory after %zu distinct pieces", t->n);
            k += c;
        }
        i += n;
    }
    return DATA_OK;
}

/* ---- learning merges ------------------------------------------------------ */

typedef struct {
    uint64_t count;
    size_t off;     /* its token ids in bpe_state.syms */
    uint32_t len;
    uint32_t stamp; /* the last merge step that rewrote it */
} word;

typedef struct {
    uint64_t count;
    uint32_t left, right;
    uint32_t *where;     /* words that held the pair when it was counted */
    size_t nwhere, capwhere;
    uint32_t fresh_step; /* the step that last queued it for the heap */
} pair;

typedef struct {
    uint64_t count;
    uint32_t left, right, pair;
} heap_item;

typedef struct {
    word *words;
    uint32_t *syms;
    size_t nwords;
    pair *pairs;
    size_t npairs, cap_pairs;
    uint32_t *index; /* pair hash table: pair id + 1, 0 when empty */
    size_t index_cap;
    heap_item *heap;
    size_t nheap, cap_heap;
    uint32_t *fresh; /* pairs whose count rose in this step */
    size_t nfresh, cap_fresh;
    uint32_t step;   /* 1 + the index of the merge being applied */
    uint32_t a, b;   /* the pair being merged */
    uint32_t (*merges)[2];
    size_t nmerges, cap_merges;
} bpe_state;

static size_t pair_slot(const bpe_state *s, uint32_t l, uint32_t r)
{
    uint64_t key = ((uint64_t)l << 32 | r) * 0x9E3779B97F4A7C15ull;
    return (size_t)(key >> 32) & (s->index_cap - 1);
}

static int rehash_pairs(bpe_state *s)
{
    size_t cap = s->index_cap ? 2 * s->index_cap : 1 << 16;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return -1;
    free(s->index);
    s->index = idx;
    s->index_cap = cap;
    for (size_t p = 0; p < s->npairs; p++) {
        size_t j = pair_slot(s, s->pairs[p].left, s->pairs[p].right);
        while (idx[j])
            j = (j + 1) & (cap - 1);
        idx[j] = (uint32_t)p + 1;
    }
    return 0;
}

/* The id of pair (l, r), created with count 0 if create is set; -1 if it
 * does not exist (or cannot be created). */
static long find_pair(bpe_state *s, uint32_t l, uint32_t r, int create)
{
    if (create && 2 * (s->npairs + 1) > s->index_cap && rehash_pairs(s))
        return -1;
    size_t j = pair_slot(s, l, r);
    for (; s->index[j]; j = (j + 1) & (s->index_cap - 1)) {
        const pair *p = &s->pairs[s->index[j] - 1];
        if (p->left == l && p->right == r)
            return (long)s->index[j] - 1;
    }
    pair *pairs = NULL;
    if (create && s->npairs < UINT32_MAX - 1)
        pairs = reserve(s->pairs, &s->cap_pairs, s->npairs + 1, sizeof *pairs);
    if (!pairs)
        return -1;
    s->pairs = pairs;
    s->pairs[s->npairs] = (pair){.left = l, .right = r, .fresh_step = UINT32_MAX};
    s->index[j] = (uint32_t)++s->npairs;
    return (long)s->npairs - 1;
}

/* Adds n occurrences of (l, r) in word w; the pair is queued for the heap. */
static int pair_add(bpe_state *s, uint32_t l, uint32_t r, uint64_t n, uint32_t w)
{
    long id = find_pair(s, l, r, 1);
    if (id < 0)
        return -1;
    pair *p = &s->pairs[id];
    p->count += n;
    /* A word adds its pairs one after another, so a repeat is the last entry. */
    if (!p->nwhere || p->where[p->nwhere - 1] != w) {
        uint32_t *where = reserve(p->where, &p->capwhere, p->nwhere + 1, sizeof *where);
        if (!where)
            return -1;
        p->where = where;
        p->where[p->nwhere++] = w;
    }
    if (p->fresh_step != s->step) {
        uint32_t *fresh = reserve(s->fresh, &s->cap_fresh, s->nfresh + 1, sizeof *fresh);
        if (!fresh)
            return -1;
        s->fresh = fresh;
        p->fresh_step = s->step;
        s->fresh[s->nfresh++] = (uint32_t)id;
    }
    return 0;
}

/* Removes n occurrences of (l, r). A pair that drops to 0 never comes back
 * (see the top comment), so its word list is freed at once. */
static void pair_remove(bpe_state *s, uint32_t l, uint32_t r, uint64_t n)
{
    if (l == s->a && r == s->b)
        return; /* the merged pair itself, dropped whole */
    long id = find_pair(s, l, r, 0);
    if (id < 0)
        return;
    pair *p = &s->pairs[id];
    p->count -= n < p->count ? n : p->count;
    if (!p->count) {
        free(p->where);
        p->where = NULL;
        p->nwhere = p->capwhere = 0;
    }
}

static int ranks_above(const heap_item *x, const heap_item *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return x->left != y->left ? x->left < y->left : x->right < y->right;
}

static void sift_down(bpe_state *s, size_t i)
{
    heap_item *h = s->heap, it = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && ranks_above(&h[c + 1], &h[c]))
            c++;
        if (!ranks_above(&h[c], &it))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = it;
}

static int heap_push(bpe_state *s, uint32_t id)
{
    heap_item *heap = reserve(s->heap, &s->cap_heap, s->nheap + 1, sizeof *heap);
    if (!heap)
        return -1;
    s->heap = heap;
    const pair *p = &s->pairs[id];
    heap_item it = {p->count, p->left, p->right, id};
    size_t i = s->nheap++;
    while (i > 0 && ranks_above(&it, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = it;
    return 0;
}

/* Pushes the pairs queued in this step, now that their counts are final. */
static int push_fresh(bpe_state *s)
{
    for (size_t i = 0; i < s->nfresh; i++)
        if (s->pairs[s->fresh[i]].count && heap_push(s, s->fresh[i]))
            return -1;
    s->nfresh = 0;
    return 0;
}

/* Pops the best pair into *id; 0 when none occurs at least twice. Stale
 * entries are refreshed in place and sift down to their true rank. */
static int pop_best(bpe_state *s, uint32_t *id)
{
    while (s->nheap) {
        heap_item *top = &s->heap[0];
        uint64_t now = s->pairs[top->pair].count;
        if (now == top->count) {
            if (now < 2)
                return 0;
            *id = top->pair;
            s->heap[0] = s->heap[--s->nheap];
            sift_down(s, 0);
            return 1;
        }
        if (now)
            top->count = now;
        else
            s->heap[0] = s->heap[--s->nheap];
        sift_down(s, 0);
    }
    return 0;
}

/* Rewrites word w with (s->a, s->b) -> c, left to right and without overlap
 * as encoding does, and moves the counts of the pairs around each merge. */
static int merge_word(bpe_state *s, uint32_t w, uint32_t c)
{
    word *wd = &s->words[w];
    uint32_t *sym = s->syms + wd->off, n = wd->len, j = 0, a = s->a, b = s->b;
    uint64_t cnt = wd->count;
    int prev_merged = 0;
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && sym[i] == a && sym[i + 1] == b) {
            /* (sym[i-1], a) was already removed as the right neighbour of
             * the merge just before, if there was one. */
            if (i > 0 && !prev_merged)
                pair_remove(s, sym[i - 1], a, cnt);
            if (i + 2 < n)
                pair_remove(s, b, sym[i + 2], cnt);
            sym[j++] = c;
            i += 2;
            prev_merged = 1;
        } else {
            sym[j++] = sym[i++];
            prev_merged = 0;
        }
    }
    wd->len = j;
    /* c is new, so each c here is a merge; a (c, c) pair is added once, as
     * the left neighbour of its second c. */
    for (uint32_t k = 0; k < j; k++) {
        if (sym[k] != c)
            continue;
        if (k > 0 && pair_add(s, sym[k - 1], c, cnt, w))
            return -1;
        if (k + 1 < j && sym[k + 1] != c && pair_add(s, c, sym[k + 1], cnt, w))
            return -1;
    }
    return 0;
}

/* Learns merge number s->nmerges from pair id and applies it everywhere. */
static int apply_merge(bpe_state *s, uint32_t id)
{
    uint32_t(*merges)[2] = reserve(s->merges, &s->cap_merges, s->nmerges + 1, sizeof *merges);
    if (!merges)
        return -1;
    s->merges = merges;
    pair *p = &s->pairs[id];
    uint32_t c = 256 + (uint32_t)s->nmerges;
    s->a = p->left;
    s->b = p->right;
    s->merges[s->nmerges][0] = s->a;
    s->merges[s->nmerges][1] = s->b;
    s->nmerges++;
    s->step++;
    /* Detached first: merging adds pairs, which may move s->pairs. */
    uint32_t *where = p->where;
    size_t nwhere = p->nwhere;
    p->where = NULL;
    p->nwhere = p->capwhere = 0;
    p->count = 0;
    int rc = 0;
    for (size_t i = 0; i < nwhere && !rc; i++) {
        word *wd = &s->words[where[i]];
        if (wd->stamp == s->step)
            continue; /* listed twice */
        wd->stamp = s->step;
        rc = merge_word(s, where[i], c);
    }
    free(where);
    return rc ? rc : push_fresh(s);
}

/* Copies the trainer's pieces of two or more bytes into words and counts
 * their pairs; single bytes hold no pair and take no part. */
static int load_words(bpe_state *s, const data_bpe_trainer *t)
{
    s->words = malloc((t->n ? t->n : 1) * sizeof *s->words);
    s->syms = malloc((t->nbytes ? t->nbytes : 1) * sizeof *s->syms);
    if (!s->words || !s->syms)
        return -1;
    size_t off = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const piece_slot *ps = &t->slots[i];
        if (!ps->count || ps->len < 2)
            continue;
        uint32_t w = (uint32_t)s->nwords++;
        s->words[w] = (word){.count = ps->count, .off = off, .len = ps->len};
        for (uint32_t k = 0; k < ps->len; k++)
            s->syms[off + k] = t->bytes[ps->off + k];
        for (uint32_t k = 0; k + 1 < ps->len; k++)
            if (pair_add(s, s->syms[off + k], s->syms[off + k + 1], ps->count, w))
                return -1;
        off += ps->len;
    }
    return push_fresh(s);
}

static void free_state(bpe_state *s)
{
    for (size_t i = 0; i < s->npairs; i++)
        free(s->pairs[i].where);
    free(s->pairs);
    free(s->index);
    free(s->heap);
    free(s->fresh);
    free(s->words);
    free(s->syms);
    free(s->merges);
}

data_status data_bpe_trainer_finish(data_bpe_trainer *t, int vocab_size,
                                    data_tokenizer **out, data_error_t err)
{
    if (!t || !out)
        return data_fail(err, DATA_ERR_ARG, "bpe trainer: no trainer or no output");
    *out = NULL;
    if (vocab_size < 257)
        return data_fail(err, DATA_ERR_ARG,
                         "bpe trainer: vocab size %d is below 257 (256 bytes + end of text)",
                         vocab_size);
    if (vocab_size > BPE_MAX_VOCAB)
        return data_fail(err, DATA_ERR_ARG,
                         "bpe trainer: vocab size %d is above the tokenizer's limit of %d",
                         vocab_size, BPE_MAX_VOCAB);
    if (t->n > UINT32_MAX - 1)
        return data_fail(err, DATA_ERR_ARG, "bpe trainer: too many distinct pieces (%zu)", t->n);
    static const uint32_t no_merges[1][2];
    bpe_state s = {0};
    size_t want = (size_t)vocab_size - 257;
    uint32_t id;
    int rc = load_words(&s, t);
    while (!rc && s.nmerges < want && pop_best(&s, &id))
        rc = apply_merge(&s, id);
    data_status st;
    if (rc)
        st = data_fail(err, DATA_ERR_NOMEM, "bpe trainer: out of memory after %zu merges",
                       s.nmerges);
    else
        st = data_tok_from_merges(out, s.merges ? (const uint32_t(*)[2])s.merges : no_merges,
                                  (int)s.nmerges, 1, err);
    free_state(&s);
    return st;
}
