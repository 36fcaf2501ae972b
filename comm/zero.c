/* zero.c: ZeRO stages 0-3 over MPI on the flat buffers (contract in comm.h).
 * The shards are contiguous ranges of the flat buffers, so a whole-buffer
 * collective is one call of comm.c (under its watchdog), and a piece of the
 * buffer (a bucket, a unit) splits over the shards it touches with per-rank
 * counts: any size works on any rank count, nothing is padded, and sharding
 * never needs the tensor table. The model's unit hook is where stages 0-1
 * learn that a bucket's gradients are final (bucket.c) and where stages 2-3
 * hand out gradient and parameter slots (units.c). */
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm_internal.h"
#include "kernels.h"

#define ZERO_ALIGN 16

size_t comm_zero_split(const comm_zero *z, size_t a, size_t b, int *counts, int *displs) {
    size_t mine = 0;
    for (int r = 0; r < z->world; r++) {
        size_t lo = (size_t)r * z->shard < z->total ? (size_t)r * z->shard : z->total;
        size_t hi = lo + z->shard < z->total ? lo + z->shard : z->total;
        size_t s = a > lo ? a : lo, e = b < hi ? b : hi;
        counts[r] = s < e ? (int)(e - s) : 0;
        displs[r] = s < e ? (int)(s - a) : 0;
        if (r == z->rank && s < e) mine = s - lo;
    }
    return mine;
}

static int zero_hook(void *ctx, gpt_model *m, gpt_unit_event ev, int unit, int backward,
                     gpt_error_t err) {
    comm_zero *z = ctx;
    if (z->units) return comm_units_event(z->units, m, ev, unit, backward, err);
    if (ev == GPT_GRADS_READY && z->bucketer) {
        size_t lo, hi;
        gpt_unit_range(m, unit, &lo, &hi);
        comm_bucketer_ready(z->bucketer, lo, hi);
    }
    return 0;
}

static comm_status shard(comm_zero *z, size_t total, const comm_ctx *ctx, comm_error_t err) {
    size_t P = (size_t)ctx->world;
    size_t S = ((total + P - 1) / P + ZERO_ALIGN - 1) / ZERO_ALIGN * ZERO_ALIGN;
    /* MPI's counts and displacements are ints. A CPU run moves whole shards
     * through MPI (z->counts and z->displs), so its shard must stay within
     * 2^30 floats and the model within INT_MAX. A GPU run moves them with
     * NCCL (size_t counts) and passes MPI only pieces of a unit, so only a
     * shard's count must be an int: GPT-2 1558M fits on one GPU. */
    if (z->host_grads ? S > (size_t)1 << 30 || total > INT_MAX : S > INT_MAX) {
        snprintf(err, COMM_ERRLEN, "a shard of %zu floats (of %zu) exceeds MPI's int counts; "
                 "use more ranks", S, total);
        return COMM_ERR;
    }
    z->shard = S;
    z->counts = calloc(P, sizeof(int));
    z->displs = calloc(P, sizeof(int));
    if (!z->counts || !z->displs) {
        snprintf(err, COMM_ERRLEN, "out of memory for the ZeRO shards");
        return COMM_ERR;
    }
    for (size_t r = 0; r < P; r++) {
        size_t lo = r * S < total ? r * S : total, hi = lo + S < total ? lo + S : total;
        z->counts[r] = (int)(hi - lo);
        z->displs[r] = lo <= INT_MAX ? (int)lo : -1; /* a GPU run never passes them */
        if ((int)r == ctx->rank) {
            z->lo = lo;
            z->hi = hi;
        }
    }
    return COMM_OK;
}

/* Stages 1-3 shrink the moments; 2-3 drop the whole gradient buffer for an
 * accumulated shard, and 3 the whole parameter buffer for its shard. Stage 1
 * needs no more: its reduce-scatter works in place in the gradient buffer. */
static comm_status shrink(comm_zero *z, gpt_model *m, comm_error_t err) {
    gpt_error_t gerr;
    if (gpt_shard_optimizer(m, z->lo, z->hi, gerr)) {
        snprintf(err, COMM_ERRLEN, "%s", gerr);
        return COMM_ERR;
    }
    size_t n = z->hi - z->lo;
    if (z->stage < 2) return COMM_OK;
    if (z->host_grads) z->gshard = calloc(n + 1, sizeof(float));
    if (z->stage >= 3 && (z->pshard = calloc(n + 1, sizeof(float))))
        memcpy(z->pshard, m->params + z->lo, n * sizeof(float));
    if ((z->host_grads && !z->gshard) || (z->stage >= 3 && !z->pshard)) {
        snprintf(err, COMM_ERRLEN, "out of memory for the ZeRO shards");
        return COMM_ERR;
    }
    /* Without host gradients, stage 2 has nothing to lend. */
    if ((z->host_grads || z->stage >= 3) && comm_units_new(&z->units, z, m, err))
        return COMM_ERR;
    if (z->stage >= 3) gpt_release_params(m);
    return COMM_OK;
}

