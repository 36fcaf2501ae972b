/* bpe_encode.c: text -> token ids with a byte-level BPE tokenizer, exactly as
 * GPT-2's encoder.py does it.
 *
 * The text is pre-split (data_pretok_next) and each piece encoded alone:
 * its bytes become byte tokens, then the adjacent pair of lowest rank is
 * merged, all its occurrences left to right, until no pair has a rank.
 * Pieces are kept in a doubly linked list with a min-heap of (rank,
 * position), so a long piece (a megabyte of one letter) costs O(n log n)
 * rather than bpe()'s O(n^2). Natural text repeats its pieces, so each
 * encoder (one per thread: the tokenizer itself is read-only) caches the
 * ids of the pieces it has seen; the cache is emptied when it grows past
 * its bounds rather than evicting piecemeal, which keeps it simple. */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

/* Longer pieces are not cached: they are rare, and would crowd out words. */
#define CACHE_MAX_PIECE 64
/* The cache is emptied before it passes 1M pieces (2M slots of 16 bytes) or
 * 32 MB of piece bytes and ids: at most about 64 MB per encoder. */
#define CACHE_MAX_ENTRIES (1u << 20)
#define CACHE_MAX_ARENA ((size_t)32 << 20)
#define CACHE_MIN_SLOTS 4096
/* Scratch for pieces longer than this is freed after use, so one huge piece
 * does not pin tens of MB per encoder for good. */
#define SCRATCH_KEEP ((size_t)1 << 20)

/* A cached piece: its bytes and ids live in the encoder's arenas. */
typedef struct {
    uint32_t hash;      /* low bits of bpe_hash, to skip most memcmp calls */
    uint32_t key_off, ids_off;
    uint16_t key_len;   /* 0 marks a free slot (pieces are never empty) */
    uint16_t n_ids;
} cache_slot;

struct data_encoder {
    const data_tokenizer *tok;
    cache_slot *slots;
    size_t mask, count;
    unsigned char *keys;
    size_t keys_len, keys_cap;
    uint32_t *ids;
    size_t ids_len, ids_cap;
    /* Scratch for one piece of up to `cap` bytes: node ids, links, heap. */
    uint32_t *id, *next, *prev;
    uint64_t *heap, *pending;
    size_t cap;
};

#define DEAD UINT32_MAX
#define NONE UINT32_MAX

data_encoder *data_encoder_new(const data_tokenizer *tok)
{
    data_encoder *enc = calloc(1, sizeof *enc);
    if (!enc)
        return NULL;
    enc->tok = tok;
    enc->slots = calloc(CACHE_MIN_SLOTS, sizeof *enc->slots);
    if (!enc->slots) {
        free(enc);
        return NULL;
    }
    enc->mask = CACHE_MIN_SLOTS - 1;
    return enc;
}

static void free_scratch(data_encoder *enc)
{
    free(enc->id);
    free(enc->next);
    free(enc->prev);
    free(enc->heap);
    free(enc->pending);
    enc->id = enc->next = enc->prev = NULL;
    enc->heap = enc->pending = NULL;
    enc->cap = 0;
}

void data_encoder_free(data_encoder *enc)
{
    if (!enc)
        return;
    free(enc->slots);
    free(enc->keys);
    free(enc->ids);
    free_scratch(enc);
    free(enc);
}

/* Room for n more ids in out. */
static int reserve(data_tokens *out, size_t n)
{
    if (out->cap - out->len >= n)
        return 1;
    size_t cap = out->cap ? out->cap : 1024;
    while (cap - out->len < n) {
        if (cap > SIZE_MAX / 2 / sizeof *out->ids)
            return 0;
        cap *= 2;
    }
    uint32_t *ids = realloc(out->ids, cap * sizeof *ids);
    if (!ids)
        return 0;
    out->ids = ids;
    out->cap = cap;
    return 1;
}

/* ---- the per-piece BPE -------------------------------------------------- */

static int grow_scratch(data_encoder *enc, size_t n)
{
    if (n <= enc->cap)
        return 1;
    free_scratch(enc);
    enc->id = malloc(n * sizeof *enc->id);
    enc->next = malloc(n * sizeof *enc->next);
    enc->prev = malloc(n * sizeof *enc->prev);
    /* Each merge pushes at most two pairs, so 3n entries always suffice. */
    enc->heap = malloc(3 * n * sizeof *enc->heap);
    enc->pending = malloc(n * sizeof *enc->pending);
    if (!enc->id || !enc->next || !enc->prev || !enc->heap || !enc->pending) {
        free_scratch(enc);
        return 0;
    }
    enc->cap = n;
    return 1;
}

