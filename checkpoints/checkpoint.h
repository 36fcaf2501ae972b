/* checkpoint.h: the public API of the checkpoints module.
 *
 * Every gptrain file is one HDF5 file (format in checkpoints/FORMAT.md):
 * /model/<tensor> holds every parameter at its logical shape (wte as
 * (vocab, C), without the padded rows), and attributes on the root group
 * hold the model config, the step, a tokenizer reference, a format version
 * and the gptrain version. A training checkpoint adds the AdamW moments
 * (/optimizer/m/<tensor>, /optimizer/v/<tensor>) and the training state
 * (/train). Checkpoints are written by all ranks at once with parallel HDF5
 * (MPI-IO), each rank writing only the part of the flat buffers it owns,
 * and read back by any number of ranks, each reading only what it needs.
 * Files are written to PATH.tmp, flushed to disk, then renamed over PATH, so
 * a reader never sees a partial file. */
#ifndef CHECKPOINT_H
#define CHECKPOINT_H

#include "gpt.h"

typedef enum {
    CKPT_OK = 0,
    CKPT_ERR_IO = 1,     /* cannot create, write, read or rename a file */
    CKPT_ERR_FORMAT = 2, /* the file is not a gptrain model file */
} ckpt_status;

#define CKPT_ERRLEN 512
typedef char ckpt_error_t[CKPT_ERRLEN];

/* 2 added the tokenizer attribute, /optimizer and /train; 1 is still read. */
#define CKPT_FORMAT_VERSION 2

/* Saves m's parameters and config atomically to path from this process
 * alone; step is the number of optimizer steps taken, tokenizer the file
 * name of the run's tokenizer ("" or NULL for none). */
ckpt_status ckpt_save_model(const char *path, const gpt_model *m, long step,
                            const char *tokenizer, ckpt_error_t err);

/* Reads the model config stored in path (padded_vocab filled in). */
ckpt_status ckpt_read_config(const char *path, gpt_config *cfg, ckpt_error_t err);

/* Loads every parameter of path into m, whose config must equal the file's
 * (create m from ckpt_read_config). Checks every tensor's presence and shape. */
ckpt_status ckpt_load_model(const char *path, gpt_model *m, ckpt_error_t err);

/* What a file says about itself (gptrain inspect). */
typedef struct {
    long format_version, step;
    gpt_config cfg;
    char tokenizer[256], version[64]; /* "" when absent */
    int has_optimizer, has_train;
} ckpt_info;
ckpt_status ckpt_read_info(const char *path, ckpt_info *info, ckpt_error_t err);

/* ---- training checkpoints ------------------------------------------------ */

#define CKPT_LOSS_HISTORY 100

/* The state besides the model that resumes training exactly. */
typedef struct {
    long step;       /* optimizer steps taken (the schedule's position) */
    long tokens;     /* tokens trained on */
    long adam_step;  /* AdamW's bias-correction counter */
    unsigned long long epoch, cursor; /* the training loader's state */
    long seed, total_batch;
    int seq, shuffle;
    unsigned long long epoch_samples; /* samples in an epoch of the train split */
    int world, zero; /* the job that wrote it (information only) */
    const char *config; /* the run's effective config (TOML text) or NULL;
                           written, never read back (the file's record) */
    /* The numerics guard's memory: the last accepted losses, oldest first
     * (none in files of older versions). */
    double losses[CKPT_LOSS_HISTORY];
    int nlosses;
} ckpt_train_state;

/* This rank's part of the flat buffers, floats [lo, hi): params[i] is float
 * lo + i of the parameters, m[i] and v[i] of the AdamW moments. */
typedef struct {
    size_t lo, hi;
    float *params, *m, *v;
} ckpt_part;

/* Collective over MPI_COMM_WORLD. Every rank passes its own part; the parts
 * of all ranks tile the flat buffers, and each rank writes only its part of
 * each tensor (a hyperslab), with collective MPI-IO. The file is written as
 * path.tmp, flushed, and renamed over path by rank 0; every rank returns
 * the same status. */
ckpt_status ckpt_save(const char *path, const gpt_model *m, const ckpt_part *part,
                      const ckpt_train_state *ts, const char *tokenizer, ckpt_error_t err);

