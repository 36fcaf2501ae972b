/* state.c: training checkpoints: parameters, AdamW moments and the training
 * state, written by all ranks at once with parallel HDF5 and read back by
 * any number of ranks (contract in checkpoint.h).
 * Writing: every rank takes part in every metadata call (file, groups,
 * datasets, attributes are collective in parallel HDF5), then writes its
 * own range of the flat buffers into each tensor's dataset as a hyperslab,
 * with collective MPI-IO, so no rank ever gathers the whole state. Ranks
 * agree on the outcome before rank 0 commits the file by renaming it.
 * Reading needs no peer: each rank opens the file itself and reads the
 * hyperslabs it owns, which is what lets any world size and ZeRO stage
 * resume from any checkpoint. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "ckpt_internal.h"

/* One kind of buffer (parameters, m, v) into group g: every tensor's dataset,
 * each rank writing its part. */
static herr_t write_buffer(hid_t g, const gpt_model *m, const ckpt_part *p, const float *buf,
                           hid_t dxpl) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER); /* every element gets written */
    herr_t r = 0;
    for (int i = 0; i < m->table.count && r >= 0; i++) {
        const gpt_tensor *t = &m->table.t[i];
        hsize_t dims[2] = {ckpt_stored_rows(m, i), (hsize_t)t->shape[1]};
        hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
        hid_t d = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        size_t first = 0, n = ckpt_select(sp, m, i, p->lo, p->hi, &first);
        hsize_t hn = n;
        hid_t mem = H5Screate_simple(1, &hn, NULL);
        if (!n) H5Sselect_none(mem);
        r = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_FLOAT, mem, sp, dxpl,
                                  n ? buf + (first - p->lo) : buf);
        H5Sclose(mem);
        if (d >= 0) H5Dclose(d);
        H5Sclose(sp);
    }
    H5Pclose(dcpl);
    return r;
}

static herr_t write_train(hid_t f, const ckpt_train_state *ts) {
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    const char *names[] = {"step", "tokens", "adam_step", "epoch", "cursor", "seed",
                           "total_batch", "seq", "shuffle", "epoch_samples", "world", "zero"};
    long v[] = {ts->step, ts->tokens, ts->adam_step, (long)ts->epoch, (long)ts->cursor,
                ts->seed, ts->total_batch, ts->seq, ts->shuffle, (long)ts->epoch_samples,
                ts->world, ts->zero};
    herr_t r = 0;
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]) && r >= 0; k++)
        r = ckpt_put_long(g, names[k], v[k]);
    if (r >= 0 && ts->config) r = ckpt_put_string(g, "config", ts->config);
    if (r >= 0 && ts->nlosses > 0)
        r = ckpt_put_doubles(g, "recent_losses", ts->losses, ts->nlosses);
    H5Gclose(g);
    return r;
}

