/* bucket_nccl.c: the GPU's gradient buckets (ZeRO stages 0 and 1 over NCCL,
 * contract in comm_nccl.h). The twin of bucket.c: the same growth of a
 * bucket downward through the flat buffer as the model reports final
 * ranges, the same layout for a given model and size. What differs is who
 * waits: nothing here blocks the host. A full bucket is queued on the
 * communication stream behind an event on the compute stream, the compute
 * stream later waits on an event behind the last reduction, and the host
 * learns that the collectives ended (or hung) from comm_nccl_wait. NCCL
 * reduces in place and needs no packing: at stage 1 a bucket is one ncclReduce per
 * shard it touches, each rank receiving its own part where it already is. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "comm_internal.h"
#include "comm_nccl.h"

struct comm_nccl_bucketer {
    comm_nccl *c;
    const comm_zero *z;
    char *grads;
    comm_nccl_type type;
    size_t esize, bucket_elems;
    void *stream;             /* the compute stream (cudaStream_t) */
    size_t open_lo, open_hi;  /* the bucket being filled */
    int armed;
    int *counts, *displs;     /* stage 1: a bucket's split over the shards */
};

comm_status comm_nccl_bucketer_new(comm_nccl_bucketer **out, comm_nccl *c, const comm_zero *z,
                                   void *grads, comm_nccl_type t, size_t bucket_bytes,
                                   void *stream, comm_error_t err) {
    *out = NULL;
    comm_nccl_bucketer *b = calloc(1, sizeof(*b));
    if (b) {
        b->counts = calloc((size_t)z->world, sizeof(int));
        b->displs = calloc((size_t)z->world, sizeof(int));
    }
    if (!b || !b->counts || !b->displs) {
        comm_nccl_bucketer_free(b);
        snprintf(err, COMM_ERRLEN, "out of memory for the GPU gradient buckets");
        return COMM_ERR;
    }
    b->c = c;
    b->z = z;
    b->grads = grads;
    b->type = t;
    b->esize = t == COMM_NCCL_BF16 ? 2 : 4;
    b->bucket_elems = bucket_bytes / b->esize ? bucket_bytes / b->esize : SIZE_MAX;
    b->stream = stream;
    *out = b;
    return COMM_OK;
}

void comm_nccl_bucketer_arm(comm_nccl_bucketer *b) { b->armed = 1; }

/* Queues the reduction of the open bucket behind the compute so far. */
static comm_status launch(comm_nccl_bucketer *b, comm_error_t err) {
    size_t lo = b->open_lo, hi = b->open_hi;
    b->open_lo = b->open_hi = 0;
    if (hi == lo) return COMM_OK;
    if (comm_nccl_after(b->c, b->stream, err)) return COMM_ERR;
    char *p = b->grads + lo * b->esize;
    if (b->z->stage == 0) return comm_nccl_allreduce_mean(b->c, p, hi - lo, b->type, err);
    comm_zero_split(b->z, lo, hi, b->counts, b->displs);
    return comm_nccl_reduce_scatterv_mean(b->c, p, b->counts, b->displs, b->type, err);
}

comm_status comm_nccl_bucketer_ready(comm_nccl_bucketer *b, size_t lo, size_t hi,
                                     comm_error_t err) {
    if (!b->armed) return COMM_OK;
    if (b->open_hi != b->open_lo && hi != b->open_lo && launch(b, err)) return COMM_ERR;
    if (b->open_hi == b->open_lo) b->open_hi = hi;
    b->open_lo = lo;
    return b->open_hi - b->open_lo >= b->bucket_elems ? launch(b, err) : COMM_OK;
}

comm_status comm_nccl_bucketer_finish(comm_nccl_bucketer *b, comm_error_t err) {
    b->armed = 0;
    if (launch(b, err)) return COMM_ERR;
    return comm_nccl_before(b->c, b->stream, err);
}

void comm_nccl_bucketer_free(comm_nccl_bucketer *b) {
    if (!b) return;
    free(b->counts);
    free(b->displs);
    free(b);
}
