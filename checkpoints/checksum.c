/* checksum.c: block checksums of the flat buffers stored in a file, so that
 * a damaged file is an error instead of a silently wrong model. HDF5 keeps
 * no checksum of contiguous datasets, and its checksum filter needs chunked
 * datasets, which parallel writes handle poorly; so each buffer (the
 * parameters, each AdamW moment) gets one 64-bit sum per block of 65536
 * floats of the flat buffer, over the floats the file stores. An element
 * contributes a hash of (flat index, bits), and sums wrap modulo 2^64:
 * order-free, so ranks add their own parts and one allreduce combines them,
 * and a reader checks any range it reads block by block. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include "ckpt_internal.h"

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t elem_hash(size_t idx, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return mix((uint64_t)idx * 0x9e3779b97f4a7c15ULL + bits);
}

size_t ckpt_nblocks(const gpt_model *m) {
    return (m->table.total + CKPT_BLOCK - 1) / CKPT_BLOCK;
}

/* Sum of the hashes of the stored floats in [s, e); buf[0] is float s. */
static uint64_t range_sum(const gpt_model *m, size_t s, size_t e, const float *buf) {
    uint64_t acc = 0;
    for (int i = 0; i < m->table.count; i++) {
        const gpt_tensor *t = &m->table.t[i];
        size_t a = t->offset, b = a + (size_t)ckpt_stored_rows(m, i) * (size_t)t->shape[1];
        a = a > s ? a : s;
        b = b < e ? b : e;
        for (size_t j = a; j < b; j++) acc += elem_hash(j, buf[j - s]);
    }
    return acc;
}

void ckpt_sum_part(const gpt_model *m, size_t lo, size_t hi, const float *buf,
                   uint64_t *sums) {
    if (lo >= hi) return;
    long b0 = (long)(lo / CKPT_BLOCK), b1 = (long)((hi - 1) / CKPT_BLOCK);
#pragma omp parallel for schedule(static)
    for (long k = b0; k <= b1; k++) {
        size_t s = (size_t)k * CKPT_BLOCK > lo ? (size_t)k * CKPT_BLOCK : lo;
        size_t e = (size_t)(k + 1) * CKPT_BLOCK < hi ? (size_t)(k + 1) * CKPT_BLOCK : hi;
        sums[k] += range_sum(m, s, e, buf + (s - lo));
    }
}

herr_t ckpt_write_sums(hid_t f, const char *name, const gpt_model *m, const uint64_t *sums,
                       int writer, hid_t dxpl) {
    hid_t g = H5Lexists(f, "checksums", H5P_DEFAULT) > 0
                  ? H5Gopen2(f, "checksums", H5P_DEFAULT)
                  : H5Gcreate2(f, "checksums", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hsize_t n = ckpt_nblocks(m);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(g, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t mem = H5Screate_simple(1, &n, NULL);
    if (!writer) {
        H5Sselect_none(sp);
        H5Sselect_none(mem);
    }
    herr_t r = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_UINT64, mem, sp, dxpl, sums);
    if (r >= 0) r = ckpt_put_long(d, "block", CKPT_BLOCK);
    H5Sclose(mem);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    H5Gclose(g);
    return r;
}

herr_t ckpt_write_part_sums(hid_t f, const char *name, const gpt_model *m, const ckpt_part *p,
                            const float *buf, hid_t dxpl, MPI_Comm comm) {
    uint64_t *sums = calloc(ckpt_nblocks(m), sizeof(uint64_t));
    int bad = !sums, rank;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
    if (bad) {
        free(sums);
        return -1;
    }
    MPI_Comm_rank(comm, &rank);
    ckpt_sum_part(m, p->lo, p->hi, buf, sums);
    MPI_Allreduce(MPI_IN_PLACE, sums, (int)ckpt_nblocks(m), MPI_UINT64_T, MPI_SUM, comm);
    herr_t r = ckpt_write_sums(f, name, m, sums, rank == 0, dxpl);
    free(sums);
    return r;
}

/* The stored sums of one buffer, or NULL when the file has none (format 1). */
static uint64_t *read_sums(hid_t f, const char *name, const gpt_model *m) {
    char path[64];
    snprintf(path, sizeof path, "checksums/%s", name);
    if (H5Lexists(f, "checksums", H5P_DEFAULT) <= 0 || H5Lexists(f, path, H5P_DEFAULT) <= 0)
        return NULL;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t n = 0;
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1) H5Sget_simple_extent_dims(sp, &n, NULL);
    uint64_t *sums = n == ckpt_nblocks(m) ? malloc(n * sizeof(uint64_t)) : NULL;
    if (sums && H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, sums) < 0) {
        free(sums);
        sums = NULL;
    }
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return sums;
}

ckpt_status ckpt_verify(hid_t f, const char *name, const char *group, const gpt_model *m,
                        const ckpt_part *p, const float *buf, const char *path,
                        ckpt_error_t err) {
    if (p->lo >= p->hi) return CKPT_OK;
    uint64_t *want = read_sums(f, name, m);
    if (!want) {
        if (H5Lexists(f, "checksums", H5P_DEFAULT) <= 0) return CKPT_OK; /* format 1 */
        snprintf(err, CKPT_ERRLEN, "%s: missing or damaged /checksums/%s", path, name);
        return CKPT_ERR_FORMAT;
    }
    size_t b0 = p->lo / CKPT_BLOCK, b1 = (p->hi - 1) / CKPT_BLOCK, total = m->table.total;
    float *scratch = NULL;
    ckpt_status st = CKPT_OK;
    for (size_t k = b0; k <= b1 && !st; k++) {
        size_t s = k * CKPT_BLOCK, e = s + CKPT_BLOCK < total ? s + CKPT_BLOCK : total;
        uint64_t got = 0;
        if (s >= p->lo && e <= p->hi) {
            got = range_sum(m, s, e, buf + (s - p->lo));
        } else {
            /* A block this rank reads in part: read the rest of it to check it. */
            if (!scratch && !(scratch = malloc(CKPT_BLOCK * sizeof(float)))) {
                snprintf(err, CKPT_ERRLEN, "%s: out of memory checking the file", path);
                st = CKPT_ERR_IO;
                break;
            }
            ckpt_part blk = {s, e, scratch, NULL, NULL};
            st = ckpt_read_buffer(f, group, m, &blk, scratch, path, err);
            if (!st) got = range_sum(m, s, e, scratch);
        }
        if (!st && got != want[k]) {
            snprintf(err, CKPT_ERRLEN, "%s: checksum mismatch in /%s, floats %zu..%zu of the "
                     "flat buffer: the file is damaged", path, group, s, e - 1);
            st = CKPT_ERR_FORMAT;
        }
    }
    free(scratch);
    free(want);
    return st;
}