/* Everything but the commit, on every rank; -1 if any call failed here. */
static herr_t write_all(hid_t f, const gpt_model *m, const ckpt_part *p,
                        const ckpt_train_state *ts, const char *tokenizer, MPI_Comm comm) {
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    herr_t r = ckpt_write_attrs(f, m, ts->step, tokenizer);
    hid_t gm = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t go = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gmm = go < 0 ? -1 : H5Gcreate2(go, "m", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gv = go < 0 ? -1 : H5Gcreate2(go, "v", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gm < 0 || go < 0 || gmm < 0 || gv < 0) r = -1;
    if (r >= 0) r = write_buffer(gm, m, p, p->params, dxpl);
    if (r >= 0) r = write_buffer(gmm, m, p, p->m, dxpl);
    if (r >= 0) r = write_buffer(gv, m, p, p->v, dxpl);
    if (r >= 0) r = ckpt_write_part_sums(f, "model", m, p, p->params, dxpl, comm);
    if (r >= 0) r = ckpt_write_part_sums(f, "m", m, p, p->m, dxpl, comm);
    if (r >= 0) r = ckpt_write_part_sums(f, "v", m, p, p->v, dxpl, comm);
    if (r >= 0) r = write_train(f, ts);
    if (r >= 0) r = H5Fflush(f, H5F_SCOPE_GLOBAL); /* MPI_File_sync on every rank */
    hid_t groups[] = {gv, gmm, go, gm};
    for (int k = 0; k < 4; k++)
        if (groups[k] >= 0) H5Gclose(groups[k]);
    H5Pclose(dxpl);
    return r;
}

/* 1 when any rank passes 1. */
static int any_rank(int bad, MPI_Comm comm) {
    int any = bad;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    return any;
}

ckpt_status ckpt_save(const char *path, const gpt_model *m, const ckpt_part *part,
                      const ckpt_train_state *ts, const char *tokenizer, ckpt_error_t err) {
    return ckpt_save_on(MPI_COMM_WORLD, path, m, part, ts, tokenizer, err);
}

ckpt_status ckpt_save_on(MPI_Comm comm, const char *path, const gpt_model *m,
                         const ckpt_part *part, const ckpt_train_state *ts,
                         const char *tokenizer, ckpt_error_t err) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int rank;
    MPI_Comm_rank(comm, &rank);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (any_rank(f < 0, comm)) {
        if (f >= 0) H5Fclose(f);
        snprintf(err, CKPT_ERRLEN, "%s: cannot create the checkpoint file", tmp);
        return CKPT_ERR_IO;
    }
    herr_t r = write_all(f, m, part, ts, tokenizer, comm);
    if (H5Fclose(f) < 0) r = -1;
    ckpt_status st = CKPT_OK;
    if (any_rank(r < 0, comm)) {
        snprintf(err, CKPT_ERRLEN, "%s: writing the checkpoint failed", tmp);
        st = CKPT_ERR_IO;
        if (rank == 0) unlink(tmp);
    } else if (rank == 0) {
        st = ckpt_commit(tmp, path, err);
    }
    /* Everyone learns rank 0's commit, and its message. */
    int code = (int)st;
    MPI_Bcast(&code, 1, MPI_INT, 0, comm);
    MPI_Bcast(err, CKPT_ERRLEN, MPI_CHAR, 0, comm);
    return (ckpt_status)code;
}

ckpt_status ckpt_read_state(const char *path, ckpt_train_state *ts, ckpt_error_t err) {
    hid_t f;
    long version;
    ckpt_status st = ckpt_open(path, &f, &version, err);
    if (st) return st;
    hid_t g = H5Lexists(f, "train", H5P_DEFAULT) > 0 ? H5Gopen2(f, "train", H5P_DEFAULT) : -1;
    if (g < 0) {
        H5Fclose(f);
        snprintf(err, CKPT_ERRLEN, "%s: a model file without training state (no /train); "
                 "it cannot be resumed from", path);
        return CKPT_ERR_FORMAT;
    }
    const char *names[] = {"step", "tokens", "adam_step", "epoch", "cursor", "seed",
                           "total_batch", "seq", "shuffle", "epoch_samples", "world", "zero"};
    long v[12];
    for (int k = 0; k < 12 && !st; k++) {
        if (ckpt_get_long(g, names[k], &v[k]) < 0) {
            snprintf(err, CKPT_ERRLEN, "%s: missing /train attribute %s", path, names[k]);
            st = CKPT_ERR_FORMAT;
        }
    }
    double losses[CKPT_LOSS_HISTORY];
    int nlosses = st ? 0 : ckpt_get_doubles(g, "recent_losses", losses, CKPT_LOSS_HISTORY);
    if (nlosses < 0) {
        snprintf(err, CKPT_ERRLEN, "%s: /train attribute recent_losses is not a list of at "
                 "most %d numbers", path, CKPT_LOSS_HISTORY);
        st = CKPT_ERR_FORMAT;
    }
    H5Gclose(g);
    H5Fclose(f);
    if (st) return st;
    *ts = (ckpt_train_state){v[0], v[1], v[2], (unsigned long long)v[3],
                             (unsigned long long)v[4], v[5], v[6], (int)v[7], (int)v[8],
                             (unsigned long long)v[9], (int)v[10], (int)v[11], NULL, {0},
                             nlosses};
    memcpy(ts->losses, losses, sizeof(double) * (size_t)nlosses);
    return CKPT_OK;
}

