/* units_nccl.c: ZeRO stages 2 and 3 on the GPU, as the CUDA model's unit
 * hook (contract in comm_nccl.h). The twin of units.c with the same slots
 * (0 for the embeddings, 1 and 2 for the rest) and the same events; what
 * differs is who waits. Nothing here blocks the host: a collective is
 * queued on the communication stream behind the compute queued so far
 * (comm_nccl_after) and leaves a mark; whoever next needs the slot makes
 * the compute stream wait for that mark. A slot whose reduction is in
 * flight still holds this rank's part of the mean, so the part is added
 * into the gradient shard, on the compute stream, right before the slot is
 * cleared for its next unit (or at the micro-step's end). A parameter slot
 * keeps the weights it gathered until the update changes them, so the
 * embeddings are gathered once per step, and a pass starts on the two
 * units the last pass ended with without gathering them again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime.h>
#include "comm_internal.h"
#include "comm_nccl.h"

#define UNIT_SLOTS 3
#define BF16 2 /* bytes */

typedef struct {
    char *buf;          /* device, bf16 */
    int unit;           /* bound, or being gathered for; -1 when none */
    int held;           /* parameter slots: whose weights of this step it holds; -1 none */
    int queued;         /* a collective on buf that the compute stream has not waited for */
    int landing;        /* a reduced part still to be added into the gradient shard */
    size_t part, count, roff; /* the part: offset in buf, length, place in the shard */
    long seq;           /* start order, to reuse the oldest first */
    void *mark;         /* behind the collective, on the communication stream */
} nslot;

struct comm_nccl_units {
    comm_nccl *c;
    const comm_zero *z;
    gpt_cuda *g;
    void *stream;       /* the model's */
    int nunits;
    size_t *ulo;
    size_t slot_elems[UNIT_SLOTS];
    nslot p[UNIT_SLOTS], gr[UNIT_SLOTS]; /* p at stage 3 only */
    int *counts, *displs;
    long seq;
};

/* Slot 0 holds the embedding unit, 1 and 2 the largest of the others. */
static void slot_sizes(const size_t *ulo, int nunits, size_t out[UNIT_SLOTS]) {
    size_t big = 0;
    for (int k = 1; k < nunits; k++)
        if (ulo[k + 1] - ulo[k] > big) big = ulo[k + 1] - ulo[k];
    out[0] = ulo[1] - ulo[0];
    out[1] = out[2] = big;
}

size_t comm_nccl_units_bytes(const comm_zero *z, const size_t *ulo, int nunits) {
    if (z->stage < 2) return 0;
    size_t e[UNIT_SLOTS], n = 0;
    slot_sizes(ulo, nunits, e);
    for (int i = 0; i < UNIT_SLOTS; i++) n += e[i];
    return n * BF16 * (z->stage >= 3 ? 2 : 1);
}

static comm_status slot_init(comm_nccl_units *u, nslot *s, size_t elems, comm_error_t err) {
    s->unit = s->held = -1;
    if (comm_nccl_mark_new(u->c, &s->mark, err)) return COMM_ERR;
    cudaError_t e = cudaMalloc((void **)&s->buf, elems * BF16 + 16);
    if (e == cudaSuccess) return COMM_OK;
    s->buf = NULL;
    snprintf(err, COMM_ERRLEN, "rank %d: allocating the ZeRO unit slots (%zu bytes): %s",
             u->z->rank, elems * BF16, cudaGetErrorString(e));
    return COMM_ERR;
}

static void slot_free(nslot *s) {
    if (s->buf) cudaFree(s->buf);
    comm_nccl_mark_free(s->mark);
}

void comm_nccl_units_free(comm_nccl_units *u) {
    if (!u) return;
    if (u->g) gpt_cuda_set_unit_hook(u->g, NULL, NULL);
    for (int i = 0; i < UNIT_SLOTS; i++) {
        slot_free(&u->gr[i]);
        slot_free(&u->p[i]);
    }
    free(u->ulo);
    free(u->counts);
    free(u->displs);
    free(u);
}

static int units_event(void *ctx, gpt_cuda *g, gpt_unit_event ev, int unit, int backward,
                       gpt_error_t err);

