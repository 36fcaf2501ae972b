/* checkpoint.h: the public API of the checkpoints module.
 *
 * A model file is one HDF5 file: /model/<tensor> holds every parameter at its
 * logical shape (wte as (vocab, C), without the padded rows), and attributes
 * on the root group hold the model config, the step, a format version and the
 * gptrain version (format in checkpoints/FORMAT.md). Files are written to
 * PATH.tmp, flushed to disk, then renamed over PATH, so a reader never sees a
 * partial file. Optimizer state, loader state and parallel (MPI-IO) writes
 * come with the checkpoint issue. */
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

#define CKPT_FORMAT_VERSION 1

/* Saves m's parameters and config atomically to path; step is the number of
 * optimizer steps taken. */
ckpt_status ckpt_save_model(const char *path, const gpt_model *m, long step,
                            ckpt_error_t err);

/* Reads the model config stored in path (padded_vocab filled in). */
ckpt_status ckpt_read_config(const char *path, gpt_config *cfg, ckpt_error_t err);

/* Loads every parameter of path into m, whose config must equal the file's
 * (create m from ckpt_read_config). Checks every tensor's presence and shape. */
ckpt_status ckpt_load_model(const char *path, gpt_model *m, ckpt_error_t err);

#endif
