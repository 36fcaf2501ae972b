/* units.c: ZeRO stages 2 and 3 as the model's unit hook (contract in
 * comm_internal.h). The whole gradient buffer (and at stage 3 the whole
 * parameter buffer) is gone; a unit borrows a slot while backward writes its
 * gradients (or while a pass reads its parameters), so memory per rank is
 * the shards plus a few unit-sized slots, whatever the depth.
 * Slot 0 of each kind is the embedding unit's, which is much larger than a
 * layer for small models; slots 1 and 2 serve every other unit, enough for
 * the unit in use and the next one (the prefetch, or a reduce-scatter still
 * in flight). Gradients go out with one non-blocking reduce-scatter per unit
 * as soon as the unit is final, in place (MPI_IN_PLACE: this rank's part of
 * the sum lands at the start of the slot), and the part is added into the
 * gradient shard as soon as it has landed; at stage 3 the next unit's allgather
 * starts as soon as the current one is bound. A parameter slot keeps the
 * weights it gathered until the update changes them, so the embeddings are
 * gathered once per step, and a pass starts on the two units the last pass
 * ended with without gathering them again. Requests are tested at every
 * event, which is what moves MPI along between waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm_internal.h"

#define UNIT_SLOTS 3

typedef struct {
    float *buf;
    size_t roff;   /* where a reduce-scatter's part goes in the gradient shard */
    int landing;   /* a reduce-scatter's part is still to be added */
    int unit;    /* bound, or being gathered for; -1 when none */
    int held;    /* parameter slots: whose weights of this step it holds; -1 none */
    int pending; /* a collective on buf is in flight */
    int rc;
    long seq;    /* start order, to wait for the oldest first */
    MPI_Request req;
    int *counts, *displs;
    size_t bytes;
    char op[64];
} slot;

struct comm_units {
    comm_zero *z;
    const size_t *ulo; /* the model's unit table */
    int nunits;
    size_t slot_floats[UNIT_SLOTS];
    slot p[UNIT_SLOTS], g[UNIT_SLOTS]; /* p used at stage 3 only */
    long seq;
};

static int slot_init(slot *s, size_t floats, int world) {
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    s->buf = aligned_alloc(64, bytes ? bytes : 64);
    s->counts = calloc((size_t)world, sizeof(int));
    s->displs = calloc((size_t)world, sizeof(int));
    s->unit = s->held = -1;
    return s->buf && s->counts && s->displs;
}

static void slot_free(slot *s) {
    free(s->buf);
    free(s->counts);
    free(s->displs);
}

comm_status comm_units_new(comm_units **out, comm_zero *z, gpt_model *m, comm_error_t err) {
    comm_units *u = calloc(1, sizeof(*u));
    if (!u) goto nomem;
    u->z = z;
    u->ulo = m->unit_lo;
    u->nunits = gpt_num_units(&m->cfg);
    size_t big = 0;
    for (int k = 1; k < u->nunits; k++)
        if (u->ulo[k + 1] - u->ulo[k] > big) big = u->ulo[k + 1] - u->ulo[k];
    u->slot_floats[0] = u->ulo[1] - u->ulo[0];
    u->slot_floats[1] = u->slot_floats[2] = big;
    for (int i = 0; i < UNIT_SLOTS; i++) {
        if (z->host_grads && !slot_init(&u->g[i], u->slot_floats[i], z->world)) goto nomem;
        if (z->stage >= 3 && !slot_init(&u->p[i], u->slot_floats[i], z->world)) goto nomem;
    }
    *out = u;
    return COMM_OK;
nomem:
    comm_units_free(u);
    snprintf(err, COMM_ERRLEN, "out of memory for the ZeRO unit slots");
    return COMM_ERR;
}

void comm_units_free(comm_units *u) {
    if (!u) return;
    for (int i = 0; i < UNIT_SLOTS; i++) {
        slot_free(&u->g[i]);
        slot_free(&u->p[i]);
    }
    free(u);
}

