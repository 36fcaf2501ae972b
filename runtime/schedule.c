/* schedule.c: learning-rate schedules: linear warmup, then cosine decay,
 * constant, or warmup-stable-decay (WSD). */
#include <math.h>
#include <string.h>
#include "runtime.h"

rt_status rt_schedule_kind(const char *name, rt_sched_kind *kind, rt_error_t err) {
    if (strcmp(name, "cosine") == 0) *kind = RT_SCHED_COSINE;
    else if (strcmp(name, "constant") == 0) *kind = RT_SCHED_CONSTANT;
    else if (strcmp(name, "wsd") == 0) *kind = RT_SCHED_WSD;
    else {
        snprintf(err, RT_ERRLEN, "unknown --lr-schedule '%s' (use cosine, constant or wsd)", name);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

float rt_lr_at(const rt_schedule *s, int step) {
    if (step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    float final = s->lr * s->final_frac;
    switch (s->kind) {
    case RT_SCHED_CONSTANT:
        return s->lr;
    case RT_SCHED_COSINE: {
        int span = s->steps - s->warmup;
        float p = span > 1 ? (float)(step - s->warmup) / (float)(span - 1) : 1.0f;
        return final + (s->lr - final) * 0.5f * (1.0f + cosf((float)M_PI * p));
    }
    case RT_SCHED_WSD: {
        int decay = (int)lroundf(s->decay_frac * (float)s->steps);
        int start = s->steps - decay;
        if (step < start || decay <= 0) return s->lr;
        float p = decay > 1 ? (float)(step - start) / (float)(decay - 1) : 1.0f;
        return s->lr + (final - s->lr) * p;
    }
    }
    return s->lr;
}
