/* bpe_internal.h: the tokenizer's representation, shared by the files that
 * build it (bpe.c, bpe_file.c, bpe_hf.c with bpe_json.c) and the encoder
 * (bpe_encode.c). Not part of the public API (data.h). */
#ifndef BPE_INTERNAL_H
#define BPE_INTERNAL_H

#include "data.h"
#include "data_internal.h"

/* Largest vocabulary any loader accepts: far above real vocabularies, low
 * enough that ids, counts and line numbers all fit an int. */
#define BPE_MAX_VOCAB (1 << 24)
/* Largest total of token bytes: merges can double token lengths, so a
 * hostile merge list could otherwise ask for an exponential amount. */
#define BPE_MAX_BYTES ((uint64_t)1 << 32)

/* One slot of the merge map (left, right) -> (rank, result). */
typedef struct {
    uint64_t key; /* left << 32 | right; BPE_EMPTY_KEY when free */
    uint32_t rank, out;
} bpe_merge_slot;
#define BPE_EMPTY_KEY UINT64_MAX

struct data_tokenizer {
    int vocab, eot;             /* eot is -1 when there is none */
    uint64_t *off;              /* token i is bytes[off[i] .. off[i + 1]) */
    unsigned char *bytes;
    uint32_t byte_id[256];      /* the single-byte token of each byte */
    uint32_t *index;            /* open addressing, token bytes -> id + 1 */
    size_t index_mask;          /* (0 = free); the EOT token is left out */
    uint32_t (*merges)[3];      /* {left, right, result} in rank order */
    int n_merges;
    bpe_merge_slot *mtab;
    size_t mtab_mask;
};

/* Where a tokenizer's tokens and merges were read from, so that validation
 * errors can name the file and line. A NULL file means the tokenizer came
 * from data_tok_from_merges: errors then name the token or merge index. */
typedef struct {
    const char *tok_file;
    const int *tok_lines;   /* line of token i, or NULL: tok_line0 + i */
    int tok_line0;
    int vocab_line;         /* where a missing byte token is reported */
    const char *merge_file;
    int merge_line0;        /* line of merge i is merge_line0 + i */
} bpe_where;

/* A tokenizer of vocab tokens holding total_bytes bytes and n_merges merges,
 * all still to be filled in (off[0] is 0); NULL when out of memory. */
data_tokenizer *bpe_alloc(int vocab, uint64_t total_bytes, int n_merges);

/* Validates the filled-in tokens (non-empty; EOT's are DATA_EOT_TEXT; no two
 * alike; every byte a single-byte token) and builds byte_id and index. */
data_status bpe_set_tokens(data_tokenizer *tok, const bpe_where *w, data_error_t err);

/* Validates the filled-in merges (ids in range and not EOT, result bytes =
 * left bytes + right bytes, no pair twice) and builds the merge map. */
data_status bpe_set_merges(data_tokenizer *tok, const bpe_where *w, data_error_t err);

/* bpe_set_tokens then bpe_set_merges; on success *out = tok, on failure tok
 * is freed. */
data_status bpe_finish(data_tokenizer *tok, const bpe_where *w, data_tokenizer **out,
                       data_error_t err);

/* The id of the (non-EOT) token with these bytes, or -1; after bpe_set_tokens. */
int bpe_find(const data_tokenizer *tok, const unsigned char *s, size_t len);

/* A fast hash of a byte string, shared by the token index and the encoder's
 * piece cache. */
uint64_t bpe_hash(const unsigned char *s, size_t len);

static inline uint64_t bpe_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The merge of (left, right), or NULL when the pair has no rank. Inline: it
 * is the encoder's innermost lookup. */
static inline const bpe_merge_slot *bpe_merge_find(const data_tokenizer *tok,
                                                   uint32_t left, uint32_t right)
{
    uint64_t key = (uint64_t)left << 32 | right;
    for (size_t i = bpe_mix(key) & tok->mtab_mask;; i = (i + 1) & tok->mtab_mask) {
        const bpe_merge_slot *s = &tok->mtab[i];
        if (s->key == key)
            return s;
        if (s->key == BPE_EMPTY_KEY)
            return NULL;
    }
}

/* Reads the whole file at path into *buf (NUL-terminated, for the caller to
 * free) and its size into *len. */
data_status bpe_read_file(const char *path, char **buf, size_t *len, data_error_t err);

/* GPT-2's bytes_to_unicode, backwards: the byte that the character cp
 * stands for in vocab.json and merges.txt, or -1. */
int bpe_symbol_byte(uint32_t cp);

/* Decodes the UTF-8 character at s (n >= 1 bytes) into *cp; returns its
 * length, or 0 if it is not valid UTF-8 (overlong, surrogate, > U+10FFFF). */
size_t bpe_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* vocab.json as read (bpe_json.c): entry i is the token whose raw bytes are
 * keys[off .. off + len), with its id and the line of its key. */
typedef struct {
    size_t off, len;
    long id;
    int line;
} bpe_vocab_entry;

typedef struct {
    unsigned char *keys;
    size_t keys_len;
    bpe_vocab_entry *entries;
    size_t n;
} bpe_vocab;

/* Parses text (len bytes, the contents of path) as vocab.json. Ids are only
 * checked to be integers from 0 to BPE_MAX_VOCAB - 1. */
data_status bpe_vocab_parse(bpe_vocab *v, const char *path, const char *text, size_t len,
                            data_error_t err);
void bpe_vocab_free(bpe_vocab *v);

/* Loads GPT-2's Hugging Face layout: dir/vocab.json and dir/merges.txt. */
data_status bpe_hf_load(data_tokenizer **out, const char *dir, data_error_t err);

#endif