comm_status comm_nccl_units_new(comm_nccl_units **out, comm_nccl *c, const comm_zero *z,
                                gpt_cuda *g, comm_error_t err) {
    *out = NULL;
    comm_nccl_units *u = calloc(1, sizeof(*u));
    if (!u) goto nomem;
    u->c = c;
    u->z = z;
    u->stream = gpt_cuda_stream(g);
    u->nunits = gpt_cuda_num_units(g);
    u->counts = calloc((size_t)z->world, sizeof(int));
    u->displs = calloc((size_t)z->world, sizeof(int));
    u->ulo = calloc((size_t)u->nunits + 1, sizeof(size_t));
    if (!u->counts || !u->displs || !u->ulo) goto nomem;
    for (int k = 0; k < u->nunits; k++) gpt_cuda_unit_range(g, k, &u->ulo[k], &u->ulo[k + 1]);
    slot_sizes(u->ulo, u->nunits, u->slot_elems);
    for (int i = 0; i < UNIT_SLOTS; i++) {
        if (slot_init(u, &u->gr[i], u->slot_elems[i], err) ||
            (z->stage >= 3 && slot_init(u, &u->p[i], u->slot_elems[i], err))) {
            comm_nccl_units_free(u);
            return COMM_ERR;
        }
    }
    u->g = g;
    gpt_cuda_set_unit_hook(g, units_event, u);
    *out = u;
    return COMM_OK;
nomem:
    comm_nccl_units_free(u);
    snprintf(err, COMM_ERRLEN, "out of host memory for the ZeRO unit slots");
    return COMM_ERR;
}

static nslot *bound(nslot *s, int unit) {
    for (int i = 0; i < UNIT_SLOTS; i++)
        if (s[i].buf && s[i].unit == unit) return &s[i];
    return NULL;
}

/* The parameter slot that is gathering unit's weights or holds them. */
static nslot *holding(nslot *s, int unit) {
    for (int i = 0; i < UNIT_SLOTS; i++)
        if (s[i].buf && (s[i].unit == unit || s[i].held == unit)) return &s[i];
    return NULL;
}

/* A slot that can take unit, unbound: slot 0 for the embeddings, else 1 or
 * 2: one with no collective in flight if there is one (nothing to wait
 * for), else the one whose collective started first. */
static nslot *free_slot(nslot *s, int unit) {
    int lo = unit == GPT_UNIT_EMB ? 0 : 1, hi = unit == GPT_UNIT_EMB ? 1 : UNIT_SLOTS;
    nslot *best = NULL;
    for (int i = lo; i < hi; i++) {
        if (!s[i].buf || s[i].unit >= 0) continue;
        if (!best || (best->queued && !s[i].queued) ||
            (best->queued == s[i].queued && s[i].seq < best->seq))
            best = &s[i];
    }
    return best;
}

/* The compute stream waits for s's collective; a reduced part then joins
 * the gradient shard (each element gets one part per micro-step, added in
 * the order the units were reduced). */
static comm_status settle(comm_nccl_units *u, nslot *s, comm_error_t err) {
    if (!s->queued) return COMM_OK;
    s->queued = 0;
    if (comm_nccl_await(u->c, s->mark, u->stream, err)) return COMM_ERR;
    if (!s->landing) return COMM_OK;
    s->landing = 0;
    gpt_error_t gerr;
    char *shard = gpt_cuda_dev_grads(u->g);
    if (gpt_cuda_accumulate(u->g, shard + s->roff * BF16, s->buf + s->part * BF16, s->count,
                            gerr) == GPT_OK)
        return COMM_OK;
    snprintf(err, COMM_ERRLEN, "%s", gerr);
    return COMM_ERR;
}

/* Queues the gather of unit's parameters from the shards into s, behind
 * the compute queued so far (the readers of s's last unit, the update of
 * the shard). */
static comm_status start_gather(comm_nccl_units *u, nslot *s, int unit, comm_error_t err) {
    size_t a = u->ulo[unit], b = u->ulo[unit + 1];
    size_t off = comm_zero_split(u->z, a, b, u->counts, u->displs);
    const char *mine = (const char *)gpt_cuda_dev_params(u->g) + off * BF16;
    s->unit = s->held = unit;
    s->queued = 1;
    s->seq = u->seq++;
    if (comm_nccl_after(u->c, u->stream, err) ||
        comm_nccl_allgatherv(u->c, mine, s->buf, u->counts, u->displs, COMM_NCCL_BF16, err))
        return COMM_ERR;
    return comm_nccl_mark(u->c, s->mark, err);
}

/* Forward runs the units up, backward emb, lnf, then the layers down. */
static int next_unit(const comm_nccl_units *u, int unit, int backward) {
    int lnf = u->nunits - 1;
    if (!backward) return unit < lnf ? unit + 1 : -1;
    if (unit == GPT_UNIT_EMB) return lnf;
    return unit > 1 ? unit - 1 : -1;
}

