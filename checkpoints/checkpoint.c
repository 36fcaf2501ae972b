/* checkpoint.c: model files (parameters and config) written by one process
 * with HDF5, the pieces every checkpoint file shares (attributes, commit,
 * version check, the selection of a flat range in a tensor), and loading a
 * model from any gptrain file. The library's own error stack printing is
 * turned off; each failure is reported once, as one line naming the file
 * and the object at fault. */
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "ckpt_internal.h"

static const char *cfg_attr_names[5] = {"n_layer", "n_head", "n_embd", "max_seq", "vocab"};

static void cfg_to_array(const gpt_config *c, long v[5]) {
    v[0] = c->n_layer; v[1] = c->n_head; v[2] = c->n_embd; v[3] = c->max_seq; v[4] = c->vocab;
}

herr_t ckpt_put_long(hid_t loc, const char *name, long value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_LONG, &value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return r;
}

herr_t ckpt_put_string(hid_t loc, const char *name, const char *value) {
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, strlen(value) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, ty, value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(ty);
    return r;
}

herr_t ckpt_put_doubles(hid_t loc, const char *name, const double *v, int n) {
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return r;
}

int ckpt_get_doubles(hid_t loc, const char *name, double *v, int max) {
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    hsize_t dim = 0;
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
             H5Sget_simple_extent_dims(sp, &dim, NULL) == 1 && dim <= (hsize_t)max &&
             H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    return ok ? (int)dim : -1;
}

herr_t ckpt_get_long(hid_t loc, const char *name, long *value) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Aread(a, H5T_NATIVE_LONG, value);
    if (a >= 0) H5Aclose(a);
    return r;
}

herr_t ckpt_get_string(hid_t loc, const char *name, char *buf, size_t len) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ty = a < 0 ? -1 : H5Aget_type(a);
    size_t n = ty < 0 ? 0 : H5Tget_size(ty);
    herr_t r = -1;
    if (ty >= 0 && H5Tget_class(ty) == H5T_STRING && n > 0 && n <= len) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, n);
        r = H5Aread(a, mem, buf);
        H5Tclose(mem);
        buf[n - 1] = '\0';
    }
    if (ty >= 0) H5Tclose(ty);
    if (a >= 0) H5Aclose(a);
    return r;
}

hsize_t ckpt_stored_rows(const gpt_model *m, int i) {
    return i == GPT_T_WTE ? (hsize_t)m->cfg.vocab : (hsize_t)m->table.t[i].shape[0];
}

static herr_t write_tensors(hid_t file, const gpt_model *m) {
    hid_t g = H5Gcreate2(file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    herr_t r = 0;
    for (int i = 0; i < m->table.count && r >= 0; i++) {
        const gpt_tensor *t = &m->table.t[i];
        hsize_t dims[2] = {ckpt_stored_rows(m, i), (hsize_t)t->shape[1]};
        hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
        hid_t d = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT);
        r = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                                  H5P_DEFAULT, m->params + t->offset);
        if (d >= 0) H5Dclose(d);
        H5Sclose(sp);
    }
    H5Gclose(g);
    return r;
}

herr_t ckpt_write_attrs(hid_t file, const gpt_model *m, long step, const char *tokenizer) {
    long v[5];
    cfg_to_array(&m->cfg, v);
    herr_t r = ckpt_put_long(file, "format_version", CKPT_FORMAT_VERSION);
    for (int k = 0; k < 5 && r >= 0; k++) r = ckpt_put_long(file, cfg_attr_names[k], v[k]);
    if (r >= 0) r = ckpt_put_long(file, "step", step);
    if (r >= 0) r = ckpt_put_string(file, "tokenizer", tokenizer ? tokenizer : "");
    if (r >= 0) r = ckpt_put_string(file, "gptrain_version", GPTRAIN_VERSION);
    return r;
}

/* fsync the finished file, then the directory entry after the rename, so a
 * crash leaves either the old file or the complete new one. */
static int sync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

ckpt_status ckpt_commit(const char *tmp, const char *path, ckpt_error_t err) {
    if (sync_path(tmp, O_RDONLY) != 0) {
        unlink(tmp);
        snprintf(err, CKPT_ERRLEN, "%s: cannot flush the checkpoint to disk", tmp);
        return CKPT_ERR_IO;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        snprintf(err, CKPT_ERRLEN, "%s: cannot rename to %s", tmp, path);
        return CKPT_ERR_IO;
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    sync_path(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    return CKPT_OK;
}

ckpt_status ckpt_save_model(const char *path, const gpt_model *m, long step,
                            const char *tokenizer, ckpt_error_t err) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, CKPT_ERRLEN, "%s: cannot create the checkpoint file", tmp);
        return CKPT_ERR_IO;
    }
    herr_t r = ckpt_write_attrs(f, m, step, tokenizer);
    if (r >= 0) r = write_tensors(f, m);
    uint64_t *sums = calloc(ckpt_nblocks(m), sizeof(uint64_t));
    if (!sums) r = -1;
    if (r >= 0) ckpt_sum_part(m, 0, m->table.total, m->params, sums);
    if (r >= 0) r = ckpt_write_sums(f, "model", m, sums, 1, H5P_DEFAULT);
    free(sums);
    if (H5Fclose(f) < 0) r = -1;
    if (r < 0) {
        unlink(tmp);
        snprintf(err, CKPT_ERRLEN, "%s: writing the checkpoint failed", tmp);
        return CKPT_ERR_IO;
    }
    return ckpt_commit(tmp, path, err);
}

