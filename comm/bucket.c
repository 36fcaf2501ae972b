/* bucket.c: gradient reduction in buckets that overlaps backward (ZeRO
 * stages 0 and 1, contract in comm_internal.h). The model reports each
 * unit's gradient range as soon as its backward is done, last layer first,
 * so consecutive ranges are adjacent and grow a bucket downward through the
 * flat buffer. A bucket that reaches the target size is handed at once to a
 * non-blocking allreduce (stage 0) or reduce-scatter onto the shards (stage
 * 1), while backward goes on with earlier layers; each new report also tests
 * the outstanding requests, which is what lets MPI make progress without a
 * progress thread. The bucket layout depends only on the model and the
 * size, so reductions are the same from run to run, and the final waits go
 * through the collective watchdog. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm_internal.h"

typedef struct {
    size_t lo, hi;
    size_t off; /* stage 1: where this rank's part goes in its shard */
    int rc;
    int *counts, *displs; /* stage 1: the split of [lo, hi) over the shards */
} bucket;

struct comm_bucketer {
    const comm_zero *z;
    float *grads;
    size_t bucket_floats;
    size_t open_lo, open_hi; /* the bucket being filled */
    bucket *b;
    MPI_Request *reqs; /* bucket i's request is reqs[i] (for MPI_Testall) */
    int n, cap, armed, failed;
};

static int grow(comm_bucketer *b) {
    int cap = b->cap ? 2 * b->cap : 16;
    bucket *nb = realloc(b->b, sizeof(*nb) * (size_t)cap);
    if (nb) b->b = nb;
    MPI_Request *r = realloc(b->reqs, sizeof(*r) * (size_t)cap);
    if (r) b->reqs = r;
    if (!nb || !r) return 0;
    for (int i = b->cap; i < cap; i++) {
        nb[i].counts = calloc((size_t)b->z->world, sizeof(int));
        nb[i].displs = calloc((size_t)b->z->world, sizeof(int));
        if (!nb[i].counts || !nb[i].displs) {
            free(nb[i].counts);
            free(nb[i].displs);
            b->cap = i;
            return 0;
        }
    }
    b->cap = cap;
    return 1;
}

/* Starts the reduction of the open bucket. */
static void launch(comm_bucketer *b) {
    if (b->open_hi == b->open_lo) return;
    if (b->n == b->cap && !grow(b)) {
        b->failed = 1;
        return;
    }
    bucket *k = &b->b[b->n];
    k->lo = b->open_lo;
    k->hi = b->open_hi;
    comm_enter();
    if (b->z->stage == 0)
        k->rc = MPI_Iallreduce(MPI_IN_PLACE, b->grads + k->lo, (int)(k->hi - k->lo), MPI_FLOAT,
                               MPI_SUM, MPI_COMM_WORLD, &b->reqs[b->n]);
    else {
        k->off = comm_zero_split(b->z, k->lo, k->hi, k->counts, k->displs);
        k->rc = MPI_Ireduce_scatter(MPI_IN_PLACE, b->grads + k->lo, k->counts, MPI_FLOAT,
                                    MPI_SUM, MPI_COMM_WORLD, &b->reqs[b->n]);
    }
    b->n++;
    b->open_lo = b->open_hi = 0;
}

void comm_bucketer_ready(comm_bucketer *b, size_t lo, size_t hi) {
    if (!b->armed || b->failed) return;
    if (b->open_hi != b->open_lo && hi != b->open_lo) launch(b);
    if (b->open_hi == b->open_lo) b->open_hi = hi;
    b->open_lo = lo;
    if (b->open_hi - b->open_lo >= b->bucket_floats) launch(b);
    /* A request that completes here becomes MPI_REQUEST_NULL, which the
     * watchdog's wait then passes at once. */
    int done;
    if (b->n) MPI_Testall(b->n, b->reqs, &done, MPI_STATUSES_IGNORE);
}

comm_status comm_bucketer_new(comm_bucketer **out, const comm_zero *z, float *grads,
                              size_t bucket_bytes, comm_error_t err) {
    comm_bucketer *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, COMM_ERRLEN, "out of memory for the gradient buckets");
        return COMM_ERR;
    }
    b->z = z;
    b->grads = grads;
    b->bucket_floats = bucket_bytes / sizeof(float) ? bucket_bytes / sizeof(float) : 1;
    *out = b;
    return COMM_OK;
}

void comm_bucketer_arm(comm_bucketer *b) { b->armed = 1; }

comm_status comm_bucketer_finish(comm_bucketer *b, comm_error_t err) {
    if (!b->failed) launch(b);
    b->armed = 0;
    comm_status st = COMM_OK;
    const comm_zero *z = b->z;
    for (int i = 0; i < b->n; i++) {
        bucket *k = &b->b[i];
        if (comm_wait(k->rc, &b->reqs[i], z->stage == 0 ? "allreduce (bucket)" :
                      "reduce_scatter (bucket)", (k->hi - k->lo) * sizeof(float), err))
            st = COMM_ERR;
    }
    float inv = 1.0f / (float)z->world;
    if (z->stage == 0) {
        for (int i = 0; i < b->n; i++)
            for (size_t j = b->b[i].lo; j < b->b[i].hi; j++) b->grads[j] *= inv;
    } else {
        /* Each bucket's part landed at the bucket's start and moves to its
         * place in the shard, which lies inside the same bucket: buckets
         * never touch each other's floats. */
        for (int i = 0; i < b->n; i++) {
            bucket *k = &b->b[i];
            float *to = b->grads + z->lo + k->off, *from = b->grads + k->lo;
            size_t n = (size_t)k->counts[z->rank];
            memmove(to, from, n * sizeof(float));
            for (size_t j = 0; j < n; j++) to[j] *= inv;
        }
    }
    b->n = 0;
    b->open_lo = b->open_hi = 0;
    if (b->failed) {
        /* Ranks cannot continue with buckets that others did reduce. */
        snprintf(err, COMM_ERRLEN, "out of memory recording gradient buckets");
        return COMM_ERR;
    }
    return st;
}

void comm_bucketer_free(comm_bucketer *b) {
    if (!b) return;
    for (int i = 0; i < b->cap; i++) {
        free(b->b[i].counts);
        free(b->b[i].displs);
    }
    free(b->b);
    free(b->reqs);
    free(b);
}