/* Floats [p->lo, p->hi) of every tensor in group `group` into buf. */
ckpt_status ckpt_read_buffer(hid_t f, const char *group, const gpt_model *m,
                               const ckpt_part *p, float *buf, const char *path,
                               ckpt_error_t err) {
    hid_t g = H5Lexists(f, group, H5P_DEFAULT) > 0 ? H5Gopen2(f, group, H5P_DEFAULT) : -1;
    if (g < 0) {
        snprintf(err, CKPT_ERRLEN, "%s: missing group /%s", path, group);
        return CKPT_ERR_FORMAT;
    }
    ckpt_status st = CKPT_OK;
    for (int i = 0; i < m->table.count && !st; i++) {
        const gpt_tensor *t = &m->table.t[i];
        hid_t d = H5Lexists(g, t->name, H5P_DEFAULT) > 0 ? H5Dopen2(g, t->name, H5P_DEFAULT)
                                                         : -1;
        hid_t sp = d < 0 ? -1 : H5Dget_space(d);
        hsize_t dims[2] = {0, 1};
        int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
        if (nd == t->ndim) H5Sget_simple_extent_dims(sp, dims, NULL);
        if (d < 0) {
            snprintf(err, CKPT_ERRLEN, "%s: missing tensor /%s/%s", path, group, t->name);
            st = CKPT_ERR_FORMAT;
        } else if (nd != t->ndim || dims[0] != ckpt_stored_rows(m, i) ||
                   dims[1] != (hsize_t)t->shape[1]) {
            snprintf(err, CKPT_ERRLEN, "%s: tensor /%s/%s has shape (%llu, %llu), the model "
                     "needs (%llu, %d)", path, group, t->name, (unsigned long long)dims[0],
                     (unsigned long long)dims[1],
                     (unsigned long long)ckpt_stored_rows(m, i), t->shape[1]);
            st = CKPT_ERR_FORMAT;
        } else {
            size_t first = 0, n = ckpt_select(sp, m, i, p->lo, p->hi, &first);
            hsize_t hn = n;
            hid_t mem = H5Screate_simple(1, &hn, NULL);
            if (n && H5Dread(d, H5T_NATIVE_FLOAT, mem, sp, H5P_DEFAULT,
                             buf + (first - p->lo)) < 0) {
                snprintf(err, CKPT_ERRLEN, "%s: cannot read tensor /%s/%s (a damaged "
                         "file?)", path, group, t->name);
                st = CKPT_ERR_FORMAT;
            }
            H5Sclose(mem);
        }
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
    }
    H5Gclose(g);
    return st;
}

ckpt_status ckpt_load_part(const char *path, const gpt_model *m, const ckpt_part *part,
                           ckpt_error_t err) {
    hid_t f;
    long version;
    ckpt_status st = ckpt_open(path, &f, &version, err);
    if (st) return st;
    gpt_config cfg;
    if (!(st = ckpt_config_of(f, path, &cfg, err)) && memcmp(&cfg, &m->cfg, sizeof(cfg))) {
        snprintf(err, CKPT_ERRLEN, "%s: the model differs: the file has %d layers, %d heads, "
                 "%d channels, max seq %d, vocab %d; this run %d, %d, %d, %d, %d", path,
                 cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.max_seq, cfg.vocab, m->cfg.n_layer,
                 m->cfg.n_head, m->cfg.n_embd, m->cfg.max_seq, m->cfg.vocab);
        st = CKPT_ERR_FORMAT;
    }
    /* Each buffer is read, then checked against its checksums. */
    const char *groups[3] = {"model", "optimizer/m", "optimizer/v"}, *sums[3] = {"model", "m", "v"};
    float *bufs[3] = {part->params, part->m, part->v};
    for (int k = 0; k < 3 && !st; k++) {
        if (!bufs[k]) continue;
        st = ckpt_read_buffer(f, groups[k], m, part, bufs[k], path, err);
        if (!st) st = ckpt_verify(f, sums[k], groups[k], m, part, bufs[k], path, err);
    }
    H5Fclose(f);
    return st;
}