ckpt_status ckpt_open(const char *path, hid_t *f, long *version, ckpt_error_t err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, R_OK) != 0) {
        snprintf(err, CKPT_ERRLEN, "%s: cannot read the checkpoint: %s", path, strerror(errno));
        return CKPT_ERR_IO;
    }
    if (H5Fis_hdf5(path) <= 0 || (*f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        snprintf(err, CKPT_ERRLEN, "%s: not an HDF5 file (or a truncated one)", path);
        return CKPT_ERR_FORMAT;
    }
    *version = 0;
    if (ckpt_get_long(*f, "format_version", version) < 0 || *version < 1) {
        H5Fclose(*f);
        snprintf(err, CKPT_ERRLEN, "%s: not a gptrain checkpoint (no format_version "
                 "attribute)", path);
        return CKPT_ERR_FORMAT;
    }
    if (*version > CKPT_FORMAT_VERSION) {
        H5Fclose(*f);
        snprintf(err, CKPT_ERRLEN, "%s: format_version %ld is from a newer gptrain; this "
                 "one reads versions up to %d", path, *version, CKPT_FORMAT_VERSION);
        return CKPT_ERR_FORMAT;
    }
    return CKPT_OK;
}

/* Reads and validates the config attributes of an open model file. */
ckpt_status ckpt_config_of(hid_t f, const char *path, gpt_config *cfg, ckpt_error_t err) {
    long v[5];
    for (int k = 0; k < 5; k++) {
        if (ckpt_get_long(f, cfg_attr_names[k], &v[k]) < 0) {
            snprintf(err, CKPT_ERRLEN, "%s: missing attribute %s", path, cfg_attr_names[k]);
            return CKPT_ERR_FORMAT;
        }
    }
    *cfg = (gpt_config){(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4], 0};
    gpt_error_t gerr;
    if (gpt_config_finish(cfg, gerr) != GPT_OK) {
        snprintf(err, CKPT_ERRLEN, "%s: bad model config: %s", path, gerr);
        return CKPT_ERR_FORMAT;
    }
    return CKPT_OK;
}

ckpt_status ckpt_read_config(const char *path, gpt_config *cfg, ckpt_error_t err) {
    hid_t f;
    long version;
    ckpt_status st = ckpt_open(path, &f, &version, err);
    if (st) return st;
    st = ckpt_config_of(f, path, cfg, err);
    H5Fclose(f);
    return st;
}

ckpt_status ckpt_load_model(const char *path, gpt_model *m, ckpt_error_t err) {
    ckpt_part all = {0, m->table.total, m->params, NULL, NULL};
    return ckpt_load_part(path, m, &all, err);
}

ckpt_status ckpt_read_info(const char *path, ckpt_info *info, ckpt_error_t err) {
    hid_t f;
    memset(info, 0, sizeof(*info));
    ckpt_status st = ckpt_open(path, &f, &info->format_version, err);
    if (st) return st;
    st = ckpt_config_of(f, path, &info->cfg, err);
    ckpt_get_long(f, "step", &info->step);
    ckpt_get_string(f, "tokenizer", info->tokenizer, sizeof info->tokenizer);
    ckpt_get_string(f, "gptrain_version", info->version, sizeof info->version);
    info->has_optimizer = H5Lexists(f, "optimizer", H5P_DEFAULT) > 0;
    info->has_train = H5Lexists(f, "train", H5P_DEFAULT) > 0;
    H5Fclose(f);
    return st;
}

size_t ckpt_select(hid_t sp, const gpt_model *m, int i, size_t lo, size_t hi, size_t *first) {
    const gpt_tensor *t = &m->table.t[i];
    size_t cols = (size_t)t->shape[1], a = t->offset;
    size_t b = t->offset + (size_t)ckpt_stored_rows(m, i) * cols;
    a = lo > a ? lo : a;
    b = hi < b ? hi : b;
    H5Sselect_none(sp);
    if (a >= b) return 0;
    *first = a;
    /* Element range [e0, e1) in row-major order: a partial first row, whole
     * rows, a partial last row; HDF5 visits a union in row-major order too. */
    size_t e0 = a - t->offset, e1 = b - t->offset;
    hsize_t r0 = e0 / cols, c0 = e0 % cols, r1 = e1 / cols, c1 = e1 % cols;
    int nd = t->ndim;
    H5S_seloper_t op = H5S_SELECT_SET;
#define CKPT_SLAB(r, c, nr, nc) do { \
        hsize_t st_[2] = {(r), (c)}, cn_[2] = {(nr), (nc)}; \
        if (nd == 1) { st_[0] = (r) * cols + (c); cn_[0] = (nr) * (nc); } \
        H5Sselect_hyperslab(sp, op, st_, NULL, cn_, NULL); \
        op = H5S_SELECT_OR; \
    } while (0)
    if (r0 == r1) {
        CKPT_SLAB(r0, c0, 1, c1 - c0);
        return e1 - e0;
    }
    if (c0) {
        CKPT_SLAB(r0, c0, 1, cols - c0);
        r0++;
    }
    if (r1 > r0) CKPT_SLAB(r0, 0, r1 - r0, cols);
    if (c1) CKPT_SLAB(r1, 0, 1, c1);
#undef CKPT_SLAB
    return e1 - e0;
}
