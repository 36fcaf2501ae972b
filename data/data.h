/* data.h: the public API of the data module.
 *
 * This is the minimal data path of the foundation: llm.c-compatible token
 * shards, `gptrain prep` with a byte-level tokenizer (vocab 256), and a
 * sequential loader. The full BPE tokenizer and the rank-sharded, shuffling
 * loader replace the prep tokenizer and the loader later; the shard format
 * stays.
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
 * header[0] = magic, header[1] = version, header[2] = number of tokens. */
#define DATA_SHARD_HEADER_INTS 256
#define DATA_SHARD_MAGIC 20240520
#define DATA_SHARD_VERSION 1 /* uint16 tokens */

/* Writes n uint16 tokens to path as one shard (header + tokens). */
data_status data_shard_write(const char *path, const uint16_t *tokens, size_t n,
                             data_error_t err);

/* A read-only, memory-mapped shard. */
typedef struct {
    char path[1024];
    void *map;            /* the whole file */
    size_t map_len;
    const uint16_t *tokens;
    size_t ntok;
} data_shard;

/* Maps path and validates it (on failure *s is left zeroed): header present, magic and version as above,
 * token count >= 0 and file size exactly header + ntok * 2 bytes. */
data_status data_shard_open(data_shard *s, const char *path, data_error_t err);
void data_shard_close(data_shard *s);

/* ---- prep ----------------------------------------------------------------- */

#define DATA_PREP_BLOCK_TOKENS 4096
#define DATA_PREP_SHARD_TOKENS 100000000

typedef struct {
    const char *out_dir;   /* created if missing */
    double val_fraction;   /* share of blocks sent to val, in [0, 1) */
    size_t block_tokens;   /* split granularity (CLI default DATA_PREP_BLOCK_TOKENS) */
    size_t shard_tokens;   /* max tokens per shard file, <= INT32_MAX
                            * (CLI default DATA_PREP_SHARD_TOKENS) */
    int quiet;             /* 1: no progress or skip messages */
} data_prep_opts;

typedef struct {
    int files_used;
    int files_skipped;     /* binary files */
    int files_duplicate;   /* the same file reached twice (e.g. by a link) */
    size_t train_tokens, val_tokens;
    int train_shards, val_shards;
} data_prep_stats;

/* Tokenizes the input files (directories are walked recursively in sorted
 * order; links to files already taken are skipped) with the byte-level
 * tokenizer: token = byte value. Files containing a NUL byte are binary and
 * skipped with a message on stderr. The token stream is cut into blocks of
 * block_tokens; block i goes to val when floor((i+1)*f) > floor(i*f) for
 * f = val_fraction, else to train. Writes out_dir/train_000000.bin, ...
 * and out_dir/val_000000.bin, ..., after removing any train_*.bin and
 * val_*.bin already in out_dir (so a smaller rerun leaves no stale shards for
 * the loader to mix in). Fails if no usable text was found. stats may be NULL. */
data_status data_prep(const char *const *inputs, int n_inputs,
                      const data_prep_opts *opts, data_prep_stats *stats,
                      data_error_t err);

/* ---- loader --------------------------------------------------------------- */

typedef struct {
    data_shard *shards;
    int nshards;
    int B, T, vocab;
    int cur;      /* current shard */
    size_t pos;   /* next token offset in the current shard */
} data_loader;

/* Opens every dir/<split>_*.bin (sorted by name) for batches of B x T.
 * Errors: no matching shard; a shard that fails data_shard_open; a shard with
 * fewer than B*T+1 tokens (the message names it and the sizes). On failure
 * nothing stays open and *L is zeroed. */
data_status data_loader_open(data_loader *L, const char *dir, const char *split,
                             int B, int T, int vocab, data_error_t err);

/* Fills inputs and targets (B*T ints each) with the next B*T+1 consecutive
 * tokens of the current shard (targets are inputs shifted by one), then
 * advances by B*T. At the end of a shard it moves to the next, wrapping to
 * the first. A token >= vocab is DATA_ERR_FORMAT naming the file and offset;
 * a failed call does not advance. */
data_status data_loader_next(data_loader *L, int *inputs, int *targets,
                             data_error_t err);

/* Back to the first batch of the first shard. */
void data_loader_reset(data_loader *L);
void data_loader_close(data_loader *L);

#endif
