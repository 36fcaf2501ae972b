/* zero.c: ZeRO stages 0-2 over MPI on the flat buffers (contract in comm.h).
 * The shards are contiguous ranges of the flat buffers, so every collective
 * is one call of comm.c (under its watchdog) over one buffer, whatever the
 * tensors inside; sharding never needs to know the tensor table.
 * Reduce-scatter and allgather take per-rank counts, so shards need not be
 * equal and nothing is padded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "kernels.h"

#define ZERO_ALIGN 16

comm_status comm_zero_init(comm_zero *z, gpt_model *m, int stage, size_t bucket_bytes,
                           const comm_ctx *ctx, comm_error_t err) {
    memset(z, 0, sizeof(*z));
    if (stage < 0 || stage > 2) {
        snprintf(err, COMM_ERRLEN, "--zero %d is not supported (stages 0, 1 and 2 are)", stage);
        return COMM_ERR;
    }
    size_t total = m->table.total, P = (size_t)ctx->world;
    size_t S = ((total + P - 1) / P + ZERO_ALIGN - 1) / ZERO_ALIGN * ZERO_ALIGN;
    if (S > (size_t)1 << 30) {
        snprintf(err, COMM_ERRLEN, "a shard of %zu floats exceeds MPI's int counts; use "
                 "more ranks", S);
        return COMM_ERR;
    }
    *z = (comm_zero){.stage = stage, .rank = ctx->rank, .world = ctx->world, .total = total};
    z->counts = calloc(P, sizeof(int));
    z->displs = calloc(P, sizeof(int));
    if (!z->counts || !z->displs) goto nomem;
    for (size_t r = 0; r < P; r++) {
        size_t lo = r * S < total ? r * S : total, hi = lo + S < total ? lo + S : total;
        z->counts[r] = (int)(hi - lo);
        z->displs[r] = (int)lo;
        if ((int)r == ctx->rank) {
            z->lo = lo;
            z->hi = hi;
        }
    }
    if (stage >= 1) {
        gpt_error_t gerr;
        if (gpt_shard_optimizer(m, z->lo, z->hi, gerr)) {
            snprintf(err, COMM_ERRLEN, "%s", gerr);
            comm_zero_free(z);
            return COMM_ERR;
        }
        z->gshard = calloc(z->hi - z->lo + 1, sizeof(float));
        z->recv = calloc(z->hi - z->lo + 1, sizeof(float));
        if (!z->gshard || !z->recv) goto nomem;
    }
    if (stage == 0 && ctx->world > 1 && bucket_bytes > 0 &&
        comm_bucketer_new(&z->bucketer, m, bucket_bytes, err)) {
        comm_zero_free(z);
        return COMM_ERR;
    }
    return COMM_OK;
nomem:
    comm_zero_free(z);
    snprintf(err, COMM_ERRLEN, "out of memory for the ZeRO shards");
    return COMM_ERR;
}

void comm_zero_free(comm_zero *z) {
    free(z->counts);
    free(z->displs);
    free(z->gshard);
    free(z->recv);
    comm_bucketer_free(z->bucketer);
    memset(z, 0, sizeof(*z));
}

int comm_zero_overlaps(const comm_zero *z) { return z->bucketer != NULL; }

void comm_zero_last_backward(comm_zero *z) {
    if (z->bucketer) comm_bucketer_arm(z->bucketer);
}

void comm_zero_begin(comm_zero *z, gpt_model *m) {
    gpt_zero_grad(m);
    if (z->gshard) memset(z->gshard, 0, (z->hi - z->lo) * sizeof(float));
}

/* gshard += this rank's block of the mean over ranks of grads. The block
 * arrives in a separate buffer (recv), not in place, so the accumulation
 * across micro-steps stays in gshard. */
static comm_status reduce_scatter_add(comm_zero *z, gpt_model *m, comm_error_t err) {
    if (comm_reduce_scatter_mean(m->grads, z->recv, z->counts, err)) return COMM_ERR;
    size_t n = z->hi - z->lo;
    for (size_t i = 0; i < n; i++) z->gshard[i] += z->recv[i];
    return COMM_OK;
}

comm_status comm_zero_micro_done(comm_zero *z, gpt_model *m, comm_error_t err) {
    if (z->stage < 2) return COMM_OK;
    comm_status st = reduce_scatter_add(z, m, err);
    gpt_zero_grad(m);
    return st;
}

comm_status comm_zero_step(comm_zero *z, gpt_model *m, const gpt_adamw *opt, float *norm,
                           comm_error_t err) {
    comm_status st = COMM_OK;
    if (z->stage == 0) {
        st = z->bucketer ? comm_bucketer_finish(z->bucketer, err)
                         : comm_allreduce_mean(m->grads, z->total, err);
        if (st) return st;
        *norm = gpt_grad_norm(m);
        gpt_update(m, opt, *norm);
        return COMM_OK;
    }
    if (z->stage == 1 && (st = reduce_scatter_add(z, m, err))) return st;
    size_t n = z->hi - z->lo;
    *norm = (float)sqrt(comm_sum_double(gpt_sumsq(z->gshard, (long)n)));
    /* gpt_update reads the owned range of the whole gradient buffer. */
    memcpy(m->grads + z->lo, z->gshard, n * sizeof(float));
    gpt_update(m, opt, *norm);
    return comm_allgather(m->params, z->counts, z->displs, err);
}

comm_zero_bytes comm_zero_memory(const comm_zero *z) {
    size_t f = sizeof(float), shard = z->hi - z->lo;
    comm_zero_bytes b = {z->total * f, z->total * f, 2 * z->total * f, 0};
    if (z->stage >= 1) b.optimizer = 2 * shard * f;
    if (z->stage >= 2) {
        b.grads = shard * f;
        b.scratch = z->total * f;
    }
    return b;
}