static comm_status need_params(comm_nccl_units *u, int unit, int backward, comm_error_t err) {
    nslot *s = holding(u->p, unit);
    if (!s && (s = free_slot(u->p, unit)) && start_gather(u, s, unit, err)) return COMM_ERR;
    if (!s) {
        snprintf(err, COMM_ERRLEN, "ZeRO-3: no free parameter slot for unit %d (a pass "
                 "ended early)", unit);
        return COMM_ERR;
    }
    if (settle(u, s, err)) return COMM_ERR;
    s->unit = unit;
    gpt_cuda_bind_params(u->g, unit, s->buf);
    int next = next_unit(u, unit, backward);
    nslot *t;
    if (next >= 0 && !holding(u->p, next) && (t = free_slot(u->p, next)))
        return start_gather(u, t, next, err);
    return COMM_OK;
}

static comm_status need_grads(comm_nccl_units *u, int unit, comm_error_t err) {
    nslot *s = free_slot(u->gr, unit);
    if (!s) {
        snprintf(err, COMM_ERRLEN, "ZeRO-2: no free gradient slot for unit %d", unit);
        return COMM_ERR;
    }
    if (settle(u, s, err)) return COMM_ERR;
    size_t n = u->ulo[unit + 1] - u->ulo[unit];
    cudaError_t e = cudaMemsetAsync(s->buf, 0, n * BF16, (cudaStream_t)u->stream);
    if (e != cudaSuccess) {
        snprintf(err, COMM_ERRLEN, "clearing unit %d's gradient slot: %s", unit,
                 cudaGetErrorString(e));
        return COMM_ERR;
    }
    s->unit = unit;
    gpt_cuda_bind_grads(u->g, unit, s->buf);
    return COMM_OK;
}

/* Reduces the unit's slot onto the shards it touches, in place: this
 * rank's part of the mean lands where it was in the slot. */
static comm_status grads_ready(comm_nccl_units *u, int unit, comm_error_t err) {
    nslot *s = bound(u->gr, unit);
    if (!s) {
        snprintf(err, COMM_ERRLEN, "ZeRO-2: unit %d's gradients have no slot", unit);
        return COMM_ERR;
    }
    size_t a = u->ulo[unit], b = u->ulo[unit + 1];
    s->roff = comm_zero_split(u->z, a, b, u->counts, u->displs);
    s->count = (size_t)u->counts[u->z->rank];
    s->part = (size_t)u->displs[u->z->rank];
    s->landing = s->count > 0;
    s->queued = 1;
    s->seq = u->seq++;
    s->unit = -1;
    gpt_cuda_bind_grads(u->g, unit, NULL);
    if (comm_nccl_after(u->c, u->stream, err) ||
        comm_nccl_reduce_scatterv_mean(u->c, s->buf, u->counts, u->displs, COMM_NCCL_BF16,
                                       err))
        return COMM_ERR;
    return comm_nccl_mark(u->c, s->mark, err);
}

static int units_event(void *ctx, gpt_cuda *g, gpt_unit_event ev, int unit, int backward,
                       gpt_error_t err) {
    comm_nccl_units *u = ctx;
    comm_error_t cerr;
    comm_status st = COMM_OK;
    nslot *s;
    switch (ev) {
    case GPT_NEED_PARAMS:
        if (u->z->stage >= 3) st = need_params(u, unit, backward, cerr);
        break;
    case GPT_DONE_PARAMS:
        if (u->z->stage >= 3 && (s = bound(u->p, unit))) {
            s->unit = -1;
            gpt_cuda_bind_params(g, unit, NULL);
        }
        break;
    case GPT_NEED_GRADS:
        st = need_grads(u, unit, cerr);
        break;
    case GPT_GRADS_READY:
        st = grads_ready(u, unit, cerr);
        break;
    }
    if (st) snprintf(err, GPT_ERRLEN, "%s", cerr);
    return st != COMM_OK;
}

comm_status comm_nccl_units_micro_done(comm_nccl_units *u, comm_error_t err) {
    /* Oldest first, so the shard's additions keep the reduction order. */
    for (;;) {
        nslot *s = NULL;
        for (int i = 0; i < UNIT_SLOTS; i++)
            if (u->gr[i].queued && (!s || u->gr[i].seq < s->seq)) s = &u->gr[i];
        if (!s) return COMM_OK;
        if (settle(u, s, err)) return COMM_ERR;
    }
}

comm_status comm_nccl_units_drop_params(comm_nccl_units *u, comm_error_t err) {
    for (int i = 0; i < UNIT_SLOTS; i++) {
        if (!u->p[i].buf) continue;
        if (settle(u, &u->p[i], err)) return COMM_ERR;
        u->p[i].unit = u->p[i].held = -1;
    }
    if (u->z->stage >= 3)
        for (int k = 0; k < u->nunits; k++) gpt_cuda_bind_params(u->g, k, NULL);
    return COMM_OK;
}
