/* data.h: the public API of the data module: llm.c-compatible token shards,
 * the byte-level BPE tokenizer (training, our file format, GPT-2's
 * vocab.json + merges.txt), `gptrain prep`, and the loader whose global
 * sample order is a function of (seed, epoch) alone, whatever the number of
 * ranks.
 *
 * Functions return a data_status and, on failure, write a one-line message
 * that names the file or value at fault into the caller's buffer. */
#ifndef DATA_H
#define DATA_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DATA_OK = 0,
    DATA_ERR_IO = 1,     /* a file could not be opened, read or written */
    DATA_ERR_FORMAT = 2, /* a file is not a valid shard, or holds bad tokens */
    DATA_ERR_ARG = 3,    /* a bad argument (e.g. no inputs, a bad option value) */
    DATA_ERR_NOMEM = 4,
} data_status;

#define DATA_ERRLEN 512
typedef char data_error_t[DATA_ERRLEN];

/* llm.c shard format: a header of 256 little-endian int32, then the tokens.
 * header[0] = magic, header[1] = version, header[2] = number of tokens.
 * uint16 tokens (magic 20240520, version 1) unless the vocabulary exceeds
 * 65535, then uint32 tokens (magic 20240801, version 7). */
#define DATA_SHARD_HEADER_INTS 256
#define DATA_SHARD_MAGIC 20240520
#define DATA_SHARD_VERSION 1
#define DATA_SHARD_MAGIC_U32 20240801
#define DATA_SHARD_VERSION_U32 7

/* Writes n tokens to path as one shard: uint16 when vocab <= 65535 (every
 * token must then be < 65536), else uint32. */
data_status data_shard_write(const char *path, const uint32_t *tokens, size_t n,
                             int vocab, data_error_t err);

/* A read-only, memory-mapped shard. */
typedef struct {
    char path[1024];
    void *map;            /* the whole file */
    size_t map_len;
    const void *tokens;   /* uint16_t or uint32_t, see token_bytes */
    int token_bytes;      /* 2 or 4 */
    size_t ntok;
} data_shard;

/* Maps path and validates it (on failure *s is left zeroed): header present,
 * a known magic with its version, and file size exactly header + ntok *
 * token_bytes. Errors name the file and, for corrupt data, the byte offset. */
data_status data_shard_open(data_shard *s, const char *path, data_error_t err);
void data_shard_close(data_shard *s);

/* Token i of s (i < s->ntok). */
static inline uint32_t data_shard_token(const data_shard *s, size_t i) {
    return s->token_bytes == 2 ? ((const uint16_t *)s->tokens)[i]
                               : ((const uint32_t *)s->tokens)[i];
}

/* ---- tokenizer ------------------------------------------------------------ */

/* GPT-2 style pre-splitting: returns the length of the piece of text that
 * starts at text[0] (len >= 1 gives a result >= 1). Pieces follow GPT-2's
 * pattern  's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?[^\sLN]+|\s+(?!\S)|\s+  where
 * L and N are Unicode letters and numbers of UTF-8 text; a byte that is not
 * valid UTF-8 counts as one character of the [^\sLN] class. BPE merges never
 * cross piece boundaries. */
size_t data_pretok_next(const unsigned char *text, size_t len);

/* A byte-level BPE tokenizer: every byte has a token, merges combine two
 * tokens into one, and an optional end-of-text token separates documents.
 * Immutable after creation, so many threads may encode with it at once. */
typedef struct data_tokenizer data_tokenizer;

#define DATA_EOT_TEXT "<|endoftext|>"

/* The tokenizer with ids 0..255 for the bytes, 256 + i for merge i (merges[i]
 * = {left id, right id}, in priority order) and, with eot, one more id for
 * the end-of-text token. The trainer builds its result with this. */
data_status data_tok_from_merges(data_tokenizer **out, const uint32_t (*merges)[2],
                                 int n_merges, int eot, data_error_t err);