size_t comm_units_slot_bytes(const comm_units *u) {
    size_t f = 0, kinds = (u->z->stage >= 3) + (u->z->host_grads != 0);
    for (int i = 0; i < UNIT_SLOTS; i++) f += u->slot_floats[i] * kinds;
    return f * sizeof(float);
}

static slot *bound(slot *s, int unit) {
    for (int i = 0; i < UNIT_SLOTS; i++)
        if (s[i].buf && s[i].unit == unit) return &s[i];
    return NULL;
}

/* The parameter slot that is gathering unit's weights or holds them. */
static slot *holding(slot *s, int unit) {
    for (int i = 0; i < UNIT_SLOTS; i++)
        if (s[i].buf && (s[i].unit == unit || s[i].held == unit)) return &s[i];
    return NULL;
}

/* A slot that can take unit: slot 0 for the embeddings, else 1 or 2. */
static slot *free_slot(slot *s, int unit) {
    int lo = unit == GPT_UNIT_EMB ? 0 : 1, hi = unit == GPT_UNIT_EMB ? 1 : UNIT_SLOTS;
    for (int i = lo; i < hi; i++)
        if (s[i].unit < 0 && !s[i].pending) return &s[i];
    return NULL;
}

/* A finished reduce-scatter: this rank's part of the mean joins the
 * shard. Each float of the shard gets one part per micro-step, so the order
 * in which slots land changes nothing. */
static void land(comm_units *u, slot *s) {
    if (!s->landing) return;
    s->landing = 0;
    comm_zero *z = u->z;
    float inv = 1.0f / (float)z->world, *g = z->gshard + s->roff;
    for (int i = 0; i < s->counts[z->rank]; i++) g[i] += s->buf[i] * inv;
}

static comm_status finish(comm_units *u, slot *s, comm_error_t err) {
    if (!s->pending) return COMM_OK;
    s->pending = 0;
    if (comm_wait(s->rc, &s->req, s->op, s->bytes, err)) return COMM_ERR;
    land(u, s);
    return COMM_OK;
}

