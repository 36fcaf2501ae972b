/* gpt_internal.h: what gpt.c shares with the other passes of model/
 * (decode.c). Not a public API. */
#ifndef GPT_INTERNAL_H
#define GPT_INTERNAL_H

#include "gpt.h"

/* Tensor idx's parameters where they are now (inside its unit's memory,
 * which a unit hook may have moved). */
float *gpt_param(const gpt_model *m, int idx);

/* The unit (gpt.h) that holds tensor idx. */
int gpt_tensor_unit(const gpt_config *c, int idx);

/* The first element of every unit in the table, and lo[num_units] = the
 * table's total (num_units + 1 entries): the CPU and CUDA models' unit
 * ranges. */
void gpt_unit_starts(const gpt_config *c, const gpt_table *tab, size_t *lo);

/* Tells the unit hook (if any) about a unit; GPT_ERR_HOOK if it refuses. */
gpt_status gpt_tell(gpt_model *m, gpt_unit_event ev, int unit, int backward,
                    gpt_error_t err);

/* GPT_ERR_INPUT naming the first of x[0 .. n) outside [0, V) ("token id 7
 * at position 3 ..."); what is "token" or "target". */
gpt_status gpt_check_tokens(const int *x, size_t n, int V, const char *what,
                            gpt_error_t err);

/* Layer l's (q, k, v) rows, (cur_B, cur_T, 3C), of the last gpt_forward. */
const float *gpt_last_qkv(const gpt_model *m, int l);

#endif