static void sift_down(uint64_t *h, size_t n, size_t i)
{
    uint64_t v = h[i];
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
    }
    h[i] = v;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    for (; i > 0 && h[(i - 1) / 2] > v; i = (i - 1) / 2)
        h[i] = h[(i - 1) / 2];
    h[i] = v;
}

/* The merge of the pair that starts at node p, or NULL. */
static const bpe_merge_slot *pair_at(const data_encoder *enc, uint32_t p, size_t n)
{
    uint32_t q = enc->next[p];
    return q < n ? bpe_merge_find(enc->tok, enc->id[p], enc->id[q]) : NULL;
}

/* Heap keys order by rank, then by position: left to right within a rank. */
static uint64_t heap_key(uint32_t rank, uint32_t pos)
{
    return (uint64_t)rank << 32 | pos;
}

/* Merges the pair at node p into p. New pairs go on the heap, except those
 * ranked below the pass's rank: bpe() finishes a pass over every occurrence
 * of its pair before it looks at any other, so those wait in `pending`. */
static void merge_at(data_encoder *enc, uint32_t p, uint32_t out, uint32_t rank, size_t n,
                     size_t *nheap, size_t *npending)
{
    uint32_t q = enc->next[p];
    enc->id[p] = out;
    enc->id[q] = DEAD;
    enc->next[p] = enc->next[q];
    if (enc->next[q] < n)
        enc->prev[enc->next[q]] = p;
    uint32_t left[2] = {enc->prev[p], p};
    for (int k = 0; k < 2; k++) {
        const bpe_merge_slot *m = left[k] == NONE ? NULL : pair_at(enc, left[k], n);
        if (!m)
            continue;
        if (m->rank < rank)
            enc->pending[(*npending)++] = heap_key(m->rank, left[k]);
        else
            heap_push(enc->heap, nheap, heap_key(m->rank, left[k]));
    }
}

/* Runs BPE on the n bytes of s (n < UINT32_MAX); the result is the chain of
 * live nodes from node 0 in enc->id / enc->next. */
static void bpe_piece(data_encoder *enc, const unsigned char *s, size_t n)
{
    uint32_t *id = enc->id, *next = enc->next, *prev = enc->prev;
    uint64_t *heap = enc->heap;
    size_t nheap = 0, npending = 0;
    for (size_t i = 0; i < n; i++) {
        id[i] = enc->tok->byte_id[s[i]];
        next[i] = (uint32_t)i + 1;
        prev[i] = i ? (uint32_t)i - 1 : NONE;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const bpe_merge_slot *m = pair_at(enc, (uint32_t)i, n);
        if (m)
            heap[nheap++] = heap_key(m->rank, (uint32_t)i);
    }
    for (size_t i = nheap / 2; i-- > 0;)
        sift_down(heap, nheap, i);
    while (nheap > 0) {
        uint32_t rank = (uint32_t)(heap[0] >> 32);
        while (nheap > 0 && (uint32_t)(heap[0] >> 32) == rank) {
            uint32_t p = (uint32_t)heap[0];
            heap[0] = heap[--nheap];
            sift_down(heap, nheap, 0);
            /* Stale entries (a side already merged away) fail this check:
             * node ids only ever grow, so a pair never comes back. */
            const bpe_merge_slot *m = id[p] == DEAD ? NULL : pair_at(enc, p, n);
            if (m && m->rank == rank)
                merge_at(enc, p, m->out, rank, n, &nheap, &npending);
        }
        for (size_t i = 0; i < npending; i++)
            heap_push(heap, &nheap, enc->pending[i]);
        npending = 0;
    }
}

/* ---- the piece cache ---------------------------------------------------- */

static void cache_clear(data_encoder *enc)
{
    memset(enc->slots, 0, (enc->mask + 1) * sizeof *enc->slots);
    enc->count = enc->keys_len = enc->ids_len = 0;
}

/* The slot holding s, or the free slot where it would go. */
static cache_slot *cache_slot_of(const data_encoder *enc, const unsigned char *s,
                                 size_t n, uint64_t h)
{
    for (size_t i = h & enc->mask;; i = (i + 1) & enc->mask) {
        cache_slot *c = &enc->slots[i];
        if (c->key_len == 0 || (c->hash == (uint32_t)h && c->key_len == n &&
                                !memcmp(enc->keys + c->key_off, s, n)))
            return c;
    }
}