/* Lets MPI progress every collective in flight. */
static void poke(comm_units *u) {
    for (int i = 0; i < UNIT_SLOTS; i++) {
        slot *k[2] = {&u->g[i], &u->p[i]};
        for (int j = 0; j < 2; j++) {
            int done = 0;
            if (k[j]->pending && k[j]->rc == MPI_SUCCESS &&
                MPI_Test(&k[j]->req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) {
                k[j]->pending = 0;
                land(u, k[j]);
            }
        }
    }
}

static void start_gather(comm_units *u, slot *s, int unit) {
    comm_zero *z = u->z;
    size_t a = u->ulo[unit], b = u->ulo[unit + 1];
    size_t off = comm_zero_split(z, a, b, s->counts, s->displs);
    s->unit = s->held = unit;
    s->pending = 1;
    s->seq = u->seq++;
    s->bytes = (b - a) * sizeof(float);
    snprintf(s->op, sizeof s->op, "allgather of unit %d's parameters", unit);
    comm_enter();
    s->rc = MPI_Iallgatherv(z->pshard + off, s->counts[z->rank], MPI_FLOAT, s->buf, s->counts,
                            s->displs, MPI_FLOAT, MPI_COMM_WORLD, &s->req);
}

/* Forward runs the units up, backward emb, lnf, then the layers down. */
static int next_unit(const comm_units *u, int unit, int backward) {
    int lnf = u->nunits - 1;
    if (!backward) return unit < lnf ? unit + 1 : -1;
    if (unit == GPT_UNIT_EMB) return lnf;
    return unit > 1 ? unit - 1 : -1;
}

static int need_params(comm_units *u, gpt_model *m, int unit, int backward, gpt_error_t err) {
    slot *s = holding(u->p, unit);
    if (!s && (s = free_slot(u->p, unit))) start_gather(u, s, unit);
    if (!s) {
        snprintf(err, GPT_ERRLEN, "ZeRO-3: no free parameter slot for unit %d (a pass "
                 "ended early)", unit);
        return 1;
    }
    if (finish(u, s, err)) return 1;
    s->unit = unit;
    m->unit_params[unit] = s->buf;
    int next = next_unit(u, unit, backward);
    slot *t;
    if (next >= 0 && !holding(u->p, next) && (t = free_slot(u->p, next)))
        start_gather(u, t, next);
    return 0;
}

static int need_grads(comm_units *u, gpt_model *m, int unit, gpt_error_t err) {
    slot *s = free_slot(u->g, unit);
    if (!s) {
        /* Both shared slots still reducing: wait for the older one. */
        int lo = unit == GPT_UNIT_EMB ? 0 : 1, hi = unit == GPT_UNIT_EMB ? 1 : UNIT_SLOTS;
        for (int i = lo; i < hi; i++)
            if (u->g[i].unit < 0 && (!s || u->g[i].seq < s->seq)) s = &u->g[i];
        if (!s) {
            snprintf(err, GPT_ERRLEN, "ZeRO-2: no free gradient slot for unit %d", unit);
            return 1;
        }
        if (finish(u, s, err)) return 1;
    }
    memset(s->buf, 0, (u->ulo[unit + 1] - u->ulo[unit]) * sizeof(float));
    s->unit = unit;
    m->unit_grads[unit] = s->buf;
    return 0;
}

static int grads_ready(comm_units *u, gpt_model *m, int unit, gpt_error_t err) {
    slot *s = bound(u->g, unit);
    if (!s) {
        snprintf(err, GPT_ERRLEN, "ZeRO-2: unit %d's gradients have no slot", unit);
        return 1;
    }
    size_t a = u->ulo[unit], b = u->ulo[unit + 1];
    s->bytes = (b - a) * sizeof(float);
    snprintf(s->op, sizeof s->op, "reduce_scatter of unit %d's gradients", unit);
    s->seq = u->seq++;
    s->pending = 1;
    s->landing = 1;
    s->unit = -1;
    s->roff = comm_zero_split(u->z, a, b, s->counts, s->displs);
    comm_enter();
    s->rc = MPI_Ireduce_scatter(MPI_IN_PLACE, s->buf, s->counts, MPI_FLOAT, MPI_SUM,
                                MPI_COMM_WORLD, &s->req);
    m->unit_grads[unit] = NULL;
    return 0;
}

int comm_units_event(comm_units *u, gpt_model *m, gpt_unit_event ev, int unit, int backward,
                     gpt_error_t err) {
    int rc = 0;
    slot *s;
    switch (ev) {
    case GPT_NEED_PARAMS:
        if (u->z->stage >= 3) rc = need_params(u, m, unit, backward, err);
        break;
    case GPT_DONE_PARAMS:
        if (u->z->stage >= 3 && (s = bound(u->p, unit))) {
            s->unit = -1;
            m->unit_params[unit] = NULL;
        }
        break;
    case GPT_NEED_GRADS:
        rc = need_grads(u, m, unit, err);
        break;
    case GPT_GRADS_READY:
        rc = grads_ready(u, m, unit, err);
        break;
    }
    poke(u);
    return rc;
}

comm_status comm_units_finish(comm_units *u, comm_error_t err) {
    comm_status st = COMM_OK;
    for (int i = 0; i < UNIT_SLOTS; i++)
        if (finish(u, &u->g[i], err)) st = COMM_ERR;
    return st;
}

comm_status comm_units_drop_params(comm_units *u, gpt_model *m, comm_error_t err) {
    comm_status st = COMM_OK;
    for (int i = 0; i < UNIT_SLOTS; i++) {
        if (!u->p[i].buf) continue;
        if (finish(u, &u->p[i], err)) st = COMM_ERR;
        u->p[i].unit = u->p[i].held = -1;
    }
    for (int k = 0; k < u->nunits; k++) m->unit_params[k] = NULL;
    return st;
}