/* Loads a tokenizer: a gptrain tokenizer file (data/TOKENIZER.md), or GPT-2's
 * Hugging Face layout given as a directory holding vocab.json and merges.txt.
 * "<|endoftext|>" in vocab.json becomes the end-of-text token. Every error
 * names the file and, where it applies, the line. */
data_status data_tok_load(data_tokenizer **out, const char *path, data_error_t err);
/* Writes tok in the gptrain tokenizer file format (atomically, via path.tmp). */
data_status data_tok_save(const data_tokenizer *tok, const char *path, data_error_t err);
void data_tok_free(data_tokenizer *tok);

int data_tok_vocab_size(const data_tokenizer *tok);
int data_tok_eot(const data_tokenizer *tok); /* -1 if there is none */
/* The bytes of token id (the EOT token's are "<|endoftext|>"); NULL if id is
 * out of range. */
const unsigned char *data_tok_token(const data_tokenizer *tok, int id, size_t *len);

/* A growable list of token ids. */
typedef struct {
    uint32_t *ids;
    size_t len, cap;
} data_tokens;
void data_tokens_free(data_tokens *t);

/* Per-thread encoding state: a cache of already-encoded pieces, cleared when
 * it reaches about 64 MB. */
typedef struct data_encoder data_encoder;
data_encoder *data_encoder_new(const data_tokenizer *tok);
void data_encoder_free(data_encoder *enc);

/* Appends the tokens of text to out. Text is taken literally: the string
 * "<|endoftext|>" inside it is ordinary text, not the special token. Output
 * is exactly GPT-2's for a GPT-2 tokenizer, and decodes back to the input
 * bytes, whatever they are (invalid UTF-8 included). On failure (out of
 * memory) part of the text's tokens may already be appended. */
data_status data_encode(data_encoder *enc, const unsigned char *text, size_t len,
                        data_tokens *out, data_error_t err);

/* BPE training: text goes in document by document (each is pre-split and its
 * pieces counted), then finish learns vocab_size - 257 merges (the 256 bytes
 * and the end-of-text token make up the rest), most frequent pair first,
 * ties broken by the smaller (left id, right id), so the result depends only
 * on the text. */
typedef struct data_bpe_trainer data_bpe_trainer;
data_bpe_trainer *data_bpe_trainer_new(void);
data_status data_bpe_trainer_add(data_bpe_trainer *t, const unsigned char *text,
                                 size_t len, data_error_t err);
/* 257 <= vocab_size <= 2^24. Fewer merges than asked are learnt when no pair
 * is left that occurs at least twice; the vocabulary is then smaller. Pieces
 * longer than 256 bytes are counted in 256-byte parts. The trainer keeps its
 * counts, so finish may be called again with another size. */
data_status data_bpe_trainer_finish(data_bpe_trainer *t, int vocab_size,
                                    data_tokenizer **out, data_error_t err);
void data_bpe_trainer_free(data_bpe_trainer *t);

/* ---- prep ----------------------------------------------------------------- */

#define DATA_PREP_BLOCK_TOKENS 4096
#define DATA_PREP_SHARD_TOKENS 100000000
#define DATA_PREP_VOCAB 4096
#define DATA_PREP_TRAIN_BYTES ((size_t)200 << 20)
#define DATA_TOKENIZER_FILE "tokenizer.bpe" /* in the output directory */
#define DATA_MANIFEST_FILE "manifest.json"

typedef struct {
    const char *out_dir;   /* created if missing */
    const char *tokenizer; /* an existing tokenizer (see data_tok_load), or NULL
                            * to train one with vocab_size entries */
    int vocab_size;        /* >= 257 when training */
    size_t train_bytes;    /* text that trains the tokenizer: whole documents in
                            * input order up to this many bytes (0: all) */
    double val_fraction;   /* share of blocks sent to val, in [0, 1) */
    size_t block_tokens;   /* split granularity */
    size_t shard_tokens;   /* max tokens per shard file, <= INT32_MAX */
    int quiet;             /* 1: no progress or skip messages */
} data_prep_opts;

