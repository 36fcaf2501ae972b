/* ckpt_internal.h: what the checkpoint module's files share: HDF5 attribute
 * helpers, the atomic commit of a finished file, opening a file with its
 * version checked, and the selection of a flat-buffer range inside a
 * tensor's dataset. Not part of the public API. */
#ifndef CKPT_INTERNAL_H
#define CKPT_INTERNAL_H

#include <hdf5.h>
#include <mpi.h>
#include "checkpoint.h"

herr_t ckpt_put_long(hid_t loc, const char *name, long value);
herr_t ckpt_put_string(hid_t loc, const char *name, const char *value);
herr_t ckpt_get_long(hid_t loc, const char *name, long *value);
/* An attribute of n doubles (n >= 1); reading gives the count, 0 when the
 * attribute is absent, -1 when it is not a list of at most max numbers. */
herr_t ckpt_put_doubles(hid_t loc, const char *name, const double *v, int n);
int ckpt_get_doubles(hid_t loc, const char *name, double *v, int max);
/* Reads a string attribute into buf (at most len bytes with the NUL). */
herr_t ckpt_get_string(hid_t loc, const char *name, char *buf, size_t len);

/* The root attributes: format version, model config, step, tokenizer
 * reference ("" for none) and the writer's version. */
herr_t ckpt_write_attrs(hid_t file, const gpt_model *m, long step, const char *tokenizer);

/* Rows of tensor i as stored: wte keeps only the real vocabulary. */
hsize_t ckpt_stored_rows(const gpt_model *m, int i);

/* fsyncs tmp, renames it over path and fsyncs the directory, so a crash
 * leaves the old file or the complete new one. */
ckpt_status ckpt_commit(const char *tmp, const char *path, ckpt_error_t err);

/* Opens path read-only after checking it is a gptrain HDF5 file of a format
 * version this build reads; *version is set. */
ckpt_status ckpt_open(const char *path, hid_t *f, long *version, ckpt_error_t err);

/* The model config of an open file, validated. */
ckpt_status ckpt_config_of(hid_t f, const char *path, gpt_config *cfg, ckpt_error_t err);

/* Selects in dataspace sp (tensor i's stored shape) the elements that are
 * floats [lo, hi) of the flat buffers; returns how many (0: none selected).
 * *first is the flat index of the first, so the data sit at buf + (*first -
 * lo) of a buffer that starts at float lo. */
size_t ckpt_select(hid_t sp, const gpt_model *m, int i, size_t lo, size_t hi, size_t *first);

/* Floats [p->lo, p->hi) of every tensor in group (e.g. "model",
 * "optimizer/m") into buf, checking presence and shapes (state.c). */
ckpt_status ckpt_read_buffer(hid_t f, const char *group, const gpt_model *m,
                             const ckpt_part *p, float *buf, const char *path,
                             ckpt_error_t err);

/* ---- checksums (checksum.c) ----------------------------------------------- */

#define CKPT_BLOCK 65536 /* floats of the flat buffer per checksum */
size_t ckpt_nblocks(const gpt_model *m);
/* Adds into sums[] the hashes of the stored floats of [lo, hi); buf[0] is
 * float lo. */
void ckpt_sum_part(const gpt_model *m, size_t lo, size_t hi, const float *buf,
                   uint64_t *sums);
/* Writes /checksums/<name> (the writer rank writes, the others select
 * nothing; dxpl H5P_DEFAULT for one process). */
herr_t ckpt_write_sums(hid_t f, const char *name, const gpt_model *m, const uint64_t *sums,
                       int writer, hid_t dxpl);
/* Collective: every rank's part of one buffer, summed over ranks, written. */
herr_t ckpt_write_part_sums(hid_t f, const char *name, const gpt_model *m, const ckpt_part *p,
                            const float *buf, hid_t dxpl, MPI_Comm comm);

/* ckpt_save over the ranks of comm (the async writer has its own). */
ckpt_status ckpt_save_on(MPI_Comm comm, const char *path, const gpt_model *m,
                         const ckpt_part *part, const ckpt_train_state *ts,
                         const char *tokenizer, ckpt_error_t err);
/* Checks the blocks that [p->lo, p->hi) touches against /checksums/<name>,
 * reading the rest of any block read only in part. Files of format 1 have
 * no checksums and pass. */
ckpt_status ckpt_verify(hid_t f, const char *name, const char *group, const gpt_model *m,
                        const ckpt_part *p, const float *buf, const char *path,
                        ckpt_error_t err);

/* ---- Hugging Face GPT-2 layout (safetensors.c) --------------------------- */

/* 1 when HF stores tensor i transposed (its Conv1D weights, (in, out)). */
int st_transposed(const gpt_model *m, int i);
/* HF's name of tensor i and its shape there (rows r, cols c; c is 1 for
 * 1-D tensors). */
void st_hf_layout(const gpt_model *m, int i, char *name, size_t len, size_t *r, size_t *c);

#endif
