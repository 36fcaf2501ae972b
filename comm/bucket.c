/* bucket.c: gradient reduction in buckets that overlaps backward (ZeRO
 * stage 0, contract in comm.h). The model reports each layer's gradient
 * range as soon as its backward is done, last layer first, so consecutive
 * ranges are adjacent and grow a bucket downward through the flat buffer.
 * A bucket that reaches the target size is handed to a non-blocking
 * allreduce at once, while backward goes on with earlier layers; each new
 * report also tests the outstanding requests, which is what lets MPI make
 * progress without a progress thread. The bucket layout depends only on the
 * model and the size, so reductions are the same from run to run, and the
 * final waits go through the collective watchdog. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm_internal.h"

struct comm_bucketer {
    float *grads;
    size_t bucket_floats;
    size_t open_lo, open_hi; /* the bucket being filled */
    MPI_Request *reqs;
    size_t (*ranges)[2];
    int *rcs;
    int n, cap, armed, world, failed;
};

static int grow(comm_bucketer *b) {
    int cap = b->cap ? 2 * b->cap : 16;
    MPI_Request *r = realloc(b->reqs, sizeof(*r) * (size_t)cap);
    if (r) b->reqs = r;
    size_t (*rg)[2] = realloc(b->ranges, sizeof(*rg) * (size_t)cap);
    if (rg) b->ranges = rg;
    int *rc = realloc(b->rcs, sizeof(*rc) * (size_t)cap);
    if (rc) b->rcs = rc;
    if (!r || !rg || !rc) return 0;
    b->cap = cap;
    return 1;
}

/* Starts the allreduce of the open bucket. */
static void launch(comm_bucketer *b) {
    if (b->open_hi == b->open_lo) return;
    if (b->n == b->cap && !grow(b)) {
        b->failed = 1;
        return;
    }
    size_t lo = b->open_lo, n = b->open_hi - b->open_lo;
    b->ranges[b->n][0] = lo;
    b->ranges[b->n][1] = b->open_hi;
    comm_enter();
    b->rcs[b->n] = MPI_Iallreduce(MPI_IN_PLACE, b->grads + lo, (int)n, MPI_FLOAT, MPI_SUM,
                                  MPI_COMM_WORLD, &b->reqs[b->n]);
    b->n++;
    b->open_lo = b->open_hi = 0;
}

static void on_ready(void *ctx, size_t lo, size_t hi) {
    comm_bucketer *b = ctx;
    if (!b->armed || b->failed) return;
    if (b->open_hi != b->open_lo && hi != b->open_lo) launch(b);
    if (b->open_hi == b->open_lo) b->open_hi = hi;
    b->open_lo = lo;
    if (b->open_hi - b->open_lo >= b->bucket_floats) launch(b);
    int done;
    if (b->n) MPI_Testall(b->n, b->reqs, &done, MPI_STATUSES_IGNORE);
}

comm_status comm_bucketer_new(comm_bucketer **out, gpt_model *m, size_t bucket_bytes,
                              comm_error_t err) {
    comm_bucketer *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, COMM_ERRLEN, "out of memory for the gradient buckets");
        return COMM_ERR;
    }
    b->grads = m->grads;
    b->bucket_floats = bucket_bytes / sizeof(float) ? bucket_bytes / sizeof(float) : 1;
    MPI_Comm_size(MPI_COMM_WORLD, &b->world);
    gpt_set_grads_ready(m, on_ready, b);
    *out = b;
    return COMM_OK;
}

void comm_bucketer_arm(comm_bucketer *b) { b->armed = 1; }

comm_status comm_bucketer_finish(comm_bucketer *b, comm_error_t err) {
    if (!b->failed) launch(b);
    b->armed = 0;
    comm_status st = COMM_OK;
    float inv = 1.0f / (float)b->world;
    for (int i = 0; i < b->n; i++) {
        size_t lo = b->ranges[i][0], hi = b->ranges[i][1];
        if (comm_wait(b->rcs[i], &b->reqs[i], "allreduce (bucket)", (hi - lo) * sizeof(float),
                      err) != COMM_OK)
            st = COMM_ERR;
        for (size_t k = lo; k < hi; k++) b->grads[k] *= inv;
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
    free(b->reqs);
    free(b->ranges);
    free(b->rcs);
    free(b);
}