typedef struct {
    int files_used;
    int files_skipped;     /* binary, special or unreadable files */
    int files_duplicate;   /* the same file reached twice (e.g. by a link) */
    size_t text_bytes;
    size_t train_tokens, val_tokens;
    int train_shards, val_shards;
    int vocab_size;
    double tokenizer_seconds, encode_seconds;
} data_prep_stats;

/* Turns text into token shards. Inputs are files, directories (walked
 * recursively in sorted order), glob patterns, or "-" for standard input;
 * every file is one document, and the end-of-text token precedes each
 * document. Files whose first 64 KiB hold a NUL byte are binary and skipped
 * with a message (the first ten are named); a file reached twice is read once. The tokenizer is loaded
 * or trained, then saved to out_dir/tokenizer.bpe. Documents are encoded in
 * parallel (OpenMP) in chunks cut where GPT-2 pre-splitting must break, so
 * the tokens do not depend on the thread count. The token stream is cut into
 * blocks of block_tokens; block i goes to val when floor((i+1)*f) >
 * floor(i*f) for f = val_fraction, else to train. Writes
 * out_dir/train_000000.bin, ... and val_000000.bin, ... (uint32 tokens when
 * the vocabulary exceeds 65535) after removing old shards there, and
 * out_dir/manifest.json (token counts, tokenizer, sources). Fails, naming
 * the input, on a missing path, a directory with no readable text, or no
 * text at all. stats may be NULL. */
data_status data_prep(const char *const *inputs, int n_inputs,
                      const data_prep_opts *opts, data_prep_stats *stats,
                      data_error_t err);

/* ---- loader --------------------------------------------------------------- */

/* A split's samples: sample j of a shard is its tokens [j*T, j*T + T] (T+1
 * tokens: inputs and targets shifted by one), j < (ntok - 1) / T. An epoch
 * visits every sample once. With shuffling, the shard order is a seeded
 * permutation per epoch and so is the sample order within each shard;
 * without, everything is in file order. The sequence of global samples is
 * thus a function of (seed, epoch) only. A micro-batch of P ranks x B
 * samples takes the next P*B global samples; rank r gets samples
 * [r*B, (r+1)*B) of them, so P ranks at micro-batch B see exactly what one
 * rank at micro-batch P*B sees. */
typedef struct {
    uint64_t epoch;
    uint64_t cursor; /* next global sample index within the epoch */
} data_loader_state;

typedef struct data_loader_cache data_loader_cache; /* private */

typedef struct {
    data_shard *shards;
    int nshards;
    int T, vocab, shuffle;
    uint64_t seed;
    uint64_t epoch_samples;
    data_loader_state state;
    data_loader_cache *cache;
} data_loader;

/* Maps every dir/<split>_*.bin (sorted by name). Errors: no matching shard; a
 * shard that fails data_shard_open; no shard holding T+1 tokens. On failure
 * nothing stays open and *L is zeroed. */
data_status data_loader_open(data_loader *L, const char *dir, const char *split,
                             int T, int vocab, uint64_t seed, int shuffle,
                             data_error_t err);

/* Fills inputs and targets (B*T ints each) with this rank's B samples of the
 * next global micro-batch of world*B samples, then advances the state past
 * the whole micro-batch (every rank advances alike). Crosses into the next
 * epoch as needed. A token >= vocab is DATA_ERR_FORMAT naming the file and
 * byte offset; a failed call does not advance. */
data_status data_loader_next(data_loader *L, int rank, int world, int B, int *inputs,
                             int *targets, data_error_t err);

data_loader_state data_loader_get_state(const data_loader *L);
/* Resumes from a state saved by any world size; DATA_ERR_ARG if its cursor is
 * not inside an epoch of this split. */
data_status data_loader_set_state(data_loader *L, data_loader_state st, data_error_t err);
/* Back to epoch 0, sample 0 (the validation loader does this before each
 * evaluation, so it always reads the same set). */
void data_loader_reset(data_loader *L);
void data_loader_close(data_loader *L);

#endif
