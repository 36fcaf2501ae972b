/* async.c: checkpoints written in the background (--async-save; contract
 * in checkpoint.h). The training thread copies this rank's part of the
 * state into staging buffers of its own (the only stall) and returns; a
 * writer thread then runs the same collective save as ckpt_save, over a
 * communicator duplicated for it alone, so its MPI-IO and agreement
 * collectives never mix with the training thread's collectives on
 * MPI_COMM_WORLD. That needs MPI_THREAD_MULTIPLE. HDF5 itself is not
 * thread-safe, so HDF5 is only ever used by one thread at a time: a new
 * save, a resume or any other file access first waits for the writer. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ckpt_internal.h"

struct ckpt_async {
    MPI_Comm comm;
    pthread_t thread;
    int running;
    const gpt_model *m;
    ckpt_part part;  /* lo, hi and the staging buffers */
    size_t cap;      /* floats in each staging buffer */
    ckpt_train_state ts;
    char path[4096], tokenizer[256];
    void (*committed)(void *ctx, const char *path);
    void *ctx;
    ckpt_status st;
    ckpt_error_t err;
};

ckpt_status ckpt_async_new(ckpt_async **out, ckpt_error_t err) {
    int level = 0;
    MPI_Query_thread(&level);
    *out = NULL;
    if (level < MPI_THREAD_MULTIPLE) {
        snprintf(err, CKPT_ERRLEN, "asynchronous saves need MPI_THREAD_MULTIPLE, which this "
                 "MPI did not grant");
        return CKPT_ERR_IO;
    }
    ckpt_async *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, CKPT_ERRLEN, "out of memory for the checkpoint writer");
        return CKPT_ERR_IO;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &a->comm);
    *out = a;
    return CKPT_OK;
}

static void *writer(void *arg) {
    ckpt_async *a = arg;
    a->st = ckpt_save_on(a->comm, a->path, a->m, &a->part, &a->ts, a->tokenizer, a->err);
    int rank;
    MPI_Comm_rank(a->comm, &rank);
    if (!a->st && rank == 0 && a->committed) a->committed(a->ctx, a->path);
    return NULL;
}

ckpt_status ckpt_async_wait(ckpt_async *a, ckpt_error_t err) {
    if (!a || !a->running) return CKPT_OK;
    pthread_join(a->thread, NULL);
    a->running = 0;
    if (a->st) snprintf(err, CKPT_ERRLEN, "%s", a->err);
    return a->st;
}

/* Staging buffers for n floats of each kind, grown on demand. */
static int stage(ckpt_async *a, size_t n) {
    if (n <= a->cap) return 1;
    float *p = realloc(a->part.params, n * sizeof(float));
    if (p) a->part.params = p;
    float *mm = realloc(a->part.m, n * sizeof(float));
    if (mm) a->part.m = mm;
    float *v = realloc(a->part.v, n * sizeof(float));
    if (v) a->part.v = v;
    if (!p || !mm || !v) return 0;
    a->cap = n;
    return 1;
}

ckpt_status ckpt_async_save(ckpt_async *a, const char *path, const gpt_model *m,
                            const ckpt_part *part, const ckpt_train_state *ts,
                            const char *tokenizer, void (*committed)(void *, const char *),
                            void *ctx, ckpt_error_t err) {
    ckpt_status st = ckpt_async_wait(a, err);
    if (st) return st;
    size_t n = part->hi - part->lo;
    int bad = !stage(a, n ? n : 1);
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, a->comm);
    if (bad) {
        snprintf(err, CKPT_ERRLEN, "out of memory staging a checkpoint (on some rank)");
        return CKPT_ERR_IO;
    }
    memcpy(a->part.params, part->params, n * sizeof(float));
    memcpy(a->part.m, part->m, n * sizeof(float));
    memcpy(a->part.v, part->v, n * sizeof(float));
    a->part.lo = part->lo;
    a->part.hi = part->hi;
    a->m = m;
    a->ts = *ts;
    snprintf(a->path, sizeof a->path, "%s", path);
    snprintf(a->tokenizer, sizeof a->tokenizer, "%s", tokenizer ? tokenizer : "");
    a->committed = committed;
    a->ctx = ctx;
    if (pthread_create(&a->thread, NULL, writer, a) != 0) {
        snprintf(err, CKPT_ERRLEN, "cannot start the checkpoint writer thread");
        return CKPT_ERR_IO;
    }
    a->running = 1;
    return CKPT_OK;
}

void ckpt_async_free(ckpt_async *a) {
    if (!a) return;
    ckpt_error_t err;
    ckpt_async_wait(a, err);
    MPI_Comm_free(&a->comm);
    free(a->part.params);
    free(a->part.m);
    free(a->part.v);
    free(a);
}