/* Reads the training state of a checkpoint (any rank, alone). A model file
 * without one is CKPT_ERR_FORMAT. */
ckpt_status ckpt_read_state(const char *path, ckpt_train_state *ts, ckpt_error_t err);

/* Reads floats [part->lo, part->hi) of the parameters into part->params
 * (unless it is NULL) and, when part->m is not NULL, of both moments into
 * part->m and part->v (any rank, alone). The file's config must equal m's;
 * every tensor must be there at its shape, and the blocks read must match
 * their checksums. */
ckpt_status ckpt_load_part(const char *path, const gpt_model *m, const ckpt_part *part,
                           ckpt_error_t err);

/* ---- background saves (--async-save) ---------------------------------------- */

typedef struct ckpt_async ckpt_async;

/* Collective over MPI_COMM_WORLD: a background writer with a communicator
 * of its own. Needs MPI initialised with MPI_THREAD_MULTIPLE (an error
 * otherwise). */
ckpt_status ckpt_async_new(ckpt_async **a, ckpt_error_t err);

/* Collective: waits for the previous save (returning its status if it
 * failed), copies this rank's part and the training state into the
 * writer's own buffers, and returns while a thread writes path exactly as
 * ckpt_save would; on rank 0, once the file is committed, the thread calls
 * committed(ctx, path) (to update `latest`). The model's table and config
 * must stay as they are until the save ends. */
ckpt_status ckpt_async_save(ckpt_async *a, const char *path, const gpt_model *m,
                            const ckpt_part *part, const ckpt_train_state *ts,
                            const char *tokenizer, void (*committed)(void *, const char *),
                            void *ctx, ckpt_error_t err);

/* Waits for the save in flight, if any; its status, the same on every rank.
 * Call before anything else touches HDF5 files. */
ckpt_status ckpt_async_wait(ckpt_async *a, ckpt_error_t err);

/* Collective: waits, then frees the writer and its communicator. */
void ckpt_async_free(ckpt_async *a);

/* ---- other formats ---------------------------------------------------------- */

/* Writes m's parameters as Hugging Face GPT-2 tensors (names, (in, out)
 * Conv1D weights, the real vocabulary's rows) to dir/model.safetensors
 * (atomically) and a matching dir/config.json. */
ckpt_status ckpt_export_safetensors(const gpt_model *m, const char *dir, ckpt_error_t err);

/* Creates m (B = T = 1) from a Hugging Face GPT-2 safetensors file (F32,
 * F16 or BF16; names with or without "transformer."; other tensors such as
 * attention masks are ignored). The heads come from heads > 0, else from
 * config.json beside the file. */
ckpt_status ckpt_import_safetensors(const char *path, int heads, gpt_model *m,
                                    ckpt_error_t err);

/* Creates m (B = T = 1) from an llm.c model file (gpt2_*.bin: header magic
 * 20240326, version 3 float32 or 5 bfloat16). */
ckpt_status ckpt_import_llmc(const char *path, gpt_model *m, ckpt_error_t err);

/* Writes m's parameters as an llm.c model file (version 3, float32, with
 * the padded vocabulary rows), atomically. */
ckpt_status ckpt_export_llmc(const gpt_model *m, const char *path, ckpt_error_t err);

/* ---- the run directory's checkpoints --------------------------------------- */

/* The checkpoint file name for a step: ckpt_<step, 8 digits>.h5. */
void ckpt_name(char *out, size_t len, long step);

/* Points dir/latest at file name `name` (in dir) atomically: latest is a
 * one-line text file, replaced by rename. */
ckpt_status ckpt_set_latest(const char *dir, const char *name, ckpt_error_t err);

/* The path latest points at, into out; CKPT_ERR_IO when there is no
 * latest (a fresh run directory). */
ckpt_status ckpt_latest(const char *dir, char *out, size_t len, ckpt_error_t err);

/* Deletes the dir's ckpt_*.h5 files except the newest keep_last (0 keeps
 * all), those whose step is a multiple of keep_every (> 0), and the one
 * latest points at; also any ckpt_*.h5.tmp left by a crash. */
void ckpt_prune(const char *dir, int keep_last, int keep_every);

#endif