comm_status comm_zero_init(comm_zero *z, gpt_model *m, int stage, size_t bucket_bytes,
                           int host_grads, const comm_ctx *ctx, comm_error_t err) {
    memset(z, 0, sizeof(*z));
    if (stage < 0 || stage > 3) {
        snprintf(err, COMM_ERRLEN, "--zero %d is not a ZeRO stage (0, 1, 2 or 3)", stage);
        return COMM_ERR;
    }
    *z = (comm_zero){.stage = stage, .rank = ctx->rank, .world = ctx->world,
                     .total = m->table.total, .host_grads = host_grads};
    comm_status st = shard(z, z->total, ctx, err);
    if (!st && stage >= 1) st = shrink(z, m, err);
    if (!st && (stage >= 2 || !host_grads)) gpt_release_grads(m);
    if (!st && stage <= 1 && host_grads && ctx->world > 1 && bucket_bytes > 0)
        st = comm_bucketer_new(&z->bucketer, z, m->grads, bucket_bytes, err);
    if (st) {
        comm_zero_free(z);
        return st;
    }
    if (z->units || z->bucketer) gpt_set_unit_hook(m, zero_hook, z);
    return COMM_OK;
}

void comm_zero_free(comm_zero *z) {
    free(z->counts);
    free(z->displs);
    free(z->gshard);
    free(z->pshard);
    comm_bucketer_free(z->bucketer);
    comm_units_free(z->units);
    memset(z, 0, sizeof(*z));
}

int comm_zero_overlaps(const comm_zero *z) { return z->bucketer || z->units; }

int comm_zero_gathers(const comm_zero *z) { return z->stage >= 3; }

void comm_zero_last_backward(comm_zero *z) {
    if (z->bucketer) comm_bucketer_arm(z->bucketer);
}

void comm_zero_begin(comm_zero *z, gpt_model *m) {
    gpt_zero_grad(m);
    if (z->gshard) memset(z->gshard, 0, (z->hi - z->lo) * sizeof(float));
}

comm_status comm_zero_micro_done(comm_zero *z, gpt_model *m, comm_error_t err) {
    (void)m;
    return z->stage < 2 || !z->host_grads ? COMM_OK : comm_units_finish(z->units, err);
}

comm_status comm_zero_reduce(comm_zero *z, gpt_model *m, float *norm, comm_error_t err) {
    comm_status st = COMM_OK;
    if (z->stage == 0) {
        st = z->bucketer ? comm_bucketer_finish(z->bucketer, err)
                         : comm_allreduce_mean(m->grads, z->total, err);
        if (!st) *norm = gpt_grad_norm(m);
        return st;
    }
    size_t n = z->hi - z->lo;
    if (z->stage == 1) {
        /* In place: this rank's block of the mean lands at the start of the
         * buffer (of each bucket) and moves to the shard's place. */
        st = z->bucketer ? comm_bucketer_finish(z->bucketer, err)
                         : comm_reduce_scatter_mean(m->grads, z->counts, err);
        if (st) return st;
        if (!z->bucketer) memmove(m->grads + z->lo, m->grads, n * sizeof(float));
    }
    const float *g = z->stage == 1 ? m->grads + z->lo : z->gshard;
    *norm = (float)sqrt(comm_sum_double(gpt_sumsq(g, (long)n)));
    return COMM_OK;
}

comm_status comm_zero_apply(comm_zero *z, gpt_model *m, const gpt_adamw *opt, float norm,
                            comm_error_t err) {
    comm_status st;
    if (z->stage == 0) {
        if (opt) gpt_update(m, opt, norm);
        return COMM_OK;
    }
    /* No gather may still be reading the shard the step writes; a skipped
     * step drops them too, so every step ends in the same state. */
    if (z->stage >= 3) {
        if ((st = comm_units_drop_params(z->units, m, err))) return st;
        if (opt) gpt_update_shard(m, opt, norm, z->pshard, z->gshard);
        return COMM_OK;
    }
    if (!opt) return COMM_OK; /* every rank's parameters are still the same */
    const float *g = z->stage == 1 ? m->grads + z->lo : z->gshard;
    gpt_update_shard(m, opt, norm, m->params + z->lo, g);
    return comm_allgather(m->params, z->counts, z->displs, err);
}

comm_status comm_zero_params_changed(comm_zero *z, gpt_model *m, comm_error_t err) {
    return z->stage >= 3 ? comm_units_drop_params(z->units, m, err) : COMM_OK;
}

comm_zero_bytes comm_zero_memory(const comm_zero *z) {
    size_t f = sizeof(float), shard = z->hi - z->lo;
    comm_zero_bytes b = {z->total * f, z->total * f, 2 * z->total * f, 0};
    if (z->stage >= 1) b.optimizer = 2 * shard * f;
    if (z->stage >= 2) b.grads = shard * f;
    if (z->units) b.scratch = comm_units_slot_bytes(z->units);
    if (!z->host_grads) b.grads = 0;
    if (z->stage >= 3) b.params = shard * f;
    return b;
}