/* Doubles the table; on failure the cache just stays as it is. */
static void cache_grow(data_encoder *enc)
{
    size_t size = 2 * (enc->mask + 1);
    cache_slot *old = enc->slots, *slots = calloc(size, sizeof *slots);
    if (!slots)
        return;
    size_t old_size = enc->mask + 1;
    enc->slots = slots;
    enc->mask = size - 1;
    for (size_t i = 0; i < old_size; i++) {
        if (!old[i].key_len)
            continue;
        size_t j = old[i].hash & enc->mask;
        while (slots[j].key_len)
            j = (j + 1) & enc->mask;
        slots[j] = old[i];
    }
    free(old);
}

static int arena_fit(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    void *p = realloc(*buf, c * elem);
    if (!p)
        return 0;
    *buf = p;
    *cap = c;
    return 1;
}

/* Remembers that piece s encodes to ids (n_ids of them). The cache is an
 * optimisation, so running out of memory here just skips the insert. */
static void cache_put(data_encoder *enc, const unsigned char *s, size_t n, uint64_t h,
                      const uint32_t *ids, size_t n_ids)
{
    if (enc->count >= CACHE_MAX_ENTRIES ||
        enc->keys_len + n + (enc->ids_len + n_ids) * sizeof *ids > CACHE_MAX_ARENA)
        cache_clear(enc);
    if (2 * (enc->count + 1) > enc->mask + 1)
        cache_grow(enc);
    if (2 * (enc->count + 1) > enc->mask + 1 ||
        !arena_fit((void **)&enc->keys, &enc->keys_cap, enc->keys_len + n, 1) ||
        !arena_fit((void **)&enc->ids, &enc->ids_cap, enc->ids_len + n_ids, sizeof *ids))
        return;
    cache_slot *c = cache_slot_of(enc, s, n, h);
    *c = (cache_slot){(uint32_t)h, (uint32_t)enc->keys_len, (uint32_t)enc->ids_len,
                      (uint16_t)n, (uint16_t)n_ids};
    memcpy(enc->keys + enc->keys_len, s, n);
    memcpy(enc->ids + enc->ids_len, ids, n_ids * sizeof *ids);
    enc->keys_len += n;
    enc->ids_len += n_ids;
    enc->count++;
}

/* ---- encoding ----------------------------------------------------------- */

/* Appends the ids of piece s (n >= 1 bytes) to out, which has room for n. */
static data_status encode_piece(data_encoder *enc, const unsigned char *s, size_t n,
                                data_tokens *out, data_error_t err)
{
    if (n == 1) {
        out->ids[out->len++] = enc->tok->byte_id[s[0]];
        return DATA_OK;
    }
    uint64_t h = 0;
    if (n <= CACHE_MAX_PIECE) {
        h = bpe_hash(s, n);
        const cache_slot *c = cache_slot_of(enc, s, n, h);
        if (c->key_len) {
            memcpy(out->ids + out->len, enc->ids + c->ids_off, c->n_ids * sizeof *out->ids);
            out->len += c->n_ids;
            return DATA_OK;
        }
    }
    if (n >= UINT32_MAX)
        return data_fail(err, DATA_ERR_ARG, "encode: a piece of %zu bytes is too long", n);
    if (!grow_scratch(enc, n))
        return data_fail(err, DATA_ERR_NOMEM, "encode: out of memory (a %zu-byte piece)",
                         n);
    bpe_piece(enc, s, n);
    uint32_t *first = out->ids + out->len;
    for (uint32_t p = 0; p < n; p = enc->next[p])
        out->ids[out->len++] = enc->id[p];
    if (n <= CACHE_MAX_PIECE)
        cache_put(enc, s, n, h, first, (size_t)(out->ids + out->len - first));
    if (n > SCRATCH_KEEP)
        free_scratch(enc);
    return DATA_OK;
}

data_status data_encode(data_encoder *enc, const unsigned char *text, size_t len,
                        data_tokens *out, data_error_t err)
{
    for (size_t at = 0; at < len;) {
        size_t n = data_pretok_next(text + at, len - at);
        if (!reserve(out, n))
            return data_fail(err, DATA_ERR_NOMEM, "encode: out of memory (%zu tokens)",
                             out->len + n);
        data_status st = encode_piece(enc, text + at, n, out, err);
        if (st != DATA_OK)
            return st;
        at += n;
    }
    return DATA_OK;
}
